/*
 * The gateway's one connection to the backend: a libwebsockets client on
 * its own thread that every civetweb worker thread shares. Requests carry
 * ids so that many are in flight at once; each caller waits for its own
 * response. When the connection drops, the requests in flight fail at once
 * with -ENOTCONN and the thread reconnects with exponential backoff.
 * Progress events that the backend pushes go to one event handler, and a
 * connect handler learns of each new connection, so that live.c can fan
 * events out to browsers and replay what a dropped connection missed.
 */
#ifndef TRAINYARD_UPSTREAM_H
#define TRAINYARD_UPSTREAM_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "error.h"

struct upstream_options {
    const char *host;
    int port;
    const char *secret; /* the backend's shared secret, hex */
};

/* Start the connection thread; the first connect happens in background. */
int upstream_start(const struct upstream_options *opt, struct error *err);

/* Stop the thread and fail every request still waiting. */
void upstream_stop(void);

/* 1 once the backend has accepted the hello, else 0. */
int upstream_ready(void);

/* Send request op with args (may be NULL; not consumed) and wait up to
 * timeout_ms. On 0, *response is the backend's response object (caller
 * deletes it), whose "ok" field is true when the op succeeded. Fails with
 * -ENOTCONN when the backend is not connected or the connection drops, and
 * -ETIMEDOUT when no response came in time. */
int upstream_call(const char *op, const cJSON *args, int timeout_ms,
                  cJSON **response, struct error *err);

/* As upstream_call, acting for account: its id goes into the request's
 * "account" field, which the backend trusts because this connection
 * presented the shared secret. 0 sends no account, for requests made
 * before sign-in. */
int upstream_call_as(int64_t account, const char *op, const cJSON *args,
                     int timeout_ms, cJSON **response, struct error *err);

/* Called on the connection thread with each {"type": "event"} message
 * from the backend (schema/protocol.md). The handler must return quickly
 * and must not call upstream_call, whose response this thread delivers.
 * event is valid only during the call. */
typedef void (*upstream_event_fn)(void *user, const cJSON *event);

/* Called on the connection thread each time the backend accepts the
 * hello, when upstream_call works again. The same rules apply. */
typedef void (*upstream_connect_fn)(void *user);

/* Install the handlers (NULL removes one). Either may be set before or
 * after upstream_start; a call in progress may still finish with the old
 * handler. */
void upstream_set_event_handler(upstream_event_fn fn, void *user);
void upstream_set_connect_handler(upstream_connect_fn fn, void *user);

#endif
