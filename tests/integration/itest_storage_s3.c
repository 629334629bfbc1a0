/* itest_storage_s3: the S3 client against a real s3rver: single and
 * multipart uploads read back byte for byte, the server killed mid-upload
 * then restarted (the upload resumes from the journal and the object is
 * identical), retries across a short outage, an unknown access key (403
 * InvalidAccessKeyId, no retry, clear error, local file intact), cancel plus
 * abort (no object and no parts left on the server's disk), and a presigned
 * GET fetched with curl. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "s3/s3rver_harness.h"
#include "storage.h"
#include "storage_s3.h"

#define MiB (1024 * 1024)

static struct s3rver srv;
static char work[] = "/tmp/itest_storage_s3.XXXXXX";

/* Writes 'size' pseudo-random bytes (seeded) to 'path'. */
static void make_file(const char *path, size_t size, unsigned seed)
{
	FILE *f = fopen(path, "wb");
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		fputc((int)(x & 0xff), f);
	}
	fclose(f);
}

static bool same_file(const char *a, const char *b)
{
	size_t la, lb;
	char *x = util_read_file(a, &la), *y = util_read_file(b, &lb);
	bool same = x && y && la == lb && memcmp(x, y, la) == 0;
	free(x);
	free(y);
	return same;
}

static struct storage_s3 *client(const char *access_key, int attempts)
{
	char err[512];
	struct storage_s3_options o = {
		.endpoint = srv.endpoint, .bucket = srv.bucket, .path_style = true,
		.access_key = access_key, .secret_key = "S3RVER", .prefix = "itest/",
		.part_size = 5 * MiB, .max_attempts = attempts, .backoff_base_ms = 50,
		.backoff_max_ms = 400, .timeout_ms = 5000,
	};
	struct storage_s3 *s3 = storage_s3_new(&o, err, sizeof(err));
	if (!s3)
		fprintf(stderr, "storage_s3_new: %s\n", err);
	return s3;
}

/* Counts entries left in s3rver's multipart upload area. */
static int uploads_left(void)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s/._S3rver_uploads", srv.dir, srv.bucket);
	DIR *d = opendir(path);
	int n = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void test_single(void)
{
	char path[300], back[300], key[128], etag[80], err[512];
	struct storage_s3 *s3 = client("S3RVER", 3);
	CHECK(s3 != NULL);
	if (!s3)
		return;
	snprintf(path, sizeof(path), "%s/single.webm", work);
	snprintf(back, sizeof(back), "%s/single.back", work);
	make_file(path, 3 * MiB + 17, 1);
	storage_s3_key(s3, "rec1/recording_rec1.webm", key, sizeof(key));
	struct storage_job job = { .upload_path = path, .object_key = key, .s3 = s3,
				   .content_type = "video/webm" };
	CHECK_INT(storage_step_upload(&job, etag, sizeof(etag), err, sizeof(err)), 0);
	char want[96], whole[33];
	CHECK_INT(storage_s3_file_etag(path, 5 * MiB, want, sizeof(want), whole, err, sizeof(err)), 0);
	CHECK_STR(etag, want);
	CHECK_STR(want, whole);
	CHECK_INT(storage_s3_check(s3, err, sizeof(err)), 0);
	CHECK_INT(storage_step_verify(&job, err, sizeof(err)), 0);
	CHECK_INT(storage_s3_get_file(s3, key, back, err, sizeof(err)), 0);
	CHECK(same_file(path, back));
	struct storage_s3_stats st;
	storage_s3_get_stats(s3, &st);
	CHECK_INT(st.parts_uploaded, 0);
	CHECK_INT(st.retries, 0);

	/* Presigned GET works with a plain HTTP client. */
	char *url = storage_s3_presign_get(s3, key, 120, NULL, err, sizeof(err));
	CHECK(url != NULL);
	if (url) {
		char cmd[2048];
		snprintf(cmd, sizeof(cmd), "curl -sf -o '%s.curl' '%s'", back, url);
		CHECK_INT(system(cmd), 0);
		snprintf(cmd, sizeof(cmd), "%s.curl", back);
		CHECK(same_file(path, cmd));
		free(url);
	}

	/* A changed local file no longer verifies. */
	make_file(path, 3 * MiB + 17, 2);
	CHECK_INT(storage_step_verify(&job, err, sizeof(err)), STORAGE_ERR_VERIFY);
	CHECK(strstr(err, "ETag") != NULL);
	CHECK_INT(storage_s3_delete(s3, key, err, sizeof(err)), 0);
	CHECK_INT(storage_s3_head(s3, key, NULL, NULL, 0, err, sizeof(err)), 1);
	CHECK_INT(storage_step_verify(&job, err, sizeof(err)), STORAGE_ERR_VERIFY);
	storage_s3_free(s3);
}

