/*
 * Optimizer steps, EMA of weights, sum of squares and scaling: one pass
 * over a parameter tensor, split into equal ranges per thread.
 *
 * The formulas follow PyTorch 1.13's single-tensor SGD and AdamW (see
 * kernels.h). AdamW computes its bias corrections in double, since
 * 1 - beta2^t for beta2 = 0.999 at t = 1 is 0.001 and float would keep
 * only four digits of it.
 */
#include "cpu.h"

#include <math.h>

void cpu_sgd_step(struct kctx *ctx, size_t n, float *p, const float *grad,
                  float *velocity, float lr, float momentum,
                  float weight_decay, int nesterov)
{
    int threads = cpu_thread_count(ctx);

    /* Without a velocity buffer (momentum 0 in PyTorch) the step is g. */
#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] + weight_decay * p[i];
        float step = g;

        if (velocity != NULL) {
            float v = momentum * velocity[i] + g;
            velocity[i] = v;
            step = nesterov ? g + momentum * v : v;
        }
        p[i] -= lr * step;
    }
}

void cpu_adamw_step(struct kctx *ctx, size_t n, float *p, const float *grad,
                    float *m, float *v, float lr, float beta1, float beta2,
                    float eps, float weight_decay, int64_t step)
{
    int threads = cpu_thread_count(ctx);
    double bc1 = 1.0 - pow(beta1, (double)step);
    double bc2 = 1.0 - pow(beta2, (double)step);
    float step_size = (float)(lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - lr * weight_decay;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;

        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}

void cpu_ema_update(struct kctx *ctx, size_t n, float *ema, const float *p,
                    float decay)
{
    int threads = cpu_thread_count(ctx);
    float keep = 1.0f - decay;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t i = 0; i < n; i++)
        ema[i] = decay * ema[i] + keep * p[i];
}

double cpu_sumsq(struct kctx *ctx, size_t n, const float *x)
{
    int threads = cpu_thread_count(ctx);
    size_t blocks = cpu_sum_block_count(n);
    double *block_sum = cpu_kctx_workspace(ctx, sizeof(double) * blocks);

    /* Fixed blocks summed in order: the same result for every thread
     * count (see cpu.h). */
#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t blk = 0; blk < blocks; blk++) {
        size_t end = (blk + 1) * CPU_SUM_BLOCK < n ? (blk + 1) * CPU_SUM_BLOCK
                                                   : n;
        double sum = 0.0;
        for (size_t i = blk * CPU_SUM_BLOCK; i < end; i++)
            sum += (double)x[i] * x[i];
        block_sum[blk] = sum;
    }

    double total = 0.0;
    for (size_t blk = 0; blk < blocks; blk++)
        total += block_sum[blk];
    return total;
}

void cpu_scale(struct kctx *ctx, size_t n, float *x, float a)
{
    int threads = cpu_thread_count(ctx);

#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t i = 0; i < n; i++)
        x[i] *= a;
}
