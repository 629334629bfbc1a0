/* policy_sandbox: one lua_State per policy file, fenced in.
 *
 * What a policy can reach is built here from an allow-list: a few base
 * functions, string (without dump), table, math, utf8, os.time/clock/date
 * (every C function among them whose work grows with its input behind a
 * predicted-cost guard, see sandbox_guarded), the read-only `edge` table and
 * lib("name") for the helpers in <policy_dir>/lib. Library tables are
 * read-only views with locked metatables. Chunks are text only. Three
 * budgets bound every call and every load: a memory cap in the allocator, an
 * instruction count and a wall-clock deadline checked by a count hook. Once
 * a budget is exceeded the hook is re-armed to fire on every instruction and
 * raise again, so a policy that catches the error with pcall is stopped at
 * its next instruction anyway. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lualib.h>

#include "common_time.h"
#include "common_util.h"
#include "policy_internal.h"

/* Registry keys (addresses are unique) for the policy's environment, the
 * base table its globals fall back to, and the loaded lib() modules. */
static const char sandbox_key_env = 0;
static const char sandbox_key_base = 0;
static const char sandbox_key_libs = 0;
static const char sandbox_key_module = 0;

/* Library functions run in C, where the count hook cannot interrupt them:
 * a pattern match can backtrack for minutes with no quantifier at all, a
 * load() compiles a long text, a sort walks a big table. So every C
 * function a policy can reach that does work in proportion to its input is
 * guarded (sandbox_guarded): before it runs, a worst-case cost predicted
 * from its arguments' sizes must fit in what is left of the call's
 * wall-clock budget, or the call is stopped as over its time limit; after
 * it returns, the deadline is checked at once rather than at the next hook.
 * What one call may overrun is thus what the prediction under-estimates,
 * never the call's whole cost. The rates below are worst cases measured with
 * Lua 5.4 on the target box, rounded up about 2-3x for a loaded CPU. */
#define SANDBOX_NS_PER_BYTE 8.0    /* linear string work (upper, rep, format, utf8, load / 4) */
#define SANDBOX_NS_PER_STEP 4.0    /* one step of the pattern matcher's worst case */
#define SANDBOX_NS_PER_ELEM 40.0   /* one element moved, concatenated or compared by a table function */
#define SANDBOX_NS_PER_SOURCE 40.0 /* one byte of text compiled by load */
#define SANDBOX_NS_PER_STRFTIME 400.0 /* one conversion of os.date's format */

struct policy_sandbox *policy_sandbox_of(lua_State *L)
{
	void *ud = NULL;
	lua_getallocf(L, &ud);
	return ud;
}

static void sandbox_hook(lua_State *L, lua_Debug *ar);

/* The allocator: realloc with a cap. A refused allocation during a call
 * also marks the call as killed so a caught memory error cannot be retried
 * forever. */
static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct policy_sandbox *sb = ud;
	if (!ptr)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		sb->used -= osize;
		return NULL;
	}
	if (nsize > osize && sb->used + (nsize - osize) > sb->limits.max_memory) {
		if (sb->armed && !sb->killed) {
			sb->killed = "memory limit";
			if (sb->L)
				lua_sethook(sb->L, sandbox_hook, LUA_MASKCOUNT, 1);
		}
		return NULL;
	}
	void *p = realloc(ptr, nsize);
	if (!p)
		return NULL;
	sb->used = sb->used - osize + nsize;
	return p;
}

/* The count hook: charges the instructions, checks the deadline, and once
 * anything is exceeded raises on every instruction. */
static void sandbox_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	struct policy_sandbox *sb = policy_sandbox_of(L);
	if (!sb->armed)
		return;
	if (!sb->killed) {
		sb->instructions += POLICY_HOOK_EVERY;
		if (sb->instructions > sb->limits.max_instructions)
			sb->killed = "instruction limit";
		else if (time_mono_ns() > sb->deadline_ns)
			sb->killed = "time limit";
		if (!sb->killed)
			return;
		lua_sethook(L, sandbox_hook, LUA_MASKCOUNT, 1);
	}
	luaL_error(L, "policy stopped: %s exceeded", sb->killed);
}

