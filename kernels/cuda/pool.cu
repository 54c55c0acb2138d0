/*
 * Max pooling, global average pooling and nearest upsampling, with the
 * semantics of the CPU kernels.
 *
 * Max pooling skips padding (it counts as -inf), keeps the first maximum in
 * row-major window order, and lets a NaN win over any number, as PyTorch
 * does (v > best || isnan(v)). argmax receives the flat index of the
 * chosen input within its h * w plane.
 *
 * Backward passes gather instead of scatter: each thread owns one input
 * element and adds the output gradients that map to it, visiting outputs
 * in increasing index, the order in which the CPU kernel scatters. No two
 * threads write the same element, so no atomics are needed, and each sum
 * is formed in the same order as on the CPU.
 */
#include "internal.h"
#include "reduce.cuh"

/* ---- Max pooling -------------------------------------------------------- */

/* One thread per output element; x, y, argmax point at plane 0. */
static __global__ void maxpool_forward_kernel(struct pool_shape s,
                                              size_t planes, const float *x,
                                              float *y, int32_t *argmax)
{
    const int out_plane = s.h_out * s.w_out;
    const size_t in_plane = (size_t)s.h * s.w;

    for (size_t p = blockIdx.y; p < planes; p += gridDim.y) {
        const float *in = x + p * in_plane;

        for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < out_plane;
             o += gridDim.x * blockDim.x) {
            int oh = o / s.w_out;
            int ow = o - oh * s.w_out;
            int h0 = oh * s.stride - s.pad;
            int w0 = ow * s.stride - s.pad;
            int h1 = min(h0 + s.k, s.h);
            int w1 = min(w0 + s.k, s.w);
            float best = -INFINITY;
            int32_t at = -1;

            for (int ih = max(h0, 0); ih < h1; ih++) {
                for (int iw = max(w0, 0); iw < w1; iw++) {
                    float v = in[ih * s.w + iw];
                    if (at < 0 || v > best || isnan(v)) {
                        best = v;
                        at = ih * s.w + iw;
                    }
                }
            }
            y[p * out_plane + o] = best;
            argmax[p * out_plane + o] = at;
        }
    }
}

/* One thread per input element i of a plane: dx[i] += dy[o] for every
 * output o whose window covers i and whose argmax is i. */
static __global__ void maxpool_backward_kernel(struct pool_shape s,
                                               size_t planes,
                                               const int32_t *argmax,
                                               const float *dy, float *dx)
{
    const int in_plane = s.h * s.w;
    const size_t out_plane = (size_t)s.h_out * s.w_out;

    for (size_t p = blockIdx.y; p < planes; p += gridDim.y) {
        const int32_t *where = argmax + p * out_plane;
        const float *grad = dy + p * out_plane;

        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < in_plane;
             i += gridDim.x * blockDim.x) {
            int ih = i / s.w;
            int iw = i - ih * s.w;
            /* Output rows whose window [oh * stride - pad, + k) covers ih:
             * ceil((ih + pad - k + 1) / stride) .. (ih + pad) / stride. */
            int lo_h = ih + s.pad - s.k + 1;
            int lo_w = iw + s.pad - s.k + 1;
            int oh0 = lo_h <= 0 ? 0 : (lo_h + s.stride - 1) / s.stride;
            int ow0 = lo_w <= 0 ? 0 : (lo_w + s.stride - 1) / s.stride;
            int oh1 = min((ih + s.pad) / s.stride, s.h_out - 1);
            int ow1 = min((iw + s.pad) / s.stride, s.w_out - 1);
            float v = dx[p * in_plane + i];

            for (int oh = oh0; oh <= oh1; oh++) {
                for (int ow = ow0; ow <= ow1; ow++) {
                    int o = oh * s.w_out + ow;
                    if (where[o] == i)
                        v += grad[o];
                }
            }
            dx[p * in_plane + i] = v;
        }
    }
}

void cuda_maxpool_forward(struct kctx *ctx, const struct pool_shape *s,
                          const float *x, float *y, int32_t *argmax)
{
    struct cuda_state *st = cuda_state_of(ctx);
    size_t planes = (size_t)s->n * s->c;
    size_t out_plane = (size_t)s->h_out * s->w_out;

    if (planes == 0 || out_plane == 0)
        return;
    maxpool_forward_kernel<<<grid_planes(planes, out_plane), CUDA_BLOCK, 0,
                             st->stream>>>(*s, planes, x, y, argmax);
    (void)LAUNCH_FAILED(st);
}

void cuda_maxpool_backward(struct kctx *ctx, const struct pool_shape *s,
                           const int32_t *argmax, const float *dy, float *dx)
{
    struct cuda_state *st = cuda_state_of(ctx);
    size_t planes = (size_t)s->n * s->c;
    size_t in_plane = (size_t)s->h * s->w;

    if (planes == 0 || in_plane == 0 || dx == NULL)
        return;
    maxpool_backward_kernel<<<grid_planes(planes, in_plane), CUDA_BLOCK, 0,
                              st->stream>>>(*s, planes, argmax, dy, dx);
    (void)LAUNCH_FAILED(st);
}

