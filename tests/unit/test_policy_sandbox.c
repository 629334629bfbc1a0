/* test_policy_sandbox: what a hostile or broken policy can and cannot do.
 *
 * A probe auth.lua runs Lua text handed to it (through the sandbox's own
 * load, so it runs exactly as policy code does) under pcall and answers
 * "ok:<value>" or "err:<message>" as the deny reason. Escapes must find
 * nothing; budgets must stop loops, bombs and recursion even when the
 * policy catches errors, and the call then falls back to the default.
 * Files that must not load (syntax, bytecode, missing hooks, self_test,
 * a load-time loop) are checked through the status report. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "policy.h"
#include "policy_probe.h"

static char root[256];

static void write_file(const char *dir, const char *name, const char *text, size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (len == SIZE_MAX)
		len = strlen(text);
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	if (!f)
		return;
	fwrite(text, 1, len, f);
	fclose(f);
}

static void write_text(const char *dir, const char *name, const char *text)
{
	write_file(dir, name, text, strlen(text));
}


/* quota.lua tries to leave traces where other policies could see them. */
static const char leaky_quota[] =
	"LEAK = 'quota'\n"
	"pcall(function() string.leak = 'quota' end)\n"
	"pcall(function() edge.leak = 'quota' end)\n"
	"pcall(function() math.pi = 3 end)\n"
	"pcall(function() setmetatable(_G, nil) end)\n"
	"return { admit = function() return { decision = 'allow' } end }\n";

/* lifecycle.lua raises on every call. */
static const char failing_lifecycle[] =
	"local M = {}\n"
	"local function boom() error('lifecycle is broken') end\n"
	"M.on_started, M.on_stopped, M.on_completed, M.on_failed = boom, boom, boom, boom\n"
	"return M\n";

static const char sources_ok[] =
	"return { resolve = function(room) return 'test' end }\n";

static struct policy_host *open_host(const char *dir)
{
	char err[256] = "";
	struct policy_host_options o = { .dir = dir, .max_call_ns = 100 * TIME_NS_PER_MS };
	struct policy_host *h = policy_host_new(&o, err, sizeof(err));
	if (!h)
		fprintf(stderr, "policy_host_new(%s): %s\n", dir, err);
	CHECK(h != NULL);
	return h;
}

/* Runs 'code' in the probe. Returns the reason, or "FALLBACK" when the
 * default decided; '*ms' gets the call's duration. */
static const char *probe(struct policy_host *h, const char *code, double *ms)
{
	static struct policy_verdict v;
	struct policy_caller c = { "alice", NULL };
	int64_t t0 = time_mono_ns();
	policy_authorize(h, POLICY_ACTION_START, &c, code, NULL, &v);
	if (ms)
		*ms = (double)(time_mono_ns() - t0) / 1e6;
	return v.fallback ? "FALLBACK" : v.reason;
}

#define PROBE_IS(h, code, want) CHECK_STR(probe(h, code, NULL), want)
#define PROBE_HAS(h, code, part) do { const char *_r = probe(h, code, NULL); \
	check_count++; if (!strstr(_r, part)) { check_failures++; \
	fprintf(stderr, "%s:%d: probe(%s) = \"%s\", expected to contain \"%s\"\n", \
		__FILE__, __LINE__, code, _r, part); } } while (0)

