/* media: the recording engine's public face: quality presets, the recording
 * pipeline (source -> encoders -> muxer on their own threads), and the file
 * tools used after the fact (probe, crash repair).
 *
 * Uses: common (log, time, buffers, bounded queues), libvpx, libopus and
 * libwebm (mkvmuxer/mkvparser) internally; none of their headers leak out.
 * The source driver table lives in media_source.h. */
#ifndef EDGEREC_MEDIA_H
#define EDGEREC_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "media_source.h"

/* One quality preset of SPEC §5. The objects are static; never free them. */
struct media_preset {
	const char *name;               /* "low" "medium" "high" "ultra" */
	int width, height, fps;
	int video_bps, audio_bps;
	const char *video_bitrate_text; /* "2.5M", as the state object shows it */
	const char *audio_bitrate_text; /* "128k" */
};

/* Returns the preset named 'quality' (low|medium|high|ultra), or NULL. */
const struct media_preset *media_preset_find(const char *quality);

/* Checks that 'format' (webm|mkv|mp4) may be recorded at 'preset' on this
 * machine. Returns 0, or -1 with a reason in 'err' (unknown format, or a
 * preset the box cannot encode in real time, see media_preset.c). */
int media_preset_check(const struct media_preset *preset, const char *format,
		       char *err, size_t errlen);

/* ---- the node's encode ledger (media_preset.c) ----
 * Every pipeline of the process encodes on the same cores, so admission
 * and thread counts are decided for the whole node, not per recording.
 * All functions are thread-safe. */

/* Pixels per second a recording of 'preset' encodes (width x height x fps). */
long long media_preset_pixel_rate(const struct media_preset *preset);
/* What a recording of 'preset' from 'source' ("test" "file" "rtp") with
 * 'args' costs this node's encoders, in pixels per second (its pixel rate
 * plus the audio, source and muxer counted as pixels): 0 when the source
 * delivers encoded video that is written as it came (rtp, test with
 * encoded=1). */
long long media_encode_cost(const struct media_preset *preset, const char *source, const char *args);
/* Sets the node's encode budget in pixels per second (0: the default
 * measured for this machine, see media_preset.c). */
void media_encode_set_budget(long long pixels_per_s);
/* What a recording whose dense cost (media_encode_cost, the encoder at its
 * dense speed) is 'dense_cost' costs at the quality speed: its pixels at
 * MEDIA_QUALITY_COST_PCT, the rest as is; 0 for 0. */
long long media_encode_quality_cost(long long dense_cost);
/* What a start got from the ledger: the pixels/s reserved (0: nothing to
 * encode) and whether the encoder must run at its dense speed. */
struct media_encode_grant {
	long long rate;
	bool dense;
};
/* Reserves the budget for a recording about to start whose dense cost is
 * 'dense_cost': at the quality cost when that fits next to the recordings
 * already encoding, else at the dense cost (grant->dense). Returns 0
 * (nothing reserved for dense_cost <= 0), or -1 with why in 'err' when not
 * even the dense cost fits. Each successful reserve is undone by one
 * media_encode_release of grant->rate. */
int media_encode_reserve(long long dense_cost, struct media_encode_grant *grant, char *err, size_t errlen);
void media_encode_release(long long rate);

struct media_encode_load {
	long long budget;    /* pixels/s this node may encode */
	long long reserved;  /* pixels/s of the admitted recordings that encode */
	int recordings;      /* those recordings */
	int encoders;        /* video encoders open, and their threads */
	int threads;
	int cores;           /* online cores */
};
void media_encode_load(struct media_encode_load *out);

/* Threads for a video encoder about to open at 'rate' pixels/s, given the
 * encoders already open on the node; counts it in. Give them back with
 * media_encode_threads_give when the encoder closes. */
int media_encode_threads_take(long long rate);
void media_encode_threads_give(int threads);

enum media_event {
	MEDIA_EVENT_FIRST_FRAME,     /* the first frame reached the file */
	MEDIA_EVENT_FAULT,           /* the pipeline failed; detail says why */
	MEDIA_EVENT_SOURCE_STALLED,  /* no input for a while (live sources) */
	MEDIA_EVENT_SOURCE_RESUMED,  /* input flows again */
	MEDIA_EVENT_EOF,             /* the source ended (files, test durations) */
	MEDIA_EVENT_DEGRADED,        /* the CPU is short: the video went one step
				      * down the ladder; detail says what and why */
	MEDIA_EVENT_RESTORED,        /* the CPU came back: one step up */
};

