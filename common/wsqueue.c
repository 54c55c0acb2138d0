#include "wsqueue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ws_queue_push(struct ws_queue *q, const char *text, size_t len)
{
    struct ws_msg *m = malloc(sizeof(*m) + LWS_PRE + len);

    if (m == NULL)
        return -ENOMEM;
    m->next = NULL;
    m->len = len;
    memcpy(m->buf + LWS_PRE, text, len);
    if (q->tail != NULL)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->count++;
    q->bytes += len;
    return 0;
}

int ws_queue_write_one(struct ws_queue *q, struct lws *wsi)
{
    struct ws_msg *m = q->head;
    int n;

    if (m == NULL)
        return 0;
    n = lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
    q->head = m->next;
    if (q->head == NULL)
        q->tail = NULL;
    q->count--;
    q->bytes -= m->len;
    free(m);
    return n < 0 ? -1 : 0;
}

void ws_queue_clear(struct ws_queue *q)
{
    while (q->head != NULL) {
        struct ws_msg *m = q->head;
        q->head = m->next;
        free(m);
    }
    q->tail = NULL;
    q->count = 0;
    q->bytes = 0;
}

int ws_inbuf_append(struct ws_inbuf *b, const void *data, size_t len,
                    size_t max)
{
    if (len > max || b->len > max - len)
        return -EMSGSIZE;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (p == NULL)
            return -ENOMEM;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

void ws_inbuf_reset(struct ws_inbuf *b)
{
    b->len = 0;
}

void ws_inbuf_free(struct ws_inbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
