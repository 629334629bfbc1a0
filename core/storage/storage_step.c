/* storage_step: the processing steps a worker runs on a stopped recording,
 * the module's options and error texts. Remux and thumbnail live in
 * storage_media.c; this file holds the S3 side of the steps. */
#include "storage.h"

#include "common_log.h"
#include "common_util.h"
#include "config.h"
#include "storage_s3.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static struct log_handle log_step = LOG_HANDLE("storage/step");

const struct config_option storage_config_options[] = {
	{ "s3.endpoint", CONFIG_STR, NULL, "S3 endpoint URL (default https://s3.<region>.amazonaws.com)" },
	{ "s3.region", CONFIG_STR, NULL, "S3 region (else AWS_REGION, else us-east-1)" },
	{ "s3.path_style", CONFIG_BOOL, "false", "address buckets as endpoint/bucket instead of bucket.endpoint" },
	{ "s3.access_key", CONFIG_STR, NULL, "S3 access key id (else AWS_ACCESS_KEY_ID)", .flags = CONFIG_LIVE },
	{ "s3.secret_key", CONFIG_STR, NULL, "S3 secret key (else AWS_SECRET_ACCESS_KEY)",
	  .flags = CONFIG_SECRET | CONFIG_LIVE },
	{ "s3.part_size", CONFIG_SIZE, "8M", "objects up to this size are one PUT; larger ones multipart parts of it" },
	{ "s3.retries", CONFIG_INT, "8", "attempts per S3 request before the upload fails (about a minute of outage)" },
	{ "s3.backoff", CONFIG_DURATION, "500ms", "first retry delay, doubled each attempt up to 30 s, with jitter" },
	{ "s3.timeout", CONFIG_DURATION, "60s", "an S3 request making no progress this long fails" },
	{ "thumbnail.width", CONFIG_INT, "320", "thumbnail width in pixels (height keeps the aspect ratio)" },
	{ "thumbnail.at", CONFIG_DURATION, "1s", "the thumbnail shows the first keyframe at or after this time" },
	{ 0 },
};

const char *storage_strerror(int code)
{
	switch (code) {
	case STORAGE_OK: return "ok";
	case STORAGE_ERR_IO: return "local file error";
	case STORAGE_ERR_MEDIA: return "media error";
	case STORAGE_ERR_NETWORK: return "S3 unreachable";
	case STORAGE_ERR_REFUSED: return "S3 refused the request";
	case STORAGE_ERR_VERIFY: return "uploaded object does not match the file";
	case STORAGE_ERR_CANCELLED: return "cancelled";
	case STORAGE_ERR_JOURNAL: return "journal error";
	case STORAGE_ERR_INVALID: return "invalid argument";
	case STORAGE_ERR_NOMEM: return "out of memory";
	default: return "unknown storage error";
	}
}

static int step_need_s3(const struct storage_job *job, const char *step, char *err, size_t errlen)
{
	if (!job->s3 || !job->object_key || !job->upload_path) {
		snprintf(err, errlen, "%s needs an S3 client, an object key and a file", step);
		return STORAGE_ERR_INVALID;
	}
	return 0;
}

int storage_step_upload(const struct storage_job *job, char *etag_out, size_t etaglen,
			char *err, size_t errlen)
{
	int rc = step_need_s3(job, "upload", err, errlen);
	if (rc < 0)
		return rc;
	return storage_s3_put_file(job->s3, job->upload_path, job->object_key,
				   job->content_type ? job->content_type : "application/octet-stream",
				   job->journal, job->cancel, job->progress, job->opaque, etag_out, etaglen,
				   err, errlen);
}

int storage_step_verify(const struct storage_job *job, char *err, size_t errlen)
{
	char remote[128] = "", expect[96], whole[33];
	int64_t rsize = -1;
	int rc = step_need_s3(job, "verify", err, errlen);
	if (rc < 0)
		return rc;
	rc = storage_s3_head(job->s3, job->object_key, &rsize, remote, sizeof(remote), err, errlen);
	if (rc == 1) {
		snprintf(err, errlen, "verify: %s is not in the bucket", job->object_key);
		return STORAGE_ERR_VERIFY;
	}
	if (rc < 0)
		return rc;
	struct stat sb;
	long long lsize = stat(job->upload_path, &sb) == 0 ? (long long)sb.st_size : -1;
	rc = storage_s3_file_etag(job->upload_path, storage_s3_part_size_for(job->s3, lsize), expect,
				  sizeof(expect), whole, err, errlen);
	if (rc < 0)
		return rc;
	if (rsize != lsize) {
		snprintf(err, errlen, "verify: %s holds %lld bytes, the file %lld", job->object_key,
			 (long long)rsize, lsize);
		return STORAGE_ERR_VERIFY;
	}
	/* AWS gives a multipart object "md5-of-part-md5s-N"; some compatible
	 * servers give the whole object's MD5 either way. Both prove the bytes. */
	if (strcasecmp(remote, expect) != 0 && strcasecmp(remote, whole) != 0) {
		snprintf(err, errlen, "verify: %s has ETag %s, the file gives %s", job->object_key,
			 remote[0] ? remote : "(none)", expect);
		return STORAGE_ERR_VERIFY;
	}
	if (job->progress)
		job->progress(job->opaque, "verify", 100.0);
	LOG_INFO(&log_step, "verified %s (%lld bytes, ETag %s)", job->object_key, lsize, remote);
	return 0;
}

int storage_step_abort(const struct storage_job *job, char *err, size_t errlen)
{
	if (!job->s3)
		return 0;
	int rc = storage_s3_abort_journal(job->s3, job->journal, err, errlen);
	if (rc < 0)
		return rc;
	if (job->object_key) {
		rc = storage_s3_delete(job->s3, job->object_key, err, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}
