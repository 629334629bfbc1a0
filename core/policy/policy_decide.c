/* policy_decide: the four decisions the recorder asks for.
 *
 * Each decision has a trampoline that runs inside the policy's sandbox
 * (facts in as plain tables, the hook called, its answer validated and
 * copied into C storage the caller owns) and a built-in default that
 * reproduces the reference behaviour. Any failure of the trampoline, a
 * malformed answer included, means the default decides. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "common_time.h"
#include "common_util.h"
#include "config.h"
#include "policy_internal.h"

static const char *const decide_action_names[POLICY_ACTION__COUNT] = {
	"start", "stop", "pause", "resume", "cancel", "read", "list_room", "list_user", "admin",
	"download", "delete",
};

static const char *const decide_event_names[POLICY_EVENT__COUNT] = {
	"started", "stopped", "completed", "failed", "deleted",
};

const char *policy_action_name(enum policy_action a)
{
	return (unsigned)a < POLICY_ACTION__COUNT ? decide_action_names[a] : NULL;
}

const char *policy_event_name(enum policy_event e)
{
	return (unsigned)e < POLICY_EVENT__COUNT ? decide_event_names[e] : NULL;
}

/* Pushes the module's hook 'name' (a function) or raises. */
static void decide_push_hook(lua_State *L, const char *name)
{
	policy_sandbox_push_module(L);                     /* mod */
	if (!lua_istable(L, -1))
		luaL_error(L, "the policy's module is gone");
	lua_pushstring(L, name);
	if (lua_rawget(L, -2) != LUA_TFUNCTION)            /* mod hook */
		luaL_error(L, "hook '%s' is missing", name);
	lua_remove(L, -2);                                 /* hook */
}

/* Pushes {user_id = ..., claims = {...}}. */
static void decide_push_caller(lua_State *L, const struct policy_caller *caller)
{
	lua_createtable(L, 0, 2);
	if (caller && caller->user_id) {
		lua_pushstring(L, caller->user_id);
		lua_setfield(L, -2, "user_id");
	}
	policy_edge_push_claims(L, caller ? caller->claims : NULL);
	lua_setfield(L, -2, "claims");
}

/* Copies a reason given by a policy: printable ASCII kept, the rest turned
 * into '?', cut at the buffer's size. */
static void decide_copy_reason(char *out, size_t outlen, const char *in)
{
	size_t i = 0;
	for (; in[i] && i + 1 < outlen; i++) {
		unsigned char c = (unsigned char)in[i];
		out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	out[i] = 0;
}

/* Reads an optional integer field; raises when present and not an integer
 * in [lo, hi]. */
static bool decide_opt_int(lua_State *L, int idx, const char *field, long long lo, long long hi,
			   long long *out)
{
	int t = lua_getfield(L, idx, field);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return false;
	}
	int isint = 0;
	lua_Integer v = lua_tointegerx(L, -1, &isint);
	if (t != LUA_TNUMBER || !isint || v < lo || v > hi)
		luaL_error(L, "'%s' must be an integer from %lld to %lld", field, lo, hi);
	lua_pop(L, 1);
	*out = v;
	return true;
}

/* Reads an optional string field into 'buf' (NULL when absent); raises
 * when it is not a string or does not fit. */
static const char *decide_opt_str(lua_State *L, int idx, const char *field, char *buf, size_t buflen)
{
	int t = lua_getfield(L, idx, field);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return NULL;
	}
	if (t != LUA_TSTRING)
		luaL_error(L, "'%s' must be a string", field);
	size_t n = 0;
	const char *s = lua_tolstring(L, -1, &n);
	if (n >= buflen || strlen(s) != n)
		luaL_error(L, "'%s' is longer than %d bytes or holds NUL", field, (int)buflen - 1);
	memcpy(buf, s, n + 1);
	lua_pop(L, 1);
	return buf;
}

/* True when the claims' "roles" (an array of strings or one string) holds
 * 'role'. */
static bool decide_has_role(const cJSON *claims, const char *role)
{
	const cJSON *roles = cJSON_GetObjectItemCaseSensitive(claims, "roles");
	if (cJSON_IsString(roles))
		return strcmp(roles->valuestring, role) == 0;
	const cJSON *r;
	cJSON_ArrayForEach(r, roles)
		if (cJSON_IsString(r) && strcmp(r->valuestring, role) == 0)
			return true;
	return false;
}

/* ---- authorize --------------------------------------------------------- */

struct decide_auth_ctx {
	enum policy_action action;
	const struct policy_caller *caller;
	const char *room_id;
	const cJSON *rec;
	struct policy_verdict *out;
};

