/* media_src_test: the test source. Video is a moving diagonal pattern with
 * a bouncing box and the frame number burnt in; audio is a quiet 440 Hz
 * tone. Every whole second the video frame is white and a loud 1 kHz beep
 * of 100 ms starts on the very same sample, so the A/V offset of a recording
 * can be measured from its output. Paced to the wall clock unless
 * params.realtime is false (tests and benchmarks run it flat out).
 *
 * Args: "tone=HZ" (default 440), "beep=HZ" (default 1000), "skew=MS" (start
 * each beep MS later than its flash, 0..500: lets the A/V test prove it
 * sees an offset when there is one), "encoded=1" (deliver VP8 and Opus
 * packets instead of raw frames, as an SFU feed would: the pipeline records
 * them by passthrough; "gop=SEC" (default 10) spaces the sender's own
 * keyframes, so a keyframe after a resume comes from request_keyframe(),
 * "bitrate=BPS" (default 1000000) sets the sender's video rate, and
 * "join=SEC" hides what the sender sent before SEC, as when a recorder joins
 * a running stream mid-GOP, and "hold=SEC" holds the video sent from SEC on
 * back for 3 s and then delivers it all at once, as a congested network
 * would), "audio_ppm=N" (-10000..10000: the audio sample clock runs N ppm
 * fast against the video clock, as capture cards and phones do: the beep of
 * second k starts on sample k x rate x (1 + N/1e6) while pts still count
 * samples at the nominal rate, so a sender pacing its audio by that clock
 * sends it N ppm fast; the recorder has to keep A/V together). */
#include "media_source.h"

#include <stdatomic.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "media_enc.h"

static struct log_handle log_test = LOG_HANDLE("media/src_test");

#define TEST_AUDIO_CHUNK_MS 10
#define TEST_BEEP_MS 100
#define TEST_FLASH_Y 235

struct test_priv {
	int width, height, fps, rate, channels;
	bool realtime;
	int64_t duration_ns;
	int64_t start_mono_ns;  /* wall clock of pts 0: the first read */
	uint64_t video_n;      /* next video frame */
	uint32_t video_missed; /* frames skipped since the last one delivered */
	uint64_t audio_sample; /* next audio sample frame */
	double tone_hz, beep_hz;
	uint64_t skew_samples;   /* beep delay after the flash */
	int audio_ppm;           /* audio clock error against video, ppm */
	uint8_t *bars;         /* a periodic row of the pattern, width + 256 long */
	uint8_t *v_row;        /* the V plane's row, the same on every line */
	/* encoded=1: the sender's encoders and the packets they produced. */
	bool encoded;
	struct media_enc *venc, *aenc;
	atomic_bool key_request;
	int cur_stream;
	int64_t join_ns;
	int64_t hold_ns;             /* -1: no hold */
	struct media_packet *held;   /* video held back, in order */
	int held_len, held_cap, held_next;
	bool releasing;
	bool has_stash;
	struct media_packet stash;   /* the packet that ended the hold */
	struct media_packet out[8];
	int out_head, out_len;
};

/* 5x7 glyphs of the digits, one byte per row, bit 4 leftmost. */
static const uint8_t test_font[10][7] = {
	{ 0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e },
	{ 0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e },
	{ 0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f },
	{ 0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e },
	{ 0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02 },
	{ 0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e },
	{ 0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e },
	{ 0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08 },
	{ 0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e },
	{ 0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c },
};

static void test_close(struct media_source *src);
static int test_open_encoded(struct media_source *src, struct test_priv *t, const char *args,
			     char *err, size_t errlen);

static int64_t test_video_pts(const struct test_priv *t, uint64_t n)
{
	return (int64_t)(n * (uint64_t)TIME_NS_PER_SEC / (uint64_t)t->fps);
}

static int64_t test_audio_pts(const struct test_priv *t, uint64_t s)
{
	return (int64_t)(s * (uint64_t)TIME_NS_PER_SEC / (uint64_t)t->rate);
}

