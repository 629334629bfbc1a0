/* media_rtp_sdp: the receiver's view of an SDP description (m=, c=, a=rtpmap, a=rtcp, a=rtcp-mux, a=ssrc). */
#include "media_rtp_sdp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common_util.h"

/* Per section while parsing: the PTs listed on the m= line. */
struct sdp_section {
	struct media_rtp_sdp_stream *st;
	bool video;
	int pts[32];
	int npts;
};

static void sdp_rtpmap(struct sdp_section *sec, const char *v)
{
	int pt;
	char name[32];
	int rate = 0, ch = 0;
	bool listed = false;

	if (sscanf(v, "%d %31[^/]/%d/%d", &pt, name, &rate, &ch) < 2)
		return;
	for (int i = 0; i < sec->npts; i++)
		listed |= sec->pts[i] == pt;
	if (!listed || sec->st->payload_type >= 0)
		return;
	if (sec->video && strcasecmp(name, "VP8") == 0) {
		sec->st->payload_type = pt;
	} else if (!sec->video && strcasecmp(name, "opus") == 0) {
		sec->st->payload_type = pt;
		sec->st->channels = ch > 0 ? ch : 2;
	}
}

int media_rtp_sdp_parse(const char *text, struct media_rtp_sdp *out, char *err, size_t errlen)
{
	char session_addr[64] = "";
	struct sdp_section sec = { 0 };
	const char *line = text;

	memset(out, 0, sizeof(*out));
	out->video.payload_type = out->audio.payload_type = -1;
	if (!text) {
		util_strlcpy(err, "no SDP text", errlen);
		return -1;
	}
	while (*line) {
		const char *end = line + strcspn(line, "\r\n");
		char buf[512];
		size_t len = (size_t)(end - line);

		if (len >= sizeof(buf))
			len = sizeof(buf) - 1;
		memcpy(buf, line, len);
		buf[len] = 0;
		line = end + strspn(end, "\r\n");
		if (len < 2 || buf[1] != '=')
			continue;
		if (buf[0] == 'm') {
			char media[16], proto[32];
			int port, n = 0;
			char *p;

			sec.st = NULL;
			if (sscanf(buf + 2, "%15s %d %31s%n", media, &port, proto, &n) < 3) {
				snprintf(err, errlen, "malformed SDP line '%s'", buf);
				return -1;
			}
			if (strcmp(media, "video") && strcmp(media, "audio"))
				continue;
			if (port < 0 || port > 65535) {
				snprintf(err, errlen, "SDP port %d out of range", port);
				return -1;
			}
			sec.video = strcmp(media, "video") == 0;
			sec.st = sec.video ? &out->video : &out->audio;
			if (sec.st->present) { /* only the first section of each kind */
				sec.st = NULL;
				continue;
			}
			sec.st->present = true;
			sec.st->port = port;
			util_strlcpy(sec.st->address, session_addr, sizeof(sec.st->address));
			sec.npts = 0;
			for (p = buf + 2 + n; *p && sec.npts < (int)(sizeof(sec.pts) / sizeof(sec.pts[0]));) {
				char *e;
				long v = strtol(p, &e, 10);

				if (e == p)
					break;
				if (v >= 0 && v < 128)
					sec.pts[sec.npts++] = (int)v;
				p = e;
			}
		} else if (buf[0] == 'c') {
			char addr[64];

			if (sscanf(buf + 2, "IN IP%*d %63[^/ ]", addr) == 1) {
				if (sec.st)
					util_strlcpy(sec.st->address, addr, sizeof(sec.st->address));
				else
					util_strlcpy(session_addr, addr, sizeof(session_addr));
			}
		} else if (buf[0] == 'a' && sec.st) {
			const char *v = buf + 2;

			if (strncmp(v, "rtpmap:", 7) == 0) {
				sdp_rtpmap(&sec, v + 7);
			} else if (strncmp(v, "rtcp-mux", 8) == 0) {
				sec.st->rtcp_mux = true;
			} else if (strncmp(v, "rtcp:", 5) == 0) {
				int port = atoi(v + 5);

				if (port > 0 && port <= 65535)
					sec.st->rtcp_port = port;
			} else if (strncmp(v, "ssrc:", 5) == 0 && !sec.st->has_ssrc) {
				sec.st->has_ssrc = true;
				sec.st->ssrc = (uint32_t)strtoul(v + 5, NULL, 10);
			}
		}
	}
	/* Static payload types need no rtpmap, but VP8 and Opus are dynamic:
	 * a section without the rtpmap is unusable. */
	if (out->video.present && out->video.payload_type < 0)
		out->video.present = false;
	if (out->audio.present && out->audio.payload_type < 0)
		out->audio.present = false;
	if (!out->video.present && !out->audio.present) {
		util_strlcpy(err, "SDP has no VP8 video or Opus audio section", errlen);
		return -1;
	}
	return 0;
}
