/* media_alsa: microphone capture from an ALSA PCM, non-blocking, timed by
 * the device's timestamps and held to CLOCK_MONOTONIC (see media_alsa.h;
 * the clock and the resampling are media_alsa_clock.c). */
#include "media_alsa.h"

#include <alsa/asoundlib.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "media_alsa_clock.h"

static struct log_handle log_alsa = LOG_HANDLE("media/alsa");

/* Every handle's losses, for /metrics. */
static _Atomic uint64_t alsa_overruns_total, alsa_inserted_total;

#define ALSA_PERIOD_US 10000     /* the device wakes the reader this often */
/* What the device holds while the reader is late: a box short of CPU can
 * leave the source thread waiting for seconds (a qemu guest under load
 * did, 2-3 s, with the camera's encoder busy); past this, frames are lost
 * (an overrun, filled with silence). Devices that hold less give their
 * most. 768 KB at 48 kHz stereo S16. */
#define ALSA_BUFFER_US 4000000
#define ALSA_TSTAMP_SLACK_NS (TIME_NS_PER_SEC) /* a device timestamp further from now is not believed */

struct media_alsa {
	snd_pcm_t *pcm;
	char device[128];
	snd_pcm_format_t format;
	int sample_bytes;          /* per sample of 'format' */
	int dev_rate, dev_channels;
	snd_pcm_uframes_t period, buffer;
	bool started;
	bool tstamp_mono;          /* the PCM stamps with CLOCK_MONOTONIC */
	uint64_t bad_tstamps;      /* timestamps replaced by the reader's clock */
	int64_t frames_read;       /* device frames read, numbered across overruns */
	uint64_t overruns;
	uint64_t steps_seen;       /* re-anchorings already logged */
	uint64_t inserted_seen;    /* silence already added to the process total */
	int64_t last_read_ns;      /* when the caller last asked for frames */
	int64_t away_ns;           /* how long before that it had asked */
	uint8_t *raw;              /* one read in the device's format */
	int16_t *s16;              /* the same as S16 */
	snd_pcm_uframes_t cap;     /* frames both hold */
	snd_pcm_status_t *status;
	struct media_alsa_conv conv;
};

/* alsa-lib prints its own complaints to stderr ("Unknown PCM ..."); the
 * reasons that matter reach the caller's err, the rest goes to debug. */
static void alsa_lib_error(const char *file, int line, const char *function, int err, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	if (LOG_LEVEL_DEBUG > log_global_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	LOG_DEBUG(&log_alsa, "alsa-lib %s:%d %s: %s%s%s", file, line, function, msg, err ? ": " : "",
		  err ? snd_strerror(err) : "");
}

static pthread_once_t alsa_once = PTHREAD_ONCE_INIT;

static void alsa_init_once(void)
{
	snd_lib_error_set_handler(alsa_lib_error);
}

/* Formats taken, in order of preference; each is converted to S16. */
static const snd_pcm_format_t alsa_formats[] = {
	SND_PCM_FORMAT_S16_LE, SND_PCM_FORMAT_S32_LE, SND_PCM_FORMAT_S24_LE,
	SND_PCM_FORMAT_S24_3LE, SND_PCM_FORMAT_FLOAT_LE,
};

/* Converts 'n' samples of 'fmt' to S16. */
static void alsa_to_s16(snd_pcm_format_t fmt, const uint8_t *in, int16_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int32_t v;
		switch (fmt) {
		case SND_PCM_FORMAT_S32_LE:
			v = (int32_t)((uint32_t)in[4 * i] | (uint32_t)in[4 * i + 1] << 8 |
				      (uint32_t)in[4 * i + 2] << 16 | (uint32_t)in[4 * i + 3] << 24);
			out[i] = (int16_t)(v >> 16);
			break;
		case SND_PCM_FORMAT_S24_LE: /* 24 bits in the low bytes of 32 */
			v = (int32_t)((uint32_t)in[4 * i] << 8 | (uint32_t)in[4 * i + 1] << 16 |
				      (uint32_t)in[4 * i + 2] << 24);
			out[i] = (int16_t)(v >> 16);
			break;
		case SND_PCM_FORMAT_S24_3LE:
			v = (int32_t)((uint32_t)in[3 * i] << 8 | (uint32_t)in[3 * i + 1] << 16 |
				      (uint32_t)in[3 * i + 2] << 24);
			out[i] = (int16_t)(v >> 16);
			break;
		case SND_PCM_FORMAT_FLOAT_LE: {
			float f;
			memcpy(&f, in + 4 * i, 4);
			f *= 32768.0f;
			out[i] = f >= 32767.0f ? 32767 : f <= -32768.0f ? -32768 : (int16_t)f;
			break;
		}
		default:
			memcpy(&out[i], in + 2 * i, 2);
			break;
		}
	}
}

