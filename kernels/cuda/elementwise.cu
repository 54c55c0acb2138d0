/*
 * SiLU and the elementwise add of a shortcut, one item per thread in a
 * grid-stride loop.
 *
 * SiLU: y = x * s with s = sigmoid(x) = 1 / (1 + exp(-x)), and
 * dy/dx = s * (1 + x * (1 - s)). For x below about -88, expf(-x) is +inf
 * and s is exactly 0, the correct limit, as in the CPU kernel. Neither
 * CUDA's expf nor glibc's is correctly rounded in every case, so results
 * can differ from the CPU's by a few float ulp.
 */
#include "internal.h"

static __device__ __forceinline__ float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

static __global__ void silu_forward_kernel(const float *x, float *y,
                                           size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = x[i] * sigmoid(x[i]);
}

static __global__ void silu_backward_kernel(const float *x, const float *dy,
                                            float *dx, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float s = sigmoid(x[i]);
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

static __global__ void add_kernel(const float *x, float *y, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

void cuda_silu_forward(struct kctx *ctx, const float *x, float *y, size_t n)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (n == 0)
        return;
    silu_forward_kernel<<<grid_1d(n), CUDA_BLOCK, 0, st->stream>>>(x, y, n);
    (void)LAUNCH_FAILED(st);
}

void cuda_silu_backward(struct kctx *ctx, const float *x, const float *dy,
                        float *dx, size_t n)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (n == 0 || dx == NULL)
        return;
    silu_backward_kernel<<<grid_1d(n), CUDA_BLOCK, 0, st->stream>>>(x, dy,
                                                                    dx, n);
    (void)LAUNCH_FAILED(st);
}

void cuda_add_forward(struct kctx *ctx, const float *x, float *y, size_t n)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (n == 0)
        return;
    add_kernel<<<grid_1d(n), CUDA_BLOCK, 0, st->stream>>>(x, y, n);
    (void)LAUNCH_FAILED(st);
}
