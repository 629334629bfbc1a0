/* http_file: the files of a finished recording. GET .../download sends the
 * recording (Content-Type by format, Content-Disposition, a strong ETag,
 * single byte ranges -> 206, unsatisfiable -> 416, If-None-Match -> 304,
 * HEAD), or redirects (302) to a presigned URL when only S3 holds it;
 * GET .../thumbnail sends the JPEG the processing step made. The caller
 * (http_api.c) has already checked the token and asked the recorder for
 * the state object, which also applies the read authorization. */
#include "http_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <civetweb.h>

#include "config.h"
#include "recorder.h"

#define HTTP_FILE_CHUNK (64 * 1024)
#define HTTP_PRESIGN_EXPIRES_S 300

static const char *http_file_type(const char *name)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
		{ ".webm", "video/webm" }, { ".mkv", "video/x-matroska" }, { ".mp4", "video/mp4" },
		{ ".jpg", "image/jpeg" },  { ".jpeg", "image/jpeg" },
	};
	const char *dot = strrchr(name, '.');
	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

/* A file name the state object names must be one plain component. */
static bool http_file_name_ok(const char *name)
{
	return name && *name && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* Resolves local_path/name and checks that it lies inside
 * local_storage_path (the state comes from Redis; a record must not be
 * able to point anywhere else). Returns 0 with the path in 'out', -1 when
 * the file does not exist, -2 when it is outside the storage directory. */
static int http_file_resolve(struct http_server *s, const cJSON *rec, const char *name, char *out)
{
	char root[PATH_MAX], candidate[PATH_MAX * 2];
	const cJSON *dir = cJSON_GetObjectItemCaseSensitive(rec, "local_path");
	const char *storage = config_get_str(s->cfg, "local_storage_path");
	if (!cJSON_IsString(dir) || !http_file_name_ok(name) || !storage || !realpath(storage, root))
		return -1;
	snprintf(candidate, sizeof(candidate), "%s/%s", dir->valuestring, name);
	if (!realpath(candidate, out))
		return -1;
	size_t n = strlen(root);
	if (strncmp(out, root, n) != 0 || out[n] != '/')
		return -2;
	return 0;
}

/* Sends the file at 'path' with ranges and validators. 'seed' makes the
 * ETag specific to the recording. */
static void http_file_send(struct http_request *req, const char *path, const char *disposition,
			   const char *seed)
{
	struct stat st;
	char etag[160], crange[96], *buf = NULL;
	long long first = 0, last = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		http_reply_error(req, 404, "file_gone", "the file of this recording is not on this node");
		goto out;
	}
	long long size = (long long)st.st_size;
	snprintf(etag, sizeof(etag), "\"%s-%llx-%llx\"", seed, size,
		 (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);

	const char *inm = mg_get_header(req->conn, "If-None-Match");
	if (inm && (strcmp(inm, etag) == 0 || strcmp(inm, "*") == 0)) {
		const char *extra[] = { "ETag", etag, NULL };
		http_reply_headers(req, 304, NULL, -1, extra);
		goto out;
	}
	const char *range = mg_get_header(req->conn, "Range");
	const char *if_range = mg_get_header(req->conn, "If-Range");
	if (if_range && strcmp(if_range, etag) != 0)
		range = NULL; /* the client's copy is stale: send it all */
	int rc = http_range_parse(range, size, &first, &last);
	if (rc < 0) {
		snprintf(crange, sizeof(crange), "bytes */%lld", size);
		http_reply(req, 416, "application/json",
			   "{\"detail\":\"the range lies outside the file\",\"code\":\"range_not_satisfiable\"}",
			   strlen("{\"detail\":\"the range lies outside the file\",\"code\":\"range_not_satisfiable\"}"),
			   "Content-Range", crange);
		goto out;
	}
	if (rc == 0) {
		first = 0;
		last = size - 1;
	}
	snprintf(crange, sizeof(crange), "bytes %lld-%lld/%lld", first, last, size);
	const char *extra[] = { "Accept-Ranges", "bytes", "ETag", etag, "Content-Disposition", disposition,
				rc == 1 ? "Content-Range" : NULL, crange, NULL };
	if (!http_reply_headers(req, rc == 1 ? 206 : 200, http_file_type(path), last - first + 1, extra))
		goto out;
	buf = malloc(HTTP_FILE_CHUNK);
	if (!buf)
		goto out;
	long long left = last - first + 1, off = first;
	while (left > 0) {
		ssize_t n = pread(fd, buf, left < HTTP_FILE_CHUNK ? (size_t)left : HTTP_FILE_CHUNK, (off_t)off);
		if (n <= 0) {
			LOG_WARN(&http_log, "req=%s %s: read failed at %lld: %s", req->id, path, off,
				 n < 0 ? strerror(errno) : "file shrank");
			break;
		}
		if (mg_write(req->conn, buf, (size_t)n) <= 0)
			break; /* the client went away */
		req->bytes += n;
		left -= n;
		off += n;
	}
out:
	free(buf);
	if (fd >= 0)
		close(fd);
}

/* 302 to a presigned S3 URL for the recording's s3_key. Returns false when
 * that is not possible (no key, no presigner, signing failed). */
static bool http_file_redirect(struct http_request *req, const cJSON *rec, const char *disposition)
{
	const cJSON *key = cJSON_GetObjectItemCaseSensitive(rec, "s3_key");
	char err[256] = "";
	if (!cJSON_IsString(key) || !key->valuestring[0])
		return false;
	pthread_mutex_lock(&req->s->hooks_lock);
	http_presign_fn fn = req->s->presign;
	void *opaque = req->s->presign_opaque;
	pthread_mutex_unlock(&req->s->hooks_lock);
	if (!fn)
		return false;
	char *url = fn(opaque, key->valuestring, HTTP_PRESIGN_EXPIRES_S, disposition, err, sizeof(err));
	if (!url) {
		LOG_WARN(&http_log, "req=%s presigning %s failed: %s", req->id, key->valuestring, err);
		return false;
	}
	static const char body[] = "{\"detail\":\"the recording is in S3\",\"code\":\"redirect\"}";
	http_reply(req, 302, "application/json", body, sizeof(body) - 1, "Location", url);
	free(url);
	return true;
}

void http_file_serve(struct http_request *req, bool thumbnail, const cJSON *rec)
{
	char path[PATH_MAX], disposition[300];
	const cJSON *status = cJSON_GetObjectItemCaseSensitive(rec, "status");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(rec, "recording_id");
	const char *seed = cJSON_IsString(id) ? id->valuestring : "x";
	if (!cJSON_IsString(status) || strcmp(status->valuestring, "completed") != 0) {
		http_reply_error(req, 409, "not_ready", "the recording is %s; its files are served once completed",
				 cJSON_IsString(status) ? status->valuestring : "in an unknown state");
		return;
	}
	const char *name;
	if (thumbnail) {
		const cJSON *meta = cJSON_GetObjectItemCaseSensitive(rec, "metadata");
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(meta, "thumbnail");
		name = cJSON_IsString(t) ? t->valuestring : NULL;
		if (!name) {
			http_reply_error(req, 404, "no_thumbnail", "this recording has no thumbnail");
			return;
		}
		snprintf(disposition, sizeof(disposition), "inline; filename=\"%s\"", name);
	} else {
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, "file_name");
		name = cJSON_IsString(f) ? f->valuestring : NULL;
		if (!http_file_name_ok(name)) {
			http_reply_error(req, 500, "internal", "the recording's state names no file");
			return;
		}
		snprintf(disposition, sizeof(disposition), "attachment; filename=\"%s\"", name);
	}
	int rc = http_file_resolve(req->s, rec, name, path);
	if (rc == -2) {
		LOG_WARN(&http_log, "req=%s state of %s points outside local_storage_path", req->id, seed);
		http_reply_error(req, 404, "file_gone", "the file of this recording is not on this node");
		return;
	}
	if (rc < 0) {
		if (!thumbnail && http_file_redirect(req, rec, disposition))
			return;
		http_reply_error(req, 404, "file_gone", "the file of this recording is not on this node");
		return;
	}
	http_file_send(req, path, disposition, seed);
}
