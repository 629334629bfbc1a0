/* crypto_cert: the server's self-signed TLS certificate and its JWT secret
 * file, both kept in the state directory. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "common_log.h"
#include "common_err.h"
#include "common_util.h"
#include "crypto.h"
#include "crypto_internal.h"

static struct log_handle log_cert = LOG_HANDLE("crypto/cert");

#define CERT_VALID_DAYS 3653
#define SECRET_RANDOM_BYTES 32
#define SECRET_FILE_MAX 4096


static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Creates a temporary file beside 'path' with 'mode' and writes 'data' to
 * it. Returns the open-and-synced file's name (malloc'd) or NULL with
 * errno set. */
static char *write_temp(const char *path, const void *data, size_t len, unsigned mode)
{
	size_t n = strlen(path) + 16;
	char *tmp = malloc(n);
	int fd = -1, e = 0;
	if (!tmp)
		return NULL;
	snprintf(tmp, n, "%s.tmp.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0)
		goto fail;
	if (fchmod(fd, mode) < 0)
		goto fail_unlink;
	if ((e = write_all(fd, data, len)) < 0) {
		errno = -e;
		goto fail_unlink;
	}
	if (fsync(fd) < 0)
		goto fail_unlink;
	if (close(fd) < 0) {
		fd = -1;
		goto fail_unlink;
	}
	return tmp;
fail_unlink:
	e = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = e;
fail:
	e = errno;
	free(tmp);
	errno = e;
	return NULL;
}

int crypto_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	char *tmp = write_temp(path, data, len, mode);
	if (!tmp)
		return -errno;
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		free(tmp);
		return -e;
	}
	free(tmp);
	return 0;
}

/* ---- the JWT secret file ---------------------------------------------- */

/* Reads the secret from 'path'. Returns 0, -ENOENT when missing, or another
 * negative value with 'err' filled. */
static int secret_read(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
	char buf[SECRET_FILE_MAX + 1];
	size_t len = 0;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077))
		LOG_WARN(&log_cert, "%s is readable by group or others (mode %03o)", path,
			 (unsigned)(st.st_mode & 0777));
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_set(err, errlen, "%s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf) - 1) {
			err_set(err, errlen, "%s: secret file larger than %d bytes", path, SECRET_FILE_MAX);
			close(fd);
			return -1;
		}
	}
	close(fd);
	if (memchr(buf, '\0', len)) {
		err_set(err, errlen, "%s: NUL byte in secret", path);
		return -1;
	}
	buf[len] = '\0';
	char *s = buf;
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
	if (!n) {
		err_set(err, errlen, "%s: empty secret", path);
		return -1;
	}
	if (n + 1 > outlen) {
		err_set(err, errlen, "%s: secret longer than %zu bytes", path, outlen ? outlen - 1 : 0);
		return -1;
	}
	memcpy(out, s, n + 1);
	return 0;
}

int crypto_load_or_create_secret(const char *path, bool create, char *out, size_t outlen,
				 char *err, size_t errlen)
{
	uint8_t raw[SECRET_RANDOM_BYTES];
	char *text = NULL, *tmp = NULL;
	int rc = -1;

	if (!path || !out || !outlen) {
		err_set(err, errlen, "no secret file given");
		return -1;
	}
	int r = secret_read(path, out, outlen, err, errlen);
	if (r == 0)
		return 0;
	if (r != -ENOENT)
		return -1;
	if (!create) {
		err_set(err, errlen, "%s does not exist", path);
		return -1;
	}
	if (crypto_random(raw, sizeof(raw)) < 0) {
		err_set(err, errlen, "no random bytes for a new secret");
		goto out;
	}
	text = crypto_base64url_encode(raw, sizeof(raw));
	if (!text) {
		err_set(err, errlen, "out of memory");
		goto out;
	}
	size_t n = strlen(text);
	if (n + 1 > outlen) {
		err_set(err, errlen, "secret buffer too small (%zu bytes)", outlen);
		goto out;
	}
	text[n] = '\n';
	tmp = write_temp(path, text, n + 1, 0600);
	text[n] = '\0';
	if (!tmp) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	/* link() fails when another process created the file meanwhile: then
	 * both use the one that won. */
	if (link(tmp, path) < 0) {
		if (errno != EEXIST) {
			err_set(err, errlen, "%s: %s", path, strerror(errno));
			goto out;
		}
		rc = secret_read(path, out, outlen, err, errlen) == 0 ? 0 : -1;
		goto out;
	}
	memcpy(out, text, n + 1);
	LOG_INFO(&log_cert, "generated a new JWT secret in %s", path);
	rc = 1;
out:
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	if (text) {
		memset(text, 0, strlen(text));
		free(text);
	}
	memset(raw, 0, sizeof(raw));
	return rc;
}

