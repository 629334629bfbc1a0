/* recorder: the recording manager. Every operation of SPEC §2 with the
 * statuses of SPEC §3, admission, the media pipeline of each live
 * recording, the maximum-duration timer, the background processing worker,
 * start-up recovery and the room events of SPEC §7.
 *
 * Provides: struct recorder (opaque), the request functions that the HTTP
 * layer maps its routes onto (each fills a struct recorder_reply: an HTTP
 * status and a JSON body), the option table of SPEC §6, metrics and health.
 * Uses: config (options), state (Redis records, admission, pub/sub, job
 * journal), media (pipelines, file repair/probe), policy (auth, quota,
 * sources and lifecycle decisions when a host is given), storage (remux,
 * thumbnail, facts, S3 upload/verify steps of processing), cJSON.
 *
 * Replies. 'body' is the state object of SPEC §3 (start, stop, pause,
 * resume, cancel, status), {"recordings": [...], "count": n} (lists) or
 * {"detail": "...", "code": "..."} (errors). The caller owns 'body' and
 * frees it with cJSON_Delete. Statuses and codes:
 *   200  success
 *   400  invalid_room_id, invalid_recording_id, invalid_format,
 *        invalid_quality, invalid_status, invalid_transition, limit_reached
 *   403  forbidden (recorder_authorize or quota.lua said no; the
 *        policy's reason is the detail)
 *   404  not_found (unknown id, a recording of another room, or one the
 *        authorization policy hides)
 *   500  internal (a fault of the appliance: pipeline would not start, disk)
 *   409  wrong_node (the recording is live on another node: drive it there)
 *   503  state_unavailable (Redis unreachable when a decision needs it)
 *   507  insufficient_storage (free disk minus recorder.disk_reserve cannot
 *        hold the preset's bitrates for the allowed duration)
 *
 * Start replies once the first frame is on disk (status "recording"), or
 * after RECORDER_START_WAIT_MS with status "pending" when the source is
 * slow; the pending -> recording change is stored and published either way.
 * Files: {local_storage_path}/{id}/recording_{id}.{ext}. For mp4 the live
 * file is VP9+Opus Matroska written at recording_{id}.mkv; the processing
 * step "remux" turns it into recording_{id}.mp4 (file_name always names the
 * final .mp4).
 *
 * Threads: every function may be called from any thread (the HTTP worker
 * threads call them concurrently); requests on one recording are
 * serialized inside. */
#ifndef EDGEREC_RECORDER_H
#define EDGEREC_RECORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "recorder_fsm.h"

struct config;
struct state;
struct policy_host;
struct recorder;

/* How long recorder_start waits for the first frame before it replies with
 * the recording still pending. */
#define RECORDER_START_WAIT_MS 2000

/* Who is asking: 'user_id' is the token's sub; 'claims' the whole verified
 * token (may be NULL), handed to the authorization policy. Borrowed for the
 * duration of the call. */
struct recorder_caller {
	const char *user_id;
	const cJSON *claims;
};

/* The caller of a verified token: its "sub" ("" when absent) and claims. */
struct recorder_caller recorder_caller_of(const cJSON *claims);

/* The answer to one request; 'body' goes to the caller (cJSON_Delete). */
struct recorder_reply {
	int status;
	cJSON *body;
};

/* Registers the options the recorder reads (SPEC §6 with the reference's
 * defaults, plus the per-user limit, node_id, the room -> source map and
 * the worker pool size) in 'c'. Call before loading the file. Returns 0 or
 * -1. Options:
 *   storage_backend             local | s3                 (local)
 *   local_storage_path          directory of recordings    (/tmp/webrtc_recordings)
 *   s3_bucket                   bucket name                (none)
 *   s3_prefix                   key prefix                 (webrtc-recordings/)
 *   max_recording_duration      duration, bare = seconds   (7200)
 *   max_concurrent_recordings   across every node          (10)
 *   max_recordings_per_user     live per user, 0 = only the global limit (0)
 *   default_format              webm | mkv | mp4           (webm)
 *   default_quality             low | medium | high | ultra (medium)
 *   enable_transcoding          mp4 remux at processing    (true)
 *   node_id                     this node's name in Redis  (see recorder_node_id)
 *   recorder.workers            processing threads         (2)
 *   recorder.first_frame_timeout  a recording still pending this long fails (60s; 0 = never)
 *   recorder.keep_local         keep the local file after a verified S3 upload (false)
 *   recorder.disk_reserve       free space a start leaves (507 otherwise) (512M)
 *   recorder.disk_low_water     live recordings stop below it, reason disk_low (256M)
 *   retention.max_bytes         finished local files above this: the oldest in S3 go (0: off)
 *   retention.max_age           local files of recordings in S3 older than this go (0: off)
 *   retention.interval          how often retention looks                (60s)
 *   room.<id>.source            test | file | rtp          (test)
 *   room.<id>.args              driver arguments "k=v,k=v" ("") */
