/*
 * Training through the REST API, end to end: the real backend, gateway
 * and train program on 127.0.0.1, a tiny generated data set, and the
 * product's rules as a user meets them: the Pro plan, the $5.00 start
 * rule, one model at a time, epoch charges that equal the ledger and
 * the report, stop and resume, progress replay, a model that starts
 * from another model's weights, and other accounts' models answered as
 * not found.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/image.h"
#include "fsutil.h"
#include "stack.h"

#define ADMIN "admin@example.test"
#define ADMIN_PASSWORD "admin password 1"
#define CLASSES 3
#define PER_CLASS 12

struct world {
    struct stack *s;
    struct browser admin, user, other;
    int64_t user_id, other_id;
};

static struct world w;

/* Images whose pattern depends on the class, 16x16 RGB. */
static void write_dataset(const char *root)
{
    static const char *const splits[] = {"train", "val"};
    struct error err = {0};
    unsigned char px[16 * 16 * 3];
    char dir[PATH_MAX + 64], path[PATH_MAX + 96];

    for (int s = 0; s < 2; s++) {
        for (int c = 0; c < CLASSES; c++) {
            snprintf(dir, sizeof(dir), "%s/%s/class%d", root, splits[s], c);
            assert_int_equal(fs_mkdir_p(dir, 0755, &err), 0);
            for (int i = 0; i < (s == 0 ? PER_CLASS : 4); i++) {
                for (int p = 0; p < 16 * 16; p++) {
                    int v = c == 0 ? (p % 16) * 16 : c == 1 ? (p / 16) * 16
                                                            : 128;
                    for (int ch = 0; ch < 3; ch++)
                        px[p * 3 + ch] = (unsigned char)(v + i + ch);
                }
                snprintf(path, sizeof(path), "%s/%d.png", dir, i);
                assert_int_equal(
                    image_write_png(path, px, 16, 16, 3, 8, &err), 0);
            }
        }
    }
}

static int setup(void **state)
{
    char train[PATH_MAX], root[PATH_MAX + 32];

    (void)state;
    /* The backend runs the sanitizer build of train from the tree. */
    harness_program("train", train, sizeof(train));
    setenv("TRAINYARD_TRAIN", train, 1);
    setenv("TRAINYARD_PWHASH", "fast", 1);

    w.s = stack_start(ADMIN, ADMIN_PASSWORD);
    assert_int_equal(stack_signin(w.s, ADMIN, ADMIN_PASSWORD, &w.admin),
                     200);
    w.user_id = stack_create_user(w.s, &w.admin, "user@example.test",
                                  "user password 1", &w.user);
    w.other_id = stack_create_user(w.s, &w.admin, "other@example.test",
                                   "other password 1", &w.other);

    snprintf(root, sizeof(root), "%s/datasets/tiny", w.s->data);
    write_dataset(root);
    stack_database_exec(w.s, "INSERT INTO datasets(account_id, name, task, "
                             "path, images, created_at) VALUES (NULL, "
                             "'tiny', 'classify', 'datasets/tiny', 48, 1)");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return stack_stop(w.s, NULL, 0);
}

/* Send a request as b; with_csrf for state-changing ones. */
static void call(struct browser *b, const char *method, const char *target,
                 const char *body, struct http_reply *r)
{
    char headers[1024];

    browser_headers(b, body != NULL || strcmp(method, "GET") != 0, headers,
                    sizeof(headers));
    if (body != NULL)
        strncat(headers, STACK_JSON_HEADER,
                sizeof(headers) - strlen(headers) - 1);
    stack_request(w.s, method, target, headers, body, r);
}

static void expect_status(struct http_reply *r, int status)
{
    if (r->status != status)
        fail_msg("expected HTTP %d, got %d: %s", status, r->status, r->body);
}

static void admin_post(const char *target, const char *body, int status)
{
    struct http_reply r;

    call(&w.admin, "POST", target, body, &r);
    expect_status(&r, status);
    harness_http_free(&r);
}

static int64_t create_model(struct browser *b, const char *name)
{
    struct http_reply r;
    char body[256];

    snprintf(body, sizeof(body),
             "{\"name\":\"%s\",\"dataset\":1,\"architecture\":"
             "\"yolov8n-cls.yaml\",\"args\":{\"imgsz\":16,\"batch\":8}}",
             name);
    call(b, "POST", "/api/v1/models", body, &r);
    expect_status(&r, 201);
    int64_t id = (int64_t)json_number(r.body, "id", NULL);
    harness_http_free(&r);
    return id;
}

