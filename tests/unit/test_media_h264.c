/* test_media_h264: the SPS parser (parameter sets of real x264 streams, and
 * built ones with scaling lists), the avcC record, and the RFC 6184
 * depacketizer on its own and inside a receive stream (single NAL units,
 * STAP-A, FU-A with loss and reorder, unsupported packet types, parameter
 * sets from sprop-parameter-sets). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "media_h264.h"
#include "media_rtp.h"

#define MS 1000000LL

static size_t unhex(const char *hex, uint8_t *out)
{
	size_t n = 0;

	for (; hex[0] && hex[1]; hex += 2) {
		unsigned v;
		sscanf(hex, "%2x", &v);
		out[n++] = (uint8_t)v;
	}
	return n;
}

/* ---- parameter sets of real streams (ffmpeg -c:v libx264) ------------ */

/* 1920x1080 baseline: 68 macroblock rows cropped by 8 lines; the SPS holds
 * emulation prevention bytes. */
static const char *sps_1080p_baseline = "6742c028d900780227e5c044000003000400000300f03c60c920";
static const char *pps_1080p_baseline = "68cb83cb20";
/* 1920x1080 interlaced (tff): 34 map units of 32 lines, cropped by 8. */
static const char *sps_1080i_high = "67640028acd94078044fde0220000003002000000783e2c5b2c0";
/* 640x360 High 4:2:2: 23 macroblock rows, cropped by 8 lines in units of 1. */
static const char *sps_360p_422 = "677a001ebcd940a02ff89c0440000003004000000f03c58b6580";
static const char *sps_720p_high = "6764001facd9405005bb0110000003001000000303c0f1831960";
static const char *pps_720p_high = "68ebe3cb22c0";

/* ---- a bit writer for built NAL units --------------------------------- */

struct bw {
	uint8_t buf[256];
	size_t bits;
};

static void bw_u(struct bw *w, uint32_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		if ((v >> i) & 1)
			w->buf[w->bits / 8] |= (uint8_t)(0x80 >> (w->bits % 8));
		w->bits++;
	}
}

static void bw_ue(struct bw *w, uint32_t v)
{
	uint32_t x = v + 1;
	int len = 0;

	while ((x >> len) > 1)
		len++;
	bw_u(w, 0, len);
	bw_u(w, x, len + 1);
}

static void bw_se(struct bw *w, int32_t v)
{
	bw_ue(w, v > 0 ? (uint32_t)(2 * v - 1) : (uint32_t)(-2 * v));
}

/* Ends the RBSP (stop bit, alignment) and adds emulation prevention.
 * Returns the NAL unit's length in 'out'. */
static size_t bw_nal(struct bw *w, uint8_t header, uint8_t *out)
{
	size_t n = 1, zeros = 0, bytes;

	bw_u(w, 1, 1);
	while (w->bits % 8)
		bw_u(w, 0, 1);
	bytes = w->bits / 8;
	out[0] = header;
	for (size_t i = 0; i < bytes; i++) {
		if (zeros >= 2 && w->buf[i] <= 3) {
			out[n++] = 3;
			zeros = 0;
		}
		out[n++] = w->buf[i];
		zeros = w->buf[i] == 0 ? zeros + 1 : 0;
	}
	return n;
}

/* A baseline SPS: id 0, frame_num of 4 bits, POC type 2, w x h macroblocks. */
static size_t build_sps(uint8_t *out, int w_mbs, int h_mbs)
{
	struct bw w = { 0 };

	bw_u(&w, 66, 8);
	bw_u(&w, 0xc0, 8);
	bw_u(&w, 30, 8);
	bw_ue(&w, 0); /* sps id */
	bw_ue(&w, 0); /* log2_max_frame_num_minus4 */
	bw_ue(&w, 2); /* pic_order_cnt_type */
	bw_ue(&w, 1); /* max_num_ref_frames */
	bw_u(&w, 0, 1);
	bw_ue(&w, (uint32_t)w_mbs - 1);
	bw_ue(&w, (uint32_t)h_mbs - 1);
	bw_u(&w, 1, 1); /* frame_mbs_only */
	bw_u(&w, 1, 1); /* direct_8x8 */
	bw_u(&w, 0, 1); /* no cropping */
	bw_u(&w, 0, 1); /* no VUI */
	return bw_nal(&w, 0x67, out);
}

