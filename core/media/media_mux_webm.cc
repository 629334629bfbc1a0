// media_mux_webm: the WebM/Matroska muxer driver and the file tools (probe,
// crash repair), the only code that talks to libwebm's mkvmuxer/mkvparser.
// Everything here is reached through the C declarations of media_mux.h and
// media.h; no C++ type crosses that boundary and no exception escapes it.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <new>

#include "common/webmids.h"
#include "mkvmuxer/mkvmuxer.h"
#include "mkvmuxer/mkvmuxerutil.h"
#include "mkvparser/mkvparser.h"
#include "mkvparser/mkvreader.h"

extern "C" {
#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "media.h"
#include "media_mux.h"
}

static struct log_handle log_mux = LOG_HANDLE("media/webm");

namespace {

// Counts the bytes an element sequence takes, without storing them: used to
// learn how long mkvmuxer's own EBML header is.
class CountingWriter : public mkvmuxer::IMkvWriter {
public:
	mkvmuxer::int32 Write(const void *, mkvmuxer::uint32 len) override { pos_ += len; return 0; }
	mkvmuxer::int64 Position() const override { return pos_; }
	mkvmuxer::int32 Position(mkvmuxer::int64 p) override { pos_ = p; return 0; }
	bool Seekable() const override { return true; }
	void ElementStartNotify(mkvmuxer::uint64, mkvmuxer::int64) override {}
private:
	int64_t pos_ = 0;
};

// Frames wait in the file writer's buffer at most this long (or until
// MUX_FLUSH_BYTES gather) before one pwrite() hands them to the kernel: on
// ext4 every write also dirties the inode (its mtime) through the journal,
// which cost a passthrough recording more than muxing the frame did.
#define MUX_FLUSH_NS (100 * TIME_NS_PER_MS)
#define MUX_FLUSH_BYTES (64 * 1024)

// The file writer mkvmuxer writes through. It collects mkvmuxer's many small
// writes in a buffer and hands them to the kernel with one pwrite() when
// flush() is called (by flush_due() once the oldest buffered frame is
// MUX_FLUSH_NS old, at close) or when it seeks (finalization), so a killed
// process loses at most the last 100 ms of frames written.
//
// mkvmuxer always writes DocType "webm" for WebM codecs. For a Matroska file
// the writer puts its own EBML header (DocType "matroska") first and maps
// mkvmuxer's positions past its header ("virtual") to the file ("real"):
// real = virtual - webm_header_len + own_header_len. mkvmuxer's own header
// bytes (virtual positions below webm_header_len) are dropped.
class FileWriter : public mkvmuxer::IMkvWriter {
public:
	FileWriter() {}
	~FileWriter() override
	{
		free(buf_);
		if (fd_ >= 0)
			close(fd_);
	}

	int open_file(const char *path, const char *doc_type, char *err, size_t errlen)
	{
		cap_ = 256 * 1024;
		buf_ = static_cast<uint8_t *>(malloc(cap_));
		if (!buf_) {
			util_strlcpy(err, "out of memory", errlen);
			return -1;
		}
		fd_ = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, UTIL_MEDIA_FILE_MODE);
		if (fd_ < 0) {
			snprintf(err, errlen, "cannot create '%s': %s", path, strerror(errno));
			return -1;
		}
		if (strcmp(doc_type, "webm") != 0) {
			// Our header goes first, at real offset 0.
			if (!mkvmuxer::WriteEbmlHeader(this, mkvmuxer::Segment::kDefaultDocTypeVersion,
						       doc_type)) {
				util_strlcpy(err, "cannot write the EBML header", errlen);
				return -1;
			}
			own_header_len_ = vpos_;
			skip_len_ = header_len("webm");
			vpos_ = 0;
		}
		return 0;
	}

	// mkvmuxer writes DocType "matroska" itself once a track's codec is
	// not a WebM one (Segment::DocTypeIsWebm): its header is then that
	// long. Called when such a track is added, before anything is written.
	void mkvmuxer_writes_matroska()
	{
		if (own_header_len_ > 0)
			skip_len_ = header_len("matroska");
	}

	// A failed write is not reported to mkvmuxer: libwebm 1.0.0.29 frees
	// queued frames it still holds when a write fails inside AddFrame
	// (Segment::WriteFramesLessThan), so destroying the Segment afterwards
	// frees them twice. The error is kept instead ("sticky"): later writes
	// are dropped, flush() fails, and the caller stops and repairs.
	mkvmuxer::int32 Write(const void *data, mkvmuxer::uint32 len) override
	{
		int64_t end = vpos_ + len;
		if (errno_ || put(data, len) < 0)
			vpos_ = end;
		return 0;
	}

	mkvmuxer::int64 Position() const override { return vpos_; }

	mkvmuxer::int32 Position(mkvmuxer::int64 position) override
	{
		flush(); // a failure is kept in errno_ (see Write)
		vpos_ = position;
		return 0;
	}

	bool Seekable() const override { return true; }

