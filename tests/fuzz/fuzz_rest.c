/*
 * libFuzzer target for whole REST requests. Each input is one HTTP
 * request, sent over TCP to the real gateway (gateway/api.c and the
 * handlers of gateway/api_*.c), which forwards it to the real backend
 * (backend/daemon/proto.c and its ops). Both run in this process on
 * 127.0.0.1 with ephemeral ports.
 *
 * Input format:
 *
 *   byte 0   credential, low 3 bits: 0 none, 1 the user's session cookie
 *            and CSRF token, 2 the user's cookie without the CSRF token,
 *            3 the user's API key, 4 the admin's cookie and CSRF token,
 *            5 to 7 none
 *   byte 1   Content-Type, low 3 bits: 0 application/json, 1 none,
 *            2 application/zip, 3 application/json; charset=utf-8,
 *            4 text/plain, 5 APPLICATION/JSON, 6 application/jsonp,
 *            7 application/x-www-form-urlencoded
 *   byte 2   body framing, low 2 bits: 0 Content-Length, 1 chunked (two
 *            chunks), 2 neither header and no body, 3 a Content-Length
 *            API_BODY_MAX bytes larger than the body that is sent
 *   then     METHOD SP PATH-AND-QUERY LF BODY
 *
 * The method must be one that civetweb 1.15 accepts (its http_methods
 * table, copied in known_methods below), or the input is skipped. In the
 * path, "$SHARE" is replaced by the token of a share link of model 1 that
 * the target signs at start, and every byte that cannot appear in a
 * request target (controls, space, '#', bytes >= 0x7f) is percent-encoded,
 * so the request line is always well-formed. A path that does not start
 * with '/' gets one. Without a LF the body is empty.
 *
 * Set-up, once per process: a data folder under $TMPDIR (default /tmp),
 * removed at exit, with a database seeded through the backend's own
 * functions: an admin (account 1) and a user (account 2), both on the Pro
 * plan with $1000.00 of credit, and a third account (3) whose objects the
 * others must never reach. The two sample data sets (1 classify, 2
 * detect) belong to no account and data set 3 to account 3. Model 1 (the
 * user's) has a completed session with best and last checkpoints, and a
 * billed epoch. Model 2 is the user's, model 3 the admin's, and model 4,
 * account 3's, has a checkpoint too. The backend runs server_run on a
 * thread of its own, and the gateway runs upstream_start and http_start.
 * The user and the admin sign in through POST /api/v1/auth/signin, and
 * the user creates an API key and a share link through the API.
 *
 * Training never starts a trainer: the backend's session supervisor runs
 * with an executor whose start fails, so a training.start or resume that
 * the API accepts launches at the next tick, fails to start, and the
 * session becomes failed, as when the train program is missing.
 *
 * State carries over between inputs: the database keeps what each
 * request created. After each input the target restores what inputs can
 * take away from the seeded accounts: a session that signed out or an
 * API key that was revoked is created again, a plan is set back to Pro,
 * a balance under $100.00 gets $1000.00 of credit, and a deleted model
 * 1 to 4 is restored. A session token or API key that the input itself
 * contains is replaced as well (retire_exposed). So each input is one
 * request against the seeded accounts, and a crash usually reproduces
 * from the input alone. An input that names an object made by an
 * earlier input, such as model 5, may need those inputs first.
 * FUZZ_REST_TRACE=1 in the environment prints each request and its
 * status, with the body of each error.
 *
 * Checks, besides the sanitizers, that abort so that libFuzzer saves the
 * input:
 *   - a complete, well-formed HTTP/1.1 response arrives within
 *     RESPONSE_TIMEOUT_MS (so the gateway never hangs), with a status
 *     line, CRLF-ended header lines and a body that matches its framing;
 *   - every response of api_handle (recognized by a Cache-Control
 *     header of exactly "no-store", where civetweb's own responses send
 *     a longer value) has a Content-Length or status 204, and a status
 *     of 200, 201, 202 or 204, or the status that api_status_for_code
 *     gives its error code, with the JSON body {"error": {"code",
 *     "message"}}; a 405 has Allow;
 *   - no response is 500 (internal) or 503 (backend_unavailable or
 *     too_many_connections). The backend runs in this process and stays
 *     up, and one request of at most libFuzzer's -max_len bytes cannot
 *     fill the disk or exhaust memory, so each is a bug. A disk that
 *     fills up during a long run would show as 500s too: free space
 *     and run the input again;
 *   - on a path that civetweb does not rewrite (see plain_path), the
 *     route of routes.c decides the outcome: 404 or 405 without a route,
 *     401 without credentials on a user or admin route, 403 for the user
 *     on an admin route or for a cookie without its CSRF token on a CSRF
 *     route (413 may come first on JSON routes), never 401 for a seeded
 *     credential, and never a 2xx on account 3's model, data set or API
 *     key;
 *   - no response contains a seeded session token or API key.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "auth.h"
#include "clock.h"
#include "daemon/auth_store.h"
#include "daemon/backend.h"
#include "daemon/ledger.h"
#include "daemon/server.h"
#include "fsutil.h"
#include "http.h"
#include "live.h"
#include "log.h"
#include "routes.h"
#include "upstream.h"

/* Maximum wait for a whole response. libFuzzer's -timeout in
 * scripts/fuzz.sh is 25 s, so a hang is reported here first, with the
 * request. The gateway waits up to API_BACKEND_TIMEOUT_MS (30 s) for the
 * backend, so a stalled backend shows up here too. */
#define RESPONSE_TIMEOUT_MS 20000
/* Largest response read: the seeded checkpoints are well under it. */
#define RESPONSE_MAX (8 << 20)
/* Maximum length of a request target after percent-encoding. civetweb
 * rejects request headers over its max_request_size (16 KiB by
 * default). */
#define TARGET_MAX 4096
/* How long set-up waits for a server to listen or connect. */
#define START_TIMEOUT_MS 20000

#define PASSWORD "fuzz-password-1234"
#define ADMIN_EMAIL "admin@fuzz.example"
#define USER_EMAIL "user@fuzz.example"
#define OTHER_EMAIL "other@fuzz.example"

/* Accounts and objects of the seeded database. */
#define ADMIN_ID 1
#define USER_ID 2
#define OTHER_ID 3
#define OTHER_DATASET_ID 3
#define OTHER_MODEL_ID 4
#define OTHER_KEY_ID 1
#define SEEDED_MODELS "1, 2, 3, 4"

