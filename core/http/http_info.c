/* http_info: the routes about the appliance itself: /healthz, /metrics
 * and /api/openapi.json. */
#include "http_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <civetweb.h>

#include "common_time.h"
#include "common_version.h"
#include "config.h"
#include "http_text.h"
#include "media_mux.h"
#ifdef MEDIA_HAVE_ALSA
#include "media_alsa.h"
#endif
#include "recorder.h"

/* True when a file can be created, written and removed in 'dir'. */
static bool http_dir_writable(const char *dir, char *why, size_t whylen)
{
	char path[4200];
	if (!dir || !*dir) {
		snprintf(why, whylen, "no directory configured");
		return false;
	}
	snprintf(path, sizeof(path), "%s/.edgerec-health-%d-%lx", dir, (int)getpid(),
		 (unsigned long)pthread_self());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		return false;
	}
	bool ok = write(fd, "ok\n", 3) == 3;
	int saved = errno;
	ok = (close(fd) == 0) && ok;
	unlink(path);
	if (!ok)
		snprintf(why, whylen, "%s: %s", dir, strerror(saved ? saved : EIO));
	return ok;
}

/* A check that passes with a reason is degraded: the appliance works, in a
 * lesser way the reason names (a policy falling back, for one). */
static void http_health_add(cJSON *checks, cJSON *reasons, const char *name, bool ok, const char *why)
{
	cJSON *c = cJSON_AddObjectToObject(checks, name);
	if (!c)
		return;
	bool said = why && *why;
	cJSON_AddBoolToObject(c, "ok", ok);
	cJSON_AddBoolToObject(c, "degraded", ok && said);
	if (said)
		cJSON_AddStringToObject(c, "detail", why);
	else
		cJSON_AddNullToObject(c, "detail");
	if (said && reasons) {
		char line[1200];
		snprintf(line, sizeof(line), "%s: %s", name, why);
		cJSON_AddItemToArray(reasons, cJSON_CreateString(line));
	}
}

/* GET /healthz: {"status": "ok" | "degraded" | "down", "reasons": [...],
 * "checks": {...}, "storage": {disk, uploads}, "version", "uptime_seconds"}.
 * Only "down" (a check that says the node cannot serve: Redis unreachable
 * with its retry buffer full) answers 503; everything that leaves the node
 * serving in a lesser way (a policy on its last good version, a disk too
 * full to start, a directory not writable, S3 failing) is "degraded", 200,
 * so a load balancer does not drain a node that still works. */
void http_info_healthz(struct http_request *req)
{
	struct http_server *s = req->s;
	char why[1024];
	bool down = false, degraded = false;
	cJSON *o = cJSON_CreateObject();
	cJSON *checks = o ? cJSON_AddObjectToObject(o, "checks") : NULL;
	cJSON *reasons = o ? cJSON_AddArrayToObject(o, "reasons") : NULL;
	if (!checks || !reasons) {
		cJSON_Delete(o);
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	static const char *const dirs[][2] = { { "disk_state", "state_dir" },
					       { "disk_recordings", "local_storage_path" } };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		const char *dir = config_get_str(s->cfg, dirs[i][1]);
		if (!dir || !*dir)
			continue;
		why[0] = '\0';
		if (!http_dir_writable(dir, why, sizeof(why))) {
			size_t n = strlen(why);
			snprintf(why + n, sizeof(why) - n, " (%s is not writable)", dirs[i][1]);
			degraded = true;
		}
		http_health_add(checks, reasons, dirs[i][0], true, why);
	}
	struct http_health_check hc[HTTP_HEALTH_MAX];
	pthread_mutex_lock(&s->hooks_lock);
	int n = s->health_count;
	memcpy(hc, s->health, sizeof(hc[0]) * (size_t)n);
	pthread_mutex_unlock(&s->hooks_lock);
	for (int i = 0; i < n; i++) {
		why[0] = '\0';
		bool ok = hc[i].fn(hc[i].opaque, why, sizeof(why));
		down = down || !ok;
		degraded = degraded || (ok && why[0]);
		http_health_add(checks, reasons, hc[i].name, ok, why);
	}
	cJSON_AddStringToObject(o, "status", down ? "down" : degraded ? "degraded" : "ok");
	if (s->rec) {
		cJSON *st = recorder_storage_json(s->rec);
		if (st)
			cJSON_AddItemToObject(o, "storage", st);
	}
	cJSON_AddStringToObject(o, "version", common_version);
	cJSON_AddStringToObject(o, "git", common_version_git);
	cJSON_AddNumberToObject(o, "uptime_seconds",
				(double)((time_wall_ns() - s->started_wall_ns) / 1000000) / 1000.0);
	http_reply_json(req, down ? 503 : 200, o);
	cJSON_Delete(o);
}

