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
#include <strings.h>

#include <cjson/cJSON.h>

#include "common_log.h"
#include "common_util.h"
#include "config.h"
#include "media.h"
#include "media_rtp_feed.h"
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
	if (c->video_section >= 0) {
		cJSON_AddNumberToObject(m, "video_pt", c->video_pt);
		cJSON_AddBoolToObject(m, "nack", !c->no_nack);
		/* Repairs come on their own payload type (RFC 4588) when the
		 * offer had RTX, else on the original stream. */
		if (!c->no_nack && c->video_rtx_pt >= 0)
			cJSON_AddNumberToObject(m, "rtx_pt", c->video_rtx_pt);
	}
	cJSON_AddStringToObject(m, "audio_codec", c->audio_section >= 0 ? "opus" : "none");
	if (c->audio_section >= 0)
		cJSON_AddNumberToObject(m, "audio_pt", c->audio_pt);
	cJSON_AddNumberToObject(m, "offered_sections", o->n);
	return m;
}

/* The rtp source's arguments for a WHIP feed; snprintf's return. */
static int whip_args(char *args, size_t alen, const char *feed, bool video, bool audio, int video_pt, int audio_pt,
		     bool nack, const struct media_preset *preset, bool h264, const char *sprop)
{
	return snprintf(args, alen, "feed=%s,video=%d,audio=%d,video_pt=%d,audio_pt=%d,latch=0,nack=%d,"
			"remb_kbps=%lld,latency_ms=250,video_codec=%s%s%s", feed, video, audio, video_pt, audio_pt,
			nack, preset ? (long long)preset->video_bps / 1000 : 0, h264 ? "h264" : "vp8",
			sprop[0] ? ",sprop=" : "", sprop);
}

/* A recording started over REST in a `whip` room, waiting for its publisher. */
struct recorder_whip_wait {
	struct media_rtp_feed *feed; /* the producer's reference until a session takes it */
	bool h264;
	bool taken;                  /* a publisher came (under recorder.lock) */
};

int recorder_whip_wait(struct recorder_session *s, const char *format, const struct media_preset *preset,
		       char *args, size_t alen, struct recorder_reply *out)
{
	char v[16];
	struct recorder_whip_wait *w = calloc(1, sizeof(*w));

	if (!s->r->webrtc) {
		free(w);
		reply_error(out, 503, "whip_unavailable", "room %s records a WHIP publisher, and WHIP ingest is not "
			    "available on this node: %s", s->room_id, s->r->webrtc_err);
		return -1;
	}
	if (w)
		w->feed = media_rtp_feed_new(NULL, NULL);
	if (!w || !w->feed) {
		free(w);
		reply_error(out, 500, "internal", "out of memory");
		return -1;
	}
	/* The publisher must send what the format holds; mkv takes H.264
	 * (what OBS sends) unless the room says otherwise. */
	w->h264 = strcmp(format, "webm") != 0;
	if (media_source_arg(args, "video_codec", v, sizeof(v)) && strcmp(format, "mkv") == 0)
		w->h264 = strcasecmp(v, "vp8") != 0;
	s->whip_wait = w;
	/* Payload types: whatever the publisher's offer names (the session
	 * passes only the chosen ones). */
	int n = whip_args(args, alen, media_rtp_feed_name(w->feed), true, true, -1, -1,
			  config_get_bool(s->r->cfg, "webrtc.nack"), preset, w->h264, "");
	if (n < 0 || (size_t)n >= alen) {
		reply_error(out, 500, "internal", "the source arguments do not fit");
		return -1;
	}
	cJSON *m = recorder_rec_metadata(s->rec), *whip = cJSON_CreateObject();
	if (m && whip) {
		cJSON_AddBoolToObject(whip, "waiting", true);
		cJSON_AddStringToObject(whip, "video_codec", w->h264 ? "h264" : "vp8");
		recorder_json_set(m, "whip", whip);
	} else {
		cJSON_Delete(whip);
	}
	LOG_INFO(&log_whip, "%s: room %s waits for a WHIP publisher (%s)", s->id, s->room_id,
		 w->h264 ? "H.264" : "VP8");
	return 0;
}

void recorder_whip_session_free(struct recorder_session *s)
{
	if (!s->whip_wait)
		return;
	if (!s->whip_wait->taken)
		media_rtp_feed_release(s->whip_wait->feed);
	free(s->whip_wait);
	s->whip_wait = NULL;
}

/* The live recording of 'room_id' that waits for a publisher, with a
 * reference, its feed taken for the caller; NULL when none. 'busy' is set
 * when one exists whose publisher already came. */
