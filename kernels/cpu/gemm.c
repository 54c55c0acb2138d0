/*
 * Single-threaded row-major sgemm for the kernels, on oneDNN or OpenBLAS.
 *
 * Measured on the development machine (AMD Zen 5, 2 cores, AVX-512):
 * Debian's OpenBLAS 0.3.21 picks its Haswell (AVX2) kernels there and
 * reached 105-131 GFLOP/s on one core for the GEMM shapes of the
 * benchmark network. oneDNN 2.6's dnnl_sgemm, which JIT-compiles for the
 * CPU it finds, reached 245-278 GFLOP/s. oneDNN is the default;
 * OpenBLAS stays selectable for comparison (bench/conv_cpu_bench.c).
 *
 * Callers run this inside their own OpenMP loops, one call per thread.
 * Inside a region of two or more threads dnnl_sgemm runs on the calling
 * thread, because oneDNN does not nest parallel regions; called from a
 * region of one thread it may use the default team. OpenBLAS is kept at
 * one thread by cpu_kctx_init.
 */
#include "cpu.h"

#include <cblas.h>
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>

static enum cpu_gemm_backend backend = CPU_GEMM_DNNL;

void cpu_gemm_set_backend(enum cpu_gemm_backend which)
{
    backend = which;
}

void cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, int lda, const float *b, int ldb, float beta,
               float *c, int ldc)
{
    if (m == 0 || n == 0)
        return;

    if (backend == CPU_GEMM_OPENBLAS) {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                    lda, b, ldb, beta, c, ldc);
        return;
    }

    dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N',
                                  m, n, k, alpha, a, lda, b, ldb, beta, c,
                                  ldc);
    if (st != dnnl_success) {
        /* Only invalid arguments make dnnl_sgemm fail: a bug in the
         * caller, not a condition to recover from. */
        fprintf(stderr, "trainyard kernels: dnnl_sgemm failed with status "
                        "%d (m %d, n %d, k %d)\n", (int)st, m, n, k);
        abort();
    }
}
