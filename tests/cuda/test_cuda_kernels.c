/*
 * CUDA kernels (kernels/cuda) against the CPU kernels (kernels/cpu). Every
 * operation runs on the same random inputs (fixed seeds) on both sides,
 * and the results must agree within a tolerance given, with its reason, at
 * each comparison. The tolerances come in three kinds:
 *
 * - exact: copies, pooling, upsampling and updates where both sides do
 *   the same float operations in the same order;
 * - a few float ulp: formulas with expf or log1pf, which are not correctly
 *   rounded in either libm, or where nvcc fuses a * b + c into one FMA and
 *   gcc does not;
 * - 1e-4 of the largest value: convolutions and GEMMs, which add their
 *   products in another order, and in cuDNN's case possibly through
 *   Winograd or FFT transforms. TF32 is off (the kctx default), so every
 *   product keeps float32 precision. A wrong index or a missed
 *   accumulation shows up as a difference of order 1.
 *
 * Gradient buffers start from random values rather than zero, so every
 * backward check also verifies that gradients are accumulated (+=).
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
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/kernels_cuda.h"
#include "cuda_test.h"
#include "kernels.h"

/* Relative tolerance of convolutions and GEMMs, times the largest |value|
 * of the expected tensor (see the file comment). */
#define GEMM_TOL 1e-4


/* A tensor in both memories: host for the CPU kernel, dev for the CUDA
 * kernel, starting with the same values. */
struct buf {
    float *host;
    float *dev;
    size_t n;
};

static struct buf buf_from_host(const float *values, size_t n)
{
    struct buf b = {host_floats(n), NULL, n};

    memcpy(b.host, values, n * sizeof(float));
    b.dev = gpu_alloc(n * sizeof(float));
    gpu_upload(b.dev, b.host, n * sizeof(float));
    return b;
}

static struct buf buf_random(size_t n, float lo, float hi)
{
    float *values = host_floats(n);

    for (size_t i = 0; i < n; i++)
        values[i] = rng_uniform(lo, hi);
    struct buf b = buf_from_host(values, n);
    free(values);
    return b;
}

static struct buf buf_zero(size_t n)
{
    struct buf b = {host_floats(n), NULL, n};

    b.dev = gpu_alloc(n * sizeof(float));
    return b;
}

static void buf_free(struct buf *b)
{
    free(b->host);
    cuda_free(&gpu_ctx, b->dev);
    b->host = NULL;
    b->dev = NULL;
}

static double max_abs(const float *x, size_t n)
{
    double m = 0.0;

    for (size_t i = 0; i < n; i++)
        m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* ---- Comparisons -------------------------------------------------------- */

/* Fail unless |got[i] - want[i]| <= abs_tol + rel_tol * |want[i]| for all
 * i, where a NaN matches only a NaN. The message names the first value
 * out of tolerance, how many are, and the largest difference. */
static void expect_close(const char *label, const float *got,
                         const float *want, size_t n, double abs_tol,
                         double rel_tol)
{
    size_t bad = 0;
    size_t first = 0;
    double worst = 0.0;

    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)got[i] - want[i]);
        int ok;

        if (isnan(want[i]) || isnan(got[i]))
            ok = isnan(want[i]) && isnan(got[i]);
        else
            ok = diff <= abs_tol + rel_tol * fabs(want[i]);
        if (!isnan(diff) && diff > worst)
            worst = diff;
        if (!ok && bad++ == 0)
            first = i;
    }
    if (bad > 0)
        fail_msg("%s: [%zu] is %.9g on CUDA and %.9g on the CPU; %zu of "
                 "%zu values differ by more than %.3g + %.3g * |CPU value|, "
                 "by up to %.3g",
                 label, first, got[first], want[first], bad, n, abs_tol,
                 rel_tol, worst);
}

/* Download b.dev and compare it with b.host. */
static void expect_buf_close(const char *label, const struct buf *b,
                             double abs_tol, double rel_tol)
{
    float *got = host_floats(b->n);

    gpu_download(got, b->dev, b->n * sizeof(float));
    expect_close(label, got, b->host, b->n, abs_tol, rel_tol);
    free(got);
}

static void expect_scalar_close(const char *label, double got, double want,
                                double rel_tol)
{
    if (!(fabs(got - want) <= rel_tol * fabs(want)))
        fail_msg("%s: %.17g on CUDA and %.17g on the CPU, relative "
                 "difference above %.3g",
                 label, got, want, rel_tol);
}

/* ---- Context, memory and errors ----------------------------------------- */

static void device_count_gives_reason(void **state)
{
    char why[256];
    int count;

    (void)state;
    memset(why, 'x', sizeof(why));
    count = cuda_device_count(why, sizeof(why));
    assert_true(count >= 0);
    if (count == 0) {
        /* The SKIP lines print this reason. */
        assert_true(strlen(why) > 0);
        assert_true(strlen(why) < sizeof(why));
        printf("cuda_device_count: 0 (%s)\n", why);
    } else {
        assert_string_equal(why, "");
    }
}

static void kctx_init_rejects_missing_device(void **state)
{
    struct kctx ctx;
    struct error err = {0};

    (void)state;
    assert_int_equal(cuda_kctx_init(&ctx, 4096, &err), -ENODEV);
    assert_int_equal(err.code, -ENODEV);
    assert_true(strlen(err.msg) > 0);
    assert_null(ctx.cuda);
    /* Freeing after a failed init must be harmless. */
    cuda_kctx_free(&ctx);
    assert_null(ctx.cuda);
}

static void memory_round_trip(void **state)
{
    float in[100];
    float out[100];

    (void)state;
    require_gpu();
    for (int i = 0; i < 100; i++)
        in[i] = (float)i - 50.5f;
    float *dev = gpu_alloc(sizeof(in));
    gpu_upload(dev, in, sizeof(in));
    gpu_download(out, dev, sizeof(out));
    assert_memory_equal(out, in, sizeof(in));

    struct error err = {0};
    assert_int_equal(cuda_memset_zero(&gpu_ctx, dev, sizeof(in), &err), 0);
    gpu_download(out, dev, sizeof(out));
    for (int i = 0; i < 100; i++)
        assert_true(out[i] == 0.0f);
    cuda_free(&gpu_ctx, dev);
    gpu_sync("cuda_free");
}

