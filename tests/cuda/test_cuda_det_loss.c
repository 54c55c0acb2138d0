/*
 * The YOLOv8 detection loss on CUDA (kernels/cuda/det_loss.cu) against the
 * CPU kernel (kernels/cpu/det_loss.c), which tests/unit/test_det_loss.c
 * checks against hand-worked values, finite differences and PyTorch.
 *
 * Both sides get the same random predictions and boxes (fixed seeds) on
 * several layouts, and must agree within tolerances of the kind that
 * tests/cuda/test_cuda_kernels.c explains. The assigner decodes boxes and
 * scores anchors in float on both sides. expf, atanf and powf are not
 * correctly rounded in either libm, and nvcc may fuse a * b + c into one
 * FMA where gcc does not. The metric's CIoU^6 multiplies those few-ulp
 * differences by about 6, so soft targets differ by an estimated 1e-6
 * relative at most. Hence rtol 1e-5 on the loss parts, and atol 1e-6 +
 * rtol 1e-4 on the gradient (whose largest values are of order 1). The
 * number of positives must match exactly, because both sides apply the
 * same rules; only two metrics or CIoUs within a few ulp of each other
 * could make them choose differently.
 *
 * Without a usable CUDA device each test that needs one prints
 * "SKIP cuda: ..." with the reason and is reported as skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/kernels_cuda.h"
#include "detect.h"
#include "kernels.h"

static struct kctx cpu_ctx;
static struct kctx gpu_ctx;
static int gpu_ready;
static char no_gpu_reason[256];
static char gpu_init_error[ERROR_MSG_MAX];

/* ---- Random numbers ----------------------------------------------------- */

static uint64_t rng_state;

/* splitmix64 */
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi), from 24 random bits. */
static float rng_uniform(float lo, float hi)
{
    float unit = (float)(rng_next() >> 40) / 16777216.0f;

    return lo + (hi - lo) * unit;
}

/* ---- Setup and device helpers ------------------------------------------- */

static int group_setup(void **state)
{
    struct error err = {0};

    (void)state;
    cpu_kctx_init(&cpu_ctx, 0);
    if (cuda_device_count(no_gpu_reason, sizeof(no_gpu_reason)) == 0)
        return 0;
    /* NOTE: device 0 only; pick another with CUDA_VISIBLE_DEVICES. */
    if (cuda_kctx_init(&gpu_ctx, 0, &err) != 0) {
        snprintf(gpu_init_error, sizeof(gpu_init_error), "%s", err.msg);
        return 0;
    }
    gpu_ready = 1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (gpu_ready)
        cuda_kctx_free(&gpu_ctx);
    cpu_kctx_free(&cpu_ctx);
    return 0;
}

/* Skip the test without a usable device; fail it when a device exists
 * but its context could not be created. */
static void require_gpu(void)
{
    if (gpu_init_error[0] != '\0')
        fail_msg("a CUDA device exists, but cuda_kctx_init(0) failed: %s",
                 gpu_init_error);
    if (!gpu_ready) {
        printf("SKIP cuda: no usable CUDA device (%s)\n", no_gpu_reason);
        fflush(stdout);
        skip();
    }
}

static float *gpu_floats(size_t n)
{
    struct error err = {0};
    void *ptr = NULL;

    if (cuda_malloc(&gpu_ctx, &ptr, sizeof(float) * n, &err) != 0)
        fail_msg("cuda_malloc(%zu floats): %s", n, err.msg);
    return ptr;
}

static void gpu_upload(void *dst, const void *src, size_t bytes)
{
    struct error err = {0};

    if (cuda_memcpy_h2d(&gpu_ctx, dst, src, bytes, &err) != 0)
        fail_msg("cuda_memcpy_h2d(%zu): %s", bytes, err.msg);
}

static void gpu_download(void *dst, const void *src, size_t bytes)
{
    struct error err = {0};

    if (cuda_memcpy_d2h(&gpu_ctx, dst, src, bytes, &err) != 0)
        fail_msg("cuda_memcpy_d2h(%zu): %s", bytes, err.msg);
}

static float *host_floats(size_t n)
{
    float *x = calloc(n > 0 ? n : 1, sizeof(float));

    assert_non_null(x);
    return x;
}

/* ---- Cases --------------------------------------------------------------- */

struct loss_case {
    const char *name;
    int img, nc, batch, nlevels;
    int boxes_per_image; /* up to this many; image 1 gets none */
    uint64_t seed;
};

static const struct loss_case cases[] = {
    {"64 px, 3 classes", 64, 3, 2, 3, 4, 1},
    {"128 px, 10 classes", 128, 10, 4, 3, 12, 2},
    {"32 px, one class", 32, 1, 3, 2, 3, 3},
    {"640 px, 80 classes", 640, 80, 2, 3, 20, 4},
};

