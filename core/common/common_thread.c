/* common_thread: threads with a chosen stack size and a name. */
#include "common_thread.h"

#include <limits.h>
#include <string.h>

#include "common_util.h"

int thread_start(pthread_t *t, const char *name, size_t stack_size, void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	int rc = pthread_attr_init(&attr);
	if (rc != 0)
		return rc;
	if (stack_size > 0) {
		if (stack_size < (size_t)PTHREAD_STACK_MIN)
			stack_size = (size_t)PTHREAD_STACK_MIN;
		rc = pthread_attr_setstacksize(&attr, stack_size);
	}
	if (rc == 0)
		rc = pthread_create(t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	if (rc == 0 && name) {
		char cut[16];
		util_strlcpy(cut, name, sizeof(cut));
		pthread_setname_np(*t, cut);
	}
	return rc;
}