	// mkvmuxer writes a placeholder Duration of 1 ms that it overwrites when
	// it finalizes. Left in a crashed file it would tell players the
	// recording lasts 1 ms, so the placeholder goes to disk as an EBML Void
	// of the same 7 bytes (ID, size, 32-bit float); finalization then writes
	// the real Duration over it.
	void ElementStartNotify(mkvmuxer::uint64 id, mkvmuxer::int64 position) override
	{
		if (id == libwebm::kMkvDuration && !duration_voided_)
			duration_pos_ = position;
	}

	// Hands the buffered bytes to the kernel. Returns 0, or -1 when this or
	// an earlier write failed (errno_ says why; nothing more is written).
	int flush()
	{
		if (errno_) {
			len_ = 0;
			return -1;
		}
		if (len_ == 0)
			return 0;
		if (duration_pos_ >= 0 && !duration_voided_) {
			int64_t real = to_real(duration_pos_);
			if (real >= buf_start_ && real + 7 <= buf_start_ + static_cast<int64_t>(len_)) {
				static const uint8_t void7[7] = { 0xec, 0x85, 0, 0, 0, 0, 0 };
				memcpy(buf_ + (real - buf_start_), void7, sizeof(void7));
				duration_voided_ = true;
			}
		}
		if (pwrite_all(buf_, len_, buf_start_) < 0)
			return -1;
		len_ = 0;
		return 0;
	}

	// flush() when the buffer holds MUX_FLUSH_BYTES, or bytes buffered
	// MUX_FLUSH_NS ago, or the file holds nothing yet (its header and first
	// frame go out at once); else keeps them. Returns as flush().
	int flush_due()
	{
		if (errno_ || len_ == 0 || file_end_ == 0 || len_ >= MUX_FLUSH_BYTES ||
		    time_mono_ns() - buffered_ns_ >= MUX_FLUSH_NS)
			return flush();
		return 0;
	}

	int sync() { return fd_ >= 0 ? fdatasync(fd_) : 0; }
	uint64_t bytes() const
	{
		uint64_t pending = len_ ? static_cast<uint64_t>(buf_start_) + len_ : 0;
		return pending > file_end_ ? pending : file_end_;
	}
	int error() const { return errno_; }

private:
	// Buffers (or writes) 'len' bytes at the current position. Returns 0,
	// or -1 when a write to the file failed.
	int put(const void *data, mkvmuxer::uint32 len)
	{
		const uint8_t *p = static_cast<const uint8_t *>(data);
		if (vpos_ < skip_len_) {
			int64_t k = skip_len_ - vpos_;
			if (k > len)
				k = len;
			p += k;
			len -= static_cast<uint32_t>(k);
			vpos_ += k;
			if (len == 0)
				return 0;
		}
		int64_t real = to_real(vpos_);
		if (len_ > 0 && buf_start_ + static_cast<int64_t>(len_) != real && flush() < 0)
			return -1;
		if (len_ == 0)
			buf_start_ = real;
		if (len_ + len > cap_ && flush() < 0)
			return -1;
		if (len > cap_) {
			if (pwrite_all(p, len, real) < 0)
				return -1;
		} else {
			if (len_ == 0) {
				buf_start_ = real;
				buffered_ns_ = time_mono_ns();
			}
			memcpy(buf_ + len_, p, len);
			len_ += len;
		}
		vpos_ += len;
		return 0;
	}

	int64_t to_real(int64_t v) const { return v < skip_len_ ? v : v - skip_len_ + own_header_len_; }

	static int64_t header_len(const char *doc_type)
	{
		CountingWriter counter;
		mkvmuxer::WriteEbmlHeader(&counter, mkvmuxer::Segment::kDefaultDocTypeVersion, doc_type);
		return counter.Position();
	}

	int pwrite_all(const uint8_t *p, size_t n, int64_t off)
	{
		while (n > 0) {
			ssize_t w = pwrite(fd_, p, n, off);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				errno_ = errno;
				return -1;
			}
			p += w;
			n -= static_cast<size_t>(w);
			off += w;
		}
		if (static_cast<uint64_t>(off) > file_end_)
			file_end_ = static_cast<uint64_t>(off);
		return 0;
	}

	int fd_ = -1;
	uint8_t *buf_ = nullptr;
	size_t cap_ = 0, len_ = 0;
	int64_t buf_start_ = 0;
	int64_t buffered_ns_ = 0; // when the oldest buffered byte came
	int64_t vpos_ = 0;
	int64_t skip_len_ = 0, own_header_len_ = 0;
	uint64_t file_end_ = 0;
	int errno_ = 0;
	int64_t duration_pos_ = -1;
	bool duration_voided_ = false;
};

} // namespace

// The muxer's timestamp resolution: mkvmuxer's default TimecodeScale (1 ms);
// a block's timestamp is its pts truncated to it.
#define MUX_TICK_NS 1000000LL
#define MUX_MAX_TRACKS 16
#define MUX_INTERVALS 9 // video frame intervals the frame rate is judged from

