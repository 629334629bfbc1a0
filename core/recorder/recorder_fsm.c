/* recorder_fsm: the transition table of SPEC §3 and the request validators. */
#include "recorder_fsm.h"

#include <string.h>

#include "common_util.h"

/* A cell of the table: the status a recording moves to, or NONE when the
 * operation is refused in that status. */
#define NONE (-1)
#define SAME (-2)

/* The whole state machine. Rows are the status before, columns the
 * operation; START is absent because it has no 'from'. Read-only requests
 * (STATUS, the lists, DOWNLOAD, ADMIN) are allowed everywhere and keep the status.
 * DELETE keeps the status too: it removes a finished recording for good. */
static const int fsm_table[RECORDER_STATUS_COUNT][RECORDER_OP_COUNT] = {
	[RECORDER_PENDING] = {
		[RECORDER_OP_START] = NONE,
		[RECORDER_OP_STOP] = NONE,
		[RECORDER_OP_PAUSE] = NONE,
		[RECORDER_OP_RESUME] = NONE,
		[RECORDER_OP_CANCEL] = RECORDER_CANCELLED,
		[RECORDER_OP_STATUS] = SAME,
		[RECORDER_OP_LIST] = SAME,
		[RECORDER_OP_LIST_USER] = SAME,
		[RECORDER_OP_DOWNLOAD] = SAME,
		[RECORDER_OP_ADMIN] = SAME,
		[RECORDER_OP_DELETE] = NONE,
		[RECORDER_EV_FIRST_FRAME] = RECORDER_RECORDING,
		[RECORDER_EV_FAULT] = RECORDER_FAILED,
		[RECORDER_EV_MAX_DURATION] = NONE,
		[RECORDER_EV_PROCESSED] = NONE,
		[RECORDER_EV_PROCESS_FAILED] = NONE,
		[RECORDER_EV_RECOVERED] = RECORDER_PROCESSING,
	},
	[RECORDER_RECORDING] = {
		[RECORDER_OP_START] = NONE,
		[RECORDER_OP_STOP] = RECORDER_PROCESSING,
		[RECORDER_OP_PAUSE] = RECORDER_PAUSED,
		[RECORDER_OP_RESUME] = NONE,
		[RECORDER_OP_CANCEL] = RECORDER_CANCELLED,
		[RECORDER_OP_STATUS] = SAME,
		[RECORDER_OP_LIST] = SAME,
		[RECORDER_OP_LIST_USER] = SAME,
		[RECORDER_OP_DOWNLOAD] = SAME,
		[RECORDER_OP_ADMIN] = SAME,
		[RECORDER_OP_DELETE] = NONE,
		[RECORDER_EV_FIRST_FRAME] = NONE,
		[RECORDER_EV_FAULT] = RECORDER_FAILED,
		[RECORDER_EV_MAX_DURATION] = RECORDER_PROCESSING,
		[RECORDER_EV_PROCESSED] = NONE,
		[RECORDER_EV_PROCESS_FAILED] = NONE,
		[RECORDER_EV_RECOVERED] = RECORDER_PROCESSING,
	},
	[RECORDER_PAUSED] = {
		[RECORDER_OP_START] = NONE,
		[RECORDER_OP_STOP] = RECORDER_PROCESSING,
		[RECORDER_OP_PAUSE] = NONE,
		[RECORDER_OP_RESUME] = RECORDER_RECORDING,
		[RECORDER_OP_CANCEL] = RECORDER_CANCELLED,
		[RECORDER_OP_STATUS] = SAME,
		[RECORDER_OP_LIST] = SAME,
		[RECORDER_OP_LIST_USER] = SAME,
		[RECORDER_OP_DOWNLOAD] = SAME,
		[RECORDER_OP_ADMIN] = SAME,
		[RECORDER_OP_DELETE] = NONE,
		[RECORDER_EV_FIRST_FRAME] = NONE,
		[RECORDER_EV_FAULT] = RECORDER_FAILED,
		[RECORDER_EV_MAX_DURATION] = RECORDER_PROCESSING,
		[RECORDER_EV_PROCESSED] = NONE,
		[RECORDER_EV_PROCESS_FAILED] = NONE,
		[RECORDER_EV_RECOVERED] = RECORDER_PROCESSING,
	},
	[RECORDER_PROCESSING] = {
		[RECORDER_OP_START] = NONE,
		[RECORDER_OP_STOP] = NONE,
		[RECORDER_OP_PAUSE] = NONE,
		[RECORDER_OP_RESUME] = NONE,
		[RECORDER_OP_CANCEL] = RECORDER_CANCELLED,
		[RECORDER_OP_STATUS] = SAME,
		[RECORDER_OP_LIST] = SAME,
		[RECORDER_OP_LIST_USER] = SAME,
		[RECORDER_OP_DOWNLOAD] = SAME,
		[RECORDER_OP_ADMIN] = SAME,
		[RECORDER_OP_DELETE] = NONE,
		[RECORDER_EV_FIRST_FRAME] = NONE,
		[RECORDER_EV_FAULT] = NONE,
		[RECORDER_EV_MAX_DURATION] = NONE,
		[RECORDER_EV_PROCESSED] = RECORDER_COMPLETED,
		[RECORDER_EV_PROCESS_FAILED] = RECORDER_FAILED,
		[RECORDER_EV_RECOVERED] = NONE,
	},
	[RECORDER_COMPLETED] = {
		[RECORDER_OP_START] = NONE,
		[RECORDER_OP_STOP] = NONE,
		[RECORDER_OP_PAUSE] = NONE,
		[RECORDER_OP_RESUME] = NONE,
		[RECORDER_OP_CANCEL] = NONE,
		[RECORDER_OP_STATUS] = SAME,
		[RECORDER_OP_LIST] = SAME,
		[RECORDER_OP_LIST_USER] = SAME,
		[RECORDER_OP_DOWNLOAD] = SAME,
		[RECORDER_OP_ADMIN] = SAME,
		[RECORDER_OP_DELETE] = SAME,
		[RECORDER_EV_FIRST_FRAME] = NONE,
		[RECORDER_EV_FAULT] = NONE,
		[RECORDER_EV_MAX_DURATION] = NONE,
		[RECORDER_EV_PROCESSED] = NONE,
		[RECORDER_EV_PROCESS_FAILED] = NONE,
		[RECORDER_EV_RECOVERED] = NONE,
	},
	[RECORDER_FAILED] = {
		[RECORDER_OP_START] = NONE,
		[RECORDER_OP_STOP] = NONE,
		[RECORDER_OP_PAUSE] = NONE,
		[RECORDER_OP_RESUME] = NONE,
		[RECORDER_OP_CANCEL] = NONE,
		[RECORDER_OP_STATUS] = SAME,
		[RECORDER_OP_LIST] = SAME,
		[RECORDER_OP_LIST_USER] = SAME,
		[RECORDER_OP_DOWNLOAD] = SAME,
		[RECORDER_OP_ADMIN] = SAME,
		[RECORDER_OP_DELETE] = SAME,
		[RECORDER_EV_FIRST_FRAME] = NONE,
		[RECORDER_EV_FAULT] = NONE,
		[RECORDER_EV_MAX_DURATION] = NONE,
		[RECORDER_EV_PROCESSED] = NONE,
		[RECORDER_EV_PROCESS_FAILED] = NONE,
		[RECORDER_EV_RECOVERED] = NONE,
	},
	[RECORDER_CANCELLED] = {
		[RECORDER_OP_START] = NONE,
		[RECORDER_OP_STOP] = NONE,
		[RECORDER_OP_PAUSE] = NONE,
		[RECORDER_OP_RESUME] = NONE,
		[RECORDER_OP_CANCEL] = NONE,
		[RECORDER_OP_STATUS] = SAME,
		[RECORDER_OP_LIST] = SAME,
		[RECORDER_OP_LIST_USER] = SAME,
		[RECORDER_OP_DOWNLOAD] = SAME,
		[RECORDER_OP_ADMIN] = SAME,
		[RECORDER_OP_DELETE] = NONE,
		[RECORDER_EV_FIRST_FRAME] = NONE,
		[RECORDER_EV_FAULT] = NONE,
		[RECORDER_EV_MAX_DURATION] = NONE,
		[RECORDER_EV_PROCESSED] = NONE,
		[RECORDER_EV_PROCESS_FAILED] = NONE,
		[RECORDER_EV_RECOVERED] = NONE,
	},
};

