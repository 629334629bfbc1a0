/* test_policy_failclosed: results of the wrong type are errors, every
 * failure is visible, and each decision's default fails closed.
 *
 * Policies that answer the wrong type (authorize a number, admit a string,
 * a lifecycle hook a number, resolve a table) must fall back with the error
 * in the status (last_error, last_error_at, degraded), in policy_healthy and
 * in the per-policy metrics text. auth then denies non-admins and keeps the
 * built-in rule for admins; quota's default carries the limits the file
 * declares (M.limits) or the configuration sets; sources refuses rooms the
 * configuration does not name. Without any file the built-in defaults
 * decide and nothing is reported. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "config.h"
#include "policy.h"

static char root[256];

static void write_text(const char *dir, const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
}

static const char wrong_auth[] =
	"return { authorize = function() return 42 end }\n";
static const char wrong_quota[] =
	"local M = { limits = { user_concurrent = 3, user_minutes_per_day = 10 } }\n"
	"function M.admit() return 'allow' end\n"
	"return M\n";
static const char wrong_lifecycle[] =
	"local function n() return 7 end\n"
	"return { on_started = n, on_stopped = n, on_completed = n, on_failed = n }\n";
static const char wrong_sources[] =
	"return { resolve = function() return { 'rtp' } end }\n";

static struct config *make_config(void)
{
	static const struct config_option extra[] = {
		{ "room.*.source", CONFIG_STR, NULL, "" },
		{ "room.*.args", CONFIG_STR, NULL, "" },
		{ 0 },
	};
	struct config *cfg = config_new();
	CHECK(cfg != NULL);
	CHECK_INT(config_register(cfg, policy_config_options), 0);
	CHECK_INT(config_register(cfg, extra), 0);
	return cfg;
}

static const cJSON *status_of(const cJSON *all, const char *name)
{
	const cJSON *p;
	cJSON_ArrayForEach(p, cJSON_GetObjectItem(all, "policies"))
		if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(p, "name")), name) == 0)
			return p;
	return NULL;
}

static int usage_calls;

static int fake_usage(void *opaque, const char *user, long long *live, double *secs)
{
	(void)opaque;
	usage_calls++;
	*live = 0;
	*secs = strcmp(user, "busy") == 0 ? 600 : 240; /* busy used the 10 minutes */
	return 0;
}

static struct policy_host *open_host(const char *dir, struct config *cfg)
{
	struct policy_host_options o = { .dir = dir, .cfg = cfg };
	char err[256] = "";
	struct policy_host *h = policy_host_new(&o, err, sizeof(err));
	if (!h)
		fprintf(stderr, "policy_host_new(%s): %s\n", dir, err);
	CHECK(h != NULL);
	return h;
}

