/* http_route: the REST route table and the path matcher. */
#include "http_route.h"

#include <string.h>

const struct http_route http_routes[HTTP_ROUTE_COUNT] = {
	{ HTTP_ROUTE_START, "POST", "/api/webrtc/rooms/{room_id}/recording/start", "start", true },
	{ HTTP_ROUTE_STOP, "POST", "/api/webrtc/rooms/{room_id}/recording/{recording_id}/stop", "stop", true },
	{ HTTP_ROUTE_PAUSE, "POST", "/api/webrtc/rooms/{room_id}/recording/{recording_id}/pause", "pause", true },
	{ HTTP_ROUTE_RESUME, "POST", "/api/webrtc/rooms/{room_id}/recording/{recording_id}/resume", "resume", true },
	{ HTTP_ROUTE_CANCEL, "DELETE", "/api/webrtc/rooms/{room_id}/recording/{recording_id}", "cancel", true },
	{ HTTP_ROUTE_STATUS, "GET", "/api/webrtc/rooms/{room_id}/recording/{recording_id}/status", "status", true },
	{ HTTP_ROUTE_LIST_ROOM, "GET", "/api/webrtc/rooms/{room_id}/recordings", "list_room", true },
	{ HTTP_ROUTE_LIST_USER, "GET", "/api/webrtc/recordings", "list_user", true },
	{ HTTP_ROUTE_WS, "GET", "/api/webrtc/ws", "websocket", true },
	{ HTTP_ROUTE_HEALTHZ, "GET", "/healthz", "healthz", false },
	{ HTTP_ROUTE_METRICS, "GET", "/metrics", "metrics", false },
	{ HTTP_ROUTE_OPENAPI, "GET", "/api/openapi.json", "openapi", false },
	{ HTTP_ROUTE_INDEX, "GET", "/", "index", false },
	{ HTTP_ROUTE_POLICIES, "GET", "/api/system/policies", "policies", true },
	{ HTTP_ROUTE_DOWNLOAD, "GET", "/api/webrtc/rooms/{room_id}/recording/{recording_id}/download", "download", true },
	{ HTTP_ROUTE_THUMBNAIL, "GET", "/api/webrtc/rooms/{room_id}/recording/{recording_id}/thumbnail", "thumbnail",
	  true },
	{ HTTP_ROUTE_WHIP, "POST", "/api/webrtc/rooms/{room_id}/whip", "whip_publish", true },
	{ HTTP_ROUTE_WHIP_OPTIONS, "OPTIONS", "/api/webrtc/rooms/{room_id}/whip", "whip_options", false },
	{ HTTP_ROUTE_WHIP_END, "DELETE", "/api/webrtc/rooms/{room_id}/whip/{recording_id}", "whip_end", true },
	{ HTTP_ROUTE_WHIP_PATCH, "PATCH", "/api/webrtc/rooms/{room_id}/whip/{recording_id}", "whip_patch", true },
	{ HTTP_ROUTE_WHIP_SESSION_OPTIONS, "OPTIONS", "/api/webrtc/rooms/{room_id}/whip/{recording_id}",
	  "whip_session_options", false },
	{ HTTP_ROUTE_CONSOLE, "GET", "/console/{file}", "console", false },
	{ HTTP_ROUTE_LOGIN, "POST", "/api/system/login", "login", false },
	{ HTTP_ROUTE_LOGOUT, "POST", "/api/system/logout", "logout", false },
	{ HTTP_ROUTE_SESSION, "GET", "/api/system/session", "session", false },
	{ HTTP_ROUTE_DEVICES, "GET", "/api/system/devices", "devices", true },
	{ HTTP_ROUTE_UPDATE, "POST", "/api/system/update", "update", true },
	{ HTTP_ROUTE_UPDATE_STATUS, "GET", "/api/system/update", "update_status", true },
	{ HTTP_ROUTE_REBOOT, "POST", "/api/system/reboot", "reboot", true },
};

/* Reads a decimal number of up to 18 digits. Returns the characters used,
 * 0 when there is no digit or it is too long. */
static size_t range_number(const char *s, long long *out)
{
	size_t n = 0;
	long long v = 0;
	while (s[n] >= '0' && s[n] <= '9') {
		if (n == 18)
			return 0;
		v = v * 10 + (s[n] - '0');
		n++;
	}
	*out = v;
	return n;
}

