/*
 * The real `train` program on a tiny data set: a run stopped by SIGTERM
 * in the middle of an epoch, or killed with SIGKILL, and then resumed ends
 * with exactly the weights and results.csv rows of a run that never
 * stopped; and damaged checkpoints are rejected with a clear message.
 *
 * The test watches the run through its JSON-line events (events_fd=3) to
 * choose the moment of the signal, so it never depends on timing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/image.h"
#include "fsutil.h"
#include "harness.h"

#define CLASSES 3
#define TRAIN_PER_CLASS 12
#define VAL_PER_CLASS 4
#define SIZE 16

static char workdir[PATH_MAX];
static char data_dir[PATH_MAX + 16];

/* Images whose brightness pattern depends on the class, so the model
 * has something to learn. */
static void write_split(const char *split, int per_class)
{
    struct error err = {0};
    unsigned char px[SIZE * SIZE * 3];
    char dir[PATH_MAX + 64], path[PATH_MAX + 96];

    for (int c = 0; c < CLASSES; c++) {
        snprintf(dir, sizeof(dir), "%s/%s/class%d", data_dir, split, c);
        assert_int_equal(fs_mkdir_p(dir, 0755, &err), 0);
        for (int i = 0; i < per_class; i++) {
            for (int p = 0; p < SIZE * SIZE; p++) {
                int y = p / SIZE, x = p % SIZE;
                int v = (x ^ y) * 16;
                if (c == 0)
                    v = x * 16;
                else if (c == 1)
                    v = y * 16;
                for (int ch = 0; ch < 3; ch++)
                    px[p * 3 + ch] = (unsigned char)((v + i * 7 + ch) & 255);
            }
            snprintf(path, sizeof(path), "%s/%d.png", dir, i);
            assert_int_equal(
                image_write_png(path, px, SIZE, SIZE, 3, 8, &err), 0);
        }
    }
}

static int make_dataset(void **state)
{
    (void)state;
    harness_tmpdir(workdir, sizeof(workdir));
    snprintf(data_dir, sizeof(data_dir), "%s/data", workdir);
    write_split("train", TRAIN_PER_CLASS);
    write_split("val", VAL_PER_CLASS);
    return 0;
}

static int remove_dataset(void **state)
{
    (void)state;
    if (getenv("KEEP") == NULL)
        harness_rmtree(workdir);
    return 0;
}

/* Start train with the common arguments plus extra (NULL-terminated),
 * events on the write end of a pipe as fd 3; *events_fd is the read end.
 */
