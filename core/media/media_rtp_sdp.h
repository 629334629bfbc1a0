/* media_rtp_sdp: reads the few facts a plain-RTP receiver needs from an SDP
 * description (such as ffmpeg's -sdp_file output): per media section the
 * port, the payload type of VP8, H.264 or Opus, the RTCP port or rtcp-mux,
 * an SSRC, and for H.264 the fmtp's sprop-parameter-sets.
 *
 * Video: VP8 when the section offers it (WebM holds it; what rooms recorded
 * before H.264 came), else H.264 whose fmtp says packetization-mode=1 (the
 * mode WebRTC senders, GStreamer's rtph264pay and ffmpeg use; mode 0, the
 * default when absent, and the interleaved mode 2 are not taken).
 *
 * Uses: libc only. */
#ifndef EDGEREC_MEDIA_RTP_SDP_H
#define EDGEREC_MEDIA_RTP_SDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct media_rtp_sdp_stream {
	bool present;
	int port;
	int payload_type;   /* the VP8 / H.264 / Opus one; -1 if the section offers none */
	char codec[8];      /* "VP8" "H264" "opus", "" with no payload type */
	int rtcp_port;      /* a=rtcp: ; 0 when absent */
	bool rtcp_mux;
	bool has_ssrc;
	uint32_t ssrc;
	int channels;       /* Opus: from the rtpmap (always 2 per RFC 7587) */
	char address[64];   /* c= of the section, or of the session */
	char h264_sprop[384]; /* H.264: sprop-parameter-sets of the fmtp, "" if none */
};

struct media_rtp_sdp {
	struct media_rtp_sdp_stream video, audio;
};

/* Parses 'text'. Returns 0, or -1 with a reason in 'err' (no usable VP8,
 * H.264 or Opus section, malformed m= line, port out of range). */
int media_rtp_sdp_parse(const char *text, struct media_rtp_sdp *out, char *err, size_t errlen);

#endif
