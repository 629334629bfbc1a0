/* state_sub: the subscriber thread that receives every room event published
 * by any node (PSUBSCRIBE webrtc:recording:events:*) and hands it to the
 * registered callbacks, reconnecting with backoff when Redis goes away, and
 * moving to the new master when a sentinel failover replaces it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common_time.h"
#include "common_util.h"
#include "state_internal.h"

static struct log_handle log_sub = LOG_HANDLE("state/sub");

#define STATE_SUB_MAX_CB 8
#define STATE_SUB_BACKOFF_MIN_MS 100
#define STATE_SUB_BACKOFF_MAX_MS 2000

struct state_sub_cb {
	void (*fn)(void *opaque, const char *room_id, const char *event_json);
	void *opaque;
};

struct state_sub {
	struct state *st;
	pthread_t thread;
	int wake[2];            /* a byte on wake[1] stops the thread */
	pthread_mutex_t lock;   /* guards cbs */
	struct state_sub_cb cbs[STATE_SUB_MAX_CB];
	int ncbs;
	atomic_uint_fast64_t received;
	uint64_t gen;           /* the sentinel generation of the connection */
};

/* Waits up to 'ms' for the wake pipe; true when asked to stop. */
static bool state_sub_sleep(struct state_sub *sub, int64_t ms)
{
	struct pollfd pfd = { .fd = sub->wake[0], .events = POLLIN };
	return poll(&pfd, 1, (int)ms) > 0;
}

/* Hands one pmessage reply to every callback. */
static void state_sub_dispatch(void *opaque, const redisReply *r)
{
	struct state_sub *sub = opaque;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 || r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "pmessage") != 0 || r->element[2]->type != REDIS_REPLY_STRING ||
	    r->element[3]->type != REDIS_REPLY_STRING)
		return;
	const char *channel = r->element[2]->str;
	size_t plen = strlen(STATE_CHANNEL_PREFIX);
	if (strncmp(channel, STATE_CHANNEL_PREFIX, plen) != 0 || !channel[plen])
		return;
	atomic_fetch_add(&sub->received, 1);
	struct state_sub_cb cbs[STATE_SUB_MAX_CB];
	pthread_mutex_lock(&sub->lock);
	int n = sub->ncbs;
	memcpy(cbs, sub->cbs, sizeof cbs);
	pthread_mutex_unlock(&sub->lock);
	for (int i = 0; i < n; i++)
		cbs[i].fn(cbs[i].opaque, channel + plen, r->element[3]->str);
}

/* Connects and subscribes; NULL when Redis is unreachable. */
static redisContext *state_sub_connect(struct state_sub *sub)
{
	char err[256];
	redisContext *c = state_open(sub->st, 500, 0, &sub->gen, err, sizeof err);
	if (!c) {
		LOG_DEBUG(&log_sub, "%s", err);
		return NULL;
	}
	if (!sub->st->url.unix_path[0])
		redisEnableKeepAlive(c);
	redisReply *r = redisCommand(c, "PSUBSCRIBE %s*", STATE_CHANNEL_PREFIX);
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		LOG_WARN(&log_sub, "PSUBSCRIBE failed: %s", r ? "unexpected reply" : c->errstr);
		if (r)
			freeReplyObject(r);
		redisFree(c);
		return NULL;
	}
	freeReplyObject(r);
	return c;
}

/* Reads replies until the connection fails, the master moves (a sentinel
 * failover: the subscription must follow it) or a stop is asked. Returns
 * true when asked to stop. */
static bool state_sub_read(struct state_sub *sub, redisContext *c)
{
	struct state_sentinel *sn = sub->st->sentinel;
	for (;;) {
		enum state_read_end end =
			state_read_replies(c, sub->wake[0], sn ? state_sentinel_moved_fd(sn) : -1, state_sub_dispatch, sub);
		if (end != STATE_READ_WOKEN)
			return end == STATE_READ_STOP;
		state_sentinel_drain(sn);
		if (state_conn_stale(sub->st, sub->gen)) {
			util_strlcpy(c->errstr, "the redis master moved", sizeof c->errstr);
			return false;
		}
	}
}

static void *state_sub_main(void *arg)
{
	struct state_sub *sub = arg;
	int64_t backoff = STATE_SUB_BACKOFF_MIN_MS;
	bool was_connected = false;
	for (;;) {
		redisContext *c = state_sub_connect(sub);
		if (!c) {
			if (state_sub_sleep(sub, backoff))
				break;
			backoff = backoff * 2 > STATE_SUB_BACKOFF_MAX_MS ? STATE_SUB_BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		LOG_INFO(&log_sub, "%s room events", was_connected ? "resubscribed to" : "subscribed to");
		was_connected = true;
		backoff = STATE_SUB_BACKOFF_MIN_MS;
		bool stop = state_sub_read(sub, c);
		if (!stop)
			LOG_WARN(&log_sub, "subscription lost (%s); reconnecting", c->errstr[0] ? c->errstr : "closed");
		redisFree(c);
		if (stop || state_sub_sleep(sub, STATE_SUB_BACKOFF_MIN_MS))
			break;
	}
	return NULL;
}

int state_sub_add(struct state *st, void (*cb)(void *, const char *, const char *), void *opaque)
{
	int rc = STATE_OK;
	pthread_mutex_lock(&st->pending_lock);
	struct state_sub *sub = st->sub;
	if (!sub) {
		sub = calloc(1, sizeof *sub);
		if (!sub) {
			rc = STATE_ERR_NOMEM;
			goto out;
		}
		sub->st = st;
		pthread_mutex_init(&sub->lock, NULL);
		if (pipe2(sub->wake, O_CLOEXEC) != 0) {
			pthread_mutex_destroy(&sub->lock);
			free(sub);
			rc = STATE_ERR_NOMEM;
			goto out;
		}
		sub->cbs[0].fn = cb;
		sub->cbs[0].opaque = opaque;
		sub->ncbs = 1;
		if (pthread_create(&sub->thread, NULL, state_sub_main, sub) != 0) {
			close(sub->wake[0]);
			close(sub->wake[1]);
			pthread_mutex_destroy(&sub->lock);
			free(sub);
			rc = STATE_ERR_NOMEM;
			goto out;
		}
		st->sub = sub;
		goto out;
	}
	pthread_mutex_lock(&sub->lock);
	if (sub->ncbs < STATE_SUB_MAX_CB) {
		sub->cbs[sub->ncbs].fn = cb;
		sub->cbs[sub->ncbs].opaque = opaque;
		sub->ncbs++;
	} else {
		rc = STATE_ERR_INVALID;
	}
	pthread_mutex_unlock(&sub->lock);
out:
	pthread_mutex_unlock(&st->pending_lock);
	return rc;
}

void state_sub_free(struct state_sub *sub)
{
	if (!sub)
		return;
	ssize_t w;
	do
		w = write(sub->wake[1], "x", 1);
	while (w < 0 && errno == EINTR);
	pthread_join(sub->thread, NULL);
	close(sub->wake[0]);
	close(sub->wake[1]);
	pthread_mutex_destroy(&sub->lock);
	free(sub);
}

uint64_t state_sub_received(const struct state_sub *sub)
{
	return atomic_load(&sub->received);
}
