/* storage_s3: S3 requests over libcurl, signed with SigV4, with bounded
 * retries, resumable multipart uploads and presigned URLs. */
#include "storage_s3.h"

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"
#include "config.h"
#include "crypto.h"
#include "storage_sigv4.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

static struct log_handle log_s3 = LOG_HANDLE("storage/s3");
static pthread_once_t s3_init_once = PTHREAD_ONCE_INIT;

struct storage_s3 {
	char *scheme;      /* "http" / "https" */
	char *hostport;    /* endpoint host[:port] */
	char *base_path;   /* endpoint path prefix without trailing '/', often "" */
	char *region, *bucket, *prefix, *access_key, *secret_key, *session_token;
	bool path_style;
	int64_t part_size;
	int max_attempts;
	int64_t backoff_base_ms, backoff_max_ms, timeout_ms;
	pthread_mutex_t lock;
	struct storage_s3_stats stats;
	/* Credentials replaced by storage_s3_set_credentials: kept until
	 * storage_s3_free, so a request signing with them meanwhile reads
	 * valid memory (the pointers above are read under 'lock'). */
	char **retired;
	size_t nretired;
};

/* The credentials to sign with now (valid until storage_s3_free). */
struct s3_creds {
	const char *access_key, *secret_key, *session_token;
};

static const char *s3_first(const char *a, const char *b);

static struct s3_creds s3_creds_now(struct storage_s3 *s3)
{
	pthread_mutex_lock(&s3->lock);
	struct s3_creds c = { s3->access_key, s3->secret_key, s3->session_token };
	pthread_mutex_unlock(&s3->lock);
	return c;
}

static void s3_global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *s3_strdup0(const char *s)
{
	return strdup(s ? s : "");
}

struct storage_s3 *storage_s3_new(const struct storage_s3_options *o, char *err, size_t errlen)
{
	pthread_once(&s3_init_once, s3_global_init);
	if (!o->bucket || !*o->bucket) {
		snprintf(err, errlen, "S3: no bucket configured (s3_bucket)");
		return NULL;
	}
	if (!o->access_key || !*o->access_key || !o->secret_key || !*o->secret_key) {
		snprintf(err, errlen, "S3: no credentials (s3.access_key/s3.secret_key or "
			 "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)");
		return NULL;
	}
	if (o->part_size && (o->part_size < STORAGE_S3_MIN_PART || o->part_size > (1LL << 30))) {
		snprintf(err, errlen, "S3: part size %" PRId64 " outside 5 MiB..1 GiB", o->part_size);
		return NULL;
	}
	struct storage_s3 *s3 = calloc(1, sizeof(*s3));
	if (!s3) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&s3->lock, NULL);
	const char *region = o->region && *o->region ? o->region : "us-east-1";
	char def_ep[256];
	const char *ep = o->endpoint;
	if (!ep || !*ep) {
		snprintf(def_ep, sizeof(def_ep), "https://s3.%s.amazonaws.com", region);
		ep = def_ep;
	}
	const char *sep = strstr(ep, "://");
	if (!sep || (strncmp(ep, "http", 4) != 0)) {
		snprintf(err, errlen, "S3: endpoint '%s' is not an http:// or https:// URL", ep);
		goto fail;
	}
	s3->scheme = strndup(ep, (size_t)(sep - ep));
	const char *hp = sep + 3, *slash = strchr(hp, '/');
	s3->hostport = slash ? strndup(hp, (size_t)(slash - hp)) : strdup(hp);
	s3->base_path = s3_strdup0(slash);
	if (s3->base_path) {
		size_t l = strlen(s3->base_path);
		while (l > 0 && s3->base_path[l - 1] == '/')
			s3->base_path[--l] = '\0';
	}
	if (!s3->scheme || !s3->hostport || !*s3->hostport ||
	    (strcmp(s3->scheme, "http") != 0 && strcmp(s3->scheme, "https") != 0)) {
		snprintf(err, errlen, "S3: endpoint '%s' is not an http:// or https:// URL", ep);
		goto fail;
	}
	s3->region = strdup(region);
	s3->bucket = strdup(o->bucket);
	s3->prefix = s3_strdup0(o->prefix);
	s3->access_key = strdup(o->access_key);
	s3->secret_key = strdup(o->secret_key);
	s3->session_token = o->session_token && *o->session_token ? strdup(o->session_token) : NULL;
	if (!s3->region || !s3->bucket || !s3->prefix || !s3->access_key || !s3->secret_key) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s3->path_style = o->path_style;
	s3->part_size = o->part_size ? o->part_size : 8LL * 1024 * 1024;
	s3->max_attempts = o->max_attempts > 0 ? o->max_attempts : 8;
	s3->backoff_base_ms = o->backoff_base_ms > 0 ? o->backoff_base_ms : 500;
	s3->backoff_max_ms = o->backoff_max_ms > 0 ? o->backoff_max_ms : 30000;
	s3->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 60000;
	return s3;
fail:
	storage_s3_free(s3);
	return NULL;
}

void storage_s3_free(struct storage_s3 *s3)
{
	if (!s3)
		return;
	free(s3->scheme);
	free(s3->hostport);
	free(s3->base_path);
	free(s3->region);
	free(s3->bucket);
	free(s3->prefix);
	free(s3->access_key);
	if (s3->secret_key)
		memset(s3->secret_key, 0, strlen(s3->secret_key));
	free(s3->secret_key);
	free(s3->session_token);
	for (size_t i = 0; i < s3->nretired; i++) {
		if (s3->retired[i])
			memset(s3->retired[i], 0, strlen(s3->retired[i]));
		free(s3->retired[i]);
	}
	free(s3->retired);
	pthread_mutex_destroy(&s3->lock);
	free(s3);
}

