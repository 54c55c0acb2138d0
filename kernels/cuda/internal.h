/*
 * State and launch helpers shared by the files of kernels/cuda; not part of
 * the public interface (that is kernels_cuda.h).
 *
 * kctx->cuda points to one struct cuda_state. kctx->workspace and
 * kctx->workspace_size describe device scratch owned by that state. All
 * work goes to one stream, so scratch can be reused by consecutive kernels
 * without further synchronization.
 *
 * Kernels use 256-thread blocks and grid-stride loops. Kernels over planes
 * (n * c planes of h * w floats) use a 2D grid: y covers the planes and x
 * the elements of a plane. A thread then finds the channel once per plane
 * instead of dividing a flat 64-bit index for every element.
 */
#ifndef TRAINYARD_KERNELS_CUDA_INTERNAL_H
#define TRAINYARD_KERNELS_CUDA_INTERNAL_H

#include <stddef.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

/* kernels_cuda.h brings error.h and kernels.h with C linkage; including
 * them directly here would declare their functions as C++. */
#include "kernels_cuda.h"
#include "check.h"

struct conv_plan;

struct cuda_state {
    int device;
    cudaStream_t stream;
    cublasHandle_t cublas;
    cudnnHandle_t cudnn;
    int allow_tf32;

    /* Convolution descriptors and algorithms, one plan per shape; owned by
     * conv2d.cu. */
    struct conv_plan **plans;
    size_t plan_count;
    size_t plan_capacity;

    /* First failure since the last cuda_kctx_status; code 0 means none. */
    int error_code;
    char error_msg[ERROR_MSG_MAX];
};

#define CUDA_BLOCK 256
/* Largest gridDim.y and gridDim.z. */
#define CUDA_GRID_YZ_MAX 65535u
/* Cap on gridDim.x for grid-stride loops: more blocks than this only add
 * scheduling work, because every SM is busy long before. */
#define CUDA_GRID_X_MAX 65536u

static inline struct cuda_state *cuda_state_of(struct kctx *ctx)
{
    return (struct cuda_state *)ctx->cuda;
}

/* Blocks for a grid-stride loop over n items, one item per thread. */
static inline unsigned grid_1d(size_t n)
{
    size_t blocks = (n + CUDA_BLOCK - 1) / CUDA_BLOCK;

    if (blocks > CUDA_GRID_X_MAX)
        blocks = CUDA_GRID_X_MAX;
    return blocks > 0 ? (unsigned)blocks : 1u;
}

/* Grid for `planes` planes of plane_size items each: x covers a plane,
 * y strides over the planes. */
static inline dim3 grid_planes(size_t planes, size_t plane_size)
{
    size_t y = planes < CUDA_GRID_YZ_MAX ? planes : CUDA_GRID_YZ_MAX;
    size_t x = (plane_size + CUDA_BLOCK - 1) / CUDA_BLOCK;

    /* The y loop already gives many blocks when there are many planes. */
    if (x > 1024)
        x = 1024;
    return dim3(x > 0 ? (unsigned)x : 1u, y > 0 ? (unsigned)y : 1u, 1u);
}

/* Freeing the convolution plans, for cuda_kctx_free (conv2d.cu). */
void conv2d_plans_free(struct cuda_state *st);

#endif
