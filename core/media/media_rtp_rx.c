/* media_rtp_rx: one RTP receive stream: SSRC latch, jitter buffer, VP8/H.264/Opus frames, RTCP feedback.
 *
 * Datagrams go in with media_rtp_rx_push*(); they are parsed, filtered (PT,
 * SSRC), unwrapped and put in the jitter buffer. media_rtp_rx_poll() takes
 * packets out in order and turns them into frames: an Opus packet is a frame;
 * VP8 packets are gathered by timestamp from the S bit to the marker bit;
 * H.264 packets go through the RFC 6184 depacketizer (media_rtp_h264.c),
 * whose access units are the frames and which keeps its own reference chain.
 * Frames are timed by media_rtp_clock. Whatever breaks the VP8 reference
 * chain (a lost packet of a reference frame, a whole frame missing, an SSRC
 * change) drops frames until the next keyframe and raises a keyframe request
 * that media_rtp_rx_rtcp_due() turns into RR + PLI (+ FIR), rate-limited. */
#include "media_rtp.h"

#include <stdlib.h>
#include <string.h>

#include "common_log.h"
#include "common_util.h"

static struct log_handle log_rtp = LOG_HANDLE("media/rtp");

#define RX_READY_MAX 64
/* Packet copies are kept for reuse (up to RX_SPARE_MAX of RX_SPARE_BYTES):
 * a 1200-byte packet is above glibc's per-thread cache, and allocating and
 * freeing one per packet took a quarter of a WHIP recording's source
 * thread. Larger packets are allocated as they come. */
#define RX_SPARE_MAX 32
#define RX_SPARE_BYTES 1536
/* A different SSRC takes over after this many packets in a row, or at once
 * when the current one has been silent this long. */
#define RX_SSRC_SWITCH_PACKETS 4
#define RX_SSRC_SWITCH_SILENCE_NS (300 * 1000000LL)
/* This many late packets in a row mean the sender restarted its sequence. */
#define RX_LATE_RESTART 64

struct media_rtp_rx {
	struct media_rtp_rx_config cfg;
	struct buf *spare[RX_SPARE_MAX];
	int spare_n;
	struct media_rtp_sync *sync;
	struct media_rtp_jb *jb;
	struct media_rtp_unwrap seq_uw, ts_uw;
	struct media_rtp_clock clock;
	int64_t start_ns;

	bool have_ssrc;
	uint32_t ssrc;
	uint32_t cand_ssrc;
	int cand_count;
	int consecutive_late;
	bool pending_loss;   /* the sequence jumped: the next packet follows a loss */

	/* VP8 frame being assembled */
	uint8_t *frame;
	size_t frame_len, frame_cap;
	bool cur_active, cur_bad, cur_nonref, cur_has_pic, cur_pic15;
	int64_t cur_ts, cur_arrival;
	uint16_t cur_pic;
	bool gap_pending;
	bool have_last_pic;
	uint16_t last_pic;
	bool waiting_key;
	int last_w, last_h;
	struct media_rtp_h264 *h264;

	/* frames ready to hand out */
	struct media_rtp_frame ready[RX_READY_MAX];
	size_t ready_head, ready_count;
	size_t ready_bytes;  /* at most 2 x max_frame_bytes */

	/* keyframe requests, NACKs and receiver reports */
	struct media_rtp_nack nack;
	bool kf_wanted;
	int64_t last_rtcp_ns;
	uint8_t fir_seq;

	/* RFC 3550 A.3 / A.8 receiver statistics */
	bool have_base;
	int64_t base_seq, max_seq;
	uint64_t received, expected_prior, received_prior;
	double jitter;
	bool have_transit;
	int64_t last_transit;
	uint32_t lsr;
	int64_t lsr_arrival_ns;

	/* an SR of an SSRC not (yet) followed, e.g. sent before its first RTP */
	bool have_early_sr;
	uint32_t early_sr_ssrc, early_sr_ts;
	uint64_t early_sr_ntp;
	int64_t early_sr_arrival;

	struct media_rtp_rx_stats st;
};

static int64_t ns_to_ticks(int64_t ns, uint32_t rate)
{
	return (ns / 1000000000LL) * rate + (ns % 1000000000LL) * rate / 1000000000LL;
}

