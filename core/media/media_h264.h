/* media_h264: the facts of an H.264 (ITU-T H.264 / ISO 14496-10) stream a
 * recorder needs without decoding it:
 *   - NAL unit types, and walking an access unit in length-prefixed (AVCC,
 *     4-byte lengths) form, the form Matroska and MP4 store;
 *   - the sequence parameter set (7.3.2.1.1): profile, level, chroma format,
 *     bit depths, frame_num size, and the display size (width and height in
 *     macroblocks minus the frame cropping), scaling lists skipped;
 *   - the ids a picture parameter set and a slice header start with;
 *   - the AVCDecoderConfigurationRecord (avcC, ISO 14496-15 5.3.3.1) that is
 *     a V_MPEG4/ISO/AVC track's CodecPrivate, built from one SPS and one PPS.
 * NAL units passed here start with their 1-byte header and still hold their
 * emulation prevention bytes (00 00 03), as they travel.
 *
 * Uses: libc only. Pure functions, any thread. */
#ifndef EDGEREC_MEDIA_H264_H
#define EDGEREC_MEDIA_H264_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	MEDIA_H264_NAL_SLICE = 1,
	MEDIA_H264_NAL_IDR = 5,
	MEDIA_H264_NAL_SEI = 6,
	MEDIA_H264_NAL_SPS = 7,
	MEDIA_H264_NAL_PPS = 8,
	MEDIA_H264_NAL_AUD = 9,
	MEDIA_H264_NAL_FILLER = 12,
};

static inline int media_h264_nal_type(uint8_t header)
{
	return header & 0x1f;
}

/* What a sequence parameter set says. */
struct media_h264_sps {
	int id;                    /* seq_parameter_set_id, 0..31 */
	int profile_idc;
	int constraint_flags;      /* the byte after profile_idc */
	int level_idc;
	int chroma_format_idc;     /* 1 (4:2:0) unless a high profile says otherwise */
	bool separate_colour_plane;
	int bit_depth_luma, bit_depth_chroma;
	int log2_max_frame_num;    /* 4..16: bits of frame_num in slice headers */
	bool frame_mbs_only;
	int coded_width, coded_height;  /* in whole macroblocks */
	int crop_left, crop_right, crop_top, crop_bottom; /* in pixels */
	int width, height;         /* what is displayed: coded size minus cropping */
};

/* Parses an SPS NAL unit (header byte included). Returns 0, or -1 when it
 * is not an SPS, is cut short, or holds values out of the standard's
 * ranges (ids, frame_num size, a size over 16384 or cropped to nothing). */
int media_h264_sps_parse(const uint8_t *nal, size_t len, struct media_h264_sps *out);

/* The pic_parameter_set_id (0..255) and seq_parameter_set_id (0..31) a PPS
 * NAL unit starts with. Returns 0 or -1. */
int media_h264_pps_ids(const uint8_t *nal, size_t len, int *pps_id, int *sps_id);

/* The start of a slice header (types 1 and 5): first_mb_in_slice and
 * pic_parameter_set_id. Returns 0 or -1. */
int media_h264_slice_ids(const uint8_t *nal, size_t len, int *first_mb, int *pps_id);

/* frame_num of a slice, given the SPS its PPS refers to. Returns it (>= 0)
 * or -1. */
int media_h264_slice_frame_num(const uint8_t *nal, size_t len, const struct media_h264_sps *sps);

/* Writes the avcC record for 'sps' and 'pps' (NAL units, header included)
 * into 'out': version 1, profile, compatibility and level from the SPS,
 * lengthSizeMinusOne 3, one SPS, one PPS, and for the high profiles (100,
 * 110, 122, 144) the chroma format and bit depths. Returns its length, or
 * 0 when the SPS does not parse or 'cap' is too small (11 + both lengths
 * + 4 always suffice). */
size_t media_h264_avcc_build(const uint8_t *sps, size_t sps_len, const uint8_t *pps, size_t pps_len,
			     uint8_t *out, size_t cap);

/* Walks an access unit in AVCC form (each NAL unit after a 4-byte
 * big-endian length). 'pos' starts at 0; each call sets '*nal' and
 * '*nal_len' to the next NAL unit and returns 1, returns 0 at the end, or
 * -1 when a length runs past the end or is 0. */
int media_h264_avcc_next(const uint8_t *au, size_t len, size_t *pos, const uint8_t **nal, size_t *nal_len);

/* What an AVCC access unit holds: an IDR slice ('*idr'), and its first SPS
 * and first PPS (NULL when absent). Returns 0, or -1 when it is malformed. */
int media_h264_avcc_scan(const uint8_t *au, size_t len, bool *idr, const uint8_t **sps, size_t *sps_len,
			 const uint8_t **pps, size_t *pps_len);

#endif
