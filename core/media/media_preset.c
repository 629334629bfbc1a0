/* media_preset: the quality presets of SPEC §5, the rule that refuses what
 * this machine cannot encode in real time, and the node's encode ledger:
 * what the live recordings of this process encode (admission) and the
 * threads their encoders hold (thread choice). */
#include "media.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common_util.h"
#include "media_source.h"

static const struct media_preset media_presets[] = {
	{ "low", 854, 480, 24, 1000000, 96000, "1M", "96k" },
	{ "medium", 1280, 720, 30, 2500000, 128000, "2.5M", "128k" },
	{ "high", 1920, 1080, 30, 5000000, 192000, "5M", "192k" },
	{ "ultra", 3840, 2160, 60, 15000000, 256000, "15M", "256k" },
};

const struct media_preset *media_preset_find(const char *quality)
{
	if (!quality)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(media_presets); i++)
		if (strcmp(media_presets[i].name, quality) == 0)
			return &media_presets[i];
	return NULL;
}

/* The real-time rule, an explicit budget set from measurements. The bench
 * scripts/bench.d/25-concurrent records N rooms at once through `edgerec
 * serve` and prints frames kept and the server's CPU per recording. On this
 * 2-core box, quiet, medium recordings (test source, VP8 on one thread, Opus
 * 128k, muxing, state updates) all started together at the quality speed
 * kept 99.7 % of their frames 2 at a time (0.29 core each), 99.3 % 4 at a
 * time, 98.6 % 6 at a time with none dropped (the degradation ladder moving
 * each to the dense speed once), 97.0 % 8 at a time with a few frames
 * dropped while they all started, 88 % 10 at a time. So the budget is set
 * to admit 6 medium: MEDIA_PIXELS_PER_CORE pixels per second per core, each
 * recording also counted MEDIA_RECORDING_OVERHEAD (audio, source, muxer) as
 * pixels. That is the dense cost (VP8 speed 16). The
 * quality speed (6, media_enc_vpx.c) encodes the same pixels at
 * MEDIA_QUALITY_COST_PCT of the dense cost (see core/media/README.md). The
 * node may spend MEDIA_BUDGET_PERCENT of its online cores on encoding; the
 * rest stays with the HTTP server, Redis, processing (remux, thumbnail,
 * upload) and whatever else shares the box. Every start is booked at its
 * dense cost: on 2 cores 6 medium recordings fit (11 low, 3 high). A start
 * takes the quality speed while the node is lightly loaded: what is booked
 * plus its quality cost stays within 1/MEDIA_QUALITY_SHARE of the budget
 * (on 2 cores: the first two medium recordings, or the first four low).
 * Where the box is shorter than that, the
 * degradation ladder's first step moves them to the dense speed, and their
 * state says so. A preset whose own rate exceeds the whole budget is
 * refused (ultra: 3840x2160@60 = 498 Mpx/s) instead of recording a file
 * that silently drops most frames; the ledger below refuses a start that
 * does not fit next to the recordings already encoding even at the dense
 * speed. recorder.encode_budget overrides the budget (re-measure after
 * changing the encoder's speeds). */
#define MEDIA_PIXELS_PER_CORE 130000000LL
#define MEDIA_RECORDING_OVERHEAD 9000000LL
#define MEDIA_BUDGET_PERCENT 85
#define MEDIA_QUALITY_COST_PCT 175
#define MEDIA_QUALITY_SHARE 2

static long media_cores(void)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	return cores < 1 ? 1 : cores;
}

/* ---- the node's encode ledger ---- */

/* One per process: every pipeline of this process encodes on its cores. */
static struct {
	pthread_mutex_t lock;
	long long budget_override;  /* pixel/s; 0: the measured default */
	long long reserved;         /* pixel/s of admitted encode recordings */
	int recordings;             /* admitted recordings that encode video */
	int encoders;               /* video encoders open */
	long long threads;          /* their threads */
} media_ledger = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Gives 'amount' back to the ledger's '*total' (never below 0) and one
 * holder back from '*holders' (media_encode_release, _threads_give). */
static void media_ledger_give(long long *total, long long amount, int *holders)
{
	if (amount <= 0)
		return;
	pthread_mutex_lock(&media_ledger.lock);
	*total = *total > amount ? *total - amount : 0;
	if (*holders > 0)
		(*holders)--;
	pthread_mutex_unlock(&media_ledger.lock);
}

static long long media_budget_locked(void)
{
	if (media_ledger.budget_override > 0)
		return media_ledger.budget_override;
	return media_cores() * MEDIA_PIXELS_PER_CORE * MEDIA_BUDGET_PERCENT / 100;
}

void media_encode_set_budget(long long pixels_per_s)
{
	pthread_mutex_lock(&media_ledger.lock);
	media_ledger.budget_override = pixels_per_s > 0 ? pixels_per_s : 0;
	pthread_mutex_unlock(&media_ledger.lock);
}

long long media_preset_pixel_rate(const struct media_preset *preset)
{
	return preset ? (long long)preset->width * preset->height * preset->fps : 0;
}