void policy_sandbox_arm(struct policy_sandbox *sb)
{
	sb->instructions = 0;
	sb->killed = NULL;
	sb->usage_valid = false;
	sb->deadline_ns = time_mono_ns() + sb->limits.max_call_ns;
	sb->armed = true;
	lua_sethook(sb->L, sandbox_hook, LUA_MASKCOUNT, POLICY_HOOK_EVERY);
}

void policy_sandbox_disarm(struct policy_sandbox *sb)
{
	lua_sethook(sb->L, NULL, 0, 0);
	sb->armed = false;
	if (sb->killed) {
		/* Whatever the stopped call piled up goes now, not at the next call. */
		lua_gc(sb->L, LUA_GCCOLLECT);
	}
	sb->killed = NULL;
}

/* ---- the allow-listed functions ----------------------------------------- */

/* Stops the call: marks the sandbox killed (the hook then raises on every
 * instruction, so pcall cannot swallow it) and raises. */
static int sandbox_stop(lua_State *L, struct policy_sandbox *sb, const char *why)
{
	if (!sb->killed)
		sb->killed = why;
	lua_sethook(L, sandbox_hook, LUA_MASKCOUNT, 1);
	return luaL_error(L, "policy stopped: %s exceeded", sb->killed);
}

/* The worst case of Lua's matcher for a 'slen'-byte subject: every start
 * position (one when anchored) times every pattern item, times, for each
 * item that can backtrack over the subject (x*, x+, x-, %b, a back
 * reference), the subject's length again (x? doubles). Plain find is a
 * memcmp per start. */
static double sandbox_pattern_steps(const char *p, size_t plen, size_t slen, bool plain)
{
	double n = (double)slen + 1;
	if (plain)
		return n * ((double)plen + 1);
	size_t i = 0;
	double per_start = (double)plen + 1, starts = n;
	if (i < plen && p[i] == '^') {
		starts = 1;
		i++;
	}
	while (i < plen && per_start < 1e300) {
		char c = p[i];
		size_t item = i;
		if (c == '%' && i + 1 < plen) {
			char k = p[i + 1];
			if (k == 'b') {
				per_start *= n;
				i += 4;
				continue;
			}
			if (k >= '1' && k <= '9') {
				per_start *= n;
				i += 2;
				continue;
			}
			i += 2;
			if (k == 'f')
				continue; /* its set is skipped as the next item */
		} else if (c == '[') {
			i++;
			if (i < plen && p[i] == '^')
				i++;
			if (i < plen && p[i] == ']')
				i++;
			while (i < plen && p[i] != ']') {
				if (p[i] == '%')
					i++;
				i++;
			}
			i++;
		} else {
			i++;
		}
		if (i < plen && item != i) {
			if (p[i] == '*' || p[i] == '+' || p[i] == '-') {
				per_start *= n;
				i++;
			} else if (p[i] == '?') {
				per_start *= 2;
				i++;
			}
		}
	}
	return starts * per_start;
}

/* What a guarded function may cost, predicted from its arguments. */
enum sandbox_cost {
	SANDBOX_COST_BYTES,   /* in proportion to the bytes of its string arguments */
	SANDBOX_COST_REP,     /* string.rep: the bytes it would make */
	SANDBOX_COST_PATTERN, /* find, match, gmatch, gsub */
	SANDBOX_COST_TABLE,   /* insert, remove, concat, unpack: the table's length or the range */
	SANDBOX_COST_MOVE,    /* table.move: the range */
	SANDBOX_COST_SORT,    /* table.sort: n log n comparisons */
	SANDBOX_COST_DATE,    /* os.date: a strftime per byte of the format, at worst */
};

/* Longest sequence a table function may walk. A table this long does not
 * fit under the memory cap anyway; the limit matters when __len lies. */
#define SANDBOX_MAX_SEQUENCE (1 << 22)

