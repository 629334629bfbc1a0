/* state_store: the recording store on Redis: the connection pool, the Lua
 * scripts (write, admission, release), reads and listings, and the retry
 * path that keeps writes while Redis is unreachable. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common_time.h"
#include "common_util.h"
#include "state_internal.h"

static struct log_handle log_state = LOG_HANDLE("state");

#define STATE_CONNECT_TIMEOUT_MS 500
#define STATE_COMMAND_TIMEOUT_MS 2000
#define STATE_DOWN_HOLD_MS 200       /* fail fast this long after a failed connect */
#define STATE_RETRY_MIN_MS 50
#define STATE_RETRY_MAX_MS 2000
#define STATE_FREE_FLUSH_MS 3000     /* how long state_free tries to flush */
#define STATE_MGET_BATCH 256
#define STATE_ALIVE_TTL_S 30          /* a node silent this long is presumed dead */
#define STATE_ALIVE_EVERY_S 5         /* heartbeat period */
#define STATE_USAGE_TTL_S "172800"    /* a day's usage is kept two days */

/* ---- The scripts ----
 *
 * The release step is shared: a live recording leaves the active set, its
 * user's live set and its node's set. The owner hash says which user and
 * node; it is written at admission and by every live write. */
#define STATE_LUA_RELEASE \
	"local function release(id)\n" \
	"  local o = redis.call('HMGET', 'webrtc:recording:owner:' .. id, 'node', 'user')\n" \
	"  redis.call('SREM', 'webrtc:recording:active', id)\n" \
	"  if o[1] then redis.call('SREM', 'webrtc:recording:node:' .. o[1], id) end\n" \
	"  if o[2] then redis.call('SREM', 'webrtc:recording:live:user:' .. o[2], id) end\n" \
	"end\n"

/* A user's live recordings: the ids of their live set that are still
 * admitted (in the active set); the others are pruned from the set. Shared
 * by the admission (the per-user limit) and the usage read. */
#define STATE_LUA_USER_LIVE \
	"local function user_live(key)\n" \
	"  local ids = {}\n" \
	"  for _, m in ipairs(redis.call('SMEMBERS', key)) do\n" \
	"    if redis.call('SISMEMBER', 'webrtc:recording:active', m) == 1 then ids[#ids + 1] = m\n" \
	"    else redis.call('SREM', key, m) end\n" \
	"  end\n" \
	"  return ids\n" \
	"end\n"

/* KEYS: state:{id} room:{room} user:{user} owner:{id} node:{node} active live:user:{user}
 * ARGV: id json record_ttl index_ttl live(0|1) node user
 * A live write also (re)asserts the admission: after Redis lost its data
 * (restart without persistence) the retried writes rebuild the active set,
 * so the limits keep counting recordings that are still running. A write
 * that is not live books the recording's duration in its user's usage of
 * the UTC day it started (usage:{user}:{YYYY-MM-DD}: id -> seconds, and
 * '*' -> their sum), idempotently: a rewrite books only the difference. */
static const char state_lua_put[] =
	STATE_LUA_RELEASE
	"redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])\n"
	"redis.call('SADD', KEYS[2], ARGV[1])\n"
	"redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
	"redis.call('SADD', KEYS[3], ARGV[1])\n"
	"redis.call('EXPIRE', KEYS[3], ARGV[4])\n"
	"if ARGV[5] == '1' then\n"
	"  local prev = redis.call('HGET', KEYS[4], 'node')\n"
	"  if prev and prev ~= ARGV[6] then\n"
	"    redis.call('SREM', 'webrtc:recording:node:' .. prev, ARGV[1])\n"
	"  end\n"
	"  redis.call('HSET', KEYS[4], 'node', ARGV[6], 'user', ARGV[7])\n"
	"  redis.call('EXPIRE', KEYS[4], ARGV[3])\n"
	"  redis.call('SADD', KEYS[5], ARGV[1])\n"
	"  redis.call('SADD', KEYS[6], ARGV[1])\n"
	"  redis.call('SADD', KEYS[7], ARGV[1])\n"
	"  redis.call('SADD', 'webrtc:recording:nodes', ARGV[6])\n"
	"else\n"
	"  release(ARGV[1])\n"
	"  local ok, rec = pcall(cjson.decode, ARGV[2])\n"
	"  if ok and type(rec) == 'table' and type(rec.started_at) == 'string' and #rec.started_at >= 10 then\n"
	"    local k = 'webrtc:recording:usage:' .. ARGV[7] .. ':' .. string.sub(rec.started_at, 1, 10)\n"
	"    local d = math.floor(tonumber(rec.duration_seconds) or 0)\n"
	"    local old = tonumber(redis.call('HGET', k, ARGV[1]) or '0')\n"
	"    if d ~= old then\n"
	"      redis.call('HSET', k, ARGV[1], d)\n"
	"      redis.call('HINCRBY', k, '*', d - old)\n"
	"      redis.call('EXPIRE', k, " STATE_USAGE_TTL_S ")\n"
	"    end\n"
	"  end\n"
	"end\n"
	"return 1\n";

/* KEYS: live:user:{user} usage:{user}:{day}
 * ARGV: day ("YYYY-MM-DD")
 * Returns {live, booked_seconds, started_at, status, duration, ...}: how
 * many of the user's live ids are admitted, the seconds booked for the day
 * by finished recordings, and, for each live one that started that day,
 * what its elapsed time is computed from. Work in proportion to the user's
 * live recordings, not to their history. */
static const char state_lua_usage[] =
	STATE_LUA_USER_LIVE
	"local live, out = user_live(KEYS[1]), {}\n"
	"for _, m in ipairs(live) do\n"
	"  local j = redis.call('GET', 'webrtc:recording:state:' .. m)\n"
	"  local ok, rec = pcall(cjson.decode, j or '')\n"
	"  if ok and type(rec) == 'table' and type(rec.started_at) == 'string' and\n"
	"     string.sub(rec.started_at, 1, 10) == ARGV[1] then\n"
	"    out[#out + 1] = rec.started_at\n"
	"    out[#out + 1] = tostring(rec.status)\n"
	"    out[#out + 1] = tostring(tonumber(rec.duration_seconds) or 0)\n"
	"  end\n"
	"end\n"
	"local booked = tonumber(redis.call('HGET', KEYS[2], '*') or '0')\n"
	"return {#live, booked, unpack(out)}\n";

/* KEYS: active live:user:{user} owner:{id} node:{node} alive:{node} nodes
 * ARGV: id global_limit user_limit user node admitted_at owner_ttl alive_ttl
 * Returns {0, n} admitted (n = active count after), {1, 'global', n} or
 * {1, 'user', n} refused. Before counting, the caller's heartbeat is
 * refreshed (it is plainly alive) and every registered node whose heartbeat
 * has expired loses its slots: its live ids leave the active set and their
 * users' live sets, so a node that died for good does not hold slots
 * forever. Its node set stays, for its own recovery should it come back.
 * The cost is one EXISTS per known node, not per live recording. A user's
 * live set is pruned of ids no longer active before it is counted. */
