/* fuzz_crypto_jwt: the JWT verifier and the base64url decoder on arbitrary
 * input. The first byte picks a mode: a raw token, or a header and payload
 * (split at the first newline) that are encoded and correctly signed, so
 * that the claim checks behind the signature get exercised too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "crypto_jwt.h"

#define FUZZ_SECRET "fuzz-secret-0123456789abcdef0123"

static struct crypto_jwt_keys *keys;
static char *es_private;

static void fuzz_init(void)
{
	char *pub = NULL, err[256];
	if (crypto_ec_keypair_pem(&es_private, &pub) < 0)
		abort();
	keys = crypto_jwt_keys_new(FUZZ_SECRET, pub, err, sizeof(err));
	free(pub);
	if (!keys)
		abort();
}

/* Encodes header and payload, signs with HS256 or ES256 and verifies. */
static void signed_case(const uint8_t *data, size_t size, bool es)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t hlen = nl ? (size_t)(nl - data) : size;
	const uint8_t *payload = nl ? nl + 1 : data + size;
	size_t plen = nl ? size - hlen - 1 : 0;
	char *h = crypto_base64url_encode(data, hlen);
	char *p = crypto_base64url_encode(payload, plen);
	if (!h || !p)
		goto out;
	size_t n = strlen(h) + strlen(p) + 2 + 100;
	char *tok = malloc(n);
	if (!tok)
		goto out;
	strcpy(tok, h);
	strcat(tok, ".");
	strcat(tok, p);
	uint8_t mac[CRYPTO_SHA256_LEN];
	crypto_hmac_sha256(FUZZ_SECRET, strlen(FUZZ_SECRET), tok, strlen(tok), mac);
	char *s = crypto_base64url_encode(mac, sizeof(mac));
	if (s && !es) {
		strcat(tok, ".");
		strcat(tok, s);
		cJSON *claims = NULL;
		char err[256];
		int r = crypto_jwt_verify(keys, tok, 1700000000, 30, &claims, err, sizeof(err));
		if ((r == 0) != (claims != NULL))
			abort();
		cJSON_Delete(claims);
	}
	free(s);
	free(tok);
	if (es) {
		/* Sign the payload as claims when it parses, then verify. */
		cJSON *c = cJSON_ParseWithLength((const char *)payload, plen);
		char err[256];
		char *t = cJSON_IsObject(c) ? crypto_jwt_sign_es256(es_private, c, err, sizeof(err)) : NULL;
		if (t) {
			cJSON *claims = NULL;
			int r = crypto_jwt_verify(keys, t, 1700000000, 30, &claims, err, sizeof(err));
			/* Our own signature and header always pass; the claims
			 * may still be refused (no sub, expired, a repeated claim). */
			if (r == CRYPTO_JWT_ESIGNATURE || r == CRYPTO_JWT_EALG)
				abort();
			cJSON_Delete(claims);
			free(t);
		}
		cJSON_Delete(c);
	}
out:
	free(h);
	free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!keys)
		fuzz_init();
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;
	if (mode % 4 == 1) {
		signed_case(data, size, false);
		return 0;
	}
	if (mode % 4 == 2 && size < 1024) {
		signed_case(data, size, true);
		return 0;
	}
	char *tok = malloc(size + 1);
	if (!tok)
		return 0;
	memcpy(tok, data, size);
	tok[size] = '\0';
	cJSON *claims = NULL;
	char err[256];
	int r = crypto_jwt_verify(keys, tok, 1700000000, 30, &claims, err, sizeof(err));
	if ((r == 0) != (claims != NULL))
		abort();
	cJSON_Delete(claims);
	size_t n = 0;
	void *d = crypto_base64url_decode(tok, size, &n);
	if (d) {
		char *again = crypto_base64url_encode(d, n);
		/* Strict decoding means canonical input: it must round-trip. */
		if (!again || strlen(again) != size || memcmp(again, tok, size) != 0)
			abort();
		free(again);
	}
	free(d);
	d = crypto_base64_decode(tok, size, &n);
	free(d);
	free(tok);
	return 0;
}
