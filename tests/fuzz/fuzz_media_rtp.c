/* fuzz_media_rtp: the RTP, RTCP, VP8 descriptor and Opus TOC parsers, and a
 * whole receive stream (VP8, H.264 or Opus) fed with the input cut into
 * datagrams. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "media_rtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse_all(const uint8_t *d, size_t n)
{
	struct media_rtp_packet p;
	struct media_rtcp_info info;
	struct media_rtp_vp8_desc desc;
	bool key, stereo;
	int w, h;

	if (media_rtp_parse(d, n, &p) == 0 && p.payload_len) {
		if (media_rtp_vp8_parse_desc(p.payload, p.payload_len, &desc) == 0)
			media_rtp_vp8_frame_info(p.payload + desc.size, p.payload_len - desc.size, &key, &w, &h);
		media_rtp_opus_samples(p.payload, p.payload_len, &stereo);
	}
	media_rtcp_parse(d, n, &info);
	media_rtp_is_rtcp(d, n);
}

/* Input: a codec byte (bit 0 Opus, else bit 2 H.264, else VP8), then
 * datagrams each prefixed by a 2-byte length and a 1-byte arrival step in
 * milliseconds. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct media_rtp_rx_config cfg = { 0 };
	struct media_rtp_sync sync = { 0 };
	struct media_rtp_rx *rx;
	struct media_rtp_frame f;
	uint8_t rtcp[128];
	int64_t now = 0;
	size_t off = 1;

	if (size < 1)
		return 0;
	parse_all(data, size);
	cfg.codec = (data[0] & 1) ? MEDIA_RTP_CODEC_OPUS : (data[0] & 4) ? MEDIA_RTP_CODEC_H264 : MEDIA_RTP_CODEC_VP8;
	cfg.payload_type = (data[0] & 2) ? -1 : 96;
	cfg.local_ssrc = 1;
	cfg.jb_slots = 32;
	cfg.jb_latency_ns = 20 * 1000000LL;
	cfg.max_frame_bytes = 8192;
	rx = media_rtp_rx_new(&cfg, &sync, 0);
	if (!rx)
		return 0;
	while (off + 3 <= size) {
		size_t n = (size_t)((data[off] << 8) | data[off + 1]) % 1600;
		int64_t step = data[off + 2];

		off += 3;
		if (n > size - off)
			n = size - off;
		parse_all(data + off, n);
		now += step * 1000000LL;
		if (step & 1)
			media_rtp_rx_push_rtcp(rx, data + off, n, now);
		else
			media_rtp_rx_push(rx, data + off, n, now);
		off += n;
		while (media_rtp_rx_poll(rx, now, &f) == 1)
			buf_unref(f.data);
		media_rtp_rx_rtcp_due(rx, now, rtcp, sizeof(rtcp));
	}
	now += 1000000000LL;
	while (media_rtp_rx_poll(rx, now, &f) == 1)
		buf_unref(f.data);
	media_rtp_rx_free(rx);
	return 0;
}
