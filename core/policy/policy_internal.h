/* policy_internal: what the policy host's files share and nobody else sees.
 *
 * Provides the sandbox (one lua_State with its allocator cap, budgets and
 * allow-listed environment), the `edge` API registration, the cJSON <-> Lua
 * conversions, the loaded unit of one policy file and the host itself.
 * Uses: Lua 5.4, cJSON, common. */
#ifndef EDGEREC_POLICY_INTERNAL_H
#define EDGEREC_POLICY_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <lua.h>

#include "common_log.h"
#include "policy.h"

#define POLICY_DEFAULT_MAX_INSTRUCTIONS 1000000LL
#define POLICY_DEFAULT_MAX_MEMORY (16u << 20)
#define POLICY_DEFAULT_MAX_CALL_NS (200LL * 1000000LL)
/* The count hook fires every this many VM instructions while a call runs. */
#define POLICY_HOOK_EVERY 1000
/* Nesting allowed when tables cross the boundary either way. */
#define POLICY_MAX_DEPTH 16
#define POLICY_ERR_MAX 512
/* The policy directory's path, and any path below it (a file name added). */
#define POLICY_DIR_MAX 1024
#define POLICY_PATH_MAX (POLICY_DIR_MAX + 512)

/* The limits of one call (or one load). */
struct policy_limits {
	long long max_instructions;
	size_t max_memory;
	int64_t max_call_ns;
};

/* One lua_State and what guards it. It is the allocator's userdata, so any
 * code holding the lua_State finds it with lua_getallocf. */
struct policy_sandbox {
	lua_State *L;
	struct policy_host *host;
	const char *name;               /* "auth", for logs */
	const struct log_handle *log;
	struct policy_limits limits;
	size_t used;                    /* bytes the state holds now */
	bool armed;                     /* budgets apply: a call or a load is running */
	long long instructions;         /* executed in this call, in hook steps */
	int64_t deadline_ns;            /* time_mono_ns() limit of this call */
	const char *killed;             /* set once a limit is hit; the hook keeps raising */
	/* The user's usage as the provider answered it in this call:
	 * edge.user_live_count and edge.user_seconds_today share one query.
	 * Forgotten when the next call is armed. */
	bool usage_valid;
	char usage_user[257];
	long long usage_live;
	double usage_seconds;
};

/* policy_sandbox.c */

/* Opens a fresh state with the allow-listed environment and the `edge`
 * table. 'sb' must stay at its address for the state's life. Returns 0, or
 * -1 with 'err' filled. */
int policy_sandbox_open(struct policy_sandbox *sb, struct policy_host *host, const char *name,
			const struct log_handle *log, const struct policy_limits *limits,
			char *err, size_t errlen);
/* Closes the state (finalizers run under the budgets). */
void policy_sandbox_close(struct policy_sandbox *sb);
/* Starts and ends the budgets of one call. */
void policy_sandbox_arm(struct policy_sandbox *sb);
void policy_sandbox_disarm(struct policy_sandbox *sb);
/* Compiles 'src' as a text chunk named 'chunkname' ("@auth.lua") in the
 * policy's own environment and runs it under the budgets; what it returned
 * is kept as the state's module (policy_sandbox_push_module). Returns 0, or
 * -1 with 'err' filled. */
int policy_sandbox_load(struct policy_sandbox *sb, const char *chunkname, const char *src,
			size_t len, char *err, size_t errlen);
/* Pushes the module the loaded chunk returned (inside a run only). */
void policy_sandbox_push_module(lua_State *L);
/* Runs 'fn(ctx)' protected, under the budgets. Returns 0, or -1 with 'err'
 * filled (the message, or why the call was stopped); sets '*killed' when a
 * limit stopped it. The stack is left as found. */
int policy_sandbox_run(struct policy_sandbox *sb, lua_CFunction fn, void *ctx, bool *killed,
		       char *err, size_t errlen);
/* Stops the running call (as over its time limit) when its deadline has
 * passed: for C code that may have run long (a provider query) to call
 * when it returns. */
void policy_sandbox_check_deadline(lua_State *L);
/* The sandbox of any lua_State the module opened. */
struct policy_sandbox *policy_sandbox_of(lua_State *L);

/* policy_edge.c */

/* Builds the `edge` table from the registration table and leaves a
 * read-only view of it on the stack. */
void policy_edge_push(lua_State *L);
/* Pushes a Lua value for 'j' (objects and arrays become tables, null
 * becomes nil). Raises on depth beyond POLICY_MAX_DEPTH. */
void policy_edge_push_json(lua_State *L, const cJSON *j, int depth);
/* Converts the table at 'idx' into a cJSON object of scalar values (string,
 * number, boolean). Returns it (the caller owns it), or raises with a message
 * naming the bad field. No C allocation is left behind on a raise: the
 * object lives in a userdata with a finalizer until it is handed over. */
