/* test_media_alsa: the capture clock (media_alsa_clock.c) driven by
 * simulated devices: a crystal 300 ppm off (and drifting), timestamps with
 * jitter, coarse pointers and late outliers, overruns that lose frames, an
 * unreported jump; 10 minutes at 48 kHz stereo with a marker every half
 * second checked in the output (as a file's A/V offset would be) and 3
 * hours at 8 kHz mono. Recorded series from snd-aloop are replayed too. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#ifndef MEDIA_HAVE_ALSA
int main(void)
{
	puts("test_media_alsa: built without libasound/libspeexdsp, nothing to test");
	return 0;
}
#else

#include "media_alsa.h"
#include "media_alsa_clock.h"

#define NS 1000000000.0
#define MS 1000000.0

/* ---- a simulated capture device ---------------------------------------- */

struct sim_cfg {
	const char *name;
	int rate, dev_channels, channels;
	int out_rate;          /* the output's (0: as the device) */
	double ppm;            /* the device's clock against the monotonic clock */
	double wobble_ppm;     /* plus this, varying over an hour (temperature) */
	double jitter_ms;      /* gaussian noise on the timestamps */
	int gran;              /* the pointer moves in steps of this many frames */
	double outlier_p;      /* this share of timestamps is late by up to... */
	double outlier_ms;
	double wake_ms;        /* the thread reads about this often */
	double seconds;
	double lose_at_s, lose_ms;   /* frames lost: the device stops this long */
	int lose_reported;     /* an overrun the reader sees (restart) or not */
	int marker_every;      /* frames between markers (0: none) */
	double starve_every_s; /* a starved system: every this often... */
	double starve_len_s;   /* ...for this long, every timestamp is late by... */
	double starve_late_ms; /* ...a varying share of this */
	int max_steps;         /* re-anchorings allowed (0: no limit) */
	double settle_s;       /* after a loss, errors are judged from this much later (0: 3 s) */
	double creep_from_s, creep_to_s; /* between these, reports come later and later... */
	double creep_ms_per_s;           /* ...by this much more each second, then on time */
	double bound_ms;       /* |error| allowed after the warm-up */
};

/* Where the device had got to (frames, fractional) at true time t. */
struct sim_point {
	double t, p;
};

struct sim {
	const struct sim_cfg *cfg;
	uint64_t rng;
	struct sim_point *hist;
	size_t nhist, caphist;
	double t, p;           /* now, frames captured by now */
	int64_t read;          /* frames the reader took */
	/* the output */
	int64_t t0;
	int64_t k;
	int packets;
	int discontinuities;
	double max_err_ms, max_err_warm_ms;
	double sum_err_ms;
	long n_err;
	int markers, marker_misses;
	double max_marker_ms;
	double warm_until;     /* errors before this time (a start, a loss) are not judged */
	int64_t peak_k;
	int16_t peak_v;
};

static double sim_uniform(struct sim *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return (double)(s->rng >> 11) / 9007199254740992.0;
}

static double sim_gauss(struct sim *s)
{
	double u1 = sim_uniform(s), u2 = sim_uniform(s);
	if (u1 < 1e-12)
		u1 = 1e-12;
	return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static void sim_push(struct sim *s)
{
	if (s->nhist == s->caphist) {
		s->caphist = s->caphist ? s->caphist * 2 : 4096;
		s->hist = realloc(s->hist, s->caphist * sizeof(*s->hist));
	}
	s->hist[s->nhist].t = s->t;
	s->hist[s->nhist].p = s->p;
	s->nhist++;
}

/* True capture time of device frame 'n' (seconds). */
static double sim_time_of(const struct sim *s, double n)
{
	size_t lo = 0, hi = s->nhist - 1;
	if (n <= s->hist[0].p)
		return s->hist[0].t;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (s->hist[mid].p <= n)
			lo = mid;
		else
			hi = mid;
	}
	const struct sim_point *a = &s->hist[lo], *b = &s->hist[hi];
	if (b->p <= a->p)
		return b->t;
	/* The last of equal positions (a stop) is where capture went on. */
	while (lo + 1 < s->nhist && s->hist[lo + 1].p == a->p)
		a = &s->hist[++lo];
	return a->t + (n - a->p) / (b->p - a->p) * (b->t - a->t);
}

/* Device frames captured by true time t (seconds), for the markers. */
static double sim_frames_at(const struct sim *s, double t)
{
	size_t lo = 0, hi = s->nhist - 1;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (s->hist[mid].t <= t)
			lo = mid;
		else
			hi = mid;
	}
	const struct sim_point *a = &s->hist[lo], *b = &s->hist[hi];
	return a->p + (t - a->t) / (b->t - a->t) * (b->p - a->p);
}

