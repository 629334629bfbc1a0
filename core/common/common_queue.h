/* common_queue: a bounded multi-producer, multi-consumer queue of pointers.
 *
 * The queue never grows: queue_push() on a full queue refuses (the producer
 * drops the item and the queue counts the drop). queue_pop() waits up to a
 * timeout. queue_close() wakes every waiter; pops then drain what is left and
 * return QUEUE_CLOSED. Any thread may call any function. */
#ifndef EDGEREC_COMMON_QUEUE_H
#define EDGEREC_COMMON_QUEUE_H

#include <stddef.h>
#include <stdint.h>

enum {
	QUEUE_OK = 0,
	QUEUE_FULL = -1,
	QUEUE_TIMEOUT = -2,
	QUEUE_CLOSED = -3,
};

struct queue;

/* Returns a queue holding at most 'capacity' items, or NULL. */
struct queue *queue_new(size_t capacity);
/* Frees the queue; items still inside are passed to 'free_item' if given. */
void queue_free(struct queue *q, void (*free_item)(void *));
/* Adds 'item' (ownership passes to the queue) or returns QUEUE_FULL (the
 * caller keeps ownership, and the drop is counted) or QUEUE_CLOSED. */
int queue_push(struct queue *q, void *item);
/* Takes the oldest item into '*item' (ownership to the caller). Waits up to
 * 'timeout_ns' (negative: forever). Returns QUEUE_OK, QUEUE_TIMEOUT or
 * QUEUE_CLOSED (closed and empty). */
int queue_pop(struct queue *q, void **item, int64_t timeout_ns);
/* Batching: from now on a push wakes a waiting consumer only once the queue
 * holds 'count' items (default 1: every push). The consumer then pops with a
 * timeout, which bounds how long an item waits; queue_wake() wakes it now
 * (e.g. after the last item of a stream). Fewer wakeups when items come in
 * bursts and latency does not matter (a file writer). */
void queue_set_wake(struct queue *q, size_t count);
void queue_wake(struct queue *q);
void queue_close(struct queue *q);
size_t queue_length(struct queue *q);
uint64_t queue_dropped(struct queue *q);

#endif
