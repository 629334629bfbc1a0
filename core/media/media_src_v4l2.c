/* media_src_v4l2: the camera source: a V4L2 capture device, read by mmap
 * streaming, converted to I420 (libyuv; MJPEG through libjpeg-turbo), and
 * optionally a microphone (an ALSA PCM, media_alsa.h) as a second stream
 * read on the same thread.
 *
 * Args:
 *   device=PATH     /dev/videoN or a stable link (/dev/v4l/by-id/...), resolved
 *                   when the source opens (and again at every reopen)
 *   audio=PCM       an ALSA capture PCM (hw:1,0, plughw:CARD=X,DEV=0, a named
 *                   PCM; its commas stay in the name, media_alsa_arg_pcm);
 *                   48 kHz at the pipeline's channel count, drift-corrected
 *                   (media_mic, media_alsa.h)
 *   format=NAME     yuyv | nv12 | i420 | mjpeg: capture that format only
 *   size=WxH, fps=N ask the camera for this mode instead of the preset's
 *                   (a smaller or slower one than the preset: the recording
 *                   still fits in the preset's box)
 *
 * The mode is chosen among the camera's offer (media_v4l2_choose): the
 * preset's size and rate or the nearest, raw formats before MJPEG when they
 * reach the rate. Frames are recorded at the camera's size, scaled down
 * into the preset's box when larger. Timestamps are the driver's buffer
 * timestamps (CLOCK_MONOTONIC, as the microphone's), from one zero taken at
 * open.
 *
 * Faults: a missing device at open is -ENOENT, one in use -EBUSY (the
 * recorder answers 503 / 409). A device that goes away while recording
 * (ENODEV, POLLERR) is closed and reopened every 500 ms; meanwhile the
 * source reports itself stalled (media_source_stats.stalled), the
 * microphone goes on, and the first frame after the return asks the
 * encoder for a keyframe. The microphone reopens itself (media_mic). */
#include "media_source.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/videodev2.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "media_v4l2.h"
#ifdef MEDIA_HAVE_ALSA
#include "media_alsa.h"
#endif

static struct log_handle log_v4l2 = LOG_HANDLE("media/src_v4l2");

#define V4L2_NBUF 4
#define V4L2_RETRY_NS (500 * TIME_NS_PER_MS)
#define V4L2_FIRST_FRAME_NS (3 * TIME_NS_PER_SEC) /* MJPEG: wait this long for a frame to size */
#define V4L2_LOG_EVERY_NS (10 * TIME_NS_PER_SEC)

struct v4l2_buffer_map {
	void *start;
	size_t len;
};

struct v4l2_priv {
	char device[PATH_MAX];   /* as given */
	char path[PATH_MAX];     /* the node it resolved to */
	char audio_pcm[128];
	struct media_v4l2_want want;
	int fd;                  /* -1 while the camera is away */
	struct v4l2_buffer_map bufs[V4L2_NBUF];
	int nbufs;
	bool streaming;

	/* The capture as negotiated at open (reopens ask the same). */
	struct media_v4l2_mode chosen;   /* what media_v4l2_choose picked */
	uint32_t fourcc;
	int cam_w, cam_h;                /* what the camera delivers */
	int fps_num, fps_den;            /* the rate it agreed to (G_PARM) */
	int out_w, out_h;                /* what is recorded */
	int box_w, box_h;                /* the preset's size: the recording fits in it */
	char card[64], driver[32], bus[64];
	struct media_v4l2_conv conv;
	struct media_v4l2_clock clock;
	int video_stream, audio_stream;
	int64_t frame_ns;

	/* Faults */
	bool video_lost;
	int64_t video_retry_ns;
	bool need_key;
	uint32_t reopens;
	uint32_t missed;         /* bad frames since the last good one (pkt->missed) */
	int64_t last_seq;        /* the driver's frame count of the last frame, -1 after an open */
	uint64_t camera_dropped; /* frames the driver counted but never delivered (sequence gaps) */
	uint64_t frames, frames_bad, frames_resized;
	int64_t last_bad_log_ns;
	bool fallback_logged;
	int channels;
	int64_t duration_ns;     /* >0: EOF after this much media (edgerec record --duration) */
#ifdef MEDIA_HAVE_ALSA
	struct media_mic *mic;
#endif
};

