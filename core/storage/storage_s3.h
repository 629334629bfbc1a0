/* storage_s3: an S3 client on libcurl with SigV4, for edgerec's uploads.
 *
 * Provides: single PUT with Content-MD5, multipart upload that resumes from
 * a journal (storage.h), HEAD, GET to a file, DELETE, abort and list of a
 * multipart upload, presigned GET URLs, and the ETag a local file should
 * have once uploaded. Every request is retried on network errors, 5xx, 429
 * and S3's RequestTimeout/SlowDown with exponential backoff and full jitter,
 * up to 'max_attempts'; other answers (403 InvalidAccessKeyId, 404 ...) fail
 * at once with the S3 error code and message in 'err'.
 * Uses: storage_sigv4, crypto, libcurl, common.
 *
 * Threads: a struct storage_s3 holds only settings and counters; several
 * threads may run requests on one at the same time. */
#ifndef EDGEREC_STORAGE_S3_H
#define EDGEREC_STORAGE_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage.h"

struct config;

#define STORAGE_S3_MIN_PART (5LL * 1024 * 1024)

struct storage_s3_options {
	const char *endpoint;     /* "http://127.0.0.1:4568"; NULL/"" = https://s3.<region>.amazonaws.com */
	const char *region;       /* NULL = "us-east-1" */
	const char *bucket;       /* required */
	const char *prefix;       /* prepended to object names by storage_s3_key(); may be NULL */
	bool path_style;          /* endpoint/bucket/key instead of bucket.endpoint/key */
	const char *access_key;   /* required */
	const char *secret_key;   /* required */
	const char *session_token;/* may be NULL */
	int64_t part_size;        /* bytes, >= 5 MiB; 0 = 8 MiB. Objects up to it are one PUT */
	int max_attempts;         /* per request, >= 1; 0 = 8 */
	int64_t backoff_base_ms;  /* first backoff; 0 = 500 */
	int64_t backoff_max_ms;   /* cap; 0 = 30000 */
	int64_t timeout_ms;       /* a request making no progress this long fails; 0 = 60000 */
};

/* Counters since storage_s3_new, for /metrics and the tests. */
struct storage_s3_stats {
	uint64_t requests;        /* HTTP exchanges attempted */
	uint64_t retries;         /* attempts after a retryable failure */
	uint64_t parts_uploaded;  /* multipart parts sent */
	uint64_t parts_resumed;   /* parts skipped because the journal had them */
	uint64_t bytes_sent;      /* request body bytes acknowledged */
};

/* Copies the options (strings too). Returns NULL and fills 'err' when a
 * required one is missing or a value is out of range. */
struct storage_s3 *storage_s3_new(const struct storage_s3_options *opt, char *err, size_t errlen);

/* Builds a client from the configuration: s3.endpoint, s3.region,
 * s3_bucket, s3_prefix, s3.path_style, s3.access_key, s3.secret_key,
 * s3.part_size, s3.retries, s3.backoff, s3.timeout; credentials and region
 * not set there come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN and AWS_REGION (or AWS_DEFAULT_REGION). */
struct storage_s3 *storage_s3_new_from_config(const struct config *cfg, char *err, size_t errlen);

void storage_s3_free(struct storage_s3 *s3);

/* Replaces the credentials later requests sign with (a request under way
 * finishes with the ones it started with). Returns 1 when they changed, 0
 * when they are the same, -1 when a key is missing or out of memory. Any
 * thread. */
int storage_s3_set_credentials(struct storage_s3 *s3, const char *access_key, const char *secret_key,
			       const char *session_token);
/* The same with the credentials storage_s3_new_from_config would read now
 * (s3.access_key, s3.secret_key, else the AWS_* variables). */
int storage_s3_reload_credentials(struct storage_s3 *s3, const struct config *cfg);

void storage_s3_get_stats(struct storage_s3 *s3, struct storage_s3_stats *st);

/* The part size in use (bytes). */
int64_t storage_s3_part_size(const struct storage_s3 *s3);
/* The part size used for an object of 'size' bytes: the configured one,
 * raised to a whole number of MiB when the object would otherwise need more
 * than S3's 10000 parts. The same size always gives the same answer, so a
 * resumed upload and the verify step agree with the first attempt. */
