/* media_src_alsa: the `alsa` source: one microphone (an ALSA capture PCM)
 * as raw S16 audio at the pipeline's rate (48 kHz), timed by the device and
 * held to the monotonic clock (media_alsa.c), for audio-only rooms.
 *
 * Args ("k=v,k=v"):
 *   device=PCM      the capture PCM: hw:1,0, hw:CARD=Loopback,DEV=1,
 *                   plughw:..., or a named PCM (required)
 *   channels=1|2    what is recorded (default: the pipeline's, 2); a mono
 *                   microphone is duplicated, a stereo one mixed down
 *
 * Open: a missing device is -ENOENT, one held by another program -EBUSY
 * (the recorder answers 503 / 409 and leaves nothing behind).
 * Unplugged (or failed) while recording: the source says it is stalled
 * (stats) and opens the same PCM again every 0.5 s; capture goes on when it
 * is back. Its time runs on from the source's zero, so the time the device
 * was away stays a gap in the file. */
#include "media_source.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "media_alsa.h"

extern const struct media_source_driver media_source_alsa;

static struct log_handle log_salsa = LOG_HANDLE("media/src_alsa");

#define ALSA_SRC_RETRY_NS (500 * TIME_NS_PER_MS)
#define ALSA_SRC_MAX_FDS 8

struct alsa_priv {
	char device[128];
	struct media_alsa_params ap;
	struct media_alsa *a;        /* NULL while the device is away */
	bool have_zero;
	int64_t zero_ns;             /* monotonic time of the source's zero */
	int64_t end_ns;              /* source time where the last packet ended */
	int64_t duration_ns;
	int64_t retry_ns;            /* device away: the next attempt to open it */
	uint32_t reopens;
	struct media_alsa_stats past; /* what handles closed since had counted */
};

static int alsa_src_open(struct media_source *src, const struct media_source_params *p,
			 char *err, size_t errlen)
{
	char v[16];
	struct alsa_priv *x = calloc(1, sizeof(*x));
	if (!x) {
		util_strlcpy(err, "out of memory", errlen);
		return -ENOMEM;
	}
	if (!media_alsa_arg_pcm(p->args, "device", x->device, sizeof(x->device)) || !x->device[0]) {
		util_strlcpy(err, "alsa: device= (a capture PCM such as hw:1,0) is needed", errlen);
		free(x);
		return -EINVAL;
	}
	x->ap.device = x->device;
	x->ap.sample_rate = p->sample_rate > 0 ? p->sample_rate : 48000;
	x->ap.channels = p->channels > 0 ? p->channels : 2;
	if (media_source_arg(p->args, "channels", v, sizeof(v))) {
		x->ap.channels = atoi(v);
		if (x->ap.channels < 1 || x->ap.channels > 2) {
			snprintf(err, errlen, "alsa: channels=%s: 1 or 2", v);
			free(x);
			return -EINVAL;
		}
	}
	x->duration_ns = p->duration_ns;
	int rc = media_alsa_open(&x->a, &x->ap, err, errlen);
	if (rc < 0) {
		free(x);
		return rc;
	}
	src->priv = x;
	src->nb_streams = 1;
	src->streams[0] = (struct media_stream_info){
		.kind = MEDIA_KIND_AUDIO,
		.codec = MEDIA_CODEC_S16,
		.sample_rate = x->ap.sample_rate,
		.channels = x->ap.channels,
	};
	return 0;
}

/* Adds what the closing handle counted to the source's totals. */
static void alsa_src_keep_stats(struct alsa_priv *x)
{
	struct media_alsa_stats st;
	media_alsa_get_stats(x->a, &st);
	x->past.overruns += st.overruns;
	x->past.frames_captured += st.frames_captured;
	x->past.frames_inserted += st.frames_inserted;
	x->past.frames_dropped += st.frames_dropped;
	x->past.steps += st.steps;
}

/* The device went away: closes it and schedules the first reopen. */
static void alsa_src_lost(struct alsa_priv *x, const char *why)
{
	LOG_WARN(&log_salsa, "%s: %s; opening it again every %lld ms", x->device, why,
		 (long long)(ALSA_SRC_RETRY_NS / TIME_NS_PER_MS));
	alsa_src_keep_stats(x);
	media_alsa_close(x->a);
	x->a = NULL;
	x->retry_ns = time_mono_ns() + ALSA_SRC_RETRY_NS;
}

