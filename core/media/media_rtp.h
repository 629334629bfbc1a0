/* media_rtp: plain RTP/RTCP ingest of VP8, H.264 and Opus, as pure objects.
 *
 * Provides the pieces the `rtp` source driver (media_src_rtp.c) is built
 * from, each testable with synthetic packets and no sockets:
 *   - RTP parsing (RFC 3550: version, padding, CSRCs, header extension) and
 *     the rtcp-mux demultiplexing rule of RFC 5761;
 *   - RTCP compound parsing (SR, RR, BYE, PLI, FIR) and building of the
 *     receiver's compound RR + PLI (+ FIR, RFC 5104);
 *   - 16-bit sequence and 32-bit timestamp unwrapping;
 *   - a bounded jitter buffer (reorder, duplicates, late drops, loss);
 *   - the VP8 payload descriptor (RFC 7741) and frame reassembly;
 *   - the H.264 depacketizer (RFC 6184, media_rtp_h264.c) into access units;
 *   - Opus TOC parsing (RFC 7587 / RFC 6716 section 3.1);
 *   - per-stream clock mapping onto the local monotonic clock, from RTCP
 *     Sender Reports when they come and from arrival times otherwise;
 *   - media_rtp_rx, one receive stream tying all of the above together.
 * Uses: common (buf, log, time), crypto (base64). No object here is thread-safe: one stream
 * (and the sync group it shares with its sibling) belongs to one thread. */
#ifndef EDGEREC_MEDIA_RTP_H
#define EDGEREC_MEDIA_RTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common_buf.h"

/* Error codes of the parsers (negative); media_rtp_strerror() names them. */
enum {
	MEDIA_RTP_OK = 0,
	MEDIA_RTP_ERR_TRUNCATED = -1,
	MEDIA_RTP_ERR_VERSION = -2,
	MEDIA_RTP_ERR_PADDING = -3,
	MEDIA_RTP_ERR_EXTENSION = -4,
	MEDIA_RTP_ERR_LENGTH = -5,
	MEDIA_RTP_ERR_PAYLOAD = -6,
	MEDIA_RTP_ERR_NOMEM = -7,
	MEDIA_RTP_ERR_RANGE = -8,
};

const char *media_rtp_strerror(int err);

/* The largest datagram a stream accepts; bigger ones are counted and dropped. */
#define MEDIA_RTP_MAX_PACKET 4096

/* ---- RTP packets ---------------------------------------------------- */

/* A parsed RTP packet. The pointers point into the bytes that were parsed,
 * which must outlive the struct. */
struct media_rtp_packet {
	bool marker;
	uint8_t payload_type;
	uint16_t seq;
	uint32_t timestamp;
	uint32_t ssrc;
	uint8_t csrc_count;
	uint32_t csrc[15];
	bool has_extension;
	uint16_t ext_profile;
	const uint8_t *ext;     /* extension body (after profile and length) */
	size_t ext_len;
	const uint8_t *payload; /* after CSRCs and extension, before padding */
	size_t payload_len;
	uint8_t padding_len;
};

/* Parses 'len' bytes of 'data' into '*p'. Returns 0 or a MEDIA_RTP_ERR_*:
 * truncated header, version other than 2, padding longer than the packet,
 * extension longer than the packet. An empty payload is valid here (the
 * codec layers reject it). */
int media_rtp_parse(const uint8_t *data, size_t len, struct media_rtp_packet *p);

/* RFC 4588: turns a retransmission packet (its payload starts with the
 * original sequence number) back into the packet it repairs, in place:
 * payload type 'apt' (the marker kept), the original sequence number,
 * SSRC 'ssrc', the two bytes removed (*len shrinks by 2). Returns 0, or
 * -1 for a packet that repairs nothing (padding only, which senders use to
 * probe bandwidth, or malformed). */
int media_rtp_rtx_unwrap(uint8_t *data, size_t *len, uint8_t apt, uint32_t ssrc);

struct msghdr;
/* When a datagram read from a socket with SO_TIMESTAMPNS arrived, on the
 * monotonic clock: its kernel receive timestamp (CLOCK_REALTIME, in 'h's
 * control data) moved by the offset between the clocks, 'now' and
 * 'real_now' read together after the read. 'now' when there is none, or
 * when it is later than 'now' or a second before it (the wall clock
 * stepped). Lets a reader that sleeps between reads keep exact arrivals. */
