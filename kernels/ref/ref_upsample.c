/*
 * Reference nearest upsampling by an integer factor f: output (oh, ow)
 * reads input (oh / f, ow / f), so each input gradient is the sum of its
 * f x f block of output gradients.
 */
#include "ref.h"

void ref_upsample_nearest_forward(struct kctx *ctx, int n, int c, int h,
                                  int w, int f, const float *x, float *y)
{
    int ho = h * f;
    int wo = w * f;

    (void)ctx;
    for (size_t p = 0; p < (size_t)n * c; p++) {
        for (int oh = 0; oh < ho; oh++) {
            for (int ow = 0; ow < wo; ow++)
                y[(p * ho + oh) * wo + ow] = x[(p * h + oh / f) * w + ow / f];
        }
    }
}

void ref_upsample_nearest_backward(struct kctx *ctx, int n, int c, int h,
                                   int w, int f, const float *dy, float *dx)
{
    int ho = h * f;
    int wo = w * f;

    (void)ctx;
    for (size_t p = 0; p < (size_t)n * c; p++) {
        for (int ih = 0; ih < h; ih++) {
            for (int iw = 0; iw < w; iw++) {
                double sum = 0.0;
                for (int a = 0; a < f; a++) {
                    for (int b = 0; b < f; b++)
                        sum += dy[(p * ho + ih * f + a) * wo + iw * f + b];
                }
                dx[(p * h + ih) * w + iw] += (float)sum;
            }
        }
    }
}
