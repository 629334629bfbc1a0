/* media_rtp_sdp: reads the few facts a plain-RTP receiver needs from an SDP
 * description (such as ffmpeg's -sdp_file output): per media section the
 * port, the payload type of VP8 or Opus, the RTCP port or rtcp-mux, an SSRC.
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
	int payload_type;   /* the VP8 / Opus one; -1 if the section offers neither */
	int rtcp_port;      /* a=rtcp: ; 0 when absent */
	bool rtcp_mux;
	bool has_ssrc;
	uint32_t ssrc;
	int channels;       /* Opus: from the rtpmap (always 2 per RFC 7587) */
	char address[64];   /* c= of the section, or of the session */
};

struct media_rtp_sdp {
	struct media_rtp_sdp_stream video, audio;
};

/* Parses 'text'. Returns 0, or -1 with a reason in 'err' (no usable VP8 or
 * Opus section, malformed m= line, port out of range). */
int media_rtp_sdp_parse(const char *text, struct media_rtp_sdp *out, char *err, size_t errlen);

#endif
