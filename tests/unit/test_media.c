/* test_media: unit tests of the media engine: presets and the real-time
 * rule, source argument parsing, the test source's markers, the muxer read
 * back by libwebm's parser (finalized, abandoned, repaired), and a whole
 * pipeline driven through the API (events, stats, faults). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common_time.h"
#include "common_util.h"
#include "media.h"
#include "media_enc.h"
#include "media_mux.h"
#include "media_source.h"

static char tmpdir[256];

static void test_presets(void)
{
	char err[256];
	const struct media_preset *p = media_preset_find("medium");
	CHECK(p != NULL);
	if (p) {
		CHECK_INT(p->width, 1280);
		CHECK_INT(p->height, 720);
		CHECK_INT(p->fps, 30);
		CHECK_INT(p->video_bps, 2500000);
		CHECK_INT(p->audio_bps, 128000);
		CHECK_STR(p->video_bitrate_text, "2.5M");
	}
	p = media_preset_find("low");
	CHECK(p && p->width == 854 && p->height == 480 && p->fps == 24 && p->video_bps == 1000000);
	p = media_preset_find("high");
	CHECK(p && p->width == 1920 && p->height == 1080 && p->fps == 30 && p->audio_bps == 192000);
	p = media_preset_find("ultra");
	CHECK(p && p->width == 3840 && p->height == 2160 && p->fps == 60 && p->video_bps == 15000000);
	CHECK(media_preset_find("Medium") == NULL);
	CHECK(media_preset_find("") == NULL);
	CHECK(media_preset_find(NULL) == NULL);

	CHECK_INT(media_preset_check(media_preset_find("low"), "webm", err, sizeof(err)), 0);
	CHECK_INT(media_preset_check(media_preset_find("high"), "mp4", err, sizeof(err)), 0);
	CHECK_INT(media_preset_check(media_preset_find("low"), "avi", err, sizeof(err)), -1);
	CHECK(strstr(err, "unknown format") != NULL);
	CHECK_INT(media_preset_check(NULL, "webm", err, sizeof(err)), -1);
	CHECK(strstr(err, "unknown quality") != NULL);
	if (sysconf(_SC_NPROCESSORS_ONLN) <= 3) {
		CHECK_INT(media_preset_check(media_preset_find("ultra"), "webm", err, sizeof(err)), -1);
		CHECK(strstr(err, "real time") != NULL);
	}
}

/* The node's encode ledger: reservations against the budget, what a source
 * costs, and encoder threads chosen from what is already open. */