/* ---- self-signed certificate ---------------------------------------------- */

/* Prepends one GeneralName ([tag] IMPLICIT value) to the buffer being
 * written backwards from *p. Returns the bytes written or a negative
 * mbedtls error. */
static int san_write_name(unsigned char **p, unsigned char *start, int tag, const void *v, size_t len)
{
	int r, total = 0;
	if ((r = mbedtls_asn1_write_raw_buffer(p, start, v, len)) < 0)
		return r;
	total += r;
	if ((r = mbedtls_asn1_write_len(p, start, len)) < 0)
		return r;
	total += r;
	if ((r = mbedtls_asn1_write_tag(p, start, MBEDTLS_ASN1_CONTEXT_SPECIFIC | tag)) < 0)
		return r;
	return total + r;
}

/* Builds the subjectAltName extension value (a SEQUENCE of GeneralNames) at
 * the end of buf; returns its start in *der and its length, or -1. */
static int san_build(unsigned char *buf, size_t size, const char *cn, unsigned char **der, size_t *derlen)
{
	unsigned char *p = buf + size;
	unsigned char ip4[4], ip6[16];
	int r, len = 0;
	static const unsigned char loop4[4] = { 127, 0, 0, 1 };

	if ((r = san_write_name(&p, buf, 7, loop4, sizeof(loop4))) < 0)
		return -1;
	len += r;
	if (cn && strcmp(cn, "localhost") != 0 && strcmp(cn, "127.0.0.1") != 0) {
		if (inet_pton(AF_INET, cn, ip4) == 1)
			r = san_write_name(&p, buf, 7, ip4, sizeof(ip4));
		else if (inet_pton(AF_INET6, cn, ip6) == 1)
			r = san_write_name(&p, buf, 7, ip6, sizeof(ip6));
		else
			r = san_write_name(&p, buf, 2, cn, strlen(cn));
		if (r < 0)
			return -1;
		len += r;
	}
	if ((r = san_write_name(&p, buf, 2, "localhost", 9)) < 0)
		return -1;
	len += r;
	if ((r = mbedtls_asn1_write_len(&p, buf, (size_t)len)) < 0)
		return -1;
	len += r;
	if ((r = mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)) < 0)
		return -1;
	len += r;
	*der = p;
	*derlen = (size_t)len;
	return 0;
}

static bool cn_valid(const char *cn)
{
	size_t n = strlen(cn);
	if (!n || n > 64)
		return false;
	for (const char *p = cn; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '.' || *p == '-' || *p == '_' || *p == ':'))
			return false;
	return true;
}

