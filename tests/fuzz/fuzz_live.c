/*
 * libFuzzer target for the browser's live progress WebSocket,
 * /api/v1/live (gateway/live.c). Each input opens one WebSocket to the
 * real gateway with a credential, sends the frames it encodes and reads
 * every message the gateway sends back. The gateway and the backend run
 * in this process on 127.0.0.1 (support/fuzz_stack.c).
 *
 * Input format:
 *
 *   byte 0   credential, low 3 bits, with the Origin header sent:
 *            0 the user's session cookie, Origin http://HOST, the
 *              gateway's own (HOST is the Host header, 127.0.0.1:PORT)
 *            1 the user's cookie, Origin https://HOST
 *            2 the admin's cookie, Origin http://HOST
 *            3 the user's cookie, Origin http://evil.example
 *            4 the user's cookie, no Origin
 *            5 no cookie, Origin http://HOST
 *            6 a well-formed session token of no session, Origin
 *              http://HOST
 *            7 the user's cookie, Origin http://127.0.0.1:PORT+1
 *   then     frames, each H LEN PAYLOAD:
 *     H        bits 0-3 the opcode (all 16 values are sent as they
 *              are), bit 7 FIN. Bits 5-6 append spaces to the payload:
 *              0 none, 1 1 KiB, 2 16 KiB, 3 64 KiB. Bit 4: before this
 *              frame, the backend starts a training of the user's model
 *              2 and of account 3's model 4, which stores and announces
 *              new progress events of both.
 *     LEN      the payload length, 0 to 255 (fewer bytes when the input
 *              ends first)
 *   Frames stop at the first close frame, at the first frame the gateway
 *   must close the connection for (an unknown opcode, a continuation
 *   without a message, a new message inside a fragmented one), or when
 *   FRAMES_BYTES_MAX payload bytes were sent.
 *
 * Then, unless the connection is closing, the target ends a fragmented
 * message with an empty final continuation frame and sends a WebSocket
 * ping with a known payload and the text {"type":"ping"}. Pongs leave in
 * the order the gateway read their pings, so the JSON pong that follows
 * the WebSocket pong of that payload is the reply to the final ping. The
 * target reads until it arrives, then until every subscribe and
 * unsubscribe got its response, then closes with code 1000 and reads
 * until the gateway's close frame or the end of the connection.
 *
 * Set-up, once per process: the stack of fuzz_stack.h, with at most
 * LIVE_CONNECTIONS live connections and a WebSocket ping from the
 * gateway every second. Account 3 is on the Pro plan here, so that its
 * model 4 can train. The seeded database contains stored progress events:
 * 30 of the user's model 1, 5 of the admin's model 3, 20 of account 3's
 * model 4, and 1,010 of the user's model 5 (two pages of progress.after).
 * Trainings that bit 4 starts fail at the backend's next tick, because
 * the stack starts no trainers. Each start, queue position and failure
 * stores a state event. After each input, events of models 2 and 4 but the
 * newest EVENTS_KEPT are deleted once EVENTS_PRUNE_EVERY more trainings were
 * started, so that replays stay short.
 *
 * Checks, besides the sanitizers, that abort so that libFuzzer saves the
 * input:
 *   - the upgrade is rejected with 403 forbidden for a wrong or missing
 *     Origin, with 401 unauthorized (or session_expired) without a valid
 *     session, each with an {"error": {"code", "message"}} body, and
 *     accepted otherwise. A 503 too_many_connections is retried for
 *     CONNECT_RETRY_MS; past that a connection slot has leaked;
 *   - every frame from the gateway is a final text frame, a ping, a pong
 *     or a close. Text is valid UTF-8 and one JSON object with a known
 *     "type". An error has a known code and a message, and is never
 *     internal or backend_unavailable, because the backend runs in this
 *     process;
 *   - events come only for a model that a subscribe named and the
 *     account owns. Per subscription, the first event's seq is above the
 *     least "after" sent, and every later one is the last seq + 1, also
 *     after "subscribed", whose last_seq is the last event's seq;
 *   - every subscribe and unsubscribe that names a valid model gets one
 *     response: subscribed, unsubscribed or an error with the model;
 *   - no event or "subscribed" of account 3's model 4 reaches the user
 *     or the admin, so each subscribe to it gets an error with model 4;
 *   - the pongs carry the payloads of the WebSocket pings sent (their
 *     first 125 bytes), in order;
 *   - a close frame from the gateway carries no payload or a valid RFC
 *     6455 status code. It echoes a valid code of the browser's close
 *     frame, unless the gateway closed first with 1008;
 *   - the gateway answers the final ping, responds to every request, and
 *     closes the connection after a close frame or a frame it rejects,
 *     each within REPLY_TIMEOUT_MS.
 *
 * FUZZ_LIVE_TRACE=1 in the environment prints every frame the gateway
 * sends.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "clock.h"
#include "fuzz_stack.h"
#include "live.h"
#include "wsclient.h"

/* Live connections the gateway allows. Each input opens one, and the
 * gateway may still be closing those of earlier inputs. */
