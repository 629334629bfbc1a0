/* common_buf: refcounted byte buffers for media and messages.
 *
 * A buffer is allocated with its data inline. buf_ref() adds a reference,
 * buf_unref() drops one and frees on the last. Reference counts are atomic,
 * so a buffer may be shared between threads; its bytes must not be written
 * once it has been shared. */
#ifndef EDGEREC_COMMON_BUF_H
#define EDGEREC_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;   /* points into the same allocation */
	size_t size;     /* bytes in use */
	size_t capacity; /* bytes allocated for data */
	int refcount;    /* atomic; do not touch directly */
};

/* Returns a new buffer of 'size' bytes (contents uninitialised) with one
 * reference owned by the caller, or NULL when out of memory. */
struct buf *buf_new(size_t size);
/* Returns a new buffer holding a copy of 'data'. */
struct buf *buf_new_copy(const void *data, size_t size);
/* Adds a reference; returns 'b' for chaining. buf_ref(NULL) returns NULL. */
struct buf *buf_ref(struct buf *b);
/* Drops a reference; after the call the caller's pointer is no longer valid.
 * buf_unref(NULL) is a no-op. */
void buf_unref(struct buf *b);

#endif
