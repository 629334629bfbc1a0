/* itest_storage_media: the file steps on recordings made by ffmpeg in the
 * test (VP9/Opus Matroska, VP8/Opus WebM): the MP4 remux checked with
 * ffprobe (container, codecs, duration, no re-encode) and for faststart
 * (moov before mdat), thumbnails checked as JPEG by ffprobe (codec and size),
 * file facts against sha256sum, and clean failures (VP8 cannot go into
 * MP4; a truncated file). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "storage.h"

static char work[] = "/tmp/itest_storage_media.XXXXXX";

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	if (rc != 0)
		fprintf(stderr, "itest: '%s' exited %d\n", cmd, rc);
	return rc;
}

/* Runs a command and returns its output in a static buffer. */
static const char *output(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *output(const char *fmt, ...)
{
	static char out[8192];
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	out[0] = '\0';
	FILE *p = popen(cmd, "r");
	if (!p)
		return out;
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	pclose(p);
	return out;
}

/* The value of "key=" in ffprobe's flat output, for stream 'index' when
 * index >= 0 ("streams.stream.0.codec_name"), else of the format. */
static double probe_num(const char *path, const char *entry)
{
	const char *o = output("ffprobe -v error -show_entries %s -of default=nw=1:nk=1 '%s'", entry, path);
	return atof(o);
}

static const char *probe_streams(const char *path)
{
	return output("ffprobe -v error -show_entries stream=codec_name,width,height "
		      "-of csv=p=0 '%s' | tr '\\n' ' '", path);
}

/* Reads the top-level MP4 box types in order into 'out' ("ftyp moov mdat"). */
static void mp4_boxes(const char *path, char *out, size_t outlen)
{
	FILE *f = fopen(path, "rb");
	out[0] = '\0';
	if (!f)
		return;
	unsigned char h[16];
	long long off = 0;
	while (fseeko(f, off, SEEK_SET) == 0 && fread(h, 1, 8, f) == 8) {
		unsigned long long size = ((unsigned long long)h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3];
		if (size == 1) {
			if (fread(h + 8, 1, 8, f) != 8)
				break;
			size = 0;
			for (int i = 8; i < 16; i++)
				size = (size << 8) | h[i];
		}
		if (size < 8)
			break;
		if (strlen(out) + 6 < outlen) {
			size_t l = strlen(out);
			memcpy(out + l, h + 4, 4);
			out[l + 4] = ' ';
			out[l + 5] = '\0';
		}
		off += (long long)size;
	}
	fclose(f);
}

static void progress_count(void *opaque, const char *step, double pct)
{
	int *n = opaque;
	(*n)++;
}

static void test_vp9_mkv(void)
{
	char mkv[300], mp4[300], jpg[300], boxes[128], err[512];
	snprintf(mkv, sizeof(mkv), "%s/recording_a.mkv", work);
	snprintf(mp4, sizeof(mp4), "%s/recording_a.mp4", work);
	snprintf(jpg, sizeof(jpg), "%s/thumbnail.jpg", work);
	if (run("ffmpeg -v error -y -f lavfi -i testsrc=size=640x360:rate=25 -f lavfi "
		"-i sine=frequency=440:sample_rate=48000 -t 3 -c:v libvpx-vp9 -deadline realtime "
		"-cpu-used 8 -g 50 -b:v 400k -c:a libopus -b:a 64k '%s'", mkv) != 0) {
		CHECK(!"ffmpeg could not make the VP9 fixture");
		return;
	}
	int calls = 0;
	struct storage_job job = { .input_path = mkv, .mp4_path = mp4, .thumbnail_path = jpg,
				   .progress = progress_count, .opaque = &calls };
	CHECK_INT(storage_step_remux(&job, err, sizeof(err)), 0);
	CHECK(calls >= 1);
	char part[310];
	snprintf(part, sizeof(part), "%s.part", mp4);
	CHECK(access(part, F_OK) != 0);
	const char *fmt = output("ffprobe -v error -show_entries format=format_name -of default=nw=1:nk=1 '%s'", mp4);
	CHECK(strstr(fmt, "mp4") != NULL);
	const char *streams = probe_streams(mp4);
	fprintf(stderr, "itest: mp4 streams: %s\n", streams);
	CHECK(strstr(streams, "vp9,640,360") != NULL);
	CHECK(strstr(streams, "opus") != NULL);
	double dur = probe_num(mp4, "format=duration");
	CHECK(dur > 2.8 && dur < 3.2);
	mp4_boxes(mp4, boxes, sizeof(boxes));
	fprintf(stderr, "itest: mp4 boxes: %s\n", boxes);
	CHECK(strstr(boxes, "moov") && strstr(boxes, "mdat") && strstr(boxes, "moov") < strstr(boxes, "mdat"));
	/* No re-encode: the same number of video packets in and out. */
	double in_pk = probe_num(mkv, "stream=nb_read_packets -count_packets -select_streams v:0");
	double out_pk = probe_num(mp4, "stream=nb_read_packets -count_packets -select_streams v:0");
	CHECK(in_pk > 50 && in_pk == out_pk);

	int w = 0, h = 0;
	CHECK_INT(storage_step_thumbnail(&job, &w, &h, err, sizeof(err)), 0);
	CHECK_INT(w, 320);
	CHECK_INT(h, 180);
	const char *jstreams = probe_streams(jpg);
	fprintf(stderr, "itest: thumbnail: %s\n", jstreams);
	CHECK(strstr(jstreams, "mjpeg,320,180") != NULL);
	/* The JPEG decodes to a picture (testsrc is colourful, not flat). */
	const char *ystat = output("ffprobe -v error -f lavfi -i 'movie=%s,signalstats' "
				  "-show_entries frame_tags=lavfi.signalstats.YAVG -of default=nw=1:nk=1", jpg);
	double yavg = atof(ystat);
	CHECK(yavg > 20 && yavg < 235);

	/* Unwritable destinations fail with the path in the message. */
	struct storage_job bad = { .input_path = mkv, .mp4_path = "/nonexistent/dir/a.mp4",
				   .thumbnail_path = "/nonexistent/dir/t.jpg" };
	CHECK_INT(storage_step_thumbnail(&bad, NULL, NULL, err, sizeof(err)), STORAGE_ERR_IO);
	CHECK(strstr(err, "/nonexistent/dir/t.jpg") != NULL);
	CHECK(storage_step_remux(&bad, err, sizeof(err)) < 0);
	CHECK(strstr(err, "/nonexistent/dir/a.mp4") != NULL);

	job.thumbnail_width = 100;
	CHECK_INT(storage_step_thumbnail(&job, &w, &h, err, sizeof(err)), 0);
	CHECK_INT(w, 100);
	CHECK_INT(h, 56);
	CHECK(strstr(probe_streams(jpg), "mjpeg,100,56") != NULL);

	struct storage_facts f;
	CHECK_INT(storage_file_facts(mp4, &f, err, sizeof(err)), 0);
	const char *sum = output("sha256sum '%s'", mp4);
	CHECK(strncmp(sum, f.sha256, 64) == 0);
	struct stat sb;
	stat(mp4, &sb);
	CHECK_INT(f.size_bytes, sb.st_size);
	CHECK_STR(f.video_codec, "vp9");
	CHECK_STR(f.audio_codec, "opus");
	CHECK_INT(f.width, 640);
	CHECK_INT(f.height, 360);
	CHECK(f.duration_ms > 2800 && f.duration_ms < 3200);
	CHECK(strstr(f.container, "mp4") != NULL);

	/* A truncated recording (the writer crashed) fails with a message or
	 * remuxes what is there; it never crashes and never leaves a .part. */
	char cut[300];
	snprintf(cut, sizeof(cut), "%s/cut.mkv", work);
	run("head -c 20000 '%s' > '%s'", mkv, cut);
	struct storage_job cj = { .input_path = cut, .mp4_path = mp4, .thumbnail_path = jpg };
	int rc = storage_step_remux(&cj, err, sizeof(err));
	fprintf(stderr, "itest: truncated input remux -> %d %s\n", rc, rc ? err : "");
	CHECK(access(part, F_OK) != 0);
}

static void test_vp8_webm(void)
{
	char webm[300], mp4[300], jpg[300], err[512];
	snprintf(webm, sizeof(webm), "%s/recording_b.webm", work);
	snprintf(mp4, sizeof(mp4), "%s/recording_b.mp4", work);
	snprintf(jpg, sizeof(jpg), "%s/thumb_b.jpg", work);
	if (run("ffmpeg -v error -y -f lavfi -i testsrc=size=320x240:rate=15 -f lavfi "
		"-i sine=sample_rate=48000 -t 0.6 -c:v libvpx -deadline realtime -cpu-used 8 "
		"-b:v 200k -c:a libopus '%s'", webm) != 0) {
		CHECK(!"ffmpeg could not make the VP8 fixture");
		return;
	}
	/* Shorter than the thumbnail time: the last frame before it is used. */
	struct storage_job job = { .input_path = webm, .mp4_path = mp4, .thumbnail_path = jpg };
	int w = 0, h = 0;
	CHECK_INT(storage_step_thumbnail(&job, &w, &h, err, sizeof(err)), 0);
	CHECK(strstr(probe_streams(jpg), "mjpeg,320,240") != NULL);
	struct storage_facts f;
	CHECK_INT(storage_file_facts(webm, &f, err, sizeof(err)), 0);
	CHECK_STR(f.video_codec, "vp8");
	CHECK_INT(f.width, 320);
	/* VP8 has no MP4 mapping in libavformat: a clear error, nothing left. */
	int rc = storage_step_remux(&job, err, sizeof(err));
	fprintf(stderr, "itest: vp8 to mp4 -> %d %s\n", rc, err);
	if (rc < 0) {
		CHECK(access(mp4, F_OK) != 0);
		CHECK(err[0] != '\0');
	} else {
		CHECK(strstr(probe_streams(mp4), "vp8") != NULL);
	}
}

static void test_audio_only(void)
{
	char ogg[300], jpg[300], err[512];
	snprintf(ogg, sizeof(ogg), "%s/audio.webm", work);
	snprintf(jpg, sizeof(jpg), "%s/audio.jpg", work);
	if (run("ffmpeg -v error -y -f lavfi -i sine=sample_rate=48000 -t 1 -c:a libopus '%s'", ogg) != 0)
		return;
	struct storage_job job = { .input_path = ogg, .thumbnail_path = jpg };
	CHECK_INT(storage_step_thumbnail(&job, NULL, NULL, err, sizeof(err)), STORAGE_ERR_MEDIA);
	CHECK(strstr(err, "no video") != NULL);
	CHECK(access(jpg, F_OK) != 0);
}

/* Remux time per recorded minute for scripts/bench.d/40-storage: a
 * 'seconds'-long 1280x720 VP9/Opus recording made by ffmpeg, remuxed by
 * edgerec and, as the peer, by `ffmpeg -c copy -movflags +faststart`. */
static int bench_remux(int seconds)
{
	char mkv[300], mp4[300], peer[300], err[512];
	snprintf(mkv, sizeof(mkv), "%s/bench.mkv", work);
	snprintf(mp4, sizeof(mp4), "%s/bench.mp4", work);
	snprintf(peer, sizeof(peer), "%s/peer.mp4", work);
	if (run("ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi "
		"-i sine=sample_rate=48000 -t %d -c:v libvpx-vp9 -deadline realtime -cpu-used 8 "
		"-row-mt 1 -b:v 2500k -g 60 -c:a libopus -b:a 128k '%s'", seconds, mkv) != 0)
		return 1;
	struct stat sb;
	stat(mkv, &sb);
	struct storage_job job = { .input_path = mkv, .mp4_path = mp4 };
	int64_t t0 = time_mono_ns();
	if (storage_step_remux(&job, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	double s = (double)(time_mono_ns() - t0) / 1e9;
	t0 = time_mono_ns();
	int rc = run("ffmpeg -v error -y -i '%s' -c copy -movflags +faststart '%s'", mkv, peer);
	double ps = (double)(time_mono_ns() - t0) / 1e9;
	printf("remux VP9/Opus mkv -> mp4 (%d s, 720p, %.1f MB)  %8s %14s\n", seconds, sb.st_size / 1e6,
	       "seconds", "s per rec. min");
	printf("%-48s %8.3f %14.3f\n", "edgerec storage_step_remux", s, s * 60.0 / seconds);
	if (rc == 0)
		printf("%-48s %8.3f %14.3f\n", "peer: ffmpeg -c copy -movflags +faststart", ps, ps * 60.0 / seconds);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
		log_set_level(LOG_LEVEL_WARN);
		if (!mkdtemp(work))
			return 1;
		int rc = bench_remux(argc > 2 ? atoi(argv[2]) : 60);
		util_rm_rf(work);
		return rc;
	}
	log_set_level(-1);
	if (!mkdtemp(work))
		return 1;
	test_vp9_mkv();
	test_vp8_webm();
	test_audio_only();
	util_rm_rf(work);
	return check_exit();
}