#define LIVE_CONNECTIONS 4
/* How long an input retries a connection that the gateway rejected as
 * one too many. live.c shuts down the socket of a connection that has
 * not closed LIVE_CLOSE_GRACE_MS (5 s) after it began to close. */
#define CONNECT_RETRY_MS 8000
/* Maximum wait for each reply: the final pong, the responses to the
 * requests, the close. */
#define REPLY_TIMEOUT_MS 5000
/* Maximum wait for the backend's tick to start the trainings. */
#define EMIT_TIMEOUT_MS 5000
/* Payload bytes, padding included, sent per input at most. */
#define FRAMES_BYTES_MAX (256 * 1024)
/* Distinct models whose subscriptions an input tracks. */
#define MODELS_TRACKED 512
/* Stored events of the trained models that pruning keeps. */
#define EVENTS_KEPT 50
#define EVENTS_PRUNE_EVERY 16
/* Largest whole number live.c reads from a message (2^53). */
#define WHOLE_MAX 9007199254740992LL
/* A control frame carries at most this many payload bytes (RFC 6455,
 * section 5.5), so the gateway's pong carries at most this many. */
#define CONTROL_PAYLOAD_MAX 125

#define OTHER_ORIGIN "http://evil.example"
#define BARRIER_PAYLOAD "fuzz_live barrier"
/* The user's models that start trainings, and the one with two pages of
 * stored events. */
#define TRAINED_MODEL_ID 2
#define PAGED_MODEL_ID 5
#define PAGED_EVENTS 1010

enum credential {
    CRED_USER,
    CRED_USER_HTTPS,
    CRED_ADMIN,
    CRED_WRONG_ORIGIN,
    CRED_NO_ORIGIN,
    CRED_NO_COOKIE,
    CRED_UNKNOWN_SESSION,
    CRED_OTHER_PORT,
};

/* The subscriptions of one model on the connection, as the browser
 * receives them. */
struct model_state {
    int64_t model;
    int64_t min_after; /* least "after" of the subscribes sent */
    /* seq of the last event, or the last_seq of "subscribed", in the
     * current subscription; -1 for none */
    int64_t last_seq;
    int announced; /* "subscribed" arrived in the current subscription */
};

struct pong {
    unsigned char data[CONTROL_PAYLOAD_MAX];
    size_t len;
};

/* One input's connection and what the gateway must send on it. */
struct live_client {
    struct wsclient ws;
    enum credential cred;
    int64_t account;

    /* The message being assembled from the frames sent, as add_frame in
     * live.c assembles it. */
    char *message;
    size_t message_len;
    int message_active, message_binary, message_oversized;

    int stopped;           /* no more frames: the connection is closing */
    int close_sent;        /* the target's close frame went out */
    int close_code_sent;   /* its valid status code, or 0 */
    int reject_expected;   /* a frame the gateway closes the connection for */
    int server_close;      /* the gateway's close frame arrived */
    int server_close_code; /* its status code, or 0 */
    int ended;             /* the connection ended or failed */

    struct pong *pongs; /* expected, in order */
    size_t pongs_len, pongs_cap, pongs_received;
    size_t barrier; /* index of the barrier's pong in pongs */
    int barrier_sent, barrier_seen, final_pong;

    /* Subscribe and unsubscribe requests with a valid model that the
     * gateway read, and the messages that respond to one: subscribed,
     * unsubscribed and errors with a model. */
    int requests, responses;

    struct model_state models[MODELS_TRACKED];
    int nmodels;
    int models_overflow; /* more models were subscribed than tracked */

    /* For failure reports. */
    size_t frames_sent, bytes_sent;
    int last_opcode, last_fin;
    size_t last_len;
    char last_text[600];
};

static struct live_client *current;
/* 1 when FUZZ_LIVE_TRACE is set: print every frame from the gateway. */
static int trace;

/* Trainings that inputs asked for and that the backend's tick started. */
static atomic_int emits_requested, emits_done;
static int emits_since_prune;

/* ---- Failure reports ----------------------------------------------------- */

static void report_client(void)
{
    const struct live_client *c = current;

    if (c == NULL)
        return;
    fprintf(stderr,
            "credential %d, %zu frames (%zu payload bytes) sent, the last "
            "with opcode 0x%x, FIN %d, %zu bytes; %zu of %zu pongs; close "
            "sent %d, gateway close %d (code %d), ended %d\n",
            (int)c->cred, c->frames_sent, c->bytes_sent, c->last_opcode,
            c->last_fin, c->last_len, c->pongs_received, c->pongs_len,
            c->close_sent, c->server_close, c->server_close_code, c->ended);
    if (c->last_text[0] != '\0')
        fuzz_print_excerpt("last message from the gateway", c->last_text,
                           strlen(c->last_text));
    if (c->ws.len > 0)
        fuzz_print_excerpt("bytes received but not a whole frame",
                           (const char *)c->ws.buf, c->ws.len);
}

/* ---- Seeding and trainings ----------------------------------------------- */

static void seed_sql(struct store *st, const char *sql)
{
    struct error err = {0};

    if (store_exec(st, sql, &err) != 0)
        fuzz_fail("seeding the database: %s", err.msg);
}

