/* media_alsa_clock: the device-independent half of microphone capture.
 * It estimates a capture device's sample clock against CLOCK_MONOTONIC from
 * (timestamp, frames captured) pairs, and turns the device's frames into
 * S16 at the nominal rate and channel count, resampled so that output frame
 * k stands for the sound captured at t0 + k / rate on the monotonic clock
 * (the audio then keeps time with video timed by the same clock, however
 * far the device's crystal is off). No ALSA here: media_alsa.c feeds it
 * from a PCM, the unit tests from generated and recorded series.
 *
 * Uses: libspeexdsp's resampler (fractional ratio), common_buf.
 *
 * The estimator (media_alsa_est) is a two-state Kalman filter over the
 * residual r = t - n / rate (seconds; n = device frames captured by time t):
 * r = alpha + beta (u - u_ref), beta the relative clock error. Observations
 * are gathered in bins of half a second of which only the earliest residual
 * counts (a timestamp is late, never early, against the frames it reports:
 * the driver's pointer moves in steps), the first half second after a
 * (re)start is left out (start-up transients), and a bin that lies far off
 * the line is rejected; ten rejected in a row (5 s) that agree within 2 ms
 * re-anchor the offset (frames lost unreported: rare, ALSA reports its
 * overruns). A starved system's reports come late for a while, by varying
 * amounts or, bin by bin, by the same: they are only rejected, and the
 * clock runs on from the bins before. Thirty rejected in a row (15 s),
 * agreeing or not, mean the drift itself was learnt wrong (reports that
 * crept later and later): the filter starts over. A
 * restart (overrun: frames lost) keeps the drift and forgets the offset.
 *
 * The converter (media_alsa_conv) keeps e = (t0 + k_out / rate) - t(in_pos),
 * the time error of the next output frame (in_pos: the device frame it is
 * made from), near zero: the resampling ratio is the estimated clock ratio
 * times (1 - e / 5 s), the correction held within 1000 ppm. An error over
 * 10 ms (start, after an overrun, a re-anchored offset) is taken as a step
 * instead: silence inserted (time went by without frames) or device frames
 * dropped, both counted. */
#ifndef EDGEREC_MEDIA_ALSA_CLOCK_H
#define EDGEREC_MEDIA_ALSA_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common_buf.h"

struct media_alsa_est {
	double rate;              /* the device's nominal rate */
	bool have_origin;
	int64_t t_org_ns;         /* times are kept relative to this */
	bool anchored;            /* an offset for the current segment */
	int64_t seg_start_ns;     /* first observation of the segment */
	/* The open bin: the earliest residual seen in it. */
	bool bin_open;
	int64_t bin_start_ns;
	double bin_u, bin_r;
	/* Kalman state: alpha at u_ref, beta; P its covariance. */
	double u_ref, alpha, beta;
	double p00, p01, p11;
	int reject_run;
	double reject_y;          /* the first of the rejected run's offsets */
	int reject_all;           /* bins rejected in a row, agreeing or not */
	uint64_t bins_used, bins_rejected, reanchors, resets;
};

/* Starts an estimator for a device of nominal 'rate' frames per second. */
void media_alsa_est_init(struct media_alsa_est *e, int rate);
/* Frames were lost (overrun, suspend): the next observation starts a new
 * segment; the drift is kept. */
void media_alsa_est_restart(struct media_alsa_est *e);
/* 'frames' device frames (counted from 0, across segments) had been
 * captured at 't_ns' (CLOCK_MONOTONIC). Observations come in time order. */
void media_alsa_est_observe(struct media_alsa_est *e, int64_t t_ns, int64_t frames);
/* True once the current segment has an offset. */
bool media_alsa_est_ready(const struct media_alsa_est *e);
/* Estimated capture time of device frame 'frame' (fractional), ns. */
double media_alsa_est_time(const struct media_alsa_est *e, double frame);
/* The device clock against the monotonic clock, ppm (+: the device is fast). */
double media_alsa_est_drift_ppm(const struct media_alsa_est *e);

struct SpeexResamplerState_;

struct media_alsa_conv_stats {
	uint64_t frames_in;         /* device frames given */
	uint64_t frames_out;        /* output frames made (incl. inserted) */
	uint64_t frames_inserted;   /* output frames of silence (time without frames) */
	uint64_t frames_dropped;    /* output frames' worth of device frames dropped */
	uint64_t steps;             /* re-anchorings: start, overruns, large errors */
	double error_ms;            /* the last time error e, ms */
	double max_error_ms;        /* the largest |e| since the last step */
	double correction_ppm;      /* the last ratio against the nominal one */
	double last_step_ms;        /* the last step: + silence inserted, - frames left out */
};

struct media_alsa_conv {
	int dev_rate, dev_channels;
	int rate, channels;          /* the output's */
	struct SpeexResamplerState_ *rs;
	struct media_alsa_est est;
	bool started;                /* t0 is set */
	int64_t t0_ns;               /* output frame 0 stands for this time */
	bool anchored;               /* the current segment is anchored */
	uint64_t k_out;              /* output frames made */
	int64_t in_next;             /* number of the next device frame given */
	double in_pos;               /* device frame the next output frame is made from */
	uint32_t num, den;           /* the resampler's ratio, input per output */
	int64_t ratio_at;            /* device frame of the last ratio update */
	int16_t *mix;                /* device frames mapped to the output channels */
	size_t mix_cap;              /* frames */
	struct media_alsa_conv_stats st;
};

/* Prepares a converter from 'dev_rate'/'dev_channels' to 'rate'/'channels'
 * (channels 1 or 2; a mono device is duplicated, two channels are mixed to
 * one, channels past the second are left out). Returns 0 or -1 with 'err'. */
int media_alsa_conv_init(struct media_alsa_conv *c, int dev_rate, int dev_channels,
			 int rate, int channels, char *err, size_t errlen);
void media_alsa_conv_deinit(struct media_alsa_conv *c);
/* A timestamp pair, as media_alsa_est_observe ('frames' counts every device
 * frame, also those not given yet). */
void media_alsa_conv_observe(struct media_alsa_conv *c, int64_t t_ns, int64_t frames);
/* Frames were lost: the next frames given start a new segment, re-anchored
 * (silence fills the time that went by). */
void media_alsa_conv_restart(struct media_alsa_conv *c);
/* Converts 'frames' interleaved device frames (S16, dev_channels each).
 * Returns the output made (S16, 'channels' each) as a new buffer whose
 * reference goes to the caller, or NULL when nothing came out (or out of
 * memory, *samples then -1); *samples is its frame count, *pts_ns the
 * monotonic time of its first frame. Needs an observation of the current
 * segment first (frames are held back otherwise: NULL, *samples 0). */
struct buf *media_alsa_conv_process(struct media_alsa_conv *c, const int16_t *in, int frames,
				    int *samples, int64_t *pts_ns);
/* The time error of the next output frame, ns (positive: the output runs
 * ahead of the sound it carries). */
double media_alsa_conv_error_ns(const struct media_alsa_conv *c);

#endif
