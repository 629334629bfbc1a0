/* http_ws: the WebSocket hub. A client subscribes to one room with
 * GET /api/webrtc/ws?room_id=R (bearer token in the Authorization header or
 * the access_token parameter); every room event of SPEC §7, from any node,
 * reaches the room's subscribers as one text frame.
 *
 * Events arrive on the state subscriber thread. http_hub_publish puts a
 * reference to the event (one refcounted buffer shared by all) into the
 * outbox of every subscriber of the room: a bounded FIFO that drops its
 * oldest event (and counts it) when a client does not keep up. A small
 * pool of writer threads drains the outboxes; a subscriber is served by at
 * most one writer at a time (so its frames keep their order), and a client
 * whose socket blocks holds up only the writer serving it, never the
 * others or the publisher. A connection's close handler unlinks its
 * subscriber and waits until no writer is using it before civetweb frees
 * the connection. */
#include "http_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "common_buf.h"
#include "common_time.h"
#include "common_util.h"
#include "recorder.h"

#define HTTP_WS_PATH "/api/webrtc/ws"
#define HTTP_HUB_WRITERS 4
#define HTTP_SUB_OUTBOX 64

struct http_sub {
	struct mg_connection *conn;
	char room_id[HTTP_ID_MAX + 1];
	char request_id[HTTP_REQUEST_ID_LEN];
	/* Under the hub lock: */
	bool linked;                      /* greeted: writers may serve it */
	bool busy;                        /* a writer is writing to it */
	struct buf *outbox[HTTP_SUB_OUTBOX];
	int head, count;
	struct http_sub *next;
};

struct http_hub {
	struct http_server *s;
	pthread_mutex_t lock;
	pthread_cond_t work;              /* an outbox got an event, or stopping */
	pthread_cond_t idle;              /* a writer put a subscriber down */
	struct http_sub *subs;            /* subscribers past the handshake */
	int count;                        /* subscribers in the list */
	bool stopping;
	pthread_t writers[HTTP_HUB_WRITERS];
	int nwriters;
};

/* Reads and checks the room_id query parameter into 'room' (at least
 * HTTP_ID_MAX + 2 bytes). Returns 0 or -1. */
static int http_ws_room(const struct mg_request_info *ri, char *room, size_t roomlen)
{
	room[0] = '\0';
	if (!ri->query_string)
		return -1;
	int n = mg_get_var2(ri->query_string, strlen(ri->query_string), "room_id", room, roomlen, 0);
	if (n <= 0 || (size_t)n != strlen(room) || !recorder_room_id_valid(room))
		return -1;
	return 0;
}

/* Accepts or refuses an upgrade before the handshake: room id, token, the
 * subscriber limit. A refusal is a normal JSON reply; returns 1 then.
 * Nothing is allocated here: civetweb calls no close handler when the
 * handshake that follows fails, so the subscriber is made in the ready
 * handler (the limit is therefore checked here and counted there; a burst
 * of upgrades may pass it by a few). */
static int http_ws_connect(const struct mg_connection *cconn, void *cbdata)
{
	struct http_hub *hub = cbdata;
	struct mg_connection *conn = (struct mg_connection *)cconn;
	const struct mg_request_info *ri = mg_get_request_info(conn);
	struct http_request req;
	char room[HTTP_ID_MAX + 2];
	cJSON *claims = NULL;

	http_request_begin(hub->s, conn, &req);
	req.route = HTTP_ROUTE_WS;
	if (http_ws_room(ri, room, sizeof(room)) < 0) {
		http_reply_error(&req, 400, "invalid_room_id",
				 "room_id is required: 1 to 128 characters of A-Z a-z 0-9 . _ -");
		goto refuse;
	}
	if (http_auth_check(&req, true, &claims) < 0)
		goto refuse;
	const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
	LOG_INFO(&http_log, "req=%s websocket upgrade by '%s' for room '%s'", req.id,
		 cJSON_IsString(sub) ? sub->valuestring : "", room);
	cJSON_Delete(claims);
	claims = NULL;
	pthread_mutex_lock(&hub->lock);
	bool full = hub->count >= hub->s->ws_max;
	pthread_mutex_unlock(&hub->lock);
	if (full) {
		http_reply_error(&req, 503, "too_many_subscribers",
				 "the WebSocket subscriber limit (%d) is reached", hub->s->ws_max);
		goto refuse;
	}
	http_metrics_observe(hub->s->metrics, HTTP_ROUTE_WS, 101, time_mono_ns() - req.start_ns);
	return 0;
refuse:
	cJSON_Delete(claims);
	atomic_fetch_add(&hub->s->metrics->ws_rejected, 1);
	http_metrics_observe(hub->s->metrics, HTTP_ROUTE_WS, req.status, time_mono_ns() - req.start_ns);
	LOG_INFO(&http_log, "req=%s websocket refused: %d", req.id, req.status);
	return 1;
}

