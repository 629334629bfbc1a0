/* media_pipeline: one recording: source -> encoders -> muxer, each on its
 * own thread, joined by bounded queues.
 *
 *   source thread  reads packets, applies pause/resume (dropping input while
 *                  paused and rebasing timestamps after), sends raw video and
 *                  raw audio to their encoder queues and encoded packets
 *                  straight to the mux queue. In real time a full encoder
 *                  queue drops the frame (counted); in fast mode it waits.
 *   video thread   VP8/VP9 encoder; audio thread: Opus encoder. Each ends
 *                  its stream with an end-of-stream item. In real time the
 *                  video thread watches how much of the clock encoding takes
 *                  and walks the degradation ladder (see pipe_degrade_*).
 *   mux thread     orders packets of both streams by timestamp, writes them
 *                  (the muxer flushes every frame) and finalizes the file.
 *
 * A fault anywhere stops the source; the rest drains and the file is
 * finalized with what was written. */
#include "media.h"

#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common_log.h"
#include "common_queue.h"
#include "common_thread.h"
#include "common_time.h"
#include "common_util.h"
#include "media_enc.h"
#include "media_h264.h"
#include "media_mux.h"
#include "media_rtp.h"
#include "media_source.h"

static struct log_handle log_pipe = LOG_HANDLE("media/pipeline");

/* Raw frames waiting for the video encoder: at most PIPE_RAW_QUEUE_BYTES of
 * them (a raw 720p I420 frame is 1.4 MB: 7 frames, 230 ms at 30 fps;
 * 1080p: 4 frames; 360p: a second), never more than a second and never
 * fewer than PIPE_ENC_QUEUE_MIN. The queue only has to absorb scheduling hiccups: an
 * encoder that falls behind for longer drops frames (counted) whatever the
 * depth, and every queued raw frame is resident memory. */
#define PIPE_RAW_QUEUE_BYTES (10u << 20)
#define PIPE_ENC_QUEUE_MIN 4
#define PIPE_AUDIO_QUEUE 64       /* raw 10 ms audio chunks */
#define PIPE_MUX_QUEUE 512        /* encoded packets waiting for the muxer */
/* In real time the muxer takes its packets in batches: a push wakes it only
 * at PIPE_MUX_QUEUE / 4 queued, otherwise it looks every PIPE_MUX_BATCH_NS
 * (an end of stream wakes it at once). The file is written in 100 ms steps
 * anyway (media_mux_webm.cc); a wakeup per frame cost more CPU than the
 * muxing of a passthrough stream. */
#define PIPE_MUX_BATCH_NS (100 * TIME_NS_PER_MS)
#define PIPE_READ_TIMEOUT_NS (100 * TIME_NS_PER_MS)
#define PIPE_STALL_NS (2 * TIME_NS_PER_SEC)
#define PIPE_ALIGN_END_NS (500 * TIME_NS_PER_MS)  /* at most, reading on at a stop (align_end) */
#define PIPE_ALIGN_SLACK_NS (20 * TIME_NS_PER_MS) /* a stream this close to the end has reached it */
#define PIPE_INTERLEAVE_NS (2 * TIME_NS_PER_SEC) /* > the encoder queue's (at most) second */
#define PIPE_KEY_REQUEST_NS (500 * TIME_NS_PER_MS)
/* An encoded video stream opens the file with its first keyframe (the track
 * then carries the sender's real size); audio that comes before it is
 * dropped. A sender whose audio flows this long without a keyframe fails
 * the recording with a clear reason: the file would otherwise hold a video
 * track with nothing in it (and mkvmuxer keeps audio back until video
 * comes, so it could not even be finalized). */
#define PIPE_FIRST_KEY_WAIT_NS (10 * TIME_NS_PER_SEC)

enum pipe_role { PIPE_VIDEO = 0, PIPE_AUDIO = 1, PIPE_ROLES };

/* What travels on the queues. */
struct pipe_item {
	int role;
	bool eos;              /* end of this role's stream */
	bool keyframe;         /* encoded: a keyframe; raw video: force one */
	int samples;
	int64_t pts_ns, duration_ns;
	struct buf *data;
	struct pipe_item *next;  /* the mux thread's per-role lists */
};

struct media_pipeline {
	/* Configuration (copied). */
	char *source_name, *source_args, *format, *output_path;
	const struct media_preset *preset;
	const struct media_source_driver *src_driver;
	void (*on_event)(void *opaque, enum media_event ev, const char *detail);
	void *opaque;
	struct media_pipeline_options opt;

	/* Built by start(). */
	struct media_source *src;
	int src_stream[PIPE_ROLES];      /* source stream index per role, -1 if none */
	bool passthrough[PIPE_ROLES];
	struct media_enc *enc[PIPE_ROLES];
	int enc_threads;                 /* video encoder threads held in the node's ledger */
	struct queue *enc_queue[PIPE_ROLES];
	struct queue *mux_queue;
	struct pipe_muxer *muxer;        /* the writing side (pipe_muxer_*) */
	bool mux_inline;                 /* nothing to encode: the source thread writes */
	struct media_mux *mux;
	int mux_track[PIPE_ROLES];
	pthread_t src_thread, enc_thread[PIPE_ROLES], mux_thread;
	bool src_started, enc_started[PIPE_ROLES], mux_started;
	bool started, stopped;

	/* Control, written by any thread. */
	atomic_bool stop_requested;
	atomic_bool pause_requested;
	atomic_bool force_keyframe;
	atomic_int video_fps_div;     /* 2: the source sends only every other raw video frame */

	/* Shared state under 'lock'. */
	pthread_mutex_t lock;
	pthread_cond_t ended_cond;
	bool ended;                   /* EOF or fault */
	struct media_stats stats;
	int64_t stop_duration_ns;     /* Duration written at finalization */
	char final_error[256];
};

/* ---- small helpers ---- */

static void pipe_item_free(void *it)
{
	struct pipe_item *item = it;
	if (!item)
		return;
	buf_unref(item->data);
	free(item);
}

static int pipe_to_mux(struct media_pipeline *p, struct pipe_item *item);
static void pipe_muxer_idle(struct media_pipeline *p);
static void pipe_muxer_finish(struct media_pipeline *p);

static void pipe_event(struct media_pipeline *p, enum media_event ev, const char *detail)
{
	if (p->on_event)
		p->on_event(p->opaque, ev, detail);
}

static void pipe_mark_ended(struct media_pipeline *p)
{
	pthread_mutex_lock(&p->lock);
	p->ended = true;
	pthread_cond_broadcast(&p->ended_cond);
	pthread_mutex_unlock(&p->lock);
}

