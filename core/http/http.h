/* http: edgerec's network face: the HTTPS REST API of SPEC §2, the
 * WebSocket event hub of SPEC §7, recording download (byte ranges) and
 * thumbnail, /healthz, /metrics (Prometheus text), /api/system/policies,
 * the OpenAPI document (/api/openapi.json) and the operator console (/,
 * /console/..., signed in with /api/system/login: a session cookie).
 *
 * Provides: struct http_server (opaque), the option table http_options[],
 * hooks through which main wires in what this module does not link
 * (health checks, extra metrics, the S3 presigner, the policy status).
 * Uses: civetweb built with mbedTLS (this module is its only includer),
 * cJSON, crypto (JWT verification, self-signed certificates), recorder (every
 * route maps onto a recorder_* call; events come from recorder_on_event).
 *
 * Threads: civetweb runs a pool of worker threads; each request or
 * WebSocket connection is served by one of them. The hub has a small pool
 * of writer threads that send events to subscribers. http_server_new and
 * http_server_free are called from the main thread. */
#ifndef EDGEREC_HTTP_H
#define EDGEREC_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "config.h"

struct recorder;
struct http_server;

/* The options this module reads (listen addresses, TLS files, JWT keys,
 * limits). Register it with config_register before loading the file. */
extern const struct config_option http_options[];

/* Checks this module's options without starting anything (listen
 * addresses, thread counts), so `edgerec serve` can refuse a bad file before
 * it brings other modules up. Returns 0 or -1 with the reason in 'err'. */
int http_config_check(const struct config *cfg, char *err, size_t errlen);

/* Starts the server: reads its options from 'cfg', prepares the TLS
 * certificate (a self-signed one under state_dir/tls when none is
 * configured), binds the listeners and subscribes the hub to the
 * recorder's room events. 'cfg' and 'rec' must outlive the server.
 * Returns NULL with the reason in 'err' (bad listen address, unreadable
 * certificate, port in use, ...). */
struct http_server *http_server_new(struct config *cfg, struct recorder *rec,
				    char *err, size_t errlen);

/* Stops accepting, closes every connection (WebSocket subscribers get a
 * close frame), stops the hub thread and frees 's'. NULL is a no-op. */
void http_server_free(struct http_server *s);

/* Reads tls_cert and tls_key (or the self-signed pair) again and serves the
 * connections accepted from now on with them; open connections keep
 * theirs. For SIGHUP: a renewed certificate needs no restart. Returns 1
 * when HTTPS serves the files read now, 0 when HTTPS is off, -1 with 'err'
 * (the running certificate stays). Main thread. */
int http_server_reload_tls(struct http_server *s, char *err, size_t errlen);

/* The base URL of the HTTPS listener ("https://127.0.0.1:8443"), or of the
 * plain listener when HTTPS is disabled. 'tls' picks which; NULL when that
 * listener is not configured. Valid until http_server_free. */
const char *http_server_url(const struct http_server *s, bool tls);

/* Where the console's generated operator password is kept (NULL when
 * console.password_hash is configured instead); '*user' receives the
 * operator's user name. Valid until http_server_free. */
const char *http_server_console_password_file(const struct http_server *s, const char **user);

/* A check that /healthz runs on every call besides its own (Redis through
 * the recorder, disk writable). The check returns true when healthy, false
 * (with a short reason in 'why') when not; true with a reason means working
 * but degraded ("status": "degraded", still 200). Called from worker threads, concurrently:
 * it must be thread-safe and quick. May be registered at any time after
 * http_server_new (the table is locked); returns 0 or -1 when it is full. */
typedef bool (*http_health_fn)(void *opaque, char *why, size_t whylen);
int http_server_add_health_check(struct http_server *s, const char *name,
				 http_health_fn fn, void *opaque);

/* More metrics for GET /metrics from modules this one does not link (the
 * state store, the policy host): 'fn' returns malloc'd Prometheus text
 * (complete lines with # HELP/# TYPE) that the server appends and frees,
 * or NULL. Called from worker threads, concurrently. May be registered at
 * any time; returns 0 or -1 when the table is full. */
typedef char *(*http_metrics_fn)(void *opaque);
int http_server_add_metrics(struct http_server *s, http_metrics_fn fn, void *opaque);

/* How GET .../download reaches a completed recording whose file is no
 * longer on this node but in S3: 'fn' returns a malloc'd presigned GET URL
 * for 'key', valid 'expires_s' seconds, with S3 answering 'disposition'
 * as Content-Disposition (NULL with 'err' on failure); the client gets a
 * 302 to it. Without one such downloads answer 404. Any thread; may be
 * set at any time. */
typedef char *(*http_presign_fn)(void *opaque, const char *key, long long expires_s,
				 const char *disposition, char *err, size_t errlen);
void http_server_set_presigner(struct http_server *s, http_presign_fn fn, void *opaque);

/* The source of GET /api/system/policies (the policy host's status report):
 * 'fn' returns a new JSON object (the server frees it) or NULL. Only callers
 * whose token carries the role "admin" (claim "roles": [...]) may read it.
 * Without a source the route answers 404. May be set at any time. */
typedef cJSON *(*http_policy_status_fn)(void *opaque);
void http_server_set_policy_status(struct http_server *s, http_policy_status_fn fn, void *opaque);

#endif
