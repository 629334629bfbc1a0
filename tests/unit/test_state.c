/* test_state: the recording record (constructor, validator, setters), the
 * statuses and transitions of SPEC §3, and the Redis URL parser. No Redis. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common_util.h"
#include "state.h"
#include "state_internal.h"

static const char *const spec_fields[] = {
	"recording_id", "room_id", "user_id", "format", "quality", "quality_settings", "status",
	"storage_backend", "local_path", "s3_key", "file_name", "started_at", "paused_at",
	"stopped_at", "resumed_at", "processed_at", "duration_seconds", "file_size_bytes",
	"metadata", "error",
};

static cJSON *make_record(void)
{
	struct state_record_init in = {
		.room_id = "room_123", .user_id = "user_456", .format = "webm", .quality = "medium",
		.resolution = "1280x720", .video_bitrate = "2.5M", .audio_bitrate = "128k", .fps = 30,
		.local_path = "/tmp/webrtc_recordings/x",
	};
	char err[256] = "";
	cJSON *rec = state_record_new(&in, err, sizeof err);
	if (!rec)
		fprintf(stderr, "state_record_new: %s\n", err);
	return rec;
}

static void test_record_shape(void)
{
	cJSON *rec = make_record();
	CHECK(rec != NULL);
	if (!rec)
		return;
	/* Exactly the SPEC fields, in order, with the reference's types. */
	const cJSON *it = rec->child;
	for (size_t i = 0; i < ARRAY_SIZE(spec_fields); i++, it = it ? it->next : NULL) {
		CHECK(it != NULL);
		if (it)
			CHECK_STR(it->string, spec_fields[i]);
	}
	CHECK(it == NULL);
	CHECK(util_uuid_valid(state_record_str(rec, "recording_id")));
	CHECK_STR(state_record_str(rec, "status"), "pending");
	CHECK_STR(state_record_str(rec, "storage_backend"), "local");
	char want[128];
	snprintf(want, sizeof want, "recording_%s.webm", state_record_str(rec, "recording_id"));
	CHECK_STR(state_record_str(rec, "file_name"), want);
	CHECK(cJSON_IsNull(cJSON_GetObjectItem(rec, "s3_key")));
	CHECK(cJSON_IsNull(cJSON_GetObjectItem(rec, "paused_at")));
	CHECK(cJSON_IsNull(cJSON_GetObjectItem(rec, "error")));
	CHECK(cJSON_IsString(cJSON_GetObjectItem(rec, "started_at")));
	CHECK(cJSON_IsNumber(cJSON_GetObjectItem(rec, "duration_seconds")));
	CHECK(cJSON_IsNumber(cJSON_GetObjectItem(rec, "file_size_bytes")));
	const cJSON *meta = cJSON_GetObjectItem(rec, "metadata");
	CHECK(cJSON_IsObject(meta) && meta->child == NULL);
	const cJSON *q = cJSON_GetObjectItem(rec, "quality_settings");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(q, "resolution")), "1280x720");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(q, "video_bitrate")), "2.5M");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(q, "audio_bitrate")), "128k");
	CHECK_INT(cJSON_GetObjectItem(q, "fps")->valueint, 30);
	CHECK_INT(state_record_validate(rec, NULL, 0), STATE_OK);
	cJSON_Delete(rec);
}

/* Applies 'mutate' to a fresh valid record and expects the validator to
 * refuse it with a message containing 'needle'. */
static void expect_invalid(void (*mutate)(cJSON *), const char *needle, int line)
{
	cJSON *rec = make_record();
	if (!rec) {
		CHECK(rec != NULL);
		return;
	}
	mutate(rec);
	char err[256] = "";
	int rc = state_record_validate(rec, err, sizeof err);
	if (rc != STATE_ERR_INVALID || !strstr(err, needle)) {
		fprintf(stderr, "line %d: rc %d err '%s', expected '%s'\n", line, rc, err, needle);
		CHECK(0);
	} else {
		CHECK(1);
	}
	cJSON_Delete(rec);
}