struct media_rtp_rx *media_rtp_rx_new(const struct media_rtp_rx_config *cfg, struct media_rtp_sync *sync,
				      int64_t now_ns)
{
	struct media_rtp_rx *rx;

	if (!cfg || (cfg->codec != MEDIA_RTP_CODEC_VP8 && cfg->codec != MEDIA_RTP_CODEC_OPUS &&
		     cfg->codec != MEDIA_RTP_CODEC_H264)) {
		LOG_ERROR(&log_rtp, "unknown codec for an RTP stream");
		return NULL;
	}
	rx = calloc(1, sizeof(*rx));
	if (!rx)
		return NULL;
	rx->cfg = *cfg;
	if (!rx->cfg.clock_rate)
		rx->cfg.clock_rate = cfg->codec == MEDIA_RTP_CODEC_OPUS ? 48000 : 90000;
	if (!rx->cfg.jb_slots)
		rx->cfg.jb_slots = 512;
	if (!rx->cfg.jb_latency_ns)
		rx->cfg.jb_latency_ns = 150 * 1000000LL;
	if (rx->cfg.jb_latency_ns < 0)
		rx->cfg.jb_latency_ns = 0;
	if (!rx->cfg.max_frame_bytes)
		rx->cfg.max_frame_bytes = 4u << 20;
	if (!rx->cfg.keyframe_min_interval_ns)
		rx->cfg.keyframe_min_interval_ns = 500 * 1000000LL;
	if (!rx->cfg.rr_interval_ns)
		rx->cfg.rr_interval_ns = 1000 * 1000000LL;
	if (!rx->cfg.stall_timeout_ns)
		rx->cfg.stall_timeout_ns = 5000 * 1000000LL;
	while (!rx->cfg.local_ssrc)
		util_random_bytes(&rx->cfg.local_ssrc, sizeof(rx->cfg.local_ssrc));
	rx->cfg.h264_sprop = NULL;
	rx->sync = sync;
	rx->jb = media_rtp_jb_new(rx->cfg.jb_slots, rx->cfg.jb_latency_ns);
	if (cfg->codec == MEDIA_RTP_CODEC_H264)
		rx->h264 = media_rtp_h264_new(rx->cfg.max_frame_bytes);
	if (!rx->jb || (cfg->codec == MEDIA_RTP_CODEC_H264 && !rx->h264)) {
		media_rtp_jb_free(rx->jb);
		media_rtp_h264_free(rx->h264);
		free(rx);
		return NULL;
	}
	if (rx->h264 && cfg->h264_sprop && media_rtp_h264_set_sprop(rx->h264, cfg->h264_sprop) < 0)
		LOG_WARN(&log_rtp, "sprop-parameter-sets '%s' hold a part that is not an SPS/PPS; "
			 "it is ignored (in-band parameter sets still count)", cfg->h264_sprop);
	media_rtp_unwrap_init(&rx->seq_uw, 16);
	media_rtp_unwrap_init(&rx->ts_uw, 32);
	media_rtp_clock_init(&rx->clock, rx->cfg.clock_rate);
	rx->start_ns = now_ns;
	rx->waiting_key = cfg->codec != MEDIA_RTP_CODEC_OPUS;
	rx->kf_wanted = rx->waiting_key;
	rx->last_rtcp_ns = now_ns - rx->cfg.rr_interval_ns;
	rx->st.first_packet_ns = -1;
	rx->st.first_keyframe_ns = -1;
	rx->st.last_keyframe_ns = -1;
	rx->st.last_keyframe_request_ns = -1;
	rx->st.first_sr_ns = -1;
	return rx;
}

/* A copy of a packet's bytes, in a spare buffer when one is kept. */
static struct buf *rx_packet_copy(struct media_rtp_rx *rx, const uint8_t *data, size_t len)
{
	struct buf *b;

	if (len > RX_SPARE_BYTES)
		return buf_new_copy(data, len);
	b = rx->spare_n ? rx->spare[--rx->spare_n] : buf_new(RX_SPARE_BYTES);
	if (!b)
		return NULL;
	memcpy(b->data, data, len);
	b->size = len;
	return b;
}

/* Drops the rx's reference to a packet copy; the buffer is kept for the
 * next packet when nobody else holds it. */
