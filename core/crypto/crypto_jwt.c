/* crypto_jwt: JWT verification (HS256, ES256) and signing. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/bignum.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>

#include "common_log.h"
#include "common_err.h"
#include "crypto.h"
#include "crypto_internal.h"
#include "crypto_jwt.h"

static struct log_handle log_jwt = LOG_HANDLE("crypto/jwt");

/* The ES256 signature: R and S of P-256, 32 bytes each, big-endian. */
#define ES256_PART 32
/* ES256 verification costs milliseconds, and mbedtls caches tables inside
 * the key's group while multiplying, so one key copy serves one thread at a
 * time: a few copies let the cores verify in parallel. */
#define ES256_SLOTS 4
/* Clients send the same token with every request: a verified ES256 token
 * is remembered (by the SHA-256 of the whole token) so that its signature
 * is checked once; exp/nbf are still checked on every call. */
#define ES256_CACHE 2048

struct es256_slot {
	pthread_mutex_t lock;
	mbedtls_pk_context pk;
};

struct crypto_jwt_keys {
	char *secret;        /* HS256, NULL when none */
	size_t secret_len;
	bool has_es256;
	struct es256_slot slots[ES256_SLOTS];
	unsigned next_slot;  /* round robin, under cache_lock */
	pthread_mutex_t cache_lock;
	uint8_t (*cache)[CRYPTO_SHA256_LEN]; /* direct-mapped, ES256_CACHE entries */
	int64_t max_lifetime_s; /* tokens without exp: iat at most this old; 0: no limit */
};


void crypto_jwt_keys_set_max_lifetime(struct crypto_jwt_keys *keys, int64_t seconds)
{
	if (keys)
		keys->max_lifetime_s = seconds > 0 ? seconds : 0;
}

const char *crypto_jwt_strerror(int code)
{
	switch (code) {
	case CRYPTO_JWT_OK: return "ok";
	case CRYPTO_JWT_EMALFORMED: return "malformed token";
	case CRYPTO_JWT_EALG: return "algorithm not accepted";
	case CRYPTO_JWT_ESIGNATURE: return "bad signature";
	case CRYPTO_JWT_EEXPIRED: return "token expired";
	case CRYPTO_JWT_ENOTYET: return "token not yet valid";
	case CRYPTO_JWT_ECLAIMS: return "invalid claims";
	case CRYPTO_JWT_ENOKEY: return "no verification key configured";
	case CRYPTO_JWT_ENOMEM: return "out of memory";
	}
	return "unknown error";
}

