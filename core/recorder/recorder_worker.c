/* recorder_worker: the bounded pool that finishes stopped recordings.
 *
 * A job takes one recording in `processing` through a list of steps
 * (worker_steps[] below): finalize (repair a crash-left file, check it
 * parses), remux (mp4: the live VP9/Opus Matroska into MP4, storage
 * module), thumbnail (JPEG of the first keyframe after 1 s, or of the
 * first frame after it that is not flat), facts (size,
 * sha256, codecs, geometry into metadata), upload and verify (S3 backend
 * only; the local copy goes only after the object is verified). A step that
 * does not apply to a recording returns at once.
 *
 * After each step the journal kept in state (state_journal_set:
 * {"step": <last completed>, "at": ..., plus the storage module's
 * "upload.*" fields}) names it, and the record's metadata.processing shows
 * {"step", "percent"}; a job that starts again after a restart skips the
 * steps its journal names and a multipart upload continues after its last
 * acknowledged part. The recording's directory holds a mark file
 * (".processing") from the moment it is queued until it is completed or
 * failed, so a restart, or the periodic rescan after a full queue, finds
 * every unfinished job. The end: `completed` with processed_at and
 * file_size_bytes, or `failed` with the step's error (files kept). */
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common_log.h"
#include "common_queue.h"
#include "common_time.h"
#include "config.h"
#include "media.h"
#include "recorder_internal.h"
#include "state.h"
#include "storage.h"
#include "storage_s3.h"

static struct log_handle log_wrk = LOG_HANDLE("recorder/worker");

#define RECORDER_JOB_QUEUE 1024
#define RECORDER_MARK ".processing"

/* What a step sees of its job; the paths are derived from the record. */
struct worker_ctx {
	struct recorder *r;
	struct recorder_job *job;
	cJSON *rec;               /* the record being finished (owned by the job) */
	char dir[RECORDER_PATH_MAX];
	char live_path[RECORDER_PATH_MAX];  /* the file the pipeline wrote */
	char final_path[RECORDER_PATH_MAX]; /* the file the recording ends as */
	char mp4_path[RECORDER_PATH_MAX];   /* "" unless remuxed */
	char thumb_path[RECORDER_PATH_MAX];
	char object_key[RECORDER_PATH_MAX]; /* "" unless uploaded to S3 */
	bool keep_local;                    /* keep the local copy after upload */
	struct storage_journal journal;     /* bound to state_journal_* */
	struct storage_job sj;
	int64_t last_progress_ns;
};

struct recorder_step {
	const char *name;
	/* Returns 0, or <0 with a sentence in 'err' (the recording's error). */
	int (*run)(struct worker_ctx *c, char *err, size_t errlen);
};

