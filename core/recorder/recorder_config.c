/* recorder_config: the options the recording manager reads (SPEC §6 with the
 * reference's defaults) and this node's id. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "config.h"
#include "media.h"
#include "recorder.h"
#include "recorder_internal.h"
#include "storage_s3.h"

static struct log_handle log_cfg = LOG_HANDLE("recorder/config");

static const char *const recorder_backends[] = { "local", "s3", NULL };
static const char *const recorder_formats[] = { "webm", "mkv", "mp4", NULL };
static const char *const recorder_qualities[] = { "low", "medium", "high", "ultra", NULL };

/* The option table. Keys of SPEC §6 keep the reference's names exactly. */
static const struct config_option recorder_options[] = {
	{ "storage_backend", CONFIG_STR, "local", "where finished recordings live: local or s3",
	  .choices = recorder_backends },
	{ "local_storage_path", CONFIG_STR, "/tmp/webrtc_recordings",
	  "directory holding one folder per recording" },
	{ "s3_bucket", CONFIG_STR, "", "S3 bucket for storage_backend s3 (empty: none)" },
	{ "s3_prefix", CONFIG_STR, "webrtc-recordings/", "prefix of the S3 object keys" },
	{ "max_recording_duration", CONFIG_DURATION, "7200",
	  "a recording stops by itself after this much active time (bare number: seconds)", .flags = CONFIG_LIVE },
	{ "max_concurrent_recordings", CONFIG_INT, "10",
	  "live recordings allowed at once across every node sharing the Redis", .flags = CONFIG_LIVE },
	{ "max_recordings_per_user", CONFIG_INT, "0",
	  "live recordings one user may hold at once; 0: only the global limit applies", .flags = CONFIG_LIVE },
	{ "default_format", CONFIG_STR, "webm", "format when a start names none: webm, mkv or mp4",
	  .choices = recorder_formats },
	{ "default_quality", CONFIG_STR, "medium",
	  "quality when a start names none: low, medium, high or ultra", .choices = recorder_qualities },
	{ "enable_transcoding", CONFIG_BOOL, "true",
	  "remux mp4 recordings from the live Matroska file at processing", .flags = CONFIG_LIVE },
	{ "node_id", CONFIG_STR, "",
	  "this node's name in Redis (empty: kept in state_dir/node_id, else the host name)" },
	{ "recorder.workers", CONFIG_INT, "2", "processing threads (finalize, remux, upload)" },
	{ "recorder.keep_local", CONFIG_BOOL, "false",
	  "keep the local file after its S3 copy is verified (lifecycle.lua may decide instead)", .flags = CONFIG_LIVE },
	{ "recorder.first_frame_timeout", CONFIG_DURATION, "60s",
	  "a recording whose source sends nothing this long fails and frees its slot (0: wait forever)",
	  .flags = CONFIG_LIVE },
	{ "recorder.max_stored_per_user", CONFIG_INT, "10000",
	  "records (of any status, until they expire or are deleted) one user may have; a start beyond gets 429 (0: no cap)",
	  .flags = CONFIG_LIVE },
	{ "recorder.disk_reserve", CONFIG_SIZE, "512M",
	  "free space a start must leave beyond what the recording may need (else 507)", .flags = CONFIG_LIVE },
	{ "recorder.disk_low_water", CONFIG_SIZE, "256M",
	  "below this much free space, live recordings stop cleanly (reason disk_low)", .flags = CONFIG_LIVE },
	{ "recorder.encode_budget", CONFIG_INT, "0",
	  "Mpixel/s of video this node may encode at once across its live recordings (a start beyond "
	  "it gets 503); 0: the default measured for this machine's cores", .flags = CONFIG_LIVE },
	{ "retention.max_bytes", CONFIG_SIZE, "0",
	  "local files of finished recordings above this total: the oldest already verified in S3 go (0: no limit)",
	  .flags = CONFIG_LIVE },
	{ "retention.max_age", CONFIG_DURATION, "0",
	  "local files of recordings verified in S3 older than this go (0: kept)", .flags = CONFIG_LIVE },
	{ "retention.interval", CONFIG_DURATION, "60s", "how often retention looks at the local files",
	  .flags = CONFIG_LIVE },
	{ "room.*.source", CONFIG_STR, NULL, "media source of a room: test, file, rtp or whip", .flags = CONFIG_LIVE },
	{ "room.*.args", CONFIG_STR, NULL, "arguments of the room's source, \"k=v,k=v\"", .flags = CONFIG_LIVE },
	{ 0 },
};

