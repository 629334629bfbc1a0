/* crypto: digests, MACs, encodings and the process-wide random generator. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/md5.h>
#include <mbedtls/sha256.h>

#include "common_log.h"
#include "crypto.h"
#include "crypto_internal.h"

static struct log_handle log_crypto = LOG_HANDLE("crypto");

_Static_assert(sizeof(struct crypto_sha256_ctx) >= sizeof(mbedtls_sha256_context),
	       "crypto_sha256_ctx too small for mbedtls_sha256_context");
_Static_assert(sizeof(struct crypto_md5_ctx) >= sizeof(mbedtls_md5_context),
	       "crypto_md5_ctx too small for mbedtls_md5_context");

void crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN])
{
	mbedtls_sha256_ret(data, len, out, 0);
}

void crypto_hmac_sha256(const void *key, size_t klen, const void *data, size_t len,
			uint8_t out[CRYPTO_SHA256_LEN])
{
	mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), key, klen, data, len, out);
}

void crypto_md5(const void *data, size_t len, uint8_t out[CRYPTO_MD5_LEN])
{
	mbedtls_md5_ret(data, len, out);
}

void crypto_sha256_init(struct crypto_sha256_ctx *ctx)
{
	mbedtls_sha256_context *c = (mbedtls_sha256_context *)ctx->opaque;
	mbedtls_sha256_init(c);
	mbedtls_sha256_starts_ret(c, 0);
}

void crypto_sha256_update(struct crypto_sha256_ctx *ctx, const void *data, size_t len)
{
	mbedtls_sha256_update_ret((mbedtls_sha256_context *)ctx->opaque, data, len);
}

void crypto_sha256_final(struct crypto_sha256_ctx *ctx, uint8_t out[CRYPTO_SHA256_LEN])
{
	mbedtls_sha256_context *c = (mbedtls_sha256_context *)ctx->opaque;
	mbedtls_sha256_finish_ret(c, out);
	mbedtls_sha256_free(c);
}

void crypto_md5_init(struct crypto_md5_ctx *ctx)
{
	mbedtls_md5_context *c = (mbedtls_md5_context *)ctx->opaque;
	mbedtls_md5_init(c);
	mbedtls_md5_starts_ret(c);
}

void crypto_md5_update(struct crypto_md5_ctx *ctx, const void *data, size_t len)
{
	mbedtls_md5_update_ret((mbedtls_md5_context *)ctx->opaque, data, len);
}

void crypto_md5_final(struct crypto_md5_ctx *ctx, uint8_t out[CRYPTO_MD5_LEN])
{
	mbedtls_md5_context *c = (mbedtls_md5_context *)ctx->opaque;
	mbedtls_md5_finish_ret(c, out);
	mbedtls_md5_free(c);
}

void crypto_hex(const void *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t *p = in;
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * len] = '\0';
}

bool crypto_memeq(const void *a, const void *b, size_t len)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t diff = 0;
	for (size_t i = 0; i < len; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

/* ---- base64 --------------------------------------------------------- */

char *crypto_base64_encode(const void *in, size_t len)
{
	size_t olen = 0;
	if (len > (SIZE_MAX - 8) / 4 * 3)
		return NULL;
	size_t cap = (len + 2) / 3 * 4 + 1;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	if (mbedtls_base64_encode((unsigned char *)out, cap, &olen, in, len) != 0) {
		free(out);
		return NULL;
	}
	out[olen] = '\0';
	return out;
}

char *crypto_base64url_encode(const void *in, size_t len)
{
	char *s = crypto_base64_encode(in, len);
	if (!s)
		return NULL;
	size_t n = strlen(s);
	while (n && s[n - 1] == '=')
		s[--n] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+')
			s[i] = '-';
		else if (s[i] == '/')
			s[i] = '_';
	}
	return s;
}

/* Decodes canonical standard base64 of exactly 'inlen' characters (length a
 * multiple of 4, padding only at the end). mbedtls's decoder also skips
 * blanks and line breaks; to be strict, the alphabet is checked first and
 * the result re-encoded and compared, which also rejects non-zero unused
 * bits. */
