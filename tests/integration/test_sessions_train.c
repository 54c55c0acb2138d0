/*
 * Training sessions end to end with the real train program (the ASan
 * build, or the one in $TRAINYARD_BIN). The data set is generated: 3
 * classes of 12 training and 4 validation PNGs of 16x16, trained with
 * batch 8, so an epoch is 5 batches.
 *
 * Each test opens a new database and a sessions context with the local
 * executor and drives it with sessions_poll, as the backend's service
 * loop does. The tests wait for the trainer's own events (read back from
 * progress_events) before they stop, kill or pause it, so they depend on
 * no timing except generous time limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "daemon/executor.h"
#include "daemon/ledger.h"
#include "daemon/sessions.h"
#include "daemon/store.h"
#include "embedded.h"
#include "engine/image.h"
#include "fsutil.h"
#include "harness.h"

#define CLASSES 3
#define TRAIN_PER_CLASS 12
#define VAL_PER_CLASS 4
#define SIZE 16
#define USD(x) ((int64_t)((x)*1000000.0 + 0.5))
/* Maximum wait for any one step, generous for a loaded machine. */
#define STEP_TIMEOUT_MS 60000

static char workdir[PATH_MAX];
static char data_dir[PATH_MAX + 8];
static char model_yaml[PATH_MAX];
static char train_program[PATH_MAX];

/* ---- Data set ----------------------------------------------------------- */

/* Class 0 is a horizontal ramp, class 1 a vertical ramp, class 2 a
 * checker pattern, each with a per-image offset. */
static void write_class_images(const char *split, int per_class)
{
    unsigned char px[SIZE * SIZE * 3];
    char dir[PATH_MAX + 64], path[PATH_MAX + 96];
    struct error err = {0};

    for (int c = 0; c < CLASSES; c++) {
        snprintf(dir, sizeof(dir), "%s/sets/tiny/%s/c%d", data_dir, split, c);
        assert_int_equal(fs_mkdir_p(dir, 0755, &err), 0);
        for (int i = 0; i < per_class; i++) {
            for (int y = 0; y < SIZE; y++) {
                for (int x = 0; x < SIZE; x++) {
                    int v = (x ^ y) * 15;
                    if (c == 0)
                        v = x * 15;
                    else if (c == 1)
                        v = y * 15;
                    for (int ch = 0; ch < 3; ch++)
                        px[(y * SIZE + x) * 3 + ch] =
                            (unsigned char)((v + 5 * i + ch) & 255);
                }
            }
            snprintf(path, sizeof(path), "%s/%02d.png", dir, i);
            assert_int_equal(image_write_png(path, px, SIZE, SIZE, 3, 8, &err),
                             0);
        }
    }
}

static int make_dataset(void **state)
{
    (void)state;
    harness_tmpdir(workdir, sizeof(workdir));
    snprintf(data_dir, sizeof(data_dir), "%s/data", workdir);
    write_class_images("train", TRAIN_PER_CLASS);
    write_class_images("val", VAL_PER_CLASS);
    if (realpath("tests/fixtures/tiny-cls.yaml", model_yaml) == NULL)
        fail_msg("tests/fixtures/tiny-cls.yaml not found: run the test "
                 "from the repository root");
    harness_program("train", train_program, sizeof(train_program));
    if (access(train_program, X_OK) != 0)
        fail_msg("train program '%s' not found; build it (make test) or "
                 "set TRAINYARD_BIN",
                 train_program);
    return 0;
}

static int remove_dataset(void **state)
{
    (void)state;
    if (getenv("KEEP") == NULL)
        harness_rmtree(workdir);
    return 0;
}

/* ---- A backend: database and sessions ------------------------------------ */

struct world {
    char db_path[PATH_MAX + 64];
    struct store st;
    struct sessions *s;
};

static int test_number;

