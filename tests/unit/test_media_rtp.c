/* test_media_rtp: RTP/RTCP parsing, unwrapping, jitter buffer, VP8/Opus depacketizing and clock mapping,
 * all driven by synthetic packets. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "media_rtp.h"

#define MS 1000000LL
#define TIME_NS_PER_SEC_TEST 1000000000LL

/* ---- a synthetic sender ---------------------------------------------- */

struct gen {
	uint16_t seq;
	uint32_t ts;
	uint32_t ssrc;
	uint16_t pic;
	uint8_t pt;
};

static size_t rtp_header(uint8_t *out, const struct gen *g, bool marker)
{
	out[0] = 0x80;
	out[1] = (uint8_t)((marker ? 0x80 : 0) | g->pt);
	out[2] = (uint8_t)(g->seq >> 8);
	out[3] = (uint8_t)g->seq;
	out[4] = (uint8_t)(g->ts >> 24);
	out[5] = (uint8_t)(g->ts >> 16);
	out[6] = (uint8_t)(g->ts >> 8);
	out[7] = (uint8_t)g->ts;
	out[8] = (uint8_t)(g->ssrc >> 24);
	out[9] = (uint8_t)(g->ssrc >> 16);
	out[10] = (uint8_t)(g->ssrc >> 8);
	out[11] = (uint8_t)g->ssrc;
	return 12;
}

/* A VP8 frame: a keyframe header with the given size, or a delta tag, then
 * bytes derived from 'tag' so that content can be compared afterwards. */
static size_t vp8_frame(uint8_t *out, size_t len, bool key, int w, int h, uint8_t tag)
{
	memset(out, 0, len);
	out[0] = key ? 0x10 : 0x11;
	out[1] = 0x02;
	out[2] = 0x00;
	if (key) {
		out[3] = 0x9d;
		out[4] = 0x01;
		out[5] = 0x2a;
		out[6] = (uint8_t)w;
		out[7] = (uint8_t)(w >> 8);
		out[8] = (uint8_t)h;
		out[9] = (uint8_t)(h >> 8);
	}
	for (size_t i = key ? 10 : 3; i < len; i++)
		out[i] = (uint8_t)(tag + i * 7);
	return len;
}

struct pkt {
	uint8_t d[1500];
	size_t len;
};

/* Packetizes one frame into 'max_payload'-byte pieces with a 15-bit
 * PictureID descriptor; returns the number of packets written to 'out'. */
static int vp8_packetize(struct gen *g, const uint8_t *frame, size_t len, size_t max_payload, bool nonref,
			 struct pkt *out, int max_out)
{
	int n = 0;
	size_t off = 0;

	while (off < len && n < max_out) {
		size_t chunk = len - off < max_payload ? len - off : max_payload;
		bool last = off + chunk == len;
		uint8_t *p = out[n].d;
		size_t h = rtp_header(p, g, last);

		p[h++] = (uint8_t)(0x80 | (nonref ? 0x20 : 0) | (off == 0 ? 0x10 : 0));
		p[h++] = 0x80;
		p[h++] = (uint8_t)(0x80 | (g->pic >> 8));
		p[h++] = (uint8_t)g->pic;
		memcpy(p + h, frame + off, chunk);
		out[n].len = h + chunk;
		g->seq++;
		off += chunk;
		n++;
	}
	g->pic = (g->pic + 1) & 0x7fff;
	g->ts += 3000;
	return n;
}

static struct media_rtp_rx *vp8_rx(size_t max_frame)
{
	struct media_rtp_rx_config cfg = {
		.codec = MEDIA_RTP_CODEC_VP8,
		.payload_type = 96,
		.local_ssrc = 0x1234,
		.jb_latency_ns = 50 * MS,
		.max_frame_bytes = max_frame,
	};
	return media_rtp_rx_new(&cfg, NULL, 0);
}

/* Sends one frame (all packets in order) at 'now'. */
static void send_frame(struct media_rtp_rx *rx, struct gen *g, bool key, int w, int h, uint8_t tag, size_t size,
		       int64_t now, int drop_index, bool nonref)
{
	uint8_t frame[20000];
	struct pkt pk[32];
	int n;

	vp8_frame(frame, size, key, w, h, tag);
	n = vp8_packetize(g, frame, size, 1000, nonref, pk, 32);
	for (int i = 0; i < n; i++)
		if (i != drop_index)
			media_rtp_rx_push(rx, pk[i].d, pk[i].len, now);
}

/* Collects frames; returns how many, keyframes counted in '*keys'. */
static int drain(struct media_rtp_rx *rx, int64_t now, int *keys, int64_t *last_pts, bool *monotonic)
{
	struct media_rtp_frame f;
	int n = 0;

	while (media_rtp_rx_poll(rx, now, &f) == 1) {
		if (keys && f.keyframe)
			(*keys)++;
		if (last_pts) {
			if (monotonic && f.pts_ns < *last_pts)
				*monotonic = false;
			*last_pts = f.pts_ns;
		}
		buf_unref(f.data);
		n++;
	}
	return n;
}

/* ---- parsers ----------------------------------------------------------- */

