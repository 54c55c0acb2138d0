/*
 * Faults during training, with the real backend, gateway and train
 * program on 127.0.0.1:
 *
 * - the backend restarts while 100 viewers watch: the gateway reconnects,
 *   the viewers resume from their seqs and miss nothing;
 * - the disk fills up while a checkpoint is written: the run folder is a
 *   small tmpfs that the test mounts (the test is skipped, with the
 *   reason, where mount fails), so the second epoch's checkpoint does
 *   not fit. The previous checkpoint stays intact and loadable, the
 *   session fails with the reason, and nothing more is charged;
 * - the data set is deleted or corrupted while a session is paused:
 *   the resume fails with a message that names the data set and
 *   charges nothing.
 *
 * Sessions of one account run one at a time, so the tests run in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/checkpoint.h"
#include "fleet.h"
#include "fsutil.h"
#include "trainstack.h"

#define VIEWERS 100
#define STEP_TIMEOUT_MS 120000
/* The pricey instance type costs $100 a second, so that sessions there
 * pause for want of money after an epoch or a few. */
#define PRICEY "pricey"

static struct trainstack ts;
/* The tmpfs that disk_full_keeps_checkpoint mounted, unmounted by the
 * test or, when it fails midway, by teardown. */
static char mounted[PATH_MAX + 64];

static int setup(void **state)
{
    static const struct trainstack_options opt = {
        .train_per_class = 12,
        .credits = 50000000,
        .more_instance_types = "  - name: " PRICEY "\n"
                               "    device: cpu\n"
                               "    price_per_hour: \"360000.00\"\n"
                               "    capacity: 2\n",
        .gateway_option = "--live-connections=128",
    };

    (void)state;
    trainstack_start(&ts, &opt);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (mounted[0] != '\0' && umount2(mounted, MNT_DETACH) != 0)
        fprintf(stderr, "umount %s failed: %s\n", mounted, strerror(errno));
    return trainstack_stop(&ts);
}

static void backend_restart_viewers_resume(void **state)
{
    char headers[512], target[64];
    struct http_reply r;
    struct fleet f;
    int64_t model, last;
    int port, status;

    (void)state;
    model = trainstack_create_model(&ts, 0);
    snprintf(headers, sizeof(headers),
             "Origin: http://127.0.0.1:%d\r\nCookie: %s\r\n",
             ts.s->gateway_port, ts.user.cookie);
    if (fleet_open(&f, ts.s->gateway_port, headers, VIEWERS, VIEWERS) != 0)
        fail_msg("%s", f.error);
    assert_int_equal(fleet_subscribe(&f, model, 0, 0), 0);
    if (fleet_pump(&f, 0, STEP_TIMEOUT_MS) != 0)
        fail_msg("%s", f.error);

    /* Stop the backend once every viewer has the start event and a
     * batch: the backend stops the trainer with a checkpoint and marks
     * the session failed. */
    trainstack_train(&ts, model, 4, NULL);
    if (fleet_pump(&f, 4, STEP_TIMEOUT_MS) != 0)
        fail_msg("%s", f.error);
    port = ts.s->backend_port;
    status = harness_stop(ts.s->backend, SIGTERM, 60000);
    ts.s->backend = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    trainstack_start_backend(&ts, port);
    for (int i = 0; i < 200; i++) {
        stack_request(ts.s, "GET", "/api/v1/health", NULL, NULL, &r);
        status = r.status;
        harness_http_free(&r);
        if (status == 200)
            break;
        usleep(50 * 1000);
    }
    assert_int_equal(status, 200);
    trainstack_wait_state(&ts, model, "failed", STEP_TIMEOUT_MS, NULL, 0);
    snprintf(target, sizeof(target), "/api/v1/models/%lld/resume",
             (long long)model);
    trainstack_call(&ts, "POST", target, NULL, &r);
    trainstack_expect(&r, 202, target);
    harness_http_free(&r);

    if (fleet_pump(&f, FLEET_UNTIL_DONE, STEP_TIMEOUT_MS) != 0)
        fail_msg("%s", f.error);
    trainstack_wait_state(&ts, model, "completed", STEP_TIMEOUT_MS, NULL, 0);
    last = trainstack_last_seq(&ts, model);
    if (fleet_pump(&f, last, STEP_TIMEOUT_MS) != 0)
        fail_msg("%s", f.error);
    assert_int_equal(f.closed, 0);
    for (int i = 0; i < VIEWERS; i++) {
        const struct fleet_viewer *v = &f.viewers[i];
        assert_int_equal(v->order_errors, 0);
        assert_int_equal(v->other_messages, 0);
        assert_int_equal(v->events, last);
        assert_int_equal(v->last_seq, last);
    }
    assert_true(harness_file_contains(ts.s->gateway_log,
                                      "backend connected; replaying"));
    fleet_close(&f);
}