int recorder_dir_of(const struct recorder *r, const char *id, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s/%s", r->storage_path, id);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int recorder_live_path(const struct recorder *r, const char *id, const char *format, char *out,
		       size_t outlen)
{
	if (!format || !recorder_format_valid(format))
		format = "webm";
	int n = snprintf(out, outlen, "%s/%s/recording_%s.%s", r->storage_path, id, id,
			 strcmp(format, "mp4") == 0 ? "mkv" : format);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* finalize: a file stopped cleanly already has Duration and Cues; one left
 * by a crash (or a failed stop) is rewritten by media_file_repair first.
 * Either way the file must then parse. */
static int step_finalize(struct worker_ctx *c, char *err, size_t errlen)
{
	char perr[256] = "";
	struct stat sb;
	if (stat(c->live_path, &sb) != 0) {
		snprintf(err, errlen, "no recording file (%s): %s", c->live_path, strerror(errno));
		return -1;
	}
	if (c->job->recovered) {
		int64_t dur = 0;
		if (media_file_repair(c->live_path, &dur, perr, sizeof(perr)) < 0) {
			snprintf(err, errlen, "nothing usable remains of the interrupted recording: %s", perr);
			return -1;
		}
		state_record_set_number(c->rec, "duration_seconds", (double)(dur / TIME_NS_PER_MS) / 1e3);
		LOG_INFO(&log_wrk, "%s: repaired, %.3f s usable", c->job->id, (double)dur / 1e9);
	}
	struct media_file_info info;
	if (media_file_probe(c->live_path, &info, perr, sizeof(perr)) < 0) {
		snprintf(err, errlen, "the recording file does not parse: %s", perr);
		return -1;
	}
	if (info.video_frames == 0 && info.audio_frames == 0) {
		snprintf(err, errlen, "the recording file holds no media");
		return -1;
	}
	return 0;
}

/* remux: mp4 recordings are written as VP9/Opus Matroska and remuxed
 * here (no re-encode, index at the front). Without transcoding the
 * Matroska file is the recording. */
static int step_remux(struct worker_ctx *c, char *err, size_t errlen)
{
	if (!c->mp4_path[0])
		return 0;
	return storage_step_remux(&c->sj, err, errlen) < 0 ? -1 : 0;
}

/* thumbnail: a JPEG beside the file (none for an audio-only recording:
 * metadata.thumbnail is null). On a full disk (less than
 * RECORDER_THUMB_MIN_FREE left where it goes) there is no room for it, and
 * the recording is not failed for that: metadata.thumbnail_error says why
 * there is none. */
#define RECORDER_THUMB_MIN_FREE (1024 * 1024)

static int step_thumbnail(struct worker_ctx *c, char *err, size_t errlen)
{
	int w = 0, h = 0;
	cJSON *m = recorder_rec_metadata(c->rec);
	struct media_file_info fi;
	char perr[160];
	if (media_file_probe(c->sj.input_path, &fi, perr, sizeof(perr)) == 0 && !fi.video_codec[0]) {
		/* Audio only (a microphone room): no picture to show. */
		recorder_json_set(m, "thumbnail", cJSON_CreateNull());
		return 0;
	}
	if (storage_step_thumbnail(&c->sj, &w, &h, err, errlen) < 0) {
		long long avail = recorder_disk_free(c->r); /* c->dir is under storage_path */
		if (avail < 0 || avail >= RECORDER_THUMB_MIN_FREE)
			return -1;
		LOG_WARN(&log_wrk, "%s: no thumbnail, the disk is full: %s", c->job->id, err);
		recorder_json_set(m, "thumbnail_error", cJSON_CreateString(err));
		return 0;
	}
	const char *slash = strrchr(c->thumb_path, '/');
	recorder_json_set(m, "thumbnail", cJSON_CreateString(slash ? slash + 1 : c->thumb_path));
	recorder_json_set(m, "thumbnail_width", cJSON_CreateNumber(w));
	recorder_json_set(m, "thumbnail_height", cJSON_CreateNumber(h));
	return 0;
}

/* facts: what the finished file holds, into metadata. */
static int step_facts(struct worker_ctx *c, char *err, size_t errlen)
{
	struct storage_facts f;
	if (storage_file_facts(c->final_path, &f, err, errlen) < 0)
		return -1;
	cJSON *m = recorder_rec_metadata(c->rec);
	recorder_json_set(m, "container", cJSON_CreateString(f.container));
	recorder_json_set(m, "video_codec", f.video_codec[0] ? cJSON_CreateString(f.video_codec) : cJSON_CreateNull());
	recorder_json_set(m, "audio_codec", f.audio_codec[0] ? cJSON_CreateString(f.audio_codec) : cJSON_CreateNull());
	recorder_json_set(m, "width", cJSON_CreateNumber(f.width));
	recorder_json_set(m, "height", cJSON_CreateNumber(f.height));
	recorder_json_set(m, "checksum", cJSON_CreateString(f.sha256));
	recorder_json_set(m, "checksum_algorithm", cJSON_CreateString("sha256"));
	recorder_json_set(m, "file_duration_seconds", cJSON_CreateNumber((double)f.duration_ms / 1e3));
	state_record_set_number(c->rec, "file_size_bytes", (double)f.size_bytes);
	return 0;
}

static int step_upload(struct worker_ctx *c, char *err, size_t errlen)
{
	if (!c->sj.s3)
		return 0;
	char etag[96] = "";
	int rc = storage_step_upload(&c->sj, etag, sizeof(etag), err, errlen);
	if (rc == STORAGE_ERR_CANCELLED)
		return 1; /* shutdown: the upload resumes at the next start */
	if (rc < 0) {
		recorder_upload_note(c->r, rc, err);
		return -1;
	}
	state_record_set_str(c->rec, "s3_key", c->object_key);
	recorder_json_set(recorder_rec_metadata(c->rec), "s3_etag", cJSON_CreateString(etag));
	return 0;
}

/* verify: the object must match the file before the local copy may go. */
static int step_verify(struct worker_ctx *c, char *err, size_t errlen)
{
	if (!c->sj.s3)
		return 0;
	int rc = storage_step_verify(&c->sj, err, errlen);
	recorder_upload_note(c->r, rc < 0 ? rc : 0, err);
	if (rc < 0)
		return -1;
	state_record_set_str(c->rec, "s3_key", c->object_key);
	if (!c->keep_local) {
		if (unlink(c->final_path) == 0)
			LOG_INFO(&log_wrk, "%s: verified in S3 as %s; local copy removed", c->job->id, c->object_key);
		recorder_json_set(recorder_rec_metadata(c->rec), "local_copy", cJSON_CreateFalse());
	} else {
		recorder_json_set(recorder_rec_metadata(c->rec), "local_copy", cJSON_CreateTrue());
	}
	return 0;
}

static const struct recorder_step worker_steps[] = {
	{ "finalize", step_finalize },
	{ "remux", step_remux },
	{ "thumbnail", step_thumbnail },
	{ "facts", step_facts },
	{ "upload", step_upload },
	{ "verify", step_verify },
};

/* ---- the journal, bound to the state store --------------------------------
 * A JSON object of text fields per recording (state_journal_*), shared by
 * the worker ("step", "at") and the storage module ("upload.*"). */

static int sj_get(void *opaque, const char *field, char *out, size_t outlen)
{
	struct worker_ctx *c = opaque;
	cJSON *j = state_journal_get(c->r->st, c->job->id);
	if (!j)
		return state_healthy(c->r->st) ? 1 : -1;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, field);
	int rc = 1;
	if (cJSON_IsString(v)) {
		util_strlcpy(out, v->valuestring, outlen);
		rc = 0;
	}
	cJSON_Delete(j);
	return rc;
}