/* Balances under BALANCE_LOW get BALANCE_CREDIT more after an input. */
#define BALANCE_CREDIT (1000 * MICRO_PER_DOLLAR)
#define BALANCE_LOW (100 * MICRO_PER_DOLLAR)

/* Sizes of the seeded checkpoints: best fits one models.weights_chunk
 * (512 KiB), and last needs two, so downloads read a second chunk. */
#define BEST_CKPT_BYTES 3000
#define LAST_CKPT_BYTES (600 * 1024)

enum credential {
    CRED_NONE,
    CRED_USER,
    CRED_USER_NO_CSRF,
    CRED_USER_KEY,
    CRED_ADMIN,
};

/* A signed-in browser of the fixture. */
struct browser {
    int64_t account;
    char token[AUTH_TOKEN_LEN + 1];
    char csrf[AUTH_TOKEN_LEN + 1];
};

static struct {
    char dir[PATH_MAX];
    char data[PATH_MAX + 8];
    struct backend be;
    pthread_t backend_thread;
    int backend_started;
    int gateway_started;
    /* The target's own connection to the backend's database, for
     * restoring the seeded accounts between inputs. */
    struct store store;
    int gateway_port;
    struct browser user, admin;
    char user_key[AUTH_APIKEY_LEN + 1];
    int64_t user_key_id;
    char share_token[ROUTE_TOKEN_MAX + 1];
} fx;

/* What is known about the request being checked, for failure reports. */
struct request {
    enum credential cred;
    const char *method;
    const char *target;
    const char *content_type; /* NULL: none sent */
    int framing;
    const char *body;
    size_t body_len;
};

struct response {
    char *data; /* everything read, NUL-terminated */
    size_t len;
    int status;
    size_t head_len; /* status line and headers with the blank line */
    const char *body;
    size_t body_len;
    char *decoded; /* the body of a chunked response, or NULL */
};

/* 1 when FUZZ_REST_TRACE is set: print each request and its status. */
static int trace;
static const struct request *current_request;
static const struct response *current_response;

/* ---- Failures ------------------------------------------------------------ */

static void print_excerpt(const char *label, const char *text, size_t len)
{
    size_t printed = len < 600 ? len : 600;

    fprintf(stderr, "%s (%zu bytes): ", label, len);
    for (size_t i = 0; i < printed; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n' || (c >= 0x20 && c < 0x7f))
            fputc(c, stderr);
        else if (c != '\r')
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "%s\n", printed < len ? " ..." : "");
}

/* Report a failed check with the request and response, then abort, so
 * that libFuzzer saves the input. */
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
    const struct request *req = current_request;
    const struct response *resp = current_response;
    va_list ap;

    fprintf(stderr, "fuzz_rest: check failed: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (req != NULL) {
        fprintf(stderr,
                "request: credential %d, %s %s, Content-Type %s, "
                "framing %d\n",
                (int)req->cred, req->method, req->target,
                req->content_type ? req->content_type : "(none)", req->framing);
        print_excerpt("request body", req->body, req->body_len);
    }
    if (resp != NULL && resp->data != NULL)
        print_excerpt("response", resp->data, resp->len);
    abort();
}

/* ---- The data folder ----------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void make_folder(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(fx.dir, sizeof(fx.dir), "%s/fuzz_rest.XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(fx.dir) == NULL)
        fail("cannot create a folder under $TMPDIR: %s", strerror(errno));
    snprintf(fx.data, sizeof(fx.data), "%s/data", fx.dir);
}

/* Write a file of size bytes under the data folder, with parents. */
static void write_file(const char *relative, size_t size)
{
    char path[PATH_MAX * 2], *slash;
    struct error err = {0};
    unsigned char *bytes = malloc(size);

    if (bytes == NULL)
        fail("out of memory for %s", relative);
    for (size_t i = 0; i < size; i++)
        bytes[i] = (unsigned char)(i * 7 + 3);
    snprintf(path, sizeof(path), "%s/%s", fx.data, relative);
    slash = strrchr(path, '/');
    *slash = '\0';
    if (fs_mkdir_p(path, 0700, &err) != 0)
        fail("%s", err.msg);
    *slash = '/';
    if (fs_write_atomic(path, bytes, size, 0600, &err) != 0)
        fail("%s", err.msg);
    free(bytes);
}

/* ---- The backend --------------------------------------------------------- */

/* The executor of the fuzzed backend: every start fails, so no input
 * starts a trainer. Sessions then fail as when train cannot run. The
 * other operations are never reached without a job. */
static int executor_start_none(const struct executor *ex, char *const argv[],
                               const char *cwd, const char *log_path,
                               struct executor_job **job, struct error *err)
{
    (void)ex;
    (void)argv;
    (void)cwd;
    (void)log_path;
    *job = NULL;
    return error_set(err, -EPERM, "the fuzz target starts no trainers");
}

static int executor_events_fd_none(const struct executor_job *job)
{
    (void)job;
    return -1;
}

static int64_t executor_job_id_none(const struct executor_job *job)
{
    (void)job;
    return 0;
}

static int executor_signal_none(struct executor_job *job, int sig,
                                struct error *err)
{
    (void)job;
    (void)sig;
    return error_set(err, -ESRCH, "no such job");
}

static int executor_poll_none(struct executor_job *job,
                              struct executor_status *status, struct error *err)
{
    (void)job;
    (void)err;
    status->state = EXECUTOR_EXITED;
    status->code = 1;
    return 0;
}

static void executor_close_none(struct executor_job *job)
{
    (void)job;
}

static int executor_kill_orphan_none(const struct executor *ex, int64_t job_id,
                                     const char *program, struct error *err)
{
    (void)ex;
    (void)job_id;
    (void)program;
    (void)err;
    return 0;
}

static const struct executor executor_none = {
    "none",
    executor_start_none,
    executor_events_fd_none,
    executor_job_id_none,
    executor_signal_none,
    executor_poll_none,
    executor_close_none,
    executor_kill_orphan_none,
    0,
};

/* The backend's tick: sessions_poll launches queued sessions, which fail
 * at once with executor_none. */
static void backend_tick(struct backend *be)
{
    sessions_poll(be->sessions, clock_monotonic_ms());
}

static void *backend_main(void *arg)
{
    struct server_options *opt = arg;
    struct error err = {0};

    if (server_run(&fx.be, opt, &err) != 0)
        fail("backend: %s", err.msg);
    return NULL;
}

