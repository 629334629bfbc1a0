/* media_v4l2: mode choice, recorded size, frame timestamps, frame
 * conversion and the camera listing of the v4l2 source (see media_v4l2.h). */
#include "media_v4l2.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/videodev2.h>
#include <libyuv/convert.h>
#include <libyuv/convert_from_argb.h>
#include <turbojpeg.h>
#include <libyuv/scale.h>

#include "common_util.h"

#define V4L2_MAX_DIM 8192

/* ---- formats -------------------------------------------------------------- */

static const struct {
	uint32_t fourcc;
	const char *name;
	int rank;         /* raw formats by conversion cost; MJPEG last */
} v4l2_formats[] = {
	{ MEDIA_V4L2_YU12, "i420", 0 },
	{ MEDIA_V4L2_NV12, "nv12", 1 },
	{ MEDIA_V4L2_YUYV, "yuyv", 2 },
	{ MEDIA_V4L2_MJPG, "mjpeg", 3 },
};

static int v4l2_format_rank(uint32_t fourcc)
{
	for (size_t i = 0; i < ARRAY_SIZE(v4l2_formats); i++)
		if (v4l2_formats[i].fourcc == fourcc)
			return v4l2_formats[i].rank;
	return -1;
}

bool media_v4l2_format_known(uint32_t fourcc)
{
	return v4l2_format_rank(fourcc) >= 0;
}

uint32_t media_v4l2_format_parse(const char *name)
{
	for (size_t i = 0; name && i < ARRAY_SIZE(v4l2_formats); i++)
		if (strcmp(v4l2_formats[i].name, name) == 0)
			return v4l2_formats[i].fourcc;
	if (name && (strcmp(name, "yu12") == 0 || strcmp(name, "mjpg") == 0))
		return strcmp(name, "yu12") == 0 ? MEDIA_V4L2_YU12 : MEDIA_V4L2_MJPG;
	return 0;
}

const char *media_v4l2_format_name(uint32_t fourcc, char *out)
{
	for (int i = 0; i < 4; i++) {
		char ch = (char)(fourcc >> (8 * i) & 0xff);
		out[i] = ch >= 0x20 && ch < 0x7f ? ch : '?';
	}
	out[4] = '\0';
	return out;
}

/* ---- the mode choice ------------------------------------------------------ */

/* Frames per second x 1000, so rates like 30000/1001 compare exactly enough. */
static int64_t v4l2_mfps(const struct media_v4l2_mode *m)
{
	return m->fps_den > 0 ? (int64_t)m->fps_num * 1000 / m->fps_den : 0;
}

/* How well a size fits the asked one: lower is better. Class 0 the asked
 * size, 1 covering it (the smaller area the better), 2 below it (the
 * larger area the better). */
static void v4l2_size_key(int w, int h, const struct media_v4l2_want *want, int *cls, int64_t *dist)
{
	int64_t area = (int64_t)w * h, asked = (int64_t)want->width * want->height;
	if (w == want->width && h == want->height) {
		*cls = 0;
		*dist = 0;
	} else if (w >= want->width && h >= want->height) {
		*cls = 1;
		*dist = area - asked;
	} else {
		*cls = 2;
		*dist = asked - area;
	}
}

static bool v4l2_mode_usable(const struct media_v4l2_mode *m, const struct media_v4l2_want *want)
{
	return media_v4l2_format_known(m->fourcc) && (!want->fourcc || m->fourcc == want->fourcc) &&
	       m->width >= 16 && m->height >= 16 && m->width <= V4L2_MAX_DIM && m->height <= V4L2_MAX_DIM &&
	       m->fps_num > 0 && m->fps_den > 0;
}

/* True when the mode's rate reaches 'asked' (mfps) within 1 %: 29.97 fps
 * serves a 30 fps preset. */
static bool v4l2_reaches(const struct media_v4l2_mode *m, int64_t asked)
{
	return v4l2_mfps(m) * 100 >= asked * 99;
}

