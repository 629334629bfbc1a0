/* media_src_file: the file source: raw video from a YUV4MPEG2 (.y4m) file
 * and/or PCM audio from a WAV file, delivered as raw frames.
 *
 * Args: "video=PATH" and/or "audio=PATH". Y4M must be 4:2:0 progressive;
 * WAV must be 16-bit PCM. A file that ends inside a frame is an error
 * ("truncated"), not an end of stream. Paced to the wall clock when
 * params.realtime is set. */
#include "media_source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"

static struct log_handle log_file = LOG_HANDLE("media/src_file");

#define FILE_AUDIO_CHUNK_MS 10

struct file_priv {
	FILE *video, *audio;
	int video_stream, audio_stream;  /* -1 when absent */
	int width, height, fps_num, fps_den;
	size_t frame_size;
	uint64_t video_n;
	bool video_eof, audio_eof;
	int rate, channels;
	uint64_t audio_sample;
	uint64_t audio_left;   /* bytes of the data chunk left (UINT64_MAX: to EOF) */
	bool realtime;
	int64_t duration_ns, start_mono_ns;
	char video_path[512];
};

/* Parses the Y4M stream header. */
static int file_open_y4m(struct file_priv *f, const char *path, char *err, size_t errlen)
{
	char line[512];
	f->video = fopen(path, "rb");
	if (!f->video) {
		snprintf(err, errlen, "cannot open video '%s': %s", path, strerror(errno));
		return -1;
	}
	util_strlcpy(f->video_path, path, sizeof(f->video_path));
	if (!fgets(line, sizeof(line), f->video) || strncmp(line, "YUV4MPEG2 ", 10) != 0 ||
	    !strchr(line, '\n')) {
		snprintf(err, errlen, "'%s' is not a YUV4MPEG2 file", path);
		return -1;
	}
	f->fps_num = 0;
	f->fps_den = 1;
	char *save = NULL;
	for (char *tok = strtok_r(line + 10, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		switch (tok[0]) {
		case 'W': f->width = atoi(tok + 1); break;
		case 'H': f->height = atoi(tok + 1); break;
		case 'F':
			if (sscanf(tok + 1, "%d:%d", &f->fps_num, &f->fps_den) != 2)
				f->fps_num = 0;
			break;
		case 'I':
			if (tok[1] != 'p' && tok[1] != '?') {
				snprintf(err, errlen, "'%s': interlaced Y4M is not supported", path);
				return -1;
			}
			break;
		case 'C':
			if (strncmp(tok + 1, "420", 3) != 0) {
				snprintf(err, errlen, "'%s': colour space %s is not supported (needs 4:2:0)",
					 path, tok + 1);
				return -1;
			}
			break;
		default: break;
		}
	}
	if (f->width < 16 || f->height < 16 || f->width > 8192 || f->height > 8192 ||
	    (f->width & 1) || (f->height & 1)) {
		snprintf(err, errlen, "'%s': unsupported size %dx%d (even, 16..8192)", path, f->width, f->height);
		return -1;
	}
	if (f->fps_num <= 0 || f->fps_den <= 0 || f->fps_num / f->fps_den > 240) {
		snprintf(err, errlen, "'%s': missing or bad frame rate", path);
		return -1;
	}
	f->frame_size = (size_t)f->width * f->height * 3 / 2;
	return 0;
}

static uint32_t file_le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t file_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Parses the WAV header up to the start of the data chunk. */
static int file_open_wav(struct file_priv *f, const char *path, char *err, size_t errlen)
{
	uint8_t hdr[12], ck[8], fmt[40];
	bool have_fmt = false;
	f->audio = fopen(path, "rb");
	if (!f->audio) {
		snprintf(err, errlen, "cannot open audio '%s': %s", path, strerror(errno));
		return -1;
	}
	if (fread(hdr, 1, 12, f->audio) != 12 || memcmp(hdr, "RIFF", 4) || memcmp(hdr + 8, "WAVE", 4)) {
		snprintf(err, errlen, "'%s' is not a WAV file", path);
		return -1;
	}
	for (;;) {
		if (fread(ck, 1, 8, f->audio) != 8) {
			snprintf(err, errlen, "'%s': no data chunk", path);
			return -1;
		}
		uint32_t size = file_le32(ck + 4);
		if (memcmp(ck, "fmt ", 4) == 0) {
			if (size < 16 || size > sizeof(fmt) || fread(fmt, 1, size, f->audio) != size) {
				snprintf(err, errlen, "'%s': bad fmt chunk", path);
				return -1;
			}
			uint16_t tag = file_le16(fmt);
			if (tag == 0xfffe && size >= 26)
				tag = file_le16(fmt + 24); /* WAVE_FORMAT_EXTENSIBLE: the sub-format */
			f->channels = file_le16(fmt + 2);
			f->rate = (int)file_le32(fmt + 4);
			if (tag != 1 || file_le16(fmt + 14) != 16) {
				snprintf(err, errlen, "'%s': only 16-bit PCM WAV is supported", path);
				return -1;
			}
			if (f->channels < 1 || f->channels > 2 || f->rate < 8000 || f->rate > 192000) {
				snprintf(err, errlen, "'%s': unsupported %d Hz x %d channels", path, f->rate, f->channels);
				return -1;
			}
			have_fmt = true;
			if (size & 1)
				fgetc(f->audio);
		} else if (memcmp(ck, "data", 4) == 0) {
			if (!have_fmt) {
				snprintf(err, errlen, "'%s': data before fmt", path);
				return -1;
			}
			f->audio_left = (size == 0 || size == 0xffffffffu) ? UINT64_MAX : size;
			return 0;
		} else if (fseek(f->audio, (long)size + (size & 1), SEEK_CUR) != 0) {
			snprintf(err, errlen, "'%s': truncated chunk", path);
			return -1;
		}
	}
}

static void file_close(struct media_source *src)
{
	struct file_priv *f = src->priv;
	if (!f)
		return;
	if (f->video)
		fclose(f->video);
	if (f->audio)
		fclose(f->audio);
	free(f);
	src->priv = NULL;
}

static int file_open(struct media_source *src, const struct media_source_params *p,
		     char *err, size_t errlen)
{
	char vpath[512] = "", apath[512] = "";
	struct file_priv *f = calloc(1, sizeof(*f));
	if (!f) {
		util_strlcpy(err, "out of memory", errlen);
		return -1;
	}
	src->priv = f;
	f->video_stream = f->audio_stream = -1;
	media_source_arg(p->args, "video", vpath, sizeof(vpath));
	media_source_arg(p->args, "audio", apath, sizeof(apath));
	if (!vpath[0] && !apath[0]) {
		util_strlcpy(err, "file source: give video=PATH.y4m and/or audio=PATH.wav", errlen);
		goto fail;
	}
	if (vpath[0]) {
		if (file_open_y4m(f, vpath, err, errlen) < 0)
			goto fail;
		f->video_stream = src->nb_streams++;
		src->streams[f->video_stream] = (struct media_stream_info){
			.kind = MEDIA_KIND_VIDEO, .codec = MEDIA_CODEC_I420,
			.width = f->width, .height = f->height,
			.fps_num = f->fps_num, .fps_den = f->fps_den,
		};
	} else {
		f->video_eof = true;
	}
	if (apath[0]) {
		if (file_open_wav(f, apath, err, errlen) < 0)
			goto fail;
		f->audio_stream = src->nb_streams++;
		src->streams[f->audio_stream] = (struct media_stream_info){
			.kind = MEDIA_KIND_AUDIO, .codec = MEDIA_CODEC_S16,
			.sample_rate = f->rate, .channels = f->channels,
		};
	} else {
		f->audio_eof = true;
	}
	f->realtime = p->realtime;
	f->duration_ns = p->duration_ns;
	f->start_mono_ns = time_mono_ns();
	LOG_DEBUG(&log_file, "video '%s' %dx%d %d/%d, audio '%s' %d Hz x %d", vpath, f->width,
		  f->height, f->fps_num, f->fps_den, apath, f->rate, f->channels);
	return 0;
fail:
	file_close(src);
	src->nb_streams = 0;
	return -1;
}

/* Presentation time of video frame 'n'. */
static int64_t file_video_pts(const struct file_priv *f, uint64_t n)
{
	return (int64_t)(n * (uint64_t)f->fps_den * (uint64_t)TIME_NS_PER_SEC / (uint64_t)f->fps_num);
}

/* Reads the next Y4M frame. Returns OK, EOF or ERROR. */
static int file_read_video(struct media_source *src, struct file_priv *f, struct media_packet *pkt)
{
	char line[256];
	if (!fgets(line, sizeof(line), f->video)) {
		if (ferror(f->video)) {
			snprintf(src->err, sizeof(src->err), "reading '%.200s': %s", f->video_path, strerror(errno));
			return MEDIA_SOURCE_ERROR;
		}
		return MEDIA_SOURCE_EOF;
	}
	if (strncmp(line, "FRAME", 5) != 0 || !strchr(line, '\n')) {
		snprintf(src->err, sizeof(src->err), "'%.200s': bad frame header at frame %llu (truncated Y4M?)",
			 f->video_path, (unsigned long long)f->video_n);
		return MEDIA_SOURCE_ERROR;
	}
	struct buf *b = buf_new(f->frame_size);
	if (!b) {
		util_strlcpy(src->err, "out of memory", sizeof(src->err));
		return MEDIA_SOURCE_ERROR;
	}
	size_t got = fread(b->data, 1, f->frame_size, f->video);
	if (got != f->frame_size) {
		snprintf(src->err, sizeof(src->err), "truncated Y4M '%.200s': frame %llu has %zu of %zu bytes",
			 f->video_path, (unsigned long long)f->video_n, got, f->frame_size);
		buf_unref(b);
		return MEDIA_SOURCE_ERROR;
	}
	pkt->stream = f->video_stream;
	pkt->pts_ns = file_video_pts(f, f->video_n);
	pkt->duration_ns = file_video_pts(f, f->video_n + 1) - pkt->pts_ns;
	pkt->keyframe = true;
	pkt->data = b;
	f->video_n++;
	return MEDIA_SOURCE_OK;
}

static int file_read_audio(struct media_source *src, struct file_priv *f, struct media_packet *pkt)
{
	size_t frame_bytes = (size_t)f->channels * 2;
	size_t want = (size_t)f->rate * FILE_AUDIO_CHUNK_MS / 1000 * frame_bytes;
	if (f->audio_left < want)
		want = (size_t)f->audio_left / frame_bytes * frame_bytes;
	if (want == 0)
		return MEDIA_SOURCE_EOF;
	struct buf *b = buf_new(want);
	if (!b) {
		util_strlcpy(src->err, "out of memory", sizeof(src->err));
		return MEDIA_SOURCE_ERROR;
	}
	size_t got = fread(b->data, 1, want, f->audio) / frame_bytes * frame_bytes;
	if (got == 0) {
		buf_unref(b);
		return MEDIA_SOURCE_EOF;
	}
	if (f->audio_left != UINT64_MAX)
		f->audio_left -= got;
	b->size = got;
	pkt->stream = f->audio_stream;
	pkt->samples = (int)(got / frame_bytes);
	pkt->pts_ns = (int64_t)(f->audio_sample * (uint64_t)TIME_NS_PER_SEC / (uint64_t)f->rate);
	pkt->duration_ns = (int64_t)((f->audio_sample + (uint64_t)pkt->samples) * (uint64_t)TIME_NS_PER_SEC /
				     (uint64_t)f->rate) - pkt->pts_ns;
	pkt->data = b;
	f->audio_sample += (uint64_t)pkt->samples;
	return MEDIA_SOURCE_OK;
}

static int file_read(struct media_source *src, struct media_packet *pkt, int64_t timeout_ns)
{
	struct file_priv *f = src->priv;
	memset(pkt, 0, sizeof(*pkt));
	for (;;) {
		if (f->video_eof && f->audio_eof)
			return MEDIA_SOURCE_EOF;
		int64_t vpts = f->video_eof ? INT64_MAX : file_video_pts(f, f->video_n);
		int64_t apts = f->audio_eof ? INT64_MAX :
			(int64_t)(f->audio_sample * (uint64_t)TIME_NS_PER_SEC / (uint64_t)f->rate);
		bool video = vpts <= apts;
		int64_t pts = video ? vpts : apts;
		if (f->duration_ns > 0 && pts >= f->duration_ns)
			return MEDIA_SOURCE_EOF;
		if (f->realtime) {
			int64_t due = f->start_mono_ns + pts, now = time_mono_ns();
			if (due > now) {
				if (timeout_ns >= 0 && due - now > timeout_ns) {
					time_sleep_ns(timeout_ns);
					return MEDIA_SOURCE_AGAIN;
				}
				time_sleep_ns(due - now);
			}
		}
		int r = video ? file_read_video(src, f, pkt) : file_read_audio(src, f, pkt);
		if (r != MEDIA_SOURCE_EOF)
			return r;
		if (video)
			f->video_eof = true;
		else
			f->audio_eof = true;
	}
}

const struct media_source_driver media_source_file = {
	.name = "file",
	.open = file_open,
	.read = file_read,
	.close = file_close,
	.request_keyframe = NULL,
};
