/* recorder: the recording manager's requests (SPEC §2), live sessions and
 * room events. The control thread is in recorder_control.c, processing in
 * recorder_worker.c, start-up recovery in recorder_recover.c. */
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "config.h"
#include "media.h"
#include "policy.h"
#include "recorder_internal.h"
#include "state.h"
#include "storage_s3.h"

static struct log_handle log_rec = LOG_HANDLE("recorder");

/* How long recorder_free lets processing jobs run before it stops them. */
#define RECORDER_SHUTDOWN_DRAIN_MS 5000

/* ---- replies ------------------------------------------------------------ */

void reply_error(struct recorder_reply *out, int status, const char *code, const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	out->status = status;
	out->body = cJSON_CreateObject();
	if (out->body) {
		cJSON_AddStringToObject(out->body, "detail", detail);
		cJSON_AddStringToObject(out->body, "code", code);
	}
}

/* Replies with what an authorization refused: 403 forbidden, or 404
 * not_found when the policy hides the recording; the policy's reason is the
 * detail. */
static void reply_denied(struct recorder_reply *out, const struct recorder_verdict *v)
{
	bool hide = v->status == 404;
	reply_error(out, hide ? 404 : 403, hide ? "not_found" : "forbidden", "%s",
		    v->reason[0] ? v->reason : "forbidden");
}

/* Replies 200 with a copy of 'rec'. */
cJSON *recorder_rec_metadata(cJSON *rec)
{
	cJSON *m = cJSON_GetObjectItemCaseSensitive(rec, "metadata");
	if (cJSON_IsObject(m))
		return m;
	cJSON_DeleteItemFromObjectCaseSensitive(rec, "metadata");
	return cJSON_AddObjectToObject(rec, "metadata");
}

void recorder_json_set(cJSON *obj, const char *key, cJSON *item)
{
	if (!item)
		return;
	bool ok = obj && (cJSON_GetObjectItemCaseSensitive(obj, key)
				  ? cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item)
				  : cJSON_AddItemToObject(obj, key, item));
	if (!ok)
		cJSON_Delete(item);
}

static void reply_record(struct recorder_reply *out, const cJSON *rec)
{
	out->status = 200;
	out->body = cJSON_Duplicate(rec, 1);
	if (!out->body)
		reply_error(out, 500, "internal", "out of memory");
}

/* Wraps an array of records as {"recordings": [...], "count": n}; takes 'arr'. */
static void reply_list(struct recorder_reply *out, cJSON *arr)
{
	cJSON *body = cJSON_CreateObject();
	if (!body) {
		cJSON_Delete(arr);
		reply_error(out, 500, "internal", "out of memory");
		return;
	}
	int n = cJSON_GetArraySize(arr);
	cJSON_AddItemToObject(body, "recordings", arr);
	cJSON_AddNumberToObject(body, "count", n);
	out->status = 200;
	out->body = body;
}

/* ---- small helpers on records ------------------------------------------- */

static enum recorder_status rec_status(const cJSON *rec)
{
	enum recorder_status s = RECORDER_FAILED;
	if (recorder_status_parse(state_record_str(rec, "status"), &s) < 0)
		return RECORDER_FAILED;
	return s;
}

static void rec_set_status(cJSON *rec, enum recorder_status s)
{
	state_record_set_str(rec, "status", recorder_status_name(s));
}

/* Seconds with millisecond precision, as duration_seconds shows them. */
static double seconds_ms(int64_t ns)
{
	return round((double)ns / 1e6) / 1e3;
}

/* The video frames written per second of media time written, to 1/100
 * (the preset's fps when nothing was lost; 0 before any media time). */
static double stats_effective_fps(const struct media_stats *st)
{
	double secs = (double)st->active_duration_ns / 1e9;
	return secs > 0 ? round((double)st->video_frames_encoded / secs * 100) / 100 : 0;
}

/* Fills 'o' with one ladder move: "step", "direction", "detail". */
static void degrade_step_json(cJSON *o, const struct media_degrade_step *m)
{
	cJSON_AddStringToObject(o, "step", media_degrade_name(m->step));
	cJSON_AddStringToObject(o, "direction", m->down ? "down" : "up");
	cJSON_AddStringToObject(o, "detail", m->detail);
}

/* metadata.media: what the pipeline kept and dropped, so a recording
 * that lost frames says so in its state (frames skipped: left out evenly by
 * the degradation ladder), and effective_fps (stats_effective_fps). */
static void rec_apply_media(cJSON *rec, const struct media_stats *st)
{
	cJSON *media = cJSON_CreateObject();
	if (!media)
		return;
	cJSON_AddNumberToObject(media, "video_frames_encoded", (double)st->video_frames_encoded);
	cJSON_AddNumberToObject(media, "video_frames_dropped", (double)st->video_frames_dropped);
	cJSON_AddNumberToObject(media, "video_frames_skipped", (double)st->video_frames_skipped);
	cJSON_AddNumberToObject(media, "audio_frames_encoded", (double)st->audio_frames_encoded);
	cJSON_AddNumberToObject(media, "audio_frames_dropped", (double)st->audio_frames_dropped);
	cJSON_AddNumberToObject(media, "effective_fps", stats_effective_fps(st));
	if (st->video_fps > 0)
		cJSON_AddStringToObject(media, "encoder_speed", st->encoder_dense ? "dense" : "quality");
	recorder_json_set(recorder_rec_metadata(rec), "media", media);
	if (st->capture.present)
		recorder_json_set(recorder_rec_metadata(rec), "capture", recorder_capture_json(&st->capture));
	recorder_rtp_apply_network(rec, st);
}

/* metadata.degradation from 'st' when the video ever went down the ladder:
 * {"steps": [{"at", "step", "direction", "detail"}], "level", "effective_fps",
 * "min_fps", "frames_skipped"}. */
static void rec_apply_degradation(cJSON *rec, const struct media_stats *st)
{
	if (st->degrade_moves == 0)
		return;
	cJSON *d = cJSON_CreateObject();
	cJSON *steps = d ? cJSON_AddArrayToObject(d, "steps") : NULL;
	if (!steps) {
		cJSON_Delete(d);
		return;
	}
	for (uint32_t i = 0; i < st->degrade_moves && i < MEDIA_DEGRADE_LOG_MAX; i++) {
		const struct media_degrade_step *m = &st->degrade_log[i];
		cJSON *o = cJSON_CreateObject();
		char ts[40];
		if (!o)
			break;
		cJSON_AddStringToObject(o, "at", time_iso8601(m->wall_ns, ts, sizeof(ts)));
		degrade_step_json(o, m);
		cJSON_AddItemToArray(steps, o);
	}
	cJSON_AddNumberToObject(d, "moves", st->degrade_moves);
	cJSON_AddStringToObject(d, "level", media_degrade_name(st->degrade_level));
	cJSON_AddNumberToObject(d, "effective_fps", stats_effective_fps(st));
	cJSON_AddNumberToObject(d, "min_fps", st->video_min_fps);
	cJSON_AddNumberToObject(d, "frames_skipped", (double)st->video_frames_skipped);
	recorder_json_set(recorder_rec_metadata(rec), "degradation", d);
}

/* Copies 'st' counters into the record: duration, bytes, metadata.media
 * and the degradation the video went through. */
static void rec_apply_stats(cJSON *rec, const struct media_stats *st, const char *path)
{
	rec_apply_degradation(rec, st);
	state_record_set_number(rec, "duration_seconds", seconds_ms(st->active_duration_ns));
	struct stat sb;
	double size = (double)st->bytes_written;
	if (path && stat(path, &sb) == 0)
		size = (double)sb.st_size;
	state_record_set_number(rec, "file_size_bytes", size);
	rec_apply_media(rec, st);
	recorder_rtp_apply_stats(recorder_rec_metadata(rec), st);
}

int recorder_put(struct recorder *r, const cJSON *rec)
{
	int rc = state_put(r->st, rec);
	if (rc < 0)
		LOG_ERROR(&log_rec, "%s: state write failed: %s", state_record_str(rec, "recording_id"),
			  state_strerror(rc));
	else if (rc == STATE_DEFERRED)
		LOG_WARN(&log_rec, "%s: state write deferred (Redis unreachable), retrying",
			 state_record_str(rec, "recording_id"));
	return rc < 0 ? rc : 0;
}

