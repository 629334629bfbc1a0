/* state_embedded: the redis-server edgerec runs itself when no Redis URL is
 * configured: a generated config (unix socket only, append-only file in the
 * state directory), a supervisor thread that restarts it when it dies, and a
 * clean stop. The child dies with us (PR_SET_PDEATHSIG) and sits in its own
 * process group, so a Ctrl-C in a terminal reaches edgerec only and edgerec
 * decides when its store goes down. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common_time.h"
#include "common_util.h"
#include "state_internal.h"

static struct log_handle log_emb = LOG_HANDLE("state/redis");

#define STATE_EMB_READY_TIMEOUT_MS 10000
#define STATE_EMB_STOP_TIMEOUT_MS 5000
#define STATE_EMB_BUSY_WAIT_MS 3000
#define STATE_EMB_BACKOFF_MAX_MS 5000

struct state_embedded {
	char dir[PATH_MAX];
	char conf[PATH_MAX + 16];
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char log[PATH_MAX + 16];
	pthread_t thread;
	bool thread_started;
	int wake[2];
	atomic_int pid;
	atomic_uint_fast64_t exits;
	atomic_uint_fast64_t restarts;
};

/* Writes the generated redis.conf. Paths are quoted; a path that cannot be
 * quoted safely is refused. */
/* Files an older edgerec left world-readable (redis-server then ran with
 * edgerec's umask): the AOF directory and its files, the log and the RDB
 * become the owner's only. New ones are made so (umask in the child). */
static void state_emb_tighten(struct state_embedded *e)
{
	char path[PATH_MAX + 32];
	static const char *const names[] = { "appendonlydir", "redis.log", "dump.rdb", "appendonly.aof" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct stat sb;
		snprintf(path, sizeof path, "%s/%s", e->dir, names[i]);
		if (lstat(path, &sb) != 0)
			continue;
		chmod(path, S_ISDIR(sb.st_mode) ? 0700 : 0600);
		if (!S_ISDIR(sb.st_mode))
			continue;
		DIR *d = opendir(path);
		for (struct dirent *de; d && (de = readdir(d));) {
			char file[PATH_MAX + 320];
			snprintf(file, sizeof file, "%s/%s", path, de->d_name);
			if (de->d_type == DT_REG)
				chmod(file, 0600);
		}
		if (d)
			closedir(d);
	}
}

static int state_emb_write_conf(struct state_embedded *e, char *err, size_t errlen)
{
	const char *paths[] = { e->dir, e->sock, e->log };
	for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
		if (strpbrk(paths[i], "\"\\\n\r")) {
			snprintf(err, errlen, "state directory '%s' has characters redis.conf cannot hold", e->dir);
			return -1;
		}
	}
	char tmp[PATH_MAX + 32];
	snprintf(tmp, sizeof tmp, "%s.tmp", e->conf);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		return -1;
	}
	fprintf(f,
		"# redis.conf of the embedded store; edgerec rewrites it at every start.\n"
		"# Unix socket only, no TCP; the data persists as an append-only file here,\n"
		"# synced at every write: state changes are few and must survive a power cut.\n"
		"port 0\n"
		"unixsocket \"%s\"\n"
		"unixsocketperm 700\n"
		"dir \"%s\"\n"
		"logfile \"%s\"\n"
		"daemonize no\n"
		"appendonly yes\n"
		"appendfsync always\n"
		"save \"\"\n"
		"databases 1\n",
		e->sock, e->dir, e->log);
	if (util_file_commit(f, tmp, e->conf, err, errlen) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Forks and execs redis-server; called on the supervisor thread only (the
 * death signal follows the thread that forked). Returns the pid or -1. */
static pid_t state_emb_spawn(struct state_embedded *e)
{
	char *argv[] = { "redis-server", e->conf, NULL };
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		LOG_ERROR(&log_emb, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		setpgid(0, 0);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			if (null > 2)
				close(null);
		}
		close_range(3, ~0U, 0);
		/* The AOF, RDB and log hold every recording's state: for
		 * edgerec's user only. */
		umask(0077);
		execvp(argv[0], argv);
		_exit(127);
	}
	atomic_store(&e->pid, pid);
	LOG_INFO(&log_emb, "started redis-server (pid %d) on %s", (int)pid, e->sock);
	return pid;
}

/* Waits up to 'ms' for a stop request; true when one came. */
static bool state_emb_sleep(struct state_embedded *e, int64_t ms)
{
	struct pollfd pfd = { .fd = e->wake[0], .events = POLLIN };
	return poll(&pfd, 1, (int)ms) > 0;
}

/* Stops the child: SIGTERM (it finishes its append-only file), then SIGKILL
 * after STATE_EMB_STOP_TIMEOUT_MS. */
static void state_emb_terminate(struct state_embedded *e)
{
	pid_t pid = atomic_load(&e->pid);
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	int64_t deadline = time_mono_ns() + STATE_EMB_STOP_TIMEOUT_MS * TIME_NS_PER_MS;
	int status;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (time_mono_ns() > deadline) {
			LOG_WARN(&log_emb, "redis-server (pid %d) ignored SIGTERM; killing it", (int)pid);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		time_sleep_ns(10 * TIME_NS_PER_MS);
	}
	atomic_store(&e->pid, 0);
	LOG_INFO(&log_emb, "redis-server stopped");
}