static int test_open(struct media_source *src, const struct media_source_params *p,
		     char *err, size_t errlen)
{
	char v[32];
	struct test_priv *t;
	if (p->width < 16 || p->height < 16 || p->width > 8192 || p->height > 8192 ||
	    (p->width & 1) || (p->height & 1) || p->fps < 1 || p->fps > 240) {
		snprintf(err, errlen, "test source: bad video size %dx%d@%d", p->width, p->height, p->fps);
		return -1;
	}
	if (p->sample_rate < 8000 || p->sample_rate > 192000 || p->channels < 1 || p->channels > 2) {
		snprintf(err, errlen, "test source: bad audio format %d Hz x %d", p->sample_rate, p->channels);
		return -1;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		util_strlcpy(err, "out of memory", errlen);
		return -1;
	}
	t->width = p->width;
	t->height = p->height;
	t->fps = p->fps;
	t->rate = p->sample_rate;
	t->channels = p->channels;
	t->realtime = p->realtime;
	t->duration_ns = p->duration_ns;
	t->tone_hz = 440;
	t->beep_hz = 1000;
	if (media_source_arg(p->args, "tone", v, sizeof(v)))
		t->tone_hz = atof(v);
	if (media_source_arg(p->args, "beep", v, sizeof(v)))
		t->beep_hz = atof(v);
	if (media_source_arg(p->args, "skew", v, sizeof(v))) {
		int ms = atoi(v);
		if (ms < 0 || ms > 500) {
			snprintf(err, errlen, "test source: skew must be 0..500 ms");
			free(t);
			return -1;
		}
		t->skew_samples = (uint64_t)ms * (uint64_t)t->rate / 1000;
	}
	if (media_source_arg(p->args, "audio_ppm", v, sizeof(v))) {
		t->audio_ppm = atoi(v);
		if (t->audio_ppm < -10000 || t->audio_ppm > 10000) {
			snprintf(err, errlen, "test source: audio_ppm must be -10000..10000");
			free(t);
			return -1;
		}
	}
	if (!(t->tone_hz >= 0 && t->tone_hz < t->rate / 2.0) ||
	    !(t->beep_hz > 0 && t->beep_hz < t->rate / 2.0)) {
		snprintf(err, errlen, "test source: tone/beep frequency out of range");
		free(t);
		return -1;
	}
	t->bars = malloc((size_t)t->width + 256);
	if (!t->bars) {
		free(t);
		util_strlcpy(err, "out of memory", errlen);
		return -1;
	}
	t->v_row = malloc((size_t)t->width / 2);
	if (!t->v_row) {
		free(t->bars);
		free(t);
		util_strlcpy(err, "out of memory", errlen);
		return -1;
	}
	for (int c = 0; c < t->width / 2; c++)
		t->v_row[c] = (uint8_t)(80 + (c * 96 / (t->width / 2)));
	for (int i = 0; i < t->width + 256; i++) {
		int k = i & 255;
		int tri = k < 128 ? k : 255 - k;  /* a triangle wave: soft bars */
		t->bars[i] = (uint8_t)(40 + tri * 3 / 2);
	}
	src->priv = t;
	src->nb_streams = 2;
	src->streams[0] = (struct media_stream_info){
		.kind = MEDIA_KIND_VIDEO, .codec = MEDIA_CODEC_I420,
		.width = t->width, .height = t->height, .fps_num = t->fps, .fps_den = 1,
	};
	src->streams[1] = (struct media_stream_info){
		.kind = MEDIA_KIND_AUDIO, .codec = MEDIA_CODEC_S16,
		.sample_rate = t->rate, .channels = t->channels,
	};
	if (media_source_arg(p->args, "encoded", v, sizeof(v)) && strcmp(v, "0") != 0 &&
	    test_open_encoded(src, t, p->args, err, errlen) < 0) {
		src->priv = t;
		test_close(src);
		src->nb_streams = 0;
		return -1;
	}
	LOG_DEBUG(&log_test, "%dx%d@%d, %d Hz x %d, %s", t->width, t->height, t->fps, t->rate,
		  t->channels, t->realtime ? "real time" : "as fast as possible");
	return 0;
}

