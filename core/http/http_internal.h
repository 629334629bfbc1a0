/* http_internal: what the files of the http module share: the server
 * struct, one request's context, the reply helpers, authentication and the
 * hub's entry points. Not included outside core/http. */
#ifndef EDGEREC_HTTP_INTERNAL_H
#define EDGEREC_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common_log.h"
#include "http.h"
#include "http_metrics.h"
#include "http_route.h"

struct mg_connection;
struct mg_context;
struct crypto_jwt_keys;
struct http_hub;
struct http_sessions;
struct http_update;
struct config;

#define HTTP_HEALTH_MAX 8
#define HTTP_REQUEST_ID_LEN 40
#define HTTP_USER_ID_MAX 128

extern struct log_handle http_log;

struct http_health_check {
	const char *name;
	http_health_fn fn;
	void *opaque;
};

struct http_server {
	struct config *cfg;
	struct recorder *rec;
	struct crypto_jwt_keys *keys;
	int jwt_leeway_s;
	long long max_body;
	int ws_max;
	struct mg_context *ctx;
	bool lib_init;                /* mg_init_library was called */
	struct http_hub *hub;
	struct http_sessions *sessions; /* the console's sign-in (http_session.c) */
	struct http_update *update;   /* firmware updates and reboot (http_update.c) */
	struct http_metrics *metrics;
	struct http_conn_limit *conn_limit; /* connections per peer address (http_server.c) */
	char url_https[96];
	char url_http[96];
	char tls_pem[4200];           /* the combined key+certificate civetweb reads */
	/* The hooks main registers (health checks, metrics, policy status)
	 * may arrive while workers already serve: they are written and read
	 * under this lock, readers copy what they need. */
	pthread_mutex_t hooks_lock;
	struct {
		http_metrics_fn fn;
		void *opaque;
	} metrics_extra[HTTP_HEALTH_MAX];
	int metrics_extra_count;
	http_presign_fn presign;
	void *presign_opaque;
	http_policy_status_fn policy_status;
	void *policy_opaque;
	struct http_health_check health[HTTP_HEALTH_MAX];
	int health_count;
	char id_prefix[9];            /* request ids: prefix-counter */
	atomic_ullong next_request;
	int64_t started_wall_ns;
};

/* One request being served. */
struct http_request {
	struct http_server *s;
	struct mg_connection *conn;
	int route;                    /* route id or pseudo route, for metrics */
	int status;                   /* the reply status once sent */
	long long bytes;              /* body bytes written, for the access log */
	int64_t start_ns;
	char id[HTTP_REQUEST_ID_LEN];
	char user[HTTP_USER_ID_MAX + 1];  /* the token's sub once verified */
	char note[64];                    /* added to the log line ("recording=...") */
};

/* Gives 'req' an id: the client's X-Request-Id when it is short and plain,
 * else prefix-counter. */
void http_request_begin(struct http_server *s, struct mg_connection *conn, struct http_request *req);

/* Sends the status line and headers (Content-Type, Content-Length 'len'
 * (omitted when 'len' < 0, as a 304 must), X-Request-Id, Cache-Control,
 * Date, then 'extra': name, value, ..., NULL) and records the status.
 * Returns 1 when a body should follow, 0 for HEAD. */
int http_reply_headers(struct http_request *req, int status, const char *content_type, long long len,
		       const char *const *extra);
/* Replies. Each sends the status line, Content-Type, Content-Length,
 * X-Request-Id and Cache-Control, then the body, and records the status in
 * 'req'. 'extra_name'/'extra_value' add one more header (may be NULL). */
void http_reply(struct http_request *req, int status, const char *content_type, const char *body,
		size_t len, const char *extra_name, const char *extra_value);
/* Serializes 'body' (not taken). */
void http_reply_json(struct http_request *req, int status, const cJSON *body);
/* {"detail": ..., "code": ...} */
void http_reply_error(struct http_request *req, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Checks the request's bearer token (Authorization header; with
 * 'allow_query' also the access_token query parameter). Returns 0 and the
 * verified claims (the reference goes to the caller), or replies 401 itself
 * and returns -1. */
int http_auth_check(struct http_request *req, bool allow_query, cJSON **claims);
/* http_auth_check, then the admin authorization (auth.lua's "admin"
 * action; built in: the admin role). Returns 0, or -1 after replying
 * 401/403. */
int http_admin_check(struct http_request *req, bool allow_query);


/* Routes of the API (http_api.c): serves a matched route. */
void http_api_serve(struct http_request *req, const struct http_route_match *m);
struct mg_request_info;
/* Helpers of the API routes (http_api.c). A query parameter into 'out': 1
 * present, 0 absent, -1 too long or holding a NUL. */
