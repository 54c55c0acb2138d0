/*
 * Tests of backend/daemon/sessions and the local executor, without the
 * train program. A fake executor hands the test the write end of each
 * job's events pipe and lets it choose how the job exits. So events,
 * charges, timeouts and exit statuses are exact and need no waiting.
 * The real train program is exercised by
 * tests/integration/test_sessions_train.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "daemon/executor.h"
#include "daemon/ledger.h"
#include "daemon/sessions.h"
#include "daemon/store.h"
#include "embedded.h"
#include "harness.h"

#define USD(x) ((int64_t)((x)*1000000.0 + 0.5))

/* ---- Fake executor ------------------------------------------------------ */

#define FAKE_JOBS_MAX 64

struct executor_job {
    int64_t id;
    int read_fd;
    int write_fd;
    int ended;
    struct executor_status status;
    int signals[16];
    int nsignals;
    char argv[32][1100];
    int argc;
    int closed;
};

static struct {
    struct executor_job *jobs[FAKE_JOBS_MAX];
    int n;
    int fail_start;
    int64_t orphans_killed[16];
    int norphans;
    int orphan_result;
} fake;

static int fake_start(const struct executor *ex, char *const argv[],
                      const char *cwd, const char *log_path,
                      struct executor_job **out, struct error *err)
{
    struct executor_job *job;
    int fds[2];

    (void)ex;
    (void)cwd;
    (void)log_path;
    if (fake.fail_start)
        return error_set(err, -ENOENT, "cannot run '%s': fake failure",
                         argv[0]);
    assert_true(fake.n < FAKE_JOBS_MAX);
    job = calloc(1, sizeof(*job));
    assert_non_null(job);
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    job->read_fd = fds[0];
    job->write_fd = fds[1];
    job->id = 900000 + fake.n;
    for (int i = 0; argv[i] != NULL && i < 32; i++)
        snprintf(job->argv[job->argc++], sizeof(job->argv[0]), "%s", argv[i]);
    fake.jobs[fake.n++] = job;
    *out = job;
    return 0;
}

static int fake_events_fd(const struct executor_job *job)
{
    return job->read_fd;
}

static int64_t fake_job_id(const struct executor_job *job)
{
    return job->id;
}

static void fake_end(struct executor_job *job, enum executor_job_state state,
                     int code)
{
    if (job->write_fd >= 0)
        close(job->write_fd);
    job->write_fd = -1;
    job->ended = 1;
    job->status.state = state;
    job->status.code = code;
}

/* SIGKILL ends the fake job at once; other signals are only recorded. */
static int fake_signal(struct executor_job *job, int sig, struct error *err)
{
    if (job->ended)
        return error_set(err, -ESRCH, "job ended");
    if (job->nsignals < 16)
        job->signals[job->nsignals++] = sig;
    if (sig == SIGKILL)
        fake_end(job, EXECUTOR_SIGNALED, SIGKILL);
    return 0;
}

static int fake_poll(struct executor_job *job, struct executor_status *st,
                     struct error *err)
{
    (void)err;
    if (job->ended)
        *st = job->status;
    else
        st->state = EXECUTOR_RUNNING;
    return 0;
}

static void fake_close(struct executor_job *job)
{
    close(job->read_fd);
    if (job->write_fd >= 0)
        close(job->write_fd);
    job->read_fd = job->write_fd = -1;
    job->closed = 1;
}

static int fake_kill_orphan(const struct executor *ex, int64_t job_id,
                            const char *program, struct error *err)
{
    (void)ex;
    (void)program;
    (void)err;
    if (fake.norphans < 16)
        fake.orphans_killed[fake.norphans++] = job_id;
    return fake.orphan_result;
}

static const struct executor fake_executor = {
    "fake",      fake_start, fake_events_fd, fake_job_id,
    fake_signal, fake_poll,  fake_close,     fake_kill_orphan,
    0,
};

static void fake_reset(void)
{
    for (int i = 0; i < fake.n; i++)
        free(fake.jobs[i]);
    memset(&fake, 0, sizeof(fake));
}

static struct executor_job *last_job(void)
{
    assert_true(fake.n > 0);
    return fake.jobs[fake.n - 1];
}

