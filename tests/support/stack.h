/*
 * A running Trainyard stack for integration tests: the real backend and
 * gateway on 127.0.0.1 ephemeral ports, with data, logs and port files in
 * one temporary folder. It also has the requests a browser or script
 * makes against it: sign-in with the session cookie and CSRF token,
 * account creation by an admin, JSON field lookups, error checks, and
 * direct SQL on the backend's database for fixtures.
 *
 * The functions fail the current cmocka test when a step that must work
 * does not. Programs come from $TRAINYARD_BIN, as in harness.h.
 */
#ifndef TRAINYARD_STACK_H
#define TRAINYARD_STACK_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../../gateway/auth.h"
#include "harness.h"

#define STACK_JSON_HEADER "Content-Type: application/json\r\n"

/* Sign-in attempts that the gateway allows per client address in any
 * AUTH_SIGNIN_WINDOW_MS. Every test request comes from 127.0.0.1, so they
 * all share this budget. */
#define STACK_SIGNIN_LIMIT AUTH_SIGNIN_ATTEMPTS

struct stack {
    char dir[PATH_MAX];
    char data[PATH_MAX + 16];
    char ui[PATH_MAX + 16];
    char backend_log[PATH_MAX + 32];
    char gateway_log[PATH_MAX + 32];
    pid_t backend, gateway;
    int backend_port, gateway_port;
    /* Sign-in requests sent by stack_signin to the running gateway. Each
     * start of a gateway resets the count to 0. */
    int signins;
};

/* A signed-in browser: its cookie header value and CSRF token. */
struct browser {
    char cookie[128]; /* "ty_session=..." */
    char csrf[80];
    char set_cookie[512]; /* the whole Set-Cookie value of sign-in */
};

/* Create a temporary folder, start the backend, create the first admin
 * with `backend create-admin` beside the running backend, and start the
 * gateway. Free the result with stack_stop. */
struct stack *stack_start(const char *admin_email, const char *admin_password);

/* Stop the gateway and the backend with SIGTERM and check that both
 * exited with status 0, which in the sanitizer build also means that
 * LeakSanitizer found no leak at exit, and that no string of secrets
 * (count strings) appears in either log. Returns 0 and removes the folder, or returns -1
 * and keeps it for reading, with a message on stderr. Frees s. */
int stack_stop(struct stack *s, const char *const secrets[], size_t count);

/* Start the backend on a free port of 127.0.0.1. */
void stack_start_backend(struct stack *s);

/* Start the gateway and wait until GET /api/v1/health returns 200.
 * extra_option (such as "--secure-cookies") may be NULL. */
void stack_start_gateway(struct stack *s, const char *extra_option);

/* Stop the gateway, fail the test unless it exited with status 0, and
 * start a new one with extra_option (may be NULL). The new gateway has a
 * new sign-in rate limiter, and sessions survive because the backend
 * stores them. */
void stack_restart_gateway(struct stack *s, const char *extra_option);

/* Run `backend create-admin --data DATA EMAIL` with stdin_text on its
 * standard input and, when env_password is not NULL, that password in
 * TRAINYARD_ADMIN_PASSWORD. Output goes to log_path. Returns the exit
 * status, or -1 when the command did not exit normally. */
int stack_create_admin(struct stack *s, const char *email,
                       const char *stdin_text, const char *env_password,
                       const char *log_path);

/* Send one request to the gateway; extra_headers and body may be NULL.
 * Fails the test when no reply came. */
void stack_request(struct stack *s, const char *method, const char *target,
                   const char *extra_headers, const char *body,
                   struct http_reply *reply);

/* Write the headers of a browser request: the JSON content type, the
 * cookie, and the CSRF token when with_csrf is set. */
void browser_headers(const struct browser *b, int with_csrf, char *out,
                     size_t len);

/* Write the headers of a script request: the JSON content type and
 * `Authorization: Bearer KEY`. */
void key_headers(const char *key, char *out, size_t len);

/* Copy the string at body.a, or body.a.b when b is not NULL, into out,
 * and return out. The copy is "" when the body is not JSON or the field
 * is missing or not a string. */
const char *json_text(const char *body, const char *a, const char *b, char *out,
                      size_t len);

/* Return the number at body.a, or body.a.b when b is not NULL, or -1
 * when the field is missing or not a number. */
double json_number(const char *body, const char *a, const char *b);

/* Fail the test unless reply has HTTP status and error code code. */
void assert_error(const struct http_reply *reply, int status, const char *code);

/* Sign in with email and password. Returns the HTTP status; on 200, fills
 * *b when b is not NULL. Counts the attempt in s->signins. */
int stack_signin(struct stack *s, const char *email, const char *password,
                 struct browser *b);

/* Create a user account as admin (POST /api/v1/admin/accounts), then sign
 * it in into *user. Returns the new account's id. */
int64_t stack_create_user(struct stack *s, const struct browser *admin,
                          const char *email, const char *password,
                          struct browser *user);

/* Run sql on the backend's database (DATA/trainyard.db), as an operator
 * with the sqlite3 shell would, waiting up to 5 s for the write lock. */
void stack_database_exec(struct stack *s, const char *sql);

/* The first column of the first row of sql on the backend's database, or
 * -1 without a row. */
int64_t stack_database_int(struct stack *s, const char *sql);

#endif
