/* http_server: the civetweb context: listeners, TLS certificate, the one
 * request handler that routes everything, replies, and request ids. */
#include "http_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <civetweb.h>

#include "common_time.h"
#include "common_util.h"
#include "config.h"
#include "crypto.h"
#include "crypto_jwt.h"
#include "recorder.h"

struct log_handle http_log = LOG_HANDLE("http");

const struct config_option http_options[] = {
	{ "listen_https", CONFIG_STR, "0.0.0.0:8443",
	  "HTTPS listener as ipv4:port (port 0 picks a free one); empty disables it" },
	{ "listen_http", CONFIG_STR, "",
	  "plain HTTP listener, loopback only (127.0.0.1:8080); empty disables it" },
	{ "tls_cert", CONFIG_STR, "",
	  "PEM certificate (chain) for HTTPS; empty: a self-signed one kept in state_dir/tls", .flags = CONFIG_LIVE },
	{ "tls_key", CONFIG_STR, "", "PEM private key of tls_cert (empty: inside tls_cert)", .flags = CONFIG_LIVE },
	{ "jwt_secret", CONFIG_STR, NULL, "HS256 secret of bearer tokens", .flags = CONFIG_SECRET },
	{ "jwt_public_key", CONFIG_STR, NULL, "ES256 public key of bearer tokens: a PEM file or PEM text" },
	{ "state_dir", CONFIG_STR, "/var/lib/edgerec", "where edgerec keeps its own state" },
	{ "http.threads", CONFIG_INT, "48", "worker threads (each WebSocket subscriber holds one)" },
	{ "http.ws_max_subscribers", CONFIG_INT, "24", "WebSocket subscribers at once; more get 503" },
	{ "http.ws_queue", CONFIG_INT, "1024",
	  "room events queued per WebSocket subscriber; beyond, the oldest go and a `lagged` event says how many" },
	{ "http.max_body", CONFIG_SIZE, "64K", "largest request body accepted (413 beyond)" },
	{ "http.request_timeout", CONFIG_DURATION, "30s", "socket read/write timeout of one request" },
	{ "http.handshake_timeout", CONFIG_DURATION, "10s",
	  "a TLS handshake not finished by then is dropped (the wait costs no CPU)" },
	{ "http.header_timeout", CONFIG_DURATION, "10s",
	  "the whole header of a connection's first request must arrive within this time" },
	{ "http.max_conns_per_addr", CONFIG_INT, "16",
	  "open connections from one peer address; more are closed at accept (0: no limit)" },
	{ "http.conn_limit_exempt", CONFIG_STR, "127.0.0.1",
	  "addresses http.max_conns_per_addr does not apply to (a reverse proxy on this box), "
	  "separated by commas or spaces; empty: none" },
	{ "http.jwt_leeway", CONFIG_DURATION, "30s", "tolerance for token exp/nbf" },
	{ "http.jwt_max_lifetime", CONFIG_DURATION, "24h",
	  "a token without exp is refused once its iat is this old, and without iat at once (0: accepted forever)" },
	{ "console.user", CONFIG_STR, "operator",
	  "the operator account of the console at / (its sessions act as this user with the admin role)" },
	{ "console.password_hash", CONFIG_STR, "",
	  "the operator's password as printed by `edgerec passwd`; empty: a generated one in state_dir/console_password",
	  .flags = CONFIG_SECRET },
	{ "console.session_ttl", CONFIG_DURATION, "12h", "how long a console sign-in lasts" },
	{ "console.login_max_failures", CONFIG_INT, "5",
	  "failed sign-ins from one address before it must wait console.login_lockout (429)" },
	{ "console.login_lockout", CONFIG_DURATION, "5m",
	  "the wait after too many failed sign-ins, and the window they are counted in" },
	{ "update.max_bundle", CONFIG_SIZE, "1G", "largest RAUC bundle POST /api/system/update takes (413 beyond)" },
	{ "update.dir", CONFIG_STR, "",
	  "where an uploaded bundle is kept while RAUC installs it; empty: state_dir/update" },
	{ 0 },
};

static const char *http_reason(int status)
{
	const char *r = mg_get_response_code_text(NULL, status);
	return r ? r : "";
}

void http_request_begin(struct http_server *s, struct mg_connection *conn, struct http_request *req)
{
	memset(req, 0, sizeof(*req));
	req->s = s;
	req->conn = conn;
	req->route = HTTP_ROUTE_NOT_FOUND;
	req->start_ns = time_mono_ns();
	const char *given = mg_get_header(conn, "X-Request-Id");
	if (given) {
		size_t n = strlen(given);
		bool plain = n > 0 && n < sizeof(req->id);
		for (size_t i = 0; plain && i < n; i++)
			plain = (given[i] >= 'a' && given[i] <= 'z') || (given[i] >= 'A' && given[i] <= 'Z') ||
				(given[i] >= '0' && given[i] <= '9') || given[i] == '-' || given[i] == '_' ||
				given[i] == '.';
		if (plain) {
			util_strlcpy(req->id, given, sizeof(req->id));
			return;
		}
	}
	unsigned long long n = atomic_fetch_add(&s->next_request, 1) + 1;
	snprintf(req->id, sizeof(req->id), "%s-%llu", s->id_prefix, n);
}

