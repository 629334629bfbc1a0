/* itest_redis: a redis-server of the test's own on 127.0.0.1 and a state
 * connection to it, for the C integration tests. Header-only; the test
 * links the state library. */
#ifndef EDGEREC_TEST_ITEST_REDIS_H
#define EDGEREC_TEST_ITEST_REDIS_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

#include "common_time.h"
#include "itest_port.h"
#include "state.h"

/* Starts redis-server on 'port' with its files in 'dir', its output thrown
 * away. With 'persist' every write goes to an fsynced append-only file, so
 * a restart on the same port and dir finds the data again. Stores the
 * child in 'pid' and "redis://127.0.0.1:<port>" in 'url'. Returns 0 or -1;
 * the caller stops the server (SIGTERM, waitpid). */
static inline int itest_redis_start(int port, const char *dir, bool persist, pid_t *pid, char *url,
				    size_t urllen)
{
	char port_s[16];
	if (port < 0)
		return -1;
	snprintf(port_s, sizeof(port_s), "%d", port);
	*pid = fork();
	if (*pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		if (persist)
			execlp("redis-server", "redis-server", "--port", port_s, "--bind", "127.0.0.1", "--save", "",
			       "--appendonly", "yes", "--appendfsync", "always", "--dir", dir, (char *)NULL);
		else
			execlp("redis-server", "redis-server", "--port", port_s, "--bind", "127.0.0.1", "--save", "",
			       "--appendonly", "no", "--dir", dir, (char *)NULL);
		_exit(127);
	}
	if (*pid < 0)
		return -1;
	snprintf(url, urllen, "redis://127.0.0.1:%d", port);
	return 0;
}

/* Connects the state store to 'url' as node 'node' (journal in 'dir'),
 * retrying for about ten seconds while the server comes up. Returns the
 * store (the caller frees it) or NULL, saying why on stderr. */
static inline struct state *itest_state_connect(const char *url, const char *dir, const char *node)
{
	char err[256] = "";
	for (int i = 0; i < 100; i++) {
		struct state *st = state_new(url, dir, node, err, sizeof(err));
		if (st)
			return st;
		time_sleep_ns(100 * TIME_NS_PER_MS);
	}
	fprintf(stderr, "cannot reach redis at %s: %s\n", url, err);
	return NULL;
}

#endif
