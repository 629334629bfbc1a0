/* test_recorder_config: the recorder's options carry the reference's
 * defaults (SPEC §6), bad values are refused, and the node id is kept
 * across calls in state_dir. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common_util.h"
#include "config.h"
#include "recorder.h"

static const struct config_option state_dir_option[] = {
	{ "state_dir", CONFIG_STR, NULL, "where the node keeps its files" },
	{ 0 },
};

static void test_defaults(void)
{
	struct config *c = config_new();
	CHECK_INT(recorder_config_register(c), 0);
	CHECK_STR(config_get_str(c, "storage_backend"), "local");
	CHECK_STR(config_get_str(c, "local_storage_path"), "/tmp/webrtc_recordings");
	CHECK_STR(config_get_str(c, "s3_prefix"), "webrtc-recordings/");
	CHECK_INT(config_get_int(c, "max_recording_duration"), 7200LL * 1000);
	CHECK_INT(config_get_int(c, "max_concurrent_recordings"), 10);
	CHECK_STR(config_get_str(c, "default_format"), "webm");
	CHECK_STR(config_get_str(c, "default_quality"), "medium");
	CHECK(config_get_bool(c, "enable_transcoding"));
	CHECK_INT(config_get_int(c, "max_recordings_per_user"), 0);
	const char *bucket = config_get_str(c, "s3_bucket");
	CHECK(bucket == NULL || bucket[0] == 0);

	char err[256];
	CHECK(config_set(c, "max_concurrent_recordings", "ten", err, sizeof(err)) < 0);
	CHECK(config_set(c, "enable_transcoding", "perhaps", err, sizeof(err)) < 0);
	CHECK_INT(config_set(c, "max_recording_duration", "2h", err, sizeof(err)), 0);
	CHECK_INT(config_get_int(c, "max_recording_duration"), 7200LL * 1000);
	CHECK_INT(config_set(c, "room.lobby.source", "rtp", err, sizeof(err)), 0);
	CHECK_STR(config_get_str(c, "room.lobby.source"), "rtp");
	CHECK(config_set(c, "room.lobby.colour", "red", err, sizeof(err)) < 0);
	config_free(c);
}

static void test_node_id(void)
{
	char dir[] = "/tmp/test_recorder_config.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char sub[128], err[256], a[128] = "", b[128] = "", d[128] = "";
	snprintf(sub, sizeof(sub), "%s/state", dir);

	struct config *c = config_new();
	CHECK_INT(recorder_config_register(c), 0);
	CHECK_INT(config_register(c, state_dir_option), 0);
	CHECK_INT(config_set(c, "state_dir", sub, err, sizeof(err)), 0);
	CHECK_INT(recorder_node_id(c, a, sizeof(a)), 0);
	CHECK(util_uuid_valid(a));
	CHECK_INT(recorder_node_id(c, b, sizeof(b)), 0);
	CHECK_STR(b, a); /* kept, not made anew */

	CHECK_INT(config_set(c, "node_id", "edge-7", err, sizeof(err)), 0);
	CHECK_INT(recorder_node_id(c, d, sizeof(d)), 0);
	CHECK_STR(d, "edge-7");
	config_free(c);
	util_rm_rf(dir);
}

int main(void)
{
	test_defaults();
	test_node_id();
	return check_exit();
}
