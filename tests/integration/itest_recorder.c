/* itest_recorder: the recording manager against a real redis-server and the
 * real test source at low quality: start/pause/resume/stop with the file's
 * duration checked by ffprobe, ownership and id errors, invalid
 * transitions, the concurrent limit, cancel removing files, the
 * max-duration auto-stop and its event, and recovery after a SIGKILL of a
 * process that was recording (this same binary run as "child"). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "config.h"
#include "itest_record.h"
#include "itest_redis.h"
#include "media.h"
#include "policy.h"
#include "recorder.h"
#include "state.h"

static char tmpdir[256];
static char redis_url[64];
static pid_t redis_pid;

/* ---- helpers ------------------------------------------------------------- */

static int redis_port;

/* Starts (or restarts on the same port, finding its data again) the test's
 * redis-server. */
static int start_redis(void)
{
	int port = redis_port ? redis_port : itest_free_port();
	if (port < 0)
		return -1;
	redis_port = port;
	return itest_redis_start(port, tmpdir, true, &redis_pid, redis_url, sizeof(redis_url));
}

static struct config *make_config(const char *storage)
{
	char err[256];
	struct config *c = config_new();
	if (!c || recorder_config_register(c) < 0)
		return NULL;
	if (config_set(c, "local_storage_path", storage, err, sizeof(err)) < 0 ||
	    config_set(c, "max_concurrent_recordings", "3", err, sizeof(err)) < 0 ||
	    config_set(c, "max_recording_duration", "4s", err, sizeof(err)) < 0 ||
	    config_set(c, "default_quality", "low", err, sizeof(err)) < 0) {
		fprintf(stderr, "config: %s\n", err);
		config_free(c);
		return NULL;
	}
	return c;
}

static void reply_reset(struct recorder_reply *rep)
{
	cJSON_Delete(rep->body);
	rep->body = NULL;
	rep->status = 0;
}

/* Polls the status until it is final or 'secs' pass; the last body stays in
 * 'rep'. */
static void wait_final(struct recorder *r, const struct recorder_caller *who, const char *room,
		       const char *id, struct recorder_reply *rep, double secs)
{
	int64_t end = time_mono_ns() + (int64_t)(secs * 1e9);
	for (;;) {
		reply_reset(rep);
		recorder_status(r, who, room, id, rep);
		const char *s = rep->body ? itest_str_of(rep->body, "status") : NULL;
		if (!s || strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 || time_mono_ns() > end)
			return;
		time_sleep_ns(50 * TIME_NS_PER_MS);
	}
}

/* ffprobe's idea of a file's duration in seconds, or NAN. */
static void file_of(const cJSON *rec, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/%s", itest_str_of(rec, "local_path"), itest_str_of(rec, "file_name"));
}

/* Events seen by recorder_on_event. */
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static char ev_log[65536];

static void on_event(void *opaque, const char *room_id, const char *event_json)
{
	pthread_mutex_lock(&ev_lock);
	size_t n = strlen(ev_log);
	snprintf(ev_log + n, sizeof(ev_log) - n, "%s\n", event_json);
	pthread_mutex_unlock(&ev_lock);
}

/* True when an event of 'type' about 'id' with 'needle' in it arrived
 * within 'secs'. */
static bool saw_event(const char *type, const char *id, const char *needle, double secs)
{
	int64_t end = time_mono_ns() + (int64_t)(secs * 1e9);
	char t[64];
	snprintf(t, sizeof(t), "\"type\":\"%s\"", type);
	do {
		bool found = false;
		pthread_mutex_lock(&ev_lock);
		for (char *line = ev_log; line && *line;) {
			char *nl = strchr(line, '\n');
			size_t len = nl ? (size_t)(nl - line) : strlen(line);
			char buf[8192];
			if (len < sizeof(buf)) {
				memcpy(buf, line, len);
				buf[len] = 0;
				if (strstr(buf, t) && strstr(buf, id) && (!needle || strstr(buf, needle)))
					found = true;
			}
			line = nl ? nl + 1 : NULL;
		}
		pthread_mutex_unlock(&ev_lock);
		if (found)
			return true;
		time_sleep_ns(50 * TIME_NS_PER_MS);
	} while (time_mono_ns() < end);
	return false;
}

/* ---- the tests ----------------------------------------------------------- */

static const struct recorder_caller alice = { .user_id = "alice" };
static const struct recorder_caller bob = { .user_id = "bob" };

