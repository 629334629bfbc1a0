/* fuzz_webrtc_stun: STUN parsing and the integrity check of the ICE-lite
 * agent, and a response to every request that parses (which must parse
 * back and verify). */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "webrtc_stun.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct webrtc_stun m, r;
	uint8_t out[256];
	struct sockaddr_in from = { .sin_family = AF_INET, .sin_port = htons(5000), .sin_addr = { htonl(0x7f000001) } };

	if (webrtc_stun_parse(data, size, &m) < 0)
		return 0;
	webrtc_stun_integrity_ok(data, size, &m, "VOkJxbRl1RmTxUk/WvJxBt");
	size_t n = webrtc_stun_binding_success(&m, (const struct sockaddr *)&from, "key", out, sizeof(out));
	if (!n || webrtc_stun_parse(out, n, &r) < 0 || !webrtc_stun_integrity_ok(out, n, &r, "key") ||
	    memcmp(r.txid, m.txid, 12) != 0)
		abort();
	return 0;
}