static int sj_set(void *opaque, const char *field, const char *value)
{
	struct worker_ctx *c = opaque;
	cJSON *j = state_journal_get(c->r->st, c->job->id);
	if (!j && !state_healthy(c->r->st))
		return -1;
	if (!j)
		j = cJSON_CreateObject();
	if (!j)
		return -1;
	cJSON_DeleteItemFromObjectCaseSensitive(j, field);
	cJSON_AddStringToObject(j, field, value);
	int rc = state_journal_set(c->r->st, c->job->id, j);
	cJSON_Delete(j);
	return rc < 0 ? -1 : 0;
}

static int sj_del(void *opaque, const char *prefix)
{
	struct worker_ctx *c = opaque;
	cJSON *j = state_journal_get(c->r->st, c->job->id);
	if (!j)
		return state_healthy(c->r->st) ? 0 : -1;
	size_t n = strlen(prefix);
	for (cJSON *it = j->child, *next; it; it = next) {
		next = it->next;
		if (it->string && strncmp(it->string, prefix, n) == 0)
			cJSON_Delete(cJSON_DetachItemViaPointer(j, it));
	}
	int rc = state_journal_set(c->r->st, c->job->id, j);
	cJSON_Delete(j);
	return rc < 0 ? -1 : 0;
}

/* ---- in-flight bookkeeping ---------------------------------------------- */

/* Adds 'job' to the in-flight set; false when a job for its id is already
 * there. */
static bool inflight_add(struct recorder *r, struct recorder_job *job)
{
	bool added = false;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_inflight; i++)
		if (strcmp(r->inflight[i]->id, job->id) == 0)
			goto out;
	if (r->n_inflight == r->cap_inflight) {
		size_t cap = r->cap_inflight ? r->cap_inflight * 2 : 16;
		void *p = realloc(r->inflight, cap * sizeof(*r->inflight));
		if (!p)
			goto out;
		r->inflight = p;
		r->cap_inflight = cap;
	}
	r->inflight[r->n_inflight++] = job;
	added = true;
out:
	pthread_mutex_unlock(&r->lock);
	return added;
}