static void seed_sql(const char *sql)
{
    struct error err = {0};

    if (store_exec(&fx.be.store, sql, &err) != 0)
        fail("seeding the database: %s", err.msg);
}

static void seed_account(const char *email, const char *role, const char *plan,
                         int64_t expected_id)
{
    char hash[AUTH_HASH_MAX];
    struct auth_account made;
    struct error err = {0};

    if (auth_password_hash(PASSWORD, hash, &err) != 0 ||
        auth_account_create(&fx.be.store, email, hash, role, plan, &made,
                            &err) != 0)
        fail("seeding account %s: %s", email, err.msg);
    if (made.id != expected_id)
        fail("account %s has id %lld, expected %lld", email, (long long)made.id,
             (long long)expected_id);
}

static void credit(struct store *st, int64_t account)
{
    struct ledger_entry entry = {0};
    struct error err = {0};
    int64_t id;
    int duplicate;

    entry.account_id = account;
    entry.kind = LEDGER_CREDIT;
    entry.amount = BALANCE_CREDIT;
    entry.description = "fuzz target credit";
    if (ledger_append(st, &entry, &id, &duplicate, &err) != 0)
        fail("crediting account %lld: %s", (long long)account, err.msg);
}

/* Accounts, data sets, models, sessions with checkpoints and a billed
 * epoch, as the file comment lists them. */
static void seed(void)
{
    struct auth_apikey key;
    struct ledger_entry charge = {0};
    struct error err = {0};
    int64_t id;
    int duplicate;

    seed_account(ADMIN_EMAIL, "admin", "pro", ADMIN_ID);
    seed_account(USER_EMAIL, "user", "pro", USER_ID);
    seed_account(OTHER_EMAIL, "user", "free", OTHER_ID);
    credit(&fx.be.store, ADMIN_ID);
    credit(&fx.be.store, USER_ID);
    credit(&fx.be.store, OTHER_ID);
    if (auth_apikey_create(&fx.be.store, OTHER_ID, "other", 0, &key, &err) != 0)
        fail("seeding an API key: %s", err.msg);
    if (key.id != OTHER_KEY_ID)
        fail("account 3's API key has id %lld", (long long)key.id);

    seed_sql("INSERT INTO datasets (id, account_id, name, task, path, "
             "images, created_at) VALUES "
             "(1, NULL, 'sample', 'classify', 'datasets/sample', 12, 0), "
             "(2, NULL, 'scenes', 'detect', 'datasets/scenes', 8, 0), "
             "(3, 3, 'other', 'classify', 'datasets/other', 4, 0);"
             "INSERT INTO models (id, account_id, dataset_id, name, task, "
             "architecture, args, created_at) VALUES "
             "(1, 2, 1, 'trained', 'classify', 'yolov8n-cls.yaml', "
             "'{\"imgsz\":32}', 0), "
             "(2, 2, 1, 'fresh', 'classify', 'yolov8n-cls.yaml', '{}', 0), "
             "(3, 1, 2, 'admin', 'detect', 'yolov8n.yaml', '{}', 0), "
             "(4, 3, 3, 'other', 'classify', 'yolov8n-cls.yaml', '{}', 0);"
             "INSERT INTO sessions (id, model_id, account_id, "
             "instance_type_id, mode, state, epochs, epochs_done, rate, "
             "run_dir, created_at, updated_at) VALUES "
             "(1, 1, 2, 1, 'epochs', 'completed', 1, 1, 500000, "
             "'runs/model-1/session-1', 0, 0), "
             "(2, 4, 3, 1, 'epochs', 'completed', 1, 1, 500000, "
             "'runs/model-4/session-2', 0, 0);"
             "INSERT INTO epochs (session_id, epoch, seconds, cost, "
             "metrics, created_at) VALUES "
             "(1, 1, 36.0, 5000, '{\"top1\":0.5}', 0);");
    write_file("runs/model-1/session-1/weights/best.ckpt", BEST_CKPT_BYTES);
    write_file("runs/model-1/session-1/weights/last.ckpt", LAST_CKPT_BYTES);
    write_file("runs/model-4/session-2/weights/best.ckpt", BEST_CKPT_BYTES);

    charge.account_id = USER_ID;
    charge.kind = LEDGER_CHARGE;
    charge.amount = -5000;
    charge.idempotency_key = "epoch:1:1";
    charge.session_id = 1;
    charge.model_id = 1;
    charge.epoch = 1;
    charge.rate = 500000;
    charge.seconds = 36.0;
    charge.description = "epoch 1";
    if (ledger_append(&fx.be.store, &charge, &id, &duplicate, &err) != 0)
        fail("seeding a charge: %s", err.msg);
}

/* Wait for a server's port file; returns the port. */
static int wait_port(const char *path)
{
    int64_t deadline = clock_monotonic_ms() + START_TIMEOUT_MS;

    while (clock_monotonic_ms() < deadline) {
        FILE *f = fopen(path, "r");
        int port = 0;

        if (f != NULL) {
            int n = fscanf(f, "%d", &port);
            fclose(f);
            if (n == 1 && port > 0)
                return port;
        }
        usleep(10000);
    }
    fail("no port in %s after %d ms", path, START_TIMEOUT_MS);
    return -1;
}

/* Open, seed and start the backend; returns its port. */
static int start_backend(void)
{
    static struct server_options opt;
    static char port_file[PATH_MAX + 16];
    struct error err = {0};

    config_defaults(&fx.be.config);
    if (strlen(fx.data) >= sizeof(fx.be.config.data_dir))
        fail("the data folder %s is too long; set a shorter TMPDIR",
             fx.data);
    memcpy(fx.be.config.data_dir, fx.data, strlen(fx.data) + 1);
    snprintf(fx.be.config.payment_provider,
             sizeof(fx.be.config.payment_provider), "test");
    fx.be.data_dir = fx.be.config.data_dir;
    fx.be.started_ms = clock_monotonic_ms();
    if (backend_open(&fx.be, &err) != 0)
        fail("backend: %s", err.msg);
    seed();
    fx.be.executor = executor_none;
    if (backend_open_sessions(&fx.be, &err) != 0)
        fail("backend: %s", err.msg);
    fx.be.on_tick = backend_tick;

    snprintf(port_file, sizeof(port_file), "%s/backend.port", fx.dir);
    opt.host = "127.0.0.1";
    opt.port = 0;
    opt.unix_socket = NULL;
    opt.port_file = port_file;
    if (pthread_create(&fx.backend_thread, NULL, backend_main, &opt) != 0)
        fail("cannot start the backend thread");
    fx.backend_started = 1;
    return wait_port(port_file);
}

