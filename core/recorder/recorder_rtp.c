/* recorder_rtp: what a recording of an `rtp` room needs beyond the pipeline:
 * UDP port pairs from rtp.port_min..rtp.port_max handed to the source and
 * shown in the state's metadata (so an SFU can be pointed at them), their
 * release when the recording leaves the live statuses, the count of stalls
 * (the state and events are recorder_source.c's), and the time to the
 * first keyframe.
 *
 * The room's args are the rtp source's (media_src_rtp.c) plus two read here:
 * video=0 / audio=0 leave that stream out (no port allocated for it).
 *
 * A start does not wait for the SFU: the reply comes after the usual short
 * wait for a first frame, so it is `pending` with metadata.rtp when nothing
 * has been sent yet, and the status turns to `recording` when the first
 * keyframe reaches the file (the pipeline drops what comes before it). A room
 * that never sends fails after recorder.first_frame_timeout.
 *
 * metadata.network says what the network took from the streams
 * (packets_lost, nack_requested, nack_recovered, frames_dropped), rewritten
 * at most every 5 s while it changes.
 *
 * Thread use: prepare/release/apply run with the session lock held (request
 * and control threads). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "media_rtp_sdp.h"
#include "config.h"
#include "media.h"
#include "media_rtp.h"
#include "media_source.h"
#include "recorder_internal.h"
#include "state.h"

static struct log_handle log_rrtp = LOG_HANDLE("recorder/rtp");

/* How often metadata.network may be rewritten while it changes. */
#define RTP_NETWORK_EVERY_NS (5 * TIME_NS_PER_SEC)

/* Totals over every rtp recording of this process, for /metrics. */
static pthread_mutex_t rtp_totals_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t rtp_ttfk_count, rtp_stalls_total;
static struct media_source_stats rtp_loss_total; /* what rtp sources lost on the way in */
static double rtp_ttfk_sum_s, rtp_ttfk_max_s;

static const struct config_option recorder_rtp_options[] = {
	{ "rtp.port_min", CONFIG_INT, "40000",
	  "first UDP port handed to rtp rooms (RTP on even ports, RTCP on the next)" },
	{ "rtp.port_max", CONFIG_INT, "40999", "last UDP port handed to rtp rooms" },
	{ 0 },
};

/* One rtp recording's extra state; s->rtp. */
struct recorder_rtp {
	int ports[4];          /* allocated or claimed RTP ports (RTCP = +1), for release */
	int n_ports;
	bool ttfk_shown;
	uint32_t size_changes_shown; /* the sender's resolution changes metadata shows */
	struct media_source_stats loss_shown; /* what metadata.rtp_receive shows */
	struct media_source_stats loss_counted; /* what went into rtp_loss_total */
	int64_t loss_shown_mono;  /* when metadata.rtp_receive was last written */
	int64_t lost_shown_ns;    /* when metadata.network was last looked at */
};

int recorder_rtp_config_register(struct config *c)
{
	return config_register(c, recorder_rtp_options);
}

/* Reads an integer source argument; absent or bad leaves 'def'. */
static long rtp_arg_long(const char *args, const char *key, long def)
{
	char v[32], *end;
	if (!media_source_arg(args, key, v, sizeof(v)))
		return def;
	long x = strtol(v, &end, 0);
	return end != v && !*end ? x : def;
}

/* Checks the ports a room's arguments fix (video_port, audio_port, their
 * RTCP ports, or the ports of an sdp= file) against rtp.port_min..port_max
 * and claims the RTP ones for this recording (into x->ports): whatever a
 * policy or the configuration asks, rtp rooms listen only inside the
 * operator's range. Returns 0, or 409 with 'err' (outside the range, held
 * by another recording, an unreadable SDP). */
