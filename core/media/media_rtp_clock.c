/* media_rtp_clock: maps a stream's RTP timestamps onto the local monotonic clock. */
#include "media_rtp.h"

#include <string.h>

#include "common_time.h"

/* The least delay is taken over windows of this length (by arrival time):
 * long enough to hold packets that came straight through even when a relay
 * delivers in bursts, short enough to follow a drift of 1000 ppm within a
 * millisecond or two. */
#define CLOCK_WINDOW_NS TIME_NS_PER_SEC
/* Time constant of the drift correction: corr_ns moves by error x elapsed
 * media time / CLOCK_TAU_NS, within the slew limit. */
#define CLOCK_TAU_NS (3 * TIME_NS_PER_SEC)
/* RTP timestamps that jump further than the arrival times explain (forward
 * by this much more, or backwards by this much) start a new timeline. */
#define CLOCK_DISCONT_NS TIME_NS_PER_SEC
/* The frame interval assumed before the stream has shown one. */
#define CLOCK_DEFAULT_STEP_NS (20 * TIME_NS_PER_MS)

static void minwin_reset(struct media_rtp_minwin *w)
{
	memset(w, 0, sizeof(*w));
}

/* A sample at 'now_ns'. A window that has run out becomes the previous one
 * even after a silence, so packets that were held during an outage and
 * arrive in a burst do not make the delay look longer than it is. */
static void minwin_add(struct media_rtp_minwin *w, int64_t now_ns, int64_t v)
{
	if (!w->have) {
		w->have = true;
		w->have_prev = false;
		w->start_ns = now_ns;
		w->cur = v;
	} else if (now_ns - w->start_ns >= CLOCK_WINDOW_NS) {
		w->prev = w->cur;
		w->have_prev = true;
		w->cur = v;
		w->start_ns = now_ns;
	} else if (v < w->cur) {
		w->cur = v;
	}
}

static int64_t minwin_get(const struct media_rtp_minwin *w)
{
	return w->have_prev && w->prev < w->cur ? w->prev : w->cur;
}

void media_rtp_clock_init(struct media_rtp_clock *c, uint32_t rate)
{
	memset(c, 0, sizeof(*c));
	c->rate = rate ? rate : 90000;
}

void media_rtp_clock_restart(struct media_rtp_clock *c)
{
	c->have_sr = false;
	c->restarted = true;
}

/* ticks / rate in ns, floored, without overflowing for any realistic session. */
static int64_t ticks_to_ns(int64_t ticks, uint32_t rate)
{
	int64_t whole = ticks / (int64_t)rate;
	int64_t rem = ticks % (int64_t)rate;

	if (rem < 0) {
		whole--;
		rem += rate;
	}
	return whole * TIME_NS_PER_SEC + rem * TIME_NS_PER_SEC / (int64_t)rate;
}

void media_rtp_clock_on_sr(struct media_rtp_clock *c, uint64_t ntp, int64_t ext_ts)
{
	c->have_sr = true;
	c->sr_ext_ts = ext_ts;
	c->sr_ntp_ns = media_rtcp_ntp_to_unix_ns(ntp);
}

/* Where the frame belongs on the local clock, and feeds the delay window
 * that says so: by the Sender Report and the group's least delay when there
 * is one, else 'timeline_ns' (origin + position) plus the stream's least
 * delay. */
static int64_t clock_target(struct media_rtp_clock *c, struct media_rtp_sync *sync, int64_t ext_ts,
			    int64_t arrival_ns, int64_t timeline_ns)
{
	if (c->have_sr) {
		int64_t sender_ns = c->sr_ntp_ns + ticks_to_ns(ext_ts - c->sr_ext_ts, c->rate);
		struct media_rtp_minwin *w = sync ? &sync->delay : &c->sr_delay;

		minwin_add(w, arrival_ns, arrival_ns - sender_ns);
		return sender_ns + minwin_get(w);
	}
	minwin_add(&c->delay, arrival_ns, arrival_ns - timeline_ns);
	return timeline_ns + minwin_get(&c->delay);
}

