/*
 * Many live-progress viewers read by one epoll loop; see fleet.h.
 */
#include "fleet.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "../../gateway/live.h"

#define STALLED_RCVBUF 4096

double fleet_realtime_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static long monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int fleet_open(struct fleet *f, int port, const char *extra_headers, int count,
               int stalled_from)
{
    char body[512];

    memset(f, 0, sizeof(*f));
    f->viewers = calloc((size_t)count, sizeof(*f->viewers));
    f->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (f->viewers == NULL || f->epoll_fd < 0) {
        snprintf(f->error, sizeof(f->error), "out of memory or descriptors "
                                             "for the fleet");
        return -1;
    }
    const char *trace = getenv("FLEET_TRACE");
    if (trace != NULL && trace[0] != '\0' &&
        (f->trace = fopen(trace, "w")) == NULL) {
        snprintf(f->error, sizeof(f->error), "FLEET_TRACE '%s': %s", trace,
                 strerror(errno));
        return -1;
    }
    for (int i = 0; i < count; i++) {
        struct fleet_viewer *v = &f->viewers[i];
        int status;

        v->stalled = i >= stalled_from;
        status = wsclient_connect(&v->ws, port, LIVE_PATH, extra_headers,
                                  v->stalled ? STALLED_RCVBUF : 0, body,
                                  sizeof(body));
        if (status != 101) {
            snprintf(f->error, sizeof(f->error),
                     "viewer %d of %d: live handshake returned %d, expected "
                     "101: %.200s",
                     i + 1, count, status, body);
            return -1;
        }
        f->count = i + 1;
        if (!v->stalled && wsclient_enable_timestamps(&v->ws) != 0) {
            snprintf(f->error, sizeof(f->error),
                     "viewer %d: SO_TIMESTAMPNS failed: %s", i + 1,
                     strerror(errno));
            return -1;
        }
        if (!v->stalled) {
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
            if (epoll_ctl(f->epoll_fd, EPOLL_CTL_ADD, v->ws.fd, &ev) != 0) {
                snprintf(f->error, sizeof(f->error), "epoll_ctl failed: %s",
                         strerror(errno));
                return -1;
            }
        }
    }
    return 0;
}

int fleet_subscribe(struct fleet *f, int64_t model, int64_t reader_after,
                    int64_t stalled_after)
{
    char text[128];

    f->model = model;
    for (int i = 0; i < f->count; i++) {
        struct fleet_viewer *v = &f->viewers[i];
        int64_t after = v->stalled ? stalled_after : reader_after;

        v->last_seq = after;
        snprintf(text, sizeof(text),
                 "{\"type\":\"subscribe\",\"model\":%lld,\"after\":%lld}",
                 (long long)model, (long long)after);
        if (wsclient_send_text(&v->ws, text) != 0) {
            snprintf(f->error, sizeof(f->error),
                     "viewer %d: sending subscribe failed", i + 1);
            return -1;
        }
    }
    return 0;
}

/* Append ms to the samples at *values. Without memory the sample is
 * dropped, and the event counts stay right. */
static void add_sample(double **values, size_t *count, size_t *cap,
                       double ms)
{
    if (*count == *cap) {
        size_t grown_cap = *cap ? *cap * 2 : 4096;
        double *grown = realloc(*values, grown_cap * sizeof(*grown));
        if (grown == NULL)
            return;
        *values = grown;
        *cap = grown_cap;
    }
    (*values)[(*count)++] = ms;
}

static void take_message(struct fleet *f, struct fleet_viewer *v,
                         const char *text, double received, double read)
{
    cJSON *msg = cJSON_Parse(text);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(msg, "type");

    if (!cJSON_IsString(type)) {
        v->other_messages++;
    } else if (strcmp(type->valuestring, "event") == 0) {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(msg, "seq");
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(msg, "kind");
        const cJSON *payload = cJSON_GetObjectItemCaseSensitive(msg, "payload");
        const cJSON *time = cJSON_GetObjectItemCaseSensitive(payload, "time_ms");
        int64_t n = cJSON_IsNumber(seq) ? (int64_t)seq->valuedouble : -1;

        if (n != v->last_seq + 1)
            v->order_errors++;
        if (n > v->last_seq)
            v->last_seq = n;
        v->events++;
        const cJSON *stored = cJSON_GetObjectItemCaseSensitive(msg, "created_at");
        if (cJSON_IsNumber(time)) {
            add_sample(&f->latencies, &f->latency_count, &f->latency_cap,
                       received - time->valuedouble);
            add_sample(&f->read_latencies, &f->read_count, &f->read_cap,
                       read - time->valuedouble);
        }
        if (cJSON_IsNumber(time) && cJSON_IsNumber(stored))
            add_sample(&f->store_latencies, &f->store_count, &f->store_cap,
                       stored->valuedouble - time->valuedouble);
        if (f->trace != NULL)
            fprintf(f->trace, "%d %lld %s %.3f %.3f %.3f %.3f\n",
                    (int)(v - f->viewers), (long long)n,
                    cJSON_IsString(kind) ? kind->valuestring : "-",
                    cJSON_IsNumber(time) ? time->valuedouble : 0,
                    cJSON_IsNumber(stored) ? stored->valuedouble : 0,
                    received, read);
        if (cJSON_IsString(kind) && strcmp(kind->valuestring, "done") == 0) {
            v->done_events++;
            v->done_received = read;
            v->done_time = cJSON_IsNumber(time) ? time->valuedouble : 0;
        }
    } else if (strcmp(type->valuestring, "subscribed") == 0) {
        v->subscribed = 1;
    } else if (strcmp(type->valuestring, "pong") != 0) {
        v->other_messages++;
    }
    cJSON_Delete(msg);
}