/* A High 4:2:0 SPS with a scaling matrix: list 0 explicit (a ramp), list 1
 * "use the default" (first delta makes next 0), list 6 (8x8) explicit in
 * full, list 7 (8x8) a run that ends early, the rest absent; 1280x720 with
 * 8 lines of cropping written as 4 crop units. */
static size_t build_sps_scaling(uint8_t *out)
{
	struct bw w = { 0 };

	bw_u(&w, 100, 8);
	bw_u(&w, 0, 8);
	bw_u(&w, 31, 8);
	bw_ue(&w, 3);   /* sps id */
	bw_ue(&w, 1);   /* chroma_format_idc */
	bw_ue(&w, 0);   /* bit depths */
	bw_ue(&w, 0);
	bw_u(&w, 0, 1); /* qpprime */
	bw_u(&w, 1, 1); /* seq_scaling_matrix_present_flag */
	for (int i = 0; i < 8; i++) {
		int last = 8;

		if (i == 0) {
			bw_u(&w, 1, 1);
			for (int j = 0; j < 16; j++) {
				int next = 6 + j * 3;
				bw_se(&w, next - last);
				last = next;
			}
		} else if (i == 1) {
			bw_u(&w, 1, 1);
			bw_se(&w, -8); /* next = 0: the default list, nothing more */
		} else if (i == 6) {
			bw_u(&w, 1, 1);
			for (int j = 0; j < 64; j++) {
				int next = 4 + j * 3;
				bw_se(&w, next - last);
				last = next;
			}
		} else if (i == 7) {
			bw_u(&w, 1, 1);
			for (int j = 0; j < 10; j++) {
				int next = 20 + j;
				bw_se(&w, next - last);
				last = next;
			}
			bw_se(&w, -last); /* next = 0: the rest repeats the last */
		} else {
			bw_u(&w, 0, 1);
		}
	}
	bw_ue(&w, 2);   /* log2_max_frame_num_minus4 */
	bw_ue(&w, 0);   /* POC type 0 */
	bw_ue(&w, 4);
	bw_ue(&w, 3);   /* max_num_ref_frames */
	bw_u(&w, 0, 1);
	bw_ue(&w, 79);  /* 80 macroblocks: 1280 */
	bw_ue(&w, 45);  /* 46 macroblocks: 736 */
	bw_u(&w, 1, 1);
	bw_u(&w, 1, 1);
	bw_u(&w, 1, 1); /* cropping */
	bw_ue(&w, 0);
	bw_ue(&w, 0);
	bw_ue(&w, 4);   /* top: 4 units of 2 lines */
	bw_ue(&w, 4);
	bw_u(&w, 0, 1);
	return bw_nal(&w, 0x67, out);
}

static size_t build_pps(uint8_t *out, int pps_id, int sps_id)
{
	struct bw w = { 0 };

	bw_ue(&w, (uint32_t)pps_id);
	bw_ue(&w, (uint32_t)sps_id);
	bw_u(&w, 0, 1); /* entropy_coding_mode_flag */
	bw_u(&w, 0, 1);
	bw_ue(&w, 0);
	return bw_nal(&w, 0x68, out);
}

/* A slice NAL unit: header fields, then 'body' bytes of made-up data. */
static size_t build_slice(uint8_t *out, bool idr, bool ref, int frame_num, int first_mb, size_t body, uint8_t tag)
{
	struct bw w = { 0 };
	size_t n;

	bw_ue(&w, (uint32_t)first_mb);
	bw_ue(&w, idr ? 7 : 5);
	bw_ue(&w, 0); /* pps 0 */
	bw_u(&w, (uint32_t)frame_num, 4);
	n = bw_nal(&w, (uint8_t)((ref ? 0x60 : 0) | (idr ? 5 : 1)), out);
	for (size_t i = 0; i < body; i++)
		out[n++] = (uint8_t)(0x40 | ((tag + i) & 0x3f)); /* never 0..3: no emulation needed */
	return n;
}