static void workspace_grows_and_keeps(void **state)
{
    (void)state;
    require_gpu();
    void *small = cuda_kctx_workspace(&gpu_ctx, 1000);
    assert_non_null(small);
    assert_true(gpu_ctx.workspace_size >= 1000);
    /* A request that fits returns the same buffer. */
    assert_ptr_equal(cuda_kctx_workspace(&gpu_ctx, 10), gpu_ctx.workspace);
    void *large = cuda_kctx_workspace(&gpu_ctx, (size_t)64 << 20);
    assert_non_null(large);
    assert_true(gpu_ctx.workspace_size >= ((size_t)64 << 20));
    assert_ptr_equal(cuda_kctx_workspace(&gpu_ctx, 1000), large);
    gpu_sync("cuda_kctx_workspace");
}

static void invalid_shape_is_recorded(void **state)
{
    struct conv2d_shape s = {.n = 1, .c_in = 4, .h = 8, .w = 8,
                             .c_out = 4, .k = 3, .stride = 1, .pad = 1,
                             .groups = 1};
    struct error err = {0};

    (void)state;
    require_gpu();
    assert_int_equal(conv2d_shape_init(&s), 0);
    s.h_out += 1; /* disagrees with cuDNN: the call must not run */
    float *x = gpu_alloc(4 * 8 * 8 * sizeof(float));
    float *w = gpu_alloc(4 * 4 * 9 * sizeof(float));
    float *y = gpu_alloc(4 * 9 * 8 * sizeof(float));
    cuda_conv2d_forward(&gpu_ctx, &s, x, w, NULL, y);
    assert_int_equal(cuda_synchronize(&gpu_ctx, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "conv2d_shape_init"));
    assert_non_null(strstr(err.msg, "conv2d.cu:"));
    /* Reading the error clears it. */
    assert_int_equal(cuda_kctx_status(&gpu_ctx, &err), 0);
    cuda_free(&gpu_ctx, x);
    cuda_free(&gpu_ctx, w);
    cuda_free(&gpu_ctx, y);
}

/* ---- Convolution -------------------------------------------------------- */

struct conv_case {
    const char *name;
    int n, c_in, h, w, c_out, k, stride, pad, groups;
    int bias;
};

static const struct conv_case conv_cases[] = {
    {"conv 3x3 stride 1", 2, 8, 12, 12, 16, 3, 1, 1, 1, 1},
    {"conv 3x3 stride 2 odd size", 2, 16, 13, 11, 8, 3, 2, 1, 1, 1},
    {"conv 1x1 without bias", 3, 32, 10, 10, 16, 1, 1, 0, 1, 0},
    {"conv 6x6 stride 2 stem", 1, 3, 32, 32, 8, 6, 2, 2, 1, 1},
    {"conv depthwise 3x3", 2, 8, 9, 9, 8, 3, 1, 1, 8, 1},
    {"conv 2 groups", 2, 8, 7, 7, 4, 3, 1, 1, 2, 0},
};

static void check_conv(const struct conv_case *c)
{
    struct conv2d_shape s = {.n = c->n, .c_in = c->c_in, .h = c->h,
                             .w = c->w, .c_out = c->c_out, .k = c->k,
                             .stride = c->stride, .pad = c->pad,
                             .groups = c->groups};
    char label[128];

    assert_int_equal(conv2d_shape_init(&s), 0);
    size_t nx = (size_t)s.n * s.c_in * s.h * s.w;
    size_t fan_in = (size_t)(s.c_in / s.groups) * s.k * s.k;
    size_t nw = (size_t)s.c_out * fan_in;
    size_t ny = (size_t)s.n * s.c_out * s.h_out * s.w_out;
    float bound = 1.0f / sqrtf((float)fan_in);

    struct buf x = buf_random(nx, -1.0f, 1.0f);
    struct buf w = buf_random(nw, -bound, bound);
    struct buf b = buf_random((size_t)s.c_out, -0.5f, 0.5f);
    struct buf y = buf_zero(ny);
    const float *b_host = c->bias ? b.host : NULL;
    const float *b_dev = c->bias ? b.dev : NULL;

    cpu_conv2d_forward(&cpu_ctx, &s, x.host, w.host, b_host, y.host);
    cuda_conv2d_forward(&gpu_ctx, &s, x.dev, w.dev, b_dev, y.dev);
    gpu_sync(c->name);
    snprintf(label, sizeof(label), "%s forward y", c->name);
    expect_buf_close(label, &y, GEMM_TOL * max_abs(y.host, ny), 0.0);

    struct buf dy = buf_random(ny, -1.0f, 1.0f);
    struct buf dx = buf_random(nx, -1.0f, 1.0f);
    struct buf dw = buf_random(nw, -1.0f, 1.0f);
    struct buf db = buf_random((size_t)s.c_out, -1.0f, 1.0f);

    cpu_conv2d_backward(&cpu_ctx, &s, x.host, w.host, dy.host, dx.host,
                        dw.host, db.host);
    cuda_conv2d_backward(&gpu_ctx, &s, x.dev, w.dev, dy.dev, dx.dev, dw.dev,
                         db.dev);
    gpu_sync(c->name);
    snprintf(label, sizeof(label), "%s backward dx", c->name);
    expect_buf_close(label, &dx, GEMM_TOL * max_abs(dx.host, nx), 0.0);
    snprintf(label, sizeof(label), "%s backward dw", c->name);
    expect_buf_close(label, &dw, GEMM_TOL * max_abs(dw.host, nw), 0.0);
    /* db sums n * h_out * w_out values of dy in double on both sides. */
    snprintf(label, sizeof(label), "%s backward db", c->name);
    expect_buf_close(label, &db, 1e-6, 1e-6);

    buf_free(&x);
    buf_free(&w);
    buf_free(&b);
    buf_free(&y);
    buf_free(&dy);
    buf_free(&dx);
    buf_free(&dw);
    buf_free(&db);
}

static void conv2d_matches_cpu(void **state)
{
    (void)state;
    require_gpu();
    rng_seed(1);
    for (size_t i = 0; i < sizeof(conv_cases) / sizeof(conv_cases[0]); i++)
        check_conv(&conv_cases[i]);
}

