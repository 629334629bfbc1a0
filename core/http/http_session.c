/* http_session: the operator's sign-in for the console: the account (a
 * PBKDF2 hash from the configuration, or a generated password kept in the
 * state directory), session cookies with a CSRF token, and the per-address
 * limit on failed sign-ins. A session acts as the operator with the admin
 * role; bearer tokens are untouched by any of this. */
#include "http_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <civetweb.h>

#include "common_time.h"
#include "common_util.h"
#include "config.h"
#include "crypto.h"
#include "crypto_password.h"

#define HTTP_SESSION_COOKIE "edgerec_session"
#define HTTP_SESSION_MAX 64          /* signed-in browsers at once; the oldest goes */
#define HTTP_SESSION_TOKEN_LEN 43    /* 32 random bytes, base64url */
#define HTTP_SESSION_ADDR_MAX 256    /* addresses whose failures are remembered */
#define HTTP_SESSION_PASSWORD_FILE "console_password"

struct http_session {
	char id[HTTP_SESSION_TOKEN_LEN + 1];   /* "" when the slot is free */
	char csrf[HTTP_SESSION_TOKEN_LEN + 1];
	int64_t created_ns;
	int64_t expires_ns;
};

struct http_login_failures {
	char addr[48];                 /* "" when the slot is free */
	int count;                     /* failures since 'first_ns' */
	int64_t first_ns;
	int64_t locked_until_ns;
};

struct http_sessions {
	pthread_mutex_t lock;
	char user[HTTP_USER_ID_MAX + 1];
	char *hash;                    /* console.password_hash, or NULL */
	char password_file[4200];      /* the generated password's file, or "" */
	int64_t ttl_ns;
	int max_failures;
	int64_t lockout_ns;
	struct http_session session[HTTP_SESSION_MAX];
	struct http_login_failures failures[HTTP_SESSION_ADDR_MAX];
};

/* A fresh random token (32 bytes, base64url) into 'out'. */
static int http_session_token(char out[HTTP_SESSION_TOKEN_LEN + 1])
{
	uint8_t raw[32];
	if (crypto_random(raw, sizeof(raw)) < 0)
		return -1;
	char *t = crypto_base64url_encode(raw, sizeof(raw));
	if (!t || strlen(t) != HTTP_SESSION_TOKEN_LEN) {
		free(t);
		return -1;
	}
	memcpy(out, t, HTTP_SESSION_TOKEN_LEN + 1);
	free(t);
	return 0;
}

/* Reads the generated password from state_dir, creating it (mode 0600,
 * exclusively, so two starts agree) on first start. Returns 0 or -1 with
 * 'err'. */
static int http_sessions_password_file(struct http_sessions *ss, const char *state_dir, char *err, size_t errlen)
{
	snprintf(ss->password_file, sizeof(ss->password_file), "%s/%s", state_dir, HTTP_SESSION_PASSWORD_FILE);
	if (access(ss->password_file, F_OK) != 0) {
		uint8_t raw[15];
		char *pw = crypto_random(raw, sizeof(raw)) == 0 ? crypto_base64url_encode(raw, sizeof(raw)) : NULL;
		if (!pw) {
			snprintf(err, errlen, "%s: no entropy for a password", ss->password_file);
			return -1;
		}
		int fd = open(ss->password_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		bool ok = fd >= 0 && write(fd, pw, strlen(pw)) == (ssize_t)strlen(pw) && write(fd, "\n", 1) == 1;
		int saved = errno;
		if (fd >= 0)
			ok = close(fd) == 0 && ok;
		memset(pw, 0, strlen(pw));
		free(pw);
		if (!ok && saved != EEXIST) {
			/* Another start made it meanwhile (EEXIST): read theirs. */
			snprintf(err, errlen, "%s: %s", ss->password_file, strerror(saved));
			if (fd >= 0)
				unlink(ss->password_file);
			return -1;
		}
		if (ok)
			LOG_INFO(&http_log, "console: generated a password for '%s' in %s (mode 0600); set "
					    "console.password_hash (edgerec passwd) to choose one",
				 ss->user, ss->password_file);
	}
	char *text = util_read_file(ss->password_file, NULL);
	int saved = errno;
	bool read = text != NULL;
	size_t n = read ? strcspn(text, "\r\n") : 0;
	free(text);
	if (n < 8) {
		snprintf(err, errlen, "%s: %s", ss->password_file,
			 read ? "the password must be at least 8 characters" : strerror(saved));
		return -1;
	}
	return 0;
}

struct http_sessions *http_sessions_new(const struct config *cfg, char *err, size_t errlen)
{
	struct http_sessions *ss = calloc(1, sizeof(*ss));
	if (!ss) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&ss->lock, NULL);
	const char *user = config_get_str(cfg, "console.user");
	const char *hash = config_get_str(cfg, "console.password_hash");
	util_strlcpy(ss->user, user ? user : "", sizeof(ss->user));
	ss->ttl_ns = config_get_int(cfg, "console.session_ttl") * TIME_NS_PER_MS;
	ss->max_failures = (int)config_get_int(cfg, "console.login_max_failures");
	ss->lockout_ns = config_get_int(cfg, "console.login_lockout") * TIME_NS_PER_MS;
	if (http_sessions_config_check(cfg, err, errlen) < 0)
		goto fail;
	if (hash && *hash) {
		ss->hash = strdup(hash);
		if (!ss->hash) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	} else if (http_sessions_password_file(ss, config_get_str(cfg, "state_dir"), err, errlen) < 0) {
		goto fail;
	}
	return ss;
fail:
	http_sessions_free(ss);
	return NULL;
}