static const char state_lua_admit[] =
	STATE_LUA_USER_LIVE
	"redis.call('SET', KEYS[5], ARGV[6], 'EX', ARGV[8])\n"
	"redis.call('SADD', KEYS[6], ARGV[5])\n"
	"if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then\n"
	"  return {0, redis.call('SCARD', KEYS[1])}\n"
	"end\n"
	"for _, node in ipairs(redis.call('SMEMBERS', KEYS[6])) do\n"
	"  if redis.call('EXISTS', 'webrtc:recording:alive:' .. node) == 0 then\n"
	"    for _, m in ipairs(redis.call('SMEMBERS', 'webrtc:recording:node:' .. node)) do\n"
	"      local u = redis.call('HGET', 'webrtc:recording:owner:' .. m, 'user')\n"
	"      redis.call('SREM', KEYS[1], m)\n"
	"      if u then redis.call('SREM', 'webrtc:recording:live:user:' .. u, m) end\n"
	"    end\n"
	"    redis.call('SREM', KEYS[6], node)\n"
	"  end\n"
	"end\n"
	"local n = redis.call('SCARD', KEYS[1])\n"
	"local g = tonumber(ARGV[2])\n"
	"if g > 0 and n >= g then return {1, 'global', n} end\n"
	"local u = tonumber(ARGV[3])\n"
	"if u > 0 then\n"
	"  local live = #user_live(KEYS[2])\n"
	"  if live >= u then return {1, 'user', live} end\n"
	"end\n"
	"redis.call('SADD', KEYS[1], ARGV[1])\n"
	"redis.call('SADD', KEYS[2], ARGV[1])\n"
	"redis.call('HSET', KEYS[3], 'node', ARGV[5], 'user', ARGV[4], 'admitted_at', ARGV[6])\n"
	"redis.call('EXPIRE', KEYS[3], ARGV[7])\n"
	"redis.call('SADD', KEYS[4], ARGV[1])\n"
	"return {0, n + 1}\n";

/* KEYS: records:user:{user}   ARGV: id cap index_ttl now_s grace_s
 * The per-user index of stored records: a sorted set of ids by creation
 * time. Returns {0, n} when 'id' is (now) in it, n its size, or {1, n}
 * when the user has 'cap' records already. Records expire (state TTL) or
 * are deleted without leaving the index, so at the cap the ids whose state
 * is gone are dropped first: the precise count costs O(cap) EXISTS, only
 * for a user at the cap. An id added in the last STATE_RECORDS_GRACE_S
 * stays even without a state: its start may not have written it yet (a
 * start refused later, by admission, counts for that long). */
#define STATE_RECORDS_GRACE_S 120
static const char state_lua_records[] =
	"if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {0, redis.call('ZCARD', KEYS[1])} end\n"
	"local cap = tonumber(ARGV[2])\n"
	"local n = redis.call('ZCARD', KEYS[1])\n"
	"if n >= cap then\n"
	"  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], '-inf', tonumber(ARGV[4]) - tonumber(ARGV[5]), 'BYSCORE')) do\n"
	"    if redis.call('EXISTS', 'webrtc:recording:state:' .. m) == 0 then redis.call('ZREM', KEYS[1], m) end\n"
	"  end\n"
	"  n = redis.call('ZCARD', KEYS[1])\n"
	"  if n >= cap then return {1, n} end\n"
	"end\n"
	"redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])\n"
	"redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
	"return {0, n + 1}\n";

/* ARGV: id */
static const char state_lua_release[] =
	STATE_LUA_RELEASE
	"release(ARGV[1])\n"
	"return 1\n";

/* ---- The connection pool ---- */

/* Notes that Redis is unreachable. The fail-fast window is set only where a
 * connection attempt really failed (state_pool_take): calls refused inside
 * the window must not extend it, or steady traffic would keep the store
 * from ever trying again. */
static void state_mark_down(struct state *st)
{
	if (atomic_exchange(&st->up, false))
		LOG_WARN(&log_state, "redis unreachable; writes are kept and retried");
}

/* Borrows a connection, opening one if needed ('fresh': always a new one).
 * Returns NULL with 'err' filled when Redis cannot be reached; within
 * STATE_DOWN_HOLD_MS of a failed attempt it fails without trying. */
static struct state_conn *state_pool_take(struct state *st, bool fresh, char *err, size_t errlen)
{
	struct state_conn *slot = NULL;
	pthread_mutex_lock(&st->pool_lock);
	for (;;) {
		for (int i = 0; i < STATE_POOL_SIZE; i++) {
			if (st->pool[i].busy)
				continue;
			if (!slot || (!slot->c && st->pool[i].c))
				slot = &st->pool[i];
		}
		if (slot)
			break;
		pthread_cond_wait(&st->pool_cond, &st->pool_lock);
	}
	/* A connection to a master that has since been replaced is closed:
	 * the next one goes to the new master. */
	if (slot->c && state_conn_stale(st, slot->gen))
		fresh = true;
	if ((!slot->c || fresh) && time_mono_ns() < st->down_until_ns) {
		pthread_mutex_unlock(&st->pool_lock);
		snprintf(err, errlen, "redis unreachable");
		return NULL;
	}
	slot->busy = true;
	pthread_mutex_unlock(&st->pool_lock);

	if (fresh && slot->c) {
		redisFree(slot->c);
		slot->c = NULL;
	}
	if (!slot->c) {
		slot->c = state_open(st, STATE_CONNECT_TIMEOUT_MS, STATE_COMMAND_TIMEOUT_MS, &slot->gen, err, errlen);
		slot->reused = false;
		if (!slot->c) {
			pthread_mutex_lock(&st->pool_lock);
			slot->busy = false;
			st->down_until_ns = time_mono_ns() + STATE_DOWN_HOLD_MS * TIME_NS_PER_MS;
			util_strlcpy(st->last_err, err, sizeof st->last_err);
			pthread_cond_signal(&st->pool_cond);
			pthread_mutex_unlock(&st->pool_lock);
			return NULL;
		}
		atomic_fetch_add(&st->n_reconnects, 1);
	}
	return slot;
}

/* Returns a borrowed connection; a broken one, or one to a master that has
 * been replaced meanwhile, is closed. */
static void state_pool_give(struct state *st, struct state_conn *slot, bool broken)
{
	if (broken || state_conn_stale(st, slot->gen)) {
		redisFree(slot->c);
		slot->c = NULL;
	} else {
		slot->reused = true;
	}
	pthread_mutex_lock(&st->pool_lock);
	slot->busy = false;
	pthread_cond_signal(&st->pool_cond);
	pthread_mutex_unlock(&st->pool_lock);
}

typedef int (*state_op_fn)(struct state *st, redisContext *c, void *arg);

/* The error a connection is marked with when a write was refused with
 * READONLY: the server is a replica now (a failover demoted it). */
#define STATE_READONLY_ERR "READONLY: the server is a replica now"

/* Marks 'c' failed when 'r' is a READONLY refusal, so the pool drops the
 * connection and state_run() tries again on a fresh one, which goes to the
 * master (found anew through the sentinels). Nothing was written. */
static void state_reply_role(redisContext *c, const redisReply *r)
{
	if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "READONLY", 8) == 0 && !c->err) {
		c->err = REDIS_ERR_OTHER;
		util_strlcpy(c->errstr, STATE_READONLY_ERR, sizeof c->errstr);
	}
}

/* Runs 'op' on a borrowed connection. A connection that had served before
 * and fails may just be stale (Redis restarted, or a failover moved the
 * master): the op is tried once more on a fresh one. So is an op refused
 * with READONLY. That is safe: a write on a dead connection never reached
 * the server (a repeated op would at worst publish an event twice).
 * Returns what 'op' returns, or STATE_ERR_CONN when Redis is unreachable. */
static int state_run(struct state *st, state_op_fn op, void *arg)
{
	char err[256];
	for (int attempt = 0; attempt < 2; attempt++) {
		struct state_conn *slot = state_pool_take(st, attempt > 0, err, sizeof err);
		if (!slot) {
			LOG_DEBUG(&log_state, "%s", err);
			break;
		}
		bool reused = slot->reused;
		int rc = op(st, slot->c, arg);
		bool broken = slot->c->err != 0;
		bool demoted = broken && strcmp(slot->c->errstr, STATE_READONLY_ERR) == 0;
		if (demoted && st->sentinel)
			state_sentinel_forget(st->sentinel, slot->gen, "a write was refused with READONLY");
		else if (broken)
			LOG_DEBUG(&log_state, "redis connection failed: %s", slot->c->errstr);
		state_pool_give(st, slot, broken);
		if (!broken) {
			if (!atomic_exchange(&st->up, true))
				LOG_INFO(&log_state, "redis reachable");
			return rc;
		}
		if (!reused && !demoted)
			break;
	}
	state_mark_down(st);
	return STATE_ERR_CONN;
}

