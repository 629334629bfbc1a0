/* media_enc_opus: the Opus encoder driver (libopus, 20 ms frames). */
#include "media_enc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <opus/opus.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"

static struct log_handle log_opus = LOG_HANDLE("media/opus");

#define OPUS_FRAME_MS 20
#define OPUS_MAX_PACKET 4000

struct opus_priv {
	OpusEncoder *enc;
	int sample_rate, channels, frame_samples;
	int16_t *pending;       /* samples waiting for a whole frame */
	int pending_samples;    /* per channel */
	int64_t pending_pts_ns; /* pts of pending[0] */
	uint8_t packet[OPUS_MAX_PACKET];
};

/* Writes the OpusHead of RFC 7845 §5.1 (mapping family 0). */
static size_t opus_write_head(uint8_t *out, int channels, int pre_skip, int rate)
{
	memcpy(out, "OpusHead", 8);
	out[8] = 1;
	out[9] = (uint8_t)channels;
	out[10] = (uint8_t)(pre_skip & 0xff);
	out[11] = (uint8_t)(pre_skip >> 8);
	out[12] = (uint8_t)(rate & 0xff);
	out[13] = (uint8_t)((rate >> 8) & 0xff);
	out[14] = (uint8_t)((rate >> 16) & 0xff);
	out[15] = (uint8_t)((rate >> 24) & 0xff);
	out[16] = 0; /* output gain */
	out[17] = 0;
	out[18] = 0; /* channel mapping family */
	return 19;
}

static int opus_open(struct media_enc *e, const struct media_enc_params *p, char *err, size_t errlen)
{
	struct opus_priv *o = calloc(1, sizeof(*o));
	int oerr = 0, lookahead = 0;
	if (!o) {
		util_strlcpy(err, "out of memory", errlen);
		return -1;
	}
	e->priv = o;
	if ((p->sample_rate != 8000 && p->sample_rate != 12000 && p->sample_rate != 16000 &&
	     p->sample_rate != 24000 && p->sample_rate != 48000) ||
	    p->channels < 1 || p->channels > 2) {
		snprintf(err, errlen, "Opus cannot encode %d Hz x %d channels (needs 8/12/16/24/48 kHz, "
			 "mono or stereo)", p->sample_rate, p->channels);
		return -1;
	}
	o->enc = opus_encoder_create(p->sample_rate, p->channels, OPUS_APPLICATION_AUDIO, &oerr);
	if (!o->enc) {
		snprintf(err, errlen, "libopus: %s", opus_strerror(oerr));
		return -1;
	}
	opus_encoder_ctl(o->enc, OPUS_SET_BITRATE(p->bitrate_bps));
	opus_encoder_ctl(o->enc, OPUS_SET_COMPLEXITY(5));
	opus_encoder_ctl(o->enc, OPUS_GET_LOOKAHEAD(&lookahead));
	o->sample_rate = p->sample_rate;
	o->channels = p->channels;
	o->frame_samples = p->sample_rate * OPUS_FRAME_MS / 1000;
	o->pending = calloc((size_t)o->frame_samples * (size_t)o->channels, sizeof(int16_t));
	if (!o->pending) {
		util_strlcpy(err, "out of memory", errlen);
		return -1;
	}
	/* The pre-skip is counted at 48 kHz whatever the input rate. */
	int pre_skip = lookahead * (48000 / p->sample_rate);
	e->codec_private_len = opus_write_head(e->codec_private, p->channels, pre_skip, p->sample_rate);
	e->codec_delay_ns = (int64_t)pre_skip * TIME_NS_PER_SEC / 48000;
	e->seek_preroll_ns = 80 * TIME_NS_PER_MS;
	LOG_DEBUG(&log_opus, "%d Hz x %d, %d bps, pre-skip %d", p->sample_rate, p->channels,
		  p->bitrate_bps, pre_skip);
	return 0;
}

/* Encodes the one whole frame in 'pending' and passes the packet on. */
static int opus_emit(struct media_enc *e, media_enc_output_fn out, void *opaque)
{
	struct opus_priv *o = e->priv;
	opus_int32 n = opus_encode(o->enc, o->pending, o->frame_samples, o->packet, OPUS_MAX_PACKET);
	if (n < 0) {
		snprintf(e->err, sizeof(e->err), "libopus: %s", opus_strerror(n));
		return -1;
	}
	struct media_enc_packet ep = {
		.data = buf_new_copy(o->packet, (size_t)n),
		.pts_ns = o->pending_pts_ns,
		.duration_ns = OPUS_FRAME_MS * TIME_NS_PER_MS,
		.keyframe = true,
	};
	if (!ep.data) {
		util_strlcpy(e->err, "out of memory", sizeof(e->err));
		return -1;
	}
	o->pending_samples = 0;
	o->pending_pts_ns += OPUS_FRAME_MS * TIME_NS_PER_MS;
	return out(opaque, &ep);
}

/* Cuts the incoming samples into 20 ms frames. A jump in the input
 * timestamps (a pause, or lost input) starts a new frame at the new time:
 * the partial frame is padded with silence and sent first. */
static int opus_encode_frames(struct media_enc *e, const struct buf *frame, int samples,
			      int64_t pts_ns, bool force_keyframe, media_enc_output_fn out,
			      void *opaque)
{
	struct opus_priv *o = e->priv;
	int ch = o->channels;
	int r;
	(void)force_keyframe;
	if (!frame) {
		if (o->pending_samples > 0) {
			memset(o->pending + (size_t)o->pending_samples * ch, 0,
			       (size_t)(o->frame_samples - o->pending_samples) * ch * sizeof(int16_t));
			return opus_emit(e, out, opaque);
		}
		return 0;
	}
	if ((size_t)samples * ch * sizeof(int16_t) > frame->size) {
		util_strlcpy(e->err, "short audio buffer", sizeof(e->err));
		return -1;
	}
	int64_t expected = o->pending_pts_ns +
		(int64_t)o->pending_samples * TIME_NS_PER_SEC / o->sample_rate;
	if (o->pending_samples == 0) {
		o->pending_pts_ns = pts_ns;
	} else if (pts_ns - expected > 2 * TIME_NS_PER_MS || expected - pts_ns > 2 * TIME_NS_PER_MS) {
		memset(o->pending + (size_t)o->pending_samples * ch, 0,
		       (size_t)(o->frame_samples - o->pending_samples) * ch * sizeof(int16_t));
		if ((r = opus_emit(e, out, opaque)) < 0)
			return r;
		o->pending_pts_ns = pts_ns;
	}
	const int16_t *in = (const int16_t *)frame->data;
	while (samples > 0) {
		int take = o->frame_samples - o->pending_samples;
		if (take > samples)
			take = samples;
		memcpy(o->pending + (size_t)o->pending_samples * ch, in, (size_t)take * ch * sizeof(int16_t));
		o->pending_samples += take;
		in += (size_t)take * ch;
		samples -= take;
		if (o->pending_samples == o->frame_samples && (r = opus_emit(e, out, opaque)) < 0)
			return r;
	}
	return 0;
}

static void opus_close(struct media_enc *e)
{
	struct opus_priv *o = e->priv;
	if (!o)
		return;
	if (o->enc)
		opus_encoder_destroy(o->enc);
	free(o->pending);
	free(o);
	e->priv = NULL;
}

const struct media_enc_driver media_enc_opus = {
	.name = "opus",
	.kind = MEDIA_KIND_AUDIO,
	.codec = MEDIA_CODEC_OPUS,
	.open = opus_open,
	.encode = opus_encode_frames,
	.close = opus_close,
};