// Matroska's CodecID for H.264 (access units in AVCC form, CodecPrivate avcC).
#define MUX_CODEC_ID_AVC "V_MPEG4/ISO/AVC"

// Timestamps the muxer had to move (process-wide, for /metrics).
static uint64_t mux_timestamp_fixes;

struct media_mux {
	FileWriter writer;
	mkvmuxer::Segment segment;
	bool webm = false;        // DocType webm: WebM codecs only
	bool has_video = false;
	uint64_t video_track = 0;
	int64_t last_pts_ns = 0;
	int64_t last_tick[MUX_MAX_TRACKS]; // per track, in MUX_TICK_NS; -1: none yet
	bool video[MUX_MAX_TRACKS] = {};
	int64_t last_in_ns[MUX_MAX_TRACKS] = {};  // video: the pts asked for last
	int64_t intervals[MUX_MAX_TRACKS][MUX_INTERVALS] = {}; // video: the last intervals; 0: none
	unsigned nintervals[MUX_MAX_TRACKS] = {};
	int64_t grid_fps[MUX_MAX_TRACKS] = {};    // video: the frame rate of the grid; 0: none
	int64_t origin_tick = -1;                 // the file's first timestamp
	int64_t last_asked_ns = 0;                // the newest pts asked for, before the grid
	uint64_t fixes = 0;
	bool wrote_frame = false; // the header (Tracks) is on disk
	char error[200] = "";
};

static void mux_set_error(struct media_mux *m, const char *what)
{
	if (m->writer.error())
		snprintf(m->error, sizeof(m->error), "%s: %s", what, strerror(m->writer.error()));
	else
		util_strlcpy(m->error, what, sizeof(m->error));
}

extern "C" const char *media_mux_codec_id(enum media_codec codec)
{
	switch (codec) {
	case MEDIA_CODEC_VP8: return mkvmuxer::Tracks::kVp8CodecId;
	case MEDIA_CODEC_VP9: return mkvmuxer::Tracks::kVp9CodecId;
	case MEDIA_CODEC_OPUS: return mkvmuxer::Tracks::kOpusCodecId;
	case MEDIA_CODEC_H264: return MUX_CODEC_ID_AVC;
	default: return nullptr;
	}
}

// Creates the file and a Segment in file mode: clusters are written as they
// fill (in order, never rewritten except for their size), while the segment
// size, Duration, SeekHead and Cues are completed at close().
static struct media_mux *mux_webm_open(const char *path, const char *doc_type, char *err,
				       size_t errlen)
{
	if (strcmp(doc_type, "webm") != 0 && strcmp(doc_type, "matroska") != 0) {
		snprintf(err, errlen, "unknown document type '%s'", doc_type);
		return nullptr;
	}
	struct media_mux *m = new (std::nothrow) media_mux;
	if (!m) {
		util_strlcpy(err, "out of memory", errlen);
		return nullptr;
	}
	for (int64_t &t : m->last_tick)
		t = -1;
	if (m->writer.open_file(path, doc_type, err, errlen) < 0)
		goto fail;
	if (!m->segment.Init(&m->writer)) {
		util_strlcpy(err, "mkvmuxer: segment init failed", errlen);
		goto fail;
	}
	m->segment.set_mode(mkvmuxer::Segment::kFile);
	m->segment.OutputCues(true);
	m->segment.set_max_cluster_duration(1000000000ULL);
	m->segment.set_estimate_file_duration(true);
	m->segment.GetSegmentInfo()->set_writing_app("edgerec");
	m->segment.GetSegmentInfo()->set_muxing_app("edgerec (libwebm)");
	m->webm = strcmp(doc_type, "webm") == 0;
	return m;
fail:
	delete m;
	return nullptr;
}

static int mux_webm_add_track(struct media_mux *m, const struct media_mux_track *t)
{
	const char *codec_id = media_mux_codec_id(t->codec);
	if (!codec_id) {
		util_strlcpy(m->error, "codec cannot be muxed", sizeof(m->error));
		return -1;
	}
	uint64_t num;
	mkvmuxer::Track *track;
	if (t->codec == MEDIA_CODEC_H264) {
		if (m->webm) {
			util_strlcpy(m->error, "WebM cannot hold H.264 (record mkv or mp4)", sizeof(m->error));
			return -1;
		}
		m->writer.mkvmuxer_writes_matroska();
	}
	if (t->kind == MEDIA_KIND_VIDEO) {
		num = m->segment.AddVideoTrack(t->width, t->height, 0);
		mkvmuxer::VideoTrack *vt =
			num ? static_cast<mkvmuxer::VideoTrack *>(m->segment.GetTrackByNumber(num)) : nullptr;
		if (!vt)
			goto fail;
		if (t->fps > 0)
			vt->set_frame_rate(t->fps);
		track = vt;
		m->has_video = true;
		m->video_track = num;
		if (num < MUX_MAX_TRACKS)
			m->video[num] = true;
		m->segment.CuesTrack(num);
	} else {
		num = m->segment.AddAudioTrack(t->sample_rate, t->channels, 0);
		track = num ? m->segment.GetTrackByNumber(num) : nullptr;
		if (!track)
			goto fail;
		if (t->codec_delay_ns > 0)
			track->set_codec_delay(static_cast<uint64_t>(t->codec_delay_ns));
		if (t->seek_preroll_ns > 0)
			track->set_seek_pre_roll(static_cast<uint64_t>(t->seek_preroll_ns));
		if (!m->has_video)
			m->segment.CuesTrack(num);
	}
	track->set_codec_id(codec_id);
	if (t->codec_private_len > 0 &&
	    !track->SetCodecPrivate(t->codec_private, t->codec_private_len))
		goto fail;
	return static_cast<int>(num);
fail:
	util_strlcpy(m->error, "mkvmuxer: cannot add track", sizeof(m->error));
	return -1;
}

