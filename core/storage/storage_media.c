/* storage_media: the file work after a recording stops: Matroska -> MP4
 * remux (libavformat), a JPEG thumbnail of a keyframe (libavformat demux,
 * libvpx decode for VP8/VP9, libavcodec for H.264, libjpeg-turbo encode)
 * and the facts for the metadata. Runs only inside the edgerec-finish
 * process (storage_finish_tool.c). */
#include "storage.h"
#include "storage_media.h"

#include "common_log.h"
#include "common_util.h"
#include "crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/pixdesc.h>
#include <vpx/vp8dx.h>
#include <vpx/vpx_decoder.h>

static struct log_handle log_media = LOG_HANDLE("storage/media");
static pthread_once_t media_once = PTHREAD_ONCE_INIT;

/* libav* prints warnings of its own to stderr; keep only its errors. */
static void media_init_once(void)
{
	av_log_set_level(AV_LOG_ERROR);
}

static void media_averr(char *err, size_t errlen, const char *what, const char *path, int averr)
{
	char msg[AV_ERROR_MAX_STRING_SIZE] = "";
	av_strerror(averr, msg, sizeof(msg));
	snprintf(err, errlen, "%s %s: %s", what, path, msg);
}

static bool media_cancelled(const struct storage_job *job)
{
	return job->cancel && *job->cancel;
}

/* Opens 'path' for demuxing and reads its stream parameters. */
static int media_open_input(const char *path, AVFormatContext **out, char *err, size_t errlen)
{
	AVFormatContext *in = NULL;
	int r = avformat_open_input(&in, path, NULL, NULL);
	if (r < 0) {
		media_averr(err, errlen, "cannot open", path, r);
		return STORAGE_ERR_MEDIA;
	}
	r = avformat_find_stream_info(in, NULL);
	if (r < 0) {
		media_averr(err, errlen, "cannot read streams of", path, r);
		avformat_close_input(&in);
		return STORAGE_ERR_MEDIA;
	}
	*out = in;
	return 0;
}

