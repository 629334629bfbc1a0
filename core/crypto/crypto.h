/* crypto: hashes, MACs, encodings, random bytes, secrets and certificates.
 *
 * Provides: SHA-256, HMAC-SHA-256, MD5, hex, base64 and base64url, a
 * constant-time compare, random bytes from a CTR-DRBG, the server's JWT
 * secret file (crypto_load_or_create_secret) and a self-signed TLS
 * certificate generator. JWTs are in crypto_jwt.h.
 * Uses: mbedtls 2.28 (this module is its only includer), common.
 *
 * Every function here may be called from any thread. */
#ifndef EDGEREC_CRYPTO_H
#define EDGEREC_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_MD5_LEN 16

/* One-shot digests and MACs; 'out' receives the raw digest. 'out' may be
 * the same buffer as 'key' or 'data' (SigV4 derives keys in place): the
 * inputs are consumed before the result is written. */
void crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN]);
void crypto_hmac_sha256(const void *key, size_t klen, const void *data, size_t len,
			uint8_t out[CRYPTO_SHA256_LEN]);
void crypto_md5(const void *data, size_t len, uint8_t out[CRYPTO_MD5_LEN]);

/* Incremental SHA-256 for data that arrives in pieces (a file upload). The
 * struct is caller storage; init, update any number of times, final. */
struct crypto_sha256_ctx {
	/* Room for mbedtls_sha256_context; opaque to callers. */
	uint64_t opaque[32];
};
void crypto_sha256_init(struct crypto_sha256_ctx *ctx);
void crypto_sha256_update(struct crypto_sha256_ctx *ctx, const void *data, size_t len);
void crypto_sha256_final(struct crypto_sha256_ctx *ctx, uint8_t out[CRYPTO_SHA256_LEN]);

/* Incremental MD5, the same way (an S3 object's whole-body ETag). */
struct crypto_md5_ctx {
	/* Room for mbedtls_md5_context; opaque to callers. */
	uint64_t opaque[16];
};
void crypto_md5_init(struct crypto_md5_ctx *ctx);
void crypto_md5_update(struct crypto_md5_ctx *ctx, const void *data, size_t len);
void crypto_md5_final(struct crypto_md5_ctx *ctx, uint8_t out[CRYPTO_MD5_LEN]);

/* Writes 2*len lower-case hex digits and a NUL to 'out' (2*len+1 bytes). */
void crypto_hex(const void *in, size_t len, char *out);

/* Base64 (RFC 4648 §4, with '=' padding) and base64url (§5, without
 * padding, as JWT uses). Encoders return a malloc'd NUL-terminated string
 * (NULL when out of memory); the caller frees it. Decoders return a malloc'd
 * buffer of *outlen bytes (plus a NUL not counted, for convenience) or NULL
 * when 'in' is not valid: a character outside the alphabet, a wrong length,
 * padding where none belongs (base64url rejects '=' entirely), or non-zero
 * unused bits. 'inlen' is the input length (strlen for a string). */
char *crypto_base64_encode(const void *in, size_t len);
void *crypto_base64_decode(const char *in, size_t inlen, size_t *outlen);
char *crypto_base64url_encode(const void *in, size_t len);
void *crypto_base64url_decode(const char *in, size_t inlen, size_t *outlen);

/* Compares two buffers in time that depends only on 'len'. */
bool crypto_memeq(const void *a, const void *b, size_t len);

/* Fills 'out' from a CTR-DRBG seeded once from the system's entropy.
 * Returns 0 or -1 (the entropy source failed). */
int crypto_random(void *out, size_t len);

/* The JWT secret the server keeps in its state directory. Reads the
 * secret from 'path' (surrounding blanks and the final newline are not part
 * of it) into 'out' (NUL-terminated). When the file does not exist and
 * 'create' is true, writes a new one: 32 random bytes as base64url (43
 * characters), file mode 0600, created atomically so two processes end up
 * with the same secret. Returns 0 when read, 1 when created, -1 with 'err'
 * filled otherwise (missing and !create, empty file, unreadable, 'out' too
 * small). */
int crypto_load_or_create_secret(const char *path, bool create, char *out, size_t outlen,
				 char *err, size_t errlen);

/* Generates an EC P-256 key and a self-signed X.509 v3 certificate for it
 * (CN = 'cn', subjectAltName DNS:localhost, DNS:'cn' when it is a name,
 * IP:127.0.0.1, valid from now for 10 years, ECDSA-SHA256) and writes both
 * as PEM: the key with mode 0600. Files are written to a temporary name
 * and renamed, so a reader never sees half a file. Returns 0 or -1 with
 * 'err' filled. */
int crypto_selfsigned_cert(const char *cert_path, const char *key_path, const char *cn,
			   char *err, size_t errlen);

#endif