extern "C" uint64_t media_mux_timestamp_fixes(void)
{
	return __atomic_load_n(&mux_timestamp_fixes, __ATOMIC_RELAXED);
}

// Readers that assume a constant frame rate (ffmpeg rescales video to
// 1/fps when it decodes) round each timestamp to their frame grid; two frames
// a whole interval apart can land in one grid slot when the 1 ms truncation
// moved the first to just past a slot's midpoint and the second to just
// before the next one. Each video frame therefore goes to the millisecond
// (the one below its exact time, or the one above) whose grid slot is the
// slot of its exact time (one millisecond later at most). Pushing a frame
// into the next slot instead would cascade whenever frames come slightly
// faster than the grid (a drift correction slewing back) and delay them all.
// The grid is the frame rate the frames themselves show (the median of the
// last intervals, to the nearest whole fps, so a lost frame or a gap does
// not change it), counted from the file's first timestamp as readers do.
static int64_t mux_grid_slot(int64_t rel_ns, int64_t fps)
{
	return (rel_ns * fps + 500000000LL) / 1000000000LL;
}

// The whole frame rate of the median of 'n' intervals, or 0 when it is not
// near one.
static int64_t mux_grid_fps(const int64_t *intervals, unsigned n)
{
	int64_t sorted[MUX_INTERVALS];
	memcpy(sorted, intervals, n * sizeof(sorted[0]));
	std::sort(sorted, sorted + n);
	int64_t iv = sorted[n / 2];
	int64_t fps = (1000000000LL + iv / 2) / iv;
	if (fps < 2 || llabs(fps * iv - 1000000000LL) > 20000000LL)
		return 0;
	return fps;
}

static int64_t mux_on_frame_grid(struct media_mux *m, int track, int64_t pts_ns)
{
	int64_t last = m->last_in_ns[track];
	m->last_in_ns[track] = pts_ns;
	if (last > 0 && pts_ns - last >= 5 * MUX_TICK_NS && pts_ns - last <= 250 * MUX_TICK_NS) {
		m->intervals[track][m->nintervals[track]++ % MUX_INTERVALS] = pts_ns - last;
		unsigned n = m->nintervals[track] < MUX_INTERVALS ? m->nintervals[track] : MUX_INTERVALS;
		m->grid_fps[track] = n < 3 ? 0 : mux_grid_fps(m->intervals[track], n);
	}
	int64_t fps = m->grid_fps[track];
	if (fps == 0 || m->origin_tick < 0)
		return pts_ns; // no grid to keep to (yet)
	int64_t rel = pts_ns - m->origin_tick * MUX_TICK_NS;
	if (rel < 0)
		return pts_ns;
	int64_t out = rel / MUX_TICK_NS * MUX_TICK_NS;
	if (mux_grid_slot(out, fps) == mux_grid_slot(rel, fps))
		return pts_ns;
	return out + MUX_TICK_NS + m->origin_tick * MUX_TICK_NS;
}

// The last word on timestamps: across tracks they must not decrease
// (mkvmuxer refuses that), and within a track every frame must land on a
// later 1 ms tick than the one before it, or demuxers see two frames with
// one timestamp ("non monotonically increasing dts"). A frame that breaks
// either is moved to the earliest time that keeps both, and counted. The
// sources' clock mappings make this rare; here it is guaranteed.
static int64_t mux_fix_pts(struct media_mux *m, int track, int64_t pts_ns)
{
	bool known = track > 0 && track < MUX_MAX_TRACKS;
	int64_t pts = pts_ns;
	// Only behind a frame the grid moved later: follow it, uncounted.
	bool grid = pts < m->last_pts_ns && pts >= m->last_asked_ns;
	if (pts < m->last_pts_ns)
		pts = m->last_pts_ns;
	if (pts_ns > m->last_asked_ns)
		m->last_asked_ns = pts_ns;
	if (known && m->last_tick[track] >= 0 && pts / MUX_TICK_NS <= m->last_tick[track]) {
		pts = (m->last_tick[track] + 1) * MUX_TICK_NS;
		grid = false;
	}
	if (pts != pts_ns && !grid) {
		if (m->fixes++ == 0)
			LOG_WARN(&log_mux, "track %d: timestamp %.3f ms moved to %.3f ms (not after the previous "
				 "frame); further moves in this file are only counted", track, pts_ns / 1e6, pts / 1e6);
		__atomic_add_fetch(&mux_timestamp_fixes, 1, __ATOMIC_RELAXED);
	} else if (known && m->video[track] && !grid) {
		pts = mux_on_frame_grid(m, track, pts);
	}
	if (m->origin_tick < 0)
		m->origin_tick = pts / MUX_TICK_NS;
	if (known)
		m->last_tick[track] = pts / MUX_TICK_NS;
	return pts;
}