static void test_multipart(void)
{
	char path[300], back[300], jpath[300], key[128], etag[80], err[512], v[64];
	struct storage_s3 *s3 = client("S3RVER", 3);
	if (!s3)
		return;
	snprintf(path, sizeof(path), "%s/multi.mkv", work);
	snprintf(back, sizeof(back), "%s/multi.back", work);
	snprintf(jpath, sizeof(jpath), "%s/multi.journal", work);
	make_file(path, 22 * MiB + 5, 3);
	struct storage_journal *j = storage_journal_file_new(jpath);
	storage_s3_key(s3, "rec2/recording_rec2.mkv", key, sizeof(key));
	struct storage_job job = { .upload_path = path, .object_key = key, .s3 = s3, .journal = j,
				   .content_type = "video/x-matroska" };
	CHECK_INT(storage_step_upload(&job, etag, sizeof(etag), err, sizeof(err)), 0);
	struct storage_s3_stats st;
	storage_s3_get_stats(s3, &st);
	CHECK_INT(st.parts_uploaded, 5);
	CHECK_INT(storage_step_verify(&job, err, sizeof(err)), 0);
	CHECK_INT(storage_s3_get_file(s3, key, back, err, sizeof(err)), 0);
	CHECK(same_file(path, back));
	CHECK_INT(j->get(j->opaque, "upload.id", v, sizeof(v)), 1);
	CHECK_INT(uploads_left(), 0);
	storage_journal_file_free(j);
	storage_s3_free(s3);
}

struct kill_ctx {
	double kill_at; /* percent */
	double last;
};

/* Progress callback that crashes the server once N parts are acknowledged. */
static void kill_progress(void *opaque, const char *step, double pct)
{
	struct kill_ctx *k = opaque;
	if (pct <= k->last)
		return;
	k->last = pct;
	if (pct >= k->kill_at && srv.pid > 0) {
		fprintf(stderr, "itest: killing s3rver at %.1f%%\n", pct);
		s3rver_kill(&srv);
	}
}

static void test_kill_and_resume(void)
{
	char path[300], back[300], jpath[300], key[128], err[512], v[64];
	struct storage_s3 *s3 = client("S3RVER", 2);
	if (!s3)
		return;
	snprintf(path, sizeof(path), "%s/resume.webm", work);
	snprintf(back, sizeof(back), "%s/resume.back", work);
	snprintf(jpath, sizeof(jpath), "%s/resume.journal", work);
	make_file(path, 27 * MiB + 1234, 4); /* 6 parts */
	storage_s3_key(s3, "rec3/recording_rec3.webm", key, sizeof(key));
	struct storage_journal *j = storage_journal_file_new(jpath);
	struct kill_ctx k = { .kill_at = 100.0 * (10.0 * MiB) / (27.0 * MiB + 1234) - 0.001 };
	struct storage_job job = { .upload_path = path, .object_key = key, .s3 = s3, .journal = j,
				   .content_type = "video/webm", .progress = kill_progress, .opaque = &k };
	int rc = storage_step_upload(&job, NULL, 0, err, sizeof(err));
	CHECK_INT(rc, STORAGE_ERR_NETWORK);
	fprintf(stderr, "itest: upload while down: %s\n", err);
	CHECK(strstr(err, "cannot reach S3") != NULL);
	CHECK(access(path, F_OK) == 0);
	CHECK_INT(j->get(j->opaque, "upload.part.1", v, sizeof(v)), 0);
	CHECK_INT(j->get(j->opaque, "upload.part.2", v, sizeof(v)), 0);
	CHECK_INT(j->get(j->opaque, "upload.id", v, sizeof(v)), 0);
	storage_journal_file_free(j);

	/* The process "restarts": new client, journal read back from disk. */
	storage_s3_free(s3);
	CHECK_INT(s3rver_start(&srv), 0);
	s3 = client("S3RVER", 3);
	j = storage_journal_file_new(jpath);
	job.s3 = s3;
	job.journal = j;
	job.progress = NULL;
	CHECK_INT(storage_step_upload(&job, NULL, 0, err, sizeof(err)), 0);
	struct storage_s3_stats st;
	storage_s3_get_stats(s3, &st);
	fprintf(stderr, "itest: resumed %llu parts, sent %llu\n", (unsigned long long)st.parts_resumed,
		(unsigned long long)st.parts_uploaded);
	CHECK(st.parts_resumed >= 2);
	CHECK_INT(st.parts_resumed + st.parts_uploaded, 6);
	CHECK_INT(storage_step_verify(&job, err, sizeof(err)), 0);
	CHECK_INT(storage_s3_get_file(s3, key, back, err, sizeof(err)), 0);
	CHECK(same_file(path, back));
	CHECK_INT(j->get(j->opaque, "upload.id", v, sizeof(v)), 1);
	storage_journal_file_free(j);
	storage_s3_free(s3);
}