void recorder_publish(struct recorder *r, const char *type, const cJSON *rec, const cJSON *extra)
{
	cJSON *ev = cJSON_CreateObject();
	cJSON *data = cJSON_Duplicate(rec, 1);
	char ts[40];
	if (!ev || !data)
		goto fail;
	for (const cJSON *it = extra ? extra->child : NULL; it; it = it->next) {
		cJSON *copy = cJSON_Duplicate(it, 1);
		if (!copy)
			continue;
		if (cJSON_GetObjectItemCaseSensitive(data, it->string))
			cJSON_ReplaceItemInObjectCaseSensitive(data, it->string, copy);
		else
			cJSON_AddItemToObject(data, it->string, copy);
	}
	const char *room = state_record_str(rec, "room_id");
	cJSON_AddStringToObject(ev, "type", type);
	cJSON_AddStringToObject(ev, "room_id", room ? room : "");
	cJSON_AddItemToObject(ev, "data", data);
	data = NULL;
	cJSON_AddStringToObject(ev, "timestamp", time_iso8601(time_wall_ns(), ts, sizeof(ts)));
	char *text = cJSON_PrintUnformatted(ev);
	if (text) {
		int rc = state_publish(r->st, room ? room : "", text);
		if (rc < 0)
			LOG_WARN(&log_rec, "publish %s failed: %s", type, state_strerror(rc));
		free(text);
	}
fail:
	cJSON_Delete(data);
	cJSON_Delete(ev);
}

/* Adds a finished pipeline's counters to the totals (the live ones are
 * added in recorder_metrics). */
static void recorder_add_media_totals(struct recorder *r, const struct media_stats *st)
{
	pthread_mutex_lock(&r->lock);
	r->m.bytes_written += st->bytes_written;
	r->m.video_frames_encoded += st->video_frames_encoded;
	r->m.video_frames_dropped += st->video_frames_dropped;
	r->m.audio_frames_encoded += st->audio_frames_encoded;
	pthread_mutex_unlock(&r->lock);
}

void recorder_count(struct recorder *r, enum recorder_status to)
{
	pthread_mutex_lock(&r->lock);
	if (to == RECORDER_COMPLETED)
		r->m.completed_total++;
	else if (to == RECORDER_FAILED)
		r->m.failed_total++;
	else if (to == RECORDER_CANCELLED)
		r->m.cancelled_total++;
	pthread_mutex_unlock(&r->lock);
}

/* ---- sessions ----------------------------------------------------------- */

static void session_free(struct recorder_session *s)
{
	media_pipeline_free(s->pipeline);
	recorder_rtp_free(s);
	recorder_whip_session_free(s);
	cJSON_Delete(s->rec);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->ev_lock);
	pthread_cond_destroy(&s->ev_cond);
	free(s);
}

void recorder_session_unref(struct recorder_session *s)
{
	if (!s)
		return;
	struct recorder *r = s->r;
	pthread_mutex_lock(&r->lock);
	int left = --s->refs;
	pthread_mutex_unlock(&r->lock);
	if (left == 0)
		session_free(s);
}

/* Returns the live session of 'id' with a reference for the caller, or NULL. */
static struct recorder_session *session_find(struct recorder *r, const char *id)
{
	pthread_mutex_lock(&r->lock);
	struct recorder_session *s = r->sessions;
	while (s && strcmp(s->id, id) != 0)
		s = s->next;
	if (s)
		s->refs++;
	pthread_mutex_unlock(&r->lock);
	return s;
}

/* Takes 's' out of the session list (its reference is dropped by the caller
 * through recorder_session_unref). Session lock held. */
static void session_detach(struct recorder_session *s)
{
	struct recorder *r = s->r;
	s->ended = true;
	recorder_rtp_release(s);
	media_encode_release(s->encode_rate);
	s->encode_rate = 0;
	pthread_mutex_lock(&r->lock);
	for (struct recorder_session **pp = &r->sessions; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			s->next = NULL;
			s->refs--; /* the list's reference; the caller still holds one */
			break;
		}
	}
	if (r->m.active > 0)
		r->m.active--;
	pthread_mutex_unlock(&r->lock);
}

/* Undoes a start whose pipeline did not start for want of its device: the
 * session leaves the list, its record and active slot go from the state
 * store and its folder from the disk (no file was made). Session lock held. */
static void session_withdraw(struct recorder_session *s, const char *dir)
{
	struct recorder *r = s->r;
	media_pipeline_free(s->pipeline);
	s->pipeline = NULL;
	s->status = RECORDER_FAILED;
	session_detach(s);
	pthread_mutex_lock(&r->lock);
	if (r->m.started_total > 0)
		r->m.started_total--;
	pthread_mutex_unlock(&r->lock);
	int rc = state_delete(r->st, s->rec);
	if (rc < 0)
		LOG_WARN(&log_rec, "%s: cannot remove the record of a start that did not happen: %s", s->id,
			 state_strerror(rc));
	state_release(r->st, s->id);
	util_rm_rf(dir);
}

/* Called on pipeline threads: raise a flag and wake whoever waits. */
static void session_on_media_event(void *opaque, enum media_event ev, const char *detail)
{
	struct recorder_session *s = opaque;
	pthread_mutex_lock(&s->ev_lock);
	switch (ev) {
	case MEDIA_EVENT_FIRST_FRAME:
		s->ev_first_frame = true;
		break;
	case MEDIA_EVENT_FAULT:
		s->ev_fault = true;
		util_strlcpy(s->ev_detail, detail ? detail : "pipeline fault", sizeof(s->ev_detail));
		break;
	case MEDIA_EVENT_EOF:
		s->ev_eof = true;
		break;
	case MEDIA_EVENT_SOURCE_STALLED:
	case MEDIA_EVENT_SOURCE_RESUMED:
		break;
	case MEDIA_EVENT_DEGRADED:
	case MEDIA_EVENT_RESTORED:
		s->ev_degrade++;
		break;
	}
	pthread_cond_broadcast(&s->ev_cond);
	pthread_mutex_unlock(&s->ev_lock);
	if (ev == MEDIA_EVENT_DEGRADED) {
		pthread_mutex_lock(&s->r->lock);
		s->r->m.degradations_total++;
		pthread_mutex_unlock(&s->r->lock);
	}
	if (ev == MEDIA_EVENT_SOURCE_STALLED || ev == MEDIA_EVENT_SOURCE_RESUMED)
		recorder_source_note_stall(s, ev == MEDIA_EVENT_SOURCE_STALLED);
	recorder_control_kick(s->r);
}

void recorder_session_fail(struct recorder_session *s, const char *why)
{
	struct recorder *r = s->r;
	struct media_stats st = { 0 };
	if (s->pipeline) {
		media_pipeline_stats(s->pipeline, &st);
		media_pipeline_free(s->pipeline);
		s->pipeline = NULL;
		recorder_add_media_totals(r, &st);
		/* The encoder's frames and the queues are gone: give the pages
		 * glibc keeps for reuse back to the system. */
		malloc_trim(0);
	}
	LOG_ERROR(&log_rec, "%s: recording failed: %s", s->id, why);
	rec_apply_stats(s->rec, &st, s->live_path);
	rec_set_status(s->rec, RECORDER_FAILED);
	state_record_set_time(s->rec, "stopped_at", time_wall_ns());
	state_record_set_str(s->rec, "error", why);
	s->status = RECORDER_FAILED;
	session_detach(s);
	recorder_put(r, s->rec);
	state_release(r->st, s->id);
	recorder_publish(r, recorder_op_event(RECORDER_EV_FAULT), s->rec, NULL);
	recorder_count(r, RECORDER_FAILED);
}

/* The video went up or down the degradation ladder: the record's
 * metadata.degradation says where it stands and a recording_degraded event
 * tells the room, with the newest move as "step", "direction" and "detail". */