int recorder_limits_read(const struct config *cfg, struct recorder_limits *l, char *err, size_t errlen)
{
	memset(l, 0, sizeof(*l));
	l->max_duration_ms = config_get_int(cfg, "max_recording_duration");
	if (l->max_duration_ms <= 0) {
		snprintf(err, errlen, "max_recording_duration must be positive");
		return -1;
	}
	long long lim = config_get_int(cfg, "max_concurrent_recordings");
	if (lim <= 0 || lim > 1000000) {
		snprintf(err, errlen, "max_concurrent_recordings must be at least 1");
		return -1;
	}
	l->max_concurrent = (int)lim;
	lim = config_get_int(cfg, "max_recordings_per_user");
	if (lim < 0 || lim > 1000000) {
		snprintf(err, errlen, "max_recordings_per_user must be 0 (off) or positive");
		return -1;
	}
	l->max_per_user = (int)lim;
	lim = config_get_int(cfg, "recorder.max_stored_per_user");
	if (lim < 0 || lim > 100000000) {
		snprintf(err, errlen, "recorder.max_stored_per_user must be 0 (no cap) or positive");
		return -1;
	}
	l->max_stored_per_user = (int)lim;
	l->transcoding = config_get_bool(cfg, "enable_transcoding");
	l->keep_local = config_get_bool(cfg, "recorder.keep_local");
	l->disk_reserve = config_get_int(cfg, "recorder.disk_reserve");
	l->disk_low_water = config_get_int(cfg, "recorder.disk_low_water");
	l->first_frame_timeout_ms = config_get_int(cfg, "recorder.first_frame_timeout");
	l->retention_max_bytes = config_get_int(cfg, "retention.max_bytes");
	l->retention_max_age_ms = config_get_int(cfg, "retention.max_age");
	l->retention_interval_ms = config_get_int(cfg, "retention.interval");
	if (l->retention_max_bytes < 0 || l->retention_max_age_ms < 0 || l->retention_interval_ms < 100) {
		snprintf(err, errlen, "retention.max_bytes and retention.max_age must be 0 or positive, "
			 "retention.interval at least 100ms");
		return -1;
	}
	lim = config_get_int(cfg, "recorder.encode_budget");
	if (lim < 0 || lim > 1000000) {
		snprintf(err, errlen, "recorder.encode_budget must be 0 (measured default) or Mpixel/s");
		return -1;
	}
	l->encode_budget_px = lim * 1000000;
	lim = config_get_int(cfg, "recorder.workers");
	l->n_workers = lim < 1 ? 1 : lim > 16 ? 16 : (int)lim;
	return 0;
}

void recorder_limits_apply(struct recorder *r, const struct recorder_limits *l)
{
	/* Other threads read these fields without the lock: each is one
	 * aligned word, stored whole (a reader sees the old or the new value). */
	pthread_mutex_lock(&r->lock);
	__atomic_store_n(&r->max_duration_ms, l->max_duration_ms, __ATOMIC_RELAXED);
	__atomic_store_n(&r->max_concurrent, l->max_concurrent, __ATOMIC_RELAXED);
	__atomic_store_n(&r->max_per_user, l->max_per_user, __ATOMIC_RELAXED);
	__atomic_store_n(&r->max_stored_per_user, l->max_stored_per_user, __ATOMIC_RELAXED);
	__atomic_store_n(&r->transcoding, l->transcoding, __ATOMIC_RELAXED);
	__atomic_store_n(&r->keep_local, l->keep_local, __ATOMIC_RELAXED);
	__atomic_store_n(&r->disk_reserve, l->disk_reserve, __ATOMIC_RELAXED);
	__atomic_store_n(&r->disk_low_water, l->disk_low_water, __ATOMIC_RELAXED);
	__atomic_store_n(&r->first_frame_timeout_ms, l->first_frame_timeout_ms, __ATOMIC_RELAXED);
	__atomic_store_n(&r->retention_max_bytes, l->retention_max_bytes, __ATOMIC_RELAXED);
	__atomic_store_n(&r->retention_max_age_ms, l->retention_max_age_ms, __ATOMIC_RELAXED);
	__atomic_store_n(&r->retention_interval_ms, l->retention_interval_ms, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&r->lock);
	media_encode_set_budget(l->encode_budget_px);
}