int64_t media_rtp_arrival_ns(const struct msghdr *h, int64_t now, int64_t real_now);

/* RFC 5761 section 4: on a port carrying both, a datagram is RTCP when its
 * second byte (RTCP packet type) is 192..223. */
bool media_rtp_is_rtcp(const uint8_t *data, size_t len);

/* ---- RTCP ------------------------------------------------------------ */

#define MEDIA_RTCP_SR 200
#define MEDIA_RTCP_RR 201
#define MEDIA_RTCP_SDES 202
#define MEDIA_RTCP_BYE 203
#define MEDIA_RTCP_RTPFB 205
#define MEDIA_RTCP_PSFB 206

/* What one RTCP compound packet said. Only the first SR is kept. */
struct media_rtcp_info {
	int packets;            /* RTCP packets in the compound */
	uint32_t sender_ssrc;   /* SSRC of the first packet */
	bool has_sr;
	uint32_t sr_ssrc;
	uint64_t sr_ntp;        /* 32.32 fixed point, seconds since 1900 */
	uint32_t sr_rtp_ts;
	uint32_t sr_packet_count;
	uint32_t sr_octet_count;
	bool has_bye;
	int pli_count;          /* PSFB FMT 1 */
	int fir_count;          /* PSFB FMT 4 */
	int nack_count;         /* RTPFB FMT 1 */
	uint32_t pli_media_ssrc;
};

/* Parses an RTCP compound packet. Every packet must have version 2 and a
 * length that fits; the walk stops at the first one that does not and
 * returns MEDIA_RTP_ERR_*, keeping what was parsed before it in '*info'.
 * Returns 0 when the whole datagram was well-formed. */
int media_rtcp_parse(const uint8_t *data, size_t len, struct media_rtcp_info *info);

/* One RR report block (RFC 3550 section 6.4.1). */
struct media_rtcp_report {
	uint32_t ssrc;
	uint8_t fraction_lost;
	int32_t cumulative_lost;   /* clamped to 24 bits signed */
	uint32_t ext_highest_seq;
	uint32_t jitter;
	uint32_t lsr;
	uint32_t dlsr;
};

/* What the receiver asks for in its compound packet. */
struct media_rtcp_feedback {
	uint32_t sender_ssrc;             /* our own SSRC */
	const struct media_rtcp_report *report; /* NULL: an empty RR */
	uint32_t media_ssrc;              /* the stream the feedback is about */
	bool pli;
	bool fir;
	uint8_t fir_seq;
	/* Generic NACK (RFC 4585 §6.2.1) of these sequence numbers, ascending;
	 * at most MEDIA_RTP_NACK_MAX. */
	const uint16_t *nack;
	int nack_count;
	/* > 0: REMB (draft-alvestrand-rmcat-remb), the bitrate the sender
	 * should stay under, in bit/s. */
	uint64_t remb_bps;
};

/* Writes RR (+ PLI) (+ FIR) (+ NACK) (+ REMB) into 'out' as one compound
 * packet. Returns its length, or 0 when 'cap' is too small
 * (MEDIA_RTCP_MAX_FEEDBACK always suffices). */
#define MEDIA_RTCP_MAX_FEEDBACK 400
size_t media_rtcp_build(const struct media_rtcp_feedback *fb, uint8_t *out, size_t cap);

/* NTP 32.32 (since 1900) to nanoseconds since the Unix epoch and back. */
int64_t media_rtcp_ntp_to_unix_ns(uint64_t ntp);
uint64_t media_rtcp_unix_ns_to_ntp(int64_t ns);

/* ---- unwrapping ------------------------------------------------------- */

/* Extends a wrapping counter of 'bits' (16 or 32) to 64 bits, using the
 * signed difference to the last value, so reordered packets around a wrap
 * land on the right side. The first value is taken as is. */
struct media_rtp_unwrap {
	bool started;
	int bits;
	int64_t last;
};

void media_rtp_unwrap_init(struct media_rtp_unwrap *u, int bits);
int64_t media_rtp_unwrap(struct media_rtp_unwrap *u, uint32_t value);

/* ---- NACK (media_rtp_nack.c) ------------------------------------------ */

/* The sequence numbers missing from a stream that are still worth asking
 * for: a gap adds them, their arrival removes them; each is asked for at
 * most MEDIA_RTP_NACK_TRIES times (the first MEDIA_RTP_NACK_WAIT_NS after
 * the gap showed), MEDIA_RTP_NACK_RETRY_NS apart, until
 * it is older than the jitter buffer waits ('expire_ns'), when a
 * retransmission would come too late. Bounded: a gap of more than
 * MEDIA_RTP_NACK_MAX packets (a jump, not loss) asks for none. */
