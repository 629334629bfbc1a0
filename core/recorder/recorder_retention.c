/* recorder_retention: keeps the local disk from filling: removes the local
 * files of finished recordings that are safe elsewhere (configuration), and
 * those lifecycle.lua's local_retention decides to let go (age,
 * metadata.retention_days, disk pressure; the shipped policy never lets go
 * of a recording that exists only here).
 *
 * Recordings whose local file was kept after upload (recorder.keep_local,
 * or lifecycle.lua's keep_local) pile up. With retention.max_bytes set, the
 * files of completed recordings on this node's disk are added up and, while
 * the total is above it, the oldest file of a recording that is completed
 * AND has its s3_key (set only once the object was uploaded; a recording
 * whose verify failed is failed, not completed) is deleted. With
 * retention.max_age, every such file older than that goes. A recording
 * that lives only here (local backend, upload failed, still processing) is
 * never touched by these two: it counts toward the total but is not a
 * candidate. The record then says metadata.local_copy = false and
 * metadata.local_removed_at; downloads go to S3 (302 to a presigned URL).
 * The thumbnail stays.
 *
 * With a policy host, lifecycle.lua's local_retention(recording, facts) is
 * asked too, oldest first, for every completed or failed recording with a
 * local file, safe in S3 or not (facts: age_days, size_bytes, local_only,
 * disk_free_bytes, disk_total_bytes, disk_free_ratio, the disk figures as
 * they are after the removals before it). {delete = true, reason = "..."}
 * removes the file; for a local-only recording that loses its media, and
 * the record says so (metadata.local_removed_reason, local_only_removed),
 * as do a recording_local_removed event and
 * edgerec_retention_removed_total{copy="local_only"}. A
 * policy that fails or has no such hook keeps everything. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common_log.h"
#include "common_time.h"
#include "policy.h"
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
	double age_days;
};

static int retention_oldest_first(const void *a, const void *b)
{
	const struct retention_file *x = a, *y = b;
	return x->mtime_ns < y->mtime_ns ? -1 : x->mtime_ns > y->mtime_ns;
}

/* Reads what is needed of recording 'id' into 'f'. Returns 1 when it is a
 * completed or failed recording with a local file, 0 when it is not, -1
 * when the state store cannot tell. */
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
	if (!status || (strcmp(status, "completed") != 0 && strcmp(status, "failed") != 0) || !name || !name[0] ||
	    strchr(name, '/'))
		goto out;
	int n = snprintf(f->path, sizeof(f->path), "%s/%s/%s", r->storage_path, id, name);
	if (n < 0 || (size_t)n >= sizeof(f->path) || stat(f->path, &sb) != 0 || !S_ISREG(sb.st_mode))
		goto out;
	util_strlcpy(f->id, id, sizeof(f->id));
	f->bytes = (long long)sb.st_size;
	f->mtime_ns = (int64_t)sb.st_mtim.tv_sec * TIME_NS_PER_SEC + sb.st_mtim.tv_nsec;
	f->age_days = (double)(time_wall_ns() - f->mtime_ns) / (86400.0 * TIME_NS_PER_SEC);
	const char *key = state_record_str(rec, "s3_key");
	f->safe = strcmp(status, "completed") == 0 && key && key[0];
	rc = 1;
out:
	cJSON_Delete(rec);
	return rc;
}

/* Deletes f's file and records that in its state object. Without
 * 'by_policy' only a recording completed and in S3 may go; with it (the
 * lifecycle policy decided) a local-only one too. */
static bool retention_remove(struct recorder *r, const struct retention_file *f, const char *why, bool by_policy)
{
	cJSON *rec = state_get(r->st, f->id);
	if (!rec)
		return false;
	const char *status = state_record_str(rec, "status");
	const char *key = state_record_str(rec, "s3_key");
	bool safe = status && strcmp(status, "completed") == 0 && key && key[0];
	bool finished = status && (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0);
	bool ok = false;
	if (!finished || (!safe && !by_policy) || safe != f->safe)
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
		char ts[40];
		recorder_json_set(m, "local_copy", cJSON_CreateFalse());
		recorder_json_set(m, "local_removed_at", cJSON_CreateString(time_iso8601(time_wall_ns(), ts, sizeof(ts))));
		recorder_json_set(m, "local_removed_reason", cJSON_CreateString(why));
		if (!safe)
			recorder_json_set(m, "local_only_removed", cJSON_CreateTrue());
	}
	recorder_put(r, rec);
	atomic_fetch_add(&r->retention_removed[safe ? 0 : 1], 1);
	if (!safe) {
		cJSON *extra = cJSON_CreateObject();
		if (extra)
			cJSON_AddStringToObject(extra, "reason", why);
		recorder_publish(r, "recording_local_removed", rec, extra);
		cJSON_Delete(extra);
	}
	if (safe)
		LOG_INFO(&log_ret, "%s: local copy removed (%s; %lld bytes; the object is %s)", f->id, why, f->bytes, key);
	else
		LOG_WARN(&log_ret, "%s: local file removed by lifecycle.lua (%s; %lld bytes): it existed only here",
			 f->id, why, f->bytes);
	ok = true;
out:
	cJSON_Delete(rec);
	return ok;
}

bool recorder_retention_local_only(struct recorder *r)
{
	return r->pol && policy_lifecycle_deletes_local_only(r->pol);
}

/* What lifecycle.lua says of 'f' now; the reason goes into 'why'. */
static bool retention_ask_policy(struct recorder *r, const struct retention_file *f, char *why, size_t whylen)
{
	struct recorder_disk d;
	recorder_disk_look(r, &d);
	struct policy_retention_facts facts = {
		.age_days = f->age_days,
		.size_bytes = f->bytes,
		.local_only = !f->safe,
		.disk_free_bytes = d.free,
		.disk_total_bytes = d.total,
		.disk_free_ratio = d.total > 0 && d.free >= 0 ? (double)d.free / (double)d.total : 1.0,
	};
	cJSON *rec = state_get(r->st, f->id);
	if (!rec)
		return false;
	struct policy_retention_result res;
	policy_local_retention(r->pol, rec, &facts, &res);
	cJSON_Delete(rec);
	if (!res.remove)
		return false;
	snprintf(why, whylen, "lifecycle.lua: %s", res.reason[0] ? res.reason : "local_retention");
	return true;
}

int recorder_retention_run(struct recorder *r)
{
	if (r->retention_max_bytes <= 0 && r->retention_max_age_ms <= 0 && !r->pol)
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
		char why[200];
		bool by_policy = false;
		why[0] = '\0';
		if (f->safe && r->retention_max_age_ms > 0 && now - f->mtime_ns > r->retention_max_age_ms * TIME_NS_PER_MS)
			util_strlcpy(why, "older than retention.max_age", sizeof(why));
		else if (f->safe && r->retention_max_bytes > 0 && total > r->retention_max_bytes)
			util_strlcpy(why, "above retention.max_bytes", sizeof(why));
		else if (r->pol)
			by_policy = retention_ask_policy(r, f, why, sizeof(why));
		if (why[0] && retention_remove(r, f, why, by_policy)) {
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
