/* http_ws: the WebSocket hub. A client subscribes to one room with
 * GET /api/webrtc/ws?room_id=R (bearer token in the Authorization header or
 * the access_token parameter); every room event of SPEC §7, from any node,
 * reaches the room's subscribers as one text frame. An admin subscribes to
 * the box's own events (firmware updates, http_update.c) with
 * GET /api/webrtc/ws?channel=system; those come from this node only.
 *
 * Events arrive on the state subscriber thread. http_hub_publish puts a
 * reference to the event (one refcounted buffer shared by all) into the
 * queue of every subscriber of the room and returns; it never writes to a
 * socket. Each subscriber has its own bounded queue (http.ws_queue events)
 * and its own writer thread, so a client that does not read holds up only
 * itself: not the publisher, not the other subscribers of its room, not
 * other rooms.
 *
 * When a queue is full its oldest event is dropped and counted. The
 * dropped events are always older than everything still queued, so the
 * writer announces them before the next event it writes: one `lagged`
 * event (SPEC §9) whose data is {"dropped": N}; then the subscriber goes
 * on. A write that cannot complete within http.request_timeout (the
 * client's socket stays full, or the client is gone) ends the
 * subscription: nothing more is queued or written for it and its socket
 * is shut down, which ends the connection (no close frame can reach a
 * socket that takes nothing, and a frame cut by the timeout leaves the
 * stream unusable anyway).
 *
 * A connection's close handler unlinks its subscriber, stops its writer
 * and joins it before civetweb frees the connection. */
#include "http_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <civetweb.h>

#include "common_buf.h"
#include "common_thread.h"
#include "common_time.h"
#include "common_util.h"
#include "recorder.h"

#define HTTP_WS_PATH "/api/webrtc/ws"
#define HTTP_WS_WRITER_STACK (256 * 1024)
/* The kernel's send buffer of a subscriber's socket (Linux doubles it).
 * Left to autotuning it grows to net.ipv4.tcp_wmem's maximum (4 MiB) for a
 * client that does not read, which would hide the queue bound; 64 KiB
 * carries some hundred events in flight. */
#define HTTP_WS_SNDBUF (64 * 1024)

struct http_sub {
	struct http_hub *hub;
	struct mg_connection *conn;
	char room_id[HTTP_ID_MAX + 1];
	char request_id[HTTP_REQUEST_ID_LEN];
	pthread_t writer;
	int fd;                           /* the connection's socket, or -1 */
	pthread_cond_t wake;              /* queued, dropped, linked or stop */
	/* Under the hub lock: */
	bool linked;                      /* greeted: the writer may write */
	bool stop;                        /* the close handler asks the writer to end */
	bool dead;                        /* a write failed: nothing more is queued */
	struct buf **queue;               /* ring of hub->queue_max events */
	int head, count;
	unsigned long long dropped;       /* dropped and not yet announced */
	struct http_sub *next;
};

struct http_hub {
	struct http_server *s;
	pthread_mutex_t lock;
	struct http_sub *subs;            /* subscribers past the handshake */
	int count;                        /* subscribers in the list */
	int queue_max;                    /* events one subscriber may have queued */
};

/* Reads and checks what the client subscribes to into 'room' (at least
 * HTTP_ID_MAX + 2 bytes): the room_id query parameter, or channel=system
 * (HTTP_WS_SYSTEM). Returns 0 or -1. */