static void test_parse(void)
{
	uint8_t p[64];
	struct media_rtp_packet r;
	struct gen g = { .seq = 7, .ts = 0xdeadbeef, .ssrc = 0x11223344, .pt = 96 };

	rtp_header(p, &g, true);
	p[12] = 0xaa;
	CHECK_INT(media_rtp_parse(p, 13, &r), 0);
	CHECK(r.marker);
	CHECK_INT(r.payload_type, 96);
	CHECK_INT(r.seq, 7);
	CHECK(r.timestamp == 0xdeadbeef);
	CHECK(r.ssrc == 0x11223344);
	CHECK_INT(r.payload_len, 1);
	CHECK_INT(r.payload[0], 0xaa);

	/* two CSRCs, an extension of one word, two bytes of payload, 3 of padding */
	rtp_header(p, &g, false);
	p[0] = 0x80 | 0x20 | 0x10 | 2;
	memset(p + 12, 0x01, 8);
	p[20] = 0xbe;
	p[21] = 0xde;
	p[22] = 0;
	p[23] = 1;
	memset(p + 24, 0x55, 4);
	p[28] = 0x77;
	p[29] = 0x78;
	p[30] = 0;
	p[31] = 0;
	p[32] = 3;
	CHECK_INT(media_rtp_parse(p, 33, &r), 0);
	CHECK_INT(r.csrc_count, 2);
	CHECK(r.csrc[1] == 0x01010101);
	CHECK(r.has_extension);
	CHECK_INT(r.ext_profile, 0xbede);
	CHECK_INT(r.ext_len, 4);
	CHECK_INT(r.payload_len, 2);
	CHECK_INT(r.payload[0], 0x77);
	CHECK_INT(r.padding_len, 3);

	/* malformed */
	CHECK_INT(media_rtp_parse(p, 11, &r), MEDIA_RTP_ERR_TRUNCATED);
	CHECK_INT(media_rtp_parse(NULL, 0, &r), MEDIA_RTP_ERR_TRUNCATED);
	p[32] = 30; /* padding longer than what follows the header */
	CHECK_INT(media_rtp_parse(p, 33, &r), MEDIA_RTP_ERR_PADDING);
	p[32] = 0;
	CHECK_INT(media_rtp_parse(p, 33, &r), MEDIA_RTP_ERR_PADDING);
	p[32] = 3;
	p[22] = 0xff; /* absurd extension length */
	CHECK_INT(media_rtp_parse(p, 33, &r), MEDIA_RTP_ERR_EXTENSION);
	p[22] = 0;
	CHECK_INT(media_rtp_parse(p, 22, &r), MEDIA_RTP_ERR_TRUNCATED); /* extension header cut */
	CHECK_INT(media_rtp_parse(p, 16, &r), MEDIA_RTP_ERR_TRUNCATED); /* CSRCs cut */
	p[0] = 0x40;
	CHECK_INT(media_rtp_parse(p, 33, &r), MEDIA_RTP_ERR_VERSION);
	p[0] = 0x80 | 0x20;
	CHECK_INT(media_rtp_parse(p, 12, &r), MEDIA_RTP_ERR_PADDING); /* P set, no byte to count it */
	CHECK(strlen(media_rtp_strerror(MEDIA_RTP_ERR_EXTENSION)) > 0);

	/* RFC 5761 demultiplexing */
	p[1] = 200;
	CHECK(media_rtp_is_rtcp(p, 12));
	p[1] = 96;
	CHECK(!media_rtp_is_rtcp(p, 12));
	p[1] = 0x80 | 96; /* marker + PT 96 = 224: RTP */
	CHECK(!media_rtp_is_rtcp(p, 12));
	p[1] = 201;
	CHECK(!media_rtp_is_rtcp(p, 1));
}

/* RFC 4588: a retransmission on its own payload type and SSRC, with an
 * extension and padding, turns back into the packet it repairs. */
static void test_rtx_unwrap(void)
{
	uint8_t p[64];
	struct media_rtp_packet r;
	struct gen g = { .seq = 900, .ts = 12345, .ssrc = 0x0badf00d, .pt = 97 };

	rtp_header(p, &g, true);
	p[0] = 0x80 | 0x20 | 0x10;
	p[12] = 0xbe;
	p[13] = 0xde;
	p[14] = 0;
	p[15] = 1;
	memset(p + 16, 0x55, 4);
	p[20] = 0x12; /* original sequence number 0x1234 */
	p[21] = 0x34;
	p[22] = 0x90; /* the original payload: 3 bytes */
	p[23] = 0x91;
	p[24] = 0x92;
	p[25] = 0;
	p[26] = 2; /* 2 bytes of padding */
	size_t len = 27;
	CHECK_INT(media_rtp_rtx_unwrap(p, &len, 96, 0x11223344), 0);
	CHECK_INT(len, 25);
	CHECK_INT(media_rtp_parse(p, len, &r), 0);
	CHECK(r.marker);
	CHECK_INT(r.payload_type, 96);
	CHECK_INT(r.seq, 0x1234);
	CHECK(r.timestamp == 12345);
	CHECK(r.ssrc == 0x11223344);
	CHECK(r.has_extension && r.ext_len == 4 && r.ext[0] == 0x55);
	CHECK_INT(r.payload_len, 3);
	CHECK(r.payload[0] == 0x90 && r.payload[2] == 0x92);
	CHECK_INT(r.padding_len, 2);

	/* padding only (a bandwidth probe) and a payload shorter than an OSN */
	rtp_header(p, &g, false);
	p[0] = 0x80 | 0x20;
	memset(p + 12, 0, 9);
	p[20] = 9;
	len = 21;
	CHECK_INT(media_rtp_rtx_unwrap(p, &len, 96, 1), -1);
	CHECK_INT(len, 21);
	rtp_header(p, &g, false);
	p[12] = 0x12;
	len = 13;
	CHECK_INT(media_rtp_rtx_unwrap(p, &len, 96, 1), -1);
	len = 11;
	CHECK_INT(media_rtp_rtx_unwrap(p, &len, 96, 1), -1);
}

