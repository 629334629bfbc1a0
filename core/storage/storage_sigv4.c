/* storage_sigv4: AWS Signature Version 4 canonical requests and signatures. */
#include "storage_sigv4.h"

#include "crypto.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A growing string; 'failed' latches the first allocation failure so the
 * callers check once at the end. */
struct sv_str {
	char *s;
	size_t len, cap;
	bool failed;
};

static void sv_putn(struct sv_str *b, const char *p, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *s = realloc(b->s, cap);
		if (!s) {
			b->failed = true;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void sv_puts(struct sv_str *b, const char *p)
{
	sv_putn(b, p, strlen(p));
}

/* Returns the built string (caller frees) or NULL if anything failed. */
static char *sv_take(struct sv_str *b)
{
	if (b->failed || !b->s) {
		free(b->s);
		if (!b->failed)
			return strdup("");
		return NULL;
	}
	return b->s;
}

static bool sv_unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static void sv_encode_into(struct sv_str *b, const char *in, size_t len, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (sv_unreserved(c) || (keep_slash && c == '/')) {
			sv_putn(b, (const char *)&in[i], 1);
		} else {
			char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
			sv_putn(b, esc, 3);
		}
	}
}

char *storage_sigv4_uri_encode(const char *in, size_t len, bool keep_slash)
{
	struct sv_str b = { 0 };
	sv_encode_into(&b, in, len, keep_slash);
	return sv_take(&b);
}

static int sv_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes 'len' bytes of 'in' into a new string. '+' stays '+' (a
 * query string on the wire to S3 means a literal plus only when encoded as
 * %2B, and a space is %20). Returns NULL on a broken escape. */
static char *sv_decode(const char *in, size_t len, size_t *outlen)
{
	char *out = malloc(len + 1);
	size_t o = 0;
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '%') {
			int h, l;
			if (i + 2 >= len || (h = sv_hexval(in[i + 1])) < 0 ||
			    (l = sv_hexval(in[i + 2])) < 0) {
				free(out);
				return NULL;
			}
			out[o++] = (char)(h * 16 + l);
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
	if (outlen)
		*outlen = o;
	return out;
}

void storage_sigv4_amz_date(int64_t unix_s, char out[17])
{
	time_t t = (time_t)unix_s;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* The canonical URI. For S3 the path is decoded and encoded once again (so
 * any equivalent wire form signs the same, and the usual strict form signs
 * as sent). Other services first remove "." and ".." segments and empty
 * segments, then encode the wire form a second time. */
static int sv_canonical_uri(struct sv_str *b, const char *path, bool s3)
{
	if (!path || !*path)
		path = "/";
	if (s3) {
		size_t dlen;
		char *dec = sv_decode(path, strlen(path), &dlen);
		if (!dec)
			return -1;
		if (dec[0] != '/')
			sv_puts(b, "/");
		sv_encode_into(b, dec, dlen, true);
		free(dec);
		return 0;
	}
	/* Normalise the segments. */
	size_t n = strlen(path);
	const char **seg = calloc(n + 1, sizeof(*seg));
	size_t *seglen = calloc(n + 1, sizeof(*seglen));
	size_t nseg = 0;
	if (!seg || !seglen) {
		free(seg);
		free(seglen);
		return -1;
	}
	const char *p = path;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchr(p, '/');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == 1 && p[0] == '.') {
			/* skip */
		} else if (l == 2 && p[0] == '.' && p[1] == '.') {
			if (nseg)
				nseg--;
		} else {
			seg[nseg] = p;
			seglen[nseg++] = l;
		}
		p += l;
	}
	bool trailing = n > 1 && path[n - 1] == '/' && nseg > 0;
	struct sv_str norm = { 0 };
	for (size_t i = 0; i < nseg; i++) {
		sv_puts(&norm, "/");
		sv_putn(&norm, seg[i], seglen[i]);
	}
	if (nseg == 0 || trailing)
		sv_puts(&norm, "/");
	free(seg);
	free(seglen);
	char *ns = sv_take(&norm);
	if (!ns)
		return -1;
	sv_encode_into(b, ns, strlen(ns), true);
	free(ns);
	return 0;
}

struct sv_pair {
	char *k, *v; /* encoded */
};

static int sv_pair_cmp(const void *a, const void *b)
{
	const struct sv_pair *x = a, *y = b;
	int c = strcmp(x->k, y->k);
	return c ? c : strcmp(x->v, y->v);
}

static void sv_pairs_free(struct sv_pair *pairs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(pairs[i].k);
		free(pairs[i].v);
	}
	free(pairs);
}

/* Parses 'query' (and optional extra already-decoded pairs) into sorted,
 * strictly encoded pairs. */
