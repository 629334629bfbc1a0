/* config: option registry, file and environment parsing, typed getters. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common_log.h"
#include "common_err.h"
#include "common_util.h"
#include "config.h"

extern char **environ;

static struct log_handle log_cfg = LOG_HANDLE("config");

/* Longest key and value accepted anywhere; longer text is an error rather
 * than a silent cut. */
#define CONFIG_KEY_MAX 256
#define CONFIG_VALUE_MAX 8192

/* A value that was set: its key, text and where it came from. 'opt' is the
 * option that declares it, or NULL for an unknown key kept because
 * config_allow_unknown() is on. */
struct config_entry {
	char *key;
	char *value;
	char *origin;
	const struct config_option *opt;
};

struct config {
	pthread_rwlock_t lock;
	bool allow_unknown;
	/* Registered options (pointers into the modules' static tables). */
	const struct config_option **opts;
	size_t nopts, capopts;
	/* Set values, sorted by key for binary search. */
	struct config_entry *entries;
	size_t nentries, capentries;
	/* Strings replaced by a later set: kept so that pointers handed out by
	 * the getters stay valid until config_free(). */
	char **retired;
	size_t nretired, capretired;
};


/* ---- parsers for the value types ------------------------------------ */

int config_parse_int(const char *s, long long *out)
{
	if (!s || !*s || isspace((unsigned char)*s))
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return -1;
	if (out)
		*out = v;
	return 0;
}

int config_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	if (!s)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			if (out)
				*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			if (out)
				*out = false;
			return 0;
		}
	}
	return -1;
}

/* Reads a plain decimal number ("12", "1.5", no exponent, no sign, no hex
 * or inf/nan that strtod would also take) and returns where it ended. */
static const char *parse_decimal(const char *s, double *out)
{
	const char *p = s;
	size_t digits = 0;
	while (isdigit((unsigned char)*p)) {
		p++;
		digits++;
	}
	if (*p == '.') {
		p++;
		while (isdigit((unsigned char)*p)) {
			p++;
			digits++;
		}
	}
	if (!digits || digits > 30)
		return NULL;
	char buf[40];
	memcpy(buf, s, (size_t)(p - s));
	buf[p - s] = '\0';
	*out = strtod(buf, NULL);
	return p;
}

int config_parse_double(const char *s, double *out)
{
	if (!s || !*s || isspace((unsigned char)*s))
		return -1;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v))
		return -1;
	if (out)
		*out = v;
	return 0;
}

int config_parse_size(const char *s, long long *bytes)
{
	static const struct { char c; double mult; } units[] = {
		{ 'k', 1024.0 }, { 'm', 1048576.0 }, { 'g', 1073741824.0 }, { 't', 1099511627776.0 },
	};
	double v, mult = 1.0;
	if (!s)
		return -1;
	const char *p = parse_decimal(s, &v);
	if (!p)
		return -1;
	if (*p) {
		for (size_t i = 0; i < ARRAY_SIZE(units); i++)
			if (tolower((unsigned char)*p) == units[i].c) {
				mult = units[i].mult;
				p++;
				break;
			}
		if (mult > 1.0 && tolower((unsigned char)*p) == 'i')
			p++;
		if (*p == 'b' || *p == 'B')
			p++;
	}
	if (*p)
		return -1;
	double b = v * mult;
	if (b > 9.0e18)
		return -1;
	if (bytes)
		*bytes = llround(b);
	return 0;
}

int config_parse_duration(const char *s, long long *ms)
{
	static const struct { const char *unit; double mult; } units[] = {
		{ "", 1000.0 }, { "ms", 1.0 }, { "s", 1000.0 }, { "m", 60000.0 },
		{ "h", 3600000.0 }, { "d", 86400000.0 },
	};
	double v;
	if (!s)
		return -1;
	const char *p = parse_decimal(s, &v);
	if (!p)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(p, units[i].unit) != 0)
			continue;
		double r = v * units[i].mult;
		if (r > 9.0e18)
			return -1;
		if (ms)
			*ms = llround(r);
		return 0;
	}
	return -1;
}

static const char *type_name(enum config_type t)
{
	switch (t) {
	case CONFIG_STR: return "string";
	case CONFIG_INT: return "integer";
	case CONFIG_BOOL: return "boolean";
	case CONFIG_DOUBLE: return "number";
	case CONFIG_SIZE: return "size";
	case CONFIG_DURATION: return "duration";
	}
	return "?";
}

/* Checks 'value' against the option's type; on error fills 'err' with
 * "key: 'value' is not a <type>". */
