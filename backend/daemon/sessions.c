/*
 * The sessions module's foundation: the context, the state machine's
 * table, transactions whose events reach the hook only after the commit
 * (the outbox), the per-model sequence of progress events, and reading
 * session rows. The requests (start, stop, resume, reconcile) live in
 * sessions_control.c and the trainers' lifecycle in sessions_run.c.
 */
#include "sessions.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "clock.h"
#include "fsutil.h"
#include "ledger.h"
#include "log.h"
#include "sessions_internal.h"

/* ---- The state machine -------------------------------------------------- */

static const char *const state_names[SESSION_STATE_COUNT] = {
    [SESSION_CREATED] = "created",   [SESSION_INITIALIZING] = "initializing",
    [SESSION_TRAINING] = "training", [SESSION_COMPLETED] = "completed",
    [SESSION_STOPPED] = "stopped",   [SESSION_PAUSED] = "paused",
    [SESSION_EXPIRED] = "expired",   [SESSION_FAILED] = "failed",
};

/* allowed[from][to]. Beyond the schema's chain, an initializing session
 * can stop (while it waits for a device, or before its trainer reports
 * start) and fail (launch failure, crash or restart during loading). */
static const unsigned char allowed[SESSION_STATE_COUNT][SESSION_STATE_COUNT] = {
    [SESSION_CREATED] = {[SESSION_INITIALIZING] = 1},
    [SESSION_INITIALIZING] =
        {[SESSION_TRAINING] = 1, [SESSION_STOPPED] = 1, [SESSION_FAILED] = 1},
    [SESSION_TRAINING] = {[SESSION_COMPLETED] = 1,
                          [SESSION_STOPPED] = 1,
                          [SESSION_PAUSED] = 1,
                          [SESSION_EXPIRED] = 1,
                          [SESSION_FAILED] = 1},
    [SESSION_STOPPED] = {[SESSION_INITIALIZING] = 1},
    [SESSION_PAUSED] = {[SESSION_INITIALIZING] = 1},
    [SESSION_EXPIRED] = {[SESSION_INITIALIZING] = 1},
    [SESSION_FAILED] = {[SESSION_INITIALIZING] = 1},
};

const char *session_state_name(enum session_state state)
{
    if ((int)state < 0 || (int)state >= SESSION_STATE_COUNT)
        return "unknown";
    return state_names[state];
}

int session_state_parse(const char *name, enum session_state *state)
{
    for (int i = 0; name != NULL && i < SESSION_STATE_COUNT; i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *state = (enum session_state)i;
            return 0;
        }
    }
    return -EINVAL;
}

int session_transition_allowed(enum session_state from, enum session_state to)
{
    if ((int)from < 0 || (int)from >= SESSION_STATE_COUNT || (int)to < 0 ||
        (int)to >= SESSION_STATE_COUNT)
        return 0;
    return allowed[from][to];
}

int session_state_resumable(enum session_state state)
{
    return session_transition_allowed(state, SESSION_INITIALIZING) &&
           state != SESSION_CREATED;
}

/* ---- Context ------------------------------------------------------------ */

void sessions_config_defaults(struct sessions_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->stop_timeout_ms = 30 * 1000;
    cfg->heartbeat_timeout_ms = 120 * 1000;
    cfg->init_timeout_ms = 600 * 1000;
}

static int copy_text(char **out, const char *text)
{
    *out = NULL;
    if (text == NULL)
        return 0;
    *out = strdup(text);
    return *out == NULL ? -ENOMEM : 0;
}

static int check_config(const struct sessions_config *cfg, struct error *err)
{
    if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0')
        return error_set(err, -EINVAL,
                         "sessions need the data folder; set data_dir");
    if (cfg->train_program == NULL || cfg->train_program[0] == '\0')
        return error_set(err, -EINVAL,
                         "sessions need the train program; set "
                         "train_program");
    if (cfg->stop_timeout_ms <= 0 || cfg->heartbeat_timeout_ms <= 0 ||
        cfg->init_timeout_ms <= 0)
        return error_set(err, -EINVAL,
                         "session timeouts must be positive (stop %lld ms, "
                         "heartbeat %lld ms, initialization %lld ms)",
                         (long long)cfg->stop_timeout_ms,
                         (long long)cfg->heartbeat_timeout_ms,
                         (long long)cfg->init_timeout_ms);
    if (cfg->train_threads < 0)
        return error_set(err, -EINVAL,
                         "train threads %d is invalid; use 0 for all cores "
                         "or a positive count",
                         cfg->train_threads);
    return 0;
}

