/*
 * Accounts and security at the edge, through the real backend and gateway
 * on 127.0.0.1. The tests cover `backend create-admin`, sign-in and its
 * rate limit, session cookies and their attributes, CSRF and API keys.
 * They also cover admin-only endpoints, objects of other accounts,
 * request body checks, session expiry, sign-out, and a session that
 * outlives a gateway restart.
 *
 * Password hashing uses TRAINYARD_PWHASH=fast (libsodium's minimum
 * argon2id cost), which exists for tests only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"
#include "stack.h"

#define ADMIN_EMAIL "admin@example.com"
#define ADMIN_PASSWORD "admin-pass-4417"
#define USER_EMAIL "user@example.com"
#define USER_PASSWORD "user-pass-9023"

static int stack_setup(void **state)
{
    *state = stack_start(ADMIN_EMAIL, ADMIN_PASSWORD);
    return 0;
}

static int stack_teardown(void **state)
{
    /* No password may reach a log. */
    static const char *const secrets[] = {ADMIN_PASSWORD, USER_PASSWORD};

    return stack_stop(*state, secrets, sizeof(secrets) / sizeof(secrets[0]));
}

/* Create an API key named name; returns its id and the key in key. */
static int64_t create_key(struct stack *s, const struct browser *b,
                          const char *name, char *key, size_t len)
{
    struct http_reply r;
    char headers[512], body[128], prefix[32];
    int64_t id;

    browser_headers(b, 1, headers, sizeof(headers));
    snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
    stack_request(s, "POST", "/api/v1/apikeys", headers, body, &r);
    assert_int_equal(r.status, 201);
    json_text(r.body, "key", NULL, key, len);
    json_text(r.body, "prefix", NULL, prefix, sizeof(prefix));
    id = (int64_t)json_number(r.body, "id", NULL);
    harness_http_free(&r);
    assert_int_equal(strncmp(key, "ty_", 3), 0);
    assert_int_equal(strlen(key), 46);
    assert_int_equal(strncmp(key, prefix, strlen(prefix)), 0);
    return id;
}

/* ---- tests ----------------------------------------------------------------
 */

static void signin_sets_cookie_and_me(void **state)
{
    struct stack *s = *state;
    struct browser b;
    struct http_reply r;
    char headers[512], text[128];

    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &b), 200);
    assert_non_null(strstr(b.set_cookie, "; HttpOnly"));
    assert_non_null(strstr(b.set_cookie, "; SameSite=Strict"));
    assert_non_null(strstr(b.set_cookie, "; Path=/"));
    /* Plain HTTP on loopback: no Secure attribute. */
    assert_null(strstr(b.set_cookie, "Secure"));
    assert_int_equal(strlen(b.cookie), strlen("ty_session=") + 64);

    browser_headers(&b, 0, headers, sizeof(headers));
    stack_request(s, "GET", "/api/v1/me", headers, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(
        json_text(r.body, "account", "email", text, sizeof(text)), ADMIN_EMAIL);
    assert_string_equal(
        json_text(r.body, "account", "role", text, sizeof(text)), "admin");
    assert_string_equal(json_text(r.body, "auth", NULL, text, sizeof(text)),
                        "session");
    assert_string_equal(json_text(r.body, "csrf", NULL, text, sizeof(text)),
                        b.csrf);
    /* The session token never appears in a body. */
    assert_null(strstr(r.body, b.cookie + strlen("ty_session=")));
    harness_http_free(&r);
}

static void signin_failures_look_alike(void **state)
{
    struct stack *s = *state;
    struct http_reply wrong, unknown;
    char text[128];

    stack_request(s, "POST", "/api/v1/auth/signin", STACK_JSON_HEADER,
                  "{\"email\":\"" ADMIN_EMAIL "\",\"password\":\"not-it-123\"}",
                  &wrong);
    stack_request(
        s, "POST", "/api/v1/auth/signin", STACK_JSON_HEADER,
        "{\"email\":\"nobody@example.com\",\"password\":\"not-it-123\"}",
        &unknown);
    assert_error(&wrong, 401, "unauthorized");
    assert_error(&unknown, 401, "unauthorized");
    assert_string_equal(
        json_text(wrong.body, "error", "message", text, sizeof(text)),
        "invalid email or password");
    assert_string_equal(wrong.body, unknown.body);
    assert_int_equal(harness_header(&wrong, "Set-Cookie", text, sizeof(text)),
                     -1);
    harness_http_free(&wrong);
    harness_http_free(&unknown);

    /* Emails compare without case. */
    assert_int_equal(stack_signin(s, "ADMIN@Example.com", ADMIN_PASSWORD, NULL),
                     200);
}

