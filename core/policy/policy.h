/* policy: the Lua policy host. Operators change who may do what, how much
 * may be recorded, what happens to finished files and what a room captures
 * by editing Lua files; this module runs them safely and answers the
 * recorder's questions with validated decisions.
 *
 * Provides: struct policy_host (opaque), the four decisions
 * (policy_authorize, policy_admit, policy_lifecycle, policy_resolve_source),
 * hot reload, and the status report behind GET /api/system/policies.
 * Uses: common, config, crypto (sha256 of each file), Lua 5.4, cJSON.
 * Knows nothing of Redis: the read-only queries the `edge` API offers come
 * through a struct policy_provider that the recorder fills.
 *
 * Files: <policy_dir>/auth.lua, quota.lua, lifecycle.lua, sources.lua, and
 * pure-Lua helpers in <policy_dir>/lib/<name>.lua that a policy loads with
 * lib("name"). Each file returns a table of hooks:
 *   auth.lua       authorize(action, caller, recording, room_id) -> true | false, reason[, 404]
 *   quota.lua      admit(facts) -> { decision = "allow" | "refuse" | "grant", ... }
 *   lifecycle.lua  on_started / on_stopped / on_completed / on_failed(recording)
 *                    -> { tags = {...}, keep_local = bool, s3_key_template = "..." }
 *   sources.lua    resolve(room_id) -> source[, args]
 * and optionally self_test() which must return true for a new version to be
 * swapped in. The shipped files say what each hook receives.
 *
 * Each file is loaded into a few independent states so calls run in
 * parallel: a policy must not rely on module-level variables being shared
 * between calls (each state has its own copy); cross-call facts come from
 * the `edge` queries.
 *
 * Safety: every file runs in its own lua_States with an allow-listed _ENV,
 * text chunks only, an instruction budget, a memory cap and a wall-clock
 * budget per call that also bounds the library functions running in C
 * (each is predicted from its input sizes against the time left). Whatever
 * goes wrong (load error, raise, limit, a result of the wrong type or a
 * decision that does not validate) the call returns the built-in default
 * decision, which fails closed (each decision below says how), marks the
 * result as a fallback, logs and counts it, and keeps the error for the
 * status report and policy_healthy. No function here ever fails the
 * caller. Without a policy file at all the built-in default is the
 * reference behaviour.
 *
 * Threads: every function may be called from any thread at any time after
 * policy_host_new returns, including during a reload. */
#ifndef EDGEREC_POLICY_H
#define EDGEREC_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config.h"

struct policy_host;

#define POLICY_REASON_MAX 256
#define POLICY_QUALITY_MAX 16
#define POLICY_SOURCE_MAX 32
#define POLICY_ARGS_MAX 512
#define POLICY_S3_KEY_MAX 1024

/* The options this module reads; register them (config_register) before the
 * configuration file is loaded:
 *   policy_dir               directory holding the live policies
 *   policy.max_instructions  Lua VM instructions per call
 *   policy.max_memory        bytes each Lua state of a policy may hold
 *   policy.max_call_time     wall-clock budget per call
 *   policy.param.*           free-form values policies may read with edge.config */
extern const struct config_option policy_config_options[];

/* The read-only state queries behind the `edge` API. The recorder fills it
 * (its functions talk to Redis); every function may be NULL (the Lua call
 * then raises "not available" and the decision falls back). Functions are
 * called from whichever thread runs a decision, with no policy lock that
 * another decision waits on for other policies.
 * Returned cJSON values belong to the host, which frees them. */
