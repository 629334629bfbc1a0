/* webrtc: the WHIP transport (see webrtc.h).
 *
 * One thread reads the UDP port and sorts each datagram by its first byte
 * (RFC 7983): STUN (0-3) goes to the session whose ufrag the USERNAME
 * names; DTLS (20-63) and SRTP/SRTCP (128-191) go to the session that
 * validated the datagram's source address. Both are hash lookups (our
 * ufrag; the source address), so the cost per datagram does not grow with
 * the number of sessions. Datagrams are read in batches (recvmmsg); after
 * a pass that read something the thread waits WEBRTC_COALESCE_NS so that
 * it wakes about 50 times a second whatever the number of publishers, not
 * once per datagram (in a virtual machine every wakeup costs more than the
 * SRTP of a packet). Each datagram keeps its own arrival time (the kernel's
 * receive timestamp), so the wait moves neither the jitter figures nor the
 * clock mapping. Sessions and their addresses
 * are looked up under one lock, held while a batch of datagrams is handled
 * (creating and closing sessions from HTTP threads wait that long at
 * most). The recording's source thread sends its RTCP through the feed's
 * callback: it takes only the session's out_lock (SRTCP context and the
 * selected address), never the server's lock.
 *
 * A session's life: created (answer sent) -> ICE checks validate addresses
 * -> DTLS handshake -> fingerprint checked -> SRTP keys -> media. It ends
 * (ended = true, the feed told there is no more) on consent loss, DTLS
 * close or failure, a fingerprint mismatch, no handshake within the
 * consent timeout, or when the feed's source detached; it is freed when
 * it has ended and either the source detached or close was asked. */
#include "webrtc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <srtp2/srtp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common_log.h"
#include "common_thread.h"
#include "common_time.h"
#include "common_util.h"
#include "config.h"
#include "crypto.h"
#include "crypto_dtls.h"
#include "media_rtp.h"
#include "media_rtp_feed.h"
#include "webrtc_stun.h"

static struct log_handle log_webrtc = LOG_HANDLE("webrtc");

#define WEBRTC_MAX_ADDRESSES 8
#define WEBRTC_SESSION_CANDIDATES 4
#define WEBRTC_BATCH 64
/* Batches read in one pass at most: 4096 datagrams, 290 ms of 100 720p
 * publishers, so that a pass drains what WEBRTC_COALESCE_NS let gather. */
#define WEBRTC_ROUNDS 64
#define WEBRTC_HASH_SIZE 1024  /* buckets of the ufrag and address tables (power of two) */
/* After a pass that read something the thread waits this long before
 * reading again: datagrams gather in the socket buffer and the next pass
 * takes them in a few calls. 20 ms against the 250 ms jitter buffer and
 * NACK's 40 ms retries; ICE and DTLS answers wait at most that long. */
#define WEBRTC_COALESCE_NS (20 * TIME_NS_PER_MS)
#define WEBRTC_PACKET_MAX 4096
#define WEBRTC_RCVBUF (16 << 20)
#define WEBRTC_TICK_NS (100 * TIME_NS_PER_MS)
#define WEBRTC_UFRAG_LEN 8
#define WEBRTC_PWD_LEN 24

static const struct config_option webrtc_options[] = {
	{ "webrtc.udp_port", CONFIG_INT, "41000", "the one UDP port of every WHIP session (ICE, DTLS, SRTP)" },
	{ "webrtc.bind", CONFIG_STR, "0.0.0.0", "local address of the WHIP UDP port" },
	{ "webrtc.host_addresses", CONFIG_STR, "",
	  "addresses announced as ICE host candidates, comma-separated (empty: the IPv4 addresses of the "
	  "interfaces that are up)" },
	{ "webrtc.consent_timeout", CONFIG_DURATION, "30s",
	  "a WHIP session whose publisher sends no ICE consent check and no media this long ends" },
	{ "webrtc.nack", CONFIG_BOOL, "true",
	  "ask WHIP publishers to send lost video packets again (generic NACK)" },
	{ "webrtc.ice_servers", CONFIG_STR, "",
	  "STUN/TURN servers offered to WHIP publishers in Link headers of the 201 answer (RFC 9725), "
	  "comma-separated stun:, stuns:, turn: or turns: URIs" },
	{ "webrtc.ice_username", CONFIG_STR, "", "the username those turn:/turns: servers take" },
	{ "webrtc.ice_credential", CONFIG_STR, "",
	  "the password those turn:/turns: servers take (sent only to publishers whose POST was authorized)" },
	{ 0 },
};

int webrtc_config_register(struct config *c)
{
	return config_register(c, webrtc_options);
}

struct webrtc_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

struct webrtc_session;

/* One validated address of a session in the server's address table. */
struct webrtc_addr_link {
	struct webrtc_session *s;
	int i;                       /* index in s->cand */
	bool linked;
	struct webrtc_addr_link *next;
};

