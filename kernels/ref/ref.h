/*
 * Reference implementations of the CPU kernels, for tests only.
 *
 * Each ref_<op> takes the same arguments as cpu_<op> in kernels.h and
 * follows the same contract (backward accumulates, NULL gradients are
 * skipped), written as the plain loops of the formula on one thread.
 * Sums run in double, so that a reference is more accurate than the
 * kernel it checks. The kctx argument is ignored and may be NULL.
 * Shapes are filled by conv2d_shape_init and pool_shape_init as for the
 * CPU kernels.
 */
#ifndef TRAINYARD_KERNELS_REF_H
#define TRAINYARD_KERNELS_REF_H

#include "kernels.h"

void ref_conv2d_forward(struct kctx *ctx, const struct conv2d_shape *s,
                        const float *x, const float *w, const float *b,
                        float *y);
void ref_conv2d_backward(struct kctx *ctx, const struct conv2d_shape *s,
                         const float *x, const float *w, const float *dy,
                         float *dx, float *dw, float *db);

void ref_batchnorm_forward_train(struct kctx *ctx, const struct bn_shape *s,
                                 const float *x, const float *gamma,
                                 const float *beta, float *running_mean,
                                 float *running_var, float *save_mean,
                                 float *save_invstd, float *y);
void ref_batchnorm_forward_infer(struct kctx *ctx, const struct bn_shape *s,
                                 const float *x, const float *gamma,
                                 const float *beta, const float *running_mean,
                                 const float *running_var, float *y);
void ref_batchnorm_backward(struct kctx *ctx, const struct bn_shape *s,
                            const float *x, const float *gamma,
                            const float *save_mean, const float *save_invstd,
                            const float *dy, float *dx, float *dgamma,
                            float *dbeta);

void ref_silu_forward(struct kctx *ctx, const float *x, float *y, size_t n);
void ref_silu_backward(struct kctx *ctx, const float *x, const float *dy,
                       float *dx, size_t n);
void ref_add_forward(struct kctx *ctx, const float *x, float *y, size_t n);

void ref_maxpool_forward(struct kctx *ctx, const struct pool_shape *s,
                         const float *x, float *y, int32_t *argmax);
void ref_maxpool_backward(struct kctx *ctx, const struct pool_shape *s,
                          const int32_t *argmax, const float *dy, float *dx);
void ref_avgpool_global_forward(struct kctx *ctx, int n, int c, int hw,
                                const float *x, float *y);
void ref_avgpool_global_backward(struct kctx *ctx, int n, int c, int hw,
                                 const float *dy, float *dx);

void ref_upsample_nearest_forward(struct kctx *ctx, int n, int c, int h,
                                  int w, int f, const float *x, float *y);
void ref_upsample_nearest_backward(struct kctx *ctx, int n, int c, int h,
                                   int w, int f, const float *dy, float *dx);

void ref_channel_copy_in(struct kctx *ctx, const struct channel_slice *s,
                         const float *part, float *whole, int accumulate);
void ref_channel_copy_out(struct kctx *ctx, const struct channel_slice *s,
                          const float *whole, float *part, int accumulate);

void ref_linear_forward(struct kctx *ctx, int n, int in, int out,
                        const float *x, const float *w, const float *b,
                        float *y);
void ref_linear_backward(struct kctx *ctx, int n, int in, int out,
                         const float *x, const float *w, const float *dy,
                         float *dx, float *dw, float *db);

float ref_softmax_xent_forward_backward(struct kctx *ctx, int n, int classes,
                                        const float *logits,
                                        const int32_t *labels, float scale,
                                        float *probs, float *dlogits);
double ref_bce_logits_forward_backward(struct kctx *ctx, size_t n,
                                       const float *x, const float *t,
                                       float scale, float *dx);

void ref_sgd_step(struct kctx *ctx, size_t n, float *p, const float *grad,
                  float *velocity, float lr, float momentum,
                  float weight_decay, int nesterov);
void ref_adamw_step(struct kctx *ctx, size_t n, float *p, const float *grad,
                    float *m, float *v, float lr, float beta1, float beta2,
                    float eps, float weight_decay, int64_t step);
void ref_ema_update(struct kctx *ctx, size_t n, float *ema, const float *p,
                    float decay);
double ref_sumsq(struct kctx *ctx, size_t n, const float *x);
void ref_scale(struct kctx *ctx, size_t n, float *x, float a);

#endif
