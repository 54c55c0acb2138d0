/*
 * libFuzzer target for whole REST requests. Each input is one HTTP
 * request, sent over TCP to the real gateway (gateway/api.c and the
 * handlers of gateway/api_*.c), which forwards it to the real backend
 * (backend/daemon/proto.c and its ops). Both run in this process on
 * 127.0.0.1 with ephemeral ports.
 *
 * Input format:
 *
 *   byte 0   credential, low 3 bits: 0 none, 1 the user's session cookie
 *            and CSRF token, 2 the user's cookie without the CSRF token,
 *            3 the user's API key, 4 the admin's cookie and CSRF token,
 *            5 to 7 none
 *   byte 1   Content-Type, low 3 bits: 0 application/json, 1 none,
 *            2 application/zip, 3 application/json; charset=utf-8,
 *            4 text/plain, 5 APPLICATION/JSON, 6 application/jsonp,
 *            7 application/x-www-form-urlencoded
 *   byte 2   body framing, low 2 bits: 0 Content-Length, 1 chunked (two
 *            chunks), 2 neither header and no body, 3 a Content-Length
 *            API_BODY_MAX bytes larger than the body that is sent
 *   then     METHOD SP PATH-AND-QUERY LF BODY
 *
 * The method must be one that civetweb 1.15 accepts (its http_methods
 * table, copied in known_methods below), or the input is skipped. In the
 * path, "$SHARE" is replaced by the token of a share link of model 1 that
 * the target signs at start, and every byte that cannot appear in a
 * request target (controls, space, '#', bytes >= 0x7f) is percent-encoded,
 * so the request line is always well-formed. A path that does not start
 * with '/' gets one. Without a LF the body is empty.
 *
 * Set-up, once per process, by the stack that fuzz targets share
 * (support/fuzz_stack.c): a data folder under $TMPDIR (default /tmp),
 * removed at exit, with a database seeded through the backend's own
 * functions: an admin (account 1) and a user (account 2), both on the Pro
 * plan with $1000.00 of credit, and a third account (3) whose objects the
 * others must never reach. The two sample data sets (1 classify, 2
 * detect) belong to no account and data set 3 to account 3. Model 1 (the
 * user's) has a completed session with best and last checkpoints, and a
 * billed epoch. Model 2 is the user's, model 3 the admin's, and model 4,
 * account 3's, has a checkpoint too. The backend runs server_run on a
 * thread of its own, and the gateway runs upstream_start and http_start.
 * The user and the admin sign in through POST /api/v1/auth/signin, and
 * the user creates an API key and a share link through the API.
 *
 * Training never starts a trainer, because the backend's session
 * supervisor runs with an executor whose start fails. A training.start
 * or resume that the API accepts launches at the next tick and fails to
 * start, and the session becomes failed, as when the train program is
 * missing.
 *
 * State carries over between inputs: the database keeps what each
 * request created. After each input the target restores what inputs can
 * take away from the seeded accounts: a session that signed out or an
 * API key that was revoked is created again, a plan is set back to Pro,
 * a balance under $100.00 gets $1000.00 of credit, and a deleted model
 * 1 to 4 is restored. A session token or API key that the input itself
 * contains is replaced as well (retire_exposed). So each input is one
 * request against the seeded accounts, and a crash usually reproduces
 * from the input alone. An input that names an object made by an
 * earlier input, such as model 5, may need those inputs first.
 * FUZZ_REST_TRACE=1 in the environment prints each request and its
 * status, with the body of each error.
 *
 * Checks, besides the sanitizers, that abort so that libFuzzer saves the
 * input:
 *   - a complete, well-formed HTTP/1.1 response arrives within
 *     RESPONSE_TIMEOUT_MS (so the gateway never hangs), with a status
 *     line, CRLF-ended header lines and a body that matches its framing;
 *   - every response of api_handle (recognized by a Cache-Control
 *     header of exactly "no-store", where civetweb's own responses send
 *     a longer value) has a Content-Length or status 204, and a status
 *     of 200, 201, 202 or 204, or the status that api_status_for_code
 *     gives its error code, with the JSON body {"error": {"code",
 *     "message"}}; a 405 has Allow;
 *   - no response is 500 (internal) or 503 (backend_unavailable or
 *     too_many_connections). The backend runs in this process and stays
 *     up, and one request of at most libFuzzer's -max_len bytes cannot
 *     fill the disk or exhaust memory, so each is a bug. A disk that
 *     fills up during a long run would show as 500s too: free space
 *     and run the input again;
 *   - on a path that civetweb does not rewrite (see plain_path), the
 *     route of routes.c decides the outcome: 404 or 405 without a route,
 *     401 without credentials on a user or admin route, 403 for the user
 *     on an admin route or for a cookie without its CSRF token on a CSRF
 *     route (413 may come first on JSON routes), never 401 for a seeded
 *     credential, and never a 2xx on account 3's model, data set or API
 *     key;
 *   - no response contains a seeded session token or API key.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "auth.h"
#include "clock.h"
#include "daemon/auth_store.h"
#include "fuzz_stack.h"
#include "live.h"
#include "routes.h"

/* Maximum wait for a whole response. libFuzzer's -timeout in
 * scripts/fuzz.sh is 25 s, so a hang is reported here first, with the
 * request. The gateway waits up to API_BACKEND_TIMEOUT_MS (30 s) for the
 * backend, so a stalled backend shows up here too. */
