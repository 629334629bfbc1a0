/* state_conn: where Redis is (URL parsing) and how one connection to it is
 * opened, authenticated and pointed at its database. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "common_util.h"
#include "state_internal.h"

static int state_url_fail(char *err, size_t errlen, const char *what, const char *url)
{
	if (err && errlen)
		snprintf(err, errlen, "redis url '%s': %s", url, what);
	return -1;
}

/* Parses a decimal number in [lo, hi] from 's' up to 'end'. */
static int state_url_number(const char *s, const char *end, long lo, long hi, long *out)
{
	char buf[16];
	size_t n = (size_t)(end - s);
	if (n == 0 || n >= sizeof buf)
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	char *e;
	errno = 0;
	long v = strtol(buf, &e, 10);
	if (errno || *e || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int state_url_parse(const char *url, struct state_url *out, char *err, size_t errlen)
{
	long v;
	memset(out, 0, sizeof *out);
	if (!url || !url[0])
		return state_url_fail(err, errlen, "empty", "");

	if (url[0] == '/' || strncmp(url, "unix:", 5) == 0) {
		const char *path = url[0] == '/' ? url : url + 5;
		while (path[0] == '/' && path[1] == '/')
			path++;
		const char *q = strchr(path, '?');
		size_t n = q ? (size_t)(q - path) : strlen(path);
		if (path[0] != '/' || n >= sizeof out->unix_path || n < 2)
			return state_url_fail(err, errlen, "the socket path must be absolute and short", url);
		memcpy(out->unix_path, path, n);
		out->unix_path[n] = 0;
		if (q) {
			if (strncmp(q, "?db=", 4) != 0 ||
			    state_url_number(q + 4, q + strlen(q), 0, 1000000, &v) != 0)
				return state_url_fail(err, errlen, "the only query is ?db=N", url);
			out->db = (int)v;
		}
		return 0;
	}

	if (strncmp(url, "redis://", 8) != 0)
		return state_url_fail(err, errlen, "expected redis://host:port or unix:///path", url);
	const char *p = url + 8;
	/* The last '@' ends the credentials, so a password may hold '@' or '/'. */
	const char *at = strrchr(p, '@');
	const char *slash = strchr(at ? at : p, '/');
	const char *end = slash ? slash : p + strlen(p);
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		const char *pw = colon ? colon + 1 : p;
		size_t ulen = colon ? (size_t)(colon - p) : 0;
		size_t plen = (size_t)(at - pw);
		if (ulen >= sizeof out->user || plen >= sizeof out->password)
			return state_url_fail(err, errlen, "credentials too long", url);
		memcpy(out->user, p, ulen);
		out->user[ulen] = 0;
		memcpy(out->password, pw, plen);
		out->password[plen] = 0;
		p = at + 1;
	}
	const char *hend = end;
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t)(end - p));
		if (!rb)
			return state_url_fail(err, errlen, "unterminated [ipv6]", url);
		if ((size_t)(rb - p - 1) >= sizeof out->host)
			return state_url_fail(err, errlen, "host too long", url);
		memcpy(out->host, p + 1, (size_t)(rb - p - 1));
		out->host[rb - p - 1] = 0;
		hend = rb + 1;
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		hend = colon ? colon : end;
		if ((size_t)(hend - p) >= sizeof out->host)
			return state_url_fail(err, errlen, "host too long", url);
		memcpy(out->host, p, (size_t)(hend - p));
		out->host[hend - p] = 0;
	}
	if (!out->host[0])
		return state_url_fail(err, errlen, "no host", url);
	out->port = 6379;
	if (hend < end) {
		if (*hend != ':' || state_url_number(hend + 1, end, 1, 65535, &v) != 0)
			return state_url_fail(err, errlen, "bad port", url);
		out->port = (int)v;
	}
	if (slash && slash[1]) {
		if (state_url_number(slash + 1, slash + strlen(slash), 0, 1000000, &v) != 0)
			return state_url_fail(err, errlen, "bad database number", url);
		out->db = (int)v;
	}
	return 0;
}

static struct timeval state_tv(int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	return tv;
}

/* Runs one command whose only acceptable reply is a status or a string;
 * returns 0 or -1 with 'err' filled. */
static int state_connect_setup(redisContext *c, int argc, const char **argv, char *err, size_t errlen)
{
	redisReply *r = redisCommandArgv(c, argc, argv, NULL);
	int rc = 0;
	if (!r) {
		snprintf(err, errlen, "redis %s: %s", argv[0], c->errstr);
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis %s: %s", argv[0], r->str);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

redisContext *state_connect(const struct state_url *url, int64_t connect_timeout_ms,
			    int64_t command_timeout_ms, char *err, size_t errlen)
{
	redisContext *c;
	if (url->unix_path[0])
		c = redisConnectUnixWithTimeout(url->unix_path, state_tv(connect_timeout_ms));
	else
		c = redisConnectWithTimeout(url->host, url->port, state_tv(connect_timeout_ms));
	if (!c) {
		snprintf(err, errlen, "redis: out of memory");
		return NULL;
	}
	if (c->err) {
		if (url->unix_path[0])
			snprintf(err, errlen, "redis at %s: %s", url->unix_path, c->errstr);
		else
			snprintf(err, errlen, "redis at %s:%d: %s", url->host, url->port, c->errstr);
		goto fail;
	}
	if (command_timeout_ms > 0 && redisSetTimeout(c, state_tv(command_timeout_ms)) != REDIS_OK) {
		snprintf(err, errlen, "redis: cannot set the command timeout");
		goto fail;
	}
	if (url->password[0]) {
		const char *argv[3] = { "AUTH", url->user[0] ? url->user : url->password, url->password };
		if (state_connect_setup(c, url->user[0] ? 3 : 2, argv, err, errlen) != 0)
			goto fail;
	}
	if (url->db) {
		char db[16];
		snprintf(db, sizeof db, "%d", url->db);
		const char *argv[2] = { "SELECT", db };
		if (state_connect_setup(c, 2, argv, err, errlen) != 0)
			goto fail;
	}
	return c;

fail:
	redisFree(c);
	return NULL;
}
