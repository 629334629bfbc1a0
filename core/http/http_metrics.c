/* http_metrics: request counters, latency histograms, hub figures, and
 * their Prometheus text. */
#include "http_metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common_version.h"
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

/* Writes 'v' as a Prometheus label value (backslash, quote and newline
 * escaped) into 'out'. */
static const char *label_value(const char *v, char *out, size_t outlen)
{
	size_t j = 0;
	for (size_t i = 0; v[i] && j + 3 < outlen; i++) {
		char ch = v[i];
		if (ch == '\\' || ch == '"' || ch == '\n') {
			out[j++] = '\\';
			ch = ch == '\n' ? 'n' : ch;
		}
		out[j++] = ch;
	}
	out[j] = '\0';
	return out;
}

void http_metrics_render_build(struct http_text *out)
{
	char v[64], g[128];
	http_text_printf(out, "# HELP edgerec_build_info The running build: version (CMake project version) and git "
			      "describe at build time.\n# TYPE edgerec_build_info gauge\n"
			      "edgerec_build_info{version=\"%s\",git=\"%s\"} 1\n",
			 label_value(common_version, v, sizeof(v)), label_value(common_version_git, g, sizeof(g)));
}

/* Seconds since the epoch at which the system booted (/proc/stat btime). */
static long long boot_time(void)
{
	FILE *f = fopen("/proc/stat", "re");
	char line[256];
	long long bt = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %lld", &bt) == 1)
			break;
	fclose(f);
	return bt;
}

void http_metrics_render_process(struct http_text *out)
{
	/* /proc/self/stat: fields after the command (which may hold spaces
	 * and parentheses, hence the last ')'). utime is field 14, stime 15,
	 * starttime 22, vsize 23, rss 24 (pages). */
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "re");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
	long long rss = 0;
	bool have = p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
				       "%llu %llu %lld", &utime, &stime, &start, &vsize, &rss) == 5;
	long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	if (have && hz > 0 && page > 0) {
		long long bt = boot_time();
		http_text_printf(out,
				 "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
				 "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
				 "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
				 "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n"
				 "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
				 "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n",
				 (double)(utime + stime) / (double)hz, rss * (long long)page, vsize);
		if (bt > 0)
			http_text_printf(out,
					 "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
					 "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n",
					 (double)bt + (double)start / (double)hz);
	}
	int fds = -1;
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		struct dirent *e;
		fds = 0;
		while ((e = readdir(d)))
			fds += e->d_name[0] != '.';
		closedir(d);
		fds--; /* the directory's own descriptor */
	}
	struct rlimit rl;
	if (fds >= 0)
		http_text_printf(out, "# HELP process_open_fds Number of open file descriptors.\n"
				      "# TYPE process_open_fds gauge\nprocess_open_fds %d\n", fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		http_text_printf(out, "# HELP process_max_fds Maximum number of open file descriptors.\n"
				      "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
				 (unsigned long long)rl.rlim_cur);
}
