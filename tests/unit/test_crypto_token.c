/* test_crypto_token: `edgerec token` (the built executable, EDGEREC_BIN)
 * signs with the configured secret, or with the server's state_dir secret,
 * and its tokens pass crypto_jwt_verify with the expected claims. */
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

static char tmpdir[256];
static const char *bin;

/* Runs `edgerec token ARGS`; returns the exit status, stdout (trimmed) in
 * 'out' and stderr in 'errout'. */
static int token(const char *args, char *out, size_t outlen, char *errout, size_t errlen)
{
	char cmd[2048], errpath[512];
	snprintf(errpath, sizeof(errpath), "%s/stderr", tmpdir);
	snprintf(cmd, sizeof(cmd), "'%s' token %s 2>'%s'", bin, args, errpath);
	FILE *p = popen(cmd, "r");
	size_t n = 0;
	out[0] = '\0';
	if (!p)
		return -1;
	n = fread(out, 1, outlen - 1, p);
	out[n] = '\0';
	while (n && (out[n - 1] == '\n'))
		out[--n] = '\0';
	int st = pclose(p);
	char *e = util_read_file(errpath, NULL);
	util_strlcpy(errout, e ? e : "", errlen);
	free(e);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

/* Verifies 'tok' with 'secret' and returns the claims (caller frees). */
static cJSON *claims_of(const char *tok, const char *secret)
{
	char err[256];
	cJSON *claims = NULL;
	struct crypto_jwt_keys *k = crypto_jwt_keys_new(secret, NULL, err, sizeof(err));
	int r = crypto_jwt_verify(k, tok, (int64_t)time(NULL), 30, &claims, err, sizeof(err));
	if (r)
		fprintf(stderr, "token '%s' refused: %s\n", tok, err);
	crypto_jwt_keys_free(k);
	return claims;
}

static double num(const cJSON *o, const char *name)
{
	return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

int main(void)
{
	char out[4096], err[4096], args[1024], conf[512], state[512], path[600];
	bin = getenv("EDGEREC_BIN");
	if (!bin || access(bin, X_OK) != 0) {
		fprintf(stderr, "EDGEREC_BIN is not set to the built edgerec: run under ctest\n");
		return 1;
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_crypto_token.XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	snprintf(conf, sizeof(conf), "%s/edgerec.conf", tmpdir);
	snprintf(state, sizeof(state), "%s/state", tmpdir);
	util_mkdir_p(state, 0700);
	unsetenv("EDGEREC_JWT_SECRET");
	setenv("EDGEREC_STATE_DIR", state, 1);

	/* Nothing configured, no server secret yet: it says so. */
	put(conf, "# empty\n");
	snprintf(args, sizeof(args), "--user alice --config '%s'", conf);
	CHECK_INT(token(args, out, sizeof(out), err, sizeof(err)), 1);
	CHECK(strstr(err, "no jwt_secret is configured") != NULL);
	CHECK(strstr(err, "jwt_secret") != NULL && out[0] == '\0');

	/* jwt_secret from the file, with other modules' options around it. */
	put(conf, "# sample\nmax_concurrent_recordings = 4\n[s3]\nbucket = x\n[]\n"
		  "jwt_secret = file-secret-0123456789abcdef\n");
	CHECK_INT(token(args, out, sizeof(out), err, sizeof(err)), 0);
	cJSON *c = claims_of(out, "file-secret-0123456789abcdef");
	CHECK(c != NULL);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "sub")), "alice");
	CHECK_INT((long long)(num(c, "exp") - num(c, "iat")), 3600);
	CHECK((long long)num(c, "iat") >= (long long)time(NULL) - 5);
	CHECK(cJSON_GetObjectItemCaseSensitive(c, "roles") == NULL);
	cJSON_Delete(c);

	/* The environment wins over the file; ttl and roles. */
	setenv("EDGEREC_JWT_SECRET", "env-secret-0123456789abcdef", 1);
	snprintf(args, sizeof(args), "--user bob --ttl 2h --roles admin,ops --config '%s'", conf);
	CHECK_INT(token(args, out, sizeof(out), err, sizeof(err)), 0);
	c = claims_of(out, "env-secret-0123456789abcdef");
	CHECK(c != NULL);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "sub")), "bob");
	CHECK_INT((long long)(num(c, "exp") - num(c, "iat")), 7200);
	const cJSON *roles = cJSON_GetObjectItemCaseSensitive(c, "roles");
	CHECK(cJSON_IsArray(roles) && cJSON_GetArraySize(roles) == 2);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(roles, 0)), "admin");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(roles, 1)), "ops");
	cJSON_Delete(c);
	CHECK(claims_of(out, "file-secret-0123456789abcdef") == NULL);
	unsetenv("EDGEREC_JWT_SECRET");

	/* No jwt_secret: the server's state_dir/jwt_secret. */
	char secret[128];
	snprintf(path, sizeof(path), "%s/jwt_secret", state);
	CHECK_INT(crypto_load_or_create_secret(path, true, secret, sizeof(secret), err, sizeof(err)), 1);
	put(conf, "redis_url =\n");
	snprintf(args, sizeof(args), "--user carol --ttl 60 --config '%s'", conf);
	CHECK_INT(token(args, out, sizeof(out), err, sizeof(err)), 0);
	c = claims_of(out, secret);
	CHECK(c != NULL);
	CHECK_INT((long long)(num(c, "exp") - num(c, "iat")), 60);
	cJSON_Delete(c);
	/* state_dir from the file. */
	snprintf(out, sizeof(out), "state_dir = %s/elsewhere\n", tmpdir);
	put(conf, out);
	unsetenv("EDGEREC_STATE_DIR");
	CHECK_INT(token(args, out, sizeof(out), err, sizeof(err)), 1);
	CHECK(strstr(err, "elsewhere/jwt_secret") != NULL);

	/* Bad input: a clear error and a non-zero status, never a token. */
	put(conf, "jwt_secret = x\nthis line is wrong\n");
	snprintf(args, sizeof(args), "--user dave --config '%s'", conf);
	CHECK_INT(token(args, out, sizeof(out), err, sizeof(err)), 1);
	CHECK(strstr(err, "edgerec.conf:2: expected 'key = value'") != NULL);
	CHECK(out[0] == '\0');
	snprintf(args, sizeof(args), "--user dave --config '%s/missing.conf'", tmpdir);
	CHECK_INT(token(args, out, sizeof(out), err, sizeof(err)), 1);
	CHECK(strstr(err, "missing.conf") != NULL);
	CHECK_INT(token("--ttl 60", out, sizeof(out), err, sizeof(err)), 2);
	CHECK(strstr(err, "--user is required") != NULL);
	CHECK_INT(token("--user x --ttl soon", out, sizeof(out), err, sizeof(err)), 2);
	CHECK(strstr(err, "--ttl") != NULL);
	CHECK_INT(token("--user x --ttl 0", out, sizeof(out), err, sizeof(err)), 2);
	CHECK_INT(token("--user x --roles a,,b", out, sizeof(out), err, sizeof(err)), 2);
	CHECK_INT(token("--user x extra", out, sizeof(out), err, sizeof(err)), 2);
	CHECK_INT(token("--help", out, sizeof(out), err, sizeof(err)), 0);
	CHECK(strstr(out, "usage: edgerec token") != NULL);

	util_rm_rf(tmpdir);
	return check_exit();
}
