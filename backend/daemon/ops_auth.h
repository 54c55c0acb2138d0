/*
 * Protocol ops for accounts, web sessions and API keys (docs/SECURITY.md
 * lists them with their arguments and results).
 *
 * The gateway authenticates browsers and scripts through the auth.* ops,
 * which take the session token or API key as an argument and need no
 * account in the envelope. Every other op here acts for the envelope's
 * account and reads that account's role from the database itself, so an
 * admin op checks the role as it is now, not as the gateway cached it.
 */
#ifndef TRAINYARD_OPS_AUTH_H
#define TRAINYARD_OPS_AUTH_H

#include "proto.h"

/* The ops of this module, ending with a NULL name. */
extern const struct proto_op proto_auth_ops[];

#endif
