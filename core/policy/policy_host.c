/* policy_host: the loaded policies, their reload and their status.
 *
 * Each policy file (auth, quota, lifecycle, sources) has a slot holding the
 * unit in force: a sandboxed lua_State built from one version of the file,
 * reference-counted and guarded by its own mutex. A reload builds the new
 * unit beside the live one with no lock held, checks it (hooks present,
 * self_test passes) and swaps the slot's pointer under the host lock; a call
 * already running finishes on the old unit, which is freed when its last
 * caller lets go. A failed build leaves the old unit in force and records
 * the error for the status report. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>

#include "common_time.h"
#include "common_util.h"
#include "crypto.h"
#include "policy_internal.h"

static struct log_handle log_host = LOG_HANDLE("policy");

static const char *const kind_auth_hooks[] = { "authorize", NULL };
static const char *const kind_quota_hooks[] = { "admit", NULL };
static const char *const kind_lifecycle_hooks[] = { "on_started", "on_stopped", "on_completed",
						    "on_failed", NULL };
static const char *const kind_sources_hooks[] = { "resolve", NULL };

static const struct log_handle kind_logs[POLICY_KIND__COUNT] = {
	LOG_HANDLE("policy/auth"),
	LOG_HANDLE("policy/quota"),
	LOG_HANDLE("policy/lifecycle"),
	LOG_HANDLE("policy/sources"),
};

const struct policy_kind policy_kinds[POLICY_KIND__COUNT] = {
	{ "auth", "auth.lua", kind_auth_hooks },
	{ "quota", "quota.lua", kind_quota_hooks },
	{ "lifecycle", "lifecycle.lua", kind_lifecycle_hooks },
	{ "sources", "sources.lua", kind_sources_hooks },
};

const struct config_option policy_config_options[] = {
	{ "policy_dir", CONFIG_STR, "/etc/edgerec/policies", "directory of the live Lua policies" },
	{ "policy.max_instructions", CONFIG_INT, "1000000", "Lua VM instructions one policy call may run" },
	{ "policy.max_memory", CONFIG_SIZE, "16M", "memory each Lua state of a policy may hold" },
	{ "policy.max_call_time", CONFIG_DURATION, "200ms", "wall-clock budget of one policy call" },
	{ "policy.param.*", CONFIG_STR, NULL, "a value policies read with edge.config" },
	{ 0 },
};

/* ---- units ------------------------------------------------------------- */

static void unit_free(struct policy_unit *u)
{
	if (!u)
		return;
	for (int i = 0; i < POLICY_STATES_PER_UNIT; i++) {
		policy_sandbox_close(&u->states[i].sb);
		pthread_mutex_destroy(&u->states[i].mu);
	}
	free(u);
}

static void unit_release(struct policy_unit *u)
{
	if (u && atomic_fetch_sub(&u->refs, 1) == 1)
		unit_free(u);
}

/* Checks the module a policy file returned: a table whose hooks are
 * functions; then runs its self_test when it has one. Runs protected. */
static int unit_check(lua_State *L)
{
	const struct policy_kind *kind = lua_touserdata(L, 1);
	policy_sandbox_push_module(L);                          /* kind mod */
	if (!lua_istable(L, -1))
		return luaL_error(L, "%s must return a table of hooks (it returned a %s)",
				  kind->file, luaL_typename(L, -1));
	for (const char *const *hook = kind->hooks; *hook; hook++) {
		lua_pushstring(L, *hook);
		if (lua_rawget(L, -2) != LUA_TFUNCTION)         /* kind mod hook */
			return luaL_error(L, "%s: hook '%s' is missing (a function is required)",
					  kind->file, *hook);
		lua_pop(L, 1);
	}
	lua_pushliteral(L, "self_test");
	int t = lua_rawget(L, -2);                              /* kind mod self_test */
	if (t == LUA_TNIL)
		return 0;
	if (t != LUA_TFUNCTION)
		return luaL_error(L, "%s: self_test must be a function", kind->file);
	lua_call(L, 0, 2);                                      /* kind mod ok msg */
	if (lua_toboolean(L, -2) != 1 || lua_type(L, -2) != LUA_TBOOLEAN)
		return luaL_error(L, "%s: self_test failed: %s", kind->file,
				  lua_isstring(L, -1) ? lua_tostring(L, -1) : "it did not return true");
	return 0;
}

