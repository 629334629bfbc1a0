/* media_rtp_feed: packets handed to an rtp source in-process (see
 * media_rtp_feed.h). A ring of MEDIA_RTP_FEED_SLOTS packets whose bytes
 * are copied into one byte ring of MEDIA_RTP_FEED_BYTES (no allocation per
 * packet: a 1200-byte packet is above glibc's per-thread cache and was
 * freed on the other thread, a sixth of the WHIP port's time) behind one
 * mutex, an eventfd that wakes the source when it sleeps on it, and a
 * process-wide list to find a feed by name. The eventfd is raised at most
 * once per sleep of the source (media_rtp_feed_arm): by the next packet
 * when the source is idle, only by media_rtp_feed_nudge() or the end when
 * it naps between passes. While packets flow the source reads on its own
 * timer and the producer makes no system call for it. */
#include "media_rtp_feed.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "media_rtp.h"

/* A packet in the ring: its bytes are at 'off' in the byte ring. */
struct feed_slot {
	size_t off, len;
	int stream;
	bool rtcp;
	int64_t arrival_ns;
};

struct media_rtp_feed {
	pthread_mutex_t lock;
	char name[MEDIA_RTP_FEED_NAME_MAX];
	int refs;
	bool attached, detached, ended, producer_gone;
	bool waiting;     /* the source sleeps on efd: the next push raises it */
	bool raised;      /* efd is raised (cleared by media_rtp_feed_arm) */
	char why[160];
	int efd;
	media_rtp_feed_rtcp_fn send_rtcp;
	void *opaque;
	struct feed_slot ring[MEDIA_RTP_FEED_SLOTS];
	size_t head, count;
	/* Bytes in use run from rpos to wpos, wrapping at 'wrap' (the end of
	 * the last packet before the writer went back to 0) when wpos < rpos. */
	uint8_t *bytes;
	size_t rpos, wpos, wrap;
	uint64_t dropped;
	struct media_rtp_feed *next; /* in feeds */
};

static pthread_mutex_t feeds_lock = PTHREAD_MUTEX_INITIALIZER;
static struct media_rtp_feed *feeds;
static unsigned long feeds_serial;

struct media_rtp_feed *media_rtp_feed_new(media_rtp_feed_rtcp_fn send_rtcp, void *opaque)
{
	struct media_rtp_feed *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (f->efd < 0) {
		free(f);
		return NULL;
	}
	f->bytes = malloc(MEDIA_RTP_FEED_BYTES);
	if (!f->bytes) {
		close(f->efd);
		free(f);
		return NULL;
	}
	pthread_mutex_init(&f->lock, NULL);
	f->refs = 1;
	f->send_rtcp = send_rtcp;
	f->opaque = opaque;
	pthread_mutex_lock(&feeds_lock);
	snprintf(f->name, sizeof(f->name), "feed%lu", ++feeds_serial);
	f->next = feeds;
	feeds = f;
	pthread_mutex_unlock(&feeds_lock);
	return f;
}

const char *media_rtp_feed_name(const struct media_rtp_feed *f)
{
	return f->name;
}

/* Raises the eventfd, once until the source clears it. Lock held. */
static void feed_wake(struct media_rtp_feed *f)
{
	uint64_t one = 1;
	f->waiting = false;
	if (f->raised)
		return;
	f->raised = true;
	if (write(f->efd, &one, sizeof(one)) < 0) {
		/* the counter is already raised */
	}
}

/* Where 'len' contiguous bytes go in the byte ring, or -1 when they do not
 * fit. Lock held. */
static long feed_reserve(struct media_rtp_feed *f, size_t len)
{
	if (f->count == 0)
		f->rpos = f->wpos = 0;
	if (f->wpos >= f->rpos) {
		/* Not wrapped: room at the end, else at the start (short of rpos,
		 * so that a full ring never looks empty). */
		if (MEDIA_RTP_FEED_BYTES - f->wpos >= len) {
			f->wpos += len;
			return (long)(f->wpos - len);
		}
		if (len < f->rpos) {
			f->wrap = f->wpos;
			f->wpos = len;
			return 0;
		}
		return -1;
	}
	if (f->rpos - f->wpos > len) {
		f->wpos += len;
		return (long)(f->wpos - len);
	}
	return -1;
}

