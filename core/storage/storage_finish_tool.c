/* edgerec-finish: runs one libav* finishing step for the server (see
 * storage_media.h for the command line and the reply lines). */
#include "storage.h"
#include "storage_media.h"

#include "common_log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

static void tool_progress(void *opaque, const char *step, double percent)
{
	printf("progress %s %.1f\n", step, percent);
	fflush(stdout);
}

static int tool_fail(int rc, const char *err)
{
	char line[512];
	snprintf(line, sizeof(line), "%s", err[0] ? err : storage_strerror(rc));
	for (char *c = line; *c; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	printf("error %d %s\n", rc, line);
	return 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: " STORAGE_FINISH_TOOL " remux IN MP4\n"
		"       " STORAGE_FINISH_TOOL " thumbnail IN JPEG WIDTH AT_MS\n"
		"       " STORAGE_FINISH_TOOL " facts PATH\n");
	return 2;
}

int main(int argc, char **argv)
{
	char err[512] = "";
	int rc;

	/* The step is worth nothing once the server that asked for it is gone. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	log_set_level(-1);
	if (argc < 2)
		return usage();
	struct storage_job job = { .progress = tool_progress };
	if (strcmp(argv[1], "remux") == 0 && argc == 4) {
		job.input_path = argv[2];
		job.mp4_path = argv[3];
		rc = storage_media_remux(&job, err, sizeof(err));
	} else if (strcmp(argv[1], "thumbnail") == 0 && argc == 6) {
		int w = 0, h = 0;
		job.input_path = argv[2];
		job.thumbnail_path = argv[3];
		job.thumbnail_width = atoi(argv[4]);
		job.thumbnail_at_ms = strtoll(argv[5], NULL, 10);
		rc = storage_media_thumbnail(&job, &w, &h, err, sizeof(err));
		if (rc == 0)
			printf("thumbnail %d %d\n", w, h);
	} else if (strcmp(argv[1], "facts") == 0 && argc == 3) {
		struct storage_facts f;
		rc = storage_media_facts(argv[2], &f, err, sizeof(err));
		if (rc == 0)
			printf("fact size_bytes %lld\nfact sha256 %s\nfact container %s\n"
			       "fact video_codec %s\nfact audio_codec %s\nfact width %d\n"
			       "fact height %d\nfact duration_ms %lld\n",
			       (long long)f.size_bytes, f.sha256, f.container, f.video_codec,
			       f.audio_codec, f.width, f.height, (long long)f.duration_ms);
	} else {
		return usage();
	}
	if (rc < 0)
		return tool_fail(rc, err);
	return fflush(stdout) == 0 ? 0 : 1;
}