static int decide_authorize_call(lua_State *L)
{
	struct decide_auth_ctx *c = lua_touserdata(L, 1);
	decide_push_hook(L, "authorize");                  /* ctx fn */
	lua_pushstring(L, policy_action_name(c->action));  /* ctx fn action */
	decide_push_caller(L, c->caller);                  /* ctx fn action caller */
	if (c->rec)
		policy_edge_push_json(L, c->rec, 0);
	else
		lua_pushnil(L);                            /* ctx fn action caller rec */
	if (c->room_id)
		lua_pushstring(L, c->room_id);
	else
		lua_pushnil(L);                            /* ctx fn action caller rec room */
	lua_call(L, 4, 3);                                 /* ctx allow reason status */
	if (lua_type(L, 2) != LUA_TBOOLEAN)
		return luaL_error(L, "authorize returned a %s (true, or false and a reason, expected)",
				  luaL_typename(L, 2));
	struct policy_verdict v = { .allow = lua_toboolean(L, 2), .status = 0 };
	if (!v.allow) {
		if (lua_isnil(L, 3))
			util_strlcpy(v.reason, "forbidden by policy", sizeof(v.reason));
		else if (lua_type(L, 3) == LUA_TSTRING)
			decide_copy_reason(v.reason, sizeof(v.reason), lua_tostring(L, 3));
		else
			return luaL_error(L, "authorize: the reason must be a string");
		int isint = 0;
		lua_Integer st = lua_isnil(L, 4) ? 403 : lua_tointegerx(L, 4, &isint);
		if (!lua_isnil(L, 4) && (!isint || (st != 403 && st != 404)))
			return luaL_error(L, "authorize: the status must be 403 or 404");
		v.status = (int)st;
	}
	*c->out = v;
	return 0;
}

static void decide_default_authorize(enum policy_action action, const struct policy_caller *caller,
				     const cJSON *rec, struct policy_verdict *out)
{
	bool authenticated = caller && caller->user_id && caller->user_id[0];
	bool admin = authenticated && decide_has_role(caller->claims, "admin");
	const cJSON *owner = cJSON_GetObjectItemCaseSensitive(rec, "user_id");
	bool is_owner = authenticated && cJSON_IsString(owner) &&
			strcmp(owner->valuestring, caller->user_id) == 0;
	out->allow = false;
	out->status = 403;
	if (!authenticated) {
		util_strlcpy(out->reason, "authentication required", sizeof(out->reason));
		return;
	}
	switch (action) {
	case POLICY_ACTION_START:
	case POLICY_ACTION_LIST_ROOM:
	case POLICY_ACTION_LIST_USER:
		out->allow = true;
		break;
	case POLICY_ACTION_STOP:
	case POLICY_ACTION_PAUSE:
	case POLICY_ACTION_RESUME:
	case POLICY_ACTION_CANCEL:
	case POLICY_ACTION_READ:
	case POLICY_ACTION_DOWNLOAD:
	case POLICY_ACTION_DELETE:
		out->allow = is_owner || admin;
		if (!out->allow)
			util_strlcpy(out->reason, "only the owner of the recording may do this",
				     sizeof(out->reason));
		break;
	case POLICY_ACTION_ADMIN:
		out->allow = admin;
		if (!admin)
			util_strlcpy(out->reason, "the admin role is required", sizeof(out->reason));
		break;
	default:
		util_strlcpy(out->reason, "unknown action", sizeof(out->reason));
		break;
	}
	if (out->allow) {
		out->status = 0;
		out->reason[0] = 0;
	}
}

bool policy_authorize(struct policy_host *h, enum policy_action action,
		      const struct policy_caller *caller, const char *room_id,
		      const cJSON *recording, struct policy_verdict *out)
{
	memset(out, 0, sizeof(*out));
	if ((unsigned)action >= POLICY_ACTION__COUNT) {
		out->status = 403;
		util_strlcpy(out->reason, "unknown action", sizeof(out->reason));
		return false;
	}
	struct decide_auth_ctx c = { action, caller, room_id, recording, out };
	char err[POLICY_ERR_MAX];
	int rc = h ? policy_host_call(h, POLICY_KIND_AUTH, decide_authorize_call, &c, err, sizeof(err))
		   : POLICY_CALL_ABSENT;
	if (rc == 0)
		return out->allow;
	decide_default_authorize(action, caller, recording, out);
	out->fallback = true;
	/* Fail closed: an auth.lua that exists but cannot answer may have been
	 * stricter than the built-in rule, so only admins keep that rule (to
	 * look at /api/system/policies and stop what runs); everyone else is
	 * denied until it answers again. */
	bool admin = caller && caller->user_id && caller->user_id[0] && decide_has_role(caller->claims, "admin");
	if (rc != POLICY_CALL_ABSENT && out->allow && !admin) {
		out->allow = false;
		out->status = 403;
		util_strlcpy(out->reason, "denied: the authorization policy (auth.lua) failed; "
			     "an admin finds why in /api/system/policies", sizeof(out->reason));
	}
	return out->allow;
}

