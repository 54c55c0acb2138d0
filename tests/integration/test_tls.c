/*
 * HTTPS and WSS from the gateway, through the real backend and gateway on
 * 127.0.0.1 with a self-signed certificate made for the test. The client
 * trusts only that certificate and checks it names 127.0.0.1, so every
 * test that connects also checks that the gateway served it.
 *
 * One backend and one TLS gateway serve the whole group. Tests of start
 * failures and of the plain HTTP redirect run gateways of their own.
 * Password hashing uses TRAINYARD_PWHASH=fast (libsodium's minimum
 * argon2id cost), which exists for tests only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "harness.h"
#include "stack.h"
#include "tlsclient.h"

#define ADMIN_EMAIL "admin@example.com"
#define ADMIN_PASSWORD "admin-pass-6251"
#define UI_TEXT "<!doctype html><title>Trainyard</title>\n"

static struct {
    struct stack *s;
    char cert[PATH_MAX + 32], key[PATH_MAX + 32];
    /* A second certificate and key, so that its key matches neither the
     * first certificate nor anything else. */
    char other_cert[PATH_MAX + 32], other_key[PATH_MAX + 32];
} fx;

/* ---- gateways --------------------------------------------------------- */

/* Start a gateway on 127.0.0.1:0 with --tls-cert cert --tls-key key and,
 * when redirect is not NULL, --redirect-http redirect. Its output goes
 * to log. When port is not NULL, waits for the port file and writes its
 * port to *port, or -1 when the gateway exited first (and was reaped).
 * Returns the gateway's pid. */
static pid_t spawn_gateway(const char *cert, const char *key,
                           const char *redirect, const char *log, int *port)
{
    char prog[PATH_MAX], backend[64], port_file[PATH_MAX + 32];
    char secret[PATH_MAX + 32];
    pid_t pid;

    harness_program("gateway", prog, sizeof(prog));
    snprintf(backend, sizeof(backend), "127.0.0.1:%d", fx.s->backend_port);
    snprintf(port_file, sizeof(port_file), "%s/tls-gateway.port", fx.s->dir);
    snprintf(secret, sizeof(secret), "%s/gateway.secret", fx.s->data);
    unlink(port_file);
    char *argv[] = {
        prog,          "--listen",      "127.0.0.1:0", "--backend",
        backend,       "--secret",      secret,        "--ui",
        fx.s->ui,      "--port-file",   port_file,     "--tls-cert",
        (char *)cert,  "--tls-key",     (char *)key,   NULL,
        NULL,          NULL,
    };
    if (redirect != NULL) {
        argv[15] = "--redirect-http";
        argv[16] = (char *)redirect;
    }
    pid = harness_spawn(argv, log);
    if (port != NULL)
        *port = harness_wait_port(port_file, pid, 20000);
    return pid;
}

/* Wait up to timeout_ms for pid to exit. Returns its wait status, or -1
 * after killing it when it was still running. */
static int wait_exit(pid_t pid, int timeout_ms)
{
    int status;

    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        usleep(20 * 1000);
    }
    harness_stop(pid, SIGKILL, 1000);
    return -1;
}

/* GET /api/v1/health over TLS until it returns 200 or timeout_ms passes.
 * Returns the last status, 0 when no reply came. */
static int wait_tls_health(int port, int timeout_ms)
{
    struct http_reply r;
    int status = 0;

    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        if (tls_http(port, "GET", "/api/v1/health", NULL, NULL, &r) == 0) {
            status = r.status;
            harness_http_free(&r);
            if (status == 200)
                return status;
        }
        usleep(50 * 1000);
    }
    return status;
}