int storage_s3_set_credentials(struct storage_s3 *s3, const char *access_key, const char *secret_key,
			       const char *session_token)
{
	if (!access_key || !*access_key || !secret_key || !*secret_key)
		return -1;
	char *a = strdup(access_key), *k = strdup(secret_key);
	char *t = session_token && *session_token ? strdup(session_token) : NULL;
	char **r = realloc(s3->retired, (s3->nretired + 3) * sizeof(*r));
	if (!a || !k || (session_token && *session_token && !t) || !r) {
		free(a);
		free(k);
		free(t);
		if (r)
			s3->retired = r;
		return -1;
	}
	pthread_mutex_lock(&s3->lock);
	bool same = strcmp(s3->access_key, a) == 0 && strcmp(s3->secret_key, k) == 0 &&
		    ((!t && !s3->session_token) || (t && s3->session_token && strcmp(t, s3->session_token) == 0));
	s3->retired = r;
	if (!same) {
		r[s3->nretired++] = s3->access_key;
		r[s3->nretired++] = s3->secret_key;
		r[s3->nretired++] = s3->session_token;
		s3->access_key = a;
		s3->secret_key = k;
		s3->session_token = t;
	}
	pthread_mutex_unlock(&s3->lock);
	if (same) {
		free(a);
		free(k);
		free(t);
		return 0;
	}
	LOG_INFO(&log_s3, "credentials replaced (access key %s)", access_key);
	return 1;
}

int storage_s3_reload_credentials(struct storage_s3 *s3, const struct config *cfg)
{
	return storage_s3_set_credentials(
		s3, s3_first(config_get_str(cfg, "s3.access_key"), getenv("AWS_ACCESS_KEY_ID")),
		s3_first(config_get_str(cfg, "s3.secret_key"), getenv("AWS_SECRET_ACCESS_KEY")),
		getenv("AWS_SESSION_TOKEN"));
}

static const char *s3_first(const char *a, const char *b)
{
	return a && *a ? a : b;
}

