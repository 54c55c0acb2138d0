/* Tests of backend/daemon/store: pragmas, migrations, version checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store.h"
#include "harness.h"

static int setup(void **state)
{
    char *dir = malloc(PATH_MAX);
    harness_tmpdir(dir, PATH_MAX);
    *state = dir;
    return 0;
}

static int teardown(void **state)
{
    harness_rmtree(*state);
    free(*state);
    return 0;
}

static void db_path(void **state, char *out, size_t len)
{
    snprintf(out, len, "%s/test.db", (char *)*state);
}

static const char *query_text(struct store *st, const char *sql, char *out,
                              size_t len)
{
    sqlite3_stmt *stmt;

    out[0] = '\0';
    assert_int_equal(sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL),
                     SQLITE_OK);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    return out;
}

static void store_open_sets_pragmas(void **state)
{
    char path[PATH_MAX], text[64];
    struct store st;
    struct error err = {0};

    db_path(state, path, sizeof(path));
    assert_int_equal(store_open(&st, path, schema_sql, &err), 0);
    assert_string_equal(query_text(&st, "PRAGMA journal_mode", text, 64),
                        "wal");
    assert_string_equal(query_text(&st, "PRAGMA foreign_keys", text, 64),
                        "1");
    /* synchronous=FULL is 2. */
    assert_string_equal(query_text(&st, "PRAGMA synchronous", text, 64),
                        "2");
    store_close(&st);
}

static void store_migrates_to_latest(void **state)
{
    char path[PATH_MAX], text[64];
    struct store st;
    struct error err = {0};
    int files = 0;

    while (schema_sql[files].name != NULL)
        files++;

    db_path(state, path, sizeof(path));
    assert_int_equal(store_open(&st, path, schema_sql, &err), 0);
    assert_int_equal(st.schema_version, files);
    assert_int_equal(
        atoi(query_text(&st, "SELECT count(*) FROM schema_version", text,
                        64)),
        files);
    store_close(&st);

    /* Reopening applies nothing twice. */
    assert_int_equal(store_open(&st, path, schema_sql, &err), 0);
    assert_int_equal(
        atoi(query_text(&st, "SELECT count(*) FROM schema_version", text,
                        64)),
        files);
    store_close(&st);
}

static void store_applies_only_new_migrations(void **state)
{
    static const struct embedded_file v1[] = {
        {"001_a.sql", "CREATE TABLE schema_version(version INTEGER PRIMARY "
                      "KEY, name TEXT, applied_at INTEGER);"
                      "CREATE TABLE a(x);"},
        {NULL, NULL},
    };
    static const struct embedded_file v2[] = {
        {"001_a.sql", "CREATE TABLE schema_version(version INTEGER PRIMARY "
                      "KEY, name TEXT, applied_at INTEGER);"
                      "CREATE TABLE a(x);"},
        {"002_b.sql", "CREATE TABLE b(y);"},
        {NULL, NULL},
    };
    char path[PATH_MAX];
    struct store st;
    struct error err = {0};

    db_path(state, path, sizeof(path));
    assert_int_equal(store_open(&st, path, v1, &err), 0);
    assert_int_equal(st.schema_version, 1);
    store_close(&st);
    assert_int_equal(store_open(&st, path, v2, &err), 0);
    assert_int_equal(st.schema_version, 2);
    assert_int_equal(store_exec(&st, "INSERT INTO b VALUES (1)", &err), 0);
    store_close(&st);
}

static void store_rejects_newer_database(void **state)
{
    static const struct embedded_file v0[] = {{NULL, NULL}};
    char path[PATH_MAX];
    struct store st;
    struct error err = {0};

    db_path(state, path, sizeof(path));
    assert_int_equal(store_open(&st, path, schema_sql, &err), 0);
    store_close(&st);
    assert_int_equal(store_open(&st, path, v0, &err), -EPROTO);
    assert_non_null(strstr(err.msg, "newer"));
    assert_null(st.db);
}

static void store_rolls_back_failed_migration(void **state)
{
    static const struct embedded_file bad[] = {
        {"001_a.sql", "CREATE TABLE schema_version(version INTEGER PRIMARY "
                      "KEY, name TEXT, applied_at INTEGER);"
                      "CREATE TABLE a(x);"},
        {"002_b.sql", "CREATE TABLE b(y); THIS IS NOT SQL;"},
        {NULL, NULL},
    };
    char path[PATH_MAX];
    struct store st;
    struct error err = {0};

    db_path(state, path, sizeof(path));
    assert_int_equal(store_open(&st, path, bad, &err), -EIO);
    assert_non_null(strstr(err.msg, "002_b.sql"));

    /* Version 1 stayed and table b was rolled back with its migration. */
    assert_int_equal(store_open(&st, path, bad + 2, &err), -EPROTO);
    assert_non_null(strstr(err.msg, "version 1"));
}

static void store_rejects_misnumbered_file(void **state)
{
    static const struct embedded_file gap[] = {
        {"002_a.sql", "CREATE TABLE a(x);"},
        {NULL, NULL},
    };
    char path[PATH_MAX];
    struct store st;
    struct error err = {0};

    db_path(state, path, sizeof(path));
    assert_int_equal(store_open(&st, path, gap, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "002_a.sql"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(store_open_sets_pragmas, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(store_migrates_to_latest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(store_applies_only_new_migrations,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(store_rejects_newer_database, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(store_rolls_back_failed_migration,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(store_rejects_misnumbered_file,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
