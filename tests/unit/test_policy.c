/* test_policy: the shipped policies through the real host (sandbox, edge
 * API, validation), the built-in defaults, the status report, and the check
 * that the specs' fake `edge` offers exactly the functions the host
 * registers. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "config.h"
#include "policy.h"

static const char *source_dir(void)
{
	const char *d = getenv("EDGEREC_SOURCE_DIR");
	return d ? d : ".";
}

/* ---- a provider backed by a JSON list of recordings --------------------- */

struct fake_state {
	cJSON *recs;        /* array of state objects */
	long long disk_free;
	int queries;
};

static cJSON *fake_user_recordings(void *opaque, const char *user, const char *status)
{
	struct fake_state *fs = opaque;
	fs->queries++;
	cJSON *out = cJSON_CreateArray();
	const cJSON *r;
	cJSON_ArrayForEach(r, fs->recs) {
		const char *u = cJSON_GetStringValue(cJSON_GetObjectItem(r, "user_id"));
		const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(r, "status"));
		if (u && strcmp(u, user) == 0 && (!status || (s && strcmp(s, status) == 0)))
			cJSON_AddItemToArray(out, cJSON_Duplicate(r, 1));
	}
	return out;
}

/* What the state store's usage indexes would answer for the fake's list:
 * live recordings, and seconds today as lib/time.lua counts them. */
static int fake_user_usage(void *opaque, const char *user, long long *live, double *secs)
{
	struct fake_state *fs = opaque;
	fs->queries++;
	*live = 0;
	*secs = 0;
	int64_t now = time_wall_ns();
	char today[40];
	time_iso8601(now, today, sizeof(today));
	const cJSON *r;
	cJSON_ArrayForEach(r, fs->recs) {
		const char *u = cJSON_GetStringValue(cJSON_GetObjectItem(r, "user_id"));
		const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(r, "status"));
		const char *at = cJSON_GetStringValue(cJSON_GetObjectItem(r, "started_at"));
		if (!u || strcmp(u, user) != 0 || !s)
			continue;
		bool running = strcmp(s, "recording") == 0 || strcmp(s, "pending") == 0;
		if (running || strcmp(s, "paused") == 0)
			(*live)++;
		int64_t started = 0;
		if (!at || strncmp(at, today, 10) != 0 || time_parse_iso8601(at, &started) < 0)
			continue;
		double d = cJSON_GetNumberValue(cJSON_GetObjectItem(r, "duration_seconds"));
		if (running && (double)(now - started) / 1e9 > d)
			d = (double)(now - started) / 1e9;
		*secs += d;
	}
	return 0;
}

static long long fake_disk_free(void *opaque)
{
	return ((struct fake_state *)opaque)->disk_free;
}

static cJSON *make_rec(const char *id, const char *user, const char *status, const char *started,
		       double duration)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "recording_id", id);
	cJSON_AddStringToObject(r, "room_id", "room1");
	cJSON_AddStringToObject(r, "user_id", user);
	cJSON_AddStringToObject(r, "status", status);
	cJSON_AddStringToObject(r, "format", "webm");
	cJSON_AddStringToObject(r, "quality", "medium");
	cJSON_AddStringToObject(r, "storage_backend", "s3");
	cJSON_AddStringToObject(r, "started_at", started);
	cJSON_AddNullToObject(r, "paused_at");
	cJSON_AddNumberToObject(r, "duration_seconds", duration);
	char fn[96];
	snprintf(fn, sizeof(fn), "recording_%s.webm", id);
	cJSON_AddStringToObject(r, "file_name", fn);
	return r;
}

static const struct policy_preset_fact presets[] = {
	{ "low", 1000000, 96000, 854 * 480 * 24 },
	{ "medium", 2500000, 128000, 1280 * 720 * 30 },
	{ "high", 5000000, 192000, 1920 * 1080 * 30 },
	{ "ultra", 15000000, 256000, 3840LL * 2160 * 60 },
};

/* ---- tests ------------------------------------------------------------- */