#define RESPONSE_TIMEOUT_MS 20000
/* Largest response read: the seeded checkpoints are well under it. */
#define RESPONSE_MAX (8 << 20)
/* Maximum length of a request target after percent-encoding. civetweb
 * rejects request headers over its max_request_size (16 KiB by
 * default). */
#define TARGET_MAX 4096

enum credential {
    CRED_NONE,
    CRED_USER,
    CRED_USER_NO_CSRF,
    CRED_USER_KEY,
    CRED_ADMIN,
};

/* What fuzz_rest adds to the stack's seeded state: the user's API key
 * and a share link of model 1, both made through the API. */
static struct {
    char user_key[AUTH_APIKEY_LEN + 1];
    int64_t user_key_id;
    char share_token[ROUTE_TOKEN_MAX + 1];
} fx;

/* What is known about the request being checked, for failure reports. */
struct request {
    enum credential cred;
    const char *method;
    const char *target;
    const char *content_type; /* NULL: none sent */
    int framing;
    const char *body;
    size_t body_len;
};

struct response {
    char *data; /* everything read, NUL-terminated */
    size_t len;
    int status;
    size_t head_len; /* status line and headers with the blank line */
    const char *body;
    size_t body_len;
    char *decoded; /* the body of a chunked response, or NULL */
};

/* 1 when FUZZ_REST_TRACE is set: print each request and its status. */
static int trace;
static const struct request *current_request;
static const struct response *current_response;

/* ---- Failures ------------------------------------------------------------ */

/* The report hook of fuzz_stack: the request and response being checked,
 * for fuzz_fail. */
static void report_request(void)
{
    const struct request *req = current_request;
    const struct response *resp = current_response;

    if (req != NULL) {
        fprintf(stderr,
                "request: credential %d, %s %s, Content-Type %s, "
                "framing %d\n",
                (int)req->cred, req->method, req->target,
                req->content_type ? req->content_type : "(none)", req->framing);
        fuzz_print_excerpt("request body", req->body, req->body_len);
    }
    if (resp != NULL && resp->data != NULL)
        fuzz_print_excerpt("response", resp->data, resp->len);
}

/* ---- HTTP ---------------------------------------------------------------- */

/* The methods that civetweb 1.15 accepts (http_methods in its
 * civetweb.c). It rejects any other with 400 before a handler runs. */
static const char *const known_methods[] = {
    "GET",     "POST",    "PUT",       "DELETE",   "HEAD",
    "OPTIONS", "CONNECT", "PATCH",     "PROPFIND", "MKCOL",
    "LOCK",    "UNLOCK",  "PROPPATCH", "REPORT",   NULL,
};

/* Content-Type of each value of byte 1; NULL sends none. */
static const char *const content_types[8] = {
    "application/json",                  /* 0 */
    NULL,                                /* 1 */
    "application/zip",                   /* 2 */
    "application/json; charset=utf-8",   /* 3 */
    "text/plain",                        /* 4 */
    "APPLICATION/JSON",                  /* 5 */
    "application/jsonp",                 /* 6 */
    "application/x-www-form-urlencoded", /* 7 */
};

enum framing {
    FRAMING_LENGTH,
    FRAMING_CHUNKED,
    FRAMING_NONE,
    FRAMING_LENGTH_OVER, /* declares API_BODY_MAX bytes more than sent */
};

