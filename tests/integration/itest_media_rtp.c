/* itest_media_rtp: the `rtp` source over real UDP sockets into the WebM muxer.
 *
 * Without arguments (as ctest runs it): a sender thread in this process
 * starts mid-GOP and only sends a keyframe when a PLI reaches it; the test
 * checks that the PLI arrives, that the recording starts with that keyframe,
 * that loss and an SSRC change recover through further PLIs, and that
 * libwebm's parser reads the finished file back with the expected tracks.
 *
 * With arguments it is the recording harness of the Python tests that use
 * real senders (tests/integration/test_rtp_*.py):
 *     itest_media_rtp record ARGS OUT.webm MAX_SECONDS
 * records the rtp source with ARGS until it reports EOF (use idle_eof_ms)
 * or MAX_SECONDS pass, finalizes OUT.webm, and prints one line of
 * "key=value" counters on stdout; and the replayer of the benchmark
 * (scripts/bench.d/50-rtp):
 *     itest_media_rtp replay CAPTURE N BASEPORT SECONDS
 * sends a captured RTP session (records of u8 stream 0=video 1=audio,
 * u32le offset in us, u16le length, bytes) to N recorders at once, video to
 * 127.0.0.1:BASEPORT+4i and audio to BASEPORT+4i+2, each with its own SSRC,
 * looping with continuous sequence numbers and timestamps, paced by the
 * capture's offsets; and a live sender with flashes and beeps:
 *     itest_media_rtp send HOST VPORT APORT SECONDS AUDIO_PPM SR
 * sends the test source (encoded=1: VP8 + Opus, a white frame and a beep
 * every second) as RTP to HOST:VPORT / HOST:APORT in real time, with its
 * audio sample clock AUDIO_PPM fast against its video clock (negative:
 * slow), as capture cards and phones have; SR=1 adds Sender Reports (to
 * port+1) that tie both clocks to the sender's wall clock, SR=0 sends none
 * (a relay such as Janus). PLIs coming back ask the source for a keyframe. */
#include <arpa/inet.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "common_time.h"
#include "media.h"
#include "media_mux.h"
#include "media_rtp.h"
#include "media_source.h"

extern const struct media_source_driver media_source_rtp;

struct rec_result {
	uint64_t video_frames, audio_frames, keyframes, clamped;
	bool first_video_key;
	struct media_rtp_rx_stats v, a;
};

/* Reads the source into a WebM file until EOF or 'max_ns'. The file is
 * opened at the first video keyframe (or after 3 s without one), whose
 * header gives the track's real size; packets before it wait in memory.
 * Frames whose pts would go backwards across tracks are written at the last
 * pts (counted). */
#define REC_EARLY_MAX 512

struct rec_state {
	struct media_source *src;
	struct media_mux *mux;
	int tracks[MEDIA_SOURCE_MAX_STREAMS];
	int64_t last_pts;
	struct media_packet early[REC_EARLY_MAX];
	int nearly;
};

static int rec_open_mux(struct rec_state *st, const char *out, int width, int height)
{
	char err[256];

	st->mux = media_mux_webm.open(out, "webm", err, sizeof(err));
	if (!st->mux) {
		fprintf(stderr, "mux: %s\n", err);
		return -1;
	}
	for (int i = 0; i < st->src->nb_streams; i++) {
		const struct media_stream_info *si = &st->src->streams[i];
		struct media_mux_track t = { .kind = si->kind, .codec = si->codec, .width = si->width,
					     .height = si->height, .sample_rate = si->sample_rate,
					     .channels = si->channels, .codec_private = si->codec_private,
					     .codec_private_len = si->codec_private_len,
					     .codec_delay_ns = si->codec_delay_ns,
					     .seek_preroll_ns = si->seek_preroll_ns };

		if (si->kind == MEDIA_KIND_VIDEO && width > 0) {
			t.width = width;
			t.height = height;
		}
		t.fps = si->fps_den ? (double)si->fps_num / si->fps_den : 0;
		st->tracks[i] = media_mux_webm.add_track(st->mux, &t);
		if (st->tracks[i] < 0) {
			fprintf(stderr, "add_track failed\n");
			return -1;
		}
	}
	return 0;
}