struct policy_provider {
	void *opaque;
	/* The user's recordings (state objects), all of them when 'status' is
	 * NULL. A JSON array, or NULL on error. */
	cJSON *(*user_recordings)(void *opaque, const char *user_id, const char *status);
	/* Recordings live on every node (the active set). <0 on error. */
	long long (*active_count)(void *opaque);
	/* The room's recordings (state objects). A JSON array, or NULL on error. */
	cJSON *(*room_recordings)(void *opaque, const char *room_id);
	/* Bytes of finished files the user holds. <0 on error. */
	long long (*user_bytes_stored)(void *opaque, const char *user_id);
	/* Free bytes where recordings are written. <0 on error. */
	long long (*disk_free_bytes)(void *opaque);
	/* The user's admitted live recordings and the seconds they recorded in
	 * the current UTC day (recordings that started that day; running ones
	 * by the time since their start), read from indexes kept in the state
	 * store in proportion to the user's live recordings, never their
	 * history. 0, or <0 on error. */
	int (*user_usage)(void *opaque, const char *user_id, long long *live, double *seconds_today);
};

/* How a host is built. Zero limits take the defaults: 1,000,000
 * instructions and 200 ms per call, 16 MiB per Lua state. The instruction
 * count stops runaway code within milliseconds; the wall clock catches what
 * the count cannot see and must not fire on a call that was merely
 * descheduled. 'cfg' (may be NULL) is what edge.config reads; it must
 * outlive the host. */
struct policy_host_options {
	const char *dir;
	const struct config *cfg;
	long long max_instructions;
	size_t max_memory;
	int64_t max_call_ns;
	bool watch; /* follow file changes with inotify (and a slow rescan) */
};

/* Loads every policy in o->dir (a policy that fails to load is reported in
 * the status and its decisions use the defaults) and, when o->watch, starts
 * the thread that reloads changed files within a second. Returns NULL, with
 * 'err' filled, only when the directory cannot be used or resources run
 * out. */
struct policy_host *policy_host_new(const struct policy_host_options *o, char *err, size_t errlen);
/* The same, with the directory and limits read from 'cfg' (policy_dir etc.)
 * and watching on. */
struct policy_host *policy_host_new_from_config(const struct config *cfg, char *err, size_t errlen);
/* Stops the watcher and frees everything. No decision may be running. NULL
 * is a no-op. */
void policy_host_free(struct policy_host *h);

/* Sets the queries the `edge` API answers from; the struct is copied. Call
 * it once, before decisions that need state run (the recorder does it in
 * recorder_new). NULL removes them. */
void policy_host_set_provider(struct policy_host *h, const struct policy_provider *p);

/* Rescans the directory now (what the watcher does on a change); returns
 * the number of policies whose new version was swapped in. */
int policy_host_reload(struct policy_host *h);

/* ---- auth.lua ---------------------------------------------------------- */

enum policy_action {
	POLICY_ACTION_START,
	POLICY_ACTION_STOP,
	POLICY_ACTION_PAUSE,
	POLICY_ACTION_RESUME,
	POLICY_ACTION_CANCEL,
	POLICY_ACTION_READ,      /* the state object of one recording (status) */
	POLICY_ACTION_LIST_ROOM, /* GET .../rooms/{room_id}/recordings */
	POLICY_ACTION_LIST_USER, /* GET /api/webrtc/recordings */
	POLICY_ACTION_ADMIN,     /* /api/system/... */
	POLICY_ACTION_DOWNLOAD,  /* the files of one recording (download, thumbnail) */
	POLICY_ACTION_DELETE,    /* a completed or failed recording removed for good */
	POLICY_ACTION__COUNT,
};

/* "start", "stop", ... as the policy sees it; NULL when out of range. */
const char *policy_action_name(enum policy_action a);

/* Who asks: the token's subject and all of its claims (may be NULL). */
struct policy_caller {
	const char *user_id;
	const cJSON *claims;
};

struct policy_verdict {
	bool allow;
	int status;                    /* when denied: 403 (or 404 if the policy hides it) */
	char reason[POLICY_REASON_MAX]; /* when denied: goes to the reply's "detail" */
	bool fallback;                 /* the built-in default decided */
};

/* May 'caller' do 'action' in 'room_id' (NULL for LIST_USER/ADMIN) on
 * 'recording' (the state object, NULL for START and the lists)? The
 * default: any authenticated caller may start and list; only the owner, or
 * a caller whose "roles" claim holds "admin", may stop, pause, resume,
 * cancel, read or download; only admins may use ADMIN. That default decides
 * when there is no auth.lua at all; when auth.lua exists but a call fails
 * (load error, raise, budget, a wrong type) it fails closed: admins keep the
 * default, everyone else is denied (403). Returns out->allow. */