int recorder_config_register(struct config *c);

/* Checks every option the recorder reads (ranges, the quality preset, the
 * S3 settings when storage_backend is s3) without starting anything, so a
 * bad file is refused before any module comes up. Returns 0 or -1 with the
 * reason in 'err'. */
int recorder_config_check(const struct config *c, char *err, size_t errlen);

/* Puts the options marked CONFIG_LIVE in force after the configuration was
 * reloaded: limits, durations, disk thresholds, retention, the encode
 * budget, the S3 credentials. Live recordings keep running (a new
 * max_recording_duration applies to them from now on). Returns 0, or -1
 * with 'err' (the previous values stay). Any thread. */
int recorder_reload(struct recorder *r, char *err, size_t errlen);

/* Writes this node's id into 'out': the node_id option when set, else an
 * id kept in {state_dir}/node_id (created once, a uuid), else the host
 * name. Returns 0 or -1. Main passes the same id to state_new. */
int recorder_node_id(const struct config *c, char *out, size_t outlen);

/* Creates the manager: reads the options from 'cfg' (kept, not owned),
 * uses 'st' (kept, not owned; must outlive the recorder), 'pol' may be NULL.
 * Then recovers what this node left behind: records still pending,
 * recording or paused are taken out of the active set and queued for
 * repair (-> completed with metadata.recovered = true, or failed with a
 * reason); records left in processing are resumed from the step after the
 * last one their journal names. Returns NULL with 'err' filled on failure
 * (bad option values, storage directory not writable). */
struct recorder *recorder_new(struct config *cfg, struct state *st, struct policy_host *pol,
			      char *err, size_t errlen);
/* Stops every live recording cleanly (each goes to processing and its file
 * is finalized), lets processing run for up to 5 s (what is unfinished then
 * stops after its current step and resumes at the next start), then frees.
 * recorder_free(NULL) is a no-op. */
void recorder_free(struct recorder *r);

/* The requests of SPEC §2. 'format' and 'quality' may be NULL (configured
 * defaults); 'status' may be NULL (no filter). Each fills 'out'. */
void recorder_start(struct recorder *r, const struct recorder_caller *caller,
		    const char *room_id, const char *format, const char *quality,
		    struct recorder_reply *out);
/* A start whose source is given rather than the room's (sources.lua is
 * not asked): 'source' and 'args' as a room's; 'meta' (copied) is set as
 * metadata.<meta_key> before the record is first written; 'no_wait'
 * answers at once (pending) instead of waiting for a first frame. */
struct recorder_start_opts {
	const char *source, *args;
	const char *meta_key;
	const struct cJSON *meta;
	bool no_wait;
};
void recorder_start_with(struct recorder *r, const struct recorder_caller *caller,
			 const char *room_id, const char *format, const char *quality,
			 const struct recorder_start_opts *opts, struct recorder_reply *out);

/* WHIP (RFC 9725), recorder_whip.c. A publish is a start whose source is
 * the publisher: same format/quality defaults, the same authorization
 * (RECORDER_OP_START), quota and admission, the same errors; then the
 * offer ('sdp', 'len' bytes) is answered. On success out->status is 201,
 * out->body the recording (as start's), '*answer' the SDP answer
 * (malloc'd) and 'recording_id' (UUID_STR_LEN) the session's name.
 * Errors: 400 invalid_sdp / unsupported_codec / invalid_format, 503
 * whip_unavailable (the UDP port could not be opened), and start's. */