int media_v4l2_choose(const struct media_v4l2_mode *modes, int n, const struct media_v4l2_want *want,
		      struct media_v4l2_mode *out)
{
	int best_size = -1, best_cls = 0;
	int64_t best_dist = 0;
	int64_t asked = (int64_t)want->fps * 1000;
	/* Sizes some format offers at the asked rate come first, when there are any. */
	bool any_reach = false;
	for (int i = 0; i < n; i++)
		any_reach |= v4l2_mode_usable(&modes[i], want) && v4l2_reaches(&modes[i], asked);
	for (int i = 0; i < n; i++) {
		int cls;
		int64_t dist;
		if (!v4l2_mode_usable(&modes[i], want) || (any_reach && !v4l2_reaches(&modes[i], asked)))
			continue;
		v4l2_size_key(modes[i].width, modes[i].height, want, &cls, &dist);
		if (best_size < 0 || cls < best_cls || (cls == best_cls && dist < best_dist)) {
			best_size = i;
			best_cls = cls;
			best_dist = dist;
		}
	}
	if (best_size < 0)
		return -1;
	int w = modes[best_size].width, h = modes[best_size].height;

	/* Per format at that size: the lowest rate reaching the asked one,
	 * else the highest. */
	int per_format[ARRAY_SIZE(v4l2_formats)];
	for (size_t f = 0; f < ARRAY_SIZE(v4l2_formats); f++)
		per_format[f] = -1;
	for (int i = 0; i < n; i++) {
		const struct media_v4l2_mode *m = &modes[i];
		if (!v4l2_mode_usable(m, want) || m->width != w || m->height != h)
			continue;
		int f = v4l2_format_rank(m->fourcc);
		int cur = per_format[f];
		if (cur < 0) {
			per_format[f] = i;
			continue;
		}
		int64_t r = v4l2_mfps(m), c = v4l2_mfps(&modes[cur]);
		bool reaches = v4l2_reaches(m, asked), cur_reaches = v4l2_reaches(&modes[cur], asked);
		if ((reaches && (!cur_reaches || r < c)) || (!reaches && !cur_reaches && r > c))
			per_format[f] = i;
	}

	/* The format: raw reaching the rate, MJPEG reaching it, else the
	 * highest rate (ranks break ties: raw before MJPEG). */
	int pick = -1;
	for (size_t f = 0; f < ARRAY_SIZE(v4l2_formats) && pick < 0; f++)
		if (per_format[f] >= 0 && v4l2_reaches(&modes[per_format[f]], asked))
			pick = per_format[f];
	if (pick < 0) {
		for (size_t f = 0; f < ARRAY_SIZE(v4l2_formats); f++)
			if (per_format[f] >= 0 && (pick < 0 || v4l2_mfps(&modes[per_format[f]]) > v4l2_mfps(&modes[pick])))
				pick = per_format[f];
	}
	*out = modes[pick];
	return 0;
}

void media_v4l2_fit(int w, int h, int box_w, int box_h, int *out_w, int *out_h)
{
	if (w > box_w || h > box_h) {
		/* the smaller of the two ratios, in integers */
		if ((int64_t)box_w * h <= (int64_t)box_h * w) {
			h = (int)((int64_t)h * box_w / w);
			w = box_w;
		} else {
			w = (int)((int64_t)w * box_h / h);
			h = box_h;
		}
	}
	*out_w = w & ~1;
	*out_h = h & ~1;
	if (*out_w < 2)
		*out_w = 2;
	if (*out_h < 2)
		*out_h = 2;
}

/* ---- timestamps ----------------------------------------------------------- */

void media_v4l2_clock_init(struct media_v4l2_clock *c, int64_t zero_ns)
{
	memset(c, 0, sizeof(*c));
	c->zero_ns = zero_ns;
	c->last_pts_ns = -1;
	c->origin_ns = -1;
}

void media_v4l2_clock_set_rate(struct media_v4l2_clock *c, int fps_num, int fps_den)
{
	c->period_ns = fps_num > 0 && fps_den > 0 ? (double)fps_den * 1e9 / fps_num : 0;
}

