/* recorder_retention: keeps the local disk from filling with recordings that
 * are already safe elsewhere.
 *
 * Recordings whose local file was kept after upload (recorder.keep_local,
 * or lifecycle.lua's keep_local) pile up. With retention.max_bytes set, the
 * files of completed recordings on this node's disk are added up and, while
 * the total is above it, the oldest file of a recording that is completed
 * AND has its s3_key (set only once the object was uploaded; a recording
 * whose verify failed is failed, not completed) is deleted. With
 * retention.max_age, every such file older than that goes. A recording
 * that lives only here (local backend, upload failed, still processing) is
 * never touched: it counts toward the total but is not a candidate. The
 * record then says metadata.local_copy = false and metadata.local_removed_at;
 * downloads go to S3 (302 to a presigned URL). The thumbnail stays. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common_log.h"
#include "common_time.h"
#include "recorder_internal.h"
#include "state.h"

static struct log_handle log_ret = LOG_HANDLE("recorder/retention");

/* One completed recording's local file. */
struct retention_file {
	char id[UUID_STR_LEN];
	char path[RECORDER_PATH_MAX];
	long long bytes;
	int64_t mtime_ns;
	bool safe; /* completed and in S3: may go */
};

static int retention_oldest_first(const void *a, const void *b)
{
	const struct retention_file *x = a, *y = b;
	return x->mtime_ns < y->mtime_ns ? -1 : x->mtime_ns > y->mtime_ns;
}

/* Reads what is needed of recording 'id' into 'f'. Returns 1 when it is a
 * completed recording with a local file, 0 when it is not, -1 when the
 * state store cannot tell. */
static int retention_look(struct recorder *r, const char *id, struct retention_file *f)
{
	char mark[RECORDER_PATH_MAX];
	struct stat sb;
	if (snprintf(mark, sizeof(mark), "%s/%s/.processing", r->storage_path, id) >= (int)sizeof(mark) ||
	    stat(mark, &sb) == 0)
		return 0; /* queued or being processed */
	cJSON *rec = state_get(r->st, id);
	if (!rec)
		return state_healthy(r->st) ? 0 : -1;
	int rc = 0;
	const char *status = state_record_str(rec, "status");
	const char *name = state_record_str(rec, "file_name");
	if (!status || strcmp(status, "completed") != 0 || !name || !name[0] || strchr(name, '/'))
		goto out;
	int n = snprintf(f->path, sizeof(f->path), "%s/%s/%s", r->storage_path, id, name);
	if (n < 0 || (size_t)n >= sizeof(f->path) || stat(f->path, &sb) != 0 || !S_ISREG(sb.st_mode))
		goto out;
	util_strlcpy(f->id, id, sizeof(f->id));
	f->bytes = (long long)sb.st_size;
	f->mtime_ns = (int64_t)sb.st_mtim.tv_sec * TIME_NS_PER_SEC + sb.st_mtim.tv_nsec;
	const char *key = state_record_str(rec, "s3_key");
	f->safe = key && key[0];
	rc = 1;
out:
	cJSON_Delete(rec);
	return rc;
}

/* Deletes f's file and records that in its state object. */
static bool retention_remove(struct recorder *r, const struct retention_file *f, const char *why)
{
	cJSON *rec = state_get(r->st, f->id);
	if (!rec)
		return false;
	const char *status = state_record_str(rec, "status");
	const char *key = state_record_str(rec, "s3_key");
	bool ok = false;
	if (!status || strcmp(status, "completed") != 0 || !key || !key[0])
		goto out; /* changed since it was looked at */
	if (unlink(f->path) != 0) {
		LOG_WARN(&log_ret, "%s: cannot remove %s: %s", f->id, f->path, strerror(errno));
		goto out;
	}
	cJSON *m = cJSON_GetObjectItemCaseSensitive(rec, "metadata");
	if (!cJSON_IsObject(m)) {
		m = cJSON_CreateObject();
		if (m)
			cJSON_ReplaceItemInObjectCaseSensitive(rec, "metadata", m);
	}
	if (cJSON_IsObject(m)) {
		cJSON_DeleteItemFromObjectCaseSensitive(m, "local_copy");
		cJSON_AddFalseToObject(m, "local_copy");
		char ts[40];
		cJSON_DeleteItemFromObjectCaseSensitive(m, "local_removed_at");
		cJSON_AddStringToObject(m, "local_removed_at", time_iso8601(time_wall_ns(), ts, sizeof(ts)));
	}
	recorder_put(r, rec);
	LOG_INFO(&log_ret, "%s: local copy removed (%s; %lld bytes; the object is %s)", f->id, why, f->bytes, key);
	ok = true;
out:
	cJSON_Delete(rec);
	return ok;
}

int recorder_retention_run(struct recorder *r)
{
	if (r->retention_max_bytes <= 0 && r->retention_max_age_ms <= 0)
		return 0;
	DIR *d = opendir(r->storage_path);
	if (!d) {
		LOG_WARN(&log_ret, "cannot read %s: %s", r->storage_path, strerror(errno));
		return -1;
	}
	struct retention_file *files = NULL;
	size_t n = 0, cap = 0;
	int removed = 0;
	bool blind = false;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!util_uuid_valid(e->d_name))
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 32;
			void *p = realloc(files, nc * sizeof(*files));
			if (!p)
				break;
			files = p;
			cap = nc;
		}
		int rc = retention_look(r, e->d_name, &files[n]);
		if (rc < 0) {
			blind = true;
			break;
		}
		if (rc > 0)
			n++;
	}
	closedir(d);
	if (blind) {
		free(files);
		return -1;
	}
	if (n > 1)
		qsort(files, n, sizeof(*files), retention_oldest_first);
	long long total = 0;
	for (size_t i = 0; i < n; i++)
		total += files[i].bytes;
	int64_t now = time_wall_ns();
	for (size_t i = 0; i < n; i++) {
		struct retention_file *f = &files[i];
		if (!f->safe)
			continue;
		const char *why = NULL;
		if (r->retention_max_age_ms > 0 && now - f->mtime_ns > r->retention_max_age_ms * TIME_NS_PER_MS)
			why = "older than retention.max_age";
		else if (r->retention_max_bytes > 0 && total > r->retention_max_bytes)
			why = "above retention.max_bytes";
		if (why && retention_remove(r, f, why)) {
			total -= f->bytes;
			removed++;
		}
	}
	if (r->retention_max_bytes > 0 && total > r->retention_max_bytes)
		LOG_DEBUG(&log_ret, "%lld bytes of finished recordings remain above retention.max_bytes; "
			  "the rest is not yet safely in S3", total);
	free(files);
	return removed;
}
