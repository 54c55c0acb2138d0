/*
 * Trained weights through the REST API, end to end. The real backend,
 * gateway and train program on 127.0.0.1 train a tiny model. The owner
 * then downloads its best and last checkpoints, another account gets
 * not_found, and share links work without sign-in until they expire or
 * are tampered with.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/image.h"
#include "fsutil.h"
#include "stack.h"

#define ADMIN "admin@example.test"
#define ADMIN_PASSWORD "admin password 1"
#define CKPT_MAGIC "TYCKPT\r\n"

struct world {
    struct stack *s;
    struct browser admin, user, other;
    int64_t user_id, model;
    /* The last share token, which no log may contain. */
    char token[512];
};

static struct world w;

/* Three classes of 16x16 RGB images, 8 per class for training and 2 for
 * validation. */
static void write_dataset(const char *root)
{
    static const char *const splits[] = {"train", "val"};
    struct error err = {0};
    unsigned char px[16 * 16 * 3];
    char dir[PATH_MAX + 64], path[PATH_MAX + 96];

    for (int s = 0; s < 2; s++) {
        for (int c = 0; c < 3; c++) {
            snprintf(dir, sizeof(dir), "%s/%s/class%d", root, splits[s], c);
            assert_int_equal(fs_mkdir_p(dir, 0755, &err), 0);
            for (int i = 0; i < (s == 0 ? 8 : 2); i++) {
                for (int p = 0; p < 16 * 16; p++)
                    for (int ch = 0; ch < 3; ch++)
                        px[p * 3 + ch] =
                            (unsigned char)(c * 80 + (p % 16) + i + ch);
                snprintf(path, sizeof(path), "%s/%d.png", dir, i);
                assert_int_equal(image_write_png(path, px, 16, 16, 3, 8, &err),
                                 0);
            }
        }
    }
}

/* Send a request as b, or with no credentials when b is NULL. */
static void call(struct browser *b, const char *method, const char *target,
                 const char *body, struct http_reply *r)
{
    char headers[1024] = "";

    if (b != NULL)
        browser_headers(b, body != NULL || strcmp(method, "GET") != 0, headers,
                        sizeof(headers));
    if (body != NULL && b == NULL)
        strncat(headers, STACK_JSON_HEADER,
                sizeof(headers) - strlen(headers) - 1);
    stack_request(w.s, method, target, headers, body, r);
}

static void expect_status(struct http_reply *r, int status)
{
    if (r->status != status)
        fail_msg("expected HTTP %d, got %d: %s", status, r->status, r->body);
}

static void wait_completed(int64_t model, int timeout_s)
{
    char target[64], got[32] = "";

    snprintf(target, sizeof(target), "/api/v1/models/%lld", (long long)model);
    for (int i = 0; i < timeout_s * 10; i++) {
        struct http_reply r;
        call(&w.user, "GET", target, NULL, &r);
        expect_status(&r, 200);
        json_text(r.body, "session", "state", got, sizeof(got));
        harness_http_free(&r);
        if (strcmp(got, "completed") == 0)
            return;
        usleep(100 * 1000);
    }
    fail_msg("model %lld: state is '%s' after %d s, expected 'completed'",
             (long long)model, got, timeout_s);
}

