/* media_h264: SPS/PPS/slice header fields, avcC records, AVCC access units. */
#include "media_h264.h"

#include <string.h>

/* A bit reader over a NAL unit's payload that drops emulation prevention
 * bytes (the 03 of 00 00 03) as it goes. Reading past the end sets 'bad'
 * and yields zeros, so a parser checks 'bad' once at the end of a field
 * group. */
struct bits {
	const uint8_t *p;
	size_t len, pos;  /* byte position in p */
	int zeros;        /* zero bytes just read */
	uint8_t cur;
	int left;         /* bits left in cur */
	bool bad;
};

static void bits_init(struct bits *b, const uint8_t *p, size_t len)
{
	memset(b, 0, sizeof(*b));
	b->p = p;
	b->len = len;
}

static int bits_u1(struct bits *b)
{
	if (b->left == 0) {
		if (b->pos < b->len && b->zeros >= 2 && b->p[b->pos] == 3) {
			b->pos++;
			b->zeros = 0;
		}
		if (b->pos >= b->len) {
			b->bad = true;
			return 0;
		}
		b->cur = b->p[b->pos++];
		b->zeros = b->cur == 0 ? b->zeros + 1 : 0;
		b->left = 8;
	}
	b->left--;
	return (b->cur >> b->left) & 1;
}

static uint32_t bits_u(struct bits *b, int n)
{
	uint32_t v = 0;

	while (n-- > 0)
		v = (v << 1) | (uint32_t)bits_u1(b);
	return v;
}

/* ue(v), 9.1: leading zeros, a one, as many bits again. Values over 2^31
 * are not used by any field read here: they mark the stream bad. */
static uint32_t bits_ue(struct bits *b)
{
	int zeros = 0;

	while (!b->bad && bits_u1(b) == 0) {
		if (++zeros > 31) {
			b->bad = true;
			return 0;
		}
	}
	if (b->bad)
		return 0;
	return ((1u << zeros) - 1) + bits_u(b, zeros);
}

static int32_t bits_se(struct bits *b)
{
	uint32_t k = bits_ue(b);

	return (k & 1) ? (int32_t)((k + 1) / 2) : -(int32_t)(k / 2);
}

/* scaling_list() of 7.3.2.1.1.1, read only to be skipped. */
static void bits_skip_scaling_list(struct bits *b, int size)
{
	int last = 8, next = 8;

	for (int j = 0; j < size && !b->bad; j++) {
		if (next != 0) {
			int32_t delta = bits_se(b);

			if (delta < -128 || delta > 127) {
				b->bad = true;
				return;
			}
			next = (last + delta + 256) % 256;
		}
		last = next == 0 ? last : next;
	}
}

static bool sps_high_profile(int profile)
{
	switch (profile) {
	case 100: case 110: case 122: case 244: case 44: case 83: case 86:
	case 118: case 128: case 138: case 139: case 134: case 135:
		return true;
	}
	return false;
}