static double sandbox_string_bytes(lua_State *L)
{
	double bytes = 0;
	for (int i = 1, n = lua_gettop(L); i <= n; i++)
		if (lua_type(L, i) == LUA_TSTRING)
			bytes += (double)lua_rawlen(L, i);
	return bytes;
}

/* The predicted worst case of the call about to run, in nanoseconds;
 * raises on arguments no policy needs (a length beyond the sequence
 * limit). */
static double sandbox_predict(lua_State *L, enum sandbox_cost kind, const char *name)
{
	switch (kind) {
	case SANDBOX_COST_BYTES:
		return (sandbox_string_bytes(L) + (double)lua_gettop(L)) * SANDBOX_NS_PER_BYTE;
	case SANDBOX_COST_REP: {
		size_t l = 0, lsep = 0;
		luaL_checklstring(L, 1, &l);
		lua_Integer n = luaL_checkinteger(L, 2);
		luaL_optlstring(L, 3, "", &lsep);
		return n > 0 ? (double)n * (double)(l + lsep + 1) * SANDBOX_NS_PER_BYTE : 0;
	}
	case SANDBOX_COST_PATTERN: {
		size_t slen = 0, plen = 0;
		luaL_checklstring(L, 1, &slen);
		const char *p = luaL_checklstring(L, 2, &plen);
		bool plain = strcmp(name, "find") == 0 && lua_toboolean(L, 4);
		double steps = sandbox_pattern_steps(p, plen, slen, plain);
		if (strcmp(name, "gsub") == 0 && lua_type(L, 3) == LUA_TSTRING)
			steps += (double)lua_rawlen(L, 3) * ((double)slen + 1); /* the replacement per match */
		return steps * SANDBOX_NS_PER_STEP;
	}
	case SANDBOX_COST_TABLE:
	case SANDBOX_COST_SORT: {
		luaL_checktype(L, 1, LUA_TTABLE);
		lua_Integer n = luaL_len(L, 1);
		if (n > SANDBOX_MAX_SEQUENCE || n < 0)
			luaL_error(L, "table.%s: a length of %I is beyond what policies may use", name,
				   (LUAI_UACINT)n);
		double elems = (double)n + 1;
		bool concat = strcmp(name, "concat") == 0;
		if (concat || strcmp(name, "unpack") == 0) {
			lua_Integer i = luaL_optinteger(L, concat ? 3 : 2, 1);
			lua_Integer j = luaL_optinteger(L, concat ? 4 : 3, n);
			if (j >= i && (lua_Unsigned)j - (lua_Unsigned)i >= SANDBOX_MAX_SEQUENCE)
				luaL_error(L, "table.%s: range too long for a policy", name);
			elems = j >= i ? (double)(j - i) + 1 : 1;
			if (concat) /* the separator goes between every two */
				elems *= 1 + (lua_type(L, 2) == LUA_TSTRING ? (double)lua_rawlen(L, 2) / 8 : 0);
		}
		if (kind == SANDBOX_COST_SORT)
			elems *= elems > 2 ? log2(elems) : 1;
		return elems * SANDBOX_NS_PER_ELEM;
	}
	case SANDBOX_COST_DATE:
		return (lua_type(L, 1) == LUA_TSTRING ? (double)lua_rawlen(L, 1) : 0) * SANDBOX_NS_PER_STRFTIME;
	case SANDBOX_COST_MOVE: {
		lua_Integer f = luaL_checkinteger(L, 2);
		lua_Integer e = luaL_checkinteger(L, 3);
		if (e >= f && (lua_Unsigned)e - (lua_Unsigned)f >= SANDBOX_MAX_SEQUENCE)
			luaL_error(L, "table.move: range too long for a policy");
		return e >= f ? ((double)(e - f) + 1) * SANDBOX_NS_PER_ELEM : 0;
	}
	}
	return 0;
}

/* Before a guarded call: stops it when the deadline has passed or its
 * predicted cost does not fit in what is left. */
