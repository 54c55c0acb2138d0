/*
 * Reference max pooling and global average pooling.
 *
 * Max pooling skips the padding (it counts as -inf), keeps the first
 * maximum in row-major window order, and takes a NaN over any number with
 * PyTorch's rule (v > best || isnan(v)), so a NaN in the input reaches the
 * output instead of hiding.
 */
#include "ref.h"

#include <math.h>

void ref_maxpool_forward(struct kctx *ctx, const struct pool_shape *s,
                         const float *x, float *y, int32_t *argmax)
{
    size_t in_plane = (size_t)s->h * s->w;
    size_t out_plane = (size_t)s->h_out * s->w_out;

    (void)ctx;
    for (size_t p = 0; p < (size_t)s->n * s->c; p++) {
        const float *in = x + p * in_plane;

        for (int oh = 0; oh < s->h_out; oh++) {
            for (int ow = 0; ow < s->w_out; ow++) {
                float best = -INFINITY;
                int32_t where = -1;

                for (int kh = 0; kh < s->k; kh++) {
                    for (int kw = 0; kw < s->k; kw++) {
                        int ih = oh * s->stride + kh - s->pad;
                        int iw = ow * s->stride + kw - s->pad;
                        if (ih < 0 || ih >= s->h || iw < 0 || iw >= s->w)
                            continue;
                        float v = in[ih * s->w + iw];
                        if (where < 0 || v > best || isnan(v)) {
                            best = v;
                            where = ih * s->w + iw;
                        }
                    }
                }
                y[p * out_plane + oh * s->w_out + ow] = best;
                argmax[p * out_plane + oh * s->w_out + ow] = where;
            }
        }
    }
}

void ref_maxpool_backward(struct kctx *ctx, const struct pool_shape *s,
                          const int32_t *argmax, const float *dy, float *dx)
{
    size_t in_plane = (size_t)s->h * s->w;
    size_t out_plane = (size_t)s->h_out * s->w_out;

    (void)ctx;
    for (size_t p = 0; p < (size_t)s->n * s->c; p++) {
        for (size_t o = 0; o < out_plane; o++)
            dx[p * in_plane + argmax[p * out_plane + o]] +=
                dy[p * out_plane + o];
    }
}

void ref_avgpool_global_forward(struct kctx *ctx, int n, int c, int hw,
                                const float *x, float *y)
{
    (void)ctx;
    for (size_t p = 0; p < (size_t)n * c; p++) {
        double sum = 0.0;
        for (int i = 0; i < hw; i++)
            sum += x[p * hw + i];
        y[p] = (float)(sum / hw);
    }
}

void ref_avgpool_global_backward(struct kctx *ctx, int n, int c, int hw,
                                 const float *dy, float *dx)
{
    (void)ctx;
    for (size_t p = 0; p < (size_t)n * c; p++) {
        for (int i = 0; i < hw; i++)
            dx[p * hw + i] += (float)((double)dy[p] / hw);
    }
}
