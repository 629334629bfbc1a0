/* policy_edge: the `edge` table, the only door from a policy to the
 * appliance, and the conversions of values crossing the boundary.
 *
 * Everything `edge` offers is listed in policy_edge_fns below and nowhere
 * else; tests/policies/fake_edge.lua mirrors that list for the specs and a
 * unit test checks the two match. State queries go to the provider the
 * recorder registered; configuration reads are limited to an allow-list so
 * secrets (jwt_secret, s3.secret_key) never reach a policy. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include <lauxlib.h>

#include "common_time.h"
#include "common_util.h"
#include "config.h"
#include "policy_internal.h"

/* ---- values crossing the boundary ------------------------------------- */

/* A cJSON tree owned by a userdata, so it is freed by the collector if a
 * raise unwinds past the C code that made it. */
struct edge_json_box {
	cJSON *j;
};

static int edge_json_box_gc(lua_State *L)
{
	struct edge_json_box *box = lua_touserdata(L, 1);
	if (box) {
		cJSON_Delete(box->j);
		box->j = NULL;
	}
	return 0;
}

/* Pushes an empty box (the caller then stores its tree in it). */
static struct edge_json_box *edge_push_box(lua_State *L)
{
	struct edge_json_box *box = lua_newuserdatauv(L, sizeof(*box), 0);
	box->j = NULL;
	if (luaL_newmetatable(L, "edgerec.policy.json_box")) {
		lua_pushcfunction(L, edge_json_box_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	return box;
}

void policy_edge_push_json(lua_State *L, const cJSON *j, int depth)
{
	if (depth > POLICY_MAX_DEPTH)
		luaL_error(L, "value nested deeper than %d levels", POLICY_MAX_DEPTH);
	luaL_checkstack(L, 4, "policy value");
	if (!j || cJSON_IsNull(j) || cJSON_IsInvalid(j)) {
		lua_pushnil(L);
	} else if (cJSON_IsBool(j)) {
		lua_pushboolean(L, cJSON_IsTrue(j));
	} else if (cJSON_IsNumber(j)) {
		double d = j->valuedouble;
		if (d == floor(d) && fabs(d) < 9007199254740992.0)
			lua_pushinteger(L, (lua_Integer)d);
		else
			lua_pushnumber(L, d);
	} else if (cJSON_IsString(j)) {
		/* pushlstring: lua_pushstring's address cache costs a strcmp per
		 * call, more than the strlen here. */
		const char *v = j->valuestring ? j->valuestring : "";
		lua_pushlstring(L, v, strlen(v));
	} else if (cJSON_IsArray(j)) {
		lua_createtable(L, cJSON_GetArraySize(j), 0);
		lua_Integer i = 1;
		for (const cJSON *c = j->child; c; c = c->next, i++) {
			policy_edge_push_json(L, c, depth + 1);
			lua_rawseti(L, -2, i);
		}
	} else if (cJSON_IsObject(j)) {
		lua_createtable(L, 0, cJSON_GetArraySize(j));
		for (const cJSON *c = j->child; c; c = c->next) {
			if (!c->string)
				continue;
			lua_pushlstring(L, c->string, strlen(c->string));
			policy_edge_push_json(L, c, depth + 1);
			lua_rawset(L, -3);
		}
	} else {
		lua_pushnil(L);
	}
}

void policy_edge_push_claims(lua_State *L, const cJSON *claims)
{
	if (cJSON_IsObject(claims))
		policy_edge_push_json(L, claims, 0);
	else
		lua_newtable(L);
}

static bool edge_tag_key_ok(const char *k, size_t n)
{
	return n > 0 && n <= 64 &&
	       strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

cJSON *policy_edge_table_to_tags(lua_State *L, int idx, const char *what)
{
	idx = lua_absindex(L, idx);
	luaL_checkstack(L, 4, what);
	struct edge_json_box *box = edge_push_box(L);          /* box */
	box->j = cJSON_CreateObject();
	if (!box->j)
		luaL_error(L, "%s: out of memory", what);
	int n = 0;
	lua_pushnil(L);                                        /* box nil */
	while (lua_next(L, idx)) {                             /* box key value */
		size_t klen = 0;
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "%s: keys must be strings", what);
		const char *k = lua_tolstring(L, -2, &klen);
		if (!edge_tag_key_ok(k, klen) || strlen(k) != klen)
			luaL_error(L, "%s: bad key '%s' (1-64 of [A-Za-z0-9_.-])", what, k);
		if (++n > 64)
			luaL_error(L, "%s: more than 64 entries", what);
		cJSON *v = NULL;
		switch (lua_type(L, -1)) {
		case LUA_TSTRING: {
			size_t vlen = 0;
			const char *s = lua_tolstring(L, -1, &vlen);
			if (vlen > 1024 || strlen(s) != vlen)
				luaL_error(L, "%s: value of '%s' is longer than 1024 bytes or holds NUL",
					   what, k);
			v = cJSON_CreateString(s);
			break;
		}
		case LUA_TNUMBER: {
			double d = lua_tonumber(L, -1);
			if (!isfinite(d))
				luaL_error(L, "%s: value of '%s' is not a finite number", what, k);
			v = cJSON_CreateNumber(d);
			break;
		}
		case LUA_TBOOLEAN:
			v = cJSON_CreateBool(lua_toboolean(L, -1));
			break;
		default:
			luaL_error(L, "%s: value of '%s' is a %s (string, number or boolean expected)",
				   what, k, luaL_typename(L, -1));
		}
		if (!v || !cJSON_AddItemToObject(box->j, k, v)) {
			cJSON_Delete(v);
			luaL_error(L, "%s: out of memory", what);
		}
		lua_pop(L, 1);                                 /* box key */
	}                                                      /* box */
	cJSON *out = box->j;
	box->j = NULL;
	lua_pop(L, 1);
	return out;
}

/* ---- the edge functions ------------------------------------------------ */

/* A string argument that is present, non-empty and short. */
static const char *edge_check_id(lua_State *L, int arg, const char *fname)
{
	size_t n = 0;
	const char *s = luaL_checklstring(L, arg, &n);
	if (n == 0 || n > 256 || strlen(s) != n)
		luaL_error(L, "edge.%s: argument %d must be a non-empty string of at most 256 bytes",
			   fname, arg);
	return s;
}

/* edge.log(level, message): level is "error", "warn", "info" or "debug". */
static int edge_log(lua_State *L)
{
	struct policy_sandbox *sb = policy_sandbox_of(L);
	const char *level = luaL_checkstring(L, 1);
	const char *msg = luaL_checkstring(L, 2);
	if (strcmp(level, "error") == 0)
		LOG_ERROR(sb->log, "%.1000s", msg);
	else if (strcmp(level, "warn") == 0)
		LOG_WARN(sb->log, "%.1000s", msg);
	else if (strcmp(level, "info") == 0)
		LOG_INFO(sb->log, "%.1000s", msg);
	else if (strcmp(level, "debug") == 0)
		LOG_DEBUG(sb->log, "%.1000s", msg);
	else
		return luaL_error(L, "edge.log: level '%s' is not error, warn, info or debug", level);
	return 0;
}

/* edge.now(): wall-clock seconds since the epoch, with a fraction. */
static int edge_now(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)time_wall_ns() / 1e9);
	return 1;
}