struct buffer {
    char *data;
    size_t len, cap;
};

static void buffer_add(struct buffer *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = (b->len + len + 1) * 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL)
            fuzz_fail("out of memory for %zu bytes", cap);
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void buffer_printf(struct buffer *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void buffer_printf(struct buffer *b, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(text))
        fuzz_fail("request header line over %zu bytes", sizeof(text));
    buffer_add(b, text, (size_t)n);
}

/* The request's bytes: request line, headers of the credential, content
 * type and framing, and the body. */
static void build_request(const struct request *req, struct buffer *out)
{
    const struct fuzz_browser *b =
        req->cred == CRED_ADMIN ? &fuzz_stack.admin : &fuzz_stack.user;
    size_t half = req->body_len / 2;

    buffer_printf(out, "%s ", req->method);
    buffer_add(out, req->target, strlen(req->target));
    buffer_printf(out,
                  " HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                  "Connection: close\r\n",
                  fuzz_stack.gateway_port);
    if (req->cred == CRED_USER || req->cred == CRED_USER_NO_CSRF ||
        req->cred == CRED_ADMIN)
        buffer_printf(out, "Cookie: " AUTH_COOKIE_NAME "=%s\r\n", b->token);
    if (req->cred == CRED_USER || req->cred == CRED_ADMIN)
        buffer_printf(out, AUTH_CSRF_HEADER ": %s\r\n", b->csrf);
    if (req->cred == CRED_USER_KEY)
        buffer_printf(out, "Authorization: Bearer %s\r\n", fx.user_key);
    if (req->content_type != NULL)
        buffer_printf(out, "Content-Type: %s\r\n", req->content_type);

    switch (req->framing) {
    case FRAMING_LENGTH:
        buffer_printf(out, "Content-Length: %zu\r\n\r\n", req->body_len);
        buffer_add(out, req->body, req->body_len);
        break;
    case FRAMING_CHUNKED:
        buffer_printf(out, "Transfer-Encoding: chunked\r\n\r\n");
        if (half > 0) {
            buffer_printf(out, "%zx\r\n", half);
            buffer_add(out, req->body, half);
            buffer_add(out, "\r\n", 2);
        }
        if (req->body_len > half) {
            buffer_printf(out, "%zx\r\n", req->body_len - half);
            buffer_add(out, req->body + half, req->body_len - half);
            buffer_add(out, "\r\n", 2);
        }
        buffer_add(out, "0\r\n\r\n", 5);
        break;
    case FRAMING_NONE:
        buffer_add(out, "\r\n", 2);
        break;
    default:
        buffer_printf(out, "Content-Length: %zu\r\n\r\n",
                      req->body_len + API_BODY_MAX);
        buffer_add(out, req->body, req->body_len);
        break;
    }
}

/* Send text on a new connection to the gateway, close the sending side,
 * and read everything until the gateway closes the connection. */
static void exchange(const struct buffer *text, struct response *resp)
{
    struct sockaddr_in addr;
    struct timeval tv = {RESPONSE_TIMEOUT_MS / 1000, 0};
    struct buffer in = {NULL, 0, 0};
    int64_t deadline = clock_monotonic_ms() + RESPONSE_TIMEOUT_MS;
    size_t sent = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        fuzz_fail("socket: %s", strerror(errno));
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)fuzz_stack.gateway_port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        fuzz_fail("cannot connect to the gateway: %s", strerror(errno));

    /* The gateway may respond and close before it reads the whole body,
     * as it does for a declared length over its limit, so a reset while
     * sending ends the sending but not the test. */
    while (sent < text->len) {
        ssize_t n = send(fd, text->data + sent, text->len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            fuzz_fail("sending the request timed out after %d ms",
                      RESPONSE_TIMEOUT_MS);
        if (n < 0)
            break;
        sent += (size_t)n;
    }
    shutdown(fd, SHUT_WR);

    buffer_add(&in, "", 0);
    resp->data = in.data;
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int64_t left = deadline - clock_monotonic_ms();
        char chunk[65536];
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            resp->data = in.data;
            resp->len = in.len;
            fuzz_fail("no complete response within %d ms", RESPONSE_TIMEOUT_MS);
        }
        n = recv(fd, chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* end, or a reset: parse_response judges the rest */
        buffer_add(&in, chunk, (size_t)n);
        if (in.len > RESPONSE_MAX)
            fuzz_fail("response over %d bytes", RESPONSE_MAX);
    }
    close(fd);
    resp->data = in.data;
    resp->len = in.len;
}

