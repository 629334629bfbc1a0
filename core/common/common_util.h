/* common_util: small helpers every module uses: random ids, bounded string
 * copies, file helpers.
 *
 * Uses getrandom(2) for uuid v4 (no crypto library needed for ids). */
#ifndef EDGEREC_COMMON_UTIL_H
#define EDGEREC_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define UUID_STR_LEN 37 /* 36 characters and the NUL */

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Writes a random (version 4) uuid in lower-case hex into 'out'. */
void util_uuid_v4(char out[UUID_STR_LEN]);
/* True when 's' is a canonical lower- or upper-case uuid (any version). */
bool util_uuid_valid(const char *s);
/* Copies at most outlen-1 bytes and always terminates; returns strlen(src). */
size_t util_strlcpy(char *out, const char *src, size_t outlen);
/* Fills 'out' with 'len' bytes from the kernel's random source. Returns 0 or -1. */
int util_random_bytes(void *out, size_t len);
/* Modes of what recordings leave on disk (media files, thumbnails, remuxed
 * copies, and their directories): owner and group only, so the recordings
 * are not readable by every local user. */
#define UTIL_MEDIA_FILE_MODE 0640
#define UTIL_MEDIA_DIR_MODE 0750
/* Creates 'path' and its missing parents with 'mode'. Returns 0 or -errno. */
int util_mkdir_p(const char *path, unsigned mode);
/* Removes 'path' and everything below it. Returns 0 or -errno (missing is 0). */
int util_rm_rf(const char *path);
/* Reads a whole file into a NUL-terminated malloc'd buffer (caller frees).
 * Returns NULL and sets errno on failure; 'len' may be NULL. */
char *util_read_file(const char *path, size_t *len);
/* Puts a file written through the temporary 'tmp' in place: closes 'f'
 * (always; after the call it is no longer valid) and renames 'tmp' to
 * 'path', so a reader sees the whole file or none. Returns 0, or -1 with
 * the reason in 'err'; 'tmp' is left for the caller to remove. */
int util_file_commit(FILE *f, const char *tmp, const char *path, char *err, size_t errlen);

#endif