static const char *const edge_config_keys[] = {
	"storage_backend", "local_storage_path", "s3_bucket", "s3_prefix",
	"max_recording_duration", "max_concurrent_recordings", "default_format",
	"default_quality", "enable_transcoding", "rtp.port_min", "rtp.port_max", NULL,
};

/* True for the keys a policy may read: the recording options of SPEC §6,
 * the RTP port range, policy.param.*, room.<id>.source and room.<id>.args. */
static bool edge_config_readable(const char *key)
{
	for (const char *const *k = edge_config_keys; *k; k++)
		if (strcmp(*k, key) == 0)
			return true;
	if (strncmp(key, "policy.param.", 13) == 0 && key[13])
		return true;
	if (strncmp(key, "room.", 5) == 0) {
		const char *seg = key + 5, *dot = strchr(seg, '.');
		if (dot && dot > seg && (strcmp(dot, ".source") == 0 || strcmp(dot, ".args") == 0))
			return true;
	}
	return false;
}

/* edge.config(key): the value as a string, or nil when unset. */
static int edge_config(lua_State *L)
{
	struct policy_sandbox *sb = policy_sandbox_of(L);
	const char *key = luaL_checkstring(L, 1);
	if (!edge_config_readable(key))
		return luaL_error(L, "edge.config: '%s' is not readable by policies", key);
	const struct config *cfg = policy_host_config(sb->host);
	const char *v = cfg ? config_get_str(cfg, key) : NULL;
	if (v)
		lua_pushstring(L, v);
	else
		lua_pushnil(L);
	return 1;
}