static struct config *make_config(void)
{
	static const struct config_option extra[] = {
		{ "s3_prefix", CONFIG_STR, "webrtc-recordings/", "" },
		{ "room.*.source", CONFIG_STR, NULL, "" },
		{ "room.*.args", CONFIG_STR, NULL, "" },
		{ "jwt_secret", CONFIG_STR, "sekrit", "" },
		{ 0 },
	};
	struct config *cfg = config_new();
	CHECK(cfg != NULL);
	CHECK_INT(config_register(cfg, policy_config_options), 0);
	CHECK_INT(config_register(cfg, extra), 0);
	return cfg;
}

static struct policy_host *shipped_host(struct config *cfg)
{
	char dir[1024], err[256] = "";
	snprintf(dir, sizeof(dir), "%s/policies", source_dir());
	struct policy_host_options o = { .dir = dir, .cfg = cfg };
	struct policy_host *h = policy_host_new(&o, err, sizeof(err));
	if (!h)
		fprintf(stderr, "policy_host_new: %s\n", err);
	CHECK(h != NULL);
	return h;
}

static void test_status(struct policy_host *h)
{
	char why[256];
	bool ok = policy_healthy(h, why, sizeof(why));
	if (!ok)
		fprintf(stderr, "unhealthy: %s\n", why);
	CHECK(ok);
	cJSON *st = policy_status_json(h);
	CHECK(st != NULL);
	CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(st, "policies")), 4);
	const cJSON *p;
	cJSON_ArrayForEach(p, cJSON_GetObjectItem(st, "policies")) {
		const char *sha = cJSON_GetStringValue(cJSON_GetObjectItem(p, "sha256"));
		CHECK(sha && strlen(sha) == 64);
		CHECK(cJSON_IsString(cJSON_GetObjectItem(p, "loaded_at")));
		CHECK(cJSON_IsNull(cJSON_GetObjectItem(p, "last_error")));
		CHECK(cJSON_IsTrue(cJSON_GetObjectItem(p, "in_force")));
	}
	cJSON_Delete(st);
}

static void test_auth(struct policy_host *h)
{
	cJSON *claims = cJSON_Parse("{\"sub\":\"alice\"}");
	cJSON *admin_claims = cJSON_Parse("{\"sub\":\"root\",\"roles\":[\"ops\",\"admin\"]}");
	cJSON *bobs = make_rec("r-1", "bob", "recording", "2026-11-24T10:00:00Z", 0);
	struct policy_caller alice = { "alice", claims }, bob = { "bob", NULL }, root = { "root", admin_claims };
	struct policy_verdict v;

	CHECK(policy_authorize(h, POLICY_ACTION_START, &alice, "room1", NULL, &v));
	CHECK(!v.fallback);
	CHECK(!policy_authorize(h, POLICY_ACTION_STOP, &alice, "room1", bobs, &v));
	CHECK_INT(v.status, 403);
	CHECK(strstr(v.reason, "owner") != NULL);
	CHECK(!v.fallback);
	CHECK(!policy_authorize(h, POLICY_ACTION_READ, &alice, "room1", bobs, &v));
	CHECK(policy_authorize(h, POLICY_ACTION_PAUSE, &bob, "room1", bobs, &v));
	CHECK(policy_authorize(h, POLICY_ACTION_CANCEL, &root, "room1", bobs, &v));
	CHECK(policy_authorize(h, POLICY_ACTION_LIST_ROOM, &alice, "room1", NULL, &v));
	CHECK(!policy_authorize(h, POLICY_ACTION_ADMIN, &alice, NULL, NULL, &v));
	CHECK(policy_authorize(h, POLICY_ACTION_ADMIN, &root, NULL, NULL, &v));
	struct policy_caller nobody = { NULL, NULL };
	CHECK(!policy_authorize(h, POLICY_ACTION_START, &nobody, "room1", NULL, &v));

	/* The built-in default answers the same questions the same way. */
	CHECK(policy_authorize(NULL, POLICY_ACTION_START, &alice, "room1", NULL, &v));
	CHECK(v.fallback);
	CHECK(!policy_authorize(NULL, POLICY_ACTION_STOP, &alice, "room1", bobs, &v));
	CHECK_INT(v.status, 403);
	CHECK(policy_authorize(NULL, POLICY_ACTION_STOP, &bob, "room1", bobs, &v));
	CHECK(policy_authorize(NULL, POLICY_ACTION_STOP, &root, "room1", bobs, &v));
	CHECK(!policy_authorize(NULL, POLICY_ACTION_ADMIN, &alice, NULL, NULL, &v));
	CHECK(!policy_authorize(h, (enum policy_action)99, &alice, NULL, NULL, &v));
	cJSON_Delete(claims);
	cJSON_Delete(admin_claims);
	cJSON_Delete(bobs);
}