static void rx_packet_release(struct media_rtp_rx *rx, struct buf *b)
{
	if (b && b->capacity == RX_SPARE_BYTES && rx->spare_n < RX_SPARE_MAX &&
	    __atomic_load_n(&b->refcount, __ATOMIC_ACQUIRE) == 1) {
		rx->spare[rx->spare_n++] = b;
		return;
	}
	buf_unref(b);
}

void media_rtp_rx_free(struct media_rtp_rx *rx)
{
	if (!rx)
		return;
	while (rx->spare_n)
		buf_unref(rx->spare[--rx->spare_n]);
	while (rx->ready_count) {
		buf_unref(rx->ready[rx->ready_head].data);
		rx->ready_head = (rx->ready_head + 1) % RX_READY_MAX;
		rx->ready_count--;
	}
	media_rtp_jb_free(rx->jb);
	media_rtp_h264_free(rx->h264);
	free(rx->frame);
	free(rx);
}

/* Frames wait here until polled; nobody polling must not grow memory, so
 * the count and the bytes are capped and what does not fit is dropped (for
 * VP8 that breaks the references: wait for a keyframe). */
static void vp8_lost_reference(struct media_rtp_rx *rx);

static void rx_enqueue(struct media_rtp_rx *rx, const struct media_rtp_frame *f)
{
	if (rx->ready_count == RX_READY_MAX || rx->ready_bytes + f->data->size > 2 * rx->cfg.max_frame_bytes) {
		buf_unref(f->data);
		rx->st.frames_dropped++;
		rx->st.frames--;
		if (rx->cfg.codec != MEDIA_RTP_CODEC_OPUS)
			vp8_lost_reference(rx);
		return;
	}
	rx->ready[(rx->ready_head + rx->ready_count) % RX_READY_MAX] = *f;
	rx->ready_count++;
	rx->ready_bytes += f->data->size;
}

/* The reference chain is broken: drop until a keyframe, and ask for one. */
static void vp8_lost_reference(struct media_rtp_rx *rx)
{
	if (!rx->waiting_key)
		LOG_DEBUG(&log_rtp, "ssrc %08x: reference lost, waiting for a keyframe", rx->ssrc);
	rx->waiting_key = true;
	rx->kf_wanted = true;
	if (rx->h264)
		media_rtp_h264_lost_reference(rx->h264);
}

/* A video frame is complete: keyframe bookkeeping, timing, hand-out. */
static void rx_video_frame(struct media_rtp_rx *rx, struct buf *data, int64_t ts, int64_t arrival, bool key,
			   int w, int h)
{
	struct media_rtp_frame f;

	memset(&f, 0, sizeof(f));
	f.data = data;
	if (key) {
		rx->waiting_key = false;
		rx->kf_wanted = false;
		rx->st.keyframes++;
		rx->st.last_keyframe_ns = arrival;
		if (rx->st.first_keyframe_ns < 0)
			rx->st.first_keyframe_ns = arrival;
		f.size_changed = (w != rx->last_w || h != rx->last_h) && rx->last_w;
		rx->last_w = w;
		rx->last_h = h;
		f.width = w;
		f.height = h;
	}
	f.keyframe = key;
	f.ext_ts = ts;
	f.ssrc = rx->ssrc;
	f.pts_ns = media_rtp_clock_map(&rx->clock, rx->sync, ts, arrival);
	rx->st.frames++;
	rx_enqueue(rx, &f);
}

static void vp8_finish(struct media_rtp_rx *rx, bool marker_seen)
{
	struct buf *data;
	bool key;
	int w, h;

	rx->cur_active = false;
	if (rx->cur_has_pic) {
		rx->have_last_pic = true;
		rx->last_pic = rx->cur_pic;
	}
	if (!marker_seen || rx->cur_bad) {
		rx->st.frames_dropped++;
		if (!rx->cur_nonref)
			vp8_lost_reference(rx);
		return;
	}
	if (media_rtp_vp8_frame_info(rx->frame, rx->frame_len, &key, &w, &h) < 0) {
		rx->st.frames_dropped++;
		rx->st.packets_malformed++;
		vp8_lost_reference(rx);
		return;
	}
	if (rx->waiting_key && !key) {
		rx->st.frames_dropped++;
		return;
	}
	data = buf_new_copy(rx->frame, rx->frame_len);
	if (!data) {
		rx->st.frames_dropped++;
		vp8_lost_reference(rx);
		return;
	}
	rx_video_frame(rx, data, rx->cur_ts, rx->cur_arrival, key, w, h);
}

