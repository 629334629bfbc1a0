/* storage_sigv4: AWS Signature Version 4, in the Authorization header and as
 * a presigned query string.
 *
 * Provides the canonical request, the string to sign and the signature as
 * AWS documents them ("Create a canonical request", S3 "Signature
 * Calculations for the Authorization Header" and "... Query String
 * Parameters"). Uses crypto for SHA-256/HMAC and hex. Pure functions over
 * caller memory: any thread may call them. */
#ifndef EDGEREC_STORAGE_SIGV4_H
#define EDGEREC_STORAGE_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORAGE_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define STORAGE_SIGV4_UNSIGNED "UNSIGNED-PAYLOAD"

struct storage_sigv4_header {
	const char *name;   /* any case; signed in lower case */
	const char *value;  /* trimmed, inner runs of blanks folded, when signed */
};

/* One request to sign. 'path' is the URI path as sent on the wire
 * (percent-encoded, starting with '/'); 'query' the raw query string without
 * '?' (may be NULL or ""). Every header in 'headers' is signed; it must
 * include "host" (and "x-amz-date" for header signing when not using
 * 'amz_date' below, which is added by the signer). 'payload_sha256' is the
 * hex SHA-256 of the body or STORAGE_SIGV4_UNSIGNED. */
struct storage_sigv4_request {
	const char *method;
	const char *path;
	const char *query;
	const struct storage_sigv4_header *headers;
	size_t nheaders;
	const char *payload_sha256;
};

struct storage_sigv4_key {
	const char *access_key;
	const char *secret_key;
	const char *session_token; /* NULL unless temporary credentials */
	const char *region;
	const char *service;       /* "s3" */
	/* S3 signs the path as sent; other services normalise it ("a/../b")
	 * and encode it twice. */
	bool s3_path_rules;
};

/* Formats 'unix_s' as "YYYYMMDDTHHMMSSZ" (16 chars + NUL). */
void storage_sigv4_amz_date(int64_t unix_s, char out[17]);

/* Percent-encodes 'in' as SigV4 requires (A-Z a-z 0-9 - . _ ~ kept,
 * everything else %XX upper case; '/' kept when 'keep_slash'). Returns a
 * malloc'd string or NULL. */
char *storage_sigv4_uri_encode(const char *in, size_t len, bool keep_slash);

/* Builds the canonical request for 'req' (headers as given, query sorted).
 * Returns a malloc'd string, NULL on malformed input (a query with bad %
 * escapes, no headers). 'signed_headers' (may be NULL) receives a malloc'd
 * "host;x-amz-date" list. */
char *storage_sigv4_canonical_request(const struct storage_sigv4_request *req,
				      const struct storage_sigv4_key *key, char **signed_headers);

/* Signs 'req' at 'amz_date' ("20150830T123600Z"). The headers must already
 * hold x-amz-date (and x-amz-security-token with a session token) when
 * they are meant to be signed. Writes the full Authorization header value
 * ("AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...") into
 * 'out'. 'signature_out' (may be NULL, 65 bytes) gets the bare signature.
 * Returns 0 or -1. */
int storage_sigv4_authorization(const struct storage_sigv4_request *req,
				const struct storage_sigv4_key *key, const char *amz_date,
				char *out, size_t outlen, char signature_out[65]);

/* Presigns 'req' for 'expires_s' seconds: returns a malloc'd query string
 * holding the request's own query parameters plus X-Amz-Algorithm,
 * X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders (and
 * X-Amz-Security-Token), sorted, then X-Amz-Signature last. The payload of a
 * presigned request is unsigned unless req->payload_sha256 says otherwise.
 * NULL on bad input. */
char *storage_sigv4_presign_query(const struct storage_sigv4_request *req,
				  const struct storage_sigv4_key *key, const char *amz_date,
				  int64_t expires_s);

#endif
