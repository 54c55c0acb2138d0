/*
 * The live progress WebSocket (see live.h and docs/LIVE.md).
 *
 * Threads. civetweb runs each WebSocket connection on one of its worker
 * threads for as long as it is open: that thread (the reader) runs the
 * connect, ready, data and close handlers below and reads the socket. Each
 * connection (struct viewer) has one more thread of its own, the writer,
 * which alone calls the backend for the connection: models.get when a
 * subscription starts, progress.after for replays, auth.session to
 * recheck the session. The reader only parses messages, queues the
 * replies to pings and hands subscribe and unsubscribe requests to the
 * writer as commands. upstream.c's thread calls on_backend_event for each
 * progress event and only queues: it appends the event to each
 * subscriber's bounded send queue and puts the viewer on the ready list.
 * A few sender threads (one per core, up to LIVE_SENDERS_MAX) take
 * viewers from that list in batches and write their queues, so that an
 * event to 1,000 viewers wakes a few threads, not 1,000. A ticker thread shuts down the sockets
 * of connections that did not close in time.
 *
 * Socket. One thread at a time writes to a viewer's socket: the one that
 * set viewer.owned, and it checks the send queue when it lets go. The
 * writer owns the socket for replays, pings, the close frame and its
 * commands. A sender writes only what fits in the socket's send buffer
 * without blocking (socket_room). When more is queued it marks the viewer
 * slow and leaves the queue to the writer, whose blocking writes then
 * hold up no other viewer, until the writer has caught up.
 *
 * Lock. One mutex, live.lock, guards the viewers, their send queues,
 * commands and subscriptions, the ready list, and the index from model to
 * subscriptions. Threads hold it for short steps (queueing, unlinking,
 * counting, a shutdown(2) call), never while writing to a socket or
 * waiting for the backend, so a browser that stops reading blocks only
 * its own writer.
 *
 * Ownership. A viewer is created by the ready handler and freed by the
 * close handler after its writer has exited and no sender owns its
 * socket. A subscription belongs to
 * its viewer: the writer creates it and frees it on unsubscribe or when
 * the model is gone, and the close handler frees the rest. Other threads
 * reach subscriptions only through the model index, under the lock. A
 * message text (struct live_text) is shared by every queue that sends it,
 * with a reference count.
 *
 * Order. Per subscription, last_seq is the last seq queued or written to
 * the browser, and events go out only as last_seq + 1. While a replay
 * runs, live events wait in the subscription's pending list; after the
 * last page they follow, minus those the replay already sent. A gap, a
 * lost pending event or a new backend connection starts a replay from
 * last_seq, so a browser gets every event once, in seq order.
 */
#include "live.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "auth.h"
#include "clock.h"
#include "http.h"
#include "log.h"
#include "number.h"
#include "upstream.h"

/* Events of one subscription held back while its replay runs. Past this
 * the list is dropped and the replay runs again from the store. */
#define LIVE_PENDING_MAX 1024
/* Subscribe and unsubscribe requests waiting for the writer. */
#define LIVE_COMMANDS_MAX (2 * LIVE_SUBSCRIPTIONS_MAX)
/* Events per progress.after page (the backend's maximum). */
#define LIVE_REPLAY_PAGE 1000
/* How long the writer waits for one backend response. */
#define LIVE_BACKEND_TIMEOUT_MS 10000
/* Delay before a replay that failed is tried again. */
#define LIVE_RETRY_MS 1000
/* How long a closing connection may take to send its close frame before
 * the ticker shuts its socket down. */
#define LIVE_CLOSE_GRACE_MS 5000
/* How long the close handler waits for the writer to finish on its own. */
#define LIVE_CLOSE_WAIT_MS 2000
/* How often the writer checks that the session is still signed in. */
#define LIVE_SESSION_CHECK_MS 60000
#define LIVE_BUCKETS 256
/* SO_SNDBUF of each live socket, which Linux doubles. A fixed size stops
 * the kernel from growing the buffer of a browser that does not read to
 * megabytes, so the send queue limit takes effect soon. */
#define LIVE_SOCKET_SNDBUF (128 * 1024)
/* Threads that write queued messages to the sockets of all viewers: one
 * per CPU core, from 2 to LIVE_SENDERS_MAX. Most of a write's time is
 * the kernel's TCP path, so senders beyond the cores only take turns on
 * them: with 4 senders on 2 cores a sender was preempted by another in
 * the middle of its batch for up to 17 ms, and the viewers of that
 * batch waited. */
#define LIVE_SENDERS_MIN 2
#define LIVE_SENDERS_MAX 4
/* Viewers a sender takes from the ready list at a time, so that the
 * senders share the fan-out of one event. */
#define LIVE_SEND_BATCH 64
/* Bytes counted per message on top of its text when a sender checks the
 * room in a socket's send buffer: the frame header (at most 10 bytes)
 * and, with TLS, two record headers and their MACs. */
#define LIVE_FRAME_OVERHEAD 64
/* WebSocket close codes (RFC 6455, section 7.4). */
#define CLOSE_NORMAL 1000
#define CLOSE_PROTOCOL_ERROR 1002
#define CLOSE_POLICY 1008
#define CLOSE_INTERNAL 1011
#define CLOSE_TRY_LATER 1013

#define REASON_TOO_SLOW "too slow; reconnect and resume from your last seq"

/* One message text, shared by every queue that sends it. */
struct live_text {
    atomic_int refs;
    size_t len;
    char data[];
};

struct out_item {
    struct out_item *next;
    int opcode; /* MG_WEBSOCKET_OPCODE_TEXT, _PING or _PONG */
    struct live_text *text;
};

struct pending_event {
    struct pending_event *next;
    int64_t seq;
    struct live_text *text;
};

enum command_kind { COMMAND_SUBSCRIBE, COMMAND_UNSUBSCRIBE };

struct command {
    struct command *next;
    enum command_kind kind;
    int64_t model;
    int64_t after;
};

struct subscription {
    struct subscription *bucket_next; /* in live.buckets, while linked */
    struct viewer *viewer;
    int64_t model;
    int64_t last_seq;
    int linked;
    int live;       /* 1: events go to the send queue; 0: to pending */
    int replay_due; /* the writer must replay from last_seq */
    int announced;  /* "subscribed" was queued */
    int64_t retry_at_ms;
    struct pending_event *pending_head, *pending_tail;
    size_t pending_count;
    int pending_lost; /* pending overflowed and was dropped */
};

struct viewer {
    struct viewer *next; /* in live.viewers */
    uint64_t id;
    struct mg_connection *conn;
    int fd; /* the connection's socket, or -1 when it was not found */
    int64_t account;
    char token[AUTH_TOKEN_LEN + 1];
    char addr[48];

    pthread_t writer;
    int writer_started;
    int writer_done;
    pthread_cond_t wake; /* broadcast on any change the writer waits for */

    struct viewer *ready_next; /* in live.ready, while ready is 1 */
    int ready;        /* 1 while in live.ready, waiting for a sender */
    int owned;        /* 1 while the writer or a sender writes to fd */
    int waiting_for_socket; /* 1 while a thread waits on wake for !owned */
    int slow;         /* 1 while the writer, not a sender, drains out_* */
    int sndbuf;       /* SO_SNDBUF as Linux reports it, or 0 */

    struct out_item *out_head, *out_tail;
    size_t out_count, out_bytes;
    struct command *cmd_head, *cmd_tail;
    size_t cmd_count;
    struct subscription *subs[LIVE_SUBSCRIPTIONS_MAX];
    int nsubs;

    int closing;       /* nothing more is queued or sent but a close frame */
    int closed;        /* the close handler ran; the writer exits */
    int close_pending; /* the writer must send the close frame */
    int shut;          /* shutdown(2) was called on fd */
    int close_code;
    char close_reason[124];
    int64_t close_deadline_ms;

    uint64_t messages_sent; /* writer only */

    /* The message being assembled from frames; reader only. */
    char *in_data;
    size_t in_len;
    int in_active, in_binary, in_oversized;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t ticker_wake;
    pthread_t ticker;
    int ticker_started;
    int running;
    int configured;
    struct live_options opt;
    struct viewer *viewers;
    int nviewers;
    uint64_t next_id;
    struct subscription *buckets[LIVE_BUCKETS];
    struct viewer *ready_head, *ready_tail;
    pthread_cond_t sender_wake;
    pthread_t senders[LIVE_SENDERS_MAX];
    int nsenders;
    unsigned bad_events; /* malformed backend events, for rate-limited logs */
} live = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- helpers ------------------------------------------------------------- */

static void cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

/* Wait on cond with live.lock held until deadline_ms (monotonic). */
static void wait_until(pthread_cond_t *cond, int64_t deadline_ms)
{
    struct timespec ts;

    ts.tv_sec = (time_t)(deadline_ms / 1000);
    ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
    pthread_cond_timedwait(cond, &live.lock, &ts);
}