/* ---- admit ------------------------------------------------------------- */

struct decide_admit_ctx {
	const struct policy_admit_facts *f;
	long long disk_free;
	struct policy_admission *out;
};

static const struct policy_preset_fact *decide_preset(const struct policy_admit_facts *f,
						      const char *name)
{
	for (size_t i = 0; name && i < f->n_presets; i++)
		if (f->presets[i].name && strcmp(f->presets[i].name, name) == 0)
			return &f->presets[i];
	return NULL;
}

static void decide_push_facts(lua_State *L, const struct decide_admit_ctx *c)
{
	const struct policy_admit_facts *f = c->f;
	lua_createtable(L, 0, 12);                                       /* facts */
	if (f->caller && f->caller->user_id) {
		lua_pushstring(L, f->caller->user_id);
		lua_setfield(L, -2, "user_id");
	}
	policy_edge_push_claims(L, f->caller ? f->caller->claims : NULL);
	lua_setfield(L, -2, "claims");
	if (f->room_id) {
		lua_pushstring(L, f->room_id);
		lua_setfield(L, -2, "room_id");
	}
	if (f->quality) {
		lua_pushstring(L, f->quality);
		lua_setfield(L, -2, "quality");
	}
	if (f->format) {
		lua_pushstring(L, f->format);
		lua_setfield(L, -2, "format");
	}
	lua_pushinteger(L, f->max_duration_s);
	lua_setfield(L, -2, "max_duration");
	if (c->disk_free >= 0) {
		lua_pushinteger(L, c->disk_free);
		lua_setfield(L, -2, "disk_free");
	}
	lua_createtable(L, 0, (int)f->n_presets);                        /* facts presets */
	for (size_t i = 0; i < f->n_presets; i++) {
		if (!f->presets[i].name)
			continue;
		lua_createtable(L, 0, 4);                                /* facts presets p */
		lua_pushinteger(L, f->presets[i].video_bps);
		lua_setfield(L, -2, "video_bps");
		lua_pushinteger(L, f->presets[i].audio_bps);
		lua_setfield(L, -2, "audio_bps");
		lua_pushinteger(L, f->presets[i].video_bps + f->presets[i].audio_bps);
		lua_setfield(L, -2, "bps");
		lua_pushinteger(L, f->presets[i].pixel_rate);
		lua_setfield(L, -2, "pixel_rate");
		lua_setfield(L, -2, f->presets[i].name);                 /* facts presets */
	}
	lua_setfield(L, -2, "presets");                                  /* facts */
	if (f->encode_budget > 0) {
		lua_pushinteger(L, f->encode_budget);
		lua_setfield(L, -2, "encode_budget");
		lua_pushinteger(L, f->encode_used);
		lua_setfield(L, -2, "encode_used");
	}
}

