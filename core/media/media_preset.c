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

/* The real-time rule. libvpx in realtime mode at our speed settings encodes
 * about 60-90 million pixels per second per core on this class of machine
 * (scripts/bench.d/10-media measures it: 720p30 uses a fraction of one core,
 * 1080p30 most of one). Recording also decodes/produces the source and
 * muxes, so a preset is accepted when its pixel rate fits in
 * MEDIA_PIXELS_PER_CORE times the online cores minus one core of headroom
 * (never less than one core). Ultra (3840x2160@60 = 498 Mpx/s) is refused on
 * 2 cores; high (62 Mpx/s) is accepted. */
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
