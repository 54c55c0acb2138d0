/*
 * Launching trainers: the train arguments built from the model, its data
 * set and the session, and the device queue that decides which session
 * may launch.
 *
 * Each instance type has a number of device slots: its capacity for the
 * CPU, always 1 for a GPU. A session that has a slot has no
 * queue_position, and a waiting one has queue_position 1, 2, ... in the
 * order it will launch. Waiting costs nothing. sessions_schedule, called
 * by sessions_poll, hands free slots to the oldest waiting sessions,
 * renumbers the rest, and launches every session that has a slot but no
 * trainer yet. A session whose launch cannot succeed (invalid
 * arguments, a missing program) fails with the reason; a database
 * failure is retried a second later.
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

#define ARGV_MAX 96
#define MODEL_ARGS_MAX 48
#define ARG_KEY_MAX 32
#define ARG_VALUE_MAX 512

/* ---- Training arguments ------------------------------------------------- */

/* Arguments that the session sets itself; a model may not override them. */
static const char *const reserved_args[] = {
    "data",     "model",     "epochs", "device", "project", "name",
    "exist_ok", "events_fd", "resume", "time",   "threads", "pretrained",
    NULL,
};

struct argv_list {
    char *words[ARGV_MAX + 1];
    int n;
};

static void argv_free(struct argv_list *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->words[i]);
    a->n = 0;
}

static int argv_add(struct argv_list *a, struct error *err, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));

static int argv_add(struct argv_list *a, struct error *err, const char *fmt,
                    ...)
{
    va_list ap;
    char *word;
    int n;

    if (a->n >= ARGV_MAX)
        return error_set(err, -E2BIG, "more than %d train arguments", ARGV_MAX);
    va_start(ap, fmt);
    n = vasprintf(&word, fmt, ap);
    va_end(ap);
    if (n < 0)
        return error_set(err, -ENOMEM, "out of memory");
    a->words[a->n++] = word;
    a->words[a->n] = NULL;
    return 0;
}

static int valid_key(const char *key)
{
    size_t len = strlen(key);

    if (len == 0 || len > ARG_KEY_MAX || key[0] < 'a' || key[0] > 'z')
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((key[i] >= 'a' && key[i] <= 'z') ||
              (key[i] >= '0' && key[i] <= '9') || key[i] == '_'))
            return 0;
    return 1;
}

static int is_reserved(const char *key)
{
    for (int i = 0; reserved_args[i] != NULL; i++)
        if (strcmp(key, reserved_args[i]) == 0)
            return 1;
    return 0;
}

/* Format one model argument as key=value into out. */
static int format_arg(const cJSON *item, const char *model_name, char *out,
                      size_t len, struct error *err)
{
    const char *key = item->string;

    if (!valid_key(key))
        return error_set(err, -EINVAL,
                         "training argument '%.40s' of model '%s' is "
                         "invalid; use lowercase train argument names",
                         key, model_name);
    if (is_reserved(key))
        return error_set(err, -EINVAL,
                         "training argument '%s' of model '%s' is set by the "
                         "session; remove it from the model's arguments",
                         key, model_name);
    if (cJSON_IsBool(item)) {
        snprintf(out, len, "%s=%s", key, cJSON_IsTrue(item) ? "true" : "false");
        return 0;
    }
    if (cJSON_IsNumber(item) && isfinite(item->valuedouble)) {
        double v = item->valuedouble;
        if (v == floor(v) && fabs(v) < 1e15)
            snprintf(out, len, "%s=%lld", key, (long long)v);
        else
            snprintf(out, len, "%s=%.17g", key, v);
        return 0;
    }
    if (cJSON_IsString(item)) {
        const char *v = item->valuestring;
        size_t vlen = strlen(v);
        int clean = vlen <= ARG_VALUE_MAX;
        for (size_t i = 0; clean && i < vlen; i++)
            clean = (unsigned char)v[i] >= 0x20 && v[i] != 0x7f;
        if (!clean)
            return error_set(err, -EINVAL,
                             "training argument '%s' of model '%s' has an "
                             "invalid value; use at most %d printable "
                             "characters",
                             key, model_name, ARG_VALUE_MAX);
        snprintf(out, len, "%s=%s", key, v);
        return 0;
    }
    return error_set(err, -EINVAL,
                     "training argument '%s' of model '%s' must be a "
                     "number, string or boolean",
                     key, model_name);
}

