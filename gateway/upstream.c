/*
 * Backend connection (see upstream.h). Threads: civetweb workers call
 * upstream_call, which queues the request under the mutex and wakes the
 * lws thread with lws_cancel_service; the lws thread writes queued
 * messages, matches responses to waiting requests by id and signals them.
 * Only the lws thread touches the lws connection. The event and connect
 * handlers are read under the mutex and called without it, so a handler
 * may take its own locks.
 */
#include "upstream.h"

#include <errno.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "wsqueue.h"

#define SUBPROTOCOL "trainyard.v1"
#define MESSAGE_MAX (1024 * 1024)
#define BACKOFF_MIN_US (100 * 1000)
#define BACKOFF_MAX_US (5 * 1000 * 1000)

enum link_state { LINK_DOWN, LINK_CONNECTING, LINK_HELLO_SENT, LINK_READY };

struct pending {
    struct pending *next;
    uint64_t id;
    int done;
    int failed; /* connection lost before the response came */
    char *reply;
    pthread_cond_t cond;
};

static struct {
    pthread_mutex_t lock;
    pthread_t thread;
    int started;
    volatile int stopping;

    struct upstream_options opt;
    char host[256];
    char secret[128];

    struct lws_context *context;
    struct lws *wsi;
    enum link_state state;
    lws_sorted_usec_list_t reconnect_sul;
    lws_usec_t backoff_us;
    unsigned failures; /* connect failures since the last success */

    struct ws_queue out; /* requests waiting for the socket */
    struct ws_inbuf in;
    struct pending *pending;
    uint64_t next_id;

    upstream_event_fn on_event;
    void *event_user;
    upstream_connect_fn on_connect;
    void *connect_user;
} up = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Fail every waiting request; called with the lock held. */
static void fail_pending_locked(void)
{
    for (struct pending *p = up.pending; p != NULL; p = p->next) {
        p->done = 1;
        p->failed = 1;
        pthread_cond_signal(&p->cond);
    }
    up.pending = NULL;
    ws_queue_clear(&up.out);
}

static void connect_backend(lws_sorted_usec_list_t *sul);

static void schedule_reconnect(void)
{
    if (up.stopping)
        return;
    lws_sul_schedule(up.context, 0, &up.reconnect_sul, connect_backend,
                     up.backoff_us);
    log_write(up.failures <= 1 ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG,
              "reconnecting to the backend in %lld ms",
              (long long)(up.backoff_us / 1000));
    up.backoff_us *= 2;
    if (up.backoff_us > BACKOFF_MAX_US)
        up.backoff_us = BACKOFF_MAX_US;
}

static void connect_backend(lws_sorted_usec_list_t *sul)
{
    struct lws_client_connect_info ci;

    (void)sul;
    memset(&ci, 0, sizeof(ci));
    ci.context = up.context;
    ci.address = up.host;
    ci.port = up.opt.port;
    ci.path = "/";
    ci.host = up.host;
    ci.origin = up.host;
    ci.protocol = SUBPROTOCOL;
    ci.pwsi = &up.wsi;

    pthread_mutex_lock(&up.lock);
    up.state = LINK_CONNECTING;
    pthread_mutex_unlock(&up.lock);
    if (lws_client_connect_via_info(&ci) == NULL) {
        pthread_mutex_lock(&up.lock);
        up.state = LINK_DOWN;
        pthread_mutex_unlock(&up.lock);
        schedule_reconnect();
    }
}

static void send_hello(struct lws *wsi)
{
    cJSON *hello = cJSON_CreateObject();
    char *text;

    cJSON_AddStringToObject(hello, "type", "hello");
    cJSON_AddNumberToObject(hello, "version", 1);
    cJSON_AddStringToObject(hello, "secret", up.secret);
    text = cJSON_PrintUnformatted(hello);
    cJSON_Delete(hello);

    pthread_mutex_lock(&up.lock);
    /* The hello must go before any request queued while disconnected. */
    struct ws_queue rest = up.out;
    memset(&up.out, 0, sizeof(up.out));
    ws_queue_push(&up.out, text, strlen(text));
    up.state = LINK_HELLO_SENT;
    pthread_mutex_unlock(&up.lock);
    ws_queue_clear(&rest);
    free(text);
    lws_callback_on_writable(wsi);
}

