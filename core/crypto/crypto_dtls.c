/* crypto_dtls: the DTLS-SRTP server of WebRTC ingest (see crypto_dtls.h).
 *
 * mbedTLS runs with non-blocking callbacks: its receive callback hands over
 * the one datagram crypto_dtls_input() was given (WANT_READ otherwise), its
 * send callback is the caller's, and its retransmission timer is a pair of
 * deadlines on the monotonic clock that crypto_dtls_tick() looks at. No
 * HelloVerifyRequest cookie exchange: ICE connectivity checks with the
 * session's credentials have already proved the peer's address before a
 * datagram reaches this object.
 *
 * mbedTLS 2.28 cannot take a ClientHello split into handshake fragments,
 * and current browsers send one larger than a datagram (their DTLS 1.3
 * offer carries a post-quantum key share; the server answers DTLS 1.2).
 * So the fragments of the first ClientHello are gathered here and handed
 * over as the one record a sender without fragmentation would have sent:
 * fragment_offset 0 and fragment_length = length, exactly the form the
 * handshake transcript uses (RFC 6347 §4.2.6), so nothing else changes. */
#include "crypto_dtls.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "crypto.h"
#include "crypto_internal.h"

static struct log_handle log_dtls = LOG_HANDLE("crypto/dtls");

/* DTLS 1.2 suites WebRTC stacks offer with an ECDSA certificate. */
static const int dtls_suites[] = {
	0xC02B, /* TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 */
	0xC02C, /* TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 */
	0xC009, /* TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA (older stacks) */
	0,
};

static const mbedtls_ssl_srtp_profile dtls_srtp_profiles[] = {
	MBEDTLS_TLS_SRTP_AES128_CM_HMAC_SHA1_80,
	MBEDTLS_TLS_SRTP_UNSET,
};

void crypto_hmac_sha1(const void *key, size_t klen, const void *data, size_t len, uint8_t out[CRYPTO_SHA1_LEN])
{
	mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA1), key, klen, data, len, out);
}

/* ---- the certificate ------------------------------------------------------- */

struct crypto_dtls_cert {
	mbedtls_pk_context key;
	mbedtls_x509_crt crt;
	char fingerprint[CRYPTO_FINGERPRINT_TEXT];
};

static void fingerprint_text(const uint8_t digest[32], char out[CRYPTO_FINGERPRINT_TEXT])
{
	static const char hex[] = "0123456789ABCDEF";
	for (int i = 0; i < 32; i++) {
		out[i * 3] = hex[digest[i] >> 4];
		out[i * 3 + 1] = hex[digest[i] & 15];
		out[i * 3 + 2] = i == 31 ? '\0' : ':';
	}
}