static struct live_text *text_new(const char *data, size_t len)
{
    struct live_text *t = malloc(sizeof(*t) + len + 1);

    if (t == NULL)
        return NULL;
    atomic_init(&t->refs, 1);
    t->len = len;
    if (len > 0)
        memcpy(t->data, data, len);
    t->data[len] = '\0';
    return t;
}

static struct live_text *text_from_json(const cJSON *json)
{
    char *printed = cJSON_PrintUnformatted(json);
    struct live_text *t;

    if (printed == NULL)
        return NULL;
    t = text_new(printed, strlen(printed));
    free(printed);
    return t;
}

/* Add name: value to obj as a JSON number with all its digits. cJSON
 * 1.7.15 prints a number with 15 significant digits whenever they read
 * back within a relative DBL_EPSILON of it, so some whole numbers from
 * 2^52 to 2^53 came out up to 2 off: 2^53 as 9.00719925474099e+15. */
static void add_whole(cJSON *obj, const char *name, int64_t value)
{
    char digits[24];

    snprintf(digits, sizeof(digits), "%lld", (long long)value);
    cJSON_AddRawToObject(obj, name, digits);
}

static struct live_text *text_ref(struct live_text *t)
{
    atomic_fetch_add(&t->refs, 1);
    return t;
}

static void text_release(struct live_text *t)
{
    if (t != NULL && atomic_fetch_sub(&t->refs, 1) == 1)
        free(t);
}

/* The browser's form of a progress event: "type": "event", the model, and
 * the backend's fields. Fields are copied one by one, so that nothing the
 * backend adds later reaches browsers unreviewed. */
static struct live_text *event_text(int64_t model, const cJSON *event)
{
    static const char *const fields[] = {"session", "seq", "kind", "created_at",
                                         "payload"};
    cJSON *out = cJSON_CreateObject();
    struct live_text *t;

    cJSON_AddStringToObject(out, "type", "event");
    add_whole(out, "model", model);
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(event, fields[i]);
        if (v != NULL)
            cJSON_AddItemToObject(out, fields[i], cJSON_Duplicate(v, 1));
    }
    t = text_from_json(out);
    cJSON_Delete(out);
    return t;
}

/* Read a whole number in [min, NUMBER_WHOLE_MAX]. Returns 0 with *out
 * set, 1 when the field is absent, -1 when it has another type or
 * range. */
static int json_whole(const cJSON *obj, const char *name, int64_t min,
                      int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (v == NULL)
        return 1;
    if (!cJSON_IsNumber(v))
        return -1;
    return number_whole(v->valuedouble, min, NUMBER_WHOLE_MAX, out);
}

/* ---- queues (live.lock held) --------------------------------------------- */

static void queue_clear_locked(struct viewer *v)
{
    while (v->out_head != NULL) {
        struct out_item *item = v->out_head;
        v->out_head = item->next;
        text_release(item->text);
        free(item);
    }
    v->out_tail = NULL;
    v->out_count = 0;
    v->out_bytes = 0;
}

static void commands_clear_locked(struct viewer *v)
{
    while (v->cmd_head != NULL) {
        struct command *c = v->cmd_head;
        v->cmd_head = c->next;
        free(c);
    }
    v->cmd_tail = NULL;
    v->cmd_count = 0;
}

static void pending_clear_locked(struct subscription *sub)
{
    while (sub->pending_head != NULL) {
        struct pending_event *p = sub->pending_head;
        sub->pending_head = p->next;
        text_release(p->text);
        free(p);
    }
    sub->pending_tail = NULL;
    sub->pending_count = 0;
}

static void pending_push_locked(struct subscription *sub, int64_t seq,
                                struct live_text *text)
{
    struct pending_event *p;

    if (sub->pending_count >= LIVE_PENDING_MAX) {
        pending_clear_locked(sub);
        sub->pending_lost = 1;
    }
    if (sub->pending_lost)
        return;
    p = malloc(sizeof(*p));
    if (p == NULL) {
        pending_clear_locked(sub);
        sub->pending_lost = 1;
        return;
    }
    p->next = NULL;
    p->seq = seq;
    p->text = text_ref(text);
    if (sub->pending_tail != NULL)
        sub->pending_tail->next = p;
    else
        sub->pending_head = p;
    sub->pending_tail = p;
    sub->pending_count++;
}

static void unlink_locked(struct subscription *sub)
{
    struct subscription **pp;

    if (!sub->linked)
        return;
    pp = &live.buckets[(uint64_t)sub->model % LIVE_BUCKETS];
    for (; *pp != NULL; pp = &(*pp)->bucket_next) {
        if (*pp == sub) {
            *pp = sub->bucket_next;
            break;
        }
    }
    sub->bucket_next = NULL;
    sub->linked = 0;
}

static void link_locked(struct subscription *sub)
{
    struct subscription **bucket =
        &live.buckets[(uint64_t)sub->model % LIVE_BUCKETS];

    sub->bucket_next = *bucket;
    *bucket = sub;
    sub->linked = 1;
}

static void shutdown_locked(struct viewer *v)
{
    if (v->shut || v->fd < 0)
        return;
    shutdown(v->fd, SHUT_RDWR);
    v->shut = 1;
}

/* Append v to the ready list, where a sender finds it, unless it is
 * there or closing. */
static void ready_push_locked(struct viewer *v)
{
    if (v->ready || v->closing)
        return;
    v->ready = 1;
    v->ready_next = NULL;
    if (live.ready_tail != NULL) {
        live.ready_tail->ready_next = v;
    } else {
        live.ready_head = v;
        pthread_cond_signal(&live.sender_wake);
    }
    live.ready_tail = v;
}

static void ready_remove_locked(struct viewer *v)
{
    struct viewer *prev = NULL;

    if (!v->ready)
        return;
    for (struct viewer *it = live.ready_head; it != NULL;
         prev = it, it = it->ready_next) {
        if (it != v)
            continue;
        if (prev != NULL)
            prev->ready_next = v->ready_next;
        else
            live.ready_head = v->ready_next;
        if (live.ready_tail == v)
            live.ready_tail = prev;
        break;
    }
    v->ready_next = NULL;
    v->ready = 0;
}

/* Have someone write v's send queue: the writer when v is slow, else a
 * sender. A thread that owns the socket checks the queue when it lets
 * go, so nothing needs waking then. */
static void wake_sender_locked(struct viewer *v)
{
    if (v->slow)
        pthread_cond_broadcast(&v->wake);
    else if (!v->owned)
        ready_push_locked(v);
}

/* Let go of v's socket, and hand what was queued meanwhile on. */
static void release_socket_locked(struct viewer *v)
{
    v->owned = 0;
    if (v->waiting_for_socket || v->slow || v->closing) {
        v->waiting_for_socket = 0;
        pthread_cond_broadcast(&v->wake);
    }
    if (v->out_head != NULL)
        wake_sender_locked(v);
}

/* Stop queueing for v and, when code is not 0, have the writer send a
 * close frame with code and reason. The ticker shuts the socket down if
 * the connection is still open LIVE_CLOSE_GRACE_MS later. */
static void close_viewer_locked(struct viewer *v, int code, const char *reason)
{
    if (v->closing)
        return;
    v->closing = 1;
    v->close_pending = code != 0;
    v->close_code = code;
    snprintf(v->close_reason, sizeof(v->close_reason), "%s",
             reason ? reason : "");
    v->close_deadline_ms = clock_monotonic_ms() + LIVE_CLOSE_GRACE_MS;
    queue_clear_locked(v);
    commands_clear_locked(v);
    for (int i = 0; i < v->nsubs; i++) {
        unlink_locked(v->subs[i]);
        pending_clear_locked(v->subs[i]);
    }
    pthread_cond_broadcast(&v->wake);
    pthread_cond_signal(&live.ticker_wake);
}

/* The socket failed: close without a close frame, and at once. */
static void fail_viewer_locked(struct viewer *v)
{
    close_viewer_locked(v, 0, NULL);
    shutdown_locked(v);
}

/* Append text to v's send queue. Returns 0, or -1 when v is closing or
 * the queue was full, which closes v as too slow. */
static int queue_push_locked(struct viewer *v, int opcode,
                             struct live_text *text)
{
    struct out_item *item;

    if (v->closing)
        return -1;
    if (v->out_count >= LIVE_QUEUE_MESSAGES_MAX ||
        v->out_bytes + text->len > LIVE_QUEUE_BYTES_MAX) {
        log_warn("live viewer=%llu account=%lld: %zu messages (%zu bytes) "
                 "wait to be sent; closing it as too slow",
                 (unsigned long long)v->id, (long long)v->account, v->out_count,
                 v->out_bytes);
        close_viewer_locked(v, CLOSE_POLICY, REASON_TOO_SLOW);
        return -1;
    }
    item = malloc(sizeof(*item));
    if (item == NULL) {
        log_error("live viewer=%llu: out of memory queueing a message; "
                  "closing it",
                  (unsigned long long)v->id);
        close_viewer_locked(v, CLOSE_INTERNAL, "out of memory");
        return -1;
    }
    item->next = NULL;
    item->opcode = opcode;
    item->text = text_ref(text);
    if (v->out_tail != NULL)
        v->out_tail->next = item;
    else
        v->out_head = item;
    v->out_tail = item;
    v->out_count++;
    v->out_bytes += text->len;
    wake_sender_locked(v);
    return 0;
}

