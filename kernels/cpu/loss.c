/*
 * Losses that return a scalar and write the gradient of their input.
 *
 * The scalar is a sum over rows or elements. To keep it deterministic and
 * independent of the thread count, per-row losses (cross-entropy) or
 * per-block sums of CPU_SUM_BLOCK elements (BCE) go into workspace, and
 * the final sum adds them in order, in double.
 *
 * Softmax cross-entropy per row: logsumexp(z) - z[label], with logsumexp
 * taken around the row's maximum so that exp cannot overflow. The
 * gradient of the batch mean is (softmax - onehot) / n.
 * BCE with logits: max(x, 0) - x t + log(1 + exp(-|x|)), where exp only
 * gets values <= 0. Its gradient is sigmoid(x) - t.
 */
#include "cpu.h"

#include <math.h>

/* Loss of one row; writes its scaled gradient and, if wanted, softmax. */
static double xent_row(int classes, const float *z, int label, float grad_scale,
                       float *probs, float *dz)
{
    float max = z[0];
    for (int k = 1; k < classes; k++)
        max = z[k] > max ? z[k] : max;

    double sum = 0.0;
    for (int k = 0; k < classes; k++)
        sum += exp((double)z[k] - max);
    double inv = 1.0 / sum;

    for (int k = 0; k < classes; k++) {
        float p = (float)(exp((double)z[k] - max) * inv);
        if (probs != NULL)
            probs[k] = p;
        dz[k] = (p - (k == label ? 1.0f : 0.0f)) * grad_scale;
    }
    return max + log(sum) - z[label];
}

/* NOTE: labels must lie in [0, classes); they are not checked here, and
 * an out-of-range label reads outside its row. */
float cpu_softmax_xent_forward_backward(struct kctx *ctx, int n, int classes,
                                        const float *logits,
                                        const int32_t *labels, float scale,
                                        float *probs, float *dlogits)
{
    int threads = cpu_thread_count(ctx);
    double *row_loss = cpu_kctx_workspace(ctx, sizeof(double) * (size_t)n);
    float grad_scale = scale / (float)n;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (int r = 0; r < n; r++) {
        size_t off = (size_t)r * classes;
        row_loss[r] = xent_row(classes, logits + off, labels[r], grad_scale,
                               probs != NULL ? probs + off : NULL,
                               dlogits + off);
    }

    double total = 0.0;
    for (int r = 0; r < n; r++)
        total += row_loss[r];
    return (float)(total / n);
}

double cpu_bce_logits_forward_backward(struct kctx *ctx, size_t n,
                                       const float *x, const float *t,
                                       float scale, float *dx)
{
    int threads = cpu_thread_count(ctx);
    size_t blocks = cpu_sum_block_count(n);
    double *block_sum = cpu_kctx_workspace(ctx, sizeof(double) * blocks);

#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t blk = 0; blk < blocks; blk++) {
        size_t end = (blk + 1) * CPU_SUM_BLOCK < n ? (blk + 1) * CPU_SUM_BLOCK
                                                   : n;
        double sum = 0.0;

        for (size_t i = blk * CPU_SUM_BLOCK; i < end; i++) {
            float v = x[i];
            float e = expf(-fabsf(v));
            sum += (v > 0 ? v : 0) - v * t[i] + log1pf(e);
            if (dx != NULL) {
                /* sigmoid(v) from e = exp(-|v|), without a second exp. */
                float sig = v >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
                dx[i] = (sig - t[i]) * scale;
            }
        }
        block_sum[blk] = sum;
    }

    double total = 0.0;
    for (size_t blk = 0; blk < blocks; blk++)
        total += block_sum[blk];
    return total;
}
