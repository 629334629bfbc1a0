/* media_source: the table of source drivers and the helpers they share. */
#include "media_source.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common_log.h"
#include "common_time.h"
#include "common_util.h"

static struct log_handle log_src = LOG_HANDLE("media/source");

#ifdef MEDIA_HAVE_SOURCE_RTP
extern const struct media_source_driver media_source_rtp;
#endif
#ifdef MEDIA_HAVE_SOURCE_V4L2
extern const struct media_source_driver media_source_v4l2;
#endif
#ifdef MEDIA_HAVE_ALSA
extern const struct media_source_driver media_source_alsa;
#endif

/* Every source the pipeline can open, by name. */
static const struct media_source_driver *const media_source_drivers[] = {
	&media_source_test,
	&media_source_file,
#ifdef MEDIA_HAVE_SOURCE_RTP
	&media_source_rtp,
#endif
#ifdef MEDIA_HAVE_SOURCE_V4L2
	&media_source_v4l2,
#endif
#ifdef MEDIA_HAVE_ALSA
	&media_source_alsa,
#endif
};

const struct media_source_driver *media_source_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(media_source_drivers); i++)
		if (strcmp(media_source_drivers[i]->name, name) == 0)
			return media_source_drivers[i];
	return NULL;
}

int media_source_open(struct media_source **out, const struct media_source_driver *driver,
		      const struct media_source_params *p, char *err, size_t errlen)
{
	struct media_source *src = calloc(1, sizeof(*src));
	*out = NULL;
	if (!src) {
		util_strlcpy(err, "out of memory", errlen);
		return -ENOMEM;
	}
	src->driver = driver;
	int rc = driver->open(src, p, err, errlen);
	if (rc < 0) {
		LOG_DEBUG(&log_src, "open %s failed: %s", driver->name, err);
		free(src);
		return rc;
	}
	if (src->nb_streams < 1 || src->nb_streams > MEDIA_SOURCE_MAX_STREAMS) {
		util_strlcpy(err, "source opened without streams", errlen);
		driver->close(src);
		free(src);
		return -EINVAL;
	}
	*out = src;
	return 0;
}

struct media_source *media_source_new(const struct media_source_driver *driver,
				      const struct media_source_params *p,
				      char *err, size_t errlen)
{
	struct media_source *src;
	return media_source_open(&src, driver, p, err, errlen) < 0 ? NULL : src;
}

void media_source_free(struct media_source *src)
{
	if (!src)
		return;
	src->driver->close(src);
	free(src);
}

/* Looks 'key' up in "k=v,k=v" (keys match whole; a key without '=' has an
 * empty value). */
bool media_source_arg(const char *args, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *s = args;
	while (s && *s) {
		const char *end = strchr(s, ',');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		if (len >= klen && strncmp(s, key, klen) == 0 &&
		    (len == klen || s[klen] == '=')) {
			const char *v = len == klen ? s + len : s + klen + 1;
			size_t vlen = (size_t)(s + len - v);
			if (outlen) {
				size_t n = vlen < outlen - 1 ? vlen : outlen - 1;
				memcpy(out, v, n);
				out[n] = '\0';
			}
			return true;
		}
		s = end ? end + 1 : NULL;
	}
	return false;
}

void media_packet_clear(struct media_packet *pkt)
{
	buf_unref(pkt->data);
	pkt->data = NULL;
}

bool media_packet_trim_s16(struct media_packet *pkt, int64_t from_ns, int rate, int channels)
{
	if (pkt->pts_ns >= from_ns)
		return true;
	if (!pkt->data || rate <= 0 || channels <= 0)
		return false;
	int64_t cut = ((from_ns - pkt->pts_ns) * rate + TIME_NS_PER_SEC - 1) / TIME_NS_PER_SEC;
	if (cut >= pkt->samples)
		return false;
	size_t frame = (size_t)channels * sizeof(int16_t);
	memmove(pkt->data->data, pkt->data->data + (size_t)cut * frame, (size_t)(pkt->samples - cut) * frame);
	pkt->samples -= (int)cut;
	pkt->data->size = (size_t)pkt->samples * frame;
	pkt->pts_ns += cut * TIME_NS_PER_SEC / rate;
	if (pkt->pts_ns < from_ns)
		pkt->pts_ns = from_ns; /* the rounding of the division above */
	pkt->duration_ns = (int64_t)pkt->samples * TIME_NS_PER_SEC / rate;
	return true;
}
