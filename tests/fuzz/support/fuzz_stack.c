/*
 * The in-process backend and gateway of the fuzz targets (see
 * fuzz_stack.h). Set-up steps call fuzz_fail on any error, because a
 * target cannot run without its stack.
 */
#include "fuzz_stack.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "daemon/auth_store.h"
#include "daemon/ledger.h"
#include "daemon/server.h"
#include "fsutil.h"
#include "fuzz_files.h"
#include "http.h"
#include "live.h"
#include "log.h"
#include "upstream.h"

/* How long set-up waits for a server to listen or connect, and for the
 * response to a sign-in. */
#define START_TIMEOUT_MS 20000
/* Largest sign-in response read. */
#define SIGNIN_RESPONSE_MAX 65536

#define SEEDED_MODELS "1, 2, 3, 4"

/* Balances under BALANCE_LOW get BALANCE_CREDIT more after an input. */
#define BALANCE_CREDIT (1000 * MICRO_PER_DOLLAR)
#define BALANCE_LOW (100 * MICRO_PER_DOLLAR)

/* Sizes of the seeded checkpoints: best fits one models.weights_chunk
 * (512 KiB), and last needs two, so downloads read a second chunk. */
#define BEST_CKPT_BYTES 3000
#define LAST_CKPT_BYTES (600 * 1024)

struct fuzz_stack fuzz_stack;

static struct {
    struct fuzz_stack_options opt;
    pthread_t backend_thread;
    int backend_started;
    int gateway_started;
} priv = {.opt = {.name = "fuzz"}};

/* ---- Failures ------------------------------------------------------------ */

void fuzz_print_excerpt(const char *label, const char *text, size_t len)
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

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: check failed: ", priv.opt.name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (priv.opt.report != NULL)
        priv.opt.report();
    abort();
}

/* ---- The data folder ----------------------------------------------------- */

static void make_folder(void)
{
    fuzz_temp_folder(priv.opt.name, fuzz_stack.dir, sizeof(fuzz_stack.dir));
    snprintf(fuzz_stack.data, sizeof(fuzz_stack.data), "%s/data",
             fuzz_stack.dir);
}