static void test_sps(void)
{
	uint8_t nal[256];
	struct media_h264_sps s;
	size_t n;

	n = unhex(sps_1080p_baseline, nal);
	CHECK_INT(media_h264_sps_parse(nal, n, &s), 0);
	CHECK_INT(s.profile_idc, 66);
	CHECK_INT(s.level_idc, 40);
	CHECK_INT(s.coded_width, 1920);
	CHECK_INT(s.coded_height, 1088);
	CHECK_INT(s.crop_bottom, 8);
	CHECK_INT(s.width, 1920);
	CHECK_INT(s.height, 1080);
	CHECK(s.frame_mbs_only);
	/* a copy cut short fails cleanly, unless what is cut is only what
	 * the parser does not read (the VUI): then the values are right */
	for (size_t k = 0; k < n; k++) {
		int r = media_h264_sps_parse(nal, k, &s);
		CHECK(r == -1 || (k >= 10 && s.width == 1920 && s.height == 1080));
	}

	n = unhex(sps_1080i_high, nal);
	CHECK_INT(media_h264_sps_parse(nal, n, &s), 0);
	CHECK(!s.frame_mbs_only);
	CHECK_INT(s.profile_idc, 100);
	CHECK_INT(s.coded_height, 1088);
	CHECK_INT(s.width, 1920);
	CHECK_INT(s.height, 1080);

	n = unhex(sps_360p_422, nal);
	CHECK_INT(media_h264_sps_parse(nal, n, &s), 0);
	CHECK_INT(s.profile_idc, 122);
	CHECK_INT(s.chroma_format_idc, 2);
	CHECK_INT(s.coded_height, 368);
	CHECK_INT(s.crop_bottom, 8);
	CHECK_INT(s.width, 640);
	CHECK_INT(s.height, 360);

	n = unhex(sps_720p_high, nal);
	CHECK_INT(media_h264_sps_parse(nal, n, &s), 0);
	CHECK_INT(s.width, 1280);
	CHECK_INT(s.height, 720);

	n = build_sps_scaling(nal);
	CHECK_INT(media_h264_sps_parse(nal, n, &s), 0);
	CHECK_INT(s.id, 3);
	CHECK_INT(s.log2_max_frame_num, 6);
	CHECK_INT(s.width, 1280);
	CHECK_INT(s.coded_height, 736);
	CHECK_INT(s.crop_top, 8);
	CHECK_INT(s.height, 720);

	n = build_sps(nal, 20, 15);
	CHECK_INT(media_h264_sps_parse(nal, n, &s), 0);
	CHECK_INT(s.width, 320);
	CHECK_INT(s.height, 240);
	CHECK_INT(s.log2_max_frame_num, 4);

	/* not an SPS; a PPS's ids */
	n = unhex(pps_1080p_baseline, nal);
	CHECK_INT(media_h264_sps_parse(nal, n, &s), -1);
	int pid = -1, sid = -1;
	CHECK_INT(media_h264_pps_ids(nal, n, &pid, &sid), 0);
	CHECK_INT(pid, 0);
	CHECK_INT(sid, 0);
	n = build_pps(nal, 7, 3);
	CHECK_INT(media_h264_pps_ids(nal, n, &pid, &sid), 0);
	CHECK_INT(pid, 7);
	CHECK_INT(sid, 3);
}