/* An open() error as the errno the callers map to HTTP, with a reason. */
static int alsa_open_error(int r, const char *device, char *err, size_t errlen)
{
	switch (-r) {
	case ENOENT:
	case ENODEV:
	case ENXIO:
		snprintf(err, errlen, "no capture device %s (%s)", device, snd_strerror(r));
		return -ENOENT;
	case EBUSY:
		snprintf(err, errlen, "capture device %s is in use by another program", device);
		return -EBUSY;
	default:
		snprintf(err, errlen, "capture device %s cannot be opened: %s", device, snd_strerror(r));
		return -EINVAL;
	}
}

/* Negotiates format, channels, rate, period and buffer. */
static int alsa_set_hw(struct media_alsa *a, const struct media_alsa_params *p, char *err, size_t errlen)
{
	snd_pcm_hw_params_t *hw;
	snd_pcm_hw_params_alloca(&hw);
	int r = snd_pcm_hw_params_any(a->pcm, hw);
	if (r < 0)
		goto fail;
	if ((r = snd_pcm_hw_params_set_access(a->pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED)) < 0)
		goto fail;
	a->format = SND_PCM_FORMAT_UNKNOWN;
	for (size_t i = 0; i < ARRAY_SIZE(alsa_formats); i++) {
		if (snd_pcm_hw_params_test_format(a->pcm, hw, alsa_formats[i]) == 0) {
			a->format = alsa_formats[i];
			break;
		}
	}
	if (a->format == SND_PCM_FORMAT_UNKNOWN) {
		snprintf(err, errlen, "capture device %s offers no sample format taken here (S16, S24, S32, float)",
			 a->device);
		return -EINVAL;
	}
	if ((r = snd_pcm_hw_params_set_format(a->pcm, hw, a->format)) < 0)
		goto fail;
	a->sample_bytes = snd_pcm_format_physical_width(a->format) / 8;
	unsigned int ch = (unsigned int)p->channels;
	if ((r = snd_pcm_hw_params_set_channels_near(a->pcm, hw, &ch)) < 0)
		goto fail;
	/* The clock correction resamples anyway: the device's own rate is
	 * taken as it is (a plug PCM is told not to resample). */
	snd_pcm_hw_params_set_rate_resample(a->pcm, hw, 0);
	unsigned int rate = (unsigned int)p->sample_rate;
	if ((r = snd_pcm_hw_params_set_rate_near(a->pcm, hw, &rate, NULL)) < 0)
		goto fail;
	unsigned int period_us = ALSA_PERIOD_US, buffer_us = ALSA_BUFFER_US;
	if ((r = snd_pcm_hw_params_set_period_time_near(a->pcm, hw, &period_us, NULL)) < 0 ||
	    (r = snd_pcm_hw_params_set_buffer_time_near(a->pcm, hw, &buffer_us, NULL)) < 0)
		goto fail;
	if ((r = snd_pcm_hw_params(a->pcm, hw)) < 0)
		goto fail;
	snd_pcm_hw_params_get_period_size(hw, &a->period, NULL);
	snd_pcm_hw_params_get_buffer_size(hw, &a->buffer);
	a->dev_rate = (int)rate;
	a->dev_channels = (int)ch;
	return 0;
fail:
	snprintf(err, errlen, "capture device %s: cannot set its parameters: %s", a->device, snd_strerror(r));
	return r == -EBUSY ? -EBUSY : r == -ENODEV ? -ENOENT : -EINVAL;
}