int http_reply_headers(struct http_request *req, int status, const char *content_type, long long len,
		       const char *const *extra)
{
	char clen[32];
	struct mg_connection *c = req->conn;
	req->status = status;
	snprintf(clen, sizeof(clen), "%lld", len);
	if (mg_response_header_start(c, status) < 0) {
		/* A WebSocket upgrade being refused: civetweb's response API is
		 * closed to it, so the reply is written as is and the connection
		 * ends with it. */
		mg_printf(c,
			  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nX-Request-Id: %s\r\n"
			  "Cache-Control: no-store\r\nConnection: close\r\n",
			  status, http_reason(status), content_type, clen, req->id);
		for (int i = 0; extra && extra[i] && extra[i + 1]; i += 2)
			mg_printf(c, "%s: %s\r\n", extra[i], extra[i + 1]);
		mg_printf(c, "\r\n");
		return 1;
	}
	if (content_type)
		mg_response_header_add(c, "Content-Type", content_type, -1);
	if (len >= 0)
		mg_response_header_add(c, "Content-Length", clen, -1);
	mg_response_header_add(c, "X-Request-Id", req->id, -1);
	bool own_cache = false;
	for (int i = 0; extra && extra[i] && extra[i + 1]; i += 2)
		own_cache = own_cache || strcmp(extra[i], "Cache-Control") == 0;
	if (!own_cache)
		mg_response_header_add(c, "Cache-Control", "no-store", -1);
	if (http_route_is_whip(req->route)) {
		/* A page on another origin publishes with WHIP (RFC 9725 §4.3). */
		mg_response_header_add(c, "Access-Control-Allow-Origin", "*", -1);
		mg_response_header_add(c, "Access-Control-Expose-Headers", "Location, Link, ETag, X-Recording-Id", -1);
	}
	/* Our own Date: civetweb's formats it with gmtime(), whose shared
	 * buffer races between worker threads. */
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	mg_response_header_add(c, "Date", date, -1);
	for (int i = 0; extra && extra[i] && extra[i + 1]; i += 2)
		mg_response_header_add(c, extra[i], extra[i + 1], -1);
	mg_response_header_send(c);
	return strcmp(mg_get_request_info(c)->request_method, "HEAD") != 0;
}

void http_reply(struct http_request *req, int status, const char *content_type, const char *body,
		size_t len, const char *extra_name, const char *extra_value)
{
	const char *extra[] = { extra_name, extra_value, NULL };
	if (http_reply_headers(req, status, content_type, (long long)len, extra_name ? extra : NULL) && len &&
	    mg_write(req->conn, body, len) > 0)
		req->bytes += (long long)len;
}

void http_reply_json(struct http_request *req, int status, const cJSON *body)
{
	char *text = body ? cJSON_PrintUnformatted(body) : NULL;
	if (!text) {
		static const char oom[] = "{\"detail\":\"out of memory\",\"code\":\"internal\"}";
		http_reply(req, 500, "application/json", oom, sizeof(oom) - 1, NULL, NULL);
		return;
	}
	http_reply(req, status, "application/json", text, strlen(text), NULL, NULL);
	cJSON_free(text);
}

/* Builds the error body; shared by http_reply_error and the civetweb error
 * callback. Returns a malloc'd string or NULL. */