static void test_quota(struct policy_host *h, struct config *cfg)
{
	struct fake_state fs = { .recs = cJSON_CreateArray(), .disk_free = 100LL << 30 };
	struct policy_provider prov = {
		.opaque = &fs, .user_recordings = fake_user_recordings, .disk_free_bytes = fake_disk_free,
		.user_usage = fake_user_usage,
	};
	policy_host_set_provider(h, &prov);
	struct policy_caller alice = { "alice", NULL };
	struct policy_admit_facts f = {
		.caller = &alice, .room_id = "room1", .quality = "medium", .format = "webm",
		.max_duration_s = 7200, .disk_free_bytes = -1, .presets = presets, .n_presets = 4,
	};
	struct policy_admission a;
	char err[256];

	/* Plenty of disk, no per-user limits configured: allowed as asked. */
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_ALLOW);
	CHECK(!a.fallback);
	CHECK_STR(a.quality, "medium");
	CHECK_INT(a.max_duration_s, 7200);
	CHECK_INT(a.user_limit, 0);

	/* medium for 2 h needs ~2.37 GB: 1 GB free is refused with 507. */
	fs.disk_free = 1000000000LL;
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_REFUSE);
	CHECK_INT(a.status, 507);
	CHECK(strstr(a.reason, "disk") != NULL);
	/* The caller's own disk figure wins over the provider's. */
	f.disk_free_bytes = 100LL << 30;
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_ALLOW);
	f.disk_free_bytes = 1000000000LL;

	/* With degrading allowed, the best quality that fits is granted. */
	CHECK_INT(config_set(cfg, "policy.param.degrade_on_low_disk", "true", err, sizeof(err)), 0);
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_GRANT);
	CHECK_STR(a.quality, "low");
	CHECK_INT(a.max_duration_s, 7200);
	f.disk_free_bytes = -1;
	fs.disk_free = 100LL << 30;

	/* A per-user concurrent limit from the configuration. */
	CHECK_INT(config_set(cfg, "policy.param.user_concurrent", "2", err, sizeof(err)), 0);
	cJSON_AddItemToArray(fs.recs, make_rec("a1", "alice", "recording", "2025-01-01T10:00:00Z", 0));
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_ALLOW);
	CHECK_INT(a.user_limit, 2);
	cJSON_AddItemToArray(fs.recs, make_rec("a2", "alice", "paused", "2025-01-01T10:00:00Z", 0));
	cJSON_AddItemToArray(fs.recs, make_rec("b1", "bob", "recording", "2025-01-01T10:00:00Z", 0));
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_REFUSE);
	CHECK_INT(a.status, 400);
	CHECK(strstr(a.reason, "concurrent") != NULL);
	CHECK(!a.fallback);

	/* Minutes per day: what is left today lowers the granted duration. */
	CHECK_INT(config_set(cfg, "policy.param.user_concurrent", "10", err, sizeof(err)), 0);
	CHECK_INT(config_set(cfg, "policy.param.user_minutes_per_day", "1000000", err, sizeof(err)), 0);
	int queries = fs.queries;
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_ALLOW);
	/* Both limits from one usage query, not one per edge function. */
	CHECK_INT(fs.queries - queries, 1);
	char today[40];
	time_t now = time(NULL);
	strftime(today, sizeof(today), "%Y-%m-%dT00:00:01Z", gmtime(&now));
	cJSON_AddItemToArray(fs.recs, make_rec("a3", "alice", "completed", today, 3000));
	CHECK_INT(config_set(cfg, "policy.param.user_minutes_per_day", "60", err, sizeof(err)), 0);
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_GRANT);
	CHECK_INT(a.max_duration_s, 600);
	CHECK_STR(a.quality, "medium");
	cJSON_AddItemToArray(fs.recs, make_rec("a4", "alice", "completed", today, 600));
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_REFUSE);
	CHECK_INT(a.status, 403);

	/* Without a provider the queries raise: the default decides, and it
	 * keeps the configured limits. The daily minutes cannot be read:
	 * refused (503), never admitted past them. */
	policy_host_set_provider(h, NULL);
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_REFUSE);
	CHECK(a.fallback);
	CHECK_INT(a.status, 503);
	/* With the provider but quota.lua failing, the default grants what is
	 * left of the day and carries the per-user limit to the admission. */
	cJSON_Delete(fs.recs);
	fs.recs = cJSON_CreateArray();
	cJSON_AddItemToArray(fs.recs, make_rec("a5", "alice", "completed", today, 3000));
	struct policy_provider usage_only = { .opaque = &fs, .user_usage = fake_user_usage,
					      .disk_free_bytes = fake_disk_free };
	policy_host_set_provider(h, &usage_only);
	CHECK_INT(config_set(cfg, "policy.param.user_concurrent", "2", err, sizeof(err)), 0);
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_GRANT);
	CHECK(!a.fallback); /* quota.lua itself no longer lists the history */
	CHECK_INT(a.max_duration_s, 600);
	CHECK_INT(a.user_limit, 2);
	CHECK_INT(policy_admit(NULL, &f, &a), POLICY_ADMIT_ALLOW); /* no host: the reference */
	CHECK_INT(a.user_limit, 0);
	CHECK_INT(config_set(cfg, "policy.param.user_minutes_per_day", "", err, sizeof(err)), 0);
	CHECK_INT(config_set(cfg, "policy.param.user_concurrent", "", err, sizeof(err)), 0);
	policy_host_set_provider(h, NULL);
	cJSON_Delete(fs.recs);
}