/* Pushes the array a provider query returned (boxed first, so it is freed
 * whatever happens next). */
static int edge_push_list(lua_State *L, struct edge_json_box *box, const char *fname)
{
	if (!box->j)
		return luaL_error(L, "edge.%s: state unavailable", fname);
	if (!cJSON_IsArray(box->j))
		return luaL_error(L, "edge.%s: state returned something other than a list", fname);
	policy_edge_push_json(L, box->j, 0);
	return 1;
}

/* edge.user_recordings(user_id[, status]): the user's state objects. */
static int edge_user_recordings(lua_State *L)
{
	struct policy_sandbox *sb = policy_sandbox_of(L);
	const char *user = edge_check_id(L, 1, "user_recordings");
	const char *status = luaL_optstring(L, 2, NULL);
	struct policy_provider p;
	policy_host_provider(sb->host, &p);
	if (!p.user_recordings)
		return luaL_error(L, "edge.user_recordings: not available");
	struct edge_json_box *box = edge_push_box(L);
	box->j = p.user_recordings(p.opaque, user, status);
	policy_sandbox_check_deadline(L);
	return edge_push_list(L, box, "user_recordings");
}

/* edge.room_recordings(room_id): the room's state objects. */
static int edge_room_recordings(lua_State *L)
{
	struct policy_sandbox *sb = policy_sandbox_of(L);
	const char *room = edge_check_id(L, 1, "room_recordings");
	struct policy_provider p;
	policy_host_provider(sb->host, &p);
	if (!p.room_recordings)
		return luaL_error(L, "edge.room_recordings: not available");
	struct edge_json_box *box = edge_push_box(L);
	box->j = p.room_recordings(p.opaque, room);
	policy_sandbox_check_deadline(L);
	return edge_push_list(L, box, "room_recordings");
}

static int edge_push_count(lua_State *L, long long n, const char *fname)
{
	policy_sandbox_check_deadline(L); /* the query may have taken long */
	if (n < 0)
		return luaL_error(L, "edge.%s: state unavailable", fname);
	lua_pushinteger(L, (lua_Integer)n);
	return 1;
}

/* edge.active_count(): recordings live on every node. */
static int edge_active_count(lua_State *L)
{
	struct policy_sandbox *sb = policy_sandbox_of(L);
	struct policy_provider p;
	policy_host_provider(sb->host, &p);
	if (!p.active_count)
		return luaL_error(L, "edge.active_count: not available");
	return edge_push_count(L, p.active_count(p.opaque), "active_count");
}

/* edge.user_bytes_stored(user_id): bytes of the user's finished files. */
static int edge_user_bytes_stored(lua_State *L)
{
	struct policy_sandbox *sb = policy_sandbox_of(L);
	const char *user = edge_check_id(L, 1, "user_bytes_stored");
	struct policy_provider p;
	policy_host_provider(sb->host, &p);
	if (!p.user_bytes_stored)
		return luaL_error(L, "edge.user_bytes_stored: not available");
	return edge_push_count(L, p.user_bytes_stored(p.opaque, user), "user_bytes_stored");
}