int64_t media_v4l2_clock_pts(struct media_v4l2_clock *c, int64_t buf_ns, bool monotonic, int64_t dequeued_ns)
{
	int64_t t = buf_ns;
	if (!monotonic || buf_ns - dequeued_ns > 100000000LL || dequeued_ns - buf_ns > 2000000000LL) {
		t = dequeued_ns;
		c->fallbacks++;
	}
	int64_t pts = t - c->zero_ns;
	if (pts < 0)
		pts = 0;
	if (c->period_ns > 0) {
		/* On the frame grid from the first frame: the nearest slot; a
		 * frame whose slot is taken goes to the next one when it is
		 * past the first quarter of the taken slot, else it is a second
		 * frame in that slot and is dropped. */
		if (c->origin_ns < 0)
			c->origin_ns = pts;
		double x = (double)(pts - c->origin_ns) / c->period_ns;
		int64_t slot = (int64_t)llround(x < 0 ? 0 : x);
		if (c->last_pts_ns >= 0 && slot <= c->last_slot) {
			if (x < (double)c->last_slot + 0.25) {
				c->dropped++;
				return -1;
			}
			slot = c->last_slot + 1;
			c->fixed++;
		}
		c->last_slot = slot;
		c->last_pts_ns = c->origin_ns + (int64_t)llround((double)slot * c->period_ns);
		return c->last_pts_ns;
	}
	if (c->last_pts_ns >= 0 && pts <= c->last_pts_ns) {
		pts = c->last_pts_ns + 1000000;
		c->fixed++;
	}
	c->last_pts_ns = pts;
	return pts;
}

/* ---- conversion ----------------------------------------------------------- */

int media_v4l2_conv_init(struct media_v4l2_conv *c, uint32_t fourcc, int width, int height, int stride,
			 int out_width, int out_height, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	if (!media_v4l2_format_known(fourcc) || width < 2 || height < 2 || width > V4L2_MAX_DIM ||
	    height > V4L2_MAX_DIM || out_width < 2 || out_height < 2 || (out_width & 1) || (out_height & 1) ||
	    out_width > V4L2_MAX_DIM || out_height > V4L2_MAX_DIM) {
		char name[5];
		snprintf(err, errlen, "cannot convert %s %dx%d to %dx%d", media_v4l2_format_name(fourcc, name),
			 width, height, out_width, out_height);
		return -1;
	}
	int min_stride = fourcc == MEDIA_V4L2_YUYV ? width * 2 : width;
	c->fourcc = fourcc;
	c->width = width;
	c->height = height;
	c->stride = fourcc == MEDIA_V4L2_MJPG || stride < min_stride ? min_stride : stride;
	c->out_width = out_width;
	c->out_height = out_height;
	c->last_width = width;
	c->last_height = height;
	return 0;
}

void media_v4l2_conv_deinit(struct media_v4l2_conv *c)
{
	free(c->tmp);
	free(c->dec);
	if (c->tj)
		tjDestroy(c->tj);
	c->tmp = c->dec = NULL;
	c->tj = NULL;
	c->tmp_size = c->dec_size = 0;
}

/* An I420 frame of w x h in c->tmp (grown as needed). */
static uint8_t *v4l2_tmp(struct media_v4l2_conv *c, int w, int h)
{
	size_t need = (size_t)w * h + 2 * (size_t)((w + 1) / 2) * ((h + 1) / 2);
	if (need > c->tmp_size) {
		uint8_t *t = realloc(c->tmp, need);
		if (!t)
			return NULL;
		c->tmp = t;
		c->tmp_size = need;
	}
	return c->tmp;
}

/* Scales (or copies) the I420 frame 'src' of w x h into 'dst' at the output size. */
static int v4l2_scale(struct media_v4l2_conv *c, const uint8_t *src, int w, int h, uint8_t *dst)
{
	int cw = (w + 1) / 2, ch = (h + 1) / 2;
	int ow = c->out_width, oh = c->out_height;
	const uint8_t *su = src + (size_t)w * h, *sv = su + (size_t)cw * ch;
	uint8_t *du = dst + (size_t)ow * oh, *dv = du + (size_t)(ow / 2) * (oh / 2);
	return I420Scale(src, w, su, cw, sv, cw, w, h, dst, ow, du, ow / 2, dv, ow / 2, ow, oh, kFilterBox);
}

