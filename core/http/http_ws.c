/* http_ws: the WebSocket hub. A client subscribes to one room with
 * GET /api/webrtc/ws?room_id=R (bearer token in the Authorization header or
 * the access_token parameter); every room event of SPEC §7, from any node,
 * reaches the room's subscribers as one text frame.
 *
 * Events arrive on the state subscriber thread and are queued (bounded: a
 * full queue drops and counts); the hub thread writes each one to the
 * room's subscribers under the hub lock. A connection's close handler takes
 * the same lock to unlink itself, so no write ever targets a connection
 * civetweb has freed. */
#include "http_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "common_queue.h"
#include "common_time.h"
#include "common_util.h"
#include "recorder.h"

#define HTTP_HUB_QUEUE 1024
#define HTTP_WS_PATH "/api/webrtc/ws"

struct http_sub {
	struct mg_connection *conn;
	char room_id[HTTP_ID_MAX + 1];
	char user_id[128];
	char request_id[HTTP_REQUEST_ID_LEN];
	bool linked;
	struct http_sub *next;
};

struct http_hub_event {
	char room_id[HTTP_ID_MAX + 1];
	size_t len;
	char text[]; /* NUL-terminated */
};

struct http_hub {
	struct http_server *s;
	pthread_mutex_t lock;
	struct http_sub *subs;    /* linked (ready) subscribers */
	int reserved;             /* accepted connections, ready or not */
	struct queue *q;
	pthread_t thread;
	bool thread_started;
};

/* Accepts or refuses an upgrade before the handshake: room id, token, the
 * subscriber limit. A refusal is a normal JSON reply; returns 1 then. */
static int http_ws_connect(const struct mg_connection *cconn, void *cbdata)
{
	struct http_hub *hub = cbdata;
	struct mg_connection *conn = (struct mg_connection *)cconn;
	const struct mg_request_info *ri = mg_get_request_info(conn);
	struct http_request req;
	char room[HTTP_ID_MAX + 2] = "";
	cJSON *claims = NULL;
	struct http_sub *sub = NULL;

	http_request_begin(hub->s, conn, &req);
	req.route = HTTP_ROUTE_WS;
	int n = ri->query_string ? mg_get_var2(ri->query_string, strlen(ri->query_string), "room_id",
					       room, sizeof(room), 0)
				 : -1;
	if (n == -1 || room[0] == '\0') {
		http_reply_error(&req, 400, "invalid_room_id", "room_id query parameter is required");
		goto refuse;
	}
	if (n < 0 || (size_t)n != strlen(room) || !recorder_room_id_valid(room)) {
		http_reply_error(&req, 400, "invalid_room_id",
				 "room ids are 1 to 128 characters of A-Z a-z 0-9 . _ -");
		goto refuse;
	}
	if (http_auth_check(&req, true, &claims) < 0)
		goto refuse;

	pthread_mutex_lock(&hub->lock);
	bool full = hub->reserved >= hub->s->ws_max;
	if (!full)
		hub->reserved++;
	pthread_mutex_unlock(&hub->lock);
	if (full) {
		http_reply_error(&req, 503, "too_many_subscribers",
				 "the WebSocket subscriber limit (%d) is reached", hub->s->ws_max);
		goto refuse;
	}
	sub = calloc(1, sizeof(*sub));
	if (!sub) {
		pthread_mutex_lock(&hub->lock);
		hub->reserved--;
		pthread_mutex_unlock(&hub->lock);
		http_reply_error(&req, 500, "internal", "out of memory");
		goto refuse;
	}
	sub->conn = conn;
	util_strlcpy(sub->room_id, room, sizeof(sub->room_id));
	const cJSON *subj = cJSON_GetObjectItemCaseSensitive(claims, "sub");
	util_strlcpy(sub->user_id, cJSON_IsString(subj) ? subj->valuestring : "", sizeof(sub->user_id));
	util_strlcpy(sub->request_id, req.id, sizeof(sub->request_id));
	mg_set_user_connection_data(conn, sub);
	cJSON_Delete(claims);
	http_metrics_observe(hub->s->metrics, HTTP_ROUTE_WS, 101, time_mono_ns() - req.start_ns);
	return 0;
refuse:
	cJSON_Delete(claims);
	atomic_fetch_add(&hub->s->metrics->ws_rejected, 1);
	http_metrics_observe(hub->s->metrics, HTTP_ROUTE_WS, req.status, time_mono_ns() - req.start_ns);
	LOG_INFO(&http_log, "req=%s websocket refused: %d", req.id, req.status);
	return 1;
}

/* The handshake is done: link the subscriber and greet it, so a client
 * knows from which moment events reach it. */