/* Records the first fault, stops the source and tells the owner. */
static void pipe_fault(struct media_pipeline *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void pipe_fault(struct media_pipeline *p, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	bool first;
	pthread_mutex_lock(&p->lock);
	first = !p->stats.failed;
	if (first) {
		p->stats.failed = true;
		util_strlcpy(p->stats.error, msg, sizeof(p->stats.error));
	}
	pthread_mutex_unlock(&p->lock);
	atomic_store(&p->stop_requested, true);
	if (first) {
		LOG_ERROR(&log_pipe, "%s: %s", p->output_path, msg);
		pipe_event(p, MEDIA_EVENT_FAULT, msg);
		pipe_mark_ended(p);
	}
}

/* Pushes onto a queue that must not lose the item (encoded data, end of
 * stream): waits while it is full. Returns 0, or -1 when the queue is
 * closed (the item is then freed). */
static int pipe_push_wait(struct queue *q, struct pipe_item *item)
{
	for (;;) {
		bool eos = item->eos;
		int r = queue_push(q, item);
		if (r == QUEUE_OK) {
			if (eos)
				queue_wake(q);
			return 0;
		}
		if (r == QUEUE_CLOSED) {
			pipe_item_free(item);
			return -1;
		}
		time_sleep_ns(TIME_NS_PER_MS);
	}
}

static struct pipe_item *pipe_item_new(int role, int64_t pts_ns, int64_t duration_ns)
{
	struct pipe_item *item = calloc(1, sizeof(*item));
	if (item) {
		item->role = role;
		item->pts_ns = pts_ns;
		item->duration_ns = duration_ns;
	}
	return item;
}

/* ---- source thread ---- */

struct pipe_src_state {
	bool have_base;
	int64_t base_ns;          /* first pts seen: the file starts there */
	int64_t offset_ns;        /* total paused source time */
	bool in_pause;
	int64_t pause_pts_ns;     /* first pts dropped by the current pause */
	int sched;                /* next schedule entry */
	bool need_key[PIPE_ROLES];/* passthrough: drop until a keyframe */
	bool force_key;           /* raw video: force a keyframe on the next frame */
	int64_t last_packet_mono;
	int64_t last_key_request_mono;
	int64_t last_drop_log_mono;
	int64_t last_rtp_stats_mono;
	bool stalled;
	bool device_away;         /* the source's stats say its device is away */
	uint64_t raw_video_n;     /* raw video frames offered to the encoder */
	int64_t last_stats_mono;  /* when the source's own counters were read */
	bool have_end[PIPE_ROLES];
	int64_t end_ns[PIPE_ROLES];/* output time where each stream's last packet ends */
	bool aligning;            /* stopping: reading on until the streams end together */
	int64_t align_to_ns, align_deadline_mono;
};

/* At a stop: true while the source should be read on, because a stream
 * of a source whose devices may lag each other has not yet reached where
 * the furthest was when the stop came (bounded in time). */
static bool pipe_src_align_end(struct media_pipeline *p, struct pipe_src_state *s)
{
	if (!p->src->driver->align_end || s->in_pause)
		return false;
	int64_t now = time_mono_ns();
	if (!s->aligning) {
		s->aligning = true;
		s->align_deadline_mono = now + PIPE_ALIGN_END_NS;
		s->align_to_ns = INT64_MIN;
		for (int i = 0; i < PIPE_ROLES; i++)
			if (s->have_end[i] && s->end_ns[i] > s->align_to_ns)
				s->align_to_ns = s->end_ns[i];
	}
	if (now >= s->align_deadline_mono)
		return false;
	for (int i = 0; i < PIPE_ROLES; i++)
		if (s->have_end[i] && s->end_ns[i] < s->align_to_ns - PIPE_ALIGN_SLACK_NS)
			return true;
	return false;
}

/* Copies what the source lost on the way in into the pipeline's stats. */
static void pipe_src_stats(struct media_pipeline *p, struct pipe_src_state *s, bool now)
{
	struct media_source_stats st;
	int64_t t = time_mono_ns();
	if (!p->src->driver->stats || (!now && t - s->last_stats_mono < 500 * TIME_NS_PER_MS))
		return;
	s->last_stats_mono = t;
	memset(&st, 0, sizeof(st));
	p->src->driver->stats(p->src, &st);
	pthread_mutex_lock(&p->lock);
	p->stats.source = st;
	if (p->src->driver->capture_info)
		p->src->driver->capture_info(p->src, &p->stats.capture);
	pthread_mutex_unlock(&p->lock);
	/* A device source says when its device is away (other input, e.g. a
	 * microphone, may still flow): stalled until it is back. */
	if (st.stalled != s->device_away) {
		s->device_away = st.stalled;
		if (st.stalled && !s->stalled) {
			s->stalled = true;
			pipe_event(p, MEDIA_EVENT_SOURCE_STALLED, "the source's device went away");
		} else if (!st.stalled && s->stalled) {
			s->stalled = false;
			pipe_event(p, MEDIA_EVENT_SOURCE_RESUMED, NULL);
		}
	}
}

/* Decides from the schedule and the pause flag whether 'pts' falls in a
 * pause. */
static bool pipe_src_paused(struct media_pipeline *p, struct pipe_src_state *s, int64_t pts)
{
	const struct media_pipeline_options *o = &p->opt;
	while (s->sched < o->nb_schedule && pts >= o->resume_at_ns[s->sched])
		s->sched++;  /* that scheduled pause is behind us */
	if (s->sched < o->nb_schedule && pts >= o->pause_at_ns[s->sched])
		return true;
	return atomic_load(&p->pause_requested);
}

/* Hands one accepted packet to its encoder queue or to the muxer. */
static void pipe_src_forward(struct media_pipeline *p, struct pipe_src_state *s, int role,
			     struct media_packet *pkt, int64_t out_pts)
{
	if (role == PIPE_VIDEO && pkt->force_keyframe)
		s->force_key = true; /* kept until a frame is coded (not skipped, not dropped) */
	struct pipe_item *item = pipe_item_new(role, out_pts, pkt->duration_ns);
	if (!item) {
		media_packet_clear(pkt);
		pipe_fault(p, "out of memory");
		return;
	}
	item->samples = pkt->samples;
	item->data = pkt->data;
	pkt->data = NULL;
	if (p->passthrough[role]) {
		item->keyframe = pkt->keyframe;
		pipe_to_mux(p, item);
		return;
	}
	if (role == PIPE_VIDEO && atomic_load(&p->video_fps_div) == 2) {
		/* Half rate: every other frame, evenly; the kept one lasts two. */
		if (s->raw_video_n++ & 1) {
			pipe_item_free(item);
			pthread_mutex_lock(&p->lock);
			p->stats.video_frames_skipped++;
			pthread_mutex_unlock(&p->lock);
			return;
		}
		item->duration_ns *= 2;
	}
	if (role == PIPE_VIDEO && (s->force_key || atomic_exchange(&p->force_keyframe, false))) {
		item->keyframe = true;
		s->force_key = false;
	}
	if (p->opt.fast) {
		pipe_push_wait(p->enc_queue[role], item);
		return;
	}
	if (queue_push(p->enc_queue[role], item) != QUEUE_OK) {
		bool was_key = item->keyframe;
		pipe_item_free(item);
		if (was_key)
			s->force_key = true;  /* the forced keyframe moves to the next frame */
		pthread_mutex_lock(&p->lock);
		if (role == PIPE_VIDEO)
			p->stats.video_frames_dropped++;
		else
			p->stats.audio_frames_dropped++;
		uint64_t total = p->stats.video_frames_dropped + p->stats.audio_frames_dropped;
		pthread_mutex_unlock(&p->lock);
		/* Said once, then every 10 s at most: the counters carry the rest. */
		int64_t now = time_mono_ns();
		if (s->last_drop_log_mono == 0 || now - s->last_drop_log_mono > 10 * TIME_NS_PER_SEC) {
			s->last_drop_log_mono = now;
			LOG_WARN(&log_pipe, "%s: the %s encoder is behind, dropping input (%llu dropped so far)",
				 p->output_path, role == PIPE_VIDEO ? "video" : "audio",
				 (unsigned long long)total);
		}
	}
}


/* An rtp source's network losses into the stats, once a second (and,
 * 'force', when the source thread ends). */
static void pipe_rtp_stats(struct media_pipeline *p, struct pipe_src_state *s, bool force)
{
	struct media_rtp_rx_stats v, a;
	int64_t now = time_mono_ns();
	if ((!force && now - s->last_rtp_stats_mono < TIME_NS_PER_SEC) || media_rtp_source_stats(p->src, &v, &a) < 0)
		return;
	s->last_rtp_stats_mono = now;
	pthread_mutex_lock(&p->lock);
	p->stats.rtp_packets_lost = v.packets_lost + a.packets_lost;
	p->stats.rtp_nack_requested = v.nack_requested + a.nack_requested;
	p->stats.rtp_nack_recovered = v.nack_recovered + a.nack_recovered;
	p->stats.rtp_frames_dropped = v.frames_dropped + a.frames_dropped;
	pthread_mutex_unlock(&p->lock);
}

static void *pipe_src_main(void *arg)
{
	struct media_pipeline *p = arg;
	struct pipe_src_state s = { .last_packet_mono = time_mono_ns() };
	struct media_packet pkt;

	/* An encoded video stream is recorded from a keyframe on. */
	for (int i = 0; i < PIPE_ROLES; i++)
		s.need_key[i] = p->passthrough[i] && p->src->streams[p->src_stream[i]].kind == MEDIA_KIND_VIDEO;

	while (!atomic_load(&p->stop_requested) || pipe_src_align_end(p, &s)) {
		pipe_src_stats(p, &s, false);
		int64_t timeout = PIPE_READ_TIMEOUT_NS;
		if (s.aligning && s.align_deadline_mono - time_mono_ns() < timeout)
			timeout = s.align_deadline_mono - time_mono_ns();
		int r = p->src->driver->read(p->src, &pkt, timeout > 0 ? timeout : 0);
		pipe_rtp_stats(p, &s, false);
		if (r == MEDIA_SOURCE_AGAIN) {
			if (p->mux_inline)
				pipe_muxer_idle(p);
			if (!s.stalled && time_mono_ns() - s.last_packet_mono > PIPE_STALL_NS) {
				s.stalled = true;
				pipe_event(p, MEDIA_EVENT_SOURCE_STALLED, "no input for 2 s");
			}
			continue;
		}
		if (r == MEDIA_SOURCE_EOF) {
			LOG_DEBUG(&log_pipe, "source ended");
			pipe_event(p, MEDIA_EVENT_EOF, NULL);
			pipe_mark_ended(p);
			break;
		}
		if (r != MEDIA_SOURCE_OK) {
			pipe_fault(p, "source: %s", p->src->err[0] ? p->src->err : "read failed");
			break;
		}
		s.last_packet_mono = time_mono_ns();
		if (s.stalled && !s.device_away) {
			s.stalled = false;
			pipe_event(p, MEDIA_EVENT_SOURCE_RESUMED, NULL);
		}
		int role = pkt.stream == p->src_stream[PIPE_VIDEO] ? PIPE_VIDEO :
			   pkt.stream == p->src_stream[PIPE_AUDIO] ? PIPE_AUDIO : -1;
		if (role < 0 || !pkt.data) {
			media_packet_clear(&pkt);
			continue;
		}
		if (pkt.missed) {
			pthread_mutex_lock(&p->lock);
			if (role == PIPE_VIDEO)
				p->stats.video_frames_dropped += pkt.missed;
			else
				p->stats.audio_frames_dropped += pkt.missed;
			pthread_mutex_unlock(&p->lock);
		}
		if (!s.have_base) {
			s.have_base = true;
			s.base_ns = pkt.pts_ns;
		}
		int64_t pts = pkt.pts_ns - s.base_ns;
		if (pipe_src_paused(p, &s, pts)) {
			if (!s.in_pause) {
				s.in_pause = true;
				s.pause_pts_ns = pts;
				LOG_DEBUG(&log_pipe, "paused at source %.3f s", pts / 1e9);
			}
			media_packet_clear(&pkt);
			continue;
		}
		if (s.in_pause) {
			s.in_pause = false;
			s.offset_ns += pts - s.pause_pts_ns;
			s.force_key = true;
			for (int i = 0; i < PIPE_ROLES; i++)
				s.need_key[i] = p->passthrough[i] && p->src->streams[p->src_stream[i]].kind == MEDIA_KIND_VIDEO;
			if (p->passthrough[PIPE_VIDEO] && p->src->driver->request_keyframe) {
				p->src->driver->request_keyframe(p->src);
				s.last_key_request_mono = time_mono_ns();
			}
			LOG_DEBUG(&log_pipe, "resumed at source %.3f s, %.3f s paused in all", pts / 1e9,
				  s.offset_ns / 1e9);
		}
		if (p->passthrough[role] && s.need_key[role]) {
			if (!pkt.keyframe) {
				/* Waiting for a keyframe (start, resume): ask again now and then. */
				int64_t now = time_mono_ns();
				if (p->src->driver->request_keyframe &&
				    now - s.last_key_request_mono > PIPE_KEY_REQUEST_NS) {
					p->src->driver->request_keyframe(p->src);
					s.last_key_request_mono = now;
				}
				media_packet_clear(&pkt);
				pthread_mutex_lock(&p->lock);
				p->stats.video_frames_dropped++;
				pthread_mutex_unlock(&p->lock);
				continue;
			}
			s.need_key[role] = false;
		}
		int64_t out = pts - s.offset_ns;
		if (out < 0) {
			/* Before the file's zero (the first packet of any stream):
			 * raw audio loses what lies before it rather than piling
			 * up at 0 (a microphone started before the camera's first
			 * frame); anything else starts at 0. */
			const struct media_stream_info *si = &p->src->streams[pkt.stream];
			pkt.pts_ns = out;
			if (si->codec == MEDIA_CODEC_S16 && pkt.samples > 0) {
				if (!media_packet_trim_s16(&pkt, 0, si->sample_rate, si->channels)) {
					media_packet_clear(&pkt);
					continue;
				}
				out = pkt.pts_ns;
			} else {
				out = 0;
			}
		}
		if (s.aligning && out >= s.align_to_ns) {
			media_packet_clear(&pkt); /* past the end the stop set */
			continue;
		}
		int64_t end = out + pkt.duration_ns;
		pipe_src_forward(p, &s, role, &pkt, out);
		s.have_end[role] = true;
		s.end_ns[role] = end;
	}
	pipe_src_stats(p, &s, true);
	/* End every stream: encoder queues close (their threads then flush);
	 * passthrough streams end at the muxer directly. */
	pipe_rtp_stats(p, &s, true);
	for (int i = 0; i < PIPE_ROLES; i++) {
		if (p->enc_queue[i])
			queue_close(p->enc_queue[i]);
		else if (p->passthrough[i]) {
			struct pipe_item *eos = pipe_item_new(i, 0, 0);
			if (eos) {
				eos->eos = true;
				pipe_to_mux(p, eos);
			}
		}
	}
	if (p->mux_inline)
		pipe_muxer_finish(p);
	return NULL;
}

/* ---- encoder threads ---- */

struct pipe_enc_ctx {
	struct media_pipeline *p;
	int role;
	int64_t frame_duration_ns;  /* video: the source's duration of the frame being encoded */
	bool out_key;               /* the encoder's last output held a keyframe */
};

static int pipe_enc_output(void *opaque, struct media_enc_packet *ep)
{
	struct pipe_enc_ctx *c = opaque;
	struct pipe_item *item = pipe_item_new(c->role, ep->pts_ns, ep->duration_ns);
	if (!item) {
		buf_unref(ep->data);
		return -1;
	}
	item->data = ep->data;
	item->keyframe = ep->keyframe;
	c->out_key |= ep->keyframe;
	/* The video encoder runs without lag: what comes out is the frame just
	 * put in, whose exact duration the source knows. */
	if (c->role == PIPE_VIDEO && c->frame_duration_ns > 0)
		item->duration_ns = c->frame_duration_ns;
	return pipe_push_wait(c->p->mux_queue, item);
}

/* ---- degradation ladder (video encoder thread, real time) ----
 *
 * Every window the thread compares the time spent inside the encoder with
 * the wall time (a share near 1 means it cannot keep pace, whether the frames
 * are hard or other processes take the CPU) and looks at the queue. Behind:
 * one step down (fastest speed, then every other frame, then half size;
 * a recording encoded at the dense speed has no faster speed to go to and
 * starts at every other frame), at most one step a window. One inter frame
 * that took several frame periods closes a window at once (a box that short
 * of CPU must not wait for a full window of them) but still moves one step:
 * when several recordings start together, their first frames wait for each
 * other, and going down the whole ladder on one such frame lost half of
 * every recording's frames for the 8 s it took to come back up. Keyframes,
 * several times the cost of an inter frame by nature, never close a window
 * early. After a step down, the next waits a second for the first to take
 * effect (the frames queued meanwhile are the backlog of the old level,
 * which the shedding below clears). Back up one step only after a calm spell in which the level above
 * would still have fitted, with room to spare. While a backlog remains,
 * every other queued frame is left out. */
#define PIPE_DEGRADE_WINDOW_NS (300 * TIME_NS_PER_MS)
#define PIPE_DEGRADE_BUSY_HIGH 0.85   /* share of the clock spent encoding: behind */
#define PIPE_DEGRADE_BUSY_UP 0.45     /* predicted share at the level above: may go up */
#define PIPE_DEGRADE_CALM_WINDOWS 10  /* 3 s of calm before a step up */
#define PIPE_DEGRADE_UP_HOLD_NS (4 * TIME_NS_PER_SEC) /* since the last move; doubles */
#define PIPE_DEGRADE_UP_HOLD_MAX_NS (64 * TIME_NS_PER_SEC) /* ... each time a step up fails */
#define PIPE_DEGRADE_SLOW_FRAMES 4    /* one frame taking this many periods: behind at once */
#define PIPE_DEGRADE_SETTLE_NS (TIME_NS_PER_SEC) /* after a step down, before the next one */
/* The first second of a recording never steps down: opening the encoder,
 * its first keyframe and the first frames' page faults cost more than the
 * frames that follow, and when several recordings start together each one's
 * first frames also wait for the others'. The queue absorbs what it can
 * (past that the source drops, counted). A level taken on that spell was
 * held for seconds after it had passed: three high recordings (1080p30, at
 * the dense speed, what the node's default budget admits on 2 cores)
 * started together each went to every other frame at once and kept 50-74 %
 * of their frames, though the three together need one core at the full
 * frame rate; now 98-99 %. */
#define PIPE_DEGRADE_START_NS (TIME_NS_PER_SEC)

/* How much more the level above 'level' costs: speed 6 against the fastest
 * is about 2x, twice the frames 2x, four times the pixels about 3.5x. */
static const double pipe_degrade_up_cost[MEDIA_DEGRADE_LEVELS] = { 1.0, 2.0, 2.0, 3.5 };

struct pipe_degrade {
	bool on;
	bool dense;         /* the speed step gains nothing: skipped */
	int level;
	int64_t start, window_start, busy_ns, last_move;
	int64_t last_up, up_hold_ns, last_down;
	uint64_t dropped_at_start;
	int calm;
	size_t backlog;     /* frames queued that count as falling behind */
	size_t shed_depth;  /* frames queued from which every other is left out */
	int64_t frame_ns;   /* the nominal frame period */
};

const char *media_degrade_name(enum media_degrade_level l)
{
	static const char *const names[MEDIA_DEGRADE_LEVELS] = { "none", "speed", "fps_half", "resolution" };
	return l >= 0 && l < MEDIA_DEGRADE_LEVELS ? names[l] : "?";
}

/* The level one step down (dir 1) or up (dir -1) from 'level'; -1 past
 * either end. */
static int pipe_degrade_next(const struct pipe_degrade *d, int level, int dir)
{
	int to = level + dir;
	if (d->dense && to == MEDIA_DEGRADE_SPEED)
		to += dir;
	return to >= 0 && to < MEDIA_DEGRADE_LEVELS ? to : -1;
}

/* Moves to 'to' (one step from d->level); says so in the stats, the log and
 * an event. Returns false when the encoder refused the level. */
static bool pipe_degrade_move(struct media_pipeline *p, struct pipe_degrade *d, int to,
			      double busy, size_t depth)
{
	struct media_enc *enc = p->enc[PIPE_VIDEO];
	struct media_enc_level l = {
		.fast = to >= MEDIA_DEGRADE_SPEED,
		.fps_div = to >= MEDIA_DEGRADE_FPS_HALF ? 2 : 1,
		.scale_div = to >= MEDIA_DEGRADE_RESOLUTION ? 2 : 1,
	};
	bool down = to > d->level;
	int step = down ? to : d->level; /* taken, or undone */
	if (enc->driver->set_level(enc, &l) < 0) {
		LOG_WARN(&log_pipe, "%s: cannot go to degradation level %s: %s", p->output_path,
			 media_degrade_name(to), enc->err);
		return false;
	}
	atomic_store(&p->video_fps_div, l.fps_div);
	char detail[96];
	snprintf(detail, sizeof(detail), "%s %s: encoding took %.0f%% of the clock, %zu frames queued",
		 down ? "lowered" : "restored",
		 step == MEDIA_DEGRADE_SPEED ? "encoder speed" :
		 step == MEDIA_DEGRADE_FPS_HALF ? "frame rate (every other frame)" : "resolution (half size)",
		 busy * 100, depth);
	pthread_mutex_lock(&p->lock);
	struct media_stats *st = &p->stats;
	/* The first moves, and the newest in the last slot. */
	uint32_t i = st->degrade_moves < MEDIA_DEGRADE_LOG_MAX ? st->degrade_moves : MEDIA_DEGRADE_LOG_MAX - 1;
	struct media_degrade_step *m = &st->degrade_log[i];
	m->wall_ns = time_wall_ns();
	m->step = step;
	m->down = down;
	util_strlcpy(m->detail, detail, sizeof(m->detail));
	st->degrade_moves++;
	st->degrade_level = to;
	if (to > st->degrade_max_level)
		st->degrade_max_level = to;
	double fps = st->video_fps / l.fps_div;
	if (st->video_min_fps == 0 || fps < st->video_min_fps)
		st->video_min_fps = fps;
	pthread_mutex_unlock(&p->lock);
	LOG_WARN(&log_pipe, "%s: CPU %s: %s", p->output_path, down ? "short" : "back", detail);
	pipe_event(p, down ? MEDIA_EVENT_DEGRADED : MEDIA_EVENT_RESTORED, detail);
	/* A step up that did not hold (down again soon after): wait twice as
	 * long before the next one, so the level does not swing. */
	int64_t now = time_mono_ns();
	if (!down)
		d->last_up = now;
	else
		d->last_down = now;
	if (down && d->last_up && now - d->last_up < 2 * d->up_hold_ns && d->up_hold_ns < PIPE_DEGRADE_UP_HOLD_MAX_NS)
		d->up_hold_ns *= 2;
	d->level = to;
	d->last_move = now;
	d->calm = 0;
	return true;
}

/* After each frame, which took 'encode_ns' and ended at 'now' (monotonic),
 * a keyframe when 'key': adds its encode time and, once a window is full,
 * decides. */
static void pipe_degrade_check(struct media_pipeline *p, struct pipe_degrade *d, int64_t encode_ns, int64_t now,
			       bool key)
{
	d->busy_ns += encode_ns;
	int64_t span = now - d->window_start;
	/* One inter frame that took several frame periods closes the window
	 * early. */
	bool slow = !key && encode_ns > PIPE_DEGRADE_SLOW_FRAMES * d->frame_ns * atomic_load(&p->video_fps_div) &&
		    now - d->last_move >= PIPE_DEGRADE_WINDOW_NS;
	if (span < PIPE_DEGRADE_WINDOW_NS && !slow)
		return;
	double busy = (double)d->busy_ns / (double)span;
	size_t depth = queue_length(p->enc_queue[PIPE_VIDEO]);
	pthread_mutex_lock(&p->lock);
	uint64_t dropped = p->stats.video_frames_dropped;
	pthread_mutex_unlock(&p->lock);
	/* Busy with nothing queued is keeping up: sharing the cores with other
	 * encoders stretches each frame's wall time, yet every frame is done
	 * before the next one comes. */
	bool behind = slow || (busy > PIPE_DEGRADE_BUSY_HIGH && depth > 0) || depth >= d->backlog ||
		      dropped > d->dropped_at_start;
	if (behind && now - d->start < PIPE_DEGRADE_START_NS) {
		d->calm = 0;
	} else if (behind) {
		int to = pipe_degrade_next(d, d->level, 1);
		bool settling = d->last_down && now - d->last_down < PIPE_DEGRADE_SETTLE_NS;
		d->calm = 0;
		if (to >= 0 && !settling)
			pipe_degrade_move(p, d, to, busy, depth);
	} else if (d->level > 0) {
		double up = busy * pipe_degrade_up_cost[d->level];
		d->calm = up < PIPE_DEGRADE_BUSY_UP && depth <= 1 ? d->calm + 1 : 0;
		if (d->calm >= PIPE_DEGRADE_CALM_WINDOWS && now - d->last_move >= d->up_hold_ns)
			pipe_degrade_move(p, d, pipe_degrade_next(d, d->level, -1), busy, depth);
	}
	d->window_start = now;
	d->busy_ns = 0;
	d->dropped_at_start = dropped;
}

static void *pipe_enc_main(void *arg)
{
	struct pipe_enc_ctx *c = arg;
	struct media_pipeline *p = c->p;
	struct media_enc *enc = p->enc[c->role];
	void *it;
	bool failed = false;
	/* A sixth of a second of frames waiting is a backlog the encoder is not
	 * clearing; from half a second on, frames are left out. Seconds at the
	 * rate the source delivers (a camera may run slower than the preset:
	 * at 5 fps each frame has 200 ms, not the preset's 33). At 720p and
	 * above the raw queue is shorter than half a second, so there a backlog
	 * overflows the queue before it is shed; tried: shedding two short of
	 * full instead left out 3-6 times as many frames of eight medium
	 * recordings started together (the queue absorbs most of a start). */
	int fps = p->stats.video_fps >= 1 ? (int)(p->stats.video_fps + 0.5) : p->preset->fps;
	struct pipe_degrade d = {
		.on = c->role == PIPE_VIDEO && !p->opt.fast && enc->driver->set_level,
		.dense = p->stats.encoder_dense,
		.start = time_mono_ns(),
		.window_start = time_mono_ns(),
		.backlog = (size_t)(fps / 6 > 2 ? fps / 6 : 2),
		.shed_depth = (size_t)(fps / 2 > 3 ? fps / 2 : 3),
		.frame_ns = TIME_NS_PER_SEC / (fps > 0 ? fps : 30),
		.last_move = time_mono_ns() - PIPE_DEGRADE_WINDOW_NS,
		.up_hold_ns = PIPE_DEGRADE_UP_HOLD_NS,
	};
	bool shed_last = false, carry_key = false;

	while (queue_pop(p->enc_queue[c->role], &it, -1) == QUEUE_OK) {
		struct pipe_item *item = it;
		if (d.on && !failed && !shed_last && queue_length(p->enc_queue[c->role]) >= d.shed_depth) {
			/* Behind: until the backlog is gone, every other frame is
			 * left out (evenly, not a burst at a full queue); a keyframe
			 * asked for moves to the next one. */
			shed_last = true;
			carry_key |= item->keyframe;
			pipe_item_free(item);
			pthread_mutex_lock(&p->lock);
			p->stats.video_frames_dropped++;
			pthread_mutex_unlock(&p->lock);
			continue;
		}
		shed_last = false;
		item->keyframe |= carry_key;
		carry_key = false;
		if (!failed) {
			int64_t t0 = time_mono_ns();
			c->frame_duration_ns = item->duration_ns;
			c->out_key = false;
			int r = enc->driver->encode(enc, item->data, item->samples, item->pts_ns,
						    item->keyframe, pipe_enc_output, c);
			if (c->role == PIPE_VIDEO) {
				int64_t t1 = time_mono_ns(), dt = t1 - t0;
				pthread_mutex_lock(&p->lock);
				p->stats.video_encode_ns += dt;
				pthread_mutex_unlock(&p->lock);
				if (d.on && r >= 0)
					pipe_degrade_check(p, &d, dt, t1, c->out_key);
			}
			if (r < 0) {
				pipe_fault(p, "%s encoder: %s", enc->driver->name, enc->err[0] ? enc->err : "failed");
				failed = true;
			}
		}
		pipe_item_free(item);
	}
	if (!failed && enc->driver->encode(enc, NULL, 0, 0, false, pipe_enc_output, c) < 0)
		pipe_fault(p, "%s encoder flush: %s", enc->driver->name, enc->err);
	struct pipe_item *eos = pipe_item_new(c->role, 0, 0);
	if (eos) {
		eos->eos = true;
		pipe_push_wait(p->mux_queue, eos);
	}
	free(c);
	return NULL;
}

/* ---- mux thread ---- */

struct pipe_list {
	struct pipe_item *head, *tail;
	bool eos;
	int64_t last_pts;  /* newest queued */
};

static void pipe_list_push(struct pipe_list *l, struct pipe_item *item)
{
	item->next = NULL;
	if (l->tail)
		l->tail->next = item;
	else
		l->head = item;
	l->tail = item;
	l->last_pts = item->pts_ns;
}

static struct pipe_item *pipe_list_pop(struct pipe_list *l)
{
	struct pipe_item *item = l->head;
	if (item) {
		l->head = item->next;
		if (!l->head)
			l->tail = NULL;
	}
	return item;
}

/* Writes one packet, keeping the counters. */
/* The mux thread's view of what it has written. */
struct pipe_mux_state {
	bool need_video_key;   /* start, or video dropped: wait for a keyframe */
	bool failed;
	bool wrote_any;        /* the file has its header and a first frame */
	int64_t first_audio_mono; /* encoded video: when audio first waited for it */
	int64_t last_pts_ns;   /* newest timestamp written */
};

/* Width and height from a VP8 keyframe's header (RFC 6386 9.1): a 3-byte
 * frame tag, the start code 9d 01 2a, then 14-bit width and height. Returns
 * true when 'data' holds a keyframe header with a non-zero size. */
static bool pipe_vp8_key_size(const uint8_t *data, size_t len, int *w, int *h)
{
	if (len < 10 || (data[0] & 1) || data[3] != 0x9d || data[4] != 0x01 || data[5] != 0x2a)
		return false;
	*w = (data[6] | data[7] << 8) & 0x3fff;
	*h = (data[8] | data[9] << 8) & 0x3fff;
	return *w > 0 && *h > 0;
}

/* The size an encoded video keyframe declares (VP8 frame header, H.264
 * SPS in the access unit). */
static bool pipe_key_size(enum media_codec codec, const struct buf *data, int *w, int *h)
{
	if (codec == MEDIA_CODEC_VP8)
		return pipe_vp8_key_size(data->data, data->size, w, h);
	if (codec == MEDIA_CODEC_H264) {
		const uint8_t *sps, *pps;
		size_t sps_len, pps_len;
		struct media_h264_sps s;
		bool idr;
		if (media_h264_avcc_scan(data->data, data->size, &idr, &sps, &sps_len, &pps, &pps_len) < 0 || !sps ||
		    media_h264_sps_parse(sps, sps_len, &s) < 0)
			return false;
		*w = s.width;
		*h = s.height;
		return true;
	}
	return false;
}

/* H.264: the track's CodecPrivate (avcC) from the SPS and PPS the first
 * keyframe carries. Returns 0, or -1 when it carries none that parse. */
static int pipe_h264_codec_private(struct media_pipeline *p, const struct buf *data)
{
	const uint8_t *sps, *pps;
	size_t sps_len, pps_len, n;
	bool idr;
	uint8_t *avcc;
	if (media_h264_avcc_scan(data->data, data->size, &idr, &sps, &sps_len, &pps, &pps_len) < 0 || !sps || !pps)
		return -1;
	avcc = malloc(11 + sps_len + pps_len + 4);
	if (!avcc)
		return -1;
	n = media_h264_avcc_build(sps, sps_len, pps, pps_len, avcc, 11 + sps_len + pps_len + 4);
	int rc = n && media_mux_webm.set_codec_private(p->mux, p->mux_track[PIPE_VIDEO], avcc, n) == 0 ? 0 : -1;
	free(avcc);
	return rc;
}

static void pipe_mux_drop(struct media_pipeline *p, int role)
{
	pthread_mutex_lock(&p->lock);
	if (role == PIPE_VIDEO)
		p->stats.video_frames_dropped++;
	else
		p->stats.audio_frames_dropped++;
	pthread_mutex_unlock(&p->lock);
}

/* Writes one packet, keeping the counters. A packet older than what the
 * file already holds (a stream that fell more than the interleave window
 * behind) is dropped rather than written with a false timestamp; for video
 * the file then waits for a keyframe, which is asked for. */
static void pipe_mux_write(struct media_pipeline *p, struct pipe_item *item, struct pipe_mux_state *ms)
{
	int role = item->role;
	if (ms->failed)
		return;
	if (item->pts_ns < ms->last_pts_ns) {
		pipe_mux_drop(p, role);
		if (role == PIPE_VIDEO && !ms->need_video_key) {
			ms->need_video_key = true;
			media_pipeline_request_keyframe(p);
		}
		return;
	}
	if (role == PIPE_VIDEO && ms->need_video_key) {
		if (!item->keyframe) {
			pipe_mux_drop(p, role);  /* video starts (again) with a keyframe */
			return;
		}
		ms->need_video_key = false;
	}
	if (!ms->wrote_any && p->passthrough[PIPE_VIDEO]) {
		/* Only a live sender joined mid-stream (a source that can be asked
		 * for keyframes) has audio before its first keyframe; a file's
		 * streams start together and keep their first packets. */
		if (role == PIPE_AUDIO && p->src->driver->request_keyframe) {
			int64_t now = time_mono_ns();
			if (!ms->first_audio_mono)
				ms->first_audio_mono = now;
			pipe_mux_drop(p, role);  /* the file opens with the first keyframe */
			if (now - ms->first_audio_mono >= PIPE_FIRST_KEY_WAIT_NS)
				pipe_fault(p, "no video keyframe from the sender in %d s of its audio: nothing recorded "
					   "(keyframe requests not reaching the sender? an audio-only room needs no video stream: video=0)",
					   (int)(PIPE_FIRST_KEY_WAIT_NS / TIME_NS_PER_SEC));
			return;
		} else if (role == PIPE_VIDEO) {
			enum media_codec codec = p->src->streams[p->src_stream[PIPE_VIDEO]].codec;
			int w, h;
			if (codec == MEDIA_CODEC_H264 && pipe_h264_codec_private(p, item->data) < 0) {
				/* The depacketizer puts SPS/PPS before every IDR;
				 * without them the track could not be decoded. */
				pipe_mux_drop(p, role);
				ms->need_video_key = true;
				media_pipeline_request_keyframe(p);
				return;
			}
			if (pipe_key_size(codec, item->data, &w, &h)) {
				media_mux_webm.set_video_size(p->mux, p->mux_track[role], w, h);
				pthread_mutex_lock(&p->lock);
				p->stats.video_width = p->stats.video_last_width = w;
				p->stats.video_height = p->stats.video_last_height = h;
				pthread_mutex_unlock(&p->lock);
			}
		}
	} else if (role == PIPE_VIDEO && item->keyframe && p->passthrough[PIPE_VIDEO]) {
		/* A new size from the sender: the file goes on in the same track
		 * (players follow the keyframes; H.264 keyframes carry their SPS
		 * and PPS); the state says it happened. */
		int w, h;
		if (pipe_key_size(p->src->streams[p->src_stream[PIPE_VIDEO]].codec, item->data, &w, &h)) {
			pthread_mutex_lock(&p->lock);
			bool changed = w != p->stats.video_last_width || h != p->stats.video_last_height;
			if (changed) {
				LOG_INFO(&log_pipe, "%s: the sender's video changed size %dx%d -> %dx%d", p->output_path,
					 p->stats.video_last_width, p->stats.video_last_height, w, h);
				p->stats.video_size_changes++;
				p->stats.video_last_width = w;
				p->stats.video_last_height = h;
			}
			pthread_mutex_unlock(&p->lock);
		}
	}
	if (media_mux_webm.write(p->mux, p->mux_track[role], item->data->data, item->data->size,
				 item->pts_ns, item->keyframe) < 0) {
		int e = media_mux_webm.last_errno(p->mux);
		if (e == ENOSPC || e == EDQUOT) {
			pthread_mutex_lock(&p->lock);
			p->stats.disk_full = true;
			pthread_mutex_unlock(&p->lock);
		}
		pipe_fault(p, "muxer: %s", media_mux_webm.last_error(p->mux));
		ms->failed = true;
		return;
	}
	ms->last_pts_ns = item->pts_ns;
	ms->wrote_any = true;
	bool first = false;
	pthread_mutex_lock(&p->lock);
	if (role == PIPE_VIDEO) {
		p->stats.video_frames_encoded++;
		if (item->keyframe)
			p->stats.video_keyframes++;
	} else {
		p->stats.audio_frames_encoded++;
	}
	int64_t end = item->pts_ns + item->duration_ns;
	if (end > p->stats.active_duration_ns)
		p->stats.active_duration_ns = end;
	p->stats.bytes_written = media_mux_webm.bytes(p->mux);
	if (p->stats.first_frame_wall_ns == 0) {
		p->stats.first_frame_wall_ns = time_wall_ns();
		first = true;
	}
	pthread_mutex_unlock(&p->lock);
	if (first)
		pipe_event(p, MEDIA_EVENT_FIRST_FRAME, NULL);
}

/* The writing side of a pipeline: what waits to be written in timestamp
 * order, and what has been written. Run by the muxer's thread, or, when
 * nothing is encoded (every stream passes through: rtp and WHIP rooms), by
 * the source's thread itself, which saves a thread and its wake-ups per
 * recording (a third of a WHIP stream's CPU went to the muxer's thread). */
struct pipe_muxer {
	struct pipe_list lists[PIPE_ROLES];
	struct pipe_mux_state ms;
};

static struct pipe_muxer *pipe_muxer_new(struct media_pipeline *p)
{
	struct pipe_muxer *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->ms.need_video_key = true;
	for (int i = 0; i < PIPE_ROLES; i++)
		m->lists[i].eos = p->src_stream[i] < 0;
	return m;
}

static void pipe_muxer_free(struct pipe_muxer *m)
{
	if (!m)
		return;
	for (int i = 0; i < PIPE_ROLES; i++) {
		struct pipe_item *item;
		while ((item = pipe_list_pop(&m->lists[i])))
			pipe_item_free(item);
	}
	free(m);
}

/* Takes one item (a packet or an end of stream) and writes what may be
 * written: in timestamp order, the older head when both streams have
 * something; one stream alone when the other has ended, or (in real time)
 * has been silent while this one queued more than the encoders can hold
 * back, e.g. a live source lost its video. In fast mode the source waits
 * for the encoders, so waiting here is bounded and keeps every timestamp
 * exact. */
static void pipe_muxer_take(struct media_pipeline *p, struct pipe_item *item)
{
	struct pipe_muxer *m = p->muxer;
	if (item->eos) {
		m->lists[item->role].eos = true;
		pipe_item_free(item);
	} else {
		pipe_list_push(&m->lists[item->role], item);
	}
	bool may_lag = !p->opt.fast;
	for (;;) {
		struct pipe_list *v = &m->lists[PIPE_VIDEO], *a = &m->lists[PIPE_AUDIO];
		struct pipe_list *pick = NULL;
		if (v->head && a->head)
			pick = v->head->pts_ns <= a->head->pts_ns ? v : a;
		else if (v->head && (a->eos || (may_lag && v->last_pts - v->head->pts_ns > PIPE_INTERLEAVE_NS)))
			pick = v;
		else if (a->head && (v->eos || (may_lag && a->last_pts - a->head->pts_ns > PIPE_INTERLEAVE_NS)))
			pick = a;
		if (!pick)
			break;
		struct pipe_item *w = pipe_list_pop(pick);
		pipe_mux_write(p, w, &m->ms);
		pipe_item_free(w);
	}
}

/* Every stream ended and everything written. */
static bool pipe_muxer_done(const struct media_pipeline *p)
{
	const struct pipe_muxer *m = p->muxer;
	return m->lists[PIPE_VIDEO].eos && m->lists[PIPE_AUDIO].eos && !m->lists[PIPE_VIDEO].head &&
	       !m->lists[PIPE_AUDIO].head;
}

/* Nothing came for a while: the writer's buffered bytes go to the kernel
 * when due, so a silent source leaves nothing in memory. */
static void pipe_muxer_idle(struct media_pipeline *p)
{
	if (p->mux && p->muxer->ms.wrote_any && !p->muxer->ms.failed)
		media_mux_webm.tick(p->mux);  /* a failure shows at the next write */
}

/* Finalizes the file: Duration is the end of the last frame written. */
static void pipe_muxer_finish(struct media_pipeline *p)
{
	struct media_mux *mux = p->mux;
	p->mux = NULL;
	char err[256] = "";
	pthread_mutex_lock(&p->lock);
	int64_t duration = p->stats.active_duration_ns;
	pthread_mutex_unlock(&p->lock);
	if (!p->muxer->ms.wrote_any) {
		/* Nothing to finalize: a file without frames would be a header
		 * without content. Say why instead. */
		media_mux_webm.abandon(mux);
		unlink(p->output_path);
		pipe_fault(p, "nothing was recorded: %s", p->passthrough[PIPE_VIDEO] ?
			   "no video keyframe and no audio arrived from the source" : "no frame arrived from the source");
	} else if (media_mux_webm.close(mux, duration, err, sizeof(err)) < 0) {
		pipe_fault(p, "finalizing: %s", err);
	}
	struct stat sb;
	pthread_mutex_lock(&p->lock);
	if (stat(p->output_path, &sb) == 0)
		p->stats.bytes_written = (uint64_t)sb.st_size;
	p->stop_duration_ns = duration;
	pthread_mutex_unlock(&p->lock);
}

/* Hands an item to the writing side: to the muxer's thread, or written at
 * once by this (the source's) thread when the pipeline muxes inline. */
static int pipe_to_mux(struct media_pipeline *p, struct pipe_item *item)
{
	if (p->mux_inline) {
		pipe_muxer_take(p, item);
		return 0;
	}
	return pipe_push_wait(p->mux_queue, item);
}

static void *pipe_mux_main(void *arg)
{
	struct media_pipeline *p = arg;

	while (!pipe_muxer_done(p)) {
		void *it;
		int r = queue_pop(p->mux_queue, &it, PIPE_MUX_BATCH_NS);
		if (r == QUEUE_TIMEOUT)
			pipe_muxer_idle(p);
		else if (r == QUEUE_OK)
			pipe_muxer_take(p, it);
	}
	pipe_muxer_finish(p);
	return NULL;
}

/* ---- public API ---- */

static char *pipe_strdup(const char *s)
{
	return s ? strdup(s) : strdup("");
}

struct media_pipeline *media_pipeline_new(const struct media_pipeline_config *cfg,
					  char *err, size_t errlen)
{
	struct media_pipeline *p = NULL;
	char dir[4096];

	if (!cfg || !cfg->source || !cfg->output_path || !cfg->output_path[0]) {
		util_strlcpy(err, "missing source or output path", errlen);
		return NULL;
	}
	const struct media_source_driver *drv = media_source_find(cfg->source);
	if (!drv) {
		snprintf(err, errlen, "unknown source '%s'", cfg->source);
		return NULL;
	}
	if (media_preset_check(cfg->preset, cfg->format, err, errlen) < 0)
		return NULL;
	util_strlcpy(dir, cfg->output_path, sizeof(dir));
	const char *d = dirname(dir);
	struct stat sb;
	if (stat(d, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "output directory '%s' does not exist or is not a directory", d);
		return NULL;
	}
	if (access(d, W_OK) != 0) {
		snprintf(err, errlen, "output directory '%s' is not writable: %s", d, strerror(errno));
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		util_strlcpy(err, "out of memory", errlen);
		return NULL;
	}
	p->source_name = pipe_strdup(cfg->source);
	p->source_args = pipe_strdup(cfg->source_args);
	p->format = pipe_strdup(cfg->format);
	p->output_path = pipe_strdup(cfg->output_path);
	if (!p->source_name || !p->source_args || !p->format || !p->output_path) {
		util_strlcpy(err, "out of memory", errlen);
		media_pipeline_free(p);
		return NULL;
	}
	p->preset = cfg->preset;
	p->stats.encoder_dense = cfg->dense;
	p->src_driver = drv;
	p->on_event = cfg->on_event;
	p->opaque = cfg->opaque;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->ended_cond, NULL);
	atomic_init(&p->video_fps_div, 1);
	for (int i = 0; i < PIPE_ROLES; i++)
		p->src_stream[i] = -1;
	return p;
}

