/*
 * The CUDA kernel table (see device.h): the cuda_* kernels of
 * kernels/cuda, and device memory through their cuda_malloc family.
 *
 * This is host code only. It is a .cu file so that the Makefile compiles
 * it with nvcc, and only when nvcc exists. The library's wildcard of .c
 * files never includes it, and programs linked without it reject CUDA
 * devices (device.c).
 *
 * Device-to-device copies go through cuda_channel_copy_out with a single
 * channel, which copies plane by plane on the kctx's stream and so keeps
 * queue order with the kernels around it. NOTE: kernels_cuda.h has no
 * plain device-to-device copy; one would save this detour.
 *
 * NOTE: this table has been compiled and linked, but not yet run on a
 * GPU; tests/cuda/test_cuda_train.c and bench/gpu.sh exercise it on one.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cuda/kernels_cuda.h"
#include "device.h"

/* Floats per plane of a device-to-device copy: large planes keep the
 * launch count low, and any size fits the int fields of a slice. */
#define COPY_PLANE ((size_t)1 << 16)

static void *gpu_alloc(struct kctx *ctx, size_t size, struct error *err)
{
    void *ptr = NULL;

    if (size == 0)
        size = 1;
    if (cuda_malloc(ctx, &ptr, size, err) != 0)
        return NULL;
    /* Callers expect zeros, as calloc gives on the CPU. */
    if (cuda_memset_zero(ctx, ptr, size, err) != 0) {
        cuda_free(ctx, ptr);
        return NULL;
    }
    return ptr;
}

static int gpu_zero(struct kctx *ctx, void *ptr, size_t size, struct error *err)
{
    return cuda_memset_zero(ctx, ptr, size, err);
}

/* dst = src as whole planes of COPY_PLANE floats, then the remainder as
 * one shorter plane. */
static void gpu_copy(struct kctx *ctx, float *dst, const float *src, size_t n)
{
    while (n > 0) {
        size_t hw = n < COPY_PLANE ? n : COPY_PLANE;
        size_t planes = n / hw;

        if (planes > INT_MAX)
            planes = INT_MAX;
        struct channel_slice s;
        s.n = (int)planes;
        s.hw = (int)hw;
        s.c_whole = 1;
        s.c_part = 1;
        s.c_off = 0;
        cuda_channel_copy_out(ctx, &s, src, dst, 0);
        src += planes * hw;
        dst += planes * hw;
        n -= planes * hw;
    }
}

/* Fill the table, once, during static initialization. C++17 has no
 * designated initializers, and assignments name each field, unlike a
 * positional initializer. */
static struct kernel_ops make_ops(void)
{
    struct kernel_ops ops;

    memset(&ops, 0, sizeof(ops));
    ops.name = "cuda";
    ops.host_memory = 0;
    ops.kctx_free = cuda_kctx_free;
    ops.alloc = gpu_alloc;
    ops.release = cuda_free;
    ops.zero = gpu_zero;
    ops.copy = gpu_copy;
    ops.copy_to_device = cuda_memcpy_h2d;
    ops.copy_to_host = cuda_memcpy_d2h;
    ops.status = cuda_kctx_status;
    ops.synchronize = cuda_synchronize;
    ops.conv2d_forward = cuda_conv2d_forward;
    ops.conv2d_backward = cuda_conv2d_backward;
    ops.batchnorm_forward_train = cuda_batchnorm_forward_train;
    ops.batchnorm_forward_infer = cuda_batchnorm_forward_infer;
    ops.batchnorm_backward = cuda_batchnorm_backward;
    ops.silu_forward = cuda_silu_forward;
    ops.silu_backward = cuda_silu_backward;
    ops.add_forward = cuda_add_forward;
    ops.maxpool_forward = cuda_maxpool_forward;
    ops.maxpool_backward = cuda_maxpool_backward;
    ops.avgpool_global_forward = cuda_avgpool_global_forward;
    ops.avgpool_global_backward = cuda_avgpool_global_backward;
    ops.upsample_nearest_forward = cuda_upsample_nearest_forward;
    ops.upsample_nearest_backward = cuda_upsample_nearest_backward;
    ops.channel_copy_in = cuda_channel_copy_in;
    ops.channel_copy_out = cuda_channel_copy_out;
    ops.slice_copy_in = cuda_slice_copy_in;
    ops.slice_copy_out = cuda_slice_copy_out;
    ops.linear_forward = cuda_linear_forward;
    ops.linear_backward = cuda_linear_backward;
    ops.softmax_xent_forward_backward = cuda_softmax_xent_forward_backward;
    ops.bce_logits_forward_backward = cuda_bce_logits_forward_backward;
    ops.sgd_step = cuda_sgd_step;
    ops.adamw_step = cuda_adamw_step;
    ops.ema_update = cuda_ema_update;
    ops.sumsq = cuda_sumsq;
    ops.scale = cuda_scale;
    ops.det_decode_nms = cuda_det_decode_nms;
    ops.det_loss_forward_backward = cuda_det_loss_forward_backward;
    return ops;
}

static const struct kernel_ops kernel_ops_cuda = make_ops();

extern "C" int device_cuda_open(struct device *dev, int index,
                                struct error *err)
{
    char why[256];

    if (cuda_device_count(why, sizeof(why)) == 0)
        return error_set(err, -ENODEV,
                         "no usable CUDA device (%s); check the GPU and "
                         "driver with nvidia-smi, or use device=cpu",
                         why);
    int rc = cuda_kctx_init(&dev->ctx, index, err);
    if (rc != 0)
        return rc;
    dev->ops = &kernel_ops_cuda;
    dev->cuda_index = index;
    snprintf(dev->name, sizeof(dev->name), "cuda:%d", index);
    return 0;
}