/* The first CRLF in [p, end), or end. */
static const char *find_crlf(const char *p, const char *end)
{
    const char *crlf =
        end - p >= 2 ? memmem(p, (size_t)(end - p), "\r\n", 2) : NULL;

    return crlf != NULL ? crlf : end;
}

/* Copy the value of header name into out, without surrounding blanks;
 * returns 1 when the response has it. The head must have passed
 * check_head. */
static int header_get(const struct response *resp, const char *name, char *out,
                      size_t len)
{
    const char *end = resp->data + resp->head_len - 2;
    const char *line = find_crlf(resp->data, end) + 2;
    size_t name_len = strlen(name);

    while (line < end) {
        const char *eol = find_crlf(line, end);
        if (eol - line > (ptrdiff_t)name_len && line[name_len] == ':' &&
            strncasecmp(line, name, name_len) == 0) {
            const char *v = line + name_len + 1;
            const char *v_end = eol;
            while (v < v_end && (*v == ' ' || *v == '\t'))
                v++;
            while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
                v_end--;
            snprintf(out, len, "%.*s", (int)(v_end - v), v);
            return 1;
        }
        line = eol + 2;
    }
    return 0;
}

static int is_token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

/* Check the status line and each header line. */
static void check_head(struct response *resp)
{
    const char *d = resp->data, *end = d + resp->head_len - 2, *line;

    if (resp->head_len < 16 || memcmp(d, "HTTP/1.1 ", 9) != 0 || d[9] < '1' ||
        d[9] > '5' || d[10] < '0' || d[10] > '9' || d[11] < '0' ||
        d[11] > '9' || d[12] != ' ')
        fuzz_fail("the status line is not 'HTTP/1.1 NNN reason'");
    resp->status = (d[9] - '0') * 100 + (d[10] - '0') * 10 + (d[11] - '0');
    for (line = d; line < end;) {
        const char *eol = find_crlf(line, end);
        const char *colon = line;

        for (const char *c = line; c < eol; c++)
            if (*c == '\r' || *c == '\n' || *c == '\0')
                fuzz_fail("a response header line holds a CR, LF or NUL byte");
        if (line != d) {
            while (colon < eol && is_token_char((unsigned char)*colon))
                colon++;
            if (colon == line || colon == eol || *colon != ':')
                fuzz_fail("a response header line is not 'Name: value'");
        }
        line = eol + 2;
    }
}

/* Decode a chunked body into resp->decoded. */
static void decode_chunked(struct response *resp, const char *p,
                           const char *end)
{
    struct buffer out = {NULL, 0, 0};

    buffer_add(&out, "", 0);
    for (;;) {
        char *after;
        unsigned long size = strtoul(p, &after, 16);
        const char *eol = after;

        if (after == p)
            fuzz_fail("a response chunk has no size");
        while (eol + 1 < end && !(eol[0] == '\r' && eol[1] == '\n'))
            eol++;
        if (eol + 1 >= end)
            fuzz_fail("a response chunk size line does not end");
        p = eol + 2;
        if (size == 0)
            break;
        if ((size_t)(end - p) < size + 2 || p[size] != '\r' ||
            p[size + 1] != '\n')
            fuzz_fail("a response chunk is shorter than its size");
        buffer_add(&out, p, size);
        p += size + 2;
    }
    /* Trailer lines, then the empty line. */
    while (p + 1 < end && !(p[0] == '\r' && p[1] == '\n')) {
        const char *eol = find_crlf(p, end);
        if (eol == end)
            fuzz_fail("the chunked response's trailer does not end");
        p = eol + 2;
    }
    if (p + 2 != end)
        fuzz_fail("%zd bytes follow the chunked response body",
                  (ssize_t)(end - p - 2));
    resp->decoded = out.data;
    resp->body = out.data;
    resp->body_len = out.len;
}

/* Check that the response is one well-formed HTTP/1.1 response, and find
 * its status and body. */