/* H.264: the depacketizer keeps the reference chain; the stream follows
 * what it says (waiting for an IDR means asking for a keyframe). */
static void h264_push(struct media_rtp_rx *rx, const struct media_rtp_jb_item *it, int64_t ext_ts)
{
	struct media_rtp_h264_au au;
	bool waiting;

	media_rtp_h264_push(rx->h264, it->pkt.payload, it->pkt.payload_len, ext_ts, it->pkt.marker, it->lost_before,
			    it->arrival_ns);
	while (media_rtp_h264_pop(rx->h264, &au) == 1)
		rx_video_frame(rx, au.data, au.ext_ts, au.arrival_ns, au.keyframe, au.width, au.height);
	waiting = media_rtp_h264_waiting_key(rx->h264);
	if (waiting && !rx->waiting_key)
		LOG_DEBUG(&log_rtp, "ssrc %08x: H.264 reference lost, waiting for an IDR", rx->ssrc);
	if (waiting)
		rx->kf_wanted = true;
	rx->waiting_key = waiting;
}

/* True when 'pic' directly follows 'last' in the 7- or 15-bit PictureID space. */
static bool vp8_pic_follows(uint16_t last, uint16_t pic, bool pic15)
{
	uint16_t mask = pic15 ? 0x7fff : 0x7f;

	return (uint16_t)((last + 1) & mask) == (pic & mask);
}

static void vp8_push(struct media_rtp_rx *rx, const struct media_rtp_jb_item *it, int64_t ext_ts)
{
	struct media_rtp_vp8_desc d;
	const struct media_rtp_packet *p = &it->pkt;
	size_t n;

	if (it->lost_before) {
		if (rx->cur_active)
			rx->cur_bad = true;
		else
			rx->gap_pending = true;
	}
	if (media_rtp_vp8_parse_desc(p->payload, p->payload_len, &d) < 0) {
		rx->st.packets_malformed++;
		if (rx->cur_active)
			rx->cur_bad = true;
		else
			rx->gap_pending = true;
		return;
	}
	if (rx->cur_active && ext_ts != rx->cur_ts)
		vp8_finish(rx, false);
	if (!rx->cur_active) {
		rx->cur_active = true;
		rx->cur_ts = ext_ts;
		rx->cur_arrival = it->arrival_ns;
		rx->frame_len = 0;
		rx->cur_nonref = d.non_reference;
		rx->cur_has_pic = d.has_picture_id;
		rx->cur_pic = d.picture_id;
		rx->cur_pic15 = d.picture_id_15;
		rx->cur_bad = !(d.start && d.partition == 0);
		if (rx->gap_pending) {
			/* Packets went missing between two frames: harmless only when
			 * the PictureIDs show that no frame was among them. */
			rx->gap_pending = false;
			if (!(d.has_picture_id && rx->have_last_pic &&
			      vp8_pic_follows(rx->last_pic, d.picture_id, d.picture_id_15))) {
				rx->st.frames_dropped++;
				vp8_lost_reference(rx);
			}
		}
	}
	n = p->payload_len - d.size;
	if (!rx->cur_bad) {
		if (rx->frame_len + n > rx->cfg.max_frame_bytes) {
			LOG_DEBUG(&log_rtp, "ssrc %08x: frame over %zu bytes dropped", rx->ssrc,
				  rx->cfg.max_frame_bytes);
			rx->cur_bad = true;
		} else {
			if (rx->frame_len + n > rx->frame_cap) {
				size_t cap = rx->frame_cap ? rx->frame_cap : 65536;
				uint8_t *nf;

				while (cap < rx->frame_len + n)
					cap *= 2;
				if (cap > rx->cfg.max_frame_bytes)
					cap = rx->cfg.max_frame_bytes;
				nf = realloc(rx->frame, cap);
				if (!nf) {
					rx->cur_bad = true;
					goto done;
				}
				rx->frame = nf;
				rx->frame_cap = cap;
			}
			memcpy(rx->frame + rx->frame_len, p->payload + d.size, n);
			rx->frame_len += n;
		}
	}
done:
	if (p->marker)
		vp8_finish(rx, true);
}

