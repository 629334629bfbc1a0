/* media_rtp_clock: maps a stream's RTP timestamps onto the local monotonic clock. */
#include "media_rtp.h"

#include "common_time.h"

/* How fast an offset follows a sample: downwards (a packet came through
 * faster than assumed) by 1/4 of the difference, upwards (delay grew, or the
 * sender's clock is slower) by 1/512, so jitter barely moves it but a real
 * drift is followed within seconds. */
#define CLOCK_DOWN_SHIFT 2
#define CLOCK_UP_SHIFT 9

void media_rtp_clock_init(struct media_rtp_clock *c, uint32_t rate)
{
	c->rate = rate ? rate : 90000;
	c->have_sr = false;
	c->sr_ext_ts = 0;
	c->sr_ntp_ns = 0;
	c->have_offset = false;
	c->offset_ns = 0;
	c->have_sr_offset = false;
	c->sr_offset_ns = 0;
	c->have_last = false;
	c->last_out_ns = 0;
	c->last_ext_ts = 0;
	c->restarted = false;
}

void media_rtp_clock_restart(struct media_rtp_clock *c)
{
	c->have_sr = false;
	c->have_offset = false;
	c->have_sr_offset = false;
	c->restarted = true;
}

/* ticks / rate in ns without overflowing for any realistic session. */
static int64_t ticks_to_ns(int64_t ticks, uint32_t rate)
{
	int64_t whole = ticks / (int64_t)rate;
	int64_t rem = ticks % (int64_t)rate;

	return whole * TIME_NS_PER_SEC + rem * TIME_NS_PER_SEC / (int64_t)rate;
}

void media_rtp_clock_on_sr(struct media_rtp_clock *c, uint64_t ntp, int64_t ext_ts)
{
	c->have_sr = true;
	c->sr_ext_ts = ext_ts;
	c->sr_ntp_ns = media_rtcp_ntp_to_unix_ns(ntp);
}

static void offset_follow(bool *have, int64_t *offset, int64_t sample)
{
	if (!*have) {
		*have = true;
		*offset = sample;
	} else if (sample < *offset) {
		*offset -= (*offset - sample + (1 << CLOCK_DOWN_SHIFT) - 1) >> CLOCK_DOWN_SHIFT;
	} else {
		*offset += (sample - *offset) >> CLOCK_UP_SHIFT;
	}
}

int64_t media_rtp_clock_map(struct media_rtp_clock *c, struct media_rtp_sync *sync, int64_t ext_ts,
			    int64_t arrival_ns)
{
	int64_t out;

	if (c->have_sr) {
		int64_t sender_ns = c->sr_ntp_ns + ticks_to_ns(ext_ts - c->sr_ext_ts, c->rate);
		bool *have = sync ? &sync->have_offset : &c->have_sr_offset;
		int64_t *offset = sync ? &sync->offset_ns : &c->sr_offset_ns;

		offset_follow(have, offset, arrival_ns - sender_ns);
		out = sender_ns + *offset;
	} else {
		int64_t sender_ns = ticks_to_ns(ext_ts, c->rate);

		offset_follow(&c->have_offset, &c->offset_ns, arrival_ns - sender_ns);
		out = sender_ns + c->offset_ns;
	}
	/* Steps of the mapping (the first SR replacing arrival anchoring, an
	 * offset following the delay down) are slewed in at up to 1/8 of the
	 * media time that passes, so timestamps stay strictly increasing and
	 * never collapse; a step over a second (or a restarted timeline) is
	 * taken at once. */
	if (c->have_last) {
		int64_t step = c->restarted ? -1 : ticks_to_ns(ext_ts - c->last_ext_ts, c->rate);
		int64_t natural = c->last_out_ns + step;
		int64_t err = out - natural;

		if (step < 0 || err > TIME_NS_PER_SEC || err < -TIME_NS_PER_SEC) {
			if (out < c->last_out_ns + 1000000)
				out = c->last_out_ns + 1000000;
		} else if (step == 0) {
			out = c->last_out_ns;
		} else {
			int64_t lim = step / 8;

			if (err > lim)
				err = lim;
			if (err < -lim)
				err = -lim;
			out = natural + err;
		}
	}
	c->restarted = false;
	c->have_last = true;
	c->last_out_ns = out;
	c->last_ext_ts = ext_ts;
	return out;
}