static void sandbox_before(lua_State *L, double predicted_ns)
{
	struct policy_sandbox *sb = policy_sandbox_of(L);
	if (!sb->armed)
		return;
	if (sb->killed)
		sandbox_stop(L, sb, sb->killed);
	int64_t left = sb->deadline_ns - time_mono_ns();
	if (left <= 0 || predicted_ns > (double)left)
		sandbox_stop(L, sb, "time limit");
}

/* After a guarded call: the deadline, now rather than at the next hook. */
void policy_sandbox_check_deadline(lua_State *L)
{
	struct policy_sandbox *sb = policy_sandbox_of(L);
	if (sb->armed && !sb->killed && time_mono_ns() > sb->deadline_ns)
		sandbox_stop(L, sb, "time limit");
}

/* A library function behind the guard. Upvalue 1 is the real function,
 * 2 its name, 3 its enum sandbox_cost. */
static int sandbox_guarded(lua_State *L)
{
	const char *name = lua_tostring(L, lua_upvalueindex(2));
	enum sandbox_cost kind = (enum sandbox_cost)lua_tointeger(L, lua_upvalueindex(3));
	if (kind == SANDBOX_COST_REP) {
		/* The standard rep loops n times even when every copy is empty. */
		size_t l = 0, lsep = 0;
		luaL_checklstring(L, 1, &l);
		lua_Integer n = luaL_checkinteger(L, 2);
		luaL_optlstring(L, 3, "", &lsep);
		if (n > 0 && l + lsep == 0) {
			lua_pushliteral(L, "");
			return 1;
		}
	}
	sandbox_before(L, sandbox_predict(L, kind, name));
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	policy_sandbox_check_deadline(L);
	return lua_gettop(L);
}

/* setmetatable that refuses __gc: a finalizer would run Lua code outside
 * any call's budgets (at collection or at close). */
static int sandbox_setmetatable(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	if (lua_type(L, 2) == LUA_TTABLE) {
		if (lua_getfield(L, 2, "__gc") != LUA_TNIL)
			return luaL_error(L, "setmetatable: __gc is not allowed in policies");
		lua_pop(L, 1);
	} else if (!lua_isnil(L, 2)) {
		return luaL_typeerror(L, 2, "nil or table");
	}
	if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
		return luaL_error(L, "cannot change a protected metatable");
	lua_settop(L, 2);
	lua_setmetatable(L, 1);
	return 1;
}

/* collectgarbage("count") only: a policy may look, not steer. */
static int sandbox_collectgarbage(lua_State *L)
{
	const char *opt = luaL_optstring(L, 1, "count");
	if (strcmp(opt, "count") != 0)
		return luaL_error(L, "collectgarbage: only \"count\" is allowed in policies");
	int kb = lua_gc(L, LUA_GCCOUNT);
	int b = lua_gc(L, LUA_GCCOUNTB);
	lua_pushnumber(L, (lua_Number)kb + (lua_Number)b / 1024.0);
	return 1;
}

/* load(text[, chunkname[, mode[, env]]]): text chunks only; the environment
 * is the given table or the policy's own. A function reader is refused. */
static int sandbox_load(lua_State *L)
{
	size_t len = 0;
	const char *src = lua_tolstring(L, 1, &len);
	if (!src || lua_type(L, 1) != LUA_TSTRING)
		return luaL_error(L, "load: only source text is accepted in policies");
	const char *name = luaL_optstring(L, 2, "=(load)");
	const char *mode = luaL_optstring(L, 3, "t");
	if (strcmp(mode, "t") != 0)
		return luaL_error(L, "load: binary chunks are not allowed in policies");
	if (len > (256 << 10))
		return luaL_error(L, "load: source text longer than 256 KiB");
	if (len > 0 && src[0] == LUA_SIGNATURE[0])
		return luaL_error(L, "load: binary chunks are not allowed in policies");
	int env = lua_istable(L, 4) ? 4 : 0;
	if (!env && !lua_isnoneornil(L, 4))
		return luaL_typeerror(L, 4, "table");
	sandbox_before(L, (double)len * SANDBOX_NS_PER_SOURCE);
	int rc = luaL_loadbufferx(L, src, len, name, "t");
	policy_sandbox_check_deadline(L);
	if (rc != LUA_OK) {
		lua_pushnil(L);
		lua_insert(L, -2);
		return 2; /* nil, message */
	}
	if (env)
		lua_pushvalue(L, 4);
	else
		lua_rawgetp(L, LUA_REGISTRYINDEX, &sandbox_key_env);
	lua_setupvalue(L, -2, 1);
	return 1;
}

