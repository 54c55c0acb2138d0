/*
 * Request handling for /api/v1/ (see api.h). For each request api_handle
 * runs these steps, and the first one that fails sends the response:
 *
 *   1. route: the path and method must match a route (404, 405);
 *   2. size: on JSON routes, a declared Content-Length over API_BODY_MAX
 *      gets 413 before anything is read (upload routes check their own,
 *      larger limit);
 *   3. credentials: on user and admin routes, an API key
 *      (Authorization: Bearer ty_...) or else the ty_session cookie must
 *      name a live session or key (401), checked through the backend or
 *      the credential cache;
 *   4. role: admin routes need the admin role (403);
 *   5. CSRF: on routes marked csrf, a cookie session must send its token
 *      in X-CSRF-Token (403); API keys are exempt, because a browser
 *      never adds them to a cross-site request;
 *   6. body: JSON routes need Content-Type application/json (415) and a
 *      body of at most API_BODY_MAX bytes (413) holding a JSON object
 *      (400).
 *
 * Only then does the route's handler run. Secrets (passwords, tokens,
 * keys) are never logged; log lines carry the method, path, client
 * address and account id.
 */
#include "api.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "http.h"
#include "log.h"
#include "upstream.h"

struct auth_cache api_credential_cache;
struct rate_limiter api_signin_limiter;
static struct api_options api_opt;

int api_init(const struct api_options *opt, struct error *err)
{
    if (sodium_init() < 0)
        return error_set(err, -EIO, "libsodium failed to initialize");
    api_opt = *opt;
    auth_cache_init(&api_credential_cache, AUTH_CACHE_TTL_MS);
    if (rate_limiter_init(&api_signin_limiter, AUTH_SIGNIN_ATTEMPTS,
                          AUTH_SIGNIN_WINDOW_MS, AUTH_LIMITER_SLOTS) != 0)
        return error_set(err, -ENOMEM,
                         "cannot allocate the sign-in rate limiter");
    return 0;
}

void api_shutdown(void)
{
    rate_limiter_free(&api_signin_limiter);
}

/* ---- responses -------------------------------------------------------- */

/* The one table from error codes to HTTP statuses. */
static const struct {
    const char *code;
    int status;
} error_statuses[] = {
    {"invalid_json", 400},
    {"invalid_request", 400},
    {"unauthorized", 401},
    {"session_expired", 401},
    {"forbidden", 403},
    {"csrf_failed", 403},
    {"not_found", 404},
    {"method_not_allowed", 405},
    {"link_expired", 410},
    {"conflict", 409},
    {"limit_exceeded", 409},
    {"payload_too_large", 413},
    {"payment_declined", 402},
    {"plan_required", 403},
    {"insufficient_balance", 402},
    {"unsupported_media_type", 415},
    {"rate_limited", 429},
    {"internal", 500},
    {"backend_unavailable", 503},
    {"too_many_connections", 503},
};

int api_status_for_code(const char *code)
{
    for (size_t i = 0; i < sizeof(error_statuses) / sizeof(error_statuses[0]);
         i++)
        if (strcmp(error_statuses[i].code, code) == 0)
            return error_statuses[i].status;
    return 500;
}

static void send_headers(struct api_request *req, int status, size_t length)
{
    char text[32];

    req->status = status;
    if (status == 401 && req->clear_cookie_on_401)
        auth_session_cookie(req->set_cookie, sizeof(req->set_cookie), NULL,
                            req->secure);
    mg_response_header_start(req->conn, status);
    mg_response_header_add(req->conn, "Cache-Control", "no-store", -1);
    mg_response_header_add_lines(req->conn, HTTP_SECURITY_HEADERS);
    if (req->set_cookie[0] != '\0')
        mg_response_header_add(req->conn, "Set-Cookie", req->set_cookie, -1);
    if (req->allow != NULL)
        mg_response_header_add(req->conn, "Allow", req->allow, -1);
    if (req->retry_after_s > 0) {
        snprintf(text, sizeof(text), "%d", req->retry_after_s);
        mg_response_header_add(req->conn, "Retry-After", text, -1);
    }
    if (status != 204) {
        mg_response_header_add(req->conn, "Content-Type",
                               "application/json; charset=utf-8", -1);
        snprintf(text, sizeof(text), "%zu", length);
        mg_response_header_add(req->conn, "Content-Length", text, -1);
    }
    mg_response_header_send(req->conn);
}

