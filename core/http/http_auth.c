/* http_auth: bearer tokens: where a request carries one, and the 401 reply
 * naming what is wrong with it. Verification itself is crypto_jwt_verify. */
#include "http_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <civetweb.h>

#include "common_time.h"
#include "crypto.h"
#include "crypto_jwt.h"
#include "recorder.h"

/* The machine code of a verification failure, for the 401 body. */
static const char *http_auth_code(int rc)
{
	switch (rc) {
	case CRYPTO_JWT_EMALFORMED: return "malformed_token";
	case CRYPTO_JWT_EALG: return "invalid_algorithm";
	case CRYPTO_JWT_ESIGNATURE: return "invalid_signature";
	case CRYPTO_JWT_EEXPIRED: return "token_expired";
	case CRYPTO_JWT_ENOTYET: return "token_not_yet_valid";
	case CRYPTO_JWT_ECLAIMS: return "invalid_claims";
	case CRYPTO_JWT_ENOKEY: return "auth_not_configured";
	default: return "invalid_token";
	}
}

/* True when the (already verified) token's payload holds an escaped NUL. */
static bool http_auth_payload_has_nul(const char *token)
{
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	size_t len = 0;
	bool found = false;
	if (!dot2)
		return false;
	char *payload = crypto_base64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &len);
	if (!payload)
		return false;
	for (size_t i = 0; i + 6 <= len && !found; i++)
		found = memcmp(payload + i, "\\u0000", 6) == 0;
	free(payload);
	return found;
}

static int http_auth_refuse(struct http_request *req, const char *code, const char *detail)
{
	char body[640];
	char challenge[128];
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;
	atomic_fetch_add(&req->s->metrics->auth_failures, 1);
	if (o && cJSON_AddStringToObject(o, "detail", detail) && cJSON_AddStringToObject(o, "code", code))
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	snprintf(body, sizeof(body), "%s", text ? text : "{\"detail\":\"unauthorized\",\"code\":\"unauthorized\"}");
	cJSON_free(text);
	snprintf(challenge, sizeof(challenge), "Bearer realm=\"edgerec\", error=\"invalid_token\"");
	http_reply(req, 401, "application/json", body, strlen(body), "WWW-Authenticate", challenge);
	return -1;
}

int http_auth_check(struct http_request *req, bool allow_query, cJSON **claims)
{
	const struct mg_request_info *ri = mg_get_request_info(req->conn);
	const char *header = mg_get_header(req->conn, "Authorization");
	char detail[300];
	char *query_token = NULL;
	const char *token = NULL;
	int rc;

	*claims = NULL;
	/* No Authorization header: a console session's cookie, when there is
	 * one, decides (http_session.c); bearer clients never reach it. */
	if (!header && (rc = http_session_auth(req, claims)) <= 0)
		return rc;
	if (header) {
		while (*header == ' ')
			header++;
		if (strncasecmp(header, "Bearer ", 7) != 0)
			return http_auth_refuse(req, "invalid_token",
						"Authorization must be 'Bearer <token>'");
		token = header + 7;
		while (*token == ' ')
			token++;
	} else if (allow_query && ri->query_string) {
		size_t qlen = strlen(ri->query_string);
		query_token = malloc(CRYPTO_JWT_MAX_LEN + 2);
		if (!query_token)
			return http_auth_refuse(req, "invalid_token", "out of memory");
		int n = mg_get_var2(ri->query_string, qlen, "access_token", query_token,
				    CRYPTO_JWT_MAX_LEN + 2, 0);
		if (n == -2 || n > CRYPTO_JWT_MAX_LEN) {
			free(query_token);
			return http_auth_refuse(req, "malformed_token", "token too long");
		}
		if (n >= 0)
			token = query_token;
	}
	if (!token || !*token) {
		free(query_token);
		return http_auth_refuse(req, "missing_token",
					allow_query ? "a bearer token is required (Authorization header or access_token)"
						    : "a bearer token is required (Authorization: Bearer <token>)");
	}
	rc = crypto_jwt_verify(req->s->keys, token, time_wall_ns() / 1000000000LL, req->s->jwt_leeway_s,
			       claims, detail, sizeof(detail));
	if (rc != 0) {
		free(query_token);
		*claims = NULL;
		return http_auth_refuse(req, http_auth_code(rc), detail);
	}
	/* The user id ends up in Redis keys, file metadata and logs: a short
	 * printable name only. */
	const cJSON *sub = cJSON_GetObjectItemCaseSensitive(*claims, "sub");
	size_t n = cJSON_IsString(sub) ? strlen(sub->valuestring) : 0;
	bool plain = n > 0 && n <= HTTP_USER_ID_MAX;
	for (size_t i = 0; plain && i < n; i++)
		plain = (unsigned char)sub->valuestring[i] >= 0x20 && sub->valuestring[i] != 0x7f;
	/* cJSON ends a string at an escaped NUL, so "ali\u0000ce" would read
	 * as "ali": a payload carrying one is refused outright. */
	if (plain && http_auth_payload_has_nul(token))
		plain = false;
	free(query_token); /* 'token' may point into it: not used below */
	if (!plain) {
		cJSON_Delete(*claims);
		*claims = NULL;
		return http_auth_refuse(req, "invalid_claims",
					"sub must be 1 to 128 bytes without control characters");
	}
	memcpy(req->user, sub->valuestring, n + 1);
	return 0;
}

int http_admin_check(struct http_request *req, bool allow_query)
{
	cJSON *claims = NULL;
	if (http_auth_check(req, allow_query, &claims) < 0)
		return -1;
	const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
	struct recorder_caller caller = {
		.user_id = cJSON_IsString(sub) ? sub->valuestring : "",
		.claims = claims,
	};
	/* auth.lua's "admin" action decides (built in: the admin role). */
	struct recorder_verdict v = { .allow = false, .status = 403, .reason = "the admin role is required" };
	if (req->s->rec)
		recorder_authorize(req->s->rec, &caller, RECORDER_OP_ADMIN, NULL, &v);
	cJSON_Delete(claims);
	if (v.allow)
		return 0;
	http_reply_error(req, v.status == 404 ? 404 : 403, v.status == 404 ? "not_found" : "forbidden", "%s",
			 v.reason[0] ? v.reason : "the admin role is required");
	return -1;
}
