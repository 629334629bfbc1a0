/* main_serve: `edgerec serve`: reads the configuration (file < environment
 * < --set), brings the modules up in dependency order (state, policy,
 * recorder, http), prints where it listens and a development token, runs
 * until SIGINT/SIGTERM, then takes the modules down in reverse order.
 * SIGHUP reloads the configuration and the policies (serve_reload). */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <systemd/sd-daemon.h>

#include "common_log.h"
#include "common_util.h"
#include "config.h"
#include "crypto.h"
#include "crypto_jwt.h"
#include "http.h"
#include "main.h"
#include "policy.h"
#include "recorder.h"
#include "state.h"
#include "storage.h"
#include "storage_s3.h"

#define SERVE_DEFAULT_CONFIG "/etc/edgerec/edgerec.conf"
#define SERVE_DEV_USER "dev"
#define SERVE_DEV_TOKEN_TTL_S (24 * 3600)
/* glibc gives every thread that finds the arenas busy an arena of its own
 * (up to 8 per core) and each arena keeps what was freed in it, so a
 * server whose recordings each run a source, encoder and mux thread ends up
 * holding the peak of every arena at once. Two arenas keep malloc
 * contention low on the small boards this runs on (most allocations of a
 * hot path are served by glibc's per-thread cache without the lock). */
#define SERVE_MALLOC_ARENAS 2
/* glibc's default mmap threshold is dynamic: freeing a large mmapped block
 * raises the threshold to its size and the trim threshold to twice that.
 * libvpx frees a 22 MB buffer when a 720p encoder closes, after which every
 * later encoder's big buffers come out of an arena whose top is only
 * returned above 44 MB: after a few recordings the server held ~40 MB of
 * free memory (malloc_trim does not trim the top of a thread's arena).
 * Fixed thresholds: blocks above 4 MB (codec contexts) are mmapped and
 * unmapped on free; raw frames (1.4 MB at 720p, 3.1 MB at 1080p) stay in
 * the arenas, so they are reused without page faults; free memory above
 * 2 MB at the top of an arena goes back to the system (malloc_trim only
 * trims the main arena's top). 1 MB would cost a 720p recording measurably
 * more system time in page faults; 2 MB does not. */
#define SERVE_MALLOC_MMAP_THRESHOLD (4 << 20)
#define SERVE_MALLOC_TRIM_THRESHOLD (2 << 20)

static struct log_handle serve_log = LOG_HANDLE("serve");

static const char *const serve_log_levels[] = { "", "error", "warn", "info", "debug", "trace", NULL };

/* The options only this command reads. state_dir, jwt_secret and
 * jwt_public_key belong to http_options, registered below. */
static const struct config_option serve_options[] = {
	{ "redis_url", CONFIG_STR, "",
	  "redis://host:port[/db], redis-sentinel://host:port,.../mastername[/db] or unix:///path; "
	  "empty: an embedded redis-server in state_dir" },
	{ "log_level", CONFIG_STR, "", "error, warn, info, debug or trace (EDGEREC_LOG wins when set)",
	  .choices = serve_log_levels, .flags = CONFIG_LIVE },
	{ "dev_token", CONFIG_BOOL, "true", "print a development token for user 'dev' at start" },
	{ 0 },
};

/* Raises the soft limit of open files to the hard one. Every rtp recording
 * holds two to four UDP sockets and its file, so 150 of them need more than
 * the 1024 a service gets by default (systemd's soft limit; its hard limit
 * is far higher). */
static void serve_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rlim_t was = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		LOG_INFO(&serve_log, "open files limit raised from %llu to %llu", (unsigned long long)was,
			 (unsigned long long)rl.rlim_cur);
}

static void serve_usage(FILE *out)
{
	fprintf(out,
		"usage: edgerec serve [--config PATH] [--set KEY=VALUE]... [--print-config]\n"
		"\n"
		"Runs the recording appliance: HTTPS REST API, WebSocket events, Redis state.\n"
		"Settings come from the file, then EDGEREC_<KEY> environment variables, then --set.\n"
		"\n"
		"  --config PATH     configuration file (default %s if it exists)\n"
		"  --set KEY=VALUE   set one option (repeatable)\n"
		"  --print-config    print every option with its value and origin (secrets redacted), then exit\n"
		"\n"
		"SIGHUP reloads the configuration and the policies; SIGTERM or SIGINT stops.\n",
		SERVE_DEFAULT_CONFIG);
}