void api_send_json(struct api_request *req, int status, const cJSON *body)
{
    char *text = cJSON_PrintUnformatted(body);
    size_t len = text ? strlen(text) : 0;

    send_headers(req, status, len);
    /* A response to HEAD ends after its headers (RFC 9110, section
     * 9.3.2), and civetweb writes whatever it is given. No route takes
     * HEAD, so this is the 405 that every HEAD request gets. */
    if (len > 0 && strcmp(req->info->request_method, "HEAD") != 0)
        mg_write(req->conn, text, len);
    free(text);
}

void api_send_no_content(struct api_request *req)
{
    send_headers(req, 204, 0);
}

static void log_rejection(struct api_request *req, int status, const char *code,
                          const char *message)
{
    enum log_level level = LOG_LEVEL_DEBUG;
    const char *path = req->info->local_uri;

    /* A {token} route logs its pattern, because the path is a credential. */
    if (req->route != NULL && strstr(req->route->pattern, "{token}") != NULL)
        path = req->route->pattern;
    if (status >= 500)
        level = LOG_LEVEL_ERROR;
    else if (status == 401 || status == 403 || status == 413 || status == 429)
        level = LOG_LEVEL_INFO;
    log_write(level, "%s %s -> %d %s: %s addr=%s account=%lld",
              req->info->request_method, path, status, code, message,
              req->info->remote_addr, (long long)req->who.account_id);
}

void api_send_error(struct api_request *req, const char *code, const char *fmt,
                    ...)
{
    int status = api_status_for_code(code);
    char message[512];
    cJSON *body, *error;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    log_rejection(req, status, code, message);

    body = cJSON_CreateObject();
    error = cJSON_AddObjectToObject(body, "error");
    cJSON_AddStringToObject(error, "code", code);
    cJSON_AddStringToObject(error, "message", message);
    api_send_json(req, status, body);
    cJSON_Delete(body);
}

/* ---- reading the request ---------------------------------------------- */