/* Write a file of size bytes under the data folder, with parents. */
static void write_file(const char *relative, size_t size)
{
    char path[PATH_MAX * 2], *slash;
    struct error err = {0};
    unsigned char *bytes = malloc(size);

    if (bytes == NULL)
        fuzz_fail("out of memory for %s", relative);
    for (size_t i = 0; i < size; i++)
        bytes[i] = (unsigned char)(i * 7 + 3);
    snprintf(path, sizeof(path), "%s/%s", fuzz_stack.data, relative);
    slash = strrchr(path, '/');
    *slash = '\0';
    if (fs_mkdir_p(path, 0700, &err) != 0)
        fuzz_fail("%s", err.msg);
    *slash = '/';
    if (fs_write_atomic(path, bytes, size, 0600, &err) != 0)
        fuzz_fail("%s", err.msg);
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
 * at once with executor_none. Then the target's own tick, if any. */
static void backend_tick(struct backend *be)
{
    sessions_poll(be->sessions, clock_monotonic_ms());
    if (priv.opt.tick != NULL)
        priv.opt.tick(be);
}

static void *backend_main(void *arg)
{
    struct server_options *opt = arg;
    struct error err = {0};

    if (server_run(&fuzz_stack.be, opt, &err) != 0)
        fuzz_fail("backend: %s", err.msg);
    return NULL;
}

static void seed_sql(const char *sql)
{
    struct error err = {0};

    if (store_exec(&fuzz_stack.be.store, sql, &err) != 0)
        fuzz_fail("seeding the database: %s", err.msg);
}

static void seed_account(const char *email, const char *role, const char *plan,
                         int64_t expected_id)
{
    char hash[AUTH_HASH_MAX];
    struct auth_account made;
    struct error err = {0};

    if (auth_password_hash(FUZZ_PASSWORD, hash, &err) != 0 ||
        auth_account_create(&fuzz_stack.be.store, email, hash, role, plan,
                            &made, &err) != 0)
        fuzz_fail("seeding account %s: %s", email, err.msg);
    if (made.id != expected_id)
        fuzz_fail("account %s has id %lld, expected %lld", email,
                  (long long)made.id, (long long)expected_id);
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
        fuzz_fail("crediting account %lld: %s", (long long)account, err.msg);
}

/* Accounts, data sets, models, sessions with checkpoints and a billed
 * epoch, as fuzz_stack.h lists them. */
static void seed(void)
{
    struct auth_apikey key;
    struct ledger_entry charge = {0};
    struct error err = {0};
    int64_t id;
    int duplicate;

    seed_account(FUZZ_ADMIN_EMAIL, "admin", "pro", FUZZ_ADMIN_ID);
    seed_account(FUZZ_USER_EMAIL, "user", "pro", FUZZ_USER_ID);
    seed_account(FUZZ_OTHER_EMAIL, "user", "free", FUZZ_OTHER_ID);
    credit(&fuzz_stack.be.store, FUZZ_ADMIN_ID);
    credit(&fuzz_stack.be.store, FUZZ_USER_ID);
    credit(&fuzz_stack.be.store, FUZZ_OTHER_ID);
    if (auth_apikey_create(&fuzz_stack.be.store, FUZZ_OTHER_ID, "other", 0,
                           &key, &err) != 0)
        fuzz_fail("seeding an API key: %s", err.msg);
    if (key.id != FUZZ_OTHER_KEY_ID)
        fuzz_fail("account 3's API key has id %lld", (long long)key.id);

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

    charge.account_id = FUZZ_USER_ID;
    charge.kind = LEDGER_CHARGE;
    charge.amount = -5000;
    charge.idempotency_key = "epoch:1:1";
    charge.session_id = 1;
    charge.model_id = 1;
    charge.epoch = 1;
    charge.rate = 500000;
    charge.seconds = 36.0;
    charge.description = "epoch 1";
    if (ledger_append(&fuzz_stack.be.store, &charge, &id, &duplicate, &err) !=
        0)
        fuzz_fail("seeding a charge: %s", err.msg);
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
    fuzz_fail("no port in %s after %d ms", path, START_TIMEOUT_MS);
}

/* Open, seed and start the backend; returns its port. */
static int start_backend(void)
{
    static struct server_options opt;
    static char port_file[PATH_MAX + 16];
    struct backend *be = &fuzz_stack.be;
    struct error err = {0};

    config_defaults(&be->config);
    if (strlen(fuzz_stack.data) >= sizeof(be->config.data_dir))
        fuzz_fail("the data folder %s is too long; set a shorter TMPDIR",
                  fuzz_stack.data);
    memcpy(be->config.data_dir, fuzz_stack.data, strlen(fuzz_stack.data) + 1);
    snprintf(be->config.payment_provider, sizeof(be->config.payment_provider),
             "test");
    be->data_dir = be->config.data_dir;
    be->started_ms = clock_monotonic_ms();
    if (backend_open(be, &err) != 0)
        fuzz_fail("backend: %s", err.msg);
    seed();
    if (priv.opt.seed != NULL)
        priv.opt.seed(&be->store);
    be->executor = executor_none;
    if (backend_open_sessions(be, &err) != 0)
        fuzz_fail("backend: %s", err.msg);
    be->on_tick = backend_tick;

    snprintf(port_file, sizeof(port_file), "%s/backend.port", fuzz_stack.dir);
    opt.host = "127.0.0.1";
    opt.port = 0;
    opt.unix_socket = NULL;
    opt.port_file = port_file;
    if (pthread_create(&priv.backend_thread, NULL, backend_main, &opt) != 0)
        fuzz_fail("cannot start the backend thread");
    priv.backend_started = 1;
    return wait_port(port_file);
}

static void start_gateway(int backend_port)
{
    static char ui[PATH_MAX + 8], port_file[PATH_MAX + 16];
    struct live_options lopt = {priv.opt.live_connections,
                                priv.opt.live_ping_interval_s};
    struct upstream_options uopt = {"127.0.0.1", backend_port,
                                    fuzz_stack.be.secret};
    struct http_options hopt;
    struct error err = {0};
    int64_t deadline;

    snprintf(ui, sizeof(ui), "%s/ui", fuzz_stack.dir);
    if (mkdir(ui, 0700) != 0)
        fuzz_fail("cannot create %s: %s", ui, strerror(errno));
    snprintf(port_file, sizeof(port_file), "%s/gateway.port", fuzz_stack.dir);
    memset(&hopt, 0, sizeof(hopt));
    hopt.host = "127.0.0.1";
    hopt.port = 0;
    hopt.ui_dir = ui;
    hopt.port_file = port_file;

    /* Each allowed live connection costs civetweb a worker thread. */
    live_configure(&lopt);
    if (upstream_start(&uopt, &err) != 0)
        fuzz_fail("gateway: %s", err.msg);
    deadline = clock_monotonic_ms() + START_TIMEOUT_MS;
    while (!upstream_ready()) {
        if (clock_monotonic_ms() > deadline)
            fuzz_fail("the gateway did not connect to the backend in %d ms",
                      START_TIMEOUT_MS);
        usleep(10000);
    }
    if (http_start(&hopt, &err) != 0)
        fuzz_fail("gateway: %s", err.msg);
    priv.gateway_started = 1;
    fuzz_stack.gateway_port = wait_port(port_file);
}

static void stop_all(void)
{
    if (priv.gateway_started) {
        http_stop();
        upstream_stop();
    }
    if (priv.backend_started) {
        server_request_stop();
        pthread_join(priv.backend_thread, NULL);
        backend_close(&fuzz_stack.be);
    }
    store_close(&fuzz_stack.store);
    if (fuzz_stack.dir[0] != '\0')
        fuzz_remove_tree(fuzz_stack.dir);
}

/* ---- Sign-in ------------------------------------------------------------- */

/* Send request on a new connection to the gateway and read the response
 * until the gateway closes the connection. Returns the response,
 * NUL-terminated, to free with free(). */
static char *http_exchange(const char *request)
{
    struct sockaddr_in addr;
    int64_t deadline = clock_monotonic_ms() + START_TIMEOUT_MS;
    size_t len = 0, sent = 0, total = strlen(request);
    char *in = malloc(SIGNIN_RESPONSE_MAX + 1);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (in == NULL || fd < 0)
        fuzz_fail("no memory or socket for a sign-in: %s", strerror(errno));
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)fuzz_stack.gateway_port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        fuzz_fail("cannot connect to the gateway: %s", strerror(errno));
    while (sent < total) {
        ssize_t n = send(fd, request + sent, total - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fuzz_fail("sending a sign-in failed: %s", strerror(errno));
        sent += (size_t)n;
    }
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int64_t left = deadline - clock_monotonic_ms();
        int ready = left > 0 ? poll(&pfd, 1, (int)left) : 0;
        ssize_t n;

        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0)
            fuzz_fail("no sign-in response within %d ms", START_TIMEOUT_MS);
        n = recv(fd, in + len, SIGNIN_RESPONSE_MAX - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == SIGNIN_RESPONSE_MAX)
            fuzz_fail("sign-in response over %d bytes", SIGNIN_RESPONSE_MAX);
    }
    close(fd);
    in[len] = '\0';
    return in;
}