static void test_encode_ledger(void)
{
	char err[256];
	const struct media_preset *medium = media_preset_find("medium");
	long long cost = media_encode_cost(medium, "test", "");
	CHECK(cost > media_preset_pixel_rate(medium));
	CHECK_INT(media_encode_cost(medium, "file", "video=a.y4m") == cost, 1);
	CHECK_INT(media_encode_cost(medium, "rtp", "") == 0, 1);
	CHECK_INT(media_encode_cost(medium, "test", "encoded=1") == 0, 1);
	CHECK_INT(media_encode_cost(medium, "test", "encoded=0") == cost, 1);

	/* Every start is booked at its dense cost; the quality speed while the
	 * booked rate plus its quality cost stays within half the budget.
	 * Budget: three quality costs, so its half holds one quality start but
	 * not a booking plus one: the first start is quality, the next ones
	 * dense until the bookings fill the budget, then refused. */
	long long qcost = media_encode_quality_cost(cost);
	CHECK(qcost > cost + cost / 2 && qcost < 2 * cost);
	CHECK_INT(media_encode_quality_cost(0) == 0, 1);
	long long budget = 3 * qcost;
	int fit = (int)(budget / cost);
	CHECK(fit >= 3 && fit < 8);
	media_encode_set_budget(budget);
	struct media_encode_load load;
	media_encode_load(&load);
	CHECK_INT(load.budget == budget, 1);
	CHECK_INT(load.reserved == 0 && load.recordings == 0, 1);
	struct media_encode_grant g[8];
	for (int i = 0; i < fit; i++) {
		CHECK_INT(media_encode_reserve(cost, &g[i], err, sizeof(err)), 0);
		CHECK_INT(g[i].rate == cost && g[i].dense == (i > 0), 1);
	}
	CHECK_INT(media_encode_reserve(cost, &g[fit], err, sizeof(err)), -1);
	CHECK_INT(g[fit].rate == 0, 1);
	CHECK(strstr(err, "recordings already") != NULL && strstr(err, "Mpixel/s") != NULL);
	struct media_encode_grant none;
	CHECK_INT(media_encode_reserve(0, &none, err, sizeof(err)), 0); /* passthrough: always */
	CHECK_INT(none.rate == 0 && !none.dense, 1);
	media_encode_release(none.rate);
	media_encode_load(&load);
	CHECK_INT(load.reserved == fit * cost && load.recordings == fit, 1);
	/* One ends: a start fits again, dense while the others are booked. */
	media_encode_release(g[fit - 1].rate);
	CHECK_INT(media_encode_reserve(cost, &g[fit - 1], err, sizeof(err)), 0);
	CHECK_INT(g[fit - 1].dense, 1);
	/* All end: the node is idle, the next start is quality. */
	for (int i = 0; i < fit; i++)
		media_encode_release(g[i].rate);
	CHECK_INT(media_encode_reserve(cost, &g[0], err, sizeof(err)), 0);
	CHECK_INT(!g[0].dense, 1);
	media_encode_release(g[0].rate);
	media_encode_load(&load);
	CHECK_INT(load.reserved == 0 && load.recordings == 0, 1);
	media_encode_set_budget(0);

	/* One thread each, whatever the count; a rate one core cannot encode
	 * gets more only when it is alone and within the cores. */
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int a = media_encode_threads_take(media_preset_pixel_rate(medium));
	CHECK_INT(a, 1);
	int b = media_encode_threads_take(media_preset_pixel_rate(media_preset_find("ultra")));
	CHECK_INT(b, 1);
	media_encode_load(&load);
	CHECK_INT(load.encoders, 2);
	CHECK_INT(load.threads, 2);
	media_encode_threads_give(a);
	media_encode_threads_give(b);
	int c = media_encode_threads_take(media_preset_pixel_rate(media_preset_find("ultra")));
	CHECK(c >= 1 && c <= (cores > 1 ? cores : 1));
	if (cores >= 2)
		CHECK(c >= 2);
	media_encode_threads_give(c);
	media_encode_load(&load);
	CHECK_INT(load.encoders, 0);
	CHECK_INT(load.threads, 0);
}

static void test_source_args(void)
{
	char v[64];
	CHECK(media_source_arg("a=1,bb=two,c", "bb", v, sizeof(v)));
	CHECK_STR(v, "two");
	CHECK(media_source_arg("a=1,bb=two,c", "a", v, sizeof(v)));
	CHECK_STR(v, "1");
	CHECK(media_source_arg("a=1,bb=two,c", "c", v, sizeof(v)));
	CHECK_STR(v, "");
	CHECK(!media_source_arg("a=1,bb=two,c", "b", v, sizeof(v)));
	CHECK(!media_source_arg(NULL, "a", v, sizeof(v)));
	CHECK(!media_source_arg("", "a", v, sizeof(v)));
	CHECK(media_source_arg("video=/x/y.y4m", "video", v, 4));
	CHECK_STR(v, "/x/");
	CHECK(media_source_find("test") == &media_source_test);
	CHECK(media_source_find("file") == &media_source_file);
	CHECK(media_source_find("nope") == NULL);
}

/* The test source: timestamps in order, a white frame and a beep on every
 * second, and nothing white or loud in between. */
