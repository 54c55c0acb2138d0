/*
 * CUDA execution context, device memory helpers and error recording.
 *
 * One kctx owns one non-blocking stream with a cuBLAS and a cuDNN handle
 * bound to it, so everything queued through a kctx runs in order and
 * scratch memory can be reused from one kernel to the next. Device scratch
 * (kctx->workspace) only grows, by at least half each time, so a training
 * loop stops allocating after its first step. It comes from cudaMalloc,
 * never from managed memory.
 *
 * The kernel functions return void, so failures are recorded in the
 * cuda_state: the first one since the last check is kept, with file, line,
 * the failing function and the library's status text, and is returned by
 * cuda_kctx_status or cuda_synchronize. Later failures are usually
 * consequences of the first and are dropped.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Compute capability that the Makefile's -gencode flags cover: sm_80 and
 * sm_90 binaries plus compute_90 PTX for newer devices. */
#define CUDA_MIN_MAJOR 8

/* ---- Error recording ---------------------------------------------------- */

/* Keep "file:line: " and the formatted text unless a failure is already
 * recorded. */
static void record_vtext(struct cuda_state *st, int code, const char *file,
                         int line, const char *fmt, va_list ap)
{
    if (st == NULL) {
        /* A kctx used before cuda_kctx_init has nowhere to keep it. */
        fprintf(stderr, "trainyard cuda: %s:%d: ", file, line);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        return;
    }
    if (st->error_code != 0)
        return;

    size_t size = sizeof(st->error_msg);
    int prefix = snprintf(st->error_msg, size, "%s:%d: ", file, line);
    if (prefix < 0 || (size_t)prefix >= size)
        prefix = 0;
    vsnprintf(st->error_msg + prefix, size - (size_t)prefix, fmt, ap);
    st->error_code = code;
}

__attribute__((format(printf, 5, 6))) static void
record_text(struct cuda_state *st, int code, const char *file, int line,
            const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    record_vtext(st, code, file, line, fmt, ap);
    va_end(ap);
}

int cuda_record_failure(struct cuda_state *st, int code, const char *file,
                        int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    record_vtext(st, code, file, line, fmt, ap);
    va_end(ap);
    return 1;
}

/* Record "function failed: status; hint", with the function name cut from
 * the text of the call. */
static int record_call(struct cuda_state *st, int code, const char *call,
                       const char *file, int line, const char *status,
                       const char *hint)
{
    char function[64];
    size_t len = strcspn(call, "(");

    if (len >= sizeof(function))
        len = sizeof(function) - 1;
    memcpy(function, call, len);
    function[len] = '\0';
    record_text(st, code, file, line, "%s failed: %s%s%s", function, status,
                hint[0] != '\0' ? "; " : "", hint);
    return 1;
}

static const char *const HINT_MEMORY =
    "the device is out of memory: reduce the batch size or the image size, "
    "or stop other programs on the GPU (nvidia-smi lists them)";
static const char *const HINT_DRIVER =
    "check the NVIDIA driver with nvidia-smi; CUDA 13 needs an R580 driver "
    "or newer";

int cuda_check_runtime(struct cuda_state *st, cudaError_t status,
                       const char *call, const char *file, int line)
{
    char text[160];
    int code = -EIO;
    const char *hint = "";

    if (status == cudaSuccess)
        return 0;
    /* Reset the runtime's last error, so that the next LAUNCH_FAILED does
     * not report this failure again. Sticky errors (a kernel fault) stay
     * and come back from every later call. */
    (void)cudaGetLastError();
    switch (status) {
    case cudaErrorMemoryAllocation:
        code = -ENOMEM;
        hint = HINT_MEMORY;
        break;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorNoKernelImageForDevice:
        code = -ENODEV;
        hint = HINT_DRIVER;
        break;
    default:
        break;
    }
    snprintf(text, sizeof(text), "%s (%s)", cudaGetErrorString(status),
             cudaGetErrorName(status));
    return record_call(st, code, call, file, line, text, hint);
}