/* Sign in through the API and keep the session cookie and CSRF token. */
static void signin(struct fuzz_browser *b, const char *email, int64_t account)
{
    static const char cookie_prefix[] = "\r\nSet-Cookie: " AUTH_COOKIE_NAME "=";
    char body[256], request[1024];
    const char *cookie, *blank, *csrf;
    char *response;
    cJSON *json;
    int status = 0;

    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}",
             email, FUZZ_PASSWORD);
    snprintf(request, sizeof(request),
             "POST /api/v1/auth/signin HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
             "Connection: close\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             fuzz_stack.gateway_port, strlen(body), body);
    response = http_exchange(request);
    blank = strstr(response, "\r\n\r\n");
    if (sscanf(response, "HTTP/1.1 %d ", &status) != 1 || status != 200 ||
        blank == NULL)
        fuzz_fail("sign-in of %s got status %d, expected 200", email, status);

    cookie = strcasestr(response, cookie_prefix);
    if (cookie == NULL || cookie > blank ||
        strcspn(cookie + strlen(cookie_prefix), ";\r") != AUTH_TOKEN_LEN)
        fuzz_fail("sign-in set no session cookie");
    memcpy(b->token, cookie + strlen(cookie_prefix), AUTH_TOKEN_LEN);
    b->token[AUTH_TOKEN_LEN] = '\0';

    json = cJSON_Parse(blank + 4);
    csrf = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "csrf"));
    if (csrf == NULL || strlen(csrf) != AUTH_TOKEN_LEN)
        fuzz_fail("the sign-in response has no CSRF token");
    memcpy(b->csrf, csrf, AUTH_TOKEN_LEN + 1);
    b->account = account;
    cJSON_Delete(json);
    free(response);
}

