/* The backend's libwebsockets server, where gateways connect. */
#ifndef TRAINYARD_SERVER_H
#define TRAINYARD_SERVER_H

#include <stdint.h>

#include "backend.h"
#include "error.h"

/* Period of backend->on_tick, in milliseconds. The tick reaps trainers,
 * enforces deadlines and launches queued sessions. It also reads the
 * event pipes that the service loop does not watch (server_watch). A
 * tick with nothing to do costs a waitpid per trainer. */
#define SERVER_TICK_MS 10

struct server_options {
    const char *host;        /* address to listen on, such as 127.0.0.1 */
    int port;                /* 0 picks a free port */
    const char *unix_socket; /* also listen here when not NULL or empty */
    const char *port_file;   /* where to write the chosen port, or NULL */
};

/* Serve until server_request_stop; returns 0 after a clean stop. */
int server_run(struct backend *be, const struct server_options *opt,
               struct error *err);

/* Ask server_run to return; safe to call from a signal handler. */
void server_request_stop(void);

/* Call backend->on_input(be, key) from the service loop whenever fd has
 * input, until it returns 0 or the pipe ends. Then backend->on_unwatch(be,
 * key) is called. The loop watches a duplicate of fd, so the caller still
 * owns fd and may close it at any time. Call it from the service thread
 * while server_run runs. Returns 0, or a negative errno code when fd
 * cannot be watched. */
int server_watch(int fd, int64_t key);

/* Queue text on every authenticated gateway connection. Call it from the
 * service thread only (the tick and the op handlers run there). */
void server_broadcast(const char *text, size_t len);

#endif