/* Registers every module's options, in dependency order. */
static int serve_register(struct config *c)
{
	if (config_register(c, serve_options) < 0 || config_register(c, http_options) < 0 ||
	    recorder_config_register(c) < 0 || config_register(c, policy_config_options) < 0 ||
	    config_register(c, storage_config_options) < 0)
		return -1;
	return 0;
}

/* Makes sure a JWT verification key exists: jwt_secret from the
 * configuration, else the secret kept in state_dir/jwt_secret (created on
 * first start). Fills 'secret' (may end up empty when only an ES256 public
 * key is configured). Returns 0 or -1. */
static int serve_secret(struct config *c, char *secret, size_t len)
{
	char path[4096], err[512];
	const char *s = config_get_str(c, "jwt_secret");
	const char *pub = config_get_str(c, "jwt_public_key");
	secret[0] = '\0';
	if (s && *s) {
		util_strlcpy(secret, s, len);
		return 0;
	}
	if (pub && *pub)
		return 0;
	snprintf(path, sizeof(path), "%s/jwt_secret", config_get_str(c, "state_dir"));
	int rc = crypto_load_or_create_secret(path, true, secret, len, err, sizeof(err));
	if (rc < 0) {
		LOG_ERROR(&serve_log, "jwt secret: %s", err);
		return -1;
	}
	if (rc == 1)
		LOG_INFO(&serve_log, "created a JWT secret in %s", path);
	if (config_set(c, "jwt_secret", secret, err, sizeof(err)) < 0) {
		LOG_ERROR(&serve_log, "jwt secret: %s", err);
		return -1;
	}
	return 0;
}

/* A development token for user "dev", valid a day; malloc'd or NULL. */
static char *serve_dev_token(const char *secret)
{
	cJSON *claims = cJSON_CreateObject();
	char *tok = NULL;
	time_t now = time(NULL);
	if (claims && cJSON_AddStringToObject(claims, "sub", SERVE_DEV_USER) &&
	    cJSON_AddNumberToObject(claims, "iat", (double)now) &&
	    cJSON_AddNumberToObject(claims, "exp", (double)(now + SERVE_DEV_TOKEN_TTL_S)))
		tok = crypto_jwt_sign_hs256(secret, claims);
	cJSON_Delete(claims);
	return tok;
}

/* A policy problem degrades the appliance, never takes it down: the last
 * good version or the built-in default decides meanwhile. ok with a reason
 * is what /healthz shows as "degraded". */
static bool serve_policy_health(void *opaque, char *why, size_t whylen)
{
	policy_healthy(opaque, why, whylen);
	return true;
}

/* The disk and the S3 uploads: never down, degraded when starts would be
 * refused for space or uploads fail. */
static bool serve_storage_health(void *opaque, char *why, size_t whylen)
{
	return recorder_storage_health(opaque, why, whylen);
}

/* The state store's figures for /metrics (Redis reachability, the retry
 * buffer, the subscriber). */