static void inflight_remove(struct recorder *r, const struct recorder_job *job)
{
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_inflight; i++) {
		if (r->inflight[i] == job) {
			r->inflight[i] = r->inflight[r->n_inflight - 1];
			r->n_inflight--;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
}

/* Raises the cancel request of the job in flight for 'id'. Returns false
 * when none is queued or running here. */
static bool inflight_cancel(struct recorder *r, const char *id)
{
	bool found = false;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_inflight; i++) {
		if (strcmp(r->inflight[i]->id, id) == 0) {
			r->inflight[i]->cancel = true;
			r->inflight[i]->stop = 1;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return found;
}

static bool inflight_has(struct recorder *r, const char *id)
{
	bool found = false;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_inflight && !found; i++)
		found = strcmp(r->inflight[i]->id, id) == 0;
	pthread_mutex_unlock(&r->lock);
	return found;
}

static bool job_cancel_requested(struct recorder *r, const struct recorder_job *job)
{
	pthread_mutex_lock(&r->lock);
	bool c = job->cancel;
	pthread_mutex_unlock(&r->lock);
	return c;
}

static void job_free(void *p)
{
	struct recorder_job *job = p;
	if (!job)
		return;
	cJSON_Delete(job->rec);
	free(job);
}

static int mark_path(const struct recorder *r, const char *id, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s/%s/" RECORDER_MARK, r->storage_path, id);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int recorder_worker_submit(struct recorder *r, const char *id, bool recovered, cJSON *rec)
{
	char mark[RECORDER_PATH_MAX];
	mark_path(r, id, mark, sizeof(mark));
	int fd = open(mark, O_WRONLY | O_CREAT, 0644);
	if (fd >= 0) {
		if (recovered && write(fd, "repair\n", 7) != 7)
			LOG_WARN(&log_wrk, "%s: cannot write %s", id, mark);
		close(fd);
	} else {
		LOG_WARN(&log_wrk, "%s: cannot create %s: %s", id, mark, strerror(errno));
	}
	struct recorder_job *job = calloc(1, sizeof(*job));
	if (!job) {
		cJSON_Delete(rec);
		return -1;
	}
	util_strlcpy(job->id, id, sizeof(job->id));
	job->recovered = recovered;
	job->rec = rec;
	if (!inflight_add(r, job)) {
		job_free(job);
		return 1; /* already queued or running */
	}
	atomic_fetch_add(&r->jobs_queued, 1);
	if (!r->jobs || queue_push(r->jobs, job) != QUEUE_OK) {
		atomic_fetch_sub(&r->jobs_queued, 1);
		inflight_remove(r, job);
		job_free(job);
		return -1;
	}
	return 0;
}

int recorder_worker_rescan(struct recorder *r)
{
	DIR *d = opendir(r->storage_path);
	if (!d)
		return -1;
	int queued = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!util_uuid_valid(e->d_name))
			continue;
		char mark[RECORDER_PATH_MAX];
		mark_path(r, e->d_name, mark, sizeof(mark));
		char *text = util_read_file(mark, NULL);
		if (!text)
			continue;
		bool repair = strncmp(text, "repair", 6) == 0;
		free(text);
		if (recorder_worker_submit(r, e->d_name, repair, NULL) == 0)
			queued++; /* not counting those already queued */
	}
	closedir(d);
	return queued;
}

/* ---- running a job ------------------------------------------------------ */

static void journal_mark(struct worker_ctx *c, const char *step)
{
	char ts[40];
	if (sj_set(c, "step", step) < 0 || sj_set(c, "at", time_iso8601(time_wall_ns(), ts, sizeof(ts))) < 0)
		LOG_WARN(&log_wrk, "%s: journal write failed after %s", c->job->id, step);
}

/* Index of the first step still to run, from the journal. */
static size_t journal_resume_index(struct worker_ctx *c)
{
	char step[64];
	if (sj_get(c, "step", step, sizeof(step)) != 0)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(worker_steps); i++)
		if (strcmp(step, worker_steps[i].name) == 0)
			return i + 1;
	return 0;
}

static void set_progress(struct worker_ctx *c, const char *step, double percent)
{
	c->last_progress_ns = time_mono_ns();
	cJSON *p = cJSON_CreateObject();
	if (!p)
		return;
	cJSON_AddStringToObject(p, "step", step);
	cJSON_AddNumberToObject(p, "percent", percent);
	recorder_json_set(recorder_rec_metadata(c->rec), "processing", p);
	recorder_put(c->r, c->rec);
}

