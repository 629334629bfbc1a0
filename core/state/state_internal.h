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

#define STATE_SENTINELS_MAX 16
#define STATE_SENTINEL_PORT 26379

struct state_addr {
	char host[256];
	int port;
};

/* Where Redis is, as parsed from a URL. With a master name, host/port are
 * unused: the master is asked of the sentinels. */
struct state_url {
	char host[256];
	int port;
	char unix_path[PATH_MAX];
	char user[128];
	char password[256];
	int db;
	char master_name[128];
	struct state_addr sentinels[STATE_SENTINELS_MAX];
	int nsentinels;
};

/* Parses "redis://[[user]:password@]host[:port][/db]",
 * "redis-sentinel://[[user]:password@]host[:port][,host[:port]...]/mastername[/db]"
 * (sentinel port 26379 by default; the credentials and db are the
 * master's), "unix:///path[?db=N]", "unix:/path" or a bare absolute path.
 * Returns 0 or -1 with 'err' filled (the password masked). */
int state_url_parse(const char *url, struct state_url *out, char *err, size_t errlen);

struct state_conn {
	redisContext *c;
	bool busy;
	bool reused;  /* has served a command before: a failure may be staleness */
	uint64_t gen; /* the sentinel generation it was opened under */
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
	struct state_sentinel *sentinel; /* NULL unless the URL is redis-sentinel:// */
	char last_err[256];              /* under pool_lock: why the last connect failed */

	atomic_uint_fast64_t n_deferred, n_retried, n_dropped, n_reconnects;
};

/* Opens a connection to 'url' with the given timeouts, authenticating and
 * selecting the database. Returns NULL with 'err' filled. */
redisContext *state_connect(const struct state_url *url, int64_t connect_timeout_ms,
			    int64_t command_timeout_ms, char *err, size_t errlen);

/* Opens a connection for 'st' to its Redis: through the sentinels to the
 * current master for a sentinel URL (setting '*gen' to the generation the
 * connection belongs to), else straight to the URL ('*gen' = 0). */
redisContext *state_open(struct state *st, int64_t connect_timeout_ms, int64_t command_timeout_ms,
			 uint64_t *gen, char *err, size_t errlen);
/* True when a connection opened under 'gen' must be replaced: the master
 * moved since. */
bool state_conn_stale(struct state *st, uint64_t gen);

/* How state_read_replies() ended. */
enum state_read_end { STATE_READ_STOP, STATE_READ_LOST, STATE_READ_WOKEN };
/* Reads the replies of a subscribed connection 'c', handing each to 'fn',
 * until the connection fails (LOST), 'stop_fd' is readable (STOP) or
 * 'wake_fd' (when >= 0) is (WOKEN). */
enum state_read_end state_read_replies(redisContext *c, int stop_fd, int wake_fd,
				       void (*fn)(void *opaque, const redisReply *r), void *opaque);

/* The master of a redis-sentinel:// URL (state_conn.c). 'url' must outlive
 * it. new() starts the +switch-master watcher; 'on_change' is called (on
 * any thread, no lock of the store held) whenever the generation moves. */
struct state_sentinel;
struct state_sentinel *state_sentinel_new(const struct state_url *url, void (*on_change)(void *opaque),
					  void *opaque, char *err, size_t errlen);
void state_sentinel_free(struct state_sentinel *sn);
/* Resolves the master (sentinels in turn, then ROLE) and connects to it,
 * authenticated and in its database. NULL with 'err' filled. */
redisContext *state_sentinel_connect(struct state_sentinel *sn, int64_t command_timeout_ms, uint64_t *gen,
				     char *err, size_t errlen);
uint64_t state_sentinel_generation(struct state_sentinel *sn);
/* How often the master changed (or was forgotten) since start. */
uint64_t state_sentinel_changes(struct state_sentinel *sn);
/* Forgets the master after 'why' (a write refused with READONLY on a
 * connection of generation 'seen_gen'): a new generation starts, unless one
 * already has since 'seen_gen'. */
void state_sentinel_forget(struct state_sentinel *sn, uint64_t seen_gen, const char *why);
/* Readable after each new generation; state_sentinel_drain() empties it. */
int state_sentinel_moved_fd(struct state_sentinel *sn);
void state_sentinel_drain(struct state_sentinel *sn);

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
