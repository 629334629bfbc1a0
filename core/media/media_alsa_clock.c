/* media_alsa_clock: a capture device's clock against CLOCK_MONOTONIC, and the
 * resampling that holds its frames to that clock (see media_alsa_clock.h). */
#include "media_alsa_clock.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <speex/speex_resampler.h>

#include "common_time.h"

/* The estimator's tuning, in seconds (times) and s/s (beta). */
#define EST_BIN_NS (500 * TIME_NS_PER_MS)    /* one measurement per bin */
#define EST_SKIP_NS (500 * TIME_NS_PER_MS)   /* left out after a (re)start */
#define EST_R (0.3e-3 * 0.3e-3)              /* a bin's measurement noise */
#define EST_QA (20e-6 * 20e-6)               /* offset wander, per second */
#define EST_QB (0.1e-6 * 0.1e-6)           /* drift wander, per second */
#define EST_P00_START (10e-3 * 10e-3)        /* a fresh offset's uncertainty */
#define EST_P11_START (1000e-6 * 1000e-6)    /* the drift's, before any bin */
#define EST_GATE_MIN 3e-3                    /* a bin this far off the line... */
#define EST_GATE_SIGMA 5.0                   /* ...and this many sigma is rejected */
#define EST_REJECTS_REANCHOR 10              /* rejected bins in a row (5 s) that agree... */
#define EST_STEP_AGREE 2e-3                  /* ...within this: a step, not late bins */
#define EST_REJECTS_RESET 30                 /* rejected in a row (15 s), agreeing or not: the
					      * line itself is wrong; learn it again */
#define EST_BETA_MAX 0.01                    /* 10000 ppm: a broken clock */

/* The converter's. */
#define CONV_TAU_S 5.0                       /* an error decays over this */
#define CONV_CORRECTION_MAX 1000e-6          /* at most this much faster or slower */
#define CONV_STEP_NS (10.0 * TIME_NS_PER_MS) /* a larger error is a step */
#define CONV_RATIO_EVERY_S 0.25              /* the ratio is set this often */
#define CONV_QUALITY 4                       /* speexdsp: 64 taps, voice and music */
/* The resampler's ratio is num / CONV_DEN. speexdsp rescales its phase
 * when the denominator changes, and that product overflows 32 bits (the
 * ratio is then left half-set) once den^2 passes 2^32; a prime denominator
 * is never reduced, so it never changes. The resolution, 1 / 65521 (15 ppm
 * at 48 kHz), is finer than the feedback needs: the ratio alternates
 * between neighbours and the time error stays within microseconds. */
#define CONV_DEN 65521u

void media_alsa_est_init(struct media_alsa_est *e, int rate)
{
	memset(e, 0, sizeof(*e));
	e->rate = rate;
	e->p11 = EST_P11_START;
}

void media_alsa_est_restart(struct media_alsa_est *e)
{
	e->anchored = false;
	e->bin_open = false;
}

bool media_alsa_est_ready(const struct media_alsa_est *e)
{
	return e->anchored;
}