static void rec_write(struct rec_state *st, struct media_packet *pkt, struct rec_result *res)
{
	bool video = st->src->streams[pkt->stream].kind == MEDIA_KIND_VIDEO;

	if (video) {
		if (res->video_frames == 0)
			res->first_video_key = pkt->keyframe;
		res->video_frames++;
		res->keyframes += pkt->keyframe;
	} else {
		res->audio_frames++;
	}
	if (pkt->pts_ns < st->last_pts) {
		res->clamped++;
		pkt->pts_ns = st->last_pts;
	}
	st->last_pts = pkt->pts_ns;
	if (media_mux_webm.write(st->mux, st->tracks[pkt->stream], pkt->data->data, pkt->data->size, pkt->pts_ns,
				 video ? pkt->keyframe : true) < 0)
		fprintf(stderr, "write: %s\n", media_mux_webm.last_error(st->mux));
	media_packet_clear(pkt);
}

static int record(const char *args, const char *out, int64_t max_ns, struct rec_result *res)
{
	struct media_source_params p = { .args = args, .width = 640, .height = 360, .fps = 30,
					 .sample_rate = 48000, .channels = 2 };
	struct rec_state st = { 0 };
	char err[256];
	int64_t start = time_mono_ns();
	bool has_video = false;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	st.src = media_source_new(&media_source_rtp, &p, err, sizeof(err));
	if (!st.src) {
		fprintf(stderr, "open: %s\n", err);
		return -1;
	}
	for (int i = 0; i < st.src->nb_streams; i++)
		has_video |= st.src->streams[i].kind == MEDIA_KIND_VIDEO;
	while (time_mono_ns() - start < max_ns) {
		struct media_packet pkt;
		int r = st.src->driver->read(st.src, &pkt, 100 * TIME_NS_PER_MS);

		if (r == MEDIA_SOURCE_EOF)
			break;
		if (r == MEDIA_SOURCE_ERROR) {
			fprintf(stderr, "read: %s\n", st.src->err);
			goto done;
		}
		if (!st.mux && (r == MEDIA_SOURCE_OK || time_mono_ns() - start > 3 * TIME_NS_PER_SEC)) {
			bool key = r == MEDIA_SOURCE_OK && st.src->streams[pkt.stream].kind == MEDIA_KIND_VIDEO;
			int w = 0, h = 0;

			if (key) {
				bool k;
				media_rtp_vp8_frame_info(pkt.data->data, pkt.data->size, &k, &w, &h);
			}
			if (key || !has_video || time_mono_ns() - start > 3 * TIME_NS_PER_SEC) {
				if (rec_open_mux(&st, out, w, h) < 0) {
					if (r == MEDIA_SOURCE_OK)
						media_packet_clear(&pkt);
					goto done;
				}
				for (int i = 0; i < st.nearly; i++)
					rec_write(&st, &st.early[i], res);
				st.nearly = 0;
			} else if (r == MEDIA_SOURCE_OK) {
				if (st.nearly < REC_EARLY_MAX)
					st.early[st.nearly++] = pkt;
				else
					media_packet_clear(&pkt);
				continue;
			}
		}
		if (r != MEDIA_SOURCE_OK)
			continue;
		rec_write(&st, &pkt, res);
	}
	if (!st.mux && rec_open_mux(&st, out, 0, 0) < 0)
		goto done;
	for (int i = 0; i < st.nearly; i++)
		rec_write(&st, &st.early[i], res);
	st.nearly = 0;
	media_rtp_source_stats(st.src, &res->v, &res->a);
	rc = 0;
done:
	for (int i = 0; i < st.nearly; i++)
		media_packet_clear(&st.early[i]);
	if (st.mux && media_mux_webm.close(st.mux, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "close: %s\n", err);
		rc = -1;
	}
	media_source_free(st.src);
	return rc;
}

