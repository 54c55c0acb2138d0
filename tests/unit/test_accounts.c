/*
 * Tests of backend/daemon/accounts: creating and finding accounts, and the
 * Pro plan entitlement to cloud training, which only an admin grants or
 * revokes.
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

#include "daemon/accounts.h"
#include "daemon/store.h"
#include "harness.h"
#include "log.h"

struct fixture {
    char dir[PATH_MAX];
    struct store st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char path[PATH_MAX + 16];
    struct error err = {0};

    harness_tmpdir(f->dir, sizeof(f->dir));
    snprintf(path, sizeof(path), "%s/test.db", f->dir);
    assert_int_equal(store_open(&f->st, path, schema_sql, &err), 0);
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

static int64_t create(struct fixture *f, const char *email, const char *role,
                      const char *plan)
{
    struct error err = {0};
    int64_t id = 0;

    assert_int_equal(accounts_create(&f->st, email, "$argon2id$opaque", role,
                                     plan, &id, &err),
                     0);
    assert_true(id > 0);
    return id;
}

static void create_applies_defaults(void **state)
{
    struct fixture *f = *state;
    struct account a;
    struct error err = {0};
    int64_t id = create(f, "ada@example.com", NULL, NULL);

    assert_int_equal(accounts_get(&f->st, id, &a, &err), 0);
    assert_int_equal(a.id, id);
    assert_string_equal(a.email, "ada@example.com");
    assert_string_equal(a.password_hash, "$argon2id$opaque");
    assert_string_equal(a.role, "user");
    assert_string_equal(a.plan, "free");
    assert_true(a.created_at > 0);

    assert_int_equal(accounts_find_email(&f->st, "ADA@example.COM", &a, &err),
                     0);
    assert_int_equal(a.id, id);
    assert_int_equal(accounts_find_email(&f->st, "bob@example.com", &a, &err),
                     -ENOENT);
    assert_int_equal(accounts_get(&f->st, 999, &a, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "999"));
}

static void create_without_password(void **state)
{
    struct fixture *f = *state;
    struct account a;
    struct error err = {0};
    int64_t id = 0;

    assert_int_equal(accounts_create(&f->st, "svc@example.com", NULL, "user",
                                     "pro", &id, &err),
                     0);
    assert_int_equal(accounts_get(&f->st, id, &a, &err), 0);
    assert_string_equal(a.password_hash, "");
    assert_string_equal(a.plan, "pro");
}

static void create_rejects_invalid(void **state)
{
    static const char *const bad_emails[] = {
        "",      "no-at-sign",       "@example.com",      "ada@",
        "a@b@c", "ada @example.com", "ada@example.com\n",
    };
    struct fixture *f = *state;
    struct error err = {0};
    int64_t id;

    for (size_t i = 0; i < sizeof(bad_emails) / sizeof(bad_emails[0]); i++)
        assert_int_equal(
            accounts_create(&f->st, bad_emails[i], NULL, NULL, NULL, &id, &err),
            -EINVAL);
    assert_int_equal(accounts_create(&f->st, NULL, NULL, NULL, NULL, &id, &err),
                     -EINVAL);
    assert_int_equal(
        accounts_create(&f->st, "a@example.com", NULL, "root", NULL, &id, &err),
        -EINVAL);
    assert_non_null(strstr(err.msg, "'root'"));
    assert_int_equal(
        accounts_create(&f->st, "a@example.com", NULL, NULL, "gold", &id, &err),
        -EINVAL);
    assert_non_null(strstr(err.msg, "'gold'"));
    assert_int_equal(
        accounts_create(&f->st, "a@example.com", "", NULL, NULL, &id, &err),
        -EINVAL);
}

static void create_rejects_taken_email(void **state)
{
    struct fixture *f = *state;
    struct error err = {0};
    int64_t id;

    create(f, "ada@example.com", NULL, NULL);
    assert_int_equal(
        accounts_create(&f->st, "Ada@Example.com", NULL, NULL, NULL, &id, &err),
        -EEXIST);
    assert_non_null(strstr(err.msg, "exists already"));
}

static void free_plan_cannot_train(void **state)
{
    struct fixture *f = *state;
    int64_t id = create(f, "ada@example.com", NULL, "free");
    char msg[256];

    assert_int_equal(accounts_can_train(&f->st, id, msg, sizeof(msg)), 0);
    assert_string_equal(msg, ACCOUNT_NEEDS_PRO_MESSAGE);
    assert_non_null(strstr(msg, "Pro plan"));
    assert_non_null(strstr(msg, "ask your operator"));

    assert_int_equal(accounts_can_train(&f->st, 999, msg, sizeof(msg)),
                     -ENOENT);
    assert_non_null(strstr(msg, "999"));
}

static void admin_grants_and_revokes_pro(void **state)
{
    struct fixture *f = *state;
    int64_t admin = create(f, "op@example.com", "admin", NULL);
    int64_t user = create(f, "ada@example.com", NULL, NULL);
    struct error err = {0};
    char msg[256];

    assert_int_equal(accounts_set_plan(&f->st, admin, user, "pro", &err), 0);
    assert_int_equal(accounts_can_train(&f->st, user, msg, sizeof(msg)), 1);
    assert_string_equal(msg, "");

    /* Setting the same plan again changes nothing and succeeds. */
    assert_int_equal(accounts_set_plan(&f->st, admin, user, "pro", &err), 0);
    assert_int_equal(accounts_can_train(&f->st, user, msg, sizeof(msg)), 1);

    assert_int_equal(accounts_set_plan(&f->st, admin, user, "free", &err), 0);
    assert_int_equal(accounts_can_train(&f->st, user, msg, sizeof(msg)), 0);
    assert_string_equal(msg, ACCOUNT_NEEDS_PRO_MESSAGE);
}

static void user_cannot_set_plan(void **state)
{
    struct fixture *f = *state;
    int64_t admin = create(f, "op@example.com", "admin", NULL);
    int64_t user = create(f, "ada@example.com", NULL, NULL);
    struct error err = {0};
    char msg[256];

    assert_int_equal(accounts_set_plan(&f->st, user, user, "pro", &err),
                     -EPERM);
    assert_non_null(strstr(err.msg, "not an admin"));
    assert_int_equal(accounts_can_train(&f->st, user, msg, sizeof(msg)), 0);

    assert_int_equal(accounts_set_plan(&f->st, 999, user, "pro", &err),
                     -ENOENT);
    assert_int_equal(accounts_set_plan(&f->st, admin, 999, "pro", &err),
                     -ENOENT);
    assert_int_equal(accounts_set_plan(&f->st, admin, user, "gold", &err),
                     -EINVAL);
    assert_int_equal(accounts_set_plan(&f->st, admin, user, NULL, &err),
                     -EINVAL);
    assert_int_equal(accounts_can_train(&f->st, user, msg, sizeof(msg)), 0);

    /* A failed change leaves no transaction open. */
    assert_int_equal(sqlite3_get_autocommit(f->st.db), 1);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(create_applies_defaults), TEST(create_without_password),
        TEST(create_rejects_invalid),  TEST(create_rejects_taken_email),
        TEST(free_plan_cannot_train),  TEST(admin_grants_and_revokes_pro),
        TEST(user_cannot_set_plan),
    };

    log_init("test", LOG_LEVEL_ERROR, 2);
    return cmocka_run_group_tests_name("accounts", tests, NULL, NULL);
}
