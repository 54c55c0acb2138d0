/*
 * Calls to the gateway's REST API (/api/v1, schema/openapi.yaml) with
 * parsed JSON replies. The module keeps the session's CSRF token and sends
 * it on every state-changing request. Each reply reaches its callback with
 * the view generation current when the request was sent, so a callback can
 * drop replies meant for a screen the user has left.
 */
#ifndef TRAINYARD_UI_API_H
#define TRAINYARD_UI_API_H

#include <stddef.h>

#include "json.h"

/* status is the HTTP status, or 0 when the gateway could not be reached;
 * reply is the parsed body, or NULL when it is not JSON. The reply is
 * freed after the callback returns. */
typedef void (*api_callback)(int status, const struct json *reply,
                             void *ctx);

void api_get(const char *path, api_callback cb, void *ctx);
/* POST body (a JSON text) with the CSRF token. */
void api_post(const char *path, const char *body, api_callback cb,
              void *ctx);

/* DELETE with the CSRF token. */
void api_delete(const char *path, api_callback cb, void *ctx);
/* POST the file chosen in the file input input_id as the raw body, with
 * the CSRF token; progress gets the bytes sent and the total. Returns -1
 * without sending when no file is chosen. */
int api_upload(const char *path, const char *input_id,
               void (*progress)(double loaded, double total, void *ctx),
               api_callback cb, void *ctx);

void api_set_csrf(const char *token);

/* Called, instead of the request's callback, when a request other than
 * sign-in gets 401: the session ended, so the app shows sign-in. */
extern void (*api_on_unauthorized)(void);

/* The generation of the current view; app.c bumps it on each route change,
 * and the callbacks of older requests are then not called. */
extern unsigned api_generation;

/* Write a sentence for a failed reply into buf: the gateway's error
 * message (reply.error.message, or reply.message for the live
 * WebSocket's errors) when there is one, else what went wrong with the
 * status. */
void api_error_text(int status, const struct json *reply, char *buf,
                    size_t size);

#endif
