/* media_src_rtp: the `rtp` source: plain RTP VP8 or H.264 + Opus from an SFU
 * (Janus rtp_forward, mediasoup PlainTransport) or any RTP sender, delivered
 * as encoded packets for passthrough into webm/mkv (H.264: mkv, and mp4
 * through the remux after the recording).
 *
 * Args ("k=v,k=v"), each optional but at least one port (or an SDP file):
 *   video_port, audio_port   UDP ports to listen on
 *   video_pt=96, audio_pt=111  payload types (-1: any)
 *   video_codec=vp8|h264     the video codec (default vp8, or the SDP's);
 *                            h264 is RFC 6184 packetization-mode 1, its
 *                            SPS/PPS in-band or from the SDP's
 *                            sprop-parameter-sets
 *   sprop=SPS:PPS            H.264 parameter sets (base64, ':' between
 *                            them where SDP has ','), as sprop-parameter-sets
 *   rtcp_mux=0|1             RTCP on the RTP port (RFC 5761)
 *   video_rtcp_port, audio_rtcp_port  separate RTCP ports (default port+1)
 *   video_ssrc (or ssrc), audio_ssrc  accept only this SSRC
 *   pli_to=host:port         where video feedback (RR + PLI) goes; default:
 *                            the source of the RTCP (or, muxed, RTP) received
 *   audio_rtcp_to=host:port  where audio receiver reports go (same default)
 *   bind=0.0.0.0             local address; allow=IP: ignore other senders
 *   latch=1                  without allow=: the first sender's address is
 *                            latched and packets from any other address are
 *                            dropped and counted (media_rtp_foreign_dropped);
 *                            another sender may take over only after the
 *                            latched one has been silent for stall_ms.
 *                            latch=0 accepts every sender
 *   sdp=PATH                 an SDP file (ports, PTs, rtcp, ssrc); explicit
 *                            args override it
 *   latency_ms=150           jitter buffer wait for a missing packet
 *   stall_ms=5000            silence after which a stream counts as stalled
 *   idle_eof_ms=0            > 0: end of stream once every stream that sent
 *                            something has been silent this long
 *   fir=0|1                  send FIR with every PLI
 *   max_frame_kb=4096        largest VP8 frame / H.264 access unit accepted
 *   nack=0|1                 ask for lost video packets again (generic
 *                            NACK; the sender must have agreed, as WebRTC
 *                            senders do with a=rtcp-fb nack)
 *   remb_kbps=0              > 0: REMB in every video report, asking the
 *                            sender to stay under this bitrate
 *   feed=NAME                packets come from an in-process feed
 *                            (media_rtp_feed.h: WebRTC ingest after SRTP)
 *                            instead of sockets; video=0|1, audio=0|1 say
 *                            which streams it carries; RTCP goes back
 *                            through it; its end is the end of the source
 *                            (an error with the producer's reason when no
 *                            frame came before it)
 *
 * One pass of read() drains the sockets into the media_rtp_rx streams, sends
 * the RTCP that is due, and hands out the oldest ready frame. Frames of the
 * two streams are held up to RTP_HOLD_NS so they leave in timestamp order.
 * Video track width/height are the params' until the first keyframe says
 * otherwise in-band (the sender decides the size).
 *
 * VP8 is delivered as it was sent: webm/mkv take it. An mp4 recording (VP9)
 * would mean decoding and re-encoding every stream, about 0.25 core per
 * 720p30 stream on the target box against ~0.003 for passthrough, so VP8
 * rtp rooms are not recorded as mp4: asked for mp4 from this source, the
 * pipeline refuses rather than put VP8 where VP9 belongs. H.264 is the
 * other way round: mkv and mp4 (remuxed) take it, WebM cannot. */
#include "media_source.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "media_rtp.h"
#include "media_rtp_feed.h"
#include "media_rtp_sdp.h"

extern const struct media_source_driver media_source_rtp;

static struct log_handle log_srtp = LOG_HANDLE("media/src_rtp");

#define RTP_HOLD_NS (300 * TIME_NS_PER_MS)
#define MEDIA_RTP_OPUS_PRESKIP 0 /* samples at 48 kHz; why 0: see rtp_open_stream */
#define RTP_RECV_BATCH 64   /* packets read from one socket per pass, at most */
#define RTP_RECV_VLEN 8     /* packets per recvmmsg() */
#define RTP_SOCKET_RCVBUF (1 << 20)
/* While packets flow, the source thread sleeps this long between passes
 * instead of waking for every packet: one pass then reads what arrived
 * meanwhile with a few recvmmsg() calls. A 720p stream sends ~300 packets
 * a second; waking for each was most of a passthrough recording's CPU (and
 * of a server's with 150 of them). Arrival times come from the kernel's
 * receive timestamps, so the wait does not move them; the jitter buffer
 * waits far longer (latency_ms) anyway. When nothing came in the last pass,
 * the thread sleeps in poll() until a packet or a timer. */