static void signin_rate_limited(void **state)
{
    struct stack *s = *state;
    struct http_reply r;
    char retry[32];

    for (int i = 0; i < 10; i++)
        assert_int_equal(stack_signin(s, ADMIN_EMAIL, "wrong-password", NULL),
                         401);
    stack_request(s, "POST", "/api/v1/auth/signin", STACK_JSON_HEADER,
                  "{\"email\":\"" ADMIN_EMAIL
                  "\",\"password\":\"" ADMIN_PASSWORD "\"}",
                  &r);
    /* Even the right password waits once the limit is reached. */
    assert_error(&r, 429, "rate_limited");
    assert_int_equal(harness_header(&r, "Retry-After", retry, sizeof(retry)),
                     0);
    assert_true(atoi(retry) >= 1);
    assert_true(atoi(retry) <= 60);
    harness_http_free(&r);
    assert_true(harness_file_contains(s->gateway_log, "sign-in limit"));
}

static void missing_or_forged_cookie_401(void **state)
{
    struct stack *s = *state;
    struct http_reply r;
    char value[256];

    stack_request(s, "GET", "/api/v1/me", NULL, NULL, &r);
    assert_error(&r, 401, "unauthorized");
    harness_http_free(&r);

    /* A well-formed token that no session has; the cookie is cleared. */
    stack_request(s, "GET", "/api/v1/me",
                  "Cookie: ty_session=00112233445566778899aabbccddeeff"
                  "00112233445566778899aabbccddeeff\r\n",
                  NULL, &r);
    assert_error(&r, 401, "unauthorized");
    assert_int_equal(harness_header(&r, "Set-Cookie", value, sizeof(value)), 0);
    assert_non_null(strstr(value, "Max-Age=0"));
    harness_http_free(&r);

    stack_request(s, "GET", "/api/v1/me", "Cookie: ty_session=../../etc\r\n",
                  NULL, &r);
    assert_error(&r, 401, "unauthorized");
    harness_http_free(&r);

    stack_request(
        s, "GET", "/api/v1/apikeys",
        "Authorization: Bearer ty_forgedforgedforgedforgedforgedforged"
        "1234\r\n",
        NULL, &r);
    assert_error(&r, 401, "unauthorized");
    harness_http_free(&r);

    stack_request(s, "GET", "/api/v1/me", "Authorization: Basic YTpi\r\n", NULL,
                  &r);
    assert_error(&r, 401, "unauthorized");
    harness_http_free(&r);
}

static void csrf_required_with_cookie(void **state)
{
    struct stack *s = *state;
    struct browser b, forged;
    struct http_reply r;
    char headers[512];

    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &b), 200);

    browser_headers(&b, 0, headers, sizeof(headers));
    stack_request(s, "POST", "/api/v1/apikeys", headers, "{\"name\":\"x\"}",
                  &r);
    assert_error(&r, 403, "csrf_failed");
    harness_http_free(&r);

    forged = b;
    forged.csrf[0] = forged.csrf[0] == 'a' ? 'b' : 'a';
    browser_headers(&forged, 1, headers, sizeof(headers));
    stack_request(s, "POST", "/api/v1/apikeys", headers, "{\"name\":\"x\"}",
                  &r);
    assert_error(&r, 403, "csrf_failed");
    harness_http_free(&r);

    browser_headers(&b, 0, headers, sizeof(headers));
    stack_request(s, "DELETE", "/api/v1/apikeys/1", headers, NULL, &r);
    assert_error(&r, 403, "csrf_failed");
    harness_http_free(&r);
    stack_request(s, "POST", "/api/v1/auth/signout", headers, NULL, &r);
    assert_error(&r, 403, "csrf_failed");
    harness_http_free(&r);

    /* The token of another session does not do either. */
    struct browser other;
    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &other), 200);
    snprintf(forged.csrf, sizeof(forged.csrf), "%s", other.csrf);
    browser_headers(&forged, 1, headers, sizeof(headers));
    stack_request(s, "POST", "/api/v1/apikeys", headers, "{\"name\":\"x\"}",
                  &r);
    assert_error(&r, 403, "csrf_failed");
    harness_http_free(&r);

    browser_headers(&b, 1, headers, sizeof(headers));
    stack_request(s, "POST", "/api/v1/apikeys", headers, "{\"name\":\"x\"}",
                  &r);
    assert_int_equal(r.status, 201);
    harness_http_free(&r);
}

