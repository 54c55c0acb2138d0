/*
 * Error checks for CUDA runtime, cuBLAS and cuDNN calls in kernels/cuda.
 *
 * The kernel interface returns void, so a check cannot return an error to
 * the caller. Each macro evaluates the call once and, when it failed,
 * records "file:line: function failed: status" with an errno-style code in
 * the cuda_state (the first failure wins, see cuda_kctx_status) and yields
 * 1, so that the caller can write
 *
 *     if (CUDNN_FAILED(st, cudnnAddTensor(...)))
 *         return;
 *
 * Only the function name of the call goes into the message, because the
 * argument text would fill the fixed-size message.
 */
#ifndef TRAINYARD_KERNELS_CUDA_CHECK_H
#define TRAINYARD_KERNELS_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

struct cuda_state;

/* Each returns 0 when status is success, else records it and returns 1. */
int cuda_check_runtime(struct cuda_state *st, cudaError_t status,
                       const char *call, const char *file, int line);
int cuda_check_cublas(struct cuda_state *st, cublasStatus_t status,
                      const char *call, const char *file, int line);
int cuda_check_cudnn(struct cuda_state *st, cudnnStatus_t status,
                     const char *call, const char *file, int line);
/* Record a failure that is not a library status (an invalid shape, no
 * usable algorithm); code is a negative errno value. Returns 1. */
int cuda_record_failure(struct cuda_state *st, int code, const char *file,
                        int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#define CUDA_FAILED(st, call) \
    cuda_check_runtime((st), (call), #call, __FILE__, __LINE__)
#define CUBLAS_FAILED(st, call) \
    cuda_check_cublas((st), (call), #call, __FILE__, __LINE__)
#define CUDNN_FAILED(st, call) \
    cuda_check_cudnn((st), (call), #call, __FILE__, __LINE__)
/* After a <<<...>>> launch: a bad configuration shows up here, while a
 * fault inside the kernel shows up at the next synchronizing call. */
#define LAUNCH_FAILED(st) \
    cuda_check_runtime((st), cudaGetLastError(), "kernel launch", \
                       __FILE__, __LINE__)
#define RECORD_FAILURE(st, code, ...) \
    cuda_record_failure((st), (code), __FILE__, __LINE__, __VA_ARGS__)

#endif
