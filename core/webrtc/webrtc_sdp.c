/* webrtc_sdp: offer parsing and answer building for WHIP (see webrtc_sdp.h).
 *
 * The parser reads line by line (LF or CRLF), never past 'len', and keeps
 * only what the answer and the transport need: per section the kind, mid,
 * direction, rtcp-mux, the payload types of Opus, VP8 and H.264
 * (packetization-mode 1), media-level ICE credentials and fingerprint; at
 * session level the same credentials and the BUNDLE group. Unknown lines
 * are ignored, as SDP wants. */
#include "webrtc_sdp.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void sdp_err(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s", what);
}

/* Copies a token (up to a blank or the end) into 'out'; false when it does not fit or is empty. */
static bool sdp_token(const char *s, char *out, size_t outlen)
{
	size_t n = strcspn(s, " \t");
	if (n == 0 || n >= outlen)
		return false;
	memcpy(out, s, n);
	out[n] = 0;
	return true;
}

/* ICE ufrag/pwd characters (RFC 8839: ice-char = ALPHA / DIGIT / "+" / "/"). */
static bool sdp_ice_chars(const char *s)
{
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '+' && *s != '/')
			return false;
	return true;
}

/* "sha-256 AB:CD:..." into 32 bytes; false for another hash or bad text. */
static bool sdp_fingerprint(const char *v, uint8_t out[32])
{
	if (strncasecmp(v, "sha-256 ", 8) != 0)
		return false;
	v += 8;
	while (*v == ' ')
		v++;
	for (int i = 0; i < 32; i++) {
		unsigned x;
		if (!isxdigit((unsigned char)v[0]) || !isxdigit((unsigned char)v[1]))
			return false;
		if (sscanf(v, "%2x", &x) != 1)
			return false;
		out[i] = (uint8_t)x;
		v += 2;
		if (i < 31 && *v++ != ':')
			return false;
	}
	return *v == 0 || *v == ' ';
}

/* "a=rtpmap:PT NAME/RATE[/CH]" of one section. */
static void sdp_rtpmap(struct webrtc_sdp_section *m, const char *v)
{
	char *end;
	long pt = strtol(v, &end, 10);
	if (end == v || *end != ' ' || pt < 0 || pt > 127)
		return;
	v = end + 1;
	if (m->kind == WEBRTC_KIND_AUDIO && m->opus_pt < 0 && strncasecmp(v, "opus/48000/2", 12) == 0)
		m->opus_pt = (int)pt;
	else if (m->kind == WEBRTC_KIND_VIDEO && m->vp8_pt < 0 && strncasecmp(v, "VP8/90000", 9) == 0)
		m->vp8_pt = (int)pt;
	else if (m->kind == WEBRTC_KIND_VIDEO && strncasecmp(v, "H264/90000", 10) == 0)
		m->h264_map[pt / 8] |= (uint8_t)(1u << (pt % 8)); /* fmtp must say packetization-mode=1 */
	else if (m->kind == WEBRTC_KIND_VIDEO && strncasecmp(v, "rtx/90000", 9) == 0)
		m->rtx_map[pt / 8] |= (uint8_t)(1u << (pt % 8)); /* fmtp says which payload it repairs */
}

static void sdp_fmtp(struct webrtc_sdp_section *m, const char *v)
{
	char *end;
	long pt = strtol(v, &end, 10);
	if (end == v || *end != ' ' || pt < 0 || pt > 127 || m->kind != WEBRTC_KIND_VIDEO)
		return;
	v = end + 1;
	if (m->rtx_map[pt / 8] & (1u << (pt % 8))) {
		const char *apt = strstr(v, "apt=");
		long a = apt ? strtol(apt + 4, &end, 10) : -1;
		if (apt && end != apt + 4 && a >= 0 && a <= 127)
			m->rtx_apt[pt] = (int8_t)a;
		return;
	}
	/* The first H.264 payload in mode 1 (non-interleaved, what WebRTC
	 * sends) wins. */
	if (m->h264_pt < 0 && (m->h264_map[pt / 8] & (1u << (pt % 8))) && strstr(v, "packetization-mode=1")) {
		m->h264_pt = (int)pt;
		snprintf(m->h264_fmtp, sizeof(m->h264_fmtp), "%s", v);
	}
}