static int rtp_fixed_ports(struct recorder_session *s, const char *args, int min, int max,
			   struct recorder_rtp *x, char *err, size_t errlen)
{
	struct rtp_fixed { const char *what; long port; } fixed[6];
	int n = 0, rtp_ports[2], n_rtp = 0;
	bool mux = rtp_arg_long(args, "rtcp_mux", 0) != 0;
	char path[512];
	if (media_source_arg(args, "sdp", path, sizeof(path))) {
		struct media_rtp_sdp sdp;
		char *text = util_read_file(path, NULL);
		int prc = text ? media_rtp_sdp_parse(text, &sdp, err, errlen) : -1;
		free(text);
		if (prc < 0) {
			if (!text)
				snprintf(err, errlen, "room %s: cannot read its SDP file %s", s->room_id, path);
			return 409;
		}
		const struct media_rtp_sdp_stream *m[2] = { &sdp.video, &sdp.audio };
		for (int i = 0; i < 2; i++) {
			if (!m[i]->present)
				continue;
			fixed[n++] = (struct rtp_fixed){ i ? "audio port (sdp)" : "video port (sdp)", m[i]->port };
			if (!m[i]->rtcp_mux && !mux)
				fixed[n++] = (struct rtp_fixed){ "rtcp port (sdp)",
								 m[i]->rtcp_port ? m[i]->rtcp_port : m[i]->port + 1 };
		}
	}
	static const char *const keys[2][2] = { { "video_port", "video_rtcp_port" },
						{ "audio_port", "audio_rtcp_port" } };
	for (int i = 0; i < 2; i++) {
		long p = rtp_arg_long(args, keys[i][0], 0);
		if (!p)
			continue;
		fixed[n++] = (struct rtp_fixed){ keys[i][0], p };
		rtp_ports[n_rtp++] = (int)p;
		if (!mux)
			fixed[n++] = (struct rtp_fixed){ keys[i][1], rtp_arg_long(args, keys[i][1], p + 1) };
	}
	for (int i = 0; i < n; i++) {
		if (fixed[i].port < min || fixed[i].port > max) {
			snprintf(err, errlen, "room %s: its source asks for UDP port %ld (%s), outside the "
				 "configured rtp.port_min..rtp.port_max (%d-%d); rtp rooms listen only there",
				 s->room_id, fixed[i].port, fixed[i].what, min, max);
			return 409;
		}
	}
	if (n_rtp && media_rtp_ports_claim(rtp_ports, n_rtp, err, errlen) < 0)
		return 409;
	for (int i = 0; i < n_rtp; i++)
		x->ports[x->n_ports++] = rtp_ports[i];
	return 0;
}