static void apikey_create_use_revoke(void **state)
{
    struct stack *s = *state;
    struct browser b;
    struct http_reply r;
    char key[64], headers[512], path[64], text[128];
    int64_t id;

    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &b), 200);
    id = create_key(s, &b, "nightly", key, sizeof(key));

    key_headers(key, headers, sizeof(headers));
    stack_request(s, "GET", "/api/v1/me", headers, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_text(r.body, "auth", NULL, text, sizeof(text)),
                        "api_key");
    assert_string_equal(
        json_text(r.body, "account", "email", text, sizeof(text)), ADMIN_EMAIL);
    harness_http_free(&r);

    /* API keys need no CSRF token. */
    stack_request(s, "POST", "/api/v1/apikeys", headers,
                  "{\"name\":\"second\"}", &r);
    assert_int_equal(r.status, 201);
    harness_http_free(&r);

    /* The list never shows a key again. */
    stack_request(s, "GET", "/api/v1/apikeys", headers, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"name\":\"nightly\""));
    assert_null(strstr(r.body, key));
    assert_null(strstr(r.body, "\"key\""));
    harness_http_free(&r);

    snprintf(path, sizeof(path), "/api/v1/apikeys/%lld", (long long)id);
    stack_request(s, "DELETE", path, headers, NULL, &r);
    assert_int_equal(r.status, 204);
    harness_http_free(&r);

    stack_request(s, "GET", "/api/v1/me", headers, NULL, &r);
    assert_error(&r, 401, "unauthorized");
    harness_http_free(&r);

    browser_headers(&b, 0, headers, sizeof(headers));
    stack_request(s, "GET", "/api/v1/apikeys", headers, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"revoked_at\":1"));
    harness_http_free(&r);
}

static void other_accounts_key_not_found(void **state)
{
    struct stack *s = *state;
    struct browser admin, user;
    struct http_reply r;
    char user_key[64], admin_key[64], headers[512], path[64];
    int64_t user_key_id;

    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &admin), 200);
    stack_create_user(s, &admin, USER_EMAIL, USER_PASSWORD, &user);
    user_key_id =
        create_key(s, &user, "user-script", user_key, sizeof(user_key));
    create_key(s, &admin, "admin-script", admin_key, sizeof(admin_key));

    /* The admin, by cookie or by key, cannot revoke the user's key. */
    snprintf(path, sizeof(path), "/api/v1/apikeys/%lld",
             (long long)user_key_id);
    browser_headers(&admin, 1, headers, sizeof(headers));
    stack_request(s, "DELETE", path, headers, NULL, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);
    key_headers(admin_key, headers, sizeof(headers));
    stack_request(s, "DELETE", path, headers, NULL, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);

    /* A key id that does not exist reads the same. */
    stack_request(s, "DELETE", "/api/v1/apikeys/999999", headers, NULL, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);

    /* The user's key still works, and each list has its own keys only. */
    key_headers(user_key, headers, sizeof(headers));
    stack_request(s, "GET", "/api/v1/apikeys", headers, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "user-script"));
    assert_null(strstr(r.body, "admin-script"));
    harness_http_free(&r);
}