/* Runs a script by its SHA, loading it again when Redis answers NOSCRIPT
 * (a restarted server forgets its scripts). 'args' starts with numkeys.
 * Returns the reply (caller frees) or NULL on a connection failure. */
static redisReply *state_script(redisContext *c, const char *sha, const char *text, int nargs,
				const char **args)
{
	const char *argv[24];
	if (nargs > 22)
		return NULL;
	argv[0] = "EVALSHA";
	argv[1] = sha;
	memcpy(argv + 2, args, sizeof(*args) * (size_t)nargs);
	redisReply *r = redisCommandArgv(c, nargs + 2, argv, NULL);
	if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
		freeReplyObject(r);
		r = redisCommand(c, "SCRIPT LOAD %s", text);
		if (!r)
			return NULL;
		freeReplyObject(r);
		r = redisCommandArgv(c, nargs + 2, argv, NULL);
	}
	state_reply_role(c, r);
	return r;
}

/* True for the errors of a server that is up but cannot serve yet (loading
 * its file after a restart, busy in a script, or a master refusing writes
 * while no replica keeps up, with min-replicas-to-write set): worth
 * retrying later. */
static bool state_reply_transient(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR &&
	       (strncmp(r->str, "LOADING", 7) == 0 || strncmp(r->str, "BUSY", 4) == 0 ||
		strncmp(r->str, "TRYAGAIN", 8) == 0 || strncmp(r->str, "NOREPLICAS", 10) == 0);
}

/* Frees 'r', the reply to a command on 'c', and maps it to STATE_OK,
 * STATE_ERR_CONN (transient: the write is kept and retried) or
 * STATE_ERR_REDIS (logging the error). */
static int state_reply_done(redisContext *c, redisReply *r, const char *what)
{
	int rc = STATE_OK;
	if (!r)
		return STATE_ERR_REDIS;
	state_reply_role(c, r);
	if (c->err) {
		rc = STATE_ERR_CONN;
	} else if (state_reply_transient(r)) {
		LOG_DEBUG(&log_state, "%s: %s (will retry)", what, r->str);
		rc = STATE_ERR_CONN;
	} else if (r->type == REDIS_REPLY_ERROR) {
		LOG_ERROR(&log_state, "%s: %s", what, r->str);
		rc = STATE_ERR_REDIS;
	}
	freeReplyObject(r);
	return rc;
}

/* ---- Writes (each is an op run directly or, later, from the buffer) ---- */

static int state_op_put(struct state *st, redisContext *c, const struct state_pending *p)
{
	char k_state[512], k_room[512], k_user[512], k_owner[512], k_node[512];
	char ttl_rec[16], ttl_idx[16];
	snprintf(k_state, sizeof k_state, STATE_KEY_PREFIX "state:%s", p->id);
	snprintf(k_room, sizeof k_room, STATE_KEY_PREFIX "room:%s", p->room_id);
	snprintf(k_user, sizeof k_user, STATE_KEY_PREFIX "user:%s", p->user_id);
	snprintf(k_owner, sizeof k_owner, STATE_KEY_PREFIX "owner:%s", p->id);
	char k_live[512];
	snprintf(k_node, sizeof k_node, STATE_KEY_PREFIX "node:%s", st->node_id);
	snprintf(k_live, sizeof k_live, STATE_KEY_PREFIX "live:user:%s", p->user_id);
	snprintf(ttl_rec, sizeof ttl_rec, "%d", STATE_TTL_RECORD_S);
	snprintf(ttl_idx, sizeof ttl_idx, "%d", STATE_TTL_INDEX_S);
	const char *args[] = { "7", k_state, k_room, k_user, k_owner, k_node, STATE_KEY_PREFIX "active",
			       k_live, p->id, p->payload, ttl_rec, ttl_idx, p->live ? "1" : "0",
			       st->node_id, p->user_id };
	return state_reply_done(c, state_script(c, st->sha_put, state_lua_put, (int)ARRAY_SIZE(args), args),
				"state write");
}

static int state_op_release(struct state *st, redisContext *c, const struct state_pending *p)
{
	const char *args[] = { "0", p->id };
	return state_reply_done(c, state_script(c, st->sha_release, state_lua_release, 2, args), "release");
}

static int state_op_journal(struct state *st, redisContext *c, const struct state_pending *p)
{
	char key[512];
	snprintf(key, sizeof key, STATE_KEY_PREFIX "job:%s", p->id);
	if (!p->payload)
		return state_reply_done(c, redisCommand(c, "DEL %s", key), "journal delete");
	return state_reply_done(c, redisCommand(c, "SET %s %s EX %d", key, p->payload, STATE_TTL_RECORD_S),
				"journal write");
}

static int state_op_publish(struct state *st, redisContext *c, const struct state_pending *p)
{
	char channel[512];
	snprintf(channel, sizeof channel, STATE_CHANNEL_PREFIX "%s", p->id);
	return state_reply_done(c, redisCommand(c, "PUBLISH %s %s", channel, p->payload), "publish");
}

static int state_op_pending(struct state *st, redisContext *c, void *arg)
{
	const struct state_pending *p = arg;
	switch (p->kind) {
	case STATE_PENDING_PUT: return state_op_put(st, c, p);
	case STATE_PENDING_RELEASE: return state_op_release(st, c, p);
	case STATE_PENDING_JOURNAL: return state_op_journal(st, c, p);
	case STATE_PENDING_PUBLISH: return state_op_publish(st, c, p);
	}
	return STATE_ERR_INVALID;
}

static void state_pending_free(struct state_pending *p)
{
	if (!p)
		return;
	free(p->id);
	free(p->payload);
	free(p->room_id);
	free(p->user_id);
	free(p);
}

/* Builds a buffer entry; string arguments are copied. NULL when out of memory. */
static struct state_pending *state_pending_new(enum state_pending_kind kind, const char *id,
					       const char *payload, const char *room_id,
					       const char *user_id, bool live)
{
	struct state_pending *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->kind = kind;
	p->live = live;
	p->id = strdup(id);
	p->payload = payload ? strdup(payload) : NULL;
	p->room_id = room_id ? strdup(room_id) : NULL;
	p->user_id = user_id ? strdup(user_id) : NULL;
	if (!p->id || (payload && !p->payload) || (room_id && !p->room_id) || (user_id && !p->user_id)) {
		state_pending_free(p);
		return NULL;
	}
	return p;
}

/* Appends 'p' (taken) to the buffer; under pending_lock. An earlier entry of
 * the same kind and id is dropped: the latest write wins. Returns
 * STATE_DEFERRED or STATE_ERR_FULL (then 'p' is freed and counted). */
static int state_pending_append(struct state *st, struct state_pending *p)
{
	if (p->kind != STATE_PENDING_PUBLISH) {
		struct state_pending **pp = &st->pending_head, *prev = NULL;
		while (*pp) {
			struct state_pending *q = *pp;
			if (q->kind == p->kind && strcmp(q->id, p->id) == 0) {
				*pp = q->next;
				if (st->pending_tail == q)
					st->pending_tail = prev;
				st->pending_count--;
				state_pending_free(q);
				break;
			}
			prev = q;
			pp = &q->next;
		}
	}
	bool full = st->pending_count >= STATE_PENDING_MAX ||
		    (p->kind == STATE_PENDING_PUBLISH && st->pending_events >= STATE_PENDING_EVENTS_MAX);
	if (full) {
		atomic_fetch_add(&st->n_dropped, 1);
		LOG_ERROR(&log_state, "retry buffer full: a write for '%s' is lost", p->id);
		state_pending_free(p);
		return STATE_ERR_FULL;
	}
	p->next = NULL;
	if (st->pending_tail)
		st->pending_tail->next = p;
	else
		st->pending_head = p;
	st->pending_tail = p;
	st->pending_count++;
	if (p->kind == STATE_PENDING_PUBLISH)
		st->pending_events++;
	atomic_fetch_add(&st->n_deferred, 1);
	pthread_cond_signal(&st->pending_cond);
	return STATE_DEFERRED;
}

