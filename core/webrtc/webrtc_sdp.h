/* webrtc_sdp: the SDP of WHIP (RFC 9725, RFC 8829 rules): reads a
 * publisher's offer, picks what edgerec records from it, writes the answer.
 *
 * The answer is ICE-lite with host candidates, setup:passive (edgerec is
 * the DTLS server), rtcp-mux, one BUNDLE transport, recvonly; every
 * section it cannot record (a second video, data channels, other codecs
 * only) is rejected with port 0. Codecs: Opus for audio; for video the
 * recording's format decides (webrtc_offer_choose).
 * Uses: libc only (pure, fuzzed: tests/fuzz/fuzz_webrtc_sdp.c). */
#ifndef EDGEREC_WEBRTC_SDP_H
#define EDGEREC_WEBRTC_SDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEBRTC_SDP_MAX_SECTIONS 16
#define WEBRTC_SDP_MAX_LINE 2048
#define WEBRTC_ICE_UFRAG_MAX 256
#define WEBRTC_ICE_PWD_MAX 256
#define WEBRTC_MID_MAX 32

enum webrtc_kind { WEBRTC_KIND_OTHER = 0, WEBRTC_KIND_AUDIO, WEBRTC_KIND_VIDEO };
enum webrtc_video_codec { WEBRTC_VIDEO_NONE = 0, WEBRTC_VIDEO_VP8, WEBRTC_VIDEO_H264 };

/* One m= section of the offer. */
struct webrtc_sdp_section {
	enum webrtc_kind kind;
	char media[16];          /* "audio", "video", "application", ... */
	char proto[32];
	char first_fmt[16];      /* the first format, repeated in a rejection */
	char mid[WEBRTC_MID_MAX];
	bool sends;              /* sendonly or sendrecv (the default) */
	bool rtcp_mux;
	int opus_pt;             /* -1 when absent */
	int vp8_pt;
	int h264_pt;             /* packetization-mode=1, the first such */
	char h264_fmtp[512];
	uint8_t h264_map[16];    /* payload types with an H264/90000 rtpmap */
	uint8_t rtx_map[16];     /* payload types with an rtx/90000 rtpmap */
	int8_t rtx_apt[128];     /* RFC 4588: rtx payload type -> the payload type it repairs (apt=), -1 */
	bool bundled;            /* in the BUNDLE group */
	char ufrag[WEBRTC_ICE_UFRAG_MAX];  /* media-level ICE credentials, if any */
	char pwd[WEBRTC_ICE_PWD_MAX];
	bool has_fingerprint;
	uint8_t fingerprint[32];
};

struct webrtc_offer {
	char ice_ufrag[WEBRTC_ICE_UFRAG_MAX];
	char ice_pwd[WEBRTC_ICE_PWD_MAX];
	uint8_t fingerprint[32];   /* sha-256 of the publisher's DTLS certificate */
	bool has_bundle;
	int n;
	struct webrtc_sdp_section s[WEBRTC_SDP_MAX_SECTIONS];
};

/* Parses an offer. Returns 0, or -1 with a reason in 'err' fit for an
 * HTTP 400 detail: not SDP, no ICE credentials, no sha-256 fingerprint,
 * a=setup that leaves edgerec no DTLS server role, too many sections. */
int webrtc_offer_parse(const char *text, size_t len, struct webrtc_offer *o, char *err, size_t errlen);

/* What edgerec takes from an offer. */
struct webrtc_choice {
	int video_section, audio_section;  /* indexes into the offer; -1: none */
	enum webrtc_video_codec video_codec;
	int video_pt, audio_pt;
	int video_rtx_pt;  /* the offer's RTX (RFC 4588) for video_pt, answered with NACK; -1: none */
	bool no_nack;      /* leave generic NACK (and RTX) out of the answer (webrtc.nack = false) */
};

/* Picks the sections and codecs to record into 'format' (webm: VP8 only;
 * mkv: H.264 first when 'h264' says edgerec can depacketize it, else VP8;
 * mp4: H.264 only when 'h264', since MP4 holds no VP8 without re-encoding). Audio: the first sending section with Opus.
 * The video's RTX payload type, when offered, is taken too (answered only
 * while 'c->no_nack' is false). Returns 0, or -1
 * with 'err' (no video codec the format can hold, nothing to record, more
 * than one section without BUNDLE). */
int webrtc_offer_choose(const struct webrtc_offer *o, const char *format, bool h264, struct webrtc_choice *c,
			char *err, size_t errlen);

/* The sprop-parameter-sets of an H.264 fmtp ("k=v;k=v"), its sets joined
 * by ':' instead of ',' (so that they fit one value of the rtp source's
 * "k=v,k=v" arguments), into 'out'; "" when absent. Returns 0, or -1 when
 * they do not fit or hold a character base64 has not. */
int webrtc_h264_sprop(const char *fmtp, char *out, size_t outlen);

/* Our side of the answer. */
struct webrtc_answer_params {
	const char *ice_ufrag, *ice_pwd;
	const char *fingerprint;       /* "AB:CD:..." (sha-256) */
	const char *const *addresses;  /* host candidates, IPv4 or IPv6 text */
	int n_addresses;
	int port;                      /* the one UDP port */
	uint64_t session_version;
};

/* Writes the answer; returns a malloc'd string or NULL (out of memory). */
char *webrtc_answer_build(const struct webrtc_offer *o, const struct webrtc_choice *c,
			  const struct webrtc_answer_params *p);

#endif
