/* media_alsa: microphone capture from an ALSA PCM (hw:, plughw:, a named
 * PCM), timed by the device's own timestamps on CLOCK_MONOTONIC and held to
 * the monotonic clock by resampling (the device's sample clock drifts: a
 * device 300 ppm off gains 1 s in under an hour). Used by the `alsa` source
 * driver and by the camera source (its audio=<pcm> argument), both of which
 * poll it from their source thread through media_mic (below), which
 * reopens it after an unplug.
 *
 * Uses: libasound (capture), libspeexdsp (the resampler), common_buf.
 *
 *     struct media_alsa *a;
 *     struct media_alsa_params p = { .device = "hw:1,0", .sample_rate = 48000, .channels = 2 };
 *     if (media_alsa_open(&a, &p, err, sizeof(err)) < 0) ... (-ENOENT, -EBUSY, -EINVAL)
 *     n = media_alsa_pollfds(a, fds, 4); poll(fds, n, ...);
 *     while (media_alsa_read(a, &pkt, err, sizeof(err)) == MEDIA_SOURCE_OK) ...
 *     media_alsa_close(a);
 *
 * Built only where libasound and libspeexdsp are present: then the media
 * library defines MEDIA_HAVE_ALSA for itself and for everything linking it
 * (callers test it); the declarations are here either way. */
#ifndef EDGEREC_MEDIA_ALSA_H
#define EDGEREC_MEDIA_ALSA_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "media_source.h"

struct media_alsa;

struct media_alsa_params {
	const char *device;   /* "hw:1,0", "plughw:CARD=Loopback,DEV=1", "default" */
	int sample_rate;      /* nominal output rate (48000) */
	int channels;         /* output channels, 1 or 2 */
};

struct media_alsa_stats {
	double drift_ppm;     /* device clock against CLOCK_MONOTONIC (+: device fast) */
	uint64_t overruns;    /* xruns recovered */
	uint64_t frames_captured;  /* frames read from the device */
	uint64_t frames_inserted;  /* output frames of silence filling overrun gaps */
	uint64_t frames_dropped;   /* output frames dropped to keep time monotonic */
	int device_rate, device_channels;
	/* Added to the agreed interface, for the metadata: */
	uint64_t steps;       /* re-anchorings of the output time: the start, overruns, jumps */
	double correction_ppm;/* the resampling ratio against the nominal one now */
	double error_ms;      /* the output's time error now (what is left to correct) */
	bool device_timestamps; /* every timestamp came from the device on CLOCK_MONOTONIC */
};

struct media_alsa_device {
	char id[64];          /* "hw:CARD=Loopback,DEV=1" */
	char name[128];       /* "Loopback: Loopback PCM (1)" */
	int channels_min, channels_max;
	int rate_min, rate_max;  /* 0 when the device could not be opened (in use) */
	int subdevices;       /* added: capture subdevices (the loopback card has 8) */
};

/* 0, or a negative errno with a reason: -ENOENT no such device, -EBUSY in use, -EINVAL not usable */
int media_alsa_open(struct media_alsa **out, const struct media_alsa_params *p, char *err, size_t errlen);
int media_alsa_pollfds(struct media_alsa *a, struct pollfd *fds, int max);   /* fills up to max, returns count */
/* Non-blocking. MEDIA_SOURCE_OK: pkt->data S16 interleaved at the nominal rate/channels (drift-corrected), pkt->samples, pkt->pts_ns = CLOCK_MONOTONIC ns of the first sample (the caller rebases and sets pkt->stream); MEDIA_SOURCE_AGAIN; MEDIA_SOURCE_ERROR (device gone: unplug, or failed; err says) */
int media_alsa_read(struct media_alsa *a, struct media_packet *pkt, char *err, size_t errlen);
void media_alsa_get_stats(struct media_alsa *a, struct media_alsa_stats *st);
void media_alsa_close(struct media_alsa *a);
/* Fills the microphone part of a device source's capture info (audio_*)
 * from 'a' (may be NULL: the device is away; the counters are left as
 * they are). 'past' (may be NULL) is added: what handles closed before
 * had counted. */
void media_alsa_capture_info(struct media_alsa *a, const struct media_alsa_stats *past,
			     struct media_capture_info *ci);
/* Since the process started, over every handle: overruns, and the output
 * frames of silence that filled their time. For /metrics. */
uint64_t media_alsa_overruns_total(void);
uint64_t media_alsa_frames_inserted_total(void);
/* Finds the PCM name 'key' gives in a source's "k=v,k=v" args, commas and
 * all: "device=hw:Loopback,1,0,channels=1" gives "hw:Loopback,1,0" (a
 * following item without '=' or with an upper-case key, as ALSA's CARD=,
 * DEV=, SUBDEV=, belongs to the name). True when present. */
bool media_alsa_arg_pcm(const char *args, const char *key, char *out, size_t outlen);
int media_alsa_list(struct media_alsa_device *out, int max); /* capture PCMs; returns how many were filled (at most max) */

/* A microphone that outlives its device (media_alsa_mic.c), for the
 * sources that record one: times from the source's zero ('zero_ns', the
 * monotonic time it stands for; -1: the first sample's), never going back
 * (an overlap with the last packet is cut off the front); a device that
 * goes away is closed and opened again every 0.5 s, and the time it was
 * away stays a gap.
 *
 *     media_mic_open(&m, &p, zero_ns, err, sizeof(err))   as media_alsa_open
 *     media_mic_read(m, &pkt)    MEDIA_SOURCE_OK (pkt->stream left 0) or _AGAIN
 *                                (nothing yet, or the device is away)
 *     n = media_mic_pollfds(m, fds, max, &wake_ns)   away: none, and wake_ns is
 *                                when the next reopen is due (else INT64_MAX) */
struct media_mic;
int media_mic_open(struct media_mic **out, const struct media_alsa_params *p, int64_t zero_ns, char *err,
		   size_t errlen);
int media_mic_read(struct media_mic *m, struct media_packet *pkt);
int media_mic_pollfds(struct media_mic *m, struct pollfd *fds, int max, int64_t *wake_ns);
bool media_mic_away(const struct media_mic *m);
/* The audio_* part of a device source's capture info, over every handle. */
void media_mic_capture_info(struct media_mic *m, struct media_capture_info *ci);
void media_mic_close(struct media_mic *m);

#endif
