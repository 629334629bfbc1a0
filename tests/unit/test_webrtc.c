/* test_webrtc: the WHIP offer parser and answer builder, codec choice by
 * recording format, and the STUN of the ICE-lite agent (RFC 5769's sample
 * request as the independent reference for MESSAGE-INTEGRITY and
 * FINGERPRINT). No sockets. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "webrtc_sdp.h"
#include "webrtc_stun.h"

/* What Chromium offers for sendonly audio + video with max-bundle (cut to
 * the lines that matter, codecs as it lists them). */
static const char chrome_offer[] =
	"v=0\r\n"
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
	"s=-\r\n"
	"t=0 0\r\n"
	"a=group:BUNDLE 0 1\r\n"
	"a=extmap-allow-mixed\r\n"
	"a=msid-semantic: WMS stream\r\n"
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n"
	"c=IN IP4 0.0.0.0\r\n"
	"a=rtcp:9 IN IP4 0.0.0.0\r\n"
	"a=ice-ufrag:Hx9B\r\n"
	"a=ice-pwd:Ua6o0ZeyoR9sXDNLAw9Y3c1G\r\n"
	"a=ice-options:trickle\r\n"
	"a=fingerprint:sha-256 0B:1C:2D:3E:4F:50:61:72:83:94:A5:B6:C7:D8:E9:FA:0B:1C:2D:3E:4F:50:61:72:83:94:A5:B6:C7:D8:E9:FA\r\n"
	"a=setup:actpass\r\n"
	"a=mid:0\r\n"
	"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
	"a=sendonly\r\n"
	"a=msid:stream audio0\r\n"
	"a=rtcp-mux\r\n"
	"a=rtcp-rsize\r\n"
	"a=rtpmap:111 opus/48000/2\r\n"
	"a=rtcp-fb:111 transport-cc\r\n"
	"a=fmtp:111 minptime=10;useinbandfec=1\r\n"
	"a=rtpmap:63 red/48000/2\r\n"
	"a=ssrc:1001 cname:abc\r\n"
	"m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 45\r\n"
	"c=IN IP4 0.0.0.0\r\n"
	"a=rtcp:9 IN IP4 0.0.0.0\r\n"
	"a=ice-ufrag:Hx9B\r\n"
	"a=ice-pwd:Ua6o0ZeyoR9sXDNLAw9Y3c1G\r\n"
	"a=ice-options:trickle\r\n"
	"a=fingerprint:sha-256 0B:1C:2D:3E:4F:50:61:72:83:94:A5:B6:C7:D8:E9:FA:0B:1C:2D:3E:4F:50:61:72:83:94:A5:B6:C7:D8:E9:FA\r\n"
	"a=setup:actpass\r\n"
	"a=mid:1\r\n"
	"a=sendonly\r\n"
	"a=rtcp-mux\r\n"
	"a=rtcp-rsize\r\n"
	"a=rtpmap:96 VP8/90000\r\n"
	"a=rtcp-fb:96 goog-remb\r\n"
	"a=rtcp-fb:96 nack\r\n"
	"a=rtcp-fb:96 nack pli\r\n"
	"a=rtpmap:97 rtx/90000\r\n"
	"a=fmtp:97 apt=96\r\n"
	"a=rtpmap:102 H264/90000\r\n"
	"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n"
	"a=rtpmap:103 rtx/90000\r\n"
	"a=fmtp:103 apt=102\r\n"
	"a=rtpmap:104 H264/90000\r\n"
	"a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n"
	"a=rtpmap:105 rtx/90000\r\n"
	"a=rtpmap:45 AV1/90000\r\n"
	"a=ssrc-group:FID 2001 2002\r\n"
	"a=ssrc:2001 cname:abc\r\n";