int media_pipeline_set_options(struct media_pipeline *p, const struct media_pipeline_options *o)
{
	if (!p || !o || p->started || o->nb_schedule < 0 || o->nb_schedule > MEDIA_SCHEDULE_MAX)
		return -1;
	int64_t last = -1;
	for (int i = 0; i < o->nb_schedule; i++) {
		if (o->pause_at_ns[i] <= last || o->resume_at_ns[i] <= o->pause_at_ns[i])
			return -1;
		last = o->resume_at_ns[i];
	}
	p->opt = *o;
	return 0;
}


/* How many raw video frames of this size the encoder queue holds in real
 * time (see PIPE_RAW_QUEUE_BYTES). */
static size_t pipe_raw_queue_depth(int width, int height, int fps)
{
	size_t frame = (size_t)width * (size_t)height * 3 / 2;
	size_t depth = frame > 0 ? PIPE_RAW_QUEUE_BYTES / frame : PIPE_ENC_QUEUE_MIN;
	if (fps > 0 && depth > (size_t)fps)
		depth = (size_t)fps;
	return depth < PIPE_ENC_QUEUE_MIN ? PIPE_ENC_QUEUE_MIN : depth;
}

/* Opens the encoder for 'role' from the source stream, or marks the stream
 * for passthrough, and describes the output track. */