static void print_result(const struct rec_result *r)
{
	double ttfk = r->v.first_keyframe_ns >= 0 ? (double)(r->v.first_keyframe_ns - r->v.start_ns) / 1e6 : -1;
	int64_t sr_ns = r->v.first_sr_ns > r->a.first_sr_ns ? r->v.first_sr_ns : r->a.first_sr_ns;
	double first_sr = r->v.first_sr_ns >= 0 && r->a.first_sr_ns >= 0 ? (double)(sr_ns - r->v.start_ns) / 1e6 : -1;
	double first_pkt = r->v.first_packet_ns >= 0 ? (double)(r->v.first_packet_ns - r->v.start_ns) / 1e6 : -1;

	printf("video_frames=%llu audio_frames=%llu keyframes=%llu first_video_key=%d clamped=%llu "
	       "first_packet_ms=%.1f first_keyframe_ms=%.1f keyframe_requests=%llu video_lost=%llu "
	       "video_late=%llu video_dup=%llu video_dropped=%llu ssrc_changes=%llu video_sr=%llu audio_sr=%llu "
	       "audio_lost=%llu first_sr_ms=%.1f\n",
	       (unsigned long long)r->video_frames, (unsigned long long)r->audio_frames,
	       (unsigned long long)r->keyframes, r->first_video_key, (unsigned long long)r->clamped, first_pkt, ttfk,
	       (unsigned long long)r->v.keyframe_requests, (unsigned long long)r->v.packets_lost,
	       (unsigned long long)r->v.packets_late, (unsigned long long)r->v.packets_duplicate,
	       (unsigned long long)r->v.frames_dropped, (unsigned long long)r->v.ssrc_changes,
	       (unsigned long long)r->v.sender_reports, (unsigned long long)r->a.sender_reports,
	       (unsigned long long)r->a.packets_lost, first_sr);
	fflush(stdout);
}

/* ---- the in-process sender --------------------------------------------- */

struct sender {
	int fd;             /* sends RTP, receives RTCP feedback */
	int rtcp_fd;        /* sends nothing; where the recorder's feedback goes */
	int port;           /* the recorder's video port */
	int plis;
	bool stop;
	int keyframes_sent;
};

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* 30 frames a second for 3 s; a keyframe only on PLI. After 1 s one packet
 * of a reference frame is dropped; after 2 s the SSRC changes (a republish
 * after 400 ms of silence). */
static void *sender_main(void *opaque)
{
	struct sender *s = opaque;
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)s->port) };
	uint16_t seq = 60000;
	uint32_t ts = 0xfff00000u, ssrc = 0x1111;
	bool key_wanted = false;
	int64_t t0 = time_mono_ns();

	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	for (int f = 0; f < 90 && !s->stop; f++) {
		uint8_t pkt[1400], fb[256];
		ssize_t n;
		bool key;

		while ((n = recv(s->rtcp_fd, fb, sizeof(fb), MSG_DONTWAIT)) > 0) {
			struct media_rtcp_info info;

			if (media_rtcp_parse(fb, (size_t)n, &info) == 0 && info.pli_count) {
				s->plis++;
				key_wanted = true;
			}
		}
		if (f == 60) {
			ssrc = 0x2222;
			time_sleep_ns(400 * TIME_NS_PER_MS);
		}
		key = key_wanted;
		key_wanted = false;
		s->keyframes_sent += key;
		/* three packets per frame */
		for (int k = 0; k < 3; k++) {
			size_t len = 12 + 4 + 1000;

			memset(pkt, 0, sizeof(pkt));
			pkt[0] = 0x80;
			pkt[1] = (uint8_t)(96 | (k == 2 ? 0x80 : 0));
			pkt[2] = (uint8_t)(seq >> 8);
			pkt[3] = (uint8_t)seq;
			put32(pkt + 4, ts);
			put32(pkt + 8, ssrc);
			pkt[12] = (uint8_t)(0x80 | (k == 0 ? 0x10 : 0));
			pkt[13] = 0x80;
			pkt[14] = (uint8_t)(0x80 | ((f >> 8) & 0x7f));
			pkt[15] = (uint8_t)f;
			if (k == 0) {
				uint8_t *v = pkt + 16;

				v[0] = key ? 0x10 : 0x11;
				v[1] = 0x02;
				if (key) {
					v[3] = 0x9d; v[4] = 0x01; v[5] = 0x2a;
					v[6] = 0x40; v[7] = 0x01; v[8] = 0xf0; v[9] = 0x00; /* 320x240 */
				}
			}
			seq++;
			if (f == 30 && k == 1)
				continue; /* lost */
			sendto(s->fd, pkt, len, 0, (struct sockaddr *)&to, sizeof(to));
		}
		ts += 3000;
		time_sleep_ns(t0 + (int64_t)(f + 1) * 33333333LL - time_mono_ns());
	}
	return NULL;
}