static char *serve_state_metrics(void *opaque)
{
	struct state_stats ss;
	char *text = NULL;
	state_stats(opaque, &ss);
	if (asprintf(&text,
		     "# HELP edgerec_redis_up 1 when Redis answered the last command.\n"
		     "# TYPE edgerec_redis_up gauge\nedgerec_redis_up %d\n"
		     "# HELP edgerec_state_deferred_writes_total State writes kept for retry while Redis was away.\n"
		     "# TYPE edgerec_state_deferred_writes_total counter\nedgerec_state_deferred_writes_total %llu\n"
		     "# HELP edgerec_state_retried_writes_total Deferred state writes written later.\n"
		     "# TYPE edgerec_state_retried_writes_total counter\nedgerec_state_retried_writes_total %llu\n"
		     "# HELP edgerec_state_dropped_writes_total State writes lost (retry buffer full).\n"
		     "# TYPE edgerec_state_dropped_writes_total counter\nedgerec_state_dropped_writes_total %llu\n"
		     "# HELP edgerec_state_pending_writes State writes waiting for Redis now.\n"
		     "# TYPE edgerec_state_pending_writes gauge\nedgerec_state_pending_writes %zu\n"
		     "# HELP edgerec_state_events_received_total Room events received from Redis.\n"
		     "# TYPE edgerec_state_events_received_total counter\nedgerec_state_events_received_total %llu\n"
		     "# HELP edgerec_redis_master_changes_total Times the Redis master moved (redis-sentinel:// only).\n"
		     "# TYPE edgerec_redis_master_changes_total counter\nedgerec_redis_master_changes_total %llu\n",
		     ss.redis_up ? 1 : 0, (unsigned long long)ss.deferred_writes,
		     (unsigned long long)ss.retried_writes, (unsigned long long)ss.dropped_writes, ss.pending_writes,
		     (unsigned long long)ss.events_received, (unsigned long long)ss.master_changes) < 0)
		return NULL;
	return text;
}

static char *serve_policy_metrics(void *opaque)
{
	return policy_metrics_text(opaque);
}

/* Downloads of recordings that only S3 holds: a presigned GET URL. */
static char *serve_presign(void *opaque, const char *key, long long expires_s, const char *disposition,
			   char *err, size_t errlen)
{
	return storage_s3_presign_get(opaque, key, expires_s, disposition, err, errlen);
}

static cJSON *serve_policy_status(void *opaque)
{
	return policy_status_json(opaque);
}

/* Environment variables read outside the option tables. */
static const char *const serve_env_other[] = { "EDGEREC_LOG", NULL };

/* The log level: EDGEREC_LOG when set, else log_level, else info. */
static void serve_apply_log_level(const struct config *c)
{
	const char *level = config_get_str(c, "log_level");
	if (getenv("EDGEREC_LOG") && log_level_from_name(getenv("EDGEREC_LOG")) >= 0)
		log_set_level(-1);
	else
		log_set_level(level && *level ? log_level_from_name(level) : LOG_LEVEL_INFO);
}

/* Checks the whole configuration as the modules will read it, before any
 * of them starts (or, on SIGHUP, before it replaces the running one). */
static int serve_check(const struct config *c, char *err, size_t errlen)
{
	if (http_config_check(c, err, errlen) < 0 || recorder_config_check(c, err, errlen) < 0)
		return -1;
	const char *state_dir = config_get_str(c, "state_dir");
	if (!state_dir || !*state_dir) {
		snprintf(err, errlen, "state_dir is empty");
		return -1;
	}
	return 0;
}

/* Builds the configuration: every module's options, the file 'path' (may
 * be NULL), the EDGEREC_* environment, then the --set pairs 'sets' (each
 * "KEY=VALUE"), and checks all of it. Returns it, or NULL with 'err'. */
static struct config *serve_configure(const char *path, char **sets, int nsets, char *err, size_t errlen)
{
	char why[1024];
	struct config *c = config_new();
	if (!c || serve_register(c) < 0) {
		snprintf(err, errlen, "cannot register the options");
		goto fail;
	}
	if (path && config_load_file(c, path, err, errlen) < 0)
		goto fail;
	if (config_apply_env_checked(c, err, errlen) < 0)
		goto fail;
	for (int i = 0; i < nsets; i++) {
		const char *eq = strchr(sets[i], '=');
		char key[256];
		if (!eq || (size_t)(eq - sets[i]) >= sizeof(key)) {
			snprintf(err, errlen, "--set %s: expected KEY=VALUE", sets[i]);
			goto fail;
		}
		memcpy(key, sets[i], (size_t)(eq - sets[i]));
		key[eq - sets[i]] = '\0';
		if (config_set(c, key, eq + 1, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "--set: %.900s", why);
			goto fail;
		}
	}
	if (serve_check(c, err, errlen) < 0)
		goto fail;
	return c;
fail:
	config_free(c);
	return NULL;
}