static void session_apply_degradation(struct recorder_session *s, unsigned seen)
{
	struct media_stats st;
	s->ev_degrade_seen = seen;
	if (!s->pipeline)
		return;
	media_pipeline_stats(s->pipeline, &st);
	rec_apply_degradation(s->rec, &st);
	recorder_put(s->r, s->rec);
	cJSON *extra = cJSON_CreateObject();
	if (extra && st.degrade_moves > 0) {
		uint32_t last = st.degrade_moves <= MEDIA_DEGRADE_LOG_MAX ? st.degrade_moves - 1 : MEDIA_DEGRADE_LOG_MAX - 1;
		degrade_step_json(extra, &st.degrade_log[last]);
	}
	recorder_publish(s->r, "recording_degraded", s->rec, extra);
	cJSON_Delete(extra);
}

/* A fault that is the disk filling up is not a broken recording: what was
 * written is good. Like the low-water stop, the recording stops and goes
 * to processing (which finalizes the file, in place when there is no room
 * for a copy); metadata.stop_reason = "disk_full" and the stop event's
 * reason say why. Returns true when it handled the fault. */
static bool recorder_session_disk_full(struct recorder_session *s, const char *detail)
{
	struct media_stats st = { 0 };
	if (!s->pipeline || (s->status != RECORDER_RECORDING && s->status != RECORDER_PAUSED))
		return false;
	media_pipeline_stats(s->pipeline, &st);
	if (!st.disk_full)
		return false;
	char err[256];
	cJSON *m = recorder_rec_metadata(s->rec);
	recorder_json_set(m, "stop_reason", cJSON_CreateString("disk_full"));
	recorder_json_set(m, "stop_detail", cJSON_CreateString(detail));
	LOG_WARN(&log_rec, "%s: the disk is full (%s); stopping and finalizing what was written", s->id, detail);
	if (recorder_session_stop(s, RECORDER_OP_STOP, "disk_full", err, sizeof(err)) < 0) {
		LOG_ERROR(&log_rec, "%s: stop at disk full: %s", s->id, err);
		return false;
	}
	return true;
}

void recorder_session_apply_events(struct recorder_session *s)
{
	if (s->ended)
		return;
	pthread_mutex_lock(&s->ev_lock);
	bool first = s->ev_first_frame, fault = s->ev_fault, eof = s->ev_eof;
	unsigned degrade = s->ev_degrade;
	char detail[RECORDER_DETAIL_MAX];
	util_strlcpy(detail, s->ev_detail, sizeof(detail));
	pthread_mutex_unlock(&s->ev_lock);
	if (degrade != s->ev_degrade_seen)
		session_apply_degradation(s, degrade);

	enum recorder_status to;
	if (first && !s->ev_first_frame_seen) {
		s->ev_first_frame_seen = true;
		if (recorder_fsm_step(s->status, RECORDER_EV_FIRST_FRAME, &to) == 200) {
			s->status = to;
			rec_set_status(s->rec, to);
			recorder_put(s->r, s->rec);
		}
	}
	if (s->rtp)
		recorder_rtp_apply(s);
	else
		recorder_source_apply_stall(s, "source");
	if (fault && recorder_session_disk_full(s, detail))
		return;
	if (fault) {
		recorder_session_fail(s, detail);
		return;
	}
	if (eof) {
		char err[256];
		if (s->status == RECORDER_PENDING)
			recorder_session_fail(s, "the source ended before its first frame");
		else if (recorder_session_stop(s, RECORDER_OP_STOP, "source_ended", err, sizeof(err)) < 0)
			LOG_ERROR(&log_rec, "%s: stop at end of source: %s", s->id, err);
	}
}

int recorder_session_stop(struct recorder_session *s, enum recorder_op op, const char *reason,
			  char *err, size_t errlen)
{
	struct recorder *r = s->r;
	enum recorder_status to;
	if (recorder_fsm_step(s->status, op, &to) != 200) {
		snprintf(err, errlen, "cannot stop a %s recording", recorder_status_name(s->status));
		return -1;
	}
	struct media_stats st = { 0 };
	bool repair = false;
	if (s->pipeline) {
		char perr[256] = "";
		if (media_pipeline_stop(s->pipeline, perr, sizeof(perr)) < 0) {
			/* The file may lack its Duration/Cues: the worker repairs it. */
			LOG_WARN(&log_rec, "%s: finalize at stop failed (%s); repairing in processing", s->id, perr);
			repair = true;
		}
		media_pipeline_stats(s->pipeline, &st);
		media_pipeline_free(s->pipeline);
		s->pipeline = NULL;
		recorder_add_media_totals(r, &st);
		/* The encoder's frames and the queues are gone: give the pages
		 * glibc keeps for reuse back to the system. */
		malloc_trim(0);
	}
	rec_apply_stats(s->rec, &st, s->live_path);
	rec_set_status(s->rec, to);
	state_record_set_time(s->rec, "stopped_at", time_wall_ns());
	s->status = to;
	session_detach(s);
	recorder_put(r, s->rec);
	state_release(r->st, s->id);

	cJSON *extra = cJSON_CreateObject();
	if (extra) {
		cJSON_AddNumberToObject(extra, "duration", seconds_ms(st.active_duration_ns));
		cJSON_AddStringToObject(extra, "reason", reason);
	}
	recorder_publish(r, recorder_op_event(op), s->rec, extra);
	cJSON_Delete(extra);
	LOG_INFO(&log_rec, "%s: stopped (%s) after %.3f s, %llu bytes", s->id, reason,
		 seconds_ms(st.active_duration_ns), (unsigned long long)st.bytes_written);

	cJSON *copy = cJSON_Duplicate(s->rec, 1);
	if (recorder_worker_submit(r, s->id, repair, copy) < 0)
		LOG_WARN(&log_rec, "%s: processing queue full; the next rescan takes it", s->id);
	return 0;
}

void recorder_session_refresh(struct recorder_session *s)
{
	if (s->ended || !s->pipeline || s->status != RECORDER_RECORDING)
		return;
	int64_t now = time_mono_ns();
	if (now - s->refreshed_mono_ns < RECORDER_REFRESH_MS * TIME_NS_PER_MS)
		return;
	s->refreshed_mono_ns = now;
	struct media_stats st;
	media_pipeline_stats(s->pipeline, &st);
	rec_apply_stats(s->rec, &st, NULL);
	recorder_put(s->r, s->rec);
}

/* ---- the authorization decision ------------------------------------------ */

static bool caller_is_admin(const struct recorder_caller *caller)
{
	const cJSON *roles = caller->claims ? cJSON_GetObjectItemCaseSensitive(caller->claims, "roles") : NULL;
	if (cJSON_IsString(roles))
		return strcmp(roles->valuestring, "admin") == 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, roles)
		if (cJSON_IsString(it) && strcmp(it->valuestring, "admin") == 0)
			return true;
	return false;
}

bool recorder_authorize(struct recorder *r, const struct recorder_caller *caller,
			enum recorder_op op, const cJSON *rec, struct recorder_verdict *v)
{
	struct recorder_verdict local;
	if (!v)
		v = &local;
	bool known = caller && caller->user_id && caller->user_id[0];
	bool owner = false;
	if (known && rec) {
		const char *uid = state_record_str(rec, "user_id");
		owner = uid && strcmp(uid, caller->user_id) == 0;
	}
	bool def;
	const char *why = "only the owner of the recording may do this";
	switch (op) {
	case RECORDER_OP_START:
	case RECORDER_OP_LIST:
	case RECORDER_OP_LIST_USER:
	case RECORDER_OP_STATUS:
		def = known;
		break;
	case RECORDER_OP_DOWNLOAD:
		def = owner || (known && caller_is_admin(caller));
		why = "only the owner of the recording may fetch its files";
		break;
	case RECORDER_OP_DELETE:
		def = owner || (known && caller_is_admin(caller));
		why = "only the owner of the recording or an admin may delete it";
		break;
	case RECORDER_OP_ADMIN:
		def = known && caller_is_admin(caller);
		why = "the admin role is required";
		break;
	default:
		def = owner;
		break;
	}
	if (!known)
		why = "authentication required";
	pthread_mutex_lock(&r->lock);
	recorder_authorize_fn fn = r->authz;
	void *opaque = r->authz_opaque;
	pthread_mutex_unlock(&r->lock);
	v->allow = def;
	v->status = def ? 0 : 403;
	util_strlcpy(v->reason, def ? "" : why, sizeof(v->reason));
	if (fn && known) {
		struct recorder_verdict hv = { .allow = false, .status = 403, .reason = "" };
		hv.allow = fn(opaque, caller, op, rec, def, &hv);
		if (!hv.allow) {
			if (hv.status != 404)
				hv.status = 403;
			if (!hv.reason[0])
				util_strlcpy(hv.reason, "forbidden by policy", sizeof(hv.reason));
		} else {
			hv.status = 0;
			hv.reason[0] = 0;
		}
		*v = hv;
	}
	return v->allow;
}

