/* http_text: a growing text buffer for replies assembled piece by piece
 * (Prometheus text, HTML). Provides http_text_printf and friends; uses libc.
 * A failed allocation sets 'oom' and later appends do nothing, so callers
 * check once at the end. */
#ifndef EDGEREC_HTTP_TEXT_H
#define EDGEREC_HTTP_TEXT_H

#include <stdbool.h>
#include <stddef.h>

struct http_text {
	char *data;   /* NUL-terminated once anything was appended */
	size_t len;
	size_t cap;
	bool oom;
};

void http_text_init(struct http_text *t);
void http_text_deinit(struct http_text *t);
void http_text_printf(struct http_text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void http_text_append(struct http_text *t, const char *s, size_t len);

#endif
