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

/* civetweb worker threads for REST requests and static files. Each live
 * WebSocket occupies one more for as long as it is open. */
#define HTTP_REQUEST_THREADS 32

static struct mg_context *http_context;

static int log_civetweb_message(const struct mg_connection *conn,
                                const char *message)
{
    (void)conn;
    log_warn("civetweb: %s", message);
    return 1;
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
    char listen[300], threads[16];
    const char *options[32];
    int i = 0, n;

    snprintf(listen, sizeof(listen), "%s:%d", opt->host, opt->port);
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
    options[i] = NULL;

    struct api_options aopt = {opt->secure_cookies};
    int rc = api_init(&aopt, err);
    if (rc != 0)
        return rc;

    memset(&callbacks, 0, sizeof(callbacks));
    callbacks.log_message = log_civetweb_message;

    mg_init_library(0);
    http_context = mg_start(&callbacks, NULL, options);
    if (http_context == NULL) {
        api_shutdown();
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
    log_info("listening on http://%s:%d/ serving '%s'", opt->host,
             ports[0].port, opt->ui_dir);
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