static void parse_response(const struct request *req, struct response *resp)
{
    const char *blank, *rest;
    char length[32], encoding[64];
    int has_length, chunked;
    size_t rest_len;

    if (resp->len == 0)
        fuzz_fail("the gateway closed the connection without a response");
    blank = memmem(resp->data, resp->len, "\r\n\r\n", 4);
    if (blank == NULL)
        fuzz_fail("the response headers do not end with an empty line");
    resp->head_len = (size_t)(blank - resp->data) + 4;
    check_head(resp);

    rest = resp->data + resp->head_len;
    rest_len = resp->len - resp->head_len;
    has_length = header_get(resp, "Content-Length", length, sizeof(length));
    chunked = header_get(resp, "Transfer-Encoding", encoding, sizeof(encoding));
    if (has_length && chunked)
        fuzz_fail("the response has both Content-Length and Transfer-Encoding");
    if (strcmp(req->method, "HEAD") == 0 || resp->status == 204 ||
        resp->status == 304 || resp->status < 200) {
        if (rest_len != 0)
            fuzz_fail("a %d response to %s has a %zu-byte body", resp->status,
                      req->method, rest_len);
        resp->body = rest;
        resp->body_len = 0;
        return;
    }
    if (chunked) {
        if (strcasecmp(encoding, "chunked") != 0)
            fuzz_fail("unknown Transfer-Encoding '%s'", encoding);
        decode_chunked(resp, rest, rest + rest_len);
        return;
    }
    if (has_length) {
        char *end;
        unsigned long long n = strtoull(length, &end, 10);
        if (length[0] < '0' || length[0] > '9' || *end != '\0')
            fuzz_fail("invalid Content-Length '%s'", length);
        if (n != rest_len)
            fuzz_fail("Content-Length is %llu but the body has %zu bytes", n,
                      rest_len);
    }
    resp->body = rest;
    resp->body_len = rest_len;
}

/* ---- Checks -------------------------------------------------------------- */

static int status_is_success(int status)
{
    return status == 200 || status == 201 || status == 202 || status == 204;
}

static int content_type_is_json(const struct response *resp)
{
    char type[128];

    return header_get(resp, "Content-Type", type, sizeof(type)) &&
           strncasecmp(type, "application/json", 16) == 0;
}

/* Check a response of api_handle: its status, headers and body. */
static void check_api_response(const struct request *req,
                               const struct response *resp)
{
    const cJSON *error, *code, *message;
    char value[256];
    int status = resp->status, expected;
    int head = strcmp(req->method, "HEAD") == 0;
    cJSON *body;

    if (status != 204 &&
        !header_get(resp, "Content-Length", value, sizeof(value)))
        fuzz_fail("an API response with status %d has no Content-Length",
                  status);
    if (status == 204)
        return;
    if (status_is_success(status) &&
        header_get(resp, "Content-Disposition", value, sizeof(value))) {
        if (strncmp(value, "attachment;", 11) != 0)
            fuzz_fail("Content-Disposition '%s' is not an attachment", value);
        return;
    }
    if (!status_is_success(status) && (status < 400 || status > 599))
        fuzz_fail("an API response has status %d", status);
    if (!content_type_is_json(resp))
        fuzz_fail("an API response with status %d is not JSON", status);
    if (status == 405 && !header_get(resp, "Allow", value, sizeof(value)))
        fuzz_fail("a 405 response has no Allow header");
    if (head)
        return; /* a HEAD response has no body to read */

    body = cJSON_ParseWithLength(resp->body, resp->body_len);
    if (body == NULL)
        fuzz_fail("an API response body is not JSON");
    if (status_is_success(status)) {
        cJSON_Delete(body);
        return;
    }
    error = cJSON_GetObjectItemCaseSensitive(body, "error");
    code = cJSON_GetObjectItemCaseSensitive(error, "code");
    message = cJSON_GetObjectItemCaseSensitive(error, "message");
    if (!cJSON_IsObject(body) || !cJSON_IsString(code) ||
        !cJSON_IsString(message))
        fuzz_fail("an error response is not {\"error\": {\"code\", "
                  "\"message\"}}");
    expected = api_status_for_code(code->valuestring);
    if (expected == 500 && strcmp(code->valuestring, "internal") != 0)
        fuzz_fail("error code '%s' is not in the gateway's error table",
                  code->valuestring);
    if (expected != status)
        fuzz_fail("status %d with error code '%s', whose status is %d", status,
                  code->valuestring, expected);
    /* The backend runs in this process and stays up, so a 503 is a
     * lost or stalled backend connection; see the file comment on 500. */
    if (status == 500 || status == 503)
        fuzz_fail("%d %s: %s", status, code->valuestring, message->valuestring);
    cJSON_Delete(body);
}

