/*
 * Optimizer steps, EMA of weights, sum of squares and scaling: one pass
 * over a parameter tensor, one item per thread in a grid-stride loop.
 *
 * The formulas and their float/double split are those of the CPU kernels
 * (PyTorch's single-tensor SGD and AdamW, see kernels.h): AdamW's bias
 * corrections are computed once on the host in double, since
 * 1 - beta2^t for beta2 = 0.999 at t = 1 is 0.001 and float would keep
 * only four digits of it. Results can still differ from the CPU in the
 * last float bit, because nvcc fuses a * b + c into one FMA.
 */
#include <math.h>

#include "internal.h"
#include "reduce.cuh"

/* Without a velocity buffer (momentum 0 in PyTorch) the step is g. */
static __global__ void sgd_kernel(size_t n, float *p, const float *grad,
                                  float *velocity, float lr, float momentum,
                                  float weight_decay, int nesterov)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
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

void cuda_sgd_step(struct kctx *ctx, size_t n, float *p, const float *grad,
                   float *velocity, float lr, float momentum,
                   float weight_decay, int nesterov)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (n == 0)
        return;
    sgd_kernel<<<grid_1d(n), CUDA_BLOCK, 0, st->stream>>>(
        n, p, grad, velocity, lr, momentum, weight_decay, nesterov);
    (void)LAUNCH_FAILED(st);
}

/* p = p * decay - step_size * m / (sqrt(v) / bc2_sqrt + eps) after the
 * moment updates; decay = 1 - lr * weight_decay, step_size = lr / bc1. */
static __global__ void adamw_kernel(size_t n, float *p, const float *grad,
                                    float *m, float *v, float beta1,
                                    float beta2, float eps, float decay,
                                    float step_size, float bc2_sqrt)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = grad[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;

        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}

void cuda_adamw_step(struct kctx *ctx, size_t n, float *p, const float *grad,
                     float *m, float *v, float lr, float beta1, float beta2,
                     float eps, float weight_decay, int64_t step)
{
    struct cuda_state *st = cuda_state_of(ctx);
    double bc1 = 1.0 - pow(beta1, (double)step);
    double bc2 = 1.0 - pow(beta2, (double)step);
    float step_size = (float)(lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - lr * weight_decay;

    if (n == 0)
        return;
    adamw_kernel<<<grid_1d(n), CUDA_BLOCK, 0, st->stream>>>(
        n, p, grad, m, v, beta1, beta2, eps, decay, step_size, bc2_sqrt);
    (void)LAUNCH_FAILED(st);
}

static __global__ void ema_kernel(size_t n, float *ema, const float *p,
                                  float decay, float keep)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        ema[i] = decay * ema[i] + keep * p[i];
}

void cuda_ema_update(struct kctx *ctx, size_t n, float *ema, const float *p,
                     float decay)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (n == 0)
        return;
    ema_kernel<<<grid_1d(n), CUDA_BLOCK, 0, st->stream>>>(n, ema, p, decay,
                                                          1.0f - decay);
    (void)LAUNCH_FAILED(st);
}

/* Items of the sum of squares, squared in double as on the CPU. */
struct square_terms {
    const float *x;

    __device__ double operator()(size_t i) const
    {
        double v = x[i];
        return v * v;
    }
};

double cuda_sumsq(struct kctx *ctx, size_t n, const float *x)
{
    struct square_terms terms = {x};
    double total = 0.0;

    if (n == 0)
        return 0.0;
    if (flat_sum(ctx, terms, n, &total) != 0)
        return NAN;
    return total;
}

static __global__ void scale_kernel(size_t n, float *x, float a)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] *= a;
}

void cuda_scale(struct kctx *ctx, size_t n, float *x, float a)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (n == 0)
        return;
    scale_kernel<<<grid_1d(n), CUDA_BLOCK, 0, st->stream>>>(n, x, a);
    (void)LAUNCH_FAILED(st);
}