static void test_source_markers(void)
{
	char err[256];
	struct media_source_params sp = { .width = 64, .height = 48, .fps = 10, .sample_rate = 48000,
					  .channels = 2, .realtime = false, .duration_ns = 2 * TIME_NS_PER_SEC };
	struct media_source *src = media_source_new(&media_source_test, &sp, err, sizeof(err));
	CHECK(src != NULL);
	if (!src)
		return;
	CHECK_INT(src->nb_streams, 2);
	int64_t last = -1;
	int video = 0, white = 0, loud_starts = 0;
	int64_t white_pts[4] = { 0 }, loud_pts[4] = { 0 };
	struct media_packet pkt;
	int r;
	bool was_loud = false;
	while ((r = src->driver->read(src, &pkt, -1)) == MEDIA_SOURCE_OK) {
		CHECK(pkt.pts_ns >= last);
		last = pkt.pts_ns;
		if (pkt.stream == 0) {
			CHECK_INT(pkt.data->size, 64 * 48 * 3 / 2);
			CHECK_INT(pkt.pts_ns, (int64_t)video * 100 * TIME_NS_PER_MS);
			long sum = 0;
			for (int i = 0; i < 64 * 48; i++)
				sum += pkt.data->data[i];
			if (sum / (64 * 48) > 200 && white < 4)
				white_pts[white++] = pkt.pts_ns;
			video++;
		} else {
			const int16_t *s = (const int16_t *)pkt.data->data;
			for (int i = 0; i < pkt.samples; i++) {
				bool loud = abs(s[2 * i]) > 4000;
				if (loud && !was_loud && loud_starts < 4)
					loud_pts[loud_starts++] = pkt.pts_ns + (int64_t)i * TIME_NS_PER_SEC / 48000;
				if (loud)
					was_loud = true;
				else if (abs(s[2 * i]) < 1000 && i > 0 && abs(s[2 * i - 2]) < 1000)
					was_loud = false;
			}
		}
		media_packet_clear(&pkt);
	}
	CHECK_INT(r, MEDIA_SOURCE_EOF);
	CHECK_INT(video, 20);
	CHECK_INT(white, 2);
	CHECK_INT(white_pts[0], 0);
	CHECK_INT(white_pts[1], TIME_NS_PER_SEC);
	CHECK_INT(loud_starts, 2);
	/* The beep's first loud sample is within a few samples of the flash. */
	CHECK(loud_pts[0] >= 0 && loud_pts[0] < TIME_NS_PER_MS / 4);
	CHECK(loud_pts[1] >= TIME_NS_PER_SEC && loud_pts[1] < TIME_NS_PER_SEC + TIME_NS_PER_MS / 4);
	media_source_free(src);
}

struct collect {
	struct media_mux *mux;
	int track;
	int packets, keys;
};

static int collect_out(void *opaque, struct media_enc_packet *pkt)
{
	struct collect *c = opaque;
	c->packets++;
	c->keys += pkt->keyframe;
	int r = media_mux_webm.write(c->mux, c->track, pkt->data->data, pkt->data->size,
				     pkt->pts_ns, pkt->keyframe);
	buf_unref(pkt->data);
	return r;
}

/* Writes 'frames' 64x64 VP8 frames at 10 fps plus Opus into 'path'. */
static struct media_mux *write_clip(const char *path, const char *doc_type, int frames)
{
	char err[256];
	struct media_mux *m = media_mux_webm.open(path, doc_type, err, sizeof(err));
	CHECK(m != NULL);
	if (!m)
		return NULL;
	struct media_enc_params vp = { .width = 64, .height = 64, .fps = 10, .bitrate_bps = 200000,
				       .keyframe_interval = 20, .threads = 1 };
	struct media_enc_params ap = { .sample_rate = 48000, .channels = 2, .bitrate_bps = 64000 };
	struct media_enc *venc = media_enc_new(&media_enc_vp8, &vp, err, sizeof(err));
	struct media_enc *aenc = media_enc_new(&media_enc_opus, &ap, err, sizeof(err));
	CHECK(venc && aenc);
	CHECK_INT(aenc ? aenc->codec_private_len : 0, 19);
	CHECK(aenc && memcmp(aenc->codec_private, "OpusHead", 8) == 0);
	CHECK(aenc && aenc->codec_delay_ns > 0);
	struct media_mux_track vt = { .kind = MEDIA_KIND_VIDEO, .codec = MEDIA_CODEC_VP8,
				      .width = 64, .height = 64, .fps = 10 };
	struct media_mux_track at = { .kind = MEDIA_KIND_AUDIO, .codec = MEDIA_CODEC_OPUS,
				      .sample_rate = 48000, .channels = 2,
				      .codec_private = aenc ? aenc->codec_private : NULL,
				      .codec_private_len = aenc ? aenc->codec_private_len : 0,
				      .codec_delay_ns = aenc ? aenc->codec_delay_ns : 0,
				      .seek_preroll_ns = 80 * TIME_NS_PER_MS };
	struct collect cv = { .mux = m }, ca = { .mux = m };
	cv.track = media_mux_webm.add_track(m, &vt);
	ca.track = media_mux_webm.add_track(m, &at);
	CHECK_INT(cv.track, 1);
	CHECK_INT(ca.track, 2);
	struct buf *frame = buf_new(64 * 64 * 3 / 2);
	struct buf *pcm = buf_new(4800 * 2 * sizeof(int16_t));
	memset(pcm->data, 0, pcm->size);
	for (int i = 0; venc && aenc && i < frames; i++) {
		for (size_t k = 0; k < frame->size; k++)
			frame->data[k] = (uint8_t)(k * 3 + (size_t)i * 7);
		/* 100 ms of audio, then the frame of the same time. */
		CHECK_INT(aenc->driver->encode(aenc, pcm, 4800, (int64_t)i * 100 * TIME_NS_PER_MS, false,
					       collect_out, &ca), 0);
		CHECK_INT(venc->driver->encode(venc, frame, 0, (int64_t)i * 100 * TIME_NS_PER_MS, i == 7,
					       collect_out, &cv), 0);
	}
	CHECK_INT(cv.packets, frames);
	CHECK(cv.keys >= (frames > 7 ? 2 : 1)); /* the first, and the one forced at frame 7 */
	CHECK_INT(ca.packets, frames * 5);
	buf_unref(frame);
	buf_unref(pcm);
	media_enc_free(venc);
	media_enc_free(aenc);
	return m;
}

