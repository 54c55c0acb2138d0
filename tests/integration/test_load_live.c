/*
 * Live progress under load: 1,000 browser viewers (session cookie and
 * Origin, as a browser sends them) watch one real training through the
 * real backend, gateway and train program on 127.0.0.1. One epoll loop in
 * this thread reads them all (tests/support/fleet.c).
 *
 * Of the viewers, 100 stop reading. They subscribe from seq 0 to a
 * backlog of stored events bigger than the kernel's socket buffers and
 * the gateway's queue limit, so their writers block, or the gateway
 * closes them as too slow. The other 900 subscribe after the backlog and
 * must each receive every event of the training in seq order, none lost,
 * and the "done" event within DONE_LATENCY_MAX_MS of the trainer writing
 * it.
 *
 * LOAD_LIVE_VIEWERS and LOAD_LIVE_STALLED change the counts (defaults
 * 1000 and 100), LOAD_LIVE_EPOCHS the epochs (default 3) and
 * LOAD_LIVE_IMAGES the training images per class (default 12). The
 * benchmarks in bench/ use them. The test prints the median and 99th
 * percentile latency from the trainer's time_ms until the event reached
 * the viewers' sockets and until this thread read it (fleet.h), the CPU
 * time of gateway and backend during the training, and the backend's
 * control-plane time per epoch from its log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fleet.h"
#include "trainstack.h"

#define VIEWERS_DEFAULT 1000
#define STALLED_DEFAULT 100
/* Stored events before the training, and the filler in each payload.
 * A message has about 230 bytes, so a stalled viewer's backlog is 460 KB.
 * That is more than the 256 KiB send buffer (128 KiB doubled by Linux)
 * plus a 4 KiB receive buffer, in more messages than the gateway's
 * queue limit of 1,024. */
#define BACKLOG_EVENTS 2000
#define BACKLOG_PAD_BYTES 100
#define EPOCHS_DEFAULT 3
#define IMAGES_DEFAULT 12
/* The bound on the trainer-to-viewer time of the last event. It is
 * generous because the sanitizer builds of all three programs and the
 * 1,000 viewers share 2 CPU cores in CI. A few seconds still shows that
 * the stalled viewers, whose writers block, do not hold up the readers. */
#define DONE_LATENCY_MAX_MS 5000
#define STEP_TIMEOUT_MS 120000

static struct trainstack ts;

static int env_count(const char *name, int fallback, int max)
{
    const char *text = getenv(name);
    char *end;
    long v;

    if (text == NULL || text[0] == '\0')
        return fallback;
    v = strtol(text, &end, 10);
    if (*end != '\0' || v < 0 || v > max) {
        fprintf(stderr, "%s='%s' is invalid; use a whole number from 0 to %d\n",
                name, text, max);
        exit(2);
    }
    return (int)v;
}

static int setup(void **state)
{
    struct trainstack_options opt = {
        .train_per_class = env_count("LOAD_LIVE_IMAGES", IMAGES_DEFAULT, 5000),
        .credits = 50000000,
        .gateway_option = "--live-connections=1024",
    };

    (void)state;
    trainstack_start(&ts, &opt);
    return 0;
}

/* Print the backend's "control plane" log lines, one per epoch. */
static void print_control_plane(void)
{
    FILE *f = fopen(ts.s->backend_log, "r");
    char line[1024];

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *at = strstr(line, "control plane: ");
        if (at != NULL)
            printf("live load: backend %s", at);
    }
    fclose(f);
}