/* Draws the frame number 'n' at the top left, white on a black box. */
static void test_draw_counter(struct test_priv *t, uint8_t *y, uint64_t n)
{
	char digits[24];
	int len = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)n);
	int scale = t->height / 60 > 1 ? t->height / 60 : 1;
	int x0 = scale * 2, y0 = scale * 2;
	int box_w = len * 6 * scale + scale, box_h = 9 * scale;
	if (x0 + box_w > t->width || y0 + box_h > t->height)
		return;
	for (int r = 0; r < box_h; r++)
		memset(y + (size_t)(y0 + r) * t->width + x0, 16, (size_t)box_w);
	for (int d = 0; d < len; d++) {
		const uint8_t *g = test_font[digits[d] - '0'];
		for (int gr = 0; gr < 7; gr++)
			for (int gc = 0; gc < 5; gc++) {
				if (!(g[gr] & (0x10 >> gc)))
					continue;
				int px = x0 + scale + (d * 6 + gc) * scale;
				int py = y0 + scale + gr * scale;
				for (int r = 0; r < scale; r++)
					memset(y + (size_t)(py + r) * t->width + px, 235, (size_t)scale);
			}
	}
}

static struct buf *test_make_video(struct test_priv *t, uint64_t n)
{
	int w = t->width, h = t->height;
	size_t ysize = (size_t)w * h, csize = ysize / 4;
	struct buf *b = buf_new(ysize + 2 * csize);
	if (!b)
		return NULL;
	uint8_t *y = b->data, *u = y + ysize, *v = u + csize;
	if (n % (uint64_t)t->fps == 0) {
		/* The marker: a whole white frame on every second. */
		memset(y, TEST_FLASH_Y, ysize);
		memset(u, 128, 2 * csize);
		return b;
	}
	for (int r = 0; r < h; r++) {
		int off = (int)((r / 2 + 4 * n) & 255);
		memcpy(y + (size_t)r * w, t->bars + off, (size_t)w);
	}
	for (int r = 0; r < h / 2; r++) {
		memset(u + (size_t)r * (w / 2), 128 + (r * 96 / (h / 2)) - 48, (size_t)(w / 2));
		memcpy(v + (size_t)r * (w / 2), t->v_row, (size_t)(w / 2));
	}
	/* A box bouncing across the frame. */
	int bw = w / 6, bh = h / 6;
	int span_x = w - bw, span_y = h - bh;
	int px = (int)((n * 7) % (uint64_t)(2 * span_x));
	int py = (int)((n * 5) % (uint64_t)(2 * span_y));
	if (px > span_x)
		px = 2 * span_x - px;
	if (py > span_y)
		py = 2 * span_y - py;
	for (int r = 0; r < bh; r++)
		memset(y + (size_t)(py + r) * w + px, 200, (size_t)bw);
	for (int r = 0; r < bh / 2; r++) {
		memset(u + (size_t)(py / 2 + r) * (w / 2) + px / 2, 60, (size_t)(bw / 2));
		memset(v + (size_t)(py / 2 + r) * (w / 2) + px / 2, 200, (size_t)(bw / 2));
	}
	test_draw_counter(t, y, n);
	return b;
}

