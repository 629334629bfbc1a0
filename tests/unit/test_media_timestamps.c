/* test_media_timestamps: the timestamps of a recorded RTP session, end to end
 * through the receive streams (jitter buffer, unwrapping, clock mapping) and
 * the WebM muxer, checked on the written file by ffprobe and ffmpeg.
 *
 * Real VP8 and Opus (encoded here with libvpx/libopus) are sent as RTP with
 * random arrival jitter, bursts (a relay holding packets and releasing them
 * at once), 32-bit timestamp wraps, SSRC changes, Sender Reports starting
 * mid-session, and frames with equal or backwards RTP timestamps. Property:
 * every track of the file has strictly increasing timestamps at the
 * muxer's 1 ms resolution, and ffmpeg reads it without a "non monotonically
 * increasing dts" complaint. For sessions without anomalies: every interval
 * in the file equals the RTP timestamp interval within the 1 ms rounding,
 * and the muxer never had to move a frame. KEEP_TS_FILES=1 keeps the
 * files (their paths are printed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common_buf.h"
#include "media_enc.h"
#include "media_mux.h"
#include "media_rtp.h"

#define MS 1000000LL
#define SECONDS 12
#define VFRAMES (SECONDS * 30)
#define AFRAMES (SECONDS * 50)

/* ---- real encoded media ---------------------------------------------- */

struct coded {
	struct buf *data[AFRAMES];
	bool key[AFRAMES];
	int n;
};

static struct coded vp8, opus;
static uint8_t opus_head[64];
static size_t opus_head_len;

static int collect(void *opaque, struct media_enc_packet *pkt)
{
	struct coded *c = opaque;

	if (c->n < AFRAMES) {
		c->key[c->n] = pkt->keyframe;
		c->data[c->n++] = pkt->data;
	} else {
		buf_unref(pkt->data);
	}
	return 0;
}

static void encode_media(void)
{
	struct media_enc_params vp = { .width = 64, .height = 48, .fps = 30, .bitrate_bps = 200000,
				       .keyframe_interval = 15, .threads = 1 };
	struct media_enc_params ap = { .sample_rate = 48000, .channels = 2, .bitrate_bps = 32000 };
	char err[200];
	struct media_enc *e = media_enc_new(&media_enc_vp8, &vp, err, sizeof(err));
	struct buf *img = buf_new(64 * 48 * 3 / 2), *pcm = buf_new(960 * 2 * sizeof(int16_t));

	CHECK(e && img && pcm);
	if (!e || !img || !pcm)
		exit(1);
	for (int i = 0; i < VFRAMES; i++) {
		memset(img->data, 0x80, img->size);
		memset(img->data, (i * 5) & 0xff, 64 * 48);
		img->data[(i * 13) % (64 * 48)] = 0xff;
		e->driver->encode(e, img, 0, (int64_t)i * 100000000LL / 3, false, collect, &vp8);
	}
	e->driver->encode(e, NULL, 0, 0, false, collect, &vp8);
	media_enc_free(e);
	e = media_enc_new(&media_enc_opus, &ap, err, sizeof(err));
	CHECK(e != NULL);
	if (!e)
		exit(1);
	memcpy(opus_head, e->codec_private, e->codec_private_len);
	opus_head_len = e->codec_private_len;
	for (int i = 0; opus.n < AFRAMES && i < AFRAMES + 10; i++) {
		int16_t *s = (int16_t *)pcm->data;

		for (int k = 0; k < 960 * 2; k++)
			s[k] = (int16_t)(((i * 960 + k / 2) % 110) * 200 - 11000);
		e->driver->encode(e, pcm, 960, (int64_t)i * 20 * MS, false, collect, &opus);
	}
	media_enc_free(e);
	buf_unref(img);
	buf_unref(pcm);
	CHECK(vp8.n == VFRAMES && opus.n == AFRAMES && vp8.key[0]);
}

/* ---- the sender -------------------------------------------------------- */

static uint32_t rnd(uint32_t *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return *seed >> 8;
}

struct event {
	int64_t arrival;
	int order;       /* generation order: keeps ties stable */
	int stream;      /* 0 video, 1 audio */
	bool rtcp;
	size_t len;
	uint8_t data[1300];
};