/* Append the model's arguments to a (a NULL: check only). */
static int add_model_args(struct argv_list *a, const char *json,
                          const char *model_name, struct error *err)
{
    char word[ARG_KEY_MAX + ARG_VALUE_MAX + 8];
    cJSON *root = cJSON_Parse(json != NULL ? json : "{}");
    const cJSON *item;
    int count = 0, rc = 0;

    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return error_set(err, -EINVAL,
                         "training arguments of model '%s' are not a JSON "
                         "object; save them again",
                         model_name);
    }
    cJSON_ArrayForEach(item, root)
    {
        if (++count > MODEL_ARGS_MAX) {
            rc = error_set(err, -EINVAL,
                           "model '%s' has more than %d training "
                           "arguments; remove some",
                           model_name, MODEL_ARGS_MAX);
            break;
        }
        rc = format_arg(item, model_name, word, sizeof(word), err);
        if (rc == 0 && a != NULL)
            rc = argv_add(a, err, "%s", word);
        if (rc != 0)
            break;
    }
    cJSON_Delete(root);
    return rc;
}

int sessions_check_args(const char *args_json, const char *model_name,
                        struct error *err)
{
    return add_model_args(NULL, args_json, model_name, err);
}

/* ---- Launch ------------------------------------------------------------- */

struct launch_info {
    struct session_row row;
    char architecture[512];
    char *args;
    char dataset_path[1024];
    char device[16];
    int64_t from_model_id; /* 0: the model starts from scratch */
};

static void copy_col(sqlite3_stmt *stmt, int col, char *out, size_t len)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);

    snprintf(out, len, "%s", text != NULL ? (const char *)text : "");
}

