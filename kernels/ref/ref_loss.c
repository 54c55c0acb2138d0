/*
 * Reference losses.
 *
 * Softmax cross-entropy per row: loss = logsumexp(z) - z[label], with
 * logsumexp(z) = max + log(sum exp(z - max)) so that exp never overflows;
 * the gradient of the batch mean is (softmax - onehot) / n.
 * BCE with logits: max(x, 0) - x t + log(1 + exp(-|x|)), the form that
 * never overflows; its gradient is sigmoid(x) - t.
 */
#include "ref.h"

#include <math.h>

float ref_softmax_xent_forward_backward(struct kctx *ctx, int n, int classes,
                                        const float *logits,
                                        const int32_t *labels, float scale,
                                        float *probs, float *dlogits)
{
    double total = 0.0;

    (void)ctx;
    for (int r = 0; r < n; r++) {
        const float *z = logits + (size_t)r * classes;
        double max = z[0];
        for (int k = 1; k < classes; k++)
            max = z[k] > max ? z[k] : max;

        double sum = 0.0;
        for (int k = 0; k < classes; k++)
            sum += exp(z[k] - max);
        total += max + log(sum) - z[labels[r]];

        for (int k = 0; k < classes; k++) {
            double p = exp(z[k] - max) / sum;
            double onehot = k == labels[r] ? 1.0 : 0.0;
            if (probs != NULL)
                probs[(size_t)r * classes + k] = (float)p;
            dlogits[(size_t)r * classes + k] =
                (float)((p - onehot) / n * scale);
        }
    }
    return (float)(total / n);
}

double ref_bce_logits_forward_backward(struct kctx *ctx, size_t n,
                                       const float *x, const float *t,
                                       float scale, float *dx)
{
    double total = 0.0;

    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        total += (v > 0 ? v : 0) - v * t[i] + log1p(exp(-fabs(v)));
        if (dx != NULL)
            dx[i] = (float)((1.0 / (1.0 + exp(-v)) - t[i]) * scale);
    }
    return total;
}
