/*
 * Tests of backend/daemon/ledger: the append-only ledger and the billing
 * rules (rounding, epoch charges with write-off, timed prices, payment and
 * pro-rata refunds), each against a fresh SQLite database made by the real
 * migrations. The ledger's log lines go to a file in the test's folder so
 * that one test can check them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/ledger.h"
#include "daemon/store.h"
#include "harness.h"
#include "log.h"

#define USD(x) ((int64_t)((x)*1000000LL))

struct fixture {
    char dir[PATH_MAX];
    char db[PATH_MAX + 16];
    char log[PATH_MAX + 16];
    int log_fd;
    struct store st;
    int64_t account;
    int64_t other_account;
    int64_t model;
    int64_t instance;
};

static int64_t insert(struct store *st, char *sql)
{
    struct error err = {0};
    int rc = store_exec(st, sql, &err);

    if (rc != 0)
        fprintf(stderr, "fixture SQL failed: %s\n", err.msg);
    assert_int_equal(rc, 0);
    sqlite3_free(sql);
    return sqlite3_last_insert_rowid(st->db);
}

static int64_t add_account(struct store *st, const char *email)
{
    return insert(st, sqlite3_mprintf("INSERT INTO accounts (email, plan,"
                                      " created_at) VALUES (%Q, 'pro', 0)",
                                      email));
}

static int64_t add_model(struct store *st, int64_t account, const char *name)
{
    int64_t dataset = insert(
        st, sqlite3_mprintf("INSERT INTO datasets (account_id, name, task,"
                            " path, created_at) VALUES (%lld, 'd',"
                            " 'classify', 'd', 0)",
                            (long long)account));

    return insert(
        st, sqlite3_mprintf("INSERT INTO models (account_id, dataset_id, name,"
                            " task, architecture, created_at) VALUES (%lld,"
                            " %lld, %Q, 'classify', 'yolov8n-cls.yaml', 0)",
                            (long long)account, (long long)dataset, name));
}

/* A session; time_limit_ms 0 stores NULL (epoch mode). */
static int64_t add_session(struct fixture *f, int64_t account, int64_t model,
                           int64_t time_limit_ms, int64_t rate)
{
    char limit[32] = "NULL";

    if (time_limit_ms > 0)
        snprintf(limit, sizeof(limit), "%lld", (long long)time_limit_ms);
    return insert(&f->st,
                  sqlite3_mprintf("INSERT INTO sessions (model_id,"
                                  " account_id, instance_type_id, mode,"
                                  " epochs, time_limit_ms, rate, created_at,"
                                  " updated_at) VALUES (%lld, %lld, %lld,"
                                  " %Q, 10, %s, %lld, 0, 0)",
                                  (long long)model, (long long)account,
                                  (long long)f->instance,
                                  time_limit_ms > 0 ? "timed" : "epochs", limit,
                                  (long long)rate));
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct error err = {0};

    harness_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/test.db", f->dir);
    snprintf(f->log, sizeof(f->log), "%s/test.log", f->dir);
    f->log_fd = open(f->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    assert_true(f->log_fd >= 0);
    log_init("test", LOG_LEVEL_INFO, f->log_fd);

    assert_int_equal(store_open(&f->st, f->db, schema_sql, &err), 0);
    f->account = add_account(&f->st, "user@example.com");
    f->other_account = add_account(&f->st, "other@example.com");
    f->model = add_model(&f->st, f->account, "m1");
    f->instance =
        insert(&f->st, sqlite3_mprintf("INSERT INTO instance_types (name,"
                                       " device, price_per_hour) VALUES"
                                       " ('gpu-0', '0', 1200000)"));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    store_close(&f->st);
    log_init("test", LOG_LEVEL_INFO, 2);
    close(f->log_fd);
    harness_rmtree(f->dir);
    free(f);
    return 0;
}

static int64_t query_int(struct store *st, const char *sql)
{
    sqlite3_stmt *stmt;
    int64_t value = -1;

    assert_int_equal(sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL),
                     SQLITE_OK);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
}

static int64_t balance_of(struct fixture *f, int64_t account)
{
    struct error err = {0};
    int64_t balance = -1;

    assert_int_equal(ledger_balance(&f->st, account, &balance, &err), 0);
    return balance;
}