struct loss_input {
    struct det_layout l;
    size_t n; /* floats of pred */
    float *pred;
    struct det_gt *gt;
    int ngt;
};

/* Random predictions (distributions that favour the low bins, class
 * logits around -1) and boxes sorted by image. */
static void make_input(const struct loss_case *c, struct loss_input *in)
{
    static const int strides[3] = {8, 16, 32};

    assert_int_equal(
        det_layout_init(&in->l, c->nc, c->img, c->img, strides, c->nlevels), 0);
    rng_state = c->seed;
    in->n = (size_t)c->batch * det_outputs(&in->l) * in->l.anchors;
    in->pred = host_floats(in->n);
    for (size_t i = 0; i < in->n; i++) {
        size_t channel = i / in->l.anchors % det_outputs(&in->l);
        if ((int)channel < 4 * in->l.reg_max)
            in->pred[i] = rng_uniform(-2.0f, 2.0f) -
                          0.35f * (float)(channel % in->l.reg_max);
        else
            in->pred[i] = rng_uniform(-3.0f, 1.0f);
    }

    in->gt = calloc((size_t)c->batch * c->boxes_per_image + 1, sizeof(*in->gt));
    assert_non_null(in->gt);
    in->ngt = 0;
    for (int b = 0; b < c->batch; b++) {
        int count = b == 1 ? 0 : 1 + (int)(rng_next() % c->boxes_per_image);
        for (int k = 0; k < count; k++) {
            float s = (float)c->img;
            float x1 = rng_uniform(0, 0.8f * s);
            float y1 = rng_uniform(0, 0.8f * s);
            float w = rng_uniform(0.03f * s, 0.5f * s);
            float h = rng_uniform(0.03f * s, 0.5f * s);
            struct det_gt *g = &in->gt[in->ngt++];

            g->image = b;
            g->cls = (int)(rng_next() % c->nc);
            g->x1 = x1;
            g->y1 = y1;
            g->x2 = fminf(x1 + w, s);
            g->y2 = fminf(y1 + h, s);
        }
    }
}

static void free_input(struct loss_input *in)
{
    free(in->pred);
    free(in->gt);
}

/* Fail unless |actual - expected| <= atol + rtol |expected| for every
 * element, printing the worst one. */
static void check_close(const char *what, const float *expected,
                        const float *actual, size_t n, double atol, double rtol)
{
    size_t worst = 0, failures = 0;
    double worst_excess = -INFINITY;

    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)actual[i] - expected[i]);
        double excess = err - (atol + rtol * fabs(expected[i]));
        if (!(excess <= 0)) {
            failures++;
            if (isnan(excess) || excess > worst_excess) {
                worst_excess = isnan(excess) ? INFINITY : excess;
                worst = i;
            }
        }
    }
    if (failures > 0)
        fail_msg("%s: %zu of %zu values differ (atol %g, rtol %g); worst "
                 "at %zu: expected %.9g, actual %.9g",
                 what, failures, n, atol, rtol, worst, (double)expected[worst],
                 (double)actual[worst]);
}

static void check_part(const char *what, double expected, double actual)
{
    if (!(fabs(actual - expected) <= 1e-6 + 1e-5 * fabs(expected)))
        fail_msg("%s: expected %.12g, actual %.12g", what, expected, actual);
}

/* ---- Tests -------------------------------------------------------------- */

static void det_loss_matches_cpu(void **state)
{
    (void)state;
    require_gpu();
    struct det_loss_config cfg = det_loss_defaults();

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct loss_case *c = &cases[i];
        struct loss_input in;
        struct det_loss_result want, got;

        printf("case: %s\n", c->name);
        make_input(c, &in);
        float *dpred_cpu = host_floats(in.n);
        float *dpred_gpu = host_floats(in.n);
        float *d_pred = gpu_floats(in.n);
        float *d_dpred = gpu_floats(in.n);

        gpu_upload(d_pred, in.pred, sizeof(float) * in.n);
        assert_int_equal(cpu_det_loss_forward_backward(
                             &cpu_ctx, &in.l, &cfg, c->batch, in.pred, in.gt,
                             in.ngt, 0.5f, dpred_cpu, &want),
                         0);
        assert_int_equal(cuda_det_loss_forward_backward(
                             &gpu_ctx, &in.l, &cfg, c->batch, d_pred, in.gt,
                             in.ngt, 0.5f, d_dpred, &got),
                         0);
        gpu_download(dpred_gpu, d_dpred, sizeof(float) * in.n);

        assert_true(want.positives > 0);
        assert_int_equal(got.positives, want.positives);
        check_part("box", want.box, got.box);
        check_part("cls", want.cls, got.cls);
        check_part("dfl", want.dfl, got.dfl);
        check_part("total", want.total, got.total);
        check_close("dpred", dpred_cpu, dpred_gpu, in.n, 1e-6, 1e-4);

        cuda_free(&gpu_ctx, d_pred);
        cuda_free(&gpu_ctx, d_dpred);
        free(dpred_cpu);
        free(dpred_gpu);
        free_input(&in);
    }
}

