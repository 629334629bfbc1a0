/* common_err: filling the caller's error buffer, the out-parameter through
 * which a message travels up to an HTTP reply or the command line. */
#ifndef EDGEREC_COMMON_ERR_H
#define EDGEREC_COMMON_ERR_H

#include <stddef.h>

/* Formats into 'err' (at most errlen bytes, always terminated). Does nothing
 * when 'err' is NULL or 'errlen' is 0, so callers may pass no buffer. */
void err_set(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
