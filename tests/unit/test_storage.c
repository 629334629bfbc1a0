/* test_storage: SigV4 against AWS's published vectors, the journal file, and
 * the S3 client's argument checks (no network). */
#include "check.h"
#include "config.h"
#include "storage.h"
#include "storage_s3.h"
#include "storage_sigv4.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The signature test suite's credentials and time (AWS General Reference,
 * "Signature Version 4 test suite"). */
static const struct storage_sigv4_key suite_key = {
	.access_key = "AKIDEXAMPLE",
	.secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
	.region = "us-east-1",
	.service = "service",
	.s3_path_rules = false,
};
#define SUITE_DATE "20150830T123600Z"
#define SUITE_CRED "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "

static void suite_get(const char *name, const char *path, const char *query, const char *want_sig)
{
	struct storage_sigv4_header h[] = {
		{ "Host", "example.amazonaws.com" },
		{ "X-Amz-Date", SUITE_DATE },
	};
	struct storage_sigv4_request r = { .method = "GET", .path = path, .query = query,
					   .headers = h, .nheaders = 2,
					   .payload_sha256 = STORAGE_SIGV4_EMPTY_SHA256 };
	char auth[512], sig[65] = "", want[512];
	CHECK_INT(storage_sigv4_authorization(&r, &suite_key, SUITE_DATE, auth, sizeof(auth), sig), 0);
	snprintf(want, sizeof(want), SUITE_CRED "SignedHeaders=host;x-amz-date, Signature=%s", want_sig);
	if (strcmp(auth, want) != 0)
		fprintf(stderr, "vector %s\n", name);
	CHECK_STR(auth, want);
	CHECK_STR(sig, want_sig);
}