struct storage_s3 *storage_s3_new_from_config(const struct config *cfg, char *err, size_t errlen)
{
	struct storage_s3_options o = {
		.endpoint = config_get_str(cfg, "s3.endpoint"),
		.region = s3_first(config_get_str(cfg, "s3.region"),
				   s3_first(getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION"))),
		.bucket = config_get_str(cfg, "s3_bucket"),
		.prefix = config_get_str(cfg, "s3_prefix"),
		.path_style = config_get_bool(cfg, "s3.path_style"),
		.access_key = s3_first(config_get_str(cfg, "s3.access_key"), getenv("AWS_ACCESS_KEY_ID")),
		.secret_key = s3_first(config_get_str(cfg, "s3.secret_key"), getenv("AWS_SECRET_ACCESS_KEY")),
		.session_token = getenv("AWS_SESSION_TOKEN"),
		.part_size = config_get_int(cfg, "s3.part_size"),
		.max_attempts = (int)config_get_int(cfg, "s3.retries"),
		.backoff_base_ms = config_get_int(cfg, "s3.backoff"),
		.timeout_ms = config_get_int(cfg, "s3.timeout"),
	};
	return storage_s3_new(&o, err, errlen);
}

void storage_s3_get_stats(struct storage_s3 *s3, struct storage_s3_stats *st)
{
	pthread_mutex_lock(&s3->lock);
	*st = s3->stats;
	pthread_mutex_unlock(&s3->lock);
}

int64_t storage_s3_part_size(const struct storage_s3 *s3)
{
	return s3->part_size;
}

int64_t storage_s3_part_size_for(const struct storage_s3 *s3, int64_t size)
{
	int64_t ps = s3->part_size, mib = 1024 * 1024;
	if (size > ps * 10000) {
		ps = (size + 9999) / 10000;
		ps = (ps + mib - 1) / mib * mib;
	}
	return ps;
}

#define S3_STAT_ADD(s3, field, n) \
	do { pthread_mutex_lock(&(s3)->lock); (s3)->stats.field += (n); pthread_mutex_unlock(&(s3)->lock); } while (0)

int storage_s3_key(const struct storage_s3 *s3, const char *name, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s%s", s3->prefix, name);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* ---- XML answers: S3 replies are flat enough to pick by tag name. ---- */

/* Finds the text of the first <tag> at or after 'from', decodes the five
 * XML entities into 'out' and returns a pointer past the closing tag, or
 * NULL when absent. */
static const char *s3_xml_text(const char *from, const char *tag, char *out, size_t outlen)
{
	char open[64], close[64];
	if (!from)
		return NULL;
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	const char *a = strstr(from, open);
	if (!a)
		return NULL;
	a += strlen(open);
	const char *b = strstr(a, close);
	if (!b)
		return NULL;
	size_t o = 0;
	static const struct { const char *ent; char c; } ents[] = {
		{ "&quot;", '"' }, { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&apos;", '\'' },
		{ "&#34;", '"' },
	};
	for (const char *p = a; p < b && o + 1 < outlen;) {
		bool done = false;
		if (*p == '&') {
			for (size_t i = 0; i < ARRAY_SIZE(ents); i++) {
				size_t l = strlen(ents[i].ent);
				if ((size_t)(b - p) >= l && strncmp(p, ents[i].ent, l) == 0) {
					out[o++] = ents[i].c;
					p += l;
					done = true;
					break;
				}
			}
		}
		if (!done)
			out[o++] = *p++;
	}
	if (outlen)
		out[o] = '\0';
	return b + strlen(close);
}

/* Copies an ETag without its quotes. */
static void s3_unquote(const char *in, char *out, size_t outlen)
{
	while (*in == '"' || *in == ' ')
		in++;
	util_strlcpy(out, in, outlen);
	size_t l = strlen(out);
	while (l > 0 && (out[l - 1] == '"' || out[l - 1] == ' ' || out[l - 1] == '\r' || out[l - 1] == '\n'))
		out[--l] = '\0';
}

/* ---- One HTTP exchange ---- */

struct s3_req {
	const char *method;
	const char *key;              /* object key (unencoded), NULL for the bucket */
	const char *query;            /* encoded query string, may be NULL */
	const uint8_t *body;          /* PUT/POST body */
	size_t body_len;
	const char *content_type;
	const char *content_md5;      /* base64 */
	FILE *sink;                   /* GET body goes here when set */
	const volatile int *cancel;
	void (*on_sent)(void *opaque, int64_t sent);
	void *opaque;
};

struct s3_resp {
	long status;
	char *body;
	size_t body_len;
	char etag[128];
	int64_t content_length;
	char code[64];
	char message[256];
	bool cancelled;
};

static void s3_resp_reset(struct s3_resp *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
	r->content_length = -1;
}

struct s3_io {
	const struct s3_req *req;
	struct s3_resp *resp;
	size_t read_pos;
	bool sink_failed;
};

static size_t s3_read_cb(char *buf, size_t size, size_t n, void *opaque)
{
	struct s3_io *io = opaque;
	size_t want = size * n, left = io->req->body_len - io->read_pos;
	if (want > left)
		want = left;
	memcpy(buf, io->req->body + io->read_pos, want);
	io->read_pos += want;
	return want;
}

static size_t s3_write_cb(char *data, size_t size, size_t n, void *opaque)
{
	struct s3_io *io = opaque;
	size_t len = size * n;
	if (io->req->sink && io->resp->status / 100 == 2) {
		if (fwrite(data, 1, len, io->req->sink) != len) {
			io->sink_failed = true;
			return 0;
		}
		return len;
	}
	/* Error documents and XML answers are small; cap what is kept. */
	if (io->resp->body_len + len > 4u << 20)
		return len;
	char *b = realloc(io->resp->body, io->resp->body_len + len + 1);
	if (!b)
		return 0;
	memcpy(b + io->resp->body_len, data, len);
	io->resp->body = b;
	io->resp->body_len += len;
	b[io->resp->body_len] = '\0';
	return len;
}

static size_t s3_header_cb(char *data, size_t size, size_t n, void *opaque)
{
	struct s3_io *io = opaque;
	size_t len = size * n;
	if (len > 8 && strncmp(data, "HTTP/", 5) == 0) {
		/* A new status line (after 100 Continue too). */
		long st = 0;
		const char *sp = memchr(data, ' ', len);
		if (sp)
			st = strtol(sp + 1, NULL, 10);
		io->resp->status = st;
	} else if (len > 5 && strncasecmp(data, "ETag:", 5) == 0) {
		char tmp[160];
		size_t l = len - 5 < sizeof(tmp) - 1 ? len - 5 : sizeof(tmp) - 1;
		memcpy(tmp, data + 5, l);
		tmp[l] = '\0';
		s3_unquote(tmp, io->resp->etag, sizeof(io->resp->etag));
	} else if (len > 15 && strncasecmp(data, "Content-Length:", 15) == 0) {
		io->resp->content_length = strtoll(data + 15, NULL, 10);
	}
	return len;
}

static int s3_xferinfo_cb(void *opaque, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
			  curl_off_t ulnow)
{
	struct s3_io *io = opaque;
	if (io->req->cancel && *io->req->cancel) {
		io->resp->cancelled = true;
		return 1;
	}
	if (io->req->on_sent && ulnow > 0)
		io->req->on_sent(io->req->opaque, (int64_t)ulnow);
	return 0;
}

/* Builds the request URL and Host header for 'key' (NULL = bucket). */
static int s3_target(const struct storage_s3 *s3, const char *key, const char *query, char **url,
		     char **host, char **path)
{
	char *ekey = storage_sigv4_uri_encode(key ? key : "", key ? strlen(key) : 0, true);
	char *ebucket = storage_sigv4_uri_encode(s3->bucket, strlen(s3->bucket), false);
	int rc = -1;
	*url = *host = *path = NULL;
	if (!ekey || !ebucket)
		goto done;
	if (s3->path_style) {
		if (asprintf(path, "%s/%s/%s", s3->base_path, ebucket, ekey) < 0)
			goto oom;
		*host = strdup(s3->hostport);
	} else {
		if (asprintf(path, "%s/%s", s3->base_path, ekey) < 0)
			goto oom;
		if (asprintf(host, "%s.%s", s3->bucket, s3->hostport) < 0)
			*host = NULL;
	}
	if (!*host)
		goto done;
	if (asprintf(url, "%s://%s%s%s%s", s3->scheme, *host, *path, query && *query ? "?" : "",
		     query ? query : "") < 0) {
		*url = NULL;
		goto done;
	}
	rc = 0;
	goto done;
oom:
	*path = NULL;
done:
	if (rc < 0) {
		free(*url);
		free(*host);
		free(*path);
		*url = *host = *path = NULL;
	}
	free(ekey);
	free(ebucket);
	return rc;
}

/* One attempt. Returns 0 when an HTTP answer arrived (any status), -1 on a
 * transport failure ('err' says why), -2 when cancelled. */
static int s3_once(struct storage_s3 *s3, const struct s3_req *req, struct s3_resp *resp,
		   char *err, size_t errlen)
{
	char *url = NULL, *host = NULL, *path = NULL;
	char amz_date[17], payload[65], auth[1024], line[1200];
	char curl_err[CURL_ERROR_SIZE] = "";
	struct curl_slist *hl = NULL;
	CURL *c = NULL;
	int rc = -1;
	struct s3_io io = { .req = req, .resp = resp };

	s3_resp_reset(resp);
	if (s3_target(s3, req->key, req->query, &url, &host, &path) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	storage_sigv4_amz_date(time_wall_ns() / TIME_NS_PER_SEC, amz_date);
	if (req->body_len) {
		uint8_t d[CRYPTO_SHA256_LEN];
		crypto_sha256(req->body, req->body_len, d);
		crypto_hex(d, sizeof(d), payload);
	} else {
		util_strlcpy(payload, STORAGE_SIGV4_EMPTY_SHA256, sizeof(payload));
	}
	struct storage_sigv4_header h[8];
	size_t nh = 0;
	h[nh++] = (struct storage_sigv4_header){ "host", host };
	h[nh++] = (struct storage_sigv4_header){ "x-amz-date", amz_date };
	h[nh++] = (struct storage_sigv4_header){ "x-amz-content-sha256", payload };
	if (req->content_md5)
		h[nh++] = (struct storage_sigv4_header){ "content-md5", req->content_md5 };
	if (req->content_type)
		h[nh++] = (struct storage_sigv4_header){ "content-type", req->content_type };
	struct s3_creds cred = s3_creds_now(s3);
	if (cred.session_token)
		h[nh++] = (struct storage_sigv4_header){ "x-amz-security-token", cred.session_token };
	struct storage_sigv4_request sr = {
		.method = req->method, .path = path, .query = req->query,
		.headers = h, .nheaders = nh, .payload_sha256 = payload,
	};
	struct storage_sigv4_key key = {
		.access_key = cred.access_key, .secret_key = cred.secret_key,
		.session_token = cred.session_token, .region = s3->region, .service = "s3",
		.s3_path_rules = true,
	};
	if (storage_sigv4_authorization(&sr, &key, amz_date, auth, sizeof(auth), NULL) < 0) {
		snprintf(err, errlen, "S3: cannot sign the request for %s", req->key ? req->key : "/");
		goto done;
	}
	for (size_t i = 0; i < nh; i++) {
		const char *name = strcmp(h[i].name, "host") == 0 ? "Host" : h[i].name;
		snprintf(line, sizeof(line), "%s: %s", name, h[i].value);
		struct curl_slist *t = curl_slist_append(hl, line);
		if (!t)
			goto oom;
		hl = t;
	}
	snprintf(line, sizeof(line), "Authorization: %s", auth);
	struct curl_slist *t = curl_slist_append(hl, line);
	if (!t || !(hl = t, t = curl_slist_append(hl, "Expect:")))
		goto oom;
	hl = t;

	c = curl_easy_init();
	if (!c)
		goto oom;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(s3->timeout_ms < 10000 ? s3->timeout_ms : 10000));
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)((s3->timeout_ms + 999) / 1000));
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s3_header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &io);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s3_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &io);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, s3_xferinfo_cb);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, &io);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	if (strcmp(req->method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (strcmp(req->method, "PUT") == 0) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, s3_read_cb);
		curl_easy_setopt(c, CURLOPT_READDATA, &io);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_len);
	} else if (strcmp(req->method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	} else if (strcmp(req->method, "GET") != 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
	}
	S3_STAT_ADD(s3, requests, 1);
	CURLcode cr = curl_easy_perform(c);
	if (cr == CURLE_ABORTED_BY_CALLBACK && resp->cancelled) {
		snprintf(err, errlen, "S3 %s %s cancelled", req->method, req->key ? req->key : "/");
		rc = -2;
		goto done;
	}
	if (io.sink_failed) {
		snprintf(err, errlen, "cannot write the downloaded object: %s", strerror(errno));
		rc = -3;
		goto done;
	}
	if (cr != CURLE_OK) {
		snprintf(err, errlen, "cannot reach S3 at %s://%s: %s", s3->scheme, host,
			 curl_err[0] ? curl_err : curl_easy_strerror(cr));
		goto done;
	}
	long st = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
	resp->status = st;
	if (resp->body) {
		s3_xml_text(resp->body, "Code", resp->code, sizeof(resp->code));
		s3_xml_text(resp->body, "Message", resp->message, sizeof(resp->message));
	}
	if (st / 100 == 2 && req->body_len)
		S3_STAT_ADD(s3, bytes_sent, req->body_len);
	rc = 0;
	goto done;
oom:
	snprintf(err, errlen, "out of memory");
done:
	if (c)
		curl_easy_cleanup(c);
	curl_slist_free_all(hl);
	free(url);
	free(host);
	free(path);
	return rc;
}