static void start_gateway(int backend_port)
{
    static char ui[PATH_MAX + 8], port_file[PATH_MAX + 16];
    struct live_options lopt = {1, LIVE_PING_INTERVAL_DEFAULT_S};
    struct upstream_options uopt = {"127.0.0.1", backend_port, fx.be.secret};
    struct http_options hopt;
    struct error err = {0};
    int64_t deadline;

    snprintf(ui, sizeof(ui), "%s/ui", fx.dir);
    if (mkdir(ui, 0700) != 0)
        fail("cannot create %s: %s", ui, strerror(errno));
    snprintf(port_file, sizeof(port_file), "%s/gateway.port", fx.dir);
    memset(&hopt, 0, sizeof(hopt));
    hopt.host = "127.0.0.1";
    hopt.port = 0;
    hopt.ui_dir = ui;
    hopt.port_file = port_file;

    /* One live WebSocket: inputs never open one, and each allowed
     * connection costs civetweb a worker thread. */
    live_configure(&lopt);
    if (upstream_start(&uopt, &err) != 0)
        fail("gateway: %s", err.msg);
    deadline = clock_monotonic_ms() + START_TIMEOUT_MS;
    while (!upstream_ready()) {
        if (clock_monotonic_ms() > deadline)
            fail("the gateway did not connect to the backend in %d ms",
                 START_TIMEOUT_MS);
        usleep(10000);
    }
    if (http_start(&hopt, &err) != 0)
        fail("gateway: %s", err.msg);
    fx.gateway_started = 1;
    fx.gateway_port = wait_port(port_file);
}

