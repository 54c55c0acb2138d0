/*
 * HTTPS and WSS from civetweb: the certificate and key checks, the
 * OpenSSL 1.1 compatibility libraries that let Debian 12's civetweb 1.15
 * use OpenSSL 3 (gateway/tls_compat.c), and the redirect of plain HTTP.
 */
#ifndef TRAINYARD_TLS_H
#define TRAINYARD_TLS_H

#include <civetweb.h>

#include "error.h"

/* Folder of the compatibility libraries, relative to the folder that
 * contains the gateway program: build/bin/gateway loads them from
 * build/lib/trainyard/. */
#define TLS_COMPAT_DIR "../lib/trainyard"
#define TLS_COMPAT_SSL "libssl-compat.so"
#define TLS_COMPAT_CRYPTO "libcrypto-compat.so"

/* Check that cert_file contains a PEM certificate (chain) and key_file
 * the matching unencrypted PEM private key, then load the compatibility
 * libraries. Keeps both paths for tls_init_ssl. Returns 0, or a negative
 * errno code with a message that names the file. */
int tls_prepare(const char *cert_file, const char *key_file,
                struct error *err);

/* civetweb's init_ssl callback: puts the certificate and key of
 * tls_prepare into civetweb's SSL_CTX and sets TLS 1.2 as the minimum
 * version. Returns 1 (done) or -1 (failed, logged). */
int tls_init_ssl(void *ssl_ctx, void *user_data);

/* Shortest time between two log lines about failed TLS handshakes. */
#define TLS_HANDSHAKE_LOG_INTERVAL_MS 10000

/* Log civetweb's message about a failed TLS handshake, which any client
 * can cause (a plain HTTP request on the TLS port, an old TLS version),
 * at most once per TLS_HANDSHAKE_LOG_INTERVAL_MS with the count of those
 * not logged. Returns 1 when message was such a message, else 0 and
 * logs nothing. */
int tls_log_civetweb_message(const char *message);

/* Set the port that tls_redirect_request sends plain HTTP clients to. */
void tls_set_https_port(int port);

/* civetweb's begin_request callback for a gateway with a plain HTTP
 * port. It responds to every request that did not come over TLS with 308
 * to the same path and query on https://HOST:PORT, where HOST is the
 * request's Host header without its port. Returns 0 for TLS requests,
 * which civetweb then serves, or else the status sent. */
int tls_redirect_request(struct mg_connection *conn);

#endif