int storage_media_remux(const struct storage_job *job, char *err, size_t errlen)
{
	AVFormatContext *in = NULL, *out = NULL;
	AVPacket *pkt = NULL;
	AVDictionary *opts = NULL;
	int *map = NULL;
	char *tmp = NULL;
	int rc = STORAGE_ERR_MEDIA, r;
	bool header_written = false;

	pthread_once(&media_once, media_init_once);
	if (!job->input_path || !job->mp4_path) {
		snprintf(err, errlen, "remux needs an input and an output path");
		return STORAGE_ERR_INVALID;
	}
	if (asprintf(&tmp, "%s.part", job->mp4_path) < 0) {
		tmp = NULL;
		rc = STORAGE_ERR_NOMEM;
		goto fail;
	}
	if ((rc = media_open_input(job->input_path, &in, err, errlen)) < 0)
		goto fail;
	rc = STORAGE_ERR_MEDIA;
	r = avformat_alloc_output_context2(&out, NULL, "mp4", tmp);
	if (r < 0 || !out) {
		media_averr(err, errlen, "cannot create mp4 muxer for", tmp, r);
		goto fail;
	}
	map = calloc(in->nb_streams, sizeof(*map));
	if (!map) {
		rc = STORAGE_ERR_NOMEM;
		goto fail;
	}
	int kept = 0;
	for (unsigned i = 0; i < in->nb_streams; i++) {
		AVStream *is = in->streams[i];
		enum AVMediaType t = is->codecpar->codec_type;
		map[i] = -1;
		if (t != AVMEDIA_TYPE_VIDEO && t != AVMEDIA_TYPE_AUDIO)
			continue;
		AVStream *os = avformat_new_stream(out, NULL);
		if (!os || avcodec_parameters_copy(os->codecpar, is->codecpar) < 0) {
			snprintf(err, errlen, "cannot add stream %u to the mp4", i);
			goto fail;
		}
		os->codecpar->codec_tag = 0;
		os->time_base = is->time_base;
		map[i] = kept++;
	}
	if (kept == 0) {
		snprintf(err, errlen, "%s holds no audio or video stream", job->input_path);
		goto fail;
	}
	r = avio_open(&out->pb, tmp, AVIO_FLAG_WRITE);
	if (r < 0) {
		media_averr(err, errlen, "cannot write", tmp, r);
		rc = STORAGE_ERR_IO;
		goto fail;
	}
	/* The moov box goes to the front so players can start before the end
	 * of the download (a second pass over the file at the trailer). */
	av_dict_set(&opts, "movflags", "+faststart", 0);
	r = avformat_write_header(out, &opts);
	if (r < 0) {
		media_averr(err, errlen, "mp4 cannot carry the streams of", job->input_path, r);
		goto fail;
	}
	header_written = true;

	pkt = av_packet_alloc();
	if (!pkt) {
		rc = STORAGE_ERR_NOMEM;
		goto fail;
	}
	int64_t total_us = in->duration > 0 ? in->duration : 0;
	int64_t last_report = 0;
	while ((r = av_read_frame(in, pkt)) >= 0) {
		int si = pkt->stream_index;
		if (si < 0 || (unsigned)si >= in->nb_streams || map[si] < 0) {
			av_packet_unref(pkt);
			continue;
		}
		if (media_cancelled(job)) {
			snprintf(err, errlen, "remux cancelled");
			rc = STORAGE_ERR_CANCELLED;
			goto fail;
		}
		AVStream *is = in->streams[si], *os = out->streams[map[si]];
		int64_t pts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
		if (job->progress && total_us > 0 && pts != AV_NOPTS_VALUE) {
			int64_t us = av_rescale_q(pts, is->time_base, AV_TIME_BASE_Q);
			if (us - last_report > total_us / 50) {
				last_report = us;
				job->progress(job->opaque, "remux", 100.0 * (double)us / (double)total_us);
			}
		}
		pkt->stream_index = map[si];
		av_packet_rescale_ts(pkt, is->time_base, os->time_base);
		pkt->pos = -1;
		r = av_interleaved_write_frame(out, pkt);
		if (r < 0) {
			media_averr(err, errlen, "cannot write a packet to", tmp, r);
			goto fail;
		}
	}
	if (r != AVERROR_EOF) {
		media_averr(err, errlen, "cannot read", job->input_path, r);
		goto fail;
	}
	r = av_write_trailer(out);
	header_written = false;
	if (r < 0) {
		media_averr(err, errlen, "cannot finish", tmp, r);
		goto fail;
	}
	avio_closep(&out->pb);
	chmod(tmp, UTIL_MEDIA_FILE_MODE); /* libavformat creates it 0666 & ~umask */
	if (rename(tmp, job->mp4_path) < 0) {
		snprintf(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
		rc = STORAGE_ERR_IO;
		goto fail;
	}
	if (job->progress)
		job->progress(job->opaque, "remux", 100.0);
	LOG_INFO(&log_media, "remuxed %s -> %s", job->input_path, job->mp4_path);
	rc = 0;
fail:
	if (out) {
		if (header_written)
			av_write_trailer(out);
		if (out->pb)
			avio_closep(&out->pb);
		avformat_free_context(out);
	}
	if (rc < 0 && tmp)
		unlink(tmp);
	av_packet_free(&pkt);
	av_dict_free(&opts);
	avformat_close_input(&in);
	free(map);
	free(tmp);
	if (rc < 0)
		LOG_WARN(&log_media, "remux of %s failed: %s", job->input_path ? job->input_path : "?", err);
	return rc;
}

/* A decoded picture kept for the thumbnail: planar YUV with 8-bit samples. */
struct media_picture {
	uint8_t *plane[3];
	int stride[3];
	int w, h;          /* display size */
	int xs, ys;        /* chroma shifts */
};

static void media_picture_clear(struct media_picture *p)
{
	for (int i = 0; i < 3; i++)
		free(p->plane[i]);
	memset(p, 0, sizeof(*p));
}

/* Copies a libvpx image into 'p'. Returns 0, or -1 for formats a JPEG
 * cannot take as is (high bit depth). */
static int media_picture_take(struct media_picture *p, const vpx_image_t *img)
{
	if (img->fmt & VPX_IMG_FMT_HIGHBITDEPTH)
		return -1;
	media_picture_clear(p);
	p->w = (int)img->d_w;
	p->h = (int)img->d_h;
	p->xs = (int)img->x_chroma_shift;
	p->ys = (int)img->y_chroma_shift;
	for (int i = 0; i < 3; i++) {
		int pw = i ? (p->w + (1 << p->xs) - 1) >> p->xs : p->w;
		int ph = i ? (p->h + (1 << p->ys) - 1) >> p->ys : p->h;
		p->stride[i] = pw;
		p->plane[i] = malloc((size_t)pw * (size_t)ph);
		if (!p->plane[i]) {
			media_picture_clear(p);
			return -1;
		}
		for (int y = 0; y < ph; y++)
			memcpy(p->plane[i] + (size_t)y * pw, img->planes[i] + (size_t)y * img->stride[i],
			       (size_t)pw);
	}
	return 0;
}

/* Mean of plane 'pl' over the source box [x0,x1) x [y0,y1). */
static unsigned media_box_mean(const uint8_t *pl, int stride, int x0, int x1, int y0, int y1)
{
	unsigned long sum = 0, n = 0;
	for (int y = y0; y < y1; y++)
		for (int x = x0; x < x1; x++, n++)
			sum += pl[(size_t)y * stride + x];
	return n ? (unsigned)((sum + n / 2) / n) : 0;
}

static uint8_t media_clamp(int v)
{
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* libjpeg reports fatal errors through error_exit, which by default calls
 * exit(). This one jumps back to the encoder with the message instead. */
struct media_jpeg_error {
	struct jpeg_error_mgr mgr;
	jmp_buf jump;
	char msg[JMSG_LENGTH_MAX];
};

static void media_jpeg_error_exit(j_common_ptr cinfo)
{
	struct media_jpeg_error *e = (struct media_jpeg_error *)cinfo->err;
	e->mgr.format_message(cinfo, e->msg);
	longjmp(e->jump, 1);
}

/* Scales 'p' to ow x oh by averaging boxes of source pixels and encodes a
 * JFIF JPEG (full-range YCbCr: the video's limited range is expanded) into
 * memory. Returns 0 with '*out'/'*outlen' (malloc'd by libjpeg, caller frees)
 * or -1 with 'err' filled. */
static int media_encode_jpeg(const struct media_picture *p, int ow, int oh, unsigned char **out,
			     unsigned long *outlen, char *err, size_t errlen)
{
	struct jpeg_compress_struct cinfo;
	struct media_jpeg_error jerr;
	/* Written after setjmp and read after a longjmp: volatile. */
	uint8_t *volatile row = malloc((size_t)ow * 3);
	if (!row) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	*out = NULL;
	*outlen = 0;
	cinfo.err = jpeg_std_error(&jerr.mgr);
	jerr.mgr.error_exit = media_jpeg_error_exit;
	if (setjmp(jerr.jump)) {
		snprintf(err, errlen, "JPEG encoder: %s", jerr.msg);
		jpeg_destroy_compress(&cinfo);
		free(*out);
		*out = NULL;
		free(row);
		return -1;
	}
	jpeg_create_compress(&cinfo);
	jpeg_mem_dest(&cinfo, out, outlen);
	cinfo.image_width = (JDIMENSION)ow;
	cinfo.image_height = (JDIMENSION)oh;
	cinfo.input_components = 3;
	cinfo.in_color_space = JCS_YCbCr;
	jpeg_set_defaults(&cinfo);
	jpeg_set_quality(&cinfo, 82, TRUE);
	jpeg_start_compress(&cinfo, TRUE);
	for (int y = 0; y < oh; y++) {
		int y0 = (int)((int64_t)y * p->h / oh), y1 = (int)((int64_t)(y + 1) * p->h / oh);
		if (y1 <= y0)
			y1 = y0 + 1;
		for (int x = 0; x < ow; x++) {
			int x0 = (int)((int64_t)x * p->w / ow), x1 = (int)((int64_t)(x + 1) * p->w / ow);
			if (x1 <= x0)
				x1 = x0 + 1;
			int Y = (int)media_box_mean(p->plane[0], p->stride[0], x0, x1, y0, y1);
			int cx0 = x0 >> p->xs, cx1 = (x1 + (1 << p->xs) - 1) >> p->xs;
			int cy0 = y0 >> p->ys, cy1 = (y1 + (1 << p->ys) - 1) >> p->ys;
			int U = (int)media_box_mean(p->plane[1], p->stride[1], cx0, cx1, cy0, cy1);
			int V = (int)media_box_mean(p->plane[2], p->stride[2], cx0, cx1, cy0, cy1);
			row[x * 3 + 0] = media_clamp((Y - 16) * 255 / 219);
			row[x * 3 + 1] = media_clamp((U - 128) * 255 / 224 + 128);
			row[x * 3 + 2] = media_clamp((V - 128) * 255 / 224 + 128);
		}
		JSAMPROW rows[1] = { row };
		jpeg_write_scanlines(&cinfo, rows, 1);
	}
	jpeg_finish_compress(&cinfo);
	jpeg_destroy_compress(&cinfo);
	free(row);
	return 0;
}

/* Writes the thumbnail to 'path' through "<path>.part" and a rename, so a
 * reader never sees half a JPEG. */
static int media_write_jpeg(const struct media_picture *p, int ow, int oh, const char *path,
			    char *err, size_t errlen)
{
	unsigned char *jpg = NULL;
	unsigned long len = 0;
	char *tmp = NULL;
	FILE *f = NULL;
	int rc = STORAGE_ERR_MEDIA;

	if (media_encode_jpeg(p, ow, oh, &jpg, &len, err, errlen) < 0)
		return rc;
	rc = STORAGE_ERR_IO;
	if (asprintf(&tmp, "%s.part", path) < 0) {
		tmp = NULL;
		rc = STORAGE_ERR_NOMEM;
		goto fail;
	}
	f = fopen(tmp, "wb");
	if (f)
		fchmod(fileno(f), UTIL_MEDIA_FILE_MODE);
	if (!f || fwrite(jpg, 1, len, f) != len) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto fail;
	}
	FILE *written = f;
	f = NULL;
	if (util_file_commit(written, tmp, path, err, errlen) < 0)
		goto fail;
	rc = 0;
fail:
	if (f)
		fclose(f);
	if (rc < 0 && tmp)
		unlink(tmp);
	free(tmp);
	free(jpg);
	return rc;
}

/* Copies a libavcodec picture into 'p'. Returns 0, or -1 for formats a
 * JPEG cannot take as is (not 8-bit planar YUV). */
static int media_picture_take_av(struct media_picture *p, const AVFrame *f)
{
	const AVPixFmtDescriptor *d = av_pix_fmt_desc_get((enum AVPixelFormat)f->format);
	if (!d || !(d->flags & AV_PIX_FMT_FLAG_PLANAR) || (d->flags & AV_PIX_FMT_FLAG_RGB) || d->nb_components < 3 ||
	    d->comp[0].depth != 8 || f->width <= 0 || f->height <= 0)
		return -1;
	vpx_image_t img;
	memset(&img, 0, sizeof(img));
	img.d_w = (unsigned)f->width;
	img.d_h = (unsigned)f->height;
	img.x_chroma_shift = d->log2_chroma_w;
	img.y_chroma_shift = d->log2_chroma_h;
	for (int i = 0; i < 3; i++) {
		img.planes[i] = f->data[i];
		img.stride[i] = f->linesize[i];
	}
	return media_picture_take(p, &img);
}

/* The thumbnail's decoder: libvpx for VP8/VP9, libavcodec for H.264. */
struct media_decoder {
	vpx_codec_ctx_t vpx;
	bool vpx_open;
	AVCodecContext *av;
	AVFrame *frame;
};

static int media_decoder_open(struct media_decoder *d, const AVCodecParameters *par, char *err, size_t errlen)
{
	vpx_codec_iface_t *iface = NULL;
	memset(d, 0, sizeof(*d));
	switch (par->codec_id) {
	case AV_CODEC_ID_VP8: iface = vpx_codec_vp8_dx(); break;
	case AV_CODEC_ID_VP9: iface = vpx_codec_vp9_dx(); break;
	case AV_CODEC_ID_H264: break;
	default:
		snprintf(err, errlen, "thumbnail: video codec %s is not VP8/VP9/H.264", avcodec_get_name(par->codec_id));
		return -1;
	}
	if (iface) {
		vpx_codec_dec_cfg_t cfg = { .threads = 1 };
		if (vpx_codec_dec_init(&d->vpx, iface, &cfg, 0) != VPX_CODEC_OK) {
			snprintf(err, errlen, "thumbnail: cannot start the libvpx decoder");
			return -1;
		}
		d->vpx_open = true;
		return 0;
	}
	const AVCodec *codec = avcodec_find_decoder(par->codec_id);
	d->av = codec ? avcodec_alloc_context3(codec) : NULL;
	d->frame = av_frame_alloc();
	if (d->av)
		d->av->thread_count = 1;
	if (!d->av || !d->frame || avcodec_parameters_to_context(d->av, par) < 0 ||
	    avcodec_open2(d->av, codec, NULL) < 0) {
		snprintf(err, errlen, "thumbnail: cannot start the %s decoder", avcodec_get_name(par->codec_id));
		return -1;
	}
	return 0;
}

static void media_decoder_close(struct media_decoder *d)
{
	if (d->vpx_open)
		vpx_codec_destroy(&d->vpx);
	avcodec_free_context(&d->av);
	av_frame_free(&d->frame);
	d->vpx_open = false;
}

/* Decodes one packet; when it yields a picture, copies it into 'pic'.
 * 'alone': nothing is decoded after it (a keyframe taken on its own), so a
 * decoder that holds pictures back (H.264 reordering) is drained. Returns 1
 * with a picture, 0 without, -1 on a decode error. */
static int media_decode(struct media_decoder *d, const AVPacket *pkt, struct media_picture *pic, bool alone)
{
	if (d->av) {
		int got = 0;
		if (avcodec_send_packet(d->av, pkt) < 0)
			return -1;
		for (int pass = 0; pass < 2; pass++) {
			while (avcodec_receive_frame(d->av, d->frame) == 0) {
				int r = media_picture_take_av(pic, d->frame);
				av_frame_unref(d->frame);
				if (r < 0)
					return -1;
				got = 1;
			}
			if (got || !alone || avcodec_send_packet(d->av, NULL) < 0)
				break;
		}
		return got;
	}
	if (vpx_codec_decode(&d->vpx, pkt->data, (unsigned)pkt->size, NULL, 0) != VPX_CODEC_OK)
		return -1;
	vpx_codec_iter_t iter = NULL;
	vpx_image_t *img, *last = NULL;
	while ((img = vpx_codec_get_frame(&d->vpx, &iter)) != NULL)
		last = img;
	if (!last)
		return 0;
	return media_picture_take(pic, last) < 0 ? -1 : 1;
}

/* Whether 'p' is one flat shade (a black or white frame, a fade, a test
 * pattern's flash): its luma spans fewer than 8 steps over a 16 x 16 grid
 * of samples. Such a picture says nothing as a thumbnail. */
static bool media_picture_flat(const struct media_picture *p)
{
	int lo = 255, hi = 0;
	int dy = p->h / 16 > 0 ? p->h / 16 : 1, dx = p->w / 16 > 0 ? p->w / 16 : 1;
	for (int y = 0; y < p->h; y += dy)
		for (int x = 0; x < p->w; x += dx) {
			int v = p->plane[0][(size_t)y * (size_t)p->stride[0] + (size_t)x];
			lo = v < lo ? v : lo;
			hi = v > hi ? v : hi;
		}
	return hi - lo < 8;
}

/* How far past a flat keyframe the thumbnail looks for a picture. */
#define MEDIA_THUMB_FLAT_LOOK_MS 2000

int storage_media_thumbnail(const struct storage_job *job, int *out_w, int *out_h,
			    char *err, size_t errlen)
{
	AVFormatContext *in = NULL;
	AVPacket *pkt = NULL;
	struct media_decoder dec;
	bool dec_open = false;
	struct media_picture cand = { 0 }, key = { 0 };
	int rc = STORAGE_ERR_MEDIA;

	pthread_once(&media_once, media_init_once);
	if (!job->input_path || !job->thumbnail_path) {
		snprintf(err, errlen, "thumbnail needs an input and an output path");
		return STORAGE_ERR_INVALID;
	}
	if ((rc = media_open_input(job->input_path, &in, err, errlen)) < 0)
		return rc;
	rc = STORAGE_ERR_MEDIA;
	int vi = av_find_best_stream(in, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
	if (vi < 0) {
		snprintf(err, errlen, "%s has no video stream for a thumbnail", job->input_path);
		goto fail;
	}
	AVStream *st = in->streams[vi];
	dec_open = true;
	if (media_decoder_open(&dec, st->codecpar, err, errlen) < 0)
		goto fail;
	pkt = av_packet_alloc();
	if (!pkt) {
		rc = STORAGE_ERR_NOMEM;
		goto fail;
	}

	/* Before the target time every packet is decoded so the decoder's
	 * references stay valid and the last picture serves short clips. At
	 * or after it, the first picture is kept as a fallback, then packets
	 * are only read (not decoded) until a keyframe within ten seconds,
	 * which is decoded on its own and wins. A flat keyframe (a test
	 * source's white flash, a fade from black) is followed: the frames
	 * after it are decoded from it, for up to MEDIA_THUMB_FLAT_LOOK_MS,
	 * and the first that is not flat wins instead (VP8/VP9; a decoder that
	 * was drained for the keyframe keeps it); a flat fallback likewise. */
	int64_t at_ms = job->thumbnail_at_ms > 0 ? job->thumbnail_at_ms : 1000;
	int64_t at = av_rescale_q(at_ms, (AVRational){ 1, 1000 }, st->time_base);
	int64_t give_up = av_rescale_q(at_ms + 10000, (AVRational){ 1, 1000 }, st->time_base);
	bool have_cand = false, have_key = false, past = false, settled = false, cand_flat = false;
	int64_t look = av_rescale_q(MEDIA_THUMB_FLAT_LOOK_MS, (AVRational){ 1, 1000 }, st->time_base);
	int64_t look_until = 0, look_cand = 0;
	int r;
	while (!settled && (r = av_read_frame(in, pkt)) >= 0) {
		if (pkt->stream_index != vi) {
			av_packet_unref(pkt);
			continue;
		}
		int64_t pts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
		bool is_key = pkt->flags & AV_PKT_FLAG_KEY;
		if (have_key) {
			/* After a flat keyframe. */
			struct media_picture next = { 0 };
			int d = pts != AV_NOPTS_VALUE && pts > look_until ? -1 : media_decode(&dec, pkt, &next, false);
			if (d == 1 && !media_picture_flat(&next)) {
				media_picture_clear(&key);
				key = next;
				settled = true;
			} else {
				media_picture_clear(&next);
				settled = d < 0;
			}
		} else if (pts != AV_NOPTS_VALUE && pts >= at) {
			if (is_key) {
				if (media_decode(&dec, pkt, &key, true) == 1) {
					have_key = true;
					settled = !media_picture_flat(&key);
					look_until = pts + look;
				}
			} else if (!past || cand_flat) {
				/* The fallback, and while it is flat the frames after it. */
				if (!past)
					look_cand = pts + look;
				if (pts > look_cand)
					cand_flat = false;
				else if (media_decode(&dec, pkt, &cand, false) == 1) {
					have_cand = true;
					cand_flat = media_picture_flat(&cand);
				}
			} else if (pts > give_up) {
				av_packet_unref(pkt);
				break;
			}
			past = true;
		} else if (!past) {
			if (media_decode(&dec, pkt, &cand, false) == 1)
				have_cand = true;
		}
		av_packet_unref(pkt);
		if (media_cancelled(job)) {
			snprintf(err, errlen, "thumbnail cancelled");
			rc = STORAGE_ERR_CANCELLED;
			goto fail;
		}
	}
	const struct media_picture *pic = have_key ? &key : have_cand ? &cand : NULL;
	if (!pic || pic->w <= 0 || pic->h <= 0) {
		snprintf(err, errlen, "thumbnail: no decodable video frame in %s", job->input_path);
		goto fail;
	}
	int ow = job->thumbnail_width > 0 ? job->thumbnail_width : 320;
	if (ow > pic->w)
		ow = pic->w;
	int oh = (int)(((int64_t)pic->h * ow + pic->w / 2) / pic->w);
	if (oh < 1)
		oh = 1;
	if ((rc = media_write_jpeg(pic, ow, oh, job->thumbnail_path, err, errlen)) < 0)
		goto fail;
	if (out_w)
		*out_w = ow;
	if (out_h)
		*out_h = oh;
	if (job->progress)
		job->progress(job->opaque, "thumbnail", 100.0);
	LOG_DEBUG(&log_media, "thumbnail %dx%d of %s (%s)", ow, oh, job->input_path,
		  have_key ? "keyframe" : "fallback frame");
	rc = 0;
fail:
	if (dec_open)
		media_decoder_close(&dec);
	media_picture_clear(&cand);
	media_picture_clear(&key);
	av_packet_free(&pkt);
	avformat_close_input(&in);
	if (rc < 0)
		LOG_WARN(&log_media, "thumbnail of %s failed: %s", job->input_path, err);
	return rc;
}

int storage_media_facts(const char *path, struct storage_facts *facts, char *err, size_t errlen)
{
	AVFormatContext *in = NULL;
	uint8_t *chunk = NULL;
	int fd = -1, rc = STORAGE_ERR_IO;
	struct crypto_sha256_ctx sha;
	uint8_t digest[CRYPTO_SHA256_LEN];

	pthread_once(&media_once, media_init_once);
	memset(facts, 0, sizeof(*facts));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		goto fail;
	}
	chunk = malloc(1 << 20);
	if (!chunk) {
		rc = STORAGE_ERR_NOMEM;
		goto fail;
	}
	crypto_sha256_init(&sha);
	for (;;) {
		ssize_t n = read(fd, chunk, 1 << 20);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		crypto_sha256_update(&sha, chunk, (size_t)n);
		facts->size_bytes += n;
	}
	crypto_sha256_final(&sha, digest);
	crypto_hex(digest, sizeof(digest), facts->sha256);

	if ((rc = media_open_input(path, &in, err, errlen)) < 0)
		goto fail;
	util_strlcpy(facts->container, in->iformat->name, sizeof(facts->container));
	if (in->duration > 0)
		facts->duration_ms = in->duration / 1000;
	for (unsigned i = 0; i < in->nb_streams; i++) {
		const AVCodecParameters *cp = in->streams[i]->codecpar;
		if (cp->codec_type == AVMEDIA_TYPE_VIDEO && !facts->video_codec[0]) {
			util_strlcpy(facts->video_codec, avcodec_get_name(cp->codec_id),
				     sizeof(facts->video_codec));
			facts->width = cp->width;
			facts->height = cp->height;
		} else if (cp->codec_type == AVMEDIA_TYPE_AUDIO && !facts->audio_codec[0]) {
			util_strlcpy(facts->audio_codec, avcodec_get_name(cp->codec_id),
				     sizeof(facts->audio_codec));
		}
	}
	rc = 0;
fail:
	avformat_close_input(&in);
	if (fd >= 0)
		close(fd);
	free(chunk);
	return rc;
}
