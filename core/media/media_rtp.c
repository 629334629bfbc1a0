/* media_rtp: RTP/RTCP, VP8 descriptor and Opus TOC parsing, RTCP feedback building. */
#include "media_rtp.h"

#include <string.h>
#include <sys/socket.h>
#include <time.h>

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

const char *media_rtp_strerror(int err)
{
	switch (err) {
	case MEDIA_RTP_OK: return "ok";
	case MEDIA_RTP_ERR_TRUNCATED: return "truncated packet";
	case MEDIA_RTP_ERR_VERSION: return "not RTP version 2";
	case MEDIA_RTP_ERR_PADDING: return "invalid padding";
	case MEDIA_RTP_ERR_EXTENSION: return "header extension longer than the packet";
	case MEDIA_RTP_ERR_LENGTH: return "RTCP length past the end of the datagram";
	case MEDIA_RTP_ERR_PAYLOAD: return "malformed payload";
	case MEDIA_RTP_ERR_NOMEM: return "out of memory";
	case MEDIA_RTP_ERR_RANGE: return "value out of range";
	}
	return "unknown error";
}

/* The fixed header is 12 bytes, then CC CSRCs, then (X) a 4-byte extension
 * header and its 32-bit words, then the payload, then (P) padding whose last
 * byte counts the padding including itself. */
int media_rtp_parse(const uint8_t *data, size_t len, struct media_rtp_packet *p)
{
	size_t off, end;

	memset(p, 0, sizeof(*p));
	if (!data || len < 12)
		return MEDIA_RTP_ERR_TRUNCATED;
	if ((data[0] >> 6) != 2)
		return MEDIA_RTP_ERR_VERSION;
	p->csrc_count = data[0] & 0x0f;
	p->marker = (data[1] & 0x80) != 0;
	p->payload_type = data[1] & 0x7f;
	p->seq = rd16(data + 2);
	p->timestamp = rd32(data + 4);
	p->ssrc = rd32(data + 8);
	off = 12 + 4u * p->csrc_count;
	if (off > len)
		return MEDIA_RTP_ERR_TRUNCATED;
	for (int i = 0; i < p->csrc_count; i++)
		p->csrc[i] = rd32(data + 12 + 4 * i);
	if (data[0] & 0x10) {
		size_t ext_len;

		if (off + 4 > len)
			return MEDIA_RTP_ERR_TRUNCATED;
		p->has_extension = true;
		p->ext_profile = rd16(data + off);
		ext_len = 4u * rd16(data + off + 2);
		off += 4;
		if (ext_len > len - off)
			return MEDIA_RTP_ERR_EXTENSION;
		p->ext = data + off;
		p->ext_len = ext_len;
		off += ext_len;
	}
	end = len;
	if (data[0] & 0x20) {
		uint8_t pad;

		if (end == off)
			return MEDIA_RTP_ERR_PADDING;
		pad = data[len - 1];
		if (pad == 0 || pad > end - off)
			return MEDIA_RTP_ERR_PADDING;
		p->padding_len = pad;
		end -= pad;
	}
	p->payload = data + off;
	p->payload_len = end - off;
	return MEDIA_RTP_OK;
}

int media_rtp_rtx_unwrap(uint8_t *data, size_t *len, uint8_t apt, uint32_t ssrc)
{
	struct media_rtp_packet p;

	if (media_rtp_parse(data, *len, &p) != MEDIA_RTP_OK || p.payload_len < 2)
		return -1;
	size_t off = (size_t)(p.payload - data);
	uint16_t osn = rd16(p.payload);
	memmove(data + off, data + off + 2, *len - off - 2);
	*len -= 2;
	data[1] = (uint8_t)((data[1] & 0x80) | (apt & 0x7f));
	data[2] = (uint8_t)(osn >> 8);
	data[3] = (uint8_t)osn;
	data[8] = (uint8_t)(ssrc >> 24);
	data[9] = (uint8_t)(ssrc >> 16);
	data[10] = (uint8_t)(ssrc >> 8);
	data[11] = (uint8_t)ssrc;
	return 0;
}

bool media_rtp_is_rtcp(const uint8_t *data, size_t len)
{
	return len >= 2 && data[1] >= 192 && data[1] <= 223;
}

/* Walks the compound packet one RTCP header at a time. Only the parts a
 * receiver acts on are read: the first SR's sender info, BYE, and the
 * feedback messages (which a recorder does not expect, but counts). */
