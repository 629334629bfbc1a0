/* state_record: the recording record of SPEC §3 as a cJSON object, its
 * statuses and transitions, and the validator every write goes through. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common_time.h"
#include "common_util.h"
#include "state.h"

static const char *const state_status_names[STATE_STATUS_COUNT] = {
	[STATE_STATUS_PENDING] = "pending",
	[STATE_STATUS_RECORDING] = "recording",
	[STATE_STATUS_PAUSED] = "paused",
	[STATE_STATUS_PROCESSING] = "processing",
	[STATE_STATUS_COMPLETED] = "completed",
	[STATE_STATUS_FAILED] = "failed",
	[STATE_STATUS_CANCELLED] = "cancelled",
};

/* What a field may hold. The table below is the whole of SPEC §3, in the
 * order the reference prints it; the validator and the constructor both
 * follow it, so the two cannot disagree. */
enum state_field_kind {
	FIELD_UUID,        /* string, uuid */
	FIELD_TEXT,        /* non-empty string */
	FIELD_TEXT_NULL,   /* string or null */
	FIELD_TIME_NULL,   /* ISO-8601 string or null */
	FIELD_ENUM,        /* string from a fixed list */
	FIELD_QUALITY_SET, /* the quality_settings object */
	FIELD_SECONDS,     /* number >= 0 */
	FIELD_BYTES,       /* integral number >= 0 */
	FIELD_OBJECT,      /* any JSON object */
};

struct state_field {
	const char *name;
	enum state_field_kind kind;
	const char *const *allowed; /* FIELD_ENUM: NULL-terminated list */
};

static const char *const state_formats[] = { "webm", "mp4", "mkv", NULL };
static const char *const state_qualities[] = { "low", "medium", "high", "ultra", NULL };
static const char *const state_backends[] = { "local", "s3", NULL };
static const char *const state_statuses[] = { "pending", "recording", "paused", "processing",
					      "completed", "failed", "cancelled", NULL };

static const struct state_field state_fields[] = {
	{ "recording_id", FIELD_UUID, NULL },
	{ "room_id", FIELD_TEXT, NULL },
	{ "user_id", FIELD_TEXT, NULL },
	{ "format", FIELD_ENUM, state_formats },
	{ "quality", FIELD_ENUM, state_qualities },
	{ "quality_settings", FIELD_QUALITY_SET, NULL },
	{ "status", FIELD_ENUM, state_statuses },
	{ "storage_backend", FIELD_ENUM, state_backends },
	{ "local_path", FIELD_TEXT_NULL, NULL },
	{ "s3_key", FIELD_TEXT_NULL, NULL },
	{ "file_name", FIELD_TEXT, NULL },
	{ "started_at", FIELD_TIME_NULL, NULL },
	{ "paused_at", FIELD_TIME_NULL, NULL },
	{ "stopped_at", FIELD_TIME_NULL, NULL },
	{ "resumed_at", FIELD_TIME_NULL, NULL },
	{ "processed_at", FIELD_TIME_NULL, NULL },
	{ "duration_seconds", FIELD_SECONDS, NULL },
	{ "file_size_bytes", FIELD_BYTES, NULL },
	{ "metadata", FIELD_OBJECT, NULL },
	{ "error", FIELD_TEXT_NULL, NULL },
};

const char *state_strerror(int code)
{
	switch (code) {
	case STATE_OK: return "ok";
	case STATE_REFUSED: return "refused by a limit";
	case STATE_DEFERRED: return "redis unreachable, write deferred";
	case STATE_ERR_INVALID: return "invalid argument or record";
	case STATE_ERR_REDIS: return "redis unreachable or error";
	case STATE_ERR_FULL: return "retry buffer full, write lost";
	case STATE_ERR_NOMEM: return "out of memory";
	}
	return "unknown state error";
}

const char *state_status_name(enum state_status s)
{
	if ((int)s < 0 || s >= STATE_STATUS_COUNT)
		return NULL;
	return state_status_names[s];
}