static int udp_socket(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(fd, (struct sockaddr *)&sa, &len);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* A free port pair (p, p+1) for the recorder. */
static int free_port_pair(void)
{
	for (int i = 0; i < 50; i++) {
		int a, fa = udp_socket(&a), fb;
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)(a + 1)) };

		inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
		fb = socket(AF_INET, SOCK_DGRAM, 0);
		if (a % 2 == 0 && a < 65000 && bind(fb, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(fa);
			close(fb);
			return a;
		}
		close(fa);
		close(fb);
	}
	return 0;
}

/* allow=IP: datagrams from any other address are ignored. */
static void allow_test(void)
{
	int port = free_port_pair();
	char args[160], err[256];
	struct media_source_params p = { .args = args };
	struct media_source *src;
	struct media_packet pkt;
	struct media_rtp_rx_stats st;
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct sockaddr_in from2 = { .sin_family = AF_INET };
	int f1, f2, dummy;
	uint8_t rtp[40] = { 0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xfc };

	snprintf(args, sizeof(args), "audio_port=%d,bind=127.0.0.1,allow=127.0.0.2,latency_ms=0", port);
	src = media_source_new(&media_source_rtp, &p, err, sizeof(err));
	CHECK(src != NULL);
	if (!src)
		return;
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	f1 = udp_socket(&dummy);
	f2 = socket(AF_INET, SOCK_DGRAM, 0);
	inet_pton(AF_INET, "127.0.0.2", &from2.sin_addr);
	CHECK(bind(f2, (struct sockaddr *)&from2, sizeof(from2)) == 0);
	for (int i = 0; i < 5; i++) {
		rtp[3] = (uint8_t)(1 + i);
		sendto(f1, rtp, 20, 0, (struct sockaddr *)&to, sizeof(to));
	}
	CHECK_INT(src->driver->read(src, &pkt, 200 * TIME_NS_PER_MS), MEDIA_SOURCE_AGAIN);
	media_rtp_source_stats(src, NULL, &st);
	CHECK_INT(st.packets, 0);
	for (int i = 0; i < 5; i++) {
		rtp[3] = (uint8_t)(10 + i);
		sendto(f2, rtp, 20, 0, (struct sockaddr *)&to, sizeof(to));
	}
	CHECK_INT(src->driver->read(src, &pkt, 1000 * TIME_NS_PER_MS), MEDIA_SOURCE_OK);
	media_packet_clear(&pkt);
	media_rtp_source_stats(src, NULL, &st);
	CHECK_INT(st.packets, 5);
	close(f1);
	close(f2);
	media_source_free(src);
}

