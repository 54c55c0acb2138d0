/*
 * A TLS client, built on OpenSSL 3, for tests against a gateway that
 * serves HTTPS on 127.0.0.1. It makes a self-signed certificate for the
 * gateway and sends HTTPS requests that return the struct http_reply of
 * harness.h. It also makes a WebSocket (WSS) upgrade and exchanges
 * unfragmented text frames. Every connection checks the server's certificate against the
 * file given to tlsclient_trust and the IP address 127.0.0.1.
 *
 * Functions return errors instead of failing the test, so that tests can
 * check rejected handshakes themselves.
 */
#ifndef TRAINYARD_TLSCLIENT_H
#define TRAINYARD_TLSCLIENT_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "harness.h"

struct tlsclient {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
};

/* Write a new P-256 key (mode 0600) and a self-signed certificate for the
 * IP address 127.0.0.1, valid from a minute ago for one day, as PEM files.
 * Returns 0 or -1. */
int tls_write_self_signed(const char *cert_path, const char *key_path);

/* Trust only the certificates in ca_file (PEM) for later connections. */
void tlsclient_trust(const char *ca_file);

/* Connect to 127.0.0.1:port and complete a TLS handshake. max_version
 * (such as TLS1_1_VERSION) caps the versions offered, 0 for none. Reads
 * wait at most 10 s. Returns 0, or -1 with OpenSSL's reason in reason
 * (when not NULL) and c closed. */
int tlsclient_connect(struct tlsclient *c, int port, int max_version,
                      char *reason, size_t reason_len);

/* Send a TLS close_notify and close the socket. */
void tlsclient_close(struct tlsclient *c);

/* One HTTPS request on a new connection, as harness_http does over
 * plain HTTP. Returns 0 with reply filled, or -1 when no reply came. */
int tls_http(int port, const char *method, const char *target,
             const char *extra_headers, const char *body,
             struct http_reply *reply);

/* Send a WebSocket upgrade request for path on a connected c, with
 * extra_headers (NULL or CRLF-ended lines such as Origin and Cookie).
 * Returns 101 when the server switched protocols with the right
 * Sec-WebSocket-Accept, the HTTP status of a rejection, or -1 when no
 * valid response came. */
int tlsclient_ws_upgrade(struct tlsclient *c, int port, const char *path,
                         const char *extra_headers);

/* Send text as one masked text frame. Returns 0 or -1. */
int tlsclient_ws_send_text(struct tlsclient *c, const char *text);

/* Read frames until an unfragmented text frame comes, skipping pings and
 * pongs. Returns its text, to free with free(), or NULL on a close frame,
 * a fragmented message, a read error or a read timeout. */
char *tlsclient_ws_read_text(struct tlsclient *c);

#endif