static void test_rtcp(void)
{
	uint8_t b[128];
	struct media_rtcp_info info;
	struct media_rtcp_report rep = { .ssrc = 0xabc, .fraction_lost = 12, .cumulative_lost = 99,
					 .ext_highest_seq = 70000, .jitter = 5, .lsr = 0x1234, .dlsr = 0x10 };
	struct media_rtcp_feedback fb = { .sender_ssrc = 0x1111, .report = &rep, .media_ssrc = 0xabc,
					  .pli = true, .fir = true, .fir_seq = 3 };
	size_t n = media_rtcp_build(&fb, b, sizeof(b));
	uint64_t ntp;

	CHECK_INT(n, 8 + 24 + 12 + 20);
	CHECK_INT(b[1], MEDIA_RTCP_RR);
	CHECK_INT(b[0], 0x81);
	CHECK_INT(media_rtcp_parse(b, n, &info), 0);
	CHECK_INT(info.packets, 3);
	CHECK(info.sender_ssrc == 0x1111);
	CHECK_INT(info.pli_count, 1);
	CHECK_INT(info.fir_count, 1);
	CHECK(info.pli_media_ssrc == 0xabc);
	CHECK(!info.has_sr);
	CHECK_INT(media_rtcp_build(&fb, b, 20), 0);

	/* an empty RR and a PLI: 20 bytes, as a receiver sends before any report */
	fb.report = NULL;
	fb.fir = false;
	n = media_rtcp_build(&fb, b, sizeof(b));
	CHECK_INT(n, 20);
	CHECK_INT(b[8], 0x81);
	CHECK_INT(b[9], 206);
	CHECK_INT(b[11], 2);

	/* SR + SDES compound */
	memset(b, 0, sizeof(b));
	b[0] = 0x80;
	b[1] = 200;
	b[3] = 6;
	b[4] = 0xaa; b[7] = 0x01;
	ntp = media_rtcp_unix_ns_to_ntp(1700000000LL * 1000000000LL + 250 * MS);
	for (int i = 0; i < 8; i++)
		b[8 + i] = (uint8_t)(ntp >> (56 - 8 * i));
	b[16] = 0x00; b[17] = 0x01; b[18] = 0x00; b[19] = 0x00; /* rtp ts 65536 */
	b[23] = 10;
	b[28] = 0x81;
	b[29] = 202;
	b[31] = 1;
	CHECK_INT(media_rtcp_parse(b, 36, &info), 0);
	CHECK(info.has_sr);
	CHECK(info.sr_ssrc == 0xaa000001);
	CHECK(info.sr_rtp_ts == 65536);
	CHECK_INT(info.sr_packet_count, 10);
	CHECK_INT(info.packets, 2);
	CHECK(llabs(media_rtcp_ntp_to_unix_ns(info.sr_ntp) - (1700000000LL * 1000000000LL + 250 * MS)) < 2);

	/* broken ones: a length past the end, a bad version, a short SR */
	CHECK_INT(media_rtcp_parse(b, 30, &info), MEDIA_RTP_ERR_TRUNCATED);
	CHECK(info.has_sr); /* kept what came before */
	b[31] = 9;
	CHECK_INT(media_rtcp_parse(b, 36, &info), MEDIA_RTP_ERR_LENGTH);
	b[28] = 0x41;
	CHECK_INT(media_rtcp_parse(b, 36, &info), MEDIA_RTP_ERR_VERSION);
	b[3] = 2;
	CHECK_INT(media_rtcp_parse(b, 12, &info), MEDIA_RTP_ERR_TRUNCATED);
	CHECK_INT(media_rtcp_parse(b, 3, &info), MEDIA_RTP_ERR_TRUNCATED);
}

static void test_unwrap(void)
{
	struct media_rtp_unwrap u;

	media_rtp_unwrap_init(&u, 16);
	CHECK_INT(media_rtp_unwrap(&u, 65534), 65534);
	CHECK_INT(media_rtp_unwrap(&u, 65535), 65535);
	CHECK_INT(media_rtp_unwrap(&u, 1), 65537);
	CHECK_INT(media_rtp_unwrap(&u, 0), 65536);     /* reordered across the wrap */
	CHECK_INT(media_rtp_unwrap(&u, 65535), 65535); /* older still */
	CHECK_INT(media_rtp_unwrap(&u, 2), 65538);
	for (uint32_t i = 0; i < 3 * 65536; i += 1000)
		media_rtp_unwrap(&u, (uint16_t)(2 + i));
	CHECK(media_rtp_unwrap(&u, 5) > 3 * 65536);

	media_rtp_unwrap_init(&u, 32);
	CHECK_INT(media_rtp_unwrap(&u, 0xfffff000u), 0xfffff000LL);
	CHECK_INT(media_rtp_unwrap(&u, 0x00000bb8u), 0x100000bb8LL);
	CHECK_INT(media_rtp_unwrap(&u, 0xffffff00u), 0xffffff00LL);
}

static void test_jitter_buffer(void)
{
	struct media_rtp_jb *jb = media_rtp_jb_new(8, 100 * MS);
	struct media_rtp_jb_item it;
	struct media_rtp_packet p;
	struct buf *b = buf_new_copy("x", 1);

	memset(&p, 0, sizeof(p));
	CHECK(jb != NULL);
	/* reorder: 10, 12, 11 */
	CHECK_INT(media_rtp_jb_push(jb, b, &p, 10, 0), MEDIA_RTP_JB_STORED);
	CHECK_INT(media_rtp_jb_push(jb, b, &p, 9, 0), MEDIA_RTP_JB_STORED); /* reordered at the start */
	CHECK_INT(media_rtp_jb_push(jb, b, &p, 12, 1 * MS), MEDIA_RTP_JB_STORED);
	CHECK_INT(media_rtp_jb_push(jb, b, &p, 12, 1 * MS), MEDIA_RTP_JB_DUPLICATE);
	CHECK_INT(media_rtp_jb_pop(jb, 2 * MS, false, &it), 0); /* the start waits the latency */
	CHECK_INT(media_rtp_jb_deadline(jb), 100 * MS);
	CHECK_INT(media_rtp_jb_pop(jb, 100 * MS, false, &it), 1);
	CHECK_INT(it.ext_seq, 9);
	buf_unref(it.raw);
	CHECK_INT(media_rtp_jb_pop(jb, 100 * MS, false, &it), 1);
	CHECK_INT(it.ext_seq, 10);
	buf_unref(it.raw);
	CHECK_INT(media_rtp_jb_pop(jb, 100 * MS, false, &it), 0); /* 11 missing, 12 waits */
	CHECK_INT(media_rtp_jb_deadline(jb), 101 * MS);
	CHECK_INT(media_rtp_jb_push(jb, b, &p, 11, 3 * MS), MEDIA_RTP_JB_STORED);
	CHECK_INT(media_rtp_jb_pop(jb, 3 * MS, false, &it), 1);
	CHECK_INT(it.ext_seq, 11);
	CHECK_INT(it.lost_before, 0);
	buf_unref(it.raw);
	CHECK_INT(media_rtp_jb_pop(jb, 3 * MS, false, &it), 1);
	CHECK_INT(it.ext_seq, 12);
	buf_unref(it.raw);
	CHECK_INT(media_rtp_jb_push(jb, b, &p, 11, 4 * MS), MEDIA_RTP_JB_LATE);

	/* loss: 13 never comes; 14 leaves once it has waited the latency */
	CHECK_INT(media_rtp_jb_push(jb, b, &p, 14, 10 * MS), MEDIA_RTP_JB_STORED);
	CHECK_INT(media_rtp_jb_pop(jb, 50 * MS, false, &it), 0);
	CHECK_INT(media_rtp_jb_pop(jb, 110 * MS, false, &it), 1);
	CHECK_INT(it.ext_seq, 14);
	CHECK_INT(it.lost_before, 1);
	buf_unref(it.raw);

	/* bounded: 16 slots; 15 + 16 does not fit until forced out */
	CHECK_INT(media_rtp_jb_push(jb, b, &p, 16, 0), MEDIA_RTP_JB_STORED);
	CHECK_INT(media_rtp_jb_push(jb, b, &p, 15 + 16, 0), MEDIA_RTP_JB_FULL);
	CHECK_INT(media_rtp_jb_pop(jb, 0, true, &it), 1);
	CHECK_INT(it.ext_seq, 16);
	CHECK_INT(it.lost_before, 1);
	buf_unref(it.raw);
	CHECK_INT(media_rtp_jb_push(jb, b, &p, 15 + 16, 0), MEDIA_RTP_JB_STORED);
	CHECK_INT(media_rtp_jb_count(jb), 1);
	media_rtp_jb_reset(jb);
	CHECK_INT(media_rtp_jb_count(jb), 0);
	media_rtp_jb_free(jb);
	media_rtp_jb_free(NULL);
	buf_unref(b);
}

