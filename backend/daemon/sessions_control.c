/*
 * Users' requests on sessions: start, stop and resume, and the
 * reconciliation at backend start.
 *
 * Start and resume make every check inside one BEGIN IMMEDIATE
 * transaction: the Pro plan, the model and its data set, the instance
 * type, the one-model rule, the money rule, and the queue position. That
 * transaction takes SQLite's write lock at its first statement, so the
 * checks remain true when the insert or update commits, even with many
 * connections racing. The partial unique index on active sessions backs
 * the one-model check, and a UNIQUE violation becomes the same error.
 *
 * The money rule: epoch training needs a balance of at least
 * EPOCH_START_MINIMUM, and a resume also needs the cost of one more epoch
 * like the last one. Timed training pays its whole price at the start,
 * and its unused part is refunded when it stops or completes early.
 */
#include "sessions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "ledger.h"
#include "log.h"
#include "sessions_internal.h"

struct model_info {
    int64_t id;
    int64_t account_id;
    char name[256];
    int deleted;
    char dataset_status[32];
    char *args; /* JSON text */
};

struct type_info {
    int64_t id;
    char name[64];
    char device[16];
    int64_t price_per_hour;
    int capacity;
    int enabled;
};

static void copy_text_column(sqlite3_stmt *stmt, int col, char *out, size_t len)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);

    snprintf(out, len, "%s", text != NULL ? (const char *)text : "");
}

/* ---- Checks ------------------------------------------------------------- */

