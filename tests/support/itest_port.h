/* itest_port: a free TCP port on 127.0.0.1 for the servers the C tests
 * start themselves. Header-only. */
#ifndef EDGEREC_TEST_ITEST_PORT_H
#define EDGEREC_TEST_ITEST_PORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* A port the kernel considers free right now (it may be taken before the
 * caller binds it), or -1. */
static inline int itest_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

#endif
