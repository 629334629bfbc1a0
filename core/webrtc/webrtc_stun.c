/* webrtc_stun: STUN binding requests and responses (see webrtc_stun.h). */
#include "webrtc_stun.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <zlib.h>

#include "crypto_dtls.h"

#define STUN_ATTR_USERNAME 0x0006
#define STUN_ATTR_MESSAGE_INTEGRITY 0x0008
#define STUN_ATTR_XOR_MAPPED_ADDRESS 0x0020
#define STUN_ATTR_PRIORITY 0x0024
#define STUN_ATTR_USE_CANDIDATE 0x0025
#define STUN_ATTR_FINGERPRINT 0x8028
#define STUN_ATTR_ICE_CONTROLLED 0x8029
#define STUN_ATTR_ICE_CONTROLLING 0x802A
#define STUN_FINGERPRINT_XOR 0x5354554eu

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	wr16(p, (uint16_t)(v >> 16));
	wr16(p + 2, (uint16_t)v);
}

static uint32_t stun_crc(const uint8_t *p, size_t len)
{
	return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)len) ^ STUN_FINGERPRINT_XOR;
}

bool webrtc_stun_is(const uint8_t *p, size_t len)
{
	return len >= WEBRTC_STUN_HEADER && p[0] < 4 && rd32(p + 4) == WEBRTC_STUN_MAGIC &&
	       (rd16(p + 2) & 3) == 0 && (size_t)rd16(p + 2) + WEBRTC_STUN_HEADER == len;
}

int webrtc_stun_parse(const uint8_t *p, size_t len, struct webrtc_stun *m)
{
	size_t at = WEBRTC_STUN_HEADER;

	memset(m, 0, sizeof(*m));
	if (!webrtc_stun_is(p, len))
		return -1;
	m->type = rd16(p);
	memcpy(m->txid, p + 8, 12);
	while (at < len) {
		if (len - at < 4)
			return -1;
		uint16_t type = rd16(p + at), alen = rd16(p + at + 2);
		size_t padded = ((size_t)alen + 3) & ~(size_t)3;
		const uint8_t *v = p + at + 4;
		if (padded > len - at - 4)
			return -1;
		if (m->has_fingerprint)
			return -1; /* nothing may follow FINGERPRINT */
		if (m->has_integrity && type != STUN_ATTR_FINGERPRINT)
			return -1;
		switch (type) {
		case STUN_ATTR_USERNAME:
			if (alen >= sizeof(m->username) || memchr(v, 0, alen))
				return -1;
			memcpy(m->username, v, alen);
			m->username[alen] = 0;
			m->has_username = true;
			break;
		case STUN_ATTR_MESSAGE_INTEGRITY:
			if (alen != CRYPTO_SHA1_LEN)
				return -1;
			m->has_integrity = true;
			m->integrity_at = at;
			break;
		case STUN_ATTR_FINGERPRINT:
			if (alen != 4 || at + 8 != len)
				return -1;
			{
				uint8_t hdr[WEBRTC_STUN_HEADER];
				/* The CRC covers the message up to this attribute with
				 * the header's length as sent (it includes FINGERPRINT). */
				memcpy(hdr, p, sizeof(hdr));
				uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), hdr, sizeof(hdr));
				crc = (uint32_t)crc32(crc, p + WEBRTC_STUN_HEADER, (uInt)(at - WEBRTC_STUN_HEADER));
				if ((crc ^ STUN_FINGERPRINT_XOR) != rd32(v))
					return -1;
			}
			m->has_fingerprint = true;
			break;
		case STUN_ATTR_PRIORITY:
			if (alen != 4)
				return -1;
			m->priority = rd32(v);
			break;
		case STUN_ATTR_USE_CANDIDATE:
			m->use_candidate = true;
			break;
		case STUN_ATTR_ICE_CONTROLLING:
			m->controlling = true;
			break;
		case STUN_ATTR_ICE_CONTROLLED:
			m->controlled = true;
			break;
		default:
			break;
		}
		at += 4 + padded;
	}
	return 0;
}

