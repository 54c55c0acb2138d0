/*
 * Tests of backend/daemon/payments: the TEST provider's cards, top-up
 * limits and retries, timed training paid now, and operator credit, which
 * only an admin may grant. A counting provider checks that a retry never
 * reaches the provider twice.
 */
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

#include "daemon/ledger.h"
#include "daemon/payments.h"
#include "daemon/store.h"
#include "harness.h"
#include "log.h"

#define USD(x) ((int64_t)((x)*1000000LL))

struct fixture {
    char dir[PATH_MAX];
    struct store st;
    int64_t user;
    int64_t admin;
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

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char path[PATH_MAX + 16];
    struct error err = {0};
    int64_t dataset;

    harness_tmpdir(f->dir, sizeof(f->dir));
    snprintf(path, sizeof(path), "%s/test.db", f->dir);
    assert_int_equal(store_open(&f->st, path, schema_sql, &err), 0);
    f->user = insert(&f->st, sqlite3_mprintf("INSERT INTO accounts (email,"
                                             " role, plan, created_at)"
                                             " VALUES ('u@example.com',"
                                             " 'user', 'pro', 0)"));
    f->admin = insert(&f->st, sqlite3_mprintf("INSERT INTO accounts (email,"
                                              " role, created_at) VALUES"
                                              " ('a@example.com', 'admin',"
                                              " 0)"));
    dataset =
        insert(&f->st, sqlite3_mprintf("INSERT INTO datasets (name, task, path,"
                                       " created_at) VALUES ('d', 'classify',"
                                       " 'd', 0)"));
    f->model =
        insert(&f->st, sqlite3_mprintf("INSERT INTO models (account_id,"
                                       " dataset_id, name, task, architecture,"
                                       " created_at) VALUES (%lld, %lld, 'm',"
                                       " 'classify', 'yolov8n-cls.yaml', 0)",
                                       (long long)f->user, (long long)dataset));
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
    harness_rmtree(f->dir);
    free(f);
    return 0;
}