int recorder_rtp_prepare(struct recorder_session *s, const char *source, const char *format, char *args,
			 size_t alen, char *err, size_t errlen)
{
	struct recorder *r = s->r;
	struct recorder_rtp *x = NULL;
	char v[16];
	int need = 0, got[2] = { -1, -1 };

	if (strcmp(source, "rtp") != 0)
		return 0;
	bool h264 = media_rtp_source_h264(args);
	if (!h264 && strcmp(format, "mp4") == 0) {
		snprintf(err, errlen, "room %s records RTP from an SFU as it was sent (VP8/Opus): use format webm "
			 "or mkv; mp4 would mean re-encoding every stream to VP9", s->room_id);
		return 400;
	}
	if (h264 && strcmp(format, "webm") == 0) {
		snprintf(err, errlen, "room %s receives H.264 (as sent, not re-encoded) and WebM cannot hold H.264: "
			 "use format mkv or mp4", s->room_id);
		return 400;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		snprintf(err, errlen, "out of memory");
		return 500;
	}
	char feed[40];
	if (media_source_arg(args, "feed", feed, sizeof(feed))) {
		/* A WHIP publisher's packets come through the process (no
		 * ports); recorder_whip.c wrote metadata.whip. */
		s->rtp = x;
		return 0;
	}
	bool has_sdp = media_source_arg(args, "sdp", v, sizeof(v));
	bool has_video = media_source_arg(args, "video_port", v, sizeof(v));
	bool has_audio = media_source_arg(args, "audio_port", v, sizeof(v));
	bool want_video = rtp_arg_long(args, "video", 1) != 0 && !has_video && !has_sdp;
	bool want_audio = rtp_arg_long(args, "audio", 1) != 0 && !has_audio && !has_sdp;
	int min = (int)config_get_int(r->cfg, "rtp.port_min");
	int max = (int)config_get_int(r->cfg, "rtp.port_max");
	int rc = rtp_fixed_ports(s, args, min, max, x, err, errlen);
	if (rc) {
		free(x);
		return rc;
	}
	need = (want_video ? 1 : 0) + (want_audio ? 1 : 0);
	if (need > 0) {
		if (media_rtp_ports_alloc(min, max, need, got, err, errlen) < 0) {
			media_rtp_ports_release(x->ports, x->n_ports);
			free(x);
			return 503;
		}
		for (int i = 0; i < need; i++)
			x->ports[x->n_ports++] = got[i];
		size_t len = strlen(args);
		int k = 0, n;
		if (want_video)
			n = snprintf(args + len, alen - len, "%svideo_port=%d", len ? "," : "", got[k++]);
		else
			n = 0;
		if (n >= 0 && (size_t)n < alen - len) {
			len += (size_t)n;
			if (want_audio)
				n = snprintf(args + len, alen - len, "%saudio_port=%d", len ? "," : "", got[k++]);
		}
		if (n < 0 || (size_t)n >= alen - len) {
			media_rtp_ports_release(x->ports, x->n_ports);
			free(x);
			snprintf(err, errlen, "the source arguments of room %s are too long", s->room_id);
			return 400;
		}
	}
	s->rtp = x;

	/* What an SFU needs to send here; also what the recording listens on
	 * when the ports were fixed by configuration or policy. */
	cJSON *info = cJSON_CreateObject();
	if (info) {
		bool mux = rtp_arg_long(args, "rtcp_mux", 0) != 0;
		long vp = rtp_arg_long(args, "video_port", 0), ap = rtp_arg_long(args, "audio_port", 0);
		if (vp > 0) {
			cJSON_AddNumberToObject(info, "video_port", (double)vp);
			cJSON_AddNumberToObject(info, "video_rtcp_port",
						(double)(mux ? vp : rtp_arg_long(args, "video_rtcp_port", vp + 1)));
			cJSON_AddNumberToObject(info, "video_pt", (double)rtp_arg_long(args, "video_pt", 96));

		}
		if (ap > 0) {
			cJSON_AddNumberToObject(info, "audio_port", (double)ap);
			cJSON_AddNumberToObject(info, "audio_rtcp_port",
						(double)(mux ? ap : rtp_arg_long(args, "audio_rtcp_port", ap + 1)));
			cJSON_AddNumberToObject(info, "audio_pt", (double)rtp_arg_long(args, "audio_pt", 111));
		}
		cJSON_AddBoolToObject(info, "rtcp_mux", mux);
		if (rtp_arg_long(args, "video", 1) != 0)
			cJSON_AddStringToObject(info, "video_codec", h264 ? "h264" : "vp8");
		cJSON_AddBoolToObject(info, "allocated", need > 0);
		/* Who may send: the allow= address, else the first sender is
		 * latched (others dropped and counted), unless latch=0. */
		char allow[64];
		if (media_source_arg(args, "allow", allow, sizeof(allow)))
			cJSON_AddStringToObject(info, "sender_filter", allow);
		else
			cJSON_AddStringToObject(info, "sender_filter",
						rtp_arg_long(args, "latch", 1) ? "first_sender" : "none");
		if (has_sdp)
			cJSON_AddBoolToObject(info, "from_sdp", true);
		cJSON *m = recorder_rec_metadata(s->rec);
		if (m)
			recorder_json_set(m, "rtp", info);
		else
			cJSON_Delete(info);
	}
	LOG_INFO(&log_rrtp, "%s: room %s listens for RTP with '%s'%s", s->id, s->room_id, args,
		 need ? " (ports allocated)" : "");
	return 0;
}

void recorder_rtp_release(struct recorder_session *s)
{
	struct recorder_rtp *x = s->rtp;
	if (!x || !x->n_ports)
		return;
	media_rtp_ports_release(x->ports, x->n_ports);
	LOG_DEBUG(&log_rrtp, "%s: released %d RTP port pair(s) from %d", s->id, x->n_ports, x->ports[0]);
	x->n_ports = 0;
}

void recorder_rtp_free(struct recorder_session *s)
{
	if (!s->rtp)
		return;
	recorder_rtp_release(s);
	free(s->rtp);
	s->rtp = NULL;
}

bool recorder_rtp_apply_network(cJSON *rec, const struct media_stats *st)
{
	cJSON *m = recorder_rec_metadata(rec);
	const uint64_t now[4] = { st->rtp_packets_lost, st->rtp_nack_requested, st->rtp_nack_recovered,
				  st->rtp_frames_dropped };
	static const char *const names[4] = { "packets_lost", "nack_requested", "nack_recovered", "frames_dropped" };
	const cJSON *old = cJSON_GetObjectItemCaseSensitive(m, "network");
	bool same = old != NULL, any = false;
	for (int i = 0; i < 4; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(old, names[i]);
		same = same && cJSON_IsNumber(v) && (uint64_t)v->valuedouble == now[i];
		any |= now[i] != 0;
	}
	if (!m || same || (!any && !old))
		return false;
	cJSON *n = cJSON_CreateObject();
	if (!n)
		return false;
	for (int i = 0; i < 4; i++)
		cJSON_AddNumberToObject(n, names[i], (double)now[i]);
	recorder_json_set(m, "network", n);
	return true;
}