static int check_plan(struct sessions *s, int64_t account_id, struct error *err)
{
    sqlite3_stmt *stmt;
    char plan[16];
    int rc;

    if (sqlite3_prepare_v2(s->st->db, "SELECT plan FROM accounts WHERE id = ?1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "reading the account");
    sqlite3_bind_int64(stmt, 1, account_id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        copy_text_column(stmt, 0, plan, sizeof(plan));
    sqlite3_finalize(stmt);
    if (rc == SQLITE_DONE)
        return error_set(err, -ENOENT, "account %lld not found",
                         (long long)account_id);
    if (rc != SQLITE_ROW)
        return sessions_db_error(s, err, "reading the account");
    if (strcmp(plan, "pro") != 0)
        return error_set(err, -EPERM,
                         "cloud training is part of the Pro plan, and "
                         "account %lld is on the %s plan; upgrade the "
                         "account to Pro, then start the training again",
                         (long long)account_id, plan);
    return 0;
}

static int load_model(struct sessions *s, int64_t account_id, int64_t model_id,
                      struct model_info *m, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    memset(m, 0, sizeof(*m));
    if (sqlite3_prepare_v2(s->st->db,
                           "SELECT m.id, m.account_id, m.name, m.deleted, "
                           "d.status, m.args FROM models m "
                           "JOIN datasets d ON d.id = m.dataset_id "
                           "WHERE m.id = ?1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "reading the model");
    sqlite3_bind_int64(stmt, 1, model_id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        m->id = sqlite3_column_int64(stmt, 0);
        m->account_id = sqlite3_column_int64(stmt, 1);
        copy_text_column(stmt, 2, m->name, sizeof(m->name));
        m->deleted = sqlite3_column_int(stmt, 3);
        copy_text_column(stmt, 4, m->dataset_status, sizeof(m->dataset_status));
        const unsigned char *args = sqlite3_column_text(stmt, 5);
        m->args = strdup(args != NULL ? (const char *)args : "{}");
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sessions_db_error(s, err, "reading the model");
    /* Another account's model is reported as missing, not as foreign. */
    if (rc == SQLITE_DONE || m->account_id != account_id || m->deleted) {
        free(m->args);
        m->args = NULL;
        return error_set(err, -ENOENT, "model %lld not found",
                         (long long)model_id);
    }
    if (m->args == NULL)
        return error_set(err, -ENOMEM, "out of memory");
    return 0;
}

static int check_model_ready(const struct model_info *m, struct error *err)
{
    if (strcmp(m->dataset_status, "ready") == 0)
        return sessions_check_args(m->args, m->name, err);
    if (strcmp(m->dataset_status, "uploading") == 0 ||
        strcmp(m->dataset_status, "validating") == 0)
        return error_set(err, -EINVAL,
                         "the data set of model '%s' is still %s; start "
                         "the training when it is ready",
                         m->name, m->dataset_status);
    return error_set(err, -EINVAL,
                     "the data set of model '%s' is %s; choose a valid data "
                     "set for the model",
                     m->name, m->dataset_status);
}

static int load_type(struct sessions *s, int64_t type_id, struct type_info *t,
                     struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    memset(t, 0, sizeof(*t));
    if (sqlite3_prepare_v2(s->st->db,
                           "SELECT id, name, device, price_per_hour, "
                           "capacity, enabled FROM instance_types "
                           "WHERE id = ?1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "reading the instance type");
    sqlite3_bind_int64(stmt, 1, type_id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        t->id = sqlite3_column_int64(stmt, 0);
        copy_text_column(stmt, 1, t->name, sizeof(t->name));
        copy_text_column(stmt, 2, t->device, sizeof(t->device));
        t->price_per_hour = sqlite3_column_int64(stmt, 3);
        t->capacity =
            sessions_type_capacity(t->device, sqlite3_column_int(stmt, 4));
        t->enabled = sqlite3_column_int(stmt, 5);
    }
    sqlite3_finalize(stmt);
    if (rc == SQLITE_DONE)
        return error_set(err, -ENOENT,
                         "instance type %lld not found; choose one of the "
                         "offered types",
                         (long long)type_id);
    if (rc != SQLITE_ROW)
        return sessions_db_error(s, err, "reading the instance type");
    if (!t->enabled)
        return error_set(err, -EINVAL,
                         "instance type '%s' is no longer offered; choose "
                         "another",
                         t->name);
    return 0;
}

static int check_one_active(struct sessions *s, int64_t account_id,
                            struct error *err)
{
    char name[256];
    int rc = sessions_active_model(s, account_id, name, sizeof(name), err);

    if (rc < 0)
        return rc;
    if (rc == 1)
        return error_set(err, -EBUSY, "model '%s' is training; stop it or wait",
                         name);
    return 0;
}

/* Epoch training: the start minimum, and for a resume the cost of the
 * next epoch estimated from the last one (last_epoch_cost, 0: none). */
static int check_epoch_money(struct sessions *s, int64_t account_id,
                             int64_t last_epoch_cost, struct error *err)
{
    char balance_text[32], need_text[32], short_text[32];
    int64_t balance;
    int rc = ledger_balance(s->st, account_id, &balance, err);

    if (rc != 0)
        return rc;
    if (!billing_covers_epoch_start(balance))
        return error_set(
            err, -ENOSPC,
            "balance %s is below the %s needed to start epoch training; "
            "top up at least %s",
            sessions_usd(balance, balance_text, sizeof(balance_text)),
            sessions_usd(EPOCH_START_MINIMUM, need_text, sizeof(need_text)),
            sessions_usd_cents_up(EPOCH_START_MINIMUM - balance, short_text,
                                  sizeof(short_text)));
    if (last_epoch_cost > 0 &&
        !billing_covers_next_epoch(balance, last_epoch_cost))
        return error_set(
            err, -ENOSPC,
            "balance %s does not cover the next epoch (%s needed, the "
            "cost of the last one); top up at least %s",
            sessions_usd(balance, balance_text, sizeof(balance_text)),
            sessions_usd_cents_up(last_epoch_cost, need_text,
                                  sizeof(need_text)),
            sessions_usd_cents_up(last_epoch_cost - balance, short_text,
                                  sizeof(short_text)));
    return 0;
}

int sessions_queue_position_tx(struct sessions *s, int64_t type_id,
                               int *position, struct error *err)
{
    struct type_info t;
    int64_t args[1] = {type_id}, holders, last;
    int found, rc;

    *position = 0;
    rc = load_type(s, type_id, &t, err);
    if (rc == 0)
        rc = sessions_query_int(s,
                                "SELECT COUNT(*) FROM sessions "
                                "WHERE instance_type_id = ?1 AND state IN "
                                "('initializing', 'training') "
                                "AND queue_position IS NULL",
                                args, 1, &holders, &found, err);
    if (rc == 0)
        rc = sessions_query_int(s,
                                "SELECT MAX(queue_position) FROM sessions "
                                "WHERE instance_type_id = ?1 AND state IN "
                                "('initializing', 'training')",
                                args, 1, &last, &found, err);
    if (rc != 0)
        return rc;
    if (last == 0 && holders < t.capacity)
        return 0;
    *position = (int)last + 1;
    return 0;
}

/* ---- Start -------------------------------------------------------------- */

static int validate_start(const struct sessions_start_request *req,
                          struct error *err)
{
    if (req->mode != SESSION_MODE_EPOCHS && req->mode != SESSION_MODE_TIMED)
        return error_set(err, -EINVAL,
                         "training mode %d is invalid; use epochs or timed",
                         (int)req->mode);
    if (req->epochs < 1 || req->epochs > SESSIONS_EPOCHS_MAX)
        return error_set(err, -EINVAL, "epochs %d is invalid; use 1 to %d",
                         req->epochs, SESSIONS_EPOCHS_MAX);
    if (req->mode == SESSION_MODE_TIMED &&
        (req->time_limit_ms <= 0 ||
         req->time_limit_ms > SESSIONS_TIME_LIMIT_MAX_MS))
        return error_set(err, -EINVAL,
                         "time limit %lld ms is invalid; use 1 ms to %lld "
                         "ms (7 days)",
                         (long long)req->time_limit_ms,
                         (long long)SESSIONS_TIME_LIMIT_MAX_MS);
    if (req->mode == SESSION_MODE_EPOCHS && req->payment != SESSION_PAY_BALANCE)
        return error_set(err, -EINVAL,
                         "epoch training is charged from the balance; pay "
                         "ahead only for timed training");
    if (req->payment != SESSION_PAY_BALANCE &&
        req->payment != SESSION_PAY_PREPAID)
        return error_set(err, -EINVAL,
                         "payment %d is invalid; use balance or prepaid",
                         (int)req->payment);
    return 0;
}

static int insert_session(struct sessions *s,
                          const struct sessions_start_request *req,
                          const struct type_info *t, int64_t price,
                          int position, int64_t *id, struct error *err)
{
    int64_t now = clock_realtime_ms();
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(
            s->st->db,
            "INSERT INTO sessions (model_id, account_id, instance_type_id, "
            "mode, state, epochs, time_limit_ms, price, payment, rate, "
            "queue_position, created_at, updated_at) VALUES (?1, ?2, ?3, "
            "?4, 'initializing', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
            -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "inserting the session");
    sqlite3_bind_int64(stmt, 1, req->model_id);
    sqlite3_bind_int64(stmt, 2, req->account_id);
    sqlite3_bind_int64(stmt, 3, t->id);
    sqlite3_bind_text(stmt, 4,
                      req->mode == SESSION_MODE_TIMED ? "timed" : "epochs", -1,
                      SQLITE_STATIC);
    sqlite3_bind_int(stmt, 5, req->epochs);
    if (req->mode == SESSION_MODE_TIMED) {
        sqlite3_bind_int64(stmt, 6, req->time_limit_ms);
        sqlite3_bind_int64(stmt, 7, price);
    } else {
        sqlite3_bind_null(stmt, 6);
        sqlite3_bind_null(stmt, 7);
    }
    sqlite3_bind_text(
        stmt, 8, req->payment == SESSION_PAY_PREPAID ? "prepaid" : "balance",
        -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 9, t->price_per_hour);
    if (position > 0)
        sqlite3_bind_int(stmt, 10, position);
    else
        sqlite3_bind_null(stmt, 10);
    sqlite3_bind_int64(stmt, 11, now);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if ((rc & 0xff) == SQLITE_CONSTRAINT &&
        sqlite3_extended_errcode(s->st->db) == SQLITE_CONSTRAINT_UNIQUE)
        return sessions_busy_error(s, req->account_id, err);
    if (rc != SQLITE_DONE)
        return sessions_db_error(s, err, "inserting the session");
    *id = sqlite3_last_insert_rowid(s->st->db);
    return 0;
}

/* Every check and write of a start, inside the caller's transaction. */
static int start_tx(struct sessions *s,
                    const struct sessions_start_request *req,
                    int64_t *session_id, struct error *err)
{
    struct model_info m;
    struct type_info t;
    struct session_row row;
    int64_t price = 0;
    int position, rc;

    rc = check_plan(s, req->account_id, err);
    if (rc == 0)
        rc = load_model(s, req->account_id, req->model_id, &m, err);
    if (rc != 0)
        return rc;
    rc = check_model_ready(&m, err);
    free(m.args);
    if (rc == 0)
        rc = load_type(s, req->instance_type_id, &t, err);
    if (rc == 0)
        rc = check_one_active(s, req->account_id, err);
    if (rc == 0 && req->mode == SESSION_MODE_EPOCHS)
        rc = check_epoch_money(s, req->account_id, 0, err);
    if (rc == 0)
        rc = sessions_queue_position_tx(s, t.id, &position, err);
    if (rc != 0)
        return rc;

    if (req->mode == SESSION_MODE_TIMED)
        price = billing_timed_price(req->time_limit_ms, t.price_per_hour);
    rc = insert_session(s, req, &t, price, position, session_id, err);
    if (rc == 0 && req->mode == SESSION_MODE_TIMED)
        rc = billing_pay_timed_tx(s->st, req->account_id, *session_id,
                                  req->model_id, price, t.price_per_hour,
                                  req->payment == SESSION_PAY_PREPAID, err);
    if (rc == 0)
        rc = sessions_load_row(s, *session_id, &row, err);
    if (rc == 0)
        rc = sessions_emit_state_tx(s, &row, "started", err);
    return rc;
}

int sessions_start(struct sessions *s, const struct sessions_start_request *req,
                   int64_t *session_id, struct error *err)
{
    char price_text[32], rate_text[32];
    struct session_row row;
    int64_t id = 0;
    int rc;

    rc = validate_start(req, err);
    if (rc == 0)
        rc = sessions_tx_begin(s, err);
    if (rc != 0)
        goto rejected;
    rc = start_tx(s, req, &id, err);
    if (rc == 0)
        rc = sessions_tx_commit(s, err);
    else
        sessions_tx_rollback(s);
    if (rc != 0)
        goto rejected;

    if (session_id != NULL)
        *session_id = id;
    s->schedule_dirty = 1;
    if (sessions_load_row(s, id, &row, NULL) == 0)
        log_info("session started account=%lld model=%lld session=%lld "
                 "mode=%s epochs=%d instance_type=%lld rate=%s/h%s%s "
                 "queue_position=%d",
                 (long long)req->account_id, (long long)req->model_id,
                 (long long)id,
                 req->mode == SESSION_MODE_TIMED ? "timed" : "epochs",
                 req->epochs, (long long)req->instance_type_id,
                 sessions_usd(row.rate, rate_text, sizeof(rate_text)),
                 req->mode == SESSION_MODE_TIMED ? " paid=" : "",
                 req->mode == SESSION_MODE_TIMED
                     ? sessions_usd(row.price, price_text, sizeof(price_text))
                     : "",
                 row.queue_position);
    return 0;

rejected:
    log_info("session start rejected account=%lld model=%lld: %s",
             (long long)req->account_id, (long long)req->model_id,
             err != NULL ? err->msg : "");
    return rc;
}

/* ---- Resume ------------------------------------------------------------- */

static int latest_session(struct sessions *s, int64_t model_id,
                          const char *model_name, int64_t *id,
                          struct error *err)
{
    int64_t args[1] = {model_id};
    int found;
    int rc = sessions_query_int(s,
                                "SELECT MAX(id) FROM sessions "
                                "WHERE model_id = ?1",
                                args, 1, id, &found, err);

    if (rc == 0 && !found)
        rc = error_set(err, -ENOENT,
                       "model '%s' has no training to resume; start one",
                       model_name);
    return rc;
}

static int check_resumable(const struct session_row *row, struct error *err)
{
    switch (row->state) {
    case SESSION_INITIALIZING:
    case SESSION_TRAINING:
        return error_set(err, -EBUSY, "model '%s' is training; stop it or wait",
                         row->model_name);
    case SESSION_COMPLETED:
        return error_set(err, -EINVAL,
                         "the training of model '%s' completed its %d "
                         "epochs; start a new training to train again",
                         row->model_name, row->epochs);
    default:
        break;
    }
    if (!session_state_resumable(row->state))
        return error_set(err, -EINVAL,
                         "session %lld of model '%s' is %s and cannot "
                         "resume",
                         (long long)row->id, row->model_name,
                         session_state_name(row->state));
    /* Timed training is paid once per session; once stopped (refunded)
     * or expired it has no paid time left to continue with. */
    if (row->mode == SESSION_MODE_TIMED &&
        (row->state != SESSION_FAILED || row->trained_ms >= row->time_limit_ms))
        return error_set(err, -EINVAL,
                         "timed session %lld of model '%s' is %s and has no "
                         "paid time left; start a new timed training",
                         (long long)row->id, row->model_name,
                         session_state_name(row->state));
    return 0;
}

/* Cost of the session's last completed epoch at its rate; 0 without. */
static int last_epoch_cost(struct sessions *s, const struct session_row *row,
                           int64_t *cost, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    *cost = 0;
    if (sqlite3_prepare_v2(s->st->db,
                           "SELECT seconds FROM epochs WHERE session_id = ?1 "
                           "ORDER BY epoch DESC LIMIT 1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "reading the last epoch");
    sqlite3_bind_int64(stmt, 1, row->id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *cost = billing_cost(sqlite3_column_double(stmt, 0), row->rate);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sessions_db_error(s, err, "reading the last epoch");
    return 0;
}

static int resume_tx(struct sessions *s, int64_t account_id, int64_t model_id,
                     struct session_row *row, struct error *err)
{
    struct model_info m;
    struct type_info t;
    int64_t id, cost = 0;
    int position, rc;

    rc = load_model(s, account_id, model_id, &m, err);
    if (rc != 0)
        return rc;
    rc = check_model_ready(&m, err);
    if (rc == 0)
        rc = latest_session(s, model_id, m.name, &id, err);
    free(m.args);
    if (rc == 0)
        rc = sessions_load_row(s, id, row, err);
    if (rc == 0)
        rc = check_resumable(row, err);
    if (rc == 0)
        rc = check_plan(s, account_id, err);
    if (rc == 0)
        rc = check_one_active(s, account_id, err);
    if (rc == 0)
        rc = load_type(s, row->instance_type_id, &t, err);
    if (rc == 0 && row->mode == SESSION_MODE_EPOCHS)
        rc = last_epoch_cost(s, row, &cost, err);
    if (rc == 0 && row->mode == SESSION_MODE_EPOCHS)
        rc = check_epoch_money(s, account_id, cost, err);
    if (rc == 0)
        rc = sessions_queue_position_tx(s, t.id, &position, err);
    if (rc != 0)
        return rc;

    int64_t args[2] = {row->id, position};
    rc = sessions_exec_ints(s,
                            "UPDATE sessions SET queue_position = "
                            "NULLIF(?2, 0), pid = NULL WHERE id = ?1",
                            args, 2, err);
    if (rc < 0)
        return rc;
    row->queue_position = position;
    row->pid = 0;
    return sessions_set_state_tx(s, row, SESSION_INITIALIZING, NULL, err);
}

int sessions_resume(struct sessions *s, int64_t account_id, int64_t model_id,
                    int64_t *session_id, struct error *err)
{
    struct session_row row;
    int rc = sessions_tx_begin(s, err);

    if (rc == 0) {
        rc = resume_tx(s, account_id, model_id, &row, err);
        if (rc == 0)
            rc = sessions_tx_commit(s, err);
        else
            sessions_tx_rollback(s);
    }
    if (rc != 0) {
        log_info("session resume rejected account=%lld model=%lld: %s",
                 (long long)account_id, (long long)model_id,
                 err != NULL ? err->msg : "");
        return rc;
    }
    if (session_id != NULL)
        *session_id = row.id;
    s->schedule_dirty = 1;
    if (row.checkpoint[0] != '\0')
        log_info("session resumed account=%lld model=%lld session=%lld "
                 "epochs_done=%d checkpoint=%s queue_position=%d",
                 (long long)account_id, (long long)model_id, (long long)row.id,
                 row.epochs_done, row.checkpoint, row.queue_position);
    else
        log_info("session resumed without a checkpoint; it starts over "
                 "from epoch 0 account=%lld model=%lld session=%lld "
                 "queue_position=%d",
                 (long long)account_id, (long long)model_id, (long long)row.id,
                 row.queue_position);
    return 0;
}

/* ---- Stop --------------------------------------------------------------- */

/* Refund the unused part of a timed session; logs the result. */
int sessions_refund_timed_tx(struct sessions *s, const struct session_row *row,
                             int64_t used_ms, struct error *err)
{
    char text[32];
    int64_t refunded = 0;
    int rc;

    if (row->mode != SESSION_MODE_TIMED)
        return 0;
    rc = billing_refund_timed_tx(s->st, row->account_id, row->id, row->model_id,
                                 row->price, row->time_limit_ms, used_ms,
                                 &refunded, err);
    if (rc == 0)
        log_info("timed training refunded account=%lld model=%lld "
                 "session=%lld used_ms=%lld limit_ms=%lld refund=%s",
                 (long long)row->account_id, (long long)row->model_id,
                 (long long)row->id, (long long)used_ms,
                 (long long)row->time_limit_ms,
                 sessions_usd(refunded, text, sizeof(text)));
    return rc;
}

/* Stop a session that has no trainer: queued, not launched yet, or left
 * by a trainer that this backend does not watch. */
static int stop_without_trainer(struct sessions *s, int64_t session_id,
                                struct error *err)
{
    struct session_row row;
    struct error kill_err = {0};
    int rc;

    rc = sessions_load_row(s, session_id, &row, err);
    if (rc == 0 && row.pid > 0 &&
        s->ex->kill_orphan(s->ex, row.pid, s->train_program, &kill_err) < 0)
        log_warn("%s model=%lld session=%lld", kill_err.msg,
                 (long long)row.model_id, (long long)row.id);
    if (rc == 0)
        rc = sessions_tx_begin(s, err);
    if (rc != 0)
        return rc;
    rc = sessions_load_row(s, session_id, &row, err);
    if (rc == 0)
        rc = sessions_refund_timed_tx(s, &row, row.trained_ms, err);
    if (rc == 0) {
        int64_t args[1] = {row.id};
        rc = sessions_exec_ints(s,
                                "UPDATE sessions SET queue_position = NULL, "
                                "pid = NULL WHERE id = ?1",
                                args, 1, err);
        row.queue_position = 0;
    }
    if (rc >= 0)
        rc = sessions_set_state_tx(s, &row, SESSION_STOPPED,
                                   "stopped before training started", err);
    if (rc == 0)
        rc = sessions_renumber_queue_tx(s, row.instance_type_id, err);
    if (rc == 0)
        rc = sessions_tx_commit(s, err);
    else
        sessions_tx_rollback(s);
    s->schedule_dirty = 1;
    return rc;
}

int sessions_stop(struct sessions *s, int64_t account_id, int64_t model_id,
                  struct error *err)
{
    struct model_info m;
    struct session_job *job;
    int64_t args[1] = {model_id}, id;
    int found, rc;

    rc = load_model(s, account_id, model_id, &m, err);
    if (rc != 0)
        goto out;
    free(m.args);
    rc = sessions_query_int(s,
                            "SELECT MAX(id) FROM sessions WHERE model_id = ?1 "
                            "AND state IN ('initializing', 'training')",
                            args, 1, &id, &found, err);
    if (rc == 0 && !found)
        rc = error_set(err, -EINVAL,
                       "model '%s' is not training; there is nothing to "
                       "stop",
                       m.name);
    if (rc != 0)
        goto out;

    job = sessions_find_job(s, id);
    log_info("session stop requested account=%lld model=%lld session=%lld",
             (long long)account_id, (long long)model_id, (long long)id);
    if (job != NULL) {
        sessions_request_stop(s, job, clock_monotonic_ms());
        return 0;
    }
    rc = stop_without_trainer(s, id, err);
out:
    if (rc != 0)
        log_info("session stop rejected account=%lld model=%lld: %s",
                 (long long)account_id, (long long)model_id,
                 err != NULL ? err->msg : "");
    return rc;
}

/* ---- Reconcile ---------------------------------------------------------- */

static int reconcile_one(struct sessions *s, int64_t session_id,
                         struct error *err)
{
    struct session_row row;
    struct error kill_err = {0};
    int killed = 0, rc;

    rc = sessions_load_row(s, session_id, &row, err);
    if (rc != 0)
        return rc;
    if (row.pid > 0) {
        killed =
            s->ex->kill_orphan(s->ex, row.pid, s->train_program, &kill_err);
        if (killed < 0)
            log_warn("%s model=%lld session=%lld", kill_err.msg,
                     (long long)row.model_id, (long long)row.id);
    }
    log_info("reconciling session left %s by the previous backend "
             "account=%lld model=%lld session=%lld pid=%lld trainer=%s",
             session_state_name(row.state), (long long)row.account_id,
             (long long)row.model_id, (long long)row.id, (long long)row.pid,
             killed == 1 ? "killed" : "not running");

    rc = sessions_tx_begin(s, err);
    if (rc != 0)
        return rc;
    int64_t args[1] = {row.id};
    rc = sessions_exec_ints(s,
                            "UPDATE sessions SET pid = NULL, "
                            "queue_position = NULL WHERE id = ?1",
                            args, 1, err);
    if (rc >= 0)
        rc = sessions_set_state_tx(s, &row, SESSION_FAILED,
                                   "the backend restarted during training; "
                                   "resume to continue",
                                   err);
    if (rc == 0)
        rc = sessions_tx_commit(s, err);
    else
        sessions_tx_rollback(s);
    return rc;
}

int sessions_reconcile(struct sessions *s, struct error *err)
{
    sqlite3_stmt *stmt;
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = 0, failed = 0;

    /* Sessions that never launched (pid NULL) lost nothing and stay in
     * the queue. */
    if (sqlite3_prepare_v2(s->st->db,
                           "SELECT id FROM sessions WHERE state = 'training' "
                           "OR (state = 'initializing' AND pid IS NOT NULL) "
                           "ORDER BY id",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "listing sessions to reconcile");
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *grown = realloc(ids, cap * sizeof(*ids));
            if (grown == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            ids = grown;
        }
        ids[n++] = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        free(ids);
        return rc == SQLITE_NOMEM ? error_set(err, -ENOMEM, "out of memory")
                                  : sessions_db_error(s, err,
                                                      "listing sessions to "
                                                      "reconcile");
    }

    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = reconcile_one(s, ids[i], err);
        failed += rc == 0;
    }
    free(ids);
    s->schedule_dirty = 1;
    if (rc != 0) {
        log_error("reconciling sessions failed: %s", err ? err->msg : "");
        return rc;
    }
    log_info("reconciled %d sessions left running by the previous backend",
             failed);
    return failed;
}
