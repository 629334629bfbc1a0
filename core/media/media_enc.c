/* media_enc: creating and freeing encoders through their driver table. */
#include "media_enc.h"

#include <stdlib.h>

#include "common_util.h"

struct media_enc *media_enc_new(const struct media_enc_driver *driver,
				const struct media_enc_params *p, char *err, size_t errlen)
{
	struct media_enc *e = calloc(1, sizeof(*e));
	if (!e) {
		util_strlcpy(err, "out of memory", errlen);
		return NULL;
	}
	e->driver = driver;
	if (driver->open(e, p, err, errlen) < 0) {
		driver->close(e);
		free(e);
		return NULL;
	}
	return e;
}

void media_enc_free(struct media_enc *e)
{
	if (!e)
		return;
	e->driver->close(e);
	free(e);
}