static void self_test(void)
{
	struct sender s = { 0 };
	struct rec_result r;
	struct media_file_info info;
	pthread_t th;
	char args[256], path[] = "/tmp/itest_media_rtp_XXXXXX", file[300], err[256];
	int fb_port;

	CHECK(mkdtemp(path) != NULL);
	snprintf(file, sizeof(file), "%s/out.webm", path);
	s.port = free_port_pair();
	CHECK(s.port > 0);
	s.fd = udp_socket(&fb_port);
	s.rtcp_fd = udp_socket(&fb_port);
	snprintf(args, sizeof(args), "video_port=%d,bind=127.0.0.1,pli_to=127.0.0.1:%d,idle_eof_ms=800,latency_ms=60",
		 s.port, fb_port);
	pthread_create(&th, NULL, sender_main, &s);
	CHECK_INT(record(args, file, 10 * TIME_NS_PER_SEC, &r), 0);
	s.stop = true;
	pthread_join(th, NULL);
	print_result(&r);

	/* PLI at the start, after the broken reference, after the SSRC change */
	CHECK(s.plis >= 3);
	CHECK(s.keyframes_sent >= 3);
	CHECK(r.first_video_key);
	CHECK_INT(r.keyframes, (uint64_t)s.keyframes_sent);
	CHECK_INT(r.v.ssrc_changes, 1);
	CHECK_INT(r.v.packets_lost, 1);
	CHECK(r.v.first_keyframe_ns - r.v.first_packet_ns < 200 * TIME_NS_PER_MS);
	/* 90 frames sent; the ones before each keyframe are gone, not many more */
	CHECK(r.video_frames >= 70 && r.video_frames <= 88);
	CHECK_INT(r.clamped, 0);
	CHECK_INT(media_file_probe(file, &info, err, sizeof(err)), 0);
	CHECK_STR(info.video_codec, "V_VP8");
	CHECK_INT(info.video_frames, r.video_frames);
	CHECK(info.duration_ns > 2 * TIME_NS_PER_SEC);

	/* bad arguments fail clearly */
	{
		struct media_source_params p = { .args = "video_port=abc" };
		CHECK(media_source_new(&media_source_rtp, &p, err, sizeof(err)) == NULL);
		CHECK(strstr(err, "video_port") != NULL);
		p.args = "";
		CHECK(media_source_new(&media_source_rtp, &p, err, sizeof(err)) == NULL);
		CHECK(strstr(err, "no stream") != NULL);
		p.args = "sdp=/nonexistent.sdp";
		CHECK(media_source_new(&media_source_rtp, &p, err, sizeof(err)) == NULL);
		CHECK(strstr(err, "SDP") != NULL);
		CHECK(media_source_find("rtp") == &media_source_rtp);
	}
	close(s.fd);
	close(s.rtcp_fd);
	unlink(file);
	rmdir(path);
}

/* ---- the benchmark's replayer ------------------------------------------ */

struct cap_pkt {
	int stream;
	int64_t offset_ns;
	size_t len;
	uint8_t data[1500];
};