#define MEDIA_RTP_NACK_MAX 64
#define MEDIA_RTP_NACK_TRIES 3
#define MEDIA_RTP_NACK_RETRY_NS (40 * 1000000LL)
#define MEDIA_RTP_NACK_WAIT_NS (10 * 1000000LL)  /* first ask: a reordered packet may still come */

struct media_rtp_nack {
	struct {
		int64_t seq, first_ns, sent_ns;
		int tries;
	} e[MEDIA_RTP_NACK_MAX];
	int n;
	uint64_t requested, recovered;
};

void media_rtp_nack_reset(struct media_rtp_nack *k);
/* A packet of 'ext_seq' arrived; 'max_seq' is the highest before it
 * ('have_max' false for the first packet). */
void media_rtp_nack_on_packet(struct media_rtp_nack *k, int64_t ext_seq, int64_t max_seq, bool have_max,
			      int64_t now_ns);
/* Writes the sequence numbers to ask for now into 'out' (ascending; at
 * most 'cap') and marks them asked; drops what expired. Returns the count. */
int media_rtp_nack_due(struct media_rtp_nack *k, int64_t now_ns, int64_t expire_ns, uint16_t *out, int cap);
/* When the next request may be due (INT64_MAX: nothing missing). */
int64_t media_rtp_nack_next(const struct media_rtp_nack *k);

/* ---- jitter buffer ---------------------------------------------------- */

/* A packet leaving the jitter buffer, in sequence order. */
struct media_rtp_jb_item {
	struct buf *raw;            /* the datagram; the reference goes to the caller */
	struct media_rtp_packet pkt; /* points into raw->data */
	int64_t ext_seq;
	int64_t arrival_ns;
	uint32_t lost_before;       /* packets declared lost just before this one */
};

struct media_rtp_jb;

/* A buffer of at most 'slots' packets (rounded up to a power of two) that
 * holds a packet at most 'latency_ns' waiting for a missing predecessor. */
struct media_rtp_jb *media_rtp_jb_new(size_t slots, int64_t latency_ns);
void media_rtp_jb_free(struct media_rtp_jb *jb);
/* Forgets every packet and the sequence position (after an SSRC change). */
void media_rtp_jb_reset(struct media_rtp_jb *jb);

enum {
	MEDIA_RTP_JB_STORED = 0,
	MEDIA_RTP_JB_DUPLICATE = 1,
	MEDIA_RTP_JB_LATE = 2,
	MEDIA_RTP_JB_FULL = 3,
};

/* Offers a packet: 'raw' holds the datagram and 'pkt' its parse (pointing
 * into raw->data). On MEDIA_RTP_JB_STORED the buffer took a reference of
 * its own; in every case the caller keeps its own reference. FULL means the
 * packet is too far ahead: pop with force until it fits, then push again;
 * if a forced pop finds nothing held, the sequence jumped: reset. */
int media_rtp_jb_push(struct media_rtp_jb *jb, struct buf *raw, const struct media_rtp_packet *pkt,
		      int64_t ext_seq, int64_t arrival_ns);
/* Releases the next packet in order into '*out' (returns 1), or returns 0.
 * A missing packet holds the line until the packet after it has waited
 * 'latency_ns' (or 'force'), then it is declared lost. */
int media_rtp_jb_pop(struct media_rtp_jb *jb, int64_t now_ns, bool force, struct media_rtp_jb_item *out);
size_t media_rtp_jb_count(const struct media_rtp_jb *jb);
/* The arrival time by which the next pop may release something, or -1. */
int64_t media_rtp_jb_deadline(const struct media_rtp_jb *jb);

/* ---- VP8 (RFC 7741) --------------------------------------------------- */

struct media_rtp_vp8_desc {
	bool non_reference;  /* N */
	bool start;          /* S */
	uint8_t partition;   /* PID */
	bool has_picture_id;
	bool picture_id_15;  /* M: 15-bit PictureID */
	uint16_t picture_id;
	bool has_tl0picidx;
	uint8_t tl0picidx;
	bool has_tid;
	uint8_t tid;
	bool layer_sync;     /* Y */
	bool has_keyidx;
	uint8_t keyidx;
	size_t size;         /* bytes of descriptor before the VP8 payload */
};

