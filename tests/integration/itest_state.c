/* itest_state: the state module against a real redis-server: keys and TTLs
 * of SPEC §4 read back with redis-cli, admission limits, listings, the
 * ownership listing used for recovery, the journal, publish/subscribe
 * between two stores, a Redis killed and restarted while writes go on, and
 * the embedded redis-server (start, supervised restart, persistence, stop). */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common_time.h"
#include "common_util.h"
#include "state.h"

static char tmpdir[] = "/tmp/itest_state.XXXXXX";
static char sock[256];
static pid_t redis_pid;

/* Starts redis-server on 'sock' without persistence and waits for PING. */
static pid_t redis_start(const char *socket_path)
{
	pid_t pid = fork();
	if (pid == 0) {
		freopen("/dev/null", "w", stdout);
		execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", socket_path, "--save", "",
		       "--appendonly", "no", "--dir", tmpdir, "--loglevel", "warning", (char *)NULL);
		_exit(127);
	}
	char cmd[512];
	snprintf(cmd, sizeof cmd, "redis-cli -s %s ping >/dev/null 2>&1", socket_path);
	for (int i = 0; i < 250; i++) {
		if (system(cmd) == 0)
			return pid;
		time_sleep_ns(20 * TIME_NS_PER_MS);
	}
	fprintf(stderr, "redis-server did not start\n");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

