/* state_sub: the subscriber thread that receives every room event published
 * by any node (PSUBSCRIBE webrtc:recording:events:*) and hands it to the
 * registered callbacks, reconnecting with backoff when Redis goes away. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common_time.h"
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
};

/* Waits up to 'ms' for the wake pipe; true when asked to stop. */
static bool state_sub_sleep(struct state_sub *sub, int64_t ms)
{
	struct pollfd pfd = { .fd = sub->wake[0], .events = POLLIN };
	return poll(&pfd, 1, (int)ms) > 0;
}

/* Hands one pmessage reply to every callback. */
static void state_sub_dispatch(struct state_sub *sub, const redisReply *r)
{
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
	redisContext *c = state_connect(&sub->st->url, 500, 0, err, sizeof err);
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

/* Reads replies until the connection fails or a stop is asked. Returns true
 * when asked to stop. */
static bool state_sub_read(struct state_sub *sub, redisContext *c)
{
	for (;;) {
		void *reply = NULL;
		if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
			return false;
		if (reply) {
			state_sub_dispatch(sub, reply);
			freeReplyObject(reply);
			continue;
		}
		struct pollfd pfd[2] = { { .fd = c->fd, .events = POLLIN }, { .fd = sub->wake[0], .events = POLLIN } };
		int n = poll(pfd, 2, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || pfd[1].revents)
			return true;
		if (pfd[0].revents && redisBufferRead(c) != REDIS_OK)
			return false;
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