/* The storage module's progress within a step, at most once a second. */
static void on_storage_progress(void *opaque, const char *step, double percent)
{
	struct worker_ctx *c = opaque;
	if (time_mono_ns() - c->last_progress_ns < TIME_NS_PER_SEC)
		return;
	size_t i = 0;
	while (i < ARRAY_SIZE(worker_steps) && strcmp(worker_steps[i].name, step) != 0)
		i++;
	double base = i < ARRAY_SIZE(worker_steps) ? (double)i : 0;
	set_progress(c, step, 100.0 * (base + percent / 100.0) / (double)ARRAY_SIZE(worker_steps));
}

static const char *content_type_of(const char *path)
{
	const char *dot = strrchr(path, '.');
	if (dot && strcmp(dot, ".mp4") == 0)
		return "video/mp4";
	if (dot && strcmp(dot, ".webm") == 0)
		return "video/webm";
	return "video/x-matroska";
}

static void job_finish(struct worker_ctx *c, bool ok, const char *error)
{
	struct recorder *r = c->r;
	enum recorder_status to;
	enum recorder_op ev = ok ? RECORDER_EV_PROCESSED : RECORDER_EV_PROCESS_FAILED;
	if (recorder_fsm_step(RECORDER_PROCESSING, ev, &to) != 200)
		return;
	cJSON *m = recorder_rec_metadata(c->rec);
	if (m)
		cJSON_DeleteItemFromObjectCaseSensitive(m, "processing");
	state_record_set_str(c->rec, "status", recorder_status_name(to));
	state_record_set_time(c->rec, "processed_at", time_wall_ns());
	if (ok) {
		const char *slash = strrchr(c->final_path, '/');
		state_record_set_str(c->rec, "file_name", slash ? slash + 1 : c->final_path);
		struct stat sb;
		if (stat(c->final_path, &sb) == 0)
			state_record_set_number(c->rec, "file_size_bytes", (double)sb.st_size);
		state_record_set_str(c->rec, "error", NULL);
		if (strcmp(c->final_path, c->live_path) != 0)
			unlink(c->live_path); /* the Matroska file the mp4 was made from */
	} else {
		state_record_set_str(c->rec, "error", error);
	}
	recorder_lifecycle_event(r, to, c->rec);
	recorder_put(r, c->rec);
	recorder_publish(r, recorder_op_event(ev), c->rec, NULL);
	recorder_count(r, to);
	state_journal_delete(r->st, c->job->id);
	char mark[RECORDER_PATH_MAX];
	mark_path(r, c->job->id, mark, sizeof(mark));
	unlink(mark);
	if (ok)
		LOG_INFO(&log_wrk, "%s: completed", c->job->id);
	else
		LOG_ERROR(&log_wrk, "%s: failed: %s", c->job->id, error);
}

/* Derives a job's paths, object key and storage job from its record. */
static void ctx_prepare(struct worker_ctx *c)
{
	struct recorder *r = c->r;
	struct recorder_job *job = c->job;
	recorder_dir_of(r, job->id, c->dir, sizeof(c->dir));
	const char *format = state_record_str(c->rec, "format");
	recorder_live_path(r, job->id, format, c->live_path, sizeof(c->live_path));
	util_strlcpy(c->final_path, c->live_path, sizeof(c->final_path));
	if (format && strcmp(format, "mp4") == 0 && r->transcoding) {
		if (snprintf(c->mp4_path, sizeof(c->mp4_path), "%s/recording_%s.mp4", c->dir, job->id) >=
		    (int)sizeof(c->mp4_path))
			c->mp4_path[0] = 0;
		else
			util_strlcpy(c->final_path, c->mp4_path, sizeof(c->final_path));
	}
	if (snprintf(c->thumb_path, sizeof(c->thumb_path), "%s/thumbnail.jpg", c->dir) >= (int)sizeof(c->thumb_path))
		c->thumb_path[0] = 0;
	const char *slash = strrchr(c->final_path, '/');
	if (r->s3) {
		char name[RECORDER_PATH_MAX + UUID_STR_LEN + 1];
		int n = snprintf(name, sizeof(name), "%s/%s", job->id, slash ? slash + 1 : c->final_path);
		if (n < 0 || (size_t)n >= sizeof(name) ||
		    storage_s3_key(r->s3, name, c->object_key, sizeof(c->object_key)) < 0)
			c->object_key[0] = 0;
	}
	state_record_set_str(c->rec, "file_name", slash ? slash + 1 : c->final_path);
	c->keep_local = r->keep_local;
	recorder_lifecycle_stopped(r, c->rec, c->object_key, sizeof(c->object_key), &c->keep_local);
	c->journal = (struct storage_journal){ .opaque = c, .get = sj_get, .set = sj_set, .del = sj_del };
	c->sj = (struct storage_job){
		.recording_id = job->id,
		.input_path = c->live_path,
		.mp4_path = c->mp4_path[0] ? c->mp4_path : NULL,
		.thumbnail_path = c->thumb_path[0] ? c->thumb_path : NULL,
		.object_key = c->object_key[0] ? c->object_key : NULL,
		.upload_path = c->final_path,
		.content_type = content_type_of(c->final_path),
		.thumbnail_width = (int)config_get_int(r->cfg, "thumbnail.width"),
		.thumbnail_at_ms = config_get_int(r->cfg, "thumbnail.at"),
		.s3 = r->s3,
		.journal = &c->journal,
		.cancel = &job->stop,
		.progress = on_storage_progress,
		.opaque = c,
	};
}

