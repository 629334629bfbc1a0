/* test_media_v4l2: the camera source's decisions without a camera: the mode
 * chosen among offered-mode tables (raw vs MJPEG by rate, only MJPEG, odd
 * sizes, a size not offered, stepwise rates, a forced format), the recorded
 * size, the frame timestamps (recorded driver timestamps, the dequeue-time
 * fallback, a gap while the camera was away), and the conversion of YUYV,
 * NV12, YU12 and MJPEG frames (real JPEGs from ffmpeg, truncated and
 * corrupted ones refused). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "media_v4l2.h"

#define YUYV MEDIA_V4L2_YUYV
#define NV12 MEDIA_V4L2_NV12
#define YU12 MEDIA_V4L2_YU12
#define MJPG MEDIA_V4L2_MJPG
#define H264 MEDIA_V4L2_FOURCC('H', '2', '6', '4')

static int choose(const struct media_v4l2_mode *m, int n, int w, int h, int fps, uint32_t force,
		  struct media_v4l2_mode *out)
{
	struct media_v4l2_want want = { .width = w, .height = h, .fps = fps, .fourcc = force };
	return media_v4l2_choose(m, n, &want, out);
}

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void test_choose(void)
{
	struct media_v4l2_mode c;

	/* A typical UVC webcam: YUYV is slow at 720p (USB 2 bandwidth), MJPEG is not. */
	const struct media_v4l2_mode uvc[] = {
		{ YUYV, 640, 480, 30, 1 }, { YUYV, 640, 480, 15, 1 }, { YUYV, 1280, 720, 10, 1 },
		{ YUYV, 1280, 720, 5, 1 },  { MJPG, 640, 480, 30, 1 }, { MJPG, 1280, 720, 30, 1 },
		{ MJPG, 1280, 720, 15, 1 }, { MJPG, 1920, 1080, 30, 1 }, { H264, 1280, 720, 30, 1 },
	};
	/* 720p30: YUYV does not reach 30 there, MJPEG does */
	CHECK_INT(choose(uvc, N(uvc), 1280, 720, 30, 0, &c), 0);
	CHECK(c.fourcc == MJPG && c.width == 1280 && c.height == 720 && c.fps_num == 30);
	/* 720p at 10: raw reaches it and wins; the lowest rate that reaches */
	CHECK_INT(choose(uvc, N(uvc), 1280, 720, 10, 0, &c), 0);
	CHECK(c.fourcc == YUYV && c.width == 1280 && c.fps_num == 10);
	/* 480p30: raw */
	CHECK_INT(choose(uvc, N(uvc), 640, 480, 30, 0, &c), 0);
	CHECK(c.fourcc == YUYV && c.width == 640 && c.fps_num == 30);
	/* 360p is not offered: the smallest covering size, 640x480 */
	CHECK_INT(choose(uvc, N(uvc), 640, 360, 24, 0, &c), 0);
	CHECK(c.fourcc == YUYV && c.width == 640 && c.height == 480 && c.fps_num == 30);
	/* a size offered only below the rate loses to one that reaches it:
	 * YUYV-only, 720p at 10 or 360p at 30, asked 720p30 */
	const struct media_v4l2_mode yuyv_only[] = {
		{ YUYV, 1280, 720, 10, 1 }, { YUYV, 640, 360, 30, 1 }, { YUYV, 320, 180, 30, 1 },
	};
	CHECK_INT(choose(yuyv_only, N(yuyv_only), 1280, 720, 30, 0, &c), 0);
	CHECK(c.width == 640 && c.height == 360 && c.fps_num == 30);
	/* ... unless nothing reaches it: then the size decides */
	CHECK_INT(choose(yuyv_only, N(yuyv_only), 1280, 720, 60, 0, &c), 0);
	CHECK(c.width == 1280 && c.fps_num == 10);
	/* a forced format */
	CHECK_INT(choose(uvc, N(uvc), 640, 480, 30, MJPG, &c), 0);
	CHECK(c.fourcc == MJPG && c.width == 640);
	CHECK_INT(choose(uvc, N(uvc), 640, 480, 30, NV12, &c), -1);
	/* 1440p: nothing covers it; the largest below */
	CHECK_INT(choose(uvc, N(uvc), 2560, 1440, 30, 0, &c), 0);
	CHECK(c.fourcc == MJPG && c.width == 1920 && c.height == 1080);

	/* Only MJPEG */
	const struct media_v4l2_mode mj[] = {
		{ MJPG, 320, 240, 30, 1 }, { MJPG, 800, 600, 20, 1 }, { MJPG, 1280, 720, 30, 1 },
	};
	CHECK_INT(choose(mj, N(mj), 640, 360, 24, 0, &c), 0);
	CHECK(c.fourcc == MJPG && c.width == 1280 && c.height == 720 && c.fps_num == 30); /* 800x600 is at 20 */
	CHECK_INT(choose(mj, N(mj), 640, 360, 20, 0, &c), 0);
	CHECK(c.width == 800 && c.height == 600 && c.fps_num == 20);
	CHECK_INT(choose(mj, N(mj), 1280, 720, 30, 0, &c), 0);
	CHECK(c.width == 1280 && c.fps_num == 30);
	CHECK_INT(choose(mj, N(mj), 640, 480, 30, YUYV, &c), -1);

	/* Odd sizes only: 352x288 (CIF), 176x144; larger ones: the smallest
	 * that covers the asked size, whatever its aspect ratio. */
	const struct media_v4l2_mode odd[] = {
		{ NV12, 176, 144, 30, 1 }, { NV12, 352, 288, 30, 1 }, { NV12, 1024, 768, 30, 1 },
		{ NV12, 1280, 800, 30, 1 }, { NV12, 1366, 768, 30, 1 },
	};
	CHECK_INT(choose(odd, 2, 640, 360, 24, 0, &c), 0);
	CHECK(c.width == 352 && c.height == 288 && c.fps_num == 30); /* the largest below */
	CHECK_INT(choose(odd, N(odd), 1280, 720, 30, 0, &c), 0);
	CHECK(c.width == 1280 && c.height == 800);                     /* covers, smallest */
	CHECK_INT(choose(odd, N(odd), 640, 360, 24, 0, &c), 0);
	CHECK(c.width == 1024 && c.height == 768);

	/* Fractional rates: 30000/1001 serves 30 (within 1 %), 25 does not;
	 * the lowest that reaches is taken, not the highest. */
	const struct media_v4l2_mode fr[] = {
		{ YUYV, 640, 360, 60, 1 }, { YUYV, 640, 360, 30000, 1001 }, { YUYV, 640, 360, 120, 1 },
		{ YU12, 640, 360, 25, 1 },
	};
	CHECK_INT(choose(fr, N(fr), 640, 360, 30, 0, &c), 0);
	CHECK(c.fourcc == YUYV && c.fps_num == 30000 && c.fps_den == 1001);
	/* YU12 reaches 24: it is the cheapest raw format and wins */
	CHECK_INT(choose(fr, N(fr), 640, 360, 24, 0, &c), 0);
	CHECK(c.fourcc == YU12 && c.fps_num == 25);
	/* none reaches: the highest rate, raw before MJPEG on a tie */
	const struct media_v4l2_mode slow[] = {
		{ MJPG, 640, 360, 15, 1 }, { YUYV, 640, 360, 15, 1 }, { YUYV, 640, 360, 5, 1 },
	};
	CHECK_INT(choose(slow, N(slow), 640, 360, 30, 0, &c), 0);
	CHECK(c.fourcc == YUYV && c.fps_num == 15);

	/* Nothing usable: unknown formats, zero rates, absurd sizes */
	const struct media_v4l2_mode none[] = {
		{ H264, 640, 360, 30, 1 }, { YUYV, 640, 360, 0, 1 }, { YUYV, 640, 360, 30, 0 },
		{ YUYV, 100000, 360, 30, 1 }, { YUYV, 8, 8, 30, 1 },
	};
	CHECK_INT(choose(none, N(none), 640, 360, 30, 0, &c), -1);
	CHECK_INT(choose(none, 0, 640, 360, 30, 0, &c), -1);

	CHECK(media_v4l2_format_parse("yuyv") == YUYV && media_v4l2_format_parse("mjpeg") == MJPG &&
	      media_v4l2_format_parse("i420") == YU12 && media_v4l2_format_parse("nv12") == NV12 &&
	      media_v4l2_format_parse("rgb") == 0 && media_v4l2_format_parse(NULL) == 0);
	char name[5];
	CHECK_STR(media_v4l2_format_name(MJPG, name), "MJPG");
}