/* Queue a JSON message for v; json is not consumed. */
static void send_json(struct viewer *v, const cJSON *json)
{
    struct live_text *t = text_from_json(json);

    if (t == NULL)
        return;
    pthread_mutex_lock(&live.lock);
    queue_push_locked(v, MG_WEBSOCKET_OPCODE_TEXT, t);
    pthread_mutex_unlock(&live.lock);
    text_release(t);
}

/* Queue {"type": "error", "code", "message"} and "model" when model > 0. */
static void send_error(struct viewer *v, int64_t model, const char *code,
                       const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void send_error(struct viewer *v, int64_t model, const char *code,
                       const char *fmt, ...)
{
    char message[512];
    cJSON *json = cJSON_CreateObject();
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    log_debug("live viewer=%llu account=%lld model=%lld error %s: %s",
              (unsigned long long)v->id, (long long)v->account,
              (long long)model, code, message);
    cJSON_AddStringToObject(json, "type", "error");
    cJSON_AddStringToObject(json, "code", code);
    cJSON_AddStringToObject(json, "message", message);
    if (model > 0)
        add_whole(json, "model", model);
    send_json(v, json);
    cJSON_Delete(json);
}

/* Queue a message {"type": type, "model": model, ...}; last_seq < 0 is
 * left out. Called with live.lock held. */
static void send_model_message_locked(struct viewer *v, const char *type,
                                      int64_t model, int64_t last_seq)
{
    cJSON *json = cJSON_CreateObject();
    struct live_text *t;

    cJSON_AddStringToObject(json, "type", type);
    add_whole(json, "model", model);
    if (last_seq >= 0)
        add_whole(json, "last_seq", last_seq);
    t = text_from_json(json);
    cJSON_Delete(json);
    if (t != NULL)
        queue_push_locked(v, MG_WEBSOCKET_OPCODE_TEXT, t);
    text_release(t);
}

/* ---- events from the backend (upstream.c's thread) ----------------------- */

/* Deliver event seq of sub's model, or hold it back; see "Order" above. */
static void deliver_locked(struct subscription *sub, int64_t seq,
                           struct live_text *text)
{
    struct viewer *v = sub->viewer;

    if (v->closing || seq <= sub->last_seq)
        return;
    if (!sub->live) {
        pending_push_locked(sub, seq, text);
        return;
    }
    if (seq != sub->last_seq + 1) {
        /* Events were missed; the store has them. */
        log_info("live viewer=%llu model=%lld: got seq %lld after %lld; "
                 "replaying the gap",
                 (unsigned long long)v->id, (long long)sub->model,
                 (long long)seq, (long long)sub->last_seq);
        sub->live = 0;
        sub->replay_due = 1;
        sub->retry_at_ms = 0;
        pending_push_locked(sub, seq, text);
        pthread_cond_broadcast(&v->wake);
        return;
    }
    if (queue_push_locked(v, MG_WEBSOCKET_OPCODE_TEXT, text) == 0)
        sub->last_seq = seq;
}

static void on_backend_event(void *user, const cJSON *event)
{
    int64_t model = 0, seq = 0;
    struct live_text *text;

    (void)user;
    if (json_whole(event, "model", 1, &model) != 0 ||
        json_whole(event, "seq", 1, &seq) != 0) {
        pthread_mutex_lock(&live.lock);
        unsigned n = live.bad_events++;
        pthread_mutex_unlock(&live.lock);
        if (n % 100 == 0)
            log_warn("backend event without a valid model and seq; "
                     "ignored (%u so far)",
                     n + 1);
        return;
    }
    text = event_text(model, event);
    if (text == NULL) {
        log_error("out of memory forwarding event model=%lld seq=%lld",
                  (long long)model, (long long)seq);
        return;
    }
    pthread_mutex_lock(&live.lock);
    if (live.running) {
        struct subscription *sub = live.buckets[(uint64_t)model % LIVE_BUCKETS];
        for (; sub != NULL; sub = sub->bucket_next)
            if (sub->model == model)
                deliver_locked(sub, seq, text);
    }
    pthread_mutex_unlock(&live.lock);
    text_release(text);
}

/* A new backend connection: events sent while the gateway was away were
 * stored, so every subscription replays from its last seq. */
static void on_backend_connect(void *user)
{
    int count = 0;

    (void)user;
    pthread_mutex_lock(&live.lock);
    for (struct viewer *v = live.viewers; v != NULL; v = v->next) {
        if (v->closing)
            continue;
        for (int i = 0; i < v->nsubs; i++) {
            v->subs[i]->live = 0;
            v->subs[i]->replay_due = 1;
            v->subs[i]->retry_at_ms = 0;
            count++;
        }
        pthread_cond_broadcast(&v->wake);
    }
    pthread_mutex_unlock(&live.lock);
    if (count > 0)
        log_info("backend connected; replaying %d live subscriptions", count);
}

/* ---- the writer thread --------------------------------------------------- */

static int write_frame(struct viewer *v, int opcode, const char *data,
                       size_t len)
{
    int n = mg_websocket_write(v->conn, opcode, data, len);

    /* With len 0, civetweb returns the header's size. */
    if (len > 0 ? n != (int)len : n <= 0)
        return -1;
    v->messages_sent++;
    return 0;
}

static void write_failed(struct viewer *v)
{
    pthread_mutex_lock(&live.lock);
    if (!v->closing)
        log_info("live viewer=%llu account=%lld: writing to the socket "
                 "failed; closing it",
                 (unsigned long long)v->id, (long long)v->account);
    fail_viewer_locked(v);
    pthread_mutex_unlock(&live.lock);
}

/* Write every message queued so far. Returns 0, or -1 when a write
 * failed. */
static int flush_queue(struct viewer *v)
{
    struct out_item *item;
    int rc = 0;

    pthread_mutex_lock(&live.lock);
    item = v->out_head;
    v->out_head = v->out_tail = NULL;
    v->out_count = 0;
    v->out_bytes = 0;
    pthread_mutex_unlock(&live.lock);
    while (item != NULL) {
        struct out_item *next = item->next;
        if (rc == 0 &&
            write_frame(v, item->opcode, item->text->data, item->text->len))
            rc = -1;
        text_release(item->text);
        free(item);
        item = next;
    }
    if (rc != 0)
        write_failed(v);
    return rc;
}

static void send_close_frame(struct viewer *v, int code, const char *reason)
{
    char payload[125];
    size_t n = strlen(reason);

    if (n > sizeof(payload) - 2)
        n = sizeof(payload) - 2;
    payload[0] = (char)((code >> 8) & 0xff);
    payload[1] = (char)(code & 0xff);
    memcpy(payload + 2, reason, n);
    mg_websocket_write(v->conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, payload,
                       n + 2);
}

static struct subscription *find_sub_locked(struct viewer *v, int64_t model)
{
    for (int i = 0; i < v->nsubs; i++)
        if (v->subs[i]->model == model)
            return v->subs[i];
    return NULL;
}

static void remove_sub_locked(struct viewer *v, struct subscription *sub)
{
    unlink_locked(sub);
    pending_clear_locked(sub);
    for (int i = 0; i < v->nsubs; i++) {
        if (v->subs[i] == sub) {
            v->subs[i] = v->subs[--v->nsubs];
            break;
        }
    }
    free(sub);
}

/* Queue the backend's failure of op as an error for model. */
static void send_backend_error(struct viewer *v, int64_t model, const char *op,
                               const cJSON *response)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(response, "error");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    const char *code = cJSON_IsString(c) ? c->valuestring : "";
    const char *message = cJSON_IsString(m) ? m->valuestring : "no message";

    /* As in api.c: internal details stay in the log. */
    if (api_status_for_code(code) >= 500) {
        log_error("live viewer=%llu: backend op %s failed: code=%s %s",
                  (unsigned long long)v->id, op, code, message);
        send_error(v, model, "internal",
                   "the backend failed; its log has the details");
        return;
    }
    send_error(v, model, code, "%s", message);
}

/* Call op as v's account. Returns the response (the caller deletes it),
 * or NULL with err filled when no response came. */
static cJSON *call_backend(struct viewer *v, const char *op, cJSON *args,
                           struct error *err)
{
    cJSON *response = NULL;
    int rc = upstream_call_as(v->account, op, args, LIVE_BACKEND_TIMEOUT_MS,
                              &response, err);

    cJSON_Delete(args);
    return rc == 0 ? response : NULL;
}

/* After the last page: move the events held back into the send queue and
 * go live, or leave replay_due set when another round is needed. progress
 * is 1 when this round sent at least one event. */