int cuda_check_cublas(struct cuda_state *st, cublasStatus_t status,
                      const char *call, const char *file, int line)
{
    char text[160];
    int code = -EIO;
    const char *hint = "";

    if (status == CUBLAS_STATUS_SUCCESS)
        return 0;
    if (status == CUBLAS_STATUS_ALLOC_FAILED) {
        code = -ENOMEM;
        hint = HINT_MEMORY;
    } else if (status == CUBLAS_STATUS_INVALID_VALUE) {
        code = -EINVAL;
    }
    snprintf(text, sizeof(text), "%s (%s)", cublasGetStatusString(status),
             cublasGetStatusName(status));
    return record_call(st, code, call, file, line, text, hint);
}

int cuda_check_cudnn(struct cuda_state *st, cudnnStatus_t status,
                     const char *call, const char *file, int line)
{
    int code = -EIO;
    const char *hint = "";

    if (status == CUDNN_STATUS_SUCCESS)
        return 0;
    switch (CUDNN_STATUS_CATEGORY(status)) {
    case CUDNN_STATUS_BAD_PARAM:
        code = -EINVAL;
        break;
    case CUDNN_STATUS_NOT_SUPPORTED:
        code = -ENOTSUP;
        break;
    default:
        break;
    }
    if (status == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED ||
        status == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED) {
        code = -ENOMEM;
        hint = HINT_MEMORY;
    }
    return record_call(st, code, call, file, line,
                       cudnnGetErrorString(status), hint);
}

/* ---- Devices ------------------------------------------------------------ */

/* Compute capability of device, or -1 when it cannot be read. */
static int device_major(int device, int *minor)
{
    int major = -1;

    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                               device) != cudaSuccess ||
        cudaDeviceGetAttribute(minor, cudaDevAttrComputeCapabilityMinor,
                               device) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    return major;
}

int cuda_device_count(char *why, size_t why_len)
{
    int count = 0;
    int usable = 0;
    int first_old = -1;
    int old_major = 0;
    int old_minor = 0;
    cudaError_t status = cudaGetDeviceCount(&count);

    if (why != NULL && why_len > 0)
        why[0] = '\0';
    if (status != cudaSuccess) {
        (void)cudaGetLastError();
        if (why != NULL && why_len > 0)
            snprintf(why, why_len, "cudaGetDeviceCount: %s (%s)",
                     cudaGetErrorString(status), cudaGetErrorName(status));
        return 0;
    }
    for (int device = 0; device < count; device++) {
        int minor = 0;
        int major = device_major(device, &minor);

        if (major >= CUDA_MIN_MAJOR) {
            usable++;
        } else if (first_old < 0) {
            first_old = device;
            old_major = major;
            old_minor = minor;
        }
    }
    if (usable == 0 && why != NULL && why_len > 0) {
        if (count == 0)
            snprintf(why, why_len, "cudaGetDeviceCount: no CUDA devices");
        else
            snprintf(why, why_len,
                     "device %d has compute capability %d.%d, and this "
                     "build needs %d.0 or newer",
                     first_old, old_major, old_minor, CUDA_MIN_MAJOR);
    }
    return usable;
}

/* Fail with -ENODEV unless device exists and can run this build. */
static int check_device(int device, struct error *err)
{
    int count = 0;
    int minor = 0;
    cudaError_t status = cudaGetDeviceCount(&count);

    if (status != cudaSuccess) {
        (void)cudaGetLastError();
        return error_set(err, -ENODEV,
                         "cudaGetDeviceCount failed: %s; %s",
                         cudaGetErrorString(status), HINT_DRIVER);
    }
    if (device < 0 || device >= count)
        return error_set(err, -ENODEV,
                         "CUDA device %d not found: %d device(s) present, "
                         "numbered from 0", device, count);
    int major = device_major(device, &minor);
    if (major < CUDA_MIN_MAJOR)
        return error_set(err, -ENODEV,
                         "CUDA device %d has compute capability %d.%d; "
                         "this build needs %d.0 or newer (A100, RTX 30 "
                         "series or a newer GPU)",
                         device, major, minor, CUDA_MIN_MAJOR);
    return 0;
}

/* ---- Contexts ----------------------------------------------------------- */

/* Create the stream and library handles of st. Returns 0, or 1 after
 * recording a failure in st. */
