/* state_conn: where Redis is (URL parsing), how one connection to it is
 * opened, authenticated and pointed at its database, and, for a
 * redis-sentinel:// URL, how the master is found and followed through
 * failovers. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "common_thread.h"
#include "common_time.h"
#include "common_util.h"
#include "state_internal.h"

/* Fills 'err' with what is wrong with 'url', its password masked. */
static int state_url_fail(char *err, size_t errlen, const char *what, const char *url)
{
	const char *scheme = strstr(url, "://");
	const char *at = scheme ? strrchr(scheme + 3, '@') : NULL;
	const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
	if (err && errlen && colon)
		snprintf(err, errlen, "redis url '%.*s***%s': %s", (int)(colon + 1 - url), url, at, what);
	else if (err && errlen)
		snprintf(err, errlen, "redis url '%s': %s", url, what);
	return -1;
}

/* Parses a decimal number in [lo, hi] from 's' up to 'end'. */
static int state_url_number(const char *s, const char *end, long lo, long hi, long *out)
{
	char buf[16];
	size_t n = (size_t)(end - s);
	if (n == 0 || n >= sizeof buf)
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	char *e;
	errno = 0;
	long v = strtol(buf, &e, 10);
	if (errno || *e || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* Parses "host[:port]" or "[v6 address][:port]" from 's' up to 'end' into
 * 'a' ('defport' when no port is given). Returns NULL or what is wrong. */
static const char *state_url_hostport(const char *s, const char *end, int defport, struct state_addr *a)
{
	long v;
	const char *hend;
	if (*s == '[') {
		const char *rb = memchr(s, ']', (size_t)(end - s));
		if (!rb)
			return "unterminated [ipv6]";
		if ((size_t)(rb - s - 1) >= sizeof a->host)
			return "host too long";
		memcpy(a->host, s + 1, (size_t)(rb - s - 1));
		a->host[rb - s - 1] = 0;
		hend = rb + 1;
	} else {
		const char *colon = memchr(s, ':', (size_t)(end - s));
		hend = colon ? colon : end;
		if ((size_t)(hend - s) >= sizeof a->host)
			return "host too long";
		memcpy(a->host, s, (size_t)(hend - s));
		a->host[hend - s] = 0;
	}
	if (!a->host[0])
		return "no host";
	a->port = defport;
	if (hend < end) {
		if (*hend != ':' || state_url_number(hend + 1, end, 1, 65535, &v) != 0)
			return "bad port";
		a->port = (int)v;
	}
	return NULL;
}

/* Parses the sentinel part of "redis-sentinel://...": 'p' to 'slash' is
 * "host[:port],host[:port]...", 'slash' starts "/mastername[/db]". */
static int state_url_sentinels(const char *url, const char *p, const char *slash, struct state_url *out,
			       char *err, size_t errlen)
{
	long v;
	if (!slash || !slash[1] || slash[1] == '/')
		return state_url_fail(err, errlen, "no master name (redis-sentinel://host:port,.../mastername)",
				      url);
	for (const char *s = p; s <= slash;) {
		const char *comma = memchr(s, ',', (size_t)(slash - s));
		const char *end = comma ? comma : slash;
		if (out->nsentinels == STATE_SENTINELS_MAX)
			return state_url_fail(err, errlen, "more than 16 sentinels", url);
		if (end == s)
			return state_url_fail(err, errlen, "an empty sentinel address", url);
		const char *why = state_url_hostport(s, end, STATE_SENTINEL_PORT, &out->sentinels[out->nsentinels]);
		if (why)
			return state_url_fail(err, errlen, why, url);
		out->nsentinels++;
		s = end + 1;
	}
	const char *name = slash + 1;
	const char *dbs = strchr(name, '/');
	size_t n = dbs ? (size_t)(dbs - name) : strlen(name);
	if (n >= sizeof out->master_name)
		return state_url_fail(err, errlen, "master name too long", url);
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i]))
			return state_url_fail(err, errlen, "the master name may hold letters, digits, '.', '_' and '-'",
					      url);
	memcpy(out->master_name, name, n);
	out->master_name[n] = 0;
	if (dbs && dbs[1]) {
		if (state_url_number(dbs + 1, dbs + strlen(dbs), 0, 1000000, &v) != 0)
			return state_url_fail(err, errlen, "bad database number", url);
		out->db = (int)v;
	}
	return 0;
}