static void test_avcc(void)
{
	uint8_t sps[64], pps[64], out[128];
	size_t ns = unhex(sps_1080p_baseline, sps), np = unhex(pps_1080p_baseline, pps), n;

	n = media_h264_avcc_build(sps, ns, pps, np, out, sizeof(out));
	CHECK_INT(n, 11 + ns + np);
	CHECK_INT(out[0], 1);
	CHECK_INT(out[1], 66);
	CHECK_INT(out[2], 0xc0);
	CHECK_INT(out[3], 40);
	CHECK_INT(out[4], 0xff);     /* 4-byte lengths */
	CHECK_INT(out[5], 0xe1);     /* one SPS */
	CHECK_INT((out[6] << 8) | out[7], ns);
	CHECK(memcmp(out + 8, sps, ns) == 0);
	CHECK_INT(out[8 + ns], 1);   /* one PPS */
	CHECK_INT((out[9 + ns] << 8) | out[10 + ns], np);
	CHECK(memcmp(out + 11 + ns, pps, np) == 0);
	CHECK_INT(media_h264_avcc_build(sps, ns, pps, np, out, n - 1), 0);
	CHECK_INT(media_h264_avcc_build(pps, np, pps, np, out, sizeof(out)), 0);

	/* High: chroma format and bit depths follow */
	ns = unhex(sps_720p_high, sps);
	np = unhex(pps_720p_high, pps);
	n = media_h264_avcc_build(sps, ns, pps, np, out, sizeof(out));
	CHECK_INT(n, 15 + ns + np);
	CHECK_INT(out[1], 100);
	CHECK_INT(out[3], 31);
	CHECK_INT(out[n - 4], 0xfd);
	CHECK_INT(out[n - 3], 0xf8);
	CHECK_INT(out[n - 2], 0xf8);
	CHECK_INT(out[n - 1], 0);
}

/* ---- the depacketizer ------------------------------------------------- */

struct stream {
	uint8_t sps[64], pps[64];
	size_t nsps, npps;
};

static void stream_init(struct stream *s)
{
	s->nsps = build_sps(s->sps, 20, 15);
	s->npps = build_pps(s->pps, 0, 0);
}

/* Splits one NAL unit into FU-A payloads of at most 'max' bytes each. */
static int fu_a(const uint8_t *nal, size_t len, size_t max, uint8_t out[][1400], size_t *lens)
{
	int k = 0;
	size_t off = 1;

	while (off < len) {
		size_t n = len - off < max ? len - off : max;
		out[k][0] = (uint8_t)((nal[0] & 0xe0) | 28);
		out[k][1] = (uint8_t)((off == 1 ? 0x80 : 0) | (off + n == len ? 0x40 : 0) | (nal[0] & 0x1f));
		memcpy(out[k] + 2, nal + off, n);
		lens[k++] = n + 2;
		off += n;
	}
	return k;
}

static size_t stap_a(uint8_t *out, const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
	size_t n = 0;

	out[n++] = 0x78; /* NRI 3, type 24 */
	out[n++] = (uint8_t)(na >> 8);
	out[n++] = (uint8_t)na;
	memcpy(out + n, a, na);
	n += na;
	out[n++] = (uint8_t)(nb >> 8);
	out[n++] = (uint8_t)nb;
	memcpy(out + n, b, nb);
	return n + nb;
}

/* The NAL units of an AVCC access unit, as "type:len" in order. */
static void au_layout(const struct buf *b, char *out, size_t cap)
{
	const uint8_t *nal;
	size_t pos = 0, n;

	out[0] = 0;
	while (media_h264_avcc_next(b->data, b->size, &pos, &nal, &n) == 1)
		snprintf(out + strlen(out), cap - strlen(out), "%s%d:%zu", out[0] ? " " : "", nal[0] & 0x1f, n);
}