static void conv2d_backward_skips_null(void **state)
{
    struct conv2d_shape s = {.n = 2, .c_in = 4, .h = 6, .w = 6, .c_out = 8,
                             .k = 3, .stride = 1, .pad = 1, .groups = 1};

    (void)state;
    require_gpu();
    rng_seed(2);
    assert_int_equal(conv2d_shape_init(&s), 0);
    size_t nx = (size_t)s.n * s.c_in * s.h * s.w;
    size_t nw = (size_t)s.c_out * s.c_in * s.k * s.k;
    size_t ny = (size_t)s.n * s.c_out * s.h_out * s.w_out;
    struct buf x = buf_random(nx, -1.0f, 1.0f);
    struct buf w = buf_random(nw, -0.2f, 0.2f);
    struct buf dy = buf_random(ny, -1.0f, 1.0f);
    struct buf dw = buf_random(nw, -1.0f, 1.0f);

    /* Only the weight gradient. */
    cpu_conv2d_backward(&cpu_ctx, &s, x.host, w.host, dy.host, NULL,
                        dw.host, NULL);
    cuda_conv2d_backward(&gpu_ctx, &s, x.dev, w.dev, dy.dev, NULL, dw.dev,
                         NULL);
    gpu_sync("conv2d backward dw only");
    expect_buf_close("conv2d backward dw only", &dw,
                     GEMM_TOL * max_abs(dw.host, nw), 0.0);
    buf_free(&x);
    buf_free(&w);
    buf_free(&dy);
    buf_free(&dw);
}

/* The same backward twice from the same starting values gives the same
 * bits: no atomics, and a fixed algorithm per shape. */
static void conv2d_backward_is_deterministic(void **state)
{
    struct conv2d_shape s = {.n = 4, .c_in = 16, .h = 20, .w = 20,
                             .c_out = 32, .k = 3, .stride = 1, .pad = 1,
                             .groups = 1};

    (void)state;
    require_gpu();
    rng_seed(3);
    assert_int_equal(conv2d_shape_init(&s), 0);
    size_t nx = (size_t)s.n * s.c_in * s.h * s.w;
    size_t nw = (size_t)s.c_out * s.c_in * s.k * s.k;
    size_t ny = (size_t)s.n * s.c_out * s.h_out * s.w_out;
    struct buf x = buf_random(nx, -1.0f, 1.0f);
    struct buf w = buf_random(nw, -0.1f, 0.1f);
    struct buf dy = buf_random(ny, -1.0f, 1.0f);
    float *results[2][3];

    for (int run = 0; run < 2; run++) {
        float *dx = gpu_alloc(nx * sizeof(float));
        float *dw = gpu_alloc(nw * sizeof(float));
        float *db = gpu_alloc((size_t)s.c_out * sizeof(float));

        cuda_conv2d_backward(&gpu_ctx, &s, x.dev, w.dev, dy.dev, dx, dw, db);
        gpu_sync("conv2d backward");
        results[run][0] = host_floats(nx);
        results[run][1] = host_floats(nw);
        results[run][2] = host_floats((size_t)s.c_out);
        gpu_download(results[run][0], dx, nx * sizeof(float));
        gpu_download(results[run][1], dw, nw * sizeof(float));
        gpu_download(results[run][2], db, (size_t)s.c_out * sizeof(float));
        cuda_free(&gpu_ctx, dx);
        cuda_free(&gpu_ctx, dw);
        cuda_free(&gpu_ctx, db);
    }
    assert_memory_equal(results[0][0], results[1][0], nx * sizeof(float));
    assert_memory_equal(results[0][1], results[1][1], nw * sizeof(float));
    assert_memory_equal(results[0][2], results[1][2],
                        (size_t)s.c_out * sizeof(float));
    for (int run = 0; run < 2; run++) {
        for (int i = 0; i < 3; i++)
            free(results[run][i]);
    }
    buf_free(&x);
    buf_free(&w);
    buf_free(&dy);
}

/* ---- Batch normalization ------------------------------------------------ */

struct bn_case {
    const char *name;
    int n, c, hw;
    float offset; /* x = offset + uniform(-2, 2) */
};

static const struct bn_case bn_cases[] = {
    {"batchnorm small", 4, 6, 63, 3.0f},
    /* 20000 values per channel: several partial sums per channel. */
    {"batchnorm mean far from 0", 2, 3, 10000, 100.0f},
    /* PyTorch's rule for one value: running_var takes the biased 0. */
    {"batchnorm one value per channel", 1, 4, 1, 0.5f},
};

/* Largest |x * scale[c]| over the tensor: the size of the terms that
 * y = x * scale + shift cancels when the mean is far from 0. */
static double bn_term_max(const struct bn_shape *s, const float *x,
                          const double *scale)
{
    double m = 0.0;

    for (int n = 0; n < s->n; n++) {
        for (int c = 0; c < s->c; c++) {
            const float *plane = x + ((size_t)n * s->c + c) * s->hw;
            double t = max_abs(plane, (size_t)s->hw) * fabs(scale[c]);
            m = t > m ? t : m;
        }
    }
    return m;
}