static void m_extra(cJSON *r) { cJSON_AddStringToObject(r, "owner_node", "x"); }
static void m_missing(cJSON *r) { cJSON_DeleteItemFromObject(r, "s3_key"); }
static void m_bad_id(cJSON *r) { state_record_set_str(r, "recording_id", "not-a-uuid"); }
static void m_bad_status(cJSON *r) { state_record_set_str(r, "status", "running"); }
static void m_bad_format(cJSON *r) { state_record_set_str(r, "format", "avi"); }
static void m_bad_quality(cJSON *r) { state_record_set_str(r, "quality", "4k"); }
static void m_bad_backend(cJSON *r) { state_record_set_str(r, "storage_backend", "ftp"); }
static void m_bad_time(cJSON *r) { state_record_set_str(r, "paused_at", "yesterday"); }
static void m_null_room(cJSON *r) { state_record_set_str(r, "room_id", NULL); }
static void m_neg_duration(cJSON *r) { state_record_set_number(r, "duration_seconds", -1); }
static void m_frac_bytes(cJSON *r) { state_record_set_number(r, "file_size_bytes", 1.5); }
static void m_meta_array(cJSON *r) { cJSON_ReplaceItemInObject(r, "metadata", cJSON_CreateArray()); }
static void m_error_number(cJSON *r) { cJSON_ReplaceItemInObject(r, "error", cJSON_CreateNumber(3)); }
static void m_q_extra(cJSON *r) { cJSON_AddNumberToObject(cJSON_GetObjectItem(r, "quality_settings"), "crf", 3); }
static void m_q_res(cJSON *r)
{
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "quality_settings"), "resolution", cJSON_CreateString("big"));
}
static void m_q_fps(cJSON *r)
{
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "quality_settings"), "fps", cJSON_CreateString("30"));
}
static void m_dup(cJSON *r) { cJSON_AddStringToObject(r, "room_id", "again"); }

static void test_record_validator(void)
{
	expect_invalid(m_extra, "unknown field 'owner_node'", __LINE__);
	expect_invalid(m_missing, "missing field 's3_key'", __LINE__);
	expect_invalid(m_bad_id, "recording_id must be a uuid", __LINE__);
	expect_invalid(m_bad_status, "status has an unknown value 'running'", __LINE__);
	expect_invalid(m_bad_format, "format", __LINE__);
	expect_invalid(m_bad_quality, "quality", __LINE__);
	expect_invalid(m_bad_backend, "storage_backend", __LINE__);
	expect_invalid(m_bad_time, "paused_at", __LINE__);
	expect_invalid(m_null_room, "room_id must be a non-empty string", __LINE__);
	expect_invalid(m_neg_duration, "duration_seconds", __LINE__);
	expect_invalid(m_frac_bytes, "file_size_bytes", __LINE__);
	expect_invalid(m_meta_array, "metadata must be an object", __LINE__);
	expect_invalid(m_error_number, "error must be a string or null", __LINE__);
	expect_invalid(m_q_extra, "unknown field 'crf'", __LINE__);
	expect_invalid(m_q_res, "resolution", __LINE__);
	expect_invalid(m_q_fps, "fps", __LINE__);
	expect_invalid(m_dup, "appears twice", __LINE__);

	char err[128];
	CHECK_INT(state_record_validate(NULL, err, sizeof err), STATE_ERR_INVALID);
	cJSON *arr = cJSON_CreateArray();
	CHECK_INT(state_record_validate(arr, err, sizeof err), STATE_ERR_INVALID);
	cJSON_Delete(arr);
}

static void test_record_setters(void)
{
	cJSON *rec = make_record();
	if (!rec) {
		CHECK(rec != NULL);
		return;
	}
	CHECK_INT(state_record_set_status(rec, STATE_STATUS_RECORDING), STATE_OK);
	CHECK_INT(state_record_status(rec), STATE_STATUS_RECORDING);
	CHECK_INT(state_record_set_time(rec, "paused_at", 1700000000123000000LL), STATE_OK);
	CHECK_STR(state_record_str(rec, "paused_at"), "2023-11-14T22:13:20.123Z");
	CHECK_INT(state_record_set_time(rec, "paused_at", 0), STATE_OK);
	CHECK(cJSON_IsNull(cJSON_GetObjectItem(rec, "paused_at")));
	CHECK_INT(state_record_set_number(rec, "duration_seconds", 12.5), STATE_OK);
	CHECK_INT(state_record_set_str(rec, "error", "boom"), STATE_OK);
	CHECK_INT(state_record_set_str(rec, "not_a_field", "x"), STATE_ERR_INVALID);
	CHECK_INT(state_record_set_status(rec, (enum state_status)42), STATE_ERR_INVALID);
	CHECK_INT(state_record_validate(rec, NULL, 0), STATE_OK);
	/* The field order survives setters. */
	const cJSON *it = rec->child;
	for (size_t i = 0; i < ARRAY_SIZE(spec_fields) && it; i++, it = it->next)
		CHECK_STR(it->string, spec_fields[i]);
	cJSON_Delete(rec);

	char err[128] = "";
	struct state_record_init bad = { .room_id = "r" };
	CHECK(state_record_new(&bad, err, sizeof err) == NULL);
	CHECK(err[0] != 0);
	struct state_record_init badfmt = {
		.room_id = "r", .user_id = "u", .format = "avi", .quality = "low", .resolution = "854x480",
		.video_bitrate = "1M", .audio_bitrate = "96k", .fps = 24,
	};
	CHECK(state_record_new(&badfmt, err, sizeof err) == NULL);
	CHECK(strstr(err, "format") != NULL);
	struct state_record_init given = badfmt;
	given.format = "mkv";
	given.recording_id = "9b2f8c1e-4d7a-4f3b-8e6c-1a2b3c4d5e6f";
	given.storage_backend = "s3";
	cJSON *r2 = state_record_new(&given, err, sizeof err);
	CHECK(r2 != NULL);
	CHECK_STR(state_record_str(r2, "file_name"), "recording_9b2f8c1e-4d7a-4f3b-8e6c-1a2b3c4d5e6f.mkv");
	CHECK_STR(state_record_str(r2, "storage_backend"), "s3");
	cJSON_Delete(r2);
}