static int http_ws_room(const struct mg_request_info *ri, char *room, size_t roomlen)
{
	room[0] = '\0';
	if (!ri->query_string)
		return -1;
	size_t qlen = strlen(ri->query_string);
	char channel[16];
	int c = mg_get_var2(ri->query_string, qlen, "channel", channel, sizeof(channel), 0);
	if (c >= 0) {
		if (strcmp(channel, "system") != 0)
			return -1;
		util_strlcpy(room, HTTP_WS_SYSTEM, roomlen);
		return 0;
	}
	int n = mg_get_var2(ri->query_string, qlen, "room_id", room, roomlen, 0);
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
				 "room_id is required: 1 to 128 characters of A-Z a-z 0-9 . _ -, not . or .. "
				 "(or channel=system)");
		goto refuse;
	}
	/* The system channel (updates of the box) is for admins only. */
	if (strcmp(room, HTTP_WS_SYSTEM) == 0) {
		if (http_admin_check(&req, true) < 0)
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

/* Returns the text of a notice to one subscriber, SPEC §7's frame shape:
 * {"type": TYPE, "room_id": R, "data": {...}, "timestamp": now} ("channel":
 * "system" instead of room_id on the system channel); 'dropped'
 * goes into data when >= 0. The caller frees it with cJSON_free; NULL when
 * out of memory. */
static char *http_ws_notice(const char *type, const char *room_id, long long dropped)
{
	char ts[40];
	char *text = NULL;
	cJSON *o = cJSON_CreateObject();
	cJSON *data = NULL;
	bool system = strcmp(room_id, HTTP_WS_SYSTEM) == 0;
	if (o && cJSON_AddStringToObject(o, "type", type) &&
	    (system ? cJSON_AddStringToObject(o, "channel", "system") : cJSON_AddStringToObject(o, "room_id", room_id)) &&
	    (data = cJSON_AddObjectToObject(o, "data")) &&
	    (dropped < 0 || cJSON_AddNumberToObject(data, "dropped", (double)dropped)) &&
	    cJSON_AddStringToObject(o, "timestamp", time_iso8601(time_wall_ns(), ts, sizeof(ts))))
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

/* Drops what a subscriber's queue still holds. Hub lock held. */
static void http_sub_clear(struct http_hub *hub, struct http_sub *sub)
{
	while (sub->count) {
		buf_unref(sub->queue[sub->head]);
		sub->head = (sub->head + 1) % hub->queue_max;
		sub->count--;
	}
}

/* One subscriber's writer: waits for the greeting, then writes its queue
 * in order, announcing drops with a `lagged` event before the next event.
 * Only this thread writes to the connection once the subscriber is linked
 * (civetweb's own pings take the connection lock around their frames).
 * Ends when asked to (stop) or when a write fails. */
static void *http_sub_writer(void *arg)
{
	struct http_sub *sub = arg;
	struct http_hub *hub = sub->hub;
	struct http_metrics *m = hub->s->metrics;
	pthread_mutex_lock(&hub->lock);
	for (;;) {
		while (!sub->stop && !(sub->linked && (sub->count || sub->dropped)))
			pthread_cond_wait(&sub->wake, &hub->lock);
		if (sub->stop)
			break;
		struct buf *ev = NULL;
		char *notice = NULL;
		unsigned long long dropped = sub->dropped;
		if (dropped) {
			sub->dropped = 0;
		} else {
			ev = sub->queue[sub->head];
			sub->head = (sub->head + 1) % hub->queue_max;
			sub->count--;
		}
		pthread_mutex_unlock(&hub->lock);

		int rc;
		int64_t t0 = time_mono_ns();
		if (ev) {
			rc = mg_websocket_write(sub->conn, MG_WEBSOCKET_OPCODE_TEXT, (const char *)ev->data, ev->size);
			buf_unref(ev);
		} else if ((notice = http_ws_notice("lagged", sub->room_id, (long long)dropped))) {
			rc = mg_websocket_write(sub->conn, MG_WEBSOCKET_OPCODE_TEXT, notice, strlen(notice));
			cJSON_free(notice);
			if (rc > 0)
				atomic_fetch_add(&m->ws_lagged, 1);
		} else {
			rc = 1; /* out of memory: the count is lost, the stream goes on */
		}
		if (rc > 0 && ev)
			atomic_fetch_add(&m->ws_frames_sent, 1);

		pthread_mutex_lock(&hub->lock);
		if (rc <= 0) {
			sub->dead = true;
			atomic_fetch_add(&m->ws_events_dropped, (unsigned long long)sub->count + sub->dropped);
			http_sub_clear(hub, sub);
			sub->dropped = 0;
			atomic_fetch_add(&m->ws_write_failures, 1);
			LOG_INFO(&http_log, "req=%s websocket: a write failed after %lld ms (client gone or not "
				 "reading); the subscription ends", sub->request_id,
				 (long long)((time_mono_ns() - t0) / 1000000));
			/* civetweb's reader sees the shutdown and runs the close
			 * handler, which joins this thread. */
			if (sub->fd >= 0)
				shutdown(sub->fd, SHUT_RDWR);
			break;
		}
	}
	pthread_mutex_unlock(&hub->lock);
	return NULL;
}

/* Frees a subscriber whose writer has ended (or never started). */
static void http_sub_free(struct http_sub *sub)
{
	if (!sub)
		return;
	pthread_cond_destroy(&sub->wake);
	free(sub->queue);
	free(sub);
}

/* Makes a subscriber with its queue and its writer thread (waiting for
 * the link). Returns NULL when out of memory or threads. */
static struct http_sub *http_sub_new(struct http_hub *hub, struct mg_connection *conn, const char *room,
				     const char *request_id)
{
	struct http_sub *sub = calloc(1, sizeof(*sub));
	if (!sub)
		return NULL;
	pthread_cond_init(&sub->wake, NULL);
	sub->hub = hub;
	sub->conn = conn;
	sub->fd = mg_get_connection_socket(conn);
	if (sub->fd < 0) {
		LOG_WARN(&http_log, "req=%s websocket: the connection has no socket; a stuck client "
			 "is then closed by civetweb's ping timeout only", request_id);
	} else {
		int sndbuf = HTTP_WS_SNDBUF;
		setsockopt(sub->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	}
	util_strlcpy(sub->room_id, room, sizeof(sub->room_id));
	util_strlcpy(sub->request_id, request_id, sizeof(sub->request_id));
	sub->queue = calloc((size_t)hub->queue_max, sizeof(*sub->queue));
	int rc = sub->queue ? thread_start(&sub->writer, "ws-writer", HTTP_WS_WRITER_STACK, http_sub_writer, sub)
			    : -1;
	if (rc != 0) {
		http_sub_free(sub);
		return NULL;
	}
	return sub;
}

/* Stops a subscriber's writer and joins it; the subscriber is no longer
 * in the hub's list. The writer may be inside a write: that ends within
 * http.request_timeout, at once when the connection is closing. */
static void http_sub_stop(struct http_hub *hub, struct http_sub *sub)
{
	pthread_mutex_lock(&hub->lock);
	sub->stop = true;
	pthread_cond_signal(&sub->wake);
	pthread_mutex_unlock(&hub->lock);
	pthread_join(sub->writer, NULL);
	pthread_mutex_lock(&hub->lock);
	http_sub_clear(hub, sub);
	pthread_mutex_unlock(&hub->lock);
}

/* The handshake is done: make the subscriber, list it and greet it, so a
 * client knows from which moment events reach it. The room and token were
 * checked by http_ws_connect. */
static void http_ws_ready(struct mg_connection *conn, void *cbdata)
{
	struct http_hub *hub = cbdata;
	const struct mg_request_info *ri = mg_get_request_info(conn);
	char room[HTTP_ID_MAX + 2];
	struct http_request req;
	struct http_sub *sub = NULL;
	http_request_begin(hub->s, conn, &req);
	if (http_ws_room(ri, room, sizeof(room)) < 0 || !(sub = http_sub_new(hub, conn, room, req.id))) {
		LOG_WARN(&http_log, "websocket: cannot set up a subscriber; closing");
		mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, "\x03\xf3", 2);
		return;
	}
	mg_set_user_connection_data(conn, sub);

	/* In the list at once (events start collecting in the queue), but
	 * the writer waits until the greeting is out. */
	pthread_mutex_lock(&hub->lock);
	sub->next = hub->subs;
	hub->subs = sub;
	hub->count++;
	pthread_mutex_unlock(&hub->lock);
	atomic_fetch_add(&hub->s->metrics->ws_subscribers, 1);
	LOG_INFO(&http_log, "req=%s websocket: subscribed to room '%s'", sub->request_id, sub->room_id);

	char *text = http_ws_notice("subscribed", sub->room_id, -1);
	if (text) {
		mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_TEXT, text, strlen(text));
		cJSON_free(text);
	}
	pthread_mutex_lock(&hub->lock);
	sub->linked = true;
	pthread_cond_signal(&sub->wake);
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
	if (was_listed)
		hub->count--;
	pthread_mutex_unlock(&hub->lock);
	http_sub_stop(hub, sub);
	if (was_listed)
		atomic_fetch_sub(&hub->s->metrics->ws_subscribers, 1);
	mg_set_user_connection_data(conn, NULL);
	LOG_DEBUG(&http_log, "req=%s websocket closed", sub->request_id);
	http_sub_free(sub);
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
		if (sub->dead || strcmp(sub->room_id, room_id) != 0)
			continue;
		if (sub->count == hub->queue_max) {
			/* The client does not keep up: its oldest event goes,
			 * and the writer announces it before the next one. */
			buf_unref(sub->queue[sub->head]);
			sub->head = (sub->head + 1) % hub->queue_max;
			sub->count--;
			sub->dropped++;
			atomic_fetch_add(&hub->s->metrics->ws_events_dropped, 1);
		}
		sub->queue[(sub->head + sub->count) % hub->queue_max] = buf_ref(ev);
		sub->count++;
		pthread_cond_signal(&sub->wake);
	}
	pthread_mutex_unlock(&hub->lock);
	buf_unref(ev);
}

struct http_hub *http_hub_new(struct http_server *s)
{
	struct http_hub *hub = calloc(1, sizeof(*hub));
	if (!hub)
		return NULL;
	hub->s = s;
	hub->queue_max = (int)config_get_int(s->cfg, "http.ws_queue");
	if (hub->queue_max < 1)
		hub->queue_max = 1;
	pthread_mutex_init(&hub->lock, NULL);
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
	/* Every connection is closed by now (mg_stop ran first), so the list
	 * is empty unless a handshake failed after being accepted. */
	while (hub->subs) {
		struct http_sub *sub = hub->subs;
		hub->subs = sub->next;
		http_sub_stop(hub, sub);
		http_sub_free(sub);
	}
	pthread_mutex_destroy(&hub->lock);
	free(hub);
}
