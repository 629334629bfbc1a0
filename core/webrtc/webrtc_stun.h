/* webrtc_stun: the STUN of an ICE-lite agent (RFC 8489, RFC 8445 §7.3):
 * reads binding requests, checks MESSAGE-INTEGRITY (HMAC-SHA1 keyed with
 * our ice-pwd) and FINGERPRINT (CRC-32 xor 0x5354554e), writes binding
 * success responses with XOR-MAPPED-ADDRESS. A lite agent never sends
 * requests of its own.
 * Uses: crypto (HMAC-SHA1), zlib (crc32). Pure; fuzzed by
 * tests/fuzz/fuzz_webrtc_stun.c. */
#ifndef EDGEREC_WEBRTC_STUN_H
#define EDGEREC_WEBRTC_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define WEBRTC_STUN_HEADER 20
#define WEBRTC_STUN_MAGIC 0x2112A442u
#define WEBRTC_STUN_BINDING_REQUEST 0x0001
#define WEBRTC_STUN_BINDING_SUCCESS 0x0101
#define WEBRTC_STUN_BINDING_INDICATION 0x0011
#define WEBRTC_STUN_USERNAME_MAX 513

struct webrtc_stun {
	uint16_t type;
	uint8_t txid[12];
	bool has_username;
	char username[WEBRTC_STUN_USERNAME_MAX];
	bool has_integrity;
	size_t integrity_at;     /* offset of the MESSAGE-INTEGRITY attribute */
	bool has_fingerprint;    /* present and correct */
	bool use_candidate;
	bool controlling, controlled;
	uint32_t priority;
};

/* True when the datagram looks like STUN (RFC 7983: first byte 0..3, the
 * magic cookie, a length that fits). */
bool webrtc_stun_is(const uint8_t *p, size_t len);

/* Parses a STUN message. A FINGERPRINT that does not match, attributes
 * after FINGERPRINT, or anything but FINGERPRINT after MESSAGE-INTEGRITY
 * make it invalid. Returns 0 or -1. */
int webrtc_stun_parse(const uint8_t *p, size_t len, struct webrtc_stun *m);

/* Checks MESSAGE-INTEGRITY with the short-term credential 'key'. */
bool webrtc_stun_integrity_ok(const uint8_t *p, size_t len, const struct webrtc_stun *m, const char *key);

/* Writes a binding success response to 'req' for a request from 'from',
 * signed with 'key', with FINGERPRINT. Returns its length, or 0 when
 * 'cap' is too small or the address family is unknown. */
size_t webrtc_stun_binding_success(const struct webrtc_stun *req, const struct sockaddr *from, const char *key,
				   uint8_t *out, size_t cap);

#endif
