/* test_media_keysize: an encoded (passthrough) video track takes its size
 * from the first keyframe, not from the preset; the muxer accepts a size
 * change only before its header is written; a live recording that never got
 * a frame ends with a clear error instead of a broken file. Driven with
 * synthetic RTP on loopback. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common_time.h"
#include "common_util.h"
#include "media.h"
#include "media_mux.h"
#include "media_rtp.h"

static char tmpdir[256];

/* A VP8 keyframe as far as its header goes (RFC 6386 9.1): frame tag with
 * the key bit clear, start code, 14-bit width and height, then filler. */
static size_t fake_vp8_key(uint8_t *out, int w, int h)
{
	size_t n = 64;
	memset(out, 0x5a, n);
	out[0] = 0x10; /* key frame, version 0, show_frame */
	out[1] = 0x02;
	out[2] = 0x00;
	out[3] = 0x9d;
	out[4] = 0x01;
	out[5] = 0x2a;
	out[6] = (uint8_t)(w & 0xff);
	out[7] = (uint8_t)(w >> 8);
	out[8] = (uint8_t)(h & 0xff);
	out[9] = (uint8_t)(h >> 8);
	return n;
}

static void test_mux_size(void)
{
	char path[300], err[256];
	uint8_t frame[64];
	struct media_file_info info;
	snprintf(path, sizeof(path), "%s/size.webm", tmpdir);
	struct media_mux *m = media_mux_webm.open(path, "webm", err, sizeof(err));
	CHECK(m != NULL);
	if (!m)
		return;
	struct media_mux_track vt = { .kind = MEDIA_KIND_VIDEO, .codec = MEDIA_CODEC_VP8, .width = 640,
				      .height = 360, .fps = 30 };
	int track = media_mux_webm.add_track(m, &vt);
	CHECK(track >= 1);
	CHECK_INT(media_mux_webm.set_video_size(m, track, 0, 240), -1);
	CHECK_INT(media_mux_webm.set_video_size(m, track + 5, 320, 240), -1);
	CHECK_INT(media_mux_webm.set_video_size(m, track, 320, 240), 0);
	size_t n = fake_vp8_key(frame, 320, 240);
	CHECK_INT(media_mux_webm.write(m, track, frame, n, 0, true), 0);
	CHECK_INT(media_mux_webm.write(m, track, frame, n, 33 * TIME_NS_PER_MS, true), 0);
	/* The header is on disk: too late. */
	CHECK_INT(media_mux_webm.set_video_size(m, track, 800, 600), -1);
	CHECK_INT(media_mux_webm.close(m, 0, err, sizeof(err)), 0);
	CHECK_INT(media_file_probe(path, &info, err, sizeof(err)), 0);
	CHECK_INT(info.width, 320);
	CHECK_INT(info.height, 240);
}

static void send_rtp_key(int fd, int port, uint16_t seq, uint32_t ts, int w, int h)
{
	uint8_t pkt[128];
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	pkt[0] = 0x80;
	pkt[1] = 0x80 | 96; /* marker: the frame is one packet */
	pkt[2] = (uint8_t)(seq >> 8);
	pkt[3] = (uint8_t)seq;
	pkt[4] = (uint8_t)(ts >> 24);
	pkt[5] = (uint8_t)(ts >> 16);
	pkt[6] = (uint8_t)(ts >> 8);
	pkt[7] = (uint8_t)ts;
	memcpy(pkt + 8, "\x12\x34\x56\x78", 4);
	pkt[12] = 0x10; /* VP8 descriptor: S=1, PID=0 */
	size_t n = fake_vp8_key(pkt + 13, w, h);
	sendto(fd, pkt, 13 + n, 0, (struct sockaddr *)&to, sizeof(to));
}

static struct media_pipeline *rtp_pipeline(const char *name, int port, char *path, size_t plen)
{
	char args[128], err[256];
	snprintf(path, plen, "%s/%s.webm", tmpdir, name);
	snprintf(args, sizeof(args), "video_port=%d,bind=127.0.0.1,latency_ms=20", port);
	struct media_pipeline_config cfg = {
		.source = "rtp",
		.source_args = args,
		.preset = media_preset_find("medium"),
		.format = "webm",
		.output_path = path,
	};
	struct media_pipeline *p = media_pipeline_new(&cfg, err, sizeof(err));
	CHECK(p != NULL);
	if (p && media_pipeline_start(p, err, sizeof(err)) < 0) {
		fprintf(stderr, "start: %s\n", err);
		CHECK(0);
		media_pipeline_free(p);
		return NULL;
	}
	return p;
}

static void test_pipeline_key_size(int port)
{
	char path[300], err[256] = "";
	struct media_file_info info;
	struct media_stats st;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct media_pipeline *p = rtp_pipeline("keysize", port, path, sizeof(path));
	if (!p) {
		close(fd);
		return;
	}
	for (int i = 0; i < 10; i++) {
		send_rtp_key(fd, port, (uint16_t)(1000 + i), 90000u + (uint32_t)i * 3000u, 176, 144);
		time_sleep_ns(33 * TIME_NS_PER_MS);
	}
	time_sleep_ns(300 * TIME_NS_PER_MS);
	CHECK_INT(media_pipeline_stop(p, err, sizeof(err)), 0);
	media_pipeline_stats(p, &st);
	CHECK(st.video_frames_encoded >= 5);
	CHECK_INT(st.video_width, 176);
	CHECK_INT(st.video_height, 144);
	media_pipeline_free(p);
	close(fd);
	CHECK_INT(media_file_probe(path, &info, err, sizeof(err)), 0);
	CHECK_INT(info.width, 176);   /* the preset says 1280x720 */
	CHECK_INT(info.height, 144);
}

static void test_pipeline_nothing(int port)
{
	char path[300], err[256] = "";
	struct stat sb;
	struct media_pipeline *p = rtp_pipeline("nothing", port, path, sizeof(path));
	if (!p)
		return;
	time_sleep_ns(200 * TIME_NS_PER_MS);
	CHECK(media_pipeline_stop(p, err, sizeof(err)) < 0);
	CHECK(strstr(err, "nothing was recorded") != NULL);
	CHECK(stat(path, &sb) != 0); /* no header-only file left behind */
	media_pipeline_free(p);
}

int main(void)
{
	int ports[2];
	char err[256];
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_media_keysize.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_mux_size();
	if (media_rtp_ports_alloc(46000, 46999, 2, ports, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		CHECK(0);
	} else {
		test_pipeline_key_size(ports[0]);
		test_pipeline_nothing(ports[1]);
		media_rtp_ports_release(ports, 2);
	}
	util_rm_rf(tmpdir);
	return check_exit();
}