static int pipe_setup_role(struct media_pipeline *p, int role, struct media_mux_track *t,
			   char *err, size_t errlen)
{
	const struct media_stream_info *si = &p->src->streams[p->src_stream[role]];
	bool vp9 = strcmp(p->format, "mp4") == 0;
	memset(t, 0, sizeof(*t));
	t->kind = si->kind;
	if (si->codec == MEDIA_CODEC_I420 || si->codec == MEDIA_CODEC_S16) {
		struct media_enc_params ep = { 0 };
		const struct media_enc_driver *drv;
		if (role == PIPE_VIDEO) {
			int fps = si->fps_den > 0 ? (si->fps_num + si->fps_den / 2) / si->fps_den : p->preset->fps;
			drv = vp9 ? &media_enc_vp9 : &media_enc_vp8;
			ep.width = si->width;
			ep.height = si->height;
			ep.fps = fps > 0 ? fps : p->preset->fps;
			ep.bitrate_bps = p->preset->video_bps;
			ep.keyframe_interval = 2 * ep.fps;
			/* Threads from the whole node's load (media_preset.c). */
			ep.threads = media_encode_threads_take((long long)ep.width * ep.height * ep.fps);
			ep.dense = p->stats.encoder_dense;
			p->enc_threads = ep.threads;
			t->width = si->width;
			t->height = si->height;
			t->fps = ep.fps;
			p->stats.video_fps = ep.fps;
			p->stats.video_min_fps = ep.fps;
		} else {
			drv = &media_enc_opus;
			ep.sample_rate = si->sample_rate;
			ep.channels = si->channels;
			ep.bitrate_bps = p->preset->audio_bps;
			t->sample_rate = si->sample_rate;
			t->channels = si->channels;
		}
		p->enc[role] = media_enc_new(drv, &ep, err, errlen);
		if (!p->enc[role])
			return -1;
		size_t cap = PIPE_AUDIO_QUEUE;
		if (role == PIPE_VIDEO)
			/* Slack in real time, bounded by memory; in fast mode
			 * the source waits instead, so a short queue is enough. */
			cap = p->opt.fast ? PIPE_ENC_QUEUE_MIN : pipe_raw_queue_depth(si->width, si->height, ep.fps);
		p->enc_queue[role] = queue_new(cap);
		if (!p->enc_queue[role]) {
			util_strlcpy(err, "out of memory", errlen);
			return -1;
		}
		t->codec = drv->codec;
		t->codec_private = p->enc[role]->codec_private;
		t->codec_private_len = p->enc[role]->codec_private_len;
		t->codec_delay_ns = p->enc[role]->codec_delay_ns;
		t->seek_preroll_ns = p->enc[role]->seek_preroll_ns;
		return 0;
	}
	if (!media_mux_codec_id(si->codec)) {
		util_strlcpy(err, "source delivers a codec that cannot be recorded", errlen);
		return -1;
	}
	if (vp9 && si->codec == MEDIA_CODEC_VP8) {
		util_strlcpy(err, "format mp4 records VP9, but the source sends VP8 (record webm or mkv)", errlen);
		return -1;
	}
	if (si->codec == MEDIA_CODEC_H264 && strcmp(p->format, "webm") == 0) {
		util_strlcpy(err, "WebM cannot hold H.264, which the source sends (record mkv or mp4)", errlen);
		return -1;
	}
	if (role == PIPE_VIDEO)
		util_strlcpy(p->stats.video_codec, si->codec == MEDIA_CODEC_H264 ? "h264" :
			     si->codec == MEDIA_CODEC_VP9 ? "vp9" : "vp8", sizeof(p->stats.video_codec));
	p->passthrough[role] = true;
	t->codec = si->codec;
	t->width = si->width;
	t->height = si->height;
	t->fps = si->fps_den > 0 ? (double)si->fps_num / si->fps_den : 0;
	t->sample_rate = si->sample_rate;
	t->channels = si->channels;
	t->codec_private = si->codec_private;
	t->codec_private_len = si->codec_private_len;
	t->codec_delay_ns = si->codec_delay_ns;
	t->seek_preroll_ns = si->seek_preroll_ns;
	return 0;
}

