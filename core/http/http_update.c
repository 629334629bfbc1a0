/* http_update: firmware updates and reboot over the API.
 *
 *   POST /api/system/update   a RAUC bundle as the body (application/octet-stream
 *                             or application/vnd.rauc.bundle, Content-Length):
 *                             streamed to update.dir on the data partition,
 *                             then installed by RAUC into the other slot
 *   GET  /api/system/update   where the update stands, the slots
 *   POST /api/system/reboot   202, then logind reboots the box
 *
 * All three need the admin authorization (auth.lua's "admin" action). RAUC
 * and logind are asked on the system D-Bus with sd-bus: RAUC's service
 * (de.pengutronix.rauc, object "/", interface de.pengutronix.rauc.Installer)
 * checks the bundle (signature, compatible, payload) and writes the slot;
 * edgerec only stores the upload and follows RAUC's Progress, LastError and
 * Completed. One update at a time (409 otherwise). Each request opens its
 * own bus connection (sd-bus objects are not shared between threads).
 *
 * Progress goes to the WebSocket system channel (http_ws.c) as events
 * update_progress {state, percent, message}, update_completed and
 * update_failed {state, percent, message, detail}.
 *
 * Refusals: a body beyond update.max_bundle 413 before anything is read; a
 * disk that cannot hold it plus recorder.disk_reserve 507; a body cut short
 * (the client went away before Content-Length bytes) 400; a bundle RAUC
 * refuses before it writes a slot (signature, compatible, format) 422 with
 * RAUC's LastError; nothing is installed then and the boot order is as it
 * was. A verity bundle's payload is checked as RAUC copies it, so a
 * damaged or tampered payload is found while the other slot is being
 * written: 422 too, the other slot stays marked bad (RAUC marks it so
 * before writing), the booted slot stays primary. The upload file is
 * removed whatever the outcome. */
#include "http_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <civetweb.h>
#include <systemd/sd-bus.h>

#include "common_time.h"
#include "common_util.h"
#include "config.h"

#define RAUC_NAME "de.pengutronix.rauc"
#define RAUC_PATH "/"
#define RAUC_IFACE "de.pengutronix.rauc.Installer"
#define UPDATE_FILE "upload.raucb"
#define UPDATE_CHUNK (64 * 1024)
/* RAUC reports progress at least every step; this long without a word, it
 * is asked whether it still runs. */
#define UPDATE_QUIET_US (10 * 1000000ULL)

enum update_state { UPDATE_IDLE, UPDATE_UPLOADING, UPDATE_INSTALLING, UPDATE_INSTALLED, UPDATE_FAILED };

static const char *const update_state_names[] = { "idle", "uploading", "installing", "installed", "failed" };

struct http_update {
	struct http_server *s;
	char dir[4096];
	char path[4200];              /* dir/upload.raucb */
	long long max_bundle;
	pthread_mutex_t lock;
	/* Under the lock: */
	enum update_state state;
	int percent;
	char message[256];
	char last_error[512];
	int64_t started_ns, finished_ns; /* wall clock; 0: never */
	atomic_bool stopping;
};

/* ---- state and events ------------------------------------------------- */

/* Sends one event of the system channel: {"type", "channel": "system",
 * "data": {state, percent, message[, detail]}, "timestamp"}. Lock held. */
static void update_event_locked(struct http_update *u, const char *type, const char *detail)
{
	char ts[40];
	cJSON *o = cJSON_CreateObject();
	cJSON *data = NULL;
	char *text = NULL;
	if (o && cJSON_AddStringToObject(o, "type", type) && cJSON_AddStringToObject(o, "channel", "system") &&
	    (data = cJSON_AddObjectToObject(o, "data")) &&
	    cJSON_AddStringToObject(data, "state", update_state_names[u->state]) &&
	    cJSON_AddNumberToObject(data, "percent", u->percent) &&
	    cJSON_AddStringToObject(data, "message", u->message) &&
	    (!detail || cJSON_AddStringToObject(data, "detail", detail)) &&
	    cJSON_AddStringToObject(o, "timestamp", time_iso8601(time_wall_ns(), ts, sizeof(ts))))
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (text && u->s->hub)
		http_hub_publish(u->s->hub, HTTP_WS_SYSTEM, text);
	cJSON_free(text);
}