static void det_loss_without_boxes(void **state)
{
    (void)state;
    require_gpu();
    struct det_loss_config cfg = det_loss_defaults();
    struct loss_input in;
    struct det_loss_result want, got;

    make_input(&cases[1], &in);
    float *dpred_cpu = host_floats(in.n);
    float *dpred_gpu = host_floats(in.n);
    float *d_pred = gpu_floats(in.n);
    float *d_dpred = gpu_floats(in.n);

    gpu_upload(d_pred, in.pred, sizeof(float) * in.n);
    assert_int_equal(cpu_det_loss_forward_backward(&cpu_ctx, &in.l, &cfg, 4,
                                                   in.pred, NULL, 0, 1.0f,
                                                   dpred_cpu, &want),
                     0);
    assert_int_equal(cuda_det_loss_forward_backward(&gpu_ctx, &in.l, &cfg, 4,
                                                    d_pred, NULL, 0, 1.0f,
                                                    d_dpred, &got),
                     0);
    gpu_download(dpred_gpu, d_dpred, sizeof(float) * in.n);
    assert_int_equal(got.positives, 0);
    assert_true(got.box == 0.0);
    assert_true(got.dfl == 0.0);
    check_part("cls", want.cls, got.cls);
    check_close("dpred", dpred_cpu, dpred_gpu, in.n, 1e-6, 1e-4);

    cuda_free(&gpu_ctx, d_pred);
    cuda_free(&gpu_ctx, d_dpred);
    free(dpred_cpu);
    free(dpred_gpu);
    free_input(&in);
}

static void det_loss_repeats_exactly(void **state)
{
    (void)state;
    require_gpu();
    struct det_loss_config cfg = det_loss_defaults();
    struct loss_input in;
    struct det_loss_result first, second, no_grad;

    make_input(&cases[1], &in);
    float *dpred[2] = {host_floats(in.n), host_floats(in.n)};
    float *d_pred = gpu_floats(in.n);
    float *d_dpred = gpu_floats(in.n);

    gpu_upload(d_pred, in.pred, sizeof(float) * in.n);
    assert_int_equal(cuda_det_loss_forward_backward(&gpu_ctx, &in.l, &cfg, 4,
                                                    d_pred, in.gt, in.ngt, 1.0f,
                                                    d_dpred, &first),
                     0);
    gpu_download(dpred[0], d_dpred, sizeof(float) * in.n);
    assert_int_equal(cuda_det_loss_forward_backward(&gpu_ctx, &in.l, &cfg, 4,
                                                    d_pred, in.gt, in.ngt, 1.0f,
                                                    d_dpred, &second),
                     0);
    gpu_download(dpred[1], d_dpred, sizeof(float) * in.n);
    assert_int_equal(cuda_det_loss_forward_backward(&gpu_ctx, &in.l, &cfg, 4,
                                                    d_pred, in.gt, in.ngt, 1.0f,
                                                    NULL, &no_grad),
                     0);

    assert_memory_equal(dpred[0], dpred[1], sizeof(float) * in.n);
    assert_true(first.total == second.total);
    assert_true(no_grad.total == first.total);
    assert_int_equal(no_grad.positives, first.positives);

    cuda_free(&gpu_ctx, d_pred);
    cuda_free(&gpu_ctx, d_dpred);
    free(dpred[0]);
    free(dpred[1]);
    free_input(&in);
}

static void det_loss_rejects_bad_class(void **state)
{
    (void)state;
    /* The arguments are checked on the host before any CUDA call, so this
     * runs without a device too. */
    struct kctx none = {0};
    struct det_layout l;
    int stride = 8;
    struct det_gt gt = {0, 5, 0, 0, 8, 8};
    struct det_loss_config cfg = det_loss_defaults();
    struct det_loss_result r;

    assert_int_equal(det_layout_init(&l, 2, 32, 32, &stride, 1), 0);
    assert_int_equal(cuda_det_loss_forward_backward(&none, &l, &cfg, 1, NULL,
                                                    &gt, 1, 1.0f, NULL, &r),
                     -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(det_loss_matches_cpu),
        cmocka_unit_test(det_loss_without_boxes),
        cmocka_unit_test(det_loss_repeats_exactly),
        cmocka_unit_test(det_loss_rejects_bad_class),
    };

    return cmocka_run_group_tests_name("cuda det loss", tests, group_setup,
                                       group_teardown);
}