static int sim_out_rate(const struct sim_cfg *c)
{
	return c->out_rate ? c->out_rate : c->rate;
}

static int16_t sim_sample(const struct sim *s, int64_t n)
{
	int m = s->cfg->marker_every;
	return m && n % m == m / 2 ? 20000 : 0;
}

/* Looks for markers in the output: a peak over 8000 is one. */
static void sim_markers(struct sim *s, const int16_t *out, int frames, int64_t k0)
{
	const struct sim_cfg *c = s->cfg;
	for (int i = 0; i < frames; i++) {
		int16_t v = out[(size_t)i * c->channels];
		if (v > 8000 && v > s->peak_v) {
			s->peak_v = v;
			s->peak_k = k0 + i;
		} else if (s->peak_v && v < s->peak_v && k0 + i > s->peak_k + 8) {
			/* The peak is over: which marker was it, and when was it made? */
			double t = (double)s->t0 / NS + (double)s->peak_k / sim_out_rate(c);
			double n = sim_frames_at(s, t);
			double m = round((n - c->marker_every / 2) / c->marker_every);
			double nm = m * c->marker_every + c->marker_every / 2;
			double err = (t - sim_time_of(s, nm)) * 1e3;
			if (t >= s->warm_until && fabs(err) > s->max_marker_ms)
				s->max_marker_ms = fabs(err);
			s->markers++;
			s->peak_v = 0;
		}
	}
}

