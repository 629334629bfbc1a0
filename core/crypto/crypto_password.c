/* crypto_password: password hashes for the operator account (PBKDF2 with
 * HMAC-SHA-256, mbedtls_pkcs5_pbkdf2_hmac), in one line that goes in the
 * configuration. */
#include "crypto_password.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>

#include "crypto.h"

#define CRYPTO_PASSWORD_SALT_LEN 16
#define CRYPTO_PASSWORD_PREFIX "pbkdf2-sha256$"

/* PBKDF2-HMAC-SHA-256 of 'password' with 'salt' over 'iterations' rounds
 * into 'out' (CRYPTO_SHA256_LEN bytes). Returns 0 or -1. */
static int crypto_pbkdf2(const char *password, const void *salt, size_t saltlen, unsigned long iterations,
			 uint8_t out[CRYPTO_SHA256_LEN])
{
	mbedtls_md_context_t md;
	int rc = -1;
	mbedtls_md_init(&md);
	const mbedtls_md_info_t *info = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
	if (info && mbedtls_md_setup(&md, info, 1) == 0 &&
	    mbedtls_pkcs5_pbkdf2_hmac(&md, (const unsigned char *)password, strlen(password), salt, saltlen,
				      (unsigned int)iterations, CRYPTO_SHA256_LEN, out) == 0)
		rc = 0;
	mbedtls_md_free(&md);
	return rc;
}

char *crypto_password_hash(const char *password, unsigned long iterations)
{
	uint8_t salt[CRYPTO_PASSWORD_SALT_LEN], dk[CRYPTO_SHA256_LEN];
	char *salt64 = NULL, *dk64 = NULL, *line = NULL;
	if (!password || iterations < CRYPTO_PASSWORD_MIN_ITERATIONS ||
	    iterations > CRYPTO_PASSWORD_MAX_ITERATIONS || crypto_random(salt, sizeof(salt)) < 0 ||
	    crypto_pbkdf2(password, salt, sizeof(salt), iterations, dk) < 0)
		return NULL;
	salt64 = crypto_base64url_encode(salt, sizeof(salt));
	dk64 = crypto_base64url_encode(dk, sizeof(dk));
	if (salt64 && dk64 && asprintf(&line, CRYPTO_PASSWORD_PREFIX "%lu$%s$%s", iterations, salt64, dk64) < 0)
		line = NULL;
	free(salt64);
	free(dk64);
	return line;
}

/* Splits "pbkdf2-sha256$<iterations>$<salt>$<hash>" into its parts (the
 * salt and hash decoded, malloc'd). Returns 0 or -1. */
static int crypto_password_parse(const char *line, unsigned long *iterations, uint8_t **salt, size_t *saltlen,
				 uint8_t **dk, size_t *dklen)
{
	*salt = *dk = NULL;
	if (!line || strncmp(line, CRYPTO_PASSWORD_PREFIX, strlen(CRYPTO_PASSWORD_PREFIX)) != 0)
		return -1;
	const char *p = line + strlen(CRYPTO_PASSWORD_PREFIX);
	char *end;
	if (*p < '0' || *p > '9')
		return -1;
	*iterations = strtoul(p, &end, 10);
	if (*end != '$' || *iterations < CRYPTO_PASSWORD_MIN_ITERATIONS ||
	    *iterations > CRYPTO_PASSWORD_MAX_ITERATIONS)
		return -1;
	const char *s = end + 1, *d = strchr(s, '$');
	if (!d || d == s)
		return -1;
	*salt = crypto_base64url_decode(s, (size_t)(d - s), saltlen);
	*dk = crypto_base64url_decode(d + 1, strlen(d + 1), dklen);
	if (!*salt || !*dk || *saltlen < 8 || *dklen != CRYPTO_SHA256_LEN) {
		free(*salt);
		free(*dk);
		*salt = *dk = NULL;
		return -1;
	}
	return 0;
}

bool crypto_password_line_valid(const char *line)
{
	unsigned long it;
	uint8_t *salt, *dk;
	size_t sl, dl;
	if (crypto_password_parse(line, &it, &salt, &sl, &dk, &dl) < 0)
		return false;
	free(salt);
	free(dk);
	return true;
}

int crypto_password_verify(const char *line, const char *password)
{
	unsigned long it;
	uint8_t *salt, *dk, got[CRYPTO_SHA256_LEN];
	size_t sl, dl;
	if (!password || crypto_password_parse(line, &it, &salt, &sl, &dk, &dl) < 0)
		return -1;
	int rc = -1;
	if (crypto_pbkdf2(password, salt, sl, it, got) == 0)
		rc = crypto_memeq(got, dk, CRYPTO_SHA256_LEN) ? 1 : 0;
	free(salt);
	free(dk);
	return rc;
}