/* GET the model until its session reaches state (timeout in seconds). */
static void wait_state(struct browser *b, int64_t model, const char *state,
                       int timeout_s)
{
    char target[64], got[32] = "";

    snprintf(target, sizeof(target), "/api/v1/models/%lld",
             (long long)model);
    for (int i = 0; i < timeout_s * 10; i++) {
        struct http_reply r;
        call(b, "GET", target, NULL, &r);
        expect_status(&r, 200);
        json_text(r.body, "session", "state", got, sizeof(got));
        harness_http_free(&r);
        if (strcmp(got, state) == 0)
            return;
        usleep(100 * 1000);
    }
    fail_msg("model %lld: state is '%s' after %d s, expected '%s'",
             (long long)model, got, timeout_s, state);
}

static double balance(struct browser *b)
{
    struct http_reply r;

    call(b, "GET", "/api/v1/balance", NULL, &r);
    expect_status(&r, 200);
    double v = json_number(r.body, "balance", NULL);
    harness_http_free(&r);
    return v;
}

static void start_epochs(struct browser *b, int64_t model, int epochs,
                         struct http_reply *r)
{
    char target[64], body[128];

    snprintf(target, sizeof(target), "/api/v1/models/%lld/train",
             (long long)model);
    snprintf(body, sizeof(body),
             "{\"mode\":\"epochs\",\"epochs\":%d,\"instance_type\":\"cpu\"}",
             epochs);
    call(b, "POST", target, body, r);
}

static void free_plan_needs_pro(void **state)
{
    struct http_reply r;

    (void)state;
    int64_t model = create_model(&w.user, "first");
    start_epochs(&w.user, model, 2, &r);
    assert_error(&r, 403, "plan_required");
    assert_non_null(strstr(r.body, "Pro"));
    harness_http_free(&r);
}

static void start_needs_five_dollars(void **state)
{
    char target[96];
    struct http_reply r;

    (void)state;
    snprintf(target, sizeof(target), "/api/v1/admin/accounts/%lld/plan",
             (long long)w.user_id);
    admin_post(target, "{\"plan\":\"pro\"}", 200);
    snprintf(target, sizeof(target), "/api/v1/admin/accounts/%lld/credits",
             (long long)w.user_id);
    admin_post(target, "{\"amount\":4990000,\"description\":\"almost\"}",
               201);

    start_epochs(&w.user, 1, 2, &r);
    assert_error(&r, 402, "insufficient_balance");
    harness_http_free(&r);
}

static void epochs_charged_once_each(void **state)
{
    char target[96];
    struct http_reply r;

    (void)state;
    snprintf(target, sizeof(target), "/api/v1/admin/accounts/%lld/credits",
             (long long)w.user_id);
    admin_post(target, "{\"amount\":5010000,\"description\":\"top\"}", 201);
    assert_true(balance(&w.user) == 10000000);

    start_epochs(&w.user, 1, 3, &r);
    expect_status(&r, 202);
    harness_http_free(&r);

    /* A second model while the first trains names the first. */
    int64_t second = create_model(&w.user, "second");
    start_epochs(&w.user, second, 2, &r);
    if (r.status != 409)
        fail_msg("second start: expected 409, got %d: %s", r.status,
                 r.body);
    assert_non_null(strstr(r.body, "first"));
    harness_http_free(&r);

    wait_state(&w.user, 1, "completed", 120);

    /* Three charge rows, whose sum is the balance's change. */
    call(&w.user, "GET", "/api/v1/ledger", NULL, &r);
    expect_status(&r, 200);
    int charges = 0;
    for (const char *p = r.body; (p = strstr(p, "\"kind\":\"charge\""));
         p++)
        charges++;
    assert_int_equal(charges, 3);
    harness_http_free(&r);

    call(&w.user, "GET", "/api/v1/models/1/billing.csv", NULL, &r);
    expect_status(&r, 200);
    const char *net = strstr(r.body, ",total,,,net,,,,");
    assert_non_null(net);
    double total = strtod(net + strlen(",total,,,net,,,,"), NULL);
    double change = (balance(&w.user) - 10000000) / 1e6;
    if (total > change + 5e-7 || total < change - 5e-7)
        fail_msg("report net %.6f differs from the balance change %.6f",
                 total, change);
    harness_http_free(&r);
}

