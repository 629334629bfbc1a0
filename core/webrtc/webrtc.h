/* webrtc: WebRTC ingest transport for WHIP: one UDP port for every
 * session, an ICE-lite agent, a DTLS-SRTP server, SRTP/SRTCP with
 * libsrtp2, and the hand-over of the decrypted RTP to an `rtp` source
 * through a media_rtp_feed (so the jitter buffer, depacketizers, clock
 * mapping and passthrough muxing of core/media do the rest).
 *
 * A session is made from a parsed offer (webrtc_sdp.h) and answers with
 * our ICE credentials, host candidates and certificate fingerprint. The
 * publisher (full ICE, controlling) sends STUN binding requests to our
 * port; those carrying our ufrag and a valid MESSAGE-INTEGRITY validate
 * their source address, and only validated addresses reach DTLS and SRTP
 * (datagrams from others are dropped and counted). The DTLS client's
 * certificate must have the offer's sha-256 fingerprint, else the session
 * ends before any media key exists. A session ends when the publisher
 * stops its consent checks (webrtc.consent_timeout), closes DTLS, fails
 * the handshake or never completes it, when the recording's source lets
 * go of the feed, or on webrtc_session_close(); the end reaches the
 * recording as the end of its source.
 *
 * Options (webrtc_config_register):
 *   webrtc.udp_port        the one UDP port of every session   (41000)
 *   webrtc.bind            local address of that port          (0.0.0.0)
 *   webrtc.host_addresses  addresses announced as host candidates,
 *                          comma-separated ("" = every IPv4 address of
 *                          the interfaces that are up, loopback last)
 *   webrtc.consent_timeout no consent check this long ends a session (30s)
 *   webrtc.nack            generic NACK for lost video packets   (true)
 *
 * Uses: common, config, crypto (DTLS, HMAC-SHA1), media (the feed),
 * libsrtp2, zlib. Every function may be called from any thread; the
 * packets are handled on the module's own thread ("webrtc-udp"). */
#ifndef EDGEREC_WEBRTC_H
#define EDGEREC_WEBRTC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "webrtc_sdp.h"

struct config;
struct webrtc;

int webrtc_config_register(struct config *c);

/* Binds the port and starts the thread. NULL with 'err' (port taken, no
 * address to announce). */
struct webrtc *webrtc_new(const struct config *cfg, char *err, size_t errlen);
/* Ends every session and stops. webrtc_free(NULL) is a no-op. */
void webrtc_free(struct webrtc *w);

/* What a new session gives its creator. */
struct webrtc_session_info {
	uint64_t id;
	char feed[32];      /* the media_rtp_feed's name, for the source's feed= */
	char *answer;       /* malloc'd SDP answer; the caller frees it */
};

/* A new session for 'o' with the streams of 'c'. Returns 0, or -1 with
 * 'err' (out of memory). */
int webrtc_session_new(struct webrtc *w, const struct webrtc_offer *o, const struct webrtc_choice *c,
		       struct webrtc_session_info *out, char *err, size_t errlen);
/* The same on 'feed', a feed made earlier (a recording already waits on
 * it): the session takes over its producer reference, also on failure. */
struct media_rtp_feed;
int webrtc_session_new_on(struct webrtc *w, const struct webrtc_offer *o, const struct webrtc_choice *c,
			  struct media_rtp_feed *feed, struct webrtc_session_info *out, char *err, size_t errlen);
/* Names the session (the recording id) for webrtc_session_close_tag. */
void webrtc_session_set_tag(struct webrtc *w, uint64_t id, const char *tag);
/* Ends and frees the session; returns false when none has that id/tag. */
bool webrtc_session_close(struct webrtc *w, uint64_t id, const char *reason);
bool webrtc_session_close_tag(struct webrtc *w, const char *tag, const char *reason);
/* True while a session with this tag exists (ended or not). */
bool webrtc_session_exists(struct webrtc *w, const char *tag);
/* The publisher's ICE ufrag of the tagged session into 'out'; -1 when none. */
int webrtc_session_remote_ufrag(struct webrtc *w, const char *tag, char *out, size_t outlen);

/* Totals since start, for /metrics. */
struct webrtc_stats {
	uint64_t sessions_started, sessions_active;  /* active: answered and not ended */
	uint64_t ended_consent, ended_dtls_closed, ended_dtls_failed, ended_fingerprint, ended_handshake_timeout,
		ended_closed;
	uint64_t stun_unknown, stun_bad_integrity, stun_ok;
	uint64_t unvalidated_dropped;  /* DTLS/RTP from addresses ICE never validated */
	uint64_t srtp_auth_failures, srtcp_auth_failures;
	uint64_t rtp_packets, rtcp_packets, rtp_unknown_pt, feed_dropped;
	uint64_t rtcp_sent;
	uint64_t rtx_packets, rtx_padding;  /* RFC 4588 repairs put back; padding-only probes dropped */
};
void webrtc_stats(struct webrtc *w, struct webrtc_stats *st);
/* The /metrics text (malloc'd) or NULL. 'opaque' is the struct webrtc. */
char *webrtc_metrics(void *opaque);

#endif
