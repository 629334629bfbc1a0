/* main_record: `edgerec record`, the command-line front end of the media
 * engine: records one clip from a source to a file and prints a one-line
 * JSON summary; also probes and repairs recordings (--probe, --repair). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common_time.h"
#include "common_util.h"
#include "main.h"
#include "media.h"
#include "media_source.h"
#include "recorder.h"

static volatile sig_atomic_t record_interrupted;

static void record_on_signal(int sig)
{
	(void)sig;
	record_interrupted = 1;
}

static void record_usage(FILE *out)
{
	fprintf(out,
		"usage: edgerec record --source test|file|v4l2 --output PATH [options]\n"
		"       edgerec record --probe PATH | --repair PATH\n"
		"\n"
		"  --source NAME       test (pattern, counter, tone; flash+beep each second), file,\n"
		"                      or v4l2 (--args device=/dev/video0[,audio=hw:1,0][,format=mjpeg];\n"
		"                      runs until --duration or Ctrl-C)\n"
		"  --video FILE.y4m    file source: raw 4:2:0 video\n"
		"  --audio FILE.wav    file source: 16-bit PCM audio\n"
		"  --args K=V,...      extra source arguments\n"
		"  --quality Q         low|medium|high|ultra (default medium)\n"
		"  --format F          webm|mkv|mp4 (default webm; mp4 records VP9+Opus in Matroska)\n"
		"  --duration SEC      source time to capture, pauses included (required for test)\n"
		"  --output PATH       the file to write\n"
		"  --pause-at SEC      pause at this source time (repeatable, each with --resume-at)\n"
		"  --resume-at SEC     resume at this source time\n"
		"  --fast              do not pace to the wall clock (tests, benchmarks)\n"
		"  --probe PATH        print what libwebm's parser reads from a recording\n"
		"  --repair PATH       finalize a recording left unfinished by a crash\n"
		"  --export-y4m PATH   write the source's raw video as Y4M instead of recording\n"
		"                      (the benchmark feeds the same frames to ffmpeg)\n");
}

/* Parses a non-negative number of seconds into ns. */
static int record_parse_seconds(const char *text, int64_t *ns)
{
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	if (errno || end == text || *end || !(v >= 0) || v > 1e7)
		return -1;
	*ns = (int64_t)(v * 1e9 + 0.5);
	return 0;
}

static int record_print_json(cJSON *obj)
{
	char *text = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	if (!text)
		return 1;
	printf("%s\n", text);
	free(text);
	return 0;
}

static int record_probe(const char *path)
{
	struct media_file_info info;
	char err[256];
	if (media_file_probe(path, &info, err, sizeof(err)) < 0) {
		fprintf(stderr, "edgerec record: %s\n", err);
		return 1;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "path", path);
	cJSON_AddStringToObject(o, "doc_type", info.doc_type);
	cJSON_AddNumberToObject(o, "duration_seconds", info.duration_ns / 1e9);
	cJSON_AddNumberToObject(o, "last_timestamp_seconds", info.last_timestamp_ns / 1e9);
	cJSON_AddStringToObject(o, "video_codec", info.video_codec);
	cJSON_AddNumberToObject(o, "width", info.width);
	cJSON_AddNumberToObject(o, "height", info.height);
	cJSON_AddStringToObject(o, "audio_codec", info.audio_codec);
	cJSON_AddNumberToObject(o, "sample_rate", info.sample_rate);
	cJSON_AddNumberToObject(o, "channels", info.channels);
	cJSON_AddBoolToObject(o, "cues", info.has_cues);
	cJSON_AddNumberToObject(o, "video_frames", (double)info.video_frames);
	cJSON_AddNumberToObject(o, "audio_frames", (double)info.audio_frames);
	return record_print_json(o);
}

static int record_repair(const char *path)
{
	char err[256];
	int64_t duration = 0;
	if (media_file_repair(path, &duration, err, sizeof(err)) < 0) {
		fprintf(stderr, "edgerec record: repair failed: %s\n", err);
		return 1;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "path", path);
	cJSON_AddBoolToObject(o, "repaired", 1);
	cJSON_AddNumberToObject(o, "duration_seconds", duration / 1e9);
	return record_print_json(o);
}

/* Writes the raw video of 'source' (at the preset's size and rate) into a
 * YUV4MPEG2 file, without encoding. */