bool policy_authorize(struct policy_host *h, enum policy_action action,
		      const struct policy_caller *caller, const char *room_id,
		      const cJSON *recording, struct policy_verdict *out);

/* ---- quota.lua --------------------------------------------------------- */

/* One quality preset as the policy sees it (facts.presets[name]). */
struct policy_preset_fact {
	const char *name;
	long long video_bps;
	long long audio_bps;
	long long pixel_rate;         /* pixels/s this room would encode at it (0: passthrough) */
};

struct policy_admit_facts {
	const struct policy_caller *caller;
	const char *room_id;
	const char *quality;          /* requested (after config defaults) */
	const char *format;
	long long max_duration_s;     /* what the recording would get */
	long long disk_free_bytes;    /* <0: the host asks the provider */
	const struct policy_preset_fact *presets;
	size_t n_presets;
	long long encode_budget;      /* pixels/s the node may encode; 0: unknown */
	long long encode_used;        /* pixels/s its live recordings encode */
};

enum policy_admit_kind {
	POLICY_ADMIT_ALLOW,
	POLICY_ADMIT_REFUSE,
	POLICY_ADMIT_GRANT, /* allowed with a lower quality and/or duration */
};

struct policy_admission {
	enum policy_admit_kind kind;
	int status;                          /* REFUSE: 400, 403 or 507 */
	char reason[POLICY_REASON_MAX];      /* REFUSE: for "detail" */
	char quality[POLICY_QUALITY_MAX];    /* what is granted (= requested unless GRANT) */
	long long max_duration_s;            /* what is granted (= requested unless GRANT) */
	int user_limit;                      /* per-user concurrent limit for the atomic
					      * admission script; 0 = none */
	bool fallback;
};

/* Admission beyond the global limit (which the recorder enforces
 * atomically). A GRANT never raises the quality (by video bitrate) nor the
 * duration above the request; anything else is a fallback. The default
 * (quota.lua missing or failing) allows as requested within the limits the
 * policy is configured with (policy.param.user_concurrent and
 * user_minutes_per_day, else the file's M.limits): user_limit carries the
 * first, the second grants what is left of the day or refuses (403), and
 * refuses with 503 when the day's usage cannot be read. Returns out->kind. */
enum policy_admit_kind policy_admit(struct policy_host *h, const struct policy_admit_facts *facts,
				    struct policy_admission *out);

/* ---- lifecycle.lua ----------------------------------------------------- */

enum policy_event {
	POLICY_EVENT_STARTED,
	POLICY_EVENT_STOPPED,
	POLICY_EVENT_COMPLETED,
	POLICY_EVENT_FAILED,
	POLICY_EVENT_DELETED,   /* on_deleted: optional; answers delete_s3 */
	POLICY_EVENT__COUNT,
};

const char *policy_event_name(enum policy_event e);

struct policy_lifecycle_result {
	cJSON *tags;        /* object of string/number/bool values to merge into
			     * "metadata"; never NULL after the call; the caller
			     * frees it (cJSON_Delete) */
	bool keep_local;    /* keep the local file after a successful upload */
	char s3_key[POLICY_S3_KEY_MAX]; /* the template expanded for this recording */
	bool delete_s3;     /* on_deleted: remove the S3 object too (default false) */
	bool fallback;
};

/* Runs the hook for 'event' on 'recording' (the state object). The
 * s3_key_template may use {prefix} (config s3_prefix), {recording_id},
 * {room_id}, {user_id}, {file_name}, {format}, {quality}, {date}
 * (YYYY-MM-DD of started_at), {year}, {month}, {day}. The default: no tags,
 * keep_local false, "{prefix}{recording_id}/{file_name}". on_deleted (a
 * completed or failed recording is being deleted) is optional: without it,
 * or when it fails, the S3 object stays (delete_s3 false). */