int http_range_parse(const char *header, long long size, long long *first, long long *last)
{
	long long a = -1, b = -1;
	if (!header)
		return 0;
	while (*header == ' ')
		header++;
	if (strncmp(header, "bytes=", 6) != 0)
		return 0;
	const char *p = header + 6;
	while (*p == ' ')
		p++;
	if (strchr(p, ','))
		return 0;
	size_t n = range_number(p, &a);
	if (!n)
		a = -1;
	p += n;
	if (*p++ != '-')
		return 0;
	n = range_number(p, &b);
	if (!n)
		b = -1;
	p += n;
	while (*p == ' ')
		p++;
	if (*p != '\0' || (a < 0 && b < 0))
		return 0;
	if (a < 0) {
		/* The last b bytes. */
		if (b == 0 || size == 0)
			return -1;
		*first = b >= size ? 0 : size - b;
		*last = size - 1;
		return 1;
	}
	if (b >= 0 && b < a)
		return 0; /* malformed: ignored */
	if (a >= size)
		return -1;
	*first = a;
	*last = (b < 0 || b >= size) ? size - 1 : b;
	return 1;
}

const char *http_route_label(int id)
{
	if (id >= 0 && id < HTTP_ROUTE_COUNT)
		return http_routes[id].name;
	if (id == HTTP_ROUTE_NOT_FOUND)
		return "not_found";
	if (id == HTTP_ROUTE_METHOD_NOT_ALLOWED)
		return "method_not_allowed";
	if (id == HTTP_ROUTE_REJECTED)
		return "rejected";
	return "unknown";
}

/* Walks the template 't' and the path 'p' segment by segment. Returns the
 * number of literal segments matched, or -1 when the path does not fit.
 * Captures are written into 'm' only when 'm' is not NULL. */
static int route_fit(const char *t, const char *p, struct http_route_match *m)
{
	int literals = 0;
	if (*t != '/' || *p != '/')
		return -1;
	if (strcmp(t, "/") == 0)
		return strcmp(p, "/") == 0 ? 1 : -1;
	while (*t == '/' && *p == '/') {
		t++;
		p++;
		size_t tl = strcspn(t, "/");
		size_t pl = strcspn(p, "/");
		if (pl == 0)
			return -1; /* empty segment: "//" or a trailing slash */
		if (tl > 2 && t[0] == '{' && t[tl - 1] == '}') {
			char *dst = NULL;
			bool *cut = NULL;
			if (m && strncmp(t, "{room_id}", tl) == 0) {
				dst = m->room_id;
				cut = &m->room_too_long;
			} else if (m && strncmp(t, "{recording_id}", tl) == 0) {
				dst = m->recording_id;
				cut = &m->recording_too_long;
			}
			if (dst) {
				size_t n = pl;
				if (n > HTTP_ID_MAX) {
					n = HTTP_ID_MAX;
					*cut = true;
				}
				memcpy(dst, p, n);
				dst[n] = '\0';
			}
		} else {
			if (tl != pl || memcmp(t, p, tl) != 0)
				return -1;
			literals++;
		}
		t += tl;
		p += pl;
	}
	return (*t == '\0' && *p == '\0') ? literals : -1;
}

int http_route_match(const char *method, const char *path, struct http_route_match *m)
{
	int best = -1;
	memset(m, 0, sizeof(*m));
	if (!method || !path)
		return 404;

	/* The most specific templates that fit the path, whatever the method. */
	for (int i = 0; i < HTTP_ROUTE_COUNT; i++) {
		int lit = route_fit(http_routes[i].path, path, NULL);
		if (lit > best)
			best = lit;
	}
	if (best < 0)
		return 404;

	for (int i = 0; i < HTTP_ROUTE_COUNT; i++) {
		const struct http_route *r = &http_routes[i];
		if (route_fit(r->path, path, NULL) != best)
			continue;
		if (strcmp(r->method, method) == 0) {
			route_fit(r->path, path, m);
			m->route = r;
			m->allow[0] = '\0';
			return 0;
		}
		if (m->allow[0] && strlen(m->allow) + 2 < sizeof(m->allow))
			strcat(m->allow, ", ");
		if (strlen(m->allow) + strlen(r->method) < sizeof(m->allow))
			strcat(m->allow, r->method);
	}
	return 405;
}