static int replay(const char *path, int n, int base, double seconds)
{
	FILE *f = fopen(path, "rb");
	struct cap_pkt *pk = NULL;
	size_t npk = 0, cap = 0;
	uint32_t count[2] = { 0, 0 };
	uint64_t frames_sent = 0, audio_sent = 0;
	struct sockaddr_in *to;
	struct mmsghdr *msgs;
	struct iovec *iov;
	uint8_t (*bufs)[1500];
	int fd = socket(AF_INET, SOCK_DGRAM, 0), sndbuf = 4 << 20;
	int64_t period, start, end;
	uint64_t sent = 0;

	if (!f || fd < 0) {
		fprintf(stderr, "replay: cannot open %s\n", path);
		return 1;
	}
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	for (;;) {
		uint8_t h[7];

		if (fread(h, 1, 7, f) != 7)
			break;
		if (npk == cap) {
			cap = cap ? cap * 2 : 4096;
			pk = realloc(pk, cap * sizeof(*pk));
		}
		pk[npk].stream = h[0] & 1;
		pk[npk].offset_ns = (int64_t)(h[1] | (h[2] << 8) | (h[3] << 16) | ((uint32_t)h[4] << 24)) * 1000;
		pk[npk].len = (size_t)(h[5] | (h[6] << 8));
		if (pk[npk].len < 12 || pk[npk].len > 1500 || fread(pk[npk].data, 1, pk[npk].len, f) != pk[npk].len)
			break;
		count[pk[npk].stream]++;
		npk++;
	}
	fclose(f);
	if (!npk) {
		fprintf(stderr, "replay: empty capture\n");
		return 1;
	}
	period = pk[npk - 1].offset_ns + 40 * TIME_NS_PER_MS;
	to = calloc((size_t)n * 2, sizeof(*to));
	msgs = calloc((size_t)n, sizeof(*msgs));
	iov = calloc((size_t)n, sizeof(*iov));
	bufs = calloc((size_t)n, sizeof(*bufs));
	for (int i = 0; i < 2 * n; i++) {
		to[i].sin_family = AF_INET;
		to[i].sin_port = htons((uint16_t)(base + 4 * (i / 2) + 2 * (i % 2)));
		inet_pton(AF_INET, "127.0.0.1", &to[i].sin_addr);
	}
	start = time_mono_ns();
	end = start + (int64_t)(seconds * 1e9);
	for (int64_t loop = 0;; loop++) {
		for (size_t k = 0; k < npk; k++) {
			const struct cap_pkt *c = &pk[k];
			int64_t at = start + loop * period + c->offset_ns;
			int rate = c->stream ? 48000 : 90000;
			uint32_t ts_add = (uint32_t)(loop * (period / 1000) * rate / 1000000);
			uint16_t seq_add = (uint16_t)(loop * count[c->stream]);

			if (at >= end)
				goto done;
			if (at > time_mono_ns())
				time_sleep_ns(at - time_mono_ns());
			for (int i = 0; i < n; i++) {
				uint8_t *b = bufs[i];
				uint16_t seq;
				uint32_t ts, ssrc = (c->stream ? 0xa0000000u : 0x50000000u) + (uint32_t)i;

				memcpy(b, c->data, c->len);
				seq = (uint16_t)(((b[2] << 8) | b[3]) + seq_add);
				ts = (((uint32_t)b[4] << 24) | ((uint32_t)b[5] << 16) | ((uint32_t)b[6] << 8) | b[7]) + ts_add;
				b[2] = (uint8_t)(seq >> 8);
				b[3] = (uint8_t)seq;
				put32(b + 4, ts);
				put32(b + 8, ssrc);
				iov[i].iov_base = b;
				iov[i].iov_len = c->len;
				memset(&msgs[i], 0, sizeof(msgs[i]));
				msgs[i].msg_hdr.msg_iov = &iov[i];
				msgs[i].msg_hdr.msg_iovlen = 1;
				msgs[i].msg_hdr.msg_name = &to[2 * i + c->stream];
				msgs[i].msg_hdr.msg_namelen = sizeof(to[0]);
			}
			if (c->stream)
				audio_sent++;
			else if (c->data[1] & 0x80)
				frames_sent++;
			for (int done = 0; done < n;) {
				int r = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);

				if (r <= 0)
					break;
				done += r;
				sent += (uint64_t)r;
			}
		}
	}
done:
	printf("sent=%llu video_frames_each=%llu audio_packets_each=%llu\n", (unsigned long long)sent,
	       (unsigned long long)frames_sent, (unsigned long long)audio_sent);
	free(pk);
	free(to);
	free(msgs);
	free(iov);
	free(bufs);
	close(fd);
	return 0;
}

/* ---- the flash/beep sender -------------------------------------------- */

extern const struct media_source_driver media_source_test;

#define SEND_FIFO 1024
#define SEND_PAYLOAD 1100