/* Reads the numeric fields of quota.lua's M.limits into the unit. Runs
 * protected; a missing or odd table leaves no limits. */
static int unit_read_limits(lua_State *L)
{
	struct policy_unit *u = lua_touserdata(L, 1);
	policy_sandbox_push_module(L);                          /* u mod */
	if (lua_type(L, -1) != LUA_TTABLE)
		return 0;
	lua_pushliteral(L, "limits");
	if (lua_rawget(L, -2) != LUA_TTABLE)                    /* u mod limits */
		return 0;
	struct { const char *name; long long *out; } f[] = {
		{ "user_concurrent", &u->limit_user_concurrent },
		{ "user_minutes_per_day", &u->limit_user_minutes_per_day },
	};
	for (size_t i = 0; i < ARRAY_SIZE(f); i++) {
		lua_pushstring(L, f[i].name);
		lua_rawget(L, -2);                              /* u mod limits v */
		int isnum = 0;
		lua_Number v = lua_tonumberx(L, -1, &isnum);
		*f[i].out = isnum && v >= 1 && v < 1e9 ? (long long)v : 0;
		lua_pop(L, 1);                                  /* u mod limits */
	}
	return 0;
}

/* Builds a unit from one version of a file. NULL with 'err' filled when it
 * does not load or check. */
static struct policy_unit *unit_build(struct policy_host *h, enum policy_kind_id k,
				      const char *src, size_t len, const char *sha,
				      char *err, size_t errlen)
{
	const struct policy_kind *kind = &policy_kinds[k];
	struct policy_unit *u = calloc(1, sizeof(*u));
	if (!u) {
		snprintf(err, errlen, "%s: out of memory", kind->file);
		return NULL;
	}
	atomic_init(&u->refs, 1);
	for (int i = 0; i < POLICY_STATES_PER_UNIT; i++)
		pthread_mutex_init(&u->states[i].mu, NULL);
	char chunk[64];
	snprintf(chunk, sizeof(chunk), "@%s", kind->file);
	for (int i = 0; i < POLICY_STATES_PER_UNIT; i++) {
		struct policy_sandbox *sb = &u->states[i].sb;
		bool killed = false;
		if (policy_sandbox_open(sb, h, kind->name, &kind_logs[k], &h->limits, err, errlen) < 0 ||
		    policy_sandbox_load(sb, chunk, src, len, err, errlen) < 0 ||
		    policy_sandbox_run(sb, unit_check, (void *)kind, &killed, err, errlen) < 0)
			goto fail;
	}
	if (k == POLICY_KIND_QUOTA) {
		bool killed = false;
		char ignored[POLICY_ERR_MAX];
		policy_sandbox_run(&u->states[0].sb, unit_read_limits, u, &killed, ignored, sizeof(ignored));
	}
	util_strlcpy(u->sha256, sha, sizeof(u->sha256));
	u->loaded_wall_ns = time_wall_ns();
	return u;
fail:
	unit_free(u);
	return NULL;
}

/* ---- calls ------------------------------------------------------------- */

/* Keeps the latest failure of a call for the status report and /healthz. */
static void host_note_call_error(struct policy_host *h, struct policy_slot *s, const char *err)
{
	pthread_rwlock_wrlock(&h->lock);
	util_strlcpy(s->call_error, err, sizeof(s->call_error));
	s->call_error_wall_ns = time_wall_ns();
	s->call_error_mono_ns = time_mono_ns();
	pthread_rwlock_unlock(&h->lock);
}