/* Copy the path of target (before any '?') into out when civetweb
 * serves it unchanged: it starts with /api/v1/, holds only [A-Za-z0-9],
 * '/', '-', '_', '.' and '~', has no empty segment, and no '.' ends a
 * segment. civetweb percent-decodes the path, removes dot segments,
 * empty segments and a '.' at the end of a segment before it picks a
 * handler (remove_dot_segments in civetweb 1.15), so such a path reaches
 * api_handle as it is. Returns 1 for such a path, else 0. */
static int plain_path(const char *target, char *out, size_t len)
{
    size_t n = strcspn(target, "?");

    if (n >= len || strncmp(target, "/api/v1/", 8) != 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = target[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || strchr("/-_.~", c) != NULL;
        if (!ok || (c == '/' && i + 1 < n && target[i + 1] == '/') ||
            (c == '.' && (i + 1 == n || target[i + 1] == '/')))
            return 0;
    }
    memcpy(out, target, n);
    out[n] = '\0';
    return 1;
}

static void expect_status(const struct response *resp, int status,
                          const char *why)
{
    if (resp->status != status)
        fuzz_fail("status %d, expected %d: %s", resp->status, status, why);
}

static int route_is(const struct route *r, const char *prefix)
{
    return strncmp(r->pattern, prefix, strlen(prefix)) == 0;
}

/* Check the outcome that the route of a plain path (plain_path) decides,
 * in the order of the steps of api_handle (gateway/api.c). */
static void check_route(const struct request *req, const char *path,
                        const struct response *resp)
{
    char allow[128];
    int64_t id = 0;
    const struct route *r =
        route_find(api_routes, req->method, path, &id, allow, sizeof(allow));
    int over_limit = req->framing == FRAMING_LENGTH_OVER &&
                     req->body_len + API_BODY_MAX > API_BODY_MAX;

    if (r == NULL) {
        if (allow[0] != '\0')
            expect_status(resp, 405, "the path has no route for the method");
        else
            expect_status(resp, 404, "the path has no route");
        return;
    }
    if (r->json_body && over_limit) {
        expect_status(resp, 413, "the declared body is over API_BODY_MAX");
        return;
    }
    if (r->auth == ROUTE_PUBLIC)
        return;
    if (req->cred == CRED_NONE) {
        expect_status(resp, 401, "a user route without credentials");
        return;
    }
    if (resp->status == 401)
        fuzz_fail("a seeded credential was rejected");
    if (r->auth == ROUTE_ADMIN && req->cred != CRED_ADMIN) {
        expect_status(resp, 403,
                      "an admin route with the user's "
                      "credential");
        return;
    }
    if (r->csrf && req->cred == CRED_USER_NO_CSRF) {
        expect_status(resp, 403, "a CSRF route without the CSRF token");
        return;
    }
    if (!status_is_success(resp->status) || r->auth != ROUTE_USER)
        return;
    if ((route_is(r, "/api/v1/models/{id}") && id == FUZZ_OTHER_MODEL_ID) ||
        (route_is(r, "/api/v1/datasets/{id}") && id == FUZZ_OTHER_DATASET_ID) ||
        (route_is(r, "/api/v1/apikeys/{id}") && id == FUZZ_OTHER_KEY_ID))
        fuzz_fail("%s %s succeeded on an object of account %d", req->method,
                  r->pattern, FUZZ_OTHER_ID);
}

/* Fail when the response contains a seeded session token or API key that
 * the request did not contain: error messages may repeat the path, and
 * retire_exposed explains how inputs come to contain these strings. */
static void check_secrets(const struct request *req,
                          const struct response *resp)
{
    const char *secrets[] = {fuzz_stack.user.token, fuzz_stack.admin.token,
                             fx.user_key};

    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        size_t len = strlen(secrets[i]);

        if (len == 0 || strstr(req->target, secrets[i]) != NULL ||
            memmem(req->body, req->body_len, secrets[i], len) != NULL)
            continue;
        if (memmem(resp->data, resp->len, secrets[i], len) != NULL)
            fuzz_fail("the response contains a seeded credential");
    }
}

/* ---- One request --------------------------------------------------------- */