static struct buf *test_make_audio(struct test_priv *t, uint64_t first, int samples)
{
	struct buf *b = buf_new((size_t)samples * t->channels * sizeof(int16_t));
	if (!b)
		return NULL;
	int16_t *out = (int16_t *)b->data;
	uint64_t beep_len = (uint64_t)t->rate * TEST_BEEP_MS / 1000;
	/* samples in one second of the (possibly skewed) audio clock */
	double per_second = t->rate * (1.0 + t->audio_ppm / 1e6);
	for (int i = 0; i < samples; i++) {
		uint64_t s = first + (uint64_t)i;
		uint64_t in_second = (s + (uint64_t)t->rate - t->skew_samples % (uint64_t)t->rate) %
				     (uint64_t)t->rate;
		if (t->audio_ppm) {
			int64_t from = (int64_t)s - (int64_t)t->skew_samples;
			int64_t k = (int64_t)floor((double)from / per_second);
			in_second = (uint64_t)(from - (int64_t)llround((double)k * per_second));
		}
		double ph, val;
		if (in_second < beep_len) {
			ph = 2.0 * M_PI * t->beep_hz * (double)in_second / t->rate;
			val = 0.5 * sin(ph);
		} else {
			ph = 2.0 * M_PI * t->tone_hz * (double)in_second / t->rate;
			val = 0.02 * sin(ph);
		}
		int16_t sv = (int16_t)lrint(val * 32767.0);
		for (int c = 0; c < t->channels; c++)
			out[(size_t)i * t->channels + c] = sv;
	}
	return b;
}

/* A live source that could not run for a while (a starved CPU) does what
 * a camera does: the frames that fell due meanwhile are gone. Video more
 * than one frame overdue moves on to the frame due now; the skipped ones
 * are reported with the next frame delivered, so the recording's time
 * stays the wall clock's and its state counts what is missing. */
static void test_skip_overdue_video(struct test_priv *t)
{
	if (!t->realtime)
		return;
	int64_t elapsed = time_mono_ns() - t->start_mono_ns;
	if (elapsed <= 0)
		return;
	uint64_t due = (uint64_t)elapsed * (uint64_t)t->fps / (uint64_t)TIME_NS_PER_SEC;
	if (t->duration_ns > 0) {
		uint64_t last = (uint64_t)t->duration_ns * (uint64_t)t->fps / (uint64_t)TIME_NS_PER_SEC;
		if (due > last)
			due = last;
	}
	if (due > t->video_n + 1) {
		t->video_missed += (uint32_t)(due - t->video_n);
		t->video_n = due;
	}
}

static int test_read_raw(struct media_source *src, struct media_packet *pkt, int64_t timeout_ns)
{
	struct test_priv *t = src->priv;
	if (t->start_mono_ns == 0)
		t->start_mono_ns = time_mono_ns(); /* the clock starts with the first read */
	test_skip_overdue_video(t);
	int64_t vpts = test_video_pts(t, t->video_n);
	int64_t apts = test_audio_pts(t, t->audio_sample);
	bool video = vpts <= apts;
	int64_t pts = video ? vpts : apts;

	memset(pkt, 0, sizeof(*pkt));
	if (t->duration_ns > 0 && pts >= t->duration_ns)
		return MEDIA_SOURCE_EOF;
	if (t->realtime) {
		int64_t due = t->start_mono_ns + pts;
		int64_t now = time_mono_ns();
		if (due > now) {
			if (timeout_ns >= 0 && due - now > timeout_ns) {
				time_sleep_ns(timeout_ns);
				return MEDIA_SOURCE_AGAIN;
			}
			time_sleep_ns(due - now);
		}
	}
	pkt->pts_ns = pts;
	if (video) {
		pkt->stream = 0;
		pkt->duration_ns = test_video_pts(t, t->video_n + 1) - vpts;
		pkt->keyframe = true;
		pkt->missed = t->video_missed;
		t->video_missed = 0;
		pkt->data = test_make_video(t, t->video_n);
		t->video_n++;
	} else {
		int samples = t->rate * TEST_AUDIO_CHUNK_MS / 1000;
		pkt->stream = 1;
		pkt->samples = samples;
		pkt->duration_ns = test_audio_pts(t, t->audio_sample + (uint64_t)samples) - apts;
		pkt->data = test_make_audio(t, t->audio_sample, samples);
		t->audio_sample += (uint64_t)samples;
	}
	if (!pkt->data) {
		util_strlcpy(src->err, "out of memory", sizeof(src->err));
		return MEDIA_SOURCE_ERROR;
	}
	return MEDIA_SOURCE_OK;
}