static int64_t ledger_sum(struct fixture *f, int64_t account)
{
    char sql[128];

    snprintf(sql, sizeof(sql),
             "SELECT coalesce(sum(amount), 0) FROM ledger"
             " WHERE account_id = %lld",
             (long long)account);
    return query_int(&f->st, sql);
}

static int64_t row_count(struct fixture *f)
{
    return query_int(&f->st, "SELECT count(*) FROM ledger");
}

static void topup(struct fixture *f, int64_t account, int64_t amount)
{
    struct ledger_entry e = {.account_id = account,
                             .kind = LEDGER_TOPUP,
                             .amount = amount,
                             .description = "test top-up"};
    struct error err = {0};

    assert_int_equal(ledger_append(&f->st, &e, NULL, NULL, &err), 0);
}

static int charge_epoch(struct fixture *f, int64_t session, int epoch,
                        double seconds, int64_t rate, int64_t *charged,
                        struct error *err)
{
    int rc = store_begin(&f->st, err);

    if (rc != 0)
        return rc;
    rc = billing_charge_epoch_tx(&f->st, f->account, session, f->model, epoch,
                                 seconds, rate, charged, err);
    if (rc == 0)
        rc = store_commit(&f->st, err);
    if (rc != 0)
        store_rollback(&f->st);
    return rc;
}

static int pay_timed(struct fixture *f, int64_t session, int64_t price,
                     int64_t rate, int prepaid, struct error *err)
{
    int rc = store_begin(&f->st, err);

    if (rc != 0)
        return rc;
    rc = billing_pay_timed_tx(&f->st, f->account, session, f->model, price,
                              rate, prepaid, err);
    if (rc == 0)
        rc = store_commit(&f->st, err);
    if (rc != 0)
        store_rollback(&f->st);
    return rc;
}

static int refund_timed(struct fixture *f, int64_t session, int64_t price,
                        int64_t limit_ms, int64_t used_ms, int64_t *refunded,
                        struct error *err)
{
    int rc = store_begin(&f->st, err);

    if (rc != 0)
        return rc;
    rc = billing_refund_timed_tx(&f->st, f->account, session, f->model, price,
                                 limit_ms, used_ms, refunded, err);
    if (rc == 0)
        rc = store_commit(&f->st, err);
    if (rc != 0)
        store_rollback(&f->st);
    return rc;
}

/* ------------------------------------------------------------------------
 * Appending. */

static void balance_starts_at_zero(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    int64_t balance = -1;

    assert_int_equal(balance_of(f, f->account), 0);
    assert_int_equal(ledger_balance(&f->st, 999, &balance, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "999"));
}

static void append_updates_balance(void **state)
{
    struct fixture *f = *state;
    struct ledger_entry charge = {
        .account_id = f->account, .kind = LEDGER_CHARGE, .amount = -USD(3.25)};
    struct error err = {0};
    int64_t id = 0;
    int duplicate = -1;

    topup(f, f->account, USD(10));
    assert_int_equal(ledger_append(&f->st, &charge, &id, &duplicate, &err), 0);
    assert_true(id > 0);
    assert_int_equal(duplicate, 0);
    assert_int_equal(balance_of(f, f->account), USD(6.75));
    assert_int_equal(ledger_sum(f, f->account), USD(6.75));
    assert_int_equal(balance_of(f, f->other_account), 0);
}

static void append_rejects_negative_balance(void **state)
{
    struct fixture *f = *state;
    struct ledger_entry charge = {.account_id = f->account,
                                  .kind = LEDGER_CHARGE,
                                  .amount = -USD(2.000001)};
    struct error err = {0};

    topup(f, f->account, USD(2));
    assert_int_equal(ledger_append(&f->st, &charge, NULL, NULL, &err), -ENOSPC);
    assert_non_null(strstr(err.msg, "$2.00"));
    assert_non_null(strstr(err.msg, "$2.000001"));
    assert_non_null(strstr(err.msg, "$0.000001"));
    assert_int_equal(balance_of(f, f->account), USD(2));
    assert_int_equal(row_count(f), 1);
}

