/* state: the recordings' shared state in Redis.
 *
 * Provides: the typed recording record (the exact JSON object of SPEC §3) with
 * a constructor and a validator; the Redis key schema of SPEC §4; the atomic
 * admission script; listings by room, user and owning node; publish/subscribe
 * of room events; a retrying write path that rides out Redis outages; a
 * processing-job journal per recording; and, when no Redis URL is given, an
 * embedded redis-server that this module starts, supervises and stops.
 *
 * Uses: hiredis (this is its only includer), cJSON, common, config.
 *
 * Keys (SPEC §4, exact):
 *   webrtc:recording:state:{id}       JSON string of the record, TTL 7 days
 *   webrtc:recording:room:{room_id}   set of ids, TTL 24 h refreshed on add
 *   webrtc:recording:user:{user_id}   set of ids, TTL 24 h refreshed on add
 *   webrtc:recording:active           set of live (admitted) ids, no TTL
 * Bookkeeping of this appliance, never inside the record:
 *   webrtc:recording:node:{node_id}   set of live ids a node owns, no TTL
 *   webrtc:recording:owner:{id}       hash {node, user, admitted_at}, TTL 7 days
 *   webrtc:recording:live:user:{uid}  set of a user's live ids (per-user limit), no TTL
 *   webrtc:recording:alive:{node_id}  a node's heartbeat, refreshed every 5 s, TTL 30 s
 *   webrtc:recording:nodes            set of the node ids known to hold live ids, no TTL
 *   webrtc:recording:job:{id}         JSON journal of processing steps, TTL 7 days
 *   webrtc:recording:usage:{uid}:{day} hash: seconds booked per finished recording
 *                                     that started on that UTC day, '*' their sum, TTL 2 days
 *   webrtc:recording:records:user:{uid} sorted set of a user's record ids by creation
 *                                     time (the stored-records cap), TTL 7 days refreshed on add
 * The active set is kept honest two ways: every live write re-adds its id
 * (so a Redis that lost its data is rebuilt by the retried writes), and
 * admission takes the slots of nodes whose heartbeat has expired (a node
 * that died for good does not hold them forever; its node set is kept for
 * its own recovery if it returns).
 * Channel of room events: webrtc:recording:events:{room_id}.
 *
 * Threads: every function may be called from any thread. Commands run on a
 * small pool of Redis connections (STATE_POOL_SIZE); a caller borrows one
 * connection for the duration of one call, so calls never share a
 * connection. The subscriber, the retry writer, the embedded-server
 * supervisor and, with Redis Sentinel, the +switch-master watcher each run
 * on their own thread. */
#ifndef EDGEREC_STATE_H
#define EDGEREC_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define STATE_POOL_SIZE 8

#define STATE_TTL_RECORD_S (7 * 24 * 3600)
#define STATE_TTL_INDEX_S (24 * 3600)

/* Return codes of the int functions (0 is success). */
enum {
	STATE_OK = 0,
	STATE_REFUSED = 1,     /* state_admit: a limit is reached (see reason) */
	STATE_DEFERRED = 2,    /* Redis unreachable: the write is kept and retried */
	STATE_ERR_INVALID = -1, /* bad argument or a record that fails validation */
	STATE_ERR_REDIS = -2,  /* Redis unreachable or replied with an error */
	STATE_ERR_FULL = -3,   /* the retry buffer is full; the write is lost */
	STATE_ERR_NOMEM = -4,
};
const char *state_strerror(int code);

/* Statuses of SPEC §3. */
enum state_status {
	STATE_STATUS_PENDING = 0,
	STATE_STATUS_RECORDING,
	STATE_STATUS_PAUSED,
	STATE_STATUS_PROCESSING,
	STATE_STATUS_COMPLETED,
	STATE_STATUS_FAILED,
	STATE_STATUS_CANCELLED,
	STATE_STATUS_COUNT,
};
/* "pending" etc.; NULL for an out-of-range value. */
const char *state_status_name(enum state_status s);
/* Parses a status name; returns -1 when unknown. */
int state_status_parse(const char *name);
/* pending, recording and paused are live (capture may be running). */
bool state_status_is_live(enum state_status s);
/* The transitions of SPEC §3: pending -> recording, recording <-> paused,
 * recording|paused -> processing, processing -> completed|failed,
 * pending|recording|paused -> cancelled, any live state -> failed. */
bool state_transition_allowed(enum state_status from, enum state_status to);

/* ---- The record (a cJSON object with exactly the fields of SPEC §3) ---- */