void http_sessions_free(struct http_sessions *ss)
{
	if (!ss)
		return;
	pthread_mutex_destroy(&ss->lock);
	free(ss->hash);
	free(ss);
}

int http_sessions_config_check(const struct config *cfg, char *err, size_t errlen)
{
	const char *user = config_get_str(cfg, "console.user");
	const char *hash = config_get_str(cfg, "console.password_hash");
	size_t n = user ? strlen(user) : 0;
	bool plain = n > 0 && n <= HTTP_USER_ID_MAX;
	for (size_t i = 0; plain && i < n; i++)
		plain = (unsigned char)user[i] > 0x20 && user[i] != 0x7f;
	if (!plain) {
		snprintf(err, errlen, "console.user must be 1 to %d printable characters without spaces",
			 HTTP_USER_ID_MAX);
		return -1;
	}
	if (hash && *hash && !crypto_password_line_valid(hash)) {
		snprintf(err, errlen, "console.password_hash is not a line printed by `edgerec passwd` "
				      "(pbkdf2-sha256$<iterations>$<salt>$<hash>)");
		return -1;
	}
	if (config_get_int(cfg, "console.session_ttl") < 60000) {
		snprintf(err, errlen, "console.session_ttl must be at least 1m");
		return -1;
	}
	if (config_get_int(cfg, "console.login_max_failures") < 1) {
		snprintf(err, errlen, "console.login_max_failures must be at least 1");
		return -1;
	}
	return 0;
}

const char *http_sessions_password_path(const struct http_sessions *ss)
{
	return ss && ss->password_file[0] ? ss->password_file : NULL;
}

const char *http_sessions_user(const struct http_sessions *ss)
{
	return ss ? ss->user : NULL;
}

/* ---- failed sign-ins per address ------------------------------------------ */

/* The slot of 'addr' (created when 'create', taking the free or the oldest
 * slot). Lock held. */
static struct http_login_failures *http_failures_slot(struct http_sessions *ss, const char *addr, bool create)
{
	struct http_login_failures *oldest = NULL;
	for (int i = 0; i < HTTP_SESSION_ADDR_MAX; i++) {
		struct http_login_failures *f = &ss->failures[i];
		if (f->addr[0] && strcmp(f->addr, addr) == 0)
			return f;
		if (!oldest || !f->addr[0] || (oldest->addr[0] && f->first_ns < oldest->first_ns))
			oldest = f;
	}
	if (!create)
		return NULL;
	memset(oldest, 0, sizeof(*oldest));
	util_strlcpy(oldest->addr, addr, sizeof(oldest->addr));
	return oldest;
}

/* Seconds 'addr' must still wait before it may try again (0: it may). */
static long long http_failures_wait(struct http_sessions *ss, const char *addr, int64_t now)
{
	pthread_mutex_lock(&ss->lock);
	struct http_login_failures *f = http_failures_slot(ss, addr, false);
	long long wait = f && f->locked_until_ns > now ? (f->locked_until_ns - now) / TIME_NS_PER_SEC + 1 : 0;
	pthread_mutex_unlock(&ss->lock);
	return wait;
}

/* Counts a failure of 'addr'; returns the failures within the window. Once
 * they reach the limit the address waits console.login_lockout. */