/* The newest write of 'kind' for 'id' not yet in Redis: in the buffer, or
 * the one the retry thread is writing right now (older than any buffered
 * one). Under pending_lock; NULL when none. */
static const struct state_pending *state_pending_latest(struct state *st, enum state_pending_kind kind,
							const char *id)
{
	const struct state_pending *found = NULL;
	if (st->inflight && st->inflight->kind == kind && strcmp(st->inflight->id, id) == 0)
		found = st->inflight;
	for (const struct state_pending *p = st->pending_head; p; p = p->next)
		if (p->kind == kind && strcmp(p->id, id) == 0)
			found = p;
	return found;
}

/* The write path: runs 'p' (taken) now, unless Redis is unreachable or
 * earlier writes still wait, in which case it joins the buffer (keeping the
 * order of writes). Returns STATE_OK, STATE_DEFERRED or an error. */
static int state_write(struct state *st, struct state_pending *p)
{
	int rc;
	if (!p)
		return STATE_ERR_NOMEM;
	pthread_mutex_lock(&st->write_lock);
	pthread_mutex_lock(&st->pending_lock);
	bool waiting = st->pending_head != NULL;
	pthread_mutex_unlock(&st->pending_lock);
	if (!waiting) {
		rc = state_run(st, state_op_pending, p);
		if (rc != STATE_ERR_CONN) {
			pthread_mutex_unlock(&st->write_lock);
			state_pending_free(p);
			return rc;
		}
	}
	pthread_mutex_lock(&st->pending_lock);
	rc = state_pending_append(st, p);
	pthread_mutex_unlock(&st->pending_lock);
	pthread_mutex_unlock(&st->write_lock);
	return rc;
}

/* Waits on pending_cond (under pending_lock) for at most 'ms'. */
static void state_pending_wait_ms(struct state *st, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t ns = ts.tv_nsec + ms * TIME_NS_PER_MS;
	ts.tv_sec += ns / TIME_NS_PER_SEC;
	ts.tv_nsec = ns % TIME_NS_PER_SEC;
	pthread_cond_timedwait(&st->pending_cond, &st->pending_lock, &ts);
}

/* Refreshes this node's heartbeat key (webrtc:recording:alive:{node}) and
 * its place in the registry of nodes (webrtc:recording:nodes). */
static int state_op_heartbeat(struct state *st, redisContext *c, void *arg)
{
	char now[40];
	time_iso8601(time_wall_ns(), now, sizeof now);
	int rc = state_reply_done(c, redisCommand(c, "SET " STATE_KEY_PREFIX "alive:%s %s EX %d", st->node_id,
					       now, STATE_ALIVE_TTL_S),
				  "heartbeat");
	if (rc == STATE_OK)
		rc = state_reply_done(c, redisCommand(c, "SADD " STATE_KEY_PREFIX "nodes %s", st->node_id),
				      "heartbeat");
	return rc;
}

/* The retry thread: writes the buffer out, oldest first, backing off while
 * Redis stays unreachable. On stop it keeps flushing while Redis answers and
 * gives up at the first failure past the deadline. Between writes it keeps
 * this node's heartbeat fresh. */
static void *state_retry_main(void *arg)
{
	struct state *st = arg;
	int64_t backoff_ms = STATE_RETRY_MIN_MS, stop_deadline = 0, next_beat = 0;
	pthread_mutex_lock(&st->pending_lock);
	for (;;) {
		while (!st->pending_head && !st->stopping) {
			int64_t now = time_mono_ns();
			if (now >= next_beat) {
				pthread_mutex_unlock(&st->pending_lock);
				state_run(st, state_op_heartbeat, NULL);
				pthread_mutex_lock(&st->pending_lock);
				next_beat = now + STATE_ALIVE_EVERY_S * TIME_NS_PER_SEC;
				continue;
			}
			state_pending_wait_ms(st, (next_beat - now) / TIME_NS_PER_MS + 1);
		}
		if (!st->pending_head)
			break;
		if (st->stopping && !stop_deadline)
			stop_deadline = time_mono_ns() + STATE_FREE_FLUSH_MS * TIME_NS_PER_MS;
		pthread_mutex_unlock(&st->pending_lock);

		pthread_mutex_lock(&st->write_lock);
		pthread_mutex_lock(&st->pending_lock);
		struct state_pending *p = st->pending_head;
		st->pending_head = p->next;
		if (!st->pending_head)
			st->pending_tail = NULL;
		st->inflight = p;
		pthread_mutex_unlock(&st->pending_lock);

		int rc = state_run(st, state_op_pending, p);

		pthread_mutex_lock(&st->pending_lock);
		st->inflight = NULL;
		if (rc == STATE_ERR_CONN) {
			/* Nobody else writes while write_lock is held, so the
			 * entry goes back to the front unchanged. */
			p->next = st->pending_head;
			st->pending_head = p;
			if (!st->pending_tail)
				st->pending_tail = p;
			pthread_mutex_unlock(&st->write_lock);
			if (stop_deadline && time_mono_ns() > stop_deadline)
				break;
			state_pending_wait_ms(st, backoff_ms);
			backoff_ms = backoff_ms * 2 > STATE_RETRY_MAX_MS ? STATE_RETRY_MAX_MS : backoff_ms * 2;
			continue;
		}
		st->pending_count--;
		if (p->kind == STATE_PENDING_PUBLISH)
			st->pending_events--;
		pthread_mutex_unlock(&st->write_lock);
		if (rc == STATE_OK)
			atomic_fetch_add(&st->n_retried, 1);
		else
			LOG_ERROR(&log_state, "a deferred write for '%s' was refused by redis; dropped", p->id);
		state_pending_free(p);
		backoff_ms = STATE_RETRY_MIN_MS;
	}
	pthread_mutex_unlock(&st->pending_lock);
	return NULL;
}

/* ---- Life cycle ---- */

