/* common_time: clocks and timestamp formatting.
 *
 * Provides monotonic and wall-clock readings in nanoseconds and ISO-8601 UTC
 * formatting/parsing ("2026-11-24T19:36:34.123Z"). Uses libc only. */
#ifndef EDGEREC_COMMON_TIME_H
#define EDGEREC_COMMON_TIME_H

#include <stddef.h>
#include <stdint.h>

#define TIME_NS_PER_SEC 1000000000LL
#define TIME_NS_PER_MS 1000000LL

/* CLOCK_MONOTONIC in ns: for durations and deadlines. */
int64_t time_mono_ns(void);
/* CLOCK_REALTIME in ns since the Unix epoch. */
int64_t time_wall_ns(void);
/* Formats 'wall_ns' as ISO-8601 UTC with milliseconds and a 'Z' into 'out'
 * (at least 25 bytes). Returns 'out'. */
char *time_iso8601(int64_t wall_ns, char *out, size_t outlen);
/* Parses what time_iso8601 writes (milliseconds optional). Returns 0 and sets
 * '*wall_ns', or -1 on malformed text. */
int time_parse_iso8601(const char *text, int64_t *wall_ns);
/* Sleeps for 'ns' nanoseconds (restarts after signals). */
void time_sleep_ns(int64_t ns);

#endif