static void test_fit(void)
{
	int w, h;
	media_v4l2_fit(640, 480, 1280, 720, &w, &h); /* inside the box: as delivered */
	CHECK(w == 640 && h == 480);
	media_v4l2_fit(1920, 1080, 1280, 720, &w, &h); /* larger: into the box */
	CHECK(w == 1280 && h == 720);
	media_v4l2_fit(640, 480, 640, 360, &w, &h); /* 4:3 into a 16:9 box */
	CHECK(w == 480 && h == 360);
	media_v4l2_fit(1366, 768, 640, 360, &w, &h); /* odd result made even */
	CHECK(w == 640 && h == 358);
	media_v4l2_fit(175, 143, 640, 360, &w, &h);
	CHECK(w == 174 && h == 142);
}

static void test_clock(void)
{
	struct media_v4l2_clock c;
	const int64_t zero = 1000LL * 1000000000LL;
	/* Driver timestamps recorded from a 30 fps camera (uvcvideo, in ns of
	 * CLOCK_MONOTONIC): the frames are dequeued 2-9 ms after capture, with
	 * jitter; the pts follow the driver, not the dequeue time. */
	const int64_t drv[] = { 1000033366000, 1000066699000, 1000100032000, 1000133366000, 1000166699000 };
	const int64_t deq[] = { 1000041000000, 1000068900000, 1000109000000, 1000135000000, 1000175100000 };
	media_v4l2_clock_init(&c, zero);
	for (int i = 0; i < 5; i++)
		CHECK(media_v4l2_clock_pts(&c, drv[i], true, deq[i]) == drv[i] - zero);
	CHECK(c.fallbacks == 0 && c.fixed == 0);

	/* A gap: the camera was away 3.2 s; the next frames continue later,
	 * never before the last one. */
	int64_t back = 1003400000000;
	CHECK(media_v4l2_clock_pts(&c, back, true, back + 4000000) == back - zero);
	/* a driver that restarts its sequence with an older timestamp (a
	 * frame from before the gap) is moved after the last one */
	CHECK(media_v4l2_clock_pts(&c, back - 30000000, true, back + 5000000) == back - zero + 1000000);
	CHECK(c.fixed == 1);

	/* No monotonic flag (e.g. V4L2_BUF_FLAG_TIMESTAMP_COPY): dequeue time */
	media_v4l2_clock_init(&c, zero);
	CHECK(media_v4l2_clock_pts(&c, 12345, false, zero + 50000000) == 50000000);
	CHECK(c.fallbacks == 1);
	/* 20 ms ahead of the dequeue (vivid stamps the frame's nominal time): believed */
	CHECK(media_v4l2_clock_pts(&c, zero + 70000000, true, zero + 50000000) == 70000000);
	CHECK(c.fallbacks == 1);
	/* flagged monotonic but 800 ms from the future, or 5 s stale: not believed */
	CHECK(media_v4l2_clock_pts(&c, zero + 900000000, true, zero + 100000000) == 100000000);
	CHECK(media_v4l2_clock_pts(&c, zero - 4900000000LL, true, zero + 150000000) == 150000000);
	CHECK(c.fallbacks == 3);
	/* a frame captured before the zero counts from 0 */
	media_v4l2_clock_init(&c, zero);
	CHECK(media_v4l2_clock_pts(&c, zero - 5000000, true, zero + 1000000) == 0);

	/* On the grid (the rate known): the recorded 30 fps timestamps land on
	 * exact multiples of 1/30 s from the first frame. */
	media_v4l2_clock_init(&c, zero);
	media_v4l2_clock_set_rate(&c, 30, 1);
	for (int i = 0; i < 5; i++)
		CHECK(media_v4l2_clock_pts(&c, drv[i], true, deq[i]) == drv[0] - zero + (i * 100000000LL + 1) / 3);
	/* after a 3.2 s gap the grid goes on where the time is */
	int64_t p = media_v4l2_clock_pts(&c, back, true, back + 4000000);
	CHECK(p >= back - zero - 16666667 && p <= back - zero + 16666667);
	int64_t slot = (int64_t)llround((double)(p - (drv[0] - zero)) * 30 / 1e9);
	CHECK(p - (drv[0] - zero) == (int64_t)llround((double)slot * 1e9 / 30));

	/* A driver stamping when it filled the buffer (vivid under load), 25 fps
	 * from 100 ms: frames bunched after a late one: one past a quarter of
	 * a taken slot goes to the next, one short of it is left out. */
	const int64_t ms = 1000000;
	media_v4l2_clock_init(&c, zero);
	media_v4l2_clock_set_rate(&c, 25, 1);
	CHECK(media_v4l2_clock_pts(&c, zero + 100 * ms, true, zero + 101 * ms) == 100 * ms); /* slot 0 */
	CHECK(media_v4l2_clock_pts(&c, zero + 141 * ms, true, zero + 142 * ms) == 140 * ms); /* 1 */
	CHECK(media_v4l2_clock_pts(&c, zero + 178 * ms, true, zero + 179 * ms) == 180 * ms); /* 2 */
	CHECK(media_v4l2_clock_pts(&c, zero + 192 * ms, true, zero + 193 * ms) == 220 * ms); /* 2.3: to 3 */
	CHECK(media_v4l2_clock_pts(&c, zero + 205 * ms, true, zero + 206 * ms) == -1);       /* 2.6: 3 is taken */
	CHECK(c.dropped == 1 && c.fixed == 1);
	CHECK(media_v4l2_clock_pts(&c, zero + 262 * ms, true, zero + 263 * ms) == 260 * ms); /* 4 */

	/* A camera 0.25 % faster than its nominal 25 fps, for 2000 frames:
	 * every pts on the grid and increasing, never more than 3/4 of a
	 * period ahead of the real time nor behind it by half of one; about
	 * 2000 x 0.0025 = 5 frames left out. */
	media_v4l2_clock_init(&c, zero);
	media_v4l2_clock_set_rate(&c, 25, 1);
	int64_t last = -1, worst_ahead = 0, worst_behind = 0;
	bool ok = true;
	for (int i = 0; i < 2000; i++) {
		int64_t t = zero + 1000 * ms + (int64_t)i * 39900000;
		int64_t q = media_v4l2_clock_pts(&c, t, true, t + 3 * ms);
		if (q < 0)
			continue;
		ok &= q > last && (q - 1000 * ms) % (40 * ms) == 0;
		last = q;
		int64_t d = q - (t - zero);
		worst_ahead = d > worst_ahead ? d : worst_ahead;
		worst_behind = -d > worst_behind ? -d : worst_behind;
	}
	CHECK(ok);
	CHECK(worst_ahead <= 30 * ms && worst_behind <= 20 * ms);
	CHECK(c.dropped >= 4 && c.dropped <= 6);
}

