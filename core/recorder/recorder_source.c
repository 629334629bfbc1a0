/* recorder_source: what a recording's source says about itself in the
 * state, whatever the driver: a live source that went quiet or whose
 * device went away (metadata.source_stalled, source_stalls,
 * source_stalled_at and the source_stalled / source_resumed events), and
 * what a device source captures (metadata.capture).
 *
 * Thread use: recorder_source_note_stall runs on pipeline threads and only
 * raises a flag; the rest runs with the session lock held. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common_log.h"
#include "common_time.h"
#include "media.h"
#include "recorder_internal.h"

static struct log_handle log_rsrc = LOG_HANDLE("recorder/source");

void recorder_source_note_stall(struct recorder_session *s, bool stalled)
{
	atomic_store(&s->src_stalled, stalled ? 1 : 0);
}

int recorder_source_apply_stall(struct recorder_session *s, const char *what)
{
	bool stalled = atomic_load(&s->src_stalled) != 0;
	cJSON *m = recorder_rec_metadata(s->rec);
	if (!m || stalled == s->src_stalled_shown || s->ended)
		return 0;
	char ts[40];
	s->src_stalled_shown = stalled;
	if (stalled)
		s->src_stalls++;
	recorder_json_set(m, "source_stalled", cJSON_CreateBool(stalled));
	recorder_json_set(m, "source_stalls", cJSON_CreateNumber((double)s->src_stalls));
	if (stalled)
		recorder_json_set(m, "source_stalled_at", cJSON_CreateString(time_iso8601(time_wall_ns(), ts, sizeof(ts))));
	LOG_WARN(&log_rsrc, "%s: room %s: %s %s", s->id, s->room_id, what,
		 stalled ? "stalled (nothing received for 2 s, or its device went away); the recording goes on"
			 : "flows again");
	recorder_put(s->r, s->rec);
	cJSON *extra = cJSON_CreateObject();
	if (extra)
		cJSON_AddStringToObject(extra, "reason", stalled ? "no_media" : "media_flows");
	recorder_publish(s->r, stalled ? "source_stalled" : "source_resumed", s->rec, extra);
	cJSON_Delete(extra);
	return stalled ? 1 : -1;
}

cJSON *recorder_capture_json(const struct media_capture_info *ci)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "device", ci->device);
	cJSON_AddStringToObject(o, "path", ci->path);
	cJSON_AddStringToObject(o, "card", ci->card);
	cJSON_AddStringToObject(o, "driver", ci->driver);
	cJSON_AddStringToObject(o, "pixel_format", ci->pixel_format);
	cJSON *asked = cJSON_AddObjectToObject(o, "asked");
	cJSON_AddNumberToObject(asked, "width", ci->asked_width);
	cJSON_AddNumberToObject(asked, "height", ci->asked_height);
	cJSON_AddNumberToObject(asked, "fps", ci->asked_fps);
	cJSON *got = cJSON_AddObjectToObject(o, "delivered");
	cJSON_AddNumberToObject(got, "width", ci->width);
	cJSON_AddNumberToObject(got, "height", ci->height);
	cJSON_AddNumberToObject(got, "fps", (double)(int64_t)(ci->fps * 1000 + 0.5) / 1000);
	cJSON *rec = cJSON_AddObjectToObject(o, "recorded");
	cJSON_AddNumberToObject(rec, "width", ci->out_width);
	cJSON_AddNumberToObject(rec, "height", ci->out_height);
	/* the camera did not give what the preset asks: the state says so */
	cJSON_AddBoolToObject(o, "size_differs", ci->width != ci->asked_width || ci->height != ci->asked_height);
	cJSON_AddBoolToObject(o, "rate_differs", ci->fps + 0.01 < ci->asked_fps || ci->fps > ci->asked_fps + 0.01);
	cJSON_AddStringToObject(o, "timestamps", ci->timestamps_fallback ? "dequeue" : "driver");
	cJSON_AddNumberToObject(o, "frames_rejected", (double)ci->frames_rejected);
	cJSON_AddNumberToObject(o, "frames_resized", (double)ci->frames_resized);
	cJSON_AddNumberToObject(o, "camera_dropped", (double)ci->camera_dropped);
	cJSON_AddNumberToObject(o, "reopens", ci->reopens);
	if (ci->audio_device[0]) {
		cJSON_AddStringToObject(o, "audio_device", ci->audio_device);
		cJSON_AddNumberToObject(o, "audio_reopens", ci->audio_reopens);
		cJSON *a = cJSON_AddObjectToObject(o, "audio");  /* the microphone's clock and losses */
		cJSON_AddNumberToObject(a, "device_rate", ci->audio_rate);
		cJSON_AddNumberToObject(a, "device_channels", ci->audio_channels);
		cJSON_AddNumberToObject(a, "drift_ppm", (double)(int64_t)(ci->audio_drift_ppm * 10) / 10);
		cJSON_AddNumberToObject(a, "overruns", (double)ci->audio_overruns);
		cJSON_AddNumberToObject(a, "frames_inserted", (double)ci->audio_frames_inserted);
		cJSON_AddNumberToObject(a, "frames_dropped", (double)ci->audio_frames_dropped);
		cJSON_AddNumberToObject(a, "corrections", (double)ci->audio_corrections);
	}
	return o;
}
