/*
 * The real backend and gateway on loopback, driven as a browser or script
 * would: health through the whole chain, static files, path traversal,
 * security headers, a gateway with the wrong secret, and a backend restart.
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
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "fsutil.h"
#include "harness.h"

struct stack {
    char dir[PATH_MAX];
    char data[PATH_MAX + 16];
    char ui[PATH_MAX + 16];
    char backend_log[PATH_MAX + 32];
    char gateway_log[PATH_MAX + 32];
    pid_t backend, gateway;
    int backend_port, gateway_port;
};

static void write_file(const char *path, const char *text)
{
    struct error err = {0};
    assert_int_equal(fs_write_atomic(path, text, strlen(text), 0644, &err),
                     0);
}

/* Start the backend; port 0 picks a free one. */
static void start_backend(struct stack *s, int port)
{
    char prog[PATH_MAX], listen[64], port_file[PATH_MAX + 32];

    harness_program("backend", prog, sizeof(prog));
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    snprintf(port_file, sizeof(port_file), "%s/backend.port", s->dir);
    unlink(port_file);
    char *argv[] = {prog, "--data", s->data, "--listen", listen,
                    "--port-file", port_file, NULL};
    s->backend = harness_spawn(argv, s->backend_log);
    s->backend_port = harness_wait_port(port_file, s->backend, 20000);
    assert_true(s->backend_port > 0);
}

static void start_gateway(struct stack *s, const char *secret_path)
{
    char prog[PATH_MAX], backend[64], port_file[PATH_MAX + 32];

    harness_program("gateway", prog, sizeof(prog));
    snprintf(backend, sizeof(backend), "127.0.0.1:%d", s->backend_port);
    snprintf(port_file, sizeof(port_file), "%s/gateway.port", s->dir);
    unlink(port_file);
    char *argv[] = {prog, "--listen", "127.0.0.1:0", "--backend", backend,
                    "--secret", (char *)secret_path, "--ui", s->ui,
                    "--port-file", port_file, NULL};
    s->gateway = harness_spawn(argv, s->gateway_log);
    s->gateway_port = harness_wait_port(port_file, s->gateway, 20000);
    assert_true(s->gateway_port > 0);
}

/* GET /api/v1/health until it returns status want or timeout_ms passes. */
static int wait_health(struct stack *s, int want, int timeout_ms)
{
    struct http_reply r;
    int status = 0;

    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        if (harness_http(s->gateway_port, "GET", "/api/v1/health", NULL, NULL,
                         &r) == 0) {
            status = r.status;
            harness_http_free(&r);
            if (status == want)
                return status;
        }
        usleep(50 * 1000);
    }
    return status;
}

static int stack_setup(void **state)
{
    struct stack *s = calloc(1, sizeof(*s));
    char secret[PATH_MAX + 32], path[PATH_MAX + 32];
    struct error err = {0};

    harness_tmpdir(s->dir, sizeof(s->dir));
    snprintf(s->data, sizeof(s->data), "%s/data", s->dir);
    snprintf(s->ui, sizeof(s->ui), "%s/ui", s->dir);
    snprintf(s->backend_log, sizeof(s->backend_log), "%s/backend.log",
             s->dir);
    snprintf(s->gateway_log, sizeof(s->gateway_log), "%s/gateway.log",
             s->dir);
    assert_int_equal(fs_mkdir_p(s->ui, 0755, &err), 0);
    snprintf(path, sizeof(path), "%s/index.html", s->ui);
    write_file(path, "<!doctype html><title>t</title>");
    snprintf(path, sizeof(path), "%s/app.wasm", s->ui);
    write_file(path, "\0asm");
    /* A file beside the UI folder that no URL may reach. */
    snprintf(path, sizeof(path), "%s/outside.txt", s->dir);
    write_file(path, "TOP-SECRET-OUTSIDE");

    start_backend(s, 0);
    snprintf(secret, sizeof(secret), "%s/gateway.secret", s->data);
    start_gateway(s, secret);
    *state = s;
    return 0;
}

