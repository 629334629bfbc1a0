/* media_rtp_ports: process-wide allocation of RTP/RTCP port pairs from a configured range. */
#include "media_rtp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_mutex_t ports_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t ports_used[65536 / 8];
static int ports_cursor;

static bool port_used(int p)
{
	return ports_used[p >> 3] & (1u << (p & 7));
}

static void port_mark(int p, bool used)
{
	if (used)
		ports_used[p >> 3] |= (uint8_t)(1u << (p & 7));
	else
		ports_used[p >> 3] &= (uint8_t)~(1u << (p & 7));
}

/* True when a UDP socket can bind 'port' on every address right now. */
static bool port_bindable(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_ANY) };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

int media_rtp_ports_alloc(int min, int max, int streams, int *ports_out, char *err, size_t errlen)
{
	int first, pairs, got = 0;

	if (min & 1)
		min++;
	if (min < 1024 || max > 65535 || min + 1 > max || streams < 1 || streams > 64) {
		snprintf(err, errlen, "invalid RTP port range %d-%d", min, max);
		return -1;
	}
	pairs = (max - min + 1) / 2;
	if (pairs < streams) {
		snprintf(err, errlen, "RTP port range %d-%d holds fewer than %d port pairs", min, max, streams);
		return -1;
	}
	pthread_mutex_lock(&ports_lock);
	/* Start after the last allocation, so a port just released (whose
	 * sender may still be sending) is not handed out again at once. */
	first = ports_cursor >= min && ports_cursor + 1 <= max ? (ports_cursor - min) / 2 : 0;
	for (int i = 0; i < pairs && got < streams; i++) {
		int p = min + 2 * ((first + i) % pairs);

		if (port_used(p) || port_used(p + 1) || !port_bindable(p) || !port_bindable(p + 1))
			continue;
		port_mark(p, true);
		port_mark(p + 1, true);
		ports_out[got++] = p;
		ports_cursor = p + 2;
	}
	if (got < streams) {
		for (int i = 0; i < got; i++) {
			port_mark(ports_out[i], false);
			port_mark(ports_out[i] + 1, false);
		}
		pthread_mutex_unlock(&ports_lock);
		snprintf(err, errlen, "no free RTP port pairs left in %d-%d", min, max);
		return -1;
	}
	pthread_mutex_unlock(&ports_lock);
	return 0;
}

void media_rtp_ports_release(const int *ports, int streams)
{
	pthread_mutex_lock(&ports_lock);
	for (int i = 0; i < streams; i++) {
		if (ports[i] < 0 || ports[i] + 1 > 65535)
			continue;
		port_mark(ports[i], false);
		port_mark(ports[i] + 1, false);
	}
	pthread_mutex_unlock(&ports_lock);
}

int media_rtp_ports_claim(const int *ports, int streams, char *err, size_t errlen)
{
	pthread_mutex_lock(&ports_lock);
	for (int i = 0; i < streams; i++) {
		int p = ports[i];

		if (p < 1 || p + 1 > 65535 || port_used(p) || port_used(p + 1)) {
			pthread_mutex_unlock(&ports_lock);
			snprintf(err, errlen, "UDP port %d is held by another recording", p);
			return -1;
		}
	}
	for (int i = 0; i < streams; i++) {
		port_mark(ports[i], true);
		port_mark(ports[i] + 1, true);
	}
	pthread_mutex_unlock(&ports_lock);
	return 0;
}