static void admin_endpoints_refuse_user(void **state)
{
    struct stack *s = *state;
    struct browser admin, user;
    struct http_reply r;
    char headers[512], path[96], key[64], text[64];
    int64_t user_id;

    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &admin), 200);
    user_id = stack_create_user(s, &admin, USER_EMAIL, USER_PASSWORD, &user);
    snprintf(path, sizeof(path), "/api/v1/admin/accounts/%lld/plan",
             (long long)user_id);

    browser_headers(&user, 1, headers, sizeof(headers));
    stack_request(s, "GET", "/api/v1/admin/accounts", headers, NULL, &r);
    assert_error(&r, 403, "forbidden");
    harness_http_free(&r);
    stack_request(s, "POST", "/api/v1/admin/accounts", headers,
                  "{\"email\":\"x@example.com\",\"password\":\"long-enough\"}",
                  &r);
    assert_error(&r, 403, "forbidden");
    harness_http_free(&r);
    stack_request(s, "POST", path, headers, "{\"plan\":\"pro\"}", &r);
    assert_error(&r, 403, "forbidden");
    harness_http_free(&r);

    create_key(s, &user, "user-script", key, sizeof(key));
    key_headers(key, headers, sizeof(headers));
    stack_request(s, "GET", "/api/v1/admin/accounts", headers, NULL, &r);
    assert_error(&r, 403, "forbidden");
    harness_http_free(&r);

    /* The admin can do all three. */
    browser_headers(&admin, 1, headers, sizeof(headers));
    stack_request(s, "GET", "/api/v1/admin/accounts", headers, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, USER_EMAIL));
    assert_non_null(strstr(r.body, ADMIN_EMAIL));
    assert_null(strstr(r.body, "argon2"));
    harness_http_free(&r);
    stack_request(s, "POST", path, headers, "{\"plan\":\"pro\"}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_text(r.body, "plan", NULL, text, sizeof(text)),
                        "pro");
    harness_http_free(&r);
    stack_request(s, "POST", "/api/v1/admin/accounts", headers,
                  "{\"email\":\"" USER_EMAIL "\",\"password\":\"long-enough\"}",
                  &r);
    assert_error(&r, 409, "conflict");
    harness_http_free(&r);
    stack_request(s, "POST", "/api/v1/admin/accounts/999999/plan", headers,
                  "{\"plan\":\"pro\"}", &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);

    /* The user sees the new plan at once. */
    key_headers(key, headers, sizeof(headers));
    stack_request(s, "GET", "/api/v1/me", headers, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(
        json_text(r.body, "account", "plan", text, sizeof(text)), "pro");
    harness_http_free(&r);
}

static void malformed_bodies_rejected(void **state)
{
    static const struct {
        const char *target, *body, *code, *needle;
    } cases[] = {
        {"/api/v1/auth/signin", "{\"email\":", "invalid_json", "not valid"},
        {"/api/v1/auth/signin", "[1,2]", "invalid_request", "JSON object"},
        {"/api/v1/auth/signin", "{\"email\":5,\"password\":\"x\"}",
         "invalid_request", "'email' must be a string"},
        {"/api/v1/auth/signin", "{\"email\":\"a@b.c\"}", "invalid_request",
         "'password' is missing"},
        {"/api/v1/auth/signin", "{\"email\":\"a@b.c\",\"password\":[]}",
         "invalid_request", "'password' must be a string"},
        {"/api/v1/apikeys", "{\"name\":true}", "invalid_request",
         "'name' must be a string"},
        {"/api/v1/apikeys", "{\"name\":\"\"}", "invalid_request", "name"},
        {"/api/v1/admin/accounts",
         "{\"email\":\"n@example.com\",\"password\":\"long-enough\","
         "\"role\":7}",
         "invalid_request", "'role' must be a string"},
        {"/api/v1/admin/accounts",
         "{\"email\":\"n@example.com\",\"password\":\"long-enough\","
         "\"role\":\"root\"}",
         "invalid_request", "role 'root' is invalid"},
        {"/api/v1/admin/accounts",
         "{\"email\":\"n@example.com\",\"password\":\"short\"}",
         "invalid_request", "at least 8"},
        {"/api/v1/admin/accounts",
         "{\"email\":\"no-at-sign\",\"password\":\"long-enough\"}",
         "invalid_request", "email"},
        {"/api/v1/admin/accounts/1/plan", "{\"plan\":\"gold\"}",
         "invalid_request", "plan 'gold' is invalid"},
    };
    struct stack *s = *state;
    struct browser b;
    struct http_reply r;
    char headers[512], message[256];

    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &b), 200);
    browser_headers(&b, 1, headers, sizeof(headers));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        stack_request(s, "POST", cases[i].target, headers, cases[i].body, &r);
        if (r.status != 400 || strstr(r.body, cases[i].code) == NULL ||
            strstr(
                json_text(r.body, "error", "message", message, sizeof(message)),
                cases[i].needle) == NULL)
            fail_msg("POST %s %s: expected 400 %s naming '%s', got %d %s",
                     cases[i].target, cases[i].body, cases[i].code,
                     cases[i].needle, r.status, r.body);
        harness_http_free(&r);
    }

    /* An empty body, and a body that is not declared as JSON. */
    stack_request(s, "POST", "/api/v1/apikeys", headers, "", &r);
    assert_error(&r, 400, "invalid_json");
    harness_http_free(&r);
    stack_request(s, "POST", "/api/v1/auth/signin",
                  "Content-Type: text/plain\r\n",
                  "{\"email\":\"a@b.c\",\"password\":\"x\"}", &r);
    assert_error(&r, 415, "unsupported_media_type");
    harness_http_free(&r);
}