/* A scratch buffer of 'size' bytes in c->dec (grown as needed). */
static uint8_t *v4l2_dec(struct media_v4l2_conv *c, size_t size)
{
	if (size > c->dec_size) {
		uint8_t *t = realloc(c->dec, size);
		if (!t)
			return NULL;
		c->dec = t;
		c->dec_size = size;
	}
	return c->dec;
}

/* Decodes a JPEG of w x h into the I420 frame 't': as YUV planes at the
 * JPEG's own subsampling (4:2:0, 4:2:2, 4:4:4, grey) converted by libyuv,
 * else (4:4:0, 4:1:1, RGB JPEGs) through BGRX. */
static int v4l2_decode_jpeg(struct media_v4l2_conv *c, const uint8_t *data, size_t len, int w, int h,
			    int subsamp, int colorspace, uint8_t *t)
{
	int cw = (w + 1) / 2, ch = (h + 1) / 2;
	uint8_t *u = t + (size_t)w * h, *v = u + (size_t)cw * ch;
	int flags = TJFLAG_LIMITSCANS | TJFLAG_NOREALLOC;
	bool planes = colorspace == TJCS_YCbCr || colorspace == TJCS_GRAY;
	if (planes && subsamp == TJSAMP_420) {
		unsigned char *pl[3] = { t, u, v };
		int st[3] = { w, cw, cw };
		return tjDecompressToYUVPlanes(c->tj, data, (unsigned long)len, pl, w, st, h, flags);
	}
	if (planes && (subsamp == TJSAMP_422 || subsamp == TJSAMP_444 || subsamp == TJSAMP_GRAY)) {
		int pw = subsamp == TJSAMP_444 ? w : cw;
		uint8_t *y = v4l2_dec(c, (size_t)w * h + 2 * (size_t)pw * h);
		if (!y)
			return -1;
		unsigned char *pl[3] = { y, y + (size_t)w * h, y + (size_t)w * h + (size_t)pw * h };
		int st[3] = { w, pw, pw };
		if (tjDecompressToYUVPlanes(c->tj, data, (unsigned long)len, pl, w, st, h, flags) != 0)
			return -1;
		if (subsamp == TJSAMP_GRAY)
			return I400ToI420(y, w, t, w, u, cw, v, cw, w, h);
		if (subsamp == TJSAMP_422)
			return I422ToI420(pl[0], w, pl[1], pw, pl[2], pw, t, w, u, cw, v, cw, w, h);
		return I444ToI420(pl[0], w, pl[1], pw, pl[2], pw, t, w, u, cw, v, cw, w, h);
	}
	if (colorspace != TJCS_YCbCr && colorspace != TJCS_RGB && colorspace != TJCS_GRAY)
		return -1; /* CMYK, YCCK: no camera sends them */
	uint8_t *bgrx = v4l2_dec(c, (size_t)w * h * 4);
	if (!bgrx || tjDecompress2(c->tj, data, (unsigned long)len, bgrx, w, w * 4, h, TJPF_BGRX, flags) != 0)
		return -1;
	return ARGBToI420(bgrx, w * 4, t, w, u, cw, v, cw, w, h);
}

/* After a failed call a TurboJPEG handle keeps failing (2.1 leaves the
 * error state behind): the next frame gets a new one. */
static void v4l2_tj_reset(struct media_v4l2_conv *c)
{
	if (c->tj)
		tjDestroy(c->tj);
	c->tj = NULL;
}