static int create_handles(struct cuda_state *st)
{
    if (CUDA_FAILED(st, cudaSetDevice(st->device)))
        return 1;
    if (CUDA_FAILED(st, cudaStreamCreateWithFlags(&st->stream,
                                                  cudaStreamNonBlocking)))
        return 1;
    if (CUBLAS_FAILED(st, cublasCreate(&st->cublas)))
        return 1;
    if (CUBLAS_FAILED(st, cublasSetStream(st->cublas, st->stream)))
        return 1;
    /* CUBLAS_DEFAULT_MATH keeps float32 precision: TF32 needs
     * CUBLAS_TF32_TENSOR_OP_MATH (cuda_kctx_set_tf32). Without atomics,
     * cuBLAS results repeat bit for bit on one device and version. */
    if (CUBLAS_FAILED(st, cublasSetMathMode(st->cublas, CUBLAS_DEFAULT_MATH)))
        return 1;
    if (CUBLAS_FAILED(st, cublasSetAtomicsMode(st->cublas,
                                               CUBLAS_ATOMICS_NOT_ALLOWED)))
        return 1;
    if (CUDNN_FAILED(st, cudnnCreate(&st->cudnn)))
        return 1;
    if (CUDNN_FAILED(st, cudnnSetStream(st->cudnn, st->stream)))
        return 1;
    return 0;
}

int cuda_kctx_init(struct kctx *ctx, int device, struct error *err)
{
    ctx->threads = 0;
    ctx->workspace = NULL;
    ctx->workspace_size = 0;
    ctx->cuda = NULL;

    int rc = check_device(device, err);
    if (rc != 0)
        return rc;

    struct cuda_state *st =
        (struct cuda_state *)calloc(1, sizeof(struct cuda_state));
    if (st == NULL)
        return error_errno(err, ENOMEM, "failed to allocate the CUDA "
                                        "context for device %d", device);
    st->device = device;
    ctx->cuda = st;
    if (create_handles(st) != 0) {
        rc = error_set(err, st->error_code, "CUDA context for device %d: %s",
                       device, st->error_msg);
        cuda_kctx_free(ctx);
        return rc;
    }
    return 0;
}

void cuda_kctx_free(struct kctx *ctx)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (st == NULL)
        return;
    /* Errors are ignored here: there is nothing left to report them to,
     * and each release below is still worth trying. */
    (void)cudaSetDevice(st->device);
    if (st->stream != NULL)
        (void)cudaStreamSynchronize(st->stream);
    conv2d_plans_free(st);
    if (ctx->workspace != NULL)
        (void)cudaFree(ctx->workspace);
    if (st->cudnn != NULL)
        (void)cudnnDestroy(st->cudnn);
    if (st->cublas != NULL)
        (void)cublasDestroy(st->cublas);
    if (st->stream != NULL)
        (void)cudaStreamDestroy(st->stream);
    (void)cudaGetLastError();
    free(st);
    ctx->cuda = NULL;
    ctx->workspace = NULL;
    ctx->workspace_size = 0;
}

void *cuda_kctx_workspace(struct kctx *ctx, size_t size)
{
    struct cuda_state *st = cuda_state_of(ctx);
    void *buffer = NULL;

    if (st == NULL) {
        RECORD_FAILURE(st, -EINVAL, "cuda_kctx_workspace on a kctx that "
                                    "cuda_kctx_init did not set up");
        return NULL;
    }
    /* A request for 0 bytes still gets a buffer, so that NULL always
     * means failure. */
    if (size == 0)
        size = 1;
    if (ctx->workspace != NULL && size <= ctx->workspace_size)
        return ctx->workspace;

    size_t grown = ctx->workspace_size + ctx->workspace_size / 2;
    size_t want = size > grown ? size : grown;
    want = (want + 255) & ~(size_t)255;

    /* Queued kernels may still use the old buffer. */
    if (CUDA_FAILED(st, cudaStreamSynchronize(st->stream)))
        return NULL;
    if (ctx->workspace != NULL &&
        CUDA_FAILED(st, cudaFree(ctx->workspace)))
        return NULL;
    ctx->workspace = NULL;
    ctx->workspace_size = 0;

    cudaError_t status = cudaMalloc(&buffer, want);
    if (status != cudaSuccess && want > size) {
        /* The extra half did not fit; the request alone may. */
        (void)cudaGetLastError();
        want = size;
        status = cudaMalloc(&buffer, want);
    }
    if (status != cudaSuccess) {
        (void)cudaGetLastError();
        RECORD_FAILURE(st, status == cudaErrorMemoryAllocation ? -ENOMEM
                                                               : -EIO,
                       "cudaMalloc of %zu bytes of workspace failed: %s; "
                       "%s", want, cudaGetErrorString(status), HINT_MEMORY);
        return NULL;
    }
    ctx->workspace = buffer;
    ctx->workspace_size = want;
    return buffer;
}