/* The attributes shared by session and media level. */
static int sdp_ice_attr(const char *a, char *ufrag, char *pwd, bool *has_fp, uint8_t fp[32], char *err, size_t errlen)
{
	if (strncmp(a, "ice-ufrag:", 10) == 0) {
		if (!sdp_token(a + 10, ufrag, WEBRTC_ICE_UFRAG_MAX) || !sdp_ice_chars(ufrag) || strlen(ufrag) < 4) {
			sdp_err(err, errlen, "a=ice-ufrag must be 4 to 255 ICE characters");
			return -1;
		}
	} else if (strncmp(a, "ice-pwd:", 8) == 0) {
		if (!sdp_token(a + 8, pwd, WEBRTC_ICE_PWD_MAX) || !sdp_ice_chars(pwd) || strlen(pwd) < 22) {
			sdp_err(err, errlen, "a=ice-pwd must be 22 to 255 ICE characters");
			return -1;
		}
	} else if (strncmp(a, "fingerprint:", 12) == 0) {
		uint8_t tmp[32];
		if (sdp_fingerprint(a + 12, tmp)) {
			memcpy(fp, tmp, 32);
			*has_fp = true;
		}
	}
	return 0;
}

/* Section 'cur' of the BUNDLE group "a=group:BUNDLE 0 1". */
static void sdp_mark_bundle(struct webrtc_offer *o, const char *group)
{
	const char *p = group;
	while (*p) {
		char mid[WEBRTC_MID_MAX];
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		size_t n = strcspn(p, " ");
		if (n < sizeof(mid)) {
			memcpy(mid, p, n);
			mid[n] = 0;
			for (int i = 0; i < o->n; i++)
				if (strcmp(o->s[i].mid, mid) == 0)
					o->s[i].bundled = true;
		}
		p += n;
	}
}