/* Handle one whole message from the backend. */
static void handle_message(const char *text, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");

    if (!cJSON_IsString(type)) {
        log_warn("backend sent a message without a type; ignored");
    } else if (strcmp(type->valuestring, "welcome") == 0) {
        pthread_mutex_lock(&up.lock);
        up.state = LINK_READY;
        up.backoff_us = BACKOFF_MIN_US;
        up.failures = 0;
        upstream_connect_fn on_connect = up.on_connect;
        void *connect_user = up.connect_user;
        pthread_mutex_unlock(&up.lock);
        log_info("connected to the backend at %s:%d", up.host, up.opt.port);
        if (on_connect != NULL)
            on_connect(connect_user);
    } else if (strcmp(type->valuestring, "event") == 0) {
        pthread_mutex_lock(&up.lock);
        upstream_event_fn on_event = up.on_event;
        void *event_user = up.event_user;
        pthread_mutex_unlock(&up.lock);
        if (on_event != NULL)
            on_event(event_user, root);
    } else if (strcmp(type->valuestring, "response") == 0 &&
               cJSON_IsNumber(id)) {
        uint64_t want = (uint64_t)id->valuedouble;
        pthread_mutex_lock(&up.lock);
        for (struct pending **pp = &up.pending; *pp != NULL;
             pp = &(*pp)->next) {
            struct pending *p = *pp;
            if (p->id != want)
                continue;
            *pp = p->next;
            p->reply = strndup(text, len);
            p->done = 1;
            pthread_cond_signal(&p->cond);
            break;
        }
        pthread_mutex_unlock(&up.lock);
    } else if (strcmp(type->valuestring, "error") == 0) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        log_error("backend rejected the gateway: %s",
                  cJSON_IsString(m) ? m->valuestring : "no reason given");
    }
    cJSON_Delete(root);
}