/* Wakes at each period; timestamps on CLOCK_MONOTONIC when the PCM can. */
static int alsa_set_sw(struct media_alsa *a, char *err, size_t errlen)
{
	snd_pcm_sw_params_t *sw;
	snd_pcm_sw_params_alloca(&sw);
	int r = snd_pcm_sw_params_current(a->pcm, sw);
	if (r < 0 || (r = snd_pcm_sw_params_set_avail_min(a->pcm, sw, a->period)) < 0 ||
	    (r = snd_pcm_sw_params_set_start_threshold(a->pcm, sw, a->buffer)) < 0 ||
	    (r = snd_pcm_sw_params_set_tstamp_mode(a->pcm, sw, SND_PCM_TSTAMP_ENABLE)) < 0) {
		snprintf(err, errlen, "capture device %s: cannot set its wake-ups: %s", a->device, snd_strerror(r));
		return -EINVAL;
	}
	a->tstamp_mono = snd_pcm_sw_params_set_tstamp_type(a->pcm, sw, SND_PCM_TSTAMP_TYPE_MONOTONIC) == 0;
	if ((r = snd_pcm_sw_params(a->pcm, sw)) < 0) {
		snprintf(err, errlen, "capture device %s: %s", a->device, snd_strerror(r));
		return -EINVAL;
	}
	return 0;
}

int media_alsa_open(struct media_alsa **out, const struct media_alsa_params *p, char *err, size_t errlen)
{
	*out = NULL;
	if (!p->device || !p->device[0] || p->sample_rate < 8000 || p->channels < 1 || p->channels > 2) {
		snprintf(err, errlen, "capture: a device, a rate and 1 or 2 channels are needed");
		return -EINVAL;
	}
	struct media_alsa *a = calloc(1, sizeof(*a));
	if (!a) {
		util_strlcpy(err, "out of memory", errlen);
		return -ENOMEM;
	}
	util_strlcpy(a->device, p->device, sizeof(a->device));
	pthread_once(&alsa_once, alsa_init_once);
	int r = snd_pcm_open(&a->pcm, p->device, SND_PCM_STREAM_CAPTURE, SND_PCM_NONBLOCK);
	if (r < 0) {
		a->pcm = NULL;
		r = alsa_open_error(r, p->device, err, errlen);
		goto fail;
	}
	if ((r = alsa_set_hw(a, p, err, errlen)) < 0 || (r = alsa_set_sw(a, err, errlen)) < 0)
		goto fail;
	if ((r = snd_pcm_status_malloc(&a->status)) < 0) {
		util_strlcpy(err, "out of memory", errlen);
		r = -ENOMEM;
		goto fail;
	}
	a->cap = a->buffer;
	a->raw = malloc((size_t)a->cap * a->dev_channels * a->sample_bytes);
	a->s16 = malloc((size_t)a->cap * a->dev_channels * sizeof(int16_t));
	if (!a->raw || !a->s16) {
		util_strlcpy(err, "out of memory", errlen);
		r = -ENOMEM;
		goto fail;
	}
	if (media_alsa_conv_init(&a->conv, a->dev_rate, a->dev_channels, p->sample_rate, p->channels,
				 err, errlen) < 0) {
		r = -EINVAL;
		goto fail;
	}
	LOG_INFO(&log_alsa, "%s: %s, %d Hz x %d, period %lu, buffer %lu frames%s", a->device,
		 snd_pcm_format_name(a->format), a->dev_rate, a->dev_channels, (unsigned long)a->period,
		 (unsigned long)a->buffer, a->tstamp_mono ? "" : ", no monotonic timestamps (the reader's clock is used)");
	*out = a;
	return 0;
fail:
	media_alsa_close(a);
	return r;
}

/* Starts capture on the first poll or read (frames would pile up and
 * overrun while the caller was still getting ready). */
static int alsa_start(struct media_alsa *a)
{
	if (a->started)
		return 0;
	int r = snd_pcm_start(a->pcm);
	if (r < 0)
		return r;
	a->started = true;
	return 0;
}

int media_alsa_pollfds(struct media_alsa *a, struct pollfd *fds, int max)
{
	alsa_start(a);
	int n = snd_pcm_poll_descriptors(a->pcm, fds, (unsigned int)max);
	return n < 0 ? 0 : n;
}

/* Reads the status: the state, and a (timestamp, frames captured) pair for
 * the clock. Returns 0 or a negative errno. */