int sessions_open(struct sessions **out, struct store *st,
                  const struct executor *ex, const struct sessions_config *cfg,
                  struct error *err)
{
    char data_dir[PATH_MAX], runs[PATH_MAX + 8];
    struct sessions *s;
    int rc;

    *out = NULL;
    rc = check_config(cfg, err);
    if (rc != 0)
        return rc;
    /* Absolute, so that the paths given to trainers do not depend on
     * their working folder. */
    if (realpath(cfg->data_dir, data_dir) == NULL)
        return error_errno(err, errno,
                           "cannot use data folder '%s'; create it first",
                           cfg->data_dir);
    snprintf(runs, sizeof(runs), "%s/runs", data_dir);
    rc = fs_mkdir_p(runs, 0700, err);
    if (rc != 0)
        return rc;

    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return error_set(err, -ENOMEM, "out of memory for sessions");
    s->st = st;
    s->ex = ex;
    s->train_threads = cfg->train_threads;
    s->stop_timeout_ms = cfg->stop_timeout_ms;
    s->heartbeat_timeout_ms = cfg->heartbeat_timeout_ms;
    s->init_timeout_ms = cfg->init_timeout_ms;
    s->schedule_dirty = 1;
    if (copy_text(&s->data_dir, data_dir) != 0 ||
        copy_text(&s->train_program, cfg->train_program) != 0 ||
        copy_text(&s->train_cwd, cfg->train_cwd) != 0) {
        sessions_close(s);
        return error_set(err, -ENOMEM, "out of memory for sessions");
    }
    *out = s;
    return 0;
}

static void outbox_clear(struct sessions *s)
{
    for (size_t i = 0; i < s->outbox_len; i++) {
        free(s->outbox[i].kind);
        free(s->outbox[i].payload);
    }
    s->outbox_len = 0;
}

void sessions_close(struct sessions *s)
{
    if (s == NULL)
        return;
    while (s->jobs != NULL) {
        struct session_job *job = s->jobs;
        s->jobs = job->next;
        if (!job->ended)
            log_warn("trainer of session %lld killed: the backend is "
                     "closing without a graceful stop model=%lld "
                     "session=%lld",
                     (long long)job->session_id, (long long)job->model_id,
                     (long long)job->session_id);
        s->ex->close(job->job);
        free(job->line);
        free(job->pending_batch);
        free(job->retry_line);
        free(job);
    }
    outbox_clear(s);
    free(s->outbox);
    free(s->data_dir);
    free(s->train_program);
    free(s->train_cwd);
    free(s);
}

void sessions_set_event_hook(struct sessions *s, sessions_event_fn fn,
                             void *user)
{
    s->hook = fn;
    s->hook_user = user;
}

int sessions_running(const struct sessions *s)
{
    int n = 0;

    for (const struct session_job *j = s->jobs; j != NULL; j = j->next)
        n++;
    return n;
}

/* ---- Database helpers --------------------------------------------------- */

int sessions_db_error(struct sessions *s, struct error *err, const char *what)
{
    return error_set(err, -EIO,
                     "database error while %s: %s; retry, and "
                     "check the backend log if it persists",
                     what, sqlite3_errmsg(s->st->db));
}

static int prepare_ints(struct sessions *s, const char *sql,
                        const int64_t *args, int nargs, sqlite3_stmt **stmt,
                        struct error *err)
{
    if (sqlite3_prepare_v2(s->st->db, sql, -1, stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "preparing a query");
    for (int i = 0; i < nargs; i++)
        sqlite3_bind_int64(*stmt, i + 1, args[i]);
    return 0;
}

int sessions_exec_ints(struct sessions *s, const char *sql, const int64_t *args,
                       int nargs, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc = prepare_ints(s, sql, args, nargs, &stmt, err);

    if (rc != 0)
        return rc;
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return sessions_db_error(s, err, "updating sessions");
    return sqlite3_changes(s->st->db);
}

int sessions_query_int(struct sessions *s, const char *sql, const int64_t *args,
                       int nargs, int64_t *value, int *found, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc = prepare_ints(s, sql, args, nargs, &stmt, err);

    if (rc != 0)
        return rc;
    *value = 0;
    *found = 0;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
            *value = sqlite3_column_int64(stmt, 0);
            *found = 1;
        }
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = sessions_db_error(s, err, "reading sessions");
    }
    sqlite3_finalize(stmt);
    return rc;
}