static int64_t balance_of(struct fixture *f, int64_t account)
{
    struct error err = {0};
    int64_t balance = -1;

    assert_int_equal(ledger_balance(&f->st, account, &balance, &err), 0);
    return balance;
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

static int64_t row_count(struct fixture *f)
{
    return query_int(&f->st, "SELECT count(*) FROM ledger");
}

/* A provider that approves everything and counts its calls, or fails
 * with -EIO when its context's fail flag is set. */
struct counter {
    int calls;
    int fail;
};

static int counting_charge(const struct payment_provider *provider,
                           int64_t amount, const char *card, const char *key,
                           struct payment_result *result, struct error *err)
{
    struct counter *c = provider->context;

    (void)amount;
    (void)card;
    (void)key;
    c->calls++;
    if (c->fail)
        return error_set(err, -EIO, "provider unreachable");
    result->status = PAYMENT_APPROVED;
    snprintf(result->message, sizeof(result->message), "approved");
    snprintf(result->reference, sizeof(result->reference), "ch_%d", c->calls);
    return 0;
}

static struct payment_provider counting_provider(struct counter *c)
{
    return (struct payment_provider){.name = "counting",
                                     .label = "counting",
                                     .charge = counting_charge,
                                     .context = c};
}

/* ------------------------------------------------------------------------
 * The TEST provider. */

static void luhn_checks_digits(void **state)
{
    (void)state;
    assert_int_equal(payments_luhn_valid("4242424242424242"), 1);
    assert_int_equal(payments_luhn_valid("4000000000000002"), 1);
    assert_int_equal(payments_luhn_valid("79927398713"), 1);
    assert_int_equal(payments_luhn_valid("4242424242424241"), 0);
    assert_int_equal(payments_luhn_valid("79927398710"), 0);
    assert_int_equal(payments_luhn_valid(""), 0);
    assert_int_equal(payments_luhn_valid("42a2"), 0);
}

static void test_provider_is_labelled(void **state)
{
    (void)state;
    assert_ptr_equal(payments_provider("test"), &payment_provider_test);
    assert_ptr_equal(payments_provider("operator"), &payment_provider_operator);
    assert_null(payments_provider("stripe"));
    assert_null(payments_provider(NULL));
    assert_int_equal(payment_provider_test.is_test, 1);
    assert_non_null(strstr(payment_provider_test.label, "TEST"));
    assert_int_equal(payment_provider_operator.is_test, 0);
}

static void test_provider_handles_cards(void **state)
{
    static const struct {
        const char *card;
        enum payment_status status;
        const char *message; /* a part of the expected message */
    } cases[] = {
        {"4242 4242 4242 4242", PAYMENT_APPROVED, "TEST"},
        {"4242424242424242", PAYMENT_APPROVED, "approved"},
        {" 4242424242 424242 ", PAYMENT_APPROVED, "approved"},
        {"4000 0000 0000 0002", PAYMENT_DECLINED, "card declined"},
        {"4000000000000002", PAYMENT_DECLINED, "card declined"},
        {"5555 5555 5555 4444", PAYMENT_DECLINED, "4242 4242 4242 4242"},
        {"4242 4242 4242 4241", PAYMENT_INVALID, "Luhn"},
        {"4242-4242-4242-4242", PAYMENT_INVALID, "'-'"},
        {"4242", PAYMENT_INVALID, "4 digits"},
        {"42424242424242424242", PAYMENT_INVALID, "20 digits"},
        {"", PAYMENT_INVALID, "missing"},
        {NULL, PAYMENT_INVALID, "missing"},
    };
    const struct payment_provider *p = &payment_provider_test;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct payment_result result;
        struct error err = {0};

        assert_int_equal(
            p->charge(p, USD(10), cases[i].card, "k", &result, &err), 0);
        if (result.status != cases[i].status ||
            strstr(result.message, cases[i].message) == NULL)
            fprintf(stderr, "case %zu (%s): status %d, message '%s'\n", i,
                    cases[i].card ? cases[i].card : "NULL", (int)result.status,
                    result.message);
        assert_int_equal(result.status, cases[i].status);
        assert_non_null(strstr(result.message, cases[i].message));
    }
}

/* ------------------------------------------------------------------------
 * Top-ups. */

static void topup_approved_writes_row(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    sqlite3_stmt *stmt;

    assert_int_equal(payments_topup(&f->st, &payment_provider_test, f->user,
                                    USD(20), "4242 4242 4242 4242", "form-1",
                                    &err),
                     0);
    assert_int_equal(balance_of(f, f->user), USD(20));

    assert_int_equal(sqlite3_prepare_v2(f->st.db,
                                        "SELECT kind, description FROM"
                                        " ledger WHERE idempotency_key ="
                                        " 'form-1'",
                                        -1, &stmt, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "topup");
    assert_non_null(
        strstr((const char *)sqlite3_column_text(stmt, 1), "TEST top-up"));
    assert_non_null(
        strstr((const char *)sqlite3_column_text(stmt, 1), "card ending 4242"));
    /* The full card number is never stored. */
    assert_null(
        strstr((const char *)sqlite3_column_text(stmt, 1), "4242 4242"));
    sqlite3_finalize(stmt);
}

static void topup_retry_charges_once(void **state)
{
    struct fixture *f = *state;
    struct counter c = {0};
    struct payment_provider p = counting_provider(&c);
    struct error err = {0};

    for (int i = 0; i < 3; i++)
        assert_int_equal(payments_topup(&f->st, &p, f->user, USD(15),
                                        "tok_visa", "form-2", &err),
                         0);
    assert_int_equal(c.calls, 1);
    assert_int_equal(balance_of(f, f->user), USD(15));
    assert_int_equal(row_count(f), 1);

    /* The key of another account's payment is a conflict. */
    assert_int_equal(payments_topup(&f->st, &p, f->admin, USD(15), "tok_visa",
                                    "form-2", &err),
                     -EEXIST);
    assert_int_equal(c.calls, 1);
}

static void topup_declined_writes_nothing(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};

    assert_int_equal(payments_topup(&f->st, &payment_provider_test, f->user,
                                    USD(20), "4000 0000 0000 0002", "form-3",
                                    &err),
                     -EACCES);
    assert_non_null(strstr(err.msg, "card declined"));
    assert_non_null(strstr(err.msg, "$20.00"));
    assert_int_equal(balance_of(f, f->user), 0);
    assert_int_equal(row_count(f), 0);

    assert_int_equal(payments_topup(&f->st, &payment_provider_test, f->user,
                                    USD(20), "4242 4242 4242 4241", "form-4",
                                    &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "Luhn"));
    assert_int_equal(row_count(f), 0);
}