struct recorder_caller recorder_caller_of(const cJSON *claims)
{
	const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
	return (struct recorder_caller){ .user_id = cJSON_IsString(sub) ? sub->valuestring : "", .claims = claims };
}

/* The recording format asked, or the configured default; false after a
 * 400 reply when it is none of webm, mp4, mkv. */
bool recorder_format_or_default(struct recorder *r, const char **format, struct recorder_reply *out)
{
	if (!*format || !(*format)[0])
		*format = r->default_format;
	if (!recorder_format_valid(*format)) {
		reply_error(out, 400, "invalid_format", "unknown recording_format; use webm, mp4 or mkv");
		return false;
	}
	return true;
}

void recorder_set_authorizer(struct recorder *r, recorder_authorize_fn fn, void *opaque)
{
	pthread_mutex_lock(&r->lock);
	r->authz = fn;
	r->authz_opaque = opaque;
	pthread_mutex_unlock(&r->lock);
}

/* ---- requests ------------------------------------------------------------ */

/* The cap on records one user may have stored (recorder.max_stored_per_user):
 * adds 'id' to the user's index, or replies 429 when the user is at the
 * cap. An unreachable store does not refuse here: admission, next, answers
 * 503 then. Returns true when the start may go on. */
static bool recorder_stored_cap_allows(struct recorder *r, const char *user_id, const char *id,
				       struct recorder_reply *out)
{
	long long n = 0;
	if (r->max_stored_per_user <= 0)
		return true;
	int rc = state_user_record_add(r->st, user_id, id, r->max_stored_per_user, &n);
	if (rc != STATE_REFUSED)
		return true;
	pthread_mutex_lock(&r->lock);
	r->m.refused_total++;
	pthread_mutex_unlock(&r->lock);
	reply_error(out, 429, "too_many_records",
		    "user '%s' has %lld stored recordings (limit %d): delete finished ones (DELETE on a "
		    "completed or failed recording) or wait until they expire",
		    user_id, n, r->max_stored_per_user);
	return false;
}


void recorder_start(struct recorder *r, const struct recorder_caller *caller,
		    const char *room_id, const char *format, const char *quality,
		    struct recorder_reply *out)
{
	recorder_start_with(r, caller, room_id, format, quality, NULL, out);
}

