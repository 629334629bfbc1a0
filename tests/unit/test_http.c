/* test_http: the route table and matcher, the metrics text, and the
 * OpenAPI document's coverage of every route (no server, no network). */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "http_console.h"
#include "http_internal.h"
#include "http_metrics.h"
#include "http_route.h"
#include "http_text.h"

#define RID "0f8fad5b-d9cb-469f-a165-70867728950e"

static void test_match(void)
{
	static const struct {
		const char *method, *path;
		int rc;
		int route;
		const char *room, *rec;
	} cases[] = {
		{ "POST", "/api/webrtc/rooms/lobby/recording/start", 0, HTTP_ROUTE_START, "lobby", "" },
		{ "POST", "/api/webrtc/rooms/lobby/recording/" RID "/stop", 0, HTTP_ROUTE_STOP, "lobby", RID },
		{ "POST", "/api/webrtc/rooms/lobby/recording/" RID "/pause", 0, HTTP_ROUTE_PAUSE, "lobby", RID },
		{ "POST", "/api/webrtc/rooms/lobby/recording/" RID "/resume", 0, HTTP_ROUTE_RESUME, "lobby", RID },
		{ "DELETE", "/api/webrtc/rooms/lobby/recording/" RID, 0, HTTP_ROUTE_CANCEL, "lobby", RID },
		{ "GET", "/api/webrtc/rooms/lobby/recording/" RID "/status", 0, HTTP_ROUTE_STATUS, "lobby", RID },
		{ "GET", "/api/webrtc/rooms/r.1_x-y/recordings", 0, HTTP_ROUTE_LIST_ROOM, "r.1_x-y", "" },
		{ "GET", "/api/webrtc/recordings", 0, HTTP_ROUTE_LIST_USER, "", "" },
		{ "GET", "/api/webrtc/ws", 0, HTTP_ROUTE_WS, "", "" },
		{ "GET", "/healthz", 0, HTTP_ROUTE_HEALTHZ, "", "" },
		{ "GET", "/metrics", 0, HTTP_ROUTE_METRICS, "", "" },
		{ "GET", "/api/openapi.json", 0, HTTP_ROUTE_OPENAPI, "", "" },
		{ "GET", "/", 0, HTTP_ROUTE_INDEX, "", "" },
		{ "GET", "/console/app.js", 0, HTTP_ROUTE_CONSOLE, "", "" },
		{ "POST", "/api/system/login", 0, HTTP_ROUTE_LOGIN, "", "" },
		{ "POST", "/api/system/logout", 0, HTTP_ROUTE_LOGOUT, "", "" },
		{ "GET", "/api/system/session", 0, HTTP_ROUTE_SESSION, "", "" },
		{ "GET", "/api/system/login", 405, -1, NULL, NULL },
		{ "GET", "/console/a/b.js", 404, -1, NULL, NULL },
		{ "GET", "/console/", 404, -1, NULL, NULL },
		/* Wrong method on a known path. */
		{ "GET", "/api/webrtc/rooms/lobby/recording/start", 405, -1, NULL, NULL },
		{ "PUT", "/api/webrtc/recordings", 405, -1, NULL, NULL },
		{ "POST", "/api/webrtc/rooms/lobby/recording/" RID "/status", 405, -1, NULL, NULL },
		/* The literal "start" wins over a recording id in that place. */
		{ "DELETE", "/api/webrtc/rooms/lobby/recording/start", 405, -1, NULL, NULL },
		/* Unknown paths. */
		{ "GET", "/api/webrtc/rooms//recordings", 404, -1, NULL, NULL },
		{ "GET", "/api/webrtc/recordings/", 404, -1, NULL, NULL },
		{ "GET", "/api/webrtc/rooms/lobby/recording/" RID "/status/x", 404, -1, NULL, NULL },
		{ "GET", "/nothing", 404, -1, NULL, NULL },
		{ "GET", "", 404, -1, NULL, NULL },
		{ "GET", "healthz", 404, -1, NULL, NULL },
		{ "POST", "/api/webrtc/rooms/lobby/recording/" RID "/stopx", 404, -1, NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_route_match m;
		int rc = http_route_match(cases[i].method, cases[i].path, &m);
		if (rc != cases[i].rc)
			fprintf(stderr, "case %zu: %s %s\n", i, cases[i].method, cases[i].path);
		CHECK_INT(rc, cases[i].rc);
		if (rc == 0 && cases[i].rc == 0) {
			CHECK_INT(m.route->id, cases[i].route);
			CHECK_STR(m.room_id, cases[i].room);
			CHECK_STR(m.recording_id, cases[i].rec);
			CHECK(!m.room_too_long && !m.recording_too_long);
		}
	}
	struct http_route_match m;
	CHECK_INT(http_route_match("GET", "/api/webrtc/rooms/lobby/recording/start", &m), 405);
	CHECK_STR(m.allow, "POST");
	CHECK_INT(http_route_match("PATCH", "/api/webrtc/rooms/lobby/recording/" RID, &m), 405);
	CHECK_STR(m.allow, "DELETE");
	CHECK_INT(http_route_match(NULL, "/healthz", &m), 404);
}

static void test_long_id(void)
{
	char path[1024];
	char room[301];
	memset(room, 'a', 300);
	room[300] = '\0';
	snprintf(path, sizeof(path), "/api/webrtc/rooms/%s/recordings", room);
	struct http_route_match m;
	CHECK_INT(http_route_match("GET", path, &m), 0);
	CHECK(m.room_too_long && !m.recording_too_long);
	CHECK_INT(strlen(m.room_id), HTTP_ID_MAX);
}

static void test_metrics(void)
{
	struct http_metrics *m = calloc(1, sizeof(*m));
	struct http_text t;
	http_metrics_observe(m, HTTP_ROUTE_STATUS, 200, 300000);     /* 0.3 ms */
	http_metrics_observe(m, HTTP_ROUTE_STATUS, 200, 4000000);    /* 4 ms */
	http_metrics_observe(m, HTTP_ROUTE_STATUS, 404, 20000000);   /* 20 ms */
	http_metrics_observe(m, HTTP_ROUTE_NOT_FOUND, 404, 1000);
	http_metrics_observe(m, 999, 200, 1);                        /* ignored */
	http_metrics_observe(m, HTTP_ROUTE_START, 42, 1);            /* odd status counts as 500 */
	http_text_init(&t);
	http_metrics_render(m, &t);
	CHECK(!t.oom);
	CHECK(strstr(t.data, "edgerec_http_requests_total{route=\"status\",code=\"200\"} 2\n") != NULL);
	CHECK(strstr(t.data, "edgerec_http_requests_total{route=\"status\",code=\"404\"} 1\n") != NULL);
	CHECK(strstr(t.data, "edgerec_http_requests_total{route=\"not_found\",code=\"404\"} 1\n") != NULL);
	CHECK(strstr(t.data, "edgerec_http_requests_total{route=\"start\",code=\"500\"} 1\n") != NULL);
	CHECK(strstr(t.data, "edgerec_http_request_duration_seconds_bucket{route=\"status\",le=\"0.0005\"} 1\n") != NULL);
	CHECK(strstr(t.data, "edgerec_http_request_duration_seconds_bucket{route=\"status\",le=\"0.005\"} 2\n") != NULL);
	CHECK(strstr(t.data, "edgerec_http_request_duration_seconds_bucket{route=\"status\",le=\"0.025\"} 3\n") != NULL);
	CHECK(strstr(t.data, "edgerec_http_request_duration_seconds_bucket{route=\"status\",le=\"+Inf\"} 3\n") != NULL);
	CHECK(strstr(t.data, "edgerec_http_request_duration_seconds_count{route=\"status\"} 3\n") != NULL);
	CHECK(strstr(t.data, "edgerec_http_request_duration_seconds_sum{route=\"status\"} 0.024300\n") != NULL);
	/* Every line is a comment or "name{labels} value" / "name value". */
	for (char *line = t.data; line && *line;) {
		char *nl = strchr(line, '\n');
		CHECK(nl != NULL);
		if (!nl)
			break;
		if (*line != '#')
			CHECK(memchr(line, ' ', (size_t)(nl - line)) != NULL);
		line = nl + 1;
	}
	http_text_deinit(&t);
	free(m);
}

/* The embedded document is valid JSON and names every route of the table
 * with its method and operationId. */
static void test_openapi(void)
{
	CHECK_INT(strlen(http_openapi_json), http_openapi_json_len);
	cJSON *doc = cJSON_ParseWithLength(http_openapi_json, http_openapi_json_len);
	CHECK(doc != NULL);
	if (!doc)
		return;
	CHECK(cJSON_IsString(cJSON_GetObjectItem(doc, "openapi")));
	const cJSON *paths = cJSON_GetObjectItem(doc, "paths");
	for (int i = 0; i < HTTP_ROUTE_COUNT; i++) {
		char method[16];
		size_t n = strlen(http_routes[i].method);
		for (size_t k = 0; k <= n; k++)
			method[k] = (char)(http_routes[i].method[k] | (k < n ? 0x20 : 0));
		const cJSON *p = cJSON_GetObjectItem(paths, http_routes[i].path);
		const cJSON *op = p ? cJSON_GetObjectItem(p, method) : NULL;
		if (!op)
			fprintf(stderr, "openapi lacks %s %s\n", method, http_routes[i].path);
		CHECK(op != NULL);
		const cJSON *id = op ? cJSON_GetObjectItem(op, "operationId") : NULL;
		CHECK(cJSON_IsString(id) && strcmp(id->valuestring, http_routes[i].name) == 0);
	}
	const cJSON *schemas = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "components"), "schemas");
	const cJSON *rec = cJSON_GetObjectItem(schemas, "Recording");
	CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(rec, "required")), 20);
	CHECK(cJSON_GetObjectItem(schemas, "Error") != NULL);
	cJSON_Delete(doc);
}