/* edge.disk_free_bytes(): free bytes where recordings are written. */
static int edge_disk_free_bytes(lua_State *L)
{
	struct policy_sandbox *sb = policy_sandbox_of(L);
	struct policy_provider p;
	policy_host_provider(sb->host, &p);
	if (!p.disk_free_bytes)
		return luaL_error(L, "edge.disk_free_bytes: not available");
	return edge_push_count(L, p.disk_free_bytes(p.opaque), "disk_free_bytes");
}

/* Pushes the user's live (admitted) recordings, or with 'seconds' the
 * seconds they recorded in the current UTC day (as lib/time.lua's
 * seconds_today counts them). Both come from one provider query on the
 * state store's per-user indexes (the live set, the per-day usage): cheap
 * whatever the user's history, and asked once per call and user. */
static int edge_push_usage(lua_State *L, const char *fname, bool seconds)
{
	struct policy_sandbox *sb = policy_sandbox_of(L);
	const char *user = edge_check_id(L, 1, fname);
	if (!sb->usage_valid || strcmp(sb->usage_user, user) != 0) {
		struct policy_provider p;
		policy_host_provider(sb->host, &p);
		if (!p.user_usage)
			return luaL_error(L, "edge.%s: not available", fname);
		long long live = 0;
		double secs = 0;
		int rc = p.user_usage(p.opaque, user, &live, &secs);
		policy_sandbox_check_deadline(L);
		if (rc < 0)
			return luaL_error(L, "edge.%s: state unavailable", fname);
		util_strlcpy(sb->usage_user, user, sizeof(sb->usage_user));
		sb->usage_live = live;
		sb->usage_seconds = secs;
		sb->usage_valid = true;
	}
	lua_pushinteger(L, seconds ? (lua_Integer)sb->usage_seconds : (lua_Integer)sb->usage_live);
	return 1;
}

/* edge.user_live_count(user_id) */
static int edge_user_live_count(lua_State *L)
{
	return edge_push_usage(L, "user_live_count", false);
}

/* edge.user_seconds_today(user_id) */
static int edge_user_seconds_today(lua_State *L)
{
	return edge_push_usage(L, "user_seconds_today", true);
}

/* The registration table: everything `edge` offers, in one place. */
static const luaL_Reg policy_edge_fns[] = {
	{ "log", edge_log },
	{ "now", edge_now },
	{ "config", edge_config },
	{ "user_recordings", edge_user_recordings },
	{ "room_recordings", edge_room_recordings },
	{ "active_count", edge_active_count },
	{ "user_bytes_stored", edge_user_bytes_stored },
	{ "disk_free_bytes", edge_disk_free_bytes },
	{ "user_live_count", edge_user_live_count },
	{ "user_seconds_today", edge_user_seconds_today },
	{ NULL, NULL },
};

static int edge_readonly_newindex(lua_State *L)
{
	return luaL_error(L, "edge is read-only");
}

void policy_edge_push(lua_State *L)
{
	luaL_newlib(L, policy_edge_fns);                   /* fns */
	lua_newtable(L);                                   /* fns view */
	lua_newtable(L);                                   /* fns view mt */
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, edge_readonly_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushliteral(L, "locked");
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);                           /* fns view */
	lua_remove(L, -2);                                 /* view */
}

static const char *edge_names[ARRAY_SIZE(policy_edge_fns)];
static pthread_once_t edge_names_once = PTHREAD_ONCE_INIT;

static void edge_names_fill(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(policy_edge_fns); i++)
		edge_names[i] = policy_edge_fns[i].name;
}

const char *const *policy_edge_names(void)
{
	pthread_once(&edge_names_once, edge_names_fill);
	return edge_names;
}