void http_info_metrics(struct http_request *req)
{
	struct http_server *s = req->s;
	struct recorder_metrics rm;
	struct http_text t;
	memset(&rm, 0, sizeof(rm));
	recorder_metrics(s->rec, &rm);
	http_text_init(&t);

	/* edgerec_recordings (every status, from the state store) comes from
	 * recorder_storage_metrics; this node's own live ones are here. */
	http_text_printf(&t, "# HELP edgerec_node_recordings Recordings this node is recording or processing now, "
			     "by status.\n# TYPE edgerec_node_recordings gauge\n");
	for (int i = RECORDER_PENDING; i <= RECORDER_PROCESSING; i++)
		http_text_printf(&t, "edgerec_node_recordings{status=\"%s\"} %llu\n",
				 recorder_status_name((enum recorder_status)i), (unsigned long long)rm.by_status[i]);
	struct {
		const char *name, *type, *help;
		uint64_t v;
	} rows[] = {
		{ "edgerec_recordings_active", "gauge", "Live recordings on this node.", rm.active },
		{ "edgerec_recordings_started_total", "counter", "Recordings started.", rm.started_total },
		{ "edgerec_recordings_completed_total", "counter", "Recordings completed.", rm.completed_total },
		{ "edgerec_recordings_failed_total", "counter", "Recordings failed.", rm.failed_total },
		{ "edgerec_recordings_cancelled_total", "counter", "Recordings cancelled.", rm.cancelled_total },
		{ "edgerec_recordings_refused_total", "counter", "Starts refused by admission.", rm.refused_total },
		{ "edgerec_bytes_written_total", "counter", "Bytes written to recording files.", rm.bytes_written },
		{ "edgerec_video_frames_encoded_total", "counter", "Video frames encoded.", rm.video_frames_encoded },
		{ "edgerec_video_frames_dropped_total", "counter", "Video frames dropped.", rm.video_frames_dropped },
		{ "edgerec_audio_frames_encoded_total", "counter", "Audio frames encoded.", rm.audio_frames_encoded },
		{ "edgerec_recording_degradations_total", "counter",
		  "Steps down taken by recordings whose encoding fell behind (speed, frame rate, size).",
		  rm.degradations_total },
		{ "edgerec_processing_jobs_queued", "gauge", "Processing jobs waiting.", rm.jobs_queued },
		{ "edgerec_processing_jobs_running", "gauge", "Processing jobs running.", rm.jobs_running },
		{ "edgerec_mux_timestamp_fixes_total", "counter",
		  "Frames the muxer moved to keep each track's timestamps strictly increasing.",
		  media_mux_timestamp_fixes() },
#ifdef MEDIA_HAVE_ALSA
		{ "edgerec_audio_capture_overruns_total", "counter",
		  "Times a microphone's buffer overran (frames lost; silence fills their time).",
		  media_alsa_overruns_total() },
		{ "edgerec_audio_capture_silence_frames_total", "counter",
		  "Frames of silence (48 kHz) put where a microphone's frames were lost.",
		  media_alsa_frames_inserted_total() },
#endif
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		http_text_printf(&t, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", rows[i].name, rows[i].help,
				 rows[i].name, rows[i].type, rows[i].name, (unsigned long long)rows[i].v);
	http_text_printf(&t, "# HELP edgerec_uptime_seconds Seconds since the server started.\n"
			     "# TYPE edgerec_uptime_seconds gauge\nedgerec_uptime_seconds %.3f\n",
			 (double)(time_wall_ns() - s->started_wall_ns) / 1e9);
	http_metrics_render(s->metrics, &t);
	http_metrics_render_build(&t);
	http_metrics_render_process(&t);
	pthread_mutex_lock(&s->hooks_lock);
	int n = s->metrics_extra_count;
	http_metrics_fn fns[HTTP_HEALTH_MAX];
	void *opaques[HTTP_HEALTH_MAX];
	for (int i = 0; i < n; i++) {
		fns[i] = s->metrics_extra[i].fn;
		opaques[i] = s->metrics_extra[i].opaque;
	}
	pthread_mutex_unlock(&s->hooks_lock);
	for (int i = 0; i < n; i++) {
		char *more = fns[i](opaques[i]);
		if (more) {
			http_text_append(&t, more, strlen(more));
			free(more);
		}
	}
	if (t.oom)
		http_reply_error(req, 500, "internal", "out of memory");
	else
		http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", t.data, t.len, NULL, NULL);
	http_text_deinit(&t);
}

void http_info_policies(struct http_request *req)
{
	/* Who may see the policies is itself a policy decision (auth.lua,
	 * action "admin"; built in: the admin role). */
	if (http_admin_check(req, false) < 0)
		return;
	pthread_mutex_lock(&req->s->hooks_lock);
	http_policy_status_fn fn = req->s->policy_status;
	void *opaque = req->s->policy_opaque;
	pthread_mutex_unlock(&req->s->hooks_lock);
	if (!fn) {
		http_reply_error(req, 404, "not_found", "no policy host is configured (policy_dir)");
		return;
	}
	cJSON *st = fn(opaque);
	if (st)
		http_reply_json(req, 200, st);
	else
		http_reply_error(req, 500, "internal", "the policy host gave no status");
	cJSON_Delete(st);
}

void http_info_openapi(struct http_request *req)
{
	http_reply(req, 200, "application/json", http_openapi_json, http_openapi_json_len, NULL, NULL);
}
