/* media_mux: the muxer driver table, and the C face of the one C++ file
 * (media_mux_webm.cc) that wraps libwebm's mkvmuxer and mkvparser.
 *
 * The WebM/Matroska muxer writes as frames arrive: every frame handed to
 * write() is in the kernel's page cache when write() returns (apart from
 * audio the muxer holds until the next video frame, well under a second),
 * clusters start at video keyframes and last at most about one second. So a
 * process killed at any moment leaves a file that players read up to the
 * last frame or so; close() finalizes it (segment size, Duration, Cues). */
#ifndef EDGEREC_MEDIA_MUX_H
#define EDGEREC_MEDIA_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "media_source.h"

/* One track of the output. */
struct media_mux_track {
	enum media_kind kind;
	enum media_codec codec;    /* VP8, VP9, H264 (not in "webm") or OPUS */
	int width, height;         /* video */
	double fps;                /* video, nominal (0 = unknown) */
	int sample_rate, channels; /* audio */
	const uint8_t *codec_private; /* copied */
	size_t codec_private_len;
	int64_t codec_delay_ns, seek_preroll_ns;
};

struct media_mux;

struct media_mux_driver {
	const char *name;
	/* Creates the output file at 'path' (truncating). 'doc_type' is "webm"
	 * or "matroska". Returns NULL with 'err'. */
	struct media_mux *(*open)(const char *path, const char *doc_type, char *err, size_t errlen);
	/* Adds a track before the first write(); returns its number (>= 1) or <0. */
	int (*add_track)(struct media_mux *m, const struct media_mux_track *t);
	/* Writes one frame. Frames should come in non-decreasing pts order
	 * across all tracks and on a later 1 ms tick than the track's previous
	 * frame; one that does not is moved forward just enough (and counted in
	 * media_mux_timestamp_fixes), so every track of the file has strictly
	 * increasing timestamps. Returns 0, or <0 (the reason via last_error). */
	int (*write)(struct media_mux *m, int track, const uint8_t *data, size_t len,
		     int64_t pts_ns, bool keyframe);
	/* Finalizes and closes the file, then frees 'm' whether or not it
	 * succeeded. 'duration_ns' > 0 sets Duration explicitly; otherwise it is
	 * the last frame's end. Returns 0 or <0 with 'err'. */
	int (*close)(struct media_mux *m, int64_t duration_ns, char *err, size_t errlen);
	/* Hands buffered bytes to the kernel when they are due (the writer
	 * keeps up to 100 ms or 64 KiB); the muxer's thread calls it when no
	 * frame came for a while, so a silent source leaves nothing behind in
	 * memory. Returns 0, or <0 when the write failed (last_error). */
	int (*tick)(struct media_mux *m);
	/* Closes without finalizing (the file stays as a crash would leave it). */
	void (*abandon)(struct media_mux *m);
	/* Bytes in the file so far. */
	uint64_t (*bytes)(const struct media_mux *m);
	const char *(*last_error)(const struct media_mux *m);
	/* errno of the file write that failed (ENOSPC: disk full), 0 if none. */
	int (*last_errno)(const struct media_mux *m);
	/* Changes a video track's size before the first write() (when the
	 * header is written); later calls are ignored. Returns 0 or <0. */
	int (*set_video_size)(struct media_mux *m, int track, int width, int height);
	/* Sets a track's CodecPrivate before the first write() (an H.264
	 * track's avcC, known from the first keyframe); later calls are
	 * ignored. Returns 0 or <0. */
	int (*set_codec_private)(struct media_mux *m, int track, const uint8_t *data, size_t len);
};

extern const struct media_mux_driver media_mux_webm;

/* Frames whose timestamp write() had to move, in every file of this process. */
uint64_t media_mux_timestamp_fixes(void);

/* Matroska CodecID of 'codec' ("V_VP8", "V_MPEG4/ISO/AVC" ...), or NULL for
 * raw codecs. */
const char *media_mux_codec_id(enum media_codec codec);

#endif