/* The mean of a plane, to see that a conversion carried the picture. */
static double mean(const uint8_t *p, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i];
	return s / (double)n;
}

static void test_convert_raw(void)
{
	struct media_v4l2_conv c;
	char err[200];
	const int w = 64, h = 48;
	uint8_t *dst = malloc((size_t)w * h * 3 / 2);

	/* YUYV: Y=200, U=100, V=150 everywhere, 16 bytes of padding per line */
	int stride = w * 2 + 16;
	uint8_t *yuyv = malloc((size_t)stride * h);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w * 2; x += 4) {
			uint8_t *p = yuyv + (size_t)y * stride + x;
			p[0] = 200, p[1] = 100, p[2] = 200, p[3] = 150;
		}
	CHECK_INT(media_v4l2_conv_init(&c, YUYV, w, h, stride, w, h, err, sizeof(err)), 0);
	CHECK_INT(media_v4l2_convert(&c, yuyv, (size_t)stride * h, dst, err, sizeof(err)), 0);
	CHECK(mean(dst, (size_t)w * h) == 200.0);
	CHECK(mean(dst + w * h, (size_t)w * h / 4) == 100.0);
	CHECK(mean(dst + w * h * 5 / 4, (size_t)w * h / 4) == 150.0);
	/* a short frame is refused, not read past */
	CHECK_INT(media_v4l2_convert(&c, yuyv, (size_t)stride * h - 1, dst, err, sizeof(err)), -1);
	CHECK(strstr(err, "needs") != NULL);
	media_v4l2_conv_deinit(&c);

	/* NV12 scaled down into 32x24 */
	uint8_t *nv12 = malloc((size_t)w * h * 3 / 2);
	memset(nv12, 80, (size_t)w * h);
	for (int i = 0; i < w * h / 2; i += 2)
		nv12[w * h + i] = 90, nv12[w * h + i + 1] = 170;
	CHECK_INT(media_v4l2_conv_init(&c, NV12, w, h, 0, 32, 24, err, sizeof(err)), 0);
	CHECK_INT(media_v4l2_convert(&c, nv12, (size_t)w * h * 3 / 2, dst, err, sizeof(err)), 0);
	CHECK(mean(dst, 32 * 24) == 80.0 && mean(dst + 32 * 24, 16 * 12) == 90.0 &&
	      mean(dst + 32 * 24 * 5 / 4, 16 * 12) == 170.0);
	CHECK_INT(media_v4l2_convert(&c, nv12, (size_t)w * h, dst, err, sizeof(err)), -1);
	media_v4l2_conv_deinit(&c);

	/* YU12 copied */
	CHECK_INT(media_v4l2_conv_init(&c, YU12, w, h, 0, w, h, err, sizeof(err)), 0);
	memset(nv12, 33, (size_t)w * h * 3 / 2);
	CHECK_INT(media_v4l2_convert(&c, nv12, (size_t)w * h * 3 / 2, dst, err, sizeof(err)), 0);
	CHECK(mean(dst, (size_t)w * h * 3 / 2) == 33.0);
	media_v4l2_conv_deinit(&c);

	/* an unknown format or an odd output size is refused at init */
	CHECK_INT(media_v4l2_conv_init(&c, H264, w, h, 0, w, h, err, sizeof(err)), -1);
	CHECK_INT(media_v4l2_conv_init(&c, YUYV, w, h, 0, 33, 24, err, sizeof(err)), -1);
	free(nv12);
	free(yuyv);
	free(dst);
}