int media_rtcp_parse(const uint8_t *data, size_t len, struct media_rtcp_info *info)
{
	size_t off = 0;

	memset(info, 0, sizeof(*info));
	if (!data || len < 4)
		return MEDIA_RTP_ERR_TRUNCATED;
	while (off < len) {
		const uint8_t *h = data + off;
		size_t plen;
		uint8_t type, count;

		if (len - off < 4)
			return MEDIA_RTP_ERR_TRUNCATED;
		if ((h[0] >> 6) != 2)
			return MEDIA_RTP_ERR_VERSION;
		count = h[0] & 0x1f;
		type = h[1];
		plen = 4u * ((size_t)rd16(h + 2) + 1);
		if (plen > len - off)
			return MEDIA_RTP_ERR_LENGTH;
		if (plen >= 8 && info->packets == 0)
			info->sender_ssrc = rd32(h + 4);
		switch (type) {
		case MEDIA_RTCP_SR:
			if (plen < 28 || plen < 28 + 24u * count)
				return MEDIA_RTP_ERR_TRUNCATED;
			if (!info->has_sr) {
				info->has_sr = true;
				info->sr_ssrc = rd32(h + 4);
				info->sr_ntp = ((uint64_t)rd32(h + 8) << 32) | rd32(h + 12);
				info->sr_rtp_ts = rd32(h + 16);
				info->sr_packet_count = rd32(h + 20);
				info->sr_octet_count = rd32(h + 24);
			}
			break;
		case MEDIA_RTCP_RR:
			if (plen < 8 + 24u * count)
				return MEDIA_RTP_ERR_TRUNCATED;
			break;
		case MEDIA_RTCP_BYE:
			info->has_bye = true;
			break;
		case MEDIA_RTCP_PSFB:
			if (plen < 12)
				return MEDIA_RTP_ERR_TRUNCATED;
			if (count == 1) {
				info->pli_count++;
				info->pli_media_ssrc = rd32(h + 8);
			} else if (count == 4) {
				info->fir_count++;
			}
			break;
		case MEDIA_RTCP_RTPFB:
			if (plen < 12)
				return MEDIA_RTP_ERR_TRUNCATED;
			if (count == 1)
				info->nack_count++;
			break;
		default:
			break;
		}
		info->packets++;
		off += plen;
	}
	return MEDIA_RTP_OK;
}

