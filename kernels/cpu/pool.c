/*
 * Max pooling and global average pooling, one thread per range of
 * (image, channel) planes, so no two threads write the same plane.
 *
 * Max pooling skips the padding (it counts as -inf), keeps the first
 * maximum in row-major window order, and takes a NaN over any number with
 * PyTorch's rule (v > best || isnan(v)), so a diverging network shows NaN
 * in its output instead of hiding it.
 */
#include "cpu.h"

#include <math.h>

int pool_shape_init(struct pool_shape *s)
{
    if (s->n <= 0 || s->c <= 0 || s->h <= 0 || s->w <= 0 || s->k <= 0
        || s->stride <= 0 || s->pad < 0)
        return -1;
    /* As in PyTorch: with pad <= k / 2 every window contains at least one
     * input value, so argmax always names a real position. */
    if (2 * s->pad > s->k)
        return -1;

    int span_h = s->h + 2 * s->pad - s->k;
    int span_w = s->w + 2 * s->pad - s->k;
    if (span_h < 0 || span_w < 0)
        return -1;

    s->h_out = span_h / s->stride + 1;
    s->w_out = span_w / s->stride + 1;
    return 0;
}

/* Max over the window of output (oh, ow) of one plane. */
static void window_max(const struct pool_shape *s, const float *in, int oh,
                       int ow, float *best, int32_t *where)
{
    int h0 = oh * s->stride - s->pad;
    int w0 = ow * s->stride - s->pad;
    int h1 = h0 + s->k < s->h ? h0 + s->k : s->h;
    int w1 = w0 + s->k < s->w ? w0 + s->k : s->w;
    float max = -INFINITY;
    int32_t at = -1;

    for (int ih = h0 < 0 ? 0 : h0; ih < h1; ih++) {
        for (int iw = w0 < 0 ? 0 : w0; iw < w1; iw++) {
            float v = in[ih * s->w + iw];
            if (at < 0 || v > max || isnan(v)) {
                max = v;
                at = ih * s->w + iw;
            }
        }
    }
    *best = max;
    *where = at;
}

void cpu_maxpool_forward(struct kctx *ctx, const struct pool_shape *s,
                         const float *x, float *y, int32_t *argmax)
{
    int threads = cpu_thread_count(ctx);
    size_t planes = (size_t)s->n * s->c;
    size_t in_plane = (size_t)s->h * s->w;
    size_t out_plane = (size_t)s->h_out * s->w_out;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t p = 0; p < planes; p++) {
        for (int oh = 0; oh < s->h_out; oh++) {
            for (int ow = 0; ow < s->w_out; ow++) {
                size_t o = p * out_plane + (size_t)oh * s->w_out + ow;
                window_max(s, x + p * in_plane, oh, ow, &y[o], &argmax[o]);
            }
        }
    }
}

void cpu_maxpool_backward(struct kctx *ctx, const struct pool_shape *s,
                          const int32_t *argmax, const float *dy, float *dx)
{
    int threads = cpu_thread_count(ctx);
    size_t planes = (size_t)s->n * s->c;
    size_t in_plane = (size_t)s->h * s->w;
    size_t out_plane = (size_t)s->h_out * s->w_out;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t p = 0; p < planes; p++) {
        for (size_t o = 0; o < out_plane; o++)
            dx[p * in_plane + argmax[p * out_plane + o]] +=
                dy[p * out_plane + o];
    }
}

void cpu_avgpool_global_forward(struct kctx *ctx, int n, int c, int hw,
                                const float *x, float *y)
{
    int threads = cpu_thread_count(ctx);
    size_t planes = (size_t)n * c;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t p = 0; p < planes; p++) {
        double sum = 0.0;
        for (int i = 0; i < hw; i++)
            sum += x[p * hw + i];
        y[p] = (float)(sum / hw);
    }
}

void cpu_avgpool_global_backward(struct kctx *ctx, int n, int c, int hw,
                                 const float *dy, float *dx)
{
    int threads = cpu_thread_count(ctx);
    size_t planes = (size_t)n * c;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t p = 0; p < planes; p++) {
        float g = dy[p] / (float)hw;
        for (int i = 0; i < hw; i++)
            dx[p * hw + i] += g;
    }
}