static void check_bn(const struct bn_case *bc)
{
    struct bn_shape s = {.n = bc->n, .c = bc->c, .hw = bc->hw,
                         .eps = 1e-3f, .momentum = 0.03f};
    size_t count = (size_t)s.n * s.c * s.hw;
    size_t nc = (size_t)s.c;
    char label[128];

    struct buf x = buf_random(count, bc->offset - 2.0f, bc->offset + 2.0f);
    struct buf gamma = buf_random(nc, 0.5f, 1.5f);
    struct buf beta = buf_random(nc, -0.5f, 0.5f);
    struct buf rmean = buf_random(nc, -1.0f, 1.0f);
    struct buf rvar = buf_random(nc, 0.5f, 2.0f);
    struct buf smean = buf_zero(nc);
    struct buf sinvstd = buf_zero(nc);
    struct buf y = buf_zero(count);

    cpu_batchnorm_forward_train(&cpu_ctx, &s, x.host, gamma.host, beta.host,
                                rmean.host, rvar.host, smean.host,
                                sinvstd.host, y.host);
    cuda_batchnorm_forward_train(&gpu_ctx, &s, x.dev, gamma.dev, beta.dev,
                                 rmean.dev, rvar.dev, smean.dev,
                                 sinvstd.dev, y.dev);
    gpu_sync(bc->name);

    /* Statistics are computed in double on both sides and rounded to
     * float once, so they differ by at most about one float ulp. */
    snprintf(label, sizeof(label), "%s save_mean", bc->name);
    expect_buf_close(label, &smean, 1e-7, 1e-6);
    snprintf(label, sizeof(label), "%s save_invstd", bc->name);
    expect_buf_close(label, &sinvstd, 0.0, 1e-6);
    snprintf(label, sizeof(label), "%s running_mean", bc->name);
    expect_buf_close(label, &rmean, 1e-7, 1e-6);
    snprintf(label, sizeof(label), "%s running_var", bc->name);
    expect_buf_close(label, &rvar, 1e-7, 1e-6);
    /* y = x * scale + shift: scale and shift may differ by one ulp, and
     * the GPU fuses the multiply-add. Both errors are a few ulp of the
     * largest |x * scale|. */
    double *scale = calloc(nc, sizeof(double));
    double scale_max = 0.0;
    assert_non_null(scale);
    for (size_t c = 0; c < nc; c++) {
        scale[c] = (double)gamma.host[c] * sinvstd.host[c];
        scale_max = fabs(scale[c]) > scale_max ? fabs(scale[c]) : scale_max;
    }
    snprintf(label, sizeof(label), "%s forward y", bc->name);
    expect_buf_close(label, &y, 8.0 * FLT_EPSILON *
                                   bn_term_max(&s, x.host, scale), 0.0);

    /* Inference with the updated running statistics, same tolerance with
     * scale = gamma / sqrt(running_var + eps). */
    cpu_batchnorm_forward_infer(&cpu_ctx, &s, x.host, gamma.host, beta.host,
                                rmean.host, rvar.host, y.host);
    cuda_batchnorm_forward_infer(&gpu_ctx, &s, x.dev, gamma.dev, beta.dev,
                                 rmean.dev, rvar.dev, y.dev);
    gpu_sync(bc->name);
    for (size_t c = 0; c < nc; c++)
        scale[c] = gamma.host[c] / sqrt((double)rvar.host[c] + s.eps);
    snprintf(label, sizeof(label), "%s inference y", bc->name);
    expect_buf_close(label, &y, 8.0 * FLT_EPSILON *
                                   bn_term_max(&s, x.host, scale), 0.0);
    free(scale);

    struct buf dy = buf_random(count, -1.0f, 1.0f);
    struct buf dx = buf_random(count, -1.0f, 1.0f);
    struct buf dgamma = buf_random(nc, -1.0f, 1.0f);
    struct buf dbeta = buf_random(nc, -1.0f, 1.0f);

    cpu_batchnorm_backward(&cpu_ctx, &s, x.host, gamma.host, smean.host,
                           sinvstd.host, dy.host, dx.host, dgamma.host,
                           dbeta.host);
    cuda_batchnorm_backward(&gpu_ctx, &s, x.dev, gamma.dev, smean.dev,
                            sinvstd.dev, dy.dev, dx.dev, dgamma.dev,
                            dbeta.dev);
    gpu_sync(bc->name);
    /* Sums in double on both sides, rounded once. */
    snprintf(label, sizeof(label), "%s backward dgamma", bc->name);
    expect_buf_close(label, &dgamma, 1e-6, 1e-6);
    snprintf(label, sizeof(label), "%s backward dbeta", bc->name);
    expect_buf_close(label, &dbeta, 1e-6, 1e-6);
    /* dx += a dy + b (x - mean) + k with a = gamma * invstd: the constants
     * are rounded from double (one ulp apart at most), and the GPU fuses
     * the multiply-adds. Errors are a few ulp of the largest term, |a dy|
     * (up to 47 with one value per channel, where a dy and k cancel), or
     * of the prefilled dx, of order 1. */
    double dx_term = scale_max * max_abs(dy.host, count);
    snprintf(label, sizeof(label), "%s backward dx", bc->name);
    expect_buf_close(label, &dx,
                     16.0 * FLT_EPSILON * (dx_term > 1.0 ? dx_term : 1.0),
                     1e-5);

    buf_free(&x);
    buf_free(&gamma);
    buf_free(&beta);
    buf_free(&rmean);
    buf_free(&rvar);
    buf_free(&smean);
    buf_free(&sinvstd);
    buf_free(&y);
    buf_free(&dy);
    buf_free(&dx);
    buf_free(&dgamma);
    buf_free(&dbeta);
}

static void batchnorm_matches_cpu(void **state)
{
    (void)state;
    require_gpu();
    rng_seed(4);
    for (size_t i = 0; i < sizeof(bn_cases) / sizeof(bn_cases[0]); i++)
        check_bn(&bn_cases[i]);
}

static void batchnorm_backward_skips_null(void **state)
{
    struct bn_shape s = {.n = 2, .c = 5, .hw = 30, .eps = 1e-3f,
                         .momentum = 0.03f};
    size_t count = (size_t)s.n * s.c * s.hw;

    (void)state;
    require_gpu();
    rng_seed(5);
    struct buf x = buf_random(count, -2.0f, 2.0f);
    struct buf gamma = buf_random(5, 0.5f, 1.5f);
    struct buf smean = buf_random(5, -0.1f, 0.1f);
    struct buf sinvstd = buf_random(5, 0.5f, 1.0f);
    struct buf dy = buf_random(count, -1.0f, 1.0f);
    struct buf dgamma = buf_random(5, -1.0f, 1.0f);

    /* Only dgamma: dx and dbeta are NULL. */
    cpu_batchnorm_backward(&cpu_ctx, &s, x.host, gamma.host, smean.host,
                           sinvstd.host, dy.host, NULL, dgamma.host, NULL);
    cuda_batchnorm_backward(&gpu_ctx, &s, x.dev, gamma.dev, smean.dev,
                            sinvstd.dev, dy.dev, NULL, dgamma.dev, NULL);
    gpu_sync("batchnorm backward dgamma only");
    expect_buf_close("batchnorm backward dgamma only", &dgamma, 1e-6, 1e-6);
    buf_free(&x);
    buf_free(&gamma);
    buf_free(&smean);
    buf_free(&sinvstd);
    buf_free(&dy);
    buf_free(&dgamma);
}

/* ---- Elementwise -------------------------------------------------------- */

static void silu_matches_cpu(void **state)
{
    const size_t n = 100003;

    (void)state;
    require_gpu();
    rng_seed(6);
    float *values = host_floats(n);
    for (size_t i = 0; i < n; i++)
        values[i] = rng_uniform(-20.0f, 20.0f);
    /* Limits: exp(-x) overflows to +inf below about -88. */
    values[0] = -100.0f;
    values[1] = 100.0f;
    values[2] = 0.0f;
    values[3] = -88.5f;
    struct buf x = buf_from_host(values, n);
    struct buf y = buf_zero(n);
    free(values);

    cpu_silu_forward(&cpu_ctx, x.host, y.host, n);
    cuda_silu_forward(&gpu_ctx, x.dev, y.dev, n);
    gpu_sync("silu forward");
    /* expf differs by a few ulp between CUDA and glibc; the tiny absolute
     * term covers results near the denormal range. */
    expect_buf_close("silu forward y", &y, 1e-30, 4e-6);

    struct buf dy = buf_random(n, -1.0f, 1.0f);
    struct buf dx = buf_random(n, -1.0f, 1.0f);
    cpu_silu_backward(&cpu_ctx, x.host, dy.host, dx.host, n);
    cuda_silu_backward(&gpu_ctx, x.dev, dy.dev, dx.dev, n);
    gpu_sync("silu backward");
    /* s * (1 + x (1 - s)): for large x, one ulp of s near 1 (6e-8)
     * becomes |x| * 6e-8 in the result, and sigmoid differs by a few. */
    expect_buf_close("silu backward dx", &dx,
                     8.0 * FLT_EPSILON * max_abs(x.host, n), 1e-5);

    buf_free(&x);
    buf_free(&y);
    buf_free(&dy);
    buf_free(&dx);
}

