/* http_metrics: the server's own counters (requests by route and status, a
 * latency histogram per route, WebSocket hub figures) and their Prometheus
 * text rendering.
 *
 * Provides: struct http_metrics (counters updated lock-free from any
 * thread), http_metrics_render(), the build and process metrics. Uses: libc
 * atomics, /proc/self. */
#ifndef EDGEREC_HTTP_METRICS_H
#define EDGEREC_HTTP_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "http_route.h"

/* Upper bounds (seconds) of the latency histogram buckets; +Inf follows. */
#define HTTP_METRICS_BUCKETS 12
extern const double http_metrics_bucket_le[HTTP_METRICS_BUCKETS];

/* Status codes 100..599 are counted one by one. */
#define HTTP_METRICS_STATUS_MIN 100
#define HTTP_METRICS_STATUS_MAX 599

struct http_metrics {
	atomic_ullong requests[HTTP_ROUTE_LABEL_COUNT][HTTP_METRICS_STATUS_MAX - HTTP_METRICS_STATUS_MIN + 1];
	atomic_ullong latency_bucket[HTTP_ROUTE_LABEL_COUNT][HTTP_METRICS_BUCKETS];
	atomic_ullong latency_count[HTTP_ROUTE_LABEL_COUNT];
	atomic_ullong latency_sum_ns[HTTP_ROUTE_LABEL_COUNT];
	atomic_ullong auth_failures;
	atomic_llong ws_subscribers;
	atomic_ullong ws_events_received;   /* room events handed to the hub */
	atomic_ullong ws_frames_sent;       /* frames written to subscribers */
	atomic_ullong ws_events_dropped;    /* a subscriber's queue full, or its write failed */
	atomic_ullong ws_lagged;            /* `lagged` notices written */
	atomic_ullong ws_write_failures;    /* subscriptions ended by a failed write */
	atomic_ullong ws_rejected;          /* upgrades refused (auth, limit) */
};

/* Counts one finished request: 'route' is a route id or pseudo route,
 * 'status' the reply status, 'elapsed_ns' the time from the request line to
 * the last byte written. Any thread. */
void http_metrics_observe(struct http_metrics *m, int route, int status, int64_t elapsed_ns);

/* Appends the counters in Prometheus text format (0.0.4) to 'out', a
 * growing buffer managed by http_text_* (http_internal.h). */
struct http_text;
void http_metrics_render(struct http_metrics *m, struct http_text *out);

/* edgerec_build_info{version, git} 1. */
void http_metrics_render_build(struct http_text *out);
/* The process metrics under the names every Prometheus client library uses
 * (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_start_time_seconds,
 * process_open_fds, process_max_fds), from /proc/self. */
void http_metrics_render_process(struct http_text *out);

#endif
