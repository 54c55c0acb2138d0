/*
 * The test WebSocket client (see wsclient.h). Received bytes collect in a
 * growing buffer, and a frame is taken from its front once it is whole,
 * so reads never block past their deadline: poll(2) waits for the socket
 * with the time left. Frames to the server are masked with a fresh random
 * key each, as RFC 6455 requires of clients.
 */
#include "wsclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The GUID that RFC 6455 appends to the key for Sec-WebSocket-Accept. */
#define WEBSOCKET_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- SHA-1 (FIPS 180-4, section 6.1) ------------------------------------- */

static uint32_t rotate_left(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const unsigned char block[64])
{
    uint32_t w[80], a, b, c, d, e;

    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)block[4 * t] << 24 | (uint32_t)block[4 * t + 1] << 16 |
               (uint32_t)block[4 * t + 2] << 8 | (uint32_t)block[4 * t + 3];
    for (int t = 16; t < 80; t++)
        w[t] = rotate_left(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    a = h[0];
    b = h[1];
    c = h[2];
    d = h[3];
    e = h[4];
    for (int t = 0; t < 80; t++) {
        uint32_t f, k;
        if (t < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;
        } else if (t < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (t < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }
        uint32_t temp = rotate_left(a, 5) + f + e + k + w[t];
        e = d;
        d = c;
        c = rotate_left(b, 30);
        b = a;
        a = temp;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void wsclient_sha1(const void *data, size_t len, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476,
                     0xc3d2e1f0};
    const unsigned char *p = data;
    unsigned char tail[128];
    size_t full = len / 64 * 64, rest = len - full, tail_len;
    uint64_t bits = (uint64_t)len * 8;

    for (size_t i = 0; i < full; i += 64)
        sha1_block(h, p + i);
    /* Padding: 0x80, zeros, and the length in bits, big-endian. */
    memset(tail, 0, sizeof(tail));
    memcpy(tail, p + full, rest);
    tail[rest] = 0x80;
    tail_len = rest + 1 + 8 <= 64 ? 64 : 128;
    for (int i = 0; i < 8; i++)
        tail[tail_len - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t i = 0; i < tail_len; i += 64)
        sha1_block(h, tail + i);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

/* ---- sockets ------------------------------------------------------------- */

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int send_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int wsclient_enable_timestamps(struct wsclient *ws)
{
    int on = 1;

    if (setsockopt(ws->fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) != 0)
        return -1;
    ws->timestamps = 1;
    return 0;
}

/* recv, and with timestamps the kernel's arrival time of the bytes. */
static ssize_t receive_bytes(struct wsclient *ws, void *buf, size_t len)
{
    union {
        char bytes[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {buf, len};
    struct msghdr msg = {0};
    ssize_t n;

    if (!ws->timestamps)
        return recv(ws->fd, buf, len, 0);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.bytes;
    msg.msg_controllen = sizeof(control.bytes);
    n = recvmsg(ws->fd, &msg, 0);
    if (n <= 0)
        return n;
    ws->last_arrival_ms = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL;
         c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            ws->last_arrival_ms =
                (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
        }
    }
    return n;
}

/* Receive more bytes into ws->buf, waiting until deadline (ms). Returns 1
 * when bytes came, 0 when time ran out, -1 at end of stream or error. */
static int receive_more(struct wsclient *ws, long deadline)
{
    struct pollfd pfd = {ws->fd, POLLIN, 0};
    ssize_t n;
    int ready;

    /* A signal, such as libFuzzer's SIGALRM for -timeout, interrupts
     * poll before the deadline. */
    do {
        long left = deadline - now_ms();
        ready = poll(&pfd, 1, left > 0 ? (int)left : 0);
    } while (ready < 0 && errno == EINTR);
    if (ready <= 0)
        return 0;
    if (ws->cap - ws->len < 65536) {
        size_t cap = ws->cap ? ws->cap * 2 : 131072;
        unsigned char *grown = realloc(ws->buf, cap + 1);
        if (grown == NULL)
            return -1;
        ws->buf = grown;
        ws->cap = cap;
    }
    do
        n = receive_bytes(ws, ws->buf + ws->len, ws->cap - ws->len);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    ws->len += (size_t)n;
    return 1;
}

static void consume(struct wsclient *ws, size_t n)
{
    memmove(ws->buf, ws->buf + n, ws->len - n);
    ws->len -= n;
}

/* ---- handshake ----------------------------------------------------------- */

/* Value of header name in the head of a response, or NULL. */
static const char *find_header(const char *head, const char *name, char *out,
                               size_t len)
{
    size_t name_len = strlen(name);

    for (const char *line = strstr(head, "\r\n"); line != NULL;
         line = strstr(line + 2, "\r\n")) {
        const char *start = line + 2;
        if (strncasecmp(start, name, name_len) != 0 || start[name_len] != ':')
            continue;
        start += name_len + 1;
        while (*start == ' ')
            start++;
        const char *end = strstr(start, "\r\n");
        size_t n = end ? (size_t)(end - start) : strlen(start);
        if (n >= len)
            n = len - 1;
        memcpy(out, start, n);
        out[n] = '\0';
        return out;
    }
    return NULL;
}

int wsclient_connect(struct wsclient *ws, int port, const char *path,
                     const char *extra_headers, int rcvbuf, char *body,
                     size_t body_len)
{
    struct sockaddr_in addr;
    unsigned char nonce[16], digest[20];
    char key[32], expected[32], accept[64], request[8192], *end;
    long deadline = now_ms() + 30000;
    int status = -1;

    memset(ws, 0, sizeof(*ws));
    if (body != NULL && body_len > 0)
        body[0] = '\0';
    ws->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (ws->fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(ws->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(ws->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        goto fail;

    randombytes_buf(nonce, sizeof(nonce));
    sodium_bin2base64(key, sizeof(key), nonce, sizeof(nonce),
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(request, sizeof(request),
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
             "Sec-WebSocket-Version: 13\r\n%s\r\n",
             path, port, key, extra_headers ? extra_headers : "");
    if (send_all(ws->fd, request, strlen(request)) != 0)
        goto fail;

    /* The response head, then for a refusal its body. */
    for (;;) {
        if (ws->len > 0) {
            ws->buf[ws->len] = '\0';
            end = strstr((char *)ws->buf, "\r\n\r\n");
            if (end != NULL)
                break;
        }
        if (receive_more(ws, deadline) != 1)
            goto fail;
    }
    if (sscanf((char *)ws->buf, "HTTP/1.%*d %d", &status) != 1) {
        status = -1;
        goto fail;
    }
    size_t head_len = (size_t)(end - (char *)ws->buf) + 4;
    char *head = strndup((char *)ws->buf, head_len);
    if (head == NULL) {
        status = -1;
        goto fail;
    }
    consume(ws, head_len);

    if (status != 101) {
        char value[32];
        long want = find_header(head, "Content-Length", value, sizeof(value))
                        ? atol(value)
                        : -1;
        while ((want < 0 || (long)ws->len < want) &&
               receive_more(ws, deadline) == 1)
            ;
        if (body != NULL && body_len > 0) {
            size_t n = ws->len < body_len - 1 ? ws->len : body_len - 1;
            memcpy(body, ws->buf, n);
            body[n] = '\0';
        }
        free(head);
        goto fail;
    }

    /* Sec-WebSocket-Accept: base64(SHA-1(key + GUID)). */
    snprintf(request, sizeof(request), "%s%s", key, WEBSOCKET_GUID);
    wsclient_sha1(request, strlen(request), digest);
    sodium_bin2base64(expected, sizeof(expected), digest, sizeof(digest),
                      sodium_base64_VARIANT_ORIGINAL);
    if (find_header(head, "Sec-WebSocket-Accept", accept, sizeof(accept)) ==
            NULL ||
        strcmp(accept, expected) != 0) {
        fprintf(
            stderr,
            "wsclient: wrong Sec-WebSocket-Accept '%s', "
            "expected '%s'\n",
            find_header(head, "Sec-WebSocket-Accept", accept, sizeof(accept))
                ? accept
                : "(none)",
            expected);
        free(head);
        status = -1;
        goto fail;
    }
    free(head);
    return 101;

fail:
    wsclient_close(ws);
    return status;
}

/* ---- frames -------------------------------------------------------------- */

int wsclient_send_frame(struct wsclient *ws, int opcode, int fin,
                        const void *data, size_t len)
{
    unsigned char header[14], mask[4], *masked;
    size_t header_len = 2;
    int rc;

    header[0] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        header[1] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        header[1] = 0x80 | 126;
        header[2] = (unsigned char)(len >> 8);
        header[3] = (unsigned char)len;
        header_len = 4;
    } else {
        header[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            header[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        header_len = 10;
    }
    randombytes_buf(mask, sizeof(mask));
    memcpy(header + header_len, mask, 4);
    header_len += 4;

    masked = malloc(len + 1);
    if (masked == NULL)
        return -1;
    for (size_t i = 0; i < len; i++)
        masked[i] = ((const unsigned char *)data)[i] ^ mask[i & 3];
    rc = send_all(ws->fd, header, header_len);
    if (rc == 0 && len > 0)
        rc = send_all(ws->fd, masked, len);
    free(masked);
    if (opcode == WSCLIENT_CLOSE && rc == 0)
        ws->close_sent = 1;
    return rc;
}

int wsclient_send_text(struct wsclient *ws, const char *text)
{
    return wsclient_send_frame(ws, WSCLIENT_TEXT, 1, text, strlen(text));
}

/* Take one whole frame from the front of ws->buf; returns 1, or 0 when
 * it is not all there yet, or -1 when it is too large. */
static int parse_frame(struct wsclient *ws, struct wsclient_frame *frame)
{
    const unsigned char *b = ws->buf;
    size_t header_len = 2;
    uint64_t len;
    int masked;

    if (ws->len < 2)
        return 0;
    masked = (b[1] & 0x80) != 0;
    len = b[1] & 0x7f;
    if (len == 126) {
        if (ws->len < 4)
            return 0;
        len = (uint64_t)b[2] << 8 | b[3];
        header_len = 4;
    } else if (len == 127) {
        if (ws->len < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | b[2 + i];
        header_len = 10;
    }
    if (len > (uint64_t)64 * 1024 * 1024)
        return -1;
    if (masked)
        header_len += 4;
    if (ws->len < header_len + len)
        return 0;

    frame->opcode = b[0] & 0x0f;
    frame->fin = (b[0] & 0x80) != 0;
    frame->len = (size_t)len;
    frame->data = malloc(frame->len + 1);
    if (frame->data == NULL)
        return -1;
    memcpy(frame->data, b + header_len, frame->len);
    if (masked)
        for (size_t i = 0; i < frame->len; i++)
            frame->data[i] ^= b[header_len - 4 + (i & 3)];
    frame->data[frame->len] = '\0';
    consume(ws, header_len + frame->len);
    return 1;
}

int wsclient_read_frame(struct wsclient *ws, int timeout_ms,
                        struct wsclient_frame *frame)
{
    long deadline = now_ms() + timeout_ms;

    memset(frame, 0, sizeof(*frame));
    if (ws->fd < 0)
        return -1;
    for (;;) {
        int rc = parse_frame(ws, frame);
        if (rc != 0)
            return rc;
        rc = receive_more(ws, deadline);
        if (rc == 0)
            return 0;
        if (rc < 0) {
            ws->closed = 1;
            return -1;
        }
    }
}

char *wsclient_read_text(struct wsclient *ws, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    char *message = NULL;
    size_t message_len = 0;

    for (;;) {
        struct wsclient_frame f;
        long left = deadline - now_ms();
        int rc = wsclient_read_frame(ws, left > 0 ? (int)left : 0, &f);

        if (rc <= 0) {
            free(message);
            return NULL;
        }
        switch (f.opcode) {
        case WSCLIENT_PING:
            ws->pings++;
            wsclient_send_frame(ws, WSCLIENT_PONG, 1, f.data, f.len);
            break;
        case WSCLIENT_CLOSE:
            ws->closed = 1;
            if (f.len >= 2) {
                ws->close_code = f.data[0] << 8 | f.data[1];
                snprintf(ws->close_reason, sizeof(ws->close_reason), "%.*s",
                         (int)(f.len - 2), (const char *)f.data + 2);
            }
            if (!ws->close_sent)
                wsclient_send_frame(ws, WSCLIENT_CLOSE, 1, f.data,
                                    f.len >= 2 ? 2 : 0);
            free(f.data);
            free(message);
            return NULL;
        case WSCLIENT_TEXT:
        case WSCLIENT_CONTINUATION: {
            char *grown = realloc(message, message_len + f.len + 1);
            if (grown == NULL) {
                free(f.data);
                free(message);
                return NULL;
            }
            message = grown;
            memcpy(message + message_len, f.data, f.len);
            message_len += f.len;
            message[message_len] = '\0';
            if (f.fin) {
                free(f.data);
                return message;
            }
            break;
        }
        default:
            break;
        }
        free(f.data);
    }
}

void wsclient_close(struct wsclient *ws)
{
    if (ws->fd >= 0)
        close(ws->fd);
    ws->fd = -1;
    free(ws->buf);
    ws->buf = NULL;
    ws->len = ws->cap = 0;
}