/* Size of path in bytes, or 0 when it does not exist. */
static long long file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

/* The newest session of model. */
static int64_t session_of(int64_t model)
{
    char sql[128];

    snprintf(sql, sizeof(sql),
             "SELECT MAX(id) FROM sessions WHERE model_id = %lld",
             (long long)model);
    return trainstack_query_int(&ts, sql);
}

/* Files in folder whose name contains needle. */
static int count_files(const char *folder, const char *needle)
{
    DIR *d = opendir(folder);
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, needle) != NULL;
    closedir(d);
    return n;
}

static void disk_full_keeps_checkpoint(void **state)
{
    char runs[PATH_MAX + 64], weights[PATH_MAX + 128], last_ckpt[PATH_MAX + 160];
    char best_ckpt[PATH_MAX + 160], options[64], reason[512], sql[256];
    char target[64];
    struct checkpoint ck;
    struct error err = {0};
    struct http_reply r;
    long long size;
    int64_t probe, model, session, charges;

    (void)state;
    /* A one-epoch probe run measures the checkpoint files. */
    probe = trainstack_create_model(&ts, 0);
    trainstack_train(&ts, probe, 1, NULL);
    trainstack_wait_state(&ts, probe, "completed", STEP_TIMEOUT_MS, NULL, 0);
    snprintf(weights, sizeof(weights), "%s/runs/model-%lld/session-%lld/weights",
             ts.s->data, (long long)probe, (long long)session_of(probe));
    snprintf(last_ckpt, sizeof(last_ckpt), "%s/last.ckpt", weights);
    snprintf(best_ckpt, sizeof(best_ckpt), "%s/best.ckpt", weights);
    size = file_size(last_ckpt) + file_size(best_ckpt);
    assert_true(file_size(last_ckpt) > 0);

    /* The model's run folder has room for the first epoch's files and
     * 1 MiB more, so the second epoch's last.ckpt, written to a temporary file
     * beside the first, does not fit. */
    model = trainstack_create_model(&ts, 0);
    snprintf(runs, sizeof(runs), "%s/runs/model-%lld", ts.s->data,
             (long long)model);
    assert_int_equal(fs_mkdir_p(runs, 0755, &err), 0);
    snprintf(options, sizeof(options), "size=%lldk",
             (size + (1 << 20)) / 1024 + 1);
    if (mount("tmpfs", runs, "tmpfs", 0, options) != 0) {
        printf("SKIP disk_full_keeps_checkpoint: mount -t tmpfs -o %s on %s "
               "failed: %s (the test needs root)\n",
               options, runs, strerror(errno));
        skip();
    }
    snprintf(mounted, sizeof(mounted), "%s", runs);
    trainstack_train(&ts, model, 3, NULL);
    trainstack_wait_state(&ts, model, "failed", STEP_TIMEOUT_MS, reason,
                          sizeof(reason));
    printf("disk full: the session failed with '%s'\n", reason);
    assert_non_null(strstr(reason, "checkpoint"));
    assert_non_null(strstr(reason, strerror(ENOSPC)));

    /* The first epoch's checkpoint is intact and is the session's. */
    session = session_of(model);
    snprintf(weights, sizeof(weights), "%s/session-%lld/weights", runs,
             (long long)session);
    snprintf(last_ckpt, sizeof(last_ckpt), "%s/last.ckpt", weights);
    assert_int_equal(ckpt_open(last_ckpt, &ck, &err), 0);
    assert_int_equal(ck.state.epoch, 1);
    ckpt_close(&ck);
    assert_int_equal(count_files(weights, ".tmp."), 0);
    snprintf(sql, sizeof(sql),
             "SELECT epochs_done FROM sessions WHERE id = %lld",
             (long long)session);
    assert_int_equal(trainstack_query_int(&ts, sql), 1);

    /* One charge, for the first epoch. The failed one costs nothing. */
    snprintf(sql, sizeof(sql),
             "SELECT COUNT(*) FROM ledger WHERE session_id = %lld",
             (long long)session);
    charges = trainstack_query_int(&ts, sql);
    assert_int_equal(charges, 1);

    /* With room again, the session resumes from that checkpoint, and
     * each epoch is charged once. */
    snprintf(options, sizeof(options), "size=%lldk", 3 * size / 1024 + 4096);
    assert_int_equal(mount("tmpfs", runs, "tmpfs", MS_REMOUNT, options), 0);
    snprintf(target, sizeof(target), "/api/v1/models/%lld/resume",
             (long long)model);
    trainstack_call(&ts, "POST", target, NULL, &r);
    trainstack_expect(&r, 202, target);
    harness_http_free(&r);
    trainstack_wait_state(&ts, model, "completed", STEP_TIMEOUT_MS, NULL, 0);
    assert_int_equal(trainstack_query_int(&ts, sql), 3);
    assert_true(harness_file_contains(ts.s->backend_log, "resume="));
    assert_int_equal(umount2(runs, MNT_DETACH), 0);
    mounted[0] = '\0';
}