/* Parses the payload descriptor at the start of an RTP payload. Returns 0,
 * or MEDIA_RTP_ERR_TRUNCATED when it runs past the end or leaves no VP8
 * payload behind it. */
int media_rtp_vp8_parse_desc(const uint8_t *payload, size_t len, struct media_rtp_vp8_desc *d);

/* Looks at the start of a VP8 frame: '*key' is true for a keyframe, whose
 * 14-bit width and height are then read from its header. Returns 0, or
 * MEDIA_RTP_ERR_PAYLOAD for a keyframe without the 9d 01 2a start code or
 * too short to hold the header. */
int media_rtp_vp8_frame_info(const uint8_t *frame, size_t len, bool *key, int *width, int *height);

/* ---- Opus (RFC 7587) ------------------------------------------------- */

/* Reads the TOC of an Opus packet. Returns the duration in 48 kHz samples
 * (> 0) and sets '*stereo', or MEDIA_RTP_ERR_PAYLOAD when the packet is
 * empty or its frame count code is invalid (more than 120 ms). */
int media_rtp_opus_samples(const uint8_t *packet, size_t len, bool *stereo);

/* ---- H.264 (RFC 6184) ------------------------------------------------ */

/* The depacketizer of packetization-mode 1 (non-interleaved): single NAL
 * unit packets (types 1-23), STAP-A (24) and FU-A (28). Packets go in in
 * sequence order (out of the jitter buffer) with the count of packets lost
 * just before each; access units come out in AVCC form (each NAL unit after
 * a 4-byte big-endian length; access unit delimiters and filler data left
 * out), one per RTP timestamp, closed by the marker bit (or, when no packet
 * went missing, by the next timestamp).
 *
 * Loss: an access unit with a lost packet, an FU-A without its start or
 * end, or a first slice that does not start at macroblock 0 is dropped
 * and counted. A dropped reference picture (nal_ref_idc != 0, or one whose
 * slices never came) breaks the references: every access unit after it is
 * dropped (counted apart) until the next IDR, and waiting_key() says so
 * (the receive stream turns that into PLI). Packets lost between two
 * access units are harmless when the next one starts with its first slice
 * and its frame_num shows no reference picture was among them.
 *
 * Parameter sets: every SPS and PPS seen (in-band, or from the SDP's
 * sprop-parameter-sets) is kept by id; an IDR access unit that lacks the
 * SPS or PPS its first slice refers to gets them put in front, so each
 * keyframe decodes on its own (a player joining there, a new size). An IDR
 * whose parameter sets never came is dropped (dropped_no_params).
 *
 * Other packet types (STAP-B, MTAP16, MTAP24, FU-B: interleaved mode, not
 * negotiated; 0, 30, 31: undefined) are counted as unsupported and make the
 * access unit they belong to incomplete. */
struct media_rtp_h264;

struct media_rtp_h264_au {
	struct buf *data;      /* AVCC; the reference goes to the caller */
	int64_t ext_ts;
	int64_t arrival_ns;    /* of its first packet */
	bool keyframe;         /* holds an IDR slice (and its SPS and PPS) */
	int width, height;     /* keyframes: the display size of its SPS */
};

struct media_rtp_h264_stats {
	uint64_t access_units;        /* handed out */
	uint64_t keyframes;
	uint64_t dropped_incomplete;  /* a packet of it missing, or a broken FU-A */
	uint64_t dropped_waiting;     /* complete, but after a break and before an IDR */
	uint64_t dropped_no_params;   /* an IDR whose SPS/PPS never came */
	uint64_t packets_unsupported; /* STAP-B, MTAP16/24, FU-B, undefined types */
	uint64_t packets_malformed;   /* STAP-A or FU-A that does not parse, F bit set */
	uint64_t parameter_sets;      /* SPS and PPS taken (in-band and sprop) */
};

/* A depacketizer whose access units are at most 'max_au_bytes' (larger ones
 * are dropped as incomplete). */
struct media_rtp_h264 *media_rtp_h264_new(size_t max_au_bytes);
void media_rtp_h264_free(struct media_rtp_h264 *h);
/* Takes the SPS and PPS of an SDP fmtp's sprop-parameter-sets value (base64
 * NAL units separated by commas). Returns the number taken, or -1 when one
 * is not base64 or not an SPS/PPS that parses (the valid ones are kept). */
