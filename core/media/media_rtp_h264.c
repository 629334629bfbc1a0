/* media_rtp_h264: RFC 6184 depacketizer (packetization-mode 1) into AVCC access units. */
#include "media_rtp.h"

#include <stdlib.h>
#include <string.h>

#include "common_log.h"
#include "crypto.h"
#include "media_h264.h"

static struct log_handle log_h264 = LOG_HANDLE("media/rtp_h264");

#define H264_STAP_A 24
#define H264_STAP_B 25
#define H264_MTAP16 26
#define H264_MTAP24 27
#define H264_FU_A 28
#define H264_FU_B 29
#define H264_READY_MAX 4
#define H264_MAX_SPS 32
#define H264_MAX_PPS 256

struct h264_param {
	uint8_t *data;  /* the NAL unit, header included; NULL: none */
	size_t len;
	int sps_id;     /* PPS: the SPS it refers to */
	struct media_h264_sps sps; /* SPS: what it says */
};

struct media_rtp_h264 {
	size_t max_au;
	uint8_t *au;           /* the access unit being assembled, AVCC */
	size_t au_len, au_cap;

	bool cur_active;       /* an access unit is being assembled */
	bool cur_bad;          /* something of it is missing */
	bool cur_gap;          /* packets were lost just before it */
	bool carry_gap;        /* ... and it held no picture: the next one inherits the gap */
	bool cur_vcl;          /* a slice came */
	bool cur_ref;          /* a slice with nal_ref_idc != 0 came */
	bool cur_idr;
	bool cur_first_ok;     /* its first slice starts at macroblock 0 */
	int cur_pps;           /* pic_parameter_set_id of its first slice */
	int cur_frame_num;     /* of its first slice, -1 unknown */
	int64_t cur_ts, cur_arrival;
	bool fu_active;        /* inside a fragmented NAL unit */
	size_t fu_start;       /* where its length field is in 'au' */

	bool waiting_key;
	bool have_last;        /* frame_num of the last access unit handed out */
	int last_frame_num;
	bool last_ref;
	int last_log2_max_fn;

	struct h264_param sps[H264_MAX_SPS];
	struct h264_param pps[H264_MAX_PPS];

	struct media_rtp_h264_au ready[H264_READY_MAX];
	size_t ready_head, ready_count;
	bool warned_unsupported;
	struct media_rtp_h264_stats st;
};

struct media_rtp_h264 *media_rtp_h264_new(size_t max_au_bytes)
{
	struct media_rtp_h264 *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->max_au = max_au_bytes ? max_au_bytes : 4u << 20;
	h->waiting_key = true;
	return h;
}

static void h264_param_clear(struct h264_param *p)
{
	free(p->data);
	p->data = NULL;
	p->len = 0;
}

void media_rtp_h264_free(struct media_rtp_h264 *h)
{
	if (!h)
		return;
	while (h->ready_count) {
		buf_unref(h->ready[h->ready_head].data);
		h->ready_head = (h->ready_head + 1) % H264_READY_MAX;
		h->ready_count--;
	}
	for (int i = 0; i < H264_MAX_SPS; i++)
		h264_param_clear(&h->sps[i]);
	for (int i = 0; i < H264_MAX_PPS; i++)
		h264_param_clear(&h->pps[i]);
	free(h->au);
	free(h);
}

static int h264_param_set(struct h264_param *p, const uint8_t *nal, size_t len)
{
	uint8_t *copy;

	if (p->data && p->len == len && memcmp(p->data, nal, len) == 0)
		return 0;
	copy = malloc(len);
	if (!copy)
		return -1;
	memcpy(copy, nal, len);
	free(p->data);
	p->data = copy;
	p->len = len;
	return 0;
}

/* Keeps an SPS or PPS by its id. Returns 0, or -1 when it does not parse. */
static int h264_take_param(struct media_rtp_h264 *h, const uint8_t *nal, size_t len)
{
	int t = media_h264_nal_type(nal[0]);

	if (t == MEDIA_H264_NAL_SPS) {
		struct media_h264_sps s;

		if (media_h264_sps_parse(nal, len, &s) < 0 || h264_param_set(&h->sps[s.id], nal, len) < 0)
			return -1;
		h->sps[s.id].sps = s;
	} else if (t == MEDIA_H264_NAL_PPS) {
		int pps_id, sps_id;

		if (media_h264_pps_ids(nal, len, &pps_id, &sps_id) < 0 || h264_param_set(&h->pps[pps_id], nal, len) < 0)
			return -1;
		h->pps[pps_id].sps_id = sps_id;
	} else {
		return -1;
	}
	h->st.parameter_sets++;
	return 0;
}

