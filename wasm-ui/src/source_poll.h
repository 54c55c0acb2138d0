/*
 * The fallback source for the model screen's live data: it polls the REST
 * API once a second. source_live.c starts it while the WebSocket cannot
 * open and stops it once the socket opens.
 */
#ifndef TRAINYARD_UI_SOURCE_POLL_H
#define TRAINYARD_UI_SOURCE_POLL_H

#include <stdint.h>

#include "json.h"

struct poll_handlers {
    /* The reply of GET /models/{id}. */
    void (*on_model)(const struct json *model);
    /* Each event after after_seq, in seq order. */
    void (*on_event)(const struct json *event);
    /* A request failed; status 0 means the gateway was not reached. */
    void (*on_error)(int status, const struct json *reply);
};

/* Poll model_id's model and its events after after_seq; stops any
 * polling that runs. */
void poll_start(int64_t model_id, int64_t after_seq,
                const struct poll_handlers *handlers);
void poll_stop(void);

#endif