/* The degradation ladder of a raw video encode, in the order the steps are
 * taken when the encoder falls behind the clock (each keeps the ones before):
 * the fastest encoder speed, every other frame, half width and height. */
enum media_degrade_level {
	MEDIA_DEGRADE_NONE = 0,
	MEDIA_DEGRADE_SPEED,
	MEDIA_DEGRADE_FPS_HALF,
	MEDIA_DEGRADE_RESOLUTION,
	MEDIA_DEGRADE_LEVELS
};

/* "none" "speed" "fps_half" "resolution". */
const char *media_degrade_name(enum media_degrade_level l);

/* One move on the ladder: 'step' the step taken (down) or undone (up). */
struct media_degrade_step {
	int64_t wall_ns;
	int step;
	bool down;
	char detail[96];
};
#define MEDIA_DEGRADE_LOG_MAX 32

struct media_pipeline_config {
	const char *source;        /* "test" "file" "rtp" */
	const char *source_args;   /* "k=v,k=v", driver specific (see media_source.h) */
	const struct media_preset *preset;
	const char *format;        /* webm|mkv|mp4 (mp4 => VP9+Opus in Matroska, or an
				    * encoded H.264 source as sent; remuxed afterwards) */
	const char *output_path;
	/* Raw video is encoded at the dense speed (cheaper, lower quality; the
	 * node's encode ledger chose it, media_encode_reserve) instead of the
	 * quality speed. */
	bool dense;
	/* Called from pipeline threads; handlers must be quick and thread-safe.
	 * 'detail' may be NULL and is only valid during the call. */
	void (*on_event)(void *opaque, enum media_event ev, const char *detail);
	void *opaque;
};

struct media_stats {
	int64_t active_duration_ns;   /* media time written, pauses excluded */
	uint64_t bytes_written;       /* bytes in the output file so far (its size after stop) */
	uint64_t video_frames_encoded;
	uint64_t video_frames_dropped; /* encoder behind, queue full, or a live source ran late */
	uint64_t video_frames_skipped; /* left out evenly by the fps_half step */
	uint64_t video_keyframes;
	uint64_t audio_frames_encoded;
	uint64_t audio_frames_dropped;
	int64_t first_frame_wall_ns;  /* wall clock of the first frame, 0 if none */
	int64_t started_wall_ns;      /* wall clock of media_pipeline_start */
	int64_t video_encode_ns;      /* wall-clock time spent inside the video encoder */
	int video_width, video_height; /* encoded sources: the size the file's video
					* track got from the first keyframe; 0 otherwise */
	/* Encoded sources: keyframes whose size differs from the keyframe
	 * before (the sender changed resolution; the file goes on in the same
	 * track, players follow the keyframes), and the size now. */
	uint32_t video_size_changes;
	int video_last_width, video_last_height;
	char video_codec[8];          /* encoded video: "vp8" "h264"; "" otherwise */
	struct media_source_stats source; /* what a live source lost before the pipeline
					   * (zero for sources that report nothing) */
	/* Degradation (raw video in real time): the level now, the lowest
	 * frame rate coded, and the moves (the first MEDIA_DEGRADE_LOG_MAX - 1
	 * and the newest; degrade_moves counts them all). */
	bool encoder_dense;           /* raw video encoded at the dense speed */
	int degrade_level;
	int degrade_max_level;
	double video_fps, video_min_fps;  /* nominal rate; lowest coded (0: no raw video) */
	uint32_t degrade_moves;
	struct media_degrade_step degrade_log[MEDIA_DEGRADE_LOG_MAX];
	/* RTP sources: what the network took (video + audio streams), about
	 * once a second: packets lost for good, asked for again (NACK), and
	 * of those come in time; frames left out (incomplete, broken
	 * reference, before a keyframe). */
	uint64_t rtp_packets_lost, rtp_nack_requested, rtp_nack_recovered, rtp_frames_dropped;
	struct media_capture_info capture; /* device sources: what they capture */
	bool paused;
	bool failed;
	bool disk_full;               /* the file write failed for lack of space (ENOSPC,
				       * EDQUOT): the file ends there, not finalized */
	char error[256];              /* why it failed, "" otherwise */
};