static void stop_all(void)
{
    if (fx.gateway_started) {
        http_stop();
        upstream_stop();
    }
    if (fx.backend_started) {
        server_request_stop();
        pthread_join(fx.backend_thread, NULL);
        backend_close(&fx.be);
    }
    store_close(&fx.store);
    if (fx.dir[0] != '\0')
        nftw(fx.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- HTTP ---------------------------------------------------------------- */

/* The methods that civetweb 1.15 accepts (http_methods in its
 * civetweb.c). It rejects any other with 400 before a handler runs. */
static const char *const known_methods[] = {
    "GET",     "POST",    "PUT",       "DELETE",   "HEAD",
    "OPTIONS", "CONNECT", "PATCH",     "PROPFIND", "MKCOL",
    "LOCK",    "UNLOCK",  "PROPPATCH", "REPORT",   NULL,
};

/* Content-Type of each value of byte 1; NULL sends none. */
static const char *const content_types[8] = {
    "application/json",                  /* 0 */
    NULL,                                /* 1 */
    "application/zip",                   /* 2 */
    "application/json; charset=utf-8",   /* 3 */
    "text/plain",                        /* 4 */
    "APPLICATION/JSON",                  /* 5 */
    "application/jsonp",                 /* 6 */
    "application/x-www-form-urlencoded", /* 7 */
};

enum framing {
    FRAMING_LENGTH,
    FRAMING_CHUNKED,
    FRAMING_NONE,
    FRAMING_LENGTH_OVER, /* declares API_BODY_MAX bytes more than sent */
};

struct buffer {
    char *data;
    size_t len, cap;
};

static void buffer_add(struct buffer *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = (b->len + len + 1) * 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL)
            fail("out of memory for %zu bytes", cap);
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void buffer_printf(struct buffer *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void buffer_printf(struct buffer *b, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(text))
        fail("request header line over %zu bytes", sizeof(text));
    buffer_add(b, text, (size_t)n);
}

/* The request's bytes: request line, headers of the credential, content
 * type and framing, and the body. */
static void build_request(const struct request *req, struct buffer *out)
{
    const struct browser *b = req->cred == CRED_ADMIN ? &fx.admin : &fx.user;
    size_t half = req->body_len / 2;

    buffer_printf(out, "%s ", req->method);
    buffer_add(out, req->target, strlen(req->target));
    buffer_printf(out,
                  " HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                  "Connection: close\r\n",
                  fx.gateway_port);
    if (req->cred == CRED_USER || req->cred == CRED_USER_NO_CSRF ||
        req->cred == CRED_ADMIN)
        buffer_printf(out, "Cookie: " AUTH_COOKIE_NAME "=%s\r\n", b->token);
    if (req->cred == CRED_USER || req->cred == CRED_ADMIN)
        buffer_printf(out, AUTH_CSRF_HEADER ": %s\r\n", b->csrf);
    if (req->cred == CRED_USER_KEY)
        buffer_printf(out, "Authorization: Bearer %s\r\n", fx.user_key);
    if (req->content_type != NULL)
        buffer_printf(out, "Content-Type: %s\r\n", req->content_type);

    switch (req->framing) {
    case FRAMING_LENGTH:
        buffer_printf(out, "Content-Length: %zu\r\n\r\n", req->body_len);
        buffer_add(out, req->body, req->body_len);
        break;
    case FRAMING_CHUNKED:
        buffer_printf(out, "Transfer-Encoding: chunked\r\n\r\n");
        if (half > 0) {
            buffer_printf(out, "%zx\r\n", half);
            buffer_add(out, req->body, half);
            buffer_add(out, "\r\n", 2);
        }
        if (req->body_len > half) {
            buffer_printf(out, "%zx\r\n", req->body_len - half);
            buffer_add(out, req->body + half, req->body_len - half);
            buffer_add(out, "\r\n", 2);
        }
        buffer_add(out, "0\r\n\r\n", 5);
        break;
    case FRAMING_NONE:
        buffer_add(out, "\r\n", 2);
        break;
    default:
        buffer_printf(out, "Content-Length: %zu\r\n\r\n",
                      req->body_len + API_BODY_MAX);
        buffer_add(out, req->body, req->body_len);
        break;
    }
}

/* Send text on a new connection to the gateway, close the sending side,
 * and read everything until the gateway closes the connection. */
static void exchange(const struct buffer *text, struct response *resp)
{
    struct sockaddr_in addr;
    struct timeval tv = {RESPONSE_TIMEOUT_MS / 1000, 0};
    struct buffer in = {NULL, 0, 0};
    int64_t deadline = clock_monotonic_ms() + RESPONSE_TIMEOUT_MS;
    size_t sent = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        fail("socket: %s", strerror(errno));
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)fx.gateway_port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        fail("cannot connect to the gateway: %s", strerror(errno));

    /* The gateway may respond and close before it reads the whole body,
     * as it does for a declared length over its limit, so a reset while
     * sending ends the sending but not the test. */
    while (sent < text->len) {
        ssize_t n = send(fd, text->data + sent, text->len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            fail("sending the request timed out after %d ms",
                 RESPONSE_TIMEOUT_MS);
        if (n < 0)
            break;
        sent += (size_t)n;
    }
    shutdown(fd, SHUT_WR);

    buffer_add(&in, "", 0);
    resp->data = in.data;
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int64_t left = deadline - clock_monotonic_ms();
        char chunk[65536];
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            resp->data = in.data;
            resp->len = in.len;
            fail("no complete response within %d ms", RESPONSE_TIMEOUT_MS);
        }
        n = recv(fd, chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* end, or a reset: parse_response judges the rest */
        buffer_add(&in, chunk, (size_t)n);
        if (in.len > RESPONSE_MAX)
            fail("response over %d bytes", RESPONSE_MAX);
    }
    close(fd);
    resp->data = in.data;
    resp->len = in.len;
}

/* The first CRLF in [p, end), or end. */
static const char *find_crlf(const char *p, const char *end)
{
    const char *crlf =
        end - p >= 2 ? memmem(p, (size_t)(end - p), "\r\n", 2) : NULL;

    return crlf != NULL ? crlf : end;
}

/* Copy the value of header name into out, without surrounding blanks;
 * returns 1 when the response has it. The head must have passed
 * check_head. */
static int header_get(const struct response *resp, const char *name, char *out,
                      size_t len)
{
    const char *end = resp->data + resp->head_len - 2;
    const char *line = find_crlf(resp->data, end) + 2;
    size_t name_len = strlen(name);

    while (line < end) {
        const char *eol = find_crlf(line, end);
        if (eol - line > (ptrdiff_t)name_len && line[name_len] == ':' &&
            strncasecmp(line, name, name_len) == 0) {
            const char *v = line + name_len + 1;
            const char *v_end = eol;
            while (v < v_end && (*v == ' ' || *v == '\t'))
                v++;
            while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
                v_end--;
            snprintf(out, len, "%.*s", (int)(v_end - v), v);
            return 1;
        }
        line = eol + 2;
    }
    return 0;
}

static int is_token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

/* Check the status line and each header line. */
static void check_head(struct response *resp)
{
    const char *d = resp->data, *end = d + resp->head_len - 2, *line;

    if (resp->head_len < 16 || memcmp(d, "HTTP/1.1 ", 9) != 0 || d[9] < '1' ||
        d[9] > '5' || d[10] < '0' || d[10] > '9' || d[11] < '0' ||
        d[11] > '9' || d[12] != ' ')
        fail("the status line is not 'HTTP/1.1 NNN reason'");
    resp->status = (d[9] - '0') * 100 + (d[10] - '0') * 10 + (d[11] - '0');
    for (line = d; line < end;) {
        const char *eol = find_crlf(line, end);
        const char *colon = line;

        for (const char *c = line; c < eol; c++)
            if (*c == '\r' || *c == '\n' || *c == '\0')
                fail("a response header line holds a CR, LF or NUL byte");
        if (line != d) {
            while (colon < eol && is_token_char((unsigned char)*colon))
                colon++;
            if (colon == line || colon == eol || *colon != ':')
                fail("a response header line is not 'Name: value'");
        }
        line = eol + 2;
    }
}

/* Decode a chunked body into resp->decoded. */
static void decode_chunked(struct response *resp, const char *p,
                           const char *end)
{
    struct buffer out = {NULL, 0, 0};

    buffer_add(&out, "", 0);
    for (;;) {
        char *after;
        unsigned long size = strtoul(p, &after, 16);
        const char *eol = after;

        if (after == p)
            fail("a response chunk has no size");
        while (eol + 1 < end && !(eol[0] == '\r' && eol[1] == '\n'))
            eol++;
        if (eol + 1 >= end)
            fail("a response chunk size line does not end");
        p = eol + 2;
        if (size == 0)
            break;
        if ((size_t)(end - p) < size + 2 || p[size] != '\r' ||
            p[size + 1] != '\n')
            fail("a response chunk is shorter than its size");
        buffer_add(&out, p, size);
        p += size + 2;
    }
    /* Trailer lines, then the empty line. */
    while (p + 1 < end && !(p[0] == '\r' && p[1] == '\n')) {
        const char *eol = find_crlf(p, end);
        if (eol == end)
            fail("the chunked response's trailer does not end");
        p = eol + 2;
    }
    if (p + 2 != end)
        fail("%zd bytes follow the chunked response body",
             (ssize_t)(end - p - 2));
    resp->decoded = out.data;
    resp->body = out.data;
    resp->body_len = out.len;
}

/* Check that the response is one well-formed HTTP/1.1 response, and find
 * its status and body. */
static void parse_response(const struct request *req, struct response *resp)
{
    const char *blank, *rest;
    char length[32], encoding[64];
    int has_length, chunked;
    size_t rest_len;

    if (resp->len == 0)
        fail("the gateway closed the connection without a response");
    blank = memmem(resp->data, resp->len, "\r\n\r\n", 4);
    if (blank == NULL)
        fail("the response headers do not end with an empty line");
    resp->head_len = (size_t)(blank - resp->data) + 4;
    check_head(resp);

    rest = resp->data + resp->head_len;
    rest_len = resp->len - resp->head_len;
    has_length = header_get(resp, "Content-Length", length, sizeof(length));
    chunked = header_get(resp, "Transfer-Encoding", encoding, sizeof(encoding));
    if (has_length && chunked)
        fail("the response has both Content-Length and Transfer-Encoding");
    if (strcmp(req->method, "HEAD") == 0 || resp->status == 204 ||
        resp->status == 304 || resp->status < 200) {
        if (rest_len != 0)
            fail("a %d response to %s has a %zu-byte body", resp->status,
                 req->method, rest_len);
        resp->body = rest;
        resp->body_len = 0;
        return;
    }
    if (chunked) {
        if (strcasecmp(encoding, "chunked") != 0)
            fail("unknown Transfer-Encoding '%s'", encoding);
        decode_chunked(resp, rest, rest + rest_len);
        return;
    }
    if (has_length) {
        char *end;
        unsigned long long n = strtoull(length, &end, 10);
        if (length[0] < '0' || length[0] > '9' || *end != '\0')
            fail("invalid Content-Length '%s'", length);
        if (n != rest_len)
            fail("Content-Length is %llu but the body has %zu bytes", n,
                 rest_len);
    }
    resp->body = rest;
    resp->body_len = rest_len;
}

/* ---- Checks -------------------------------------------------------------- */

static int status_is_success(int status)
{
    return status == 200 || status == 201 || status == 202 || status == 204;
}

static int content_type_is_json(const struct response *resp)
{
    char type[128];

    return header_get(resp, "Content-Type", type, sizeof(type)) &&
           strncasecmp(type, "application/json", 16) == 0;
}

/* Check a response of api_handle: its status, headers and body. */
static void check_api_response(const struct request *req,
                               const struct response *resp)
{
    const cJSON *error, *code, *message;
    char value[256];
    int status = resp->status, expected;
    int head = strcmp(req->method, "HEAD") == 0;
    cJSON *body;

    if (status != 204 &&
        !header_get(resp, "Content-Length", value, sizeof(value)))
        fail("an API response with status %d has no Content-Length", status);
    if (status == 204)
        return;
    if (status_is_success(status) &&
        header_get(resp, "Content-Disposition", value, sizeof(value))) {
        if (strncmp(value, "attachment;", 11) != 0)
            fail("Content-Disposition '%s' is not an attachment", value);
        return;
    }
    if (!status_is_success(status) && (status < 400 || status > 599))
        fail("an API response has status %d", status);
    if (!content_type_is_json(resp))
        fail("an API response with status %d is not JSON", status);
    if (status == 405 && !header_get(resp, "Allow", value, sizeof(value)))
        fail("a 405 response has no Allow header");
    if (head)
        return; /* a HEAD response has no body to read */

    body = cJSON_ParseWithLength(resp->body, resp->body_len);
    if (body == NULL)
        fail("an API response body is not JSON");
    if (status_is_success(status)) {
        cJSON_Delete(body);
        return;
    }
    error = cJSON_GetObjectItemCaseSensitive(body, "error");
    code = cJSON_GetObjectItemCaseSensitive(error, "code");
    message = cJSON_GetObjectItemCaseSensitive(error, "message");
    if (!cJSON_IsObject(body) || !cJSON_IsString(code) ||
        !cJSON_IsString(message))
        fail("an error response is not {\"error\": {\"code\", "
             "\"message\"}}");
    expected = api_status_for_code(code->valuestring);
    if (expected == 500 && strcmp(code->valuestring, "internal") != 0)
        fail("error code '%s' is not in the gateway's error table",
             code->valuestring);
    if (expected != status)
        fail("status %d with error code '%s', whose status is %d", status,
             code->valuestring, expected);
    /* The backend runs in this process and stays up, so a 503 is a
     * lost or stalled backend connection; see the file comment on 500. */
    if (status == 500 || status == 503)
        fail("%d %s: %s", status, code->valuestring, message->valuestring);
    cJSON_Delete(body);
}

/* Copy the path of target (before any '?') into out when civetweb
 * serves it unchanged: it starts with /api/v1/, holds only [A-Za-z0-9],
 * '/', '-', '_', '.' and '~', has no empty segment, and no '.' ends a
 * segment. civetweb percent-decodes the path, removes dot segments,
 * empty segments and a '.' at the end of a segment before it picks a
 * handler (remove_dot_segments in civetweb 1.15), so such a path reaches
 * api_handle as it is. Returns 1 for such a path, else 0. */
static int plain_path(const char *target, char *out, size_t len)
{
    size_t n = strcspn(target, "?");

    if (n >= len || strncmp(target, "/api/v1/", 8) != 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = target[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || strchr("/-_.~", c) != NULL;
        if (!ok || (c == '/' && i + 1 < n && target[i + 1] == '/') ||
            (c == '.' && (i + 1 == n || target[i + 1] == '/')))
            return 0;
    }
    memcpy(out, target, n);
    out[n] = '\0';
    return 1;
}

static void expect_status(const struct response *resp, int status,
                          const char *why)
{
    if (resp->status != status)
        fail("status %d, expected %d: %s", resp->status, status, why);
}

static int route_is(const struct route *r, const char *prefix)
{
    return strncmp(r->pattern, prefix, strlen(prefix)) == 0;
}

/* Check the outcome that the route of a plain path (plain_path) decides,
 * in the order of the steps of api_handle (gateway/api.c). */
static void check_route(const struct request *req, const char *path,
                        const struct response *resp)
{
    char allow[128];
    int64_t id = 0;
    const struct route *r =
        route_find(api_routes, req->method, path, &id, allow, sizeof(allow));
    int over_limit = req->framing == FRAMING_LENGTH_OVER &&
                     req->body_len + API_BODY_MAX > API_BODY_MAX;

    if (r == NULL) {
        if (allow[0] != '\0')
            expect_status(resp, 405, "the path has no route for the method");
        else
            expect_status(resp, 404, "the path has no route");
        return;
    }
    if (r->json_body && over_limit) {
        expect_status(resp, 413, "the declared body is over API_BODY_MAX");
        return;
    }
    if (r->auth == ROUTE_PUBLIC)
        return;
    if (req->cred == CRED_NONE) {
        expect_status(resp, 401, "a user route without credentials");
        return;
    }
    if (resp->status == 401)
        fail("a seeded credential was rejected");
    if (r->auth == ROUTE_ADMIN && req->cred != CRED_ADMIN) {
        expect_status(resp, 403,
                      "an admin route with the user's "
                      "credential");
        return;
    }
    if (r->csrf && req->cred == CRED_USER_NO_CSRF) {
        expect_status(resp, 403, "a CSRF route without the CSRF token");
        return;
    }
    if (!status_is_success(resp->status) || r->auth != ROUTE_USER)
        return;
    if ((route_is(r, "/api/v1/models/{id}") && id == OTHER_MODEL_ID) ||
        (route_is(r, "/api/v1/datasets/{id}") && id == OTHER_DATASET_ID) ||
        (route_is(r, "/api/v1/apikeys/{id}") && id == OTHER_KEY_ID))
        fail("%s %s succeeded on an object of account %d", req->method,
             r->pattern, OTHER_ID);
}

/* Fail when the response contains a seeded session token or API key that
 * the request did not contain: error messages may repeat the path, and
 * retire_exposed explains how inputs come to contain these strings. */
static void check_secrets(const struct request *req,
                          const struct response *resp)
{
    const char *secrets[] = {fx.user.token, fx.admin.token, fx.user_key};

    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        size_t len = strlen(secrets[i]);

        if (len == 0 || strstr(req->target, secrets[i]) != NULL ||
            memmem(req->body, req->body_len, secrets[i], len) != NULL)
            continue;
        if (memmem(resp->data, resp->len, secrets[i], len) != NULL)
            fail("the response contains a seeded credential");
    }
}

/* ---- One request --------------------------------------------------------- */

/* Send req, read the response and make every check. */
static void run_request(const struct request *req, struct response *resp)
{
    struct buffer text = {NULL, 0, 0};
    char path[TARGET_MAX + 1], cache[64];
    int is_api, plain;

    current_request = req;
    current_response = resp;
    build_request(req, &text);
    exchange(&text, resp);
    free(text.data);
    parse_response(req, resp);
    if (trace) {
        fprintf(stderr, "fuzz_rest: credential %d %s %s -> %d\n",
                (int)req->cred, req->method, req->target, resp->status);
        if (resp->status >= 400)
            print_excerpt("response body", resp->body, resp->body_len);
    }
    check_secrets(req, resp);

    /* api.c sends "Cache-Control: no-store" with every response, and
     * civetweb's own responses send a longer value. */
    is_api = header_get(resp, "Cache-Control", cache, sizeof(cache)) &&
             strcmp(cache, "no-store") == 0;
    plain = plain_path(req->target, path, sizeof(path));
    if (plain && !is_api)
        fail("a request to %s was not answered by the API", path);
    if (is_api)
        check_api_response(req, resp);
    if (plain)
        check_route(req, path, resp);
}

static void response_free(struct response *resp)
{
    free(resp->data);
    free(resp->decoded);
    memset(resp, 0, sizeof(*resp));
    current_request = NULL;
    current_response = NULL;
}

/* Make a set-up request that must get status; returns its JSON body. */
static cJSON *setup_request(enum credential cred, const char *method,
                            const char *target, const char *body, int status,
                            struct response *resp)
{
    struct request req = {
        cred,           method, target,      "application/json",
        FRAMING_LENGTH, body,   strlen(body)};
    cJSON *json;

    run_request(&req, resp);
    if (resp->status != status)
        fail("set-up request %s %s got status %d, expected %d", method, target,
             resp->status, status);
    json = cJSON_ParseWithLength(resp->body, resp->body_len);
    if (json == NULL)
        fail("set-up request %s %s got no JSON body", method, target);
    return json;
}

static void copy_string(const cJSON *json, const char *name, char *out,
                        size_t len)
{
    const char *text =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, name));

    if (text == NULL || strlen(text) >= len)
        fail("set-up response has no string '%s' of under %zu bytes", name,
             len);
    memcpy(out, text, strlen(text) + 1);
}