static void append_key_is_idempotent(void **state)
{
    struct fixture *f = *state;
    struct ledger_entry e = {.account_id = f->account,
                             .kind = LEDGER_TOPUP,
                             .amount = USD(5),
                             .idempotency_key = "topup:form-1"};
    struct error err = {0};
    int64_t first = 0, second = 0;
    int duplicate = -1;

    assert_int_equal(ledger_append(&f->st, &e, &first, &duplicate, &err), 0);
    assert_int_equal(duplicate, 0);
    e.amount = USD(7); /* a retry's figure never replaces the first one */
    assert_int_equal(ledger_append(&f->st, &e, &second, &duplicate, &err), 0);
    assert_int_equal(duplicate, 1);
    assert_int_equal(second, first);
    assert_int_equal(row_count(f), 1);
    assert_int_equal(balance_of(f, f->account), USD(5));

    /* The same key for another account is a conflict, not a retry. */
    e.account_id = f->other_account;
    assert_int_equal(ledger_append(&f->st, &e, NULL, NULL, &err), -EEXIST);
    assert_non_null(strstr(err.msg, "topup:form-1"));
    assert_int_equal(balance_of(f, f->other_account), 0);
}

static void append_tx_needs_transaction(void **state)
{
    struct fixture *f = *state;
    struct ledger_entry e = {
        .account_id = f->account, .kind = LEDGER_TOPUP, .amount = USD(1)};
    struct error err = {0};

    assert_int_equal(ledger_append_tx(&f->st, &e, NULL, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "store_begin"));
    assert_int_equal(row_count(f), 0);
}

static void append_rejects_invalid_entries(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    struct ledger_entry e;

    e = (struct ledger_entry){
        .account_id = f->account, .kind = LEDGER_TOPUP, .amount = -USD(1)};
    assert_int_equal(ledger_append(&f->st, &e, NULL, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "-$1.00"));

    e = (struct ledger_entry){
        .account_id = f->account, .kind = LEDGER_CHARGE, .amount = USD(1)};
    assert_int_equal(ledger_append(&f->st, &e, NULL, NULL, &err), -EINVAL);

    e = (struct ledger_entry){
        .account_id = f->account, .kind = LEDGER_CREDIT, .amount = 0};
    assert_int_equal(ledger_append(&f->st, &e, NULL, NULL, &err), -EINVAL);

    e = (struct ledger_entry){
        .account_id = 0, .kind = LEDGER_TOPUP, .amount = USD(1)};
    assert_int_equal(ledger_append(&f->st, &e, NULL, NULL, &err), -EINVAL);

    e = (struct ledger_entry){
        .account_id = 4242, .kind = LEDGER_TOPUP, .amount = USD(1)};
    assert_int_equal(ledger_append(&f->st, &e, NULL, NULL, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "4242"));

    e = (struct ledger_entry){.account_id = f->account,
                              .kind = LEDGER_TOPUP,
                              .amount = USD(1),
                              .session_id = 777};
    assert_int_equal(ledger_append(&f->st, &e, NULL, NULL, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "777"));

    e = (struct ledger_entry){.account_id = f->account,
                              .kind = LEDGER_TOPUP,
                              .amount = USD(1),
                              .idempotency_key = ""};
    assert_int_equal(ledger_append(&f->st, &e, NULL, NULL, &err), -EINVAL);

    e = (struct ledger_entry){.account_id = f->account,
                              .kind = LEDGER_CHARGE,
                              .amount = 0,
                              .seconds = NAN};
    assert_int_equal(ledger_append(&f->st, &e, NULL, NULL, &err), -EINVAL);
    assert_int_equal(row_count(f), 0);
}

static void ledger_is_append_only(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};

    topup(f, f->account, USD(5));
    assert_int_equal(store_exec(&f->st, "UPDATE ledger SET amount = 1", &err),
                     -EIO);
    assert_non_null(strstr(err.msg, "append-only"));
    assert_int_equal(store_exec(&f->st, "DELETE FROM ledger", &err), -EIO);
    assert_non_null(strstr(err.msg, "append-only"));
    assert_int_equal(balance_of(f, f->account), USD(5));
    assert_int_equal(row_count(f), 1);

    /* The schema's CHECK also rejects a negative balance written by hand. */
    assert_int_equal(store_exec(&f->st,
                                "INSERT INTO ledger (account_id, kind,"
                                " amount, balance_after, created_at)"
                                " VALUES (1, 'charge', -6000000, -1000000, 0)",
                                &err),
                     -EIO);
}