static bool s3_retryable(const struct s3_resp *r)
{
	if (r->status >= 500 || r->status == 429 || r->status == 408)
		return true;
	return strcmp(r->code, "RequestTimeout") == 0 || strcmp(r->code, "SlowDown") == 0 ||
	       strcmp(r->code, "InternalError") == 0;
}

/* Sleeps 'ms', waking early (false) when the cancel flag rises. */
static bool s3_sleep(const volatile int *cancel, int64_t ms)
{
	int64_t end = time_mono_ns() + ms * TIME_NS_PER_MS;
	for (;;) {
		if (cancel && *cancel)
			return false;
		int64_t left = end - time_mono_ns();
		if (left <= 0)
			return true;
		time_sleep_ns(left < 50 * TIME_NS_PER_MS ? left : 50 * TIME_NS_PER_MS);
	}
}

/* Runs 'req' with retries. Returns 0 with the final answer in 'resp' (its
 * status may be any non-retryable one: the caller judges it), or
 * STORAGE_ERR_NETWORK / STORAGE_ERR_CANCELLED / STORAGE_ERR_IO with 'err'. */
static int s3_request(struct storage_s3 *s3, const struct s3_req *req, struct s3_resp *resp,
		      char *err, size_t errlen)
{
	for (int attempt = 1;; attempt++) {
		if (req->sink) {
			fflush(req->sink);
			if (ftruncate(fileno(req->sink), 0) < 0 || fseek(req->sink, 0, SEEK_SET) < 0) {
				snprintf(err, errlen, "cannot rewind the download file: %s", strerror(errno));
				return STORAGE_ERR_IO;
			}
		}
		int r = s3_once(s3, req, resp, err, errlen);
		if (r == -2)
			return STORAGE_ERR_CANCELLED;
		if (r == -3)
			return STORAGE_ERR_IO;
		if (r == 0 && !s3_retryable(resp))
			return 0;
		if (r == 0)
			snprintf(err, errlen, "S3 %s %s: HTTP %ld %s%s%s", req->method,
				 req->key ? req->key : "/", resp->status, resp->code,
				 resp->message[0] ? ": " : "", resp->message);
		if (attempt >= s3->max_attempts) {
			char tmp[512];
			util_strlcpy(tmp, err, sizeof(tmp));
			snprintf(err, errlen, "%s (gave up after %d attempts)", tmp, attempt);
			return STORAGE_ERR_NETWORK;
		}
		/* Exponential backoff with jitter: half the window fixed, half
		 * random, so clients that failed together do not retry together. */
		int64_t window = s3->backoff_base_ms;
		for (int i = 1; i < attempt && window < s3->backoff_max_ms; i++)
			window *= 2;
		if (window > s3->backoff_max_ms)
			window = s3->backoff_max_ms;
		uint32_t rnd = 0;
		util_random_bytes(&rnd, sizeof(rnd));
		int64_t wait = window / 2 + (int64_t)(rnd % (uint32_t)(window / 2 + 1));
		LOG_WARN(&log_s3, "%s (attempt %d/%d, retrying in %" PRId64 " ms)", err, attempt,
			 s3->max_attempts, wait);
		S3_STAT_ADD(s3, retries, 1);
		if (!s3_sleep(req->cancel, wait)) {
			snprintf(err, errlen, "S3 %s %s cancelled", req->method, req->key ? req->key : "/");
			return STORAGE_ERR_CANCELLED;
		}
	}
}

/* Fills 'err' from an unexpected final answer. */
static int s3_refused(const struct s3_req *req, const struct s3_resp *resp, char *err, size_t errlen)
{
	snprintf(err, errlen, "S3 refused %s %s: HTTP %ld %s%s%s", req->method,
		 req->key ? req->key : "/", resp->status, resp->code[0] ? resp->code : "",
		 resp->message[0] ? ": " : "", resp->message);
	return STORAGE_ERR_REFUSED;
}