static void emit(struct executor_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void emit(struct executor_job *job, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    line[n++] = '\n';
    assert_int_equal(write(job->write_fd, line, (size_t)n), n);
}

static int signalled(const struct executor_job *job, int sig)
{
    for (int i = 0; i < job->nsignals; i++)
        if (job->signals[i] == sig)
            return 1;
    return 0;
}

static int has_arg(const struct executor_job *job, const char *prefix)
{
    for (int i = 0; i < job->argc; i++)
        if (strncmp(job->argv[i], prefix, strlen(prefix)) == 0)
            return 1;
    return 0;
}

/* ---- The world: a database with accounts, a data set and models ------ */

struct world {
    char dir[PATH_MAX];
    char db_path[PATH_MAX + 16];
    struct store st;
    struct sessions *s;
    int64_t now; /* monotonic ms passed to sessions_poll */
    int hook_calls;
    int64_t hook_last_seq;
};

static void exec_sql(struct store *st, const char *sql)
{
    char *msg = NULL;

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
                             .description = "test credit"};
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

static const char *state_of(struct world *w, int64_t session)
{
    static char text[32];
    return query_text(&w->st, text, sizeof(text),
                      "SELECT state FROM sessions WHERE id = %lld",
                      (long long)session);
}

static const char *reason_of(struct world *w, int64_t session)
{
    static char text[512];
    return query_text(&w->st, text, sizeof(text),
                      "SELECT reason FROM sessions WHERE id = %lld",
                      (long long)session);
}

static int count_hook(void *user, const struct sessions_event *ev)
{
    struct world *w = user;

    w->hook_calls++;
    w->hook_last_seq = ev->seq;
    return 0;
}

/* Create the test database:
 *   accounts 1 (pro, $100), 2 (pro, $100), 3 (free, $100), 4 (pro, $0);
 *   instance types 1 (cpu, capacity 1) and 2 (gpu, capacity 3 in the
 *   table), both at $3600/h, which is $1 a second;
 *   a ready data set;
 *   models 1-2 of account 1, 3 of account 2, 4 of account 3, 5 of
 *   account 4. */
static void make_world(struct world *w)
{
    struct sessions_config cfg;
    struct error err = {0};

    memset(w, 0, sizeof(*w));
    fake_reset();
    harness_tmpdir(w->dir, sizeof(w->dir));
    snprintf(w->db_path, sizeof(w->db_path), "%s/test.db", w->dir);
    if (store_open(&w->st, w->db_path, schema_sql, &err) != 0)
        fail_msg("%s", err.msg);
    exec_sql(&w->st,
             "INSERT INTO accounts (id, email, plan, created_at) VALUES "
             "(1, 'a@example.com', 'pro', 0), (2, 'b@example.com', 'pro', 0),"
             "(3, 'c@example.com', 'free', 0), (4, 'd@example.com', 'pro', 0);"
             "INSERT INTO instance_types (id, name, device, price_per_hour, "
             "capacity) VALUES (1, 'cpu', 'cpu', 3600000000, 1),"
             "(2, 'gpu-0', '0', 3600000000, 3);"
             "INSERT INTO datasets (id, account_id, name, task, path, "
             "created_at) VALUES (1, NULL, 'tiny', 'classify', 'sets/tiny', 0);"
             "INSERT INTO models (id, account_id, dataset_id, name, task, "
             "architecture, args, created_at) VALUES "
             "(1, 1, 1, 'first', 'classify', 'yolov8n-cls.yaml', "
             "'{\"imgsz\": 16, \"batch\": 8, \"fliplr\": 0.5}', 0),"
             "(2, 1, 1, 'second', 'classify', 'yolov8n-cls.yaml', '{}', 0),"
             "(3, 2, 1, 'other', 'classify', 'yolov8n-cls.yaml', '{}', 0),"
             "(4, 3, 1, 'free-model', 'classify', 'yolov8n-cls.yaml', '{}', 0),"
             "(5, 4, 1, 'broke', 'classify', 'yolov8n-cls.yaml', '{}', 0);");
    credit(&w->st, 1, USD(100));
    credit(&w->st, 2, USD(100));
    credit(&w->st, 3, USD(100));

    sessions_config_defaults(&cfg);
    cfg.data_dir = w->dir;
    cfg.train_program = "/opt/train";
    cfg.heartbeat_timeout_ms = 1000;
    cfg.init_timeout_ms = 5000;
    cfg.stop_timeout_ms = 2000;
    if (sessions_open(&w->s, &w->st, &fake_executor, &cfg, &err) != 0)
        fail_msg("%s", err.msg);
    sessions_set_event_hook(w->s, count_hook, w);
    w->now = clock_monotonic_ms();
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));

    make_world(w);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;

    sessions_close(w->s);
    store_close(&w->st);
    if (getenv("KEEP") == NULL)
        harness_rmtree(w->dir);
    fake_reset();
    free(w);
    return 0;
}

static void poll_at(struct world *w, int64_t advance_ms)
{
    w->now += advance_ms;
    sessions_poll(w->s, w->now);
}

static int64_t start_epochs(struct world *w, int64_t account, int64_t model,
                            int64_t type, int epochs)
{
    struct sessions_start_request req = {account,
                                         model,
                                         type,
                                         SESSION_MODE_EPOCHS,
                                         epochs,
                                         0,
                                         SESSION_PAY_BALANCE};
    struct error err = {0};
    int64_t id = 0;

    if (sessions_start(w->s, &req, &id, &err) != 0)
        fail_msg("start failed: %s", err.msg);
    return id;
}

static int start_expect(struct world *w,
                        const struct sessions_start_request *req, int code,
                        const char *needle)
{
    struct error err = {0};
    int64_t id = 0;
    int rc = sessions_start(w->s, req, &id, &err);

    assert_int_equal(rc, code);
    if (needle != NULL && strstr(err.msg, needle) == NULL)
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    return rc;
}

/* Launch the session and report its start: it is then training. */
static struct executor_job *launch_and_start(struct world *w, int64_t session)
{
    struct executor_job *job;

    poll_at(w, 10);
    job = last_job();
    emit(job, "{\"task\":\"classify\",\"epochs\":3,\"start_epoch\":1,"
              "\"event\":\"start\",\"time_ms\":1}");
    poll_at(w, 10);
    assert_string_equal(state_of(w, session), "training");
    return job;
}

static void emit_epoch(struct executor_job *job, int epoch, double seconds)
{
    emit(job,
         "{\"path\":\"/runs/x/weights/last.ckpt\",\"epoch\":%d,\"batch\":0,"
         "\"event\":\"checkpoint\",\"time_ms\":1}",
         epoch);
    emit(job,
         "{\"epoch\":%d,\"epochs\":3,\"seconds\":%.17g,\"metrics\":"
         "{\"train/loss\":1.5},\"event\":\"epoch\",\"time_ms\":1}",
         epoch, seconds);
}

/* Advance time by total_ms in steps of 500 ms, with a batch event each
 * step, so that the heartbeat stays satisfied. */
static void keep_alive(struct world *w, struct executor_job *job,
                       int64_t total_ms)
{
    for (int64_t done = 0; done < total_ms;) {
        int64_t step = total_ms - done < 500 ? total_ms - done : 500;
        emit(job, "{\"epoch\":1,\"batch\":1,\"event\":\"batch\","
                  "\"time_ms\":1}");
        poll_at(w, step);
        done += step;
    }
}

/* Sum of the account's ledger amounts equals its balance. */
static void expect_ledger_consistent(struct world *w, int64_t account)
{
    int64_t sum = query_int(&w->st,
                            "SELECT SUM(amount) FROM ledger "
                            "WHERE account_id = %lld",
                            (long long)account);
    assert_int_equal(sum, balance_of(&w->st, account));
}

/* ---- State machine ------------------------------------------------------ */