static int http_failures_add(struct http_sessions *ss, const char *addr, int64_t now)
{
	pthread_mutex_lock(&ss->lock);
	struct http_login_failures *f = http_failures_slot(ss, addr, true);
	if (now - f->first_ns > ss->lockout_ns) {
		f->count = 0;
		f->first_ns = now;
	}
	int n = ++f->count;
	if (n >= ss->max_failures)
		f->locked_until_ns = now + ss->lockout_ns;
	pthread_mutex_unlock(&ss->lock);
	return n;
}

static void http_failures_clear(struct http_sessions *ss, const char *addr)
{
	pthread_mutex_lock(&ss->lock);
	struct http_login_failures *f = http_failures_slot(ss, addr, false);
	if (f)
		memset(f, 0, sizeof(*f));
	pthread_mutex_unlock(&ss->lock);
}

/* ---- the password ---------------------------------------------------------- */

/* True when 'user' and 'password' are the operator's. The generated
 * password is compared as SHA-256 digests (constant time); a configured
 * hash costs one PBKDF2. Runs without the lock. */
static bool http_sessions_check(struct http_sessions *ss, const char *user, const char *password)
{
	bool user_ok = strlen(user) == strlen(ss->user) && crypto_memeq(user, ss->user, strlen(ss->user));
	bool pw_ok = false;
	if (ss->hash) {
		pw_ok = crypto_password_verify(ss->hash, password) == 1;
	} else {
		char *text = util_read_file(ss->password_file, NULL);
		if (text) {
			text[strcspn(text, "\r\n")] = '\0';
			uint8_t a[CRYPTO_SHA256_LEN], b[CRYPTO_SHA256_LEN];
			crypto_sha256(text, strlen(text), a);
			crypto_sha256(password, strlen(password), b);
			pw_ok = text[0] && crypto_memeq(a, b, sizeof(a));
			memset(text, 0, strlen(text));
			free(text);
		}
	}
	return user_ok && pw_ok;
}

/* ---- sessions ---------------------------------------------------------------- */

/* Finds the live session of cookie value 'id' and copies it into 'out'.
 * Returns false when there is none (unknown or expired). */
static bool http_sessions_find(struct http_sessions *ss, const char *id, struct http_session *out)
{
	int64_t now = time_wall_ns();
	bool found = false;
	if (strlen(id) != HTTP_SESSION_TOKEN_LEN)
		return false;
	pthread_mutex_lock(&ss->lock);
	for (int i = 0; i < HTTP_SESSION_MAX; i++) {
		struct http_session *s = &ss->session[i];
		if (!s->id[0])
			continue;
		if (s->expires_ns <= now) {
			memset(s, 0, sizeof(*s));
			continue;
		}
		if (!found && crypto_memeq(s->id, id, HTTP_SESSION_TOKEN_LEN)) {
			*out = *s;
			found = true;
		}
	}
	pthread_mutex_unlock(&ss->lock);
	return found;
}

/* A new session in the free or the oldest slot. Returns 0 or -1. */
static int http_sessions_add(struct http_sessions *ss, struct http_session *out)
{
	struct http_session fresh = { 0 };
	if (http_session_token(fresh.id) < 0 || http_session_token(fresh.csrf) < 0)
		return -1;
	fresh.created_ns = time_wall_ns();
	fresh.expires_ns = fresh.created_ns + ss->ttl_ns;
	pthread_mutex_lock(&ss->lock);
	struct http_session *slot = NULL;
	for (int i = 0; i < HTTP_SESSION_MAX; i++) {
		struct http_session *s = &ss->session[i];
		if (!s->id[0] || s->expires_ns <= fresh.created_ns) {
			slot = s;
			break;
		}
		if (!slot || s->created_ns < slot->created_ns)
			slot = s;
	}
	*slot = fresh;
	pthread_mutex_unlock(&ss->lock);
	*out = fresh;
	return 0;
}

static void http_sessions_remove(struct http_sessions *ss, const char *id)
{
	if (strlen(id) != HTTP_SESSION_TOKEN_LEN)
		return;
	pthread_mutex_lock(&ss->lock);
	for (int i = 0; i < HTTP_SESSION_MAX; i++)
		if (ss->session[i].id[0] && crypto_memeq(ss->session[i].id, id, HTTP_SESSION_TOKEN_LEN))
			memset(&ss->session[i], 0, sizeof(ss->session[i]));
	pthread_mutex_unlock(&ss->lock);
}