static void test_range(void)
{
	static const struct {
		const char *h;
		long long size;
		int rc;
		long long first, last;
	} cases[] = {
		{ NULL, 100, 0, 0, 0 },
		{ "bytes=0-9", 100, 1, 0, 9 },
		{ "bytes=10-", 100, 1, 10, 99 },
		{ "bytes=-10", 100, 1, 90, 99 },
		{ "bytes=-1000", 100, 1, 0, 99 },
		{ "bytes=90-1000", 100, 1, 90, 99 },
		{ "bytes=99-99", 100, 1, 99, 99 },
		{ "bytes=100-", 100, -1, 0, 0 },
		{ "bytes=100-200", 100, -1, 0, 0 },
		{ "bytes=-0", 100, -1, 0, 0 },
		{ "bytes=0-", 0, -1, 0, 0 },
		{ "bytes=5-3", 100, 0, 0, 0 },
		{ "bytes=0-1,5-6", 100, 0, 0, 0 },
		{ "items=0-1", 100, 0, 0, 0 },
		{ "bytes=", 100, 0, 0, 0 },
		{ "bytes=-", 100, 0, 0, 0 },
		{ "bytes=a-b", 100, 0, 0, 0 },
		{ "bytes=1-2x", 100, 0, 0, 0 },
		{ "bytes=9999999999999999999999-", 100, 0, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long first = -7, last = -7;
		int rc = http_range_parse(cases[i].h, cases[i].size, &first, &last);
		if (rc != cases[i].rc)
			fprintf(stderr, "range case %zu: %s\n", i, cases[i].h ? cases[i].h : "(null)");
		CHECK_INT(rc, cases[i].rc);
		if (rc == 1 && cases[i].rc == 1) {
			CHECK_INT(first, cases[i].first);
			CHECK_INT(last, cases[i].last);
		}
	}
}

static void test_text(void)
{
	struct http_text t;
	http_text_init(&t);
	for (int i = 0; i < 1000; i++)
		http_text_printf(&t, "%04d,", i);
	CHECK_INT(t.len, 5000);
	CHECK(strncmp(t.data + 4995, "0999,", 5) == 0);
	http_text_append(&t, "x", 1);
	CHECK_INT(t.len, 5001);
	CHECK_INT(t.data[t.len], 0);
	http_text_deinit(&t);
}

/* The embedded console: every file the page loads is in the table, with a
 * type and an ETag; nothing outside it is found. */
static void test_console_files(void)
{
	static const char *const names[] = { "index.html", "app.js", "api.js", "recordings.js", "rooms.js",
					     "system.js", "console.css" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct http_console_file *f = http_console_find(names[i]);
		CHECK(f != NULL);
		if (!f)
			continue;
		CHECK(f->len > 100 && strlen(f->data) == f->len);
		CHECK(f->etag[0] == '"' && strlen(f->etag) == 18);
		CHECK(strstr(f->content_type, strstr(names[i], ".js") ? "javascript" : strstr(names[i], ".css") ? "css" : "html") != NULL);
	}
	const struct http_console_file *index = http_console_find("index.html");
	/* What index.html loads is served. */
	CHECK(index && strstr(index->data, "/console/app.js") && strstr(index->data, "/console/console.css"));
	CHECK(http_console_find("../index.html") == NULL);
	CHECK(http_console_find("") == NULL);
	CHECK(http_console_find(NULL) == NULL);
	CHECK(http_console_find("missing.js") == NULL);
}

int main(void)
{
	test_match();
	test_long_id();
	test_metrics();
	test_openapi();
	test_range();
	test_text();
	test_console_files();
	return check_exit();
}
