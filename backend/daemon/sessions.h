/*
 * Training sessions: the control plane between users' requests, the
 * database, the ledger and the trainers that an executor runs.
 *
 * A session moves through the states of the schema (schema/db/
 * 002_core.sql, docs/SESSIONS.md):
 *
 *   created -> initializing -> training -> completed | stopped | paused |
 *                                          expired | failed
 *   initializing -> stopped | failed
 *   stopped | paused | failed | expired -> initializing   (resume)
 *
 * Every transition is written to SQLite in one BEGIN IMMEDIATE
 * transaction, together with the charge, refund or progress event that
 * belongs to it, and only announced (the event hook) after the commit.
 * The partial unique index sessions_one_active_per_account is the final
 * guard of the one-model rule.
 *
 * All functions except the state helpers take a `struct sessions` that
 * one thread owns: the backend's service loop calls sessions_poll every
 * 10 ms, sessions_read_pipe when a trainer's pipe has input, and the
 * request handlers call start, stop and resume between polls. Only sessions_shutdown waits for trainers. The others wait at
 * most for SQLite's busy timeout and, when launching, for the exec of
 * the trainer. The event hook must not call back into this module.
 *
 * Functions return 0 or a negative errno code, with a message for the
 * user in struct error:
 *   -EPERM   the account is not on the Pro plan
 *   -EBUSY   another model of the account is training
 *   -ENOSPC  the balance is too low
 *   -ENOENT  account, model, instance type or session not found
 *   -EINVAL  invalid request, or a state that does not allow it
 *   -EIO     database failure; retry
 */
#ifndef TRAINYARD_SESSIONS_H
#define TRAINYARD_SESSIONS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "executor.h"
#include "store.h"

/* Largest epoch target and timed duration a request may ask for. */
#define SESSIONS_EPOCHS_MAX 10000
#define SESSIONS_TIME_LIMIT_MAX_MS (7LL * 24 * 3600 * 1000)

enum session_state {
    SESSION_CREATED,
    SESSION_INITIALIZING,
    SESSION_TRAINING,
    SESSION_COMPLETED,
    SESSION_STOPPED,
    SESSION_PAUSED,
    SESSION_EXPIRED,
    SESSION_FAILED,
};
#define SESSION_STATE_COUNT 8

/* Name of a state as the schema spells it; "unknown" when out of range. */
const char *session_state_name(enum session_state state);

/* Parse a schema state name; returns 0 or -EINVAL. */
int session_state_parse(const char *name, enum session_state *state);

/* 1 when the state machine allows from -> to, else 0. */
int session_transition_allowed(enum session_state from, enum session_state to);

/* 1 for the states that resume accepts: stopped, paused, failed,
 * expired. */
int session_state_resumable(enum session_state state);

enum session_mode {
    SESSION_MODE_EPOCHS, /* each epoch charged from the balance */
    SESSION_MODE_TIMED,  /* a duration paid at the start */
};

enum session_payment {
    SESSION_PAY_BALANCE, /* from the account's balance */
    SESSION_PAY_PREPAID, /* timed only: paid through a payment provider */
};

struct sessions_config {
    /* Data folder. Data set paths are relative to it, and each session
     * trains in DATA/runs/model-MODEL/session-SESSION/. */
    const char *data_dir;
    const char *train_program; /* path of the train program */
    const char *train_cwd;     /* folder train runs in; NULL: ours */
    int train_threads;         /* threads= for every trainer; 0: all */
    int64_t stop_timeout_ms;   /* SIGTERM, then SIGKILL after this */
    /* A trainer with no event for this long is killed and the session
     * fails. Before its start event the trainer loads the data set and
     * builds the model, so the allowance there is init_timeout_ms. */
    int64_t heartbeat_timeout_ms;
    int64_t init_timeout_ms;
};

/* Defaults: stop 30 s, heartbeat 120 s, initialization 600 s, train
 * threads 0, no cwd; data_dir and train_program must be set. */
void sessions_config_defaults(struct sessions_config *cfg);

struct sessions_start_request {
    int64_t account_id;
    int64_t model_id;
    int64_t instance_type_id;
    enum session_mode mode;
    int epochs;            /* target, 1 to SESSIONS_EPOCHS_MAX */
    int64_t time_limit_ms; /* timed: the paid duration; epochs: 0 */
    enum session_payment payment;
};

/* One stored progress event. kind is the trainer's event name (start,
 * batch, epoch, checkpoint, done, error), or "state" for a change of the
 * session's state or queue position. payload is a JSON object. */
struct sessions_event {
    int64_t model_id;
    int64_t session_id;
    int64_t seq; /* per model, from 1 */
    const char *kind;
    const char *payload;
    int64_t created_at; /* Unix ms */
};