static void test_escapes(struct policy_host *h)
{
	PROBE_IS(h, "return 1 + 1", "ok:2");
	PROBE_IS(h, "return io", "ok:nil");
	PROBE_IS(h, "return os.execute", "ok:nil");
	PROBE_IS(h, "return os.getenv", "ok:nil");
	PROBE_IS(h, "return os.exit", "ok:nil");
	PROBE_IS(h, "return os.remove", "ok:nil");
	PROBE_IS(h, "return math.type(os.time())", "ok:integer");
	PROBE_IS(h, "return require", "ok:nil");
	PROBE_IS(h, "return package", "ok:nil");
	PROBE_IS(h, "return debug", "ok:nil");
	PROBE_IS(h, "return dofile", "ok:nil");
	PROBE_IS(h, "return loadfile", "ok:nil");
	PROBE_IS(h, "return rawset", "ok:nil");
	PROBE_IS(h, "return coroutine", "ok:nil");
	PROBE_IS(h, "return string.dump", "ok:nil");
	PROBE_IS(h, "return ('x').dump", "ok:nil");
	PROBE_HAS(h, "return load(string.dump(print))", "err:");
	PROBE_HAS(h, "return load('\\27LuaT\\0\\25\\147')", "binary chunks are not allowed");
	PROBE_HAS(h, "return load('return 1', 'x', 'b')", "binary chunks are not allowed");
	PROBE_HAS(h, "return load('return 1', 'x', 'bt')", "binary chunks are not allowed");
	PROBE_HAS(h, "return load(function() return nil end)", "only source text");
	PROBE_IS(h, "return load('return dofile or io or os.execute')()", "ok:nil");
	PROBE_IS(h, "return load('return x', 'c', 't', { x = 7 })()", "ok:7");
	PROBE_HAS(h, "return collectgarbage('collect')", "only \"count\"");
	PROBE_HAS(h, "return collectgarbage('stop')", "only \"count\"");
	PROBE_IS(h, "return math.type(collectgarbage('count'))", "ok:float");
	/* Shared tables: locked metatables, read-only library views. */
	PROBE_IS(h, "return getmetatable('')", "ok:locked");
	PROBE_IS(h, "return getmetatable(string)", "ok:locked");
	PROBE_IS(h, "return getmetatable(edge)", "ok:locked");
	PROBE_IS(h, "return getmetatable(_G)", "ok:locked");
	PROBE_HAS(h, "string.upper = nil", "read-only");
	PROBE_HAS(h, "table.insert = print", "read-only");
	PROBE_HAS(h, "edge.now = function() return 0 end", "read-only");
	PROBE_HAS(h, "os.execute = print", "read-only");
	PROBE_HAS(h, "return setmetatable(string, {})", "protected metatable");
	PROBE_HAS(h, "return setmetatable(_G, {})", "protected metatable");
	PROBE_HAS(h, "return setmetatable({}, { __gc = function() end })", "__gc is not allowed");
	PROBE_IS(h, "return ('abc'):upper()", "ok:ABC");
	/* Nothing another policy did is visible here. */
	PROBE_IS(h, "return tostring(LEAK) .. tostring(string.leak) .. tostring(edge.leak) .. "
		    "tostring(rawget(_G, 'LEAK')) .. tostring(math.pi > 3)",
		 "ok:nilnilnilniltrue");
	/* Secrets are not readable through edge.config. */
	PROBE_HAS(h, "return edge.config('jwt_secret')", "not readable by policies");
	PROBE_HAS(h, "return edge.config('s3.secret_key')", "not readable by policies");
	PROBE_IS(h, "return edge.config('policy.param.nothing')", "ok:nil");
	PROBE_HAS(h, "return edge.active_count()", "not available");
	PROBE_HAS(h, "return edge.log('shout', 'x')", "not error, warn, info or debug");
	/* lib() only loads helpers by plain name. */
	PROBE_HAS(h, "return lib('../auth')", "not a helper name");
	PROBE_HAS(h, "return lib('/etc/passwd')", "not a helper name");
	PROBE_HAS(h, "return lib('missing')", "cannot open");
	/* Pattern matching cannot be used to spin in C where the hook cannot
	 * reach (test_policy_budget tries every guarded function). */
	PROBE_IS(h, "return ('room-42'):match('^room%-(%d+)$')", "ok:42");
	/* C loops whose length a policy controls are bounded before they start. */
	PROBE_IS(h, "return #string.rep('', 1e15)", "ok:0");
	PROBE_IS(h, "return #string.rep('', 1e15, '')", "ok:0");
	PROBE_HAS(h, "return table.move({}, 1, 1e15, 2)", "range too long");
	PROBE_HAS(h, "return table.remove(setmetatable({}, { __len = function() return 1e15 end }), 1)",
		  "beyond what policies may use");
	PROBE_HAS(h, "return table.insert(setmetatable({}, { __len = function() return 1e15 end }), 1, 1)",
		  "beyond what policies may use");
	PROBE_HAS(h, "return table.concat({}, '', 1, 1e15)", "range too long");
	PROBE_HAS(h, "return load(string.rep(string.rep(' ', 1024), 300))", "longer than 256 KiB");
	PROBE_IS(h, "local t = {3, 1, 2} table.insert(t, 4) table.sort(t) "
		    "return table.concat(t, ',') .. table.remove(t) .. select('#', table.unpack(t))",
		 "ok:1,2,3,443");
}