/* Collects what the sender's encoders produce. */
static int test_enc_out(void *opaque, struct media_enc_packet *ep)
{
	struct test_priv *t = opaque;
	if (t->out_len == (int)ARRAY_SIZE(t->out)) {
		buf_unref(ep->data);
		return -1;
	}
	struct media_packet *pkt = &t->out[(t->out_head + t->out_len) % (int)ARRAY_SIZE(t->out)];
	memset(pkt, 0, sizeof(*pkt));
	pkt->stream = t->cur_stream;
	pkt->pts_ns = ep->pts_ns;
	pkt->duration_ns = ep->duration_ns;
	pkt->keyframe = ep->keyframe;
	pkt->data = ep->data;
	if (t->cur_stream == 0) {
		/* What the sender skipped before this frame, as a camera's would. */
		pkt->missed = t->video_missed;
		t->video_missed = 0;
	}
	t->out_len++;
	return 0;
}

#define TEST_HOLD_NS (3 * TIME_NS_PER_SEC)

/* The next packet of the encoded sender (before any hold). */
static int test_next_encoded(struct media_source *src, struct media_packet *pkt, int64_t timeout_ns)
{
	struct test_priv *t = src->priv;
	while (t->out_len == 0) {
		struct media_packet raw;
		int r = test_read_raw(src, &raw, timeout_ns);
		if (r != MEDIA_SOURCE_OK)
			return r;
		struct media_enc *enc = raw.stream == 0 ? t->venc : t->aenc;
		bool force = raw.stream == 0 && atomic_exchange(&t->key_request, false);
		t->cur_stream = raw.stream;
		if (raw.missed)
			t->video_missed += raw.missed;
		r = enc->driver->encode(enc, raw.data, raw.samples, raw.pts_ns, force, test_enc_out, t);
		media_packet_clear(&raw);
		if (r < 0) {
			snprintf(src->err, sizeof(src->err), "test sender: %s", enc->err);
			return MEDIA_SOURCE_ERROR;
		}
		if (raw.stream == 0 && t->out_len > 0)
			t->out[(t->out_head + t->out_len - 1) % (int)ARRAY_SIZE(t->out)].duration_ns =
				raw.duration_ns;
	}
	*pkt = t->out[t->out_head];
	t->out_head = (t->out_head + 1) % (int)ARRAY_SIZE(t->out);
	t->out_len--;
	if (pkt->pts_ns < t->join_ns) {
		media_packet_clear(pkt);
		return MEDIA_SOURCE_AGAIN;
	}
	return MEDIA_SOURCE_OK;
}

static int test_read(struct media_source *src, struct media_packet *pkt, int64_t timeout_ns)
{
	struct test_priv *t = src->priv;
	if (!t->encoded)
		return test_read_raw(src, pkt, timeout_ns);
	if (t->releasing) {
		if (t->held_next < t->held_len) {
			*pkt = t->held[t->held_next++];
			return MEDIA_SOURCE_OK;
		}
		t->releasing = false;
		t->held_len = t->held_next = 0;
		*pkt = t->stash;
		t->has_stash = false;
		return MEDIA_SOURCE_OK;
	}
	int r = test_next_encoded(src, pkt, timeout_ns);
	if (r != MEDIA_SOURCE_OK || t->hold_ns < 0)
		return r;
	if (pkt->stream == 0 && pkt->pts_ns >= t->hold_ns && pkt->pts_ns < t->hold_ns + TEST_HOLD_NS) {
		if (t->held_len == t->held_cap) {
			int cap = t->held_cap ? 2 * t->held_cap : 64;
			struct media_packet *n = realloc(t->held, (size_t)cap * sizeof(*n));
			if (!n) {
				media_packet_clear(pkt);
				util_strlcpy(src->err, "out of memory", sizeof(src->err));
				return MEDIA_SOURCE_ERROR;
			}
			t->held = n;
			t->held_cap = cap;
		}
		t->held[t->held_len++] = *pkt;
		memset(pkt, 0, sizeof(*pkt));
		return MEDIA_SOURCE_AGAIN;
	}
	if (t->held_len > 0 && pkt->pts_ns >= t->hold_ns + TEST_HOLD_NS) {
		/* The hold ends: everything held goes out first. */
		t->stash = *pkt;
		t->has_stash = true;
		t->releasing = true;
		t->hold_ns = -1;
		*pkt = t->held[t->held_next++];
	}
	return MEDIA_SOURCE_OK;
}

