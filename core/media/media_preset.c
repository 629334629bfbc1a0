/* media_preset: the quality presets of SPEC §5 and the rule that refuses
 * what this machine cannot encode in real time. */
#include "media.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common_util.h"

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

/* The real-time rule, an explicit pixel-rate budget set from measurements.
 * scripts/bench.d/10-media records each preset in real time; on this 2-core
 * box (shared, load 2-6) a whole recording (test source, VP8 at realtime
 * speed 16, Opus, muxing) took about 0.1 CPU s per recorded second at low,
 * 0.4-0.9 at medium and 0.5-0.9 at high: roughly 60-100 million pixels per
 * second per core, of which we count 70. A preset is accepted when its
 * pixel rate fits in that times the online cores minus one (one core is
 * left to the source, audio, muxing and the rest of the appliance; never
 * less than one core). On 2 cores: high (1920x1080@30 = 62 Mpx/s) is
 * accepted, ultra (3840x2160@60 = 498 Mpx/s, 8x that) is refused with an
 * error instead of recording a file that silently drops most frames. */
#define MEDIA_PIXELS_PER_CORE 70000000LL

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
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	if (cores < 1)
		cores = 1;
	long long usable = cores > 1 ? cores - 1 : 1;
	long long budget = usable * MEDIA_PIXELS_PER_CORE;
	long long rate = (long long)preset->width * preset->height * preset->fps;
	if (rate > budget) {
		snprintf(err, errlen,
			 "quality '%s' (%dx%d@%d, %lld Mpixel/s) cannot be encoded in real time on "
			 "%ld cores (budget %lld Mpixel/s)", preset->name, preset->width,
			 preset->height, preset->fps, rate / 1000000, cores, budget / 1000000);
		return -1;
	}
	return 0;
}
