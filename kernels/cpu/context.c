/*
 * CPU execution context: thread count and one growing scratch buffer.
 *
 * The workspace is a single 64-byte aligned block that only grows, so a
 * training loop stops allocating after its first batch. A kernel that
 * needs several scratch arrays requests their total size once and carves
 * them out of the block, because each call may move it.
 *
 * OpenBLAS is set to one thread here and kernels parallelize GEMMs with
 * OpenMP themselves (see cpu.h for the reason).
 */
#include "cpu.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

int cpu_thread_count(const struct kctx *ctx)
{
    if (ctx != NULL && ctx->threads > 0)
        return ctx->threads;
    return omp_get_num_procs();
}

size_t cpu_sum_block_count(size_t n)
{
    return (n + CPU_SUM_BLOCK - 1) / CPU_SUM_BLOCK;
}

void cpu_kctx_init(struct kctx *ctx, int threads)
{
    ctx->threads = threads > 0 ? threads : 0;
    ctx->workspace = NULL;
    ctx->workspace_size = 0;
    ctx->cuda = NULL;

    /* oneDNN (built on GNU OpenMP) takes its thread count from
     * omp_get_max_threads(), so the default has to match ctx->threads. */
    omp_set_num_threads(cpu_thread_count(ctx));
    openblas_set_num_threads(1);
}

void cpu_kctx_free(struct kctx *ctx)
{
    free(ctx->workspace);
    ctx->workspace = NULL;
    ctx->workspace_size = 0;
}

void *cpu_kctx_workspace(struct kctx *ctx, size_t size)
{
    if (size <= ctx->workspace_size && ctx->workspace != NULL)
        return ctx->workspace;

    /* Grow by at least half again, so that a sequence of slowly growing
     * requests costs few reallocations. */
    size_t grown = ctx->workspace_size + ctx->workspace_size / 2;
    size_t want = cpu_align64(size > grown ? size : grown);
    if (want == 0)
        want = 64;

    free(ctx->workspace);
    ctx->workspace = aligned_alloc(64, want);
    if (ctx->workspace == NULL) {
        /* NOTE: the kernel interface returns void, so a kernel cannot
         * report this. Running out of memory for scratch ends the
         * process with a message instead of failing later on NULL. */
        fprintf(stderr, "trainyard kernels: failed to allocate %zu bytes "
                        "of workspace\n", want);
        abort();
    }
    ctx->workspace_size = want;
    return ctx->workspace;
}
