/* crypto_jwt: JSON Web Tokens (RFC 7519) signed with HS256 or ES256.
 *
 * Provides: verification keys (an HS256 secret and/or an ES256 public key),
 * crypto_jwt_verify with an error for each defect, HS256 and ES256 signing.
 * Uses: mbedtls (through crypto_jwt.c only), cJSON, common.
 *
 * A token is accepted only when: it has three base64url parts without
 * padding; the header is a JSON object whose "alg" is HS256 or ES256 and a
 * key of that kind is configured ("none", a missing alg or an alg for a key
 * that is not configured are refused); the signature verifies (HMAC
 * compared in constant time; ES256 is the 64-byte R||S of RFC 7518 §3.4);
 * the payload is a JSON object with a non-empty string "sub"; "exp" and
 * "nbf", when present, are numbers and now is before exp + leeway and not
 * before nbf - leeway. */
#ifndef EDGEREC_CRYPTO_JWT_H
#define EDGEREC_CRYPTO_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* The default leeway for exp/nbf, in seconds. */
#define CRYPTO_JWT_LEEWAY_S 30
/* Tokens longer than this are refused before any parsing. */
#define CRYPTO_JWT_MAX_LEN 8192

/* Error codes of crypto_jwt_verify (negative); crypto_jwt_strerror names them. */
enum crypto_jwt_error {
	CRYPTO_JWT_OK = 0,
	CRYPTO_JWT_EMALFORMED = -1, /* not three base64url parts, bad JSON, not objects */
	CRYPTO_JWT_EALG = -2,       /* alg missing, "none", unknown, or no key for it */
	CRYPTO_JWT_ESIGNATURE = -3, /* signature does not verify */
	CRYPTO_JWT_EEXPIRED = -4,   /* now >= exp + leeway, or no exp and iat too old */
	CRYPTO_JWT_ENOTYET = -5,    /* now < nbf - leeway */
	CRYPTO_JWT_ECLAIMS = -6,    /* sub missing/not a string, exp/nbf/iat not numbers,
				     * neither exp nor iat under a maximum lifetime */
	CRYPTO_JWT_ENOKEY = -7,     /* no key configured at all */
	CRYPTO_JWT_ENOMEM = -8,
};

const char *crypto_jwt_strerror(int code);

/* Verification keys. Immutable after creation; one object may be shared by
 * all threads. ES256 verification (milliseconds with mbedtls) runs on a few
 * private copies of the key, and a token whose signature was verified once
 * is remembered, so a client repeating its token pays the ECDSA cost once;
 * exp and nbf are checked on every call. */
struct crypto_jwt_keys;

/* Builds the keys from an HS256 secret (the bytes of the string; NULL or ""
 * for none) and an ES256 public key as PEM text (NULL or "" for none; a
 * SubjectPublicKeyInfo "BEGIN PUBLIC KEY" on the P-256 curve). Returns NULL
 * with 'err' filled when the PEM is not a P-256 public key. Keys with
 * neither are valid but refuse every token (CRYPTO_JWT_ENOKEY). */
struct crypto_jwt_keys *crypto_jwt_keys_new(const char *hs256_secret, const char *es256_public_pem,
					    char *err, size_t errlen);
/* As crypto_jwt_keys_new with a binary HS256 secret of 'secret_len' bytes
 * (a decoded JWK "k" may hold any byte); secret_len 0 means none. */
struct crypto_jwt_keys *crypto_jwt_keys_new_bin(const void *secret, size_t secret_len,
						const char *es256_public_pem, char *err, size_t errlen);
void crypto_jwt_keys_free(struct crypto_jwt_keys *keys);
/* Sets the longest a token without exp is accepted: such a token then
 * needs an iat no older than 'seconds' (leeway added); without iat it is
 * refused (CRYPTO_JWT_ECLAIMS), once older CRYPTO_JWT_EEXPIRED. 0 (the
 * default of new keys) accepts tokens without exp forever. Call before
 * the keys are shared. Tokens with exp are checked against exp only. */
void crypto_jwt_keys_set_max_lifetime(struct crypto_jwt_keys *keys, int64_t seconds);

/* Verifies 'token' at time 'now_s' (Unix seconds) with 'leeway_s' seconds
 * of tolerance for exp/nbf. Returns 0 and, when 'claims_out' is not NULL,
 * the payload object (the reference goes to the caller: cJSON_Delete it);
 * or a negative enum crypto_jwt_error with 'err' saying what is wrong
 * ("token expired 75 s ago", "alg none is not accepted"). */
int crypto_jwt_verify(const struct crypto_jwt_keys *keys, const char *token, int64_t now_s,
		      int leeway_s, cJSON **claims_out, char *err, size_t errlen);

/* Signs 'claims' (a JSON object, not modified) with HS256 and 'secret' (the
 * bytes of the string). Returns a malloc'd token or NULL (not an object,
 * empty secret, out of memory). */
char *crypto_jwt_sign_hs256(const char *secret, const cJSON *claims);

/* Signs 'claims' with ES256 and a P-256 private key in PEM ("BEGIN EC
 * PRIVATE KEY" or PKCS#8). Returns a malloc'd token or NULL with 'err'. */
char *crypto_jwt_sign_es256(const char *private_key_pem, const cJSON *claims, char *err, size_t errlen);

/* Generates a P-256 key pair as PEM strings (private key in SEC1 form,
 * public key as SubjectPublicKeyInfo), malloc'd, for tests and tooling.
 * Returns 0 or -1. */
int crypto_ec_keypair_pem(char **private_pem, char **public_pem);

#endif
