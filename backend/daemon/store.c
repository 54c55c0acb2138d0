/*
 * Opening and migrating the database. A migration file's number is its
 * version. Versions must rise without gaps; a database whose version is
 * newer than every embedded file was written by a newer backend and is
 * rejected instead of being used with the wrong schema.
 */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

int store_exec(struct store *st, const char *sql, struct error *err)
{
    char *msg = NULL;

    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = error_set(err, -EIO, "database error: %s",
                           msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

int store_begin(struct store *st, struct error *err)
{
    return store_exec(st, "BEGIN IMMEDIATE", err);
}

int store_commit(struct store *st, struct error *err)
{
    return store_exec(st, "COMMIT", err);
}

void store_rollback(struct store *st)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

static int read_version(struct store *st, struct error *err)
{
    sqlite3_stmt *stmt;
    int version = -1;

    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &stmt, NULL) !=
        SQLITE_OK)
        return error_set(err, -EIO, "cannot read the schema version: %s",
                         sqlite3_errmsg(st->db));
    if (sqlite3_step(stmt) == SQLITE_ROW)
        version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    if (version < 0)
        return error_set(err, -EIO, "cannot read the schema version: %s",
                         sqlite3_errmsg(st->db));
    return version;
}

/* Apply one migration in its own transaction, so that a crash leaves the
 * database at the previous version. */
static int apply_migration(struct store *st, int version,
                           const struct embedded_file *file,
                           struct error *err)
{
    char record[512];
    int rc;

    rc = store_exec(st, "BEGIN IMMEDIATE", err);
    if (rc != 0)
        return rc;

    rc = store_exec(st, file->text, err);
    if (rc == 0) {
        snprintf(record, sizeof(record),
                 "INSERT INTO schema_version(version, name, applied_at) "
                 "VALUES (%d, '%s', %lld); PRAGMA user_version = %d;",
                 version, file->name, (long long)time(NULL), version);
        rc = store_exec(st, record, err);
    }
    if (rc == 0)
        rc = store_exec(st, "COMMIT", err);
    if (rc != 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return error_set(err, rc, "migration %s failed: %s", file->name,
                         err ? err->msg : "");
    }
    log_info("database migrated to version %d (%s)", version, file->name);
    return 0;
}

static int migrate(struct store *st, const struct embedded_file *files,
                   struct error *err)
{
    int current, latest = 0;

    current = read_version(st, err);
    if (current < 0)
        return current;

    for (int i = 0; files[i].name != NULL; i++) {
        int version = atoi(files[i].name);

        if (version != i + 1)
            return error_set(err, -EINVAL,
                             "migration file %s should be numbered %03d",
                             files[i].name, i + 1);
        latest = version;
        if (version <= current)
            continue;
        int rc = apply_migration(st, version, &files[i], err);
        if (rc != 0)
            return rc;
    }

    if (current > latest)
        return error_set(err, -EPROTO,
                         "database schema version %d is newer than this "
                         "backend's %d; run the newer backend or restore a "
                         "backup",
                         current, latest);
    st->schema_version = latest;
    return 0;
}

int store_open(struct store *st, const char *path,
               const struct embedded_file *files, struct error *err)
{
    int rc;

    memset(st, 0, sizeof(*st));
    rc = sqlite3_open_v2(path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                             SQLITE_OPEN_FULLMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        rc = error_set(err, -EIO, "cannot open database '%s': %s", path,
                       st->db ? sqlite3_errmsg(st->db) : "out of memory");
        store_close(st);
        return rc;
    }
    sqlite3_busy_timeout(st->db, 5000);

    rc = store_exec(st,
                    "PRAGMA journal_mode = WAL;"
                    "PRAGMA synchronous = FULL;"
                    "PRAGMA foreign_keys = ON;",
                    err);
    if (rc == 0)
        rc = migrate(st, files, err);
    if (rc != 0) {
        store_close(st);
        return rc;
    }
    return 0;
}

void store_close(struct store *st)
{
    if (st->db != NULL)
        sqlite3_close(st->db);
    st->db = NULL;
}