struct crypto_dtls_cert *crypto_dtls_cert_new(const char *cn, char *err, size_t errlen)
{
	struct crypto_dtls_cert *c = calloc(1, sizeof(*c));
	mbedtls_x509write_cert w;
	mbedtls_mpi serial;
	unsigned char der[2048], serial_raw[16];
	char subject[96], from[16], until[16];
	int r, n;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	mbedtls_pk_init(&c->key);
	mbedtls_x509_crt_init(&c->crt);
	mbedtls_x509write_crt_init(&w);
	mbedtls_mpi_init(&serial);
	time_t now = time(NULL), t0 = now - 3600, t1 = now + 30 * 86400;
	struct tm tm;
	gmtime_r(&t0, &tm);
	strftime(from, sizeof(from), "%Y%m%d%H%M%S", &tm);
	gmtime_r(&t1, &tm);
	strftime(until, sizeof(until), "%Y%m%d%H%M%S", &tm);
	snprintf(subject, sizeof(subject), "CN=%s", cn && cn[0] ? cn : "edgerec");
	if (crypto_random(serial_raw, sizeof(serial_raw)) < 0) {
		snprintf(err, errlen, "no random bytes for the certificate");
		goto fail;
	}
	serial_raw[0] = (uint8_t)((serial_raw[0] & 0x7f) | 1);
	if ((r = mbedtls_pk_setup(&c->key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY))) != 0 ||
	    (r = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(c->key), crypto_rng_cb, NULL)) != 0) {
		snprintf(err, errlen, "generating the DTLS key failed (-0x%04x)", (unsigned)-r);
		goto fail;
	}
	mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&w, &c->key);
	mbedtls_x509write_crt_set_issuer_key(&w, &c->key);
	if ((r = mbedtls_mpi_read_binary(&serial, serial_raw, sizeof(serial_raw))) != 0 ||
	    (r = mbedtls_x509write_crt_set_serial(&w, &serial)) != 0 ||
	    (r = mbedtls_x509write_crt_set_subject_name(&w, subject)) != 0 ||
	    (r = mbedtls_x509write_crt_set_issuer_name(&w, subject)) != 0 ||
	    (r = mbedtls_x509write_crt_set_validity(&w, from, until)) != 0) {
		snprintf(err, errlen, "building the DTLS certificate failed (-0x%04x)", (unsigned)-r);
		goto fail;
	}
	/* Written at the end of the buffer; n bytes long. */
	n = mbedtls_x509write_crt_der(&w, der, sizeof(der), crypto_rng_cb, NULL);
	if (n <= 0 || (r = mbedtls_x509_crt_parse_der(&c->crt, der + sizeof(der) - n, (size_t)n)) != 0) {
		snprintf(err, errlen, "signing the DTLS certificate failed (-0x%04x)", (unsigned)(n <= 0 ? -n : -r));
		goto fail;
	}
	uint8_t digest[32];
	mbedtls_sha256_ret(c->crt.raw.p, c->crt.raw.len, digest, 0);
	fingerprint_text(digest, c->fingerprint);
	mbedtls_x509write_crt_free(&w);
	mbedtls_mpi_free(&serial);
	return c;
fail:
	mbedtls_x509write_crt_free(&w);
	mbedtls_mpi_free(&serial);
	crypto_dtls_cert_free(c);
	return NULL;
}

void crypto_dtls_cert_free(struct crypto_dtls_cert *c)
{
	if (!c)
		return;
	mbedtls_x509_crt_free(&c->crt);
	mbedtls_pk_free(&c->key);
	free(c);
}

const char *crypto_dtls_cert_fingerprint(const struct crypto_dtls_cert *c)
{
	return c->fingerprint;
}

/* ---- the endpoint ------------------------------------------------------------ */

struct crypto_dtls {
	mbedtls_ssl_config conf;
	mbedtls_ssl_context ssl;
	crypto_dtls_send_fn send;
	void *opaque;
	const uint8_t *in;       /* the datagram being handed to mbedTLS */
	size_t in_len;
	int64_t timer_int_ns, timer_fin_ns; /* absolute; 0 = cancelled */
	enum crypto_dtls_state state;
	char error[160];
	bool have_keys;
	struct crypto_dtls_srtp_keys keys;
	/* what the export callback saw, for the SRTP extractor */
	unsigned char master[48], randbytes[64];
	mbedtls_tls_prf_types prf;
	bool have_master;
	/* the ClientHello being gathered from fragments */
	uint8_t *ch;              /* DTLS_REC_HDR + DTLS_HS_HDR + body */
	uint32_t ch_len;          /* body length, from the first fragment */
	uint8_t *ch_have;         /* one bit per body byte */
	uint32_t ch_got;          /* body bytes covered */
	bool ch_done;
};

#define DTLS_REC_HDR 13
#define DTLS_HS_HDR 12
#define DTLS_CH_MAX 16384         /* the largest ClientHello gathered */

static int dtls_send_cb(void *ctx, const unsigned char *buf, size_t len)
{
	struct crypto_dtls *d = ctx;
	if (d->send(d->opaque, buf, len) < 0)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	return (int)len;
}

static int dtls_recv_cb(void *ctx, unsigned char *buf, size_t len)
{
	struct crypto_dtls *d = ctx;
	if (!d->in)
		return MBEDTLS_ERR_SSL_WANT_READ;
	size_t n = d->in_len < len ? d->in_len : len;
	memcpy(buf, d->in, n);
	d->in = NULL;
	return (int)n;
}

static void dtls_set_timer(void *ctx, uint32_t int_ms, uint32_t fin_ms)
{
	struct crypto_dtls *d = ctx;
	int64_t now = time_mono_ns();
	d->timer_int_ns = fin_ms ? now + (int64_t)int_ms * TIME_NS_PER_MS : 0;
	d->timer_fin_ns = fin_ms ? now + (int64_t)fin_ms * TIME_NS_PER_MS : 0;
}

