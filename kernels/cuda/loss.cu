/*
 * Losses that return a scalar to the host and write the gradient of their
 * input, with the formulas of the CPU kernels:
 *
 * Softmax cross-entropy per row: logsumexp(z) - z[label], with logsumexp
 * taken around the row's maximum so that exp never overflows. The
 * gradient of the batch mean, times scale, is (softmax - onehot) * scale /
 * n. One warp handles one row, and exponentials and their sum are in
 * double, as on the CPU. The loss is the sum of the row losses in row
 * order, divided by n.
 *
 * BCE with logits per element: max(x, 0) - x t + log(1 + exp(-|x|)), which
 * never overflows, with gradient (sigmoid(x) - t) * scale; the loss is the
 * deterministic flat sum of reduce.cuh.
 *
 * Both wait for the stream, because the loss goes back to the host.
 */
#include <math.h>

#include "internal.h"
#include "reduce.cuh"

#define ROWS_PER_BLOCK (CUDA_BLOCK / 32)

/* One warp per row: softmax, its scaled gradient and the row's loss. A
 * label outside [0, classes) has no onehot position: its gradient is the
 * softmax alone and its loss NaN, so the batch loss shows the error. */
static __global__ void xent_rows_kernel(int n, int classes,
                                        const float *logits,
                                        const int32_t *labels,
                                        float grad_scale, float *probs,
                                        float *dlogits, double *row_loss)
{
    const unsigned lane = threadIdx.x % 32;

    for (int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32; row < n;
         row += gridDim.x * ROWS_PER_BLOCK) {
        const float *z = logits + (size_t)row * classes;
        const int label = labels[row];

        /* The same comparison as the CPU kernel, so a NaN at z[0] is
         * kept the same way. */
        float row_max = z[0];
        for (int k = lane; k < classes; k += 32)
            row_max = z[k] > row_max ? z[k] : row_max;
        for (int offset = 16; offset > 0; offset /= 2) {
            float other = __shfl_xor_sync(0xffffffffu, row_max, offset);
            row_max = other > row_max ? other : row_max;
        }

        double sum = 0.0;
        for (int k = lane; k < classes; k += 32)
            sum += exp((double)z[k] - row_max);
        sum = __shfl_sync(0xffffffffu, warp_sum(sum), 0);
        double inv = 1.0 / sum;

        for (int k = lane; k < classes; k += 32) {
            size_t at = (size_t)row * classes + k;
            float p = (float)(exp((double)z[k] - row_max) * inv);
            if (probs != NULL)
                probs[at] = p;
            dlogits[at] = (p - (k == label ? 1.0f : 0.0f)) * grad_scale;
        }
        if (lane == 0) {
            bool valid = label >= 0 && label < classes;
            row_loss[row] = valid ? row_max + log(sum) - z[label]
                                  : (double)NAN;
        }
    }
}

float cuda_softmax_xent_forward_backward(struct kctx *ctx, int n,
                                         int classes, const float *logits,
                                         const int32_t *labels, float scale,
                                         float *probs, float *dlogits)
{
    struct cuda_state *st = cuda_state_of(ctx);
    double total = 0.0;

    if (n <= 0 || classes <= 0)
        return 0.0f;
    double *row_loss = (double *)cuda_kctx_workspace(
        ctx, ((size_t)n + 1) * sizeof(double));
    if (row_loss == NULL)
        return NAN;
    double *sum = row_loss + n;

    size_t blocks = ((size_t)n + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    if (blocks > CUDA_GRID_X_MAX)
        blocks = CUDA_GRID_X_MAX;
    xent_rows_kernel<<<(unsigned)blocks, CUDA_BLOCK, 0, st->stream>>>(
        n, classes, logits, labels, scale / (float)n, probs, dlogits,
        row_loss);
    if (LAUNCH_FAILED(st))
        return NAN;
    flat_total_kernel<<<1, CUDA_BLOCK, 0, st->stream>>>(row_loss, n, sum);
    if (LAUNCH_FAILED(st))
        return NAN;
    if (CUDA_FAILED(st, cudaMemcpyAsync(&total, sum, sizeof(double),
                                        cudaMemcpyDeviceToHost,
                                        st->stream)) ||
        CUDA_FAILED(st, cudaStreamSynchronize(st->stream)))
        return NAN;
    return (float)(total / n);
}

/* Items of the BCE sum. Computing item i also writes its gradient, and
 * the flat sum visits each item exactly once. */
struct bce_terms {
    const float *x;
    const float *t;
    float scale;
    float *dx;

    __device__ double operator()(size_t i) const
    {
        float v = x[i];
        float e = expf(-fabsf(v));

        if (dx != NULL) {
            /* sigmoid(v) from e = exp(-|v|), without a second exp. */
            float sig = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
            dx[i] = (sig - t[i]) * scale;
        }
        return (double)((v > 0.0f ? v : 0.0f) - v * t[i] + log1pf(e));
    }
};

double cuda_bce_logits_forward_backward(struct kctx *ctx, size_t n,
                                        const float *x, const float *t,
                                        float scale, float *dx)
{
    struct bce_terms terms = {x, t, scale, dx};
    double total = 0.0;

    if (n == 0)
        return 0.0;
    if (flat_sum(ctx, terms, n, &total) != 0)
        return NAN;
    return total;
}
