/* itest_recorder_s3: processing with storage_backend s3 against a real
 * redis-server and a real s3rver: a recording is uploaded, verified, its
 * s3_key set and its local copy removed, and the object fetched back plays
 * for the recorded duration (ffprobe); with an access key the server does
 * not know, the recording fails with a clear error and the local file is
 * kept. */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "config.h"
#include "itest_record.h"
#include "itest_redis.h"
#include "recorder.h"
#include "s3/s3rver_harness.h"
#include "state.h"
#include "storage.h"
#include "storage_s3.h"

static struct s3rver srv;
static char tmpdir[] = "/tmp/itest_recorder_s3.XXXXXX";
static char redis_url[64];
static pid_t redis_pid;

static int start_redis(void)
{
	return itest_redis_start(itest_free_port(), tmpdir, false, &redis_pid, redis_url, sizeof(redis_url));
}

static struct config *make_config(const char *storage, const char *access_key)
{
	char err[256];
	struct config *c = config_new();
	if (!c || recorder_config_register(c) < 0 || config_register(c, storage_config_options) < 0)
		return NULL;
	const char *kv[][2] = {
		{ "local_storage_path", storage }, { "storage_backend", "s3" }, { "s3_bucket", srv.bucket },
		{ "s3_prefix", "rec/" },           { "s3.endpoint", srv.endpoint }, { "s3.path_style", "true" },
		{ "s3.access_key", access_key },   { "s3.secret_key", "S3RVER" },  { "s3.retries", "2" },
		{ "s3.backoff", "50ms" },          { "default_quality", "low" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(kv); i++) {
		if (config_set(c, kv[i][0], kv[i][1], err, sizeof(err)) < 0) {
			fprintf(stderr, "config %s: %s\n", kv[i][0], err);
			config_free(c);
			return NULL;
		}
	}
	return c;
}

static const struct recorder_caller alice = { .user_id = "alice" };

/* Records ~1 s and returns the final record (caller frees), or NULL. */
static cJSON *record_once(struct recorder *r, const char *room, const char *format)
{
	struct recorder_reply rep = { 0 };
	char id[UUID_STR_LEN] = "";
	recorder_start(r, &alice, room, format, NULL, &rep);
	CHECK_INT(rep.status, 200);
	if (rep.body && itest_str_of(rep.body, "recording_id"))
		util_strlcpy(id, itest_str_of(rep.body, "recording_id"), sizeof(id));
	cJSON_Delete(rep.body);
	time_sleep_ns(1000 * TIME_NS_PER_MS);
	recorder_stop(r, &alice, room, id, &rep);
	CHECK_INT(rep.status, 200);
	cJSON_Delete(rep.body);
	CHECK_INT(recorder_drain(r, 30 * TIME_NS_PER_SEC), 0);
	rep.body = NULL;
	recorder_status(r, &alice, room, id, &rep);
	return rep.body;
}

static void test_upload(const char *storage)
{
	char err[256];
	struct state *st = itest_state_connect(redis_url, tmpdir, "node-s3");
	struct config *c = make_config(storage, "S3RVER");
	struct recorder *r = st && c ? recorder_new(c, st, NULL, err, sizeof(err)) : NULL;
	if (!r)
		fprintf(stderr, "recorder_new: %s\n", err);
	CHECK(r != NULL);
	if (r) {
		cJSON *rec = record_once(r, "room-s3", "mp4");
		CHECK_STR(itest_str_of(rec, "status"), "completed");
		const char *id = itest_str_of(rec, "recording_id");
		char key[200];
		snprintf(key, sizeof(key), "rec/%s/recording_%s.mp4", id ? id : "", id ? id : "");
		CHECK_STR(itest_str_of(rec, "s3_key"), key);
		CHECK_STR(itest_str_of(rec, "storage_backend"), "s3");
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(rec, "metadata");
		CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(m, "local_copy")));
		char local[1200];
		snprintf(local, sizeof(local), "%s/%s", itest_str_of(rec, "local_path"), itest_str_of(rec, "file_name"));
		struct stat sb;
		CHECK(stat(local, &sb) != 0); /* removed after the object was verified */

		struct storage_s3 *s3 = storage_s3_new_from_config(c, err, sizeof(err));
		CHECK(s3 != NULL);
		int64_t size = -1;
		char etag[128];
		CHECK_INT(s3 ? storage_s3_head(s3, key, &size, etag, sizeof(etag), err, sizeof(err)) : -1, 0);
		CHECK_INT(size, (long long)itest_num_of(rec, "file_size_bytes"));
		char back[600];
		snprintf(back, sizeof(back), "%s/back.mp4", tmpdir);
		CHECK_INT(s3 ? storage_s3_get_file(s3, key, back, err, sizeof(err)) : -1, 0);
		double probe = itest_ffprobe_duration(back);
		fprintf(stderr, "object from S3: ffprobe %.3f s, duration_seconds %.3f s\n", probe,
			itest_num_of(rec, "duration_seconds"));
		CHECK(fabs(probe - itest_num_of(rec, "duration_seconds")) <= 0.050);
		storage_s3_free(s3);
		cJSON_Delete(rec);
		recorder_free(r);
	}
	config_free(c);
	state_free(st);
}

static void test_bad_key(const char *storage)
{
	char err[256];
	struct state *st = itest_state_connect(redis_url, tmpdir, "node-s3-bad");
	struct config *c = make_config(storage, "NOBODY_KNOWS_THIS_KEY");
	struct recorder *r = st && c ? recorder_new(c, st, NULL, err, sizeof(err)) : NULL;
	CHECK(r != NULL);
	if (r) {
		cJSON *rec = record_once(r, "room-s3", "webm");
		CHECK_STR(itest_str_of(rec, "status"), "failed");
		const char *e = itest_str_of(rec, "error");
		fprintf(stderr, "error with an unknown key: %s\n", e ? e : "(null)");
		CHECK(e && strstr(e, "upload") && strstr(e, "InvalidAccessKeyId"));
		CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(rec, "s3_key")));
		char local[1200];
		snprintf(local, sizeof(local), "%s/%s", itest_str_of(rec, "local_path"), itest_str_of(rec, "file_name"));
		struct stat sb;
		CHECK(stat(local, &sb) == 0 && sb.st_size > 1000); /* the only copy is kept */
		cJSON_Delete(rec);
		recorder_free(r);
	}
	config_free(c);
	state_free(st);
}

int main(void)
{
	log_set_level(-1);
	if (!mkdtemp(tmpdir) || start_redis() < 0 || s3rver_start(&srv) < 0) {
		fprintf(stderr, "cannot set up redis-server and s3rver\n");
		if (redis_pid > 0) {
			kill(redis_pid, SIGTERM);
			waitpid(redis_pid, NULL, 0);
		}
		return 1;
	}
	char storage[600];
	snprintf(storage, sizeof(storage), "%s/rec", tmpdir);
	test_upload(storage);
	test_bad_key(storage);

	s3rver_stop(&srv);
	kill(redis_pid, SIGTERM);
	waitpid(redis_pid, NULL, 0);
	if (check_failures == 0)
		util_rm_rf(tmpdir);
	else
		fprintf(stderr, "files kept in %s\n", tmpdir);
	return check_exit();
}