static struct policy_unit *host_acquire_ex(struct policy_host *h, enum policy_kind_id k, bool *absent)
{
	pthread_rwlock_rdlock(&h->lock);
	struct policy_unit *u = h->slots[k].live;
	if (u)
		atomic_fetch_add(&u->refs, 1);
	if (absent)
		*absent = !u && h->slots[k].absent;
	pthread_rwlock_unlock(&h->lock);
	return u;
}

static struct policy_unit *host_acquire(struct policy_host *h, enum policy_kind_id k)
{
	return host_acquire_ex(h, k, NULL);
}

int policy_host_call(struct policy_host *h, enum policy_kind_id k, lua_CFunction fn, void *ctx,
		     char *err, size_t errlen)
{
	struct policy_slot *s = &h->slots[k];
	atomic_fetch_add(&s->calls, 1);
	bool absent = false;
	struct policy_unit *u = host_acquire_ex(h, k, &absent);
	if (!u) {
		snprintf(err, errlen, "%s is not loaded", policy_kinds[k].file);
		atomic_fetch_add(&s->fallbacks, 1);
		return absent ? POLICY_CALL_ABSENT : -1;
	}
	/* A free state if there is one, else wait for the next in turn. */
	unsigned first = atomic_fetch_add(&u->next, 1) % POLICY_STATES_PER_UNIT;
	struct policy_state *st = NULL;
	for (unsigned i = 0; i < POLICY_STATES_PER_UNIT && !st; i++) {
		struct policy_state *c = &u->states[(first + i) % POLICY_STATES_PER_UNIT];
		if (pthread_mutex_trylock(&c->mu) == 0)
			st = c;
	}
	if (!st) {
		st = &u->states[first];
		pthread_mutex_lock(&st->mu);
	}
	bool killed = false;
	int rc = policy_sandbox_run(&st->sb, fn, ctx, &killed, err, errlen);
	pthread_mutex_unlock(&st->mu);
	unit_release(u);
	if (rc == 0)
		return 0;
	atomic_fetch_add(&s->fallbacks, 1);
	if (killed)
		atomic_fetch_add(&s->kills, 1);
	host_note_call_error(h, s, err);
	/* At most one line per policy per second; the counters hold the rest. */
	int64_t now = time_mono_ns();
	int64_t last = atomic_load(&s->last_log_ns);
	if (now - last >= TIME_NS_PER_SEC &&
	    atomic_compare_exchange_strong(&s->last_log_ns, &last, now)) {
		unsigned long long quiet = atomic_exchange(&s->unlogged, 0);
		LOG_WARN(&kind_logs[k], "call failed, default decision used: %s%s", err,
			 quiet ? " (and earlier failures not logged)" : "");
	} else {
		atomic_fetch_add(&s->unlogged, 1);
	}
	return -1;
}

/* ---- reload ------------------------------------------------------------ */

static int host_cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The digest of every .lua file in lib/ (names and contents, in name order), so a
 * change to a helper rebuilds the policies that may use it. */
static void host_lib_digest(struct policy_host *h, char out[65])
{
	struct crypto_sha256_ctx ctx;
	crypto_sha256_init(&ctx);
	char path[POLICY_PATH_MAX];
	snprintf(path, sizeof(path), "%s/lib", h->dir);
	DIR *d = opendir(path);
	char **names = NULL;
	size_t n = 0, cap = 0;
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			size_t l = strlen(e->d_name);
			if (l < 5 || strcmp(e->d_name + l - 4, ".lua") != 0 || e->d_name[0] == '.')
				continue;
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 16;
				char **nn = realloc(names, ncap * sizeof(*names));
				if (!nn)
					break;
				names = nn;
				cap = ncap;
			}
			names[n] = strdup(e->d_name);
			if (names[n])
				n++;
		}
		closedir(d);
	}
	if (n)
		qsort(names, n, sizeof(*names), host_cmp_names);
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/lib/%s", h->dir, names[i]);
		size_t len = 0;
		char *src = util_read_file(path, &len);
		crypto_sha256_update(&ctx, names[i], strlen(names[i]) + 1);
		if (src)
			crypto_sha256_update(&ctx, src, len);
		crypto_sha256_update(&ctx, "", 1);
		free(src);
		free(names[i]);
	}
	free(names);
	uint8_t sum[CRYPTO_SHA256_LEN];
	crypto_sha256_final(&ctx, sum);
	crypto_hex(sum, sizeof(sum), out);
}

