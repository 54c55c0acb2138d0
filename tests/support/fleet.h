/*
 * Many live-progress viewers in one thread: WebSocket clients (wsclient.h)
 * on 127.0.0.1 that one epoll loop reads. Each viewer watches one model
 * and checks that its events come in seq order with no gap and no
 * duplicate. A stalled viewer is never read.
 * The fleet records each event's latency: the time it was received minus
 * the trainer's "time_ms" in the event payload, both Unix milliseconds on
 * the same machine. "Received" is when the kernel delivered the bytes to
 * the viewer's socket (SO_TIMESTAMPNS), which is what a browser on a
 * machine of its own would see. The time until this one thread read the
 * message, behind the other viewers it also reads, is recorded
 * separately.
 *
 * Functions return errors instead of failing the test, so that a bench
 * program can use them without cmocka.
 */
#ifndef TRAINYARD_FLEET_H
#define TRAINYARD_FLEET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "wsclient.h"

struct fleet_viewer {
    struct wsclient ws;
    int stalled;          /* never read */
    int subscribed;       /* "subscribed" arrived */
    int64_t last_seq;     /* seq of the last event, or the subscribe's after */
    int events;           /* events received */
    int order_errors;     /* events whose seq was not last_seq + 1 */
    int other_messages;   /* errors and unexpected messages */
    int done_events;      /* events of kind "done" */
    double done_received; /* Unix ms when the last "done" event was read */
    double done_time;     /* that event's trainer time_ms */
};

struct fleet {
    int epoll_fd;
    int count;
    struct fleet_viewer *viewers;
    int64_t model;
    double *latencies; /* ms, one per event that carried time_ms */
    size_t latency_count, latency_cap;
    /* The same until this thread read the event. */
    double *read_latencies;
    size_t read_count, read_cap;
    /* Of that, the part until the backend stored the event: created_at
     * minus time_ms, one per event and viewer. */
    double *store_latencies;
    size_t store_count, store_cap;
    int closed; /* readers whose connection ended */
    /* When not NULL, one line per event and viewer: viewer, seq, kind,
     * time_ms, created_at, received, read (Unix ms). Set by fleet_open from
     * FLEET_TRACE, a file name, for the benchmarks. */
    FILE *trace;
    char error[512];
};

/* Open count viewers to the gateway at port with extra_headers (Origin,
 * Cookie). Viewers from stalled_from on are stalled and get a receive
 * buffer of 4 KiB. Returns 0, or -1 with f->error set. */
int fleet_open(struct fleet *f, int port, const char *extra_headers, int count,
               int stalled_from);

/* Subscribe every viewer to model: readers after reader_after, stalled
 * ones after stalled_after. Returns 0 or -1. */
int fleet_subscribe(struct fleet *f, int64_t model, int64_t reader_after,
                    int64_t stalled_after);

/* A value of fleet_pump's until_seq: wait for a "done" event. */
#define FLEET_UNTIL_DONE (-1)

/* Read every reader until each one that is still open has received
 * seq until_seq (when > 0), a "subscribed" message (when until_seq is
 * 0) or a "done" event (FLEET_UNTIL_DONE), or until timeout_ms passed.
 * Pings get pongs. Returns 0 when the condition holds, -1 on timeout
 * with f->error set. */
int fleet_pump(struct fleet *f, int64_t until_seq, int timeout_ms);

/* Start reading the stalled viewers too, from what they have received;
 * their close code is in ws.close_code when the gateway closes them.
 * Returns 0 or -1. */
int fleet_resume_stalled(struct fleet *f);

/* Forget the latencies recorded so far. */
void fleet_reset_latencies(struct fleet *f);

/* The p-th percentile (0..100) of the recorded latencies in ms, or -1
 * when there are none. Sorts the samples. */
double fleet_percentile(struct fleet *f, double p);

/* The same until this thread read the events. */
double fleet_read_percentile(struct fleet *f, double p);

/* The same for the part until the backend stored the events. */
double fleet_store_percentile(struct fleet *f, double p);

/* Close every viewer and free the fleet's memory. */
void fleet_close(struct fleet *f);

/* Unix time in milliseconds, with the fraction. */
double fleet_realtime_ms(void);

#endif
