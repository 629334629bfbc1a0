/* recorder_storage: what an operator needs to know about the node's
 * storage, for /healthz and /metrics: the disk under local_storage_path
 * (free, total, whether a start would be refused for space), the S3 uploads
 * (bytes, failures by cause, the queue, the last failure) and the
 * recordings by status as the state store holds them (every node's, not
 * counts since this process started). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "media.h"
#include "recorder_internal.h"
#include "state.h"
#include "storage.h"
#include "storage_s3.h"

static struct log_handle log_sto = LOG_HANDLE("recorder/storage");

/* How long a count of the records by status is reused (a count reads every
 * record: O(records) per count, so scrapes do not each pay it). */
#define RECORDER_COUNT_TTL_NS (10 * TIME_NS_PER_SEC)

static const char *const upload_cause_names[RECORDER_UPLOAD_CAUSES] = {
	"network", "refused", "verify", "local_file", "other",
};

static int upload_cause(int code)
{
	switch (code) {
	case STORAGE_ERR_NETWORK: return 0;
	case STORAGE_ERR_REFUSED: return 1;
	case STORAGE_ERR_VERIFY: return 2;
	case STORAGE_ERR_IO: return 3;
	default: return 4;
	}
}

void recorder_upload_note(struct recorder *r, int code, const char *err)
{
	pthread_mutex_lock(&r->uploads_lock);
	if (code == 0) {
		r->uploads.done++;
		r->uploads.last_ok_ns = time_wall_ns();
	} else {
		r->uploads.failed[upload_cause(code)]++;
		r->uploads.last_failure_ns = time_wall_ns();
		snprintf(r->uploads.last_failure, sizeof(r->uploads.last_failure), "%s", err && *err ? err : "?");
	}
	pthread_mutex_unlock(&r->uploads_lock);
}

void recorder_disk_look(struct recorder *r, struct recorder_disk *d)
{
	struct statvfs vfs;
	memset(d, 0, sizeof(*d));
	d->free = d->total = -1;
	if (statvfs(r->storage_path, &vfs) != 0) {
		snprintf(d->why, sizeof(d->why), "%s: %s", r->storage_path, strerror(errno));
		d->refused = true;
		return;
	}
	d->free = (long long)vfs.f_bavail * (long long)vfs.f_frsize;
	d->total = (long long)vfs.f_blocks * (long long)vfs.f_frsize;
	/* What recorder_policy_admit asks of a start at the default quality
	 * for the whole max_recording_duration. */
	const struct media_preset *p = media_preset_find(r->default_quality);
	double need = p ? ((double)p->video_bps + (double)p->audio_bps) / 8.0 * ((double)r->max_duration_ms / 1000.0)
			: 0.0;
	d->need = (long long)need;
	if (d->free < r->disk_low_water) {
		snprintf(d->why, sizeof(d->why),
			 "not enough free disk to start a recording: %lld MB free on %s, below recorder.disk_low_water "
			 "(%lld MB); starts answer 507",
			 d->free >> 20, r->storage_path, r->disk_low_water >> 20);
		d->refused = true;
	} else if ((double)(d->free - r->disk_reserve) < need) {
		snprintf(d->why, sizeof(d->why),
			 "not enough free disk to start a recording: %lld MB free on %s, %lld MB reserved, a %s "
			 "recording may need %lld MB; starts answer 507",
			 d->free >> 20, r->storage_path, r->disk_reserve >> 20, r->default_quality, d->need >> 20);
		d->refused = true;
	}
}

/* The sentence that tells what local retention can free: the shipped
 * lifecycle.lua never deletes a recording that exists only here. */
static const char *recorder_disk_freeing(struct recorder *r)
{
	return recorder_retention_local_only(r)
		       ? "lifecycle.lua's local_retention may delete recordings kept only here"
		       : "nothing that exists only on this node is deleted to make room "
			 "(lifecycle.lua keeps local-only recordings)";
}

bool recorder_storage_health(struct recorder *r, char *why, size_t whylen)
{
	struct recorder_disk d;
	why[0] = '\0';
	recorder_disk_look(r, &d);
	if (d.refused) {
		snprintf(why, whylen, "%s; %s", d.why, recorder_disk_freeing(r));
		return true;
	}
	if (!r->s3)
		return true;
	pthread_mutex_lock(&r->uploads_lock);
	bool failing = r->uploads.last_failure_ns > r->uploads.last_ok_ns;
	char last[RECORDER_DETAIL_MAX];
	util_strlcpy(last, r->uploads.last_failure, sizeof(last));
	pthread_mutex_unlock(&r->uploads_lock);
	int queue = atomic_load(&r->jobs_queued) + atomic_load(&r->jobs_running);
	if (failing && queue > 0)
		snprintf(why, whylen, "S3 uploads failing (last: %s); %d recording%s waiting, kept on the local disk",
			 last, queue, queue == 1 ? "" : "s");
	return true;
}

