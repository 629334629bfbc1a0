/* common_thread: starting our own threads with a named, right-sized stack.
 *
 * glibc gives every thread the stack of `ulimit -s` (8 MB): only the pages a
 * thread touches are resident, but each stack takes that much address space,
 * which limits how many recordings a 32-bit board can run (a passthrough
 * recording has two threads, an encoded one four). Threads started here get
 * the stack size asked for and a name that shows in /proc/<pid>/task/<tid>/comm,
 * top -H and gdb, so a memory or CPU figure can be traced to its thread. */
#ifndef EDGEREC_COMMON_THREAD_H
#define EDGEREC_COMMON_THREAD_H

#include <pthread.h>
#include <stddef.h>

/* Stack for threads that run codecs (libvpx, libopus keep frame-sized
 * arrays on the stack), the muxer or a source: 1 MB leaves ample room, also
 * under ASan. */
#define THREAD_STACK_MEDIA (1u << 20)

/* Starts 'fn(arg)' like pthread_create with a stack of 'stack_size' bytes
 * (0: the default) and the name 'name' (cut to 15 characters; may be NULL).
 * Returns 0 or an errno value (the thread did not start). */
int thread_start(pthread_t *t, const char *name, size_t stack_size, void *(*fn)(void *), void *arg);

#endif
