/*
 * Batch normalization over N, H, W per channel, with the semantics of
 * cpu_batchnorm_* in kernels.h: batch mean and biased variance in training,
 * running statistics updated as PyTorch does (momentum weighs the batch;
 * running_var takes the unbiased variance, or the biased one when a channel
 * has a single value), save_mean and save_invstd = 1 / sqrt(var + eps)
 * kept for backward.
 *
 * Own kernels rather than cuDNN's batch norm, so that these formulas, the
 * momentum convention and the order of every sum are under our control.
 * Statistics use the deterministic per-channel sums of reduce.cuh in
 * double. The forward pass takes the mean and variance in one pass over x
 * by summing d = x - K and d^2, with K the channel's first value: shifting
 * by a value near the mean keeps E[d^2] - E[d]^2 free of cancellation when
 * the mean is large against the spread. The CPU kernel makes a second
 * pass around the mean instead; both are exact to double rounding.
 *
 * Per-channel constants (scale and shift, or the folded backward
 * coefficients) are computed once in double by one thread per channel and
 * then applied by a plane-wise kernel, as the CPU kernel does:
 *   forward   y = x * scale + shift, scale = gamma * invstd,
 *             shift = beta - mean * scale
 *   backward  dx += a * dy + b * (x - mean) + k, a = gamma * invstd,
 *             b = -a * invstd * sum(dy xhat) / M, k = -a * sum(dy) / M
 * with xhat = (x - mean) * invstd and M = n * hw.
 */
#include "internal.h"
#include "reduce.cuh"

/* ---- Forward ------------------------------------------------------------ */

/* Items of the training statistics: d = x - K and d^2, with K = x of image
 * 0 at position 0 of the channel. */
struct stats_terms {
    const float *x;
    int hw;

    __device__ double2 operator()(size_t idx, int ch) const
    {
        double d = (double)x[idx] - (double)x[(size_t)ch * hw];
        return make_double2(d, d * d);
    }
};

/* One thread per channel: mean and variance from the shifted sums, saved
 * statistics, running statistics, and the affine constants for y. */
static __global__ void train_stats_kernel(
    const double2 *totals, const float *x, int c, int hw, double count,
    const float *gamma, const float *beta, float eps, float momentum,
    float *running_mean, float *running_var, float *save_mean,
    float *save_invstd, float2 *affine)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;

    if (ch >= c)
        return;
    double shift = x[(size_t)ch * hw];
    double mean_d = totals[ch].x / count;
    double mean = shift + mean_d;
    double var = totals[ch].y / count - mean_d * mean_d;
    if (var < 0.0)
        var = 0.0;
    double invstd = 1.0 / sqrt(var + (double)eps);
    double scale = gamma[ch] * invstd;

    save_mean[ch] = (float)mean;
    save_invstd[ch] = (float)invstd;
    affine[ch] = make_float2((float)scale, (float)(beta[ch] - mean * scale));

    double m = momentum;
    double unbiased = count > 1.0 ? var * count / (count - 1.0) : var;
    if (running_mean != NULL)
        running_mean[ch] = (float)((1.0 - m) * running_mean[ch] + m * mean);
    if (running_var != NULL)
        running_var[ch] = (float)((1.0 - m) * running_var[ch] + m * unbiased);
}

/* y = x * affine[ch].x + affine[ch].y over planes of hw items. */
static __global__ void affine_kernel(const float *x, const float2 *affine,
                                     int c, size_t planes, int hw, float *y)
{
    for (size_t p = blockIdx.y; p < planes; p += gridDim.y) {
        float2 a = affine[p % (size_t)c];
        const float *in = x + p * hw;
        float *out = y + p * hw;

        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < hw;
             i += gridDim.x * blockDim.x)
            out[i] = in[i] * a.x + a.y;
    }
}

static void launch_affine(struct cuda_state *st, const struct bn_shape *s,
                          const float *x, const float2 *affine, float *y)
{
    size_t planes = (size_t)s->n * s->c;

    affine_kernel<<<grid_planes(planes, (size_t)s->hw), CUDA_BLOCK, 0,
                    st->stream>>>(x, affine, s->c, planes, s->hw, y);
    (void)LAUNCH_FAILED(st);
}

void cuda_batchnorm_forward_train(struct kctx *ctx, const struct bn_shape *s,
                                  const float *x, const float *gamma,
                                  const float *beta, float *running_mean,
                                  float *running_var, float *save_mean,
                                  float *save_invstd, float *y)
{
    struct cuda_state *st = cuda_state_of(ctx);
    struct stats_terms terms = {x, s->hw};
    void *extra = NULL;

    /* Without values there are no statistics (the CPU kernel divides by
     * zero), and the shift K below would read outside x. */
    if (s->n <= 0 || s->c <= 0 || s->hw <= 0)
        return;
    double2 *totals = channel_sums(ctx, terms, s->n, s->c, s->hw,
                                   (size_t)s->c * sizeof(float2), &extra);
    if (totals == NULL)
        return;
    float2 *affine = (float2 *)extra;
    train_stats_kernel<<<grid_1d((size_t)s->c), CUDA_BLOCK, 0,
                         st->stream>>>(
        totals, x, s->c, s->hw, (double)s->n * s->hw, gamma, beta, s->eps,
        s->momentum, running_mean, running_var, save_mean, save_invstd,
        affine);
    if (LAUNCH_FAILED(st))
        return;
    launch_affine(st, s, x, affine, y);
}