/* Store count events of model in session (0: none), as a trainer's
 * start, batch and epoch events. */
static void seed_events(struct store *st, int64_t model, int64_t session,
                        int count)
{
    char sql[1024], session_sql[32] = "NULL";

    if (session > 0)
        snprintf(session_sql, sizeof(session_sql), "%lld", (long long)session);
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM "
             "n WHERE i < %d) "
             "INSERT INTO progress_events (model_id, seq, session_id, kind, "
             "payload, created_at) "
             "SELECT %lld, i, %s, k, printf('{\"event\":\"%%s\",\"batch\":"
             "%%d,\"loss\":%%.4f}', k, i, 1.0 / i), 1700000000000 + i * 1000 "
             "FROM (SELECT i, CASE WHEN i = 1 THEN 'start' WHEN i %% 10 = 0 "
             "THEN 'epoch' ELSE 'batch' END AS k FROM n)",
             count, (long long)model, session_sql);
    seed_sql(st, sql);
}

/* The seed hook: account 3 on Pro, the user's model 5, stored events. */
static void seed_live(struct store *st)
{
    seed_sql(st, "UPDATE accounts SET plan = 'pro' WHERE id = 3;"
                 "INSERT INTO models (id, account_id, dataset_id, name, "
                 "task, architecture, args, created_at) VALUES "
                 "(5, 2, 1, 'history', 'classify', 'yolov8n-cls.yaml', "
                 "'{}', 0);"
                 "INSERT INTO sessions (id, model_id, account_id, "
                 "instance_type_id, mode, state, epochs, epochs_done, rate, "
                 "run_dir, created_at, updated_at) VALUES "
                 "(3, 5, 2, 1, 'epochs', 'completed', 101, 101, 500000, "
                 "'runs/model-5/session-3', 0, 0);");
    seed_events(st, FUZZ_USER_MODEL_ID, 1, 30);
    seed_events(st, FUZZ_ADMIN_MODEL_ID, 0, 5);
    seed_events(st, FUZZ_OTHER_MODEL_ID, 2, 20);
    seed_events(st, PAGED_MODEL_ID, 3, PAGED_EVENTS);
}

/* Start an epochs training of model, which stores a state event. The
 * previous one may still wait for its launch, which -EBUSY reports. */
static void start_training(struct backend *be, int64_t account, int64_t model)
{
    struct sessions_start_request req = {0};
    struct error err = {0};
    int64_t session;
    int rc;

    req.account_id = account;
    req.model_id = model;
    req.instance_type_id = 1;
    req.mode = SESSION_MODE_EPOCHS;
    req.epochs = 1;
    req.payment = SESSION_PAY_BALANCE;
    rc = sessions_start(be->sessions, &req, &session, &err);
    if (rc != 0 && rc != -EBUSY)
        fuzz_fail("starting a training of model %lld: %s", (long long)model,
                  err.msg);
}

/* The tick hook, on the backend's thread, which owns be->sessions. */
static void start_requested_trainings(struct backend *be)
{
    int requested = atomic_load(&emits_requested);

    while (atomic_load(&emits_done) < requested) {
        start_training(be, FUZZ_USER_ID, TRAINED_MODEL_ID);
        start_training(be, FUZZ_OTHER_ID, FUZZ_OTHER_MODEL_ID);
        atomic_fetch_add(&emits_done, 1);
    }
}

/* Have the backend start the trainings of bit 4, and wait until it did. */
static void emit_events(void)
{
    int requested = atomic_fetch_add(&emits_requested, 1) + 1;
    int64_t deadline = clock_monotonic_ms() + EMIT_TIMEOUT_MS;

    while (atomic_load(&emits_done) < requested) {
        if (clock_monotonic_ms() > deadline)
            fuzz_fail("the backend's tick did not start the trainings "
                      "within %d ms",
                      EMIT_TIMEOUT_MS);
        usleep(1000);
    }
    emits_since_prune++;
}

/* Delete the trained models' events but the newest EVENTS_KEPT. */
static void prune_events(void)
{
    char sql[512];
    struct error err = {0};

    if (emits_since_prune < EVENTS_PRUNE_EVERY)
        return;
    emits_since_prune = 0;
    snprintf(sql, sizeof(sql),
             "DELETE FROM progress_events WHERE model_id IN (%d, %d) AND "
             "seq <= (SELECT MAX(seq) FROM progress_events AS newer WHERE "
             "newer.model_id = progress_events.model_id) - %d",
             TRAINED_MODEL_ID, FUZZ_OTHER_MODEL_ID, EVENTS_KEPT);
    if (store_exec(&fuzz_stack.store, sql, &err) != 0)
        fuzz_fail("deleting old progress events: %s", err.msg);
}

/* ---- Helpers ------------------------------------------------------------- */