/* Moves to 'state' with 'percent' and 'message' and tells the channel
 * ('type'; NULL: no event). */
static void update_set(struct http_update *u, enum update_state state, int percent, const char *message,
		       const char *type)
{
	pthread_mutex_lock(&u->lock);
	u->state = state;
	u->percent = percent;
	util_strlcpy(u->message, message ? message : "", sizeof(u->message));
	if (state == UPDATE_INSTALLED || state == UPDATE_FAILED)
		u->finished_ns = time_wall_ns();
	if (type)
		update_event_locked(u, type, state == UPDATE_FAILED ? u->last_error : NULL);
	pthread_mutex_unlock(&u->lock);
}

/* Ends an update as failed with 'fmt' as its last error. */
static void update_fail(struct http_update *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void update_fail(struct http_update *u, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&u->lock);
	util_strlcpy(u->last_error, why, sizeof(u->last_error));
	pthread_mutex_unlock(&u->lock);
	LOG_WARN(&http_log, "update failed: %s", why);
	update_set(u, UPDATE_FAILED, 100, "failed", "update_failed");
}

/* ---- the system bus ------------------------------------------------- */

/* Opens a connection to the system bus. Returns it, or NULL with a reason
 * (no bus on this machine: a development box). */
static sd_bus *update_bus(char *why, size_t whylen)
{
	sd_bus *bus = NULL;
	int r = sd_bus_open_system(&bus);
	if (r < 0) {
		snprintf(why, whylen, "there is no system D-Bus here (%s)", strerror(-r));
		return NULL;
	}
	return bus;
}

/* Says why a call to 'service' failed: not there, not allowed, or the
 * service's own error. */
static void update_bus_error(const sd_bus_error *e, int r, const char *service, char *why, size_t whylen)
{
	if (sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
	    sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
		snprintf(why, whylen, "%s is not on the system D-Bus (not installed or not running)", service);
	else if (sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED))
		snprintf(why, whylen, "the D-Bus policy does not let this user talk to %s: %s", service,
			 e->message ? e->message : "access denied");
	else
		snprintf(why, whylen, "%s: %s", service,
			 e && e->message ? e->message : strerror(r < 0 ? -r : EIO));
}

/* Reads one string property of RAUC's Installer. Returns 0, or -1 with a
 * reason. '*out' is malloc'd. */
static int rauc_get(sd_bus *bus, const char *prop, char **out, char *why, size_t whylen)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r = sd_bus_get_property_string(bus, RAUC_NAME, RAUC_PATH, RAUC_IFACE, prop, &e, out);
	if (r < 0)
		update_bus_error(&e, r, "RAUC (" RAUC_NAME ")", why, whylen);
	sd_bus_error_free(&e);
	return r < 0 ? -1 : 0;
}

/* Adds GetSlotStatus to 'o': "slots" [{name, bootname, state,
 * boot_status, bundle_version, installed_at}], "booted_slot" and
 * "other_slot" (the first slot that is not booted: where an install goes
 * on an A/B box). Returns 0, or -1 with a reason. */
