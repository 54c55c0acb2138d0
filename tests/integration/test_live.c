/*
 * The live progress WebSocket, /api/v1/live, through the real backend,
 * gateway and train program on 127.0.0.1. The tests cover the handshake
 * checks (session cookie, Origin), message errors on a connection that
 * stays usable, numbers up to 2^53 sent back exactly, the codes of the
 * closing handshake, fragments and the subscription limit. They also
 * cover live events in seq order for several viewers with replay and
 * resume, a viewer that stops reading, the connection limit, and a
 * backend restart in the middle of a training.
 *
 * One backend and gateway serve all tests. The backend reads a
 * configuration file that names the sanitizer build of train and sells
 * one CPU instance type; the gateway pings every second (--live-ping-s).
 * Models train a generated data set of 3 classes of 12 images of 16x16
 * pixels with yolov8n-cls.yaml, imgsz 16 and batch 8: 5 batches an
 * epoch. Password hashing uses TRAINYARD_PWHASH=fast, which exists for
 * tests only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../gateway/live.h"
#include "engine/image.h"
#include "fsutil.h"
#include "harness.h"
#include "stack.h"
#include "wsclient.h"

#define ADMIN_EMAIL "admin@example.com"
#define ADMIN_PASSWORD "admin-pass-5521"
#define USER_EMAIL "viewer@example.com"
#define USER_PASSWORD "viewer-pass-7310"
#define OTHER_EMAIL "other@example.com"
#define OTHER_PASSWORD "other-pass-8846"

#define DATASET_ID 100       /* the user's data set */
#define OTHER_DATASET_ID 101 /* the other account's */
#define CLASSES 3
#define TRAIN_PER_CLASS 12
#define VAL_PER_CLASS 4
#define SIZE 16
/* Maximum wait for one step, generous for a loaded 2-core machine. */
#define STEP_TIMEOUT_MS 120000
/* The gateway's ping interval in these tests, in seconds. */
#define PING_OPTION "--live-ping-s=1"
#define TOO_SLOW_REASON "too slow; reconnect and resume from your last seq"

struct fixture {
    struct stack *s;
    char config[PATH_MAX + 32];
    struct browser admin, user, other;
    int64_t user_id, other_id;
    int models; /* models created, for unique names */
};

static struct fixture fx;

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static long long realtime_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000LL;
}

/* ---- the stack ----------------------------------------------------------- */

/* Class 0 is a horizontal ramp, class 1 a vertical one, class 2 a
 * checker pattern, each shifted a little per image. */
