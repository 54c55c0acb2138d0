/*
 * The live source: one WebSocket to /api/v1/live, subscribed to the open
 * model from the last seq seen. When the socket closes, it reconnects by
 * itself after a backoff that doubles from 0.5 s up to 30 s, with up to
 * 25% random jitter, and resubscribes from the last seq, so no event is
 * shown twice or missed. While the socket cannot open, source_poll.c
 * polls the REST API; it stops once the socket opens again.
 *
 * The model itself (GET /models/{id}) is requested at the start, after
 * each subscribe, on each state or done event, and every 10 seconds,
 * because another model's training (account_training) sends no event to
 * this model's subscription.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dom.h"
#include "source.h"
#include "source_poll.h"

#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 30000
#define MODEL_REFRESH_MS 10000

static struct source_handlers handlers;
static int64_t model;
static int64_t last_seq;
static int socket_handle = -1;
static int socket_open;
static int polling;
static int reconnect_timer = -1;
static int refresh_timer = -1;
static int backoff_ms = BACKOFF_FIRST_MS;
static int model_in_flight;
static int model_pending;
/* Bumped by source_stop, so that callbacks of a stopped source are
 * dropped. */
static unsigned run;

static void connect_socket(void);
static void fetch_model(void);

static void report_mode(void)
{
    if (handlers.on_mode != NULL)
        handlers.on_mode(source_mode());
}

static int current(void *ctx)
{
    return (unsigned)(uintptr_t)ctx == run;
}

static void deliver_event(const struct json *event)
{
    int64_t seq = json_int(json_get(event, "seq"), 0);
    const char *kind = json_string(json_get(event, "kind"), "");

    if (seq <= last_seq)
        return;
    last_seq = seq;
    handlers.on_event(event);
    if (strcmp(kind, "state") == 0 || strcmp(kind, "done") == 0)
        fetch_model();
}

static void on_model_reply(int status, const struct json *reply, void *ctx)
{
    if (!current(ctx))
        return;
    model_in_flight = 0;
    if (status != 200)
        handlers.on_error(status, reply);
    else
        handlers.on_model(reply);
    if (model_pending) {
        model_pending = 0;
        fetch_model();
    }
}

/* One request at a time; a request while one is out is sent after it, so
 * the screen ends on the newest state. */
static void fetch_model(void)
{
    char path[40];

    if (model_in_flight) {
        model_pending = 1;
        return;
    }
    model_in_flight = 1;
    snprintf(path, sizeof(path), "/models/%" PRId64, model);
    api_get(path, on_model_reply, (void *)(uintptr_t)run);
}

/* The polling fallback's callbacks, which go through the same seq filter
 * as the socket's events. */
static void poll_model(const struct json *reply)
{
    handlers.on_model(reply);
}

static void poll_error(int status, const struct json *reply)
{
    handlers.on_error(status, reply);
}

static const struct poll_handlers poll_callbacks = {
    poll_model, deliver_event, poll_error,
};

static void on_socket_open(void *ctx)
{
    char text[120];

    if (!current(ctx))
        return;
    socket_open = 1;
    backoff_ms = BACKOFF_FIRST_MS;
    if (polling) {
        poll_stop();
        polling = 0;
    }
    snprintf(text, sizeof(text),
             "{\"type\":\"subscribe\",\"model\":%" PRId64
             ",\"after\":%" PRId64 "}",
             model, last_seq);
    ws_send(socket_handle, text);
    report_mode();
}

static void on_socket_message(const char *text, void *ctx)
{
    struct json *message;
    const char *type;

    if (!current(ctx))
        return;
    message = json_parse(text);
    type = json_string(json_get(message, "type"), "");
    if (json_int(json_get(message, "model"), model) != model) {
        json_free(message);
        return;
    }
    if (strcmp(type, "event") == 0)
        deliver_event(message);
    else if (strcmp(type, "subscribed") == 0)
        fetch_model();
    else if (strcmp(type, "error") == 0)
        handlers.on_error(-1, message);
    json_free(message);
}

static void on_reconnect_timer(void *ctx)
{
    if (!current(ctx))
        return;
    reconnect_timer = -1;
    connect_socket();
}

static void on_socket_close(int code, int opened, void *ctx)
{
    char jitter[3];
    int delay;

    (void)code;
    if (!current(ctx))
        return;
    socket_handle = -1;
    socket_open = 0;
    if (!opened && !polling) {
        /* The socket cannot open: poll until it can. */
        polling = 1;
        poll_start(model, last_seq, &poll_callbacks);
    }
    random_hex(jitter, sizeof(jitter));
    delay = backoff_ms + backoff_ms / 4 * (int)strtol(jitter, NULL, 16) / 255;
    backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                 : backoff_ms * 2;
    reconnect_timer = timer_after(delay, on_reconnect_timer,
                                  (void *)(uintptr_t)run);
    report_mode();
}

static void connect_socket(void)
{
    socket_handle = ws_open("/api/v1/live", on_socket_open,
                            on_socket_message, on_socket_close,
                            (void *)(uintptr_t)run);
}

static void on_refresh_timer(void *ctx)
{
    if (!current(ctx) || polling)
        return;
    fetch_model();
}

void source_start(int64_t model_id, const struct source_handlers *h)
{
    source_stop();
    handlers = *h;
    model = model_id;
    last_seq = 0;
    backoff_ms = BACKOFF_FIRST_MS;
    fetch_model();
    connect_socket();
    refresh_timer = timer_every(MODEL_REFRESH_MS, on_refresh_timer,
                                (void *)(uintptr_t)run);
    report_mode();
}

void source_stop(void)
{
    if (socket_handle >= 0)
        ws_close(socket_handle);
    if (reconnect_timer >= 0)
        timer_cancel(reconnect_timer);
    if (refresh_timer >= 0)
        timer_clear(refresh_timer);
    if (polling)
        poll_stop();
    socket_handle = -1;
    reconnect_timer = -1;
    refresh_timer = -1;
    socket_open = 0;
    polling = 0;
    model_in_flight = 0;
    model_pending = 0;
    run++;
}

void source_refresh(void)
{
    fetch_model();
}

const char *source_mode(void)
{
    if (socket_open)
        return "live";
    return polling ? "polling" : "connecting";
}
