/* recorder_whip: WHIP publishers as recordings (RFC 9725; recorder.h).
 *
 * A publish parses the offer, picks the codecs the recording's format can
 * hold (webrtc_offer_choose: webm takes VP8 only; mkv and mp4 would take
 * H.264 first once core/media depacketizes it, VP8 until then), opens a
 * session of the transport (core/webrtc), then starts a recording whose
 * source is the `rtp` source reading that session's feed
 * (feed=NAME,video=..,audio=..,video_pt=..,audio_pt=..,video_codec=..,
 * sprop=..): the start's
 * authorization, quota and admission decide exactly as for a REST start,
 * and a refused start closes the session again. The recording is pending
 * until the first keyframe reaches the file, as an rtp room's. When the
 * publisher goes (consent lost, DTLS closed) the feed ends, the source
 * reports its end and the recording stops (stop_reason source_ended), or
 * fails when nothing came; when the recording stops first (REST stop,
 * cancel, max duration) the source lets go of the feed and the session
 * closes. metadata.whip says what was negotiated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common_log.h"
#include "common_util.h"
#include "config.h"
#include "media.h"
#include "recorder_internal.h"
#include "webrtc.h"

static struct log_handle log_whip = LOG_HANDLE("recorder/whip");

int recorder_whip_config_register(struct config *c)
{
	return webrtc_config_register(c);
}

void recorder_whip_init(struct recorder *r)
{
	r->webrtc = webrtc_new(r->cfg, r->webrtc_err, sizeof(r->webrtc_err));
	if (!r->webrtc)
		LOG_WARN(&log_whip, "WHIP ingest unavailable: %s", r->webrtc_err);
}

void recorder_whip_free(struct recorder *r)
{
	webrtc_free(r->webrtc);
	r->webrtc = NULL;
}

char *recorder_whip_metrics(void *opaque)
{
	struct recorder *r = opaque;
	return r && r->webrtc ? webrtc_metrics(r->webrtc) : NULL;
}

/* What metadata.whip shows. */
static cJSON *whip_meta(const struct webrtc_offer *o, const struct webrtc_choice *c, uint64_t session)
{
	cJSON *m = cJSON_CreateObject();
	if (!m)
		return NULL;
	cJSON_AddNumberToObject(m, "session", (double)session);
	cJSON_AddStringToObject(m, "video_codec", c->video_codec == WEBRTC_VIDEO_H264  ? "h264"
						  : c->video_codec == WEBRTC_VIDEO_VP8 ? "vp8"
										       : "none");
	if (c->video_section >= 0)
		cJSON_AddNumberToObject(m, "video_pt", c->video_pt);
	cJSON_AddStringToObject(m, "audio_codec", c->audio_section >= 0 ? "opus" : "none");
	if (c->audio_section >= 0)
		cJSON_AddNumberToObject(m, "audio_pt", c->audio_pt);
	cJSON_AddNumberToObject(m, "offered_sections", o->n);
	return m;
}

void recorder_whip_publish(struct recorder *r, const struct recorder_caller *caller, const char *room_id,
			   const char *format, const char *quality, const char *sdp, size_t len,
			   struct recorder_reply *out, char **answer, char *recording_id)
{
	struct webrtc_offer *o = NULL;
	struct webrtc_choice c;
	struct webrtc_session_info info = { 0 };
	char err[256], args[600], sprop[384] = "";

