/*
 * CUDA implementation of the kernel interface in kernels.h.
 *
 * Every cuda_<op>_<pass> takes the arguments of cpu_<op>_<pass> in the same
 * order, with device pointers for tensors, and keeps its conventions:
 * NCHW float32, backward accumulates (+=) into every gradient buffer, NULL
 * gradient pointers are skipped. Work is queued on the stream of the kctx
 * and the functions return before it finishes, except those that return a
 * value computed on the device (losses, cuda_sumsq), which wait for it.
 *
 * The operations return void, like their CPU counterparts, so a failed
 * CUDA, cuBLAS or cuDNN call is recorded in the kctx instead. The first
 * failure is kept with its file, line and message, and cuda_synchronize or
 * cuda_kctx_status returns it. Call one of them at least once per training
 * step.
 *
 * Convolutions use cuDNN and linear layers cuBLAS, with TF32 off by default
 * so that results stay within float32 rounding of the CPU kernels. Every
 * reduction has a fixed order, cuBLAS runs without atomics, and cuDNN
 * algorithms are limited to deterministic ones, so a run should repeat bit
 * for bit on the same device, CUDA version and cuDNN version. The tests
 * check this for convolution backward and the reductions.
 *
 * Threads: cuda_kctx_init makes its device current for the calling thread.
 * Another thread that uses the kctx must call cudaSetDevice with the same
 * device first, and no two threads may use one kctx at the same time.
 */
#ifndef TRAINYARD_KERNELS_CUDA_H
#define TRAINYARD_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>

/* error.h and kernels.h are C headers without extern "C" guards of their
 * own. nvcc compiles .cu files as C++, so they are included with C linkage
 * here, and their system headers above, outside the block. */