int crypto_selfsigned_cert(const char *cert_path, const char *key_path, const char *cn,
			   char *err, size_t errlen)
{
	mbedtls_pk_context key;
	mbedtls_x509write_cert crt;
	mbedtls_mpi serial;
	unsigned char serial_raw[16], san[256], *san_der = NULL;
	size_t san_len = 0;
	char subject[128], from[16], until[16];
	unsigned char *pem = NULL;
	const size_t pem_cap = 4096;
	int rc = -1, r;

	if (!cn)
		cn = "localhost";
	if (!cert_path || !key_path) {
		err_set(err, errlen, "certificate and key paths are required");
		return -1;
	}
	if (!cn_valid(cn)) {
		err_set(err, errlen, "certificate name '%.64s' is not a host name or address", cn);
		return -1;
	}
	mbedtls_pk_init(&key);
	mbedtls_x509write_crt_init(&crt);
	mbedtls_mpi_init(&serial);

	pem = calloc(1, pem_cap);
	if (!pem) {
		err_set(err, errlen, "out of memory");
		goto out;
	}
	if ((r = mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY))) != 0 ||
	    (r = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key), crypto_rng_cb, NULL)) != 0) {
		err_set(err, errlen, "generating the EC P-256 key failed (-0x%04x)", (unsigned)-r);
		goto out;
	}

	time_t now = time(NULL);
	struct tm tm;
	time_t t0 = now - 3600, t1 = now + (time_t)CERT_VALID_DAYS * 86400;
	gmtime_r(&t0, &tm);
	strftime(from, sizeof(from), "%Y%m%d%H%M%S", &tm);
	gmtime_r(&t1, &tm);
	strftime(until, sizeof(until), "%Y%m%d%H%M%S", &tm);
	snprintf(subject, sizeof(subject), "CN=%s,O=edgerec", cn);

	if (crypto_random(serial_raw, sizeof(serial_raw)) < 0) {
		err_set(err, errlen, "no random bytes for the serial number");
		goto out;
	}
	serial_raw[0] &= 0x7f; /* a positive INTEGER */
	serial_raw[0] |= 0x01;
	if (san_build(san, sizeof(san), cn, &san_der, &san_len) < 0) {
		err_set(err, errlen, "building subjectAltName failed");
		goto out;
	}

	mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&crt, &key);
	mbedtls_x509write_crt_set_issuer_key(&crt, &key);
	if ((r = mbedtls_mpi_read_binary(&serial, serial_raw, sizeof(serial_raw))) != 0 ||
	    (r = mbedtls_x509write_crt_set_serial(&crt, &serial)) != 0 ||
	    (r = mbedtls_x509write_crt_set_subject_name(&crt, subject)) != 0 ||
	    (r = mbedtls_x509write_crt_set_issuer_name(&crt, subject)) != 0 ||
	    (r = mbedtls_x509write_crt_set_validity(&crt, from, until)) != 0 ||
	    (r = mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1)) != 0 ||
	    (r = mbedtls_x509write_crt_set_subject_key_identifier(&crt)) != 0 ||
	    (r = mbedtls_x509write_crt_set_authority_key_identifier(&crt)) != 0 ||
	    (r = mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE |
							   MBEDTLS_X509_KU_KEY_AGREEMENT)) != 0 ||
	    (r = mbedtls_x509write_crt_set_extension(&crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
						     MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
						     san_der, san_len)) != 0) {
		err_set(err, errlen, "building the certificate failed (-0x%04x)", (unsigned)-r);
		goto out;
	}

	/* The key first: a certificate without its key is useless, and the
	 * key file must never be readable by others, even briefly. */
	if ((r = mbedtls_pk_write_key_pem(&key, pem, pem_cap)) != 0) {
		err_set(err, errlen, "writing the key as PEM failed (-0x%04x)", (unsigned)-r);
		goto out;
	}
	if ((r = crypto_write_file_atomic(key_path, pem, strlen((char *)pem), 0600)) < 0) {
		err_set(err, errlen, "%s: %s", key_path, strerror(-r));
		goto out;
	}
	memset(pem, 0, pem_cap);
	if ((r = mbedtls_x509write_crt_pem(&crt, pem, pem_cap, crypto_rng_cb, NULL)) != 0) {
		err_set(err, errlen, "signing the certificate failed (-0x%04x)", (unsigned)-r);
		goto out;
	}
	if ((r = crypto_write_file_atomic(cert_path, pem, strlen((char *)pem), 0644)) < 0) {
		err_set(err, errlen, "%s: %s", cert_path, strerror(-r));
		goto out;
	}
	LOG_INFO(&log_cert, "generated a self-signed certificate for %s in %s", cn, cert_path);
	rc = 0;
out:
	if (pem) {
		memset(pem, 0, pem_cap);
		free(pem);
	}
	mbedtls_mpi_free(&serial);
	mbedtls_x509write_crt_free(&crt);
	mbedtls_pk_free(&key);
	return rc;
}
