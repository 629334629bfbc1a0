/* media_rtp_sdp: the receiver's view of an SDP description (m=, c=, a=rtpmap, a=fmtp, a=rtcp, a=rtcp-mux, a=ssrc). */
#include "media_rtp_sdp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common_util.h"

enum sdp_kind { SDP_NONE, SDP_VP8, SDP_H264, SDP_OPUS };

/* Per section while parsing: the PTs listed on the m= line, what their
 * rtpmap and fmtp say. */
struct sdp_section {
	struct media_rtp_sdp_stream *st;
	bool video;
	int pts[32];
	int npts;
	unsigned char kind[128];     /* enum sdp_kind per PT */
	signed char pmode[128];      /* H.264 packetization-mode, 0 when absent */
	unsigned char channels[128];
	int sprop_pt;                /* the PT whose sprop-parameter-sets are in 'sprop' */
	char sprop[384];
};

static bool sdp_listed(const struct sdp_section *sec, int pt)
{
	for (int i = 0; i < sec->npts; i++)
		if (sec->pts[i] == pt)
			return true;
	return false;
}

static void sdp_rtpmap(struct sdp_section *sec, const char *v)
{
	int pt;
	char name[32];
	int rate = 0, ch = 0;

	if (sscanf(v, "%d %31[^/]/%d/%d", &pt, name, &rate, &ch) < 2 || !sdp_listed(sec, pt))
		return;
	if (sec->video && strcasecmp(name, "VP8") == 0)
		sec->kind[pt] = SDP_VP8;
	else if (sec->video && strcasecmp(name, "H264") == 0 && (rate == 90000 || rate == 0))
		sec->kind[pt] = SDP_H264;
	else if (!sec->video && strcasecmp(name, "opus") == 0) {
		sec->kind[pt] = SDP_OPUS;
		sec->channels[pt] = (unsigned char)(ch > 0 && ch < 256 ? ch : 2);
	}
}

/* a=fmtp:PT k=v;k=v: packetization-mode and sprop-parameter-sets. */
static void sdp_fmtp(struct sdp_section *sec, const char *v)
{
	char *end;
	long pt = strtol(v, &end, 10);

	if (end == v || pt < 0 || pt > 127 || !sdp_listed(sec, (int)pt))
		return;
	for (const char *p = end; *p;) {
		p += strspn(p, " ;");
		size_t n = strcspn(p, ";");
		if (strncasecmp(p, "packetization-mode=", 19) == 0 && n > 19)
			sec->pmode[pt] = (signed char)atoi(p + 19);
		else if (strncasecmp(p, "sprop-parameter-sets=", 21) == 0 && n - 21 < sizeof(sec->sprop)) {
			memcpy(sec->sprop, p + 21, n - 21);
			sec->sprop[n - 21] = 0;
			sec->sprop[strcspn(sec->sprop, " \t")] = 0;
			sec->sprop_pt = (int)pt;
		}
		p += n;
	}
}

/* The section ends: its payload type is the first listed VP8 (video) or
 * Opus (audio) one, else the first H.264 one in packetization-mode 1. */
static void sdp_section_end(struct sdp_section *sec)
{
	struct media_rtp_sdp_stream *st = sec->st;

	if (!st)
		return;
	for (int pass = 0; pass < 2 && st->payload_type < 0; pass++) {
		for (int i = 0; i < sec->npts && st->payload_type < 0; i++) {
			int pt = sec->pts[i];
			if (pass == 0 && sec->kind[pt] == SDP_VP8) {
				util_strlcpy(st->codec, "VP8", sizeof(st->codec));
			} else if (pass == 0 && sec->kind[pt] == SDP_OPUS) {
				util_strlcpy(st->codec, "opus", sizeof(st->codec));
				st->channels = sec->channels[pt];
			} else if (pass == 1 && sec->kind[pt] == SDP_H264 && sec->pmode[pt] == 1) {
				util_strlcpy(st->codec, "H264", sizeof(st->codec));
				if (sec->sprop_pt == pt)
					util_strlcpy(st->h264_sprop, sec->sprop, sizeof(st->h264_sprop));
			} else {
				continue;
			}
			st->payload_type = pt;
		}
	}
	sec->st = NULL;
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

			sdp_section_end(&sec);
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
			memset(sec.kind, 0, sizeof(sec.kind));
			memset(sec.pmode, 0, sizeof(sec.pmode));
			sec.sprop_pt = -1;
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
			} else if (strncmp(v, "fmtp:", 5) == 0) {
				sdp_fmtp(&sec, v + 5);
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
	sdp_section_end(&sec);
	/* Static payload types need no rtpmap, but VP8, H.264 and Opus are
	 * dynamic: a section without the rtpmap is unusable. */
	if (out->video.present && out->video.payload_type < 0)
		out->video.present = false;
	if (out->audio.present && out->audio.payload_type < 0)
		out->audio.present = false;
	if (!out->video.present && !out->audio.present) {
		util_strlcpy(err, "SDP has no VP8 or H.264 (packetization-mode=1) video and no Opus audio section",
			     errlen);
		return -1;
	}
	return 0;
}