static void oversized_body_413(void **state)
{
    struct stack *s = *state;
    struct browser b;
    struct http_reply r;
    char headers[512];
    size_t size = 70 * 1024;
    char *body = malloc(size + 1);

    memset(body, ' ', size);
    body[0] = '{';
    body[size - 1] = '}';
    body[size] = '\0';

    stack_request(s, "POST", "/api/v1/auth/signin", STACK_JSON_HEADER, body,
                  &r);
    assert_error(&r, 413, "payload_too_large");
    harness_http_free(&r);

    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &b), 200);
    browser_headers(&b, 1, headers, sizeof(headers));
    stack_request(s, "POST", "/api/v1/apikeys", headers, body, &r);
    assert_error(&r, 413, "payload_too_large");
    harness_http_free(&r);

    /* Exactly at the limit, the body is read and parsed. */
    body[64 * 1024 - 1] = '}';
    body[64 * 1024] = '\0';
    stack_request(s, "POST", "/api/v1/apikeys", headers, body, &r);
    assert_error(&r, 400, "invalid_request");
    harness_http_free(&r);
    free(body);
}

static void signout_ends_session(void **state)
{
    struct stack *s = *state;
    struct browser b;
    struct http_reply r;
    char headers[512], value[256];

    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &b), 200);
    browser_headers(&b, 0, headers, sizeof(headers));
    stack_request(s, "GET", "/api/v1/me", headers, NULL, &r);
    assert_int_equal(r.status, 200);
    harness_http_free(&r);

    browser_headers(&b, 1, headers, sizeof(headers));
    stack_request(s, "POST", "/api/v1/auth/signout", headers, NULL, &r);
    assert_int_equal(r.status, 204);
    assert_int_equal(harness_header(&r, "Set-Cookie", value, sizeof(value)), 0);
    assert_non_null(strstr(value, "ty_session=;"));
    assert_non_null(strstr(value, "Max-Age=0"));
    harness_http_free(&r);

    /* At once, although /me was cached a moment ago. */
    stack_request(s, "GET", "/api/v1/me", headers, NULL, &r);
    assert_error(&r, 401, "unauthorized");
    harness_http_free(&r);
}

static void expired_sessions_rejected(void **state)
{
    struct stack *s = *state;
    struct browser old, idle;
    struct http_reply r;
    char headers[512];

    /* Past the absolute limit. */
    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &old), 200);
    stack_database_exec(s, "UPDATE web_sessions SET expires_at = 1");
    browser_headers(&old, 0, headers, sizeof(headers));
    stack_request(s, "GET", "/api/v1/me", headers, NULL, &r);
    assert_error(&r, 401, "session_expired");
    assert_non_null(strstr(r.body, "30 days"));
    harness_http_free(&r);

    /* Unused for more than 7 days. */
    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &idle), 200);
    stack_database_exec(s, "UPDATE web_sessions SET last_seen_at = "
                           "last_seen_at - 8 * 86400000");
    browser_headers(&idle, 0, headers, sizeof(headers));
    stack_request(s, "GET", "/api/v1/me", headers, NULL, &r);
    assert_error(&r, 401, "session_expired");
    assert_non_null(strstr(r.body, "7 days"));
    harness_http_free(&r);

    /* Expired sessions are deleted. */
    stack_request(s, "GET", "/api/v1/me", headers, NULL, &r);
    assert_error(&r, 401, "unauthorized");
    harness_http_free(&r);
}

static void session_survives_gateway_restart(void **state)
{
    struct stack *s = *state;
    struct browser b;
    struct http_reply r;
    char headers[512];
    int status;

    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &b), 200);
    status = harness_stop(s->gateway, SIGTERM, 10000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    s->gateway = 0;
    stack_start_gateway(s, NULL);

    browser_headers(&b, 1, headers, sizeof(headers));
    stack_request(s, "GET", "/api/v1/me", headers, NULL, &r);
    assert_int_equal(r.status, 200);
    harness_http_free(&r);
    stack_request(s, "POST", "/api/v1/apikeys", headers, "{\"name\":\"after\"}",
                  &r);
    assert_int_equal(r.status, 201);
    harness_http_free(&r);
}