void cuda_kctx_set_tf32(struct kctx *ctx, int allow)
{
    struct cuda_state *st = cuda_state_of(ctx);
    cublasMath_t mode = allow ? CUBLAS_TF32_TENSOR_OP_MATH
                              : CUBLAS_DEFAULT_MATH;

    if (st == NULL)
        return;
    if (CUDA_FAILED(st, cudaStreamSynchronize(st->stream)))
        return;
    st->allow_tf32 = allow != 0;
    (void)CUBLAS_FAILED(st, cublasSetMathMode(st->cublas, mode));
    /* Plans keep algorithms chosen for the old math mode. */
    conv2d_plans_free(st);
}

int cuda_kctx_status(struct kctx *ctx, struct error *err)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (st == NULL)
        return error_set(err, -EINVAL, "CUDA kernel context is not "
                                       "initialized: call cuda_kctx_init "
                                       "first");
    if (st->error_code == 0)
        return 0;

    int code = st->error_code;
    error_set(err, code, "%s", st->error_msg);
    st->error_code = 0;
    st->error_msg[0] = '\0';
    return code;
}

/* ---- Memory ------------------------------------------------------------- */

int cuda_malloc(struct kctx *ctx, void **ptr, size_t size, struct error *err)
{
    struct cuda_state *st = cuda_state_of(ctx);

    *ptr = NULL;
    if (st == NULL)
        return cuda_kctx_status(ctx, err);
    if (size == 0)
        return 0;

    cudaError_t status = cudaMalloc(ptr, size);
    if (status != cudaSuccess) {
        (void)cudaGetLastError();
        *ptr = NULL;
        return error_set(err,
                         status == cudaErrorMemoryAllocation ? -ENOMEM
                                                             : -EIO,
                         "cudaMalloc of %zu bytes on device %d failed: %s%s",
                         size, st->device,
                         cudaGetErrorString(status),
                         status == cudaErrorMemoryAllocation
                             ? "; reduce the batch size or the image size"
                             : "");
    }
    return 0;
}

void cuda_free(struct kctx *ctx, void *ptr)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (ptr == NULL)
        return;
    /* Work queued on the stream may still use ptr. */
    if (st != NULL)
        (void)CUDA_FAILED(st, cudaStreamSynchronize(st->stream));
    (void)CUDA_FAILED(st, cudaFree(ptr));
}

/* Copy on the stream of ctx and wait for it, so the host buffer may be
 * reused at once and a failure queued earlier surfaces here. */
static int copy_sync(struct kctx *ctx, void *dst, const void *src,
                     size_t size, cudaMemcpyKind kind, struct error *err)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (st == NULL)
        return cuda_kctx_status(ctx, err);
    if (size > 0 &&
        !CUDA_FAILED(st, cudaMemcpyAsync(dst, src, size, kind, st->stream)))
        (void)CUDA_FAILED(st, cudaStreamSynchronize(st->stream));
    return cuda_kctx_status(ctx, err);
}

int cuda_memcpy_h2d(struct kctx *ctx, void *dst, const void *src,
                    size_t size, struct error *err)
{
    return copy_sync(ctx, dst, src, size, cudaMemcpyHostToDevice, err);
}

int cuda_memcpy_d2h(struct kctx *ctx, void *dst, const void *src,
                    size_t size, struct error *err)
{
    return copy_sync(ctx, dst, src, size, cudaMemcpyDeviceToHost, err);
}

int cuda_memset_zero(struct kctx *ctx, void *ptr, size_t size,
                     struct error *err)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (st == NULL)
        return cuda_kctx_status(ctx, err);
    if (size > 0)
        (void)CUDA_FAILED(st, cudaMemsetAsync(ptr, 0, size, st->stream));
    return cuda_kctx_status(ctx, err);
}

int cuda_synchronize(struct kctx *ctx, struct error *err)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (st == NULL)
        return cuda_kctx_status(ctx, err);
    (void)CUDA_FAILED(st, cudaStreamSynchronize(st->stream));
    return cuda_kctx_status(ctx, err);
}
