/*
 * A small WebSocket client (RFC 6455) for tests against servers on
 * 127.0.0.1: the HTTP upgrade with a random Sec-WebSocket-Key and a
 * check of Sec-WebSocket-Accept, masked frames to the server, and
 * unmasked frames from it. It uses plain blocking sockets, one client
 * per thread, and no library beyond libsodium for random bytes and
 * base64; SHA-1 for the handshake is computed here.
 *
 * Functions return errors instead of failing the test, so that tests can
 * check refusals and closed connections themselves.
 */
#ifndef TRAINYARD_WSCLIENT_H
#define TRAINYARD_WSCLIENT_H

#include <stddef.h>
#include <stdint.h>

/* Frame opcodes (RFC 6455, section 5.2). */
#define WSCLIENT_CONTINUATION 0x0
#define WSCLIENT_TEXT 0x1
#define WSCLIENT_BINARY 0x2
#define WSCLIENT_CLOSE 0x8
#define WSCLIENT_PING 0x9
#define WSCLIENT_PONG 0xa

struct wsclient {
    int fd;
    unsigned char *buf; /* bytes received but not yet parsed */
    size_t len, cap;
    int pings;      /* pings received from the server; each got a pong */
    int closed;     /* 1 after a close frame, end of stream or error */
    int close_code; /* status code of the server's close frame, or 0 */
    char close_reason[128];
    int close_sent; /* our close frame went out */
    int timestamps; /* 1 after wsclient_enable_timestamps */
    /* With timestamps: when the kernel received the bytes of the last
     * recv, in Unix ms (CLOCK_REALTIME), or 0 when it gave none. */
    double last_arrival_ms;
};

struct wsclient_frame {
    int opcode;
    int fin;
    unsigned char *data; /* NUL-terminated; free with free() */
    size_t len;
};

/* Write the SHA-1 digest of data (FIPS 180-4) into out. */
void wsclient_sha1(const void *data, size_t len, unsigned char out[20]);

/* Open a WebSocket to 127.0.0.1:port at path, with extra_headers (NULL
 * or CRLF-ended lines such as Origin and Cookie). rcvbuf > 0 sets
 * SO_RCVBUF before connecting, to model a slow reader. Returns 101 when
 * the server switched protocols and the accept key is right. Otherwise
 * returns the HTTP status of the rejection and copies its body to body
 * (when not NULL), or returns -1 when no valid response came. In both
 * cases ws is closed. */
int wsclient_connect(struct wsclient *ws, int port, const char *path,
                     const char *extra_headers, int rcvbuf, char *body,
                     size_t body_len);

/* Have the kernel stamp received bytes with their arrival time
 * (SO_TIMESTAMPNS), which ws->last_arrival_ms then holds. The time
 * excludes this process's own delay in reading the socket. Returns 0 or
 * -1. */
int wsclient_enable_timestamps(struct wsclient *ws);

/* Send one masked frame. Returns 0 or -1. */
int wsclient_send_frame(struct wsclient *ws, int opcode, int fin,
                        const void *data, size_t len);

/* Send text as one text frame. Returns 0 or -1. */
int wsclient_send_text(struct wsclient *ws, const char *text);

/* Read one frame, waiting up to timeout_ms. Returns 1 with *frame filled,
 * 0 when time ran out, -1 when the connection ended or failed. */
int wsclient_read_frame(struct wsclient *ws, int timeout_ms,
                        struct wsclient_frame *frame);

/* Read the next whole text message and join its fragments. Pings get a
 * pong, and a close frame is recorded and sent back. Returns the text, to
 * free with free(), or NULL when timeout_ms passed or the connection
 * closed, which ws->closed distinguishes. */
char *wsclient_read_text(struct wsclient *ws, int timeout_ms);

/* Close the socket without a closing handshake, and free the buffer. */
void wsclient_close(struct wsclient *ws);

#endif