/* 1 when s[0..len) is valid UTF-8 (RFC 3629): no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
static int utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return 0;
        i += n + 1;
    }
    return 1;
}

/* 1 for a status code that an endpoint may send in a close frame: those
 * RFC 6455 (section 7.4.1) defines, 1012 to 1014 of IANA's WebSocket
 * Close Code Number Registry, and 3000 to 4999 (section 7.4.2). 1004,
 * 1005, 1006 and 1015 must not be sent, and other codes under 3000 are
 * reserved. */
static int close_code_valid(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* Read field name of obj as a whole number in [min, 2^53], as live.c
 * reads model and after. Returns 0 with *out set, 1 when the field is
 * absent, -1 when it has another type or range. */
static int whole_field(const cJSON *obj, const char *name, int64_t min,
                       int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    double d;

    if (v == NULL)
        return 1;
    if (!cJSON_IsNumber(v))
        return -1;
    d = v->valuedouble;
    if (!(d >= (double)min && d <= (double)WHOLE_MAX) ||
        d != (double)(int64_t)d)
        return -1;
    *out = (int64_t)d;
    return 0;
}

static const char *text_field(const cJSON *obj, const char *name)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, name));
}

/* 1 when account owns model in the seeded database; inputs create none. */
static int model_owned(int64_t account, int64_t model)
{
    if (account == FUZZ_USER_ID)
        return model == FUZZ_USER_MODEL_ID || model == TRAINED_MODEL_ID ||
               model == PAGED_MODEL_ID;
    return account == FUZZ_ADMIN_ID && model == FUZZ_ADMIN_MODEL_ID;
}

static struct model_state *find_model(struct live_client *c, int64_t model)
{
    for (int i = 0; i < c->nmodels; i++)
        if (c->models[i].model == model)
            return &c->models[i];
    return NULL;
}

/* ---- What the gateway must do with the frames sent ----------------------- */

/* Note a subscribe or unsubscribe that the gateway reads from a message,
 * as handle_text in live.c reads it. Each with a valid model gets one
 * response with that model, also a subscribe with an invalid "after". */
static void note_message(struct live_client *c, const char *text, size_t len)
{
    const char *end = NULL;
    cJSON *msg = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    const char *type = text_field(msg, "type");
    int64_t model, after = 0;
    struct model_state *m;

    if (!cJSON_IsObject(msg) || type == NULL ||
        (strcmp(type, "subscribe") != 0 && strcmp(type, "unsubscribe") != 0) ||
        whole_field(msg, "model", 1, &model) != 0) {
        cJSON_Delete(msg);
        return;
    }
    c->requests++;
    if (strcmp(type, "unsubscribe") == 0 ||
        whole_field(msg, "after", 0, &after) < 0) {
        cJSON_Delete(msg);
        return;
    }
    cJSON_Delete(msg);
    m = find_model(c, model);
    if (m == NULL && c->nmodels == MODELS_TRACKED) {
        c->models_overflow = 1;
        return;
    }
    if (m == NULL) {
        m = &c->models[c->nmodels++];
        m->model = model;
        m->min_after = after;
        m->last_seq = -1;
        m->announced = 0;
    }
    if (after < m->min_after)
        m->min_after = after;
}

static void expect_pong(struct live_client *c, const unsigned char *data,
                        size_t len)
{
    struct pong *p;

    if (c->pongs_len == c->pongs_cap) {
        size_t cap = c->pongs_cap ? 2 * c->pongs_cap : 16;
        struct pong *grown = realloc(c->pongs, cap * sizeof(*grown));
        if (grown == NULL)
            fuzz_fail("out of memory for %zu pongs", cap);
        c->pongs = grown;
        c->pongs_cap = cap;
    }
    p = &c->pongs[c->pongs_len++];
    p->len = len < CONTROL_PAYLOAD_MAX ? len : CONTROL_PAYLOAD_MAX;
    memcpy(p->data, data, p->len);
}

/* Follow a data frame as add_frame in live.c does. */
static void note_data_frame(struct live_client *c, int opcode, int fin,
                            const unsigned char *data, size_t len)
{
    if (opcode == WSCLIENT_CONTINUATION ? !c->message_active
                                        : c->message_active) {
        c->reject_expected = 1;
        return;
    }
    if (opcode != WSCLIENT_CONTINUATION) {
        c->message_active = 1;
        c->message_binary = opcode == WSCLIENT_BINARY;
    }
    if (!c->message_oversized && c->message_len + len > LIVE_MESSAGE_MAX) {
        c->message_oversized = 1;
        free(c->message);
        c->message = NULL;
    }
    if (!c->message_oversized && len > 0) {
        char *grown = realloc(c->message, c->message_len + len + 1);
        if (grown == NULL)
            fuzz_fail("out of memory for a message of %zu bytes",
                      c->message_len + len);
        c->message = grown;
        memcpy(c->message + c->message_len, data, len);
        c->message_len += len;
    }
    if (!fin)
        return;
    if (!c->message_oversized && !c->message_binary)
        note_message(c, c->message ? c->message : "", c->message_len);
    free(c->message);
    c->message = NULL;
    c->message_len = 0;
    c->message_active = c->message_binary = c->message_oversized = 0;
}