static void finish_replay_locked(struct viewer *v, struct subscription *sub,
                                 int progress)
{
    while (sub->pending_head != NULL && !v->closing) {
        struct pending_event *p = sub->pending_head;
        if (p->seq > sub->last_seq + 1) {
            if (progress || sub->pending_lost || sub->replay_due)
                break;
            /* The store itself lacks the seqs in between. */
            log_warn("live model=%lld: no stored events between seq %lld "
                     "and %lld; sending on",
                     (long long)sub->model, (long long)sub->last_seq,
                     (long long)p->seq);
            sub->last_seq = p->seq - 1;
        }
        sub->pending_head = p->next;
        if (sub->pending_head == NULL)
            sub->pending_tail = NULL;
        sub->pending_count--;
        if (p->seq == sub->last_seq + 1 &&
            queue_push_locked(v, MG_WEBSOCKET_OPCODE_TEXT, p->text) == 0)
            sub->last_seq = p->seq;
        text_release(p->text);
        free(p);
    }
    if (v->closing)
        return;
    if (sub->pending_head != NULL || sub->pending_lost || sub->replay_due) {
        pending_clear_locked(sub);
        sub->pending_lost = 0;
        sub->replay_due = 1;
        sub->retry_at_ms = 0;
        return;
    }
    sub->live = 1;
    if (!sub->announced) {
        sub->announced = 1;
        send_model_message_locked(v, "subscribed", sub->model, sub->last_seq);
    }
}

static void retry_replay_later(struct viewer *v, struct subscription *sub,
                               const char *why)
{
    log_debug("live viewer=%llu model=%lld: replay failed (%s); retrying in "
              "%d ms",
              (unsigned long long)v->id, (long long)sub->model, why,
              LIVE_RETRY_MS);
    pthread_mutex_lock(&live.lock);
    sub->replay_due = 1;
    sub->retry_at_ms = clock_monotonic_ms() + LIVE_RETRY_MS;
    pthread_mutex_unlock(&live.lock);
}

/* Write the stored events of sub's model after its last_seq, page by
 * page, straight to the socket, then go live. */
static void replay(struct viewer *v, struct subscription *sub)
{
    int64_t after, first;
    struct error err = {0};

    pthread_mutex_lock(&live.lock);
    sub->live = 0;
    after = first = sub->last_seq;
    pthread_mutex_unlock(&live.lock);
    /* Queued events of this model precede the replayed ones. */
    if (flush_queue(v) != 0)
        return;

    for (;;) {
        cJSON *args = cJSON_CreateObject(), *response, *result;
        const cJSON *events, *event;
        int more;

        add_whole(args, "model", sub->model);
        add_whole(args, "after_seq", after);
        cJSON_AddNumberToObject(args, "limit", LIVE_REPLAY_PAGE);
        response = call_backend(v, "progress.after", args, &err);
        if (response == NULL) {
            retry_replay_later(v, sub, err.msg);
            return;
        }
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(response, "ok"))) {
            const cJSON *e =
                cJSON_GetObjectItemCaseSensitive(response, "error");
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
            if (cJSON_IsString(c) &&
                api_status_for_code(c->valuestring) < 500) {
                /* The model is gone, or is no longer the account's. */
                send_backend_error(v, sub->model, "progress.after", response);
                pthread_mutex_lock(&live.lock);
                remove_sub_locked(v, sub);
                pthread_mutex_unlock(&live.lock);
            } else {
                retry_replay_later(v, sub, "the backend failed");
            }
            cJSON_Delete(response);
            return;
        }
        result = cJSON_GetObjectItemCaseSensitive(response, "result");
        events = cJSON_GetObjectItemCaseSensitive(result, "events");
        more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(result, "more"));
        cJSON_ArrayForEach(event, events)
        {
            int64_t seq;
            struct live_text *text;
            int rc;

            if (json_whole(event, "seq", 1, &seq) != 0 || seq <= after)
                continue;
            text = event_text(sub->model, event);
            rc = text ? write_frame(v, MG_WEBSOCKET_OPCODE_TEXT, text->data,
                                    text->len)
                      : -1;
            text_release(text);
            if (rc != 0) {
                cJSON_Delete(response);
                write_failed(v);
                return;
            }
            after = seq;
        }
        cJSON_Delete(response);

        pthread_mutex_lock(&live.lock);
        if (v->closing) {
            pthread_mutex_unlock(&live.lock);
            return;
        }
        sub->last_seq = after;
        if (!more) {
            finish_replay_locked(v, sub, after > first);
            pthread_mutex_unlock(&live.lock);
            return;
        }
        pthread_mutex_unlock(&live.lock);
    }
}

static void subscribe(struct viewer *v, int64_t model, int64_t after)
{
    struct subscription *sub;
    struct error err = {0};
    cJSON *args, *response;
    int count;

    pthread_mutex_lock(&live.lock);
    sub = find_sub_locked(v, model);
    count = v->nsubs;
    pthread_mutex_unlock(&live.lock);
    if (sub != NULL) {
        send_error(v, model, "conflict",
                   "already subscribed to model %lld; unsubscribe first to "
                   "start over from another seq",
                   (long long)model);
        return;
    }
    if (count >= LIVE_SUBSCRIPTIONS_MAX) {
        send_error(v, model, "limit_exceeded",
                   "a connection holds at most %d subscriptions; "
                   "unsubscribe from one first",
                   LIVE_SUBSCRIPTIONS_MAX);
        return;
    }

    /* The backend returns not_found for another account's model too. */
    args = cJSON_CreateObject();
    add_whole(args, "model", model);
    response = call_backend(v, "models.get", args, &err);
    if (response == NULL) {
        send_error(v, model, "backend_unavailable", "%s", err.msg);
        return;
    }
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(response, "ok"))) {
        send_backend_error(v, model, "models.get", response);
        cJSON_Delete(response);
        return;
    }
    cJSON_Delete(response);

    sub = calloc(1, sizeof(*sub));
    if (sub == NULL) {
        send_error(v, model, "internal", "out of memory subscribing");
        return;
    }
    sub->viewer = v;
    sub->model = model;
    sub->last_seq = after;
    pthread_mutex_lock(&live.lock);
    if (v->closing) {
        pthread_mutex_unlock(&live.lock);
        free(sub);
        return;
    }
    /* Linked before the first page is asked for, so that no event falls
     * between the replay and the live ones. */
    link_locked(sub);
    v->subs[v->nsubs++] = sub;
    pthread_mutex_unlock(&live.lock);
    log_debug("live viewer=%llu account=%lld subscribed model=%lld "
              "after=%lld",
              (unsigned long long)v->id, (long long)v->account,
              (long long)model, (long long)after);
    replay(v, sub);
}

static void unsubscribe(struct viewer *v, int64_t model)
{
    struct subscription *sub;

    pthread_mutex_lock(&live.lock);
    sub = find_sub_locked(v, model);
    if (sub != NULL) {
        remove_sub_locked(v, sub);
        send_model_message_locked(v, "unsubscribed", model, -1);
    }
    pthread_mutex_unlock(&live.lock);
    if (sub == NULL)
        send_error(v, model, "not_found", "not subscribed to model %lld",
                   (long long)model);
}

/* Close the connection when its session was signed out or expired. */
static void check_session(struct viewer *v)
{
    struct auth_identity who;
    struct error err = {0};
    char code[64];
    int rc = api_resolve_credential(AUTH_METHOD_SESSION, v->token, &who, code,
                                    sizeof(code), &err);

    if (rc == -EACCES || (rc == 0 && who.account_id != v->account)) {
        log_info("live viewer=%llu account=%lld: the session ended (%s); "
                 "closing",
                 (unsigned long long)v->id, (long long)v->account, code);
        pthread_mutex_lock(&live.lock);
        close_viewer_locked(v, CLOSE_POLICY,
                            "the session ended; sign in again");
        pthread_mutex_unlock(&live.lock);
    }
}

/* The subscription whose replay is due first; *wake_at_ms becomes the
 * time of a later one. */
static struct subscription *due_replay_locked(struct viewer *v, int64_t now,
                                              int64_t *wake_at_ms)
{
    for (int i = 0; i < v->nsubs; i++) {
        struct subscription *sub = v->subs[i];
        if (!sub->replay_due)
            continue;
        if (sub->retry_at_ms <= now)
            return sub;
        if (sub->retry_at_ms < *wake_at_ms)
            *wake_at_ms = sub->retry_at_ms;
    }
    return NULL;
}