static void test_lifecycle(struct recorder *r)
{
	struct recorder_reply rep = { 0 };
	char id[UUID_STR_LEN], path[1200];

	int64_t t0 = time_mono_ns();
	recorder_start(r, &alice, "room-a", "webm", NULL, &rep);
	CHECK_INT(rep.status, 200);
	if (rep.status != 200) {
		fprintf(stderr, "start: %s\n", rep.body ? cJSON_PrintUnformatted(rep.body) : "(null)");
		reply_reset(&rep);
		return;
	}
	fprintf(stderr, "start -> first frame reply in %.1f ms\n", (double)(time_mono_ns() - t0) / 1e6);
	CHECK_STR(itest_str_of(rep.body, "status"), "recording");
	CHECK_STR(itest_str_of(rep.body, "quality"), "low");
	CHECK_STR(itest_str_of(rep.body, "format"), "webm");
	CHECK_STR(itest_str_of(rep.body, "user_id"), "alice");
	CHECK_STR(itest_str_of(rep.body, "room_id"), "room-a");
	util_strlcpy(id, itest_str_of(rep.body, "recording_id"), sizeof(id));
	CHECK(util_uuid_valid(id));
	char want_name[80];
	snprintf(want_name, sizeof(want_name), "recording_%s.webm", id);
	CHECK_STR(itest_str_of(rep.body, "file_name"), want_name);
	const cJSON *qs = cJSON_GetObjectItemCaseSensitive(rep.body, "quality_settings");
	CHECK_STR(itest_str_of(qs, "resolution"), "854x480");
	CHECK_STR(itest_str_of(qs, "video_bitrate"), "1M");
	CHECK(saw_event("recording_started", id, NULL, 2.0));
	reply_reset(&rep);

	/* Ownership and ids. */
	recorder_status(r, &bob, "room-a", id, &rep);
	CHECK_INT(rep.status, 200);
	reply_reset(&rep);
	recorder_pause(r, &bob, "room-a", id, &rep);
	CHECK_INT(rep.status, 403);
	CHECK_STR(itest_str_of(rep.body, "code"), "forbidden");
	reply_reset(&rep);
	recorder_stop(r, &bob, "room-a", id, &rep);
	CHECK_INT(rep.status, 403);
	reply_reset(&rep);
	recorder_stop(r, &alice, "room-b", id, &rep);
	CHECK_INT(rep.status, 404);
	reply_reset(&rep);
	recorder_stop(r, &alice, "room-a", "not-a-uuid", &rep);
	CHECK_INT(rep.status, 400);
	CHECK_STR(itest_str_of(rep.body, "code"), "invalid_recording_id");
	reply_reset(&rep);
	recorder_stop(r, &alice, "room a", id, &rep);
	CHECK_INT(rep.status, 400);
	reply_reset(&rep);
	recorder_status(r, &alice, "room-a", "00000000-0000-4000-8000-000000000000", &rep);
	CHECK_INT(rep.status, 404);
	CHECK_STR(itest_str_of(rep.body, "code"), "not_found");
	reply_reset(&rep);
	recorder_resume(r, &alice, "room-a", id, &rep);
	CHECK_INT(rep.status, 400);
	CHECK_STR(itest_str_of(rep.body, "code"), "invalid_transition");
	reply_reset(&rep);

	/* 0.8 s recorded, 0.7 s paused, 0.8 s recorded. */
	time_sleep_ns(800 * TIME_NS_PER_MS);
	recorder_pause(r, &alice, "room-a", id, &rep);
	CHECK_INT(rep.status, 200);
	CHECK_STR(itest_str_of(rep.body, "status"), "paused");
	CHECK(itest_str_of(rep.body, "paused_at") != NULL);
	reply_reset(&rep);
	CHECK(saw_event("recording_paused", id, NULL, 2.0));
	recorder_pause(r, &alice, "room-a", id, &rep);
	CHECK_INT(rep.status, 400);
	reply_reset(&rep);
	time_sleep_ns(700 * TIME_NS_PER_MS);
	recorder_resume(r, &alice, "room-a", id, &rep);
	CHECK_INT(rep.status, 200);
	CHECK_STR(itest_str_of(rep.body, "status"), "recording");
	CHECK(itest_str_of(rep.body, "resumed_at") != NULL);
	reply_reset(&rep);
	time_sleep_ns(800 * TIME_NS_PER_MS);

	recorder_stop(r, &alice, "room-a", id, &rep);
	CHECK_INT(rep.status, 200);
	CHECK_STR(itest_str_of(rep.body, "status"), "processing");
	double dur = itest_num_of(rep.body, "duration_seconds");
	fprintf(stderr, "stopped: duration_seconds %.3f (1.6 s of active time asked)\n", dur);
	CHECK(dur > 1.35 && dur < 1.95);
	CHECK(itest_str_of(rep.body, "stopped_at") != NULL);
	reply_reset(&rep);
	CHECK(saw_event("recording_stopped", id, "\"reason\":\"requested\"", 2.0));

	CHECK_INT(recorder_drain(r, 10 * TIME_NS_PER_SEC), 0);
	wait_final(r, &alice, "room-a", id, &rep, 5.0);
	CHECK_STR(itest_str_of(rep.body, "status"), "completed");
	CHECK(itest_str_of(rep.body, "processed_at") != NULL);
	CHECK(itest_num_of(rep.body, "file_size_bytes") > 1000);
	CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(rep.body, "error")));
	file_of(rep.body, path, sizeof(path));
	struct stat sb;
	CHECK(stat(path, &sb) == 0 && (double)sb.st_size == itest_num_of(rep.body, "file_size_bytes"));
	double probe = itest_ffprobe_duration(path);
	fprintf(stderr, "ffprobe %.3f s vs duration_seconds %.3f s\n", probe, itest_num_of(rep.body, "duration_seconds"));
	CHECK(fabs(probe - itest_num_of(rep.body, "duration_seconds")) <= 0.050);
	CHECK(saw_event("recording_completed", id, NULL, 2.0));
	reply_reset(&rep);

	/* Nothing may be done to a completed recording but read or delete it. */
	recorder_pause(r, &alice, "room-a", id, &rep);
	CHECK_INT(rep.status, 400);
	reply_reset(&rep);
	recorder_stop(r, &alice, "room-a", id, &rep);
	CHECK_INT(rep.status, 400);
	reply_reset(&rep);

	/* Listings. */
	recorder_list_room(r, &bob, "room-a", &rep);
	CHECK_INT(rep.status, 200);
	CHECK(itest_num_of(rep.body, "count") >= 1);
	reply_reset(&rep);
	recorder_list_user(r, &alice, "completed", &rep);
	CHECK_INT(rep.status, 200);
	CHECK(itest_num_of(rep.body, "count") >= 1);
	reply_reset(&rep);
	recorder_list_user(r, &bob, NULL, &rep);
	CHECK_INT(rep.status, 200);
	CHECK_INT((int)itest_num_of(rep.body, "count"), 0);
	reply_reset(&rep);
	recorder_list_user(r, &alice, "done", &rep);
	CHECK_INT(rep.status, 400);
	reply_reset(&rep);

	/* DELETE (cancel) on a completed recording deletes it: its folder and
	 * its record go, and a second DELETE finds nothing. */
	recorder_cancel(r, &alice, "room-a", id, &rep);
	CHECK_INT(rep.status, 200);
	reply_reset(&rep);
	CHECK(stat(path, &sb) != 0);
	recorder_status(r, &alice, "room-a", id, &rep);
	CHECK_INT(rep.status, 404);
	reply_reset(&rep);
	recorder_cancel(r, &alice, "room-a", id, &rep);
	CHECK_INT(rep.status, 404);
	reply_reset(&rep);
}

