/* media_v4l2: what the v4l2 camera source (media_src_v4l2.c) decides
 * without a device, kept apart so tests can check it: the choice of a
 * capture mode among those a camera offers, the size recorded, the frame
 * timestamps, the conversion of a captured frame to I420 (libyuv; MJPEG
 * decoded by libjpeg-turbo's TurboJPEG API), and the listing of the
 * cameras of the box for GET /api/system/devices.
 *
 * Uses: libyuv (conversion, scaling), libturbojpeg (MJPEG), the kernel's
 * V4L2 ioctls (the listing only). */
#ifndef EDGEREC_MEDIA_V4L2_H
#define EDGEREC_MEDIA_V4L2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A pixel format as V4L2 names it (the kernel's fourcc codes). */
#define MEDIA_V4L2_FOURCC(a, b, c, d) \
	((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define MEDIA_V4L2_YUYV MEDIA_V4L2_FOURCC('Y', 'U', 'Y', 'V')
#define MEDIA_V4L2_NV12 MEDIA_V4L2_FOURCC('N', 'V', '1', '2')
#define MEDIA_V4L2_YU12 MEDIA_V4L2_FOURCC('Y', 'U', '1', '2') /* I420 */
#define MEDIA_V4L2_MJPG MEDIA_V4L2_FOURCC('M', 'J', 'P', 'G')

/* One capture mode a camera offers: a pixel format, a frame size and a
 * frame rate of fps_num / fps_den frames per second (V4L2 gives intervals;
 * this is their inverse). */
struct media_v4l2_mode {
	uint32_t fourcc;
	int width, height;
	int fps_num, fps_den;
};

/* What a recording asks: the preset's size and rate, and a pixel format
 * when the room's args force one (0: any the source can take). */
struct media_v4l2_want {
	int width, height, fps;
	uint32_t fourcc;
};

/* True for the pixel formats the source converts: YUYV, NV12, YU12, MJPG. */
bool media_v4l2_format_known(uint32_t fourcc);
/* "yuyv" "nv12" "i420" "mjpeg" -> fourcc; 0 when unknown. */
uint32_t media_v4l2_format_parse(const char *name);
/* The fourcc as four characters in 'out' (at least 5 bytes). */
const char *media_v4l2_format_name(uint32_t fourcc, char *out);

/* Picks the mode to capture among the 'n' offered ones, into 'out':
 * - the size first, among the sizes offered at the asked rate (within
 *   1 %: 29.97 serves 30) when there are any, else among all: the asked
 *   size; else the smallest that covers it (scaled down into the preset's
 *   box, media_v4l2_fit); else the largest one below it;
 * - at that size, per format the lowest rate that reaches the asked one
 *   (else its highest);
 * - the format: a raw one (YU12, NV12, YUYV, in that order: least
 *   conversion first) that reaches the rate, else MJPEG if it does, else
 *   the one with the highest rate (raw on a tie).
 * Modes of formats the source cannot convert, or other than want->fourcc
 * when set, are not considered. Returns 0, or -1 when none is left. Pure. */
int media_v4l2_choose(const struct media_v4l2_mode *modes, int n, const struct media_v4l2_want *want,
		      struct media_v4l2_mode *out);

/* The size a camera's w x h frames are recorded at: their own, unless they
 * exceed the preset's box (box_w x box_h, what the encode budget was booked
 * for), then scaled down into it keeping the aspect ratio. Even sizes. */
void media_v4l2_fit(int w, int h, int box_w, int box_h, int *out_w, int *out_h);

/* Frame timestamps: the driver's buffer timestamp when the buffer says it
 * is CLOCK_MONOTONIC (V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC), else the time the
 * frame was dequeued; rebased to the source's zero (CLOCK_MONOTONIC ns,
 * shared with the audio stream) and, once the rate is known, put on the
 * frame grid (the nominal period from the first frame): a file's readers
 * time frames in slots of 1/fps, and a camera whose frames come with
 * jitter (a driver stamping when it filled the buffer, as vivid does)
 * would otherwise put two frames in one slot now and then. */
struct media_v4l2_clock {
	int64_t zero_ns;     /* CLOCK_MONOTONIC of the source's zero */
	int64_t last_pts_ns; /* -1 before the first frame */
	double period_ns;    /* the grid's period; 0: no grid */
	int64_t origin_ns;   /* the grid's origin (the first frame), -1 before */
	int64_t last_slot;
	uint64_t fallbacks;  /* frames timed by their dequeue time */
	uint64_t fixed;      /* frames moved forward to keep the order */
	uint64_t dropped;    /* second frames in a grid slot, left out */
};

void media_v4l2_clock_init(struct media_v4l2_clock *c, int64_t zero_ns);
/* The grid's rate: fps_num / fps_den frames per second (0: none). */
void media_v4l2_clock_set_rate(struct media_v4l2_clock *c, int fps_num, int fps_den);
/* Returns the pts (ns from the zero) of a frame whose buffer carries
 * 'buf_ns' (CLOCK_MONOTONIC when 'monotonic'), dequeued at 'dequeued_ns',
 * or -1 when the frame is to be left out. A driver timestamp over 100 ms
 * later than its dequeue time (vivid stamps a frame's nominal end, some ms
 * ahead) or more than 2 s older is not believed (the dequeue time is
 * taken, counted in 'fallbacks'); one before the zero counts as 0. On the
 * grid a frame takes the nearest slot; when that slot is taken it takes
 * the next one if it is past the first quarter of the taken slot (counted
 * in 'fixed'), else it is a second frame in that slot and left out
 * (counted in 'dropped'): a camera faster than its nominal rate loses a
 * frame now and then instead of running ahead of the sound. Without a
 * grid a pts not after the one before becomes that one + 1 ms. */
int64_t media_v4l2_clock_pts(struct media_v4l2_clock *c, int64_t buf_ns, bool monotonic, int64_t dequeued_ns);

/* Converting captured frames to I420 at the recorded size. */
struct media_v4l2_conv {
	uint32_t fourcc;
	int width, height;      /* the camera's frame size (S_FMT's answer) */
	int stride;             /* bytes per line of its first plane (bytesperline) */
	int out_width, out_height;
	uint8_t *tmp;           /* an I420 frame at the camera's (or an MJPEG frame's) size */
	size_t tmp_size;
	uint8_t *dec;           /* MJPEG: planes at the JPEG's subsampling, or BGRX */
	size_t dec_size;
	void *tj;               /* MJPEG: the TurboJPEG decoder */
	int last_width, last_height; /* the size of the last frame converted */
};

/* Sets 'c' up; 'stride' 0 means packed lines. Returns 0, or -1 with 'err'. */
int media_v4l2_conv_init(struct media_v4l2_conv *c, uint32_t fourcc, int width, int height, int stride,
			 int out_width, int out_height, char *err, size_t errlen);
void media_v4l2_conv_deinit(struct media_v4l2_conv *c);
/* Converts one captured frame ('len' bytes at 'data') into 'dst', an I420
 * frame of out_width x out_height. A raw frame shorter than its format
 * needs, an MJPEG frame that does not decode, or one larger than 8192x8192
 * or 16 times the camera's frame area is refused (-1 with 'err'); an MJPEG
 * frame of another size than the camera's is decoded at its own size and
 * scaled (c->last_width/height tell). Returns 0. */
int media_v4l2_convert(struct media_v4l2_conv *c, const uint8_t *data, size_t len, uint8_t *dst,
		       char *err, size_t errlen);

/* The cameras of the box (video capture devices under /dev), for listings. */
#define MEDIA_V4L2_MAX_IDS 4
struct media_v4l2_device {
	char path[64];                       /* /dev/videoN */
	char ids[MEDIA_V4L2_MAX_IDS][256];   /* /dev/v4l/by-id and by-path links to it */
	int nb_ids;
	char card[64], driver[32], bus[64];
	struct media_v4l2_mode *modes;       /* malloc'd */
	int nb_modes;
	bool busy;                           /* could not be opened: in use (EBUSY) */
};

/* Reads the modes 'fd' offers (ENUM_FMT, ENUM_FRAMESIZES,
 * ENUM_FRAMEINTERVALS; stepwise ranges give their ends, and the preset's
 * size and rate when 'want' is given and lies inside) into a malloc'd
 * table the caller frees. Returns the count, or -1 (errno set). */
int media_v4l2_enum_modes(int fd, const struct media_v4l2_want *want, struct media_v4l2_mode **out);

/* Lists the video capture devices: fills up to 'max' entries of 'out'
 * (sorted by path) and returns how many. Free with media_v4l2_list_free. */
int media_v4l2_list(struct media_v4l2_device *out, int max);
void media_v4l2_list_free(struct media_v4l2_device *list, int n);

/* Resolves 'device' (a path or a /dev/v4l/by-id link) to the device node
 * into 'out'. Returns 0, or -ENOENT. */
int media_v4l2_resolve(const char *device, char *out, size_t outlen);

#endif