static int decide_admit_call(lua_State *L)
{
	struct decide_admit_ctx *c = lua_touserdata(L, 1);
	const struct policy_admit_facts *f = c->f;
	decide_push_hook(L, "admit");                      /* ctx fn */
	decide_push_facts(L, c);                           /* ctx fn facts */
	lua_call(L, 1, 1);                                 /* ctx answer */
	if (!lua_istable(L, 2))
		return luaL_error(L, "admit returned a %s (a table {decision = ...} expected)",
				  luaL_typename(L, 2));
	char decision[16];
	if (!decide_opt_str(L, 2, "decision", decision, sizeof(decision)))
		return luaL_error(L, "admit: 'decision' is missing");
	struct policy_admission a = { .kind = POLICY_ADMIT_ALLOW, .max_duration_s = f->max_duration_s };
	util_strlcpy(a.quality, f->quality ? f->quality : "", sizeof(a.quality));
	long long v = 0;
	if (strcmp(decision, "allow") == 0) {
		a.kind = POLICY_ADMIT_ALLOW;
	} else if (strcmp(decision, "refuse") == 0) {
		a.kind = POLICY_ADMIT_REFUSE;
		a.status = 403;
		if (decide_opt_int(L, 2, "status", 400, 599, &v)) {
			if (v != 400 && v != 403 && v != 507)
				return luaL_error(L, "admit: a refusal's status must be 400, 403 or 507");
			a.status = (int)v;
		}
		char reason[POLICY_REASON_MAX];
		if (!decide_opt_str(L, 2, "reason", reason, sizeof(reason)) || !reason[0])
			return luaL_error(L, "admit: a refusal needs a 'reason'");
		decide_copy_reason(a.reason, sizeof(a.reason), reason);
	} else if (strcmp(decision, "grant") == 0) {
		a.kind = POLICY_ADMIT_GRANT;
		char q[POLICY_QUALITY_MAX];
		if (decide_opt_str(L, 2, "quality", q, sizeof(q))) {
			const struct policy_preset_fact *want = decide_preset(f, q);
			const struct policy_preset_fact *asked = decide_preset(f, f->quality);
			if (!want)
				return luaL_error(L, "admit: quality '%s' is not a preset", q);
			if (asked ? want->video_bps > asked->video_bps : strcmp(q, a.quality) != 0)
				return luaL_error(L, "admit: a grant may not raise the quality ('%s' > '%s')",
						  q, a.quality);
			util_strlcpy(a.quality, q, sizeof(a.quality));
		}
		if (decide_opt_int(L, 2, "max_duration", 1, f->max_duration_s > 0 ? f->max_duration_s : 1, &v))
			a.max_duration_s = v;
	} else {
		return luaL_error(L, "admit: decision '%s' is not allow, refuse or grant", decision);
	}
	if (a.kind != POLICY_ADMIT_REFUSE && decide_opt_int(L, 2, "user_limit", 0, 1000000, &v))
		a.user_limit = (int)v;
	*c->out = a;
	return 0;
}

/* The built-in admission when quota.lua cannot answer (not loaded, raised,
 * out of budget, a wrong answer): it never admits more than the policy's
 * configured limits allow. The per-user concurrent limit goes to the atomic
 * admission script (user_limit); minutes per day are checked here from the
 * state store's per-day usage, and a start is refused (503) when that usage
 * cannot be read. Disk and the global limit are the recorder's, as always. */
static void decide_default_admit(struct policy_host *h, const struct policy_admit_facts *f,
				 struct policy_admission *out)
{
	memset(out, 0, sizeof(*out));
	out->kind = POLICY_ADMIT_ALLOW;
	out->fallback = true;
	util_strlcpy(out->quality, f->quality ? f->quality : "", sizeof(out->quality));
	out->max_duration_s = f->max_duration_s;
	if (!h)
		return;
	long long concurrent = 0, per_day = 0;
	policy_host_quota_limits(h, &concurrent, &per_day);
	out->user_limit = (int)concurrent;
	if (per_day <= 0)
		return;
	struct policy_provider p;
	policy_host_provider(h, &p);
	long long live = 0;
	double used = 0;
	const char *user = f->caller ? f->caller->user_id : NULL;
	if (!p.user_usage || !user || p.user_usage(p.opaque, user, &live, &used) < 0) {
		out->kind = POLICY_ADMIT_REFUSE;
		out->status = 503;
		util_strlcpy(out->reason, "the quota policy failed and the daily usage cannot be read; "
			     "try again later", sizeof(out->reason));
		return;
	}
	long long left = (long long)((double)per_day * 60.0 - used);
	if (left < 1) {
		out->kind = POLICY_ADMIT_REFUSE;
		out->status = 403;
		snprintf(out->reason, sizeof(out->reason),
			 "daily recording quota of %lld minutes is used up", per_day);
	} else if (left < out->max_duration_s) {
		out->kind = POLICY_ADMIT_GRANT;
		out->max_duration_s = left;
	}
}

enum policy_admit_kind policy_admit(struct policy_host *h, const struct policy_admit_facts *facts,
				    struct policy_admission *out)
{
	memset(out, 0, sizeof(*out));
	struct decide_admit_ctx c = { .f = facts, .disk_free = facts->disk_free_bytes, .out = out };
	if (h && c.disk_free < 0) {
		struct policy_provider p;
		policy_host_provider(h, &p);
		if (p.disk_free_bytes)
			c.disk_free = p.disk_free_bytes(p.opaque);
	}
	char err[POLICY_ERR_MAX];
	if (!h || policy_host_call(h, POLICY_KIND_QUOTA, decide_admit_call, &c, err, sizeof(err)) < 0)
		decide_default_admit(h, facts, out);
	return out->kind;
}