static void test_vp8_desc(void)
{
	struct media_rtp_vp8_desc d;
	const uint8_t simple[] = { 0x10, 0xaa };
	const uint8_t pic7[] = { 0x90, 0x80, 0x05, 0xaa };
	const uint8_t pic15[] = { 0xb0, 0xf0, 0x81, 0x02, 0x33, 0x5f, 0xaa };
	const uint8_t cut[] = { 0x90, 0x80, 0x81 };

	CHECK_INT(media_rtp_vp8_parse_desc(simple, sizeof(simple), &d), 0);
	CHECK(d.start);
	CHECK(!d.has_picture_id);
	CHECK_INT(d.size, 1);
	CHECK_INT(media_rtp_vp8_parse_desc(pic7, sizeof(pic7), &d), 0);
	CHECK(d.has_picture_id && !d.picture_id_15);
	CHECK_INT(d.picture_id, 5);
	CHECK_INT(d.size, 3);
	CHECK_INT(media_rtp_vp8_parse_desc(pic15, sizeof(pic15), &d), 0);
	CHECK(d.non_reference);
	CHECK(d.picture_id_15);
	CHECK_INT(d.picture_id, 0x102);
	CHECK(d.has_tl0picidx);
	CHECK_INT(d.tl0picidx, 0x33);
	CHECK(d.has_tid && d.has_keyidx);
	CHECK_INT(d.tid, 1);
	CHECK(!d.layer_sync);
	CHECK_INT(d.keyidx, 0x1f);
	CHECK_INT(d.size, 6);
	CHECK_INT(media_rtp_vp8_parse_desc(cut, sizeof(cut), &d), MEDIA_RTP_ERR_TRUNCATED);
	CHECK_INT(media_rtp_vp8_parse_desc(pic7, 3, &d), MEDIA_RTP_ERR_TRUNCATED); /* no payload left */
	CHECK_INT(media_rtp_vp8_parse_desc(simple, 0, &d), MEDIA_RTP_ERR_TRUNCATED);

	{
		uint8_t f[32];
		bool key;
		int w, h;

		vp8_frame(f, sizeof(f), true, 1280, 720, 1);
		CHECK_INT(media_rtp_vp8_frame_info(f, sizeof(f), &key, &w, &h), 0);
		CHECK(key);
		CHECK_INT(w, 1280);
		CHECK_INT(h, 720);
		vp8_frame(f, sizeof(f), false, 0, 0, 1);
		CHECK_INT(media_rtp_vp8_frame_info(f, sizeof(f), &key, &w, &h), 0);
		CHECK(!key);
		vp8_frame(f, sizeof(f), true, 1280, 720, 1);
		f[4] = 0;
		CHECK_INT(media_rtp_vp8_frame_info(f, sizeof(f), &key, &w, &h), MEDIA_RTP_ERR_PAYLOAD);
		CHECK_INT(media_rtp_vp8_frame_info(f, 5, &key, &w, &h), MEDIA_RTP_ERR_PAYLOAD);
	}
}

static void test_opus_toc(void)
{
	bool stereo;
	uint8_t p[4] = { 0 };

	p[0] = (uint8_t)(31 << 3) | 0x04; /* CELT FB 20 ms, stereo, one frame */
	CHECK_INT(media_rtp_opus_samples(p, 3, &stereo), 960);
	CHECK(stereo);
	p[0] = (uint8_t)(1 << 3); /* SILK NB 20 ms */
	CHECK_INT(media_rtp_opus_samples(p, 3, &stereo), 960);
	CHECK(!stereo);
	p[0] = (uint8_t)(3 << 3) | 1; /* SILK 60 ms, two equal frames: 120 ms */
	CHECK_INT(media_rtp_opus_samples(p, 3, &stereo), 5760);
	CHECK_INT(media_rtp_opus_samples(p, 2, &stereo), MEDIA_RTP_ERR_PAYLOAD); /* odd split */
	p[0] = (uint8_t)(16 << 3) | 3; /* CELT 2.5 ms, count byte */
	p[1] = 4;
	CHECK_INT(media_rtp_opus_samples(p, 2, &stereo), 480);
	p[1] = 0;
	CHECK_INT(media_rtp_opus_samples(p, 2, &stereo), MEDIA_RTP_ERR_PAYLOAD);
	p[0] = (uint8_t)(3 << 3) | 3; /* 3 x 60 ms > 120 ms */
	p[1] = 3;
	CHECK_INT(media_rtp_opus_samples(p, 2, &stereo), MEDIA_RTP_ERR_PAYLOAD);
	CHECK_INT(media_rtp_opus_samples(p, 0, &stereo), MEDIA_RTP_ERR_PAYLOAD);
}

