/* policy_watch: the thread that reloads policies when their files change.
 *
 * inotify on the policy directory and its lib/ folder reports writes that
 * finished (close after write) and renames into place (how editors and
 * deploy tools replace a file); after a short quiet period the host
 * rescans. A full rescan also runs every second, which catches what
 * inotify cannot see (the directory reached through a symlink that a deploy
 * swapped, a lib/ folder created later). A rescan of unchanged files costs
 * a few reads and hashes. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "common_time.h"
#include "policy_internal.h"

static struct log_handle log_watch = LOG_HANDLE("policy/watch");

#define WATCH_QUIET_MS 30
/* A file rewritten without pause is still picked up this often. */
#define WATCH_MAX_DELAY_MS 200
#define WATCH_RESCAN_MS 1000
#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | \
		    IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB)

struct policy_watch {
	struct policy_host *host;
	char dir[POLICY_DIR_MAX];
	int ifd;      /* inotify */
	int stop_fd;  /* eventfd: written once to stop the thread */
	int wd_dir, wd_lib;
	pthread_t thread;
};

/* (Re)adds the watches; a missing lib/ is not an error. */
static void watch_add(struct policy_watch *w)
{
	char lib[POLICY_PATH_MAX];
	if (w->ifd < 0)
		return;
	if (w->wd_dir >= 0)
		inotify_rm_watch(w->ifd, w->wd_dir);
	if (w->wd_lib >= 0)
		inotify_rm_watch(w->ifd, w->wd_lib);
	w->wd_dir = inotify_add_watch(w->ifd, w->dir, WATCH_MASK);
	if (w->wd_dir < 0)
		LOG_WARN(&log_watch, "cannot watch %s: %s (rescanning every %d ms instead)", w->dir,
			 strerror(errno), WATCH_RESCAN_MS);
	snprintf(lib, sizeof(lib), "%s/lib", w->dir);
	w->wd_lib = inotify_add_watch(w->ifd, lib, WATCH_MASK);
}

/* Reads the pending events; returns true when one may concern a policy. */
static bool watch_drain(struct policy_watch *w, bool *rewatch)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool relevant = false;
	for (;;) {
		ssize_t n = read(w->ifd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)p;
			if (e->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW))
				*rewatch = true;
			if ((e->mask & IN_ISDIR) && e->len && strcmp(e->name, "lib") == 0)
				*rewatch = true;
			size_t l = e->len ? strlen(e->name) : 0;
			if (l >= 4 && strcmp(e->name + l - 4, ".lua") == 0 && e->name[0] != '.')
				relevant = true;
			if (e->mask & IN_Q_OVERFLOW)
				relevant = true;
			p += sizeof(*e) + e->len;
		}
	}
	return relevant || *rewatch;
}

static void *watch_main(void *arg)
{
	struct policy_watch *w = arg;
	bool pending = false;
	int64_t pending_since = 0;
	int64_t next_rescan = time_mono_ns() + WATCH_RESCAN_MS * TIME_NS_PER_MS;
	for (;;) {
		struct pollfd pf[2] = { { .fd = w->stop_fd, .events = POLLIN },
					{ .fd = w->ifd, .events = POLLIN } };
		int64_t now = time_mono_ns();
		int timeout = (int)((next_rescan - now) / TIME_NS_PER_MS) + 1;
		if (pending) {
			int left = (int)((pending_since + WATCH_MAX_DELAY_MS * TIME_NS_PER_MS - now) /
					 TIME_NS_PER_MS);
			timeout = left < WATCH_QUIET_MS ? left : WATCH_QUIET_MS;
		}
		if (timeout < 0)
			timeout = 0;
		int rc = poll(pf, w->ifd >= 0 ? 2 : 1, timeout);
		if (rc < 0 && errno != EINTR) {
			LOG_ERROR(&log_watch, "poll: %s", strerror(errno));
			time_sleep_ns(100 * TIME_NS_PER_MS);
			continue;
		}
		if (rc > 0 && (pf[0].revents & POLLIN))
			break;
		if (rc > 0 && (pf[1].revents & POLLIN)) {
			bool rewatch = false;
			if (watch_drain(w, &rewatch) && !pending) {
				pending = true; /* wait for a quiet moment: more writes may follow */
				pending_since = time_mono_ns();
			}
			if (rewatch)
				watch_add(w);
			if (!pending || time_mono_ns() - pending_since < WATCH_MAX_DELAY_MS * TIME_NS_PER_MS)
				continue;
		}
		/* Timed out: after a burst of events, or time for the slow rescan. */
		if (pending || time_mono_ns() >= next_rescan) {
			pending = false;
			policy_host_reload(w->host);
			next_rescan = time_mono_ns() + WATCH_RESCAN_MS * TIME_NS_PER_MS;
		}
	}
	return NULL;
}

struct policy_watch *policy_watch_start(struct policy_host *h, const char *dir)
{
	struct policy_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->host = h;
	w->ifd = w->stop_fd = -1;
	w->wd_dir = w->wd_lib = -1;
	snprintf(w->dir, sizeof(w->dir), "%s", dir);
	w->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (w->stop_fd < 0) {
		LOG_ERROR(&log_watch, "eventfd: %s", strerror(errno));
		goto fail;
	}
	/* Without inotify (instances exhausted) the rescan still sees changes,
	 * only later. */
	w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->ifd < 0)
		LOG_WARN(&log_watch, "inotify: %s; changes are seen by the rescan every %d ms",
			 strerror(errno), WATCH_RESCAN_MS);
	watch_add(w);
	if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
		LOG_ERROR(&log_watch, "cannot start the watcher thread");
		goto fail;
	}
	return w;
fail:
	if (w->ifd >= 0)
		close(w->ifd);
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	free(w);
	return NULL;
}

void policy_watch_stop(struct policy_watch *w)
{
	if (!w)
		return;
	uint64_t one = 1;
	if (write(w->stop_fd, &one, sizeof(one)) != sizeof(one))
		LOG_ERROR(&log_watch, "cannot signal the watcher: %s", strerror(errno));
	pthread_join(w->thread, NULL);
	if (w->ifd >= 0)
		close(w->ifd);
	close(w->stop_fd);
	free(w);
}
