/* common_log: leveled logging with one handle per module.
 *
 * Provides: struct log_handle, the LOG_* macros, log_set_level().
 * Uses: stderr only. Thread-safe: one line is written with one fputs under a
 * lock so lines from different threads never interleave.
 *
 * A line is "2026-05-01T12:00:00.123Z info  [module] text" (UTC, ISO 8601),
 * or, when stderr is systemd's journal stream (JOURNAL_STREAM names it),
 * "<6>info  [module] text": journald dates it and takes <N> as the syslog
 * priority (error 3, warn 4, info 6, debug and trace 7), so
 * `journalctl -p err` finds the errors. A newline inside a message is
 * written as a space: one call, one line.
 *
 * A module declares its handle once:
 *     static struct log_handle log_mod = LOG_HANDLE("media/vp8");
 * and logs with LOG_INFO(&log_mod, "opened %dx%d", w, h). The level check
 * happens before any formatting, so a disabled TRACE costs one compare. */
#ifndef EDGEREC_COMMON_LOG_H
#define EDGEREC_COMMON_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_TRACE,
};

struct log_handle {
	const char *name;
};

#define LOG_HANDLE(n) { .name = (n) }

extern int log_global_level;

/* Sets the level for every module; reads EDGEREC_LOG (error|warn|info|debug|trace)
 * when called with a negative level. */
void log_set_level(int level);
int log_level_from_name(const char *name);
/* The name of a level ("info"); "?" when out of range. */
const char *log_level_name(int level);
/* True when lines go to journald (see above). */
bool log_to_journal(void);
void log_write(const struct log_handle *h, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define LOG_AT(h, lvl, ...) \
	do { if ((int)(lvl) <= log_global_level) log_write((h), (lvl), __VA_ARGS__); } while (0)
#define LOG_ERROR(h, ...) LOG_AT(h, LOG_LEVEL_ERROR, __VA_ARGS__)
#define LOG_WARN(h, ...)  LOG_AT(h, LOG_LEVEL_WARN, __VA_ARGS__)
#define LOG_INFO(h, ...)  LOG_AT(h, LOG_LEVEL_INFO, __VA_ARGS__)
#define LOG_DEBUG(h, ...) LOG_AT(h, LOG_LEVEL_DEBUG, __VA_ARGS__)
#define LOG_TRACE(h, ...) LOG_AT(h, LOG_LEVEL_TRACE, __VA_ARGS__)

#endif