int state_url_parse(const char *url, struct state_url *out, char *err, size_t errlen)
{
	long v;
	memset(out, 0, sizeof *out);
	if (!url || !url[0])
		return state_url_fail(err, errlen, "empty", "");

	if (url[0] == '/' || strncmp(url, "unix:", 5) == 0) {
		const char *path = url[0] == '/' ? url : url + 5;
		while (path[0] == '/' && path[1] == '/')
			path++;
		const char *q = strchr(path, '?');
		size_t n = q ? (size_t)(q - path) : strlen(path);
		if (path[0] != '/' || n >= sizeof out->unix_path || n < 2)
			return state_url_fail(err, errlen, "the socket path must be absolute and short", url);
		memcpy(out->unix_path, path, n);
		out->unix_path[n] = 0;
		if (q) {
			if (strncmp(q, "?db=", 4) != 0 ||
			    state_url_number(q + 4, q + strlen(q), 0, 1000000, &v) != 0)
				return state_url_fail(err, errlen, "the only query is ?db=N", url);
			out->db = (int)v;
		}
		return 0;
	}

	const char *p;
	bool sentinel = false;
	if (strncmp(url, "redis://", 8) == 0) {
		p = url + 8;
	} else if (strncmp(url, "redis-sentinel://", 17) == 0) {
		p = url + 17;
		sentinel = true;
	} else {
		return state_url_fail(err, errlen,
				      "expected redis://host:port, redis-sentinel://host:port,.../mastername "
				      "or unix:///path",
				      url);
	}
	/* The last '@' ends the credentials, so a password may hold '@' or '/'. */
	const char *at = strrchr(p, '@');
	const char *slash = strchr(at ? at : p, '/');
	const char *end = slash ? slash : p + strlen(p);
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		const char *pw = colon ? colon + 1 : p;
		size_t ulen = colon ? (size_t)(colon - p) : 0;
		size_t plen = (size_t)(at - pw);
		if (ulen >= sizeof out->user || plen >= sizeof out->password)
			return state_url_fail(err, errlen, "credentials too long", url);
		memcpy(out->user, p, ulen);
		out->user[ulen] = 0;
		memcpy(out->password, pw, plen);
		out->password[plen] = 0;
		p = at + 1;
	}
	if (sentinel)
		return state_url_sentinels(url, p, slash, out, err, errlen);
	struct state_addr a;
	const char *why = state_url_hostport(p, end, 6379, &a);
	if (why)
		return state_url_fail(err, errlen, why, url);
	memcpy(out->host, a.host, sizeof out->host);
	out->port = a.port;
	if (slash && slash[1]) {
		if (state_url_number(slash + 1, slash + strlen(slash), 0, 1000000, &v) != 0)
			return state_url_fail(err, errlen, "bad database number", url);
		out->db = (int)v;
	}
	return 0;
}

static struct timeval state_tv(int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	return tv;
}

/* Runs one command whose only acceptable reply is a status or a string;
 * returns 0 or -1 with 'err' filled. */
