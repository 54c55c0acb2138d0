/*
 * Tensor operations of the engine: one interface, three implementations.
 *
 *   cpu_<op>_<pass>   kernels/cpu/   OpenMP threads, BLAS/oneDNN for GEMM
 *                                    and convolution; used for training
 *   cuda_<op>_<pass>  kernels/cuda/  the same arguments in the same order,
 *                                    with device pointers; run on the
 *                                    stream of the kctx
 *   ref_<op>_<pass>   kernels/ref/   plain loops, single thread, only for
 *                                    tests
 *
 * Conventions shared by every operation:
 *
 * - Tensors are float32, contiguous, NCHW (batch, channels, height, width).
 *   Shapes are passed as small structs, never inferred.
 * - Backward functions ACCUMULATE (+=) into every gradient buffer they
 *   write: input gradients and parameter gradients alike. The caller zeroes
 *   gradients before a backward pass. This lets a tensor that feeds several
 *   layers (C2f splits, shortcuts, concat) sum its gradients in place, and
 *   lets gradient accumulation over several batches work unchanged.
 * - A gradient pointer that is NULL is not computed (for example dx of the
 *   first layer).
 * - Nothing allocates per call except where a function's comment states it;
 *   scratch memory comes from the kctx workspace.
 * - Operations are deterministic for a given thread count: no atomics on
 *   floats in reductions on the CPU.
 */
#ifndef TRAINYARD_KERNELS_H
#define TRAINYARD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Execution context: thread count and scratch memory on the CPU; stream,
 * cuBLAS and cuDNN handles and device scratch on CUDA. */
struct kctx {
    int threads;         /* CPU: OpenMP threads; 0 means all cores */
    void *workspace;     /* scratch, grown by kctx_workspace */
    size_t workspace_size;
    void *cuda;          /* CUDA: opaque handles (kernels/cuda), else NULL */
};

/* CPU context with the given thread count (0: all cores). */
void cpu_kctx_init(struct kctx *ctx, int threads);
void cpu_kctx_free(struct kctx *ctx);
/* Return scratch of at least size bytes, valid until the next call. */
void *cpu_kctx_workspace(struct kctx *ctx, size_t size);

/* ---- Convolution -------------------------------------------------------
 * y[n, co, oh, ow] = b[co] + sum over ci in co's group, kh, kw of
 *   w[co, ci, kh, kw] * x[n, g*cin_g + ci, oh*stride + kh - pad,
 *                                           ow*stride + kw - pad]
 * (zero outside x). w has shape [c_out, c_in / groups, k, k]. */
struct conv2d_shape {
    int n, c_in, h, w;  /* input */
    int c_out, k;       /* square kernel k x k */
    int stride, pad, groups;
    int h_out, w_out;   /* filled by conv2d_shape_init */
};

/* Fill h_out and w_out; returns 0, or -1 when the shape is invalid (a
 * channel count not divisible by groups, or an empty output). */
int conv2d_shape_init(struct conv2d_shape *s);

/* b may be NULL (no bias). */
void cpu_conv2d_forward(struct kctx *ctx, const struct conv2d_shape *s,
                        const float *x, const float *w, const float *b,
                        float *y);
/* dx, dw, db may each be NULL. */
void cpu_conv2d_backward(struct kctx *ctx, const struct conv2d_shape *s,
                         const float *x, const float *w, const float *dy,
                         float *dx, float *dw, float *db);

/* ---- Batch normalization over N, H, W per channel ----------------------
 * Training: y = gamma * (x - mean_b) / sqrt(var_b + eps) + beta with the
 * batch's mean and biased variance; saves mean and 1/sqrt(var + eps) per
 * channel for backward, and updates the running statistics as PyTorch
 * does: running = (1 - momentum) * running + momentum * batch, with the
 * unbiased variance for running_var.
 * Inference: the same with running_mean and running_var. */
struct bn_shape {
    int n, c, hw;  /* hw = height * width */
    float eps;      /* Ultralytics: 1e-3 */
    float momentum; /* Ultralytics: 0.03 */
};

void cpu_batchnorm_forward_train(struct kctx *ctx, const struct bn_shape *s,
                                 const float *x, const float *gamma,
                                 const float *beta, float *running_mean,
                                 float *running_var, float *save_mean,
                                 float *save_invstd, float *y);
void cpu_batchnorm_forward_infer(struct kctx *ctx, const struct bn_shape *s,
                                 const float *x, const float *gamma,
                                 const float *beta, const float *running_mean,
                                 const float *running_var, float *y);
void cpu_batchnorm_backward(struct kctx *ctx, const struct bn_shape *s,
                            const float *x, const float *gamma,
                            const float *save_mean, const float *save_invstd,
                            const float *dy, float *dx, float *dgamma,
                            float *dbeta);

/* ---- Elementwise ------------------------------------------------------ */
/* SiLU: y = x * sigmoid(x). */
void cpu_silu_forward(struct kctx *ctx, const float *x, float *y, size_t n);
void cpu_silu_backward(struct kctx *ctx, const float *x, const float *dy,
                       float *dx, size_t n);
/* y += x (the shortcut of a Bottleneck). */
void cpu_add_forward(struct kctx *ctx, const float *x, float *y, size_t n);

/* ---- Pooling and resampling ------------------------------------------- */
struct pool_shape {
    int n, c, h, w;
    int k, stride, pad;  /* max pool window; padding counts as -inf */
    int h_out, w_out;    /* filled by pool_shape_init */
};
int pool_shape_init(struct pool_shape *s);