static void test_offer_parse_and_choose(void)
{
	struct webrtc_offer *o = malloc(sizeof(*o));
	struct webrtc_choice c;
	char err[256];

	CHECK_INT(webrtc_offer_parse(chrome_offer, strlen(chrome_offer), o, err, sizeof(err)), 0);
	CHECK_STR(o->ice_ufrag, "Hx9B");
	CHECK_STR(o->ice_pwd, "Ua6o0ZeyoR9sXDNLAw9Y3c1G");
	CHECK_INT(o->fingerprint[0], 0x0B);
	CHECK_INT(o->fingerprint[31], 0xFA);
	CHECK_INT(o->n, 2);
	CHECK(o->has_bundle && o->s[0].bundled && o->s[1].bundled);
	CHECK_INT(o->s[0].opus_pt, 111);
	CHECK_INT(o->s[1].vp8_pt, 96);
	CHECK_INT(o->s[1].h264_pt, 104); /* 102 is packetization-mode=0 */
	/* webm: VP8 whatever else is offered */
	CHECK_INT(webrtc_offer_choose(o, "webm", true, &c, err, sizeof(err)), 0);
	CHECK_INT(c.video_codec, WEBRTC_VIDEO_VP8);
	CHECK_INT(c.video_pt, 96);
	CHECK_INT(c.audio_pt, 111);
	/* mkv: H.264 when it can be depacketized, else VP8 */
	CHECK_INT(webrtc_offer_choose(o, "mkv", true, &c, err, sizeof(err)), 0);
	CHECK_INT(c.video_codec, WEBRTC_VIDEO_H264);
	CHECK_INT(c.video_pt, 104);
	CHECK_INT(webrtc_offer_choose(o, "mkv", false, &c, err, sizeof(err)), 0);
	CHECK_INT(c.video_codec, WEBRTC_VIDEO_VP8);
	/* mp4: H.264 only */
	CHECK_INT(webrtc_offer_choose(o, "mp4", true, &c, err, sizeof(err)), 0);
	CHECK_INT(c.video_codec, WEBRTC_VIDEO_H264);
	CHECK_INT(c.video_pt, 104);

	/* The answer */
	const char *addrs[] = { "192.0.2.7", "127.0.0.1" };
	struct webrtc_answer_params ap = { .ice_ufrag = "ourUfrag", .ice_pwd = "ourPasswordOurPassword12",
					   .fingerprint = "AA:BB", .addresses = addrs, .n_addresses = 2,
					   .port = 41000, .session_version = 7 };
	CHECK_INT(webrtc_offer_choose(o, "webm", false, &c, err, sizeof(err)), 0);
	char *a = webrtc_answer_build(o, &c, &ap);
	CHECK(a != NULL);
	if (a) {
		CHECK(strstr(a, "v=0\r\n") == a);
		CHECK(strstr(a, "a=ice-lite\r\n") != NULL);
		CHECK(strstr(a, "a=group:BUNDLE 0 1\r\n") != NULL);
		CHECK(strstr(a, "m=audio 41000 UDP/TLS/RTP/SAVPF 111\r\n") != NULL);
		CHECK(strstr(a, "m=video 41000 UDP/TLS/RTP/SAVPF 96 97\r\n") != NULL);
		CHECK(strstr(a, "a=setup:passive\r\n") != NULL);
		CHECK(strstr(a, "a=recvonly\r\n") != NULL);
		CHECK(strstr(a, "a=rtcp-mux\r\n") != NULL);
		CHECK(strstr(a, "a=fingerprint:sha-256 AA:BB\r\n") != NULL);
		CHECK(strstr(a, "a=rtcp-fb:96 nack\r\n") != NULL);
		CHECK(strstr(a, "a=rtcp-fb:96 goog-remb\r\n") != NULL);
		CHECK(strstr(a, "a=candidate:1 1 udp 2130706431 192.0.2.7 41000 typ host\r\n") != NULL);
		CHECK(strstr(a, "a=candidate:2 1 udp 2130706430 127.0.0.1 41000 typ host\r\n") != NULL);
		/* RTX (RFC 4588) for the chosen payload, and only for it */
		CHECK(strstr(a, "a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n") != NULL);
		CHECK(strstr(a, "103") == NULL && strstr(a, "H264") == NULL && strstr(a, "sendonly") == NULL);
		free(a);
	}
	CHECK_INT(c.video_rtx_pt, 97);
	/* Without NACK nothing is retransmitted: no RTX either */
	c.no_nack = true;
	a = webrtc_answer_build(o, &c, &ap);
	CHECK(a != NULL);
	if (a) {
		CHECK(strstr(a, "m=video 41000 UDP/TLS/RTP/SAVPF 96\r\n") != NULL);
		CHECK(strstr(a, "rtx") == NULL && strstr(a, "nack\r\n") == NULL);
		free(a);
	}
	/* An H.264 answer repeats the fmtp of the chosen payload, less its
	 * sprop-parameter-sets (they describe the offerer's stream). */
	snprintf(o->s[1].h264_fmtp, sizeof(o->s[1].h264_fmtp),
		 "profile-level-id=42e01f; sprop-parameter-sets=Z0LAHtkA,aMuDyA==;packetization-mode=1");
	CHECK_INT(webrtc_offer_choose(o, "mkv", true, &c, err, sizeof(err)), 0);
	a = webrtc_answer_build(o, &c, &ap);
	CHECK(a != NULL);
	if (a) {
		CHECK(strstr(a, "m=video 41000 UDP/TLS/RTP/SAVPF 104\r\n") != NULL);
		CHECK(strstr(a, "a=rtpmap:104 H264/90000\r\n") != NULL);
		CHECK(strstr(a, "a=fmtp:104 profile-level-id=42e01f;packetization-mode=1\r\n") != NULL);
		CHECK(strstr(a, "a=rtcp-fb:104 nack pli\r\n") != NULL);
		CHECK(strstr(a, "sprop") == NULL && strstr(a, "VP8") == NULL);
		/* 105 is rtx without apt=: it repairs nothing we know */
		CHECK(strstr(a, "rtx") == NULL);
		free(a);
	}
	char sp[64];
	CHECK_INT(webrtc_h264_sprop(o->s[1].h264_fmtp, sp, sizeof(sp)), 0);
	CHECK_STR(sp, "Z0LAHtkA:aMuDyA==");
	CHECK_INT(webrtc_h264_sprop("packetization-mode=1", sp, sizeof(sp)), 0);
	CHECK_STR(sp, "");
	CHECK_INT(webrtc_h264_sprop("sprop-parameter-sets=Z0L<,aM", sp, sizeof(sp)), -1);
	CHECK_INT(webrtc_h264_sprop("sprop-parameter-sets=Z0LAHtkA,aMuDyA==", sp, 8), -1);
	free(o);
}