static void *restart_later(void *arg)
{
	time_sleep_ns(700 * TIME_NS_PER_MS);
	s3rver_start(&srv);
	return NULL;
}

static void test_retry_across_outage(void)
{
	char path[300], key[128], err[512];
	struct storage_s3_options o = {
		.endpoint = srv.endpoint, .bucket = srv.bucket, .path_style = true,
		.access_key = "S3RVER", .secret_key = "S3RVER", .part_size = 5 * MiB,
		.max_attempts = 8, .backoff_base_ms = 200, .backoff_max_ms = 1500, .timeout_ms = 5000,
	};
	struct storage_s3 *s3 = storage_s3_new(&o, err, sizeof(err));
	if (!s3)
		return;
	snprintf(path, sizeof(path), "%s/outage.webm", work);
	make_file(path, 1 * MiB, 5);
	snprintf(key, sizeof(key), "outage.webm");
	s3rver_kill(&srv);
	pthread_t t;
	pthread_create(&t, NULL, restart_later, NULL);
	struct storage_job job = { .upload_path = path, .object_key = key, .s3 = s3 };
	CHECK_INT(storage_step_upload(&job, NULL, 0, err, sizeof(err)), 0);
	pthread_join(t, NULL);
	struct storage_s3_stats st;
	storage_s3_get_stats(s3, &st);
	CHECK(st.retries >= 1);
	CHECK_INT(storage_step_verify(&job, err, sizeof(err)), 0);
	storage_s3_free(s3);
}

static void test_unknown_key(void)
{
	char path[300], key[128], err[512];
	struct storage_s3 *s3 = client("NOT-A-KEY", 4);
	if (!s3)
		return;
	snprintf(path, sizeof(path), "%s/denied.webm", work);
	make_file(path, 1 * MiB, 6);
	storage_s3_key(s3, "denied.webm", key, sizeof(key));
	struct storage_job job = { .upload_path = path, .object_key = key, .s3 = s3 };
	CHECK_INT(storage_step_upload(&job, NULL, 0, err, sizeof(err)), STORAGE_ERR_REFUSED);
	fprintf(stderr, "itest: unknown key: %s\n", err);
	CHECK(strstr(err, "403") != NULL);
	CHECK(strstr(err, "InvalidAccessKeyId") != NULL);
	struct storage_s3_stats st;
	storage_s3_get_stats(s3, &st);
	CHECK_INT(st.retries, 0);
	struct stat sb;
	CHECK(stat(path, &sb) == 0 && sb.st_size == 1 * MiB);
	CHECK_INT(storage_s3_check(s3, err, sizeof(err)), STORAGE_ERR_REFUSED);
	CHECK(strstr(err, "403") != NULL);
	storage_s3_free(s3);
}

struct cancel_ctx {
	volatile int flag;
};

static void cancel_progress(void *opaque, const char *step, double pct)
{
	struct cancel_ctx *c = opaque;
	if (pct >= 30.0)
		c->flag = 1;
}