static void *writer_main(void *arg)
{
    struct viewer *v = arg;
    int64_t interval = (int64_t)live.opt.ping_interval_s * 1000;
    int64_t next_ping = clock_monotonic_ms() + interval;
    int64_t next_check = clock_monotonic_ms() + LIVE_SESSION_CHECK_MS;

    pthread_mutex_lock(&live.lock);
    for (;;) {
        int64_t now = clock_monotonic_ms(), wake_at;
        struct subscription *sub;

        if (v->owned) {
            /* A sender is writing. After the close handler ran, it waits
             * for the sender itself. */
            if (v->closed)
                break;
            v->waiting_for_socket = 1;
            pthread_cond_wait(&v->wake, &live.lock);
            continue;
        }
        if (v->close_pending) {
            int code = v->close_code;
            char reason[sizeof(v->close_reason)];
            memcpy(reason, v->close_reason, sizeof(reason));
            v->close_pending = 0;
            v->owned = 1;
            pthread_mutex_unlock(&live.lock);
            send_close_frame(v, code, reason);
            pthread_mutex_lock(&live.lock);
            release_socket_locked(v);
            continue;
        }
        if (v->closed)
            break;
        if (v->closing) {
            pthread_cond_wait(&v->wake, &live.lock);
            continue;
        }
        if (v->cmd_head != NULL) {
            struct command *c = v->cmd_head;
            v->cmd_head = c->next;
            if (v->cmd_head == NULL)
                v->cmd_tail = NULL;
            v->cmd_count--;
            v->owned = 1;
            pthread_mutex_unlock(&live.lock);
            if (c->kind == COMMAND_SUBSCRIBE)
                subscribe(v, c->model, c->after);
            else
                unsubscribe(v, c->model);
            free(c);
            pthread_mutex_lock(&live.lock);
            release_socket_locked(v);
            continue;
        }
        wake_at = next_ping < next_check ? next_ping : next_check;
        sub = due_replay_locked(v, now, &wake_at);
        if (sub != NULL) {
            sub->replay_due = 0;
            v->owned = 1;
            pthread_mutex_unlock(&live.lock);
            replay(v, sub);
            pthread_mutex_lock(&live.lock);
            release_socket_locked(v);
            continue;
        }
        if (v->out_head != NULL && v->slow) {
            /* Blocking writes, one message at a time, so that only this
             * thread waits for a browser that reads slowly. */
            struct out_item *item = v->out_head;
            v->out_head = item->next;
            if (v->out_head == NULL)
                v->out_tail = NULL;
            v->out_count--;
            v->out_bytes -= item->text->len;
            v->owned = 1;
            pthread_mutex_unlock(&live.lock);
            int rc =
                write_frame(v, item->opcode, item->text->data, item->text->len);
            text_release(item->text);
            free(item);
            if (rc != 0)
                write_failed(v);
            pthread_mutex_lock(&live.lock);
            /* Caught up: the senders take over again. */
            if (v->out_head == NULL && v->fd >= 0 && v->sndbuf > 0)
                v->slow = 0;
            release_socket_locked(v);
            continue;
        }
        if (now >= next_ping) {
            next_ping = now + interval;
            v->owned = 1;
            pthread_mutex_unlock(&live.lock);
            if (write_frame(v, MG_WEBSOCKET_OPCODE_PING, NULL, 0) != 0)
                write_failed(v);
            pthread_mutex_lock(&live.lock);
            release_socket_locked(v);
            continue;
        }
        if (now >= next_check) {
            next_check = now + LIVE_SESSION_CHECK_MS;
            pthread_mutex_unlock(&live.lock);
            check_session(v);
            pthread_mutex_lock(&live.lock);
            continue;
        }
        wait_until(&v->wake, wake_at);
    }
    v->writer_done = 1;
    pthread_cond_broadcast(&v->wake);
    pthread_mutex_unlock(&live.lock);
    return NULL;
}

/* ---- the senders --------------------------------------------------------- */

/* Bytes that can be written to v's socket now without blocking: a
 * quarter of the send buffer less the bytes it holds, or 0 when its fill
 * cannot be read. A socket that failed is found by the write.
 * NOTE: the quarter is an estimate of the margin for the kernel's
 * per-segment overhead, which SIOCOUTQ does not count. Should a write
 * still block, that sender waits until the browser reads or the socket
 * is shut down, and the other senders carry on. */
static size_t socket_room(const struct viewer *v)
{
    size_t limit = (size_t)v->sndbuf / 4;
    int unsent = 0;

    if (v->fd < 0 || v->sndbuf <= 0)
        return 0;
    if (ioctl(v->fd, SIOCOUTQ, &unsent) != 0 || unsent < 0)
        return 0;
    return (size_t)unsent < limit ? limit - (size_t)unsent : 0;
}

/* Append one unmasked server frame (RFC 6455, section 5.2) to out and
 * return its length: FIN and the opcode, the payload length in 1, 3 or
 * 9 bytes, then the payload. */
static size_t encode_frame(unsigned char *out, int opcode, const char *data,
                           size_t len)
{
    size_t n = 0;

    out[n++] = (unsigned char)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        out[n++] = (unsigned char)len;
    } else if (len <= 0xffff) {
        out[n++] = 126;
        out[n++] = (unsigned char)(len >> 8);
        out[n++] = (unsigned char)len;
    } else {
        out[n++] = 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            out[n++] = (unsigned char)((uint64_t)len >> shift);
    }
    memcpy(out + n, data, len);
    return n + len;
}

/* A sender's frame buffer, reused from one write to the next. */
struct send_buffer {
    unsigned char *data;
    size_t cap;
};

/* Write the frames of a list of queued items with one write under the
 * connection's lock, the lock civetweb's own frame writes take, so the
 * whole batch leaves in as few segments as the kernel can make of it.
 * bytes bounds the frames' length. Frees the items. Returns 0, or -1
 * when the write failed. */
static int write_batch(struct viewer *v, struct send_buffer *buf,
                       struct out_item *head, size_t bytes)
{
    size_t n = 0;
    int count = 0, rc = 0;

    if (bytes > buf->cap) {
        unsigned char *grown = realloc(buf->data, bytes);
        if (grown != NULL) {
            buf->data = grown;
            buf->cap = bytes;
        }
    }
    while (head != NULL) {
        struct out_item *item = head;
        head = item->next;
        if (bytes <= buf->cap) {
            n += encode_frame(buf->data + n, item->opcode, item->text->data,
                              item->text->len);
            count++;
        }
        text_release(item->text);
        free(item);
    }
    if (bytes > buf->cap)
        return -1;
    mg_lock_connection(v->conn);
    if (mg_write(v->conn, buf->data, n) != (int)n)
        rc = -1;
    mg_unlock_connection(v->conn);
    if (rc == 0)
        v->messages_sent += (uint64_t)count;
    return rc;
}

/* Move to *head as much of v's send queue as room takes, and mark v slow
 * when more is left, which hands the rest to its writer. Returns the
 * bytes to write, frame overhead included. Called with live.lock held by
 * the sender that owns v's socket. */
static size_t take_queue_locked(struct viewer *v, size_t room,
                                struct out_item **head)
{
    struct out_item **tail = head;
    size_t used = 0;

    *head = NULL;
    while (v->out_head != NULL &&
           used + v->out_head->text->len + LIVE_FRAME_OVERHEAD <= room) {
        struct out_item *item = v->out_head;
        v->out_head = item->next;
        v->out_count--;
        v->out_bytes -= item->text->len;
        used += item->text->len + LIVE_FRAME_OVERHEAD;
        item->next = NULL;
        *tail = item;
        tail = &item->next;
    }
    if (v->out_head == NULL)
        v->out_tail = NULL;
    else
        v->slow = 1;
    return used;
}

/* A sender: takes viewers from the ready list in batches and writes
 * their queues, so that one event costs a few thread wakeups instead of
 * one per viewer. Per batch it takes live.lock three times: to pick the
 * viewers, to take their queues, and to let go of their sockets. */
static void *sender_main(void *arg)
{
    struct send_buffer buf = {NULL, 0};

    (void)arg;
    pthread_mutex_lock(&live.lock);
    while (live.running) {
        struct viewer *batch[LIVE_SEND_BATCH];
        struct out_item *items[LIVE_SEND_BATCH];
        size_t room[LIVE_SEND_BATCH];
        int n = 0;

        while (n < LIVE_SEND_BATCH && live.ready_head != NULL) {
            struct viewer *v = live.ready_head;
            live.ready_head = v->ready_next;
            if (live.ready_head == NULL)
                live.ready_tail = NULL;
            v->ready_next = NULL;
            v->ready = 0;
            /* An owner checks the queue when it lets go. */
            if (v->closing || v->owned || v->slow || v->out_head == NULL)
                continue;
            v->owned = 1;
            batch[n++] = v;
        }
        if (n == 0) {
            pthread_cond_wait(&live.sender_wake, &live.lock);
            continue;
        }
        if (live.ready_head != NULL)
            pthread_cond_signal(&live.sender_wake);
        pthread_mutex_unlock(&live.lock);
        for (int i = 0; i < n; i++)
            room[i] = socket_room(batch[i]);
        pthread_mutex_lock(&live.lock);
        for (int i = 0; i < n; i++)
            room[i] = take_queue_locked(batch[i], room[i], &items[i]);
        pthread_mutex_unlock(&live.lock);
        for (int i = 0; i < n; i++)
            if (items[i] != NULL &&
                write_batch(batch[i], &buf, items[i], room[i]) != 0)
                write_failed(batch[i]);
        pthread_mutex_lock(&live.lock);
        for (int i = 0; i < n; i++)
            release_socket_locked(batch[i]);
    }
    pthread_mutex_unlock(&live.lock);
    free(buf.data);
    return NULL;
}

