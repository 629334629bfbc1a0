/* recorder_recover: start-up reconciliation of what this node left behind.
 *
 * A node that died mid-recording leaves records that still say pending,
 * recording or paused, slots in the active set, and partial files written
 * live. Nothing will ever drive those pipelines again, so each such record
 * moves to processing at once (metadata.recovered = true, the slot
 * released) and its job repairs the file (media_file_repair) before the
 * usual steps: completed when something usable remains, failed with the
 * reason otherwise. Then every job left unfinished in processing (its
 * directory still marked) is queued again and resumes from its journal. */
#include <stdio.h>
#include <string.h>

#include "common_log.h"
#include "common_time.h"
#include "recorder_internal.h"
#include "state.h"

static struct log_handle log_rcv = LOG_HANDLE("recorder/recover");

int recorder_recover(struct recorder *r)
{
	cJSON *orphans = state_list_owned_live(r->st, r->node_id);
	if (!orphans) {
		LOG_ERROR(&log_rcv, "cannot list this node's live recordings");
		recorder_worker_rescan(r);
		return -1;
	}
	int n = 0;
	cJSON *rec;
	cJSON_ArrayForEach(rec, orphans) {
		const char *id = state_record_str(rec, "recording_id");
		enum recorder_status from, to;
		if (!id || recorder_status_parse(state_record_str(rec, "status"), &from) < 0)
			continue;
		if (recorder_fsm_step(from, RECORDER_EV_RECOVERED, &to) != 200)
			continue;
		state_record_set_str(rec, "status", recorder_status_name(to));
		state_record_set_time(rec, "stopped_at", time_wall_ns());
		cJSON *m = cJSON_GetObjectItemCaseSensitive(rec, "metadata");
		if (cJSON_IsObject(m)) {
			cJSON_DeleteItemFromObjectCaseSensitive(m, "recovered");
			cJSON_AddBoolToObject(m, "recovered", 1);
			cJSON_DeleteItemFromObjectCaseSensitive(m, "recovered_from");
			cJSON_AddStringToObject(m, "recovered_from", recorder_status_name(from));
		}
		recorder_put(r, rec);
		state_release(r->st, id);
		cJSON *extra = cJSON_CreateObject();
		if (extra) {
			const cJSON *d = cJSON_GetObjectItemCaseSensitive(rec, "duration_seconds");
			cJSON_AddNumberToObject(extra, "duration", cJSON_IsNumber(d) ? d->valuedouble : 0);
			cJSON_AddStringToObject(extra, "reason", "node_restart");
		}
		recorder_publish(r, recorder_op_event(RECORDER_OP_STOP), rec, extra);
		cJSON_Delete(extra);
		LOG_WARN(&log_rcv, "%s: was %s when this node stopped; repairing its file", id,
			 recorder_status_name(from));
		if (recorder_worker_submit(r, id, true, cJSON_Duplicate(rec, 1)) < 0)
			LOG_WARN(&log_rcv, "%s: processing queue full; the rescan takes it", id);
		n++;
	}
	cJSON_Delete(orphans);
	int resumed = recorder_worker_rescan(r);
	if (n || resumed > 0)
		LOG_INFO(&log_rcv, "recovered %d interrupted recording(s), %d job(s) queued from marks", n,
			 resumed > 0 ? resumed : 0);
	return 0;
}
