/*
 * Convolution forward and backward through cuDNN's legacy convolution API
 * (cudnnConvolutionForward, BackwardData, BackwardFilter; still shipped in
 * cuDNN 9).
 *
 * Each distinct shape gets a plan: tensor, filter and convolution
 * descriptors plus the algorithm and workspace size of each pass, chosen
 * on first use and kept until the kctx is freed or TF32 is switched. A
 * YOLO model has a few dozen shapes, so plans are found by linear search.
 *
 * Algorithms come from cuDNN's heuristics (cudnnGet*Algorithm_v7), not
 * from timing runs (cudnnFind*): timings vary from run to run, and so
 * would the chosen algorithm and with it the rounding of every result.
 * Only algorithms that cuDNN reports as deterministic are taken, which
 * rules out the backward algorithms that add with atomics. With TF32 off
 * the descriptors use CUDNN_FMA_MATH, so that only float32 FMA kernels
 * run.
 *
 * Gradients accumulate through beta = 1. The bias gradient uses the
 * deterministic per-channel sum of reduce.cuh.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "reduce.cuh"

/* Largest workspace an algorithm may request. An algorithm that needs
 * more is skipped for the next one in cuDNN's ranking. NOTE: 1 GiB is a
 * guess meant to leave room for activations on GPUs of 16 GB and more. */
#define CONV_WORKSPACE_MAX ((size_t)1 << 30)

/* Algorithm and workspace of one pass; algo is the pass's cuDNN enum. */
struct conv_pass {
    int chosen;
    int algo;
    size_t workspace;
    cudnnMathType_t math;
};

struct conv_plan {
    struct conv2d_shape shape;
    int tf32;
    cudnnTensorDescriptor_t x_desc;
    cudnnTensorDescriptor_t y_desc;
    cudnnTensorDescriptor_t bias_desc;
    cudnnFilterDescriptor_t w_desc;
    cudnnConvolutionDescriptor_t conv_desc;
    struct conv_pass forward;
    struct conv_pass backward_data;
    struct conv_pass backward_filter;
};