/* The session cookie's value from the request into 'out'; false when the
 * request carries none. */
static bool http_session_cookie(struct http_request *req, char out[HTTP_SESSION_TOKEN_LEN + 2])
{
	const char *cookies = mg_get_header(req->conn, "Cookie");
	return cookies && mg_get_cookie(cookies, HTTP_SESSION_COOKIE, out, HTTP_SESSION_TOKEN_LEN + 2) > 0;
}

/* A browser says where a request comes from: with a cookie, a request whose
 * Origin is not this server's own is refused (a page elsewhere driving the
 * operator's browser). No Origin (not a browser, or a same-origin GET) is
 * fine: SameSite=Strict and the CSRF token cover the rest. */
static bool http_session_origin_ok(struct http_request *req)
{
	const char *origin = mg_get_header(req->conn, "Origin");
	const char *host = mg_get_header(req->conn, "Host");
	if (!origin)
		return true;
	if (!host)
		return false;
	const char *rest = strncmp(origin, "https://", 8) == 0 ? origin + 8
			   : strncmp(origin, "http://", 7) == 0 ? origin + 7
								: NULL;
	return rest && strcasecmp(rest, host) == 0;
}

/* The claims a session acts with: the operator, with the admin role. */
static cJSON *http_session_claims(const struct http_sessions *ss, const struct http_session *s)
{
	cJSON *c = cJSON_CreateObject();
	cJSON *roles = c ? cJSON_AddArrayToObject(c, "roles") : NULL;
	if (!roles || !cJSON_AddStringToObject(c, "sub", ss->user) ||
	    !cJSON_AddNumberToObject(c, "iat", (double)(s->created_ns / TIME_NS_PER_SEC)) ||
	    !cJSON_AddNumberToObject(c, "exp", (double)(s->expires_ns / TIME_NS_PER_SEC)) ||
	    !cJSON_AddStringToObject(c, "auth", "console_session")) {
		cJSON_Delete(c);
		return NULL;
	}
	cJSON_AddItemToArray(roles, cJSON_CreateString("admin"));
	return c;
}

static bool http_method_safe(const char *m)
{
	return m && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0);
}

int http_session_auth(struct http_request *req, cJSON **claims)
{
	struct http_sessions *ss = req->s->sessions;
	char id[HTTP_SESSION_TOKEN_LEN + 2];
	struct http_session s;
	*claims = NULL;
	if (!ss || !http_session_cookie(req, id))
		return 1;
	if (!http_sessions_find(ss, id, &s)) {
		atomic_fetch_add(&req->s->metrics->auth_failures, 1);
		http_reply_error(req, 401, "session_expired", "the console session has ended: sign in again");
		return -1;
	}
	if (!http_session_origin_ok(req)) {
		http_reply_error(req, 403, "origin_mismatch", "a console session is only used from this server's pages");
		return -1;
	}
	if (!http_method_safe(mg_get_request_info(req->conn)->request_method)) {
		const char *token = mg_get_header(req->conn, "X-CSRF-Token");
		if (!token || strlen(token) != HTTP_SESSION_TOKEN_LEN ||
		    !crypto_memeq(token, s.csrf, HTTP_SESSION_TOKEN_LEN)) {
			http_reply_error(req, 403, "csrf_required",
					 "a request that changes something needs the session's X-CSRF-Token header");
			return -1;
		}
	}
	*claims = http_session_claims(ss, &s);
	if (!*claims) {
		http_reply_error(req, 500, "internal", "out of memory");
		return -1;
	}
	util_strlcpy(req->user, ss->user, sizeof(req->user));
	return 0;
}

/* ---- the routes ---------------------------------------------------------------- */

/* {"user", "csrf_token", "expires_at"} of a session. */
static void http_session_reply(struct http_request *req, const struct http_sessions *ss,
			       const struct http_session *s, bool set_cookie)
{
	char ts[40], cookie[200];
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;
	if (o && cJSON_AddStringToObject(o, "user", ss->user) && cJSON_AddStringToObject(o, "csrf_token", s->csrf) &&
	    cJSON_AddStringToObject(o, "expires_at", time_iso8601(s->expires_ns, ts, sizeof(ts))))
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!text) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	snprintf(cookie, sizeof(cookie), HTTP_SESSION_COOKIE "=%s; Path=/; Max-Age=%lld; HttpOnly; Secure; SameSite=Strict",
		 s->id, (long long)((s->expires_ns - time_wall_ns()) / TIME_NS_PER_SEC));
	http_reply(req, 200, "application/json", text, strlen(text), set_cookie ? "Set-Cookie" : NULL,
		   set_cookie ? cookie : NULL);
	cJSON_free(text);
}

