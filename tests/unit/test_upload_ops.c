/*
 * Tests of the upload ops of backend/daemon/ops_uploads.c through
 * proto_handle, with an in-memory database and a temporary data folder.
 * They cover the optional size argument of datasets.upload_end. A client
 * that declared an upper bound at the begin gives with it the bytes it
 * sent. The archive is a small zip without a train/ folder, so an upload
 * that ends well is stored as an invalid data set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include "daemon/auth_store.h"
#include "daemon/proto.h"
#include "daemon/zipsafe.h"
#include "embedded.h"
#include "fsutil.h"

#define SECRET                                                                 \
    "00112233445566778899aabbccddeeff"                                         \
    "00112233445566778899aabbccddeeff"
#define DECLARED 1000

static struct backend be;
static struct proto_conn conn;
static char data_dir[PATH_MAX];
static char *archive;
static size_t archive_len;
static char archive_sha[65];

/* Send one request as account 1 and return the response (delete it). */
static cJSON *request(const char *op, const char *args_fmt, ...)
{
    char args[2048], text[4096], *reply = NULL;
    va_list ap;
    cJSON *root;

    va_start(ap, args_fmt);
    vsnprintf(args, sizeof(args), args_fmt, ap);
    va_end(ap);
    snprintf(text, sizeof(text),
             "{\"type\":\"request\",\"id\":1,\"op\":\"%s\",\"account\":1,"
             "\"args\":%s}",
             op, args);
    proto_handle(&be, &conn, text, strlen(text), &reply);
    assert_non_null(reply);
    root = cJSON_Parse(reply);
    free(reply);
    assert_non_null(root);
    return root;
}

static const char *error_code(const cJSON *response)
{
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(response, "error"), "code");

    return cJSON_IsString(code) ? code->valuestring : "";
}

static const char *error_message(const cJSON *response)
{
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(response, "error"), "message");

    return cJSON_IsString(message) ? message->valuestring : "";
}

static double result_number(const cJSON *response, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(response, "result"), name);

    if (!cJSON_IsNumber(v))
        fail_msg("response has no number '%s': %s", name,
                 error_message(response));
    return v->valuedouble;
}

/* Begin an upload of DECLARED bytes and send the archive as its one
 * chunk; returns the upload id. */
static int64_t begin_and_send(void)
{
    size_t text_len =
        sodium_base64_encoded_len(archive_len, sodium_base64_VARIANT_ORIGINAL);
    char *text = malloc(text_len);
    cJSON *r;
    int64_t upload;

    assert_non_null(text);
    r = request("datasets.upload_begin",
                "{\"name\":\"set\",\"task\":\"classify\",\"size\":%d}",
                DECLARED);
    upload = (int64_t)result_number(r, "upload");
    cJSON_Delete(r);

    sodium_bin2base64(text, text_len, (const unsigned char *)archive,
                      archive_len, sodium_base64_VARIANT_ORIGINAL);
    r = request("datasets.upload_chunk",
                "{\"upload\":%lld,\"offset\":0,\"data_base64\":\"%s\"}",
                (long long)upload, text);
    assert_int_equal((size_t)result_number(r, "received"), archive_len);
    cJSON_Delete(r);
    free(text);
    return upload;
}

static void expect_error(cJSON *r, const char *code, const char *message)
{
    if (strcmp(error_code(r), code) != 0)
        fail_msg("expected error %s, got '%s': %s", code, error_code(r),
                 error_message(r));
    if (strstr(error_message(r), message) == NULL)
        fail_msg("the message '%s' does not contain '%s'", error_message(r),
                 message);
    cJSON_Delete(r);
}

/* ---- setup -------------------------------------------------------------- */

