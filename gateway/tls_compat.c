/*
 * OpenSSL 1.1 names for Debian 12's civetweb 1.15, built as two small
 * shared libraries by the Makefile and never linked into a program.
 *
 * civetweb 1.15 (built with OPENSSL_API_1_1) calls dlopen("libcrypto.so")
 * and dlopen("libssl.so"), then looks up each function it uses with
 * dlsym. Debian 12 ships only OpenSSL 3, which exports all of those names
 * but one: SSL_get_peer_certificate became SSL_get1_peer_certificate, so
 * civetweb stops with "load_tls_dll: libssl.so: cannot find
 * SSL_get_peer_certificate".
 *
 * libssl-compat.so has the SONAME "libssl.so" and depends on libssl.so.3
 * and libcrypto.so.3. libcrypto-compat.so has the SONAME "libcrypto.so",
 * depends on libcrypto.so.3 and defines nothing (this file built with
 * TLS_COMPAT_CRYPTO). The gateway dlopen()s both by absolute path before
 * mg_start (gateway/tls.c). glibc's dlopen of a name without a slash
 * first returns an already loaded object whose SONAME is that name, so
 * civetweb gets these libraries. Its dlsym on them also searches their
 * dependencies, where it finds the real OpenSSL 3 functions. This also
 * works where libssl-dev, which owns the libssl.so and libcrypto.so
 * links, is not installed.
 */
#ifndef TLS_COMPAT_CRYPTO

#include <openssl/ssl.h>

/* OpenSSL 3's ssl.h defines the old name as a macro for the new one. */
#undef SSL_get_peer_certificate

X509 *SSL_get_peer_certificate(const SSL *ssl);

/* OpenSSL 1.1's SSL_get_peer_certificate: the peer's certificate with its
 * reference count raised, which the caller frees with X509_free. */
X509 *SSL_get_peer_certificate(const SSL *ssl)
{
    return SSL_get1_peer_certificate(ssl);
}

#else

/* libcrypto-compat.so exists only for its SONAME and its dependency on
 * libcrypto.so.3. A translation unit needs one declaration. */
typedef int tls_compat_crypto_only;

#endif