static void sim_run(const struct sim_cfg *c, struct sim *s)
{
	struct media_alsa_conv conv;
	int orate = sim_out_rate(c);
	char err[128];
	memset(s, 0, sizeof(*s));
	s->cfg = c;
	s->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(c->ppm * 1000) ^ (uint64_t)c->seconds;
	CHECK(media_alsa_conv_init(&conv, c->rate, c->dev_channels, orate, c->channels, err, sizeof(err)) == 0);
	s->t = 1000.0;   /* the monotonic clock is not at 0 when capture starts */
	sim_push(s);
	double start = s->t;
	int16_t *in = NULL;
	size_t in_cap = 0;
	int64_t next_k = 0;
	bool lost = false;
	s->warm_until = start + 3.0;
	while (s->t - start < c->seconds) {
		/* The device runs for one wake-up interval. */
		double dt = c->wake_ms / 1e3 * (0.5 + sim_uniform(s));
		double ppm = c->ppm + c->wobble_ppm * sin(2 * M_PI * (s->t - start) / 3600.0);
		bool stopping = !lost && c->lose_ms > 0 && s->t - start >= c->lose_at_s;
		if (stopping) {
			/* An overrun: nothing is captured for lose_ms. */
			s->t += c->lose_ms / 1e3;
			sim_push(s);
			lost = true;
			s->warm_until = s->t + (c->settle_s > 0 ? c->settle_s : 3.0);
			if (c->lose_reported)
				media_alsa_conv_restart(&conv);
		}
		s->t += dt;
		s->p += dt * c->rate * (1 + ppm * 1e-6);
		sim_push(s);
		/* The reader: status (pointer, timestamp), then read what is there. */
		int64_t hw = (int64_t)(s->p / c->gran) * c->gran;
		double ts = s->t + c->jitter_ms / 1e3 * sim_gauss(s);
		if (c->outlier_p > 0 && sim_uniform(s) < c->outlier_p)
			ts += c->outlier_ms / 1e3 * sim_uniform(s);
		if (c->creep_ms_per_s > 0 && s->t - start >= c->creep_from_s && s->t - start < c->creep_to_s)
			ts += c->creep_ms_per_s / 1e3 * (s->t - start - c->creep_from_s);
		if (c->creep_ms_per_s > 0 && s->t - start >= c->creep_from_s && s->t - start < c->creep_to_s + 0.1)
			s->warm_until = s->t + (c->settle_s > 0 ? c->settle_s : 3.0);  /* not judged while creeping */
		if (c->starve_every_s > 0 && fmod(s->t - start + c->starve_every_s / 2, c->starve_every_s) < c->starve_len_s)
			ts += c->starve_late_ms / 1e3 * (0.2 + 0.8 * sim_uniform(s));
		media_alsa_conv_observe(&conv, (int64_t)llround(ts * NS), hw);
		int avail = (int)(hw - s->read);
		if (avail <= 0)
			continue;
		if ((size_t)avail * c->dev_channels > in_cap) {
			in_cap = (size_t)avail * c->dev_channels * 2;
			in = realloc(in, in_cap * sizeof(*in));
		}
		for (int i = 0; i < avail; i++)
			for (int ch = 0; ch < c->dev_channels; ch++)
				in[(size_t)i * c->dev_channels + ch] = sim_sample(s, s->read + i);
		s->read += avail;
		int samples;
		int64_t pts;
		struct buf *b = media_alsa_conv_process(&conv, in, avail, &samples, &pts);
		CHECK(samples >= 0);
		if (b) {
			if (s->packets == 0)
				s->t0 = pts;
			int64_t want = s->t0 + (int64_t)((double)next_k * NS / orate);
			if (llabs(pts - want) > 1)
				s->discontinuities++;
			if (c->marker_every)
				sim_markers(s, (const int16_t *)b->data, samples, next_k);
			next_k += samples;
			s->packets++;
			buf_unref(b);
		}
		if (!s->packets)
			continue;
		/* The truth: when was the sound of the next output frame made? */
		double e_ms = ((double)s->t0 / NS + (double)next_k / orate - sim_time_of(s, conv.in_pos)) * 1e3;
		if (fabs(e_ms) > s->max_err_ms)
			s->max_err_ms = fabs(e_ms);
		if (s->t >= s->warm_until) {
			if (fabs(e_ms) > s->max_err_warm_ms)
				s->max_err_warm_ms = fabs(e_ms);
			s->sum_err_ms += e_ms;
			s->n_err++;
		}
	}
	s->k = next_k;
	struct media_alsa_conv_stats st = conv.st;
	double drift = media_alsa_est_drift_ppm(&conv.est);
	double ppm_end = c->ppm + c->wobble_ppm * sin(2 * M_PI * c->seconds / 3600.0);
	fprintf(stderr,
		"%-28s %6.0f s: |error| max %.2f ms (after warm-up %.2f, mean %+.3f); drift %.1f ppm (true %.1f); "
		"markers %d max %.2f ms; out %lld frames for %.3f s; inserted %llu dropped %llu steps %llu; "
		"bins %llu rejected %llu resets %llu\n",
		c->name, c->seconds, s->max_err_ms, s->max_err_warm_ms, s->n_err ? s->sum_err_ms / s->n_err : 0,
		drift, ppm_end, s->markers, s->max_marker_ms, (long long)s->k, s->t - (double)s->t0 / NS,
		(unsigned long long)st.frames_inserted, (unsigned long long)st.frames_dropped,
		(unsigned long long)st.steps, (unsigned long long)conv.est.bins_used,
		(unsigned long long)conv.est.bins_rejected, (unsigned long long)conv.est.resets);
	CHECK(s->discontinuities == 0);
	if (c->max_steps)
		CHECK(st.steps <= (uint64_t)c->max_steps);
	CHECK(s->max_err_warm_ms <= c->bound_ms);
	CHECK(fabs(drift - ppm_end) < 5);
	if (c->marker_every) {
		/* Every marker came out, each where its time says. */
		int expect = (int)(s->read / c->marker_every);
		CHECK(s->markers >= expect - 2);
		CHECK(s->max_marker_ms <= c->bound_ms + 0.1);
	}
	/* Output frames against the monotonic time they span. */
	double span = s->t - (double)s->t0 / NS;
	CHECK(fabs((double)s->k / orate - span) < 0.02);
	media_alsa_conv_deinit(&conv);
	free(in);
	free(s->hist);
}

/* 10 minutes, 48 kHz stereo, +300 ppm, aloop-like 4 ms pointer steps. */
static void test_300ppm_10min(void)
{
	struct sim_cfg c = {
		.name = "+300 ppm, 10 min", .rate = 48000, .dev_channels = 2, .channels = 2,
		.ppm = 300, .jitter_ms = 0.2, .gran = 192, .wake_ms = 10, .seconds = 600,
		.marker_every = 24000, .bound_ms = 2.5,
	};
	struct sim s;
	sim_run(&c, &s);
	CHECK(s.max_err_ms <= 20.0);
}

/* A slow device, mono captured as stereo, late outliers. */
static void test_slow_outliers(void)
{
	struct sim_cfg c = {
		.name = "-300 ppm, outliers", .rate = 48000, .dev_channels = 1, .channels = 2,
		.ppm = -300, .jitter_ms = 0.3, .gran = 48, .outlier_p = 0.02, .outlier_ms = 40,
		.wake_ms = 20, .seconds = 300, .marker_every = 24000, .bound_ms = 2.5,
	};
	struct sim s;
	sim_run(&c, &s);
	CHECK(s.max_err_ms <= 20.0);
}

