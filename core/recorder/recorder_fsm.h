/* recorder_fsm: the recording state machine of SPEC §3 as one pure table,
 * and the validators for what a request names (room ids, recording ids,
 * formats).
 *
 * Provides: enum recorder_status, enum recorder_op, recorder_fsm_step() and
 * the name/parse helpers. Uses nothing but libc, so the table is tested
 * without media, Redis or threads (tests/unit/test_recorder.c).
 *
 * Statuses: pending -> recording <-> paused -> processing -> completed|failed;
 * pending|recording|paused -> cancelled; processing -> cancelled too (an
 * extension of SPEC §3: the processing job stops, its S3 upload is aborted
 * and the files removed); any live status -> failed on a pipeline fault; recording|paused -> processing also at the maximum
 * duration. completed|failed are deleted (an extension, SPEC §9): the
 * record, files and S3 object go, the status is not changed first. */
#ifndef EDGEREC_RECORDER_FSM_H
#define EDGEREC_RECORDER_FSM_H

#include <stdbool.h>
#include <stddef.h>

enum recorder_status {
	RECORDER_PENDING = 0,
	RECORDER_RECORDING,
	RECORDER_PAUSED,
	RECORDER_PROCESSING,
	RECORDER_COMPLETED,
	RECORDER_FAILED,
	RECORDER_CANCELLED,
	RECORDER_STATUS_COUNT,
};

/* What can happen to a recording. The first group are the client requests
 * of SPEC §2 (the ones a reply status is computed for); the second group
 * are internal events raised by the pipeline, the timer and the worker. */
enum recorder_op {
	RECORDER_OP_START = 0,      /* creates the recording (no 'from' status) */
	RECORDER_OP_STOP,
	RECORDER_OP_PAUSE,
	RECORDER_OP_RESUME,
	RECORDER_OP_CANCEL,
	RECORDER_OP_STATUS,
	RECORDER_OP_LIST,           /* list of a room's recordings */
	RECORDER_OP_LIST_USER,      /* list of the caller's own recordings */
	RECORDER_OP_DOWNLOAD,       /* the files of one recording (download, thumbnail) */
	RECORDER_OP_ADMIN,          /* the /api/system routes (no recording) */
	RECORDER_OP_DELETE,         /* a completed or failed recording goes for good */
	RECORDER_OP_REQUEST_COUNT,  /* ops below are internal events */
	RECORDER_EV_FIRST_FRAME = RECORDER_OP_REQUEST_COUNT,
	RECORDER_EV_FAULT,          /* the pipeline failed while live */
	RECORDER_EV_MAX_DURATION,   /* the maximum duration was reached */
	RECORDER_EV_PROCESSED,      /* the worker finished every step */
	RECORDER_EV_PROCESS_FAILED, /* a worker step failed */
	RECORDER_EV_RECOVERED,      /* start-up recovery took a live orphan */
	RECORDER_OP_COUNT,
};

/* Applies 'op' to a recording in status 'from'. Returns 200 and sets '*to'
 * (unchanged status for the read-only ops) when the transition is allowed,
 * or 400 (invalid transition) and leaves '*to' alone. RECORDER_OP_START has
 * no 'from' and always returns 200 with '*to' = pending. Pure and
 * thread-safe. */
int recorder_fsm_step(enum recorder_status from, enum recorder_op op, enum recorder_status *to);

/* True for pending, recording and paused: a pipeline runs and a slot in the
 * active set is held. */
bool recorder_status_live(enum recorder_status s);
/* True for completed, failed and cancelled: nothing will change any more. */
bool recorder_status_final(enum recorder_status s);

/* "pending" ... "cancelled"; "unknown" for out-of-range values. */
const char *recorder_status_name(enum recorder_status s);
/* Parses a status name. Returns 0 or -1 when 's' names none. */
int recorder_status_parse(const char *s, enum recorder_status *out);
/* "start" "stop" ... "first_frame" ...; "unknown" when out of range. */
const char *recorder_op_name(enum recorder_op op);
/* The broadcast type of SPEC §7 for a client op or event that changes a
 * recording ("recording_started", ...), or NULL when it broadcasts nothing. */
const char *recorder_op_event(enum recorder_op op);

/* Room ids: 1..128 characters of [A-Za-z0-9._-], not "." or "..". */
bool recorder_room_id_valid(const char *room_id);
/* Recording ids: a canonical uuid. */
bool recorder_recording_id_valid(const char *id);
/* Formats: webm, mkv, mp4. */
bool recorder_format_valid(const char *format);

#endif