static int dtls_get_timer(void *ctx)
{
	struct crypto_dtls *d = ctx;
	int64_t now = time_mono_ns();
	if (!d->timer_fin_ns)
		return -1;
	if (now >= d->timer_fin_ns)
		return 2;
	return now >= d->timer_int_ns ? 1 : 0;
}

static int dtls_export_cb(void *ctx, const unsigned char *ms, const unsigned char *kb, size_t maclen,
			  size_t keylen, size_t ivlen, const unsigned char client_random[32],
			  const unsigned char server_random[32], mbedtls_tls_prf_types prf)
{
	struct crypto_dtls *d = ctx;
	memcpy(d->master, ms, sizeof(d->master));
	memcpy(d->randbytes, client_random, 32);
	memcpy(d->randbytes + 32, server_random, 32);
	d->prf = prf;
	d->have_master = true;
	return 0;
}

/* A client certificate is accepted whoever signed it: what matters is its
 * fingerprint, which the caller compares with the one signalled in SDP. */
static int dtls_verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	*flags = 0;
	return 0;
}

static void dtls_fail(struct crypto_dtls *d, const char *what, int rc)
{
	char text[100];
	mbedtls_strerror(rc, text, sizeof(text));
	snprintf(d->error, sizeof(d->error), "%s: %s (-0x%04x)", what, text, (unsigned)-rc);
	d->state = CRYPTO_DTLS_FAILED;
}