/* A starved system: every 20 s, for 2 s, the device's reports come late by
 * up to 80 ms, by varying amounts. Rejected, never taken for a step. */
static void test_starved(void)
{
	struct sim_cfg c = {
		.name = "+300 ppm, starved", .rate = 48000, .dev_channels = 2, .channels = 2,
		.ppm = 300, .jitter_ms = 0.2, .gran = 192, .wake_ms = 10, .seconds = 240,
		.starve_every_s = 20, .starve_len_s = 2, .starve_late_ms = 80, .max_steps = 1,
		.marker_every = 24000, .bound_ms = 2.5,
	};
	struct sim s;
	sim_run(&c, &s);
}

/* A long-starved system whose reports creep later by 1 ms each second for
 * a minute (the drift estimate follows them), then come on time again:
 * the filter finds its way back to the device's clock (starting over when
 * nothing fits for 15 s); judged from 30 s after. */
static void test_creep(void)
{
	struct sim_cfg c = {
		.name = "-300 ppm, creeping reports", .rate = 48000, .dev_channels = 2, .channels = 2,
		.ppm = -300, .jitter_ms = 0.2, .gran = 192, .wake_ms = 10, .seconds = 300,
		.creep_from_s = 60, .creep_to_s = 120, .creep_ms_per_s = 1, .settle_s = 30,
		.marker_every = 24000, .bound_ms = 2.5,
	};
	struct sim s;
	sim_run(&c, &s);
}

/* An overrun at 2 minutes loses 150 ms: silence fills them, time holds. */
static void test_overrun(void)
{
	struct sim_cfg c = {
		.name = "+300 ppm, overrun", .rate = 48000, .dev_channels = 2, .channels = 1,
		.ppm = 300, .jitter_ms = 0.2, .gran = 96, .wake_ms = 10, .seconds = 240,
		.lose_at_s = 120, .lose_ms = 150, .lose_reported = 1, .marker_every = 24000,
		.bound_ms = 2.5,
	};
	struct sim s;
	sim_run(&c, &s);
}

/* Frames lost without an overrun being reported: the estimator re-anchors
 * once ten bins in a row (5 s) agree on the jump. */
static void test_silent_jump(void)
{
	struct sim_cfg c = {
		.name = "+300 ppm, silent 60 ms jump", .rate = 48000, .dev_channels = 2, .channels = 2,
		.ppm = 300, .jitter_ms = 0.2, .gran = 96, .wake_ms = 10, .seconds = 240,
		.lose_at_s = 100, .lose_ms = 60, .lose_reported = 0, .marker_every = 24000,
		.bound_ms = 2.5, .settle_s = 8,
	};
	struct sim s;
	sim_run(&c, &s);
}

/* Three hours at 8 kHz mono (the clock logic does not depend on the rate),
 * the crystal wandering by 10 ppm over the hour (warming up, cooling). */
static void test_3h(void)
{
	struct sim_cfg c = {
		.name = "+300 ppm +-10 wander, 3 h", .rate = 8000, .dev_channels = 1, .channels = 1,
		.ppm = 300, .wobble_ppm = 10, .jitter_ms = 0.3, .gran = 32, .outlier_p = 0.005,
		.outlier_ms = 20, .wake_ms = 10, .seconds = 3 * 3600, .bound_ms = 2.5,
	};
	struct sim s;
	sim_run(&c, &s);
	CHECK(s.max_err_ms <= 20.0);
}

/* A marker's way through the resampler at the nominal ratio: output frame
 * k is device frame k (skip_zeros), so the time bookkeeping holds. */
static void test_resampler_alignment(void)
{
	struct media_alsa_conv conv;
	char err[128];
	CHECK(media_alsa_conv_init(&conv, 48000, 1, 48000, 1, err, sizeof(err)) == 0);
	media_alsa_conv_observe(&conv, 5 * (int64_t)NS, 0);
	int16_t in[4800] = { 0 };
	in[1000] = 20000;
	int16_t out[9600];
	int got = 0;
	for (int pass = 0; pass < 2; pass++) {
		int samples;
		int64_t pts;
		struct buf *b = media_alsa_conv_process(&conv, pass ? (int16_t[4800]){ 0 } : in, 4800, &samples, &pts);
		CHECK(b != NULL);
		if (!b)
			break;
		if (pass == 0)
			CHECK_INT(pts, 5 * (int64_t)NS);
		memcpy(out + got, b->data, (size_t)samples * 2);
		got += samples;
		buf_unref(b);
	}
	int peak = 0;
	for (int i = 1; i < got; i++)
		if (out[i] > out[peak])
			peak = i;
	CHECK_INT(peak, 1000);
	CHECK(out[peak] > 18000);
	media_alsa_conv_deinit(&conv);
}

