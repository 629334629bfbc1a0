/* fuzz_media_mjpeg: MJPEG frames from a hostile camera, through the v4l2
 * source's decode path to I420 (header check, TurboJPEG decode at the
 * JPEG's subsampling, libyuv conversion and scaling). The first byte picks
 * the camera's agreed size, so both the direct and the scaling path run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "media_v4l2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int sizes[4][2] = { { 64, 48 }, { 32, 24 }, { 320, 240 }, { 16, 16 } };
	struct media_v4l2_conv c;
	char err[200];
	if (size < 1)
		return 0;
	const int *cam = sizes[data[0] & 3];
	int out_w = data[0] & 4 ? cam[0] / 2 : cam[0], out_h = data[0] & 4 ? cam[1] / 2 : cam[1];
	if (media_v4l2_conv_init(&c, MEDIA_V4L2_MJPG, cam[0], cam[1], 0, out_w & ~1, out_h & ~1, err, sizeof(err)) < 0)
		return 0;
	/* the frame in a buffer of its own size, as a mapped V4L2 buffer would be */
	uint8_t *frame = malloc(size - 1 ? size - 1 : 1);
	uint8_t *dst = malloc((size_t)out_w * out_h * 3 / 2 + 1);
	if (frame && dst) {
		memcpy(frame, data + 1, size - 1);
		/* twice: a decoder left broken by the first would show */
		media_v4l2_convert(&c, frame, size - 1, dst, err, sizeof(err));
		media_v4l2_convert(&c, frame, size - 1, dst, err, sizeof(err));
	}
	free(dst);
	free(frame);
	media_v4l2_conv_deinit(&c);
	return 0;
}