/* Checks that 'pk' holds a key on P-256. */
static bool pk_is_p256(mbedtls_pk_context *pk)
{
	return mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECKEY &&
	       mbedtls_pk_ec(*pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

struct crypto_jwt_keys *crypto_jwt_keys_new(const char *hs256_secret, const char *es256_public_pem,
					    char *err, size_t errlen)
{
	return crypto_jwt_keys_new_bin(hs256_secret, hs256_secret ? strlen(hs256_secret) : 0,
				       es256_public_pem, err, errlen);
}

struct crypto_jwt_keys *crypto_jwt_keys_new_bin(const void *secret, size_t secret_len,
						const char *es256_public_pem, char *err, size_t errlen)
{
	struct crypto_jwt_keys *k = calloc(1, sizeof(*k));
	int r;
	if (!k) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	for (int i = 0; i < ES256_SLOTS; i++) {
		mbedtls_pk_init(&k->slots[i].pk);
		pthread_mutex_init(&k->slots[i].lock, NULL);
	}
	pthread_mutex_init(&k->cache_lock, NULL);
	if (secret && secret_len) {
		k->secret = malloc(secret_len);
		if (!k->secret) {
			err_set(err, errlen, "out of memory");
			goto fail;
		}
		memcpy(k->secret, secret, secret_len);
		k->secret_len = secret_len;
		if (k->secret_len < 16)
			LOG_WARN(&log_jwt, "the HS256 secret is only %zu bytes; use at least 32", k->secret_len);
	}
	if (es256_public_pem && *es256_public_pem) {
		for (int i = 0; i < ES256_SLOTS; i++) {
			r = mbedtls_pk_parse_public_key(&k->slots[i].pk, (const unsigned char *)es256_public_pem,
							strlen(es256_public_pem) + 1);
			if (r != 0) {
				err_set(err, errlen, "ES256 public key: not a PEM public key (-0x%04x)", (unsigned)-r);
				goto fail;
			}
			if (!pk_is_p256(&k->slots[i].pk)) {
				err_set(err, errlen, "ES256 public key: not an EC P-256 key");
				goto fail;
			}
		}
		k->cache = calloc(ES256_CACHE, sizeof(*k->cache));
		if (!k->cache) {
			err_set(err, errlen, "out of memory");
			goto fail;
		}
		k->has_es256 = true;
	}
	return k;
fail:
	crypto_jwt_keys_free(k);
	return NULL;
}

void crypto_jwt_keys_free(struct crypto_jwt_keys *k)
{
	if (!k)
		return;
	if (k->secret) {
		memset(k->secret, 0, k->secret_len);
		free(k->secret);
	}
	for (int i = 0; i < ES256_SLOTS; i++) {
		mbedtls_pk_free(&k->slots[i].pk);
		pthread_mutex_destroy(&k->slots[i].lock);
	}
	pthread_mutex_destroy(&k->cache_lock);
	free(k->cache);
	free(k);
}

/* Looks the token's digest up in the cache of verified tokens, or (when
 * 'store') remembers it. The cache is two-way set associative: a new entry
 * replaces the older of the two in its set. */
static bool es256_cache(struct crypto_jwt_keys *k, const uint8_t id[CRYPTO_SHA256_LEN], bool store)
{
	size_t set = (((size_t)id[0] << 8 | id[1]) % (ES256_CACHE / 2)) * 2;
	bool hit = false;
	pthread_mutex_lock(&k->cache_lock);
	if (store) {
		/* Slot set+1 holds the newer entry; move it down and add. */
		memcpy(k->cache[set], k->cache[set + 1], CRYPTO_SHA256_LEN);
		memcpy(k->cache[set + 1], id, CRYPTO_SHA256_LEN);
	} else {
		hit = memcmp(k->cache[set], id, CRYPTO_SHA256_LEN) == 0 ||
		      memcmp(k->cache[set + 1], id, CRYPTO_SHA256_LEN) == 0;
	}
	pthread_mutex_unlock(&k->cache_lock);
	return hit;
}

/* True when 's' is at most n/2 (n: the group order). For every valid
 * signature (r, s), (r, n - s) is valid too; accepting only the low one
 * makes a signature, and so a token, the only encoding of what was signed
 * (as Bitcoin's BIP 62 and Ethereum's EIP-2 do). */
static bool es256_low_s(const mbedtls_ecp_group *grp, const mbedtls_mpi *s)
{
	mbedtls_mpi half;
	mbedtls_mpi_init(&half);
	bool low = mbedtls_mpi_copy(&half, &grp->N) == 0 && mbedtls_mpi_shift_r(&half, 1) == 0 &&
		   mbedtls_mpi_cmp_mpi(s, &half) <= 0;
	mbedtls_mpi_free(&half);
	return low;
}

/* Verifies a raw R||S signature over 'hash' with the public key; a high S
 * is refused (es256_low_s). */
static bool es256_verify(struct crypto_jwt_keys *k, const uint8_t hash[CRYPTO_SHA256_LEN],
			 const uint8_t *sig)
{
	mbedtls_mpi r, s;
	bool ok = false;
	struct es256_slot *slot = NULL;
	mbedtls_mpi_init(&r);
	mbedtls_mpi_init(&s);
	if (mbedtls_mpi_read_binary(&r, sig, ES256_PART) != 0 ||
	    mbedtls_mpi_read_binary(&s, sig + ES256_PART, ES256_PART) != 0)
		goto out;
	/* A free copy of the key if there is one, else wait for the next. */
	for (int i = 0; i < ES256_SLOTS && !slot; i++)
		if (pthread_mutex_trylock(&k->slots[i].lock) == 0)
			slot = &k->slots[i];
	if (!slot) {
		pthread_mutex_lock(&k->cache_lock);
		slot = &k->slots[k->next_slot++ % ES256_SLOTS];
		pthread_mutex_unlock(&k->cache_lock);
		pthread_mutex_lock(&slot->lock);
	}
	mbedtls_ecp_keypair *ec = mbedtls_pk_ec(slot->pk);
	ok = es256_low_s(&ec->grp, &s) &&
	     mbedtls_ecdsa_verify(&ec->grp, hash, CRYPTO_SHA256_LEN, &ec->Q, &r, &s) == 0;
	pthread_mutex_unlock(&slot->lock);
out:
	mbedtls_mpi_free(&r);
	mbedtls_mpi_free(&s);
	return ok;
}

/* Decodes one base64url part as a JSON object: the whole part must be one
 * JSON object (no NUL bytes, nothing after it but blanks). */
static cJSON *decode_object(const char *part, size_t len)
{
	size_t n = 0;
	char *json = crypto_base64url_decode(part, len, &n);
	if (!json)
		return NULL;
	cJSON *o = NULL;
	/* The decoder leaves a NUL at json[n]; cJSON checks it is reached. */
	if (!memchr(json, '\0', n))
		o = cJSON_ParseWithLengthOpts(json, n + 1, NULL, true);
	free(json);
	if (o && !cJSON_IsObject(o)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* True when a member this module reads appears more than once (which copy
 * counts would be up to the parser: refuse instead). */
static bool has_duplicate(const cJSON *obj, const char *const *names, size_t nnames)
{
	for (size_t i = 0; i < nnames; i++) {
		int count = 0;
		for (const cJSON *m = obj->child; m; m = m->next)
			if (m->string && strcmp(m->string, names[i]) == 0)
				count++;
		if (count > 1)
			return true;
	}
	return false;
}

/* Reads an optional NumericDate claim; returns false when present but not
 * a finite number. */
static bool numeric_claim(const cJSON *claims, const char *name, bool *present, double *v)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(claims, name);
	*present = j != NULL;
	if (!j)
		return true;
	if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))
		return false;
	*v = j->valuedouble;
	return true;
}

int crypto_jwt_verify(const struct crypto_jwt_keys *keys, const char *token, int64_t now_s,
		      int leeway_s, cJSON **claims_out, char *err, size_t errlen)
{
	struct crypto_jwt_keys *k = (struct crypto_jwt_keys *)keys;
	cJSON *header = NULL, *claims = NULL;
	uint8_t *sig = NULL;
	size_t siglen = 0;
	int rc;

	if (claims_out)
		*claims_out = NULL;
	if (!k || (!k->secret && !k->has_es256)) {
		err_set(err, errlen, "no JWT verification key is configured");
		return CRYPTO_JWT_ENOKEY;
	}
	if (leeway_s < 0)
		leeway_s = 0;
	if (!token || !*token) {
		err_set(err, errlen, "empty token");
		return CRYPTO_JWT_EMALFORMED;
	}
	size_t len = strnlen(token, CRYPTO_JWT_MAX_LEN + 1);
	if (len > CRYPTO_JWT_MAX_LEN) {
		err_set(err, errlen, "token longer than %d bytes", CRYPTO_JWT_MAX_LEN);
		return CRYPTO_JWT_EMALFORMED;
	}
	const char *dot1 = memchr(token, '.', len);
	const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token))) {
		err_set(err, errlen, "a token has three dot-separated parts");
		return CRYPTO_JWT_EMALFORMED;
	}
	size_t hlen = (size_t)(dot1 - token), plen = (size_t)(dot2 - dot1 - 1);
	size_t slen = len - (size_t)(dot2 + 1 - token), signed_len = (size_t)(dot2 - token);
	if (!hlen || !plen) {
		err_set(err, errlen, "empty token header or payload");
		return CRYPTO_JWT_EMALFORMED;
	}

	header = decode_object(token, hlen);
	if (!header) {
		err_set(err, errlen, "token header is not base64url of a JSON object");
		rc = CRYPTO_JWT_EMALFORMED;
		goto out;
	}
	static const char *const header_names[] = { "alg", "crit", "typ" };
	if (has_duplicate(header, header_names, 3)) {
		err_set(err, errlen, "token header repeats a member");
		rc = CRYPTO_JWT_EMALFORMED;
		goto out;
	}
	const cJSON *alg = cJSON_GetObjectItemCaseSensitive(header, "alg");
	if (!alg) {
		err_set(err, errlen, "token header has no alg");
		rc = CRYPTO_JWT_EALG;
		goto out;
	}
	if (!cJSON_IsString(alg) || !alg->valuestring) {
		err_set(err, errlen, "token alg is not a string");
		rc = CRYPTO_JWT_EALG;
		goto out;
	}
	if (cJSON_GetObjectItemCaseSensitive(header, "crit")) {
		err_set(err, errlen, "token header has critical extensions (crit) this server does not know");
		rc = CRYPTO_JWT_EMALFORMED;
		goto out;
	}
	bool hs = strcmp(alg->valuestring, "HS256") == 0;
	bool es = strcmp(alg->valuestring, "ES256") == 0;
	if (strcasecmp(alg->valuestring, "none") == 0) {
		err_set(err, errlen, "alg none is not accepted");
		rc = CRYPTO_JWT_EALG;
		goto out;
	}
	if (!hs && !es) {
		err_set(err, errlen, "alg %.16s is not accepted (HS256 or ES256)", alg->valuestring);
		rc = CRYPTO_JWT_EALG;
		goto out;
	}
	if ((hs && !k->secret) || (es && !k->has_es256)) {
		err_set(err, errlen, "alg %s is not accepted: no %s key is configured", alg->valuestring,
		       hs ? "HS256 secret" : "ES256 public");
		rc = CRYPTO_JWT_EALG;
		goto out;
	}

	sig = slen ? crypto_base64url_decode(dot2 + 1, slen, &siglen) : NULL;
	if (!sig) {
		err_set(err, errlen, "token signature is missing or not base64url");
		rc = slen ? CRYPTO_JWT_EMALFORMED : CRYPTO_JWT_ESIGNATURE;
		goto out;
	}
	bool good;
	if (hs) {
		uint8_t mac[CRYPTO_SHA256_LEN];
		crypto_hmac_sha256(k->secret, k->secret_len, token, signed_len, mac);
		good = siglen == sizeof(mac) && crypto_memeq(mac, sig, sizeof(mac));
	} else {
		uint8_t hash[CRYPTO_SHA256_LEN], id[CRYPTO_SHA256_LEN];
		crypto_sha256(token, len, id);
		good = es256_cache(k, id, false);
		if (!good) {
			crypto_sha256(token, signed_len, hash);
			good = siglen == 2 * ES256_PART && es256_verify(k, hash, sig);
			if (good)
				es256_cache(k, id, true);
		}
	}
	if (!good) {
		err_set(err, errlen, "token signature does not verify");
		rc = CRYPTO_JWT_ESIGNATURE;
		goto out;
	}

	claims = decode_object(dot1 + 1, plen);
	if (!claims) {
		err_set(err, errlen, "token payload is not base64url of a JSON object");
		rc = CRYPTO_JWT_EMALFORMED;
		goto out;
	}
	static const char *const claim_names[] = { "sub", "exp", "nbf", "iat" };
	if (has_duplicate(claims, claim_names, 4)) {
		err_set(err, errlen, "token payload repeats a claim");
		rc = CRYPTO_JWT_EMALFORMED;
		goto out;
	}
	const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
	if (!cJSON_IsString(sub) || !sub->valuestring || !*sub->valuestring) {
		err_set(err, errlen, "token has no sub (user id) string");
		rc = CRYPTO_JWT_ECLAIMS;
		goto out;
	}
	bool has_exp, has_nbf;
	double exp = 0, nbf = 0;
	if (!numeric_claim(claims, "exp", &has_exp, &exp) || !numeric_claim(claims, "nbf", &has_nbf, &nbf)) {
		err_set(err, errlen, "token exp/nbf must be numbers (seconds since 1970)");
		rc = CRYPTO_JWT_ECLAIMS;
		goto out;
	}
	if (has_exp && (double)now_s >= exp + leeway_s) {
		err_set(err, errlen, "token expired %.0f s ago", (double)now_s - exp);
		rc = CRYPTO_JWT_EEXPIRED;
		goto out;
	}
	if (!has_exp && k->max_lifetime_s > 0) {
		/* A token without exp would be good forever: it lives
		 * max_lifetime_s from its iat instead. */
		bool has_iat;
		double iat = 0;
		if (!numeric_claim(claims, "iat", &has_iat, &iat)) {
			err_set(err, errlen, "token iat must be a number (seconds since 1970)");
			rc = CRYPTO_JWT_ECLAIMS;
			goto out;
		}
		if (!has_iat) {
			err_set(err, errlen, "token has neither exp nor iat (tokens live at most %lld s)",
				(long long)k->max_lifetime_s);
			rc = CRYPTO_JWT_ECLAIMS;
			goto out;
		}
		if ((double)now_s >= iat + (double)k->max_lifetime_s + leeway_s) {
			err_set(err, errlen, "token has no exp and was issued %.0f s ago (tokens live at most %lld s)",
				(double)now_s - iat, (long long)k->max_lifetime_s);
			rc = CRYPTO_JWT_EEXPIRED;
			goto out;
		}
		if ((double)now_s < iat - leeway_s) {
			err_set(err, errlen, "token has no exp and is issued %.0f s in the future", iat - (double)now_s);
			rc = CRYPTO_JWT_ENOTYET;
			goto out;
		}
	}
	if (has_nbf && (double)now_s < nbf - leeway_s) {
		err_set(err, errlen, "token not valid for another %.0f s", nbf - (double)now_s);
		rc = CRYPTO_JWT_ENOTYET;
		goto out;
	}
	rc = CRYPTO_JWT_OK;
	if (claims_out) {
		*claims_out = claims;
		claims = NULL;
	}
