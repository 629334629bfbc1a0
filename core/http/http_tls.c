/* http_tls: holds civetweb's TLS server to TLS 1.2 and later.
 *
 * civetweb's mbedTLS glue (mod_mbedtls.inl) configures its server with
 * mbedtls_ssl_config_defaults() and nothing else, so with Debian's mbedTLS
 * 2.28 it would also accept TLS 1.0 and 1.1, and it offers no hook to
 * change that. The http library is linked with
 * -Wl,--wrap=mbedtls_ssl_config_defaults (see CMakeLists.txt): civetweb's
 * call lands here, the real function runs, then the minimum version is
 * raised. The two mbedTLS functions are declared by hand with an opaque
 * config pointer so that mbedTLS's headers stay the crypto module's alone;
 * their signatures are those of mbedTLS 2.28's ssl.h. */
#include "http_internal.h"

int __real_mbedtls_ssl_config_defaults(void *conf, int endpoint, int transport, int preset);
int __wrap_mbedtls_ssl_config_defaults(void *conf, int endpoint, int transport, int preset);
void mbedtls_ssl_conf_min_version(void *conf, int major, int minor);

/* MBEDTLS_SSL_MAJOR_VERSION_3 / MBEDTLS_SSL_MINOR_VERSION_3: TLS 1.2. */
#define HTTP_TLS_MAJOR_1_2 3
#define HTTP_TLS_MINOR_1_2 3

static atomic_int http_tls_configs;

int __wrap_mbedtls_ssl_config_defaults(void *conf, int endpoint, int transport, int preset)
{
	int rc = __real_mbedtls_ssl_config_defaults(conf, endpoint, transport, preset);
	if (rc == 0) {
		mbedtls_ssl_conf_min_version(conf, HTTP_TLS_MAJOR_1_2, HTTP_TLS_MINOR_1_2);
		atomic_fetch_add(&http_tls_configs, 1);
	}
	return rc;
}

int http_tls_min_version_applied(void)
{
	return atomic_load(&http_tls_configs);
}