static void exec_sql(struct store *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void exec_sql(struct store *st, const char *fmt, ...)
{
    char sql[4096];
    char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("SQL failed: %s: %s", msg, sql);
}

static int64_t query_int(struct store *st, const char *fmt, ...)
{
    char sql[1024];
    sqlite3_stmt *stmt;
    int64_t value = -1;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    assert_int_equal(sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL),
                     SQLITE_OK);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        value = sqlite3_column_type(stmt, 0) == SQLITE_NULL
                    ? 0
                    : sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
}

static const char *query_text(struct store *st, char *out, size_t len,
                              const char *fmt, ...)
{
    char sql[1024];
    sqlite3_stmt *stmt;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    out[0] = '\0';
    assert_int_equal(sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL),
                     SQLITE_OK);
    if (sqlite3_step(stmt) == SQLITE_ROW &&
        sqlite3_column_text(stmt, 0) != NULL)
        snprintf(out, len, "%s", sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    return out;
}

static void credit(struct store *st, int64_t account, int64_t amount)
{
    struct ledger_entry e = {.account_id = account,
                             .kind = LEDGER_CREDIT,
                             .amount = amount,
                             .description = "test top-up"};
    struct error err = {0};
    int64_t id;
    int dup;

    if (ledger_append(st, &e, &id, &dup, &err) != 0)
        fail_msg("%s", err.msg);
}

static int64_t balance_of(struct store *st, int64_t account)
{
    struct error err = {0};
    int64_t b = -1;

    assert_int_equal(ledger_balance(st, account, &b, &err), 0);
    return b;
}

static void open_sessions(struct world *w, int64_t heartbeat_ms)
{
    struct sessions_config cfg;
    struct error err = {0};

    sessions_config_defaults(&cfg);
    cfg.data_dir = data_dir;
    cfg.train_program = train_program;
    cfg.train_threads = 2;
    cfg.stop_timeout_ms = 30000;
    if (heartbeat_ms > 0)
        cfg.heartbeat_timeout_ms = heartbeat_ms;
    if (sessions_open(&w->s, &w->st, executor_local(), &cfg, &err) != 0)
        fail_msg("%s", err.msg);
}

/* Account 1 (pro) with balance, an instance type at rate micro-dollars
 * per hour, the tiny data set and model 1 on it. */
static void make_world(struct world *w, int64_t rate, int64_t balance)
{
    struct error err = {0};

    memset(w, 0, sizeof(*w));
    snprintf(w->db_path, sizeof(w->db_path), "%s/test%d.db", workdir,
             ++test_number);
    if (store_open(&w->st, w->db_path, schema_sql, &err) != 0)
        fail_msg("%s", err.msg);
    exec_sql(&w->st,
             "INSERT INTO accounts (id, email, plan, created_at) VALUES "
             "(1, 'pro@example.com', 'pro', 0);"
             "INSERT INTO instance_types (id, name, device, price_per_hour, "
             "capacity) VALUES (1, 'cpu', 'cpu', %lld, 2);"
             "INSERT INTO datasets (id, account_id, name, task, path, "
             "created_at) VALUES (1, 1, 'tiny', 'classify', 'sets/tiny', 0);"
             "INSERT INTO models (id, account_id, dataset_id, name, task, "
             "architecture, args, created_at) VALUES (1, 1, 1, 'tiny', "
             "'classify', '%s', '{\"imgsz\": 16, \"batch\": 8}', 0);",
             (long long)rate, model_yaml);
    if (balance > 0)
        credit(&w->st, 1, balance);
    open_sessions(w, 0);
}

static void close_world(struct world *w)
{
    sessions_close(w->s);
    store_close(&w->st);
}

static int64_t start_epochs(struct world *w, int epochs)
{
    struct sessions_start_request req = {
        1, 1, 1, SESSION_MODE_EPOCHS, epochs, 0, SESSION_PAY_BALANCE};
    struct error err = {0};
    int64_t id = 0;

    if (sessions_start(w->s, &req, &id, &err) != 0)
        fail_msg("start failed: %s", err.msg);
    return id;
}

static const char *state_of(struct world *w, int64_t id)
{
    static char text[32];
    return query_text(&w->st, text, sizeof(text),
                      "SELECT state FROM sessions WHERE id = %lld",
                      (long long)id);
}

