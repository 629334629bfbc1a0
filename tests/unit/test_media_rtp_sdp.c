/* test_media_rtp_sdp: the SDP facts a plain-RTP receiver reads (ffmpeg's -sdp_file, a Janus-style offer,
 * H.264 sections). */
#include "check.h"
#include "media_rtp_sdp.h"

int main(void)
{
	struct media_rtp_sdp sdp;
	char err[128];
	const char *ffmpeg =
		"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\na=tool:libavformat 59.27.100\r\n"
		"m=video 5004 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\nb=AS:1000\r\na=rtpmap:96 VP8/90000\r\n"
		"m=audio 5002 RTP/AVP 97\r\nc=IN IP4 127.0.0.1\r\nb=AS:64\r\na=rtpmap:97 opus/48000/2\r\n"
		"a=fmtp:97 sprop-stereo=1\r\n";
	const char *muxed =
		"v=0\nc=IN IP4 10.0.0.5\nm=audio 7000 RTP/AVPF 0 111\na=rtpmap:0 PCMU/8000\n"
		"a=rtpmap:111 OPUS/48000/2\na=rtcp-mux\na=ssrc:3735928559 cname:x\n"
		"m=video 7002 RTP/AVPF 100 97\na=rtpmap:100 H264/90000\na=rtpmap:97 VP8/90000\na=rtcp:7003\n";

	CHECK_INT(media_rtp_sdp_parse(ffmpeg, &sdp, err, sizeof(err)), 0);
	CHECK(sdp.video.present);
	CHECK_INT(sdp.video.port, 5004);
	CHECK_INT(sdp.video.payload_type, 96);
	CHECK(sdp.audio.present);
	CHECK_INT(sdp.audio.port, 5002);
	CHECK_INT(sdp.audio.payload_type, 97);
	CHECK_INT(sdp.audio.channels, 2);
	CHECK_STR(sdp.audio.address, "127.0.0.1");
	CHECK(!sdp.video.rtcp_mux);

	CHECK_INT(media_rtp_sdp_parse(muxed, &sdp, err, sizeof(err)), 0);
	CHECK_INT(sdp.audio.payload_type, 111);
	CHECK(sdp.audio.rtcp_mux);
	CHECK(sdp.audio.has_ssrc);
	CHECK(sdp.audio.ssrc == 3735928559u);
	CHECK_STR(sdp.audio.address, "10.0.0.5");
	CHECK_INT(sdp.video.payload_type, 97);
	CHECK_INT(sdp.video.rtcp_port, 7003);

	/* H.264: packetization-mode 1 with its sprop-parameter-sets (ffmpeg's
	 * -sdp_file); VP8 wins when both are offered; mode 0 (no fmtp) or 2
	 * is not taken */
	const char *h264 =
		"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
		"m=video 5006 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
		"a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAKNkAeAIn5cBEAAADAAQAAAMA8DxgySA=,aMuDyyA=; "
		"profile-level-id=42C028\r\n";
	CHECK_INT(media_rtp_sdp_parse(h264, &sdp, err, sizeof(err)), 0);
	CHECK(sdp.video.present);
	CHECK_INT(sdp.video.payload_type, 96);
	CHECK_STR(sdp.video.codec, "H264");
	CHECK_STR(sdp.video.h264_sprop, "Z0LAKNkAeAIn5cBEAAADAAQAAAMA8DxgySA=,aMuDyyA=");
	CHECK(!sdp.audio.present);
	CHECK_INT(media_rtp_sdp_parse("m=video 5004 RTP/AVPF 102 98 96\na=rtpmap:102 H264/90000\n"
				      "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\n"
				      "a=rtpmap:98 H264/90000\na=fmtp:98 packetization-mode=0\n"
				      "a=rtpmap:96 VP8/90000\n", &sdp, err, sizeof(err)), 0);
	CHECK_INT(sdp.video.payload_type, 96);
	CHECK_STR(sdp.video.codec, "VP8");
	CHECK_INT(media_rtp_sdp_parse("m=video 5004 RTP/AVPF 98 102\na=rtpmap:98 H264/90000\n"
				      "a=fmtp:98 packetization-mode=0\na=rtpmap:102 H264/90000\n"
				      "a=fmtp:102 packetization-mode=1\n", &sdp, err, sizeof(err)), 0);
	CHECK_INT(sdp.video.payload_type, 102);
	CHECK_STR(sdp.video.h264_sprop, "");
	CHECK_INT(media_rtp_sdp_parse("m=video 5004 RTP/AVP 97\na=rtpmap:97 H264/90000\n"
				      "a=fmtp:97 packetization-mode=2\n", &sdp, err, sizeof(err)), -1);
	CHECK(strstr(err, "packetization-mode=1") != NULL);

	/* nothing usable, or malformed */
	CHECK_INT(media_rtp_sdp_parse("v=0\nm=video 5004 RTP/AVP 100\na=rtpmap:100 H264/90000\n", &sdp, err,
				      sizeof(err)), -1);
	CHECK(strstr(err, "no VP8") != NULL);
	CHECK_INT(media_rtp_sdp_parse("m=video\n", &sdp, err, sizeof(err)), -1);
	CHECK_INT(media_rtp_sdp_parse("m=video 99999 RTP/AVP 96\na=rtpmap:96 VP8/90000\n", &sdp, err, sizeof(err)), -1);
	CHECK_INT(media_rtp_sdp_parse("", &sdp, err, sizeof(err)), -1);
	CHECK_INT(media_rtp_sdp_parse(NULL, &sdp, err, sizeof(err)), -1);
	/* an rtpmap for a PT the m= line does not list is ignored */
	CHECK_INT(media_rtp_sdp_parse("m=video 5004 RTP/AVP 96\na=rtpmap:98 VP8/90000\n", &sdp, err, sizeof(err)), -1);
	return check_exit();
}