long long media_encode_cost(const struct media_preset *preset, const char *source, const char *args)
{
	char v[8];
	if (!preset || !source)
		return 0;
	/* rtp rooms and the test source's encoded sender deliver VP8/Opus that
	 * is written as it came: nothing to encode here. */
	if (strcmp(source, "rtp") == 0)
		return 0;
	if (strcmp(source, "test") == 0 && media_source_arg(args, "encoded", v, sizeof(v)) && strcmp(v, "0") != 0)
		return 0;
	return media_preset_pixel_rate(preset) + MEDIA_RECORDING_OVERHEAD;
}

long long media_encode_quality_cost(long long dense_cost)
{
	if (dense_cost <= 0)
		return 0;
	long long pixels = dense_cost > MEDIA_RECORDING_OVERHEAD ? dense_cost - MEDIA_RECORDING_OVERHEAD : 0;
	return pixels * MEDIA_QUALITY_COST_PCT / 100 + (dense_cost - pixels);
}

int media_encode_reserve(long long dense_cost, struct media_encode_grant *grant, char *err, size_t errlen)
{
	*grant = (struct media_encode_grant){ 0 };
	if (dense_cost <= 0)
		return 0;
	long long quality_cost = media_encode_quality_cost(dense_cost);
	pthread_mutex_lock(&media_ledger.lock);
	long long budget = media_budget_locked();
	if (media_ledger.reserved + dense_cost <= budget) {
		/* Booked at the dense cost, so the quality speed never costs a
		 * start its place; the quality speed only while the node is
		 * lightly loaded. */
		bool quality = media_ledger.reserved + quality_cost <= budget / MEDIA_QUALITY_SHARE;
		*grant = (struct media_encode_grant){ .rate = dense_cost, .dense = !quality };
		media_ledger.reserved += dense_cost;
		media_ledger.recordings++;
	} else {
		snprintf(err, errlen,
			 "this node cannot encode another %lld Mpixel/s in real time: %d recordings already "
			 "take %lld of its %lld Mpixel/s", dense_cost / 1000000, media_ledger.recordings,
			 media_ledger.reserved / 1000000, budget / 1000000);
	}
	pthread_mutex_unlock(&media_ledger.lock);
	return grant->rate > 0 ? 0 : -1;
}

void media_encode_release(long long rate)
{
	media_ledger_give(&media_ledger.reserved, rate, &media_ledger.recordings);
}

void media_encode_load(struct media_encode_load *out)
{
	pthread_mutex_lock(&media_ledger.lock);
	out->budget = media_budget_locked();
	out->reserved = media_ledger.reserved;
	out->recordings = media_ledger.recordings;
	out->encoders = media_ledger.encoders;
	out->threads = (int)media_ledger.threads;
	out->cores = (int)media_cores();
	pthread_mutex_unlock(&media_ledger.lock);
}

/* Threads for a new video encoder. libvpx's VP8 encoder makes its threads
 * wait for each other row by row in a busy loop (vp8_atomic_spin_wait:
 * `pause` and a load, no syscall, no sleep). That is fast on idle cores and
 * ruinous on busy ones: when the threads of several encoders (or any other
 * work) outnumber the cores, a thread spins on its whole time slice waiting
 * for a neighbour that is not running; two 720p recordings on 2 cores kept
 * 1-3 frames of 240. So one thread is the rule, and a second thread is
 * given only where one core cannot encode the frame rate at all (a pixel
 * rate above one core's worth), no other encoder is open, and cores are free
 * for every thread: the sum of encoder threads never exceeds the cores. */
int media_encode_threads_take(long long rate)
{
	long cores = media_cores();
	pthread_mutex_lock(&media_ledger.lock);
	long long want = (rate + MEDIA_PIXELS_PER_CORE - 1) / MEDIA_PIXELS_PER_CORE;
	long long free_cores = cores - media_ledger.threads;
	int threads = 1;
	if (want > 1 && media_ledger.encoders == 0 && free_cores > 1)
		threads = (int)(want < free_cores ? want : free_cores);
	media_ledger.encoders++;
	media_ledger.threads += threads;
	pthread_mutex_unlock(&media_ledger.lock);
	return threads;
}

void media_encode_threads_give(int threads)
{
	media_ledger_give(&media_ledger.threads, threads, &media_ledger.encoders);
}

int media_preset_check(const struct media_preset *preset, const char *format,
		       char *err, size_t errlen)
{
	if (!preset) {
		util_strlcpy(err, "unknown quality (expected low, medium, high or ultra)", errlen);
		return -1;
	}
	if (!format || (strcmp(format, "webm") && strcmp(format, "mkv") && strcmp(format, "mp4"))) {
		snprintf(err, errlen, "unknown format '%s' (expected webm, mkv or mp4)",
			 format ? format : "");
		return -1;
	}
	pthread_mutex_lock(&media_ledger.lock);
	long long budget = media_budget_locked();
	pthread_mutex_unlock(&media_ledger.lock);
	long long rate = media_preset_pixel_rate(preset);
	if (rate > budget) {
		snprintf(err, errlen,
			 "quality '%s' (%dx%d@%d, %lld Mpixel/s) cannot be encoded in real time on "
			 "%ld cores (budget %lld Mpixel/s)", preset->name, preset->width,
			 preset->height, preset->fps, rate / 1000000, media_cores(), budget / 1000000);
		return -1;
	}
	return 0;
}
