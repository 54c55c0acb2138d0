/*
 * Reference 2-D convolution: the formula of kernels.h as nested loops.
 *
 * Backward is written in gather form (each gradient element sums every
 * term that feeds it, in double) rather than by scattering, so that every
 * element is one sum that is easy to check by hand.
 */
#include "ref.h"

/* x[n, c, ih, iw], or 0 in the padding. */
static double input_at(const struct conv2d_shape *s, const float *x, int n,
                       int c, int ih, int iw)
{
    if (ih < 0 || ih >= s->h || iw < 0 || iw >= s->w)
        return 0.0;
    return x[(((size_t)n * s->c_in + c) * s->h + ih) * s->w + iw];
}

static size_t weight_index(const struct conv2d_shape *s, int co, int ci,
                           int kh, int kw)
{
    int cin_g = s->c_in / s->groups;
    return (((size_t)co * cin_g + ci) * s->k + kh) * s->k + kw;
}

static size_t output_index(const struct conv2d_shape *s, int n, int co,
                           int oh, int ow)
{
    return (((size_t)n * s->c_out + co) * s->h_out + oh) * s->w_out + ow;
}

static double output_at(const struct conv2d_shape *s, const float *x,
                        const float *w, int n, int co, int oh, int ow)
{
    int cin_g = s->c_in / s->groups;
    int g = co / (s->c_out / s->groups);
    double sum = 0.0;

    for (int ci = 0; ci < cin_g; ci++) {
        for (int kh = 0; kh < s->k; kh++) {
            for (int kw = 0; kw < s->k; kw++) {
                int ih = oh * s->stride + kh - s->pad;
                int iw = ow * s->stride + kw - s->pad;
                sum += w[weight_index(s, co, ci, kh, kw)]
                       * input_at(s, x, n, g * cin_g + ci, ih, iw);
            }
        }
    }
    return sum;
}

void ref_conv2d_forward(struct kctx *ctx, const struct conv2d_shape *s,
                        const float *x, const float *w, const float *b,
                        float *y)
{
    (void)ctx;
    for (int n = 0; n < s->n; n++) {
        for (int co = 0; co < s->c_out; co++) {
            for (int oh = 0; oh < s->h_out; oh++) {
                for (int ow = 0; ow < s->w_out; ow++) {
                    double v = output_at(s, x, w, n, co, oh, ow);
                    if (b != NULL)
                        v += b[co];
                    y[output_index(s, n, co, oh, ow)] = (float)v;
                }
            }
        }
    }
}

/* Output position along one axis that reads input position i through
 * kernel tap t, or -1 when there is none. */
static int output_for_tap(int i, int t, int pad, int stride, int count)
{
    int span = i + pad - t;
    if (span < 0 || span % stride != 0 || span / stride >= count)
        return -1;
    return span / stride;
}

/* dL/dx[n, c, ih, iw] = sum over co of c's group, kh, kw of
 * w[co, ci, kh, kw] * dy[n, co, oh, ow] where oh, ow read (ih, iw). */
static double input_grad_at(const struct conv2d_shape *s, const float *w,
                            const float *dy, int n, int c, int ih, int iw)
{
    int cin_g = s->c_in / s->groups;
    int cout_g = s->c_out / s->groups;
    int g = c / cin_g;
    double sum = 0.0;

    for (int co = g * cout_g; co < (g + 1) * cout_g; co++) {
        for (int kh = 0; kh < s->k; kh++) {
            int oh = output_for_tap(ih, kh, s->pad, s->stride, s->h_out);
            for (int kw = 0; kw < s->k && oh >= 0; kw++) {
                int ow = output_for_tap(iw, kw, s->pad, s->stride, s->w_out);
                if (ow < 0)
                    continue;
                sum += w[weight_index(s, co, c % cin_g, kh, kw)]
                       * dy[output_index(s, n, co, oh, ow)];
            }
        }
    }
    return sum;
}

/* dL/dw[co, ci, kh, kw] = sum over n, oh, ow of dy * the input it read. */
static double weight_grad_at(const struct conv2d_shape *s, const float *x,
                             const float *dy, int co, int ci, int kh, int kw)
{
    int c = co / (s->c_out / s->groups) * (s->c_in / s->groups) + ci;
    double sum = 0.0;

    for (int n = 0; n < s->n; n++) {
        for (int oh = 0; oh < s->h_out; oh++) {
            for (int ow = 0; ow < s->w_out; ow++) {
                int ih = oh * s->stride + kh - s->pad;
                int iw = ow * s->stride + kw - s->pad;
                sum += dy[output_index(s, n, co, oh, ow)]
                       * input_at(s, x, n, c, ih, iw);
            }
        }
    }
    return sum;
}

static void input_grad(const struct conv2d_shape *s, const float *w,
                       const float *dy, float *dx)
{
    for (int n = 0; n < s->n; n++) {
        for (int c = 0; c < s->c_in; c++) {
            for (int ih = 0; ih < s->h; ih++) {
                for (int iw = 0; iw < s->w; iw++) {
                    size_t i = (((size_t)n * s->c_in + c) * s->h + ih) * s->w
                               + iw;
                    dx[i] += (float)input_grad_at(s, w, dy, n, c, ih, iw);
                }
            }
        }
    }
}

static void weight_grad(const struct conv2d_shape *s, const float *x,
                        const float *dy, float *dw)
{
    int cin_g = s->c_in / s->groups;

    for (int co = 0; co < s->c_out; co++) {
        for (int ci = 0; ci < cin_g; ci++) {
            for (int kh = 0; kh < s->k; kh++) {
                for (int kw = 0; kw < s->k; kw++) {
                    dw[weight_index(s, co, ci, kh, kw)] +=
                        (float)weight_grad_at(s, x, dy, co, ci, kh, kw);
                }
            }
        }
    }
}

static void bias_grad(const struct conv2d_shape *s, const float *dy,
                      float *db)
{
    for (int co = 0; co < s->c_out; co++) {
        double sum = 0.0;
        for (int n = 0; n < s->n; n++) {
            for (int oh = 0; oh < s->h_out; oh++) {
                for (int ow = 0; ow < s->w_out; ow++)
                    sum += dy[output_index(s, n, co, oh, ow)];
            }
        }
        db[co] += (float)sum;
    }
}

void ref_conv2d_backward(struct kctx *ctx, const struct conv2d_shape *s,
                         const float *x, const float *w, const float *dy,
                         float *dx, float *dw, float *db)
{
    (void)ctx;
    if (dx != NULL)
        input_grad(s, w, dy, dx);
    if (dw != NULL)
        weight_grad(s, x, dy, dw);
    if (db != NULL)
        bias_grad(s, dy, db);
}