int storage_s3_head(struct storage_s3 *s3, const char *key, int64_t *size, char *etag,
		    size_t etaglen, char *err, size_t errlen)
{
	struct s3_req req = { .method = "HEAD", .key = key };
	struct s3_resp resp = { 0 };
	int rc = s3_request(s3, &req, &resp, err, errlen);
	if (rc == 0) {
		if (resp.status == 404) {
			rc = 1;
		} else if (resp.status / 100 == 2) {
			if (size)
				*size = resp.content_length;
			if (etag)
				util_strlcpy(etag, resp.etag, etaglen);
		} else {
			rc = s3_refused(&req, &resp, err, errlen);
		}
	}
	s3_resp_reset(&resp);
	return rc;
}

int storage_s3_check(struct storage_s3 *s3, char *err, size_t errlen)
{
	struct s3_req req = { .method = "HEAD" };
	struct s3_resp resp = { 0 };
	int rc = s3_request(s3, &req, &resp, err, errlen);
	if (rc == 0 && resp.status / 100 != 2) {
		rc = s3_refused(&req, &resp, err, errlen);
		if (resp.status == 404)
			snprintf(err, errlen, "S3 bucket %s does not exist", s3->bucket);
	}
	s3_resp_reset(&resp);
	return rc;
}

int storage_s3_delete(struct storage_s3 *s3, const char *key, char *err, size_t errlen)
{
	struct s3_req req = { .method = "DELETE", .key = key };
	struct s3_resp resp = { 0 };
	int rc = s3_request(s3, &req, &resp, err, errlen);
	if (rc == 0 && resp.status / 100 != 2 && resp.status != 404)
		rc = s3_refused(&req, &resp, err, errlen);
	s3_resp_reset(&resp);
	return rc;
}

int storage_s3_get_file(struct storage_s3 *s3, const char *key, const char *path,
			char *err, size_t errlen)
{
	char *tmp = NULL;
	FILE *f = NULL;
	int rc = STORAGE_ERR_IO;
	struct s3_resp resp = { 0 };
	if (asprintf(&tmp, "%s.part", path) < 0)
		return STORAGE_ERR_NOMEM;
	f = fopen(tmp, "wb");
	if (!f) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto fail;
	}
	struct s3_req req = { .method = "GET", .key = key, .sink = f };
	rc = s3_request(s3, &req, &resp, err, errlen);
	if (rc < 0)
		goto fail;
	if (resp.status / 100 != 2) {
		rc = s3_refused(&req, &resp, err, errlen);
		goto fail;
	}
	rc = STORAGE_ERR_IO;
	FILE *written = f;
	f = NULL;
	if (util_file_commit(written, tmp, path, err, errlen) < 0)
		goto fail;
	rc = 0;
fail:
	if (f)
		fclose(f);
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	s3_resp_reset(&resp);
	return rc;
}

int storage_s3_initiate(struct storage_s3 *s3, const char *key, const char *content_type,
			char *upload_id, size_t idlen, char *err, size_t errlen)
{
	struct s3_req req = { .method = "POST", .key = key, .query = "uploads",
			      .content_type = content_type };
	struct s3_resp resp = { 0 };
	int rc = s3_request(s3, &req, &resp, err, errlen);
	if (rc == 0 && resp.status / 100 != 2)
		rc = s3_refused(&req, &resp, err, errlen);
	if (rc == 0 && (!s3_xml_text(resp.body, "UploadId", upload_id, idlen) || !*upload_id)) {
		snprintf(err, errlen, "S3 answered the multipart start of %s without an UploadId", key);
		rc = STORAGE_ERR_REFUSED;
	}
	s3_resp_reset(&resp);
	return rc;
}

/* The query string naming one upload (and part). */
static char *s3_upload_query(const char *upload_id, int part)
{
	char *eid = storage_sigv4_uri_encode(upload_id, strlen(upload_id), false), *q = NULL;
	if (!eid)
		return NULL;
	int n = part > 0 ? asprintf(&q, "partNumber=%d&uploadId=%s", part, eid)
			 : asprintf(&q, "uploadId=%s", eid);
	free(eid);
	return n < 0 ? NULL : q;
}

int storage_s3_abort(struct storage_s3 *s3, const char *key, const char *upload_id,
		     char *err, size_t errlen)
{
	char *q = s3_upload_query(upload_id, 0);
	if (!q)
		return STORAGE_ERR_NOMEM;
	struct s3_req req = { .method = "DELETE", .key = key, .query = q };
	struct s3_resp resp = { 0 };
	int rc = s3_request(s3, &req, &resp, err, errlen);
	if (rc == 0 && resp.status == 404 && strcmp(resp.code, "NoSuchUpload") == 0)
		rc = 1;
	else if (rc == 0 && resp.status / 100 != 2)
		rc = s3_refused(&req, &resp, err, errlen);
	if (rc == 0)
		LOG_INFO(&log_s3, "aborted multipart upload of %s", key);
	s3_resp_reset(&resp);
	free(q);
	return rc;
}

/* ListParts: the server's ETag for each part number up to 'nparts' goes to
 * etags[n] ("" when it lacks the part). Returns the count, or <0. */
static int s3_list_parts(struct storage_s3 *s3, const char *key, const char *upload_id,
			 char (*etags)[80], int nparts, char *err, size_t errlen)
{
	char *base = s3_upload_query(upload_id, 0), *q = NULL;
	char marker[32] = "";
	struct s3_resp resp = { 0 };
	int count = 0, rc = 0;
	if (!base)
		return STORAGE_ERR_NOMEM;
	/* S3 lists at most 1000 parts per answer; follow the marker. */
	for (int page = 0; page < 20; page++) {
		free(q);
		q = NULL;
		if ((marker[0] ? asprintf(&q, "part-number-marker=%s&%s", marker, base)
			       : asprintf(&q, "%s", base)) < 0) {
			q = NULL;
			rc = STORAGE_ERR_NOMEM;
			break;
		}
		struct s3_req req = { .method = "GET", .key = key, .query = q };
		rc = s3_request(s3, &req, &resp, err, errlen);
		if (rc == 0 && resp.status / 100 != 2)
			rc = s3_refused(&req, &resp, err, errlen);
		if (rc < 0)
			break;
		const char *p = resp.body;
		char num[32], etag[128], flag[16] = "";
		while (p && (p = strstr(p, "<Part>")) != NULL) {
			const char *end = strstr(p, "</Part>");
			if (!end)
				break;
			if (s3_xml_text(p, "PartNumber", num, sizeof(num)) &&
			    s3_xml_text(p, "ETag", etag, sizeof(etag))) {
				int n = atoi(num);
				if (etags && n >= 1 && n <= nparts)
					s3_unquote(etag, etags[n], sizeof(etags[n]));
				count++;
			}
			p = end;
		}
		s3_xml_text(resp.body, "IsTruncated", flag, sizeof(flag));
		if (strcmp(flag, "true") != 0 ||
		    !s3_xml_text(resp.body, "NextPartNumberMarker", marker, sizeof(marker)) || !marker[0])
			break;
	}
	s3_resp_reset(&resp);
	free(q);
	free(base);
	return rc < 0 ? rc : count;
}

