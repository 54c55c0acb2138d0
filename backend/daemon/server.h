/* The backend's libwebsockets server, where gateways connect. */
#ifndef TRAINYARD_SERVER_H
#define TRAINYARD_SERVER_H

#include "backend.h"
#include "error.h"

/* Period of backend->on_tick, in milliseconds. The tick reads the
 * trainers' event pipes, so it bounds how long a progress event waits
 * before it is stored and sent to the viewers. A tick with nothing to do
 * costs a read and a waitpid per trainer. */
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

/* Queue text on every authenticated gateway connection. Call it from the
 * service thread only (the tick and the op handlers run there). */
void server_broadcast(const char *text, size_t len);

#endif