/* xpcall's message handler runs inside the failing call, and when the
 * failure is a raise from the count hook it would run with hooks disabled:
 * a handler that loops would never be stopped. So the policy's handler is
 * wrapped: once a budget is exceeded the error passes through untouched and
 * no policy code runs. Upvalue 1 is the policy's handler. */
static int sandbox_xpcall_handler(lua_State *L)
{
	if (policy_sandbox_of(L)->killed)
		return 1;
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

static int sandbox_xpcall_finish(lua_State *L, int status, lua_KContext extra)
{
	if (status != LUA_OK && status != LUA_YIELD) {
		lua_pushboolean(L, 0);
		lua_pushvalue(L, -2);
		return 2;
	}
	return lua_gettop(L) - (int)extra;
}

/* xpcall(f, handler, ...): as the standard one, with the wrapped handler. */
static int sandbox_xpcall(lua_State *L)
{
	int n = lua_gettop(L);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushvalue(L, 2);
	lua_pushcclosure(L, sandbox_xpcall_handler, 1);
	lua_replace(L, 2);                                 /* f handler' args... */
	lua_pushboolean(L, 1);
	lua_pushvalue(L, 1);
	lua_rotate(L, 3, 2);                               /* f handler' true f args... */
	int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, sandbox_xpcall_finish);
	return sandbox_xpcall_finish(L, status, 2);
}

/* print(...) goes to the log at INFO under the policy's name. */
static int sandbox_print(lua_State *L)
{
	struct policy_sandbox *sb = policy_sandbox_of(L);
	int n = lua_gettop(L);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	LOG_INFO(sb->log, "%.1000s", lua_tostring(L, -1));
	return 0;
}

/* Pushes a new environment table whose reads fall back to the base table. */
static void sandbox_push_env(lua_State *L)
{
	lua_newtable(L);                                  /* env */
	lua_newtable(L);                                  /* env mt */
	lua_rawgetp(L, LUA_REGISTRYINDEX, &sandbox_key_base);
	lua_setfield(L, -2, "__index");
	lua_pushliteral(L, "locked");
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);                          /* env */
	lua_pushvalue(L, -1);
	lua_setfield(L, -2, "_G");                        /* env */
}

/* Reads <dir>/lib/<name>.lua into a userdata buffer (so nothing leaks if a
 * later step raises) and pushes it; its length goes to '*len'. */
static const char *sandbox_read_lib(lua_State *L, const char *path, size_t *len)
{
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
		luaL_error(L, "lib: cannot open %s", path);
		return NULL;
	}
	if (st.st_size > (1 << 20)) {
		luaL_error(L, "lib: %s is larger than 1 MiB", path);
		return NULL;
	}
	char *buf = lua_newuserdatauv(L, (size_t)st.st_size + 1, 0);
	FILE *f = fopen(path, "rb");
	if (!f) {
		luaL_error(L, "lib: cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	size_t got = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	buf[got] = 0;
	*len = got;
	return buf;
}

/* lib("name"): loads <policy_dir>/lib/<name>.lua once per state, in its own
 * environment over the same base, and returns what it returned. */
static int sandbox_lib(lua_State *L)
{
	struct policy_sandbox *sb = policy_sandbox_of(L);
	const char *name = luaL_checkstring(L, 1);
	size_t n = strlen(name);
	if (n == 0 || n > 64 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != n)
		return luaL_error(L, "lib: '%s' is not a helper name ([a-z0-9_]+)", name);
	lua_settop(L, 1);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &sandbox_key_libs); /* name libs */
	if (lua_getfield(L, 2, name) != LUA_TNIL)              /* name libs mod */
		return 1;
	lua_pop(L, 1);                                         /* name libs */
	char path[POLICY_PATH_MAX];
	snprintf(path, sizeof(path), "%s/lib/%s.lua", policy_host_dir(sb->host), name);
	size_t len = 0;
	const char *src = sandbox_read_lib(L, path, &len);     /* name libs buf */
	char chunk[96];
	snprintf(chunk, sizeof(chunk), "@lib/%s.lua", name);
	if (luaL_loadbufferx(L, src, len, chunk, "t") != LUA_OK) /* name libs buf fn|msg */
		return lua_error(L);
	sandbox_push_env(L);                                   /* name libs buf fn env */
	lua_setupvalue(L, -2, 1);                              /* name libs buf fn */
	lua_call(L, 0, 1);                                     /* name libs buf mod */
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, 2, name);                              /* name libs buf mod */
	return 1;
}

