/* Instance types: the configuration's list, mirrored into SQLite so that
 * sessions and charges can refer to a type by id and keep its history. */
#ifndef TRAINYARD_INSTANCES_H
#define TRAINYARD_INSTANCES_H

#include "config.h"
#include "store.h"

/* Insert or update every configured type, and disable types that the
 * configuration no longer lists (their rows stay for old sessions). */
int instances_sync(struct store *st, const struct config *c,
                   struct error *err);

#endif