static void test_depacketize(void)
{
	struct stream s;
	struct media_rtp_h264 *h = media_rtp_h264_new(0);
	struct media_rtp_h264_au au;
	struct media_rtp_h264_stats st;
	uint8_t idr[3000], p1[200], pkt[1500], frag[8][1400];
	size_t nidr, np1, flen[8], n;
	char lay[256];
	int k;

	stream_init(&s);
	CHECK(media_rtp_h264_waiting_key(h));

	/* single NAL units: SPS, PPS, an AUD (left out), the IDR with the marker */
	nidr = build_slice(idr, true, true, 0, 0, 900, 1);
	uint8_t aud[2] = { 0x09, 0xf0 };
	media_rtp_h264_push(h, aud, 2, 1000, false, 0, 0);
	media_rtp_h264_push(h, s.sps, s.nsps, 1000, false, 0, 0);
	media_rtp_h264_push(h, s.pps, s.npps, 1000, false, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 0);
	media_rtp_h264_push(h, idr, nidr, 1000, true, 0, 5);
	CHECK_INT(media_rtp_h264_pop(h, &au), 1);
	CHECK(au.keyframe);
	CHECK_INT(au.ext_ts, 1000);
	CHECK_INT(au.arrival_ns, 0);
	CHECK_INT(au.width, 320);
	CHECK_INT(au.height, 240);
	au_layout(au.data, lay, sizeof(lay));
	snprintf((char *)pkt, sizeof(pkt), "7:%zu 8:%zu 5:%zu", s.nsps, s.npps, nidr);
	CHECK_STR(lay, (const char *)pkt);
	CHECK(memcmp(au.data->data + au.data->size - nidr, idr, nidr) == 0);
	buf_unref(au.data);
	CHECK(!media_rtp_h264_waiting_key(h));

	/* a P slice in one packet; the next timestamp closes an AU whose
	 * marker never came when nothing was lost */
	np1 = build_slice(p1, false, true, 1, 0, 150, 2);
	media_rtp_h264_push(h, p1, np1, 4000, false, 0, 33 * MS);
	np1 = build_slice(p1, false, true, 2, 0, 150, 3);
	media_rtp_h264_push(h, p1, np1, 7000, true, 0, 66 * MS);
	CHECK_INT(media_rtp_h264_pop(h, &au), 1);
	CHECK(!au.keyframe);
	CHECK_INT(au.ext_ts, 4000);
	buf_unref(au.data);
	CHECK_INT(media_rtp_h264_pop(h, &au), 1);
	CHECK_INT(au.ext_ts, 7000);
	au_layout(au.data, lay, sizeof(lay));
	snprintf((char *)pkt, sizeof(pkt), "1:%zu", np1);
	CHECK_STR(lay, (const char *)pkt);
	buf_unref(au.data);

	/* STAP-A (SPS + PPS) and the IDR in FU-A fragments */
	n = stap_a(pkt, s.sps, s.nsps, s.pps, s.npps);
	media_rtp_h264_push(h, pkt, n, 10000, false, 0, 100 * MS);
	k = fu_a(idr, nidr, 400, frag, flen);
	CHECK_INT(k, 3);
	for (int i = 0; i < k; i++)
		media_rtp_h264_push(h, frag[i], flen[i], 10000, i == k - 1, 0, 100 * MS);
	CHECK_INT(media_rtp_h264_pop(h, &au), 1);
	CHECK(au.keyframe);
	CHECK(memcmp(au.data->data + au.data->size - nidr, idr, nidr) == 0);
	au_layout(au.data, lay, sizeof(lay));
	snprintf((char *)pkt, sizeof(pkt), "7:%zu 8:%zu 5:%zu", s.nsps, s.npps, nidr);
	CHECK_STR(lay, (const char *)pkt);
	buf_unref(au.data);

	/* FU-A with its middle fragment lost: dropped, then P frames wait for
	 * an IDR; the IDR that comes without SPS/PPS gets them put in front */
	uint8_t big[3000];
	size_t nbig = build_slice(big, false, true, 1, 0, 1000, 4);
	k = fu_a(big, nbig, 400, frag, flen);
	media_rtp_h264_push(h, frag[0], flen[0], 13000, false, 0, 0);
	media_rtp_h264_push(h, frag[2], flen[2], 13000, true, 1, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 0);
	CHECK(media_rtp_h264_waiting_key(h));
	np1 = build_slice(p1, false, true, 2, 0, 100, 5);
	media_rtp_h264_push(h, p1, np1, 16000, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 0);
	media_rtp_h264_stats(h, &st);
	CHECK_INT(st.dropped_incomplete, 1);
	CHECK_INT(st.dropped_waiting, 1);
	media_rtp_h264_push(h, idr, nidr, 19000, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 1);
	CHECK(au.keyframe);
	au_layout(au.data, lay, sizeof(lay));
	snprintf((char *)pkt, sizeof(pkt), "7:%zu 8:%zu 5:%zu", s.nsps, s.npps, nidr);
	CHECK_STR(lay, (const char *)pkt);
	buf_unref(au.data);
	CHECK(!media_rtp_h264_waiting_key(h));

	/* FU-A whose start is lost (the loss lands on the next timestamp's
	 * first packet): the AU before had its marker, the new one is broken */
	media_rtp_h264_push(h, frag[1], flen[1], 22000, false, 1, 0);
	media_rtp_h264_push(h, frag[2], flen[2], 22000, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 0);
	CHECK(media_rtp_h264_waiting_key(h));
	media_rtp_h264_push(h, idr, nidr, 25000, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 1);
	buf_unref(au.data);

	/* a whole non-reference picture lost between two AUs: frame_num shows
	 * no reference went missing, the next AU is kept; a lost reference
	 * picture is not harmless */
	np1 = build_slice(p1, false, false, 1, 0, 100, 6); /* non-ref, frame_num 1 (after the IDR) */
	media_rtp_h264_push(h, p1, np1, 28000, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 1);
	buf_unref(au.data);
	np1 = build_slice(p1, false, true, 1, 0, 100, 7); /* ref, frame_num still 1: a lost non-ref between */
	media_rtp_h264_push(h, p1, np1, 34000, true, 2, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 1);
	buf_unref(au.data);
	np1 = build_slice(p1, false, true, 3, 0, 100, 8); /* frame_num 3: reference 2 was lost */
	media_rtp_h264_push(h, p1, np1, 40000, true, 3, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 0);
	CHECK(media_rtp_h264_waiting_key(h));
	/* a first slice that does not start at macroblock 0 */
	media_rtp_h264_push(h, idr, nidr, 43000, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 1);
	buf_unref(au.data);
	np1 = build_slice(p1, false, true, 1, 40, 100, 9);
	media_rtp_h264_push(h, p1, np1, 46000, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 0);

	/* interleaved-mode packets are counted and break their AU */
	media_rtp_h264_push(h, idr, nidr, 49000, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 1);
	buf_unref(au.data);
	uint8_t fub[20] = { 0x7d, 0x81, 0, 1 }, stapb[20] = { 0x79, 0, 1, 0, 4, 0x61, 1, 2, 3 };
	media_rtp_h264_push(h, fub, sizeof(fub), 52000, true, 0, 0);
	media_rtp_h264_push(h, stapb, 9, 55000, true, 0, 0);
	uint8_t mtap[20] = { 0x7a };
	media_rtp_h264_push(h, mtap, sizeof(mtap), 58000, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 0);
	media_rtp_h264_stats(h, &st);
	CHECK_INT(st.packets_unsupported, 3);
	CHECK(media_rtp_h264_waiting_key(h));

	/* malformed STAP-A (a length past the end) and an empty payload */
	uint8_t bad[6] = { 0x78, 0, 9, 0x67, 1, 2 };
	media_rtp_h264_push(h, bad, sizeof(bad), 61000, true, 0, 0);
	media_rtp_h264_push(h, bad, 0, 64000, true, 0, 0);
	media_rtp_h264_stats(h, &st);
	CHECK(st.packets_malformed >= 2);
	CHECK_INT(st.keyframes, 6);
	media_rtp_h264_free(h);
}

