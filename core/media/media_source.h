/* media_source: the source driver table. A source delivers packets on one
 * or more streams; each stream carries either raw media (I420 video frames,
 * interleaved signed 16-bit PCM) that the pipeline encodes, or packets that
 * are already encoded (VP8, VP9, H.264, Opus) that the pipeline writes as they are
 * (passthrough).
 *
 * Uses: common_buf (packet payloads are refcounted buffers).
 *
 * A driver is a const table, defined in media_src_<name>.c:
 *     const struct media_source_driver media_source_test = {
 *         .name = "test", .open = ..., .read = ..., .close = ... };
 * and listed in media_source.c's table, where media_source_find() finds it.
 * open() runs on the thread that starts the pipeline, read() only on the
 * pipeline's source thread, close() after that thread has ended;
 * request_keyframe() may be called from any thread and must be thread-safe. */
#ifndef EDGEREC_MEDIA_SOURCE_H
#define EDGEREC_MEDIA_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common_buf.h"

#define MEDIA_SOURCE_MAX_STREAMS 4

/* Returned by read(). */
enum {
	MEDIA_SOURCE_OK = 0,
	MEDIA_SOURCE_AGAIN = 1,    /* nothing within the timeout; call again */
	MEDIA_SOURCE_EOF = 2,      /* the source ended normally */
	MEDIA_SOURCE_ERROR = -1,   /* failed; the reason is in src->err */
};

enum media_kind {
	MEDIA_KIND_VIDEO,
	MEDIA_KIND_AUDIO,
};

enum media_codec {
	MEDIA_CODEC_I420,   /* raw: planes Y, U, V back to back, width x height, no padding */
	MEDIA_CODEC_S16,    /* raw: interleaved signed 16-bit native-endian PCM */
	MEDIA_CODEC_VP8,    /* encoded */
	MEDIA_CODEC_VP9,
	MEDIA_CODEC_OPUS,
	MEDIA_CODEC_H264,   /* access units in AVCC form (4-byte lengths), SPS/PPS in-band
			     * ahead of every IDR; Matroska only (not WebM) */
};

/* What one stream carries; filled by open(). */
struct media_stream_info {
	enum media_kind kind;
	enum media_codec codec;
	int width, height;         /* video */
	int fps_num, fps_den;      /* video; nominal rate */
	int sample_rate, channels; /* audio */
	/* Encoded streams only: CodecPrivate (e.g. the OpusHead for Opus), and
	 * for Opus the CodecDelay (pre-skip) and SeekPreRoll in ns. The bytes
	 * belong to the source and stay valid until close(). */
	const uint8_t *codec_private;
	size_t codec_private_len;
	int64_t codec_delay_ns;
	int64_t seek_preroll_ns;
};

/* One packet from read(). 'data' holds a reference that passes to the
 * caller: raw video is one whole I420 frame (width*height*3/2 bytes), raw
 * audio any number of whole sample frames, encoded data one frame. */
struct media_packet {
	int stream;           /* index into media_source.streams */
	int64_t pts_ns;       /* presentation time from the source's zero */
	int64_t duration_ns;  /* 0 if unknown */
	bool keyframe;        /* encoded video: a keyframe */
	bool force_keyframe;  /* raw video: have the encoder code this frame as a
			       * keyframe (a device source after a gap) */
	int samples;          /* audio: sample frames (per channel) */
	uint32_t missed;      /* frames of this stream a live source skipped just
			       * before this one because it ran late (counted as
			       * dropped) */
	struct buf *data;
};

/* What the pipeline asks of a source. The test source delivers at this
 * size and rate; the file source delivers the file's own size and rate (the
 * encoder follows the stream info); encoded sources deliver what the sender
 * sends. */
struct media_source_params {
	const char *args;     /* "k=v,k=v" from the configuration, may be NULL */
	int width, height, fps;
	int sample_rate, channels; /* 48000, 2 for the raw sources */
	bool realtime;        /* pace reads to the wall clock (test source) */
	int64_t duration_ns;  /* >0: report EOF after this much media */
};

/* What a live encoded source lost on the way in, before the pipeline saw
 * it (RTP: packets lost, frames its depacketizers dropped). */
struct media_source_stats {
	uint64_t packets_lost;
	uint64_t video_frames_dropped;   /* incomplete, or waiting for a keyframe */
	uint64_t keyframe_requests;      /* PLIs sent */
	uint64_t packets_unsupported;    /* payload formats not taken (H.264 interleaved mode) */
	bool stalled;                    /* a device source's device is away (unplugged): the
					  * pipeline reports the source stalled until it is back */
};

/* What a device source (a camera, a microphone) captures and what it lost,
 * for the recording's state (metadata.capture). */