/* ---- whole streams ------------------------------------------------------ */

static void test_vp8_stream(void)
{
	struct media_rtp_rx *rx = vp8_rx(0);
	struct gen g = { .seq = 65530, .ts = 0xffffe000u, .ssrc = 0x5555, .pt = 96, .pic = 0x7ffe };
	struct media_rtp_rx_stats st;
	struct media_rtp_frame f;
	uint8_t rtcp[128];
	struct media_rtcp_info info;
	int64_t now = 0, last = -1;
	int keys = 0, frames = 0;
	bool mono = true;
	size_t n;

	CHECK(rx != NULL);
	/* nothing known yet: no feedback possible */
	CHECK_INT(media_rtp_rx_rtcp_due(rx, now, rtcp, sizeof(rtcp)), 0);
	/* a delta frame first (a forward that starts mid-GOP): dropped */
	send_frame(rx, &g, false, 0, 0, 1, 2500, now, -1, false);
	now += 33 * MS;
	frames += drain(rx, now, &keys, &last, &mono);
	CHECK_INT(frames, 0);
	/* the PLI goes out at once, in a compound after an RR */
	n = media_rtp_rx_rtcp_due(rx, now, rtcp, sizeof(rtcp));
	CHECK(n > 0);
	CHECK_INT(media_rtcp_parse(rtcp, n, &info), 0);
	CHECK_INT(rtcp[1], MEDIA_RTCP_RR);
	CHECK_INT(info.pli_count, 1);
	CHECK(info.pli_media_ssrc == 0x5555);
	CHECK_INT(media_rtp_rx_rtcp_due(rx, now + 10 * MS, rtcp, sizeof(rtcp)), 0); /* rate limited */

	/* keyframe (3 packets, sequence wraps inside it), then deltas */
	send_frame(rx, &g, true, 640, 360, 2, 2500, now, -1, false);
	now += 33 * MS;
	for (int i = 0; i < 10; i++) {
		send_frame(rx, &g, false, 0, 0, (uint8_t)(10 + i), 1500, now, -1, false);
		now += 33 * MS;
	}
	frames += drain(rx, now, &keys, &last, &mono);
	CHECK_INT(frames, 11);
	CHECK_INT(keys, 1);
	media_rtp_rx_stats(rx, &st);
	CHECK(!st.waiting_keyframe);
	CHECK_INT(st.frames_dropped, 1);
	CHECK(st.first_keyframe_ns >= 0);
	/* the RR alone once a second, no PLI */
	n = media_rtp_rx_rtcp_due(rx, now + 2000 * MS, rtcp, sizeof(rtcp));
	CHECK(n > 0);
	CHECK_INT(media_rtcp_parse(rtcp, n, &info), 0);
	CHECK_INT(info.pli_count, 0);

	/* a non-reference frame loses a packet: only it is dropped */
	send_frame(rx, &g, false, 0, 0, 40, 2500, now, 1, true);
	now += 33 * MS;
	send_frame(rx, &g, false, 0, 0, 41, 1500, now, -1, false);
	now += 33 * MS;
	frames = drain(rx, now + 200 * MS, &keys, &last, &mono);
	CHECK_INT(frames, 1);
	media_rtp_rx_stats(rx, &st);
	CHECK(!st.waiting_keyframe);
	CHECK_INT(st.packets_lost, 1);

	/* a reference frame loses a packet: everything until the next keyframe goes */
	send_frame(rx, &g, false, 0, 0, 50, 2500, now, 1, false);
	now += 33 * MS;
	for (int i = 0; i < 3; i++) {
		send_frame(rx, &g, false, 0, 0, (uint8_t)(51 + i), 1500, now, -1, false);
		now += 33 * MS;
	}
	frames = drain(rx, now + 200 * MS, &keys, &last, &mono);
	CHECK_INT(frames, 0);
	media_rtp_rx_stats(rx, &st);
	CHECK(st.waiting_keyframe);
	n = media_rtp_rx_rtcp_due(rx, now + 200 * MS, rtcp, sizeof(rtcp));
	CHECK(n > 0);
	media_rtcp_parse(rtcp, n, &info);
	CHECK_INT(info.pli_count, 1);
	/* a keyframe with another size ends it */
	send_frame(rx, &g, true, 1280, 720, 60, 3000, now, -1, false);
	now += 33 * MS;
	CHECK_INT(media_rtp_rx_poll(rx, now, &f), 1);
	CHECK(f.keyframe);
	CHECK(f.size_changed);
	CHECK_INT(f.width, 1280);
	CHECK_INT(f.height, 720);
	CHECK(f.pts_ns >= last);
	buf_unref(f.data);

	/* a whole frame lost (PictureID gap across a sequence gap) breaks the chain */
	{
		uint8_t frame[1200];
		struct pkt pk[4];

		vp8_frame(frame, sizeof(frame), false, 0, 0, 70);
		vp8_packetize(&g, frame, sizeof(frame), 1000, false, pk, 4); /* never sent */
		send_frame(rx, &g, false, 0, 0, 71, 500, now, -1, false);
		frames = drain(rx, now + 300 * MS, NULL, NULL, NULL);
		CHECK_INT(frames, 0);
		media_rtp_rx_stats(rx, &st);
		CHECK(st.waiting_keyframe);
	}
	CHECK(mono);
	media_rtp_rx_free(rx);
}