/* A call that must be stopped: the default decides (START is allowed by
 * default), within the wall budget plus slack. */
static void expect_killed(struct policy_host *h, const char *code)
{
	double ms = 0;
	const char *r = probe(h, code, &ms);
	check_count++;
	if (strcmp(r, "FALLBACK") != 0 || ms > 1000) {
		check_failures++;
		fprintf(stderr, "%s: expected a stopped call, got \"%s\" after %.1f ms\n", code, r, ms);
	}
	/* And the policy answers normally right after. */
	PROBE_IS(h, "return 'alive'", "ok:alive");
}

static void test_limits(struct policy_host *h)
{
	struct policy_metrics before, after;
	policy_metrics(h, &before);
	expect_killed(h, "return string.find(string.rep('a', 5000), string.rep('a-', 12) .. 'b')");
	expect_killed(h, "return (string.rep('a', 5000)):match(string.rep('.-', 6) .. 'x')");
	expect_killed(h, "while true do end");
	expect_killed(h, "pcall(function() while true do end end) return 'survived'");
	expect_killed(h, "local function f() while true do end end for i = 1, 1000 do pcall(f) end return 1");
	expect_killed(h, "xpcall(function() while true do end end, function() while true do end end) return 1");
	expect_killed(h, "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 100) .. i end");
	expect_killed(h, "local ok = pcall(function() local t = {} while true do t[#t + 1] = {} end end) "
			 "return 'survived'");
	expect_killed(h, "local s = string.rep('x', 1 << 30) return #s");
	expect_killed(h, "local ok = pcall(string.rep, 'x', 1 << 30) return 'survived'");
	policy_metrics(h, &after);
	CHECK_INT(after.kills - before.kills, 10);
	CHECK_INT(after.fallbacks - before.fallbacks, 10);

	/* Deep recursion ends in an error (stack overflow or a limit), never a crash. */
	double ms = 0;
	const char *r = probe(h, "local function f(n) return f(n + 1) + 1 end return f(1)", &ms);
	CHECK(strcmp(r, "FALLBACK") == 0 || strstr(r, "stack overflow") != NULL);
	r = probe(h, "local t = setmetatable({}, { __index = function(t, k) return t[k .. 'x'] end }) "
		     "return t.a", &ms);
	CHECK(strcmp(r, "FALLBACK") == 0 || strstr(r, "overflow") != NULL);
	PROBE_IS(h, "return 'alive'", "ok:alive");
}

static void test_failing_policy(struct policy_host *h)
{
	cJSON *rec = cJSON_Parse("{\"recording_id\":\"r1\",\"file_name\":\"recording_r1.webm\"}");
	struct policy_metrics before, after;
	policy_metrics(h, &before);
	for (int i = 0; i < 50; i++) {
		struct policy_lifecycle_result res;
		policy_lifecycle(h, POLICY_EVENT_STARTED, rec, &res);
		CHECK(res.fallback);
		CHECK_STR(res.s3_key, "r1/recording_r1.webm");
		cJSON_Delete(res.tags);
	}
	policy_metrics(h, &after);
	CHECK_INT(after.fallbacks - before.fallbacks, 50);
	CHECK_INT(after.kills - before.kills, 0);
	cJSON_Delete(rec);
}

/* Reads the status entry of 'name'. */
static cJSON *status_of(struct policy_host *h, const char *name, cJSON **all)
{
	*all = policy_status_json(h);
	const cJSON *p;
	cJSON_ArrayForEach(p, cJSON_GetObjectItem(*all, "policies"))
		if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(p, "name")), name) == 0)
			return (cJSON *)p;
	return NULL;
}

/* A directory whose 'file' holds 'text' (the others are fine); the policy
 * must not be in force and its status must say 'why'. */