static int state_op_load_scripts(struct state *st, redisContext *c, void *arg)
{
	struct { const char *text; char *sha; } scripts[] = {
		{ state_lua_put, st->sha_put },
		{ state_lua_admit, st->sha_admit },
		{ state_lua_release, st->sha_release },
		{ state_lua_usage, st->sha_usage },
		{ state_lua_records, st->sha_records },
	};
	for (size_t i = 0; i < ARRAY_SIZE(scripts); i++) {
		redisReply *r = redisCommand(c, "SCRIPT LOAD %s", scripts[i].text);
		if (!r)
			return STATE_ERR_REDIS;
		if (r->type != REDIS_REPLY_STRING || r->len != 40) {
			snprintf(arg, 256, "SCRIPT LOAD: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
			freeReplyObject(r);
			return STATE_ERR_REDIS;
		}
		memcpy(scripts[i].sha, r->str, 41);
		freeReplyObject(r);
	}
	return STATE_OK;
}

/* The sentinels' master moved: idle connections to the old one are closed
 * now (busy ones when they come back), and the retry thread tries its
 * buffer at once instead of at the end of its backoff. */
static void state_on_master_change(void *opaque)
{
	struct state *st = opaque;
	pthread_mutex_lock(&st->pool_lock);
	for (int i = 0; i < STATE_POOL_SIZE; i++) {
		struct state_conn *slot = &st->pool[i];
		if (!slot->busy && slot->c && state_conn_stale(st, slot->gen)) {
			redisFree(slot->c);
			slot->c = NULL;
		}
	}
	pthread_mutex_unlock(&st->pool_lock);
	pthread_mutex_lock(&st->pending_lock);
	pthread_cond_broadcast(&st->pending_cond);
	pthread_mutex_unlock(&st->pending_lock);
}

struct state *state_new(const char *redis_url, const char *state_dir, const char *node_id,
			char *err, size_t errlen)
{
	char why[256] = "";
	pthread_condattr_t ca;
	struct state *st = calloc(1, sizeof *st);
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&st->pool_lock, NULL);
	pthread_cond_init(&st->pool_cond, NULL);
	pthread_mutex_init(&st->write_lock, NULL);
	pthread_mutex_init(&st->pending_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->pending_cond, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&st->up, false);

	if (node_id && node_id[0]) {
		util_strlcpy(st->node_id, node_id, sizeof st->node_id);
	} else if (gethostname(st->node_id, sizeof st->node_id - 1) != 0 || !st->node_id[0]) {
		util_strlcpy(st->node_id, "edgerec", sizeof st->node_id);
	}
	if (state_dir)
		util_strlcpy(st->state_dir, state_dir, sizeof st->state_dir);

	/* hiredis writes with plain write(2): a Redis that goes away would
	 * otherwise kill the whole process with SIGPIPE. */
	struct sigaction sa;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);

	if (!redis_url || !redis_url[0]) {
		if (!state_dir || !state_dir[0]) {
			snprintf(err, errlen, "an embedded redis needs a state directory");
			goto fail;
		}
		st->emb = state_embedded_start(state_dir, &st->url, err, errlen);
		if (!st->emb)
			goto fail;
	} else if (state_url_parse(redis_url, &st->url, err, errlen) != 0) {
		goto fail;
	} else if (st->url.master_name[0]) {
		st->sentinel = state_sentinel_new(&st->url, state_on_master_change, st, err, errlen);
		if (!st->sentinel)
			goto fail;
	}

	int rc = state_run(st, state_op_load_scripts, why);
	if (rc != STATE_OK) {
		if (!why[0])
			util_strlcpy(why, st->last_err[0] ? st->last_err : "unreachable", sizeof why);
		if (st->sentinel)
			snprintf(err, errlen, "%s", why);
		else if (st->url.unix_path[0])
			snprintf(err, errlen, "redis at %s: %s", st->url.unix_path, why);
		else
			snprintf(err, errlen, "redis at %s:%d: %s", st->url.host, st->url.port, why);
		goto fail;
	}
	if (pthread_create(&st->retry_thread, NULL, state_retry_main, st) != 0) {
		snprintf(err, errlen, "cannot start the retry thread");
		goto fail;
	}
	st->retry_started = true;
	if (st->sentinel)
		LOG_INFO(&log_state, "redis master '%s' through %d sentinel%s, node '%s'", st->url.master_name,
			 st->url.nsentinels, st->url.nsentinels == 1 ? "" : "s", st->node_id);
	else
		LOG_INFO(&log_state, "redis %s%s, node '%s'", st->url.unix_path[0] ? st->url.unix_path : st->url.host,
			 st->emb ? " (embedded)" : "", st->node_id);
	return st;

fail:
	state_free(st);
	return NULL;
}

void state_free(struct state *st)
{
	if (!st)
		return;
	state_sub_free(st->sub);
	st->sub = NULL;
	if (st->retry_started) {
		pthread_mutex_lock(&st->pending_lock);
		st->stopping = true;
		pthread_cond_broadcast(&st->pending_cond);
		pthread_mutex_unlock(&st->pending_lock);
		pthread_join(st->retry_thread, NULL);
	}
	if (st->pending_count)
		LOG_ERROR(&log_state, "%zu writes could not reach redis before exit", st->pending_count);
	while (st->pending_head) {
		struct state_pending *p = st->pending_head;
		st->pending_head = p->next;
		state_pending_free(p);
	}
	for (int i = 0; i < STATE_POOL_SIZE; i++)
		if (st->pool[i].c)
			redisFree(st->pool[i].c);
	state_embedded_stop(st->emb);
	state_sentinel_free(st->sentinel);
	pthread_cond_destroy(&st->pending_cond);
	pthread_mutex_destroy(&st->pending_lock);
	pthread_mutex_destroy(&st->write_lock);
	pthread_cond_destroy(&st->pool_cond);
	pthread_mutex_destroy(&st->pool_lock);
	free(st);
}

const char *state_node_id(const struct state *st)
{
	return st->node_id;
}

/* ---- The public writes ---- */

int state_put(struct state *st, const cJSON *rec)
{
	char err[256];
	if (!st || state_record_validate(rec, err, sizeof err) != STATE_OK) {
		LOG_ERROR(&log_state, "refusing to write an invalid record: %s", st ? err : "no store");
		return STATE_ERR_INVALID;
	}
	char *json = cJSON_PrintUnformatted(rec);
	if (!json)
		return STATE_ERR_NOMEM;
	int status = state_record_status(rec);
	struct state_pending *p = state_pending_new(STATE_PENDING_PUT, state_record_str(rec, "recording_id"), json,
						    state_record_str(rec, "room_id"),
						    state_record_str(rec, "user_id"),
						    state_status_is_live((enum state_status)status));
	free(json);
	return state_write(st, p);
}

int state_release(struct state *st, const char *id)
{
	if (!st || !id || !id[0])
		return STATE_ERR_INVALID;
	return state_write(st, state_pending_new(STATE_PENDING_RELEASE, id, NULL, NULL, NULL, false));
}

int state_journal_set(struct state *st, const char *id, const cJSON *journal)
{
	if (!st || !id || !id[0] || !cJSON_IsObject(journal))
		return STATE_ERR_INVALID;
	char *json = cJSON_PrintUnformatted(journal);
	if (!json)
		return STATE_ERR_NOMEM;
	struct state_pending *p = state_pending_new(STATE_PENDING_JOURNAL, id, json, NULL, NULL, false);
	free(json);
	return state_write(st, p);
}

int state_journal_delete(struct state *st, const char *id)
{
	if (!st || !id || !id[0])
		return STATE_ERR_INVALID;
	return state_write(st, state_pending_new(STATE_PENDING_JOURNAL, id, NULL, NULL, NULL, false));
}

int state_publish(struct state *st, const char *room_id, const char *event_json)
{
	if (!st || !room_id || !room_id[0] || !event_json)
		return STATE_ERR_INVALID;
	return state_write(st, state_pending_new(STATE_PENDING_PUBLISH, room_id, event_json, NULL, NULL, false));
}

/* ---- The per-user index of stored records ---- */

struct state_records_args {
	const char *user_id, *id;
	int cap;
	long long count;
};

static int state_op_records(struct state *st, redisContext *c, void *arg)
{
	struct state_records_args *a = arg;
	char key[512], cap[16], ttl[16], now[24], grace[16];
	snprintf(key, sizeof key, STATE_KEY_PREFIX "records:user:%s", a->user_id);
	snprintf(cap, sizeof cap, "%d", a->cap);
	snprintf(ttl, sizeof ttl, "%d", STATE_TTL_RECORD_S);
	snprintf(now, sizeof now, "%lld", (long long)(time_wall_ns() / TIME_NS_PER_SEC));
	snprintf(grace, sizeof grace, "%d", STATE_RECORDS_GRACE_S);
	const char *args[] = { "1", key, a->id, cap, ttl, now, grace };
	redisReply *r = state_script(c, st->sha_records, state_lua_records, (int)ARRAY_SIZE(args), args);
	if (!r)
		return STATE_ERR_REDIS;
	int rc = STATE_ERR_REDIS;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_INTEGER &&
	    r->element[1]->type == REDIS_REPLY_INTEGER) {
		rc = r->element[0]->integer == 0 ? STATE_OK : STATE_REFUSED;
		a->count = r->element[1]->integer;
	} else if (r->type == REDIS_REPLY_ERROR && !c->err) {
		LOG_ERROR(&log_state, "records script: %s", r->str);
	}
	freeReplyObject(r);
	return rc;
}