static struct recorder_session *whip_take_waiting(struct recorder *r, const char *room_id, bool *busy)
{
	struct recorder_session *found = NULL;

	*busy = false;
	pthread_mutex_lock(&r->lock);
	for (struct recorder_session *s = r->sessions; s; s = s->next) {
		if (!s->whip_wait || strcmp(s->room_id, room_id) != 0)
			continue;
		if (s->whip_wait->taken) {
			*busy = true;
			continue;
		}
		s->whip_wait->taken = true;
		s->refs++;
		found = s;
		break;
	}
	pthread_mutex_unlock(&r->lock);
	return found;
}

/* A publisher for a recording that waits for it (recorder_whip_wait). */
static void whip_publish_waiting(struct recorder *r, const struct recorder_caller *caller,
				 struct recorder_session *s, const struct webrtc_offer *o, struct recorder_reply *out,
				 char **answer, char *recording_id)
{
	struct recorder_whip_wait *w = s->whip_wait;
	struct media_rtp_feed *feed = w->feed;
	struct webrtc_choice c;
	struct webrtc_session_info info = { 0 };
	struct recorder_verdict v;
	char err[256], format[8] = "mkv";

	pthread_mutex_lock(&s->lock);
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(s->rec, "format");
	if (cJSON_IsString(f))
		util_strlcpy(format, f->valuestring, sizeof(format));
	bool allowed = recorder_authorize(r, caller, RECORDER_OP_START, s->rec, &v);
	pthread_mutex_unlock(&s->lock);
	if (!allowed) {
		reply_error(out, v.status == 404 ? 404 : 403, v.status == 404 ? "not_found" : "forbidden", "%s",
			    v.reason[0] ? v.reason : "forbidden");
		goto untake;
	}
	if (webrtc_offer_choose(o, format, w->h264, &c, err, sizeof(err)) < 0) {
		reply_error(out, 400, "unsupported_codec", "%s", err);
		goto untake;
	}
	if (c.video_section >= 0 && (c.video_codec == WEBRTC_VIDEO_H264) != w->h264) {
		reply_error(out, 400, "unsupported_codec", "room %s waits for %s video (its %s recording %s): the "
			    "offer has none", s->room_id, w->h264 ? "H.264" : "VP8", format, s->id);
		goto untake;
	}
	c.no_nack = !config_get_bool(r->cfg, "webrtc.nack");
	/* From here the session owns the feed, also when it fails (the
	 * recording then sees its feed end). */
	if (webrtc_session_new_on(r->webrtc, o, &c, feed, &info, err, sizeof(err)) < 0) {
		reply_error(out, 500, "internal", "cannot open a WHIP session: %s", err);
		return;
	}
	webrtc_session_set_tag(r->webrtc, info.id, s->id);
	cJSON *meta = whip_meta(o, &c, info.id);
	pthread_mutex_lock(&s->lock);
	cJSON *m = recorder_rec_metadata(s->rec);
	if (m && meta) {
		cJSON_AddBoolToObject(meta, "waited", true);
		recorder_json_set(m, "whip", meta);
		meta = NULL;
		recorder_put(r, s->rec);
	}
	pthread_mutex_unlock(&s->lock);
	cJSON_Delete(meta);
	recorder_status(r, caller, s->room_id, s->id, out);
	if (out->status == 200)
		out->status = 201;
	util_strlcpy(recording_id, s->id, UUID_STR_LEN);
	*answer = info.answer;
	LOG_INFO(&log_whip, "%s: WHIP publisher for the waiting recording in room %s (session %llu)", s->id,
		 s->room_id, (unsigned long long)info.id);
	return;
untake:
	pthread_mutex_lock(&r->lock);
	w->taken = false;
	pthread_mutex_unlock(&r->lock);
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
	/* A recording started over REST in a `whip` room waits for this
	 * publisher: it joins that one (its format, not the query's). */
	bool busy;
	struct recorder_session *waiting = whip_take_waiting(r, room_id, &busy);
	if (waiting) {
		whip_publish_waiting(r, caller, waiting, o, out, answer, recording_id);
		recorder_session_unref(waiting);
		goto done;
	}
	if (busy) {
		reply_error(out, 409, "publisher_present", "the recording of room %s already has its WHIP publisher",
			    room_id);
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
	int alen = whip_args(args, sizeof(args), info.feed, c.video_section >= 0, c.audio_section >= 0,
			     c.video_section >= 0 ? c.video_pt : 96, c.audio_section >= 0 ? c.audio_pt : 111,
			     !c.no_nack, preset, c.video_codec == WEBRTC_VIDEO_H264, sprop);
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
