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
#include "recorder.h"
#include "recorder_internal.h"

static struct log_handle log_cfg = LOG_HANDLE("recorder/config");

/* The option table. Keys of SPEC §6 keep the reference's names exactly. */
static const struct config_option recorder_options[] = {
	{ "storage_backend", CONFIG_STR, "local", "where finished recordings live: local or s3" },
	{ "local_storage_path", CONFIG_STR, "/tmp/webrtc_recordings",
	  "directory holding one folder per recording" },
	{ "s3_bucket", CONFIG_STR, "", "S3 bucket for storage_backend s3 (empty: none)" },
	{ "s3_prefix", CONFIG_STR, "webrtc-recordings/", "prefix of the S3 object keys" },
	{ "max_recording_duration", CONFIG_DURATION, "7200",
	  "a recording stops by itself after this much active time (bare number: seconds)" },
	{ "max_concurrent_recordings", CONFIG_INT, "10",
	  "live recordings allowed at once across every node sharing the Redis" },
	{ "max_recordings_per_user", CONFIG_INT, "0",
	  "live recordings one user may hold at once; 0: only the global limit applies" },
	{ "default_format", CONFIG_STR, "webm", "format when a start names none: webm, mkv or mp4" },
	{ "default_quality", CONFIG_STR, "medium",
	  "quality when a start names none: low, medium, high or ultra" },
	{ "enable_transcoding", CONFIG_BOOL, "true",
	  "remux mp4 recordings from the live Matroska file at processing" },
	{ "node_id", CONFIG_STR, "",
	  "this node's name in Redis (empty: kept in state_dir/node_id, else the host name)" },
	{ "recorder.workers", CONFIG_INT, "2", "processing threads (finalize, remux, upload)" },
	{ "recorder.keep_local", CONFIG_BOOL, "false",
	  "keep the local file after its S3 copy is verified (lifecycle.lua may decide instead)" },
	{ "recorder.first_frame_timeout", CONFIG_DURATION, "60s",
	  "a recording whose source sends nothing this long fails and frees its slot (0: wait forever)" },
	{ "recorder.max_stored_per_user", CONFIG_INT, "10000",
	  "records (of any status, until they expire or are deleted) one user may have; a start beyond gets 429 (0: no cap)" },
	{ "recorder.disk_reserve", CONFIG_SIZE, "512M",
	  "free space a start must leave beyond what the recording may need (else 507)" },
	{ "recorder.disk_low_water", CONFIG_SIZE, "256M",
	  "below this much free space, live recordings stop cleanly (reason disk_low)" },
	{ "recorder.encode_budget", CONFIG_INT, "0",
	  "Mpixel/s of video this node may encode at once across its live recordings (a start beyond "
	  "it gets 503); 0: the default measured for this machine's cores" },
	{ "retention.max_bytes", CONFIG_SIZE, "0",
	  "local files of finished recordings above this total: the oldest already verified in S3 go (0: no limit)" },
	{ "retention.max_age", CONFIG_DURATION, "0",
	  "local files of recordings verified in S3 older than this go (0: kept)" },
	{ "retention.interval", CONFIG_DURATION, "60s", "how often retention looks at the local files" },
	{ "room.*.source", CONFIG_STR, NULL, "media source of a room: test, file or rtp" },
	{ "room.*.args", CONFIG_STR, NULL, "arguments of the room's source, \"k=v,k=v\"" },
	{ 0 },
};

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