int state_user_record_add(struct state *st, const char *user_id, const char *id, int cap, long long *count)
{
	if (count)
		*count = 0;
	if (!st || !user_id || !user_id[0] || !id || !id[0] || cap <= 0)
		return STATE_ERR_INVALID;
	struct state_records_args a = { user_id, id, cap, 0 };
	int rc = state_run(st, state_op_records, &a);
	if (count)
		*count = a.count;
	if (rc == STATE_ERR_CONN)
		rc = STATE_ERR_REDIS;
	return rc;
}

/* ---- Admission ---- */

struct state_admit_args {
	const char *id, *user_id;
	int global_limit, user_limit;
	char *reason;
	size_t reasonlen;
};

static int state_op_admit(struct state *st, redisContext *c, void *arg)
{
	struct state_admit_args *a = arg;
	char k_user[512], k_owner[512], k_node[512], k_alive[512], g[16], u[16], ttl[16], alive_ttl[16], now[40];
	snprintf(k_user, sizeof k_user, STATE_KEY_PREFIX "live:user:%s", a->user_id);
	snprintf(k_owner, sizeof k_owner, STATE_KEY_PREFIX "owner:%s", a->id);
	snprintf(k_node, sizeof k_node, STATE_KEY_PREFIX "node:%s", st->node_id);
	snprintf(k_alive, sizeof k_alive, STATE_KEY_PREFIX "alive:%s", st->node_id);
	snprintf(g, sizeof g, "%d", a->global_limit);
	snprintf(u, sizeof u, "%d", a->user_limit);
	snprintf(ttl, sizeof ttl, "%d", STATE_TTL_RECORD_S);
	snprintf(alive_ttl, sizeof alive_ttl, "%d", STATE_ALIVE_TTL_S);
	time_iso8601(time_wall_ns(), now, sizeof now);
	const char *args[] = { "6", STATE_KEY_PREFIX "active", k_user, k_owner, k_node, k_alive,
			       STATE_KEY_PREFIX "nodes", a->id, g, u, a->user_id, st->node_id, now, ttl,
			       alive_ttl };
	redisReply *r = state_script(c, st->sha_admit, state_lua_admit, (int)ARRAY_SIZE(args), args);
	if (!r)
		return STATE_ERR_REDIS;
	int rc = STATE_ERR_REDIS;
	if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && r->element[0]->type == REDIS_REPLY_INTEGER) {
		if (r->element[0]->integer == 0) {
			rc = STATE_OK;
		} else if (r->elements == 3 && r->element[1]->type == REDIS_REPLY_STRING) {
			rc = STATE_REFUSED;
			if (strcmp(r->element[1]->str, "global") == 0)
				snprintf(a->reason, a->reasonlen, "maximum concurrent recordings (%d) reached",
					 a->global_limit);
			else
				snprintf(a->reason, a->reasonlen,
					 "user '%s' already has %lld live recordings (limit %d)", a->user_id,
					 r->element[2]->type == REDIS_REPLY_INTEGER ? r->element[2]->integer : 0LL,
					 a->user_limit);
		}
	} else if (r->type == REDIS_REPLY_ERROR && !c->err) {
		LOG_ERROR(&log_state, "admission script: %s", r->str);
	}
	freeReplyObject(r);
	return rc;
}

int state_admit(struct state *st, const char *id, const char *user_id, int global_limit, int user_limit,
		char *reason, size_t reasonlen)
{
	char dummy[8];
	if (!reason || !reasonlen) {
		reason = dummy;
		reasonlen = sizeof dummy;
	}
	reason[0] = 0;
	if (!st || !id || !id[0] || !user_id || !user_id[0]) {
		snprintf(reason, reasonlen, "invalid admission request");
		return STATE_ERR_INVALID;
	}
	struct state_admit_args a = { id, user_id, global_limit, user_limit, reason, reasonlen };
	int rc = state_run(st, state_op_admit, &a);
	if (rc == STATE_ERR_CONN || rc == STATE_ERR_REDIS) {
		snprintf(reason, reasonlen, "state store unavailable");
		return STATE_ERR_REDIS;
	}
	return rc;
}

/* ---- Usage of one user ---- */

struct state_usage_args {
	const char *user_id;
	int64_t now_wall_ns;
	struct state_user_usage *out;
};

static int state_op_usage(struct state *st, redisContext *c, void *arg)
{
	struct state_usage_args *a = arg;
	char k_live[512], k_usage[600], day[40];
	time_iso8601(a->now_wall_ns, day, sizeof day);
	day[10] = 0;
	snprintf(k_live, sizeof k_live, STATE_KEY_PREFIX "live:user:%s", a->user_id);
	snprintf(k_usage, sizeof k_usage, STATE_KEY_PREFIX "usage:%s:%s", a->user_id, day);
	const char *args[] = { "2", k_live, k_usage, day };
	redisReply *r = state_script(c, st->sha_usage, state_lua_usage, (int)ARRAY_SIZE(args), args);
	if (!r)
		return STATE_ERR_REDIS;
	int rc = STATE_ERR_REDIS;
	if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && r->element[0]->type == REDIS_REPLY_INTEGER &&
	    r->element[1]->type == REDIS_REPLY_INTEGER) {
		a->out->live = r->element[0]->integer;
		double secs = (double)r->element[1]->integer;
		for (size_t i = 2; i + 2 < r->elements; i += 3) {
			const redisReply *at = r->element[i], *stt = r->element[i + 1], *dur = r->element[i + 2];
			int64_t started = 0;
			if (at->type != REDIS_REPLY_STRING || stt->type != REDIS_REPLY_STRING ||
			    dur->type != REDIS_REPLY_STRING || time_parse_iso8601(at->str, &started) < 0)
				continue;
			double d = strtod(dur->str, NULL);
			/* As a running recording counts: the time since it started
			 * (its duration is not final yet). */
			if (strcmp(stt->str, "recording") == 0 || strcmp(stt->str, "pending") == 0) {
				double since = (double)(a->now_wall_ns - started) / 1e9;
				if (since > d)
					d = since;
			}
			secs += d > 0 ? d : 0;
		}
		a->out->seconds_today = secs;
		rc = STATE_OK;
	} else if (r->type == REDIS_REPLY_ERROR && !c->err) {
		LOG_ERROR(&log_state, "usage script: %s", r->str);
	}
	freeReplyObject(r);
	return rc;
}

int state_user_usage(struct state *st, const char *user_id, int64_t now_wall_ns, struct state_user_usage *out)
{
	memset(out, 0, sizeof(*out));
	if (!st || !user_id || !user_id[0])
		return STATE_ERR_INVALID;
	struct state_usage_args a = { user_id, now_wall_ns ? now_wall_ns : time_wall_ns(), out };
	int rc = state_run(st, state_op_usage, &a);
	return rc == STATE_ERR_CONN ? STATE_ERR_REDIS : rc;
}

/* ---- Reads ---- */

/* What state_get_stored() reads: the key "<prefix><kind>:<id>" and, before
 * Redis, the newest pending write of 'pending' for 'id'. */
struct state_get_args {
	const char *kind;
	const char *id;
	cJSON *out;
};

static int state_op_get(struct state *st, redisContext *c, void *arg)
{
	struct state_get_args *a = arg;
	redisReply *r = redisCommand(c, "GET " STATE_KEY_PREFIX "%s:%s", a->kind, a->id);
	if (!r)
		return STATE_ERR_REDIS;
	int rc = r->type == REDIS_REPLY_ERROR ? STATE_ERR_REDIS : STATE_OK;
	if (r->type == REDIS_REPLY_STRING)
		a->out = cJSON_ParseWithLength(r->str, r->len);
	freeReplyObject(r);
	return rc;
}