#define RTP_COALESCE_NS (20 * TIME_NS_PER_MS)
/* The same for a feed (WHIP): its packets carry their arrival times and
 * wait in memory (a 720p stream at 2.5 Mbit/s puts ~60 KB of the feed's
 * 512 KiB there per pass), and its producer reads its socket every 20 ms,
 * so the source passes less often: 200 ms took a WHIP stream's source
 * thread from ~1.2 to ~1.0 ms of CPU a second against 100 ms
 * (scripts/bench whip, N=10). The source writes the file itself (nothing
 * is encoded), a pass's frames at a time. A gap in the video sequence
 * wakes the source at once (media_rtp_feed_nudge), so NACK asks as soon as
 * with short passes, and while NACKs wait for answers the passes follow
 * their timers (media_rtp_rx_next_wakeup: retries 40 ms apart). */
#define RTP_FEED_COALESCE_NS (200 * TIME_NS_PER_MS)

struct rtp_stream {
	bool video;
	int index;             /* in src->streams */
	int fd, rtcp_fd;       /* rtcp_fd is -1 with rtcp-mux */
	struct media_rtp_rx *rx;
	struct sockaddr_storage fb_addr;
	socklen_t fb_len;
	bool fb_fixed;         /* given by args: never re-learned */
	bool have_pending;
	struct media_rtp_frame pending;
	bool stalled;
	int64_t last_arrival_ns;  /* of the last packet read (monotonic) */
};

struct rtp_priv {
	struct rtp_stream st[2];
	int n;
	struct media_rtp_sync sync;
	int64_t start_ns;
	int64_t duration_ns;
	int64_t idle_eof_ns;
	bool has_allow;
	struct in_addr allow;
	bool latch;            /* latch the first sender (no allow= given) */
	bool latched;
	struct in_addr latched_addr;
	int64_t latched_seen_ns; /* last packet from the latched sender */
	int64_t relatch_ns;      /* silence after which another sender may latch */
	uint64_t foreign;        /* packets dropped from other senders */
	int keyframe_request;  /* atomic: set by request_keyframe() */
	uint8_t opus_head[19];
	/* recvmmsg() batch: packets, their senders, their receive timestamps. */
	uint8_t pkt[RTP_RECV_VLEN][MEDIA_RTP_MAX_PACKET + 1];
	struct sockaddr_storage from[RTP_RECV_VLEN];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(struct timespec))];
	} ctl[RTP_RECV_VLEN];
	struct iovec iov[RTP_RECV_VLEN];
	struct mmsghdr msg[RTP_RECV_VLEN];
	bool input;            /* the last pass read something */
	struct media_rtp_feed *feed; /* feed=: packets from the process, no sockets */
	bool feed_ended;
	bool delivered;        /* a frame went out */
	pthread_mutex_t stats_lock;
	struct media_rtp_rx_stats stats[2];
};

/* Parses "host:port" into a socket address. */
static int rtp_parse_hostport(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128];
	const char *colon = strrchr(text, ':');
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_DGRAM }, *res = NULL;

	if (!colon || colon == text || (size_t)(colon - text) >= sizeof(host))
		return -1;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = 0;
	if (atoi(colon + 1) <= 0 || atoi(colon + 1) > 65535)
		return -1;
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
		return -1;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int rtp_bind(const char *addr, int port, char *err, size_t errlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd, rcvbuf = RTP_SOCKET_RCVBUF;

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		snprintf(err, errlen, "rtp: bad bind address '%s'", addr);
		return -1;
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "rtp: socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	/* Each packet's arrival time (see RTP_COALESCE_NS); without it the
	 * time of the read stands in. */
	setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &(int){ 1 }, sizeof(int));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "rtp: cannot listen on %s:%d: %s", addr, port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads an integer argument within [lo, hi]; absent leaves '*out'. */
static int rtp_arg_int(const char *args, const char *key, long lo, long hi, long *out, char *err, size_t errlen)
{
	char v[64];
	char *end;
	long x;

	if (!media_source_arg(args, key, v, sizeof(v)))
		return 0;
	x = strtol(v, &end, 0);
	if (end == v || *end || x < lo || x > hi) {
		snprintf(err, errlen, "rtp: %s=%s is not a number in %ld..%ld", key, v, lo, hi);
		return -1;
	}
	*out = x;
	return 0;
}

struct rtp_stream_args {
	long port, pt, rtcp_port, ssrc;
	bool has_ssrc;
	bool h264;             /* video: H.264 rather than VP8 */
	char sprop[384];       /* H.264: sprop-parameter-sets of the SDP */
	char fb[160];
};