static const char *reason_of(struct world *w, int64_t id)
{
    static char text[512];
    return query_text(&w->st, text, sizeof(text),
                      "SELECT reason FROM sessions WHERE id = %lld",
                      (long long)id);
}

static void poll_once(struct world *w)
{
    sessions_poll(w->s, clock_monotonic_ms());
    usleep(20 * 1000);
}

/* Poll until the session is in state and no trainer runs. */
static void run_until_state(struct world *w, int64_t id, const char *state)
{
    int64_t deadline = clock_monotonic_ms() + STEP_TIMEOUT_MS;

    while (clock_monotonic_ms() < deadline) {
        poll_once(w);
        if (strcmp(state_of(w, id), state) == 0 && sessions_running(w->s) == 0)
            return;
    }
    fail_msg("session %lld is %s (%s), not %s, after %d ms", (long long)id,
             state_of(w, id), reason_of(w, id), state, STEP_TIMEOUT_MS);
}

/* Poll until the model has a stored event of kind whose payload contains
 * needle (NULL: any), newer than seq after. Returns its seq. */
static int64_t run_until_event(struct world *w, const char *kind,
                               const char *needle, int64_t after)
{
    int64_t deadline = clock_monotonic_ms() + STEP_TIMEOUT_MS;

    while (clock_monotonic_ms() < deadline) {
        poll_once(w);
        int64_t seq =
            query_int(&w->st,
                      "SELECT MIN(seq) FROM progress_events "
                      "WHERE model_id = 1 AND kind = '%s' AND "
                      "seq > %lld AND payload LIKE '%%%s%%'",
                      kind, (long long)after, needle != NULL ? needle : "");
        if (seq > 0)
            return seq;
    }
    fail_msg("no %s event with '%s' within %d ms", kind, needle ? needle : "",
             STEP_TIMEOUT_MS);
    return -1;
}

static void expect_ledger_consistent(struct world *w)
{
    assert_int_equal(query_int(&w->st, "SELECT SUM(amount) FROM ledger "
                                       "WHERE account_id = 1"),
                     balance_of(&w->st, 1));
}

/* Every epoch 1..epochs has one row and exactly one charge row of its
 * own key, equal to the row's cost. */
static void expect_epochs_charged_once(struct world *w, int64_t id, int epochs)
{
    assert_int_equal(query_int(&w->st,
                               "SELECT COUNT(*) FROM epochs "
                               "WHERE session_id = %lld",
                               (long long)id),
                     epochs);
    for (int e = 1; e <= epochs; e++) {
        assert_int_equal(query_int(&w->st,
                                   "SELECT COUNT(*) FROM ledger WHERE "
                                   "idempotency_key = 'epoch:%lld:%d'",
                                   (long long)id, e),
                         1);
        assert_int_equal(query_int(&w->st,
                                   "SELECT -amount FROM ledger WHERE "
                                   "idempotency_key = 'epoch:%lld:%d'",
                                   (long long)id, e),
                         query_int(&w->st,
                                   "SELECT cost FROM epochs WHERE "
                                   "session_id = %lld AND epoch = %d",
                                   (long long)id, e));
    }
}

/* 1 while pid runs; a zombie that no one reaped counts as ended. */
static int process_alive(pid_t pid)
{
    char path[64], text[512];
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    char *end = strrchr(text, ')');
    return end != NULL && end[1] == ' ' && end[2] != 'Z';
}

/* SIGKILL takes effect asynchronously: wait up to 10 s for the end. */
static void expect_process_ends(pid_t pid)
{
    int64_t deadline = clock_monotonic_ms() + 10000;

    while (process_alive(pid) && clock_monotonic_ms() < deadline)
        usleep(10 * 1000);
    assert_false(process_alive(pid));
}

/* The trainer's pid. It must be set: kill(0, ...) would signal the test
 * itself. Only sessions_poll reaps trainers, so the pid cannot be reused
 * before the next poll. */
