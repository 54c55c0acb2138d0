/*
 * The in-process Trainyard of the fuzz targets that talk to the real
 * servers (fuzz_rest, fuzz_live): the backend (backend/daemon) and the
 * gateway (gateway/) run on threads of the target's process, on
 * 127.0.0.1 with ports chosen by the system, over a data folder under
 * $TMPDIR that is removed at exit.
 *
 * The database is seeded through the backend's own functions: an admin
 * (account 1) and a user (account 2), both on the Pro plan with $1000.00
 * of credit, and a third account (3) whose objects the others must never
 * reach. Data sets 1 (classify) and 2 (detect) are samples of no
 * account, data set 3 is account 3's. Model 1 (the user's) has a
 * completed session with best and last checkpoints and a billed epoch.
 * Model 2 is the user's, model 3 the admin's, and model 4, account 3's,
 * has a checkpoint too. Account 3 has API key 1. A target may seed more
 * before the backend starts (fuzz_stack_options.seed).
 *
 * The backend's session supervisor runs with an executor whose start
 * fails, so no input starts a trainer. A training start or resume that
 * the API accepts launches at the next tick and fails to start. The
 * session then becomes failed, as when the train program is missing.
 *
 * The user and the admin sign in through POST /api/v1/auth/signin.
 * Between inputs, fuzz_stack_restore gives back to the seeded accounts
 * what an input can take away.
 */
#ifndef TRAINYARD_FUZZ_STACK_H
#define TRAINYARD_FUZZ_STACK_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "daemon/backend.h"
#include "daemon/store.h"

#define FUZZ_PASSWORD "fuzz-password-1234"
#define FUZZ_ADMIN_EMAIL "admin@fuzz.example"
#define FUZZ_USER_EMAIL "user@fuzz.example"
#define FUZZ_OTHER_EMAIL "other@fuzz.example"

/* Accounts and objects of the seeded database. */
#define FUZZ_ADMIN_ID 1
#define FUZZ_USER_ID 2
#define FUZZ_OTHER_ID 3
#define FUZZ_OTHER_DATASET_ID 3
#define FUZZ_USER_MODEL_ID 1 /* the user's, with a completed session */
#define FUZZ_ADMIN_MODEL_ID 3
#define FUZZ_OTHER_MODEL_ID 4
#define FUZZ_OTHER_KEY_ID 1

/* A signed-in browser. */
struct fuzz_browser {
    int64_t account;
    char token[AUTH_TOKEN_LEN + 1];
    char csrf[AUTH_TOKEN_LEN + 1];
};

struct fuzz_stack_options {
    /* The target's name: failure reports start with it, and it names the
     * temporary folder. */
    const char *name;
    /* live_options of the gateway: connections and ping interval. */
    int live_connections;
    int live_ping_interval_s;
    /* Seeds more rows into the backend's database after the shared seed,
     * before the backend starts; NULL for none. */
    void (*seed)(struct store *st);
    /* Runs on the backend's thread at each tick (SERVER_TICK_MS), after
     * the session supervisor's poll; NULL for none. */
    void (*tick)(struct backend *be);
    /* Prints the target's context of a failed check, such as the request
     * and response, to standard error; NULL for none. */
    void (*report)(void);
};

struct fuzz_stack {
    char dir[PATH_MAX];      /* the temporary folder */
    char data[PATH_MAX + 8]; /* the backend's data folder inside it */
    struct backend be;
    /* The target's own connection to the backend's database, for
     * restoring the seeded accounts between inputs. */
    struct store store;
    int gateway_port;
    struct fuzz_browser user, admin;
};

extern struct fuzz_stack fuzz_stack;

/* Make the folder, seed the database, start the backend and the gateway
 * and sign the user and the admin in. Logs go to standard error at the
 * error level. Calls fuzz_fail on any failure. Call it once, from
 * LLVMFuzzerInitialize; the stack stops at exit. */
void fuzz_stack_start(const struct fuzz_stack_options *opt);

/* Report a failed check, with the report hook's context, and abort, so
 * that libFuzzer saves the input. */
void fuzz_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* Print label and up to 600 bytes of text to standard error, with
 * bytes outside printable ASCII as \xNN and carriage returns left out. */
void fuzz_print_excerpt(const char *label, const char *text, size_t len);

/* End each seeded session whose token the input contains, so that
 * fuzz_stack_restore replaces it. libFuzzer learns tokens from the
 * comparisons that check them and puts them into inputs, which may store
 * them: in an account's email, for example. */
void fuzz_stack_retire_exposed(const uint8_t *data, size_t size);

/* Give back to the seeded accounts what an input can take away. A
 * session that signed out or was retired is created again, and a plan
 * is set back to Pro. A balance under $100.00 gets $1000.00 of credit,
 * and a deleted model 1 to 4 is restored. */
void fuzz_stack_restore(void);

#endif