static void expect_rejected(const char *tag, const char *file, const char *text, size_t len,
			    const char *name, const char *why)
{
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/%s", root, tag);
	mkdir(dir, 0755);
	write_text(dir, "auth.lua", policy_probe_auth);
	write_text(dir, "quota.lua", leaky_quota);
	write_text(dir, "lifecycle.lua", failing_lifecycle);
	write_text(dir, "sources.lua", sources_ok);
	write_file(dir, file, text, len);
	struct policy_host *h = open_host(dir);
	if (!h)
		return;
	cJSON *all = NULL;
	cJSON *st = status_of(h, name, &all);
	CHECK(st != NULL);
	const char *err = cJSON_GetStringValue(cJSON_GetObjectItem(st, "last_error"));
	check_count++;
	if (!err || !strstr(err, why)) {
		check_failures++;
		fprintf(stderr, "%s: last_error \"%s\", expected to contain \"%s\"\n", tag,
			err ? err : "(null)", why);
	}
	CHECK(cJSON_IsFalse(cJSON_GetObjectItem(st, "in_force")));
	CHECK(cJSON_IsNull(cJSON_GetObjectItem(st, "sha256")));
	char whyh[256];
	CHECK(!policy_healthy(h, whyh, sizeof(whyh)));
	CHECK(strstr(whyh, name) != NULL);
	cJSON_Delete(all);
	policy_host_free(h);
}

static void test_rejected_files(void)
{
	expect_rejected("syntax", "auth.lua", "local M = {\nreturn M\n", SIZE_MAX, "auth", "auth.lua:");
	expect_rejected("bytecode", "auth.lua", "\x1bLuaT\x00\x19\x93\r\n", 10, "auth",
			"binary chunks are not allowed");
	expect_rejected("nohook", "quota.lua", "return {}\n", SIZE_MAX, "quota", "hook 'admit' is missing");
	expect_rejected("notable", "sources.lua", "return 42\n", SIZE_MAX, "sources", "must return a table");
	expect_rejected("loadloop", "auth.lua", "while true do end\n", SIZE_MAX, "auth", "policy stopped");
	expect_rejected("selftest", "sources.lua",
			"return { resolve = function() return 'test' end, "
			"self_test = function() return false, 'resolver is wrong' end }\n",
			SIZE_MAX, "sources", "resolver is wrong");
	expect_rejected("raise", "quota.lua", "error('nope')\n", SIZE_MAX, "quota", "nope");
	expect_rejected("gc", "quota.lua",
			"setmetatable({}, { __gc = function() while true do end end })\n"
			"return { admit = function() return { decision = 'allow' } end }\n",
			SIZE_MAX, "quota", "__gc is not allowed");
}

/* Bytecode made by the real compiler is refused too. */
static void test_luac_output(void)
{
	char dir[512], cmd[1200];
	snprintf(dir, sizeof(dir), "%s/luac", root);
	mkdir(dir, 0755);
	write_text(dir, "src.lua", sources_ok);
	snprintf(cmd, sizeof(cmd), "luac5.4 -o '%s/sources.lua' '%s/src.lua'", dir, dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "luac5.4 not available, skipping the compiled-chunk case\n");
		return;
	}
	struct policy_host *h = open_host(dir);
	if (!h)
		return;
	cJSON *all = NULL;
	cJSON *st = status_of(h, "sources", &all);
	const char *err = cJSON_GetStringValue(cJSON_GetObjectItem(st, "last_error"));
	CHECK(err && strstr(err, "binary chunks are not allowed"));
	struct policy_source s;
	policy_resolve_source(h, "room", &s);
	CHECK(s.fallback);
	cJSON_Delete(all);
	policy_host_free(h);
}

int main(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	snprintf(root, sizeof(root), "/tmp/test_policy_sandbox.%d", (int)getpid());
	util_rm_rf(root);
	CHECK_INT(util_mkdir_p(root, 0755), 0);
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/main", root);
	mkdir(dir, 0755);
	write_text(dir, "auth.lua", policy_probe_auth);
	write_text(dir, "quota.lua", leaky_quota);
	write_text(dir, "lifecycle.lua", failing_lifecycle);
	write_text(dir, "sources.lua", sources_ok);

	struct policy_host *h = open_host(dir);
	if (h) {
		CHECK(policy_healthy(h, NULL, 0));
		test_escapes(h);
		test_limits(h);
		test_failing_policy(h);
		/* Calls fell back: degraded, each policy named with its error. */
		char why[1024];
		CHECK(!policy_healthy(h, why, sizeof(why)));
		CHECK(strstr(why, "policy lifecycle: ") && strstr(why, "lifecycle is broken"));
		CHECK(strstr(why, "policy auth: policy stopped") != NULL);
		policy_host_free(h);
	}
	test_rejected_files();
	test_luac_output();
	util_rm_rf(root);
	return check_exit();
}