/* ---- lifecycle --------------------------------------------------------- */

#define DECIDE_DEFAULT_KEY_TEMPLATE "{prefix}{recording_id}/{file_name}"
#define DECIDE_TEMPLATE_MAX 512

struct decide_life_ctx {
	enum policy_event event;
	const cJSON *rec;
	const char *prefix;
	struct policy_lifecycle_result *out;
	char tmpl[DECIDE_TEMPLATE_MAX];
};

static bool decide_key_char(char c, bool slash)
{
	return isalnum((unsigned char)c) || strchr("-_.=+@,", c) || (slash && c == '/');
}

/* Appends 'v' to out[*n]: characters an S3 key should not hold become '_'
 * ('/' is kept only when 'slash'). Returns -1 when it does not fit. */
static int decide_key_append(char *out, size_t outlen, size_t *n, const char *v, size_t vlen,
			     bool slash)
{
	for (size_t i = 0; i < vlen; i++) {
		if (*n + 1 >= outlen)
			return -1;
		out[(*n)++] = decide_key_char(v[i], slash) ? v[i] : '_';
	}
	out[*n] = 0;
	return 0;
}

/* Expands an S3 key template for 'rec'. Returns 0, or -1 with 'err' filled
 * (unknown placeholder, missing field, a key that is empty, too long, starts
 * with '/', or holds "//" or ".."). */
static int decide_expand_key(const char *tmpl, const cJSON *rec, const char *prefix,
			     char *out, size_t outlen, char *err, size_t errlen)
{
	size_t n = 0;
	out[0] = 0;
	const char *started = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "started_at"));
	char today[32];
	if (!started || strlen(started) < 10) {
		time_iso8601(time_wall_ns(), today, sizeof(today));
		started = today;
	}
	for (const char *p = tmpl; *p;) {
		if (*p != '{') {
			if (decide_key_append(out, outlen, &n, p, 1, true) < 0)
				goto too_long;
			if (!decide_key_char(*p, true)) {
				snprintf(err, errlen, "s3_key_template: character '%c' is not allowed", *p);
				return -1;
			}
			p++;
			continue;
		}
		const char *end = strchr(p, '}');
		if (!end || end - p > 32) {
			snprintf(err, errlen, "s3_key_template: unterminated placeholder");
			return -1;
		}
		char name[34];
		memcpy(name, p + 1, (size_t)(end - p - 1));
		name[end - p - 1] = 0;
		p = end + 1;
		const char *v = NULL;
		size_t vlen = 0;
		bool slash = false;
		if (strcmp(name, "prefix") == 0) {
			v = prefix ? prefix : "";
			slash = true;
		} else if (strcmp(name, "date") == 0) {
			v = started, vlen = 10;
		} else if (strcmp(name, "year") == 0) {
			v = started, vlen = 4;
		} else if (strcmp(name, "month") == 0) {
			v = started + 5, vlen = 2;
		} else if (strcmp(name, "day") == 0) {
			v = started + 8, vlen = 2;
		} else if (strcmp(name, "recording_id") == 0 || strcmp(name, "room_id") == 0 ||
			   strcmp(name, "user_id") == 0 || strcmp(name, "file_name") == 0 ||
			   strcmp(name, "format") == 0 || strcmp(name, "quality") == 0) {
			v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, name));
			if (!v || !v[0]) {
				snprintf(err, errlen, "s3_key_template: the recording has no %s", name);
				return -1;
			}
		} else {
			snprintf(err, errlen, "s3_key_template: unknown placeholder {%s}", name);
			return -1;
		}
		if (!vlen)
			vlen = strlen(v);
		if (decide_key_append(out, outlen, &n, v, vlen, slash) < 0)
			goto too_long;
	}
	if (n == 0 || out[0] == '/' || strstr(out, "//") || strstr(out, "..")) {
		snprintf(err, errlen, "s3_key_template: expands to an unsafe key '%s'", out);
		return -1;
	}
	return 0;
too_long:
	snprintf(err, errlen, "s3_key_template: the key is longer than %zu bytes", outlen - 1);
	return -1;
}

