/*
 * Deterministic sums on the device, shared by batch norm, the bias
 * gradient of convolutions, global average pooling, losses and cuda_sumsq.
 *
 * A sum never uses atomics. Each thread adds its items in a fixed order in
 * double, a block combines its threads with warp shuffles at fixed offsets,
 * and a second kernel adds the per-block partial sums in index order. The
 * split into blocks depends only on the sizes, so the same input gives the
 * same bits on every run. Double accumulators keep sums of millions of
 * float items within float rounding of the exact value. They cost little,
 * because these kernels are limited by memory bandwidth, and sm_80 and
 * sm_90 run double adds at half the float rate.
 *
 * What is summed comes from a functor: terms(i) (flat sums) or
 * terms(idx, channel) (per-channel sums) returns the item's value, as a
 * double2 when two sums are taken in one pass.
 */
#ifndef TRAINYARD_KERNELS_CUDA_REDUCE_CUH
#define TRAINYARD_KERNELS_CUDA_REDUCE_CUH

#include <cerrno>
#include <climits>

#include "internal.h"

/* Items per block of a per-channel or flat sum: about 32 per thread. A
 * large tensor gets more per block, so that the partial sums stay few. */
#define REDUCE_CHUNK (CUDA_BLOCK * 32)
#define REDUCE_BLOCKS_MAX 1024

/* Sum over the 32 lanes of a warp; the result is in lane 0. */
static __device__ __forceinline__ double warp_sum(double v)
{
    for (int offset = 16; offset > 0; offset /= 2)
        v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

/* Sum over the block; the result is in thread 0. blockDim.x must be a
 * multiple of 32. Every thread of the block must call it. */
static __device__ double block_sum(double v)
{
    __shared__ double warp_sums[32];
    const unsigned lane = threadIdx.x % 32;
    const unsigned warp = threadIdx.x / 32;
    const unsigned warps = blockDim.x / 32;

    v = warp_sum(v);
    /* An earlier call in the same kernel may still be reading. */
    __syncthreads();
    if (lane == 0)
        warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? warp_sums[lane] : 0.0;
        v = warp_sum(v);
    }
    return v;
}

/* ---- Per-channel sums over an [n, c, hw] tensor ------------------------
 * Block (chunk, ch) adds terms(idx, ch) for the positions j of channel ch
 * in [chunk * per_chunk, (chunk + 1) * per_chunk). Position j counts the
 * channel's n * hw items in memory order, and idx is the flat index. */
template <class Terms>
static __global__ void channel_partials_kernel(Terms terms, int c, int hw,
                                        int count, int per_chunk,
                                        double2 *partials)
{
    const int ch = blockIdx.y;
    const int begin = blockIdx.x * per_chunk;
    const int end = begin + per_chunk < count ? begin + per_chunk : count;
    double sum_x = 0.0;
    double sum_y = 0.0;

    for (int j = begin + threadIdx.x; j < end; j += blockDim.x) {
        int image = j / hw;
        size_t idx = ((size_t)image * c + ch) * hw + (j - image * hw);
        double2 t = terms(idx, ch);
        sum_x += t.x;
        sum_y += t.y;
    }
    sum_x = block_sum(sum_x);
    sum_y = block_sum(sum_y);
    if (threadIdx.x == 0)
        partials[(size_t)ch * gridDim.x + blockIdx.x] =
            make_double2(sum_x, sum_y);
}

/* totals[ch] = sum over chunks of partials[ch][chunk], in chunk order. */
static __global__ void channel_totals_kernel(const double2 *partials,
                                             int chunks, int c,
                                             double2 *totals)
{
    int ch = blockIdx.x * blockDim.x + threadIdx.x;

    if (ch >= c)
        return;
    double2 sum = make_double2(0.0, 0.0);
    for (int i = 0; i < chunks; i++) {
        double2 p = partials[(size_t)ch * chunks + i];
        sum.x += p.x;
        sum.y += p.y;
    }
    totals[ch] = sum;
}

/* Queue both sums of terms per channel of an [n, c, hw] tensor. Returns
 * the c totals in device scratch, or NULL after recording a failure. When
 * extra_bytes > 0, *extra receives that much more scratch, 16-byte
 * aligned, for the caller's per-channel constants: a second workspace
 * request could move the buffer and lose the totals. Both stay valid until
 * the next workspace request on ctx. */