struct webrtc_session {
	struct webrtc *w;
	uint64_t id;
	char tag[64];
	char ufrag[WEBRTC_UFRAG_LEN + 1], pwd[WEBRTC_PWD_LEN + 1];
	char remote_ufrag[WEBRTC_ICE_UFRAG_MAX];
	uint8_t remote_fp[32];
	int video_pt, audio_pt, video_rtx_pt;
	bool have_vssrc, have_assrc;
	uint32_t vssrc, assrc;
	bool have_vseq;
	uint16_t vseq;               /* highest video sequence number seen */
	struct webrtc_addr cand[WEBRTC_SESSION_CANDIDATES];
	int n_cand, next_cand;
	struct webrtc_addr_link link[WEBRTC_SESSION_CANDIDATES];
	struct webrtc_session *ufrag_next;  /* chain in the ufrag table */
	int selected;                /* index in cand, -1 until one is nominated */
	int64_t created_ns, last_consent_ns;
	int64_t last_media_ns;       /* last authenticated SRTP/SRTCP from the selected address */
	struct crypto_dtls *dtls;
	struct webrtc_addr dtls_addr;
	bool srtp_in_ready;
	srtp_t srtp_in;
	pthread_mutex_t out_lock;    /* srtp_out, out_addr, out_ready */
	srtp_t srtp_out;
	bool out_ready;
	struct webrtc_addr out_addr;
	struct media_rtp_feed *feed;
	bool ended, close_asked, media_seen;
	char end_reason[96];
	struct webrtc_session *next;
};

struct webrtc {
	int fd, efd, port;
	int64_t consent_ns;
	char addresses[WEBRTC_MAX_ADDRESSES][INET6_ADDRSTRLEN];
	const char *addr_ptrs[WEBRTC_MAX_ADDRESSES];
	int n_addresses;
	struct crypto_dtls_cert *cert;
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	pthread_mutex_t lock;
	struct webrtc_session *sessions;
	struct webrtc_session *by_ufrag[WEBRTC_HASH_SIZE];
	struct webrtc_addr_link *by_addr[WEBRTC_HASH_SIZE];
	uint64_t next_id;
	struct webrtc_stats st;   /* under lock, except rtcp_sent */
	atomic_ullong rtcp_sent;
	/* receive batch */
	uint8_t pkt[WEBRTC_BATCH][WEBRTC_PACKET_MAX];
	struct sockaddr_storage from[WEBRTC_BATCH];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(struct timespec))];
	} ctl[WEBRTC_BATCH];
	struct iovec iov[WEBRTC_BATCH];
	struct mmsghdr msg[WEBRTC_BATCH];
};

static pthread_once_t srtp_once = PTHREAD_ONCE_INIT;
static bool srtp_ok;

static void srtp_lib_init(void)
{
	srtp_ok = srtp_init() == srtp_err_status_ok;
}

/* ---- addresses ------------------------------------------------------------------ */

static bool addr_eq(const struct webrtc_addr *a, const struct sockaddr_storage *b, socklen_t blen)
{
	if (a->len != blen || a->ss.ss_family != b->ss_family)
		return false;
	if (b->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (b->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)b;
		return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
	}
	return false;
}

static uint32_t hash_bytes(uint32_t h, const void *data, size_t n)
{
	const uint8_t *p = data;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u; /* FNV-1a */
	return h;
}

/* Bucket of a source address (the remote half of the 5-tuple; the local
 * half is the one port). */
static uint32_t addr_bucket(const struct sockaddr_storage *ss)
{
	uint32_t h = 2166136261u;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;
		h = hash_bytes(h, &in->sin_addr, 4);
		h = hash_bytes(h, &in->sin_port, 2);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;
		h = hash_bytes(h, &in6->sin6_addr, 16);
		h = hash_bytes(h, &in6->sin6_port, 2);
	}
	return h & (WEBRTC_HASH_SIZE - 1);
}

static uint32_t ufrag_bucket(const char *ufrag, size_t n)
{
	return hash_bytes(2166136261u, ufrag, n) & (WEBRTC_HASH_SIZE - 1);
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	snprintf(out, outlen, "%s:%d", host, port);
}

/* The host candidates: the configured list, else the IPv4 addresses of the
 * interfaces that are up (loopback only when there is nothing else). */
static int webrtc_pick_addresses(struct webrtc *w, const char *list, char *err, size_t errlen)
{
	if (list && list[0]) {
		const char *p = list;
		while (*p && w->n_addresses < WEBRTC_MAX_ADDRESSES) {
			char a[INET6_ADDRSTRLEN];
			unsigned char tmp[16];
			while (*p == ' ' || *p == ',')
				p++;
			size_t n = strcspn(p, ", ");
			if (!n)
				break;
			if (n >= sizeof(a)) {
				snprintf(err, errlen, "webrtc.host_addresses: '%.*s' is not an address", (int)n, p);
				return -1;
			}
			memcpy(a, p, n);
			a[n] = 0;
			if (inet_pton(AF_INET, a, tmp) != 1 && inet_pton(AF_INET6, a, tmp) != 1) {
				snprintf(err, errlen, "webrtc.host_addresses: '%s' is not an IP address", a);
				return -1;
			}
			util_strlcpy(w->addresses[w->n_addresses++], a, INET6_ADDRSTRLEN);
			p += n;
		}
	} else {
		struct ifaddrs *ifa = NULL;
		if (getifaddrs(&ifa) == 0) {
			for (int loop = 0; loop < 2 && !w->n_addresses; loop++) {
				for (struct ifaddrs *i = ifa; i && w->n_addresses < WEBRTC_MAX_ADDRESSES; i = i->ifa_next) {
					if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP))
						continue;
					if (!!(i->ifa_flags & IFF_LOOPBACK) != (loop == 1))
						continue;
					inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr,
						  w->addresses[w->n_addresses++], INET6_ADDRSTRLEN);
				}
			}
			freeifaddrs(ifa);
		}
	}
	if (!w->n_addresses) {
		snprintf(err, errlen, "no address to announce as an ICE candidate (set webrtc.host_addresses)");
		return -1;
	}
	for (int i = 0; i < w->n_addresses; i++)
		w->addr_ptrs[i] = w->addresses[i];
	return 0;
}

/* ---- sessions ------------------------------------------------------------------- */