void recorder_rtp_apply(struct recorder_session *s)
{
	struct recorder_rtp *x = s->rtp;
	if (!x || s->ended)
		return;
	struct recorder *r = s->r;
	cJSON *m = recorder_rec_metadata(s->rec);
	bool changed = false;
	if (!m)
		return;

	if (!x->ttfk_shown && s->pipeline) {
		struct media_stats st;
		media_pipeline_stats(s->pipeline, &st);
		if (st.first_frame_wall_ns > 0 && st.started_wall_ns > 0) {
			double ms = (double)(st.first_frame_wall_ns - st.started_wall_ns) / 1e6;
			x->ttfk_shown = true;
			pthread_mutex_lock(&rtp_totals_lock);
			rtp_ttfk_count++;
			rtp_ttfk_sum_s += ms / 1e3;
			if (ms / 1e3 > rtp_ttfk_max_s)
				rtp_ttfk_max_s = ms / 1e3;
			pthread_mutex_unlock(&rtp_totals_lock);
			recorder_json_set(m, "time_to_first_keyframe_ms", cJSON_CreateNumber(ms < 0 ? 0 : (double)(int64_t)ms));
			changed = true;
			if (st.video_width > 0 && st.video_height > 0) {
				/* The sender decides the size: quality_settings keep
				 * what was asked, metadata says what the file holds. */
				char res[32];
				snprintf(res, sizeof(res), "%dx%d", st.video_width, st.video_height);
				recorder_json_set(m, "video_resolution", cJSON_CreateString(res));
			}
		}
	}

	if (s->pipeline) {
		/* The sender changed resolution mid-recording: the file goes on in
		 * the same track (players follow the keyframes); the state says so. */
		struct media_stats st;
		media_pipeline_stats(s->pipeline, &st);
		int64_t now = time_mono_ns();
		bool sized = st.video_size_changes != x->size_changes_shown;
		if (sized)
			LOG_INFO(&log_rrtp, "%s: room %s: the sender's video is now %dx%d (change %u)", s->id, s->room_id,
				 st.video_last_width, st.video_last_height, (unsigned)st.video_size_changes);
		pthread_mutex_lock(&rtp_totals_lock);
		rtp_loss_total.packets_lost += st.source.packets_lost - x->loss_counted.packets_lost;
		rtp_loss_total.video_frames_dropped += st.source.video_frames_dropped - x->loss_counted.video_frames_dropped;
		rtp_loss_total.keyframe_requests += st.source.keyframe_requests - x->loss_counted.keyframe_requests;
		rtp_loss_total.packets_unsupported += st.source.packets_unsupported - x->loss_counted.packets_unsupported;
		pthread_mutex_unlock(&rtp_totals_lock);
		x->loss_counted = st.source;
		/* Losses reach the state at most every 2 s while a lossy stream
		 * keeps changing them; the final figures are written at the stop. */
		if (sized || (memcmp(&st.source, &x->loss_shown, sizeof(st.source)) != 0 &&
			      now - x->loss_shown_mono >= 2 * TIME_NS_PER_SEC)) {
			x->size_changes_shown = st.video_size_changes;
			x->loss_shown = st.source;
			x->loss_shown_mono = now;
			recorder_rtp_apply_stats(m, &st);
			changed = true;
		}
		/* What the network took (metadata.network), at most every
		 * RTP_NETWORK_EVERY_NS. */
		if (now - x->lost_shown_ns >= RTP_NETWORK_EVERY_NS) {
			changed |= recorder_rtp_apply_network(s->rec, &st);
			x->lost_shown_ns = now;
		}
	}

	int stall = recorder_source_apply_stall(s, "RTP source");
	if (stall > 0) {
		pthread_mutex_lock(&rtp_totals_lock);
		rtp_stalls_total++;
		pthread_mutex_unlock(&rtp_totals_lock);
	}
	if (stall)
		return; /* the record was stored */
	if (changed)
		recorder_put(r, s->rec);
}