/* The handshake is done: make the subscriber, list it and greet it, so a
 * client knows from which moment events reach it. The room and token were
 * checked by http_ws_connect. */
static void http_ws_ready(struct mg_connection *conn, void *cbdata)
{
	struct http_hub *hub = cbdata;
	const struct mg_request_info *ri = mg_get_request_info(conn);
	struct http_sub *sub = calloc(1, sizeof(*sub));
	char room[HTTP_ID_MAX + 2], ts[40];
	struct http_request req;
	if (!sub || http_ws_room(ri, room, sizeof(room)) < 0) {
		free(sub);
		LOG_WARN(&http_log, "websocket: cannot set up a subscriber; closing");
		mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, "\x03\xf3", 2);
		return;
	}
	http_request_begin(hub->s, conn, &req);
	sub->conn = conn;
	util_strlcpy(sub->room_id, room, sizeof(sub->room_id));
	util_strlcpy(sub->request_id, req.id, sizeof(sub->request_id));
	mg_set_user_connection_data(conn, sub);

	/* In the list at once (events start collecting in the outbox), but
	 * not handed to writers until the greeting is out. */
	pthread_mutex_lock(&hub->lock);
	sub->next = hub->subs;
	hub->subs = sub;
	hub->count++;
	pthread_mutex_unlock(&hub->lock);
	atomic_fetch_add(&hub->s->metrics->ws_subscribers, 1);
	LOG_INFO(&http_log, "req=%s websocket: subscribed to room '%s'", sub->request_id, sub->room_id);

	cJSON *hello = cJSON_CreateObject();
	char *text = NULL;
	if (hello && cJSON_AddStringToObject(hello, "type", "subscribed") &&
	    cJSON_AddStringToObject(hello, "room_id", sub->room_id) && cJSON_AddObjectToObject(hello, "data") &&
	    cJSON_AddStringToObject(hello, "timestamp", time_iso8601(time_wall_ns(), ts, sizeof(ts))))
		text = cJSON_PrintUnformatted(hello);
	cJSON_Delete(hello);
	if (text) {
		/* Written before the subscriber is handed to writers, so no
		 * writer can interleave with it; events published meanwhile
		 * wait in the outbox. */
		mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_TEXT, text, strlen(text));
		cJSON_free(text);
	}
	pthread_mutex_lock(&hub->lock);
	sub->linked = true;
	if (sub->count)
		pthread_cond_broadcast(&hub->work);
	pthread_mutex_unlock(&hub->lock);
}

/* Frames from the client: nothing to act on (pongs are civetweb's); a
 * close frame ends the connection. Returns 1 to keep reading. */
static int http_ws_data(struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata)
{
	if ((bits & 0x0f) == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE)
		return 0;
	return 1;
}

/* Drops what a subscriber's outbox still holds. Hub lock held. */
static void http_sub_clear(struct http_sub *sub)
{
	while (sub->count) {
		buf_unref(sub->outbox[sub->head]);
		sub->head = (sub->head + 1) % HTTP_SUB_OUTBOX;
		sub->count--;
	}
}

static void http_ws_close(const struct mg_connection *cconn, void *cbdata)
{
	struct http_hub *hub = cbdata;
	struct mg_connection *conn = (struct mg_connection *)cconn;
	struct http_sub *sub = mg_get_user_connection_data(conn);
	if (!sub)
		return;
	pthread_mutex_lock(&hub->lock);
	bool was_listed = false;
	for (struct http_sub **pp = &hub->subs; *pp; pp = &(*pp)->next)
		if (*pp == sub) {
			*pp = sub->next;
			was_listed = true;
			break;
		}
	sub->linked = false;
	while (sub->busy)
		pthread_cond_wait(&hub->idle, &hub->lock);
	http_sub_clear(sub);
	if (was_listed)
		hub->count--;
	pthread_mutex_unlock(&hub->lock);
	if (was_listed)
		atomic_fetch_sub(&hub->s->metrics->ws_subscribers, 1);
	mg_set_user_connection_data(conn, NULL);
	LOG_DEBUG(&http_log, "req=%s websocket closed", sub->request_id);
	free(sub);
}

