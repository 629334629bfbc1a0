/* fuzz_http_route: the route matcher faces every request line. Input:
 * "METHOD path" (first space splits); the matcher must never read or write
 * out of bounds, and what it returns must be consistent. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct http_route_match m;
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	char *path = strchr(text, ' ');
	if (path)
		*path++ = '\0';
	else
		path = text + strlen(text);
	int rc = http_route_match(text, path, &m);
	if (rc == 0) {
		if (!m.route || strcmp(m.route->method, text) != 0)
			abort();
		if (strlen(m.room_id) > HTTP_ID_MAX || strlen(m.recording_id) > HTTP_ID_MAX)
			abort();
	} else if (rc == 405) {
		if (m.route || !m.allow[0])
			abort();
	} else if (rc != 404) {
		abort();
	}
	free(text);
	return 0;
}
