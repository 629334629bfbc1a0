/* test_crypto_jwt: JWT verification and signing: the RFC 7515 A.1 example,
 * tokens made by independent tools (python3's hmac, the openssl tool for
 * ES256) in both directions, and every defect the verifier must refuse. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common_util.h"
#include "crypto.h"
#include "crypto_jwt.h"

#define SECRET "unit-test-secret-with-enough-bytes-0123456789"

static char tmpdir[256];
static int64_t now;

/* Builds header.payload.signature from raw JSON texts, signed with HS256 and
 * 'secret' (or with the given signature text when sig != NULL). */
static char *forge(const char *header_json, const char *payload_json, const char *secret, const char *sig)
{
	char *h = crypto_base64url_encode(header_json, strlen(header_json));
	char *p = crypto_base64url_encode(payload_json, strlen(payload_json));
	size_t n = strlen(h) + strlen(p) + 128;
	char *out = malloc(n);
	snprintf(out, n, "%s.%s", h, p);
	if (sig) {
		strcat(out, ".");
		strcat(out, sig);
	} else {
		uint8_t mac[32];
		crypto_hmac_sha256(secret, strlen(secret), out, strlen(out), mac);
		char *s = crypto_base64url_encode(mac, 32);
		strcat(out, ".");
		strcat(out, s);
		free(s);
	}
	free(h);
	free(p);
	return out;
}

static int verify(const struct crypto_jwt_keys *k, const char *token, char *err, size_t errlen)
{
	cJSON *claims = NULL;
	int r = crypto_jwt_verify(k, token, now, CRYPTO_JWT_LEEWAY_S, &claims, err, errlen);
	CHECK(r == 0 ? claims != NULL : claims == NULL);
	cJSON_Delete(claims);
	return r;
}

static void test_rfc7515_a1(void)
{
	/* RFC 7515 appendix A.1: the JWK "k" and the complete JWS. */
	const char *k64 = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
	const char *jws = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
			  ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
			  ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
	size_t klen = 0;
	uint8_t *key = crypto_base64url_decode(k64, strlen(k64), &klen);
	CHECK_INT(klen, 64);
	char err[256];
	struct crypto_jwt_keys *keys = crypto_jwt_keys_new_bin(key, klen, NULL, err, sizeof(err));
	CHECK(keys != NULL);

	/* The signature is the RFC's; the example has no "sub", which this
	 * server requires, so a good signature ends at the claims check. */
	cJSON *claims = NULL;
	int r = crypto_jwt_verify(keys, jws, 1300819380 - 100, 0, &claims, err, sizeof(err));
	CHECK_INT(r, CRYPTO_JWT_ECLAIMS);
	CHECK(strstr(err, "sub") != NULL);
	/* After its exp (2011-03-22T18:43:00Z) the claims check still comes first... */
	r = crypto_jwt_verify(keys, jws, 1300819380 + 100, 0, NULL, err, sizeof(err));
	CHECK_INT(r, CRYPTO_JWT_ECLAIMS);
	/* ...and one flipped bit in the signature is a bad signature. */
	char *bad = strdup(jws);
	bad[strlen(bad) - 2] = bad[strlen(bad) - 2] == 'X' ? 'Y' : 'X';
	r = crypto_jwt_verify(keys, bad, 1300819380 - 100, 0, NULL, err, sizeof(err));
	CHECK_INT(r, CRYPTO_JWT_ESIGNATURE);
	free(bad);
	crypto_jwt_keys_free(keys);
	free(key);
}

static void test_sign_verify_roundtrip(void)
{
	char err[256];
	struct crypto_jwt_keys *keys = crypto_jwt_keys_new(SECRET, NULL, err, sizeof(err));
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "sub", "alice");
	cJSON_AddNumberToObject(c, "exp", (double)(now + 3600));
	cJSON_AddNumberToObject(c, "iat", (double)now);
	char *tok = crypto_jwt_sign_hs256(SECRET, c);
	CHECK(tok != NULL);
	cJSON *claims = NULL;
	CHECK_INT(crypto_jwt_verify(keys, tok, now, 30, &claims, err, sizeof(err)), 0);
	const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
	CHECK_STR(cJSON_GetStringValue(sub), "alice");
	cJSON_Delete(claims);
	/* Another secret: bad signature. */
	struct crypto_jwt_keys *other = crypto_jwt_keys_new("another secret of some length", NULL, err, sizeof(err));
	CHECK_INT(crypto_jwt_verify(other, tok, now, 30, NULL, err, sizeof(err)), CRYPTO_JWT_ESIGNATURE);
	crypto_jwt_keys_free(other);
	/* Not an object, or no secret: no token. */
	cJSON *arr = cJSON_CreateArray();
	CHECK(crypto_jwt_sign_hs256(SECRET, arr) == NULL);
	CHECK(crypto_jwt_sign_hs256("", c) == NULL);
	cJSON_Delete(arr);
	free(tok);
	cJSON_Delete(c);
	crypto_jwt_keys_free(keys);
}