void recorder_whip_publish(struct recorder *r, const struct recorder_caller *caller, const char *room_id,
			   const char *format, const char *quality, const char *sdp, size_t len,
			   struct recorder_reply *out, char **answer, char *recording_id);
/* DELETE of a WHIP session: stops its recording (as stop, with stop's
 * authorization) and closes the session. 200 also when the recording had
 * already left the live statuses (the publisher went first), 404 when
 * there is no such recording in the room. */
void recorder_whip_end(struct recorder *r, const struct recorder_caller *caller, const char *room_id,
		       const char *recording_id, struct recorder_reply *out);
/* PATCH of a WHIP session with an application/trickle-ice-sdpfrag body
 * (RFC 8840): status's authorization; 204 for trickled candidates (an
 * ICE-lite agent needs none: it learns addresses from the checks), 422
 * for an ICE restart (other credentials; not supported), 404 when the
 * session is gone. */
void recorder_whip_patch(struct recorder *r, const struct recorder_caller *caller, const char *room_id,
			 const char *recording_id, const char *frag, size_t len, struct recorder_reply *out);
/* The WHIP transport's /metrics text (malloc'd) or NULL; 'opaque' is the recorder. */
char *recorder_whip_metrics(void *opaque);

void recorder_stop(struct recorder *r, const struct recorder_caller *caller,
		   const char *room_id, const char *recording_id, struct recorder_reply *out);
void recorder_pause(struct recorder *r, const struct recorder_caller *caller,
		    const char *room_id, const char *recording_id, struct recorder_reply *out);
void recorder_resume(struct recorder *r, const struct recorder_caller *caller,
		     const char *room_id, const char *recording_id, struct recorder_reply *out);
/* Cancel: a live recording stops and its files go; a processing one (an
 * extension of SPEC §3) has its job stopped, its S3 multipart upload
 * aborted and any uploaded object deleted, its files removed (the reply
 * waits for that, up to 30 s; 409 wrong_node when another node processes
 * it). Both end cancelled with the event recording_cancelled. A completed
 * or failed recording is deleted instead (SPEC §9; authorized as the op
 * "delete", owner or admin): its S3 object when lifecycle.lua's on_deleted
 * says so, its files, its record; event recording_deleted; the reply is
 * the last state with metadata.deleted {at, local_files, s3_object}. */
void recorder_cancel(struct recorder *r, const struct recorder_caller *caller,
		     const char *room_id, const char *recording_id, struct recorder_reply *out);
void recorder_status(struct recorder *r, const struct recorder_caller *caller,
		     const char *room_id, const char *recording_id, struct recorder_reply *out);
void recorder_list_room(struct recorder *r, const struct recorder_caller *caller,
			const char *room_id, struct recorder_reply *out);
/* The caller's own recordings; every user's when the caller passes the
 * admin authorization (RECORDER_OP_ADMIN: auth.lua, or the admin role). */
void recorder_list_user(struct recorder *r, const struct recorder_caller *caller,
			const char *status, struct recorder_reply *out);
/* The files of a recording: the same checks as recorder_status (room,
 * existence) with the download authorization (RECORDER_OP_DOWNLOAD); on
 * 200 'body' is the state object the files are found by. The caller
 * serves the file and answers 409 when it is not completed. */
void recorder_download(struct recorder *r, const struct recorder_caller *caller,
		       const char *room_id, const char *recording_id, struct recorder_reply *out);

/* The answer of an authorization: 'status' (403, or 404 when the policy
 * hides the recording) and 'reason' (the reply's detail) when refused. */
struct recorder_verdict {
	bool allow;
	int status;
	char reason[256];
};

/* The one place that decides whether 'caller' may do 'op' on 'rec' (a
 * state object; NULL for start, the lists and admin). Without a hook: the
 * owner (rec.user_id == caller.user_id) may do anything to a recording;
 * anyone authenticated may start, read a state object and list (lists only
 * show what the request names: a room's recordings, or the caller's own);
 * a recording's files (download) go to its owner or a caller whose "roles"
 * claim holds "admin"; admin needs that role. With a hook, the hook decides
 * and receives the built-in rule's answer as 'builtin'. 'v' (may be NULL)
 * receives the verdict; the return value is v->allow. */
