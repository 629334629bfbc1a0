/* storage_child: the server's side of the libav* finishing steps. Each
 * step runs in an edgerec-finish child process (storage_media.h says why
 * and how it answers); this file starts it, relays its progress, honours
 * the job's cancel flag and turns its reply into the storage.h contract. */
#include "storage.h"
#include "storage_media.h"

#include "common_log.h"
#include "common_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static struct log_handle log_child = LOG_HANDLE("storage/child");
static pthread_once_t child_once = PTHREAD_ONCE_INIT;
static char child_tool[PATH_MAX];

/* EDGEREC_FINISH_BIN, else beside the running executable (a build tree,
 * or an install that keeps both in one folder), else the libexec folder
 * of the install. */
static void child_find_tool(void)
{
	const char *env = getenv("EDGEREC_FINISH_BIN");
	if (env && env[0]) {
		util_strlcpy(child_tool, env, sizeof(child_tool));
		return;
	}
	char self[PATH_MAX - sizeof(STORAGE_FINISH_TOOL) - 1];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(child_tool, sizeof(child_tool), "%s/%s", self, STORAGE_FINISH_TOOL);
			if (access(child_tool, X_OK) == 0)
				return;
		}
	}
	snprintf(child_tool, sizeof(child_tool), "%s/%s", EDGEREC_LIBEXEC_DIR, STORAGE_FINISH_TOOL);
}

/* What one run of the helper said. */
struct child_reply {
	int code;                 /* STORAGE_ERR_* from an "error" line, 0 */
	char error[512];
	int thumb_w, thumb_h;
	struct storage_facts facts;
	int nfacts;
};

static void child_fact(struct child_reply *rep, const char *key, const char *val)
{
	struct storage_facts *f = &rep->facts;
	rep->nfacts++;
	if (strcmp(key, "size_bytes") == 0)
		f->size_bytes = strtoll(val, NULL, 10);
	else if (strcmp(key, "sha256") == 0)
		util_strlcpy(f->sha256, val, sizeof(f->sha256));
	else if (strcmp(key, "container") == 0)
		util_strlcpy(f->container, val, sizeof(f->container));
	else if (strcmp(key, "video_codec") == 0)
		util_strlcpy(f->video_codec, val, sizeof(f->video_codec));
	else if (strcmp(key, "audio_codec") == 0)
		util_strlcpy(f->audio_codec, val, sizeof(f->audio_codec));
	else if (strcmp(key, "width") == 0)
		f->width = atoi(val);
	else if (strcmp(key, "height") == 0)
		f->height = atoi(val);
	else if (strcmp(key, "duration_ms") == 0)
		f->duration_ms = strtoll(val, NULL, 10);
	else
		rep->nfacts--;
}

static void child_line(const struct storage_job *job, struct child_reply *rep, char *line)
{
	char *rest = strchr(line, ' ');
	if (!rest)
		return;
	*rest++ = '\0';
	if (strcmp(line, "progress") == 0) {
		char *pct = strchr(rest, ' ');
		if (pct && job && job->progress) {
			*pct++ = '\0';
			job->progress(job->opaque, rest, strtod(pct, NULL));
		}
	} else if (strcmp(line, "thumbnail") == 0) {
		sscanf(rest, "%d %d", &rep->thumb_w, &rep->thumb_h);
	} else if (strcmp(line, "fact") == 0) {
		char *val = strchr(rest, ' ');
		if (val)
			*val++ = '\0';
		child_fact(rep, rest, val ? val : "");
	} else if (strcmp(line, "error") == 0) {
		char *text = strchr(rest, ' ');
		rep->code = atoi(rest);
		if (rep->code >= 0)
			rep->code = STORAGE_ERR_MEDIA;
		util_strlcpy(rep->error, text ? text + 1 : storage_strerror(rep->code), sizeof(rep->error));
	}
}

/* Runs the helper with 'argv' (argv[0] is replaced by the tool's path) and
 * reads its reply into 'rep'. Returns 0 when it succeeded, else <0 with
 * 'err' filled. */