/* The 1080p baseline SPS and PPS above, as ffmpeg's SDP writes them. */
static const char *sprop_1080p = "Z0LAKNkAeAIn5cBEAAADAAQAAAMA8DxgySA=,aMuDyyA=";

/* A loss before parameter sets sent on a timestamp of their own still
 * counts for the picture after them. */
static void test_gap_before_params(void)
{
	struct stream s;
	struct media_rtp_h264 *h = media_rtp_h264_new(0);
	struct media_rtp_h264_au au;
	uint8_t idr[500], p1[300];
	size_t nidr, np1;

	stream_init(&s);
	nidr = build_slice(idr, true, true, 0, 0, 300, 1);
	media_rtp_h264_push(h, s.sps, s.nsps, 100, false, 0, 0);
	media_rtp_h264_push(h, s.pps, s.npps, 100, false, 0, 0);
	media_rtp_h264_push(h, idr, nidr, 100, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 1);
	buf_unref(au.data);
	/* reference picture 1 lost, then SPS alone, then picture 2 */
	media_rtp_h264_push(h, s.sps, s.nsps, 6000, true, 3, 0);
	np1 = build_slice(p1, false, true, 2, 0, 100, 2);
	media_rtp_h264_push(h, p1, np1, 6100, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 0);
	CHECK(media_rtp_h264_waiting_key(h));
	media_rtp_h264_free(h);
}

