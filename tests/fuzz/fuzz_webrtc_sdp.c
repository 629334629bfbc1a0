/* fuzz_webrtc_sdp: the WHIP offer parser, the codec choice for every
 * format and the answer built from whatever parsed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "webrtc_sdp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct webrtc_offer o;
	struct webrtc_choice c;
	char err[256];
	static const char *const formats[] = { "webm", "mkv", "mp4" };
	const char *addrs[] = { "127.0.0.1", "2001:db8::1" };
	struct webrtc_answer_params ap = { .ice_ufrag = "ufrag123", .ice_pwd = "passwordpasswordpassword",
					   .fingerprint = "AA:BB", .addresses = addrs, .n_addresses = 2,
					   .port = 41000, .session_version = 1 };

	/* Not NUL-terminated on purpose: the parser takes a length. */
	if (webrtc_offer_parse((const char *)data, size, &o, err, sizeof(err)) < 0)
		return 0;
	for (int f = 0; f < 3; f++) {
		for (int h = 0; h < 2; h++) {
			if (webrtc_offer_choose(&o, formats[f], h, &c, err, sizeof(err)) < 0)
				continue;
			char *answer = webrtc_answer_build(&o, &c, &ap);
			if (answer && strncmp(answer, "v=0\r\n", 5) != 0)
				abort();
			free(answer);
		}
	}
	return 0;
}