static int load_launch_info(struct sessions *s, int64_t id,
                            struct launch_info *li, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    memset(li, 0, sizeof(*li));
    rc = sessions_load_row(s, id, &li->row, err);
    if (rc != 0)
        return rc;
    if (sqlite3_prepare_v2(s->st->db,
                           "SELECT m.architecture, m.args, d.path, t.device, "
                           "m.from_model_id "
                           "FROM sessions s "
                           "JOIN models m ON m.id = s.model_id "
                           "JOIN datasets d ON d.id = m.dataset_id "
                           "JOIN instance_types t "
                           "ON t.id = s.instance_type_id WHERE s.id = ?1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "reading what to launch");
    sqlite3_bind_int64(stmt, 1, id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        copy_col(stmt, 0, li->architecture, sizeof(li->architecture));
        const unsigned char *args = sqlite3_column_text(stmt, 1);
        li->args = strdup(args != NULL ? (const char *)args : "{}");
        copy_col(stmt, 2, li->dataset_path, sizeof(li->dataset_path));
        copy_col(stmt, 3, li->device, sizeof(li->device));
        li->from_model_id = sqlite3_column_int64(stmt, 4);
        rc = li->args != NULL ? 0 : error_set(err, -ENOMEM, "out of memory");
    } else {
        rc = sessions_db_error(s, err, "reading what to launch");
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* The data set folder: datasets.path is relative to the data folder. */
static int dataset_folder(struct sessions *s, const struct launch_info *li,
                          char *out, size_t len, struct error *err)
{
    const char *p = li->dataset_path;

    if (p[0] == '\0' || p[0] == '/' || strstr(p, "..") != NULL)
        return error_set(err, -EINVAL,
                         "the data set of model '%s' has the invalid path "
                         "'%s'; it must be a folder under the data folder",
                         li->row.model_name, p);
    snprintf(out, len, "%s/%s", s->data_dir, p);
    return 0;
}

int sessions_model_weights(struct store *st, const char *data_dir,
                           int64_t model_id, char *path, size_t len,
                           struct error *err)
{
    static const char *const names[] = {"best", "last"};
    sqlite3_stmt *stmt;
    int found = 0, rc = SQLITE_DONE;

    if (sqlite3_prepare_v2(st->db,
                           "SELECT id FROM sessions WHERE model_id = ?1 AND "
                           "state IN ('completed', 'stopped') "
                           "ORDER BY id DESC",
                           -1, &stmt, NULL) != SQLITE_OK)
        return error_set(err, -EIO, "cannot find the weights of model "
                         "%lld: %s",
                         (long long)model_id, sqlite3_errmsg(st->db));
    sqlite3_bind_int64(stmt, 1, model_id);
    while (!found && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        int64_t session = sqlite3_column_int64(stmt, 0);
        for (int i = 0; i < 2 && !found; i++) {
            snprintf(path, len, "%s/runs/model-%lld/session-%lld/weights/"
                     "%s.ckpt",
                     data_dir, (long long)model_id, (long long)session,
                     names[i]);
            found = access(path, R_OK) == 0;
        }
    }
    if (!found && rc != SQLITE_DONE)
        found = error_set(err, -EIO, "cannot find the weights of model "
                          "%lld: %s",
                          (long long)model_id, sqlite3_errmsg(st->db));
    sqlite3_finalize(stmt);
    if (found == 0)
        path[0] = '\0';
    return found;
}

/* The checkpoint to resume from, or "" to start from epoch 0. */
static void choose_resume(const struct launch_info *li, char *out, size_t len)
{
    const struct session_row *r = &li->row;

    out[0] = '\0';
    if (r->checkpoint[0] != '\0' && access(r->checkpoint, R_OK) == 0) {
        snprintf(out, len, "%s", r->checkpoint);
        return;
    }
    if (r->checkpoint[0] != '\0')
        log_warn("checkpoint %s is missing; training starts over from "
                 "epoch 0 account=%lld model=%lld session=%lld",
                 r->checkpoint, (long long)r->account_id,
                 (long long)r->model_id, (long long)r->id);
    else if (r->epochs_done > 0)
        log_warn("no checkpoint recorded after %d epochs; training starts "
                 "over from epoch 0 account=%lld model=%lld session=%lld",
                 r->epochs_done, (long long)r->account_id,
                 (long long)r->model_id, (long long)r->id);
}

/* The pretrained= checkpoint of a model created from another model's
 * weights, or "" for a model from scratch. A start whose source model has
 * no checkpoint any more fails with -ENOENT. */
static int choose_pretrained(struct sessions *s, const struct launch_info *li,
                             char *out, size_t len, struct error *err)
{
    int rc;

    out[0] = '\0';
    if (li->from_model_id <= 0)
        return 0;
    rc = sessions_model_weights(s->st, s->data_dir, li->from_model_id, out,
                                len, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return error_set(err, -ENOENT,
                         "model %lld, whose weights model '%s' starts "
                         "from, has no checkpoint of a completed or "
                         "stopped training; train it first or create the "
                         "model from scratch",
                         (long long)li->from_model_id, li->row.model_name);
    return 0;
}

static int build_argv(struct sessions *s, const struct launch_info *li,
                      const char *project, const char *resume,
                      struct argv_list *a, struct error *err)
{
    const struct session_row *r = &li->row;
    char data[PATH_MAX + 1100], pretrained[PATH_MAX] = "";
    int rc;

    rc = dataset_folder(s, li, data, sizeof(data), err);
    if (rc == 0)
        rc = argv_add(a, err, "%s", s->train_program);
    if (rc == 0)
        rc = argv_add(a, err, "data=%s", data);
    if (rc == 0)
        rc = argv_add(a, err, "model=%s", li->architecture);
    if (rc == 0)
        rc = add_model_args(a, li->args, r->model_name, err);
    /* The session's own arguments come last, so they always win. */
    if (rc == 0)
        rc = argv_add(a, err, "epochs=%d", r->epochs);
    if (rc == 0)
        rc = argv_add(a, err, "device=%s", li->device);
    if (rc == 0)
        rc = argv_add(a, err, "project=%s", project);
    if (rc == 0)
        rc = argv_add(a, err, "name=session-%lld", (long long)r->id);
    if (rc == 0)
        rc = argv_add(a, err, "exist_ok=true");
    if (rc == 0)
        rc = argv_add(a, err, "events_fd=%d", EXECUTOR_EVENTS_FD);
    if (rc == 0 && r->mode == SESSION_MODE_TIMED)
        rc =
            argv_add(a, err, "time=%.9g", (double)r->time_limit_ms / 3600000.0);
    if (rc == 0 && s->train_threads > 0)
        rc = argv_add(a, err, "threads=%d", s->train_threads);
    if (rc == 0 && resume[0] != '\0')
        rc = argv_add(a, err, "resume=%s", resume);
    /* A resume continues from its own checkpoint, so only a start from
     * epoch 0 takes the source model's weights. */
    if (rc == 0 && resume[0] == '\0')
        rc = choose_pretrained(s, li, pretrained, sizeof(pretrained), err);
    if (rc == 0 && pretrained[0] != '\0')
        rc = argv_add(a, err, "pretrained=%s", pretrained);
    return rc;
}

void sessions_free_job(struct session_job *job)
{
    free(job->line);
    free(job->pending_batch);
    free(job->retry_line);
    free(job);
}

static struct session_job *new_job(const struct session_row *r,
                                   struct executor_job *ej, int64_t now)
{
    struct session_job *job = calloc(1, sizeof(*job));

    if (job == NULL)
        return NULL;
    job->line = malloc(SESSIONS_LINE_MAX);
    if (job->line == NULL) {
        free(job);
        return NULL;
    }
    job->session_id = r->id;
    job->model_id = r->model_id;
    job->account_id = r->account_id;
    job->mode = r->mode;
    job->epochs = r->epochs;
    job->rate = r->rate;
    job->price = r->price;
    job->time_limit_ms = r->time_limit_ms;
    job->trained_base_ms = r->trained_ms;
    job->job = ej;
    job->launched_ms = now;
    job->last_event_ms = now;
    return job;
}

/* A launch that cannot succeed as configured fails the session. */
static int fail_launch(struct sessions *s, int64_t id, const char *what,
                       struct error *cause)
{
    struct session_row row;
    struct error err = {0};
    char reason[SESSIONS_REASON_MAX];
    int rc;

    snprintf(reason, sizeof(reason), "%s: %.400s", what, cause->msg);
    rc = sessions_tx_begin(s, &err);
    if (rc == 0)
        rc = sessions_load_row(s, id, &row, &err);
    if (rc == 0)
        rc = sessions_set_state_tx(s, &row, SESSION_FAILED, reason, &err);
    if (rc == 0)
        rc = sessions_tx_commit(s, &err);
    else
        sessions_tx_rollback(s);
    if (rc != 0)
        log_error("cannot mark session %lld failed: %s session=%lld",
                  (long long)id, err.msg, (long long)id);
    return rc;
}

static int record_launch(struct sessions *s, struct session_job *job,
                         struct launch_info *li, const char *run_dir,
                         struct error *err)
{
    sqlite3_stmt *stmt;
    int rc = sessions_tx_begin(s, err);

    if (rc != 0)
        return rc;
    if (sqlite3_prepare_v2(s->st->db,
                           "UPDATE sessions SET pid = ?1, run_dir = ?2, "
                           "queue_position = NULL, heartbeat_at = ?3, "
                           "updated_at = ?3 WHERE id = ?4 "
                           "AND state = 'initializing'",
                           -1, &stmt, NULL) != SQLITE_OK) {
        sessions_tx_rollback(s);
        return sessions_db_error(s, err, "recording a launch");
    }
    sqlite3_bind_int64(stmt, 1, s->ex->job_id(job->job));
    sqlite3_bind_text(stmt, 2, run_dir, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, clock_realtime_ms());
    sqlite3_bind_int64(stmt, 4, job->session_id);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE || sqlite3_changes(s->st->db) != 1)
        rc = rc != SQLITE_DONE
                 ? sessions_db_error(s, err, "recording a launch")
                 : error_set(err, -EAGAIN,
                             "session %lld is no longer initializing",
                             (long long)job->session_id);
    else
        rc = 0;
    li->row.queue_position = 0;
    li->row.pid = s->ex->job_id(job->job);
    if (rc == 0)
        rc = sessions_emit_state_tx(s, &li->row, "launched", err);
    if (rc == 0)
        return sessions_tx_commit(s, err);
    sessions_tx_rollback(s);
    return rc;
}

static void log_launch(const struct launch_info *li, const struct argv_list *a,
                       int64_t pid, const char *log_path)
{
    char line[4096];
    size_t off = 0;

    line[0] = '\0';
    for (int i = 1; i < a->n && off < sizeof(line); i++) {
        int w = snprintf(line + off, sizeof(line) - off, "%s%s",
                         i > 1 ? " " : "", a->words[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    log_info("trainer launched account=%lld model=%lld session=%lld "
             "pid=%lld log=%s args: %s",
             (long long)li->row.account_id, (long long)li->row.model_id,
             (long long)li->row.id, (long long)pid, log_path, line);
}

/* Launch one session that has a slot. Returns 0 when the session was
 * launched or failed for a reason of its own, and a negative error when
 * the launch should be retried later. */
static int launch_session(struct sessions *s, int64_t id, int64_t now)
{
    char run_dir[PATH_MAX], project[PATH_MAX], log_path[PATH_MAX + 16];
    char resume[1024];
    struct launch_info li;
    struct argv_list a = {{NULL}, 0};
    struct executor_job *ej = NULL;
    struct session_job *job;
    struct error err = {0};
    int rc;

    rc = load_launch_info(s, id, &li, &err);
    if (rc != 0) {
        log_error("cannot read session %lld to launch it: %s session=%lld",
                  (long long)id, err.msg, (long long)id);
        free(li.args);
        return rc;
    }
    snprintf(project, sizeof(project), "%s/runs/model-%lld", s->data_dir,
             (long long)li.row.model_id);
    snprintf(run_dir, sizeof(run_dir), "%.*s/session-%lld", PATH_MAX - 64,
             project, (long long)id);
    snprintf(log_path, sizeof(log_path), "%s/train.log", run_dir);
    choose_resume(&li, resume, sizeof(resume));

    rc = build_argv(s, &li, project, resume, &a, &err);
    if (rc != 0) {
        rc = fail_launch(s, id, "cannot build the train arguments", &err);
        goto out;
    }
    rc = fs_mkdir_p(run_dir, 0700, &err);
    if (rc == 0)
        rc = s->ex->start(s->ex, a.words, s->train_cwd, log_path, &ej, &err);
    if (rc != 0) {
        log_error("cannot start the trainer: %s account=%lld model=%lld "
                  "session=%lld",
                  err.msg, (long long)li.row.account_id,
                  (long long)li.row.model_id, (long long)id);
        rc = fail_launch(s, id, "cannot start the trainer", &err);
        goto out;
    }

    job = new_job(&li.row, ej, now);
    if (job == NULL) {
        s->ex->close(ej);
        rc = error_set(&err, -ENOMEM, "out of memory");
        goto out;
    }
    rc = record_launch(s, job, &li, run_dir, &err);
    if (rc != 0) {
        log_error("trainer of session %lld killed: cannot record its "
                  "launch: %s; retrying later model=%lld session=%lld",
                  (long long)id, err.msg, (long long)li.row.model_id,
                  (long long)id);
        s->ex->close(ej);
        sessions_free_job(job);
        goto out;
    }
    job->next = s->jobs;
    s->jobs = job;
    log_launch(&li, &a, s->ex->job_id(ej), log_path);
out:
    argv_free(&a);
    free(li.args);
    return rc;
}

/* ---- The queue ---------------------------------------------------------- */

int sessions_renumber_queue_tx(struct sessions *s, int64_t type_id,
                               struct error *err)
{
    int64_t args[2] = {type_id, 0}, holders, capacity, ids[256];
    int positions[256], n = 0, found, rc;
    char device[16] = "";
    sqlite3_stmt *stmt;

    if (sqlite3_prepare_v2(s->st->db,
                           "SELECT device, capacity FROM instance_types "
                           "WHERE id = ?1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "reading an instance type");
    sqlite3_bind_int64(stmt, 1, type_id);
    capacity = 1;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        copy_col(stmt, 0, device, sizeof(device));
        capacity = sessions_type_capacity(device, sqlite3_column_int(stmt, 1));
    }
    sqlite3_finalize(stmt);
    rc = sessions_query_int(s,
                            "SELECT COUNT(*) FROM sessions "
                            "WHERE instance_type_id = ?1 AND state IN "
                            "('initializing', 'training') "
                            "AND queue_position IS NULL",
                            args, 1, &holders, &found, err);
    if (rc != 0)
        return rc;

    /* NOTE: a queue longer than 256 sessions per type is renumbered 256
     * at a time; the rest keep their positions until the next pass. */
    if (sqlite3_prepare_v2(s->st->db,
                           "SELECT id, queue_position FROM sessions "
                           "WHERE instance_type_id = ?1 AND state IN "
                           "('initializing', 'training') "
                           "AND queue_position IS NOT NULL "
                           "ORDER BY queue_position, id LIMIT 256",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "reading the queue");
    sqlite3_bind_int64(stmt, 1, type_id);
    while (n < 256 && sqlite3_step(stmt) == SQLITE_ROW) {
        ids[n] = sqlite3_column_int64(stmt, 0);
        positions[n++] = sqlite3_column_int(stmt, 1);
    }
    sqlite3_finalize(stmt);

    int64_t free_slots = capacity > holders ? capacity - holders : 0;
    for (int i = 0; i < n; i++) {
        int64_t position = i < free_slots ? 0 : i - free_slots + 1;
        struct session_row row;
        if (position == positions[i])
            continue;
        args[0] = ids[i];
        args[1] = position;
        rc = sessions_exec_ints(s,
                                "UPDATE sessions SET queue_position = "
                                "NULLIF(?2, 0) WHERE id = ?1",
                                args, 2, err);
        if (rc < 0)
            return rc;
        rc = sessions_load_row(s, ids[i], &row, err);
        if (rc == 0)
            rc = sessions_emit_state_tx(
                s, &row, position == 0 ? "device free" : "queue moved", err);
        if (rc != 0)
            return rc;
        log_info("session queue position %d -> %lld account=%lld model=%lld "
                 "session=%lld",
                 positions[i], (long long)position, (long long)row.account_id,
                 (long long)row.model_id, (long long)row.id);
    }
    return 0;
}

/* Give free slots to the oldest waiting sessions of every type. */
static int promote_queues(struct sessions *s, struct error *err)
{
    int64_t types[64];
    int n = 0, rc;
    sqlite3_stmt *stmt;

    if (sqlite3_prepare_v2(s->st->db,
                           "SELECT DISTINCT instance_type_id FROM sessions "
                           "WHERE state IN ('initializing', 'training') "
                           "AND queue_position IS NOT NULL LIMIT 64",
                           -1, &stmt, NULL) != SQLITE_OK)
        return sessions_db_error(s, err, "reading the queues");
    while (n < 64 && sqlite3_step(stmt) == SQLITE_ROW)
        types[n++] = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    if (n == 0)
        return 0;

    rc = sessions_tx_begin(s, err);
    for (int i = 0; rc == 0 && i < n; i++)
        rc = sessions_renumber_queue_tx(s, types[i], err);
    if (rc == 0)
        return sessions_tx_commit(s, err);
    sessions_tx_rollback(s);
    return rc;
}

/* Launch every session that has a slot but no trainer yet. */
static int launch_pending(struct sessions *s, int64_t now)
{
    int64_t ids[64];
    int n = 0, rc = 0;
    sqlite3_stmt *stmt;

    if (sqlite3_prepare_v2(s->st->db,
                           "SELECT id FROM sessions "
                           "WHERE state = 'initializing' "
                           "AND queue_position IS NULL AND pid IS NULL "
                           "ORDER BY id LIMIT 64",
                           -1, &stmt, NULL) != SQLITE_OK)
        return -EIO;
    while (n < 64 && sqlite3_step(stmt) == SQLITE_ROW)
        ids[n++] = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    for (int i = 0; i < n && rc == 0; i++)
        if (sessions_find_job(s, ids[i]) == NULL)
            rc = launch_session(s, ids[i], now);
    return rc;
}

void sessions_schedule(struct sessions *s, int64_t now)
{
    struct error err = {0};

    if (s->shutting_down || now < s->launch_retry_ms)
        return;
    if (!s->schedule_dirty &&
        now - s->scheduled_ms < SESSIONS_SCHEDULE_PERIOD_MS)
        return;
    s->schedule_dirty = 0;
    s->scheduled_ms = now;
    if (promote_queues(s, &err) != 0)
        log_error("cannot update the device queues: %s; retrying", err.msg);
    if (launch_pending(s, now) != 0) {
        s->launch_retry_ms = now + SESSIONS_LAUNCH_RETRY_MS;
        s->schedule_dirty = 1;
        log_warn("launching sessions failed; retrying in %d ms",
                 SESSIONS_LAUNCH_RETRY_MS);
    }
}
