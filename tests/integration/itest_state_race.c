/* itest_state_race: admission is atomic across processes. Two processes
 * share one redis-server (TCP on a free loopback port); each runs 50
 * threads that start together and call state_admit. With a global limit of
 * 10 exactly 10 are admitted; with a per-user limit of 3 for one user,
 * exactly 3; with 5 users, limit 2 each and 10 overall, exactly 2 each. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common_time.h"
#include "common_util.h"
#include "itest_port.h"
#include "state.h"

#define THREADS 50
#define PROCS 2

static char url[64];
static int port;

struct round {
	int global_limit, user_limit, users;
};

struct worker {
	struct state *st;
	pthread_barrier_t *barrier;
	const struct round *round;
	int index;
	int rc;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char id[UUID_STR_LEN], user[32], reason[128];
	util_uuid_v4(id);
	snprintf(user, sizeof user, "user%d", w->index % w->round->users);
	pthread_barrier_wait(w->barrier);
	w->rc = state_admit(w->st, id, user, w->round->global_limit, w->round->user_limit, reason, sizeof reason);
	return NULL;
}

/* One racing process: waits for the go byte on 'go', then lets its threads
 * loose. Exits with the number admitted, or 255 on any error. */
static int child_main(int ready, int go, int proc, const struct round *r)
{
	char err[256], node[32], byte;
	snprintf(node, sizeof node, "racer-%d", proc);
	struct state *st = state_new(url, NULL, node, err, sizeof err);
	if (!st) {
		fprintf(stderr, "child %d: %s\n", proc, err);
		return 255;
	}
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, THREADS + 1);
	struct worker w[THREADS];
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ st, &barrier, r, proc * THREADS + i, 0 };
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	if (write(ready, "r", 1) != 1 || read(go, &byte, 1) != 1)
		return 255;
	pthread_barrier_wait(&barrier);
	int admitted = 0, errors = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		if (w[i].rc == STATE_OK)
			admitted++;
		else if (w[i].rc != STATE_REFUSED)
			errors++;
	}
	state_free(st);
	if (errors)
		fprintf(stderr, "child %d: %d admissions failed with errors\n", proc, errors);
	return errors ? 255 : admitted;
}

static const char *cli(const char *args)
{
	static char out[4096];
	char cmd[512];
	snprintf(cmd, sizeof cmd, "redis-cli -p %d --raw %s 2>&1", port, args);
	out[0] = 0;
	FILE *p = popen(cmd, "r");
	if (!p)
		return out;
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = 0;
	pclose(p);
	while (n && out[n - 1] == '\n')
		out[--n] = 0;
	return out;
}

/* Runs one round; returns the total admitted, or -1. */
static int run_round(const struct round *r)
{
	int ready[2], go[2];
	pid_t kids[PROCS];
	if (pipe(ready) || pipe(go))
		return -1;
	cli("DEL webrtc:recording:active");
	for (int p = 0; p < PROCS; p++) {
		kids[p] = fork();
		if (kids[p] == 0)
			_exit(child_main(ready[1], go[0], p, r));
	}
	char byte;
	for (int p = 0; p < PROCS; p++)
		if (read(ready[0], &byte, 1) != 1)
			return -1;
	if (write(go[1], "gg", PROCS) != PROCS)
		return -1;
	int total = 0;
	for (int p = 0; p < PROCS; p++) {
		int status;
		waitpid(kids[p], &status, 0);
		int n = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
		if (n == 255)
			total = -1000;
		total += n;
		fprintf(stderr, "process %d admitted %d\n", p, n);
	}
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	return total < 0 ? -1 : total;
}

int main(void)
{
	char dir[] = "/tmp/itest_state_race.XXXXXX", portstr[16];
	if (!mkdtemp(dir) || (port = itest_free_port()) < 0)
		return 1;
	snprintf(portstr, sizeof portstr, "%d", port);
	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
	pid_t redis = fork();
	if (redis == 0) {
		if (!freopen("/dev/null", "w", stdout))
			_exit(127);
		execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "",
		       "--appendonly", "no", "--dir", dir, (char *)NULL);
		_exit(127);
	}
	char ping[128];
	snprintf(ping, sizeof ping, "redis-cli -p %d ping >/dev/null 2>&1", port);
	int tries = 0;
	while (system(ping) != 0 && ++tries < 250)
		time_sleep_ns(20 * TIME_NS_PER_MS);
	CHECK(tries < 250);

	static const struct round global = { 10, 0, 100 };
	CHECK_INT(run_round(&global), 10);
	CHECK_INT(atoi(cli("SCARD webrtc:recording:active")), 10);

	static const struct round one_user = { 0, 3, 1 };
	cli("DEL webrtc:recording:live:user:user0");
	CHECK_INT(run_round(&one_user), 3);
	CHECK_INT(atoi(cli("SCARD webrtc:recording:live:user:user0")), 3);

	static const struct round five_users = { 10, 2, 5 };
	cli("FLUSHALL");
	CHECK_INT(run_round(&five_users), 10);
	for (int u = 0; u < 5; u++) {
		char args[64];
		snprintf(args, sizeof args, "SCARD webrtc:recording:live:user:user%d", u);
		CHECK_INT(atoi(cli(args)), 2);
	}
	CHECK_INT(atoi(cli("SCARD webrtc:recording:node:racer-0")) + atoi(cli("SCARD webrtc:recording:node:racer-1")), 10);

	kill(redis, SIGKILL);
	waitpid(redis, NULL, 0);
	util_rm_rf(dir);
	return check_exit();
}
