/*
 * Fully connected layer through sgemm, w of shape [out, in]:
 *
 *   forward  Y[n, out]   = X[n, in] * W^T + b
 *   backward dX[n, in]  += dY[n, out] * W
 *            dW[out, in] += dY^T * X,   db[out] += sum over n of dY
 *
 * Each GEMM is split by rows of its output between OpenMP threads, each
 * calling single-threaded sgemm (see cpu.h), so every output element is
 * computed by one thread in a fixed order.
 */
#include "cpu.h"

#include <omp.h>

/* Rows [r0, r1) of part `part` out of `parts` for `rows` rows. */
static void row_range(int rows, int parts, int part, int *r0, int *r1)
{
    *r0 = (int)cpu_split_begin((size_t)rows, parts, part);
    *r1 = (int)cpu_split_begin((size_t)rows, parts, part + 1);
}

/* Parts for a GEMM of `rows` output rows: one per thread, at most one
 * per row, at least one. */
static int part_count(const struct kctx *ctx, int rows)
{
    int threads = cpu_thread_count(ctx);

    if (rows >= threads)
        return threads;
    return rows > 0 ? rows : 1;
}

void cpu_linear_forward(struct kctx *ctx, int n, int in, int out,
                        const float *x, const float *w, const float *b,
                        float *y)
{
    int parts = part_count(ctx, n);

#pragma omp parallel for schedule(static, 1) num_threads(parts)
    for (int part = 0; part < parts; part++) {
        int r0, r1;
        row_range(n, parts, part, &r0, &r1);
        if (r1 == r0)
            continue;

        /* Start from the bias and let sgemm add X * W^T to it. */
        for (int r = r0; r < r1; r++) {
            for (int o = 0; o < out; o++)
                y[(size_t)r * out + o] = b != NULL ? b[o] : 0.0f;
        }
        cpu_sgemm(0, 1, r1 - r0, out, in, 1.0f, x + (size_t)r0 * in, in, w, in,
                  1.0f, y + (size_t)r0 * out, out);
    }
}

static void input_grad(struct kctx *ctx, int n, int in, int out,
                       const float *w, const float *dy, float *dx)
{
    int parts = part_count(ctx, n);

#pragma omp parallel for schedule(static, 1) num_threads(parts)
    for (int part = 0; part < parts; part++) {
        int r0, r1;
        row_range(n, parts, part, &r0, &r1);
        if (r1 == r0)
            continue;
        cpu_sgemm(0, 0, r1 - r0, in, out, 1.0f, dy + (size_t)r0 * out, out, w,
                  in, 1.0f, dx + (size_t)r0 * in, in);
    }
}

/* Rows of dW are output features: part `part` takes features [o0, o1),
 * which are columns o0 .. o1 - 1 of dY. */
static void weight_grad(struct kctx *ctx, int n, int in, int out,
                        const float *x, const float *dy, float *dw)
{
    int parts = part_count(ctx, out);

#pragma omp parallel for schedule(static, 1) num_threads(parts)
    for (int part = 0; part < parts; part++) {
        int o0, o1;
        row_range(out, parts, part, &o0, &o1);
        if (o1 == o0)
            continue;
        cpu_sgemm(1, 0, o1 - o0, in, n, 1.0f, dy + o0, out, x, in, 1.0f,
                  dw + (size_t)o0 * in, in);
    }
}

static void bias_grad(struct kctx *ctx, int n, int out, const float *dy,
                      float *db)
{
    int threads = cpu_thread_count(ctx);

#pragma omp parallel for schedule(static) num_threads(threads)
    for (int o = 0; o < out; o++) {
        double sum = 0.0;
        for (int r = 0; r < n; r++)
            sum += dy[(size_t)r * out + o];
        db[o] += (float)sum;
    }
}

void cpu_linear_backward(struct kctx *ctx, int n, int in, int out,
                         const float *x, const float *w, const float *dy,
                         float *dx, float *dw, float *db)
{
    if (dx != NULL)
        input_grad(ctx, n, in, out, w, dy, dx);
    if (dw != NULL)
        weight_grad(ctx, n, in, out, x, dy, dw);
    if (db != NULL)
        bias_grad(ctx, n, out, dy, db);
}
