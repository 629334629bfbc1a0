/* recorder_internal: what the recorder's files share: the manager, a live
 * recording (session) and a processing job. Not for other modules.
 *
 * Locks, outermost first:
 *   session.lock       one recording's operations (requests, control thread)
 *   recorder.lock      the session list, counters, in-flight jobs, hooks
 *   session.ev_lock    the flags the pipeline threads raise (leaf)
 *   recorder.ctl_lock  the control thread's wake-up (leaf)
 * recorder.lock is never held while a session lock is taken: callers take a
 * reference under recorder.lock, drop it, then lock the session. */
#ifndef EDGEREC_RECORDER_INTERNAL_H
#define EDGEREC_RECORDER_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common_util.h"
#include "recorder.h"

struct media_pipeline;
struct queue;
struct recorder_relay;

#define RECORDER_ROOM_MAX 129
#define RECORDER_USER_MAX 256
#define RECORDER_PATH_MAX 1280
#define RECORDER_STORAGE_MAX 768 /* local_storage_path, leaving room for what is below it */
#define RECORDER_DETAIL_MAX 256

/* One live recording (pending, recording or paused) held by this node. */
struct recorder_session {
	struct recorder_session *next; /* in recorder.sessions */
	struct recorder *r;
	int refs;                      /* under recorder.lock */
	char id[UUID_STR_LEN];
	char room_id[RECORDER_ROOM_MAX];
	char user_id[RECORDER_USER_MAX];
	char live_path[RECORDER_PATH_MAX]; /* the file the pipeline writes */

	pthread_mutex_t lock;
	enum recorder_status status;   /* under lock */
	cJSON *rec;                    /* latest state object, under lock */
	struct media_pipeline *pipeline; /* under lock; NULL once stopped */
	int64_t max_duration_ns;       /* auto-stop after this much active time */
	int64_t started_mono_ns;       /* when the pipeline was started */
	long long encode_rate;         /* pixels/s reserved in the node's encode ledger */
	int64_t refreshed_mono_ns;     /* when duration/size were last stored */
	bool ended;                    /* left the live statuses; under lock */

	pthread_mutex_t ev_lock;
	pthread_cond_t ev_cond;
	bool ev_first_frame;           /* raised by the pipeline, under ev_lock */
	bool ev_fault;
	bool ev_eof;
	bool ev_first_frame_seen;      /* already applied (under lock) */
	unsigned ev_degrade;           /* degradation moves raised, under ev_lock */
	unsigned ev_degrade_seen;      /* ... of which applied (under lock) */
	char ev_detail[RECORDER_DETAIL_MAX];
	atomic_int src_stalled;        /* raised by the pipeline: 1 stalled, 0 flowing */
	bool src_stalled_shown;        /* what metadata says; under lock */
	int64_t src_stalls;
	struct recorder_rtp *rtp;      /* rtp rooms only (recorder_rtp.c), else NULL */
	struct recorder_whip_wait *whip_wait; /* a `whip` room waiting for its publisher (recorder_whip.c) */
};

/* A processing job: one recording to take through the steps. */
struct recorder_job {
	char id[UUID_STR_LEN];
	bool recovered;  /* left live by a crash: finalize by repairing the file */
	cJSON *rec;      /* the record when known (owned), else read from state */
	volatile int stop;    /* raised to interrupt its step (cancel or shutdown) */
	bool cancel;          /* a cancel request: end as cancelled; under recorder.lock */
};

/* The options of a recorder that a reload may change while it runs
 * (recorder_config.c); recorder_new reads them the same way. */
struct recorder_limits {
	int64_t max_duration_ms;
	int max_concurrent, max_per_user, max_stored_per_user;
	bool transcoding, keep_local;
	long long disk_reserve, disk_low_water;
	int64_t first_frame_timeout_ms;
	long long retention_max_bytes;
	int64_t retention_max_age_ms, retention_interval_ms;
	long long encode_budget_px;  /* pixels per second; 0: the measured default */
	int n_workers;               /* read at start only */
};