static int child_run(const struct storage_job *job, char **argv, struct child_reply *rep,
		     char *err, size_t errlen)
{
	pthread_once(&child_once, child_find_tool);
	memset(rep, 0, sizeof(*rep));
	argv[0] = child_tool;

	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "cannot make a pipe: %s", strerror(errno));
		return STORAGE_ERR_IO;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	pid_t pid;
	int r = posix_spawn(&pid, child_tool, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	if (r != 0) {
		close(fds[0]);
		snprintf(err, errlen, "cannot run %s: %s", child_tool, strerror(r));
		return STORAGE_ERR_IO;
	}

	char buf[4096];
	size_t have = 0;
	bool cancelled = false;
	for (;;) {
		if (job && job->cancel && *job->cancel) {
			kill(pid, SIGKILL);
			cancelled = true;
			break;
		}
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		r = poll(&p, 1, 200);
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		ssize_t n = read(fds[0], buf + have, sizeof(buf) - 1 - have);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		char *start = buf, *nl;
		while ((nl = strchr(start, '\n'))) {
			*nl = '\0';
			child_line(job, rep, start);
			start = nl + 1;
		}
		have -= (size_t)(start - buf);
		memmove(buf, start, have);
		if (have == sizeof(buf) - 1)
			have = 0; /* a line longer than any reply: not ours, dropped */
	}
	close(fds[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (cancelled) {
		snprintf(err, errlen, "%s cancelled", argv[1]);
		return STORAGE_ERR_CANCELLED;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (rep->code < 0) {
		util_strlcpy(err, rep->error, errlen);
		return rep->code;
	}
	if (WIFSIGNALED(status))
		snprintf(err, errlen, "%s of %s: %s died of signal %d", argv[1], argv[2],
			 STORAGE_FINISH_TOOL, WTERMSIG(status));
	else
		snprintf(err, errlen, "%s of %s: %s exited with status %d", argv[1], argv[2],
			 STORAGE_FINISH_TOOL, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	LOG_WARN(&log_child, "%s", err);
	return STORAGE_ERR_MEDIA;
}

int storage_step_remux(const struct storage_job *job, char *err, size_t errlen)
{
	if (!job->input_path || !job->mp4_path) {
		snprintf(err, errlen, "remux needs an input and an output path");
		return STORAGE_ERR_INVALID;
	}
	struct child_reply rep;
	char *argv[] = { NULL, "remux", (char *)job->input_path, (char *)job->mp4_path, NULL };
	int rc = child_run(job, argv, &rep, err, errlen);
	if (rc < 0) {
		/* A helper that was killed could not remove its partial output. */
		char part[PATH_MAX];
		snprintf(part, sizeof(part), "%s.part", job->mp4_path);
		unlink(part);
	}
	return rc;
}

int storage_step_thumbnail(const struct storage_job *job, int *out_w, int *out_h,
			   char *err, size_t errlen)
{
	if (!job->input_path || !job->thumbnail_path) {
		snprintf(err, errlen, "thumbnail needs an input and an output path");
		return STORAGE_ERR_INVALID;
	}
	struct child_reply rep;
	char width[16], at[24];
	snprintf(width, sizeof(width), "%d", job->thumbnail_width);
	snprintf(at, sizeof(at), "%lld", (long long)job->thumbnail_at_ms);
	char *argv[] = { NULL, "thumbnail", (char *)job->input_path, (char *)job->thumbnail_path,
			 width, at, NULL };
	int rc = child_run(job, argv, &rep, err, errlen);
	if (rc < 0)
		return rc;
	if (out_w)
		*out_w = rep.thumb_w;
	if (out_h)
		*out_h = rep.thumb_h;
	return 0;
}

int storage_file_facts(const char *path, struct storage_facts *facts, char *err, size_t errlen)
{
	struct child_reply rep;
	char *argv[] = { NULL, "facts", (char *)path, NULL };
	memset(facts, 0, sizeof(*facts));
	int rc = child_run(NULL, argv, &rep, err, errlen);
	if (rc < 0)
		return rc;
	if (rep.nfacts != 8) {
		snprintf(err, errlen, "facts of %s: %s answered %d of 8 facts", path, STORAGE_FINISH_TOOL,
			 rep.nfacts);
		return STORAGE_ERR_MEDIA;
	}
	*facts = rep.facts;
	return 0;
}