/* Math type for the heuristics query: TF32 allowed or float32 FMA only. */
static cudnnMathType_t base_math(const struct conv_plan *p)
{
    return p->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

static void shape_text(const struct conv2d_shape *s, char *buf, size_t len)
{
    snprintf(buf, len,
             "n=%d c_in=%d h=%d w=%d c_out=%d k=%d stride=%d pad=%d "
             "groups=%d",
             s->n, s->c_in, s->h, s->w, s->c_out, s->k, s->stride, s->pad,
             s->groups);
}

/* ---- Plans -------------------------------------------------------------- */

static int same_shape(const struct conv2d_shape *a,
                      const struct conv2d_shape *b)
{
    return a->n == b->n && a->c_in == b->c_in && a->h == b->h &&
           a->w == b->w && a->c_out == b->c_out && a->k == b->k &&
           a->stride == b->stride && a->pad == b->pad &&
           a->groups == b->groups && a->h_out == b->h_out &&
           a->w_out == b->w_out;
}

static void plan_destroy(struct conv_plan *p)
{
    if (p == NULL)
        return;
    if (p->x_desc != NULL)
        (void)cudnnDestroyTensorDescriptor(p->x_desc);
    if (p->y_desc != NULL)
        (void)cudnnDestroyTensorDescriptor(p->y_desc);
    if (p->bias_desc != NULL)
        (void)cudnnDestroyTensorDescriptor(p->bias_desc);
    if (p->w_desc != NULL)
        (void)cudnnDestroyFilterDescriptor(p->w_desc);
    if (p->conv_desc != NULL)
        (void)cudnnDestroyConvolutionDescriptor(p->conv_desc);
    free(p);
}

void conv2d_plans_free(struct cuda_state *st)
{
    for (size_t i = 0; i < st->plan_count; i++)
        plan_destroy(st->plans[i]);
    free(st->plans);
    st->plans = NULL;
    st->plan_count = 0;
    st->plan_capacity = 0;
}

/* Fail unless s has a valid shape whose output size cuDNN agrees with,
 * because y, dy and the caller's buffers are sized from h_out, w_out. */
static int check_output(struct cuda_state *st, const struct conv_plan *p)
{
    const struct conv2d_shape *s = &p->shape;
    int n = 0, c = 0, h = 0, w = 0;
    char text[160];

    if (CUDNN_FAILED(st, cudnnGetConvolution2dForwardOutputDim(
                             p->conv_desc, p->x_desc, p->w_desc, &n, &c,
                             &h, &w)))
        return 1;
    if (n == s->n && c == s->c_out && h == s->h_out && w == s->w_out)
        return 0;
    shape_text(s, text, sizeof(text));
    return RECORD_FAILURE(st, -EINVAL,
                          "conv2d %s: h_out=%d w_out=%d, but cuDNN computes "
                          "%dx%d; fill the shape with conv2d_shape_init",
                          text, s->h_out, s->w_out, h, w);
}

static int plan_describe(struct cuda_state *st, struct conv_plan *p)
{
    const struct conv2d_shape *s = &p->shape;

    if (CUDNN_FAILED(st, cudnnCreateTensorDescriptor(&p->x_desc)) ||
        CUDNN_FAILED(st, cudnnCreateTensorDescriptor(&p->y_desc)) ||
        CUDNN_FAILED(st, cudnnCreateTensorDescriptor(&p->bias_desc)) ||
        CUDNN_FAILED(st, cudnnCreateFilterDescriptor(&p->w_desc)) ||
        CUDNN_FAILED(st, cudnnCreateConvolutionDescriptor(&p->conv_desc)))
        return 1;
    if (CUDNN_FAILED(st, cudnnSetTensor4dDescriptor(
                             p->x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                             s->n, s->c_in, s->h, s->w)) ||
        CUDNN_FAILED(st, cudnnSetTensor4dDescriptor(
                             p->y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                             s->n, s->c_out, s->h_out, s->w_out)) ||
        CUDNN_FAILED(st, cudnnSetTensor4dDescriptor(
                             p->bias_desc, CUDNN_TENSOR_NCHW,
                             CUDNN_DATA_FLOAT, 1, s->c_out, 1, 1)))
        return 1;
    /* w: [c_out, c_in / groups, k, k]. */
    if (CUDNN_FAILED(st, cudnnSetFilter4dDescriptor(
                             p->w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                             s->c_out, s->c_in / s->groups, s->k, s->k)))
        return 1;
    /* kernels.h defines cross-correlation (no kernel flip). */
    if (CUDNN_FAILED(st, cudnnSetConvolution2dDescriptor(
                             p->conv_desc, s->pad, s->pad, s->stride,
                             s->stride, 1, 1, CUDNN_CROSS_CORRELATION,
                             CUDNN_DATA_FLOAT)) ||
        CUDNN_FAILED(st, cudnnSetConvolutionGroupCount(p->conv_desc,
                                                       s->groups)) ||
        CUDNN_FAILED(st, cudnnSetConvolutionMathType(p->conv_desc,
                                                     base_math(p))))
        return 1;
    return check_output(st, p);
}

/* Return the plan for s, creating it on first use, or NULL after
 * recording a failure. */
static struct conv_plan *plan_get(struct cuda_state *st,
                                  const struct conv2d_shape *s)
{
    char text[160];

    for (size_t i = 0; i < st->plan_count; i++) {
        if (same_shape(&st->plans[i]->shape, s) &&
            st->plans[i]->tf32 == st->allow_tf32)
            return st->plans[i];
    }
    if (s->groups <= 0 || s->c_in % s->groups != 0 ||
        s->c_out % s->groups != 0) {
        shape_text(s, text, sizeof(text));
        RECORD_FAILURE(st, -EINVAL, "conv2d %s: channel counts must be "
                                    "multiples of groups", text);
        return NULL;
    }
    if (st->plan_count == st->plan_capacity) {
        size_t capacity = st->plan_capacity ? 2 * st->plan_capacity : 16;
        struct conv_plan **plans = (struct conv_plan **)realloc(
            st->plans, capacity * sizeof(*plans));
        if (plans == NULL) {
            RECORD_FAILURE(st, -ENOMEM, "failed to allocate %zu conv2d "
                                        "plans", capacity);
            return NULL;
        }
        st->plans = plans;
        st->plan_capacity = capacity;
    }

    struct conv_plan *p = (struct conv_plan *)calloc(1, sizeof(*p));
    if (p == NULL) {
        RECORD_FAILURE(st, -ENOMEM, "failed to allocate a conv2d plan");
        return NULL;
    }
    p->shape = *s;
    p->tf32 = st->allow_tf32;
    if (plan_describe(st, p) != 0) {
        plan_destroy(p);
        return NULL;
    }
    st->plans[st->plan_count++] = p;
    return p;
}

/* ---- Algorithm choice --------------------------------------------------- */

/* Whether a heuristic result may be used: it must be available,
 * deterministic, within CONV_WORKSPACE_MAX and, with TF32 off, free of
 * tensor-core math. */
static int algo_usable(const struct conv_plan *p, cudnnStatus_t status,
                       cudnnDeterminism_t determinism, cudnnMathType_t math,
                       size_t memory)
{
    if (status != CUDNN_STATUS_SUCCESS ||
        determinism != CUDNN_DETERMINISTIC || memory > CONV_WORKSPACE_MAX)
        return 0;
    if (!p->tf32 && (math == CUDNN_TENSOR_OP_MATH ||
                     math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
        return 0;
    return 1;
}

/* Math type to run a chosen algorithm with. */
static cudnnMathType_t pass_math(const struct conv_plan *p,
                                 cudnnMathType_t reported)
{
    return p->tf32 ? reported : CUDNN_FMA_MATH;
}

static int no_algorithm(struct cuda_state *st, const struct conv_plan *p,
                        const char *pass)
{
    char text[160];

    shape_text(&p->shape, text, sizeof(text));
    return RECORD_FAILURE(st, -ENOTSUP,
                          "conv2d %s: cuDNN has no deterministic %s "
                          "algorithm within %zu MiB of workspace",
                          text, pass, CONV_WORKSPACE_MAX >> 20);
}

static int choose_forward(struct cuda_state *st, struct conv_plan *p)
{
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int count = 0;

    /* Another pass may have left its own math type on the descriptor. */
    if (CUDNN_FAILED(st, cudnnSetConvolutionMathType(p->conv_desc,
                                                     base_math(p))))
        return 1;
    if (CUDNN_FAILED(st, cudnnGetConvolutionForwardAlgorithm_v7(
                             st->cudnn, p->x_desc, p->w_desc, p->conv_desc,
                             p->y_desc, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                             &count, perf)))
        return 1;
    for (int i = 0; i < count; i++) {
        cudnnMathType_t math = pass_math(p, perf[i].mathType);
        size_t size = 0;

        if (!algo_usable(p, perf[i].status, perf[i].determinism,
                         perf[i].mathType, perf[i].memory))
            continue;
        if (CUDNN_FAILED(st, cudnnSetConvolutionMathType(p->conv_desc,
                                                         math)))
            return 1;
        /* A candidate that cuDNN cannot size, or that needs more than the
         * cap, is skipped like an unusable one. */
        cudnnStatus_t sized = cudnnGetConvolutionForwardWorkspaceSize(
            st->cudnn, p->x_desc, p->w_desc, p->conv_desc, p->y_desc,
            perf[i].algo, &size);
        if (sized != CUDNN_STATUS_SUCCESS || size > CONV_WORKSPACE_MAX)
            continue;
        p->forward.chosen = 1;
        p->forward.algo = (int)perf[i].algo;
        p->forward.workspace = size;
        p->forward.math = math;
        return 0;
    }
    return no_algorithm(st, p, "forward");
}

static int choose_backward_data(struct cuda_state *st, struct conv_plan *p)
{
    cudnnConvolutionBwdDataAlgoPerf_t
        perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int count = 0;

    if (CUDNN_FAILED(st, cudnnSetConvolutionMathType(p->conv_desc,
                                                     base_math(p))))
        return 1;
    if (CUDNN_FAILED(st, cudnnGetConvolutionBackwardDataAlgorithm_v7(
                             st->cudnn, p->w_desc, p->y_desc, p->conv_desc,
                             p->x_desc,
                             CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count,
                             perf)))
        return 1;
    for (int i = 0; i < count; i++) {
        cudnnMathType_t math = pass_math(p, perf[i].mathType);
        size_t size = 0;

        if (!algo_usable(p, perf[i].status, perf[i].determinism,
                         perf[i].mathType, perf[i].memory))
            continue;
        if (CUDNN_FAILED(st, cudnnSetConvolutionMathType(p->conv_desc,
                                                         math)))
            return 1;
        cudnnStatus_t sized = cudnnGetConvolutionBackwardDataWorkspaceSize(
            st->cudnn, p->w_desc, p->y_desc, p->conv_desc, p->x_desc,
            perf[i].algo, &size);
        if (sized != CUDNN_STATUS_SUCCESS || size > CONV_WORKSPACE_MAX)
            continue;
        p->backward_data.chosen = 1;
        p->backward_data.algo = (int)perf[i].algo;
        p->backward_data.workspace = size;
        p->backward_data.math = math;
        return 0;
    }
    return no_algorithm(st, p, "backward-data");
}

static int choose_backward_filter(struct cuda_state *st,
                                  struct conv_plan *p)
{
    cudnnConvolutionBwdFilterAlgoPerf_t
        perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int count = 0;

    if (CUDNN_FAILED(st, cudnnSetConvolutionMathType(p->conv_desc,
                                                     base_math(p))))
        return 1;
    if (CUDNN_FAILED(st, cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                             st->cudnn, p->x_desc, p->y_desc, p->conv_desc,
                             p->w_desc,
                             CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                             &count, perf)))
        return 1;
    for (int i = 0; i < count; i++) {
        cudnnMathType_t math = pass_math(p, perf[i].mathType);
        size_t size = 0;

        if (!algo_usable(p, perf[i].status, perf[i].determinism,
                         perf[i].mathType, perf[i].memory))
            continue;
        if (CUDNN_FAILED(st, cudnnSetConvolutionMathType(p->conv_desc,
                                                         math)))
            return 1;
        cudnnStatus_t sized = cudnnGetConvolutionBackwardFilterWorkspaceSize(
            st->cudnn, p->x_desc, p->y_desc, p->conv_desc, p->w_desc,
            perf[i].algo, &size);
        if (sized != CUDNN_STATUS_SUCCESS || size > CONV_WORKSPACE_MAX)
            continue;
        p->backward_filter.chosen = 1;
        p->backward_filter.algo = (int)perf[i].algo;
        p->backward_filter.workspace = size;
        p->backward_filter.math = math;
        return 0;
    }
    return no_algorithm(st, p, "backward-filter");
}

/* Set the pass's math type and return its workspace, or NULL after
 * recording a failure. */
static void *pass_prepare(struct kctx *ctx, const struct conv_plan *p,
                          const struct conv_pass *pass)
{
    struct cuda_state *st = cuda_state_of(ctx);

    if (CUDNN_FAILED(st, cudnnSetConvolutionMathType(p->conv_desc,
                                                     pass->math)))
        return NULL;
    return cuda_kctx_workspace(ctx, pass->workspace);
}

/* ---- Bias --------------------------------------------------------------- */

/* Items of the bias-gradient sum: dy itself. */
struct bias_terms {
    const float *dy;

    __device__ double2 operator()(size_t idx, int) const
    {
        return make_double2((double)dy[idx], 0.0);
    }
};

/* db[co] += totals[co].x */
static __global__ void add_bias_grad_kernel(const double2 *totals, int c,
                                            float *db)
{
    int co = blockIdx.x * blockDim.x + threadIdx.x;

    if (co < c)
        db[co] += (float)totals[co].x;
}

static void bias_backward(struct kctx *ctx, const struct conv2d_shape *s,
                          const float *dy, float *db)
{
    struct cuda_state *st = cuda_state_of(ctx);
    struct bias_terms terms = {dy};
    double2 *totals = channel_sums(ctx, terms, s->n, s->c_out,
                                   s->h_out * s->w_out, 0, NULL);

    if (totals == NULL)
        return;
    add_bias_grad_kernel<<<grid_1d((size_t)s->c_out), CUDA_BLOCK, 0,
                           st->stream>>>(totals, s->c_out, db);
    (void)LAUNCH_FAILED(st);
}

/* ---- Public functions --------------------------------------------------- */

void cuda_conv2d_forward(struct kctx *ctx, const struct conv2d_shape *s,
                         const float *x, const float *w, const float *b,
                         float *y)
{
    struct cuda_state *st = cuda_state_of(ctx);
    const float one = 1.0f;
    const float zero = 0.0f;
    struct conv_plan *p = plan_get(st, s);

    if (p == NULL)
        return;
    if (!p->forward.chosen && choose_forward(st, p) != 0)
        return;
    void *workspace = pass_prepare(ctx, p, &p->forward);
    if (workspace == NULL)
        return;
    if (CUDNN_FAILED(st, cudnnConvolutionForward(
                             st->cudnn, &one, p->x_desc, x, p->w_desc, w,
                             p->conv_desc,
                             (cudnnConvolutionFwdAlgo_t)p->forward.algo,
                             workspace, ctx->workspace_size, &zero,
                             p->y_desc, y)))
        return;
    if (b != NULL)
        (void)CUDNN_FAILED(st, cudnnAddTensor(st->cudnn, &one, p->bias_desc,
                                              b, &one, p->y_desc, y));
}

static void backward_data(struct kctx *ctx, struct conv_plan *p,
                          const float *w, const float *dy, float *dx)
{
    struct cuda_state *st = cuda_state_of(ctx);
    const float one = 1.0f;

    if (!p->backward_data.chosen && choose_backward_data(st, p) != 0)
        return;
    void *workspace = pass_prepare(ctx, p, &p->backward_data);
    if (workspace == NULL)
        return;
    /* beta = 1: dx += the gradient. */
    (void)CUDNN_FAILED(st, cudnnConvolutionBackwardData(
                               st->cudnn, &one, p->w_desc, w, p->y_desc, dy,
                               p->conv_desc,
                               (cudnnConvolutionBwdDataAlgo_t)
                                   p->backward_data.algo,
                               workspace, ctx->workspace_size, &one,
                               p->x_desc, dx));
}

static void backward_filter(struct kctx *ctx, struct conv_plan *p,
                            const float *x, const float *dy, float *dw)
{
    struct cuda_state *st = cuda_state_of(ctx);
    const float one = 1.0f;

    if (!p->backward_filter.chosen && choose_backward_filter(st, p) != 0)
        return;
    void *workspace = pass_prepare(ctx, p, &p->backward_filter);
    if (workspace == NULL)
        return;
    /* beta = 1: dw += the gradient. */
    (void)CUDNN_FAILED(st, cudnnConvolutionBackwardFilter(
                               st->cudnn, &one, p->x_desc, x, p->y_desc, dy,
                               p->conv_desc,
                               (cudnnConvolutionBwdFilterAlgo_t)
                                   p->backward_filter.algo,
                               workspace, ctx->workspace_size, &one,
                               p->w_desc, dw));
}

void cuda_conv2d_backward(struct kctx *ctx, const struct conv2d_shape *s,
                          const float *x, const float *w, const float *dy,
                          float *dx, float *dw, float *db)
{
    struct cuda_state *st = cuda_state_of(ctx);
    struct conv_plan *p = plan_get(st, s);

    if (p == NULL)
        return;
    if (dx != NULL)
        backward_data(ctx, p, w, dy, dx);
    if (dw != NULL)
        backward_filter(ctx, p, x, dy, dw);
    if (db != NULL)
        bias_backward(ctx, s, dy, db);
}