static int alsa_status(struct media_alsa *a, snd_pcm_state_t *state, snd_pcm_uframes_t *avail)
{
	int r = snd_pcm_status(a->pcm, a->status);
	if (r < 0)
		return r;
	*state = snd_pcm_status_get_state(a->status);
	*avail = snd_pcm_status_get_avail(a->status);
	if (*state != SND_PCM_STATE_RUNNING)
		return 0;
	snd_htimestamp_t ts;
	snd_pcm_status_get_htstamp(a->status, &ts);
	int64_t now = time_mono_ns();
	int64_t t = (int64_t)ts.tv_sec * TIME_NS_PER_SEC + ts.tv_nsec;
	if (!a->tstamp_mono || t > now + ALSA_TSTAMP_SLACK_NS / 100 || t < now - ALSA_TSTAMP_SLACK_NS) {
		/* No device timestamp on this clock: when the status was read. */
		a->bad_tstamps++;
		t = now;
	}
	if (!media_alsa_est_ready(&a->conv.est))
		LOG_DEBUG(&log_alsa, "%s: segment starts at frame %lld: timestamp %lld, now %lld, %lu frames there",
			  a->device, (long long)a->frames_read, (long long)t, (long long)now, (unsigned long)*avail);
	media_alsa_conv_observe(&a->conv, t, a->frames_read + (int64_t)*avail);
	return 0;
}

/* After an overrun or a suspend: the device runs again, its frames are a
 * new segment for the clock. Returns 0 or a negative errno. */
static int alsa_recover(struct media_alsa *a, bool suspended)
{
	int r = 0;
	LOG_DEBUG(&log_alsa, "%s: %s after %lld frames, status time %lld", a->device,
		  suspended ? "suspend" : "overrun", (long long)a->frames_read, (long long)time_mono_ns());
	if (suspended) {
		while ((r = snd_pcm_resume(a->pcm)) == -EAGAIN)
			time_sleep_ns(10 * TIME_NS_PER_MS);
	}
	if (!suspended || r < 0)
		r = snd_pcm_prepare(a->pcm);
	if (r < 0)
		return r;
	a->started = false;
	if ((r = alsa_start(a)) < 0)
		return r;
	a->overruns++;
	alsa_overruns_total++;
	media_alsa_conv_restart(&a->conv);
	/* Rare (the buffer holds 2 s) and each loses seconds: every one is said. */
	LOG_WARN(&log_alsa, "%s: %s (the reader was away %lld ms), frames lost (%llu times so far); silence fills their time",
		 a->device, suspended ? "suspended" : "overrun",
		 (long long)(a->away_ns / TIME_NS_PER_MS), (unsigned long long)a->overruns);
	return 0;
}

/* The reason for a failed call, for the caller's err. */
static int alsa_failed(struct media_alsa *a, int r, char *err, size_t errlen)
{
	if (r == -ENODEV)
		snprintf(err, errlen, "capture device %s is gone (unplugged)", a->device);
	else
		snprintf(err, errlen, "capture device %s failed: %s", a->device, snd_strerror(r));
	return MEDIA_SOURCE_ERROR;
}