static int state_connect_setup(redisContext *c, int argc, const char **argv, char *err, size_t errlen)
{
	redisReply *r = redisCommandArgv(c, argc, argv, NULL);
	int rc = 0;
	if (!r) {
		snprintf(err, errlen, "redis %s: %s", argv[0], c->errstr);
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis %s: %s", argv[0], r->str);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

/* Opens a TCP connection to 'host':'port' (or the unix socket of 'url' when
 * 'host' is NULL) with the timeouts; NULL with 'err' filled. */
static redisContext *state_dial(const struct state_url *url, const char *host, int port,
				int64_t connect_timeout_ms, int64_t command_timeout_ms, char *err, size_t errlen)
{
	redisContext *c;
	if (!host)
		c = redisConnectUnixWithTimeout(url->unix_path, state_tv(connect_timeout_ms));
	else
		c = redisConnectWithTimeout(host, port, state_tv(connect_timeout_ms));
	if (!c) {
		snprintf(err, errlen, "redis: out of memory");
		return NULL;
	}
	if (c->err) {
		if (!host)
			snprintf(err, errlen, "redis at %s: %s", url->unix_path, c->errstr);
		else
			snprintf(err, errlen, "redis at %.64s:%d: %s", host, port, c->errstr);
		goto fail;
	}
	if (command_timeout_ms > 0 && redisSetTimeout(c, state_tv(command_timeout_ms)) != REDIS_OK) {
		snprintf(err, errlen, "redis: cannot set the command timeout");
		goto fail;
	}
	return c;

fail:
	redisFree(c);
	return NULL;
}

/* Authenticates 'c' with the credentials of 'url' and selects its database.
 * Returns 0 or -1 with 'err' filled. */
static int state_login(redisContext *c, const struct state_url *url, char *err, size_t errlen)
{
	if (url->password[0]) {
		const char *argv[3] = { "AUTH", url->user[0] ? url->user : url->password, url->password };
		if (state_connect_setup(c, url->user[0] ? 3 : 2, argv, err, errlen) != 0)
			return -1;
	}
	if (url->db) {
		char db[16];
		snprintf(db, sizeof db, "%d", url->db);
		const char *argv[2] = { "SELECT", db };
		if (state_connect_setup(c, 2, argv, err, errlen) != 0)
			return -1;
	}
	return 0;
}

redisContext *state_connect(const struct state_url *url, int64_t connect_timeout_ms,
			    int64_t command_timeout_ms, char *err, size_t errlen)
{
	redisContext *c = state_dial(url, url->unix_path[0] ? NULL : url->host, url->port, connect_timeout_ms,
				     command_timeout_ms, err, errlen);
	if (c && state_login(c, url, err, errlen) != 0) {
		redisFree(c);
		c = NULL;
	}
	return c;
}

/* ---- Redis Sentinel ----
 *
 * The client side of https://redis.io/docs/latest/develop/reference/sentinel-clients/:
 * every new connection asks the sentinels in turn (short timeouts) for the
 * master's address with SENTINEL get-master-addr-by-name, moves the one that
 * answered to the front of the list, connects to that address and checks
 * with ROLE that it is a master (a sentinel with stale information, or a
 * failover under way, gives a replica: wait a little and start over).
 *
 * The last master seen is remembered with a generation number. A connection
 * opened under an older generation is stale: the pool and the subscriber
 * drop theirs and resolve again. The generation moves when a connection
 * finds another master, when a write is refused with READONLY (the master
 * was demoted under a live connection), and when a sentinel announces
 * +switch-master: a watcher thread keeps one subscription on a sentinel so
 * a failover is learnt at once, not at the next failed command. That
 * matters: a master replaced while it still runs keeps saying ROLE master
 * and taking writes for some 8 s, until the sentinels convert it to a
 * replica (which then drops what it took in the meantime); nothing tells a
 * live connection before that but the announcement. */

#define STATE_SENTINEL_CONNECT_MS 300
#define STATE_SENTINEL_COMMAND_MS 500
#define STATE_SENTINEL_ROUNDS 3       /* a replica found: start over this often */
#define STATE_SENTINEL_ROLE_WAIT_MS 250
#define STATE_SENTINEL_WATCH_MIN_MS 100
#define STATE_SENTINEL_WATCH_MAX_MS 2000

static struct log_handle log_sentinel = LOG_HANDLE("state/sentinel");

struct state_sentinel {
	const struct state_url *url;
	pthread_mutex_t lock;    /* guards list, master_host/port */
	struct state_addr list[STATE_SENTINELS_MAX]; /* the one that answered last first */
	int n;
	char master_host[256];   /* the last verified master; empty: none yet, or forgotten */
	int master_port;
	atomic_uint_fast64_t gen;
	atomic_uint_fast64_t changes;
	int moved[2];            /* a byte on moved[1] at every new generation */
	int stop[2];             /* a byte on stop[1] ends the watcher */
	pthread_t watcher;
	bool watching;
	void (*on_change)(void *opaque);
	void *opaque;
};

/* Starts a new generation (under sn->lock): every connection opened before
 * is stale. */
static void state_sentinel_bump(struct state_sentinel *sn)
{
	atomic_fetch_add(&sn->gen, 1);
	atomic_fetch_add(&sn->changes, 1);
	ssize_t w;
	do
		w = write(sn->moved[1], "m", 1);
	while (w < 0 && errno == EINTR);
}

/* Moves the sentinel at 'a' to the front of the list. */
static void state_sentinel_promote(struct state_sentinel *sn, const struct state_addr *a)
{
	pthread_mutex_lock(&sn->lock);
	for (int i = 1; i < sn->n; i++) {
		if (sn->list[i].port != a->port || strcmp(sn->list[i].host, a->host) != 0)
			continue;
		struct state_addr keep = sn->list[i];
		memmove(&sn->list[1], &sn->list[0], sizeof keep * (size_t)i);
		sn->list[0] = keep;
		break;
	}
	pthread_mutex_unlock(&sn->lock);
}

/* Copies the list of sentinels, first to try first; returns how many. */
static int state_sentinel_snapshot(struct state_sentinel *sn, struct state_addr *out)
{
	pthread_mutex_lock(&sn->lock);
	int n = sn->n;
	memcpy(out, sn->list, sizeof *out * (size_t)n);
	pthread_mutex_unlock(&sn->lock);
	return n;
}

/* Steps 1 and 2: asks the sentinels in turn for the master's address.
 * Returns 0 with 'master' filled, or -1 with 'err' saying whether no
 * sentinel answered or none knew the master. */
static int state_sentinel_ask(struct state_sentinel *sn, struct state_addr *master, char *err, size_t errlen)
{
	struct state_addr list[STATE_SENTINELS_MAX];
	int n = state_sentinel_snapshot(sn, list), unknown = 0;
	char last[256] = "";
	for (int i = 0; i < n; i++) {
		redisContext *c = state_dial(sn->url, list[i].host, list[i].port, STATE_SENTINEL_CONNECT_MS,
					     STATE_SENTINEL_COMMAND_MS, last, sizeof last);
		if (!c)
			continue;
		const char *argv[] = { "SENTINEL", "get-master-addr-by-name", sn->url->master_name };
		redisReply *r = redisCommandArgv(c, 3, argv, NULL);
		long port = 0;
		if (!r) {
			snprintf(last, sizeof last, "sentinel %.100s:%d: %.120s", list[i].host, list[i].port, c->errstr);
		} else if (r->type == REDIS_REPLY_NIL) {
			unknown++;
		} else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
			   r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
			   r->element[0]->len < sizeof master->host &&
			   state_url_number(r->element[1]->str, r->element[1]->str + r->element[1]->len, 1, 65535,
					    &port) == 0) {
			util_strlcpy(master->host, r->element[0]->str, sizeof master->host);
			master->port = (int)port;
			freeReplyObject(r);
			redisFree(c);
			if (i > 0)
				state_sentinel_promote(sn, &list[i]);
			return 0;
		} else {
			snprintf(last, sizeof last, "sentinel %.100s:%d: %.120s", list[i].host, list[i].port,
				 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply to get-master-addr-by-name");
		}
		if (r)
			freeReplyObject(r);
		redisFree(c);
	}
	if (unknown == n)
		snprintf(err, errlen, "the redis sentinels do not know master '%s'", sn->url->master_name);
	else
		snprintf(err, errlen, "no redis sentinel answered for master '%s' (%s)", sn->url->master_name,
			 last[0] ? last : "unreachable");
	return -1;
}

/* Step 3: true when 'c' says ROLE master; otherwise false with 'err' filled. */
static bool state_sentinel_is_master(redisContext *c, const struct state_addr *a, char *err, size_t errlen)
{
	redisReply *r = redisCommand(c, "ROLE");
	bool master = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
		      r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0;
	if (!master)
		snprintf(err, errlen, "redis at %s:%d is not a master (%s)", a->host, a->port,
			 !r ? c->errstr
			 : r->type == REDIS_REPLY_ERROR ? r->str
			 : r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING
				 ? r->element[0]->str
				 : "unexpected reply to ROLE");
	if (r)
		freeReplyObject(r);
	return master;
}

/* Remembers the verified master 'a', found by a resolution that started
 * under generation 'gen0'; a different one than before starts a new
 * generation. Returns false when the answer may be stale: the generation
 * moved while this resolution ran (a sentinel may have answered with the
 * old master just before a switch, and the old master says ROLE master
 * until the sentinels convert it, seconds later). */
static bool state_sentinel_found(struct state_sentinel *sn, const struct state_addr *a, uint64_t gen0,
				 uint64_t *gen)
{
	bool changed = false;
	pthread_mutex_lock(&sn->lock);
	bool other = sn->master_port != a->port || strcmp(sn->master_host, a->host) != 0;
	if (other && atomic_load(&sn->gen) != gen0) {
		pthread_mutex_unlock(&sn->lock);
		return false;
	}
	if (other) {
		if (sn->master_host[0]) {
			LOG_WARN(&log_sentinel, "redis master '%s' moved from %s:%d to %s:%d", sn->url->master_name,
				 sn->master_host, sn->master_port, a->host, a->port);
			state_sentinel_bump(sn);
			changed = true;
		} else {
			LOG_INFO(&log_sentinel, "redis master '%s' is %s:%d", sn->url->master_name, a->host, a->port);
		}
		util_strlcpy(sn->master_host, a->host, sizeof sn->master_host);
		sn->master_port = a->port;
	}
	*gen = atomic_load(&sn->gen);
	pthread_mutex_unlock(&sn->lock);
	if (changed && sn->on_change)
		sn->on_change(sn->opaque);
	return true;
}

redisContext *state_sentinel_connect(struct state_sentinel *sn, int64_t command_timeout_ms, uint64_t *gen,
				     char *err, size_t errlen)
{
	for (int round = 0; round < STATE_SENTINEL_ROUNDS; round++) {
		struct state_addr a;
		if (round > 0)
			time_sleep_ns(STATE_SENTINEL_ROLE_WAIT_MS * TIME_NS_PER_MS);
		uint64_t gen0 = atomic_load(&sn->gen);
		if (state_sentinel_ask(sn, &a, err, errlen) != 0)
			return NULL;
		redisContext *c = state_dial(sn->url, a.host, a.port, STATE_SENTINEL_CONNECT_MS, command_timeout_ms,
					     err, errlen);
		if (!c)
			return NULL;
		if (state_login(c, sn->url, err, errlen) == 0 && state_sentinel_is_master(c, &a, err, errlen)) {
			if (state_sentinel_found(sn, &a, gen0, gen))
				return c;
			snprintf(err, errlen, "redis at %s:%d: a stale master (the sentinels have moved on)", a.host,
				 a.port);
		}
		redisFree(c);
		LOG_DEBUG(&log_sentinel, "%s", err);
	}
	return NULL;
}

uint64_t state_sentinel_generation(struct state_sentinel *sn)
{
	return atomic_load(&sn->gen);
}

uint64_t state_sentinel_changes(struct state_sentinel *sn)
{
	return atomic_load(&sn->changes);
}

void state_sentinel_forget(struct state_sentinel *sn, uint64_t seen_gen, const char *why)
{
	bool changed = false;
	pthread_mutex_lock(&sn->lock);
	if (atomic_load(&sn->gen) == seen_gen) {
		LOG_WARN(&log_sentinel, "%s: asking the sentinels for master '%s' again", why, sn->url->master_name);
		sn->master_host[0] = 0;
		sn->master_port = 0;
		state_sentinel_bump(sn);
		changed = true;
	}
	pthread_mutex_unlock(&sn->lock);
	if (changed && sn->on_change)
		sn->on_change(sn->opaque);
}

int state_sentinel_moved_fd(struct state_sentinel *sn)
{
	return sn->moved[0];
}

void state_sentinel_drain(struct state_sentinel *sn)
{
	char buf[64];
	while (read(sn->moved[0], buf, sizeof buf) > 0)
		;
}

enum state_read_end state_read_replies(redisContext *c, int stop_fd, int wake_fd,
				       void (*fn)(void *opaque, const redisReply *r), void *opaque)
{
	for (;;) {
		void *reply = NULL;
		if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
			return STATE_READ_LOST;
		if (reply) {
			fn(opaque, reply);
			freeReplyObject(reply);
			continue;
		}
		struct pollfd pfd[3] = { { .fd = c->fd, .events = POLLIN },
					 { .fd = stop_fd, .events = POLLIN },
					 { .fd = wake_fd, .events = POLLIN } };
		int n = poll(pfd, wake_fd >= 0 ? 3 : 2, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || pfd[1].revents)
			return STATE_READ_STOP;
		if (wake_fd >= 0 && pfd[2].revents)
			return STATE_READ_WOKEN;
		if (pfd[0].revents && redisBufferRead(c) != REDIS_OK)
			return STATE_READ_LOST;
	}
}

/* Waits up to 'ms' for the stop pipe; true when asked to stop. */
static bool state_sentinel_sleep(struct state_sentinel *sn, int64_t ms)
{
	struct pollfd pfd = { .fd = sn->stop[0], .events = POLLIN };
	return poll(&pfd, 1, (int)ms) > 0;
}

/* A message on +switch-master: "<name> <old ip> <old port> <new ip> <new port>". */
static void state_sentinel_on_message(void *opaque, const redisReply *r)
{
	struct state_sentinel *sn = opaque;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "message") != 0 || r->element[2]->type != REDIS_REPLY_STRING)
		return;
	const char *msg = r->element[2]->str;
	size_t n = strlen(sn->url->master_name);
	if (strncmp(msg, sn->url->master_name, n) != 0 || msg[n] != ' ')
		return;
	/* Already following the new master (a connection found it first)? */
	char host[256];
	int port = 0;
	if (sscanf(msg + n, " %*s %*s %255s %d", host, &port) == 2) {
		pthread_mutex_lock(&sn->lock);
		bool known = sn->master_port == port && strcmp(sn->master_host, host) == 0;
		pthread_mutex_unlock(&sn->lock);
		if (known)
			return;
	}
	char why[300];
	snprintf(why, sizeof why, "sentinel announced +switch-master %s", msg);
	state_sentinel_forget(sn, atomic_load(&sn->gen), why);
}

