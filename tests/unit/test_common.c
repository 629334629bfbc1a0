/* test_common: log levels, ISO-8601, uuid, buffers, the bounded queue and threads. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "common_buf.h"
#include "common_log.h"
#include "common_queue.h"
#include "common_thread.h"
#include "common_time.h"
#include "common_util.h"

static void test_time(void)
{
	char s[32];
	CHECK_STR(time_iso8601(1764013000123LL * TIME_NS_PER_MS, s, sizeof(s)), "2025-11-24T19:36:40.123Z");
	int64_t ns = 0;
	CHECK_INT(time_parse_iso8601("2025-11-24T19:36:40.123Z", &ns), 0);
	CHECK_INT(ns, 1764013000123LL * TIME_NS_PER_MS);
	CHECK_INT(time_parse_iso8601("2025-11-24T19:36:40Z", &ns), 0);
	CHECK_INT(ns, 1764013000LL * TIME_NS_PER_SEC);
	CHECK(time_parse_iso8601("2025-11-24 19:36:40", &ns) < 0);
	CHECK(time_parse_iso8601("nonsense", &ns) < 0);
	CHECK(time_mono_ns() > 0);
}

static void test_uuid(void)
{
	char a[UUID_STR_LEN], b[UUID_STR_LEN];
	util_uuid_v4(a);
	util_uuid_v4(b);
	CHECK(util_uuid_valid(a));
	CHECK(strcmp(a, b) != 0);
	CHECK(a[14] == '4');
	CHECK(strchr("89ab", a[19]) != NULL);
	CHECK(!util_uuid_valid("not-a-uuid"));
	CHECK(!util_uuid_valid("0123456789abcdef0123456789abcdef0123"));
	CHECK(!util_uuid_valid(NULL));
}

static void test_buf(void)
{
	struct buf *b = buf_new_copy("hello", 5);
	CHECK(b && b->size == 5 && memcmp(b->data, "hello", 5) == 0);
	CHECK(buf_ref(b) == b);
	buf_unref(b);
	buf_unref(b);
	buf_unref(NULL);
}

static void *producer(void *arg)
{
	struct queue *q = arg;
	for (intptr_t i = 1; i <= 1000; i++)
		while (queue_push(q, (void *)i) == QUEUE_FULL)
			time_sleep_ns(1000);
	queue_close(q);
	return NULL;
}

static void test_queue(void)
{
	struct queue *q = queue_new(2);
	void *it = NULL;
	CHECK_INT(queue_push(q, (void *)1), QUEUE_OK);
	CHECK_INT(queue_push(q, (void *)2), QUEUE_OK);
	CHECK_INT(queue_push(q, (void *)3), QUEUE_FULL);
	CHECK_INT(queue_dropped(q), 1);
	CHECK_INT(queue_length(q), 2);
	CHECK_INT(queue_pop(q, &it, 0), QUEUE_OK);
	CHECK(it == (void *)1);
	CHECK_INT(queue_pop(q, &it, 0), QUEUE_OK);
	CHECK(it == (void *)2);
	CHECK_INT(queue_pop(q, &it, 1000000), QUEUE_TIMEOUT);
	queue_free(q, NULL);

	/* Order is kept across threads and close drains. */
	q = queue_new(8);
	pthread_t t;
	pthread_create(&t, NULL, producer, q);
	intptr_t expect = 1;
	int rc;
	while ((rc = queue_pop(q, &it, -1)) == QUEUE_OK) {
		CHECK_INT((intptr_t)it, expect);
		expect++;
	}
	CHECK_INT(rc, QUEUE_CLOSED);
	CHECK_INT(expect, 1001);
	pthread_join(t, NULL);
	queue_free(q, NULL);
}

struct batch_probe {
	struct queue *q;
	int pushes;       /* items to push after the consumer waits */
	bool wake;        /* then queue_wake() */
};

static void *batch_producer(void *arg)
{
	struct batch_probe *b = arg;
	time_sleep_ns(100 * TIME_NS_PER_MS);  /* the consumer is waiting by now */
	for (intptr_t i = 1; i <= b->pushes; i++)
		queue_push(b->q, (void *)i);
	if (b->wake)
		queue_wake(b->q);
	return NULL;
}

