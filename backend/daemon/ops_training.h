/* Protocol ops for data sets, models, training and progress replay (see
 * ops_training.c and schema/protocol.md). */
#ifndef TRAINYARD_OPS_TRAINING_H
#define TRAINYARD_OPS_TRAINING_H

#include "proto.h"

extern const struct proto_op proto_training_ops[];

#endif