/* The last interval between frames of different timestamps: the room a
 * frame gets that the sender's timestamps give none. Players that assume a
 * constant frame rate (ffmpeg rounds to 1/fps) need a whole frame's room. */
static int64_t clock_frame_step(const struct media_rtp_clock *c)
{
	return c->last_step_ns > 0 ? c->last_step_ns : CLOCK_DEFAULT_STEP_NS;
}

/* Starts a timeline at this frame: where the SR or the arrival time puts
 * it, but after the last output. */
static int64_t clock_anchor(struct media_rtp_clock *c, struct media_rtp_sync *sync, int64_t ext_ts,
			    int64_t arrival_ns)
{
	int64_t out;

	minwin_reset(&c->delay);
	minwin_reset(&c->sr_delay);
	out = clock_target(c, sync, ext_ts, arrival_ns, arrival_ns);
	if (c->have_last && out < c->last_out_ns + clock_frame_step(c))
		out = c->last_out_ns + clock_frame_step(c);
	c->origin_ts = ext_ts;
	c->origin_ns = out;
	c->corr_ns = 0;
	/* the window holds delays against the final origin */
	minwin_reset(&c->delay);
	minwin_add(&c->delay, arrival_ns, arrival_ns - out);
	if (c->have_last)
		c->steps++;
	return out;
}

int64_t media_rtp_clock_map(struct media_rtp_clock *c, struct media_rtp_sync *sync, int64_t ext_ts,
			    int64_t arrival_ns)
{
	int64_t out, dt = 0;

	if (c->have_last) {
		dt = ticks_to_ns(ext_ts - c->last_ext_ts, c->rate);
		if (!c->restarted &&
		    (dt < -CLOCK_DISCONT_NS || dt > arrival_ns - c->last_arrival_ns + CLOCK_DISCONT_NS)) {
			/* The sender's clock jumped: its Sender Report is of the
			 * old timeline too. */
			c->have_sr = false;
			c->restarted = true;
		}
	}
	if (!c->have_last || c->restarted) {
		out = clock_anchor(c, sync, ext_ts, arrival_ns);
	} else {
		int64_t timeline = c->origin_ns + ticks_to_ns(ext_ts - c->origin_ts, c->rate);
		int64_t err = clock_target(c, sync, ext_ts, arrival_ns, timeline) - (timeline + c->corr_ns);

		if (dt <= 0) {
			/* The sender's timestamps give this frame no time of its
			 * own (equal to or before the last one): it gets the next
			 * frame slot, and the timeline moves on after it; the
			 * drift correction takes that back slowly. */
			out = c->last_out_ns + clock_frame_step(c);
			c->corr_ns = out - timeline;
			c->steps++;
		} else {
			if (err > MEDIA_RTP_CLOCK_STEP_NS) {
				/* later at once: a gap is harmless */
				c->corr_ns += err;
				c->steps++;
			} else {
				int64_t lim = dt * MEDIA_RTP_CLOCK_SLEW_PPM / 1000000;
				/* (err is bounded first so the product cannot overflow;
				 * the slew limit is far below a second anyway) */
				int64_t e = err > TIME_NS_PER_SEC ? TIME_NS_PER_SEC :
					err < -TIME_NS_PER_SEC ? -TIME_NS_PER_SEC : err;
				int64_t adj = dt >= CLOCK_TAU_NS ? e : e * dt / CLOCK_TAU_NS;

				if (adj > lim)
					adj = lim;
				if (adj < -lim)
					adj = -lim;
				c->corr_ns += adj;
			}
			out = timeline + c->corr_ns;
			c->last_step_ns = dt;
		}
	}
	c->restarted = false;
	c->have_last = true;
	c->last_out_ns = out;
	c->last_ext_ts = ext_ts;
	c->last_arrival_ns = arrival_ns;
	return out;
}
