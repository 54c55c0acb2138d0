/*
 * Convolution through oneDNN 2.6 primitives (C API).
 *
 * Layouts: in the blocked variant the primitives are created with
 * dnnl_format_tag_any, so oneDNN picks its own layouts (nChw16c and
 * blocked weights with AVX-512) and its direct JIT kernels. The plain
 * variant fixes NCHW / OIHW, and oneDNN then falls back to im2col + its
 * GEMM ("gemm:jit"). Arguments whose layout differs from the caller's plain one
 * go through reorder primitives into workspace scratch. Reorders are
 * cheap next to the convolution because they touch each tensor once,
 * where im2col writes k * k copies of the input.
 *
 * Accumulation: every gradient that the primitives write goes to scratch
 * and reaches the caller's buffer through a reorder with a sum post-op,
 * which adds it (dst = reordered src + dst), as the backward contract in
 * kernels.h requires.
 *
 * Caching: creating primitives costs far more than running small ones, so
 * they are cached per (shape, bias, variant) in a small table shared by
 * the process. One mutex guards the table and is held while primitives
 * run, because eviction destroys them. Two trainings in one process thus
 * take turns, which costs little when each convolution uses every core.
 */
#include "cpu.h"

#include <dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A failed call at execution time means a bug or exhausted memory, not
 * an unsupported shape (that is caught when primitives are created). */
#define DNNL_CHECK(call)                                                    \
    do {                                                                    \
        dnnl_status_t st_ = (call);                                         \
        if (st_ != dnnl_success) {                                          \
            fprintf(stderr, "trainyard kernels: %s failed with status %d " \
                            "at %s:%d\n", #call, (int)st_, __FILE__,       \
                    __LINE__);                                              \
            abort();                                                        \
        }                                                                   \
    } while (0)

enum { OP_FWD, OP_BWD_DATA, OP_BWD_WEIGHTS, OP_KINDS };

/* Caller tensors, in plain layout; a gradient has the layout of its
 * tensor. */
enum { T_SRC, T_WEIGHTS, T_BIAS, T_DST, T_KINDS };

/* Direction of the data between a primitive argument and the caller's
 * tensor. */
enum arg_flow {
    FLOW_IN,         /* read */
    FLOW_OUT,        /* written (forward dst) */
    FLOW_OUT_ADD,    /* added to the caller's gradient */
};

struct op_arg {
    int arg;                   /* DNNL_ARG_* */
    int tensor;                /* T_* */
    enum arg_flow flow;
    dnnl_memory_desc_t md;     /* the layout the primitive uses */
    dnnl_primitive_t reorder;  /* NULL: the caller's buffer is bound */
    size_t bytes;              /* scratch needed when reordered */
};

struct op {
    dnnl_primitive_t prim;
    int nargs;
    struct op_arg args[4];
    char impl[64];
};

struct dnnl_entry {
    int used;
    int blocked;
    int has_bias;
    struct conv2d_shape shape;
    unsigned long last_use;
    dnnl_memory_desc_t plain[T_KINDS];
    dnnl_primitive_desc_t fwd_pd; /* hint for the backward descriptors */
    struct op ops[OP_KINDS];
    int failed[OP_KINDS];
};

/* A YOLOv8 model has about 40 distinct convolution shapes, and validation
 * at another batch size doubles that. */
#define DNNL_CACHE_SIZE 128

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dnnl_entry cache[DNNL_CACHE_SIZE];
static unsigned long cache_clock;
static dnnl_engine_t engine;
static dnnl_stream_t stream;

static int ensure_engine(void)
{
    if (engine != NULL)
        return 0;
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success)
        return -1;
    if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags)
        != dnnl_success) {
        dnnl_engine_destroy(engine);
        engine = NULL;
        return -1;
    }
    return 0;
}

static int same_shape(const struct conv2d_shape *a,
                      const struct conv2d_shape *b)
{
    return a->n == b->n && a->c_in == b->c_in && a->h == b->h
           && a->w == b->w && a->c_out == b->c_out && a->k == b->k
           && a->stride == b->stride && a->pad == b->pad
           && a->groups == b->groups;
}