static int rauc_slots(sd_bus *bus, cJSON *o, char *why, size_t whylen)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL;
	int r = sd_bus_call_method(bus, RAUC_NAME, RAUC_PATH, RAUC_IFACE, "GetSlotStatus", &e, &m, "");
	cJSON *slots = cJSON_AddArrayToObject(o, "slots");
	if (r < 0) {
		update_bus_error(&e, r, "RAUC (" RAUC_NAME ")", why, whylen);
		sd_bus_error_free(&e);
		cJSON_AddNullToObject(o, "other_slot");
		return -1;
	}
	cJSON *other = NULL;
	r = sd_bus_message_enter_container(m, 'a', "(sa{sv})");
	while (r > 0 && (r = sd_bus_message_enter_container(m, 'r', "sa{sv}")) > 0) {
		const char *name = NULL;
		cJSON *slot = cJSON_CreateObject();
		if ((r = sd_bus_message_read(m, "s", &name)) < 0 ||
		    (r = sd_bus_message_enter_container(m, 'a', "{sv}")) < 0) {
			cJSON_Delete(slot);
			break;
		}
		cJSON_AddStringToObject(slot, "name", name);
		static const char *const keys[][2] = {
			{ "bootname", "bootname" },         { "state", "state" },
			{ "boot-status", "boot_status" },   { "bundle.version", "bundle_version" },
			{ "installed.timestamp", "installed_at" },
		};
		while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
			const char *key = NULL, *val = NULL;
			bool used = false;
			if ((r = sd_bus_message_read(m, "s", &key)) < 0)
				break;
			for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]) && !used; k++) {
				if (strcmp(key, keys[k][0]) != 0)
					continue;
				if (sd_bus_message_read(m, "v", "s", &val) >= 0) {
					cJSON_AddStringToObject(slot, keys[k][1], val);
					used = true;
				}
			}
			if (!used && (r = sd_bus_message_skip(m, "v")) < 0)
				break;
			if ((r = sd_bus_message_exit_container(m)) < 0)
				break;
		}
		if (r >= 0)
			r = sd_bus_message_exit_container(m); /* a{sv} */
		if (r >= 0)
			r = sd_bus_message_exit_container(m); /* (sa{sv}) */
		const cJSON *state = cJSON_GetObjectItemCaseSensitive(slot, "state");
		const cJSON *boot = cJSON_GetObjectItemCaseSensitive(slot, "bootname");
		bool booted = cJSON_IsString(state) && strcmp(state->valuestring, "booted") == 0;
		if (booted && cJSON_IsString(boot))
			cJSON_AddStringToObject(o, "booted_slot", boot->valuestring);
		if (!booted && cJSON_IsString(boot) && !other)
			other = cJSON_Duplicate(slot, true);
		cJSON_AddItemToArray(slots, slot);
		if (r < 0)
			break;
	}
	sd_bus_message_unref(m);
	sd_bus_error_free(&e);
	if (other)
		cJSON_AddItemToObject(o, "other_slot", other);
	else
		cJSON_AddNullToObject(o, "other_slot");
	if (r < 0) {
		snprintf(why, whylen, "RAUC's slot status could not be read: %s", strerror(-r));
		return -1;
	}
	return 0;
}

/* ---- the install ---------------------------------------------------- */

/* What one install saw of RAUC, filled by the signal handlers. */
struct update_job {
	struct http_update *u;
	bool completed;
	int result;                   /* Completed's: 0 success */
	bool wrote;                   /* RAUC began to write a slot */
	bool heard;                   /* a signal since the last check */
	char step[256];               /* RAUC's last progress message */
};

/* PropertiesChanged of RAUC's Installer: Progress (percent, message,
 * depth) becomes update_progress. */
static int update_on_properties(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct update_job *job = userdata;
	const char *iface = NULL;
	(void)ret_error;
	job->heard = true;
	if (sd_bus_message_read(m, "s", &iface) < 0 || strcmp(iface, RAUC_IFACE) != 0)
		return 0;
	if (sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
		return 0;
	while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
		const char *key = NULL;
		if (sd_bus_message_read(m, "s", &key) < 0)
			return 0;
		if (strcmp(key, "Progress") == 0) {
			int percent = 0, depth = 0;
			const char *msg = NULL;
			if (sd_bus_message_read(m, "v", "(isi)", &percent, &msg, &depth) < 0)
				return 0;
			/* RAUC's steps that write: from here on a slot is
			 * touched (RAUC marked it bad first). */
			if (strncmp(msg, "Updating slots", 14) == 0 || strncmp(msg, "Copying", 7) == 0 ||
			    strncmp(msg, "Updating slot", 13) == 0)
				job->wrote = true;
			util_strlcpy(job->step, msg, sizeof(job->step));
			update_set(job->u, UPDATE_INSTALLING, percent < 0 ? 0 : percent > 100 ? 100 : percent, msg,
				   "update_progress");
		} else if (sd_bus_message_skip(m, "v") < 0) {
			return 0;
		}
		if (sd_bus_message_exit_container(m) < 0)
			return 0;
	}
	return 0;
}

static int update_on_completed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct update_job *job = userdata;
	(void)ret_error;
	job->heard = true;
	if (sd_bus_message_read(m, "i", &job->result) >= 0)
		job->completed = true;
	return 0;
}