/* The encoder's levels (the degradation ladder): fastest speed on one
 * thread (a new context: keyframe), every other frame, half size (keyframe,
 * 64x48 coded from 128x96 frames), and back; size from the VP8 keyframe
 * header (RFC 6386 9.1). */
struct level_out {
	int packets, keys, w, h;
	int64_t duration_ns;
};

static int level_collect(void *opaque, struct media_enc_packet *pkt)
{
	struct level_out *o = opaque;
	const uint8_t *d = pkt->data->data;
	o->packets++;
	o->duration_ns = pkt->duration_ns;
	if (pkt->keyframe && pkt->data->size >= 10) {
		o->keys++;
		o->w = (d[6] | d[7] << 8) & 0x3fff;
		o->h = (d[8] | d[9] << 8) & 0x3fff;
	}
	buf_unref(pkt->data);
	return 0;
}

static void test_enc_levels(void)
{
	char err[256];
	struct media_enc_params vp = { .width = 128, .height = 96, .fps = 10, .bitrate_bps = 200000,
				       .keyframe_interval = 100, .threads = 2 };
	struct media_enc *e = media_enc_new(&media_enc_vp8, &vp, err, sizeof(err));
	CHECK(e && e->driver->set_level);
	if (!e)
		return;
	struct buf *frame = buf_new(128 * 96 * 3 / 2);
	struct level_out o = { 0 };
	static const struct media_enc_level levels[] = {
		{ .fps_div = 1, .scale_div = 1 }, { .fast = true, .fps_div = 1, .scale_div = 1 },
		{ .fast = true, .fps_div = 2, .scale_div = 1 }, { .fast = true, .fps_div = 2, .scale_div = 2 },
		{ .fast = true, .fps_div = 2, .scale_div = 1 }, { .fps_div = 1, .scale_div = 1 },
	};
	/* keyframes expected after each move: open, new context, -, size, size, new context */
	static const int keys[] = { 1, 2, 2, 3, 4, 5 };
	static const int sizes[][2] = { { 128, 96 }, { 128, 96 }, { 128, 96 }, { 64, 48 }, { 128, 96 }, { 128, 96 } };
	int64_t pts = 0;
	for (size_t l = 0; l < sizeof(levels) / sizeof(levels[0]); l++) {
		if (l > 0)
			CHECK_INT(e->driver->set_level(e, &levels[l]), 0);
		for (int i = 0; i < 4; i++) {
			for (size_t k = 0; k < frame->size; k++)
				frame->data[k] = (uint8_t)(k * 5 + (size_t)pts / TIME_NS_PER_MS);
			CHECK_INT(e->driver->encode(e, frame, 0, pts, false, level_collect, &o), 0);
			pts += levels[l].fps_div * 100 * TIME_NS_PER_MS;
		}
		CHECK_INT(o.keys, keys[l]);
		CHECK_INT(o.w, sizes[l][0]);
		CHECK_INT(o.h, sizes[l][1]);
		CHECK(o.duration_ns == levels[l].fps_div * 100 * TIME_NS_PER_MS);
	}
	CHECK_INT(o.packets, 24);
	struct media_enc_level bad = { .fps_div = 3, .scale_div = 1 };
	CHECK(e->driver->set_level(e, &bad) < 0 && e->err[0]);
	CHECK(media_enc_opus.set_level == NULL);
	buf_unref(frame);
	media_enc_free(e);
}

static long long file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* The writer keeps a fresh frame in memory (up to 100 ms); tick() hands it
 * to the kernel once it is due, so a source that goes silent leaves
 * nothing behind. */
