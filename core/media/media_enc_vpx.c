/* media_enc_vpx: the VP8 and VP9 encoder drivers (libvpx, realtime). */
#include "media_enc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libyuv/scale.h>
#include <vpx/vp8cx.h>
#include <vpx/vpx_encoder.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"

static struct log_handle log_vpx = LOG_HANDLE("media/vpx");

struct vpx_priv {
	vpx_codec_ctx_t ctx;
	bool ctx_open;
	bool vp9;
	vpx_codec_iface_t *iface;
	vpx_codec_enc_cfg_t cfg;
	unsigned threads_full;     /* g_threads asked for; one when short of CPU */
	bool dense;                /* normal speed is the fastest */
	vpx_image_t img;
	int width, height, fps;    /* what frames come at */
	int64_t frame_ns;
	struct media_enc_level level;
	uint8_t *scaled;           /* the frame at the coded size when scaling */
	bool force_key;            /* the coded size changed */
	vpx_codec_pts_t next_pts;  /* in frames (timebase 1/fps) */
	int64_t last_in_pts_ns;
};

/* Speed settings. A negative cpu-used fixes the speed; a positive one lets
 * libvpx pick it from how long frames take, which makes the CPU bill and the
 * quality depend on the machine's load. VP8's quality speed is the fixed
 * realtime speed 6: on hard content (grain, detail, motion) at the preset
 * bitrates it gives the PSNR/SSIM of libvpx's adaptive default (what
 * `ffmpeg -deadline realtime` uses, speed 4 or more) at about 0.6-0.8x its
 * CPU. Its dense speed 16 takes about 0.57x the CPU of speed 6 (the node's
 * ledger counts 1.75x for the quality speed, media_preset.c) but loses
 * 0.5-1.5 dB on such content. A recording runs at the quality speed unless
 * the ledger admitted it dense (media_enc_params.dense: the node was too
 * loaded for its quality cost); the degradation ladder switches to the dense
 * speed when the CPU is short. VP9 likewise: 8, and 9 dense or short.
 * scripts/bench.d/10-media measures. */
#define VPX_VP8_CPUUSED (-6)
#define VPX_VP8_CPUUSED_FAST (-16)
#define VPX_VP9_CPUUSED 8
#define VPX_VP9_CPUUSED_FAST 9

static int vpx_cpuused(const struct vpx_priv *v, bool fast)
{
	fast |= v->dense;
	if (v->vp9)
		return fast ? VPX_VP9_CPUUSED_FAST : VPX_VP9_CPUUSED;
	return fast ? VPX_VP8_CPUUSED_FAST : VPX_VP8_CPUUSED;
}

/* Opens the libvpx context from v->cfg and sets the controls for v->level. */
static int vpx_start(struct vpx_priv *v, char *err, size_t errlen)
{
	const vpx_codec_enc_cfg_t *cfg = &v->cfg;
	vpx_codec_err_t rc = vpx_codec_enc_init(&v->ctx, v->iface, cfg, 0);
	if (rc != VPX_CODEC_OK) {
		snprintf(err, errlen, "libvpx init: %s", vpx_codec_err_to_string(rc));
		return -1;
	}
	v->ctx_open = true;
	if (v->vp9) {
		vpx_codec_control(&v->ctx, VP8E_SET_CPUUSED, vpx_cpuused(v, v->level.fast));
		vpx_codec_control(&v->ctx, VP9E_SET_ROW_MT, 1);
		vpx_codec_control(&v->ctx, VP9E_SET_TILE_COLUMNS, cfg->g_w >= 1280 ? 2 : 1);
		vpx_codec_control(&v->ctx, VP9E_SET_AQ_MODE, 3);
	} else {
		vpx_codec_control(&v->ctx, VP8E_SET_CPUUSED, vpx_cpuused(v, v->level.fast));
		vpx_codec_control(&v->ctx, VP8E_SET_TOKEN_PARTITIONS, cfg->g_threads > 1 ? 2 : 0);
		vpx_codec_control(&v->ctx, VP8E_SET_STATIC_THRESHOLD, 1);
		vpx_codec_control(&v->ctx, VP8E_SET_NOISE_SENSITIVITY, 0);
	}
	/* Keyframes take what they need (a recording has no network to
	 * protect): capping them at 3x a frame cost 0.15 dB on grainy content. */
	vpx_codec_control(&v->ctx, VP8E_SET_MAX_INTRA_BITRATE_PCT, v->vp9 ? 300 : 0);
	return 0;
}