/* The end of a cancelled job: the multipart upload aborted and any object
 * of it deleted, the local files removed, the record cancelled. An abort S3
 * refuses or cannot be reached for is logged and named in the record's
 * error (the object store's own lifecycle rules must then clean up). */
static void job_cancelled(struct worker_ctx *c)
{
	struct recorder *r = c->r;
	char err[512] = "";
	int rc = c->sj.s3 && c->sj.object_key ? storage_step_abort(&c->sj, err, sizeof(err)) : 0;
	if (rc < 0)
		LOG_ERROR(&log_wrk, "%s: cancel could not abort the S3 upload: %s", c->job->id, err);
	int rm = util_rm_rf(c->dir);
	if (rm < 0)
		LOG_ERROR(&log_wrk, "%s: cannot remove %s: %s", c->job->id, c->dir, strerror(-rm));
	cJSON *m = recorder_rec_metadata(c->rec);
	if (m)
		cJSON_DeleteItemFromObjectCaseSensitive(m, "processing");
	state_record_set_str(c->rec, "status", recorder_status_name(RECORDER_CANCELLED));
	state_record_set_number(c->rec, "file_size_bytes", 0);
	state_record_set_str(c->rec, "s3_key", NULL);
	if (rc < 0) {
		char why[600];
		snprintf(why, sizeof(why), "cancelled; the S3 upload could not be aborted: %s", err);
		state_record_set_str(c->rec, "error", why);
	}
	recorder_put(r, c->rec);
	recorder_publish(r, recorder_op_event(RECORDER_OP_CANCEL), c->rec, NULL);
	recorder_count(r, RECORDER_CANCELLED);
	state_journal_delete(r->st, c->job->id);
	LOG_INFO(&log_wrk, "%s: cancelled during processing; upload aborted, files removed", c->job->id);
}

/* Runs one job. Returns false when it must be retried later (state store
 * unreachable, shutdown): the mark stays. */