static int record_export_y4m(const char *source, const char *args, const struct media_preset *preset,
			     int64_t duration_ns, const char *path)
{
	char err[256];
	const struct media_source_driver *drv = media_source_find(source);
	if (!drv) {
		fprintf(stderr, "edgerec record: unknown source '%s'\n", source);
		return 2;
	}
	struct media_source_params sp = {
		.args = args, .width = preset->width, .height = preset->height, .fps = preset->fps,
		.sample_rate = 48000, .channels = 2, .realtime = false, .duration_ns = duration_ns,
	};
	struct media_source *src = media_source_new(drv, &sp, err, sizeof(err));
	if (!src) {
		fprintf(stderr, "edgerec record: %s\n", err);
		return 2;
	}
	FILE *out = fopen(path, "wb");
	int rc = 1, r;
	uint64_t frames = 0;
	struct media_packet pkt;
	const struct media_stream_info *vi = NULL;
	for (int i = 0; i < src->nb_streams; i++)
		if (src->streams[i].kind == MEDIA_KIND_VIDEO && src->streams[i].codec == MEDIA_CODEC_I420)
			vi = &src->streams[i];
	if (!out) {
		fprintf(stderr, "edgerec record: cannot create '%s': %s\n", path, strerror(errno));
		goto done;
	}
	if (!vi) {
		fprintf(stderr, "edgerec record: source '%s' has no raw video\n", source);
		goto done;
	}
	fprintf(out, "YUV4MPEG2 W%d H%d F%d:%d Ip A1:1 C420jpeg\n", vi->width, vi->height,
		vi->fps_num, vi->fps_den);
	while ((r = src->driver->read(src, &pkt, -1)) == MEDIA_SOURCE_OK) {
		if (&src->streams[pkt.stream] == vi) {
			fputs("FRAME\n", out);
			fwrite(pkt.data->data, 1, pkt.data->size, out);
			frames++;
		}
		media_packet_clear(&pkt);
	}
	if (r != MEDIA_SOURCE_EOF) {
		fprintf(stderr, "edgerec record: source: %s\n", src->err);
		goto done;
	}
	if (fflush(out) != 0 || ferror(out)) {
		fprintf(stderr, "edgerec record: writing '%s' failed\n", path);
		goto done;
	}
	printf("{\"export_y4m\":%llu}\n", (unsigned long long)frames);
	rc = 0;
done:
	if (out)
		fclose(out);
	media_source_free(src);
	return rc;
}