static int setup(void **state)
{
    char train[PATH_MAX], root[PATH_MAX + 32], target[96];
    struct http_reply r;

    (void)state;
    harness_program("train", train, sizeof(train));
    setenv("TRAINYARD_TRAIN", train, 1);
    setenv("TRAINYARD_PWHASH", "fast", 1);
    setenv("TRAINYARD_SHARE_TEST_MIN_S", "1", 1);

    w.s = stack_start(ADMIN, ADMIN_PASSWORD);
    assert_int_equal(stack_signin(w.s, ADMIN, ADMIN_PASSWORD, &w.admin), 200);
    w.user_id = stack_create_user(w.s, &w.admin, "user@example.test",
                                  "user password 1", &w.user);
    stack_create_user(w.s, &w.admin, "other@example.test", "other password 1",
                      &w.other);

    snprintf(root, sizeof(root), "%s/datasets/tiny", w.s->data);
    write_dataset(root);
    stack_database_exec(w.s, "INSERT INTO datasets(account_id, name, task, "
                             "path, images, created_at) VALUES (NULL, "
                             "'tiny', 'classify', 'datasets/tiny', 30, 1)");

    snprintf(target, sizeof(target), "/api/v1/admin/accounts/%lld/plan",
             (long long)w.user_id);
    call(&w.admin, "POST", target, "{\"plan\":\"pro\"}", &r);
    expect_status(&r, 200);
    harness_http_free(&r);
    snprintf(target, sizeof(target), "/api/v1/admin/accounts/%lld/credits",
             (long long)w.user_id);
    call(&w.admin, "POST", target,
         "{\"amount\":10000000,\"description\":\"test\"}", &r);
    expect_status(&r, 201);
    harness_http_free(&r);

    /* The quote and slash test the download name's sanitizing. */
    call(&w.user, "POST", "/api/v1/models",
         "{\"name\":\"tiny \\\"net\\\"/v1\",\"dataset\":1,\"architecture\":"
         "\"yolov8n-cls.yaml\",\"args\":{\"imgsz\":16,\"batch\":8}}",
         &r);
    expect_status(&r, 201);
    w.model = (int64_t)json_number(r.body, "id", NULL);
    harness_http_free(&r);

    snprintf(target, sizeof(target), "/api/v1/models/%lld/train",
             (long long)w.model);
    call(&w.user, "POST", target,
         "{\"mode\":\"epochs\",\"epochs\":1,\"instance_type\":\"cpu\"}", &r);
    expect_status(&r, 202);
    harness_http_free(&r);
    wait_completed(w.model, 120);
    return 0;
}

static int teardown(void **state)
{
    const char *const secrets[] = {w.token};

    (void)state;
    return stack_stop(w.s, secrets, w.token[0] != '\0' ? 1 : 0);
}

/* Fail unless r is a whole checkpoint download named name. */
static void expect_checkpoint(const struct http_reply *r, const char *name)
{
    char disposition[512], length[32], expected[256];

    if (r->status != 200)
        fail_msg("expected HTTP 200, got %d: %s", r->status, r->body);
    assert_int_equal(harness_header(r, "Content-Disposition", disposition,
                                    sizeof(disposition)),
                     0);
    snprintf(expected, sizeof(expected), "attachment; filename=\"%s\"", name);
    if (strncmp(disposition, expected, strlen(expected)) != 0)
        fail_msg("Content-Disposition is '%s', expected it to start with "
                 "'%s'",
                 disposition, expected);
    assert_int_equal(
        harness_header(r, "Content-Length", length, sizeof(length)), 0);
    assert_int_equal(strtoull(length, NULL, 10), r->body_len);
    assert_true(r->body_len > strlen(CKPT_MAGIC));
    assert_memory_equal(r->body, CKPT_MAGIC, strlen(CKPT_MAGIC));
}

static void owner_downloads_weights(void **state)
{
    char target[96];
    struct http_reply r;

    (void)state;
    snprintf(target, sizeof(target), "/api/v1/models/%lld/weights?which=best",
             (long long)w.model);
    call(&w.user, "GET", target, NULL, &r);
    expect_checkpoint(&r, "tiny__net__v1-best.ckpt");
    harness_http_free(&r);

    snprintf(target, sizeof(target), "/api/v1/models/%lld/weights?which=last",
             (long long)w.model);
    call(&w.user, "GET", target, NULL, &r);
    expect_checkpoint(&r, "tiny__net__v1-last.ckpt");
    harness_http_free(&r);

    snprintf(target, sizeof(target), "/api/v1/models/%lld/weights?which=worst",
             (long long)w.model);
    call(&w.user, "GET", target, NULL, &r);
    assert_error(&r, 400, "invalid_request");
    harness_http_free(&r);
}

/* A value too long for the gateway's buffer was read as absent, so it
 * downloaded the best checkpoint. */
