/*
 * Reference fully connected layer: y[n, o] = b[o] + sum_i x[n, i] w[o, i];
 * dx[n, i] = sum_o dy[n, o] w[o, i]; dw[o, i] = sum_n dy[n, o] x[n, i];
 * db[o] = sum_n dy[n, o].
 */
#include "ref.h"

void ref_linear_forward(struct kctx *ctx, int n, int in, int out,
                        const float *x, const float *w, const float *b,
                        float *y)
{
    (void)ctx;
    for (int r = 0; r < n; r++) {
        for (int o = 0; o < out; o++) {
            double sum = b != NULL ? b[o] : 0.0;
            for (int i = 0; i < in; i++)
                sum += (double)x[(size_t)r * in + i] * w[(size_t)o * in + i];
            y[(size_t)r * out + o] = (float)sum;
        }
    }
}

void ref_linear_backward(struct kctx *ctx, int n, int in, int out,
                         const float *x, const float *w, const float *dy,
                         float *dx, float *dw, float *db)
{
    (void)ctx;
    for (int r = 0; r < n && dx != NULL; r++) {
        for (int i = 0; i < in; i++) {
            double sum = 0.0;
            for (int o = 0; o < out; o++)
                sum += (double)dy[(size_t)r * out + o] * w[(size_t)o * in + i];
            dx[(size_t)r * in + i] += (float)sum;
        }
    }

    for (int o = 0; o < out && dw != NULL; o++) {
        for (int i = 0; i < in; i++) {
            double sum = 0.0;
            for (int r = 0; r < n; r++)
                sum += (double)dy[(size_t)r * out + o] * x[(size_t)r * in + i];
            dw[(size_t)o * in + i] += (float)sum;
        }
    }

    for (int o = 0; o < out && db != NULL; o++) {
        double sum = 0.0;
        for (int r = 0; r < n; r++)
            sum += dy[(size_t)r * out + o];
        db[o] += (float)sum;
    }
}