static void test_bad_start(struct recorder *r)
{
	struct recorder_reply rep = { 0 };
	recorder_start(r, &alice, "room-a", "avi", NULL, &rep);
	CHECK_INT(rep.status, 400);
	CHECK_STR(itest_str_of(rep.body, "code"), "invalid_format");
	reply_reset(&rep);
	recorder_start(r, &alice, "room-a", NULL, "extreme", &rep);
	CHECK_INT(rep.status, 400);
	CHECK_STR(itest_str_of(rep.body, "code"), "invalid_quality");
	reply_reset(&rep);
	recorder_start(r, &alice, "", NULL, NULL, &rep);
	CHECK_INT(rep.status, 400);
	CHECK_STR(itest_str_of(rep.body, "code"), "invalid_room_id");
	reply_reset(&rep);
	struct recorder_caller nobody = { .user_id = "" };
	recorder_start(r, &nobody, "room-a", NULL, NULL, &rep);
	CHECK_INT(rep.status, 403);
	reply_reset(&rep);
}

static void test_cancel_and_limit(struct recorder *r, struct state *st)
{
	struct recorder_reply rep = { 0 };
	char ids[3][UUID_STR_LEN];
	for (int i = 0; i < 3; i++) {
		recorder_start(r, i == 2 ? &bob : &alice, "room-c", "mkv", "low", &rep);
		CHECK_INT(rep.status, 200);
		util_strlcpy(ids[i], rep.body ? itest_str_of(rep.body, "recording_id") ? itest_str_of(rep.body, "recording_id") : "" : "",
			     UUID_STR_LEN);
		reply_reset(&rep);
	}
	CHECK_INT(state_active_count(st), 3);
	recorder_start(r, &bob, "room-c", NULL, NULL, &rep);
	CHECK_INT(rep.status, 400);
	CHECK_STR(itest_str_of(rep.body, "code"), "limit_reached");
	reply_reset(&rep);

	struct recorder_metrics m;
	recorder_metrics(r, &m);
	CHECK_INT(m.active, 3);
	CHECK(m.refused_total >= 1);

	char dir[1100];
	snprintf(dir, sizeof(dir), "%s/rec/%s", tmpdir, ids[0]);
	struct stat sb;
	time_sleep_ns(300 * TIME_NS_PER_MS);
	CHECK(stat(dir, &sb) == 0);
	recorder_cancel(r, &bob, "room-c", ids[0], &rep);
	CHECK_INT(rep.status, 403);
	reply_reset(&rep);
	for (int i = 0; i < 3; i++) {
		recorder_cancel(r, i == 2 ? &bob : &alice, "room-c", ids[i], &rep);
		CHECK_INT(rep.status, 200);
		CHECK_STR(itest_str_of(rep.body, "status"), "cancelled");
		reply_reset(&rep);
	}
	CHECK(stat(dir, &sb) != 0 && errno == ENOENT);
	CHECK(saw_event("recording_cancelled", ids[0], NULL, 2.0));
	CHECK_INT(state_active_count(st), 0);
	recorder_cancel(r, &alice, "room-c", ids[0], &rep);
	CHECK_INT(rep.status, 400);
	reply_reset(&rep);
	recorder_status(r, &alice, "room-c", ids[0], &rep);
	CHECK_STR(itest_str_of(rep.body, "status"), "cancelled");
	reply_reset(&rep);
}

static void test_max_duration(struct recorder *r)
{
	struct recorder_reply rep = { 0 };
	char id[UUID_STR_LEN] = "", path[1200];
	recorder_start(r, &alice, "room-m", "webm", "low", &rep);
	CHECK_INT(rep.status, 200);
	if (rep.body && itest_str_of(rep.body, "recording_id"))
		util_strlcpy(id, itest_str_of(rep.body, "recording_id"), sizeof(id));
	reply_reset(&rep);
	CHECK(saw_event("recording_stopped", id, "\"reason\":\"max_duration\"", 8.0));
	CHECK_INT(recorder_drain(r, 10 * TIME_NS_PER_SEC), 0);
	wait_final(r, &alice, "room-m", id, &rep, 5.0);
	CHECK_STR(itest_str_of(rep.body, "status"), "completed");
	double dur = itest_num_of(rep.body, "duration_seconds");
	fprintf(stderr, "auto-stopped at %.3f s (limit 4 s)\n", dur);
	CHECK(dur >= 3.95 && dur <= 4.30);
	file_of(rep.body, path, sizeof(path));
	double probe = itest_ffprobe_duration(path);
	CHECK(fabs(probe - dur) <= 0.050);
	reply_reset(&rep);
}