static void test_cancel_abort(void)
{
	char path[300], jpath[300], key[128], err[512], id[128];
	struct storage_s3 *s3 = client("S3RVER", 3);
	if (!s3)
		return;
	snprintf(path, sizeof(path), "%s/cancel.webm", work);
	snprintf(jpath, sizeof(jpath), "%s/cancel.journal", work);
	make_file(path, 21 * MiB, 7);
	storage_s3_key(s3, "cancel.webm", key, sizeof(key));
	struct storage_journal *j = storage_journal_file_new(jpath);
	struct cancel_ctx c = { 0 };
	struct storage_job job = { .upload_path = path, .object_key = key, .s3 = s3, .journal = j,
				   .cancel = &c.flag, .progress = cancel_progress, .opaque = &c };
	CHECK_INT(storage_step_upload(&job, NULL, 0, err, sizeof(err)), STORAGE_ERR_CANCELLED);
	CHECK_INT(j->get(j->opaque, "upload.id", id, sizeof(id)), 0);
	CHECK(uploads_left() >= 1);
	CHECK(storage_s3_list_parts(s3, key, id, err, sizeof(err)) >= 1);
	CHECK_INT(storage_step_abort(&job, err, sizeof(err)), 0);
	CHECK_INT(uploads_left(), 0);
	CHECK_INT(storage_s3_list_parts(s3, key, id, err, sizeof(err)), STORAGE_ERR_REFUSED);
	CHECK(strstr(err, "NoSuchUpload") != NULL);
	CHECK_INT(storage_s3_head(s3, key, NULL, NULL, 0, err, sizeof(err)), 1);
	CHECK_INT(j->get(j->opaque, "upload.id", id, sizeof(id)), 1);
	/* Abort again: nothing to do, no error. */
	CHECK_INT(storage_step_abort(&job, err, sizeof(err)), 0);
	storage_journal_file_free(j);
	storage_s3_free(s3);
}

/* Upload throughput for scripts/bench.d/40-storage: one 'mb' MiB file as a
 * single PUT and as a multipart upload (8 MiB parts), and curl's own
 * single PUT of the same file as the peer. Prints a table. */
static int bench_upload(int mb)
{
	char path[300], key[64], err[512], cmd[1024];
	snprintf(path, sizeof(path), "%s/bench.bin", work);
	make_file(path, (size_t)mb * MiB, 9);
	printf("%-34s %10s %10s\n", "upload to s3rver (loopback)", "seconds", "MiB/s");
	struct { const char *name; int64_t part; } runs[] = {
		{ "edgerec single PUT", (int64_t)(mb + 1) * MiB },
		{ "edgerec multipart (8 MiB parts)", 8 * MiB },
		{ "edgerec multipart (32 MiB parts)", 32 * MiB },
	};
	for (size_t i = 0; i < ARRAY_SIZE(runs); i++) {
		struct storage_s3_options o = {
			.endpoint = srv.endpoint, .bucket = srv.bucket, .path_style = true,
			.access_key = "S3RVER", .secret_key = "S3RVER", .part_size = runs[i].part,
		};
		struct storage_s3 *s3 = storage_s3_new(&o, err, sizeof(err));
		if (!s3) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		snprintf(key, sizeof(key), "bench-%zu.bin", i);
		int64_t t0 = time_mono_ns();
		int rc = storage_s3_put_file(s3, path, key, "application/octet-stream", NULL, NULL, NULL,
					     NULL, NULL, 0, err, sizeof(err));
		double s = (double)(time_mono_ns() - t0) / 1e9;
		storage_s3_free(s3);
		if (rc < 0) {
			fprintf(stderr, "%s: %s\n", runs[i].name, err);
			return 1;
		}
		printf("%-34s %10.2f %10.1f\n", runs[i].name, s, mb / s);
	}
	snprintf(cmd, sizeof(cmd), "curl -sf -o /dev/null --aws-sigv4 aws:amz:us-east-1:s3 --user S3RVER:S3RVER "
		 "-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "
		 "-T '%s' '%s/%s/peer.bin'", path, srv.endpoint, srv.bucket);
	int64_t t0 = time_mono_ns();
	int rc = system(cmd);
	double s = (double)(time_mono_ns() - t0) / 1e9;
	if (rc == 0)
		printf("%-34s %10.2f %10.1f\n", "peer: curl --aws-sigv4 -T", s, mb / s);
	else
		printf("%-34s %10s\n", "peer: curl --aws-sigv4 -T", "failed");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
		log_set_level(LOG_LEVEL_WARN);
		if (!mkdtemp(work) || s3rver_start(&srv) < 0)
			return 1;
		int rc = bench_upload(argc > 2 ? atoi(argv[2]) : 200);
		s3rver_stop(&srv);
		util_rm_rf(work);
		return rc;
	}
	log_set_level(-1);
	if (!mkdtemp(work) || s3rver_start(&srv) < 0) {
		fprintf(stderr, "cannot set up the test\n");
		return 1;
	}
	test_single();
	test_multipart();
	test_kill_and_resume();
	test_retry_across_outage();
	test_unknown_key();
	test_cancel_abort();
	s3rver_stop(&srv);
	util_rm_rf(work);
	return check_exit();
}