static void test_mux_tick(void)
{
	char path[512], err[256];
	snprintf(path, sizeof(path), "%s/tick.webm", tmpdir);
	struct media_mux *m = write_clip(path, "webm", 5);
	if (!m)
		return;
	static const uint8_t opus[10] = { 0xfc, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	CHECK_INT(media_mux_webm.write(m, 2, opus, sizeof(opus), 10 * TIME_NS_PER_SEC, true), 0);
	CHECK(file_size(path) < (long long)media_mux_webm.bytes(m));
	CHECK_INT(media_mux_webm.tick(m), 0); /* not due yet: kept */
	CHECK(file_size(path) < (long long)media_mux_webm.bytes(m));
	time_sleep_ns(150 * TIME_NS_PER_MS);
	CHECK_INT(media_mux_webm.tick(m), 0);
	CHECK_INT(file_size(path), (long long)media_mux_webm.bytes(m));
	CHECK_INT(media_mux_webm.close(m, 0, err, sizeof(err)), 0);
}

static void test_mux_probe_repair(void)
{
	char path[512], err[256];
	struct media_file_info info;

	snprintf(path, sizeof(path), "%s/final.mkv", tmpdir);
	struct media_mux *m = write_clip(path, "matroska", 20);
	CHECK(m && media_mux_webm.bytes(m) > 0);
	CHECK_INT(m ? media_mux_webm.close(m, 2 * TIME_NS_PER_SEC, err, sizeof(err)) : -1, 0);
	CHECK_INT(media_file_probe(path, &info, err, sizeof(err)), 0);
	CHECK_STR(info.doc_type, "matroska");
	CHECK_STR(info.video_codec, "V_VP8");
	CHECK_STR(info.audio_codec, "A_OPUS");
	CHECK_INT(info.width, 64);
	CHECK_INT(info.sample_rate, 48000);
	CHECK_INT(info.channels, 2);
	CHECK_INT(info.duration_ns, 2 * TIME_NS_PER_SEC);
	CHECK(info.has_cues);
	CHECK_INT(info.video_frames, 20);
	CHECK_INT(info.audio_frames, 100);

	/* Abandoned: what a crash leaves. Readable, no Duration, no Cues. */
	snprintf(path, sizeof(path), "%s/crashed.webm", tmpdir);
	m = write_clip(path, "webm", 30);
	if (m)
		media_mux_webm.abandon(m);
	CHECK_INT(media_file_probe(path, &info, err, sizeof(err)), 0);
	CHECK_STR(info.doc_type, "webm");
	CHECK_INT(info.duration_ns, 0);
	CHECK(!info.has_cues);
	CHECK(info.video_frames >= 29); /* at most the muxer's held frame is lost */
	int64_t last = info.last_timestamp_ns;
	CHECK(last >= 2800 * TIME_NS_PER_MS);

	/* Cut it in the middle of a frame as well: repair keeps what is whole. */
	size_t len = 0;
	char *data = util_read_file(path, &len);
	CHECK(data && len > 1000);
	if (data) {
		FILE *f = fopen(path, "wb");
		fwrite(data, 1, len - 333, f);
		fclose(f);
		free(data);
	}
	int64_t dur = 0;
	CHECK_INT(media_file_repair(path, &dur, err, sizeof(err)), 0);
	CHECK(dur > 2500 * TIME_NS_PER_MS && dur <= 3100 * TIME_NS_PER_MS);
	CHECK_INT(media_file_probe(path, &info, err, sizeof(err)), 0);
	CHECK(info.has_cues);
	CHECK_INT(info.duration_ns, dur);
	CHECK(info.video_frames >= 25);

	/* Nothing usable: refused, original untouched. */
	snprintf(path, sizeof(path), "%s/empty.webm", tmpdir);
	FILE *f = fopen(path, "wb");
	fputs("not a recording", f);
	fclose(f);
	CHECK(media_file_repair(path, &dur, err, sizeof(err)) < 0);
	CHECK(strstr(err, "not a Matroska") != NULL);
	CHECK(media_file_probe("/nonexistent/x.webm", &info, err, sizeof(err)) < 0);

	/* Bad muxer use is an error, not a crash. */
	CHECK(media_mux_webm.open(path, "avi", err, sizeof(err)) == NULL);
	CHECK(media_mux_webm.open("/nonexistent/dir/x.webm", "webm", err, sizeof(err)) == NULL);
	CHECK(strstr(err, "cannot create") != NULL);
}

/* Damaged files: the parser and the repair must answer, never crash or
 * hang, whatever bytes they meet (run under ASan by scripts/test). */
static void test_damaged_files(void)
{
	char path[512], bad[512], err[256];
	snprintf(path, sizeof(path), "%s/base.webm", tmpdir);
	snprintf(bad, sizeof(bad), "%s/bad.webm", tmpdir);
	struct media_mux *m = write_clip(path, "webm", 6);
	CHECK(m && media_mux_webm.close(m, 0, err, sizeof(err)) == 0);
	size_t len = 0;
	uint8_t *orig = (uint8_t *)util_read_file(path, &len);
	CHECK(orig && len > 500);
	if (!orig)
		return;
	uint8_t *copy = malloc(len);
	unsigned seed = 12345;
	int probed = 0, repaired = 0;
	for (int iter = 0; iter < 300; iter++) {
		memcpy(copy, orig, len);
		size_t n = len;
		int flips = 1 + (int)(rand_r(&seed) % 8);
		for (int k = 0; k < flips; k++)
			copy[rand_r(&seed) % len] = (uint8_t)rand_r(&seed);
		if (iter % 3 == 0)
			n = (size_t)rand_r(&seed) % len;
		FILE *f = fopen(bad, "wb");
		fwrite(copy, 1, n, f);
		fclose(f);
		struct media_file_info info;
		int64_t dur;
		probed += media_file_probe(bad, &info, err, sizeof(err)) == 0;
		repaired += media_file_repair(bad, &dur, err, sizeof(err)) == 0;
	}
	/* Most damage still leaves something readable; some leaves nothing. */
	CHECK(probed > 0);
	CHECK(repaired > 0 && repaired < 300);
	free(copy);
	free(orig);

	/* Damaged Y4M and WAV headers: clear errors from the file source. */
	static const char *const y4m_headers[] = {
		"YUV4MPEG2 W0 H0 F30:1\n", "YUV4MPEG2 W64 H48 F0:1\n", "YUV4MPEG2 W63 H48 F30:1\n",
		"YUV4MPEG2 W64 H48 F30:1 C444\n", "YUV4MPEG2 W64 H48 F30:1 It\n", "YUV4MPEG W64\n",
		"YUV4MPEG2 W99999999 H2 F30:1\n", "",
	};
	for (size_t i = 0; i < ARRAY_SIZE(y4m_headers); i++) {
		char y4m[512], args[600];
		snprintf(y4m, sizeof(y4m), "%s/h%zu.y4m", tmpdir, i);
		FILE *f = fopen(y4m, "wb");
		fputs(y4m_headers[i], f);
		fclose(f);
		snprintf(args, sizeof(args), "video=%s", y4m);
		struct media_source_params sp = { .args = args };
		err[0] = '\0';
		CHECK(media_source_new(&media_source_file, &sp, err, sizeof(err)) == NULL);
		CHECK(err[0] != '\0');
	}
}

struct events {
	atomic_int first_frame, eof, fault;
	char fault_detail[256];
};

static void on_event(void *opaque, enum media_event ev, const char *detail)
{
	struct events *e = opaque;
	if (ev == MEDIA_EVENT_FIRST_FRAME)
		atomic_fetch_add(&e->first_frame, 1);
	else if (ev == MEDIA_EVENT_EOF)
		atomic_fetch_add(&e->eof, 1);
	else if (ev == MEDIA_EVENT_FAULT) {
		atomic_fetch_add(&e->fault, 1);
		util_strlcpy(e->fault_detail, detail ? detail : "", sizeof(e->fault_detail));
	}
}

static void test_pipeline(void)
{
	char path[512], err[256];
	struct events ev = { 0 };
	snprintf(path, sizeof(path), "%s/pipe.webm", tmpdir);
	struct media_pipeline_config cfg = {
		.source = "test", .preset = media_preset_find("low"), .format = "webm",
		.output_path = path, .on_event = on_event, .opaque = &ev,
	};
	struct media_pipeline_options opt = { .fast = true, .duration_ns = 2 * TIME_NS_PER_SEC,
					      .nb_schedule = 1 };
	opt.pause_at_ns[0] = 500 * TIME_NS_PER_MS;
	opt.resume_at_ns[0] = 1000 * TIME_NS_PER_MS;
	struct media_pipeline *p = media_pipeline_new(&cfg, err, sizeof(err));
	CHECK(p != NULL);
	if (!p)
		return;
	CHECK_INT(media_pipeline_pause(p), -1); /* not started */
	CHECK_INT(media_pipeline_set_options(p, &opt), 0);
	CHECK_INT(media_pipeline_start(p, err, sizeof(err)), 0);
	CHECK_INT(media_pipeline_set_options(p, &opt), -1); /* too late */
	CHECK_INT(media_pipeline_wait(p, 30 * TIME_NS_PER_SEC), 1);
	CHECK_INT(media_pipeline_stop(p, err, sizeof(err)), 0);
	CHECK_INT(media_pipeline_stop(p, err, sizeof(err)), 0); /* twice is fine */
	struct media_stats st;
	media_pipeline_stats(p, &st);
	CHECK_INT(st.active_duration_ns, 1500 * TIME_NS_PER_MS);
	CHECK_INT(st.video_frames_encoded, 36); /* 1.5 s at 24 fps */
	CHECK_INT(st.video_frames_dropped, 0);
	CHECK(st.video_keyframes >= 2);         /* the first, and after resume */
	CHECK_INT(st.audio_frames_encoded, 75);
	CHECK(st.bytes_written > 10000);
	CHECK(st.first_frame_wall_ns > 0);
	CHECK(!st.failed);
	CHECK_INT(atomic_load(&ev.first_frame), 1);
	CHECK_INT(atomic_load(&ev.eof), 1);
	CHECK_INT(atomic_load(&ev.fault), 0);
	media_pipeline_free(p);
	struct media_file_info info;
	CHECK_INT(media_file_probe(path, &info, err, sizeof(err)), 0);
	CHECK_INT(info.duration_ns, 1500 * TIME_NS_PER_MS);
	CHECK(info.has_cues);

	/* Pause/resume through the API while running in real time. The bounds
	 * follow the wall clock measured around the calls (a loaded box
	 * stretches the sleeps): what was recorded fits in the time it ran
	 * (plus a frame or two in flight), never in the time it was paused. */
	memset(&ev, 0, sizeof(ev));
	p = media_pipeline_new(&cfg, err, sizeof(err));
	CHECK(p != NULL);
	if (p) {
		CHECK_INT(media_pipeline_start(p, err, sizeof(err)), 0);
		int64_t t_start = time_mono_ns();
		time_sleep_ns(300 * TIME_NS_PER_MS);
		CHECK_INT(media_pipeline_resume(p), -1); /* not paused */
		CHECK_INT(media_pipeline_pause(p), 0);
		int64_t t_pause = time_mono_ns();
		CHECK_INT(media_pipeline_pause(p), -1);  /* already paused */
		time_sleep_ns(800 * TIME_NS_PER_MS);
		media_pipeline_stats(p, &st);
		CHECK(st.paused);
		int64_t t_resume = time_mono_ns();
		CHECK_INT(media_pipeline_resume(p), 0);
		time_sleep_ns(300 * TIME_NS_PER_MS);
		int64_t t_stop = time_mono_ns();
		CHECK_INT(media_pipeline_stop(p, err, sizeof(err)), 0);
		media_pipeline_stats(p, &st);
		int64_t ran = (t_pause - t_start) + (t_stop - t_resume);
		CHECK(st.active_duration_ns > 100 * TIME_NS_PER_MS);
		CHECK(st.active_duration_ns < ran + 400 * TIME_NS_PER_MS);
		CHECK(st.video_keyframes >= 2);
		media_pipeline_free(p);
	}

	/* A keyframe on demand, between the regular ones (every 2 s). */
	p = media_pipeline_new(&cfg, err, sizeof(err));
	CHECK(p != NULL);
	if (p) {
		CHECK_INT(media_pipeline_request_keyframe(p), -1); /* not started */
		CHECK_INT(media_pipeline_start(p, err, sizeof(err)), 0);
		time_sleep_ns(400 * TIME_NS_PER_MS);
		CHECK_INT(media_pipeline_request_keyframe(p), 0);
		time_sleep_ns(400 * TIME_NS_PER_MS);
		CHECK_INT(media_pipeline_stop(p, err, sizeof(err)), 0);
		media_pipeline_stats(p, &st);
		CHECK_INT(st.video_keyframes, 2);
		CHECK_INT(media_pipeline_request_keyframe(p), -1); /* stopped */
		media_pipeline_free(p);
	}

	/* Bad configurations fail in _new with a reason. */
	cfg.source = "nope";
	CHECK(media_pipeline_new(&cfg, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "unknown source") != NULL);
	cfg.source = "test";
	cfg.format = "flv";
	CHECK(media_pipeline_new(&cfg, err, sizeof(err)) == NULL);
	cfg.format = "webm";
	cfg.output_path = "/nonexistent/dir/x.webm";
	CHECK(media_pipeline_new(&cfg, err, sizeof(err)) == NULL);

	/* A truncated Y4M is a fault: event, error from stop, no crash. */
	char y4m[512], args[600];
	snprintf(y4m, sizeof(y4m), "%s/cut.y4m", tmpdir);
	FILE *f = fopen(y4m, "wb");
	fprintf(f, "YUV4MPEG2 W64 H48 F10:1 Ip C420jpeg\n");
	static uint8_t fr[64 * 48 * 3 / 2];
	for (int i = 0; i < 3; i++) {
		fputs("FRAME\n", f);
		fwrite(fr, 1, sizeof(fr), f);
	}
	fputs("FRAME\n", f);
	fwrite(fr, 1, 100, f);
	fclose(f);
	snprintf(args, sizeof(args), "video=%s", y4m);
	memset(&ev, 0, sizeof(ev));
	cfg.source = "file";
	cfg.source_args = args;
	cfg.output_path = path;
	p = media_pipeline_new(&cfg, err, sizeof(err));
	CHECK(p != NULL);
	if (p) {
		struct media_pipeline_options fast = { .fast = true };
		media_pipeline_set_options(p, &fast);
		CHECK_INT(media_pipeline_start(p, err, sizeof(err)), 0);
		CHECK_INT(media_pipeline_wait(p, 10 * TIME_NS_PER_SEC), 1);
		CHECK(media_pipeline_stop(p, err, sizeof(err)) < 0);
		CHECK(strstr(err, "truncated Y4M") != NULL);
		CHECK_INT(atomic_load(&ev.fault), 1);
		CHECK(strstr(ev.fault_detail, "frame 3") != NULL);
		media_pipeline_stats(p, &st);
		CHECK(st.failed);
		CHECK_INT(st.video_frames_encoded, 3);
		media_pipeline_free(p);
	}
}

/* Raw audio before a zero loses exactly that part, front first. */
static void test_packet_trim(void)
{
	struct media_packet pkt = { .pts_ns = -7 * TIME_NS_PER_MS, .samples = 480,
				    .duration_ns = 10 * TIME_NS_PER_MS };
	pkt.data = buf_new(480 * 2 * sizeof(int16_t));
	CHECK(pkt.data != NULL);
	if (!pkt.data)
		return;
	int16_t *s = (int16_t *)pkt.data->data;
	for (int i = 0; i < 480; i++)
		s[2 * i] = s[2 * i + 1] = (int16_t)i;
	CHECK(media_packet_trim_s16(&pkt, 0, 48000, 2));
	CHECK_INT(pkt.samples, 480 - 336);   /* 7 ms at 48 kHz */
	CHECK_INT(pkt.pts_ns, 0);
	CHECK_INT(pkt.duration_ns, 3 * TIME_NS_PER_MS);
	CHECK_INT(pkt.data->size, (480 - 336) * 4);
	s = (int16_t *)pkt.data->data;
	CHECK(s[0] == 336 && s[1] == 336 && s[2 * 143] == 479);
	/* at or after the point: untouched */
	CHECK(media_packet_trim_s16(&pkt, 0, 48000, 2));
	CHECK_INT(pkt.samples, 144);
	/* all of it before the point: nothing left */
	CHECK(!media_packet_trim_s16(&pkt, 3 * TIME_NS_PER_MS, 48000, 2));
	/* a fraction of a sample: one whole sample goes, the time lands on the point */
	pkt.pts_ns = -1;
	CHECK(media_packet_trim_s16(&pkt, 0, 48000, 2));
	CHECK_INT(pkt.samples, 143);
	CHECK(pkt.pts_ns >= 0 && pkt.pts_ns <= 20834);
	media_packet_clear(&pkt);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_media.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_presets();
	test_encode_ledger();
	test_source_args();
	test_packet_trim();
	test_source_markers();
	test_enc_levels();
	test_mux_probe_repair();
	test_mux_tick();
	test_damaged_files();
	test_pipeline();
	util_rm_rf(tmpdir);
	return check_exit();
}
