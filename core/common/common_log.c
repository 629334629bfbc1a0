/* common_log: leveled, line-atomic logging to stderr. */
#include "common_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int log_global_level = LOG_LEVEL_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const level_names[] = { "error", "warn", "info", "debug", "trace" };

int log_level_from_name(const char *name)
{
	for (int i = 0; i <= LOG_LEVEL_TRACE; i++)
		if (name && strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

void log_set_level(int level)
{
	if (level < 0) {
		level = log_level_from_name(getenv("EDGEREC_LOG"));
		if (level < 0)
			level = LOG_LEVEL_INFO;
	}
	if (level > LOG_LEVEL_TRACE)
		level = LOG_LEVEL_TRACE;
	log_global_level = level;
}

void log_write(const struct log_handle *h, enum log_level level, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %-5s [%s] ",
			 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			 level_names[level], h ? h->name : "-");
	if (n < 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = strlen(line);
	line[len] = '\n';
	line[len + 1] = '\0';
	pthread_mutex_lock(&log_lock);
	fputs(line, stderr);
	pthread_mutex_unlock(&log_lock);
}