int state_status_parse(const char *name)
{
	if (!name)
		return -1;
	for (int i = 0; i < STATE_STATUS_COUNT; i++)
		if (strcmp(name, state_status_names[i]) == 0)
			return i;
	return -1;
}

bool state_status_is_live(enum state_status s)
{
	return s == STATE_STATUS_PENDING || s == STATE_STATUS_RECORDING || s == STATE_STATUS_PAUSED;
}

bool state_transition_allowed(enum state_status from, enum state_status to)
{
	switch (to) {
	case STATE_STATUS_RECORDING:
		return from == STATE_STATUS_PENDING || from == STATE_STATUS_PAUSED;
	case STATE_STATUS_PAUSED:
		return from == STATE_STATUS_RECORDING;
	case STATE_STATUS_PROCESSING:
		return from == STATE_STATUS_RECORDING || from == STATE_STATUS_PAUSED;
	case STATE_STATUS_COMPLETED:
		return from == STATE_STATUS_PROCESSING;
	case STATE_STATUS_FAILED:
		return state_status_is_live(from) || from == STATE_STATUS_PROCESSING;
	case STATE_STATUS_CANCELLED:
		return state_status_is_live(from);
	default:
		return false;
	}
}

static const struct state_field *state_field_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(state_fields); i++)
		if (strcmp(state_fields[i].name, name) == 0)
			return &state_fields[i];
	return NULL;
}

static bool state_in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

static int state_fail(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
	if (err && errlen)
		snprintf(err, errlen, fmt, a, b);
	return STATE_ERR_INVALID;
}

/* Checks quality_settings: exactly resolution "WxH", the two bitrate texts
 * and an integral fps. */
static int state_validate_quality(const cJSON *q, char *err, size_t errlen)
{
	static const char *const names[] = { "resolution", "video_bitrate", "audio_bitrate", "fps" };
	if (!cJSON_IsObject(q))
		return state_fail(err, errlen, "%s%s must be an object", "quality_settings", "");
	int n = 0;
	for (const cJSON *it = q->child; it; it = it->next) {
		n++;
		bool known = false;
		for (size_t i = 0; i < ARRAY_SIZE(names); i++)
			if (it->string && strcmp(it->string, names[i]) == 0)
				known = true;
		if (!known)
			return state_fail(err, errlen, "quality_settings has unknown field '%s'%s",
					  it->string ? it->string : "", "");
	}
	for (size_t i = 0; i < 3; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(q, names[i]);
		if (!cJSON_IsString(v) || !v->valuestring[0])
			return state_fail(err, errlen, "quality_settings.%s must be a non-empty string%s",
					  names[i], "");
	}
	unsigned w, h;
	char tail;
	const char *res = cJSON_GetObjectItemCaseSensitive(q, "resolution")->valuestring;
	if (sscanf(res, "%ux%u%c", &w, &h, &tail) != 2 || !w || !h)
		return state_fail(err, errlen, "quality_settings.resolution '%s' is not WIDTHxHEIGHT%s",
				  res, "");
	const cJSON *fps = cJSON_GetObjectItemCaseSensitive(q, "fps");
	if (!cJSON_IsNumber(fps) || fps->valuedouble <= 0 || fps->valuedouble != floor(fps->valuedouble))
		return state_fail(err, errlen, "quality_settings.%s must be a positive integer%s", "fps", "");
	if (n != 4)
		return state_fail(err, errlen, "quality_settings must have exactly %s%s",
				  "resolution, video_bitrate, audio_bitrate, fps", "");
	return STATE_OK;
}