/* Reads and checks the limits from 'cfg'. Returns 0, or -1 with 'err'. */
int recorder_limits_read(const struct config *cfg, struct recorder_limits *l, char *err, size_t errlen);
/* Puts 'l' in force in 'r' (all but n_workers). Any thread. */
void recorder_limits_apply(struct recorder *r, const struct recorder_limits *l);

/* S3 uploads of this process (recorder_storage.c); under uploads_lock. */
#define RECORDER_UPLOAD_CAUSES 5 /* network, refused, verify, local_file, other */
struct recorder_uploads {
	uint64_t done;                          /* uploaded and verified */
	uint64_t failed[RECORDER_UPLOAD_CAUSES];
	int64_t last_ok_ns, last_failure_ns;    /* wall clock; 0: never */
	char last_failure[RECORDER_DETAIL_MAX];
};

/* The disk under local_storage_path (recorder_storage.c). */
struct recorder_disk {
	long long free, total;  /* bytes; -1 when unknown */
	long long need;         /* what a start at the default quality asks for */
	bool refused;           /* such a start would get 507 */
	char why[RECORDER_STORAGE_MAX + 256];
};

struct recorder {
	struct config *cfg;
	struct state *st;
	struct policy_host *pol;
	char node_id[128];

	/* Options, read in recorder_new; those of struct recorder_limits
	 * again by recorder_reload. */
	char storage_path[RECORDER_STORAGE_MAX];
	char storage_backend[16];
	char default_format[8];
	char default_quality[16];
	int64_t max_duration_ms;
	int max_concurrent;
	int max_per_user;
	int max_stored_per_user;       /* records one user may have stored; 0: no cap */
	bool transcoding;
	bool keep_local;               /* keep the local copy after a verified upload */
	long long disk_reserve;        /* bytes start admission leaves free */
	long long disk_low_water;      /* below this, live recordings stop (disk_low) */
	int64_t first_frame_timeout_ms; /* a recording still pending after this fails; 0: never */
	long long retention_max_bytes; /* 0: no size limit on kept local files */
	int64_t retention_max_age_ms;  /* 0: no age limit */
	int64_t retention_interval_ms;
	int n_workers;
	struct storage_s3 *s3;         /* NULL unless storage_backend is s3 */

	pthread_mutex_t lock;
	struct recorder_session *sessions;
	recorder_authorize_fn authz;
	void *authz_opaque;
	void (*event_cb)(void *opaque, const char *room_id, const char *event_json);
	void *event_opaque;
	struct recorder_relay *relay;  /* room events; see recorder_on_event */
	struct recorder_metrics m;     /* counters under lock */
	pthread_mutex_t uploads_lock;
	struct recorder_uploads uploads;
	pthread_mutex_t counts_lock;   /* the records by status, counted in the state store */
	long long counts[RECORDER_STATUS_COUNT];
	int64_t counts_at_ns;          /* monotonic; 0: never counted */
	atomic_ullong retention_removed[2]; /* local files removed: [0] safe in S3, [1] local-only */
	uint64_t encode_refused;       /* starts refused by the encode budget, under lock */
	uint64_t encode_dense;         /* recordings started at the dense speed, under lock */

	/* The control thread: pipeline events and the maximum-duration timer. */
	pthread_t ctl_thread;
	bool ctl_started;
	pthread_mutex_t ctl_lock;
	pthread_cond_t ctl_cond;
	bool ctl_kick;
	bool ctl_quit;

	/* The processing worker pool. */
	struct queue *jobs;
	pthread_t *workers;
	int n_started_workers;
	atomic_int jobs_running;
	atomic_int jobs_queued;
	struct recorder_job **inflight; /* jobs queued or running, under lock */
	size_t n_inflight, cap_inflight;
	atomic_bool quit;
	pthread_mutex_t idle_lock;
	pthread_cond_t idle_cond;

