/* http_whip: the WHIP endpoint (RFC 9725) over the recorder.
 *
 *   POST    /api/webrtc/rooms/{room}/whip          application/sdp offer -> 201 answer + Location
 *   DELETE  /api/webrtc/rooms/{room}/whip/{id}      ends the session (the recording stops)
 *   PATCH   /api/webrtc/rooms/{room}/whip/{id}      trickle-ice-sdpfrag -> 204 (422: ICE restart)
 *   OPTIONS on both                                 CORS preflight, no token
 *
 * The session's id in the Location is its recording's id, so the REST
 * routes (status, stop, pause, resume, cancel) reach it too. Every reply on
 * these routes carries Access-Control-Allow-Origin (http_server.c). */
#include "http_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <civetweb.h>

#include "common_util.h"
#include "recorder.h"

bool http_route_is_whip(int route)
{
	return route == HTTP_ROUTE_WHIP || route == HTTP_ROUTE_WHIP_OPTIONS || route == HTTP_ROUTE_WHIP_END ||
	       route == HTTP_ROUTE_WHIP_PATCH || route == HTTP_ROUTE_WHIP_SESSION_OPTIONS;
}

/* True when the request's Content-Type is 'want' (parameters ignored). */
static bool whip_content_type(struct http_request *req, const char *want)
{
	const char *ct = mg_get_header(req->conn, "Content-Type");
	size_t n = strlen(want);
	return ct && strncasecmp(ct, want, n) == 0 && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

static void whip_options(struct http_request *req, bool session)
{
	const char *extra[] = {
		"Access-Control-Allow-Methods", session ? "DELETE, PATCH, OPTIONS" : "POST, OPTIONS",
		"Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match",
		"Access-Control-Max-Age", "600",
		session ? "Accept-Patch" : "Accept-Post", session ? "application/trickle-ice-sdpfrag" : "application/sdp",
		NULL,
	};
	http_reply_headers(req, 204, NULL, -1, extra);
}

#define WHIP_ICE_SERVERS_MAX 8

/* Whether 's' may stand inside a quoted Link parameter or <URI>: no
 * quote, backslash, angle bracket, comma, white space or control. */
static bool whip_link_safe(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= ' ' || ch >= 0x7f || ch == '"' || ch == '\\' || ch == '<' || ch == '>' || ch == ',')
			return false;
	}
	return true;
}

/* The Link headers of the 201 (RFC 9725 section 4.6) from webrtc.ice_servers:
 * "<stun:host>; rel=\"ice-server\"", TURN servers with the configured
 * username and credential. Fills 'links' (one buffer per server) and
 * returns how many; an entry that is not a stun/turn URI or would break
 * the header is left out. */
static int whip_ice_links(const struct config *cfg, char links[][384])
{
	const char *list = config_get_str(cfg, "webrtc.ice_servers");
	const char *user = config_get_str(cfg, "webrtc.ice_username");
	const char *cred = config_get_str(cfg, "webrtc.ice_credential");
	bool have_cred = user && cred && user[0] && cred[0] && strlen(user) < 64 && strlen(cred) < 64 &&
			 whip_link_safe(user, strlen(user)) && whip_link_safe(cred, strlen(cred));
	int n = 0;
	for (const char *p = list ? list : ""; *p && n < WHIP_ICE_SERVERS_MAX;) {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		size_t len = strcspn(p, ", \t");
		if (!len)
			break;
		bool turn = strncmp(p, "turn:", 5) == 0 || strncmp(p, "turns:", 6) == 0;
		bool stun = strncmp(p, "stun:", 5) == 0 || strncmp(p, "stuns:", 6) == 0;
		if ((turn || stun) && whip_link_safe(p, len) && len < 200) {
			if (turn && have_cred)
				snprintf(links[n++], 384,
					 "<%.*s>; rel=\"ice-server\"; username=\"%s\"; credential=\"%s\"; "
					 "credential-type=\"password\"", (int)len, p, user, cred);
			else
				snprintf(links[n++], 384, "<%.*s>; rel=\"ice-server\"", (int)len, p);
		}
		p += len;
	}
	return n;
}