static void opus_push(struct media_rtp_rx *rx, const struct media_rtp_jb_item *it, int64_t ext_ts)
{
	struct media_rtp_frame f;
	bool stereo = false;
	int samples = media_rtp_opus_samples(it->pkt.payload, it->pkt.payload_len, &stereo);

	if (samples < 0) {
		rx->st.packets_malformed++;
		return;
	}
	memset(&f, 0, sizeof(f));
	f.data = buf_new_copy(it->pkt.payload, it->pkt.payload_len);
	if (!f.data) {
		rx->st.frames_dropped++;
		return;
	}
	f.keyframe = true;
	f.samples = samples;
	f.stereo = stereo;
	f.ext_ts = ext_ts;
	f.ssrc = rx->ssrc;
	f.pts_ns = media_rtp_clock_map(&rx->clock, rx->sync, ext_ts, it->arrival_ns);
	rx->st.frames++;
	rx_enqueue(rx, &f);
}

static void rx_process(struct media_rtp_rx *rx, struct media_rtp_jb_item *it)
{
	int64_t ext_ts = media_rtp_unwrap(&rx->ts_uw, it->pkt.timestamp);

	if (rx->pending_loss) {
		rx->pending_loss = false;
		if (!it->lost_before)
			it->lost_before = 1;
	}
	rx->st.packets_lost += it->lost_before;
	if (rx->cfg.codec == MEDIA_RTP_CODEC_VP8)
		vp8_push(rx, it, ext_ts);
	else if (rx->cfg.codec == MEDIA_RTP_CODEC_H264)
		h264_push(rx, it, ext_ts);
	else
		opus_push(rx, it, ext_ts);
}

/* Releases everything held, even across gaps (before a reset). */
static void rx_drain(struct media_rtp_rx *rx, int64_t now_ns)
{
	struct media_rtp_jb_item it;

	while (media_rtp_jb_pop(rx->jb, now_ns, true, &it) == 1) {
		rx_process(rx, &it);
		rx_packet_release(rx, it.raw);
	}
}

/* A new timeline on the same port: new SSRC, or a restarted sequence. The
 * track continues; its timestamps go on from the arrival time. */
static void rx_restart(struct media_rtp_rx *rx, int64_t now_ns)
{
	rx_drain(rx, now_ns);
	media_rtp_jb_reset(rx->jb);
	media_rtp_nack_reset(&rx->nack);
	media_rtp_unwrap_init(&rx->seq_uw, 16);
	media_rtp_unwrap_init(&rx->ts_uw, 32);
	media_rtp_clock_restart(&rx->clock);
	rx->cur_active = false;
	rx->gap_pending = false;
	rx->have_last_pic = false;
	rx->pending_loss = false;
	rx->consecutive_late = 0;
	rx->have_base = false;
	rx->have_transit = false;
	rx->lsr = 0;
	if (rx->h264)
		media_rtp_h264_restart(rx->h264);
	if (rx->cfg.codec != MEDIA_RTP_CODEC_OPUS) {
		rx->waiting_key = true;
		rx->kf_wanted = true;
	}
}

static void rx_apply_sr(struct media_rtp_rx *rx, uint64_t ntp, uint32_t rtp_ts, int64_t arrival_ns)
{
	int64_t ext = media_rtp_unwrap(&rx->ts_uw, rtp_ts);

	rx->st.sender_reports++;
	if (rx->st.first_sr_ns < 0)
		rx->st.first_sr_ns = arrival_ns;
	media_rtp_clock_on_sr(&rx->clock, ntp, ext);
	rx->lsr = (uint32_t)(ntp >> 16);
	rx->lsr_arrival_ns = arrival_ns;
}

/* Applies a Sender Report that came before the stream followed its SSRC. */
static void rx_apply_early_sr(struct media_rtp_rx *rx)
{
	if (rx->have_early_sr && rx->early_sr_ssrc == rx->ssrc) {
		rx->have_early_sr = false;
		rx_apply_sr(rx, rx->early_sr_ntp, rx->early_sr_ts, rx->early_sr_arrival);
	}
}