/* Sign in through the API and keep the session cookie and CSRF token. */
static void signin(struct browser *b, const char *email, int64_t account)
{
    struct response resp = {0};
    char body[256], cookie[512];
    cJSON *json;
    size_t name_len = strlen(AUTH_COOKIE_NAME "=");

    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}",
             email, PASSWORD);
    json = setup_request(CRED_NONE, "POST", "/api/v1/auth/signin", body, 200,
                         &resp);
    if (!header_get(&resp, "Set-Cookie", cookie, sizeof(cookie)) ||
        strncmp(cookie, AUTH_COOKIE_NAME "=", name_len) != 0 ||
        strcspn(cookie + name_len, ";") != AUTH_TOKEN_LEN)
        fail("sign-in set no session cookie");
    memcpy(b->token, cookie + name_len, AUTH_TOKEN_LEN);
    b->token[AUTH_TOKEN_LEN] = '\0';
    copy_string(json, "csrf", b->csrf, sizeof(b->csrf));
    b->account = account;
    cJSON_Delete(json);
    response_free(&resp);
}

static void setup_credentials(void)
{
    static const char share_prefix[] = "/api/v1/shared/";
    struct response resp = {0};
    char url[sizeof(share_prefix) + ROUTE_TOKEN_MAX];
    cJSON *json;

    signin(&fx.user, USER_EMAIL, USER_ID);
    signin(&fx.admin, ADMIN_EMAIL, ADMIN_ID);

    json = setup_request(CRED_USER, "POST", "/api/v1/apikeys",
                         "{\"name\":\"fuzz\"}", 201, &resp);
    copy_string(json, "key", fx.user_key, sizeof(fx.user_key));
    fx.user_key_id = (int64_t)cJSON_GetNumberValue(
        cJSON_GetObjectItemCaseSensitive(json, "id"));
    cJSON_Delete(json);
    response_free(&resp);

    json = setup_request(CRED_USER, "POST", "/api/v1/models/1/share",
                         "{\"which\":\"best\",\"expires_in_s\":604800}", 201,
                         &resp);
    copy_string(json, "url", url, sizeof(url));
    if (strncmp(url, share_prefix, sizeof(share_prefix) - 1) != 0)
        fail("share link '%s' is not under %s", url, share_prefix);
    snprintf(fx.share_token, sizeof(fx.share_token), "%s",
             url + sizeof(share_prefix) - 1);
    cJSON_Delete(json);
    response_free(&resp);
}