static void test_wrong_types(const char *dir, struct config *cfg)
{
	struct policy_host *h = open_host(dir, cfg);
	if (!h)
		return;
	char why[1024], err[256];
	CHECK(policy_healthy(h, why, sizeof(why))); /* loaded fine: nothing to report yet */

	/* auth: a number is an error; non-admins are denied, admins keep the rule. */
	cJSON *admin_claims = cJSON_Parse("{\"roles\":[\"admin\"]}");
	struct policy_caller alice = { "alice", NULL }, root_caller = { "root", admin_claims };
	struct policy_verdict v;
	CHECK(!policy_authorize(h, POLICY_ACTION_START, &alice, "room1", NULL, &v));
	CHECK(v.fallback);
	CHECK_INT(v.status, 403);
	CHECK(strstr(v.reason, "auth.lua") != NULL);
	CHECK(policy_authorize(h, POLICY_ACTION_ADMIN, &root_caller, NULL, NULL, &v));
	CHECK(v.fallback);

	/* quota: a string is an error; the default carries the file's limits. */
	struct policy_provider prov = { .user_usage = fake_usage };
	policy_host_set_provider(h, &prov);
	static const struct policy_preset_fact presets[] = { { "low", 1000000, 96000, 854 * 480 * 24 } };
	struct policy_admit_facts f = {
		.caller = &alice, .room_id = "room1", .quality = "low", .format = "webm",
		.max_duration_s = 7200, .disk_free_bytes = 1LL << 40, .presets = presets, .n_presets = 1,
	};
	struct policy_admission a;
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_GRANT);
	CHECK(a.fallback);
	CHECK_INT(a.user_limit, 3);
	CHECK_INT(a.max_duration_s, 360); /* 10 min - 240 s used */
	struct policy_caller busy = { "busy", NULL };
	f.caller = &busy;
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_REFUSE);
	CHECK_INT(a.status, 403);
	CHECK(strstr(a.reason, "10 minutes") != NULL);
	/* The configuration wins over the file. */
	CHECK_INT(config_set(cfg, "policy.param.user_concurrent", "1", err, sizeof(err)), 0);
	CHECK_INT(config_set(cfg, "policy.param.user_minutes_per_day", "100", err, sizeof(err)), 0);
	CHECK_INT(policy_admit(h, &f, &a), POLICY_ADMIT_GRANT);
	CHECK_INT(a.max_duration_s, 100 * 60 - 600);
	CHECK_INT(a.user_limit, 1);
	CHECK(usage_calls >= 3);

	/* lifecycle: a number is an error; the default key, no tags. */
	cJSON *rec = cJSON_Parse("{\"recording_id\":\"r1\",\"file_name\":\"recording_r1.webm\"}");
	struct policy_lifecycle_result res;
	policy_lifecycle(h, POLICY_EVENT_STOPPED, rec, &res);
	CHECK(res.fallback);
	CHECK_STR(res.s3_key, "r1/recording_r1.webm");
	CHECK(!res.keep_local);
	cJSON_Delete(res.tags);
	cJSON_Delete(rec);

	/* sources: a table is an error; unnamed rooms are unresolved, named
	 * ones record what the configuration says. */
	struct policy_source s;
	policy_resolve_source(h, "room1", &s);
	CHECK(s.fallback && s.unresolved);
	CHECK_INT(config_set(cfg, "room.lobby.source", "test", err, sizeof(err)), 0);
	policy_resolve_source(h, "lobby", &s);
	CHECK(s.fallback && !s.unresolved);
	CHECK_STR(s.source, "test");

	/* Every one of them shows. */
	cJSON *all = policy_status_json(h);
	static const char *const names[][2] = {
		{ "auth", "authorize returned a number" },
		{ "quota", "admit returned a string" },
		{ "lifecycle", "on_stopped returned a number" },
		{ "sources", "resolve must return a source name" },
	};
	for (size_t i = 0; i < 4; i++) {
		const cJSON *p = status_of(all, names[i][0]);
		const char *last = cJSON_GetStringValue(cJSON_GetObjectItem(p, "last_error"));
		check_count++;
		if (!last || !strstr(last, names[i][1])) {
			check_failures++;
			fprintf(stderr, "%s: last_error \"%s\", expected \"%s\"\n", names[i][0],
				last ? last : "(null)", names[i][1]);
		}
		CHECK(cJSON_IsString(cJSON_GetObjectItem(p, "last_error_at")));
		CHECK(cJSON_IsTrue(cJSON_GetObjectItem(p, "degraded")));
		CHECK(cJSON_IsTrue(cJSON_GetObjectItem(p, "in_force")));
	}
	cJSON_Delete(all);
	CHECK(!policy_healthy(h, why, sizeof(why)));
	CHECK(strstr(why, "policy auth: authorize returned a number") != NULL);
	CHECK(strstr(why, "policy sources: ") != NULL);
	char *text = policy_metrics_text(h);
	CHECK(text != NULL);
	CHECK(text && strstr(text, "edgerec_policy_fallbacks_total{policy=\"auth\"} 2\n") != NULL);
	CHECK(text && strstr(text, "edgerec_policy_fallbacks_total{policy=\"quota\"} 3\n") != NULL);
	CHECK(text && strstr(text, "edgerec_policy_degraded{policy=\"lifecycle\"} 1\n") != NULL);
	free(text);
	cJSON_Delete(admin_claims);
	policy_host_free(h);
}

/* No files at all: the operator ships none, the built-in defaults are the
 * policies (the reference's behaviour) and nothing fails closed. */
static void test_absent(const char *dir, struct config *cfg)
{
	struct policy_host *h = open_host(dir, cfg);
	if (!h)
		return;
	struct policy_caller alice = { "alice", NULL };
	struct policy_verdict v;
	CHECK(policy_authorize(h, POLICY_ACTION_START, &alice, "room1", NULL, &v));
	CHECK(v.fallback);
	struct policy_source s;
	policy_resolve_source(h, "room1", &s);
	CHECK(s.fallback && !s.unresolved);
	CHECK_STR(s.source, "test");
	policy_host_free(h);
}

int main(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	snprintf(root, sizeof(root), "/tmp/test_policy_failclosed.%d", (int)getpid());
	util_rm_rf(root);
	char wrong[300], empty[300];
	snprintf(wrong, sizeof(wrong), "%s/wrong", root);
	snprintf(empty, sizeof(empty), "%s/empty", root);
	CHECK_INT(util_mkdir_p(wrong, 0755), 0);
	CHECK_INT(util_mkdir_p(empty, 0755), 0);
	write_text(wrong, "auth.lua", wrong_auth);
	write_text(wrong, "quota.lua", wrong_quota);
	write_text(wrong, "lifecycle.lua", wrong_lifecycle);
	write_text(wrong, "sources.lua", wrong_sources);
	struct config *cfg = make_config();
	test_wrong_types(wrong, cfg);
	test_absent(empty, cfg);
	config_free(cfg);
	util_rm_rf(root);
	return check_exit();
}