static void *state_emb_main(void *arg)
{
	struct state_embedded *e = arg;
	int64_t backoff = 100;
	state_emb_spawn(e);
	for (;;) {
		if (state_emb_sleep(e, 50))
			break;
		pid_t pid = atomic_load(&e->pid);
		int status;
		if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
			atomic_store(&e->pid, 0);
			atomic_fetch_add(&e->exits, 1);
			if (WIFSIGNALED(status))
				LOG_ERROR(&log_emb, "redis-server (pid %d) killed by signal %d; restarting",
					  (int)pid, WTERMSIG(status));
			else
				LOG_ERROR(&log_emb, "redis-server (pid %d) exited with %d; restarting (see %s)",
					  (int)pid, WEXITSTATUS(status), e->log);
			if (state_emb_sleep(e, backoff))
				break;
			backoff = backoff * 2 > STATE_EMB_BACKOFF_MAX_MS ? STATE_EMB_BACKOFF_MAX_MS : backoff * 2;
			if (state_emb_spawn(e) > 0)
				atomic_fetch_add(&e->restarts, 1);
		} else if (pid <= 0) {
			if (state_emb_sleep(e, backoff))
				break;
			state_emb_spawn(e);
		}
	}
	state_emb_terminate(e);
	return NULL;
}

/* True when something answers PING on the socket now. */
static bool state_emb_ping(const struct state_url *url)
{
	char err[128];
	redisContext *c = state_connect(url, 200, 500, err, sizeof err);
	if (!c)
		return false;
	redisReply *r = redisCommand(c, "PING");
	bool ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return ok;
}

struct state_embedded *state_embedded_start(const char *state_dir, struct state_url *url, char *err,
					    size_t errlen)
{
	struct state_embedded *e = calloc(1, sizeof *e);
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->wake[0] = e->wake[1] = -1;
	int rc = util_mkdir_p(state_dir, 0700);
	if (rc != 0) {
		snprintf(err, errlen, "cannot create state directory %s: %s", state_dir, strerror(-rc));
		goto fail;
	}
	if (!realpath(state_dir, e->dir)) {
		snprintf(err, errlen, "state directory %s: %s", state_dir, strerror(errno));
		goto fail;
	}
	if ((size_t)snprintf(e->sock, sizeof e->sock, "%s/redis.sock", e->dir) >= sizeof e->sock) {
		snprintf(err, errlen, "state directory path too long for a unix socket: %s", e->dir);
		goto fail;
	}
	snprintf(e->conf, sizeof e->conf, "%s/redis.conf", e->dir);
	snprintf(e->log, sizeof e->log, "%s/redis.log", e->dir);
	memset(url, 0, sizeof *url);
	util_strlcpy(url->unix_path, e->sock, sizeof url->unix_path);

	/* A server still answering here is either the one of an edgerec that
	 * just died (it got SIGTERM and is finishing its file) or the one of
	 * another edgerec using the same directory. Give the first time to go;
	 * never start a second server on the same append-only file. */
	int64_t busy_deadline = time_mono_ns() + STATE_EMB_BUSY_WAIT_MS * TIME_NS_PER_MS;
	while (state_emb_ping(url)) {
		if (time_mono_ns() > busy_deadline) {
			snprintf(err, errlen, "another redis-server already serves %s (is another edgerec using %s?)",
				 e->sock, e->dir);
			goto fail;
		}
		time_sleep_ns(50 * TIME_NS_PER_MS);
	}
	if (state_emb_write_conf(e, err, errlen) != 0)
		goto fail;
	state_emb_tighten(e);
	if (pipe2(e->wake, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	if (pthread_create(&e->thread, NULL, state_emb_main, e) != 0) {
		snprintf(err, errlen, "cannot start the redis supervisor thread");
		goto fail;
	}
	e->thread_started = true;

	int64_t deadline = time_mono_ns() + STATE_EMB_READY_TIMEOUT_MS * TIME_NS_PER_MS;
	for (;;) {
		if (state_emb_ping(url))
			break;
		if (atomic_load(&e->exits) > 0) {
			snprintf(err, errlen, "redis-server exited at start (is it installed? see %s)", e->log);
			goto fail;
		}
		if (time_mono_ns() > deadline) {
			snprintf(err, errlen, "redis-server did not answer within %d s (see %s)",
				 STATE_EMB_READY_TIMEOUT_MS / 1000, e->log);
			goto fail;
		}
		time_sleep_ns(20 * TIME_NS_PER_MS);
	}
	return e;

fail:
	state_embedded_stop(e);
	return NULL;
}

void state_embedded_stop(struct state_embedded *e)
{
	if (!e)
		return;
	if (e->thread_started) {
		ssize_t w;
		do
			w = write(e->wake[1], "x", 1);
		while (w < 0 && errno == EINTR);
		pthread_join(e->thread, NULL);
	}
	if (e->wake[0] >= 0)
		close(e->wake[0]);
	if (e->wake[1] >= 0)
		close(e->wake[1]);
	free(e);
}

int state_embedded_pid(const struct state_embedded *e)
{
	return e ? atomic_load(&e->pid) : 0;
}

uint64_t state_embedded_restarts(const struct state_embedded *e)
{
	return e ? atomic_load(&e->restarts) : 0;
}