static int mux_webm_write(struct media_mux *m, int track, const uint8_t *data, size_t len,
			  int64_t pts_ns, bool keyframe)
{
	pts_ns = mux_fix_pts(m, track, pts_ns < 0 ? 0 : pts_ns);
	if (!m->segment.AddFrame(data, len, static_cast<uint64_t>(track),
				 static_cast<uint64_t>(pts_ns), keyframe)) {
		mux_set_error(m, "mkvmuxer: cannot add frame");
		return -1;
	}
	m->last_pts_ns = pts_ns;
	m->wrote_frame = true;
	if (m->writer.flush_due() < 0) {
		mux_set_error(m, "write failed");
		return -1;
	}
	return 0;
}

static int mux_webm_close(struct media_mux *m, int64_t duration_ns, char *err, size_t errlen)
{
	int ret = 0;
	if (duration_ns > 0) {
		double scale = static_cast<double>(m->segment.GetSegmentInfo()->timecode_scale());
		m->segment.set_duration(static_cast<double>(duration_ns) / scale);
	}
	if (!m->segment.Finalize()) {
		mux_set_error(m, "mkvmuxer: finalize failed");
		util_strlcpy(err, m->error, errlen);
		ret = -1;
	}
	if (m->writer.flush() < 0 || m->writer.sync() < 0) {
		mux_set_error(m, "write failed");
		util_strlcpy(err, m->error, errlen);
		ret = -1;
	}
	delete m;
	return ret;
}

static int mux_webm_tick(struct media_mux *m)
{
	if (m->writer.flush_due() < 0) {
		mux_set_error(m, "write failed");
		return -1;
	}
	return 0;
}

static void mux_webm_abandon(struct media_mux *m)
{
	m->writer.flush();
	delete m;
}

static uint64_t mux_webm_bytes(const struct media_mux *m)
{
	return m->writer.bytes();
}

static const char *mux_webm_last_error(const struct media_mux *m)
{
	return m->error;
}

static int mux_webm_last_errno(const struct media_mux *m)
{
	return m->writer.error();
}

static int mux_webm_set_video_size(struct media_mux *m, int track, int width, int height)
{
	if (width <= 0 || height <= 0 || m->wrote_frame)
		return -1;
	mkvmuxer::Track *t = m->segment.GetTrackByNumber(static_cast<uint64_t>(track));
	if (!t || t->type() != mkvmuxer::Tracks::kVideo)
		return -1;
	mkvmuxer::VideoTrack *vt = static_cast<mkvmuxer::VideoTrack *>(t);
	vt->set_width(static_cast<uint64_t>(width));
	vt->set_height(static_cast<uint64_t>(height));
	return 0;
}

static int mux_webm_set_codec_private(struct media_mux *m, int track, const uint8_t *data, size_t len)
{
	if (!data || len == 0 || m->wrote_frame)
		return -1;
	mkvmuxer::Track *t = m->segment.GetTrackByNumber(static_cast<uint64_t>(track));
	if (!t || !t->SetCodecPrivate(data, len))
		return -1;
	return 0;
}

extern "C" const struct media_mux_driver media_mux_webm = {
	"webm",
	mux_webm_open,
	mux_webm_add_track,
	mux_webm_write,
	mux_webm_close,
	mux_webm_tick,
	mux_webm_abandon,
	mux_webm_bytes,
	mux_webm_last_error,
	mux_webm_last_errno,
	mux_webm_set_video_size,
	mux_webm_set_codec_private,
};

// ---------------------------------------------------------------------------
// Reading back: probe and repair.

namespace {

// An opened file: the EBML header and the segment with its headers parsed.
// Clusters are loaded one at a time by next_cluster(); a damaged or cut tail
// ends the walk instead of failing it.
struct ParsedFile {
	mkvparser::MkvReader reader;
	mkvparser::Segment *segment = nullptr;
	char doc_type[16] = "";

	~ParsedFile() { delete segment; }