/* ---- messages from the browser (the reader thread) ----------------------- */

static void push_command(struct viewer *v, enum command_kind kind,
                         int64_t model, int64_t after)
{
    struct command *c = calloc(1, sizeof(*c));
    int full;

    if (c == NULL) {
        send_error(v, model, "internal", "out of memory");
        return;
    }
    c->kind = kind;
    c->model = model;
    c->after = after;
    pthread_mutex_lock(&live.lock);
    full = v->cmd_count >= LIVE_COMMANDS_MAX;
    if (!full && !v->closing) {
        if (v->cmd_tail != NULL)
            v->cmd_tail->next = c;
        else
            v->cmd_head = c;
        v->cmd_tail = c;
        v->cmd_count++;
        c = NULL;
        pthread_cond_broadcast(&v->wake);
    }
    pthread_mutex_unlock(&live.lock);
    free(c);
    if (full)
        send_error(v, model, "limit_exceeded",
                   "%d subscribe and unsubscribe requests already wait; "
                   "wait for their responses",
                   LIVE_COMMANDS_MAX);
}

/* 1 when a message type may be echoed in an error: short printable
 * ASCII, so that the reply stays valid UTF-8. */
static int printable(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++)
        if (s[n] < 0x20 || s[n] > 0x7e || n >= 32)
            return 0;
    return 1;
}

/* Read the "model" and, for subscribe, "after" fields; returns 0, or -1
 * after queueing an error. */
static int read_model_fields(struct viewer *v, const cJSON *msg,
                             const char *type, int64_t *model, int64_t *after)
{
    int rc = json_whole(msg, "model", 1, model);

    if (rc != 0) {
        send_error(v, 0, "invalid_request",
                   "field 'model' of %s is %s; send the model id as a "
                   "whole number >= 1",
                   type, rc > 0 ? "missing" : "not a whole number >= 1");
        return -1;
    }
    if (after == NULL)
        return 0;
    *after = 0;
    if (json_whole(msg, "after", 0, after) < 0) {
        send_error(v, *model, "invalid_request",
                   "field 'after' must be a whole number >= 0: the last "
                   "seq already received, or 0 for all events");
        return -1;
    }
    return 0;
}

static void handle_text(struct viewer *v, const char *text, size_t len)
{
    const char *end = NULL;
    cJSON *msg = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    const cJSON *type;
    int64_t model = 0, after = 0;

    if (msg == NULL) {
        size_t at = end != NULL && end >= text ? (size_t)(end - text) : 0;
        send_error(v, 0, "invalid_json",
                   "the message is not valid JSON (error near byte %zu)", at);
        return;
    }
    type = cJSON_GetObjectItemCaseSensitive(msg, "type");
    if (!cJSON_IsObject(msg) || !cJSON_IsString(type)) {
        send_error(v, 0, "invalid_request",
                   "send a JSON object with a string field 'type': "
                   "subscribe, unsubscribe or ping");
    } else if (strcmp(type->valuestring, "ping") == 0) {
        cJSON *pong = cJSON_CreateObject();
        cJSON_AddStringToObject(pong, "type", "pong");
        send_json(v, pong);
        cJSON_Delete(pong);
    } else if (strcmp(type->valuestring, "subscribe") == 0) {
        if (read_model_fields(v, msg, "subscribe", &model, &after) == 0)
            push_command(v, COMMAND_SUBSCRIBE, model, after);
    } else if (strcmp(type->valuestring, "unsubscribe") == 0) {
        if (read_model_fields(v, msg, "unsubscribe", &model, NULL) == 0)
            push_command(v, COMMAND_UNSUBSCRIBE, model, 0);
    } else if (printable(type->valuestring)) {
        send_error(v, 0, "unknown_type",
                   "unknown message type '%s'; use subscribe, "
                   "unsubscribe or ping",
                   type->valuestring);
    } else {
        send_error(v, 0, "unknown_type",
                   "unknown message type; use subscribe, unsubscribe or "
                   "ping");
    }
    cJSON_Delete(msg);
}

static void reset_message(struct viewer *v)
{
    free(v->in_data);
    v->in_data = NULL;
    v->in_len = 0;
    v->in_active = v->in_binary = v->in_oversized = 0;
}

/* Add one data frame to the message being assembled, and handle the
 * message at its last frame. Returns 1, or 0 to close the connection. */
static int add_frame(struct viewer *v, int opcode, int fin, const char *data,
                     size_t len)
{
    if (opcode == MG_WEBSOCKET_OPCODE_CONTINUATION ? !v->in_active
                                                   : v->in_active) {
        pthread_mutex_lock(&live.lock);
        close_viewer_locked(v, CLOSE_PROTOCOL_ERROR,
                            v->in_active ? "a new message began before the "
                                           "last one ended"
                                         : "a continuation frame without a "
                                           "message");
        pthread_mutex_unlock(&live.lock);
        return 0;
    }
    if (opcode != MG_WEBSOCKET_OPCODE_CONTINUATION) {
        v->in_active = 1;
        v->in_binary = opcode == MG_WEBSOCKET_OPCODE_BINARY;
    }
    if (!v->in_oversized && v->in_len + len > LIVE_MESSAGE_MAX) {
        /* The rest of the message is read and dropped. */
        v->in_oversized = 1;
        free(v->in_data);
        v->in_data = NULL;
    }
    if (!v->in_oversized && len > 0) {
        char *grown = realloc(v->in_data, v->in_len + len + 1);
        if (grown == NULL) {
            send_error(v, 0, "internal", "out of memory reading a message");
            reset_message(v);
            return 1;
        }
        v->in_data = grown;
        memcpy(v->in_data + v->in_len, data, len);
        v->in_len += len;
    }
    if (!fin)
        return 1;
    if (v->in_oversized)
        send_error(v, 0, "payload_too_large",
                   "the message is over %d bytes; send less", LIVE_MESSAGE_MAX);
    else if (v->in_binary)
        send_error(v, 0, "invalid_request",
                   "binary messages are not accepted; send JSON text");
    else
        handle_text(v, v->in_data ? v->in_data : "", v->in_len);
    reset_message(v);
    return 1;
}

/* The status code of the reply to the browser's close frame: the
 * browser's own code (RFC 6455, section 5.5.1), 1000 when the frame has
 * none, and 1002 for a 1-byte payload or a code that no endpoint may
 * send. Those are 1004 to 1006, 1015 and the codes under 3000 that
 * neither RFC 6455 (section 7.4.1) nor IANA's WebSocket Close Code
 * Number Registry defines, which is why 1016 to 2999 are rejected. */
static int close_reply_code(const char *data, size_t len)
{
    int code;

    if (len == 0)
        return CLOSE_NORMAL;
    if (len == 1)
        return CLOSE_PROTOCOL_ERROR;
    code = ((unsigned char)data[0] << 8) | (unsigned char)data[1];
    if ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
        (code >= 3000 && code <= 4999))
        return code;
    return CLOSE_PROTOCOL_ERROR;
}

static int on_data(struct mg_connection *conn, int bits, char *data, size_t len,
                   void *cbdata)
{
    struct viewer *v = mg_get_user_connection_data(conn);
    int opcode = bits & 0x0f, fin = (bits & 0x80) != 0;
    struct live_text *pong;
    int closing;

    (void)cbdata;
    if (v == NULL)
        return 0;
    pthread_mutex_lock(&live.lock);
    closing = v->closing;
    pthread_mutex_unlock(&live.lock);

    switch (opcode) {
    case MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE: {
        int code = close_reply_code(data, len);
        const char *reason =
            code == CLOSE_PROTOCOL_ERROR ? "invalid close frame" : "";
        pthread_mutex_lock(&live.lock);
        close_viewer_locked(v, code, reason);
        pthread_mutex_unlock(&live.lock);
        return 0;
    }
    case MG_WEBSOCKET_OPCODE_PING:
        if (closing)
            return 1;
        pong = text_new(data, len < 125 ? len : 125);
        if (pong != NULL) {
            pthread_mutex_lock(&live.lock);
            queue_push_locked(v, MG_WEBSOCKET_OPCODE_PONG, pong);
            pthread_mutex_unlock(&live.lock);
            text_release(pong);
        }
        return 1;
    case MG_WEBSOCKET_OPCODE_PONG:
        return 1;
    case MG_WEBSOCKET_OPCODE_TEXT:
    case MG_WEBSOCKET_OPCODE_BINARY:
    case MG_WEBSOCKET_OPCODE_CONTINUATION:
        if (closing)
            return 1;
        if ((bits & 0x70) != 0) {
            pthread_mutex_lock(&live.lock);
            close_viewer_locked(v, CLOSE_PROTOCOL_ERROR,
                                "no extension was negotiated");
            pthread_mutex_unlock(&live.lock);
            return 0;
        }
        return add_frame(v, opcode, fin, data, len);
    default:
        pthread_mutex_lock(&live.lock);
        close_viewer_locked(v, CLOSE_PROTOCOL_ERROR, "unknown opcode");
        pthread_mutex_unlock(&live.lock);
        return 0;
    }
}

