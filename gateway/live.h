/*
 * The browser's live progress WebSocket at /api/v1/live. A signed-in
 * browser subscribes to its models and receives their progress events in
 * seq order: first the stored ones it missed (replayed through the
 * backend's progress.after), then each new one as the backend pushes it.
 * docs/LIVE.md describes the messages; live.c describes the threads and
 * the locking.
 */
#ifndef TRAINYARD_LIVE_H
#define TRAINYARD_LIVE_H

#include <civetweb.h>

#include "error.h"

#define LIVE_PATH "/api/v1/live"

/* Largest message a browser may send, after joining its fragments. */
#define LIVE_MESSAGE_MAX (16 * 1024)
/* Subscriptions one connection may hold at once. */
#define LIVE_SUBSCRIPTIONS_MAX 64
/* Messages waiting for one browser, by count and by bytes. A browser that
 * falls further behind is disconnected, so that it never holds up the
 * backend connection or other browsers. */
#define LIVE_QUEUE_MESSAGES_MAX 1024
#define LIVE_QUEUE_BYTES_MAX (1024 * 1024)

/* Defaults of struct live_options. */
#define LIVE_CONNECTIONS_DEFAULT 32
#define LIVE_PING_INTERVAL_DEFAULT_S 25

struct live_options {
    /* Live connections served at once. civetweb gives each WebSocket one
     * of its worker threads for as long as it is open, so http.c adds
     * this many threads to those for REST requests. */
    int max_connections;
    /* Seconds between the WebSocket pings sent to each browser, which
     * keep idle proxies from closing the connection. */
    int ping_interval_s;
};

/* Set the options live_start uses; without this call it uses the
 * defaults. Call it before http_start. */
void live_configure(const struct live_options *opt);

/* max_connections of the options set, so that http.c can size
 * civetweb's thread pool. */
int live_max_connections(void);

/* Register the WebSocket handlers on ctx, install the event and connect
 * handlers of upstream.h and start the ticker thread. Returns 0, or a
 * negative errno with err filled, for instance when this civetweb was
 * built without WebSocket support. */
int live_start(struct mg_context *ctx, struct error *err);

/* Remove the upstream handlers and stop the ticker thread. Call it after
 * mg_stop, which closes every live connection. */
void live_stop(void);

#endif