int media_h264_sps_parse(const uint8_t *nal, size_t len, struct media_h264_sps *s)
{
	struct bits b;
	uint32_t v;

	memset(s, 0, sizeof(*s));
	if (!nal || len < 4 || media_h264_nal_type(nal[0]) != MEDIA_H264_NAL_SPS)
		return -1;
	bits_init(&b, nal + 1, len - 1);
	s->profile_idc = (int)bits_u(&b, 8);
	s->constraint_flags = (int)bits_u(&b, 8);
	s->level_idc = (int)bits_u(&b, 8);
	v = bits_ue(&b);
	if (v > 31)
		return -1;
	s->id = (int)v;
	s->chroma_format_idc = 1;
	s->bit_depth_luma = s->bit_depth_chroma = 8;
	if (sps_high_profile(s->profile_idc)) {
		v = bits_ue(&b);
		if (v > 3)
			return -1;
		s->chroma_format_idc = (int)v;
		if (v == 3)
			s->separate_colour_plane = bits_u1(&b);
		v = bits_ue(&b);
		if (v > 6)
			return -1;
		s->bit_depth_luma = 8 + (int)v;
		v = bits_ue(&b);
		if (v > 6)
			return -1;
		s->bit_depth_chroma = 8 + (int)v;
		bits_u1(&b); /* qpprime_y_zero_transform_bypass_flag */
		if (bits_u1(&b)) { /* seq_scaling_matrix_present_flag */
			int lists = s->chroma_format_idc != 3 ? 8 : 12;

			for (int i = 0; i < lists && !b.bad; i++)
				if (bits_u1(&b))
					bits_skip_scaling_list(&b, i < 6 ? 16 : 64);
		}
	}
	v = bits_ue(&b);
	if (v > 12)
		return -1;
	s->log2_max_frame_num = (int)v + 4;
	v = bits_ue(&b); /* pic_order_cnt_type */
	if (v == 0) {
		if (bits_ue(&b) > 12)
			return -1;
	} else if (v == 1) {
		uint32_t cycle;

		bits_u1(&b);
		bits_se(&b);
		bits_se(&b);
		cycle = bits_ue(&b);
		if (cycle > 255)
			return -1;
		for (uint32_t i = 0; i < cycle && !b.bad; i++)
			bits_se(&b);
	} else if (v != 2) {
		return -1;
	}
	bits_ue(&b); /* max_num_ref_frames */
	bits_u1(&b); /* gaps_in_frame_num_value_allowed_flag */
	uint32_t w_mbs = bits_ue(&b) + 1, h_units = bits_ue(&b) + 1;
	s->frame_mbs_only = bits_u1(&b);
	if (!s->frame_mbs_only)
		bits_u1(&b); /* mb_adaptive_frame_field_flag */
	bits_u1(&b); /* direct_8x8_inference_flag */
	uint32_t crop[4] = { 0, 0, 0, 0 };
	if (bits_u1(&b))
		for (int i = 0; i < 4; i++)
			crop[i] = bits_ue(&b);
	if (b.bad || w_mbs > 1024 || h_units > 1024)
		return -1;
	s->coded_width = (int)w_mbs * 16;
	s->coded_height = (int)h_units * 16 * (s->frame_mbs_only ? 1 : 2);
	if (s->coded_height > 16384)
		return -1;
	/* 7.4.2.1.1: the crop unit follows the chroma subsampling. */
	int chroma_array = s->separate_colour_plane ? 0 : s->chroma_format_idc;
	int unit_x = chroma_array == 0 || chroma_array == 3 ? 1 : 2;
	int unit_y = (chroma_array == 1 ? 2 : 1) * (s->frame_mbs_only ? 1 : 2);
	for (int i = 0; i < 4; i++)
		if (crop[i] > 16384)
			return -1;
	s->crop_left = (int)crop[0] * unit_x;
	s->crop_right = (int)crop[1] * unit_x;
	s->crop_top = (int)crop[2] * unit_y;
	s->crop_bottom = (int)crop[3] * unit_y;
	s->width = s->coded_width - s->crop_left - s->crop_right;
	s->height = s->coded_height - s->crop_top - s->crop_bottom;
	if (s->width <= 0 || s->height <= 0)
		return -1;
	return 0;
}

int media_h264_pps_ids(const uint8_t *nal, size_t len, int *pps_id, int *sps_id)
{
	struct bits b;
	uint32_t p, s;

	if (!nal || len < 2 || media_h264_nal_type(nal[0]) != MEDIA_H264_NAL_PPS)
		return -1;
	bits_init(&b, nal + 1, len - 1);
	p = bits_ue(&b);
	s = bits_ue(&b);
	if (b.bad || p > 255 || s > 31)
		return -1;
	*pps_id = (int)p;
	*sps_id = (int)s;
	return 0;
}

static bool is_slice(const uint8_t *nal, size_t len)
{
	int t;

	if (!nal || len < 2)
		return false;
	t = media_h264_nal_type(nal[0]);
	return t == MEDIA_H264_NAL_SLICE || t == MEDIA_H264_NAL_IDR;
}

int media_h264_slice_ids(const uint8_t *nal, size_t len, int *first_mb, int *pps_id)
{
	struct bits b;
	uint32_t mb, type, pps;

	if (!is_slice(nal, len))
		return -1;
	bits_init(&b, nal + 1, len - 1);
	mb = bits_ue(&b);
	type = bits_ue(&b);
	pps = bits_ue(&b);
	if (b.bad || type > 9 || pps > 255 || mb > 1024 * 1024)
		return -1;
	*first_mb = (int)mb;
	*pps_id = (int)pps;
	return 0;
}