/* ---- connections --------------------------------------------------------- */

/* 1 when the Origin header is this gateway's origin: the Host header
 * after http:// or https://. A browser always sends Origin with a
 * WebSocket, so a page of another site cannot use the user's cookie. */
static int origin_allowed(const struct mg_connection *conn)
{
    const char *origin = mg_get_header(conn, "Origin");
    const char *host = mg_get_header(conn, "Host");

    if (origin == NULL || host == NULL || host[0] == '\0')
        return 0;
    if (strncasecmp(origin, "http://", 7) == 0)
        origin += 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        origin += 8;
    else
        return 0;
    return strcasecmp(origin, host) == 0;
}

/* Copy a well-formed session token from the Cookie header into token.
 * Returns 0, -1 when there is no session cookie, -2 when it is
 * malformed. */
static int session_cookie(const struct mg_connection *conn, char *token,
                          size_t len)
{
    int rc = auth_cookie_get(mg_get_header(conn, "Cookie"), AUTH_COOKIE_NAME,
                             token, len);

    if (rc == -1)
        return -1;
    if (rc != 0 || !auth_session_token_valid(token))
        return -2;
    return 0;
}

/* Reject the upgrade with an HTTP error in the REST API's form
 * {"error": {"code", "message"}}, and log it as api.c does. civetweb's
 * mg_response_header_start fails on a WebSocket request, so the response
 * is written whole. */
static void reject(struct mg_connection *conn, int64_t account,
                   const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reject(struct mg_connection *conn, int64_t account,
                   const char *code, const char *fmt, ...)
{
    const struct mg_request_info *info = mg_get_request_info(conn);
    int status = api_status_for_code(code);
    char message[512];
    cJSON *body = cJSON_CreateObject(), *error;
    char *text;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    /* A full gateway (503) is load, not a fault of the gateway. */
    log_write(status == 503   ? LOG_LEVEL_WARN
              : status >= 500 ? LOG_LEVEL_ERROR
                              : LOG_LEVEL_INFO,
              "%s %s -> %d %s: %s addr=%s account=%lld", info->request_method,
              info->local_uri, status, code, message, info->remote_addr,
              (long long)account);

    error = cJSON_AddObjectToObject(body, "error");
    cJSON_AddStringToObject(error, "code", code);
    cJSON_AddStringToObject(error, "message", message);
    text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\n"
              "Content-Type: application/json; charset=utf-8\r\n"
              "Content-Length: %zu\r\n"
              "Cache-Control: no-store\r\n"
              "Connection: close\r\n"
              "%s\r\n\r\n",
              status, mg_get_response_code_text(conn, status),
              text ? strlen(text) : 0, HTTP_SECURITY_HEADERS);
    if (text != NULL)
        mg_write(conn, text, strlen(text));
    free(text);
    mg_disable_connection_keep_alive(conn);
}

/* Before the handshake: check the origin, the session and the connection
 * limit, and send an HTTP error for the first that fails. Returns 0 to
 * upgrade. */
static int on_connect(const struct mg_connection *cconn, void *cbdata)
{
    /* civetweb passes the connection as const, but sending a response
     * needs it writable; this is the connection's own thread. */
    struct mg_connection *conn = (struct mg_connection *)cconn;
    struct auth_identity who;
    char token[128], code[64];
    struct error err = {0};
    int rc, count;

    (void)cbdata;
    if (!origin_allowed(conn)) {
        const char *origin = mg_get_header(conn, "Origin");
        reject(conn, 0, "forbidden",
               "the Origin header '%.100s' is not this gateway's origin; "
               "open the live connection from a page this gateway serves",
               origin ? origin : "(none)");
        return 1;
    }
    rc = session_cookie(conn, token, sizeof(token));
    if (rc != 0) {
        sodium_memzero(token, sizeof(token));
        reject(conn, 0, "unauthorized",
               rc == -1 ? "sign in first; the live connection needs the "
                          "session cookie"
                        : "the session cookie is invalid; sign in again");
        return 1;
    }
    rc = api_resolve_credential(AUTH_METHOD_SESSION, token, &who, code,
                                sizeof(code), &err);
    sodium_memzero(token, sizeof(token));
    if (rc != 0) {
        reject(conn, 0, code, "%s", err.msg);
        return 1;
    }
    pthread_mutex_lock(&live.lock);
    count = live.nviewers;
    pthread_mutex_unlock(&live.lock);
    if (count >= live.opt.max_connections) {
        reject(conn, who.account_id, "too_many_connections",
               "this gateway serves at most %d live connections; try "
               "again later",
               live.opt.max_connections);
        return 1;
    }
    return 0;
}

static int parse_address(const char *text, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, text, &((struct sockaddr_in *)out)->sin_addr)) {
        out->ss_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)out)->sin6_addr)) {
        out->ss_family = AF_INET6;
        return 0;
    }
    return -1;
}

static int same_endpoint(const struct sockaddr_storage *a,
                         const struct sockaddr_storage *addr, int port)
{
    if (a->ss_family != addr->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)addr;
        return ntohs(x->sin_port) == port &&
               x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
    const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)addr;
    return ntohs(x->sin6_port) == port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

static int local_port(int fd)
{
    struct sockaddr_storage local;
    socklen_t n = sizeof(local);

    if (getsockname(fd, (struct sockaddr *)&local, &n) != 0)
        return -1;
    if (local.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&local)->sin_port);
    if (local.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&local)->sin6_port);
    return -1;
}

/* 1 when fd is the socket of the connection from remote (port) to
 * server_port. */
static int is_connection_socket(int fd, const struct sockaddr_storage *remote,
                                int remote_port, int server_port)
{
    struct sockaddr_storage peer;
    socklen_t n = sizeof(peer);

    if (fd < 0 || getpeername(fd, (struct sockaddr *)&peer, &n) != 0)
        return 0;
    return same_endpoint(&peer, remote, remote_port) &&
           local_port(fd) == server_port;
}

/* The last socket find_socket found, where it looks first. */
static atomic_int last_socket = -1;
/* Descriptors on either side of last_socket that find_socket tries,
 * after last_socket itself, before it reads /proc/self/fd. */
#define LIVE_SOCKET_NEAR 8

/* The descriptor of the connection's socket, found by its addresses, or
 * -1. civetweb 1.15 has no call that returns it, and none that ends a
 * server connection blocked in a write; shutdown(2) on the socket does
 * both. The descriptor stays the connection's until its close handler
 * returns.
 * Linux gives a new socket the lowest free descriptor, so connections
 * that arrive together have neighbouring ones: those near the last one
 * found are tried first, a few calls each. Only then is every entry of
 * /proc/self/fd tried, which costs a call per open descriptor, and with
 * 1,000 viewers connecting at once was most of the gateway's time. */
static int find_socket(const struct mg_request_info *info)
{
    struct sockaddr_storage remote;
    struct dirent *entry;
    DIR *dir;
    int found = -1, last = atomic_load(&last_socket);

    if (parse_address(info->remote_addr, &remote) != 0)
        return -1;
    for (int d = 0; last >= 0 && d <= LIVE_SOCKET_NEAR && found < 0; d++) {
        if (is_connection_socket(last + d, &remote, info->remote_port,
                                 info->server_port))
            found = last + d;
        else if (d > 0 && is_connection_socket(last - d, &remote,
                                               info->remote_port,
                                               info->server_port))
            found = last - d;
    }
    dir = found < 0 ? opendir("/proc/self/fd") : NULL;
    while (dir != NULL && found < 0 && (entry = readdir(dir)) != NULL) {
        char *end;
        long fd = strtol(entry->d_name, &end, 10);

        if (*end != '\0' || end == entry->d_name || fd == dirfd(dir))
            continue;
        if (is_connection_socket((int)fd, &remote, info->remote_port,
                                 info->server_port))
            found = (int)fd;
    }
    if (dir != NULL)
        closedir(dir);
    if (found >= 0)
        atomic_store(&last_socket, found);
    return found;
}