static int v4l2_convert_mjpeg(struct media_v4l2_conv *c, const uint8_t *data, size_t len, uint8_t *dst,
			      char *err, size_t errlen)
{
	int w = 0, h = 0, subsamp = -1, colorspace = -1;
	if (!c->tj && !(c->tj = tjInitDecompress())) {
		snprintf(err, errlen, "cannot set up the JPEG decoder");
		return -1;
	}
	/* Only the header is read before the size is checked. */
	if (len < 4 || data[0] != 0xff || data[1] != 0xd8 ||
	    tjDecompressHeader3(c->tj, data, (unsigned long)len, &w, &h, &subsamp, &colorspace) != 0) {
		snprintf(err, errlen, "MJPEG frame of %zu bytes does not decode%s%s", len, len < 4 ? "" : ": ",
			 len < 4 ? "" : tjGetErrorStr2(c->tj));
		v4l2_tj_reset(c);
		return -1;
	}
	if (w < 2 || h < 2 || w > V4L2_MAX_DIM || h > V4L2_MAX_DIM ||
	    (int64_t)w * h > 16 * (int64_t)c->width * c->height) {
		snprintf(err, errlen, "MJPEG frame of %dx%d refused (the camera's size is %dx%d)", w, h,
			 c->width, c->height);
		return -1;
	}
	bool direct = w == c->out_width && h == c->out_height;
	uint8_t *t = direct ? dst : v4l2_tmp(c, w, h);
	if (!t || v4l2_decode_jpeg(c, data, len, w, h, subsamp, colorspace, t) != 0) {
		snprintf(err, errlen, "MJPEG frame of %dx%d (%zu bytes) does not decode: %s", w, h, len,
			 t ? tjGetErrorStr2(c->tj) : "out of memory");
		v4l2_tj_reset(c);
		return -1;
	}
	c->last_width = w;
	c->last_height = h;
	if (!direct && v4l2_scale(c, t, w, h, dst) != 0) {
		snprintf(err, errlen, "cannot scale %dx%d", w, h);
		return -1;
	}
	return 0;
}

int media_v4l2_convert(struct media_v4l2_conv *c, const uint8_t *data, size_t len, uint8_t *dst,
		       char *err, size_t errlen)
{
	if (c->fourcc == MEDIA_V4L2_MJPG)
		return v4l2_convert_mjpeg(c, data, len, dst, err, errlen);
	int w = c->width, h = c->height, s = c->stride;
	size_t need = c->fourcc == MEDIA_V4L2_YUYV ? (size_t)s * h
		      : c->fourcc == MEDIA_V4L2_NV12 ? (size_t)s * h + (size_t)s * ((h + 1) / 2)
						     : (size_t)s * h + 2 * (size_t)(s / 2) * ((h + 1) / 2);
	if (len < need) {
		char name[5];
		snprintf(err, errlen, "%s frame of %zu bytes, %dx%d needs %zu", media_v4l2_format_name(c->fourcc, name),
			 len, w, h, need);
		return -1;
	}
	bool direct = w == c->out_width && h == c->out_height;
	uint8_t *t = direct ? dst : v4l2_tmp(c, w, h);
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int cw = (w + 1) / 2, ch = (h + 1) / 2;
	uint8_t *u = t + (size_t)w * h, *v = u + (size_t)cw * ch;
	int rc;
	if (c->fourcc == MEDIA_V4L2_YUYV)
		rc = YUY2ToI420(data, s, t, w, u, cw, v, cw, w, h);
	else if (c->fourcc == MEDIA_V4L2_NV12)
		rc = NV12ToI420(data, s, data + (size_t)s * h, s, t, w, u, cw, v, cw, w, h);
	else
		rc = I420Copy(data, s, data + (size_t)s * h, s / 2, data + (size_t)s * h + (size_t)(s / 2) * ch,
			      s / 2, t, w, u, cw, v, cw, w, h);
	if (rc == 0 && !direct)
		rc = v4l2_scale(c, t, w, h, dst);
	if (rc != 0) {
		snprintf(err, errlen, "cannot convert a %dx%d frame", w, h);
		return -1;
	}
	return 0;
}

/* ---- devices -------------------------------------------------------------- */

static int v4l2_ioctl(int fd, unsigned long req, void *arg)
{
	int r;
	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r;
}

/* Appends a mode to the growing table. */
static int v4l2_add_mode(struct media_v4l2_mode **tab, int *n, int *cap, uint32_t fourcc, int w, int h,
			 int num, int den)
{
	if (*n >= 4096)
		return 0; /* a bound on what a device may claim */
	if (*n == *cap) {
		int nc = *cap ? *cap * 2 : 32;
		struct media_v4l2_mode *t = realloc(*tab, (size_t)nc * sizeof(*t));
		if (!t)
			return -1;
		*tab = t;
		*cap = nc;
	}
	(*tab)[(*n)++] = (struct media_v4l2_mode){ fourcc, w, h, num, den };
	return 0;
}

