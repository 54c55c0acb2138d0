/*
 * The trainers' lifecycle after launch: events, exits and watchdogs, all
 * driven by sessions_poll.
 *
 * Each trainer writes JSON lines on its events pipe. One transaction per
 * line stores it as a progress event, with the model's next seq, and
 * makes every change it causes. The start event moves the session to
 * training. An epoch event inserts the epochs row and charges the epoch,
 * once per session and epoch. A checkpoint event records the checkpoint.
 * Batch events are coalesced: of the batch events read in one poll, only
 * the newest is stored. When a transaction fails for a database reason,
 * the line is retried at the next poll before anything newer is read, so
 * events are neither lost nor applied twice.
 *
 * Billing of a partly trained epoch: a trainer that stops in the middle
 * of an epoch saves a checkpoint at that batch, and the resumed run
 * reports only its own part of the epoch in the epoch event's seconds.
 * The part before the stop, measured from the start of the epoch (or of
 * the run) to that checkpoint, is therefore charged when the trainer
 * exits, under its own idempotency key. A trainer killed with SIGKILL
 * repeats the whole unfinished epoch and its lost part is not charged.
 */
#include "sessions.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "clock.h"
#include "fsutil.h"
#include "ledger.h"
#include "log.h"
#include "sessions_internal.h"

/* ---- Event handling ----------------------------------------------------- */

/* Changes that a handled line makes to the job, applied only after its
 * transaction committed. */
struct line_effects {
    int64_t event_at; /* the event's time_ms, else our clock (Unix ms) */
    int started;
    int epoch_done;
    int epoch;
    double seconds;
    int64_t charged;
    int64_t balance;
    int balance_read;
    int pause;
    char pause_reason[SESSIONS_REASON_MAX];
    char error_message[SESSIONS_REASON_MAX];
};

static int json_int(const cJSON *o, const char *key, int fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        v->valuedouble < INT_MIN || v->valuedouble > INT_MAX)
        return fallback;
    return (int)v->valuedouble;
}