/* After the handshake: create the viewer and start its writer. */
static void on_ready(struct mg_connection *conn, void *cbdata)
{
    const struct mg_request_info *info = mg_get_request_info(conn);
    struct viewer *v = calloc(1, sizeof(*v));
    struct auth_identity who;
    struct error err = {0};
    char code[64];
    int authorized;

    (void)cbdata;
    if (v == NULL) {
        int fd = find_socket(info);
        log_error("live: out of memory for a connection from %s; closing "
                  "it",
                  info->remote_addr);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
        return;
    }
    v->conn = conn;
    v->fd = find_socket(info);
    if (v->fd >= 0) {
        int size = LIVE_SOCKET_SNDBUF, on = 1;
        socklen_t n = sizeof(v->sndbuf);
        setsockopt(v->fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        /* Each write is one or more whole frames, so nothing gains from
         * Nagle's algorithm. With it, an event that followed another
         * within the browser's delayed-ACK time (40 ms on Linux) waited
         * for that ACK. */
        setsockopt(v->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        if (getsockopt(v->fd, SOL_SOCKET, SO_SNDBUF, &v->sndbuf, &n) != 0)
            v->sndbuf = 0;
    }
    /* Without the socket a sender cannot tell whether a write would
     * block, so the writer writes everything. */
    v->slow = v->fd < 0 || v->sndbuf <= 0;
    snprintf(v->addr, sizeof(v->addr), "%s", info->remote_addr);
    cond_init_monotonic(&v->wake);
    /* The connect handler checked the session; this finds it in the
     * credential cache. */
    authorized = session_cookie(conn, v->token, sizeof(v->token)) == 0 &&
                 api_resolve_credential(AUTH_METHOD_SESSION, v->token, &who,
                                        code, sizeof(code), &err) == 0;
    if (authorized)
        v->account = who.account_id;

    pthread_mutex_lock(&live.lock);
    v->id = ++live.next_id;
    v->next = live.viewers;
    live.viewers = v;
    live.nviewers++;
    if (!authorized)
        close_viewer_locked(v, CLOSE_POLICY,
                            "the session could not be checked; sign in "
                            "again");
    else if (!live.running || live.nviewers > live.opt.max_connections)
        close_viewer_locked(v, CLOSE_TRY_LATER,
                            "too many live connections; try again later");
    if (pthread_create(&v->writer, NULL, writer_main, v) == 0) {
        v->writer_started = 1;
    } else {
        log_error("live viewer=%llu: cannot start its writer thread; "
                  "closing it",
                  (unsigned long long)v->id);
        fail_viewer_locked(v);
    }
    mg_set_user_connection_data(conn, v);
    pthread_mutex_unlock(&live.lock);
    if (v->fd < 0)
        log_warn("live viewer=%llu: its socket was not found in "
                 "/proc/self/fd, so a browser that stops reading is only "
                 "closed when it closes the connection itself",
                 (unsigned long long)v->id);
    log_info("live connected viewer=%llu account=%lld addr=%s",
             (unsigned long long)v->id, (long long)v->account, v->addr);
}

static void viewer_free(struct viewer *v)
{
    for (int i = 0; i < v->nsubs; i++) {
        pending_clear_locked(v->subs[i]);
        free(v->subs[i]);
    }
    queue_clear_locked(v);
    commands_clear_locked(v);
    free(v->in_data);
    sodium_memzero(v->token, sizeof(v->token));
    pthread_cond_destroy(&v->wake);
    free(v);
}

/* The connection is over: stop the writer and free the viewer. civetweb
 * closes the socket after this returns. */
static void on_close(const struct mg_connection *conn, void *cbdata)
{
    struct viewer *v = mg_get_user_connection_data(conn);
    int64_t deadline;

    (void)cbdata;
    if (v == NULL)
        return;
    mg_set_user_connection_data(conn, NULL);

    pthread_mutex_lock(&live.lock);
    close_viewer_locked(v, 0, NULL);
    v->closed = 1;
    for (struct viewer **pp = &live.viewers; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == v) {
            *pp = v->next;
            break;
        }
    }
    live.nviewers--;
    ready_remove_locked(v);
    pthread_cond_broadcast(&v->wake);
    /* A writer or sender blocked on a browser that does not read is
     * released by shutting the socket down. */
    deadline = clock_monotonic_ms() + LIVE_CLOSE_WAIT_MS;
    while (((v->writer_started && !v->writer_done) || v->owned) &&
           clock_monotonic_ms() < deadline) {
        v->waiting_for_socket = 1;
        wait_until(&v->wake, deadline);
    }
    if (!v->writer_done || v->owned)
        shutdown_locked(v);
    pthread_mutex_unlock(&live.lock);

    if (v->writer_started)
        pthread_join(v->writer, NULL);
    /* A sender may still own the socket. It lets go soon, because a
     * blocked write fails once the socket is shut down above. */
    pthread_mutex_lock(&live.lock);
    while (v->owned) {
        v->waiting_for_socket = 1;
        pthread_cond_wait(&v->wake, &live.lock);
    }
    pthread_mutex_unlock(&live.lock);
    log_info("live closed viewer=%llu account=%lld messages_sent=%llu",
             (unsigned long long)v->id, (long long)v->account,
             (unsigned long long)v->messages_sent);
    viewer_free(v);
}

/* ---- the ticker thread and setup ----------------------------------------- */

static void *ticker_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&live.lock);
    while (live.running) {
        int64_t now = clock_monotonic_ms(), next = now + 1000;

        for (struct viewer *v = live.viewers; v != NULL; v = v->next) {
            if (!v->closing || v->shut || v->fd < 0)
                continue;
            if (now >= v->close_deadline_ms) {
                log_info("live viewer=%llu account=%lld did not close "
                         "within %d ms; shutting its socket down",
                         (unsigned long long)v->id, (long long)v->account,
                         LIVE_CLOSE_GRACE_MS);
                shutdown_locked(v);
            } else if (v->close_deadline_ms < next) {
                next = v->close_deadline_ms;
            }
        }
        wait_until(&live.ticker_wake, next);
    }
    pthread_mutex_unlock(&live.lock);
    return NULL;
}

void live_configure(const struct live_options *opt)
{
    live.opt = *opt;
    live.configured = 1;
}

int live_max_connections(void)
{
    return live.configured ? live.opt.max_connections
                           : LIVE_CONNECTIONS_DEFAULT;
}

int live_start(struct mg_context *ctx, struct error *err)
{
    if (!live.configured) {
        live.opt.max_connections = LIVE_CONNECTIONS_DEFAULT;
        live.opt.ping_interval_s = LIVE_PING_INTERVAL_DEFAULT_S;
    }
    if (live.opt.max_connections < 1 || live.opt.ping_interval_s < 1)
        return error_set(err, -EINVAL,
                         "invalid live options: max_connections %d and "
                         "ping_interval_s %d must be >= 1",
                         live.opt.max_connections, live.opt.ping_interval_s);
    if (mg_check_feature(16) == 0)
        return error_set(err, -ENOTSUP,
                         "this civetweb library was built without "
                         "WebSocket support (USE_WEBSOCKET); install one "
                         "with it, such as Debian's libcivetweb1");
    cond_init_monotonic(&live.ticker_wake);
    pthread_cond_init(&live.sender_wake, NULL);
    pthread_mutex_lock(&live.lock);
    live.running = 1;
    pthread_mutex_unlock(&live.lock);
    if (pthread_create(&live.ticker, NULL, ticker_main, NULL) != 0) {
        live.running = 0;
        pthread_cond_destroy(&live.ticker_wake);
        pthread_cond_destroy(&live.sender_wake);
        return error_set(err, -EAGAIN, "cannot start the live ticker thread");
    }
    live.ticker_started = 1;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int senders = cores < LIVE_SENDERS_MIN   ? LIVE_SENDERS_MIN
                  : cores > LIVE_SENDERS_MAX ? LIVE_SENDERS_MAX
                                             : (int)cores;
    for (live.nsenders = 0; live.nsenders < senders; live.nsenders++) {
        if (pthread_create(&live.senders[live.nsenders], NULL, sender_main,
                           NULL) != 0) {
            int started = live.nsenders;
            live_stop();
            return error_set(err, -EAGAIN,
                             "cannot start live sender thread %d of %d",
                             started + 1, senders);
        }
    }
    upstream_set_event_handler(on_backend_event, NULL);
    upstream_set_connect_handler(on_backend_connect, NULL);
    mg_set_websocket_handler(ctx, LIVE_PATH, on_connect, on_ready, on_data,
                             on_close, NULL);
    log_info("live progress at ws://.../api/v1/live: at most %d "
             "connections, a ping every %d s",
             live.opt.max_connections, live.opt.ping_interval_s);
    return 0;
}

void live_stop(void)
{
    if (!live.ticker_started)
        return;
    upstream_set_event_handler(NULL, NULL);
    upstream_set_connect_handler(NULL, NULL);
    pthread_mutex_lock(&live.lock);
    live.running = 0;
    pthread_cond_signal(&live.ticker_wake);
    pthread_cond_broadcast(&live.sender_wake);
    pthread_mutex_unlock(&live.lock);
    pthread_join(live.ticker, NULL);
    for (int i = 0; i < live.nsenders; i++)
        pthread_join(live.senders[i], NULL);
    live.nsenders = 0;
    pthread_cond_destroy(&live.ticker_wake);
    pthread_cond_destroy(&live.sender_wake);
    live.ticker_started = 0;
}