static void progress_replays_in_order(void **state)
{
    struct http_reply r;
    int64_t expect = 1;
    int epochs = 0, done = 0;

    (void)state;
    call(&w.user, "GET", "/api/v1/models/1/events?after=0", NULL, &r);
    expect_status(&r, 200);
    /* Sequence numbers run 1, 2, 3, ... with no gap. */
    for (const char *p = r.body; (p = strstr(p, "\"seq\":")); p++) {
        int64_t seq = strtoll(p + 6, NULL, 10);
        if (seq != expect)
            fail_msg("event seq %lld where %lld was expected", (long long)seq,
                     (long long)expect);
        expect++;
    }
    for (const char *p = r.body; (p = strstr(p, "\"kind\":\"epoch\"")); p++)
        epochs++;
    for (const char *p = r.body; (p = strstr(p, "\"kind\":\"done\"")); p++)
        done++;
    assert_int_equal(epochs, 3);
    assert_int_equal(done, 1);
    harness_http_free(&r);

    /* after=N returns only the later ones. */
    call(&w.user, "GET", "/api/v1/models/1/events?after=3", NULL, &r);
    expect_status(&r, 200);
    assert_null(strstr(r.body, "\"seq\":3,"));
    assert_non_null(strstr(r.body, "\"seq\":4,"));
    harness_http_free(&r);
}

/* A value too long for the gateway's buffer was read as absent, so
 * after=<40 digits> returned every event from the first. */
static void long_after_is_rejected(void **state)
{
    static const char *const targets[] = {
        "/api/v1/models/1/events?after=1234567890123456789012345678901234567890",
        "/api/v1/models/1/events?after=0&limit="
        "1234567890123456789012345678901234567890",
        "/api/v1/models/1/events?after=",
    };
    struct http_reply r;

    (void)state;
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        call(&w.user, "GET", targets[i], NULL, &r);
        assert_error(&r, 400, "invalid_request");
        harness_http_free(&r);
    }
}

static void other_accounts_model_not_found(void **state)
{
    static const char *const gets[] = {
        "/api/v1/models/1", "/api/v1/models/1/events?after=0",
        "/api/v1/models/1/billing.csv", "/api/v1/models/1/billing.pdf"};
    static const char *const posts[] = {"/api/v1/models/1/train",
                                        "/api/v1/models/1/stop",
                                        "/api/v1/models/1/resume"};
    struct http_reply r;

    (void)state;
    for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
        call(&w.other, "GET", gets[i], NULL, &r);
        assert_error(&r, 404, "not_found");
        harness_http_free(&r);
    }
    for (size_t i = 0; i < sizeof(posts) / sizeof(posts[0]); i++) {
        call(&w.other, "POST", posts[i], "{}", &r);
        assert_error(&r, 404, "not_found");
        harness_http_free(&r);
    }
    call(&w.other, "DELETE", "/api/v1/models/1", NULL, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);
}

/* The pipe that /proc/pid/fd/fd names, such as "pipe:[123]". */
static void fd_target(pid_t pid, int fd, char *out, size_t len)
{
    char path[64];
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
    n = readlink(path, out, len - 1);
    out[n > 0 ? n : 0] = '\0';
}

/* The backend reads a trainer's events when they are written, not at its
 * next tick. Its service loop watches a copy of the pipe's read end, so
 * two of the backend's descriptors refer to the pipe whose write end is
 * the trainer's descriptor 3. */
static void expect_trainer_pipe_watched(int64_t model)
{
    char sql[128], pipe_name[64], name[64], path[PATH_MAX];
    struct dirent *entry;
    DIR *dir;
    int copies = 0;

    snprintf(sql, sizeof(sql),
             "SELECT pid FROM sessions WHERE model_id = %lld AND state = "
             "'training'",
             (long long)model);
    pid_t trainer = (pid_t)stack_database_int(w.s, sql);
    assert_true(trainer > 1);
    fd_target(trainer, 3, pipe_name, sizeof(pipe_name));
    assert_true(strncmp(pipe_name, "pipe:[", 6) == 0);

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)w.s->backend);
    dir = opendir(path);
    assert_non_null(dir);
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        fd_target(w.s->backend, atoi(entry->d_name), name, sizeof(name));
        copies += strcmp(name, pipe_name) == 0;
    }
    closedir(dir);
    assert_int_equal(copies, 2);
}