/* Reads one JSON value of 'kind' ("state" or "job") for 'id': a write still
 * pending wins over Redis (a pending delete reads as NULL). Returns a new
 * object the caller owns, or NULL when absent or unreadable. */
static cJSON *state_get_stored(struct state *st, enum state_pending_kind pending,
			       const char *kind, const char *id)
{
	if (!st || !id || !id[0])
		return NULL;
	cJSON *out = NULL;
	pthread_mutex_lock(&st->pending_lock);
	const struct state_pending *p = state_pending_latest(st, pending, id);
	bool found = p != NULL;
	if (p && p->payload)
		out = cJSON_Parse(p->payload);
	pthread_mutex_unlock(&st->pending_lock);
	if (found)
		return out;
	struct state_get_args a = { kind, id, NULL };
	if (state_run(st, state_op_get, &a) != STATE_OK)
		return NULL;
	return a.out;
}

cJSON *state_get(struct state *st, const char *id)
{
	return state_get_stored(st, STATE_PENDING_PUT, "state", id);
}

/* Orders records newest started_at first (null last), then by id. */
static int state_cmp_records(const void *pa, const void *pb)
{
	const cJSON *a = *(const cJSON *const *)pa, *b = *(const cJSON *const *)pb;
	const char *sa = state_record_str(a, "started_at"), *sb = state_record_str(b, "started_at");
	if (sa && sb) {
		int64_t ta = 0, tb = 0;
		time_parse_iso8601(sa, &ta);
		time_parse_iso8601(sb, &tb);
		if (ta != tb)
			return ta > tb ? -1 : 1;
	} else if (sa || sb) {
		return sa ? -1 : 1;
	}
	const char *ia = state_record_str(a, "recording_id"), *ib = state_record_str(b, "recording_id");
	return strcmp(ia ? ia : "", ib ? ib : "");
}

struct state_list_args {
	const char *set_key;
	const char *status;   /* filter, or NULL */
	bool live_only;       /* keep live statuses only, prune the rest from set_key */
	cJSON *out;
};

/* Fetches the records of the 'nids' ids in 'ids' (MGET in batches) into
 * a->out. */
static int state_list_fetch(redisContext *c, const char *const *ids, size_t nids, struct state_list_args *a)
{
	for (size_t base = 0; base < nids; base += STATE_MGET_BATCH) {
		size_t n = nids - base;
		if (n > STATE_MGET_BATCH)
			n = STATE_MGET_BATCH;
		const char **argv = calloc(n + 1, sizeof *argv);
		char **keys = calloc(n, sizeof *keys);
		int rc = STATE_OK;
		if (!argv || !keys) {
			rc = STATE_ERR_NOMEM;
			goto batch_done;
		}
		argv[0] = "MGET";
		for (size_t i = 0; i < n; i++) {
			if (asprintf(&keys[i], STATE_KEY_PREFIX "state:%s", ids[base + i]) < 0) {
				keys[i] = NULL;
				rc = STATE_ERR_NOMEM;
				goto batch_done;
			}
			argv[i + 1] = keys[i];
		}
		redisReply *r = redisCommandArgv(c, (int)n + 1, argv, NULL);
		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != n) {
			rc = STATE_ERR_REDIS;
			if (r)
				freeReplyObject(r);
			goto batch_done;
		}
		for (size_t i = 0; i < n; i++) {
			const redisReply *v = r->element[i];
			const char *id = ids[base + i];
			cJSON *rec = v->type == REDIS_REPLY_STRING ? cJSON_ParseWithLength(v->str, v->len) : NULL;
			int status = rec ? state_record_status(rec) : -1;
			bool keep = rec != NULL;
			if (keep && a->status && (status < 0 || strcmp(state_status_name(status), a->status) != 0))
				keep = false;
			if (a->live_only && (status < 0 || !state_status_is_live((enum state_status)status))) {
				keep = false;
				redisReply *d = redisCommand(c, "SREM %s %s", a->set_key, id);
				if (d)
					freeReplyObject(d);
			}
			if (keep)
				cJSON_AddItemToArray(a->out, rec);
			else
				cJSON_Delete(rec);
		}
		freeReplyObject(r);
batch_done:
		for (size_t i = 0; keys && i < n; i++)
			free(keys[i]);
		free(keys);
		free(argv);
		if (rc != STATE_OK)
			return rc;
	}
	return STATE_OK;
}

/* state_list_fetch for the strings of a reply array, each with 'skip'
 * leading characters (a key prefix) left out. */
static int state_list_fetch_reply(redisContext *c, const redisReply *arr, size_t skip, struct state_list_args *a)
{
	if (arr->elements == 0)
		return STATE_OK;
	const char **ids = calloc(arr->elements, sizeof *ids);
	size_t n = 0;
	if (!ids)
		return STATE_ERR_NOMEM;
	for (size_t i = 0; i < arr->elements; i++) {
		const redisReply *e = arr->element[i];
		if (e->type == REDIS_REPLY_STRING && e->len > skip)
			ids[n++] = e->str + skip;
	}
	int rc = state_list_fetch(c, ids, n, a);
	free(ids);
	return rc;
}

static int state_op_list(struct state *st, redisContext *c, void *arg)
{
	struct state_list_args *a = arg;
	redisReply *ids = redisCommand(c, "SMEMBERS %s", a->set_key);
	if (!ids)
		return STATE_ERR_REDIS;
	int rc = STATE_ERR_REDIS;
	cJSON_Delete(a->out);
	a->out = cJSON_CreateArray();
	if (!a->out)
		rc = STATE_ERR_NOMEM;
	else if (ids->type == REDIS_REPLY_ARRAY)
		rc = state_list_fetch_reply(c, ids, 0, a);
	freeReplyObject(ids);
	return rc;
}

/* Every record: SCAN over the state keys (a few hundred keys per round
 * trip, never blocking Redis the way KEYS would), fetched page by page. */
static int state_op_list_all(struct state *st, redisContext *c, void *arg)
{
	struct state_list_args *a = arg;
	char cursor[32] = "0";
	cJSON_Delete(a->out);
	a->out = cJSON_CreateArray();
	if (!a->out)
		return STATE_ERR_NOMEM;
	do {
		redisReply *r = redisCommand(c, "SCAN %s MATCH " STATE_KEY_PREFIX "state:* COUNT 500", cursor);
		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
			if (r)
				freeReplyObject(r);
			return STATE_ERR_REDIS;
		}
		util_strlcpy(cursor, r->element[0]->str, sizeof cursor);
		int rc = state_list_fetch_reply(c, r->element[1], strlen(STATE_KEY_PREFIX "state:"), a);
		freeReplyObject(r);
		if (rc != STATE_OK)
			return rc;
	} while (strcmp(cursor, "0") != 0);
	return STATE_OK;
}

/* Runs a listing of set 'key' (NULL: every record) and sorts it; NULL on
 * error. */
static cJSON *state_list(struct state *st, const char *key, const char *status, bool live_only)
{
	struct state_list_args a = { key, status, live_only, NULL };
	int rc = state_run(st, key ? state_op_list : state_op_list_all, &a);
	if (rc != STATE_OK) {
		cJSON_Delete(a.out);
		return NULL;
	}
	int n = cJSON_GetArraySize(a.out);
	if (n > 1) {
		cJSON **items = malloc(sizeof *items * (size_t)n);
		if (!items) {
			cJSON_Delete(a.out);
			return NULL;
		}
		int i = 0;
		while (a.out->child)
			items[i++] = cJSON_DetachItemViaPointer(a.out, a.out->child);
		qsort(items, (size_t)n, sizeof *items, state_cmp_records);
		for (i = 0; i < n; i++)
			cJSON_AddItemToArray(a.out, items[i]);
		free(items);
	}
	return a.out;
}