/* Note what the gateway must do with a frame the target sends. */
static void note_frame(struct live_client *c, int opcode, int fin,
                       const unsigned char *data, size_t len)
{
    switch (opcode) {
    case WSCLIENT_CONTINUATION:
    case WSCLIENT_TEXT:
    case WSCLIENT_BINARY:
        note_data_frame(c, opcode, fin, data, len);
        break;
    case WSCLIENT_CLOSE: {
        int code = len >= 2 ? data[0] << 8 | data[1] : 0;
        c->close_sent = 1;
        c->close_code_sent = close_code_valid(code) ? code : 0;
        break;
    }
    case WSCLIENT_PING:
        expect_pong(c, data, len);
        break;
    case WSCLIENT_PONG:
        break;
    default:
        c->reject_expected = 1;
        break;
    }
    if (c->close_sent || c->reject_expected)
        c->stopped = 1;
}

/* ---- Checks of what the gateway sends ------------------------------------ */

static void check_error(struct live_client *c, const cJSON *msg)
{
    static const char *const codes[] = {"invalid_json",   "invalid_request",
                                        "unknown_type",   "payload_too_large",
                                        "not_found",      "conflict",
                                        "limit_exceeded", "backend_unavailable",
                                        "internal",       NULL};
    const char *code = text_field(msg, "code");
    const char *message = text_field(msg, "message");
    int64_t model = 0;
    int known = 0;

    if (code == NULL || message == NULL || message[0] == '\0')
        fuzz_fail("an error has no code or message");
    for (int i = 0; codes[i] != NULL; i++)
        known |= strcmp(code, codes[i]) == 0;
    if (!known)
        fuzz_fail("error code '%s' is not one of docs/LIVE.md", code);
    /* The backend runs in this process and stays up. */
    if (strcmp(code, "internal") == 0 ||
        strcmp(code, "backend_unavailable") == 0)
        fuzz_fail("error %s: %s", code, message);
    if (cJSON_GetObjectItemCaseSensitive(msg, "model") == NULL)
        return;
    if (whole_field(msg, "model", 1, &model) != 0)
        fuzz_fail("an error's model is not a whole number >= 1");
    c->responses++;
    if (model == FUZZ_OTHER_MODEL_ID && strcmp(code, "not_found") != 0 &&
        strcmp(code, "limit_exceeded") != 0 &&
        strcmp(code, "invalid_request") != 0)
        fuzz_fail("a request for account 3's model got error %s", code);
}

/* The model of an event or subscribed message, which a subscribe must
 * have named and the account must own. */
static struct model_state *check_model(struct live_client *c, const cJSON *msg,
                                       const char *type)
{
    struct model_state *m;
    int64_t model;

    if (whole_field(msg, "model", 1, &model) != 0)
        fuzz_fail("a '%s' message has no model", type);
    if (model == FUZZ_OTHER_MODEL_ID)
        fuzz_fail("a '%s' message of account 3's model reached account %lld",
                  type, (long long)c->account);
    if (!model_owned(c->account, model))
        fuzz_fail("a '%s' message of model %lld reached account %lld, which "
                  "does not own it",
                  type, (long long)model, (long long)c->account);
    m = find_model(c, model);
    if (m == NULL && !c->models_overflow)
        fuzz_fail("a '%s' message of model %lld came without a subscribe", type,
                  (long long)model);
    return m;
}

static void check_event(struct live_client *c, const cJSON *msg)
{
    struct model_state *m = check_model(c, msg, "event");
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(msg, "created_at");
    int64_t seq, session;

    if (whole_field(msg, "seq", 1, &seq) != 0 ||
        whole_field(msg, "session", 0, &session) != 0 ||
        text_field(msg, "kind") == NULL || !cJSON_IsNumber(created) ||
        !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(msg, "payload")))
        fuzz_fail("an event lacks seq, session, kind, created_at or payload");
    if (m == NULL)
        return;
    if (m->last_seq < 0 && seq <= m->min_after)
        fuzz_fail("model %lld: the first event has seq %lld, not above the "
                  "least 'after' sent, %lld",
                  (long long)m->model, (long long)seq, (long long)m->min_after);
    if (m->last_seq >= 0 && seq != m->last_seq + 1)
        fuzz_fail("model %lld: event seq %lld after seq %lld; expected %lld, "
                  "with no gap and no duplicate",
                  (long long)m->model, (long long)seq, (long long)m->last_seq,
                  (long long)m->last_seq + 1);
    m->last_seq = seq;
}

static void check_subscribed(struct live_client *c, const cJSON *msg)
{
    struct model_state *m = check_model(c, msg, "subscribed");
    int64_t last_seq;

    if (whole_field(msg, "last_seq", 0, &last_seq) != 0)
        fuzz_fail("a 'subscribed' message has no last_seq");
    if (m == NULL)
        return;
    if (m->announced)
        fuzz_fail("model %lld: a second 'subscribed' without "
                  "'unsubscribed' between",
                  (long long)m->model);
    if (m->last_seq >= 0 && last_seq != m->last_seq)
        fuzz_fail("model %lld: 'subscribed' has last_seq %lld after the "
                  "event of seq %lld",
                  (long long)m->model, (long long)last_seq,
                  (long long)m->last_seq);
    if (m->last_seq < 0 && last_seq < m->min_after)
        fuzz_fail("model %lld: 'subscribed' has last_seq %lld, under the "
                  "least 'after' sent, %lld",
                  (long long)m->model, (long long)last_seq,
                  (long long)m->min_after);
    m->announced = 1;
    m->last_seq = last_seq;
    c->responses++;
}

