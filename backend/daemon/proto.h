/*
 * The gateway-backend protocol, version 1 (schema/protocol.md): JSON text
 * messages over one WebSocket. proto_handle turns one received message into
 * at most one reply; it never blocks on the network.
 */
#ifndef TRAINYARD_PROTO_H
#define TRAINYARD_PROTO_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define PROTO_VERSION 1
#define PROTO_SUBPROTOCOL "trainyard.v1"
/* Largest message either side accepts; larger ones close the connection. */
#define PROTO_MESSAGE_MAX (1024 * 1024)

struct proto_conn {
    int authenticated;
    int close_after_reply; /* set when the peer must be disconnected */
};

/* One request, as passed to an op handler. The gateway, which the shared
 * secret authenticates, names the signed-in account in the envelope's
 * "account" field, and 0 means no account. */
struct op_call {
    struct backend *be;
    int64_t account_id;
    const cJSON *args;    /* an object, or NULL */
    const char *code;     /* error code, set by op_error */
    char message[512];    /* error message, set by op_error */
};

/* An op returns its result object, or NULL after op_error. */
typedef cJSON *(*op_handler)(struct op_call *call);

struct proto_op {
    const char *name;
    op_handler handler;
};

/* Record an error with a stable code (such as "not_found") and a message
 * a person can act on; returns NULL for `return op_error(...)`. */
cJSON *op_error(struct op_call *call, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Read an argument: 0 when present with the right type, 1 when absent
 * (out untouched), -1 after op_error(invalid_request) for a wrong type. */
int op_arg_int64(struct op_call *call, const char *name, int64_t *out);
int op_arg_string(struct op_call *call, const char *name, const char **out);

/* Op tables of each module, each ending with a NULL name. */
extern const struct proto_op proto_core_ops[];

/* Handle one message; *reply is a new string to send (free it) or NULL. */
void proto_handle(struct backend *be, struct proto_conn *conn,
                  const char *msg, size_t len, char **reply);

#endif