int media_alsa_read(struct media_alsa *a, struct media_packet *pkt, char *err, size_t errlen)
{
	int64_t called = time_mono_ns();
	a->away_ns = a->last_read_ns ? called - a->last_read_ns : 0;
	a->last_read_ns = called;
	memset(pkt, 0, sizeof(*pkt));
	for (int tries = 0; tries < 4; tries++) {
		int r = alsa_start(a);
		snd_pcm_state_t state = SND_PCM_STATE_OPEN;
		snd_pcm_uframes_t avail = 0;
		if (r == 0)
			r = alsa_status(a, &state, &avail);
		if (r == 0 && state == SND_PCM_STATE_DISCONNECTED)
			r = -ENODEV;
		if (r == 0 && state == SND_PCM_STATE_XRUN)
			r = -EPIPE;
		if (r == 0 && state == SND_PCM_STATE_SUSPENDED)
			r = -ESTRPIPE;
		if (r == 0 && state == SND_PCM_STATE_RUNNING) {
			if (avail < a->period)
				return MEDIA_SOURCE_AGAIN;
			snd_pcm_sframes_t n = snd_pcm_readi(a->pcm, a->raw, avail < a->cap ? avail : a->cap);
			if (n == -EAGAIN || n == 0)
				return MEDIA_SOURCE_AGAIN;
			if (n > 0) {
				a->frames_read += n;
				alsa_to_s16(a->format, a->raw, a->s16, (size_t)n * a->dev_channels);
				int samples;
				int64_t pts;
				pkt->data = media_alsa_conv_process(&a->conv, a->s16, (int)n, &samples, &pts);
				if (samples < 0) {
					util_strlcpy(err, "out of memory", errlen);
					return MEDIA_SOURCE_ERROR;
				}
				if (a->conv.st.frames_inserted != a->inserted_seen) {
					alsa_inserted_total += a->conv.st.frames_inserted - a->inserted_seen;
					a->inserted_seen = a->conv.st.frames_inserted;
				}
				if (a->conv.st.steps != a->steps_seen) {
					a->steps_seen = a->conv.st.steps;
					LOG_AT(&log_alsa, a->steps_seen > 1 ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, "%s: output time anchored%s: %+.1f ms (%s), drift %.1f ppm",
						 a->device, a->steps_seen > 1 ? " again" : "", a->conv.st.last_step_ms,
						 a->conv.st.last_step_ms >= 0 ? "silence inserted" : "frames left out",
						 media_alsa_est_drift_ppm(&a->conv.est));
				}
				if (!pkt->data)
					return MEDIA_SOURCE_AGAIN;
				pkt->samples = samples;
				pkt->pts_ns = pts;
				pkt->duration_ns = (int64_t)samples * TIME_NS_PER_SEC / a->conv.rate;
				return MEDIA_SOURCE_OK;
			}
			r = (int)n;
		} else if (r == 0) {
			return MEDIA_SOURCE_AGAIN;  /* prepared, not running yet */
		}
		if (r == -EPIPE || r == -ESTRPIPE) {
			int rr = alsa_recover(a, r == -ESTRPIPE);
			if (rr < 0)
				return alsa_failed(a, rr, err, errlen);
			continue;
		}
		return alsa_failed(a, r, err, errlen);
	}
	return MEDIA_SOURCE_AGAIN;
}

void media_alsa_get_stats(struct media_alsa *a, struct media_alsa_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->drift_ppm = media_alsa_est_drift_ppm(&a->conv.est);
	st->overruns = a->overruns;
	st->frames_captured = (uint64_t)a->frames_read;
	st->frames_inserted = a->conv.st.frames_inserted;
	st->frames_dropped = a->conv.st.frames_dropped;
	st->device_rate = a->dev_rate;
	st->device_channels = a->dev_channels;
	st->steps = a->conv.st.steps;
	st->correction_ppm = a->conv.st.correction_ppm;
	st->error_ms = a->conv.st.error_ms;
	st->device_timestamps = a->tstamp_mono && a->bad_tstamps == 0;
}

void media_alsa_capture_info(struct media_alsa *a, const struct media_alsa_stats *past,
			     struct media_capture_info *ci)
{
	struct media_alsa_stats st = { 0 };
	if (!a && !past)
		return;
	if (a) {
		media_alsa_get_stats(a, &st);
		ci->audio_rate = st.device_rate;
		ci->audio_channels = st.device_channels;
		ci->audio_drift_ppm = st.drift_ppm;
	}
	if (past) {
		st.overruns += past->overruns;
		st.frames_inserted += past->frames_inserted;
		st.frames_dropped += past->frames_dropped;
		st.steps += past->steps;
	}
	if (a || st.steps) {
		ci->audio_overruns = st.overruns;
		ci->audio_frames_inserted = st.frames_inserted;
		ci->audio_frames_dropped = st.frames_dropped;
		ci->audio_corrections = st.steps;
	}
}

uint64_t media_alsa_overruns_total(void)
{
	return alsa_overruns_total;
}

uint64_t media_alsa_frames_inserted_total(void)
{
	return alsa_inserted_total;
}

void media_alsa_close(struct media_alsa *a)
{
	if (!a)
		return;
	if (a->pcm)
		snd_pcm_close(a->pcm);
	if (a->status)
		snd_pcm_status_free(a->status);
	media_alsa_conv_deinit(&a->conv);
	free(a->raw);
	free(a->s16);
	free(a);
}