int webrtc_offer_parse(const char *text, size_t len, struct webrtc_offer *o, char *err, size_t errlen)
{
	char line[WEBRTC_SDP_MAX_LINE];
	char bundle[WEBRTC_SDP_MAX_LINE] = "";
	bool session_fp = false, first = true;
	struct webrtc_sdp_section *m = NULL;
	size_t pos = 0;

	memset(o, 0, sizeof(*o));
	while (pos < len) {
		size_t n = 0;
		while (pos + n < len && text[pos + n] != '\n')
			n++;
		size_t next = pos + n + (pos + n < len ? 1 : 0);
		if (n && text[pos + n - 1] == '\r')
			n--;
		if (n >= sizeof(line)) {
			sdp_err(err, errlen, "an SDP line is longer than 2047 bytes");
			return -1;
		}
		memcpy(line, text + pos, n);
		line[n] = 0;
		pos = next;
		if (memchr(line, 0, n)) {
			sdp_err(err, errlen, "the SDP holds a NUL byte");
			return -1;
		}
		if (n == 0)
			continue;
		if (n < 2 || line[1] != '=') {
			sdp_err(err, errlen, "not SDP: every line is <type>=<value>");
			return -1;
		}
		if (first) {
			if (strcmp(line, "v=0") != 0) {
				sdp_err(err, errlen, "not SDP: the first line must be v=0");
				return -1;
			}
			first = false;
			continue;
		}
		const char *v = line + 2;
		if (line[0] == 'm') {
			if (o->n == WEBRTC_SDP_MAX_SECTIONS) {
				sdp_err(err, errlen, "the offer has more than 16 media sections");
				return -1;
			}
			m = &o->s[o->n++];
			memset(m, 0, sizeof(*m));
			m->sends = true;
			m->opus_pt = m->vp8_pt = -1;
			m->h264_pt = -1;
			memset(m->rtx_apt, -1, sizeof(m->rtx_apt));
			char port[16];
			if (sscanf(v, "%15s %15s %31s %15s", m->media, port, m->proto, m->first_fmt) < 3) {
				sdp_err(err, errlen, "malformed m= line");
				return -1;
			}
			m->kind = strcmp(m->media, "audio") == 0   ? WEBRTC_KIND_AUDIO
				  : strcmp(m->media, "video") == 0 ? WEBRTC_KIND_VIDEO
								   : WEBRTC_KIND_OTHER;
			if (!m->first_fmt[0])
				snprintf(m->first_fmt, sizeof(m->first_fmt), "0");
			continue;
		}
		if (line[0] != 'a')
			continue;
		if (!m) {
			if (sdp_ice_attr(v, o->ice_ufrag, o->ice_pwd, &session_fp, o->fingerprint, err, errlen) < 0)
				return -1;
			if (strncmp(v, "group:BUNDLE", 12) == 0) {
				snprintf(bundle, sizeof(bundle), "%s", v + 12);
				o->has_bundle = true;
			}
			continue;
		}
		if (sdp_ice_attr(v, m->ufrag, m->pwd, &m->has_fingerprint, m->fingerprint, err, errlen) < 0)
			return -1;
		if (strncmp(v, "mid:", 4) == 0) {
			if (!sdp_token(v + 4, m->mid, sizeof(m->mid))) {
				sdp_err(err, errlen, "a=mid is empty or longer than 31 bytes");
				return -1;
			}
		} else if (strcmp(v, "sendonly") == 0 || strcmp(v, "sendrecv") == 0) {
			m->sends = true;
		} else if (strcmp(v, "recvonly") == 0 || strcmp(v, "inactive") == 0) {
			m->sends = false;
		} else if (strcmp(v, "rtcp-mux") == 0) {
			m->rtcp_mux = true;
		} else if (strncmp(v, "rtpmap:", 7) == 0) {
			sdp_rtpmap(m, v + 7);
		} else if (strncmp(v, "fmtp:", 5) == 0) {
			sdp_fmtp(m, v + 5);
		} else if (strncmp(v, "setup:", 6) == 0) {
			if (strcmp(v + 6, "actpass") != 0 && strcmp(v + 6, "active") != 0) {
				sdp_err(err, errlen, "a=setup must be actpass or active: edgerec is the DTLS server");
				return -1;
			}
		}
	}
	if (first) {
		sdp_err(err, errlen, "the offer is empty");
		return -1;
	}
	if (o->n == 0) {
		sdp_err(err, errlen, "the offer has no media section");
		return -1;
	}
	/* Media-level credentials (what browsers write) stand for the session's
	 * when it has none; with BUNDLE every section shares one transport. */
	for (int i = 0; i < o->n; i++) {
		struct webrtc_sdp_section *s = &o->s[i];
		if (!o->ice_ufrag[0] && s->ufrag[0])
			memcpy(o->ice_ufrag, s->ufrag, sizeof(o->ice_ufrag));
		if (!o->ice_pwd[0] && s->pwd[0])
			memcpy(o->ice_pwd, s->pwd, sizeof(o->ice_pwd));
		if (!session_fp && s->has_fingerprint) {
			memcpy(o->fingerprint, s->fingerprint, 32);
			session_fp = true;
		}
	}
	if (!o->ice_ufrag[0] || !o->ice_pwd[0]) {
		sdp_err(err, errlen, "the offer has no a=ice-ufrag / a=ice-pwd");
		return -1;
	}
	if (!session_fp) {
		sdp_err(err, errlen, "the offer has no a=fingerprint:sha-256");
		return -1;
	}
	if (o->has_bundle)
		sdp_mark_bundle(o, bundle);
	return 0;
}

