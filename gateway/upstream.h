/*
 * The gateway's one connection to the backend: a libwebsockets client on
 * its own thread that every civetweb worker thread shares. Requests carry
 * ids so that many are in flight at once; each caller waits for its own
 * response. When the connection drops, the requests in flight fail at once
 * with -ENOTCONN and the thread reconnects with exponential backoff.
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
 * deletes it), whose "ok" field says whether the op succeeded. Fails with
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

#endif
