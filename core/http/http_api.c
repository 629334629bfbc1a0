/* http_api: the eight routes of SPEC §2 mapped onto the recorder: token,
 * ids and parameters checked here, decisions taken there. */
#include "http_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "common_time.h"
#include "common_util.h"
#include "recorder.h"

/* Reads one query parameter into 'out'. Returns 1 when present, 0 when
 * absent, -1 when longer than 'outlen' - 1 or holding a NUL ("%00"). */
int http_query(const struct mg_request_info *ri, const char *name, char *out, size_t outlen)
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

char *http_read_body(struct http_request *req, size_t *len)
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

/* ---- pagination of the listings ------------------------------------------
 *
 * Without limit and cursor a listing is the reference's: every record,
 * {"recordings": [...], "count": n}. With either, the body keeps that shape
 * and holds one page: at most 'limit' records (default HTTP_PAGE_DEFAULT)
 * following the cursor in the listing's order (newest started_at first,
 * then recording_id), count = the records in the page; when more follow,
 * the X-Next-Cursor header carries the cursor of the next page. A cursor is
 * "<started_at in ns>.<recording_id>" of the page's last record: opaque to
 * clients, and stable when records are added or removed meanwhile. */
#define HTTP_PAGE_DEFAULT 100
#define HTTP_PAGE_MAX 1000

struct http_page {
	bool on;                 /* limit or cursor given */
	int limit;
	bool after;              /* a cursor was given: start after it */
	int64_t after_ns;
	char after_id[HTTP_ID_MAX + 1];
};

/* The sort key of a record, as state_list orders them: started_at (none
 * sorts last), then recording_id. */
static int64_t http_page_key(const cJSON *rec, const char **id)
{
	const cJSON *sa = cJSON_GetObjectItemCaseSensitive(rec, "started_at");
	const cJSON *ri = cJSON_GetObjectItemCaseSensitive(rec, "recording_id");
	int64_t ns = 0;
	*id = cJSON_IsString(ri) ? ri->valuestring : "";
	if (!cJSON_IsString(sa))
		return INT64_MIN;
	time_parse_iso8601(sa->valuestring, &ns);
	return ns;
}

/* <0 when (ns_a, id_a) comes before (ns_b, id_b) in the listing. */
static int http_page_cmp(int64_t ns_a, const char *id_a, int64_t ns_b, const char *id_b)
{
	if (ns_a != ns_b)
		return ns_a > ns_b ? -1 : 1;
	return strcmp(id_a, id_b);
}

/* Reads limit and cursor. Returns 0, or -1 with 400 replied. */
static int http_page_parse(struct http_request *req, const struct mg_request_info *ri, struct http_page *pg)
{
	char limit[16], cursor[HTTP_ID_MAX + 32];
	int hl = http_query(ri, "limit", limit, sizeof(limit));
	int hc = http_query(ri, "cursor", cursor, sizeof(cursor));
	memset(pg, 0, sizeof(*pg));
	pg->limit = HTTP_PAGE_DEFAULT;
	if (hl > 0) {
		char *end;
		long v = strtol(limit, &end, 10);
		if (limit[0] < '0' || limit[0] > '9' || *end || v < 1 || v > HTTP_PAGE_MAX)
			hl = -1;
		else
			pg->limit = (int)v;
	}
	if (hl < 0) {
		http_reply_error(req, 400, "invalid_limit", "limit must be a whole number from 1 to %d",
				 HTTP_PAGE_MAX);
		return -1;
	}
	if (hc > 0) {
		char *dot = strchr(cursor, '.'), *end = NULL;
		long long ns = dot ? strtoll(cursor, &end, 10) : 0;
		bool digits = cursor[0] == '-' ? cursor[1] >= '0' && cursor[1] <= '9' : cursor[0] >= '0' && cursor[0] <= '9';
		if (!dot || !digits || end != dot || !recorder_recording_id_valid(dot + 1))
			hc = -1;
		else {
			pg->after = true;
			pg->after_ns = ns;
			util_strlcpy(pg->after_id, dot + 1, sizeof(pg->after_id));
		}
	}
	if (hc < 0) {
		http_reply_error(req, 400, "invalid_cursor",
				 "cursor must be a value of a previous reply's X-Next-Cursor header");
		return -1;
	}
	pg->on = hl > 0 || hc > 0;
	return 0;
}