struct crypto_dtls *crypto_dtls_new(const struct crypto_dtls_cert *cert, crypto_dtls_send_fn send, void *opaque,
				    char *err, size_t errlen)
{
	struct crypto_dtls *d = calloc(1, sizeof(*d));
	int r;

	if (!d) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->send = send;
	d->opaque = opaque;
	mbedtls_ssl_config_init(&d->conf);
	mbedtls_ssl_init(&d->ssl);
	if ((r = mbedtls_ssl_config_defaults(&d->conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_DATAGRAM,
					     MBEDTLS_SSL_PRESET_DEFAULT)) != 0)
		goto fail;
	mbedtls_ssl_conf_min_version(&d->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_ciphersuites(&d->conf, dtls_suites);
	mbedtls_ssl_conf_rng(&d->conf, crypto_rng_cb, NULL);
	mbedtls_ssl_conf_authmode(&d->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
	mbedtls_ssl_conf_verify(&d->conf, dtls_verify_cb, NULL);
	mbedtls_ssl_conf_dtls_cookies(&d->conf, NULL, NULL, NULL);
	mbedtls_ssl_conf_handshake_timeout(&d->conf, 500, 8000);
	mbedtls_ssl_conf_export_keys_ext_cb(&d->conf, dtls_export_cb, d);
	if ((r = mbedtls_ssl_conf_own_cert(&d->conf, (mbedtls_x509_crt *)&cert->crt,
					   (mbedtls_pk_context *)&cert->key)) != 0 ||
	    (r = mbedtls_ssl_conf_dtls_srtp_protection_profiles(&d->conf, dtls_srtp_profiles)) != 0)
		goto fail;
	mbedtls_ssl_conf_srtp_mki_value_supported(&d->conf, MBEDTLS_SSL_DTLS_SRTP_MKI_UNSUPPORTED);
	if ((r = mbedtls_ssl_setup(&d->ssl, &d->conf)) != 0)
		goto fail;
	mbedtls_ssl_set_bio(&d->ssl, d, dtls_send_cb, dtls_recv_cb, NULL);
	mbedtls_ssl_set_timer_cb(&d->ssl, d, dtls_set_timer, dtls_get_timer);
	mbedtls_ssl_set_mtu(&d->ssl, 1200);
	return d;
fail:
	{
		char text[100];
		mbedtls_strerror(r, text, sizeof(text));
		snprintf(err, errlen, "DTLS setup failed: %s", text);
	}
	crypto_dtls_free(d);
	return NULL;
}

void crypto_dtls_free(struct crypto_dtls *d)
{
	if (!d)
		return;
	mbedtls_ssl_free(&d->ssl);
	mbedtls_ssl_config_free(&d->conf);
	memset(d->master, 0, sizeof(d->master));
	memset(&d->keys, 0, sizeof(d->keys));
	free(d->ch);
	free(d->ch_have);
	free(d);
}

/* The handshake finished: derive the SRTP keys. */
static void dtls_connected(struct crypto_dtls *d)
{
	mbedtls_dtls_srtp_info info;
	unsigned char km[60];

	d->state = CRYPTO_DTLS_CONNECTED;
	mbedtls_ssl_get_dtls_srtp_negotiation_result(&d->ssl, &info);
	if (info.chosen_dtls_srtp_profile != MBEDTLS_TLS_SRTP_AES128_CM_HMAC_SHA1_80 || !d->have_master) {
		snprintf(d->error, sizeof(d->error), "the client agreed no SRTP protection profile (use_srtp)");
		return;
	}
	int r = mbedtls_ssl_tls_prf(d->prf, d->master, sizeof(d->master), "EXTRACTOR-dtls_srtp", d->randbytes,
				    sizeof(d->randbytes), km, sizeof(km));
	memset(d->master, 0, sizeof(d->master));
	if (r != 0) {
		dtls_fail(d, "SRTP key export", r);
		return;
	}
	/* client key | server key | client salt | server salt */
	memcpy(d->keys.client_key, km, 16);
	memcpy(d->keys.server_key, km + 16, 16);
	memcpy(d->keys.client_salt, km + 32, 14);
	memcpy(d->keys.server_salt, km + 46, 14);
	memset(km, 0, sizeof(km));
	d->have_keys = true;
	LOG_DEBUG(&log_dtls, "handshake done (%s)", mbedtls_ssl_get_ciphersuite(&d->ssl));
}

/* Drives the handshake, or reads (and discards) records after it. */
static enum crypto_dtls_state dtls_step(struct crypto_dtls *d)
{
	int r;

	if (d->state == CRYPTO_DTLS_HANDSHAKING) {
		r = mbedtls_ssl_handshake(&d->ssl);
		if (r == 0)
			dtls_connected(d);
		else if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE)
			dtls_fail(d, r == MBEDTLS_ERR_SSL_TIMEOUT ? "handshake timed out" : "handshake", r);
		return d->state;
	}
	if (d->state != CRYPTO_DTLS_CONNECTED)
		return d->state;
	for (;;) {
		unsigned char sink[512];
		r = mbedtls_ssl_read(&d->ssl, sink, sizeof(sink));
		if (r > 0)
			continue;
		if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || r == 0)
			d->state = CRYPTO_DTLS_CLOSED;
		else if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE)
			dtls_fail(d, "record", r);
		return d->state;
	}
}

static uint32_t rd24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

/* Adds one ClientHello fragment (record 'rec' of 'rlen' bytes, header
 * included). Returns 1 when the message is complete, 0 when more is
 * needed, -1 when the fragment is malformed. */
static int dtls_ch_fragment(struct crypto_dtls *d, const uint8_t *rec, size_t rlen)
{
	const uint8_t *hs = rec + DTLS_REC_HDR;
	uint32_t len = rd24(hs + 1), off = rd24(hs + 6), flen = rd24(hs + 9);

	if (rlen < DTLS_REC_HDR + DTLS_HS_HDR || flen > rlen - DTLS_REC_HDR - DTLS_HS_HDR || len > DTLS_CH_MAX ||
	    off > len || flen > len - off || hs[4] != 0 || hs[5] != 0 /* message_seq 0 */)
		return -1;
	if (!d->ch) {
		d->ch = calloc(1, DTLS_REC_HDR + DTLS_HS_HDR + (size_t)len);
		d->ch_have = calloc(1, (size_t)len / 8 + 1);
		if (!d->ch || !d->ch_have)
			return -1;
		d->ch_len = len;
		/* The record header of the first fragment seen (its sequence
		 * number is as low as any later one), the handshake header as
		 * one fragment. */
		memcpy(d->ch, rec, DTLS_REC_HDR);
		d->ch[11] = (uint8_t)((DTLS_HS_HDR + len) >> 8);
		d->ch[12] = (uint8_t)(DTLS_HS_HDR + len);
		memcpy(d->ch + DTLS_REC_HDR, hs, 6);
		memset(d->ch + DTLS_REC_HDR + 6, 0, 3);
		memcpy(d->ch + DTLS_REC_HDR + 9, hs + 1, 3);
	} else if (len != d->ch_len) {
		return -1;
	}
	memcpy(d->ch + DTLS_REC_HDR + DTLS_HS_HDR + off, hs + DTLS_HS_HDR, flen);
	for (uint32_t i = off; i < off + flen; i++) {
		if (!(d->ch_have[i / 8] & (1u << (i % 8)))) {
			d->ch_have[i / 8] |= (uint8_t)(1u << (i % 8));
			d->ch_got++;
		}
	}
	return d->ch_got == d->ch_len ? 1 : 0;
}

