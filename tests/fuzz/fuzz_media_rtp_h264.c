/* fuzz_media_rtp_h264: the H.264 depacketizer fed RTP payloads cut from the
 * input (with markers, timestamp steps and losses from control bytes), the
 * SPS/PPS/slice parsers and the avcC builder on every NAL unit that comes
 * out, and sprop-parameter-sets text. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "media_h264.h"
#include "media_rtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_au(const struct buf *b)
{
	const uint8_t *nal, *sps = NULL, *pps = NULL;
	size_t pos = 0, n, sps_len = 0, pps_len = 0;
	struct media_h264_sps s;
	uint8_t avcc[1024];
	bool idr;
	int a, c;

	while (media_h264_avcc_next(b->data, b->size, &pos, &nal, &n) == 1) {
		media_h264_sps_parse(nal, n, &s);
		media_h264_pps_ids(nal, n, &a, &c);
		if (media_h264_slice_ids(nal, n, &a, &c) == 0 && media_h264_sps_parse(nal, n, &s) < 0) {
			memset(&s, 0, sizeof(s));
			s.log2_max_frame_num = 16;
			media_h264_slice_frame_num(nal, n, &s);
		}
	}
	if (media_h264_avcc_scan(b->data, b->size, &idr, &sps, &sps_len, &pps, &pps_len) == 0 && sps && pps)
		media_h264_avcc_build(sps, sps_len, pps, pps_len, avcc, sizeof(avcc));
}

/* Input: a mode byte, then packets each as: a control byte (bit 0 marker,
 * bit 1 new timestamp, bits 2-3 packets lost before it), a 2-byte length
 * and the payload. Mode bit 0: the first packet's payload is also tried as
 * sprop-parameter-sets text. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct media_rtp_h264 *h;
	struct media_rtp_h264_au au;
	struct media_rtp_h264_stats st;
	int64_t ts = 0;
	size_t off = 1;
	bool first = true;

	if (size < 1)
		return 0;
	h = media_rtp_h264_new(16384);
	if (!h)
		return 0;
	while (off + 3 <= size) {
		uint8_t ctl = data[off];
		size_t n = (size_t)((data[off + 1] << 8) | data[off + 2]);

		off += 3;
		if (n > size - off)
			n = size - off;
		if (first && (data[0] & 1)) {
			char *text = malloc(n + 1);
			if (text) {
				memcpy(text, data + off, n);
				text[n] = 0;
				media_rtp_h264_set_sprop(h, text);
				free(text);
			}
		}
		first = false;
		if (ctl & 2)
			ts += 3000;
		media_rtp_h264_push(h, data + off, n, ts, ctl & 1, (ctl >> 2) & 3, ts);
		off += n;
		while (media_rtp_h264_pop(h, &au) == 1) {
			check_au(au.data);
			buf_unref(au.data);
		}
		if (ctl == 0xff)
			media_rtp_h264_restart(h);
		if (ctl == 0xfe)
			media_rtp_h264_lost_reference(h);
	}
	media_rtp_h264_stats(h, &st);
	media_rtp_h264_free(h);
	return 0;
}
