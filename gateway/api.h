/*
 * The REST API under /api/v1/: one civetweb handler (api_handle) finds the
 * route (routes.h), makes the route's checks in a fixed order and calls
 * its handler with a struct api_request. Handlers use the helpers here to
 * read JSON fields, call the backend as the signed-in account and send
 * the response.
 *
 * Every response is JSON. An error is
 *   {"error": {"code": "not_found", "message": "..."}}
 * with a stable code; api_status_for_code maps each code to its HTTP
 * status, for the gateway's own errors and the backend's alike.
 */
#ifndef TRAINYARD_API_H
#define TRAINYARD_API_H

#include <civetweb.h>
#include <cjson/cJSON.h>
#include <stdint.h>

#include "auth.h"
#include "error.h"
#include "routes.h"

/* Largest request body accepted; larger ones get 413. */
#define API_BODY_MAX (64 * 1024)
/* How long a request waits for the backend's response. */
#define API_BACKEND_TIMEOUT_MS 30000

struct api_options {
    /* 1: mark cookies Secure even on plain HTTP, for a gateway behind a
     * proxy that terminates TLS. Requests that arrive over TLS always
     * get Secure cookies. */
    int secure_cookies;
};

struct api_request {
    struct mg_connection *conn;
    const struct mg_request_info *info;
    const struct route *route;
    int64_t id;               /* the path's {id} segment, or 0 */
    struct auth_identity who; /* method NONE on public routes */
    /* The session cookie's token when who.method is AUTH_METHOD_SESSION. */
    char session_token[AUTH_TOKEN_LEN + 1];
    cJSON *body;          /* the JSON object body of json_body routes */
    int secure;           /* cookies get the Secure attribute */
    char client[64];      /* rate limiter key of the client address */
    char set_cookie[256]; /* Set-Cookie value to send, or "" */
    int retry_after_s;    /* Retry-After to send, or 0 */
    const char *allow;    /* Allow header of a 405, or NULL */
    /* 1: a 401 also deletes the session cookie, because the cookie the
     * request sent names no live session. */
    int clear_cookie_on_401;
    int status; /* status sent, 0 before the response */
};

/* Shared by every worker thread; set up by api_init. */
extern struct auth_cache api_credential_cache;
extern struct rate_limiter api_signin_limiter;

int api_init(const struct api_options *opt, struct error *err);
void api_shutdown(void);

/* The civetweb request handler for /api/v1/. */
int api_handle(struct mg_connection *conn, void *data);

/* HTTP status of an error code; 500 for a code not in the table. */
int api_status_for_code(const char *code);

void api_send_json(struct api_request *req, int status, const cJSON *body);
void api_send_no_content(struct api_request *req);
/* Send error code, with the HTTP status from api_status_for_code and a
 * message that names the next step for the user. */
void api_send_error(struct api_request *req, const char *code, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));

/* Send the headers of a 200 file download: content_type, length, and a
 * Content-Disposition attachment named filename, given twice as RFC 6266
 * recommends. The plain `filename` has every byte outside [A-Za-z0-9._-]
 * replaced by '_', so no quote, line break or path reaches the header,
 * and `filename*` is percent-encoded UTF-8. The caller then writes
 * exactly length bytes. */
void api_send_attachment_headers(struct api_request *req,
                                 const char *content_type,
                                 const char *filename, uint64_t length);

/* Read field name of the JSON body as a string. Returns 0 with *out set,
 * 1 when it is absent and optional, or -1 after sending 400 for a field
 * that is missing but required, or not a string. */
int api_body_string(struct api_request *req, const char *name, int required,
                    const char **out);

/* Read query parameter name into out (len bytes). Returns 0 when it is
 * present, 1 when it is absent, or -1 after sending 400 for a value
 * too long for out, which is not read as absent. */
int api_query_value(struct api_request *req, const char *name, char *out,
                    size_t len);

/* Find the account of a session token (AUTH_METHOD_SESSION) or API key
 * in the credential cache, or else through the backend, and cache it.
 * Returns 0 with *who set. On failure, code is the error code to send
 * and err has the message: -EACCES with the backend's code (unauthorized,
 * session_expired) for a credential that names no live session or key,
 * the error of upstream_call (-ENOTCONN, -ETIMEDOUT) with
 * backend_unavailable, or -EPROTO with internal for a backend failure.
 * Needs no request, so the live WebSocket (live.c) uses it as well. */
int api_resolve_credential(enum auth_method method, const char *credential,
                           struct auth_identity *who, char *code,
                           size_t code_len, struct error *err);

/* Call op on the backend as the request's account (or none, before
 * sign-in) and return the result object, which the caller deletes. On
 * failure, sends the mapped error and returns NULL. */
cJSON *api_call(struct api_request *req, const char *op, const cJSON *args);

/* Call op with args (consumed, may be NULL) and send its result as JSON
 * with status, or the error. */
void api_forward(struct api_request *req, const char *op, cJSON *args,
                 int status);

/* Handlers of the routes in routes.c. */
void api_health(struct api_request *req);
void api_signin(struct api_request *req);
void api_signout(struct api_request *req);
void api_me(struct api_request *req);
void api_apikeys_list(struct api_request *req);
void api_apikeys_create(struct api_request *req);
void api_apikeys_revoke(struct api_request *req);
void api_admin_accounts_list(struct api_request *req);
void api_admin_accounts_create(struct api_request *req);
void api_admin_accounts_plan(struct api_request *req);
void api_datasets_list(struct api_request *req);
void api_datasets_upload(struct api_request *req);
void api_datasets_delete(struct api_request *req);
void api_datasets_report(struct api_request *req);
void api_models_list(struct api_request *req);
void api_models_create(struct api_request *req);
void api_models_get(struct api_request *req);
void api_models_delete(struct api_request *req);
void api_training_start(struct api_request *req);
void api_training_quote(struct api_request *req);
void api_training_stop(struct api_request *req);
void api_training_resume(struct api_request *req);
void api_training_events(struct api_request *req);
void api_instance_types(struct api_request *req);
void api_balance(struct api_request *req);
void api_ledger(struct api_request *req);
void api_topup(struct api_request *req);
void api_admin_credit(struct api_request *req);
void api_model_billing_csv(struct api_request *req);
void api_model_billing_pdf(struct api_request *req);
void api_statement_csv(struct api_request *req);
void api_statement_pdf(struct api_request *req);
void api_model_weights(struct api_request *req);
void api_model_share(struct api_request *req);
void api_shared_weights(struct api_request *req);

#endif