/* Subscribes to +switch-master on the first sentinel that answers and
 * watches the master (one that does not know it would announce nothing);
 * NULL when none does. */
static redisContext *state_sentinel_watch_connect(struct state_sentinel *sn)
{
	struct state_addr list[STATE_SENTINELS_MAX];
	int n = state_sentinel_snapshot(sn, list);
	char err[256];
	for (int i = 0; i < n; i++) {
		redisContext *c = state_dial(sn->url, list[i].host, list[i].port, STATE_SENTINEL_CONNECT_MS,
					     STATE_SENTINEL_COMMAND_MS, err, sizeof err);
		if (!c)
			continue;
		const char *argv[] = { "SENTINEL", "get-master-addr-by-name", sn->url->master_name };
		redisReply *r = redisCommandArgv(c, 3, argv, NULL);
		bool ok = r && r->type == REDIS_REPLY_ARRAY;
		if (r)
			freeReplyObject(r);
		r = ok ? redisCommand(c, "SUBSCRIBE +switch-master") : NULL;
		ok = r && r->type == REDIS_REPLY_ARRAY;
		if (r)
			freeReplyObject(r);
		/* The subscription waits for messages without a deadline. */
		if (ok && redisSetTimeout(c, state_tv(0)) == REDIS_OK) {
			redisEnableKeepAlive(c);
			LOG_DEBUG(&log_sentinel, "watching +switch-master on %s:%d", list[i].host, list[i].port);
			return c;
		}
		redisFree(c);
	}
	return NULL;
}