void recorder_start_with(struct recorder *r, const struct recorder_caller *caller,
			 const char *room_id, const char *format, const char *quality,
			 const struct recorder_start_opts *opts, struct recorder_reply *out)
{
	char err[256] = "", reason[256] = "";
	struct recorder_session *s = NULL;
	cJSON *rec = NULL;
	bool admitted = false, dir_made = false;
	char id[UUID_STR_LEN], dir[RECORDER_PATH_MAX] = "";

	out->status = 500;
	out->body = NULL;
	if (!recorder_room_id_valid(room_id)) {
		reply_error(out, 400, "invalid_room_id", "room ids are 1 to 128 characters of A-Z a-z 0-9 . _ -, not . or ..");
		return;
	}
	if (!recorder_format_or_default(r, &format, out))
		return;
	if (!quality || !quality[0])
		quality = r->default_quality;
	const struct media_preset *preset = media_preset_find(quality);
	if (!preset) {
		reply_error(out, 400, "invalid_quality", "unknown quality; use low, medium, high or ultra");
		return;
	}
	if (media_preset_check(preset, format, err, sizeof(err)) < 0) {
		reply_error(out, 400, "invalid_quality", "%s", err);
		return;
	}
	struct recorder_verdict v;
	if (!recorder_authorize(r, caller, RECORDER_OP_START, NULL, &v)) {
		reply_denied(out, &v);
		return;
	}

	char source[64], args[600];
	if (opts && opts->source) {
		/* The source is given (a WHIP publisher), not the room's. */
		util_strlcpy(source, opts->source, sizeof(source));
		util_strlcpy(args, opts->args ? opts->args : "", sizeof(args));
	} else if (recorder_policy_source(r, room_id, source, sizeof(source), args, sizeof(args)) < 0) {
		reply_error(out, 503, "policy_unavailable", "the source policy (sources.lua) failed for room %s; "
			    "an admin finds why in /api/system/policies", room_id);
		return;
	}
	/* A `whip` room records the RTP of a WHIP publisher who comes later
	 * (recorder_whip.c): to admission and the encode budget it is rtp. */
	bool whip_wait = strcmp(source, "whip") == 0;
	if (whip_wait)
		util_strlcpy(source, "rtp", sizeof(source));
	int64_t max_duration_ms = r->max_duration_ms;
	int user_limit = r->max_per_user;
	bool admit_fallback = false;
	int prc = recorder_policy_admit(r, caller, room_id, source, args, format, &preset, &max_duration_ms,
					&user_limit, &admit_fallback, reason, sizeof(reason));
	if (prc != 0) {
		pthread_mutex_lock(&r->lock);
		r->m.refused_total++;
		pthread_mutex_unlock(&r->lock);
		if (prc == 507)
			recorder_storage_refused(r, room_id, caller->user_id, reason);
		reply_error(out, prc, prc == 507 ? "insufficient_storage" : prc == 403 ? "forbidden"
				      : prc == 503 ? "policy_unavailable" : "limit_reached", "%s", reason);
		return;
	}
	/* The node's encode budget, across every live recording here: a start
	 * that cannot be encoded in real time next to the others is refused
	 * (503: this node's capacity, like a used-up RTP port range; it frees
	 * when recordings end) instead of making every recording drop frames.
	 * quota.lua may have lowered the preset to fit (downgrade_when_busy).
	 * The recording gets the encoder's quality speed while that fits, else
	 * the dense speed (media_preset.c). */
	struct media_encode_grant grant;
	if (media_encode_reserve(media_encode_cost(preset, source, args), &grant, reason, sizeof(reason)) < 0) {
		pthread_mutex_lock(&r->lock);
		r->m.refused_total++;
		r->encode_refused++;
		pthread_mutex_unlock(&r->lock);
		LOG_WARN(&log_rec, "start in room %s at %s refused: %s", room_id, preset->name, reason);
		reply_error(out, 503, "encode_capacity", "%s (quality %s; try a lower quality or later)",
			    reason, preset->name);
		return;
	}

	util_uuid_v4(id);
	if (!recorder_stored_cap_allows(r, caller->user_id, id, out)) {
		media_encode_release(grant.rate);
		return;
	}
	int rc = state_admit(r->st, id, caller->user_id, r->max_concurrent, user_limit,
			     reason, sizeof(reason));
	if (rc == STATE_REFUSED) {
		media_encode_release(grant.rate);
		pthread_mutex_lock(&r->lock);
		r->m.refused_total++;
		pthread_mutex_unlock(&r->lock);
		reply_error(out, 400, "limit_reached", "%s", reason[0] ? reason : "concurrent recording limit reached");
		return;
	}
	if (rc < 0) {
		media_encode_release(grant.rate);
		reply_error(out, 503, "state_unavailable", "recording state store unavailable: %s", state_strerror(rc));
		return;
	}
	admitted = true;

	char resolution[32], file_name[64];
	recorder_dir_of(r, id, dir, sizeof(dir));
	snprintf(resolution, sizeof(resolution), "%dx%d", preset->width, preset->height);
	snprintf(file_name, sizeof(file_name), "recording_%s.%s", id, format);
	struct state_record_init init = {
		.recording_id = id,
		.room_id = room_id,
		.user_id = caller->user_id,
		.format = format,
		.quality = preset->name,
		.resolution = resolution,
		.video_bitrate = preset->video_bitrate_text,
		.audio_bitrate = preset->audio_bitrate_text,
		.fps = preset->fps,
		.storage_backend = r->storage_backend,
		.local_path = dir,
		.file_name = file_name,
	};
	rec = state_record_new(&init, err, sizeof(err));
	if (!rec) {
		reply_error(out, 500, "internal", "cannot build the recording: %s", err);
		goto fail;
	}
	recorder_policy_note_admission(r, rec, admit_fallback, max_duration_ms);
	if (opts && opts->meta_key && opts->meta) {
		cJSON *m = recorder_rec_metadata(rec), *copy = cJSON_Duplicate(opts->meta, 1);
		if (m && copy)
			recorder_json_set(m, opts->meta_key, copy);
		else
			cJSON_Delete(copy);
	}
	int mrc = util_mkdir_p(dir, UTIL_MEDIA_DIR_MODE);
	if (mrc < 0) {
		reply_error(out, 500, "storage_unavailable", "cannot create %s: %s", dir, strerror(-mrc));
		goto fail;
	}
	dir_made = true;

	s = calloc(1, sizeof(*s));
	if (!s) {
		reply_error(out, 500, "internal", "out of memory");
		goto fail;
	}
	s->r = r;
	s->refs = 2; /* the list's and ours */
	util_strlcpy(s->id, id, sizeof(s->id));
	util_strlcpy(s->room_id, room_id, sizeof(s->room_id));
	util_strlcpy(s->user_id, caller->user_id, sizeof(s->user_id));
	recorder_live_path(r, id, format, s->live_path, sizeof(s->live_path));
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->ev_lock, NULL);
	pthread_cond_init(&s->ev_cond, NULL);
	s->status = RECORDER_PENDING;
	s->max_duration_ns = max_duration_ms * TIME_NS_PER_MS;
	s->encode_rate = grant.rate; /* from here on the session gives it back */
	grant.rate = 0;
	s->rec = rec;
	rec = NULL;

	if (whip_wait && recorder_whip_wait(s, format, preset, args, sizeof(args), out) < 0)
		goto fail;
	int rtp_rc = recorder_rtp_prepare(s, source, format, args, sizeof(args), err, sizeof(err));
	if (rtp_rc) {
		reply_error(out, rtp_rc, rtp_rc == 400 ? "invalid_format" : "rtp_ports_unavailable", "%s", err);
		goto fail;
	}
	struct media_pipeline_config pc = {
		.source = source,
		.source_args = args,
		.preset = preset,
		.format = format,
		.output_path = s->live_path,
		.dense = grant.dense,
		.on_event = session_on_media_event,
		.opaque = s,
	};
	s->pipeline = media_pipeline_new(&pc, err, sizeof(err));
	if (!s->pipeline) {
		reply_error(out, 500, "pipeline_failed", "cannot set up the recording of room %s (source %s): %s",
			    room_id, source, err);
		goto fail;
	}
	recorder_put(r, s->rec);

	pthread_mutex_lock(&s->lock);
	pthread_mutex_lock(&r->lock);
	s->next = r->sessions;
	r->sessions = s;
	r->m.active++;
	r->m.started_total++;
	r->encode_dense += grant.dense;
	pthread_mutex_unlock(&r->lock);
	s->started_mono_ns = time_mono_ns();
	s->refreshed_mono_ns = s->started_mono_ns;
	int start_rc = media_pipeline_start(s->pipeline, err, sizeof(err));
	if (start_rc == -ENOENT || start_rc == -EBUSY) {
		/* The room's device (a camera) is missing or held by another
		 * program: nothing was recorded, so nothing is left behind. */
		session_withdraw(s, dir);
		reply_error(out, start_rc == -EBUSY ? 409 : 503, start_rc == -EBUSY ? "device_busy" : "device_unavailable",
			    "cannot record room %s (source %s): %s", room_id, source, err);
		pthread_mutex_unlock(&s->lock);
		recorder_session_unref(s);
		return;
	}
	if (start_rc < 0) {
		char why[400];
		snprintf(why, sizeof(why), "the media pipeline did not start: %s", err);
		recorder_session_fail(s, why);
		reply_error(out, 500, "pipeline_failed", "cannot start the recording of room %s (source %s): %s",
			    room_id, source, err);
		pthread_mutex_unlock(&s->lock);
		recorder_session_unref(s);
		return;
	}
	/* The lifecycle policy hears of a start only once the pipeline runs:
	 * a start refused at the device (409/503 above) leaves no trace. */
	if (r->pol) {
		recorder_lifecycle_event(r, RECORDER_PENDING, s->rec);
		recorder_put(r, s->rec); /* with the tags it may have added */
	}
	pthread_mutex_unlock(&s->lock);
	LOG_INFO(&log_rec, "%s: started in room %s for %s (%s, %s, source %s)", id, room_id,
		 caller->user_id, format, preset->name, source);

	/* Wait for the first frame (or a fault) so the reply usually shows
	 * "recording"; the control thread applies it too if we time out. */
	bool no_wait = (opts && opts->no_wait) || whip_wait; /* a publisher has yet to come */
	int64_t deadline = time_mono_ns() + (no_wait ? 0 : RECORDER_START_WAIT_MS) * TIME_NS_PER_MS;
	pthread_mutex_lock(&s->ev_lock);
	while (!s->ev_first_frame && !s->ev_fault && !s->ev_eof) {
		int64_t left = deadline - time_mono_ns();
		if (left <= 0)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t abs_ns = (int64_t)ts.tv_sec * TIME_NS_PER_SEC + ts.tv_nsec + left;
		ts.tv_sec = abs_ns / TIME_NS_PER_SEC;
		ts.tv_nsec = abs_ns % TIME_NS_PER_SEC;
		pthread_cond_timedwait(&s->ev_cond, &s->ev_lock, &ts);
	}
	pthread_mutex_unlock(&s->ev_lock);

	pthread_mutex_lock(&s->lock);
	recorder_session_apply_events(s);
	if (s->status == RECORDER_FAILED) {
		reply_error(out, 500, "pipeline_failed", "the recording failed at start: %s",
			    state_record_str(s->rec, "error") ? state_record_str(s->rec, "error") : "unknown");
	} else {
		if (s->status != RECORDER_CANCELLED)
			recorder_publish(r, recorder_op_event(RECORDER_OP_START), s->rec, NULL);
		reply_record(out, s->rec);
	}
	pthread_mutex_unlock(&s->lock);
	recorder_session_unref(s);
	return;

fail:
	media_encode_release(grant.rate);
	if (s) {
		media_encode_release(s->encode_rate);
		cJSON_Delete(s->rec);
		media_pipeline_free(s->pipeline);
		recorder_rtp_free(s);
		recorder_whip_session_free(s);
		pthread_mutex_destroy(&s->lock);
		pthread_mutex_destroy(&s->ev_lock);
		pthread_cond_destroy(&s->ev_cond);
		free(s);
	}
	cJSON_Delete(rec);
	if (dir_made)
		util_rm_rf(dir);
	if (admitted)
		state_release(r->st, id);
	if (!out->body)
		reply_error(out, 500, "internal", "start failed");
}

/* What a request on one recording finds: the live session (locked, with a
 * reference) or the stored record. Returns true when the request may go on;
 * otherwise 'out' holds the error. */
struct found {
	struct recorder_session *s; /* locked, referenced; NULL when not live here */
	cJSON *stored;              /* owned; NULL when 's' is set */
	const cJSON *rec;           /* s->rec or stored */
};

/* Ends a request on what request_find() found: unlocks and releases the
 * live session, frees the stored record. */
static void request_done(struct found *f)
{
	if (f->s) {
		pthread_mutex_unlock(&f->s->lock);
		recorder_session_unref(f->s);
	}
	cJSON_Delete(f->stored);
}