static int sv_query_pairs(const char *query, const char *const *extra, size_t nextra,
			  struct sv_pair **out, size_t *nout)
{
	size_t cap = nextra + 1, n = 0;
	if (query)
		for (const char *q = query; *q; q++)
			cap += *q == '&';
	struct sv_pair *pairs = calloc(cap, sizeof(*pairs));
	if (!pairs)
		return -1;
	const char *p = query ? query : "";
	while (*p) {
		const char *e = strchr(p, '&');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l > 0) {
			const char *eq = memchr(p, '=', l);
			size_t kl = eq ? (size_t)(eq - p) : l;
			size_t dk, dv;
			char *k = sv_decode(p, kl, &dk);
			char *v = eq ? sv_decode(eq + 1, l - kl - 1, &dv) : strdup("");
			if (!eq)
				dv = 0;
			if (!k || !v) {
				free(k);
				free(v);
				goto fail;
			}
			pairs[n].k = storage_sigv4_uri_encode(k, dk, false);
			pairs[n].v = storage_sigv4_uri_encode(v, dv, false);
			free(k);
			free(v);
			if (!pairs[n].k || !pairs[n].v) {
				n++;
				goto fail;
			}
			n++;
		}
		p += l;
		if (*p == '&')
			p++;
	}
	for (size_t i = 0; i + 1 < nextra * 2; i += 2) {
		pairs[n].k = storage_sigv4_uri_encode(extra[i], strlen(extra[i]), false);
		pairs[n].v = storage_sigv4_uri_encode(extra[i + 1], strlen(extra[i + 1]), false);
		n++;
		if (!pairs[n - 1].k || !pairs[n - 1].v)
			goto fail;
	}
	qsort(pairs, n, sizeof(*pairs), sv_pair_cmp);
	*out = pairs;
	*nout = n;
	return 0;
fail:
	sv_pairs_free(pairs, n);
	return -1;
}

static void sv_query_string(struct sv_str *b, const struct sv_pair *pairs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			sv_puts(b, "&");
		sv_puts(b, pairs[i].k);
		sv_puts(b, "=");
		sv_puts(b, pairs[i].v);
	}
}

struct sv_hdr {
	char *name;          /* lower case */
	const char *value;   /* as given */
	size_t order;
};