/* Undoes a partial start(). */
static void pipe_teardown(struct media_pipeline *p)
{
	if (p->mux) {
		media_mux_webm.abandon(p->mux);
		p->mux = NULL;
	}
	for (int i = 0; i < PIPE_ROLES; i++) {
		media_enc_free(p->enc[i]);
		p->enc[i] = NULL;
		queue_free(p->enc_queue[i], pipe_item_free);
		p->enc_queue[i] = NULL;
	}
	media_encode_threads_give(p->enc_threads);
	p->enc_threads = 0;
	queue_free(p->mux_queue, pipe_item_free);
	p->mux_queue = NULL;
	pipe_muxer_free(p->muxer);
	p->muxer = NULL;
	media_source_free(p->src);
	p->src = NULL;
}

int media_pipeline_start(struct media_pipeline *p, char *err, size_t errlen)
{
	struct media_mux_track tracks[PIPE_ROLES];
	struct media_source_params sp = {
		.args = p->source_args,
		.width = p->preset->width,
		.height = p->preset->height,
		.fps = p->preset->fps,
		.sample_rate = 48000,
		.channels = 2,
		.realtime = !p->opt.fast,
		.duration_ns = p->opt.duration_ns,
	};
	if (p->started) {
		util_strlcpy(err, "pipeline already started", errlen);
		return -1;
	}
	int rc = -1;
	int src_rc = media_source_open(&p->src, p->src_driver, &sp, err, errlen);
	if (src_rc < 0) {
		/* a missing or busy device is told apart (the recorder answers 503 / 409) */
		rc = src_rc == -ENOENT || src_rc == -EBUSY ? src_rc : -1;
		goto fail;
	}
	if (p->src->driver->capture_info)
		p->src->driver->capture_info(p->src, &p->stats.capture);
	for (int i = 0; i < p->src->nb_streams; i++) {
		int role = p->src->streams[i].kind == MEDIA_KIND_VIDEO ? PIPE_VIDEO : PIPE_AUDIO;
		if (p->src_stream[role] < 0)
			p->src_stream[role] = i;
	}
	p->mux_queue = queue_new(PIPE_MUX_QUEUE);
	if (!p->mux_queue) {
		util_strlcpy(err, "out of memory", errlen);
		goto fail;
	}
	if (!p->opt.fast)
		queue_set_wake(p->mux_queue, PIPE_MUX_QUEUE / 4);
	for (int i = 0; i < PIPE_ROLES; i++)
		if (p->src_stream[i] >= 0 && pipe_setup_role(p, i, &tracks[i], err, errlen) < 0)
			goto fail;
	p->mux_inline = true;
	for (int i = 0; i < PIPE_ROLES; i++)
		if (p->enc[i])
			p->mux_inline = false;
	p->muxer = pipe_muxer_new(p);
	if (!p->muxer) {
		util_strlcpy(err, "out of memory", errlen);
		goto fail;
	}
	p->mux = media_mux_webm.open(p->output_path,
				     strcmp(p->format, "webm") == 0 ? "webm" : "matroska", err, errlen);
	if (!p->mux)
		goto fail;
	for (int i = 0; i < PIPE_ROLES; i++) {
		if (p->src_stream[i] < 0)
			continue;
		p->mux_track[i] = media_mux_webm.add_track(p->mux, &tracks[i]);
		if (p->mux_track[i] < 0) {
			util_strlcpy(err, media_mux_webm.last_error(p->mux), errlen);
			goto fail;
		}
	}
	p->started = true;
	p->stats.started_wall_ns = time_wall_ns();
	if (!p->mux_inline) {
		if (thread_start(&p->mux_thread, "rec-mux", THREAD_STACK_MEDIA, pipe_mux_main, p) != 0)
			goto thread_fail;
		p->mux_started = true;
	}
	for (int i = 0; i < PIPE_ROLES; i++) {
		if (!p->enc[i])
			continue;
		struct pipe_enc_ctx *c = malloc(sizeof(*c));
		if (!c)
			goto thread_fail;
		c->p = p;
		c->role = i;
		if (thread_start(&p->enc_thread[i], i == PIPE_VIDEO ? "rec-venc" : "rec-aenc", THREAD_STACK_MEDIA,
				 pipe_enc_main, c) != 0) {
			free(c);
			goto thread_fail;
		}
		p->enc_started[i] = true;
	}
	if (thread_start(&p->src_thread, "rec-src", THREAD_STACK_MEDIA, pipe_src_main, p) != 0)
		goto thread_fail;
	p->src_started = true;
	LOG_INFO(&log_pipe, "recording %s: source %s, %s %s", p->output_path, p->source_name,
		 p->format, p->preset->name);
	return 0;

thread_fail:
	/* Some threads run: end every stream so they finish, then join them. */
	util_strlcpy(err, "cannot start pipeline threads", errlen);
	atomic_store(&p->stop_requested, true);
	for (int i = 0; i < PIPE_ROLES; i++) {
		if (p->enc_started[i]) {
			queue_close(p->enc_queue[i]);
		} else if (p->src_stream[i] >= 0) {
			struct pipe_item *eos = pipe_item_new(i, 0, 0);
			if (eos) {
				eos->eos = true;
				pipe_push_wait(p->mux_queue, eos);
			}
		}
	}
	media_pipeline_stop(p, NULL, 0);
	return -1;
fail:
	pipe_teardown(p);
	for (int i = 0; i < PIPE_ROLES; i++) {
		p->src_stream[i] = -1;
		p->passthrough[i] = false;
	}
	return rc;
}