void fuzz_stack_start(const struct fuzz_stack_options *opt)
{
    char path[PATH_MAX + 32];
    struct error err = {0};
    int backend_port;

    priv.opt = *opt;
    /* Errors only: the gateway and the backend log each rejected request
     * at a lower level. */
    log_init("fuzz", LOG_LEVEL_ERROR, 2);
    log_capture_sqlite();
    log_capture_lws();
    signal(SIGPIPE, SIG_IGN);

    make_folder();
    atexit(stop_all);
    backend_port = start_backend();
    start_gateway(backend_port);
    snprintf(path, sizeof(path), "%s/trainyard.db", fuzz_stack.data);
    if (store_open(&fuzz_stack.store, path, schema_sql, &err) != 0)
        fuzz_fail("opening the database: %s", err.msg);
    signin(&fuzz_stack.user, FUZZ_USER_EMAIL, FUZZ_USER_ID);
    signin(&fuzz_stack.admin, FUZZ_ADMIN_EMAIL, FUZZ_ADMIN_ID);
}

/* ---- Restoring the seeded accounts --------------------------------------- */

static void restore_session(struct fuzz_browser *b)
{
    struct auth_session session;
    struct error err = {0};
    int64_t now = clock_realtime_ms();

    if (auth_session_lookup(&fuzz_stack.store, b->token, now, &session, &err) ==
        0)
        return;
    if (auth_session_create(&fuzz_stack.store, b->account, now, &session,
                            &err) != 0)
        fuzz_fail("restoring a session of account %lld: %s",
                  (long long)b->account, err.msg);
    memcpy(b->token, session.token, sizeof(b->token));
    memcpy(b->csrf, session.csrf, sizeof(b->csrf));
}

void fuzz_stack_retire_exposed(const uint8_t *data, size_t size)
{
    struct fuzz_browser *browsers[] = {&fuzz_stack.user, &fuzz_stack.admin};
    struct error err = {0};

    for (size_t i = 0; i < 2; i++) {
        struct fuzz_browser *b = browsers[i];
        if (memmem(data, size, b->token, strlen(b->token)) != NULL &&
            auth_session_delete(&fuzz_stack.store, b->token, &err) != 0)
            fuzz_fail("ending an exposed session: %s", err.msg);
    }
}

static void restore_account(int64_t id)
{
    struct auth_account account;
    struct error err = {0};
    int64_t balance;

    if (auth_account_get(&fuzz_stack.store, id, &account, &err) != 0)
        fuzz_fail("reading account %lld: %s", (long long)id, err.msg);
    if (strcmp(account.plan, "pro") != 0 &&
        auth_account_set_plan(&fuzz_stack.store, id, "pro", &account, &err) !=
            0)
        fuzz_fail("restoring the plan of account %lld: %s", (long long)id,
                  err.msg);
    if (ledger_balance(&fuzz_stack.store, id, &balance, &err) != 0)
        fuzz_fail("reading the balance of account %lld: %s", (long long)id,
                  err.msg);
    if (balance < BALANCE_LOW)
        credit(&fuzz_stack.store, id);
}

static void restore_models(void)
{
    sqlite3 *db = fuzz_stack.store.db;
    struct error err = {0};
    sqlite3_stmt *stmt;
    int deleted = 0;

    if (sqlite3_prepare_v2(db,
                           "SELECT COUNT(*) FROM models WHERE deleted = 1 "
                           "AND id IN (" SEEDED_MODELS ")",
                           -1, &stmt, NULL) != SQLITE_OK)
        fuzz_fail("reading models: %s", sqlite3_errmsg(db));
    if (sqlite3_step(stmt) == SQLITE_ROW)
        deleted = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    if (deleted > 0 && store_exec(&fuzz_stack.store,
                                  "UPDATE models SET deleted = 0 WHERE id IN "
                                  "(" SEEDED_MODELS ")",
                                  &err) != 0)
        fuzz_fail("restoring the seeded models: %s", err.msg);
}

void fuzz_stack_restore(void)
{
    restore_session(&fuzz_stack.user);
    restore_session(&fuzz_stack.admin);
    restore_account(FUZZ_ADMIN_ID);
    restore_account(FUZZ_USER_ID);
    restore_models();
}