static void http_ws_ready(struct mg_connection *conn, void *cbdata)
{
	struct http_hub *hub = cbdata;
	struct http_sub *sub = mg_get_user_connection_data(conn);
	char ts[40];
	if (!sub)
		return;
	pthread_mutex_lock(&hub->lock);
	sub->next = hub->subs;
	hub->subs = sub;
	sub->linked = true;
	pthread_mutex_unlock(&hub->lock);
	atomic_fetch_add(&hub->s->metrics->ws_subscribers, 1);
	LOG_INFO(&http_log, "req=%s websocket: user '%s' subscribed to room '%s'", sub->request_id,
		 sub->user_id, sub->room_id);

	cJSON *hello = cJSON_CreateObject();
	char *text = NULL;
	if (hello && cJSON_AddStringToObject(hello, "type", "subscribed") &&
	    cJSON_AddStringToObject(hello, "room_id", sub->room_id) && cJSON_AddObjectToObject(hello, "data") &&
	    cJSON_AddStringToObject(hello, "timestamp", time_iso8601(time_wall_ns(), ts, sizeof(ts))))
		text = cJSON_PrintUnformatted(hello);
	cJSON_Delete(hello);
	if (text) {
		pthread_mutex_lock(&hub->lock);
		mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_TEXT, text, strlen(text));
		pthread_mutex_unlock(&hub->lock);
		cJSON_free(text);
	}
}

/* Frames from the client: nothing to act on (pongs are civetweb's); a
 * close frame ends the connection. Returns 1 to keep reading. */
static int http_ws_data(struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata)
{
	if ((bits & 0x0f) == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE)
		return 0;
	return 1;
}

static void http_ws_close(const struct mg_connection *cconn, void *cbdata)
{
	struct http_hub *hub = cbdata;
	struct mg_connection *conn = (struct mg_connection *)cconn;
	struct http_sub *sub = mg_get_user_connection_data(conn);
	if (!sub)
		return;
	pthread_mutex_lock(&hub->lock);
	if (sub->linked) {
		for (struct http_sub **pp = &hub->subs; *pp; pp = &(*pp)->next)
			if (*pp == sub) {
				*pp = sub->next;
				break;
			}
		atomic_fetch_sub(&hub->s->metrics->ws_subscribers, 1);
	}
	hub->reserved--;
	pthread_mutex_unlock(&hub->lock);
	mg_set_user_connection_data(conn, NULL);
	LOG_DEBUG(&http_log, "req=%s websocket closed", sub->request_id);
	free(sub);
}

/* The hub thread: one event at a time to every subscriber of its room. */
static void *http_hub_main(void *arg)
{
	struct http_hub *hub = arg;
	void *item;
	for (;;) {
		int rc = queue_pop(hub->q, &item, -1);
		if (rc == QUEUE_CLOSED)
			break;
		if (rc != QUEUE_OK)
			continue;
		struct http_hub_event *ev = item;
		pthread_mutex_lock(&hub->lock);
		for (struct http_sub *sub = hub->subs; sub; sub = sub->next) {
			if (strcmp(sub->room_id, ev->room_id) != 0)
				continue;
			if (mg_websocket_write(sub->conn, MG_WEBSOCKET_OPCODE_TEXT, ev->text, ev->len) > 0)
				atomic_fetch_add(&hub->s->metrics->ws_frames_sent, 1);
			else
				LOG_DEBUG(&http_log, "req=%s websocket write failed", sub->request_id);
		}
		pthread_mutex_unlock(&hub->lock);
		free(ev);
	}
	return NULL;
}

void http_hub_publish(struct http_hub *hub, const char *room_id, const char *event_json)
{
	if (!hub || !room_id || !event_json)
		return;
	size_t len = strlen(event_json);
	struct http_hub_event *ev = malloc(sizeof(*ev) + len + 1);
	if (!ev) {
		atomic_fetch_add(&hub->s->metrics->ws_events_dropped, 1);
		return;
	}
	util_strlcpy(ev->room_id, room_id, sizeof(ev->room_id));
	ev->len = len;
	memcpy(ev->text, event_json, len + 1);
	atomic_fetch_add(&hub->s->metrics->ws_events_received, 1);
	if (queue_push(hub->q, ev) != QUEUE_OK) {
		atomic_fetch_add(&hub->s->metrics->ws_events_dropped, 1);
		free(ev);
	}
}

struct http_hub *http_hub_new(struct http_server *s)
{
	struct http_hub *hub = calloc(1, sizeof(*hub));
	if (!hub)
		return NULL;
	hub->s = s;
	pthread_mutex_init(&hub->lock, NULL);
	hub->q = queue_new(HTTP_HUB_QUEUE);
	if (!hub->q)
		goto fail;
	if (pthread_create(&hub->thread, NULL, http_hub_main, hub) != 0)
		goto fail;
	hub->thread_started = true;
	return hub;
fail:
	http_hub_free(hub);
	return NULL;
}

void http_hub_attach(struct http_hub *hub)
{
	mg_set_websocket_handler(hub->s->ctx, HTTP_WS_PATH, http_ws_connect, http_ws_ready, http_ws_data,
				 http_ws_close, hub);
}

void http_hub_free(struct http_hub *hub)
{
	if (!hub)
		return;
	if (hub->q)
		queue_close(hub->q);
	if (hub->thread_started)
		pthread_join(hub->thread, NULL);
	if (hub->q)
		queue_free(hub->q, free);
	/* Subscribers left only if a handshake failed after being accepted. */
	while (hub->subs) {
		struct http_sub *next = hub->subs->next;
		free(hub->subs);
		hub->subs = next;
	}
	pthread_mutex_destroy(&hub->lock);
	free(hub);
}