static int sv_hdr_cmp(const void *a, const void *b)
{
	const struct sv_hdr *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Appends 'v' trimmed, with inner runs of blanks folded to one space. */
static void sv_header_value(struct sv_str *b, const char *v)
{
	while (*v == ' ' || *v == '\t')
		v++;
	bool blank = false;
	for (; *v; v++) {
		if (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r') {
			blank = true;
			continue;
		}
		if (blank)
			sv_puts(b, " ");
		blank = false;
		sv_putn(b, v, 1);
	}
}

/* Canonical headers and the signed header list from 'headers' plus the
 * optional extra pair (name, value), sorted by name. */
static int sv_headers(const struct storage_sigv4_header *headers, size_t n,
		      struct sv_str *canon, struct sv_str *names)
{
	struct sv_hdr *h = calloc(n ? n : 1, sizeof(*h));
	if (!h)
		return -1;
	int rc = -1;
	for (size_t i = 0; i < n; i++) {
		if (!headers[i].name || !headers[i].value || !headers[i].name[0])
			goto done;
		h[i].name = strdup(headers[i].name);
		if (!h[i].name)
			goto done;
		for (char *c = h[i].name; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		h[i].value = headers[i].value;
		h[i].order = i;
	}
	qsort(h, n, sizeof(*h), sv_hdr_cmp);
	for (size_t i = 0; i < n; i++) {
		bool same = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
		if (same) {
			sv_puts(canon, ",");
		} else {
			if (i > 0) {
				sv_puts(canon, "\n");
				sv_puts(names, ";");
			}
			sv_puts(canon, h[i].name);
			sv_puts(canon, ":");
			sv_puts(names, h[i].name);
		}
		sv_header_value(canon, h[i].value);
	}
	if (n)
		sv_puts(canon, "\n");
	rc = 0;
done:
	for (size_t i = 0; i < n; i++)
		free(h[i].name);
	free(h);
	return rc;
}

/* The canonical request with the query given as sorted pairs. */
static char *sv_canonical(const struct storage_sigv4_request *req, const struct storage_sigv4_key *key,
			  const struct sv_pair *pairs, size_t npairs, char **signed_headers)
{
	struct sv_str b = { 0 }, canon = { 0 }, names = { 0 };
	if (!req->method || !req->headers || req->nheaders == 0)
		return NULL;
	sv_puts(&b, req->method);
	sv_puts(&b, "\n");
	if (sv_canonical_uri(&b, req->path, key->s3_path_rules) < 0)
		goto fail;
	sv_puts(&b, "\n");
	sv_query_string(&b, pairs, npairs);
	sv_puts(&b, "\n");
	if (sv_headers(req->headers, req->nheaders, &canon, &names) < 0)
		goto fail;
	if (canon.failed || names.failed)
		goto fail;
	sv_puts(&b, canon.s);
	sv_puts(&b, "\n");
	sv_puts(&b, names.s);
	sv_puts(&b, "\n");
	sv_puts(&b, req->payload_sha256 ? req->payload_sha256 : STORAGE_SIGV4_EMPTY_SHA256);
	free(canon.s);
	if (signed_headers)
		*signed_headers = names.s;
	else
		free(names.s);
	return sv_take(&b);
fail:
	free(b.s);
	free(canon.s);
	free(names.s);
	return NULL;
}

char *storage_sigv4_canonical_request(const struct storage_sigv4_request *req,
				      const struct storage_sigv4_key *key, char **signed_headers)
{
	struct sv_pair *pairs;
	size_t n;
	if (sv_query_pairs(req->query, NULL, 0, &pairs, &n) < 0)
		return NULL;
	char *c = sv_canonical(req, key, pairs, n, signed_headers);
	sv_pairs_free(pairs, n);
	return c;
}

/* Signature over a canonical request: string to sign, derived key, HMAC. */
static int sv_signature(const char *canonical, const struct storage_sigv4_key *key,
			const char *amz_date, char sig_hex[65])
{
	uint8_t digest[32], k[32];
	char digest_hex[65];
	char date[9];
	memcpy(date, amz_date, 8);
	date[8] = '\0';

	crypto_sha256(canonical, strlen(canonical), digest);
	crypto_hex(digest, 32, digest_hex);
	char *sts = NULL;
	if (asprintf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amz_date, date,
		     key->region, key->service, digest_hex) < 0)
		return -1;

	char *secret = NULL;
	if (asprintf(&secret, "AWS4%s", key->secret_key) < 0) {
		free(sts);
		return -1;
	}
	crypto_hmac_sha256(secret, strlen(secret), date, strlen(date), k);
	crypto_hmac_sha256(k, 32, key->region, strlen(key->region), k);
	crypto_hmac_sha256(k, 32, key->service, strlen(key->service), k);
	crypto_hmac_sha256(k, 32, "aws4_request", 12, k);
	crypto_hmac_sha256(k, 32, sts, strlen(sts), digest);
	crypto_hex(digest, 32, sig_hex);
	memset(secret, 0, strlen(secret));
	memset(k, 0, sizeof(k));
	free(secret);
	free(sts);
	return 0;
}

static bool sv_key_ok(const struct storage_sigv4_key *key, const char *amz_date)
{
	return key && key->access_key && key->secret_key && key->region && key->service &&
	       amz_date && strlen(amz_date) == 16 && amz_date[8] == 'T';
}

int storage_sigv4_authorization(const struct storage_sigv4_request *req,
				const struct storage_sigv4_key *key, const char *amz_date,
				char *out, size_t outlen, char signature_out[65])
{
	char sig[65];
	char *names = NULL;
	if (!sv_key_ok(key, amz_date))
		return -1;
	char *canon = storage_sigv4_canonical_request(req, key, &names);
	if (!canon)
		return -1;
	int rc = sv_signature(canon, key, amz_date, sig);
	if (rc == 0) {
		int n = snprintf(out, outlen,
				 "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request, "
				 "SignedHeaders=%s, Signature=%s",
				 key->access_key, amz_date, key->region, key->service, names, sig);
		if (n < 0 || (size_t)n >= outlen)
			rc = -1;
		if (signature_out)
			memcpy(signature_out, sig, 65);
	}
	free(canon);
	free(names);
	return rc;
}

char *storage_sigv4_presign_query(const struct storage_sigv4_request *req,
				  const struct storage_sigv4_key *key, const char *amz_date,
				  int64_t expires_s)
{
	char credential[512], expires[24], sig[65];
	struct sv_pair *pairs = NULL;
	size_t n = 0;
	char *names = NULL, *canon = NULL, *result = NULL;
	struct sv_str sh = { 0 }, ignore = { 0 };

	if (!sv_key_ok(key, amz_date) || expires_s <= 0)
		return NULL;
	if (sv_headers(req->headers, req->nheaders, &ignore, &sh) < 0 || sh.failed || !sh.s)
		goto done;
	snprintf(credential, sizeof(credential), "%s/%.8s/%s/%s/aws4_request", key->access_key,
		 amz_date, key->region, key->service);
	snprintf(expires, sizeof(expires), "%lld", (long long)expires_s);
	const char *extra[12] = {
		"X-Amz-Algorithm", "AWS4-HMAC-SHA256",
		"X-Amz-Credential", credential,
		"X-Amz-Date", amz_date,
		"X-Amz-Expires", expires,
		"X-Amz-SignedHeaders", sh.s,
		"X-Amz-Security-Token", key->session_token,
	};
	if (sv_query_pairs(req->query, extra, key->session_token ? 6 : 5, &pairs, &n) < 0)
		goto done;
	struct storage_sigv4_request r = *req;
	if (!r.payload_sha256)
		r.payload_sha256 = STORAGE_SIGV4_UNSIGNED;
	canon = sv_canonical(&r, key, pairs, n, &names);
	if (!canon || sv_signature(canon, key, amz_date, sig) < 0)
		goto done;
	struct sv_str q = { 0 };
	sv_query_string(&q, pairs, n);
	sv_puts(&q, n ? "&X-Amz-Signature=" : "X-Amz-Signature=");
	sv_puts(&q, sig);
	result = sv_take(&q);
done:
	sv_pairs_free(pairs, n);
	free(names);
	free(canon);
	free(sh.s);
	free(ignore.s);
	return result;
}