/* Packets of frames shuffled and duplicated arrive as the sender sent them. */
static void test_vp8_reorder_content(void)
{
	struct media_rtp_rx *rx = vp8_rx(0);
	struct gen g = { .seq = 100, .ts = 1000, .ssrc = 7, .pt = 96, .pic = 3 };
	uint8_t frame[6000], ref[6000];
	struct pkt pk[16];
	struct media_rtp_frame f;
	int n;

	vp8_frame(frame, sizeof(frame), true, 320, 240, 9);
	memcpy(ref, frame, sizeof(frame));
	n = vp8_packetize(&g, frame, sizeof(frame), 1000, false, pk, 16);
	CHECK_INT(n, 6);
	int order[] = { 2, 0, 5, 1, 1, 4, 3, 0 };
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		media_rtp_rx_push(rx, pk[order[i]].d, pk[order[i]].len, 0);
	CHECK_INT(media_rtp_rx_poll(rx, 1 * MS, &f), 0); /* held for the start latency */
	CHECK_INT(media_rtp_rx_poll(rx, 60 * MS, &f), 1);
	CHECK_INT(f.data->size, sizeof(ref));
	CHECK(memcmp(f.data->data, ref, sizeof(ref)) == 0);
	buf_unref(f.data);
	{
		struct media_rtp_rx_stats st;

		media_rtp_rx_stats(rx, &st);
		CHECK_INT(st.packets_duplicate, 2);
		CHECK_INT(st.packets_lost, 0);
	}
	media_rtp_rx_free(rx);
}

static void test_ssrc_change(void)
{
	struct media_rtp_rx *rx = vp8_rx(0);
	struct gen a = { .seq = 1, .ts = 1000, .ssrc = 0xa, .pt = 96 };
	struct gen b = { .seq = 40000, .ts = 0x80000000u, .ssrc = 0xb, .pt = 96 };
	struct media_rtp_rx_stats st;
	int64_t now = 0, last = -1;
	int keys = 0, frames = 0;
	bool mono = true;

	send_frame(rx, &a, true, 640, 360, 1, 1500, now, -1, false);
	for (int i = 0; i < 5; i++) {
		now += 33 * MS;
		send_frame(rx, &a, false, 0, 0, 2, 900, now, -1, false);
	}
	frames += drain(rx, now, &keys, &last, &mono);
	CHECK_INT(frames, 6);
	/* a stray packet of another SSRC is ignored */
	send_frame(rx, &b, false, 0, 0, 3, 500, now, -1, false);
	media_rtp_rx_stats(rx, &st);
	CHECK_INT(st.ssrc_changes, 0);
	CHECK_INT(st.packets_foreign, 1);
	/* the new publisher after a pause: switch, wait for its keyframe */
	now += 400 * MS;
	send_frame(rx, &b, false, 0, 0, 4, 900, now, -1, false);
	now += 33 * MS;
	send_frame(rx, &b, true, 640, 360, 5, 1500, now, -1, false);
	now += 33 * MS;
	send_frame(rx, &b, false, 0, 0, 6, 900, now, -1, false);
	frames += drain(rx, now + 200 * MS, &keys, &last, &mono);
	media_rtp_rx_stats(rx, &st);
	CHECK_INT(st.ssrc_changes, 1);
	CHECK(st.ssrc == 0xb);
	CHECK_INT(frames, 8);
	CHECK_INT(keys, 2);
	CHECK(mono);
	CHECK(last >= 400 * MS); /* the track continued from the arrival time */
	media_rtp_rx_free(rx);
}

static void test_oversize_and_garbage(void)
{
	struct media_rtp_rx *rx = vp8_rx(4000);
	struct gen g = { .seq = 1, .ts = 1000, .ssrc = 9, .pt = 96 };
	struct media_rtp_rx_stats st;
	uint8_t junk[1500];
	uint32_t seed = 12345;
	int frames;

	send_frame(rx, &g, true, 640, 360, 1, 12000, 0, -1, false); /* over 4000 bytes */
	frames = drain(rx, 300 * MS, NULL, NULL, NULL);
	CHECK_INT(frames, 0);
	media_rtp_rx_stats(rx, &st);
	CHECK_INT(st.frames_dropped, 1);
	send_frame(rx, &g, true, 640, 360, 1, 3000, 0, -1, false);
	CHECK_INT(drain(rx, 300 * MS, NULL, NULL, NULL), 1);

	/* random datagrams, some of them RTP-looking with our SSRC and PT */
	for (int i = 0; i < 200000; i++) {
		size_t len;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 8) % sizeof(junk);
		for (size_t k = 0; k < len; k++) {
			seed = seed * 1103515245u + 12345u;
			junk[k] = (uint8_t)(seed >> 16);
		}
		if (len >= 12 && (i & 1)) {
			junk[0] = (uint8_t)(0x80 | (junk[0] & 0x3f));
			junk[1] = (uint8_t)((junk[1] & 0x80) | 96);
			junk[8] = 0; junk[9] = 0; junk[10] = 0; junk[11] = 9;
		}
		media_rtp_rx_push(rx, junk, len, (int64_t)i * MS);
		if ((i & 15) == 0) {
			uint8_t out[128];

			drain(rx, (int64_t)i * MS, NULL, NULL, NULL);
			media_rtp_rx_rtcp_due(rx, (int64_t)i * MS, out, sizeof(out));
		}
	}
	media_rtp_rx_stats(rx, &st);
	CHECK(st.packets_malformed > 0);
	CHECK(st.packets_foreign > 0);
	media_rtp_rx_free(rx);

	{
		uint8_t big[MEDIA_RTP_MAX_PACKET + 1];

		rx = vp8_rx(0);
		memset(big, 0, sizeof(big));
		CHECK_INT(media_rtp_rx_push(rx, big, sizeof(big), 0), 1);
		media_rtp_rx_stats(rx, &st);
		CHECK_INT(st.packets_oversize, 1);
		media_rtp_rx_free(rx);
	}
}

/* Nobody polls: whatever the sender does, the stream holds a bounded
 * number of packets and frames. */