int media_h264_slice_frame_num(const uint8_t *nal, size_t len, const struct media_h264_sps *sps)
{
	struct bits b;
	uint32_t fn;

	if (!is_slice(nal, len) || !sps)
		return -1;
	bits_init(&b, nal + 1, len - 1);
	bits_ue(&b);
	bits_ue(&b);
	bits_ue(&b);
	if (sps->separate_colour_plane)
		bits_u(&b, 2);
	fn = bits_u(&b, sps->log2_max_frame_num);
	return b.bad ? -1 : (int)fn;
}

size_t media_h264_avcc_build(const uint8_t *sps, size_t sps_len, const uint8_t *pps, size_t pps_len,
			     uint8_t *out, size_t cap)
{
	struct media_h264_sps s;
	bool high;
	size_t n = 0, need;

	if (media_h264_sps_parse(sps, sps_len, &s) < 0 || !pps || pps_len < 2 || sps_len > 0xffff ||
	    pps_len > 0xffff || media_h264_nal_type(pps[0]) != MEDIA_H264_NAL_PPS)
		return 0;
	high = s.profile_idc == 100 || s.profile_idc == 110 || s.profile_idc == 122 || s.profile_idc == 144;
	need = 11 + sps_len + pps_len + (high ? 4 : 0);
	if (!out || cap < need)
		return 0;
	out[n++] = 1;                          /* configurationVersion */
	out[n++] = (uint8_t)s.profile_idc;     /* AVCProfileIndication */
	out[n++] = (uint8_t)s.constraint_flags; /* profile_compatibility */
	out[n++] = (uint8_t)s.level_idc;       /* AVCLevelIndication */
	out[n++] = 0xfc | 3;                   /* lengthSizeMinusOne: 4-byte lengths */
	out[n++] = 0xe0 | 1;                   /* numOfSequenceParameterSets */
	out[n++] = (uint8_t)(sps_len >> 8);
	out[n++] = (uint8_t)sps_len;
	memcpy(out + n, sps, sps_len);
	n += sps_len;
	out[n++] = 1;                          /* numOfPictureParameterSets */
	out[n++] = (uint8_t)(pps_len >> 8);
	out[n++] = (uint8_t)pps_len;
	memcpy(out + n, pps, pps_len);
	n += pps_len;
	if (high) {
		out[n++] = (uint8_t)(0xfc | (s.chroma_format_idc & 3));
		out[n++] = (uint8_t)(0xf8 | ((s.bit_depth_luma - 8) & 7));
		out[n++] = (uint8_t)(0xf8 | ((s.bit_depth_chroma - 8) & 7));
		out[n++] = 0;                  /* numOfSequenceParameterSetExt */
	}
	return n;
}

int media_h264_avcc_next(const uint8_t *au, size_t len, size_t *pos, const uint8_t **nal, size_t *nal_len)
{
	size_t n;

	if (*pos >= len)
		return 0;
	if (len - *pos < 4)
		return -1;
	n = ((size_t)au[*pos] << 24) | ((size_t)au[*pos + 1] << 16) | ((size_t)au[*pos + 2] << 8) | au[*pos + 3];
	if (n == 0 || n > len - *pos - 4)
		return -1;
	*nal = au + *pos + 4;
	*nal_len = n;
	*pos += 4 + n;
	return 1;
}

int media_h264_avcc_scan(const uint8_t *au, size_t len, bool *idr, const uint8_t **sps, size_t *sps_len,
			 const uint8_t **pps, size_t *pps_len)
{
	const uint8_t *nal;
	size_t pos = 0, n;
	int r;

	*idr = false;
	*sps = *pps = NULL;
	*sps_len = *pps_len = 0;
	while ((r = media_h264_avcc_next(au, len, &pos, &nal, &n)) == 1) {
		int t = media_h264_nal_type(nal[0]);

		if (t == MEDIA_H264_NAL_IDR)
			*idr = true;
		else if (t == MEDIA_H264_NAL_SPS && !*sps) {
			*sps = nal;
			*sps_len = n;
		} else if (t == MEDIA_H264_NAL_PPS && !*pps) {
			*pps = nal;
			*pps_len = n;
		}
	}
	return r < 0 ? -1 : 0;
}