static void test_sprop(void)
{
	struct media_rtp_h264 *h = media_rtp_h264_new(0);
	struct media_rtp_h264_au au;
	uint8_t idr[500], sps[64], pps[64];
	char lay[128], want[128];
	size_t nidr, nsps = unhex(sps_1080p_baseline, sps), npps = unhex(pps_1080p_baseline, pps);

	CHECK_INT(media_rtp_h264_set_sprop(h, sprop_1080p), 2);
	CHECK_INT(media_rtp_h264_set_sprop(h, "Z0IA,not base64!"), -1);
	/* an IDR with no parameter sets in-band: those of the SDP go in front */
	nidr = build_slice(idr, true, true, 0, 0, 300, 9);
	media_rtp_h264_push(h, idr, nidr, 90000, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 1);
	CHECK(au.keyframe);
	CHECK_INT(au.width, 1920);
	CHECK_INT(au.height, 1080);
	au_layout(au.data, lay, sizeof(lay));
	snprintf(want, sizeof(want), "7:%zu 8:%zu 5:%zu", nsps, npps, nidr);
	CHECK_STR(lay, want);
	CHECK(memcmp(au.data->data + 4, sps, nsps) == 0);
	buf_unref(au.data);
	media_rtp_h264_free(h);

	/* without any: the IDR is dropped and counted */
	h = media_rtp_h264_new(0);
	media_rtp_h264_push(h, idr, nidr, 90000, true, 0, 0);
	CHECK_INT(media_rtp_h264_pop(h, &au), 0);
	struct media_rtp_h264_stats st;
	media_rtp_h264_stats(h, &st);
	CHECK_INT(st.dropped_no_params, 1);
	media_rtp_h264_free(h);
}

/* ---- through a receive stream: reorder and loss, PLI ------------------ */

static size_t rtp_packet(uint8_t *out, uint16_t seq, uint32_t ts, bool marker, const uint8_t *pl, size_t n)
{
	out[0] = 0x80;
	out[1] = (uint8_t)((marker ? 0x80 : 0) | 102);
	out[2] = (uint8_t)(seq >> 8);
	out[3] = (uint8_t)seq;
	out[4] = (uint8_t)(ts >> 24);
	out[5] = (uint8_t)(ts >> 16);
	out[6] = (uint8_t)(ts >> 8);
	out[7] = (uint8_t)ts;
	out[8] = 0x12;
	out[9] = 0x34;
	out[10] = 0x56;
	out[11] = 0x78;
	memcpy(out + 12, pl, n);
	return 12 + n;
}

struct pkt {
	uint8_t d[1500];
	size_t n;
};

/* One GOP's packets: STAP-A(SPS, PPS) + IDR in FU-A, then 'p' P frames in
 * FU-A, 3000 ticks apart, from sequence 'seq'. Returns the packet count. */
static int gop_packets(struct pkt *out, const struct stream *s, uint16_t seq, uint32_t ts, int p)
{
	uint8_t nal[4000], frag[8][1400], pl[200];
	size_t flen[8], n;
	int c = 0, k;

	n = stap_a(pl, s->sps, s->nsps, s->pps, s->npps);
	out[c].n = rtp_packet(out[c].d, seq++, ts, false, pl, n);
	c++;
	n = build_slice(nal, true, true, 0, 0, 2500, 11);
	k = fu_a(nal, n, 1000, frag, flen);
	for (int i = 0; i < k; i++, c++)
		out[c].n = rtp_packet(out[c].d, seq++, ts, i == k - 1, frag[i], flen[i]);
	for (int f = 1; f <= p; f++) {
		ts += 3000;
		n = build_slice(nal, false, true, f, 0, 1500, (uint8_t)(20 + f));
		k = fu_a(nal, n, 1000, frag, flen);
		for (int i = 0; i < k; i++, c++)
			out[c].n = rtp_packet(out[c].d, seq++, ts, i == k - 1, frag[i], flen[i]);
	}
	return c;
}

static int poll_all(struct media_rtp_rx *rx, int64_t now, int *keys, struct buf **first)
{
	struct media_rtp_frame f;
	int n = 0;

	while (media_rtp_rx_poll(rx, now, &f) == 1) {
		n++;
		if (f.keyframe)
			(*keys)++;
		if (first && !*first)
			*first = buf_ref(f.data);
		buf_unref(f.data);
	}
	return n;
}