static int state_validate_field(const struct state_field *f, const cJSON *v, char *err, size_t errlen)
{
	int64_t ns;
	switch (f->kind) {
	case FIELD_UUID:
		if (!cJSON_IsString(v) || !util_uuid_valid(v->valuestring))
			return state_fail(err, errlen, "%s must be a uuid%s", f->name, "");
		return STATE_OK;
	case FIELD_TEXT:
		if (!cJSON_IsString(v) || !v->valuestring[0])
			return state_fail(err, errlen, "%s must be a non-empty string%s", f->name, "");
		return STATE_OK;
	case FIELD_TEXT_NULL:
		if (!cJSON_IsNull(v) && !cJSON_IsString(v))
			return state_fail(err, errlen, "%s must be a string or null%s", f->name, "");
		return STATE_OK;
	case FIELD_TIME_NULL:
		if (cJSON_IsNull(v))
			return STATE_OK;
		if (!cJSON_IsString(v) || time_parse_iso8601(v->valuestring, &ns) != 0)
			return state_fail(err, errlen, "%s must be an ISO-8601 UTC time or null%s", f->name, "");
		return STATE_OK;
	case FIELD_ENUM:
		if (!cJSON_IsString(v) || !state_in_list(v->valuestring, f->allowed))
			return state_fail(err, errlen, "%s has an unknown value '%s'", f->name,
					  cJSON_IsString(v) ? v->valuestring : "(not a string)");
		return STATE_OK;
	case FIELD_QUALITY_SET:
		return state_validate_quality(v, err, errlen);
	case FIELD_SECONDS:
		if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || isinf(v->valuedouble))
			return state_fail(err, errlen, "%s must be a number >= 0%s", f->name, "");
		return STATE_OK;
	case FIELD_BYTES:
		if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble != floor(v->valuedouble))
			return state_fail(err, errlen, "%s must be an integer >= 0%s", f->name, "");
		return STATE_OK;
	case FIELD_OBJECT:
		if (!cJSON_IsObject(v))
			return state_fail(err, errlen, "%s must be an object%s", f->name, "");
		return STATE_OK;
	}
	return STATE_ERR_INVALID;
}

int state_record_validate(const cJSON *rec, char *err, size_t errlen)
{
	if (!cJSON_IsObject(rec))
		return state_fail(err, errlen, "%s%s", "the record is not a JSON object", "");
	size_t n = 0;
	for (const cJSON *it = rec->child; it; it = it->next) {
		n++;
		if (!it->string || !state_field_find(it->string))
			return state_fail(err, errlen, "unknown field '%s'%s", it->string ? it->string : "", "");
		for (const cJSON *dup = it->next; dup; dup = dup->next)
			if (dup->string && strcmp(dup->string, it->string) == 0)
				return state_fail(err, errlen, "field '%s' appears twice%s", it->string, "");
	}
	for (size_t i = 0; i < ARRAY_SIZE(state_fields); i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, state_fields[i].name);
		if (!v)
			return state_fail(err, errlen, "missing field '%s'%s", state_fields[i].name, "");
		int rc = state_validate_field(&state_fields[i], v, err, errlen);
		if (rc != STATE_OK)
			return rc;
	}
	if (n != ARRAY_SIZE(state_fields))
		return state_fail(err, errlen, "%s%s", "wrong number of fields", "");
	return STATE_OK;
}

/* Adds a string, or null when 's' is NULL. Returns false when out of memory. */
static bool state_add_str(cJSON *o, const char *name, const char *s)
{
	cJSON *v = s ? cJSON_CreateString(s) : cJSON_CreateNull();
	if (!v)
		return false;
	cJSON_AddItemToObject(o, name, v);
	return true;
}