/* A writer: takes a subscriber with events that no other writer serves,
 * writes its oldest event outside the lock, puts it down, repeats. */
static void *http_hub_writer(void *arg)
{
	struct http_hub *hub = arg;
	pthread_mutex_lock(&hub->lock);
	for (;;) {
		struct http_sub *sub = NULL;
		for (struct http_sub *it = hub->subs; it && !sub; it = it->next)
			if (it->linked && !it->busy && it->count)
				sub = it;
		if (!sub) {
			if (hub->stopping)
				break;
			pthread_cond_wait(&hub->work, &hub->lock);
			continue;
		}
		struct buf *ev = sub->outbox[sub->head];
		sub->head = (sub->head + 1) % HTTP_SUB_OUTBOX;
		sub->count--;
		sub->busy = true;
		pthread_mutex_unlock(&hub->lock);

		if (mg_websocket_write(sub->conn, MG_WEBSOCKET_OPCODE_TEXT, (const char *)ev->data, ev->size) > 0)
			atomic_fetch_add(&hub->s->metrics->ws_frames_sent, 1);
		else
			LOG_DEBUG(&http_log, "req=%s websocket write failed", sub->request_id);
		buf_unref(ev);

		pthread_mutex_lock(&hub->lock);
		sub->busy = false;
		pthread_cond_broadcast(&hub->idle);
	}
	pthread_mutex_unlock(&hub->lock);
	return NULL;
}

void http_hub_publish(struct http_hub *hub, const char *room_id, const char *event_json)
{
	if (!hub || !room_id || !event_json)
		return;
	struct buf *ev = buf_new_copy(event_json, strlen(event_json));
	if (!ev) {
		atomic_fetch_add(&hub->s->metrics->ws_events_dropped, 1);
		return;
	}
	atomic_fetch_add(&hub->s->metrics->ws_events_received, 1);
	pthread_mutex_lock(&hub->lock);
	for (struct http_sub *sub = hub->subs; sub; sub = sub->next) {
		if (strcmp(sub->room_id, room_id) != 0)
			continue;
		if (sub->count == HTTP_SUB_OUTBOX) {
			/* The client does not keep up: its oldest event goes. */
			buf_unref(sub->outbox[sub->head]);
			sub->head = (sub->head + 1) % HTTP_SUB_OUTBOX;
			sub->count--;
			atomic_fetch_add(&hub->s->metrics->ws_events_dropped, 1);
		}
		sub->outbox[(sub->head + sub->count) % HTTP_SUB_OUTBOX] = buf_ref(ev);
		sub->count++;
	}
	pthread_cond_broadcast(&hub->work);
	pthread_mutex_unlock(&hub->lock);
	buf_unref(ev);
}

struct http_hub *http_hub_new(struct http_server *s)
{
	struct http_hub *hub = calloc(1, sizeof(*hub));
	if (!hub)
		return NULL;
	hub->s = s;
	pthread_mutex_init(&hub->lock, NULL);
	pthread_cond_init(&hub->work, NULL);
	pthread_cond_init(&hub->idle, NULL);
	for (int i = 0; i < HTTP_HUB_WRITERS; i++) {
		if (pthread_create(&hub->writers[i], NULL, http_hub_writer, hub) != 0) {
			http_hub_free(hub);
			return NULL;
		}
		hub->nwriters++;
	}
	return hub;
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
	pthread_mutex_lock(&hub->lock);
	hub->stopping = true;
	pthread_cond_broadcast(&hub->work);
	pthread_mutex_unlock(&hub->lock);
	for (int i = 0; i < hub->nwriters; i++)
		pthread_join(hub->writers[i], NULL);
	/* Every connection is closed by now (mg_stop ran first), so the list
	 * is empty unless a handshake failed after being accepted. */
	while (hub->subs) {
		struct http_sub *next = hub->subs->next;
		http_sub_clear(hub->subs);
		free(hub->subs);
		hub->subs = next;
	}
	pthread_cond_destroy(&hub->idle);
	pthread_cond_destroy(&hub->work);
	pthread_mutex_destroy(&hub->lock);
	free(hub);
}