/* One bin's earliest residual 'r' at 'u' through the filter. */
static void est_update(struct media_alsa_est *e, double u, double r)
{
	double du = u - e->u_ref;
	/* Predict: the offset moves with the drift; both wander a little. */
	e->alpha += e->beta * du;
	e->p00 += 2 * du * e->p01 + du * du * e->p11 + EST_QA * du;
	e->p01 += du * e->p11;
	e->p11 += EST_QB * du;
	e->u_ref = u;

	double y = r - e->alpha;
	double s = e->p00 + EST_R;
	double gate = EST_GATE_SIGMA * sqrt(s);
	if (fabs(y) > (gate > EST_GATE_MIN ? gate : EST_GATE_MIN)) {
		e->bins_rejected++;
		if (++e->reject_all >= EST_REJECTS_RESET) {
			/* Nothing has fitted for 15 s: the drift was learnt from
			 * reports that crept late (a long-starved system) and the
			 * line has left the device. Start over from this bin, the
			 * drift as uncertain as at the start. */
			e->alpha = r;
			e->p00 = EST_P00_START;
			e->p01 = 0;
			e->p11 = EST_P11_START;
			e->reject_run = e->reject_all = 0;
			e->resets++;
			return;
		}
		/* A starved system reports late by varying amounts; frames lost
		 * unreported put every later bin off by the same amount. */
		if (e->reject_run > 0 && fabs(y - e->reject_y) > EST_STEP_AGREE)
			e->reject_run = 0;
		if (e->reject_run == 0)
			e->reject_y = y;
		if (++e->reject_run >= EST_REJECTS_REANCHOR) {
			/* Not an outlier but a step (frames went missing unreported). */
			e->alpha = r;
			e->p00 = EST_P00_START;
			e->p01 = 0;
			e->reject_run = 0;
			e->reanchors++;
		}
		return;
	}
	e->reject_run = e->reject_all = 0;
	double k0 = e->p00 / s, k1 = e->p01 / s;
	e->alpha += k0 * y;
	e->beta += k1 * y;
	if (e->beta > EST_BETA_MAX)
		e->beta = EST_BETA_MAX;
	if (e->beta < -EST_BETA_MAX)
		e->beta = -EST_BETA_MAX;
	e->p11 -= k1 * e->p01;
	e->p00 *= 1 - k0;
	e->p01 *= 1 - k0;
	e->bins_used++;
}

void media_alsa_est_observe(struct media_alsa_est *e, int64_t t_ns, int64_t frames)
{
	if (!e->have_origin) {
		e->have_origin = true;
		e->t_org_ns = t_ns;
	}
	double u = (double)frames / e->rate;
	double r = (double)(t_ns - e->t_org_ns) / TIME_NS_PER_SEC - u;
	if (!e->anchored) {
		e->anchored = true;
		e->seg_start_ns = t_ns;
		e->alpha = r;
		e->u_ref = u;
		e->p00 = EST_P00_START;
		e->p01 = 0;
		e->reject_run = 0;
		return;
	}
	if (t_ns - e->seg_start_ns < EST_SKIP_NS)
		return;
	if (e->bin_open && t_ns - e->bin_start_ns >= EST_BIN_NS) {
		est_update(e, e->bin_u, e->bin_r);
		e->bin_open = false;
	}
	if (!e->bin_open) {
		e->bin_open = true;
		e->bin_start_ns = t_ns;
		e->bin_u = u;
		e->bin_r = r;
	} else if (r < e->bin_r) {
		e->bin_u = u;
		e->bin_r = r;
	}
}

double media_alsa_est_time(const struct media_alsa_est *e, double frame)
{
	double u = frame / e->rate;
	double r = e->alpha + e->beta * (u - e->u_ref);
	return (double)e->t_org_ns + (u + r) * TIME_NS_PER_SEC;
}

double media_alsa_est_drift_ppm(const struct media_alsa_est *e)
{
	return (1.0 / (1.0 + e->beta) - 1.0) * 1e6;
}

/* ---- the converter ---- */

int media_alsa_conv_init(struct media_alsa_conv *c, int dev_rate, int dev_channels,
			 int rate, int channels, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	if (dev_rate < 1000 || dev_rate > 384000 || dev_channels < 1 || rate < 8000 ||
	    rate > 192000 || channels < 1 || channels > 2) {
		snprintf(err, errlen, "cannot convert %d Hz x %d to %d Hz x %d", dev_rate,
			 dev_channels, rate, channels);
		return -1;
	}
	c->dev_rate = dev_rate;
	c->dev_channels = dev_channels;
	c->rate = rate;
	c->channels = channels;
	c->den = CONV_DEN;
	c->num = (uint32_t)llround((double)CONV_DEN * dev_rate / rate);
	int e = 0;
	c->rs = speex_resampler_init_frac((spx_uint32_t)channels, c->num, c->den,
					  (spx_uint32_t)dev_rate, (spx_uint32_t)rate, CONV_QUALITY, &e);
	if (!c->rs) {
		snprintf(err, errlen, "resampler: %s", speex_resampler_strerror(e));
		return -1;
	}
	media_alsa_est_init(&c->est, dev_rate);
	return 0;
}