/* Which SSRC this stream follows: the configured one, else the first one
 * seen; another one takes over after a few packets in a row, or at once if
 * the current one went quiet (a republish). */
static bool rx_accept_ssrc(struct media_rtp_rx *rx, uint32_t ssrc, int64_t now_ns)
{
	if (rx->cfg.has_ssrc && ssrc != rx->cfg.ssrc)
		return false;
	if (!rx->have_ssrc) {
		rx->have_ssrc = true;
		rx->ssrc = ssrc;
		LOG_DEBUG(&log_rtp, "latched ssrc %08x", ssrc);
		rx_apply_early_sr(rx);
		return true;
	}
	if (ssrc == rx->ssrc) {
		rx->cand_count = 0;
		return true;
	}
	if (rx->cand_ssrc != ssrc || rx->cand_count == 0) {
		rx->cand_ssrc = ssrc;
		rx->cand_count = 0;
	}
	rx->cand_count++;
	if (rx->cand_count >= RX_SSRC_SWITCH_PACKETS || now_ns - rx->st.last_packet_ns >= RX_SSRC_SWITCH_SILENCE_NS) {
		LOG_INFO(&log_rtp, "ssrc changed %08x -> %08x", rx->ssrc, ssrc);
		rx_restart(rx, now_ns);
		rx->ssrc = ssrc;
		rx->cand_count = 0;
		rx->st.ssrc_changes++;
		rx_apply_early_sr(rx);
		return true;
	}
	return false;
}

static void rx_note_arrival(struct media_rtp_rx *rx, const struct media_rtp_packet *p, int64_t ext_seq, int64_t now_ns)
{
	int64_t transit = ns_to_ticks(now_ns, rx->cfg.clock_rate) - (int64_t)p->timestamp;

	if (rx->cfg.nack)
		media_rtp_nack_on_packet(&rx->nack, ext_seq, rx->max_seq, rx->have_base, now_ns);
	if (!rx->have_base) {
		rx->have_base = true;
		rx->base_seq = rx->max_seq = ext_seq;
		rx->received = rx->expected_prior = rx->received_prior = 0;
	}
	if (ext_seq > rx->max_seq)
		rx->max_seq = ext_seq;
	rx->received++;
	if (rx->have_transit) {
		int64_t d = (int32_t)(uint32_t)(transit - rx->last_transit);

		if (d < 0)
			d = -d;
		rx->jitter += ((double)d - rx->jitter) / 16.0;
	}
	rx->have_transit = true;
	rx->last_transit = transit;
}

int media_rtp_rx_push(struct media_rtp_rx *rx, const uint8_t *data, size_t len, int64_t now_ns)
{
	struct media_rtp_packet p;
	struct buf *raw;
	int64_t ext_seq;
	int rc;

	if (len > MEDIA_RTP_MAX_PACKET) {
		rx->st.packets_oversize++;
		return 1;
	}
	if (media_rtp_is_rtcp(data, len))
		return media_rtp_rx_push_rtcp(rx, data, len, now_ns);
	rc = media_rtp_parse(data, len, &p);
	if (rc < 0) {
		rx->st.packets_malformed++;
		return rc;
	}
	if (rx->cfg.payload_type >= 0 && p.payload_type != rx->cfg.payload_type) {
		rx->st.packets_foreign++;
		return 1;
	}
	if (!rx_accept_ssrc(rx, p.ssrc, now_ns)) {
		rx->st.packets_foreign++;
		return 1;
	}
	raw = rx_packet_copy(rx, data, len);
	if (!raw)
		return MEDIA_RTP_ERR_NOMEM;
	media_rtp_parse(raw->data, len, &p);
	ext_seq = media_rtp_unwrap(&rx->seq_uw, p.seq);
	for (;;) {
		struct media_rtp_jb_item it;

		rc = media_rtp_jb_push(rx->jb, raw, &p, ext_seq, now_ns);
		if (rc != MEDIA_RTP_JB_FULL)
			break;
		if (media_rtp_jb_pop(rx->jb, now_ns, true, &it) == 1) {
			rx_process(rx, &it);
			rx_packet_release(rx, it.raw);
			continue;
		}
		/* Nothing held and still too far ahead: the sequence jumped. */
		media_rtp_jb_reset(rx->jb);
		rx->pending_loss = true;
	}
	rx_packet_release(rx, raw);
	if (rc == MEDIA_RTP_JB_DUPLICATE) {
		rx->st.packets_duplicate++;
		return 1;
	}
	if (rc == MEDIA_RTP_JB_LATE) {
		rx->st.packets_late++;
		if (++rx->consecutive_late >= RX_LATE_RESTART) {
			LOG_INFO(&log_rtp, "ssrc %08x: sequence restarted", rx->ssrc);
			rx_restart(rx, now_ns);
			rx->st.ssrc_changes++;
		}
		return 1;
	}
	rx->consecutive_late = 0;
	rx_note_arrival(rx, &p, ext_seq, now_ns);
	rx->st.packets++;
	rx->st.bytes += len;
	if (rx->st.first_packet_ns < 0)
		rx->st.first_packet_ns = now_ns;
	rx->st.last_packet_ns = now_ns;
	return 0;
}