int storage_s3_list_parts(struct storage_s3 *s3, const char *key, const char *upload_id,
			  char *err, size_t errlen)
{
	return s3_list_parts(s3, key, upload_id, NULL, 0, err, errlen);
}

static int s3_journal_get(struct storage_journal *j, const char *field, char *out, size_t outlen)
{
	if (!j)
		return 1;
	return j->get(j->opaque, field, out, outlen);
}

int storage_s3_abort_journal(struct storage_s3 *s3, struct storage_journal *journal,
			     char *err, size_t errlen)
{
	char key[1024], id[256];
	if (!journal)
		return 0;
	if (s3_journal_get(journal, "upload.key", key, sizeof(key)) != 0 ||
	    s3_journal_get(journal, "upload.id", id, sizeof(id)) != 0)
		return 0;
	int rc = storage_s3_abort(s3, key, id, err, errlen);
	if (rc < 0)
		return rc;
	if (journal->del(journal->opaque, "upload.") < 0) {
		snprintf(err, errlen, "cannot clear the upload journal");
		return STORAGE_ERR_JOURNAL;
	}
	return 0;
}

/* Reads exactly 'len' bytes at 'off'. */
static int s3_pread_all(int fd, uint8_t *buf, size_t len, int64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + (int64_t)got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static void s3_md5_b64(const uint8_t *data, size_t len, uint8_t md5[CRYPTO_MD5_LEN], char *out, size_t outlen)
{
	crypto_md5(data, len, md5);
	char *b = crypto_base64_encode(md5, CRYPTO_MD5_LEN);
	util_strlcpy(out, b ? b : "", outlen);
	free(b);
}

struct s3_progress {
	storage_progress_fn fn;
	void *opaque;
	int64_t base, total;
	int64_t last_ns;
};

static void s3_progress_sent(void *opaque, int64_t sent)
{
	struct s3_progress *p = opaque;
	int64_t now = time_mono_ns();
	if (!p->fn || p->total <= 0 || now - p->last_ns < 200 * TIME_NS_PER_MS)
		return;
	p->last_ns = now;
	p->fn(p->opaque, "upload", 100.0 * (double)(p->base + sent) / (double)p->total);
}

static int s3_put_single(struct storage_s3 *s3, int fd, int64_t size, const char *key,
			 const char *content_type, const volatile int *cancel, struct s3_progress *pg,
			 char *etag_out, size_t etaglen, char *err, size_t errlen)
{
	uint8_t *data = malloc(size ? (size_t)size : 1), md5[CRYPTO_MD5_LEN];
	char md5_b64[32], md5_hex[33];
	struct s3_resp resp = { 0 };
	int rc;
	if (!data)
		return STORAGE_ERR_NOMEM;
	if (s3_pread_all(fd, data, (size_t)size, 0) < 0) {
		snprintf(err, errlen, "cannot read the file to upload: %s", strerror(errno));
		rc = STORAGE_ERR_IO;
		goto done;
	}
	s3_md5_b64(data, (size_t)size, md5, md5_b64, sizeof(md5_b64));
	crypto_hex(md5, sizeof(md5), md5_hex);
	struct s3_req req = { .method = "PUT", .key = key, .body = data, .body_len = (size_t)size,
			      .content_type = content_type, .content_md5 = md5_b64, .cancel = cancel,
			      .on_sent = s3_progress_sent, .opaque = pg };
	rc = s3_request(s3, &req, &resp, err, errlen);
	if (rc == 0 && resp.status / 100 != 2)
		rc = s3_refused(&req, &resp, err, errlen);
	if (rc == 0 && resp.etag[0] && strcasecmp(resp.etag, md5_hex) != 0) {
		snprintf(err, errlen, "S3 stored %s with ETag %s, expected %s", key, resp.etag, md5_hex);
		rc = STORAGE_ERR_VERIFY;
	}
	if (rc == 0 && etag_out)
		util_strlcpy(etag_out, resp.etag[0] ? resp.etag : md5_hex, etaglen);
done:
	s3_resp_reset(&resp);
	free(data);
	return rc;
}

static int s3_complete(struct storage_s3 *s3, const char *key, const char *upload_id,
		       char (*etags)[80], int nparts, const volatile int *cancel,
		       char *etag_out, size_t etaglen, char *err, size_t errlen)
{
	size_t cap = 128 + (size_t)nparts * 160, len = 0;
	char *xml = malloc(cap), *q = s3_upload_query(upload_id, 0);
	struct s3_resp resp = { 0 };
	int rc = STORAGE_ERR_NOMEM;
	if (!xml || !q)
		goto done;
	len += (size_t)snprintf(xml + len, cap - len, "<CompleteMultipartUpload>");
	for (int n = 1; n <= nparts; n++)
		len += (size_t)snprintf(xml + len, cap - len,
					"<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>", n,
					etags[n]);
	len += (size_t)snprintf(xml + len, cap - len, "</CompleteMultipartUpload>");
	struct s3_req req = { .method = "POST", .key = key, .query = q, .body = (const uint8_t *)xml,
			      .body_len = len, .content_type = "application/xml", .cancel = cancel };
	rc = s3_request(s3, &req, &resp, err, errlen);
	if (rc < 0)
		goto done;
	/* S3 may answer 200 and still put an <Error> in the body. */
	if (resp.status / 100 != 2 || (resp.body && strstr(resp.body, "<Error>"))) {
		rc = s3_refused(&req, &resp, err, errlen);
		goto done;
	}
	char etag[128] = "";
	s3_xml_text(resp.body, "ETag", etag, sizeof(etag));
	if (etag_out) {
		s3_unquote(etag, etag_out, etaglen);
	}
	rc = 0;
done:
	s3_resp_reset(&resp);
	free(xml);
	free(q);
	return rc;
}

static int s3_put_multipart(struct storage_s3 *s3, int fd, int64_t size, const char *key,
			    const char *content_type, struct storage_journal *j,
			    const volatile int *cancel, struct s3_progress *pg,
			    char *etag_out, size_t etaglen, char *err, size_t errlen)
{
	int64_t ps = storage_s3_part_size_for(s3, size);
	int nparts = (int)((size + ps - 1) / ps);
	char (*etags)[80] = NULL, (*server)[80] = NULL;
	uint8_t *buf = NULL;
	char upload_id[256] = "", field[64], value[1024], psz[32];
	struct s3_resp resp = { 0 };
	char *q = NULL;
	int rc = STORAGE_ERR_NOMEM;

	if (nparts > 10000) {
		snprintf(err, errlen, "%s needs %d parts of %" PRId64 " bytes; S3 allows 10000: raise s3.part_size",
			 key, nparts, ps);
		return STORAGE_ERR_INVALID;
	}
	etags = calloc((size_t)nparts + 1, sizeof(*etags));
	server = calloc((size_t)nparts + 1, sizeof(*server));
	buf = malloc((size_t)ps);
	if (!etags || !server || !buf)
		goto done;
	snprintf(psz, sizeof(psz), "%" PRId64, ps);

	/* Resume: same key and part size in the journal, and the server still
	 * knows the upload. A part counts as done only when the server lists it
	 * with the ETag the journal recorded; servers without ListParts are
	 * taken at the journal's word. */
	bool resumed = false;
	if (s3_journal_get(j, "upload.key", value, sizeof(value)) == 0 && strcmp(value, key) == 0 &&
	    s3_journal_get(j, "upload.part_size", field, sizeof(field)) == 0 && strcmp(field, psz) == 0 &&
	    s3_journal_get(j, "upload.id", upload_id, sizeof(upload_id)) == 0 && upload_id[0]) {
		char lerr[512];
		int lp = s3_list_parts(s3, key, upload_id, server, nparts, lerr, sizeof(lerr));
		bool no_upload = lp == STORAGE_ERR_REFUSED && strstr(lerr, "NoSuchUpload");
		bool no_list = lp == STORAGE_ERR_REFUSED && !no_upload;
		if (lp == STORAGE_ERR_CANCELLED) {
			util_strlcpy(err, lerr, errlen);
			rc = lp;
			goto done;
		}
		if (lp == STORAGE_ERR_NETWORK) {
			util_strlcpy(err, lerr, errlen);
			rc = lp;
			goto done;
		}
		if (!no_upload) {
			resumed = true;
			for (int n = 1; n <= nparts; n++) {
				snprintf(field, sizeof(field), "upload.part.%d", n);
				if (s3_journal_get(j, field, value, sizeof(value)) != 0)
					continue;
				if (no_list || strcasecmp(server[n], value) == 0)
					util_strlcpy(etags[n], value, sizeof(etags[n]));
			}
			LOG_INFO(&log_s3, "resuming multipart upload of %s (%s)", key, upload_id);
		} else {
			LOG_WARN(&log_s3, "multipart upload %s of %s is gone; starting again", upload_id, key);
		}
	} else if (s3_journal_get(j, "upload.id", upload_id, sizeof(upload_id)) == 0 && upload_id[0]) {
		/* A different upload was in progress: drop it. */
		char lerr[512];
		if (storage_s3_abort_journal(s3, j, lerr, sizeof(lerr)) < 0)
			LOG_WARN(&log_s3, "could not abort an older upload: %s", lerr);
	}
	if (!resumed) {
		if (j && j->del(j->opaque, "upload.") < 0)
			goto journal_fail;
		rc = storage_s3_initiate(s3, key, content_type, upload_id, sizeof(upload_id), err, errlen);
		if (rc < 0)
			goto done;
		if (j && (j->set(j->opaque, "upload.key", key) < 0 ||
			  j->set(j->opaque, "upload.part_size", psz) < 0 ||
			  j->set(j->opaque, "upload.id", upload_id) < 0))
			goto journal_fail;
	}

	for (int n = 1; n <= nparts; n++) {
		int64_t off = (int64_t)(n - 1) * ps, len = size - off < ps ? size - off : ps;
		if (etags[n][0]) {
			S3_STAT_ADD(s3, parts_resumed, 1);
			continue;
		}
		if (s3_pread_all(fd, buf, (size_t)len, off) < 0) {
			snprintf(err, errlen, "cannot read the file to upload: %s", strerror(errno));
			rc = STORAGE_ERR_IO;
			goto done;
		}
		uint8_t md5[CRYPTO_MD5_LEN];
		char md5_b64[32], md5_hex[33];
		s3_md5_b64(buf, (size_t)len, md5, md5_b64, sizeof(md5_b64));
		crypto_hex(md5, sizeof(md5), md5_hex);
		free(q);
		q = s3_upload_query(upload_id, n);
		if (!q) {
			rc = STORAGE_ERR_NOMEM;
			goto done;
		}
		pg->base = off;
		struct s3_req req = { .method = "PUT", .key = key, .query = q, .body = buf,
				      .body_len = (size_t)len, .content_md5 = md5_b64, .cancel = cancel,
				      .on_sent = s3_progress_sent, .opaque = pg };
		rc = s3_request(s3, &req, &resp, err, errlen);
		if (rc < 0)
			goto done;
		if (resp.status / 100 != 2) {
			rc = s3_refused(&req, &resp, err, errlen);
			goto done;
		}
		util_strlcpy(etags[n], resp.etag[0] ? resp.etag : md5_hex, sizeof(etags[n]));
		if (strcasecmp(etags[n], md5_hex) != 0) {
			snprintf(err, errlen, "S3 stored part %d of %s with ETag %s, expected %s", n, key,
				 etags[n], md5_hex);
			rc = STORAGE_ERR_VERIFY;
			goto done;
		}
		snprintf(field, sizeof(field), "upload.part.%d", n);
		if (j && j->set(j->opaque, field, etags[n]) < 0)
			goto journal_fail;
		S3_STAT_ADD(s3, parts_uploaded, 1);
		if (pg->fn)
			pg->fn(pg->opaque, "upload", 100.0 * (double)(off + len) / (double)size);
	}

	rc = s3_complete(s3, key, upload_id, etags, nparts, cancel, etag_out, etaglen, err, errlen);
	if (rc == STORAGE_ERR_REFUSED && strstr(err, "NoSuchUpload")) {
		/* The completion may have succeeded with its answer lost: the
		 * object is there with the right size, then it is done. */
		int64_t osize = -1;
		char lerr[256];
		if (storage_s3_head(s3, key, &osize, etag_out, etaglen, lerr, sizeof(lerr)) == 0 &&
		    osize == size)
			rc = 0;
	}
	if (rc < 0)
		goto done;
	if (j && j->del(j->opaque, "upload.") < 0)
		goto journal_fail;
	LOG_INFO(&log_s3, "uploaded %s in %d parts", key, nparts);
	rc = 0;
	goto done;
journal_fail:
	snprintf(err, errlen, "cannot write the upload journal");
	rc = STORAGE_ERR_JOURNAL;
done:
	s3_resp_reset(&resp);
	free(q);
	free(buf);
	free(etags);
	free(server);
	return rc;
}

int storage_s3_put_file(struct storage_s3 *s3, const char *path, const char *key,
			const char *content_type, struct storage_journal *journal,
			const volatile int *cancel, storage_progress_fn progress, void *opaque,
			char *etag_out, size_t etaglen, char *err, size_t errlen)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return STORAGE_ERR_IO;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		close(fd);
		return STORAGE_ERR_IO;
	}
	struct s3_progress pg = { .fn = progress, .opaque = opaque, .total = sb.st_size };
	int64_t t0 = time_mono_ns();
	int rc = sb.st_size <= s3->part_size
		? s3_put_single(s3, fd, sb.st_size, key, content_type, cancel, &pg, etag_out, etaglen, err, errlen)
		: s3_put_multipart(s3, fd, sb.st_size, key, content_type, journal, cancel, &pg, etag_out,
				   etaglen, err, errlen);
	close(fd);
	if (rc == 0) {
		if (progress)
			progress(opaque, "upload", 100.0);
		LOG_INFO(&log_s3, "put %s (%lld bytes) in %.2f s", key, (long long)sb.st_size,
			 (double)(time_mono_ns() - t0) / 1e9);
	} else {
		LOG_WARN(&log_s3, "upload of %s failed: %s", path, err);
	}
	return rc;
}