static void topup_enforces_limits(void **state)
{
    struct fixture *f = *state;
    struct counter c = {0};
    struct payment_provider p = counting_provider(&c);
    struct error err = {0};

    assert_int_equal(
        payments_topup(&f->st, &p, f->user, USD(1) - 1, "tok", "k1", &err),
        -EINVAL);
    assert_non_null(strstr(err.msg, "$0.999999"));
    assert_non_null(strstr(err.msg, "minimum of $1.00"));
    assert_int_equal(
        payments_topup(&f->st, &p, f->user, USD(10000) + 1, "tok", "k2", &err),
        -EINVAL);
    assert_non_null(strstr(err.msg, "$10000.000001"));
    assert_non_null(strstr(err.msg, "maximum of $10000.00"));
    assert_int_equal(payments_topup(&f->st, &p, f->user, 0, "tok", "k3", &err),
                     -EINVAL);
    assert_int_equal(c.calls, 0);

    assert_int_equal(
        payments_topup(&f->st, &p, f->user, USD(1), "tok", "k4", &err), 0);
    assert_int_equal(
        payments_topup(&f->st, &p, f->user, USD(10000), "tok", "k5", &err), 0);
    assert_int_equal(balance_of(f, f->user), USD(10001));
}

static void topup_rejects_bad_requests(void **state)
{
    struct fixture *f = *state;
    struct counter c = {.fail = 1};
    struct payment_provider p = counting_provider(&c);
    struct error err = {0};

    assert_int_equal(
        payments_topup(&f->st, &p, f->user, USD(5), "tok", NULL, &err),
        -EINVAL);
    assert_non_null(strstr(err.msg, "idempotency key"));
    assert_int_equal(
        payments_topup(&f->st, NULL, f->user, USD(5), "tok", "k", &err),
        -EINVAL);
    assert_int_equal(payments_topup(&f->st, &p, 999, USD(5), "tok", "k", &err),
                     -ENOENT);
    assert_int_equal(c.calls, 0);

    /* An unreachable provider passes its error on and nothing is written. */
    assert_int_equal(
        payments_topup(&f->st, &p, f->user, USD(5), "tok", "k", &err), -EIO);
    assert_non_null(strstr(err.msg, "unreachable"));
    assert_int_equal(row_count(f), 0);

    assert_int_equal(payments_topup(&f->st, &payment_provider_operator, f->user,
                                    USD(5), "4242424242424242", "k", &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "operator"));
    assert_int_equal(row_count(f), 0);
}

/* ------------------------------------------------------------------------
 * Timed training paid now. */

