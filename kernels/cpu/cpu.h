/*
 * Helpers shared by the CPU kernels, not part of the public interface.
 *
 * Threading model: every parallel loop in kernels/cpu is an OpenMP loop
 * with num_threads(cpu_thread_count(ctx)) and a static schedule, so the
 * split of work between threads depends only on the thread count. Each
 * GEMM call (dnnl_sgemm, or OpenBLAS, see gemm.c) runs on one thread, and
 * parallel GEMMs give each OpenMP thread its own block of rows or images.
 * OpenBLAS (the pthread build) is kept at one thread, because its thread
 * pool and OpenMP's would both spin while idle and fight over the same
 * cores. oneDNN's convolutions use OpenMP themselves (conv2d_dnnl.c).
 */
#ifndef TRAINYARD_KERNELS_CPU_H
#define TRAINYARD_KERNELS_CPU_H

#include <stddef.h>

#include "kernels.h"

/* Threads that a kernel runs with: ctx->threads, or all cores when 0. */
int cpu_thread_count(const struct kctx *ctx);

/* First item of part `part` when `count` items are split into `parts`
 * contiguous parts whose sizes differ by at most one. */
static inline size_t cpu_split_begin(size_t count, int parts, int part)
{
    size_t base = count / (size_t)parts;
    size_t extra = count % (size_t)parts;
    size_t p = (size_t)part;

    return p * base + (p < extra ? p : extra);
}

/*
 * Function multi-versioning for the memory-bound loops (SiLU, batch
 * normalization). GCC compiles one copy per listed ISA and picks one at
 * load time. The build thus keeps the baseline x86-64 target and still
 * runs 16-wide AVX-512 code where the CPU has it. OpenMP regions are outlined
 * before cloning happens, so a cloned function must hold only the serial
 * loop that each thread runs on its range.
 */
#if defined(__GNUC__) && defined(__x86_64__)
#define CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CPU_CLONES
#endif

/* Bytes rounded up to a multiple of 64, so that buffers carved from one
 * workspace each start on a cache line. */
static inline size_t cpu_align64(size_t bytes)
{
    return (bytes + 63) & ~(size_t)63;
}

/*
 * Deterministic sums: the n items are cut into fixed blocks of
 * CPU_SUM_BLOCK, each block is summed by one thread, and the block sums
 * are added in order. The result does not depend on the thread count.
 */
#define CPU_SUM_BLOCK 4096
size_t cpu_sum_block_count(size_t n);

/* ---- GEMM (kernels/cpu/gemm.c) -----------------------------------------
 * C[m, n] = alpha * op(A) * op(B) + beta * C, row-major, on the calling
 * thread; op transposes when trans_a / trans_b is non-zero. */
enum cpu_gemm_backend {
    CPU_GEMM_DNNL,      /* dnnl_sgemm, the default */
    CPU_GEMM_OPENBLAS,  /* cblas_sgemm */
};
void cpu_gemm_set_backend(enum cpu_gemm_backend which);
void cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, int lda, const float *b, int ldb, float beta,
               float *c, int ldc);

/* ---- Convolution paths (kernels/cpu/conv2d_*.c) -------------------------
 * Each path computes the full cpu_conv2d_forward / cpu_conv2d_backward
 * contract. conv2d.c chooses one per shape; bench/conv_cpu_bench.c calls
 * them directly to compare them. */
enum conv2d_path {
    CONV2D_PATH_IM2COL,      /* im2col + sgemm over a chunk of images */
    CONV2D_PATH_DIRECT,      /* 1x1, stride 1, pad 0: sgemm on x as is */
    CONV2D_PATH_DNNL,        /* oneDNN, layouts of its choice + reorders */
    CONV2D_PATH_DNNL_PLAIN,  /* oneDNN on NCHW / OIHW as they are */
    CONV2D_PATH_COUNT,
};

/* Whether a path supports the shape (the direct path needs k = 1,
 * stride 1 and pad 0; the others take any valid shape, though oneDNN may
 * still reject one, see conv2d_dnnl_forward). */
int conv2d_path_supports(enum conv2d_path path, const struct conv2d_shape *s);

void conv2d_gemm_forward(struct kctx *ctx, const struct conv2d_shape *s,
                         int direct, const float *x, const float *w,
                         const float *b, float *y);
void conv2d_gemm_backward(struct kctx *ctx, const struct conv2d_shape *s,
                          int direct, const float *x, const float *w,
                          const float *dy, float *dx, float *dw, float *db);

/* oneDNN paths with blocked (1) or plain (0) layouts. They return 0, or
 * -1 when oneDNN rejects the shape. Nothing is written then, so the
 * caller can fall back to another path. */
int conv2d_dnnl_forward(struct kctx *ctx, const struct conv2d_shape *s,
                        int blocked, const float *x, const float *w,
                        const float *b, float *y);
int conv2d_dnnl_backward(struct kctx *ctx, const struct conv2d_shape *s,
                         int blocked, const float *x, const float *w,
                         const float *dy, float *dx, float *dw, float *db);
/* Name of the implementation that oneDNN chose for a cached shape: which
 * is 0 forward, 1 backward data, 2 backward weights; "" if none yet. */
const char *conv2d_dnnl_impl_name(const struct conv2d_shape *s, int blocked,
                                  int which);

/* Column-matrix budget per thread of the im2col path, in floats (for the
 * benchmark; 0 restores the default). */
void conv2d_gemm_set_col_budget(size_t floats);

/* Bias gradient: db[co] += sum over n, oh, ow of dy. */
void conv2d_bias_backward(struct kctx *ctx, const struct conv2d_shape *s,
                          const float *dy, float *db);

/* Override the path for every shape (for the benchmark); pass -1 to go
 * back to the built-in choice. */
void conv2d_force_path(int path);

#endif