static int rtp_open_stream(struct rtp_priv *r, struct media_source *src, bool video, const struct rtp_stream_args *a,
			   bool mux, const char *bind_addr, const struct media_rtp_rx_config *base,
			   const struct media_source_params *p, char *err, size_t errlen)
{
	struct rtp_stream *s = &r->st[r->n];
	struct media_rtp_rx_config cfg = *base;
	struct media_stream_info *info = &src->streams[src->nb_streams];

	s->fd = s->rtcp_fd = -1;
	s->video = video;
	if (!r->feed) {
		s->fd = rtp_bind(bind_addr, (int)a->port, err, errlen);
		if (s->fd < 0)
			return -1;
	}
	if (!mux && !r->feed) {
		s->rtcp_fd = rtp_bind(bind_addr, (int)a->rtcp_port, err, errlen);
		if (s->rtcp_fd < 0)
			return -1;
	}
	if (a->fb[0]) {
		if (rtp_parse_hostport(a->fb, &s->fb_addr, &s->fb_len) < 0) {
			snprintf(err, errlen, "rtp: cannot resolve feedback address '%s' (want host:port)", a->fb);
			return -1;
		}
		s->fb_fixed = true;
	}
	cfg.codec = !video ? MEDIA_RTP_CODEC_OPUS : a->h264 ? MEDIA_RTP_CODEC_H264 : MEDIA_RTP_CODEC_VP8;
	cfg.h264_sprop = a->sprop[0] ? a->sprop : NULL;
	if (!video) {
		cfg.nack = false;
		cfg.remb_bps = 0;
	}
	cfg.payload_type = (int)a->pt;
	cfg.has_ssrc = a->has_ssrc;
	cfg.ssrc = (uint32_t)a->ssrc;
	s->rx = media_rtp_rx_new(&cfg, &r->sync, r->start_ns);
	if (!s->rx) {
		util_strlcpy(err, "rtp: out of memory", errlen);
		return -1;
	}
	memset(info, 0, sizeof(*info));
	if (video) {
		info->kind = MEDIA_KIND_VIDEO;
		info->codec = a->h264 ? MEDIA_CODEC_H264 : MEDIA_CODEC_VP8;
		info->width = p->width > 0 ? p->width : 640;
		info->height = p->height > 0 ? p->height : 360;
		/* The sender decides the rate, which the preset's is not: a
		 * track claiming the low preset's 24 fps for a 30 fps sender
		 * makes ffmpeg put two frames in one slot of its 1/24 grid
		 * ("non monotonically increasing dts"). No rate in the header:
		 * readers take it from the timestamps. */
		info->fps_num = 0;
		info->fps_den = 1;
	} else {
		/* RFC 7587: the rtpmap is always opus/48000/2; decoders output
		 * stereo from mono packets too. RTP does not carry the sender's
		 * pre-skip. RFC 7845 defines it as what to drop at the start of
		 * the encoder's stream (312 samples for libopus outside
		 * restricted-lowdelay); a recording joins mid-stream, after that
		 * start, so there is nothing of it to drop: the field is present
		 * and 0. The cost is the sender's lookahead (6.5 ms of constant
		 * audio delay), well inside the 40 ms A/V target (2 ms measured
		 * by test_rtp_ffmpeg). 312 was tried: players then start audio
		 * 6.5 ms before the opening keyframe and ffmpeg's own remux of
		 * the file fails ("non monotonically increasing dts"). */
		static const uint8_t head[19] = { 'O', 'p', 'u', 's', 'H', 'e', 'a', 'd', 1, 2,
						  MEDIA_RTP_OPUS_PRESKIP & 0xff, MEDIA_RTP_OPUS_PRESKIP >> 8,
						  0x80, 0xbb, 0, 0, 0, 0, 0 };
		memcpy(r->opus_head, head, sizeof(head));
		info->kind = MEDIA_KIND_AUDIO;
		info->codec = MEDIA_CODEC_OPUS;
		info->sample_rate = 48000;
		info->channels = 2;
		info->codec_private = r->opus_head;
		info->codec_private_len = sizeof(r->opus_head);
		info->codec_delay_ns = (int64_t)MEDIA_RTP_OPUS_PRESKIP * TIME_NS_PER_SEC / 48000;
		info->seek_preroll_ns = 80 * TIME_NS_PER_MS;
	}
	s->index = src->nb_streams++;
	r->n++;
	if (r->feed)
		LOG_INFO(&log_srtp, "%s: from %s (%s, pt %ld)", video ? "video" : "audio", media_rtp_feed_name(r->feed),
			 !video ? "Opus" : a->h264 ? "H.264" : "VP8", a->pt);
	else
		LOG_INFO(&log_srtp, "%s: listening on %s:%ld (%s, pt %ld), rtcp %s %ld, feedback to %s",
			 video ? "video" : "audio", bind_addr, a->port, !video ? "Opus" : a->h264 ? "H.264" : "VP8",
			 a->pt, mux ? "muxed on" : "on", mux ? a->port : a->rtcp_port,
		 a->fb[0] ? a->fb : "the sender");
	return 0;
}