int media_rtp_rx_push_rtcp(struct media_rtp_rx *rx, const uint8_t *data, size_t len, int64_t now_ns)
{
	struct media_rtcp_info info;
	int rc = media_rtcp_parse(data, len, &info);

	if (rc < 0 && !info.has_sr) {
		rx->st.packets_malformed++;
		return rc;
	}
	rx->st.rtcp_packets++;
	if (info.has_sr && rx->have_ssrc && info.sr_ssrc == rx->ssrc) {
		rx_apply_sr(rx, info.sr_ntp, info.sr_rtp_ts, now_ns);
	} else if (info.has_sr && (!rx->cfg.has_ssrc || info.sr_ssrc == rx->cfg.ssrc)) {
		rx->have_early_sr = true;
		rx->early_sr_ssrc = info.sr_ssrc;
		rx->early_sr_ntp = info.sr_ntp;
		rx->early_sr_ts = info.sr_rtp_ts;
		rx->early_sr_arrival = now_ns;
	}
	return 0;
}

int media_rtp_rx_poll(struct media_rtp_rx *rx, int64_t now_ns, struct media_rtp_frame *out)
{
	struct media_rtp_jb_item it;

	for (;;) {
		if (rx->ready_count) {
			*out = rx->ready[rx->ready_head];
			rx->ready_head = (rx->ready_head + 1) % RX_READY_MAX;
			rx->ready_count--;
			rx->ready_bytes -= out->data->size;
			return 1;
		}
		if (media_rtp_jb_pop(rx->jb, now_ns, false, &it) != 1)
			return 0;
		rx_process(rx, &it);
		rx_packet_release(rx, it.raw);
	}
}

void media_rtp_rx_request_keyframe(struct media_rtp_rx *rx)
{
	if (rx->cfg.codec != MEDIA_RTP_CODEC_OPUS)
		rx->kf_wanted = true;
}

static void rx_report(struct media_rtp_rx *rx, int64_t now_ns, struct media_rtcp_report *r)
{
	int64_t expected = rx->max_seq - rx->base_seq + 1;
	int64_t lost = expected - (int64_t)rx->received;
	int64_t expected_interval = expected - (int64_t)rx->expected_prior;
	int64_t received_interval = (int64_t)rx->received - (int64_t)rx->received_prior;
	int64_t lost_interval = expected_interval - received_interval;

	memset(r, 0, sizeof(*r));
	r->ssrc = rx->ssrc;
	rx->expected_prior = (uint64_t)expected;
	rx->received_prior = rx->received;
	if (expected_interval > 0 && lost_interval > 0)
		r->fraction_lost = (uint8_t)((lost_interval << 8) / expected_interval);
	r->cumulative_lost = (int32_t)(lost > 0x7fffff ? 0x7fffff : lost < -0x800000 ? -0x800000 : lost);
	r->ext_highest_seq = (uint32_t)rx->max_seq;
	r->jitter = (uint32_t)rx->jitter;
	if (rx->lsr) {
		r->lsr = rx->lsr;
		r->dlsr = (uint32_t)(((now_ns - rx->lsr_arrival_ns) << 16) / 1000000000LL);
	}
}