/* Leaves a read-only view of the table at the top in its place: reads go
 * through, writes raise, the metatable is locked. */
static int sandbox_readonly_newindex(lua_State *L)
{
	return luaL_error(L, "attempt to modify a read-only table");
}

static void sandbox_make_readonly(lua_State *L)
{
	/* real */
	lua_newtable(L);                                  /* real view */
	lua_newtable(L);                                  /* real view mt */
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, sandbox_readonly_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushliteral(L, "locked");
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);                          /* real view */
	lua_remove(L, -2);                                /* view */
}

/* Copies the named fields of the table at 'src' into a new table, leaving
 * a read-only view of it on the stack. */
static void sandbox_push_subset(lua_State *L, int src, const char *const *names)
{
	lua_newtable(L);
	for (const char *const *n = names; *n; n++) {
		lua_getfield(L, src, *n);
		lua_setfield(L, -2, *n);
	}
	sandbox_make_readonly(L);
}

/* Replaces each function 'names' lists in the library table at index 1 by
 * a closure of sandbox_guarded with the original, its name and 'kind' as
 * upvalues. The stack is left as it was. */
static void sandbox_wrap_fields(lua_State *L, const char *const *names, enum sandbox_cost kind)
{
	for (const char *const *n = names; *n; n++) {
		lua_getfield(L, 1, *n);                      /* lib orig */
		lua_pushstring(L, *n);                       /* lib orig name */
		lua_pushinteger(L, kind);                    /* lib orig name kind */
		lua_pushcclosure(L, sandbox_guarded, 3);     /* lib wrapped */
		lua_setfield(L, 1, *n);                      /* lib */
	}
}

static const char *const sandbox_base_names[] = {
	"assert", "error", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget", "rawlen",
	"select", "tonumber", "tostring", "type", "getmetatable", "_VERSION", NULL,
};

static const char *const sandbox_os_names[] = { "time", "clock", "date", NULL };

/* Every C function of the allowed libraries whose work grows with its
 * input, by how its cost is predicted. */
static const char *const sandbox_pattern_names[] = { "find", "match", "gmatch", "gsub", NULL };
static const char *const sandbox_string_linear[] = { "byte", "char", "format", "len", "lower",
						     "upper", "reverse", "sub", "pack", "packsize",
						     "unpack", NULL };
static const char *const sandbox_string_rep_name[] = { "rep", NULL };
static const char *const sandbox_table_walk[] = { "insert", "remove", "concat", "unpack", NULL };
static const char *const sandbox_table_move_name[] = { "move", NULL };
static const char *const sandbox_table_sort_name[] = { "sort", NULL };
static const char *const sandbox_utf8_linear[] = { "char", "codepoint", "len", "offset", "codes", NULL };
static const char *const sandbox_base_linear[] = { "tostring", "tonumber", NULL };
static const char *const sandbox_os_linear[] = { "date", NULL };

/* Builds the base table every environment falls back to. Runs protected
 * (it allocates). */
