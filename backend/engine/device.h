/*
 * The device the engine computes on: the CPU, or one CUDA GPU.
 *
 * struct kernel_ops is a table with one entry per operation of
 * kernels/kernels.h, each with the cpu_* signature, plus memory
 * management. The CPU table (device.c) points to the cpu_* kernels and to
 * calloc, memset and memcpy. The CUDA table (device_cuda.cu, compiled only
 * when nvcc exists) points to the cuda_* kernels, which take the same
 * arguments with device pointers. The network, the optimizer and the
 * trainer call through the table, so one code path drives both devices.
 * They reach the data only through copy_to_device and copy_to_host.
 *
 * Errors: kernels return void. On the CPU they report no failures
 * (kernels/cpu ends the process when scratch memory runs out). On CUDA a
 * failure is recorded in the kctx and returned by status or synchronize,
 * which callers check once per training step. Memory functions report
 * their own failures through err.
 *
 * Programs linked without device_cuda.o (every build without nvcc, and
 * the sanitizer builds) still accept device=0 and fail with a message that
 * names how to get a build with CUDA support.
 */
#ifndef TRAINYARD_DEVICE_H
#define TRAINYARD_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "detect.h"
#include "error.h"
#include "kernels.h"

struct kernel_ops {
    const char *name; /* "cpu" or "cuda" */
    int host_memory;  /* 1 when buffers are host memory, readable as is */

    /* ---- Context and memory ------------------------------------------- */
    void (*kctx_free)(struct kctx *ctx);
    /* Zero-filled memory of size bytes (at least 1), or NULL with err
     * filled. */
    void *(*alloc)(struct kctx *ctx, size_t size, struct error *err);
    /* Free ptr (may be NULL) once queued work no longer uses it. */
    void (*release)(struct kctx *ctx, void *ptr);
    /* Fill size bytes with zeros, in queue order. Returns 0, or a
     * negative errno-style code with err filled; on CUDA a failure of an
     * earlier kernel may surface here as well. */
    int (*zero)(struct kctx *ctx, void *ptr, size_t size, struct error *err);
    /* dst = src for n floats, both device memory, in queue order;
     * failures are recorded in the kctx. */
    void (*copy)(struct kctx *ctx, float *dst, const float *src, size_t n);
    /* Copies between host and device memory, complete on return. Return
     * 0, or a negative errno-style code with err filled (which may be the
     * failure of an earlier kernel). */
    int (*copy_to_device)(struct kctx *ctx, void *dst, const void *src,
                          size_t size, struct error *err);
    int (*copy_to_host)(struct kctx *ctx, void *dst, const void *src,
                        size_t size, struct error *err);
    /* Return the first kernel failure since the last call, and clear it:
     * status without waiting for queued work, synchronize after it. */
    int (*status)(struct kctx *ctx, struct error *err);
    int (*synchronize)(struct kctx *ctx, struct error *err);