static int vpx_open_common(struct media_enc *e, const struct media_enc_params *p,
			   vpx_codec_iface_t *iface, bool vp9, char *err, size_t errlen)
{
	struct vpx_priv *v = calloc(1, sizeof(*v));
	vpx_codec_enc_cfg_t cfg;
	vpx_codec_err_t rc;

	if (!v) {
		util_strlcpy(err, "out of memory", errlen);
		return -1;
	}
	e->priv = v;
	if (p->width < 16 || p->height < 16 || p->width > 8192 || p->height > 8192 ||
	    (p->width & 1) || (p->height & 1) || p->fps < 1 || p->fps > 240 || p->bitrate_bps < 10000) {
		snprintf(err, errlen, "unsupported video parameters %dx%d@%d %d bps",
			 p->width, p->height, p->fps, p->bitrate_bps);
		goto fail;
	}
	rc = vpx_codec_enc_config_default(iface, &cfg, 0);
	if (rc != VPX_CODEC_OK) {
		snprintf(err, errlen, "libvpx: %s", vpx_codec_err_to_string(rc));
		goto fail;
	}
	cfg.g_w = (unsigned)p->width;
	cfg.g_h = (unsigned)p->height;
	cfg.g_timebase.num = 1;
	cfg.g_timebase.den = p->fps;
	cfg.g_threads = (unsigned)(p->threads > 0 ? p->threads : 1);
	cfg.g_lag_in_frames = 0;
	cfg.g_error_resilient = 0;
	cfg.g_pass = VPX_RC_ONE_PASS;
	cfg.rc_end_usage = VPX_CBR;
	cfg.rc_target_bitrate = (unsigned)(p->bitrate_bps / 1000);
	/* The whole quantizer range: capped at 56, grainy or detailed content
	 * cannot be brought down to the target and CBR overshoots by a third. */
	cfg.rc_min_quantizer = 4;
	cfg.rc_max_quantizer = 63;
	cfg.rc_undershoot_pct = 10;
	cfg.rc_overshoot_pct = 10;
	/* A 1 s buffer, starting three quarters full and aiming at five sixths:
	 * at the same speed this gives the same file as ffmpeg's libvpx with
	 * -bufsize of one second's bits (scripts/bench.d/10-media); 600/800 ms
	 * lost 0.1 dB on the test pattern. */
	cfg.rc_buf_sz = 1000;
	cfg.rc_buf_initial_sz = 750;
	cfg.rc_buf_optimal_sz = 833;
	cfg.rc_dropframe_thresh = 0;
	cfg.kf_mode = VPX_KF_AUTO;
	cfg.kf_min_dist = 0;
	cfg.kf_max_dist = (unsigned)(p->keyframe_interval > 0 ? p->keyframe_interval : 2 * p->fps);
	v->vp9 = vp9;
	v->dense = p->dense;
	v->iface = iface;
	v->cfg = cfg;
	v->threads_full = cfg.g_threads;
	v->level = (struct media_enc_level){ .fps_div = 1, .scale_div = 1 };
	if (vpx_start(v, err, errlen) < 0)
		goto fail;
	v->width = p->width;
	v->height = p->height;
	v->fps = p->fps;
	v->frame_ns = TIME_NS_PER_SEC / p->fps;
	v->last_in_pts_ns = -1;
	LOG_DEBUG(&log_vpx, "%s %dx%d@%d %d kbps, keyframe every <= %u frames, %u threads, %s speed",
		  vp9 ? "vp9" : "vp8", p->width, p->height, p->fps, p->bitrate_bps / 1000,
		  cfg.kf_max_dist, cfg.g_threads, p->dense ? "dense" : "quality");
	return 0;
fail:
	return -1;
}

static int vpx_open_vp8(struct media_enc *e, const struct media_enc_params *p, char *err, size_t errlen)
{
	return vpx_open_common(e, p, vpx_codec_vp8_cx(), false, err, errlen);
}