static void test_lifecycle(struct policy_host *h)
{
	cJSON *rec = make_rec("0d5c3f0e-1111-4222-8333-444455556666", "alice", "recording",
			      "2026-11-24T10:00:00Z", 0);
	struct policy_lifecycle_result r;
	policy_lifecycle(h, POLICY_EVENT_STARTED, rec, &r);
	CHECK(!r.fallback);
	CHECK_STR(r.s3_key, "webrtc-recordings/0d5c3f0e-1111-4222-8333-444455556666/"
			    "recording_0d5c3f0e-1111-4222-8333-444455556666.webm");
	CHECK(!r.keep_local);
	CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(r.tags, "retention_days")), 30);
	cJSON_Delete(r.tags);
	policy_lifecycle(h, POLICY_EVENT_COMPLETED, rec, &r);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(r.tags, "archived")));
	cJSON_Delete(r.tags);
	policy_lifecycle(h, POLICY_EVENT_FAILED, rec, &r);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(r.tags, "needs_attention")));
	cJSON_Delete(r.tags);
	/* No host: the default key and no tags. */
	policy_lifecycle(NULL, POLICY_EVENT_STOPPED, rec, &r);
	CHECK(r.fallback);
	CHECK_STR(r.s3_key, "0d5c3f0e-1111-4222-8333-444455556666/"
			    "recording_0d5c3f0e-1111-4222-8333-444455556666.webm");
	CHECK_INT(cJSON_GetArraySize(r.tags), 0);
	cJSON_Delete(r.tags);
	cJSON_Delete(rec);
}

static void test_sources(struct policy_host *h, struct config *cfg)
{
	struct policy_source s;
	char err[256];
	policy_resolve_source(h, "room1", &s);
	CHECK(!s.fallback);
	CHECK_STR(s.source, "test");
	CHECK_STR(s.args, "");
	policy_resolve_source(h, "rtp-40004", &s);
	CHECK_STR(s.source, "rtp");
	CHECK_STR(s.args, "audio_port=40006,video_port=40004");
	/* Outside rtp.port_min..port_max (40000-40999 by default): allocated. */
	policy_resolve_source(h, "rtp-5004", &s);
	CHECK_STR(s.source, "rtp");
	CHECK_STR(s.args, "");
	policy_resolve_source(h, "cam-1", &s);
	CHECK_STR(s.source, "v4l2");
	CHECK_STR(s.args, "device=/dev/video1");
	CHECK_INT(config_set(cfg, "room.lobby.source", "file", err, sizeof(err)), 0);
	CHECK_INT(config_set(cfg, "room.lobby.args", "video=/data/a.webm", err, sizeof(err)), 0);
	policy_resolve_source(h, "lobby", &s);
	CHECK_STR(s.source, "file");
	CHECK_STR(s.args, "video=/data/a.webm");
	/* The default reads the same configuration. */
	policy_resolve_source(NULL, "lobby", &s);
	CHECK(s.fallback);
	CHECK_STR(s.source, "test");
}

