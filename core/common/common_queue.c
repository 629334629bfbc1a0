/* common_queue: bounded pointer queue with drop counting. */
#include "common_queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct queue {
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	void **items;
	size_t capacity, head, count;
	size_t wake_at;  /* a push wakes a waiting consumer once count reaches it */
	uint64_t dropped;
	bool closed;
};

struct queue *queue_new(size_t capacity)
{
	if (capacity == 0)
		return NULL;
	struct queue *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->items = calloc(capacity, sizeof(void *));
	if (!q->items) {
		free(q);
		return NULL;
	}
	q->capacity = capacity;
	q->wake_at = 1;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&q->nonempty, &attr);
	pthread_condattr_destroy(&attr);
	return q;
}

void queue_free(struct queue *q, void (*free_item)(void *))
{
	if (!q)
		return;
	for (size_t i = 0; i < q->count; i++) {
		void *it = q->items[(q->head + i) % q->capacity];
		if (free_item)
			free_item(it);
	}
	pthread_cond_destroy(&q->nonempty);
	pthread_mutex_destroy(&q->lock);
	free(q->items);
	free(q);
}

int queue_push(struct queue *q, void *item)
{
	int rc = QUEUE_OK;
	pthread_mutex_lock(&q->lock);
	if (q->closed) {
		rc = QUEUE_CLOSED;
	} else if (q->count == q->capacity) {
		q->dropped++;
		rc = QUEUE_FULL;
	} else {
		q->items[(q->head + q->count) % q->capacity] = item;
		q->count++;
		if (q->count >= q->wake_at)
			pthread_cond_signal(&q->nonempty);
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

int queue_pop(struct queue *q, void **item, int64_t timeout_ns)
{
	struct timespec deadline;
	if (timeout_ns >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += timeout_ns / 1000000000LL;
		deadline.tv_nsec += timeout_ns % 1000000000LL;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
	}
	int rc = QUEUE_OK;
	pthread_mutex_lock(&q->lock);
	while (q->count == 0 && !q->closed) {
		if (timeout_ns < 0) {
			pthread_cond_wait(&q->nonempty, &q->lock);
		} else if (pthread_cond_timedwait(&q->nonempty, &q->lock, &deadline) == ETIMEDOUT) {
			break;
		}
	}
	if (q->count > 0) {
		*item = q->items[q->head];
		q->head = (q->head + 1) % q->capacity;
		q->count--;
	} else {
		rc = q->closed ? QUEUE_CLOSED : QUEUE_TIMEOUT;
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

void queue_set_wake(struct queue *q, size_t count)
{
	pthread_mutex_lock(&q->lock);
	q->wake_at = count < 1 ? 1 : count > q->capacity ? q->capacity : count;
	pthread_mutex_unlock(&q->lock);
}

void queue_wake(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	if (q->count > 0)
		pthread_cond_signal(&q->nonempty);
	pthread_mutex_unlock(&q->lock);
}

void queue_close(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = true;
	pthread_cond_broadcast(&q->nonempty);
	pthread_mutex_unlock(&q->lock);
}

size_t queue_length(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	size_t n = q->count;
	pthread_mutex_unlock(&q->lock);
	return n;
}

uint64_t queue_dropped(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	uint64_t n = q->dropped;
	pthread_mutex_unlock(&q->lock);
	return n;
}