/* Asks RAUC to install 'path' and follows it to its end. Returns the HTTP
 * status: 200 installed, 422 refused before a slot was written, 500 failed
 * while writing, 503 RAUC went away or the server stops. The reason is in
 * u->last_error. */
static int update_install(struct http_update *u, sd_bus *bus)
{
	struct update_job job = { .u = u };
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_slot *s1 = NULL, *s2 = NULL;
	char why[512];
	int status = 500;
	int r = sd_bus_match_signal(bus, &s1, NULL, RAUC_PATH, "org.freedesktop.DBus.Properties", "PropertiesChanged",
				    update_on_properties, &job);
	if (r >= 0)
		r = sd_bus_match_signal(bus, &s2, NULL, RAUC_PATH, RAUC_IFACE, "Completed", update_on_completed, &job);
	if (r < 0) {
		update_fail(u, "cannot follow RAUC's signals: %s", strerror(-r));
		goto out;
	}
	update_set(u, UPDATE_INSTALLING, 0, "handing the bundle to RAUC", "update_progress");
	r = sd_bus_call_method(bus, RAUC_NAME, RAUC_PATH, RAUC_IFACE, "InstallBundle", &e, NULL, "sa{sv}", u->path, 0);
	if (r < 0) {
		update_bus_error(&e, r, "RAUC (" RAUC_NAME ")", why, sizeof(why));
		update_fail(u, "RAUC did not take the bundle: %s", why);
		status = 503;
		goto out;
	}
	uint64_t quiet_since = (uint64_t)time_mono_ns() / 1000;
	while (!job.completed) {
		if (atomic_load(&u->stopping)) {
			update_fail(u, "edgerec is stopping; RAUC goes on with the install (see rauc status)");
			status = 503;
			goto out;
		}
		r = sd_bus_process(bus, NULL);
		if (r < 0) {
			update_fail(u, "the system bus went away during the install: %s", strerror(-r));
			status = 503;
			goto out;
		}
		if (r > 0)
			continue;
		uint64_t now = (uint64_t)time_mono_ns() / 1000;
		if (job.heard) {
			job.heard = false;
			quiet_since = now;
		} else if (now - quiet_since > UPDATE_QUIET_US) {
			/* Nothing heard for a while: is RAUC still there and
			 * still at it? */
			char *op = NULL;
			if (rauc_get(bus, "Operation", &op, why, sizeof(why)) < 0) {
				update_fail(u, "RAUC left during the install: %s", why);
				status = 503;
				goto out;
			}
			bool idle = strcmp(op, "idle") == 0;
			free(op);
			if (idle) {
				/* Its Completed may still be queued: one more round. */
				sd_bus_process(bus, NULL);
				if (!job.completed) {
					update_fail(u, "RAUC is idle without saying how the install ended");
					status = 500;
					goto out;
				}
				break;
			}
			quiet_since = now;
		}
		sd_bus_wait(bus, 1000000);
	}
	if (job.result == 0) {
		status = 200;
		goto out;
	}
	char *last = NULL;
	if (rauc_get(bus, "LastError", &last, why, sizeof(why)) < 0)
		last = strdup(why);
	if (job.wrote && last && strstr(last, "Error reading from file")) {
		/* RAUC checks a verity bundle's payload block by block as it
		 * copies it (dm-verity): a damaged or tampered payload shows as
		 * a read error of the bundle in the middle of the copy. */
		update_fail(u, "RAUC refused the bundle: its payload does not match the signed hash (damaged or "
			       "tampered); the slot being written stays marked bad and is not booted, the booted slot "
			       "stays primary: %s", last);
		status = 422;
	} else if (job.wrote) {
		update_fail(u, "RAUC failed while writing the slot (the slot is marked bad, the booted one stays "
			       "primary): %s", last ? last : "unknown error");
		status = 500;
	} else {
		update_fail(u, "RAUC refused the bundle: %s", last && *last ? last : job.step);
		status = 422;
	}
	free(last);
out:
	sd_bus_slot_unref(s1);
	sd_bus_slot_unref(s2);
	sd_bus_error_free(&e);
	return status;
}

/* ---- the upload ----------------------------------------------------- */

