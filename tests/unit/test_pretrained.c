/* Tests of pretrained= weight copying. A checkpoint of the same model
 * copies every tensor. One with another class count skips the tensors
 * whose size depends on it: the classifier, or the last conv of each
 * Detect class branch. A checkpoint of another task, a file that is not
 * a checkpoint, and a checkpoint without a matching tensor are
 * rejected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/args.h"
#include "engine/checkpoint.h"
#include "engine/net.h"
#include "engine/pretrained.h"
#include "harness.h"

#define MODEL "yolov8n-cls.yaml"
#define IMGSZ 32

struct model {
    struct model_spec spec;
    struct net net;
    struct kctx ctx;
};

static void build_model(struct model *m, const char *file, int classes,
                        uint64_t seed)
{
    struct error err = {0};

    cpu_kctx_init(&m->ctx, 1);
    if (model_spec_load(file, "", classes, &m->spec, &err) != 0)
        fail_msg("%s", err.msg);
    if (net_build(&m->net, &m->spec, IMGSZ, IMGSZ, 1, seed, &m->ctx,
                  &err) != 0)
        fail_msg("%s", err.msg);
}

static void build(struct model *m, int classes, uint64_t seed)
{
    build_model(m, MODEL, classes, seed);
}

static void release(struct model *m)
{
    net_free(&m->net);
    cpu_kctx_free(&m->ctx);
}

/* Give every EMA array a value that names its tensor, so a copy shows
 * where it came from, and write the model as a checkpoint at path under
 * the given task. */
static void write_checkpoint(struct model *m, const char *task,
                             const char *path)
{
    struct train_args args;
    struct train_state state = {0};
    struct optimizer opt = {0};
    struct model_spec spec = m->spec;
    struct error err = {0};

    for (int i = 0; i < m->net.nparams; i++)
        for (size_t j = 0; j < m->net.params[i].n; j++)
            m->net.params[i].ema[j] = 1000.0f + (float)i;
    for (int i = 0; i < m->net.nbuffers; i++)
        for (size_t j = 0; j < m->net.buffers[i].n; j++)
            m->net.buffers[i].ema[j] = 2000.0f + (float)i;
    args_defaults(&args);
    snprintf(spec.task, sizeof(spec.task), "%s", task);
    state.best_fitness = -1;
    if (ckpt_write(path, &m->net, &spec, &args, &state, &opt, IMGSZ, "",
                   &err) != 0)
        fail_msg("%s", err.msg);
}

static void copies_matching_model(void **state)
{
    struct model from, to;
    struct pretrained_result copied;
    struct error err = {0};
    char dir[256], path[320];

    (void)state;
    harness_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/from.ckpt", dir);
    build(&from, 10, 1);
    write_checkpoint(&from, "classify", path);
    build(&to, 10, 2);

    assert_int_equal(pretrained_load(path, &to.net, "classify", &copied,
                                     &err),
                     0);
    assert_int_equal(copied.copied, to.net.nparams + to.net.nbuffers);
    assert_int_equal(copied.skipped, 0);
    for (int i = 0; i < to.net.nparams; i++) {
        struct param *p = &to.net.params[i];
        assert_true(p->data[0] == 1000.0f + (float)i);
        assert_true(p->data[p->n - 1] == 1000.0f + (float)i);
        assert_true(p->ema[0] == 1000.0f + (float)i);
    }
    for (int i = 0; i < to.net.nbuffers; i++) {
        struct buffer *b = &to.net.buffers[i];
        assert_true(b->data[0] == 2000.0f + (float)i);
        assert_true(b->ema[b->n - 1] == 2000.0f + (float)i);
    }
    release(&from);
    release(&to);
    harness_rmtree(dir);
}

/* The classifier's weight and bias depend on the class count, so they
 * keep their fresh values; everything before them is copied. */
static void skips_other_class_count(void **state)
{
    struct model from, to, fresh;
    struct pretrained_result copied;
    struct error err = {0};
    char dir[256], path[320];
    int head_skipped = 0;

    (void)state;
    harness_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/from.ckpt", dir);
    build(&from, 10, 1);
    write_checkpoint(&from, "classify", path);
    build(&to, 5, 2);
    build(&fresh, 5, 2);

    assert_int_equal(pretrained_load(path, &to.net, "classify", &copied,
                                     &err),
                     0);
    assert_int_equal(copied.skipped, 2);
    assert_int_equal(copied.copied, to.net.nparams + to.net.nbuffers - 2);
    for (int i = 0; i < to.net.nparams; i++) {
        struct param *p = &to.net.params[i];
        if (p->n == from.net.params[i].n) {
            assert_true(p->data[0] == 1000.0f + (float)i);
            continue;
        }
        assert_memory_equal(p->data, fresh.net.params[i].data,
                            p->n * sizeof(float));
        head_skipped++;
    }
    assert_int_equal(head_skipped, 2);
    release(&from);
    release(&to);
    release(&fresh);
    harness_rmtree(dir);
}

