/* recorder_control: the thread that applies pipeline events (first frame,
 * fault, end of source) and stops recordings at max_recording_duration.
 *
 * Pipeline threads only raise flags and kick this thread (their handlers
 * must be quick); the state writes and broadcasts happen here. The timer
 * follows each recording's active (written) media time, so pauses do not
 * count: the thread sleeps until the nearest recording could reach its
 * limit, at most RECORDER_CONTROL_TICK_MS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common_log.h"
#include "common_time.h"
#include "media.h"
#include "recorder_internal.h"

static struct log_handle log_ctl = LOG_HANDLE("recorder/control");

#define RECORDER_CONTROL_TICK_MS 200
#define RECORDER_RESCAN_MS 30000

void recorder_control_kick(struct recorder *r)
{
	pthread_mutex_lock(&r->ctl_lock);
	r->ctl_kick = true;
	pthread_cond_signal(&r->ctl_cond);
	pthread_mutex_unlock(&r->ctl_lock);
}

/* Looks at one session: events, then the duration limit. Returns the
 * nanoseconds of active time left before its limit (INT64_MAX when it is
 * not recording). */
static int64_t control_session(struct recorder_session *s, bool disk_low)
{
	int64_t left = INT64_MAX;
	pthread_mutex_lock(&s->lock);
	recorder_session_apply_events(s);
	if (disk_low && !s->ended && (s->status == RECORDER_RECORDING || s->status == RECORDER_PAUSED)) {
		char err[256];
		LOG_WARN(&log_ctl, "%s: free disk below the low-water mark; stopping", s->id);
		if (recorder_session_stop(s, RECORDER_OP_STOP, "disk_low", err, sizeof(err)) < 0)
			LOG_ERROR(&log_ctl, "%s: stop at low disk failed: %s", s->id, err);
	}
	int64_t ff_timeout = s->r->first_frame_timeout_ms * TIME_NS_PER_MS;
	if (!s->ended && s->status == RECORDER_PENDING && ff_timeout > 0) {
		int64_t waited = time_mono_ns() - s->started_mono_ns;
		if (waited >= ff_timeout) {
			char why[128];
			snprintf(why, sizeof(why), "no media arrived from the source within %.1f s",
				 (double)ff_timeout / 1e9);
			recorder_session_fail(s, why);
		} else {
			left = ff_timeout - waited;
		}
	}
	if (!s->ended && s->pipeline &&
	    (s->status == RECORDER_RECORDING || s->status == RECORDER_PAUSED)) {
		struct media_stats st;
		media_pipeline_stats(s->pipeline, &st);
		if (st.active_duration_ns >= s->max_duration_ns) {
			char err[256];
			LOG_INFO(&log_ctl, "%s: maximum duration reached", s->id);
			if (recorder_session_stop(s, RECORDER_EV_MAX_DURATION, "max_duration", err, sizeof(err)) < 0)
				LOG_ERROR(&log_ctl, "%s: auto-stop failed: %s", s->id, err);
		} else if (s->status == RECORDER_RECORDING) {
			left = s->max_duration_ns - st.active_duration_ns;
			recorder_session_refresh(s);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return left;
}

static void *control_main(void *arg)
{
	struct recorder *r = arg;
	int64_t wait_ns = RECORDER_CONTROL_TICK_MS * TIME_NS_PER_MS;
	int64_t next_rescan = time_mono_ns() + RECORDER_RESCAN_MS * TIME_NS_PER_MS;
	int64_t next_retention = time_mono_ns() + r->retention_interval_ms * TIME_NS_PER_MS;
	for (;;) {
		pthread_mutex_lock(&r->ctl_lock);
		if (!r->ctl_kick && !r->ctl_quit) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t abs_ns = (int64_t)ts.tv_sec * TIME_NS_PER_SEC + ts.tv_nsec + wait_ns;
			ts.tv_sec = abs_ns / TIME_NS_PER_SEC;
			ts.tv_nsec = abs_ns % TIME_NS_PER_SEC;
			pthread_cond_timedwait(&r->ctl_cond, &r->ctl_lock, &ts);
		}
		bool quit = r->ctl_quit;
		r->ctl_kick = false;
		pthread_mutex_unlock(&r->ctl_lock);
		if (quit)
			break;

		/* Take references so the list lock is not held while working. */
		struct recorder_session **list = NULL;
		size_t n = 0, cap = 0;
		pthread_mutex_lock(&r->lock);
		for (struct recorder_session *s = r->sessions; s; s = s->next)
			cap++;
		if (cap)
			list = calloc(cap, sizeof(*list));
		for (struct recorder_session *s = r->sessions; s && list && n < cap; s = s->next) {
			s->refs++;
			list[n++] = s;
		}
		pthread_mutex_unlock(&r->lock);

		int64_t nearest = RECORDER_CONTROL_TICK_MS * TIME_NS_PER_MS;
		bool disk_low = false;
		if (n > 0) {
			long long avail = recorder_disk_free(r);
			disk_low = avail >= 0 && avail < r->disk_low_water;
		}
		for (size_t i = 0; i < n; i++) {
			int64_t left = control_session(list[i], disk_low);
			if (left < nearest)
				nearest = left;
			recorder_session_unref(list[i]);
		}
		free(list);
		/* Wake a little after the nearest limit could be reached. */
		wait_ns = nearest < TIME_NS_PER_MS ? TIME_NS_PER_MS : nearest + TIME_NS_PER_MS;

		if ((r->retention_max_bytes > 0 || r->retention_max_age_ms > 0 || r->pol) &&
		    time_mono_ns() >= next_retention) {
			recorder_retention_run(r);
			next_retention = time_mono_ns() + r->retention_interval_ms * TIME_NS_PER_MS;
		}

		if (time_mono_ns() >= next_rescan) {
			recorder_worker_rescan(r);
			next_rescan = time_mono_ns() + RECORDER_RESCAN_MS * TIME_NS_PER_MS;
		}
	}
	return NULL;
}

int recorder_control_start(struct recorder *r)
{
	if (pthread_create(&r->ctl_thread, NULL, control_main, r) != 0) {
		LOG_ERROR(&log_ctl, "cannot start the control thread");
		return -1;
	}
	r->ctl_started = true;
	return 0;
}

void recorder_control_stop(struct recorder *r)
{
	if (!r->ctl_started)
		return;
	pthread_mutex_lock(&r->ctl_lock);
	r->ctl_quit = true;
	pthread_cond_signal(&r->ctl_cond);
	pthread_mutex_unlock(&r->ctl_lock);
	pthread_join(r->ctl_thread, NULL);
	r->ctl_started = false;
}
