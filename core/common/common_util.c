/* common_util: ids, strings and files. */
#include "common_util.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

int util_random_bytes(void *out, size_t len)
{
	uint8_t *p = out;
	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void util_uuid_v4(char out[UUID_STR_LEN])
{
	uint8_t b[16];
	if (util_random_bytes(b, sizeof(b)) != 0)
		abort(); /* the kernel's RNG never fails once booted */
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, UUID_STR_LEN,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
		 b[12], b[13], b[14], b[15]);
}

bool util_uuid_valid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return true;
}

size_t util_strlcpy(char *out, const char *src, size_t outlen)
{
	size_t len = strlen(src);
	if (outlen > 0) {
		size_t n = len < outlen - 1 ? len : outlen - 1;
		memcpy(out, src, n);
		out[n] = '\0';
	}
	return len;
}

int util_mkdir_p(const char *path, unsigned mode)
{
	char tmp[4096];
	if (util_strlcpy(tmp, path, sizeof(tmp)) >= sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int util_rm_rf(const char *path)
{
	if (access(path, F_OK) != 0)
		return 0;
	return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -errno;
}

char *util_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *data = NULL;
	size_t used = 0, cap = 0;
	for (;;) {
		if (cap - used < 4096) {
			cap = cap ? cap * 2 : 8192;
			char *n = realloc(data, cap + 1);
			if (!n) {
				free(data);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			data = n;
		}
		size_t got = fread(data + used, 1, cap - used, f);
		used += got;
		if (got == 0)
			break;
	}
	int err = ferror(f);
	fclose(f);
	if (err) {
		free(data);
		errno = EIO;
		return NULL;
	}
	data[used] = '\0';
	if (len)
		*len = used;
	return data;
}

int util_file_commit(FILE *f, const char *tmp, const char *path, char *err, size_t errlen)
{
	if (fclose(f) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		return -1;
	}
	if (rename(tmp, path) < 0) {
		snprintf(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
		return -1;
	}
	return 0;
}