/* A provider query that hangs (Redis stalled) holds one state of the
 * policy, not the policy: other admissions still answer at once. */
static int slow_user_usage(void *opaque, const char *user, long long *live, double *secs)
{
	if (strcmp(user, "slow") == 0)
		time_sleep_ns(400 * TIME_NS_PER_MS);
	*live = 0;
	*secs = 0;
	return 0;
}

static void *slow_admit(void *arg)
{
	struct policy_host *h = arg;
	struct policy_caller slow = { "slow", NULL };
	struct policy_admit_facts f = {
		.caller = &slow, .room_id = "room1", .quality = "medium", .format = "webm",
		.max_duration_s = 60, .disk_free_bytes = 1LL << 40, .presets = presets, .n_presets = 4,
	};
	struct policy_admission a;
	policy_admit(h, &f, &a);
	return NULL;
}

static void test_slow_provider(struct policy_host *h, struct config *cfg)
{
	char err[256];
	CHECK_INT(config_set(cfg, "policy.param.user_concurrent", "3", err, sizeof(err)), 0);
	CHECK_INT(config_set(cfg, "policy.param.user_minutes_per_day", "100000", err, sizeof(err)), 0);
	struct policy_provider prov = { .user_usage = slow_user_usage };
	policy_host_set_provider(h, &prov);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, slow_admit, h);
	time_sleep_ns(50 * TIME_NS_PER_MS);
	struct policy_caller alice = { "alice", NULL };
	struct policy_admit_facts f = {
		.caller = &alice, .room_id = "room1", .quality = "medium", .format = "webm",
		.max_duration_s = 60, .disk_free_bytes = 1LL << 40, .presets = presets, .n_presets = 4,
	};
	struct policy_admission a;
	int64_t t0 = time_mono_ns();
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_ALLOW);
	int64_t took = time_mono_ns() - t0;
	CHECK(!a.fallback);
	CHECK(took < 100 * TIME_NS_PER_MS);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	policy_host_set_provider(h, NULL);
}

/* The fake's function names, listed by the real Lua interpreter. */
static void test_fake_matches(void)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && lua5.4 -e \"package.path='tests/policies/?.lua;'..package.path "
		 "local e = require('fake_edge').new() local t = {} "
		 "for k, v in pairs(e) do if type(v) == 'function' then t[#t+1] = k end end "
		 "table.sort(t) print(table.concat(t, ' '))\"", source_dir());
	FILE *p = popen(cmd, "r");
	CHECK(p != NULL);
	char fake[1024] = "";
	if (p) {
		if (!fgets(fake, sizeof(fake), p))
			fake[0] = 0;
		CHECK_INT(pclose(p), 0);
	}
	fake[strcspn(fake, "\n")] = 0;

	const char *const *names = policy_edge_names();
	const char *sorted[64];
	int n = 0;
	for (; names[n] && n < 64; n++)
		sorted[n] = names[n];
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (strcmp(sorted[j], sorted[i]) < 0) {
				const char *t = sorted[i];
				sorted[i] = sorted[j];
				sorted[j] = t;
			}
	char real[1024] = "";
	for (int i = 0; i < n; i++) {
		if (i)
			strcat(real, " ");
		strcat(real, sorted[i]);
	}
	CHECK(n >= 8);
	CHECK_STR(fake, real);
}

int main(void)
{
	log_set_level(LOG_LEVEL_WARN);
	struct config *cfg = make_config();
	struct policy_host *h = shipped_host(cfg);
	if (h) {
		test_status(h);
		test_auth(h);
		test_quota(h, cfg);
		test_lifecycle(h);
		test_sources(h, cfg);
		test_slow_provider(h, cfg);
		struct policy_metrics m;
		policy_metrics(h, &m);
		CHECK(m.calls > 20);
		CHECK_INT(m.kills, 2); /* the two admissions whose query outlasted the budget */
		CHECK_INT(m.reloads, 4);
	}
	test_fake_matches();
	policy_host_free(h);
	config_free(cfg);
	return check_exit();
}