out:
	free(sig);
	cJSON_Delete(header);
	cJSON_Delete(claims);
	return rc;
}

/* ---- signing -------------------------------------------------------------- */

/* Returns base64url(header) "." base64url(claims) in a malloc'd buffer. */
static char *signing_input(const char *alg, const cJSON *claims)
{
	char header[64];
	char *payload = NULL, *h64 = NULL, *p64 = NULL, *out = NULL;
	if (!cJSON_IsObject(claims))
		return NULL;
	snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
	payload = cJSON_PrintUnformatted(claims);
	if (!payload)
		goto out;
	h64 = crypto_base64url_encode(header, strlen(header));
	p64 = crypto_base64url_encode(payload, strlen(payload));
	if (!h64 || !p64)
		goto out;
	size_t n = strlen(h64) + strlen(p64) + 2;
	out = malloc(n);
	if (out)
		snprintf(out, n, "%s.%s", h64, p64);
out:
	free(payload);
	free(h64);
	free(p64);
	return out;
}

/* Appends "." base64url(sig) to 'input' (consumed). */
static char *append_signature(char *input, const uint8_t *sig, size_t siglen)
{
	char *s64 = crypto_base64url_encode(sig, siglen);
	char *out = NULL;
	if (s64) {
		size_t n = strlen(input) + strlen(s64) + 2;
		out = malloc(n);
		if (out)
			snprintf(out, n, "%s.%s", input, s64);
	}
	free(s64);
	free(input);
	return out;
}