void recorder_storage_refused(struct recorder *r, const char *room_id, const char *user_id, const char *reason)
{
	struct recorder_disk d;
	recorder_disk_look(r, &d);
	cJSON *data = cJSON_CreateObject();
	cJSON *extra = cJSON_CreateObject();
	char why[RECORDER_DETAIL_MAX + 200];
	if (!data || !extra)
		goto out;
	snprintf(why, sizeof(why), "%s; %s", reason, recorder_disk_freeing(r));
	cJSON_AddStringToObject(data, "room_id", room_id);
	cJSON_AddStringToObject(data, "user_id", user_id ? user_id : "");
	cJSON_AddStringToObject(extra, "code", "insufficient_storage");
	cJSON_AddStringToObject(extra, "detail", why);
	cJSON_AddNumberToObject(extra, "disk_free_bytes", (double)d.free);
	cJSON_AddNumberToObject(extra, "disk_total_bytes", (double)d.total);
	cJSON_AddBoolToObject(extra, "local_only_deleted", recorder_retention_local_only(r));
	recorder_publish(r, "storage_full", data, extra);
	LOG_WARN(&log_sto, "start in room %s refused: %s", room_id, why);
out:
	cJSON_Delete(data);
	cJSON_Delete(extra);
}

cJSON *recorder_storage_json(struct recorder *r)
{
	struct recorder_disk d;
	recorder_disk_look(r, &d);
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON *disk = cJSON_AddObjectToObject(o, "disk");
	if (disk) {
		cJSON_AddStringToObject(disk, "path", r->storage_path);
		cJSON_AddNumberToObject(disk, "free_bytes", (double)d.free);
		cJSON_AddNumberToObject(disk, "total_bytes", (double)d.total);
		cJSON_AddBoolToObject(disk, "starts_refused", d.refused);
		cJSON_AddBoolToObject(disk, "local_only_deleted", recorder_retention_local_only(r));
	}
	if (r->s3) {
		cJSON *up = cJSON_AddObjectToObject(o, "uploads");
		struct storage_s3_stats ss;
		storage_s3_get_stats(r->s3, &ss);
		pthread_mutex_lock(&r->uploads_lock);
		struct recorder_uploads u = r->uploads;
		pthread_mutex_unlock(&r->uploads_lock);
		char ts[40];
		if (up) {
			cJSON_AddNumberToObject(up, "queue", atomic_load(&r->jobs_queued) + atomic_load(&r->jobs_running));
			cJSON_AddNumberToObject(up, "uploaded", (double)u.done);
			cJSON_AddNumberToObject(up, "bytes_sent", (double)ss.bytes_sent);
			uint64_t failed = 0;
			for (int i = 0; i < RECORDER_UPLOAD_CAUSES; i++)
				failed += u.failed[i];
			cJSON_AddNumberToObject(up, "failed", (double)failed);
			if (u.last_failure_ns) {
				cJSON_AddStringToObject(up, "last_failure", u.last_failure);
				cJSON_AddStringToObject(up, "last_failure_at", time_iso8601(u.last_failure_ns, ts, sizeof(ts)));
			} else {
				cJSON_AddNullToObject(up, "last_failure");
				cJSON_AddNullToObject(up, "last_failure_at");
			}
		}
	}
	return o;
}

int recorder_state_counts(struct recorder *r, long long counts[RECORDER_STATUS_COUNT])
{
	int64_t now = time_mono_ns();
	int rc = 0;
	pthread_mutex_lock(&r->counts_lock);
	if (!r->counts_at_ns || now - r->counts_at_ns > RECORDER_COUNT_TTL_NS) {
		long long c[STATE_STATUS_COUNT];
		rc = state_count_by_status(r->st, c);
		if (rc == STATE_OK) {
			for (int i = 0; i < RECORDER_STATUS_COUNT && i < STATE_STATUS_COUNT; i++)
				r->counts[i] = c[i];
			r->counts_at_ns = now;
		}
	}
	if (r->counts_at_ns)
		memcpy(counts, r->counts, sizeof(r->counts));
	bool have = r->counts_at_ns != 0;
	pthread_mutex_unlock(&r->counts_lock);
	return have ? 0 : -1;
}