void recorder_rtp_apply_stats(cJSON *metadata, const struct media_stats *st)
{
	const struct media_source_stats *src = &st->source;
	cJSON *o;
	if (!metadata)
		return;
	if (st->video_size_changes) {
		/* The sender changed resolution mid-recording: the file goes on
		 * in the same track (players follow the keyframes). */
		char res[32];
		snprintf(res, sizeof(res), "%dx%d", st->video_last_width, st->video_last_height);
		recorder_json_set(metadata, "video_resolution_changes", cJSON_CreateNumber((double)st->video_size_changes));
		recorder_json_set(metadata, "video_resolution_last", cJSON_CreateString(res));
	}
	if (!(src->packets_lost || src->video_frames_dropped || src->keyframe_requests || src->packets_unsupported))
		return;
	o = cJSON_CreateObject();
	if (!o)
		return;
	cJSON_AddNumberToObject(o, "packets_lost", (double)src->packets_lost);
	cJSON_AddNumberToObject(o, "video_frames_dropped", (double)src->video_frames_dropped);
	cJSON_AddNumberToObject(o, "keyframe_requests", (double)src->keyframe_requests);
	cJSON_AddNumberToObject(o, "packets_unsupported", (double)src->packets_unsupported);
	recorder_json_set(metadata, "rtp_receive", o);
}

char *recorder_rtp_metrics(void *opaque)
{
	char *out = malloc(3072);
	(void)opaque;
	if (!out)
		return NULL;
	pthread_mutex_lock(&rtp_totals_lock);
	snprintf(out, 3072,
		 "# HELP edgerec_rtp_first_keyframe_seconds From an rtp recording's start to its first keyframe in the file.\n"
		 "# TYPE edgerec_rtp_first_keyframe_seconds summary\n"
		 "edgerec_rtp_first_keyframe_seconds_sum %.3f\n"
		 "edgerec_rtp_first_keyframe_seconds_count %llu\n"
		 "# HELP edgerec_rtp_first_keyframe_seconds_max The longest of those waits since start.\n"
		 "# TYPE edgerec_rtp_first_keyframe_seconds_max gauge\n"
		 "edgerec_rtp_first_keyframe_seconds_max %.3f\n"
		 "# HELP edgerec_rtp_source_stalls_total Times an rtp recording's source went silent (2 s).\n"
		 "# TYPE edgerec_rtp_source_stalls_total counter\n"
		 "edgerec_rtp_source_stalls_total %llu\n"
		 "# HELP edgerec_rtp_foreign_packets_dropped_total Packets dropped because they came from "
		 "an address other than the room's sender.\n"
		 "# TYPE edgerec_rtp_foreign_packets_dropped_total counter\n"
		 "edgerec_rtp_foreign_packets_dropped_total %llu\n"
		 "# HELP edgerec_rtp_packets_lost_total RTP packets that never arrived (rtp recordings while live).\n"
		 "# TYPE edgerec_rtp_packets_lost_total counter\n"
		 "edgerec_rtp_packets_lost_total %llu\n"
		 "# HELP edgerec_rtp_video_frames_dropped_total Video frames an rtp source could not assemble or held "
		 "back until a keyframe.\n"
		 "# TYPE edgerec_rtp_video_frames_dropped_total counter\n"
		 "edgerec_rtp_video_frames_dropped_total %llu\n"
		 "# HELP edgerec_rtp_keyframe_requests_total PLIs rtp sources sent to their senders.\n"
		 "# TYPE edgerec_rtp_keyframe_requests_total counter\n"
		 "edgerec_rtp_keyframe_requests_total %llu\n"
		 "# HELP edgerec_rtp_packets_unsupported_total RTP packets of payload formats not taken "
		 "(H.264 interleaved mode).\n"
		 "# TYPE edgerec_rtp_packets_unsupported_total counter\n"
		 "edgerec_rtp_packets_unsupported_total %llu\n",
		 rtp_ttfk_sum_s, (unsigned long long)rtp_ttfk_count, rtp_ttfk_max_s,
		 (unsigned long long)rtp_stalls_total, media_rtp_foreign_dropped(),
		 (unsigned long long)rtp_loss_total.packets_lost,
		 (unsigned long long)rtp_loss_total.video_frames_dropped,
		 (unsigned long long)rtp_loss_total.keyframe_requests,
		 (unsigned long long)rtp_loss_total.packets_unsupported);
	pthread_mutex_unlock(&rtp_totals_lock);
	return out;
}