struct state_record_init {
	const char *recording_id;    /* NULL: a fresh uuid v4 */
	const char *room_id;
	const char *user_id;
	const char *format;          /* webm | mp4 | mkv */
	const char *quality;         /* low | medium | high | ultra */
	const char *resolution;      /* quality_settings.resolution, "1280x720" */
	const char *video_bitrate;   /* quality_settings.video_bitrate, "2.5M" */
	const char *audio_bitrate;   /* quality_settings.audio_bitrate, "128k" */
	int fps;                     /* quality_settings.fps */
	const char *storage_backend; /* local | s3; NULL: local */
	const char *local_path;      /* the recording's directory */
	const char *file_name;       /* NULL: recording_{id}.{format} */
	int64_t started_at_wall_ns;  /* 0: now */
};

/* Builds a record with every field of SPEC §3: status "pending", the given
 * values, started_at set, the other timestamps, s3_key and error null,
 * duration_seconds 0, file_size_bytes 0, metadata {}. Returns a new object
 * (the reference goes to the caller) or NULL with 'err' filled. */
cJSON *state_record_new(const struct state_record_init *in, char *err, size_t errlen);

/* Checks that 'rec' has exactly the fields of SPEC §3 with the right types
 * (strings, numbers, null where allowed, ISO-8601 timestamps, a uuid id, a
 * known status/format/quality/backend). Returns 0, or STATE_ERR_INVALID with
 * the first problem in 'err'. */
int state_record_validate(const cJSON *rec, char *err, size_t errlen);

/* Small typed accessors on a record. The getters return NULL / -1 / 0 when
 * the field is missing or null. The setters replace the field in place and
 * return 0, or STATE_ERR_INVALID for an unknown field name. */
const char *state_record_str(const cJSON *rec, const char *field);
int state_record_status(const cJSON *rec);
int state_record_set_str(cJSON *rec, const char *field, const char *value_or_null);
int state_record_set_status(cJSON *rec, enum state_status s);
/* Sets a timestamp field (started_at, paused_at, ...) to ISO-8601 UTC, or to
 * null when 'wall_ns' is 0. */
int state_record_set_time(cJSON *rec, const char *field, int64_t wall_ns);
int state_record_set_number(cJSON *rec, const char *field, double value);

/* ---- The store ---- */

struct state;

/* Connects to the Redis at 'redis_url' ("redis://[:password@]host[:port][/db]",
 * "unix:///path/to.sock[?db=N]", or
 * "redis-sentinel://[:password@]host[:port],host[:port].../mastername[/db]":
 * the master the sentinels name, checked with ROLE, re-resolved after a
 * lost connection, a READONLY refusal or a +switch-master announcement,
 * with every connection, the subscriber's included, moved to the new
 * master), or, when 'redis_url' is NULL or empty,
 * starts an embedded redis-server on the unix socket 'state_dir'/redis.sock
 * (config generated in 'state_dir', appendonly yes, dir 'state_dir'), waits
 * until it answers PING and supervises it (restarts it if it dies).
 * 'node_id' names this process for ownership of live recordings (NULL: the
 * host name). Loads the scripts. Returns NULL with 'err' filled when Redis
 * cannot be reached or started. */
struct state *state_new(const char *redis_url, const char *state_dir, const char *node_id,
			char *err, size_t errlen);
/* Flushes what it can of the retry buffer (bounded wait), stops the
 * subscriber, closes connections and stops the embedded server if it started
 * one. state_free(NULL) is a no-op. No other call may be in flight. */
void state_free(struct state *st);

const char *state_node_id(const struct state *st);

/* Writes a record (validated first): SET state key EX 7d; SADD room and user
 * sets and refresh their 24 h TTL. A live status (pending/recording/paused)
 * marks the record as owned by this node and keeps it in the active set
 * (write only admitted recordings as live); any other status removes it
 * from the active set and from the live bookkeeping (as state_release).
 * Atomic (one script). When Redis cannot be reached the write is kept in a
 * bounded buffer, latest record per recording id wins, and retried in the
 * background in order; the call then returns STATE_DEFERRED. 'rec' is not
 * taken. */
int state_put(struct state *st, const cJSON *rec);

/* Returns the record of 'id' (a new object, the caller frees it), or NULL
 * when missing or on error. While a newer write for 'id' waits in the retry
 * buffer, that newer record is returned. */
cJSON *state_get(struct state *st, const char *id);

/* The admission script (EVALSHA, reloaded on NOSCRIPT): atomically checks
 * SCARD of the active set against 'global_limit' and the user's live count
 * against 'user_limit' (<= 0: no limit) and, if both allow, SADDs 'id' to the
 * active set and records the owner (this node, 'user_id'). Returns STATE_OK
 * (also when 'id' is already admitted), STATE_REFUSED with a human reason
 * ("maximum concurrent recordings (10) reached"), or a negative error. */