    /* ---- Kernels: see kernels/kernels.h for each contract -------------- */
    void (*conv2d_forward)(struct kctx *ctx, const struct conv2d_shape *s,
                           const float *x, const float *w, const float *b,
                           float *y);
    void (*conv2d_backward)(struct kctx *ctx, const struct conv2d_shape *s,
                            const float *x, const float *w, const float *dy,
                            float *dx, float *dw, float *db);
    void (*batchnorm_forward_train)(struct kctx *ctx, const struct bn_shape *s,
                                    const float *x, const float *gamma,
                                    const float *beta, float *running_mean,
                                    float *running_var, float *save_mean,
                                    float *save_invstd, float *y);
    void (*batchnorm_forward_infer)(struct kctx *ctx, const struct bn_shape *s,
                                    const float *x, const float *gamma,
                                    const float *beta,
                                    const float *running_mean,
                                    const float *running_var, float *y);
    void (*batchnorm_backward)(struct kctx *ctx, const struct bn_shape *s,
                               const float *x, const float *gamma,
                               const float *save_mean, const float *save_invstd,
                               const float *dy, float *dx, float *dgamma,
                               float *dbeta);
    void (*silu_forward)(struct kctx *ctx, const float *x, float *y, size_t n);
    void (*silu_backward)(struct kctx *ctx, const float *x, const float *dy,
                          float *dx, size_t n);
    void (*add_forward)(struct kctx *ctx, const float *x, float *y, size_t n);
    void (*maxpool_forward)(struct kctx *ctx, const struct pool_shape *s,
                            const float *x, float *y, int32_t *argmax);
    void (*maxpool_backward)(struct kctx *ctx, const struct pool_shape *s,
                             const int32_t *argmax, const float *dy, float *dx);
    void (*avgpool_global_forward)(struct kctx *ctx, int n, int c, int hw,
                                   const float *x, float *y);
    void (*avgpool_global_backward)(struct kctx *ctx, int n, int c, int hw,
                                    const float *dy, float *dx);
    void (*upsample_nearest_forward)(struct kctx *ctx, int n, int c, int h,
                                     int w, int f, const float *x, float *y);
    void (*upsample_nearest_backward)(struct kctx *ctx, int n, int c, int h,
                                      int w, int f, const float *dy, float *dx);
    void (*channel_copy_in)(struct kctx *ctx, const struct channel_slice *s,
                            const float *part, float *whole, int accumulate);
    void (*channel_copy_out)(struct kctx *ctx, const struct channel_slice *s,
                             const float *whole, float *part, int accumulate);
    void (*slice_copy_in)(struct kctx *ctx, const struct tensor_slice *s,
                          const float *part, float *whole, int accumulate);
    void (*slice_copy_out)(struct kctx *ctx, const struct tensor_slice *s,
                           const float *whole, float *part, int accumulate);
    void (*linear_forward)(struct kctx *ctx, int n, int in, int out,
                           const float *x, const float *w, const float *b,
                           float *y);
    void (*linear_backward)(struct kctx *ctx, int n, int in, int out,
                            const float *x, const float *w, const float *dy,
                            float *dx, float *dw, float *db);
    /* On CUDA the losses and sumsq wait for the device, and return NAN
     * after a failure. */
    float (*softmax_xent_forward_backward)(struct kctx *ctx, int n, int classes,
                                           const float *logits,
                                           const int32_t *labels, float scale,
                                           float *probs, float *dlogits);
    double (*bce_logits_forward_backward)(struct kctx *ctx, size_t n,
                                          const float *x, const float *t,
                                          float scale, float *dx);
    void (*sgd_step)(struct kctx *ctx, size_t n, float *p, const float *grad,
                     float *velocity, float lr, float momentum,
                     float weight_decay, int nesterov);
    void (*adamw_step)(struct kctx *ctx, size_t n, float *p, const float *grad,
                       float *m, float *v, float lr, float beta1, float beta2,
                       float eps, float weight_decay, int64_t step);
    void (*ema_update)(struct kctx *ctx, size_t n, float *ema, const float *p,
                       float decay);
    double (*sumsq)(struct kctx *ctx, size_t n, const float *x);
    void (*scale)(struct kctx *ctx, size_t n, float *x, float a);

    /* ---- Detection: see kernels/detect.h --------------------------------
     * pred is device memory; boxes and counts are host memory. Waits for
     * the device and returns 0 or a negative errno-style code. */
    int (*det_decode_nms)(struct kctx *ctx, const struct det_layout *layout,
                          const struct det_nms_config *cfg, int batch,
                          const float *pred, struct det_box *boxes,
                          int *counts);
    /* The YOLOv8 detection loss of kernels/detect.h: pred and dpred in
     * device memory, gt and result in host memory. Returns 0 or a negative
     * errno-style code. */
    int (*det_loss_forward_backward)(struct kctx *ctx,
                                     const struct det_layout *layout,
                                     const struct det_loss_config *cfg,
                                     int batch, const float *pred,
                                     const struct det_gt *gt, int ngt,
                                     float scale, float *dpred,
                                     struct det_loss_result *result);
};

/* The CPU table: cpu_* kernels on host memory. */
extern const struct kernel_ops kernel_ops_cpu;

/* An open device: its table and its kernel context. */
struct device {
    const struct kernel_ops *ops;
    struct kctx ctx;
    int cuda_index; /* CUDA device number, or -1 for the CPU */
    char name[16];  /* "cpu" or "cuda:N", for logs and messages */
};

/* Open the device that spec names: "cpu", a CUDA device number such as
 * "0", or "cuda:0". threads sets the CPU's OpenMP threads (0: all cores).
 * Returns 0 or a negative errno-style code with err giving the reason:
 * -EINVAL when spec names no single device, -ENOTSUP when this program
 * was linked without CUDA support, and -ENODEV when no usable GPU has
 * that number. */
int device_open(struct device *dev, const char *spec, int threads,
                struct error *err);

/* Release the kctx; safe on a device that failed to open or was closed. */
void device_close(struct device *dev);

/* Provided by device_cuda.cu in programs linked with CUDA support: open
 * CUDA device index, or fail with the reason no GPU is usable. */
int device_cuda_open(struct device *dev, int index, struct error *err);

#ifdef __cplusplus
}
#endif

#endif
