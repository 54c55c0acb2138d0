/*
 * Private parts of the sessions module, shared by sessions.c (context,
 * transactions, state changes, rows), sessions_control.c (start, stop,
 * resume, reconcile), sessions_launch.c (train arguments, launch, the
 * device queue) and sessions_run.c (events, exits, watchdogs, poll). Not
 * for use outside these files.
 */
#ifndef TRAINYARD_SESSIONS_INTERNAL_H
#define TRAINYARD_SESSIONS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sessions.h"

/* Maximum length of an event line from a trainer; longer lines are
 * dropped. */
#define SESSIONS_LINE_MAX (64 * 1024)
#define SESSIONS_REASON_MAX 512
/* Period of the queue check when nothing signalled a change. */
#define SESSIONS_SCHEDULE_PERIOD_MS 1000
/* Pause before the next launch after a launch failed. */
#define SESSIONS_LAUNCH_RETRY_MS 1000

/* One trainer being watched. */
struct session_job {
    struct session_job *next;
    int64_t session_id;
    int64_t model_id;
    int64_t account_id;
    enum session_mode mode;
    int epochs;
    int64_t rate;
    int64_t price;
    int64_t time_limit_ms;
    int64_t trained_base_ms; /* trained_ms when this run launched */
    struct executor_job *job;

    /* Reading: bytes after the last complete line (SESSIONS_LINE_MAX
     * bytes of room), the newest unstored batch event, and a line whose
     * handling failed and is retried at the next poll. While
     * line_overlong is set, bytes are dropped up to the next newline. */
    char *line;
    size_t line_len;
    int line_overlong;
    char *pending_batch;
    char *retry_line;
    int eof;
    int pipe_watched; /* the service loop reads the pipe on input */

    int64_t launched_ms; /* monotonic, as every *_ms below */
    int64_t last_event_ms;
    int started; /* the start event arrived */
    int64_t training_started_ms;
    /* Start of the current epoch's part in this run: the time_ms of the
     * start or last epoch event, on the trainer's clock (Unix ms). */
    int64_t epoch_started_at;
    /* Control-plane time: the backend's handling of this trainer's events
     * (parsing, transactions, charges, checkpoint rows) since the last
     * epoch event, in nanoseconds, and the epoch whose share is logged
     * at the end of the current read (0: none). */
    int64_t control_ns;
    int control_epoch;
    double control_epoch_seconds;

    /* Why SIGTERM was sent: a stop request, a pause for money, or the
     * backend's shutdown. SIGKILL follows at term_deadline_ms. */
    int stop_requested;
    int pause_requested;
    char pause_reason[SESSIONS_REASON_MAX];
    int shutdown;
    int term_sent;
    int64_t term_deadline_ms;
    int term_killed; /* SIGKILL sent at the deadline */
    int killed;      /* SIGKILL sent, for the deadline or the heartbeat */
    char fail_reason[SESSIONS_REASON_MAX];   /* heartbeat */
    char error_message[SESSIONS_REASON_MAX]; /* from an error event */

    int ended;
    struct executor_status status;
    int64_t ended_ms;
};

/* An event committed but not yet passed to the hook. */
struct sessions_outbox_item {
    struct sessions_event ev;
    char *kind;
    char *payload;
};

struct sessions {
    struct store *st;
    const struct executor *ex;
    char *data_dir;
    char *train_program;
    char *train_cwd;
    int train_threads;
    int64_t stop_timeout_ms;
    int64_t heartbeat_timeout_ms;
    int64_t init_timeout_ms;

    struct session_job *jobs;
    sessions_event_fn hook;
    void *hook_user;

    struct sessions_outbox_item *outbox;
    size_t outbox_len, outbox_cap;

    int shutting_down;
    int schedule_dirty;
    int64_t scheduled_ms;
    int64_t launch_retry_ms;
};

/* A sessions row, with the names of its model and instance type. */
struct session_row {
    int64_t id;
    int64_t model_id;
    int64_t account_id;
    int64_t instance_type_id;
    enum session_mode mode;
    enum session_state state;
    int epochs;
    int epochs_done;
    int64_t time_limit_ms;
    int64_t trained_ms;
    int64_t price;
    enum session_payment payment;
    int64_t rate;
    char run_dir[1024];
    char checkpoint[1024];
    char reason[SESSIONS_REASON_MAX];
    int queue_position; /* 0: not queued */
    int64_t pid;        /* 0: not launched */
    char model_name[256];
};