static int sandbox_build(lua_State *L)
{
	luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
	luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
	luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
	luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
	luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
	luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 1);
	lua_settop(L, 0);

	/* The real string table is the strings' __index: fix it in place. */
	lua_getglobal(L, LUA_STRLIBNAME);                 /* string */
	lua_pushnil(L);
	lua_setfield(L, 1, "dump");
	sandbox_wrap_fields(L, sandbox_pattern_names, SANDBOX_COST_PATTERN);
	sandbox_wrap_fields(L, sandbox_string_linear, SANDBOX_COST_BYTES);
	sandbox_wrap_fields(L, sandbox_string_rep_name, SANDBOX_COST_REP);
	lua_pushliteral(L, "");                           /* string "" */
	lua_getmetatable(L, -1);                          /* string "" strmt */
	lua_pushliteral(L, "locked");
	lua_setfield(L, -2, "__metatable");
	lua_settop(L, 0);

	lua_getglobal(L, LUA_TABLIBNAME);                 /* table */
	sandbox_wrap_fields(L, sandbox_table_walk, SANDBOX_COST_TABLE);
	sandbox_wrap_fields(L, sandbox_table_move_name, SANDBOX_COST_MOVE);
	sandbox_wrap_fields(L, sandbox_table_sort_name, SANDBOX_COST_SORT);
	lua_settop(L, 0);
	lua_getglobal(L, LUA_UTF8LIBNAME);                /* utf8 */
	sandbox_wrap_fields(L, sandbox_utf8_linear, SANDBOX_COST_BYTES);
	lua_settop(L, 0);
	lua_getglobal(L, LUA_OSLIBNAME);                  /* os */
	sandbox_wrap_fields(L, sandbox_os_linear, SANDBOX_COST_DATE);
	lua_settop(L, 0);
	lua_pushglobaltable(L);                           /* G */
	sandbox_wrap_fields(L, sandbox_base_linear, SANDBOX_COST_BYTES);
	lua_settop(L, 0);

	lua_pushglobaltable(L);                           /* G */
	lua_newtable(L);                                  /* G base */
	for (const char *const *n = sandbox_base_names; *n; n++) {
		lua_getfield(L, 1, *n);
		lua_setfield(L, 2, *n);
	}
	lua_pushcfunction(L, sandbox_setmetatable);
	lua_setfield(L, 2, "setmetatable");
	lua_pushcfunction(L, sandbox_xpcall);
	lua_setfield(L, 2, "xpcall");
	lua_pushcfunction(L, sandbox_collectgarbage);
	lua_setfield(L, 2, "collectgarbage");
	lua_pushcfunction(L, sandbox_load);
	lua_setfield(L, 2, "load");
	lua_pushcfunction(L, sandbox_print);
	lua_setfield(L, 2, "print");
	lua_pushcfunction(L, sandbox_lib);
	lua_setfield(L, 2, "lib");

	static const char *const libs[] = { LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
					    LUA_UTF8LIBNAME, NULL };
	for (const char *const *n = libs; *n; n++) {
		lua_getfield(L, 1, *n);                   /* G base lib */
		sandbox_make_readonly(L);                 /* G base view */
		lua_setfield(L, 2, *n);                   /* G base */
	}
	lua_getfield(L, 1, LUA_OSLIBNAME);                /* G base os */
	sandbox_push_subset(L, 3, sandbox_os_names);      /* G base os view */
	lua_setfield(L, 2, LUA_OSLIBNAME);                /* G base os */
	lua_pop(L, 1);                                    /* G base */
	policy_edge_push(L);                              /* G base edge */
	lua_setfield(L, 2, "edge");                       /* G base */

	/* The real globals hold nothing a stray reference could use. */
	static const char *const drop[] = { "dofile", "loadfile", "load", "require", "collectgarbage",
					    "os", "print", "xpcall", NULL };
	for (const char *const *n = drop; *n; n++) {
		lua_pushnil(L);
		lua_setfield(L, 1, *n);
	}

	lua_pushvalue(L, 2);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &sandbox_key_base);
	lua_newtable(L);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &sandbox_key_libs);
	sandbox_push_env(L);                              /* G base env */
	lua_rawsetp(L, LUA_REGISTRYINDEX, &sandbox_key_env);
	lua_settop(L, 0);
	return 0;
}