/* Signs {"sub": "alice"} plus iat (when iat_ago >= 0, seconds before now)
 * and exp (when exp_in != 0, seconds after now); verifies it with 'keys'. */
static int verify_lifetime(struct crypto_jwt_keys *keys, long long iat_ago, long long exp_in)
{
	char err[256];
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "sub", "alice");
	if (iat_ago >= 0)
		cJSON_AddNumberToObject(c, "iat", (double)(now - iat_ago));
	if (exp_in)
		cJSON_AddNumberToObject(c, "exp", (double)(now + exp_in));
	char *tok = crypto_jwt_sign_hs256(SECRET, c);
	int r = crypto_jwt_verify(keys, tok, now, 30, NULL, err, sizeof(err));
	free(tok);
	cJSON_Delete(c);
	return r;
}

/* Tokens without exp: accepted forever without a maximum lifetime; with
 * one, they need an iat within it (plus leeway). Tokens with exp are
 * judged by exp alone. */
static void test_max_lifetime(void)
{
	char err[256];
	struct crypto_jwt_keys *keys = crypto_jwt_keys_new(SECRET, NULL, err, sizeof(err));
	CHECK_INT(verify_lifetime(keys, -1, 0), 0);
	CHECK_INT(verify_lifetime(keys, 10 * 365 * 86400LL, 0), 0);
	crypto_jwt_keys_set_max_lifetime(keys, 3600);
	CHECK_INT(verify_lifetime(keys, -1, 0), CRYPTO_JWT_ECLAIMS);
	CHECK_INT(verify_lifetime(keys, 0, 0), 0);
	CHECK_INT(verify_lifetime(keys, 3600 + 29, 0), 0);
	CHECK_INT(verify_lifetime(keys, 3600 + 30, 0), CRYPTO_JWT_EEXPIRED);
	CHECK_INT(verify_lifetime(keys, 10 * 365 * 86400LL, 0), CRYPTO_JWT_EEXPIRED);
	CHECK_INT(verify_lifetime(keys, 10 * 365 * 86400LL, 60), 0);
	CHECK_INT(verify_lifetime(keys, -1, 7200), 0);
	CHECK_INT(verify_lifetime(keys, 0, -60), CRYPTO_JWT_EEXPIRED);
	crypto_jwt_keys_set_max_lifetime(keys, 0);
	CHECK_INT(verify_lifetime(keys, -1, 0), 0);
	crypto_jwt_keys_free(keys);
}