/* ---- Global average pooling --------------------------------------------- */

#define WARPS_PER_BLOCK (CUDA_BLOCK / 32)

/* One warp per plane: y[p] = mean of its hw items, summed in double. */
static __global__ void avgpool_forward_kernel(size_t planes, int hw,
                                              const float *x, float *y)
{
    const unsigned lane = threadIdx.x % 32;
    const size_t first = (size_t)blockIdx.x * WARPS_PER_BLOCK +
                         threadIdx.x / 32;

    for (size_t p = first; p < planes;
         p += (size_t)gridDim.x * WARPS_PER_BLOCK) {
        double sum = 0.0;

        for (int i = lane; i < hw; i += 32)
            sum += x[p * hw + i];
        sum = warp_sum(sum);
        if (lane == 0)
            y[p] = (float)(sum / hw);
    }
}

/* dx[p, i] += dy[p] / hw */
static __global__ void avgpool_backward_kernel(size_t planes, int hw,
                                               const float *dy, float *dx)
{
    for (size_t p = blockIdx.y; p < planes; p += gridDim.y) {
        float g = dy[p] / (float)hw;

        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < hw;
             i += gridDim.x * blockDim.x)
            dx[p * hw + i] += g;
    }
}

void cuda_avgpool_global_forward(struct kctx *ctx, int n, int c, int hw,
                                 const float *x, float *y)
{
    struct cuda_state *st = cuda_state_of(ctx);
    size_t planes = (size_t)n * c;
    size_t blocks = (planes + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK;

    if (planes == 0)
        return;
    if (blocks > CUDA_GRID_X_MAX)
        blocks = CUDA_GRID_X_MAX;
    avgpool_forward_kernel<<<(unsigned)blocks, CUDA_BLOCK, 0, st->stream>>>(
        planes, hw, x, y);
    (void)LAUNCH_FAILED(st);
}

void cuda_avgpool_global_backward(struct kctx *ctx, int n, int c, int hw,
                                  const float *dy, float *dx)
{
    struct cuda_state *st = cuda_state_of(ctx);
    size_t planes = (size_t)n * c;

    if (planes == 0 || hw <= 0 || dx == NULL)
        return;
    avgpool_backward_kernel<<<grid_planes(planes, (size_t)hw), CUDA_BLOCK,
                              0, st->stream>>>(planes, hw, dy, dx);
    (void)LAUNCH_FAILED(st);
}

/* ---- Nearest upsampling ------------------------------------------------- */

/* One thread per output element: y[oh, ow] = x[oh / f, ow / f]. */
static __global__ void upsample_forward_kernel(size_t planes, int h, int w,
                                               int f, const float *x,
                                               float *y)
{
    const int wo = w * f;
    const int out_plane = h * f * wo;

    for (size_t p = blockIdx.y; p < planes; p += gridDim.y) {
        for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < out_plane;
             o += gridDim.x * blockDim.x) {
            int oh = o / wo;
            int ow = o - oh * wo;
            y[p * out_plane + o] = x[(p * h + oh / f) * w + ow / f];
        }
    }
}

/* One thread per input element: the sum of its f x f block of dy, added
 * in row-major order as the CPU kernel does, then added to dx. */
static __global__ void upsample_backward_kernel(size_t planes, int h, int w,
                                                int f, const float *dy,
                                                float *dx)
{
    const size_t wo = (size_t)w * f;
    const int in_plane = h * w;

    for (size_t p = blockIdx.y; p < planes; p += gridDim.y) {
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < in_plane;
             i += gridDim.x * blockDim.x) {
            int ih = i / w;
            int iw = i - ih * w;
            const float *block = dy + (p * h + ih) * f * wo + (size_t)iw * f;
            float sum = 0.0f;

            for (int a = 0; a < f; a++) {
                for (int b = 0; b < f; b++)
                    sum += block[a * wo + b];
            }
            dx[p * in_plane + i] += sum;
        }
    }
}

void cuda_upsample_nearest_forward(struct kctx *ctx, int n, int c, int h,
                                   int w, int f, const float *x, float *y)
{
    struct cuda_state *st = cuda_state_of(ctx);
    size_t planes = (size_t)n * c;
    size_t out_plane = (size_t)h * f * w * f;

    if (planes == 0 || out_plane == 0)
        return;
    upsample_forward_kernel<<<grid_planes(planes, out_plane), CUDA_BLOCK, 0,
                              st->stream>>>(planes, h, w, f, x, y);
    (void)LAUNCH_FAILED(st);
}

void cuda_upsample_nearest_backward(struct kctx *ctx, int n, int c, int h,
                                    int w, int f, const float *dy, float *dx)
{
    struct cuda_state *st = cuda_state_of(ctx);
    size_t planes = (size_t)n * c;
    size_t in_plane = (size_t)h * w;

    if (planes == 0 || in_plane == 0 || f <= 0 || dx == NULL)
        return;
    upsample_backward_kernel<<<grid_planes(planes, in_plane), CUDA_BLOCK, 0,
                               st->stream>>>(planes, h, w, f, dy, dx);
    (void)LAUNCH_FAILED(st);
}