static void test_request_keyframe(struct media_source *src)
{
	struct test_priv *t = src->priv;
	atomic_store(&t->key_request, true);
}

/* encoded=1: opens the sender's encoders and describes encoded streams. */
static int test_open_encoded(struct media_source *src, struct test_priv *t, const char *args,
			     char *err, size_t errlen)
{
	char v[32];
	double gop = 10;
	int bitrate = 1000000;
	if (media_source_arg(args, "gop", v, sizeof(v)))
		gop = atof(v);
	if (media_source_arg(args, "bitrate", v, sizeof(v)))
		bitrate = atoi(v);
	if (media_source_arg(args, "join", v, sizeof(v)))
		t->join_ns = (int64_t)(atof(v) * 1e9);
	t->hold_ns = -1;
	if (media_source_arg(args, "hold", v, sizeof(v)))
		t->hold_ns = (int64_t)(atof(v) * 1e9);
	if (!(gop > 0 && gop <= 60) || bitrate < 50000 || bitrate > 50000000) {
		snprintf(err, errlen, "test source: gop must be 0..60 s and bitrate 50k..50M");
		return -1;
	}
	struct media_enc_params vp = { .width = t->width, .height = t->height, .fps = t->fps,
				       .bitrate_bps = bitrate, .keyframe_interval = (int)(gop * t->fps),
				       .threads = 1 };
	struct media_enc_params ap = { .sample_rate = t->rate, .channels = t->channels,
				       .bitrate_bps = 64000 };
	t->venc = media_enc_new(&media_enc_vp8, &vp, err, errlen);
	if (!t->venc)
		return -1;
	t->aenc = media_enc_new(&media_enc_opus, &ap, err, errlen);
	if (!t->aenc)
		return -1;
	src->streams[0].codec = MEDIA_CODEC_VP8;
	src->streams[1].codec = MEDIA_CODEC_OPUS;
	src->streams[1].codec_private = t->aenc->codec_private;
	src->streams[1].codec_private_len = t->aenc->codec_private_len;
	src->streams[1].codec_delay_ns = t->aenc->codec_delay_ns;
	src->streams[1].seek_preroll_ns = t->aenc->seek_preroll_ns;
	t->encoded = true;
	return 0;
}

static void test_close(struct media_source *src)
{
	struct test_priv *t = src->priv;
	if (!t)
		return;
	while (t->out_len > 0) {
		media_packet_clear(&t->out[t->out_head]);
		t->out_head = (t->out_head + 1) % (int)ARRAY_SIZE(t->out);
		t->out_len--;
	}
	for (int i = t->held_next; i < t->held_len; i++)
		media_packet_clear(&t->held[i]);
	free(t->held);
	if (t->has_stash)
		media_packet_clear(&t->stash);
	media_enc_free(t->venc);
	media_enc_free(t->aenc);
	free(t->bars);
	free(t->v_row);
	free(t);
	src->priv = NULL;
}

const struct media_source_driver media_source_test = {
	.name = "test",
	.open = test_open,
	.read = test_read,
	.close = test_close,
	.request_keyframe = test_request_keyframe,
};