static void test_offer_refusals(void)
{
	struct webrtc_offer *o = malloc(sizeof(*o));
	struct webrtc_choice c;
	char err[256], *text;
	static const char *const bad[] = {
		"",
		"hello",
		"v=1\r\nm=audio 9 RTP/AVP 0\r\n",
		"v=0\r\ns=-\r\n", /* no media */
		/* no credentials */
		"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n",
		/* the offerer wants to be the DTLS server */
		"v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n"
		"a=fingerprint:sha-256 00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00\r\n"
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=setup:passive\r\n",
		/* sha-1 only */
		"v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n"
		"a=fingerprint:sha-1 00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00\r\n"
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
		/* a short password */
		"v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:short\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		CHECK_INT(webrtc_offer_parse(bad[i], strlen(bad[i]), o, err, sizeof(err)), -1);
		CHECK(err[0] != 0);
	}
	/* too many sections */
	size_t cap = 64 * 1024, len = 0;
	text = malloc(cap);
	len += (size_t)snprintf(text, cap, "v=0\r\n");
	for (int i = 0; i < WEBRTC_SDP_MAX_SECTIONS + 1; i++)
		len += (size_t)snprintf(text + len, cap - len, "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:%d\r\n", i);
	CHECK_INT(webrtc_offer_parse(text, len, o, err, sizeof(err)), -1);
	/* a line longer than the limit */
	memset(text, 'x', 5000);
	memcpy(text, "v=0\r\na=", 7);
	CHECK_INT(webrtc_offer_parse(text, 5000, o, err, sizeof(err)), -1);
	free(text);

	/* No VP8 for webm: refused by the choice, with a reason naming VP8. */
	char *h264_only = strdup(chrome_offer);
	char *vp8 = strstr(h264_only, "a=rtpmap:96 VP8/90000");
	memcpy(vp8 + 12, "XP9", 3);
	CHECK_INT(webrtc_offer_parse(h264_only, strlen(h264_only), o, err, sizeof(err)), 0);
	CHECK_INT(webrtc_offer_choose(o, "webm", true, &c, err, sizeof(err)), -1);
	CHECK(strstr(err, "VP8") != NULL);
	CHECK_INT(webrtc_offer_choose(o, "mkv", true, &c, err, sizeof(err)), 0);
	CHECK_INT(c.video_codec, WEBRTC_VIDEO_H264);
	free(h264_only);
	/* No H.264 for mp4: refused, naming H.264. */
	char *vp8_only = strdup(chrome_offer);
	memcpy(strstr(vp8_only, "a=rtpmap:104 H264") + 12, "X264", 4);
	CHECK_INT(webrtc_offer_parse(vp8_only, strlen(vp8_only), o, err, sizeof(err)), 0);
	CHECK_INT(webrtc_offer_choose(o, "mp4", true, &c, err, sizeof(err)), -1);
	CHECK(strstr(err, "H.264") != NULL && strstr(err, "mp4") != NULL);
	CHECK_INT(webrtc_offer_choose(o, "mkv", true, &c, err, sizeof(err)), 0);
	CHECK_INT(c.video_codec, WEBRTC_VIDEO_VP8);
	free(vp8_only);

	/* Audio and video not bundled: refused (one transport per session). */
	char *nobundle = strdup(chrome_offer);
	memcpy(strstr(nobundle, "a=group:BUNDLE"), "a=group:XUNDLE", 14);
	CHECK_INT(webrtc_offer_parse(nobundle, strlen(nobundle), o, err, sizeof(err)), 0);
	CHECK_INT(webrtc_offer_choose(o, "webm", false, &c, err, sizeof(err)), -1);
	CHECK(strstr(err, "BUNDLE") != NULL);
	free(nobundle);
	free(o);
}

