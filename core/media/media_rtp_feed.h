/* media_rtp_feed: RTP and RTCP handed to an `rtp` source by another part of
 * the process instead of its own UDP sockets (WebRTC ingest: the packets
 * come out of SRTP in core/webrtc), and the source's RTCP feedback handed
 * back.
 *
 * The producer makes a feed, gives its name to the source as `feed=NAME`
 * in the source arguments, pushes packets (copied; a full feed drops and
 * counts them) and ends it when the peer goes away; the source attaches by
 * name, reads them in its own thread (sleeping on media_rtp_feed_fd() after
 * media_rtp_feed_arm() when it has nothing else to do) and
 * hands its RTCP to media_rtp_feed_send_rtcp(), which calls the producer's
 * callback. Both sides hold a reference; the feed goes with the last.
 * Stream 0 is video, 1 audio. Any thread may call any function. */
#ifndef EDGEREC_MEDIA_RTP_FEED_H
#define EDGEREC_MEDIA_RTP_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEDIA_RTP_FEED_NAME_MAX 32
#include "media_rtp.h"

#define MEDIA_RTP_FEED_SLOTS 1024
/* Bytes a feed holds at most (a full feed drops and counts). */
#define MEDIA_RTP_FEED_BYTES (512 * 1024)

/* Sends one RTCP compound packet of 'stream' to the peer. Called on the
 * source's thread, with the feed's lock held: it must not call back into
 * the feed. */
typedef void (*media_rtp_feed_rtcp_fn)(void *opaque, int stream, const uint8_t *data, size_t len);

struct media_rtp_feed;

/* Producer side. */
struct media_rtp_feed *media_rtp_feed_new(media_rtp_feed_rtcp_fn send_rtcp, void *opaque);
const char *media_rtp_feed_name(const struct media_rtp_feed *f);
/* Copies one packet in. Returns 0, or -1 when the feed is full (dropped,
 * counted) or the packet is too big. */
int media_rtp_feed_push(struct media_rtp_feed *f, int stream, bool rtcp, const uint8_t *data, size_t len,
			int64_t arrival_ns);
/* Something was pushed that the source should see before its next pass
 * (a gap in the video sequence: the sooner it asks again, the likelier
 * the repair comes in time): wakes a source that naps between passes. */
void media_rtp_feed_nudge(struct media_rtp_feed *f);
/* No more packets will come: the source reports the end of its input once
 * it has read what is queued. 'why' (may be NULL) is kept for the source:
 * one that delivered nothing fails with it. */
void media_rtp_feed_end(struct media_rtp_feed *f, const char *why);
/* Why the producer ended the feed ("" when it did not say). */
void media_rtp_feed_end_reason(struct media_rtp_feed *f, char *out, size_t outlen);
/* True once the source has closed (the recording ended). */
bool media_rtp_feed_detached(const struct media_rtp_feed *f);
/* Packets dropped because the feed was full. */
uint64_t media_rtp_feed_dropped(const struct media_rtp_feed *f);
/* Who gets the source's RTCP from now on: a feed made before its producer
 * (a recording that waits for a WHIP publisher) is handed over with it. */
void media_rtp_feed_set_rtcp(struct media_rtp_feed *f, media_rtp_feed_rtcp_fn send_rtcp, void *opaque);
/* Drops the producer's reference; the callback is not called after it. */
void media_rtp_feed_release(struct media_rtp_feed *f);

/* Source side. */
struct media_rtp_feed_packet {
	uint8_t data[MEDIA_RTP_MAX_PACKET];  /* a copy */
	size_t len;
	int stream;
	bool rtcp;
	int64_t arrival_ns;
};
/* Takes a reference to the feed named 'name', or NULL (unknown, or a
 * source already attached). */
struct media_rtp_feed *media_rtp_feed_attach(const char *name);
/* Readable, once the source armed the feed, when the feed ends, on
 * media_rtp_feed_nudge() and (not napping) when a packet comes. */
int media_rtp_feed_fd(const struct media_rtp_feed *f);
/* The source is about to sleep on media_rtp_feed_fd(). 'nap': between two
 * passes while packets flow, woken only by the end or a nudge (returns
 * true). Else idle: returns true when nothing is queued (the next packet
 * raises the fd), false when packets are waiting or the feed has ended
 * (read instead of sleeping: the next media_rtp_feed_pop() says so). */
bool media_rtp_feed_arm(struct media_rtp_feed *f, bool nap);
/* The oldest packet into '*out' (1), 0 when none; sets '*ended' when the
 * producer ended the feed and nothing is left. */
int media_rtp_feed_pop(struct media_rtp_feed *f, struct media_rtp_feed_packet *out, bool *ended);
void media_rtp_feed_send_rtcp(struct media_rtp_feed *f, int stream, const uint8_t *data, size_t len);
/* Drops the source's reference and marks the feed detached. */
void media_rtp_feed_detach(struct media_rtp_feed *f);

#endif