/* Races: 8 threads start at once against the limit of 3 (exactly 3 get
 * in); then on each admitted recording a stop and a cancel race (exactly
 * one wins, the other sees an invalid transition). */
struct race_arg {
	struct recorder *r;
	const char *op; /* "start", "stop", "cancel" */
	char id[UUID_STR_LEN];
	pthread_barrier_t *barrier;
	int status;
};

static void *race_main(void *p)
{
	struct race_arg *a = p;
	struct recorder_reply rep = { 0 };
	pthread_barrier_wait(a->barrier);
	if (strcmp(a->op, "start") == 0) {
		recorder_start(a->r, &alice, "room-race", "webm", "low", &rep);
		if (rep.status == 200 && itest_str_of(rep.body, "recording_id"))
			util_strlcpy(a->id, itest_str_of(rep.body, "recording_id"), sizeof(a->id));
	} else if (strcmp(a->op, "stop") == 0) {
		recorder_stop(a->r, &alice, "room-race", a->id, &rep);
	} else {
		recorder_cancel(a->r, &alice, "room-race", a->id, &rep);
	}
	a->status = rep.status;
	cJSON_Delete(rep.body);
	return NULL;
}

static void test_races(struct recorder *r, struct state *st)
{
	enum { N = 8 };
	pthread_t t[N];
	struct race_arg a[N];
	pthread_barrier_t b;
	pthread_barrier_init(&b, NULL, N);
	for (int i = 0; i < N; i++) {
		a[i] = (struct race_arg){ .r = r, .op = "start", .barrier = &b };
		pthread_create(&t[i], NULL, race_main, &a[i]);
	}
	int admitted = 0, refused = 0;
	char ids[N][UUID_STR_LEN];
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		if (a[i].status == 200)
			util_strlcpy(ids[admitted++], a[i].id, UUID_STR_LEN);
		else if (a[i].status == 400)
			refused++;
	}
	pthread_barrier_destroy(&b);
	CHECK_INT(admitted, 3);
	CHECK_INT(refused, N - 3);
	CHECK_INT(state_active_count(st), 3);

	for (int k = 0; k < admitted; k++) {
		struct race_arg pair[2] = { { .r = r, .op = "stop" }, { .r = r, .op = "cancel" } };
		pthread_barrier_t b2;
		pthread_barrier_init(&b2, NULL, 2);
		for (int i = 0; i < 2; i++) {
			util_strlcpy(pair[i].id, ids[k], UUID_STR_LEN);
			pair[i].barrier = &b2;
			pthread_create(&t[i], NULL, race_main, &pair[i]);
		}
		pthread_join(t[0], NULL);
		pthread_join(t[1], NULL);
		pthread_barrier_destroy(&b2);
		/* One wins; both win only when the stop came first and the
		 * cancel then caught the recording in processing. */
		CHECK(pair[0].status == 200 || pair[1].status == 200);
		CHECK(pair[0].status == 200 || pair[0].status == 400);
		CHECK(pair[1].status == 200 || pair[1].status == 400);
		CHECK_INT(recorder_drain(r, 20 * TIME_NS_PER_SEC), 0);
		cJSON *rec = state_get(st, ids[k]);
		CHECK(rec != NULL);
		CHECK_STR(state_record_str(rec, "status"), pair[1].status == 200 ? "cancelled" : "completed");
		cJSON_Delete(rec);
	}
	CHECK_INT(state_active_count(st), 0);
	CHECK_INT(recorder_drain(r, 20 * TIME_NS_PER_SEC), 0);
}

/* mp4: recorded as VP9/Opus Matroska, remuxed at processing; thumbnail,
 * checksum and codecs in metadata; the intermediate file removed. */
static void test_mp4(struct recorder *r)
{
	struct recorder_reply rep = { 0 };
	char id[UUID_STR_LEN] = "", path[1200];
	recorder_start(r, &alice, "room-p", "mp4", "low", &rep);
	CHECK_INT(rep.status, 200);
	if (rep.body && itest_str_of(rep.body, "recording_id"))
		util_strlcpy(id, itest_str_of(rep.body, "recording_id"), sizeof(id));
	reply_reset(&rep);
	time_sleep_ns(1500 * TIME_NS_PER_MS);
	recorder_stop(r, &alice, "room-p", id, &rep);
	CHECK_INT(rep.status, 200);
	reply_reset(&rep);
	CHECK_INT(recorder_drain(r, 20 * TIME_NS_PER_SEC), 0);
	wait_final(r, &alice, "room-p", id, &rep, 10.0);
	CHECK_STR(itest_str_of(rep.body, "status"), "completed");
	char want[80];
	snprintf(want, sizeof(want), "recording_%s.mp4", id);
	CHECK_STR(itest_str_of(rep.body, "file_name"), want);
	file_of(rep.body, path, sizeof(path));
	struct stat sb;
	CHECK(stat(path, &sb) == 0 && (double)sb.st_size == itest_num_of(rep.body, "file_size_bytes"));
	double probe = itest_ffprobe_duration(path);
	fprintf(stderr, "mp4: ffprobe %.3f s vs duration_seconds %.3f s\n", probe, itest_num_of(rep.body, "duration_seconds"));
	CHECK(fabs(probe - itest_num_of(rep.body, "duration_seconds")) <= 0.050);
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(rep.body, "metadata");
	CHECK_STR(itest_str_of(m, "video_codec"), "vp9");
	CHECK_STR(itest_str_of(m, "audio_codec"), "opus");
	CHECK_STR(itest_str_of(m, "thumbnail"), "thumbnail.jpg");
	CHECK(itest_str_of(m, "checksum") && strlen(itest_str_of(m, "checksum")) == 64);
	CHECK(cJSON_GetObjectItemCaseSensitive(m, "processing") == NULL);
	char other[1200];
	snprintf(other, sizeof(other), "%s/recording_%s.mkv", itest_str_of(rep.body, "local_path"), id);
	CHECK(stat(other, &sb) != 0);
	snprintf(other, sizeof(other), "%s/thumbnail.jpg", itest_str_of(rep.body, "local_path"));
	CHECK(stat(other, &sb) == 0 && sb.st_size > 500);
	reply_reset(&rep);
}