/* The rates of one size: intervals are seconds per frame, so a rate is
 * denominator / numerator. */
static int v4l2_enum_rates(int fd, uint32_t fourcc, int w, int h, const struct media_v4l2_want *want,
			   struct media_v4l2_mode **tab, int *n, int *cap)
{
	struct v4l2_frmivalenum iv = { .pixel_format = fourcc, .width = (uint32_t)w, .height = (uint32_t)h };
	int found = 0;
	for (iv.index = 0; iv.index < 64 && v4l2_ioctl(fd, VIDIOC_ENUM_FRAMEINTERVALS, &iv) == 0; iv.index++) {
		if (iv.type == V4L2_FRMIVAL_TYPE_DISCRETE) {
			if (iv.discrete.numerator && iv.discrete.denominator &&
			    v4l2_add_mode(tab, n, cap, fourcc, w, h, (int)iv.discrete.denominator,
					  (int)iv.discrete.numerator) < 0)
				return -1;
			found++;
			continue;
		}
		/* stepwise / continuous: the fastest and slowest ends, and the asked rate when inside */
		struct v4l2_fract lo = iv.stepwise.min, hi = iv.stepwise.max;
		if (lo.numerator && lo.denominator &&
		    v4l2_add_mode(tab, n, cap, fourcc, w, h, (int)lo.denominator, (int)lo.numerator) < 0)
			return -1;
		if (hi.numerator && hi.denominator &&
		    v4l2_add_mode(tab, n, cap, fourcc, w, h, (int)hi.denominator, (int)hi.numerator) < 0)
			return -1;
		if (want && want->fps > 0 && lo.numerator && hi.denominator &&
		    (int64_t)want->fps * lo.numerator <= lo.denominator &&
		    (int64_t)want->fps * hi.numerator >= hi.denominator &&
		    v4l2_add_mode(tab, n, cap, fourcc, w, h, want->fps, 1) < 0)
			return -1;
		found++;
		break;
	}
	/* A driver that does not enumerate intervals: its size, rate unknown
	 * (taken as 30, what S_PARM then says is recorded). */
	if (!found && v4l2_add_mode(tab, n, cap, fourcc, w, h, 30, 1) < 0)
		return -1;
	return 0;
}

int media_v4l2_enum_modes(int fd, const struct media_v4l2_want *want, struct media_v4l2_mode **out)
{
	struct media_v4l2_mode *tab = NULL;
	int n = 0, cap = 0;
	struct v4l2_fmtdesc fd_ = { .type = V4L2_BUF_TYPE_VIDEO_CAPTURE };
	*out = NULL;
	for (fd_.index = 0; fd_.index < 64 && v4l2_ioctl(fd, VIDIOC_ENUM_FMT, &fd_) == 0; fd_.index++) {
		struct v4l2_frmsizeenum fs = { .pixel_format = fd_.pixelformat };
		for (fs.index = 0; fs.index < 256 && v4l2_ioctl(fd, VIDIOC_ENUM_FRAMESIZES, &fs) == 0; fs.index++) {
			if (fs.type == V4L2_FRMSIZE_TYPE_DISCRETE) {
				if (v4l2_enum_rates(fd, fd_.pixelformat, (int)fs.discrete.width, (int)fs.discrete.height,
						    want, &tab, &n, &cap) < 0)
					goto fail;
				continue;
			}
			/* a range: both ends, and the asked size when it lies on the grid */
			const struct v4l2_frmsize_stepwise *sw = &fs.stepwise;
			if (v4l2_enum_rates(fd, fd_.pixelformat, (int)sw->min_width, (int)sw->min_height, want, &tab, &n,
					    &cap) < 0 ||
			    v4l2_enum_rates(fd, fd_.pixelformat, (int)sw->max_width, (int)sw->max_height, want, &tab, &n,
					    &cap) < 0)
				goto fail;
			if (want && want->width >= (int)sw->min_width && want->width <= (int)sw->max_width &&
			    want->height >= (int)sw->min_height && want->height <= (int)sw->max_height &&
			    (sw->step_width <= 1 || (want->width - (int)sw->min_width) % (int)sw->step_width == 0) &&
			    (sw->step_height <= 1 || (want->height - (int)sw->min_height) % (int)sw->step_height == 0) &&
			    v4l2_enum_rates(fd, fd_.pixelformat, want->width, want->height, want, &tab, &n, &cap) < 0)
				goto fail;
			break;
		}
	}
	*out = tab;
	return n;
fail:
	free(tab);
	errno = ENOMEM;
	return -1;
}

