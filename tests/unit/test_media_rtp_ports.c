/* test_media_rtp_ports: RTP port pairs from a range: even/odd pairs, no double allocation, exhaustion, ports in use skipped,
 * fixed ports claimed so neither the allocator nor a second claim takes them. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "media_rtp.h"

int main(void)
{
	int a[2], b[2], c[4], d[1];
	char err[128];
	int base = 40000 + (getpid() % 1000) * 16;
	int blocker;
	struct sockaddr_in sa = { .sin_family = AF_INET };

	/* 4 pairs in the range; one port of the second pair is taken by someone else */
	blocker = socket(AF_INET, SOCK_DGRAM, 0);
	sa.sin_port = htons((uint16_t)(base + 3));
	sa.sin_addr.s_addr = htonl(INADDR_ANY);
	CHECK(bind(blocker, (struct sockaddr *)&sa, sizeof(sa)) == 0);

	CHECK_INT(media_rtp_ports_alloc(base, base + 7, 2, a, err, sizeof(err)), 0);
	CHECK_INT(a[0] % 2, 0);
	CHECK(a[0] != base + 2 && a[1] != base + 2); /* base+3 is in use */
	CHECK(a[0] != a[1]);
	CHECK_INT(media_rtp_ports_alloc(base, base + 7, 1, d, err, sizeof(err)), 0);
	CHECK(d[0] != a[0] && d[0] != a[1] && d[0] != base + 2);
	/* exhausted: all pairs but the blocked one are taken */
	CHECK_INT(media_rtp_ports_alloc(base, base + 7, 1, b, err, sizeof(err)), -1);
	CHECK(strstr(err, "no free") != NULL);
	media_rtp_ports_release(a, 2);
	CHECK_INT(media_rtp_ports_alloc(base, base + 7, 2, b, err, sizeof(err)), 0);
	CHECK_INT(media_rtp_ports_alloc(base, base + 7, 1, c, err, sizeof(err)), -1);
	media_rtp_ports_release(b, 2);
	media_rtp_ports_release(d, 1);
	close(blocker);
	CHECK_INT(media_rtp_ports_alloc(base, base + 7, 4, c, err, sizeof(err)), 0);
	media_rtp_ports_release(c, 4);

	/* a fixed pair claimed: not allocated, not claimed twice, free after release */
	int fixed[1] = { base + 2 };
	CHECK_INT(media_rtp_ports_claim(fixed, 1, err, sizeof(err)), 0);
	CHECK_INT(media_rtp_ports_claim(fixed, 1, err, sizeof(err)), -1);
	CHECK(strstr(err, "held by another recording") != NULL);
	CHECK_INT(media_rtp_ports_alloc(base, base + 7, 3, c, err, sizeof(err)), 0);
	CHECK(c[0] != base + 2 && c[1] != base + 2 && c[2] != base + 2);
	CHECK_INT(media_rtp_ports_alloc(base, base + 7, 1, d, err, sizeof(err)), -1);
	int rtcp_of_fixed[1] = { base + 3 }; /* a pair overlapping the claimed RTCP port */
	CHECK_INT(media_rtp_ports_claim(rtcp_of_fixed, 1, err, sizeof(err)), -1);
	media_rtp_ports_release(c, 3);
	media_rtp_ports_release(fixed, 1);
	CHECK_INT(media_rtp_ports_claim(fixed, 1, err, sizeof(err)), 0);
	media_rtp_ports_release(fixed, 1);

	/* odd minimum rounds up; bad ranges are refused */
	CHECK_INT(media_rtp_ports_alloc(base + 1, base + 4, 1, c, err, sizeof(err)), 0);
	CHECK_INT(c[0], base + 2);
	media_rtp_ports_release(c, 1);
	CHECK_INT(media_rtp_ports_alloc(base, base, 1, c, err, sizeof(err)), -1);
	CHECK_INT(media_rtp_ports_alloc(base, base + 3, 3, c, err, sizeof(err)), -1);
	CHECK_INT(media_rtp_ports_alloc(100, 200, 1, c, err, sizeof(err)), -1);
	CHECK_INT(media_rtp_ports_alloc(base, 70000, 1, c, err, sizeof(err)), -1);
	return check_exit();
}