static void test_memory_bound(void)
{
	struct media_rtp_rx *rx = vp8_rx(64 * 1024);
	struct gen g = { .seq = 1, .ts = 1000, .ssrc = 3, .pt = 96 };
	struct media_rtp_rx_stats st;
	int frames;

	for (int i = 0; i < 3000; i++)
		send_frame(rx, &g, i % 100 == 0, 640, 360, (uint8_t)i, 1400, (int64_t)i * MS, -1, false);
	media_rtp_rx_stats(rx, &st);
	CHECK(st.frames_dropped > 0);
	frames = drain(rx, 10000 * MS, NULL, NULL, NULL);
	CHECK(frames <= 64 + 512 * 2);
	CHECK(frames > 0);
	media_rtp_rx_free(rx);
}

static void test_opus_dtx(void)
{
	struct media_rtp_rx_config cfg = { .codec = MEDIA_RTP_CODEC_OPUS, .payload_type = 111, .jb_latency_ns = 20 * MS };
	struct media_rtp_rx *rx = media_rtp_rx_new(&cfg, NULL, 0);
	struct gen g = { .seq = 65000, .ts = 0xfffff000u, .ssrc = 77, .pt = 111 };
	struct media_rtp_frame f;
	int64_t pts[20];
	int n = 0;
	int64_t now = 0;

	for (int i = 0; i < 20; i++) {
		uint8_t p[40];
		size_t h = rtp_header(p, &g, false);

		p[h] = (uint8_t)(31 << 3) | 0x04;
		memset(p + h + 1, i, 20);
		media_rtp_rx_push(rx, p, h + 21, now);
		g.seq++;
		g.ts += 960;
		now += 20 * MS;
		if (i == 9) { /* one second of DTX silence */
			g.ts += 48000;
			now += 1000 * MS;
		}
		while (media_rtp_rx_poll(rx, now, &f) == 1) {
			CHECK_INT(f.samples, 960);
			CHECK(f.stereo);
			if (n < 20)
				pts[n++] = f.pts_ns;
			buf_unref(f.data);
		}
	}
	CHECK_INT(n, 20);
	if (n == 20) {
		CHECK(llabs(pts[9] - pts[0] - 180 * MS) < 2 * MS);
		CHECK(llabs(pts[10] - pts[9] - 1020 * MS) < 5 * MS); /* the gap stays a gap */
		CHECK(llabs(pts[19] - pts[10] - 180 * MS) < 5 * MS);
	}
	{
		struct media_rtp_rx_stats st;
		uint8_t out[64];

		media_rtp_rx_stats(rx, &st);
		CHECK_INT(st.packets_lost, 0);
		media_rtp_rx_request_keyframe(rx);
		size_t len = media_rtp_rx_rtcp_due(rx, now, out, sizeof(out));
		struct media_rtcp_info info;
		media_rtcp_parse(out, len, &info);
		CHECK_INT(info.pli_count, 0); /* audio never asks for keyframes */
	}
	media_rtp_rx_free(rx);
}

/* Jittery arrivals: output follows the RTP clock, not the jitter, and never
 * goes backwards. Two streams with Sender Reports keep the sender's A/V
 * relation even when one path is slower. */
/* A Sender Report sent before the first RTP packet (ffmpeg does) is kept
 * and applied once the stream follows that SSRC. */
static void test_early_sr(void)
{
	struct media_rtp_rx_config cfg = { .codec = MEDIA_RTP_CODEC_OPUS, .payload_type = 111 };
	struct media_rtp_rx *rx = media_rtp_rx_new(&cfg, NULL, 0);
	struct media_rtp_rx_stats st;
	struct gen g = { .seq = 1, .ts = 48000, .ssrc = 0xabcd, .pt = 111 };
	uint8_t sr[28] = { 0x80, 200, 0, 6, 0, 0, 0xab, 0xcd };
	uint8_t p[40];
	uint64_t ntp = media_rtcp_unix_ns_to_ntp(1700000000LL * 1000000000LL);
	size_t h;

	for (int i = 0; i < 8; i++)
		sr[8 + i] = (uint8_t)(ntp >> (56 - 8 * i));
	sr[16] = 0; sr[17] = 0; sr[18] = 0xbb; sr[19] = 0x80; /* rtp ts 48000 */
	CHECK_INT(media_rtp_rx_push_rtcp(rx, sr, sizeof(sr), 0), 0);
	media_rtp_rx_stats(rx, &st);
	CHECK_INT(st.sender_reports, 0);
	h = rtp_header(p, &g, false);
	p[h] = (uint8_t)(31 << 3);
	media_rtp_rx_push(rx, p, h + 10, 5 * MS);
	media_rtp_rx_stats(rx, &st);
	CHECK_INT(st.sender_reports, 1);
	CHECK_INT(st.first_sr_ns, 0);
	media_rtp_rx_free(rx);
}

/* A tiny deterministic generator for arrival jitter. */
static uint32_t rnd(uint32_t *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return *seed >> 16;
}

/* An output interval equals the RTP interval within 0.2 ms: drift
 * correction only (at most 2000 ppm), no arrival jitter. */
static bool interval_ok(int64_t out_step, int64_t rtp_step)
{
	return llabs(out_step - rtp_step) <= 200000;
}

/* Random jitter of 0..30 ms and bursts (a relay holding packets up to
 * 200 ms, then releasing them at once): the output follows the RTP clock,
 * not the arrivals, and sits on the least delay seen. */
static void test_clock_jitter_bursts(void)
{
	struct media_rtp_clock c;
	uint32_t seed = 7;
	int64_t prev = -1, out = 0, worst = 0, held_until = 0;
	bool steady = true;

	media_rtp_clock_init(&c, 90000);
	for (int i = 0; i < 3000; i++) {
		int64_t sent = 1000 * MS + (int64_t)i * 100000000LL / 3;
		int64_t arrival = sent + (int64_t)(rnd(&seed) % 30) * MS;

		if (i % 45 == 0)
			held_until = sent + (int64_t)(rnd(&seed) % 200) * MS;
		if (arrival < held_until)
			arrival = held_until;
		out = media_rtp_clock_map(&c, NULL, 5000 + (int64_t)i * 3000, arrival);
		if (prev >= 0 && !interval_ok(out - prev, 33333333))
			steady = false;
		/* after settling: never later than the fastest path, at most 2 ms early */
		if (i > 300 && llabs(out - sent) > worst)
			worst = llabs(out - sent);
		prev = out;
	}
	CHECK(steady);
	CHECK(worst <= 2 * MS);
	CHECK_INT(c.steps, 0);
}