const char *sessions_usd(int64_t micro, char *buf, size_t len)
{
    return billing_format_usd(micro, buf, len);
}

const char *sessions_usd_cents_up(int64_t micro, char *buf, size_t len)
{
    const int64_t cent = MICRO_PER_DOLLAR / 100;

    if (micro > 0 && micro <= INT64_MAX - cent)
        micro = (micro + cent - 1) / cent * cent;
    return billing_format_usd(micro, buf, len);
}

int sessions_type_capacity(const char *device, int capacity)
{
    if (device == NULL || strcmp(device, "cpu") != 0)
        return 1;
    return capacity >= 1 ? capacity : 1;
}

/* ---- Transactions and the outbox -------------------------------------------
 * Events are stored inside the transaction and kept in the outbox. The
 * hook receives them only after COMMIT succeeded, so nothing is
 * announced that the database does not contain. */

int sessions_tx_begin(struct sessions *s, struct error *err)
{
    outbox_clear(s);
    return store_begin(s->st, err);
}

int sessions_tx_commit(struct sessions *s, struct error *err)
{
    int rc = store_commit(s->st, err);

    if (rc != 0) {
        sessions_tx_rollback(s);
        return rc;
    }
    for (size_t i = 0; s->hook != NULL && i < s->outbox_len; i++)
        s->hook(s->hook_user, &s->outbox[i].ev);
    outbox_clear(s);
    return 0;
}

void sessions_tx_rollback(struct sessions *s)
{
    store_rollback(s->st);
    outbox_clear(s);
}

static int outbox_push(struct sessions *s, const struct sessions_event *ev)
{
    struct sessions_outbox_item *item;

    if (s->outbox_len == s->outbox_cap) {
        size_t cap = s->outbox_cap ? 2 * s->outbox_cap : 8;
        void *grown = realloc(s->outbox, cap * sizeof(*s->outbox));
        if (grown == NULL)
            return -ENOMEM;
        s->outbox = grown;
        s->outbox_cap = cap;
    }
    item = &s->outbox[s->outbox_len];
    item->kind = strdup(ev->kind);
    item->payload = strdup(ev->payload);
    if (item->kind == NULL || item->payload == NULL) {
        free(item->kind);
        free(item->payload);
        return -ENOMEM;
    }
    item->ev = *ev;
    item->ev.kind = item->kind;
    item->ev.payload = item->payload;
    s->outbox_len++;
    return 0;
}

int sessions_emit_tx(struct sessions *s, int64_t model_id, int64_t session_id,
                     const char *kind, const char *payload, struct error *err)
{
    struct sessions_event ev = {model_id, session_id, 0,
                                kind,     payload,    clock_realtime_ms()};
    int64_t args[1] = {model_id};
    sqlite3_stmt *stmt;
    int found, rc;

    rc = sessions_query_int(s,
                            "SELECT MAX(seq) FROM progress_events "
                            "WHERE model_id = ?1",
                            args, 1, &ev.seq, &found, err);
    if (rc != 0)
        return rc;
    ev.seq++;

    if (sqlite3_prepare_v2(s->st->db,
                           "INSERT INTO progress_events (model_id, seq, "
                           "session_id, kind, payload, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "storing a progress event");
    sqlite3_bind_int64(stmt, 1, model_id);
    sqlite3_bind_int64(stmt, 2, ev.seq);
    if (session_id > 0)
        sqlite3_bind_int64(stmt, 3, session_id);
    else
        sqlite3_bind_null(stmt, 3);
    sqlite3_bind_text(stmt, 4, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, payload, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 6, ev.created_at);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return sessions_db_error(s, err, "storing a progress event");
    if (outbox_push(s, &ev) != 0)
        return error_set(err, -ENOMEM, "out of memory for an event");
    return 0;
}

/* ---- Rows --------------------------------------------------------------- */

static void copy_column(sqlite3_stmt *stmt, int col, char *out, size_t len)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);

    snprintf(out, len, "%s", text != NULL ? (const char *)text : "");
}