/* Channel mapping: stereo to mono mixes, mono to stereo duplicates. */
static void test_channels(void)
{
	struct media_alsa_conv conv;
	char err[128];
	int16_t in[2 * 4800];
	for (int i = 0; i < 4800; i++) {
		in[2 * i] = 1000;
		in[2 * i + 1] = 3000;
	}
	CHECK(media_alsa_conv_init(&conv, 48000, 2, 48000, 1, err, sizeof(err)) == 0);
	media_alsa_conv_observe(&conv, 1, 0);
	int samples;
	int64_t pts;
	struct buf *b = media_alsa_conv_process(&conv, in, 4800, &samples, &pts);
	CHECK(b && samples > 4000 && samples <= 4800);
	if (b)
		CHECK_INT(((int16_t *)b->data)[samples / 2], 2000);
	buf_unref(b);
	media_alsa_conv_deinit(&conv);

	CHECK(media_alsa_conv_init(&conv, 48000, 1, 48000, 2, err, sizeof(err)) == 0);
	media_alsa_conv_observe(&conv, 1, 0);
	int16_t mono[4800];
	for (int i = 0; i < 4800; i++)
		mono[i] = 1000;
	b = media_alsa_conv_process(&conv, mono, 4800, &samples, &pts);
	CHECK(b && samples > 4000);
	if (b) {
		const int16_t *o = (const int16_t *)b->data;
		CHECK_INT(o[2 * (samples / 2)], 1000);
		CHECK_INT(o[2 * (samples / 2) + 1], 1000);
	}
	buf_unref(b);
	media_alsa_conv_deinit(&conv);

	CHECK(media_alsa_conv_init(&conv, 48000, 2, 48000, 3, err, sizeof(err)) < 0);
	CHECK(media_alsa_conv_init(&conv, 0, 2, 48000, 2, err, sizeof(err)) < 0);
}

/* A device at 44.1 kHz into 48 kHz, its clock 120 ppm slow. */
static void test_rate_conversion(void)
{
	struct sim_cfg c = {
		.name = "44.1 kHz -120 ppm", .rate = 44100, .out_rate = 48000, .dev_channels = 2,
		.channels = 2, .ppm = -120, .jitter_ms = 0.2, .gran = 64, .wake_ms = 10,
		.seconds = 120, .marker_every = 22050, .bound_ms = 2.5,
	};
	struct sim s;
	sim_run(&c, &s);
}

/* PCM names keep their commas in a source's args. */
static void test_arg_pcm(void)
{
	char v[64];
	CHECK(media_alsa_arg_pcm("device=hw:Loopback,1,0,channels=1", "device", v, sizeof(v)));
	CHECK_STR(v, "hw:Loopback,1,0");
	CHECK(media_alsa_arg_pcm("channels=1,device=hw:CARD=Loopback,DEV=1,SUBDEV=0", "device", v, sizeof(v)));
	CHECK_STR(v, "hw:CARD=Loopback,DEV=1,SUBDEV=0");
	CHECK(media_alsa_arg_pcm("device=/dev/video0,audio=plughw:1,0", "audio", v, sizeof(v)));
	CHECK_STR(v, "plughw:1,0");
	CHECK(media_alsa_arg_pcm("audio=default", "audio", v, sizeof(v)));
	CHECK_STR(v, "default");
	CHECK(!media_alsa_arg_pcm("xaudio=hw:1,0", "audio", v, sizeof(v)));
	CHECK(!media_alsa_arg_pcm("device=x", "audio", v, sizeof(v)));
	CHECK(!media_alsa_arg_pcm(NULL, "audio", v, sizeof(v)));
	CHECK(media_alsa_arg_pcm("audio=hw:1,0", "audio", v, 5));
	CHECK_STR(v, "hw:1");
}

int main(void)
{
	test_arg_pcm();
	test_resampler_alignment();
	test_channels();
	test_rate_conversion();
	test_300ppm_10min();
	test_slow_outliers();
	test_starved();
	test_creep();
	test_overrun();
	test_silent_jump();
	test_3h();
	return check_exit();
}

#endif