char *recorder_storage_metrics(void *opaque)
{
	struct recorder *r = opaque;
	struct recorder_disk d;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	recorder_disk_look(r, &d);
	fprintf(f,
		"# HELP edgerec_disk_free_bytes Free space for recordings (local_storage_path) an unprivileged writer may use.\n"
		"# TYPE edgerec_disk_free_bytes gauge\nedgerec_disk_free_bytes %lld\n"
		"# HELP edgerec_disk_total_bytes Size of the file system holding local_storage_path.\n"
		"# TYPE edgerec_disk_total_bytes gauge\nedgerec_disk_total_bytes %lld\n"
		"# HELP edgerec_disk_starts_refused 1 when a start at the default quality would be refused for space (507).\n"
		"# TYPE edgerec_disk_starts_refused gauge\nedgerec_disk_starts_refused %d\n",
		d.free, d.total, d.refused ? 1 : 0);
	fprintf(f,
		"# HELP edgerec_retention_removed_total Local files of finished recordings removed by retention: "
		"copies safe in S3, or (lifecycle.lua's local_retention) recordings that existed only here.\n"
		"# TYPE edgerec_retention_removed_total counter\n"
		"edgerec_retention_removed_total{copy=\"safe_in_s3\"} %llu\n"
		"edgerec_retention_removed_total{copy=\"local_only\"} %llu\n",
		(unsigned long long)atomic_load(&r->retention_removed[0]),
		(unsigned long long)atomic_load(&r->retention_removed[1]));
	long long counts[RECORDER_STATUS_COUNT];
	if (recorder_state_counts(r, counts) == 0) {
		fprintf(f, "# HELP edgerec_recordings Recordings in the state store by status (every node sharing the "
			   "Redis; counted at most every 10 s).\n# TYPE edgerec_recordings gauge\n");
		for (int i = 0; i < RECORDER_STATUS_COUNT; i++)
			fprintf(f, "edgerec_recordings{status=\"%s\"} %lld\n",
				recorder_status_name((enum recorder_status)i), counts[i]);
	}
	if (r->s3) {
		struct storage_s3_stats ss;
		storage_s3_get_stats(r->s3, &ss);
		pthread_mutex_lock(&r->uploads_lock);
		struct recorder_uploads u = r->uploads;
		pthread_mutex_unlock(&r->uploads_lock);
		fprintf(f,
			"# HELP edgerec_s3_uploads_total Recordings uploaded to S3 and verified.\n"
			"# TYPE edgerec_s3_uploads_total counter\nedgerec_s3_uploads_total %llu\n"
			"# HELP edgerec_s3_upload_bytes_total Request body bytes S3 acknowledged (uploads and parts).\n"
			"# TYPE edgerec_s3_upload_bytes_total counter\nedgerec_s3_upload_bytes_total %llu\n"
			"# HELP edgerec_s3_requests_total HTTP exchanges with S3 attempted.\n"
			"# TYPE edgerec_s3_requests_total counter\nedgerec_s3_requests_total %llu\n"
			"# HELP edgerec_s3_retries_total S3 attempts repeated after a retryable failure.\n"
			"# TYPE edgerec_s3_retries_total counter\nedgerec_s3_retries_total %llu\n"
			"# HELP edgerec_s3_upload_failures_total Uploads (or their verification) that failed after every retry, by cause.\n"
			"# TYPE edgerec_s3_upload_failures_total counter\n",
			(unsigned long long)u.done, (unsigned long long)ss.bytes_sent, (unsigned long long)ss.requests,
			(unsigned long long)ss.retries);
		for (int i = 0; i < RECORDER_UPLOAD_CAUSES; i++)
			fprintf(f, "edgerec_s3_upload_failures_total{cause=\"%s\"} %llu\n", upload_cause_names[i],
				(unsigned long long)u.failed[i]);
		fprintf(f,
			"# HELP edgerec_s3_upload_queue Recordings on this node waiting for or in processing, which ends with "
			"the S3 upload.\n# TYPE edgerec_s3_upload_queue gauge\nedgerec_s3_upload_queue %d\n"
			"# HELP edgerec_s3_last_failure_timestamp_seconds When an upload last failed (0: never).\n"
			"# TYPE edgerec_s3_last_failure_timestamp_seconds gauge\nedgerec_s3_last_failure_timestamp_seconds %.3f\n",
			atomic_load(&r->jobs_queued) + atomic_load(&r->jobs_running), (double)u.last_failure_ns / 1e9);
	}
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}