static int vpx_open_vp9(struct media_enc *e, const struct media_enc_params *p, char *err, size_t errlen)
{
	return vpx_open_common(e, p, vpx_codec_vp9_cx(), true, err, errlen);
}

/* Hands every packet libvpx has ready to 'out', stamped with 'pts_ns' (the
 * encoder runs without lag, so what comes out belongs to the frame just
 * put in). */
static int vpx_drain(struct media_enc *e, int64_t pts_ns, media_enc_output_fn out, void *opaque)
{
	struct vpx_priv *v = e->priv;
	vpx_codec_iter_t iter = NULL;
	const vpx_codec_cx_pkt_t *pkt;
	while ((pkt = vpx_codec_get_cx_data(&v->ctx, &iter)) != NULL) {
		if (pkt->kind != VPX_CODEC_CX_FRAME_PKT)
			continue;
		struct media_enc_packet ep = {
			.data = buf_new_copy(pkt->data.frame.buf, pkt->data.frame.sz),
			.pts_ns = pts_ns,
			.duration_ns = v->frame_ns * v->level.fps_div,
			.keyframe = (pkt->data.frame.flags & VPX_FRAME_IS_KEY) != 0,
		};
		if (!ep.data) {
			util_strlcpy(e->err, "out of memory", sizeof(e->err));
			return -1;
		}
		int r = out(opaque, &ep);
		if (r < 0)
			return r;
	}
	return 0;
}

static int vpx_encode(struct media_enc *e, const struct buf *frame, int samples, int64_t pts_ns,
		      bool force_keyframe, media_enc_output_fn out, void *opaque)
{
	struct vpx_priv *v = e->priv;
	vpx_codec_err_t rc;
	if (!frame) {
		rc = vpx_codec_encode(&v->ctx, NULL, 0, 1, 0, VPX_DL_REALTIME);
		if (rc != VPX_CODEC_OK) {
			snprintf(e->err, sizeof(e->err), "libvpx flush: %s", vpx_codec_error(&v->ctx));
			return -1;
		}
		return vpx_drain(e, v->last_in_pts_ns, out, opaque);
	}
	size_t need = (size_t)v->width * v->height * 3 / 2;
	if (frame->size < need) {
		snprintf(e->err, sizeof(e->err), "short video frame (%zu of %zu bytes)", frame->size, need);
		return -1;
	}
	const uint8_t *data = frame->data;
	if (v->scaled) {
		int w = (int)v->cfg.g_w, h = (int)v->cfg.g_h;
		int cw = (v->width + 1) / 2, ch = (v->height + 1) / 2;
		uint8_t *y = v->scaled, *u = y + (size_t)w * h, *vv = u + (size_t)(w / 2) * (h / 2);
		if (I420Scale(data, v->width, data + (size_t)v->width * v->height, cw,
			      data + (size_t)v->width * v->height + (size_t)cw * ch, cw,
			      v->width, v->height, y, w, u, w / 2, vv, w / 2, w, h, kFilterBilinear) != 0) {
			util_strlcpy(e->err, "libyuv: cannot scale frame", sizeof(e->err));
			return -1;
		}
		data = v->scaled;
	}
	if (!vpx_img_wrap(&v->img, VPX_IMG_FMT_I420, v->cfg.g_w, v->cfg.g_h, 1, (unsigned char *)data)) {
		util_strlcpy(e->err, "libvpx: cannot wrap frame", sizeof(e->err));
		return -1;
	}
	/* Timestamps in frames of the nominal rate, strictly increasing. */
	vpx_codec_pts_t pts = (vpx_codec_pts_t)((pts_ns * v->fps + TIME_NS_PER_SEC / 2) / TIME_NS_PER_SEC);
	if (pts < v->next_pts)
		pts = v->next_pts;
	v->next_pts = pts + v->level.fps_div;
	v->last_in_pts_ns = pts_ns;
	vpx_enc_frame_flags_t flags = force_keyframe || v->force_key ? VPX_EFLAG_FORCE_KF : 0;
	v->force_key = false;
	rc = vpx_codec_encode(&v->ctx, &v->img, pts, (unsigned long)v->level.fps_div, flags, VPX_DL_REALTIME);
	if (rc != VPX_CODEC_OK) {
		snprintf(e->err, sizeof(e->err), "libvpx encode: %s", vpx_codec_error(&v->ctx));
		return -1;
	}
	(void)samples;
	return vpx_drain(e, pts_ns, out, opaque);
}