static uint8_t *read_fixture(const char *name, size_t *len)
{
	char path[1024];
	const char *dir = getenv("EDGEREC_SOURCE_DIR");
	snprintf(path, sizeof(path), "%s/tests/fixtures/media/%s", dir ? dir : ".", name);
	FILE *f = fopen(path, "rb");
	CHECK(f != NULL);
	uint8_t *d = malloc(1 << 16);
	*len = fread(d, 1, 1 << 16, f);
	fclose(f);
	return d;
}

static void test_convert_mjpeg(void)
{
	struct media_v4l2_conv c;
	char err[200];
	size_t len422, len420;
	/* ffmpeg's testsrc as 4:2:2 (what UVC cameras send) and 4:2:0 JPEGs */
	uint8_t *j422 = read_fixture("mjpeg_64x48_422.jpg", &len422);
	uint8_t *j420 = read_fixture("mjpeg_32x24_420.jpg", &len420);
	uint8_t *dst = calloc(1, 64 * 48 * 3 / 2);

	CHECK_INT(media_v4l2_conv_init(&c, MJPG, 64, 48, 0, 64, 48, err, sizeof(err)), 0);
	CHECK_INT(media_v4l2_convert(&c, j422, len422, dst, err, sizeof(err)), 0);
	CHECK(c.last_width == 64 && c.last_height == 48);
	/* testsrc has colour bars: the picture is not flat */
	double m = mean(dst, 64 * 48);
	CHECK(m > 40 && m < 220);
	int distinct = 0;
	for (int i = 1; i < 64; i++)
		distinct += dst[i] != dst[i - 1];
	CHECK(distinct >= 3);

	/* a frame of another size than the camera's (32x24 where 64x48 was
	 * agreed): decoded at its size and scaled to the recorded one */
	memset(dst, 0, 64 * 48 * 3 / 2);
	CHECK_INT(media_v4l2_convert(&c, j420, len420, dst, err, sizeof(err)), 0);
	CHECK(c.last_width == 32 && c.last_height == 24);
	CHECK(mean(dst, 64 * 48) > 40);

	/* hostile frames: truncated, not a JPEG, garbage after SOI, a header
	 * claiming 9000x9000 */
	CHECK_INT(media_v4l2_convert(&c, j422, 3, dst, err, sizeof(err)), -1);
	CHECK_INT(media_v4l2_convert(&c, (const uint8_t *)"\x00\x01\x02\x03\x04\x05", 6, dst, err, sizeof(err)), -1);
	uint8_t junk[256];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	junk[0] = 0xff, junk[1] = 0xd8;
	CHECK_INT(media_v4l2_convert(&c, junk, sizeof(junk), dst, err, sizeof(err)), -1);
	uint8_t *big = malloc(len422);
	memcpy(big, j422, len422);
	int patched = 0;
	for (size_t i = 0; i + 9 < len422; i++)
		if (big[i] == 0xff && big[i + 1] == 0xc0) { /* SOF0: height, width at +5, +7 */
			big[i + 5] = 0x23, big[i + 6] = 0x28, big[i + 7] = 0x23, big[i + 8] = 0x28; /* 9000x9000 */
			patched = 1;
			break;
		}
	CHECK(patched);
	CHECK_INT(media_v4l2_convert(&c, big, len422, dst, err, sizeof(err)), -1);
	CHECK(strstr(err, "refused") != NULL);
	/* a good frame after bad ones decodes (the decoder is not left broken) */
	CHECK_INT(media_v4l2_convert(&c, (const uint8_t *)junk, sizeof(junk), dst, err, sizeof(err)), -1);
	CHECK_INT(media_v4l2_convert(&c, j422, len422, dst, err, sizeof(err)), 0);
	/* a truncated real frame either decodes (libjpeg pads it) or is refused; never read past */
	uint8_t *half = malloc(len422 / 2);
	memcpy(half, j422, len422 / 2);
	int r = media_v4l2_convert(&c, half, len422 / 2, dst, err, sizeof(err));
	CHECK(r == 0 || r == -1);
	media_v4l2_conv_deinit(&c);
	free(half);
	free(big);
	free(dst);
	free(j420);
	free(j422);
}

int main(void)
{
	test_choose();
	test_fit();
	test_clock();
	test_convert_raw();
	test_convert_mjpeg();
	return check_exit();
}
