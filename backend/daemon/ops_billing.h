/* Protocol ops for instance types, balances, the ledger, top-ups, credits
 * and billing reports (see ops_billing.c and schema/protocol.md). */
#ifndef TRAINYARD_OPS_BILLING_H
#define TRAINYARD_OPS_BILLING_H

#include "proto.h"

extern const struct proto_op proto_billing_ops[];

#endif