struct send_fifo {
	struct media_packet p[SEND_FIFO];
	int head, len;
};

static void send_rtp(int fd, const struct sockaddr_in *to, uint8_t pt, bool marker, uint16_t seq, uint32_t ts,
		     uint32_t ssrc, const uint8_t *desc, size_t dlen, const uint8_t *data, size_t len)
{
	uint8_t pkt[12 + 8 + SEND_PAYLOAD];

	pkt[0] = 0x80;
	pkt[1] = (uint8_t)(pt | (marker ? 0x80 : 0));
	pkt[2] = (uint8_t)(seq >> 8);
	pkt[3] = (uint8_t)seq;
	put32(pkt + 4, ts);
	put32(pkt + 8, ssrc);
	if (dlen)
		memcpy(pkt + 12, desc, dlen);
	memcpy(pkt + 12 + dlen, data, len);
	sendto(fd, pkt, 12 + dlen + len, 0, (const struct sockaddr *)to, sizeof(*to));
}

static void send_sr(int fd, const struct sockaddr_in *to, uint32_t ssrc, int64_t wall_ns, uint32_t ts)
{
	uint8_t sr[28] = { 0x80, 200, 0, 6 };
	uint64_t ntp = media_rtcp_unix_ns_to_ntp(wall_ns);

	put32(sr + 4, ssrc);
	put32(sr + 8, (uint32_t)(ntp >> 32));
	put32(sr + 12, (uint32_t)ntp);
	put32(sr + 16, ts);
	sendto(fd, sr, sizeof(sr), 0, (const struct sockaddr *)to, sizeof(*to));
}

