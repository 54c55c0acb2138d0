/*
 * The backend and gateway of an integration test, and the browser and
 * script requests that tests send to them; see stack.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "stack.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"

/* ---- programs --------------------------------------------------------- */

void stack_start_backend(struct stack *s)
{
    char prog[PATH_MAX], port_file[PATH_MAX + 32];

    harness_program("backend", prog, sizeof(prog));
    snprintf(port_file, sizeof(port_file), "%s/backend.port", s->dir);
    unlink(port_file);
    char *argv[] = {prog,          "--data",      s->data,   "--listen",
                    "127.0.0.1:0", "--port-file", port_file, NULL};
    s->backend = harness_spawn(argv, s->backend_log);
    s->backend_port = harness_wait_port(port_file, s->backend, 20000);
    assert_true(s->backend_port > 0);
}

/* GET /api/v1/health until it returns 200 or timeout_ms passes. Returns
 * the last status, 0 when no reply came. */
static int wait_health(struct stack *s, int timeout_ms)
{
    struct http_reply r;
    int status = 0;

    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        if (harness_http(s->gateway_port, "GET", "/api/v1/health", NULL, NULL,
                         &r) == 0) {
            status = r.status;
            harness_http_free(&r);
            if (status == 200)
                return status;
        }
        usleep(50 * 1000);
    }
    return status;
}

void stack_start_gateway(struct stack *s, const char *extra_option)
{
    char prog[PATH_MAX], backend[64], port_file[PATH_MAX + 32];
    char secret[PATH_MAX + 32];

    harness_program("gateway", prog, sizeof(prog));
    snprintf(backend, sizeof(backend), "127.0.0.1:%d", s->backend_port);
    snprintf(port_file, sizeof(port_file), "%s/gateway.port", s->dir);
    snprintf(secret, sizeof(secret), "%s/gateway.secret", s->data);
    unlink(port_file);
    char *argv[] = {
        prog,    "--listen",    "127.0.0.1:0", "--backend",
        backend, "--secret",    secret,        "--ui",
        s->ui,   "--port-file", port_file,     (char *)extra_option,
        NULL,
    };
    s->gateway = harness_spawn(argv, s->gateway_log);
    s->signins = 0;
    s->gateway_port = harness_wait_port(port_file, s->gateway, 20000);
    assert_true(s->gateway_port > 0);
    assert_int_equal(wait_health(s, 10000), 200);
}

void stack_restart_gateway(struct stack *s, const char *extra_option)
{
    int status = harness_stop(s->gateway, SIGTERM, 10000);

    s->gateway = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("gateway stopped with wait status %d, expected exit 0; "
                 "log in %s",
                 status, s->gateway_log);
    stack_start_gateway(s, extra_option);
}

int stack_create_admin(struct stack *s, const char *email,
                       const char *stdin_text, const char *env_password,
                       const char *log_path)
{
    char prog[PATH_MAX];
    int fds[2], status;
    pid_t pid;

    harness_program("backend", prog, sizeof(prog));
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *log = fopen(log_path, "a");
        dup2(fds[0], 0);
        close(fds[0]);
        close(fds[1]);
        if (log != NULL) {
            dup2(fileno(log), 1);
            dup2(fileno(log), 2);
        }
        if (env_password != NULL)
            setenv("TRAINYARD_ADMIN_PASSWORD", env_password, 1);
        else
            unsetenv("TRAINYARD_ADMIN_PASSWORD");
        char *argv[] = {prog,    "create-admin", "--data",
                        s->data, (char *)email,  NULL};
        execv(prog, argv);
        _exit(127);
    }
    close(fds[0]);
    if (stdin_text != NULL && write(fds[1], stdin_text, strlen(stdin_text)) < 0)
        perror("write");
    close(fds[1]);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

struct stack *stack_start(const char *admin_email, const char *admin_password)
{
    struct stack *s = calloc(1, sizeof(*s));
    char path[PATH_MAX + 32];
    struct error err = {0};

    assert_non_null(s);
    harness_tmpdir(s->dir, sizeof(s->dir));
    snprintf(s->data, sizeof(s->data), "%s/data", s->dir);
    snprintf(s->ui, sizeof(s->ui), "%s/ui", s->dir);
    snprintf(s->backend_log, sizeof(s->backend_log), "%s/backend.log", s->dir);
    snprintf(s->gateway_log, sizeof(s->gateway_log), "%s/gateway.log", s->dir);
    assert_int_equal(fs_mkdir_p(s->ui, 0755, &err), 0);

    stack_start_backend(s);
    /* The command works beside a running backend. */
    snprintf(path, sizeof(path), "%s/create-admin.log", s->dir);
    assert_int_equal(
        stack_create_admin(s, admin_email, NULL, admin_password, path), 0);
    stack_start_gateway(s, NULL);
    return s;
}