/* ---- sessions.c: transactions, events, rows, state changes -------------- */

int sessions_tx_begin(struct sessions *s, struct error *err);
/* Commit, then pass the transaction's events to the hook. */
int sessions_tx_commit(struct sessions *s, struct error *err);
/* Roll back and forget the transaction's events. */
void sessions_tx_rollback(struct sessions *s);

/* Store an event with the model's next seq, to be announced at commit. */
int sessions_emit_tx(struct sessions *s, int64_t model_id, int64_t session_id,
                     const char *kind, const char *payload, struct error *err);

int sessions_load_row(struct sessions *s, int64_t session_id,
                      struct session_row *row, struct error *err);

/* Move row to state `to` with reason (NULL: none), store a state event
 * and log the change; row->state is updated. Rejects a transition that
 * the state machine does not allow with -EINVAL. */
int sessions_set_state_tx(struct sessions *s, struct session_row *row,
                          enum session_state to, const char *reason,
                          struct error *err);

/* Store a state event for a change of queue position or a launch. */
int sessions_emit_state_tx(struct sessions *s, const struct session_row *row,
                           const char *note, struct error *err);

int sessions_db_error(struct sessions *s, struct error *err, const char *what);

/* Name of the account's initializing or training model: 1 and name, 0
 * when there is none, or a negative error. */
int sessions_active_model(struct sessions *s, int64_t account_id, char *name,
                          size_t len, struct error *err);

/* The one-model rule's error (-EBUSY) naming the account's active model. */
int sessions_busy_error(struct sessions *s, int64_t account_id,
                        struct error *err);

/* Run an UPDATE or INSERT with int64 parameters (?1...) bound from args;
 * returns the number of changed rows or a negative error. */
int sessions_exec_ints(struct sessions *s, const char *sql, const int64_t *args,
                       int nargs, struct error *err);

/* First column of the first row of a query with int64 parameters, as an
 * integer; *found is 0 when there is no row or the value is NULL. */
int sessions_query_int(struct sessions *s, const char *sql, const int64_t *args,
                       int nargs, int64_t *value, int *found,
                       struct error *err);

/* "$1.23" of micro-dollars, as the ledger writes it. */
const char *sessions_usd(int64_t micro, char *buf, size_t len);

/* An amount that the user must pay, rounded up to whole cents. */
const char *sessions_usd_cents_up(int64_t micro, char *buf, size_t len);

/* Device slots of an instance type: 1 for a GPU, else capacity. */
int sessions_type_capacity(const char *device, int capacity);

/* ---- sessions_control.c: rules shared by start and resume --------------- */

/* Refund the unused part of a timed session (used_ms of its limit); a
 * no-op for epoch training. */
int sessions_refund_timed_tx(struct sessions *s, const struct session_row *row,
                             int64_t used_ms, struct error *err);

/* Queue position for one more session on the type: 0 when a slot is
 * free and no session waits, else the place after the last one waiting.
 */
int sessions_queue_position_tx(struct sessions *s, int64_t type_id,
                               int *position, struct error *err);

/* ---- sessions_launch.c: arguments, launch, the device queue ------------- */

/* Check a model's training arguments: a JSON object whose keys are train
 * arguments other than those the session sets, and whose values are
 * numbers, strings or booleans. */
int sessions_check_args(const char *args_json, const char *model_name,
                        struct error *err);

/* Renumber the type's queue 1..n after a change, storing state events. */
int sessions_renumber_queue_tx(struct sessions *s, int64_t type_id,
                               struct error *err);

/* Hand free device slots to waiting sessions, then launch every session
 * that has a slot but no trainer. Called by sessions_poll. */
void sessions_schedule(struct sessions *s, int64_t now);

void sessions_free_job(struct session_job *job);

/* ---- sessions_run.c: events, exits, watchdogs, poll --------------------- */

struct session_job *sessions_find_job(struct sessions *s, int64_t session_id);

/* Ask a running trainer to stop (SIGTERM) with the stop deadline. */
void sessions_request_stop(struct sessions *s, struct session_job *job,
                           int64_t now_ms);

#endif