static void state_machine_allows_schema_chain(void **state)
{
    static const struct {
        enum session_state from, to;
    } allowed[] = {
        {SESSION_CREATED, SESSION_INITIALIZING},
        {SESSION_INITIALIZING, SESSION_TRAINING},
        {SESSION_INITIALIZING, SESSION_STOPPED},
        {SESSION_INITIALIZING, SESSION_FAILED},
        {SESSION_TRAINING, SESSION_COMPLETED},
        {SESSION_TRAINING, SESSION_STOPPED},
        {SESSION_TRAINING, SESSION_PAUSED},
        {SESSION_TRAINING, SESSION_EXPIRED},
        {SESSION_TRAINING, SESSION_FAILED},
        {SESSION_STOPPED, SESSION_INITIALIZING},
        {SESSION_PAUSED, SESSION_INITIALIZING},
        {SESSION_EXPIRED, SESSION_INITIALIZING},
        {SESSION_FAILED, SESSION_INITIALIZING},
    };
    int expected[SESSION_STATE_COUNT][SESSION_STATE_COUNT] = {{0}};

    (void)state;
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        expected[allowed[i].from][allowed[i].to] = 1;
    for (int from = 0; from < SESSION_STATE_COUNT; from++)
        for (int to = 0; to < SESSION_STATE_COUNT; to++)
            if (session_transition_allowed(from, to) != expected[from][to])
                fail_msg("%s -> %s: allowed %d, expected %d",
                         session_state_name(from), session_state_name(to),
                         session_transition_allowed(from, to),
                         expected[from][to]);
    assert_false(
        session_transition_allowed(SESSION_COMPLETED, SESSION_INITIALIZING));
    assert_false(session_transition_allowed(-1, SESSION_TRAINING));
    assert_false(session_transition_allowed(SESSION_TRAINING, 99));
}

static void state_names_round_trip(void **state)
{
    enum session_state parsed;

    (void)state;
    for (int i = 0; i < SESSION_STATE_COUNT; i++) {
        assert_int_equal(session_state_parse(session_state_name(i), &parsed),
                         0);
        assert_int_equal(parsed, i);
    }
    assert_int_equal(session_state_parse("running", &parsed), -EINVAL);
    assert_string_equal(session_state_name(42), "unknown");
    assert_true(session_state_resumable(SESSION_PAUSED));
    assert_true(session_state_resumable(SESSION_FAILED));
    assert_false(session_state_resumable(SESSION_COMPLETED));
    assert_false(session_state_resumable(SESSION_CREATED));
}

/* ---- Start rules ------------------------------------------------------------
 */

static void start_rejects_free_plan(void **state)
{
    struct world *w = *state;
    struct sessions_start_request req = {
        3, 4, 1, SESSION_MODE_EPOCHS, 2, 0, SESSION_PAY_BALANCE};

    start_expect(w, &req, -EPERM, "upgrade the account to Pro");
    assert_int_equal(query_int(&w->st, "SELECT COUNT(*) FROM sessions"), 0);
}

static void start_needs_five_dollars(void **state)
{
    struct world *w = *state;
    struct sessions_start_request req = {
        4, 5, 1, SESSION_MODE_EPOCHS, 2, 0, SESSION_PAY_BALANCE};

    credit(&w->st, 4, USD(4.99));
    start_expect(w, &req, -ENOSPC, "below the $5.00 needed");
    credit(&w->st, 4, USD(0.01));
    start_expect(w, &req, 0, NULL);
    assert_string_equal(state_of(w, 1), "initializing");
}

static void start_rejects_second_model(void **state)
{
    struct world *w = *state;
    struct sessions_start_request req = {
        1, 2, 1, SESSION_MODE_EPOCHS, 2, 0, SESSION_PAY_BALANCE};

    start_epochs(w, 1, 1, 1, 2);
    start_expect(w, &req, -EBUSY,
                 "model 'first' is training; stop it or "
                 "wait");
    /* The same model again is the same rule. */
    req.model_id = 1;
    start_expect(w, &req, -EBUSY, "model 'first' is training");
    /* Another account is not affected. */
    req.account_id = 2;
    req.model_id = 3;
    start_expect(w, &req, 0, NULL);
}

static void start_rejects_invalid_requests(void **state)
{
    struct world *w = *state;
    struct sessions_start_request req = {
        1, 1, 1, SESSION_MODE_EPOCHS, 0, 0, SESSION_PAY_BALANCE};

    start_expect(w, &req, -EINVAL, "epochs 0 is invalid");
    req.epochs = 2;
    req.model_id = 3; /* account 2's model */
    start_expect(w, &req, -ENOENT, "model 3 not found");
    req.model_id = 1;
    req.instance_type_id = 9;
    start_expect(w, &req, -ENOENT, "instance type 9 not found");
    req.instance_type_id = 1;
    req.payment = SESSION_PAY_PREPAID;
    start_expect(w, &req, -EINVAL, "pay ahead only for timed");
    req.payment = SESSION_PAY_BALANCE;
    req.mode = SESSION_MODE_TIMED;
    start_expect(w, &req, -EINVAL, "time limit 0 ms is invalid");

    exec_sql(&w->st, "UPDATE models SET args = '{\"data\": \"/etc\"}' "
                     "WHERE id = 1");
    req.mode = SESSION_MODE_EPOCHS;
    start_expect(w, &req, -EINVAL,
                 "'data' of model 'first' is set by the "
                 "session");
    exec_sql(&w->st, "UPDATE models SET args = '{\"lr0\": [1]}' WHERE id = 1");
    start_expect(w, &req, -EINVAL, "must be a number, string or boolean");
    exec_sql(&w->st, "UPDATE models SET args = '{}' WHERE id = 1;"
                     "UPDATE datasets SET status = 'validating'");
    start_expect(w, &req, -EINVAL, "still validating");
    exec_sql(&w->st, "UPDATE datasets SET status = 'ready';"
                     "UPDATE instance_types SET enabled = 0 WHERE id = 1");
    start_expect(w, &req, -EINVAL, "no longer offered");
    assert_int_equal(query_int(&w->st, "SELECT COUNT(*) FROM sessions"), 0);
}

struct racer {
    const char *db_path;
    const char *data_dir;
    int index;
    pthread_barrier_t *barrier;
    int rc;
    char msg[ERROR_MSG_MAX];
};