static void read_row(sqlite3_stmt *stmt, struct session_row *row)
{
    char text[32];

    memset(row, 0, sizeof(*row));
    row->id = sqlite3_column_int64(stmt, 0);
    row->model_id = sqlite3_column_int64(stmt, 1);
    row->account_id = sqlite3_column_int64(stmt, 2);
    row->instance_type_id = sqlite3_column_int64(stmt, 3);
    copy_column(stmt, 4, text, sizeof(text));
    row->mode =
        strcmp(text, "timed") == 0 ? SESSION_MODE_TIMED : SESSION_MODE_EPOCHS;
    copy_column(stmt, 5, text, sizeof(text));
    if (session_state_parse(text, &row->state) != 0)
        row->state = SESSION_FAILED;
    row->epochs = sqlite3_column_int(stmt, 6);
    row->epochs_done = sqlite3_column_int(stmt, 7);
    row->time_limit_ms = sqlite3_column_int64(stmt, 8);
    row->trained_ms = sqlite3_column_int64(stmt, 9);
    row->price = sqlite3_column_int64(stmt, 10);
    copy_column(stmt, 11, text, sizeof(text));
    row->payment = strcmp(text, "prepaid") == 0 ? SESSION_PAY_PREPAID
                                                : SESSION_PAY_BALANCE;
    row->rate = sqlite3_column_int64(stmt, 12);
    copy_column(stmt, 13, row->run_dir, sizeof(row->run_dir));
    copy_column(stmt, 14, row->checkpoint, sizeof(row->checkpoint));
    copy_column(stmt, 15, row->reason, sizeof(row->reason));
    row->queue_position = sqlite3_column_int(stmt, 16);
    row->pid = sqlite3_column_int64(stmt, 17);
    copy_column(stmt, 18, row->model_name, sizeof(row->model_name));
}