static void redis_kill(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

/* Runs redis-cli against 'socket_path' and returns its trimmed output in a
 * static buffer. */
static const char *cli_on(const char *socket_path, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static const char *cli_on(const char *socket_path, const char *fmt, ...)
{
	static char out[65536];
	char args[4096], cmd[4400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof cmd, "redis-cli -s %s --raw %s 2>&1", socket_path, args);
	out[0] = 0;
	FILE *p = popen(cmd, "r");
	if (!p)
		return out;
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = 0;
	pclose(p);
	while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		out[--n] = 0;
	return out;
}
#define cli(...) cli_on(sock, __VA_ARGS__)

static long long cli_int(const char *args)
{
	return atoll(cli("%s", args));
}

static cJSON *new_record(const char *room, const char *user, int64_t started_ns)
{
	struct state_record_init in = {
		.room_id = room, .user_id = user, .format = "webm", .quality = "medium",
		.resolution = "1280x720", .video_bitrate = "2.5M", .audio_bitrate = "128k", .fps = 30,
		.local_path = "/tmp/webrtc_recordings/x", .started_at_wall_ns = started_ns,
	};
	char err[256];
	cJSON *rec = state_record_new(&in, err, sizeof err);
	if (!rec)
		fprintf(stderr, "record: %s\n", err);
	return rec;
}

static const char *rid(const cJSON *rec)
{
	return state_record_str(rec, "recording_id");
}

static bool in_range(long long v, long long lo, long long hi)
{
	if (v >= lo && v <= hi)
		return true;
	fprintf(stderr, "%lld not in [%lld, %lld]\n", v, lo, hi);
	return false;
}

static void test_keys_and_ttls(struct state *st)
{
	cJSON *a = new_record("room-keys", "alice", 0);
	cJSON *b = new_record("room-keys", "bob", 0);
	CHECK_INT(state_put(st, a), STATE_OK);

	char k[256];
	snprintf(k, sizeof k, "GET webrtc:recording:state:%s", rid(a));
	cJSON *stored = cJSON_Parse(cli("%s", k));
	CHECK(stored != NULL && cJSON_Compare(stored, a, true));
	CHECK_INT(state_record_validate(stored, NULL, 0), STATE_OK);
	cJSON_Delete(stored);

	snprintf(k, sizeof k, "TTL webrtc:recording:state:%s", rid(a));
	CHECK(in_range(cli_int(k), 7 * 86400 - 5, 7 * 86400));
	CHECK(in_range(cli_int("TTL webrtc:recording:room:room-keys"), 86400 - 5, 86400));
	CHECK(in_range(cli_int("TTL webrtc:recording:user:alice"), 86400 - 5, 86400));
	CHECK_STR(cli("TYPE webrtc:recording:room:room-keys"), "set");
	snprintf(k, sizeof k, "SISMEMBER webrtc:recording:room:room-keys %s", rid(a));
	CHECK_INT(cli_int(k), 1);
	snprintf(k, sizeof k, "SISMEMBER webrtc:recording:user:alice %s", rid(a));
	CHECK_INT(cli_int(k), 1);

	/* 24 h is refreshed on add. */
	cli("EXPIRE webrtc:recording:room:room-keys 100");
	CHECK(in_range(cli_int("TTL webrtc:recording:room:room-keys"), 90, 100));
	CHECK_INT(state_put(st, b), STATE_OK);
	CHECK(in_range(cli_int("TTL webrtc:recording:room:room-keys"), 86400 - 5, 86400));
	CHECK_INT(cli_int("SCARD webrtc:recording:room:room-keys"), 2);

	/* The active set has no TTL once admitted. */
	char reason[128];
	CHECK_INT(state_admit(st, rid(a), "alice", 10, 0, reason, sizeof reason), STATE_OK);
	CHECK_INT(cli_int("TTL webrtc:recording:active"), -1);
	snprintf(k, sizeof k, "SISMEMBER webrtc:recording:active %s", rid(a));
	CHECK_INT(cli_int(k), 1);
	/* A terminal status leaves the active set. */
	state_record_set_status(a, STATE_STATUS_CANCELLED);
	CHECK_INT(state_put(st, a), STATE_OK);
	CHECK_INT(cli_int(k), 0);

	/* state_get returns what was written; a missing id is NULL. */
	cJSON *got = state_get(st, rid(b));
	CHECK(got != NULL && cJSON_Compare(got, b, true));
	cJSON_Delete(got);
	CHECK(state_get(st, "00000000-0000-4000-8000-000000000000") == NULL);

	/* An invalid record is refused and nothing is written. */
	cJSON *bad = cJSON_Duplicate(b, true);
	cJSON_AddStringToObject(bad, "owner", "x");
	CHECK_INT(state_put(st, bad), STATE_ERR_INVALID);
	cJSON_Delete(bad);
	snprintf(k, sizeof k, "GET webrtc:recording:state:%s", rid(b));
	CHECK(strstr(cli("%s", k), "\"owner\"") == NULL);

	cJSON_Delete(a);
	cJSON_Delete(b);
}

static void test_admission(struct state *st)
{
	char reason[128], ids[4][UUID_STR_LEN];
	cli("DEL webrtc:recording:active");
	for (int i = 0; i < 4; i++)
		util_uuid_v4(ids[i]);
	CHECK_INT(state_admit(st, ids[0], "u1", 2, 0, reason, sizeof reason), STATE_OK);
	CHECK_INT(state_admit(st, ids[0], "u1", 2, 0, reason, sizeof reason), STATE_OK); /* again: idempotent */
	CHECK_INT(state_admit(st, ids[1], "u2", 2, 0, reason, sizeof reason), STATE_OK);
	CHECK_INT(state_admit(st, ids[2], "u3", 2, 0, reason, sizeof reason), STATE_REFUSED);
	CHECK_STR(reason, "maximum concurrent recordings (2) reached");
	CHECK_INT(state_active_count(st), 2);
	CHECK_INT(state_release(st, ids[1]), STATE_OK);
	CHECK_INT(state_active_count(st), 1);
	CHECK_INT(state_admit(st, ids[2], "u3", 2, 0, reason, sizeof reason), STATE_OK);

	/* Per-user limit: u1 already holds ids[0]. */
	CHECK_INT(state_admit(st, ids[3], "u1", 0, 1, reason, sizeof reason), STATE_REFUSED);
	CHECK_STR(reason, "user 'u1' already has 1 live recordings (limit 1)");
	CHECK_INT(state_release(st, ids[0]), STATE_OK);
	CHECK_INT(cli_int("SCARD webrtc:recording:live:user:u1"), 0);
	CHECK_INT(state_admit(st, ids[3], "u1", 0, 1, reason, sizeof reason), STATE_OK);
	/* An id that left the active set without a release (a crashed node)
	 * no longer counts against its user. */
	char k[128];
	snprintf(k, sizeof k, "SREM webrtc:recording:active %s", ids[3]);
	cli("%s", k);
	CHECK_INT(state_admit(st, ids[0], "u1", 0, 1, reason, sizeof reason), STATE_OK);
	CHECK_INT(state_admit(st, "", "u1", 0, 1, reason, sizeof reason), STATE_ERR_INVALID);

	/* Heartbeats: this node's key is fresh and expires in 30 s. */
	CHECK(in_range(cli_int("TTL webrtc:recording:alive:node-a"), 25, 30));
	/* A live id of a node whose heartbeat expired is released at the next
	 * admission; one of a live node (node-b) still counts. */
	cli("DEL webrtc:recording:active webrtc:recording:live:user:zed");
	cli("SADD webrtc:recording:active 33333333-3333-4333-8333-333333333333 44444444-4444-4444-8444-444444444444");
	cli("HSET webrtc:recording:owner:33333333-3333-4333-8333-333333333333 node ghost user zed");
	cli("HSET webrtc:recording:owner:44444444-4444-4444-8444-444444444444 node node-b user zed");
	cli("SADD webrtc:recording:live:user:zed 33333333-3333-4333-8333-333333333333");
	cli("SADD webrtc:recording:node:ghost 33333333-3333-4333-8333-333333333333");
	cli("SADD webrtc:recording:node:node-b 44444444-4444-4444-8444-444444444444");
	cli("SADD webrtc:recording:nodes ghost");
	CHECK(in_range(cli_int("EXISTS webrtc:recording:alive:node-b"), 1, 1));
	CHECK_INT(cli_int("SISMEMBER webrtc:recording:nodes node-b"), 1);
	CHECK_INT(state_admit(st, ids[1], "u9", 2, 0, reason, sizeof reason), STATE_OK);
	CHECK_INT(cli_int("SISMEMBER webrtc:recording:active 33333333-3333-4333-8333-333333333333"), 0);
	CHECK_INT(cli_int("SCARD webrtc:recording:live:user:zed"), 0);
	CHECK_INT(cli_int("SISMEMBER webrtc:recording:nodes ghost"), 0);
	/* The dead node's own list stays, for its recovery if it returns. */
	CHECK_INT(cli_int("SCARD webrtc:recording:node:ghost"), 1);
	cli("SREM webrtc:recording:node:node-b 44444444-4444-4444-8444-444444444444");
	CHECK_INT(cli_int("SISMEMBER webrtc:recording:active 44444444-4444-4444-8444-444444444444"), 1);
	CHECK_INT(state_admit(st, ids[2], "u9", 2, 0, reason, sizeof reason), STATE_REFUSED);
	cli("DEL webrtc:recording:active");
}

/* The per-user usage: finished recordings book their duration in the day
 * they started, idempotently; live ones count from their start; other
 * users and other days do not count. */
static void test_usage(struct state *st)
{
	char reason[128];
	struct state_user_usage u;
	int64_t now = time_wall_ns();
	cli("DEL webrtc:recording:active");
	CHECK_INT(state_user_usage(st, "usr", now, &u), STATE_OK);
	CHECK_INT(u.live, 0);
	CHECK(u.seconds_today == 0);

	cJSON *done = new_record("r-usage", "usr", now - 3600 * TIME_NS_PER_SEC);
	cJSON *old = new_record("r-usage", "usr", now - 3 * 86400 * TIME_NS_PER_SEC);
	cJSON *other = new_record("r-usage", "someone", now - 60 * TIME_NS_PER_SEC);
	cJSON *live = new_record("r-usage", "usr", now - 90 * TIME_NS_PER_SEC);
	state_record_set_number(done, "duration_seconds", 1200);
	state_record_set_status(done, STATE_STATUS_PROCESSING);
	state_record_set_number(old, "duration_seconds", 5000);
	state_record_set_status(old, STATE_STATUS_COMPLETED);
	state_record_set_number(other, "duration_seconds", 50);
	state_record_set_status(other, STATE_STATUS_COMPLETED);
	CHECK_INT(state_put(st, done), STATE_OK);
	CHECK_INT(state_put(st, old), STATE_OK);
	CHECK_INT(state_put(st, other), STATE_OK);
	/* The same recording written again (processing -> completed) books
	 * only the difference. */
	state_record_set_number(done, "duration_seconds", 1210);
	state_record_set_status(done, STATE_STATUS_COMPLETED);
	CHECK_INT(state_put(st, done), STATE_OK);
	CHECK_INT(state_put(st, done), STATE_OK);
	CHECK_INT(state_admit(st, rid(live), "usr", 0, 0, reason, sizeof reason), STATE_OK);
	state_record_set_status(live, STATE_STATUS_RECORDING);
	CHECK_INT(state_put(st, live), STATE_OK);
	CHECK_INT(state_user_usage(st, "usr", now, &u), STATE_OK);
	CHECK_INT(u.live, 1);
	/* 1210 booked (the day may have turned in the last hour: then 0) + ~90 live */
	char day_now[40], day_done[40];
	time_iso8601(now, day_now, sizeof day_now);
	time_iso8601(now - 3600 * TIME_NS_PER_SEC, day_done, sizeof day_done);
	double booked = strncmp(day_now, day_done, 10) == 0 ? 1210 : 0;
	CHECK(u.seconds_today >= booked + 89 && u.seconds_today <= booked + 95);
	if (!(u.seconds_today >= booked + 89 && u.seconds_today <= booked + 95))
		fprintf(stderr, "usage: %.1f s today, expected %.0f + ~90\n", u.seconds_today, booked);
	state_release(st, rid(live));
	CHECK_INT(state_user_usage(st, "usr", now, &u), STATE_OK);
	CHECK_INT(u.live, 0);
	CHECK_INT(state_user_usage(st, "", now, &u), STATE_ERR_INVALID);
	cJSON_Delete(done);
	cJSON_Delete(old);
	cJSON_Delete(other);
	cJSON_Delete(live);
}

static void test_lists(struct state *st)
{
	int64_t t0 = time_wall_ns() - 1000 * TIME_NS_PER_SEC;
	cJSON *recs[4];
	for (int i = 0; i < 4; i++) {
		recs[i] = new_record("room-list", i < 3 ? "carol" : "dave", t0 + i * TIME_NS_PER_SEC);
		if (i == 1)
			state_record_set_status(recs[i], STATE_STATUS_RECORDING);
		CHECK_INT(state_put(st, recs[i]), STATE_OK);
	}
	cJSON *room = state_list_room(st, "room-list");
	CHECK_INT(cJSON_GetArraySize(room), 4);
	for (int i = 0; i < 4; i++) /* newest first */
		CHECK_STR(state_record_str(cJSON_GetArrayItem(room, i), "recording_id"), rid(recs[3 - i]));
	cJSON_Delete(room);

	cJSON *carol = state_list_user(st, "carol", NULL);
	CHECK_INT(cJSON_GetArraySize(carol), 3);
	cJSON_Delete(carol);
	cJSON *rec_only = state_list_user(st, "carol", "recording");
	CHECK_INT(cJSON_GetArraySize(rec_only), 1);
	CHECK_STR(state_record_str(cJSON_GetArrayItem(rec_only, 0), "recording_id"), rid(recs[1]));
	cJSON_Delete(rec_only);
	cJSON *none = state_list_room(st, "room-nobody");
	CHECK(none != NULL && cJSON_GetArraySize(none) == 0);
	cJSON_Delete(none);

	/* A record whose state expired is skipped, not an error. */
	char k[128];
	snprintf(k, sizeof k, "DEL webrtc:recording:state:%s", rid(recs[0]));
	cli("%s", k);
	room = state_list_room(st, "room-list");
	CHECK_INT(cJSON_GetArraySize(room), 3);
	cJSON_Delete(room);
	for (int i = 0; i < 4; i++)
		cJSON_Delete(recs[i]);
}

static void test_owned_live(struct state *st, struct state *other)
{
	/* Earlier tests left live records of node-a: start from a clean set. */
	cli("DEL webrtc:recording:node:node-a webrtc:recording:node:node-b");
	cJSON *live = new_record("room-own", "erin", 0);
	cJSON *paused = new_record("room-own", "erin", 0);
	cJSON *done = new_record("room-own", "erin", 0);
	cJSON *foreign = new_record("room-own", "erin", 0);
	state_record_set_status(paused, STATE_STATUS_PAUSED);
	CHECK_INT(state_put(st, live), STATE_OK);
	CHECK_INT(state_put(st, paused), STATE_OK);
	CHECK_INT(state_put(st, done), STATE_OK);
	CHECK_INT(state_put(other, foreign), STATE_OK);
	state_record_set_status(done, STATE_STATUS_PROCESSING);
	CHECK_INT(state_put(st, done), STATE_OK);
	/* A stale id whose state is gone is pruned from the node's set. */
	cli("SADD webrtc:recording:node:node-a 11111111-1111-4111-8111-111111111111");

	cJSON *mine = state_list_owned_live(st, "node-a");
	CHECK_INT(cJSON_GetArraySize(mine), 2);
	bool seen_live = false, seen_paused = false;
	cJSON *it;
	cJSON_ArrayForEach(it, mine) {
		seen_live |= strcmp(state_record_str(it, "recording_id"), rid(live)) == 0;
		seen_paused |= strcmp(state_record_str(it, "recording_id"), rid(paused)) == 0;
	}
	CHECK(seen_live && seen_paused);
	cJSON_Delete(mine);
	CHECK_INT(cli_int("SCARD webrtc:recording:node:node-a"), 2);
	cJSON *theirs = state_list_owned_live(other, NULL);
	CHECK_INT(cJSON_GetArraySize(theirs), 1);
	cJSON_Delete(theirs);
	char k[128];
	snprintf(k, sizeof k, "HGET webrtc:recording:owner:%s node", rid(live));
	CHECK_STR(cli("%s", k), "node-a");
	cJSON_Delete(live);
	cJSON_Delete(paused);
	cJSON_Delete(done);
	cJSON_Delete(foreign);
}

static void test_journal(struct state *st)
{
	char id[UUID_STR_LEN], k[128];
	util_uuid_v4(id);
	cJSON *j = cJSON_Parse("{\"step\":\"remuxed\",\"attempts\":1}");
	CHECK_INT(state_journal_set(st, id, j), STATE_OK);
	cJSON *back = state_journal_get(st, id);
	CHECK(back && cJSON_Compare(back, j, true));
	cJSON_Delete(back);
	snprintf(k, sizeof k, "TTL webrtc:recording:job:%s", id);
	CHECK(in_range(cli_int(k), 7 * 86400 - 5, 7 * 86400));
	CHECK_INT(state_journal_delete(st, id), STATE_OK);
	CHECK(state_journal_get(st, id) == NULL);
	CHECK_INT(state_journal_set(st, id, NULL), STATE_ERR_INVALID);
	cJSON_Delete(j);
}

/* What the subscriber callback saw; it runs on the subscriber thread. */
struct events {
	pthread_mutex_t lock;
	int count;              /* every event */
	char watch[64];         /* the room a check waits for */
	int watch_hits;
	char watch_event[512];  /* the last event text of that room */
};

static void on_event(void *opaque, const char *room_id, const char *event_json)
{
	struct events *ev = opaque;
	pthread_mutex_lock(&ev->lock);
	ev->count++;
	if (strcmp(room_id, ev->watch) == 0) {
		ev->watch_hits++;
		util_strlcpy(ev->watch_event, event_json, sizeof ev->watch_event);
	}
	pthread_mutex_unlock(&ev->lock);
}

static void watch_room(struct events *ev, const char *room)
{
	pthread_mutex_lock(&ev->lock);
	util_strlcpy(ev->watch, room, sizeof ev->watch);
	ev->watch_hits = 0;
	ev->watch_event[0] = 0;
	pthread_mutex_unlock(&ev->lock);
}

static int watch_hits(struct events *ev)
{
	pthread_mutex_lock(&ev->lock);
	int n = ev->watch_hits;
	pthread_mutex_unlock(&ev->lock);
	return n;
}

/* Waits up to 'ms' for an event of the watched room; returns its text
 * (a static copy) or "" when none came. */
static const char *wait_watched(struct events *ev, int64_t ms)
{
	static char text[512];
	int64_t deadline = time_mono_ns() + ms * TIME_NS_PER_MS;
	while (watch_hits(ev) == 0 && time_mono_ns() < deadline)
		time_sleep_ns(10 * TIME_NS_PER_MS);
	pthread_mutex_lock(&ev->lock);
	util_strlcpy(text, ev->watch_event, sizeof text);
	pthread_mutex_unlock(&ev->lock);
	return text;
}

static void test_pubsub(struct state *st, struct state *other, struct events *ev)
{
	CHECK_INT(state_subscribe(st, on_event, ev), STATE_OK);
	/* The subscription is asynchronous: publish until the first arrives. */
	watch_room(ev, "lobby");
	for (int i = 0; i < 100 && watch_hits(ev) == 0; i++) {
		state_publish(other, "lobby", "{\"type\":\"hello\"}");
		time_sleep_ns(20 * TIME_NS_PER_MS);
	}
	CHECK(watch_hits(ev) > 0);
	watch_room(ev, "room 7");
	CHECK_INT(state_publish(other, "room 7", "{\"type\":\"recording_started\",\"room_id\":\"room 7\"}"), STATE_OK);
	CHECK_STR(wait_watched(ev, 2000), "{\"type\":\"recording_started\",\"room_id\":\"room 7\"}");
	/* What goes out on the wire is the documented channel. */
	watch_room(ev, "hall");
	cli("PUBLISH webrtc:recording:events:hall '{\"type\":\"x\"}'");
	CHECK_STR(wait_watched(ev, 2000), "{\"type\":\"x\"}");
}

static void test_outage(struct state *st, struct events *ev)
{
	cJSON *rec = new_record("room-outage", "frank", 0);
	char reason[128], k[128];
	cli("DEL webrtc:recording:active");
	CHECK_INT(state_admit(st, rid(rec), "frank", 10, 0, reason, sizeof reason), STATE_OK);
	state_record_set_status(rec, STATE_STATUS_RECORDING);
	CHECK_INT(state_put(st, rec), STATE_OK);

	redis_kill(redis_pid);
	redis_pid = 0;
	CHECK(!state_healthy(st));

	/* Writes go on while Redis is away: kept, latest per recording wins. */
	state_record_set_status(rec, STATE_STATUS_PAUSED);
	state_record_set_time(rec, "paused_at", time_wall_ns());
	CHECK_INT(state_put(st, rec), STATE_DEFERRED);
	state_record_set_status(rec, STATE_STATUS_RECORDING);
	state_record_set_time(rec, "resumed_at", time_wall_ns());
	state_record_set_number(rec, "duration_seconds", 4.25);
	CHECK_INT(state_put(st, rec), STATE_DEFERRED);
	cJSON *other = new_record("room-outage", "frank", 0);
	CHECK_INT(state_put(st, other), STATE_DEFERRED);
	CHECK_INT(state_publish(st, "room-outage", "{\"type\":\"recording_resumed\"}"), STATE_DEFERRED);
	cJSON *seen = state_get(st, rid(rec));
	CHECK(seen && cJSON_Compare(seen, rec, true));
	cJSON_Delete(seen);
	struct state_stats s;
	state_stats(st, &s);
	CHECK(!s.redis_up);
	CHECK_INT(s.pending_writes, 3);
	CHECK(state_list_room(st, "room-outage") == NULL);
	CHECK_INT(state_admit(st, rid(other), "frank", 10, 0, reason, sizeof reason), STATE_ERR_REDIS);
	time_sleep_ns(300 * TIME_NS_PER_MS);

	/* Back: an empty server (no persistence), rebuilt from the buffer. */
	redis_pid = redis_start(sock);
	CHECK(redis_pid > 0);
	int64_t deadline = time_mono_ns() + 10 * TIME_NS_PER_SEC;
	do {
		/* Readers keep calling meanwhile (as HTTP status requests would):
		 * their failures must not keep the store from noticing Redis is back. */
		time_sleep_ns(20 * TIME_NS_PER_MS);
		cJSON_Delete(state_get(st, "22222222-2222-4222-8222-222222222222"));
		state_stats(st, &s);
	} while (s.pending_writes && time_mono_ns() < deadline);
	CHECK_INT(s.pending_writes, 0);
	CHECK_INT(s.retried_writes, 3);
	snprintf(k, sizeof k, "GET webrtc:recording:state:%s", rid(rec));
	cJSON *stored = cJSON_Parse(cli("%s", k));
	CHECK(stored && cJSON_Compare(stored, rec, true));
	cJSON_Delete(stored);
	snprintf(k, sizeof k, "TTL webrtc:recording:state:%s", rid(rec));
	CHECK(in_range(cli_int(k), 7 * 86400 - 15, 7 * 86400));
	CHECK_INT(cli_int("SCARD webrtc:recording:room:room-outage"), 2);
	/* The server lost its data: the live writes rebuilt the active set. */
	snprintf(k, sizeof k, "SISMEMBER webrtc:recording:active %s", rid(rec));
	CHECK_INT(cli_int(k), 1);
	CHECK(state_healthy(st));

	/* Scripts were lost with the server: admission reloads them. */
	CHECK_INT(state_admit(st, rid(other), "frank", 10, 0, reason, sizeof reason), STATE_OK);
	/* The subscriber reconnected. */
	watch_room(ev, "room-outage-after");
	for (int i = 0; i < 150 && watch_hits(ev) == 0; i++) {
		cli("PUBLISH webrtc:recording:events:room-outage-after '{\"type\":\"ping\"}'");
		time_sleep_ns(20 * TIME_NS_PER_MS);
	}
	CHECK(watch_hits(ev) > 0);
	cJSON_Delete(rec);
	cJSON_Delete(other);
}

/* A server that is up but busy (a runaway script) answers BUSY: writes are
 * kept and retried like in an outage, not lost. */
static void test_busy(struct state *st)
{
	cJSON *rec = new_record("room-busy", "ivan", 0);
	char cmd[512], k[128];
	cli("CONFIG SET busy-reply-threshold 100");
	snprintf(cmd, sizeof cmd, "redis-cli -s %s EVAL 'while true do end' 0 >/dev/null 2>&1 &", sock);
	CHECK(system(cmd) == 0);
	time_sleep_ns(400 * TIME_NS_PER_MS);
	CHECK_INT(state_put(st, rec), STATE_DEFERRED);
	CHECK_STR(cli("SCRIPT KILL"), "OK");
	struct state_stats s;
	int64_t deadline = time_mono_ns() + 5 * TIME_NS_PER_SEC;
	do {
		time_sleep_ns(20 * TIME_NS_PER_MS);
		state_stats(st, &s);
	} while (s.pending_writes && time_mono_ns() < deadline);
	CHECK_INT(s.pending_writes, 0);
	snprintf(k, sizeof k, "GET webrtc:recording:state:%s", rid(rec));
	cJSON *stored = cJSON_Parse(cli("%s", k));
	CHECK(stored && cJSON_Compare(stored, rec, true));
	cJSON_Delete(stored);
	cJSON_Delete(rec);
}

static void test_embedded(void)
{
	char dir[300], esock[320], err[256];
	snprintf(dir, sizeof dir, "%s/embedded", tmpdir);
	snprintf(esock, sizeof esock, "%s/redis.sock", dir);
	struct state *st = state_new(NULL, dir, "node-e", err, sizeof err);
	CHECK(st != NULL);
	if (!st) {
		fprintf(stderr, "embedded: %s\n", err);
		return;
	}
	struct stat sb;
	CHECK(stat(esock, &sb) == 0 && S_ISSOCK(sb.st_mode));
	CHECK_STR(cli_on(esock, "CONFIG GET appendonly"), "appendonly\nyes");
	CHECK_STR(cli_on(esock, "CONFIG GET port"), "port\n0");
	struct state_stats s;
	state_stats(st, &s);
	int pid = s.embedded_pid;
	CHECK(pid > 0);

	/* A second store on the same directory refuses to start another server. */
	struct state *twin = state_new("", dir, "node-f", err, sizeof err);
	CHECK(twin == NULL);
	CHECK(strstr(err, "already serves") != NULL);
	state_free(twin);

	cJSON *rec = new_record("room-emb", "gina", 0);
	/* appendfsync always: acknowledged means on disk, so no grace period. */
	CHECK_INT(state_put(st, rec), STATE_OK);
	CHECK_STR(cli_on(esock, "CONFIG GET appendfsync"), "appendfsync\nalways");

	/* Killed: the supervisor restarts it and the data is still there. */
	kill(pid, SIGKILL);
	int64_t deadline = time_mono_ns() + 10 * TIME_NS_PER_SEC;
	do {
		time_sleep_ns(50 * TIME_NS_PER_MS);
		state_stats(st, &s);
	} while ((s.embedded_restarts < 1 || !state_healthy(st)) && time_mono_ns() < deadline);
	CHECK_INT(s.embedded_restarts, 1);
	CHECK(s.embedded_pid > 0 && s.embedded_pid != pid);
	cJSON *back = state_get(st, rid(rec));
	CHECK(back && cJSON_Compare(back, rec, true));
	cJSON_Delete(back);

	pid = s.embedded_pid;
	state_free(st);
	CHECK(kill(pid, 0) == -1 && errno == ESRCH);
	cJSON_Delete(rec);

	/* edgerec killed -9 with its embedded server: the server follows it
	 * down, and the next start on the same directory finds the data. */
	char dir2[300];
	snprintf(dir2, sizeof dir2, "%s/crashed", tmpdir);
	int sync[2];
	char id[UUID_STR_LEN] = "";
	CHECK(pipe(sync) == 0);
	pid_t app = fork();
	if (app == 0) {
		struct state *cst = state_new(NULL, dir2, "node-c", err, sizeof err);
		cJSON *crec = cst ? new_record("room-crash", "hank", 0) : NULL;
		if (crec)
			state_record_set_status(crec, STATE_STATUS_RECORDING);
		if (!crec || state_put(cst, crec) != STATE_OK)
			_exit(1);
		if (write(sync[1], rid(crec), UUID_STR_LEN) != UUID_STR_LEN)
			_exit(1);
		pause();
		_exit(0);
	}
	CHECK(read(sync[0], id, sizeof id) == (ssize_t)sizeof id);
	close(sync[0]);
	close(sync[1]);
	kill(app, SIGKILL);
	waitpid(app, NULL, 0);
	st = state_new(NULL, dir2, "node-c", err, sizeof err);
	CHECK(st != NULL);
	if (st) {
		cJSON *owned = state_list_owned_live(st, NULL);
		CHECK_INT(cJSON_GetArraySize(owned), 1);
		CHECK_STR(state_record_str(cJSON_GetArrayItem(owned, 0), "recording_id"), id);
		cJSON_Delete(owned);
		state_free(st);
	} else {
		fprintf(stderr, "restart after crash: %s\n", err);
	}

	/* A directory redis-server cannot use is a clear error, not a hang. */
	st = state_new(NULL, "/proc/edgerec-no-such-dir", "x", err, sizeof err);
	CHECK(st == NULL);
	CHECK(err[0] != 0);
}

/* A server demoted to a replica under a live connection (a failover behind
 * a plain redis:// name that moved, or before a sentinel's announcement)
 * refuses writes with READONLY: they are kept and retried, not lost, and
 * admission is refused rather than taken on a replica. */
static void test_readonly(struct state *st)
{
	cJSON *rec = new_record("room-ro", "judy", 0);
	char reason[128], k[128];
	CHECK_STR(cli("REPLICAOF 127.0.0.1 1"), "OK");
	CHECK_INT(state_put(st, rec), STATE_DEFERRED);
	CHECK_INT(state_admit(st, "33333333-3333-4333-8333-333333333333", "judy", 10, 0, reason, sizeof reason),
		  STATE_ERR_REDIS);
	snprintf(k, sizeof k, "EXISTS webrtc:recording:state:%s", rid(rec));
	CHECK_INT(cli_int(k), 0);
	CHECK_STR(cli("REPLICAOF NO ONE"), "OK");
	struct state_stats s;
	int64_t deadline = time_mono_ns() + 5 * TIME_NS_PER_SEC;
	do {
		time_sleep_ns(20 * TIME_NS_PER_MS);
		state_stats(st, &s);
	} while (s.pending_writes && time_mono_ns() < deadline);
	CHECK_INT(s.pending_writes, 0);
	snprintf(k, sizeof k, "GET webrtc:recording:state:%s", rid(rec));
	cJSON *stored = cJSON_Parse(cli("%s", k));
	CHECK(stored && cJSON_Compare(stored, rec, true));
	cJSON_Delete(stored);
	CHECK_INT(state_admit(st, "33333333-3333-4333-8333-333333333333", "judy", 10, 0, reason, sizeof reason),
		  STATE_OK);
	cJSON_Delete(rec);
}

int main(void)
{
	char err[256], url[300];
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(sock, sizeof sock, "%s/redis.sock", tmpdir);
	redis_pid = redis_start(sock);
	if (redis_pid < 0)
		return 1;
	snprintf(url, sizeof url, "unix://%s", sock);

	CHECK(state_new("redis://127.0.0.1:1", tmpdir, "n", err, sizeof err) == NULL);
	CHECK(strstr(err, "127.0.0.1:1") != NULL);
	CHECK(state_new("http://nope", tmpdir, "n", err, sizeof err) == NULL);

	struct state *st = state_new(url, tmpdir, "node-a", err, sizeof err);
	struct state *st2 = state_new(url, tmpdir, "node-b", err, sizeof err);
	CHECK(st && st2);
	static struct events ev = { .lock = PTHREAD_MUTEX_INITIALIZER };
	if (st && st2) {
		CHECK_STR(state_node_id(st), "node-a");
		CHECK(state_healthy(st));
		test_keys_and_ttls(st);
		test_admission(st);
		test_usage(st);
		test_lists(st);
		test_owned_live(st, st2);
		test_journal(st);
		test_pubsub(st, st2, &ev);
		test_outage(st, &ev);
		test_busy(st);
		test_readonly(st);
	} else {
		fprintf(stderr, "state_new: %s\n", err);
	}
	state_free(st);
	state_free(st2);
	redis_kill(redis_pid);
	test_embedded();
	if (check_failures)
		fprintf(stderr, "kept %s for inspection\n", tmpdir);
	else
		util_rm_rf(tmpdir);
	return check_exit();
}