static char *http_error_body(const char *code, const char *detail)
{
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;
	if (!o)
		return NULL;
	if (cJSON_AddStringToObject(o, "detail", detail) && cJSON_AddStringToObject(o, "code", code))
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

void http_reply_error(struct http_request *req, int status, const char *code, const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	char *text = http_error_body(code, detail);
	if (!text) {
		static const char oom[] = "{\"detail\":\"out of memory\",\"code\":\"internal\"}";
		http_reply(req, 500, "application/json", oom, sizeof(oom) - 1, NULL, NULL);
		return;
	}
	http_reply(req, status, "application/json", text, strlen(text), NULL, NULL);
	cJSON_free(text);
}

/* Counts a finished request and writes its access log line (id, peer,
 * user, method, path, status, body bytes, duration): at info, 5xx at warn;
 * successful probes of /healthz and /metrics (a monitor asks every few
 * seconds) at debug. */
static void http_request_end(struct http_request *req)
{
	const struct mg_request_info *ri = mg_get_request_info(req->conn);
	int64_t elapsed = time_mono_ns() - req->start_ns;
	http_metrics_observe(req->s->metrics, req->route, req->status, elapsed);
	const char *method = ri->request_method ? ri->request_method : "-";
	const char *uri = ri->local_uri_raw ? ri->local_uri_raw : (ri->local_uri ? ri->local_uri : "-");
	bool probe = (req->route == HTTP_ROUTE_HEALTHZ || req->route == HTTP_ROUTE_METRICS) && req->status < 400;
	enum log_level level = req->status >= 500 ? LOG_LEVEL_WARN : probe ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO;
	LOG_AT(&http_log, level, "req=%s %s user=%s %s %s -> %d %lld B (%.2f ms)%s%s", req->id, ri->remote_addr,
	       req->user[0] ? req->user : "-", method, uri, req->status, req->bytes, (double)elapsed / 1e6,
	       req->note[0] ? " " : "", req->note);
}

/* The one request handler, registered for every path: matches the route,
 * then hands over to the API or the info pages. Runs on a civetweb worker
 * thread. Returns the status sent (civetweb's convention for "handled"). */
static int http_handle(struct mg_connection *conn, void *cbdata)
{
	struct http_server *s = cbdata;
	const struct mg_request_info *ri = mg_get_request_info(conn);
	struct http_request req;
	struct http_route_match m;
	http_request_begin(s, conn, &req);

	const char *path = ri->local_uri_raw ? ri->local_uri_raw : ri->local_uri;
	/* HEAD is GET without the body (http_reply leaves it out). */
	const char *method = ri->request_method;
	if (method && strcmp(method, "HEAD") == 0)
		method = "GET";
	int rc = http_route_match(method, path ? path : "", &m);
	if (rc == 404) {
		req.route = HTTP_ROUTE_NOT_FOUND;
		http_reply_error(&req, 404, "not_found", "no route for %s", path ? path : "(none)");
		goto done;
	}
	if (rc == 405) {
		char body[256];
		req.route = HTTP_ROUTE_METHOD_NOT_ALLOWED;
		char *text = http_error_body("method_not_allowed", "method not allowed here");
		snprintf(body, sizeof(body), "%s", text ? text : "{}");
		cJSON_free(text);
		http_reply(&req, 405, "application/json", body, strlen(body), "Allow", m.allow);
		goto done;
	}
	req.route = m.route->id;

	/* No route takes a body beyond a small JSON object; refuse big ones
	 * before reading anything. */
	if (ri->content_length > s->max_body && m.route->id != HTTP_ROUTE_UPDATE) {
		http_reply_error(&req, 413, "body_too_large", "request body of %lld bytes exceeds %lld",
				 ri->content_length, s->max_body);
		goto done;
	}

	switch (m.route->id) {
	case HTTP_ROUTE_HEALTHZ:
		http_info_healthz(&req);
		break;
	case HTTP_ROUTE_METRICS:
		http_info_metrics(&req);
		break;
	case HTTP_ROUTE_OPENAPI:
		http_info_openapi(&req);
		break;
	case HTTP_ROUTE_INDEX:
	case HTTP_ROUTE_CONSOLE:
		http_console_serve(&req);
		break;
	case HTTP_ROUTE_LOGIN:
		http_session_login(&req);
		break;
	case HTTP_ROUTE_LOGOUT:
		http_session_logout(&req);
		break;
	case HTTP_ROUTE_SESSION:
		http_session_info(&req);
		break;
	case HTTP_ROUTE_POLICIES:
		http_info_policies(&req);
		break;
	case HTTP_ROUTE_DEVICES:
		http_devices_serve(&req);
		break;
	case HTTP_ROUTE_UPDATE:
	case HTTP_ROUTE_UPDATE_STATUS:
	case HTTP_ROUTE_REBOOT:
		http_update_serve(&req, m.route->id);
		break;
	case HTTP_ROUTE_WS:
		/* A WebSocket upgrade goes to the hub's handlers; a plain GET
		 * lands here. */
		http_reply_error(&req, 426, "upgrade_required",
				 "this path speaks WebSocket: GET with Upgrade: websocket");
		break;
	case HTTP_ROUTE_WHIP:
	case HTTP_ROUTE_WHIP_OPTIONS:
	case HTTP_ROUTE_WHIP_END:
	case HTTP_ROUTE_WHIP_PATCH:
	case HTTP_ROUTE_WHIP_SESSION_OPTIONS:
		http_whip_serve(&req, &m);
		break;
	default:
		http_api_serve(&req, &m);
		break;
	}
done:
	http_request_end(&req);
	return req.status;
}

/* civetweb's own errors (malformed request line, headers too large, ...)
 * get the same JSON body as ours. Returns 0: handled. */
static int http_on_error(struct mg_connection *conn, int status, const char *errmsg)
{
	const struct mg_context *ctx = mg_get_context(conn);
	struct http_server *s = ctx ? mg_get_user_data(ctx) : NULL;
	char *text = NULL;
	const char *code = status == 413 || status == 431 ? "request_too_large"
			   : status == 404			  ? "not_found"
			   : status >= 500			  ? "internal"
								  : "bad_request";
	text = http_error_body(code, errmsg && *errmsg ? errmsg : http_reason(status));
	if (!text)
		return 1;
	mg_printf(conn,
		  "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		  "Cache-Control: no-store\r\nConnection: close\r\n\r\n%s",
		  status, http_reason(status), strlen(text), text);
	cJSON_free(text);
	if (s)
		http_metrics_observe(s->metrics, HTTP_ROUTE_REJECTED, status, 0);
	LOG_INFO(&http_log, "rejected before routing: %d %s", status, errmsg ? errmsg : "");
	return 0;
}

/* Connections per peer address. civetweb serves one connection per worker
 * thread, from accept (TLS handshake, header wait) to close, so peers that
 * open connections and send nothing could hold every thread. The master
 * thread asks here before it queues a socket; a peer already holding
 * max_per_addr connections is closed at once, before it costs a thread or
 * a handshake. The table holds one slot per address with open connections:
 * at most as many as civetweb holds sockets (waiting for their first bytes,
 * queued, or served by a thread), about 1,100 with the defaults, scanned
 * linearly under a lock once per accept and once per close (a few
 * microseconds). */
struct http_conn_slot {
	unsigned char addr[16]; /* IPv6, or IPv4 as ::ffff:a.b.c.d */
	int count;              /* 0: free slot */
};

#define HTTP_CONN_EXEMPT_MAX 16

struct http_conn_limit {
	pthread_mutex_t lock;
	int max_per_addr;
	int nexempt;
	unsigned char exempt[HTTP_CONN_EXEMPT_MAX][16];
	size_t nslots;
	atomic_ullong refused;
	int64_t last_log_ns;
	struct http_conn_slot slot[];
};

#define HTTP_CONN_QUEUE 64     /* civetweb's connection_queue, set below */
#define HTTP_CONN_WAITING 1024 /* the patch's MG_MAX_WAITING_SOCKETS */

/* Parses 'list' (IPv4/IPv6 addresses separated by commas or spaces) into
 * 16-byte keys. Returns the count, or -1 with 'err'. */
static int http_conn_exempt_parse(const char *list, unsigned char keys[][16], int max, char *err,
				  size_t errlen)
{
	int n = 0;
	const char *p = list ? list : "";
	while (*p) {
		size_t len = strcspn(p, ", \t");
		if (len > 0) {
			char word[INET6_ADDRSTRLEN];
			struct in_addr v4;
			if (len >= sizeof(word) || n >= max) {
				snprintf(err, errlen, "http.conn_limit_exempt: too many or too long entries");
				return -1;
			}
			memcpy(word, p, len);
			word[len] = '\0';
			if (inet_pton(AF_INET, word, &v4) == 1) {
				memset(keys[n], 0, 10);
				keys[n][10] = keys[n][11] = 0xff;
				memcpy(keys[n] + 12, &v4, 4);
			} else if (inet_pton(AF_INET6, word, keys[n]) != 1) {
				snprintf(err, errlen, "http.conn_limit_exempt: '%s' is not an IP address", word);
				return -1;
			}
			n++;
		}
		p += len;
		p += strspn(p, ", \t");
	}
	return n;
}

static struct http_conn_limit *http_conn_limit_new(const struct config *cfg, long long threads, char *err,
						   size_t errlen)
{
	size_t nslots = (size_t)threads + HTTP_CONN_QUEUE + HTTP_CONN_WAITING + 16;
	struct http_conn_limit *l = calloc(1, sizeof(*l) + nslots * sizeof(l->slot[0]));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&l->lock, NULL);
	l->max_per_addr = (int)config_get_int(cfg, "http.max_conns_per_addr");
	l->nslots = nslots;
	l->nexempt = http_conn_exempt_parse(config_get_str(cfg, "http.conn_limit_exempt"), l->exempt,
					    HTTP_CONN_EXEMPT_MAX, err, errlen);
	if (l->nexempt < 0) {
		pthread_mutex_destroy(&l->lock);
		free(l);
		return NULL;
	}
	return l;
}