char *storage_s3_presign_get(struct storage_s3 *s3, const char *key, int64_t expires_s,
			     const char *disposition, char *err, size_t errlen)
{
	char *url = NULL, *host = NULL, *path = NULL, *query = NULL, *signed_q = NULL, *out = NULL;
	char amz_date[17];
	if (expires_s < 1 || expires_s > 604800) {
		snprintf(err, errlen, "presigned URL expiry must be 1..604800 s");
		return NULL;
	}
	if (disposition) {
		char *e = storage_sigv4_uri_encode(disposition, strlen(disposition), false);
		if (!e || asprintf(&query, "response-content-disposition=%s", e) < 0)
			query = NULL;
		free(e);
		if (!query)
			goto oom;
	}
	if (s3_target(s3, key, NULL, &url, &host, &path) < 0)
		goto oom;
	storage_sigv4_amz_date(time_wall_ns() / TIME_NS_PER_SEC, amz_date);
	struct storage_sigv4_header h[1] = { { "host", host } };
	struct storage_sigv4_request sr = { .method = "GET", .path = path, .query = query,
					    .headers = h, .nheaders = 1 };
	struct s3_creds cred = s3_creds_now(s3);
	struct storage_sigv4_key k = {
		.access_key = cred.access_key, .secret_key = cred.secret_key,
		.session_token = cred.session_token, .region = s3->region, .service = "s3",
		.s3_path_rules = true,
	};
	signed_q = storage_sigv4_presign_query(&sr, &k, amz_date, expires_s);
	if (!signed_q || asprintf(&out, "%s?%s", url, signed_q) < 0) {
		out = NULL;
		goto oom;
	}
	goto done;
oom:
	snprintf(err, errlen, "cannot build the presigned URL");
done:
	free(url);
	free(host);
	free(path);
	free(query);
	free(signed_q);
	return out;
}

