/*
 * The gateway-backend protocol, version 1 (schema/protocol.md): JSON text
 * messages over one WebSocket. proto_handle turns one received message into
 * at most one reply; it never blocks on the network.
 */
#ifndef TRAINYARD_PROTO_H
#define TRAINYARD_PROTO_H

#include <stddef.h>

#include "backend.h"

#define PROTO_VERSION 1
#define PROTO_SUBPROTOCOL "trainyard.v1"
/* Largest message either side accepts; larger ones close the connection. */
#define PROTO_MESSAGE_MAX (1024 * 1024)

struct proto_conn {
    int authenticated;
    int close_after_reply; /* set when the peer must be disconnected */
};

/* Handle one message; *reply is a new string to send (free it) or NULL. */
void proto_handle(struct backend *be, struct proto_conn *conn,
                  const char *msg, size_t len, char **reply);

#endif