static void secure_cookies_option(void **state)
{
    struct stack *s = *state;
    struct browser b;
    int status;

    status = harness_stop(s->gateway, SIGTERM, 10000);
    assert_true(WIFEXITED(status));
    s->gateway = 0;
    stack_start_gateway(s, "--secure-cookies");
    assert_int_equal(stack_signin(s, ADMIN_EMAIL, ADMIN_PASSWORD, &b), 200);
    assert_non_null(strstr(b.set_cookie, "; Secure"));
    assert_non_null(strstr(b.set_cookie, "; HttpOnly"));
    assert_non_null(strstr(b.set_cookie, "; SameSite=Strict"));
}

static void create_admin_command(void **state)
{
    struct stack *s = *state;
    char log[PATH_MAX + 32];

    snprintf(log, sizeof(log), "%s/cli.log", s->dir);

    /* From standard input, with a CRLF line end. */
    assert_int_equal(stack_create_admin(s, "second@example.com",
                                        "stdin-pass-5512\r\n", NULL, log),
                     0);
    assert_int_equal(
        stack_signin(s, "second@example.com", "stdin-pass-5512", NULL), 200);

    assert_int_equal(stack_create_admin(s, "Second@Example.com",
                                        "stdin-pass-5512\n", NULL, log),
                     1);
    assert_true(harness_file_contains(log, "already exists"));
    assert_int_equal(
        stack_create_admin(s, "third@example.com", "short\n", NULL, log), 1);
    assert_true(harness_file_contains(log, "at least 8"));
    assert_int_equal(stack_create_admin(s, "fourth@example.com", "", NULL, log),
                     1);
    assert_true(harness_file_contains(log, "no password"));
    assert_int_equal(
        stack_create_admin(s, "not-an-email", "long-enough\n", NULL, log), 1);
    assert_false(harness_file_contains(log, "stdin-pass-5512"));
    assert_false(harness_file_contains(log, "long-enough"));

    /* Usage errors exit with 2. */
    char prog[PATH_MAX];
    int status;
    harness_program("backend", prog, sizeof(prog));
    char *argv[] = {prog, "create-admin", NULL};
    pid_t pid = harness_spawn(argv, log);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    assert_true(harness_file_contains(log, "needs an EMAIL"));
}

static void wrong_method_lists_allowed(void **state)
{
    struct stack *s = *state;
    struct http_reply r;
    char allow[64];

    stack_request(s, "PUT", "/api/v1/apikeys", NULL, NULL, &r);
    assert_error(&r, 405, "method_not_allowed");
    assert_int_equal(harness_header(&r, "Allow", allow, sizeof(allow)), 0);
    assert_string_equal(allow, "GET, POST");
    harness_http_free(&r);

    stack_request(s, "DELETE", "/api/v1/apikeys/abc", NULL, NULL, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);
}

#define STACK_TEST(name)                                                       \
    cmocka_unit_test_setup_teardown(name, stack_setup, stack_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        STACK_TEST(signin_sets_cookie_and_me),
        STACK_TEST(signin_failures_look_alike),
        STACK_TEST(signin_rate_limited),
        STACK_TEST(missing_or_forged_cookie_401),
        STACK_TEST(csrf_required_with_cookie),
        STACK_TEST(apikey_create_use_revoke),
        STACK_TEST(other_accounts_key_not_found),
        STACK_TEST(admin_endpoints_refuse_user),
        STACK_TEST(malformed_bodies_rejected),
        STACK_TEST(oversized_body_413),
        STACK_TEST(signout_ends_session),
        STACK_TEST(expired_sessions_rejected),
        STACK_TEST(session_survives_gateway_restart),
        STACK_TEST(secure_cookies_option),
        STACK_TEST(create_admin_command),
        STACK_TEST(wrong_method_lists_allowed),
    };

    /* Minimum-cost password hashes keep the suite fast; for tests only. */
    setenv("TRAINYARD_PWHASH", "fast", 1);
    unsetenv("TRAINYARD_ADMIN_PASSWORD");
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