static int decide_lifecycle_call(lua_State *L)
{
	struct decide_life_ctx *c = lua_touserdata(L, 1);
	char hook[32];
	snprintf(hook, sizeof(hook), "on_%s", policy_event_name(c->event));
	if (c->event == POLICY_EVENT_DELETED) {
		/* Optional: policies written before it keep working. */
		policy_sandbox_push_module(L);             /* ctx mod */
		bool has = false;
		if (lua_istable(L, -1)) {
			lua_pushstring(L, hook);
			has = lua_rawget(L, -2) == LUA_TFUNCTION; /* ctx mod hook */
		}
		lua_settop(L, 1);                          /* ctx */
		if (!has)
			return 0;
	}
	decide_push_hook(L, hook);                         /* ctx fn */
	policy_edge_push_json(L, c->rec, 0);               /* ctx fn rec */
	lua_call(L, 1, 1);                                 /* ctx answer */
	if (lua_isnil(L, 2))
		return 0;
	if (!lua_istable(L, 2))
		return luaL_error(L, "%s returned a %s (a table or nil expected)", hook,
				  luaL_typename(L, 2));
	int t = lua_getfield(L, 2, "tags");                /* ctx answer tags */
	if (t == LUA_TTABLE) {
		cJSON *tags = policy_edge_table_to_tags(L, 3, "tags");
		cJSON_Delete(c->out->tags);
		c->out->tags = tags;
	} else if (t != LUA_TNIL) {
		return luaL_error(L, "%s: 'tags' must be a table", hook);
	}
	lua_pop(L, 1);                                     /* ctx answer */
	t = lua_getfield(L, 2, "keep_local");
	if (t == LUA_TBOOLEAN)
		c->out->keep_local = lua_toboolean(L, -1);
	else if (t != LUA_TNIL)
		return luaL_error(L, "%s: 'keep_local' must be a boolean", hook);
	lua_pop(L, 1);
	t = lua_getfield(L, 2, "delete_s3");
	if (t == LUA_TBOOLEAN && c->event == POLICY_EVENT_DELETED)
		c->out->delete_s3 = lua_toboolean(L, -1);
	else if (t != LUA_TNIL && t != LUA_TBOOLEAN)
		return luaL_error(L, "%s: 'delete_s3' must be a boolean", hook);
	lua_pop(L, 1);
	decide_opt_str(L, 2, "s3_key_template", c->tmpl, sizeof(c->tmpl));
	char err[POLICY_ERR_MAX];
	if (decide_expand_key(c->tmpl, c->rec, c->prefix, c->out->s3_key, sizeof(c->out->s3_key),
			      err, sizeof(err)) < 0)
		return luaL_error(L, "%s: %s", hook, err);
	return 0;
}

void policy_lifecycle(struct policy_host *h, enum policy_event event, const cJSON *recording,
		      struct policy_lifecycle_result *out)
{
	memset(out, 0, sizeof(*out));
	const struct config *cfg = h ? policy_host_config(h) : NULL;
	const char *prefix = cfg ? config_get_str(cfg, "s3_prefix") : NULL;
	struct decide_life_ctx c = { .event = event, .rec = recording, .prefix = prefix, .out = out };
	util_strlcpy(c.tmpl, DECIDE_DEFAULT_KEY_TEMPLATE, sizeof(c.tmpl));
	char err[POLICY_ERR_MAX];
	bool ok = h && (unsigned)event < POLICY_EVENT__COUNT && recording &&
		  policy_host_call(h, POLICY_KIND_LIFECYCLE, decide_lifecycle_call, &c, err,
				   sizeof(err)) == 0;
	if (!ok) {
		cJSON_Delete(out->tags);
		memset(out, 0, sizeof(*out));
		out->fallback = true;
		if (decide_expand_key(DECIDE_DEFAULT_KEY_TEMPLATE, recording, prefix, out->s3_key,
				      sizeof(out->s3_key), err, sizeof(err)) < 0)
			out->s3_key[0] = 0;
	}
	if (!out->tags)
		out->tags = cJSON_CreateObject();
}

/* ---- local retention -------------------------------------------------- */

struct decide_retention_ctx {
	const cJSON *rec;
	const struct policy_retention_facts *facts;
	struct policy_retention_result *out;
	bool flag;
};

/* Pushes the module's function 'name', or nil when the policy has none. */
static int decide_push_optional(lua_State *L, const char *name)
{
	policy_sandbox_push_module(L);                     /* mod */
	if (!lua_istable(L, -1))
		luaL_error(L, "the policy's module is gone");
	lua_pushstring(L, name);
	int t = lua_rawget(L, -2);                         /* mod value */
	lua_remove(L, -2);                                 /* value */
	return t;
}

