/* media_enc: the encoder driver table (VP8, VP9 in media_enc_vpx.c, Opus in
 * media_enc_opus.c). An encoder takes raw frames (I420 video, interleaved
 * s16 audio) and hands encoded packets to a callback.
 *
 * Uses: common_buf. An encoder object is used by one thread at a time
 * (the pipeline's encoder thread). */
#ifndef EDGEREC_MEDIA_ENC_H
#define EDGEREC_MEDIA_ENC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common_buf.h"
#include "media_source.h"

struct media_enc_params {
	int width, height, fps;    /* video */
	int sample_rate, channels; /* audio */
	int bitrate_bps;
	int keyframe_interval;     /* video: at most this many frames between keyframes */
	int threads;               /* video: encoder threads */
	bool dense;                /* video: the dense speed is the normal one */
};

/* One encoded packet. 'data' is a new reference owned by the callee of the
 * output callback (it must buf_unref it or pass it on). */
struct media_enc_packet {
	struct buf *data;
	int64_t pts_ns;
	int64_t duration_ns;
	bool keyframe;
};

typedef int (*media_enc_output_fn)(void *opaque, struct media_enc_packet *pkt);

/* Video: what the encoder gives up to keep pace with the clock when the CPU
 * is short (the pipeline's degradation ladder). All off is the normal
 * level. */
struct media_enc_level {
	bool fast;      /* the fastest realtime speed setting */
	int fps_div;    /* 1, or 2: only every other frame comes */
	int scale_div;  /* 1, or 2: frames are coded at half width and height */
};

struct media_enc;

struct media_enc_driver {
	const char *name;
	enum media_kind kind;
	enum media_codec codec;  /* what comes out */
	int (*open)(struct media_enc *e, const struct media_enc_params *p, char *err, size_t errlen);
	/* Encodes one raw frame: video a whole I420 frame, audio 'samples'
	 * sample frames starting at 'pts_ns'. 'force_keyframe' asks for a
	 * keyframe now (video). Packets go to 'out' before the call returns.
	 * Returns 0, or <0 with e->err; a negative return from 'out' is passed
	 * back. 'frame' NULL flushes what the encoder still holds. */
	int (*encode)(struct media_enc *e, const struct buf *frame, int samples, int64_t pts_ns,
		      bool force_keyframe, media_enc_output_fn out, void *opaque);
	void (*close)(struct media_enc *e);
	/* Video only (NULL otherwise): applies 'l' from the next frame on. A
	 * change of coded size makes the next frame a keyframe; frames still
	 * come at the full size (the encoder scales them). Returns 0, or <0
	 * with e->err. */
	int (*set_level)(struct media_enc *e, const struct media_enc_level *l);
};

struct media_enc {
	const struct media_enc_driver *driver;
	void *priv;
	/* Filled by open() for the muxer: CodecPrivate (OpusHead), CodecDelay
	 * and SeekPreRoll in ns. */
	uint8_t codec_private[64];
	size_t codec_private_len;
	int64_t codec_delay_ns, seek_preroll_ns;
	char err[200];
};

extern const struct media_enc_driver media_enc_vp8;
extern const struct media_enc_driver media_enc_vp9;
extern const struct media_enc_driver media_enc_opus;

/* Opens an encoder of 'driver'. Returns NULL with 'err'. */
struct media_enc *media_enc_new(const struct media_enc_driver *driver,
				const struct media_enc_params *p, char *err, size_t errlen);
/* Frees; media_enc_free(NULL) is a no-op. */
void media_enc_free(struct media_enc *e);

#endif