static bool job_run(struct recorder *r, struct recorder_job *job)
{
	struct worker_ctx c = { .r = r, .job = job };
	if (!job->rec)
		job->rec = state_get(r->st, job->id);
	if (!job->rec) {
		if (state_healthy(r->st)) {
			/* The record expired or never existed: nothing to finish. */
			LOG_WARN(&log_wrk, "%s: no record; dropping its processing mark", job->id);
			char mark[RECORDER_PATH_MAX];
			mark_path(r, job->id, mark, sizeof(mark));
			unlink(mark);
			return true;
		}
		return false;
	}
	c.rec = job->rec;
	enum recorder_status s;
	if (recorder_status_parse(state_record_str(c.rec, "status"), &s) < 0)
		s = RECORDER_FAILED;
	if (recorder_status_live(s)) {
		/* Marked but still live in state: a crash came between the two
		 * writes. Recover it like any orphan. */
		enum recorder_status to;
		recorder_fsm_step(s, RECORDER_EV_RECOVERED, &to);
		state_record_set_str(c.rec, "status", recorder_status_name(to));
		recorder_json_set(recorder_rec_metadata(c.rec), "recovered", cJSON_CreateTrue());
		job->recovered = true;
		recorder_put(r, c.rec);
		state_release(r->st, job->id);
		s = to;
	}
	if (s != RECORDER_PROCESSING) {
		char mark[RECORDER_PATH_MAX];
		mark_path(r, job->id, mark, sizeof(mark));
		unlink(mark);
		return true;
	}

	ctx_prepare(&c);
	size_t first = journal_resume_index(&c);
	if (first > 0)
		LOG_INFO(&log_wrk, "%s: resuming after step %s", job->id, worker_steps[first - 1].name);
	for (size_t i = first; i < ARRAY_SIZE(worker_steps); i++) {
		if (job_cancel_requested(r, job)) {
			job_cancelled(&c);
			return true;
		}
		if (atomic_load(&r->quit))
			return false;
		char err[512] = "";
		set_progress(&c, worker_steps[i].name, 100.0 * (double)i / (double)ARRAY_SIZE(worker_steps));
		int64_t t0 = time_mono_ns();
		int rc = worker_steps[i].run(&c, err, sizeof(err));
		if (job_cancel_requested(r, job)) {
			job_cancelled(&c);
			return true;
		}
		if (rc > 0)
			return false; /* interrupted by shutdown; resumes from the journal */
		if (rc < 0) {
			char why[600];
			snprintf(why, sizeof(why), "%s: %s", worker_steps[i].name, err[0] ? err : "failed");
			job_finish(&c, false, why);
			return true;
		}
		LOG_DEBUG(&log_wrk, "%s: %s done in %.1f ms", job->id, worker_steps[i].name,
			  (double)(time_mono_ns() - t0) / 1e6);
		journal_mark(&c, worker_steps[i].name);
	}
	if (job_cancel_requested(r, job)) {
		job_cancelled(&c);
		return true;
	}
	job_finish(&c, true, NULL);
	return true;
}

/* How long a cancel request waits for a running step to notice it. */
#define RECORDER_CANCEL_WAIT_MS 30000