static pid_t pid_of(struct world *w, int64_t id)
{
    int64_t pid = query_int(&w->st, "SELECT pid FROM sessions WHERE id = %lld",
                            (long long)id);

    if (pid <= 1)
        fail_msg("session %lld has no trainer (%s)", (long long)id,
                 state_of(w, id));
    return (pid_t)pid;
}

/* ---- Tests ------------------------------------------------------------------
 */

static void epochs_charged_at_rate(void **state)
{
    struct world w;
    sqlite3_stmt *stmt;
    char csv[PATH_MAX + 64], run_dir[PATH_MAX];
    int64_t rate = USD(3600); /* $1 a second */

    (void)state;
    make_world(&w, rate, USD(100));
    int64_t id = start_epochs(&w, 3);
    run_until_state(&w, id, "completed");

    expect_epochs_charged_once(&w, id, 3);
    assert_int_equal(sqlite3_prepare_v2(w.st.db,
                                        "SELECT seconds, cost FROM epochs "
                                        "ORDER BY epoch",
                                        -1, &stmt, NULL),
                     SQLITE_OK);
    int64_t total = 0;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        double seconds = sqlite3_column_double(stmt, 0);
        int64_t cost = sqlite3_column_int64(stmt, 1);
        assert_true(seconds > 0);
        assert_int_equal(cost, billing_cost(seconds, rate));
        total += cost;
    }
    sqlite3_finalize(stmt);
    assert_int_equal(balance_of(&w.st, 1), USD(100) - total);
    expect_ledger_consistent(&w);
    assert_int_equal(query_int(&w.st, "SELECT epochs_done FROM sessions"), 3);

    /* The event stream: start, three epochs, done, in order. */
    int64_t start = run_until_event(&w, "start", NULL, 0);
    int64_t done = run_until_event(&w, "done", "completed", 0);
    assert_true(start < done);
    assert_int_equal(query_int(&w.st, "SELECT COUNT(*) FROM progress_events "
                                      "WHERE kind = 'epoch'"),
                     3);
    query_text(&w.st, run_dir, sizeof(run_dir), "SELECT run_dir FROM sessions");
    snprintf(csv, sizeof(csv), "%s/results.csv", run_dir);
    assert_true(harness_file_contains(csv, "metrics/accuracy_top1"));
    close_world(&w);
}

static void pause_then_topup_completes(void **state)
{
    struct world w;
    struct error err = {0};

    (void)state;
    /* $1,000,000 an hour: the first epoch costs more than the $5 there
     * is, takes all of it, and the session pauses. */
    make_world(&w, USD(1000000), USD(5));
    int64_t id = start_epochs(&w, 4);
    run_until_state(&w, id, "paused");
    assert_non_null(
        strstr(reason_of(&w, id), "balance too low for the next epoch ($"));
    assert_int_equal(balance_of(&w.st, 1), 0);
    /* Epoch 1 at least; a later one when SIGTERM came at its last
     * batch, and the trainer finished it first. */
    int done = (int)query_int(&w.st, "SELECT epochs_done FROM sessions");
    assert_true(done >= 1 && done < 4);
    expect_epochs_charged_once(&w, id, done);
    expect_ledger_consistent(&w);

    assert_int_equal(sessions_resume(w.s, 1, 1, NULL, &err), -ENOSPC);
    credit(&w.st, 1, USD(1000000));
    assert_int_equal(sessions_resume(w.s, 1, 1, NULL, &err), 0);
    run_until_state(&w, id, "completed");
    expect_epochs_charged_once(&w, id, 4);
    expect_ledger_consistent(&w);
    close_world(&w);
}