static double record_cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main_record(int argc, char **argv)
{
	enum { OPT_SOURCE = 256, OPT_VIDEO, OPT_AUDIO, OPT_ARGS, OPT_QUALITY, OPT_FORMAT,
	       OPT_DURATION, OPT_OUTPUT, OPT_PAUSE, OPT_RESUME, OPT_FAST, OPT_PROBE, OPT_REPAIR,
	       OPT_EXPORT, OPT_HELP };
	static const struct option longopts[] = {
		{ "source", required_argument, NULL, OPT_SOURCE },
		{ "video", required_argument, NULL, OPT_VIDEO },
		{ "audio", required_argument, NULL, OPT_AUDIO },
		{ "args", required_argument, NULL, OPT_ARGS },
		{ "quality", required_argument, NULL, OPT_QUALITY },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "duration", required_argument, NULL, OPT_DURATION },
		{ "output", required_argument, NULL, OPT_OUTPUT },
		{ "pause-at", required_argument, NULL, OPT_PAUSE },
		{ "resume-at", required_argument, NULL, OPT_RESUME },
		{ "fast", no_argument, NULL, OPT_FAST },
		{ "probe", required_argument, NULL, OPT_PROBE },
		{ "repair", required_argument, NULL, OPT_REPAIR },
		{ "export-y4m", required_argument, NULL, OPT_EXPORT },
		{ "help", no_argument, NULL, OPT_HELP },
		{ 0 },
	};
	const char *source = NULL, *video = NULL, *audio = NULL, *extra = NULL;
	const char *quality = "medium", *format = "webm", *output = NULL, *export_y4m = NULL;
	struct media_pipeline_options opt = { 0 };
	int nb_pause = 0, nb_resume = 0;
	char err[256], args[2048];
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int64_t ns;
		switch (c) {
		case OPT_SOURCE: source = optarg; break;
		case OPT_VIDEO: video = optarg; break;
		case OPT_AUDIO: audio = optarg; break;
		case OPT_ARGS: extra = optarg; break;
		case OPT_QUALITY: quality = optarg; break;
		case OPT_FORMAT: format = optarg; break;
		case OPT_OUTPUT: output = optarg; break;
		case OPT_FAST: opt.fast = true; break;
		case OPT_PROBE: return record_probe(optarg);
		case OPT_REPAIR: return record_repair(optarg);
		case OPT_EXPORT: export_y4m = optarg; break;
		case OPT_HELP: record_usage(stdout); return 0;
		case OPT_DURATION:
			if (record_parse_seconds(optarg, &opt.duration_ns) < 0 || opt.duration_ns == 0) {
				fprintf(stderr, "edgerec record: bad --duration '%s' (seconds > 0)\n", optarg);
				return 2;
			}
			break;
		case OPT_PAUSE:
		case OPT_RESUME:
			if (record_parse_seconds(optarg, &ns) < 0) {
				fprintf(stderr, "edgerec record: bad time '%s' (seconds)\n", optarg);
				return 2;
			}
			if ((c == OPT_PAUSE ? nb_pause : nb_resume) >= MEDIA_SCHEDULE_MAX) {
				fprintf(stderr, "edgerec record: at most %d pauses\n", MEDIA_SCHEDULE_MAX);
				return 2;
			}
			if (c == OPT_PAUSE)
				opt.pause_at_ns[nb_pause++] = ns;
			else
				opt.resume_at_ns[nb_resume++] = ns;
			break;
		default:
			fprintf(stderr, "edgerec record: unknown or incomplete option '%s'\n", argv[optind - 1]);
			record_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "edgerec record: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (export_y4m && source && opt.duration_ns > 0 && media_preset_find(quality))
		return record_export_y4m(source, extra, media_preset_find(quality), opt.duration_ns,
					 export_y4m);
	if (export_y4m) {
		fprintf(stderr, "edgerec record: --export-y4m needs --source, --duration and a known --quality\n");
		return 2;
	}
	if (!source || !output) {
		fprintf(stderr, "edgerec record: --source and --output are required\n");
		record_usage(stderr);
		return 2;
	}
	if (nb_pause != nb_resume) {
		fprintf(stderr, "edgerec record: each --pause-at needs a --resume-at\n");
		return 2;
	}
	opt.nb_schedule = nb_pause;
	if (strcmp(source, "test") == 0 && opt.duration_ns == 0) {
		fprintf(stderr, "edgerec record: the test source needs --duration\n");
		return 2;
	}
	if ((video || audio) && strcmp(source, "file") != 0) {
		fprintf(stderr, "edgerec record: --video/--audio belong to --source file\n");
		return 2;
	}
	args[0] = '\0';
	size_t n = 0;
	const char *parts[3][2] = { { "video=", video }, { "audio=", audio }, { "", extra } };
	for (int i = 0; i < 3; i++) {
		if (!parts[i][1])
			continue;
		n += (size_t)snprintf(args + n, n < sizeof(args) ? sizeof(args) - n : 0, "%s%s%s",
				      n ? "," : "", parts[i][0], parts[i][1]);
		if (n >= sizeof(args)) {
			fprintf(stderr, "edgerec record: source arguments too long\n");
			return 2;
		}
	}

	const struct media_preset *preset = media_preset_find(quality);
	if (!preset) {
		fprintf(stderr, "edgerec record: unknown quality '%s' (low, medium, high, ultra)\n", quality);
		return 2;
	}
	struct media_pipeline_config cfg = {
		.source = source,
		.source_args = args,
		.preset = preset,
		.format = format,
		.output_path = output,
	};
	struct media_pipeline *p = media_pipeline_new(&cfg, err, sizeof(err));
	if (!p) {
		fprintf(stderr, "edgerec record: %s\n", err);
		return 2;
	}
	if (media_pipeline_set_options(p, &opt) < 0) {
		fprintf(stderr, "edgerec record: pause/resume times must increase, each resume after its pause\n");
		media_pipeline_free(p);
		return 2;
	}
	struct sigaction sa = { .sa_handler = record_on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	int64_t t0 = time_mono_ns();
	double cpu0 = record_cpu_seconds();
	if (media_pipeline_start(p, err, sizeof(err)) < 0) {
		fprintf(stderr, "edgerec record: %s\n", err);
		media_pipeline_free(p);
		return 1;
	}
	while (!record_interrupted && !media_pipeline_wait(p, 100 * TIME_NS_PER_MS))
		;
	int rc = media_pipeline_stop(p, err, sizeof(err)) < 0 ? 1 : 0;
	double wall = (time_mono_ns() - t0) / 1e9;
	double cpu = record_cpu_seconds() - cpu0;
	struct media_stats st;
	media_pipeline_stats(p, &st);
	media_pipeline_free(p);
	if (rc) {
		fprintf(stderr, "edgerec record: %s\n", err);
		return 1;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "output", output);
	cJSON_AddStringToObject(o, "format", format);
	cJSON_AddStringToObject(o, "quality", preset->name);
	cJSON_AddNumberToObject(o, "duration_seconds", st.active_duration_ns / 1e9);
	cJSON_AddNumberToObject(o, "bytes_written", (double)st.bytes_written);
	cJSON_AddNumberToObject(o, "video_frames_encoded", (double)st.video_frames_encoded);
	cJSON_AddNumberToObject(o, "video_frames_dropped", (double)st.video_frames_dropped);
	cJSON_AddNumberToObject(o, "video_keyframes", (double)st.video_keyframes);
	cJSON_AddNumberToObject(o, "audio_frames_encoded", (double)st.audio_frames_encoded);
	cJSON_AddNumberToObject(o, "audio_frames_dropped", (double)st.audio_frames_dropped);
	cJSON_AddNumberToObject(o, "video_frames_skipped", (double)st.video_frames_skipped);
	if (st.capture.present) /* a camera: what it was asked and gave */
		cJSON_AddItemToObject(o, "capture", recorder_capture_json(&st.capture));
	cJSON_AddNumberToObject(o, "degradation_moves", st.degrade_moves);
	cJSON_AddStringToObject(o, "degradation_max", media_degrade_name(st.degrade_max_level));
	cJSON_AddNumberToObject(o, "video_encode_seconds", st.video_encode_ns / 1e9);
	cJSON_AddNumberToObject(o, "wall_seconds", wall);
	cJSON_AddNumberToObject(o, "cpu_seconds", cpu);
	cJSON_AddBoolToObject(o, "interrupted", record_interrupted != 0);
	return record_print_json(o);
}