static void add_matches_cpu(void **state)
{
    const size_t n = 70001;

    (void)state;
    require_gpu();
    rng_seed(7);
    struct buf x = buf_random(n, -1.0f, 1.0f);
    struct buf y = buf_random(n, -1.0f, 1.0f);

    cpu_add_forward(&cpu_ctx, x.host, y.host, n);
    cuda_add_forward(&gpu_ctx, x.dev, y.dev, n);
    gpu_sync("add forward");
    /* One float add per value on both sides: exact. */
    expect_buf_close("add forward y", &y, 0.0, 0.0);
    buf_free(&x);
    buf_free(&y);
}

/* ---- Pooling and resampling --------------------------------------------- */

struct pool_case {
    const char *name;
    int n, c, h, w, k, stride, pad;
    int ties; /* values on a coarse grid, so windows hold equal maxima */
    int nan;  /* one NaN in the input */
};

static const struct pool_case pool_cases[] = {
    {"maxpool 5x5 stride 1 (SPPF)", 2, 3, 10, 9, 5, 1, 2, 0, 0},
    {"maxpool 2x2 stride 2", 2, 4, 12, 12, 2, 2, 0, 0, 0},
    {"maxpool 3x3 stride 2 odd size", 1, 3, 11, 7, 3, 2, 1, 0, 1},
    {"maxpool 3x3 ties", 2, 2, 8, 8, 3, 1, 1, 1, 0},
};

static void check_maxpool(const struct pool_case *pc)
{
    struct pool_shape s = {.n = pc->n, .c = pc->c, .h = pc->h, .w = pc->w,
                           .k = pc->k, .stride = pc->stride, .pad = pc->pad};
    char label[128];

    assert_int_equal(pool_shape_init(&s), 0);
    size_t nx = (size_t)s.n * s.c * s.h * s.w;
    size_t ny = (size_t)s.n * s.c * s.h_out * s.w_out;
    float *values = host_floats(nx);
    for (size_t i = 0; i < nx; i++) {
        values[i] = rng_uniform(-1.0f, 1.0f);
        if (pc->ties)
            values[i] = roundf(values[i] * 2.0f) / 2.0f;
    }
    if (pc->nan)
        values[nx / 2] = NAN;
    struct buf x = buf_from_host(values, nx);
    struct buf y = buf_zero(ny);
    int32_t *argmax = calloc(ny, sizeof(int32_t));
    int32_t *argmax_got = calloc(ny, sizeof(int32_t));
    int32_t *argmax_dev = gpu_alloc(ny * sizeof(int32_t));
    assert_non_null(argmax);
    assert_non_null(argmax_got);
    free(values);

    cpu_maxpool_forward(&cpu_ctx, &s, x.host, y.host, argmax);
    cuda_maxpool_forward(&gpu_ctx, &s, x.dev, y.dev, argmax_dev);
    gpu_sync(pc->name);
    /* Comparisons only: exact, and the same first maximum. */
    snprintf(label, sizeof(label), "%s forward y", pc->name);
    expect_buf_close(label, &y, 0.0, 0.0);
    gpu_download(argmax_got, argmax_dev, ny * sizeof(int32_t));
    for (size_t i = 0; i < ny; i++) {
        if (argmax_got[i] != argmax[i])
            fail_msg("%s: argmax[%zu] is %d on CUDA and %d on the CPU",
                     pc->name, i, argmax_got[i], argmax[i]);
    }

    struct buf dy = buf_random(ny, -1.0f, 1.0f);
    struct buf dx = buf_random(nx, -1.0f, 1.0f);
    cpu_maxpool_backward(&cpu_ctx, &s, argmax, dy.host, dx.host);
    cuda_maxpool_backward(&gpu_ctx, &s, argmax_dev, dy.dev, dx.dev);
    gpu_sync(pc->name);
    /* The GPU adds the same values in the same order as the CPU. */
    snprintf(label, sizeof(label), "%s backward dx", pc->name);
    expect_buf_close(label, &dx, 0.0, 0.0);

    buf_free(&x);
    buf_free(&y);
    buf_free(&dy);
    buf_free(&dx);
    free(argmax);
    free(argmax_got);
    cuda_free(&gpu_ctx, argmax_dev);
}

static void maxpool_matches_cpu(void **state)
{
    (void)state;
    require_gpu();
    rng_seed(8);
    for (size_t i = 0; i < sizeof(pool_cases) / sizeof(pool_cases[0]); i++)
        check_maxpool(&pool_cases[i]);
}

static void avgpool_global_matches_cpu(void **state)
{
    const int n = 3, c = 20, hw = 7 * 9;
    size_t nx = (size_t)n * c * hw;
    size_t ny = (size_t)n * c;

    (void)state;
    require_gpu();
    rng_seed(9);
    struct buf x = buf_random(nx, -1.0f, 1.0f);
    struct buf y = buf_zero(ny);
    cpu_avgpool_global_forward(&cpu_ctx, n, c, hw, x.host, y.host);
    cuda_avgpool_global_forward(&gpu_ctx, n, c, hw, x.dev, y.dev);
    gpu_sync("avgpool forward");
    /* Sums in double in another order, rounded once to float. */
    expect_buf_close("avgpool forward y", &y, 1e-7, 1e-6);

    struct buf dy = buf_random(ny, -1.0f, 1.0f);
    struct buf dx = buf_random(nx, -1.0f, 1.0f);
    cpu_avgpool_global_backward(&cpu_ctx, n, c, hw, dy.host, dx.host);
    cuda_avgpool_global_backward(&gpu_ctx, n, c, hw, dy.dev, dx.dev);
    gpu_sync("avgpool backward");
    /* dy / hw, then one add: the same operations. */
    expect_buf_close("avgpool backward dx", &dx, 0.0, 0.0);
    buf_free(&x);
    buf_free(&y);
    buf_free(&dy);
    buf_free(&dx);
}