static void ledger_logs_writes_and_retries(void **state)
{
    struct fixture *f = *state;
    int64_t session = add_session(f, f->account, f->model, 0, USD(1.2));
    struct error err = {0};
    int64_t charged;
    char *text = NULL;
    size_t len;
    FILE *log;

    topup(f, f->account, USD(10));
    assert_int_equal(charge_epoch(f, session, 1, 60, USD(1.2), &charged, &err),
                     0);
    assert_int_equal(charge_epoch(f, session, 1, 60, USD(1.2), &charged, &err),
                     0);

    log = fopen(f->log, "r");
    assert_non_null(log);
    assert_int_equal(getdelim(&text, &len, '\0', log) > 0, 1);
    fclose(log);
    assert_non_null(strstr(text, "ledger topup written"));
    assert_non_null(strstr(text, "ledger charge written"));
    assert_non_null(strstr(text, "ledger charge retry"));
    assert_non_null(strstr(text, "account=1 model=1 session=1 epoch=1"));
    assert_non_null(strstr(text, "amount_usd=-0.020000"));
    free(text);
}

/* ------------------------------------------------------------------------
 * Costs and prices. */

static void cost_rounds_half_up(void **state)
{
    static const struct {
        double seconds;
        int64_t rate;
        int64_t cost;
    } cases[] = {
        {0.5, 3600, 1}, /* 0.5 micro-dollars: a half rounds up */
        {1.5, 3600, 2},
        {2.5, 3600, 3}, /* not to even */
        {0.4999, 3600, 0},
        {0.125, 14400, 1},   /* exactly 0.5 */
        {1.0, 1000000, 278}, /* 277.78 */
        {3600, 1200000, 1200000},
        {600, 1200000, 200000},
        {0.1, 36000000000LL, 1000000}, /* 0.1 is not exact in binary */
        {0.35, 36000, 3}, /* binary 0.35 is just below, so 3.4999... */
        {1e-300, INT64_MAX, 0},
        {0, 3600, 0},
        {-1, 3600, 0},
        {3600, 0, 0},
        {3600, -5, 0},
        {1152921504606846976.0, 3600, 1152921504606846976LL}, /* 2^60 */
        {1180591620717411303424.0, 3600, INT64_MAX}, /* 2^70 saturates */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t cost = billing_cost(cases[i].seconds, cases[i].rate);

        if (cost != cases[i].cost)
            fprintf(stderr, "case %zu: %g s at %lld: %lld, expected %lld\n", i,
                    cases[i].seconds, (long long)cases[i].rate, (long long)cost,
                    (long long)cases[i].cost);
        assert_int_equal(cost, cases[i].cost);
    }
    assert_int_equal(billing_cost(NAN, 3600), 0);
    assert_int_equal(billing_cost(INFINITY, 3600), INT64_MAX);
}

static void cost_matches_exact_reference(void **state)
{
    uint64_t x = 88172645463325252ULL;

    (void)state;
    /* seconds = k / 1024 is exact in binary, so the exact cost is
     * k * rate / (1024 * 3600), rounded half up in integers. */
    for (int i = 0; i < 20000; i++) {
        int64_t k, rate, expected;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        k = (int64_t)(x % (1024LL * 100000));
        rate = (int64_t)((x >> 20) % USD(50));
        expected =
            (int64_t)(((__int128)k * rate + 1024 * 3600 / 2) / (1024 * 3600));
        assert_int_equal(billing_cost((double)k / 1024.0, rate), expected);
    }
}

static void timed_price_is_exact(void **state)
{
    (void)state;
    assert_int_equal(billing_timed_price(3600000, USD(1.2)), USD(1.2));
    assert_int_equal(billing_timed_price(90 * 60000, USD(2.5)), USD(3.75));
    /* 1 ms at $1.80/h is 0.5 micro-dollars, which rounds up. */
    assert_int_equal(billing_timed_price(1, USD(1.8)), 1);
    assert_int_equal(billing_timed_price(1, USD(1.8) - 1), 0);
    assert_int_equal(billing_timed_price(10 * 60000, USD(1)), 166667);
    assert_int_equal(billing_timed_price(0, USD(1)), 0);
    assert_int_equal(billing_timed_price(-5, USD(1)), 0);
    assert_int_equal(billing_timed_price(3600000, 0), 0);
    assert_int_equal(billing_timed_price(INT64_MAX, INT64_MAX), INT64_MAX);
}