struct media_pipeline;

/* Builds a pipeline (opens nothing yet, checks the configuration: source
 * driver known, format known, preset allowed, output directory writable).
 * The configuration strings are copied. Returns NULL with a reason in 'err'. */
struct media_pipeline *media_pipeline_new(const struct media_pipeline_config *cfg,
					  char *err, size_t errlen);
/* Options for tools and tests, set before media_pipeline_start(). */
#define MEDIA_SCHEDULE_MAX 16
struct media_pipeline_options {
	bool fast;            /* raw sources run as fast as the encoders go (no
			       * wall-clock pacing, no drops: the source waits) */
	int64_t duration_ns;  /* >0: the source ends after this much source time */
	/* Pause/resume at exact source times (ns from the source's start), in
	 * increasing order: the i-th pause at pause_at_ns[i], its resume at
	 * resume_at_ns[i]. */
	int nb_schedule;
	int64_t pause_at_ns[MEDIA_SCHEDULE_MAX], resume_at_ns[MEDIA_SCHEDULE_MAX];
};

/* Returns 0, or -1 when already started or the schedule is not increasing. */
int media_pipeline_set_options(struct media_pipeline *p, const struct media_pipeline_options *o);

/* Opens the source, encoders and output file and starts the threads.
 * Returns 0, or <0 with a reason in 'err' (nothing left running, no file
 * made): -ENOENT when the source's device is missing, -EBUSY when it is
 * in use, -1 otherwise. */
int media_pipeline_start(struct media_pipeline *p, char *err, size_t errlen);
/* Pause stops writing (input is read and discarded); resume rebases
 * timestamps so the file has no gap and forces a keyframe first. Return 0,
 * or <0 when not running / already in that state. Any thread. */
int media_pipeline_pause(struct media_pipeline *p);
int media_pipeline_resume(struct media_pipeline *p);
/* Asks for a keyframe soon: the video encoder codes its next frame as one,
 * or an encoded source is asked for one (e.g. RTCP PLI). Returns 0, or <0
 * when not running. Any thread. */
int media_pipeline_request_keyframe(struct media_pipeline *p);
/* Stops the source, drains the encoders and finalizes the file (Duration,
 * Cues). Returns 0, or <0 with a reason in 'err'. Safe to call twice. It
 * joins the pipeline threads: never call it (or _free) from an on_event
 * handler. */
int media_pipeline_stop(struct media_pipeline *p, char *err, size_t errlen);
/* Stops first if needed, then frees. media_pipeline_free(NULL) is a no-op. */
void media_pipeline_free(struct media_pipeline *p);
/* Copies a consistent snapshot of the counters. Any thread. */
void media_pipeline_stats(struct media_pipeline *p, struct media_stats *st);
/* Blocks until the source reported EOF or a fault, or 'timeout_ns' passed
 * (negative: forever). Returns 1 on EOF/fault, 0 on timeout. */
int media_pipeline_wait(struct media_pipeline *p, int64_t timeout_ns);

struct media_file_info {
	int64_t duration_ns;       /* from the Duration element; 0 if absent */
	int64_t last_timestamp_ns; /* timestamp of the last block found */
	char doc_type[16];         /* "webm" or "matroska" */
	char video_codec[16];      /* "V_VP8" "V_VP9" "V_MPEG4/ISO/AVC", "" if no video */
	char audio_codec[16];      /* "A_OPUS", "" if no audio */
	int width, height;
	int sample_rate, channels;
	bool has_cues;
	uint64_t video_frames, audio_frames;
};

/* Reads 'path' with libwebm's parser. Returns 0, or <0 with 'err'. */
int media_file_probe(const char *path, struct media_file_info *info,
		     char *err, size_t errlen);
/* After a crash: rewrites a partial, live-written webm/mkv into a finalized
 * one (Duration, Cues) in place, through a temp file and rename. Sets
 * '*duration_ns' (may be NULL). Returns 0, or <0 with 'err' when nothing
 * usable remains (the original file is then left untouched). */
int media_file_repair(const char *path, int64_t *duration_ns, char *err, size_t errlen);

#endif