/* True when the args item 's' (up to 'end') continues a PCM name: no '=',
 * or an upper-case key before it. */
static bool alsa_arg_continues(const char *s, const char *end)
{
	const char *eq = memchr(s, '=', (size_t)(end - s));
	if (!eq)
		return true;
	if (eq == s)
		return false;
	for (const char *c = s; c < eq; c++)
		if (!(*c >= 'A' && *c <= 'Z'))
			return false;
	return true;
}

bool media_alsa_arg_pcm(const char *args, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *s = args;
	while (s && *s) {
		const char *end = strchr(s, ',');
		if (!end)
			end = s + strlen(s);
		if ((size_t)(end - s) > klen && strncmp(s, key, klen) == 0 && s[klen] == '=') {
			const char *v = s + klen + 1;
			while (*end == ',') {
				const char *next = end + 1, *nend = strchr(next, ',');
				if (!nend)
					nend = next + strlen(next);
				if (!alsa_arg_continues(next, nend))
					break;
				end = nend;
			}
			size_t n = (size_t)(end - v);
			if (outlen) {
				if (n > outlen - 1)
					n = outlen - 1;
				memcpy(out, v, n);
				out[n] = '\0';
			}
			return true;
		}
		s = *end ? end + 1 : NULL;
	}
	return false;
}

/* The channel and rate ranges of capture PCM 'id' (0 where it cannot be
 * opened now, e.g. in use). */
static void alsa_list_ranges(struct media_alsa_device *d)
{
	snd_pcm_t *pcm;
	snd_pcm_hw_params_t *hw;
	unsigned int v;
	if (snd_pcm_open(&pcm, d->id, SND_PCM_STREAM_CAPTURE, SND_PCM_NONBLOCK) < 0)
		return;
	snd_pcm_hw_params_alloca(&hw);
	if (snd_pcm_hw_params_any(pcm, hw) >= 0) {
		if (snd_pcm_hw_params_get_channels_min(hw, &v) == 0)
			d->channels_min = (int)v;
		if (snd_pcm_hw_params_get_channels_max(hw, &v) == 0)
			d->channels_max = (int)v;
		if (snd_pcm_hw_params_get_rate_min(hw, &v, NULL) == 0)
			d->rate_min = (int)v;
		if (snd_pcm_hw_params_get_rate_max(hw, &v, NULL) == 0)
			d->rate_max = (int)v;
	}
	snd_pcm_close(pcm);
}

int media_alsa_list(struct media_alsa_device *out, int max)
{
	int n = 0, card = -1;
	snd_pcm_info_t *info;
	snd_ctl_card_info_t *ci;
	snd_pcm_info_alloca(&info);
	snd_ctl_card_info_alloca(&ci);
	pthread_once(&alsa_once, alsa_init_once);
	while (n < max && snd_card_next(&card) == 0 && card >= 0) {
		char name[32];
		snd_ctl_t *ctl;
		snprintf(name, sizeof(name), "hw:%d", card);
		if (snd_ctl_open(&ctl, name, 0) < 0)
			continue;
		if (snd_ctl_card_info(ctl, ci) < 0) {
			snd_ctl_close(ctl);
			continue;
		}
		int dev = -1;
		while (n < max && snd_ctl_pcm_next_device(ctl, &dev) == 0 && dev >= 0) {
			snd_pcm_info_set_device(info, (unsigned int)dev);
			snd_pcm_info_set_subdevice(info, 0);
			snd_pcm_info_set_stream(info, SND_PCM_STREAM_CAPTURE);
			if (snd_ctl_pcm_info(ctl, info) < 0)
				continue;  /* no capture on this device */
			struct media_alsa_device *d = &out[n++];
			memset(d, 0, sizeof(*d));
			snprintf(d->id, sizeof(d->id), "hw:CARD=%s,DEV=%d", snd_ctl_card_info_get_id(ci), dev);
			snprintf(d->name, sizeof(d->name), "%s: %s", snd_ctl_card_info_get_name(ci),
				 snd_pcm_info_get_name(info));
			d->subdevices = (int)snd_pcm_info_get_subdevices_count(info);
			alsa_list_ranges(d);
		}
		snd_ctl_close(ctl);
	}
	return n;
}