static void webrtc_random_text(char *out, size_t n)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint8_t raw[64];
	crypto_random(raw, n);
	for (size_t i = 0; i < n; i++)
		out[i] = alphabet[raw[i] & 63];
	out[n] = 0;
}

static int webrtc_sendto(struct webrtc *w, const uint8_t *data, size_t len, const struct webrtc_addr *to)
{
	if (sendto(w->fd, data, len, 0, (const struct sockaddr *)&to->ss, to->len) < 0) {
		LOG_DEBUG(&log_webrtc, "send failed: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int webrtc_dtls_send(void *opaque, const uint8_t *data, size_t len)
{
	struct webrtc_session *s = opaque;
	return webrtc_sendto(s->w, data, len, &s->dtls_addr);
}

/* The source's RTCP (RR, PLI, NACK, REMB) out through SRTCP. On the
 * source's thread (media_rtp_feed's callback). */
static void webrtc_feed_rtcp(void *opaque, int stream, const uint8_t *data, size_t len)
{
	struct webrtc_session *s = opaque;
	uint8_t buf[1500];
	int n = (int)len;

	if (len + SRTP_MAX_TRAILER_LEN > sizeof(buf))
		return;
	pthread_mutex_lock(&s->out_lock);
	if (s->out_ready) {
		memcpy(buf, data, len);
		if (srtp_protect_rtcp(s->srtp_out, buf, &n) == srtp_err_status_ok &&
		    webrtc_sendto(s->w, buf, (size_t)n, &s->out_addr) == 0)
			atomic_fetch_add(&s->w->rtcp_sent, 1);
	}
	pthread_mutex_unlock(&s->out_lock);
}

/* Ends a session: no more packets reach its feed (the source sees its end). Lock held. */
static void session_end(struct webrtc_session *s, const char *reason, uint64_t *counter)
{
	if (s->ended)
		return;
	s->ended = true;
	s->w->st.sessions_active--;
	util_strlcpy(s->end_reason, reason, sizeof(s->end_reason));
	if (counter)
		(*counter)++;
	if (s->dtls) {
		crypto_dtls_close(s->dtls);
	}
	media_rtp_feed_end(s->feed, reason);
	LOG_INFO(&log_webrtc, "session %llu%s%s ended: %s", (unsigned long long)s->id, s->tag[0] ? " of " : "", s->tag,
		 reason);
}

/* The address table: candidate i of s in or out. Lock held. */
static void session_addr_unlink(struct webrtc *w, struct webrtc_session *s, int i)
{
	struct webrtc_addr_link *l = &s->link[i];
	if (!l->linked)
		return;
	for (struct webrtc_addr_link **p = &w->by_addr[addr_bucket(&s->cand[i].ss)]; *p; p = &(*p)->next) {
		if (*p == l) {
			*p = l->next;
			break;
		}
	}
	l->linked = false;
}

static void session_addr_link(struct webrtc *w, struct webrtc_session *s, int i)
{
	struct webrtc_addr_link *l = &s->link[i], **b = &w->by_addr[addr_bucket(&s->cand[i].ss)];
	l->s = s;
	l->i = i;
	l->next = *b;
	*b = l;
	l->linked = true;
}

/* Unlinks and frees. Lock held. */
static void session_free(struct webrtc *w, struct webrtc_session *s)
{
	for (struct webrtc_session **p = &w->sessions; *p; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			break;
		}
	}
	for (struct webrtc_session **p = &w->by_ufrag[ufrag_bucket(s->ufrag, WEBRTC_UFRAG_LEN)]; *p;
	     p = &(*p)->ufrag_next) {
		if (*p == s) {
			*p = s->ufrag_next;
			break;
		}
	}
	for (int i = 0; i < s->n_cand; i++)
		session_addr_unlink(w, s, i);
	if (!s->ended)
		session_end(s, "closed", &w->st.ended_closed);
	/* After this the feed never calls webrtc_feed_rtcp again. */
	media_rtp_feed_release(s->feed);
	if (s->srtp_in_ready)
		srtp_dealloc(s->srtp_in);
	if (s->out_ready)
		srtp_dealloc(s->srtp_out);
	crypto_dtls_free(s->dtls);
	pthread_mutex_destroy(&s->out_lock);
	free(s);
}

int webrtc_session_new(struct webrtc *w, const struct webrtc_offer *o, const struct webrtc_choice *c,
		       struct webrtc_session_info *out, char *err, size_t errlen)
{
	return webrtc_session_new_on(w, o, c, NULL, out, err, errlen);
}

int webrtc_session_new_on(struct webrtc *w, const struct webrtc_offer *o, const struct webrtc_choice *c,
			  struct media_rtp_feed *feed, struct webrtc_session_info *out, char *err, size_t errlen)
{
	struct webrtc_session *s = calloc(1, sizeof(*s));

	memset(out, 0, sizeof(*out));
	if (!s) {
		media_rtp_feed_release(feed);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->w = w;
	s->selected = -1;
	s->video_pt = c->video_section >= 0 ? c->video_pt : -1;
	s->audio_pt = c->audio_section >= 0 ? c->audio_pt : -1;
	s->video_rtx_pt = s->video_pt >= 0 && !c->no_nack ? c->video_rtx_pt : -1;
	util_strlcpy(s->remote_ufrag, o->ice_ufrag, sizeof(s->remote_ufrag));
	memcpy(s->remote_fp, o->fingerprint, 32);
	webrtc_random_text(s->ufrag, WEBRTC_UFRAG_LEN);
	webrtc_random_text(s->pwd, WEBRTC_PWD_LEN);
	s->created_ns = time_mono_ns();
	pthread_mutex_init(&s->out_lock, NULL);
	if (feed)
		media_rtp_feed_set_rtcp(feed, webrtc_feed_rtcp, s);
	s->feed = feed ? feed : media_rtp_feed_new(webrtc_feed_rtcp, s);
	if (!s->feed) {
		pthread_mutex_destroy(&s->out_lock);
		free(s);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	struct webrtc_answer_params ap = {
		.ice_ufrag = s->ufrag,
		.ice_pwd = s->pwd,
		.fingerprint = crypto_dtls_cert_fingerprint(w->cert),
		.addresses = w->addr_ptrs,
		.n_addresses = w->n_addresses,
		.port = w->port,
		.session_version = (uint64_t)time_wall_ns() / 1000,
	};
	out->answer = webrtc_answer_build(o, c, &ap);
	if (!out->answer) {
		media_rtp_feed_release(s->feed);
		pthread_mutex_destroy(&s->out_lock);
		free(s);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	util_strlcpy(out->feed, media_rtp_feed_name(s->feed), sizeof(out->feed));
	pthread_mutex_lock(&w->lock);
	s->id = ++w->next_id;
	/* Consent is counted from the answer: a publisher that never checks
	 * is gone after the consent timeout. */
	s->last_consent_ns = s->created_ns;
	s->next = w->sessions;
	w->sessions = s;
	uint32_t ub = ufrag_bucket(s->ufrag, WEBRTC_UFRAG_LEN);
	s->ufrag_next = w->by_ufrag[ub];
	w->by_ufrag[ub] = s;
	w->st.sessions_started++;
	w->st.sessions_active++;
	out->id = s->id;
	pthread_mutex_unlock(&w->lock);
	LOG_INFO(&log_webrtc, "session %llu: ufrag %s, feed %s, video pt %d, audio pt %d", (unsigned long long)s->id,
		 s->ufrag, out->feed, s->video_pt, s->audio_pt);
	return 0;
}

static struct webrtc_session *session_by_id(struct webrtc *w, uint64_t id, const char *tag)
{
	for (struct webrtc_session *s = w->sessions; s; s = s->next)
		if (tag ? strcmp(s->tag, tag) == 0 : s->id == id)
			return s;
	return NULL;
}

void webrtc_session_set_tag(struct webrtc *w, uint64_t id, const char *tag)
{
	pthread_mutex_lock(&w->lock);
	struct webrtc_session *s = session_by_id(w, id, NULL);
	if (s)
		util_strlcpy(s->tag, tag, sizeof(s->tag));
	pthread_mutex_unlock(&w->lock);
}

static bool session_close(struct webrtc *w, uint64_t id, const char *tag, const char *reason)
{
	pthread_mutex_lock(&w->lock);
	struct webrtc_session *s = session_by_id(w, id, tag);
	if (s) {
		session_end(s, reason, &w->st.ended_closed);
		session_free(w, s);
	}
	pthread_mutex_unlock(&w->lock);
	return s != NULL;
}

bool webrtc_session_close(struct webrtc *w, uint64_t id, const char *reason)
{
	return session_close(w, id, NULL, reason);
}

bool webrtc_session_close_tag(struct webrtc *w, const char *tag, const char *reason)
{
	return tag && tag[0] && session_close(w, 0, tag, reason);
}

bool webrtc_session_exists(struct webrtc *w, const char *tag)
{
	pthread_mutex_lock(&w->lock);
	bool found = tag && tag[0] && session_by_id(w, 0, tag) != NULL;
	pthread_mutex_unlock(&w->lock);
	return found;
}

int webrtc_session_remote_ufrag(struct webrtc *w, const char *tag, char *out, size_t outlen)
{
	pthread_mutex_lock(&w->lock);
	struct webrtc_session *s = tag && tag[0] ? session_by_id(w, 0, tag) : NULL;
	if (s)
		util_strlcpy(out, s->remote_ufrag, outlen);
	pthread_mutex_unlock(&w->lock);
	return s ? 0 : -1;
}

/* ---- packets -------------------------------------------------------------------- */

/* The live session that validated this address (and which candidate), or NULL. */
static struct webrtc_session *session_by_addr(struct webrtc *w, const struct sockaddr_storage *from, socklen_t flen,
					      int *which)
{
	for (struct webrtc_addr_link *l = w->by_addr[addr_bucket(from)]; l; l = l->next) {
		if (!l->s->ended && addr_eq(&l->s->cand[l->i], from, flen)) {
			*which = l->i;
			return l->s;
		}
	}
	return NULL;
}

/* Where our RTCP goes: the nominated address, else the latest validated. Lock held. */
static void session_set_out_addr(struct webrtc_session *s, int i)
{
	pthread_mutex_lock(&s->out_lock);
	s->out_addr = s->cand[i];
	pthread_mutex_unlock(&s->out_lock);
}

static void handle_stun(struct webrtc *w, const uint8_t *p, size_t len, const struct sockaddr_storage *from,
			socklen_t flen, int64_t now)
{
	struct webrtc_stun m;
	struct webrtc_session *s = NULL;
	uint8_t out[256];

	if (webrtc_stun_parse(p, len, &m) < 0 || m.type != WEBRTC_STUN_BINDING_REQUEST) {
		/* Binding indications (keepalives) and junk need no answer. */
		return;
	}
	/* USERNAME = <our ufrag>:<their ufrag> */
	const char *colon = m.has_username ? strchr(m.username, ':') : NULL;
	if (colon) {
		size_t n = (size_t)(colon - m.username);
		for (s = n == WEBRTC_UFRAG_LEN ? w->by_ufrag[ufrag_bucket(m.username, n)] : NULL; s; s = s->ufrag_next)
			if (!s->ended && n == WEBRTC_UFRAG_LEN && memcmp(s->ufrag, m.username, n) == 0 &&
			    strcmp(colon + 1, s->remote_ufrag) == 0)
				break;
	}
	if (!s) {
		if (w->st.stun_unknown++ == 0)
			LOG_WARN(&log_webrtc, "ignoring STUN with credentials of no session (counted)");
		return;
	}
	if (!webrtc_stun_integrity_ok(p, len, &m, s->pwd)) {
		w->st.stun_bad_integrity++;
		return;
	}
	w->st.stun_ok++;
	int i;
	for (i = 0; i < s->n_cand; i++)
		if (addr_eq(&s->cand[i], from, flen))
			break;
	if (i == s->n_cand) {
		char a[80];
		/* A new validated address; the oldest gives way when full. */
		if (s->n_cand < WEBRTC_SESSION_CANDIDATES) {
			i = s->n_cand++;
		} else {
			i = s->next_cand;
			s->next_cand = (s->next_cand + 1) % WEBRTC_SESSION_CANDIDATES;
			if (i == s->selected)
				s->selected = -1;
			session_addr_unlink(w, s, i);
		}
		memcpy(&s->cand[i].ss, from, flen);
		s->cand[i].len = flen;
		session_addr_link(w, s, i);
		addr_text(from, a, sizeof(a));
		LOG_INFO(&log_webrtc, "session %llu: ICE check from %s", (unsigned long long)s->id, a);
		if (s->selected < 0)
			session_set_out_addr(s, i);
	}
	if (m.use_candidate && s->selected != i) {
		s->selected = i;
		session_set_out_addr(s, i);
	}
	if (s->selected < 0 || s->selected == i)
		s->last_consent_ns = now;
	size_t n = webrtc_stun_binding_success(&m, (const struct sockaddr *)from, s->pwd, out, sizeof(out));
	if (n)
		webrtc_sendto(w, out, n, &s->cand[i]);
}

/* The DTLS handshake is done: check the certificate, start SRTP. Lock held. */
static void session_dtls_connected(struct webrtc *w, struct webrtc_session *s)
{
	uint8_t fp[32];
	struct crypto_dtls_srtp_keys k;
	srtp_policy_t pin, pout;
	uint8_t kin[30], kout[30];

	if (crypto_dtls_peer_fingerprint(s->dtls, fp) < 0 || !crypto_memeq(fp, s->remote_fp, 32)) {
		session_end(s, "the DTLS certificate does not match the offer's fingerprint", &w->st.ended_fingerprint);
		return;
	}
	if (crypto_dtls_srtp_keys(s->dtls, &k) < 0) {
		session_end(s, crypto_dtls_error(s->dtls), &w->st.ended_dtls_failed);
		return;
	}
	/* We are the DTLS server: the publisher protects with the client keys. */
	memcpy(kin, k.client_key, 16);
	memcpy(kin + 16, k.client_salt, 14);
	memcpy(kout, k.server_key, 16);
	memcpy(kout + 16, k.server_salt, 14);
	memset(&k, 0, sizeof(k));
	memset(&pin, 0, sizeof(pin));
	memset(&pout, 0, sizeof(pout));
	srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pin.rtp);
	srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pin.rtcp);
	pout.rtp = pin.rtp;
	pout.rtcp = pin.rtcp;
	pin.ssrc.type = ssrc_any_inbound;
	pin.key = kin;
	pin.window_size = 1024;
	pin.allow_repeat_tx = 0;
	pout.ssrc.type = ssrc_any_outbound;
	pout.key = kout;
	pout.window_size = 128;
	if (srtp_create(&s->srtp_in, &pin) != srtp_err_status_ok) {
		memset(kin, 0, sizeof(kin));
		memset(kout, 0, sizeof(kout));
		session_end(s, "SRTP setup failed", &w->st.ended_dtls_failed);
		return;
	}
	s->srtp_in_ready = true;
	pthread_mutex_lock(&s->out_lock);
	if (srtp_create(&s->srtp_out, &pout) == srtp_err_status_ok)
		s->out_ready = true;
	pthread_mutex_unlock(&s->out_lock);
	memset(kin, 0, sizeof(kin));
	memset(kout, 0, sizeof(kout));
	LOG_INFO(&log_webrtc, "session %llu: DTLS-SRTP up, certificate matches the offer", (unsigned long long)s->id);
}

static void session_dtls_state(struct webrtc *w, struct webrtc_session *s, enum crypto_dtls_state st)
{
	if (st == CRYPTO_DTLS_CONNECTED && !s->srtp_in_ready)
		session_dtls_connected(w, s);
	else if (st == CRYPTO_DTLS_CLOSED)
		session_end(s, "the publisher closed DTLS", &w->st.ended_dtls_closed);
	else if (st == CRYPTO_DTLS_FAILED)
		session_end(s, crypto_dtls_error(s->dtls), &w->st.ended_dtls_failed);
}

static void handle_dtls(struct webrtc *w, struct webrtc_session *s, const uint8_t *p, size_t len, int which)
{
	if (!s->dtls) {
		char err[160];
		s->dtls = crypto_dtls_new(w->cert, webrtc_dtls_send, s, err, sizeof(err));
		if (!s->dtls) {
			session_end(s, err, &w->st.ended_dtls_failed);
			return;
		}
	}
	s->dtls_addr = s->cand[which];
	session_dtls_state(w, s, crypto_dtls_input(s->dtls, p, len));
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void handle_srtp(struct webrtc *w, struct webrtc_session *s, uint8_t *p, size_t len, int which,
			int64_t now)
{
	int n = (int)len;
	if (!s->srtp_in_ready || len < 12)
		return;
	/* Only a packet that authenticates proves the publisher is there. */
	bool live = which == s->selected;
	/* RFC 5761: RTCP packet types 192-223 in the second byte. */
	if (p[1] >= 192 && p[1] <= 223) {
		if (srtp_unprotect_rtcp(s->srtp_in, p, &n) != srtp_err_status_ok) {
			w->st.srtcp_auth_failures++;
			return;
		}
		if (live)
			s->last_media_ns = now;
		w->st.rtcp_packets++;
		uint32_t ssrc = rd32(p + 4);
		int stream = s->have_vssrc && ssrc == s->vssrc ? 0 : s->have_assrc && ssrc == s->assrc ? 1 : -1;
		if (stream >= 0 && media_rtp_feed_push(s->feed, stream, true, p, (size_t)n, now) < 0)
			w->st.feed_dropped++;
		return;
	}
	if (srtp_unprotect(s->srtp_in, p, &n) != srtp_err_status_ok) {
		if (w->st.srtp_auth_failures++ == 0)
			LOG_WARN(&log_webrtc, "SRTP packet failed authentication (dropped, counted)");
		return;
	}
	if (live)
		s->last_media_ns = now;
	w->st.rtp_packets++;
	int pt = p[1] & 0x7f;
	if (pt == s->video_rtx_pt && pt >= 0) {
		/* A retransmission the NACKs asked for: back into the packet it
		 * repairs, which the jitter buffer puts in its place. */
		size_t m = (size_t)n;
		if (!s->have_vssrc || media_rtp_rtx_unwrap(p, &m, (uint8_t)s->video_pt, s->vssrc) < 0) {
			w->st.rtx_padding++;
			return;
		}
		w->st.rtx_packets++;
		n = (int)m;
		pt = s->video_pt;
	}
	int stream = pt == s->video_pt ? 0 : pt == s->audio_pt ? 1 : -1;
	uint32_t ssrc = rd32(p + 8);
	if (stream < 0) {
		w->st.rtp_unknown_pt++;
		return;
	}
	if (stream == 0) {
		s->vssrc = ssrc;
		s->have_vssrc = true;
	} else {
		s->assrc = ssrc;
		s->have_assrc = true;
	}
	if (!s->media_seen) {
		s->media_seen = true;
		LOG_INFO(&log_webrtc, "session %llu: media flows", (unsigned long long)s->id);
	}
	if (media_rtp_feed_push(s->feed, stream, false, p, (size_t)n, now) < 0) {
		w->st.feed_dropped++;
		return;
	}
	if (stream == 0) {
		/* A gap: the source asks for the missing packets (NACK, or PLI)
		 * now rather than at its next pass (repairs come from behind:
		 * no gap). */
		uint16_t seq = (uint16_t)(p[2] << 8 | p[3]);
		int16_t ahead = (int16_t)(uint16_t)(seq - s->vseq);
		if (!s->have_vseq || ahead > 0) {
			if (s->have_vseq && ahead > 1)
				media_rtp_feed_nudge(s->feed);
			s->vseq = seq;
			s->have_vseq = true;
		}
	}
}

static void handle_datagram(struct webrtc *w, uint8_t *p, size_t len, const struct sockaddr_storage *from,
			    socklen_t flen, int64_t now)
{
	if (len == 0)
		return;
	if (p[0] < 4) {
		if (webrtc_stun_is(p, len))
			handle_stun(w, p, len, from, flen, now);
		return;
	}
	int which = -1;
	struct webrtc_session *s = session_by_addr(w, from, flen, &which);
	if (!s) {
		w->st.unvalidated_dropped++;
		return;
	}
	if (p[0] >= 20 && p[0] <= 63)
		handle_dtls(w, s, p, len, which);
	else if (p[0] >= 128 && p[0] <= 191)
		handle_srtp(w, s, p, len, which, now);
}

/* Timers of every session: DTLS retransmissions, consent, handshake
 * deadline, sessions whose recording let go. Lock held. Returns the next
 * deadline. */
static int64_t webrtc_tick(struct webrtc *w, int64_t now)
{
	int64_t next = now + WEBRTC_TICK_NS;
	for (struct webrtc_session *s = w->sessions, *nx; s; s = nx) {
		nx = s->next;
		if (!s->ended && s->dtls) {
			session_dtls_state(w, s, crypto_dtls_tick(s->dtls, now));
			int64_t t = crypto_dtls_next_timer(s->dtls);
			if (t < next)
				next = t;
		}
		/* Consent: a check (RFC 7675) or authenticated media from the
		 * selected address within the timeout. Publishers on libnice
		 * (GStreamer's webrtcbin) send no checks once connected, only a
		 * binding indication every 25 s. */
		int64_t heard = s->last_media_ns > s->last_consent_ns ? s->last_media_ns : s->last_consent_ns;
		if (!s->ended && now - heard > w->consent_ns)
			session_end(s, "ICE consent lost (nothing from the publisher)", &w->st.ended_consent);
		if (!s->ended && !s->srtp_in_ready && now - s->created_ns > w->consent_ns)
			session_end(s, "no DTLS handshake", &w->st.ended_handshake_timeout);
		if (media_rtp_feed_detached(s->feed)) {
			/* The recording stopped: tell the publisher and go. */
			session_end(s, "the recording ended", &w->st.ended_closed);
			session_free(w, s);
		}
	}
	return next;
}

static void *webrtc_main(void *arg)
{
	struct webrtc *w = arg;
	int64_t next_tick = time_mono_ns();
	bool input = false;

	while (!atomic_load(&w->stop)) {
		int64_t now = time_mono_ns();
		struct pollfd pfd[2] = { { .fd = w->fd, .events = POLLIN }, { .fd = w->efd, .events = POLLIN } };
		int timeout = next_tick > now ? (int)((next_tick - now + TIME_NS_PER_MS - 1) / TIME_NS_PER_MS) : 0;
		/* After a pass that read something, datagrams are waiting
		 * already (or the socket is empty and the pass is cheap). */
		if (!input)
			poll(pfd, 2, timeout);
		now = time_mono_ns();
		int64_t real_now = time_wall_ns();
		pthread_mutex_lock(&w->lock);
		int total = 0;
		for (int round = 0; round < WEBRTC_ROUNDS; round++) {
			for (int i = 0; i < WEBRTC_BATCH; i++) {
				w->iov[i] = (struct iovec){ .iov_base = w->pkt[i], .iov_len = sizeof(w->pkt[i]) };
				w->msg[i].msg_hdr = (struct msghdr){ .msg_name = &w->from[i],
								     .msg_namelen = sizeof(w->from[i]),
								     .msg_iov = &w->iov[i], .msg_iovlen = 1,
								     .msg_control = w->ctl[i].buf,
								     .msg_controllen = sizeof(w->ctl[i].buf) };
			}
			int got = recvmmsg(w->fd, w->msg, WEBRTC_BATCH, MSG_DONTWAIT, NULL);
			if (got <= 0)
				break;
			total += got;
			for (int i = 0; i < got; i++) {
				struct msghdr *h = &w->msg[i].msg_hdr;
				handle_datagram(w, w->pkt[i], w->msg[i].msg_len, &w->from[i], h->msg_namelen,
						media_rtp_arrival_ns(h, now, real_now));
			}
			if (got < WEBRTC_BATCH)
				break;
		}
		input = total > 0;
		if (now >= next_tick)
			next_tick = webrtc_tick(w, now);
		pthread_mutex_unlock(&w->lock);
		if (pfd[1].revents & POLLIN) {
			uint64_t v;
			if (read(w->efd, &v, sizeof(v)) < 0) {
				/* nothing to clear */
			}
		}
		/* Let datagrams gather: the next pass takes them in a few calls.
		 * A pass that filled every round goes on at once. */
		if (input && total < WEBRTC_ROUNDS * WEBRTC_BATCH && !atomic_load(&w->stop)) {
			int64_t until = now + WEBRTC_COALESCE_NS, t = time_mono_ns();
			if (until > next_tick)
				until = next_tick > t ? next_tick : t;
			if (until > t)
				time_sleep_ns(until - t);
		}
	}
	return NULL;
}

/* ---- the server ------------------------------------------------------------------ */

struct webrtc *webrtc_new(const struct config *cfg, char *err, size_t errlen)
{
	struct webrtc *w = calloc(1, sizeof(*w));
	const char *bind_addr = config_get_str(cfg, "webrtc.bind");
	struct sockaddr_storage ss;
	socklen_t slen;

	if (!w) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->fd = w->efd = -1;
	pthread_mutex_init(&w->lock, NULL);
	w->port = (int)config_get_int(cfg, "webrtc.udp_port");
	w->consent_ns = config_get_int(cfg, "webrtc.consent_timeout") * TIME_NS_PER_MS;
	if (w->consent_ns <= 0)
		w->consent_ns = 30 * TIME_NS_PER_SEC;
	pthread_once(&srtp_once, srtp_lib_init);
	if (!srtp_ok) {
		snprintf(err, errlen, "libsrtp2 failed to initialise");
		goto fail;
	}
	if (w->port < 1 || w->port > 65535) {
		snprintf(err, errlen, "webrtc.udp_port %d is not a port", w->port);
		goto fail;
	}
	if (webrtc_pick_addresses(w, config_get_str(cfg, "webrtc.host_addresses"), err, errlen) < 0)
		goto fail;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, bind_addr, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)w->port);
		slen = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, bind_addr, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)w->port);
		slen = sizeof(struct sockaddr_in6);
	} else {
		snprintf(err, errlen, "webrtc.bind '%s' is not an IP address", bind_addr);
		goto fail;
	}
	w->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (w->fd < 0 || bind(w->fd, (struct sockaddr *)&ss, slen) < 0) {
		snprintf(err, errlen, "cannot listen on UDP %s:%d: %s", bind_addr, w->port, strerror(errno));
		goto fail;
	}
	/* Every session's media queues in this one buffer while the thread is
	 * off the CPU: WEBRTC_RCVBUF is about 1 s of 100 publishers at
	 * 1.5 Mbit/s. Beyond net.core.rmem_max only with CAP_NET_ADMIN. */
	if (setsockopt(w->fd, SOL_SOCKET, SO_RCVBUFFORCE, &(int){ WEBRTC_RCVBUF }, sizeof(int)) < 0)
		setsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &(int){ WEBRTC_RCVBUF }, sizeof(int));
	/* Each datagram's arrival time (media_rtp_arrival_ns). */
	setsockopt(w->fd, SOL_SOCKET, SO_TIMESTAMPNS, &(int){ 1 }, sizeof(int));
	int rcvbuf = 0;
	getsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &(socklen_t){ sizeof(rcvbuf) });
	if (rcvbuf < WEBRTC_RCVBUF)
		LOG_WARN(&log_webrtc, "UDP receive buffer %d KiB, less than the %d KiB asked (raise net.core.rmem_max)",
			 rcvbuf / 1024, WEBRTC_RCVBUF / 1024);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	w->cert = crypto_dtls_cert_new("edgerec", err, errlen);
	if (!w->cert)
		goto fail;
	int trc = thread_start(&w->thread, "webrtc-udp", 0, webrtc_main, w);
	if (trc != 0) {
		snprintf(err, errlen, "cannot start the WHIP thread: %s", strerror(trc > 0 ? trc : -trc));
		goto fail;
	}
	w->thread_started = true;
	LOG_INFO(&log_webrtc, "WHIP transport on UDP %s:%d, candidates %s%s, certificate sha-256 %s", bind_addr, w->port,
		 w->addresses[0], w->n_addresses > 1 ? " and more" : "", crypto_dtls_cert_fingerprint(w->cert));
	return w;