static int decide_retention_call(lua_State *L)
{
	struct decide_retention_ctx *c = lua_touserdata(L, 1);
	const struct policy_retention_facts *f = c->facts;
	if (decide_push_optional(L, "local_retention") != LUA_TFUNCTION) {
		c->out->fallback = true;                   /* ctx value */
		return 0;
	}
	policy_edge_push_json(L, c->rec, 0);               /* ctx fn rec */
	lua_createtable(L, 0, 6);                          /* ctx fn rec facts */
	lua_pushnumber(L, f->age_days);
	lua_setfield(L, -2, "age_days");
	lua_pushinteger(L, f->size_bytes);
	lua_setfield(L, -2, "size_bytes");
	lua_pushboolean(L, f->local_only);
	lua_setfield(L, -2, "local_only");
	lua_pushinteger(L, f->disk_free_bytes);
	lua_setfield(L, -2, "disk_free_bytes");
	lua_pushinteger(L, f->disk_total_bytes);
	lua_setfield(L, -2, "disk_total_bytes");
	lua_pushnumber(L, f->disk_free_ratio);
	lua_setfield(L, -2, "disk_free_ratio");
	lua_call(L, 2, 1);                                 /* ctx answer */
	if (lua_isnil(L, 2) || (lua_isboolean(L, 2) && !lua_toboolean(L, 2)))
		return 0;
	if (!lua_istable(L, 2))
		return luaL_error(L, "local_retention returned a %s (a table, false or nil expected)",
				  luaL_typename(L, 2));
	int t = lua_getfield(L, 2, "delete");              /* ctx answer delete */
	if (t != LUA_TBOOLEAN && t != LUA_TNIL)
		return luaL_error(L, "local_retention: 'delete' must be a boolean");
	c->out->remove = lua_toboolean(L, -1);
	lua_pop(L, 1);                                     /* ctx answer */
	decide_opt_str(L, 2, "reason", c->out->reason, sizeof(c->out->reason));
	return 0;
}

void policy_local_retention(struct policy_host *h, const cJSON *recording,
			    const struct policy_retention_facts *facts, struct policy_retention_result *out)
{
	memset(out, 0, sizeof(*out));
	struct decide_retention_ctx c = { .rec = recording, .facts = facts, .out = out };
	char err[POLICY_ERR_MAX];
	if (!h || !recording || !facts ||
	    policy_host_call(h, POLICY_KIND_LIFECYCLE, decide_retention_call, &c, err, sizeof(err)) != 0) {
		memset(out, 0, sizeof(*out));
		out->fallback = true;
	}
	if (out->fallback)
		out->remove = false;
}

static int decide_local_only_call(lua_State *L)
{
	struct decide_retention_ctx *c = lua_touserdata(L, 1);
	int t = decide_push_optional(L, "delete_local_only"); /* ctx value */
	if (t != LUA_TBOOLEAN && t != LUA_TNIL)
		return luaL_error(L, "delete_local_only must be a boolean");
	c->flag = lua_toboolean(L, -1);
	return 0;
}

bool policy_lifecycle_deletes_local_only(struct policy_host *h)
{
	struct decide_retention_ctx c = { 0 };
	char err[POLICY_ERR_MAX];
	if (!h || policy_host_call(h, POLICY_KIND_LIFECYCLE, decide_local_only_call, &c, err, sizeof(err)) != 0)
		return false;
	return c.flag;
}

/* ---- sources ----------------------------------------------------------- */

struct decide_source_ctx {
	const char *room_id;
	struct policy_source *out;
};

static bool decide_args_key_ok(const char *k, size_t n)
{
	return n > 0 && n <= 64 &&
	       strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

static bool decide_args_value_ok(const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 0x20 || c == 0x7f || c == ',' || c == '=')
			return false;
	}
	return true;
}

/* Checks "k=v,k=v" (empty is fine). */
static bool decide_args_ok(const char *s)
{
	if (!*s)
		return true;
	for (const char *p = s;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (!eq || !decide_args_key_ok(p, (size_t)(eq - p)) ||
		    !decide_args_value_ok(eq + 1, len - (size_t)(eq - p) - 1))
			return false;
		if (!comma)
			return true;
		p = comma + 1;
	}
}

struct decide_arg {
	const char *k, *v;
};

static int decide_arg_cmp(const void *a, const void *b)
{
	return strcmp(((const struct decide_arg *)a)->k, ((const struct decide_arg *)b)->k);
}