size_t media_rtp_rx_rtcp_due(struct media_rtp_rx *rx, int64_t now_ns, uint8_t *out, size_t cap)
{
	struct media_rtcp_feedback fb;
	struct media_rtcp_report rep;
	uint16_t nack[16];
	int n_nack = 0;
	bool pli = false;
	size_t n;

	if (!rx->have_ssrc)
		return 0;
	if (rx->kf_wanted && (rx->st.last_keyframe_request_ns < 0 ||
			      now_ns - rx->st.last_keyframe_request_ns >= rx->cfg.keyframe_min_interval_ns))
		pli = true;
	if (rx->cfg.nack && cap >= MEDIA_RTCP_MAX_FEEDBACK && media_rtp_nack_next(&rx->nack) <= now_ns)
		n_nack = media_rtp_nack_due(&rx->nack, now_ns, rx->cfg.jb_latency_ns, nack, 16);
	if (!pli && !n_nack && now_ns - rx->last_rtcp_ns < rx->cfg.rr_interval_ns)
		return 0;
	memset(&fb, 0, sizeof(fb));
	fb.nack = nack;
	fb.nack_count = n_nack;
	fb.remb_bps = rx->cfg.remb_bps;
	fb.sender_ssrc = rx->cfg.local_ssrc;
	fb.media_ssrc = rx->ssrc;
	if (rx->have_base) {
		rx_report(rx, now_ns, &rep);
		fb.report = &rep;
	}
	fb.pli = pli;
	fb.fir = pli && rx->cfg.send_fir;
	fb.fir_seq = rx->fir_seq;
	n = media_rtcp_build(&fb, out, cap);
	if (!n)
		return 0;
	rx->last_rtcp_ns = now_ns;
	if (pli) {
		if (fb.fir)
			rx->fir_seq++;
		rx->st.keyframe_requests++;
		rx->st.last_keyframe_request_ns = now_ns;
		/* Keep asking while frames are dropped for want of a keyframe;
		 * an explicit request is satisfied by being sent. */
		if (!rx->waiting_key)
			rx->kf_wanted = false;
	}
	return n;
}

int64_t media_rtp_rx_next_wakeup(const struct media_rtp_rx *rx, int64_t now_ns, bool rtcp)
{
	int64_t t = now_ns + rx->cfg.stall_timeout_ns;
	int64_t jb = media_rtp_jb_deadline(rx->jb);

	if (rx->ready_count)
		return now_ns;
	if (jb >= 0 && jb < t)
		t = jb;
	/* RTCP can only be due once the sender's SSRC is known. */
	if (rtcp && rx->have_ssrc) {
		int64_t rr = rx->last_rtcp_ns + rx->cfg.rr_interval_ns;

		if (rr < t)
			t = rr;
		if (rx->cfg.nack && media_rtp_nack_next(&rx->nack) < t)
			t = media_rtp_nack_next(&rx->nack) > now_ns ? media_rtp_nack_next(&rx->nack) : now_ns;
		if (rx->kf_wanted) {
			int64_t k = rx->st.last_keyframe_request_ns < 0 ? now_ns :
				rx->st.last_keyframe_request_ns + rx->cfg.keyframe_min_interval_ns;
			if (k < t)
				t = k;
		}
	}
	return t;
}

bool media_rtp_rx_stalled(const struct media_rtp_rx *rx, int64_t now_ns)
{
	return rx->st.first_packet_ns >= 0 && now_ns - rx->st.last_packet_ns >= rx->cfg.stall_timeout_ns;
}

void media_rtp_rx_stats(const struct media_rtp_rx *rx, struct media_rtp_rx_stats *st)
{
	*st = rx->st;
	st->nack_requested = rx->nack.requested;
	st->nack_recovered = rx->nack.recovered;
	if (rx->h264) {
		struct media_rtp_h264_stats h;

		media_rtp_h264_stats(rx->h264, &h);
		st->frames_dropped += h.dropped_incomplete + h.dropped_waiting + h.dropped_no_params;
		st->packets_malformed += h.packets_malformed;
		st->packets_unsupported = h.packets_unsupported;
	}
	st->start_ns = rx->start_ns;
	st->ssrc = rx->ssrc;
	st->waiting_keyframe = rx->waiting_key;
}
