/* Tests of common/secret: creation, reload, mode and format checks. */
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
#include <sys/stat.h>

#include "fsutil.h"
#include "harness.h"
#include "secret.h"

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

static void secret_created_with_mode_0600(void **state)
{
    char path[PATH_MAX], a[SECRET_HEX_LEN + 1], b[SECRET_HEX_LEN + 1];
    struct error err = {0};
    struct stat st;

    snprintf(path, sizeof(path), "%s/gateway.secret", (char *)*state);
    assert_int_equal(secret_load_or_create(path, a, &err), 0);
    assert_int_equal(strlen(a), SECRET_HEX_LEN);
    assert_int_equal(strspn(a, "0123456789abcdef"), SECRET_HEX_LEN);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* A second start reads the same secret instead of making a new one. */
    assert_int_equal(secret_load_or_create(path, b, &err), 0);
    assert_string_equal(a, b);
}

static void secret_differs_between_installs(void **state)
{
    char p1[PATH_MAX], p2[PATH_MAX];
    char a[SECRET_HEX_LEN + 1], b[SECRET_HEX_LEN + 1];
    struct error err = {0};

    snprintf(p1, sizeof(p1), "%s/one", (char *)*state);
    snprintf(p2, sizeof(p2), "%s/two", (char *)*state);
    assert_int_equal(secret_load_or_create(p1, a, &err), 0);
    assert_int_equal(secret_load_or_create(p2, b, &err), 0);
    assert_string_not_equal(a, b);
}

static void secret_readable_by_others_rejected(void **state)
{
    char path[PATH_MAX], out[SECRET_HEX_LEN + 1];
    struct error err = {0};

    snprintf(path, sizeof(path), "%s/gateway.secret", (char *)*state);
    assert_int_equal(secret_load_or_create(path, out, &err), 0);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(secret_load(path, out, &err), -EPERM);
    assert_non_null(strstr(err.msg, "chmod 600"));
}

static void secret_malformed_rejected(void **state)
{
    char path[PATH_MAX], out[SECRET_HEX_LEN + 1];
    struct error err = {0};

    snprintf(path, sizeof(path), "%s/gateway.secret", (char *)*state);
    assert_int_equal(fs_write_atomic(path, "not-hex\n", 8, 0600, &err), 0);
    assert_int_equal(secret_load(path, out, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "64 hex digits"));
}

static void secret_missing_is_an_error(void **state)
{
    char path[PATH_MAX], out[SECRET_HEX_LEN + 1];
    struct error err = {0};

    snprintf(path, sizeof(path), "%s/none", (char *)*state);
    assert_int_equal(secret_load(path, out, &err), -ENOENT);
}

static void secret_equal_compares_whole_value(void **state)
{
    (void)state;
    assert_true(secret_equal("abcd", "abcd"));
    assert_false(secret_equal("abcd", "abce"));
    assert_false(secret_equal("abcd", "abc"));
    assert_false(secret_equal("", "a"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(secret_created_with_mode_0600, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(secret_differs_between_installs,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(secret_readable_by_others_rejected,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(secret_malformed_rejected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(secret_missing_is_an_error, setup,
                                        teardown),
        cmocka_unit_test(secret_equal_compares_whole_value),
    };
    return cmocka_run_group_tests_name("secret", tests, NULL, NULL);
}
