/* Tests of model YAML reading and network building: parameter counts of
 * the shipped models, scale selection by name, and invalid files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/args.h"
#include "engine/net.h"
#include "fsutil.h"
#include "harness.h"

static size_t count_params(const char *model, int classes, int imgsz)
{
    struct model_spec spec;
    struct error err = {0};
    struct kctx ctx;
    struct net net;
    size_t n;

    cpu_kctx_init(&ctx, 1);
    if (model_spec_load(model, "", classes, &spec, &err) != 0)
        fail_msg("%s", err.msg);
    if (net_build(&net, &spec, imgsz, imgsz, 1, 0, &ctx, &err) != 0)
        fail_msg("%s", err.msg);
    n = net_param_count(&net);
    net_free(&net);
    cpu_kctx_free(&ctx);
    return n;
}

/* Counts of Ultralytics' YOLOv8 classifiers at 1,000 classes: n is
 * 2,719,288 (derived from its module definitions); s and m must be within
 * 1% of the published, rounded 6.4M and 17.0M. */
static void yolov8_cls_parameter_counts(void **state)
{
    (void)state;
    assert_int_equal(count_params("backend/engine/models/yolov8n-cls.yaml",
                                  1000, 64),
                     2719288);
    size_t s = count_params("backend/engine/models/yolov8s-cls.yaml", 1000,
                            64);
    assert_true(s > 6336000 && s < 6464000);
    size_t m = count_params("backend/engine/models/yolov8m-cls.yaml", 1000,
                            64);
    assert_true(m > 16830000 && m < 17170000);
}

/* Ultralytics' model summaries at 80 classes print 3,157,200 parameters
 * for yolov8n and 11,166,560 for yolov8s; both include the 16 frozen
 * weights of the DFL layer, which is not a parameter here. Strides 8, 16
 * and 32 give 80 * 80 + 40 * 40 + 20 * 20 = 8,400 anchors at 640. */
static void yolov8_detect_parameter_counts(void **state)
{
    (void)state;
    assert_int_equal(count_params("yolov8n.yaml", 80, 64), 3157184);
    assert_int_equal(count_params("yolov8s.yaml", 80, 64), 11166544);
}

static void yolov8_detect_layout(void **state)
{
    struct model_spec spec;
    struct error err = {0};
    struct kctx ctx;
    struct net net;

    (void)state;
    cpu_kctx_init(&ctx, 1);
    if (model_spec_load("yolov8n.yaml", "", 10, &spec, &err) != 0)
        fail_msg("%s", err.msg);
    assert_string_equal(spec.task, "detect");
    if (net_build(&net, &spec, 640, 640, 1, 0, &ctx, &err) != 0)
        fail_msg("%s", err.msg);
    const struct layer *last = &net.layers[net.nlayers - 1];
    assert_int_equal(last->kind, LAYER_DETECT);
    const struct det_layout *lay = &last->u.detect->layout;
    assert_int_equal(lay->nlevels, 3);
    assert_int_equal(lay->stride[0], 8);
    assert_int_equal(lay->stride[1], 16);
    assert_int_equal(lay->stride[2], 32);
    assert_int_equal(lay->anchors, 8400);
    assert_int_equal(lay->first[2], 8000);
    assert_int_equal(last->c, 64 + 10);
    net_free(&net);
    cpu_kctx_free(&ctx);
}

static void class_count_overrides_nc(void **state)
{
    (void)state;
    /* Only the final linear layer changes: 1280 * (10 - 1000) weights and
     * 10 - 1000 biases. */
    size_t n1000 = count_params("backend/engine/models/yolov8n-cls.yaml",
                                1000, 64);
    size_t n10 = count_params("backend/engine/models/yolov8n-cls.yaml", 10,
                              64);
    assert_int_equal(n1000 - n10, 990 * 1281);
}

static int load_text(const char *text, struct error *err)
{
    char dir[PATH_MAX], path[PATH_MAX + 16];
    struct model_spec spec;
    int rc;

    harness_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/m.yaml", dir);
    assert_int_equal(fs_write_atomic(path, text, strlen(text), 0644, err),
                     0);
    rc = model_spec_load(path, "", 0, &spec, err);
    harness_rmtree(dir);
    return rc;
}

static void invalid_models_rejected(void **state)
{
    static const struct {
        const char *yaml;
        const char *message;
    } cases[] = {
        {"nc: 2\nbackbone:\n  - [-1, 1, Transformer, [8]]\nhead: []\n",
         "module 'Transformer' is not supported"},
        {"nc: 2\nbackbone:\n  - [-1, 1, Conv, [8, 3, 2]]\n"
         "  - [5, 1, Conv, [8, 3, 2]]\nhead: []\n",
         "invalid 'from'"},
        {"nc: 2\nbackbone:\n  - [-1, 0, Conv, [8, 3, 2]]\nhead: []\n",
         "repeats must be"},
        {"nc: 2\nbackbone: [[-1, 1, Conv]]\n", "expected [from, repeats"},
        {"nc: 2\nhead:\n  - [-1, 1, Classify, [nc]]\n",
         "'backbone' must be a non-empty list"},
        {"nc: [\n", "not valid YAML"},
        {"nc: 2\nbackbone:\n  - [-1, 1, Conv, [8, 3, 2]]\nhead: []\n",
         "must be Classify or Detect"},
        {"nc: 2\nbackbone:\n  - [-1, 1, Conv, [8, 3, 2]]\n"
         "  - [-1, 1, Conv, [8, 3, 2]]\n"
         "head:\n  - [[0, 1], 1, Detect, [nc]]\n  - [-1, 1, Conv, [8, 3, 1]]\n",
         "must be the last layer"},
        {"nc: 2\nbackbone:\n  - [-1, 1, Conv, [-8, 3, 2]]\nhead: []\n",
         "output channels must be"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct error err = {0};
        if (load_text(cases[i].yaml, &err) == 0)
            fail_msg("case %zu loaded but should fail", i);
        if (strstr(err.msg, cases[i].message) == NULL)
            fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg,
                     cases[i].message);
    }
}