int sessions_load_row(struct sessions *s, int64_t session_id,
                      struct session_row *row, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(
            s->st->db,
            "SELECT s.id, s.model_id, s.account_id, s.instance_type_id, "
            "s.mode, s.state, s.epochs, s.epochs_done, s.time_limit_ms, "
            "s.trained_ms, s.price, s.payment, s.rate, s.run_dir, "
            "s.checkpoint, s.reason, s.queue_position, s.pid, m.name "
            "FROM sessions s JOIN models m ON m.id = s.model_id "
            "WHERE s.id = ?1",
            -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "reading a session");
    sqlite3_bind_int64(stmt, 1, session_id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        read_row(stmt, row);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = error_set(err, -ENOENT, "session %lld not found",
                       (long long)session_id);
    } else {
        rc = sessions_db_error(s, err, "reading a session");
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* ---- State changes ------------------------------------------------------ */

int sessions_active_model(struct sessions *s, int64_t account_id, char *name,
                          size_t len, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    name[0] = '\0';
    if (sqlite3_prepare_v2(s->st->db,
                           "SELECT m.name FROM sessions s "
                           "JOIN models m ON m.id = s.model_id "
                           "WHERE s.account_id = ?1 AND s.state IN "
                           "('initializing', 'training') LIMIT 1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "checking the account's sessions");
    sqlite3_bind_int64(stmt, 1, account_id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        copy_column(stmt, 0, name, len);
        rc = 1;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = sessions_db_error(s, err, "checking the account's sessions");
    }
    sqlite3_finalize(stmt);
    return rc;
}

int sessions_busy_error(struct sessions *s, int64_t account_id,
                        struct error *err)
{
    char name[256];
    int rc = sessions_active_model(s, account_id, name, sizeof(name), err);

    if (rc < 0)
        return rc;
    if (rc == 0)
        return error_set(err, -EBUSY,
                         "another model of account %lld is training; stop "
                         "it or wait",
                         (long long)account_id);
    return error_set(err, -EBUSY, "model '%s' is training; stop it or wait",
                     name);
}

static char *state_payload(const struct session_row *row,
                           enum session_state from, const char *note)
{
    cJSON *o = cJSON_CreateObject();
    char *text;

    cJSON_AddStringToObject(o, "event", "state");
    cJSON_AddNumberToObject(o, "session", (double)row->id);
    cJSON_AddStringToObject(o, "state", session_state_name(row->state));
    if (from != row->state)
        cJSON_AddStringToObject(o, "from", session_state_name(from));
    if (row->reason[0] != '\0')
        cJSON_AddStringToObject(o, "reason", row->reason);
    if (row->queue_position > 0)
        cJSON_AddNumberToObject(o, "queue_position", row->queue_position);
    cJSON_AddNumberToObject(o, "epochs", row->epochs);
    cJSON_AddNumberToObject(o, "epochs_done", row->epochs_done);
    if (note != NULL)
        cJSON_AddStringToObject(o, "note", note);
    cJSON_AddNumberToObject(o, "time_ms", (double)clock_realtime_ms());
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

static int emit_state(struct sessions *s, const struct session_row *row,
                      enum session_state from, const char *note,
                      struct error *err)
{
    char *payload = state_payload(row, from, note);
    int rc;

    if (payload == NULL)
        return error_set(err, -ENOMEM, "out of memory for an event");
    rc = sessions_emit_tx(s, row->model_id, row->id, "state", payload, err);
    free(payload);
    return rc;
}

int sessions_emit_state_tx(struct sessions *s, const struct session_row *row,
                           const char *note, struct error *err)
{
    return emit_state(s, row, row->state, note, err);
}

int sessions_set_state_tx(struct sessions *s, struct session_row *row,
                          enum session_state to, const char *reason,
                          struct error *err)
{
    enum session_state from = row->state;
    sqlite3_stmt *stmt;
    int rc;

    if (!session_transition_allowed(from, to))
        return error_set(err, -EINVAL,
                         "session %lld of model '%s' cannot go from %s to "
                         "%s",
                         (long long)row->id, row->model_name,
                         session_state_name(from), session_state_name(to));
    if (sqlite3_prepare_v2(s->st->db,
                           "UPDATE sessions SET state = ?1, reason = ?2, "
                           "updated_at = ?3 WHERE id = ?4 AND state = ?5",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "changing a session's state");
    sqlite3_bind_text(stmt, 1, session_state_name(to), -1, SQLITE_STATIC);
    if (reason != NULL && reason[0] != '\0')
        sqlite3_bind_text(stmt, 2, reason, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, 2);
    sqlite3_bind_int64(stmt, 3, clock_realtime_ms());
    sqlite3_bind_int64(stmt, 4, row->id);
    sqlite3_bind_text(stmt, 5, session_state_name(from), -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return sessions_busy_error(s, row->account_id, err);
    if (rc != SQLITE_DONE)
        return sessions_db_error(s, err, "changing a session's state");
    if (sqlite3_changes(s->st->db) != 1)
        return error_set(err, -EAGAIN,
                         "session %lld changed state meanwhile; retry",
                         (long long)row->id);

    row->state = to;
    snprintf(row->reason, sizeof(row->reason), "%s",
             reason != NULL ? reason : "");
    rc = emit_state(s, row, from, NULL, err);
    if (rc != 0)
        return rc;
    log_info("session state %s -> %s account=%lld model=%lld session=%lld%s%s",
             session_state_name(from), session_state_name(to),
             (long long)row->account_id, (long long)row->model_id,
             (long long)row->id, row->reason[0] ? " reason=" : "", row->reason);
    return 0;
}

/* ---- Replay ------------------------------------------------------------- */

int sessions_events_after(struct sessions *s, int64_t model_id,
                          int64_t after_seq, sessions_event_fn fn, void *user,
                          struct error *err)
{
    struct sessions_event ev;
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(s->st->db,
                           "SELECT seq, session_id, kind, payload, "
                           "created_at FROM progress_events "
                           "WHERE model_id = ?1 AND seq > ?2 ORDER BY seq",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "reading progress events");
    sqlite3_bind_int64(stmt, 1, model_id);
    sqlite3_bind_int64(stmt, 2, after_seq);
    for (;;) {
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE) {
            rc = 0;
            break;
        }
        if (rc != SQLITE_ROW) {
            rc = sessions_db_error(s, err, "reading progress events");
            break;
        }
        ev.model_id = model_id;
        ev.seq = sqlite3_column_int64(stmt, 0);
        ev.session_id = sqlite3_column_int64(stmt, 1);
        ev.kind = (const char *)sqlite3_column_text(stmt, 2);
        ev.payload = (const char *)sqlite3_column_text(stmt, 3);
        ev.created_at = sqlite3_column_int64(stmt, 4);
        if (fn(user, &ev) != 0) {
            rc = 0;
            break;
        }
    }
    sqlite3_finalize(stmt);
    return rc;
}
