/* http_console_serve: GET / and GET /console/{file}: the operator console's
 * embedded files, with an ETag so a browser revalidates instead of
 * fetching them again, and a Content-Security-Policy that lets the page
 * load nothing but this server's own files. */
#include "http_console.h"
#include "http_internal.h"

#include <string.h>

#include <civetweb.h>

#define HTTP_CONSOLE_CSP                                                                          \
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "       \
	"media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "       \
	"form-action 'self'"

const struct http_console_file *http_console_find(const char *name)
{
	if (!name || !*name || strchr(name, '/'))
		return NULL;
	for (const struct http_console_file *f = http_console_files; f->name; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

void http_console_serve(struct http_request *req)
{
	const struct mg_request_info *ri = mg_get_request_info(req->conn);
	const char *path = ri->local_uri_raw ? ri->local_uri_raw : ri->local_uri;
	const char *name = path && strcmp(path, "/") == 0 ? "index.html"
			   : path && strncmp(path, "/console/", 9) == 0 ? path + 9
									 : NULL;
	const struct http_console_file *f = http_console_find(name);
	if (!f) {
		http_reply_error(req, 404, "not_found", "no console file %s", path ? path : "");
		return;
	}
	const char *extra[] = {
		"ETag", f->etag,
		"Cache-Control", "no-cache",
		"X-Content-Type-Options", "nosniff",
		"Referrer-Policy", "no-referrer",
		"Content-Security-Policy", HTTP_CONSOLE_CSP,
		NULL,
	};
	const char *inm = mg_get_header(req->conn, "If-None-Match");
	if (inm && strstr(inm, f->etag)) {
		http_reply_headers(req, 304, NULL, -1, extra);
		return;
	}
	if (http_reply_headers(req, 200, f->content_type, (long long)f->len, extra))
		mg_write(req->conn, f->data, f->len);
}
