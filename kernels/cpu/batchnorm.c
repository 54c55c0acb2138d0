/*
 * Batch normalization over N, H, W per channel.
 *
 * Each channel is handled by one thread (static schedule over channels),
 * so every statistic is a sum in a fixed order. Sums run in double,
 * because a float accumulator over a 64 x 80 x 80 batch (409,600 values)
 * would lose about three digits. The per-plane loops are vectorized
 * (CPU_CLONES, omp simd reductions). The variance is computed in a second
 * pass around the mean, which stays accurate when the mean is large
 * against the spread.
 *
 * Backward, with xhat = (x - mean) * invstd and M = n * hw:
 *   dbeta  += sum dy,   dgamma += sum dy * xhat
 *   dx     += gamma * invstd * (dy - sum dy / M - xhat * sum(dy xhat) / M)
 */
#include "cpu.h"

#include <math.h>

/* Sum of x[i] over one plane. */
CPU_CLONES
static double plane_sum(const float *x, int n)
{
    double sum = 0.0;

#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++)
        sum += x[i];
    return sum;
}

/* Sum of (x[i] - mean)^2 over one plane. */
CPU_CLONES
static double plane_sq_dev(const float *x, int n, double mean)
{
    double sum = 0.0;

#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++)
        sum += (x[i] - mean) * (x[i] - mean);
    return sum;
}

/* y = x * scale + shift over one plane. */
CPU_CLONES
static void plane_affine(const float *x, int n, float scale, float shift,
                         float *y)
{
#pragma omp simd
    for (int i = 0; i < n; i++)
        y[i] = x[i] * scale + shift;
}

/* y = x * scale + shift over channel c of every image. */
static void channel_affine(const struct bn_shape *s, const float *x, int c,
                           float scale, float shift, float *y)
{
    for (int n = 0; n < s->n; n++) {
        size_t off = ((size_t)n * s->c + c) * s->hw;
        plane_affine(x + off, s->hw, scale, shift, y + off);
    }
}

void cpu_batchnorm_forward_train(struct kctx *ctx, const struct bn_shape *s,
                                 const float *x, const float *gamma,
                                 const float *beta, float *running_mean,
                                 float *running_var, float *save_mean,
                                 float *save_invstd, float *y)
{
    int threads = cpu_thread_count(ctx);
    double count = (double)s->n * s->hw;
    double m = s->momentum;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (int c = 0; c < s->c; c++) {
        double sum = 0.0;
        for (int n = 0; n < s->n; n++)
            sum += plane_sum(x + ((size_t)n * s->c + c) * s->hw, s->hw);
        double mean = sum / count;

        double sq = 0.0;
        for (int n = 0; n < s->n; n++)
            sq += plane_sq_dev(x + ((size_t)n * s->c + c) * s->hw, s->hw,
                               mean);
        double var = sq / count;
        double invstd = 1.0 / sqrt(var + s->eps);

        save_mean[c] = (float)mean;
        save_invstd[c] = (float)invstd;
        double scale = gamma[c] * invstd;
        channel_affine(s, x, c, (float)scale, (float)(beta[c] - mean * scale),
                       y);

        /* PyTorch keeps the unbiased variance; with one value per channel
         * there is none, and the biased one (0) is used. */
        double unbiased = count > 1 ? var * count / (count - 1) : var;
        running_mean[c] = (float)((1 - m) * running_mean[c] + m * mean);
        running_var[c] = (float)((1 - m) * running_var[c] + m * unbiased);
    }
}

void cpu_batchnorm_forward_infer(struct kctx *ctx, const struct bn_shape *s,
                                 const float *x, const float *gamma,
                                 const float *beta, const float *running_mean,
                                 const float *running_var, float *y)
{
    int threads = cpu_thread_count(ctx);

#pragma omp parallel for schedule(static) num_threads(threads)
    for (int c = 0; c < s->c; c++) {
        double invstd = 1.0 / sqrt((double)running_var[c] + s->eps);
        double scale = gamma[c] * invstd;
        double shift = beta[c] - running_mean[c] * scale;
        channel_affine(s, x, c, (float)scale, (float)shift, y);
    }
}

/* dx += a * dy + b * (x - mean) + k over one plane. */
CPU_CLONES
static void plane_input_grad(const float *x, const float *dy, int n,
                             float mean, float a, float b, float k,
                             float *dx)
{
#pragma omp simd
    for (int i = 0; i < n; i++)
        dx[i] += a * dy[i] + b * (x[i] - mean) + k;
}

/* Sums of dy and of dy * (x - mean) over one plane, added to *sum_dy and
 * *sum_dy_xc. */
CPU_CLONES
static void plane_grad_sums(const float *x, const float *dy, int n,
                            double mean, double *sum_dy, double *sum_dy_xc)
{
    double a = 0.0;
    double b = 0.0;

#pragma omp simd reduction(+ : a, b)
    for (int i = 0; i < n; i++) {
        a += dy[i];
        b += dy[i] * (x[i] - mean);
    }
    *sum_dy += a;
    *sum_dy_xc += b;
}

void cpu_batchnorm_backward(struct kctx *ctx, const struct bn_shape *s,
                            const float *x, const float *gamma,
                            const float *save_mean, const float *save_invstd,
                            const float *dy, float *dx, float *dgamma,
                            float *dbeta)
{
    int threads = cpu_thread_count(ctx);
    double count = (double)s->n * s->hw;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (int c = 0; c < s->c; c++) {
        double mean = save_mean[c];
        double invstd = save_invstd[c];
        double sum_dy = 0.0;
        double sum_dy_xc = 0.0;
        for (int n = 0; n < s->n; n++) {
            size_t off = ((size_t)n * s->c + c) * s->hw;
            plane_grad_sums(x + off, dy + off, s->hw, mean, &sum_dy,
                            &sum_dy_xc);
        }
        double sum_dy_xhat = sum_dy_xc * invstd;

        if (dbeta != NULL)
            dbeta[c] += (float)sum_dy;
        if (dgamma != NULL)
            dgamma[c] += (float)sum_dy_xhat;
        if (dx == NULL)
            continue;

        /* gamma * invstd * (dy - sum_dy / M - (x - mean) * invstd *
         * sum_dy_xhat / M) = a * dy + b * (x - mean) + k */
        double a = gamma[c] * invstd;
        double b = -a * invstd * sum_dy_xhat / count;
        double k = -a * sum_dy / count;
        for (int n = 0; n < s->n; n++) {
            size_t off = ((size_t)n * s->c + c) * s->hw;
            plane_input_grad(x + off, dy + off, s->hw, (float)mean,
                             (float)a, (float)b, (float)k, dx + off);
        }
    }
}