static void host_set_error(struct policy_host *h, struct policy_slot *s, const char *msg, bool absent)
{
	pthread_rwlock_wrlock(&h->lock);
	util_strlcpy(s->last_error, msg, sizeof(s->last_error));
	s->absent = absent;
	pthread_rwlock_unlock(&h->lock);
}

/* Brings one slot up to date with its file. Returns 1 when a new version
 * was swapped in. */
static int host_reload_slot(struct policy_host *h, enum policy_kind_id k, bool lib_changed)
{
	const struct policy_kind *kind = &policy_kinds[k];
	struct policy_slot *s = &h->slots[k];
	char path[POLICY_PATH_MAX], err[POLICY_ERR_MAX], sha[65];
	snprintf(path, sizeof(path), "%s/%s", h->dir, kind->file);
	size_t len = 0;
	char *src = util_read_file(path, &len);
	if (!src) {
		bool absent = errno == ENOENT;
		snprintf(err, sizeof(err), "%s: cannot read: %s", kind->file, strerror(errno));
		pthread_rwlock_rdlock(&h->lock);
		bool same = strcmp(s->last_error, err) == 0;
		pthread_rwlock_unlock(&h->lock);
		if (!same) {
			LOG_ERROR(&kind_logs[k], "%s (%s)", err,
				  s->live ? "the last good version stays in force"
					  : "the built-in default decides");
			host_set_error(h, s, err, absent);
		}
		return 0;
	}
	uint8_t sum[CRYPTO_SHA256_LEN];
	crypto_sha256(src, len, sum);
	crypto_hex(sum, sizeof(sum), sha);

	pthread_rwlock_wrlock(&h->lock);
	bool is_live = s->live && strcmp(s->live->sha256, sha) == 0;
	bool failed_before = strcmp(s->failed_sha256, sha) == 0;
	if (is_live && !lib_changed)
		s->last_error[0] = 0; /* back to the version in force */
	pthread_rwlock_unlock(&h->lock);
	if (!lib_changed && (is_live || failed_before)) {
		free(src);
		return 0;
	}

	struct policy_unit *u = unit_build(h, k, src, len, sha, err, sizeof(err));
	free(src);
	if (!u) {
		atomic_fetch_add(&h->reload_failures, 1);
		pthread_rwlock_wrlock(&h->lock);
		util_strlcpy(s->last_error, err, sizeof(s->last_error));
		util_strlcpy(s->failed_sha256, sha, sizeof(s->failed_sha256));
		bool had = s->live != NULL;
		pthread_rwlock_unlock(&h->lock);
		LOG_ERROR(&kind_logs[k], "not loaded: %s (%s)", err,
			  had ? "the last good version stays in force" : "the built-in default decides");
		return 0;
	}
	pthread_rwlock_wrlock(&h->lock);
	struct policy_unit *old = s->live;
	s->live = u;
	s->absent = false;
	s->last_error[0] = 0;
	s->failed_sha256[0] = 0;
	s->call_error[0] = 0;
	s->call_error_wall_ns = s->call_error_mono_ns = 0;
	pthread_rwlock_unlock(&h->lock);
	unit_release(old);
	atomic_fetch_add(&s->reloads, 1);
	LOG_INFO(&kind_logs[k], "%s %s (sha256 %.12s)", kind->file, old ? "reloaded" : "loaded", sha);
	return 1;
}