/* In Detect, only the last conv of each level's class branch has nc
 * output channels: its weight and bias at each of the 3 levels are
 * skipped, and the box branches and the backbone are copied. */
static void skips_detect_class_convs(void **state)
{
    struct model from, to;
    struct pretrained_result copied;
    struct error err = {0};
    char dir[256], path[320];

    (void)state;
    harness_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/detect.ckpt", dir);
    build_model(&from, "yolov8n.yaml", 10, 1);
    write_checkpoint(&from, "detect", path);
    build_model(&to, "yolov8n.yaml", 2, 2);

    assert_int_equal(pretrained_load(path, &to.net, "detect", &copied,
                                     &err),
                     0);
    assert_int_equal(copied.skipped, 6);
    assert_int_equal(copied.copied, to.net.nparams + to.net.nbuffers - 6);
    for (int i = 0; i < to.net.nparams; i++) {
        const struct param *p = &to.net.params[i];
        if (p->n != from.net.params[i].n)
            assert_true(p->data[0] != 1000.0f + (float)i);
        else
            assert_true(p->data[0] == 1000.0f + (float)i);
    }
    release(&from);
    release(&to);
    harness_rmtree(dir);
}

static void rejects_other_task(void **state)
{
    struct model from, to;
    struct pretrained_result copied;
    struct error err = {0};
    char dir[256], path[320];

    (void)state;
    harness_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/detect.ckpt", dir);
    build(&from, 10, 1);
    write_checkpoint(&from, "detect", path);
    build(&to, 10, 2);

    assert_int_equal(pretrained_load(path, &to.net, "classify", &copied,
                                     &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "detect checkpoint"));
    assert_int_equal(copied.copied, 0);
    assert_true(to.net.params[0].data[0] != 1000.0f);
    release(&from);
    release(&to);
    harness_rmtree(dir);
}

static void rejects_bad_file(void **state)
{
    struct model to;
    struct pretrained_result copied;
    struct error err = {0};
    char dir[256], path[320], missing[320];
    FILE *f;

    (void)state;
    harness_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/notes.txt", dir);
    snprintf(missing, sizeof(missing), "%s/missing.ckpt", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("these are not weights, but long enough to have a header\n", f);
    fclose(f);
    build(&to, 10, 2);

    assert_int_equal(pretrained_load(path, &to.net, "classify", &copied,
                                     &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "not a Trainyard checkpoint"));
    assert_non_null(strstr(err.msg, "pretrained="));
    assert_int_equal(pretrained_load(missing, &to.net, "classify", &copied,
                                     &err),
                     -ENOENT);
    assert_non_null(strstr(err.msg, missing));
    release(&to);
    harness_rmtree(dir);
}

/* Renamed tensors share sizes but no names, so nothing is copied. */
static void rejects_no_match(void **state)
{
    struct model from, to;
    struct pretrained_result copied;
    struct error err = {0};
    char dir[256], path[320];

    (void)state;
    harness_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/renamed.ckpt", dir);
    build(&from, 10, 1);
    for (int i = 0; i < from.net.nparams; i++)
        snprintf(from.net.params[i].name, NET_NAME_MAX, "other.%d", i);
    for (int i = 0; i < from.net.nbuffers; i++)
        snprintf(from.net.buffers[i].name, NET_NAME_MAX, "other.b%d", i);
    write_checkpoint(&from, "classify", path);
    build(&to, 10, 2);

    assert_int_equal(pretrained_load(path, &to.net, "classify", &copied,
                                     &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "none of its tensors matches"));
    assert_int_equal(copied.copied, 0);
    assert_int_equal(copied.skipped, to.net.nparams + to.net.nbuffers);
    release(&from);
    release(&to);
    harness_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(copies_matching_model),
        cmocka_unit_test(skips_other_class_count),
        cmocka_unit_test(skips_detect_class_convs),
        cmocka_unit_test(rejects_other_task),
        cmocka_unit_test(rejects_bad_file),
        cmocka_unit_test(rejects_no_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