/* What a SIGHUP reloads. */
struct serve_reload_ctx {
	struct config *cfg;
	const char *path;
	char **sets;
	int nsets;
	struct recorder *rec;
	struct policy_host *pol;
	struct storage_s3 *s3;  /* the presigner's client, or NULL */
	struct http_server *http;
	int changed, restart;
};

static void serve_reload_change(void *opaque, const char *key, const char *old_value, const char *new_value)
{
	struct serve_reload_ctx *x = opaque;
	bool live = config_flags(x->cfg, key) & CONFIG_LIVE;
	x->changed++;
	x->restart += !live;
	LOG_AT(&serve_log, live ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, "reload: %s: %s -> %s (%s)", key,
	       old_value ? old_value : "(unset)", new_value ? new_value : "(unset)",
	       live ? "applied" : "needs a restart");
}

/* SIGHUP: reads the configuration again (file, environment, --set),
 * checks all of it beside the running one, swaps it in, puts the options
 * marked CONFIG_LIVE in force and says which changes wait for a restart;
 * then reloads the policies. A configuration that does not pass changes
 * nothing. Runs on the main thread; never ends the process. */
static void serve_reload(struct serve_reload_ctx *x)
{
	char err[1024];
	LOG_INFO(&serve_log, "SIGHUP: reloading the configuration%s and the policies",
		 x->path ? "" : " (no file: the environment only)");
	x->changed = x->restart = 0;
	struct config *fresh = serve_configure(x->path, x->sets, x->nsets, err, sizeof(err));
	if (!fresh) {
		LOG_ERROR(&serve_log, "reload refused, the running configuration stays: %s", err);
		goto policies;
	}
	config_free(fresh);
	struct config_snapshot *before = config_snapshot(x->cfg);
	int rc = x->path ? config_reload_file(x->cfg, x->path, err, sizeof(err))
			 : config_apply_env_checked(x->cfg, err, sizeof(err));
	if (rc < 0) {
		LOG_ERROR(&serve_log, "reload refused, the running configuration stays: %s", err);
		config_snapshot_free(before);
		goto policies;
	}
	config_diff(x->cfg, before, serve_reload_change, x);
	config_snapshot_free(before);
	serve_apply_log_level(x->cfg);
	if (recorder_reload(x->rec, err, sizeof(err)) < 0)
		LOG_ERROR(&serve_log, "reload: recorder: %s", err);
	if (x->s3 && storage_s3_reload_credentials(x->s3, x->cfg) < 0)
		LOG_ERROR(&serve_log, "reload: the S3 credentials are incomplete: downloads keep the previous ones");
	/* The certificate files are read again even when their names did not
	 * change: a renewal replaces them in place. */
	int tls = http_server_reload_tls(x->http, err, sizeof(err));
	if (tls < 0)
		LOG_ERROR(&serve_log, "reload: TLS certificate not replaced, the running one stays: %s", err);
	else if (tls > 0)
		LOG_INFO(&serve_log, "reload: TLS certificate read again; new connections get it");
	LOG_INFO(&serve_log, "reload: %d option%s changed, %d applied, %d need%s a restart", x->changed,
		 x->changed == 1 ? "" : "s", x->changed - x->restart, x->restart, x->restart == 1 ? "s" : "");
policies:
	if (x->pol) {
		int n = policy_host_reload(x->pol);
		LOG_INFO(&serve_log, "reload: policies rescanned, %d new version%s in force", n, n == 1 ? "" : "s");
	}
	LOG_INFO(&serve_log, "reload: done");
}