void policy_lifecycle(struct policy_host *h, enum policy_event event, const cJSON *recording,
		      struct policy_lifecycle_result *out);

/* lifecycle.lua's optional local_retention(recording, facts): may the
 * local files of a finished (completed or failed) recording on this node
 * go now? Asked by the recorder's retention pass, oldest first. */
struct policy_retention_facts {
	double age_days;           /* since the file was last written */
	long long size_bytes;      /* of its local files */
	bool local_only;           /* no verified copy in S3: deleting loses it */
	long long disk_free_bytes, disk_total_bytes;
	double disk_free_ratio;    /* free / total, 0..1 */
};

struct policy_retention_result {
	bool remove;               /* the policy answered {delete = true} */
	char reason[128];          /* its reason, for the log and metadata */
	bool fallback;             /* no hook, or it failed: keep */
};

/* The hook's answer for 'recording' (the state object): nil/false keeps,
 * {delete = true, reason = "..."} removes. Without the hook, or when it
 * fails (counted as a policy error), the answer is keep. */
void policy_local_retention(struct policy_host *h, const cJSON *recording,
			    const struct policy_retention_facts *facts, struct policy_retention_result *out);

/* lifecycle.lua's module field delete_local_only (a boolean): whether its
 * local_retention may delete recordings that exist nowhere else. False
 * when the field is absent or the policy is not loaded. */
bool policy_lifecycle_deletes_local_only(struct policy_host *h);

/* ---- sources.lua ------------------------------------------------------- */

struct policy_source {
	char source[POLICY_SOURCE_MAX]; /* a media source driver name: test, file, rtp, v4l2, alsa */
	char args[POLICY_ARGS_MAX];     /* "k=v,k=v" */
	bool fallback;
	bool unresolved; /* sources.lua failed and the configuration does not name
			  * the room: the caller must refuse the recording */
};

/* What to capture for 'room_id'. The default: config room.<id>.source and
 * room.<id>.args when set, else "test" with no arguments; when sources.lua
 * exists but failed, a room the configuration does not name is
 * 'unresolved' instead (fail closed). */
void policy_resolve_source(struct policy_host *h, const char *room_id, struct policy_source *out);

/* ---- status ------------------------------------------------------------ */

/* {"dir": "...", "policies": [{"name", "file", "sha256", "loaded_at",
 * "last_error", "last_error_at", "in_force", "degraded", "calls", "fallbacks",
 * "kills", "reloads"}], "count": n}: sha256 and loaded_at describe the
 * version in force (null when none); last_error is why the file did not
 * load, else the latest failed call of the version in force (null once a new
 * version loads), last_error_at when that call failed; degraded as
 * policy_healthy says. The caller frees the result. */
cJSON *policy_status_json(struct policy_host *h);

/* False when some policy is not in force as written (failed to load or
 * reload, or not loaded at all) or a call of it fell back (raised, ran out
 * of budget, answered a wrong type) within the last minute; 'why' names each
 * such policy and its latest error. None of these takes the appliance down:
 * /healthz reports them as "degraded". */
bool policy_healthy(struct policy_host *h, char *why, size_t whylen);

/* The policy counters as Prometheus text, one series per policy
 * (edgerec_policy_fallbacks_total{policy="quota"} ...) plus
 * edgerec_policy_degraded{policy=...}. malloc'd; NULL on failure. */
char *policy_metrics_text(struct policy_host *h);

struct policy_metrics {
	unsigned long long calls;      /* decisions asked */
	unsigned long long fallbacks;  /* answered by the built-in default */
	unsigned long long kills;      /* stopped by a limit */
	unsigned long long reloads;    /* new versions swapped in */
	unsigned long long reload_failures;
};

void policy_metrics(struct policy_host *h, struct policy_metrics *m);

/* The names the `edge` table offers policies, from the one registration
 * table, NULL-terminated (for the check that the specs' fake matches). */
const char *const *policy_edge_names(void);

#endif