int media_rtp_h264_set_sprop(struct media_rtp_h264 *h, const char *sprop);
/* One RTP payload, in sequence order. 'lost_before': packets declared lost
 * just before it. */
void media_rtp_h264_push(struct media_rtp_h264 *h, const uint8_t *payload, size_t len, int64_t ext_ts,
			 bool marker, uint32_t lost_before, int64_t arrival_ns);
/* The next finished access unit into '*out' (returns 1), or 0. */
int media_rtp_h264_pop(struct media_rtp_h264 *h, struct media_rtp_h264_au *out);
/* A new timeline (SSRC change, restarted sequence): what is being assembled
 * is dropped and the next IDR awaited. Parameter sets are kept. */
void media_rtp_h264_restart(struct media_rtp_h264 *h);
/* An access unit handed out could not be used (dropped downstream): wait
 * for the next IDR. */
void media_rtp_h264_lost_reference(struct media_rtp_h264 *h);
/* True from the start and after a break until an IDR came through. */
bool media_rtp_h264_waiting_key(const struct media_rtp_h264 *h);
void media_rtp_h264_stats(const struct media_rtp_h264 *h, struct media_rtp_h264_stats *st);

/* ---- clocks and A/V sync --------------------------------------------- */

/* The lowest of the values added over the last one to two windows (by
 * arrival time): the least delay seen lately, which jitter and bursts only
 * ever raise. */
struct media_rtp_minwin {
	bool have, have_prev;
	int64_t start_ns;  /* when the current window began */
	int64_t cur, prev; /* lowest of the current and the previous window */
};

/* Shared by the streams of one sender, so that streams mapped through
 * their Sender Reports keep the relation the sender's NTP clock gives:
 * local mono ns = sender NTP ns + the group's least delay. */
struct media_rtp_sync {
	struct media_rtp_minwin delay;
};

/* Maps one stream's extended RTP timestamps onto the local monotonic clock.
 *
 * The output follows the sender's media clock exactly: out = origin_ns +
 * (ts - origin_ts) / rate (an exact rational position, floored to the ns)
 * + corr_ns. Only corr_ns, the drift correction, is steered, towards a
 * target: without a Sender Report (Janus forwards send none) the least
 * delay between the timeline and the arrival times seen over the last one
 * to two seconds; with one, the sender time SR NTP + (ts - SR ts) / rate
 * moved onto the local clock by the group's least delay. corr_ns moves by
 * at most MEDIA_RTP_CLOCK_SLEW_PPM of the media time that passes (about a
 * third of it per second of error), so arrival jitter and bursts never show
 * in the frame intervals and a clock skew between the sender's streams is
 * followed. Only an error towards later output over
 * MEDIA_RTP_CLOCK_STEP_NS (the first SR moving a stream far, a lasting
 * change of path delay) is taken at once, as a gap; towards earlier output
 * it is always slewed, so frames are never crowded. The output increases
 * strictly, by at least a frame interval where the sender's timestamps give
 * none: a frame whose RTP timestamp equals or precedes the last one gets the
 * next frame slot, and a discontinuity of the RTP timestamps (a sender
 * restarting its clock, an SSRC change) re-anchors the timeline at the
 * arrival time (or by the SR), no earlier than the next frame slot. */
#define MEDIA_RTP_CLOCK_SLEW_PPM 2000
#define MEDIA_RTP_CLOCK_STEP_NS (50 * 1000000LL)

struct media_rtp_clock {
	uint32_t rate;
	bool have_sr;
	int64_t sr_ext_ts;
	int64_t sr_ntp_ns;
	struct media_rtp_minwin sr_delay; /* with SR when there is no sync group */
	struct media_rtp_minwin delay;    /* arrival - (origin_ns + position), without SR */
	bool have_last;
	bool restarted;
	int64_t origin_ts, origin_ns, corr_ns;
	int64_t last_out_ns;
	int64_t last_ext_ts;
	int64_t last_arrival_ns;
	int64_t last_step_ns;  /* the last interval between frames of different timestamps */
	uint64_t steps;        /* corrections taken at once: steps, re-anchors, frames given a slot */
};

void media_rtp_clock_init(struct media_rtp_clock *c, uint32_t rate);
/* Forgets the timeline (SSRC change) but keeps the last output so the
 * track continues forward. */
void media_rtp_clock_restart(struct media_rtp_clock *c);
/* A Sender Report for this stream; 'ext_ts' is its RTP timestamp extended
 * by the stream's own unwrapper. */
