/* test_crypto: digests, MACs and encodings against published vectors (FIPS
 * 180-2, RFC 4231, RFC 1321, RFC 4648), random bytes, the JWT secret file
 * and the self-signed certificate (read back with the openssl tool). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common_util.h"
#include "crypto.h"
#include "crypto_password.h"

static char tmpdir[256];

static void hexeq(const uint8_t *d, size_t len, const char *want, int line)
{
	char hex[2 * 64 + 1];
	crypto_hex(d, len, hex);
	check_count++;
	if (strcmp(hex, want) != 0) {
		check_failures++;
		fprintf(stderr, "%s:%d: got %s, expected %s\n", __FILE__, line, hex, want);
	}
}
#define HEXEQ(d, len, want) hexeq((d), (len), (want), __LINE__)

static void test_sha256(void)
{
	uint8_t out[32];
	crypto_sha256("abc", 3, out);
	HEXEQ(out, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	crypto_sha256("", 0, out);
	HEXEQ(out, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	crypto_sha256(m2, strlen(m2), out);
	HEXEQ(out, 32, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

	/* One million 'a', fed in uneven pieces through the incremental API. */
	char *a = malloc(1000000);
	memset(a, 'a', 1000000);
	struct crypto_sha256_ctx ctx;
	crypto_sha256_init(&ctx);
	size_t off = 0, step = 1;
	while (off < 1000000) {
		size_t n = step < 1000000 - off ? step : 1000000 - off;
		crypto_sha256_update(&ctx, a + off, n);
		off += n;
		step = step * 3 + 1;
	}
	crypto_sha256_final(&ctx, out);
	HEXEQ(out, 32, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	crypto_sha256(a, 1000000, out);
	HEXEQ(out, 32, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(a);
}

static void test_hmac(void)
{
	uint8_t key[131], data[152], out[32];
	/* RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (5 is a truncated MAC). */
	memset(key, 0x0b, 20);
	crypto_hmac_sha256(key, 20, "Hi There", 8, out);
	HEXEQ(out, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	crypto_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, out);
	HEXEQ(out, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	memset(key, 0xaa, 20);
	memset(data, 0xdd, 50);
	crypto_hmac_sha256(key, 20, data, 50, out);
	HEXEQ(out, 32, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
	for (int i = 0; i < 25; i++)
		key[i] = (uint8_t)(i + 1);
	memset(data, 0xcd, 50);
	crypto_hmac_sha256(key, 25, data, 50, out);
	HEXEQ(out, 32, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
	memset(key, 0xaa, 131);
	const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
	crypto_hmac_sha256(key, 131, d6, strlen(d6), out);
	HEXEQ(out, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
	const char *d7 = "This is a test using a larger than block-size key and a larger than "
			 "block-size data. The key needs to be hashed before being used by the HMAC "
			 "algorithm.";
	crypto_hmac_sha256(key, 131, d7, strlen(d7), out);
	HEXEQ(out, 32, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");

	/* The output may overwrite the key or the data (SigV4's key chain). */
	uint8_t k[32], d[32], want[32];
	memset(k, 0x11, sizeof(k));
	memset(d, 0x22, sizeof(d));
	crypto_hmac_sha256(k, 32, d, 32, want);
	crypto_hmac_sha256(k, 32, d, 32, k);
	CHECK(memcmp(k, want, 32) == 0);
	memset(k, 0x11, sizeof(k));
	crypto_hmac_sha256(k, 32, d, 32, d);
	CHECK(memcmp(d, want, 32) == 0);
	memcpy(d, "abc", 3);
	crypto_sha256(d, 3, d);
	HEXEQ(d, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_md5(void)
{
	uint8_t out[16];
	crypto_md5("", 0, out);
	HEXEQ(out, 16, "d41d8cd98f00b204e9800998ecf8427e");
	crypto_md5("abc", 3, out);
	HEXEQ(out, 16, "900150983cd24fb0d6963f7d28e17f72");
	crypto_md5("message digest", 14, out);
	HEXEQ(out, 16, "f96b697d7cb7938d525a2f31aaf161d0");
}

static void test_base64(void)
{
	/* RFC 4648 §10. */
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const std[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	static const char *const url[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };
	for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
		char *e = crypto_base64_encode(plain[i], strlen(plain[i]));
		CHECK_STR(e, std[i]);
		free(e);
		e = crypto_base64url_encode(plain[i], strlen(plain[i]));
		CHECK_STR(e, url[i]);
		free(e);
		size_t n = 99;
		char *d = crypto_base64_decode(std[i], strlen(std[i]), &n);
		CHECK(d != NULL);
		CHECK_INT(n, strlen(plain[i]));
		CHECK(d && memcmp(d, plain[i], n) == 0 && d[n] == '\0');
		free(d);
		d = crypto_base64url_decode(url[i], strlen(url[i]), &n);
		CHECK(d != NULL);
		CHECK_INT(n, strlen(plain[i]));
		CHECK(d && memcmp(d, plain[i], n) == 0);
		free(d);
	}
	/* The url alphabet: bytes fb ff bf encode to "-_-_" in url, "+/+/" in std. */
	static const uint8_t odd[] = { 0xfb, 0xff, 0xbf };
	char *e = crypto_base64url_encode(odd, 3);
	CHECK_STR(e, "-_-_");
	free(e);
	e = crypto_base64_encode(odd, 3);
	CHECK_STR(e, "+/+/");
	free(e);

	/* Malformed input is refused, never half-decoded. */
	static const char *const bad_std[] = { "Zg=", "Zg", "Z===", "Zm9v\n", " Zm9v", "Zm9-", "Zg==Zg==",
					       "Zh==", "Zm9=", "=Zm9", "Zm=v" };
	for (size_t i = 0; i < ARRAY_SIZE(bad_std); i++) {
		void *d = crypto_base64_decode(bad_std[i], strlen(bad_std[i]), NULL);
		if (d)
			fprintf(stderr, "accepted bad base64 '%s'\n", bad_std[i]);
		CHECK(d == NULL);
		free(d);
	}
	static const char *const bad_url[] = { "Zg==", "Z", "Zm9v+", "Zm9v/", "Zh", "Zm9", "Zm 9v", "Zm9v=" };
	for (size_t i = 0; i < ARRAY_SIZE(bad_url); i++) {
		void *d = crypto_base64url_decode(bad_url[i], strlen(bad_url[i]), NULL);
		if (d)
			fprintf(stderr, "accepted bad base64url '%s'\n", bad_url[i]);
		CHECK(d == NULL);
		free(d);
	}
	/* Embedded NUL within the given length. */
	CHECK(crypto_base64url_decode("Zm\0v", 4, NULL) == NULL);

	/* Round trip of every byte value at every length up to 70. */
	uint8_t buf[70];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 37 + 11);
	int bad = 0;
	for (size_t len = 0; len <= sizeof(buf); len++) {
		char *s = crypto_base64url_encode(buf, len), *t = crypto_base64_encode(buf, len);
		size_t n1 = 0, n2 = 0;
		uint8_t *d1 = crypto_base64url_decode(s, strlen(s), &n1);
		uint8_t *d2 = crypto_base64_decode(t, strlen(t), &n2);
		if (!d1 || !d2 || n1 != len || n2 != len || memcmp(d1, buf, len) || memcmp(d2, buf, len))
			bad++;
		free(s);
		free(t);
		free(d1);
		free(d2);
	}
	CHECK_INT(bad, 0);
}

static void test_memeq_random(void)
{
	CHECK(crypto_memeq("abcd", "abcd", 4));
	CHECK(!crypto_memeq("abcd", "abce", 4));
	CHECK(!crypto_memeq("\x80", "\x00", 1));
	CHECK(crypto_memeq("", "x", 0));

	uint8_t a[2048], b[2048];
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	CHECK_INT(crypto_random(a, sizeof(a)), 0);
	CHECK_INT(crypto_random(b, sizeof(b)), 0);
	CHECK(memcmp(a, b, sizeof(a)) != 0);
	/* A crude sanity check of the output: all byte values show up. */
	int seen[256] = { 0 }, distinct = 0;
	for (size_t i = 0; i < sizeof(a); i++)
		seen[a[i]]++;
	for (int i = 0; i < 256; i++)
		distinct += seen[i] > 0;
	CHECK(distinct > 240);
}

static void *random_thread(void *arg)
{
	uint8_t buf[64];
	int *fails = arg;
	for (int i = 0; i < 2000; i++)
		if (crypto_random(buf, sizeof(buf)) != 0)
			(*fails)++;
	return NULL;
}

static void test_random_threads(void)
{
	pthread_t t[4];
	int fails[4] = { 0 };
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, random_thread, &fails[i]);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(fails[0] + fails[1] + fails[2] + fails[3], 0);
}

static void test_secret_file(void)
{
	char path[512], s1[128], s2[128], err[256];
	struct stat st;
	snprintf(path, sizeof(path), "%s/jwt_secret", tmpdir);

	CHECK_INT(crypto_load_or_create_secret(path, false, s1, sizeof(s1), err, sizeof(err)), -1);
	CHECK(strstr(err, "does not exist") != NULL);
	CHECK_INT(crypto_load_or_create_secret(path, true, s1, sizeof(s1), err, sizeof(err)), 1);
	CHECK_INT(strlen(s1), 43);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK_INT(crypto_load_or_create_secret(path, true, s2, sizeof(s2), err, sizeof(err)), 0);
	CHECK_STR(s2, s1);
	CHECK_INT(crypto_load_or_create_secret(path, false, s2, sizeof(s2), err, sizeof(err)), 0);
	CHECK_STR(s2, s1);
	/* Too small a buffer is an error, not a cut secret. */
	CHECK_INT(crypto_load_or_create_secret(path, false, s2, 10, err, sizeof(err)), -1);

	/* An operator's own secret: blanks and the newline around it are not part of it. */
	FILE *f = fopen(path, "w");
	fputs("  my own secret \n\n", f);
	fclose(f);
	CHECK_INT(crypto_load_or_create_secret(path, true, s2, sizeof(s2), err, sizeof(err)), 0);
	CHECK_STR(s2, "my own secret");
	f = fopen(path, "w");
	fputs(" \n", f);
	fclose(f);
	CHECK_INT(crypto_load_or_create_secret(path, true, s2, sizeof(s2), err, sizeof(err)), -1);
	CHECK(strstr(err, "empty") != NULL);
	unlink(path);

	/* Not in a writable place: a clear error. */
	CHECK_INT(crypto_load_or_create_secret("/nonexistent-dir/x/jwt_secret", true, s2, sizeof(s2), err,
					       sizeof(err)), -1);
	CHECK(strstr(err, "/nonexistent-dir/x/jwt_secret") != NULL);

	/* Many processes racing to create it end up with one secret. */
	pid_t kids[6];
	for (int i = 0; i < 6; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			char s[128], e[256], out[300];
			int r = crypto_load_or_create_secret(path, true, s, sizeof(s), e, sizeof(e));
			snprintf(out, sizeof(out), "%s/out.%d", tmpdir, i);
			FILE *o = fopen(out, "w");
			if (o) {
				fprintf(o, "%d %s\n", r, r >= 0 ? s : e);
				fclose(o);
			}
			_exit(0);
		}
	}
	for (int i = 0; i < 6; i++)
		waitpid(kids[i], NULL, 0);
	char first[200] = "", line[200];
	int created = 0;
	for (int i = 0; i < 6; i++) {
		char out[300];
		int r = -9;
		snprintf(out, sizeof(out), "%s/out.%d", tmpdir, i);
		FILE *o = fopen(out, "r");
		CHECK(o != NULL);
		if (!o)
			continue;
		if (fscanf(o, "%d %199s", &r, line) != 2)
			r = -9;
		fclose(o);
		CHECK(r == 0 || r == 1);
		created += r == 1;
		if (!first[0])
			util_strlcpy(first, line, sizeof(first));
		CHECK_STR(line, first);
	}
	CHECK_INT(created, 1);
}

/* Runs a shell command and returns its output (malloc'd) or NULL when it
 * failed. */
static char *run(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	if (!p)
		return NULL;
	size_t cap = 65536, len = 0;
	char *out = calloc(1, cap);
	size_t n;
	while (out && (n = fread(out + len, 1, cap - 1 - len, p)) > 0)
		len += n;
	int st = pclose(p);
	if (!out || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

static void test_selfsigned(void)
{
	char cert[512], key[512], err[256], cmd[2048];
	struct stat st;
	snprintf(cert, sizeof(cert), "%s/server.crt", tmpdir);
	snprintf(key, sizeof(key), "%s/server.key", tmpdir);

	CHECK_INT(crypto_selfsigned_cert(cert, key, "edge-box.local", err, sizeof(err)), 0);
	CHECK(stat(key, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(stat(cert, &st) == 0 && st.st_size > 300);

	snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -noout -text -dates 2>&1", cert);
	char *text = run(cmd);
	CHECK(text != NULL);
	if (text) {
		CHECK(strstr(text, "DNS:localhost") != NULL);
		CHECK(strstr(text, "DNS:edge-box.local") != NULL);
		CHECK(strstr(text, "IP Address:127.0.0.1") != NULL);
		CHECK(strstr(text, "CN = edge-box.local") != NULL);
		CHECK(strstr(text, "prime256v1") != NULL || strstr(text, "P-256") != NULL);
		CHECK(strstr(text, "ecdsa-with-SHA256") != NULL);
		/* 10 years: valid 9.9 years from now, not 10.1. */
		snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -noout -checkend %lld", cert,
			 (long long)(9.9 * 365.25 * 86400));
		char *ok = run(cmd);
		CHECK(ok != NULL);
		free(ok);
		snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -noout -checkend %lld", cert,
			 (long long)(10.1 * 365.25 * 86400));
		char *late = run(cmd);
		CHECK(late == NULL);
		free(late);
		if (!strstr(text, "DNS:localhost"))
			fprintf(stderr, "%s\n", text);
	}
	free(text);
	/* The key belongs to the certificate. */
	snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -noout -pubkey", cert);
	char *p1 = run(cmd);
	snprintf(cmd, sizeof(cmd), "openssl pkey -in '%s' -pubout", key);
	char *p2 = run(cmd);
	CHECK(p1 && p2 && strcmp(p1, p2) == 0);
	free(p1);
	free(p2);
	/* Signature checks out against its own key. */
	snprintf(cmd, sizeof(cmd), "openssl verify -check_ss_sig -partial_chain -CAfile '%s' '%s' 2>&1", cert, cert);
	char *v = run(cmd);
	CHECK(v && strstr(v, "OK"));
	if (!v)
		fprintf(stderr, "openssl verify failed\n");
	free(v);

	/* An IP address as name goes into the IP SAN. */
	CHECK_INT(crypto_selfsigned_cert(cert, key, "192.168.7.9", err, sizeof(err)), 0);
	snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -noout -ext subjectAltName", cert);
	text = run(cmd);
	CHECK(text && strstr(text, "IP Address:192.168.7.9") && strstr(text, "DNS:localhost"));
	free(text);

	/* Bad names and paths fail cleanly. */
	CHECK_INT(crypto_selfsigned_cert(cert, key, "bad name,O=x", err, sizeof(err)), -1);
	CHECK(strstr(err, "not a host name") != NULL);
	CHECK_INT(crypto_selfsigned_cert("/nonexistent-dir/c.pem", "/nonexistent-dir/k.pem", NULL, err,
					 sizeof(err)), -1);
	CHECK(strstr(err, "nonexistent-dir") != NULL);
}

/* Password hash lines: a line made by Python's hashlib.pbkdf2_hmac (a
 * PBKDF2 nobody here wrote) verifies; fresh lines verify and differ by
 * salt; malformed lines are refused, not crashed on. */
static void test_password(void)
{
	static const char known[] = "pbkdf2-sha256$1000$ZWRnZXJlYy1zYWx0LTE2Yg$jcFyjq_EDpTzk6eCexNha6mEl7s3n7bDte4Azg7ppwY";
	CHECK_INT(crypto_password_verify(known, "correct horse"), 1);
	CHECK_INT(crypto_password_verify(known, "correct horsf"), 0);
	CHECK_INT(crypto_password_verify(known, ""), 0);
	CHECK(crypto_password_line_valid(known));
	char *a = crypto_password_hash("s3cret-pass", 1000);
	char *b = crypto_password_hash("s3cret-pass", 1000);
	CHECK(a && b && strcmp(a, b) != 0);
	CHECK(a && strncmp(a, "pbkdf2-sha256$1000$", 19) == 0);
	CHECK_INT(crypto_password_verify(a, "s3cret-pass"), 1);
	CHECK_INT(crypto_password_verify(b, "s3cret-pasS"), 0);
	free(a);
	free(b);
	CHECK(crypto_password_hash("x", 999) == NULL);
	static const char *const bad[] = {
		"", "pbkdf2-sha256$", "pbkdf2-sha256$1000$", "pbkdf2-sha256$1000$$abc",
		"pbkdf2-sha1$1000$ZWRnZXJlYy1zYWx0LTE2Yg$jcFyjq_EDpTzk6eCexNha6mEl7s3n7bDte4Azg7ppwY",
		"pbkdf2-sha256$999$ZWRnZXJlYy1zYWx0LTE2Yg$jcFyjq_EDpTzk6eCexNha6mEl7s3n7bDte4Azg7ppwY",
		"pbkdf2-sha256$-5$ZWRnZXJlYy1zYWx0LTE2Yg$jcFyjq_EDpTzk6eCexNha6mEl7s3n7bDte4Azg7ppwY",
		"pbkdf2-sha256$99999999999$ZWRnZXJlYy1zYWx0LTE2Yg$jcFyjq_EDpTzk6eCexNha6mEl7s3n7bDte4Azg7ppwY",
		"pbkdf2-sha256$1000$ZWRnZXJlYy1zYWx0LTE2Yg$jcFyjq_EDpTzk6eCexNha6mEl7s3n7bDte4Azg7ppw",
		"pbkdf2-sha256$1000$c2FsdA$jcFyjq_EDpTzk6eCexNha6mEl7s3n7bDte4Azg7ppwY",
		"pbkdf2-sha256$1000$ZWRnZXJlYy1zYWx0LTE2Yg=$jcFyjq_EDpTzk6eCexNha6mEl7s3n7bDte4Azg7ppwY",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(!crypto_password_line_valid(bad[i]));
		CHECK_INT(crypto_password_verify(bad[i], "correct horse"), -1);
	}
	CHECK(!crypto_password_line_valid(NULL));
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_crypto.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_sha256();
	test_hmac();
	test_md5();
	test_base64();
	test_memeq_random();
	test_random_threads();
	test_secret_file();
	test_selfsigned();
	test_password();
	util_rm_rf(tmpdir);
	return check_exit();
}
