/* test_policy_reload: hot reload through inotify while decisions run.
 *
 * A good edit is in force within a second; a broken edit (syntax error,
 * failing self_test, deleted file) leaves the last good version deciding
 * while the status tells the truth; a change in lib/ rebuilds the policies
 * that use it; and rewriting the file continuously while eight threads ask
 * for decisions produces no failed (fallback) call at all. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "policy.h"

static char dir[256];

/* Replaces 'name' atomically (write beside, rename) unless 'in_place', in
 * which case it is truncated and rewritten like a plain editor save. */
static void put(const char *name, const char *text, bool in_place)
{
	char path[512], tmp[600];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(in_place ? path : tmp, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	if (!in_place)
		CHECK_INT(rename(tmp, path), 0);
}

static char *auth_version(const char *reason, const char *extra)
{
	static char buf[1024];
	snprintf(buf, sizeof(buf),
		 "local M = {}\n"
		 "function M.authorize(action, caller, rec, room)\n"
		 "  return false, '%s'\n"
		 "end\n"
		 "%s\n"
		 "return M\n", reason, extra ? extra : "");
	return buf;
}

static const char *decide(struct policy_host *h, bool *fallback)
{
	static struct policy_verdict v;
	struct policy_caller c = { "alice", NULL };
	policy_authorize(h, POLICY_ACTION_STOP, &c, "room", NULL, &v);
	if (fallback)
		*fallback = v.fallback;
	return v.fallback ? "FALLBACK" : v.reason;
}

/* Waits up to 'ms' for the auth reason to become 'want'; returns the wait
 * in ms, or -1. */
static double wait_reason(struct policy_host *h, const char *want, int ms)
{
	int64_t t0 = time_mono_ns();
	while (time_mono_ns() - t0 < ms * TIME_NS_PER_MS) {
		if (strcmp(decide(h, NULL), want) == 0)
			return (double)(time_mono_ns() - t0) / 1e6;
		time_sleep_ns(5 * TIME_NS_PER_MS);
	}
	return -1;
}

/* The auth entry of the status: its last_error (copied, or "") and sha. */
static void auth_status(struct policy_host *h, char *err, size_t errlen, char *sha, size_t shalen)
{
	cJSON *st = policy_status_json(h);
	const cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "policies"), 0);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(p, "name")), "auth");
	const char *e = cJSON_GetStringValue(cJSON_GetObjectItem(p, "last_error"));
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(p, "sha256"));
	util_strlcpy(err, e ? e : "", errlen);
	util_strlcpy(sha, s ? s : "", shalen);
	cJSON_Delete(st);
}

static double wait_error(struct policy_host *h, const char *part, int ms)
{
	int64_t t0 = time_mono_ns();
	char err[512], sha[80];
	while (time_mono_ns() - t0 < ms * TIME_NS_PER_MS) {
		auth_status(h, err, sizeof(err), sha, sizeof(sha));
		if ((part && strstr(err, part)) || (!part && !err[0]))
			return (double)(time_mono_ns() - t0) / 1e6;
		time_sleep_ns(5 * TIME_NS_PER_MS);
	}
	return -1;
}

