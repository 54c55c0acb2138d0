/*
 * A stack set up for training; see trainstack.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "trainstack.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/image.h"
#include "fsutil.h"

#define CLASSES 3
#define VAL_PER_CLASS 4
#define SIZE 16

static long monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Class 0 is a horizontal ramp, class 1 a vertical one, class 2 a
 * checker pattern, each shifted a little per image. */
static void write_dataset(const char *root, int train_per_class)
{
    static const char *const splits[] = {"train", "val"};
    const int counts[] = {train_per_class, VAL_PER_CLASS};
    unsigned char px[SIZE * SIZE * 3];
    char dir[PATH_MAX + 160], path[PATH_MAX + 192];
    struct error err = {0};

    for (int s = 0; s < 2; s++) {
        for (int c = 0; c < CLASSES; c++) {
            snprintf(dir, sizeof(dir), "%s/%s/c%d", root, splits[s], c);
            assert_int_equal(fs_mkdir_p(dir, 0755, &err), 0);
            for (int i = 0; i < counts[s]; i++) {
                for (int y = 0; y < SIZE; y++) {
                    for (int x = 0; x < SIZE; x++) {
                        int v = c == 0   ? x * 15
                                : c == 1 ? y * 15
                                         : (x ^ y) * 15;
                        for (int ch = 0; ch < 3; ch++)
                            px[(y * SIZE + x) * 3 + ch] =
                                (unsigned char)((v + 5 * i + ch) & 255);
                    }
                }
                snprintf(path, sizeof(path), "%s/%02d.png", dir, i);
                assert_int_equal(
                    image_write_png(path, px, SIZE, SIZE, 3, 8, &err), 0);
            }
        }
    }
}

void trainstack_start_backend(struct trainstack *ts, int port)
{
    char prog[PATH_MAX], port_file[PATH_MAX + 32], listen[64];
    struct stack *s = ts->s;

    harness_program("backend", prog, sizeof(prog));
    snprintf(port_file, sizeof(port_file), "%s/backend.port", s->dir);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    for (int attempt = 0; attempt < 20; attempt++) {
        unlink(port_file);
        char *argv[] = {prog,     "--config", ts->config, "--data",
                        s->data,  "--listen", listen,     "--port-file",
                        port_file, NULL};
        s->backend = harness_spawn(argv, s->backend_log);
        s->backend_port = harness_wait_port(port_file, s->backend, 20000);
        if (s->backend_port > 0)
            return;
        harness_stop(s->backend, SIGKILL, 1000);
        usleep(250 * 1000);
    }
    fail_msg("the backend did not start on %s; log in %s", listen,
             s->backend_log);
}

void trainstack_start_gateway(struct trainstack *ts)
{
    char prog[PATH_MAX], backend[64], port_file[PATH_MAX + 32];
    char secret[PATH_MAX + 32];
    struct stack *s = ts->s;
    struct http_reply r;
    int status = 0;

    harness_program("gateway", prog, sizeof(prog));
    snprintf(backend, sizeof(backend), "127.0.0.1:%d", s->backend_port);
    snprintf(port_file, sizeof(port_file), "%s/gateway.port", s->dir);
    snprintf(secret, sizeof(secret), "%s/gateway.secret", s->data);
    unlink(port_file);
    char *argv[] = {
        prog,
        "--listen",
        "127.0.0.1:0",
        "--backend",
        backend,
        "--secret",
        secret,
        "--ui",
        s->ui,
        "--port-file",
        port_file,
        (char *)ts->opt.gateway_option,
        ts->opt.gateway_option ? (char *)ts->opt.gateway_option2 : NULL,
        NULL,
    };
    s->gateway = harness_spawn(argv, s->gateway_log);
    s->signins = 0;
    s->gateway_port = harness_wait_port(port_file, s->gateway, 20000);
    assert_true(s->gateway_port > 0);
    for (int waited = 0; waited <= 20000 && status != 200; waited += 50) {
        if (harness_http(s->gateway_port, "GET", "/api/v1/health", NULL, NULL,
                         &r) == 0) {
            status = r.status;
            harness_http_free(&r);
        }
        if (status != 200)
            usleep(50 * 1000);
    }
    assert_int_equal(status, 200);
}

void trainstack_call(struct trainstack *ts, const char *method,
                     const char *target, const char *body,
                     struct http_reply *r)
{
    char headers[1024];

    browser_headers(&ts->user, strcmp(method, "GET") != 0, headers,
                    sizeof(headers));
    stack_request(ts->s, method, target, headers, body, r);
}