void http_session_login(struct http_request *req)
{
	struct http_sessions *ss = req->s->sessions;
	const char *addr = mg_get_request_info(req->conn)->remote_addr;
	int64_t now = time_wall_ns();
	cJSON *body = NULL;
	char *text = NULL;
	size_t len = 0;
	if (!ss) {
		http_reply_error(req, 404, "not_found", "console sign-in is not configured");
		return;
	}
	if (!http_session_origin_ok(req)) {
		http_reply_error(req, 403, "origin_mismatch", "sign in from this server's own page");
		return;
	}
	long long wait = http_failures_wait(ss, addr, now);
	if (wait > 0) {
		char retry[24];
		snprintf(retry, sizeof(retry), "%lld", wait);
		char *err = NULL;
		if (asprintf(&err, "{\"detail\":\"too many failed sign-ins from %s: try again in %lld s\","
				   "\"code\":\"too_many_attempts\"}", addr, wait) < 0)
			err = NULL;
		http_reply(req, 429, "application/json", err ? err : "{}", err ? strlen(err) : 2, "Retry-After", retry);
		free(err);
		LOG_WARN(&http_log, "console sign-in from %s refused: locked for %lld s more", addr, wait);
		return;
	}
	text = http_read_body(req, &len);
	if (!text)
		return;
	body = cJSON_ParseWithLength(text, len);
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(body, "user");
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "password");
	if (!cJSON_IsObject(body) || !cJSON_IsString(u) || !cJSON_IsString(p)) {
		http_reply_error(req, 400, "invalid_json", "the body must be {\"user\": \"...\", \"password\": \"...\"}");
		goto out;
	}
	if (!http_sessions_check(ss, u->valuestring, p->valuestring)) {
		int n = http_failures_add(ss, addr, now);
		char shown[65];
		size_t i = 0;
		/* The name as typed, but never a line break into the log. */
		for (; u->valuestring[i] && i < sizeof(shown) - 1; i++) {
			unsigned char ch = (unsigned char)u->valuestring[i];
			shown[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
		}
		shown[i] = '\0';
		atomic_fetch_add(&req->s->metrics->auth_failures, 1);
		LOG_WARN(&http_log, "console sign-in failed from %s as '%s' (%d of %d before a %lld s wait)", addr,
			 shown, n, ss->max_failures, (long long)(ss->lockout_ns / TIME_NS_PER_SEC));
		http_reply_error(req, 401, "invalid_credentials", "wrong user name or password");
		goto out;
	}
	http_failures_clear(ss, addr);
	struct http_session s;
	if (http_sessions_add(ss, &s) < 0) {
		http_reply_error(req, 500, "internal", "no randomness for a session");
		goto out;
	}
	util_strlcpy(req->user, ss->user, sizeof(req->user));
	LOG_INFO(&http_log, "console: '%s' signed in from %s", ss->user, addr);
	http_session_reply(req, ss, &s, true);
out:
	if (text)
		memset(text, 0, len);
	free(text);
	cJSON_Delete(body);
}

void http_session_logout(struct http_request *req)
{
	static const char clear[] =
		HTTP_SESSION_COOKIE "=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict";
	cJSON *claims = NULL;
	char id[HTTP_SESSION_TOKEN_LEN + 2];
	/* Only the session itself (with its CSRF token) may end it. */
	int rc = http_session_auth(req, &claims);
	if (rc < 0)
		return;
	cJSON_Delete(claims);
	if (rc == 0 && http_session_cookie(req, id)) {
		http_sessions_remove(req->s->sessions, id);
		LOG_INFO(&http_log, "console: '%s' signed out", req->user);
	}
	http_reply(req, 200, "application/json", "{\"signed_in\":false}", 19, "Set-Cookie", clear);
}

void http_session_info(struct http_request *req)
{
	struct http_sessions *ss = req->s->sessions;
	char id[HTTP_SESSION_TOKEN_LEN + 2];
	struct http_session s;
	if (!ss || !http_session_cookie(req, id) || !http_sessions_find(ss, id, &s)) {
		http_reply_error(req, 401, "not_signed_in", "no console session: sign in");
		return;
	}
	util_strlcpy(req->user, ss->user, sizeof(req->user));
	http_session_reply(req, ss, &s, false);
}