static void upsample_matches_cpu(void **state)
{
    const int n = 2, c = 3, h = 5, w = 7;

    (void)state;
    require_gpu();
    rng_seed(10);
    for (int f = 2; f <= 3; f++) {
        size_t nx = (size_t)n * c * h * w;
        size_t ny = nx * f * f;
        char label[64];
        struct buf x = buf_random(nx, -1.0f, 1.0f);
        struct buf y = buf_zero(ny);

        cpu_upsample_nearest_forward(&cpu_ctx, n, c, h, w, f, x.host,
                                     y.host);
        cuda_upsample_nearest_forward(&gpu_ctx, n, c, h, w, f, x.dev,
                                      y.dev);
        gpu_sync("upsample forward");
        /* Copies, and the same sums in the same order: exact. */
        snprintf(label, sizeof(label), "upsample x%d forward y", f);
        expect_buf_close(label, &y, 0.0, 0.0);

        struct buf dy = buf_random(ny, -1.0f, 1.0f);
        struct buf dx = buf_random(nx, -1.0f, 1.0f);
        cpu_upsample_nearest_backward(&cpu_ctx, n, c, h, w, f, dy.host,
                                      dx.host);
        cuda_upsample_nearest_backward(&gpu_ctx, n, c, h, w, f, dy.dev,
                                       dx.dev);
        gpu_sync("upsample backward");
        snprintf(label, sizeof(label), "upsample x%d backward dx", f);
        expect_buf_close(label, &dx, 0.0, 0.0);
        buf_free(&x);
        buf_free(&y);
        buf_free(&dy);
        buf_free(&dx);
    }
}

/* ---- Channel concat and split ------------------------------------------- */

static void channel_copy_matches_cpu(void **state)
{
    const struct channel_slice s = {.n = 3, .hw = 37, .c_whole = 10,
                                    .c_part = 4, .c_off = 5};
    size_t n_whole = (size_t)s.n * s.c_whole * s.hw;
    size_t n_part = (size_t)s.n * s.c_part * s.hw;

    (void)state;
    require_gpu();
    rng_seed(11);
    for (int accumulate = 0; accumulate <= 1; accumulate++) {
        char label[64];
        struct buf part = buf_random(n_part, -1.0f, 1.0f);
        struct buf whole = buf_random(n_whole, -1.0f, 1.0f);

        cpu_channel_copy_in(&cpu_ctx, &s, part.host, whole.host, accumulate);
        cuda_channel_copy_in(&gpu_ctx, &s, part.dev, whole.dev, accumulate);
        gpu_sync("channel_copy_in");
        /* Copies or one add per value: exact. */
        snprintf(label, sizeof(label), "channel_copy_in accumulate=%d",
                 accumulate);
        expect_buf_close(label, &whole, 0.0, 0.0);

        struct buf out = buf_random(n_part, -1.0f, 1.0f);
        cpu_channel_copy_out(&cpu_ctx, &s, whole.host, out.host, accumulate);
        cuda_channel_copy_out(&gpu_ctx, &s, whole.dev, out.dev, accumulate);
        gpu_sync("channel_copy_out");
        snprintf(label, sizeof(label), "channel_copy_out accumulate=%d",
                 accumulate);
        expect_buf_close(label, &out, 0.0, 0.0);
        buf_free(&part);
        buf_free(&whole);
        buf_free(&out);
    }
}

static void slice_copy_matches_cpu(void **state)
{
    const struct tensor_slice s = {.n = 3, .c_whole = 74, .c_part = 10,
                                   .c_off = 64, .hw_whole = 336,
                                   .hw_part = 64, .hw_off = 256};
    size_t n_whole = (size_t)s.n * s.c_whole * s.hw_whole;
    size_t n_part = (size_t)s.n * s.c_part * s.hw_part;

    (void)state;
    require_gpu();
    rng_seed(12);
    for (int accumulate = 0; accumulate <= 1; accumulate++) {
        char label[64];
        struct buf part = buf_random(n_part, -1.0f, 1.0f);
        struct buf whole = buf_random(n_whole, -1.0f, 1.0f);

        cpu_slice_copy_in(&cpu_ctx, &s, part.host, whole.host, accumulate);
        cuda_slice_copy_in(&gpu_ctx, &s, part.dev, whole.dev, accumulate);
        gpu_sync("slice_copy_in");
        /* Copies or one add per value: exact. */
        snprintf(label, sizeof(label), "slice_copy_in accumulate=%d",
                 accumulate);
        expect_buf_close(label, &whole, 0.0, 0.0);

        struct buf out = buf_random(n_part, -1.0f, 1.0f);
        cpu_slice_copy_out(&cpu_ctx, &s, whole.host, out.host, accumulate);
        cuda_slice_copy_out(&gpu_ctx, &s, whole.dev, out.dev, accumulate);
        gpu_sync("slice_copy_out");
        snprintf(label, sizeof(label), "slice_copy_out accumulate=%d",
                 accumulate);
        expect_buf_close(label, &out, 0.0, 0.0);
        buf_free(&part);
        buf_free(&whole);
        buf_free(&out);
    }
}

/* ---- Linear ------------------------------------------------------------- */

static void check_linear(int n, int in, int out, int bias)
{
    char label[96];
    size_t nx = (size_t)n * in;
    size_t nw = (size_t)out * in;
    size_t ny = (size_t)n * out;
    float bound = 1.0f / sqrtf((float)in);
    struct buf x = buf_random(nx, -1.0f, 1.0f);
    struct buf w = buf_random(nw, -bound, bound);
    struct buf b = buf_random((size_t)out, -0.5f, 0.5f);
    struct buf y = buf_zero(ny);

    cpu_linear_forward(&cpu_ctx, n, in, out, x.host, w.host,
                       bias ? b.host : NULL, y.host);
    cuda_linear_forward(&gpu_ctx, n, in, out, x.dev, w.dev,
                        bias ? b.dev : NULL, y.dev);
    gpu_sync("linear forward");
    snprintf(label, sizeof(label), "linear %dx%d->%d bias=%d forward y", n, in,
             out, bias);
    expect_buf_close(label, &y, GEMM_TOL * max_abs(y.host, ny), 0.0);

    struct buf dy = buf_random(ny, -1.0f, 1.0f);
    struct buf dx = buf_random(nx, -1.0f, 1.0f);
    struct buf dw = buf_random(nw, -1.0f, 1.0f);
    struct buf db = buf_random((size_t)out, -1.0f, 1.0f);
    cpu_linear_backward(&cpu_ctx, n, in, out, x.host, w.host, dy.host,
                        dx.host, dw.host, db.host);
    cuda_linear_backward(&gpu_ctx, n, in, out, x.dev, w.dev, dy.dev, dx.dev,
                         dw.dev, db.dev);
    gpu_sync("linear backward");
    snprintf(label, sizeof(label), "linear %dx%d->%d backward dx", n, in, out);
    expect_buf_close(label, &dx, GEMM_TOL * max_abs(dx.host, nx), 0.0);
    snprintf(label, sizeof(label), "linear %dx%d->%d backward dw", n, in, out);
    expect_buf_close(label, &dw, GEMM_TOL * max_abs(dw.host, nw), 0.0);
    /* Column sums in double, in row order on both sides. */
    snprintf(label, sizeof(label), "linear %dx%d->%d backward db", n, in, out);
    expect_buf_close(label, &db, 0.0, 1e-6);

    buf_free(&x);
    buf_free(&w);
    buf_free(&b);
    buf_free(&y);
    buf_free(&dy);
    buf_free(&dx);
    buf_free(&dw);
    buf_free(&db);
}