static const char *json_text(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Training time of the job's current run up to now, plus earlier runs. */
static int64_t job_trained_ms(const struct session_job *job, int started,
                              int64_t started_ms, int64_t now)
{
    int64_t ms = job->trained_base_ms;

    if (started && now > started_ms)
        ms += now - started_ms;
    return ms;
}

/* Heartbeat and, for timed training, the time used so far. */
static int touch_tx(struct sessions *s, const struct session_job *job,
                    const struct line_effects *fx, int64_t now,
                    struct error *err)
{
    int started = job->started || fx->started;
    int64_t started_ms = job->started ? job->training_started_ms : now;
    int64_t args[3] = {job->session_id, clock_realtime_ms(), 0};
    int rc;

    if (job->mode == SESSION_MODE_TIMED) {
        args[2] = job_trained_ms(job, started, started_ms, now);
        rc = sessions_exec_ints(s,
                                "UPDATE sessions SET heartbeat_at = ?2, "
                                "trained_ms = ?3 WHERE id = ?1",
                                args, 3, err);
    } else {
        rc = sessions_exec_ints(s,
                                "UPDATE sessions SET heartbeat_at = ?2 "
                                "WHERE id = ?1",
                                args, 2, err);
    }
    return rc < 0 ? rc : 0;
}

static int insert_epoch_row(struct sessions *s, const struct session_job *job,
                            int epoch, double seconds, int64_t cost,
                            const char *metrics, struct error *err);

/* Record epochs that the checkpoint contains but the database does not: a
 * trainer that finished epochs whose events the backend never stored
 * (it crashed first) resumes after them. Their durations are unknown and
 * are estimated as the last recorded epoch's. */
static int fill_epoch_gap_tx(struct sessions *s, const struct session_job *job,
                             const struct session_row *row, int start_epoch,
                             struct error *err)
{
    int64_t args[1] = {job->session_id}, ms, charged = 0;
    int found, rc;

    if (start_epoch - 1 <= row->epochs_done)
        return 0;
    rc = sessions_query_int(s,
                            "SELECT CAST(ROUND(seconds * 1000) AS INTEGER) "
                            "FROM epochs WHERE session_id = ?1 "
                            "ORDER BY epoch DESC LIMIT 1",
                            args, 1, &ms, &found, err);
    for (int e = row->epochs_done + 1; rc == 0 && e < start_epoch; e++) {
        double seconds = (double)ms / 1000.0;
        log_warn("epoch %d finished while the backend was down; recording "
                 "it at the last epoch's %.3f s account=%lld model=%lld "
                 "session=%lld",
                 e, seconds, (long long)job->account_id,
                 (long long)job->model_id, (long long)job->session_id);
        if (job->mode == SESSION_MODE_EPOCHS)
            rc = billing_charge_epoch_tx(s->st, job->account_id,
                                         job->session_id, job->model_id, e,
                                         seconds, job->rate, &charged, err);
        if (rc == 0)
            rc = insert_epoch_row(s, job, e, seconds, charged, "{}", err);
    }
    if (rc == 0) {
        int64_t done[2] = {job->session_id, start_epoch - 1};
        rc = sessions_exec_ints(s,
                                "UPDATE sessions SET epochs_done = "
                                "MAX(epochs_done, ?2) WHERE id = ?1",
                                done, 2, err);
        rc = rc < 0 ? rc : 0;
    }
    return rc;
}

static int on_start_tx(struct sessions *s, struct session_job *job,
                       const cJSON *ev, struct line_effects *fx,
                       struct error *err)
{
    struct session_row row;
    int rc = sessions_load_row(s, job->session_id, &row, err);

    if (rc != 0)
        return rc;
    fx->started = 1;
    rc = fill_epoch_gap_tx(s, job, &row, json_int(ev, "start_epoch", 1), err);
    if (rc != 0 || row.state != SESSION_INITIALIZING)
        return rc;
    return sessions_set_state_tx(s, &row, SESSION_TRAINING, NULL, err);
}

static int insert_epoch_row(struct sessions *s, const struct session_job *job,
                            int epoch, double seconds, int64_t cost,
                            const char *metrics, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(s->st->db,
                           "INSERT INTO epochs (session_id, epoch, seconds, "
                           "cost, metrics, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                           "ON CONFLICT (session_id, epoch) DO NOTHING",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "recording an epoch");
    sqlite3_bind_int64(stmt, 1, job->session_id);
    sqlite3_bind_int(stmt, 2, epoch);
    sqlite3_bind_double(stmt, 3, seconds);
    sqlite3_bind_int64(stmt, 4, cost);
    sqlite3_bind_text(stmt, 5, metrics, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 6, clock_realtime_ms());
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return sessions_db_error(s, err, "recording an epoch");
    return 0;
}

/* Epoch training pauses when the balance cannot pay one more epoch like
 * the last one. */
static int check_next_epoch_tx(struct sessions *s,
                               const struct session_job *job, int epoch,
                               int64_t cost, struct line_effects *fx,
                               struct error *err)
{
    char need[32];
    int rc;

    if (job->mode != SESSION_MODE_EPOCHS || epoch >= job->epochs ||
        job->term_sent)
        return 0;
    rc = ledger_balance(s->st, job->account_id, &fx->balance, err);
    fx->balance_read = rc == 0;
    if (rc != 0 || billing_covers_next_epoch(fx->balance, cost))
        return rc;
    fx->pause = 1;
    snprintf(fx->pause_reason, sizeof(fx->pause_reason),
             "balance too low for the next epoch (%s needed)",
             sessions_usd_cents_up(cost, need, sizeof(need)));
    return 0;
}

static int on_epoch_tx(struct sessions *s, struct session_job *job,
                       const cJSON *ev, struct line_effects *fx,
                       struct error *err)
{
    const cJSON *seconds = cJSON_GetObjectItemCaseSensitive(ev, "seconds");
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(ev, "metrics");
    int epoch = json_int(ev, "epoch", 0);
    int64_t cost = 0;
    char *metrics_text;
    int rc = 0;

    if (epoch < 1 || !cJSON_IsNumber(seconds) || !(seconds->valuedouble >= 0) ||
        !isfinite(seconds->valuedouble)) {
        log_warn("epoch event without a valid epoch or seconds; stored, not "
                 "charged model=%lld session=%lld",
                 (long long)job->model_id, (long long)job->session_id);
        return 0;
    }
    fx->epoch = epoch;
    fx->seconds = seconds->valuedouble;
    if (job->mode == SESSION_MODE_EPOCHS) {
        cost = billing_cost(fx->seconds, job->rate);
        rc = billing_charge_epoch_tx(s->st, job->account_id, job->session_id,
                                     job->model_id, epoch, fx->seconds,
                                     job->rate, &fx->charged, err);
    }
    if (rc != 0)
        return rc;

    metrics_text = cJSON_IsObject(metrics) ? cJSON_PrintUnformatted(metrics)
                                           : strdup("{}");
    if (metrics_text == NULL)
        return error_set(err, -ENOMEM, "out of memory");
    rc = insert_epoch_row(s, job, epoch, fx->seconds, fx->charged, metrics_text,
                          err);
    free(metrics_text);
    if (rc == 0) {
        int64_t args[2] = {job->session_id, epoch};
        rc = sessions_exec_ints(s,
                                "UPDATE sessions SET epochs_done = "
                                "MAX(epochs_done, ?2) WHERE id = ?1",
                                args, 2, err);
        rc = rc < 0 ? rc : 0;
    }
    if (rc == 0)
        rc = check_next_epoch_tx(s, job, epoch, cost, fx, err);
    fx->epoch_done = rc == 0;
    return rc;
}

static int insert_checkpoint_row(struct sessions *s,
                                 const struct session_job *job,
                                 const char *path, int epoch, int batch,
                                 struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(s->st->db,
                           "INSERT INTO checkpoints (session_id, epoch, "
                           "batch, path, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "recording a checkpoint");
    sqlite3_bind_int64(stmt, 1, job->session_id);
    sqlite3_bind_int(stmt, 2, epoch);
    sqlite3_bind_int(stmt, 3, batch);
    sqlite3_bind_text(stmt, 4, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, clock_realtime_ms());
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return sessions_db_error(s, err, "recording a checkpoint");
    return 0;
}

static int is_last_checkpoint(const char *path)
{
    const char *slash = strrchr(path, '/');

    return strcmp(slash != NULL ? slash + 1 : path, "last.ckpt") == 0;
}

static int on_checkpoint_tx(struct sessions *s, struct session_job *job,
                            const cJSON *ev, struct error *err)
{
    const char *path = json_text(ev, "path");
    int epoch = json_int(ev, "epoch", -1);
    int batch = json_int(ev, "batch", 0);
    sqlite3_stmt *stmt;
    int rc;

    if (path == NULL || path[0] == '\0' || epoch < 0 || batch < 0) {
        log_warn("checkpoint event without a valid path, epoch or batch; "
                 "not recorded model=%lld session=%lld",
                 (long long)job->model_id, (long long)job->session_id);
        return 0;
    }
    rc = insert_checkpoint_row(s, job, path, epoch, batch, err);
    if (rc != 0 || !is_last_checkpoint(path))
        return rc;

    /* Resume always reads last.ckpt, the newest position; best.ckpt is
     * kept for the user. */
    if (sqlite3_prepare_v2(s->st->db,
                           "UPDATE sessions SET checkpoint = ?1 "
                           "WHERE id = ?2",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "recording a checkpoint");
    sqlite3_bind_text(stmt, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, job->session_id);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return sessions_db_error(s, err, "recording a checkpoint");
    return 0;
}

/* Event names are stored as the kind; anything odd becomes "unknown". */
static const char *event_kind(const cJSON *ev)
{
    const char *kind = json_text(ev, "event");
    size_t len = kind != NULL ? strlen(kind) : 0;

    if (len == 0 || len > 32)
        return "unknown";
    for (size_t i = 0; i < len; i++)
        if (!((kind[i] >= 'a' && kind[i] <= 'z') || kind[i] == '_'))
            return "unknown";
    return kind;
}

/* Store one event and apply what it causes, in the caller's
 * transaction. */
static int handle_event_tx(struct sessions *s, struct session_job *job,
                           const cJSON *ev, const char *kind, const char *line,
                           struct line_effects *fx, int64_t now,
                           struct error *err)
{
    int rc =
        sessions_emit_tx(s, job->model_id, job->session_id, kind, line, err);

    if (rc != 0)
        return rc;
    if (strcmp(kind, "start") == 0) {
        rc = on_start_tx(s, job, ev, fx, err);
    } else if (strcmp(kind, "epoch") == 0) {
        rc = on_epoch_tx(s, job, ev, fx, err);
    } else if (strcmp(kind, "checkpoint") == 0) {
        rc = on_checkpoint_tx(s, job, ev, err);
    } else if (strcmp(kind, "error") == 0) {
        const char *msg = json_text(ev, "message");
        snprintf(fx->error_message, sizeof(fx->error_message), "%s",
                 msg != NULL ? msg : "");
    }
    if (rc == 0)
        rc = touch_tx(s, job, fx, now, err);
    return rc;
}

static void log_epoch(const struct session_job *job,
                      const struct line_effects *fx)
{
    char charged[32], balance[32];

    if (job->mode == SESSION_MODE_TIMED) {
        log_info("epoch done account=%lld model=%lld session=%lld epoch=%d "
                 "seconds=%.3f (timed, prepaid)",
                 (long long)job->account_id, (long long)job->model_id,
                 (long long)job->session_id, fx->epoch, fx->seconds);
        return;
    }
    log_info("epoch charged account=%lld model=%lld session=%lld epoch=%d "
             "seconds=%.3f charged=%s%s%s",
             (long long)job->account_id, (long long)job->model_id,
             (long long)job->session_id, fx->epoch, fx->seconds,
             sessions_usd(fx->charged, charged, sizeof(charged)),
             fx->balance_read ? " balance=" : "",
             fx->balance_read
                 ? sessions_usd(fx->balance, balance, sizeof(balance))
                 : "");
}

static void send_term(struct sessions *s, struct session_job *job, int64_t now)
{
    struct error err = {0};

    if (job->term_sent || job->ended)
        return;
    job->term_sent = 1;
    job->term_deadline_ms = now + s->stop_timeout_ms;
    if (s->ex->signal(job->job, SIGTERM, &err) != 0 && err.code != -ESRCH)
        log_warn("%s model=%lld session=%lld", err.msg,
                 (long long)job->model_id, (long long)job->session_id);
}

static void apply_effects(struct sessions *s, struct session_job *job,
                          const struct line_effects *fx, int64_t now)
{
    if (fx->started) {
        job->started = 1;
        job->training_started_ms = now;
        job->epoch_started_at = fx->event_at;
    }
    if (fx->epoch_done) {
        job->epoch_started_at = fx->event_at;
        job->control_epoch = fx->epoch;
        job->control_epoch_seconds = fx->seconds;
        log_epoch(job, fx);
    }
    if (fx->error_message[0] != '\0')
        snprintf(job->error_message, sizeof(job->error_message), "%s",
                 fx->error_message);
    if (fx->pause) {
        job->pause_requested = 1;
        snprintf(job->pause_reason, sizeof(job->pause_reason), "%s",
                 fx->pause_reason);
        log_info("pausing: %s account=%lld model=%lld session=%lld",
                 fx->pause_reason, (long long)job->account_id,
                 (long long)job->model_id, (long long)job->session_id);
        send_term(s, job, now);
    }
}

static int retryable(int rc)
{
    return rc == -EIO || rc == -ENOMEM || rc == -EAGAIN;
}

/* Handle one event line. Returns 0, or a retryable error after which the
 * caller keeps the line for the next poll. */
static int handle_line(struct sessions *s, struct session_job *job,
                       const char *line, int64_t now)
{
    struct line_effects fx;
    struct error err = {0};
    cJSON *ev = cJSON_Parse(line);
    char kind[40];
    int rc;

    if (!cJSON_IsObject(ev)) {
        cJSON_Delete(ev);
        log_warn("trainer wrote a line that is not a JSON object (%zu "
                 "bytes); ignored model=%lld session=%lld",
                 strlen(line), (long long)job->model_id,
                 (long long)job->session_id);
        return 0;
    }
    job->last_event_ms = now;
    snprintf(kind, sizeof(kind), "%s", event_kind(ev));
    memset(&fx, 0, sizeof(fx));
    /* Event times come from the trainer's own clock, because one poll may
     * read a whole epoch's events at once. */
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(ev, "time_ms");
    fx.event_at = cJSON_IsNumber(at) && at->valuedouble > 0
                      ? (int64_t)at->valuedouble
                      : clock_realtime_ms();
    rc = sessions_tx_begin(s, &err);
    if (rc == 0) {
        rc = handle_event_tx(s, job, ev, kind, line, &fx, now, &err);
        if (rc == 0)
            rc = sessions_tx_commit(s, &err);
        else
            sessions_tx_rollback(s);
    }
    cJSON_Delete(ev);
    if (rc == 0) {
        apply_effects(s, job, &fx, now);
        return 0;
    }
    if (retryable(rc)) {
        log_warn("cannot store a %s event: %s; retrying at the next poll "
                 "model=%lld session=%lld",
                 kind, err.msg, (long long)job->model_id,
                 (long long)job->session_id);
        return rc;
    }
    log_error("%s event dropped: %s model=%lld session=%lld", kind, err.msg,
              (long long)job->model_id, (long long)job->session_id);
    return 0;
}

/* Store the newest coalesced batch event; a failure drops it, because a
 * newer one follows within a second. */
static void flush_batch(struct sessions *s, struct session_job *job,
                        int64_t now)
{
    char *line = job->pending_batch;

    if (line == NULL)
        return;
    job->pending_batch = NULL;
    handle_line(s, job, line, now);
    free(line);
}

static int is_batch_line(const char *line)
{
    /* The trainer writes "event" last; cJSON keeps key order. */
    return strstr(line, "\"event\":\"batch\"") != NULL;
}

static int process_line(struct sessions *s, struct session_job *job,
                        const char *line, int64_t now)
{
    if (is_batch_line(line)) {
        char *copy = strdup(line);
        if (copy == NULL)
            return -ENOMEM;
        free(job->pending_batch);
        job->pending_batch = copy;
        job->last_event_ms = now;
        return 0;
    }
    flush_batch(s, job, now);
    return handle_line(s, job, line, now);
}

/* Handle every complete line in the buffer, unless one must be retried. */
static void consume_lines(struct sessions *s, struct session_job *job,
                          int64_t now)
{
    size_t start = 0;

    while (job->retry_line == NULL) {
        char *nl = memchr(job->line + start, '\n', job->line_len - start);
        if (nl == NULL)
            break;
        *nl = '\0';
        const char *line = job->line + start;
        start = (size_t)(nl - job->line) + 1;
        if (line[0] == '\0')
            continue;
        if (process_line(s, job, line, now) != 0) {
            job->retry_line = strdup(line);
            if (job->retry_line == NULL)
                log_error("out of memory; an event of session %lld is "
                          "lost model=%lld session=%lld",
                          (long long)job->session_id, (long long)job->model_id,
                          (long long)job->session_id);
        }
    }
    memmove(job->line, job->line + start, job->line_len - start);
    job->line_len -= start;
}

/* Drop bytes up to and including the next newline of an overlong line. */
static void skip_overlong(struct session_job *job)
{
    char *nl = memchr(job->line, '\n', job->line_len);

    if (nl == NULL) {
        job->line_len = 0;
        return;
    }
    size_t keep = job->line_len - (size_t)(nl + 1 - job->line);
    memmove(job->line, nl + 1, keep);
    job->line_len = keep;
    job->line_overlong = 0;
}

static void retry_pending(struct sessions *s, struct session_job *job,
                          int64_t now)
{
    char *line = job->retry_line;

    if (line == NULL)
        return;
    job->retry_line = NULL;
    if (handle_line(s, job, line, now) != 0)
        job->retry_line = line;
    else
        free(line);
}

static int64_t monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Log the backend's time on an epoch's events as a share of the epoch's
 * training time, then start counting the next epoch. The time is wall
 * time in read_events, every tick's empty read included, so it is an
 * upper bound on the CPU time spent. */
static void log_control_share(struct session_job *job)
{
    double ms = (double)job->control_ns / 1e6;
    double share = job->control_epoch_seconds > 0
                       ? ms / (job->control_epoch_seconds * 1000.0) * 100.0
                       : 0;

    log_info("control plane: %.3f ms for epoch %d, %.3f%% of its %.3f s "
             "model=%lld session=%lld",
             ms, job->control_epoch, share, job->control_epoch_seconds,
             (long long)job->model_id, (long long)job->session_id);
    job->control_ns = 0;
    job->control_epoch = 0;
}

static void read_events(struct sessions *s, struct session_job *job,
                        int64_t now)
{
    int fd = s->ex->events_fd(job->job);
    int64_t started_ns = monotonic_ns();

    retry_pending(s, job, now);
    consume_lines(s, job, now);
    while (job->retry_line == NULL && !job->eof) {
        ssize_t n = read(fd, job->line + job->line_len,
                         SESSIONS_LINE_MAX - job->line_len);
        if (n == 0) {
            job->eof = 1;
            break;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_error("cannot read trainer events: %s model=%lld "
                          "session=%lld",
                          strerror(errno), (long long)job->model_id,
                          (long long)job->session_id);
            break;
        }
        job->line_len += (size_t)n;
        if (job->line_overlong)
            skip_overlong(job);
        consume_lines(s, job, now);
        if (job->line_len == SESSIONS_LINE_MAX) {
            log_warn("trainer event line longer than %d bytes; dropped "
                     "model=%lld session=%lld",
                     SESSIONS_LINE_MAX, (long long)job->model_id,
                     (long long)job->session_id);
            job->line_len = 0;
            job->line_overlong = 1;
        }
    }
    if (job->retry_line == NULL)
        flush_batch(s, job, now);
    job->control_ns += monotonic_ns() - started_ns;
    if (job->control_epoch > 0)
        log_control_share(job);
}

/* ---- Exit --------------------------------------------------------------- */

/* The final state of a trainer that ended, with its reason. */
static enum session_state decide_outcome(const struct sessions *s,
                                         const struct session_job *job,
                                         char *reason, size_t len)
{
    const struct executor_status *st = &job->status;

    reason[0] = '\0';
    if (job->fail_reason[0] != '\0') {
        snprintf(reason, len, "%s", job->fail_reason);
        return SESSION_FAILED;
    }
    if (job->shutdown) {
        snprintf(reason, len,
                 "the backend stopped during training; "
                 "resume to continue");
        return SESSION_FAILED;
    }
    if (st->state == EXECUTOR_SIGNALED) {
        if (job->term_killed && (job->stop_requested || job->pause_requested))
            snprintf(reason, len,
                     "%.300s; the trainer did not exit within %g s of "
                     "SIGTERM and was killed",
                     job->stop_requested ? "stopped on request"
                                         : job->pause_reason,
                     (double)s->stop_timeout_ms / 1000.0);
        else
            snprintf(reason, len, "killed by signal %d", st->code);
        if (job->term_killed && job->stop_requested)
            return SESSION_STOPPED;
        if (job->term_killed && job->pause_requested)
            return SESSION_PAUSED;
        return SESSION_FAILED;
    }
    switch (st->code) {
    case 0:
        return SESSION_COMPLETED;
    case 3:
        if (job->pause_requested && !job->stop_requested) {
            snprintf(reason, len, "%s", job->pause_reason);
            return SESSION_PAUSED;
        }
        snprintf(reason, len, "%s",
                 job->stop_requested ? "stopped on request"
                                     : "stopped by a signal from outside "
                                       "the backend");
        return SESSION_STOPPED;
    case 4:
        snprintf(reason, len, "the paid time of %.3f h is used up",
                 (double)job->time_limit_ms / 3600000.0);
        return SESSION_EXPIRED;
    default:
        if (job->error_message[0] != '\0')
            snprintf(reason, len, "%s", job->error_message);
        else
            snprintf(reason, len, "trainer exited with status %d", st->code);
        return SESSION_FAILED;
    }
}

/* A charge or refund at the end of a run that fails for a reason other
 * than the database is logged and skipped, so that the session still
 * reaches its final state. Database failures are returned for a retry. */
static int settle_money_error(const struct session_job *job, const char *what,
                              int rc, struct error *err)
{
    if (rc == 0 || retryable(rc))
        return rc;
    log_error("%s failed and was skipped: %s account=%lld model=%lld "
              "session=%lld",
              what, err->msg, (long long)job->account_id,
              (long long)job->model_id, (long long)job->session_id);
    return 0;
}

static int finish_tx(struct sessions *s, struct session_job *job,
                     struct session_row *row, enum session_state to,
                     const char *reason, struct error *err)
{
    int64_t used = 0;
    int rc = 0;

    /* Nothing is charged for an unfinished epoch here: the trainer's
     * checkpoint carries the epoch's time so far, and the epoch event of
     * the resumed run reports and charges the whole epoch. */
    if (row->state != SESSION_INITIALIZING && row->state != SESSION_TRAINING)
        to = row->state; /* changed by someone else: only clear the pid */
    if (rc == 0 && job->mode == SESSION_MODE_TIMED) {
        used = job_trained_ms(job, job->started, job->training_started_ms,
                              job->ended_ms);
        if (used > job->time_limit_ms)
            used = job->time_limit_ms;
        int64_t args[2] = {job->session_id, used};
        rc = sessions_exec_ints(s,
                                "UPDATE sessions SET trained_ms = ?2 "
                                "WHERE id = ?1",
                                args, 2, err);
        rc = rc < 0 ? rc : 0;
        row->trained_ms = used;
    }
    if (rc == 0 && to != row->state &&
        (to == SESSION_STOPPED || to == SESSION_COMPLETED))
        rc = settle_money_error(job, "refunding unused timed training",
                                sessions_refund_timed_tx(s, row, used, err),
                                err);
    if (rc == 0) {
        int64_t args[1] = {job->session_id};
        rc = sessions_exec_ints(s,
                                "UPDATE sessions SET pid = NULL "
                                "WHERE id = ?1",
                                args, 1, err);
        rc = rc < 0 ? rc : 0;
    }
    if (rc == 0 && to != row->state)
        rc = sessions_set_state_tx(s, row, to, reason, err);
    return rc;
}

static void describe_status(const struct executor_status *st, char *out,
                            size_t len)
{
    if (st->state == EXECUTOR_SIGNALED)
        snprintf(out, len, "signal %d", st->code);
    else
        snprintf(out, len, "status %d", st->code);
}

/* Record the end of a trainer. Returns 0 when done, or an error after
 * which the caller retries at the next poll. */
static int finish_job(struct sessions *s, struct session_job *job)
{
    char reason[SESSIONS_REASON_MAX], how[32];
    struct session_row row;
    struct error err = {0};
    enum session_state to;
    int rc;

    to = decide_outcome(s, job, reason, sizeof(reason));
    rc = sessions_tx_begin(s, &err);
    if (rc == 0) {
        rc = sessions_load_row(s, job->session_id, &row, &err);
        if (rc == 0 && !session_transition_allowed(row.state, to) &&
            (row.state == SESSION_INITIALIZING)) {
            /* Ended before its start event: it never trained. */
            to = SESSION_FAILED;
            if (job->error_message[0] == '\0') {
                describe_status(&job->status, how, sizeof(how));
                snprintf(reason, sizeof(reason),
                         "the trainer ended with %s before training "
                         "started",
                         how);
            }
        }
        if (rc == 0)
            rc = finish_tx(s, job, &row, to, reason, &err);
        if (rc == 0)
            rc = sessions_tx_commit(s, &err);
        else
            sessions_tx_rollback(s);
    }
    describe_status(&job->status, how, sizeof(how));
    if (rc != 0) {
        log_error("cannot record the end of session %lld (%s): %s; "
                  "retrying at the next poll model=%lld session=%lld",
                  (long long)job->session_id, how, err.msg,
                  (long long)job->model_id, (long long)job->session_id);
        return rc;
    }
    log_info("trainer ended with %s account=%lld model=%lld session=%lld "
             "state=%s",
             how, (long long)job->account_id, (long long)job->model_id,
             (long long)job->session_id, session_state_name(row.state));
    return 0;
}

/* ---- Watchdogs ---------------------------------------------------------- */

static void kill_job(struct sessions *s, struct session_job *job)
{
    struct error err = {0};

    job->killed = 1;
    if (s->ex->signal(job->job, SIGKILL, &err) != 0 && err.code != -ESRCH)
        log_error("%s model=%lld session=%lld", err.msg,
                  (long long)job->model_id, (long long)job->session_id);
}

static void watch_job(struct sessions *s, struct session_job *job, int64_t now)
{
    int64_t limit = job->started ? s->heartbeat_timeout_ms : s->init_timeout_ms;

    if (job->ended || job->killed)
        return;
    if (job->term_sent && now >= job->term_deadline_ms) {
        log_warn("trainer did not exit within %lld ms of SIGTERM; killing "
                 "it account=%lld model=%lld session=%lld",
                 (long long)s->stop_timeout_ms, (long long)job->account_id,
                 (long long)job->model_id, (long long)job->session_id);
        job->term_killed = 1;
        kill_job(s, job);
        return;
    }
    /* After SIGTERM the deadline above governs, and a pending retry
     * means that the database, not the trainer, is stuck. */
    if (job->term_sent || job->retry_line != NULL ||
        now - job->last_event_ms <= limit)
        return;
    snprintf(job->fail_reason, sizeof(job->fail_reason), "no progress for %g s",
             (double)limit / 1000.0);
    log_warn("trainer silent for %lld ms; killing it account=%lld "
             "model=%lld session=%lld",
             (long long)(now - job->last_event_ms), (long long)job->account_id,
             (long long)job->model_id, (long long)job->session_id);
    kill_job(s, job);
}

struct session_job *sessions_find_job(struct sessions *s, int64_t session_id)
{
    for (struct session_job *j = s->jobs; j != NULL; j = j->next)
        if (j->session_id == session_id)
            return j;
    return NULL;
}

void sessions_request_stop(struct sessions *s, struct session_job *job,
                           int64_t now_ms)
{
    if (job->stop_requested)
        return;
    job->stop_requested = 1;
    log_info("asking the trainer to stop (SIGTERM, SIGKILL after %lld ms) "
             "account=%lld model=%lld session=%lld",
             (long long)s->stop_timeout_ms, (long long)job->account_id,
             (long long)job->model_id, (long long)job->session_id);
    send_term(s, job, now_ms);
}

/* ---- Poll --------------------------------------------------------------- */

static void check_exit(struct sessions *s, struct session_job *job, int64_t now)
{
    struct error err = {0};

    if (job->ended)
        return;
    if (s->ex->poll(job->job, &job->status, &err) != 0) {
        log_error("lost track of the trainer: %s model=%lld session=%lld",
                  err.msg, (long long)job->model_id,
                  (long long)job->session_id);
        snprintf(job->fail_reason, sizeof(job->fail_reason),
                 "lost track of the trainer process: %.400s", err.msg);
        job->status.state = EXECUTOR_SIGNALED;
        job->status.code = 0;
    } else if (job->status.state == EXECUTOR_RUNNING) {
        return;
    }
    job->ended = 1;
    job->ended_ms = now;
    /* Everything it wrote before exiting is in the pipe now. */
    read_events(s, job, now);
}

static int pipe_readable(const struct sessions *s,
                         const struct session_job *job)
{
    return !job->ended && !job->eof && job->retry_line == NULL &&
           s->ex->events_fd(job->job) >= 0;
}

int sessions_pipes(const struct sessions *s, struct sessions_pipe *out,
                   int max)
{
    int n = 0;

    for (const struct session_job *j = s->jobs; j != NULL && n < max;
         j = j->next) {
        if (!pipe_readable(s, j))
            continue;
        out[n].session_id = j->session_id;
        out[n].fd = s->ex->events_fd(j->job);
        n++;
    }
    return n;
}

int sessions_read_pipe(struct sessions *s, int64_t session_id,
                       int64_t now_ms)
{
    struct session_job *job = s->jobs;

    while (job != NULL && job->session_id != session_id)
        job = job->next;
    if (job == NULL || !pipe_readable(s, job))
        return 0;
    read_events(s, job, now_ms);
    return pipe_readable(s, job);
}

void sessions_set_pipe_watched(struct sessions *s, int64_t session_id,
                               int watched)
{
    for (struct session_job *j = s->jobs; j != NULL; j = j->next)
        if (j->session_id == session_id)
            j->pipe_watched = watched;
}

void sessions_poll(struct sessions *s, int64_t now_ms)
{
    struct session_job **link = &s->jobs;

    while (*link != NULL) {
        struct session_job *job = *link;

        if (!job->ended && !job->pipe_watched)
            read_events(s, job, now_ms);
        check_exit(s, job, now_ms);
        if (!job->ended) {
            watch_job(s, job, now_ms);
            link = &job->next;
            continue;
        }
        if (job->retry_line != NULL)
            read_events(s, job, now_ms);
        if (job->retry_line != NULL || finish_job(s, job) != 0) {
            link = &job->next;
            continue;
        }
        *link = job->next;
        s->ex->close(job->job);
        sessions_free_job(job);
        s->schedule_dirty = 1;
    }
    sessions_schedule(s, now_ms);
}

void sessions_shutdown(struct sessions *s)
{
    int64_t now = clock_monotonic_ms(), give_up;

    s->shutting_down = 1;
    if (s->jobs != NULL)
        log_info("stopping %d trainers before the backend exits",
                 sessions_running(s));
    for (struct session_job *j = s->jobs; j != NULL; j = j->next) {
        j->shutdown = 1;
        send_term(s, j, now);
    }
    /* After the SIGKILL at the stop deadline, allow a little time for the
     * exits to be recorded. */
    give_up = now + s->stop_timeout_ms + 5000;
    while (s->jobs != NULL && clock_monotonic_ms() < give_up) {
        struct timespec pause = {0, 50 * 1000 * 1000};
        sessions_poll(s, clock_monotonic_ms());
        if (s->jobs != NULL)
            nanosleep(&pause, NULL);
    }
}
