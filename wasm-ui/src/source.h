/*
 * A model's live data for the model screen: the model with its latest
 * session, and its progress events in seq order. source_live.c reads the
 * gateway's WebSocket /api/v1/live and falls back to polling
 * (source_poll.c) while the socket cannot open. The screen gets data
 * only through these callbacks.
 */
#ifndef TRAINYARD_UI_SOURCE_H
#define TRAINYARD_UI_SOURCE_H

#include <stdint.h>

#include "json.h"

struct source_handlers {
    /* The reply of GET /models/{id}. */
    void (*on_model)(const struct json *model);
    /* One event: seq, session, kind, created_at, payload. Events arrive
     * once each, in seq order, from seq 1. */
    void (*on_event)(const struct json *event);
    /* A request failed; status 0 means the gateway was not reached, and
     * -1 marks an error message of the WebSocket. */
    void (*on_error)(int status, const struct json *reply);
    /* The source changed its mode; see source_mode. */
    void (*on_mode)(const char *mode);
};

/* Start following a model; stops any source that runs. */
void source_start(int64_t model_id, const struct source_handlers *handlers);
void source_stop(void);
/* Ask for the model now, such as after a button changed its state. */
void source_refresh(void);
/* "live" while the WebSocket is open, "polling" during the fallback, or
 * "connecting" before the first open and between reconnects. */
const char *source_mode(void);

#endif