static void stop_then_resume_completes(void **state)
{
    struct world w;
    struct error err = {0};
    char ckpt[PATH_MAX];

    (void)state;
    make_world(&w, USD(3600), USD(100));
    int64_t id = start_epochs(&w, 5);
    /* Stop during epoch 2; the trainer stops after its current batch. */
    run_until_event(&w, "batch", "\"epoch\":2", 0);
    assert_int_equal(sessions_stop(w.s, 1, 1, &err), 0);
    run_until_state(&w, id, "stopped");
    query_text(&w.st, ckpt, sizeof(ckpt), "SELECT checkpoint FROM sessions");
    assert_non_null(strstr(ckpt, "/weights/last.ckpt"));
    int done = (int)query_int(&w.st, "SELECT epochs_done FROM sessions");
    assert_true(done >= 1 && done < 5);
    /* A stop inside an epoch saves its position (batch > 0) and charges
     * nothing for the unfinished epoch; a stop at an epoch's last batch
     * ends the epoch first. */
    int64_t mid = query_int(&w.st, "SELECT COUNT(*) FROM checkpoints "
                                   "WHERE batch > 0");
    assert_true(mid <= 1);
    assert_int_equal(query_int(&w.st,
                               "SELECT COUNT(*) FROM ledger WHERE "
                               "kind = 'charge' AND epoch = %d",
                               done + 1),
                     0);

    assert_int_equal(sessions_resume(w.s, 1, 1, NULL, &err), 0);
    run_until_event(&w, "start", "\"resumed\":true", 0);
    run_until_state(&w, id, "completed");
    expect_epochs_charged_once(&w, id, 5);
    expect_ledger_consistent(&w);
    close_world(&w);
}

static void kill9_fails_then_resumes(void **state)
{
    struct world w;
    struct error err = {0};

    (void)state;
    make_world(&w, USD(3600), USD(100));
    int64_t id = start_epochs(&w, 5);
    run_until_event(&w, "batch", "\"epoch\":2", 0);
    assert_int_equal(kill(-pid_of(&w, id), SIGKILL), 0);
    run_until_state(&w, id, "failed");
    assert_string_equal(reason_of(&w, id), "killed by signal 9");

    /* The unfinished epoch has no row and no charge. */
    int done = (int)query_int(&w.st, "SELECT epochs_done FROM sessions");
    assert_true(done >= 1 && done < 5);
    expect_epochs_charged_once(&w, id, done);
    assert_int_equal(query_int(&w.st, "SELECT COUNT(*) FROM ledger WHERE "
                                      "kind = 'charge'"),
                     done);

    assert_int_equal(sessions_resume(w.s, 1, 1, NULL, &err), 0);
    run_until_state(&w, id, "completed");
    expect_epochs_charged_once(&w, id, 5);
    assert_int_equal(query_int(&w.st, "SELECT COUNT(*) FROM ledger WHERE "
                                      "kind = 'charge'"),
                     5);
    expect_ledger_consistent(&w);
    close_world(&w);
}

/* A backend in a child process that trains until epoch 1 is recorded;
 * the test then kills it with SIGKILL, as a crash would. */
static pid_t run_backend_child(struct world *w, int64_t *session)
{
    pid_t pid;

    *session = start_epochs(w, 5);
    /* The child must not share the parent's SQLite connection. */
    sessions_close(w->s);
    store_close(&w->st);
    pid = fork();
    if (pid == 0) {
        struct error err = {0};
        if (store_open(&w->st, w->db_path, schema_sql, &err) != 0)
            _exit(2);
        open_sessions(w, 0);
        for (;;)
            poll_once(w);
    }
    struct error err = {0};
    if (store_open(&w->st, w->db_path, schema_sql, &err) != 0)
        fail_msg("%s", err.msg);
    return pid;
}