void media_alsa_conv_deinit(struct media_alsa_conv *c)
{
	if (c->rs)
		speex_resampler_destroy(c->rs);
	free(c->mix);
	memset(c, 0, sizeof(*c));
}

void media_alsa_conv_observe(struct media_alsa_conv *c, int64_t t_ns, int64_t frames)
{
	media_alsa_est_observe(&c->est, t_ns, frames);
}

void media_alsa_conv_restart(struct media_alsa_conv *c)
{
	media_alsa_est_restart(&c->est);
	c->anchored = false;
}

/* Output time of output frame 'k', ns. */
static int64_t conv_out_time(const struct media_alsa_conv *c, uint64_t k)
{
	return c->t0_ns + (int64_t)(k / (uint64_t)c->rate) * TIME_NS_PER_SEC +
	       (int64_t)(k % (uint64_t)c->rate) * TIME_NS_PER_SEC / c->rate;
}

double media_alsa_conv_error_ns(const struct media_alsa_conv *c)
{
	if (!c->started)
		return 0;
	return (double)c->t0_ns + (double)c->k_out * TIME_NS_PER_SEC / c->rate -
	       media_alsa_est_time(&c->est, c->in_pos);
}

/* Sets the resampler's ratio from the drift and the error. */
static void conv_set_ratio(struct media_alsa_conv *c, double e_ns)
{
	double corr = -e_ns / TIME_NS_PER_SEC / CONV_TAU_S;
	if (corr > CONV_CORRECTION_MAX)
		corr = CONV_CORRECTION_MAX;
	if (corr < -CONV_CORRECTION_MAX)
		corr = -CONV_CORRECTION_MAX;
	/* Output frames per device frame: nominal x (1 + beta) x (1 + corr). */
	double out_per_in = (double)c->rate / c->dev_rate * (1.0 + c->est.beta) * (1.0 + corr);
	double num = (double)c->den / out_per_in;
	uint32_t n = (uint32_t)llround(num);
	c->st.correction_ppm = ((double)c->dev_rate * c->den / ((double)n * c->rate) - 1.0) * 1e6;
	if (n == c->num || n == 0)
		return;
	if (speex_resampler_set_rate_frac(c->rs, n, c->den, (spx_uint32_t)c->dev_rate,
					  (spx_uint32_t)c->rate) == RESAMPLER_ERR_SUCCESS)
		c->num = n;
}

/* Anchors the segment that begins with device frame 'first': the resampler
 * starts afresh there, and the output time of that frame is met by
 * inserting silence, or by leaving device frames out (returned; at most
 * 'avail'). */
static int conv_anchor(struct media_alsa_conv *c, int64_t first, int avail, int64_t *insert)
{
	int skip = 0;
	*insert = 0;
	if (c->started && c->in_pos < first) {
		/* Frames the resampler still held are lost with its history. */
		c->st.frames_dropped += (uint64_t)llround((first - c->in_pos) * c->rate / c->dev_rate);
	}
	speex_resampler_reset_mem(c->rs);
	speex_resampler_skip_zeros(c->rs);
	double t_first = media_alsa_est_time(&c->est, (double)first);
	bool done = true;
	if (!c->started) {
		c->st.last_step_ms = 0;
		c->started = true;
		c->t0_ns = llround(t_first);
		c->k_out = 0;
	} else {
		int64_t target = llround((t_first - (double)c->t0_ns) * c->rate / TIME_NS_PER_SEC);
		int64_t gap = target - (int64_t)c->k_out;
		c->st.last_step_ms = (double)gap * 1e3 / c->rate;
		if (gap > 0) {
			*insert = gap;
		} else if (gap < 0) {
			/* The output is ahead of these frames: leave out as many. */
			int64_t need = (-gap * c->dev_rate + c->rate - 1) / c->rate;
			done = need <= avail;
			skip = done ? (int)need : avail;
			c->st.frames_dropped += (uint64_t)((int64_t)skip * c->rate / c->dev_rate);
		}
	}
	c->in_pos = (double)(first + skip);
	c->ratio_at = first;
	if (done) {
		/* Otherwise the next frames are left out too, up to the time. */
		c->anchored = true;
		c->st.steps++;
		c->st.max_error_ms = 0;
		conv_set_ratio(c, 0);
	}
	return skip;
}