int media_rtp_h264_set_sprop(struct media_rtp_h264 *h, const char *sprop)
{
	int taken = 0, rc = 0;

	while (sprop && *sprop) {
		size_t n = strcspn(sprop, ",");
		size_t len = 0;
		uint8_t *nal = n ? crypto_base64_decode(sprop, n, &len) : NULL;

		if (!nal || len < 2 || h264_take_param(h, nal, len) < 0)
			rc = -1;
		else
			taken++;
		free(nal);
		sprop += n;
		if (*sprop == ',')
			sprop++;
	}
	return rc < 0 ? -1 : taken;
}

static const struct media_h264_sps *h264_sps_of_pps(const struct media_rtp_h264 *h, int pps_id)
{
	if (pps_id < 0 || pps_id >= H264_MAX_PPS || !h->pps[pps_id].data)
		return NULL;
	int sps_id = h->pps[pps_id].sps_id;
	return h->sps[sps_id].data ? &h->sps[sps_id].sps : NULL;
}

static void h264_wait_key(struct media_rtp_h264 *h)
{
	if (!h->waiting_key)
		LOG_DEBUG(&log_h264, "reference lost: waiting for an IDR");
	h->waiting_key = true;
}

static void h264_begin(struct media_rtp_h264 *h, int64_t ts, int64_t arrival, bool gap)
{
	h->cur_active = true;
	h->cur_bad = false;
	h->cur_gap = gap || h->carry_gap;
	h->carry_gap = false;
	h->cur_vcl = h->cur_ref = h->cur_idr = h->cur_first_ok = false;
	h->cur_pps = -1;
	h->cur_frame_num = -1;
	h->cur_ts = ts;
	h->cur_arrival = arrival;
	h->fu_active = false;
	h->au_len = 0;
}

/* Makes room for 'n' more bytes of access unit; marks it bad when it would
 * pass the limit. */
static bool h264_reserve(struct media_rtp_h264 *h, size_t n)
{
	if (h->cur_bad)
		return false;
	if (n > h->max_au || h->au_len > h->max_au - n) {
		LOG_DEBUG(&log_h264, "access unit over %zu bytes dropped", h->max_au);
		h->cur_bad = true;
		return false;
	}
	if (h->au_len + n > h->au_cap) {
		size_t cap = h->au_cap ? h->au_cap : 65536;
		uint8_t *p;

		while (cap < h->au_len + n)
			cap *= 2;
		if (cap > h->max_au)
			cap = h->max_au;
		p = realloc(h->au, cap);
		if (!p) {
			h->cur_bad = true;
			return false;
		}
		h->au = p;
		h->au_cap = cap;
	}
	return true;
}