int storage_s3_file_etag(const char *path, int64_t part_size, char *etag, size_t etaglen,
			 char whole_md5[33], char *err, size_t errlen)
{
	struct stat sb;
	uint8_t *buf = NULL, *md5s = NULL, digest[CRYPTO_MD5_LEN];
	struct crypto_md5_ctx whole;
	int rc = STORAGE_ERR_IO;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		goto done;
	}
	if (part_size <= 0) {
		rc = STORAGE_ERR_INVALID;
		goto done;
	}
	int64_t nparts = sb.st_size <= part_size ? 1 : (sb.st_size + part_size - 1) / part_size;
	size_t chunk = (size_t)(sb.st_size < part_size ? (sb.st_size ? sb.st_size : 1) : part_size);
	buf = malloc(chunk);
	md5s = malloc((size_t)nparts * CRYPTO_MD5_LEN);
	if (!buf || !md5s) {
		rc = STORAGE_ERR_NOMEM;
		goto done;
	}
	crypto_md5_init(&whole);
	for (int64_t n = 0; n < nparts; n++) {
		int64_t off = n * part_size;
		size_t len = (size_t)(sb.st_size - off < part_size ? sb.st_size - off : part_size);
		if (s3_pread_all(fd, buf, len, off) < 0) {
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
			goto done;
		}
		crypto_md5(buf, len, md5s + n * CRYPTO_MD5_LEN);
		crypto_md5_update(&whole, buf, len);
	}
	crypto_md5_final(&whole, digest);
	if (whole_md5)
		crypto_hex(digest, sizeof(digest), whole_md5);
	char hex[33];
	if (sb.st_size <= part_size) {
		crypto_hex(md5s, CRYPTO_MD5_LEN, hex);
		util_strlcpy(etag, hex, etaglen);
	} else {
		crypto_md5(md5s, (size_t)nparts * CRYPTO_MD5_LEN, digest);
		crypto_hex(digest, sizeof(digest), hex);
		snprintf(etag, etaglen, "%s-%lld", hex, (long long)nparts);
	}
	rc = 0;
done:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(md5s);
	return rc;
}