/* Read every whole message that viewer i has received. */
static void drain(struct fleet *f, int i)
{
    struct fleet_viewer *v = &f->viewers[i];
    char *text;

    while ((text = wsclient_read_text(&v->ws, 0)) != NULL) {
        double read = fleet_realtime_ms();
        double arrival = v->ws.last_arrival_ms > 0 ? v->ws.last_arrival_ms
                                                   : read;
        take_message(f, v, text, arrival, read);
        free(text);
    }
    if (v->ws.closed) {
        epoll_ctl(f->epoll_fd, EPOLL_CTL_DEL, v->ws.fd, NULL);
        f->closed++;
    }
}

/* The first open reader that has not reached the condition, or -1. */
static int first_waiting(const struct fleet *f, int64_t until_seq)
{
    for (int i = 0; i < f->count; i++) {
        const struct fleet_viewer *v = &f->viewers[i];
        if (v->stalled || v->ws.closed)
            continue;
        if (until_seq == FLEET_UNTIL_DONE ? v->done_events == 0
            : until_seq > 0               ? v->last_seq < until_seq
                                          : !v->subscribed)
            return i;
    }
    return -1;
}

int fleet_pump(struct fleet *f, int64_t until_seq, int timeout_ms)
{
    struct epoll_event ready[256];
    long deadline = monotonic_ms() + timeout_ms;
    int waiting;

    while ((waiting = first_waiting(f, until_seq)) >= 0) {
        long left = deadline - monotonic_ms();
        if (left <= 0) {
            const struct fleet_viewer *v = &f->viewers[waiting];
            snprintf(f->error, sizeof(f->error),
                     "viewer %d waited %d ms at seq %lld for %s %lld",
                     waiting + 1, timeout_ms, (long long)v->last_seq,
                     until_seq == FLEET_UNTIL_DONE ? "'done', after"
                     : until_seq > 0               ? "seq"
                                                   : "subscribed, after",
                     (long long)until_seq);
            return -1;
        }
        int n = epoll_wait(f->epoll_fd, ready, 256, left > 100 ? 100 : (int)left);
        for (int k = 0; k < n; k++)
            drain(f, (int)ready[k].data.u32);
    }
    return 0;
}

int fleet_resume_stalled(struct fleet *f)
{
    for (int i = 0; i < f->count; i++) {
        struct fleet_viewer *v = &f->viewers[i];
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};

        if (!v->stalled)
            continue;
        v->stalled = 0;
        if (epoll_ctl(f->epoll_fd, EPOLL_CTL_ADD, v->ws.fd, &ev) != 0) {
            snprintf(f->error, sizeof(f->error), "epoll_ctl failed: %s",
                     strerror(errno));
            return -1;
        }
    }
    return 0;
}

void fleet_reset_latencies(struct fleet *f)
{
    f->latency_count = 0;
    f->read_count = 0;
    f->store_count = 0;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double percentile(double *values, size_t count, double p)
{
    size_t index;

    if (count == 0)
        return -1;
    qsort(values, count, sizeof(double), compare_doubles);
    index = (size_t)(p / 100.0 * (double)(count - 1) + 0.5);
    return values[index];
}

double fleet_percentile(struct fleet *f, double p)
{
    return percentile(f->latencies, f->latency_count, p);
}

double fleet_read_percentile(struct fleet *f, double p)
{
    return percentile(f->read_latencies, f->read_count, p);
}

double fleet_store_percentile(struct fleet *f, double p)
{
    return percentile(f->store_latencies, f->store_count, p);
}

void fleet_close(struct fleet *f)
{
    for (int i = 0; i < f->count; i++)
        wsclient_close(&f->viewers[i].ws);
    if (f->epoll_fd >= 0)
        close(f->epoll_fd);
    if (f->trace != NULL)
        fclose(f->trace);
    free(f->viewers);
    free(f->latencies);
    free(f->read_latencies);
    free(f->store_latencies);
    memset(f, 0, sizeof(*f));
    f->epoll_fd = -1;
}
