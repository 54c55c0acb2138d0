/*
 * SiLU and elementwise add, split into equal contiguous ranges per thread.
 *
 * SiLU: y = x * s with s = sigmoid(x) = 1 / (1 + exp(-x)), and
 * dy/dx = s * (1 + x * (1 - s)).
 *
 * libm's expf is a call per element, which the compiler cannot vectorize
 * without -ffast-math. With it, SiLU cost more than all convolutions of
 * the benchmark network. exp_poly below is a vectorizable exp with a
 * relative error of about 2e-7 (two float ulps), evaluated in the
 * CPU_CLONES functions that GCC vectorizes per ISA.
 */
#include "cpu.h"

#include <string.h>

/*
 * exp(x) = 2^n * exp(r) with n = round(x / ln 2) and r = x - n ln 2, so
 * |r| <= ln(2) / 2 and the Taylor polynomial of degree 6 is within
 * r^7 / 7! <= 1.3e-7 of exp(r). ln 2 is split in a high part with few
 * mantissa bits (n * LN2_HI is exact) and a low part. x is clamped to
 * [-87, 88] so that 2^n stays a normal float; exp(-87) = 1.6e-38 and
 * exp(88) = 1.65e38 stand in for 0 and overflow, which is harmless in a
 * sigmoid. A NaN is set aside before the integer conversion, which
 * would be undefined for it, and returned as it came.
 */
static inline float exp_poly(float x)
{
    const float log2e = 1.44269504f;
    const float ln2_hi = 0.693145752f;
    const float ln2_lo = 1.42860677e-6f;
    /* Adding 1.5 * 2^23 rounds to an integer in the low mantissa bits. */
    const float round_magic = 12582912.0f;

    float nan = x;
    int is_nan = x != x;
    x = is_nan ? 0.0f : x;
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * log2e + round_magic) - round_magic;
    float r = (x - n * ln2_hi) - n * ln2_lo;

    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;

    /* 2^n from its exponent bits. */
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    return is_nan ? nan : p * scale;
}

static inline float sigmoid_poly(float x)
{
    return 1.0f / (1.0f + exp_poly(-x));
}

CPU_CLONES
static void silu_range(const float *x, float *y, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * sigmoid_poly(x[i]);
}

CPU_CLONES
static void silu_grad_range(const float *x, const float *dy, float *dx,
                            size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float s = sigmoid_poly(x[i]);
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void cpu_silu_forward(struct kctx *ctx, const float *x, float *y, size_t n)
{
    int threads = cpu_thread_count(ctx);

#pragma omp parallel for schedule(static, 1) num_threads(threads)
    for (int t = 0; t < threads; t++) {
        size_t begin = cpu_split_begin(n, threads, t);
        size_t end = cpu_split_begin(n, threads, t + 1);
        silu_range(x + begin, y + begin, end - begin);
    }
}

void cpu_silu_backward(struct kctx *ctx, const float *x, const float *dy,
                       float *dx, size_t n)
{
    int threads = cpu_thread_count(ctx);

#pragma omp parallel for schedule(static, 1) num_threads(threads)
    for (int t = 0; t < threads; t++) {
        size_t begin = cpu_split_begin(n, threads, t);
        size_t end = cpu_split_begin(n, threads, t + 1);
        silu_grad_range(x + begin, dy + begin, dx + begin, end - begin);
    }
}

void cpu_add_forward(struct kctx *ctx, const float *x, float *y, size_t n)
{
    int threads = cpu_thread_count(ctx);

#pragma omp parallel for simd schedule(static) num_threads(threads)
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}
