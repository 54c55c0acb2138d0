/*
 * Reference optimizer steps, EMA, sum of squares and scaling, written as
 * the formulas in kernels.h, evaluated in double per element.
 */
#include "ref.h"

#include <math.h>

void ref_sgd_step(struct kctx *ctx, size_t n, float *p, const float *grad,
                  float *velocity, float lr, float momentum,
                  float weight_decay, int nesterov)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        double g = (double)grad[i] + (double)weight_decay * p[i];
        double step = g;

        if (velocity != NULL) {
            double v = (double)momentum * velocity[i] + g;
            velocity[i] = (float)v;
            step = nesterov ? g + (double)momentum * velocity[i] : v;
        }
        p[i] = (float)(p[i] - (double)lr * step);
    }
}

void ref_adamw_step(struct kctx *ctx, size_t n, float *p, const float *grad,
                    float *m, float *v, float lr, float beta1, float beta2,
                    float eps, float weight_decay, int64_t step)
{
    double bc1 = 1.0 - pow(beta1, (double)step);
    double bc2 = 1.0 - pow(beta2, (double)step);

    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        double g = grad[i];
        double pi = p[i] * (1.0 - (double)lr * weight_decay);

        m[i] = (float)(beta1 * (double)m[i] + (1.0 - beta1) * g);
        v[i] = (float)(beta2 * (double)v[i] + (1.0 - beta2) * g * g);
        pi -= lr * (m[i] / bc1) / (sqrt(v[i] / bc2) + eps);
        p[i] = (float)pi;
    }
}

void ref_ema_update(struct kctx *ctx, size_t n, float *ema, const float *p,
                    float decay)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        ema[i] = (float)(decay * (double)ema[i] + (1.0 - decay) * p[i]);
}

double ref_sumsq(struct kctx *ctx, size_t n, const float *x)
{
    double sum = 0.0;

    (void)ctx;
    for (size_t i = 0; i < n; i++)
        sum += (double)x[i] * x[i];
    return sum;
}

void ref_scale(struct kctx *ctx, size_t n, float *x, float a)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        x[i] *= a;
}