static void wr32(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Looks at a whole NAL unit that ends the access unit buffer (starting at
 * 'start', its length field): keeps parameter sets, notes slices, leaves
 * out delimiters and filler. */
static void h264_nal_done(struct media_rtp_h264 *h, size_t start)
{
	const uint8_t *nal = h->au + start + 4;
	size_t len = h->au_len - start - 4;
	int t;

	if (len == 0) {
		h->au_len = start;
		h->cur_bad = true;
		h->st.packets_malformed++;
		return;
	}
	wr32(h->au + start, len);
	t = media_h264_nal_type(nal[0]);
	if (nal[0] & 0x80) { /* forbidden_zero_bit: damaged on the way */
		h->st.packets_malformed++;
		h->cur_bad = true;
	}
	switch (t) {
	case MEDIA_H264_NAL_SPS:
	case MEDIA_H264_NAL_PPS:
		if (h264_take_param(h, nal, len) < 0)
			h->st.packets_malformed++;
		break;
	case MEDIA_H264_NAL_AUD:
	case MEDIA_H264_NAL_FILLER:
		h->au_len = start;
		break;
	case MEDIA_H264_NAL_SLICE:
	case MEDIA_H264_NAL_IDR:
		if (!h->cur_vcl) {
			int first_mb, pps_id;

			if (media_h264_slice_ids(nal, len, &first_mb, &pps_id) == 0) {
				const struct media_h264_sps *s = h264_sps_of_pps(h, pps_id);

				h->cur_first_ok = first_mb == 0;
				h->cur_pps = pps_id;
				h->cur_frame_num = s ? media_h264_slice_frame_num(nal, len, s) : -1;
			}
		}
		h->cur_vcl = true;
		h->cur_ref |= (nal[0] & 0x60) != 0;
		h->cur_idr |= t == MEDIA_H264_NAL_IDR;
		break;
	default:
		break;
	}
}

/* Appends one whole NAL unit. */
static void h264_add_nal(struct media_rtp_h264 *h, const uint8_t *nal, size_t len)
{
	size_t start = h->au_len;

	if (!h264_reserve(h, 4 + len)) {
		/* The access unit is lost, its parameter sets need not be. */
		int t = media_h264_nal_type(nal[0]);
		if ((t == MEDIA_H264_NAL_SPS || t == MEDIA_H264_NAL_PPS) && h264_take_param(h, nal, len) < 0)
			h->st.packets_malformed++;
		return;
	}
	memcpy(h->au + start + 4, nal, len);
	h->au_len += 4 + len;
	h264_nal_done(h, start);
}

/* The access unit ends: keep it or drop it, see media_rtp.h. 'tail_ok':
 * its last packet is known to have come (marker, or the next timestamp
 * came without a loss before it). */
static void h264_finish(struct media_rtp_h264 *h, bool tail_ok)
{
	struct media_rtp_h264_au au;
	const struct media_h264_sps *sps = NULL;
	const struct h264_param *need[2] = { NULL, NULL };
	size_t extra = 0, off = 0;

	h->cur_active = false;
	if (h->fu_active) {
		h->fu_active = false;
		h->cur_bad = true;
	}
	if (!h->cur_vcl && !h->cur_bad && tail_ok) {
		h->carry_gap = h->cur_gap; /* parameter sets or SEI on a timestamp of their own */
		return;
	}
	if (h->cur_bad || !tail_ok || !h->cur_vcl || !h->cur_first_ok) {
		h->st.dropped_incomplete++;
		if (h->cur_ref || !h->cur_vcl)
			h264_wait_key(h);
		return;
	}
	if (h->cur_gap && !h->cur_idr) {
		/* Only non-reference pictures (or non-VCL units of this one) may
		 * have been among the lost packets: frame_num tells. */
		int expect = h->have_last ? (h->last_ref ? (h->last_frame_num + 1) % (1 << h->last_log2_max_fn) :
							    h->last_frame_num) : -2;
		if (h->cur_frame_num != expect) {
			h->st.dropped_incomplete++;
			if (h->cur_ref)
				h264_wait_key(h);
			return;
		}
	}
	if (h->waiting_key && !h->cur_idr) {
		h->st.dropped_waiting++;
		return;
	}
	sps = h264_sps_of_pps(h, h->cur_pps);
	if (h->cur_idr) {
		/* The SPS and PPS in force go in front unless the AU has them. */
		bool have_sps = false, have_pps = false;
		const uint8_t *nal;
		size_t pos = 0, n;

		if (!sps) {
			h->st.dropped_no_params++;
			LOG_DEBUG(&log_h264, "IDR without its SPS/PPS (pps %d) dropped", h->cur_pps);
			h264_wait_key(h);
			return;
		}
		while (media_h264_avcc_next(h->au, h->au_len, &pos, &nal, &n) == 1) {
			int t = media_h264_nal_type(nal[0]);
			int pid, sid;

			if (t == MEDIA_H264_NAL_SPS && n == h->sps[h->pps[h->cur_pps].sps_id].len &&
			    memcmp(nal, h->sps[h->pps[h->cur_pps].sps_id].data, n) == 0)
				have_sps = true;
			if (t == MEDIA_H264_NAL_PPS && media_h264_pps_ids(nal, n, &pid, &sid) == 0 && pid == h->cur_pps)
				have_pps = true;
		}
		if (!have_sps)
			need[0] = &h->sps[h->pps[h->cur_pps].sps_id];
		if (!have_pps)
			need[1] = &h->pps[h->cur_pps];
		for (int i = 0; i < 2; i++)
			if (need[i])
				extra += 4 + need[i]->len;
	}
	memset(&au, 0, sizeof(au));
	au.data = buf_new(extra + h->au_len);
	if (!au.data) {
		h->st.dropped_incomplete++;
		h264_wait_key(h);
		return;
	}
	for (int i = 0; i < 2; i++) {
		if (!need[i])
			continue;
		wr32(au.data->data + off, need[i]->len);
		memcpy(au.data->data + off + 4, need[i]->data, need[i]->len);
		off += 4 + need[i]->len;
	}
	memcpy(au.data->data + off, h->au, h->au_len);
	au.ext_ts = h->cur_ts;
	au.arrival_ns = h->cur_arrival;
	au.keyframe = h->cur_idr;
	if (h->cur_idr) {
		au.width = sps->width;
		au.height = sps->height;
		h->waiting_key = false;
		h->st.keyframes++;
	}
	h->have_last = h->cur_frame_num >= 0 && sps;
	h->last_frame_num = h->cur_frame_num;
	h->last_ref = h->cur_ref;
	h->last_log2_max_fn = sps ? sps->log2_max_frame_num : 4;
	if (h->ready_count == H264_READY_MAX) {
		/* Nobody polls: the oldest one goes (and the references with it). */
		buf_unref(h->ready[h->ready_head].data);
		h->ready_head = (h->ready_head + 1) % H264_READY_MAX;
		h->ready_count--;
		h->st.dropped_incomplete++;
		h264_wait_key(h);
	}
	h->ready[(h->ready_head + h->ready_count) % H264_READY_MAX] = au;
	h->ready_count++;
	h->st.access_units++;
}

static void h264_unsupported(struct media_rtp_h264 *h, int type)
{
	h->st.packets_unsupported++;
	h->cur_bad = true;
	if (!h->warned_unsupported) {
		h->warned_unsupported = true;
		LOG_WARN(&log_h264, "H.264 packet type %d is not packetization-mode 1 (single NAL, STAP-A, "
			 "FU-A): counted and dropped with its access unit", type);
	}
}

void media_rtp_h264_push(struct media_rtp_h264 *h, const uint8_t *p, size_t len, int64_t ext_ts, bool marker,
			 uint32_t lost_before, int64_t arrival_ns)
{
	int type;

	if (h->cur_active && ext_ts != h->cur_ts)
		h264_finish(h, lost_before == 0);
	if (!h->cur_active)
		h264_begin(h, ext_ts, arrival_ns, lost_before != 0);
	else if (lost_before)
		h->cur_bad = true;
	if (!p || len < 1) {
		h->st.packets_malformed++;
		h->cur_bad = true;
		goto done;
	}
	type = media_h264_nal_type(p[0]);
	if (type != H264_FU_A && h->fu_active) {
		h->fu_active = false; /* the fragmented unit never ended */
		h->cur_bad = true;
	}
	if (type >= 1 && type <= 23) {
		h264_add_nal(h, p, len);
	} else if (type == H264_STAP_A) {
		size_t off = 1;

		if (len < 4) {
			h->st.packets_malformed++;
			h->cur_bad = true;
		}
		while (off < len && len >= 4) {
			size_t n;

			if (len - off < 2 || (n = ((size_t)p[off] << 8) | p[off + 1]) == 0 || n > len - off - 2) {
				h->st.packets_malformed++;
				h->cur_bad = true;
				break;
			}
			h264_add_nal(h, p + off + 2, n);
			off += 2 + n;
		}
	} else if (type == H264_FU_A) {
		bool start, end;

		if (len < 3) {
			h->st.packets_malformed++;
			h->cur_bad = true;
			goto done;
		}
		start = (p[1] & 0x80) != 0;
		end = (p[1] & 0x40) != 0;
		if (start) {
			if (h->fu_active)
				h->cur_bad = true; /* the previous one never ended */
			h->fu_active = false;
			if (h264_reserve(h, 5)) {
				h->fu_start = h->au_len;
				h->au[h->au_len + 4] = (uint8_t)((p[0] & 0xe0) | (p[1] & 0x1f));
				h->au_len += 5;
				h->fu_active = true;
			}
		} else if (!h->fu_active) {
			h->cur_bad = true; /* its start was lost */
			goto done;
		}
		if (h->fu_active && h264_reserve(h, len - 2)) {
			memcpy(h->au + h->au_len, p + 2, len - 2);
			h->au_len += len - 2;
		} else {
			h->fu_active = false;
		}
		if (end && h->fu_active) {
			h->fu_active = false;
			h264_nal_done(h, h->fu_start);
		}
	} else {
		/* STAP-B, MTAP16, MTAP24, FU-B (interleaved mode), 0, 30, 31 */
		h264_unsupported(h, type);
	}
done:
	if (marker)
		h264_finish(h, true);
}

int media_rtp_h264_pop(struct media_rtp_h264 *h, struct media_rtp_h264_au *out)
{
	if (!h->ready_count)
		return 0;
	*out = h->ready[h->ready_head];
	h->ready_head = (h->ready_head + 1) % H264_READY_MAX;
	h->ready_count--;
	return 1;
}

void media_rtp_h264_restart(struct media_rtp_h264 *h)
{
	if (h->cur_active && h->cur_vcl)
		h->st.dropped_incomplete++;
	h->cur_active = false;
	h->fu_active = false;
	h->au_len = 0;
	h->have_last = false;
	h264_wait_key(h);
}

void media_rtp_h264_lost_reference(struct media_rtp_h264 *h)
{
	h264_wait_key(h);
}

bool media_rtp_h264_waiting_key(const struct media_rtp_h264 *h)
{
	return h->waiting_key;
}

void media_rtp_h264_stats(const struct media_rtp_h264 *h, struct media_rtp_h264_stats *st)
{
	*st = h->st;
}
