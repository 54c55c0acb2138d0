/*
 * Reference SiLU and elementwise add.
 *
 * SiLU: y = x * s with s = sigmoid(x) = 1 / (1 + exp(-x));
 * dy/dx = s + x * s * (1 - s) = s * (1 + x * (1 - s)).
 */
#include "ref.h"

#include <math.h>

static double sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

void ref_silu_forward(struct kctx *ctx, const float *x, float *y, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        y[i] = (float)(x[i] * sigmoid(x[i]));
}

void ref_silu_backward(struct kctx *ctx, const float *x, const float *dy,
                       float *dx, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        double s = sigmoid(x[i]);
        dx[i] += (float)(dy[i] * s * (1.0 + x[i] * (1.0 - s)));
    }
}

void ref_add_forward(struct kctx *ctx, const float *x, float *y, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}
