/* http_text: a growing text buffer. */
#include "http_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void http_text_init(struct http_text *t)
{
	memset(t, 0, sizeof(*t));
}

void http_text_deinit(struct http_text *t)
{
	free(t->data);
	memset(t, 0, sizeof(*t));
}

/* Makes room for 'extra' more bytes and the NUL. Returns false (and marks
 * the buffer) when memory runs out. */
static bool text_reserve(struct http_text *t, size_t extra)
{
	if (t->oom)
		return false;
	if (t->len + extra + 1 <= t->cap)
		return true;
	size_t cap = t->cap ? t->cap : 1024;
	while (cap < t->len + extra + 1)
		cap *= 2;
	char *d = realloc(t->data, cap);
	if (!d) {
		t->oom = true;
		return false;
	}
	t->data = d;
	t->cap = cap;
	return true;
}

void http_text_append(struct http_text *t, const char *s, size_t len)
{
	if (!text_reserve(t, len))
		return;
	memcpy(t->data + t->len, s, len);
	t->len += len;
	t->data[t->len] = '\0';
}

void http_text_printf(struct http_text *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !text_reserve(t, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(t->data + t->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
}
