/* The gateway's HTTP side: civetweb, static UI files and the REST API. */
#ifndef TRAINYARD_HTTP_H
#define TRAINYARD_HTTP_H

#include "error.h"

/* Headers for every response: no sniffing, no framing by other sites, and
 * a policy that allows this origin's scripts and WebAssembly only. */
#define HTTP_SECURITY_HEADERS                                                 \
    "X-Content-Type-Options: nosniff\r\n"                                     \
    "X-Frame-Options: DENY\r\n"                                               \
    "Referrer-Policy: same-origin\r\n"                                        \
    "Content-Security-Policy: default-src 'self'; script-src 'self' "         \
    "'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data: blob:; "      \
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "           \
    "form-action 'self'"

struct http_options {
    const char *host;      /* address to listen on */
    int port;              /* 0 picks a free port */
    const char *ui_dir;    /* built UI files, served at / */
    const char *port_file; /* where to write the chosen port, or NULL */
    const char *access_log; /* access log file, or NULL for none */
    int secure_cookies;    /* 1: cookies get Secure even on plain HTTP */
    /* PEM certificate chain and private key. Both set: host:port serves
     * HTTPS and WSS only, and tls_prepare (tls.h) must have succeeded on
     * these files. Both NULL: it serves plain HTTP. */
    const char *tls_cert;
    const char *tls_key;
    /* With TLS, a second address whose plain HTTP requests get a
     * redirect to https://, or NULL for none. */
    const char *redirect_host;
    int redirect_port;
};

int http_start(const struct http_options *opt, struct error *err);
void http_stop(void);

#endif