/* Train model on the pricey type until the session pauses. An epoch
 * there costs about $100 a second, so a balance under 5 epochs' cost
 * runs out within the 5 epochs. */
static void train_until_paused(int64_t model)
{
    char reason[512];

    trainstack_train(&ts, model, 5, PRICEY);
    trainstack_wait_state(&ts, model, "paused", STEP_TIMEOUT_MS, reason,
                          sizeof(reason));
    assert_non_null(strstr(reason, "balance too low"));
}

/* Resume model after a top-up. The resume must fail with a message
 * about the data set at path and charge nothing. */
static void resume_fails_free(int64_t model, const char *path)
{
    char target[64], reason[512] = "";
    struct http_reply r;
    int64_t rows, balance;

    char sql[256];

    /* Enough for the resume: the $5 minimum and one more epoch like the
     * last at $100 a second, plus $10. The last charge can be smaller,
     * because it took what was left. */
    snprintf(sql, sizeof(sql),
             "SELECT MAX(cost, CAST(seconds * 100000000 AS INTEGER) + 1) "
             "FROM epochs WHERE session_id = (SELECT MAX(id) FROM sessions "
             "WHERE model_id = %lld) ORDER BY epoch DESC LIMIT 1",
             (long long)model);
    trainstack_credit(&ts, trainstack_query_int(&ts, sql) + 15000000);
    rows = trainstack_ledger_rows(&ts);
    balance = trainstack_balance(&ts);
    snprintf(target, sizeof(target), "/api/v1/models/%lld/resume",
             (long long)model);
    trainstack_call(&ts, "POST", target, NULL, &r);
    if (r.status == 202) {
        trainstack_wait_state(&ts, model, "failed", STEP_TIMEOUT_MS, reason,
                              sizeof(reason));
    } else {
        assert_true(r.status >= 400 && r.status < 500);
        json_text(r.body, "error", "message", reason, sizeof(reason));
    }
    harness_http_free(&r);
    printf("resume of model %lld: '%s'\n", (long long)model, reason);
    assert_non_null(strstr(reason, path));
    assert_int_equal(trainstack_ledger_rows(&ts), rows);
    assert_int_equal(trainstack_balance(&ts), balance);
}

static void dataset_gone_resume_free(void **state)
{
    char root[PATH_MAX + 64];
    int64_t model;

    (void)state;
    trainstack_add_dataset(&ts, 200, "sets/deleted");
    model = trainstack_create_model(&ts, 200);
    train_until_paused(model);
    snprintf(root, sizeof(root), "%s/sets/deleted", ts.s->data);
    harness_rmtree(root);
    resume_fails_free(model, "sets/deleted");
}

static void dataset_corrupt_resume_free(void **state)
{
    char path[PATH_MAX + 96];
    int64_t model;
    FILE *f;

    (void)state;
    trainstack_add_dataset(&ts, 201, "sets/corrupt");
    model = trainstack_create_model(&ts, 201);
    train_until_paused(model);
    /* Every training image of class 0 becomes text. */
    for (int i = 0; i < 12; i++) {
        snprintf(path, sizeof(path), "%s/sets/corrupt/train/c0/%02d.png",
                 ts.s->data, i);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs("not a PNG image\n", f);
        fclose(f);
    }
    resume_fails_free(model, "sets/corrupt");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backend_restart_viewers_resume),
        cmocka_unit_test(disk_full_keeps_checkpoint),
        cmocka_unit_test(dataset_gone_resume_free),
        cmocka_unit_test(dataset_corrupt_resume_free),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
