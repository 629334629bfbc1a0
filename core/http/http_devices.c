/* http_devices: GET /api/system/devices (admin): the cameras (V4L2 capture
 * nodes: path, the stable links to it, card, driver, bus, and per pixel
 * format the sizes with their frame rates) and microphones (ALSA capture
 * PCMs, when the build has the ALSA module) an operator can wire a room to
 * in sources.lua. Read from the devices at each request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http_internal.h"
#include "media_v4l2.h"
#ifdef MEDIA_HAVE_ALSA
#include "media_alsa.h"
#endif

#define DEVICES_MAX 32

/* The formats of one camera: [{"pixel_format", "sizes": [{"width",
 * "height", "fps": [..]}]}], in the order the camera lists them. */
static cJSON *devices_formats(const struct media_v4l2_device *d)
{
	cJSON *formats = cJSON_CreateArray();
	for (int i = 0; formats && i < d->nb_modes; i++) {
		const struct media_v4l2_mode *m = &d->modes[i];
		char name[5];
		media_v4l2_format_name(m->fourcc, name);
		/* the format's and the size's entries: the last ones, or new */
		cJSON *f = cJSON_GetArrayItem(formats, cJSON_GetArraySize(formats) - 1);
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(f, "pixel_format");
		if (!f || !cJSON_IsString(fn) || strcmp(fn->valuestring, name) != 0) {
			f = cJSON_CreateObject();
			cJSON_AddItemToArray(formats, f);
			cJSON_AddStringToObject(f, "pixel_format", name);
			cJSON_AddBoolToObject(f, "supported", media_v4l2_format_known(m->fourcc));
			cJSON_AddArrayToObject(f, "sizes");
		}
		cJSON *sizes = cJSON_GetObjectItemCaseSensitive(f, "sizes");
		cJSON *sz = cJSON_GetArrayItem(sizes, cJSON_GetArraySize(sizes) - 1);
		const cJSON *w = cJSON_GetObjectItemCaseSensitive(sz, "width");
		const cJSON *h = cJSON_GetObjectItemCaseSensitive(sz, "height");
		if (!sz || (int)w->valuedouble != m->width || (int)h->valuedouble != m->height) {
			sz = cJSON_CreateObject();
			cJSON_AddItemToArray(sizes, sz);
			cJSON_AddNumberToObject(sz, "width", m->width);
			cJSON_AddNumberToObject(sz, "height", m->height);
			cJSON_AddArrayToObject(sz, "fps");
		}
		double fps = m->fps_den > 0 ? (double)m->fps_num / m->fps_den : 0;
		cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(sz, "fps"),
				     cJSON_CreateNumber((double)(long long)(fps * 1000 + 0.5) / 1000));
	}
	return formats;
}

static cJSON *devices_cameras(void)
{
	struct media_v4l2_device *list = calloc(DEVICES_MAX, sizeof(*list));
	cJSON *cams = cJSON_CreateArray();
	int n = list ? media_v4l2_list(list, DEVICES_MAX) : 0;
	for (int i = 0; cams && i < n; i++) {
		const struct media_v4l2_device *d = &list[i];
		cJSON *c = cJSON_CreateObject();
		cJSON_AddItemToArray(cams, c);
		cJSON_AddStringToObject(c, "path", d->path);
		cJSON *ids = cJSON_AddArrayToObject(c, "ids");
		for (int k = 0; k < d->nb_ids; k++)
			cJSON_AddItemToArray(ids, cJSON_CreateString(d->ids[k]));
		cJSON_AddBoolToObject(c, "busy", d->busy);
		if (d->busy)
			continue; /* in use by another program: nothing more can be read */
		cJSON_AddStringToObject(c, "card", d->card);
		cJSON_AddStringToObject(c, "driver", d->driver);
		cJSON_AddStringToObject(c, "bus", d->bus);
		cJSON_AddItemToObject(c, "formats", devices_formats(d));
	}
	if (list)
		media_v4l2_list_free(list, n);
	free(list);
	return cams;
}

static cJSON *devices_microphones(void)
{
	cJSON *mics = cJSON_CreateArray();
#ifdef MEDIA_HAVE_ALSA
	struct media_alsa_device *list = calloc(DEVICES_MAX, sizeof(*list));
	int n = list ? media_alsa_list(list, DEVICES_MAX) : 0;
	for (int i = 0; mics && i < n; i++) {
		cJSON *m = cJSON_CreateObject();
		cJSON_AddItemToArray(mics, m);
		cJSON_AddStringToObject(m, "id", list[i].id);
		cJSON_AddStringToObject(m, "name", list[i].name);
		cJSON_AddNumberToObject(m, "channels_min", list[i].channels_min);
		cJSON_AddNumberToObject(m, "channels_max", list[i].channels_max);
		cJSON_AddNumberToObject(m, "rate_min", list[i].rate_min);
		cJSON_AddNumberToObject(m, "rate_max", list[i].rate_max);
	}
	free(list);
#endif
	return mics;
}

void http_devices_serve(struct http_request *req)
{
	if (http_admin_check(req, false) < 0)
		return;
	cJSON *body = cJSON_CreateObject();
	if (body) {
		cJSON_AddItemToObject(body, "cameras", devices_cameras());
		cJSON_AddItemToObject(body, "microphones", devices_microphones());
#ifndef MEDIA_HAVE_ALSA
		cJSON_AddStringToObject(body, "microphones_detail", "this build has no ALSA capture");
#endif
	}
	if (body && cJSON_GetObjectItemCaseSensitive(body, "cameras") &&
	    cJSON_GetObjectItemCaseSensitive(body, "microphones"))
		http_reply_json(req, 200, body);
	else
		http_reply_error(req, 500, "internal", "out of memory");
	cJSON_Delete(body);
}