	int open(const char *path, char *err, size_t errlen)
	{
		if (reader.Open(path) != 0) {
			snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno ? errno : ENOENT));
			return -1;
		}
		mkvparser::EBMLHeader header;
		long long pos = 0;
		if (header.Parse(&reader, pos) != 0) {
			snprintf(err, errlen, "'%s' is not a Matroska/WebM file", path);
			return -1;
		}
		util_strlcpy(doc_type, header.m_docType ? header.m_docType : "", sizeof(doc_type));
		if (mkvparser::Segment::CreateInstance(&reader, pos, segment) != 0 || !segment) {
			snprintf(err, errlen, "'%s' has no readable segment", path);
			return -1;
		}
		if (segment->ParseHeaders() != 0 || !segment->GetInfo() || !segment->GetTracks()) {
			snprintf(err, errlen, "'%s' has no readable segment headers", path);
			return -1;
		}
		return 0;
	}
};

// Calls 'fn(block, cluster)' for every block in file order until the end
// or the first damaged element. Returns the number of blocks visited.
template <typename Fn>
uint64_t walk_blocks(ParsedFile &f, Fn fn)
{
	uint64_t n = 0;
	mkvparser::Segment *seg = f.segment;
	for (;;) {
		long long pos;
		long len;
		long st = seg->LoadCluster(pos, len);
		if (st != 0)
			break; // no more clusters, or a cut/damaged one
	}
	for (const mkvparser::Cluster *c = seg->GetFirst(); c && !c->EOS(); c = seg->GetNext(c)) {
		const mkvparser::BlockEntry *be = nullptr;
		if (c->GetFirst(be) < 0)
			break;
		while (be && !be->EOS()) {
			const mkvparser::Block *b = be->GetBlock();
			if (!b || !fn(b, c))
				return n;
			n++;
			if (c->GetNext(be, be) < 0)
				return n;
		}
	}
	return n;
}

} // namespace

extern "C" int media_file_probe(const char *path, struct media_file_info *info, char *err,
				size_t errlen)
{
	memset(info, 0, sizeof(*info));
	ParsedFile f;
	if (f.open(path, err, errlen) < 0)
		return -1;
	util_strlcpy(info->doc_type, f.doc_type, sizeof(info->doc_type));
	const mkvparser::SegmentInfo *si = f.segment->GetInfo();
	if (si->GetDuration() > 0)
		info->duration_ns = si->GetDuration();
	const mkvparser::Tracks *tracks = f.segment->GetTracks();
	long long video_num = -1, audio_num = -1;
	for (unsigned long i = 0; i < tracks->GetTracksCount(); i++) {
		const mkvparser::Track *t = tracks->GetTrackByIndex(i);
		if (!t)
			continue;
		if (t->GetType() == mkvparser::Track::kVideo && video_num < 0) {
			const mkvparser::VideoTrack *vt = static_cast<const mkvparser::VideoTrack *>(t);
			video_num = t->GetNumber();
			util_strlcpy(info->video_codec, t->GetCodecId() ? t->GetCodecId() : "",
				     sizeof(info->video_codec));
			info->width = static_cast<int>(vt->GetWidth());
			info->height = static_cast<int>(vt->GetHeight());
		} else if (t->GetType() == mkvparser::Track::kAudio && audio_num < 0) {
			const mkvparser::AudioTrack *at = static_cast<const mkvparser::AudioTrack *>(t);
			audio_num = t->GetNumber();
			util_strlcpy(info->audio_codec, t->GetCodecId() ? t->GetCodecId() : "",
				     sizeof(info->audio_codec));
			info->sample_rate = static_cast<int>(at->GetSamplingRate());
			info->channels = static_cast<int>(at->GetChannels());
		}
	}
	walk_blocks(f, [&](const mkvparser::Block *b, const mkvparser::Cluster *c) {
		long long t = b->GetTime(c);
		if (t > info->last_timestamp_ns)
			info->last_timestamp_ns = t;
		if (b->GetTrackNumber() == video_num)
			info->video_frames += static_cast<uint64_t>(b->GetFrameCount());
		else if (b->GetTrackNumber() == audio_num)
			info->audio_frames += static_cast<uint64_t>(b->GetFrameCount());
		return true;
	});
	const mkvparser::Cues *cues = f.segment->GetCues();
	if (cues) {
		while (!cues->DoneParsing() && cues->LoadCuePoint())
			;
		info->has_cues = cues->GetCount() > 0;
	}
	return 0;
}