int stack_stop(struct stack *s, const char *const secrets[], size_t count)
{
    int gw = s->gateway > 0 ? harness_stop(s->gateway, SIGTERM, 10000) : 0;
    int be = s->backend > 0 ? harness_stop(s->backend, SIGTERM, 10000) : 0;
    int leaked = 0;

    for (size_t i = 0; i < count; i++)
        leaked |= harness_file_contains(s->backend_log, secrets[i]) ||
                  harness_file_contains(s->gateway_log, secrets[i]);
    /* The sanitizer build checks for leaks at exit and then exits with
     * status 1. Name the cause, because the status alone does not. */
    if (harness_file_contains(s->backend_log, "LeakSanitizer") ||
        harness_file_contains(s->gateway_log, "LeakSanitizer"))
        fprintf(stderr, "LeakSanitizer reported leaks in %s or %s\n",
                s->backend_log, s->gateway_log);

    if (!WIFEXITED(gw) || WEXITSTATUS(gw) != 0 || !WIFEXITED(be) ||
        WEXITSTATUS(be) != 0 || leaked) {
        fprintf(stderr,
                "unclean stop (gateway status %d, backend %d) or "
                "a secret in a log (%d); logs in %s\n",
                gw, be, leaked, s->dir);
        free(s);
        return -1;
    }
    harness_rmtree(s->dir);
    free(s);
    return 0;
}

/* ---- requests --------------------------------------------------------- */

void stack_request(struct stack *s, const char *method, const char *target,
                   const char *extra_headers, const char *body,
                   struct http_reply *reply)
{
    assert_int_equal(harness_http(s->gateway_port, method, target,
                                  extra_headers, body, reply),
                     0);
}

void browser_headers(const struct browser *b, int with_csrf, char *out,
                     size_t len)
{
    snprintf(out, len, STACK_JSON_HEADER "Cookie: %s\r\n%s%s%s", b->cookie,
             with_csrf ? "X-CSRF-Token: " : "", with_csrf ? b->csrf : "",
             with_csrf ? "\r\n" : "");
}

void key_headers(const char *key, char *out, size_t len)
{
    snprintf(out, len, STACK_JSON_HEADER "Authorization: Bearer %s\r\n", key);
}

const char *json_text(const char *body, const char *a, const char *b, char *out,
                      size_t len)
{
    cJSON *root = cJSON_Parse(body);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, a);

    if (b != NULL)
        v = cJSON_GetObjectItemCaseSensitive(v, b);
    snprintf(out, len, "%s", cJSON_IsString(v) ? v->valuestring : "");
    cJSON_Delete(root);
    return out;
}

double json_number(const char *body, const char *a, const char *b)
{
    cJSON *root = cJSON_Parse(body);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, a);
    double value;

    if (b != NULL)
        v = cJSON_GetObjectItemCaseSensitive(v, b);
    value = cJSON_IsNumber(v) ? v->valuedouble : -1;
    cJSON_Delete(root);
    return value;
}

void assert_error(const struct http_reply *reply, int status, const char *code)
{
    char text[128];

    if (reply->status != status)
        fail_msg("expected %d %s, got %d: %s", status, code, reply->status,
                 reply->body);
    assert_string_equal(
        json_text(reply->body, "error", "code", text, sizeof(text)), code);
}

int stack_signin(struct stack *s, const char *email, const char *password,
                 struct browser *b)
{
    struct http_reply r;
    char body[512];
    int status;

    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}",
             email, password);
    s->signins++;
    stack_request(s, "POST", "/api/v1/auth/signin", STACK_JSON_HEADER, body,
                  &r);
    status = r.status;
    if (status == 200 && b != NULL) {
        assert_int_equal(harness_header(&r, "Set-Cookie", b->set_cookie,
                                        sizeof(b->set_cookie)),
                         0);
        char *end = strchr(b->set_cookie, ';');
        assert_non_null(end);
        snprintf(b->cookie, sizeof(b->cookie), "%.*s",
                 (int)(end - b->set_cookie), b->set_cookie);
        json_text(r.body, "csrf", NULL, b->csrf, sizeof(b->csrf));
        assert_int_equal(strlen(b->csrf), 64);
    }
    harness_http_free(&r);
    return status;
}

int64_t stack_create_user(struct stack *s, const struct browser *admin,
                          const char *email, const char *password,
                          struct browser *user)
{
    struct http_reply r;
    char headers[512], body[512];
    int64_t id;

    browser_headers(admin, 1, headers, sizeof(headers));
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}",
             email, password);
    stack_request(s, "POST", "/api/v1/admin/accounts", headers, body, &r);
    if (r.status != 201)
        fail_msg("creating account %s: expected 201, got %d: %s", email,
                 r.status, r.body);
    id = (int64_t)json_number(r.body, "id", NULL);
    assert_true(id > 1);
    harness_http_free(&r);
    assert_int_equal(stack_signin(s, email, password, user), 200);
    return id;
}

int64_t stack_database_int(struct stack *s, const char *sql)
{
    char path[PATH_MAX + 32];
    sqlite3_stmt *stmt;
    int64_t value = -1;
    sqlite3 *db;

    snprintf(path, sizeof(path), "%s/trainyard.db", s->data);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        fail_msg("SQL failed: %s\n  in: %s", sqlite3_errmsg(db), sql);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return value;
}

void stack_database_exec(struct stack *s, const char *sql)
{
    char path[PATH_MAX + 32], failure[512] = "";
    char *message = NULL;
    sqlite3 *db;

    snprintf(path, sizeof(path), "%s/trainyard.db", s->data);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, sql, NULL, NULL, &message) != SQLITE_OK)
        snprintf(failure, sizeof(failure), "%s",
                 message ? message : sqlite3_errmsg(db));
    sqlite3_free(message);
    sqlite3_close(db);
    if (failure[0] != '\0')
        fail_msg("SQL failed: %s\n  in: %s", failure, sql);
}