void trainstack_expect(const struct http_reply *r, int status,
                       const char *what)
{
    if (r->status != status)
        fail_msg("%s: expected HTTP %d, got %d: %s", what, status, r->status,
                 r->body);
}

static void admin_post(struct trainstack *ts, const char *target,
                       const char *body, int status)
{
    struct http_reply r;
    char headers[1024];

    browser_headers(&ts->admin, 1, headers, sizeof(headers));
    stack_request(ts->s, "POST", target, headers, body, &r);
    trainstack_expect(&r, status, target);
    harness_http_free(&r);
}

void trainstack_credit(struct trainstack *ts, int64_t amount)
{
    char target[96], body[128];

    snprintf(target, sizeof(target), "/api/v1/admin/accounts/%lld/credits",
             (long long)ts->user_id);
    snprintf(body, sizeof(body),
             "{\"amount\":%lld,\"description\":\"test credits\"}",
             (long long)amount);
    admin_post(ts, target, body, 201);
}

void trainstack_start(struct trainstack *ts,
                      const struct trainstack_options *opt)
{
    char train[PATH_MAX], train_abs[PATH_MAX], path[PATH_MAX + 64];
    char target[96];
    struct error err = {0};
    struct stack *s;
    FILE *f;

    memset(ts, 0, sizeof(*ts));
    ts->opt = *opt;
    setenv("TRAINYARD_PWHASH", "fast", 1);
    harness_program("train", train, sizeof(train));
    if (realpath(train, train_abs) == NULL)
        fail_msg("train program '%s' not found; build it with make or set "
                 "TRAINYARD_BIN",
                 train);

    s = ts->s = calloc(1, sizeof(*ts->s));
    assert_non_null(s);
    harness_tmpdir(s->dir, sizeof(s->dir));
    snprintf(s->data, sizeof(s->data), "%s/data", s->dir);
    snprintf(s->ui, sizeof(s->ui), "%s/ui", s->dir);
    snprintf(s->backend_log, sizeof(s->backend_log), "%s/backend.log",
             s->dir);
    snprintf(s->gateway_log, sizeof(s->gateway_log), "%s/gateway.log",
             s->dir);
    assert_int_equal(fs_mkdir_p(s->ui, 0755, &err), 0);

    snprintf(ts->config, sizeof(ts->config), "%s/backend.yaml", s->dir);
    f = fopen(ts->config, "w");
    assert_non_null(f);
    fprintf(f,
            "train: %s\n"
            "instance_types:\n"
            "  - name: cpu\n"
            "    device: cpu\n"
            "    price_per_hour: \"%s\"\n"
            "    capacity: 2\n"
            "%s",
            train_abs, opt->price_per_hour ? opt->price_per_hour : "0.50",
            opt->more_instance_types ? opt->more_instance_types : "");
    fclose(f);

    trainstack_start_backend(ts, 0);
    snprintf(path, sizeof(path), "%s/create-admin.log", s->dir);
    assert_int_equal(stack_create_admin(s, TRAINSTACK_ADMIN_EMAIL, NULL,
                                        TRAINSTACK_ADMIN_PASSWORD, path),
                     0);
    trainstack_start_gateway(ts);

    assert_int_equal(stack_signin(s, TRAINSTACK_ADMIN_EMAIL,
                                  TRAINSTACK_ADMIN_PASSWORD, &ts->admin),
                     200);
    ts->user_id =
        stack_create_user(s, &ts->admin, TRAINSTACK_USER_EMAIL,
                          TRAINSTACK_USER_PASSWORD, &ts->user);
    snprintf(target, sizeof(target), "/api/v1/admin/accounts/%lld/plan",
             (long long)ts->user_id);
    admin_post(ts, target, "{\"plan\":\"pro\"}", 200);
    if (opt->credits > 0)
        trainstack_credit(ts, opt->credits);

    trainstack_add_dataset(ts, TRAINSTACK_DATASET_ID, TRAINSTACK_DATASET_PATH);
}

void trainstack_add_dataset(struct trainstack *ts, int64_t id,
                            const char *path)
{
    int per_class = ts->opt.train_per_class > 0 ? ts->opt.train_per_class
                                                : 12;
    char root[PATH_MAX + 64], sql[512];

    snprintf(root, sizeof(root), "%s/%s", ts->s->data, path);
    write_dataset(root, per_class);
    snprintf(sql, sizeof(sql),
             "INSERT INTO datasets (id, account_id, name, task, path, "
             "images, created_at) VALUES (%lld, %lld, 'tiny-%lld', "
             "'classify', '%s', %d, 1)",
             (long long)id, (long long)ts->user_id, (long long)id, path,
             CLASSES * (per_class + VAL_PER_CLASS));
    stack_database_exec(ts->s, sql);
}