static void *state_sentinel_watch_main(void *arg)
{
	struct state_sentinel *sn = arg;
	int64_t backoff = STATE_SENTINEL_WATCH_MIN_MS;
	for (;;) {
		redisContext *c = state_sentinel_watch_connect(sn);
		if (!c) {
			if (state_sentinel_sleep(sn, backoff))
				break;
			backoff = backoff * 2 > STATE_SENTINEL_WATCH_MAX_MS ? STATE_SENTINEL_WATCH_MAX_MS : backoff * 2;
			continue;
		}
		backoff = STATE_SENTINEL_WATCH_MIN_MS;
		enum state_read_end end = state_read_replies(c, sn->stop[0], -1, state_sentinel_on_message, sn);
		redisFree(c);
		if (end == STATE_READ_STOP || state_sentinel_sleep(sn, STATE_SENTINEL_WATCH_MIN_MS))
			break;
	}
	return NULL;
}

struct state_sentinel *state_sentinel_new(const struct state_url *url, void (*on_change)(void *opaque),
					  void *opaque, char *err, size_t errlen)
{
	struct state_sentinel *sn = calloc(1, sizeof *sn);
	if (!sn) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	sn->url = url;
	sn->n = url->nsentinels;
	memcpy(sn->list, url->sentinels, sizeof sn->list);
	sn->on_change = on_change;
	sn->opaque = opaque;
	sn->moved[0] = sn->moved[1] = sn->stop[0] = sn->stop[1] = -1;
	pthread_mutex_init(&sn->lock, NULL);
	if (pipe2(sn->moved, O_CLOEXEC | O_NONBLOCK) != 0 || pipe2(sn->stop, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	if (thread_start(&sn->watcher, "redis-sentinel", 0, state_sentinel_watch_main, sn) != 0) {
		snprintf(err, errlen, "cannot start the sentinel watcher");
		goto fail;
	}
	sn->watching = true;
	return sn;

fail:
	state_sentinel_free(sn);
	return NULL;
}

void state_sentinel_free(struct state_sentinel *sn)
{
	if (!sn)
		return;
	if (sn->watching) {
		ssize_t w;
		do
			w = write(sn->stop[1], "x", 1);
		while (w < 0 && errno == EINTR);
		pthread_join(sn->watcher, NULL);
	}
	for (int i = 0; i < 2; i++) {
		if (sn->moved[i] >= 0)
			close(sn->moved[i]);
		if (sn->stop[i] >= 0)
			close(sn->stop[i]);
	}
	pthread_mutex_destroy(&sn->lock);
	free(sn);
}

redisContext *state_open(struct state *st, int64_t connect_timeout_ms, int64_t command_timeout_ms,
			 uint64_t *gen, char *err, size_t errlen)
{
	*gen = 0;
	if (st->sentinel)
		return state_sentinel_connect(st->sentinel, command_timeout_ms, gen, err, errlen);
	return state_connect(&st->url, connect_timeout_ms, command_timeout_ms, err, errlen);
}

bool state_conn_stale(struct state *st, uint64_t gen)
{
	return st->sentinel && state_sentinel_generation(st->sentinel) != gen;
}
