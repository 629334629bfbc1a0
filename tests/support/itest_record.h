/* itest_record: reading what a recording left behind in the C integration
 * tests: fields of its JSON record, the duration of its file by ffprobe.
 * Header-only; uses cJSON. */
#ifndef EDGEREC_TEST_ITEST_RECORD_H
#define EDGEREC_TEST_ITEST_RECORD_H

#include <math.h>
#include <stdio.h>

#include <cjson/cJSON.h>

/* The string field 'k' of 'o', or NULL when absent or not a string. */
static inline const char *itest_str_of(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The number field 'k' of 'o', or NAN when absent or not a number. */
static inline double itest_num_of(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The container duration of the media file 'path' in seconds as ffprobe
 * reads it, or NAN when ffprobe cannot tell. */
static inline double itest_ffprobe_duration(const char *path)
{
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "ffprobe -v error -show_entries format=duration -of csv=p=0 '%s'", path);
	FILE *p = popen(cmd, "r");
	if (!p)
		return NAN;
	double d = NAN;
	if (fscanf(p, "%lf", &d) != 1)
		d = NAN;
	pclose(p);
	return d;
}

#endif
