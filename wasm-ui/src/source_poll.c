/*
 * The polling source, which source_live.c runs only while the WebSocket
 * cannot open: once a second, GET /models/{id} and
 * GET /models/{id}/events?after=LAST. A tick is skipped while the last
 * tick's requests are still out, so a slow gateway never gets a queue of
 * requests. When the events reply has "more": true, the next page is
 * requested at once.
 */
#include <inttypes.h>
#include <stdio.h>

#include "api.h"
#include "dom.h"
#include "source_poll.h"

#define POLL_MS 1000

static struct poll_handlers handlers;
static int64_t model;
static int64_t last_seq;
static int timer = -1;
static int in_flight;
/* Bumped by source_stop, so that replies to a stopped source are
 * dropped even when the view generation has not changed. */
static unsigned run;

static void fetch_events(void);

static void on_model(int status, const struct json *reply, void *ctx)
{
    if ((unsigned)(uintptr_t)ctx != run)
        return;
    in_flight--;
    if (status != 200) {
        handlers.on_error(status, reply);
        return;
    }
    handlers.on_model(reply);
}

static void on_events(int status, const struct json *reply, void *ctx)
{
    const struct json *events = json_get(reply, "events"), *more;

    if ((unsigned)(uintptr_t)ctx != run)
        return;
    in_flight--;
    if (status != 200) {
        handlers.on_error(status, reply);
        return;
    }
    for (const struct json *e = events ? events->child : NULL; e != NULL;
         e = e->next) {
        int64_t seq = json_int(json_get(e, "seq"), 0);

        if (seq <= last_seq)
            continue;
        last_seq = seq;
        handlers.on_event(e);
    }
    more = json_get(reply, "more");
    if (more != NULL && more->type == JSON_TRUE)
        fetch_events();
}

static void fetch_events(void)
{
    char path[80];

    snprintf(path, sizeof(path), "/models/%" PRId64 "/events?after=%" PRId64,
             model, last_seq);
    in_flight++;
    api_get(path, on_events, (void *)(uintptr_t)run);
}

static void fetch_model(void)
{
    char path[40];

    snprintf(path, sizeof(path), "/models/%" PRId64, model);
    in_flight++;
    api_get(path, on_model, (void *)(uintptr_t)run);
}

static void tick(void *ctx)
{
    (void)ctx;
    if (in_flight > 0)
        return;
    fetch_model();
    fetch_events();
}

void poll_start(int64_t model_id, int64_t after_seq,
                const struct poll_handlers *h)
{
    poll_stop();
    handlers = *h;
    model = model_id;
    last_seq = after_seq;
    tick(NULL);
    timer = timer_every(POLL_MS, tick, NULL);
}

void poll_stop(void)
{
    if (timer >= 0)
        timer_clear(timer);
    timer = -1;
    in_flight = 0;
    run++;
}