/* True when the request's Content-Type is one a bundle may come as. */
static bool update_content_type(struct http_request *req)
{
	static const char *const ok[] = { "application/octet-stream", "application/vnd.rauc.bundle" };
	const char *ct = mg_get_header(req->conn, "Content-Type");
	for (size_t i = 0; ct && i < sizeof(ok) / sizeof(ok[0]); i++) {
		size_t n = strlen(ok[i]);
		if (strncasecmp(ct, ok[i], n) == 0 && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' '))
			return true;
	}
	return false;
}

static int update_write(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Streams the body into u->path. Returns 0, or the HTTP status of the
 * failure (400 cut short, 507 the disk filled, 500) with the file removed
 * and u->last_error set. */
static int update_receive(struct http_update *u, struct http_request *req, long long length)
{
	char *buf = malloc(UPDATE_CHUNK);
	int status = 500;
	long long got = 0;
	int last_step = 0;
	int fd = buf ? open(u->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640) : -1;
	if (fd < 0) {
		update_fail(u, "cannot create %s: %s", u->path, buf ? strerror(errno) : "out of memory");
		free(buf);
		return 500;
	}
	while (got < length) {
		size_t want = length - got < UPDATE_CHUNK ? (size_t)(length - got) : UPDATE_CHUNK;
		int n = mg_read(req->conn, buf, want);
		if (n <= 0) {
			update_fail(u, "the upload ended after %lld of %lld bytes", got, length);
			status = 400;
			goto fail;
		}
		if (update_write(fd, buf, (size_t)n) < 0) {
			int saved = errno;
			update_fail(u, "writing %s: %s", u->path, strerror(saved));
			status = saved == ENOSPC || saved == EDQUOT ? 507 : 500;
			goto fail;
		}
		got += n;
		int step = (int)(got * 20 / length); /* an event every 5 % */
		if (step != last_step) {
			last_step = step;
			update_set(u, UPDATE_UPLOADING, step * 5, "receiving the bundle", "update_progress");
		}
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		update_fail(u, "writing %s: %s", u->path, strerror(errno));
		status = errno == ENOSPC ? 507 : 500;
		goto fail;
	}
	free(buf);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(u->path);
	free(buf);
	return status;
}

static void update_get(struct http_request *req);

/* POST /api/system/update. */
static void update_post(struct http_request *req)
{
	struct http_update *u = req->s->update;
	const struct mg_request_info *ri = mg_get_request_info(req->conn);
	char why[512];
	long long length = ri->content_length;

	if (!update_content_type(req)) {
		http_reply_error(req, 415, "unsupported_media_type",
				 "a bundle is Content-Type: application/octet-stream or application/vnd.rauc.bundle");
		return;
	}
	if (length < 0) {
		http_reply_error(req, 411, "length_required", "a bundle upload needs a Content-Length");
		return;
	}
	if (length == 0) {
		http_reply_error(req, 400, "empty_body", "the request body is empty: send the bundle");
		return;
	}
	if (length > u->max_bundle) {
		http_reply_error(req, 413, "bundle_too_large", "a bundle of %lld bytes exceeds update.max_bundle (%lld)",
				 length, u->max_bundle);
		return;
	}
	sd_bus *bus = update_bus(why, sizeof(why));
	char *op = NULL;
	if (!bus || rauc_get(bus, "Operation", &op, why, sizeof(why)) < 0) {
		http_reply_error(req, 503, "update_unavailable", "updates need RAUC: %s", why);
		sd_bus_flush_close_unref(bus);
		return;
	}
	bool rauc_idle = strcmp(op, "idle") == 0;
	pthread_mutex_lock(&u->lock);
	bool busy = u->state == UPDATE_UPLOADING || u->state == UPDATE_INSTALLING;
	if (!busy && rauc_idle) {
		u->state = UPDATE_UPLOADING;
		u->percent = 0;
		u->last_error[0] = '\0';
		util_strlcpy(u->message, "receiving the bundle", sizeof(u->message));
		u->started_ns = time_wall_ns();
		u->finished_ns = 0;
	}
	pthread_mutex_unlock(&u->lock);
	if (busy || !rauc_idle) {
		http_reply_error(req, 409, "update_in_progress", "%s",
				 busy ? "an update is already in progress (GET /api/system/update)"
				      : "RAUC is busy with another operation");
		free(op);
		sd_bus_flush_close_unref(bus);
		return;
	}
	free(op);

	/* Room for the bundle, beyond what recordings keep in reserve. */
	struct statvfs sv;
	long long reserve = config_get_int(req->s->cfg, "recorder.disk_reserve");
	if (reserve < 0)
		reserve = 0;
	int status;
	if (statvfs(u->dir, &sv) == 0 && (long long)sv.f_bavail * (long long)sv.f_frsize < length + reserve) {
		update_fail(u, "%s has %lld bytes free; the bundle needs %lld plus recorder.disk_reserve (%lld)", u->dir,
			    (long long)sv.f_bavail * (long long)sv.f_frsize, length, reserve);
		status = 507;
	} else {
		LOG_INFO(&http_log, "req=%s update: receiving a bundle of %lld bytes into %s", req->id, length, u->path);
		status = update_receive(u, req, length);
	}
	if (status == 0) {
		status = update_install(u, bus);
		unlink(u->path);
		if (status == 200) {
			LOG_INFO(&http_log, "req=%s update: installed; reboot to run it", req->id);
			update_set(u, UPDATE_INSTALLED, 100, "installed: reboot to run it", "update_completed");
		}
	}
	sd_bus_flush_close_unref(bus);
	snprintf(req->note, sizeof(req->note), "update=%s", status == 200 ? "installed" : "failed");
	if (status == 200) {
		update_get(req);
		return;
	}
	pthread_mutex_lock(&u->lock);
	char detail[sizeof(u->last_error)];
	util_strlcpy(detail, u->last_error, sizeof(detail));
	pthread_mutex_unlock(&u->lock);
	static const struct {
		int status;
		const char *code;
	} codes[] = { { 400, "upload_incomplete" }, { 422, "bundle_rejected" }, { 503, "update_unavailable" },
		      { 507, "insufficient_storage" }, { 500, "install_failed" } };
	const char *code = "install_failed";
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (codes[i].status == status)
			code = codes[i].code;
	http_reply_error(req, status, code, "%s", detail);
}

/* GET /api/system/update: {state, percent, message, last_error,
 * reboot_required, started_at, finished_at, rauc: {available,
 * detail, operation, compatible}, booted_slot, other_slot, slots}. */
static void update_get(struct http_request *req)
{
	struct http_update *u = req->s->update;
	char why[512] = "", ts[40];
	cJSON *o = cJSON_CreateObject();
	cJSON *rauc = o ? cJSON_AddObjectToObject(o, "rauc") : NULL;
	if (!rauc) {
		cJSON_Delete(o);
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	pthread_mutex_lock(&u->lock);
	cJSON_AddStringToObject(o, "state", update_state_names[u->state]);
	cJSON_AddNumberToObject(o, "percent", u->percent);
	cJSON_AddStringToObject(o, "message", u->message);
	if (u->last_error[0])
		cJSON_AddStringToObject(o, "last_error", u->last_error);
	else
		cJSON_AddNullToObject(o, "last_error");
	cJSON_AddBoolToObject(o, "reboot_required", u->state == UPDATE_INSTALLED);
	if (u->started_ns)
		cJSON_AddStringToObject(o, "started_at", time_iso8601(u->started_ns, ts, sizeof(ts)));
	else
		cJSON_AddNullToObject(o, "started_at");
	if (u->finished_ns)
		cJSON_AddStringToObject(o, "finished_at", time_iso8601(u->finished_ns, ts, sizeof(ts)));
	else
		cJSON_AddNullToObject(o, "finished_at");
	cJSON_AddNumberToObject(o, "max_bundle_bytes", (double)u->max_bundle);
	pthread_mutex_unlock(&u->lock);

	sd_bus *bus = update_bus(why, sizeof(why));
	char *op = NULL, *compat = NULL;
	bool available = bus && rauc_get(bus, "Operation", &op, why, sizeof(why)) == 0;
	cJSON_AddBoolToObject(rauc, "available", available);
	if (available) {
		cJSON_AddNullToObject(rauc, "detail");
		cJSON_AddStringToObject(rauc, "operation", op);
		if (rauc_get(bus, "Compatible", &compat, why, sizeof(why)) == 0)
			cJSON_AddStringToObject(rauc, "compatible", compat);
		if (rauc_slots(bus, o, why, sizeof(why)) < 0)
			cJSON_AddStringToObject(rauc, "slots_error", why);
	} else {
		cJSON_AddStringToObject(rauc, "detail", why);
		cJSON_AddNullToObject(rauc, "operation");
		cJSON_AddNullToObject(o, "booted_slot");
		cJSON_AddNullToObject(o, "other_slot");
		cJSON_AddArrayToObject(o, "slots");
	}
	if (!cJSON_GetObjectItemCaseSensitive(o, "booted_slot"))
		cJSON_AddNullToObject(o, "booted_slot");
	free(op);
	free(compat);
	sd_bus_flush_close_unref(bus);
	http_reply_json(req, 200, o);
	cJSON_Delete(o);
}

/* POST /api/system/reboot: logind's Reboot (not interactive: the polkit
 * rule shipped in the image lets the edgerec user). Refused while an
 * update is being received or written. */
static void update_reboot(struct http_request *req)
{
	struct http_update *u = req->s->update;
	char why[512];
	pthread_mutex_lock(&u->lock);
	bool busy = u->state == UPDATE_UPLOADING || u->state == UPDATE_INSTALLING;
	pthread_mutex_unlock(&u->lock);
	if (busy) {
		http_reply_error(req, 409, "update_in_progress", "an update is being installed; reboot when it is done");
		return;
	}
	sd_bus *bus = update_bus(why, sizeof(why));
	if (!bus) {
		http_reply_error(req, 503, "reboot_unavailable", "cannot reboot: %s", why);
		return;
	}
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r = sd_bus_call_method(bus, "org.freedesktop.login1", "/org/freedesktop/login1",
				   "org.freedesktop.login1.Manager", "Reboot", &e, NULL, "b", 0);
	if (r < 0) {
		update_bus_error(&e, r, "logind (org.freedesktop.login1)", why, sizeof(why));
		http_reply_error(req, 503, "reboot_unavailable", "cannot reboot: %s", why);
	} else {
		LOG_WARN(&http_log, "req=%s rebooting on request of '%s'", req->id, req->user);
		static const char body[] = "{\"status\":\"rebooting\"}";
		http_reply(req, 202, "application/json", body, sizeof(body) - 1, NULL, NULL);
	}
	sd_bus_error_free(&e);
	sd_bus_flush_close_unref(bus);
}

void http_update_serve(struct http_request *req, int route)
{
	if (http_admin_check(req, false) < 0)
		return;
	if (route == HTTP_ROUTE_UPDATE)
		update_post(req);
	else if (route == HTTP_ROUTE_UPDATE_STATUS)
		update_get(req);
	else
		update_reboot(req);
}

struct http_update *http_update_new(struct http_server *s, char *err, size_t errlen)
{
	struct http_update *u = calloc(1, sizeof(*u));
	if (!u) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	u->s = s;
	pthread_mutex_init(&u->lock, NULL);
	const char *dir = config_get_str(s->cfg, "update.dir");
	if (dir && *dir)
		util_strlcpy(u->dir, dir, sizeof(u->dir));
	else
		snprintf(u->dir, sizeof(u->dir), "%s/update", config_get_str(s->cfg, "state_dir"));
	snprintf(u->path, sizeof(u->path), "%s/" UPDATE_FILE, u->dir);
	u->max_bundle = config_get_int(s->cfg, "update.max_bundle");
	util_strlcpy(u->message, "no update since start", sizeof(u->message));
	if (util_mkdir_p(u->dir, 0750) < 0) {
		snprintf(err, errlen, "update.dir %s: %s", u->dir, strerror(errno));
		http_update_free(u);
		return NULL;
	}
	/* An upload the last run did not finish (it stopped or crashed). */
	if (unlink(u->path) == 0)
		LOG_INFO(&http_log, "removed an unfinished bundle upload %s", u->path);
	return u;
}

void http_update_stop(struct http_update *u)
{
	if (u)
		atomic_store(&u->stopping, true);
}

void http_update_free(struct http_update *u)
{
	if (!u)
		return;
	pthread_mutex_destroy(&u->lock);
	free(u);
}