/* Redis goes away mid-recording and comes back: the recording goes on, the
 * requests made meanwhile succeed, and Redis holds the right state after. */
static void test_redis_outage(struct recorder *r, const char *storage)
{
	struct recorder_reply rep = { 0 };
	char id[UUID_STR_LEN] = "", path[1200];
	recorder_start(r, &alice, "room-o", "webm", "low", &rep);
	CHECK_INT(rep.status, 200);
	if (rep.body && itest_str_of(rep.body, "recording_id"))
		util_strlcpy(id, itest_str_of(rep.body, "recording_id"), sizeof(id));
	reply_reset(&rep);
	time_sleep_ns(500 * TIME_NS_PER_MS);

	kill(redis_pid, SIGTERM);
	waitpid(redis_pid, NULL, 0);
	int64_t t0 = time_mono_ns();
	recorder_pause(r, &alice, "room-o", id, &rep);
	fprintf(stderr, "pause with Redis down answered %d in %.1f ms\n", rep.status,
		(double)(time_mono_ns() - t0) / 1e6);
	CHECK_INT(rep.status, 200);
	reply_reset(&rep);
	time_sleep_ns(300 * TIME_NS_PER_MS);
	recorder_resume(r, &alice, "room-o", id, &rep);
	CHECK_INT(rep.status, 200);
	reply_reset(&rep);
	recorder_status(r, &alice, "room-o", id, &rep);
	CHECK_INT(rep.status, 200);
	CHECK_STR(itest_str_of(rep.body, "status"), "recording");
	reply_reset(&rep);
	time_sleep_ns(500 * TIME_NS_PER_MS);

	CHECK_INT(start_redis(), 0);
	struct state *probe_st = itest_state_connect(redis_url, tmpdir, "observer");
	/* The deferred writes land once Redis is back. */
	cJSON *rec = NULL;
	int64_t end = time_mono_ns() + 10 * TIME_NS_PER_SEC;
	while (time_mono_ns() < end) {
		cJSON_Delete(rec);
		rec = probe_st ? state_get(probe_st, id) : NULL;
		if (rec && itest_str_of(rec, "resumed_at") && !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(rec, "resumed_at")))
			break;
		time_sleep_ns(100 * TIME_NS_PER_MS);
	}
	CHECK_STR(rec ? itest_str_of(rec, "status") : NULL, "recording");
	CHECK(rec && itest_str_of(rec, "paused_at") && itest_str_of(rec, "resumed_at"));
	cJSON_Delete(rec);

	recorder_stop(r, &alice, "room-o", id, &rep);
	CHECK_INT(rep.status, 200);
	double dur = itest_num_of(rep.body, "duration_seconds");
	reply_reset(&rep);
	CHECK_INT(recorder_drain(r, 20 * TIME_NS_PER_SEC), 0);
	wait_final(r, &alice, "room-o", id, &rep, 10.0);
	CHECK_STR(itest_str_of(rep.body, "status"), "completed");
	file_of(rep.body, path, sizeof(path));
	CHECK(fabs(itest_ffprobe_duration(path) - dur) <= 0.050);
	reply_reset(&rep);
	rec = probe_st ? state_get(probe_st, id) : NULL;
	CHECK_STR(rec ? itest_str_of(rec, "status") : NULL, "completed");
	cJSON_Delete(rec);
	CHECK_INT(probe_st ? state_active_count(probe_st) : -1, 0);
	state_free(probe_st);
	(void)storage;
}

/* A job left in processing resumes after the step its journal names: put a
 * completed recording back into processing with the journal at "thumbnail"
 * and the thumbnail gone; a new recorder finishes it without making one. */
