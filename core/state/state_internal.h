/* state_internal: what the files of core/state share and nobody else sees:
 * the store struct, the connection pool, the Redis URL parser, the
 * subscriber and the embedded-server supervisor.
 *
 * Uses: hiredis. Lock order: write_lock, then pending_lock, then pool_lock. */
#ifndef EDGEREC_STATE_INTERNAL_H
#define EDGEREC_STATE_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include <hiredis/hiredis.h>

#include "common_log.h"
#include "state.h"

/* A connection failed (as opposed to Redis answering with an error). Never
 * returned to callers of state.h: writes turn it into STATE_DEFERRED, reads
 * into STATE_ERR_REDIS. */
#define STATE_ERR_CONN (-100)

#define STATE_KEY_PREFIX "webrtc:recording:"
#define STATE_CHANNEL_PREFIX STATE_KEY_PREFIX "events:"
#define STATE_PENDING_MAX 4096
#define STATE_PENDING_EVENTS_MAX 1024

/* Where Redis is, as parsed from a URL. */
struct state_url {
	char host[256];
	int port;
	char unix_path[PATH_MAX];
	char user[128];
	char password[256];
	int db;
};

/* Parses "redis://[[user]:password@]host[:port][/db]", "unix:///path[?db=N]",
 * "unix:/path" or a bare absolute path. Returns 0 or -1 with 'err' filled. */
int state_url_parse(const char *url, struct state_url *out, char *err, size_t errlen);

struct state_conn {
	redisContext *c;
	bool busy;
	bool reused; /* has served a command before: a failure may be staleness */
};

enum state_pending_kind {
	STATE_PENDING_PUT,
	STATE_PENDING_RELEASE,
	STATE_PENDING_JOURNAL,
	STATE_PENDING_PUBLISH,
};

/* A write waiting for Redis. For PUT, RELEASE and JOURNAL the latest entry
 * per (kind, id) replaces the earlier one; PUBLISH entries queue in order. */
struct state_pending {
	struct state_pending *next;
	enum state_pending_kind kind;
	char *id;       /* recording id, or room id for PUBLISH */
	char *payload;  /* JSON text; NULL for RELEASE and for a journal delete */
	char *room_id;  /* PUT */
	char *user_id;  /* PUT */
	bool live;      /* PUT */
};

struct state_sub;
struct state_embedded;

struct state {
	struct state_url url;
	char node_id[128];
	char state_dir[PATH_MAX];

	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	struct state_conn pool[STATE_POOL_SIZE];
	int64_t down_until_ns;  /* under pool_lock: fail fast until then */
	atomic_bool up;

	char sha_put[41], sha_admit[41], sha_release[41], sha_usage[41], sha_records[41];

	pthread_mutex_t write_lock;   /* serializes every write to Redis */
	pthread_mutex_t pending_lock; /* guards the list below */
	pthread_cond_t pending_cond;
	struct state_pending *pending_head, *pending_tail;
	size_t pending_count, pending_events;
	struct state_pending *inflight; /* taken off the list, being written */
	bool stopping;
	pthread_t retry_thread;
	bool retry_started;

	struct state_sub *sub;
	struct state_embedded *emb;

	atomic_uint_fast64_t n_deferred, n_retried, n_dropped, n_reconnects;
};

/* Opens a connection to 'url' with the given timeouts, authenticating and
 * selecting the database. Returns NULL with 'err' filled. */
redisContext *state_connect(const struct state_url *url, int64_t connect_timeout_ms,
			    int64_t command_timeout_ms, char *err, size_t errlen);

/* state_sub.c: the subscriber thread. */
int state_sub_add(struct state *st, void (*cb)(void *, const char *, const char *), void *opaque);
void state_sub_free(struct state_sub *sub);
uint64_t state_sub_received(const struct state_sub *sub);

/* state_embedded.c: the embedded redis-server. Starts it under 'state_dir'
 * and fills 'url' with its socket once it answers PING. */
struct state_embedded *state_embedded_start(const char *state_dir, struct state_url *url,
					    char *err, size_t errlen);
void state_embedded_stop(struct state_embedded *emb);
int state_embedded_pid(const struct state_embedded *emb);
uint64_t state_embedded_restarts(const struct state_embedded *emb);

#endif