static int value_check(const struct config_option *o, const char *key, const char *value,
		       char *err, size_t errlen)
{
	int r = 0;
	switch (o->type) {
	case CONFIG_STR: r = 0; break;
	case CONFIG_INT: r = config_parse_int(value, NULL); break;
	case CONFIG_BOOL: r = config_parse_bool(value, NULL); break;
	case CONFIG_DOUBLE: r = config_parse_double(value, NULL); break;
	case CONFIG_SIZE: r = config_parse_size(value, NULL); break;
	case CONFIG_DURATION: r = config_parse_duration(value, NULL); break;
	default: r = -1; break;
	}
	if (strlen(value) > CONFIG_VALUE_MAX) {
		err_set(err, errlen, "%s: value longer than %d bytes", key, CONFIG_VALUE_MAX);
		return -1;
	}
	if (r == 0 && o->choices) {
		bool found = false;
		for (const char *const *ch = o->choices; *ch && !found; ch++)
			found = strcmp(*ch, value) == 0;
		if (!found) {
			char list[512];
			size_t n = 0;
			list[0] = '\0';
			for (const char *const *ch = o->choices; *ch && n < sizeof(list); ch++)
				n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "",
						      **ch ? *ch : "\"\" (empty)");
			err_set(err, errlen, "%s: '%.64s' is not one of %s", key, value, list);
			return -1;
		}
	}
	if (r < 0) {
		const char *hint = o->type == CONFIG_SIZE ? " (e.g. 512, 10M, 2G)"
			: o->type == CONFIG_DURATION ? " (e.g. 30s, 250ms, 5m, 2h)"
			: o->type == CONFIG_BOOL ? " (true/false)" : "";
		err_set(err, errlen, "%s: '%.64s' is not a valid %s%s", key, value,
		       type_name(o->type), hint);
		return -1;
	}
	return 0;
}

/* ---- keys ------------------------------------------------------------ */

static bool seg_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_' || ch == '-';
}

/* A key is dot-separated non-empty segments of [A-Za-z0-9_-]; in a table a
 * segment may be a single '*' (once per key). */
static bool key_valid(const char *key, bool pattern)
{
	size_t len = strlen(key), seglen = 0;
	int stars = 0;
	if (!len || len > CONFIG_KEY_MAX)
		return false;
	for (const char *p = key;; p++) {
		if (*p == '.' || *p == '\0') {
			if (!seglen)
				return false;
			seglen = 0;
			if (!*p)
				break;
			continue;
		}
		if (*p == '*') {
			if (!pattern || seglen || (p[1] != '.' && p[1] != '\0'))
				return false;
			stars++;
		} else if (!seg_char(*p)) {
			return false;
		}
		seglen++;
	}
	return stars <= 1;
}

/* True when 'key' matches the option key 'pat', where a '*' segment stands
 * for exactly one segment. */
static bool key_match(const char *pat, const char *key)
{
	while (*pat && *key) {
		if (*pat == '*') {
			pat++;
			while (*key && *key != '.')
				key++;
			continue;
		}
		if (*pat != *key)
			return false;
		pat++;
		key++;
	}
	return *pat == '\0' && *key == '\0';
}

/* The option declaring 'key': an exact key first, else a family. Caller
 * holds the lock. */
static const struct config_option *opt_find(const struct config *c, const char *key)
{
	const struct config_option *family = NULL;
	for (size_t i = 0; i < c->nopts; i++) {
		const struct config_option *o = c->opts[i];
		if (strcmp(o->key, key) == 0)
			return o;
		if (!family && strchr(o->key, '*') && key_match(o->key, key))
			family = o;
	}
	return family;
}

/* Binary search in the sorted entries; returns the index of 'key' or, when
 * absent, -(insertion point) - 1. */
static long entry_search(const struct config *c, const char *key)
{
	size_t lo = 0, hi = c->nentries;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(c->entries[mid].key, key);
		if (r == 0)
			return (long)mid;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(long)lo - 1;
}

static int retire(struct config *c, char *s)
{
	if (!s)
		return 0;
	if (c->nretired == c->capretired) {
		size_t cap = c->capretired ? c->capretired * 2 : 16;
		char **n = realloc(c->retired, cap * sizeof(*n));
		if (!n)
			return -1;
		c->retired = n;
		c->capretired = cap;
	}
	c->retired[c->nretired++] = s;
	return 0;
}

/* Stores an already checked value. Caller holds the write lock. Returns 0
 * or -1 when out of memory (nothing changes then). */
static int entry_store(struct config *c, const char *key, const char *value, const char *origin,
		       const struct config_option *opt)
{
	char *v = strdup(value), *o = strdup(origin);
	if (!v || !o)
		goto fail;
	long i = entry_search(c, key);
	if (i >= 0) {
		struct config_entry *e = &c->entries[i];
		/* Make room for both old strings before touching the entry. */
		if (c->nretired + 2 > c->capretired) {
			size_t cap = c->capretired ? c->capretired * 2 + 2 : 16;
			char **n = realloc(c->retired, cap * sizeof(*n));
			if (!n)
				goto fail;
			c->retired = n;
			c->capretired = cap;
		}
		retire(c, e->value);
		retire(c, e->origin);
		e->value = v;
		e->origin = o;
		e->opt = opt;
		return 0;
	}
	size_t at = (size_t)(-i - 1);
	if (c->nentries == c->capentries) {
		size_t cap = c->capentries ? c->capentries * 2 : 32;
		struct config_entry *n = realloc(c->entries, cap * sizeof(*n));
		if (!n)
			goto fail;
		c->entries = n;
		c->capentries = cap;
	}
	char *k = strdup(key);
	if (!k)
		goto fail;
	memmove(&c->entries[at + 1], &c->entries[at], (c->nentries - at) * sizeof(c->entries[0]));
	c->entries[at] = (struct config_entry){ .key = k, .value = v, .origin = o, .opt = opt };
	c->nentries++;
	return 0;
fail:
	free(v);
	free(o);
	return -1;
}

/* Looks up key and checks value; on success *optp is the declaring option
 * (NULL for an allowed unknown key). Caller holds a lock. */