static void long_which_is_rejected(void **state)
{
    char target[128];
    struct http_reply r;

    (void)state;
    snprintf(target, sizeof(target),
             "/api/v1/models/%lld/weights?which=lastlastlastlastlast",
             (long long)w.model);
    call(&w.user, "GET", target, NULL, &r);
    assert_error(&r, 400, "invalid_request");
    assert_non_null(strstr(r.body, "which"));
    harness_http_free(&r);
}

static void other_account_gets_not_found(void **state)
{
    char target[96];
    struct http_reply r;

    (void)state;
    snprintf(target, sizeof(target), "/api/v1/models/%lld/weights",
             (long long)w.model);
    call(&w.other, "GET", target, NULL, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);

    snprintf(target, sizeof(target), "/api/v1/models/%lld/share",
             (long long)w.model);
    call(&w.other, "POST", target, "{\"which\":\"best\",\"expires_in_s\":60}",
         &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);

    call(NULL, "GET", "/api/v1/models/1/weights", NULL, &r);
    assert_error(&r, 401, "unauthorized");
    harness_http_free(&r);
}

/* POST a share link of which for expires_in_s; copies its url. */
static void share(const char *which, int expires_in_s, char *url, size_t len)
{
    char target[96], body[96];
    struct http_reply r;

    snprintf(target, sizeof(target), "/api/v1/models/%lld/share",
             (long long)w.model);
    snprintf(body, sizeof(body), "{\"which\":\"%s\",\"expires_in_s\":%d}",
             which, expires_in_s);
    call(&w.user, "POST", target, body, &r);
    expect_status(&r, 201);
    json_text(r.body, "url", NULL, url, len);
    assert_true(json_number(r.body, "expires_at", NULL) > 0);
    harness_http_free(&r);
    assert_int_equal(strncmp(url, "/api/v1/shared/", 15), 0);
    snprintf(w.token, sizeof(w.token), "%s", url + 15);
}

static void share_link_works_signed_out(void **state)
{
    char url[600];
    struct http_reply r;

    (void)state;
    share("last", 600, url, sizeof(url));
    call(NULL, "GET", url, NULL, &r);
    expect_checkpoint(&r, "tiny__net__v1-last.ckpt");
    harness_http_free(&r);
}

static void share_rejects_bad_expiry(void **state)
{
    char target[96];
    struct http_reply r;

    (void)state;
    snprintf(target, sizeof(target), "/api/v1/models/%lld/share",
             (long long)w.model);
    call(&w.user, "POST", target,
         "{\"which\":\"best\",\"expires_in_s\":604801}", &r);
    assert_error(&r, 400, "invalid_request");
    harness_http_free(&r);
    call(&w.user, "POST", target, "{\"which\":\"both\",\"expires_in_s\":60}",
         &r);
    assert_error(&r, 400, "invalid_request");
    harness_http_free(&r);
}

static void tampered_token_not_found(void **state)
{
    char url[600], tampered[600];
    struct http_reply r;
    char *dot;

    (void)state;
    share("best", 600, url, sizeof(url));

    /* Change one character of the signature. */
    snprintf(tampered, sizeof(tampered), "%s", url);
    dot = strchr(tampered, '.');
    assert_non_null(dot);
    dot[1] = dot[1] == 'A' ? 'B' : 'A';
    call(NULL, "GET", tampered, NULL, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);

    /* Change the payload but keep the signature. */
    snprintf(tampered, sizeof(tampered), "%s", url);
    tampered[15] = tampered[15] == 'M' ? 'N' : 'M';
    call(NULL, "GET", tampered, NULL, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);

    call(NULL, "GET", "/api/v1/shared/not-a-token", NULL, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);
}

static void expired_link_gone(void **state)
{
    char url[600];
    struct http_reply r;

    (void)state;
    share("best", 1, url, sizeof(url));
    sleep(2);
    call(NULL, "GET", url, NULL, &r);
    assert_error(&r, 410, "link_expired");
    harness_http_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(owner_downloads_weights),
        cmocka_unit_test(long_which_is_rejected),
        cmocka_unit_test(other_account_gets_not_found),
        cmocka_unit_test(share_link_works_signed_out),
        cmocka_unit_test(share_rejects_bad_expiry),
        cmocka_unit_test(tampered_token_not_found),
        cmocka_unit_test(expired_link_gone),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