static void epoch_rules_compare_balance(void **state)
{
    (void)state;
    assert_int_equal(billing_covers_epoch_start(USD(5)), 1);
    assert_int_equal(billing_covers_epoch_start(USD(5) - 1), 0);
    assert_int_equal(billing_covers_next_epoch(200000, 200000), 1);
    assert_int_equal(billing_covers_next_epoch(199999, 200000), 0);
    assert_int_equal(billing_covers_next_epoch(0, 0), 1);
}

static void money_formats_exactly(void **state)
{
    char text[32];

    (void)state;
    assert_string_equal(billing_format_usd(USD(5), text, 32), "$5.00");
    assert_string_equal(billing_format_usd(-420000, text, 32), "-$0.42");
    assert_string_equal(billing_format_usd(123457, text, 32), "$0.123457");
    assert_string_equal(billing_format_usd(0, text, 32), "$0.00");
    assert_string_equal(billing_format_decimal(-1, 6, text, 32), "-0.000001");
    assert_string_equal(billing_format_decimal(5000, 2, text, 32), "0.01");
    assert_string_equal(billing_format_decimal(4999, 2, text, 32), "0.00");
    assert_string_equal(billing_format_decimal(-5000, 2, text, 32), "-0.01");
    assert_string_equal(billing_format_decimal(-4999, 2, text, 32), "0.00");
    assert_string_equal(billing_format_decimal(INT64_MIN, 6, text, 32),
                        "-9223372036854.775808");
}

/* ------------------------------------------------------------------------
 * Epoch charges. */

static void epoch_charge_is_idempotent(void **state)
{
    struct fixture *f = *state;
    int64_t session = add_session(f, f->account, f->model, 0, USD(1.2));
    struct error err = {0};
    int64_t charged = -1;

    topup(f, f->account, USD(10));
    /* 600 s at $1.20/h is $0.20. */
    assert_int_equal(charge_epoch(f, session, 1, 600, USD(1.2), &charged, &err),
                     0);
    assert_int_equal(charged, USD(0.2));
    assert_int_equal(balance_of(f, f->account), USD(9.8));

    /* A retry with another figure reports the first charge. */
    assert_int_equal(charge_epoch(f, session, 1, 700, USD(1.2), &charged, &err),
                     0);
    assert_int_equal(charged, USD(0.2));
    assert_int_equal(balance_of(f, f->account), USD(9.8));

    /* After a restart (a new connection), the key still holds. */
    store_close(&f->st);
    assert_int_equal(store_open(&f->st, f->db, schema_sql, &err), 0);
    assert_int_equal(charge_epoch(f, session, 1, 600, USD(1.2), &charged, &err),
                     0);
    assert_int_equal(balance_of(f, f->account), USD(9.8));

    assert_int_equal(charge_epoch(f, session, 2, 300, USD(1.2), &charged, &err),
                     0);
    assert_int_equal(charged, USD(0.1));
    assert_int_equal(balance_of(f, f->account), USD(9.7));
    assert_int_equal(query_int(&f->st, "SELECT count(*) FROM ledger"
                                       " WHERE kind = 'charge'"),
                     2);
    assert_int_equal(query_int(&f->st, "SELECT count(*) FROM ledger WHERE"
                                       " idempotency_key = 'epoch:1:1'"),
                     1);
    assert_int_equal(query_int(&f->st, "SELECT rate FROM ledger WHERE"
                                       " idempotency_key = 'epoch:1:2'"),
                     USD(1.2));
}

