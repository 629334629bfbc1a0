/* test_config: option tables, the file syntax and its errors (with line
 * numbers), environment overrides, sizes and durations, families, and
 * readers running while a value changes. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common_util.h"
#include "config.h"

static const struct config_option opts_a[] = {
	{ "redis_url", CONFIG_STR, "", "Redis" },
	{ "max_concurrent_recordings", CONFIG_INT, "10", "limit" },
	{ "enable_transcoding", CONFIG_BOOL, "true", "remux" },
	{ "max_recording_duration", CONFIG_DURATION, "7200", "auto stop" },
	{ "spool.max", CONFIG_SIZE, "2G", "spool" },
	{ "ratio", CONFIG_DOUBLE, "0.5", "a ratio" },
	{ "s3.bucket", CONFIG_STR, NULL, "bucket" },
	{ "s3.path_style", CONFIG_BOOL, "false", "path style" },
	{ "s3_prefix", CONFIG_STR, "webrtc-recordings/", "prefix" },
	{ "room.*.source", CONFIG_STR, "test", "source" },
	{ "room.*.args", CONFIG_STR, NULL, "args" },
	{ 0 },
};

static const struct config_option opts_b[] = {
	{ "redis_url", CONFIG_STR, "", "the same key, read by a second module" },
	{ "policy_dir", CONFIG_STR, "/etc/edgerec/policies", "policies" },
	{ 0 },
};

static struct config *fresh(void)
{
	struct config *c = config_new();
	CHECK(c != NULL);
	CHECK_INT(config_register(c, opts_a), 0);
	CHECK_INT(config_register(c, opts_b), 0);
	return c;
}

static void test_parsers(void)
{
	long long v;
	bool b;
	double d;
	struct {
		const char *s;
		long long want; /* -1: invalid */
	} sizes[] = {
		{ "0", 0 }, { "512", 512 }, { "512B", 512 }, { "10K", 10240 }, { "10k", 10240 },
		{ "10M", 10485760 }, { "10MB", 10485760 }, { "10MiB", 10485760 }, { "2G", 2147483648LL },
		{ "1.5G", 1610612736LL }, { "1T", 1099511627776LL }, { "", -1 }, { "M", -1 }, { "10X", -1 },
		{ "-1", -1 }, { "10 M", -1 }, { " 10M", -1 }, { "10Mi", 10485760 }, { "1iB", -1 },
		{ "0x10", -1 }, { "1e3", -1 }, { "inf", -1 }, { "99999999999T", -1 }, { "10MM", -1 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		v = -7;
		int r = config_parse_size(sizes[i].s, &v);
		if ((sizes[i].want < 0) != (r < 0) || (r == 0 && v != sizes[i].want))
			fprintf(stderr, "size '%s': r=%d v=%lld\n", sizes[i].s, r, v);
		CHECK_INT(r, sizes[i].want < 0 ? -1 : 0);
		if (sizes[i].want >= 0)
			CHECK_INT(v, sizes[i].want);
	}
	struct {
		const char *s;
		long long want;
	} durs[] = {
		{ "7200", 7200000 }, { "30s", 30000 }, { "250ms", 250 }, { "5m", 300000 }, { "2h", 7200000 },
		{ "1.5h", 5400000 }, { "1d", 86400000 }, { "0", 0 }, { "0.5s", 500 }, { "", -1 },
		{ "s", -1 }, { "5 m", -1 }, { "-5s", -1 }, { "5min", -1 }, { "5S", -1 }, { "5sec", -1 },
		{ "1e3s", -1 }, { "nan", -1 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(durs); i++) {
		v = -7;
		int r = config_parse_duration(durs[i].s, &v);
		if ((durs[i].want < 0) != (r < 0) || (r == 0 && v != durs[i].want))
			fprintf(stderr, "duration '%s': r=%d v=%lld\n", durs[i].s, r, v);
		CHECK_INT(r, durs[i].want < 0 ? -1 : 0);
		if (durs[i].want >= 0)
			CHECK_INT(v, durs[i].want);
	}
	CHECK(config_parse_bool("Yes", &b) == 0 && b);
	CHECK(config_parse_bool("off", &b) == 0 && !b);
	CHECK(config_parse_bool("0", &b) == 0 && !b);
	CHECK_INT(config_parse_bool("y", &b), -1);
	CHECK_INT(config_parse_bool("", &b), -1);
	CHECK(config_parse_int("-42", &v) == 0 && v == -42);
	CHECK_INT(config_parse_int("42x", &v), -1);
	CHECK_INT(config_parse_int("99999999999999999999", &v), -1);
	CHECK_INT(config_parse_int(" 4", &v), -1);
	CHECK(config_parse_double("2.5", &d) == 0 && d == 2.5);
	CHECK_INT(config_parse_double("nan", &d), -1);
	CHECK_INT(config_parse_double("1.0.0", &d), -1);
}

static void test_defaults_and_types(void)
{
	struct config *c = fresh();
	CHECK_STR(config_get_str(c, "redis_url"), "");
	CHECK_INT(config_get_int(c, "max_concurrent_recordings"), 10);
	CHECK(config_get_bool(c, "enable_transcoding"));
	CHECK_INT(config_get_int(c, "max_recording_duration"), 7200000);
	CHECK(config_get_double(c, "max_recording_duration") == 7200.0);
	CHECK_INT(config_get_int(c, "spool.max"), 2147483648LL);
	CHECK(config_get_double(c, "ratio") == 0.5);
	CHECK(config_get_str(c, "s3.bucket") == NULL);
	CHECK(config_get_str(c, "no.such.key") == NULL);
	CHECK_INT(config_get_int(c, "no.such.key"), 0);
	CHECK_STR(config_get_str(c, "room.lobby.source"), "test");
	CHECK(config_get_str(c, "room.lobby.args") == NULL);
	CHECK(!config_is_set(c, "redis_url"));
	CHECK_STR(config_origin(c, "redis_url"), "default");
	CHECK(config_origin(c, "s3.bucket") == NULL);

	char err[256];
	CHECK_INT(config_set(c, "max_concurrent_recordings", "ten", err, sizeof(err)), -1);
	CHECK(strstr(err, "max_concurrent_recordings") && strstr(err, "'ten'") && strstr(err, "integer"));
	CHECK_INT(config_set(c, "max_recording_duration", "2 hours", err, sizeof(err)), -1);
	CHECK(strstr(err, "duration") != NULL);
	CHECK_INT(config_set(c, "spool.max", "lots", err, sizeof(err)), -1);
	CHECK_INT(config_set(c, "enable_transcoding", "maybe", err, sizeof(err)), -1);
	CHECK_INT(config_set(c, "ratio", "half", err, sizeof(err)), -1);
	CHECK_INT(config_set(c, "nope", "1", err, sizeof(err)), -1);
	CHECK(strstr(err, "unknown option 'nope'") != NULL);
	CHECK_INT(config_set(c, "room..source", "x", err, sizeof(err)), -1);
	CHECK_INT(config_set(c, "room.a.b.source", "x", err, sizeof(err)), -1);
	CHECK_INT(config_set(c, "room.*.source", "x", err, sizeof(err)), -1);
	CHECK_INT(config_get_int(c, "max_concurrent_recordings"), 10);

	CHECK_INT(config_set(c, "max_recording_duration", "90m", err, sizeof(err)), 0);
	CHECK_INT(config_get_int(c, "max_recording_duration"), 5400000);
	CHECK_INT(config_set(c, "enable_transcoding", "no", err, sizeof(err)), 0);
	CHECK(!config_get_bool(c, "enable_transcoding"));
	CHECK_INT(config_get_int(c, "enable_transcoding"), 0);
	CHECK_INT(config_set(c, "room.studio-2.source", "rtp", err, sizeof(err)), 0);
	CHECK_STR(config_get_str(c, "room.studio-2.source"), "rtp");
	CHECK(config_is_set(c, "room.studio-2.source"));
	CHECK_STR(config_origin(c, "room.studio-2.source"), "set");
	config_free(c);
	config_free(NULL);
}

static void test_registration(void)
{
	struct config *c = config_new();
	static const struct config_option conflict[] = { { "redis_url", CONFIG_INT, NULL, "" }, { 0 } };
	static const struct config_option bad_default[] = { { "x", CONFIG_SIZE, "big", "" }, { 0 } };
	static const struct config_option bad_key[] = { { "a b", CONFIG_STR, NULL, "" }, { 0 } };
	static const struct config_option two_stars[] = { { "a.*.*", CONFIG_STR, NULL, "" }, { 0 } };
	static const struct config_option half_star[] = { { "a.b*", CONFIG_STR, NULL, "" }, { 0 } };
	CHECK_INT(config_register(c, opts_a), 0);
	CHECK_INT(config_register(c, opts_a), 0);
	CHECK_INT(config_register(c, conflict), -1);
	CHECK_INT(config_register(c, bad_default), -1);
	CHECK_INT(config_register(c, bad_key), -1);
	CHECK_INT(config_register(c, two_stars), -1);
	CHECK_INT(config_register(c, half_star), -1);
	/* A failed table registers nothing. */
	char err[256];
	CHECK_INT(config_set(c, "x", "1", err, sizeof(err)), -1);

	/* Unknown keys kept, then checked by a table registered later. */
	config_allow_unknown(c, true);
	CHECK_INT(config_set(c, "later.count", "12", err, sizeof(err)), 0);
	CHECK_STR(config_get_str(c, "later.count"), "12");
	static const struct config_option later_ok[] = { { "later.count", CONFIG_INT, "1", "" }, { 0 } };
	static const struct config_option later_bad[] = { { "later.name", CONFIG_INT, "1", "" }, { 0 } };
	CHECK_INT(config_register(c, later_ok), 0);
	CHECK_INT(config_get_int(c, "later.count"), 12);
	CHECK_INT(config_set(c, "later.name", "abc", err, sizeof(err)), 0);
	CHECK_INT(config_register(c, later_bad), -1);
	/* Known keys are still checked when unknown ones are allowed. */
	CHECK_INT(config_set(c, "max_concurrent_recordings", "x", err, sizeof(err)), -1);
	config_free(c);
}

static int load(struct config *c, const char *text, char *err, size_t errlen)
{
	return config_load_string(c, "edgerec.conf", text, strlen(text), err, errlen);
}

static void test_file_syntax(void)
{
	struct config *c = fresh();
	char err[256] = "";
	const char *text =
		"# a comment\n"
		"   # an indented comment\n"
		"\n"
		"redis_url = redis://127.0.0.1:6390/0   # trailing comment\n"
		"max_concurrent_recordings=3\n"
		"\tmax_recording_duration   =   30m\r\n"
		"s3_prefix = \"  spaced # not a comment \\\"q\\\" \\\\ \"  # comment\n"
		"policy_dir = /srv/pol#icies\n"
		"[s3]\n"
		"bucket = recordings\n"
		"path_style = yes\n"
		"[ room.lobby ]\n"
		"source = rtp\n"
		"args = port=5004,pt=96\n"
		"[]\n"
		"ratio = 0.25\n";
	int r = load(c, text, err, sizeof(err));
	if (r)
		fprintf(stderr, "load: %s\n", err);
	CHECK_INT(r, 0);
	CHECK_STR(config_get_str(c, "redis_url"), "redis://127.0.0.1:6390/0");
	CHECK_INT(config_get_int(c, "max_concurrent_recordings"), 3);
	CHECK_INT(config_get_int(c, "max_recording_duration"), 1800000);
	CHECK_STR(config_get_str(c, "s3_prefix"), "  spaced # not a comment \"q\" \\ ");
	CHECK_STR(config_get_str(c, "policy_dir"), "/srv/pol#icies");
	CHECK_STR(config_get_str(c, "s3.bucket"), "recordings");
	CHECK(config_get_bool(c, "s3.path_style"));
	CHECK_STR(config_get_str(c, "room.lobby.source"), "rtp");
	CHECK_STR(config_get_str(c, "room.lobby.args"), "port=5004,pt=96");
	CHECK(config_get_double(c, "ratio") == 0.25);
	CHECK_STR(config_origin(c, "s3.bucket"), "edgerec.conf:10");
	CHECK_STR(config_origin(c, "room.lobby.args"), "edgerec.conf:14");
	config_free(c);

	/* An empty value is an empty string (a boolean cannot be empty). */
	c = fresh();
	CHECK_INT(load(c, "redis_url =\nmax_concurrent_recordings = 4\n", err, sizeof(err)), 0);
	CHECK_STR(config_get_str(c, "redis_url"), "");
	CHECK(config_is_set(c, "redis_url"));
	config_free(c);
}

static void test_file_errors(void)
{
	struct {
		const char *text;
		const char *want; /* substring of the error */
	} cases[] = {
		{ "redis_url = x\nmax_concurrent_recordings = ten\n", "edgerec.conf:2: max_concurrent_recordings: 'ten'" },
		{ "\n\n\nbogus_option = 1\n", "edgerec.conf:4: unknown option 'bogus_option'" },
		{ "redis_url x\n", "edgerec.conf:1: expected 'key = value'" },
		{ "= 5\n", "edgerec.conf:1: missing option name" },
		{ "# ok\n[s3\nbucket = x\n", "edgerec.conf:2: section header without ']'" },
		{ "[s3] junk\n", "edgerec.conf:1: text after section header" },
		{ "[a b]\n", "edgerec.conf:1: malformed section name" },
		{ "[s3]\nregion = x\n", "edgerec.conf:2: unknown option 's3.region'" },
		{ "s3_prefix = \"open\n", "edgerec.conf:1: unterminated quoted value" },
		{ "s3_prefix = \"a\" b\n", "edgerec.conf:1: text after the closing quote" },
		{ "s3_prefix = \"a\\n\"\n", "edgerec.conf:1: unknown escape" },
		{ "max_recording_duration = 2 hours\n", "edgerec.conf:1: max_recording_duration: '2 hours'" },
		{ "spool.max = 10 MB\n", "edgerec.conf:1: spool.max: '10 MB' is not a valid size" },
		{ "enable_transcoding = maybe\n", "edgerec.conf:1: enable_transcoding: 'maybe'" },
		{ "enable_transcoding =\n", "edgerec.conf:1: enable_transcoding: '' is not a valid boolean" },
		{ "room.lobby.extra = 1\n", "edgerec.conf:1: unknown option 'room.lobby.extra'" },
		{ "room..source = 1\n", "edgerec.conf:1: malformed option name" },
		{ "max concurrent = 1\n", "edgerec.conf:1: malformed option name" },
		{ "[room]\n*.source = x\n", "edgerec.conf:2: malformed option name" },
		{ "redis_url = a\n\n\n\n\n\n\n\n\nratio = x\n", "edgerec.conf:10:" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct config *c = fresh();
		char err[256] = "";
		int r = load(c, cases[i].text, err, sizeof(err));
		CHECK_INT(r, -1);
		if (!strstr(err, cases[i].want))
			fprintf(stderr, "case %zu: error '%s', expected '%s'\n", i, err, cases[i].want);
		CHECK(strstr(err, cases[i].want) != NULL);
		/* Nothing from a broken file is applied. */
		CHECK_STR(config_get_str(c, "redis_url"), "");
		config_free(c);
	}
	/* A NUL byte inside the text. */
	struct config *c = fresh();
	char err[256];
	CHECK_INT(config_load_string(c, "f", "redis_url = a\0b\n", 16, err, sizeof(err)), -1);
	CHECK(strstr(err, "f:1: NUL") != NULL);
	/* A missing file names the path. */
	CHECK_INT(config_load_file(c, "/nonexistent/edgerec.conf", err, sizeof(err)), -1);
	CHECK(strstr(err, "/nonexistent/edgerec.conf") != NULL);
	config_free(c);
}

static void test_load_file(void)
{
	char path[] = "/tmp/test_config.XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	const char *text = "max_concurrent_recordings = 7\n[s3]\nbucket = b1\nnope = 1\n";
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	struct config *c = fresh();
	char err[512], want[600];
	CHECK_INT(config_load_file(c, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:4: unknown option 's3.nope'", path);
	CHECK_STR(err, want);
	CHECK_INT(config_get_int(c, "max_concurrent_recordings"), 10);
	FILE *f = fopen(path, "w");
	fputs("max_concurrent_recordings = 7\n[s3]\nbucket = b1\n", f);
	fclose(f);
	CHECK_INT(config_load_file(c, path, err, sizeof(err)), 0);
	CHECK_INT(config_get_int(c, "max_concurrent_recordings"), 7);
	snprintf(want, sizeof(want), "%s:3", path);
	CHECK_STR(config_origin(c, "s3.bucket"), want);
	unlink(path);
	config_free(c);
}

static void test_env(void)
{
	struct config *c = fresh();
	char err[256];
	CHECK_INT(load(c, "redis_url = redis://file\nmax_concurrent_recordings = 3\n", err, sizeof(err)), 0);
	setenv("EDGEREC_REDIS_URL", "redis://env:6379", 1);
	setenv("EDGEREC_MAX_CONCURRENT_RECORDINGS", "25", 1);
	setenv("EDGEREC_S3_BUCKET", "from-env", 1);
	setenv("EDGEREC_S3_PATH_STYLE", "true", 1);
	setenv("EDGEREC_ROOM_lobby_SOURCE", "rtp", 1);
	setenv("EDGEREC_ROOM_class_room-3_ARGS", "port=6000", 1);
	setenv("EDGEREC_ROOM__SOURCE", "empty id", 1);
	setenv("EDGEREC_UNRELATED", "x", 1);
	config_apply_env(c);
	CHECK_STR(config_get_str(c, "redis_url"), "redis://env:6379");
	CHECK_STR(config_origin(c, "redis_url"), "env EDGEREC_REDIS_URL");
	CHECK_INT(config_get_int(c, "max_concurrent_recordings"), 25);
	CHECK_STR(config_get_str(c, "s3.bucket"), "from-env");
	CHECK(config_get_bool(c, "s3.path_style"));
	CHECK_STR(config_get_str(c, "room.lobby.source"), "rtp");
	CHECK(config_is_set(c, "room.lobby.source"));
	CHECK_STR(config_get_str(c, "room.class_room-3.args"), "port=6000");
	CHECK(!config_is_set(c, "room..source"));

	/* An invalid value: ignored by config_apply_env, reported by the checked one. */
	setenv("EDGEREC_MAX_CONCURRENT_RECORDINGS", "lots", 1);
	config_apply_env(c);
	CHECK_INT(config_get_int(c, "max_concurrent_recordings"), 25);
	CHECK_INT(config_apply_env_checked(c, err, sizeof(err)), -1);
	CHECK(strstr(err, "EDGEREC_MAX_CONCURRENT_RECORDINGS") && strstr(err, "'lots'"));
	/* The command line (config_set) wins over the environment. */
	unsetenv("EDGEREC_MAX_CONCURRENT_RECORDINGS");
	CHECK_INT(config_set(c, "redis_url", "redis://cli", err, sizeof(err)), 0);
	CHECK_STR(config_get_str(c, "redis_url"), "redis://cli");
	unsetenv("EDGEREC_REDIS_URL");
	unsetenv("EDGEREC_S3_BUCKET");
	unsetenv("EDGEREC_S3_PATH_STYLE");
	unsetenv("EDGEREC_ROOM_lobby_SOURCE");
	unsetenv("EDGEREC_ROOM_class_room-3_ARGS");
	unsetenv("EDGEREC_ROOM__SOURCE");
	unsetenv("EDGEREC_UNRELATED");
	config_free(c);
}

static void test_reload(void)
{
	char path[] = "/tmp/test_config_reload.XXXXXX", err[512];
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	FILE *f = fopen(path, "w");
	fputs("redis_url = redis://a\nmax_concurrent_recordings = 3\n[s3]\nbucket = b\n", f);
	fclose(f);
	struct config *c = fresh();
	CHECK_INT(config_load_file(c, path, err, sizeof(err)), 0);
	setenv("EDGEREC_S3_PATH_STYLE", "true", 1);
	config_apply_env(c);
	CHECK_INT(config_set(c, "policy_dir", "/srv/policies", err, sizeof(err)), 0);
	const char *old_url = config_get_str(c, "redis_url");
	CHECK_STR(old_url, "redis://a");

	f = fopen(path, "w");
	fputs("redis_url = redis://b\n[s3]\nbucket = b\n[]\nratio = 0.75\n", f);
	fclose(f);
	/* redis_url changed, max_concurrent_recordings back to its default,
	 * ratio set: three changes; the env and config_set values stay. */
	CHECK_INT(config_reload_file(c, path, err, sizeof(err)), 3);
	CHECK_STR(config_get_str(c, "redis_url"), "redis://b");
	CHECK_STR(old_url, "redis://a");
	CHECK_INT(config_get_int(c, "max_concurrent_recordings"), 10);
	CHECK_STR(config_origin(c, "max_concurrent_recordings"), "default");
	CHECK(config_get_double(c, "ratio") == 0.75);
	CHECK_STR(config_get_str(c, "s3.bucket"), "b");
	CHECK(config_get_bool(c, "s3.path_style"));
	CHECK_STR(config_get_str(c, "policy_dir"), "/srv/policies");
	CHECK_INT(config_reload_file(c, path, err, sizeof(err)), 0);

	/* A broken file or environment changes nothing. */
	f = fopen(path, "w");
	fputs("redis_url = redis://c\nratio = lots\n", f);
	fclose(f);
	CHECK_INT(config_reload_file(c, path, err, sizeof(err)), -1);
	char want[600];
	snprintf(want, sizeof(want), "%s:2: ratio", path);
	CHECK(strstr(err, want) != NULL);
	CHECK_STR(config_get_str(c, "redis_url"), "redis://b");
	f = fopen(path, "w");
	fputs("redis_url = redis://c\n", f);
	fclose(f);
	setenv("EDGEREC_S3_PATH_STYLE", "sometimes", 1);
	CHECK_INT(config_reload_file(c, path, err, sizeof(err)), -1);
	CHECK(strstr(err, "EDGEREC_S3_PATH_STYLE") != NULL);
	CHECK_STR(config_get_str(c, "redis_url"), "redis://b");
	unsetenv("EDGEREC_S3_PATH_STYLE");
	unlink(path);
	CHECK_INT(config_reload_file(c, path, err, sizeof(err)), -1);
	CHECK(strstr(err, path) != NULL);
	CHECK_STR(config_get_str(c, "redis_url"), "redis://b");
	config_free(c);
}

struct collected {
	char text[1024];
};

static void collect(void *opaque, const char *key, const char *value)
{
	struct collected *col = opaque;
	size_t n = strlen(col->text);
	snprintf(col->text + n, sizeof(col->text) - n, "%s=%s;", key, value);
}

static void test_foreach(void)
{
	struct config *c = fresh();
	char err[256];
	CHECK_INT(load(c, "[room.b]\nsource = rtp\n[room.a]\nargs = x=1\nsource = file\n", err, sizeof(err)), 0);
	struct collected col = { "" };
	config_foreach(c, "room.", collect, &col);
	CHECK_STR(col.text, "room.a.args=x=1;room.a.source=file;room.b.source=rtp;");
	col.text[0] = '\0';
	config_foreach(c, "s3", collect, &col);
	CHECK_STR(col.text, "s3.path_style=false;s3_prefix=webrtc-recordings/;");
	col.text[0] = '\0';
	config_foreach(c, NULL, collect, &col);
	CHECK(strstr(col.text, "max_concurrent_recordings=10;") != NULL);
	CHECK(strstr(col.text, "policy_dir=/etc/edgerec/policies;") != NULL);
	FILE *devnull = fopen("/dev/null", "w");
	config_dump(c, devnull);
	fclose(devnull);
	config_free(c);
}

struct race {
	struct config *c;
	atomic_int stop;
	atomic_int bad;
};

static void *reader(void *arg)
{
	struct race *r = arg;
	while (!atomic_load(&r->stop)) {
		const char *v = config_get_str(r->c, "redis_url");
		long long n = config_get_int(r->c, "max_concurrent_recordings");
		if (!v || (strcmp(v, "redis://one") != 0 && strcmp(v, "redis://two") != 0) || (n != 1 && n != 2))
			atomic_fetch_add(&r->bad, 1);
	}
	return NULL;
}

static void test_threads(void)
{
	struct race r = { .c = fresh() };
	char err[256];
	config_set(r.c, "redis_url", "redis://one", err, sizeof(err));
	config_set(r.c, "max_concurrent_recordings", "1", err, sizeof(err));
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, reader, &r);
	for (int i = 0; i < 3000; i++) {
		config_set(r.c, "redis_url", i & 1 ? "redis://one" : "redis://two", err, sizeof(err));
		config_set(r.c, "max_concurrent_recordings", i & 1 ? "1" : "2", err, sizeof(err));
	}
	atomic_store(&r.stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(atomic_load(&r.bad), 0);
	config_free(r.c);

	/* The same readers while whole files are reloaded. */
	char p1[] = "/tmp/test_config_r1.XXXXXX", p2[] = "/tmp/test_config_r2.XXXXXX";
	int f1 = mkstemp(p1), f2 = mkstemp(p2);
	const char *t1 = "redis_url = redis://one\nmax_concurrent_recordings = 1\n";
	const char *t2 = "redis_url = redis://two\nmax_concurrent_recordings = 2\n";
	CHECK(write(f1, t1, strlen(t1)) == (ssize_t)strlen(t1));
	CHECK(write(f2, t2, strlen(t2)) == (ssize_t)strlen(t2));
	close(f1);
	close(f2);
	struct race r2 = { .c = fresh() };
	CHECK_INT(config_load_file(r2.c, p1, err, sizeof(err)), 0);
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, reader, &r2);
	int reloads_ok = 0;
	for (int i = 0; i < 500; i++)
		reloads_ok += config_reload_file(r2.c, i & 1 ? p1 : p2, err, sizeof(err)) == 2;
	atomic_store(&r2.stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(reloads_ok, 500);
	CHECK_INT(atomic_load(&r2.bad), 0);
	unlink(p1);
	unlink(p2);
	config_free(r2.c);
}

/* Enumerations, secrets and live flags of a table. */
static const char *const backends[] = { "local", "s3", NULL };
static const struct config_option opts_ops[] = {
	{ "storage_backend", CONFIG_STR, "local", "backend", .choices = backends },
	{ "jwt_secret", CONFIG_STR, NULL, "secret", .flags = CONFIG_SECRET },
	{ "limit", CONFIG_INT, "3", "a live limit", .flags = CONFIG_LIVE },
	{ "url", CONFIG_STR, "", "a URL" },
	{ "fam.*.x", CONFIG_STR, NULL, "a family" },
	{ 0 },
};

static void test_choices_and_secrets(void)
{
	char err[256], shown[256];
	struct config *c = config_new();
	CHECK_INT(config_register(c, opts_ops), 0);
	CHECK_INT(config_set(c, "storage_backend", "s3", err, sizeof(err)), 0);
	CHECK_INT(config_set(c, "storage_backend", "s4", err, sizeof(err)), -1);
	CHECK(strstr(err, "storage_backend") && strstr(err, "'s4'") && strstr(err, "local, s3"));
	CHECK_STR(config_get_str(c, "storage_backend"), "s3");
	static const char text[] = "storage_backend = S3\n";
	CHECK_INT(config_load_string(c, "x.conf", text, sizeof(text) - 1, err, sizeof(err)), -1);
	CHECK(strstr(err, "x.conf:1: storage_backend") != NULL);
	/* A table whose default is not one of its choices does not register. */
	static const struct config_option bad[] = {
		{ "mode", CONFIG_STR, "c", "bad default", .choices = backends }, { 0 },
	};
	CHECK_INT(config_register(c, bad), -1);

	CHECK_INT(config_set(c, "jwt_secret", "hunter2", err, sizeof(err)), 0);
	CHECK_STR(config_display_value(c, "jwt_secret", "hunter2", shown, sizeof(shown)), "(redacted)");
	CHECK_STR(config_display_value(c, "url", "redis://:pw@h:1/0", shown, sizeof(shown)), "redis://:***@h:1/0");
	CHECK_STR(config_display_value(c, "url", "https://u:p@h/a@b", shown, sizeof(shown)), "https://u:***@h/a@b");
	CHECK_STR(config_display_value(c, "url", "redis://h:1", shown, sizeof(shown)), "redis://h:1");
	CHECK_STR(config_display_value(c, "url", "user@h", shown, sizeof(shown)), "user@h");
	CHECK_INT((int)config_flags(c, "limit"), CONFIG_LIVE);
	CHECK_INT((int)config_flags(c, "jwt_secret"), CONFIG_SECRET);
	CHECK_INT((int)config_flags(c, "nope"), 0);

	/* config_dump never prints the secret. */
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_dump(c, f);
	fclose(f);
	CHECK(buf && !strstr(buf, "hunter2") && strstr(buf, "(redacted)"));
	free(buf);
	config_free(c);
}

static void test_unknown_env(void)
{
	char names[256];
	const char *const ignore[] = { "EDGEREC_LOG", NULL };
	struct config *c = config_new();
	CHECK_INT(config_register(c, opts_ops), 0);
	/* ctest's own EDGEREC_* variables (EDGEREC_BIN, ...) count too. */
	unsetenv("EDGEREC_LOG");
	int base = config_unknown_env(c, ignore, names, sizeof(names));
	setenv("EDGEREC_LIMIT", "4", 1);
	setenv("EDGEREC_FAM_abc_X", "1", 1);
	setenv("EDGEREC_LOG", "debug", 1);
	CHECK_INT(config_unknown_env(c, ignore, names, sizeof(names)), base);
	CHECK(!strstr(names, "EDGEREC_LIMIT") && !strstr(names, "EDGEREC_FAM") && !strstr(names, "EDGEREC_LOG"));
	setenv("EDGEREC_LIMT", "4", 1);
	setenv("EDGEREC_FAM__X", "1", 1);
	CHECK_INT(config_unknown_env(c, ignore, names, sizeof(names)), base + 2);
	CHECK(strstr(names, "EDGEREC_LIMT") && strstr(names, "EDGEREC_FAM__X"));
	CHECK_INT(config_unknown_env(c, NULL, names, sizeof(names)), base + 3);
	unsetenv("EDGEREC_LIMIT");
	unsetenv("EDGEREC_FAM_abc_X");
	unsetenv("EDGEREC_LOG");
	unsetenv("EDGEREC_LIMT");
	unsetenv("EDGEREC_FAM__X");
	config_free(c);
}

struct diff_seen {
	char text[512];
	int n;
};

static void diff_cb(void *opaque, const char *key, const char *old_value, const char *new_value)
{
	struct diff_seen *d = opaque;
	size_t used = strlen(d->text);
	snprintf(d->text + used, sizeof(d->text) - used, "%s:%s>%s;", key, old_value ? old_value : "-",
		 new_value ? new_value : "-");
	d->n++;
}

static void test_snapshot_diff(void)
{
	char err[256];
	struct diff_seen d = { "", 0 };
	struct config *c = config_new();
	CHECK_INT(config_register(c, opts_ops), 0);
	CHECK_INT(config_set(c, "jwt_secret", "one", err, sizeof(err)), 0);
	struct config_snapshot *before = config_snapshot(c);
	CHECK(before != NULL);
	config_diff(c, before, diff_cb, &d);
	CHECK_INT(d.n, 0);
	CHECK_INT(config_set(c, "limit", "9", err, sizeof(err)), 0);
	CHECK_INT(config_set(c, "jwt_secret", "two", err, sizeof(err)), 0);
	CHECK_INT(config_set(c, "fam.a.x", "v", err, sizeof(err)), 0);
	config_diff(c, before, diff_cb, &d);
	CHECK_INT(d.n, 3);
	CHECK_STR(d.text, "fam.a.x:->v;jwt_secret:(redacted)>(redacted);limit:3>9;");
	config_snapshot_free(before);
	config_free(c);
}

int main(void)
{
	test_parsers();
	test_defaults_and_types();
	test_registration();
	test_file_syntax();
	test_file_errors();
	test_load_file();
	test_env();
	test_reload();
	test_foreach();
	test_threads();
	test_choices_and_secrets();
	test_unknown_env();
	test_snapshot_diff();
	return check_exit();
}
