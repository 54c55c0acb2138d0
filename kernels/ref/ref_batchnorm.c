/*
 * Reference batch normalization over N, H, W per channel, with the
 * statistics and their gradients summed in double.
 *
 * Backward uses the standard closed form, with xhat = (x - mean) * invstd
 * and M = n * hw values per channel:
 *   dbeta  = sum dy
 *   dgamma = sum dy * xhat
 *   dx     = gamma * invstd * (dy - dbeta / M - xhat * dgamma / M)
 */
#include "ref.h"

#include <math.h>

static size_t bn_index(const struct bn_shape *s, int n, int c, int i)
{
    return ((size_t)n * s->c + c) * s->hw + i;
}

/* Mean and biased variance of channel c. */
static void channel_moments(const struct bn_shape *s, const float *x, int c,
                            double *mean, double *var)
{
    double count = (double)s->n * s->hw;
    double sum = 0.0;
    double sq = 0.0;

    for (int n = 0; n < s->n; n++) {
        for (int i = 0; i < s->hw; i++)
            sum += x[bn_index(s, n, c, i)];
    }
    *mean = sum / count;

    for (int n = 0; n < s->n; n++) {
        for (int i = 0; i < s->hw; i++) {
            double d = x[bn_index(s, n, c, i)] - *mean;
            sq += d * d;
        }
    }
    *var = sq / count;
}

static void normalize_channel(const struct bn_shape *s, const float *x,
                              int c, double mean, double invstd,
                              double gamma, double beta, float *y)
{
    for (int n = 0; n < s->n; n++) {
        for (int i = 0; i < s->hw; i++) {
            size_t j = bn_index(s, n, c, i);
            y[j] = (float)(gamma * (x[j] - mean) * invstd + beta);
        }
    }
}

void ref_batchnorm_forward_train(struct kctx *ctx, const struct bn_shape *s,
                                 const float *x, const float *gamma,
                                 const float *beta, float *running_mean,
                                 float *running_var, float *save_mean,
                                 float *save_invstd, float *y)
{
    double count = (double)s->n * s->hw;
    double m = s->momentum;

    (void)ctx;
    for (int c = 0; c < s->c; c++) {
        double mean, var;
        channel_moments(s, x, c, &mean, &var);
        double invstd = 1.0 / sqrt(var + s->eps);

        save_mean[c] = (float)mean;
        save_invstd[c] = (float)invstd;
        normalize_channel(s, x, c, mean, invstd, gamma[c], beta[c], y);

        /* PyTorch keeps the unbiased variance; with one value per channel
         * there is none, and the biased one (0) is used. */
        double unbiased = count > 1 ? var * count / (count - 1) : var;
        running_mean[c] = (float)((1 - m) * running_mean[c] + m * mean);
        running_var[c] = (float)((1 - m) * running_var[c] + m * unbiased);
    }
}

void ref_batchnorm_forward_infer(struct kctx *ctx, const struct bn_shape *s,
                                 const float *x, const float *gamma,
                                 const float *beta, const float *running_mean,
                                 const float *running_var, float *y)
{
    (void)ctx;
    for (int c = 0; c < s->c; c++) {
        double invstd = 1.0 / sqrt((double)running_var[c] + s->eps);
        normalize_channel(s, x, c, running_mean[c], invstd, gamma[c],
                          beta[c], y);
    }
}

void ref_batchnorm_backward(struct kctx *ctx, const struct bn_shape *s,
                            const float *x, const float *gamma,
                            const float *save_mean, const float *save_invstd,
                            const float *dy, float *dx, float *dgamma,
                            float *dbeta)
{
    double count = (double)s->n * s->hw;

    (void)ctx;
    for (int c = 0; c < s->c; c++) {
        double mean = save_mean[c];
        double invstd = save_invstd[c];
        double sum_dy = 0.0;
        double sum_dy_xhat = 0.0;

        for (int n = 0; n < s->n; n++) {
            for (int i = 0; i < s->hw; i++) {
                size_t j = bn_index(s, n, c, i);
                sum_dy += dy[j];
                sum_dy_xhat += dy[j] * (x[j] - mean) * invstd;
            }
        }

        if (dbeta != NULL)
            dbeta[c] += (float)sum_dy;
        if (dgamma != NULL)
            dgamma[c] += (float)sum_dy_xhat;
        if (dx == NULL)
            continue;

        for (int n = 0; n < s->n; n++) {
            for (int i = 0; i < s->hw; i++) {
                size_t j = bn_index(s, n, c, i);
                double xhat = (x[j] - mean) * invstd;
                double g = dy[j] - sum_dy / count
                           - xhat * sum_dy_xhat / count;
                dx[j] += (float)(gamma[c] * invstd * g);
            }
        }
    }
}