static void reconcile_after_backend_crash(void **state)
{
    struct world w;
    struct error err = {0};
    int64_t id, deadline = clock_monotonic_ms() + STEP_TIMEOUT_MS;
    int status;

    (void)state;
    make_world(&w, USD(3600), USD(100));
    pid_t backend = run_backend_child(&w, &id);
    while (query_int(&w.st, "SELECT epochs_done FROM sessions") < 1 &&
           clock_monotonic_ms() < deadline)
        usleep(20 * 1000);
    assert_int_equal(query_int(&w.st, "SELECT epochs_done FROM sessions"), 1);
    pid_t trainer = pid_of(&w, id);
    kill(backend, SIGKILL);
    assert_int_equal(waitpid(backend, &status, 0), backend);
    assert_string_equal(state_of(&w, id), "training");

    /* The next backend finds the session training with a pid whose
     * process died with its parent (PR_SET_PDEATHSIG). */
    open_sessions(&w, 0);
    assert_int_equal(sessions_reconcile(w.s, &err), 1);
    assert_string_equal(state_of(&w, id), "failed");
    assert_string_equal(reason_of(&w, id), "the backend restarted during "
                                           "training; resume to continue");
    expect_process_ends(trainer);

    /* The trainer may have finished more epochs before it died, and their
     * events were lost with the backend. The resumed run then records
     * them from the checkpoint, with an estimated duration. Either way
     * every epoch is charged exactly once. */
    assert_int_equal(sessions_resume(w.s, 1, 1, NULL, &err), 0);
    run_until_event(&w, "start", "\"resumed\":true", 0);
    run_until_state(&w, id, "completed");
    expect_epochs_charged_once(&w, id, 5);
    expect_ledger_consistent(&w);
    close_world(&w);
}

static void reconcile_kills_live_trainer(void **state)
{
    const struct executor *ex = executor_local();
    struct executor_job *job = NULL;
    struct executor_status st = {EXECUTOR_RUNNING, 0};
    struct world w;
    struct error err = {0};
    char data[PATH_MAX + 32], model[PATH_MAX + 16], project[PATH_MAX + 16];
    char log[PATH_MAX + 16];
    char *argv[] = {train_program,   data,      model,   "epochs=50",
                    "imgsz=16",      "batch=8", project, "name=orphan",
                    "exist_ok=true", NULL};

    (void)state;
    make_world(&w, USD(3600), USD(100));
    /* A trainer that an earlier backend started and lost. */
    snprintf(data, sizeof(data), "data=%s/sets/tiny", data_dir);
    snprintf(model, sizeof(model), "model=%s", model_yaml);
    snprintf(project, sizeof(project), "project=%s/runs", workdir);
    snprintf(log, sizeof(log), "%s/orphan.log", workdir);
    assert_int_equal(ex->start(ex, argv, NULL, log, &job, &err), 0);
    exec_sql(&w.st,
             "INSERT INTO sessions (id, model_id, account_id, "
             "instance_type_id, mode, state, epochs, rate, pid, created_at, "
             "updated_at) VALUES (7, 1, 1, 1, 'epochs', 'training', 50, 1, "
             "%lld, 0, 0)",
             (long long)ex->job_id(job));

    assert_int_equal(sessions_reconcile(w.s, &err), 1);
    assert_string_equal(state_of(&w, 7), "failed");
    int64_t deadline = clock_monotonic_ms() + STEP_TIMEOUT_MS;
    while (st.state == EXECUTOR_RUNNING && clock_monotonic_ms() < deadline) {
        assert_int_equal(ex->poll(job, &st, &err), 0);
        usleep(10 * 1000);
    }
    assert_int_equal(st.state, EXECUTOR_SIGNALED);
    assert_int_equal(st.code, SIGKILL);
    ex->close(job);
    assert_int_equal(query_int(&w.st, "SELECT COUNT(*) FROM ledger WHERE "
                                      "kind = 'charge'"),
                     0);
    close_world(&w);
}

static void timed_refunds_unused_time(void **state)
{
    struct sessions_start_request req = {
        1, 1, 1, SESSION_MODE_TIMED, 50, 3600 * 1000, SESSION_PAY_BALANCE};
    struct world w;
    struct error err = {0};
    int64_t id;

    (void)state;
    /* One hour at $36 an hour. */
    make_world(&w, USD(36), USD(100));
    assert_int_equal(sessions_start(w.s, &req, &id, &err), 0);
    assert_int_equal(balance_of(&w.st, 1), USD(64));
    run_until_event(&w, "epoch", NULL, 0);
    /* Timed epochs are prepaid: nothing more is charged. */
    assert_int_equal(balance_of(&w.st, 1), USD(64));
    assert_int_equal(sessions_stop(w.s, 1, 1, &err), 0);
    run_until_state(&w, id, "stopped");

    int64_t used = query_int(&w.st, "SELECT trained_ms FROM sessions");
    assert_true(used > 0 && used < 3600 * 1000);
    int64_t refund = USD(36) * (3600 * 1000 - used) / (3600 * 1000);
    assert_int_equal(balance_of(&w.st, 1), USD(64) + refund);
    assert_int_equal(query_int(&w.st, "SELECT amount FROM ledger WHERE "
                                      "kind = 'refund'"),
                     refund);
    expect_ledger_consistent(&w);
    close_world(&w);
}