static void http_conn_limit_free(struct http_conn_limit *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}

/* The 16-byte key of a peer address; false for other families. */
static bool http_conn_key(const struct sockaddr *sa, unsigned char key[16])
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		memset(key, 0, 10);
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &in->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		return true;
	}
	return false;
}

/* civetweb's accept_connection: 1 lets the socket in, 0 closes it. */
static int http_on_accept(const struct mg_context *ctx, const struct sockaddr *sa)
{
	struct http_server *s = mg_get_user_data(ctx);
	struct http_conn_limit *l = s ? s->conn_limit : NULL;
	unsigned char key[16];
	if (!l || !http_conn_key(sa, key))
		return 1;
	for (int i = 0; i < l->nexempt; i++) {
		if (memcmp(l->exempt[i], key, 16) == 0)
			return 1; /* not counted; http_on_release finds no slot */
	}
	pthread_mutex_lock(&l->lock);
	struct http_conn_slot *mine = NULL, *free_slot = NULL;
	for (size_t i = 0; i < l->nslots && !mine; i++) {
		if (l->slot[i].count == 0) {
			if (!free_slot)
				free_slot = &l->slot[i];
		} else if (memcmp(l->slot[i].addr, key, 16) == 0) {
			mine = &l->slot[i];
		}
	}
	bool ok = mine ? (l->max_per_addr <= 0 || mine->count < l->max_per_addr) : free_slot != NULL;
	if (ok && !mine) {
		mine = free_slot;
		memcpy(mine->addr, key, 16);
	}
	if (ok)
		mine->count++;
	bool log_now = false;
	if (!ok) {
		atomic_fetch_add(&l->refused, 1);
		int64_t now = time_mono_ns();
		if (l->last_log_ns == 0 || now - l->last_log_ns > 10 * TIME_NS_PER_SEC) {
			l->last_log_ns = now;
			log_now = true;
		}
	}
	pthread_mutex_unlock(&l->lock);
	if (log_now) {
		char text[INET6_ADDRSTRLEN] = "?";
		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, text, sizeof(text));
		else
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, text, sizeof(text));
		LOG_WARN(&http_log,
			 "refusing connections from %s: %d open already (http.max_conns_per_addr); %llu refused in all",
			 text, l->max_per_addr, (unsigned long long)atomic_load(&l->refused));
	}
	return ok ? 1 : 0;
}