cJSON *policy_edge_table_to_tags(lua_State *L, int idx, const char *what);
/* Pushes a table of the claims (or an empty table). */
void policy_edge_push_claims(lua_State *L, const cJSON *claims);

/* ---- the host (policy_host.c) ------------------------------------------ */

enum policy_kind_id {
	POLICY_KIND_AUTH,
	POLICY_KIND_QUOTA,
	POLICY_KIND_LIFECYCLE,
	POLICY_KIND_SOURCES,
	POLICY_KIND__COUNT,
};

/* A policy file and the hooks it must define. */
struct policy_kind {
	const char *name;
	const char *file;
	const char *const *hooks;
};

extern const struct policy_kind policy_kinds[POLICY_KIND__COUNT];

/* /healthz reports a policy as degraded for this long after a call of it
 * fell back. */
#define POLICY_DEGRADED_WINDOW_NS (60LL * 1000000000LL)

/* Independent states per loaded file: calls run in parallel up to this
 * many, and a call stuck in a slow provider query (Redis) holds only one. */
#define POLICY_STATES_PER_UNIT 4

/* One lua_State of a unit; 'mu' serializes the calls into it. */
struct policy_state {
	pthread_mutex_t mu;
	struct policy_sandbox sb;
};

/* One loaded version of one file, in POLICY_STATES_PER_UNIT states built
 * from the same text. Callers hold a reference while they use it. */
struct policy_unit {
	atomic_int refs;
	atomic_uint next; /* round-robin start for picking a state */
	struct policy_state states[POLICY_STATES_PER_UNIT];
	char sha256[65];
	int64_t loaded_wall_ns;
	/* quota.lua only: the limits its module declares (M.limits), so the
	 * built-in default enforces them when a call fails; 0 = none. */
	long long limit_user_concurrent, limit_user_minutes_per_day;
};

/* A policy's place in the host: the unit in force and what the status
 * reports. 'live', 'last_error' and 'failed_sha256' are guarded by the
 * host's mutex; the counters are atomic. */
struct policy_slot {
	struct policy_unit *live;
	char last_error[POLICY_ERR_MAX]; /* why the file did not load; "" when it did */
	/* The latest failed call of the version in force (cleared when a new
	 * version is swapped in) and when it happened. */
	char call_error[POLICY_ERR_MAX];
	int64_t call_error_wall_ns, call_error_mono_ns;
	char failed_sha256[65]; /* the content that failed, not retried until it changes */
	bool absent;            /* no file at all (and none in force): the operator ships none */
	atomic_ullong calls, fallbacks, kills, reloads, unlogged;
	_Atomic int64_t last_log_ns;
};

struct policy_host {
	char dir[POLICY_DIR_MAX];
	const struct config *cfg;
	struct policy_limits limits;
	/* Slots' pointers and status, the provider. Calls only read; writers
	 * (a swap, an error, the provider) are preferred so that a reload is
	 * never starved by a steady stream of calls. */
	pthread_rwlock_t lock;
	pthread_mutex_t reload_mu;   /* one reload at a time */
	struct policy_provider provider;
	struct policy_slot slots[POLICY_KIND__COUNT];
	char lib_digest[65];
	atomic_ullong reload_failures;
	struct policy_watch *watch;
};

/* policy_host_call's answer when the policy has no file at all: the
 * operator did not ship one, so the built-in default is the policy. */
#define POLICY_CALL_ABSENT (-2)

/* Runs 'fn(ctx)' in the unit in force for 'k', under its budgets. Returns 0,
 * POLICY_CALL_ABSENT, or -1 with 'err' filled (failed to load, raised,
 * stopped by a limit, answered a wrong type); the failure is counted, kept
 * for the status report and logged (at most once a second per policy). */
int policy_host_call(struct policy_host *h, enum policy_kind_id k, lua_CFunction fn, void *ctx,
		     char *err, size_t errlen);

/* The limits the built-in quota default enforces: policy.param.<name> from
 * the configuration when it is a number, else what the quota.lua in force
 * declares in M.limits; 0 = none. */
void policy_host_quota_limits(struct policy_host *h, long long *user_concurrent,
			      long long *user_minutes_per_day);

/* What the other files ask of the host. */

/* Copies the provider under the host's lock. */
void policy_host_provider(struct policy_host *h, struct policy_provider *out);
/* The configuration edge.config reads (may be NULL). */
const struct config *policy_host_config(struct policy_host *h);
/* The policy directory. */
const char *policy_host_dir(struct policy_host *h);

/* policy_watch.c */

struct policy_watch;
/* Starts the thread that calls policy_host_reload when a file in 'dir' or
 * 'dir'/lib changes (and every second regardless). NULL on failure
 * (logged). */
struct policy_watch *policy_watch_start(struct policy_host *h, const char *dir);
void policy_watch_stop(struct policy_watch *w);

#endif