/* An audio clock 1000 ppm fast against the local clock (no SR): the output
 * follows the arrivals (real time) within a few ms over two minutes, and the
 * intervals still equal the RTP intervals. */
static void test_clock_skew(void)
{
	for (int sign = -1; sign <= 1; sign += 2) {
		struct media_rtp_clock c;
		uint32_t seed = 99;
		int64_t prev = -1, worst = 0;
		bool steady = true;

		media_rtp_clock_init(&c, 48000);
		for (int i = 0; i < 6000; i++) {
			/* packet i holds samples 960 i .. of a clock running at
			 * 48000 (1 + sign 0.001) Hz: it is sent when captured */
			int64_t sent = (int64_t)((double)i * 20e6 / (1.0 + sign * 0.001));
			int64_t arrival = sent + (int64_t)(rnd(&seed) % 10) * MS;
			int64_t out = media_rtp_clock_map(&c, NULL, (int64_t)i * 960, arrival);

			if (prev >= 0 && !interval_ok(out - prev, 20 * MS))
				steady = false;
			if (llabs(out - sent) > worst)
				worst = llabs(out - sent);
			prev = out;
		}
		CHECK(steady);
		CHECK(worst <= 8 * MS);
	}
}

static void test_clock(void)
{
	struct media_rtp_clock c;
	struct media_rtp_sync sync = { 0 };
	struct media_rtp_clock a, v;
	int64_t prev = -1;

	media_rtp_clock_init(&c, 90000);
	for (int i = 0; i < 300; i++)
		prev = media_rtp_clock_map(&c, NULL, 5000 + (int64_t)i * 3000, 1000 * MS + (int64_t)i * 33333333LL);

	/* SR: audio NTP = video NTP at the same instant; audio arrives 5 ms
	 * after sending, video 60 ms. Their outputs stay together. */
	media_rtp_clock_init(&a, 48000);
	media_rtp_clock_init(&v, 90000);
	{
		uint64_t ntp = media_rtcp_unix_ns_to_ntp(1700000000LL * 1000000000LL);
		int64_t ta = 0, tv = 0;

		media_rtp_clock_on_sr(&a, ntp, 480000);
		media_rtp_clock_on_sr(&v, ntp, 900000);
		for (int i = 0; i < 100; i++) {
			int64_t t = (int64_t)i * 20 * MS;

			ta = media_rtp_clock_map(&a, &sync, 480000 + (int64_t)i * 960, 50 * MS + t + 5 * MS);
			tv = media_rtp_clock_map(&v, &sync, 900000 + (int64_t)i * 1800, 50 * MS + t + 60 * MS);
		}
		CHECK(llabs(ta - tv) < 1 * MS);
	}
	/* k = 0: the first SR arrives 3 s in and puts the stream 30 ms earlier
	 * than arrival anchoring did (a sibling with a shorter path set the
	 * group's delay): slewed in. k = 1: no SR, the path's delay grows by
	 * 80 ms for good: a step (a gap) once the old delays leave the window.
	 * Never a step back or crowded frames; the new mapping is reached. */
	for (int k = 0; k < 2; k++) {
		struct media_rtp_clock s;
		struct media_rtp_sync grp = { 0 };
		int64_t prev_out = -1, o = 0, arrival = 0, sent = 0, min_step = INT64_MAX;
		int64_t path = 300 * MS, shift = k ? 0 : 30 * MS;
		bool steady = true;

		media_rtp_clock_init(&s, 90000);
		for (int i = 0; i < 1200; i++) {
			sent = 10 * TIME_NS_PER_SEC_TEST + (int64_t)i * 33333333LL;
			arrival = sent + path + (k && i >= 90 ? 80 * MS : 0);
			if (k == 0 && i >= 90)
				grp.delay = (struct media_rtp_minwin){ .have = true, .start_ns = arrival,
								       .cur = path - shift };
			if (k == 0 && i == 90)
				media_rtp_clock_on_sr(&s, media_rtcp_unix_ns_to_ntp(sent), (int64_t)i * 3000);
			o = media_rtp_clock_map(&s, k ? NULL : &grp, (int64_t)i * 3000, arrival);
			if (prev_out >= 0 && o - prev_out < min_step)
				min_step = o - prev_out;
			if (prev_out >= 0 && !interval_ok(o - prev_out, 33333333) && !(k && o - prev_out > 33 * MS))
				steady = false;
			prev_out = o;
		}
		CHECK(min_step >= 33 * MS);
		CHECK(steady);
		CHECK_INT(s.steps, k);
		CHECK(llabs(arrival - o - shift) < 1 * MS);
	}
	/* restart keeps the output moving forward */
	media_rtp_clock_restart(&c);
	CHECK(media_rtp_clock_map(&c, NULL, 12, 0) > prev);
	/* a sender whose timestamps jump back 10 s (no SSRC change): the track
	 * goes on forward from the arrival time */
	media_rtp_clock_init(&c, 90000);
	for (int i = 0; i < 60; i++)
		prev = media_rtp_clock_map(&c, NULL, 900000 + (int64_t)i * 3000, (int64_t)i * 33333333LL);
	{
		int64_t o = media_rtp_clock_map(&c, NULL, 3000, 60 * 33333333LL);

		CHECK(o > prev && o - prev < 40 * MS);
		CHECK_INT(media_rtp_clock_map(&c, NULL, 6000, 61 * 33333333LL) - o, 33333333);
	}
}

int main(void)
{
	test_parse();
	test_rtx_unwrap();
	test_rtcp();
	test_unwrap();
	test_jitter_buffer();
	test_vp8_desc();
	test_opus_toc();
	test_vp8_stream();
	test_vp8_reorder_content();
	test_ssrc_change();
	test_oversize_and_garbage();
	test_memory_bound();
	test_opus_dtx();
	test_early_sr();
	test_clock();
	test_clock_jitter_bursts();
	test_clock_skew();
	return check_exit();
}