/* ---- Restoring the seeded accounts --------------------------------------- */

static void restore_session(struct browser *b)
{
    struct auth_session session;
    struct error err = {0};
    int64_t now = clock_realtime_ms();

    if (auth_session_lookup(&fx.store, b->token, now, &session, &err) == 0)
        return;
    if (auth_session_create(&fx.store, b->account, now, &session, &err) != 0)
        fail("restoring a session of account %lld: %s", (long long)b->account,
             err.msg);
    memcpy(b->token, session.token, sizeof(b->token));
    memcpy(b->csrf, session.csrf, sizeof(b->csrf));
}

static void restore_key(void)
{
    struct auth_apikey key;
    struct error err = {0};
    int64_t now = clock_realtime_ms(), account;
    int rc;

    if (auth_apikey_lookup(&fx.store, fx.user_key, now, &account, &err) == 0)
        return;
    rc = auth_apikey_create(&fx.store, USER_ID, "fuzz", now, &key, &err);
    if (rc == -ENOSPC) {
        /* Inputs created the maximum number of keys of an account. */
        char sql[160];
        snprintf(sql, sizeof(sql),
                 "UPDATE api_keys SET revoked_at = %lld WHERE account_id = "
                 "%d AND revoked_at IS NULL",
                 (long long)now, USER_ID);
        if (store_exec(&fx.store, sql, &err) != 0)
            fail("revoking the user's API keys: %s", err.msg);
        rc = auth_apikey_create(&fx.store, USER_ID, "fuzz", now, &key, &err);
    }
    if (rc != 0)
        fail("restoring the user's API key: %s", err.msg);
    memcpy(fx.user_key, key.key, sizeof(fx.user_key));
    fx.user_key_id = key.id;
}