static void test_defects(void)
{
	char err[256], payload[256], payload_exp[256], payload_nbf[256];
	struct crypto_jwt_keys *keys = crypto_jwt_keys_new(SECRET, NULL, err, sizeof(err));
	const char *hs = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	snprintf(payload, sizeof(payload), "{\"sub\":\"bob\",\"exp\":%lld}", (long long)now + 600);

	char *t = forge(hs, payload, SECRET, NULL);
	CHECK_INT(verify(keys, t, err, sizeof(err)), 0);
	free(t);
	/* Blanks around the JSON (as some libraries print it) are fine. */
	char spaced[300];
	snprintf(spaced, sizeof(spaced), " %s\r\n", payload);
	t = forge("{\r\n \"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}", spaced, SECRET, NULL);
	CHECK_INT(verify(keys, t, err, sizeof(err)), 0);
	free(t);

	struct {
		const char *what;
		const char *header;
		const char *payload; /* NULL: the good payload */
		const char *sig;     /* NULL: a correct HS256 signature */
		int want;
	} cases[] = {
		{ "alg none, empty signature", "{\"alg\":\"none\"}", NULL, "", CRYPTO_JWT_EALG },
		{ "alg None", "{\"alg\":\"None\"}", NULL, "", CRYPTO_JWT_EALG },
		{ "alg none with a signature", "{\"alg\":\"none\"}", NULL, NULL, CRYPTO_JWT_EALG },
		{ "missing alg", "{\"typ\":\"JWT\"}", NULL, NULL, CRYPTO_JWT_EALG },
		{ "alg not a string", "{\"alg\":256}", NULL, NULL, CRYPTO_JWT_EALG },
		{ "alg HS512", "{\"alg\":\"HS512\"}", NULL, NULL, CRYPTO_JWT_EALG },
		{ "alg RS256", "{\"alg\":\"RS256\"}", NULL, NULL, CRYPTO_JWT_EALG },
		{ "alg hs256 (case)", "{\"alg\":\"hs256\"}", NULL, NULL, CRYPTO_JWT_EALG },
		{ "ES256 without a public key", "{\"alg\":\"ES256\"}", NULL, NULL, CRYPTO_JWT_EALG },
		{ "crit header", "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", NULL, NULL, CRYPTO_JWT_EMALFORMED },
		{ "header an array", "[\"HS256\"]", NULL, NULL, CRYPTO_JWT_EMALFORMED },
		{ "header not JSON", "{alg:HS256}", NULL, NULL, CRYPTO_JWT_EMALFORMED },
		{ "payload an array", "{\"alg\":\"HS256\"}", "[1,2]", NULL, CRYPTO_JWT_EMALFORMED },
		{ "payload a string", "{\"alg\":\"HS256\"}", "\"sub\"", NULL, CRYPTO_JWT_EMALFORMED },
		{ "payload not JSON", "{\"alg\":\"HS256\"}", "{\"sub\":", NULL, CRYPTO_JWT_EMALFORMED },
		{ "header with trailing text", "{\"alg\":\"HS256\"} x", NULL, NULL, CRYPTO_JWT_EMALFORMED },
		{ "header alg twice", "{\"alg\":\"HS256\",\"alg\":\"none\"}", NULL, NULL, CRYPTO_JWT_EMALFORMED },
		{ "payload with trailing text", "{\"alg\":\"HS256\"}", "{\"sub\":\"x\"}{}", NULL, CRYPTO_JWT_EMALFORMED },
		{ "sub twice", "{\"alg\":\"HS256\"}", "{\"sub\":\"x\",\"sub\":\"admin\"}", NULL,
		  CRYPTO_JWT_EMALFORMED },
		{ "exp twice", "{\"alg\":\"HS256\"}", "{\"sub\":\"x\",\"exp\":1,\"exp\":9999999999}", NULL,
		  CRYPTO_JWT_EMALFORMED },
		{ "missing sub", "{\"alg\":\"HS256\"}", "{\"exp\":9999999999}", NULL, CRYPTO_JWT_ECLAIMS },
		{ "sub a number", "{\"alg\":\"HS256\"}", "{\"sub\":42}", NULL, CRYPTO_JWT_ECLAIMS },
		{ "sub empty", "{\"alg\":\"HS256\"}", "{\"sub\":\"\"}", NULL, CRYPTO_JWT_ECLAIMS },
		{ "exp a string", "{\"alg\":\"HS256\"}", "{\"sub\":\"x\",\"exp\":\"tomorrow\"}", NULL, CRYPTO_JWT_ECLAIMS },
		{ "nbf null", "{\"alg\":\"HS256\"}", "{\"sub\":\"x\",\"nbf\":null}", NULL, CRYPTO_JWT_ECLAIMS },
		{ "signature of other bytes", "{\"alg\":\"HS256\"}", NULL,
		  "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", CRYPTO_JWT_ESIGNATURE },
		{ "signature truncated", "{\"alg\":\"HS256\"}", NULL, "dBjftJeZ4CVP", CRYPTO_JWT_ESIGNATURE },
		{ "signature empty", "{\"alg\":\"HS256\"}", NULL, "", CRYPTO_JWT_ESIGNATURE },
		{ "signature not base64url", "{\"alg\":\"HS256\"}", NULL, "abc$def", CRYPTO_JWT_EMALFORMED },
		{ "signature padded", "{\"alg\":\"HS256\"}", NULL, "AAAA==", CRYPTO_JWT_EMALFORMED },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		t = forge(cases[i].header, cases[i].payload ? cases[i].payload : payload, SECRET, cases[i].sig);
		int r = verify(keys, t, err, sizeof(err));
		if (r != cases[i].want)
			fprintf(stderr, "case '%s': got %d (%s), want %d\n", cases[i].what, r, err, cases[i].want);
		CHECK_INT(r, cases[i].want);
		CHECK(err[0] != '\0');
		free(t);
	}

	/* A NUL byte after the header JSON, correctly signed. */
	static const char hnul[] = "{\"alg\":\"HS256\"}";
	char *h64 = crypto_base64url_encode(hnul, sizeof(hnul));
	char *p64 = crypto_base64url_encode(payload, strlen(payload));
	char nul_tok[1024];
	uint8_t mac[32];
	snprintf(nul_tok, sizeof(nul_tok), "%s.%s", h64, p64);
	crypto_hmac_sha256(SECRET, strlen(SECRET), nul_tok, strlen(nul_tok), mac);
	char *s64 = crypto_base64url_encode(mac, sizeof(mac));
	strcat(nul_tok, ".");
	strcat(nul_tok, s64);
	CHECK_INT(verify(keys, nul_tok, err, sizeof(err)), CRYPTO_JWT_EMALFORMED);
	free(h64);
	free(p64);
	free(s64);

	/* exp and nbf with the leeway: 30 s each way. */
	struct {
		const char *fmt;
		long long off;
		int want;
	} times[] = {
		{ "{\"sub\":\"x\",\"exp\":%lld}", -31, CRYPTO_JWT_EEXPIRED },
		{ "{\"sub\":\"x\",\"exp\":%lld}", -30, CRYPTO_JWT_EEXPIRED },
		{ "{\"sub\":\"x\",\"exp\":%lld}", -29, 0 },
		{ "{\"sub\":\"x\",\"exp\":%lld}", -86400, CRYPTO_JWT_EEXPIRED },
		{ "{\"sub\":\"x\",\"nbf\":%lld}", 31, CRYPTO_JWT_ENOTYET },
		{ "{\"sub\":\"x\",\"nbf\":%lld}", 30, 0 },
		{ "{\"sub\":\"x\",\"nbf\":%lld}", -5, 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(times); i++) {
		snprintf(payload_exp, sizeof(payload_exp), times[i].fmt, (long long)now + times[i].off);
		t = forge(hs, payload_exp, SECRET, NULL);
		int r = verify(keys, t, err, sizeof(err));
		if (r != times[i].want)
			fprintf(stderr, "time case %zu (%s): got %d (%s)\n", i, payload_exp, r, err);
		CHECK_INT(r, times[i].want);
		free(t);
	}
	snprintf(payload_nbf, sizeof(payload_nbf), "{\"sub\":\"x\",\"exp\":%lld}", (long long)now - 100);
	t = forge(hs, payload_nbf, SECRET, NULL);
	CHECK_INT(verify(keys, t, err, sizeof(err)), CRYPTO_JWT_EEXPIRED);
	CHECK(strstr(err, "expired") != NULL);
	free(t);

	/* Structure: not three parts, empty parts, junk, padding, size. */
	static const char *const shapes[] = {
		"", "abc", "a.b", "a.b.c.d", "..", ".e30.", "e30..", "eyJhbGciOiJIUzI1NiJ9",
		"eyJhbGciOiJIUzI1NiJ9.e30", "eyJhbGciOiJIUzI1NiJ9=.e30.AAAA", "!!!.e30.AAAA",
		"eyJhbGciOiJIUzI1NiJ9.e30.AAAA.", "eyJhbGciOiJIUzI1NiJ9 .e30.AAAA",
	};
	for (size_t i = 0; i < ARRAY_SIZE(shapes); i++) {
		int r = verify(keys, shapes[i], err, sizeof(err));
		if (r != CRYPTO_JWT_EMALFORMED)
			fprintf(stderr, "shape '%s': got %d (%s)\n", shapes[i], r, err);
		CHECK_INT(r, CRYPTO_JWT_EMALFORMED);
	}
	CHECK_INT(crypto_jwt_verify(keys, NULL, now, 30, NULL, err, sizeof(err)), CRYPTO_JWT_EMALFORMED);
	char *huge = malloc(CRYPTO_JWT_MAX_LEN + 100);
	memset(huge, 'A', CRYPTO_JWT_MAX_LEN + 99);
	huge[CRYPTO_JWT_MAX_LEN + 99] = '\0';
	huge[10] = '.';
	huge[20] = '.';
	CHECK_INT(verify(keys, huge, err, sizeof(err)), CRYPTO_JWT_EMALFORMED);
	CHECK(strstr(err, "longer") != NULL);
	free(huge);

	/* No key at all. */
	struct crypto_jwt_keys *none = crypto_jwt_keys_new(NULL, NULL, err, sizeof(err));
	CHECK(none != NULL);
	t = forge(hs, payload, SECRET, NULL);
	CHECK_INT(verify(none, t, err, sizeof(err)), CRYPTO_JWT_ENOKEY);
	CHECK_INT(crypto_jwt_verify(NULL, t, now, 30, NULL, err, sizeof(err)), CRYPTO_JWT_ENOKEY);
	free(t);
	crypto_jwt_keys_free(none);
	crypto_jwt_keys_free(keys);
	CHECK_STR(crypto_jwt_strerror(CRYPTO_JWT_EEXPIRED), "token expired");
}

/* Writes 'text' to tmpdir/name; returns the path (static buffer rotation). */
static const char *put_file(const char *name, const char *text)
{
	static char paths[4][512];
	static int next;
	char *p = paths[next++ % 4];
	snprintf(p, 512, "%s/%s", tmpdir, name);
	FILE *f = fopen(p, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	return p;
}

static char *run(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	if (!p)
		return NULL;
	size_t cap = 65536, len = 0, n;
	char *out = calloc(1, cap);
	while (out && (n = fread(out + len, 1, cap - 1 - len, p)) > 0)
		len += n;
	int st = pclose(p);
	if (!out || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		free(out);
		return NULL;
	}
	while (len && (out[len - 1] == '\n' || out[len - 1] == '\r'))
		out[--len] = '\0';
	return out;
}

/* The independent side: python3's hmac/base64 make an HS256 token, and
 * python3 + the openssl tool make and check ES256 tokens (openssl signs in
 * DER; the script converts between DER and the JOSE R||S form). */
static const char fixture_py[] =
	"import base64, hashlib, hmac, json, subprocess, sys\n"
	"def b64(b): return base64.urlsafe_b64encode(b).rstrip(b'=').decode()\n"
	"def unb64(s): return base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))\n"
	"def der_int(b):\n"
	"    b = b.lstrip(b'\\0') or b'\\0'\n"
	"    if b[0] & 0x80: b = b'\\0' + b\n"
	"    return b'\\x02' + bytes([len(b)]) + b\n"
	"def der_sig(rs):\n"
	"    body = der_int(rs[:32]) + der_int(rs[32:])\n"
	"    return b'\\x30' + bytes([len(body)]) + body\n"
	"def raw_sig(der):\n"
	"    i = 2; out = b''\n"
	"    for _ in range(2):\n"
	"        n = der[i + 1]; v = der[i + 2:i + 2 + n]; i += 2 + n\n"
	"        out += v.lstrip(b'\\0').rjust(32, b'\\0')\n"
	"    return out\n"
	"cmd = sys.argv[1]\n"
	"if cmd == 'hs256':\n"
	"    secret, sub, exp = sys.argv[2], sys.argv[3], int(sys.argv[4])\n"
	"    h = b64(json.dumps({'typ': 'JWT', 'alg': 'HS256'}).encode())\n"
	"    p = b64(json.dumps({'sub': sub, 'exp': exp, 'name': 'Zo\\u00eb'}).encode())\n"
	"    s = b64(hmac.new(secret.encode(), (h + '.' + p).encode(), hashlib.sha256).digest())\n"
	"    print(h + '.' + p + '.' + s)\n"
	"elif cmd == 'es256-sign':\n"
	"    key, sub, exp = sys.argv[2], sys.argv[3], int(sys.argv[4])\n"
	"    h = b64(json.dumps({'alg': 'ES256', 'typ': 'JWT'}).encode())\n"
	"    p = b64(json.dumps({'sub': sub, 'exp': exp}).encode())\n"
	"    der = subprocess.run(['openssl', 'dgst', '-sha256', '-sign', key], input=(h + '.' + p).encode(),\n"
	"                         capture_output=True, check=True).stdout\n"
	"    rs = raw_sig(der)\n"
	"    # JOSE signers leave S as it comes; the verifier takes only the low\n"
	"    # one of (r, s) and (r, n - s): 'low' (default) or 'high' picks one.\n"
	"    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551\n"
	"    sv = int.from_bytes(rs[32:], 'big')\n"
	"    want_high = len(sys.argv) > 5 and sys.argv[5] == 'high'\n"
	"    if (sv > n // 2) != want_high: sv = n - sv\n"
	"    print(h + '.' + p + '.' + b64(rs[:32] + sv.to_bytes(32, 'big')))\n"
	"elif cmd == 'es256-verify':\n"
	"    pub, tok, sigfile = sys.argv[2], sys.argv[3], sys.argv[4]\n"
	"    h, p, s = tok.split('.')\n"
	"    rs = unb64(s)\n"
	"    assert len(rs) == 64\n"
	"    open(sigfile, 'wb').write(der_sig(rs))\n"
	"    r = subprocess.run(['openssl', 'dgst', '-sha256', '-verify', pub, '-signature', sigfile],\n"
	"                       input=(h + '.' + p).encode(), capture_output=True)\n"
	"    print(r.stdout.decode().strip())\n"
	"    sys.exit(r.returncode)\n";

static void test_independent_hs256(const char *py)
{
	char cmd[1024], err[256];
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' hs256 '%s' carol %lld", py, SECRET, (long long)now + 120);
	char *tok = run(cmd);
	CHECK(tok != NULL);
	if (!tok)
		return;
	struct crypto_jwt_keys *keys = crypto_jwt_keys_new(SECRET, NULL, err, sizeof(err));
	cJSON *claims = NULL;
	int r = crypto_jwt_verify(keys, tok, now, 30, &claims, err, sizeof(err));
	if (r)
		fprintf(stderr, "python token refused: %s\n", err);
	CHECK_INT(r, 0);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(claims, "sub")), "carol");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(claims, "name")), "Zo\xc3\xab");
	cJSON_Delete(claims);
	/* The same token after its exp + leeway. */
	CHECK_INT(crypto_jwt_verify(keys, tok, now + 151, 30, NULL, err, sizeof(err)), CRYPTO_JWT_EEXPIRED);
	crypto_jwt_keys_free(keys);
	free(tok);
}

