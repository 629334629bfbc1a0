/* common_buf: refcounted byte buffers. */
#include "common_buf.h"

#include <stdlib.h>
#include <string.h>

struct buf *buf_new(size_t size)
{
	struct buf *b = malloc(sizeof(*b) + (size ? size : 1));
	if (!b)
		return NULL;
	b->data = (uint8_t *)(b + 1);
	b->size = size;
	b->capacity = size;
	__atomic_store_n(&b->refcount, 1, __ATOMIC_RELAXED);
	return b;
}

struct buf *buf_new_copy(const void *data, size_t size)
{
	struct buf *b = buf_new(size);
	if (b && size)
		memcpy(b->data, data, size);
	return b;
}

struct buf *buf_ref(struct buf *b)
{
	if (b)
		__atomic_add_fetch(&b->refcount, 1, __ATOMIC_RELAXED);
	return b;
}

void buf_unref(struct buf *b)
{
	if (b && __atomic_sub_fetch(&b->refcount, 1, __ATOMIC_ACQ_REL) == 0)
		free(b);
}