int trainstack_stop(struct trainstack *ts)
{
    static const char *const secrets[] = {TRAINSTACK_ADMIN_PASSWORD,
                                          TRAINSTACK_USER_PASSWORD};
    int rc = stack_stop(ts->s, secrets, sizeof(secrets) / sizeof(secrets[0]));

    ts->s = NULL;
    return rc;
}

int64_t trainstack_create_model(struct trainstack *ts, int64_t dataset)
{
    struct http_reply r;
    char body[256];
    int64_t id;

    snprintf(body, sizeof(body),
             "{\"name\":\"load-%d\",\"dataset\":%lld,\"architecture\":"
             "\"yolov8n-cls.yaml\",\"args\":{\"imgsz\":16,\"batch\":8}}",
             ++ts->models,
             (long long)(dataset > 0 ? dataset : TRAINSTACK_DATASET_ID));
    trainstack_call(ts, "POST", "/api/v1/models", body, &r);
    trainstack_expect(&r, 201, "POST /api/v1/models");
    id = (int64_t)json_number(r.body, "id", NULL);
    harness_http_free(&r);
    assert_true(id > 0);
    return id;
}

void trainstack_train(struct trainstack *ts, int64_t model, int epochs,
                      const char *instance)
{
    struct http_reply r;
    char target[64], body[160];

    snprintf(target, sizeof(target), "/api/v1/models/%lld/train",
             (long long)model);
    snprintf(body, sizeof(body),
             "{\"mode\":\"epochs\",\"epochs\":%d,\"instance_type\":\"%s\"}",
             epochs, instance ? instance : "cpu");
    trainstack_call(ts, "POST", target, body, &r);
    trainstack_expect(&r, 202, target);
    harness_http_free(&r);
}

void trainstack_wait_state(struct trainstack *ts, int64_t model,
                           const char *state, int timeout_ms, char *reason,
                           size_t reason_len)
{
    char target[64], got[32] = "";
    long deadline = monotonic_ms() + timeout_ms;

    snprintf(target, sizeof(target), "/api/v1/models/%lld", (long long)model);
    while (monotonic_ms() < deadline) {
        struct http_reply r;
        trainstack_call(ts, "GET", target, NULL, &r);
        trainstack_expect(&r, 200, target);
        json_text(r.body, "session", "state", got, sizeof(got));
        if (reason != NULL)
            json_text(r.body, "session", "reason", reason, reason_len);
        harness_http_free(&r);
        if (strcmp(got, state) == 0)
            return;
        usleep(100 * 1000);
    }
    fail_msg("model %lld: session state is '%s' after %d ms, expected '%s'",
             (long long)model, got, timeout_ms, state);
}

int64_t trainstack_last_seq(struct trainstack *ts, int64_t model)
{
    int64_t last = 0;
    int more = 1;

    while (more) {
        struct http_reply r;
        char target[96];
        const cJSON *e;
        cJSON *root;

        snprintf(target, sizeof(target),
                 "/api/v1/models/%lld/events?after=%lld&limit=1000",
                 (long long)model, (long long)last);
        trainstack_call(ts, "GET", target, NULL, &r);
        trainstack_expect(&r, 200, target);
        root = cJSON_Parse(r.body);
        assert_non_null(root);
        more = cJSON_IsTrue(cJSON_GetObjectItem(root, "more"));
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(root, "events"))
        {
            int64_t seq = (int64_t)cJSON_GetObjectItem(e, "seq")->valuedouble;
            assert_int_equal(seq, last + 1);
            last = seq;
        }
        cJSON_Delete(root);
        harness_http_free(&r);
    }
    return last;
}

int64_t trainstack_balance(struct trainstack *ts)
{
    struct http_reply r;
    double balance;

    trainstack_call(ts, "GET", "/api/v1/balance", NULL, &r);
    trainstack_expect(&r, 200, "GET /api/v1/balance");
    balance = json_number(r.body, "balance", NULL);
    harness_http_free(&r);
    return (int64_t)balance;
}

int64_t trainstack_query_int(struct trainstack *ts, const char *sql)
{
    return stack_database_int(ts->s, sql);
}

int64_t trainstack_ledger_rows(struct trainstack *ts)
{
    return trainstack_query_int(ts, "SELECT COUNT(*) FROM ledger");
}