static void op_clear(struct op *op)
{
    for (int i = 0; i < op->nargs; i++) {
        if (op->args[i].reorder != NULL)
            dnnl_primitive_destroy(op->args[i].reorder);
    }
    if (op->prim != NULL)
        dnnl_primitive_destroy(op->prim);
    memset(op, 0, sizeof(*op));
}

static void entry_clear(struct dnnl_entry *e)
{
    for (int i = 0; i < OP_KINDS; i++)
        op_clear(&e->ops[i]);
    if (e->fwd_pd != NULL)
        dnnl_primitive_desc_destroy(e->fwd_pd);
    memset(e, 0, sizeof(*e));
}

static void plain_mds_init(const struct conv2d_shape *s,
                           dnnl_memory_desc_t md[T_KINDS])
{
    dnnl_dims_t src = {s->n, s->c_in, s->h, s->w};
    dnnl_dims_t dst = {s->n, s->c_out, s->h_out, s->w_out};
    dnnl_dims_t bias = {s->c_out};

    dnnl_memory_desc_init_by_tag(&md[T_SRC], 4, src, dnnl_f32, dnnl_nchw);
    dnnl_memory_desc_init_by_tag(&md[T_DST], 4, dst, dnnl_f32, dnnl_nchw);
    dnnl_memory_desc_init_by_tag(&md[T_BIAS], 1, bias, dnnl_f32, dnnl_a);

    if (s->groups == 1) {
        dnnl_dims_t w = {s->c_out, s->c_in, s->k, s->k};
        dnnl_memory_desc_init_by_tag(&md[T_WEIGHTS], 4, w, dnnl_f32,
                                     dnnl_oihw);
    } else {
        dnnl_dims_t w = {s->groups, s->c_out / s->groups,
                         s->c_in / s->groups, s->k, s->k};
        dnnl_memory_desc_init_by_tag(&md[T_WEIGHTS], 5, w, dnnl_f32,
                                     dnnl_goihw);
    }
}

/* Entry for the key: found, or a free or least recently used slot
 * cleared for it. */
static struct dnnl_entry *entry_find(const struct conv2d_shape *s,
                                     int has_bias, int blocked)
{
    struct dnnl_entry *oldest = &cache[0];

    for (int i = 0; i < DNNL_CACHE_SIZE; i++) {
        struct dnnl_entry *e = &cache[i];
        if (e->used && e->has_bias == has_bias && e->blocked == blocked
            && same_shape(&e->shape, s)) {
            e->last_use = ++cache_clock;
            return e;
        }
        if (!e->used || (oldest->used && e->last_use < oldest->last_use))
            oldest = e;
    }

    entry_clear(oldest);
    oldest->used = 1;
    oldest->shape = *s;
    oldest->has_bias = has_bias;
    oldest->blocked = blocked;
    oldest->last_use = ++cache_clock;
    plain_mds_init(s, oldest->plain);
    return oldest;
}

/* Reorder primitive from one layout to another, adding into the
 * destination when add is non-zero; NULL when oneDNN has none. */
static dnnl_primitive_t reorder_create(const dnnl_memory_desc_t *from,
                                       const dnnl_memory_desc_t *to, int add)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post_ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;

    if (add) {
        dnnl_primitive_attr_create(&attr);
        dnnl_post_ops_create(&post_ops);
        dnnl_post_ops_append_sum(post_ops, 1.0f);
        dnnl_primitive_attr_set_post_ops(attr, post_ops);
    }
    if (dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine,
                                           attr) == dnnl_success) {
        if (dnnl_primitive_create(&prim, pd) != dnnl_success)
            prim = NULL;
        dnnl_primitive_desc_destroy(pd);
    }
    if (post_ops != NULL)
        dnnl_post_ops_destroy(post_ops);
    if (attr != NULL)
        dnnl_primitive_attr_destroy(attr);
    return prim;
}

/* Record one argument of a created primitive and its reorder, if any;
 * returns 0 or -1. */