size_t media_rtcp_build(const struct media_rtcp_feedback *fb, uint8_t *out, size_t cap)
{
	int nack_words = 0;
	for (int i = 0; i < fb->nack_count;) {
		int j = i + 1;
		while (j < fb->nack_count && (uint16_t)(fb->nack[j] - fb->nack[i]) <= 16)
			j++;
		nack_words++;
		i = j;
	}
	size_t need = 8 + (fb->report ? 24 : 0) + (fb->pli ? 12 : 0) + (fb->fir ? 20 : 0) +
		      (nack_words ? 12 + 4 * (size_t)nack_words : 0) + (fb->remb_bps ? 24 : 0);
	size_t off = 0;

	if (cap < need)
		return 0;
	/* RR: V=2, RC, PT=201, length in words minus one, our SSRC. */
	out[0] = (uint8_t)(0x80 | (fb->report ? 1 : 0));
	out[1] = MEDIA_RTCP_RR;
	wr16(out + 2, (uint16_t)((8 + (fb->report ? 24 : 0)) / 4 - 1));
	wr32(out + 4, fb->sender_ssrc);
	off = 8;
	if (fb->report) {
		const struct media_rtcp_report *r = fb->report;
		int32_t lost = r->cumulative_lost;

		if (lost > 0x7fffff)
			lost = 0x7fffff;
		if (lost < -0x800000)
			lost = -0x800000;
		wr32(out + off, r->ssrc);
		wr32(out + off + 4, ((uint32_t)r->fraction_lost << 24) | ((uint32_t)lost & 0xffffff));
		wr32(out + off + 8, r->ext_highest_seq);
		wr32(out + off + 12, r->jitter);
		wr32(out + off + 16, r->lsr);
		wr32(out + off + 20, r->dlsr);
		off += 24;
	}
	if (fb->pli) {
		/* PSFB FMT=1 (PLI), no FCI. */
		out[off] = 0x81;
		out[off + 1] = MEDIA_RTCP_PSFB;
		wr16(out + off + 2, 2);
		wr32(out + off + 4, fb->sender_ssrc);
		wr32(out + off + 8, fb->media_ssrc);
		off += 12;
	}
	if (fb->fir) {
		/* PSFB FMT=4 (FIR): media SSRC 0, FCI = SSRC + sequence + 3 reserved. */
		out[off] = 0x84;
		out[off + 1] = MEDIA_RTCP_PSFB;
		wr16(out + off + 2, 4);
		wr32(out + off + 4, fb->sender_ssrc);
		wr32(out + off + 8, 0);
		wr32(out + off + 12, fb->media_ssrc);
		out[off + 16] = fb->fir_seq;
		out[off + 17] = out[off + 18] = out[off + 19] = 0;
		off += 20;
	}
	if (nack_words) {
		/* RTPFB FMT=1: FCI words of PID + a bitmask of the 16 after it. */
		out[off] = 0x81;
		out[off + 1] = MEDIA_RTCP_RTPFB;
		wr16(out + off + 2, (uint16_t)(2 + nack_words));
		wr32(out + off + 4, fb->sender_ssrc);
		wr32(out + off + 8, fb->media_ssrc);
		off += 12;
		for (int i = 0; i < fb->nack_count;) {
			uint16_t pid = fb->nack[i], blp = 0;
			int j = i + 1;
			while (j < fb->nack_count && (uint16_t)(fb->nack[j] - pid) <= 16) {
				blp |= (uint16_t)(1u << ((uint16_t)(fb->nack[j] - pid) - 1));
				j++;
			}
			wr16(out + off, pid);
			wr16(out + off + 2, blp);
			off += 4;
			i = j;
		}
	}
	if (fb->remb_bps) {
		/* PSFB FMT=15, media SSRC 0, "REMB", 1 SSRC, exponent and an
		 * 18-bit mantissa. */
		uint64_t m = fb->remb_bps;
		unsigned e = 0;
		while (m > 0x3ffff) {
			m >>= 1;
			e++;
		}
		out[off] = 0x8f;
		out[off + 1] = MEDIA_RTCP_PSFB;
		wr16(out + off + 2, 5);
		wr32(out + off + 4, fb->sender_ssrc);
		wr32(out + off + 8, 0);
		memcpy(out + off + 12, "REMB", 4);
		wr32(out + off + 16, (1u << 24) | ((uint32_t)e << 18) | (uint32_t)m);
		wr32(out + off + 20, fb->media_ssrc);
		off += 24;
	}
	return off;
}

#define NTP_UNIX_OFFSET 2208988800LL

int64_t media_rtcp_ntp_to_unix_ns(uint64_t ntp)
{
	int64_t sec = (int64_t)(ntp >> 32) - NTP_UNIX_OFFSET;
	int64_t frac_ns = (int64_t)(((ntp & 0xffffffffULL) * 1000000000ULL) >> 32);

	return sec * 1000000000LL + frac_ns;
}

uint64_t media_rtcp_unix_ns_to_ntp(int64_t ns)
{
	int64_t sec = ns / 1000000000LL;
	int64_t rem = ns % 1000000000LL;

	if (rem < 0) {
		rem += 1000000000LL;
		sec--;
	}
	return ((uint64_t)(sec + NTP_UNIX_OFFSET) << 32) | (((uint64_t)rem << 32) / 1000000000ULL);
}

void media_rtp_unwrap_init(struct media_rtp_unwrap *u, int bits)
{
	u->started = false;
	u->bits = bits;
	u->last = 0;
}

int64_t media_rtp_unwrap(struct media_rtp_unwrap *u, uint32_t value)
{
	int64_t diff;

	if (!u->started) {
		u->started = true;
		u->last = value;
		return u->last;
	}
	if (u->bits == 16) {
		diff = (int16_t)(uint16_t)(value - (uint32_t)u->last);
	} else {
		diff = (int32_t)(value - (uint32_t)u->last);
	}
	/* Only move forward: a reordered older packet must not pull 'last' back
	 * and so shift where the next wrap is detected. */
	if (diff > 0) {
		u->last += diff;
		return u->last;
	}
	return u->last + diff;
}

/* RFC 7741 section 4.2:
 *   X R N S R PID | I L T K RSV | M PictureID (7 or 15) | TL0PICIDX | TID Y KEYIDX */