int recorder_worker_cancel(struct recorder *r, const cJSON *rec, cJSON **out, char *err, size_t errlen)
{
	*out = NULL;
	const char *rid = state_record_str(rec, "recording_id");
	if (!rid || !util_uuid_valid(rid)) {
		snprintf(err, errlen, "the record has no recording id");
		return -1;
	}
	char id[UUID_STR_LEN];
	util_strlcpy(id, rid, sizeof(id));
	int64_t deadline = time_mono_ns() + RECORDER_CANCEL_WAIT_MS * TIME_NS_PER_MS;
	for (;;) {
		/* A job here: raise its flag and wait until it has ended as
		 * cancelled (or finished first). */
		if (inflight_cancel(r, id)) {
			pthread_mutex_lock(&r->idle_lock);
			while (inflight_has(r, id) && time_mono_ns() < deadline) {
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				int64_t abs_ns = (int64_t)ts.tv_sec * TIME_NS_PER_SEC + ts.tv_nsec + 50 * TIME_NS_PER_MS;
				ts.tv_sec = abs_ns / TIME_NS_PER_SEC;
				ts.tv_nsec = abs_ns % TIME_NS_PER_SEC;
				pthread_cond_timedwait(&r->idle_cond, &r->idle_lock, &ts);
			}
			pthread_mutex_unlock(&r->idle_lock);
			if (inflight_has(r, id)) {
				snprintf(err, errlen, "processing of %s did not stop within %d s", id,
					 RECORDER_CANCEL_WAIT_MS / 1000);
				return -1;
			}
		}
		cJSON *cur = state_get(r->st, id);
		if (!cur) {
			snprintf(err, errlen, "recording state store unavailable");
			return -1;
		}
		enum recorder_status s;
		if (recorder_status_parse(state_record_str(cur, "status"), &s) < 0)
			s = RECORDER_FAILED;
		if (s == RECORDER_CANCELLED) {
			*out = cur;
			return 0;
		}
		if (s != RECORDER_PROCESSING) {
			*out = cur;
			return 1;
		}
		/* Still processing and no job here (a full queue, a postponed
		 * job, or a shutdown in between): cancel it on this thread,
		 * holding its in-flight place so no worker takes it meanwhile. */
		struct recorder_job *job = calloc(1, sizeof(*job));
		if (!job) {
			cJSON_Delete(cur);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		util_strlcpy(job->id, id, sizeof(job->id));
		job->rec = cur;
		if (!inflight_add(r, job)) {
			job_free(job); /* a worker took it meanwhile: cancel that job */
			if (time_mono_ns() >= deadline) {
				snprintf(err, errlen, "processing of %s could not be stopped", id);
				return -1;
			}
			continue;
		}
		struct worker_ctx c = { .r = r, .job = job, .rec = cur };
		ctx_prepare(&c);
		struct stat sb;
		if (stat(c.dir, &sb) != 0) {
			inflight_remove(r, job);
			job_free(job);
			snprintf(err, errlen, "recording %s is being processed by another node", id);
			return -2;
		}
		job_cancelled(&c);
		*out = cJSON_Duplicate(cur, true);
		inflight_remove(r, job);
		job_free(job);
		if (!*out) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
}

static void *worker_main(void *arg)
{
	struct recorder *r = arg;
	for (;;) {
		void *item = NULL;
		int rc = queue_pop(r->jobs, &item, 200 * TIME_NS_PER_MS);
		if (rc == QUEUE_CLOSED)
			break;
		if (rc != QUEUE_OK)
			continue;
		struct recorder_job *job = item;
		atomic_fetch_add(&r->jobs_running, 1);
		atomic_fetch_sub(&r->jobs_queued, 1);
		if (atomic_load(&r->quit)) {
			/* Shutting down: leave it marked for the next start. */
			inflight_remove(r, job);
			job_free(job);
		} else {
			bool done = job_run(r, job);
			if (!done)
				LOG_WARN(&log_wrk, "%s: processing postponed (state store unreachable or shutdown)",
					 job->id);
			inflight_remove(r, job);
			job_free(job);
			/* Demuxing, decoding and hashing left freed pages in the
			 * arenas: return them, so memory stays flat over a long run. */
			malloc_trim(0);
		}
		atomic_fetch_sub(&r->jobs_running, 1);
		pthread_mutex_lock(&r->idle_lock);
		pthread_cond_broadcast(&r->idle_cond);
		pthread_mutex_unlock(&r->idle_lock);
	}
	return NULL;
}

int recorder_worker_start(struct recorder *r)
{
	r->jobs = queue_new(RECORDER_JOB_QUEUE);
	if (!r->jobs)
		return -1;
	r->workers = calloc((size_t)r->n_workers, sizeof(*r->workers));
	if (!r->workers)
		return -1;
	for (int i = 0; i < r->n_workers; i++) {
		if (pthread_create(&r->workers[i], NULL, worker_main, r) != 0) {
			LOG_ERROR(&log_wrk, "cannot start worker %d", i);
			return -1;
		}
		r->n_started_workers++;
	}
	return 0;
}

void recorder_worker_stop(struct recorder *r)
{
	atomic_store(&r->quit, true);
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_inflight; i++)
		r->inflight[i]->stop = 1; /* running uploads stop; they resume at the next start */
	pthread_mutex_unlock(&r->lock);
	if (r->jobs)
		queue_close(r->jobs);
	for (int i = 0; i < r->n_started_workers; i++)
		pthread_join(r->workers[i], NULL);
	r->n_started_workers = 0;
	free(r->workers);
	r->workers = NULL;
	if (r->jobs)
		queue_free(r->jobs, job_free);
	r->jobs = NULL;
	free(r->inflight);
	r->inflight = NULL;
	r->n_inflight = r->cap_inflight = 0;
}

int recorder_drain(struct recorder *r, int64_t timeout_ns)
{
	int64_t deadline = timeout_ns < 0 ? INT64_MAX : time_mono_ns() + timeout_ns;
	pthread_mutex_lock(&r->idle_lock);
	while (atomic_load(&r->jobs_queued) > 0 || atomic_load(&r->jobs_running) > 0) {
		int64_t now = time_mono_ns();
		if (now >= deadline)
			break;
		int64_t step = deadline - now < 50 * TIME_NS_PER_MS ? deadline - now : 50 * TIME_NS_PER_MS;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t abs_ns = (int64_t)ts.tv_sec * TIME_NS_PER_SEC + ts.tv_nsec + step;
		ts.tv_sec = abs_ns / TIME_NS_PER_SEC;
		ts.tv_nsec = abs_ns % TIME_NS_PER_SEC;
		pthread_cond_timedwait(&r->idle_cond, &r->idle_lock, &ts);
	}
	bool idle = atomic_load(&r->jobs_queued) == 0 && atomic_load(&r->jobs_running) == 0;
	pthread_mutex_unlock(&r->idle_lock);
	return idle ? 0 : -1;
}