static void pay_timed_now(void **state)
{
    struct fixture *f = *state;
    int64_t price = billing_timed_price(3600000, USD(1.2));
    struct counter c = {0};
    struct payment_provider p = counting_provider(&c);
    struct error err = {0};
    int64_t session;

    session =
        insert(&f->st, sqlite3_mprintf("INSERT INTO sessions (model_id,"
                                       " account_id, instance_type_id, mode,"
                                       " epochs, time_limit_ms, rate,"
                                       " created_at, updated_at) VALUES"
                                       " (%lld, %lld, %lld, 'timed', 1,"
                                       " 3600000, 1200000, 0, 0)",
                                       (long long)f->model, (long long)f->user,
                                       (long long)f->instance));

    assert_int_equal(payments_pay_timed(&f->st, &payment_provider_test, f->user,
                                        session, f->model, price, USD(1.2),
                                        "4000000000000002", &err),
                     -EACCES);
    assert_int_equal(row_count(f), 0);

    for (int i = 0; i < 2; i++)
        assert_int_equal(payments_pay_timed(&f->st, &p, f->user, session,
                                            f->model, price, USD(1.2), "tok",
                                            &err),
                         0);
    assert_int_equal(c.calls, 1);
    assert_int_equal(row_count(f), 2);
    assert_int_equal(balance_of(f, f->user), 0);
    assert_int_equal(query_int(&f->st, "SELECT sum(amount) FROM ledger WHERE"
                                       " kind = 'prepayment'"),
                     price);

    assert_int_equal(payments_pay_timed(&f->st, &p, f->user, session, f->model,
                                        0, USD(1.2), "tok", &err),
                     -EINVAL);
}

/* ------------------------------------------------------------------------
 * Operator credit. */

static void credit_by_admin_only(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    sqlite3_stmt *stmt;
    char expected[64];

    assert_int_equal(payments_credit(&f->st, f->user, f->user, USD(50),
                                     "free money", NULL, &err),
                     -EPERM);
    assert_non_null(strstr(err.msg, "not an admin"));
    assert_int_equal(row_count(f), 0);

    assert_int_equal(payments_credit(&f->st, f->admin, f->user, USD(50),
                                     "outage on 3 May", "credit-1", &err),
                     0);
    assert_int_equal(payments_credit(&f->st, f->admin, f->user, USD(50),
                                     "outage on 3 May", "credit-1", &err),
                     0);
    assert_int_equal(balance_of(f, f->user), USD(50));
    assert_int_equal(row_count(f), 1);

    assert_int_equal(sqlite3_prepare_v2(f->st.db,
                                        "SELECT kind, description FROM"
                                        " ledger",
                                        -1, &stmt, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "credit");
    snprintf(expected, sizeof(expected), "credit by admin %lld: outage",
             (long long)f->admin);
    assert_non_null(
        strstr((const char *)sqlite3_column_text(stmt, 1), expected));
    sqlite3_finalize(stmt);
}

static void credit_rejects_invalid(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};

    assert_int_equal(
        payments_credit(&f->st, f->admin, f->user, 0, "x", NULL, &err),
        -EINVAL);
    assert_non_null(strstr(err.msg, "$0.00"));
    assert_int_equal(payments_credit(&f->st, f->admin, f->user, USD(10000) + 1,
                                     "x", NULL, &err),
                     -EINVAL);
    assert_int_equal(
        payments_credit(&f->st, f->admin, f->user, USD(1), "", NULL, &err),
        -EINVAL);
    assert_non_null(strstr(err.msg, "reason"));
    assert_int_equal(
        payments_credit(&f->st, f->admin, 999, USD(1), "x", NULL, &err),
        -ENOENT);
    assert_int_equal(
        payments_credit(&f->st, 999, f->user, USD(1), "x", NULL, &err),
        -ENOENT);
    assert_int_equal(row_count(f), 0);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(luhn_checks_digits),
        cmocka_unit_test(test_provider_is_labelled),
        cmocka_unit_test(test_provider_handles_cards),
        TEST(topup_approved_writes_row),
        TEST(topup_retry_charges_once),
        TEST(topup_declined_writes_nothing),
        TEST(topup_enforces_limits),
        TEST(topup_rejects_bad_requests),
        TEST(pay_timed_now),
        TEST(credit_by_admin_only),
        TEST(credit_rejects_invalid),
    };

    log_init("test", LOG_LEVEL_WARN, 2);
    return cmocka_run_group_tests_name("payments", tests, NULL, NULL);
}
