/* http_route: the route table of the REST API and the matcher that maps a
 * method and a path onto one route, capturing the room and recording ids.
 *
 * Provides: enum http_route_id, the table http_routes[], http_route_match().
 * Uses: libc only, so the table is tested without a server
 * (tests/unit/test_http.c) and shared with the metrics labels and the
 * OpenAPI coverage check. */
#ifndef EDGEREC_HTTP_ROUTE_H
#define EDGEREC_HTTP_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

enum http_route_id {
	HTTP_ROUTE_START = 0,
	HTTP_ROUTE_STOP,
	HTTP_ROUTE_PAUSE,
	HTTP_ROUTE_RESUME,
	HTTP_ROUTE_CANCEL,
	HTTP_ROUTE_STATUS,
	HTTP_ROUTE_LIST_ROOM,
	HTTP_ROUTE_LIST_USER,
	HTTP_ROUTE_WS,
	HTTP_ROUTE_HEALTHZ,
	HTTP_ROUTE_METRICS,
	HTTP_ROUTE_OPENAPI,
	HTTP_ROUTE_INDEX,
	HTTP_ROUTE_POLICIES,
	HTTP_ROUTE_DOWNLOAD,
	HTTP_ROUTE_THUMBNAIL,
	HTTP_ROUTE_WHIP,            /* WHIP (RFC 9725), http_whip.c */
	HTTP_ROUTE_WHIP_OPTIONS,
	HTTP_ROUTE_WHIP_END,
	HTTP_ROUTE_WHIP_PATCH,
	HTTP_ROUTE_WHIP_SESSION_OPTIONS,
	HTTP_ROUTE_CONSOLE,
	HTTP_ROUTE_LOGIN,
	HTTP_ROUTE_LOGOUT,
	HTTP_ROUTE_SESSION,
	HTTP_ROUTE_DEVICES,         /* the box's cameras and microphones, http_devices.c */
	HTTP_ROUTE_UPDATE,          /* firmware update, http_update.c */
	HTTP_ROUTE_UPDATE_STATUS,
	HTTP_ROUTE_REBOOT,
	HTTP_ROUTE_COUNT,
	/* Pseudo routes, for metrics labels of requests that matched none. */
	HTTP_ROUTE_NOT_FOUND = HTTP_ROUTE_COUNT,
	HTTP_ROUTE_METHOD_NOT_ALLOWED,
	HTTP_ROUTE_REJECTED,        /* refused by civetweb before routing */
	HTTP_ROUTE_LABEL_COUNT,
};

/* One route. 'path' is a template: segments "{room_id}" and
 * "{recording_id}" capture one non-empty segment each; every other
 * segment is literal. */
struct http_route {
	enum http_route_id id;
	const char *method;
	const char *path;
	const char *name;   /* the metrics label and the OpenAPI operationId */
	bool auth;          /* needs a bearer token */
};

extern const struct http_route http_routes[HTTP_ROUTE_COUNT];

/* Longest room id and recording id a path segment may carry (the validators
 * of recorder_fsm.h decide what is well formed). */
#define HTTP_ID_MAX 128

struct http_route_match {
	const struct http_route *route;   /* NULL unless 0 is returned */
	char room_id[HTTP_ID_MAX + 1];    /* "" when the route has none */
	char recording_id[HTTP_ID_MAX + 1];
	bool room_too_long;               /* a captured segment was cut: reply 400 */
	bool recording_too_long;
	char allow[64];                   /* on 405: the methods the path accepts */
};

/* Matches 'method' and the decoded 'path' (no query string). Among the
 * routes whose template fits the path, those with the most literal
 * segments win, so ".../recording/start" is never read as a recording id.
 * Returns 0 and fills 'm'; 404 when no template fits the path; 405 when
 * one fits but not with this method ('m->allow' lists the methods). Pure
 * and thread-safe. */
int http_route_match(const char *method, const char *path, struct http_route_match *m);

/* Parses a Range header ("bytes=a-b", "bytes=a-", "bytes=-n") against a
 * representation of 'size' bytes. Returns 1 with the inclusive range in
 * '*first'..'*last'; 0 when the header is absent, not a bytes range, or
 * asks for several ranges (the whole file is served, as RFC 9110 allows);
 * -1 when no byte of it exists (416). Pure. */
int http_range_parse(const char *header, long long size, long long *first, long long *last);

/* The label of a route id or pseudo route ("start", "not_found", ...). */
const char *http_route_label(int id);

#endif