static int op_add_arg(struct dnnl_entry *e, struct op *op,
                      const_dnnl_primitive_desc_t pd, int arg, int tensor,
                      enum arg_flow flow)
{
    struct op_arg *a = &op->args[op->nargs++];
    const dnnl_memory_desc_t *plain = &e->plain[tensor];

    a->arg = arg;
    a->tensor = tensor;
    a->flow = flow;
    a->md = *dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
    a->bytes = dnnl_memory_desc_get_size(&a->md);

    if (flow != FLOW_OUT_ADD && dnnl_memory_desc_equal(&a->md, plain))
        return 0;
    if (flow == FLOW_IN)
        a->reorder = reorder_create(plain, &a->md, 0);
    else
        a->reorder = reorder_create(&a->md, plain, flow == FLOW_OUT_ADD);
    return a->reorder != NULL ? 0 : -1;
}

static int op_add_args(struct dnnl_entry *e, int kind,
                       const_dnnl_primitive_desc_t pd)
{
    struct op *op = &e->ops[kind];
    int rc = 0;

    if (kind == OP_FWD) {
        rc |= op_add_arg(e, op, pd, DNNL_ARG_SRC, T_SRC, FLOW_IN);
        rc |= op_add_arg(e, op, pd, DNNL_ARG_WEIGHTS, T_WEIGHTS, FLOW_IN);
        if (e->has_bias)
            rc |= op_add_arg(e, op, pd, DNNL_ARG_BIAS, T_BIAS, FLOW_IN);
        rc |= op_add_arg(e, op, pd, DNNL_ARG_DST, T_DST, FLOW_OUT);
    } else if (kind == OP_BWD_DATA) {
        rc |= op_add_arg(e, op, pd, DNNL_ARG_DIFF_DST, T_DST, FLOW_IN);
        rc |= op_add_arg(e, op, pd, DNNL_ARG_WEIGHTS, T_WEIGHTS, FLOW_IN);
        rc |= op_add_arg(e, op, pd, DNNL_ARG_DIFF_SRC, T_SRC,
                         FLOW_OUT_ADD);
    } else {
        rc |= op_add_arg(e, op, pd, DNNL_ARG_SRC, T_SRC, FLOW_IN);
        rc |= op_add_arg(e, op, pd, DNNL_ARG_DIFF_DST, T_DST, FLOW_IN);
        rc |= op_add_arg(e, op, pd, DNNL_ARG_DIFF_WEIGHTS, T_WEIGHTS,
                         FLOW_OUT_ADD);
        if (e->has_bias)
            rc |= op_add_arg(e, op, pd, DNNL_ARG_DIFF_BIAS, T_BIAS,
                             FLOW_OUT_ADD);
    }
    return rc != 0 ? -1 : 0;
}

/* Convolution descriptor of one kind, with the layouts of the variant. */
static int op_desc_init(const struct dnnl_entry *e, int kind,
                        dnnl_convolution_desc_t *desc)
{
    const struct conv2d_shape *s = &e->shape;
    dnnl_dims_t strides = {s->stride, s->stride};
    dnnl_dims_t pad_l = {s->pad, s->pad};
    /* Right padding that makes the output exactly h_out x w_out. It is
     * negative when the last rows are never read. oneDNN may reject that
     * shape, and the caller then falls back. */
    dnnl_dims_t pad_r = {(s->h_out - 1) * s->stride + s->k - s->h - s->pad,
                         (s->w_out - 1) * s->stride + s->k - s->w - s->pad};
    dnnl_memory_desc_t md[T_KINDS];
    dnnl_status_t st;

    memcpy(md, e->plain, sizeof(md));
    if (e->blocked) {
        int ndims[T_KINDS] = {4, s->groups == 1 ? 4 : 5, 1, 4};
        for (int t = 0; t < T_KINDS; t++) {
            if (t != T_BIAS)
                dnnl_memory_desc_init_by_tag(&md[t], ndims[t], md[t].dims,
                                             dnnl_f32, dnnl_format_tag_any);
        }
    }

    const dnnl_memory_desc_t *bias = e->has_bias ? &md[T_BIAS] : NULL;
    if (kind == OP_FWD) {
        st = dnnl_convolution_forward_desc_init(
            desc, dnnl_forward_training, dnnl_convolution_direct, &md[T_SRC],
            &md[T_WEIGHTS], bias, &md[T_DST], strides, pad_l, pad_r);
    } else if (kind == OP_BWD_DATA) {
        st = dnnl_convolution_backward_data_desc_init(
            desc, dnnl_convolution_direct, &md[T_SRC], &md[T_WEIGHTS],
            &md[T_DST], strides, pad_l, pad_r);
    } else {
        st = dnnl_convolution_backward_weights_desc_init(
            desc, dnnl_convolution_direct, &md[T_SRC], &md[T_WEIGHTS], bias,
            &md[T_DST], strides, pad_l, pad_r);
    }
    return st == dnnl_success ? 0 : -1;
}