static void *b64_decode_strict(const char *in, size_t inlen, size_t *outlen)
{
	size_t olen = 0, pad = 0;
	if (inlen % 4)
		return NULL;
	for (size_t i = 0; i < inlen; i++) {
		char ch = in[i];
		bool alpha = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			     (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
		if (ch == '=') {
			pad++;
			continue;
		}
		if (!alpha || pad)
			return NULL;
	}
	if (pad > 2)
		return NULL;
	size_t cap = inlen / 4 * 3 + 1;
	unsigned char *out = malloc(cap);
	if (!out)
		return NULL;
	if (mbedtls_base64_decode(out, cap, &olen, (const unsigned char *)in, inlen) != 0)
		goto fail;
	char *again = crypto_base64_encode(out, olen);
	if (!again)
		goto fail;
	bool same = strlen(again) == inlen && memcmp(again, in, inlen) == 0;
	free(again);
	if (!same)
		goto fail;
	out[olen] = '\0';
	if (outlen)
		*outlen = olen;
	return out;
fail:
	free(out);
	return NULL;
}

void *crypto_base64_decode(const char *in, size_t inlen, size_t *outlen)
{
	if (!in)
		return NULL;
	return b64_decode_strict(in, inlen, outlen);
}

void *crypto_base64url_decode(const char *in, size_t inlen, size_t *outlen)
{
	if (!in || inlen % 4 == 1 || inlen > SIZE_MAX - 4)
		return NULL;
	char *std = malloc(inlen + 4);
	if (!std)
		return NULL;
	size_t n = 0;
	for (size_t i = 0; i < inlen; i++) {
		char ch = in[i];
		if (ch == '-')
			ch = '+';
		else if (ch == '_')
			ch = '/';
		else if (ch == '+' || ch == '/' || ch == '=')
			goto fail;
		std[n++] = ch;
	}
	while (n % 4)
		std[n++] = '=';
	void *out = b64_decode_strict(std, n, outlen);
	free(std);
	return out;
fail:
	free(std);
	return NULL;
}

/* ---- random bytes ----------------------------------------------------- */

static pthread_once_t rng_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t rng_lock = PTHREAD_MUTEX_INITIALIZER;
static mbedtls_entropy_context rng_entropy;
static mbedtls_ctr_drbg_context rng_drbg;
static bool rng_ready;

static void rng_init(void)
{
	static const char personal[] = "edgerec";
	mbedtls_entropy_init(&rng_entropy);
	mbedtls_ctr_drbg_init(&rng_drbg);
	int r = mbedtls_ctr_drbg_seed(&rng_drbg, mbedtls_entropy_func, &rng_entropy,
				      (const unsigned char *)personal, sizeof(personal) - 1);
	if (r != 0) {
		LOG_ERROR(&log_crypto, "seeding the random generator failed (-0x%04x)", (unsigned)-r);
		return;
	}
	/* Reseed now and then from the entropy source on its own. */
	mbedtls_ctr_drbg_set_prediction_resistance(&rng_drbg, MBEDTLS_CTR_DRBG_PR_OFF);
	rng_ready = true;
}

int crypto_random(void *out, size_t len)
{
	unsigned char *p = out;
	int rc = 0;
	pthread_once(&rng_once, rng_init);
	if (!rng_ready)
		return -1;
	pthread_mutex_lock(&rng_lock);
	while (len) {
		size_t n = len > MBEDTLS_CTR_DRBG_MAX_REQUEST ? MBEDTLS_CTR_DRBG_MAX_REQUEST : len;
		if (mbedtls_ctr_drbg_random(&rng_drbg, p, n) != 0) {
			rc = -1;
			break;
		}
		p += n;
		len -= n;
	}
	pthread_mutex_unlock(&rng_lock);
	return rc;
}

int crypto_rng_cb(void *unused, unsigned char *out, size_t len)
{
	(void)unused;
	return crypto_random(out, len) == 0 ? 0 : MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
}
