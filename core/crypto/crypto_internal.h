/* crypto_internal: what the crypto module's files share and nobody else
 * sees (the random callback in the shape mbedtls wants). */
#ifndef EDGEREC_CRYPTO_INTERNAL_H
#define EDGEREC_CRYPTO_INTERNAL_H

#include <stddef.h>

/* f_rng for mbedtls calls: draws from crypto_random(). */
int crypto_rng_cb(void *unused, unsigned char *out, size_t len);

/* Writes 'len' bytes to 'path' through a temporary file in the same
 * directory and a rename, with file mode 'mode'. Returns 0 or -errno. */
int crypto_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);

#endif