static int stack_teardown(void **state)
{
    struct stack *s = *state;
    int gw = s->gateway > 0 ? harness_stop(s->gateway, SIGTERM, 10000) : 0;
    int be = s->backend > 0 ? harness_stop(s->backend, SIGTERM, 10000) : 0;

    /* Both must stop cleanly on SIGTERM, and sanitizers report nothing. */
    if (!WIFEXITED(gw) || WEXITSTATUS(gw) != 0 || !WIFEXITED(be) ||
        WEXITSTATUS(be) != 0) {
        fprintf(stderr, "unclean stop: gateway status %d, backend %d; "
                        "logs in %s\n",
                gw, be, s->dir);
        free(s);
        return -1;
    }
    harness_rmtree(s->dir);
    free(s);
    return 0;
}

static void health_reaches_backend(void **state)
{
    struct stack *s = *state;
    struct http_reply r;

    assert_int_equal(wait_health(s, 200, 10000), 200);
    assert_int_equal(harness_http(s->gateway_port, "GET", "/api/v1/health",
                                  NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"gateway\":\"ok\""));
    assert_non_null(strstr(r.body, "\"status\":\"ok\""));
    assert_non_null(strstr(r.body, "\"schema_version\":"));
    harness_http_free(&r);
}

static void api_unknown_path_is_json_404(void **state)
{
    struct stack *s = *state;
    struct http_reply r;
    char type[128];

    assert_int_equal(harness_http(s->gateway_port, "GET", "/api/v1/nothing",
                                  NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 404);
    assert_int_equal(harness_header(&r, "Content-Type", type, sizeof(type)),
                     0);
    assert_non_null(strstr(type, "application/json"));
    assert_non_null(strstr(r.body, "\"code\":\"not_found\""));
    harness_http_free(&r);
}

static void api_wrong_method_rejected(void **state)
{
    struct stack *s = *state;
    struct http_reply r;

    assert_int_equal(harness_http(s->gateway_port, "POST", "/api/v1/health",
                                  NULL, "{}", &r),
                     0);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.body, "method_not_allowed"));
    harness_http_free(&r);
}

/* A response to HEAD has headers only. The gateway wrote the JSON body of
 * its 405 after them, which a client on a kept-alive connection would
 * read as the start of the next response. */
