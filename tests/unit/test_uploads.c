/*
 * Unit tests of zipsafe.c: the entry-name check against a table of
 * hostile and harmless names, hidden entries, the test-only limits
 * variable, and extraction of small archives built here with libzip
 * (top folder stripping, duplicates, non-regular files, encryption and
 * both limits).
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
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "daemon/zipsafe.h"

static char workdir[PATH_MAX];

static void name_check_table(void **state)
{
    static const struct {
        const char *name;
        int ok;
    } cases[] = {
        {"train/cat/1.png", 1},
        {"train/", 1},
        {"a", 1},
        {"..hidden/x", 1}, /* a name that starts with "..", not ".." */
        {"x..y", 1},
        {"", 0},
        {"/etc/passwd", 0},
        {"../evil.txt", 0},
        {"a/../../b", 0},
        {"a/..", 0},
        {"..", 0},
        {".", 0},
        {"./a", 0},
        {"a/./b", 0},
        {"dir\\..\\x", 0},
        {"a\\b", 0},
        {"C:/x", 0},
        {"c:x", 0},
        {"a//b", 0},
        {"//server/share", 0},
        {"tab\there", 0},
        {"new\nline", 0},
        {"del\x7f", 0},
        {"esc\x1b[31m", 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct error err = {0};
        int rc = zipsafe_check_name(cases[i].name, &err);

        if (cases[i].ok && rc != 0)
            fail_msg("'%s' was rejected: %s", cases[i].name, err.msg);
        if (!cases[i].ok && rc != -EINVAL)
            fail_msg("'%s' was accepted (rc %d)", cases[i].name, rc);
        if (!cases[i].ok && cases[i].name[0] != '\0' &&
            strstr(err.msg, "archive entry") == NULL)
            fail_msg("'%s': the message does not name the entry: %s",
                     cases[i].name, err.msg);
    }
}

static void long_name_rejected(void **state)
{
    char name[1100];
    struct error err = {0};

    (void)state;
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_int_equal(zipsafe_check_name(name, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "longer than"));
}

static void long_component_rejected(void **state)
{
    char name[300];
    struct error err = {0};

    (void)state;
    /* 255 bytes is the longest file name that Linux file systems take. */
    snprintf(name, sizeof(name), "train/%0255d/1.png", 7);
    assert_int_equal(zipsafe_check_name(name, &err), 0);
    snprintf(name, sizeof(name), "train/%0256d/1.png", 7);
    assert_int_equal(zipsafe_check_name(name, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "256 bytes"));
    assert_non_null(strstr(err.msg, "limit is 255"));
}

static void hidden_entries(void **state)
{
    (void)state;
    assert_true(zipsafe_is_hidden("__MACOSX/train/._1.png"));
    assert_true(zipsafe_is_hidden("train/.DS_Store"));
    assert_true(zipsafe_is_hidden(".git/config"));
    assert_true(zipsafe_is_hidden("top/__MACOSX/x"));
    assert_false(zipsafe_is_hidden("train/cat/1.png"));
    assert_false(zipsafe_is_hidden("train/__MACOSXY/1.png"));
}

static void test_limits_variable(void **state)
{
    struct zipsafe_limits limits;

    (void)state;
    unsetenv(ZIPSAFE_TEST_LIMITS_ENV);
    zipsafe_limits_load(&limits);
    assert_true(limits.max_uncompressed == ZIPSAFE_MAX_UNCOMPRESSED_DEFAULT);
    assert_true(limits.max_files == ZIPSAFE_MAX_FILES_DEFAULT);

    setenv(ZIPSAFE_TEST_LIMITS_ENV, "max_uncompressed=1000,max_files=7", 1);
    zipsafe_limits_load(&limits);
    assert_true(limits.max_uncompressed == 1000);
    assert_true(limits.max_files == 7);

    /* Bad values and unknown keys leave the defaults. */
    setenv(ZIPSAFE_TEST_LIMITS_ENV, "max_uncompressed=-1,size=3,max_files",
           1);
    zipsafe_limits_load(&limits);
    assert_true(limits.max_uncompressed == ZIPSAFE_MAX_UNCOMPRESSED_DEFAULT);
    assert_true(limits.max_files == ZIPSAFE_MAX_FILES_DEFAULT);
    unsetenv(ZIPSAFE_TEST_LIMITS_ENV);
}

/* ---- extraction ---------------------------------------------------------- */

static zip_t *new_archive(const char *name, char *path, size_t len)
{
    int error = 0;
    zip_t *za;

    snprintf(path, len, "%s/%s", workdir, name);
    za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &error);
    assert_non_null(za);
    return za;
}

static zip_int64_t add_text(zip_t *za, const char *name, const char *text)
{
    zip_source_t *src = zip_source_buffer(za, text, strlen(text), 0);
    zip_int64_t index;

    assert_non_null(src);
    index = zip_file_add(za, name, src, ZIP_FL_ENC_UTF_8);
    assert_true(index >= 0);
    return index;
}