static bool request_find(struct recorder *r, const struct recorder_caller *caller, const char *room_id,
			 const char *id, enum recorder_op op, struct found *f, struct recorder_reply *out)
{
	memset(f, 0, sizeof(*f));
	out->status = 500;
	out->body = NULL;
	if (!recorder_room_id_valid(room_id)) {
		reply_error(out, 400, "invalid_room_id", "room ids are 1 to 128 characters of A-Z a-z 0-9 . _ -, not . or ..");
		return false;
	}
	if (!recorder_recording_id_valid(id)) {
		reply_error(out, 400, "invalid_recording_id", "recording ids are uuids");
		return false;
	}
	f->s = session_find(r, id);
	if (f->s) {
		pthread_mutex_lock(&f->s->lock);
		recorder_session_apply_events(f->s);
		if (f->s->ended) {
			pthread_mutex_unlock(&f->s->lock);
			recorder_session_unref(f->s);
			f->s = NULL;
		}
	}
	if (f->s) {
		f->rec = f->s->rec;
	} else {
		f->stored = state_get(r->st, id);
		if (!f->stored) {
			if (!state_healthy(r->st))
				reply_error(out, 503, "state_unavailable", "recording state store unavailable");
			else
				reply_error(out, 404, "not_found", "recording %s not found", id);
			return false;
		}
		f->rec = f->stored;
	}
	const char *room = state_record_str(f->rec, "room_id");
	if (!room || strcmp(room, room_id) != 0) {
		reply_error(out, 404, "not_found", "recording %s not found in room %s", id, room_id);
		goto refuse;
	}
	/* DELETE on a finished recording is a delete, authorized as one. */
	if (op == RECORDER_OP_CANCEL && !f->s &&
	    (rec_status(f->rec) == RECORDER_COMPLETED || rec_status(f->rec) == RECORDER_FAILED))
		op = RECORDER_OP_DELETE;
	struct recorder_verdict v;
	if (!recorder_authorize(r, caller, op, f->rec, &v)) {
		reply_denied(out, &v);
		goto refuse;
	}
	return true;
refuse:
	request_done(f);
	memset(f, 0, sizeof(*f));
	return false;
}

/* Checks 'op' against the recording's status; fills 'out' and returns
 * false when refused. A recording live on another node cannot be driven
 * from here. */
static bool request_transition(struct found *f, enum recorder_op op, enum recorder_status *to,
			       struct recorder_reply *out)
{
	enum recorder_status from = f->s ? f->s->status : rec_status(f->rec);
	if (recorder_fsm_step(from, op, to) != 200) {
		reply_error(out, 400, "invalid_transition", "cannot %s a recording that is %s",
			    recorder_op_name(op), recorder_status_name(from));
		return false;
	}
	if (!f->s && recorder_status_live(from) && op != RECORDER_OP_STATUS) {
		reply_error(out, 409, "wrong_node", "recording %s is captured by another node",
			    state_record_str(f->rec, "recording_id"));
		return false;
	}
	return true;
}

void recorder_stop(struct recorder *r, const struct recorder_caller *caller,
		   const char *room_id, const char *recording_id, struct recorder_reply *out)
{
	struct found f;
	enum recorder_status to;
	char err[256];
	if (!request_find(r, caller, room_id, recording_id, RECORDER_OP_STOP, &f, out))
		return;
	if (request_transition(&f, RECORDER_OP_STOP, &to, out)) {
		if (recorder_session_stop(f.s, RECORDER_OP_STOP, "requested", err, sizeof(err)) < 0)
			reply_error(out, 500, "internal", "%s", err);
		else
			reply_record(out, f.s->rec);
	}
	request_done(&f);
}

/* Pauses or resumes ('op') a live recording: the pipeline first, then the
 * record (status, paused_at/resumed_at; a pause also keeps the stats so
 * far), the store, the event and the reply. A resume also kicks the
 * control thread. */
static void request_pause_resume(struct recorder *r, const struct recorder_caller *caller,
				 const char *room_id, const char *recording_id, enum recorder_op op,
				 struct recorder_reply *out)
{
	struct found f;
	enum recorder_status to;
	bool pause = op == RECORDER_OP_PAUSE;
	if (!request_find(r, caller, room_id, recording_id, op, &f, out))
		return;
	if (request_transition(&f, op, &to, out)) {
		struct recorder_session *s = f.s;
		int prc = pause ? media_pipeline_pause(s->pipeline) : media_pipeline_resume(s->pipeline);
		if (prc < 0) {
			reply_error(out, 500, "pipeline_failed", "the pipeline refused to %s",
				    pause ? "pause" : "resume");
		} else {
			struct media_stats st = { 0 };
			if (pause)
				media_pipeline_stats(s->pipeline, &st);
			s->status = to;
			rec_set_status(s->rec, to);
			state_record_set_time(s->rec, pause ? "paused_at" : "resumed_at", time_wall_ns());
			if (pause)
				rec_apply_stats(s->rec, &st, NULL);
			recorder_put(r, s->rec);
			recorder_publish(r, recorder_op_event(op), s->rec, NULL);
			reply_record(out, s->rec);
			if (!pause)
				recorder_control_kick(r);
		}
	}
	request_done(&f);
}

void recorder_pause(struct recorder *r, const struct recorder_caller *caller,
		    const char *room_id, const char *recording_id, struct recorder_reply *out)
{
	request_pause_resume(r, caller, room_id, recording_id, RECORDER_OP_PAUSE, out);
}

void recorder_resume(struct recorder *r, const struct recorder_caller *caller,
		     const char *room_id, const char *recording_id, struct recorder_reply *out)
{
	request_pause_resume(r, caller, room_id, recording_id, RECORDER_OP_RESUME, out);
}

void recorder_cancel(struct recorder *r, const struct recorder_caller *caller,
		     const char *room_id, const char *recording_id, struct recorder_reply *out)
{
	struct found f;
	enum recorder_status to;
	if (!request_find(r, caller, room_id, recording_id, RECORDER_OP_CANCEL, &f, out))
		return;
	enum recorder_status now = f.s ? f.s->status : rec_status(f.rec);
	if (!f.s && recorder_fsm_step(now, RECORDER_OP_DELETE, &to) == 200) {
		/* Completed or failed: deleted for good (recorder_delete.c). */
		cJSON *gone = NULL;
		char code[32], err[512];
		int st = recorder_delete_final(r, f.rec, &gone, code, sizeof(code), err, sizeof(err));
		if (st == 200)
			reply_record(out, gone);
		else
			reply_error(out, st, code, "%s", err);
		cJSON_Delete(gone);
	} else if (!f.s && rec_status(f.rec) == RECORDER_PROCESSING) {
		/* Processing: the worker stops, aborts the upload and removes
		 * the files (recorder_worker_cancel). */
		cJSON *cur = NULL;
		char err[256] = "";
		int rc = recorder_worker_cancel(r, f.rec, &cur, err, sizeof(err));
		if (rc == 0) {
			LOG_INFO(&log_rec, "%s: cancelled during processing", recording_id);
			reply_record(out, cur);
		} else if (rc == 1) {
			reply_error(out, 400, "invalid_transition", "cannot cancel a recording that is %s",
				    recorder_status_name(rec_status(cur)));
		} else if (rc == -2) {
			reply_error(out, 409, "wrong_node", "%s", err);
		} else {
			reply_error(out, 500, "internal", "cancel failed: %s", err);
		}
		cJSON_Delete(cur);
	} else if (request_transition(&f, RECORDER_OP_CANCEL, &to, out)) {
		struct recorder_session *s = f.s;
		struct media_stats st = { 0 };
		if (s->pipeline) {
			media_pipeline_stats(s->pipeline, &st);
			media_pipeline_free(s->pipeline);
			s->pipeline = NULL;
			recorder_add_media_totals(r, &st);
		}
		char dir[RECORDER_PATH_MAX];
		recorder_dir_of(r, s->id, dir, sizeof(dir));
		int rc = util_rm_rf(dir);
		if (rc < 0)
			LOG_ERROR(&log_rec, "%s: cannot remove %s: %s", s->id, dir, strerror(-rc));
		s->status = to;
		rec_set_status(s->rec, to);
		state_record_set_time(s->rec, "stopped_at", time_wall_ns());
		state_record_set_number(s->rec, "duration_seconds", seconds_ms(st.active_duration_ns));
		state_record_set_number(s->rec, "file_size_bytes", 0);
		session_detach(s);
		recorder_put(r, s->rec);
		state_release(r->st, s->id);
		recorder_publish(r, recorder_op_event(RECORDER_OP_CANCEL), s->rec, NULL);
		recorder_count(r, RECORDER_CANCELLED);
		LOG_INFO(&log_rec, "%s: cancelled, files removed", s->id);
		reply_record(out, s->rec);
	}
	request_done(&f);
}