static void check_unsubscribed(struct live_client *c, const cJSON *msg)
{
    struct model_state *m;
    int64_t model;

    if (whole_field(msg, "model", 1, &model) != 0)
        fuzz_fail("an 'unsubscribed' message has no model");
    c->responses++;
    m = find_model(c, model);
    if (m != NULL) {
        /* A new subscription may start; its events follow the next
         * subscribe. */
        m->last_seq = -1;
        m->announced = 0;
    }
}

/* Check one text message of the gateway. */
static void check_text(struct live_client *c, const unsigned char *data,
                       size_t len)
{
    const char *text = (const char *)data, *end = NULL, *type;
    cJSON *msg;

    snprintf(c->last_text, sizeof(c->last_text), "%.*s", (int)len, text);
    if (!utf8_valid(data, len))
        fuzz_fail("a text message is not valid UTF-8");
    msg = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (msg == NULL || end != text + len)
        fuzz_fail("a text message is not one JSON value");
    type = text_field(msg, "type");
    if (!cJSON_IsObject(msg) || type == NULL)
        fuzz_fail("a message is not an object with a string 'type'");

    if (strcmp(type, "event") == 0) {
        check_event(c, msg);
    } else if (strcmp(type, "subscribed") == 0) {
        check_subscribed(c, msg);
    } else if (strcmp(type, "unsubscribed") == 0) {
        check_unsubscribed(c, msg);
    } else if (strcmp(type, "pong") == 0) {
        if (c->barrier_seen)
            c->final_pong = 1;
    } else if (strcmp(type, "error") == 0) {
        check_error(c, msg);
    } else {
        fuzz_fail("unknown message type '%s'", type);
    }
    cJSON_Delete(msg);
}

static void check_pong(struct live_client *c, const unsigned char *data,
                       size_t len)
{
    const struct pong *p;

    if (c->pongs_received == c->pongs_len)
        fuzz_fail("a pong came with no ping left to reply to");
    p = &c->pongs[c->pongs_received];
    if (len != p->len || memcmp(data, p->data, len) != 0)
        fuzz_fail("pong %zu has %zu bytes, not the %zu of its ping",
                  c->pongs_received + 1, len, p->len);
    if (c->barrier_sent && c->pongs_received == c->barrier)
        c->barrier_seen = 1;
    c->pongs_received++;
}

static void check_close(struct live_client *c, const unsigned char *data,
                        size_t len)
{
    int code;

    if (len == 1)
        fuzz_fail("the gateway's close frame has a 1-byte payload");
    c->server_close = 1;
    if (len == 0)
        return;
    code = data[0] << 8 | data[1];
    c->server_close_code = code;
    if (!close_code_valid(code))
        fuzz_fail("the gateway closed with status code %d", code);
    if (!utf8_valid(data + 2, len - 2))
        fuzz_fail("the reason of the gateway's close frame is not UTF-8");
    /* live.c closes on its own with 1008 when the browser reads too
     * slowly, which may come first. */
    if (c->close_code_sent != 0 && code != c->close_code_sent && code != 1008)
        fuzz_fail("the gateway replied with code %d to close code %d", code,
                  c->close_code_sent);
}

/* Handle one frame from the gateway, and reply as a browser does. */
static void handle_frame(struct live_client *c, struct wsclient_frame *f)
{
    if (trace) {
        char label[64];
        snprintf(label, sizeof(label), "fuzz_live: opcode 0x%x", f->opcode);
        fuzz_print_excerpt(label, (const char *)f->data, f->len);
    }
    if (!f->fin)
        fuzz_fail("the gateway sent a fragment (opcode 0x%x)", f->opcode);
    switch (f->opcode) {
    case WSCLIENT_TEXT:
        check_text(c, f->data, f->len);
        break;
    case WSCLIENT_PING:
        if (f->len > CONTROL_PAYLOAD_MAX)
            fuzz_fail("the gateway sent a ping of %zu bytes", f->len);
        if (!c->close_sent)
            wsclient_send_frame(&c->ws, WSCLIENT_PONG, 1, f->data, f->len);
        break;
    case WSCLIENT_PONG:
        check_pong(c, f->data, f->len);
        break;
    case WSCLIENT_CLOSE:
        check_close(c, f->data, f->len);
        if (!c->close_sent)
            wsclient_send_frame(&c->ws, WSCLIENT_CLOSE, 1, f->data,
                                f->len >= 2 ? 2 : 0);
        c->close_sent = 1;
        c->stopped = 1;
        break;
    default:
        fuzz_fail("the gateway sent a frame of opcode 0x%x", f->opcode);
    }
}