static void test_rx_reorder_and_loss(void)
{
	struct stream s;
	struct media_rtp_rx_config cfg = { .codec = MEDIA_RTP_CODEC_H264, .payload_type = 102, .local_ssrc = 7,
					   .jb_latency_ns = 50 * MS };
	struct media_rtp_rx *rx, *ref;
	struct media_rtp_rx_stats st;
	struct pkt *p = calloc(64, sizeof(*p));
	struct buf *a = NULL, *b = NULL;
	uint8_t rtcp[128];
	int n, keys = 0, frames;

	stream_init(&s);
	n = gop_packets(p, &s, 100, 90000, 4);
	CHECK_INT(n, 1 + 3 + 4 * 2);

	/* in order, and with every pair of neighbours swapped: same frames */
	ref = media_rtp_rx_new(&cfg, NULL, 0);
	rx = media_rtp_rx_new(&cfg, NULL, 0);
	for (int i = 0; i < n; i++)
		media_rtp_rx_push(ref, p[i].d, p[i].n, i * MS);
	for (int i = 0; i + 1 < n; i += 2) {
		media_rtp_rx_push(rx, p[i + 1].d, p[i + 1].n, i * MS);
		media_rtp_rx_push(rx, p[i].d, p[i].n, i * MS);
	}
	if (n % 2)
		media_rtp_rx_push(rx, p[n - 1].d, p[n - 1].n, n * MS);
	frames = poll_all(ref, 500 * MS, &keys, &a);
	CHECK_INT(frames, 5);
	keys = 0;
	CHECK_INT(poll_all(rx, 500 * MS, &keys, &b), 5);
	CHECK_INT(keys, 1);
	CHECK(a && b && a->size == b->size && memcmp(a->data, b->data, a->size) == 0);
	buf_unref(a);
	buf_unref(b);
	media_rtp_rx_stats(rx, &st);
	CHECK_INT(st.frames_dropped, 0);
	CHECK_INT(st.keyframes, 1);
	media_rtp_rx_free(ref);
	media_rtp_rx_free(rx);

	/* a fragment of the second P frame lost: it and the two after it are
	 * dropped, a PLI goes out; the next GOP's IDR brings the stream back */
	rx = media_rtp_rx_new(&cfg, NULL, 0);
	int lost = 1 + 3 + 2; /* first fragment of P2 */
	for (int i = 0; i < n; i++)
		if (i != lost)
			media_rtp_rx_push(rx, p[i].d, p[i].n, i * MS);
	keys = 0;
	CHECK_INT(poll_all(rx, 500 * MS, &keys, NULL), 2); /* IDR, P1 */
	media_rtp_rx_stats(rx, &st);
	CHECK_INT(st.frames_dropped, 3);
	CHECK_INT(st.packets_lost, 1);
	CHECK(st.waiting_keyframe);
	size_t len = media_rtp_rx_rtcp_due(rx, 500 * MS, rtcp, sizeof(rtcp));
	struct media_rtcp_info info;
	CHECK(len > 0 && media_rtcp_parse(rtcp, len, &info) == 0);
	CHECK_INT(info.pli_count, 1);
	CHECK(info.pli_media_ssrc == 0x12345678u);
	int m = gop_packets(p, &s, (uint16_t)(100 + n), 90000 + 5 * 3000, 2);
	for (int i = 0; i < m; i++)
		media_rtp_rx_push(rx, p[i].d, p[i].n, 600 * MS);
	keys = 0;
	CHECK_INT(poll_all(rx, 1000 * MS, &keys, NULL), 3);
	CHECK_INT(keys, 1);
	media_rtp_rx_stats(rx, &st);
	CHECK(!st.waiting_keyframe);
	CHECK_INT(st.keyframe_requests, 1);
	media_rtp_rx_free(rx);
	free(p);
}

int main(void)
{
	test_sps();
	test_avcc();
	test_depacketize();
	test_gap_before_params();
	test_sprop();
	test_rx_reorder_and_loss();
	return check_exit();
}