/* Cuts the listing 'body' down to the page; writes the next page's cursor
 * into 'next' ("" when this is the last page). */
static void http_page_apply(cJSON *body, const struct http_page *pg, char *next, size_t nextlen)
{
	cJSON *arr = cJSON_GetObjectItemCaseSensitive(body, "recordings");
	next[0] = '\0';
	if (!cJSON_IsArray(arr))
		return;
	int kept = 0;
	cJSON *it = arr->child;
	while (it) {
		cJSON *following = it->next;
		const char *id;
		int64_t ns = http_page_key(it, &id);
		bool before = pg->after && http_page_cmp(ns, id, pg->after_ns, pg->after_id) <= 0;
		if (before || kept == pg->limit) {
			if (!before && !next[0] && arr->child) {
				/* The page is full and a record follows. */
				const cJSON *last = it->prev;
				const char *lid;
				int64_t lns = http_page_key(last, &lid);
				snprintf(next, nextlen, "%lld.%s", (long long)lns, lid);
			}
			cJSON_Delete(cJSON_DetachItemViaPointer(arr, it));
		} else {
			kept++;
		}
		it = following;
	}
	cJSON_ReplaceItemInObjectCaseSensitive(body, "count", cJSON_CreateNumber(kept));
}

/* Replies with a listing, paginated when the request asked for it. */
static void http_reply_list(struct http_request *req, const struct http_page *pg, cJSON *body)
{
	char next[HTTP_ID_MAX + 32];
	if (!pg->on) {
		http_reply_json(req, 200, body);
		return;
	}
	http_page_apply(body, pg, next, sizeof(next));
	char *text = cJSON_PrintUnformatted(body);
	if (!text) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	http_reply(req, 200, "application/json", text, strlen(text), next[0] ? "X-Next-Cursor" : NULL,
		   next[0] ? next : NULL);
	cJSON_free(text);
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

int http_check_ids(struct http_request *req, struct http_route_match *m)
{
	if (m->room_too_long || !http_decode_id(m->room_id) ||
	    (m->room_id[0] && !recorder_room_id_valid(m->room_id))) {
		http_reply_error(req, 400, "invalid_room_id",
				 "room ids are 1 to 128 characters of A-Z a-z 0-9 . _ -, not . or ..");
		return -1;
	}
	if (m->recording_too_long || !http_decode_id(m->recording_id) ||
	    (m->recording_id[0] && !recorder_recording_id_valid(m->recording_id))) {
		http_reply_error(req, 400, "invalid_recording_id", "recording ids are uuids");
		return -1;
	}
	return 0;
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
	struct http_page page = { 0 };

	/* A <video> or <img> element cannot send an Authorization header: the
	 * file routes also take the token as ?access_token= (like the
	 * WebSocket); every other route needs the header. */
	bool file_route = m->route->id == HTTP_ROUTE_DOWNLOAD || m->route->id == HTTP_ROUTE_THUMBNAIL;
	if (http_auth_check(req, file_route, &claims) < 0)
		return;
	struct recorder_caller caller = recorder_caller_of(claims);

	if (http_check_ids(req, m) < 0)
		goto done;

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
		if (http_page_parse(req, ri, &page) < 0)
			goto done;
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
		if (http_page_parse(req, ri, &page) < 0)
			goto done;
		recorder_list_user(rec, &caller, status[0] ? status : NULL, &out);
		break;
	default:
		http_reply_error(req, 404, "not_found", "no such route");
		goto done;
	}

	if (out.status < 100 || out.status > 599) {
		http_reply_error(req, 500, "internal", "the recorder gave no answer");
	} else if (out.body && out.status == 200 && page.on) {
		http_reply_list(req, &page, out.body);
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
