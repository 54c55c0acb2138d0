/*
 * The CPU's kernel table, and choosing a device from the `device=`
 * argument (see device.h).
 *
 * device_cuda_open is referenced weakly: a program linked without
 * device_cuda.o (no nvcc at build time, or a sanitizer build) gets a null
 * address for it and rejects CUDA devices with a message instead of
 * failing to link. The Makefile links device_cuda.o and the CUDA kernels
 * into build/bin/train when nvcc exists.
 */
#include "engine/device.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#pragma weak device_cuda_open

/* ---- CPU memory --------------------------------------------------------- */

static void cpu_free_ctx(struct kctx *ctx)
{
    cpu_kctx_free(ctx);
}

static void *cpu_alloc(struct kctx *ctx, size_t size, struct error *err)
{
    void *p = calloc(size > 0 ? size : 1, 1);

    (void)ctx;
    if (p == NULL)
        error_set(err, -ENOMEM,
                  "out of memory allocating %zu bytes; lower batch or "
                  "imgsz",
                  size);
    return p;
}

static void cpu_release(struct kctx *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

static int cpu_zero(struct kctx *ctx, void *ptr, size_t size, struct error *err)
{
    (void)ctx;
    (void)err;
    memset(ptr, 0, size);
    return 0;
}

static void cpu_copy(struct kctx *ctx, float *dst, const float *src, size_t n)
{
    (void)ctx;
    memcpy(dst, src, n * sizeof(float));
}

/* Both directions of a host copy. */
static int cpu_copy_bytes(struct kctx *ctx, void *dst, const void *src,
                          size_t size, struct error *err)
{
    (void)ctx;
    (void)err;
    memcpy(dst, src, size);
    return 0;
}

/* The CPU kernels finish before they return and report no failures:
 * cpu_kctx_workspace ends the process when scratch memory runs out. */
static int cpu_status(struct kctx *ctx, struct error *err)
{
    (void)ctx;
    (void)err;
    return 0;
}

const struct kernel_ops kernel_ops_cpu = {
    .name = "cpu",
    .host_memory = 1,
    .kctx_free = cpu_free_ctx,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .copy_to_device = cpu_copy_bytes,
    .copy_to_host = cpu_copy_bytes,
    .status = cpu_status,
    .synchronize = cpu_status,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward = cpu_conv2d_backward,
    .batchnorm_forward_train = cpu_batchnorm_forward_train,
    .batchnorm_forward_infer = cpu_batchnorm_forward_infer,
    .batchnorm_backward = cpu_batchnorm_backward,
    .silu_forward = cpu_silu_forward,
    .silu_backward = cpu_silu_backward,
    .add_forward = cpu_add_forward,
    .maxpool_forward = cpu_maxpool_forward,
    .maxpool_backward = cpu_maxpool_backward,
    .avgpool_global_forward = cpu_avgpool_global_forward,
    .avgpool_global_backward = cpu_avgpool_global_backward,
    .upsample_nearest_forward = cpu_upsample_nearest_forward,
    .upsample_nearest_backward = cpu_upsample_nearest_backward,
    .channel_copy_in = cpu_channel_copy_in,
    .channel_copy_out = cpu_channel_copy_out,
    .slice_copy_in = cpu_slice_copy_in,
    .slice_copy_out = cpu_slice_copy_out,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .softmax_xent_forward_backward = cpu_softmax_xent_forward_backward,
    .bce_logits_forward_backward = cpu_bce_logits_forward_backward,
    .sgd_step = cpu_sgd_step,
    .adamw_step = cpu_adamw_step,
    .ema_update = cpu_ema_update,
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
    .det_decode_nms = cpu_det_decode_nms,
    .det_loss_forward_backward = cpu_det_loss_forward_backward,
};

/* ---- Choosing a device -------------------------------------------------- */

/* Parse "N" or "cuda:N" (or "cuda", meaning 0) into *index; returns 0, or
 * -1 when spec is neither. */
static int parse_cuda_index(const char *spec, int *index)
{
    const char *digits = spec;
    char *end;

    if (strncasecmp(spec, "cuda", 4) == 0) {
        if (spec[4] == '\0') {
            *index = 0;
            return 0;
        }
        if (spec[4] != ':')
            return -1;
        digits = spec + 5;
    }
    if (!isdigit((unsigned char)digits[0]))
        return -1;
    long value = strtol(digits, &end, 10);
    if (*end != '\0' || value > 4096)
        return -1;
    *index = (int)value;
    return 0;
}

int device_open(struct device *dev, const char *spec, int threads,
                struct error *err)
{
    int index = 0;

    memset(dev, 0, sizeof(*dev));
    dev->cuda_index = -1;
    if (strcasecmp(spec, "cpu") == 0) {
        cpu_kctx_init(&dev->ctx, threads);
        dev->ops = &kernel_ops_cpu;
        snprintf(dev->name, sizeof(dev->name), "cpu");
        return 0;
    }
    if (strchr(spec, ',') != NULL)
        return error_set(err, -EINVAL,
                         "device=%s: training on several GPUs is not "
                         "supported; give one device number such as "
                         "device=0",
                         spec);
    if (parse_cuda_index(spec, &index) != 0)
        return error_set(err, -EINVAL,
                         "invalid device=%s: use cpu, or a CUDA device "
                         "number such as 0",
                         spec);
    if (device_cuda_open == NULL)
        return error_set(err, -ENOTSUP,
                         "device=%s: this program was built without CUDA "
                         "support; use build/bin/train from a make run on "
                         "a machine with the CUDA toolkit 13 and cuDNN 9 "
                         "(nvcc in /usr/local/cuda/bin or on PATH), or use "
                         "device=cpu",
                         spec);
    int rc = device_cuda_open(dev, index, err);
    if (rc != 0) {
        char reason[ERROR_MSG_MAX];
        snprintf(reason, sizeof(reason), "%s", err->msg);
        error_set(err, rc, "device=%s: %s", spec, reason);
    }
    return rc;
}

void device_close(struct device *dev)
{
    if (dev->ops != NULL)
        dev->ops->kctx_free(&dev->ctx);
    dev->ops = NULL;
}