/* Send req, read the response and make every check. */
static void run_request(const struct request *req, struct response *resp)
{
    struct buffer text = {NULL, 0, 0};
    char path[TARGET_MAX + 1], cache[64];
    int is_api, plain;

    current_request = req;
    current_response = resp;
    build_request(req, &text);
    exchange(&text, resp);
    free(text.data);
    parse_response(req, resp);
    if (trace) {
        fprintf(stderr, "fuzz_rest: credential %d %s %s -> %d\n",
                (int)req->cred, req->method, req->target, resp->status);
        if (resp->status >= 400)
            fuzz_print_excerpt("response body", resp->body, resp->body_len);
    }
    check_secrets(req, resp);

    /* api.c sends "Cache-Control: no-store" with every response, and
     * civetweb's own responses send a longer value. */
    is_api = header_get(resp, "Cache-Control", cache, sizeof(cache)) &&
             strcmp(cache, "no-store") == 0;
    plain = plain_path(req->target, path, sizeof(path));
    if (plain && !is_api)
        fuzz_fail("a request to %s was not answered by the API", path);
    if (is_api)
        check_api_response(req, resp);
    if (plain)
        check_route(req, path, resp);
}

static void response_free(struct response *resp)
{
    free(resp->data);
    free(resp->decoded);
    memset(resp, 0, sizeof(*resp));
    current_request = NULL;
    current_response = NULL;
}

/* Make a set-up request that must get status; returns its JSON body. */
static cJSON *setup_request(enum credential cred, const char *method,
                            const char *target, const char *body, int status,
                            struct response *resp)
{
    struct request req = {
        cred,           method, target,      "application/json",
        FRAMING_LENGTH, body,   strlen(body)};
    cJSON *json;

    run_request(&req, resp);
    if (resp->status != status)
        fuzz_fail("set-up request %s %s got status %d, expected %d", method,
                  target, resp->status, status);
    json = cJSON_ParseWithLength(resp->body, resp->body_len);
    if (json == NULL)
        fuzz_fail("set-up request %s %s got no JSON body", method, target);
    return json;
}

static void copy_string(const cJSON *json, const char *name, char *out,
                        size_t len)
{
    const char *text =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, name));

    if (text == NULL || strlen(text) >= len)
        fuzz_fail("set-up response has no string '%s' of under %zu bytes", name,
                  len);
    memcpy(out, text, strlen(text) + 1);
}

static void setup_credentials(void)
{
    static const char share_prefix[] = "/api/v1/shared/";
    struct response resp = {0};
    char url[sizeof(share_prefix) + ROUTE_TOKEN_MAX];
    cJSON *json;

    json = setup_request(CRED_USER, "POST", "/api/v1/apikeys",
                         "{\"name\":\"fuzz\"}", 201, &resp);
    copy_string(json, "key", fx.user_key, sizeof(fx.user_key));
    fx.user_key_id = (int64_t)cJSON_GetNumberValue(
        cJSON_GetObjectItemCaseSensitive(json, "id"));
    cJSON_Delete(json);
    response_free(&resp);

    json = setup_request(CRED_USER, "POST", "/api/v1/models/1/share",
                         "{\"which\":\"best\",\"expires_in_s\":604800}", 201,
                         &resp);
    copy_string(json, "url", url, sizeof(url));
    if (strncmp(url, share_prefix, sizeof(share_prefix) - 1) != 0)
        fuzz_fail("share link '%s' is not under %s", url, share_prefix);
    snprintf(fx.share_token, sizeof(fx.share_token), "%s",
             url + sizeof(share_prefix) - 1);
    cJSON_Delete(json);
    response_free(&resp);
}

/* ---- Restoring the seeded accounts --------------------------------------- */

static void restore_key(void)
{
    struct auth_apikey key;
    struct error err = {0};
    int64_t now = clock_realtime_ms(), account;
    int rc;

    if (auth_apikey_lookup(&fuzz_stack.store, fx.user_key, now, &account,
                           &err) == 0)
        return;
    rc = auth_apikey_create(&fuzz_stack.store, FUZZ_USER_ID, "fuzz", now, &key,
                            &err);
    if (rc == -ENOSPC) {
        /* Inputs created the maximum number of keys of an account. */
        char sql[160];
        snprintf(sql, sizeof(sql),
                 "UPDATE api_keys SET revoked_at = %lld WHERE account_id = "
                 "%d AND revoked_at IS NULL",
                 (long long)now, FUZZ_USER_ID);
        if (store_exec(&fuzz_stack.store, sql, &err) != 0)
            fuzz_fail("revoking the user's API keys: %s", err.msg);
        rc = auth_apikey_create(&fuzz_stack.store, FUZZ_USER_ID, "fuzz", now,
                                &key, &err);
    }
    if (rc != 0)
        fuzz_fail("restoring the user's API key: %s", err.msg);
    memcpy(fx.user_key, key.key, sizeof(fx.user_key));
    fx.user_key_id = key.id;
}

