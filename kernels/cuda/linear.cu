/*
 * Fully connected layer through cuBLAS, w of shape [out, in], all matrices
 * row-major as in kernels.h:
 *
 *   forward  Y[n, out]    = X[n, in] W^T + b
 *   backward dX[n, in]   += dY[n, out] W
 *            dW[out, in] += dY^T X,   db[out] += sum over n of dY
 *
 * cuBLAS is column-major, and a row-major [r, c] matrix is the same memory
 * as a column-major [c, r] matrix, its transpose. So each product is
 * computed transposed: Y^T = W X^T, dX^T = W^T dY^T and dW^T = X^T dY, with
 * every operand read in place. Gradients accumulate through beta = 1.
 *
 * The bias gradient is a small kernel, one thread per output feature
 * summing its column of dY in row order in double, as the CPU does.
 */
#include "internal.h"

/* y[r, o] = b[o] for every row r: the starting value the GEMM adds to. */
static __global__ void fill_bias_kernel(int n, int out, const float *b,
                                        float *y)
{
    size_t total = (size_t)n * out;

    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
         i < total; i += (size_t)gridDim.x * blockDim.x)
        y[i] = b[i % (size_t)out];
}

/* db[o] += sum over rows r of dy[r, o] */
static __global__ void bias_grad_kernel(int n, int out, const float *dy,
                                        float *db)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;

    if (o >= out)
        return;
    double sum = 0.0;
    for (int r = 0; r < n; r++)
        sum += dy[(size_t)r * out + o];
    db[o] += (float)sum;
}

void cuda_linear_forward(struct kctx *ctx, int n, int in, int out,
                         const float *x, const float *w, const float *b,
                         float *y)
{
    struct cuda_state *st = cuda_state_of(ctx);
    const float one = 1.0f;
    float beta = 0.0f;

    if (n <= 0 || out <= 0)
        return;
    if (in <= 0 && b == NULL) {
        /* cuBLAS rejects k = 0 (lda must be at least 1); y is all zeros. */
        (void)CUDA_FAILED(st, cudaMemsetAsync(y, 0, (size_t)n * out *
                                                        sizeof(float),
                                              st->stream));
        return;
    }
    if (b != NULL) {
        fill_bias_kernel<<<grid_1d((size_t)n * out), CUDA_BLOCK, 0,
                           st->stream>>>(n, out, b, y);
        if (LAUNCH_FAILED(st))
            return;
        beta = 1.0f;
    }
    if (in <= 0)
        return;
    /* Y^T [out, n] = (W as [in, out])^T [out, in] * (X as [in, n]). */
    (void)CUBLAS_FAILED(st, cublasSgemm(st->cublas, CUBLAS_OP_T, CUBLAS_OP_N,
                                        out, n, in, &one, w, in, x, in,
                                        &beta, y, out));
}

void cuda_linear_backward(struct kctx *ctx, int n, int in, int out,
                          const float *x, const float *w, const float *dy,
                          float *dx, float *dw, float *db)
{
    struct cuda_state *st = cuda_state_of(ctx);
    const float one = 1.0f;

    if (n <= 0 || in <= 0 || out <= 0)
        return;
    /* dX^T [in, n] += (W as [in, out]) * (dY as [out, n]). */
    if (dx != NULL &&
        CUBLAS_FAILED(st, cublasSgemm(st->cublas, CUBLAS_OP_N, CUBLAS_OP_N,
                                      in, n, out, &one, w, in, dy, out, &one,
                                      dx, in)))
        return;
    /* dW^T [in, out] += (X as [in, n]) * (dY as [out, n])^T. */
    if (dw != NULL &&
        CUBLAS_FAILED(st, cublasSgemm(st->cublas, CUBLAS_OP_N, CUBLAS_OP_T,
                                      in, out, n, &one, x, in, dy, out, &one,
                                      dw, in)))
        return;
    if (db != NULL) {
        bias_grad_kernel<<<grid_1d((size_t)out), CUDA_BLOCK, 0,
                           st->stream>>>(n, out, dy, db);
        (void)LAUNCH_FAILED(st);
    }
}
