/* test_config_sample: the shipped rootfs/etc/edgerec/edgerec.conf lists
 * every option the built edgerec registers, with the real default, and
 * every commented example in it is valid when uncommented. Both are asked
 * of the real executable (EDGEREC_BIN serve --print-config). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common_util.h"

#define MAX_KEYS 256

struct sample_key {
	char key[128];
	char value[256];
};

static struct sample_key keys[MAX_KEYS];
static int nkeys;

/* "# key = value" (an option line of the sample); fills key and value. */
static bool option_line(const char *line, char *key, size_t klen, char *value, size_t vlen)
{
	if (strncmp(line, "# ", 2) != 0)
		return false;
	const char *p = line + 2, *k = p;
	while (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-')
		p++;
	if (p == k || strncmp(p, " =", 2) != 0 || (p[2] != ' ' && p[2] != '\0' && p[2] != '\n'))
		return false;
	snprintf(key, klen, "%.*s", (int)(p - k), k);
	p += 2;
	while (*p == ' ')
		p++;
	snprintf(value, vlen, "%s", p);
	size_t n = strlen(value);
	while (n && (value[n - 1] == '\n' || value[n - 1] == ' '))
		value[--n] = '\0';
	return true;
}

/* "# [section]" or "# []". */
static bool section_line(const char *line)
{
	if (strncmp(line, "# [", 3) != 0)
		return false;
	const char *p = line + 3;
	while (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '.' || *p == '-' || *p == '_')
		p++;
	return *p == ']';
}

static char *run(const char *cmd, int *status)
{
	FILE *p = popen(cmd, "r");
	if (!p)
		return NULL;
	size_t cap = 1 << 20, len = 0, n;
	char *out = calloc(1, cap);
	while (out && (n = fread(out + len, 1, cap - 1 - len, p)) > 0)
		len += n;
	int st = pclose(p);
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return out;
}

static const struct sample_key *find(const char *key)
{
	for (int i = 0; i < nkeys; i++)
		if (strcmp(keys[i].key, key) == 0)
			return &keys[i];
	return NULL;
}

int main(void)
{
	const char *bin = getenv("EDGEREC_BIN"), *src = getenv("EDGEREC_SOURCE_DIR");
	char sample[1024], uncommented[] = "/tmp/test_config_sample.XXXXXX", cmd[4096];
	if (!bin || !src) {
		fprintf(stderr, "EDGEREC_BIN and EDGEREC_SOURCE_DIR must be set: run under ctest\n");
		return 1;
	}
	snprintf(sample, sizeof(sample), "%s/rootfs/etc/edgerec/edgerec.conf", src);
	FILE *in = fopen(sample, "r");
	int fd = mkstemp(uncommented);
	FILE *out = fd >= 0 ? fdopen(fd, "w") : NULL;
	CHECK(in && out);
	if (!in || !out)
		return check_exit();

	/* The sample with every option and example section uncommented. */
	char line[2048], key[128], value[256];
	while (fgets(line, sizeof(line), in)) {
		if (option_line(line, key, sizeof(key), value, sizeof(value))) {
			if (nkeys < MAX_KEYS) {
				util_strlcpy(keys[nkeys].key, key, sizeof(keys[0].key));
				util_strlcpy(keys[nkeys].value, value, sizeof(keys[0].value));
				nkeys++;
			}
			fputs(line + 2, out);
		} else if (section_line(line)) {
			fputs(line + 2, out);
		} else {
			fputs(line, out);
		}
	}
	fclose(in);
	fclose(out);
	CHECK(nkeys > 30);

	/* The sample as shipped, and uncommented, both load. */
	int status;
	snprintf(cmd, sizeof(cmd), "env -i PATH=/usr/bin:/bin '%s' serve --config '%s' --print-config 2>&1", bin,
		 uncommented);
	char *dump = run(cmd, &status);
	if (status != 0)
		fprintf(stderr, "uncommented sample refused:\n%s\n", dump ? dump : "");
	CHECK_INT(status, 0);
	free(dump);
	snprintf(cmd, sizeof(cmd), "env -i PATH=/usr/bin:/bin '%s' serve --config '%s' --print-config 2>&1", bin,
		 sample);
	dump = run(cmd, &status);
	CHECK_INT(status, 0);
	CHECK(dump != NULL);

	/* Every registered option is in the sample with its default. The dump
	 * reads "key type = value (default)  help" (value "(unset)" when the
	 * option has no default). */
	int options = 0;
	for (char *l = dump ? strtok(dump, "\n") : NULL; l; l = strtok(NULL, "\n")) {
		char *sp = strchr(l, ' ');
		char *eq = strstr(l, " = ");
		char *origin = eq ? strstr(eq, " (default)") : NULL;
		if (!sp || !eq || !origin)
			continue;
		*sp = '\0';
		if (strchr(l, '*'))
			continue;
		options++;
		char *v = eq + 3;
		*origin = '\0';
		size_t n = strlen(v);
		while (n && v[n - 1] == ' ')
			v[--n] = '\0';
		if (strcmp(v, "(unset)") == 0)
			v[0] = '\0';
		const struct sample_key *k = find(l);
		if (!k) {
			fprintf(stderr, "option %s (default '%s') is missing from %s\n", l, v, sample);
			CHECK(k != NULL);
		} else if (strcmp(k->value, v) != 0) {
			fprintf(stderr, "option %s: the sample says '%s', the default is '%s'\n", l, k->value, v);
			CHECK_STR(k->value, v);
		}
	}
	CHECK(options > 30);
	free(dump);
	unlink(uncommented);
	return check_exit();
}