int policy_host_reload(struct policy_host *h)
{
	pthread_mutex_lock(&h->reload_mu);
	char lib[65];
	host_lib_digest(h, lib);
	bool lib_changed = strcmp(lib, h->lib_digest) != 0;
	if (lib_changed && h->lib_digest[0])
		LOG_INFO(&log_host, "lib/ changed: rebuilding every policy");
	memcpy(h->lib_digest, lib, sizeof(lib));
	int swapped = 0;
	for (int k = 0; k < POLICY_KIND__COUNT; k++)
		swapped += host_reload_slot(h, k, lib_changed);
	pthread_mutex_unlock(&h->reload_mu);
	return swapped;
}

/* ---- the host ---------------------------------------------------------- */

struct policy_host *policy_host_new(const struct policy_host_options *o, char *err, size_t errlen)
{
	struct stat st;
	if (!o || !o->dir || !o->dir[0]) {
		snprintf(err, errlen, "policy: no policy directory configured");
		return NULL;
	}
	if (stat(o->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "policy: %s is not a directory", o->dir);
		return NULL;
	}
	if (strlen(o->dir) >= POLICY_DIR_MAX) {
		snprintf(err, errlen, "policy: directory path too long");
		return NULL;
	}
	struct policy_host *h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "policy: out of memory");
		return NULL;
	}
	util_strlcpy(h->dir, o->dir, sizeof(h->dir));
	h->cfg = o->cfg;
	h->limits.max_instructions = o->max_instructions > 0 ? o->max_instructions
							     : POLICY_DEFAULT_MAX_INSTRUCTIONS;
	h->limits.max_memory = o->max_memory > 0 ? o->max_memory : POLICY_DEFAULT_MAX_MEMORY;
	h->limits.max_call_ns = o->max_call_ns > 0 ? o->max_call_ns : POLICY_DEFAULT_MAX_CALL_NS;
	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&h->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&h->reload_mu, NULL);
	policy_host_reload(h);
	if (o->watch) {
		h->watch = policy_watch_start(h, h->dir);
		if (!h->watch) {
			snprintf(err, errlen, "policy: cannot watch %s for changes", h->dir);
			policy_host_free(h);
			return NULL;
		}
	}
	LOG_INFO(&log_host, "policies from %s (limits: %lld instructions, %zu bytes, %lld ms per call)",
		 h->dir, h->limits.max_instructions, h->limits.max_memory,
		 (long long)(h->limits.max_call_ns / TIME_NS_PER_MS));
	return h;
}

struct policy_host *policy_host_new_from_config(const struct config *cfg, char *err, size_t errlen)
{
	struct policy_host_options o = {
		.dir = config_get_str(cfg, "policy_dir"),
		.cfg = cfg,
		.max_instructions = config_get_int(cfg, "policy.max_instructions"),
		.max_memory = (size_t)config_get_int(cfg, "policy.max_memory"),
		.max_call_ns = config_get_int(cfg, "policy.max_call_time") * TIME_NS_PER_MS,
		.watch = true,
	};
	return policy_host_new(&o, err, errlen);
}

void policy_host_free(struct policy_host *h)
{
	if (!h)
		return;
	policy_watch_stop(h->watch);
	for (int k = 0; k < POLICY_KIND__COUNT; k++)
		unit_release(h->slots[k].live);
	pthread_mutex_destroy(&h->reload_mu);
	pthread_rwlock_destroy(&h->lock);
	free(h);
}

void policy_host_set_provider(struct policy_host *h, const struct policy_provider *p)
{
	pthread_rwlock_wrlock(&h->lock);
	if (p)
		h->provider = *p;
	else
		memset(&h->provider, 0, sizeof(h->provider));
	pthread_rwlock_unlock(&h->lock);
}

void policy_host_provider(struct policy_host *h, struct policy_provider *out)
{
	pthread_rwlock_rdlock(&h->lock);
	*out = h->provider;
	pthread_rwlock_unlock(&h->lock);
}

/* A positive whole number from the configuration key, or 0. */
static long long host_param(const struct config *cfg, const char *key)
{
	const char *v = cfg ? config_get_str(cfg, key) : NULL;
	char *end = NULL;
	if (!v || !*v)
		return 0;
	double d = strtod(v, &end);
	return end && !*end && d >= 1 && d < 1e9 ? (long long)d : 0;
}