	*answer = NULL;
	recording_id[0] = 0;
	out->status = 500;
	out->body = NULL;
	if (!r->webrtc) {
		reply_error(out, 503, "whip_unavailable", "WHIP ingest is not available on this node: %s",
			    r->webrtc_err);
		return;
	}
	if (!recorder_format_or_default(r, &format, out))
		return;
	o = malloc(sizeof(*o));
	if (!o) {
		reply_error(out, 500, "internal", "out of memory");
		return;
	}
	if (webrtc_offer_parse(sdp, len, o, err, sizeof(err)) < 0) {
		reply_error(out, 400, "invalid_sdp", "the SDP offer is not usable: %s", err);
		goto done;
	}
	/* The video is recorded as it comes: webm takes VP8, mp4 H.264, mkv
	 * either (H.264 first). */
	if (webrtc_offer_choose(o, format, true, &c, err, sizeof(err)) < 0) {
		reply_error(out, 400, "unsupported_codec", "%s", err);
		goto done;
	}
	c.no_nack = !config_get_bool(r->cfg, "webrtc.nack");
	if (c.video_codec == WEBRTC_VIDEO_H264 &&
	    webrtc_h264_sprop(o->s[c.video_section].h264_fmtp, sprop, sizeof(sprop)) < 0) {
		reply_error(out, 400, "invalid_sdp", "the offer's H.264 sprop-parameter-sets are not base64 "
			    "parameter sets (or longer than %zu bytes)", sizeof(sprop) - 1);
		goto done;
	}
	if (webrtc_session_new(r->webrtc, o, &c, &info, err, sizeof(err)) < 0) {
		reply_error(out, 500, "internal", "cannot open a WHIP session: %s", err);
		goto done;
	}
	/* NACK and REMB were offered back in the answer (a=rtcp-fb); REMB
	 * asks for the preset's video bitrate. The jitter buffer waits 250 ms
	 * so that a retransmission asked for after 10 ms fits a 200 ms RTT. */
	const struct media_preset *preset = media_preset_find(quality && quality[0] ? quality : r->default_quality);
	int alen = snprintf(args, sizeof(args), "feed=%s,video=%d,audio=%d,video_pt=%d,audio_pt=%d,latch=0,nack=%d,"
			    "remb_kbps=%lld,latency_ms=250,video_codec=%s%s%s", info.feed, c.video_section >= 0,
			    c.audio_section >= 0, c.video_section >= 0 ? c.video_pt : 96,
			    c.audio_section >= 0 ? c.audio_pt : 111, !c.no_nack,
			    preset ? (long long)preset->video_bps / 1000 : 0,
			    c.video_codec == WEBRTC_VIDEO_H264 ? "h264" : "vp8", sprop[0] ? ",sprop=" : "", sprop);
	if (alen < 0 || (size_t)alen >= sizeof(args)) {
		webrtc_session_close(r->webrtc, info.id, "the offer's parameters do not fit");
		free(info.answer);
		reply_error(out, 400, "invalid_sdp", "the offer's H.264 sprop-parameter-sets are too long");
		goto done;
	}
	cJSON *meta = whip_meta(o, &c, info.id);
	struct recorder_start_opts opts = {
		.source = "rtp", .args = args, .meta_key = "whip", .meta = meta, .no_wait = true,
	};
	recorder_start_with(r, caller, room_id, format, quality, &opts, out);
	cJSON_Delete(meta);
	const cJSON *id = out->status == 200 ? cJSON_GetObjectItemCaseSensitive(out->body, "recording_id") : NULL;
	if (!cJSON_IsString(id)) {
		webrtc_session_close(r->webrtc, info.id, "the recording did not start");
		free(info.answer);
		goto done;
	}
	util_strlcpy(recording_id, id->valuestring, UUID_STR_LEN);
	webrtc_session_set_tag(r->webrtc, info.id, recording_id);
	out->status = 201;
	*answer = info.answer;
	LOG_INFO(&log_whip, "%s: WHIP publisher in room %s (session %llu)", recording_id, room_id,
		 (unsigned long long)info.id);
done:
	free(o);
}

void recorder_whip_end(struct recorder *r, const struct recorder_caller *caller, const char *room_id,
		       const char *recording_id, struct recorder_reply *out)
{
	recorder_stop(r, caller, room_id, recording_id, out);
	const cJSON *code = out->status >= 400 ? cJSON_GetObjectItemCaseSensitive(out->body, "code") : NULL;
	if (cJSON_IsString(code) && strcmp(code->valuestring, "invalid_transition") == 0) {
		/* Already past live: the publisher went first (or a REST stop
		 * came). For a WHIP recording, ending the session is all DELETE
		 * has left to do. */
		struct recorder_reply st = { 0, NULL };
		recorder_status(r, caller, room_id, recording_id, &st);
		const cJSON *m = st.status == 200 ? cJSON_GetObjectItemCaseSensitive(st.body, "metadata") : NULL;
		if (cJSON_GetObjectItemCaseSensitive(m, "whip")) {
			cJSON_Delete(out->body);
			*out = st;
		} else {
			cJSON_Delete(st.body);
		}
	}
	if (out->status == 200 && r->webrtc)
		webrtc_session_close_tag(r->webrtc, recording_id, "DELETE by the publisher");
}

void recorder_whip_patch(struct recorder *r, const struct recorder_caller *caller, const char *room_id,
			 const char *recording_id, const char *frag, size_t len, struct recorder_reply *out)
{
	char ufrag[WEBRTC_ICE_UFRAG_MAX];

	recorder_status(r, caller, room_id, recording_id, out);
	if (out->status != 200)
		return;
	cJSON_Delete(out->body);
	out->body = NULL;
	if (!r->webrtc || webrtc_session_remote_ufrag(r->webrtc, recording_id, ufrag, sizeof(ufrag)) < 0) {
		reply_error(out, 404, "not_found", "recording %s has no WHIP session (it ended)", recording_id);
		return;
	}
	/* An sdpfrag carries a=ice-ufrag (and a=ice-pwd); other credentials
	 * than the offer's mean an ICE restart. */
	const char *p = frag, *end = frag + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		if (n && p[n - 1] == '\r')
			n--;
		if (n > 12 && memcmp(p, "a=ice-ufrag:", 12) == 0 &&
		    (n - 12 != strlen(ufrag) || memcmp(p + 12, ufrag, n - 12) != 0)) {
			reply_error(out, 422, "ice_restart_unsupported",
				    "this WHIP session does not restart ICE: end it (DELETE) and publish again");
			return;
		}
		p = nl ? nl + 1 : end;
	}
	out->status = 204;
}