bool webrtc_stun_integrity_ok(const uint8_t *p, size_t len, const struct webrtc_stun *m, const char *key)
{
	uint8_t mac[CRYPTO_SHA1_LEN], hdr[WEBRTC_STUN_HEADER];
	size_t at = m->integrity_at;

	if (!m->has_integrity || at + 4 + CRYPTO_SHA1_LEN > len)
		return false;
	/* The MAC covers the message up to the attribute, with a length that
	 * ends just after it (FINGERPRINT left out). */
	memcpy(hdr, p, sizeof(hdr));
	wr16(hdr + 2, (uint16_t)(at + 4 + CRYPTO_SHA1_LEN - WEBRTC_STUN_HEADER));
	uint8_t buf[2048];
	if (at > sizeof(buf))
		return false;
	memcpy(buf, hdr, sizeof(hdr));
	memcpy(buf + sizeof(hdr), p + sizeof(hdr), at - sizeof(hdr));
	crypto_hmac_sha1(key, strlen(key), buf, at, mac);
	uint8_t diff = 0;
	for (size_t i = 0; i < CRYPTO_SHA1_LEN; i++)
		diff |= (uint8_t)(mac[i] ^ p[at + 4 + i]);
	return diff == 0;
}

size_t webrtc_stun_binding_success(const struct webrtc_stun *req, const struct sockaddr *from, const char *key,
				   uint8_t *out, size_t cap)
{
	size_t at = WEBRTC_STUN_HEADER;
	size_t need = WEBRTC_STUN_HEADER + 4 + 20 + 4 + CRYPTO_SHA1_LEN + 8;

	if (cap < need)
		return 0;
	wr16(out, WEBRTC_STUN_BINDING_SUCCESS);
	wr32(out + 4, WEBRTC_STUN_MAGIC);
	memcpy(out + 8, req->txid, 12);
	/* XOR-MAPPED-ADDRESS */
	wr16(out + at, STUN_ATTR_XOR_MAPPED_ADDRESS);
	if (from->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)from;
		uint32_t a = ntohl(in->sin_addr.s_addr) ^ WEBRTC_STUN_MAGIC;
		wr16(out + at + 2, 8);
		out[at + 4] = 0;
		out[at + 5] = 1;
		wr16(out + at + 6, (uint16_t)(ntohs(in->sin_port) ^ (WEBRTC_STUN_MAGIC >> 16)));
		wr32(out + at + 8, a);
		at += 12;
	} else if (from->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)from;
		wr16(out + at + 2, 20);
		out[at + 4] = 0;
		out[at + 5] = 2;
		wr16(out + at + 6, (uint16_t)(ntohs(in6->sin6_port) ^ (WEBRTC_STUN_MAGIC >> 16)));
		for (int i = 0; i < 16; i++)
			out[at + 8 + i] = in6->sin6_addr.s6_addr[i] ^ out[4 + i]; /* cookie then txid */
		at += 24;
	} else {
		return 0;
	}
	/* MESSAGE-INTEGRITY over everything before it, length through it. */
	wr16(out + 2, (uint16_t)(at + 4 + CRYPTO_SHA1_LEN - WEBRTC_STUN_HEADER));
	wr16(out + at, STUN_ATTR_MESSAGE_INTEGRITY);
	wr16(out + at + 2, CRYPTO_SHA1_LEN);
	crypto_hmac_sha1(key, strlen(key), out, at, out + at + 4);
	at += 4 + CRYPTO_SHA1_LEN;
	/* FINGERPRINT over everything before it, length through it. */
	wr16(out + 2, (uint16_t)(at + 8 - WEBRTC_STUN_HEADER));
	wr16(out + at, STUN_ATTR_FINGERPRINT);
	wr16(out + at + 2, 4);
	wr32(out + at + 4, stun_crc(out, at));
	return at + 8;
}