	/* WHIP ingest (recorder_whip.c); NULL with the reason when unavailable. */
	struct webrtc *webrtc;
	char webrtc_err[256];
};

/* recorder.c */
void recorder_session_unref(struct recorder_session *s);
bool recorder_format_or_default(struct recorder *r, const char **format, struct recorder_reply *out);
/* Fills 'out' with 'status' and {"detail", "code"}. */
void reply_error(struct recorder_reply *out, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Applies the pipeline's raised flags (first frame, fault, eof) to the
 * session; 'reason' of an eof stop is "source_ended". Session lock held. */
void recorder_session_apply_events(struct recorder_session *s);
/* Ends a live session as failed with 'why' (pipeline fault, no media):
 * pipeline freed, files kept, slot released. Session lock held. */
void recorder_session_fail(struct recorder_session *s, const char *why);
/* While recording, stores duration_seconds and file_size_bytes so far at
 * most every RECORDER_REFRESH_MS (listings and other nodes see progress).
 * Session lock held. */
#define RECORDER_REFRESH_MS 5000
void recorder_session_refresh(struct recorder_session *s);
/* Stops a live session into processing (stop request, max duration, eof,
 * shutdown) and queues its job. Session lock held; 'op' is RECORDER_OP_STOP
 * or RECORDER_EV_MAX_DURATION; 'reason' goes into the event. Returns 0 or
 * <0 with 'err'. */
int recorder_session_stop(struct recorder_session *s, enum recorder_op op, const char *reason,
			  char *err, size_t errlen);
/* Publishes an event of 'type' about 'rec'; 'extra' (may be NULL, not
 * taken) is merged into data. */
void recorder_publish(struct recorder *r, const char *type, const cJSON *rec, const cJSON *extra);
/* Writes 'rec' to state, logging a failure. */
int recorder_put(struct recorder *r, const cJSON *rec);
/* Counts a recording reaching 'to'. */
void recorder_count(struct recorder *r, enum recorder_status to);

/* recorder_control.c */
int recorder_control_start(struct recorder *r);
void recorder_control_stop(struct recorder *r);
void recorder_control_kick(struct recorder *r);

/* recorder_worker.c */
int recorder_worker_start(struct recorder *r);
void recorder_worker_stop(struct recorder *r);
/* Queues a job for 'id'; takes 'rec' (may be NULL). Marks the recording's
 * directory so a restart finds it. Returns 0 or -1 (queue full: the mark
 * stays and the job is picked up by the next rescan), 1 when it is already
 * queued or running. */
int recorder_worker_submit(struct recorder *r, const char *id, bool recovered, cJSON *rec);
/* Cancels the processing of 'rec' (a state object in processing, not
 * taken): a job queued or running here is stopped at once (its S3 upload
 * interrupted); then the multipart upload is aborted, any object deleted,
 * the local files removed and the record stored as cancelled (event
 * recording_cancelled). Returns 0 with 'out' (owned by the caller) the
 * cancelled record; 1 with 'out' the record when processing ended first
 * (completed or failed: too late to cancel); <0 with 'err' filled. */
int recorder_worker_cancel(struct recorder *r, const cJSON *rec, cJSON **out, char *err, size_t errlen);
/* Queues every recording whose directory carries the job mark. */
int recorder_worker_rescan(struct recorder *r);
/* The directory of a recording. Returns 0 or -1 when it does not fit. */
int recorder_dir_of(const struct recorder *r, const char *id, char *out, size_t outlen);

/* The file a recording's pipeline writes: the recording's directory and
 * recording_{id}.{ext}, ext = mkv for mp4 (remuxed at processing). Returns 0
 * or -1 when it does not fit. */
int recorder_live_path(const struct recorder *r, const char *id, const char *format, char *out,
		       size_t outlen);

/* recorder_policy.c */
struct media_preset;
/* Binds the policy host (provider for its edge API, authorization hook). */
void recorder_policy_bind(struct recorder *r);
/* Admission beyond the global limit: quota.lua (may lower '*preset' and
 * '*max_duration_ms', sets '*user_limit'; it sees the node's encode load and
 * what the room's 'source' with 'args' would encode at each preset) and
 * free disk space. Returns 0, or the reply status (400, 403, 503, 507) with
 * 'reason'. */
int recorder_policy_admit(struct recorder *r, const struct recorder_caller *caller, const char *room_id,
			  const char *source, const char *args, const char *format,
			  const struct media_preset **preset, int64_t *max_duration_ms,
			  int *user_limit, bool *fallback, char *reason, size_t reasonlen);
/* Shows in rec.metadata.admission what admission lowered or who decided it
 * when quota.lua could not ({"max_duration_seconds", "decided_by"}); nothing
 * when the policy admitted as configured. */
void recorder_policy_note_admission(struct recorder *r, cJSON *rec, bool fallback, int64_t max_duration_ms);
/* What 'room_id' captures: sources.lua, else room.<id>.source/args, else
 * test. Returns 0, or -1 when sources.lua failed and the configuration does
 * not name the room (the start is refused: fail closed). */
int recorder_policy_source(struct recorder *r, const char *room_id, char *source, size_t slen,
			    char *args, size_t alen);
/* lifecycle.lua on start (to = pending/recording), completion or failure:
 * merges its tags into rec.metadata. */
void recorder_lifecycle_event(struct recorder *r, enum recorder_status to, cJSON *rec);
/* lifecycle.lua on stop: tags, and the S3 key and keep_local to use. */
void recorder_lifecycle_stopped(struct recorder *r, cJSON *rec, char *s3_key, size_t keylen, bool *keep_local);
/* lifecycle.lua's on_deleted: true when a deleted recording's S3 object
 * goes too (false without a policy host, the hook, or when it fails). */
bool recorder_lifecycle_deleted(struct recorder *r, const cJSON *rec);
/* Free bytes where recordings are written, or -1. */
long long recorder_disk_free(const struct recorder *r);

/* recorder_delete.c */
/* Deletes the completed or failed recording 'rec' (not taken): its S3
 * object when lifecycle.lua says so, its local directory, its record;
 * publishes recording_deleted. Returns 200 with '*deleted' (owned by the
 * caller) the last state with metadata.deleted, or the reply status with
 * 'code' and 'err' (nothing of the recording is lost that a retry cannot
 * finish deleting). Any thread. */
int recorder_delete_final(struct recorder *r, const cJSON *rec, cJSON **deleted, char *code, size_t codelen,
			  char *err, size_t errlen);

/* recorder_storage.c */
/* Counts one upload's end: 'code' 0 (uploaded and verified) or a
 * STORAGE_ERR_* code with 'err'. Any thread. */
void recorder_upload_note(struct recorder *r, int code, const char *err);
/* Looks at the disk under local_storage_path. */
void recorder_disk_look(struct recorder *r, struct recorder_disk *d);
/* A start refused with 507 in 'room_id': publishes a storage_full event
 * there (with the disk figures and whether anything local-only may be
 * deleted to make room) and logs it. */
void recorder_storage_refused(struct recorder *r, const char *room_id, const char *user_id, const char *reason);

/* recorder_retention.c */
/* True when lifecycle.lua's local_retention may delete the local files of
 * recordings that exist nowhere else (the shipped policy: false). */
bool recorder_retention_local_only(struct recorder *r);
/* Deletes the local files of finished recordings beyond retention.max_bytes
 * (oldest first) or older than retention.max_age, only those completed and
 * verified in S3. Returns the number of recordings whose file went, or -1
 * when it could not look (state store down). The control thread runs it
 * every retention.interval. */
int recorder_retention_run(struct recorder *r);

/* recorder_whip.c: WHIP publishers (the transport is core/webrtc). */
struct config;
struct webrtc;
int recorder_whip_config_register(struct config *c);
/* Opens the WHIP transport (a failure only disables WHIP, logged). */
void recorder_whip_init(struct recorder *r);
void recorder_whip_free(struct recorder *r);
/* A REST start in a room whose source is `whip`: makes the feed a later
 * WHIP publisher's session will fill, writes the rtp source's arguments
 * for it into 'args' (video codec by the format: webm VP8, mp4 H.264, mkv
 * H.264 unless the room's args say video_codec=vp8) and metadata.whip
 * (waiting). Returns 0, or -1 with 'out' set. Session not yet shared. */
struct media_preset;
int recorder_whip_wait(struct recorder_session *s, const char *format, const struct media_preset *preset,
		       char *args, size_t alen, struct recorder_reply *out);
/* Frees what recorder_whip_wait made (session_free). */
void recorder_whip_session_free(struct recorder_session *s);

/* recorder_source.c: the source's own state. Pipeline threads: notes a
 * stall or resume of the session's source. */
void recorder_source_note_stall(struct recorder_session *s, bool stalled);
/* Under the session lock: when the stall flag changed, writes
 * metadata.source_stalled (source_stalls, source_stalled_at), stores the
 * record and publishes source_stalled / source_resumed; 'what' names the
 * source in the log. Returns 1 (stalled now), -1 (resumed) or 0. */
int recorder_source_apply_stall(struct recorder_session *s, const char *what);

/* recorder_rtp.c: rooms whose source is rtp. */
/* metadata.network from the rtp counters of 'st' (nothing when all are 0);
 * returns true when it changed. */
struct media_stats;
bool recorder_rtp_apply_network(cJSON *rec, const struct media_stats *st);
struct config;
struct recorder_rtp;
/* Registers rtp.port_min / rtp.port_max. Returns 0 or -1. */
int recorder_rtp_config_register(struct config *c);
/* Before the pipeline is made: for an rtp source, refuses mp4 (400),
 * allocates a port pair per stream whose port the room's args do not fix
 * (503 when the range is used up), appends them to 'args' (a buffer of
 * 'alen') and writes metadata.rtp into s->rec. Returns 0 (also for other
 * sources: nothing done) or an HTTP status with 'err'. Session not yet
 * shared; the ports stay with 's' until recorder_rtp_release. */
int recorder_rtp_prepare(struct recorder_session *s, const char *source, const char *format, char *args,
			 size_t alen, char *err, size_t errlen);
/* Gives the allocated ports back (the session left the live statuses or
 * never started). Idempotent. Session lock held or session unshared. */
void recorder_rtp_release(struct recorder_session *s);
/* Releases and frees s->rtp (session_free). */
void recorder_rtp_free(struct recorder_session *s);
/* Session lock held: stores what changed (metadata.source_stalled and the
 * source_stalled/source_resumed events, metadata.time_to_first_keyframe_ms,
 * the sender's resolution changes, what the network lost). */
void recorder_rtp_apply(struct recorder_session *s);
/* From a live source's stats: metadata.rtp_receive (what it lost on the way
 * in: packets_lost, video_frames_dropped, keyframe_requests,
 * packets_unsupported; absent when it lost nothing) and the sender's
 * resolution changes (video_resolution_changes, video_resolution_last). */
struct media_stats;
void recorder_rtp_apply_stats(cJSON *metadata, const struct media_stats *st);

/* recorder_recover.c */
int recorder_recover(struct recorder *r);

/* The "metadata" object of a record, created (or put in place of a
 * non-object) when missing; NULL when out of memory. */
cJSON *recorder_rec_metadata(cJSON *rec);

/* Sets obj[key] = item, replacing an existing member; takes item, and
 * frees it when obj is NULL or the member cannot be set. */
void recorder_json_set(cJSON *obj, const char *key, cJSON *item);

#endif