#ifdef __cplusplus
extern "C" {
#endif

#include "error.h"
#include "kernels.h"

/* ---- Devices and contexts --------------------------------------------- */

/* Number of devices that can run this build (compute capability 8.0 or
 * newer). When it returns 0, why receives the reason, for example the
 * error of cudaGetDeviceCount, so that callers can print it. */
int cuda_device_count(char *why, size_t why_len);

/* Create a stream, cuBLAS and cuDNN handles on device and make the device
 * current for the calling thread. ctx->cuda receives the handles, and
 * ctx->workspace becomes device scratch. Returns 0, -ENODEV when the
 * device does not exist or cannot run this build, -ENOMEM when the device
 * is out of memory, or -EIO for any other CUDA, cuBLAS or cuDNN failure. */
int cuda_kctx_init(struct kctx *ctx, int device, struct error *err);
/* Wait for queued work, then release everything cuda_kctx_init created.
 * Safe on a kctx whose init failed or that was freed before. */
void cuda_kctx_free(struct kctx *ctx);
/* Return device scratch of at least size bytes, valid until the next call,
 * or NULL when cudaMalloc failed (the failure is recorded in the kctx).
 * Growing waits for queued work, because that work may still use the old
 * buffer. */
void *cuda_kctx_workspace(struct kctx *ctx, size_t size);

/* Allow TF32 tensor cores in convolutions and linear layers (allow = 1)
 * or restrict them to float32 FMA (allow = 0, the default). TF32 keeps 10
 * mantissa bits of each input, so results differ from the CPU by roughly
 * 1e-3 relative (an estimate from that rounding, not measured). The CUDA
 * tests run with TF32 off. */
void cuda_kctx_set_tf32(struct kctx *ctx, int allow);

/* Return the first failure recorded since the last call and clear it:
 * 0, or a negative errno-style code with err filled. Does not wait for
 * queued work. */
int cuda_kctx_status(struct kctx *ctx, struct error *err);

/* ---- Memory ------------------------------------------------------------
 * All return 0 or a negative errno-style code with err filled. Copies are
 * complete when the function returns, so host buffers may be reused at
 * once; they also return a failure recorded earlier in the kctx. */
int cuda_malloc(struct kctx *ctx, void **ptr, size_t size,
                struct error *err);
/* Wait for the work queued on the kctx, which may still use ptr, then
 * free ptr. ptr may be NULL; a failure is recorded in the kctx. */
void cuda_free(struct kctx *ctx, void *ptr);
int cuda_memcpy_h2d(struct kctx *ctx, void *dst, const void *src,
                    size_t size, struct error *err);
int cuda_memcpy_d2h(struct kctx *ctx, void *dst, const void *src,
                    size_t size, struct error *err);
/* Queue a fill of size bytes with zeros on the stream of the kctx. */
int cuda_memset_zero(struct kctx *ctx, void *ptr, size_t size,
                     struct error *err);
/* Wait for all work queued on the kctx, then return the first failure
 * recorded since the last check, as cuda_kctx_status does. */
int cuda_synchronize(struct kctx *ctx, struct error *err);

/* ---- Convolution (cuDNN) ---------------------------------------------- */
void cuda_conv2d_forward(struct kctx *ctx, const struct conv2d_shape *s,
                         const float *x, const float *w, const float *b,
                         float *y);
void cuda_conv2d_backward(struct kctx *ctx, const struct conv2d_shape *s,
                          const float *x, const float *w, const float *dy,
                          float *dx, float *dw, float *db);

/* ---- Batch normalization ---------------------------------------------- */
void cuda_batchnorm_forward_train(struct kctx *ctx, const struct bn_shape *s,
                                  const float *x, const float *gamma,
                                  const float *beta, float *running_mean,
                                  float *running_var, float *save_mean,
                                  float *save_invstd, float *y);
void cuda_batchnorm_forward_infer(struct kctx *ctx, const struct bn_shape *s,
                                  const float *x, const float *gamma,
                                  const float *beta,
                                  const float *running_mean,
                                  const float *running_var, float *y);
void cuda_batchnorm_backward(struct kctx *ctx, const struct bn_shape *s,
                             const float *x, const float *gamma,
                             const float *save_mean,
                             const float *save_invstd, const float *dy,
                             float *dx, float *dgamma, float *dbeta);

/* ---- Elementwise ------------------------------------------------------ */
void cuda_silu_forward(struct kctx *ctx, const float *x, float *y, size_t n);
void cuda_silu_backward(struct kctx *ctx, const float *x, const float *dy,
                        float *dx, size_t n);
void cuda_add_forward(struct kctx *ctx, const float *x, float *y, size_t n);

/* ---- Pooling and resampling ------------------------------------------- */
void cuda_maxpool_forward(struct kctx *ctx, const struct pool_shape *s,
                          const float *x, float *y, int32_t *argmax);
void cuda_maxpool_backward(struct kctx *ctx, const struct pool_shape *s,
                           const int32_t *argmax, const float *dy,
                           float *dx);
void cuda_avgpool_global_forward(struct kctx *ctx, int n, int c, int hw,
                                 const float *x, float *y);
void cuda_avgpool_global_backward(struct kctx *ctx, int n, int c, int hw,
                                  const float *dy, float *dx);
void cuda_upsample_nearest_forward(struct kctx *ctx, int n, int c, int h,
                                   int w, int f, const float *x, float *y);
void cuda_upsample_nearest_backward(struct kctx *ctx, int n, int c, int h,
                                    int w, int f, const float *dy,
                                    float *dx);

/* ---- Channel concat and split ----------------------------------------- */
void cuda_channel_copy_in(struct kctx *ctx, const struct channel_slice *s,
                          const float *part, float *whole, int accumulate);
void cuda_channel_copy_out(struct kctx *ctx, const struct channel_slice *s,
                           const float *whole, float *part, int accumulate);
void cuda_slice_copy_in(struct kctx *ctx, const struct tensor_slice *s,
                        const float *part, float *whole, int accumulate);
void cuda_slice_copy_out(struct kctx *ctx, const struct tensor_slice *s,
                         const float *whole, float *part, int accumulate);

/* ---- Linear (cuBLAS) -------------------------------------------------- */
void cuda_linear_forward(struct kctx *ctx, int n, int in, int out,
                         const float *x, const float *w, const float *b,
                         float *y);
void cuda_linear_backward(struct kctx *ctx, int n, int in, int out,
                          const float *x, const float *w, const float *dy,
                          float *dx, float *dw, float *db);

/* ---- Losses ------------------------------------------------------------
 * logits, labels, probs, dlogits, x, t and dx are device pointers. The
 * loss is returned to the host, so these wait for the stream. They return
 * NAN when a CUDA call failed, and the failure is recorded in the kctx. */
float cuda_softmax_xent_forward_backward(struct kctx *ctx, int n,
                                         int classes, const float *logits,
                                         const int32_t *labels, float scale,
                                         float *probs, float *dlogits);
double cuda_bce_logits_forward_backward(struct kctx *ctx, size_t n,
                                        const float *x, const float *t,
                                        float scale, float *dx);

/* ---- Optimizers ------------------------------------------------------- */
void cuda_sgd_step(struct kctx *ctx, size_t n, float *p, const float *grad,
                   float *velocity, float lr, float momentum,
                   float weight_decay, int nesterov);
void cuda_adamw_step(struct kctx *ctx, size_t n, float *p, const float *grad,
                     float *m, float *v, float lr, float beta1, float beta2,
                     float eps, float weight_decay, int64_t step);
void cuda_ema_update(struct kctx *ctx, size_t n, float *ema, const float *p,
                     float decay);
/* Waits for the stream; returns NAN when a CUDA call failed. */
double cuda_sumsq(struct kctx *ctx, size_t n, const float *x);
void cuda_scale(struct kctx *ctx, size_t n, float *x, float a);

#ifdef __cplusplus
}
#endif

#endif