static int callback_backend(struct lws *wsi, enum lws_callback_reasons reason,
                            void *user, void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        send_hello(wsi);
        return 0;

    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (ws_inbuf_append(&up.in, in, len, MESSAGE_MAX) != 0) {
            log_error("backend message over %d bytes; reconnecting",
                      MESSAGE_MAX);
            return -1;
        }
        if (lws_is_final_fragment(wsi) &&
            lws_remaining_packet_payload(wsi) == 0) {
            handle_message(up.in.data, up.in.len);
            ws_inbuf_reset(&up.in);
        }
        return 0;

    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        int rc;
        pthread_mutex_lock(&up.lock);
        rc = ws_queue_write_one(&up.out, wsi);
        int more = up.out.head != NULL;
        pthread_mutex_unlock(&up.lock);
        if (rc != 0)
            return -1;
        if (more)
            lws_callback_on_writable(wsi);
        return 0;
    }

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        pthread_mutex_lock(&up.lock);
        if (up.wsi != NULL && up.state >= LINK_HELLO_SENT &&
            up.out.head != NULL)
            lws_callback_on_writable(up.wsi);
        pthread_mutex_unlock(&up.lock);
        return 0;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        /* While the backend is down this repeats every few seconds: warn
         * on the first failure and every 20th, the rest at debug level. */
        up.failures++;
        log_write(up.failures % 20 == 1 ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG,
                  "cannot connect to the backend at %s:%d: %s (attempt %u)",
                  up.host, up.opt.port,
                  in ? (const char *)in : "no reason given", up.failures);
        /* fall through */
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (reason == LWS_CALLBACK_CLIENT_CLOSED)
            log_warn("backend connection closed");
        pthread_mutex_lock(&up.lock);
        up.wsi = NULL;
        up.state = LINK_DOWN;
        fail_pending_locked();
        pthread_mutex_unlock(&up.lock);
        ws_inbuf_reset(&up.in);
        schedule_reconnect();
        return 0;

    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols client_protocols[] = {
    {SUBPROTOCOL, callback_backend, 0, 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *upstream_thread(void *arg)
{
    (void)arg;
    connect_backend(NULL);
    while (!up.stopping)
        if (lws_service(up.context, 0) < 0)
            break;
    return NULL;
}

int upstream_start(const struct upstream_options *opt, struct error *err)
{
    struct lws_context_creation_info info;

    up.opt = *opt;
    snprintf(up.host, sizeof(up.host), "%s", opt->host);
    snprintf(up.secret, sizeof(up.secret), "%s", opt->secret);
    up.opt.host = up.host;
    up.opt.secret = up.secret;
    up.backoff_us = BACKOFF_MIN_US;
    up.next_id = 1;
    up.stopping = 0;

    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = client_protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    up.context = lws_create_context(&info);
    if (up.context == NULL)
        return error_set(err, -EIO, "cannot create the backend client");

    if (pthread_create(&up.thread, NULL, upstream_thread, NULL) != 0) {
        lws_context_destroy(up.context);
        up.context = NULL;
        return error_set(err, -EAGAIN, "cannot start the backend thread");
    }
    up.started = 1;
    return 0;
}

void upstream_stop(void)
{
    if (!up.started)
        return;
    up.stopping = 1;
    lws_cancel_service(up.context);
    pthread_join(up.thread, NULL);
    lws_context_destroy(up.context);
    up.context = NULL;

    pthread_mutex_lock(&up.lock);
    fail_pending_locked();
    up.state = LINK_DOWN;
    pthread_mutex_unlock(&up.lock);
    ws_inbuf_free(&up.in);
    up.started = 0;
}

void upstream_set_event_handler(upstream_event_fn fn, void *user)
{
    pthread_mutex_lock(&up.lock);
    up.on_event = fn;
    up.event_user = user;
    pthread_mutex_unlock(&up.lock);
}

void upstream_set_connect_handler(upstream_connect_fn fn, void *user)
{
    pthread_mutex_lock(&up.lock);
    up.on_connect = fn;
    up.connect_user = user;
    pthread_mutex_unlock(&up.lock);
}

int upstream_ready(void)
{
    int ready;

    pthread_mutex_lock(&up.lock);
    ready = up.state == LINK_READY;
    pthread_mutex_unlock(&up.lock);
    return ready;
}

static void remove_pending_locked(struct pending *target)
{
    for (struct pending **pp = &up.pending; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == target) {
            *pp = target->next;
            return;
        }
    }
}

int upstream_call(const char *op, const cJSON *args, int timeout_ms,
                  cJSON **response, struct error *err)
{
    return upstream_call_as(0, op, args, timeout_ms, response, err);
}

int upstream_call_as(int64_t account, const char *op, const cJSON *args,
                     int timeout_ms, cJSON **response, struct error *err)
{
    struct pending p;
    struct timespec deadline;
    cJSON *req;
    char *text;
    int rc = 0;

    memset(&p, 0, sizeof(p));
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p.cond, &attr);
    pthread_condattr_destroy(&attr);

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

    pthread_mutex_lock(&up.lock);
    if (up.state != LINK_READY) {
        pthread_mutex_unlock(&up.lock);
        pthread_cond_destroy(&p.cond);
        return error_set(err, -ENOTCONN,
                         "the backend is not connected; try again shortly, "
                         "and check that the backend is running");
    }
    p.id = up.next_id++;
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "type", "request");
    cJSON_AddNumberToObject(req, "id", (double)p.id);
    cJSON_AddStringToObject(req, "op", op);
    if (account > 0)
        cJSON_AddNumberToObject(req, "account", (double)account);
    if (args != NULL)
        cJSON_AddItemToObject(req, "args", cJSON_Duplicate(args, 1));
    text = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (text == NULL || ws_queue_push(&up.out, text, strlen(text)) != 0) {
        pthread_mutex_unlock(&up.lock);
        free(text);
        pthread_cond_destroy(&p.cond);
        return error_set(err, -ENOMEM, "out of memory sending '%s'", op);
    }
    free(text);
    p.next = up.pending;
    up.pending = &p;
    pthread_mutex_unlock(&up.lock);
    lws_cancel_service(up.context);

    pthread_mutex_lock(&up.lock);
    while (!p.done && rc == 0)
        rc = pthread_cond_timedwait(&p.cond, &up.lock, &deadline);
    if (!p.done)
        remove_pending_locked(&p);
    pthread_mutex_unlock(&up.lock);
    pthread_cond_destroy(&p.cond);

    if (!p.done)
        return error_set(err, -ETIMEDOUT,
                         "the backend did not answer '%s' within %d ms", op,
                         timeout_ms);
    if (p.failed)
        return error_set(err, -ENOTCONN,
                         "the backend connection was lost during '%s'; "
                         "try again",
                         op);

    *response = cJSON_Parse(p.reply);
    free(p.reply);
    if (*response == NULL)
        return error_set(err, -EPROTO, "the backend's response to '%s' is "
                                       "not valid JSON", op);
    return 0;
}