/* A port of 127.0.0.1 that was free a moment ago. */
static int free_port(void)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
        port = ntohs(addr.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Send "GET / HTTP/1.0" without a Host header to 127.0.0.1:port and
 * return the response's status, or -1 when none came. */
static int status_without_host(int port)
{
    static const char request[] = "GET / HTTP/1.0\r\n\r\n";
    struct sockaddr_in addr;
    struct timeval tv = {10, 0};
    char buf[256] = "";
    int fd = socket(AF_INET, SOCK_STREAM, 0), status = -1;
    ssize_t n = -1;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        send(fd, request, sizeof(request) - 1, MSG_NOSIGNAL) ==
            (ssize_t)(sizeof(request) - 1))
        n = recv(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    if (n > 0 && sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    return status;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- group setup ------------------------------------------------------ */

static int group_setup(void **state)
{
    struct error err = {0};
    char path[PATH_MAX + 32];
    int port;

    (void)state;
    fx.s = calloc(1, sizeof(*fx.s));
    assert_non_null(fx.s);
    harness_tmpdir(fx.s->dir, sizeof(fx.s->dir));
    snprintf(fx.s->data, sizeof(fx.s->data), "%s/data", fx.s->dir);
    snprintf(fx.s->ui, sizeof(fx.s->ui), "%s/ui", fx.s->dir);
    snprintf(fx.s->backend_log, sizeof(fx.s->backend_log), "%s/backend.log",
             fx.s->dir);
    snprintf(fx.s->gateway_log, sizeof(fx.s->gateway_log), "%s/gateway.log",
             fx.s->dir);
    assert_int_equal(fs_mkdir_p(fx.s->ui, 0755, &err), 0);
    snprintf(path, sizeof(path), "%s/index.html", fx.s->ui);
    assert_int_equal(
        fs_write_atomic(path, UI_TEXT, strlen(UI_TEXT), 0644, &err), 0);

    snprintf(fx.cert, sizeof(fx.cert), "%s/cert.pem", fx.s->dir);
    snprintf(fx.key, sizeof(fx.key), "%s/key.pem", fx.s->dir);
    snprintf(fx.other_cert, sizeof(fx.other_cert), "%s/other-cert.pem",
             fx.s->dir);
    snprintf(fx.other_key, sizeof(fx.other_key), "%s/other-key.pem",
             fx.s->dir);
    assert_int_equal(tls_write_self_signed(fx.cert, fx.key), 0);
    assert_int_equal(tls_write_self_signed(fx.other_cert, fx.other_key), 0);
    tlsclient_trust(fx.cert);

    stack_start_backend(fx.s);
    snprintf(path, sizeof(path), "%s/create-admin.log", fx.s->dir);
    assert_int_equal(
        stack_create_admin(fx.s, ADMIN_EMAIL, NULL, ADMIN_PASSWORD, path), 0);
    fx.s->gateway =
        spawn_gateway(fx.cert, fx.key, NULL, fx.s->gateway_log, &port);
    if (port <= 0)
        fail_msg("the TLS gateway did not start; log in %s",
                 fx.s->gateway_log);
    fx.s->gateway_port = port;
    assert_int_equal(wait_tls_health(port, 10000), 200);
    return 0;
}

static int group_teardown(void **state)
{
    const char *secrets[] = {ADMIN_PASSWORD};

    (void)state;
    return stack_stop(fx.s, secrets, 1);
}

/* ---- tests ------------------------------------------------------------ */

static void https_serves_ui_file(void **state)
{
    struct http_reply r;
    char type[128];

    (void)state;
    assert_int_equal(tls_http(fx.s->gateway_port, "GET", "/index.html", NULL,
                              NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, UI_TEXT);
    assert_int_equal(harness_header(&r, "Content-Type", type, sizeof(type)),
                     0);
    assert_non_null(strstr(type, "text/html"));
    harness_http_free(&r);
}

static void https_health_ok(void **state)
{
    struct http_reply r;
    char text[64];

    (void)state;
    assert_int_equal(tls_http(fx.s->gateway_port, "GET", "/api/v1/health",
                              NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_text(r.body, "gateway", NULL, text, sizeof(text)),
                        "ok");
    assert_string_equal(
        json_text(r.body, "backend", "status", text, sizeof(text)), "ok");
    harness_http_free(&r);
}

static void https_signin_secure_cookie(void **state)
{
    struct http_reply r;
    char body[256], cookie[512];

    (void)state;
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}",
             ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_int_equal(tls_http(fx.s->gateway_port, "POST",
                              "/api/v1/auth/signin", STACK_JSON_HEADER, body,
                              &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_int_equal(harness_header(&r, "Set-Cookie", cookie, sizeof(cookie)),
                     0);
    assert_int_equal(strncmp(cookie, "ty_session=", 11), 0);
    assert_non_null(strstr(cookie, "; Secure"));
    assert_non_null(strstr(cookie, "; HttpOnly"));
    assert_non_null(strstr(cookie, "; SameSite=Strict"));
    harness_http_free(&r);
}

/* Sign in over TLS and write "ty_session=TOKEN" into out. */
static void signin_cookie(char *out, size_t len)
{
    struct http_reply r;
    char body[256], cookie[512];
    char *end;

    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}",
             ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_int_equal(tls_http(fx.s->gateway_port, "POST",
                              "/api/v1/auth/signin", STACK_JSON_HEADER, body,
                              &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_int_equal(harness_header(&r, "Set-Cookie", cookie, sizeof(cookie)),
                     0);
    harness_http_free(&r);
    end = strchr(cookie, ';');
    assert_non_null(end);
    snprintf(out, len, "%.*s", (int)(end - cookie), cookie);
}

static void wss_live_upgrade(void **state)
{
    struct tlsclient c;
    char cookie[160], headers[512], reason[256];
    char *text;

    (void)state;
    signin_cookie(cookie, sizeof(cookie));
    snprintf(headers, sizeof(headers),
             "Origin: https://127.0.0.1:%d\r\nCookie: %s\r\n",
             fx.s->gateway_port, cookie);
    if (tlsclient_connect(&c, fx.s->gateway_port, 0, reason,
                          sizeof(reason)) != 0)
        fail_msg("TLS handshake failed: %s", reason);
    assert_int_equal(
        tlsclient_ws_upgrade(&c, fx.s->gateway_port, "/api/v1/live", headers),
        101);
    assert_int_equal(tlsclient_ws_send_text(&c, "{\"type\":\"ping\"}"), 0);
    text = tlsclient_ws_read_text(&c);
    assert_non_null(text);
    assert_string_equal(text, "{\"type\":\"pong\"}");
    free(text);
    tlsclient_close(&c);
}

static void wss_other_origin_403(void **state)
{
    struct tlsclient c;
    char cookie[160], headers[512];

    (void)state;
    signin_cookie(cookie, sizeof(cookie));
    snprintf(headers, sizeof(headers),
             "Origin: https://example.com\r\nCookie: %s\r\n", cookie);
    assert_int_equal(tlsclient_connect(&c, fx.s->gateway_port, 0, NULL, 0),
                     0);
    assert_int_equal(
        tlsclient_ws_upgrade(&c, fx.s->gateway_port, "/api/v1/live", headers),
        403);
    tlsclient_close(&c);
}

/* Number of lines of path that contain needle. */
static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    int count = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        count += strstr(line, needle) != NULL;
    fclose(f);
    return count;
}

static void plain_http_to_tls_port_fails(void **state)
{
    struct http_reply r;

    (void)state;
    /* civetweb ends the connection when the TLS handshake fails, so no
     * HTTP response comes, and it comes quickly. */
    for (int i = 0; i < 3; i++) {
        double start = now_s();
        assert_int_equal(harness_http(fx.s->gateway_port, "GET",
                                      "/api/v1/health", NULL, NULL, &r),
                         -1);
        assert_int_equal(r.status, 0);
        assert_true(now_s() - start < 5.0);
    }
    /* The gateway still serves TLS clients afterwards. */
    assert_int_equal(wait_tls_health(fx.s->gateway_port, 0), 200);
    /* Three failures within TLS_HANDSHAKE_LOG_INTERVAL_MS: one log line. */
    assert_int_equal(count_lines(fx.s->gateway_log, "TLS handshake failed"),
                     1);
}

static void tls_1_1_rejected(void **state)
{
    struct tlsclient c;
    char reason[256] = "";

    (void)state;
    assert_int_equal(tlsclient_connect(&c, fx.s->gateway_port,
                                       TLS1_1_VERSION, reason, sizeof(reason)),
                     -1);
    /* The server's protocol_version alert, not a client-side refusal. */
    assert_non_null(strstr(reason, "protocol version"));
    assert_int_equal(tlsclient_connect(&c, fx.s->gateway_port,
                                       TLS1_2_VERSION, reason, sizeof(reason)),
                     0);
    assert_string_equal(SSL_get_version(c.ssl), "TLSv1.2");
    tlsclient_close(&c);
}

/* Run a gateway that must fail to start with cert and key. Checks that it
 * exited with status 1 and that its log contains each of expected[]
 * (count strings). */
static void assert_start_fails(const char *cert, const char *key,
                               const char *log_name,
                               const char *const expected[], size_t count)
{
    char log[PATH_MAX + 32];
    int status;

    snprintf(log, sizeof(log), "%s/%s", fx.s->dir, log_name);
    status = wait_exit(spawn_gateway(cert, key, NULL, log, NULL), 10000);
    if (status == -1)
        fail_msg("the gateway was still running after 10 s; log in %s", log);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    for (size_t i = 0; i < count; i++)
        if (!harness_file_contains(log, expected[i]))
            fail_msg("'%s' not in the log %s", expected[i], log);
}

static void mismatched_key_fails_start(void **state)
{
    const char *expected[] = {fx.other_key, fx.cert, "does not match"};

    (void)state;
    assert_start_fails(fx.cert, fx.other_key, "mismatch.log", expected, 3);
}

static void missing_cert_fails_start(void **state)
{
    char missing[PATH_MAX + 32];

    (void)state;
    snprintf(missing, sizeof(missing), "%s/no-such-cert.pem", fx.s->dir);
    const char *expected[] = {missing, "not found", "--tls-cert"};
    assert_start_fails(missing, fx.key, "missing.log", expected, 3);
}

static void key_as_cert_fails_start(void **state)
{
    const char *expected[] = {fx.key, "not a valid PEM certificate"};

    (void)state;
    assert_start_fails(fx.key, fx.key, "key-as-cert.log", expected, 2);
}

static void plain_http_redirected(void **state)
{
    char redirect[64], log[PATH_MAX + 32], location[512], want[512];
    struct http_reply r;
    int plain = free_port(), port, status;
    pid_t pid;

    (void)state;
    assert_true(plain > 0);
    snprintf(redirect, sizeof(redirect), "127.0.0.1:%d", plain);
    snprintf(log, sizeof(log), "%s/redirect.log", fx.s->dir);
    pid = spawn_gateway(fx.cert, fx.key, redirect, log, &port);
    assert_true(port > 0);
    assert_int_equal(wait_tls_health(port, 10000), 200);

    assert_int_equal(harness_http(plain, "GET", "/models/7?tab=a%20b", NULL,
                                  NULL, &r),
                     0);
    assert_int_equal(r.status, 308);
    assert_int_equal(
        harness_header(&r, "Location", location, sizeof(location)), 0);
    snprintf(want, sizeof(want), "https://127.0.0.1:%d/models/7?tab=a%%20b",
             port);
    assert_string_equal(location, want);
    harness_http_free(&r);

    /* HTTP/1.0 without a Host header: no host to redirect to. */
    assert_int_equal(status_without_host(plain), 400);

    status = harness_stop(pid, SIGTERM, 10000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(https_serves_ui_file),
        cmocka_unit_test(https_health_ok),
        cmocka_unit_test(https_signin_secure_cookie),
        cmocka_unit_test(wss_live_upgrade),
        cmocka_unit_test(wss_other_origin_403),
        cmocka_unit_test(plain_http_to_tls_port_fails),
        cmocka_unit_test(tls_1_1_rejected),
        cmocka_unit_test(mismatched_key_fails_start),
        cmocka_unit_test(missing_cert_fails_start),
        cmocka_unit_test(key_as_cert_fails_start),
        cmocka_unit_test(plain_http_redirected),
    };

    setenv("TRAINYARD_PWHASH", "fast", 1);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