/* Before the first ClientHello is complete: gathers its fragments. Returns
 * the datagram mbedTLS should see (the gathered record, or 'data' as it
 * is when it holds no fragment), or NULL when it must wait for more. */
static const uint8_t *dtls_gather_client_hello(struct crypto_dtls *d, const uint8_t *data, size_t *len)
{
	size_t at = 0;
	bool fragment = false;

	while (at + DTLS_REC_HDR + DTLS_HS_HDR <= *len) {
		const uint8_t *rec = data + at;
		size_t rlen = DTLS_REC_HDR + ((size_t)rec[11] << 8 | rec[12]);
		if (rlen > *len - at)
			break;
		const uint8_t *hs = rec + DTLS_REC_HDR;
		/* epoch 0 handshake record holding a part of a ClientHello */
		if (rec[0] == 22 && rec[3] == 0 && rec[4] == 0 && hs[0] == 1 && rd24(hs + 9) < rd24(hs + 1)) {
			fragment = true;
			int rc = dtls_ch_fragment(d, rec, rlen);
			if (rc < 0) {
				snprintf(d->error, sizeof(d->error), "malformed ClientHello fragment");
				d->state = CRYPTO_DTLS_FAILED;
				return NULL;
			}
			if (rc == 1) {
				d->ch_done = true;
				*len = DTLS_REC_HDR + DTLS_HS_HDR + d->ch_len;
				return d->ch;
			}
		}
		at += rlen;
	}
	return fragment ? NULL : data;
}

enum crypto_dtls_state crypto_dtls_input(struct crypto_dtls *d, const uint8_t *data, size_t len)
{
	if (d->state == CRYPTO_DTLS_HANDSHAKING && !d->ch_done) {
		data = dtls_gather_client_hello(d, data, &len);
		if (!data)
			return d->state;
	}
	d->in = data;
	d->in_len = len;
	enum crypto_dtls_state st = dtls_step(d);
	d->in = NULL;
	return st;
}

enum crypto_dtls_state crypto_dtls_tick(struct crypto_dtls *d, int64_t now_ns)
{
	if (d->state == CRYPTO_DTLS_HANDSHAKING && d->timer_fin_ns && now_ns >= d->timer_fin_ns)
		return dtls_step(d);
	return d->state;
}

int64_t crypto_dtls_next_timer(const struct crypto_dtls *d)
{
	return d->state == CRYPTO_DTLS_HANDSHAKING && d->timer_fin_ns ? d->timer_fin_ns : INT64_MAX;
}

enum crypto_dtls_state crypto_dtls_state(const struct crypto_dtls *d)
{
	return d->state;
}

const char *crypto_dtls_error(const struct crypto_dtls *d)
{
	return d->error[0] ? d->error : "no error";
}

int crypto_dtls_srtp_keys(const struct crypto_dtls *d, struct crypto_dtls_srtp_keys *out)
{
	if (!d->have_keys)
		return -1;
	*out = d->keys;
	return 0;
}

int crypto_dtls_peer_fingerprint(const struct crypto_dtls *d, uint8_t out[32])
{
	const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&d->ssl);
	if (!peer || !peer->raw.p)
		return -1;
	mbedtls_sha256_ret(peer->raw.p, peer->raw.len, out, 0);
	return 0;
}

void crypto_dtls_close(struct crypto_dtls *d)
{
	if (d->state == CRYPTO_DTLS_CONNECTED)
		mbedtls_ssl_close_notify(&d->ssl);
}