static int check_pair(const struct config *c, const char *key, const char *value,
		      const struct config_option **optp, char *err, size_t errlen)
{
	if (!key_valid(key, false)) {
		err_set(err, errlen, "malformed option name '%.64s'", key);
		return -1;
	}
	const struct config_option *o = opt_find(c, key);
	if (!o && !c->allow_unknown) {
		err_set(err, errlen, "unknown option '%s'", key);
		return -1;
	}
	if (o && value_check(o, key, value, err, errlen) < 0)
		return -1;
	if (!o && strlen(value) > CONFIG_VALUE_MAX) {
		err_set(err, errlen, "%s: value longer than %d bytes", key, CONFIG_VALUE_MAX);
		return -1;
	}
	*optp = o;
	return 0;
}

/* ---- life cycle and registration ------------------------------------- */

struct config *config_new(void)
{
	struct config *c = calloc(1, sizeof(*c));
	if (!c) {
		LOG_ERROR(&log_cfg, "out of memory");
		return NULL;
	}
	if (pthread_rwlock_init(&c->lock, NULL) != 0) {
		LOG_ERROR(&log_cfg, "cannot create lock");
		free(c);
		return NULL;
	}
	return c;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nentries; i++) {
		free(c->entries[i].key);
		free(c->entries[i].value);
		free(c->entries[i].origin);
	}
	for (size_t i = 0; i < c->nretired; i++)
		free(c->retired[i]);
	free(c->entries);
	free(c->retired);
	free(c->opts);
	pthread_rwlock_destroy(&c->lock);
	free(c);
}

void config_allow_unknown(struct config *c, bool allow)
{
	pthread_rwlock_wrlock(&c->lock);
	c->allow_unknown = allow;
	pthread_rwlock_unlock(&c->lock);
}

int config_register(struct config *c, const struct config_option *table)
{
	char err[256];
	int rc = -1;
	if (!c || !table)
		return -1;
	pthread_rwlock_wrlock(&c->lock);
	/* Check the whole table first so that a bad table registers nothing. */
	size_t n = 0;
	for (const struct config_option *o = table; o->key; o++, n++) {
		if (!key_valid(o->key, true)) {
			LOG_ERROR(&log_cfg, "option table: malformed key '%s'", o->key);
			goto out;
		}
		if (o->type < CONFIG_STR || o->type > CONFIG_DURATION) {
			LOG_ERROR(&log_cfg, "option table: %s has no valid type", o->key);
			goto out;
		}
		if (o->choices && o->type != CONFIG_STR) {
			LOG_ERROR(&log_cfg, "option table: %s has choices but is not a string", o->key);
			goto out;
		}
		if (o->def && value_check(o, o->key, o->def, err, sizeof(err)) < 0) {
			LOG_ERROR(&log_cfg, "option table: bad default: %s", err);
			goto out;
		}
		for (size_t i = 0; i < c->nopts; i++)
			if (strcmp(c->opts[i]->key, o->key) == 0 && c->opts[i]->type != o->type) {
				LOG_ERROR(&log_cfg, "option %s registered as %s and as %s", o->key,
					  type_name(c->opts[i]->type), type_name(o->type));
				goto out;
			}
	}
	/* Values kept for keys that were unknown until now must fit their type. */
	for (size_t i = 0; i < c->nentries; i++) {
		struct config_entry *e = &c->entries[i];
		if (e->opt)
			continue;
		for (const struct config_option *o = table; o->key; o++)
			if (strcmp(o->key, e->key) == 0 || (strchr(o->key, '*') && key_match(o->key, e->key))) {
				if (value_check(o, e->key, e->value, err, sizeof(err)) < 0) {
					LOG_ERROR(&log_cfg, "%s: %s", e->origin, err);
					goto out;
				}
				break;
			}
	}
	if (c->nopts + n > c->capopts) {
		size_t cap = c->capopts ? c->capopts : 32;
		while (cap < c->nopts + n)
			cap *= 2;
		const struct config_option **no = realloc(c->opts, cap * sizeof(*no));
		if (!no) {
			LOG_ERROR(&log_cfg, "out of memory");
			goto out;
		}
		c->opts = no;
		c->capopts = cap;
	}
	for (const struct config_option *o = table; o->key; o++) {
		bool dup = false;
		for (size_t i = 0; i < c->nopts && !dup; i++)
			dup = strcmp(c->opts[i]->key, o->key) == 0;
		if (!dup)
			c->opts[c->nopts++] = o;
	}
	for (size_t i = 0; i < c->nentries; i++)
		if (!c->entries[i].opt)
			c->entries[i].opt = opt_find(c, c->entries[i].key);
	rc = 0;
out:
	pthread_rwlock_unlock(&c->lock);
	return rc;
}

/* ---- the file parser -------------------------------------------------- */

/* A list of checked (key, value, origin) triples waiting to be stored:
 * a file or the environment is read completely before anything changes. */
struct pending {
	char *key, *value, *origin;
	const struct config_option *opt;
};

struct plist {
	struct pending *v;
	size_t n, cap;
};