void policy_host_quota_limits(struct policy_host *h, long long *user_concurrent,
			      long long *user_minutes_per_day)
{
	*user_concurrent = host_param(h->cfg, "policy.param.user_concurrent");
	*user_minutes_per_day = host_param(h->cfg, "policy.param.user_minutes_per_day");
	struct policy_unit *u = host_acquire(h, POLICY_KIND_QUOTA);
	if (u) {
		if (!*user_concurrent)
			*user_concurrent = u->limit_user_concurrent;
		if (!*user_minutes_per_day)
			*user_minutes_per_day = u->limit_user_minutes_per_day;
		unit_release(u);
	}
}

const struct config *policy_host_config(struct policy_host *h)
{
	return h->cfg;
}

const char *policy_host_dir(struct policy_host *h)
{
	return h->dir;
}

/* ---- status ------------------------------------------------------------ */

/* True when the slot's file is not in force as written, or a call of it
 * fell back within the window. Under the host lock. */
static bool host_slot_degraded(const struct policy_slot *s, int64_t now_mono)
{
	return s->last_error[0] ||
	       (s->call_error[0] && now_mono - s->call_error_mono_ns < POLICY_DEGRADED_WINDOW_NS);
}

cJSON *policy_status_json(struct policy_host *h)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *list = cJSON_AddArrayToObject(root, "policies");
	if (!root || !list)
		goto fail;
	cJSON_AddStringToObject(root, "dir", h->dir);
	for (int k = 0; k < POLICY_KIND__COUNT; k++) {
		struct policy_slot *s = &h->slots[k];
		cJSON *o = cJSON_CreateObject();
		if (!o || !cJSON_AddItemToArray(list, o)) {
			cJSON_Delete(o);
			goto fail;
		}
		cJSON_AddStringToObject(o, "name", policy_kinds[k].name);
		cJSON_AddStringToObject(o, "file", policy_kinds[k].file);
		pthread_rwlock_rdlock(&h->lock);
		if (s->live) {
			char when[40];
			cJSON_AddStringToObject(o, "sha256", s->live->sha256);
			cJSON_AddStringToObject(o, "loaded_at",
						time_iso8601(s->live->loaded_wall_ns, when, sizeof(when)));
		} else {
			cJSON_AddNullToObject(o, "sha256");
			cJSON_AddNullToObject(o, "loaded_at");
		}
		/* A load failure first (it outlasts any call), else the latest
		 * failed call of the version in force. */
		const char *last = s->last_error[0] ? s->last_error : s->call_error[0] ? s->call_error : NULL;
		if (last)
			cJSON_AddStringToObject(o, "last_error", last);
		else
			cJSON_AddNullToObject(o, "last_error");
		if (!s->last_error[0] && s->call_error[0]) {
			char when[40];
			cJSON_AddStringToObject(o, "last_error_at",
						time_iso8601(s->call_error_wall_ns, when, sizeof(when)));
		} else {
			cJSON_AddNullToObject(o, "last_error_at");
		}
		cJSON_AddBoolToObject(o, "in_force", s->live != NULL);
		cJSON_AddBoolToObject(o, "degraded", host_slot_degraded(s, time_mono_ns()));
		pthread_rwlock_unlock(&h->lock);
		cJSON_AddNumberToObject(o, "calls", (double)atomic_load(&s->calls));
		cJSON_AddNumberToObject(o, "fallbacks", (double)atomic_load(&s->fallbacks));
		cJSON_AddNumberToObject(o, "kills", (double)atomic_load(&s->kills));
		cJSON_AddNumberToObject(o, "reloads", (double)atomic_load(&s->reloads));
	}
	cJSON_AddNumberToObject(root, "count", POLICY_KIND__COUNT);
	return root;
fail:
	cJSON_Delete(root);
	return NULL;
}