int state_admit(struct state *st, const char *id, const char *user_id, int global_limit,
		int user_limit, char *reason, size_t reasonlen);

/* What one user is using now, read in proportion to their live recordings
 * (never their history): the admitted live recordings and the seconds
 * recorded in the UTC day of 'now_wall_ns' (0: now) by recordings that
 * started that day (finished ones as booked by state_put, running ones by
 * the time since their start, paused ones by their duration). */
struct state_user_usage {
	long long live;
	double seconds_today;
};
int state_user_usage(struct state *st, const char *user_id, int64_t now_wall_ns, struct state_user_usage *out);

/* Adds a new record 'id' to its user's index of stored records
 * (webrtc:recording:records:user:{user}, a sorted set by creation time)
 * unless the user already has 'cap' stored records; ids whose state has
 * expired or was deleted do not count. Sets '*count' to the records the
 * user has (with 'id' when added). Returns STATE_OK, STATE_REFUSED at the
 * cap, or a negative error. */
int state_user_record_add(struct state *st, const char *user_id, const char *id, int cap, long long *count);

/* Removes 'id' from the active set and the live bookkeeping. Deferred like
 * state_put when Redis is unreachable. */
int state_release(struct state *st, const char *id);

/* Listings: new arrays of records (the caller frees), newest started_at
 * first, ids whose state expired skipped. NULL on error. */
cJSON *state_list_room(struct state *st, const char *room_id);
cJSON *state_list_user(struct state *st, const char *user_id, const char *status_or_null);
/* Every record in the store (SCAN over the state keys, so its cost
 * follows the number of records kept, 7 days of them), optionally of one
 * status: what an admin lists. */
cJSON *state_list_all(struct state *st, const char *status_or_null);
/* Removes the record 'rec' (a state object, not taken) for good: its
 * state key, processing journal and owner entry, and its id from the room,
 * user and stored-records indexes, in one MULTI/EXEC. Not deferred: returns
 * STATE_OK, or STATE_ERR_REDIS when Redis cannot be reached (nothing was
 * removed). For final recordings only (a live one still holds its slot). */
int state_delete(struct state *st, const cJSON *rec);
/* Records owned by 'node_id' that are still pending/recording/paused: what a
 * node must reconcile after a crash. Stale entries are pruned. */
cJSON *state_list_owned_live(struct state *st, const char *node_id);
/* SCARD of the active set, or a negative error. */
long long state_active_count(struct state *st);
/* Counts every stored record by status (all nodes; 'counts' is indexed by
 * enum state_status), reading them in batches: O(records), for /metrics
 * at most every few seconds. A record changing status during the count
 * may be counted under either. Returns STATE_OK or an error. */
int state_count_by_status(struct state *st, long long counts[STATE_STATUS_COUNT]);

/* Publishes 'event_json' on the room's channel. Deferred (bounded FIFO) when
 * Redis is unreachable. */
int state_publish(struct state *st, const char *room_id, const char *event_json);

/* Registers 'cb' for every room event published by any node (pattern
 * subscription on webrtc:recording:events:*). Called on the subscriber
 * thread with the room id and the event text; it must be quick and must not
 * call state_free. The thread reconnects (with backoff) after Redis
 * restarts; events published while it is disconnected are not replayed
 * (Redis publish/subscribe keeps nothing). Up to 8 callbacks. Returns 0 or
 * a negative error. */
int state_subscribe(struct state *st,
		    void (*cb)(void *opaque, const char *room_id, const char *event_json),
		    void *opaque);

/* Processing journal: a JSON object per recording (for example
 * {"step": "remuxed", "at": "..."}) kept 7 days. set does not take 'journal';
 * get returns a new object or NULL; delete removes it. */
int state_journal_set(struct state *st, const char *id, const cJSON *journal);
cJSON *state_journal_get(struct state *st, const char *id);
int state_journal_delete(struct state *st, const char *id);

/* True when Redis answers PING now. */
bool state_healthy(struct state *st);

struct state_stats {
	bool redis_up;
	uint64_t deferred_writes;  /* writes that went to the retry buffer */
	uint64_t retried_writes;   /* deferred writes later written */
	uint64_t dropped_writes;   /* lost because the buffer was full */
	size_t pending_writes;     /* waiting in the buffer now */
	size_t pending_max;        /* what the buffer holds at most */
	uint64_t reconnects;       /* connections (re)opened */
	uint64_t master_changes;   /* redis-sentinel://: times the master moved (or was forgotten) */
	uint64_t events_received;  /* by the subscriber */
	uint64_t embedded_restarts;
	int embedded_pid;          /* 0 when not embedded or not running */
};
void state_stats(struct state *st, struct state_stats *out);

#endif