static void test_suite_vectors(void)
{
	suite_get("get-vanilla", "/", NULL,
		  "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
	suite_get("get-vanilla-empty-query-key", "/", "Param1=value1",
		  "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb");
	suite_get("get-vanilla-query-order-key-case", "/", "Param2=value2&Param1=value1",
		  "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
	suite_get("get-vanilla-query-order-key", "/", "Param1=value2&Param1=value1",
		  "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694");
	suite_get("get-vanilla-query-order-value", "/", "Param1=value2&Param1=Value1",
		  "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1");
	suite_get("get-vanilla-utf8-query", "/", "%E1%88%B4=bar",
		  "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04");
	suite_get("get-unreserved", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
		  NULL, "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f");
	suite_get("get-relative", "/example/..", NULL,
		  "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");

	/* The canonical request of get-vanilla-query-order-value, as published. */
	struct storage_sigv4_header h[] = {
		{ "Host", "example.amazonaws.com" },
		{ "X-Amz-Date", SUITE_DATE },
	};
	struct storage_sigv4_request r = { .method = "GET", .path = "/",
					   .query = "Param1=value2&Param1=Value1", .headers = h,
					   .nheaders = 2 };
	char *names = NULL;
	char *creq = storage_sigv4_canonical_request(&r, &suite_key, &names);
	CHECK_STR(creq, "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\n"
			"x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
			"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	CHECK_STR(names, "host;x-amz-date");
	free(creq);
	free(names);

	/* post-x-www-form-urlencoded: the body is hashed, content-type signed. */
	struct storage_sigv4_header hp[] = {
		{ "Content-Type", "application/x-www-form-urlencoded" },
		{ "Host", "example.amazonaws.com" },
		{ "X-Amz-Date", SUITE_DATE },
	};
	struct storage_sigv4_request rp = {
		.method = "POST", .path = "/", .headers = hp, .nheaders = 3,
		.payload_sha256 = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
	};
	char auth[512];
	CHECK_INT(storage_sigv4_authorization(&rp, &suite_key, SUITE_DATE, auth, sizeof(auth), NULL), 0);
	CHECK_STR(auth, SUITE_CRED "SignedHeaders=content-type;host;x-amz-date, "
			"Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");

	/* get-header-value-trim: values trimmed, inner blanks folded. */
	struct storage_sigv4_header ht[] = {
		{ "Host", "example.amazonaws.com" },
		{ "My-Header1", " value1" },
		{ "My-Header2", " \"a   b   c\"" },
		{ "X-Amz-Date", SUITE_DATE },
	};
	struct storage_sigv4_request rt = { .method = "GET", .path = "/", .headers = ht, .nheaders = 4 };
	CHECK_INT(storage_sigv4_authorization(&rt, &suite_key, SUITE_DATE, auth, sizeof(auth), NULL), 0);
	CHECK_STR(auth, SUITE_CRED "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
			"Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");

	/* get-header-key-duplicate: repeated names join in order with ','. */
	struct storage_sigv4_header hd[] = {
		{ "Host", "example.amazonaws.com" },
		{ "My-Header1", "value2" },
		{ "My-Header1", "value2" },
		{ "My-Header1", "value1" },
		{ "X-Amz-Date", SUITE_DATE },
	};
	struct storage_sigv4_request rd = { .method = "GET", .path = "/", .headers = hd, .nheaders = 5 };
	CHECK_INT(storage_sigv4_authorization(&rd, &suite_key, SUITE_DATE, auth, sizeof(auth), NULL), 0);
	CHECK_STR(auth, SUITE_CRED "SignedHeaders=host;my-header1;x-amz-date, "
			"Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea");
}

/* The S3 developer guide's examples (examplebucket, 20130524T000000Z). */
static const struct storage_sigv4_key s3_doc_key = {
	.access_key = "AKIAIOSFODNN7EXAMPLE",
	.secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	.region = "us-east-1",
	.service = "s3",
	.s3_path_rules = true,
};

static void test_s3_examples(void)
{
	/* GET Object with a Range header, signed in the Authorization header. */
	struct storage_sigv4_header h[] = {
		{ "Host", "examplebucket.s3.amazonaws.com" },
		{ "Range", "bytes=0-9" },
		{ "x-amz-content-sha256", STORAGE_SIGV4_EMPTY_SHA256 },
		{ "x-amz-date", "20130524T000000Z" },
	};
	struct storage_sigv4_request r = { .method = "GET", .path = "/test.txt", .headers = h,
					   .nheaders = 4, .payload_sha256 = STORAGE_SIGV4_EMPTY_SHA256 };
	char auth[512], sig[65];
	CHECK_INT(storage_sigv4_authorization(&r, &s3_doc_key, "20130524T000000Z", auth, sizeof(auth), sig), 0);
	CHECK_STR(sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	CHECK_STR(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
			"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
			"Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");

	/* Presigned GET of test.txt, valid 86400 s. */
	struct storage_sigv4_header hq[] = { { "Host", "examplebucket.s3.amazonaws.com" } };
	struct storage_sigv4_request rq = { .method = "GET", .path = "/test.txt", .headers = hq,
					    .nheaders = 1 };
	char *q = storage_sigv4_presign_query(&rq, &s3_doc_key, "20130524T000000Z", 86400);
	CHECK_STR(q, "X-Amz-Algorithm=AWS4-HMAC-SHA256"
		     "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
		     "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
		     "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
	free(q);

	/* Bad input is refused, not signed. */
	struct storage_sigv4_request bad = rq;
	bad.query = "a=%zz";
	CHECK(storage_sigv4_presign_query(&bad, &s3_doc_key, "20130524T000000Z", 60) == NULL);
	CHECK(storage_sigv4_presign_query(&rq, &s3_doc_key, "2013", 60) == NULL);
	CHECK(storage_sigv4_presign_query(&rq, &s3_doc_key, "20130524T000000Z", 0) == NULL);
	bad.query = "a=%4";
	CHECK_INT(storage_sigv4_authorization(&bad, &s3_doc_key, "20130524T000000Z", auth, sizeof(auth), NULL), -1);
	struct storage_sigv4_request none = { .method = "GET", .path = "/" };
	CHECK_INT(storage_sigv4_authorization(&none, &s3_doc_key, "20130524T000000Z", auth, sizeof(auth), NULL), -1);
	CHECK_INT(storage_sigv4_authorization(&r, &s3_doc_key, "20130524T000000Z", auth, 20, NULL), -1);

	char *e = storage_sigv4_uri_encode("a b/c~d+é", strlen("a b/c~d+é"), true);
	CHECK_STR(e, "a%20b/c~d%2B%C3%A9");
	free(e);
	e = storage_sigv4_uri_encode("a/b", 3, false);
	CHECK_STR(e, "a%2Fb");
	free(e);
	char d[17];
	storage_sigv4_amz_date(1440938160, d);
	CHECK_STR(d, "20150830T123600Z");
}

static void test_journal(void)
{
	char dir[] = "/tmp/test_storage_XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256], v[128];
	snprintf(path, sizeof(path), "%s/journal.json", dir);
	struct storage_journal *j = storage_journal_file_new(path);
	CHECK(j != NULL);
	if (!j)
		return;
	CHECK_INT(j->get(j->opaque, "upload.id", v, sizeof(v)), 1);
	CHECK_INT(j->set(j->opaque, "upload.id", "abc"), 0);
	CHECK_INT(j->set(j->opaque, "upload.part.1", "e1"), 0);
	CHECK_INT(j->set(j->opaque, "upload.part.1", "e1b"), 0);
	CHECK_INT(storage_journal_mark(j, "remux"), 0);
	storage_journal_file_free(j);

	/* A new instance reads what the old one wrote. */
	j = storage_journal_file_new(path);
	CHECK(j != NULL);
	if (!j)
		return;
	CHECK_INT(j->get(j->opaque, "upload.part.1", v, sizeof(v)), 0);
	CHECK_STR(v, "e1b");
	CHECK_INT(storage_journal_last(j, v, sizeof(v)), 0);
	CHECK_STR(v, "remux");
	CHECK_INT(j->del(j->opaque, "upload."), 0);
	CHECK_INT(j->get(j->opaque, "upload.id", v, sizeof(v)), 1);
	CHECK_INT(j->get(j->opaque, "step", v, sizeof(v)), 0);
	storage_journal_file_free(j);

	/* A corrupt journal is replaced, not fatal. */
	FILE *f = fopen(path, "w");
	fputs("{not json", f);
	fclose(f);
	j = storage_journal_file_new(path);
	CHECK(j != NULL);
	if (j)
		CHECK_INT(j->get(j->opaque, "step", v, sizeof(v)), 1);
	storage_journal_file_free(j);
	storage_journal_file_free(NULL);
	unlink(path);
	rmdir(dir);
}

static void test_s3_options(void)
{
	char err[256] = "";
	struct storage_s3_options o = { .endpoint = "http://127.0.0.1:9", .bucket = "b",
					.access_key = "k", .secret_key = "s", .prefix = "rec/" };
	struct storage_s3 *s3 = storage_s3_new(&o, err, sizeof(err));
	CHECK(s3 != NULL);
	char key[64];
	CHECK_INT(storage_s3_key(s3, "x/y.webm", key, sizeof(key)), 0);
	CHECK_STR(key, "rec/x/y.webm");
	CHECK_INT(storage_s3_key(s3, "x/y.webm", key, 4), -1);
	CHECK_INT(storage_s3_part_size(s3), 8 * 1024 * 1024);
	CHECK_INT(storage_s3_part_size_for(s3, 1000), 8 * 1024 * 1024);
	CHECK_INT(storage_s3_part_size_for(s3, 80000LL * 1024 * 1024), 8 * 1024 * 1024);
	CHECK_INT(storage_s3_part_size_for(s3, 80000LL * 1024 * 1024 + 1), 9 * 1024 * 1024);
	CHECK_INT(storage_s3_part_size_for(s3, 200000LL * 1024 * 1024), 20 * 1024 * 1024);
	char *url = storage_s3_presign_get(s3, "rec/a b.webm", 300, "attachment; filename=\"a b.webm\"",
					   err, sizeof(err));
	CHECK(url && strncmp(url, "http://b.127.0.0.1:9/rec/a%20b.webm?", 36) == 0);
	CHECK(url && strstr(url, "response-content-disposition=attachment%3B%20filename%3D%22a%20b.webm%22"));
	CHECK(url && strstr(url, "X-Amz-Expires=300"));
	free(url);
	CHECK(storage_s3_presign_get(s3, "k", 0, NULL, err, sizeof(err)) == NULL);
	storage_s3_free(s3);

	o.bucket = NULL;
	CHECK(storage_s3_new(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "bucket") != NULL);
	o.bucket = "b";
	o.secret_key = "";
	CHECK(storage_s3_new(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "credentials") != NULL);
	o.secret_key = "s";
	o.endpoint = "ftp://x";
	CHECK(storage_s3_new(&o, err, sizeof(err)) == NULL);
	o.endpoint = NULL;
	o.part_size = 1024;
	CHECK(storage_s3_new(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "part size") != NULL);
	storage_s3_free(NULL);

	/* The option table registers, and a client comes from the config. */
	struct config *cfg = config_new();
	static const struct config_option rec_opts[] = {
		{ "s3_bucket", CONFIG_STR, NULL, "bucket" },
		{ "s3_prefix", CONFIG_STR, "webrtc-recordings/", "prefix" },
		{ 0 },
	};
	CHECK_INT(config_register(cfg, storage_config_options), 0);
	CHECK_INT(config_register(cfg, rec_opts), 0);
	CHECK_INT(config_set(cfg, "s3_bucket", "bk", err, sizeof(err)), 0);
	CHECK_INT(config_set(cfg, "s3.access_key", "AK", err, sizeof(err)), 0);
	CHECK_INT(config_set(cfg, "s3.secret_key", "SK", err, sizeof(err)), 0);
	CHECK_INT(config_set(cfg, "s3.part_size", "16M", err, sizeof(err)), 0);
	CHECK_INT(config_set(cfg, "s3.path_style", "yes", err, sizeof(err)), 0);
	CHECK_INT(config_set(cfg, "s3.endpoint", "http://127.0.0.1:9000", err, sizeof(err)), 0);
	s3 = storage_s3_new_from_config(cfg, err, sizeof(err));
	CHECK(s3 != NULL);
	if (s3) {
		CHECK_INT(storage_s3_part_size(s3), 16 * 1024 * 1024);
		CHECK_INT(storage_s3_key(s3, "a", key, sizeof(key)), 0);
		CHECK_STR(key, "webrtc-recordings/a");
		url = storage_s3_presign_get(s3, "a", 60, NULL, err, sizeof(err));
		CHECK(url && strncmp(url, "http://127.0.0.1:9000/bk/a?X-Amz-Algorithm=", 43) == 0);
		free(url);
	}
	storage_s3_free(s3);

	/* Credentials and region missing from the file come from the standard
	 * AWS variables; the file wins when it has them. */
	struct config *c2 = config_new();
	CHECK_INT(config_register(c2, storage_config_options), 0);
	CHECK_INT(config_register(c2, rec_opts), 0);
	CHECK_INT(config_set(c2, "s3_bucket", "bk", err, sizeof(err)), 0);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	s3 = storage_s3_new_from_config(c2, err, sizeof(err));
	CHECK(s3 == NULL);
	setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
	setenv("AWS_REGION", "eu-north-1", 1);
	s3 = storage_s3_new_from_config(c2, err, sizeof(err));
	CHECK(s3 != NULL);
	if (s3) {
		url = storage_s3_presign_get(s3, "a", 60, NULL, err, sizeof(err));
		CHECK(url && strncmp(url, "https://bk.s3.eu-north-1.amazonaws.com/a?", 41) == 0);
		CHECK(url && strstr(url, "X-Amz-Credential=ENVKEY%2F") && strstr(url, "%2Feu-north-1%2Fs3%2F"));
		free(url);
	}
	storage_s3_free(s3);
	s3 = storage_s3_new_from_config(cfg, err, sizeof(err));
	if (s3) {
		url = storage_s3_presign_get(s3, "a", 60, NULL, err, sizeof(err));
		CHECK(url && strstr(url, "X-Amz-Credential=AK%2F") && strstr(url, "%2Feu-north-1%2F"));
		free(url);
	}
	storage_s3_free(s3);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_REGION");
	config_free(c2);
	config_free(cfg);

	CHECK_STR(storage_strerror(STORAGE_ERR_VERIFY), "uploaded object does not match the file");
	CHECK_STR(storage_strerror(12345), "unknown storage error");
}

static void test_bad_media(void)
{
	char err[256] = "";
	struct storage_job job = { .input_path = "/nonexistent/x.webm", .mp4_path = "/tmp/x.mp4",
				   .thumbnail_path = "/tmp/x.jpg" };
	CHECK(storage_step_remux(&job, err, sizeof(err)) < 0);
	CHECK(strstr(err, "/nonexistent/x.webm") != NULL);
	CHECK(storage_step_thumbnail(&job, NULL, NULL, err, sizeof(err)) < 0);
	struct storage_facts f;
	CHECK(storage_file_facts("/nonexistent/x.webm", &f, err, sizeof(err)) < 0);
	struct storage_job empty = { 0 };
	CHECK_INT(storage_step_remux(&empty, err, sizeof(err)), STORAGE_ERR_INVALID);
	CHECK_INT(storage_step_upload(&empty, NULL, 0, err, sizeof(err)), STORAGE_ERR_INVALID);
	CHECK_INT(storage_step_verify(&empty, err, sizeof(err)), STORAGE_ERR_INVALID);

	/* A file that is not media is refused with a message. */
	char path[] = "/tmp/test_storage_junk_XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK(write(fd, "this is not a video", 19) == 19);
		close(fd);
		job.input_path = path;
		CHECK(storage_step_remux(&job, err, sizeof(err)) < 0);
		CHECK(access("/tmp/x.mp4", F_OK) != 0);
		CHECK(storage_step_thumbnail(&job, NULL, NULL, err, sizeof(err)) < 0);
		unlink(path);
	}
}

/* Signs requests read from stdin, one per record, for the cross-check
 * against botocore and curl (tests/integration/test_storage_sigv4.py):
 *   mode method path query amz_date region service access secret payload expires nheaders
 * tab-separated on one line ("-" for an empty query), then nheaders lines
 * "name<TAB>value". Prints the Authorization value (mode "header") or the
 * presigned query (mode "presign"), one line each; "ERROR" when refused. */
static int sign_stdin(void)
{
	char line[8192];
	while (fgets(line, sizeof(line), stdin)) {
		char *f[12];
		int n = 0;
		line[strcspn(line, "\n")] = '\0';
		for (char *p = line, *t; n < 12 && (t = strsep(&p, "\t")) != NULL;)
			f[n++] = t;
		if (n != 12)
			return 2;
		int nh = atoi(f[11]);
		struct storage_sigv4_header *h = calloc((size_t)nh + 1, sizeof(*h));
		char (*hl)[4096] = calloc((size_t)nh + 1, sizeof(*hl));
		for (int i = 0; i < nh; i++) {
			if (!fgets(hl[i], sizeof(hl[i]), stdin))
				return 2;
			hl[i][strcspn(hl[i], "\n")] = '\0';
			char *tab = strchr(hl[i], '\t');
			if (!tab)
				return 2;
			*tab = '\0';
			h[i] = (struct storage_sigv4_header){ hl[i], tab + 1 };
		}
		struct storage_sigv4_request r = {
			.method = f[1], .path = f[2], .query = strcmp(f[3], "-") ? f[3] : NULL,
			.headers = h, .nheaders = (size_t)nh,
			.payload_sha256 = strcmp(f[9], "-") ? f[9] : NULL,
		};
		struct storage_sigv4_key k = { .access_key = f[7], .secret_key = f[8], .region = f[5],
					       .service = f[6], .s3_path_rules = strcmp(f[6], "s3") == 0 };
		if (strcmp(f[0], "presign") == 0) {
			char *q = storage_sigv4_presign_query(&r, &k, f[4], atoll(f[10]));
			printf("%s\n", q ? q : "ERROR");
			free(q);
		} else {
			char auth[2048];
			int rc = storage_sigv4_authorization(&r, &k, f[4], auth, sizeof(auth), NULL);
			printf("%s\n", rc == 0 ? auth : "ERROR");
		}
		fflush(stdout);
		free(h);
		free(hl);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--sign") == 0)
		return sign_stdin();
	test_suite_vectors();
	test_s3_examples();
	test_journal();
	test_s3_options();
	test_bad_media();
	return check_exit();
}