void media_rtp_clock_on_sr(struct media_rtp_clock *c, uint64_t ntp, int64_t ext_ts);
/* Local mono ns for a frame of 'ext_ts' whose first packet arrived at
 * 'arrival_ns'. 'sync' may be NULL. Arrival times must not decrease. */
int64_t media_rtp_clock_map(struct media_rtp_clock *c, struct media_rtp_sync *sync, int64_t ext_ts,
			    int64_t arrival_ns);

/* ---- one receive stream ---------------------------------------------- */

enum media_rtp_codec {
	MEDIA_RTP_CODEC_VP8 = 1,
	MEDIA_RTP_CODEC_OPUS = 2,
	MEDIA_RTP_CODEC_H264 = 3,  /* RFC 6184 packetization-mode 1 */
};

struct media_rtp_rx_config {
	enum media_rtp_codec codec;
	int payload_type;          /* -1: any */
	uint32_t clock_rate;       /* 0: the codec's (90000, 48000) */
	bool has_ssrc;
	uint32_t ssrc;             /* only this SSRC when has_ssrc */
	uint32_t local_ssrc;       /* our SSRC in RTCP; 0: random */
	size_t jb_slots;           /* 0: 512 */
	int64_t jb_latency_ns;     /* 0: 150 ms; negative: no waiting */
	size_t max_frame_bytes;    /* 0: 4 MiB */
	int64_t keyframe_min_interval_ns; /* 0: 500 ms between keyframe requests */
	bool send_fir;             /* FIR as well as PLI */
	int64_t rr_interval_ns;    /* 0: 1 s between plain receiver reports */
	int64_t stall_timeout_ns;  /* 0: 5 s */
	bool nack;                 /* ask for lost packets again (generic NACK) */
	uint64_t remb_bps;         /* > 0: send REMB with this bitrate in each report */
	/* H.264: the SDP fmtp's sprop-parameter-sets, or NULL; read by
	 * media_rtp_rx_new only. Parameter sets in-band replace them. */
	const char *h264_sprop;
};

/* A frame ready for the muxer. */
struct media_rtp_frame {
	struct buf *data;     /* the codec frame; the reference goes to the caller */
	int64_t pts_ns;       /* local monotonic clock, never backwards per stream */
	int64_t ext_ts;       /* extended RTP timestamp */
	uint32_t ssrc;
	bool keyframe;        /* VP8 keyframe, H.264 IDR; always true for Opus */
	int width, height;    /* video keyframes (H.264: the SPS's display size) */
	bool size_changed;    /* a keyframe with a new width/height */
	int samples;          /* Opus: 48 kHz samples in the packet */
	bool stereo;          /* Opus TOC */
};

struct media_rtp_rx_stats {
	uint64_t packets;          /* accepted RTP packets */
	uint64_t bytes;
	uint64_t packets_lost;
	uint64_t packets_late;
	uint64_t packets_duplicate;
	uint64_t packets_malformed;
	uint64_t packets_foreign;  /* wrong PT or SSRC */
	uint64_t packets_unsupported; /* H.264: packet types outside packetization-mode 1 */
	uint64_t packets_oversize;
	uint64_t rtcp_packets;
	uint64_t sender_reports;
	uint64_t frames;           /* frames handed out */
	uint64_t frames_dropped;   /* incomplete, broken reference, before a keyframe, too big
				    * (H.264: every media_rtp_h264_stats drop) */
	uint64_t keyframes;
	uint64_t keyframe_requests; /* compound packets carrying a PLI */
	uint64_t nack_requested;    /* sequence numbers asked for again (NACK), counted once each */
	uint64_t nack_recovered;    /* of those, packets that came in time */
	uint64_t ssrc_changes;
	int64_t start_ns;          /* when the stream was created */
	int64_t first_packet_ns;   /* -1 until then */
	int64_t first_keyframe_ns; /* -1 until then */
	int64_t last_packet_ns;
	int64_t last_keyframe_request_ns; /* -1 until then */
	int64_t last_keyframe_ns;  /* -1 until then */
	int64_t first_sr_ns;       /* -1 until the first Sender Report */
	uint32_t ssrc;
	bool waiting_keyframe;
};

struct media_rtp_rx;

/* A new receive stream; 'sync' (may be NULL) is shared with the sibling
 * stream of the same sender and must outlive both. 'now_ns' is the local
 * monotonic time of the start (keyframe latency is measured from it). */