static void epoch_charge_writes_off_shortfall(void **state)
{
    struct fixture *f = *state;
    int64_t session = add_session(f, f->account, f->model, 0, USD(1.2));
    struct error err = {0};
    int64_t charged = -1;
    sqlite3_stmt *stmt;

    /* The only way in: a $1 top-up, then charges down to $0.10. */
    topup(f, f->account, USD(1));
    assert_int_equal(
        charge_epoch(f, session, 1, 2700, USD(1.2), &charged, &err), 0);
    assert_int_equal(balance_of(f, f->account), USD(0.1));

    /* Epoch 2 costs $0.20 with $0.10 left: $0.10 is charged and the
     * other $0.10 written off. */
    assert_int_equal(charge_epoch(f, session, 2, 600, USD(1.2), &charged, &err),
                     0);
    assert_int_equal(charged, USD(0.1));
    assert_int_equal(balance_of(f, f->account), 0);
    assert_int_equal(billing_covers_next_epoch(0, USD(0.2)), 0);

    assert_int_equal(sqlite3_prepare_v2(f->st.db,
                                        "SELECT amount, description FROM"
                                        " ledger WHERE idempotency_key ="
                                        " 'epoch:1:2'",
                                        -1, &stmt, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(stmt, 0), -USD(0.1));
    assert_non_null(strstr((const char *)sqlite3_column_text(stmt, 1),
                           "$0.10 written off"));
    sqlite3_finalize(stmt);

    /* With nothing left, an epoch that completed anyway charges 0. */
    assert_int_equal(charge_epoch(f, session, 3, 600, USD(1.2), &charged, &err),
                     0);
    assert_int_equal(charged, 0);
    assert_int_equal(balance_of(f, f->account), 0);
    assert_int_equal(ledger_sum(f, f->account), 0);
}

static void epoch_charge_rejects_invalid(void **state)
{
    struct fixture *f = *state;
    int64_t session = add_session(f, f->account, f->model, 0, USD(1.2));
    int64_t foreign_model = add_model(&f->st, f->other_account, "theirs");
    int64_t foreign =
        add_session(f, f->other_account, foreign_model, 0, USD(1.2));
    struct error err = {0};
    int64_t charged;

    topup(f, f->account, USD(10));
    assert_int_equal(charge_epoch(f, session, 0, 60, USD(1.2), &charged, &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "epoch 0"));
    assert_int_equal(charge_epoch(f, session, 1, NAN, USD(1.2), &charged, &err),
                     -EINVAL);
    assert_int_equal(charge_epoch(f, session, 1, -1, USD(1.2), &charged, &err),
                     -EINVAL);
    assert_int_equal(charge_epoch(f, session, 1, 60, -1, &charged, &err),
                     -EINVAL);
    assert_int_equal(charge_epoch(f, 999, 1, 60, USD(1.2), &charged, &err),
                     -ENOENT);
    assert_non_null(strstr(err.msg, "session 999"));
    assert_int_equal(charge_epoch(f, foreign, 1, 60, USD(1.2), &charged, &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "belongs to account"));
    assert_int_equal(row_count(f), 1);
}

/* ------------------------------------------------------------------------
 * Timed training. */

static void timed_pay_from_balance(void **state)
{
    struct fixture *f = *state;
    int64_t price = billing_timed_price(3600000, USD(1.2));
    int64_t session = add_session(f, f->account, f->model, 3600000, USD(1.2));
    int64_t costly = add_session(f, f->account, f->model, 36000000, USD(1.2));
    struct error err = {0};

    topup(f, f->account, USD(5));
    assert_int_equal(pay_timed(f, session, price, USD(1.2), 0, &err), 0);
    assert_int_equal(balance_of(f, f->account), USD(3.8));
    assert_int_equal(pay_timed(f, session, price, USD(1.2), 0, &err), 0);
    assert_int_equal(balance_of(f, f->account), USD(3.8));
    assert_int_equal(row_count(f), 2);

    /* 10 h cost $12.00 with $3.80 left. */
    assert_int_equal(pay_timed(f, costly,
                               billing_timed_price(36000000, USD(1.2)),
                               USD(1.2), 0, &err),
                     -ENOSPC);
    assert_non_null(strstr(err.msg, "$3.80"));
    assert_non_null(strstr(err.msg, "$12.00"));
    assert_non_null(strstr(err.msg, "top up $8.20"));
    assert_int_equal(balance_of(f, f->account), USD(3.8));
    assert_int_equal(row_count(f), 2);
}

static void timed_pay_prepaid(void **state)
{
    struct fixture *f = *state;
    int64_t price = billing_timed_price(1800000, USD(1.2));
    int64_t session = add_session(f, f->account, f->model, 1800000, USD(1.2));
    struct error err = {0};

    assert_int_equal(pay_timed(f, session, price, USD(1.2), 1, &err), 0);
    assert_int_equal(pay_timed(f, session, price, USD(1.2), 1, &err), 0);
    assert_int_equal(balance_of(f, f->account), 0);
    assert_int_equal(row_count(f), 2);
    assert_int_equal(query_int(&f->st, "SELECT amount FROM ledger WHERE"
                                       " kind = 'prepayment'"),
                     USD(0.6));
    assert_int_equal(query_int(&f->st, "SELECT amount FROM ledger WHERE"
                                       " idempotency_key = 'timed:1:pay'"),
                     -USD(0.6));
}

static void timed_pay_rejects_wrong_price(void **state)
{
    struct fixture *f = *state;
    int64_t session = add_session(f, f->account, f->model, 3600000, USD(1.2));
    struct error err = {0};

    topup(f, f->account, USD(5));
    assert_int_equal(pay_timed(f, session, USD(1), USD(1.2), 0, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "$1.20"));
    assert_int_equal(pay_timed(f, session, -1, USD(1.2), 0, &err), -EINVAL);
    assert_int_equal(balance_of(f, f->account), USD(5));
}

static void timed_refund_pro_rata(void **state)
{
    static const struct {
        int64_t used_ms;
        int64_t refund;
    } cases[] = {
        {0, USD(1.2)},       /* nothing used: all back */
        {3600000, 0},        /* all used */
        {1200000, USD(0.8)}, /* a third used */
        {1, 1199999},        /* 1,199,999.67 rounds down */
        {7200000, 0},        /* beyond the limit: nothing */
    };
    struct fixture *f = *state;
    int64_t price = billing_timed_price(3600000, USD(1.2));
    struct error err = {0};

    topup(f, f->account, USD(10));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t session =
            add_session(f, f->account, f->model, 3600000, USD(1.2));
        int64_t before, refunded = -1;

        assert_int_equal(pay_timed(f, session, price, USD(1.2), 0, &err), 0);
        before = balance_of(f, f->account);
        assert_int_equal(refund_timed(f, session, price, 3600000,
                                      cases[i].used_ms, &refunded, &err),
                         0);
        assert_int_equal(refunded, cases[i].refund);
        assert_int_equal(balance_of(f, f->account), before + refunded);

        /* A retry returns the first refund and writes nothing. */
        refunded = -1;
        assert_int_equal(
            refund_timed(f, session, price, 3600000, 0, &refunded, &err), 0);
        assert_int_equal(refunded, cases[i].refund);
        assert_int_equal(balance_of(f, f->account), before + cases[i].refund);
    }
    assert_int_equal(balance_of(f, f->account), ledger_sum(f, f->account));
}