static void test_statuses(void)
{
	CHECK_INT(state_status_parse("paused"), STATE_STATUS_PAUSED);
	CHECK_INT(state_status_parse("PAUSED"), -1);
	CHECK_INT(state_status_parse(NULL), -1);
	for (int s = 0; s < STATE_STATUS_COUNT; s++)
		CHECK_INT(state_status_parse(state_status_name(s)), s);
	CHECK(state_status_name(STATE_STATUS_COUNT) == NULL);
	CHECK(state_status_is_live(STATE_STATUS_PENDING));
	CHECK(state_status_is_live(STATE_STATUS_PAUSED));
	CHECK(!state_status_is_live(STATE_STATUS_PROCESSING));

	/* The whole transition table of SPEC §3: every pair, allowed or not. */
	static const char *const allowed[] = {
		"pending>recording", "pending>cancelled", "pending>failed",
		"recording>paused", "recording>processing", "recording>cancelled", "recording>failed",
		"paused>recording", "paused>processing", "paused>cancelled", "paused>failed",
		"processing>completed", "processing>failed",
	};
	for (int from = 0; from < STATE_STATUS_COUNT; from++) {
		for (int to = 0; to < STATE_STATUS_COUNT; to++) {
			char pair[64];
			snprintf(pair, sizeof pair, "%s>%s", state_status_name(from), state_status_name(to));
			bool want = false;
			for (size_t i = 0; i < ARRAY_SIZE(allowed); i++)
				if (strcmp(allowed[i], pair) == 0)
					want = true;
			if (state_transition_allowed(from, to) != want) {
				fprintf(stderr, "transition %s: expected %s\n", pair, want ? "allowed" : "refused");
				CHECK(0);
			}
		}
	}
}

static void test_url(void)
{
	struct state_url u;
	char err[256];
	CHECK_INT(state_url_parse("redis://127.0.0.1:6380/2", &u, err, sizeof err), 0);
	CHECK_STR(u.host, "127.0.0.1");
	CHECK_INT(u.port, 6380);
	CHECK_INT(u.db, 2);
	CHECK_INT(state_url_parse("redis://localhost", &u, err, sizeof err), 0);
	CHECK_INT(u.port, 6379);
	CHECK_INT(u.db, 0);
	CHECK_INT(state_url_parse("redis://:s3cret@db.local:7000", &u, err, sizeof err), 0);
	CHECK_STR(u.password, "s3cret");
	CHECK_STR(u.user, "");
	CHECK_STR(u.host, "db.local");
	CHECK_INT(state_url_parse("redis://:p@ss/w0rd@cache:6390/4", &u, err, sizeof err), 0);
	CHECK_STR(u.password, "p@ss/w0rd");
	CHECK_STR(u.host, "cache");
	CHECK_INT(u.port, 6390);
	CHECK_INT(u.db, 4);
	CHECK_INT(state_url_parse("redis://app:pw@[::1]:7001/1", &u, err, sizeof err), 0);
	CHECK_STR(u.user, "app");
	CHECK_STR(u.password, "pw");
	CHECK_STR(u.host, "::1");
	CHECK_INT(u.port, 7001);
	CHECK_INT(state_url_parse("unix:///var/lib/edgerec/redis.sock?db=3", &u, err, sizeof err), 0);
	CHECK_STR(u.unix_path, "/var/lib/edgerec/redis.sock");
	CHECK_INT(u.db, 3);
	CHECK_INT(state_url_parse("/run/redis.sock", &u, err, sizeof err), 0);
	CHECK_STR(u.unix_path, "/run/redis.sock");

	static const char *const bad[] = {
		"", "http://x", "redis://", "redis://host:0", "redis://host:70000", "redis://host:abc",
		"redis://host/x", "unix:relative.sock", "unix:///a?x=1", "redis://[::1", "redis://:@",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = 0;
		if (state_url_parse(bad[i], &u, err, sizeof err) != -1 || !err[0]) {
			fprintf(stderr, "url '%s' was accepted\n", bad[i]);
			CHECK(0);
		}
	}
	CHECK_INT(state_url_parse(NULL, &u, err, sizeof err), -1);
	CHECK_INT(u.nsentinels, 0);
	CHECK_STR(u.master_name, "");
}

