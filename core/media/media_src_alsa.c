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

#include "common_time.h"
#include "common_util.h"
#include "media_alsa.h"

extern const struct media_source_driver media_source_alsa;

#define ALSA_SRC_MAX_FDS 8

struct alsa_priv {
	char device[128];
	struct media_alsa_params ap;
	struct media_mic *mic;
	int64_t duration_ns;
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
	/* The source's zero is its first sample. */
	int rc = media_mic_open(&x->mic, &x->ap, -1, err, errlen);
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

static int alsa_src_read(struct media_source *src, struct media_packet *pkt, int64_t timeout_ns)
{
	struct alsa_priv *x = src->priv;
	int64_t deadline = time_mono_ns() + timeout_ns;
	memset(pkt, 0, sizeof(*pkt));
	for (;;) {
		if (media_mic_read(x->mic, pkt) == MEDIA_SOURCE_OK) {
			pkt->stream = 0;
			if (x->duration_ns > 0 && pkt->pts_ns >= x->duration_ns) {
				media_packet_clear(pkt);
				return MEDIA_SOURCE_EOF;
			}
			return MEDIA_SOURCE_OK;
		}
		int64_t now = time_mono_ns(), wake;
		if (now >= deadline)
			return MEDIA_SOURCE_AGAIN;
		struct pollfd fds[ALSA_SRC_MAX_FDS];
		int n = media_mic_pollfds(x->mic, fds, ALSA_SRC_MAX_FDS, &wake);
		if (wake > deadline)
			wake = deadline;
		int ms = (int)((wake - now + TIME_NS_PER_MS - 1) / TIME_NS_PER_MS);
		if (ms < 0)
			ms = 0;
		if (n > 0)
			poll(fds, (nfds_t)n, ms);
		else
			time_sleep_ns((int64_t)ms * TIME_NS_PER_MS);
	}
}

static void alsa_src_close(struct media_source *src)
{
	struct alsa_priv *x = src->priv;
	if (!x)
		return;
	media_mic_close(x->mic);
	free(x);
	src->priv = NULL;
}

static void alsa_src_stats(struct media_source *src, struct media_source_stats *st)
{
	const struct alsa_priv *x = src->priv;
	st->stalled = media_mic_away(x->mic);
}

static void alsa_src_capture_info(struct media_source *src, struct media_capture_info *ci)
{
	struct alsa_priv *x = src->priv;
	memset(ci, 0, sizeof(*ci));
	ci->present = true;
	util_strlcpy(ci->device, x->device, sizeof(ci->device));
	util_strlcpy(ci->driver, "alsa", sizeof(ci->driver));
	media_mic_capture_info(x->mic, ci);
	ci->reopens = ci->audio_reopens;
}

const struct media_source_driver media_source_alsa = {
	.name = "alsa",
	.open = alsa_src_open,
	.read = alsa_src_read,
	.close = alsa_src_close,
	.stats = alsa_src_stats,
	.capture_info = alsa_src_capture_info,
};