bool media_rtp_source_h264(const char *args)
{
	char v[512];
	struct media_rtp_sdp sdp;
	char err[128];
	bool h264 = false;

	if (media_source_arg(args, "video_codec", v, sizeof(v)))
		return strcasecmp(v, "h264") == 0;
	if (media_source_arg(args, "sdp", v, sizeof(v))) {
		char *text = util_read_file(v, NULL);
		h264 = text && media_rtp_sdp_parse(text, &sdp, err, sizeof(err)) == 0 && sdp.video.present &&
		       strcmp(sdp.video.codec, "H264") == 0;
		free(text);
	}
	return h264;
}

static void rtp_close(struct media_source *src)
{
	struct rtp_priv *r = src->priv;

	if (!r)
		return;
	for (int i = 0; i < 2; i++) {
		struct rtp_stream *s = &r->st[i];

		if (s->fd >= 0)
			close(s->fd);
		if (s->rtcp_fd >= 0)
			close(s->rtcp_fd);
		if (s->have_pending)
			buf_unref(s->pending.data);
		media_rtp_rx_free(s->rx);
	}
	media_rtp_feed_detach(r->feed);
	pthread_mutex_destroy(&r->stats_lock);
	free(r);
	src->priv = NULL;
}

static int rtp_open(struct media_source *src, const struct media_source_params *p, char *err, size_t errlen)
{
	const char *args = p->args ? p->args : "";
	struct rtp_priv *r = calloc(1, sizeof(*r));
	struct rtp_stream_args va = { .port = 0, .pt = 96 }, aa = { .port = 0, .pt = 111 };
	struct media_rtp_rx_config base = { 0 };
	char bind_addr[64] = "0.0.0.0", v[512];
	long mux = 0, latency_ms = 150, stall_ms = 5000, idle_ms = 0, fir = 0, max_kb = 4096;
	long vrtcp = 0, artcp = 0, nack = 0, remb_kbps = 0;

	if (!r) {
		util_strlcpy(err, "rtp: out of memory", errlen);
		return -1;
	}
	src->priv = r;
	r->st[0].fd = r->st[0].rtcp_fd = r->st[1].fd = r->st[1].rtcp_fd = -1;
	pthread_mutex_init(&r->stats_lock, NULL);
	r->start_ns = time_mono_ns();
	r->duration_ns = p->duration_ns;

	if (media_source_arg(args, "sdp", v, sizeof(v))) {
		struct media_rtp_sdp sdp;
		char *text = util_read_file(v, NULL);

		if (!text) {
			snprintf(err, errlen, "rtp: cannot read SDP file '%s': %s", v, strerror(errno));
			goto fail;
		}
		if (media_rtp_sdp_parse(text, &sdp, err, errlen) < 0) {
			free(text);
			goto fail;
		}
		free(text);
		if (sdp.video.present) {
			va.port = sdp.video.port;
			va.pt = sdp.video.payload_type;
			vrtcp = sdp.video.rtcp_port;
			va.has_ssrc = sdp.video.has_ssrc;
			va.ssrc = sdp.video.ssrc;
			va.h264 = strcmp(sdp.video.codec, "H264") == 0;
			util_strlcpy(va.sprop, sdp.video.h264_sprop, sizeof(va.sprop));
			mux |= sdp.video.rtcp_mux;
		}
		if (sdp.audio.present) {
			aa.port = sdp.audio.port;
			aa.pt = sdp.audio.payload_type;
			artcp = sdp.audio.rtcp_port;
			aa.has_ssrc = sdp.audio.has_ssrc;
			aa.ssrc = sdp.audio.ssrc;
			mux |= sdp.audio.rtcp_mux;
		}
	}
	if (rtp_arg_int(args, "video_port", 1, 65535, &va.port, err, errlen) < 0 ||
	    rtp_arg_int(args, "audio_port", 1, 65535, &aa.port, err, errlen) < 0 ||
	    rtp_arg_int(args, "video_pt", -1, 127, &va.pt, err, errlen) < 0 ||
	    rtp_arg_int(args, "audio_pt", -1, 127, &aa.pt, err, errlen) < 0 ||
	    rtp_arg_int(args, "rtcp_mux", 0, 1, &mux, err, errlen) < 0 ||
	    rtp_arg_int(args, "video_rtcp_port", 1, 65535, &vrtcp, err, errlen) < 0 ||
	    rtp_arg_int(args, "audio_rtcp_port", 1, 65535, &artcp, err, errlen) < 0 ||
	    rtp_arg_int(args, "latency_ms", 0, 5000, &latency_ms, err, errlen) < 0 ||
	    rtp_arg_int(args, "stall_ms", 100, 3600000, &stall_ms, err, errlen) < 0 ||
	    rtp_arg_int(args, "idle_eof_ms", 0, 3600000, &idle_ms, err, errlen) < 0 ||
	    rtp_arg_int(args, "fir", 0, 1, &fir, err, errlen) < 0 ||
	    rtp_arg_int(args, "max_frame_kb", 16, 65536, &max_kb, err, errlen) < 0 ||
	    rtp_arg_int(args, "nack", 0, 1, &nack, err, errlen) < 0 ||
	    rtp_arg_int(args, "remb_kbps", 0, 1000000, &remb_kbps, err, errlen) < 0)
		goto fail;
	{
		long x = -1;

		if (rtp_arg_int(args, "ssrc", 0, 0xffffffffL, &x, err, errlen) < 0 ||
		    rtp_arg_int(args, "video_ssrc", 0, 0xffffffffL, &x, err, errlen) < 0)
			goto fail;
		if (x >= 0) {
			va.has_ssrc = true;
			va.ssrc = x;
		}
		x = -1;
		if (rtp_arg_int(args, "audio_ssrc", 0, 0xffffffffL, &x, err, errlen) < 0)
			goto fail;
		if (x >= 0) {
			aa.has_ssrc = true;
			aa.ssrc = x;
		}
	}
	if (media_source_arg(args, "feed", v, sizeof(v))) {
		long want_v = 1, want_a = 1;
		if (rtp_arg_int(args, "video", 0, 1, &want_v, err, errlen) < 0 ||
		    rtp_arg_int(args, "audio", 0, 1, &want_a, err, errlen) < 0)
			goto fail;
		r->feed = media_rtp_feed_attach(v);
		if (!r->feed) {
			snprintf(err, errlen, "rtp: no feed '%s' to read (the publisher went away?)", v);
			goto fail;
		}
		/* Streams stand for the feed's 0 (video) and 1 (audio); the
		 * port numbers only mark them present. */
		va.port = want_v ? 1 : 0;
		aa.port = want_a ? 2 : 0;
		mux = 1;
	}
	if (media_source_arg(args, "video_codec", v, sizeof(v))) {
		if (strcasecmp(v, "h264") != 0 && strcasecmp(v, "vp8") != 0) {
			snprintf(err, errlen, "rtp: video_codec=%s is not vp8 or h264", v);
			goto fail;
		}
		va.h264 = strcasecmp(v, "h264") == 0;
	}
	if (media_source_arg(args, "sprop", va.sprop, sizeof(va.sprop)))
		for (char *c = va.sprop; *c; c++)
			if (*c == ':')
				*c = ',';
	if (!va.port && !aa.port) {
		util_strlcpy(err, "rtp: no stream configured (set video_port and/or audio_port, or sdp=)", errlen);
		goto fail;
	}
	if (va.port && aa.port && va.port == aa.port) {
		util_strlcpy(err, "rtp: video_port and audio_port must differ", errlen);
		goto fail;
	}
	va.rtcp_port = vrtcp ? vrtcp : va.port + 1;
	aa.rtcp_port = artcp ? artcp : aa.port + 1;
	if (!mux && ((va.port && va.rtcp_port > 65535) || (aa.port && aa.rtcp_port > 65535))) {
		util_strlcpy(err, "rtp: RTCP port out of range (set *_rtcp_port or rtcp_mux=1)", errlen);
		goto fail;
	}
	if (media_source_arg(args, "bind", v, sizeof(v)))
		util_strlcpy(bind_addr, v, sizeof(bind_addr));
	{
		long latch = 1;

		if (rtp_arg_int(args, "latch", 0, 1, &latch, err, errlen) < 0)
			goto fail;
		r->latch = latch != 0;
		r->relatch_ns = stall_ms * TIME_NS_PER_MS;
	}
	if (media_source_arg(args, "allow", v, sizeof(v))) {
		if (inet_pton(AF_INET, v, &r->allow) != 1) {
			snprintf(err, errlen, "rtp: allow=%s is not an IPv4 address", v);
			goto fail;
		}
		r->has_allow = true;
	}
	media_source_arg(args, "pli_to", va.fb, sizeof(va.fb));
	media_source_arg(args, "audio_rtcp_to", aa.fb, sizeof(aa.fb));
	r->idle_eof_ns = idle_ms * TIME_NS_PER_MS;

	base.jb_latency_ns = latency_ms ? latency_ms * TIME_NS_PER_MS : -1;
	base.stall_timeout_ns = stall_ms * TIME_NS_PER_MS;
	base.send_fir = fir != 0;
	base.max_frame_bytes = (size_t)max_kb * 1024;
	base.nack = nack != 0;
	base.remb_bps = (uint64_t)remb_kbps * 1000;
	if (va.port && rtp_open_stream(r, src, true, &va, mux, bind_addr, &base, p, err, errlen) < 0)
		goto fail;
	if (aa.port && rtp_open_stream(r, src, false, &aa, mux, bind_addr, &base, p, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	rtp_close(src);
	return -1;
}

static _Atomic unsigned long long rtp_foreign_total;

unsigned long long media_rtp_foreign_dropped(void)
{
	return rtp_foreign_total;
}

/* The sender filter: allow= when given, else the latched first sender. */
static bool rtp_sender_allowed(struct rtp_priv *r, const struct sockaddr_storage *from, int64_t now)
{
	const struct sockaddr_in *in = (const struct sockaddr_in *)from;
	bool ok = true;

	if (r->has_allow) {
		ok = from->ss_family == AF_INET && in->sin_addr.s_addr == r->allow.s_addr;
	} else if (r->latch) {
		if (from->ss_family != AF_INET) {
			ok = false;
		} else if (!r->latched || now - r->latched_seen_ns > r->relatch_ns) {
			char a[INET_ADDRSTRLEN] = "?";
			if (!r->latched || r->latched_addr.s_addr != in->sin_addr.s_addr) {
				inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
				LOG_INFO(&log_srtp, "sender %s latched; packets from other addresses are dropped", a);
			}
			r->latched = true;
			r->latched_addr = in->sin_addr;
		} else {
			ok = r->latched_addr.s_addr == in->sin_addr.s_addr;
		}
		if (ok)
			r->latched_seen_ns = now;
	}
	if (!ok) {
		if (r->foreign++ == 0)
			LOG_WARN(&log_srtp, "dropping RTP/RTCP from a sender other than the room's (counted)");
		rtp_foreign_total++;
	}
	return ok;
}

/* When packet 'i' of the last recvmmsg() batch arrived, on the monotonic
 * clock (media_rtp_arrival_ns), never before the stream's last arrival. */
static int64_t rtp_arrival(const struct rtp_priv *r, int i, int64_t now, int64_t real_now, int64_t last)
{
	int64_t at = media_rtp_arrival_ns(&r->msg[i].msg_hdr, now, real_now);
	return at < last ? last : at;
}

/* Reads what is waiting on one socket (at most a batch, for fairness), a
 * few packets per system call. 'now' and 'real_now' are the monotonic and
 * the wall clock read together at the start of the pass. */
static void rtp_drain_socket(struct rtp_priv *r, struct rtp_stream *s, int fd, bool is_rtcp, int64_t now,
			     int64_t real_now)
{
	for (int total = 0; total < RTP_RECV_BATCH;) {
		for (int i = 0; i < RTP_RECV_VLEN; i++) {
			r->iov[i] = (struct iovec){ .iov_base = r->pkt[i], .iov_len = sizeof(r->pkt[i]) };
			r->msg[i].msg_hdr = (struct msghdr){
				.msg_name = &r->from[i], .msg_namelen = sizeof(r->from[i]),
				.msg_iov = &r->iov[i], .msg_iovlen = 1,
				.msg_control = r->ctl[i].buf, .msg_controllen = sizeof(r->ctl[i].buf),
			};
		}
		int got = recvmmsg(fd, r->msg, RTP_RECV_VLEN, MSG_DONTWAIT, NULL);
		if (got <= 0)
			break;
		r->input = true;
		total += got;
		for (int i = 0; i < got; i++) {
			size_t n = r->msg[i].msg_len;
			socklen_t flen = r->msg[i].msg_hdr.msg_namelen;

			if (!rtp_sender_allowed(r, &r->from[i], now))
				continue;
			/* Learn where feedback goes: the sender of RTCP (ffmpeg's SR
			 * port, Janus's latch packets), or of muxed RTP. */
			if (!s->fb_fixed && (is_rtcp || s->rtcp_fd < 0 || !s->fb_len)) {
				memcpy(&s->fb_addr, &r->from[i], flen);
				s->fb_len = flen;
			}
			int64_t at = rtp_arrival(r, i, now, real_now, s->last_arrival_ns);
			s->last_arrival_ns = at;
			if (is_rtcp)
				media_rtp_rx_push_rtcp(s->rx, r->pkt[i], n, at);
			else
				media_rtp_rx_push(s->rx, r->pkt[i], n, at);
		}
		if (got < RTP_RECV_VLEN)
			break;
	}
}

/* Takes what the feed holds (at most a batch, like a socket) into the
 * streams. */
static void rtp_drain_feed(struct rtp_priv *r)
{
	struct media_rtp_feed_packet p;
	bool ended = false;

	for (int total = 0; total < RTP_RECV_BATCH * 2; total++) {
		if (media_rtp_feed_pop(r->feed, &p, &ended) != 1)
			break;
		r->input = true;
		for (int i = 0; i < r->n; i++) {
			struct rtp_stream *s = &r->st[i];
			if (s->video != (p.stream == 0))
				continue;
			int64_t at = p.arrival_ns < s->last_arrival_ns ? s->last_arrival_ns : p.arrival_ns;
			s->last_arrival_ns = at;
			if (p.rtcp)
				media_rtp_rx_push_rtcp(s->rx, p.data, p.len, at);
			else
				media_rtp_rx_push(s->rx, p.data, p.len, at);
		}
	}
	if (ended && !r->feed_ended) {
		LOG_INFO(&log_srtp, "%s ended: the publisher went away", media_rtp_feed_name(r->feed));
		r->feed_ended = true;
	}
}

static void rtp_send_feedback(struct rtp_stream *s, struct media_rtp_feed *feed, int64_t now)
{
	uint8_t out[MEDIA_RTCP_MAX_FEEDBACK];
	size_t n;
	int fd = s->rtcp_fd >= 0 ? s->rtcp_fd : s->fd;

	if (fd < 0) {
		n = media_rtp_rx_rtcp_due(s->rx, now, out, sizeof(out));
		if (n)
			media_rtp_feed_send_rtcp(feed, s->video ? 0 : 1, out, n);
		return;
	}
	if (!s->fb_len)
		return;
	n = media_rtp_rx_rtcp_due(s->rx, now, out, sizeof(out));
	if (n && sendto(fd, out, n, 0, (struct sockaddr *)&s->fb_addr, s->fb_len) < 0)
		LOG_DEBUG(&log_srtp, "rtcp send failed: %s", strerror(errno));
}

static void rtp_update_stats(struct rtp_priv *r, int64_t now)
{
	pthread_mutex_lock(&r->stats_lock);
	for (int i = 0; i < r->n; i++) {
		struct rtp_stream *s = &r->st[i];
		bool stalled = media_rtp_rx_stalled(s->rx, now);

		media_rtp_rx_stats(s->rx, &r->stats[i]);
		if (stalled != s->stalled) {
			s->stalled = stalled;
			if (stalled)
				LOG_WARN(&log_srtp, "%s stream stalled (no packets)", s->video ? "video" : "audio");
			else
				LOG_INFO(&log_srtp, "%s stream resumed", s->video ? "video" : "audio");
		}
	}
	pthread_mutex_unlock(&r->stats_lock);
}

/* The pending frame to hand out now, or NULL: the oldest one, once every
 * stream that is flowing has one pending (or it has been held long enough). */
static struct rtp_stream *rtp_pick(struct rtp_priv *r, int64_t now)
{
	struct rtp_stream *best = NULL;
	bool all = true;

	for (int i = 0; i < r->n; i++) {
		struct rtp_stream *s = &r->st[i];
		struct media_rtp_rx_stats st;

		if (!s->have_pending) {
			media_rtp_rx_stats(s->rx, &st);
			if (st.first_packet_ns >= 0 && !s->stalled)
				all = false;
			continue;
		}
		if (!best || s->pending.pts_ns < best->pending.pts_ns)
			best = s;
	}
	if (best && (all || now - best->pending.pts_ns >= RTP_HOLD_NS))
		return best;
	return NULL;
}

static bool rtp_idle_eof(struct rtp_priv *r, int64_t now)
{
	bool any = false;

	if (r->idle_eof_ns <= 0)
		return false;
	for (int i = 0; i < r->n; i++) {
		struct media_rtp_rx_stats st;

		media_rtp_rx_stats(r->st[i].rx, &st);
		if (st.first_packet_ns < 0)
			continue;
		any = true;
		if (now - st.last_packet_ns < r->idle_eof_ns || r->st[i].have_pending)
			return false;
	}
	return any;
}

static int rtp_read(struct media_source *src, struct media_packet *pkt, int64_t timeout_ns)
{
	struct rtp_priv *r = src->priv;
	int64_t deadline = time_mono_ns() + (timeout_ns > 0 ? timeout_ns : 0);

	for (;;) {
		int64_t now = time_mono_ns(), real_now = time_wall_ns(), wake = deadline;
		struct pollfd pfd[4];
		struct rtp_stream *s;
		int nfd = 0;

		if (__atomic_exchange_n(&r->keyframe_request, 0, __ATOMIC_ACQ_REL))
			for (int i = 0; i < r->n; i++)
				media_rtp_rx_request_keyframe(r->st[i].rx);
		if (r->feed)
			rtp_drain_feed(r);
		for (int i = 0; i < r->n; i++) {
			s = &r->st[i];
			if (s->fd >= 0)
				rtp_drain_socket(r, s, s->fd, false, now, real_now);
			if (s->rtcp_fd >= 0)
				rtp_drain_socket(r, s, s->rtcp_fd, true, now, real_now);
			if (!s->have_pending && media_rtp_rx_poll(s->rx, now, &s->pending) == 1)
				s->have_pending = true;
			rtp_send_feedback(s, r->feed, now);
		}
		rtp_update_stats(r, now);
		s = rtp_pick(r, now);
		if (s) {
			int64_t pts = s->pending.pts_ns - r->start_ns;

			memset(pkt, 0, sizeof(*pkt));
			pkt->stream = s->index;
			pkt->pts_ns = pts > 0 ? pts : 0;
			pkt->keyframe = s->pending.keyframe;
			pkt->samples = s->pending.samples;
			pkt->duration_ns = s->video ? 0 : (int64_t)s->pending.samples * TIME_NS_PER_SEC / 48000;
			pkt->data = s->pending.data;
			s->have_pending = false;
			r->delivered = true;
			return MEDIA_SOURCE_OK;
		}
		if (r->duration_ns > 0 && now - r->start_ns >= r->duration_ns)
			return MEDIA_SOURCE_EOF;
		if (rtp_idle_eof(r, now))
			return MEDIA_SOURCE_EOF;
		if (r->feed_ended) {
			bool pending = false;
			for (int i = 0; i < r->n; i++)
				pending |= r->st[i].have_pending;
			if (!pending && r->delivered)
				return MEDIA_SOURCE_EOF;
			if (!pending) {
				/* Nothing came: say why the publisher went. */
				char why[160];
				media_rtp_feed_end_reason(r->feed, why, sizeof(why));
				snprintf(src->err, sizeof(src->err), "the publisher went away before any media: %s",
					 why[0] ? why : "its feed ended");
				return MEDIA_SOURCE_ERROR;
			}
		}
		if (now >= deadline)
			return MEDIA_SOURCE_AGAIN;
		for (int i = 0; i < r->n; i++) {
			int64_t w;

			s = &r->st[i];
			w = media_rtp_rx_next_wakeup(s->rx, now, s->fb_len > 0 || r->feed);
			/* With a frame pending, the stream's own next frame may be
			 * ready already; it is not taken before the pending one
			 * leaves, so only the hold limit (and new input) matters. */
			if (s->have_pending && w < s->pending.pts_ns + RTP_HOLD_NS)
				w = w > now ? w : s->pending.pts_ns + RTP_HOLD_NS;
			if (w < wake)
				wake = w;
			if (s->fd >= 0)
				pfd[nfd++] = (struct pollfd){ .fd = s->fd, .events = POLLIN };
			if (s->rtcp_fd >= 0)
				pfd[nfd++] = (struct pollfd){ .fd = s->rtcp_fd, .events = POLLIN };
		}
		if (wake <= now)
			continue;
		if (r->input) {
			/* Packets are flowing: let a few more arrive (RTP_COALESCE_NS). */
			int64_t pause = r->feed ? RTP_FEED_COALESCE_NS : RTP_COALESCE_NS;
			int64_t until = wake < now + pause ? wake : now + pause;
			r->input = false;
			if (r->feed && !r->feed_ended && media_rtp_feed_arm(r->feed, true)) {
				struct pollfd nap = { .fd = media_rtp_feed_fd(r->feed), .events = POLLIN };
				poll(&nap, 1, (int)((until - now + TIME_NS_PER_MS - 1) / TIME_NS_PER_MS));
			} else {
				time_sleep_ns(until - now);
			}
			continue;
		}
		/* An ended feed has nothing more to say: timers only. */
		if (r->feed && !r->feed_ended) {
			if (!media_rtp_feed_arm(r->feed, false))
				continue;
			pfd[nfd++] = (struct pollfd){ .fd = media_rtp_feed_fd(r->feed), .events = POLLIN };
		}
		poll(pfd, (nfds_t)nfd, (int)((wake - now + TIME_NS_PER_MS - 1) / TIME_NS_PER_MS));
	}
}

static void rtp_request_keyframe(struct media_source *src)
{
	struct rtp_priv *r = src->priv;

	__atomic_store_n(&r->keyframe_request, 1, __ATOMIC_RELEASE);
}

int media_rtp_source_stats(struct media_source *src, struct media_rtp_rx_stats *video,
			   struct media_rtp_rx_stats *audio)
{
	struct rtp_priv *r;

	if (!src || src->driver != &media_source_rtp || !src->priv)
		return -1;
	r = src->priv;
	if (video)
		memset(video, 0, sizeof(*video));
	if (audio)
		memset(audio, 0, sizeof(*audio));
	pthread_mutex_lock(&r->stats_lock);
	for (int i = 0; i < r->n; i++) {
		if (r->st[i].video && video)
			*video = r->stats[i];
		if (!r->st[i].video && audio)
			*audio = r->stats[i];
	}
	pthread_mutex_unlock(&r->stats_lock);
	return 0;
}

static void rtp_stats(struct media_source *src, struct media_source_stats *out)
{
	struct media_rtp_rx_stats v, a;

	if (media_rtp_source_stats(src, &v, &a) < 0)
		return;
	out->packets_lost = v.packets_lost + a.packets_lost;
	out->video_frames_dropped = v.frames_dropped;
	out->keyframe_requests = v.keyframe_requests;
	out->packets_unsupported = v.packets_unsupported;
}

const struct media_source_driver media_source_rtp = {
	.name = "rtp",
	.open = rtp_open,
	.read = rtp_read,
	.close = rtp_close,
	.request_keyframe = rtp_request_keyframe,
	.stats = rtp_stats,
};