cJSON *state_list_room(struct state *st, const char *room_id)
{
	char key[512];
	if (!st || !room_id || !room_id[0])
		return NULL;
	snprintf(key, sizeof key, STATE_KEY_PREFIX "room:%s", room_id);
	return state_list(st, key, NULL, false);
}

cJSON *state_list_user(struct state *st, const char *user_id, const char *status_or_null)
{
	char key[512];
	if (!st || !user_id || !user_id[0])
		return NULL;
	snprintf(key, sizeof key, STATE_KEY_PREFIX "user:%s", user_id);
	return state_list(st, key, status_or_null, false);
}

cJSON *state_list_all(struct state *st, const char *status_or_null)
{
	if (!st)
		return NULL;
	return state_list(st, NULL, status_or_null, false);
}

/* Removes one record and everything kept beside it (see state_delete). */
static int state_op_delete(struct state *st, redisContext *c, void *arg)
{
	const cJSON *rec = arg;
	const char *id = state_record_str(rec, "recording_id");
	const char *room = state_record_str(rec, "room_id");
	const char *user = state_record_str(rec, "user_id");
	(void)st;
	if (!id || !room || !user)
		return STATE_ERR_INVALID;
	redisAppendCommand(c, "MULTI");
	redisAppendCommand(c, "DEL " STATE_KEY_PREFIX "state:%s " STATE_KEY_PREFIX "job:%s " STATE_KEY_PREFIX
			      "owner:%s", id, id, id);
	redisAppendCommand(c, "SREM " STATE_KEY_PREFIX "room:%s %s", room, id);
	redisAppendCommand(c, "SREM " STATE_KEY_PREFIX "user:%s %s", user, id);
	redisAppendCommand(c, "ZREM " STATE_KEY_PREFIX "records:user:%s %s", user, id);
	redisAppendCommand(c, "EXEC");
	int rc = STATE_OK;
	for (int i = 0; i < 6; i++) {
		redisReply *r = NULL;
		if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
			return STATE_ERR_REDIS;
		}
		if (r->type == REDIS_REPLY_ERROR || (i == 5 && r->type != REDIS_REPLY_ARRAY))
			rc = STATE_ERR_REDIS;
		freeReplyObject(r);
	}
	return rc;
}

int state_delete(struct state *st, const cJSON *rec)
{
	if (!st || !rec)
		return STATE_ERR_INVALID;
	int rc = state_run(st, state_op_delete, (void *)rec);
	return rc == STATE_ERR_CONN ? STATE_ERR_REDIS : rc;
}

cJSON *state_list_owned_live(struct state *st, const char *node_id)
{
	char key[512];
	if (!st)
		return NULL;
	snprintf(key, sizeof key, STATE_KEY_PREFIX "node:%s", node_id && node_id[0] ? node_id : st->node_id);
	return state_list(st, key, NULL, true);
}

static int state_op_scard(struct state *st, redisContext *c, void *arg)
{
	long long *out = arg;
	redisReply *r = redisCommand(c, "SCARD " STATE_KEY_PREFIX "active");
	if (!r)
		return STATE_ERR_REDIS;
	int rc = r->type == REDIS_REPLY_INTEGER ? STATE_OK : STATE_ERR_REDIS;
	*out = r->integer;
	freeReplyObject(r);
	return rc;
}

long long state_active_count(struct state *st)
{
	long long n = 0;
	if (!st)
		return STATE_ERR_INVALID;
	int rc = state_run(st, state_op_scard, &n);
	if (rc != STATE_OK)
		return STATE_ERR_REDIS;
	return n;
}

/* Counts the stored records by status: SCAN over the state keys in
 * batches (Redis is never blocked for long), MGET each batch, read each
 * record's status. */
static int state_op_count(struct state *st, redisContext *c, void *arg)
{
	long long *counts = arg;
	char cursor[32] = "0";
	memset(counts, 0, sizeof(long long) * STATE_STATUS_COUNT);
	do {
		redisReply *r = redisCommand(c, "SCAN %s MATCH " STATE_KEY_PREFIX "state:* COUNT 500", cursor);
		if (!r)
			return STATE_ERR_REDIS;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			return STATE_ERR_REDIS;
		}
		util_strlcpy(cursor, r->element[0]->str, sizeof(cursor));
		redisReply *keys = r->element[1];
		size_t n = keys->elements;
		const char **argv = n ? calloc(n + 1, sizeof(*argv)) : NULL;
		if (n && !argv) {
			freeReplyObject(r);
			return STATE_ERR_NOMEM;
		}
		if (argv)
			argv[0] = "MGET";
		for (size_t i = 0; i < n; i++)
			argv[i + 1] = keys->element[i]->type == REDIS_REPLY_STRING ? keys->element[i]->str : "";
		redisReply *v = n ? redisCommandArgv(c, (int)n + 1, argv, NULL) : NULL;
		free(argv);
		freeReplyObject(r);
		if (n && (!v || v->type != REDIS_REPLY_ARRAY)) {
			if (v)
				freeReplyObject(v);
			return STATE_ERR_REDIS;
		}
		for (size_t i = 0; v && i < v->elements; i++) {
			if (v->element[i]->type != REDIS_REPLY_STRING)
				continue; /* expired between SCAN and MGET */
			cJSON *rec = cJSON_ParseWithLength(v->element[i]->str, v->element[i]->len);
			int status = rec ? state_record_status(rec) : -1;
			if (status >= 0 && status < STATE_STATUS_COUNT)
				counts[status]++;
			cJSON_Delete(rec);
		}
		if (v)
			freeReplyObject(v);
	} while (strcmp(cursor, "0") != 0);
	return STATE_OK;
}

int state_count_by_status(struct state *st, long long counts[STATE_STATUS_COUNT])
{
	if (!st || !counts)
		return STATE_ERR_INVALID;
	return state_run(st, state_op_count, counts);
}

cJSON *state_journal_get(struct state *st, const char *id)
{
	return state_get_stored(st, STATE_PENDING_JOURNAL, "job", id);
}

static int state_op_ping(struct state *st, redisContext *c, void *arg)
{
	redisReply *r = redisCommand(c, "PING");
	if (!r)
		return STATE_ERR_REDIS;
	int rc = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0 ? STATE_OK : STATE_ERR_REDIS;
	freeReplyObject(r);
	return rc;
}

bool state_healthy(struct state *st)
{
	return st && state_run(st, state_op_ping, NULL) == STATE_OK;
}

int state_subscribe(struct state *st, void (*cb)(void *opaque, const char *room_id, const char *event_json),
		    void *opaque)
{
	if (!st || !cb)
		return STATE_ERR_INVALID;
	return state_sub_add(st, cb, opaque);
}

void state_stats(struct state *st, struct state_stats *out)
{
	memset(out, 0, sizeof *out);
	if (!st)
		return;
	out->redis_up = atomic_load(&st->up);
	out->deferred_writes = atomic_load(&st->n_deferred);
	out->retried_writes = atomic_load(&st->n_retried);
	out->dropped_writes = atomic_load(&st->n_dropped);
	out->reconnects = atomic_load(&st->n_reconnects);
	out->master_changes = st->sentinel ? state_sentinel_changes(st->sentinel) : 0;
	pthread_mutex_lock(&st->pending_lock);
	out->pending_writes = st->pending_count;
	out->pending_max = STATE_PENDING_MAX;
	out->events_received = st->sub ? state_sub_received(st->sub) : 0;
	pthread_mutex_unlock(&st->pending_lock);
	if (st->emb) {
		out->embedded_restarts = state_embedded_restarts(st->emb);
		out->embedded_pid = state_embedded_pid(st->emb);
	}
}
