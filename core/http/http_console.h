/* http_console: the operator console's static files (core/http/console/),
 * embedded into the executable at build time by http_console_embed.cmake.
 *
 * Provides: the table http_console_files[] and the lookup by name.
 * Uses: libc only (the table is tested without a server). */
#ifndef EDGEREC_HTTP_CONSOLE_H
#define EDGEREC_HTTP_CONSOLE_H

struct http_console_file {
	const char *name;          /* "app.js"; NULL ends the table */
	const char *content_type;
	const char *data;
	unsigned long len;
	const char *etag;          /* quoted, from the file's SHA-256 */
};

extern const struct http_console_file http_console_files[];

/* The file called 'name' (a plain name, no '/'), or NULL. */
const struct http_console_file *http_console_find(const char *name);

#endif