static int v4l2_xioctl(int fd, unsigned long req, void *arg)
{
	int r;
	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r;
}

/* Maps an errno of open/ioctl to the codes media_source.h names. */
static int v4l2_code(int e)
{
	return e == EBUSY ? -EBUSY : (e == ENOENT || e == ENODEV || e == ENXIO) ? -ENOENT : -EINVAL;
}

static void v4l2_close_device(struct v4l2_priv *v)
{
	if (v->fd < 0)
		return;
	if (v->streaming) {
		enum v4l2_buf_type t = V4L2_BUF_TYPE_VIDEO_CAPTURE;
		v4l2_xioctl(v->fd, VIDIOC_STREAMOFF, &t);
		v->streaming = false;
	}
	for (int i = 0; i < v->nbufs; i++)
		if (v->bufs[i].start && v->bufs[i].start != MAP_FAILED)
			munmap(v->bufs[i].start, v->bufs[i].len);
	v->nbufs = 0;
	close(v->fd);
	v->fd = -1;
}

/* Sets the format: at open the chosen mode, at a reopen the same format and
 * size again. Fills cam_w/cam_h/fourcc/stride. */
static int v4l2_set_format(struct v4l2_priv *v, const struct media_v4l2_mode *m, int *stride, char *err,
			   size_t errlen)
{
	struct v4l2_format f;
	memset(&f, 0, sizeof(f));
	f.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	f.fmt.pix.pixelformat = m->fourcc;
	f.fmt.pix.width = (uint32_t)m->width;
	f.fmt.pix.height = (uint32_t)m->height;
	f.fmt.pix.field = V4L2_FIELD_NONE;
	if (v4l2_xioctl(v->fd, VIDIOC_S_FMT, &f) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot set the capture format: %s%s", v->path, strerror(e),
			 e == EBUSY ? " (another program captures from it)" : "");
		return e == EBUSY ? -EBUSY : -EINVAL;
	}
	char name[5];
	if (!media_v4l2_format_known(f.fmt.pix.pixelformat) || f.fmt.pix.width < 16 || f.fmt.pix.height < 16 ||
	    f.fmt.pix.width > 8192 || f.fmt.pix.height > 8192) {
		snprintf(err, errlen, "%s: the camera answered %s %ux%u, which the source cannot take", v->path,
			 media_v4l2_format_name(f.fmt.pix.pixelformat, name), f.fmt.pix.width, f.fmt.pix.height);
		return -EINVAL;
	}
	v->fourcc = f.fmt.pix.pixelformat;
	v->cam_w = (int)f.fmt.pix.width;
	v->cam_h = (int)f.fmt.pix.height;
	*stride = (int)f.fmt.pix.bytesperline;

	struct v4l2_streamparm sp;
	memset(&sp, 0, sizeof(sp));
	sp.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	sp.parm.capture.timeperframe.numerator = (uint32_t)m->fps_den;
	sp.parm.capture.timeperframe.denominator = (uint32_t)m->fps_num;
	v4l2_xioctl(v->fd, VIDIOC_S_PARM, &sp); /* not every driver can */
	memset(&sp, 0, sizeof(sp));
	sp.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	if (v4l2_xioctl(v->fd, VIDIOC_G_PARM, &sp) == 0 && sp.parm.capture.timeperframe.numerator &&
	    sp.parm.capture.timeperframe.denominator &&
	    sp.parm.capture.timeperframe.denominator / sp.parm.capture.timeperframe.numerator <= 240) {
		v->fps_num = (int)sp.parm.capture.timeperframe.denominator;
		v->fps_den = (int)sp.parm.capture.timeperframe.numerator;
	} else {
		v->fps_num = m->fps_num;
		v->fps_den = m->fps_den;
	}
	return 0;
}

