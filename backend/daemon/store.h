/*
 * The backend's SQLite database: opened in WAL mode with foreign keys on
 * and synchronous=FULL (every commit that moves money reaches the disk
 * before it is acknowledged), and migrated on open from the numbered SQL
 * files of schema/db/, which the build embeds into the program.
 */
#ifndef TRAINYARD_STORE_H
#define TRAINYARD_STORE_H

#include <sqlite3.h>

#include "embedded.h"
#include "error.h"

struct store {
    sqlite3 *db;
    int schema_version; /* highest migration applied */
};

/* Open or create the database at path and apply missing migrations from
 * files (NULL-name terminated, sorted, each named NNN_what.sql). */
int store_open(struct store *st, const char *path,
               const struct embedded_file *files, struct error *err);

void store_close(struct store *st);

/* Run one or more SQL statements that return no rows. */
int store_exec(struct store *st, const char *sql, struct error *err);

/* BEGIN IMMEDIATE: take the write lock now, so that checks made inside
 * the transaction still hold when it commits. */
int store_begin(struct store *st, struct error *err);
int store_commit(struct store *st, struct error *err);
/* Roll back the open transaction, if any; never fails. */
void store_rollback(struct store *st);

#endif