static void linear_matches_cpu(void **state)
{
    (void)state;
    require_gpu();
    rng_seed(12);
    check_linear(7, 33, 10, 1);
    check_linear(7, 33, 10, 0);
    check_linear(64, 256, 80, 1);
}

/* ---- Losses ------------------------------------------------------------- */

static void check_xent(int n, int classes, int with_probs)
{
    const float scale = 2.5f;
    size_t count = (size_t)n * classes;
    char label[96];
    struct buf logits = buf_random(count, -8.0f, 8.0f);
    struct buf probs = buf_zero(count);
    struct buf dlogits = buf_zero(count);
    int32_t *labels = calloc((size_t)n, sizeof(int32_t));
    assert_non_null(labels);

    for (int r = 0; r < n; r++)
        labels[r] = (int32_t)(rng_next() % (uint64_t)classes);
    int32_t *labels_dev = gpu_alloc((size_t)n * sizeof(int32_t));
    gpu_upload(labels_dev, labels, (size_t)n * sizeof(int32_t));

    float want = cpu_softmax_xent_forward_backward(
        &cpu_ctx, n, classes, logits.host, labels, scale,
        with_probs ? probs.host : NULL, dlogits.host);
    float got = cuda_softmax_xent_forward_backward(
        &gpu_ctx, n, classes, logits.dev, labels_dev, scale,
        with_probs ? probs.dev : NULL, dlogits.dev);
    gpu_sync("softmax cross-entropy");

    /* exp and log in double on both sides; the per-row losses are summed
     * in the same order, and the mean is rounded once to float. */
    snprintf(label, sizeof(label), "xent n=%d classes=%d loss", n, classes);
    expect_scalar_close(label, got, want, 1e-6);
    /* Probabilities are rounded from double: one float ulp of 1 at
     * most. */
    if (with_probs) {
        snprintf(label, sizeof(label), "xent n=%d classes=%d probs", n,
                 classes);
        expect_buf_close(label, &probs, 1e-7, 1e-6);
    }
    snprintf(label, sizeof(label), "xent n=%d classes=%d dlogits", n, classes);
    expect_buf_close(label, &dlogits, 1e-7 * scale, 1e-6);

    buf_free(&logits);
    buf_free(&probs);
    buf_free(&dlogits);
    free(labels);
    cuda_free(&gpu_ctx, labels_dev);
}

static void softmax_xent_matches_cpu(void **state)
{
    (void)state;
    require_gpu();
    rng_seed(13);
    check_xent(9, 13, 1);
    /* More classes than a warp has lanes. */
    check_xent(37, 80, 1);
    check_xent(5, 1000, 0);
}

static void check_bce(size_t n, int with_dx)
{
    const float scale = 0.75f;
    char label[96];
    struct buf x = buf_random(n, -30.0f, 30.0f);
    struct buf t = buf_random(n, 0.0f, 1.0f);
    struct buf dx = buf_zero(n);

    double want = cpu_bce_logits_forward_backward(
        &cpu_ctx, n, x.host, t.host, scale, with_dx ? dx.host : NULL);
    double got = cuda_bce_logits_forward_backward(
        &gpu_ctx, n, x.dev, t.dev, scale, with_dx ? dx.dev : NULL);
    gpu_sync("bce with logits");

    /* Each term uses expf and log1pf (a few ulp apart between CUDA and
     * glibc) and is summed in double in another order. */
    snprintf(label, sizeof(label), "bce n=%zu loss", n);
    expect_scalar_close(label, got, want, 1e-5);
    if (with_dx) {
        snprintf(label, sizeof(label), "bce n=%zu dx", n);
        expect_buf_close(label, &dx, 1e-6 * scale, 1e-5);
    }
    buf_free(&x);
    buf_free(&t);
    buf_free(&dx);
}

static void bce_logits_matches_cpu(void **state)
{
    (void)state;
    require_gpu();
    rng_seed(14);
    check_bce(5, 1);
    /* More values than one partial sum takes (8192). */
    check_bce(20011, 1);
    check_bce(20011, 0);
}

/* ---- Optimizers --------------------------------------------------------- */

/* Several steps, so that velocity and moments are used, not only set.
 * Tolerance for all optimizer checks: a few float ulp of values of order
 * 1, from FMA contraction on the GPU. */
#define OPTIM_STEPS 3
#define OPTIM_ABS 1e-6
#define OPTIM_REL 1e-5

static void sgd_matches_cpu(void **state)
{
    const size_t n = 5003;

    (void)state;
    require_gpu();
    rng_seed(15);
    for (int variant = 0; variant < 3; variant++) {
        /* 0: momentum, 1: Nesterov, 2: no velocity buffer */
        char label[64];
        struct buf p = buf_random(n, -1.0f, 1.0f);
        struct buf vel = buf_random(n, -0.1f, 0.1f);
        float *vel_host = variant == 2 ? NULL : vel.host;
        float *vel_dev = variant == 2 ? NULL : vel.dev;

        for (int step = 0; step < OPTIM_STEPS; step++) {
            struct buf g = buf_random(n, -1.0f, 1.0f);
            cpu_sgd_step(&cpu_ctx, n, p.host, g.host, vel_host, 0.01f, 0.9f,
                         5e-4f, variant == 1);
            cuda_sgd_step(&gpu_ctx, n, p.dev, g.dev, vel_dev, 0.01f, 0.9f,
                          5e-4f, variant == 1);
            gpu_sync("sgd step");
            buf_free(&g);
        }
        snprintf(label, sizeof(label), "sgd variant %d p", variant);
        expect_buf_close(label, &p, OPTIM_ABS, OPTIM_REL);
        if (variant != 2) {
            snprintf(label, sizeof(label), "sgd variant %d velocity", variant);
            expect_buf_close(label, &vel, OPTIM_ABS, OPTIM_REL);
        }
        buf_free(&p);
        buf_free(&vel);
    }
}

