/*
 * Per-connection buffers for libwebsockets: a queue of outgoing text
 * messages (each with the LWS_PRE headroom lws_write needs) and the
 * assembly of a received message from its fragments, with a size limit.
 */
#ifndef TRAINYARD_WSQUEUE_H
#define TRAINYARD_WSQUEUE_H

#include <libwebsockets.h>
#include <stddef.h>

struct ws_msg {
    struct ws_msg *next;
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then the text */
};

struct ws_queue {
    struct ws_msg *head, *tail;
    size_t count;
    size_t bytes;
};

struct ws_inbuf {
    char *data;
    size_t len, cap;
};

/* Append a copy of text; returns 0 or -ENOMEM. */
int ws_queue_push(struct ws_queue *q, const char *text, size_t len);

/* Write the head message with lws_write and drop it; returns 0, or -1 when
 * the write failed and the connection must close. */
int ws_queue_write_one(struct ws_queue *q, struct lws *wsi);

void ws_queue_clear(struct ws_queue *q);

/* Append one received fragment; returns -EMSGSIZE past max bytes. */
int ws_inbuf_append(struct ws_inbuf *b, const void *data, size_t len,
                    size_t max);

void ws_inbuf_reset(struct ws_inbuf *b);
void ws_inbuf_free(struct ws_inbuf *b);

#endif