static const char *const fsm_status_names[RECORDER_STATUS_COUNT] = {
	[RECORDER_PENDING] = "pending",
	[RECORDER_RECORDING] = "recording",
	[RECORDER_PAUSED] = "paused",
	[RECORDER_PROCESSING] = "processing",
	[RECORDER_COMPLETED] = "completed",
	[RECORDER_FAILED] = "failed",
	[RECORDER_CANCELLED] = "cancelled",
};

/* Name and broadcast type of each operation; NULL type = no broadcast. */
static const struct {
	const char *name;
	const char *event;
} fsm_ops[RECORDER_OP_COUNT] = {
	[RECORDER_OP_START] = { "start", "recording_started" },
	[RECORDER_OP_STOP] = { "stop", "recording_stopped" },
	[RECORDER_OP_PAUSE] = { "pause", "recording_paused" },
	[RECORDER_OP_RESUME] = { "resume", "recording_resumed" },
	[RECORDER_OP_CANCEL] = { "cancel", "recording_cancelled" },
	[RECORDER_OP_STATUS] = { "status", NULL },
	[RECORDER_OP_LIST] = { "list", NULL },
	[RECORDER_OP_LIST_USER] = { "list_user", NULL },
	[RECORDER_OP_DOWNLOAD] = { "download", NULL },
	[RECORDER_OP_ADMIN] = { "admin", NULL },
	[RECORDER_OP_DELETE] = { "delete", "recording_deleted" },
	[RECORDER_EV_FIRST_FRAME] = { "first_frame", NULL },
	[RECORDER_EV_FAULT] = { "fault", "recording_failed" },
	[RECORDER_EV_MAX_DURATION] = { "max_duration", "recording_stopped" },
	[RECORDER_EV_PROCESSED] = { "processed", "recording_completed" },
	[RECORDER_EV_PROCESS_FAILED] = { "process_failed", "recording_failed" },
	[RECORDER_EV_RECOVERED] = { "recovered", NULL },
};

