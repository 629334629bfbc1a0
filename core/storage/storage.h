/* storage: finishing a recording after it stops — MP4 remux, thumbnail,
 * file facts (size, sha256, codecs, geometry) and the S3 upload that never
 * loses the only copy.
 *
 * Provides: the processing steps the recorder's worker calls one after the
 * other (storage_step_remux, _thumbnail, _facts, _upload, _verify), the
 * journal interface through which a step's persistent progress (multipart
 * UploadId, acknowledged part ETags, last completed step) is kept, and the
 * S3 options read from the configuration. The S3 client itself is in
 * storage_s3.h and the SigV4 signer in storage_sigv4.h.
 * Uses: common, config, crypto (sha256, hmac, md5, hex), libcurl, libavformat
 * (demux/mux), libvpx (decode), libjpeg-turbo (encode). None of their
 * headers leak out of this module. It does not talk to Redis: the recorder
 * binds the journal to whatever store it keeps state in.
 *
 * Threads: every step runs on the calling (worker) thread and blocks until
 * done; steps of different recordings may run on different threads at once.
 * Progress callbacks run on the calling thread. */
#ifndef EDGEREC_STORAGE_H
#define EDGEREC_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct storage_s3;

/* Error codes of the int-returning functions (negative), with
 * storage_strerror(). A step also fills its 'err' buffer with a sentence fit
 * for the recording's `error` field. */
enum {
	STORAGE_OK = 0,
	STORAGE_ERR_IO = -1,        /* reading or writing a local file failed */
	STORAGE_ERR_MEDIA = -2,     /* the input could not be demuxed/decoded/muxed */
	STORAGE_ERR_NETWORK = -3,   /* S3 unreachable after every retry */
	STORAGE_ERR_REFUSED = -4,   /* S3 answered a final error (403, 404, ...) */
	STORAGE_ERR_VERIFY = -5,    /* the object in S3 does not match the file */
	STORAGE_ERR_CANCELLED = -6, /* the job's cancel flag was raised */
	STORAGE_ERR_JOURNAL = -7,   /* the journal could not be read or written */
	STORAGE_ERR_INVALID = -8,   /* bad arguments or configuration */
	STORAGE_ERR_NOMEM = -9,
};

const char *storage_strerror(int code);

/* The configuration keys this module reads (s3.endpoint, s3.region,
 * s3.path_style, s3.access_key, s3.secret_key, s3.part_size, s3.retries,
 * s3.backoff, s3.timeout, thumbnail.width, thumbnail.at). s3_bucket and
 * s3_prefix, keys of SPEC §6, are registered by the recorder; this module
 * only reads them. Register it with config_register(cfg, storage_config_options). */
extern const struct config_option storage_config_options[];

/* The journal: a small persistent map of text fields per recording, so a
 * step interrupted by a crash resumes where it stopped. The recorder binds it
 * to its store (a Redis hash per recording, say); storage_journal_file_new()
 * gives one kept in a JSON file, used by the tests and usable as is.
 * Fields written by this module:
 *   "step"            the last completed step ("remux", "thumbnail", ...)
 *   "upload.key"      object key of the multipart upload in progress
 *   "upload.id"       its UploadId
 *   "upload.part_size" part size it was started with (decimal bytes)
 *   "upload.part.<n>" ETag of acknowledged part n (1-based)
 * get: copies the value into 'out' and returns 0, 1 when missing, <0 error.
 * set: stores 'value'; <0 error. del: removes the fields whose names start
 * with 'prefix' ("" for all); <0 error. Called from the worker thread. */
struct storage_journal {
	void *opaque;
	int (*get)(void *opaque, const char *field, char *out, size_t outlen);
	int (*set)(void *opaque, const char *field, const char *value);
	int (*del)(void *opaque, const char *prefix);
};

/* A journal kept as a JSON object in 'path' (rewritten through a temporary
 * file and rename on every set). Returns NULL and logs why on failure. Free
 * with storage_journal_file_free(). */
struct storage_journal *storage_journal_file_new(const char *path);
void storage_journal_file_free(struct storage_journal *j);

