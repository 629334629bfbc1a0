/* fuzz_config_parse: the configuration file parser and the value parsers
 * on arbitrary text. After a successful load every getter must work and
 * every stored value must still pass its type's parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static const struct config_option fuzz_options[] = {
	{ "redis_url", CONFIG_STR, "", "" },
	{ "max_concurrent_recordings", CONFIG_INT, "10", "" },
	{ "enable_transcoding", CONFIG_BOOL, "true", "" },
	{ "max_recording_duration", CONFIG_DURATION, "7200", "" },
	{ "ratio", CONFIG_DOUBLE, "1.5", "" },
	{ "s3.bucket", CONFIG_STR, NULL, "" },
	{ "s3.part_size", CONFIG_SIZE, "8M", "" },
	{ "room.*.source", CONFIG_STR, "test", "" },
	{ "room.*.args", CONFIG_STR, NULL, "" },
	{ "a.*", CONFIG_INT, NULL, "" },
	{ 0 },
};

struct check {
	const struct config *c;
};

static void visit(void *opaque, const char *key, const char *value)
{
	struct check *ck = opaque;
	const char *again = config_get_str(ck->c, key);
	if (!again || strcmp(again, value) != 0)
		abort();
	(void)config_get_int(ck->c, key);
	(void)config_get_double(ck->c, key);
	(void)config_get_bool(ck->c, key);
	(void)config_origin(ck->c, key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = config_new();
	char err[512];
	if (!c || config_register(c, fuzz_options) < 0)
		abort();
	config_allow_unknown(c, size && (data[0] & 1));
	int r = config_load_string(c, "fuzz.conf", (const char *)data, size, err, sizeof(err));
	if (r < 0 && strncmp(err, "fuzz.conf", 9) != 0)
		abort();
	struct check ck = { c };
	config_foreach(c, NULL, visit, &ck);
	config_foreach(c, "room.", visit, &ck);
	long long v;
	const char *n = config_get_str(c, "max_concurrent_recordings");
	if (!n || config_parse_int(n, &v) < 0)
		abort();
	n = config_get_str(c, "s3.part_size");
	if (!n || config_parse_size(n, &v) < 0)
		abort();
	n = config_get_str(c, "max_recording_duration");
	if (!n || config_parse_duration(n, &v) < 0)
		abort();
	/* A later table must not break on whatever was kept. */
	static const struct config_option later[] = { { "later.x", CONFIG_INT, NULL, "" }, { 0 } };
	(void)config_register(c, later);
	config_free(c);

	/* The value parsers on the raw text. */
	char *s = malloc(size + 1);
	if (s) {
		memcpy(s, data, size);
		s[size] = '\0';
		bool b;
		double d;
		(void)config_parse_size(s, &v);
		(void)config_parse_duration(s, &v);
		(void)config_parse_int(s, &v);
		(void)config_parse_bool(s, &b);
		(void)config_parse_double(s, &d);
		free(s);
	}
	return 0;
}