static int extract(const char *zip_path, const char *dest_name,
                   const struct zipsafe_limits *limits, cJSON *report,
                   struct error *err)
{
    char dest[PATH_MAX + 64];

    snprintf(dest, sizeof(dest), "%s/%s", workdir, dest_name);
    return zipsafe_extract(zip_path, dest, limits, report, err);
}

static int exists(const char *relative)
{
    char path[PATH_MAX + 256];

    snprintf(path, sizeof(path), "%s/%s", workdir, relative);
    return access(path, F_OK) == 0;
}

static struct zipsafe_limits defaults(void)
{
    struct zipsafe_limits limits = {ZIPSAFE_MAX_UNCOMPRESSED_DEFAULT,
                                    ZIPSAFE_MAX_FILES_DEFAULT};
    return limits;
}

static void top_folder_stripped(void **state)
{
    struct zipsafe_limits limits = defaults();
    cJSON *report = cJSON_CreateArray();
    struct error err = {0};
    char path[PATH_MAX + 64];
    zip_t *za;

    (void)state;
    za = new_archive("top.zip", path, sizeof(path));
    add_text(za, "set/train/a/1.txt", "1");
    add_text(za, "set/val/a/1.txt", "1");
    add_text(za, "__MACOSX/set/._x", "x");
    assert_int_equal(zip_close(za), 0);
    assert_int_equal(extract(path, "top", &limits, report, &err), 0);
    assert_true(exists("top/train/a/1.txt"));
    assert_true(exists("top/val/a/1.txt"));
    assert_false(exists("top/set"));
    assert_false(exists("top/__MACOSX"));
    assert_int_equal(cJSON_GetArraySize(report), 1);
    cJSON_Delete(report);
}

static void top_folder_without_train_kept(void **state)
{
    struct zipsafe_limits limits = defaults();
    cJSON *report = cJSON_CreateArray();
    struct error err = {0};
    char path[PATH_MAX + 64];
    zip_t *za;

    (void)state;
    za = new_archive("keep.zip", path, sizeof(path));
    add_text(za, "photos/a.txt", "1");
    assert_int_equal(zip_close(za), 0);
    assert_int_equal(extract(path, "keep", &limits, report, &err), 0);
    assert_true(exists("keep/photos/a.txt"));
    cJSON_Delete(report);
}