static void timed_refund_needs_payment(void **state)
{
    struct fixture *f = *state;
    int64_t price = billing_timed_price(3600000, USD(1.2));
    int64_t unpaid = add_session(f, f->account, f->model, 3600000, USD(1.2));
    int64_t paid = add_session(f, f->account, f->model, 3600000, USD(1.2));
    struct error err = {0};
    int64_t refunded;

    assert_int_equal(
        refund_timed(f, unpaid, price, 3600000, 0, &refunded, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "no timed payment"));

    topup(f, f->account, USD(5));
    assert_int_equal(pay_timed(f, paid, price, USD(1.2), 0, &err), 0);
    assert_int_equal(
        refund_timed(f, paid, price + 1, 3600000, 0, &refunded, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "$1.20"));
    assert_int_equal(refund_timed(f, paid, price, 0, 0, &refunded, &err),
                     -EINVAL);
    assert_int_equal(refund_timed(f, paid, price, 3600000, -1, &refunded, &err),
                     -EINVAL);
    assert_int_equal(balance_of(f, f->account), USD(3.8));
}

/* ------------------------------------------------------------------------
 * Random sequences. */

struct chain {
    int64_t previous;
    int broken;
};

static int check_chain(const struct ledger_row *row, void *ctx)
{
    struct chain *c = ctx;

    if (row->balance_after != c->previous + row->amount ||
        row->balance_after < 0)
        c->broken = 1;
    c->previous = row->balance_after;
    return 0;
}