struct media_rtp_rx *media_rtp_rx_new(const struct media_rtp_rx_config *cfg, struct media_rtp_sync *sync,
				      int64_t now_ns);
void media_rtp_rx_free(struct media_rtp_rx *rx);

/* One datagram from the RTP port. With rtcp-mux, RTCP arriving there is
 * recognised and handled as RTCP. Returns 0 when it was used, or a negative
 * MEDIA_RTP_ERR_* / 1 when it was counted and ignored. */
int media_rtp_rx_push(struct media_rtp_rx *rx, const uint8_t *data, size_t len, int64_t now_ns);
/* One datagram from the RTCP port. */
int media_rtp_rx_push_rtcp(struct media_rtp_rx *rx, const uint8_t *data, size_t len, int64_t now_ns);
/* Hands out the next complete frame into '*out' (returns 1), or 0. */
int media_rtp_rx_poll(struct media_rtp_rx *rx, int64_t now_ns, struct media_rtp_frame *out);
/* Asks for a keyframe (resume after pause, operator request); honoured
 * within the rate limit. Has no effect on Opus streams. */
void media_rtp_rx_request_keyframe(struct media_rtp_rx *rx);
/* Writes the compound RTCP packet that is due now (a keyframe request
 * within its rate limit, or the periodic receiver report) into 'out' and
 * returns its length, or 0 when nothing is due. */
size_t media_rtp_rx_rtcp_due(struct media_rtp_rx *rx, int64_t now_ns, uint8_t *out, size_t cap);
/* The next time something may become due (a frame leaving the jitter
 * buffer; with 'rtcp', a report or keyframe request too: pass false while
 * there is nowhere to send RTCP). For poll timeouts. */
int64_t media_rtp_rx_next_wakeup(const struct media_rtp_rx *rx, int64_t now_ns, bool rtcp);
/* True when packets came once but none for the stall timeout. */
bool media_rtp_rx_stalled(const struct media_rtp_rx *rx, int64_t now_ns);
void media_rtp_rx_stats(const struct media_rtp_rx *rx, struct media_rtp_rx_stats *st);

/* ---- port allocation (media_rtp_ports.c) ------------------------------ */

/* Takes 'streams' port pairs for one recording from [min, max]: each an even
 * RTP port with its odd RTCP port after it, none held by another recording
 * of this process, each pair bindable (UDP, any address) at the time of the
 * call. Writes the RTP ports to 'ports_out'. Returns 0, or -1 with 'err'
 * (range exhausted or invalid). Any thread. The caller passes the ports to
 * the rtp source ("video_port=...,audio_port=...") and to whoever sends
 * (the state's metadata, an SFU forward) and releases them afterwards. */
int media_rtp_ports_alloc(int min, int max, int streams, int *ports_out, char *err, size_t errlen);
/* Gives the pairs back; unknown or already free ports are ignored. */
void media_rtp_ports_release(const int *ports, int streams);
/* Marks 'streams' RTP ports fixed by configuration or policy (and their
 * RTCP ports, port + 1) as held, so the allocator and other recordings do
 * not take them. Returns 0, or -1 with 'err' when one is already held (by
 * another recording of this process). Release with media_rtp_ports_release. */
int media_rtp_ports_claim(const int *ports, int streams, char *err, size_t errlen);

/* Packets the rtp sources dropped since start because they came from an
 * address other than the room's sender (allow=, or the latched first one). */
unsigned long long media_rtp_foreign_dropped(void);

/* ---- the `rtp` source driver (media_src_rtp.c) ------------------------ */

struct media_source;

/* True when an `rtp` source opened with 'args' records H.264 video:
 * video_codec=h264, or (without video_codec=) an sdp= file whose video
 * section the source takes is H.264. For checking the format before start
 * (WebM cannot hold H.264; mp4 takes it through the remux). */
bool media_rtp_source_h264(const char *args);

/* Copies the counters of an open `rtp` source's streams (zeroed when the
 * stream is absent; either pointer may be NULL). Any thread. Returns 0, or
 * -1 when 'src' is not an open rtp source. Time to first keyframe is
 * video->first_keyframe_ns - video->start_ns (monotonic ns). */
int media_rtp_source_stats(struct media_source *src, struct media_rtp_rx_stats *video,
			   struct media_rtp_rx_stats *audio);

#endif
