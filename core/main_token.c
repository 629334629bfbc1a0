/* main_token: `edgerec token` mints a development JWT (HS256) from the
 * configured secret, the same one `edgerec serve` verifies with. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common_util.h"
#include "config.h"
#include "crypto.h"
#include "crypto_jwt.h"
#include "http.h"
#include "main.h"

#define TOKEN_DEFAULT_CONFIG "/etc/edgerec/edgerec.conf"
#define TOKEN_DEFAULT_TTL_S 3600
#define TOKEN_MAX_TTL_S (10LL * 365 * 86400)

static void token_usage(FILE *out)
{
	fprintf(out,
		"usage: edgerec token --user ID [--ttl SECONDS] [--roles a,b] [--config PATH]\n"
		"\n"
		"Prints a JWT (HS256) for user ID, signed with jwt_secret from the\n"
		"configuration (file, then EDGEREC_* environment), or with the secret\n"
		"the server keeps in state_dir/jwt_secret when jwt_secret is not set.\n"
		"\n"
		"  --user ID       the token's subject (sub), required\n"
		"  --ttl T         lifetime: seconds or 30m, 12h, 7d (default %d s)\n"
		"  --roles LIST    comma-separated roles claim (e.g. admin)\n"
		"  --config PATH   configuration file (default %s if it exists)\n",
		TOKEN_DEFAULT_TTL_S, TOKEN_DEFAULT_CONFIG);
}

/* Adds "roles": ["a", "b"] from a comma-separated list. Returns 0 or -1
 * when an entry is empty. */
static int token_add_roles(cJSON *claims, const char *list)
{
	cJSON *arr = cJSON_AddArrayToObject(claims, "roles");
	char *copy = strdup(list), *save = NULL;
	int rc = -1;
	if (!arr || !copy)
		goto out;
	if (!*copy || copy[strlen(copy) - 1] == ',' || copy[0] == ',' || strstr(copy, ",,"))
		goto out;
	for (char *r = strtok_r(copy, ",", &save); r; r = strtok_r(NULL, ",", &save))
		if (!cJSON_AddItemToArray(arr, cJSON_CreateString(r)))
			goto out;
	rc = 0;
out:
	free(copy);
	return rc;
}

/* Finds the signing secret: jwt_secret, else state_dir/jwt_secret as the
 * server left it. Returns 0 or -1 with the reason printed. */
static int token_secret(const struct config *c, char *out, size_t outlen)
{
	char path[4096], err[512];
	const char *secret = config_get_str(c, "jwt_secret");
	const char *state_dir = config_get_str(c, "state_dir");
	if (secret && *secret) {
		if (strlen(secret) + 1 > outlen) {
			fprintf(stderr, "edgerec token: jwt_secret is too long\n");
			return -1;
		}
		util_strlcpy(out, secret, outlen);
		return 0;
	}
	if (!state_dir || !*state_dir ||
	    snprintf(path, sizeof(path), "%s/jwt_secret", state_dir) >= (int)sizeof(path)) {
		fprintf(stderr, "edgerec token: no jwt_secret is configured and state_dir is not set\n");
		return -1;
	}
	if (crypto_load_or_create_secret(path, false, out, outlen, err, sizeof(err)) < 0) {
		fprintf(stderr,
			"edgerec token: no jwt_secret is configured, and the server's secret is not "
			"available (%s).\nSet jwt_secret in the configuration (or EDGEREC_JWT_SECRET), "
			"or start `edgerec serve` once: it creates %s.\n", err, path);
		return -1;
	}
	return 0;
}

int main_token(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "user", required_argument, NULL, 'u' },
		{ "ttl", required_argument, NULL, 't' },
		{ "roles", required_argument, NULL, 'r' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *user = NULL, *roles = NULL, *config_path = NULL;
	long long ttl_ms = TOKEN_DEFAULT_TTL_S * 1000LL;
	char err[512], secret[1024];
	struct config *c = NULL;
	cJSON *claims = NULL;
	char *token = NULL;
	int rc = 2, opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "u:t:r:c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'u': user = optarg; break;
		case 'r': roles = optarg; break;
		case 'c': config_path = optarg; break;
		case 't':
			if (config_parse_duration(optarg, &ttl_ms) < 0 || ttl_ms < 1000 ||
			    ttl_ms / 1000 > TOKEN_MAX_TTL_S) {
				fprintf(stderr, "edgerec token: --ttl '%s' is not a lifetime between 1 s and 10 years\n",
					optarg);
				return 2;
			}
			break;
		case 'h': token_usage(stdout); return 0;
		default: token_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "edgerec token: unexpected argument '%s'\n", argv[optind]);
		token_usage(stderr);
		return 2;
	}
	if (!user || !*user) {
		fprintf(stderr, "edgerec token: --user is required\n");
		token_usage(stderr);
		return 2;
	}

	rc = 1;
	time_t now = time(NULL);
	claims = cJSON_CreateObject();
	if (!claims || !cJSON_AddStringToObject(claims, "sub", user) ||
	    !cJSON_AddNumberToObject(claims, "iat", (double)now) ||
	    !cJSON_AddNumberToObject(claims, "exp", (double)(now + ttl_ms / 1000))) {
		fprintf(stderr, "edgerec token: out of memory\n");
		goto out;
	}
	if (roles && token_add_roles(claims, roles) < 0) {
		fprintf(stderr, "edgerec token: --roles '%s' is not a comma-separated list\n", roles);
		rc = 2;
		goto out;
	}
	/* jwt_secret and state_dir are declared once, in the server's
	 * http_options; the file may hold every other module's keys too, so
	 * unknown keys are allowed here. */
	c = config_new();
	if (!c || config_register(c, http_options) < 0) {
		fprintf(stderr, "edgerec token: cannot set up the configuration\n");
		goto out;
	}
	config_allow_unknown(c, true);
	if (!config_path && access(TOKEN_DEFAULT_CONFIG, F_OK) == 0)
		config_path = TOKEN_DEFAULT_CONFIG;
	if (config_path && config_load_file(c, config_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "edgerec token: %s\n", err);
		goto out;
	}
	if (config_apply_env_checked(c, err, sizeof(err)) < 0) {
		fprintf(stderr, "edgerec token: %s\n", err);
		goto out;
	}
	if (token_secret(c, secret, sizeof(secret)) < 0)
		goto out;
	token = crypto_jwt_sign_hs256(secret, claims);
	if (!token) {
		fprintf(stderr, "edgerec token: signing failed\n");
		goto out;
	}
	printf("%s\n", token);
	rc = 0;
out:
	memset(secret, 0, sizeof(secret));
	free(token);
	cJSON_Delete(claims);
	config_free(c);
	return rc;
}