static void write_dataset(const char *root)
{
    static const char *const splits[] = {"train", "val"};
    static const int counts[] = {TRAIN_PER_CLASS, VAL_PER_CLASS};
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

/* Start the backend with the test configuration on port (0: any free
 * one). A restart on the same port retries while the port is taken. */
static void start_backend(int port)
{
    char prog[PATH_MAX], port_file[PATH_MAX + 32], listen[64];

    harness_program("backend", prog, sizeof(prog));
    snprintf(port_file, sizeof(port_file), "%s/backend.port", fx.s->dir);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    for (int attempt = 0; attempt < 20; attempt++) {
        unlink(port_file);
        char *argv[] = {prog,       "--config", fx.config, "--data",
                        fx.s->data, "--listen", listen,    "--port-file",
                        port_file,  NULL};
        fx.s->backend = harness_spawn(argv, fx.s->backend_log);
        fx.s->backend_port = harness_wait_port(port_file, fx.s->backend, 20000);
        if (fx.s->backend_port > 0)
            return;
        harness_stop(fx.s->backend, SIGKILL, 1000);
        usleep(250 * 1000);
    }
    fail_msg("the backend did not start on %s; log in %s", listen,
             fx.s->backend_log);
}

/* Send a request as b, with the CSRF token on state-changing ones. */
static void call(const struct browser *b, const char *method,
                 const char *target, const char *body, struct http_reply *r)
{
    char headers[1024];

    browser_headers(b, strcmp(method, "GET") != 0, headers, sizeof(headers));
    stack_request(fx.s, method, target, headers, body, r);
}

static void expect_status(const struct http_reply *r, int status,
                          const char *what)
{
    if (r->status != status)
        fail_msg("%s: expected HTTP %d, got %d: %s", what, status, r->status,
                 r->body);
}

static void admin_post(const char *target, const char *body, int status)
{
    struct http_reply r;

    call(&fx.admin, "POST", target, body, &r);
    expect_status(&r, status, target);
    harness_http_free(&r);
}

static int setup(void **state)
{
    char train[PATH_MAX], train_abs[PATH_MAX], path[PATH_MAX + 64];
    char target[96], sql[512];
    struct error err = {0};
    FILE *f;

    (void)state;
    setenv("TRAINYARD_PWHASH", "fast", 1);
    harness_program("train", train, sizeof(train));
    if (realpath(train, train_abs) == NULL)
        fail_msg("train program '%s' not found; build it with make or set "
                 "TRAINYARD_BIN",
                 train);

    fx.s = calloc(1, sizeof(*fx.s));
    assert_non_null(fx.s);
    harness_tmpdir(fx.s->dir, sizeof(fx.s->dir));
    snprintf(fx.s->data, sizeof(fx.s->data), "%s/data", fx.s->dir);
    snprintf(fx.s->ui, sizeof(fx.s->ui), "%s/ui", fx.s->dir);
    snprintf(fx.s->backend_log, sizeof(fx.s->backend_log), "%s/backend.log",
             fx.s->dir);
    snprintf(fx.s->gateway_log, sizeof(fx.s->gateway_log), "%s/gateway.log",
             fx.s->dir);
    assert_int_equal(fs_mkdir_p(fx.s->ui, 0755, &err), 0);

    snprintf(fx.config, sizeof(fx.config), "%s/backend.yaml", fx.s->dir);
    f = fopen(fx.config, "w");
    assert_non_null(f);
    fprintf(f,
            "train: %s\n"
            "instance_types:\n"
            "  - name: cpu\n"
            "    device: cpu\n"
            "    price_per_hour: \"0.50\"\n"
            "    capacity: 2\n",
            train_abs);
    fclose(f);

    start_backend(0);
    snprintf(path, sizeof(path), "%s/create-admin.log", fx.s->dir);
    assert_int_equal(
        stack_create_admin(fx.s, ADMIN_EMAIL, NULL, ADMIN_PASSWORD, path), 0);
    stack_start_gateway(fx.s, PING_OPTION);

    assert_int_equal(stack_signin(fx.s, ADMIN_EMAIL, ADMIN_PASSWORD, &fx.admin),
                     200);
    fx.user_id =
        stack_create_user(fx.s, &fx.admin, USER_EMAIL, USER_PASSWORD, &fx.user);
    fx.other_id = stack_create_user(fx.s, &fx.admin, OTHER_EMAIL,
                                    OTHER_PASSWORD, &fx.other);
    snprintf(target, sizeof(target), "/api/v1/admin/accounts/%lld/plan",
             (long long)fx.user_id);
    admin_post(target, "{\"plan\":\"pro\"}", 200);
    snprintf(target, sizeof(target), "/api/v1/admin/accounts/%lld/credits",
             (long long)fx.user_id);
    admin_post(target, "{\"amount\":50000000,\"description\":\"live test\"}",
               201);

    snprintf(path, sizeof(path), "%s/sets/tiny", fx.s->data);
    write_dataset(path);
    snprintf(sql, sizeof(sql),
             "INSERT INTO datasets (id, account_id, name, task, path, "
             "images, created_at) VALUES (%d, %lld, 'tiny', 'classify', "
             "'sets/tiny', %d, 1), (%d, %lld, 'tiny', 'classify', "
             "'sets/tiny', %d, 1)",
             DATASET_ID, (long long)fx.user_id,
             CLASSES * (TRAIN_PER_CLASS + VAL_PER_CLASS), OTHER_DATASET_ID,
             (long long)fx.other_id,
             CLASSES * (TRAIN_PER_CLASS + VAL_PER_CLASS));
    stack_database_exec(fx.s, sql);
    return 0;
}

static int teardown(void **state)
{
    static const char *const secrets[] = {ADMIN_PASSWORD, USER_PASSWORD,
                                          OTHER_PASSWORD};

    (void)state;
    return stack_stop(fx.s, secrets, sizeof(secrets) / sizeof(secrets[0]));
}

/* ---- REST steps ---------------------------------------------------------- */

static int64_t create_model(const struct browser *b)
{
    struct http_reply r;
    char body[256];
    int64_t id;

    snprintf(body, sizeof(body),
             "{\"name\":\"live-%d\",\"dataset\":%d,\"architecture\":"
             "\"yolov8n-cls.yaml\",\"args\":{\"imgsz\":16,\"batch\":8}}",
             ++fx.models, b == &fx.user ? DATASET_ID : OTHER_DATASET_ID);
    call(b, "POST", "/api/v1/models", body, &r);
    expect_status(&r, 201, "POST /api/v1/models");
    id = (int64_t)json_number(r.body, "id", NULL);
    harness_http_free(&r);
    assert_true(id > 0);
    return id;
}

/* Start epochs training, or with epochs 0 timed training of duration_ms,
 * paid from the balance. */
static void start_training(int64_t model, int epochs, int duration_ms)
{
    struct http_reply r;
    char target[64], body[160];

    snprintf(target, sizeof(target), "/api/v1/models/%lld/train",
             (long long)model);
    if (epochs > 0)
        snprintf(body, sizeof(body),
                 "{\"mode\":\"epochs\",\"epochs\":%d,"
                 "\"instance_type\":\"cpu\"}",
                 epochs);
    else
        snprintf(body, sizeof(body),
                 "{\"mode\":\"timed\",\"duration_ms\":%d,"
                 "\"instance_type\":\"cpu\",\"payment\":\"balance\"}",
                 duration_ms);
    call(&fx.user, "POST", target, body, &r);
    expect_status(&r, 202, target);
    harness_http_free(&r);
}

/* GET the model until its session is in state, or in also when that is
 * not NULL. */
static void wait_state(int64_t model, const char *state, const char *also)
{
    char target[64], got[32] = "";
    long deadline = now_ms() + STEP_TIMEOUT_MS;

    snprintf(target, sizeof(target), "/api/v1/models/%lld", (long long)model);
    while (now_ms() < deadline) {
        struct http_reply r;
        call(&fx.user, "GET", target, NULL, &r);
        expect_status(&r, 200, target);
        json_text(r.body, "session", "state", got, sizeof(got));
        harness_http_free(&r);
        if (strcmp(got, state) == 0 || (also && strcmp(got, also) == 0))
            return;
        usleep(100 * 1000);
    }
    fail_msg("model %lld: session state is '%s' after %d ms, expected '%s'",
             (long long)model, got, STEP_TIMEOUT_MS, state);
}

/* The last stored seq of model, read through REST page by page; also
 * checks that the store numbers its events 1..N. */
static int64_t last_stored_seq(int64_t model)
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
        call(&fx.user, "GET", target, NULL, &r);
        expect_status(&r, 200, target);
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

/* ---- the WebSocket ------------------------------------------------------- */

/* Open /api/v1/live as b (NULL: no cookie) from origin (NULL: the
 * gateway's own). Returns the status; body gets a refusal's body. */
static int open_live(struct wsclient *ws, const struct browser *b,
                     const char *origin, int rcvbuf, char *body,
                     size_t body_len)
{
    char headers[1024], own[64];

    snprintf(own, sizeof(own), "http://127.0.0.1:%d", fx.s->gateway_port);
    snprintf(headers, sizeof(headers), "Origin: %s\r\n%s%s%s",
             origin ? origin : own, b ? "Cookie: " : "", b ? b->cookie : "",
             b ? "\r\n" : "");
    return wsclient_connect(ws, fx.s->gateway_port, LIVE_PATH, headers, rcvbuf,
                            body, body_len);
}

static void open_viewer(struct wsclient *ws, const struct browser *b,
                        int rcvbuf)
{
    char body[1024];
    int status = open_live(ws, b, NULL, rcvbuf, body, sizeof(body));

    if (status != 101)
        fail_msg("live handshake: expected 101, got %d: %s", status, body);
}

static void send_text(struct wsclient *ws, const char *text)
{
    assert_int_equal(wsclient_send_text(ws, text), 0);
}

/* The next message as JSON; fails the test on timeout or close. */
static cJSON *next_message(struct wsclient *ws, int timeout_ms)
{
    char *text = wsclient_read_text(ws, timeout_ms);
    cJSON *msg;

    if (text == NULL)
        fail_msg("no message within %d ms (connection %s, close code %d "
                 "'%s')",
                 timeout_ms, ws->closed ? "closed" : "open", ws->close_code,
                 ws->close_reason);
    msg = cJSON_Parse(text);
    if (msg == NULL)
        fail_msg("the gateway sent invalid JSON: %s", text);
    free(text);
    return msg;
}

static const char *text_field(const cJSON *msg, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(msg, name);

    return cJSON_IsString(v) ? v->valuestring : "";
}

static int64_t number_field(const cJSON *msg, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(msg, name);

    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* The next message must have this type; returns it for more checks. */
static cJSON *expect_type(struct wsclient *ws, const char *type)
{
    cJSON *msg = next_message(ws, STEP_TIMEOUT_MS);
    char *text;

    if (strcmp(text_field(msg, "type"), type) != 0) {
        text = cJSON_PrintUnformatted(msg);
        fail_msg("expected a '%s' message, got %s", type, text);
    }
    return msg;
}

/* The next message must be an error with code (and model, when > 0). */
static void expect_error(struct wsclient *ws, const char *code, int64_t model)
{
    cJSON *msg = expect_type(ws, "error");

    assert_string_equal(text_field(msg, "code"), code);
    assert_true(strlen(text_field(msg, "message")) > 10);
    if (model > 0)
        assert_int_equal(number_field(msg, "model"), model);
    cJSON_Delete(msg);
}

static void expect_pong(struct wsclient *ws)
{
    send_text(ws, "{\"type\":\"ping\"}");
    cJSON_Delete(expect_type(ws, "pong"));
}

static void subscribe(struct wsclient *ws, int64_t model, int64_t after)
{
    char text[128];

    snprintf(text, sizeof(text),
             "{\"type\":\"subscribe\",\"model\":%lld,\"after\":%lld}",
             (long long)model, (long long)after);
    send_text(ws, text);
}

/* What one viewer received of one model's events. */
struct stream {
    const char *name; /* for messages */
    int64_t model;
    int64_t first_seq; /* seq of the first event received */
    int64_t last_seq;  /* seq of the last event received */
    int events;
    int subscribed;               /* "subscribed" arrived */
    int64_t subscribed_seq;       /* its last_seq */
    int events_before_subscribed; /* events received before it */
    int pongs;
    int kinds_start, kinds_batch, kinds_epoch, kinds_done;
    long long done_created_at;  /* the done event's created_at */
    long long done_received_at; /* Unix ms when it arrived */
};

static void stream_init(struct stream *st, const char *name, int64_t model,
                        int64_t after)
{
    memset(st, 0, sizeof(*st));
    st->name = name;
    st->model = model;
    st->last_seq = after;
}

/* Handle one message of the stream; every event must be last_seq + 1. */
static void stream_take(struct stream *st, const cJSON *msg)
{
    const char *type = text_field(msg, "type");

    if (strcmp(type, "event") == 0) {
        int64_t seq = number_field(msg, "seq");
        const char *kind = text_field(msg, "kind");

        assert_int_equal(number_field(msg, "model"), st->model);
        if (seq != st->last_seq + 1)
            fail_msg("viewer %s: event seq %lld after seq %lld; expected "
                     "%lld, with no gap and no duplicate",
                     st->name, (long long)seq, (long long)st->last_seq,
                     (long long)st->last_seq + 1);
        assert_true(number_field(msg, "session") > 0);
        assert_true(number_field(msg, "created_at") > 0);
        assert_non_null(cJSON_GetObjectItemCaseSensitive(msg, "payload"));
        if (st->events == 0)
            st->first_seq = seq;
        st->last_seq = seq;
        st->events++;
        if (!st->subscribed)
            st->events_before_subscribed++;
        st->kinds_start += strcmp(kind, "start") == 0;
        st->kinds_batch += strcmp(kind, "batch") == 0;
        st->kinds_epoch += strcmp(kind, "epoch") == 0;
        if (strcmp(kind, "done") == 0) {
            st->kinds_done++;
            st->done_created_at = number_field(msg, "created_at");
            st->done_received_at = realtime_ms();
        }
    } else if (strcmp(type, "subscribed") == 0) {
        assert_int_equal(number_field(msg, "model"), st->model);
        assert_false(st->subscribed);
        st->subscribed = 1;
        st->subscribed_seq = number_field(msg, "last_seq");
        assert_int_equal(st->subscribed_seq, st->last_seq);
    } else if (strcmp(type, "pong") == 0) {
        st->pongs++;
    } else {
        char *text = cJSON_PrintUnformatted(msg);
        fail_msg("viewer %s: unexpected message %s", st->name, text);
    }
}

/* Events of kind start, batch, epoch or done that st received. */
static int kind_count(const struct stream *st, const char *kind)
{
    if (strcmp(kind, "start") == 0)
        return st->kinds_start;
    if (strcmp(kind, "batch") == 0)
        return st->kinds_batch;
    if (strcmp(kind, "epoch") == 0)
        return st->kinds_epoch;
    if (strcmp(kind, "done") == 0)
        return st->kinds_done;
    fail_msg("kind_count: kind '%s' is not counted", kind);
    return 0;
}

/* Read until the stream's last seq reaches until_seq (when > 0), an
 * event of kind until_kind arrived (when not NULL), or pongs reach
 * until_pongs (when > 0). */
static void read_stream(struct wsclient *ws, struct stream *st,
                        int64_t until_seq, const char *until_kind,
                        int until_pongs)
{
    long deadline = now_ms() + STEP_TIMEOUT_MS;

    for (;;) {
        if (until_seq > 0 && st->last_seq >= until_seq)
            return;
        if (until_kind != NULL && kind_count(st, until_kind) > 0)
            return;
        if (until_pongs > 0 && st->pongs >= until_pongs)
            return;
        long left = deadline - now_ms();
        if (left <= 0)
            fail_msg("viewer %s: waited %d ms at seq %lld for seq %lld, "
                     "kind %s or %d pongs",
                     st->name, STEP_TIMEOUT_MS, (long long)st->last_seq,
                     (long long)until_seq, until_kind ? until_kind : "-",
                     until_pongs);
        cJSON *msg = next_message(ws, (int)left);
        stream_take(st, msg);
        cJSON_Delete(msg);
    }
}

/* Read for quiet_ms and fail on any message but pongs. */
static void expect_silence(struct wsclient *ws, int quiet_ms)
{
    long deadline = now_ms() + quiet_ms;

    for (long left = quiet_ms; left > 0; left = deadline - now_ms()) {
        char *text = wsclient_read_text(ws, (int)left);
        if (text == NULL) {
            assert_false(ws->closed);
            return;
        }
        if (strstr(text, "\"pong\"") == NULL)
            fail_msg("expected no message, got %s", text);
        free(text);
    }
}

/* ---- tests --------------------------------------------------------------- */

static void handshake_needs_cookie_and_origin(void **state)
{
    struct wsclient ws;
    struct browser forged;
    struct http_reply r;
    char body[1024], other_port[64];

    (void)state;
    assert_int_equal(open_live(&ws, NULL, NULL, 0, body, sizeof(body)), 401);
    assert_non_null(strstr(body, "\"unauthorized\""));

    memset(&forged, 0, sizeof(forged));
    snprintf(forged.cookie, sizeof(forged.cookie),
             "ty_session=00112233445566778899aabbccddeeff"
             "00112233445566778899aabbccddeeff");
    assert_int_equal(open_live(&ws, &forged, NULL, 0, body, sizeof(body)), 401);
    snprintf(forged.cookie, sizeof(forged.cookie), "ty_session=../../etc");
    assert_int_equal(open_live(&ws, &forged, NULL, 0, body, sizeof(body)), 401);

    /* A valid session from another site's page, or from no page. */
    assert_int_equal(
        open_live(&ws, &fx.user, "http://evil.example", 0, body, sizeof(body)),
        403);
    assert_non_null(strstr(body, "\"forbidden\""));
    snprintf(other_port, sizeof(other_port), "http://127.0.0.1:%d",
             fx.s->gateway_port + 1);
    assert_int_equal(
        open_live(&ws, &fx.user, other_port, 0, body, sizeof(body)), 403);
    assert_int_equal(open_live(&ws, &fx.user, "null", 0, body, sizeof(body)),
                     403);
    char headers[256];
    snprintf(headers, sizeof(headers), "Cookie: %s\r\n", fx.user.cookie);
    assert_int_equal(wsclient_connect(&ws, fx.s->gateway_port, LIVE_PATH,
                                      headers, 0, body, sizeof(body)),
                     403);
    assert_true(harness_file_contains(fx.s->gateway_log,
                                      "GET /api/v1/live -> 403 forbidden"));

    /* The page may be served over TLS by a proxy in front. */
    char https[64];
    snprintf(https, sizeof(https), "https://127.0.0.1:%d", fx.s->gateway_port);
    assert_int_equal(open_live(&ws, &fx.user, https, 0, body, sizeof(body)),
                     101);
    expect_pong(&ws);
    wsclient_close(&ws);

    /* Without the upgrade, the path is no REST endpoint. */
    stack_request(fx.s, "GET", LIVE_PATH, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    harness_http_free(&r);
}

/* The TCP_NODELAY flag of the gateway's end of ws's connection, read
 * through a copy of the gateway's descriptor (pidfd_getfd). Returns 0 or
 * 1, -1 when the socket was not found, or -2 when this process may not
 * copy the gateway's descriptors. */
static int gateway_nodelay(const struct wsclient *ws)
{
    struct sockaddr_storage mine, peer;
    socklen_t len = sizeof(mine);
    char path[64];
    struct dirent *entry;
    DIR *dir;
    int pidfd, found = -1;

    assert_int_equal(getsockname(ws->fd, (struct sockaddr *)&mine, &len), 0);
    pidfd = pidfd_open(fx.s->gateway, 0);
    if (pidfd < 0)
        fail_msg("pidfd_open of the gateway failed: %s", strerror(errno));
    int probe = pidfd_getfd(pidfd, 0, 0);
    if (probe >= 0)
        close(probe);
    else if (errno == EPERM || errno == ENOSYS || errno == EACCES) {
        printf("SKIP live_socket_sets_nodelay: pidfd_getfd on the gateway "
               "failed (%s); it needs ptrace access to a child process\n",
               strerror(errno));
        close(pidfd);
        return -2;
    }
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)fx.s->gateway);
    dir = opendir(path);
    assert_non_null(dir);
    while (found < 0 && (entry = readdir(dir)) != NULL) {
        int copy, on = 0;
        socklen_t peer_len = sizeof(peer), on_len = sizeof(on);

        if (entry->d_name[0] == '.')
            continue;
        copy = pidfd_getfd(pidfd, atoi(entry->d_name), 0);
        if (copy < 0)
            continue;
        if (getpeername(copy, (struct sockaddr *)&peer, &peer_len) == 0 &&
            peer_len == len && memcmp(&peer, &mine, len) == 0 &&
            getsockopt(copy, IPPROTO_TCP, TCP_NODELAY, &on, &on_len) == 0)
            found = on != 0;
        close(copy);
    }
    closedir(dir);
    close(pidfd);
    return found;
}

/* Regression: the live sockets used Nagle's algorithm, so an event that
 * followed another within the browser's delayed-ACK time (40 ms on
 * Linux) waited for that ACK. */
static void live_socket_sets_nodelay(void **state)
{
    struct wsclient ws;

    (void)state;
    open_viewer(&ws, &fx.user, 0);
    expect_pong(&ws); /* the gateway has set the connection up */
    int nodelay = gateway_nodelay(&ws);
    wsclient_close(&ws);
    if (nodelay == -2)
        skip();
    assert_int_equal(nodelay, 1);
}

static void bad_messages_keep_connection(void **state)
{
    struct wsclient ws;
    struct wsclient_frame f;
    char *big;
    int64_t other_model;

    (void)state;
    other_model = create_model(&fx.other);
    open_viewer(&ws, &fx.user, 0);
    expect_pong(&ws);

    send_text(&ws, "{\"type\": \"subscribe\", ");
    expect_error(&ws, "invalid_json", 0);
    send_text(&ws, "[1, 2]");
    expect_error(&ws, "invalid_request", 0);
    send_text(&ws, "{\"type\": 7}");
    expect_error(&ws, "invalid_request", 0);
    send_text(&ws, "{\"type\": \"watch\"}");
    expect_error(&ws, "unknown_type", 0);
    send_text(&ws, "{\"type\": \"subscribe\"}");
    expect_error(&ws, "invalid_request", 0);
    send_text(&ws, "{\"type\": \"subscribe\", \"model\": \"7\"}");
    expect_error(&ws, "invalid_request", 0);
    send_text(&ws, "{\"type\": \"subscribe\", \"model\": 1.5}");
    expect_error(&ws, "invalid_request", 0);
    send_text(&ws, "{\"type\": \"subscribe\", \"model\": 0}");
    expect_error(&ws, "invalid_request", 0);
    send_text(&ws, "{\"type\": \"subscribe\", \"model\": 3, \"after\": -1}");
    expect_error(&ws, "invalid_request", 3);
    send_text(&ws, "{\"type\": \"unsubscribe\", \"model\": [3]}");
    expect_error(&ws, "invalid_request", 0);
    expect_pong(&ws);

    /* Models of another account read as missing ones. */
    subscribe(&ws, other_model, 0);
    expect_error(&ws, "not_found", other_model);
    subscribe(&ws, 999999, 0);
    expect_error(&ws, "not_found", 999999);
    send_text(&ws, "{\"type\": \"unsubscribe\", \"model\": 999999}");
    expect_error(&ws, "not_found", 999999);

    /* Over LIVE_MESSAGE_MAX, in one frame and in fragments. */
    big = malloc(LIVE_MESSAGE_MAX + 2048);
    assert_non_null(big);
    memset(big, ' ', LIVE_MESSAGE_MAX + 2047);
    memcpy(big, "{\"type\":\"ping\",\"pad\":\"", 22);
    memcpy(big + LIVE_MESSAGE_MAX + 2040, "\"}", 2);
    big[LIVE_MESSAGE_MAX + 2047] = '\0';
    send_text(&ws, big);
    expect_error(&ws, "payload_too_large", 0);
    size_t half = (LIVE_MESSAGE_MAX + 2047) / 2;
    assert_int_equal(wsclient_send_frame(&ws, WSCLIENT_TEXT, 0, big, half), 0);
    assert_int_equal(wsclient_send_frame(&ws, WSCLIENT_CONTINUATION, 1,
                                         big + half,
                                         LIVE_MESSAGE_MAX + 2047 - half),
                     0);
    expect_error(&ws, "payload_too_large", 0);
    free(big);
    expect_pong(&ws);

    /* A message in three fragments, with a ping frame between two. */
    assert_int_equal(wsclient_send_frame(&ws, WSCLIENT_TEXT, 0, "{\"type\"", 7),
                     0);
    assert_int_equal(
        wsclient_send_frame(&ws, WSCLIENT_CONTINUATION, 0, ":\"pi", 4), 0);
    assert_int_equal(wsclient_send_frame(&ws, WSCLIENT_PING, 1, "abc", 3), 0);
    assert_int_equal(
        wsclient_send_frame(&ws, WSCLIENT_CONTINUATION, 1, "ng\"}", 4), 0);
    do {
        assert_int_equal(wsclient_read_frame(&ws, STEP_TIMEOUT_MS, &f), 1);
        if (f.opcode == WSCLIENT_PING)
            free(f.data);
    } while (f.opcode == WSCLIENT_PING);
    assert_int_equal(f.opcode, WSCLIENT_PONG);
    assert_memory_equal(f.data, "abc", 3);
    free(f.data);
    cJSON_Delete(expect_type(&ws, "pong"));

    assert_int_equal(wsclient_send_frame(&ws, WSCLIENT_BINARY, 1, "{}", 2), 0);
    expect_error(&ws, "invalid_request", 0);
    expect_pong(&ws);

    /* The gateway pings every second (--live-ping-s=1), and wsclient
     * counts the pings and replies with pongs. */
    expect_silence(&ws, 1500);
    assert_true(ws.pings >= 1);
    wsclient_close(&ws);
}

/* Regression: cJSON prints whole numbers from 2^52 to 2^53 with 15
 * significant digits, so the gateway sent model 2^53 - 1 as
 * 9.00719925474099e+15 and the last_seq of a subscription after 2^53 as
 * 9007199254740990. */
static void large_numbers_sent_exactly(void **state)
{
    const int64_t top = 9007199254740992LL; /* 2^53 */
    struct wsclient ws;
    int64_t model;
    cJSON *msg;

    (void)state;
    model = create_model(&fx.user);
    open_viewer(&ws, &fx.user, 0);
    subscribe(&ws, model, top);
    msg = expect_type(&ws, "subscribed");
    assert_int_equal(number_field(msg, "model"), model);
    assert_int_equal(number_field(msg, "last_seq"), top);
    cJSON_Delete(msg);

    subscribe(&ws, top - 1, 0);
    expect_error(&ws, "not_found", top - 1);
    send_text(&ws, "{\"type\":\"unsubscribe\",\"model\":9007199254740991}");
    expect_error(&ws, "not_found", top - 1);
    wsclient_close(&ws);
}

/* Send a close frame of payload and return the status code of the
 * gateway's reply. */
static int close_reply(const void *payload, size_t len)
{
    struct wsclient ws;
    long deadline = now_ms() + STEP_TIMEOUT_MS;
    int code;

    open_viewer(&ws, &fx.user, 0);
    expect_pong(&ws);
    assert_int_equal(wsclient_send_frame(&ws, WSCLIENT_CLOSE, 1, payload, len),
                     0);
    while (!ws.closed && now_ms() < deadline)
        free(wsclient_read_text(&ws, (int)(deadline - now_ms())));
    assert_true(ws.closed);
    code = ws.close_code;
    wsclient_close(&ws);
    return code;
}

/* Regression: the gateway echoed any close code from 1000 to 4999 but
 * 1004 to 1006 and 1015, so a code such as 2536, which no endpoint may
 * send, came back to the browser. */
static void close_code_checked(void **state)
{
    static const char with_reason[] = {0x0f, (char)0xa0, 'b', 'y', 'e'};

    (void)state;
    assert_int_equal(close_reply("\x03\xe8", 2), 1000);
    assert_int_equal(close_reply(with_reason, sizeof(with_reason)), 4000);
    assert_int_equal(close_reply("\x03\xf1", 2), 1009);
    assert_int_equal(close_reply("", 0), 1000);
    assert_int_equal(close_reply("\x09\xe8", 2), 1002); /* 2536 */
    assert_int_equal(close_reply("\x03\xf7", 2), 1002); /* 1015 */
    assert_int_equal(close_reply("\x03\xed", 2), 1002); /* 1005 */
    assert_int_equal(close_reply("\x0b\xb7", 2), 1002); /* 2999 */
    assert_int_equal(close_reply("\x13\x88", 2), 1002); /* 5000 */
    assert_int_equal(close_reply("\x03", 1), 1002);
}

static void subscription_limit_and_unsubscribe(void **state)
{
    int64_t models[LIVE_SUBSCRIPTIONS_MAX + 1];
    struct wsclient ws;
    cJSON *msg;

    (void)state;
    for (int i = 0; i <= LIVE_SUBSCRIPTIONS_MAX; i++)
        models[i] = create_model(&fx.user);
    open_viewer(&ws, &fx.user, 0);
    for (int i = 0; i < LIVE_SUBSCRIPTIONS_MAX; i++)
        subscribe(&ws, models[i], 0);
    for (int i = 0; i < LIVE_SUBSCRIPTIONS_MAX; i++) {
        msg = expect_type(&ws, "subscribed");
        assert_int_equal(number_field(msg, "model"), models[i]);
        assert_int_equal(number_field(msg, "last_seq"), 0);
        cJSON_Delete(msg);
    }
    subscribe(&ws, models[0], 0);
    expect_error(&ws, "conflict", models[0]);
    subscribe(&ws, models[LIVE_SUBSCRIPTIONS_MAX], 0);
    expect_error(&ws, "limit_exceeded", models[LIVE_SUBSCRIPTIONS_MAX]);

    send_text(&ws, "{\"type\":\"unsubscribe\",\"model\":");
    expect_error(&ws, "invalid_json", 0);
    char text[96];
    snprintf(text, sizeof(text), "{\"type\":\"unsubscribe\",\"model\":%lld}",
             (long long)models[3]);
    send_text(&ws, text);
    msg = expect_type(&ws, "unsubscribed");
    assert_int_equal(number_field(msg, "model"), models[3]);
    cJSON_Delete(msg);
    subscribe(&ws, models[LIVE_SUBSCRIPTIONS_MAX], 0);
    msg = expect_type(&ws, "subscribed");
    assert_int_equal(number_field(msg, "model"),
                     models[LIVE_SUBSCRIPTIONS_MAX]);
    cJSON_Delete(msg);
    wsclient_close(&ws);
}

static void training_fans_out_in_order(void **state)
{
    struct wsclient a, late, resumed, stalled, stranger;
    struct stream sa, slate, sresumed, sstalled;
    long long latency;
    int64_t model, last, half;
    cJSON *msg;

    (void)state;
    model = create_model(&fx.user);

    /* Viewer a from the start, a viewer that never reads (small receive
     * buffer), and another account's viewer, which gets not_found. */
    open_viewer(&a, &fx.user, 0);
    stream_init(&sa, "a", model, 0);
    subscribe(&a, model, 0);
    msg = expect_type(&a, "subscribed");
    stream_take(&sa, msg);
    cJSON_Delete(msg);
    assert_int_equal(sa.subscribed_seq, 0);
    open_viewer(&stalled, &fx.user, 4096);
    stream_init(&sstalled, "stalled", model, 0);
    subscribe(&stalled, model, 0);
    open_viewer(&stranger, &fx.other, 0);
    subscribe(&stranger, model, 0);
    expect_error(&stranger, "not_found", model);

    start_training(model, 3, 0);
    read_stream(&a, &sa, 0, "epoch", 0);

    /* A late viewer gets the stored events, then the live ones. */
    open_viewer(&late, &fx.user, 0);
    stream_init(&slate, "late", model, 0);
    subscribe(&late, model, 0);

    read_stream(&a, &sa, 0, "done", 0);
    latency = sa.done_received_at - sa.done_created_at;
    printf("viewer a received 'done' %lld ms after the backend stored it, "
           "while a viewer did not read\n",
           latency);
    assert_true(latency < 5000);

    wait_state(model, "completed", NULL);
    last = last_stored_seq(model);
    read_stream(&a, &sa, last, NULL, 0);
    read_stream(&late, &slate, last, NULL, 0);
    assert_int_equal(sa.first_seq, 1);
    assert_int_equal(sa.last_seq, last);
    assert_int_equal(sa.events, last);
    assert_int_equal(sa.kinds_start, 1);
    assert_true(sa.kinds_batch >= 3);
    assert_int_equal(sa.kinds_epoch, 3);
    assert_int_equal(sa.kinds_done, 1);
    assert_int_equal(slate.first_seq, 1);
    assert_int_equal(slate.events, last);
    assert_true(slate.subscribed);
    assert_true(slate.events_before_subscribed >= 1);
    expect_pong(&a);
    expect_pong(&late);

    /* Resuming after a seq gets exactly the later events. */
    half = last / 2;
    open_viewer(&resumed, &fx.user, 0);
    stream_init(&sresumed, "resumed", model, half);
    subscribe(&resumed, model, half);
    read_stream(&resumed, &sresumed, last, NULL, 0);
    msg = expect_type(&resumed, "subscribed");
    assert_int_equal(number_field(msg, "last_seq"), last);
    cJSON_Delete(msg);
    assert_int_equal(sresumed.first_seq, half + 1);
    assert_int_equal(sresumed.events, last - half);
    expect_silence(&resumed, 300);

    /* The other account saw nothing of the training. */
    expect_silence(&stranger, 300);

    /* The stalled viewer reads now: everything, in order, unless the
     * gateway closed it as too slow. */
    for (;;) {
        char *text = wsclient_read_text(&stalled, 5000);
        if (text == NULL)
            break;
        msg = cJSON_Parse(text);
        free(text);
        assert_non_null(msg);
        stream_take(&sstalled, msg);
        cJSON_Delete(msg);
        if (sstalled.last_seq == last)
            break;
    }
    if (stalled.closed)
        assert_int_equal(stalled.close_code, 1008);
    else
        assert_int_equal(sstalled.last_seq, last);

    wsclient_close(&a);
    wsclient_close(&late);
    wsclient_close(&resumed);
    wsclient_close(&stalled);
    wsclient_close(&stranger);
}

static void slow_reader_closed_too_slow(void **state)
{
    struct wsclient slow, quick;
    unsigned char payload[125];
    int flooded = 0, closed_as_slow = 0;
    long worst = 0;

    (void)state;
    open_viewer(&slow, &fx.user, 4096);
    open_viewer(&quick, &fx.user, 0);
    memset(payload, 'p', sizeof(payload));

    /* Each ping frame makes the gateway queue a pong that the slow
     * viewer never reads; the quick viewer meanwhile gets its pongs. */
    while (!closed_as_slow && flooded < 200000) {
        for (int i = 0; i < 1000; i++)
            assert_int_equal(wsclient_send_frame(&slow, WSCLIENT_PING, 1,
                                                 payload, sizeof(payload)),
                             0);
        flooded += 1000;
        long started = now_ms();
        expect_pong(&quick);
        if (now_ms() - started > worst)
            worst = now_ms() - started;
        closed_as_slow =
            harness_file_contains(fx.s->gateway_log, "closing it as too slow");
    }
    printf("the gateway closed the slow viewer after %d pings; the quick "
           "viewer's slowest pong took %ld ms\n",
           flooded, worst);
    assert_true(closed_as_slow);
    assert_true(worst < 5000);

    /* Reading now, the slow viewer finds its pongs, then the close frame
     * with the reason. */
    for (;;) {
        struct wsclient_frame f;
        int rc = wsclient_read_frame(&slow, 10000, &f);
        if (rc != 1)
            fail_msg("the slow viewer's connection ended without a close "
                     "frame (read returned %d)",
                     rc);
        if (f.opcode == WSCLIENT_CLOSE) {
            assert_true(f.len >= 2);
            assert_int_equal(f.data[0] << 8 | f.data[1], 1008);
            assert_int_equal(f.len - 2, strlen(TOO_SLOW_REASON));
            assert_memory_equal(f.data + 2, TOO_SLOW_REASON, f.len - 2);
            wsclient_send_frame(&slow, WSCLIENT_CLOSE, 1, f.data, 2);
            free(f.data);
            break;
        }
        free(f.data);
    }
    expect_pong(&quick);
    wsclient_close(&slow);
    wsclient_close(&quick);
}

static void backend_restart_loses_nothing(void **state)
{
    struct wsclient a;
    struct stream sa;
    struct http_reply r;
    char target[64];
    int64_t model, last;
    int port, status;

    (void)state;
    model = create_model(&fx.user);
    open_viewer(&a, &fx.user, 0);
    stream_init(&sa, "a", model, 0);
    subscribe(&a, model, 0);
    /* Timed training lasts as long on a fast machine as on a slow one. */
    start_training(model, 0, 12000);
    read_stream(&a, &sa, 0, "batch", 0);

    /* The backend stops its trainer with a checkpoint and marks the
     * session failed. The events it stores meanwhile reach the viewer
     * only after the restart, through the replay. */
    port = fx.s->backend_port;
    status = harness_stop(fx.s->backend, SIGTERM, 60000);
    fx.s->backend = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    send_text(&a, "{\"type\":\"ping\"}");
    read_stream(&a, &sa, 0, NULL, sa.pongs + 1);
    assert_false(a.closed);

    start_backend(port);
    for (int i = 0; i < 200; i++) {
        stack_request(fx.s, "GET", "/api/v1/health", NULL, NULL, &r);
        status = r.status;
        harness_http_free(&r);
        if (status == 200)
            break;
        usleep(50 * 1000);
    }
    assert_int_equal(status, 200);
    wait_state(model, "failed", NULL);
    snprintf(target, sizeof(target), "/api/v1/models/%lld/resume",
             (long long)model);
    call(&fx.user, "POST", target, NULL, &r);
    expect_status(&r, 202, target);
    harness_http_free(&r);

    /* The training expires at its time limit, or completes earlier when
     * its patience (epochs without improvement) runs out. */
    read_stream(&a, &sa, 0, "done", 0);
    wait_state(model, "completed", "expired");
    last = last_stored_seq(model);
    read_stream(&a, &sa, last, NULL, 0);
    assert_int_equal(sa.first_seq, 1);
    assert_int_equal(sa.events, last);
    assert_int_equal(sa.kinds_start, 2);
    assert_true(harness_file_contains(fx.s->gateway_log,
                                      "replaying 1 live subscriptions"));
    expect_pong(&a);
    wsclient_close(&a);
}

static void connection_limit_503(void **state)
{
    struct wsclient first, second;
    char body[1024];
    int status = 0;

    (void)state;
    stack_restart_gateway(fx.s, "--live-connections=1");
    open_viewer(&first, &fx.user, 0);
    /* The gateway counts a connection once it is set up, after the
     * handshake; the pong shows that it is. */
    expect_pong(&first);
    assert_int_equal(open_live(&second, &fx.user, NULL, 0, body, sizeof(body)),
                     503);
    assert_non_null(strstr(body, "\"too_many_connections\""));
    expect_pong(&first);

    /* A new connection is accepted once the first one has closed. */
    wsclient_send_frame(&first, WSCLIENT_CLOSE, 1, "\x03\xe8", 2);
    assert_null(wsclient_read_text(&first, STEP_TIMEOUT_MS));
    assert_int_equal(first.close_code, 1000);
    wsclient_close(&first);
    for (int i = 0; i < 100 && status != 101; i++) {
        status = open_live(&second, &fx.user, NULL, 0, body, sizeof(body));
        if (status != 101)
            usleep(50 * 1000);
    }
    assert_int_equal(status, 101);
    expect_pong(&second);
    wsclient_close(&second);
    stack_restart_gateway(fx.s, PING_OPTION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handshake_needs_cookie_and_origin),
        cmocka_unit_test(live_socket_sets_nodelay),
        cmocka_unit_test(bad_messages_keep_connection),
        cmocka_unit_test(large_numbers_sent_exactly),
        cmocka_unit_test(close_code_checked),
        cmocka_unit_test(subscription_limit_and_unsubscribe),
        cmocka_unit_test(training_fans_out_in_order),
        cmocka_unit_test(slow_reader_closed_too_slow),
        cmocka_unit_test(backend_restart_loses_nothing),
        cmocka_unit_test(connection_limit_503),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