int http_query(const struct mg_request_info *ri, const char *name, char *out, size_t outlen);
/* Decodes and checks the captured room and recording ids; -1 after a 400. */
int http_check_ids(struct http_request *req, struct http_route_match *m);
/* WHIP (http_whip.c): the routes HTTP_ROUTE_WHIP*. */
void http_whip_serve(struct http_request *req, const struct http_route_match *m);
bool http_route_is_whip(int route);

/* Reads the request body (at most s->max_body bytes). Returns a malloc'd
 * NUL-terminated text (possibly empty) and its length, or NULL with
 * 413/500 already replied (http_api.c). */
char *http_read_body(struct http_request *req, size_t *len);

/* The console's sign-in (http_session.c). The operator account comes from
 * console.user and console.password_hash, else a password generated once
 * into state_dir/console_password (mode 0600). */
struct http_sessions *http_sessions_new(const struct config *cfg, char *err, size_t errlen);
void http_sessions_free(struct http_sessions *ss);
/* Checks the console.* options. Returns 0 or -1 with 'err'. */
int http_sessions_config_check(const struct config *cfg, char *err, size_t errlen);
/* The generated password's file, or NULL when a hash is configured. */
const char *http_sessions_password_path(const struct http_sessions *ss);
const char *http_sessions_user(const struct http_sessions *ss);
/* Authenticates a request by its session cookie. Returns 1 when it carries
 * none (the caller goes on with bearer tokens); 0 with the session's claims
 * (sub = the operator, roles = ["admin"]; the reference goes to the caller);
 * -1 after replying 401 (unknown or expired session) or 403 (a foreign
 * Origin, or a request other than GET/HEAD without the session's
 * X-CSRF-Token header). */
int http_session_auth(struct http_request *req, cJSON **claims);
/* POST /api/system/login {"user", "password"}: 200 with the cookie and
 * {"user", "csrf_token", "expires_at"}; 401 invalid_credentials; 429 with
 * Retry-After once an address failed console.login_max_failures times. */
void http_session_login(struct http_request *req);
/* POST /api/system/logout: ends the session (CSRF token needed), clears
 * the cookie. */
void http_session_logout(struct http_request *req);
/* GET /api/system/session: the signed-in session's {"user", "csrf_token",
 * "expires_at"} (a reloaded page gets its CSRF token back), else 401. */
void http_session_info(struct http_request *req);

/* GET / and GET /console/{file}: the embedded console (http_console_serve.c). */
void http_console_serve(struct http_request *req);

/* GET .../download and .../thumbnail of the recording 'rec' (the state
 * object the recorder returned for this caller) (http_file.c). */
void http_file_serve(struct http_request *req, bool thumbnail, const cJSON *rec);

/* GET /api/system/devices: the box's cameras and microphones (http_devices.c). */
void http_devices_serve(struct http_request *req);

/* /healthz, /metrics, /api/openapi.json (http_info.c). */
void http_info_healthz(struct http_request *req);
void http_info_metrics(struct http_request *req);
void http_info_openapi(struct http_request *req);
void http_info_policies(struct http_request *req);
/* The OpenAPI document text (embedded at build time) and its length. */
extern const char http_openapi_json[];
extern const unsigned long http_openapi_json_len;

/* Writes state_dir/tls/server.pem (the key and chain civetweb reads) from
 * tls_cert and tls_key, or the self-signed pair made there on first start
 * (http_server.c). Returns 0 or -1 with 'err'. */
int http_tls_prepare(struct http_server *s, char *err, size_t errlen);

/* How many TLS configurations were held to TLS 1.2+ (http_tls.c); the
 * server checks it after start, which also keeps the wrapper linked. */
int http_tls_min_version_applied(void);

/* The WebSocket hub (http_ws.c). */
struct http_hub *http_hub_new(struct http_server *s);
/* Registers the civetweb handlers for the WebSocket path on 's->ctx'. */
void http_hub_attach(struct http_hub *hub);
/* Stops the hub thread; every connection must already be closed. */
void http_hub_free(struct http_hub *hub);
/* Queues one room event for the room's subscribers (any thread). */
void http_hub_publish(struct http_hub *hub, const char *room_id, const char *event_json);
/* The hub's name of the system channel (GET /api/webrtc/ws?channel=system,
 * admin only): events about the box itself (updates), from this node
 * only. Never a valid room id. */
#define HTTP_WS_SYSTEM "#system"

/* Firmware updates with RAUC and reboot through logind, both on the system
 * D-Bus (http_update.c). http_update_new removes what an earlier upload
 * left; http_update_stop makes a request waiting for an install give up
 * (the install goes on in RAUC) before the server stops. */
struct http_update *http_update_new(struct http_server *s, char *err, size_t errlen);
void http_update_stop(struct http_update *u);
void http_update_free(struct http_update *u);
/* POST /api/system/update, GET /api/system/update, POST /api/system/reboot. */
void http_update_serve(struct http_request *req, int route);

#endif