int recorder_reload(struct recorder *r, char *err, size_t errlen)
{
	struct recorder_limits l;
	if (recorder_limits_read(r->cfg, &l, err, errlen) < 0)
		return -1;
	recorder_limits_apply(r, &l);
	if (r->s3 && storage_s3_reload_credentials(r->s3, r->cfg) < 0) {
		snprintf(err, errlen, "the S3 credentials are incomplete: the previous ones stay");
		return -1;
	}
	recorder_control_kick(r);
	return 0;
}

int recorder_config_check(const struct config *cfg, char *err, size_t errlen)
{
	struct recorder_limits l;
	const char *v = config_get_str(cfg, "local_storage_path");
	if (v && strlen(v) >= RECORDER_STORAGE_MAX) {
		snprintf(err, errlen, "local_storage_path is longer than %d bytes", RECORDER_STORAGE_MAX - 1);
		return -1;
	}
	/* storage_backend and default_format are enumerations of the table. */
	v = config_get_str(cfg, "default_quality");
	if (!media_preset_find(v)) {
		snprintf(err, errlen, "default_quality must be low, medium, high or ultra, not '%s'", v ? v : "");
		return -1;
	}
	if (recorder_limits_read(cfg, &l, err, errlen) < 0)
		return -1;
	v = config_get_str(cfg, "storage_backend");
	if (v && strcmp(v, "s3") == 0) {
		char s3err[256] = "";
		struct storage_s3 *s3 = storage_s3_new_from_config(cfg, s3err, sizeof(s3err));
		if (!s3) {
			snprintf(err, errlen, "storage_backend s3: %s", s3err);
			return -1;
		}
		storage_s3_free(s3);
	}
	return 0;
}

int recorder_config_register(struct config *c)
{
	if (config_register(c, recorder_options) < 0)
		return -1;
	if (recorder_whip_config_register(c) < 0)
		return -1;
	return recorder_rtp_config_register(c);
}

/* Reads or creates {state_dir}/node_id. Returns 0 with the id in 'out'.
 * 'tries' bounds the waits for another process that created the file but
 * has not written it yet; an empty file left by a crash ends in -1 rather
 * than endless retries. */
static int config_node_id_file(const char *state_dir, char *out, size_t outlen, int tries)
{
	char path[4096];
	if (snprintf(path, sizeof(path), "%s/node_id", state_dir) >= (int)sizeof(path))
		return -1;
	char *text = util_read_file(path, NULL);
	if (text) {
		text[strcspn(text, " \t\r\n")] = 0;
		int ok = text[0] != 0;
		if (ok)
			util_strlcpy(out, text, outlen);
		free(text);
		if (ok)
			return 0;
	}
	if (util_mkdir_p(state_dir, 0755) < 0)
		return -1;
	char id[UUID_STR_LEN];
	util_uuid_v4(id);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0) {
		/* Another process created it first: use its id. */
		if (errno == EEXIST && tries > 0) {
			time_sleep_ns(10 * 1000 * 1000);
			return config_node_id_file(state_dir, out, outlen, tries - 1);
		}
		if (errno == EEXIST)
			LOG_ERROR(&log_cfg, "%s is empty: remove it to get a new node id", path);
		return -1;
	}
	size_t n = strlen(id);
	int rc = write(fd, id, n) == (ssize_t)n && write(fd, "\n", 1) == 1 ? 0 : -1;
	close(fd);
	if (rc == 0)
		util_strlcpy(out, id, outlen);
	return rc;
}

int recorder_node_id(const struct config *c, char *out, size_t outlen)
{
	const char *set = c ? config_get_str(c, "node_id") : NULL;
	if (set && set[0]) {
		util_strlcpy(out, set, outlen);
		return 0;
	}
	const char *state_dir = c ? config_get_str(c, "state_dir") : NULL;
	if (state_dir && state_dir[0] && config_node_id_file(state_dir, out, outlen, 50) == 0)
		return 0;
	if (gethostname(out, outlen) == 0 && out[0]) {
		out[outlen - 1] = 0;
		return 0;
	}
	LOG_ERROR(&log_cfg, "cannot determine a node id");
	return -1;
}
