/*
 * civetweb setup and the REST API. civetweb serves the UI folder itself:
 * it answers conditional requests with ETags, rejects paths that leave the
 * folder, and lists no folders. Everything under /api/v1/ goes to
 * api_handler, which answers JSON only; an error is
 *   {"error": {"code": "not_found", "message": "..."}}
 * with a stable code and a message a person can act on.
 */
#include "http.h"

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "log.h"
#include "upstream.h"

#define BACKEND_TIMEOUT_MS 30000

static struct mg_context *http_context;

/* Headers for every response: no sniffing, no framing by other sites, and
 * a policy that allows this origin's scripts and WebAssembly only. */
#define SECURITY_HEADERS                                                      \
    "X-Content-Type-Options: nosniff\r\n"                                     \
    "X-Frame-Options: DENY\r\n"                                               \
    "Referrer-Policy: same-origin\r\n"                                        \
    "Content-Security-Policy: default-src 'self'; script-src 'self' "         \
    "'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data: blob:; "      \
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "           \
    "form-action 'self'"

static void send_json(struct mg_connection *conn, int status,
                      const cJSON *body)
{
    char *text = cJSON_PrintUnformatted(body);
    size_t len = text ? strlen(text) : 0;

    mg_response_header_start(conn, status);
    mg_response_header_add(conn, "Content-Type",
                           "application/json; charset=utf-8", -1);
    mg_response_header_add(conn, "Cache-Control", "no-store", -1);
    mg_response_header_add_lines(conn, SECURITY_HEADERS);
    char length[32];
    snprintf(length, sizeof(length), "%zu", len);
    mg_response_header_add(conn, "Content-Length", length, -1);
    mg_response_header_send(conn);
    if (len > 0)
        mg_write(conn, text, len);
    free(text);
}

static void send_error(struct mg_connection *conn, int status,
                       const char *code, const char *message)
{
    cJSON *body = cJSON_CreateObject();
    cJSON *error = cJSON_AddObjectToObject(body, "error");

    cJSON_AddStringToObject(error, "code", code);
    cJSON_AddStringToObject(error, "message", message);
    send_json(conn, status, body);
    cJSON_Delete(body);
}

/* GET /api/v1/health: the gateway's own state and the backend's. */
static void api_health(struct mg_connection *conn)
{
    cJSON *body = cJSON_CreateObject();
    cJSON *response = NULL;
    struct error err = {0};
    int rc;

    cJSON_AddStringToObject(body, "gateway", "ok");
    rc = upstream_call("health", NULL, BACKEND_TIMEOUT_MS, &response, &err);
    if (rc == 0) {
        cJSON *result = cJSON_DetachItemFromObjectCaseSensitive(response,
                                                                "result");
        cJSON_AddItemToObject(body, "backend",
                              result ? result : cJSON_CreateNull());
        cJSON_Delete(response);
        send_json(conn, 200, body);
    } else {
        cJSON *error = cJSON_AddObjectToObject(body, "error");
        cJSON_AddStringToObject(error, "code", "backend_unavailable");
        cJSON_AddStringToObject(error, "message", err.msg);
        send_json(conn, 503, body);
    }
    cJSON_Delete(body);
}

static int api_handler(struct mg_connection *conn, void *data)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *path = ri->local_uri;
    const char *method = ri->request_method;

    (void)data;
    if (strcmp(path, "/api/v1/health") == 0) {
        if (strcmp(method, "GET") != 0) {
            send_error(conn, 405, "method_not_allowed",
                       "use GET for /api/v1/health");
            return 405;
        }
        api_health(conn);
        return 200;
    }
    send_error(conn, 404, "not_found", "no such API endpoint");
    return 404;
}

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
    char listen[300];
    const char *options[32];
    int i = 0, n;

    snprintf(listen, sizeof(listen), "%s:%d", opt->host, opt->port);
    options[i++] = "listening_ports";
    options[i++] = listen;
    options[i++] = "document_root";
    options[i++] = opt->ui_dir;
    options[i++] = "enable_directory_listing";
    options[i++] = "no";
    options[i++] = "num_threads";
    options[i++] = "32";
    options[i++] = "additional_header";
    options[i++] = SECURITY_HEADERS;
    options[i++] = "extra_mime_types";
    options[i++] = ".wasm=application/wasm,.js=text/javascript";
    options[i++] = "request_timeout_ms";
    options[i++] = "60000";
    if (opt->access_log != NULL) {
        options[i++] = "access_log_file";
        options[i++] = opt->access_log;
    }
    options[i] = NULL;

    memset(&callbacks, 0, sizeof(callbacks));
    callbacks.log_message = log_civetweb_message;

    mg_init_library(0);
    http_context = mg_start(&callbacks, NULL, options);
    if (http_context == NULL)
        return error_set(err, -EADDRINUSE,
                         "cannot listen on %s; is another gateway running? "
                         "Choose a free port with --listen",
                         listen);
    mg_set_request_handler(http_context, "/api/v1/", api_handler, NULL);

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
    if (http_context != NULL)
        mg_stop(http_context);
    http_context = NULL;
    mg_exit_library();
}