int main_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, 's' },
		{ "print-config", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *config_path = NULL;
	bool print_config = false;
	char **sets = calloc((size_t)argc + 1, sizeof(char *));
	int nsets = 0, status = 1, opt;
	char err[1024], secret[512], node_id[256];
	struct config *cfg = NULL;
	struct state *st = NULL;
	struct policy_host *pol = NULL;
	struct recorder *rec = NULL;
	struct http_server *http = NULL;
	struct storage_s3 *s3 = NULL;
	int sfd = -1;

	if (!sets)
		return 1;
	mallopt(M_ARENA_MAX, SERVE_MALLOC_ARENAS);
	mallopt(M_MMAP_THRESHOLD, SERVE_MALLOC_MMAP_THRESHOLD);
	mallopt(M_TRIM_THRESHOLD, SERVE_MALLOC_TRIM_THRESHOLD);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:s:ph", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 's': sets[nsets++] = optarg; break;
		case 'p': print_config = true; break;
		case 'h': serve_usage(stdout); status = 0; goto out;
		default: serve_usage(stderr); status = 2; goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "edgerec serve: unexpected argument '%s'\n", argv[optind]);
		serve_usage(stderr);
		status = 2;
		goto out;
	}

	if (!config_path && access(SERVE_DEFAULT_CONFIG, R_OK) == 0)
		config_path = SERVE_DEFAULT_CONFIG;
	cfg = serve_configure(config_path, sets, nsets, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "edgerec serve: %s\n", err);
		status = 2;
		goto out;
	}
	char unknown[1024];
	int nunknown = config_unknown_env(cfg, serve_env_other, unknown, sizeof(unknown));
	if (nunknown > 0)
		LOG_WARN(&serve_log, "%d EDGEREC_* environment variable%s set%s no option (ignored): %s", nunknown,
			 nunknown == 1 ? "" : "s", nunknown == 1 ? "s" : "", unknown);
	serve_apply_log_level(cfg);
	if (print_config) {
		config_dump(cfg, stdout);
		status = 0;
		goto out;
	}

	const char *state_dir = config_get_str(cfg, "state_dir");
	if (!state_dir || !*state_dir || util_mkdir_p(state_dir, 0700) < 0) {
		fprintf(stderr, "edgerec serve: state_dir '%s' cannot be created: %s\n",
			state_dir ? state_dir : "", strerror(errno));
		goto out;
	}
	if (serve_secret(cfg, secret, sizeof(secret)) < 0)
		goto out;
	if (recorder_node_id(cfg, node_id, sizeof(node_id)) < 0) {
		fprintf(stderr, "edgerec serve: cannot determine the node id\n");
		goto out;
	}

	/* SIGINT, SIGTERM and SIGHUP are blocked in every thread (the ones
	 * started below inherit the mask) and read from a signalfd by this
	 * thread alone: no handler runs, so no system call of a recording's
	 * threads is interrupted by a reload. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0 || (sfd = signalfd(-1, &sigs, SFD_CLOEXEC)) < 0) {
		fprintf(stderr, "edgerec serve: signalfd: %s\n", strerror(errno));
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);

	serve_raise_nofile();

	/* Up, in dependency order. */
	const char *redis_url = config_get_str(cfg, "redis_url");
	st = state_new(redis_url && *redis_url ? redis_url : NULL, state_dir, node_id, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "edgerec serve: state: %s\n", err);
		goto out;
	}
	const char *policy_dir = config_get_str(cfg, "policy_dir");
	/* Policies are optional: a default policy_dir that does not exist
	 * means "none installed"; one the operator named must work. */
	if (policy_dir && *policy_dir && !config_is_set(cfg, "policy_dir") && access(policy_dir, F_OK) != 0) {
		LOG_INFO(&serve_log, "no policies in %s: built-in rules apply", policy_dir);
	} else if (policy_dir && *policy_dir) {
		pol = policy_host_new_from_config(cfg, err, sizeof(err));
		if (!pol) {
			fprintf(stderr, "edgerec serve: policies: %s\n", err);
			goto out;
		}
	}
	rec = recorder_new(cfg, st, pol, err, sizeof(err));
	if (!rec) {
		fprintf(stderr, "edgerec serve: recorder: %s\n", err);
		goto out;
	}
	http = http_server_new(cfg, rec, err, sizeof(err));
	if (!http) {
		fprintf(stderr, "edgerec serve: http: %s\n", err);
		goto out;
	}
	http_server_add_metrics(http, serve_state_metrics, st);
	http_server_add_metrics(http, recorder_storage_metrics, rec);
	http_server_add_health_check(http, "storage", serve_storage_health, rec);
	const char *backend = config_get_str(cfg, "storage_backend");
	if (backend && strcmp(backend, "s3") == 0) {
		s3 = storage_s3_new_from_config(cfg, err, sizeof(err));
		if (s3)
			http_server_set_presigner(http, serve_presign, s3);
		else
			LOG_WARN(&serve_log, "downloads from S3 unavailable: %s", err);
	}
	if (pol) {
		http_server_add_health_check(http, "policies", serve_policy_health, pol);
		http_server_set_policy_status(http, serve_policy_status, pol);
		http_server_add_metrics(http, serve_policy_metrics, pol);
	}

	/* What a person (or a test harness) needs to start using it. */
	if (http_server_url(http, true))
		printf("edgerec serve: listening on %s\n", http_server_url(http, true));
	if (http_server_url(http, false))
		printf("edgerec serve: listening on %s\n", http_server_url(http, false));
	char redis_shown[512];
	printf("edgerec serve: node %s, state in %s, redis %s\n", node_id, state_dir,
	       redis_url && *redis_url ?
	       config_display_value(cfg, "redis_url", redis_url, redis_shown, sizeof(redis_shown)) : "embedded");
	if (secret[0] && config_get_bool(cfg, "dev_token")) {
		char *tok = serve_dev_token(secret);
		if (tok)
			printf("edgerec serve: token for user '%s' (24 h): %s\n", SERVE_DEV_USER, tok);
		free(tok);
	}
	const char *console_user = NULL;
	const char *console_pw = http_server_console_password_file(http, &console_user);
	if (console_pw)
		printf("edgerec serve: console sign-in as '%s', password in %s\n", console_user, console_pw);
	printf("edgerec serve: ready (Ctrl-C stops)\n");
	fflush(stdout);
	/* Under systemd (Type=notify): ready once listening with Redis
	 * connected; the watchdog is fed from this loop, so a stuck main
	 * thread gets the service restarted. Outside systemd these do nothing. */
	uint64_t watchdog_us = 0;
	if (sd_watchdog_enabled(0, &watchdog_us) <= 0)
		watchdog_us = 0;
	sd_notify(0, "READY=1");

	struct serve_reload_ctx reload = { .cfg = cfg, .path = config_path, .sets = sets, .nsets = nsets,
					   .rec = rec, .pol = pol, .s3 = s3, .http = http };
	for (;;) {
		/* Waits for a signal, waking at half the watchdog period to feed it. */
		if (watchdog_us)
			sd_notify(0, "WATCHDOG=1");
		struct pollfd pfd = { .fd = sfd, .events = POLLIN };
		int pr = poll(&pfd, 1, watchdog_us ? (int)(watchdog_us / 2000) : -1);
		if (pr == 0 || (pr < 0 && errno == EINTR))
			continue;
		struct signalfd_siginfo si;
		ssize_t n = read(sfd, &si, sizeof(si));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n != (ssize_t)sizeof(si)) {
			LOG_ERROR(&serve_log, "signalfd: %s", n < 0 ? strerror(errno) : "short read");
			break;
		}
		if (si.ssi_signo == SIGHUP) {
			serve_reload(&reload);
			continue;
		}
		LOG_INFO(&serve_log, "signal %u: shutting down", si.ssi_signo);
		/* A second SIGINT or SIGTERM while shutting down ends the
		 * process: this thread takes them with the default action. */
		sigdelset(&sigs, SIGHUP);
		pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
		break;
	}
	sd_notify(0, "STOPPING=1");
	status = 0;
out:
	/* Down, in reverse order. */
	http_server_free(http);
	storage_s3_free(s3);
	recorder_free(rec);
	policy_host_free(pol);
	state_free(st);
	config_free(cfg);
	if (sfd >= 0)
		close(sfd);
	free(sets);
	if (status == 0 && !print_config)
		LOG_INFO(&serve_log, "stopped");
	return status;
}
