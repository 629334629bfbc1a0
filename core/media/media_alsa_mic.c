/* media_alsa_mic: a microphone that outlives its device, for the sources
 * that capture one (`alsa`, and the camera's audio=). It rebases the
 * device's monotonic times on the source's zero, keeps them from going back
 * (an overlap with the packet before is cut off the front, so audio is
 * neither shifted nor doubled), and when the device goes away closes it and
 * opens the same PCM again every 0.5 s: the time it was away stays a gap. */
#include "media_alsa.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"

static struct log_handle log_mic = LOG_HANDLE("media/mic");

#define MIC_RETRY_NS (500 * TIME_NS_PER_MS)

struct media_mic {
	char device[128];
	struct media_alsa_params ap;
	struct media_alsa *a;         /* NULL while the device is away */
	bool have_zero;
	int64_t zero_ns;              /* monotonic time of the source's zero */
	bool have_end;
	int64_t end_ns;               /* source time where the last packet ended */
	int64_t retry_ns;             /* away: the next attempt to open it */
	uint32_t reopens;
	struct media_alsa_stats past; /* what handles closed since had counted */
};

int media_mic_open(struct media_mic **out, const struct media_alsa_params *p, int64_t zero_ns, char *err,
		   size_t errlen)
{
	struct media_mic *m = calloc(1, sizeof(*m));
	*out = NULL;
	if (!m) {
		util_strlcpy(err, "out of memory", errlen);
		return -ENOMEM;
	}
	util_strlcpy(m->device, p->device, sizeof(m->device));
	m->ap = *p;
	m->ap.device = m->device;
	m->have_zero = zero_ns >= 0;
	m->zero_ns = zero_ns;
	int rc = media_alsa_open(&m->a, &m->ap, err, errlen);
	if (rc < 0) {
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* Adds what the closing handle counted to the totals, and closes it. */
static void mic_close_handle(struct media_mic *m)
{
	struct media_alsa_stats st;
	media_alsa_get_stats(m->a, &st);
	m->past.overruns += st.overruns;
	m->past.frames_captured += st.frames_captured;
	m->past.frames_inserted += st.frames_inserted;
	m->past.frames_dropped += st.frames_dropped;
	m->past.steps += st.steps;
	media_alsa_close(m->a);
	m->a = NULL;
}

/* Away: opens the device when due. True when it is back. */
static bool mic_retry(struct media_mic *m)
{
	char err[256];
	int64_t now = time_mono_ns();
	if (now < m->retry_ns)
		return false;
	if (media_alsa_open(&m->a, &m->ap, err, sizeof(err)) < 0) {
		LOG_DEBUG(&log_mic, "%s: still away: %s", m->device, err);
		m->retry_ns = now + MIC_RETRY_NS;
		return false;
	}
	m->reopens++;
	LOG_WARN(&log_mic, "microphone %s back, capture goes on", m->device);
	return true;
}

int media_mic_read(struct media_mic *m, struct media_packet *pkt)
{
	for (;;) {
		if (!m->a && !mic_retry(m))
			return MEDIA_SOURCE_AGAIN;
		char err[256] = "";
		int r = media_alsa_read(m->a, pkt, err, sizeof(err));
		if (r == MEDIA_SOURCE_AGAIN)
			return r;
		if (r != MEDIA_SOURCE_OK) {
			LOG_WARN(&log_mic, "microphone %s lost (%s); opening it again every %lld ms", m->device,
				 err[0] ? err : "read failed", (long long)(MIC_RETRY_NS / TIME_NS_PER_MS));
			mic_close_handle(m);
			m->retry_ns = time_mono_ns() + MIC_RETRY_NS;
			return MEDIA_SOURCE_AGAIN;
		}
		if (!m->have_zero) {
			m->have_zero = true;
			m->zero_ns = pkt->pts_ns;
		}
		pkt->pts_ns -= m->zero_ns;
		if (!media_packet_trim_s16(pkt, m->have_end ? m->end_ns : 0, m->ap.sample_rate, m->ap.channels)) {
			media_packet_clear(pkt);
			continue; /* all of it before the zero or the last packet's end */
		}
		m->have_end = true;
		m->end_ns = pkt->pts_ns + pkt->duration_ns;
		return MEDIA_SOURCE_OK;
	}
}

int media_mic_pollfds(struct media_mic *m, struct pollfd *fds, int max, int64_t *wake_ns)
{
	*wake_ns = m->a ? INT64_MAX : m->retry_ns;
	return m->a ? media_alsa_pollfds(m->a, fds, max) : 0;
}

bool media_mic_away(const struct media_mic *m)
{
	return m && !m->a;
}

void media_mic_capture_info(struct media_mic *m, struct media_capture_info *ci)
{
	util_strlcpy(ci->audio_device, m->device, sizeof(ci->audio_device));
	ci->audio_reopens = m->reopens;
	media_alsa_capture_info(m->a, &m->past, ci);
}

void media_mic_close(struct media_mic *m)
{
	if (!m)
		return;
	media_alsa_close(m->a);
	free(m);
}