static void api_head_response_has_no_body(void **state)
{
    struct stack *s = *state;
    struct http_reply r;
    char length[32], allow[32];

    assert_int_equal(harness_http(s->gateway_port, "HEAD", "/api/v1/health",
                                  NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 405);
    assert_int_equal(harness_header(&r, "Allow", allow, sizeof(allow)), 0);
    assert_string_equal(allow, "GET");
    assert_int_equal(
        harness_header(&r, "Content-Length", length, sizeof(length)), 0);
    assert_true(atoi(length) > 0);
    assert_int_equal(r.body_len, 0);
    harness_http_free(&r);
}

static void static_files_have_etag_and_types(void **state)
{
    struct stack *s = *state;
    struct http_reply r;
    char etag[128], type[128], cond[256];

    assert_int_equal(
        harness_http(s->gateway_port, "GET", "/", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "<title>t</title>"));
    assert_int_equal(harness_header(&r, "ETag", etag, sizeof(etag)), 0);
    harness_http_free(&r);

    snprintf(cond, sizeof(cond), "If-None-Match: %s\r\n", etag);
    assert_int_equal(harness_http(s->gateway_port, "GET", "/index.html",
                                  cond, NULL, &r),
                     0);
    assert_int_equal(r.status, 304);
    harness_http_free(&r);

    assert_int_equal(
        harness_http(s->gateway_port, "GET", "/app.wasm", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(harness_header(&r, "Content-Type", type, sizeof(type)),
                     0);
    assert_string_equal(type, "application/wasm");
    harness_http_free(&r);
}

/* A FILE.gz beside FILE goes to clients that accept gzip, as make ui
 * writes them; other clients get the plain file. civetweb 1.15 does this
 * only for files of some size, so the test file has 8 KiB. */
static void static_gzip_when_accepted(void **state)
{
    struct stack *s = *state;
    char path[PATH_MAX + 32], value[128], plain[8192];
    struct http_reply r;
    struct error err = {0};
    struct stat st;

    for (size_t i = 0; i < sizeof(plain); i++)
        plain[i] = (char)('a' + (i * 7 + i / 13) % 26);
    snprintf(path, sizeof(path), "%s/big.wasm", s->ui);
    assert_int_equal(fs_write_atomic(path, plain, sizeof(plain), 0644, &err),
                     0);
    snprintf(path, sizeof(path), "%s/big.wasm.gz", s->ui);
    gzFile gz = gzopen(path, "wb9");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, plain, sizeof(plain)), (int)sizeof(plain));
    assert_int_equal(gzclose(gz), Z_OK);
    assert_int_equal(stat(path, &st), 0);

    assert_int_equal(harness_http(s->gateway_port, "GET", "/big.wasm",
                                  "Accept-Encoding: gzip, deflate\r\n", NULL,
                                  &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_int_equal(harness_header(&r, "Content-Encoding", value,
                                    sizeof(value)),
                     0);
    assert_string_equal(value, "gzip");
    assert_int_equal(r.body_len, (size_t)st.st_size);
    assert_int_equal(harness_header(&r, "Content-Type", value, sizeof(value)),
                     0);
    assert_string_equal(value, "application/wasm");
    harness_http_free(&r);

    assert_int_equal(
        harness_http(s->gateway_port, "GET", "/big.wasm", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_not_equal(harness_header(&r, "Content-Encoding", value,
                                        sizeof(value)),
                         0);
    assert_int_equal(r.body_len, sizeof(plain));
    harness_http_free(&r);
}

/* civetweb's error pages wrote their text after the headers of a HEAD
 * response, as the API's 405 did. A HEAD of a file that exists gets its
 * headers with the file's length and no body. */
static void static_head_response_has_no_body(void **state)
{
    struct stack *s = *state;
    struct http_reply r;
    char value[64];

    assert_int_equal(harness_http(s->gateway_port, "HEAD", "/missing.html",
                                  NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 404);
    assert_int_equal(r.body_len, 0);
    assert_int_equal(harness_header(&r, "X-Frame-Options", value,
                                    sizeof(value)),
                     0);
    assert_string_equal(value, "DENY");
    harness_http_free(&r);

    assert_int_equal(harness_http(s->gateway_port, "HEAD", "/index.html",
                                  NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_int_equal(harness_header(&r, "Content-Length", value,
                                    sizeof(value)),
                     0);
    assert_string_equal(value, "31");
    harness_http_free(&r);
}

static void static_traversal_rejected(void **state)
{
    static const char *const targets[] = {
        "/../outside.txt",
        "/%2e%2e/outside.txt",
        "/%2E%2E%2Foutside.txt",
        "/..%2foutside.txt",
        "/%252e%252e/outside.txt",
        "/./../outside.txt",
        "/ui/../../outside.txt",
        "/....//outside.txt",
        "/..\\outside.txt",
    };
    struct stack *s = *state;

    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        struct http_reply r;
        int rc = harness_http(s->gateway_port, "GET", targets[i], NULL, NULL,
                              &r);
        if (rc != 0)
            continue; /* the connection was refused: nothing leaked */
        if (r.body != NULL && strstr(r.body, "TOP-SECRET-OUTSIDE") != NULL)
            fail_msg("%s returned the file outside the UI folder",
                     targets[i]);
        assert_int_not_equal(r.status, 200);
        harness_http_free(&r);
    }
}

static void security_headers_on_every_response(void **state)
{
    static const char *const targets[] = {"/", "/api/v1/health",
                                          "/api/v1/nothing"};
    struct stack *s = *state;

    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        struct http_reply r;
        char value[512];
        assert_int_equal(harness_http(s->gateway_port, "GET", targets[i],
                                      NULL, NULL, &r),
                         0);
        assert_int_equal(harness_header(&r, "X-Content-Type-Options", value,
                                        sizeof(value)),
                         0);
        assert_string_equal(value, "nosniff");
        assert_int_equal(harness_header(&r, "Content-Security-Policy", value,
                                        sizeof(value)),
                         0);
        assert_non_null(strstr(value, "frame-ancestors 'none'"));
        assert_non_null(strstr(value, "'wasm-unsafe-eval'"));
        harness_http_free(&r);
    }
}

static void backend_restart_reconnects(void **state)
{
    struct stack *s = *state;
    struct timespec t0, t1;
    int port = s->backend_port;

    assert_int_equal(wait_health(s, 200, 10000), 200);
    assert_int_equal(harness_stop(s->backend, SIGKILL, 5000) & 0x7f,
                     SIGKILL);
    s->backend = 0;

    /* With the backend gone, requests fail at once with 503. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(wait_health(s, 503, 5000), 503);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 5);

    start_backend(s, port);
    assert_int_equal(wait_health(s, 200, 15000), 200);
    assert_true(harness_file_contains(s->gateway_log,
                                      "connected to the backend"));
}

static void gateway_wrong_secret_rejected(void **state)
{
    struct stack *s = *state;
    char wrong[PATH_MAX + 32];
    struct error err = {0};
    const char *text = "ffffffffffffffffffffffffffffffff"
                       "ffffffffffffffffffffffffffffffff\n";

    /* Replace the stack's gateway with one that has a forged secret. */
    harness_stop(s->gateway, SIGTERM, 10000);
    snprintf(wrong, sizeof(wrong), "%s/wrong.secret", s->dir);
    assert_int_equal(fs_write_atomic(wrong, text, strlen(text), 0600, &err),
                     0);
    start_gateway(s, wrong);

    assert_int_equal(wait_health(s, 503, 3000), 503);
    for (int i = 0; i < 100; i++) {
        if (harness_file_contains(s->backend_log, "wrong or missing shared"))
            break;
        usleep(50 * 1000);
    }
    assert_true(
        harness_file_contains(s->backend_log, "wrong or missing shared"));
    assert_true(harness_file_contains(s->gateway_log,
                                      "backend rejected the gateway"));
}

static void gateway_secret_readable_by_all_refused(void **state)
{
    struct stack *s = *state;
    char prog[PATH_MAX], open_secret[PATH_MAX + 32], log[PATH_MAX + 32];
    struct error err = {0};
    const char *text = "ffffffffffffffffffffffffffffffff"
                       "ffffffffffffffffffffffffffffffff\n";
    int status;

    harness_program("gateway", prog, sizeof(prog));
    snprintf(open_secret, sizeof(open_secret), "%s/open.secret", s->dir);
    snprintf(log, sizeof(log), "%s/gateway2.log", s->dir);
    assert_int_equal(
        fs_write_atomic(open_secret, text, strlen(text), 0644, &err), 0);
    char *argv[] = {prog, "--listen", "127.0.0.1:0", "--secret", open_secret,
                    NULL};
    pid_t pid = harness_spawn(argv, log);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_true(harness_file_contains(log, "chmod 600"));
}

static void programs_reject_bad_arguments(void **state)
{
    static const char *const cases[][3] = {
        {"backend", "--listen", "nowhere"},
        {"backend", "--log-level", "loud"},
        {"gateway", "--listen", "127.0.0.1:99999"},
        {"gateway", "--backend", ":80"},
    };
    struct stack *s = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char prog[PATH_MAX], log[PATH_MAX + 32];
        int status;
        harness_program(cases[i][0], prog, sizeof(prog));
        snprintf(log, sizeof(log), "%s/args%zu.log", s->dir, i);
        char *argv[] = {prog, (char *)cases[i][1], (char *)cases[i][2], NULL};
        pid_t pid = harness_spawn(argv, log);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 2);
        assert_true(harness_file_contains(log, cases[i][2]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(health_reaches_backend, stack_setup,
                                        stack_teardown),
        cmocka_unit_test_setup_teardown(api_unknown_path_is_json_404,
                                        stack_setup, stack_teardown),
        cmocka_unit_test_setup_teardown(api_wrong_method_rejected,
                                        stack_setup, stack_teardown),
        cmocka_unit_test_setup_teardown(api_head_response_has_no_body,
                                        stack_setup, stack_teardown),
        cmocka_unit_test_setup_teardown(static_files_have_etag_and_types,
                                        stack_setup, stack_teardown),
        cmocka_unit_test_setup_teardown(static_gzip_when_accepted,
                                        stack_setup, stack_teardown),
        cmocka_unit_test_setup_teardown(static_head_response_has_no_body,
                                        stack_setup, stack_teardown),
        cmocka_unit_test_setup_teardown(static_traversal_rejected,
                                        stack_setup, stack_teardown),
        cmocka_unit_test_setup_teardown(security_headers_on_every_response,
                                        stack_setup, stack_teardown),
        cmocka_unit_test_setup_teardown(backend_restart_reconnects,
                                        stack_setup, stack_teardown),
        cmocka_unit_test_setup_teardown(gateway_wrong_secret_rejected,
                                        stack_setup, stack_teardown),
        cmocka_unit_test_setup_teardown(
            gateway_secret_readable_by_all_refused, stack_setup,
            stack_teardown),
        cmocka_unit_test_setup_teardown(programs_reject_bad_arguments,
                                        stack_setup, stack_teardown),
    };
    return cmocka_run_group_tests_name("gateway_backend", tests, NULL, NULL);
}
