/* fuzz_storage_sigv4: the SigV4 canonicalisation (path, query, headers) on
 * arbitrary request parts. Signing must never crash, must be deterministic,
 * and a presigned query must end with the signature. The input is split on
 * NUL bytes into method, path, query and header name/value pairs. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Compiled in (not taken from libstorage.a) so the fuzzer's coverage
 * instrumentation sees inside it. */
#include "storage_sigv4.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	const char *part[16] = { 0 };
	size_t n = 0;
	for (size_t off = 0; off <= size && n < 16; n++) {
		part[n] = buf + off;
		off += strlen(buf + off) + 1;
	}
	struct storage_sigv4_header h[7];
	size_t nh = 0;
	h[nh++] = (struct storage_sigv4_header){ "host", "bucket.example.com" };
	for (size_t i = 3; i + 1 < n && nh < 7; i += 2)
		h[nh++] = (struct storage_sigv4_header){ part[i], part[i + 1] };
	struct storage_sigv4_request r = {
		.method = part[0] ? part[0] : "GET",
		.path = n > 1 ? part[1] : "/",
		.query = n > 2 ? part[2] : NULL,
		.headers = h,
		.nheaders = nh,
	};
	for (int s3 = 0; s3 < 2; s3++) {
		struct storage_sigv4_key k = { .access_key = "AK", .secret_key = "SK", .region = "us-east-1",
					       .service = s3 ? "s3" : "service", .s3_path_rules = s3 };
		char a1[4096], a2[4096];
		int r1 = storage_sigv4_authorization(&r, &k, "20150830T123600Z", a1, sizeof(a1), NULL);
		int r2 = storage_sigv4_authorization(&r, &k, "20150830T123600Z", a2, sizeof(a2), NULL);
		if (r1 != r2 || (r1 == 0 && strcmp(a1, a2) != 0))
			abort();
		char *q = storage_sigv4_presign_query(&r, &k, "20150830T123600Z", 60);
		if (q) {
			size_t ql = strlen(q);
			if (ql < 80 || memcmp(q + ql - 80, "X-Amz-Signature=", 16) != 0)
				abort();
		}
		free(q);
	}
	free(buf);
	return 0;
}
