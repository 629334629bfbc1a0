/* fuzz_media_rtp_sdp: the SDP reader of the rtp source (sdp=PATH files). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "media_rtp_sdp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct media_rtp_sdp sdp;
	char err[128];
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	media_rtp_sdp_parse(text, &sdp, err, sizeof(err));
	free(text);
	return 0;
}