static void test_url_sentinel(void)
{
	struct state_url u;
	char err[256];
	CHECK_INT(state_url_parse("redis-sentinel://10.0.0.1:26380,sentinel-b,[::1]:5000/mymaster", &u, err,
				  sizeof err),
		  0);
	CHECK_INT(u.nsentinels, 3);
	CHECK_STR(u.sentinels[0].host, "10.0.0.1");
	CHECK_INT(u.sentinels[0].port, 26380);
	CHECK_STR(u.sentinels[1].host, "sentinel-b");
	CHECK_INT(u.sentinels[1].port, 26379);
	CHECK_STR(u.sentinels[2].host, "::1");
	CHECK_INT(u.sentinels[2].port, 5000);
	CHECK_STR(u.master_name, "mymaster");
	CHECK_INT(u.db, 0);
	CHECK_STR(u.host, "");
	CHECK_STR(u.password, "");
	/* The credentials and the database are the master's. */
	CHECK_INT(state_url_parse("redis-sentinel://app:p@ss/w0rd@s1:1,s2:2/cache.eu-1/7", &u, err, sizeof err), 0);
	CHECK_STR(u.user, "app");
	CHECK_STR(u.password, "p@ss/w0rd");
	CHECK_INT(u.nsentinels, 2);
	CHECK_STR(u.sentinels[1].host, "s2");
	CHECK_INT(u.sentinels[1].port, 2);
	CHECK_STR(u.master_name, "cache.eu-1");
	CHECK_INT(u.db, 7);
	CHECK_INT(state_url_parse("redis-sentinel://:secret@one/m_1/", &u, err, sizeof err), 0);
	CHECK_INT(u.nsentinels, 1);
	CHECK_STR(u.password, "secret");
	CHECK_STR(u.master_name, "m_1");

	static const struct {
		const char *url, *why;
	} bad[] = {
		{ "redis-sentinel://", "no master name" },
		{ "redis-sentinel://s1:26379", "no master name" },
		{ "redis-sentinel://s1:26379/", "no master name" },
		{ "redis-sentinel://s1:26379//3", "no master name" },
		{ "redis-sentinel:///mymaster", "an empty sentinel address" },
		{ "redis-sentinel://s1,,s2/mymaster", "an empty sentinel address" },
		{ "redis-sentinel://s1,/mymaster", "an empty sentinel address" },
		{ "redis-sentinel://s1:0/mymaster", "bad port" },
		{ "redis-sentinel://s1:26379,s2:x/mymaster", "bad port" },
		{ "redis-sentinel://[::1/mymaster", "unterminated [ipv6]" },
		{ "redis-sentinel://:26379/mymaster", "no host" },
		{ "redis-sentinel://s1/my master", "the master name may hold" },
		{ "redis-sentinel://s1/mymaster/x", "bad database number" },
		{ "redis-sentinel://s1/mymaster/1/2", "bad database number" },
		{ "sentinel://s1/mymaster", "expected redis://" },
		{ "rediss://host", "expected redis://" },
		{ "redis-sentinel://a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q/mymaster", "more than 16 sentinels" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = 0;
		if (state_url_parse(bad[i].url, &u, err, sizeof err) != -1 || !strstr(err, bad[i].why)) {
			fprintf(stderr, "url '%s': got '%s', expected '%s'\n", bad[i].url, err, bad[i].why);
			CHECK(0);
		}
	}
	/* An error names the URL without its password. */
	CHECK_INT(state_url_parse("redis-sentinel://app:hunter2@s1:99999/mymaster", &u, err, sizeof err), -1);
	CHECK(strstr(err, "hunter2") == NULL);
	CHECK(strstr(err, "redis-sentinel://app:***@s1:99999/mymaster") != NULL);
	CHECK_INT(state_url_parse("redis://:hunter2@host:abc", &u, err, sizeof err), -1);
	CHECK(strstr(err, "hunter2") == NULL);
}

int main(void)
{
	test_record_shape();
	test_record_validator();
	test_record_setters();
	test_statuses();
	test_url();
	test_url_sentinel();
	CHECK_STR(state_strerror(STATE_DEFERRED), "redis unreachable, write deferred");
	return check_exit();
}