static void missing_model_named(void **state)
{
    struct model_spec spec;
    struct error err = {0};

    (void)state;
    assert_int_equal(model_spec_load("no-such-model.yaml", "", 0, &spec,
                                     &err),
                     -ENOENT);
    assert_non_null(strstr(err.msg, "no-such-model.yaml"));
}

static void args_reject_bad_values(void **state)
{
    static const struct {
        const char *word, *message;
    } cases[] = {
        {"epochs=ten", "invalid epochs=ten"},
        {"epochs=0", "must be >= 1"},
        {"batch=-4", "invalid batch=-4"},
        {"lr0=abc", "invalid lr0=abc"},
        {"cos_lr=maybe", "expected true or false"},
        {"colour=red", "unknown argument 'colour'"},
        {"epochs", "expected key=value"},
        {"fraction=1.5", "invalid fraction=1.5"},
    };
    struct train_args a;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct error err = {0};
        args_defaults(&a);
        assert_int_equal(args_set(&a, cases[i].word, &err), -EINVAL);
        if (strstr(err.msg, cases[i].message) == NULL)
            fail_msg("'%s': message '%s' lacks '%s'", cases[i].word,
                     err.msg, cases[i].message);
    }
}

static void args_defaults_match_ultralytics(void **state)
{
    struct train_args a;
    struct error err = {0};

    (void)state;
    args_defaults(&a);
    assert_int_equal(a.epochs, 100);
    assert_int_equal(a.batch, 16);
    assert_int_equal(a.patience, 100);
    assert_int_equal(a.nbs, 64);
    assert_int_equal(a.close_mosaic, 10);
    assert_string_equal(a.optimizer, "auto");
    assert_true(a.lr0 == 0.01 && a.lrf == 0.01);
    assert_true(a.momentum == 0.937 && a.weight_decay == 0.0005);
    assert_true(a.warmup_epochs == 3.0 && a.warmup_momentum == 0.8);
    assert_true(a.warmup_bias_lr == 0.1);
    assert_true(a.box == 7.5 && a.cls == 0.5 && a.dfl == 1.5);
    assert_int_equal(args_set(&a, "cos_lr=True", &err), 0);
    assert_int_equal(a.cos_lr, 1);
}

/* Found by tests/fuzz/fuzz_model_yaml: a width of about 6.7e89 made the
 * channel count overflow int (undefined behavior) instead of failing. */
static void huge_scale_width_rejected(void **state)
{
    static const char *const widths[] = {"6.66e89", "1e300", "inf",
                                         "nan", "2.0"};
    char yaml[256];

    (void)state;
    for (size_t i = 0; i < sizeof(widths) / sizeof(widths[0]); i++) {
        struct error err = {0};
        /* A width of 2.0 takes 2^30 channels to 2^31, past INT_MAX. */
        snprintf(yaml, sizeof(yaml),
                 "nc: 2\nscales:\n  n: [0.33, %s, 2147483647]\n"
                 "backbone:\n  - [-1, 1, Conv, [1073741824, 3, 2]]\n"
                 "head:\n  - [-1, 1, Classify, [nc]]\n",
                 widths[i]);
        if (load_text(yaml, &err) == 0)
            fail_msg("width %s loaded but should fail", widths[i]);
        if (strstr(err.msg, "output channels must be") == NULL)
            fail_msg("width %s: message '%s' lacks 'output channels must "
                     "be'",
                     widths[i], err.msg);
    }
}

/* Found by the same target: a huge depth made the scaled repeat count
 * overflow int. */
static void huge_scale_depth_rejected(void **state)
{
    struct error err = {0};

    (void)state;
    assert_int_not_equal(
        load_text("nc: 2\nscales:\n  n: [1e300, 0.25, 1024]\n"
                  "backbone:\n  - [-1, 3, C2f, [64, True]]\n"
                  "head:\n  - [-1, 1, Classify, [nc]]\n",
                  &err),
        0);
    assert_non_null(strstr(err.msg, "is too large"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(yolov8_cls_parameter_counts),
        cmocka_unit_test(yolov8_detect_parameter_counts),
        cmocka_unit_test(yolov8_detect_layout),
        cmocka_unit_test(class_count_overrides_nc),
        cmocka_unit_test(invalid_models_rejected),
        cmocka_unit_test(missing_model_named),
        cmocka_unit_test(args_reject_bad_values),
        cmocka_unit_test(args_defaults_match_ultralytics),
        cmocka_unit_test(huge_scale_width_rejected),
        cmocka_unit_test(huge_scale_depth_rejected),
    };
    return cmocka_run_group_tests_name("model_yaml", tests, NULL, NULL);
}