/* CPU time (user + system) of process pid so far, in ms, or -1. */
static double process_cpu_ms(pid_t pid)
{
    char path[64], text[1024];
    unsigned long long user = 0, sys = 0;
    FILE *f;
    const char *end;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    /* Fields 14 and 15 follow the command name, which may hold spaces. */
    end = strrchr(text, ')');
    if (end == NULL ||
        sscanf(end + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &user, &sys) != 2)
        return -1;
    return (double)(user + sys) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

static int teardown(void **state)
{
    (void)state;
    return trainstack_stop(&ts);
}

static void thousand_viewers_one_training(void **state)
{
    int viewers = env_count("LOAD_LIVE_VIEWERS", VIEWERS_DEFAULT, 1000);
    int stalled = env_count("LOAD_LIVE_STALLED", STALLED_DEFAULT, viewers);
    int readers = viewers - stalled;
    int epochs = env_count("LOAD_LIVE_EPOCHS", EPOCHS_DEFAULT, 1000);
    char headers[512], sql[1024];
    struct fleet f;
    int64_t model, last;
    double worst_done = 0;

    (void)state;
    assert_true(readers >= 1);
    assert_true(epochs >= 1);
    model = trainstack_create_model(&ts, 0);
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
             "WHERE i < %d) INSERT INTO progress_events (model_id, seq, "
             "session_id, kind, payload, created_at) SELECT %lld, i, NULL, "
             "'batch', '{\"event\":\"batch\",\"pad\":\"' || "
             "replace(hex(zeroblob(%d)), '0', 'x') || '\"}', 1 FROM n",
             BACKLOG_EVENTS, (long long)model, BACKLOG_PAD_BYTES / 2);
    stack_database_exec(ts.s, sql);

    snprintf(headers, sizeof(headers),
             "Origin: http://127.0.0.1:%d\r\nCookie: %s\r\n",
             ts.s->gateway_port, ts.user.cookie);
    if (fleet_open(&f, ts.s->gateway_port, headers, viewers, readers) != 0)
        fail_msg("%s", f.error);
    assert_int_equal(fleet_subscribe(&f, model, BACKLOG_EVENTS, 0), 0);
    if (fleet_pump(&f, 0, STEP_TIMEOUT_MS) != 0)
        fail_msg("%s", f.error);
    assert_int_equal(f.closed, 0);

    double gateway_cpu = process_cpu_ms(ts.s->gateway);
    double backend_cpu = process_cpu_ms(ts.s->backend);
    trainstack_train(&ts, model, epochs, NULL);
    if (fleet_pump(&f, FLEET_UNTIL_DONE, STEP_TIMEOUT_MS) != 0)
        fail_msg("%s", f.error);
    gateway_cpu = process_cpu_ms(ts.s->gateway) - gateway_cpu;
    backend_cpu = process_cpu_ms(ts.s->backend) - backend_cpu;
    /* Latencies up to "done" only: later events arrive while this thread
     * waits for the REST API, not for the gateway. */
    double median = fleet_percentile(&f, 50), p99 = fleet_percentile(&f, 99);
    double max = fleet_percentile(&f, 100);
    double read_median = fleet_read_percentile(&f, 50);
    double read_p99 = fleet_read_percentile(&f, 99);
    double store_median = fleet_store_percentile(&f, 50);
    double store_p99 = fleet_store_percentile(&f, 99);
    size_t samples = f.latency_count;
    trainstack_wait_state(&ts, model, "completed", STEP_TIMEOUT_MS, NULL, 0);
    last = trainstack_last_seq(&ts, model);
    assert_true(last > BACKLOG_EVENTS + epochs);
    print_control_plane();
    if (fleet_pump(&f, last, STEP_TIMEOUT_MS) != 0)
        fail_msg("%s", f.error);

    assert_int_equal(f.closed, 0);
    for (int i = 0; i < readers; i++) {
        const struct fleet_viewer *v = &f.viewers[i];
        assert_int_equal(v->order_errors, 0);
        assert_int_equal(v->other_messages, 0);
        assert_int_equal(v->events, last - BACKLOG_EVENTS);
        assert_int_equal(v->last_seq, last);
        assert_int_equal(v->done_events, 1);
        assert_true(v->done_time > 0);
        if (v->done_received - v->done_time > worst_done)
            worst_done = v->done_received - v->done_time;
    }
    printf("live load: %d readers, %d stalled viewers, %lld events each; "
           "trainer-to-viewer latency (arrival in the viewer's socket) median "
           "%.1f ms, p99 %.1f ms, max "
           "%.1f ms over %zu events up to 'done'; slowest 'done' %.1f "
           "ms\n",
           readers, stalled, (long long)(last - BACKLOG_EVENTS), median, p99,
           max, samples, worst_done);
    printf("live load: until this one thread read them, behind the other "
           "viewers: median %.1f ms, p99 %.1f ms\n",
           read_median, read_p99);
    printf("live load: of that, trainer to stored in the backend: median "
           "%.1f ms, p99 %.1f ms\n",
           store_median, store_p99);
    printf("live load: CPU time from the start of training to 'done': "
           "gateway %.0f ms, backend %.0f ms\n",
           gateway_cpu, backend_cpu);
    assert_true(worst_done < DONE_LATENCY_MAX_MS);

    /* The stalled viewers read now: each got every event in order, or
     * its connection was closed, with 1008 or no close frame, because a
     * full buffer leaves no room for one. */
    int closed_readers = f.closed, closed_slow = 0, close_frames = 0;
    fleet_reset_latencies(&f);
    assert_int_equal(fleet_resume_stalled(&f), 0);
    if (fleet_pump(&f, last, STEP_TIMEOUT_MS) != 0)
        fail_msg("%s", f.error);
    for (int i = readers; i < viewers; i++) {
        const struct fleet_viewer *v = &f.viewers[i];
        assert_int_equal(v->order_errors, 0);
        if (v->ws.closed) {
            assert_true(v->ws.close_code == 1008 || v->ws.close_code == 0);
            close_frames += v->ws.close_code == 1008;
            closed_slow++;
        } else {
            assert_int_equal(v->last_seq, last);
            assert_int_equal(v->events, last);
        }
    }
    assert_int_equal(f.closed - closed_readers, closed_slow);
    /* NOTE: runs of over a minute on a loaded machine closed stalled
     * viewers without the gateway's "too slow" log line. A likely cause,
     * not confirmed, is civetweb's read timeout (request_timeout_ms,
     * 60 s), because a stalled viewer sends nothing, not even pongs. */
    printf("live load: %d of %d stalled viewers were closed (%d got the "
           "close frame); the others received all %lld events in order\n",
           closed_slow, stalled, close_frames, (long long)last);
    fleet_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thousand_viewers_one_training),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