static void test_journal_resume(const char *storage)
{
	char err[256];
	struct state *st = itest_state_connect(redis_url, tmpdir, "node-j");
	struct config *c = make_config(storage);
	struct recorder *r = st && c ? recorder_new(c, st, NULL, err, sizeof(err)) : NULL;
	CHECK(r != NULL);
	if (!r) {
		config_free(c);
		state_free(st);
		return;
	}
	struct recorder_reply rep = { 0 };
	char id[UUID_STR_LEN] = "";
	recorder_start(r, &alice, "room-j", "webm", "low", &rep);
	if (rep.body && itest_str_of(rep.body, "recording_id"))
		util_strlcpy(id, itest_str_of(rep.body, "recording_id"), sizeof(id));
	reply_reset(&rep);
	time_sleep_ns(1200 * TIME_NS_PER_MS);
	recorder_stop(r, &alice, "room-j", id, &rep);
	reply_reset(&rep);
	recorder_drain(r, 20 * TIME_NS_PER_SEC);
	recorder_free(r);

	cJSON *rec = state_get(st, id);
	CHECK_STR(rec ? itest_str_of(rec, "status") : NULL, "completed");
	if (rec) {
		state_record_set_str(rec, "status", "processing");
		state_record_set_time(rec, "processed_at", 0);
		CHECK(state_put(st, rec) >= 0);
	}
	cJSON_Delete(rec);
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "step", "thumbnail");
	CHECK(state_journal_set(st, id, j) >= 0);
	cJSON_Delete(j);
	char mark[1200], thumb[1200];
	snprintf(mark, sizeof(mark), "%s/%s/.processing", storage, id);
	snprintf(thumb, sizeof(thumb), "%s/%s/thumbnail.jpg", storage, id);
	FILE *f = fopen(mark, "w");
	CHECK(f != NULL);
	if (f)
		fclose(f);
	CHECK(unlink(thumb) == 0);

	r = recorder_new(c, st, NULL, err, sizeof(err));
	CHECK(r != NULL);
	if (r) {
		CHECK_INT(recorder_drain(r, 20 * TIME_NS_PER_SEC), 0);
		wait_final(r, &alice, "room-j", id, &rep, 10.0);
		CHECK_STR(itest_str_of(rep.body, "status"), "completed");
		CHECK(itest_str_of(rep.body, "processed_at") != NULL);
		reply_reset(&rep);
		struct stat sb;
		CHECK(stat(thumb, &sb) != 0); /* the thumbnail step was not run again */
		CHECK(stat(mark, &sb) != 0);  /* the job's mark is gone */
		cJSON *left = state_journal_get(st, id);
		CHECK(left == NULL);
		cJSON_Delete(left);
		recorder_free(r);
	}
	config_free(c);
	state_free(st);
}

/* Start refuses with 507 when the disk cannot hold what the recording may
 * need plus the reserve. */
static void test_disk_admission(const char *storage)
{
	char err[256];
	struct state *st = itest_state_connect(redis_url, tmpdir, "node-d");
	struct config *c = make_config(storage);
	CHECK(c && config_set(c, "recorder.disk_reserve", "1000000G", err, sizeof(err)) == 0);
	struct recorder *r = st && c ? recorder_new(c, st, NULL, err, sizeof(err)) : NULL;
	CHECK(r != NULL);
	if (r) {
		struct recorder_reply rep = { 0 };
		recorder_start(r, &alice, "room-d", NULL, NULL, &rep);
		CHECK_INT(rep.status, 507);
		CHECK_STR(itest_str_of(rep.body, "code"), "insufficient_storage");
		reply_reset(&rep);
		CHECK_INT(state_active_count(st), 0);
		recorder_free(r);
	}
	config_free(c);
	state_free(st);
}

/* max_recordings_per_user: the second live recording of one user is
 * refused while another user still gets a slot. */
static void test_user_limit(const char *storage)
{
	char err[256];
	struct state *st = itest_state_connect(redis_url, tmpdir, "node-u");
	struct config *c = make_config(storage);
	CHECK(c && config_set(c, "max_recordings_per_user", "1", err, sizeof(err)) == 0);
	struct recorder *r = st && c ? recorder_new(c, st, NULL, err, sizeof(err)) : NULL;
	CHECK(r != NULL);
	if (r) {
		struct recorder_reply rep = { 0 };
		recorder_start(r, &alice, "room-u", NULL, NULL, &rep);
		CHECK_INT(rep.status, 200);
		reply_reset(&rep);
		recorder_start(r, &alice, "room-u", NULL, NULL, &rep);
		CHECK_INT(rep.status, 400);
		CHECK_STR(itest_str_of(rep.body, "code"), "limit_reached");
		reply_reset(&rep);
		recorder_start(r, &bob, "room-u", NULL, NULL, &rep);
		CHECK_INT(rep.status, 200);
		reply_reset(&rep);
		CHECK_INT(state_active_count(st), 2);
		recorder_free(r); /* stops both into processing, releasing the slots */
		CHECK_INT(state_active_count(st), 0);
	}
	config_free(c);
	state_free(st);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n++;
	closedir(d);
	return n;
}

/* A source that never sends (RTP, nobody sending): start answers with the
 * recording pending, and after recorder.first_frame_timeout it fails with a
 * reason and gives its slot back. */
static void test_silent_source(const char *storage)
{
	char err[256];
	struct state *st = itest_state_connect(redis_url, tmpdir, "node-s");
	struct config *c = make_config(storage);
	/* The video port comes from rtp.port_min..port_max: a room may not fix
	 * one outside it. */
	CHECK(c && config_set(c, "room.silent.source", "rtp", err, sizeof(err)) == 0);
	CHECK(c && config_set(c, "room.silent.args", "audio=0", err, sizeof(err)) == 0);
	CHECK(c && config_set(c, "recorder.first_frame_timeout", "3s", err, sizeof(err)) == 0);
	struct recorder *r = st && c ? recorder_new(c, st, NULL, err, sizeof(err)) : NULL;
	CHECK(r != NULL);
	if (r) {
		struct recorder_reply rep = { 0 };
		char id[UUID_STR_LEN] = "";
		recorder_start(r, &alice, "silent", "webm", "low", &rep);
		CHECK_INT(rep.status, 200);
		CHECK_STR(rep.body ? itest_str_of(rep.body, "status") : NULL, "pending");
		if (rep.body && itest_str_of(rep.body, "recording_id"))
			util_strlcpy(id, itest_str_of(rep.body, "recording_id"), sizeof(id));
		reply_reset(&rep);
		recorder_stop(r, &alice, "silent", id, &rep);
		CHECK_INT(rep.status, 400); /* nothing recorded yet to stop */
		reply_reset(&rep);
		CHECK_INT(state_active_count(st), 1);
		wait_final(r, &alice, "silent", id, &rep, 5.0);
		CHECK_STR(itest_str_of(rep.body, "status"), "failed");
		const char *e = itest_str_of(rep.body, "error");
		CHECK(e && strstr(e, "no media"));
		reply_reset(&rep);
		CHECK_INT(state_active_count(st), 0);

		/* A room mapped to a source driver that does not exist: 500, the
		 * slot released and no directory left behind. */
		CHECK(config_set(c, "room.broken.source", "nosuchdriver", err, sizeof(err)) == 0);
		int before = count_entries(storage);
		recorder_start(r, &alice, "broken", "webm", "low", &rep);
		CHECK_INT(rep.status, 500);
		CHECK_STR(rep.body ? itest_str_of(rep.body, "code") : NULL, "pipeline_failed");
		reply_reset(&rep);
		CHECK_INT(count_entries(storage), before);
		CHECK_INT(state_active_count(st), 0);
		recorder_free(r);
	}
	config_free(c);
	state_free(st);
}

