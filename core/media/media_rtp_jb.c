/* media_rtp_jb: a bounded jitter buffer ordering RTP packets by extended sequence number.
 *
 * A ring of 'slots' entries indexed by ext_seq modulo the ring size. 'head'
 * is the next sequence number to release; everything below it is gone, so
 * a packet below it is late (or a duplicate of one already released). The
 * ring never grows: a packet too far ahead makes the caller release (and
 * declare lost) the oldest positions first. */
#include "media_rtp.h"

#include <stdlib.h>
#include <string.h>

struct jb_slot {
	struct buf *raw;  /* NULL: empty */
	struct media_rtp_packet pkt;
	int64_t ext_seq;
	int64_t arrival_ns;
};

struct media_rtp_jb {
	struct jb_slot *slots;
	size_t size;      /* power of two */
	size_t count;     /* occupied slots */
	int64_t latency_ns;
	bool started;
	bool released;    /* something left already: head can no longer move back */
	int64_t first_arrival_ns;
	int64_t head;     /* next ext_seq to release */
	int64_t highest;  /* highest ext_seq stored */
};

struct media_rtp_jb *media_rtp_jb_new(size_t slots, int64_t latency_ns)
{
	struct media_rtp_jb *jb;
	size_t size = 16;

	if (slots > 65536)
		slots = 65536;
	while (size < slots)
		size <<= 1;
	jb = calloc(1, sizeof(*jb));
	if (!jb)
		return NULL;
	jb->slots = calloc(size, sizeof(*jb->slots));
	if (!jb->slots) {
		free(jb);
		return NULL;
	}
	jb->size = size;
	jb->latency_ns = latency_ns;
	return jb;
}

void media_rtp_jb_reset(struct media_rtp_jb *jb)
{
	for (size_t i = 0; i < jb->size; i++) {
		buf_unref(jb->slots[i].raw);
		jb->slots[i].raw = NULL;
	}
	jb->count = 0;
	jb->started = false;
}

void media_rtp_jb_free(struct media_rtp_jb *jb)
{
	if (!jb)
		return;
	media_rtp_jb_reset(jb);
	free(jb->slots);
	free(jb);
}

int media_rtp_jb_push(struct media_rtp_jb *jb, struct buf *raw, const struct media_rtp_packet *pkt,
		      int64_t ext_seq, int64_t arrival_ns)
{
	struct jb_slot *s;

	if (!jb->started) {
		jb->started = true;
		jb->released = false;
		jb->first_arrival_ns = arrival_ns;
		jb->head = ext_seq;
		jb->highest = ext_seq;
	}
	/* Until the first release, an earlier packet (reordered at the very
	 * start) moves the start back, as long as the ring can hold the span. */
	if (ext_seq < jb->head && !jb->released && jb->highest - ext_seq < (int64_t)jb->size)
		jb->head = ext_seq;
	if (ext_seq < jb->head)
		return MEDIA_RTP_JB_LATE;
	if (ext_seq - jb->head >= (int64_t)jb->size)
		return MEDIA_RTP_JB_FULL;
	s = &jb->slots[(size_t)ext_seq & (jb->size - 1)];
	if (s->raw)
		return MEDIA_RTP_JB_DUPLICATE;
	s->raw = buf_ref(raw);
	s->pkt = *pkt;
	s->ext_seq = ext_seq;
	s->arrival_ns = arrival_ns;
	jb->count++;
	if (ext_seq > jb->highest)
		jb->highest = ext_seq;
	return MEDIA_RTP_JB_STORED;
}

/* The first occupied slot at or after head, or NULL. */
static struct jb_slot *jb_next_present(const struct media_rtp_jb *jb)
{
	if (!jb->count)
		return NULL;
	for (int64_t s = jb->head; s <= jb->highest; s++) {
		struct jb_slot *slot = &jb->slots[(size_t)s & (jb->size - 1)];

		if (slot->raw)
			return slot;
	}
	return NULL;
}

int media_rtp_jb_pop(struct media_rtp_jb *jb, int64_t now_ns, bool force, struct media_rtp_jb_item *out)
{
	struct jb_slot *s;
	uint32_t lost = 0;

	if (!jb->started)
		return 0;
	/* The first packet waits the latency too, so that packets reordered
	 * around the start of the stream still find their place. */
	if (!jb->released && !force && now_ns - jb->first_arrival_ns < jb->latency_ns)
		return 0;
	s = &jb->slots[(size_t)jb->head & (jb->size - 1)];
	if (!s->raw) {
		s = jb_next_present(jb);
		if (!s)
			return 0;
		if (!force && now_ns - s->arrival_ns < jb->latency_ns)
			return 0;
		lost = (uint32_t)(s->ext_seq - jb->head);
	}
	out->raw = s->raw;
	out->pkt = s->pkt;
	out->ext_seq = s->ext_seq;
	out->arrival_ns = s->arrival_ns;
	out->lost_before = lost;
	s->raw = NULL;
	jb->count--;
	jb->head = out->ext_seq + 1;
	jb->released = true;
	return 1;
}

size_t media_rtp_jb_count(const struct media_rtp_jb *jb)
{
	return jb->count;
}

int64_t media_rtp_jb_deadline(const struct media_rtp_jb *jb)
{
	struct jb_slot *s;

	if (!jb->started || !jb->count)
		return -1;
	if (!jb->released)
		return jb->first_arrival_ns + jb->latency_ns;
	s = &jb->slots[(size_t)jb->head & (jb->size - 1)];
	if (s->raw)
		return s->arrival_ns;
	s = jb_next_present(jb);
	return s ? s->arrival_ns + jb->latency_ns : -1;
}
