/* recorder_delete: DELETE on a completed or failed recording (SPEC §9):
 * the S3 object when lifecycle.lua says so, the local files, then the
 * record; the event recording_deleted says what went.
 *
 * The order makes a failure safe to retry: S3 first (the step most likely
 * to fail; deleting a missing object is success), then the files, and the
 * record last, so a recording never disappears from the API while any of
 * it is still stored. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common_log.h"
#include "common_time.h"
#include "recorder_internal.h"
#include "state.h"
#include "storage_s3.h"

static struct log_handle log_del = LOG_HANDLE("recorder/delete");

int recorder_delete_final(struct recorder *r, const cJSON *rec, cJSON **deleted, char *code, size_t codelen,
			  char *err, size_t errlen)
{
	*deleted = NULL;
	const char *id = state_record_str(rec, "recording_id");
	const char *key = state_record_str(rec, "s3_key");
	char dir[RECORDER_PATH_MAX];
	if (!id || recorder_dir_of(r, id, dir, sizeof(dir)) < 0) {
		util_strlcpy(code, "internal", codelen);
		snprintf(err, errlen, "the record has no usable recording id");
		return 500;
	}

	/* The S3 object: only when the policy says so. */
	bool delete_s3 = recorder_lifecycle_deleted(r, rec);
	const char *s3_outcome = !key || !key[0] ? "none" : delete_s3 ? "deleted" : "kept";
	if (delete_s3 && key && key[0]) {
		char why[256] = "";
		if (!r->s3) {
			util_strlcpy(code, "s3_unavailable", codelen);
			snprintf(err, errlen, "lifecycle.lua asks to delete the S3 object %s but S3 is not configured "
				 "here; nothing was deleted", key);
			return 503;
		}
		if (storage_s3_delete(r->s3, key, why, sizeof(why)) < 0) {
			util_strlcpy(code, "s3_delete_failed", codelen);
			snprintf(err, errlen, "the S3 object %s could not be deleted (%s); nothing else was deleted",
				 key, why);
			LOG_WARN(&log_del, "%s: %s", id, err);
			return 502;
		}
	}

	/* The local files (the recording's directory, thumbnail included). */
	struct stat sb;
	bool had_files = stat(dir, &sb) == 0;
	int rc = had_files ? util_rm_rf(dir) : 0;
	if (rc < 0) {
		util_strlcpy(code, "internal", codelen);
		snprintf(err, errlen, "the files in %s could not all be removed: %s (the recording is kept; retry)",
			 dir, strerror(-rc));
		LOG_ERROR(&log_del, "%s: %s", id, err);
		return 500;
	}

	rc = state_delete(r->st, rec);
	if (rc != STATE_OK) {
		util_strlcpy(code, "state_unavailable", codelen);
		snprintf(err, errlen, "the record could not be removed (%s); its files are gone, retry to finish",
			 state_strerror(rc));
		return 503;
	}

	/* The reply and the event carry the last state, with what went. */
	*deleted = cJSON_Duplicate(rec, 1);
	cJSON *m = *deleted ? recorder_rec_metadata(*deleted) : NULL;
	cJSON *d = cJSON_CreateObject();
	char ts[40];
	if (m && d) {
		cJSON_AddStringToObject(d, "at", time_iso8601(time_wall_ns(), ts, sizeof(ts)));
		cJSON_AddBoolToObject(d, "local_files", had_files);
		cJSON_AddStringToObject(d, "s3_object", s3_outcome);
		recorder_json_set(m, "deleted", d);
		d = NULL;
	}
	cJSON_Delete(d);
	recorder_publish(r, recorder_op_event(RECORDER_OP_DELETE), *deleted ? *deleted : rec, NULL);
	LOG_INFO(&log_del, "%s: deleted (local files: %s, S3 object: %s)", id, had_files ? "removed" : "none here",
		 s3_outcome);
	return 200;
}
