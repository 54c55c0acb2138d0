#include "instances.h"

#include <errno.h>
#include <string.h>

#include "log.h"

int instances_sync(struct store *st, const struct config *c,
                   struct error *err)
{
    sqlite3_stmt *upsert = NULL;
    int rc;

    rc = store_begin(st, err);
    if (rc != 0)
        return rc;
    rc = store_exec(st, "UPDATE instance_types SET enabled = 0", err);
    if (rc == 0 &&
        sqlite3_prepare_v2(
            st->db,
            "INSERT INTO instance_types(name, device, price_per_hour, "
            "capacity, enabled) VALUES (?1, ?2, ?3, ?4, 1) "
            "ON CONFLICT(name) DO UPDATE SET device = ?2, "
            "price_per_hour = ?3, capacity = ?4, enabled = 1",
            -1, &upsert, NULL) != SQLITE_OK)
        rc = error_set(err, -EIO, "cannot store instance types: %s",
                       sqlite3_errmsg(st->db));

    for (int i = 0; rc == 0 && i < c->ntypes; i++) {
        const struct config_instance_type *t = &c->types[i];
        sqlite3_reset(upsert);
        sqlite3_bind_text(upsert, 1, t->name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(upsert, 2, t->device, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(upsert, 3, t->price_per_hour);
        sqlite3_bind_int(upsert, 4, t->capacity);
        if (sqlite3_step(upsert) != SQLITE_DONE)
            rc = error_set(err, -EIO, "cannot store instance type '%s': %s",
                           t->name, sqlite3_errmsg(st->db));
        else
            log_info("instance type %s: device %s, $%lld.%06lld per hour, "
                     "capacity %d",
                     t->name, t->device,
                     (long long)(t->price_per_hour / 1000000),
                     (long long)(t->price_per_hour % 1000000), t->capacity);
    }
    sqlite3_finalize(upsert);
    if (rc == 0)
        rc = store_commit(st, err);
    if (rc != 0)
        store_rollback(st);
    return rc;
}