int64_t storage_s3_part_size_for(const struct storage_s3 *s3, int64_t size);

/* Writes prefix + 'name' into 'out'. Returns 0 or -1 if it does not fit. */
int storage_s3_key(const struct storage_s3 *s3, const char *name, char *out, size_t outlen);

/* Uploads the file at 'path' to 'key'. One PUT with Content-MD5 when the
 * file is at most the part size; otherwise a multipart upload: UploadId
 * and the ETag of every acknowledged part are written to 'journal' (may be
 * NULL) as they come, and a later call with the same journal and key
 * continues after the last acknowledged part (parts the server no longer
 * has are sent again). 'cancel' (may be NULL) is polled; when raised the
 * call returns STORAGE_ERR_CANCELLED and leaves the upload for
 * storage_s3_abort_journal(). 'progress' gets "upload" and a percentage.
 * On success the journal's upload fields are removed and 'etag_out' (may be
 * NULL) receives the object's ETag without quotes. */
int storage_s3_put_file(struct storage_s3 *s3, const char *path, const char *key,
			const char *content_type, struct storage_journal *journal,
			const volatile int *cancel, storage_progress_fn progress, void *opaque,
			char *etag_out, size_t etaglen, char *err, size_t errlen);

/* HEAD of 'key': 0 with size and ETag (unquoted; either out may be NULL),
 * 1 when the object does not exist, <0 on error. */
int storage_s3_head(struct storage_s3 *s3, const char *key, int64_t *size, char *etag,
		    size_t etaglen, char *err, size_t errlen);

/* Checks that the bucket exists and the credentials are accepted (HEAD of
 * the bucket), for start-up and health checks. 0, or <0 with 'err'
 * ("S3 refused HEAD /: HTTP 403 ..." or "cannot reach S3 at ..."). */
int storage_s3_check(struct storage_s3 *s3, char *err, size_t errlen);

/* Downloads 'key' into 'path' (written whole, then renamed into place). */
int storage_s3_get_file(struct storage_s3 *s3, const char *key, const char *path,
			char *err, size_t errlen);

/* Deletes 'key' (a missing key is success, as in S3). */
int storage_s3_delete(struct storage_s3 *s3, const char *key, char *err, size_t errlen);

/* Starts a multipart upload of 'key'; 'upload_id' receives its id. */
int storage_s3_initiate(struct storage_s3 *s3, const char *key, const char *content_type,
			char *upload_id, size_t idlen, char *err, size_t errlen);

/* Aborts a multipart upload: the server drops every part. 0, or 1 when the
 * upload does not exist (already completed or aborted), <0 on error. */
int storage_s3_abort(struct storage_s3 *s3, const char *key, const char *upload_id,
		     char *err, size_t errlen);

/* Aborts the upload the journal records (if any) and clears it. */
int storage_s3_abort_journal(struct storage_s3 *s3, struct storage_journal *journal,
			     char *err, size_t errlen);

/* Number of parts the server holds for an upload: 0.. on success, and
 * STORAGE_ERR_REFUSED with "NoSuchUpload" in 'err' when it does not exist. */
int storage_s3_list_parts(struct storage_s3 *s3, const char *key, const char *upload_id,
			  char *err, size_t errlen);

/* A presigned GET URL for 'key' valid 'expires_s' seconds from now
 * (1..604800). 'disposition' (may be NULL) is returned by S3 as the
 * response's Content-Disposition. Returns a malloc'd URL or NULL. */
char *storage_s3_presign_get(struct storage_s3 *s3, const char *key, int64_t expires_s,
			     const char *disposition, char *err, size_t errlen);

/* The ETag S3 gives 'path' uploaded with 'part_size': the MD5 hex for one
 * PUT, "<md5 of the parts' md5s>-<parts>" for multipart. 'whole_md5'
 * (may be NULL, 33 bytes) receives the MD5 of the whole file, which some
 * S3-compatible servers use for multipart objects too. */
int storage_s3_file_etag(const char *path, int64_t part_size, char *etag, size_t etaglen,
			 char whole_md5[33], char *err, size_t errlen);

#endif
