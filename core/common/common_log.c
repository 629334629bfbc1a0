/* common_log: leveled, line-atomic logging to stderr, dated or for journald. */
#include "common_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int log_global_level = LOG_LEVEL_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const level_names[] = { "error", "warn", "info", "debug", "trace" };
/* syslog(3) priorities of the levels: err, warning, info, debug, debug. */
static const int level_syslog[] = { 3, 4, 6, 7, 7 };
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static int log_journal; /* 1: stderr is the journal's stream */

/* systemd sets JOURNAL_STREAM to "device:inode" of the stream it connected
 * to stderr; when stderr still is that stream, lines go to journald,
 * which dates them itself and reads a "<N>" prefix as the priority. */
static void log_detect(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat sb;
	if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &sb) == 0 &&
	    (unsigned long long)sb.st_dev == dev && (unsigned long long)sb.st_ino == ino)
		log_journal = 1;
}

bool log_to_journal(void)
{
	pthread_once(&log_once, log_detect);
	return log_journal;
}

int log_level_from_name(const char *name)
{
	for (int i = 0; i <= LOG_LEVEL_TRACE; i++)
		if (name && strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

const char *log_level_name(int level)
{
	return level >= 0 && level <= LOG_LEVEL_TRACE ? level_names[level] : "?";
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

/* Formats the start of a line into 'line': "<N>[module] " for journald,
 * else "2026-05-01T12:00:00.123Z info  [module] ". Returns its length or -1. */
static int log_prefix(char *line, size_t len, const struct log_handle *h, enum log_level level)
{
	if (log_to_journal())
		return snprintf(line, len, "<%d>%-5s [%s] ", level_syslog[level], level_names[level], h ? h->name : "-");
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	return snprintf(line, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] ", tm.tm_year + 1900,
			tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			level_names[level], h ? h->name : "-");
}

void log_write(const struct log_handle *h, enum log_level level, const char *fmt, ...)
{
	char line[2048];
	if ((int)level < LOG_LEVEL_ERROR || level > LOG_LEVEL_TRACE)
		level = LOG_LEVEL_ERROR;
	int n = log_prefix(line, sizeof(line), h, level);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	/* One record per line: a newline inside the message would start a
	 * record without date or priority. */
	for (char *p = line + n; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	size_t len = strlen(line);
	line[len] = '\n';
	line[len + 1] = '\0';
	pthread_mutex_lock(&log_lock);
	fputs(line, stderr);
	pthread_mutex_unlock(&log_lock);
}