struct session {
	struct event *ev;
	int nev, cap;
	int anomalies;   /* frames sent with an equal or backwards timestamp */
	int ssrc_changes;
};

static struct event *add_event(struct session *s, int stream, int64_t arrival)
{
	if (s->nev == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4096;
		s->ev = realloc(s->ev, (size_t)s->cap * sizeof(*s->ev));
		if (!s->ev)
			exit(1);
	}
	memset(&s->ev[s->nev], 0, sizeof(s->ev[0]));
	s->ev[s->nev].stream = stream;
	s->ev[s->nev].arrival = arrival;
	s->ev[s->nev].order = s->nev;
	return &s->ev[s->nev++];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static size_t rtp_header(uint8_t *p, bool marker, uint8_t pt, uint16_t seq, uint32_t ts, uint32_t ssrc)
{
	p[0] = 0x80;
	p[1] = (uint8_t)((marker ? 0x80 : 0) | pt);
	p[2] = (uint8_t)(seq >> 8);
	p[3] = (uint8_t)seq;
	put32(p + 4, ts);
	put32(p + 8, ssrc);
	return 12;
}

/* What the sender of one stream does, and how its packets travel. */
struct track_plan {
	int stream;
	uint32_t rate, step;   /* RTP ticks per second and per frame */
	int64_t period_ns;     /* frame period on the sender's (skewed) clock */
	uint32_t ts, ssrc;
	uint16_t seq;
	int change_at;         /* frame index of an SSRC change, -1: none */
};

/* The path: jitter per packet, and bursts: from time to time a relay holds
 * everything sent for up to 250 ms, then releases it at once (both streams). */
#define MAX_HOLDS 64

struct net {
	uint32_t seed;
	int64_t jitter_ns;     /* uniform 0..jitter */
	int64_t hold_start[MAX_HOLDS], hold_end[MAX_HOLDS];
	int holds;
};

static void net_init(struct net *n, uint32_t seed, int64_t jitter_ns)
{
	int64_t t = 300 * MS;

	memset(n, 0, sizeof(*n));
	n->seed = seed;
	n->jitter_ns = jitter_ns;
	while (n->holds < MAX_HOLDS && t < (SECONDS + 2) * 1000 * MS) {
		n->hold_start[n->holds] = t;
		n->hold_end[n->holds++] = t + (int64_t)(rnd(&n->seed) % 250) * MS;
		t += 500 * MS + (int64_t)(rnd(&n->seed) % 1500) * MS;
	}
}

static int64_t travel(struct net *n, int64_t sent)
{
	int64_t a = sent + (n->jitter_ns ? (int64_t)(rnd(&n->seed) % (uint64_t)n->jitter_ns) : 0);

	for (int i = 0; i < n->holds; i++)
		if (sent >= n->hold_start[i] && sent < n->hold_end[i] && a < n->hold_end[i])
			a = n->hold_end[i];
	return a;
}

/* An SR for the plan's current timeline: NTP of the sender's wall clock,
 * which runs 'ntp_base' ahead of the local one. */
static void send_sr(struct session *s, struct track_plan *p, struct net *n, int64_t sent, uint32_t ts,
		    int64_t ntp_base)
{
	struct event *e = add_event(s, p->stream, travel(n, sent));
	uint64_t ntp = media_rtcp_unix_ns_to_ntp(ntp_base + sent);

	e->rtcp = true;
	e->data[0] = 0x80;
	e->data[1] = 200;
	e->data[3] = 6;
	put32(e->data + 4, p->ssrc);
	put32(e->data + 8, (uint32_t)(ntp >> 32));
	put32(e->data + 12, (uint32_t)ntp);
	put32(e->data + 16, ts);
	e->len = 28;
}

static void plan_track(struct session *s, struct track_plan *p, struct net *n, bool anomalies, bool sr,
		       int64_t sr_from, int64_t ntp_base, uint32_t *seed)
{
	const struct coded *c = p->stream == 0 ? &vp8 : &opus;
	uint32_t prev_ts = p->ts;
	int64_t next_sr = sr_from;

	for (int i = 0; i < c->n; i++) {
		int64_t sent = (int64_t)i * p->period_ns;
		uint32_t ts = p->ts + (uint32_t)i * p->step;
		const struct buf *f = c->data[i];
		size_t off = 0;

		if (i == p->change_at) {
			/* a republish: new SSRC, sequence and timestamp base,
			 * after a short silence */
			p->ssrc ^= 0x5a5a0000u;
			p->seq = (uint16_t)rnd(seed);
			p->ts = rnd(seed) - (uint32_t)i * p->step;
			ts = p->ts + (uint32_t)i * p->step;
			s->ssrc_changes++;
		} else if (anomalies && i > 0 && rnd(seed) % 100 < 3) {
			ts = rnd(seed) & 1 ? prev_ts : prev_ts - p->step / 2;
			s->anomalies++;
		}
		prev_ts = ts;
		if (sr && sent >= next_sr) {
			send_sr(s, p, n, sent, p->ts + (uint32_t)i * p->step, ntp_base);
			next_sr = sent + 1000 * MS;
		}
		/* one frame: VP8 split into packets of at most 1200 bytes */
		do {
			size_t chunk = f->size - off > 1200 ? 1200 : f->size - off;
			bool last = off + chunk == f->size;
			struct event *e = add_event(s, p->stream, travel(n, sent));
			size_t h = rtp_header(e->data, p->stream == 0 ? last : true, p->stream == 0 ? 96 : 111,
					      p->seq++, ts, p->ssrc);

			if (p->stream == 0)
				e->data[h++] = off == 0 ? 0x10 : 0x00;
			memcpy(e->data + h, f->data + off, chunk);
			e->len = h + chunk;
			off += chunk;
		} while (off < f->size);
	}
}

static int by_arrival(const void *a, const void *b)
{
	const struct event *x = a, *y = b;

	if (x->arrival != y->arrival)
		return x->arrival < y->arrival ? -1 : 1;
	return x->order - y->order;
}

/* ---- the receiver and the muxer ------------------------------------------ */

struct out_frame {
	int stream;
	int64_t pts_ns, ext_ts;
	bool key;
	struct buf *data;
};

struct received {
	struct out_frame *f;
	int n, cap;
};

static void take(struct received *r, struct media_rtp_rx *rx, int stream, int64_t now)
{
	struct media_rtp_frame f;

	while (media_rtp_rx_poll(rx, now, &f) == 1) {
		if (r->n == r->cap) {
			r->cap = r->cap ? r->cap * 2 : 1024;
			r->f = realloc(r->f, (size_t)r->cap * sizeof(*r->f));
			if (!r->f)
				exit(1);
		}
		r->f[r->n++] = (struct out_frame){ .stream = stream, .pts_ns = f.pts_ns, .ext_ts = f.ext_ts,
						   .key = f.keyframe, .data = f.data };
	}
}

static int by_pts(const void *a, const void *b)
{
	const struct out_frame *x = a, *y = b;

	if (x->pts_ns != y->pts_ns)
		return x->pts_ns < y->pts_ns ? -1 : 1;
	return x->stream - y->stream;
}

/* Reads the file's packets back: per stream, timestamps in ms, in file order. */
static int probe_packets(const char *path, int64_t *pts[2], int n[2])
{
	char cmd[512];
	FILE *p;
	int idx;
	long long t;

	snprintf(cmd, sizeof(cmd), "ffprobe -v error -show_packets -show_entries packet=stream_index,pts "
		 "-of csv=p=0 '%s'", path);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	n[0] = n[1] = 0;
	while (fscanf(p, "%d,%lld", &idx, &t) == 2) {
		if (idx < 0 || idx > 1)
			continue;
		pts[idx] = realloc(pts[idx], (size_t)(n[idx] + 1) * sizeof(int64_t));
		if (!pts[idx])
			exit(1);
		pts[idx][n[idx]++] = t;
	}
	return pclose(p) == 0 ? 0 : -1;
}

/* ffmpeg's complaints while decoding the whole file (empty when none). */
static void decode_errors(const char *path, char *out, size_t cap)
{
	char cmd[512];
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -v error -i '%s' -f null - 2>&1", path);
	p = popen(cmd, "r");
	if (!p) {
		snprintf(out, cap, "cannot run ffmpeg");
		return;
	}
	n = fread(out, 1, cap - 1, p);
	out[n] = 0;
	pclose(p);
}

/* One recorded session. 'anomalies' adds equal/backwards timestamps and an
 * SSRC change on each stream; 'sr' makes the sender send Sender Reports
 * from a random moment on; 'skew_ppm' runs the audio clock fast. */
static void run_session(uint32_t seed, bool anomalies, bool sr, int skew_ppm, int64_t jitter_ns)
{
	uint32_t id = seed;
	struct session s = { 0 };
	struct net net;
	struct track_plan v = { .stream = 0, .rate = 90000, .step = 3000, .period_ns = 100000000LL / 3,
				.ts = 0xffffffffu - 90000u * 2, .ssrc = 0x1111, .seq = 65500, .change_at = -1 };
	struct track_plan a = { .stream = 1, .rate = 48000, .step = 960,
				.period_ns = (int64_t)(20e6 / (1.0 + skew_ppm / 1e6)),
				.ts = 0xffffffffu - 48000u * 5, .ssrc = 0x2222, .seq = 100, .change_at = -1 };
	struct media_rtp_sync sync = { 0 };
	struct media_rtp_rx_config vc = { .codec = MEDIA_RTP_CODEC_VP8, .payload_type = 96 };
	struct media_rtp_rx_config ac = { .codec = MEDIA_RTP_CODEC_OPUS, .payload_type = 111 };
	struct media_rtp_rx *rx[2];
	struct received r = { 0 };
	int64_t sr_from = (int64_t)(1000 + rnd(&seed) % 6000) * MS;
	int64_t ntp_base = 1700000000LL * 1000000000LL;
	char path[] = "/tmp/edgerec_ts_XXXXXX";
	char err[256], errs[4096];
	int fd = mkstemp(path), tracks[2];
	int64_t *pts[2] = { NULL, NULL }, last = 0;
	int n[2] = { 0, 0 }, written[2] = { 0, 0 };
	uint64_t fixes_before = media_mux_timestamp_fixes();
	struct media_mux *mux;
	bool strict = true, rtp_intervals = true;

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	close(fd);
	net_init(&net, seed * 7 + 1, jitter_ns);
	if (anomalies) {
		v.change_at = (int)(VFRAMES / 3 + rnd(&seed) % (VFRAMES / 3));
		a.change_at = (int)(AFRAMES / 3 + rnd(&seed) % (AFRAMES / 3));
	}
	plan_track(&s, &v, &net, anomalies, sr, sr_from, ntp_base, &seed);
	plan_track(&s, &a, &net, anomalies, sr, sr_from, ntp_base, &seed);
	qsort(s.ev, (size_t)s.nev, sizeof(s.ev[0]), by_arrival);

	rx[0] = media_rtp_rx_new(&vc, &sync, 0);
	rx[1] = media_rtp_rx_new(&ac, &sync, 0);
	for (int i = 0; i < s.nev; i++) {
		struct event *e = &s.ev[i];

		if (e->rtcp)
			media_rtp_rx_push_rtcp(rx[e->stream], e->data, e->len, e->arrival);
		else
			media_rtp_rx_push(rx[e->stream], e->data, e->len, e->arrival);
		take(&r, rx[0], 0, e->arrival);
		take(&r, rx[1], 1, e->arrival);
		last = e->arrival;
	}
	take(&r, rx[0], 0, last + 10LL * 1000 * MS);
	take(&r, rx[1], 1, last + 10LL * 1000 * MS);
	media_rtp_rx_free(rx[0]);
	media_rtp_rx_free(rx[1]);

	/* into the muxer in timestamp order, as the rtp source hands them out */
	qsort(r.f, (size_t)r.n, sizeof(r.f[0]), by_pts);
	mux = media_mux_webm.open(path, "webm", err, sizeof(err));
	CHECK(mux != NULL);
	if (!mux)
		goto done;
	{
		struct media_mux_track vt = { .kind = MEDIA_KIND_VIDEO, .codec = MEDIA_CODEC_VP8, .width = 64,
					      .height = 48, .fps = 0 };
		struct media_mux_track at = { .kind = MEDIA_KIND_AUDIO, .codec = MEDIA_CODEC_OPUS,
					      .sample_rate = 48000, .channels = 2, .codec_private = opus_head,
					      .codec_private_len = opus_head_len };

		tracks[0] = media_mux_webm.add_track(mux, &vt);
		tracks[1] = media_mux_webm.add_track(mux, &at);
	}
	for (int i = 0; i < r.n; i++) {
		struct out_frame *f = &r.f[i];

		CHECK_INT(media_mux_webm.write(mux, tracks[f->stream], f->data->data, f->data->size, f->pts_ns,
					       f->key), 0);
		written[f->stream]++;
	}
	CHECK_INT(media_mux_webm.close(mux, 0, err, sizeof(err)), 0);

	/* the property, on the file */
	CHECK_INT(probe_packets(path, pts, n), 0);
	CHECK_INT(n[0], written[0]);
	CHECK_INT(n[1], written[1]);
	if (!(n[0] > VFRAMES / 2 && n[1] > AFRAMES / 2))
		fprintf(stderr, "seed %u: %d video and %d audio frames in the file\n", id, n[0], n[1]);
	CHECK(n[0] > VFRAMES / 2 && n[1] > AFRAMES / 2);
	for (int k = 0; k < 2; k++)
		for (int i = 1; i < n[k]; i++)
			if (pts[k][i] <= pts[k][i - 1]) {
				if (strict)
					fprintf(stderr, "seed %u stream %d: packet %d at %lld ms after %lld ms\n", id, k, i,
						(long long)pts[k][i], (long long)pts[k][i - 1]);
				strict = false;
			}
	CHECK(strict);
	decode_errors(path, errs, sizeof(errs));
	if (errs[0])
		fprintf(stderr, "seed %u: ffmpeg: %s\n", id, errs);
	CHECK(strstr(errs, "non monoton") == NULL);
	CHECK(errs[0] == 0);
	/* the mapping feeds the muxer so that it rarely has to step in: only for
	 * the sender's own equal or backwards timestamps and the SSRC changes */
	CHECK(media_mux_timestamp_fixes() - fixes_before <= (uint64_t)(s.anomalies + 2 * s.ssrc_changes));
	if (!anomalies) {
		/* intervals in the file are the RTP intervals, within the 1 ms
		 * rounding */
		int idx[2] = { 0, 0 };
		int64_t prev_ts[2] = { 0, 0 }, worst = 0;

		CHECK_INT(media_mux_timestamp_fixes() - fixes_before, 0);
		for (int i = 0; i < r.n; i++) {
			struct out_frame *f = &r.f[i];
			int k = f->stream, j = idx[k]++;

			if (j > 0 && j < n[k]) {
				int64_t rtp_ns = (f->ext_ts - prev_ts[k]) * 1000000000LL / (k == 0 ? 90000 : 48000);
				int64_t file_ns = (pts[k][j] - pts[k][j - 1]) * MS;
				int64_t dev = llabs(file_ns - rtp_ns);

				if (dev > worst)
					worst = dev;
			}
			prev_ts[k] = f->ext_ts;
		}
		if (worst > MS)
			fprintf(stderr, "seed %u: an interval is %.3f ms off its RTP interval\n", id, worst / 1e6);
		rtp_intervals = worst <= MS;
		CHECK(rtp_intervals);
	}
done:
	for (int i = 0; i < r.n; i++)
		buf_unref(r.f[i].data);
	free(r.f);
	free(s.ev);
	free(pts[0]);
	free(pts[1]);
	if (!getenv("KEEP_TS_FILES"))
		unlink(path);
	else
		fprintf(stderr, "kept %s\n", path);
}

int main(void)
{
	encode_media();
	/* clean senders through a bursty relay: RTP intervals in the file */
	run_session(1, false, false, 0, 40 * MS);
	run_session(2, false, true, 0, 40 * MS);
	run_session(3, false, false, 300, 25 * MS);
	/* everything a sender and a network can do */
	for (uint32_t seed = 10; seed < 16; seed++)
		run_session(seed, true, seed & 1, (int)(seed % 3) * 150, (int64_t)(seed % 4) * 15 * MS);
	for (int i = 0; i < vp8.n; i++)
		buf_unref(vp8.data[i]);
	for (int i = 0; i < opus.n; i++)
		buf_unref(opus.data[i]);
	return check_exit();
}
