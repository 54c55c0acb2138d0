/* State of the backend daemon that every module of it shares. */
#ifndef TRAINYARD_BACKEND_H
#define TRAINYARD_BACKEND_H

#include <stdint.h>

#include "config.h"
#include "error.h"
#include "executor.h"
#include "secret.h"
#include "sessions.h"
#include "store.h"

#define BACKEND_VERSION "0.1.0"

struct backend {
    const char *data_dir;
    struct config config;
    struct store store;
    struct sessions *sessions; /* training sessions and their trainers */
    struct executor executor;  /* how sessions run trainers */
    char secret[SECRET_HEX_LEN + 1];
    int64_t started_ms; /* CLOCK_MONOTONIC, for uptime */
    /* Called from the service loop every SERVER_TICK_MS, when set. */
    void (*on_tick)(struct backend *be);
    /* Called when a pipe watched with server_watch(fd, key) has input.
     * Returns 1 to keep watching it, 0 to stop. */
    int (*on_input)(struct backend *be, int64_t key);
    /* Called when the watch of key has ended. */
    void (*on_unwatch)(struct backend *be, int64_t key);
};

/* Create be->data_dir, load or create its gateway.secret into
 * be->secret, open and migrate its trainyard.db into be->store, and
 * store the instance types of be->config. The caller sets be->data_dir
 * and be->config first. On failure nothing stays open. */
int backend_open(struct backend *be, struct error *err);

/* Open the training session supervisor (be->sessions) over be->store with
 * be->executor, which the caller has set, send each stored event to the
 * gateways, and settle the sessions that an earlier backend left
 * running (sessions_reconcile). */
int backend_open_sessions(struct backend *be, struct error *err);

/* Close the supervisor, when open, and the database. Running trainers
 * are killed, so call sessions_shutdown first for a graceful stop. */
void backend_close(struct backend *be);

#endif