/* One thread per channel: affine constants from the running statistics. */
static __global__ void infer_affine_kernel(const float *gamma,
                                           const float *beta,
                                           const float *running_mean,
                                           const float *running_var, int c,
                                           float eps, float2 *affine)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;

    if (ch >= c)
        return;
    double invstd = 1.0 / sqrt((double)running_var[ch] + (double)eps);
    double scale = gamma[ch] * invstd;
    affine[ch] = make_float2((float)scale,
                             (float)(beta[ch] - running_mean[ch] * scale));
}

void cuda_batchnorm_forward_infer(struct kctx *ctx, const struct bn_shape *s,
                                  const float *x, const float *gamma,
                                  const float *beta,
                                  const float *running_mean,
                                  const float *running_var, float *y)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (s->n <= 0 || s->c <= 0 || s->hw <= 0)
        return;
    float2 *affine = (float2 *)cuda_kctx_workspace(
        ctx, (size_t)s->c * sizeof(float2));
    if (affine == NULL)
        return;
    infer_affine_kernel<<<grid_1d((size_t)s->c), CUDA_BLOCK, 0,
                          st->stream>>>(gamma, beta, running_mean,
                                        running_var, s->c, s->eps, affine);
    if (LAUNCH_FAILED(st))
        return;
    launch_affine(st, s, x, affine, y);
}

/* ---- Backward ----------------------------------------------------------- */

/* Items of the backward sums: dy and dy * (x - mean). */
struct grad_terms {
    const float *x;
    const float *dy;
    const float *save_mean;

    __device__ double2 operator()(size_t idx, int ch) const
    {
        double g = dy[idx];
        return make_double2(g, g * ((double)x[idx] - (double)save_mean[ch]));
    }
};

/* One thread per channel: parameter gradients and the folded constants
 * (mean, a, b, k) of the input gradient. */
static __global__ void grad_constants_kernel(
    const double2 *totals, const float *gamma, const float *save_mean,
    const float *save_invstd, int c, double count, float *dgamma,
    float *dbeta, float4 *constants)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;

    if (ch >= c)
        return;
    double invstd = save_invstd[ch];
    double sum_dy = totals[ch].x;
    double sum_dy_xhat = totals[ch].y * invstd;

    if (dbeta != NULL)
        dbeta[ch] += (float)sum_dy;
    if (dgamma != NULL)
        dgamma[ch] += (float)sum_dy_xhat;
    if (constants == NULL)
        return;
    double a = gamma[ch] * invstd;
    double b = -a * invstd * sum_dy_xhat / count;
    double k = -a * sum_dy / count;
    constants[ch] = make_float4(save_mean[ch], (float)a, (float)b, (float)k);
}

/* dx += a * dy + b * (x - mean) + k over planes of hw items. */
static __global__ void input_grad_kernel(const float *x, const float *dy,
                                         const float4 *constants, int c,
                                         size_t planes, int hw, float *dx)
{
    for (size_t p = blockIdx.y; p < planes; p += gridDim.y) {
        float4 q = constants[p % (size_t)c];
        size_t base = p * hw;

        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < hw;
             i += gridDim.x * blockDim.x)
            dx[base + i] += q.y * dy[base + i] +
                            q.z * (x[base + i] - q.x) + q.w;
    }
}

void cuda_batchnorm_backward(struct kctx *ctx, const struct bn_shape *s,
                             const float *x, const float *gamma,
                             const float *save_mean,
                             const float *save_invstd, const float *dy,
                             float *dx, float *dgamma, float *dbeta)
{
    struct cuda_state *st = cuda_state_of(ctx);
    struct grad_terms terms = {x, dy, save_mean};
    size_t extra_bytes = dx != NULL ? (size_t)s->c * sizeof(float4) : 0;
    void *extra = NULL;

    if (dx == NULL && dgamma == NULL && dbeta == NULL)
        return;
    if (s->n <= 0 || s->c <= 0 || s->hw <= 0)
        return;
    double2 *totals = channel_sums(ctx, terms, s->n, s->c, s->hw,
                                   extra_bytes, &extra);
    if (totals == NULL)
        return;
    float4 *constants = dx != NULL ? (float4 *)extra : NULL;
    grad_constants_kernel<<<grid_1d((size_t)s->c), CUDA_BLOCK, 0,
                            st->stream>>>(
        totals, gamma, save_mean, save_invstd, s->c, (double)s->n * s->hw,
        dgamma, dbeta, constants);
    if (LAUNCH_FAILED(st) || dx == NULL)
        return;

    size_t planes = (size_t)s->n * s->c;
    input_grad_kernel<<<grid_planes(planes, (size_t)s->hw), CUDA_BLOCK, 0,
                        st->stream>>>(x, dy, constants, s->c, planes, s->hw,
                                      dx);
    (void)LAUNCH_FAILED(st);
}