struct es_race {
	struct crypto_jwt_keys *keys;
	char *toks[8];
	atomic_int bad;
};

static void *es_verifier(void *arg)
{
	struct es_race *r = arg;
	char err[256];
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 8; i++) {
			cJSON *claims = NULL;
			if (crypto_jwt_verify(r->keys, r->toks[i], now, 30, &claims, err, sizeof(err)) != 0 ||
			    !claims)
				atomic_fetch_add(&r->bad, 1);
			cJSON_Delete(claims);
		}
	return NULL;
}

/* Four threads verify the same ES256 tokens at once: the first round runs
 * the full ECDSA check on several key copies in parallel, the second hits
 * the cache. */
static void test_es256_threads(void)
{
	char *priv = NULL, *pub = NULL, err[256];
	struct es_race r = { 0 };
	CHECK_INT(crypto_ec_keypair_pem(&priv, &pub), 0);
	r.keys = crypto_jwt_keys_new(NULL, pub, err, sizeof(err));
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "sub", "frank");
	for (int i = 0; i < 8; i++) {
		cJSON_DeleteItemFromObject(c, "exp");
		cJSON_AddNumberToObject(c, "exp", (double)(now + 100 + i));
		r.toks[i] = crypto_jwt_sign_es256(priv, c, err, sizeof(err));
	}
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, es_verifier, &r);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(atomic_load(&r.bad), 0);
	for (int i = 0; i < 8; i++)
		free(r.toks[i]);
	cJSON_Delete(c);
	crypto_jwt_keys_free(r.keys);
	free(priv);
	free(pub);
}