int webrtc_offer_choose(const struct webrtc_offer *o, const char *format, bool h264, struct webrtc_choice *c,
			char *err, size_t errlen)
{
	bool webm = strcmp(format, "webm") == 0;
	bool mp4 = strcmp(format, "mp4") == 0 && h264;
	bool video_offered = false;

	c->video_section = c->audio_section = -1;
	c->video_codec = WEBRTC_VIDEO_NONE;
	c->video_pt = c->audio_pt = c->video_rtx_pt = -1;
	c->no_nack = false;
	for (int i = 0; i < o->n; i++) {
		const struct webrtc_sdp_section *s = &o->s[i];
		if (!s->sends || !s->mid[0])
			continue;
		if (s->kind == WEBRTC_KIND_AUDIO && c->audio_section < 0 && s->opus_pt >= 0) {
			c->audio_section = i;
			c->audio_pt = s->opus_pt;
		}
		if (s->kind != WEBRTC_KIND_VIDEO || c->video_section >= 0)
			continue;
		video_offered = true;
		if (!webm && h264 && s->h264_pt >= 0) {
			c->video_codec = WEBRTC_VIDEO_H264;
			c->video_pt = s->h264_pt;
		} else if (!mp4 && s->vp8_pt >= 0) {
			c->video_codec = WEBRTC_VIDEO_VP8;
			c->video_pt = s->vp8_pt;
		} else {
			continue;
		}
		c->video_section = i;
		for (int pt = 0; pt < 128 && c->video_rtx_pt < 0; pt++)
			if (s->rtx_apt[pt] == c->video_pt)
				c->video_rtx_pt = pt;
	}
	if (video_offered && c->video_section < 0) {
		snprintf(err, errlen, "the offer's video has no codec a %s recording can hold: edgerec takes %s%s", format,
			 webm || !h264 ? "VP8" : mp4 ? "H.264 (packetization-mode=1)" : "H.264 (packetization-mode=1) or VP8",
			 mp4 ? " (VP8 goes to webm or mkv; MP4 would mean re-encoding it)" : "");
		return -1;
	}
	if (c->video_section < 0 && c->audio_section < 0) {
		snprintf(err, errlen, "the offer sends nothing edgerec records (a sending audio section with Opus "
			 "or a video section with %s)", webm || !h264 ? "VP8" : mp4 ? "H.264" : "VP8 or H.264");
		return -1;
	}
	if (c->video_section >= 0 && c->audio_section >= 0 &&
	    (!o->s[c->video_section].bundled || !o->s[c->audio_section].bundled)) {
		snprintf(err, errlen, "the offer must BUNDLE its audio and video (max-bundle): edgerec has one "
			 "transport per session");
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		int k = i ? c->audio_section : c->video_section;
		if (k >= 0 && !o->s[k].rtcp_mux) {
			snprintf(err, errlen, "media section %s lacks a=rtcp-mux, which WHIP requires", o->s[k].mid);
			return -1;
		}
	}
	return 0;
}

/* The offer's H.264 fmtp as the answer repeats it: its parameters less the
 * sprop-* ones, which describe what the offerer sends (edgerec sends nothing). */
static void sdp_fmtp_answer(FILE *f, const char *fmtp)
{
	bool first = true;
	for (const char *p = fmtp; *p;) {
		size_t n = strcspn(p, ";");
		const char *q = p;
		while (n && *q == ' ') {
			q++;
			n--;
		}
		if (n && strncasecmp(q, "sprop-", 6) != 0) {
			fprintf(f, "%s%.*s", first ? "" : ";", (int)n, q);
			first = false;
		}
		p = q + n + (q[n] == ';');
	}
}