/* Receives events; a non-zero return ends a replay early. */
typedef int (*sessions_event_fn)(void *user, const struct sessions_event *ev);

struct sessions;

/* Create the control plane over an open store. The store and executor
 * must outlive it; cfg's strings are copied. data_dir must exist. */
int sessions_open(struct sessions **out, struct store *st,
                  const struct executor *ex, const struct sessions_config *cfg,
                  struct error *err);

/* Stop watching without touching the trainers' sessions in the database:
 * running trainers are killed, and their sessions stay in the database
 * as they were until sessions_reconcile runs at the next start. Call
 * sessions_shutdown first for a graceful stop. */
void sessions_close(struct sessions *s);

/* Set the function that receives every new event after its commit, such
 * as the server's broadcast to gateways; fn NULL turns it off. */
void sessions_set_event_hook(struct sessions *s, sessions_event_fn fn,
                             void *user);

/* Run once at backend start, before any other call: every session that
 * an earlier backend launched and left initializing or training has its
 * process group killed when it still runs and becomes failed (resumable),
 * which frees its device slot. Sessions that were still waiting for a
 * device stay queued. Returns the number of sessions failed, or a
 * negative error. */
int sessions_reconcile(struct sessions *s, struct error *err);

/* Start a new training of a model: checks the Pro plan, the one-model
 * rule and the money rule, pays timed training, and inserts the session
 * as initializing, all in one transaction. It launches at the next
 * sessions_poll, or waits in its instance type's queue (queue_position 1
 * is next) while the type is at capacity. */
int sessions_start(struct sessions *s, const struct sessions_start_request *req,
                   int64_t *session_id, struct error *err);

/* Stop the model's initializing or training session. A queued session
 * stops at once; a running trainer gets SIGTERM, saves a checkpoint and
 * the session becomes stopped when it exits (SIGKILL after
 * stop_timeout_ms). Timed training refunds the unused time pro rata. */
int sessions_stop(struct sessions *s, int64_t account_id, int64_t model_id,
                  struct error *err);

/* Resume the model's latest session from stopped, paused, failed or
 * expired, with the checks of sessions_start, from its last recorded
 * checkpoint (without one, from epoch 0). *session_id receives its id. */
int sessions_resume(struct sessions *s, int64_t account_id, int64_t model_id,
                    int64_t *session_id, struct error *err);

/* Do the periodic work: read every trainer's events, reap trainers that
 * exited, enforce stop deadlines and heartbeats, and launch queued
 * sessions into free slots. now_ms is CLOCK_MONOTONIC in ms. */
void sessions_poll(struct sessions *s, int64_t now_ms);

/* A trainer's event pipe, which the service loop may watch for input
 * between polls. */
struct sessions_pipe {
    int64_t session_id;
    int fd;
};

/* Fill out with up to max pipes whose events sessions_read_pipe would
 * read now: trainers that run, whose pipe has not ended and that have no
 * failed store waiting for the next poll. Returns the number filled. */
int sessions_pipes(const struct sessions *s, struct sessions_pipe *out,
                   int max);

/* Read and store what session_id's trainer has written, at once rather
 * than at the next poll. Returns 1 while its pipe is worth watching, 0
 * when the session has no trainer, the pipe ended or a store failed (the
 * next poll retries it). now_ms is CLOCK_MONOTONIC in ms. */
int sessions_read_pipe(struct sessions *s, int64_t session_id,
                       int64_t now_ms);

/* Record whether the service loop watches session_id's pipe. While it
 * does, sessions_poll leaves the pipe to sessions_read_pipe, except for
 * what is left in it when the trainer has exited. */
void sessions_set_pipe_watched(struct sessions *s, int64_t session_id,
                               int watched);

/* Number of trainers this control plane is watching. */
int sessions_running(const struct sessions *s);

/* Stop every running trainer gracefully (SIGTERM, then SIGKILL after
 * stop_timeout_ms) and wait for them. Their sessions become failed with
 * the reason "the backend stopped during training; resume to continue".
 * Blocks for up to stop_timeout_ms plus 5 s. */
void sessions_shutdown(struct sessions *s);

/* Find the weights that another model may start from: best.ckpt, else
 * last.ckpt, of model_id's newest completed or stopped session that has
 * one, under data_dir. Returns 1 with the path written, 0 when the model
 * has no such checkpoint, or a negative error with err filled. */
int sessions_model_weights(struct store *st, const char *data_dir,
                           int64_t model_id, char *path, size_t len,
                           struct error *err);

/* Call fn for each stored event of model_id with seq > after_seq, in
 * order, for a viewer that reconnects. */
int sessions_events_after(struct sessions *s, int64_t model_id,
                          int64_t after_seq, sessions_event_fn fn, void *user,
                          struct error *err);

#endif
