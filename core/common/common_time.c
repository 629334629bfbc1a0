/* common_time: clocks and ISO-8601 timestamps. */
#include "common_time.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t read_clock(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * TIME_NS_PER_SEC + ts.tv_nsec;
}

int64_t time_mono_ns(void) { return read_clock(CLOCK_MONOTONIC); }
int64_t time_wall_ns(void) { return read_clock(CLOCK_REALTIME); }

char *time_iso8601(int64_t wall_ns, char *out, size_t outlen)
{
	time_t secs = (time_t)(wall_ns / TIME_NS_PER_SEC);
	int ms = (int)((wall_ns % TIME_NS_PER_SEC) / TIME_NS_PER_MS);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
	return out;
}

int time_parse_iso8601(const char *text, int64_t *wall_ns)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	int ms = 0, used = 0;
	if (!text || sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
			    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6)
		return -1;
	const char *p = text + used;
	if (*p == '.') {
		int digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*p - '0');
		for (; digits < 3 && digits > 0; digits++)
			ms *= 10;
	}
	if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t secs = timegm(&tm);
	*wall_ns = (int64_t)secs * TIME_NS_PER_SEC + (int64_t)ms * TIME_NS_PER_MS;
	return 0;
}

void time_sleep_ns(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / TIME_NS_PER_SEC, .tv_nsec = ns % TIME_NS_PER_SEC };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}