static void adamw_matches_cpu(void **state)
{
    const size_t n = 5003;

    (void)state;
    require_gpu();
    rng_seed(16);
    struct buf p = buf_random(n, -1.0f, 1.0f);
    struct buf m = buf_zero(n);
    struct buf v = buf_zero(n);

    for (int64_t step = 1; step <= OPTIM_STEPS; step++) {
        struct buf g = buf_random(n, -1.0f, 1.0f);
        cpu_adamw_step(&cpu_ctx, n, p.host, g.host, m.host, v.host, 1e-3f,
                       0.9f, 0.999f, 1e-8f, 0.05f, step);
        cuda_adamw_step(&gpu_ctx, n, p.dev, g.dev, m.dev, v.dev, 1e-3f, 0.9f,
                        0.999f, 1e-8f, 0.05f, step);
        gpu_sync("adamw step");
        buf_free(&g);
    }
    expect_buf_close("adamw p", &p, OPTIM_ABS, OPTIM_REL);
    expect_buf_close("adamw m", &m, OPTIM_ABS, OPTIM_REL);
    expect_buf_close("adamw v", &v, OPTIM_ABS, OPTIM_REL);
    buf_free(&p);
    buf_free(&m);
    buf_free(&v);
}

static void ema_scale_sumsq_match_cpu(void **state)
{
    const size_t n = 30011;

    (void)state;
    require_gpu();
    rng_seed(17);
    struct buf ema = buf_random(n, -1.0f, 1.0f);
    struct buf p = buf_random(n, -1.0f, 1.0f);

    cpu_ema_update(&cpu_ctx, n, ema.host, p.host, 0.9999f);
    cuda_ema_update(&gpu_ctx, n, ema.dev, p.dev, 0.9999f);
    gpu_sync("ema update");
    expect_buf_close("ema", &ema, OPTIM_ABS, OPTIM_REL);

    cpu_scale(&cpu_ctx, n, p.host, 0.37f);
    cuda_scale(&gpu_ctx, n, p.dev, 0.37f);
    gpu_sync("scale");
    /* One multiply per value: exact. */
    expect_buf_close("scale", &p, 0.0, 0.0);

    /* Squares and sums in double; only the order of the sum differs. */
    double want = cpu_sumsq(&cpu_ctx, n, p.host);
    double got = cuda_sumsq(&gpu_ctx, n, p.dev);
    gpu_sync("sumsq");
    expect_scalar_close("sumsq", got, want, 1e-12);
    buf_free(&ema);
    buf_free(&p);
}

/* Reductions give the same bits when run twice. */
static void reductions_are_deterministic(void **state)
{
    const size_t n = 300007;
    struct bn_shape s = {.n = 4, .c = 3, .hw = 25000, .eps = 1e-3f,
                         .momentum = 0.03f};
    size_t count = (size_t)s.n * s.c * s.hw;

    (void)state;
    require_gpu();
    rng_seed(18);
    struct buf x = buf_random(n, -5.0f, 5.0f);
    double first = cuda_sumsq(&gpu_ctx, n, x.dev);
    double second = cuda_sumsq(&gpu_ctx, n, x.dev);
    gpu_sync("sumsq");
    assert_memory_equal(&first, &second, sizeof(first));

    struct buf bx = buf_random(count, -1.0f, 3.0f);
    struct buf gamma = buf_random(3, 0.5f, 1.5f);
    struct buf beta = buf_random(3, -0.5f, 0.5f);
    float stats[2][2][3];
    for (int run = 0; run < 2; run++) {
        float *rmean = gpu_alloc(3 * sizeof(float));
        float *rvar = gpu_alloc(3 * sizeof(float));
        float *smean = gpu_alloc(3 * sizeof(float));
        float *sinvstd = gpu_alloc(3 * sizeof(float));
        float *y = gpu_alloc(count * sizeof(float));

        cuda_batchnorm_forward_train(&gpu_ctx, &s, bx.dev, gamma.dev,
                                     beta.dev, rmean, rvar, smean, sinvstd,
                                     y);
        gpu_sync("batchnorm forward");
        gpu_download(stats[run][0], smean, 3 * sizeof(float));
        gpu_download(stats[run][1], sinvstd, 3 * sizeof(float));
        cuda_free(&gpu_ctx, rmean);
        cuda_free(&gpu_ctx, rvar);
        cuda_free(&gpu_ctx, smean);
        cuda_free(&gpu_ctx, sinvstd);
        cuda_free(&gpu_ctx, y);
    }
    assert_memory_equal(stats[0], stats[1], sizeof(stats[0]));
    buf_free(&x);
    buf_free(&bx);
    buf_free(&gamma);
    buf_free(&beta);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(device_count_gives_reason),
        cmocka_unit_test(kctx_init_rejects_missing_device),
        cmocka_unit_test(memory_round_trip),
        cmocka_unit_test(workspace_grows_and_keeps),
        cmocka_unit_test(invalid_shape_is_recorded),
        cmocka_unit_test(conv2d_matches_cpu),
        cmocka_unit_test(conv2d_backward_skips_null),
        cmocka_unit_test(conv2d_backward_is_deterministic),
        cmocka_unit_test(batchnorm_matches_cpu),
        cmocka_unit_test(batchnorm_backward_skips_null),
        cmocka_unit_test(silu_matches_cpu),
        cmocka_unit_test(add_matches_cpu),
        cmocka_unit_test(maxpool_matches_cpu),
        cmocka_unit_test(avgpool_global_matches_cpu),
        cmocka_unit_test(upsample_matches_cpu),
        cmocka_unit_test(channel_copy_matches_cpu),
        cmocka_unit_test(slice_copy_matches_cpu),
        cmocka_unit_test(linear_matches_cpu),
        cmocka_unit_test(softmax_xent_matches_cpu),
        cmocka_unit_test(bce_logits_matches_cpu),
        cmocka_unit_test(sgd_matches_cpu),
        cmocka_unit_test(adamw_matches_cpu),
        cmocka_unit_test(ema_scale_sumsq_match_cpu),
        cmocka_unit_test(reductions_are_deterministic),
    };

    return cmocka_run_group_tests_name("cuda kernels", tests, group_setup,
                                       group_teardown);
}