/* RFC 5769 §2.1: a binding request (SOFTWARE "STUN test client") with
 * USERNAME "evtj:h6vY", password
 * "VOkJxbRl1RmTxUk/WvJxBt", MESSAGE-INTEGRITY and FINGERPRINT. */
static const uint8_t rfc5769_request[] = {
	0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
	0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
	0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
	0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
	0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
	0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
	0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
};

static void test_stun(void)
{
	struct webrtc_stun m, r;
	uint8_t msg[sizeof(rfc5769_request)], out[256];

	CHECK(webrtc_stun_is(rfc5769_request, sizeof(rfc5769_request)));
	CHECK_INT(webrtc_stun_parse(rfc5769_request, sizeof(rfc5769_request), &m), 0);
	CHECK_INT(m.type, WEBRTC_STUN_BINDING_REQUEST);
	CHECK_STR(m.username, "evtj:h6vY");
	CHECK(m.has_integrity && m.has_fingerprint && m.controlled && !m.controlling && !m.use_candidate);
	CHECK_INT(m.priority, 0x6e0001ff);
	CHECK(webrtc_stun_integrity_ok(rfc5769_request, sizeof(rfc5769_request), &m, "VOkJxbRl1RmTxUk/WvJxBt"));
	CHECK(!webrtc_stun_integrity_ok(rfc5769_request, sizeof(rfc5769_request), &m, "VOkJxbRl1RmTxUk/WvJxBu"));
	/* Any changed byte breaks the FINGERPRINT (or the framing). */
	for (size_t i = 0; i < sizeof(msg); i++) {
		memcpy(msg, rfc5769_request, sizeof(msg));
		msg[i] ^= 0x40;
		CHECK_INT(webrtc_stun_parse(msg, sizeof(msg), &r), -1);
	}
	/* Truncations are refused. */
	for (size_t n = 0; n < sizeof(msg); n++)
		CHECK_INT(webrtc_stun_parse(rfc5769_request, n, &r), -1);

	/* Our response: parses, carries the transaction id, integrity and the
	 * sender's address XOR'd as RFC 8489 §14.2 says. */
	struct sockaddr_in from = { .sin_family = AF_INET, .sin_port = htons(32853) };
	inet_pton(AF_INET, "192.0.2.1", &from.sin_addr);
	size_t n = webrtc_stun_binding_success(&m, (struct sockaddr *)&from, "ourpassword", out, sizeof(out));
	CHECK(n > 0);
	CHECK_INT(webrtc_stun_parse(out, n, &r), 0);
	CHECK_INT(r.type, WEBRTC_STUN_BINDING_SUCCESS);
	CHECK(memcmp(r.txid, m.txid, 12) == 0);
	CHECK(r.has_integrity && r.has_fingerprint);
	CHECK(webrtc_stun_integrity_ok(out, n, &r, "ourpassword"));
	/* XOR-MAPPED-ADDRESS right after the header: RFC 5769 §2.2's values. */
	static const uint8_t xma[] = { 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43 };
	CHECK(memcmp(out + 20, xma, sizeof(xma)) == 0);
	CHECK_INT(webrtc_stun_binding_success(&m, (struct sockaddr *)&from, "k", out, 40), 0);

	/* IPv6 */
	struct sockaddr_in6 from6 = { .sin6_family = AF_INET6, .sin6_port = htons(32853) };
	inet_pton(AF_INET6, "2001:db8:1234:5678:11:2233:4455:6677", &from6.sin6_addr);
	n = webrtc_stun_binding_success(&m, (struct sockaddr *)&from6, "ourpassword", out, sizeof(out));
	CHECK_INT(webrtc_stun_parse(out, n, &r), 0);
	static const uint8_t xma6[] = { 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
					0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9 };
	CHECK(memcmp(out + 20, xma6, sizeof(xma6)) == 0);
}

int main(void)
{
	test_offer_parse_and_choose();
	test_offer_refusals();
	test_stun();
	return check_exit();
}