static void stop_then_resume(void **state)
{
    struct http_reply r;

    (void)state;
    /* Model 2 ("second") with many epochs, stopped once it trains. */
    start_epochs(&w.user, 2, 200, &r);
    expect_status(&r, 202);
    harness_http_free(&r);
    wait_state(&w.user, 2, "training", 60);
    expect_trainer_pipe_watched(2);

    call(&w.user, "POST", "/api/v1/models/2/stop", "{}", &r);
    expect_status(&r, 202);
    harness_http_free(&r);
    wait_state(&w.user, 2, "stopped", 60);

    call(&w.user, "POST", "/api/v1/models/2/resume", "{}", &r);
    expect_status(&r, 202);
    harness_http_free(&r);
    wait_state(&w.user, 2, "training", 60);

    call(&w.user, "POST", "/api/v1/models/2/stop", "{}", &r);
    expect_status(&r, 202);
    harness_http_free(&r);
    wait_state(&w.user, 2, "stopped", 60);

    /* Deleting a stopped model works; its id is then not found. */
    call(&w.user, "DELETE", "/api/v1/models/2", NULL, &r);
    expect_status(&r, 200);
    harness_http_free(&r);
    call(&w.user, "GET", "/api/v1/models/2", NULL, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);
}

static void timed_price_quoted_exactly(void **state)
{
    struct http_reply r;

    (void)state;
    /* 1 h 30 min at $0.50 per hour is exactly $0.75. */
    call(&w.user, "POST", "/api/v1/quote",
         "{\"duration_ms\":5400000,\"instance_type\":\"cpu\"}", &r);
    expect_status(&r, 200);
    assert_true(json_number(r.body, "price", NULL) == 750000);
    assert_true(json_number(r.body, "price_per_hour", NULL) == 500000);
    harness_http_free(&r);

    call(&w.user, "POST", "/api/v1/quote",
         "{\"duration_ms\":0,\"instance_type\":\"cpu\"}", &r);
    assert_error(&r, 400, "invalid_request");
    harness_http_free(&r);
}

/* GET the model's session field, as a number. */
static double session_number(int64_t model, const char *field)
{
    char target[64];
    struct http_reply r;

    snprintf(target, sizeof(target), "/api/v1/models/%lld",
             (long long)model);
    call(&w.user, "GET", target, NULL, &r);
    expect_status(&r, 200);
    double v = json_number(r.body, "session", field);
    harness_http_free(&r);
    return v;
}