/* Requests, maps and queues the buffers and starts streaming. */
static int v4l2_start_streaming(struct v4l2_priv *v, char *err, size_t errlen)
{
	struct v4l2_requestbuffers rb = { .count = V4L2_NBUF, .type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
					   .memory = V4L2_MEMORY_MMAP };
	if (v4l2_xioctl(v->fd, VIDIOC_REQBUFS, &rb) < 0 || rb.count < 2) {
		int e = rb.count < 2 && errno == 0 ? ENOMEM : errno;
		snprintf(err, errlen, "%s: cannot get capture buffers: %s", v->path, strerror(e));
		return e == EBUSY ? -EBUSY : -EINVAL;
	}
	v->nbufs = (int)(rb.count < V4L2_NBUF ? rb.count : V4L2_NBUF);
	for (int i = 0; i < v->nbufs; i++) {
		struct v4l2_buffer b = { .index = (uint32_t)i, .type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
					 .memory = V4L2_MEMORY_MMAP };
		if (v4l2_xioctl(v->fd, VIDIOC_QUERYBUF, &b) < 0) {
			snprintf(err, errlen, "%s: QUERYBUF: %s", v->path, strerror(errno));
			return v4l2_code(errno);
		}
		v->bufs[i].len = b.length;
		v->bufs[i].start = mmap(NULL, b.length, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, b.m.offset);
		if (v->bufs[i].start == MAP_FAILED) {
			v->bufs[i].start = NULL;
			snprintf(err, errlen, "%s: mmap: %s", v->path, strerror(errno));
			return -EINVAL;
		}
		if (v4l2_xioctl(v->fd, VIDIOC_QBUF, &b) < 0) {
			snprintf(err, errlen, "%s: QBUF: %s", v->path, strerror(errno));
			return v4l2_code(errno);
		}
	}
	enum v4l2_buf_type t = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	if (v4l2_xioctl(v->fd, VIDIOC_STREAMON, &t) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot start streaming: %s", v->path, strerror(e));
		return v4l2_code(e);
	}
	v->streaming = true;
	v->last_seq = -1;
	return 0;
}

/* MJPEG: the frames' own size may differ from S_FMT's answer (some UVC
 * cameras). Waits for the first frame and takes its size. */
static void v4l2_size_from_first_frame(struct v4l2_priv *v)
{
	int64_t deadline = time_mono_ns() + V4L2_FIRST_FRAME_NS;
	while (time_mono_ns() < deadline) {
		struct pollfd pfd = { .fd = v->fd, .events = POLLIN };
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		struct v4l2_buffer b = { .type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP };
		if (v4l2_xioctl(v->fd, VIDIOC_DQBUF, &b) < 0) {
			if (errno == EAGAIN)
				continue;
			return;
		}
		struct media_v4l2_conv probe;
		char err[128];
		uint8_t *out = malloc(16 * 16 * 3 / 2);
		bool sized = false;
		/* Decode to learn whether it decodes at all; the size comes from the header. */
		if (out && media_v4l2_conv_init(&probe, MEDIA_V4L2_MJPG, v->cam_w, v->cam_h, 0, 16, 16, err,
						sizeof(err)) == 0) {
			if (b.index < (uint32_t)v->nbufs &&
			    media_v4l2_convert(&probe, v->bufs[b.index].start,
					       b.bytesused < v->bufs[b.index].len ? b.bytesused : v->bufs[b.index].len, out,
					       err, sizeof(err)) == 0) {
				v->cam_w = probe.last_width;
				v->cam_h = probe.last_height;
				sized = true;
			}
			media_v4l2_conv_deinit(&probe);
		}
		free(out);
		v4l2_xioctl(v->fd, VIDIOC_QBUF, &b);
		if (sized)
			return;
	}
}

/* Opens the camera. At the first open ('first') the mode is chosen and the
 * recorded size fixed; a reopen asks for the same format and size and
 * converts whatever comes to the recorded size. Returns 0 or a negative
 * code (-ENOENT, -EBUSY, -EINVAL) with 'err'. */
