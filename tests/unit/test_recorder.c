/* test_recorder: the recording state machine (every status x operation) and
 * the request validators, without media, Redis or threads. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "recorder_fsm.h"

/* The expected transitions, written from SPEC §3 as a list: anything not
 * listed here must be refused with 400. Read-only requests are checked
 * separately. */
static const struct {
	enum recorder_status from;
	enum recorder_op op;
	enum recorder_status to;
} allowed[] = {
	{ RECORDER_PENDING, RECORDER_EV_FIRST_FRAME, RECORDER_RECORDING },
	{ RECORDER_PENDING, RECORDER_OP_CANCEL, RECORDER_CANCELLED },
	{ RECORDER_PENDING, RECORDER_EV_FAULT, RECORDER_FAILED },
	{ RECORDER_PENDING, RECORDER_EV_RECOVERED, RECORDER_PROCESSING },
	{ RECORDER_RECORDING, RECORDER_OP_PAUSE, RECORDER_PAUSED },
	{ RECORDER_RECORDING, RECORDER_OP_STOP, RECORDER_PROCESSING },
	{ RECORDER_RECORDING, RECORDER_OP_CANCEL, RECORDER_CANCELLED },
	{ RECORDER_RECORDING, RECORDER_EV_FAULT, RECORDER_FAILED },
	{ RECORDER_RECORDING, RECORDER_EV_MAX_DURATION, RECORDER_PROCESSING },
	{ RECORDER_RECORDING, RECORDER_EV_RECOVERED, RECORDER_PROCESSING },
	{ RECORDER_PAUSED, RECORDER_OP_RESUME, RECORDER_RECORDING },
	{ RECORDER_PAUSED, RECORDER_OP_STOP, RECORDER_PROCESSING },
	{ RECORDER_PAUSED, RECORDER_OP_CANCEL, RECORDER_CANCELLED },
	{ RECORDER_PAUSED, RECORDER_EV_FAULT, RECORDER_FAILED },
	{ RECORDER_PAUSED, RECORDER_EV_MAX_DURATION, RECORDER_PROCESSING },
	{ RECORDER_PAUSED, RECORDER_EV_RECOVERED, RECORDER_PROCESSING },
	{ RECORDER_PROCESSING, RECORDER_OP_CANCEL, RECORDER_CANCELLED },
	{ RECORDER_PROCESSING, RECORDER_EV_PROCESSED, RECORDER_COMPLETED },
	{ RECORDER_PROCESSING, RECORDER_EV_PROCESS_FAILED, RECORDER_FAILED },
	{ RECORDER_COMPLETED, RECORDER_OP_DELETE, RECORDER_COMPLETED },
	{ RECORDER_FAILED, RECORDER_OP_DELETE, RECORDER_FAILED },
};

static void test_table(void)
{
	int checked = 0;
	for (int s = 0; s < RECORDER_STATUS_COUNT; s++) {
		for (int o = 0; o < RECORDER_OP_COUNT; o++) {
			if (o == RECORDER_OP_START)
				continue;
			enum recorder_status to = RECORDER_STATUS_COUNT;
			int got = recorder_fsm_step((enum recorder_status)s, (enum recorder_op)o, &to);
			int want = 400;
			enum recorder_status want_to = RECORDER_STATUS_COUNT;
			if (o == RECORDER_OP_STATUS || o == RECORDER_OP_LIST || o == RECORDER_OP_LIST_USER ||
			    o == RECORDER_OP_DOWNLOAD || o == RECORDER_OP_ADMIN) {
				want = 200;
				want_to = (enum recorder_status)s;
			}
			for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
				if ((int)allowed[i].from == s && (int)allowed[i].op == o) {
					want = 200;
					want_to = allowed[i].to;
				}
			}
			if (got != want || to != want_to)
				fprintf(stderr, "%s x %s: got %d -> %s, want %d -> %s\n",
					recorder_status_name(s), recorder_op_name(o), got,
					recorder_status_name(to), want, recorder_status_name(want_to));
			CHECK_INT(got, want);
			CHECK_INT(to, want_to);
			checked++;
		}
	}
	CHECK_INT(checked, RECORDER_STATUS_COUNT * (RECORDER_OP_COUNT - 1));

	/* Start has no 'from' and always creates a pending recording. */
	enum recorder_status to = RECORDER_FAILED;
	CHECK_INT(recorder_fsm_step(RECORDER_COMPLETED, RECORDER_OP_START, &to), 200);
	CHECK_INT(to, RECORDER_PENDING);

	/* Out-of-range input is refused, not read past the table. */
	CHECK_INT(recorder_fsm_step((enum recorder_status)99, RECORDER_OP_STOP, &to), 400);
	CHECK_INT(recorder_fsm_step(RECORDER_RECORDING, (enum recorder_op)99, &to), 400);
	CHECK_INT(recorder_fsm_step((enum recorder_status)-1, RECORDER_OP_STOP, &to), 400);
}