static int setup(void **state)
{
    struct auth_account made;
    struct error err = {0};
    char path[PATH_MAX + 16];
    unsigned char digest[crypto_hash_sha256_BYTES];
    zip_t *za;
    zip_source_t *src;
    int zip_error = 0;

    (void)state;
    if (sodium_init() < 0)
        return -1;
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(data_dir, sizeof(data_dir), "%s/test_upload_ops.XXXXXX", base);
    assert_non_null(mkdtemp(data_dir));
    memset(&be, 0, sizeof(be));
    strcpy(be.secret, SECRET);
    be.data_dir = data_dir;
    assert_int_equal(store_open(&be.store, ":memory:", schema_sql, &err), 0);
    assert_int_equal(auth_account_create(&be.store, "user@example.test", NULL,
                                         "user", "free", &made, &err),
                     0);
    assert_int_equal(made.id, 1);

    /* The archive: one text file, no train/ folder. */
    snprintf(path, sizeof(path), "%s/set.zip", data_dir);
    za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zip_error);
    assert_non_null(za);
    src = zip_source_buffer(za, "hello", 5, 0);
    assert_non_null(src);
    assert_true(zip_file_add(za, "readme.txt", src, ZIP_FL_ENC_UTF_8) >= 0);
    assert_int_equal(zip_close(za), 0);
    assert_int_equal(fs_read_file(path, 1 << 20, &archive, &archive_len, &err),
                     0);
    assert_true(archive_len > 1 && archive_len < DECLARED);
    unlink(path);
    crypto_hash_sha256(digest, (const unsigned char *)archive, archive_len);
    sodium_bin2hex(archive_sha, sizeof(archive_sha), digest, sizeof(digest));

    /* The connection's hello, before any request. */
    static const char hello[] = "{\"type\":\"hello\",\"version\":1,"
                                "\"secret\":\"" SECRET "\"}";
    char *reply = NULL;
    proto_handle(&be, &conn, hello, sizeof(hello) - 1, &reply);
    free(reply);
    assert_true(conn.authenticated);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    store_close(&be.store);
    zipsafe_remove_tree(data_dir);
    free(archive);
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void end_with_sent_size_extracts(void **state)
{
    int64_t upload = begin_and_send();
    cJSON *r;
    const cJSON *status;

    (void)state;
    r = request("datasets.upload_end",
                "{\"upload\":%lld,\"sha256\":\"%s\",\"size\":%zu}",
                (long long)upload, archive_sha, archive_len);
    assert_int_equal((int64_t)result_number(r, "dataset"), upload);
    status = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r, "result"), "status");
    assert_true(cJSON_IsString(status));
    assert_string_equal(status->valuestring, "invalid");
    cJSON_Delete(r);
}

static void end_without_size_needs_declared(void **state)
{
    int64_t upload = begin_and_send();
    char message[128];

    (void)state;
    snprintf(message, sizeof(message), "has %zu of its %d bytes", archive_len,
             DECLARED);
    expect_error(request("datasets.upload_end",
                         "{\"upload\":%lld,\"sha256\":\"%s\"}",
                         (long long)upload, archive_sha),
                 "invalid_request", message);
    cJSON_Delete(request("datasets.upload_abort", "{\"upload\":%lld}",
                         (long long)upload));
}

static void end_size_over_declared_rejected(void **state)
{
    int64_t upload = begin_and_send();

    (void)state;
    expect_error(request("datasets.upload_end",
                         "{\"upload\":%lld,\"sha256\":\"%s\",\"size\":%d}",
                         (long long)upload, archive_sha, DECLARED + 1),
                 "invalid_request", "size 1001 of upload");
    expect_error(request("datasets.upload_end",
                         "{\"upload\":%lld,\"sha256\":\"%s\",\"size\":0}",
                         (long long)upload, archive_sha),
                 "invalid_request",
                 "it must be 1 to the 1000 bytes declared at its begin");
    expect_error(request("datasets.upload_end",
                         "{\"upload\":%lld,\"sha256\":\"%s\",\"size\":\"1\"}",
                         (long long)upload, archive_sha),
                 "invalid_request", "field 'size' must be a whole number");
    cJSON_Delete(request("datasets.upload_abort", "{\"upload\":%lld}",
                         (long long)upload));
}

static void end_size_unlike_stored_rejected(void **state)
{
    int64_t upload = begin_and_send();
    char message[128];

    (void)state;
    snprintf(message, sizeof(message), "has %zu of its %zu bytes", archive_len,
             archive_len + 1);
    expect_error(request("datasets.upload_end",
                         "{\"upload\":%lld,\"sha256\":\"%s\",\"size\":%zu}",
                         (long long)upload, archive_sha, archive_len + 1),
                 "invalid_request", message);
    snprintf(message, sizeof(message),
             "has %zu bytes, more than its size of %zu", archive_len,
             archive_len - 1);
    expect_error(request("datasets.upload_end",
                         "{\"upload\":%lld,\"sha256\":\"%s\",\"size\":%zu}",
                         (long long)upload, archive_sha, archive_len - 1),
                 "invalid_request", message);

    /* Neither mismatch discarded the upload: it still ends well. */
    cJSON *r = request("datasets.upload_end",
                       "{\"upload\":%lld,\"sha256\":\"%s\",\"size\":%zu}",
                       (long long)upload, archive_sha, archive_len);
    assert_int_equal((int64_t)result_number(r, "dataset"), upload);
    cJSON_Delete(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(end_with_sent_size_extracts),
        cmocka_unit_test(end_without_size_needs_declared),
        cmocka_unit_test(end_size_over_declared_rejected),
        cmocka_unit_test(end_size_unlike_stored_rejected),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