typedef bool (*recorder_authorize_fn)(void *opaque, const struct recorder_caller *caller,
				      enum recorder_op op, const cJSON *rec, bool builtin,
				      struct recorder_verdict *v);
bool recorder_authorize(struct recorder *r, const struct recorder_caller *caller,
			enum recorder_op op, const cJSON *rec, struct recorder_verdict *v);
/* Installs (or with fn NULL removes) the hook; the policy host calls this. */
void recorder_set_authorizer(struct recorder *r, recorder_authorize_fn fn, void *opaque);

/* Calls 'cb' for every room event (SPEC §7 JSON text) published by any
 * node sharing the Redis, on the state module's subscriber thread. One
 * subscriber per recorder; a second call replaces the first (cb NULL:
 * none). Once it returns, the previous callback is neither running nor
 * called again; the callback must not call recorder_on_event itself.
 * Returns 0 or <0 when the subscription could not be set up. */
int recorder_on_event(struct recorder *r,
		      void (*cb)(void *opaque, const char *room_id, const char *event_json),
		      void *opaque);

/* Counters for /metrics. 'by_status' counts the recordings this node holds
 * in memory (live and processing) plus the final statuses reached since
 * start; the totals are since start; the media counters add up every
 * pipeline this node ran. */
struct recorder_metrics {
	uint64_t by_status[RECORDER_STATUS_COUNT];
	uint64_t active;               /* live recordings on this node */
	uint64_t started_total;
	uint64_t completed_total;
	uint64_t failed_total;
	uint64_t cancelled_total;
	uint64_t refused_total;        /* admission said no */
	uint64_t bytes_written;
	uint64_t video_frames_encoded;
	uint64_t video_frames_dropped;
	uint64_t audio_frames_encoded;
	uint64_t degradations_total;   /* steps down the CPU degradation ladder */
	uint64_t jobs_queued;          /* processing jobs waiting */
	uint64_t jobs_running;
};
void recorder_metrics(struct recorder *r, struct recorder_metrics *m);
/* Prometheus text for rtp rooms (time to first keyframe, source stalls),
 * malloc'd for the caller; 'opaque' unused (an http_metrics_fn). */
char *recorder_rtp_metrics(void *opaque);
/* Prometheus text for the node's encode ledger (budget, load, encoder
 * threads, starts refused for it), malloc'd; 'opaque' is the recorder. */
char *recorder_encode_metrics(void *opaque);

/* The recorder's check of /healthz. False (the node is down) only when the
 * state store is unreachable and its retry buffer is full; true with a
 * reason (degraded) when Redis is unreachable but writes are buffered, or
 * the storage directory is not writable. */
bool recorder_healthy(struct recorder *r, char *why, size_t whylen);

/* The storage check of /healthz: true always (storage never takes the
 * node down), with a reason when a start would be refused for space or S3
 * uploads are failing ("degraded"). Any thread. */
bool recorder_storage_health(struct recorder *r, char *why, size_t whylen);
/* {"disk": {path, free_bytes, total_bytes, starts_refused,
 * local_only_deleted}, "uploads": {queue, uploaded, bytes_sent, failed,
 * last_failure, last_failure_at} (S3 backend only)}; a new object, NULL
 * when out of memory. */
cJSON *recorder_storage_json(struct recorder *r);
/* Prometheus text: disk gauges, the recordings by status in the state store
 * (edgerec_recordings, all nodes), S3 upload counters (an http_metrics_fn;
 * 'opaque' is the recorder). */
char *recorder_storage_metrics(void *opaque);
/* The records by status in the state store, reused for up to 10 s.
 * Returns 0, or -1 when they were never counted (Redis down since start). */
int recorder_state_counts(struct recorder *r, long long counts[RECORDER_STATUS_COUNT]);

struct media_capture_info;
/* metadata.capture of a device source (v4l2): the device, the mode asked,
 * delivered and recorded, what was rejected or rescaled, reopens. Returns a
 * new object (cJSON_Delete), NULL when out of memory. */
cJSON *recorder_capture_json(const struct media_capture_info *ci);

/* Waits until no processing job is queued or running, up to 'timeout_ns'
 * (negative: forever). Returns 0 when idle, -1 on timeout. For tests and
 * orderly shutdown. */
int recorder_drain(struct recorder *r, int64_t timeout_ns);

#endif