/* Device away: tries to open it when due. True when it is back. */
static bool alsa_src_retry(struct alsa_priv *x)
{
	char err[256];
	int64_t now = time_mono_ns();
	if (now < x->retry_ns)
		return false;
	if (media_alsa_open(&x->a, &x->ap, err, sizeof(err)) < 0) {
		LOG_DEBUG(&log_salsa, "%s: still away: %s", x->device, err);
		x->retry_ns = now + ALSA_SRC_RETRY_NS;
		return false;
	}
	x->reopens++;
	LOG_WARN(&log_salsa, "%s: back, capture goes on", x->device);
	return true;
}

static int alsa_src_read(struct media_source *src, struct media_packet *pkt, int64_t timeout_ns)
{
	struct alsa_priv *x = src->priv;
	int64_t deadline = time_mono_ns() + timeout_ns;
	memset(pkt, 0, sizeof(*pkt));
	for (;;) {
		int64_t now = time_mono_ns();
		if (!x->a && !alsa_src_retry(x)) {
			int64_t until = x->retry_ns < deadline ? x->retry_ns : deadline;
			if (until > now)
				time_sleep_ns(until - now);
			if (time_mono_ns() >= deadline)
				return MEDIA_SOURCE_AGAIN;
			continue;
		}
		char err[256] = "";
		int r = media_alsa_read(x->a, pkt, err, sizeof(err));
		if (r == MEDIA_SOURCE_OK) {
			if (!x->have_zero) {
				x->have_zero = true;
				x->zero_ns = pkt->pts_ns;
			}
			pkt->stream = 0;
			pkt->pts_ns -= x->zero_ns;
			if (pkt->pts_ns < x->end_ns)
				pkt->pts_ns = x->end_ns;  /* a reopened device never goes back in time */
			x->end_ns = pkt->pts_ns + pkt->duration_ns;
			if (x->duration_ns > 0 && pkt->pts_ns >= x->duration_ns) {
				media_packet_clear(pkt);
				return MEDIA_SOURCE_EOF;
			}
			return MEDIA_SOURCE_OK;
		}
		if (r == MEDIA_SOURCE_ERROR) {
			alsa_src_lost(x, err[0] ? err : "read failed");
			continue;
		}
		if (now >= deadline)
			return MEDIA_SOURCE_AGAIN;
		struct pollfd fds[ALSA_SRC_MAX_FDS];
		int n = media_alsa_pollfds(x->a, fds, ALSA_SRC_MAX_FDS);
		int ms = (int)((deadline - now + TIME_NS_PER_MS - 1) / TIME_NS_PER_MS);
		if (n > 0)
			poll(fds, (nfds_t)n, ms);
		else
			time_sleep_ns(ms < 5 ? (int64_t)ms * TIME_NS_PER_MS : 5 * TIME_NS_PER_MS);
	}
}

static void alsa_src_close(struct media_source *src)
{
	struct alsa_priv *x = src->priv;
	if (!x)
		return;
	media_alsa_close(x->a);
	free(x);
	src->priv = NULL;
}

static void alsa_src_stats(struct media_source *src, struct media_source_stats *st)
{
	const struct alsa_priv *x = src->priv;
	st->stalled = x->a == NULL;
}

static void alsa_src_capture_info(struct media_source *src, struct media_capture_info *ci)
{
	struct alsa_priv *x = src->priv;
	memset(ci, 0, sizeof(*ci));
	ci->present = true;
	util_strlcpy(ci->device, x->device, sizeof(ci->device));
	util_strlcpy(ci->driver, "alsa", sizeof(ci->driver));
	util_strlcpy(ci->audio_device, x->device, sizeof(ci->audio_device));
	ci->reopens = x->reopens;
	ci->audio_reopens = x->reopens;
	media_alsa_capture_info(x->a, &x->past, ci);
}

const struct media_source_driver media_source_alsa = {
	.name = "alsa",
	.open = alsa_src_open,
	.read = alsa_src_read,
	.close = alsa_src_close,
	.stats = alsa_src_stats,
	.capture_info = alsa_src_capture_info,
};