/* Read and check frames until done(c) holds, the connection ends or
 * timeout_ms passes. Returns 1 when done(c) holds. */
static int read_until(struct live_client *c, int (*done)(struct live_client *),
                      int timeout_ms)
{
    int64_t deadline = clock_monotonic_ms() + timeout_ms;

    while (!done(c)) {
        struct wsclient_frame f;
        int64_t left = deadline - clock_monotonic_ms();
        int rc;

        if (c->ended || c->server_close)
            return 0;
        rc = wsclient_read_frame(&c->ws, left > 0 ? (int)left : 0, &f);
        if (rc < 0) {
            c->ended = 1;
            return done(c);
        }
        if (rc == 0)
            return done(c);
        handle_frame(c, &f);
        free(f.data);
    }
    return 1;
}

static int nothing_left(struct live_client *c)
{
    (void)c;
    return 0;
}

static int final_pong_arrived(struct live_client *c)
{
    return c->final_pong;
}

static int responses_arrived(struct live_client *c)
{
    return c->responses >= c->requests;
}

static int connection_over(struct live_client *c)
{
    return c->server_close || c->ended;
}

/* ---- One input ----------------------------------------------------------- */

/* Send one frame of payload and pad spaces, and read what is there. */
static void send_frame(struct live_client *c, int opcode, int fin,
                       const unsigned char *payload, size_t len, size_t pad)
{
    unsigned char *data = malloc(len + pad + 1);

    if (data == NULL)
        fuzz_fail("out of memory for a frame of %zu bytes", len + pad);
    memcpy(data, payload, len);
    memset(data + len, ' ', pad);
    note_frame(c, opcode, fin, data, len + pad);
    c->frames_sent++;
    c->bytes_sent += len + pad;
    c->last_opcode = opcode;
    c->last_fin = fin;
    c->last_len = len + pad;
    if (wsclient_send_frame(&c->ws, opcode, fin, data, len + pad) != 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            fuzz_fail("the gateway read no frame for %d ms", REPLY_TIMEOUT_MS);
        /* The gateway closed the connection, as it may after a close
         * frame or a frame it rejects; what it sent before is read. */
        c->stopped = 1;
    }
    free(data);
    read_until(c, nothing_left, 0);
}

/* Open the connection with cred's headers. Returns the HTTP status. */
static int open_live(struct live_client *c, char *body, size_t body_len)
{
    char headers[512], origin[96] = "";
    const char *token = NULL;
    int port = fuzz_stack.gateway_port;

    switch (c->cred) {
    case CRED_USER_HTTPS:
        snprintf(origin, sizeof(origin), "https://127.0.0.1:%d", port);
        break;
    case CRED_WRONG_ORIGIN:
        snprintf(origin, sizeof(origin), "%s", OTHER_ORIGIN);
        break;
    case CRED_NO_ORIGIN:
        break;
    case CRED_OTHER_PORT:
        snprintf(origin, sizeof(origin), "http://127.0.0.1:%d", port + 1);
        break;
    default:
        snprintf(origin, sizeof(origin), "http://127.0.0.1:%d", port);
        break;
    }
    if (c->cred == CRED_ADMIN)
        token = fuzz_stack.admin.token;
    else if (c->cred == CRED_UNKNOWN_SESSION)
        token = "00112233445566778899aabbccddeeff"
                "00112233445566778899aabbccddeeff";
    else if (c->cred != CRED_NO_COOKIE)
        token = fuzz_stack.user.token;
    snprintf(headers, sizeof(headers), "%s%s%s%s%s%s",
             origin[0] ? "Origin: " : "", origin, origin[0] ? "\r\n" : "",
             token ? "Cookie: " AUTH_COOKIE_NAME "=" : "", token ? token : "",
             token ? "\r\n" : "");
    return wsclient_connect(&c->ws, port, LIVE_PATH, headers, 0, body,
                            body_len);
}

/* Check a rejected upgrade: status and body {"error": {"code",
 * "message"}}. */
static void check_rejection(const struct live_client *c, int status,
                            const char *body)
{
    int origin_wrong = c->cred == CRED_WRONG_ORIGIN ||
                       c->cred == CRED_NO_ORIGIN || c->cred == CRED_OTHER_PORT;
    cJSON *json = cJSON_Parse(body);
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(json, "error");
    const char *code = text_field(error, "code");
    const char *message = text_field(error, "message");

    if (code == NULL || message == NULL)
        fuzz_fail("the rejection %d has no {\"error\": {\"code\", "
                  "\"message\"}} body",
                  status);
    if (api_status_for_code(code) != status)
        fuzz_fail("status %d with error code '%s'", status, code);
    if (origin_wrong && strcmp(code, "forbidden") != 0)
        fuzz_fail("a wrong Origin got %d %s, expected 403 forbidden", status,
                  code);
    if (!origin_wrong && strcmp(code, "unauthorized") != 0 &&
        strcmp(code, "session_expired") != 0)
        fuzz_fail("no valid session got %d %s, expected 401", status, code);
    cJSON_Delete(json);
}

/* Connect, retrying while the gateway is at its connection limit.
 * Returns 1 when the upgrade was accepted. */