/* Copies the error at the top of the stack (or why the call was stopped)
 * into 'err'. */
static void sandbox_error_text(struct policy_sandbox *sb, char *err, size_t errlen)
{
	lua_State *L = sb->L;
	if (sb->killed)
		snprintf(err, errlen, "policy stopped: %s exceeded", sb->killed);
	else if (lua_type(L, -1) == LUA_TSTRING)
		snprintf(err, errlen, "%s", lua_tostring(L, -1));
	else
		snprintf(err, errlen, "error object is a %s value", luaL_typename(L, -1));
}

int policy_sandbox_open(struct policy_sandbox *sb, struct policy_host *host, const char *name,
			const struct log_handle *log, const struct policy_limits *limits,
			char *err, size_t errlen)
{
	memset(sb, 0, sizeof(*sb));
	sb->host = host;
	sb->name = name;
	sb->log = log;
	sb->limits = *limits;
	lua_State *L = lua_newstate(sandbox_alloc, sb);
	if (!L) {
		snprintf(err, errlen, "%s: cannot create a Lua state", name);
		return -1;
	}
	sb->L = L;
	lua_pushcfunction(L, sandbox_build);
	if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
		sandbox_error_text(sb, err, errlen);
		lua_close(L);
		sb->L = NULL;
		return -1;
	}
	lua_gc(L, LUA_GCGEN, 0, 0);
	return 0;
}

void policy_sandbox_close(struct policy_sandbox *sb)
{
	if (!sb->L)
		return;
	policy_sandbox_arm(sb);
	lua_close(sb->L);
	sb->L = NULL;
	sb->armed = false;
}

/* What sandbox_load_chunk needs. */
struct sandbox_load_ctx {
	const char *chunkname;
	const char *src;
	size_t len;
};

/* Compiles and runs the chunk; keeps what it returned in the registry. */
static int sandbox_load_chunk(lua_State *L)
{
	struct sandbox_load_ctx *c = lua_touserdata(L, 1);
	if (luaL_loadbufferx(L, c->src, c->len, c->chunkname, "t") != LUA_OK) /* ctx msg */
		return lua_error(L);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &sandbox_key_env);   /* ctx fn env */
	lua_setupvalue(L, -2, 1);                              /* ctx fn */
	lua_call(L, 0, 1);                                     /* ctx result */
	lua_rawsetp(L, LUA_REGISTRYINDEX, &sandbox_key_module); /* ctx */
	return 0;
}

int policy_sandbox_load(struct policy_sandbox *sb, const char *chunkname, const char *src,
			size_t len, char *err, size_t errlen)
{
	if (len > 0 && src[0] == LUA_SIGNATURE[0]) {
		snprintf(err, errlen, "%s: binary chunks are not allowed", chunkname + 1);
		return -1;
	}
	struct sandbox_load_ctx c = { .chunkname = chunkname, .src = src, .len = len };
	bool killed = false;
	return policy_sandbox_run(sb, sandbox_load_chunk, &c, &killed, err, errlen);
}

void policy_sandbox_push_module(lua_State *L)
{
	lua_rawgetp(L, LUA_REGISTRYINDEX, &sandbox_key_module);
}

int policy_sandbox_run(struct policy_sandbox *sb, lua_CFunction fn, void *ctx, bool *killed,
		       char *err, size_t errlen)
{
	lua_State *L = sb->L;
	int top = lua_gettop(L);
	int rc = 0;
	*killed = false;
	policy_sandbox_arm(sb);
	lua_pushcfunction(L, fn);
	lua_pushlightuserdata(L, ctx);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK || sb->killed) {
		sandbox_error_text(sb, err, errlen);
		*killed = sb->killed != NULL;
		rc = -1;
	}
	lua_settop(L, top);
	policy_sandbox_disarm(sb);
	return rc;
}