static int send_av(const char *host, int vport, int aport, double seconds, int ppm, bool sr)
{
	char args[128], err[256];
	struct media_source_params p = { .args = args, .width = 320, .height = 240, .fps = 30,
					 .sample_rate = 48000, .channels = 2, .realtime = false,
					 .duration_ns = (int64_t)(seconds * 1e9) };
	struct media_source *src;
	struct send_fifo *q = calloc(2, sizeof(*q));
	struct sockaddr_in to[2], rtcp_to[2];
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	uint32_t ssrc[2] = { 0x5e4d0001, 0x5e4d0002 }, ts0[2] = { 0x7fff0000u, 0xfff00000u };
	uint16_t seq[2] = { 1000, 50000 }, pic = 0;
	double speed = 1.0 + ppm / 1e6;
	int64_t t0, next_sr, wall0 = 1700000000LL * TIME_NS_PER_SEC;
	uint64_t sent[2] = { 0, 0 };
	bool eof = false;

	snprintf(args, sizeof(args), "encoded=1,gop=2,bitrate=300000,audio_ppm=%d", ppm);
	src = media_source_new(&media_source_test, &p, err, sizeof(err));
	if (!src || !q || fd < 0) {
		fprintf(stderr, "send: %s\n", src ? "out of resources" : err);
		return 1;
	}
	for (int i = 0; i < 2; i++) {
		to[i] = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)(i ? aport : vport)) };
		inet_pton(AF_INET, host, &to[i].sin_addr);
		rtcp_to[i] = to[i];
		rtcp_to[i].sin_port = htons((uint16_t)((i ? aport : vport) + 1));
	}
	t0 = time_mono_ns() + 50 * TIME_NS_PER_MS;
	next_sr = sr ? t0 : INT64_MAX;
	for (;;) {
		struct media_packet *pk;
		int64_t due[2] = { INT64_MAX, INT64_MAX }, now;
		uint8_t fb[512];
		ssize_t n;
		int k;

		while (!eof && (!q[0].len || !q[1].len) && q[0].len < SEND_FIFO && q[1].len < SEND_FIFO) {
			struct media_packet pkt;
			int r = src->driver->read(src, &pkt, 0);

			if (r == MEDIA_SOURCE_EOF) {
				eof = true;
			} else if (r == MEDIA_SOURCE_OK && pkt.stream >= 0 && pkt.stream < 2) {
				q[pkt.stream].p[(q[pkt.stream].head + q[pkt.stream].len++) % SEND_FIFO] = pkt;
			} else if (r == MEDIA_SOURCE_OK) {
				media_packet_clear(&pkt);
			} else if (r == MEDIA_SOURCE_ERROR) {
				fprintf(stderr, "send: %s\n", src->err);
				return 1;
			}
		}
		/* video leaves on its clock; audio on its own, 'ppm' fast */
		if (q[0].len)
			due[0] = t0 + q[0].p[q[0].head].pts_ns;
		if (q[1].len)
			due[1] = t0 + (int64_t)((double)q[1].p[q[1].head].pts_ns / speed);
		k = due[1] < due[0] ? 1 : 0;
		if (due[k] == INT64_MAX)
			break;
		if (next_sr <= due[k]) {
			int64_t el = next_sr - t0;

			time_sleep_ns(next_sr - time_mono_ns());
			send_sr(fd, &rtcp_to[0], ssrc[0], wall0 + el, ts0[0] + (uint32_t)(el * 90000 / TIME_NS_PER_SEC));
			send_sr(fd, &rtcp_to[1], ssrc[1], wall0 + el,
				ts0[1] + (uint32_t)llround((double)el * 48000.0 * speed / 1e9));
			next_sr += TIME_NS_PER_SEC;
			continue;
		}
		now = time_mono_ns();
		if (due[k] > now)
			time_sleep_ns(due[k] - now);
		while ((n = recv(fd, fb, sizeof(fb), MSG_DONTWAIT)) > 0) {
			struct media_rtcp_info info;

			if (media_rtcp_parse(fb, (size_t)n, &info) == 0 && (info.pli_count || info.fir_count) &&
			    src->driver->request_keyframe)
				src->driver->request_keyframe(src);
		}
		pk = &q[k].p[q[k].head];
		if (k == 0) {
			uint32_t ts = ts0[0] + (uint32_t)(pk->pts_ns * 90000 / TIME_NS_PER_SEC);

			for (size_t off = 0; off < pk->data->size; off += SEND_PAYLOAD) {
				size_t len = pk->data->size - off > SEND_PAYLOAD ? SEND_PAYLOAD : pk->data->size - off;
				uint8_t desc[4] = { (uint8_t)(0x80 | (off == 0 ? 0x10 : 0)), 0x80,
						    (uint8_t)(0x80 | (pic >> 8)), (uint8_t)pic };

				send_rtp(fd, &to[0], 96, off + len == pk->data->size, seq[0]++, ts, ssrc[0], desc, 4,
					 pk->data->data + off, len);
			}
			pic = (uint16_t)((pic + 1) & 0x7fff);
		} else {
			uint32_t ts = ts0[1] + (uint32_t)(pk->pts_ns * 48000 / TIME_NS_PER_SEC);

			send_rtp(fd, &to[1], 111, true, seq[1]++, ts, ssrc[1], NULL, 0, pk->data->data, pk->data->size);
		}
		sent[k]++;
		media_packet_clear(pk);
		q[k].head = (q[k].head + 1) % SEND_FIFO;
		q[k].len--;
	}
	printf("video_frames=%llu audio_frames=%llu\n", (unsigned long long)sent[0], (unsigned long long)sent[1]);
	media_source_free(src);
	free(q);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 8 && strcmp(argv[1], "send") == 0)
		return send_av(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]), atoi(argv[6]), atoi(argv[7]) != 0);
	if (argc == 6 && strcmp(argv[1], "replay") == 0)
		return replay(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
	if (argc == 5 && strcmp(argv[1], "record") == 0) {
		struct rec_result r;

		if (record(argv[2], argv[3], (int64_t)(atof(argv[4]) * 1e9), &r) < 0)
			return 1;
		print_result(&r);
		return 0;
	}
	self_test();
	allow_test();
	return check_exit();
}