static void test_classes(void)
{
	CHECK(recorder_status_live(RECORDER_PENDING));
	CHECK(recorder_status_live(RECORDER_RECORDING));
	CHECK(recorder_status_live(RECORDER_PAUSED));
	CHECK(!recorder_status_live(RECORDER_PROCESSING));
	CHECK(!recorder_status_live(RECORDER_COMPLETED));
	CHECK(recorder_status_final(RECORDER_COMPLETED));
	CHECK(recorder_status_final(RECORDER_FAILED));
	CHECK(recorder_status_final(RECORDER_CANCELLED));
	CHECK(!recorder_status_final(RECORDER_PROCESSING));
	CHECK(!recorder_status_final(RECORDER_PAUSED));
}

static void test_names(void)
{
	static const char *const names[] = { "pending", "recording", "paused", "processing",
					     "completed", "failed", "cancelled" };
	for (int i = 0; i < RECORDER_STATUS_COUNT; i++) {
		enum recorder_status s;
		CHECK_STR(recorder_status_name(i), names[i]);
		CHECK_INT(recorder_status_parse(names[i], &s), 0);
		CHECK_INT(s, i);
	}
	enum recorder_status s;
	CHECK_INT(recorder_status_parse("Recording", &s), -1);
	CHECK_INT(recorder_status_parse("", &s), -1);
	CHECK_INT(recorder_status_parse(NULL, &s), -1);
	CHECK_STR(recorder_status_name(RECORDER_STATUS_COUNT), "unknown");

	CHECK_STR(recorder_op_event(RECORDER_OP_START), "recording_started");
	CHECK_STR(recorder_op_event(RECORDER_OP_STOP), "recording_stopped");
	CHECK_STR(recorder_op_event(RECORDER_EV_MAX_DURATION), "recording_stopped");
	CHECK_STR(recorder_op_event(RECORDER_OP_PAUSE), "recording_paused");
	CHECK_STR(recorder_op_event(RECORDER_OP_RESUME), "recording_resumed");
	CHECK_STR(recorder_op_event(RECORDER_OP_CANCEL), "recording_cancelled");
	CHECK_STR(recorder_op_event(RECORDER_EV_PROCESSED), "recording_completed");
	CHECK_STR(recorder_op_event(RECORDER_EV_PROCESS_FAILED), "recording_failed");
	CHECK_STR(recorder_op_event(RECORDER_EV_FAULT), "recording_failed");
	CHECK(recorder_op_event(RECORDER_OP_STATUS) == NULL);
	CHECK(recorder_op_event(RECORDER_OP_COUNT) == NULL);
	for (int o = 0; o < RECORDER_OP_COUNT; o++)
		CHECK(strcmp(recorder_op_name(o), "unknown") != 0);
}

static void test_validators(void)
{
	char id128[129], id129[130];
	memset(id128, 'a', 128);
	id128[128] = 0;
	memset(id129, 'b', 129);
	id129[129] = 0;

	CHECK(recorder_room_id_valid("room_123"));
	CHECK(recorder_room_id_valid("A.b-c_9"));
	CHECK(recorder_room_id_valid("x"));
	CHECK(recorder_room_id_valid(id128));
	CHECK(!recorder_room_id_valid(id129));
	CHECK(!recorder_room_id_valid(""));
	CHECK(!recorder_room_id_valid(NULL));
	CHECK(!recorder_room_id_valid("room 1"));
	CHECK(!recorder_room_id_valid("room/1"));
	CHECK(!recorder_room_id_valid("r\xc3\xa9union"));
	CHECK(!recorder_room_id_valid("a:b"));
	CHECK(!recorder_room_id_valid("."));
	CHECK(!recorder_room_id_valid(".."));
	CHECK(recorder_room_id_valid("..."));
	CHECK(recorder_room_id_valid(".a"));

	CHECK(recorder_recording_id_valid("3f2c1d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"));
	CHECK(!recorder_recording_id_valid("3f2c1d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5"));
	CHECK(!recorder_recording_id_valid("3f2c1d4e5a6b4c7d8e9f0a1b2c3d4e5f"));
	CHECK(!recorder_recording_id_valid("../../etc/passwd"));
	CHECK(!recorder_recording_id_valid(""));
	CHECK(!recorder_recording_id_valid(NULL));

	CHECK(recorder_format_valid("webm"));
	CHECK(recorder_format_valid("mkv"));
	CHECK(recorder_format_valid("mp4"));
	CHECK(!recorder_format_valid("WEBM"));
	CHECK(!recorder_format_valid("avi"));
	CHECK(!recorder_format_valid(""));
	CHECK(!recorder_format_valid(NULL));
}

int main(void)
{
	test_table();
	test_classes();
	test_names();
	test_validators();
	return check_exit();
}