/* Formats the table at 'idx' ({key = scalar}) as "k=v,k=v" in key order. */
static void decide_args_from_table(lua_State *L, int idx, char *out, size_t outlen)
{
	struct decide_arg args[32];
	int n = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {                         /* ... key value */
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "resolve: argument names must be strings");
		if (n == (int)ARRAY_SIZE(args))
			luaL_error(L, "resolve: more than %d arguments", (int)ARRAY_SIZE(args));
		int t = lua_type(L, -1);
		if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
			luaL_error(L, "resolve: argument '%s' must be a string, number or boolean",
				   lua_tostring(L, -2));
		if (t == LUA_TBOOLEAN)
			lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
		else
			lua_pushstring(L, lua_tostring(L, -1)); /* a copy: never convert the key */
		/* Keep the value alive in the table passed as upvalue-free storage:
		 * the stack, below the iteration pair. */
		lua_insert(L, -3);                         /* ... valstr key value */
		lua_pop(L, 1);                             /* ... valstr key */
		args[n].k = lua_tostring(L, -1);
		args[n].v = lua_tostring(L, -2);
		n++;
		luaL_checkstack(L, 4, "arguments");
	}
	qsort(args, (size_t)n, sizeof(args[0]), decide_arg_cmp);
	size_t len = 0;
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		size_t kl = strlen(args[i].k), vl = strlen(args[i].v);
		if (!decide_args_key_ok(args[i].k, kl) || !decide_args_value_ok(args[i].v, vl))
			luaL_error(L, "resolve: argument '%s' has a bad name or value", args[i].k);
		if (len + kl + vl + 3 > outlen)
			luaL_error(L, "resolve: arguments longer than %d bytes", (int)outlen - 1);
		len += (size_t)snprintf(out + len, outlen - len, "%s%s=%s", i ? "," : "", args[i].k,
					args[i].v);
	}
}

static int decide_source_call(lua_State *L)
{
	struct decide_source_ctx *c = lua_touserdata(L, 1);
	struct policy_source s = { .fallback = false };
	decide_push_hook(L, "resolve");                    /* ctx fn */
	lua_pushstring(L, c->room_id);                     /* ctx fn room */
	lua_call(L, 1, 2);                                 /* ctx source args */
	size_t n = 0;
	const char *src = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &n) : NULL;
	if (!src || n == 0 || n >= sizeof(s.source) ||
	    strspn(src, "abcdefghijklmnopqrstuvwxyz0123456789_") != n)
		return luaL_error(L, "resolve must return a source name ([a-z0-9_], 1-31 bytes)");
	memcpy(s.source, src, n + 1);
	if (lua_type(L, 3) == LUA_TSTRING) {
		const char *a = lua_tolstring(L, 3, &n);
		if (n >= sizeof(s.args) || strlen(a) != n || !decide_args_ok(a))
			return luaL_error(L, "resolve: arguments must be \"k=v,k=v\" (at most %d bytes)",
					  (int)sizeof(s.args) - 1);
		memcpy(s.args, a, n + 1);
	} else if (lua_istable(L, 3)) {
		decide_args_from_table(L, 3, s.args, sizeof(s.args));
	} else if (!lua_isnil(L, 3)) {
		return luaL_error(L, "resolve: arguments must be a string or a table");
	}
	*c->out = s;
	return 0;
}

void policy_resolve_source(struct policy_host *h, const char *room_id, struct policy_source *out)
{
	memset(out, 0, sizeof(*out));
	struct decide_source_ctx c = { room_id, out };
	char err[POLICY_ERR_MAX];
	int rc = h && room_id ? policy_host_call(h, POLICY_KIND_SOURCES, decide_source_call, &c, err, sizeof(err))
			      : POLICY_CALL_ABSENT;
	if (rc == 0)
		return;
	memset(out, 0, sizeof(*out));
	out->fallback = true;
	util_strlcpy(out->source, "test", sizeof(out->source));
	const struct config *cfg = h ? policy_host_config(h) : NULL;
	/* Fail closed: when sources.lua exists but cannot answer, only what the
	 * configuration says of the room is captured; a room it does not name
	 * is refused rather than recorded from the test source. */
	out->unresolved = rc != POLICY_CALL_ABSENT;
	if (!cfg || !room_id || strlen(room_id) > 128)
		return;
	char key[160];
	snprintf(key, sizeof(key), "room.%s.source", room_id);
	const char *v = config_get_str(cfg, key);
	if (v && v[0] && strlen(v) < sizeof(out->source) &&
	    strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(v)) {
		util_strlcpy(out->source, v, sizeof(out->source));
		out->unresolved = false;
	}
	snprintf(key, sizeof(key), "room.%s.args", room_id);
	v = config_get_str(cfg, key);
	if (v && strlen(v) < sizeof(out->args) && decide_args_ok(v))
		util_strlcpy(out->args, v, sizeof(out->args));
}