/* With a policy host the decision moves to auth.lua; its built-in default
 * (no policy files here) lets an admin drive another user's recording. */
static void test_policy_hook(const char *storage)
{
	char err[256], pdir[600];
	snprintf(pdir, sizeof(pdir), "%s/policies", tmpdir);
	util_mkdir_p(pdir, 0755);
	struct policy_host_options po = { .dir = pdir };
	struct policy_host *pol = policy_host_new(&po, err, sizeof(err));
	CHECK(pol != NULL);
	struct state *st = itest_state_connect(redis_url, tmpdir, "node-p");
	struct config *c = make_config(storage);
	struct recorder *r = pol && st && c ? recorder_new(c, st, pol, err, sizeof(err)) : NULL;
	CHECK(r != NULL);
	if (r) {
		cJSON *admin_claims = cJSON_Parse("{\"sub\":\"carol\",\"roles\":[\"admin\"]}");
		struct recorder_caller carol = { .user_id = "carol", .claims = admin_claims };
		struct recorder_reply rep = { 0 };
		char id[UUID_STR_LEN] = "";
		recorder_start(r, &alice, "room-q", NULL, NULL, &rep);
		CHECK_INT(rep.status, 200);
		if (rep.body && itest_str_of(rep.body, "recording_id"))
			util_strlcpy(id, itest_str_of(rep.body, "recording_id"), sizeof(id));
		reply_reset(&rep);
		recorder_pause(r, &bob, "room-q", id, &rep);
		CHECK_INT(rep.status, 403);
		reply_reset(&rep);
		recorder_pause(r, &carol, "room-q", id, &rep);
		CHECK_INT(rep.status, 200);
		reply_reset(&rep);
		recorder_cancel(r, &alice, "room-q", id, &rep);
		CHECK_INT(rep.status, 200);
		reply_reset(&rep);
		cJSON_Delete(admin_claims);
		recorder_free(r);
	}
	config_free(c);
	state_free(st);
	policy_host_free(pol);
}

/* Free space falls below recorder.disk_low_water while recording (on a
 * small tmpfs this test mounts; skipped where mounting is not allowed):
 * the recording stops cleanly with reason disk_low and its file plays;
 * a start while the disk stays low is refused with 507. */
static void test_disk_low(void)
{
	char small[300], cmd[1400], err[256];
	snprintf(small, sizeof(small), "%s/small", tmpdir);
	util_mkdir_p(small, 0755);
	snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=24m tmpfs '%s' 2>/dev/null", small);
	if (system(cmd) != 0) {
		fprintf(stderr, "test_disk_low: SKIPPED (cannot mount a tmpfs here)\n");
		return;
	}
	struct state *st = itest_state_connect(redis_url, tmpdir, "node-low");
	struct config *c = make_config(small);
	CHECK(c && config_set(c, "recorder.disk_reserve", "0", err, sizeof(err)) == 0);
	CHECK(c && config_set(c, "recorder.disk_low_water", "16M", err, sizeof(err)) == 0);
	struct recorder *r = st && c ? recorder_new(c, st, NULL, err, sizeof(err)) : NULL;
	CHECK(r != NULL);
	if (r) {
		CHECK_INT(recorder_on_event(r, on_event, NULL), 0);
		struct recorder_reply rep = { 0 };
		char id[UUID_STR_LEN] = "", path[1200];
		recorder_start(r, &alice, "room-low", "webm", "low", &rep);
		CHECK_INT(rep.status, 200);
		if (rep.body && itest_str_of(rep.body, "recording_id"))
			util_strlcpy(id, itest_str_of(rep.body, "recording_id"), sizeof(id));
		reply_reset(&rep);
		time_sleep_ns(800 * TIME_NS_PER_MS);
		/* Leave about 12 MB free: below the 16 MB mark. */
		snprintf(cmd, sizeof(cmd), "fallocate -l 11M '%s/filler' || dd if=/dev/zero of='%s/filler' bs=1M count=11 2>/dev/null",
			 small, small);
		CHECK(system(cmd) == 0);
		CHECK(saw_event("recording_stopped", id, "\"reason\":\"disk_low\"", 3.0));
		CHECK_INT(recorder_drain(r, 20 * TIME_NS_PER_SEC), 0);
		wait_final(r, &alice, "room-low", id, &rep, 5.0);
		CHECK_STR(itest_str_of(rep.body, "status"), "completed");
		file_of(rep.body, path, sizeof(path));
		CHECK(fabs(itest_ffprobe_duration(path) - itest_num_of(rep.body, "duration_seconds")) <= 0.050);
		reply_reset(&rep);
		recorder_start(r, &alice, "room-low", "webm", "low", &rep);
		CHECK_INT(rep.status, 507);
		reply_reset(&rep);
		recorder_free(r);
	}
	config_free(c);
	state_free(st);
	snprintf(cmd, sizeof(cmd), "umount -l '%s'", small);
	if (system(cmd) != 0)
		fprintf(stderr, "could not unmount %s\n", small);
}

