/*
 * A stack (stack.h) set up for training. The backend reads a
 * configuration file that names the tested train program and sells one
 * CPU instance type. An admin and one user on the pro plan with credits
 * exist, and the user owns a generated classification data set. The
 * helpers start trainings, wait for session states and read stored
 * events through the REST API as that user.
 *
 * The functions fail the current cmocka test when a step that must work
 * does not. Password hashing uses TRAINYARD_PWHASH=fast (tests only).
 */
#ifndef TRAINYARD_TRAINSTACK_H
#define TRAINYARD_TRAINSTACK_H

#include <stdint.h>

#include "harness.h"
#include "stack.h"

#define TRAINSTACK_ADMIN_EMAIL "admin@example.com"
#define TRAINSTACK_ADMIN_PASSWORD "admin-pass-5521"
#define TRAINSTACK_USER_EMAIL "trainer@example.com"
#define TRAINSTACK_USER_PASSWORD "trainer-pass-7310"
#define TRAINSTACK_DATASET_ID 100
/* Path of the data set under the data folder. */
#define TRAINSTACK_DATASET_PATH "sets/tiny"

struct trainstack_options {
    /* Images per class in the train split (4 per class go to val). */
    int train_per_class;
    /* The "cpu" instance type's price, a decimal string in dollars. */
    const char *price_per_hour;
    /* More entries of the configuration's instance_types list, as YAML
     * lines indented by 2 spaces; may be NULL. */
    const char *more_instance_types;
    /* Credits given to the user, in micro-dollars. */
    int64_t credits;
    /* Options passed to every gateway start; either may be NULL. */
    const char *gateway_option, *gateway_option2;
};

struct trainstack {
    struct stack *s;
    struct trainstack_options opt;
    char config[PATH_MAX + 32];
    struct browser admin, user;
    int64_t user_id;
    int models; /* models created, for unique names */
};

/* Start the stack with opt; fills ts. */
void trainstack_start(struct trainstack *ts,
                      const struct trainstack_options *opt);

/* Stop the stack (stack_stop) with the passwords as secrets; returns its
 * result. */
int trainstack_stop(struct trainstack *ts);

/* Start the backend with the configuration on port (0: any free one). A
 * restart on the same port retries while the port is still taken. */
void trainstack_start_backend(struct trainstack *ts, int port);

/* Start the gateway with the configured options and wait for health. */
void trainstack_start_gateway(struct trainstack *ts);

/* Send a request as the user, with the CSRF token unless it is a GET. */
void trainstack_call(struct trainstack *ts, const char *method,
                     const char *target, const char *body,
                     struct http_reply *r);

/* Fail the test unless r has HTTP status; what names the request. */
void trainstack_expect(const struct http_reply *r, int status,
                       const char *what);

/* Give the user amount micro-dollars of credits as the admin. */
void trainstack_credit(struct trainstack *ts, int64_t amount);

/* Write another generated data set to DATA/path and store it as the
 * user's data set id. */
void trainstack_add_dataset(struct trainstack *ts, int64_t id,
                            const char *path);

/* Create a model of yolov8n-cls.yaml on data set dataset (0: the one
 * made at start), imgsz 16 and batch 8; returns its id. */
int64_t trainstack_create_model(struct trainstack *ts, int64_t dataset);

/* Start training of epochs epochs on instance type instance (NULL:
 * "cpu"). */
void trainstack_train(struct trainstack *ts, int64_t model, int epochs,
                      const char *instance);

/* Wait up to timeout_ms for the model's session state to be state;
 * copies the session's reason into reason (when not NULL). */
void trainstack_wait_state(struct trainstack *ts, int64_t model,
                           const char *state, int timeout_ms, char *reason,
                           size_t reason_len);

/* The last stored seq of model, read page by page through REST; fails
 * unless the store numbers the events 1..N. */
int64_t trainstack_last_seq(struct trainstack *ts, int64_t model);

/* The user's balance in micro-dollars, from GET /api/v1/balance. */
int64_t trainstack_balance(struct trainstack *ts);

/* The number of rows in the ledger table, read from the database. */
int64_t trainstack_ledger_rows(struct trainstack *ts);

/* Run a query returning one integer on the backend's database; returns
 * it, or -1 when it returns no row. */
int64_t trainstack_query_int(struct trainstack *ts, const char *sql);

#endif
