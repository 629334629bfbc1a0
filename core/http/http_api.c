/* http_api: the eight routes of SPEC §2 mapped onto the recorder: token,
 * ids and parameters checked here, decisions taken there. */
#include "http_internal.h"

#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "recorder.h"

/* Reads one query parameter into 'out'. Returns 1 when present, 0 when
 * absent, -1 when longer than 'outlen' - 1 or holding a NUL ("%00"). */
static int http_query(const struct mg_request_info *ri, const char *name, char *out, size_t outlen)
{
	if (!ri->query_string)
		return 0;
	int n = mg_get_var2(ri->query_string, strlen(ri->query_string), name, out, outlen, 0);
	if (n == -1)
		return 0;
	if (n < 0 || (size_t)n != strlen(out))
		return -1;
	return 1;
}

/* Reads the request body (at most s->max_body bytes). Returns a malloc'd
 * NUL-terminated text (possibly empty) and its length, or NULL with 413/500
 * already replied. */
static char *http_read_body(struct http_request *req, size_t *len)
{
	size_t cap = 1024, n = 0;
	char *buf = malloc(cap);
	if (!buf) {
		http_reply_error(req, 500, "internal", "out of memory");
		return NULL;
	}
	for (;;) {
		if (n + 512 + 1 > cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				http_reply_error(req, 500, "internal", "out of memory");
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		int r = mg_read(req->conn, buf + n, cap - n - 1);
		if (r <= 0)
			break;
		n += (size_t)r;
		if ((long long)n > req->s->max_body) {
			free(buf);
			http_reply_error(req, 413, "body_too_large", "request body exceeds %lld bytes",
					 req->s->max_body);
			return NULL;
		}
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Start's optional JSON body: {"recording_format": "...", "quality": "..."}
 * fills what the query string left out. Returns 0, or -1 after a 400/413
 * reply. */
static int http_start_body(struct http_request *req, char *format, size_t flen, bool have_format,
			   char *quality, size_t qlen, bool have_quality)
{
	size_t len = 0;
	int rc = -1;
	char *body = http_read_body(req, &len);
	cJSON *json = NULL;
	if (!body)
		return -1;
	size_t i = 0;
	while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
		i++;
	if (i == len) {
		rc = 0;
		goto out;
	}
	json = cJSON_ParseWithLength(body, len);
	if (!json || !cJSON_IsObject(json)) {
		http_reply_error(req, 400, "invalid_json", "the request body must be a JSON object");
		goto out;
	}
	static const char *const names[] = { "recording_format", "quality" };
	for (int k = 0; k < 2; k++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, names[k]);
		if (!v || cJSON_IsNull(v))
			continue;
		if (!cJSON_IsString(v)) {
			http_reply_error(req, 400, k == 0 ? "invalid_format" : "invalid_quality",
					 "%s must be a string", names[k]);
			goto out;
		}
		char *dst = k == 0 ? format : quality;
		size_t dlen = k == 0 ? flen : qlen;
		bool have = k == 0 ? have_format : have_quality;
		if (have)
			continue;
		if (strlen(v->valuestring) >= dlen) {
			http_reply_error(req, 400, k == 0 ? "invalid_format" : "invalid_quality",
					 "%s is too long", names[k]);
			goto out;
		}
		strcpy(dst, v->valuestring);
	}
	rc = 0;
out:
	cJSON_Delete(json);
	free(body);
	return rc;
}

/* Percent-decodes a captured path segment in place. Returns false when it
 * does not decode cleanly (bad escape, an embedded NUL). */
static bool http_decode_id(char *id)
{
	char tmp[HTTP_ID_MAX + 1];
	size_t n = strlen(id);
	if (!strchr(id, '%'))
		return true;
	int len = mg_url_decode(id, (int)n, tmp, sizeof(tmp), 0);
	if (len < 0 || (size_t)len != strlen(tmp))
		return false;
	memcpy(id, tmp, (size_t)len + 1);
	return true;
}

void http_api_serve(struct http_request *req, const struct http_route_match *cm)
{
	struct http_route_match copy = *cm, *m = &copy;
	const struct mg_request_info *ri = mg_get_request_info(req->conn);
	struct recorder *rec = req->s->rec;
	struct recorder_reply out = { 0, NULL };
	cJSON *claims = NULL;
	char format[32] = "", quality[32] = "", status[32] = "";
	int hf = 0, hq = 0, hs = 0;

	/* A <video> or <img> element cannot send an Authorization header: the
	 * file routes also take the token as ?access_token= (like the
	 * WebSocket); every other route needs the header. */
	bool file_route = m->route->id == HTTP_ROUTE_DOWNLOAD || m->route->id == HTTP_ROUTE_THUMBNAIL;
	if (http_auth_check(req, file_route, &claims) < 0)
		return;
	const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
	struct recorder_caller caller = {
		.user_id = cJSON_IsString(sub) ? sub->valuestring : "",
		.claims = claims,
	};

	if (m->room_too_long || !http_decode_id(m->room_id) ||
	    (m->room_id[0] && !recorder_room_id_valid(m->room_id))) {
		http_reply_error(req, 400, "invalid_room_id",
				 "room ids are 1 to 128 characters of A-Z a-z 0-9 . _ -, not . or ..");
		goto done;
	}
	if (m->recording_too_long || !http_decode_id(m->recording_id) ||
	    (m->recording_id[0] && !recorder_recording_id_valid(m->recording_id))) {
		http_reply_error(req, 400, "invalid_recording_id", "recording ids are uuids");
		goto done;
	}

	switch (m->route->id) {
	case HTTP_ROUTE_START:
		hf = http_query(ri, "recording_format", format, sizeof(format));
		hq = http_query(ri, "quality", quality, sizeof(quality));
		if (hf < 0) {
			http_reply_error(req, 400, "invalid_format", "unknown recording_format");
			goto done;
		}
		if (hq < 0) {
			http_reply_error(req, 400, "invalid_quality", "unknown quality");
			goto done;
		}
		if (http_start_body(req, format, sizeof(format), hf > 0, quality, sizeof(quality), hq > 0) < 0)
			goto done;
		recorder_start(rec, &caller, m->room_id, format[0] ? format : NULL,
			       quality[0] ? quality : NULL, &out);
		if (out.status == 200) {
			const cJSON *id = cJSON_GetObjectItemCaseSensitive(out.body, "recording_id");
			if (cJSON_IsString(id))
				snprintf(req->note, sizeof(req->note), "recording=%s", id->valuestring);
		}
		break;
	case HTTP_ROUTE_STOP:
		recorder_stop(rec, &caller, m->room_id, m->recording_id, &out);
		break;
	case HTTP_ROUTE_PAUSE:
		recorder_pause(rec, &caller, m->room_id, m->recording_id, &out);
		break;
	case HTTP_ROUTE_RESUME:
		recorder_resume(rec, &caller, m->room_id, m->recording_id, &out);
		break;
	case HTTP_ROUTE_CANCEL:
		recorder_cancel(rec, &caller, m->room_id, m->recording_id, &out);
		break;
	case HTTP_ROUTE_STATUS:
		recorder_status(rec, &caller, m->room_id, m->recording_id, &out);
		break;
	case HTTP_ROUTE_DOWNLOAD:
	case HTTP_ROUTE_THUMBNAIL:
		/* The recorder applies the checks (room, the download
		 * authorization the policy may widen) and gives the state the
		 * files are found by. */
		recorder_download(rec, &caller, m->room_id, m->recording_id, &out);
		if (out.status == 200 && out.body) {
			http_file_serve(req, m->route->id == HTTP_ROUTE_THUMBNAIL, out.body);
			goto done;
		}
		break;
	case HTTP_ROUTE_LIST_ROOM:
		recorder_list_room(rec, &caller, m->room_id, &out);
		break;
	case HTTP_ROUTE_LIST_USER:
		hs = http_query(ri, "status", status, sizeof(status));
		if (hs < 0 || (hs > 0 && status[0] && recorder_status_parse(status, &(enum recorder_status){ 0 }) < 0)) {
			http_reply_error(req, 400, "invalid_status",
					 "status must be one of pending, recording, paused, processing, "
					 "completed, failed, cancelled");
			goto done;
		}
		recorder_list_user(rec, &caller, status[0] ? status : NULL, &out);
		break;
	default:
		http_reply_error(req, 404, "not_found", "no such route");
		goto done;
	}

	if (out.status < 100 || out.status > 599) {
		http_reply_error(req, 500, "internal", "the recorder gave no answer");
	} else if (out.body) {
		http_reply_json(req, out.status, out.body);
	} else if (out.status >= 400) {
		http_reply_error(req, out.status, out.status == 404 ? "not_found" : "error",
				 "request refused");
	} else {
		http_reply_error(req, 500, "internal", "the recorder gave no body");
	}
done:
	cJSON_Delete(out.body);
	cJSON_Delete(claims);
}