cJSON *state_record_new(const struct state_record_init *in, char *err, size_t errlen)
{
	char id[UUID_STR_LEN], when[40], file_name[128];
	cJSON *rec = NULL, *q = NULL;

	if (!in || !in->room_id || !in->room_id[0] || !in->user_id || !in->user_id[0] || !in->format ||
	    !in->quality || !in->resolution || !in->video_bitrate || !in->audio_bitrate) {
		state_fail(err, errlen, "%s%s", "room_id, user_id, format, quality and quality settings are required", "");
		return NULL;
	}
	if (in->recording_id)
		util_strlcpy(id, in->recording_id, sizeof id);
	else
		util_uuid_v4(id);
	if (in->file_name)
		util_strlcpy(file_name, in->file_name, sizeof file_name);
	else
		snprintf(file_name, sizeof file_name, "recording_%s.%s", id, in->format);
	time_iso8601(in->started_at_wall_ns ? in->started_at_wall_ns : time_wall_ns(), when, sizeof when);

	rec = cJSON_CreateObject();
	q = cJSON_CreateObject();
	if (!rec || !q)
		goto fail_nomem;
	bool ok = state_add_str(q, "resolution", in->resolution) &&
		  state_add_str(q, "video_bitrate", in->video_bitrate) &&
		  state_add_str(q, "audio_bitrate", in->audio_bitrate) &&
		  cJSON_AddNumberToObject(q, "fps", in->fps);
	if (!ok)
		goto fail_nomem;
	ok = state_add_str(rec, "recording_id", id) && state_add_str(rec, "room_id", in->room_id) &&
	     state_add_str(rec, "user_id", in->user_id) && state_add_str(rec, "format", in->format) &&
	     state_add_str(rec, "quality", in->quality);
	if (!ok)
		goto fail_nomem;
	cJSON_AddItemToObject(rec, "quality_settings", q);
	q = NULL;
	ok = state_add_str(rec, "status", "pending") &&
	     state_add_str(rec, "storage_backend", in->storage_backend ? in->storage_backend : "local") &&
	     state_add_str(rec, "local_path", in->local_path) && state_add_str(rec, "s3_key", NULL) &&
	     state_add_str(rec, "file_name", file_name) && state_add_str(rec, "started_at", when) &&
	     state_add_str(rec, "paused_at", NULL) && state_add_str(rec, "stopped_at", NULL) &&
	     state_add_str(rec, "resumed_at", NULL) && state_add_str(rec, "processed_at", NULL) &&
	     cJSON_AddNumberToObject(rec, "duration_seconds", 0) &&
	     cJSON_AddNumberToObject(rec, "file_size_bytes", 0) &&
	     cJSON_AddObjectToObject(rec, "metadata") && state_add_str(rec, "error", NULL);
	if (!ok)
		goto fail_nomem;
	if (state_record_validate(rec, err, errlen) != STATE_OK)
		goto fail;
	return rec;

fail_nomem:
	state_fail(err, errlen, "%s%s", "out of memory", "");
fail:
	cJSON_Delete(q);
	cJSON_Delete(rec);
	return NULL;
}

const char *state_record_str(const cJSON *rec, const char *field)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, field);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

int state_record_status(const cJSON *rec)
{
	return state_status_parse(state_record_str(rec, "status"));
}

/* Replaces field 'field' by 'v' (taken), keeping the field order. */
static int state_record_replace(cJSON *rec, const char *field, cJSON *v)
{
	if (!v)
		return STATE_ERR_NOMEM;
	if (!cJSON_IsObject(rec) || !state_field_find(field)) {
		cJSON_Delete(v);
		return STATE_ERR_INVALID;
	}
	if (cJSON_GetObjectItemCaseSensitive(rec, field))
		cJSON_ReplaceItemInObjectCaseSensitive(rec, field, v);
	else
		cJSON_AddItemToObject(rec, field, v);
	return STATE_OK;
}

int state_record_set_str(cJSON *rec, const char *field, const char *value_or_null)
{
	return state_record_replace(rec, field,
				    value_or_null ? cJSON_CreateString(value_or_null) : cJSON_CreateNull());
}

int state_record_set_status(cJSON *rec, enum state_status s)
{
	const char *name = state_status_name(s);
	if (!name)
		return STATE_ERR_INVALID;
	return state_record_set_str(rec, "status", name);
}

int state_record_set_time(cJSON *rec, const char *field, int64_t wall_ns)
{
	char when[40];
	if (!wall_ns)
		return state_record_set_str(rec, field, NULL);
	return state_record_set_str(rec, field, time_iso8601(wall_ns, when, sizeof when));
}

int state_record_set_number(cJSON *rec, const char *field, double value)
{
	return state_record_replace(rec, field, cJSON_CreateNumber(value));
}