fail:
	webrtc_free(w);
	return NULL;
}

void webrtc_free(struct webrtc *w)
{
	if (!w)
		return;
	if (w->thread_started) {
		atomic_store(&w->stop, true);
		uint64_t one = 1;
		if (write(w->efd, &one, sizeof(one)) < 0) {
			/* the thread wakes on its tick anyway */
		}
		pthread_join(w->thread, NULL);
	}
	pthread_mutex_lock(&w->lock);
	while (w->sessions)
		session_free(w, w->sessions);
	pthread_mutex_unlock(&w->lock);
	crypto_dtls_cert_free(w->cert);
	if (w->fd >= 0)
		close(w->fd);
	if (w->efd >= 0)
		close(w->efd);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

void webrtc_stats(struct webrtc *w, struct webrtc_stats *st)
{
	pthread_mutex_lock(&w->lock);
	*st = w->st;
	pthread_mutex_unlock(&w->lock);
	st->rtcp_sent = atomic_load(&w->rtcp_sent);
}

char *webrtc_metrics(void *opaque)
{
	struct webrtc *w = opaque;
	struct webrtc_stats st;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	if (!w)
		return NULL;
	webrtc_stats(w, &st);
	f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	fprintf(f, "# HELP edgerec_whip_sessions_started_total WHIP sessions answered.\n"
		   "# TYPE edgerec_whip_sessions_started_total counter\n"
		   "edgerec_whip_sessions_started_total %llu\n"
		   "# HELP edgerec_whip_sessions_active WHIP sessions open now.\n"
		   "# TYPE edgerec_whip_sessions_active gauge\n"
		   "edgerec_whip_sessions_active %llu\n",
		(unsigned long long)st.sessions_started, (unsigned long long)st.sessions_active);
	fprintf(f, "# HELP edgerec_whip_sessions_ended_total WHIP sessions ended, by why.\n"
		   "# TYPE edgerec_whip_sessions_ended_total counter\n");
	const struct { const char *why; uint64_t n; } ended[] = {
		{ "consent_lost", st.ended_consent }, { "dtls_closed", st.ended_dtls_closed },
		{ "dtls_failed", st.ended_dtls_failed }, { "fingerprint_mismatch", st.ended_fingerprint },
		{ "no_handshake", st.ended_handshake_timeout }, { "closed", st.ended_closed },
	};
	for (size_t i = 0; i < sizeof(ended) / sizeof(ended[0]); i++)
		fprintf(f, "edgerec_whip_sessions_ended_total{reason=\"%s\"} %llu\n", ended[i].why,
			(unsigned long long)ended[i].n);
	fprintf(f, "# HELP edgerec_whip_dropped_total Datagrams the WHIP port dropped, by why.\n"
		   "# TYPE edgerec_whip_dropped_total counter\n");
	const struct { const char *why; uint64_t n; } dropped[] = {
		{ "stun_unknown_credentials", st.stun_unknown }, { "stun_bad_integrity", st.stun_bad_integrity },
		{ "unvalidated_address", st.unvalidated_dropped }, { "srtp_auth", st.srtp_auth_failures },
		{ "srtcp_auth", st.srtcp_auth_failures }, { "unknown_payload_type", st.rtp_unknown_pt },
		{ "feed_full", st.feed_dropped },
	};
	for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
		fprintf(f, "edgerec_whip_dropped_total{reason=\"%s\"} %llu\n", dropped[i].why,
			(unsigned long long)dropped[i].n);
	fprintf(f, "# HELP edgerec_whip_packets_total Packets through WHIP sessions.\n"
		   "# TYPE edgerec_whip_packets_total counter\n"
		   "edgerec_whip_packets_total{kind=\"rtp_in\"} %llu\n"
		   "edgerec_whip_packets_total{kind=\"rtcp_in\"} %llu\n"
		   "edgerec_whip_packets_total{kind=\"rtcp_out\"} %llu\n"
		   "edgerec_whip_packets_total{kind=\"stun_ok\"} %llu\n",
		(unsigned long long)st.rtp_packets, (unsigned long long)st.rtcp_packets,
		(unsigned long long)st.rtcp_sent, (unsigned long long)st.stun_ok);
	fprintf(f, "# HELP edgerec_whip_rtx_total RTX (RFC 4588) packets: repairs put back, padding-only probes dropped.\n"
		   "# TYPE edgerec_whip_rtx_total counter\n"
		   "edgerec_whip_rtx_total{kind=\"repair\"} %llu\n"
		   "edgerec_whip_rtx_total{kind=\"padding\"} %llu\n",
		(unsigned long long)st.rtx_packets, (unsigned long long)st.rtx_padding);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}