/* End each seeded credential that the input contains, so that
 * restore_fixture replaces it: the sessions (fuzz_stack_retire_exposed)
 * and the user's API key. A replaced credential cannot appear in a
 * response unless the request contains it, which keeps check_secrets
 * meaningful. */
static void retire_exposed(const uint8_t *data, size_t size)
{
    struct auth_apikey key;
    struct error err = {0};

    fuzz_stack_retire_exposed(data, size);
    if (memmem(data, size, fx.user_key, strlen(fx.user_key)) != NULL &&
        auth_apikey_revoke(&fuzz_stack.store, FUZZ_USER_ID, fx.user_key_id,
                           clock_realtime_ms(), &key, &err) != 0)
        fuzz_fail("revoking an exposed API key: %s", err.msg);
}

/* Give back to the seeded accounts what an input can take away. */
static void restore_fixture(void)
{
    fuzz_stack_restore();
    restore_key();
}

/* ---- libFuzzer ----------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const struct fuzz_stack_options opt = {
        .name = "fuzz_rest",
        /* One live WebSocket: inputs never open one, and each allowed
         * connection costs civetweb a worker thread. */
        .live_connections = 1,
        .live_ping_interval_s = LIVE_PING_INTERVAL_DEFAULT_S,
        .report = report_request,
    };

    (void)argc;
    (void)argv;
    trace = getenv("FUZZ_REST_TRACE") != NULL;
    fuzz_stack_start(&opt);
    setup_credentials();
    return 0;
}

/* Copy the path line into target: "$SHARE" becomes the share token, and
 * bytes that a request target cannot hold are percent-encoded. Returns 0,
 * or -1 when the result is over TARGET_MAX bytes. */
static int build_target(const char *path, size_t len, char *target)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0, token_len = strlen(fx.share_token);

    if (len == 0 || path[0] != '/')
        target[n++] = '/';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];

        if (len - i >= 6 && memcmp(path + i, "$SHARE", 6) == 0) {
            if (n + token_len > TARGET_MAX)
                return -1;
            memcpy(target + n, fx.share_token, token_len);
            n += token_len;
            i += 5;
        } else if (c <= 0x20 || c >= 0x7f || c == '#') {
            if (n + 3 > TARGET_MAX)
                return -1;
            target[n++] = '%';
            target[n++] = hex[c >> 4];
            target[n++] = hex[c & 15];
        } else {
            if (n + 1 > TARGET_MAX)
                return -1;
            target[n++] = (char)c;
        }
    }
    target[n] = '\0';
    return 0;
}

static int method_known(const char *method)
{
    for (int i = 0; known_methods[i] != NULL; i++)
        if (strcmp(method, known_methods[i]) == 0)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data + 3, *end = (const char *)data + size;
    const char *space, *newline;
    char method[16], target[TARGET_MAX + 1];
    struct request req;
    struct response resp = {0};

    if (size < 3)
        return 0;
    space = memchr(p, ' ', (size_t)(end - p));
    if (space == NULL || space == p || space - p >= (ptrdiff_t)sizeof(method))
        return 0;
    memcpy(method, p, (size_t)(space - p));
    method[space - p] = '\0';
    if (!method_known(method))
        return 0;
    p = space + 1;
    newline = memchr(p, '\n', (size_t)(end - p));
    if (newline == NULL)
        newline = end;
    if (build_target(p, (size_t)(newline - p), target) != 0)
        return 0;

    memset(&req, 0, sizeof(req));
    req.cred = (data[0] & 7) <= CRED_ADMIN ? (enum credential)(data[0] & 7)
                                           : CRED_NONE;
    req.content_type = content_types[data[1] & 7];
    req.framing = data[2] & 3;
    req.method = method;
    req.target = target;
    req.body = newline < end ? newline + 1 : end;
    req.body_len = (size_t)(end - req.body);

    run_request(&req, &resp);
    response_free(&resp);
    retire_exposed(data, size);
    restore_fixture();
    return 0;
}