int media_rtp_feed_push(struct media_rtp_feed *f, int stream, bool rtcp, const uint8_t *data, size_t len,
			int64_t arrival_ns)
{
	if (len == 0 || len > MEDIA_RTP_MAX_PACKET)
		return -1;
	pthread_mutex_lock(&f->lock);
	if (f->ended || f->detached) {
		pthread_mutex_unlock(&f->lock);
		return -1;
	}
	long off = f->count < MEDIA_RTP_FEED_SLOTS ? feed_reserve(f, len) : -1;
	if (off < 0) {
		f->dropped++;
		pthread_mutex_unlock(&f->lock);
		return -1;
	}
	memcpy(f->bytes + off, data, len);
	f->ring[(f->head + f->count) % MEDIA_RTP_FEED_SLOTS] = (struct feed_slot){
		.off = (size_t)off, .len = len, .stream = stream, .rtcp = rtcp, .arrival_ns = arrival_ns,
	};
	f->count++;
	if (f->waiting)
		feed_wake(f);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

void media_rtp_feed_nudge(struct media_rtp_feed *f)
{
	pthread_mutex_lock(&f->lock);
	feed_wake(f);
	pthread_mutex_unlock(&f->lock);
}

void media_rtp_feed_end(struct media_rtp_feed *f, const char *why)
{
	pthread_mutex_lock(&f->lock);
	if (!f->ended && why)
		snprintf(f->why, sizeof(f->why), "%s", why);
	f->ended = true;
	feed_wake(f);
	pthread_mutex_unlock(&f->lock);
}

void media_rtp_feed_end_reason(struct media_rtp_feed *f, char *out, size_t outlen)
{
	pthread_mutex_lock(&f->lock);
	snprintf(out, outlen, "%s", f->why);
	pthread_mutex_unlock(&f->lock);
}

bool media_rtp_feed_detached(const struct media_rtp_feed *f)
{
	pthread_mutex_lock((pthread_mutex_t *)&f->lock);
	bool d = f->detached;
	pthread_mutex_unlock((pthread_mutex_t *)&f->lock);
	return d;
}

uint64_t media_rtp_feed_dropped(const struct media_rtp_feed *f)
{
	pthread_mutex_lock((pthread_mutex_t *)&f->lock);
	uint64_t n = f->dropped;
	pthread_mutex_unlock((pthread_mutex_t *)&f->lock);
	return n;
}

/* Drops one reference; the last frees the feed. */
static void feed_unref(struct media_rtp_feed *f)
{
	pthread_mutex_lock(&feeds_lock);
	pthread_mutex_lock(&f->lock);
	bool last = --f->refs == 0;
	pthread_mutex_unlock(&f->lock);
	if (last) {
		for (struct media_rtp_feed **p = &feeds; *p; p = &(*p)->next) {
			if (*p == f) {
				*p = f->next;
				break;
			}
		}
	}
	pthread_mutex_unlock(&feeds_lock);
	if (!last)
		return;
	free(f->bytes);
	close(f->efd);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

void media_rtp_feed_set_rtcp(struct media_rtp_feed *f, media_rtp_feed_rtcp_fn send_rtcp, void *opaque)
{
	pthread_mutex_lock(&f->lock);
	f->send_rtcp = send_rtcp;
	f->opaque = opaque;
	pthread_mutex_unlock(&f->lock);
}

void media_rtp_feed_release(struct media_rtp_feed *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->send_rtcp = NULL;
	f->producer_gone = true;
	f->ended = true;
	feed_wake(f);
	pthread_mutex_unlock(&f->lock);
	feed_unref(f);
}

struct media_rtp_feed *media_rtp_feed_attach(const char *name)
{
	struct media_rtp_feed *found = NULL;
	pthread_mutex_lock(&feeds_lock);
	for (struct media_rtp_feed *f = feeds; f; f = f->next) {
		if (strcmp(f->name, name) != 0)
			continue;
		pthread_mutex_lock(&f->lock);
		if (!f->attached && !f->producer_gone) {
			f->attached = true;
			f->refs++;
			found = f;
		}
		pthread_mutex_unlock(&f->lock);
		break;
	}
	pthread_mutex_unlock(&feeds_lock);
	return found;
}

int media_rtp_feed_fd(const struct media_rtp_feed *f)
{
	return f->efd;
}

int media_rtp_feed_pop(struct media_rtp_feed *f, struct media_rtp_feed_packet *out, bool *ended)
{
	int got = 0;
	pthread_mutex_lock(&f->lock);
	if (f->count) {
		const struct feed_slot *slot = &f->ring[f->head];
		memcpy(out->data, f->bytes + slot->off, slot->len);
		out->len = slot->len;
		out->stream = slot->stream;
		out->rtcp = slot->rtcp;
		out->arrival_ns = slot->arrival_ns;
		/* The oldest packet's bytes are free; the next one starts after
		 * them, or at 0 when the writer wrapped there. */
		f->rpos = slot->off + slot->len;
		if (f->rpos == f->wrap && f->wpos < f->rpos) {
			f->rpos = 0;
			f->wrap = 0;
		}
		f->head = (f->head + 1) % MEDIA_RTP_FEED_SLOTS;
		f->count--;
		got = 1;
	}
	*ended = f->ended && f->count == 0 && !got;
	pthread_mutex_unlock(&f->lock);
	return got;
}

bool media_rtp_feed_arm(struct media_rtp_feed *f, bool nap)
{
	pthread_mutex_lock(&f->lock);
	bool sleep = nap || (f->count == 0 && !f->ended);
	if (sleep && f->raised) {
		uint64_t v;
		if (read(f->efd, &v, sizeof(v)) < 0) {
			/* nothing was raised */
		}
		f->raised = false;
	}
	if (sleep)
		f->waiting = !nap;
	pthread_mutex_unlock(&f->lock);
	return sleep;
}

void media_rtp_feed_send_rtcp(struct media_rtp_feed *f, int stream, const uint8_t *data, size_t len)
{
	pthread_mutex_lock(&f->lock);
	if (f->send_rtcp)
		f->send_rtcp(f->opaque, stream, data, len);
	pthread_mutex_unlock(&f->lock);
}

void media_rtp_feed_detach(struct media_rtp_feed *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->detached = true;
	pthread_mutex_unlock(&f->lock);
	feed_unref(f);
}