/* The child: records in room-k on node "crashnode", prints the id, then
 * waits to be killed. */
static int child_main(const char *url, const char *storage)
{
	char err[256];
	util_strlcpy(redis_url, url, sizeof(redis_url));
	struct state *st = state_new(redis_url, tmpdir, "crashnode", err, sizeof(err));
	struct config *c = make_config(storage);
	struct recorder *r = st && c ? recorder_new(c, st, NULL, err, sizeof(err)) : NULL;
	if (!r) {
		fprintf(stderr, "child: %s\n", err);
		return 1;
	}
	struct recorder_reply rep = { 0 };
	recorder_start(r, &alice, "room-k", "webm", "low", &rep);
	if (rep.status != 200)
		return 1;
	time_sleep_ns(1500 * TIME_NS_PER_MS);
	printf("%s\n", itest_str_of(rep.body, "recording_id"));
	fflush(stdout);
	for (;;)
		pause();
}

static void test_recovery(const char *self, const char *storage)
{
	int fds[2];
	if (pipe(fds) < 0) {
		CHECK(0);
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		execl(self, self, "child", redis_url, storage, tmpdir, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	char id[64] = "";
	FILE *f = fdopen(fds[0], "r");
	if (!f || !fgets(id, sizeof(id), f)) {
		CHECK(0);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return;
	}
	id[strcspn(id, "\n")] = 0;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fclose(f);
	CHECK(util_uuid_valid(id));

	/* The record still says recording and holds a slot: a phantom. */
	char err[256];
	struct state *st = itest_state_connect(redis_url, tmpdir, "crashnode");
	cJSON *rec = st ? state_get(st, id) : NULL;
	CHECK_STR(rec ? itest_str_of(rec, "status") : NULL, "recording");
	cJSON_Delete(rec);
	CHECK_INT(state_active_count(st), 1);

	struct config *c = make_config(storage);
	struct recorder *r = recorder_new(c, st, NULL, err, sizeof(err));
	CHECK(r != NULL);
	if (r) {
		/* Right after start-up nothing is live any more. */
		CHECK_INT(state_active_count(st), 0);
		CHECK_INT(recorder_drain(r, 10 * TIME_NS_PER_SEC), 0);
		struct recorder_reply rep = { 0 };
		wait_final(r, &alice, "room-k", id, &rep, 5.0);
		CHECK_STR(itest_str_of(rep.body, "status"), "completed");
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(rep.body, "metadata");
		CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "recovered")));
		double dur = itest_num_of(rep.body, "duration_seconds");
		fprintf(stderr, "recovered %.3f s of a recording killed after ~1.5 s\n", dur);
		CHECK(dur > 0.8 && dur < 2.5);
		char path[1200];
		file_of(rep.body, path, sizeof(path));
		double probe = itest_ffprobe_duration(path);
		CHECK(fabs(probe - dur) <= 0.050);
		struct media_file_info info;
		CHECK_INT(media_file_probe(path, &info, err, sizeof(err)), 0);
		CHECK(info.has_cues);
		reply_reset(&rep);
		recorder_free(r);
	}
	config_free(c);
	state_free(st);
}

int main(int argc, char **argv)
{
	log_set_level(-1);
	if (argc == 5 && strcmp(argv[1], "child") == 0) {
		util_strlcpy(tmpdir, argv[4], sizeof(tmpdir));
		return child_main(argv[2], argv[3]);
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/itest_recorder.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	if (start_redis() < 0) {
		fprintf(stderr, "cannot start redis-server\n");
		return 1;
	}
	char storage[512], err[256];
	snprintf(storage, sizeof(storage), "%s/rec", tmpdir);

	struct state *st = itest_state_connect(redis_url, tmpdir, "node-a");
	struct config *c = st ? make_config(storage) : NULL;
	struct recorder *r = c ? recorder_new(c, st, NULL, err, sizeof(err)) : NULL;
	CHECK(r != NULL);
	if (r) {
		CHECK_INT(recorder_on_event(r, on_event, NULL), 0);
		time_sleep_ns(200 * TIME_NS_PER_MS); /* let the subscription settle */
		char why[256];
		CHECK(recorder_healthy(r, why, sizeof(why)));
		test_bad_start(r);
		test_lifecycle(r);
		test_cancel_and_limit(r, st);
		test_max_duration(r);
		test_races(r, st);
		test_mp4(r);
		test_redis_outage(r, storage);
		recorder_free(r);
	} else {
		fprintf(stderr, "recorder_new: %s\n", err);
	}
	config_free(c);
	state_free(st);

	test_user_limit(storage);
	test_silent_source(storage);
	test_policy_hook(storage);
	test_journal_resume(storage);
	test_disk_admission(storage);
	test_disk_low();
	test_recovery(argv[0], storage);

	kill(redis_pid, SIGTERM);
	waitpid(redis_pid, NULL, 0);
	if (check_failures == 0)
		util_rm_rf(tmpdir);
	else
		fprintf(stderr, "files kept in %s\n", tmpdir);
	return check_exit();
}
