/* crypto_password: the operator's password as a PBKDF2-HMAC-SHA-256 hash
 * line: "pbkdf2-sha256$<iterations>$<salt>$<hash>" (salt 16 random bytes,
 * hash 32 bytes, both base64url without padding). The line is what
 * `edgerec passwd` prints and console.password_hash holds.
 *
 * Provides: hashing, verification, a syntax check.
 * Uses: mbedtls (PBKDF2 via its md layer), crypto_random. Any thread. */
#ifndef EDGEREC_CRYPTO_PASSWORD_H
#define EDGEREC_CRYPTO_PASSWORD_H

#include <stdbool.h>

/* OWASP's 2023 figure for PBKDF2-HMAC-SHA-256: 0.55 CPU-seconds on the
 * x86 build machine, a few seconds on a small ARM board, paid once per
 * sign-in attempt (failed ones are rate-limited per address). */
#define CRYPTO_PASSWORD_ITERATIONS 600000UL
#define CRYPTO_PASSWORD_MIN_ITERATIONS 1000UL
#define CRYPTO_PASSWORD_MAX_ITERATIONS 10000000UL

/* Hashes 'password' with a fresh salt. Returns the malloc'd line (the
 * caller frees it) or NULL (iterations out of range, no entropy). */
char *crypto_password_hash(const char *password, unsigned long iterations);

/* Checks 'password' against 'line' in time independent of where they
 * differ. Returns 1 when it matches, 0 when not, -1 when 'line' is not a
 * valid hash line. */
int crypto_password_verify(const char *line, const char *password);

/* True when 'line' is a well-formed hash line. */
bool crypto_password_line_valid(const char *line);

#endif