char *crypto_jwt_sign_hs256(const char *secret, const cJSON *claims)
{
	uint8_t mac[CRYPTO_SHA256_LEN];
	if (!secret || !*secret)
		return NULL;
	char *input = signing_input("HS256", claims);
	if (!input)
		return NULL;
	crypto_hmac_sha256(secret, strlen(secret), input, strlen(input), mac);
	return append_signature(input, mac, sizeof(mac));
}

char *crypto_jwt_sign_es256(const char *private_key_pem, const cJSON *claims, char *err, size_t errlen)
{
	mbedtls_pk_context pk;
	mbedtls_mpi r, s;
	uint8_t hash[CRYPTO_SHA256_LEN], sig[2 * ES256_PART];
	char *input = NULL, *token = NULL;
	int ret;

	mbedtls_pk_init(&pk);
	mbedtls_mpi_init(&r);
	mbedtls_mpi_init(&s);
	if (!private_key_pem || !*private_key_pem) {
		err_set(err, errlen, "no ES256 private key");
		goto out;
	}
	if ((ret = mbedtls_pk_parse_key(&pk, (const unsigned char *)private_key_pem,
					strlen(private_key_pem) + 1, NULL, 0)) != 0) {
		err_set(err, errlen, "ES256 private key: not a PEM private key (-0x%04x)", (unsigned)-ret);
		goto out;
	}
	if (!pk_is_p256(&pk)) {
		err_set(err, errlen, "ES256 private key: not an EC P-256 key");
		goto out;
	}
	input = signing_input("ES256", claims);
	if (!input) {
		err_set(err, errlen, "claims are not a JSON object");
		goto out;
	}
	crypto_sha256(input, strlen(input), hash);
	mbedtls_ecp_keypair *ec = mbedtls_pk_ec(pk);
	/* Verifiers here take only the low S of the pair (es256_low_s). */
	if ((ret = mbedtls_ecdsa_sign(&ec->grp, &r, &s, &ec->d, hash, sizeof(hash), crypto_rng_cb, NULL)) != 0 ||
	    (!es256_low_s(&ec->grp, &s) && (ret = mbedtls_mpi_sub_mpi(&s, &ec->grp.N, &s)) != 0) ||
	    (ret = mbedtls_mpi_write_binary(&r, sig, ES256_PART)) != 0 ||
	    (ret = mbedtls_mpi_write_binary(&s, sig + ES256_PART, ES256_PART)) != 0) {
		err_set(err, errlen, "ECDSA signing failed (-0x%04x)", (unsigned)-ret);
		goto out;
	}
	token = append_signature(input, sig, sizeof(sig));
	input = NULL;
	if (!token)
		err_set(err, errlen, "out of memory");
out:
	free(input);
	mbedtls_mpi_free(&r);
	mbedtls_mpi_free(&s);
	mbedtls_pk_free(&pk);
	return token;
}

int crypto_ec_keypair_pem(char **private_pem, char **public_pem)
{
	mbedtls_pk_context pk;
	unsigned char *priv = NULL, *pub = NULL;
	const size_t cap = 1024;
	int rc = -1;

	*private_pem = *public_pem = NULL;
	mbedtls_pk_init(&pk);
	priv = calloc(1, cap);
	pub = calloc(1, cap);
	if (!priv || !pub)
		goto out;
	if (mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 ||
	    mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk), crypto_rng_cb, NULL) != 0 ||
	    mbedtls_pk_write_key_pem(&pk, priv, cap) != 0 ||
	    mbedtls_pk_write_pubkey_pem(&pk, pub, cap) != 0)
		goto out;
	*private_pem = (char *)priv;
	*public_pem = (char *)pub;
	priv = pub = NULL;
	rc = 0;
out:
	free(priv);
	free(pub);
	mbedtls_pk_free(&pk);
	return rc;
}