/* Milliseconds a pop with a 2 s timeout waits while another thread pushes
 * 'pushes' items (and wakes the queue if 'wake') into a queue that wakes its
 * consumer at 3 items. */
static int64_t batch_wait_ms(int pushes, bool wake)
{
	struct queue *q = queue_new(8);
	queue_set_wake(q, 3);
	struct batch_probe b = { .q = q, .pushes = pushes, .wake = wake };
	pthread_t t;
	void *it = NULL;
	int64_t t0 = time_mono_ns();
	pthread_create(&t, NULL, batch_producer, &b);
	CHECK_INT(queue_pop(q, &it, 2 * TIME_NS_PER_SEC), QUEUE_OK);
	int64_t waited = (time_mono_ns() - t0) / TIME_NS_PER_MS;
	CHECK(it == (void *)1);
	pthread_join(t, NULL);
	queue_free(q, NULL);
	return waited;
}

static void test_queue_batch(void)
{
	/* Below the threshold the consumer sleeps out its timeout and then
	 * finds the item; at the threshold, or woken, it runs at once. */
	CHECK(batch_wait_ms(1, false) >= 1900);
	CHECK(batch_wait_ms(3, false) < 1500);
	CHECK(batch_wait_ms(1, true) < 1500);
}

/* What a thread started by thread_start sees of itself. */
struct thread_probe {
	const char *want;  /* the name to wait for, or NULL */
	size_t stack;
	char name[16];
};

static void *thread_probe_main(void *arg)
{
	struct thread_probe *tp = arg;
	pthread_attr_t attr;
	if (pthread_getattr_np(pthread_self(), &attr) == 0) {
		pthread_attr_getstacksize(&attr, &tp->stack);
		pthread_attr_destroy(&attr);
	}
	/* The name is set just after the thread starts: wait for it. */
	for (int i = 0; tp->want && i < 1000 && strcmp(tp->name, tp->want) != 0; i++) {
		pthread_getname_np(pthread_self(), tp->name, sizeof(tp->name));
		usleep(1000);
	}
	return NULL;
}

static void test_thread(void)
{
	struct thread_probe tp = { .want = "rec-venc-long-n" };
	pthread_t t;
	CHECK_INT(thread_start(&t, "rec-venc-long-name", THREAD_STACK_MEDIA, thread_probe_main, &tp), 0);
	pthread_join(t, NULL);
	CHECK(tp.stack >= THREAD_STACK_MEDIA && tp.stack < 2 * THREAD_STACK_MEDIA);
	CHECK(strcmp(tp.name, "rec-venc-long-n") == 0);
	/* Below the minimum: raised to it, the thread still runs. */
	memset(&tp, 0, sizeof(tp));
	CHECK_INT(thread_start(&t, NULL, 1, thread_probe_main, &tp), 0);
	pthread_join(t, NULL);
	CHECK(tp.stack >= (size_t)PTHREAD_STACK_MIN);
}

static void test_files(void)
{
	char dir[] = "/tmp/edgerec-test-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256];
	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	CHECK_INT(util_mkdir_p(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/a/b/c/f.txt", dir);
	FILE *f = fopen(path, "w");
	fputs("content", f);
	fclose(f);
	size_t len = 0;
	char *data = util_read_file(path, &len);
	CHECK(data && len == 7 && strcmp(data, "content") == 0);
	free(data);
	CHECK(util_read_file("/nonexistent/file", NULL) == NULL);
	CHECK_INT(util_rm_rf(dir), 0);
	CHECK(access(dir, F_OK) != 0);
}

int main(void)
{
	CHECK_INT(log_level_from_name("debug"), LOG_LEVEL_DEBUG);
	CHECK_INT(log_level_from_name("bogus"), -1);
	test_time();
	test_uuid();
	test_buf();
	test_queue();
	test_queue_batch();
	test_thread();
	test_files();
	return check_exit();
}