static void whip_publish(struct http_request *req, struct recorder *rec, const struct recorder_caller *caller,
			 const char *room_id)
{
	const struct mg_request_info *ri = mg_get_request_info(req->conn);
	char format[32] = "", quality[32] = "", rid[UUID_STR_LEN], location[512];
	struct recorder_reply out = { 0, NULL };
	char *answer = NULL;
	size_t len = 0;

	if (!whip_content_type(req, "application/sdp")) {
		http_reply_error(req, 415, "unsupported_media_type", "a WHIP offer is Content-Type: application/sdp");
		return;
	}
	if (http_query(ri, "recording_format", format, sizeof(format)) < 0) {
		http_reply_error(req, 400, "invalid_format", "unknown recording_format");
		return;
	}
	if (http_query(ri, "quality", quality, sizeof(quality)) < 0) {
		http_reply_error(req, 400, "invalid_quality", "unknown quality");
		return;
	}
	char *sdp = http_read_body(req, &len);
	if (!sdp)
		return;
	recorder_whip_publish(rec, caller, room_id, format[0] ? format : NULL, quality[0] ? quality : NULL, sdp, len,
			      &out, &answer, rid);
	free(sdp);
	if (out.status == 201 && answer) {
		snprintf(location, sizeof(location), "/api/webrtc/rooms/%s/whip/%s", room_id, rid);
		snprintf(req->note, sizeof(req->note), "recording=%s", rid);
		char links[WHIP_ICE_SERVERS_MAX][384];
		int nl = whip_ice_links(req->s->cfg, links);
		const char *extra[8 + 2 * WHIP_ICE_SERVERS_MAX + 1] = {
			"Location", location, "X-Recording-Id", rid, "ETag", "\"1\"",
		};
		for (int i = 0; i < nl; i++) {
			extra[6 + 2 * i] = "Link";
			extra[7 + 2 * i] = links[i];
		}
		size_t alen = strlen(answer);
		if (http_reply_headers(req, 201, "application/sdp", (long long)alen, extra))
			mg_write(req->conn, answer, alen);
	} else if (out.body) {
		http_reply_json(req, out.status >= 400 ? out.status : 500, out.body);
	} else {
		http_reply_error(req, 500, "internal", "the recorder gave no answer");
	}
	free(answer);
	cJSON_Delete(out.body);
}

void http_whip_serve(struct http_request *req, const struct http_route_match *cm)
{
	struct http_route_match copy = *cm, *m = &copy;
	struct recorder *rec = req->s->rec;
	struct recorder_reply out = { 0, NULL };
	cJSON *claims = NULL;

	if (m->route->id == HTTP_ROUTE_WHIP_OPTIONS || m->route->id == HTTP_ROUTE_WHIP_SESSION_OPTIONS) {
		whip_options(req, m->route->id == HTTP_ROUTE_WHIP_SESSION_OPTIONS);
		return;
	}
	if (http_auth_check(req, false, &claims) < 0)
		return;
	struct recorder_caller caller = recorder_caller_of(claims);
	if (http_check_ids(req, m) < 0)
		goto done;
	switch (m->route->id) {
	case HTTP_ROUTE_WHIP:
		whip_publish(req, rec, &caller, m->room_id);
		goto done;
	case HTTP_ROUTE_WHIP_END:
		recorder_whip_end(rec, &caller, m->room_id, m->recording_id, &out);
		break;
	case HTTP_ROUTE_WHIP_PATCH: {
		size_t len = 0;
		if (!whip_content_type(req, "application/trickle-ice-sdpfrag")) {
			http_reply_error(req, 415, "unsupported_media_type",
					 "PATCH takes Content-Type: application/trickle-ice-sdpfrag");
			goto done;
		}
		char *frag = http_read_body(req, &len);
		if (!frag)
			goto done;
		recorder_whip_patch(rec, &caller, m->room_id, m->recording_id, frag, len, &out);
		free(frag);
		if (out.status == 204) {
			http_reply_headers(req, 204, NULL, -1, NULL);
			goto done;
		}
		break;
	}
	default:
		http_reply_error(req, 404, "not_found", "no such route");
		goto done;
	}
	if (out.body)
		http_reply_json(req, out.status, out.body);
	else
		http_reply_error(req, 500, "internal", "the recorder gave no answer");
done:
	cJSON_Delete(out.body);
	cJSON_Delete(claims);
}
