/*
 * civetweb setup. civetweb serves the UI folder itself: it replies to
 * conditional requests with ETags, rejects paths that leave the folder,
 * and lists no folders. Everything under /api/v1/ goes to api_handle
 * (api.c), which responds with JSON only, except the live progress
 * WebSocket /api/v1/live (live.c).
 */
#include "http.h"

#include <civetweb.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "fsutil.h"
#include "live.h"
#include "log.h"
#include "tls.h"

/* civetweb worker threads for REST requests and static files. Each live
 * WebSocket occupies one more for as long as it is open. */
#define HTTP_REQUEST_THREADS 32

static struct mg_context *http_context;

static int log_civetweb_message(const struct mg_connection *conn,
                                const char *message)
{
    (void)conn;
    if (tls_log_civetweb_message(message))
        return 1;
    log_warn("civetweb: %s", message);
    return 1;
}

/* civetweb's own error pages (1.15, the version of Debian 12) write
 * their text after the headers of a HEAD response too, which a
 * client on a kept-alive connection reads as the start of the next
 * response. For HEAD, send the headers of that page alone, and let
 * civetweb send the page of every other request. */
static int send_http_error(struct mg_connection *conn, int status,
                           const char *message)
{
    const struct mg_request_info *info = mg_get_request_info(conn);

    (void)message;
    if (info == NULL || info->request_method == NULL ||
        strcmp(info->request_method, "HEAD") != 0)
        return 1;
    mg_response_header_start(conn, status);
    mg_response_header_add(conn, "Cache-Control",
                           "no-cache, no-store, must-revalidate, private, "
                           "max-age=0",
                           -1);
    mg_response_header_add_lines(conn, HTTP_SECURITY_HEADERS);
    mg_response_header_add(conn, "Content-Type", "text/plain; charset=utf-8",
                           -1);
    mg_response_header_send(conn);
    return 0;
}

static int write_port_file(const char *path, int port, struct error *err)
{
    char text[16];
    int n = snprintf(text, sizeof(text), "%d\n", port);

    return fs_write_atomic(path, text, (size_t)n, 0644, err);
}

int http_start(const struct http_options *opt, struct error *err)
{
    struct mg_callbacks callbacks;
    struct mg_server_port ports[4];
    char listen[600], threads[16];
    const char *options[32];
    const char *scheme = opt->tls_cert != NULL ? "https" : "http";
    int i = 0, n;

    /* civetweb serves TLS on a listening_ports entry that ends in 's'. */
    snprintf(listen, sizeof(listen), "%s:%d%s", opt->host, opt->port,
             opt->tls_cert != NULL ? "s" : "");
    if (opt->tls_cert != NULL && opt->redirect_host != NULL) {
        size_t used = strlen(listen);
        snprintf(listen + used, sizeof(listen) - used, ",%s:%d",
                 opt->redirect_host, opt->redirect_port);
    }
    options[i++] = "listening_ports";
    options[i++] = listen;
    options[i++] = "document_root";
    options[i++] = opt->ui_dir;
    options[i++] = "enable_directory_listing";
    options[i++] = "no";
    snprintf(threads, sizeof(threads), "%d",
             HTTP_REQUEST_THREADS + live_max_connections());
    options[i++] = "num_threads";
    options[i++] = threads;
    options[i++] = "additional_header";
    options[i++] = HTTP_SECURITY_HEADERS;
    options[i++] = "extra_mime_types";
    options[i++] = ".wasm=application/wasm,.js=text/javascript";
    options[i++] = "request_timeout_ms";
    options[i++] = "60000";
    if (opt->access_log != NULL) {
        options[i++] = "access_log_file";
        options[i++] = opt->access_log;
    }
    if (opt->tls_cert != NULL) {
        /* 4: TLS 1.2 and newer. */
        options[i++] = "ssl_protocol_version";
        options[i++] = "4";
    }
    options[i] = NULL;

    memset(&callbacks, 0, sizeof(callbacks));
    callbacks.log_message = log_civetweb_message;
    callbacks.http_error = send_http_error;
    if (opt->tls_cert != NULL) {
        callbacks.init_ssl = tls_init_ssl;
        tls_set_https_port(opt->port);
        if (opt->redirect_host != NULL)
            callbacks.begin_request = tls_redirect_request;
    }

    struct api_options aopt = {opt->secure_cookies};
    int rc = api_init(&aopt, err);
    if (rc != 0)
        return rc;

    mg_init_library(0);
    http_context = mg_start(&callbacks, NULL, options);
    if (http_context == NULL) {
        api_shutdown();
        if (opt->tls_cert != NULL)
            return error_set(err, -EIO,
                             "cannot start HTTPS on %s:%d; see the civetweb "
                             "message above, or choose a free port with "
                             "--listen",
                             opt->host, opt->port);
        return error_set(err, -EADDRINUSE,
                         "cannot listen on %s; is another gateway running? "
                         "Choose a free port with --listen",
                         listen);
    }
    mg_set_request_handler(http_context, "/api/v1/", api_handle, NULL);
    rc = live_start(http_context, err);
    if (rc != 0) {
        http_stop();
        return rc;
    }

    n = mg_get_server_ports(http_context, 4, ports);
    if (n < 1) {
        http_stop();
        return error_set(err, -EIO, "cannot read the listening port");
    }
    /* ports[0] is the first address in listening_ports, the main one. */
    log_info("listening on %s://%s:%d/ serving '%s'", scheme, opt->host,
             ports[0].port, opt->ui_dir);
    if (opt->tls_cert != NULL) {
        tls_set_https_port(ports[0].port);
        if (n > 1)
            log_info("redirecting plain HTTP on %s:%d to https://",
                     opt->redirect_host, ports[1].port);
    }
    if (opt->port_file != NULL)
        return write_port_file(opt->port_file, ports[0].port, err);
    return 0;
}

void http_stop(void)
{
    /* mg_stop closes every live connection before live_stop runs. */
    if (http_context != NULL)
        mg_stop(http_context);
    http_context = NULL;
    live_stop();
    mg_exit_library();
    api_shutdown();
}