// Finalizes a live-written file where it lies, for when there is no room
// for a copy (the disk is full): the file is cut after its last complete
// block (a frame cut by the failed write would make players stop with
// "ended prematurely"; the open cluster and the segment have unknown size,
// so nothing else points past the cut), and the Duration goes into the
// 7-byte Void the writer left in its place. No Cues are added: players
// seek without them. Returns 0 or -1 with 'err'.
static int repair_in_place(const char *path, int64_t *duration_ns, char *err, size_t errlen)
{
	ParsedFile f;
	struct stat sb;
	if (stat(path, &sb) != 0) {
		snprintf(err, errlen, "cannot stat '%s': %s", path, strerror(errno));
		return -1;
	}
	if (f.open(path, err, errlen) < 0)
		return -1;
	long long cut = 0, last_t = 0;
	uint64_t frames = 0;
	walk_blocks(f, [&](const mkvparser::Block *b, const mkvparser::Cluster *c) {
		for (int i = 0; i < b->GetFrameCount(); i++) {
			const mkvparser::Block::Frame &fr = b->GetFrame(i);
			if (fr.len <= 0 || fr.pos < 0 || fr.pos + fr.len > sb.st_size)
				return false;
		}
		const mkvparser::Block::Frame &last = b->GetFrame(b->GetFrameCount() - 1);
		cut = last.pos + last.len;
		frames += static_cast<uint64_t>(b->GetFrameCount());
		if (b->GetTime(c) > last_t)
			last_t = b->GetTime(c);
		return true;
	});
	if (frames == 0) {
		snprintf(err, errlen, "'%s' holds no complete frame", path);
		return -1;
	}
	// The Void the writer put where Duration goes: the first 7-byte Void
	// among the Info element's children.
	const mkvparser::SegmentInfo *si = f.segment->GetInfo();
	long long pos = si->m_start, stop = si->m_start + si->m_size, void_pos = -1;
	while (pos < stop && void_pos < 0) {
		long len;
		long long id = mkvparser::ReadID(&f.reader, pos, len);
		if (id < 0)
			break;
		long long size_pos = pos + len;
		long long size = mkvparser::ReadUInt(&f.reader, size_pos, len);
		if (size < 0)
			break;
		if (id == libwebm::kMkvVoid && size == 5 && size_pos + len - pos == 2)
			void_pos = pos;
		pos = size_pos + len + size;
	}
	double scale = si->GetTimeCodeScale() > 0 ? static_cast<double>(si->GetTimeCodeScale()) : 1e6;
	int fd = ::open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open '%s' for writing: %s", path, strerror(errno));
		return -1;
	}
	int ret = -1;
	if (ftruncate(fd, cut) != 0) {
		snprintf(err, errlen, "cannot cut '%s': %s", path, strerror(errno));
		goto out;
	}
	if (void_pos >= 0) {
		// Duration (0x4489), size 4, big-endian float in timecode units.
		float d = static_cast<float>(static_cast<double>(last_t) / scale);
		uint32_t bits;
		memcpy(&bits, &d, sizeof(bits));
		uint8_t el[7] = { 0x44, 0x89, 0x84, static_cast<uint8_t>(bits >> 24), static_cast<uint8_t>(bits >> 16),
				  static_cast<uint8_t>(bits >> 8), static_cast<uint8_t>(bits) };
		if (pwrite(fd, el, sizeof(el), void_pos) != static_cast<ssize_t>(sizeof(el))) {
			snprintf(err, errlen, "cannot write the Duration of '%s': %s", path, strerror(errno));
			goto out;
		}
	}
	if (fdatasync(fd) != 0) {
		snprintf(err, errlen, "cannot sync '%s': %s", path, strerror(errno));
		goto out;
	}
	if (duration_ns)
		*duration_ns = last_t;
	LOG_INFO(&log_mux, "finalized %s in place: %llu frames, cut at %lld of %lld bytes%s", path,
		 static_cast<unsigned long long>(frames), cut, static_cast<long long>(sb.st_size),
		 void_pos < 0 ? " (no Duration slot)" : "");
	ret = 0;
out:
	close(fd);
	return ret;
}

static bool errno_is_disk_full(int e)
{
	return e == ENOSPC || e == EDQUOT;
}

