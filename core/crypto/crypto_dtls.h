/* crypto_dtls: a DTLS 1.2 server for DTLS-SRTP (RFC 5764), over datagrams
 * the caller moves, and HMAC-SHA1 for STUN message integrity.
 *
 * Provides: a per-process certificate (EC P-256, self-signed, made in
 * memory) and its SHA-256 fingerprint as SDP writes it; a DTLS server
 * endpoint that takes datagrams in (crypto_dtls_input), sends through a
 * callback, retransmits its flights on a timer the caller drives
 * (crypto_dtls_tick), negotiates the SRTP protection profile
 * SRTP_AES128_CM_HMAC_SHA1_80 (use_srtp, no MKI), exports the SRTP keying
 * material ("EXTRACTOR-dtls_srtp", RFC 5764 §4.2) and gives the SHA-256
 * fingerprint of the certificate the client presented (which the caller
 * compares with the offer's a=fingerprint: no CA is involved). Client
 * certificates are required: a client without one fails the handshake.
 * Uses: mbedtls 2.28 (this module is its only includer), common.
 *
 * A crypto_dtls object belongs to one thread at a time; certificates are
 * read-only once made and may be shared by every thread. */
#ifndef EDGEREC_CRYPTO_DTLS_H
#define EDGEREC_CRYPTO_DTLS_H

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SHA1_LEN 20

void crypto_hmac_sha1(const void *key, size_t klen, const void *data, size_t len, uint8_t out[CRYPTO_SHA1_LEN]);

struct crypto_dtls_cert;

/* A new EC P-256 key and self-signed certificate (CN = 'cn'), valid for
 * 30 days from an hour ago. NULL with 'err' on failure. */
struct crypto_dtls_cert *crypto_dtls_cert_new(const char *cn, char *err, size_t errlen);
void crypto_dtls_cert_free(struct crypto_dtls_cert *c);
/* "sha-256 AB:CD:..." minus the algorithm: 32 bytes as upper-case hex
 * pairs joined by ':' (95 characters and a NUL). */
#define CRYPTO_FINGERPRINT_TEXT 96
const char *crypto_dtls_cert_fingerprint(const struct crypto_dtls_cert *c);

/* Sends one datagram to the peer; returns 0 or -1. */
typedef int (*crypto_dtls_send_fn)(void *opaque, const uint8_t *data, size_t len);

enum crypto_dtls_state {
	CRYPTO_DTLS_HANDSHAKING = 0,
	CRYPTO_DTLS_CONNECTED = 1,
	CRYPTO_DTLS_CLOSED = 2,    /* the peer sent close_notify */
	CRYPTO_DTLS_FAILED = -1,   /* handshake or record error; crypto_dtls_error says which */
};

/* SRTP master keys and salts for AES128_CM_HMAC_SHA1_80 (16 + 14 bytes
 * each), as RFC 5764 §4.2 orders the exported material. */
struct crypto_dtls_srtp_keys {
	uint8_t client_key[16], client_salt[14];
	uint8_t server_key[16], server_salt[14];
};

struct crypto_dtls;

/* A server endpoint for one peer. 'cert' must outlive it. */
struct crypto_dtls *crypto_dtls_new(const struct crypto_dtls_cert *cert, crypto_dtls_send_fn send, void *opaque,
				    char *err, size_t errlen);
void crypto_dtls_free(struct crypto_dtls *d);
/* One datagram from the peer (a DTLS record: first byte 20..63). Returns
 * the state after it. Application data after the handshake is discarded. */
enum crypto_dtls_state crypto_dtls_input(struct crypto_dtls *d, const uint8_t *data, size_t len);
/* Retransmits a flight whose timer ran out. Returns the state. */
enum crypto_dtls_state crypto_dtls_tick(struct crypto_dtls *d, int64_t now_ns);
/* The monotonic time the retransmission timer runs out, or INT64_MAX. */
int64_t crypto_dtls_next_timer(const struct crypto_dtls *d);
enum crypto_dtls_state crypto_dtls_state(const struct crypto_dtls *d);
const char *crypto_dtls_error(const struct crypto_dtls *d);
/* After CONNECTED: the SRTP keys (0, or -1 when no SRTP profile was
 * agreed) and the SHA-256 of the client's certificate (0 or -1). */
int crypto_dtls_srtp_keys(const struct crypto_dtls *d, struct crypto_dtls_srtp_keys *out);
int crypto_dtls_peer_fingerprint(const struct crypto_dtls *d, uint8_t out[32]);
/* Sends close_notify (best effort). */
void crypto_dtls_close(struct crypto_dtls *d);

#endif
