/* http_tls: holds civetweb's TLS server to TLS 1.2 and later, with
 * forward-secret AEAD cipher suites only, and replaces its certificate
 * while it runs (http_server_reload_tls).
 *
 * civetweb's mbedTLS glue (mod_mbedtls.inl) configures its server with
 * mbedtls_ssl_config_defaults() and nothing else, so with Debian's mbedTLS
 * 2.28 it would also accept TLS 1.0 and 1.1, and it offers no hook to
 * change that. The http library is linked with
 * -Wl,--wrap=mbedtls_ssl_config_defaults (see CMakeLists.txt): civetweb's
 * call lands here, the real function runs, then the minimum version is
 * raised and the suite list replaced. mbedTLS 2.28 has no TLS 1.3 server
 * (only an experimental prototype, compiled out in Debian's build), so
 * TLS 1.2 is also the maximum. The mbedTLS functions are declared by hand with an opaque
 * config pointer so that mbedTLS's headers stay the crypto module's alone;
 * their signatures are those of mbedTLS 2.28's ssl.h. */
#include "http_internal.h"

#include <stdio.h>

#include <civetweb.h>

int __real_mbedtls_ssl_config_defaults(void *conf, int endpoint, int transport, int preset);
int __wrap_mbedtls_ssl_config_defaults(void *conf, int endpoint, int transport, int preset);
void mbedtls_ssl_conf_min_version(void *conf, int major, int minor);
void mbedtls_ssl_conf_ciphersuites(void *conf, const int *ciphersuites);

/* MBEDTLS_SSL_MAJOR_VERSION_3 / MBEDTLS_SSL_MINOR_VERSION_3: TLS 1.2. */
#define HTTP_TLS_MAJOR_1_2 3
#define HTTP_TLS_MINOR_1_2 3

/* ECDHE key exchange with AES-GCM or ChaCha20-Poly1305, the IANA numbers
 * of mbedTLS 2.28's ssl_ciphersuites.h: no static (EC)DH or RSA key
 * exchange, no CBC, no SHA-1 MAC, no CCM_8. ECDSA first (the self-signed
 * certificate is P-256), RSA for configured RSA certificates. Ordered by
 * the server's preference; the list must outlive the configuration. */
static const int http_tls_suites[] = {
	0xC02B, /* TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 */
	0xC02C, /* TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 */
	0xCCA9, /* TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 */
	0xC02F, /* TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 */
	0xC030, /* TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 */
	0xCCA8, /* TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 */
	0,
};

static atomic_int http_tls_configs;

int __wrap_mbedtls_ssl_config_defaults(void *conf, int endpoint, int transport, int preset)
{
	int rc = __real_mbedtls_ssl_config_defaults(conf, endpoint, transport, preset);
	if (rc == 0) {
		mbedtls_ssl_conf_min_version(conf, HTTP_TLS_MAJOR_1_2, HTTP_TLS_MINOR_1_2);
		mbedtls_ssl_conf_ciphersuites(conf, http_tls_suites);
		atomic_fetch_add(&http_tls_configs, 1);
	}
	return rc;
}

int http_tls_min_version_applied(void)
{
	return atomic_load(&http_tls_configs);
}

int http_server_reload_tls(struct http_server *s, char *err, size_t errlen)
{
	if (!s || !s->url_https[0])
		return 0;
	if (http_tls_prepare(s, err, errlen) < 0)
		return -1;
	int rc = mg_reload_ssl_certificate(s->ctx);
	if (rc == -2) {
		snprintf(err, errlen, "the certificate was replaced too often in this run: restart to load it");
		return -1;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s does not hold a usable key and certificate", s->tls_pem);
		return -1;
	}
	return 1;
}