int media_rtp_vp8_parse_desc(const uint8_t *payload, size_t len, struct media_rtp_vp8_desc *d)
{
	size_t off = 1;

	memset(d, 0, sizeof(*d));
	if (!payload || len < 1)
		return MEDIA_RTP_ERR_TRUNCATED;
	d->non_reference = (payload[0] & 0x20) != 0;
	d->start = (payload[0] & 0x10) != 0;
	d->partition = payload[0] & 0x07;
	if (payload[0] & 0x80) {
		uint8_t x;

		if (off >= len)
			return MEDIA_RTP_ERR_TRUNCATED;
		x = payload[off++];
		if (x & 0x80) {
			if (off >= len)
				return MEDIA_RTP_ERR_TRUNCATED;
			d->has_picture_id = true;
			if (payload[off] & 0x80) {
				if (off + 2 > len)
					return MEDIA_RTP_ERR_TRUNCATED;
				d->picture_id_15 = true;
				d->picture_id = (uint16_t)(((payload[off] & 0x7f) << 8) | payload[off + 1]);
				off += 2;
			} else {
				d->picture_id = payload[off] & 0x7f;
				off += 1;
			}
		}
		if (x & 0x40) {
			if (off >= len)
				return MEDIA_RTP_ERR_TRUNCATED;
			d->has_tl0picidx = true;
			d->tl0picidx = payload[off++];
		}
		if (x & 0x30) {
			if (off >= len)
				return MEDIA_RTP_ERR_TRUNCATED;
			d->has_tid = (x & 0x20) != 0;
			d->has_keyidx = (x & 0x10) != 0;
			d->tid = payload[off] >> 6;
			d->layer_sync = (payload[off] & 0x20) != 0;
			d->keyidx = payload[off] & 0x1f;
			off++;
		}
	}
	if (off >= len)
		return MEDIA_RTP_ERR_TRUNCATED;
	d->size = off;
	return MEDIA_RTP_OK;
}

/* RFC 6386 section 9.1: a 3-byte frame tag whose bit 0 is 0 on keyframes,
 * then (keyframes only) the start code 9d 01 2a and two 16-bit little-endian
 * fields: 14 bits of size and 2 bits of scaling. */
int media_rtp_vp8_frame_info(const uint8_t *frame, size_t len, bool *key, int *width, int *height)
{
	*key = false;
	*width = *height = 0;
	if (!frame || len < 3)
		return MEDIA_RTP_ERR_PAYLOAD;
	if (frame[0] & 0x01)
		return MEDIA_RTP_OK;
	if (len < 10 || frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a)
		return MEDIA_RTP_ERR_PAYLOAD;
	*key = true;
	*width = (frame[6] | (frame[7] << 8)) & 0x3fff;
	*height = (frame[8] | (frame[9] << 8)) & 0x3fff;
	if (*width == 0 || *height == 0)
		return MEDIA_RTP_ERR_PAYLOAD;
	return MEDIA_RTP_OK;
}

/* RFC 6716 section 3.1: config = TOC >> 3 selects mode and frame duration,
 * s = stereo, c = frame count code (0: one, 1 and 2: two, 3: count byte). */
int media_rtp_opus_samples(const uint8_t *packet, size_t len, bool *stereo)
{
	static const int silk[4] = { 480, 960, 1920, 2880 };
	static const int celt[4] = { 120, 240, 480, 960 };
	int config, frame, frames;

	if (!packet || len < 1)
		return MEDIA_RTP_ERR_PAYLOAD;
	config = packet[0] >> 3;
	if (stereo)
		*stereo = (packet[0] & 0x04) != 0;
	if (config < 12)
		frame = silk[config & 3];
	else if (config < 16)
		frame = (config & 1) ? 960 : 480;
	else
		frame = celt[config & 3];
	switch (packet[0] & 0x03) {
	case 0:
		frames = 1;
		break;
	case 1:
		frames = 2;
		if ((len - 1) % 2 != 0)
			return MEDIA_RTP_ERR_PAYLOAD;
		break;
	case 2:
		frames = 2;
		if (len < 2)
			return MEDIA_RTP_ERR_PAYLOAD;
		break;
	default:
		if (len < 2)
			return MEDIA_RTP_ERR_PAYLOAD;
		frames = packet[1] & 0x3f;
		if (frames == 0)
			return MEDIA_RTP_ERR_PAYLOAD;
		break;
	}
	if (frames * frame > 5760)
		return MEDIA_RTP_ERR_PAYLOAD;
	return frames * frame;
}

int64_t media_rtp_arrival_ns(const struct msghdr *h, int64_t now, int64_t real_now)
{
	int64_t at = now;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR((struct msghdr *)h, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec ts;
			memcpy(&ts, CMSG_DATA(c), sizeof(ts));
			at = now - (real_now - ((int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec));
			break;
		}
	}
	return at > now || at < now - 1000000000LL ? now : at;
}