void recorder_status(struct recorder *r, const struct recorder_caller *caller,
		     const char *room_id, const char *recording_id, struct recorder_reply *out)
{
	struct found f;
	if (!request_find(r, caller, room_id, recording_id, RECORDER_OP_STATUS, &f, out))
		return;
	reply_record(out, f.rec);
	/* A live recording shows its duration so far. */
	if (out->status == 200 && f.s && f.s->pipeline) {
		struct media_stats st;
		media_pipeline_stats(f.s->pipeline, &st);
		rec_apply_stats(out->body, &st, NULL);
	}
	request_done(&f);
}

void recorder_download(struct recorder *r, const struct recorder_caller *caller,
		       const char *room_id, const char *recording_id, struct recorder_reply *out)
{
	struct found f;
	if (!request_find(r, caller, room_id, recording_id, RECORDER_OP_DOWNLOAD, &f, out))
		return;
	reply_record(out, f.rec);
	request_done(&f);
}

void recorder_list_room(struct recorder *r, const struct recorder_caller *caller,
			const char *room_id, struct recorder_reply *out)
{
	out->status = 500;
	out->body = NULL;
	if (!recorder_room_id_valid(room_id)) {
		reply_error(out, 400, "invalid_room_id", "room ids are 1 to 128 characters of A-Z a-z 0-9 . _ -, not . or ..");
		return;
	}
	struct recorder_verdict v;
	if (!recorder_authorize(r, caller, RECORDER_OP_LIST, NULL, &v)) {
		reply_denied(out, &v);
		return;
	}
	cJSON *arr = state_list_room(r->st, room_id);
	if (!arr) {
		reply_error(out, 503, "state_unavailable", "recording state store unavailable");
		return;
	}
	reply_list(out, arr);
}

void recorder_list_user(struct recorder *r, const struct recorder_caller *caller,
			const char *status, struct recorder_reply *out)
{
	enum recorder_status s;
	out->status = 500;
	out->body = NULL;
	if (status && status[0] && recorder_status_parse(status, &s) < 0) {
		reply_error(out, 400, "invalid_status",
			    "unknown status; use pending, recording, paused, processing, completed, failed or cancelled");
		return;
	}
	struct recorder_verdict v;
	if (!recorder_authorize(r, caller, RECORDER_OP_LIST_USER, NULL, &v)) {
		reply_denied(out, &v);
		return;
	}
	/* An admin lists every user's recordings (SPEC §9); whether the
	 * caller is one is the authorization's call (auth.lua, "admin"). */
	bool all = recorder_authorize(r, caller, RECORDER_OP_ADMIN, NULL, NULL);
	const char *filter = status && status[0] ? status : NULL;
	cJSON *arr = all ? state_list_all(r->st, filter) : state_list_user(r->st, caller->user_id, filter);
	if (!arr) {
		reply_error(out, 503, "state_unavailable", "recording state store unavailable");
		return;
	}
	reply_list(out, arr);
}

/* ---- events, metrics, health -------------------------------------------- */

/* Room events arrive on the state module's subscriber thread, which has no
 * way to unsubscribe and may outlive the recorder (main frees the recorder
 * before the state). So the subscription's opaque is a small relay, not the
 * recorder: relays stay on one list for the life of the process and
 * recorder_free detaches its relay under the same lock that every delivery
 * holds, so no delivery runs into a freed recorder. */
struct recorder_relay {
	struct recorder_relay *next;
	struct recorder *r; /* NULL once the recorder is gone */
};

static pthread_mutex_t relay_lock = PTHREAD_MUTEX_INITIALIZER;
static struct recorder_relay *relays;

static void recorder_event_relay(void *opaque, const char *room_id, const char *event_json)
{
	struct recorder_relay *relay = opaque;
	pthread_mutex_lock(&relay_lock);
	struct recorder *r = relay->r;
	if (r) {
		pthread_mutex_lock(&r->lock);
		void (*cb)(void *, const char *, const char *) = r->event_cb;
		void *cb_opaque = r->event_opaque;
		pthread_mutex_unlock(&r->lock);
		if (cb)
			cb(cb_opaque, room_id, event_json);
	}
	pthread_mutex_unlock(&relay_lock);
}

/* Detaches the recorder from its relay; waits for a delivery in progress. */
static void recorder_relay_detach(struct recorder *r)
{
	pthread_mutex_lock(&relay_lock);
	if (r->relay)
		r->relay->r = NULL;
	r->relay = NULL;
	pthread_mutex_unlock(&relay_lock);
}

int recorder_on_event(struct recorder *r,
		      void (*cb)(void *opaque, const char *room_id, const char *event_json),
		      void *opaque)
{
	/* Under relay_lock: a delivery in progress finishes first, so once this
	 * returns the previous callback is neither running nor called again. */
	pthread_mutex_lock(&relay_lock);
	pthread_mutex_lock(&r->lock);
	r->event_cb = cb;
	r->event_opaque = opaque;
	pthread_mutex_unlock(&r->lock);
	if (r->relay) {
		pthread_mutex_unlock(&relay_lock);
		return 0;
	}
	struct recorder_relay *relay = calloc(1, sizeof(*relay));
	if (!relay) {
		pthread_mutex_unlock(&relay_lock);
		return -1;
	}
	relay->r = r;
	relay->next = relays;
	relays = relay;
	r->relay = relay;
	pthread_mutex_unlock(&relay_lock);

	int rc = state_subscribe(r->st, recorder_event_relay, relay);
	if (rc < 0) {
		LOG_ERROR(&log_rec, "cannot subscribe to room events: %s", state_strerror(rc));
		recorder_relay_detach(r);
	}
	return rc < 0 ? rc : 0;
}

void recorder_metrics(struct recorder *r, struct recorder_metrics *m)
{
	struct recorder_session **list = NULL;
	size_t n = 0;
	pthread_mutex_lock(&r->lock);
	*m = r->m;
	for (struct recorder_session *s = r->sessions; s; s = s->next)
		n++;
	list = n ? calloc(n, sizeof(*list)) : NULL;
	n = 0;
	for (struct recorder_session *s = r->sessions; s && list; s = s->next) {
		s->refs++;
		list[n++] = s;
	}
	pthread_mutex_unlock(&r->lock);

	memset(m->by_status, 0, sizeof(m->by_status));
	for (size_t i = 0; i < n; i++) {
		struct recorder_session *s = list[i];
		pthread_mutex_lock(&s->lock);
		if (!s->ended) {
			m->by_status[s->status]++;
			if (s->pipeline) {
				struct media_stats st;
				media_pipeline_stats(s->pipeline, &st);
				m->bytes_written += st.bytes_written;
				m->video_frames_encoded += st.video_frames_encoded;
				m->video_frames_dropped += st.video_frames_dropped;
				m->audio_frames_encoded += st.audio_frames_encoded;
			}
		}
		pthread_mutex_unlock(&s->lock);
		recorder_session_unref(s);
	}
	free(list);
	m->by_status[RECORDER_PROCESSING] = (uint64_t)atomic_load(&r->jobs_queued) +
					    (uint64_t)atomic_load(&r->jobs_running);
	m->by_status[RECORDER_COMPLETED] = m->completed_total;
	m->by_status[RECORDER_FAILED] = m->failed_total;
	m->by_status[RECORDER_CANCELLED] = m->cancelled_total;
	m->jobs_queued = (uint64_t)atomic_load(&r->jobs_queued);
	m->jobs_running = (uint64_t)atomic_load(&r->jobs_running);
}