int recorder_fsm_step(enum recorder_status from, enum recorder_op op, enum recorder_status *to)
{
	if ((unsigned)op >= RECORDER_OP_COUNT)
		return 400;
	if (op == RECORDER_OP_START) {
		*to = RECORDER_PENDING;
		return 200;
	}
	if ((unsigned)from >= RECORDER_STATUS_COUNT)
		return 400;
	int next = fsm_table[from][op];
	if (next == NONE)
		return 400;
	*to = next == SAME ? from : (enum recorder_status)next;
	return 200;
}

bool recorder_status_live(enum recorder_status s)
{
	return s == RECORDER_PENDING || s == RECORDER_RECORDING || s == RECORDER_PAUSED;
}

bool recorder_status_final(enum recorder_status s)
{
	return s == RECORDER_COMPLETED || s == RECORDER_FAILED || s == RECORDER_CANCELLED;
}

const char *recorder_status_name(enum recorder_status s)
{
	if ((unsigned)s >= RECORDER_STATUS_COUNT)
		return "unknown";
	return fsm_status_names[s];
}

int recorder_status_parse(const char *s, enum recorder_status *out)
{
	if (!s)
		return -1;
	for (int i = 0; i < RECORDER_STATUS_COUNT; i++) {
		if (strcmp(s, fsm_status_names[i]) == 0) {
			*out = (enum recorder_status)i;
			return 0;
		}
	}
	return -1;
}

const char *recorder_op_name(enum recorder_op op)
{
	if ((unsigned)op >= RECORDER_OP_COUNT)
		return "unknown";
	return fsm_ops[op].name;
}

const char *recorder_op_event(enum recorder_op op)
{
	if ((unsigned)op >= RECORDER_OP_COUNT)
		return NULL;
	return fsm_ops[op].event;
}

bool recorder_room_id_valid(const char *room_id)
{
	if (!room_id)
		return false;
	size_t n = 0;
	for (const char *p = room_id; *p; p++, n++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok || n >= 128)
			return false;
	}
	/* "." and ".." are path components, not names: a room's files and
	 * URLs would resolve elsewhere. */
	return n >= 1 && strcmp(room_id, ".") != 0 && strcmp(room_id, "..") != 0;
}

bool recorder_recording_id_valid(const char *id)
{
	return id && util_uuid_valid(id);
}

bool recorder_format_valid(const char *format)
{
	return format && (strcmp(format, "webm") == 0 || strcmp(format, "mkv") == 0 ||
			  strcmp(format, "mp4") == 0);
}