/* civetweb's release_connection: once per socket http_on_accept let in. */
static void http_on_release(const struct mg_context *ctx, const struct sockaddr *sa)
{
	struct http_server *s = mg_get_user_data(ctx);
	struct http_conn_limit *l = s ? s->conn_limit : NULL;
	unsigned char key[16];
	if (!l || !http_conn_key(sa, key))
		return;
	pthread_mutex_lock(&l->lock);
	for (size_t i = 0; i < l->nslots; i++) {
		if (l->slot[i].count > 0 && memcmp(l->slot[i].addr, key, 16) == 0) {
			l->slot[i].count--;
			break;
		}
	}
	pthread_mutex_unlock(&l->lock);
}

/* /metrics lines of the limiter. */
static char *http_conn_metrics(void *opaque)
{
	struct http_conn_limit *l = opaque;
	int open = 0, peers = 0;
	pthread_mutex_lock(&l->lock);
	for (size_t i = 0; i < l->nslots; i++) {
		open += l->slot[i].count;
		peers += l->slot[i].count > 0;
	}
	pthread_mutex_unlock(&l->lock);
	char *out = NULL;
	if (asprintf(&out,
		     "# HELP edgerec_http_connections_open Connections accepted and not yet closed.\n"
		     "# TYPE edgerec_http_connections_open gauge\n"
		     "edgerec_http_connections_open %d\n"
		     "# HELP edgerec_http_connection_peers Peer addresses with open connections.\n"
		     "# TYPE edgerec_http_connection_peers gauge\n"
		     "edgerec_http_connection_peers %d\n"
		     "# HELP edgerec_http_connections_refused_total Connections closed at accept because "
		     "http.max_conns_per_addr was reached.\n"
		     "# TYPE edgerec_http_connections_refused_total counter\n"
		     "edgerec_http_connections_refused_total %llu\n",
		     open, peers, (unsigned long long)atomic_load(&l->refused)) < 0)
		return NULL;
	return out;
}

/* civetweb's own messages ("SSL read failed, error -30848" when a peer
 * ends its TLS session with close_notify, an accept that failed) describe single
 * connections: debug. What matters to an operator shows in the access log
 * and /metrics. */
static int http_on_log(const struct mg_connection *conn, const char *message)
{
	LOG_DEBUG(&http_log, "civetweb: %s", message);
	return 1;
}

/* Turns "host:port" into civetweb's "ip:port" (+ 's' for TLS). Accepts an
 * IPv4 address or "localhost"; with 'loopback_only' only 127.0.0.0/8.
 * Returns 0 or -1 with 'err'. 'url_host' receives the host for URLs. */
static int http_listen_spec(const char *what, const char *value, bool tls, bool loopback_only,
			    char *out, size_t outlen, char *url_host, size_t hostlen,
			    char *err, size_t errlen)
{
	char host[64];
	const char *colon = strrchr(value, ':');
	if (!colon || colon == value || (size_t)(colon - value) >= sizeof(host)) {
		snprintf(err, errlen, "%s: '%s' is not host:port", what, value);
		return -1;
	}
	memcpy(host, value, (size_t)(colon - value));
	host[colon - value] = '\0';
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	unsigned a, b, c, d;
	char tail;
	if (sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 ||
	    c > 255 || d > 255) {
		snprintf(err, errlen, "%s: '%s' is not an IPv4 address", what, host);
		return -1;
	}
	if (loopback_only && a != 127) {
		snprintf(err, errlen, "%s: plain HTTP is served on loopback only, not on %s", what, host);
		return -1;
	}
	long long port;
	if (config_parse_int(colon + 1, &port) < 0 || port < 0 || port > 65535) {
		snprintf(err, errlen, "%s: '%s' is not a port", what, colon + 1);
		return -1;
	}
	snprintf(out, outlen, "%s:%lld%s", host, port, tls ? "s" : "");
	snprintf(url_host, hostlen, "%s", strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : host);
	return 0;
}

/* Writes 'a' then 'b' (texts) into 'path' with mode 0600 via a temporary
 * file and rename. Returns 0 or -1 with 'err'. */