static void test_edits(struct policy_host *h)
{
	char err[512], sha1[80], sha[80];
	CHECK_STR(decide(h, NULL), "v1");
	auth_status(h, err, sizeof(err), sha1, sizeof(sha1));
	CHECK_STR(err, "");

	/* A syntax error saved in place: v1 keeps deciding, the status says why. */
	put("auth.lua", "local M = {\nfunction M.authorize( return M\n", true);
	double ms = wait_error(h, "auth.lua:", 1000);
	CHECK(ms >= 0 && ms < 1000);
	fprintf(stderr, "broken edit reported after %.0f ms\n", ms);
	bool fb = true;
	CHECK_STR(decide(h, &fb), "v1");
	CHECK(!fb);
	auth_status(h, err, sizeof(err), sha, sizeof(sha));
	CHECK_STR(sha, sha1);
	CHECK(!policy_healthy(h, NULL, 0));

	/* A good version is in force within a second and clears the error. */
	put("auth.lua", auth_version("v2", NULL), false);
	ms = wait_reason(h, "v2", 1000);
	CHECK(ms >= 0 && ms < 1000);
	fprintf(stderr, "good edit in force after %.0f ms\n", ms);
	CHECK(wait_error(h, NULL, 1000) >= 0);
	CHECK(policy_healthy(h, NULL, 0));

	/* A version whose self_test fails is not swapped in. */
	put("auth.lua", auth_version("v3", "function M.self_test() return false, 'v3 is wrong' end"), false);
	CHECK(wait_error(h, "v3 is wrong", 1000) >= 0);
	CHECK_STR(decide(h, NULL), "v2");

	/* Deleting the file keeps the last good version and says so. */
	char path[512];
	snprintf(path, sizeof(path), "%s/auth.lua", dir);
	unlink(path);
	CHECK(wait_error(h, "cannot read", 3000) >= 0);
	CHECK_STR(decide(h, NULL), "v2");

	/* Putting the same good text back clears the error without a rebuild. */
	put("auth.lua", auth_version("v2", NULL), false);
	CHECK(wait_error(h, NULL, 3000) >= 0);
	CHECK_STR(decide(h, NULL), "v2");
}

static void test_lib_change(struct policy_host *h)
{
	put("lib/tag.lua", "return { name = 'libA' }\n", false);
	put("auth.lua", "local tag = lib('tag')\n"
			"return { authorize = function() return false, tag.name end }\n", false);
	CHECK(wait_reason(h, "libA", 1000) >= 0);
	put("lib/tag.lua", "return { name = 'libB' }\n", false);
	double ms = wait_reason(h, "libB", 1000);
	CHECK(ms >= 0);
	fprintf(stderr, "lib edit in force after %.0f ms\n", ms);
}

struct hammer {
	struct policy_host *h;
	atomic_bool stop;
	atomic_ullong calls, fallbacks, v1, v2, other;
};

static void *hammer_main(void *arg)
{
	struct hammer *hm = arg;
	struct policy_caller c = { "alice", NULL };
	while (!atomic_load(&hm->stop)) {
		struct policy_verdict v;
		policy_authorize(hm->h, POLICY_ACTION_STOP, &c, "room", NULL, &v);
		atomic_fetch_add(&hm->calls, 1);
		if (v.fallback)
			atomic_fetch_add(&hm->fallbacks, 1);
		else if (strcmp(v.reason, "v1") == 0)
			atomic_fetch_add(&hm->v1, 1);
		else if (strcmp(v.reason, "v2") == 0)
			atomic_fetch_add(&hm->v2, 1);
		else
			atomic_fetch_add(&hm->other, 1);
	}
	return NULL;
}

static void test_concurrent(struct policy_host *h)
{
	put("auth.lua", auth_version("v1", NULL), false);
	CHECK(wait_reason(h, "v1", 1000) >= 0);
	struct policy_metrics before, after;
	policy_metrics(h, &before);
	struct hammer hm = { .h = h };
	pthread_t t[8];
	for (int i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, hammer_main, &hm);
	/* Broken (syntax error, failing self_test) and good versions (v2 and
	 * v1 in turn), saved in place and by rename, each held long enough to
	 * be picked up, for about 1.5 s. */
	static const char *const steps[] = { "syntax", "v2", "selftest", "v1", "syntax", "v2" };
	for (int i = 0; i < 6; i++) {
		if (strcmp(steps[i], "syntax") == 0)
			put("auth.lua", "return { authorize = function( }\n", i == 0);
		else if (strcmp(steps[i], "selftest") == 0)
			put("auth.lua", auth_version("v9", "function M.self_test() error('no') end"), false);
		else
			put("auth.lua", auth_version(steps[i], NULL), i == 3);
		time_sleep_ns(250 * TIME_NS_PER_MS);
	}
	atomic_store(&hm.stop, true);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	policy_metrics(h, &after);
	fprintf(stderr, "concurrent: %llu calls, %llu v1, %llu v2, %llu fallbacks, %llu reloads\n",
		(unsigned long long)hm.calls, (unsigned long long)hm.v1, (unsigned long long)hm.v2,
		(unsigned long long)hm.fallbacks, after.reloads - before.reloads);
	CHECK(hm.calls > 1000);
	CHECK_INT(hm.fallbacks, 0);
	CHECK_INT(hm.other, 0);
	CHECK(hm.v1 > 0);
	CHECK(hm.v2 > 0);
	CHECK(after.reloads - before.reloads >= 3);
	CHECK_INT(after.fallbacks - before.fallbacks, 0);
	CHECK(after.reload_failures - before.reload_failures >= 3);
}