struct media_capture_info {
	bool present;
	char device[256];          /* as configured (a path or a stable link) */
	char path[256];            /* the node it resolved to */
	char card[64], driver[32];
	char pixel_format[8];      /* as V4L2 names it: YUYV, NV12, YU12, MJPG */
	int asked_width, asked_height, asked_fps; /* the preset's */
	int width, height;         /* what the camera delivers */
	double fps;                /* the rate it agreed to */
	int out_width, out_height; /* what is recorded (scaled into the preset's box) */
	uint64_t frames_rejected;  /* corrupt or undecodable frames left out */
	uint64_t frames_resized;   /* frames of another size than the camera's, scaled */
	uint64_t camera_dropped;   /* frames the camera's driver skipped (sequence gaps) */
	uint32_t reopens;          /* times the camera came back after going away */
	bool timestamps_fallback;  /* some frames timed when dequeued, not by the driver */
	char audio_device[128];    /* the microphone, "" without */
	uint32_t audio_reopens;
	/* The microphone's clock and losses (media_alsa_capture_info). */
	int audio_rate, audio_channels;   /* what the device runs at; 0 before it is read */
	double audio_drift_ppm;           /* its clock against the monotonic one */
	uint64_t audio_overruns;          /* its buffer overran: frames lost */
	uint64_t audio_frames_inserted;   /* silence (48 kHz frames) where frames were lost */
	uint64_t audio_frames_dropped;    /* frames left out to keep time */
	uint64_t audio_corrections;       /* output time re-anchored (start, overruns) */
};

struct media_source;

struct media_source_driver {
	const char *name;
	/* Opens the source and fills src->streams / src->nb_streams. Returns 0,
	 * or <0 with a reason in 'err': -ENOENT when the device it reads is
	 * missing, -EBUSY when another program holds it, any other negative
	 * value otherwise. src->priv is the driver's. */
	int (*open)(struct media_source *src, const struct media_source_params *p,
		    char *err, size_t errlen);
	/* Waits up to 'timeout_ns' for the next packet. Packets of one stream
	 * come in pts order; streams may be interleaved loosely. */
	int (*read)(struct media_source *src, struct media_packet *pkt, int64_t timeout_ns);
	/* Frees everything open() made. */
	void (*close)(struct media_source *src);
	/* Asks an encoded source for a keyframe soon (e.g. RTCP PLI); may be
	 * NULL. Any thread. */
	void (*request_keyframe)(struct media_source *src);
	/* Copies what the source lost so far; may be NULL. Called on the
	 * source thread. */
	void (*stats)(struct media_source *src, struct media_source_stats *st);
	/* Device sources: what is captured, for the state; may be NULL. Called
	 * after open() and on the source thread. */
	void (*capture_info)(struct media_source *src, struct media_capture_info *ci);
	/* Streams from separate devices (a camera and a microphone), one of
	 * which may lag the other: at a stop the pipeline reads on, for at
	 * most half a second, until every stream has reached the point the
	 * furthest had, so the tracks end together. */
	bool align_end;
};

struct media_source {
	const struct media_source_driver *driver;
	void *priv;
	int nb_streams;
	struct media_stream_info streams[MEDIA_SOURCE_MAX_STREAMS];
	char err[256];  /* why read() returned MEDIA_SOURCE_ERROR */
};

extern const struct media_source_driver media_source_test;
extern const struct media_source_driver media_source_file;

/* Returns the driver named 'name', or NULL. */
const struct media_source_driver *media_source_find(const char *name);

/* Opens a source of 'driver' into a new object. Returns NULL with 'err'. */
struct media_source *media_source_new(const struct media_source_driver *driver,
				      const struct media_source_params *p,
				      char *err, size_t errlen);
/* The same, returning the driver's code (0, -ENOENT, -EBUSY, other <0)
 * and the source in '*out' (NULL on failure). */
int media_source_open(struct media_source **out, const struct media_source_driver *driver,
		      const struct media_source_params *p, char *err, size_t errlen);
/* Closes and frees. media_source_free(NULL) is a no-op. */
void media_source_free(struct media_source *src);

/* Finds 'key' in a "k=v,k=v" list and copies its value into 'out'.
 * Returns true when present. For drivers parsing their args. */
bool media_source_arg(const char *args, const char *key, char *out, size_t outlen);

/* Releases the packet's data reference and clears it. */
void media_packet_clear(struct media_packet *pkt);
/* Raw S16 audio: cuts what lies before 'from_ns' off the front of 'pkt'
 * (pts, samples, duration and data follow). False when nothing is left. */
bool media_packet_trim_s16(struct media_packet *pkt, int64_t from_ns, int rate, int channels);

#endif