static void *race_start(void *arg)
{
    struct racer *r = arg;
    struct sessions_config cfg;
    struct sessions_start_request req = {
        1, 1 + r->index % 2, 1, SESSION_MODE_EPOCHS, 2, 0, SESSION_PAY_BALANCE};
    struct error err = {0};
    struct sessions *s;
    struct store st;
    int64_t id;

    r->rc = -1000;
    if (store_open(&st, r->db_path, schema_sql, &err) != 0) {
        snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
        pthread_barrier_wait(r->barrier);
        return NULL;
    }
    sessions_config_defaults(&cfg);
    cfg.data_dir = r->data_dir;
    cfg.train_program = "/opt/train";
    if (sessions_open(&s, &st, &fake_executor, &cfg, &err) != 0) {
        snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
        pthread_barrier_wait(r->barrier);
        store_close(&st);
        return NULL;
    }
    pthread_barrier_wait(r->barrier);
    r->rc = sessions_start(s, &req, &id, &err);
    snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
    sessions_close(s);
    store_close(&st);
    return NULL;
}

static void start_race_fifty_threads_one_wins(void **state)
{
    enum { N = 50 };
    struct world *w = *state;
    struct racer racers[N];
    pthread_t threads[N];
    pthread_barrier_t barrier;
    int wins = 0, busy = 0;

    pthread_barrier_init(&barrier, NULL, N);
    for (int i = 0; i < N; i++) {
        racers[i] = (struct racer){w->db_path, w->dir, i, &barrier, 0, ""};
        assert_int_equal(
            pthread_create(&threads[i], NULL, race_start, &racers[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&barrier);

    for (int i = 0; i < N; i++) {
        if (racers[i].rc == 0)
            wins++;
        else if (racers[i].rc == -EBUSY &&
                 strstr(racers[i].msg, "is training; stop it or wait"))
            busy++;
        else
            fail_msg("racer %d: rc %d: %s", i, racers[i].rc, racers[i].msg);
    }
    assert_int_equal(wins, 1);
    assert_int_equal(busy, N - 1);
    assert_int_equal(query_int(&w->st, "SELECT COUNT(*) FROM sessions"), 1);
}

/* ---- Queue ------------------------------------------------------------------
 */

static void queue_waits_for_a_free_slot(void **state)
{
    struct world *w = *state;
    int64_t a, b;
    struct executor_job *job;

    a = start_epochs(w, 1, 1, 1, 1);
    b = start_epochs(w, 2, 3, 1, 1);
    assert_int_equal(query_int(&w->st,
                               "SELECT queue_position FROM sessions "
                               "WHERE id = %lld",
                               (long long)a),
                     0);
    assert_int_equal(query_int(&w->st,
                               "SELECT queue_position FROM sessions "
                               "WHERE id = %lld",
                               (long long)b),
                     1);
    job = launch_and_start(w, a);
    assert_int_equal(fake.n, 1);
    assert_true(has_arg(job, "device=cpu"));
    /* Waiting is free of charge. */
    assert_int_equal(balance_of(&w->st, 2), USD(100));

    emit_epoch(job, 1, 0.5);
    emit(job, "{\"reason\":\"completed\",\"event\":\"done\",\"time_ms\":1}");
    fake_end(job, EXECUTOR_EXITED, 0);
    poll_at(w, 10);
    assert_string_equal(state_of(w, a), "completed");
    assert_int_equal(fake.n, 2);
    assert_int_equal(query_int(&w->st,
                               "SELECT COUNT(*) FROM sessions WHERE "
                               "id = %lld AND queue_position IS NULL "
                               "AND pid IS NOT NULL",
                               (long long)b),
                     1);
}

static void queue_gpu_capacity_is_one(void **state)
{
    struct world *w = *state;
    int64_t a, b;

    a = start_epochs(w, 1, 1, 2, 1);
    b = start_epochs(w, 2, 3, 2, 1);
    assert_int_equal(query_int(&w->st,
                               "SELECT queue_position FROM sessions "
                               "WHERE id = %lld",
                               (long long)a),
                     0);
    assert_int_equal(query_int(&w->st,
                               "SELECT queue_position FROM sessions "
                               "WHERE id = %lld",
                               (long long)b),
                     1);
    poll_at(w, 10);
    assert_int_equal(fake.n, 1);
    assert_true(has_arg(fake.jobs[0], "device=0"));
}

static void stop_queued_timed_refunds_all(void **state)
{
    struct world *w = *state;
    struct sessions_start_request req = {
        2, 3, 1, SESSION_MODE_TIMED, 5, 60 * 1000, SESSION_PAY_BALANCE};
    struct error err = {0};
    int64_t b = 0;

    start_epochs(w, 1, 1, 1, 1);
    assert_int_equal(sessions_start(w->s, &req, &b, &err), 0);
    /* A minute at $1 a second, paid at the start. */
    assert_int_equal(balance_of(&w->st, 2), USD(100 - 60));
    assert_int_equal(query_int(&w->st,
                               "SELECT queue_position FROM sessions "
                               "WHERE id = %lld",
                               (long long)b),
                     1);
    assert_int_equal(sessions_stop(w->s, 2, 3, &err), 0);
    assert_string_equal(state_of(w, b), "stopped");
    assert_int_equal(balance_of(&w->st, 2), USD(100));
    expect_ledger_consistent(w, 2);
    /* Stopped timed training cannot resume: its time was refunded. */
    assert_int_equal(sessions_resume(w->s, 2, 3, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "no paid time left"));
}

/* ---- Events and billing
 * ------------------------------------------------------ */

static void epoch_charges_exact_once(void **state)
{
    struct world *w = *state;
    struct executor_job *job;
    int64_t id = start_epochs(w, 1, 1, 1, 3);

    job = launch_and_start(w, id);
    assert_true(has_arg(job, "imgsz=16"));
    assert_true(has_arg(job, "fliplr=0.5"));
    assert_true(has_arg(job, "epochs=3"));
    assert_true(has_arg(job, "events_fd=3"));
    assert_false(has_arg(job, "resume="));

    emit_epoch(job, 1, 1.5);
    emit_epoch(job, 2, 2.25);
    /* A repeated epoch event charges nothing more. */
    emit_epoch(job, 2, 2.25);
    poll_at(w, 10);

    assert_int_equal(query_int(&w->st,
                               "SELECT cost FROM epochs WHERE "
                               "session_id = %lld AND epoch = 1",
                               (long long)id),
                     USD(1.50));
    assert_int_equal(query_int(&w->st,
                               "SELECT cost FROM epochs WHERE "
                               "session_id = %lld AND epoch = 2",
                               (long long)id),
                     USD(2.25));
    assert_int_equal(query_int(&w->st, "SELECT COUNT(*) FROM ledger WHERE "
                                       "kind = 'charge' AND account_id = 1"),
                     2);
    assert_int_equal(balance_of(&w->st, 1), USD(100 - 3.75));
    assert_int_equal(query_int(&w->st,
                               "SELECT epochs_done FROM sessions "
                               "WHERE id = %lld",
                               (long long)id),
                     2);
    expect_ledger_consistent(w, 1);

    /* Events are numbered 1..n per model without gaps, and every one
     * reached the hook after its commit. */
    int64_t n = query_int(&w->st, "SELECT COUNT(*) FROM progress_events "
                                  "WHERE model_id = 1");
    assert_int_equal(query_int(&w->st, "SELECT MAX(seq) FROM progress_events "
                                       "WHERE model_id = 1"),
                     n);
    assert_int_equal(w->hook_calls, n);
    assert_int_equal(w->hook_last_seq, n);

    fake_end(job, EXECUTOR_EXITED, 0);
    poll_at(w, 10);
    assert_string_equal(state_of(w, id), "completed");
    assert_true(job->closed);
    assert_int_equal(sessions_running(w->s), 0);
}

struct replay {
    int64_t seqs[64];
    int n;
};

static int collect(void *user, const struct sessions_event *ev)
{
    struct replay *r = user;

    if (r->n < 64)
        r->seqs[r->n++] = ev->seq;
    return 0;
}

static void events_after_replays_in_order(void **state)
{
    struct world *w = *state;
    struct replay r = {{0}, 0};
    struct error err = {0};
    int64_t id = start_epochs(w, 1, 1, 1, 3);
    struct executor_job *job = launch_and_start(w, id);

    emit_epoch(job, 1, 1.0);
    poll_at(w, 10);
    int64_t total = query_int(&w->st, "SELECT COUNT(*) FROM progress_events "
                                      "WHERE model_id = 1");
    assert_true(total >= 5);
    assert_int_equal(sessions_events_after(w->s, 1, 2, collect, &r, &err), 0);
    assert_int_equal(r.n, total - 2);
    for (int i = 0; i < r.n; i++)
        assert_int_equal(r.seqs[i], 3 + i);
    r.n = 0;
    assert_int_equal(sessions_events_after(w->s, 2, 0, collect, &r, &err), 0);
    assert_int_equal(r.n, 0);
}

static void batch_events_coalesced(void **state)
{
    struct world *w = *state;
    char payload[512];
    int64_t id = start_epochs(w, 1, 1, 1, 3);
    struct executor_job *job = launch_and_start(w, id);

    for (int b = 1; b <= 5; b++)
        emit(job,
             "{\"epoch\":1,\"epochs\":3,\"batch\":%d,\"batches\":5,"
             "\"loss\":1.0,\"images_per_s\":10,\"event\":\"batch\","
             "\"time_ms\":1}",
             b);
    poll_at(w, 10);
    assert_int_equal(query_int(&w->st, "SELECT COUNT(*) FROM progress_events "
                                       "WHERE kind = 'batch'"),
                     1);
    query_text(&w->st, payload, sizeof(payload),
               "SELECT payload FROM progress_events WHERE kind = 'batch'");
    assert_non_null(strstr(payload, "\"batch\":5"));
}

static void overlong_line_dropped(void **state)
{
    struct world *w = *state;
    int64_t id = start_epochs(w, 1, 1, 1, 3);
    struct executor_job *job = launch_and_start(w, id);
    size_t len = 70 * 1024;
    char *junk = malloc(len);

    memset(junk, 'x', len);
    /* The pipe has room for 64 KiB, so write in parts with polls in
     * between. */
    for (size_t off = 0; off < len;) {
        ssize_t n = write(job->write_fd, junk + off,
                          len - off > 16384 ? 16384 : len - off);
        assert_true(n > 0);
        off += (size_t)n;
        poll_at(w, 1);
    }
    free(junk);
    assert_int_equal(write(job->write_fd, "tail\n", 5), 5);
    emit_epoch(job, 1, 1.0);
    poll_at(w, 10);
    assert_int_equal(query_int(&w->st, "SELECT COUNT(*) FROM epochs"), 1);
    assert_int_equal(query_int(&w->st, "SELECT COUNT(*) FROM progress_events "
                                       "WHERE kind = 'unknown'"),
                     0);
    assert_string_equal(state_of(w, id), "training");
}

static void pause_when_balance_short(void **state)
{
    struct world *w = *state;
    struct error err = {0};
    struct executor_job *job;
    int64_t id, resumed = 0;

    credit(&w->st, 4, USD(6));
    id = start_epochs(w, 4, 5, 1, 3);
    job = launch_and_start(w, id);
    /* 4 s cost $4 and leave $2: not enough for another $4 epoch. */
    emit(job, "{\"epoch\":1,\"epochs\":3,\"seconds\":4,\"metrics\":{},"
              "\"event\":\"epoch\",\"time_ms\":1700000000000}");
    poll_at(w, 10);
    assert_true(signalled(job, SIGTERM));
    assert_int_equal(balance_of(&w->st, 4), USD(2));

    /* The trainer finishes one batch of epoch 2 (0.5 s by its clock),
     * saves and exits 3. */
    emit(job, "{\"path\":\"/runs/x/weights/last.ckpt\",\"epoch\":1,"
              "\"batch\":1,\"event\":\"checkpoint\","
              "\"time_ms\":1700000000500}");
    emit(job, "{\"reason\":\"stopped\",\"event\":\"done\",\"time_ms\":1}");
    fake_end(job, EXECUTOR_EXITED, 3);
    poll_at(w, 10);
    assert_string_equal(state_of(w, id), "paused");
    assert_string_equal(reason_of(w, id),
                        "balance too low for the next epoch ($4.00 needed)");
    /* Nothing is charged for the unfinished epoch 2: its trainer reports
     * the whole epoch's time, and it is charged, once it completes. */
    assert_int_equal(balance_of(&w->st, 4), USD(2));
    expect_ledger_consistent(w, 4);

    /* Resume needs the $5 minimum and the next epoch's $4. */
    assert_int_equal(sessions_resume(w->s, 4, 5, &resumed, &err), -ENOSPC);
    credit(&w->st, 4, USD(10));
    assert_int_equal(sessions_resume(w->s, 4, 5, &resumed, &err), 0);
    assert_int_equal(resumed, id);
    assert_string_equal(state_of(w, id), "initializing");
    poll_at(w, 10);
    assert_int_equal(fake.n, 2);
    /* The recorded checkpoint file does not exist here, so the trainer
     * starts over from epoch 0, as the backend logs. */
    assert_false(has_arg(last_job(), "resume="));
}

static void stop_then_resume(void **state)
{
    struct world *w = *state;
    struct error err = {0};
    struct executor_job *job;
    char ckpt[PATH_MAX + 32], dir[PATH_MAX + 16];
    int64_t id = start_epochs(w, 1, 1, 1, 3);

    /* A real file, so that the resume uses it. */
    snprintf(dir, sizeof(dir), "%s/ck", w->dir);
    mkdir(dir, 0755);
    snprintf(ckpt, sizeof(ckpt), "%s/last.ckpt", dir);
    FILE *f = fopen(ckpt, "w");
    fclose(f);

    job = launch_and_start(w, id);
    emit(job,
         "{\"path\":\"%s\",\"epoch\":1,\"batch\":0,\"event\":\"checkpoint\","
         "\"time_ms\":1}",
         ckpt);
    emit(job, "{\"epoch\":1,\"epochs\":3,\"seconds\":1,\"metrics\":{},"
              "\"event\":\"epoch\",\"time_ms\":1}");
    poll_at(w, 10);
    assert_int_equal(sessions_stop(w->s, 1, 1, &err), 0);
    assert_true(signalled(job, SIGTERM));
    assert_string_equal(state_of(w, id), "training");
    fake_end(job, EXECUTOR_EXITED, 3);
    poll_at(w, 10);
    assert_string_equal(state_of(w, id), "stopped");
    assert_int_equal(sessions_stop(w->s, 1, 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "is not training"));

    assert_int_equal(sessions_resume(w->s, 1, 1, NULL, &err), 0);
    poll_at(w, 10);
    char expected[PATH_MAX + 64];
    snprintf(expected, sizeof(expected), "resume=%s", ckpt);
    assert_true(has_arg(last_job(), expected));
    /* Resuming twice is the one-model rule. */
    assert_int_equal(sessions_resume(w->s, 1, 1, NULL, &err), -EBUSY);
}

static void stop_deadline_kills(void **state)
{
    struct world *w = *state;
    struct error err = {0};
    struct executor_job *job;
    int64_t id = start_epochs(w, 1, 1, 1, 3);

    job = launch_and_start(w, id);
    w->now = clock_monotonic_ms();
    assert_int_equal(sessions_stop(w->s, 1, 1, &err), 0);
    keep_alive(w, job, 1500);
    assert_false(signalled(job, SIGKILL));
    poll_at(w, 600);
    assert_true(signalled(job, SIGKILL));
    poll_at(w, 10);
    assert_string_equal(state_of(w, id), "stopped");
    assert_string_equal(reason_of(w, id),
                        "stopped on request; the trainer did not exit "
                        "within 2 s of SIGTERM and was killed");
}

static void exit_status_sets_final_state(void **state)
{
    static const struct {
        int signaled;
        int code;
        const char *error_event;
        const char *state;
        const char *reason;
    } cases[] = {
        {0, 0, NULL, "completed", ""},
        {0, 1, "out of memory for a batch", "failed",
         "out of memory for a batch"},
        {0, 2, NULL, "failed", "trainer exited with status 2"},
        {1, SIGSEGV, NULL, "failed", "killed by signal 11"},
        {0, 3, NULL, "stopped",
         "stopped by a signal from outside the "
         "backend"},
    };
    struct world *w = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t id = start_epochs(w, 1, 1, 1, 3);
        struct executor_job *job = launch_and_start(w, id);
        if (cases[i].error_event != NULL)
            emit(job,
                 "{\"message\":\"%s\",\"event\":\"error\","
                 "\"time_ms\":1}",
                 cases[i].error_event);
        fake_end(job, cases[i].signaled ? EXECUTOR_SIGNALED : EXECUTOR_EXITED,
                 cases[i].code);
        poll_at(w, 10);
        assert_string_equal(state_of(w, id), cases[i].state);
        assert_string_equal(reason_of(w, id), cases[i].reason);
    }
}

static void exit_before_start_fails(void **state)
{
    struct world *w = *state;
    int64_t id = start_epochs(w, 1, 1, 1, 3);

    poll_at(w, 10);
    fake_end(last_job(), EXECUTOR_EXITED, 0);
    poll_at(w, 10);
    assert_string_equal(state_of(w, id), "failed");
    assert_string_equal(reason_of(w, id), "the trainer ended with status 0 "
                                          "before training started");
}

static void launch_failure_fails_session(void **state)
{
    struct world *w = *state;
    int64_t id = start_epochs(w, 1, 1, 1, 3);

    fake.fail_start = 1;
    poll_at(w, 10);
    assert_string_equal(state_of(w, id), "failed");
    assert_non_null(strstr(reason_of(w, id), "cannot start the trainer"));
    /* The slot is free again. */
    fake.fail_start = 0;
    start_epochs(w, 1, 2, 1, 3);
    poll_at(w, 10);
    assert_int_equal(fake.n, 1);
}

static void timed_expires_and_refunds_on_stop(void **state)
{
    struct world *w = *state;
    struct sessions_start_request req = {
        1, 1, 1, SESSION_MODE_TIMED, 50, 10 * 1000, SESSION_PAY_BALANCE};
    struct error err = {0};
    struct executor_job *job;
    int64_t id;

    /* Ten seconds at $1 a second, paid at the start. */
    assert_int_equal(sessions_start(w->s, &req, &id, &err), 0);
    assert_int_equal(balance_of(&w->st, 1), USD(90));
    job = launch_and_start(w, id);
    assert_true(has_arg(job, "time=0.00277777778"));
    /* Epoch events of timed training charge nothing more. */
    emit_epoch(job, 1, 2.0);
    keep_alive(w, job, 2000);
    assert_int_equal(balance_of(&w->st, 1), USD(90));
    fake_end(job, EXECUTOR_EXITED, 4);
    poll_at(w, 10);
    assert_string_equal(state_of(w, id), "expired");
    assert_int_equal(balance_of(&w->st, 1), USD(90));

    /* A second timed session stopped after 2.5 of its 10 s gets $7.50
     * back. */
    assert_int_equal(sessions_start(w->s, &req, &id, &err), 0);
    assert_int_equal(balance_of(&w->st, 1), USD(80));
    job = launch_and_start(w, id);
    keep_alive(w, job, 2500);
    assert_int_equal(sessions_stop(w->s, 1, 1, &err), 0);
    assert_true(signalled(job, SIGTERM));
    fake_end(job, EXECUTOR_EXITED, 3);
    poll_at(w, 0);
    assert_string_equal(state_of(w, id), "stopped");
    assert_int_equal(query_int(&w->st,
                               "SELECT trained_ms FROM sessions "
                               "WHERE id = %lld",
                               (long long)id),
                     2500);
    assert_int_equal(balance_of(&w->st, 1), USD(87.50));
    expect_ledger_consistent(w, 1);
}

/* ---- Watchdogs and restarts ------------------------------------------------
 */

static void heartbeat_kills_silent_trainer(void **state)
{
    struct world *w = *state;
    struct error err = {0};
    struct executor_job *job;
    int64_t id = start_epochs(w, 1, 1, 1, 3);

    job = launch_and_start(w, id);
    poll_at(w, 900);
    assert_false(signalled(job, SIGKILL));
    poll_at(w, 200);
    assert_true(signalled(job, SIGKILL));
    poll_at(w, 10);
    assert_string_equal(state_of(w, id), "failed");
    assert_string_equal(reason_of(w, id), "no progress for 1 s");
    /* A failed session is resumable. */
    assert_int_equal(sessions_resume(w->s, 1, 1, NULL, &err), 0);
}

static void init_timeout_kills_silent_loader(void **state)
{
    struct world *w = *state;
    int64_t id = start_epochs(w, 1, 1, 1, 3);

    poll_at(w, 10);
    poll_at(w, 4000);
    assert_false(signalled(last_job(), SIGKILL));
    poll_at(w, 1100);
    assert_true(signalled(last_job(), SIGKILL));
    poll_at(w, 10);
    assert_string_equal(state_of(w, id), "failed");
    assert_string_equal(reason_of(w, id), "no progress for 5 s");
}

static void reconcile_fails_launched_sessions(void **state)
{
    struct world *w = *state;
    struct error err = {0};

    exec_sql(&w->st,
             "INSERT INTO sessions (id, model_id, account_id, "
             "instance_type_id, mode, state, epochs, rate, pid, created_at, "
             "updated_at) VALUES "
             "(1, 1, 1, 1, 'epochs', 'training', 3, 1, 4242, 0, 0),"
             "(2, 3, 2, 2, 'epochs', 'initializing', 3, 1, 4343, 0, 0),"
             "(3, 5, 4, 1, 'epochs', 'initializing', 3, 1, NULL, 0, 0),"
             "(4, 4, 3, 1, 'epochs', 'stopped', 3, 1, NULL, 0, 0);"
             "UPDATE sessions SET queue_position = 1 WHERE id = 3");
    fake.orphan_result = 1;
    assert_int_equal(sessions_reconcile(w->s, &err), 2);
    assert_int_equal(fake.norphans, 2);
    assert_int_equal(fake.orphans_killed[0], 4242);
    assert_int_equal(fake.orphans_killed[1], 4343);
    assert_string_equal(state_of(w, 1), "failed");
    assert_string_equal(reason_of(w, 1), "the backend restarted during "
                                         "training; resume to continue");
    assert_string_equal(state_of(w, 2), "failed");
    assert_int_equal(query_int(&w->st, "SELECT COUNT(*) FROM sessions WHERE "
                                       "pid IS NOT NULL"),
                     0);
    /* The queued session lost nothing: it launches into the freed slot. */
    assert_string_equal(state_of(w, 3), "initializing");
    poll_at(w, 10);
    assert_int_equal(fake.n, 1);
    assert_int_equal(query_int(&w->st, "SELECT COUNT(*) FROM sessions WHERE "
                                       "id = 3 AND pid IS NOT NULL"),
                     1);
}

static void shutdown_fails_running_sessions(void **state)
{
    struct world *w = *state;
    int64_t id = start_epochs(w, 1, 1, 1, 3);
    struct executor_job *job = launch_and_start(w, id);

    /* The fake trainer obeys SIGTERM only through SIGKILL at the
     * deadline (2 s). */
    sessions_shutdown(w->s);
    assert_true(signalled(job, SIGTERM));
    assert_true(signalled(job, SIGKILL));
    assert_int_equal(sessions_running(w->s), 0);
    assert_string_equal(state_of(w, id), "failed");
    assert_string_equal(reason_of(w, id), "the backend stopped during "
                                          "training; resume to continue");
}

/* ---- Local executor ------------------------------------------------------ */

static void local_executor_runs_in_own_group(void **state)
{
    const struct executor *ex = executor_local();
    struct world *w = *state;
    struct executor_job *job = NULL;
    struct executor_status st = {EXECUTOR_RUNNING, 0};
    struct error err = {0};
    char log[PATH_MAX + 16], buf[256] = "";
    char *argv[] = {"/bin/sh", "-c",
                    "echo '{\"event\":\"hello\"}' >&3; "
                    "ls /proc/self/fd; "
                    "echo pgid $(cut -d' ' -f5 /proc/$$/stat) pid $$",
                    NULL};
    int64_t deadline = clock_monotonic_ms() + 10000;
    ssize_t n = 0;

    snprintf(log, sizeof(log), "%s/sh.log", w->dir);
    assert_int_equal(ex->start(ex, argv, w->dir, log, &job, &err), 0);
    int fd = ex->events_fd(job);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    while (st.state == EXECUTOR_RUNNING && clock_monotonic_ms() < deadline) {
        usleep(10000);
        assert_int_equal(ex->poll(job, &st, &err), 0);
    }
    assert_int_equal(st.state, EXECUTOR_EXITED);
    assert_int_equal(st.code, 0);
    n = read(fd, buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "{\"event\":\"hello\"}\n");
    assert_int_equal(ex->signal(job, SIGTERM, &err), -ESRCH);
    ex->close(job);

    /* ls /proc/self/fd lists 0, 1, 2, 3 and the folder's own fd, and the
     * shell leads its own process group. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    assert_true(getdelim(&text, &len, '\0', f) > 0);
    fclose(f);
    int fds = 0;
    for (char *p = text; *p != '\0' && strncmp(p, "pgid", 4) != 0;
         p = strchr(p, '\n') + 1)
        fds++;
    assert_int_equal(fds, 5);
    long pgid = -1, pid = -2;
    assert_int_equal(
        sscanf(strstr(text, "pgid"), "pgid %ld pid %ld", &pgid, &pid), 2);
    assert_int_equal(pgid, pid);
    free(text);
}

/* A trainer runs at the configured nice value, and so does its session's
 * autogroup where the kernel has autogroups, so that it cannot take half
 * of the CPU time from the servers. */
static void local_executor_sets_nice(void **state)
{
    struct executor ex;
    struct world *w = *state;
    struct executor_job *job = NULL;
    struct executor_status st = {EXECUTOR_RUNNING, 0};
    struct error err = {0};
    char log[PATH_MAX + 16], text[256] = "";
    char *argv[] = {"/bin/sh", "-c",
                    "echo process $(cut -d' ' -f19 /proc/$$/stat); "
                    "cat /proc/$$/autogroup 2>/dev/null || echo none",
                    NULL};
    int64_t deadline = clock_monotonic_ms() + 10000;

    executor_local_init(&ex, 7);
    snprintf(log, sizeof(log), "%s/nice.log", w->dir);
    assert_int_equal(ex.start(&ex, argv, NULL, log, &job, &err), 0);
    while (st.state == EXECUTOR_RUNNING && clock_monotonic_ms() < deadline) {
        usleep(10000);
        assert_int_equal(ex.poll(job, &st, &err), 0);
    }
    assert_int_equal(st.state, EXECUTOR_EXITED);
    assert_int_equal(st.code, 0);
    ex.close(job);

    FILE *f = fopen(log, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_non_null(strstr(text, "process 7\n"));
    if (access("/proc/self/autogroup", F_OK) == 0) {
        assert_non_null(strstr(text, "/autogroup-"));
        assert_non_null(strstr(text, " nice 7\n"));
    }

    /* Out of range values are clamped. */
    executor_local_init(&ex, 25);
    assert_int_equal(ex.nice, 19);
    executor_local_init(&ex, -3);
    assert_int_equal(ex.nice, 0);
}

static void local_executor_reports_exec_failure(void **state)
{
    const struct executor *ex = executor_local();
    struct world *w = *state;
    struct executor_job *job = NULL;
    struct error err = {0};
    char log[PATH_MAX + 16];
    char *argv[] = {"/nonexistent/train", NULL};

    snprintf(log, sizeof(log), "%s/x.log", w->dir);
    assert_int_equal(ex->start(ex, argv, NULL, log, &job, &err), -ENOENT);
    assert_null(job);
    assert_non_null(strstr(err.msg, "cannot run '/nonexistent/train'"));
}

static void local_executor_kills_group(void **state)
{
    const struct executor *ex = executor_local();
    struct world *w = *state;
    struct executor_job *job = NULL;
    struct executor_status st = {EXECUTOR_RUNNING, 0};
    struct error err = {0};
    char log[PATH_MAX + 16];
    char *argv[] = {"/bin/sh", "-c", "sleep 30 & sleep 30; wait", NULL};
    int64_t deadline = clock_monotonic_ms() + 10000;

    snprintf(log, sizeof(log), "%s/kill.log", w->dir);
    assert_int_equal(ex->start(ex, argv, NULL, log, &job, &err), 0);
    /* The orphan check wants the program's file name: sh is not train. */
    assert_int_equal(ex->kill_orphan(ex, ex->job_id(job), "/opt/train", &err),
                     0);
    assert_int_equal(ex->signal(job, SIGTERM, &err), 0);
    while (st.state == EXECUTOR_RUNNING && clock_monotonic_ms() < deadline) {
        usleep(10000);
        assert_int_equal(ex->poll(job, &st, &err), 0);
    }
    assert_int_equal(st.state, EXECUTOR_SIGNALED);
    assert_int_equal(st.code, SIGTERM);
    /* Both sleeps got the signal too: the pipe reaches end of file. */
    char c;
    int fd = ex->events_fd(job);
    ssize_t n = -1;
    while (clock_monotonic_ms() < deadline && (n = read(fd, &c, 1)) < 0 &&
           errno == EAGAIN)
        usleep(10000);
    assert_int_equal(n, 0);
    ex->close(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(state_machine_allows_schema_chain),
        cmocka_unit_test(state_names_round_trip),
        cmocka_unit_test_setup_teardown(start_rejects_free_plan, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(start_needs_five_dollars, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(start_rejects_second_model, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(start_rejects_invalid_requests, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(start_race_fifty_threads_one_wins,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(queue_waits_for_a_free_slot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(queue_gpu_capacity_is_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stop_queued_timed_refunds_all, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(epoch_charges_exact_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(events_after_replays_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(batch_events_coalesced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(overlong_line_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(pause_when_balance_short, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stop_then_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_deadline_kills, setup, teardown),
        cmocka_unit_test_setup_teardown(exit_status_sets_final_state, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(exit_before_start_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(launch_failure_fails_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(timed_expires_and_refunds_on_stop,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(heartbeat_kills_silent_trainer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(init_timeout_kills_silent_loader, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reconcile_fails_launched_sessions,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(shutdown_fails_running_sessions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(local_executor_runs_in_own_group, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(local_executor_sets_nice, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(local_executor_reports_exec_failure,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(local_executor_kills_group, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("sessions", tests, NULL, NULL);
}