static void test_es256(const char *py)
{
	char cmd[2048], err[256];
	/* Keys made by openssl. */
	char keyp[512], pubp[512];
	snprintf(keyp, sizeof(keyp), "%s/es.key", tmpdir);
	snprintf(pubp, sizeof(pubp), "%s/es.pub", tmpdir);
	snprintf(cmd, sizeof(cmd),
		 "openssl ecparam -name prime256v1 -genkey -noout -out '%s' && openssl ec -in '%s' -pubout -out '%s' 2>/dev/null",
		 keyp, keyp, pubp);
	char *o = run(cmd);
	CHECK(o != NULL);
	free(o);
	char *pub = util_read_file(pubp, NULL), *priv = util_read_file(keyp, NULL);
	CHECK(pub && priv);
	if (!pub || !priv)
		goto out;
	struct crypto_jwt_keys *keys = crypto_jwt_keys_new(NULL, pub, err, sizeof(err));
	CHECK(keys != NULL);
	if (!keys)
		goto out;

	/* openssl signs, we verify (several times: R or S with a leading zero
	 * byte is a DER corner the conversion must handle). */
	int ok = 0;
	for (int i = 0; i < 6; i++) {
		snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' es256-sign '%s' dave %lld", py, keyp,
			 (long long)now + 300);
		char *tok = run(cmd);
		CHECK(tok != NULL);
		if (!tok)
			continue;
		cJSON *claims = NULL;
		int r = crypto_jwt_verify(keys, tok, now, 30, &claims, err, sizeof(err));
		if (r)
			fprintf(stderr, "openssl ES256 token refused: %s\n", err);
		ok += r == 0;
		CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(claims, "sub")), "dave");
		cJSON_Delete(claims);
		/* A changed payload breaks the signature. */
		char *dot = strchr(tok, '.');
		dot[2] = dot[2] == 'A' ? 'B' : 'A';
		r = crypto_jwt_verify(keys, tok, now, 30, NULL, err, sizeof(err));
		CHECK(r == CRYPTO_JWT_ESIGNATURE || r == CRYPTO_JWT_EMALFORMED);
		free(tok);
	}
	CHECK_INT(ok, 6);

	/* The high-S twin of a valid signature is refused: a token has one
	 * signature only. */
	for (int i = 0; i < 3; i++) {
		snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' es256-sign '%s' dave %lld high", py, keyp,
			 (long long)now + 300);
		char *tok = run(cmd);
		CHECK(tok != NULL);
		if (tok)
			CHECK_INT(crypto_jwt_verify(keys, tok, now, 30, NULL, err, sizeof(err)), CRYPTO_JWT_ESIGNATURE);
		free(tok);
	}

	/* A verified token is remembered, but its exp is still checked and a
	 * token differing in one signature byte is still refused. */
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' es256-sign '%s' dave %lld", py, keyp, (long long)now + 300);
	char *again = run(cmd);
	CHECK(again != NULL);
	if (again) {
		CHECK_INT(crypto_jwt_verify(keys, again, now, 30, NULL, err, sizeof(err)), 0);
		CHECK_INT(crypto_jwt_verify(keys, again, now, 30, NULL, err, sizeof(err)), 0);
		CHECK_INT(crypto_jwt_verify(keys, again, now + 1000, 30, NULL, err, sizeof(err)), CRYPTO_JWT_EEXPIRED);
		char *last = again + strlen(again) - 3;
		*last = *last == 'A' ? 'B' : 'A';
		int r = crypto_jwt_verify(keys, again, now, 30, NULL, err, sizeof(err));
		CHECK(r == CRYPTO_JWT_ESIGNATURE || r == CRYPTO_JWT_EMALFORMED);
		free(again);
	}

	/* We sign, openssl verifies. */
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "sub", "erin");
	cJSON_AddNumberToObject(c, "exp", (double)(now + 60));
	for (int i = 0; i < 4; i++) {
		char *tok = crypto_jwt_sign_es256(priv, c, err, sizeof(err));
		CHECK(tok != NULL);
		if (!tok)
			continue;
		CHECK_INT(crypto_jwt_verify(keys, tok, now, 30, NULL, err, sizeof(err)), 0);
		/* Its S is the low one: the top byte of S is at most 0x7f (n/2
		 * of P-256 is 0x7fffffff80...). */
		size_t slen = 0;
		uint8_t *sig = crypto_base64url_decode(strrchr(tok, '.') + 1, strlen(strrchr(tok, '.') + 1), &slen);
		CHECK(sig && slen == 64 && sig[32] <= 0x7f);
		free(sig);
		char sigp[512];
		snprintf(sigp, sizeof(sigp), "%s/sig.der", tmpdir);
		snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' es256-verify '%s' '%s' '%s'", py, pubp, tok, sigp);
		char *v = run(cmd);
		CHECK(v && strcmp(v, "Verified OK") == 0);
		free(v);
		free(tok);
	}

	/* An HS256 token is refused by ES256-only keys (no algorithm
	 * confusion: the public key text is never used as an HMAC secret). */
	char *hs = crypto_jwt_sign_hs256(pub, c);
	CHECK_INT(crypto_jwt_verify(keys, hs, now, 30, NULL, err, sizeof(err)), CRYPTO_JWT_EALG);
	free(hs);

	/* Our own key pair generator, and a token from another key. */
	char *p2 = NULL, *q2 = NULL;
	CHECK_INT(crypto_ec_keypair_pem(&p2, &q2), 0);
	char *tok2 = crypto_jwt_sign_es256(p2, c, err, sizeof(err));
	CHECK_INT(crypto_jwt_verify(keys, tok2, now, 30, NULL, err, sizeof(err)), CRYPTO_JWT_ESIGNATURE);
	struct crypto_jwt_keys *keys2 = crypto_jwt_keys_new(SECRET, q2, err, sizeof(err));
	CHECK_INT(crypto_jwt_verify(keys2, tok2, now, 30, NULL, err, sizeof(err)), 0);
	/* Both kinds configured: both accepted. */
	char *hs2 = crypto_jwt_sign_hs256(SECRET, c);
	CHECK_INT(crypto_jwt_verify(keys2, hs2, now, 30, NULL, err, sizeof(err)), 0);
	free(hs2);
	/* A signature of the wrong length. */
	static const uint8_t short_sig[63];
	char *s63 = crypto_base64url_encode(short_sig, sizeof(short_sig));
	char *cut = malloc(strlen(tok2) + strlen(s63) + 2);
	strcpy(cut, tok2);
	strcpy(strrchr(cut, '.') + 1, s63);
	CHECK_INT(crypto_jwt_verify(keys2, cut, now, 30, NULL, err, sizeof(err)), CRYPTO_JWT_ESIGNATURE);
	free(cut);
	free(s63);
	crypto_jwt_keys_free(keys2);
	free(tok2);
	free(p2);
	free(q2);
	cJSON_Delete(c);
	crypto_jwt_keys_free(keys);

	/* Keys that are not P-256 public keys are refused at set-up. */
	CHECK(crypto_jwt_keys_new(NULL, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", err,
				  sizeof(err)) == NULL);
	snprintf(cmd, sizeof(cmd), "openssl ecparam -name secp384r1 -genkey -noout 2>/dev/null | openssl ec -pubout 2>/dev/null");
	char *p384 = run(cmd);
	if (p384) {
		CHECK(crypto_jwt_keys_new(NULL, p384, err, sizeof(err)) == NULL);
		CHECK(strstr(err, "P-256") != NULL);
	}
	free(p384);
	CHECK(crypto_jwt_sign_es256("not a key", NULL, err, sizeof(err)) == NULL);