int media_v4l2_resolve(const char *device, char *out, size_t outlen)
{
	char real[PATH_MAX];
	if (!device || !device[0] || !realpath(device, real))
		return -ENOENT;
	util_strlcpy(out, real, outlen);
	return 0;
}

/* Adds the links of 'dir' (by-id, by-path) that point at 'path'. */
static void v4l2_find_links(const char *dir, struct media_v4l2_device *d)
{
	DIR *dh = opendir(dir);
	struct dirent *e;
	if (!dh)
		return;
	while ((e = readdir(dh)) && d->nb_ids < MEDIA_V4L2_MAX_IDS) {
		char link[512], real[PATH_MAX];
		if (e->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
		if (realpath(link, real) && strcmp(real, d->path) == 0)
			util_strlcpy(d->ids[d->nb_ids++], link, sizeof(d->ids[0]));
	}
	closedir(dh);
}

static int v4l2_cmp_dev(const void *a, const void *b)
{
	const struct media_v4l2_device *x = a, *y = b;
	size_t lx = strlen(x->path), ly = strlen(y->path);
	return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x->path, y->path); /* video2 before video10 */
}

int media_v4l2_list(struct media_v4l2_device *out, int max)
{
	DIR *dh = opendir("/dev");
	struct dirent *e;
	int n = 0;
	if (!dh)
		return 0;
	while ((e = readdir(dh)) && n < max) {
		if (strncmp(e->d_name, "video", 5) != 0)
			continue;
		struct media_v4l2_device *d = &out[n];
		memset(d, 0, sizeof(*d));
		snprintf(d->path, sizeof(d->path), "/dev/%.58s", e->d_name);
		int fd = open(d->path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			if (errno != EBUSY)
				continue;
			d->busy = true;
			n++;
			continue;
		}
		struct v4l2_capability cap;
		memset(&cap, 0, sizeof(cap));
		uint32_t caps = 0;
		if (v4l2_ioctl(fd, VIDIOC_QUERYCAP, &cap) == 0)
			caps = cap.capabilities & V4L2_CAP_DEVICE_CAPS ? cap.device_caps : cap.capabilities;
		/* Cameras only: capture with streaming (not the metadata nodes UVC adds). */
		if (!(caps & V4L2_CAP_VIDEO_CAPTURE) || !(caps & V4L2_CAP_STREAMING)) {
			close(fd);
			continue;
		}
		snprintf(d->card, sizeof(d->card), "%.*s", (int)sizeof(cap.card), (const char *)cap.card);
		snprintf(d->driver, sizeof(d->driver), "%.*s", (int)sizeof(cap.driver), (const char *)cap.driver);
		snprintf(d->bus, sizeof(d->bus), "%.*s", (int)sizeof(cap.bus_info), (const char *)cap.bus_info);
		int nm = media_v4l2_enum_modes(fd, NULL, &d->modes);
		d->nb_modes = nm > 0 ? nm : 0;
		close(fd);
		v4l2_find_links("/dev/v4l/by-id", d);
		v4l2_find_links("/dev/v4l/by-path", d);
		n++;
	}
	closedir(dh);
	qsort(out, (size_t)n, sizeof(*out), v4l2_cmp_dev);
	return n;
}

void media_v4l2_list_free(struct media_v4l2_device *list, int n)
{
	for (int i = 0; i < n; i++) {
		free(list[i].modes);
		list[i].modes = NULL;
	}
}