int media_pipeline_pause(struct media_pipeline *p)
{
	if (!p || !p->started || p->stopped || atomic_load(&p->pause_requested))
		return -1;
	atomic_store(&p->pause_requested, true);
	pthread_mutex_lock(&p->lock);
	p->stats.paused = true;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int media_pipeline_resume(struct media_pipeline *p)
{
	if (!p || !p->started || p->stopped || !atomic_load(&p->pause_requested))
		return -1;
	atomic_store(&p->pause_requested, false);
	pthread_mutex_lock(&p->lock);
	p->stats.paused = false;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int media_pipeline_request_keyframe(struct media_pipeline *p)
{
	if (!p || !p->started || p->stopped)
		return -1;
	if (p->passthrough[PIPE_VIDEO]) {
		if (p->src->driver->request_keyframe)
			p->src->driver->request_keyframe(p->src);
	} else {
		atomic_store(&p->force_keyframe, true);
	}
	return 0;
}

int media_pipeline_stop(struct media_pipeline *p, char *err, size_t errlen)
{
	if (!p || !p->started) {
		if (err)
			util_strlcpy(err, "pipeline not started", errlen);
		return -1;
	}
	if (!p->stopped) {
		p->stopped = true;
		atomic_store(&p->stop_requested, true);
		if (p->src_started)
			pthread_join(p->src_thread, NULL);
		for (int i = 0; i < PIPE_ROLES; i++)
			if (p->enc_started[i])
				pthread_join(p->enc_thread[i], NULL);
		if (p->mux_started)
			pthread_join(p->mux_thread, NULL);
		pipe_teardown(p);
		pipe_mark_ended(p);
		LOG_INFO(&log_pipe, "stopped %s: %.3f s", p->output_path, p->stop_duration_ns / 1e9);
	}
	pthread_mutex_lock(&p->lock);
	bool failed = p->stats.failed;
	if (failed && err)
		util_strlcpy(err, p->stats.error, errlen);
	pthread_mutex_unlock(&p->lock);
	return failed ? -1 : 0;
}

void media_pipeline_free(struct media_pipeline *p)
{
	if (!p)
		return;
	if (p->started)
		media_pipeline_stop(p, NULL, 0);
	pthread_cond_destroy(&p->ended_cond);
	pthread_mutex_destroy(&p->lock);
	free(p->source_name);
	free(p->source_args);
	free(p->format);
	free(p->output_path);
	free(p);
}

void media_pipeline_stats(struct media_pipeline *p, struct media_stats *st)
{
	pthread_mutex_lock(&p->lock);
	*st = p->stats;
	pthread_mutex_unlock(&p->lock);
}

int media_pipeline_wait(struct media_pipeline *p, int64_t timeout_ns)
{
	int64_t deadline = timeout_ns >= 0 ? time_mono_ns() + timeout_ns : 0;
	pthread_mutex_lock(&p->lock);
	while (!p->ended) {
		if (timeout_ns >= 0) {
			int64_t left = deadline - time_mono_ns();
			if (left <= 0)
				break;
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t ns = ts.tv_nsec + left % TIME_NS_PER_SEC;
			ts.tv_sec += left / TIME_NS_PER_SEC + ns / TIME_NS_PER_SEC;
			ts.tv_nsec = ns % TIME_NS_PER_SEC;
			pthread_cond_timedwait(&p->ended_cond, &p->lock, &ts);
		} else {
			pthread_cond_wait(&p->ended_cond, &p->lock);
		}
	}
	bool ended = p->ended;
	pthread_mutex_unlock(&p->lock);
	return ended ? 1 : 0;
}