/* Progress of a running step: 'step' is its name, 'percent' 0..100. Called
 * at most a few times a second. */
typedef void (*storage_progress_fn)(void *opaque, const char *step, double percent);

/* What a worker knows about one recording being finished. Strings are
 * borrowed for the duration of each call. */
struct storage_job {
	const char *recording_id;
	const char *input_path;      /* the finalized Matroska/WebM file */
	const char *mp4_path;        /* remux output (format mp4), else NULL */
	const char *thumbnail_path;  /* JPEG to write, NULL to skip */
	const char *object_key;      /* S3 key, e.g. "<s3_prefix><id>/recording_<id>.mp4" */
	const char *upload_path;     /* the file to upload (mp4_path or input_path) */
	const char *content_type;    /* "video/webm", "video/x-matroska", "video/mp4" */
	int thumbnail_width;         /* pixels; 0 = 320 */
	int64_t thumbnail_at_ms;     /* first keyframe at/after this; 0 = 1000 */
	struct storage_s3 *s3;       /* NULL unless the backend is S3 */
	struct storage_journal *journal; /* may be NULL (no resume) */
	const volatile int *cancel;  /* raised (non-zero) by another thread to cancel; may be NULL */
	storage_progress_fn progress;
	void *opaque;
};

/* Facts about a finished file for the recording's metadata. */
struct storage_facts {
	int64_t size_bytes;
	char sha256[65];          /* lower-case hex */
	char container[32];       /* "matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2" */
	char video_codec[16];     /* "vp8", "vp9", "" when none */
	char audio_codec[16];     /* "opus", "" when none */
	int width, height;
	int64_t duration_ms;
};

/* Remuxes job->input_path (VP8/VP9 + Opus in Matroska) into job->mp4_path
 * without re-encoding, with the index at the front (faststart) so the file
 * streams. Writes to "<mp4_path>.part" and renames on success, so a crash
 * never leaves a truncated mp4 under the final name. Returns 0 or <0 with
 * 'err' filled. */
int storage_step_remux(const struct storage_job *job, char *err, size_t errlen);

/* Writes job->thumbnail_path: the first video keyframe at or after
 * job->thumbnail_at_ms (for clips without one, the first frame at or after
 * it, or the last before it); a flat one (a black or white frame) gives way
 * to the first frame within 2 s after it that is not. Decoded with libvpx, scaled to job->thumbnail_width keeping the aspect
 * ratio, as a JPEG. 'out_w'/'out_h' (may be NULL) receive its size. */
int storage_step_thumbnail(const struct storage_job *job, int *out_w, int *out_h,
			   char *err, size_t errlen);

/* Fills 'facts' for 'path' (size, sha256 of the bytes, container, codecs,
 * geometry, duration). */
int storage_file_facts(const char *path, struct storage_facts *facts, char *err, size_t errlen);

/* Uploads job->upload_path to job->object_key on job->s3: one PUT with
 * Content-MD5 up to the part size, a multipart upload above it that resumes
 * from the journal. Retries are bounded (see storage_s3.h); on a final
 * failure the local file is untouched and 'err' says why. On success
 * 'etag_out' (may be NULL, at least 80 bytes) receives the object's ETag. */
int storage_step_upload(const struct storage_job *job, char *etag_out, size_t etaglen,
			char *err, size_t errlen);

/* Checks that the object at job->object_key has the size of
 * job->upload_path and the ETag its bytes give (MD5 for a single PUT, the
 * multipart form "md5-of-md5s-N" for multipart). Only after this returns 0
 * may the caller delete the local copy. */
int storage_step_verify(const struct storage_job *job, char *err, size_t errlen);

/* Aborts a multipart upload recorded in the journal (cancel of a recording
 * being uploaded) and deletes the object if it was completed. Safe to call
 * when nothing was uploaded. */
int storage_step_abort(const struct storage_job *job, char *err, size_t errlen);

/* Marks 'step' completed in the journal ("remux", "thumbnail", "upload",
 * "verify") and reads back the last one ('out' gets "" when none). */
int storage_journal_mark(struct storage_journal *j, const char *step);
int storage_journal_last(struct storage_journal *j, char *out, size_t outlen);

#endif