int webrtc_h264_sprop(const char *fmtp, char *out, size_t outlen)
{
	out[0] = 0;
	for (const char *p = fmtp; *p;) {
		size_t n = strcspn(p, ";");
		while (n && *p == ' ') {
			p++;
			n--;
		}
		if (n > 21 && strncasecmp(p, "sprop-parameter-sets=", 21) == 0) {
			size_t k = 0;
			for (size_t i = 21; i < n && p[i] != ' '; i++) {
				char ch = p[i] == ',' ? ':' : p[i];
				if (!isalnum((unsigned char)ch) && ch != '+' && ch != '/' && ch != '=' && ch != ':')
					return -1;
				if (k + 1 >= outlen)
					return -1;
				out[k++] = ch;
			}
			out[k] = 0;
			return 0;
		}
		p += n + (p[n] == ';');
	}
	return 0;
}

char *webrtc_answer_build(const struct webrtc_offer *o, const struct webrtc_choice *c,
			  const struct webrtc_answer_params *p)
{
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	const char *addr0 = p->n_addresses ? p->addresses[0] : "0.0.0.0";
	const char *ipv = strchr(addr0, ':') ? "IP6" : "IP4";

	if (!f)
		return NULL;
	fprintf(f, "v=0\r\no=edgerec %llu %llu IN %s %s\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n",
		(unsigned long long)p->session_version, (unsigned long long)p->session_version, ipv, addr0);
	fprintf(f, "a=group:BUNDLE");
	for (int i = 0; i < o->n; i++)
		if (i == c->video_section || i == c->audio_section)
			fprintf(f, " %s", o->s[i].mid);
	fprintf(f, "\r\na=msid-semantic: WMS\r\n");
	for (int i = 0; i < o->n; i++) {
		const struct webrtc_sdp_section *s = &o->s[i];
		bool video = i == c->video_section, audio = i == c->audio_section;
		if (!video && !audio) {
			fprintf(f, "m=%s 0 %s %s\r\nc=IN %s %s\r\n", s->media, s->proto, s->first_fmt, ipv, addr0);
			if (s->mid[0])
				fprintf(f, "a=mid:%s\r\n", s->mid);
			fprintf(f, "a=inactive\r\n");
			continue;
		}
		int pt = video ? c->video_pt : c->audio_pt;
		int rtx = video && !c->no_nack ? c->video_rtx_pt : -1;
		fprintf(f, "m=%s %d %s %d", s->media, p->port, s->proto, pt);
		if (rtx >= 0)
			fprintf(f, " %d", rtx);
		fprintf(f, "\r\nc=IN %s %s\r\n", ipv, addr0);
		fprintf(f, "a=mid:%s\r\na=recvonly\r\na=rtcp-mux\r\n", s->mid);
		fprintf(f, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\na=fingerprint:sha-256 %s\r\na=setup:passive\r\n",
			p->ice_ufrag, p->ice_pwd, p->fingerprint);
		if (audio) {
			fprintf(f, "a=rtpmap:%d opus/48000/2\r\na=fmtp:%d minptime=10;useinbandfec=1\r\n", pt, pt);
		} else if (c->video_codec == WEBRTC_VIDEO_H264) {
			fprintf(f, "a=rtpmap:%d H264/90000\r\na=fmtp:%d ", pt, pt);
			sdp_fmtp_answer(f, s->h264_fmtp);
			fprintf(f, "\r\n");
		} else {
			fprintf(f, "a=rtpmap:%d VP8/90000\r\n", pt);
		}
		if (video && !c->no_nack)
			fprintf(f, "a=rtcp-fb:%d nack\r\n", pt);
		if (rtx >= 0)
			fprintf(f, "a=rtpmap:%d rtx/90000\r\na=fmtp:%d apt=%d\r\n", rtx, rtx, pt);
		if (video)
			fprintf(f, "a=rtcp-fb:%d nack pli\r\na=rtcp-fb:%d ccm fir\r\na=rtcp-fb:%d goog-remb\r\n", pt,
				pt, pt);
		for (int k = 0; k < p->n_addresses; k++)
			fprintf(f, "a=candidate:%d 1 udp %u %s %d typ host\r\n", k + 1, 2130706431u - (unsigned)k,
				p->addresses[k], p->port);
		fprintf(f, "a=end-of-candidates\r\n");
	}
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}