out:
	free(pub);
	free(priv);
}

static double mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* EDGEREC_BENCH=1: prints the cost of one verification (the figures the
 * HTTP server's per-request budget depends on). */
static void bench(void)
{
	char *priv = NULL, *pub = NULL, err[256];
	if (crypto_ec_keypair_pem(&priv, &pub) < 0)
		return;
	struct crypto_jwt_keys *k = crypto_jwt_keys_new(SECRET, pub, err, sizeof(err));
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "sub", "alice");
	cJSON_AddNumberToObject(c, "exp", (double)(now + 3600));
	char *hs = crypto_jwt_sign_hs256(SECRET, c), *es = crypto_jwt_sign_es256(priv, c, err, sizeof(err));
	int n = 20000;
	double t0 = mono();
	for (int i = 0; i < n; i++) {
		cJSON *cl = NULL;
		crypto_jwt_verify(k, hs, now, 30, &cl, err, sizeof(err));
		cJSON_Delete(cl);
	}
	double hs_us = (mono() - t0) / n * 1e6;
	t0 = mono();
	for (int i = 0; i < 50; i++)
		free(crypto_jwt_sign_es256(priv, c, err, sizeof(err)));
	double sign_us = (mono() - t0) / 50 * 1e6;
	/* Fresh tokens each time: the full ECDSA verification. */
	char *toks[50];
	for (int i = 0; i < 50; i++) {
		cJSON_ReplaceItemInObject(c, "exp", cJSON_CreateNumber((double)(now + 3600 + i)));
		toks[i] = crypto_jwt_sign_es256(priv, c, err, sizeof(err));
	}
	t0 = mono();
	for (int i = 0; i < 50; i++)
		crypto_jwt_verify(k, toks[i], now, 30, NULL, err, sizeof(err));
	double es_us = (mono() - t0) / 50 * 1e6;
	t0 = mono();
	for (int i = 0; i < n; i++)
		crypto_jwt_verify(k, toks[i % 50], now, 30, NULL, err, sizeof(err));
	double es_cached_us = (mono() - t0) / n * 1e6;
	printf("bench: HS256 verify %.1f us, ES256 verify %.0f us (first time) / %.1f us (repeat token), "
	       "ES256 sign %.0f us\n", hs_us, es_us, es_cached_us, sign_us);
	for (int i = 0; i < 50; i++)
		free(toks[i]);
	free(hs);
	free(es);
	free(priv);
	free(pub);
	cJSON_Delete(c);
	crypto_jwt_keys_free(k);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_crypto_jwt.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	now = (int64_t)time(NULL);
	const char *py = put_file("fixture.py", fixture_py);
	test_rfc7515_a1();
	test_sign_verify_roundtrip();
	test_defects();
	test_max_lifetime();
	test_independent_hs256(py);
	test_es256(py);
	test_es256_threads();
	if (getenv("EDGEREC_BENCH"))
		bench();
	util_rm_rf(tmpdir);
	return check_exit();
}
