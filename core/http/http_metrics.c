/* http_metrics: request counters, latency histograms, hub figures, and
 * their Prometheus text. */
#include "http_metrics.h"

#include "http_text.h"

const double http_metrics_bucket_le[HTTP_METRICS_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
};

void http_metrics_observe(struct http_metrics *m, int route, int status, int64_t elapsed_ns)
{
	if (route < 0 || route >= HTTP_ROUTE_LABEL_COUNT)
		return;
	if (status < HTTP_METRICS_STATUS_MIN || status > HTTP_METRICS_STATUS_MAX)
		status = 500;
	if (elapsed_ns < 0)
		elapsed_ns = 0;
	atomic_fetch_add_explicit(&m->requests[route][status - HTTP_METRICS_STATUS_MIN], 1,
				  memory_order_relaxed);
	double secs = (double)elapsed_ns / 1e9;
	for (int b = 0; b < HTTP_METRICS_BUCKETS; b++)
		if (secs <= http_metrics_bucket_le[b])
			atomic_fetch_add_explicit(&m->latency_bucket[route][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->latency_count[route], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->latency_sum_ns[route], (unsigned long long)elapsed_ns,
				  memory_order_relaxed);
}

void http_metrics_render(struct http_metrics *m, struct http_text *out)
{
	http_text_printf(out, "# HELP edgerec_http_requests_total HTTP requests by route and status code.\n"
			      "# TYPE edgerec_http_requests_total counter\n");
	for (int r = 0; r < HTTP_ROUTE_LABEL_COUNT; r++)
		for (int s = 0; s <= HTTP_METRICS_STATUS_MAX - HTTP_METRICS_STATUS_MIN; s++) {
			unsigned long long v = atomic_load_explicit(&m->requests[r][s], memory_order_relaxed);
			if (v)
				http_text_printf(out, "edgerec_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
						 http_route_label(r), s + HTTP_METRICS_STATUS_MIN, v);
		}

	/* Buckets are counted individually (a request lands in every bucket
	 * whose bound it does not exceed), so they are already cumulative. */
	http_text_printf(out, "# HELP edgerec_http_request_duration_seconds Time from request to reply, by route.\n"
			      "# TYPE edgerec_http_request_duration_seconds histogram\n");
	for (int r = 0; r < HTTP_ROUTE_LABEL_COUNT; r++) {
		unsigned long long count = atomic_load_explicit(&m->latency_count[r], memory_order_relaxed);
		if (!count)
			continue;
		const char *label = http_route_label(r);
		for (int b = 0; b < HTTP_METRICS_BUCKETS; b++)
			http_text_printf(out, "edgerec_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
					 label, http_metrics_bucket_le[b],
					 atomic_load_explicit(&m->latency_bucket[r][b], memory_order_relaxed));
		http_text_printf(out, "edgerec_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
				 label, count);
		http_text_printf(out, "edgerec_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", label,
				 (double)atomic_load_explicit(&m->latency_sum_ns[r], memory_order_relaxed) / 1e9);
		http_text_printf(out, "edgerec_http_request_duration_seconds_count{route=\"%s\"} %llu\n", label, count);
	}

	http_text_printf(out,
			 "# HELP edgerec_http_auth_failures_total Requests refused with 401.\n"
			 "# TYPE edgerec_http_auth_failures_total counter\n"
			 "edgerec_http_auth_failures_total %llu\n"
			 "# HELP edgerec_ws_subscribers WebSocket clients subscribed to a room now.\n"
			 "# TYPE edgerec_ws_subscribers gauge\n"
			 "edgerec_ws_subscribers %lld\n"
			 "# HELP edgerec_ws_events_total Room events received by the hub.\n"
			 "# TYPE edgerec_ws_events_total counter\n"
			 "edgerec_ws_events_total %llu\n"
			 "# HELP edgerec_ws_frames_sent_total Event frames written to subscribers.\n"
			 "# TYPE edgerec_ws_frames_sent_total counter\n"
			 "edgerec_ws_frames_sent_total %llu\n"
			 "# HELP edgerec_ws_events_dropped_total Room events a subscriber did not get (its queue was full, or its write failed).\n"
			 "# TYPE edgerec_ws_events_dropped_total counter\n"
			 "edgerec_ws_events_dropped_total %llu\n"
			 "# HELP edgerec_ws_lagged_total `lagged` notices written to subscribers that fell behind.\n"
			 "# TYPE edgerec_ws_lagged_total counter\n"
			 "edgerec_ws_lagged_total %llu\n"
			 "# HELP edgerec_ws_write_failures_total Subscriptions ended because a write did not complete in http.request_timeout.\n"
			 "# TYPE edgerec_ws_write_failures_total counter\n"
			 "edgerec_ws_write_failures_total %llu\n"
			 "# HELP edgerec_ws_rejected_total WebSocket upgrades refused (auth, bad room, limit).\n"
			 "# TYPE edgerec_ws_rejected_total counter\n"
			 "edgerec_ws_rejected_total %llu\n",
			 atomic_load(&m->auth_failures), (long long)atomic_load(&m->ws_subscribers),
			 atomic_load(&m->ws_events_received), atomic_load(&m->ws_frames_sent),
			 atomic_load(&m->ws_events_dropped), atomic_load(&m->ws_lagged),
			 atomic_load(&m->ws_write_failures), atomic_load(&m->ws_rejected));
}
