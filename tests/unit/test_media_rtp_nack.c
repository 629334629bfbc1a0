/* test_media_rtp_nack: which lost packets a receive stream asks for again,
 * the RTCP it writes for that (generic NACK, REMB), and the in-process feed
 * WebRTC ingest hands packets through. */
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "media_rtp.h"
#include "media_rtp_feed.h"

#define MS 1000000LL

static void test_tracker(void)
{
	struct media_rtp_nack k;
	uint16_t out[16];

	memset(&k, 0, sizeof(k));
	media_rtp_nack_reset(&k);
	media_rtp_nack_on_packet(&k, 100, 0, false, 0);
	media_rtp_nack_on_packet(&k, 101, 100, true, 1 * MS);
	CHECK_INT(k.n, 0);
	/* 102, 103 and 105 lost */
	media_rtp_nack_on_packet(&k, 104, 101, true, 2 * MS);
	media_rtp_nack_on_packet(&k, 106, 104, true, 3 * MS);
	CHECK_INT(k.n, 3);
	/* Not yet: a reordered packet may still come. */
	CHECK_INT(media_rtp_nack_due(&k, 5 * MS, 150 * MS, out, 16), 0);
	CHECK_INT(media_rtp_nack_next(&k), 2 * MS + MEDIA_RTP_NACK_WAIT_NS);
	/* 103 came late (reordered): never asked for. */
	media_rtp_nack_on_packet(&k, 103, 106, true, 6 * MS);
	CHECK_INT(k.n, 2);
	CHECK_INT(media_rtp_nack_due(&k, 20 * MS, 150 * MS, out, 16), 2);
	CHECK_INT(out[0], 102);
	CHECK_INT(out[1], 105);
	CHECK_INT(k.requested, 2);
	/* Asked again only after the retry interval. */
	CHECK_INT(media_rtp_nack_due(&k, 30 * MS, 150 * MS, out, 16), 0);
	CHECK_INT(media_rtp_nack_due(&k, 20 * MS + MEDIA_RTP_NACK_RETRY_NS, 150 * MS, out, 16), 2);
	CHECK_INT(k.requested, 2);
	/* The retransmission of 102 arrives. */
	media_rtp_nack_on_packet(&k, 102, 106, true, 70 * MS);
	CHECK_INT(k.recovered, 1);
	CHECK_INT(k.n, 1);
	/* 105 is asked at most MEDIA_RTP_NACK_TRIES times, then given up. */
	CHECK_INT(media_rtp_nack_due(&k, 120 * MS, 150 * MS, out, 16), 1);
	CHECK_INT(media_rtp_nack_due(&k, 170 * MS, 150 * MS, out, 16), 0);
	CHECK_INT(k.n, 0);
	/* A jump is not loss. */
	media_rtp_nack_on_packet(&k, 1000, 106, true, 200 * MS);
	CHECK_INT(k.n, 0);
	/* Expiry: older than the jitter buffer waits. */
	media_rtp_nack_on_packet(&k, 1003, 1000, true, 300 * MS);
	CHECK_INT(k.n, 2);
	CHECK_INT(media_rtp_nack_due(&k, 500 * MS, 150 * MS, out, 16), 0);
	CHECK_INT(k.n, 0);
	/* Bounded. */
	int64_t seq = 2000;
	for (int i = 0; i < 40; i++, seq += 3)
		media_rtp_nack_on_packet(&k, seq + 3, seq, true, 600 * MS);
	CHECK_INT(k.n, MEDIA_RTP_NACK_MAX);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_build(void)
{
	uint8_t out[MEDIA_RTCP_MAX_FEEDBACK];
	/* 65535 and 0..2 wrap into one FCI with 65535 as PID; 40 starts another. */
	uint16_t seqs[] = { 65535, 0, 2, 40 };
	struct media_rtcp_report rep = { .ssrc = 0x11223344 };
	struct media_rtcp_feedback fb = {
		.sender_ssrc = 1, .report = &rep, .media_ssrc = 0x11223344, .pli = true,
		.nack = seqs, .nack_count = 4, .remb_bps = 2500000,
	};
	struct media_rtcp_info info;
	size_t n = media_rtcp_build(&fb, out, sizeof(out));

	CHECK_INT(n, 32 + 12 + (12 + 8) + 24);
	CHECK_INT(media_rtcp_parse(out, n, &info), 0);
	CHECK_INT(info.packets, 4);
	CHECK_INT(info.pli_count, 1);
	CHECK_INT(info.nack_count, 1);
	const uint8_t *nk = out + 32 + 12;
	CHECK_INT(nk[0], 0x81);
	CHECK_INT(nk[1], MEDIA_RTCP_RTPFB);
	CHECK_INT(rd32(nk + 8), 0x11223344);
	CHECK_INT(nk[12] << 8 | nk[13], 65535);
	CHECK_INT(nk[14] << 8 | nk[15], (1 << 0) | (1 << 2)); /* 0 and 2 after 65535 */
	CHECK_INT(nk[16] << 8 | nk[17], 40);
	CHECK_INT(nk[18] << 8 | nk[19], 0);
	const uint8_t *rb = nk + 20;
	CHECK_INT(rb[0], 0x8f);
	CHECK(memcmp(rb + 12, "REMB", 4) == 0);
	uint32_t w = rd32(rb + 16);
	CHECK_INT(w >> 24, 1);
	CHECK_INT((uint64_t)(w & 0x3ffff) << ((w >> 18) & 63), 2500000 & ~((1u << ((w >> 18) & 63)) - 1));
	CHECK_INT(rd32(rb + 20), 0x11223344);
	/* Too small a buffer: nothing. */
	CHECK_INT(media_rtcp_build(&fb, out, 40), 0);
}

/* An Opus packet of sequence 'seq'. */
static size_t opus_packet(uint8_t *out, uint16_t seq)
{
	memset(out, 0, 16);
	out[0] = 0x80;
	out[1] = 111;
	out[2] = (uint8_t)(seq >> 8);
	out[3] = (uint8_t)seq;
	uint32_t ts = (uint32_t)seq * 960;
	out[4] = (uint8_t)(ts >> 24);
	out[5] = (uint8_t)(ts >> 16);
	out[6] = (uint8_t)(ts >> 8);
	out[7] = (uint8_t)ts;
	out[8] = 0xca;
	out[11] = 0xfe;
	out[12] = 0xfc; /* TOC: CELT FB 20 ms, stereo, one frame */
	out[13] = 1;
	return 14;
}

/* A receive stream with nack: a lost packet is asked for and its
 * retransmission recovers it before the jitter buffer gives up. */
static void test_rx_nack(void)
{
	struct media_rtp_rx_config cfg = { .codec = MEDIA_RTP_CODEC_OPUS, .payload_type = 111, .local_ssrc = 7,
					   .jb_latency_ns = 150 * MS, .nack = true, .remb_bps = 1000000 };
	struct media_rtp_rx *rx = media_rtp_rx_new(&cfg, NULL, 0);
	uint8_t pkt[32], rtcp[MEDIA_RTCP_MAX_FEEDBACK];
	struct media_rtp_frame f;
	struct media_rtp_rx_stats st;
	int frames = 0;

	CHECK(rx != NULL);
	if (!rx)
		return;
	for (uint16_t s = 1; s <= 10; s++) {
		if (s == 5)
			continue;
		media_rtp_rx_push(rx, pkt, opus_packet(pkt, s), (int64_t)s * 20 * MS);
	}
	/* The report due now carries RR + NACK(5) + REMB. */
	size_t n = media_rtp_rx_rtcp_due(rx, 210 * MS, rtcp, sizeof(rtcp));
	struct media_rtcp_info info;
	CHECK(n > 0);
	CHECK_INT(media_rtcp_parse(rtcp, n, &info), 0);
	CHECK_INT(info.nack_count, 1);
	CHECK(memmem(rtcp, n, "REMB", 4) != NULL);
	media_rtp_rx_push(rx, pkt, opus_packet(pkt, 5), 215 * MS);
	while (media_rtp_rx_poll(rx, 1000 * MS, &f) == 1) {
		frames++;
		buf_unref(f.data);
	}
	CHECK_INT(frames, 10);
	media_rtp_rx_stats(rx, &st);
	CHECK_INT(st.nack_requested, 1);
	CHECK_INT(st.nack_recovered, 1);
	CHECK_INT(st.packets_lost, 0);
	media_rtp_rx_free(rx);
}

static void rtcp_sink(void *opaque, int stream, const uint8_t *data, size_t len)
{
	int *calls = opaque;
	(*calls) += stream == 0 && len == 3 && data[0] == 0x81;
}

static void test_feed(void)
{
	int calls = 0;
	struct media_rtp_feed *f = media_rtp_feed_new(rtcp_sink, &calls);
	struct media_rtp_feed_packet p;
	bool ended = false;
	uint8_t data[3] = { 0x81, 2, 3 };

	CHECK(f != NULL);
	if (!f)
		return;
	char name[MEDIA_RTP_FEED_NAME_MAX];
	snprintf(name, sizeof(name), "%s", media_rtp_feed_name(f));
	struct media_rtp_feed *src = media_rtp_feed_attach(name);
	CHECK(src == f);
	CHECK(media_rtp_feed_attach(name) == NULL); /* one source only */
	CHECK(media_rtp_feed_attach("nosuchfeed") == NULL);
	CHECK_INT(media_rtp_feed_push(f, 1, false, data, 3, 42), 0);
	CHECK_INT(media_rtp_feed_pop(src, &p, &ended), 1);
	CHECK_INT(p.stream, 1);
	CHECK_INT(p.len, 3);
	CHECK_INT(p.arrival_ns, 42);
	CHECK(!ended);
	CHECK(memcmp(p.data, data, 3) == 0);
	CHECK_INT(media_rtp_feed_pop(src, &p, &ended), 0);
	CHECK(!ended);
	/* Full: drops and counts. */
	for (int i = 0; i < MEDIA_RTP_FEED_SLOTS + 5; i++)
		media_rtp_feed_push(f, 0, false, data, 3, i);
	CHECK_INT(media_rtp_feed_dropped(f), 5);
	media_rtp_feed_send_rtcp(src, 0, data, 3);
	CHECK_INT(calls, 1);
	/* The producer goes: no more callbacks, the queue drains, then the end. */
	media_rtp_feed_release(f);
	media_rtp_feed_send_rtcp(src, 0, data, 3);
	CHECK_INT(calls, 1);
	int got = 0;
	while (media_rtp_feed_pop(src, &p, &ended) == 1)
		got++;
	CHECK_INT(got, MEDIA_RTP_FEED_SLOTS);
	CHECK(ended);
	CHECK(media_rtp_feed_attach(name) == NULL);
	media_rtp_feed_detach(src);
}

/* The byte ring behind the slots: packets of every size, pushed and popped
 * at random so that the writer wraps, fills up and drains, come out whole
 * and in order; what does not fit is refused and counted, never torn. */
static void test_feed_bytes(void)
{
	struct media_rtp_feed *f = media_rtp_feed_new(rtcp_sink, NULL);
	static struct media_rtp_feed_packet p;
	static uint8_t data[MEDIA_RTP_MAX_PACKET];
	bool ended = false;
	uint32_t rng = 12345, pushed = 0, popped = 0, refused = 0;
	size_t held = 0;

	CHECK(f != NULL);
	if (!f)
		return;
	struct media_rtp_feed *src = media_rtp_feed_attach(media_rtp_feed_name(f));
	for (int round = 0; round < 200000; round++) {
		rng = rng * 1103515245u + 12345u;
		/* Bursts of pushes, then of pops: the ring fills and empties. */
		bool push = ((round / 700) % 2 == 0) ? (rng >> 16) % 4 != 0 : (rng >> 16) % 4 == 0;
		if (push) {
			size_t len = 1 + (rng >> 8) % MEDIA_RTP_MAX_PACKET;
			for (size_t i = 0; i < len; i++)
				data[i] = (uint8_t)(pushed + i);
			data[0] = (uint8_t)pushed;
			if (media_rtp_feed_push(f, 0, false, data, len, (int64_t)pushed * 10000 + (int64_t)len) == 0) {
				pushed++;
				held += len;
				CHECK(held <= MEDIA_RTP_FEED_BYTES);
			} else {
				refused++;
				/* Refused only when full: by slots, or by bytes (less
				 * than two packets' worth free, counting what the
				 * writer skipped at the end when it wrapped). */
				CHECK(pushed - popped == MEDIA_RTP_FEED_SLOTS ||
				      held + 2 * MEDIA_RTP_MAX_PACKET + 1 > MEDIA_RTP_FEED_BYTES);
			}
		} else if (media_rtp_feed_pop(src, &p, &ended) == 1) {
			size_t len = (size_t)(p.arrival_ns % 10000);
			uint32_t n = (uint32_t)(p.arrival_ns / 10000);
			CHECK_INT(n, popped);
			CHECK_INT(p.len, len);
			bool whole = p.data[0] == (uint8_t)n;
			for (size_t i = 1; i < p.len && whole; i++)
				whole = p.data[i] == (uint8_t)(n + i);
			CHECK(whole);
			popped++;
			held -= p.len;
		}
	}
	CHECK(refused > 0);
	CHECK(popped > 10000);
	CHECK_INT(media_rtp_feed_dropped(f), refused);
	while (media_rtp_feed_pop(src, &p, &ended) == 1)
		;
	/* Exactly full: the ring holds BYTES / MAX packets of the largest size;
	 * with one taken out the next still does not fit (its bytes would meet
	 * the oldest), and none is overwritten. */
	uint64_t drops = media_rtp_feed_dropped(f);
	int fit = MEDIA_RTP_FEED_BYTES / MEDIA_RTP_MAX_PACKET, got = 0;
	for (int i = 0; i < fit + 1; i++) {
		memset(data, i, MEDIA_RTP_MAX_PACKET);
		CHECK_INT(media_rtp_feed_push(f, 0, false, data, MEDIA_RTP_MAX_PACKET, i), i < fit ? 0 : -1);
	}
	CHECK_INT(media_rtp_feed_pop(src, &p, &ended), 1);
	for (int i = fit; i < fit + 3; i++) {
		memset(data, i, MEDIA_RTP_MAX_PACKET);
		media_rtp_feed_push(f, 0, false, data, MEDIA_RTP_MAX_PACKET, i);
	}
	CHECK_INT(media_rtp_feed_dropped(f), drops + 4);
	while (media_rtp_feed_pop(src, &p, &ended) == 1) {
		got++;
		CHECK(p.data[0] == (uint8_t)p.arrival_ns && p.data[MEDIA_RTP_MAX_PACKET - 1] == (uint8_t)p.arrival_ns);
	}
	CHECK_INT(got, fit - 1);
	media_rtp_feed_release(f);
	media_rtp_feed_detach(src);
}

static bool feed_readable(struct media_rtp_feed *f)
{
	struct pollfd pfd = { .fd = media_rtp_feed_fd(f), .events = POLLIN };
	return poll(&pfd, 1, 0) == 1;
}

/* When the producer raises the feed's fd: the next packet after an idle
 * arm, only a nudge or the end during a nap, never for packets the source
 * reads on its own timer. */
static void test_feed_wakeups(void)
{
	struct media_rtp_feed *f = media_rtp_feed_new(rtcp_sink, NULL);
	struct media_rtp_feed_packet p;
	bool ended = false;
	uint8_t data[3] = { 0x80, 2, 3 };

	CHECK(f != NULL);
	if (!f)
		return;
	struct media_rtp_feed *src = media_rtp_feed_attach(media_rtp_feed_name(f));
	CHECK(src == f);
	/* Not armed: packets do not raise it. */
	media_rtp_feed_push(f, 0, false, data, 3, 1);
	CHECK(!feed_readable(src));
	/* Idle arm with a packet queued: read instead of sleeping. */
	CHECK(!media_rtp_feed_arm(src, false));
	CHECK_INT(media_rtp_feed_pop(src, &p, &ended), 1);
	/* Idle arm on an empty feed: the next packet raises it, once. */
	CHECK(media_rtp_feed_arm(src, false));
	CHECK(!feed_readable(src));
	media_rtp_feed_push(f, 0, false, data, 3, 2);
	CHECK(feed_readable(src));
	media_rtp_feed_push(f, 0, false, data, 3, 3);
	/* A nap clears it; packets then do not raise it, a nudge does. */
	CHECK(media_rtp_feed_arm(src, true));
	CHECK(!feed_readable(src));
	media_rtp_feed_push(f, 0, false, data, 3, 4);
	CHECK(!feed_readable(src));
	media_rtp_feed_nudge(f);
	CHECK(feed_readable(src));
	CHECK(media_rtp_feed_arm(src, true));
	CHECK(!feed_readable(src));
	while (media_rtp_feed_pop(src, &p, &ended) == 1)
		;
	/* The end raises it, nap or not; an idle arm then says read. */
	CHECK(media_rtp_feed_arm(src, true));
	media_rtp_feed_end(f, "gone");
	CHECK(feed_readable(src));
	CHECK(!media_rtp_feed_arm(src, false));
	CHECK_INT(media_rtp_feed_pop(src, &p, &ended), 0);
	CHECK(ended);
	media_rtp_feed_release(f);
	media_rtp_feed_detach(src);
}

int main(void)
{
	test_tracker();
	test_build();
	test_rx_nack();
	test_feed();
	test_feed_wakeups();
	test_feed_bytes();
	return check_exit();
}