static pid_t start_train(const char *name, const char *const *extra,
                         int *events_fd)
{
    static char args[16][PATH_MAX + 32];
    char prog[PATH_MAX], log[PATH_MAX + 32];
    char *argv[24];
    int fds[2], n = 0;

    harness_program("train", prog, sizeof(prog));
    argv[n++] = prog;
    snprintf(args[0], sizeof(args[0]), "data=%s", data_dir);
    snprintf(args[1], sizeof(args[1]), "project=%s/runs", workdir);
    snprintf(args[2], sizeof(args[2]), "name=%s", name);
    const char *fixed[] = {"model=tests/fixtures/tiny-cls.yaml", "epochs=4",
                           "batch=8", "imgsz=16", "threads=2",
                           "events_fd=3", "exist_ok=true"};
    for (int i = 0; i < 3; i++)
        argv[n++] = args[i];
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        argv[n++] = (char *)fixed[i];
    for (int i = 0; extra != NULL && extra[i] != NULL; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;

    snprintf(log, sizeof(log), "%s/%s.log", workdir, name);
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        dup2(fds[1], 3);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    *events_fd = fds[0];
    return pid;
}

/* Read events until a line contains every needle; returns 1 if seen. */
static int wait_event(FILE *events, const char *a, const char *b)
{
    char line[8192];

    while (fgets(line, sizeof(line), events) != NULL)
        if (strstr(line, a) != NULL && (b == NULL || strstr(line, b)))
            return 1;
    return 0;
}

static int finish(pid_t pid, FILE *events)
{
    int status;

    /* Drain the pipe so the trainer never blocks on a full one. */
    while (fgetc(events) != EOF)
        ;
    fclose(events);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static int run_to_end(const char *name, const char *const *extra)
{
    int fd;
    pid_t pid = start_train(name, extra, &fd);
    return finish(pid, fdopen(fd, "r"));
}

/* The tensor bytes of a checkpoint (between header and CRC). */
static char *tensor_bytes(const char *run, size_t *len)
{
    char path[PATH_MAX + 64];
    struct error err = {0};
    char *data = NULL;
    size_t size = 0;
    uint32_t header;

    snprintf(path, sizeof(path), "%s/runs/%s/weights/last.ckpt", workdir,
             run);
    if (fs_read_file(path, 256 << 20, &data, &size, &err) != 0)
        fail_msg("%s", err.msg);
    memcpy(&header, data + 12, 4);
    *len = size - 16 - header - 4;
    memmove(data, data + 16 + header, *len);
    return data;
}

static char *results(const char *run)
{
    char path[PATH_MAX + 64];
    struct error err = {0};
    char *data = NULL;

    snprintf(path, sizeof(path), "%s/runs/%s/results.csv", workdir, run);
    if (fs_read_file(path, 1 << 20, &data, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    return data;
}

static void expect_same_run(const char *a, const char *b)
{
    size_t la, lb;
    char *ta = tensor_bytes(a, &la), *tb = tensor_bytes(b, &lb);
    char *ra = results(a), *rb = results(b);

    assert_int_equal(la, lb);
    if (memcmp(ta, tb, la) != 0) {
        size_t at = 0;
        while (ta[at] == tb[at])
            at++;
        fail_msg("weights of %s and %s differ first at byte %zu of %zu", a,
                 b, at, la);
    }
    assert_string_equal(ra, rb);
    /* Four epochs, four rows, plus the header. */
    int lines = 0;
    for (char *p = rb; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 5);
    free(ta);
    free(tb);
    free(ra);
    free(rb);
}

static void straight_run_completes(void **state)
{
    (void)state;
    int status = run_to_end("straight", NULL);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* The "epoch_seconds" of a checkpoint's header. */
static double saved_epoch_seconds(const char *run)
{
    char path[PATH_MAX + 64];
    struct error err = {0};
    char *data = NULL;
    size_t size = 0;

    snprintf(path, sizeof(path), "%s/runs/%s/weights/last.ckpt", workdir,
             run);
    if (fs_read_file(path, 256 << 20, &data, &size, &err) != 0)
        fail_msg("%s", err.msg);
    const char *at = strstr(data + 16, "\"epoch_seconds\":");
    assert_non_null(at);
    double v = strtod(at + strlen("\"epoch_seconds\":"), NULL);
    free(data);
    return v;
}

static void sigterm_mid_epoch_resumes_exactly(void **state)
{
    char resume[PATH_MAX + 64], line[8192];
    double before = 0, epoch3 = -1;
    int fd, status;

    (void)state;
    pid_t pid = start_train("stopped", NULL, &fd);
    FILE *events = fdopen(fd, "r");
    /* Epoch 3 of 4, after its first batch: the middle of an epoch. */
    assert_true(wait_event(events, "\"event\":\"batch\"", "\"epoch\":3"));
    kill(pid, SIGTERM);
    status = finish(pid, events);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 3);
    before = saved_epoch_seconds("stopped");

    snprintf(resume, sizeof(resume),
             "resume=%s/runs/stopped/weights/last.ckpt", workdir);
    const char *extra[] = {resume, NULL};
    pid = start_train("stopped", extra, &fd);
    events = fdopen(fd, "r");
    while (fgets(line, sizeof(line), events) != NULL) {
        const char *key = "\"epoch\":3,\"epochs\":4,\"seconds\":";
        const char *at = strstr(line, key);
        if (strstr(line, "\"event\":\"epoch\"") != NULL && at != NULL)
            epoch3 = strtod(at + strlen(key), NULL);
    }
    status = finish(pid, events);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    expect_same_run("straight", "stopped");

    /* The interrupted epoch reports its time before the stop too, so the
     * backend charges the whole epoch once it completes. */
    if (!(epoch3 >= before && before > 0))
        fail_msg("epoch 3 reported %.6f s after resume, but %.6f s were "
                 "spent on it before the stop",
                 epoch3, before);
}

static void sigkill_resumes_from_last_epoch(void **state)
{
    char resume[PATH_MAX + 64];
    int fd, status;

    (void)state;
    pid_t pid = start_train("killed", NULL, &fd);
    FILE *events = fdopen(fd, "r");
    /* Killed right after the checkpoint of epoch 2: epoch 3 must run from
     * its start, once. */
    assert_true(wait_event(events, "\"event\":\"checkpoint\"",
                           "\"epoch\":2,\"batch\":0"));
    kill(pid, SIGKILL);
    status = finish(pid, events);
    assert_true(WIFSIGNALED(status));

    snprintf(resume, sizeof(resume),
             "resume=%s/runs/killed/weights/last.ckpt", workdir);
    const char *extra[] = {resume, NULL};
    status = run_to_end("killed", extra);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    expect_same_run("straight", "killed");
}

/* SIGKILL at several moments of a run, some of which may fall inside a
 * checkpoint write, each followed by a resume from whatever last.ckpt is
 * left: the atomic write keeps it whole, and the run still ends with the
 * straight run's weights. */
static void sigkill_at_many_points_resumes(void **state)
{
    static const int delays_ms[] = {150, 450, 800, 1200, 1700, 2300};
    char resume[PATH_MAX + 96], ckpt[PATH_MAX + 64];
    int fd, status;

    (void)state;
    snprintf(ckpt, sizeof(ckpt), "%s/runs/crashy/weights/last.ckpt",
             workdir);
    snprintf(resume, sizeof(resume), "resume=%s", ckpt);
    for (size_t i = 0; i < sizeof(delays_ms) / sizeof(delays_ms[0]); i++) {
        const char *extra[] = {resume, NULL};
        int has_ckpt = access(ckpt, R_OK) == 0;
        pid_t pid = start_train("crashy", has_ckpt ? extra : NULL, &fd);
        usleep((useconds_t)delays_ms[i] * 1000);
        kill(pid, SIGKILL);
        status = finish(pid, fdopen(fd, "r"));
        /* A run may also have finished before its kill came. */
        assert_true(WIFSIGNALED(status) ||
                    (WIFEXITED(status) && WEXITSTATUS(status) == 0));
    }
    const char *extra[] = {resume, NULL};
    status = run_to_end("crashy", access(ckpt, R_OK) == 0 ? extra : NULL);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    expect_same_run("straight", "crashy");
}

/* Copy the straight run's checkpoint, damage it with damage(), and
 * expect train resume= to exit 1 naming the problem. */
static void expect_rejected(const char *name, void (*damage)(char *, size_t *),
                            const char *message)
{
    char src[PATH_MAX + 64], dst[PATH_MAX + 64], resume[PATH_MAX + 80];
    char log[PATH_MAX + 64];
    struct error err = {0};
    char *data = NULL;
    size_t len = 0;

    snprintf(src, sizeof(src), "%s/runs/straight/weights/last.ckpt",
             workdir);
    snprintf(dst, sizeof(dst), "%s/%s.ckpt", workdir, name);
    assert_int_equal(fs_read_file(src, 256 << 20, &data, &len, &err), 0);
    damage(data, &len);
    assert_int_equal(fs_write_atomic(dst, data, len, 0644, &err), 0);
    free(data);

    snprintf(resume, sizeof(resume), "resume=%s", dst);
    const char *extra[] = {resume, NULL};
    int status = run_to_end(name, extra);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    snprintf(log, sizeof(log), "%s/%s.log", workdir, name);
    assert_true(harness_file_contains(log, message));
}

static void cut_in_half(char *data, size_t *len)
{
    (void)data;
    *len /= 2;
}

static void flip_one_byte(char *data, size_t *len)
{
    data[*len / 2] ^= 0x40;
}

static void overwrite_magic(char *data, size_t *len)
{
    (void)len;
    memcpy(data, "NOTACKPT", 8);
}

static void truncated_checkpoint_rejected(void **state)
{
    (void)state;
    expect_rejected("truncated", cut_in_half, "truncated or corrupt");
}

static void corrupt_checkpoint_rejected(void **state)
{
    (void)state;
    expect_rejected("corrupt", flip_one_byte, "truncated or corrupt");
}

static void foreign_file_rejected(void **state)
{
    (void)state;
    expect_rejected("foreign", overwrite_magic, "not a Trainyard checkpoint");
}

static void time_limit_saves_and_resumes(void **state)
{
    char resume[PATH_MAX + 64], path[PATH_MAX + 64];
    struct error err = {0};
    char *csv = NULL;

    (void)state;
    /* 0.00002 hours is 72 ms of training: the run stops after its first
     * batches, long before its 4 epochs, with exit status 4 and a
     * checkpoint. */
    const char *limit[] = {"time=0.00002", NULL};
    int status = run_to_end("timed", limit);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 4);
    snprintf(path, sizeof(path), "%s/runs/timed/weights/last.ckpt", workdir);
    assert_int_equal(access(path, R_OK), 0);
    snprintf(path, sizeof(path), "%s/timed.log", workdir);
    assert_true(harness_file_contains(path, "time limit reached"));

    /* Resumed without a limit, it completes all 4 epochs. */
    snprintf(resume, sizeof(resume),
             "resume=%s/runs/timed/weights/last.ckpt", workdir);
    const char *extra[] = {resume, "time=0", NULL};
    status = run_to_end("timed", extra);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    snprintf(path, sizeof(path), "%s/runs/timed/results.csv", workdir);
    assert_int_equal(fs_read_file(path, 1 << 20, &csv, NULL, &err), 0);
    assert_non_null(strstr(csv, "\n4,"));
    free(csv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(straight_run_completes),
        cmocka_unit_test(sigterm_mid_epoch_resumes_exactly),
        cmocka_unit_test(sigkill_resumes_from_last_epoch),
        cmocka_unit_test(sigkill_at_many_points_resumes),
        cmocka_unit_test(truncated_checkpoint_rejected),
        cmocka_unit_test(corrupt_checkpoint_rejected),
        cmocka_unit_test(foreign_file_rejected),
        cmocka_unit_test(time_limit_saves_and_resumes),
    };
    return cmocka_run_group_tests_name("train_resume", tests, make_dataset,
                                       remove_dataset);
}