/* A deploy that swaps a symlink to a new directory is invisible to
 * inotify (the watch follows the old directory); the rescan finds it. */
static void test_symlink_swap(void)
{
	char a[300], b[300], link[300], tmp[320];
	snprintf(a, sizeof(a), "%s/release-a", dir);
	snprintf(b, sizeof(b), "%s/release-b", dir);
	snprintf(link, sizeof(link), "%s/current", dir);
	snprintf(tmp, sizeof(tmp), "%s/current.new", dir);
	const char *files[][2] = {
		{ "quota.lua", "return { admit = function() return { decision = 'allow' } end }\n" },
		{ "lifecycle.lua", "local n = function() return nil end\n"
				   "return { on_started = n, on_stopped = n, on_completed = n, on_failed = n }\n" },
		{ "sources.lua", "return { resolve = function() return 'test' end }\n" },
	};
	const char *releases[2] = { a, b };
	for (int r = 0; r < 2; r++) {
		CHECK_INT(util_mkdir_p(releases[r], 0755), 0);
		for (size_t i = 0; i < 3; i++) {
			char path[400];
			snprintf(path, sizeof(path), "%s/%s", releases[r], files[i][0]);
			FILE *f = fopen(path, "w");
			if (f) {
				fputs(files[i][1], f);
				fclose(f);
			}
		}
		char path[400];
		snprintf(path, sizeof(path), "%s/auth.lua", releases[r]);
		FILE *f = fopen(path, "w");
		if (f) {
			fputs(auth_version(r ? "release-b" : "release-a", NULL), f);
			fclose(f);
		}
	}
	CHECK_INT(symlink(a, link), 0);
	char err[256] = "";
	struct policy_host_options o = { .dir = link, .watch = true };
	struct policy_host *h = policy_host_new(&o, err, sizeof(err));
	CHECK(h != NULL);
	if (!h)
		return;
	CHECK_STR(decide(h, NULL), "release-a");
	CHECK_INT(symlink(b, tmp), 0);
	CHECK_INT(rename(tmp, link), 0);
	double ms = wait_reason(h, "release-b", 3000);
	CHECK(ms >= 0);
	fprintf(stderr, "symlink swap in force after %.0f ms\n", ms);
	policy_host_free(h);
}

int main(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	snprintf(dir, sizeof(dir), "/tmp/test_policy_reload.%d", (int)getpid());
	util_rm_rf(dir);
	char lib[300];
	snprintf(lib, sizeof(lib), "%s/lib", dir);
	CHECK_INT(util_mkdir_p(lib, 0755), 0);
	put("auth.lua", auth_version("v1", NULL), false);
	put("quota.lua", "return { admit = function() return { decision = 'allow' } end }\n", false);
	put("lifecycle.lua", "local n = function() return nil end\n"
			     "return { on_started = n, on_stopped = n, on_completed = n, on_failed = n }\n",
	    false);
	put("sources.lua", "return { resolve = function() return 'test' end }\n", false);

	char err[256] = "";
	struct policy_host_options o = { .dir = dir, .watch = true };
	struct policy_host *h = policy_host_new(&o, err, sizeof(err));
	CHECK(h != NULL);
	if (h) {
		test_edits(h);
		test_lib_change(h);
		test_concurrent(h);
		policy_host_free(h);
	}
	test_symlink_swap();
	util_rm_rf(dir);
	return check_exit();
}