static int http_write_private(const char *path, const char *a, const char *b, char *err, size_t errlen)
{
	char tmp[4300];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	size_t la = strlen(a), lb = strlen(b);
	bool ok = write(fd, a, la) == (ssize_t)la && (la == 0 || a[la - 1] == '\n' || write(fd, "\n", 1) == 1) &&
		  write(fd, b, lb) == (ssize_t)lb;
	ok = (close(fd) == 0) && ok;
	if (!ok || rename(tmp, path) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Prepares the one PEM file civetweb's mbedTLS glue reads (private key and
 * certificate chain together) in state_dir/tls/server.pem: from tls_cert
 * and tls_key when configured, else from a self-signed pair created there
 * on first start. Returns 0 or -1 with 'err'. */
int http_tls_prepare(struct http_server *s, char *err, size_t errlen)
{
	const char *state_dir = config_get_str(s->cfg, "state_dir");
	const char *cert = config_get_str(s->cfg, "tls_cert");
	const char *key = config_get_str(s->cfg, "tls_key");
	char dir[4096], cert_path[4200], key_path[4200];
	char *cert_text = NULL, *key_text = NULL;
	int rc = -1;

	if (!state_dir || !*state_dir) {
		snprintf(err, errlen, "state_dir is not set");
		goto fail;
	}
	snprintf(dir, sizeof(dir), "%s/tls", state_dir);
	if (util_mkdir_p(dir, 0700) < 0) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (cert && *cert) {
		snprintf(cert_path, sizeof(cert_path), "%s", cert);
		snprintf(key_path, sizeof(key_path), "%s", key && *key ? key : cert);
	} else {
		snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
		snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
		if (access(cert_path, R_OK) != 0 || access(key_path, R_OK) != 0) {
			if (crypto_selfsigned_cert(cert_path, key_path, "edgerec", err, errlen) < 0)
				goto fail;
			LOG_INFO(&http_log, "created a self-signed certificate in %s", dir);
		}
	}
	cert_text = util_read_file(cert_path, NULL);
	if (!cert_text || !strstr(cert_text, "-----BEGIN CERTIFICATE-----")) {
		snprintf(err, errlen, "tls_cert %s: %s", cert_path,
			 cert_text ? "no PEM certificate inside" : strerror(errno));
		goto fail;
	}
	key_text = util_read_file(key_path, NULL);
	if (!key_text || !strstr(key_text, "PRIVATE KEY-----")) {
		snprintf(err, errlen, "tls_key %s: %s", key_path,
			 key_text ? "no PEM private key inside" : strerror(errno));
		goto fail;
	}
	snprintf(s->tls_pem, sizeof(s->tls_pem), "%s/server.pem", dir);
	/* When key and certificate are one file already, the key text holds
	 * both: write it once. */
	if (strcmp(cert_path, key_path) == 0)
		rc = http_write_private(s->tls_pem, key_text, "", err, errlen);
	else
		rc = http_write_private(s->tls_pem, key_text, cert_text, err, errlen);
fail:
	free(cert_text);
	free(key_text);
	return rc;
}

/* Builds the JWT verification keys from jwt_secret and jwt_public_key. */
static int http_keys_prepare(struct http_server *s, char *err, size_t errlen)
{
	const char *secret = config_get_str(s->cfg, "jwt_secret");
	const char *pub = config_get_str(s->cfg, "jwt_public_key");
	char *pem = NULL;
	if (pub && *pub && !strstr(pub, "-----BEGIN")) {
		pem = util_read_file(pub, NULL);
		if (!pem) {
			snprintf(err, errlen, "jwt_public_key %s: %s", pub, strerror(errno));
			return -1;
		}
	}
	if ((!secret || !*secret) && (!pub || !*pub))
		LOG_WARN(&http_log, "neither jwt_secret nor jwt_public_key is set: every token is refused");
	s->keys = crypto_jwt_keys_new(secret, pem ? pem : pub, err, errlen);
	free(pem);
	crypto_jwt_keys_set_max_lifetime(s->keys, config_get_int(s->cfg, "http.jwt_max_lifetime") / 1000);
	return s->keys ? 0 : -1;
}

/* Room events from any node (the state subscriber thread) go to the hub. */
static void http_on_room_event(void *opaque, const char *room_id, const char *event_json)
{
	struct http_server *s = opaque;
	if (s->hub)
		http_hub_publish(s->hub, room_id, event_json);
}

/* The built-in health check: the recorder (state store, storage). */
static bool http_health_recorder(void *opaque, char *why, size_t whylen)
{
	return recorder_healthy(opaque, why, whylen);
}

int http_config_check(const struct config *cfg, char *err, size_t errlen)
{
	char spec[96], host[64];
	const char *https = config_get_str(cfg, "listen_https");
	const char *plain = config_get_str(cfg, "listen_http");
	long long threads = config_get_int(cfg, "http.threads");
	long long ws_max = config_get_int(cfg, "http.ws_max_subscribers");
	long long per_addr = config_get_int(cfg, "http.max_conns_per_addr");
	if (per_addr < 0 || per_addr > 65535) {
		snprintf(err, errlen, "http.max_conns_per_addr: %lld is outside 0..65535", per_addr);
		return -1;
	}
	unsigned char exempt[HTTP_CONN_EXEMPT_MAX][16];
	if (http_conn_exempt_parse(config_get_str(cfg, "http.conn_limit_exempt"), exempt, HTTP_CONN_EXEMPT_MAX,
				   err, errlen) < 0)
		return -1;
	if (config_get_int(cfg, "http.handshake_timeout") < 100 || config_get_int(cfg, "http.header_timeout") < 100) {
		snprintf(err, errlen, "http.handshake_timeout and http.header_timeout must be at least 100ms");
		return -1;
	}
	if (threads < 4 || threads > 1024) {
		snprintf(err, errlen, "http.threads: %lld is outside 4..1024", threads);
		return -1;
	}
	if (ws_max < 0 || ws_max > threads - 2) {
		snprintf(err, errlen, "http.ws_max_subscribers must leave at least 2 of %lld threads for requests",
			 threads);
		return -1;
	}
	if ((!https || !*https) && (!plain || !*plain)) {
		snprintf(err, errlen, "neither listen_https nor listen_http is set");
		return -1;
	}
	if (plain && *plain &&
	    http_listen_spec("listen_http", plain, false, true, spec, sizeof(spec), host, sizeof(host), err, errlen) < 0)
		return -1;
	if (https && *https &&
	    http_listen_spec("listen_https", https, true, false, spec, sizeof(spec), host, sizeof(host), err, errlen) < 0)
		return -1;
	return http_sessions_config_check(cfg, err, errlen);
}

struct http_server *http_server_new(struct config *cfg, struct recorder *rec, char *err, size_t errlen)
{
	struct http_server *s = calloc(1, sizeof(*s));
	char ports[256] = "", spec[96], host_https[64] = "", host_http[64] = "";
	const char *https = config_get_str(cfg, "listen_https");
	const char *plain = config_get_str(cfg, "listen_http");
	bool want_tls = https && *https, want_plain = plain && *plain;

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = cfg;
	s->rec = rec;
	s->started_wall_ns = time_wall_ns();
	pthread_mutex_init(&s->hooks_lock, NULL);
	s->metrics = calloc(1, sizeof(*s->metrics));
	if (!s->metrics) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	{
		uint8_t r[4];
		util_random_bytes(r, sizeof(r));
		snprintf(s->id_prefix, sizeof(s->id_prefix), "%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
	}
	s->max_body = config_get_int(cfg, "http.max_body");
	s->jwt_leeway_s = (int)(config_get_int(cfg, "http.jwt_leeway") / 1000);
	s->ws_max = (int)config_get_int(cfg, "http.ws_max_subscribers");
	long long threads = config_get_int(cfg, "http.threads");
	if (http_config_check(cfg, err, errlen) < 0)
		goto fail;
	if (want_plain) {
		if (http_listen_spec("listen_http", plain, false, true, spec, sizeof(spec), host_http,
				     sizeof(host_http), err, errlen) < 0)
			goto fail;
		snprintf(ports, sizeof(ports), "%s", spec);
	}
	if (want_tls) {
		if (http_listen_spec("listen_https", https, true, false, spec, sizeof(spec), host_https,
				     sizeof(host_https), err, errlen) < 0)
			goto fail;
		size_t n = strlen(ports);
		snprintf(ports + n, sizeof(ports) - n, "%s%s", n ? "," : "", spec);
		if (http_tls_prepare(s, err, errlen) < 0)
			goto fail;
	}
	if (http_keys_prepare(s, err, errlen) < 0)
		goto fail;
	s->sessions = http_sessions_new(cfg, err, errlen);
	if (!s->sessions)
		goto fail;
	s->update = http_update_new(s, err, errlen);
	if (!s->update)
		goto fail;
	s->hub = http_hub_new(s);
	if (!s->hub) {
		snprintf(err, errlen, "cannot start the WebSocket hub");
		goto fail;
	}

	s->conn_limit = http_conn_limit_new(cfg, threads, err, errlen);
	if (!s->conn_limit)
		goto fail;

	char threads_text[16], timeout_text[24], handshake_text[24], header_text[24], queue_text[16];
	snprintf(threads_text, sizeof(threads_text), "%lld", threads);
	snprintf(timeout_text, sizeof(timeout_text), "%lld", config_get_int(cfg, "http.request_timeout"));
	snprintf(handshake_text, sizeof(handshake_text), "%lld", config_get_int(cfg, "http.handshake_timeout"));
	snprintf(header_text, sizeof(header_text), "%lld", config_get_int(cfg, "http.header_timeout"));
	snprintf(queue_text, sizeof(queue_text), "%d", HTTP_CONN_QUEUE);
	const char *options[] = {
		"listening_ports", ports,
		"num_threads", threads_text,
		"connection_queue", queue_text,
		"request_timeout_ms", timeout_text,
		/* Options of cmake/patches/civetweb-hostile-clients.patch. */
		"tls_handshake_timeout_ms", handshake_text,
		"request_header_timeout_ms", header_text,
		"enable_keep_alive", "yes",
		"keep_alive_timeout_ms", "5000",
		"websocket_timeout_ms", "30000",
		"enable_websocket_ping_pong", "yes",
		"max_request_size", "16384",
		"listen_backlog", "512",
		/* Replies go out in two writes (headers, body): without this,
		 * Nagle and delayed ACKs add ~40 ms to every keep-alive request. */
		"tcp_nodelay", "1",
		"enable_auth_domain_check", "no",
		/* Routes match the path as sent; ids are decoded one by one. */
		"decode_url", "no",
		want_tls ? "ssl_certificate" : NULL, s->tls_pem,
		NULL, NULL,
	};
	struct mg_callbacks callbacks;
	memset(&callbacks, 0, sizeof(callbacks));
	callbacks.http_error = http_on_error;
	callbacks.log_message = http_on_log;
	callbacks.accept_connection = http_on_accept;
	callbacks.release_connection = http_on_release;
	struct mg_init_data init = { .callbacks = &callbacks, .user_data = s, .configuration_options = options };
	char civet_err[256] = "";
	struct mg_error_data error = { .text = civet_err, .text_buffer_size = sizeof(civet_err) };
	mg_init_library(0);
	s->lib_init = true;
	s->ctx = mg_start2(&init, &error);
	if (!s->ctx || civet_err[0]) {
		/* civetweb keeps running when the TLS context fails; we do not. */
		snprintf(err, errlen, "cannot start the server on %s: %s", ports,
			 civet_err[0] ? civet_err : "unknown error");
		goto fail;
	}
	if (want_tls && http_tls_min_version_applied() == 0) {
		snprintf(err, errlen, "TLS could not be restricted to TLS 1.2 and later (link without "
				      "-Wl,--wrap=mbedtls_ssl_config_defaults?)");
		goto fail;
	}
	mg_set_request_handler(s->ctx, "**", http_handle, s);
	http_hub_attach(s->hub);

	struct mg_server_port sp[4];
	int n = mg_get_server_ports(s->ctx, 4, sp);
	for (int i = 0; i < n; i++) {
		if (sp[i].is_ssl)
			snprintf(s->url_https, sizeof(s->url_https), "https://%s:%d", host_https, sp[i].port);
		else
			snprintf(s->url_http, sizeof(s->url_http), "http://%s:%d", host_http, sp[i].port);
	}
	http_server_add_health_check(s, "recorder", http_health_recorder, rec);
	http_server_add_metrics(s, recorder_rtp_metrics, rec);
	http_server_add_metrics(s, recorder_whip_metrics, rec);
	http_server_add_metrics(s, http_conn_metrics, s->conn_limit);
	http_server_add_metrics(s, recorder_encode_metrics, rec);
	if (recorder_on_event(rec, http_on_room_event, s) < 0)
		LOG_WARN(&http_log, "room events unavailable: WebSocket clients will receive nothing");
	LOG_INFO(&http_log, "serving%s%s%s%s", s->url_https[0] ? " " : "", s->url_https,
		 s->url_http[0] ? " " : "", s->url_http);
	return s;
fail:
	http_server_free(s);
	return NULL;
}

void http_server_free(struct http_server *s)
{
	if (!s)
		return;
	/* Detach from the recorder first so no event arrives for a hub that
	 * is going away. */
	if (s->rec && s->ctx)
		recorder_on_event(s->rec, NULL, NULL);
	http_update_stop(s->update);
	if (s->ctx)
		mg_stop(s->ctx);
	if (s->lib_init)
		mg_exit_library();
	http_hub_free(s->hub);
	http_update_free(s->update);
	http_conn_limit_free(s->conn_limit);
	crypto_jwt_keys_free(s->keys);
	http_sessions_free(s->sessions);
	free(s->metrics);
	pthread_mutex_destroy(&s->hooks_lock);
	free(s);
}

const char *http_server_console_password_file(const struct http_server *s, const char **user)
{
	*user = http_sessions_user(s->sessions);
	return http_sessions_password_path(s->sessions);
}

const char *http_server_url(const struct http_server *s, bool tls)
{
	const char *u = tls ? s->url_https : s->url_http;
	return u[0] ? u : NULL;
}

int http_server_add_metrics(struct http_server *s, http_metrics_fn fn, void *opaque)
{
	int rc = -1;
	if (!s || !fn)
		return -1;
	pthread_mutex_lock(&s->hooks_lock);
	if (s->metrics_extra_count < HTTP_HEALTH_MAX) {
		s->metrics_extra[s->metrics_extra_count].fn = fn;
		s->metrics_extra[s->metrics_extra_count].opaque = opaque;
		s->metrics_extra_count++;
		rc = 0;
	}
	pthread_mutex_unlock(&s->hooks_lock);
	return rc;
}

void http_server_set_presigner(struct http_server *s, http_presign_fn fn, void *opaque)
{
	pthread_mutex_lock(&s->hooks_lock);
	s->presign = fn;
	s->presign_opaque = opaque;
	pthread_mutex_unlock(&s->hooks_lock);
}

void http_server_set_policy_status(struct http_server *s, http_policy_status_fn fn, void *opaque)
{
	pthread_mutex_lock(&s->hooks_lock);
	s->policy_status = fn;
	s->policy_opaque = opaque;
	pthread_mutex_unlock(&s->hooks_lock);
}

int http_server_add_health_check(struct http_server *s, const char *name, http_health_fn fn, void *opaque)
{
	int rc = -1;
	if (!s || !fn)
		return -1;
	pthread_mutex_lock(&s->hooks_lock);
	if (s->health_count < HTTP_HEALTH_MAX) {
		s->health[s->health_count++] = (struct http_health_check){ name, fn, opaque };
		rc = 0;
	}
	pthread_mutex_unlock(&s->hooks_lock);
	return rc;
}