template <class Terms>
static double2 *channel_sums(struct kctx *ctx, Terms terms, int n, int c,
                             int hw, size_t extra_bytes, void **extra)
{
    struct cuda_state *st = cuda_state_of(ctx);
    long long count = (long long)n * hw;

    /* j in channel_partials_kernel is an int; y of the grid is 16-bit. */
    if (n < 0 || hw < 0 || count > INT_MAX / 2 || c <= 0 ||
        (unsigned)c > CUDA_GRID_YZ_MAX) {
        RECORD_FAILURE(st, -EINVAL,
                       "per-channel sum over n=%d c=%d hw=%d is out of "
                       "range (need n * hw <= %d and 1 <= c <= %u)",
                       n, c, hw, INT_MAX / 2, CUDA_GRID_YZ_MAX);
        return NULL;
    }
    long long chunks = (count + REDUCE_CHUNK - 1) / REDUCE_CHUNK;
    if (chunks > REDUCE_BLOCKS_MAX)
        chunks = REDUCE_BLOCKS_MAX;
    if (chunks < 1)
        chunks = 1;
    long long per_chunk = (count + chunks - 1) / chunks;
    if (per_chunk < 1)
        per_chunk = 1;
    chunks = count > 0 ? (count + per_chunk - 1) / per_chunk : 1;

    size_t partial_count = (size_t)c * (size_t)chunks;
    size_t sums_bytes = (partial_count + (size_t)c) * sizeof(double2);
    double2 *partials = (double2 *)cuda_kctx_workspace(
        ctx, sums_bytes + extra_bytes);
    if (partials == NULL)
        return NULL;
    double2 *totals = partials + partial_count;
    if (extra != NULL)
        *extra = (char *)partials + sums_bytes;

    dim3 grid((unsigned)chunks, (unsigned)c, 1u);
    channel_partials_kernel<<<grid, CUDA_BLOCK, 0, st->stream>>>(
        terms, c, hw, (int)count, (int)per_chunk, partials);
    if (LAUNCH_FAILED(st))
        return NULL;
    channel_totals_kernel<<<grid_1d((size_t)c), CUDA_BLOCK, 0,
                            st->stream>>>(partials, (int)chunks, c, totals);
    if (LAUNCH_FAILED(st))
        return NULL;
    return totals;
}

/* ---- Flat sums over n items --------------------------------------------
 * Block b adds terms(i) for i in [b * per_block, (b + 1) * per_block). */
template <class Terms>
static __global__ void flat_partials_kernel(Terms terms, size_t n,
                                     size_t per_block, double *partials)
{
    const size_t begin = (size_t)blockIdx.x * per_block;
    const size_t end = begin + per_block < n ? begin + per_block : n;
    double sum = 0.0;

    for (size_t i = begin + threadIdx.x; i < end; i += blockDim.x)
        sum += terms(i);
    sum = block_sum(sum);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = sum;
}

/* *total = sum of partials[0..count), one block, fixed order. */
static __global__ void flat_total_kernel(const double *partials, int count,
                                         double *total)
{
    double sum = 0.0;

    for (int i = threadIdx.x; i < count; i += blockDim.x)
        sum += partials[i];
    sum = block_sum(sum);
    if (threadIdx.x == 0)
        *total = sum;
}

/* Sum terms(i) for i in [0, n), wait for the result and store it in
 * *result. Returns 0, or 1 after recording a failure. */
template <class Terms>
static int flat_sum(struct kctx *ctx, Terms terms, size_t n, double *result)
{
    struct cuda_state *st = cuda_state_of(ctx);
    size_t blocks = (n + REDUCE_CHUNK - 1) / REDUCE_CHUNK;

    if (blocks > REDUCE_BLOCKS_MAX)
        blocks = REDUCE_BLOCKS_MAX;
    if (blocks < 1)
        blocks = 1;
    size_t per_block = (n + blocks - 1) / blocks;
    if (per_block < 1)
        per_block = 1;
    blocks = n > 0 ? (n + per_block - 1) / per_block : 1;

    double *partials = (double *)cuda_kctx_workspace(
        ctx, (blocks + 1) * sizeof(double));
    if (partials == NULL)
        return 1;
    double *total = partials + blocks;

    flat_partials_kernel<<<(unsigned)blocks, CUDA_BLOCK, 0, st->stream>>>(
        terms, n, per_block, partials);
    if (LAUNCH_FAILED(st))
        return 1;
    flat_total_kernel<<<1, CUDA_BLOCK, 0, st->stream>>>(
        partials, (int)blocks, total);
    if (LAUNCH_FAILED(st))
        return 1;
    if (CUDA_FAILED(st, cudaMemcpyAsync(result, total, sizeof(double),
                                        cudaMemcpyDeviceToHost, st->stream)))
        return 1;
    if (CUDA_FAILED(st, cudaStreamSynchronize(st->stream)))
        return 1;
    return 0;
}

#endif