static void duplicate_entry_rejected(void **state)
{
    struct zipsafe_limits limits = defaults();
    cJSON *report = cJSON_CreateArray();
    struct error err = {0};
    char path[PATH_MAX + 64], *data, *p;
    size_t len, replaced = 0;
    zip_t *za;
    FILE *f;

    (void)state;
    za = new_archive("dup.zip", path, sizeof(path));
    add_text(za, "train/a/1.txt", "1");
    add_text(za, "train/a/2.txt", "2");
    assert_int_equal(zip_close(za), 0);

    /* libzip will not write two entries of one name, so rename the second
     * in the bytes: in its local header and in the central directory. */
    f = fopen(path, "r+b");
    assert_non_null(f);
    data = malloc(4096);
    assert_non_null(data);
    len = fread(data, 1, 4096, f);
    for (p = data; (p = memmem(p, len - (size_t)(p - data), "train/a/2.txt",
                               13)) != NULL;
         p += 13) {
        p[8] = '1';
        replaced++;
    }
    assert_int_equal(replaced, 2);
    rewind(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    free(data);

    /* libzip finds the duplicate when it opens the archive; the O_EXCL
     * open in write_entry is the second line of defence. */
    int rc = extract(path, "dup", &limits, report, &err);
    assert_int_equal(rc, -EINVAL);
    if (strstr(err.msg, "same name") == NULL)
        fail_msg("the message does not say what is wrong: %s", err.msg);
    cJSON_Delete(report);
}

static void file_then_folder_rejected(void **state)
{
    struct zipsafe_limits limits = defaults();
    cJSON *report = cJSON_CreateArray();
    struct error err = {0};
    char path[PATH_MAX + 64];
    zip_t *za;

    (void)state;
    za = new_archive("clash.zip", path, sizeof(path));
    add_text(za, "train/a", "a file");
    add_text(za, "train/a/1.txt", "1");
    assert_int_equal(zip_close(za), 0);
    assert_int_equal(extract(path, "clash", &limits, report, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "train/a/1.txt"));
    cJSON_Delete(report);
}

/* A component too long for the file system was an I/O error, which the
 * upload reported as an internal failure, not as a fault of the archive. */
static void long_component_extract_rejected(void **state)
{
    struct zipsafe_limits limits = defaults();
    cJSON *report = cJSON_CreateArray();
    struct error err = {0};
    char path[PATH_MAX + 64], name[400];
    zip_t *za;

    (void)state;
    snprintf(name, sizeof(name), "train/%0300d/1.png", 1);
    za = new_archive("long.zip", path, sizeof(path));
    add_text(za, "train/a/1.png", "1");
    add_text(za, name, "2");
    assert_int_equal(zip_close(za), 0);
    assert_int_equal(extract(path, "long", &limits, report, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "limit is 255"));
    assert_false(exists("long"));
    cJSON_Delete(report);
}

static void device_entry_rejected(void **state)
{
    struct zipsafe_limits limits = defaults();
    cJSON *report = cJSON_CreateArray();
    struct error err = {0};
    char path[PATH_MAX + 64];
    zip_t *za;

    (void)state;
    za = new_archive("fifo.zip", path, sizeof(path));
    zip_int64_t index = add_text(za, "train/a/fifo", "");
    assert_int_equal(zip_file_set_external_attributes(
                         za, (zip_uint64_t)index, 0, ZIP_OPSYS_UNIX,
                         (zip_uint32_t)(S_IFIFO | 0644) << 16),
                     0);
    assert_int_equal(zip_close(za), 0);
    assert_int_equal(extract(path, "fifo", &limits, report, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "train/a/fifo"));
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_false(exists("fifo"));
    cJSON_Delete(report);
}

static void encrypted_entry_rejected(void **state)
{
    struct zipsafe_limits limits = defaults();
    cJSON *report = cJSON_CreateArray();
    struct error err = {0};
    char path[PATH_MAX + 64];
    zip_t *za;

    (void)state;
    za = new_archive("secret.zip", path, sizeof(path));
    zip_int64_t index = add_text(za, "train/a/1.txt", "secret");
    if (zip_file_set_encryption(za, (zip_uint64_t)index, ZIP_EM_AES_256,
                                "password") != 0) {
        zip_discard(za);
        cJSON_Delete(report);
        skip(); /* this libzip was built without encryption */
    }
    assert_int_equal(zip_close(za), 0);
    assert_int_equal(extract(path, "secret", &limits, report, &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "encrypted"));
    cJSON_Delete(report);
}

static void limits_enforced(void **state)
{
    struct zipsafe_limits limits = {100, 3};
    cJSON *report = cJSON_CreateArray();
    struct error err = {0};
    char path[PATH_MAX + 64], big[301];
    zip_t *za;

    (void)state;
    memset(big, 'z', 300);
    big[300] = '\0';
    za = new_archive("big.zip", path, sizeof(path));
    add_text(za, "train/a/big.txt", big);
    assert_int_equal(zip_close(za), 0);
    assert_int_equal(extract(path, "big", &limits, report, &err), -EFBIG);
    assert_non_null(strstr(err.msg, "train/a/big.txt"));

    za = new_archive("many.zip", path, sizeof(path));
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof(name), "train/a/%d.txt", i);
        zip_source_t *src = zip_source_buffer(za, "1", 1, 0);
        assert_true(zip_file_add(za, name, src, ZIP_FL_ENC_UTF_8) >= 0);
    }
    assert_int_equal(zip_close(za), 0);
    assert_int_equal(extract(path, "many", &limits, report, &err), -EFBIG);
    assert_non_null(strstr(err.msg, "4 entries"));
    assert_false(exists("many"));
    cJSON_Delete(report);
}

static void not_a_zip_rejected(void **state)
{
    struct zipsafe_limits limits = defaults();
    cJSON *report = cJSON_CreateArray();
    struct error err = {0};
    char path[PATH_MAX + 64];
    FILE *f;

    (void)state;
    snprintf(path, sizeof(path), "%s/plain.zip", workdir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not a zip archive", f);
    fclose(f);
    assert_int_equal(extract(path, "plain", &limits, report, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not a valid zip"));
    cJSON_Delete(report);
}

static int setup(void **state)
{
    (void)state;
    snprintf(workdir, sizeof(workdir), "/tmp/test_uploads.XXXXXX");
    return mkdtemp(workdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return zipsafe_remove_tree(workdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(name_check_table),
        cmocka_unit_test(long_name_rejected),
        cmocka_unit_test(long_component_rejected),
        cmocka_unit_test(hidden_entries),
        cmocka_unit_test(test_limits_variable),
        cmocka_unit_test(top_folder_stripped),
        cmocka_unit_test(top_folder_without_train_kept),
        cmocka_unit_test(duplicate_entry_rejected),
        cmocka_unit_test(file_then_folder_rejected),
        cmocka_unit_test(long_component_extract_rejected),
        cmocka_unit_test(device_entry_rejected),
        cmocka_unit_test(encrypted_entry_rejected),
        cmocka_unit_test(limits_enforced),
        cmocka_unit_test(not_a_zip_rejected),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