/* Maps 'frames' device frames to the output channels in c->mix. */
static int conv_mix(struct media_alsa_conv *c, const int16_t *in, int frames)
{
	if ((size_t)frames > c->mix_cap) {
		int16_t *m = realloc(c->mix, (size_t)frames * c->channels * sizeof(*m));
		if (!m)
			return -1;
		c->mix = m;
		c->mix_cap = (size_t)frames;
	}
	int dc = c->dev_channels, oc = c->channels;
	int16_t *o = c->mix;
	for (int i = 0; i < frames; i++, in += dc, o += oc) {
		if (oc == 1)
			o[0] = dc == 1 ? in[0] : (int16_t)(((int32_t)in[0] + in[1]) / 2);
		else {
			o[0] = in[0];
			o[1] = dc == 1 ? in[0] : in[1];
		}
	}
	return 0;
}

struct buf *media_alsa_conv_process(struct media_alsa_conv *c, const int16_t *in, int frames,
				    int *samples, int64_t *pts_ns)
{
	int64_t first = c->in_next;
	*samples = 0;
	if (frames <= 0)
		return NULL;
	c->in_next += frames;
	c->st.frames_in += (uint64_t)frames;
	if (!media_alsa_est_ready(&c->est)) {
		c->st.frames_dropped += (uint64_t)frames * c->rate / c->dev_rate;
		return NULL;
	}
	int skip = 0;
	int64_t insert = 0;
	if (!c->anchored) {
		skip = conv_anchor(c, first, frames, &insert);
	} else {
		double e = media_alsa_conv_error_ns(c);
		if (fabs(e) > CONV_STEP_NS) {
			skip = conv_anchor(c, first, frames, &insert);
		} else {
			if (fabs(e) / TIME_NS_PER_MS > c->st.max_error_ms)
				c->st.max_error_ms = fabs(e) / TIME_NS_PER_MS;
			c->st.error_ms = e / TIME_NS_PER_MS;
			if ((double)(first - c->ratio_at) >= CONV_RATIO_EVERY_S * c->dev_rate) {
				c->ratio_at = first;
				conv_set_ratio(c, e);
			}
		}
	}
	int n = frames - skip;
	/* Room for every output frame these can make (the ratio is within 2 %). */
	size_t cap = (size_t)insert + (size_t)((double)n * c->rate / c->dev_rate * 1.02) + 64;
	struct buf *b = buf_new(cap * c->channels * sizeof(int16_t));
	if (!b || (n > 0 && conv_mix(c, in + (size_t)skip * c->dev_channels, n) < 0)) {
		buf_unref(b);
		*samples = -1;
		return NULL;
	}
	int16_t *out = (int16_t *)b->data;
	memset(out, 0, (size_t)insert * c->channels * sizeof(int16_t));
	uint64_t made = (uint64_t)insert;
	const int16_t *src = c->mix;
	spx_uint32_t left = (spx_uint32_t)n;
	while (left > 0 && made < cap) {
		spx_uint32_t in_len = left, out_len = (spx_uint32_t)(cap - made);
		speex_resampler_process_interleaved_int(c->rs, src, &in_len, out + made * c->channels, &out_len);
		c->in_pos += (double)out_len * c->num / c->den;
		made += out_len;
		src += (size_t)in_len * c->channels;
		left -= in_len;
		if (in_len == 0 && out_len == 0)
			break;
	}
	*pts_ns = conv_out_time(c, c->k_out);
	c->k_out += made;
	c->st.frames_inserted += (uint64_t)insert;
	c->st.frames_out += made;
	if (made == 0) {
		buf_unref(b);
		return NULL;
	}
	b->size = (size_t)made * c->channels * sizeof(int16_t);
	*samples = (int)made;
	return b;
}