static int plist_push(struct plist *l, const char *key, const char *value, const char *origin,
		      const struct config_option *opt)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		struct pending *nv = realloc(l->v, cap * sizeof(*nv));
		if (!nv)
			return -1;
		l->v = nv;
		l->cap = cap;
	}
	struct pending *p = &l->v[l->n];
	p->key = strdup(key);
	p->value = strdup(value);
	p->origin = strdup(origin);
	p->opt = opt;
	if (!p->key || !p->value || !p->origin) {
		free(p->key);
		free(p->value);
		free(p->origin);
		return -1;
	}
	l->n++;
	return 0;
}

static void plist_free(struct plist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].value);
		free(l->v[i].origin);
	}
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/* Stores every pending value in 'c' (caller holds the write lock). */
static int plist_apply(struct config *c, const struct plist *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (entry_store(c, l->v[i].key, l->v[i].value, l->v[i].origin, l->v[i].opt) < 0)
			return -1;
	return 0;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

/* Turns the text after '=' into the value, in place: a quoted value loses
 * its quotes and escapes, an unquoted one loses a trailing " # comment".
 * Returns the value or NULL with 'err' set. */
static char *parse_value(char *s, char *err, size_t errlen)
{
	s = trim(s);
	if (*s != '"') {
		for (char *p = s; *p; p++)
			if (*p == '#' && p > s && (p[-1] == ' ' || p[-1] == '\t')) {
				*p = '\0';
				break;
			}
		if (*s == '#')
			*s = '\0';
		return trim(s);
	}
	char *out = s, *p = s + 1;
	for (;;) {
		if (*p == '\0') {
			err_set(err, errlen, "unterminated quoted value");
			return NULL;
		}
		if (*p == '"')
			break;
		if (*p == '\\') {
			p++;
			if (*p != '"' && *p != '\\') {
				err_set(err, errlen, "unknown escape in quoted value (only \\\" and \\\\)");
				return NULL;
			}
		}
		*out++ = *p++;
	}
	char *rest = trim(p + 1);
	if (*rest && *rest != '#') {
		err_set(err, errlen, "text after the closing quote");
		return NULL;
	}
	*out = '\0';
	return s;
}

/* Parses and checks 'text' into 'out'. Caller holds the lock (for the
 * option lookups). Returns 0 or -1 with "name:line: reason" in 'err'. */
static int parse_text(const struct config *c, const char *name, const char *text, size_t len,
		      struct plist *out, char *err, size_t errlen)
{
	char *line = NULL, prefix[CONFIG_KEY_MAX + 2] = "";
	char why[256];
	int rc = -1;
	unsigned lineno = 0;
	size_t pos = 0;

	while (pos < len) {
		const char *start = text + pos;
		const char *nl = memchr(start, '\n', len - pos);
		size_t l = nl ? (size_t)(nl - start) : len - pos;
		pos += l + (nl ? 1 : 0);
		lineno++;
		if (memchr(start, '\0', l)) {
			err_set(err, errlen, "%s:%u: NUL byte in line", name, lineno);
			goto out;
		}
		if (l > CONFIG_VALUE_MAX + CONFIG_KEY_MAX + 16) {
			err_set(err, errlen, "%s:%u: line too long", name, lineno);
			goto out;
		}
		free(line);
		line = malloc(l + 1);
		if (!line) {
			err_set(err, errlen, "%s:%u: out of memory", name, lineno);
			goto out;
		}
		memcpy(line, start, l);
		line[l] = '\0';
		char *s = trim(line);
		if (!*s || *s == '#')
			continue;
		if (*s == '[') {
			char *close = strchr(s, ']');
			if (!close) {
				err_set(err, errlen, "%s:%u: section header without ']'", name, lineno);
				goto out;
			}
			*close = '\0';
			char *rest = trim(close + 1);
			if (*rest && *rest != '#') {
				err_set(err, errlen, "%s:%u: text after section header", name, lineno);
				goto out;
			}
			char *sec = trim(s + 1);
			if (*sec && !key_valid(sec, false)) {
				err_set(err, errlen, "%s:%u: malformed section name '%.64s'", name, lineno, sec);
				goto out;
			}
			if (*sec)
				snprintf(prefix, sizeof(prefix), "%s.", sec);
			else
				prefix[0] = '\0';
			continue;
		}
		char *eq = strchr(s, '=');
		if (!eq) {
			err_set(err, errlen, "%s:%u: expected 'key = value'", name, lineno);
			goto out;
		}
		*eq = '\0';
		char *key = trim(s);
		if (!*key) {
			err_set(err, errlen, "%s:%u: missing option name before '='", name, lineno);
			goto out;
		}
		char *value = parse_value(eq + 1, why, sizeof(why));
		if (!value) {
			err_set(err, errlen, "%s:%u: %s", name, lineno, why);
			goto out;
		}
		char full[2 * CONFIG_KEY_MAX + 4];
		if (strlen(prefix) + strlen(key) > CONFIG_KEY_MAX) {
			err_set(err, errlen, "%s:%u: option name too long", name, lineno);
			goto out;
		}
		snprintf(full, sizeof(full), "%s%s", prefix, key);
		const struct config_option *opt;
		if (check_pair(c, full, value, &opt, why, sizeof(why)) < 0) {
			err_set(err, errlen, "%s:%u: %s", name, lineno, why);
			goto out;
		}
		char origin[512];
		snprintf(origin, sizeof(origin), "%s:%u", name, lineno);
		if (plist_push(out, full, value, origin, opt) < 0) {
			err_set(err, errlen, "%s:%u: out of memory", name, lineno);
			goto out;
		}
	}
	rc = 0;
out:
	free(line);
	return rc;
}

int config_load_string(struct config *c, const char *name, const char *text, size_t len,
		       char *err, size_t errlen)
{
	struct plist pend = { 0 };
	int rc = -1;
	if (!c || !text) {
		err_set(err, errlen, "no configuration text");
		return -1;
	}
	if (!name)
		name = "(config)";
	pthread_rwlock_wrlock(&c->lock);
	if (parse_text(c, name, text, len, &pend, err, errlen) < 0)
		goto out;
	if (plist_apply(c, &pend) < 0) {
		err_set(err, errlen, "%s: out of memory while applying", name);
		goto out;
	}
	rc = 0;
out:
	pthread_rwlock_unlock(&c->lock);
	plist_free(&pend);
	return rc;
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
	size_t len = 0;
	if (!path) {
		err_set(err, errlen, "no configuration file given");
		return -1;
	}
	char *text = util_read_file(path, &len);
	if (!text) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	int rc = config_load_string(c, path, text, len, err, errlen);
	free(text);
	if (rc == 0)
		LOG_DEBUG(&log_cfg, "loaded %s", path);
	return rc;
}

/* ---- environment -------------------------------------------------------- */

/* Writes the environment name of the key part 'k' (upper case, '.' and '-'
 * as '_') to 'out'. */
static void env_name(char *out, size_t outlen, const char *k, size_t klen)
{
	size_t j = 0;
	for (size_t i = 0; i < klen && j + 1 < outlen; i++) {
		char ch = k[i];
		out[j++] = (ch == '.' || ch == '-') ? '_' : (char)toupper((unsigned char)ch);
	}
	out[j] = '\0';
}

/* Checks one environment value and queues it. An invalid one is logged;
 * with 'strict' it is also an error (-1, 'err' filled). */
static int env_take(const struct config *c, const char *var, const char *key, const char *value,
		    struct plist *out, bool strict, char *err, size_t errlen)
{
	char why[256], origin[CONFIG_KEY_MAX + 32];
	const struct config_option *opt;
	if (check_pair(c, key, value, &opt, why, sizeof(why)) < 0) {
		LOG_WARN(&log_cfg, "ignoring %s: %s", var, why);
		if (!strict)
			return 0;
		err_set(err, errlen, "%s: %s", var, why);
		return -1;
	}
	snprintf(origin, sizeof(origin), "env %s", var);
	if (plist_push(out, key, value, origin, opt) < 0) {
		err_set(err, errlen, "%s: out of memory", var);
		return -1;
	}
	return 0;
}

/* The option key the environment variable 'name' ('nlen' bytes, without
 * "=value") sets, written into 'full': EDGEREC_REDIS_URL sets redis_url;
 * for a family the wildcard segment is taken as written
 * (EDGEREC_ROOM_lobby_SOURCE sets room.lobby.source). False when it sets
 * none. Caller holds a lock. */
static bool env_key_of(const struct config *c, const char *name, size_t nlen, char *full, size_t fulllen)
{
	if (nlen <= 8 || strncmp(name, "EDGEREC_", 8) != 0)
		return false;
	for (size_t i = 0; i < c->nopts; i++) {
		const char *key = c->opts[i]->key;
		const char *star = strchr(key, '*');
		char pre[CONFIG_KEY_MAX + 16] = "EDGEREC_", suf[CONFIG_KEY_MAX + 8];
		env_name(pre + 8, sizeof(pre) - 8, key, star ? (size_t)(star - key) : strlen(key));
		size_t plen = strlen(pre);
		if (!star) {
			if (plen == nlen && memcmp(pre, name, nlen) == 0) {
				snprintf(full, fulllen, "%s", key);
				return true;
			}
			continue;
		}
		/* A family: EDGEREC_<before>_<segment>_<after>. */
		env_name(suf, sizeof(suf), star + 1, strlen(star + 1));
		size_t slen = strlen(suf);
		if (nlen <= plen + slen || nlen - plen - slen > CONFIG_KEY_MAX || memcmp(name, pre, plen) != 0 ||
		    memcmp(name + nlen - slen, suf, slen) != 0)
			continue;
		snprintf(full, fulllen, "%.*s%.*s%s", (int)(star - key), key, (int)(nlen - plen - slen), name + plen,
			 star + 1);
		if (key_valid(full, false) && key_match(key, full))
			return true;
	}
	return false;
}

/* Collects the EDGEREC_* variables of every registered option into 'out'.
 * Caller holds the lock. */
static int collect_env(const struct config *c, struct plist *out, bool strict, char *err, size_t errlen)
{
	for (char **e = environ; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		char var[CONFIG_KEY_MAX + 16], full[2 * CONFIG_KEY_MAX + 8];
		size_t nlen = eq ? (size_t)(eq - *e) : 0;
		if (!eq || nlen >= sizeof(var) || !env_key_of(c, *e, nlen, full, sizeof(full)))
			continue;
		memcpy(var, *e, nlen);
		var[nlen] = '\0';
		if (env_take(c, var, full, eq + 1, out, strict, err, errlen) < 0)
			return -1;
	}
	return 0;
}

static int apply_env(struct config *c, bool strict, char *err, size_t errlen)
{
	struct plist pend = { 0 };
	int rc = -1;
	pthread_rwlock_wrlock(&c->lock);
	if (collect_env(c, &pend, strict, err, errlen) < 0)
		goto out;
	if (plist_apply(c, &pend) < 0) {
		err_set(err, errlen, "out of memory");
		goto out;
	}
	rc = 0;
out:
	pthread_rwlock_unlock(&c->lock);
	plist_free(&pend);
	return rc;
}

void config_apply_env(struct config *c)
{
	if (c)
		apply_env(c, false, NULL, 0);
}

int config_apply_env_checked(struct config *c, char *err, size_t errlen)
{
	if (!c)
		return -1;
	return apply_env(c, true, err, errlen);
}

/* ---- reload ------------------------------------------------------------------ */

/* The effective value of entry 'key' in an entry array, or the option's
 * default. */
static const char *effective(const struct config *c, const char *key)
{
	long i = entry_search(c, key);
	if (i >= 0)
		return c->entries[i].value;
	const struct config_option *o = opt_find(c, key);
	return o ? o->def : NULL;
}

static bool same_text(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int config_reload_file(struct config *c, const char *path, char *err, size_t errlen)
{
	struct plist file = { 0 }, env = { 0 };
	struct config fresh = { 0 };
	size_t len = 0;
	int rc = -1, changed = 0;
	char *text = NULL;

	if (!c || !path) {
		err_set(err, errlen, "no configuration file given");
		return -1;
	}
	text = util_read_file(path, &len);
	if (!text) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	pthread_rwlock_wrlock(&c->lock);
	if (parse_text(c, path, text, len, &file, err, errlen) < 0 ||
	    collect_env(c, &env, true, err, errlen) < 0)
		goto out;
	/* Build the new set beside the live one: file < environment < set. */
	fresh.opts = c->opts;
	fresh.nopts = c->nopts;
	if (plist_apply(&fresh, &file) < 0 || plist_apply(&fresh, &env) < 0)
		goto oom;
	for (size_t i = 0; i < c->nentries; i++)
		if (strcmp(c->entries[i].origin, "set") == 0 &&
		    entry_store(&fresh, c->entries[i].key, c->entries[i].value, "set", c->entries[i].opt) < 0)
			goto oom;
	/* Count what changes: keys in either set whose effective value differs. */
	for (size_t i = 0; i < c->nentries; i++)
		changed += !same_text(c->entries[i].value, effective(&fresh, c->entries[i].key));
	for (size_t i = 0; i < fresh.nentries; i++)
		if (entry_search(c, fresh.entries[i].key) < 0)
			changed += !same_text(fresh.entries[i].value, effective(c, fresh.entries[i].key));
	/* Swap. Every old string stays valid for readers holding it. */
	if (c->nretired + 3 * c->nentries > c->capretired) {
		size_t cap = c->nretired + 3 * c->nentries + 16;
		char **n = realloc(c->retired, cap * sizeof(*n));
		if (!n)
			goto oom;
		c->retired = n;
		c->capretired = cap;
	}
	for (size_t i = 0; i < c->nentries; i++) {
		retire(c, c->entries[i].key);
		retire(c, c->entries[i].value);
		retire(c, c->entries[i].origin);
	}
	free(c->entries);
	c->entries = fresh.entries;
	c->nentries = fresh.nentries;
	c->capentries = fresh.capentries;
	fresh.entries = NULL;
	fresh.nentries = 0;
	rc = changed;
	LOG_INFO(&log_cfg, "reloaded %s: %d value%s changed", path, changed, changed == 1 ? "" : "s");
	goto out;
oom:
	err_set(err, errlen, "%s: out of memory while reloading", path);
out:
	pthread_rwlock_unlock(&c->lock);
	for (size_t i = 0; i < fresh.nentries; i++) {
		free(fresh.entries[i].key);
		free(fresh.entries[i].value);
		free(fresh.entries[i].origin);
	}
	free(fresh.entries);
	for (size_t i = 0; i < fresh.nretired; i++)
		free(fresh.retired[i]);
	free(fresh.retired);
	plist_free(&file);
	plist_free(&env);
	free(text);
	return rc;
}

int config_set(struct config *c, const char *key, const char *value, char *err, size_t errlen)
{
	const struct config_option *opt;
	int rc = -1;
	if (!c || !key || !value) {
		err_set(err, errlen, "missing option name or value");
		return -1;
	}
	pthread_rwlock_wrlock(&c->lock);
	if (check_pair(c, key, value, &opt, err, errlen) < 0)
		goto out;
	if (entry_store(c, key, value, "set", opt) < 0) {
		err_set(err, errlen, "out of memory");
		goto out;
	}
	rc = 0;
out:
	pthread_rwlock_unlock(&c->lock);
	return rc;
}

/* ---- getters ------------------------------------------------------------ */

/* Finds the value and option of 'key' under the read lock. */
static const char *lookup(const struct config *c, const char *key, const struct config_option **optp,
			  const char **originp)
{
	struct config *m = (struct config *)c;
	const char *v = NULL, *origin = NULL;
	const struct config_option *o = NULL;
	if (!c || !key)
		return NULL;
	pthread_rwlock_rdlock(&m->lock);
	long i = entry_search(c, key);
	if (i >= 0) {
		v = c->entries[i].value;
		origin = c->entries[i].origin;
		o = c->entries[i].opt;
	} else {
		o = opt_find(c, key);
		if (o && o->def) {
			v = o->def;
			origin = "default";
		}
	}
	pthread_rwlock_unlock(&m->lock);
	if (optp)
		*optp = o;
	if (originp)
		*originp = origin;
	return v;
}

const char *config_get_str(const struct config *c, const char *key)
{
	return lookup(c, key, NULL, NULL);
}

long long config_get_int(const struct config *c, const char *key)
{
	const struct config_option *o;
	const char *v = lookup(c, key, &o, NULL);
	long long r = 0;
	bool b;
	double d;
	if (!v)
		return 0;
	switch (o ? o->type : CONFIG_INT) {
	case CONFIG_SIZE:
		if (config_parse_size(v, &r) < 0)
			r = 0;
		break;
	case CONFIG_DURATION:
		if (config_parse_duration(v, &r) < 0)
			r = 0;
		break;
	case CONFIG_BOOL:
		r = config_parse_bool(v, &b) == 0 && b;
		break;
	case CONFIG_DOUBLE:
		r = config_parse_double(v, &d) == 0 && fabs(d) < 9.0e18 ? (long long)d : 0;
		break;
	default:
		if (config_parse_int(v, &r) < 0)
			r = 0;
		break;
	}
	return r;
}

bool config_get_bool(const struct config *c, const char *key)
{
	bool b = false;
	const char *v = lookup(c, key, NULL, NULL);
	if (!v || config_parse_bool(v, &b) < 0)
		return false;
	return b;
}

double config_get_double(const struct config *c, const char *key)
{
	const struct config_option *o;
	const char *v = lookup(c, key, &o, NULL);
	double d = 0;
	if (!v)
		return 0;
	if (o && o->type == CONFIG_DURATION) {
		long long ms;
		return config_parse_duration(v, &ms) == 0 ? (double)ms / 1000.0 : 0;
	}
	if (o && o->type == CONFIG_SIZE) {
		long long b;
		return config_parse_size(v, &b) == 0 ? (double)b : 0;
	}
	return config_parse_double(v, &d) == 0 ? d : 0;
}

bool config_is_set(const struct config *c, const char *key)
{
	struct config *m = (struct config *)c;
	if (!c || !key)
		return false;
	pthread_rwlock_rdlock(&m->lock);
	bool set = entry_search(c, key) >= 0;
	pthread_rwlock_unlock(&m->lock);
	return set;
}

unsigned config_flags(const struct config *c, const char *key)
{
	const struct config_option *o = NULL;
	lookup(c, key, &o, NULL);
	return o ? o->flags : 0;
}

const char *config_origin(const struct config *c, const char *key)
{
	const char *origin = NULL;
	lookup(c, key, NULL, &origin);
	return origin;
}

struct kv {
	const char *key, *value;
};

static int kv_cmp(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->key, ((const struct kv *)b)->key);
}

void config_foreach(const struct config *c, const char *prefix,
		    void (*cb)(void *opaque, const char *key, const char *value), void *opaque)
{
	struct config *m = (struct config *)c;
	if (!c || !cb)
		return;
	if (!prefix)
		prefix = "";
	size_t plen = strlen(prefix), n = 0;
	pthread_rwlock_rdlock(&m->lock);
	struct kv *all = malloc((c->nentries + c->nopts + 1) * sizeof(*all));
	if (all) {
		for (size_t i = 0; i < c->nentries; i++)
			if (strncmp(c->entries[i].key, prefix, plen) == 0)
				all[n++] = (struct kv){ c->entries[i].key, c->entries[i].value };
		for (size_t i = 0; i < c->nopts; i++) {
			const struct config_option *o = c->opts[i];
			if (!o->def || strchr(o->key, '*') || strncmp(o->key, prefix, plen) != 0 ||
			    entry_search(c, o->key) >= 0)
				continue;
			all[n++] = (struct kv){ o->key, o->def };
		}
	}
	pthread_rwlock_unlock(&m->lock);
	if (!all) {
		LOG_ERROR(&log_cfg, "out of memory listing options");
		return;
	}
	qsort(all, n, sizeof(*all), kv_cmp);
	for (size_t i = 0; i < n; i++)
		cb(opaque, all[i].key, all[i].value);
	free(all);
}

/* Writes 'value' with the password of a URL's user part ("scheme://user:pw@")
 * as "***" into 'out'; false when there is none. */
static bool redact_url(const char *value, char *out, size_t outlen)
{
	const char *scheme = strstr(value, "://");
	if (!scheme)
		return false;
	const char *user = scheme + 3;
	size_t authority = strcspn(user, "/?#");
	const char *at = memchr(user, '@', authority);
	const char *colon = at ? memchr(user, ':', (size_t)(at - user)) : NULL;
	if (!colon || colon + 1 == at)
		return false;
	snprintf(out, outlen, "%.*s***%s", (int)(colon + 1 - value), value, at);
	return true;
}

/* The display text of 'value' for option 'o' (may be NULL). */
static const char *display(const struct config_option *o, const char *value, char *out, size_t outlen)
{
	if (!value)
		return NULL;
	if (o && (o->flags & CONFIG_SECRET) && *value) {
		snprintf(out, outlen, "(redacted)");
		return out;
	}
	if (redact_url(value, out, outlen))
		return out;
	snprintf(out, outlen, "%s", value);
	return out;
}

const char *config_display_value(const struct config *c, const char *key, const char *value, char *out,
				 size_t outlen)
{
	struct config *m = (struct config *)c;
	const struct config_option *o = NULL;
	if (c && key) {
		pthread_rwlock_rdlock(&m->lock);
		o = opt_find(c, key);
		pthread_rwlock_unlock(&m->lock);
	}
	if (!value) {
		snprintf(out, outlen, "(unset)");
		return out;
	}
	return display(o, value, out, outlen);
}

void config_dump(const struct config *c, void *out)
{
	FILE *f = out;
	char shown[CONFIG_VALUE_MAX + 16];
	if (!c || !f)
		return;
	struct config *m = (struct config *)c;
	pthread_rwlock_rdlock(&m->lock);
	for (size_t i = 0; i < c->nopts; i++) {
		const struct config_option *o = c->opts[i];
		long e = strchr(o->key, '*') ? -1 : entry_search(c, o->key);
		const char *v = display(o, e >= 0 ? c->entries[e].value : o->def, shown, sizeof(shown));
		fprintf(f, "%-28s %-8s = %-24s (%s)  %s\n", o->key, type_name(o->type),
			v ? v : "(unset)", e >= 0 ? c->entries[e].origin : "default",
			o->help ? o->help : "");
	}
	for (size_t i = 0; i < c->nentries; i++) {
		const struct config_entry *e = &c->entries[i];
		if (e->opt && !strchr(e->opt->key, '*'))
			continue;
		fprintf(f, "%-28s %-8s = %-24s (%s)\n", e->key, e->opt ? type_name(e->opt->type) : "unknown",
			display(e->opt, e->value, shown, sizeof(shown)), e->origin);
	}
	pthread_rwlock_unlock(&m->lock);
}

/* ---- unknown environment variables ----------------------------------------- */

int config_unknown_env(const struct config *c, const char *const *ignore, char *out, size_t outlen)
{
	struct config *m = (struct config *)c;
	int count = 0;
	size_t used = 0;
	if (outlen)
		out[0] = '\0';
	if (!c)
		return 0;
	pthread_rwlock_rdlock(&m->lock);
	for (char **e = environ; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		if (!eq || strncmp(*e, "EDGEREC_", 8) != 0)
			continue;
		size_t nlen = (size_t)(eq - *e);
		char full[2 * CONFIG_KEY_MAX + 8];
		bool skip = env_key_of(c, *e, nlen, full, sizeof(full));
		for (const char *const *ig = ignore; ig && *ig && !skip; ig++)
			skip = strlen(*ig) == nlen && memcmp(*ig, *e, nlen) == 0;
		if (skip)
			continue;
		count++;
		if (outlen && used < outlen)
			used += (size_t)snprintf(out + used, outlen - used, "%s%.*s", used ? ", " : "", (int)nlen, *e);
	}
	pthread_rwlock_unlock(&m->lock);
	return count;
}

/* ---- what a reload changed --------------------------------------------------- */

struct config_snapshot {
	struct kv *v;
	size_t n;
};

static void snap_add(void *opaque, const char *key, const char *value)
{
	struct config_snapshot *s = opaque;
	if (!s->v)
		return;
	char *k = strdup(key), *val = strdup(value);
	struct kv *nv = realloc(s->v, (s->n + 1) * sizeof(*nv));
	if (!k || !val || !nv) {
		free(k);
		free(val);
		if (nv)
			s->v = nv;
		return;
	}
	s->v = nv;
	s->v[s->n++] = (struct kv){ k, val };
}

struct config_snapshot *config_snapshot(const struct config *c)
{
	struct config_snapshot *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->v = malloc(sizeof(*s->v));
	if (!s->v) {
		free(s);
		return NULL;
	}
	config_foreach(c, "", snap_add, s);
	return s;
}

void config_snapshot_free(struct config_snapshot *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free((char *)s->v[i].key);
		free((char *)s->v[i].value);
	}
	free(s->v);
	free(s);
}

void config_diff(const struct config *c, const struct config_snapshot *before,
		 void (*cb)(void *opaque, const char *key, const char *old_value, const char *new_value),
		 void *opaque)
{
	struct config_snapshot *now = config_snapshot(c);
	char a[CONFIG_VALUE_MAX + 16], b[CONFIG_VALUE_MAX + 16];
	if (!now || !before || !cb) {
		config_snapshot_free(now);
		return;
	}
	/* Both are sorted by key (config_foreach): walk them side by side. */
	size_t i = 0, j = 0;
	while (i < before->n || j < now->n) {
		int r = i >= before->n ? 1 : j >= now->n ? -1 : strcmp(before->v[i].key, now->v[j].key);
		const char *key = r <= 0 ? before->v[i].key : now->v[j].key;
		const char *old_v = r <= 0 ? before->v[i].value : NULL;
		const char *new_v = r >= 0 ? now->v[j].value : NULL;
		if (!same_text(old_v, new_v))
			cb(opaque, key, old_v ? config_display_value(c, key, old_v, a, sizeof(a)) : NULL,
			   new_v ? config_display_value(c, key, new_v, b, sizeof(b)) : NULL);
		i += r <= 0;
		j += r >= 0;
	}
	config_snapshot_free(now);
}
