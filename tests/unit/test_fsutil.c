/* Tests of common/fsutil: folder creation, bounded reads, atomic writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
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

static void mkdir_p_creates_parents(void **state)
{
    char path[PATH_MAX];
    struct error err = {0};
    struct stat st;

    snprintf(path, sizeof(path), "%s/a/b/c", (char *)*state);
    assert_int_equal(fs_mkdir_p(path, 0700, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* A second call on an existing tree succeeds. */
    assert_int_equal(fs_mkdir_p(path, 0700, &err), 0);
}

static void mkdir_p_fails_under_a_file(void **state)
{
    char file[PATH_MAX], path[PATH_MAX + 8];
    struct error err = {0};

    snprintf(file, sizeof(file), "%s/plain", (char *)*state);
    assert_int_equal(fs_write_atomic(file, "x", 1, 0644, &err), 0);
    snprintf(path, sizeof(path), "%s/sub", file);
    assert_int_equal(fs_mkdir_p(path, 0700, &err), -ENOTDIR);
    assert_non_null(strstr(err.msg, "plain/sub"));
}

static void read_file_returns_contents(void **state)
{
    char path[PATH_MAX];
    struct error err = {0};
    char *data = NULL;
    size_t len = 0;

    snprintf(path, sizeof(path), "%s/f.txt", (char *)*state);
    assert_int_equal(fs_write_atomic(path, "hello\n", 6, 0644, &err), 0);
    assert_int_equal(fs_read_file(path, 100, &data, &len, &err), 0);
    assert_int_equal(len, 6);
    assert_string_equal(data, "hello\n");
    free(data);
}

static void read_file_rejects_over_limit(void **state)
{
    char path[PATH_MAX];
    struct error err = {0};
    char *data = NULL;

    snprintf(path, sizeof(path), "%s/big", (char *)*state);
    assert_int_equal(fs_write_atomic(path, "0123456789", 10, 0644, &err), 0);
    assert_int_equal(fs_read_file(path, 9, &data, NULL, &err), -EFBIG);
    assert_null(data);
    assert_non_null(strstr(err.msg, "10 bytes"));
    assert_non_null(strstr(err.msg, "limit of 9"));
}

static void read_file_missing_names_path(void **state)
{
    char path[PATH_MAX];
    struct error err = {0};
    char *data = NULL;

    snprintf(path, sizeof(path), "%s/missing", (char *)*state);
    assert_int_equal(fs_read_file(path, 9, &data, NULL, &err), -ENOENT);
    assert_non_null(strstr(err.msg, path));
}

static void write_atomic_replaces_and_sets_mode(void **state)
{
    char path[PATH_MAX];
    struct error err = {0};
    struct stat st;
    char *data = NULL;
    int entries = 0;
    DIR *d;

    snprintf(path, sizeof(path), "%s/secret", (char *)*state);
    assert_int_equal(fs_write_atomic(path, "old", 3, 0600, &err), 0);
    assert_int_equal(fs_write_atomic(path, "newer", 5, 0600, &err), 0);
    assert_int_equal(fs_read_file(path, 100, &data, NULL, &err), 0);
    assert_string_equal(data, "newer");
    free(data);

    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* No temporary file is left beside it. */
    d = opendir(*state);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            entries++;
    closedir(d);
    assert_int_equal(entries, 1);
}

static void write_atomic_fails_in_missing_folder(void **state)
{
    char path[PATH_MAX];
    struct error err = {0};

    snprintf(path, sizeof(path), "%s/no/such/file", (char *)*state);
    assert_int_equal(fs_write_atomic(path, "x", 1, 0644, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "cannot create"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(mkdir_p_creates_parents, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(mkdir_p_fails_under_a_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(read_file_returns_contents, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(read_file_rejects_over_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(read_file_missing_names_path, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(write_atomic_replaces_and_sets_mode,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(write_atomic_fails_in_missing_folder,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("fsutil", tests, NULL, NULL);
}