static void vpx_close(struct media_enc *e)
{
	struct vpx_priv *v = e->priv;
	if (!v)
		return;
	if (v->ctx_open)
		vpx_codec_destroy(&v->ctx);
	free(v->scaled);
	free(v);
	e->priv = NULL;
}

static int vpx_set_level(struct media_enc *e, const struct media_enc_level *l)
{
	struct vpx_priv *v = e->priv;
	if ((l->fps_div != 1 && l->fps_div != 2) || (l->scale_div != 1 && l->scale_div != 2)) {
		util_strlcpy(e->err, "unsupported encoder level", sizeof(e->err));
		return -1;
	}
	/* Short of CPU, one thread: libvpx's VP8 threads wait for each other
	 * by yielding, which collapses when the cores are oversubscribed. The
	 * thread count is fixed at init, so the context is opened again (its
	 * first frame is a keyframe). */
	unsigned threads = l->fast ? 1 : v->threads_full;
	if (threads != v->cfg.g_threads) {
		v->cfg.g_threads = threads;
		vpx_codec_destroy(&v->ctx);
		v->ctx_open = false;
		v->level.fast = l->fast;
		if (vpx_start(v, e->err, sizeof(e->err)) < 0)
			return -1;
	}
	if (l->fast != v->level.fast) {
		if (vpx_codec_control(&v->ctx, VP8E_SET_CPUUSED, vpx_cpuused(v, l->fast)) != VPX_CODEC_OK) {
			snprintf(e->err, sizeof(e->err), "libvpx speed: %s", vpx_codec_error(&v->ctx));
			return -1;
		}
	}
	if (l->scale_div != v->level.scale_div) {
		/* Half the size, kept even and at least 16 pixels. */
		unsigned w = (unsigned)v->width, h = (unsigned)v->height;
		if (l->scale_div == 2) {
			w = (unsigned)(v->width / 2) & ~1u;
			h = (unsigned)(v->height / 2) & ~1u;
			if (w < 16 || h < 16) {
				util_strlcpy(e->err, "frame too small to scale down", sizeof(e->err));
				return -1;
			}
		}
		uint8_t *scaled = NULL;
		if (l->scale_div == 2 && !(scaled = malloc((size_t)w * h * 3 / 2))) {
			util_strlcpy(e->err, "out of memory", sizeof(e->err));
			return -1;
		}
		vpx_codec_enc_cfg_t cfg = v->cfg;
		cfg.g_w = w;
		cfg.g_h = h;
		if (vpx_codec_enc_config_set(&v->ctx, &cfg) != VPX_CODEC_OK) {
			snprintf(e->err, sizeof(e->err), "libvpx resize to %ux%u: %s", w, h, vpx_codec_error(&v->ctx));
			free(scaled);
			return -1;
		}
		v->cfg = cfg;
		free(v->scaled);
		v->scaled = scaled;
		v->force_key = true;
	}
	v->level = *l;
	LOG_DEBUG(&log_vpx, "level: %s speed, %s, %ux%u", l->fast ? "fastest" : "normal",
		  l->fps_div == 2 ? "every other frame" : "every frame", v->cfg.g_w, v->cfg.g_h);
	return 0;
}

const struct media_enc_driver media_enc_vp8 = {
	.name = "vp8",
	.kind = MEDIA_KIND_VIDEO,
	.codec = MEDIA_CODEC_VP8,
	.open = vpx_open_vp8,
	.encode = vpx_encode,
	.close = vpx_close,
	.set_level = vpx_set_level,
};

const struct media_enc_driver media_enc_vp9 = {
	.name = "vp9",
	.kind = MEDIA_KIND_VIDEO,
	.codec = MEDIA_CODEC_VP9,
	.open = vpx_open_vp9,
	.encode = vpx_encode,
	.close = vpx_close,
	.set_level = vpx_set_level,
};
