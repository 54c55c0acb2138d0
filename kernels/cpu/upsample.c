/*
 * Nearest upsampling by an integer factor f, one thread per range of
 * (image, channel) planes: output (oh, ow) reads input (oh / f, ow / f),
 * and backward sums each f x f block of output gradients into its input.
 */
#include "cpu.h"

void cpu_upsample_nearest_forward(struct kctx *ctx, int n, int c, int h,
                                  int w, int f, const float *x, float *y)
{
    int threads = cpu_thread_count(ctx);
    size_t planes = (size_t)n * c;
    size_t wo = (size_t)w * f;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t p = 0; p < planes; p++) {
        for (int ih = 0; ih < h; ih++) {
            const float *in = x + (p * h + ih) * w;
            float *out = y + (p * h + ih) * f * wo;

            /* Widen one input row, then repeat it f - 1 times. */
            for (int iw = 0; iw < w; iw++) {
                for (int b = 0; b < f; b++)
                    out[(size_t)iw * f + b] = in[iw];
            }
            for (int a = 1; a < f; a++) {
                for (size_t i = 0; i < wo; i++)
                    out[a * wo + i] = out[i];
            }
        }
    }
}

void cpu_upsample_nearest_backward(struct kctx *ctx, int n, int c, int h,
                                   int w, int f, const float *dy, float *dx)
{
    int threads = cpu_thread_count(ctx);
    size_t planes = (size_t)n * c;
    size_t wo = (size_t)w * f;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t p = 0; p < planes; p++) {
        for (int ih = 0; ih < h; ih++) {
            const float *in = dy + (p * h + ih) * f * wo;
            float *out = dx + (p * h + ih) * w;

            for (int iw = 0; iw < w; iw++) {
                float sum = 0.0f;
                for (int a = 0; a < f; a++) {
                    for (int b = 0; b < f; b++)
                        sum += in[a * wo + (size_t)iw * f + b];
                }
                out[iw] += sum;
            }
        }
    }
}