static void heartbeat_kills_stopped_trainer(void **state)
{
    struct world w;

    (void)state;
    make_world(&w, USD(3600), USD(100));
    sessions_close(w.s);
    open_sessions(&w, 1500);
    int64_t id = start_epochs(&w, 50);
    run_until_event(&w, "start", NULL, 0);
    /* On a loaded machine the heartbeat may fire before SIGSTOP does
     * anything; the outcome is the same. */
    pid_t trainer = pid_of(&w, id);
    assert_int_equal(kill(trainer, SIGSTOP), 0);
    run_until_state(&w, id, "failed");
    assert_string_equal(reason_of(&w, id), "no progress for 1.5 s");
    expect_process_ends(trainer);
    close_world(&w);
}

/* Between polls the service loop reads a trainer's pipe when it has
 * input. Reading that way, with sessions_poll leaving the watched pipe
 * alone, stores and charges every epoch, and the pipe leaves the list
 * when the trainer closes it. */
static void pipe_reads_store_events_between_polls(void **state)
{
    struct world w;
    struct sessions_pipe pipes[4];
    int64_t deadline = clock_monotonic_ms() + STEP_TIMEOUT_MS;
    int reads = 0, watching = 1;

    (void)state;
    make_world(&w, USD(3600), USD(100));
    int64_t id = start_epochs(&w, 2);
    while (sessions_pipes(w.s, pipes, 4) == 0) {
        assert_true(clock_monotonic_ms() < deadline);
        poll_once(&w);
    }
    assert_int_equal(sessions_pipes(w.s, pipes, 4), 1);
    assert_int_equal(pipes[0].session_id, id);
    assert_int_equal(sessions_read_pipe(w.s, id + 1, clock_monotonic_ms()), 0);
    sessions_set_pipe_watched(w.s, id, 1);

    while (watching) {
        struct pollfd pfd = {pipes[0].fd, POLLIN, 0};
        assert_true(clock_monotonic_ms() < deadline);
        if (poll(&pfd, 1, 1000) <= 0)
            continue;
        watching = sessions_read_pipe(w.s, id, clock_monotonic_ms());
        reads++;
        /* The tick still runs, but leaves the watched pipe alone. */
        sessions_poll(w.s, clock_monotonic_ms());
    }
    assert_true(reads >= 2);
    assert_int_equal(sessions_pipes(w.s, pipes, 4), 0);
    assert_int_equal(query_int(&w.st, "SELECT COUNT(*) FROM progress_events "
                                      "WHERE kind = 'epoch'"),
                     2);
    assert_int_equal(query_int(&w.st, "SELECT COUNT(*) FROM progress_events "
                                      "WHERE kind = 'done'"),
                     1);
    assert_int_equal(query_int(&w.st, "SELECT epochs_done FROM sessions"), 2);
    expect_epochs_charged_once(&w, id, 2);

    run_until_state(&w, id, "completed");
    expect_ledger_consistent(&w);
    close_world(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(epochs_charged_at_rate),
        cmocka_unit_test(pause_then_topup_completes),
        cmocka_unit_test(stop_then_resume_completes),
        cmocka_unit_test(kill9_fails_then_resumes),
        cmocka_unit_test(reconcile_after_backend_crash),
        cmocka_unit_test(reconcile_kills_live_trainer),
        cmocka_unit_test(timed_refunds_unused_time),
        cmocka_unit_test(heartbeat_kills_stopped_trainer),
        cmocka_unit_test(pipe_reads_store_events_between_polls),
    };
    return cmocka_run_group_tests_name("sessions_train", tests, make_dataset,
                                       remove_dataset);
}