char *recorder_encode_metrics(void *opaque)
{
	struct recorder *r = opaque;
	struct media_encode_load load;
	media_encode_load(&load);
	pthread_mutex_lock(&r->lock);
	unsigned long long refused = r->encode_refused, dense = r->encode_dense;
	pthread_mutex_unlock(&r->lock);
	char *out = malloc(1536);
	if (!out)
		return NULL;
	snprintf(out, 1536,
		 "# HELP edgerec_encode_budget_pixels_per_second What this node may encode at once.\n"
		 "# TYPE edgerec_encode_budget_pixels_per_second gauge\n"
		 "edgerec_encode_budget_pixels_per_second %lld\n"
		 "# HELP edgerec_encode_load_pixels_per_second What its live recordings take of it.\n"
		 "# TYPE edgerec_encode_load_pixels_per_second gauge\n"
		 "edgerec_encode_load_pixels_per_second %lld\n"
		 "# HELP edgerec_encode_recordings Live recordings that encode video.\n"
		 "# TYPE edgerec_encode_recordings gauge\n"
		 "edgerec_encode_recordings %d\n"
		 "# HELP edgerec_video_encoder_threads Threads of the open video encoders.\n"
		 "# TYPE edgerec_video_encoder_threads gauge\n"
		 "edgerec_video_encoder_threads %d\n"
		 "# HELP edgerec_recordings_refused_encode_total Starts refused because the encode budget was full.\n"
		 "# TYPE edgerec_recordings_refused_encode_total counter\n"
		 "edgerec_recordings_refused_encode_total %llu\n"
		 "# HELP edgerec_recordings_started_dense_total Recordings started at the encoder's dense speed (the node was not lightly loaded).\n"
		 "# TYPE edgerec_recordings_started_dense_total counter\n"
		 "edgerec_recordings_started_dense_total %llu\n",
		 load.budget, load.reserved, load.recordings, load.threads, refused, dense);
	return out;
}

bool recorder_healthy(struct recorder *r, char *why, size_t whylen)
{
	if (why && whylen)
		why[0] = 0;
	if (!state_healthy(r->st)) {
		struct state_stats ss;
		state_stats(r->st, &ss);
		if (ss.pending_writes >= ss.pending_max) {
			snprintf(why, whylen, "the state store (Redis) does not answer and its retry buffer is full "
				 "(%zu writes): state changes are being lost", ss.pending_writes);
			return false;
		}
		snprintf(why, whylen, "the state store (Redis) does not answer: live recordings go on, %zu state "
			 "writes wait for it (room for %zu more); starts and listings answer 503 until it is back",
			 ss.pending_writes, ss.pending_max - ss.pending_writes);
		return true;
	}
	if (access(r->storage_path, W_OK) != 0)
		snprintf(why, whylen, "storage directory %s is not writable: %s; starts are refused", r->storage_path,
			 strerror(errno));
	return true;
}

/* ---- construction -------------------------------------------------------- */

struct recorder *recorder_new(struct config *cfg, struct state *st, struct policy_host *pol,
			      char *err, size_t errlen)
{
	struct recorder *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->cfg = cfg;
	r->st = st;
	r->pol = pol;
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->ctl_lock, NULL);
	pthread_cond_init(&r->ctl_cond, NULL);
	pthread_mutex_init(&r->idle_lock, NULL);
	pthread_mutex_init(&r->uploads_lock, NULL);
	pthread_mutex_init(&r->counts_lock, NULL);
	pthread_cond_init(&r->idle_cond, NULL);
	util_strlcpy(r->node_id, state_node_id(st) ? state_node_id(st) : "", sizeof(r->node_id));

	const char *v = config_get_str(cfg, "local_storage_path");
	if (v && strlen(v) >= RECORDER_STORAGE_MAX) {
		snprintf(err, errlen, "local_storage_path is longer than %d bytes", RECORDER_STORAGE_MAX - 1);
		goto fail;
	}
	util_strlcpy(r->storage_path, v && v[0] ? v : "/tmp/webrtc_recordings", sizeof(r->storage_path));
	if (recorder_config_check(cfg, err, errlen) < 0)
		goto fail;
	struct recorder_limits lim;
	if (recorder_limits_read(cfg, &lim, err, errlen) < 0)
		goto fail;
	util_strlcpy(r->storage_backend, config_get_str(cfg, "storage_backend"), sizeof(r->storage_backend));
	util_strlcpy(r->default_format, config_get_str(cfg, "default_format"), sizeof(r->default_format));
	util_strlcpy(r->default_quality, config_get_str(cfg, "default_quality"), sizeof(r->default_quality));
	recorder_limits_apply(r, &lim);
	r->n_workers = lim.n_workers;

	int rc = util_mkdir_p(r->storage_path, UTIL_MEDIA_DIR_MODE);
	if (rc < 0 || access(r->storage_path, W_OK) != 0) {
		snprintf(err, errlen, "local_storage_path %s is not a writable directory: %s", r->storage_path,
			 strerror(rc < 0 ? -rc : errno));
		goto fail;
	}
	if (strcmp(r->storage_backend, "s3") == 0) {
		char s3err[256] = "";
		r->s3 = storage_s3_new_from_config(cfg, s3err, sizeof(s3err));
		if (!r->s3) {
			snprintf(err, errlen, "storage_backend s3: %s", s3err);
			goto fail;
		}
	}
	recorder_policy_bind(r);
	if (recorder_worker_start(r) < 0) {
		snprintf(err, errlen, "cannot start the processing workers");
		goto fail;
	}
	if (recorder_control_start(r) < 0) {
		snprintf(err, errlen, "cannot start the control thread");
		goto fail;
	}
	if (recorder_recover(r) < 0)
		LOG_WARN(&log_rec, "start-up recovery incomplete; it is retried by the rescan");
	recorder_whip_init(r);
	LOG_INFO(&log_rec, "node %s, recordings in %s (%s), limits %d global / %d per user, max %lld s",
		 r->node_id, r->storage_path, r->storage_backend, r->max_concurrent, r->max_per_user,
		 (long long)(r->max_duration_ms / 1000));
	return r;
fail:
	recorder_free(r);
	return NULL;
}

void recorder_free(struct recorder *r)
{
	if (!r)
		return;
	/* Stop every live recording into processing; their jobs go to the
	 * queue (or stay marked for the next start). */
	for (;;) {
		pthread_mutex_lock(&r->lock);
		struct recorder_session *s = r->sessions;
		if (s)
			s->refs++;
		pthread_mutex_unlock(&r->lock);
		if (!s)
			break;
		char err[256];
		pthread_mutex_lock(&s->lock);
		if (!s->ended) {
			enum recorder_status to;
			if (recorder_fsm_step(s->status, RECORDER_OP_STOP, &to) == 200) {
				if (recorder_session_stop(s, RECORDER_OP_STOP, "shutdown", err, sizeof(err)) < 0)
					recorder_session_fail(s, err);
			} else {
				recorder_session_fail(s, "the node shut down before the first frame");
			}
		}
		pthread_mutex_unlock(&s->lock);
		recorder_session_unref(s);
	}
	/* Give processing a short while to finish (remux and thumbnail of the
	 * recordings just stopped); what is left resumes at the next start. */
	if (r->n_started_workers > 0 && recorder_drain(r, RECORDER_SHUTDOWN_DRAIN_MS * TIME_NS_PER_MS) < 0)
		LOG_WARN(&log_rec, "processing unfinished at shutdown; it resumes at the next start");
	recorder_whip_free(r);
	recorder_relay_detach(r);
	recorder_control_stop(r);
	recorder_worker_stop(r);
	if (r->pol)
		policy_host_set_provider(r->pol, NULL);
	storage_s3_free(r->s3);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->ctl_lock);
	pthread_cond_destroy(&r->ctl_cond);
	pthread_mutex_destroy(&r->idle_lock);
	pthread_mutex_destroy(&r->uploads_lock);
	pthread_mutex_destroy(&r->counts_lock);
	pthread_cond_destroy(&r->idle_cond);
	free(r);
}
