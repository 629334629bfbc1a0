/* s3rver_harness: starts and stops the test S3 server (s3rver from npm, via
 * tests/support/s3/start) on 127.0.0.1 with a free port and a temporary
 * data directory, for the C integration tests. Header-only. */
#ifndef EDGEREC_TEST_S3RVER_HARNESS_H
#define EDGEREC_TEST_S3RVER_HARNESS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest_port.h"

struct s3rver {
	pid_t pid;
	int port;
	char dir[256];     /* data directory */
	char bucket[64];
	char endpoint[64]; /* "http://127.0.0.1:<port>" */
};

/* A port the kernel considers free right now. */
static inline int s3rver_free_port(void)
{
	return itest_free_port();
}

/* Starts (or restarts, keeping port and directory) the server and waits for
 * its "ready" line. Returns 0 or -1. */
static inline int s3rver_start(struct s3rver *s)
{
	const char *src = getenv("EDGEREC_SOURCE_DIR");
	char script[512], port[16];
	int pfd[2];
	if (!src) {
		fprintf(stderr, "s3rver: EDGEREC_SOURCE_DIR is not set\n");
		return -1;
	}
	if (!s->port) {
		s->port = s3rver_free_port();
		snprintf(s->endpoint, sizeof(s->endpoint), "http://127.0.0.1:%d", s->port);
	}
	if (!s->dir[0]) {
		snprintf(s->dir, sizeof(s->dir), "/tmp/edgerec_s3rver.XXXXXX");
		if (!mkdtemp(s->dir))
			return -1;
	}
	if (!s->bucket[0])
		snprintf(s->bucket, sizeof(s->bucket), "edgerec-test-%d", (int)getpid());
	snprintf(script, sizeof(script), "%s/tests/support/s3/start", src);
	snprintf(port, sizeof(port), "%d", s->port);
	if (pipe(pfd) < 0)
		return -1;
	s->pid = fork();
	if (s->pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execl("/bin/sh", "sh", script, port, s->dir, s->bucket, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	FILE *f = fdopen(pfd[0], "r");
	char line[128] = "";
	int ok = f && fgets(line, sizeof(line), f) && strncmp(line, "ready", 5) == 0;
	if (f)
		fclose(f);
	if (!ok) {
		fprintf(stderr, "s3rver did not start (got '%s')\n", line);
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
		return -1;
	}
	return 0;
}

/* Kills the server at once (SIGKILL: a crash, not a shutdown). */
static inline void s3rver_kill(struct s3rver *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
}

/* Stops the server and removes its data directory. */
static inline void s3rver_stop(struct s3rver *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
	if (s->dir[0]) {
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", s->dir);
	}
}

#endif