/* Create the primitive of one kind with its reorders; returns 0 or -1. */
static int op_create(struct dnnl_entry *e, int kind)
{
    dnnl_convolution_desc_t desc;
    dnnl_primitive_desc_t pd;
    const char *impl = NULL;

    if (kind != OP_FWD && e->fwd_pd == NULL && op_create(e, OP_FWD) != 0)
        return -1;
    if (op_desc_init(e, kind, &desc) != 0)
        return -1;
    if (dnnl_primitive_desc_create(&pd, &desc, NULL, engine,
                                   kind == OP_FWD ? NULL : e->fwd_pd)
        != dnnl_success)
        return -1;

    struct op *op = &e->ops[kind];
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(op->impl, sizeof(op->impl), "%s", impl != NULL ? impl : "?");

    int rc = -1;
    if (dnnl_primitive_create(&op->prim, pd) == dnnl_success)
        rc = op_add_args(e, kind, pd);
    if (rc != 0)
        op_clear(op);

    if (kind == OP_FWD && rc == 0)
        e->fwd_pd = pd;
    else
        dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* The op of one kind, created on first use; NULL when oneDNN rejects it. */
static struct op *entry_op(struct dnnl_entry *e, int kind)
{
    if (e->ops[kind].prim == NULL && !e->failed[kind]
        && op_create(e, kind) != 0)
        e->failed[kind] = 1;
    return e->ops[kind].prim != NULL ? &e->ops[kind] : NULL;
}

static void reorder_run(dnnl_primitive_t reorder, dnnl_memory_t from,
                        dnnl_memory_t to)
{
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    DNNL_CHECK(dnnl_primitive_execute(reorder, stream, 2, args));
}

/* Run an op on the caller's tensors: reorder inputs into scratch, run,
 * reorder outputs back (adding gradients). */
static void op_run(struct kctx *ctx, const struct dnnl_entry *e,
                   const struct op *op, void *const user[T_KINDS])
{
    size_t offset[4] = {0};
    size_t total = 0;

    for (int i = 0; i < op->nargs; i++) {
        offset[i] = total;
        if (op->args[i].reorder != NULL)
            total += cpu_align64(op->args[i].bytes);
    }
    char *scratch = total > 0 ? cpu_kctx_workspace(ctx, total) : NULL;

    dnnl_memory_t mem[4] = {NULL};
    dnnl_memory_t user_mem[4] = {NULL};
    dnnl_exec_arg_t args[4];
    for (int i = 0; i < op->nargs; i++) {
        const struct op_arg *a = &op->args[i];
        void *data = a->reorder != NULL ? scratch + offset[i]
                                        : user[a->tensor];
        DNNL_CHECK(dnnl_memory_create(&mem[i], &a->md, engine, data));
        args[i].arg = a->arg;
        args[i].memory = mem[i];
        if (a->reorder == NULL)
            continue;

        DNNL_CHECK(dnnl_memory_create(&user_mem[i], &e->plain[a->tensor],
                                      engine, user[a->tensor]));
        if (a->flow == FLOW_IN)
            reorder_run(a->reorder, user_mem[i], mem[i]);
    }

    DNNL_CHECK(dnnl_primitive_execute(op->prim, stream, op->nargs, args));
    for (int i = 0; i < op->nargs; i++) {
        const struct op_arg *a = &op->args[i];
        if (a->reorder != NULL && a->flow != FLOW_IN)
            reorder_run(a->reorder, mem[i], user_mem[i]);
    }
    DNNL_CHECK(dnnl_stream_wait(stream));

    for (int i = 0; i < op->nargs; i++) {
        dnnl_memory_destroy(mem[i]);
        if (user_mem[i] != NULL)
            dnnl_memory_destroy(user_mem[i]);
    }
}

/* oneDNN built on GNU OpenMP sizes its teams by omp_get_max_threads(). */
static void use_ctx_threads(const struct kctx *ctx)
{
    omp_set_num_threads(cpu_thread_count(ctx));
}

int conv2d_dnnl_forward(struct kctx *ctx, const struct conv2d_shape *s,
                        int blocked, const float *x, const float *w,
                        const float *b, float *y)
{
    void *user[T_KINDS] = {(void *)x, (void *)w, (void *)b, y};
    int rc = -1;

    pthread_mutex_lock(&cache_lock);
    if (ensure_engine() == 0) {
        struct dnnl_entry *e = entry_find(s, b != NULL, blocked);
        struct op *op = entry_op(e, OP_FWD);
        if (op != NULL) {
            use_ctx_threads(ctx);
            op_run(ctx, e, op, user);
            rc = 0;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return rc;
}

/* Backward under the cache lock. Every op is created before any runs, so
 * a shape that oneDNN rejects leaves the gradients untouched for the
 * fallback path. */
static int backward_locked(struct kctx *ctx, const struct conv2d_shape *s,
                           int blocked, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db)
{
    if (ensure_engine() != 0)
        return -1;

    struct dnnl_entry *e = entry_find(s, db != NULL, blocked);
    struct op *data = dx != NULL ? entry_op(e, OP_BWD_DATA) : NULL;
    struct op *weights = dw != NULL ? entry_op(e, OP_BWD_WEIGHTS) : NULL;
    if ((dx != NULL && data == NULL) || (dw != NULL && weights == NULL))
        return -1;

    /* Gradients take the places of their tensors: dx that of x, dw of w,
     * db of b; dy is read where y would be written. */
    use_ctx_threads(ctx);
    if (data != NULL) {
        void *user[T_KINDS] = {dx, (void *)w, NULL, (void *)dy};
        op_run(ctx, e, data, user);
    }
    if (weights != NULL) {
        void *user[T_KINDS] = {(void *)x, dw, db, (void *)dy};
        op_run(ctx, e, weights, user);
    }
    return 0;
}

int conv2d_dnnl_backward(struct kctx *ctx, const struct conv2d_shape *s,
                         int blocked, const float *x, const float *w,
                         const float *dy, float *dx, float *dw, float *db)
{
    /* The bias gradient comes with the weight gradient; alone it is a
     * plain reduction. */
    float *db_dnnl = dw != NULL ? db : NULL;
    int rc = 0;

    if (dx != NULL || dw != NULL) {
        pthread_mutex_lock(&cache_lock);
        rc = backward_locked(ctx, s, blocked, x, w, dy, dx, dw, db_dnnl);
        pthread_mutex_unlock(&cache_lock);
    }
    if (rc == 0 && db != NULL && db_dnnl == NULL)
        conv2d_bias_backward(ctx, s, dy, db);
    return rc;
}

const char *conv2d_dnnl_impl_name(const struct conv2d_shape *s, int blocked,
                                  int which)
{
    const char *name = "";

    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < DNNL_CACHE_SIZE; i++) {
        struct dnnl_entry *e = &cache[i];
        if (e->used && e->blocked == blocked && same_shape(&e->shape, s)
            && e->ops[which].impl[0] != '\0') {
            name = e->ops[which].impl;
            break;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return name;
}