// Rewrites every readable frame of 'path' into 'path.repair' through the
// muxer, finalizes that file and renames it over the original. When the
// disk has no room for the copy, the file is finalized in place instead.
extern "C" int media_file_repair(const char *path, int64_t *duration_ns, char *err, size_t errlen)
{
	char tmp[4096];
	int ret = -1;
	struct media_mux *out = nullptr;
	int track_map[128] = { 0 };
	uint64_t written = 0;
	int64_t last_end = 0;
	bool failed = false;
	unsigned char *frame = nullptr;
	size_t frame_cap = 0;
	ParsedFile f;
	const mkvparser::Tracks *tracks;

	if (snprintf(tmp, sizeof(tmp), "%s.repair", path) >= static_cast<int>(sizeof(tmp))) {
		util_strlcpy(err, "path too long", errlen);
		return -1;
	}
	if (f.open(path, err, errlen) < 0)
		return -1;
	{
		// A copy needs about the file's size again: without it, do not
		// fill the disk only to give up.
		struct stat sb;
		struct statvfs vs;
		if (stat(path, &sb) == 0 && statvfs(path, &vs) == 0 &&
		    static_cast<unsigned long long>(vs.f_bavail) * vs.f_frsize <
			    static_cast<unsigned long long>(sb.st_size) + 64 * 1024) {
			LOG_WARN(&log_mux, "no room to repair %s through a copy; finalizing it in place", path);
			return repair_in_place(path, duration_ns, err, errlen);
		}
	}
	out = mux_webm_open(tmp, strcmp(f.doc_type, "webm") == 0 ? "webm" : "matroska", err, errlen);
	if (!out) {
		if (errno_is_disk_full(errno)) {
			unlink(tmp);
			return repair_in_place(path, duration_ns, err, errlen);
		}
		return -1;
	}
	tracks = f.segment->GetTracks();
	for (unsigned long i = 0; i < tracks->GetTracksCount(); i++) {
		const mkvparser::Track *t = tracks->GetTrackByIndex(i);
		if (!t || t->GetNumber() <= 0 || t->GetNumber() >= 128)
			continue;
		struct media_mux_track mt;
		memset(&mt, 0, sizeof(mt));
		const char *id = t->GetCodecId() ? t->GetCodecId() : "";
		if (strcmp(id, "V_VP8") == 0)
			mt.codec = MEDIA_CODEC_VP8;
		else if (strcmp(id, "V_VP9") == 0)
			mt.codec = MEDIA_CODEC_VP9;
		else if (strcmp(id, "A_OPUS") == 0)
			mt.codec = MEDIA_CODEC_OPUS;
		else if (strcmp(id, MUX_CODEC_ID_AVC) == 0)
			mt.codec = MEDIA_CODEC_H264;
		else
			continue;
		if (t->GetType() == mkvparser::Track::kVideo) {
			const mkvparser::VideoTrack *vt = static_cast<const mkvparser::VideoTrack *>(t);
			mt.kind = MEDIA_KIND_VIDEO;
			mt.width = static_cast<int>(vt->GetWidth());
			mt.height = static_cast<int>(vt->GetHeight());
			mt.fps = vt->GetFrameRate();
		} else {
			const mkvparser::AudioTrack *at = static_cast<const mkvparser::AudioTrack *>(t);
			mt.kind = MEDIA_KIND_AUDIO;
			mt.sample_rate = static_cast<int>(at->GetSamplingRate());
			mt.channels = static_cast<int>(at->GetChannels());
		}
		size_t plen = 0;
		mt.codec_private = t->GetCodecPrivate(plen);
		mt.codec_private_len = plen;
		mt.codec_delay_ns = static_cast<int64_t>(t->GetCodecDelay());
		mt.seek_preroll_ns = static_cast<int64_t>(t->GetSeekPreRoll());
		int n = mux_webm_add_track(out, &mt);
		if (n < 0) {
			util_strlcpy(err, out->error, errlen);
			goto fail;
		}
		track_map[t->GetNumber()] = n;
	}
	walk_blocks(f, [&](const mkvparser::Block *b, const mkvparser::Cluster *c) {
		long long num = b->GetTrackNumber();
		if (num <= 0 || num >= 128 || track_map[num] == 0)
			return true;
		long long t = b->GetTime(c);
		for (int i = 0; i < b->GetFrameCount(); i++) {
			const mkvparser::Block::Frame &fr = b->GetFrame(i);
			if (fr.len <= 0 || fr.pos < 0)
				return false;
			if (static_cast<size_t>(fr.len) > frame_cap) {
				unsigned char *nb = static_cast<unsigned char *>(realloc(frame, fr.len));
				if (!nb)
					return false;
				frame = nb;
				frame_cap = static_cast<size_t>(fr.len);
			}
			if (fr.Read(&f.reader, frame) != 0)
				return false; // cut inside this frame: stop here
			if (mux_webm_write(out, track_map[num], frame, static_cast<size_t>(fr.len), t,
					   b->IsKey()) < 0) {
				failed = true;
				return false;
			}
			written++;
			if (t > last_end)
				last_end = t;
		}
		return true;
	});
	if (failed) {
		util_strlcpy(err, out->error, errlen);
		goto fail;
	}
	if (written == 0) {
		snprintf(err, errlen, "'%s' holds no readable frames", path);
		goto fail;
	}
	{
		struct media_mux *m = out;
		out = nullptr;
		if (mux_webm_close(m, 0, err, errlen) < 0)
			goto fail;
	}
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "cannot replace '%s': %s", path, strerror(errno));
		goto fail;
	}
	{
		struct media_file_info info;
		char perr[200];
		if (duration_ns)
			*duration_ns = media_file_probe(path, &info, perr, sizeof(perr)) == 0 ?
					       info.duration_ns : last_end;
	}
	LOG_INFO(&log_mux, "repaired %s: %llu frames", path, static_cast<unsigned long long>(written));
	ret = 0;
fail:
	{
		bool full = out ? errno_is_disk_full(out->writer.error()) : errno_is_disk_full(errno);
		if (out)
			mux_webm_abandon(out);
		if (ret < 0)
			unlink(tmp);
		free(frame);
		if (ret < 0 && full) {
			LOG_WARN(&log_mux, "no room to repair %s through a copy (%s); finalizing it in place", path, err);
			ret = repair_in_place(path, duration_ns, err, errlen);
		}
	}
	return ret;
}