int api_body_string(struct api_request *req, const char *name, int required,
                    const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->body, name);

    if (v == NULL || cJSON_IsNull(v)) {
        if (!required)
            return 1;
        api_send_error(req, "invalid_request", "field '%s' is missing", name);
        return -1;
    }
    if (!cJSON_IsString(v)) {
        api_send_error(req, "invalid_request", "field '%s' must be a string",
                       name);
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

int api_query_value(struct api_request *req, const char *name, char *out,
                    size_t len)
{
    const char *query = req->info->query_string;
    int got;

    out[0] = '\0';
    if (query == NULL)
        return 1;
    /* mg_get_var returns -1 for a missing parameter and -2 when the
     * value does not fit. */
    got = mg_get_var(query, strlen(query), name, out, len);
    if (got == -2) {
        api_send_error(req, "invalid_request",
                       "query parameter '%s' is over %zu bytes; send a "
                       "shorter value",
                       name, len - 1);
        return -1;
    }
    return got < 0 ? 1 : 0;
}

static int content_type_is_json(const char *type)
{
    static const char json[] = "application/json";
    size_t n = sizeof(json) - 1;

    if (type == NULL || strncasecmp(type, json, n) != 0)
        return 0;
    return type[n] == '\0' || type[n] == ';' || type[n] == ' ';
}

/* Read the whole body, at most API_BODY_MAX bytes, and parse it into
 * req->body. Returns 0, or -1 after sending an error. */
static int read_json_body(struct api_request *req)
{
    char *buf;
    size_t used = 0;
    const char *end = NULL;

    if (!content_type_is_json(mg_get_header(req->conn, "Content-Type"))) {
        api_send_error(req, "unsupported_media_type",
                       "send the body as JSON with 'Content-Type: "
                       "application/json'");
        return -1;
    }
    buf = malloc(API_BODY_MAX + 1);
    if (buf == NULL) {
        api_send_error(req, "internal",
                       "out of memory reading the request body");
        return -1;
    }
    /* Reading one byte past the limit detects an oversized chunked body. */
    while (used <= API_BODY_MAX) {
        int n = mg_read(req->conn, buf + used, API_BODY_MAX + 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    if (used > API_BODY_MAX) {
        free(buf);
        api_send_error(req, "payload_too_large",
                       "the request body is over %d bytes; send less",
                       API_BODY_MAX);
        return -1;
    }
    if (used == 0) {
        free(buf);
        api_send_error(req, "invalid_json",
                       "the request body is empty; send a JSON object");
        return -1;
    }

    req->body = cJSON_ParseWithLengthOpts(buf, used, &end, 0);
    /* The body may hold a password: wipe it before it goes back to the
     * allocator. */
    size_t at = end != NULL && end >= buf ? (size_t)(end - buf) : 0;
    sodium_memzero(buf, used);
    free(buf);
    if (req->body == NULL) {
        api_send_error(req, "invalid_json",
                       "the request body is not valid JSON (error near "
                       "byte %zu)",
                       at);
        return -1;
    }
    if (!cJSON_IsObject(req->body)) {
        api_send_error(req, "invalid_request",
                       "the request body must be a JSON object");
        return -1;
    }
    return 0;
}

/* Replace every byte outside [A-Za-z0-9._-] with '_'. */
static void ascii_filename(const char *in, char *out, size_t len)
{
    size_t n = 0;

    for (; *in != '\0' && n + 1 < len; in++) {
        char c = *in;
        int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                   c == '-';
        out[n++] = keep ? c : '_';
    }
    out[n] = '\0';
    if (n == 0 || out[0] == '.')
        snprintf(out, len, "download");
}

/* Percent-encode every byte outside the RFC 5987 attr-char set. */
static void percent_filename(const char *in, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (const unsigned char *p = (const unsigned char *)in;
         *p != '\0' && n + 4 < len; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("!#$&+-.^_`|~", *p);
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
}

void api_send_attachment_headers(struct api_request *req,
                                 const char *content_type,
                                 const char *filename, uint64_t length)
{
    char ascii[128], encoded[400], disposition[600], length_text[32];

    ascii_filename(filename, ascii, sizeof(ascii));
    percent_filename(filename, encoded, sizeof(encoded));
    snprintf(disposition, sizeof(disposition),
             "attachment; filename=\"%s\"; filename*=UTF-8''%s", ascii,
             encoded);
    snprintf(length_text, sizeof(length_text), "%llu",
             (unsigned long long)length);

    mg_response_header_start(req->conn, 200);
    mg_response_header_add(req->conn, "Content-Type", content_type, -1);
    mg_response_header_add(req->conn, "Content-Disposition", disposition,
                           -1);
    mg_response_header_add(req->conn, "Content-Length", length_text, -1);
    mg_response_header_add(req->conn, "Cache-Control", "no-store", -1);
    mg_response_header_add_lines(req->conn, HTTP_SECURITY_HEADERS);
    mg_response_header_send(req->conn);
    req->status = 200;
}

/* ---- the backend -------------------------------------------------------- */

/* Send the backend's error from a failed response. */
static void send_backend_error(struct api_request *req, const char *op,
                               const cJSON *response)
{
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(response, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(error, "message");
    const char *code_text = cJSON_IsString(code) ? code->valuestring : "";
    const char *message_text =
        cJSON_IsString(message) ? message->valuestring : "no message";

    /* Internal errors may name files or SQL, so log them and send a
     * plain message. Codes this gateway does not know count as internal. */
    if (api_status_for_code(code_text) >= 500) {
        log_error("backend op %s failed: code=%s %s", op, code_text,
                  message_text);
        api_send_error(req, "internal",
                       "the backend failed; its log has the details");
        return;
    }
    api_send_error(req, code_text, "%s", message_text);
}

void api_forward(struct api_request *req, const char *op, cJSON *args,
                 int status)
{
    cJSON *result = api_call(req, op, args);

    cJSON_Delete(args);
    if (result == NULL)
        return;
    api_send_json(req, status, result);
    cJSON_Delete(result);
}

cJSON *api_call(struct api_request *req, const char *op, const cJSON *args)
{
    cJSON *response = NULL, *result;
    struct error err = {0};
    const cJSON *ok;

    if (upstream_call_as(req->who.account_id, op, args, API_BACKEND_TIMEOUT_MS,
                         &response, &err) != 0) {
        api_send_error(req, "backend_unavailable", "%s", err.msg);
        return NULL;
    }
    ok = cJSON_GetObjectItemCaseSensitive(response, "ok");
    if (!cJSON_IsTrue(ok)) {
        send_backend_error(req, op, response);
        cJSON_Delete(response);
        return NULL;
    }
    result = cJSON_DetachItemFromObjectCaseSensitive(response, "result");
    cJSON_Delete(response);
    return result ? result : cJSON_CreateObject();
}

/* ---- credentials ------------------------------------------------------ */

/* Fill who from the backend's {"account": {...}, "csrf": ...} result. */
static void identity_from_result(const cJSON *result, enum auth_method method,
                                 struct auth_identity *who)
{
    const cJSON *account = cJSON_GetObjectItemCaseSensitive(result, "account");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(account, "id");
    const cJSON *email = cJSON_GetObjectItemCaseSensitive(account, "email");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(account, "role");
    const cJSON *plan = cJSON_GetObjectItemCaseSensitive(account, "plan");
    const cJSON *csrf = cJSON_GetObjectItemCaseSensitive(result, "csrf");

    memset(who, 0, sizeof(*who));
    who->method = method;
    who->account_id = cJSON_IsNumber(id) ? (int64_t)id->valuedouble : 0;
    snprintf(who->email, sizeof(who->email), "%s",
             cJSON_IsString(email) ? email->valuestring : "");
    snprintf(who->role, sizeof(who->role), "%s",
             cJSON_IsString(role) ? role->valuestring : "");
    snprintf(who->plan, sizeof(who->plan), "%s",
             cJSON_IsString(plan) ? plan->valuestring : "");
    snprintf(who->csrf, sizeof(who->csrf), "%s",
             cJSON_IsString(csrf) ? csrf->valuestring : "");
}

int api_resolve_credential(enum auth_method method, const char *credential,
                           struct auth_identity *who, char *code,
                           size_t code_len, struct error *err)
{
    const char *op =
        method == AUTH_METHOD_SESSION ? "auth.session" : "auth.apikey";
    int64_t now = clock_monotonic_ms();
    cJSON *args, *response = NULL, *result;
    int rc;

    if (auth_cache_get(&api_credential_cache, method, credential, now, who))
        return 0;
    args = cJSON_CreateObject();
    cJSON_AddStringToObject(
        args, method == AUTH_METHOD_SESSION ? "token" : "key", credential);
    rc = upstream_call(op, args, API_BACKEND_TIMEOUT_MS, &response, err);
    cJSON_Delete(args);
    if (rc != 0) {
        snprintf(code, code_len, "backend_unavailable");
        return rc;
    }
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(response, "ok"))) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(response, "error");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        const char *code_text = cJSON_IsString(c) ? c->valuestring : "";
        const char *message = cJSON_IsString(m) ? m->valuestring : "";

        /* As in send_backend_error: internal details stay in the log. */
        if (api_status_for_code(code_text) >= 500) {
            log_error("backend op %s failed: code=%s %s", op, code_text,
                      message);
            snprintf(code, code_len, "internal");
            rc = error_set(err, -EPROTO,
                           "the backend failed; its log has the details");
        } else {
            snprintf(code, code_len, "%s", code_text);
            rc = error_set(err, -EACCES, "%s", message);
        }
        cJSON_Delete(response);
        return rc;
    }
    result = cJSON_GetObjectItemCaseSensitive(response, "result");
    identity_from_result(result, method, who);
    cJSON_Delete(response);
    if (who->account_id <= 0) {
        snprintf(code, code_len, "internal");
        return error_set(err, -EPROTO,
                         "the backend's response to %s has no account id", op);
    }
    auth_cache_put(&api_credential_cache, credential, now, who);
    return 0;
}

/* api_resolve_credential for a request: returns 0 with req->who set, or
 * -1 after sending the error. */
static int resolve_credential(struct api_request *req, enum auth_method method,
                              const char *credential)
{
    struct error err = {0};
    char code[64];

    if (api_resolve_credential(method, credential, &req->who, code,
                               sizeof(code), &err) == 0)
        return 0;
    api_send_error(req, code, "%s", err.msg);
    return -1;
}

static int authenticate(struct api_request *req)
{
    const char *authorization = mg_get_header(req->conn, "Authorization");
    char credential[128];
    int rc;

    if (authorization != NULL) {
        if (auth_bearer_get(authorization, credential, sizeof(credential)) !=
                0 ||
            !auth_apikey_valid(credential)) {
            api_send_error(req, "unauthorized",
                           "the Authorization header must be 'Bearer "
                           "ty_...' with an API key from "
                           "/api/v1/apikeys");
            return -1;
        }
        rc = resolve_credential(req, AUTH_METHOD_API_KEY, credential);
        sodium_memzero(credential, sizeof(credential));
        return rc;
    }

    rc = auth_cookie_get(mg_get_header(req->conn, "Cookie"), AUTH_COOKIE_NAME,
                         credential, sizeof(credential));
    if (rc == -1) {
        api_send_error(req, "unauthorized",
                       "sign in first, or send an API key as "
                       "'Authorization: Bearer ty_...'");
        return -1;
    }
    req->clear_cookie_on_401 = 1;
    if (rc != 0 || !auth_session_token_valid(credential)) {
        api_send_error(req, "unauthorized",
                       "the session cookie is invalid; sign in again");
        return -1;
    }
    rc = resolve_credential(req, AUTH_METHOD_SESSION, credential);
    if (rc == 0)
        memcpy(req->session_token, credential, AUTH_TOKEN_LEN + 1);
    sodium_memzero(credential, sizeof(credential));
    return rc;
}

/* ---- dispatch ------------------------------------------------------------ */

/* Steps 2 to 6 of the file comment; returns 0 when the handler may run. */
static int check_request(struct api_request *req)
{
    const struct route *route = req->route;

    if (route->json_body && req->info->content_length > API_BODY_MAX) {
        api_send_error(req, "payload_too_large",
                       "the request body is %lld bytes; the maximum is %d",
                       req->info->content_length, API_BODY_MAX);
        return -1;
    }
    if (route->auth != ROUTE_PUBLIC && authenticate(req) != 0)
        return -1;
    if (route->auth == ROUTE_ADMIN && strcmp(req->who.role, "admin") != 0) {
        api_send_error(req, "forbidden",
                       "%s %s is for admins only; this account's role is "
                       "'%s'",
                       route->method, route->pattern, req->who.role);
        return -1;
    }
    if (route->csrf && req->who.method == AUTH_METHOD_SESSION &&
        !auth_csrf_equal(req->who.csrf,
                         mg_get_header(req->conn, AUTH_CSRF_HEADER))) {
        api_send_error(req, "csrf_failed",
                       "the " AUTH_CSRF_HEADER " header is missing or "
                       "wrong; send the csrf value from sign-in or "
                       "GET /api/v1/me");
        return -1;
    }
    if (route->json_body && read_json_body(req) != 0)
        return -1;
    return 0;
}

int api_handle(struct mg_connection *conn, void *data)
{
    struct api_request req;
    char allow[64];

    (void)data;
    memset(&req, 0, sizeof(req));
    req.conn = conn;
    req.info = mg_get_request_info(conn);
    req.secure = req.info->is_ssl || api_opt.secure_cookies;
    auth_client_key(req.info->remote_addr, req.client, sizeof(req.client));

    req.route = route_find(api_routes, req.info->request_method,
                           req.info->local_uri, &req.id, allow, sizeof(allow));
    if (req.route == NULL && allow[0] != '\0') {
        req.allow = allow;
        api_send_error(&req, "method_not_allowed", "use %s for %s", allow,
                       req.info->local_uri);
    } else if (req.route == NULL) {
        api_send_error(&req, "not_found",
                       "no such API endpoint: %s %s; see schema/openapi.yaml",
                       req.info->request_method, req.info->local_uri);
    } else if (check_request(&req) == 0) {
        req.route->handler(&req);
    }
    cJSON_Delete(req.body);
    sodium_memzero(req.session_token, sizeof(req.session_token));
    if (req.status == 0) {
        log_error("%s %s: the handler sent no response",
                  req.info->request_method, req.info->local_uri);
        api_send_error(&req, "internal", "the gateway sent no response");
    }
    return req.status;
}