static int64_t mtime_ns(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return 0;
    return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

/* The backend is frozen while its trainer finishes an epoch, then killed:
 * the epoch's event is never read, so it is neither stored nor charged.
 * After a restart and a resume, every epoch is charged exactly once. */
static void backend_killed_before_charge(void **state)
{
    char ckpt[PATH_MAX + 96], target[64], key[96];
    struct http_reply r;
    int status;

    (void)state;
    int64_t model = create_model(&w.user, "crash");
    start_epochs(&w.user, model, 6, &r);
    expect_status(&r, 202);
    int64_t session = (int64_t)json_number(r.body, "session", NULL);
    harness_http_free(&r);
    snprintf(ckpt, sizeof(ckpt),
             "%s/runs/model-%lld/session-%lld/weights/last.ckpt", w.s->data,
             (long long)model, (long long)session);

    for (int i = 0; i < 600 && session_number(model, "epochs_done") < 1; i++)
        usleep(100 * 1000);
    assert_true(session_number(model, "epochs_done") >= 1);

    int64_t before = mtime_ns(ckpt);
    assert_int_equal(kill(w.s->backend, SIGSTOP), 0);
    for (int i = 0; i < 3000 && mtime_ns(ckpt) == before; i++)
        usleep(10 * 1000);
    assert_true(mtime_ns(ckpt) != before);
    assert_int_equal(kill(w.s->backend, SIGKILL), 0);
    assert_int_equal(waitpid(w.s->backend, &status, 0), w.s->backend);
    w.s->backend = 0;

    /* The same data folder again; the gateway follows the new port. */
    stack_start_backend(w.s);
    stack_restart_gateway(w.s, NULL);
    assert_int_equal(stack_signin(w.s, "user@example.test",
                                  "user password 1", &w.user),
                     200);
    snprintf(target, sizeof(target), "/api/v1/models/%lld/resume",
             (long long)model);
    call(&w.user, "POST", target, "{}", &r);
    expect_status(&r, 202);
    harness_http_free(&r);
    wait_state(&w.user, model, "completed", 120);

    /* The epoch finished while the backend was frozen was recorded from
     * the resumed run's start, not lost. */
    assert_true(harness_file_contains(w.s->backend_log,
                                      "finished while the backend was "
                                      "down"));

    call(&w.user, "GET", "/api/v1/ledger", NULL, &r);
    expect_status(&r, 200);
    for (int e = 1; e <= 6; e++) {
        int count = 0;
        snprintf(key, sizeof(key),
                 "\"session_id\":%lld,\"model_id\":%lld,\"epoch\":%d,",
                 (long long)session, (long long)model, e);
        for (const char *p = r.body; (p = strstr(p, key)) != NULL; p++)
            count++;
        if (count != 1)
            fail_msg("epoch %d of session %lld has %d charges, expected 1",
                     e, (long long)session, count);
    }
    harness_http_free(&r);
}

/* The train/loss of the model's first epoch event, from the REST replay
 * of its progress events. */
static double first_epoch_loss(int64_t model)
{
    char target[96];
    struct http_reply r;
    const char *epoch, *loss;

    snprintf(target, sizeof(target), "/api/v1/models/%lld/events?after=0",
             (long long)model);
    call(&w.user, "GET", target, NULL, &r);
    expect_status(&r, 200);
    epoch = strstr(r.body, "\"kind\":\"epoch\"");
    assert_non_null(epoch);
    loss = strstr(epoch, "train/loss");
    assert_non_null(loss);
    loss += strlen("train/loss");
    while (*loss != '\0' && strchr("\\\":", *loss) != NULL)
        loss++;
    double v = strtod(loss, NULL);
    harness_http_free(&r);
    return v;
}

static int64_t create_from(struct browser *b, const char *name,
                           int64_t from_model, struct http_reply *r)
{
    char body[256];

    snprintf(body, sizeof(body),
             "{\"name\":\"%s\",\"dataset\":1,\"architecture\":"
             "\"yolov8n-cls.yaml\",\"args\":{\"imgsz\":16,\"batch\":8},"
             "\"from_model\":%lld}",
             name, (long long)from_model);
    call(b, "POST", "/api/v1/models", body, r);
    return r->status == 201 ? (int64_t)json_number(r->body, "id", NULL) : 0;
}

/* Model B starts from model A's weights after one epoch of A. Both train
 * with the same seed, so B's first epoch draws the same batches in the
 * same order as A's first epoch did. A's epoch mean includes the batches
 * of a random network, which start at about ln 3 = 1.10 for 3 classes,
 * while B's continues from where A ended, so B's mean is lower unless the
 * copy failed or the fresh warm-up diverges. Measured on 2 shared cores:
 * A 1.21, B 1.05. */
static void starts_from_own_model(void **state)
{
    char target[96], log_path[PATH_MAX + 96];
    struct http_reply r;

    (void)state;
    int64_t source = create_model(&w.user, "source");

    /* Without a training, the model has no weights to start from. */
    create_from(&w.user, "too early", source, &r);
    assert_error(&r, 400, "invalid_request");
    assert_non_null(strstr(r.body, "no weights"));
    harness_http_free(&r);

    start_epochs(&w.user, source, 1, &r);
    expect_status(&r, 202);
    harness_http_free(&r);
    wait_state(&w.user, source, "completed", 120);

    snprintf(target, sizeof(target), "/api/v1/models/%lld",
             (long long)source);
    call(&w.user, "GET", target, NULL, &r);
    expect_status(&r, 200);
    assert_non_null(strstr(r.body, "\"has_weights\":true"));
    harness_http_free(&r);

    int64_t copy = create_from(&w.user, "copy", source, &r);
    expect_status(&r, 201);
    harness_http_free(&r);
    snprintf(target, sizeof(target), "/api/v1/models/%lld", (long long)copy);
    call(&w.user, "GET", target, NULL, &r);
    expect_status(&r, 200);
    assert_true(json_number(r.body, "from_model", NULL) == (double)source);
    harness_http_free(&r);

    start_epochs(&w.user, copy, 1, &r);
    expect_status(&r, 202);
    int64_t session = (int64_t)json_number(r.body, "session", NULL);
    harness_http_free(&r);
    wait_state(&w.user, copy, "completed", 120);

    snprintf(log_path, sizeof(log_path),
             "%s/runs/model-%lld/session-%lld/train.log", w.s->data,
             (long long)copy, (long long)session);
    assert_true(harness_file_contains(log_path, "pretrained weights from"));
    assert_true(harness_file_contains(log_path, "tensors copied, 0 skipped"));

    double source_loss = first_epoch_loss(source);
    double copy_loss = first_epoch_loss(copy);
    print_message("first-epoch train/loss: source %.4f, copy %.4f\n",
                  source_loss, copy_loss);
    if (!(copy_loss < source_loss))
        fail_msg("first-epoch loss of the copy %.6f is not below the "
                 "source's %.6f",
                 copy_loss, source_loss);

    /* A model's own arguments cannot name a file as pretrained=. */
    call(&w.user, "POST", "/api/v1/models",
         "{\"name\":\"sneaky\",\"dataset\":1,\"architecture\":"
         "\"yolov8n-cls.yaml\",\"args\":{\"pretrained\":\"/etc/passwd\"}}",
         &r);
    expect_status(&r, 201);
    int64_t sneaky = (int64_t)json_number(r.body, "id", NULL);
    harness_http_free(&r);
    start_epochs(&w.user, sneaky, 1, &r);
    assert_error(&r, 400, "invalid_request");
    assert_non_null(strstr(r.body, "'pretrained'"));
    harness_http_free(&r);

    /* Another account cannot name the model, which it cannot see. */
    create_from(&w.other, "stolen", source, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);
}

static void bad_requests_rejected(void **state)
{
    static const struct {
        const char *target, *body, *code;
    } cases[] = {
        {"/api/v1/models", "{\"name\":\"x\",\"dataset\":1,\"architecture\":"
                           "\"../../etc/passwd\"}",
         "invalid_request"},
        {"/api/v1/models", "{\"name\":\"x\",\"dataset\":99,\"architecture\":"
                           "\"yolov8n-cls.yaml\"}",
         "not_found"},
        {"/api/v1/models", "{\"name\":\"x\",\"dataset\":\"one\","
                           "\"architecture\":\"yolov8n-cls.yaml\"}",
         "invalid_request"},
        {"/api/v1/models", "{\"name\":\"x\",\"dataset\":1,\"architecture\":"
                           "\"yolov8n-cls.yaml\",\"from_model\":\"1\"}",
         "invalid_request"},
        {"/api/v1/models", "{\"name\":\"x\",\"dataset\":1,\"architecture\":"
                           "\"yolov8n-cls.yaml\",\"from_model\":999}",
         "not_found"},
        {"/api/v1/models/1/train", "{\"mode\":\"forever\","
                                   "\"instance_type\":\"cpu\"}",
         "invalid_request"},
        {"/api/v1/models/1/train", "{\"mode\":\"epochs\",\"epochs\":2,"
                                   "\"instance_type\":\"tpu\"}",
         "invalid_request"},
    };
    struct http_reply r;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        call(&w.user, "POST", cases[i].target, cases[i].body, &r);
        if (r.status != 400 && r.status != 404)
            fail_msg("case %zu: expected 400 or 404, got %d: %s", i,
                     r.status, r.body);
        if (strstr(r.body, cases[i].code) == NULL)
            fail_msg("case %zu: expected code %s in %s", i, cases[i].code,
                     r.body);
        harness_http_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(free_plan_needs_pro),
        cmocka_unit_test(start_needs_five_dollars),
        cmocka_unit_test(epochs_charged_once_each),
        cmocka_unit_test(progress_replays_in_order),
        cmocka_unit_test(long_after_is_rejected),
        cmocka_unit_test(other_accounts_model_not_found),
        cmocka_unit_test(stop_then_resume),
        cmocka_unit_test(timed_price_quoted_exactly),
        cmocka_unit_test(starts_from_own_model),
        cmocka_unit_test(backend_killed_before_charge),
        cmocka_unit_test(bad_requests_rejected),
    };
    return cmocka_run_group_tests_name("training_api", tests, setup,
                                       teardown);
}