bool policy_healthy(struct policy_host *h, char *why, size_t whylen)
{
	bool ok = true;
	size_t n = 0;
	int64_t now = time_mono_ns();
	if (why && whylen)
		why[0] = 0;
	pthread_rwlock_rdlock(&h->lock);
	for (int k = 0; k < POLICY_KIND__COUNT; k++) {
		struct policy_slot *s = &h->slots[k];
		const char *what = NULL;
		char age[48] = "";
		if (s->last_error[0]) {
			what = s->last_error;
		} else if (!s->live) {
			what = "not loaded, the built-in default decides";
		} else if (host_slot_degraded(s, now)) {
			what = s->call_error;
			snprintf(age, sizeof(age), " (%lld s ago, %llu fallbacks in all)",
				 (long long)((now - s->call_error_mono_ns) / TIME_NS_PER_SEC),
				 (unsigned long long)atomic_load(&s->fallbacks));
		}
		if (!what)
			continue;
		ok = false;
		if (why && n < whylen) {
			int w = snprintf(why + n, whylen - n, "%spolicy %s: %s%s", n ? "; " : "",
					 policy_kinds[k].name, what, age);
			n = w < 0 ? whylen : n + (size_t)w;
		}
	}
	pthread_rwlock_unlock(&h->lock);
	return ok;
}

char *policy_metrics_text(struct policy_host *h)
{
	struct policy_metrics pm;
	policy_metrics(h, &pm);
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	static const char *const fams[][2] = {
		{ "calls", "Policy decisions asked." },
		{ "fallbacks", "Decisions answered by the built-in default (the policy failed, "
			       "ran out of budget, answered a wrong type or is not loaded)." },
		{ "kills", "Policy calls stopped by a limit." },
		{ "reloads", "New policy versions swapped in." },
	};
	for (size_t i = 0; i < ARRAY_SIZE(fams); i++) {
		fprintf(f, "# HELP edgerec_policy_%s_total %s\n# TYPE edgerec_policy_%s_total counter\n",
			fams[i][0], fams[i][1], fams[i][0]);
		for (int k = 0; k < POLICY_KIND__COUNT; k++) {
			struct policy_slot *s = &h->slots[k];
			atomic_ullong *c = i == 0 ? &s->calls : i == 1 ? &s->fallbacks : i == 2 ? &s->kills
												 : &s->reloads;
			fprintf(f, "edgerec_policy_%s_total{policy=\"%s\"} %llu\n", fams[i][0],
				policy_kinds[k].name, (unsigned long long)atomic_load(c));
		}
	}
	fprintf(f, "# HELP edgerec_policy_reload_failures_total Policy versions refused.\n"
		   "# TYPE edgerec_policy_reload_failures_total counter\n"
		   "edgerec_policy_reload_failures_total %llu\n"
		   "# HELP edgerec_policy_degraded 1 while a policy is not in force as written or a call "
		   "of it fell back in the last minute.\n# TYPE edgerec_policy_degraded gauge\n",
		pm.reload_failures);
	int64_t now = time_mono_ns();
	pthread_rwlock_rdlock(&h->lock);
	for (int k = 0; k < POLICY_KIND__COUNT; k++)
		fprintf(f, "edgerec_policy_degraded{policy=\"%s\"} %d\n", policy_kinds[k].name,
			host_slot_degraded(&h->slots[k], now) ? 1 : 0);
	pthread_rwlock_unlock(&h->lock);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

void policy_metrics(struct policy_host *h, struct policy_metrics *m)
{
	memset(m, 0, sizeof(*m));
	for (int k = 0; k < POLICY_KIND__COUNT; k++) {
		struct policy_slot *s = &h->slots[k];
		m->calls += atomic_load(&s->calls);
		m->fallbacks += atomic_load(&s->fallbacks);
		m->kills += atomic_load(&s->kills);
		m->reloads += atomic_load(&s->reloads);
	}
	m->reload_failures = atomic_load(&h->reload_failures);
}