static int connect_client(struct live_client *c)
{
    int64_t deadline = clock_monotonic_ms() + CONNECT_RETRY_MS;
    int accept_expected = c->cred == CRED_USER || c->cred == CRED_USER_HTTPS ||
                          c->cred == CRED_ADMIN;
    struct timeval tv = {REPLY_TIMEOUT_MS / 1000, 0};
    char body[4096];
    int status, on = 1;

    for (;;) {
        status = open_live(c, body, sizeof(body));
        if (status != 503 || strstr(body, "too_many_connections") == NULL)
            break;
        if (clock_monotonic_ms() > deadline)
            fuzz_fail("every live connection was still taken after %d ms; "
                      "a closed connection keeps its slot",
                      CONNECT_RETRY_MS);
        usleep(10000);
    }
    if (status < 0)
        fuzz_fail("no valid response to the upgrade request");
    if (!accept_expected) {
        if (status == 101)
            fuzz_fail("the upgrade with credential %d was accepted",
                      (int)c->cred);
        check_rejection(c, status, body);
        return 0;
    }
    if (status != 101)
        fuzz_fail("the upgrade got %d, expected 101: %s", status, body);
    /* A send that blocks this long means the gateway stopped reading. */
    setsockopt(c->ws.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    /* wsclient sends a frame's header and payload in two writes. With
     * Nagle's algorithm the payload waited for the ACK of the header,
     * which the gateway's kernel delays by up to 40 ms. */
    setsockopt(c->ws.fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    return 1;
}

/* After the frames: the final ping, the responses to every request, the
 * closing handshake. */
static void finish(struct live_client *c)
{
    static const char ping[] = "{\"type\":\"ping\"}";

    if (!c->stopped && !c->server_close && !c->ended) {
        if (c->message_active)
            send_frame(c, WSCLIENT_CONTINUATION, 1, (const unsigned char *)"",
                       0, 0);
    }
    if (!c->stopped && !c->server_close && !c->ended) {
        c->barrier = c->pongs_len;
        c->barrier_sent = 1;
        send_frame(c, WSCLIENT_PING, 1, (const unsigned char *)BARRIER_PAYLOAD,
                   strlen(BARRIER_PAYLOAD), 0);
        send_frame(c, WSCLIENT_TEXT, 1, (const unsigned char *)ping,
                   strlen(ping), 0);
        if (!read_until(c, final_pong_arrived, REPLY_TIMEOUT_MS) &&
            !connection_over(c))
            fuzz_fail("no pong to the final ping within %d ms",
                      REPLY_TIMEOUT_MS);
        if (!read_until(c, responses_arrived, REPLY_TIMEOUT_MS) &&
            !connection_over(c))
            fuzz_fail("%d of %d subscribe and unsubscribe requests got no "
                      "response within %d ms",
                      c->requests - c->responses, c->requests,
                      REPLY_TIMEOUT_MS);
    }
    if (!c->close_sent && !c->reject_expected && !connection_over(c))
        send_frame(c, WSCLIENT_CLOSE, 1, (const unsigned char *)"\x03\xe8", 2,
                   0);
    if (!read_until(c, connection_over, REPLY_TIMEOUT_MS))
        fuzz_fail("the gateway did not close the connection within %d ms "
                  "of %s",
                  REPLY_TIMEOUT_MS,
                  c->reject_expected ? "a frame it must reject"
                                     : "the close frame");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const struct fuzz_stack_options opt = {
        .name = "fuzz_live",
        .live_connections = LIVE_CONNECTIONS,
        .live_ping_interval_s = 1,
        .seed = seed_live,
        .tick = start_requested_trainings,
        .report = report_client,
    };

    (void)argc;
    (void)argv;
    trace = getenv("FUZZ_LIVE_TRACE") != NULL;
    fuzz_stack_start(&opt);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t pads[4] = {0, 1024, 16 * 1024, 64 * 1024};
    struct live_client *c;
    const uint8_t *p = data + 1, *end = data + size;

    if (size < 1)
        return 0;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        fuzz_fail("out of memory for a client");
    c->cred = (enum credential)(data[0] & 7);
    c->account = c->cred == CRED_ADMIN ? FUZZ_ADMIN_ID : FUZZ_USER_ID;
    current = c;

    if (connect_client(c)) {
        while (p < end && !c->stopped && !c->server_close && !c->ended) {
            int header = *p++;
            size_t len = p < end ? *p++ : 0;
            size_t pad = pads[(header >> 5) & 3];

            if (len > (size_t)(end - p))
                len = (size_t)(end - p);
            if (c->bytes_sent + len + pad > FRAMES_BYTES_MAX)
                break;
            if (header & 0x10)
                emit_events();
            send_frame(c, header & 0x0f, (header & 0x80) != 0, p, len, pad);
            p += len;
        }
        finish(c);
        wsclient_close(&c->ws);
    }

    current = NULL;
    free(c->message);
    free(c->pongs);
    free(c);
    fuzz_stack_retire_exposed(data, size);
    fuzz_stack_restore();
    prune_events();
    return 0;
}