static uint64_t next_random(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void random_sequences_keep_invariants(void **state)
{
    struct fixture *f = *state;
    int64_t accounts[2] = {f->account, f->other_account};
    int64_t models[2] = {f->model, add_model(&f->st, f->other_account, "m2")};
    int64_t sessions[2][3];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    struct error err = {0};
    int written = 0, short_balance = 0;

    for (int a = 0; a < 2; a++)
        for (int s = 0; s < 3; s++)
            sessions[a][s] =
                add_session(f, accounts[a], models[a], 0, USD(1.2));

    for (int step = 0; step < 300; step++) {
        int a = (int)(next_random(&x) % 2);
        int64_t account = accounts[a];
        uint64_t op = next_random(&x) % 4;
        struct ledger_entry e = {.account_id = account};
        int rc;

        if (op == 0) {
            e.kind = LEDGER_TOPUP;
            e.amount = 1 + (int64_t)(next_random(&x) % USD(20));
            rc = ledger_append(&f->st, &e, NULL, NULL, &err);
        } else if (op == 1) {
            e.kind = LEDGER_CHARGE;
            e.amount = -(int64_t)(next_random(&x) % USD(10));
            rc = ledger_append(&f->st, &e, NULL, NULL, &err);
            short_balance += rc == -ENOSPC;
        } else {
            int64_t session = sessions[a][next_random(&x) % 3];
            int epoch = 1 + (int)(next_random(&x) % 20);
            double seconds = (double)(next_random(&x) % 7200000) / 1000.0;
            int64_t charged;

            rc = store_begin(&f->st, &err);
            assert_int_equal(rc, 0);
            rc = billing_charge_epoch_tx(&f->st, account, session, 0, epoch,
                                         seconds, USD(1.2), &charged, &err);
            assert_int_equal(store_commit(&f->st, &err), 0);
            assert_true(charged >= 0);
        }
        if (rc != 0 && rc != -ENOSPC)
            fprintf(stderr, "step %d: %s\n", step, err.msg);
        assert_true(rc == 0 || rc == -ENOSPC);
        written += rc == 0;

        for (int b = 0; b < 2; b++) {
            int64_t balance = balance_of(f, accounts[b]);

            assert_true(balance >= 0);
            assert_int_equal(balance, ledger_sum(f, accounts[b]));
        }
    }

    for (int b = 0; b < 2; b++) {
        struct chain c = {0};

        assert_int_equal(
            ledger_foreach(&f->st, accounts[b], check_chain, &c, &err), 0);
        assert_int_equal(c.broken, 0);
        assert_int_equal(c.previous, balance_of(f, accounts[b]));
    }
    /* The sequence must exercise both outcomes to mean anything. */
    assert_true(written > 100);
    assert_true(short_balance > 0);
    /* Each epoch key is charged at most once. */
    assert_int_equal(query_int(&f->st, "SELECT count(*) FROM (SELECT"
                                       " session_id, epoch FROM ledger"
                                       " WHERE epoch IS NOT NULL GROUP BY"
                                       " session_id, epoch HAVING"
                                       " count(*) > 1)"),
                     0);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(balance_starts_at_zero),
        TEST(append_updates_balance),
        TEST(append_rejects_negative_balance),
        TEST(append_key_is_idempotent),
        TEST(append_tx_needs_transaction),
        TEST(append_rejects_invalid_entries),
        TEST(ledger_is_append_only),
        TEST(ledger_logs_writes_and_retries),
        cmocka_unit_test(cost_rounds_half_up),
        cmocka_unit_test(cost_matches_exact_reference),
        cmocka_unit_test(timed_price_is_exact),
        cmocka_unit_test(epoch_rules_compare_balance),
        cmocka_unit_test(money_formats_exactly),
        TEST(epoch_charge_is_idempotent),
        TEST(epoch_charge_writes_off_shortfall),
        TEST(epoch_charge_rejects_invalid),
        TEST(timed_pay_from_balance),
        TEST(timed_pay_prepaid),
        TEST(timed_pay_rejects_wrong_price),
        TEST(timed_refund_pro_rata),
        TEST(timed_refund_needs_payment),
        TEST(random_sequences_keep_invariants),
    };
    return cmocka_run_group_tests_name("ledger", tests, NULL, NULL);
}