/* argmax receives, per output element, the flat index within its input
 * plane (h * w) of the chosen value, for backward. */
void cpu_maxpool_forward(struct kctx *ctx, const struct pool_shape *s,
                         const float *x, float *y, int32_t *argmax);
void cpu_maxpool_backward(struct kctx *ctx, const struct pool_shape *s,
                          const int32_t *argmax, const float *dy, float *dx);

/* Global average pool: [n, c, h, w] -> [n, c]. */
void cpu_avgpool_global_forward(struct kctx *ctx, int n, int c, int hw,
                                const float *x, float *y);
void cpu_avgpool_global_backward(struct kctx *ctx, int n, int c, int hw,
                                 const float *dy, float *dx);

/* Nearest upsampling by an integer factor: [n, c, h, w] ->
 * [n, c, h * f, w * f]. */
void cpu_upsample_nearest_forward(struct kctx *ctx, int n, int c, int h,
                                  int w, int f, const float *x, float *y);
void cpu_upsample_nearest_backward(struct kctx *ctx, int n, int c, int h,
                                   int w, int f, const float *dy, float *dx);

/* ---- Channel concat and split ------------------------------------------
 * Copy part (shape [n, c_part, hw]) into whole (shape [n, c_whole, hw]) at
 * channel offset c_off, or back. Concat forward and split backward are
 * channel_copy_in (the latter accumulating); split forward and concat
 * backward are channel_copy_out. */
struct channel_slice {
    int n, hw;
    int c_whole, c_part, c_off;
};
/* whole[:, off:off+c_part] = part (accumulate = 0) or += part (1). */
void cpu_channel_copy_in(struct kctx *ctx, const struct channel_slice *s,
                         const float *part, float *whole, int accumulate);
/* part = whole[:, off:off+c_part] (accumulate = 0) or += (1). */
void cpu_channel_copy_out(struct kctx *ctx, const struct channel_slice *s,
                          const float *whole, float *part, int accumulate);

/* ---- Slices across channels and positions ------------------------------
 * A generalization of the channel slice: part [n, c_part, hw_part] is
 * the block of whole [n, c_whole, hw_whole] at channels c_off ..
 * c_off + c_part - 1 and positions hw_off .. hw_off + hw_part - 1. The
 * Detect head uses it to place each level's maps [n, c, h * w] in its
 * output [n, no, anchors]. */
struct tensor_slice {
    int n;
    int c_whole, c_part, c_off;
    int hw_whole, hw_part, hw_off;
};
/* whole block = part (accumulate = 0) or += part (1). */
void cpu_slice_copy_in(struct kctx *ctx, const struct tensor_slice *s,
                       const float *part, float *whole, int accumulate);
/* part = whole block (accumulate = 0) or += (1). */
void cpu_slice_copy_out(struct kctx *ctx, const struct tensor_slice *s,
                        const float *whole, float *part, int accumulate);

/* ---- Linear ------------------------------------------------------------
 * y[n, o] = b[o] + sum_i x[n, i] * w[o, i]; w has shape [out, in]. */
void cpu_linear_forward(struct kctx *ctx, int n, int in, int out,
                        const float *x, const float *w, const float *b,
                        float *y);
void cpu_linear_backward(struct kctx *ctx, int n, int in, int out,
                         const float *x, const float *w, const float *dy,
                         float *dx, float *dw, float *db);

/* ---- Losses ------------------------------------------------------------
 * Softmax cross-entropy, mean over the batch: returns the loss and writes
 * dlogits = (softmax - onehot) / n * scale (overwritten, not accumulated,
 * because logits have no other consumer). probs may be NULL; when given it
 * receives the softmax. */
float cpu_softmax_xent_forward_backward(struct kctx *ctx, int n, int classes,
                                        const float *logits,
                                        const int32_t *labels, float scale,
                                        float *probs, float *dlogits);

/* BCE with logits, summed over all n elements:
 * loss = sum max(x, 0) - x * t + log(1 + exp(-|x|)); when dx is not NULL it
 * receives (sigmoid(x) - t) * scale (overwritten). */
double cpu_bce_logits_forward_backward(struct kctx *ctx, size_t n,
                                       const float *x, const float *t,
                                       float scale, float *dx);

/* ---- Optimizers (one parameter tensor per call) -------------------------
 * SGD as in PyTorch: g = grad + weight_decay * p; v = momentum * v + g;
 * p -= lr * (nesterov ? g + momentum * v : v). */
void cpu_sgd_step(struct kctx *ctx, size_t n, float *p, const float *grad,
                  float *velocity, float lr, float momentum,
                  float weight_decay, int nesterov);

/* AdamW as in PyTorch: p *= 1 - lr * weight_decay; m = b1 m + (1-b1) g;
 * v = b2 v + (1-b2) g^2; p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) +
 * eps), where step is t, counted from 1. */
void cpu_adamw_step(struct kctx *ctx, size_t n, float *p, const float *grad,
                    float *m, float *v, float lr, float beta1, float beta2,
                    float eps, float weight_decay, int64_t step);

/* EMA of weights: ema = decay * ema + (1 - decay) * p. */
void cpu_ema_update(struct kctx *ctx, size_t n, float *ema, const float *p,
                    float decay);

/* Sum of squares of x, in double, for gradient-norm clipping. */
double cpu_sumsq(struct kctx *ctx, size_t n, const float *x);
/* x *= a. */
void cpu_scale(struct kctx *ctx, size_t n, float *x, float a);

#ifdef __cplusplus
}
#endif

#endif