/* End each seeded credential that the input contains, so that
 * restore_fixture replaces it. libFuzzer learns these strings from the
 * comparisons that check them and puts them into inputs, which may store
 * them: in an account's email, for example. A replaced credential cannot
 * appear in a response unless the request contains it, which keeps
 * check_secrets meaningful. */
static void retire_exposed(const uint8_t *data, size_t size)
{
    struct browser *browsers[] = {&fx.user, &fx.admin};
    struct auth_apikey key;
    struct error err = {0};

    for (size_t i = 0; i < 2; i++) {
        struct browser *b = browsers[i];
        if (memmem(data, size, b->token, strlen(b->token)) != NULL &&
            auth_session_delete(&fx.store, b->token, &err) != 0)
            fail("ending an exposed session: %s", err.msg);
    }
    if (memmem(data, size, fx.user_key, strlen(fx.user_key)) != NULL &&
        auth_apikey_revoke(&fx.store, USER_ID, fx.user_key_id,
                           clock_realtime_ms(), &key, &err) != 0)
        fail("revoking an exposed API key: %s", err.msg);
}

static void restore_account(int64_t id)
{
    struct auth_account account;
    struct error err = {0};
    int64_t balance;

    if (auth_account_get(&fx.store, id, &account, &err) != 0)
        fail("reading account %lld: %s", (long long)id, err.msg);
    if (strcmp(account.plan, "pro") != 0 &&
        auth_account_set_plan(&fx.store, id, "pro", &account, &err) != 0)
        fail("restoring the plan of account %lld: %s", (long long)id, err.msg);
    if (ledger_balance(&fx.store, id, &balance, &err) != 0)
        fail("reading the balance of account %lld: %s", (long long)id, err.msg);
    if (balance < BALANCE_LOW)
        credit(&fx.store, id);
}

static void restore_models(void)
{
    struct error err = {0};
    sqlite3_stmt *stmt;
    int deleted = 0;

    if (sqlite3_prepare_v2(fx.store.db,
                           "SELECT COUNT(*) FROM models WHERE deleted = 1 "
                           "AND id IN (" SEEDED_MODELS ")",
                           -1, &stmt, NULL) != SQLITE_OK)
        fail("reading models: %s", sqlite3_errmsg(fx.store.db));
    if (sqlite3_step(stmt) == SQLITE_ROW)
        deleted = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    if (deleted > 0 && store_exec(&fx.store,
                                  "UPDATE models SET deleted = 0 WHERE id IN "
                                  "(" SEEDED_MODELS ")",
                                  &err) != 0)
        fail("restoring the seeded models: %s", err.msg);
}

/* Give back to the seeded accounts what an input can take away. */
static void restore_fixture(void)
{
    restore_session(&fx.user);
    restore_session(&fx.admin);
    restore_key();
    restore_account(ADMIN_ID);
    restore_account(USER_ID);
    restore_models();
}

/* ---- libFuzzer ----------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[PATH_MAX + 32];
    struct error err = {0};
    int backend_port;

    (void)argc;
    (void)argv;
    /* Errors only: the gateway and the backend log each rejected request
     * at a lower level. */
    log_init("fuzz", LOG_LEVEL_ERROR, 2);
    trace = getenv("FUZZ_REST_TRACE") != NULL;
    log_capture_sqlite();
    log_capture_lws();
    signal(SIGPIPE, SIG_IGN);

    make_folder();
    atexit(stop_all);
    backend_port = start_backend();
    start_gateway(backend_port);
    snprintf(path, sizeof(path), "%s/trainyard.db", fx.data);
    if (store_open(&fx.store, path, schema_sql, &err) != 0)
        fail("opening the database: %s", err.msg);
    setup_credentials();
    return 0;
}

/* Copy the path line into target: "$SHARE" becomes the share token, and
 * bytes that a request target cannot hold are percent-encoded. Returns 0,
 * or -1 when the result is over TARGET_MAX bytes. */
static int build_target(const char *path, size_t len, char *target)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0, token_len = strlen(fx.share_token);

    if (len == 0 || path[0] != '/')
        target[n++] = '/';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];

        if (len - i >= 6 && memcmp(path + i, "$SHARE", 6) == 0) {
            if (n + token_len > TARGET_MAX)
                return -1;
            memcpy(target + n, fx.share_token, token_len);
            n += token_len;
            i += 5;
        } else if (c <= 0x20 || c >= 0x7f || c == '#') {
            if (n + 3 > TARGET_MAX)
                return -1;
            target[n++] = '%';
            target[n++] = hex[c >> 4];
            target[n++] = hex[c & 15];
        } else {
            if (n + 1 > TARGET_MAX)
                return -1;
            target[n++] = (char)c;
        }
    }
    target[n] = '\0';
    return 0;
}

static int method_known(const char *method)
{
    for (int i = 0; known_methods[i] != NULL; i++)
        if (strcmp(method, known_methods[i]) == 0)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data + 3, *end = (const char *)data + size;
    const char *space, *newline;
    char method[16], target[TARGET_MAX + 1];
    struct request req;
    struct response resp = {0};

    if (size < 3)
        return 0;
    space = memchr(p, ' ', (size_t)(end - p));
    if (space == NULL || space == p || space - p >= (ptrdiff_t)sizeof(method))
        return 0;
    memcpy(method, p, (size_t)(space - p));
    method[space - p] = '\0';
    if (!method_known(method))
        return 0;
    p = space + 1;
    newline = memchr(p, '\n', (size_t)(end - p));
    if (newline == NULL)
        newline = end;
    if (build_target(p, (size_t)(newline - p), target) != 0)
        return 0;

    memset(&req, 0, sizeof(req));
    req.cred = (data[0] & 7) <= CRED_ADMIN ? (enum credential)(data[0] & 7)
                                           : CRED_NONE;
    req.content_type = content_types[data[1] & 7];
    req.framing = data[2] & 3;
    req.method = method;
    req.target = target;
    req.body = newline < end ? newline + 1 : end;
    req.body_len = (size_t)(end - req.body);

    run_request(&req, &resp);
    response_free(&resp);
    retire_exposed(data, size);
    restore_fixture();
    return 0;
}