static int v4l2_open_device(struct v4l2_priv *v, bool first, char *err, size_t errlen)
{
	struct media_v4l2_mode *modes = NULL;
	int rc, stride = 0;
	if (media_v4l2_resolve(v->device, v->path, sizeof(v->path)) < 0) {
		snprintf(err, errlen, "camera %s not found", v->device);
		return -ENOENT;
	}
	v->fd = open(v->path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (v->fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot open camera %s: %s", v->path, strerror(e));
		return v4l2_code(e);
	}
	struct v4l2_capability cap;
	memset(&cap, 0, sizeof(cap));
	if (v4l2_xioctl(v->fd, VIDIOC_QUERYCAP, &cap) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s is not a V4L2 device: %s", v->path, strerror(e));
		rc = e == ENODEV ? -ENOENT : -EINVAL;
		goto fail;
	}
	uint32_t caps = cap.capabilities & V4L2_CAP_DEVICE_CAPS ? cap.device_caps : cap.capabilities;
	if (!(caps & V4L2_CAP_VIDEO_CAPTURE) || !(caps & V4L2_CAP_STREAMING)) {
		snprintf(err, errlen, "%s (%.32s) is not a camera with streaming capture", v->path, (const char *)cap.card);
		rc = -EINVAL;
		goto fail;
	}
	snprintf(v->card, sizeof(v->card), "%.*s", (int)sizeof(cap.card), (const char *)cap.card);
	snprintf(v->driver, sizeof(v->driver), "%.*s", (int)sizeof(cap.driver), (const char *)cap.driver);
	snprintf(v->bus, sizeof(v->bus), "%.*s", (int)sizeof(cap.bus_info), (const char *)cap.bus_info);

	struct media_v4l2_want want = v->want;
	if (!first) {
		want.fourcc = v->chosen.fourcc;
		want.width = v->chosen.width;
		want.height = v->chosen.height;
	}
	int n = media_v4l2_enum_modes(v->fd, &want, &modes);
	struct media_v4l2_mode m;
	if (n <= 0 || media_v4l2_choose(modes, n, &want, &m) < 0) {
		char name[5];
		snprintf(err, errlen, "camera %s (%s) offers no mode the source takes (%s%s)", v->path, v->card,
			 want.fourcc ? "format " : "YUYV, NV12, YU12 or MJPEG",
			 want.fourcc ? media_v4l2_format_name(want.fourcc, name) : "");
		rc = -EINVAL;
		goto fail;
	}
	if ((rc = v4l2_set_format(v, &m, &stride, err, errlen)) < 0 ||
	    (rc = v4l2_start_streaming(v, err, errlen)) < 0)
		goto fail;
	if (first) {
		v->chosen = m;
		if (v->fourcc == MEDIA_V4L2_MJPG)
			v4l2_size_from_first_frame(v);
		media_v4l2_fit(v->cam_w, v->cam_h, v->box_w, v->box_h, &v->out_w, &v->out_h);
	}
	media_v4l2_conv_deinit(&v->conv);
	if (media_v4l2_conv_init(&v->conv, v->fourcc, v->cam_w, v->cam_h, stride, v->out_w, v->out_h, err,
				 errlen) < 0) {
		rc = -EINVAL;
		goto fail;
	}
	free(modes);
	return 0;
fail:
	free(modes);
	v4l2_close_device(v);
	return rc;
}

#ifdef MEDIA_HAVE_ALSA
static int v4l2_open_audio(struct v4l2_priv *v, char *err, size_t errlen)
{
	struct media_alsa_params ap = { .device = v->audio_pcm, .sample_rate = 48000, .channels = v->channels };
	return media_mic_open(&v->mic, &ap, v->clock.zero_ns, err, errlen);
}
#endif

static void v4l2_close(struct media_source *src)
{
	struct v4l2_priv *v = src->priv;
	if (!v)
		return;
	v4l2_close_device(v);
	media_v4l2_conv_deinit(&v->conv);
#ifdef MEDIA_HAVE_ALSA
	media_mic_close(v->mic);
#endif
	free(v);
	src->priv = NULL;
}

static int v4l2_open(struct media_source *src, const struct media_source_params *p, char *err, size_t errlen)
{
	char fmt[16] = "";
	int rc;
	struct v4l2_priv *v = calloc(1, sizeof(*v));
	if (!v) {
		util_strlcpy(err, "out of memory", errlen);
		return -ENOMEM;
	}
	src->priv = v;
	v->fd = -1;
	v->audio_stream = -1;
	v->channels = p->channels > 0 ? p->channels : 2;
	v->duration_ns = p->duration_ns;
	if (!media_source_arg(p->args, "device", v->device, sizeof(v->device)) || !v->device[0]) {
		util_strlcpy(err, "the v4l2 source needs device=PATH (e.g. /dev/video0 or /dev/v4l/by-id/...)", errlen);
		rc = -EINVAL;
		goto fail;
	}
	v->want = (struct media_v4l2_want){ .width = p->width, .height = p->height, .fps = p->fps };
	v->box_w = p->width;
	v->box_h = p->height;
	char size[32] = "", rate[16] = "";
	if (media_source_arg(p->args, "size", size, sizeof(size)) &&
	    (sscanf(size, "%dx%d", &v->want.width, &v->want.height) != 2 || v->want.width < 16 || v->want.height < 16 ||
	     v->want.width > 8192 || v->want.height > 8192)) {
		snprintf(err, errlen, "size=%s: WIDTHxHEIGHT, 16..8192", size);
		rc = -EINVAL;
		goto fail;
	}
	if (media_source_arg(p->args, "fps", rate, sizeof(rate)) &&
	    ((v->want.fps = atoi(rate)) < 1 || v->want.fps > 240)) {
		snprintf(err, errlen, "fps=%s: 1..240", rate);
		rc = -EINVAL;
		goto fail;
	}
	if (media_source_arg(p->args, "format", fmt, sizeof(fmt)) && !(v->want.fourcc = media_v4l2_format_parse(fmt))) {
		snprintf(err, errlen, "unknown format=%s (yuyv, nv12, i420 or mjpeg)", fmt);
		rc = -EINVAL;
		goto fail;
	}
#ifdef MEDIA_HAVE_ALSA
	/* a PCM name keeps its commas: audio=hw:1,0 */
	bool audio = media_alsa_arg_pcm(p->args, "audio", v->audio_pcm, sizeof(v->audio_pcm)) && v->audio_pcm[0];
#else
	bool audio = media_source_arg(p->args, "audio", v->audio_pcm, sizeof(v->audio_pcm)) && v->audio_pcm[0];
#endif
#ifndef MEDIA_HAVE_ALSA
	if (audio) {
		util_strlcpy(err, "audio= needs the ALSA capture module, which this build lacks", errlen);
		rc = -EINVAL;
		goto fail;
	}
#endif
	/* The zero both streams count from, before either device starts. */
	media_v4l2_clock_init(&v->clock, time_mono_ns());
	if ((rc = v4l2_open_device(v, true, err, errlen)) < 0)
		goto fail;
#ifdef MEDIA_HAVE_ALSA
	if (audio && (rc = v4l2_open_audio(v, err, errlen)) < 0)
		goto fail;
#endif
	v->frame_ns = v->fps_num > 0 ? (int64_t)v->fps_den * TIME_NS_PER_SEC / v->fps_num : 0;
	media_v4l2_clock_set_rate(&v->clock, v->fps_num, v->fps_den);
	v->video_stream = src->nb_streams++;
	src->streams[v->video_stream] = (struct media_stream_info){
		.kind = MEDIA_KIND_VIDEO, .codec = MEDIA_CODEC_I420, .width = v->out_w, .height = v->out_h,
		.fps_num = v->fps_num, .fps_den = v->fps_den,
	};
	if (audio) {
		v->audio_stream = src->nb_streams++;
		src->streams[v->audio_stream] = (struct media_stream_info){
			.kind = MEDIA_KIND_AUDIO, .codec = MEDIA_CODEC_S16, .sample_rate = 48000, .channels = v->channels,
		};
	}
	char a[5], d[5];
	LOG_INFO(&log_v4l2, "%s (%s, %s): asked %dx%d@%d, chose %s %dx%d@%d/%d, camera delivers %s %dx%d@%d/%d, "
		 "recording %dx%d%s%s", v->path, v->card, v->driver, p->width, p->height, p->fps,
		 media_v4l2_format_name(v->chosen.fourcc, a), v->chosen.width, v->chosen.height, v->chosen.fps_num,
		 v->chosen.fps_den, media_v4l2_format_name(v->fourcc, d), v->cam_w, v->cam_h, v->fps_num, v->fps_den,
		 v->out_w, v->out_h, audio ? ", audio from " : "", audio ? v->audio_pcm : "");
	return 0;
fail:
	v4l2_close(src);
	return rc;
}

/* The camera went away: close it, say so, and try again from now on. */
static void v4l2_lost(struct v4l2_priv *v, const char *why)
{
	LOG_WARN(&log_v4l2, "%s: camera lost (%s); reopening every %lld ms, the recording goes on", v->path, why,
		 (long long)(V4L2_RETRY_NS / TIME_NS_PER_MS));
	v4l2_close_device(v);
	v->video_lost = true;
	v->video_retry_ns = time_mono_ns() + V4L2_RETRY_NS;
}

/* Reopens the camera when it was lost and its time has come. */
static void v4l2_retry(struct v4l2_priv *v, int64_t now)
{
	char err[256];
	if (v->video_lost && now >= v->video_retry_ns) {
		if (v4l2_open_device(v, false, err, sizeof(err)) == 0) {
			v->video_lost = false;
			v->need_key = true;
			v->reopens++;
			LOG_WARN(&log_v4l2, "%s: camera back (%s %dx%d), capture resumes", v->path, v->card, v->cam_w,
				 v->cam_h);
		} else {
			v->video_retry_ns = now + V4L2_RETRY_NS;
			LOG_DEBUG(&log_v4l2, "reopen: %s", err);
		}
	}
}

#ifdef MEDIA_HAVE_ALSA
/* One audio packet when the microphone has one: MEDIA_SOURCE_OK or _AGAIN. */
static int v4l2_read_audio(struct v4l2_priv *v, struct media_packet *pkt)
{
	if (!v->mic || media_mic_read(v->mic, pkt) != MEDIA_SOURCE_OK)
		return MEDIA_SOURCE_AGAIN;
	pkt->stream = v->audio_stream;
	return MEDIA_SOURCE_OK;
}
#endif

/* Dequeues one frame when there is one: MEDIA_SOURCE_OK with the packet,
 * _AGAIN (nothing, a bad frame dropped, or the camera lost) or _ERROR. */
static int v4l2_read_video(struct media_source *src, struct v4l2_priv *v, struct media_packet *pkt)
{
	struct v4l2_buffer b = { .type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = V4L2_MEMORY_MMAP };
	if (v->fd < 0)
		return MEDIA_SOURCE_AGAIN;
	if (v4l2_xioctl(v->fd, VIDIOC_DQBUF, &b) < 0) {
		if (errno == EAGAIN)
			return MEDIA_SOURCE_AGAIN;
		v4l2_lost(v, strerror(errno));
		return MEDIA_SOURCE_AGAIN;
	}
	int64_t now = time_mono_ns();
	if (b.index >= (uint32_t)v->nbufs) {
		snprintf(src->err, sizeof(src->err), "%.200s: the driver returned buffer %u of %d", v->path, b.index, v->nbufs);
		return MEDIA_SOURCE_ERROR;
	}
	char err[200];
	struct buf *out = NULL;
	size_t used = b.bytesused ? b.bytesused : v->bufs[b.index].len;
	if (used > v->bufs[b.index].len)
		used = v->bufs[b.index].len;
	if (!(b.flags & V4L2_BUF_FLAG_ERROR)) {
		out = buf_new((size_t)v->out_w * v->out_h * 3 / 2);
		if (out && media_v4l2_convert(&v->conv, v->bufs[b.index].start, used, out->data, err, sizeof(err)) < 0) {
			buf_unref(out);
			out = NULL;
		}
	} else {
		util_strlcpy(err, "the driver flagged the frame as corrupt", sizeof(err));
	}
	/* Frames the driver skipped (it ran late, or we did and its queue was
	 * empty) show as gaps in its sequence numbers. */
	if (v->last_seq >= 0 && (int64_t)b.sequence > v->last_seq + 1 && (int64_t)b.sequence - v->last_seq < 100000) {
		v->camera_dropped += (uint64_t)((int64_t)b.sequence - v->last_seq - 1);
		v->missed += (uint32_t)((int64_t)b.sequence - v->last_seq - 1);
	}
	v->last_seq = b.sequence;
	bool mono = (b.flags & V4L2_BUF_FLAG_TIMESTAMP_MASK) == V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
	int64_t buf_ns = (int64_t)b.timestamp.tv_sec * TIME_NS_PER_SEC + (int64_t)b.timestamp.tv_usec * 1000;
	if (v4l2_xioctl(v->fd, VIDIOC_QBUF, &b) < 0 && errno != EAGAIN) {
		buf_unref(out);
		v4l2_lost(v, strerror(errno));
		return MEDIA_SOURCE_AGAIN;
	}
	if (!out) {
		v->frames_bad++;
		v->missed++;
		if (now - v->last_bad_log_ns > V4L2_LOG_EVERY_NS) {
			v->last_bad_log_ns = now;
			LOG_WARN(&log_v4l2, "%s: frame dropped: %s (%llu so far)", v->path, err,
				 (unsigned long long)v->frames_bad);
		}
		return MEDIA_SOURCE_AGAIN;
	}
	if (v->conv.last_width != v->cam_w || v->conv.last_height != v->cam_h)
		v->frames_resized++;
	uint64_t fallbacks = v->clock.fallbacks;
	int64_t pts = media_v4l2_clock_pts(&v->clock, buf_ns, mono, now);
	if (pts < 0) {
		/* a second frame in its slot of the frame grid: left out, counted */
		buf_unref(out);
		v->missed++;
		return MEDIA_SOURCE_AGAIN;
	}
	memset(pkt, 0, sizeof(*pkt));
	pkt->stream = v->video_stream;
	pkt->pts_ns = pts;
	pkt->duration_ns = v->frame_ns;
	pkt->force_keyframe = v->need_key; /* the first frame after the camera came back */
	pkt->data = out;
	pkt->missed = v->missed; /* counted as dropped by the pipeline */
	v->missed = 0;
	v->need_key = false;
	v->frames++;
	if (v->clock.fallbacks != fallbacks && !v->fallback_logged) {
		v->fallback_logged = true;
		LOG_WARN(&log_v4l2, "%s: %s (buffer %.6f s, dequeued %.6f s, flags 0x%x); frames are timed when "
			 "dequeued instead", v->path,
			 mono ? "the driver's timestamps are off the monotonic clock"
			      : "the driver gives no monotonic buffer timestamps", buf_ns / 1e9, now / 1e9, b.flags);
	}
	return MEDIA_SOURCE_OK;
}

static int v4l2_read_any(struct media_source *src, struct media_packet *pkt, int64_t timeout_ns)
{
	struct v4l2_priv *v = src->priv;
	int64_t deadline = time_mono_ns() + timeout_ns;
	memset(pkt, 0, sizeof(*pkt));
	for (;;) {
		int64_t now = time_mono_ns();
		v4l2_retry(v, now);
		/* The camera first: it has only V4L2_NBUF buffers, and one
		 * not dequeued is a frame the driver drops; the microphone's
		 * buffer holds seconds, so a backlog of audio after a stall must
		 * not keep the camera's buffers from coming back. */
		int r = v4l2_read_video(src, v, pkt);
		if (r != MEDIA_SOURCE_AGAIN)
			return r;
#ifdef MEDIA_HAVE_ALSA
		if (v4l2_read_audio(v, pkt) == MEDIA_SOURCE_OK)
			return MEDIA_SOURCE_OK;
#endif
		now = time_mono_ns();
		if (now >= deadline)
			return MEDIA_SOURCE_AGAIN;
		/* Wait for either device, or the next reopen. */
		struct pollfd fds[9];
		int nfds = 0;
		int64_t wait = deadline - now;
		if (v->fd >= 0)
			fds[nfds++] = (struct pollfd){ .fd = v->fd, .events = POLLIN };
#ifdef MEDIA_HAVE_ALSA
		if (v->mic) {
			int64_t wake;
			nfds += media_mic_pollfds(v->mic, fds + nfds, 8, &wake);
			if (wake - now < wait)
				wait = wake - now;
		}
#endif
		if (v->video_lost && v->video_retry_ns - now < wait)
			wait = v->video_retry_ns - now;
		int ms = (int)((wait + TIME_NS_PER_MS - 1) / TIME_NS_PER_MS);
		int pr = poll(fds, (nfds_t)nfds, ms < 0 ? 0 : ms);
		if (pr > 0 && v->fd >= 0 && (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) &&
		    !(fds[0].revents & POLLIN))
			v4l2_lost(v, "poll reports an error");
	}
}

/* Reads the next packet of either device; with a duration, ends there. */
static int v4l2_read(struct media_source *src, struct media_packet *pkt, int64_t timeout_ns)
{
	struct v4l2_priv *v = src->priv;
	int r = v4l2_read_any(src, pkt, timeout_ns);
	if (r == MEDIA_SOURCE_OK && v->duration_ns > 0 && pkt->pts_ns >= v->duration_ns) {
		media_packet_clear(pkt);
		return MEDIA_SOURCE_EOF;
	}
	return r;
}

static void v4l2_stats(struct media_source *src, struct media_source_stats *st)
{
	struct v4l2_priv *v = src->priv;
	st->stalled = v->video_lost;
#ifdef MEDIA_HAVE_ALSA
	st->stalled |= media_mic_away(v->mic);
#endif
}

static void v4l2_capture_info(struct media_source *src, struct media_capture_info *ci)
{
	const struct v4l2_priv *v = src->priv;
	memset(ci, 0, sizeof(*ci));
	ci->present = true;
	util_strlcpy(ci->device, v->device, sizeof(ci->device));
	util_strlcpy(ci->path, v->path, sizeof(ci->path));
	util_strlcpy(ci->card, v->card, sizeof(ci->card));
	util_strlcpy(ci->driver, v->driver, sizeof(ci->driver));
	media_v4l2_format_name(v->fourcc, ci->pixel_format);
	ci->asked_width = v->want.width;
	ci->asked_height = v->want.height;
	ci->asked_fps = v->want.fps;
	ci->width = v->cam_w;
	ci->height = v->cam_h;
	ci->fps = v->fps_den > 0 ? (double)v->fps_num / v->fps_den : 0;
	ci->out_width = v->out_w;
	ci->out_height = v->out_h;
	ci->frames_rejected = v->frames_bad;
	ci->frames_resized = v->frames_resized;
	ci->camera_dropped = v->camera_dropped;
	ci->reopens = v->reopens;
	ci->timestamps_fallback = v->clock.fallbacks > 0;
#ifdef MEDIA_HAVE_ALSA
	if (v->mic)
		media_mic_capture_info(v->mic, ci);
#endif
}

const struct media_source_driver media_source_v4l2 = {
	.name = "v4l2",
	.open = v4l2_open,
	.read = v4l2_read,
	.close = v4l2_close,
	.stats = v4l2_stats,
	.capture_info = v4l2_capture_info,
	.align_end = true,
};
