/*
 * Building networks and running their forward and backward passes. Each
 * module (Conv, Bottleneck, C2f, SPPF, Classify, Detect, Upsample,
 * Concat) follows
 * Ultralytics' definition of the same name; see net.h for the memory and
 * gradient rules.
 *
 * Weight initialization follows PyTorch's defaults, which Ultralytics
 * keeps: conv and linear weights uniform in +-1/sqrt(fan_in) (kaiming
 * uniform with a = sqrt(5)), linear biases likewise, batch-norm weight 1
 * and bias 0, running mean 0 and variance 1. Initial values are drawn on
 * the host, in build order, and copied into the device's arrays, so every
 * device starts from the same weights.
 *
 * Every kernel call and every buffer goes through net->ops. The passes
 * return void, so a failing zero-fill is recorded in net->failure for
 * net_check; kernel failures stay in the kctx until the same check.
 */
#include "net.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/rng.h"

#define BN_EPS 1e-3f
#define BN_MOMENTUM 0.03f
#define CLASSIFY_HIDDEN 1280

/* ---- Allocation and registration -------------------------------------- */

/* out = prefix + "." + suffix, cut to NET_NAME_MAX - 1 characters. */
static void name_join(char *out, const char *prefix, const char *suffix)
{
    int n = snprintf(out, NET_NAME_MAX, "%s.%s", prefix, suffix);

    if (n < 0 || n >= NET_NAME_MAX)
        out[NET_NAME_MAX - 1] = '\0';
}

struct build {
    struct net *net;
    struct rng rng;
    int failed;
    struct error error; /* first allocation or copy failure; code 0: none */
    float *host;        /* staging for initial values, host_n floats */
    size_t host_n;
};

/* Keep the first failure of the build. */
static void build_fail(struct build *b, const struct error *e)
{
    b->failed = 1;
    if (b->error.code == 0 && e != NULL && e->code != 0)
        b->error = *e;
}

/* Zero-filled device memory of size bytes, or NULL after build_fail. */
static void *alloc_bytes(struct build *b, size_t size)
{
    struct error e = {0};
    void *p = b->net->ops->alloc(b->net->ctx, size, &e);

    if (p == NULL)
        build_fail(b, &e);
    return p;
}

static float *alloc_floats(struct build *b, size_t n)
{
    return alloc_bytes(b, (n ? n : 1) * sizeof(float));
}

/* Host staging of at least n floats, or NULL after build_fail. */
static float *host_staging(struct build *b, size_t n)
{
    if (n > b->host_n) {
        float *grown = realloc(b->host, n * sizeof(float));
        if (grown == NULL) {
            struct error e = {0};
            error_set(&e, -ENOMEM, "out of memory building the model");
            build_fail(b, &e);
            return NULL;
        }
        b->host = grown;
        b->host_n = n;
    }
    return b->host;
}

/* Copy n floats of initial values from the host into a device array. */
static void upload(struct build *b, float *dst, const float *src, size_t n)
{
    struct error e = {0};
    struct net *net = b->net;
    size_t size = n * sizeof(float);

    if (net->ops->copy_to_device(net->ctx, dst, src, size, &e) != 0)
        build_fail(b, &e);
}

/* Set n floats of a device array to value. */
static void fill(struct build *b, float *x, size_t n, float value)
{
    float *host = x != NULL ? host_staging(b, n) : NULL;

    if (host == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        host[i] = value;
    upload(b, x, host, n);
}

/* Allocate an activation gradient buffer that net_zero_grad clears. */
static float *alloc_grad(struct build *b, size_t n)
{
    struct net *net = b->net;
    float *p = alloc_floats(b, n);

    if (net->ngrad == net->cap_grad) {
        int cap = net->cap_grad ? net->cap_grad * 2 : 64;
        float **bufs = realloc(net->grad_bufs, (size_t)cap * sizeof(*bufs));
        if (bufs == NULL) {
            b->failed = 1;
            net->ops->release(net->ctx, p);
            return NULL;
        }
        net->grad_bufs = bufs;
        size_t *sizes = realloc(net->grad_sizes,
                                (size_t)cap * sizeof(*sizes));
        if (sizes == NULL) {
            b->failed = 1;
            net->ops->release(net->ctx, p);
            return NULL;
        }
        net->grad_sizes = sizes;
        net->cap_grad = cap;
    }
    net->grad_bufs[net->ngrad] = p;
    net->grad_sizes[net->ngrad] = n;
    net->ngrad++;
    return p;
}

static void note_scratch(struct build *b, size_t n)
{
    if (n > b->net->scratch_size)
        b->net->scratch_size = n;
}

/* Register a parameter; its index stays valid, but pointers into
 * net->params may move until the build ends, so callers keep indices. */
static int add_param(struct build *b, const char *name, size_t n,
                     enum param_group group)
{
    struct net *net = b->net;
    struct param *p;

    if (net->nparams == net->cap_params) {
        int cap = net->cap_params ? net->cap_params * 2 : 64;
        struct param *grown = realloc(net->params,
                                      (size_t)cap * sizeof(*grown));
        if (grown == NULL) {
            b->failed = 1;
            return -1;
        }
        net->params = grown;
        net->cap_params = cap;
    }
    p = &net->params[net->nparams];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->n = n;
    p->group = group;
    p->data = alloc_floats(b, n);
    p->grad = alloc_floats(b, n);
    p->ema = alloc_floats(b, n);
    p->state_a = alloc_floats(b, n);
    p->state_b = alloc_floats(b, n);
    return net->nparams++;
}

static int add_buffer(struct build *b, const char *name, size_t n,
                      float value)
{
    struct net *net = b->net;
    struct buffer *buf;

    if (net->nbuffers == net->cap_buffers) {
        int cap = net->cap_buffers ? net->cap_buffers * 2 : 64;
        struct buffer *grown = realloc(net->buffers,
                                       (size_t)cap * sizeof(*grown));
        if (grown == NULL) {
            b->failed = 1;
            return -1;
        }
        net->buffers = grown;
        net->cap_buffers = cap;
    }
    buf = &net->buffers[net->nbuffers];
    memset(buf, 0, sizeof(*buf));
    snprintf(buf->name, sizeof(buf->name), "%s", name);
    buf->n = n;
    buf->data = alloc_floats(b, n);
    buf->ema = alloc_floats(b, n);
    if (value != 0.0f) /* alloc_floats gives zeros */
        fill(b, buf->data, n, value);
    return net->nbuffers++;
}

/* Draw n values uniform in +-bound on the host and copy them to x. */
static void init_uniform(struct build *b, float *x, size_t n, float bound)
{
    float *host = x != NULL ? host_staging(b, n) : NULL;

    if (host == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        host[i] = (float)((rng_uniform(&b->rng) * 2.0 - 1.0) * bound);
    upload(b, x, host, n);
}

/* ---- Zero-fills inside a pass ------------------------------------------- */

/* Zero n floats of a device array; a failure is kept for net_check. */
static void zero_floats(struct net *net, float *x, size_t n)
{
    struct error e = {0};

    if (net->ops->zero(net->ctx, x, n * sizeof(float), &e) != 0 &&
        net->failure.code == 0)
        net->failure = e;
}

/* ---- Conv: conv2d + batch norm + SiLU ----------------------------------
 * Parameters are registered as indices during the build and turned into
 * pointers by resolve_pointers once no more can be added. */

struct convbn_ids {
    int weight, gamma, beta, mean, var;
};

/* Parameter indices of each Conv module, kept beside it until the
 * parameter array stops moving and the pointers can be set. */
struct pending_conv {
    struct convbn *conv;
    struct convbn_ids ids;
};

static struct pending_conv *pending;
static int npending, cap_pending;

static void convbn_build(struct build *b, struct convbn *cv,
                         const char *prefix, int c_in, int h, int w,
                         int c_out, int k, int stride, int groups, int act)
{
    char name[NET_NAME_MAX];
    struct convbn_ids ids;
    size_t out_size, wsize;

    memset(cv, 0, sizeof(*cv));
    cv->shape.n = b->net->max_batch;
    cv->shape.c_in = c_in;
    cv->shape.h = h;
    cv->shape.w = w;
    cv->shape.c_out = c_out;
    cv->shape.k = k;
    cv->shape.stride = stride;
    cv->shape.pad = k / 2;
    cv->shape.groups = groups;
    if (conv2d_shape_init(&cv->shape) != 0) {
        b->failed = 1;
        return;
    }
    cv->act = act;

    wsize = (size_t)c_out * (size_t)(c_in / groups) * (size_t)k * (size_t)k;
    name_join(name, prefix, "conv.weight");
    ids.weight = add_param(b, name, wsize, PARAM_WEIGHT);
    name_join(name, prefix, "bn.weight");
    ids.gamma = add_param(b, name, (size_t)c_out, PARAM_NORM);
    name_join(name, prefix, "bn.bias");
    ids.beta = add_param(b, name, (size_t)c_out, PARAM_BIAS);
    name_join(name, prefix, "bn.running_mean");
    ids.mean = add_buffer(b, name, (size_t)c_out, 0.0f);
    name_join(name, prefix, "bn.running_var");
    ids.var = add_buffer(b, name, (size_t)c_out, 1.0f);
    if (b->failed)
        return;

    /* Initial values: see the file comment. */
    float bound = 1.0f / sqrtf((float)(wsize / (size_t)c_out));
    init_uniform(b, b->net->params[ids.weight].data, wsize, bound);
    fill(b, b->net->params[ids.gamma].data, (size_t)c_out, 1.0f);

    out_size = (size_t)b->net->max_batch * (size_t)c_out *
               (size_t)cv->shape.h_out * (size_t)cv->shape.w_out;
    cv->conv_out = alloc_floats(b, out_size);
    cv->bn_out = act ? alloc_floats(b, out_size) : cv->conv_out;
    cv->y = act ? alloc_floats(b, out_size) : NULL;
    if (!act)
        cv->y = alloc_floats(b, out_size);
    cv->dy = alloc_grad(b, out_size);
    cv->save_mean = alloc_floats(b, (size_t)c_out);
    cv->save_invstd = alloc_floats(b, (size_t)c_out);
    note_scratch(b, out_size);

    if (npending == cap_pending) {
        int cap = cap_pending ? cap_pending * 2 : 64;
        struct pending_conv *grown = realloc(pending,
                                             (size_t)cap * sizeof(*grown));
        if (grown == NULL) {
            b->failed = 1;
            return;
        }
        pending = grown;
        cap_pending = cap;
    }
    pending[npending].conv = cv;
    pending[npending].ids = ids;
    npending++;
}

static void resolve_pointers(struct net *net)
{
    for (int i = 0; i < npending; i++) {
        struct convbn *cv = pending[i].conv;
        struct convbn_ids *ids = &pending[i].ids;
        cv->weight = &net->params[ids->weight];
        cv->gamma = &net->params[ids->gamma];
        cv->beta = &net->params[ids->beta];
        cv->running_mean = &net->buffers[ids->mean];
        cv->running_var = &net->buffers[ids->var];
    }
    free(pending);
    pending = NULL;
    npending = cap_pending = 0;
}

static size_t convbn_out_size(const struct convbn *cv, int n)
{
    return (size_t)n * (size_t)cv->shape.c_out * (size_t)cv->shape.h_out *
           (size_t)cv->shape.w_out;
}

static void convbn_forward(struct net *net, struct convbn *cv,
                           const float *x, int train)
{
    struct conv2d_shape s = cv->shape;
    struct bn_shape bs;
    size_t size;

    s.n = net->batch;
    size = convbn_out_size(cv, net->batch);
    net->ops->conv2d_forward(net->ctx, &s, x, cv->weight->data, NULL,
                             cv->conv_out);

    bs.n = net->batch;
    bs.c = s.c_out;
    bs.hw = s.h_out * s.w_out;
    bs.eps = BN_EPS;
    bs.momentum = BN_MOMENTUM;
    float *bn_dst = cv->act ? cv->bn_out : cv->y;
    if (train)
        net->ops->batchnorm_forward_train(
            net->ctx, &bs, cv->conv_out, cv->gamma->data, cv->beta->data,
            cv->running_mean->data, cv->running_var->data, cv->save_mean,
            cv->save_invstd, bn_dst);
    else
        net->ops->batchnorm_forward_infer(
            net->ctx, &bs, cv->conv_out, cv->gamma->data, cv->beta->data,
            cv->running_mean->data, cv->running_var->data, bn_dst);
    if (cv->act)
        net->ops->silu_forward(net->ctx, cv->bn_out, cv->y, size);
}

/* Backward from cv->dy; accumulates into dx (may be NULL) and into the
 * parameter gradients. Uses the network's scratch buffers. */
static void convbn_backward(struct net *net, struct convbn *cv,
                            const float *x, float *dx)
{
    struct conv2d_shape s = cv->shape;
    struct bn_shape bs;
    size_t size = convbn_out_size(cv, net->batch);
    const float *dbn = cv->dy;

    s.n = net->batch;
    if (cv->act) {
        zero_floats(net, net->scratch_a, size);
        net->ops->silu_backward(net->ctx, cv->bn_out, cv->dy, net->scratch_a,
                                size);
        dbn = net->scratch_a;
    }

    bs.n = net->batch;
    bs.c = s.c_out;
    bs.hw = s.h_out * s.w_out;
    bs.eps = BN_EPS;
    bs.momentum = BN_MOMENTUM;
    zero_floats(net, net->scratch_b, size);
    net->ops->batchnorm_backward(
        net->ctx, &bs, cv->conv_out, cv->gamma->data, cv->save_mean,
        cv->save_invstd, dbn, net->scratch_b, cv->gamma->grad, cv->beta->grad);

    net->ops->conv2d_backward(net->ctx, &s, x, cv->weight->data, net->scratch_b,
                              dx, cv->weight->grad, NULL);
}

/* ---- Bottleneck -------------------------------------------------------- */

static void bottleneck_build(struct build *b, struct bottleneck *m,
                             const char *prefix, int c, int h, int w,
                             int shortcut)
{
    char name[NET_NAME_MAX];

    name_join(name, prefix, "cv1");
    convbn_build(b, &m->cv1, name, c, h, w, c, 3, 1, 1, 1);
    name_join(name, prefix, "cv2");
    convbn_build(b, &m->cv2, name, c, h, w, c, 3, 1, 1, 1);
    m->add = shortcut;
    if (m->add) {
        size_t size = (size_t)b->net->max_batch * (size_t)c * (size_t)h *
                      (size_t)w;
        m->y = alloc_floats(b, size);
        m->dy = alloc_grad(b, size);
    } else {
        m->y = m->cv2.y;
        m->dy = m->cv2.dy;
    }
}

static void bottleneck_forward(struct net *net, struct bottleneck *m,
                               const float *x, int train)
{
    convbn_forward(net, &m->cv1, x, train);
    convbn_forward(net, &m->cv2, m->cv1.y, train);
    if (m->add) {
        size_t size = convbn_out_size(&m->cv2, net->batch);
        net->ops->copy(net->ctx, m->y, x, size);
        net->ops->add_forward(net->ctx, m->cv2.y, m->y, size);
    }
}

static void bottleneck_backward(struct net *net, struct bottleneck *m,
                                const float *x, float *dx)
{
    if (m->add) {
        size_t size = convbn_out_size(&m->cv2, net->batch);
        net->ops->add_forward(net->ctx, m->dy, m->cv2.dy, size);
        net->ops->add_forward(net->ctx, m->dy, dx, size);
    }
    convbn_backward(net, &m->cv2, m->cv1.y, m->cv1.dy);
    convbn_backward(net, &m->cv1, x, dx);
}

/* ---- C2f ----------------------------------------------------------------
 * cv1 (1x1) makes 2h channels; the second half feeds n bottlenecks in a
 * chain; cv2 (1x1) mixes [cv1 output, every bottleneck output]. */

static void c2f_build(struct build *b, struct layer *l, const char *prefix,
                      int c1, int h, int w, int c2, int n, int shortcut)
{
    struct c2f *m = &l->u.c2f;
    char name[NET_NAME_MAX];
    int hid = c2 / 2;
    size_t plane = (size_t)b->net->max_batch * (size_t)h * (size_t)w;

    m->hidden = hid;
    m->n = n;
    name_join(name, prefix, "cv1");
    convbn_build(b, &m->cv1, name, c1, h, w, 2 * hid, 1, 1, 1, 1);
    name_join(name, prefix, "cv2");
    convbn_build(b, &m->cv2, name, (2 + n) * hid, h, w, c2, 1, 1, 1, 1);
    m->m = calloc((size_t)n, sizeof(*m->m));
    if (m->m == NULL) {
        b->failed = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        char index[16];
        snprintf(index, sizeof(index), "m.%d", i);
        name_join(name, prefix, index);
        bottleneck_build(b, &m->m[i], name, hid, h, w, shortcut);
    }
    m->b_in = alloc_floats(b, plane * (size_t)hid);
    m->db_in = alloc_grad(b, plane * (size_t)hid);
    m->cat = alloc_floats(b, plane * (size_t)((2 + n) * hid));
    m->dcat = alloc_grad(b, plane * (size_t)((2 + n) * hid));
    l->c = c2;
    l->h = h;
    l->w = w;
    l->out = m->cv2.y;
    l->dout = m->cv2.dy;
}

static struct channel_slice slice(int n, int hw, int whole, int part,
                                  int off)
{
    struct channel_slice s = {n, hw, whole, part, off};
    return s;
}

static void c2f_forward(struct net *net, struct layer *l, const float *x,
                        int train)
{
    struct c2f *m = &l->u.c2f;
    int n = net->batch, hw = l->h * l->w, hid = m->hidden;
    int whole = (2 + m->n) * hid;
    struct channel_slice s;

    convbn_forward(net, &m->cv1, x, train);
    s = slice(n, hw, whole, 2 * hid, 0);
    net->ops->channel_copy_in(net->ctx, &s, m->cv1.y, m->cat, 0);
    s = slice(n, hw, 2 * hid, hid, hid);
    net->ops->channel_copy_out(net->ctx, &s, m->cv1.y, m->b_in, 0);

    const float *in = m->b_in;
    for (int i = 0; i < m->n; i++) {
        bottleneck_forward(net, &m->m[i], in, train);
        s = slice(n, hw, whole, hid, (2 + i) * hid);
        net->ops->channel_copy_in(net->ctx, &s, m->m[i].y, m->cat, 0);
        in = m->m[i].y;
    }
    convbn_forward(net, &m->cv2, m->cat, train);
}

static void c2f_backward(struct net *net, struct layer *l, const float *x,
                         float *dx)
{
    struct c2f *m = &l->u.c2f;
    int n = net->batch, hw = l->h * l->w, hid = m->hidden;
    int whole = (2 + m->n) * hid;
    struct channel_slice s;

    convbn_backward(net, &m->cv2, m->cat, m->dcat);
    for (int i = m->n - 1; i >= 0; i--) {
        const float *in = i == 0 ? m->b_in : m->m[i - 1].y;
        float *din = i == 0 ? m->db_in : m->m[i - 1].dy;
        s = slice(n, hw, whole, hid, (2 + i) * hid);
        net->ops->channel_copy_out(net->ctx, &s, m->dcat, m->m[i].dy, 1);
        bottleneck_backward(net, &m->m[i], in, din);
    }
    s = slice(n, hw, whole, 2 * hid, 0);
    net->ops->channel_copy_out(net->ctx, &s, m->dcat, m->cv1.dy, 1);
    s = slice(n, hw, 2 * hid, hid, hid);
    net->ops->channel_copy_in(net->ctx, &s, m->db_in, m->cv1.dy, 1);
    convbn_backward(net, &m->cv1, x, dx);
}

/* ---- SPPF ---------------------------------------------------------------
 * cv1 halves the channels; three 5x5 max pools (stride 1, pad 2) in a row;
 * cv2 mixes the four. */

static void sppf_build(struct build *b, struct layer *l, const char *prefix,
                       int c1, int h, int w, int c2, int k)
{
    struct sppf *m = &l->u.sppf;
    char name[NET_NAME_MAX];
    int hid = c1 / 2;
    size_t size = (size_t)b->net->max_batch * (size_t)hid * (size_t)h *
                  (size_t)w;

    name_join(name, prefix, "cv1");
    convbn_build(b, &m->cv1, name, c1, h, w, hid, 1, 1, 1, 1);
    name_join(name, prefix, "cv2");
    convbn_build(b, &m->cv2, name, 4 * hid, h, w, c2, 1, 1, 1, 1);
    m->pool.n = b->net->max_batch;
    m->pool.c = hid;
    m->pool.h = h;
    m->pool.w = w;
    m->pool.k = k;
    m->pool.stride = 1;
    m->pool.pad = k / 2;
    if (pool_shape_init(&m->pool) != 0)
        b->failed = 1;
    for (int i = 0; i < 3; i++) {
        m->p[i] = alloc_floats(b, size);
        m->dp[i] = alloc_grad(b, size);
        m->argmax[i] = alloc_bytes(b, size * sizeof(int32_t));
    }
    m->cat = alloc_floats(b, 4 * size);
    m->dcat = alloc_grad(b, 4 * size);
    l->c = c2;
    l->h = h;
    l->w = w;
    l->out = m->cv2.y;
    l->dout = m->cv2.dy;
}

static void sppf_forward(struct net *net, struct layer *l, const float *x,
                         int train)
{
    struct sppf *m = &l->u.sppf;
    struct pool_shape ps = m->pool;
    int hid = ps.c, hw = l->h * l->w;
    struct channel_slice s;

    ps.n = net->batch;
    convbn_forward(net, &m->cv1, x, train);
    s = slice(net->batch, hw, 4 * hid, hid, 0);
    net->ops->channel_copy_in(net->ctx, &s, m->cv1.y, m->cat, 0);
    const float *in = m->cv1.y;
    for (int i = 0; i < 3; i++) {
        net->ops->maxpool_forward(net->ctx, &ps, in, m->p[i], m->argmax[i]);
        s = slice(net->batch, hw, 4 * hid, hid, (i + 1) * hid);
        net->ops->channel_copy_in(net->ctx, &s, m->p[i], m->cat, 0);
        in = m->p[i];
    }
    convbn_forward(net, &m->cv2, m->cat, train);
}

static void sppf_backward(struct net *net, struct layer *l, const float *x,
                          float *dx)
{
    struct sppf *m = &l->u.sppf;
    struct pool_shape ps = m->pool;
    int hid = ps.c, hw = l->h * l->w;
    struct channel_slice s;

    ps.n = net->batch;
    convbn_backward(net, &m->cv2, m->cat, m->dcat);
    for (int i = 2; i >= 0; i--) {
        float *dprev = i == 0 ? m->cv1.dy : m->dp[i - 1];
        s = slice(net->batch, hw, 4 * hid, hid, (i + 1) * hid);
        net->ops->channel_copy_out(net->ctx, &s, m->dcat, m->dp[i], 1);
        net->ops->maxpool_backward(net->ctx, &ps, m->argmax[i], m->dp[i],
                                   dprev);
    }
    s = slice(net->batch, hw, 4 * hid, hid, 0);
    net->ops->channel_copy_out(net->ctx, &s, m->dcat, m->cv1.dy, 1);
    convbn_backward(net, &m->cv1, x, dx);
}

/* ---- Classify -----------------------------------------------------------
 * Conv 1x1 to 1280 channels, global average pool, linear to the classes.
 * Dropout before the linear layer is 0 in Ultralytics' defaults and is not
 * applied here. */

struct pending_linear {
    struct classify *m;
    int weight, bias;
};
static struct pending_linear pending_cls;

static void classify_build(struct build *b, struct layer *l,
                           const char *prefix, int c1, int h, int w,
                           int classes)
{
    struct classify *m = &l->u.classify;
    char name[NET_NAME_MAX];
    size_t nb = (size_t)b->net->max_batch;

    m->hidden = CLASSIFY_HIDDEN;
    m->classes = classes;
    name_join(name, prefix, "conv");
    convbn_build(b, &m->conv, name, c1, h, w, m->hidden, 1, 1, 1, 1);

    name_join(name, prefix, "linear.weight");
    pending_cls.weight = add_param(b, name,
                                   (size_t)classes * (size_t)m->hidden,
                                   PARAM_WEIGHT);
    name_join(name, prefix, "linear.bias");
    pending_cls.bias = add_param(b, name, (size_t)classes, PARAM_BIAS);
    pending_cls.m = m;
    if (b->failed)
        return;

    float bound = 1.0f / sqrtf((float)m->hidden);
    init_uniform(b, b->net->params[pending_cls.weight].data,
                 (size_t)classes * (size_t)m->hidden, bound);
    init_uniform(b, b->net->params[pending_cls.bias].data, (size_t)classes,
                 bound);

    m->pooled = alloc_floats(b, nb * (size_t)m->hidden);
    m->dpooled = alloc_grad(b, nb * (size_t)m->hidden);
    m->logits = alloc_floats(b, nb * (size_t)classes);
    m->dlogits = alloc_grad(b, nb * (size_t)classes);
    l->c = classes;
    l->h = 1;
    l->w = 1;
    l->out = m->logits;
    l->dout = m->dlogits;
}

static void classify_forward(struct net *net, struct layer *l,
                             const float *x, int train)
{
    struct classify *m = &l->u.classify;
    int hw = m->conv.shape.h_out * m->conv.shape.w_out;

    convbn_forward(net, &m->conv, x, train);
    net->ops->avgpool_global_forward(net->ctx, net->batch, m->hidden, hw,
                                     m->conv.y, m->pooled);
    net->ops->linear_forward(net->ctx, net->batch, m->hidden, m->classes,
                             m->pooled, m->weight->data, m->bias->data,
                             m->logits);
}

static void classify_backward(struct net *net, struct layer *l,
                              const float *x, float *dx)
{
    struct classify *m = &l->u.classify;
    int hw = m->conv.shape.h_out * m->conv.shape.w_out;

    net->ops->linear_backward(net->ctx, net->batch, m->hidden, m->classes,
                              m->pooled, m->weight->data, m->dlogits,
                              m->dpooled, m->weight->grad, m->bias->grad);
    net->ops->avgpool_global_backward(net->ctx, net->batch, m->hidden, hw,
                                      m->dpooled, m->conv.dy);
    convbn_backward(net, &m->conv, x, dx);
}

static int layer_input_shape(const struct net *net, int from, int *c, int *h,
                             int *w);
static const float *layer_input(const struct net *net, int from);
static float *layer_input_grad(const struct net *net, int from);
static void release(struct net *net, void *ptr);
static void convbn_free(struct net *net, struct convbn *cv);

/* ---- Detect --------------------------------------------------------------
 * Branch widths follow Ultralytics: the box branch has max(16, ch0 / 4,
 * 4 * reg_max) channels and the class branch max(ch0, min(nc, 100)),
 * where ch0 is the channel count of the first (finest) level. Parameters
 * are registered box branches first, then class branches, as PyTorch
 * names them ("model.22.cv2.0.0.conv.weight", ...,
 * "model.22.cv3.2.2.bias").
 *
 * Initial biases: 1.0 for the box distributions, and log(5 / nc /
 * (640 / stride)^2) for the classes, which Ultralytics' Detect.bias_init
 * sets so that each class starts with a prior of about 5 objects per
 * 640-pixel image. */

struct pending_bias_conv {
    struct conv_bias *conv;
    int weight, bias;
};
static struct pending_bias_conv *pending_bias;
static int npending_bias, cap_pending_bias;

static void conv_bias_build(struct build *b, struct conv_bias *cv,
                            const char *prefix, int c_in, int h, int w,
                            int c_out, float bias_value)
{
    char name[NET_NAME_MAX];
    size_t out_size, wsize = (size_t)c_out * (size_t)c_in;
    int weight, bias;

    memset(cv, 0, sizeof(*cv));
    cv->shape.n = b->net->max_batch;
    cv->shape.c_in = c_in;
    cv->shape.h = h;
    cv->shape.w = w;
    cv->shape.c_out = c_out;
    cv->shape.k = 1;
    cv->shape.stride = 1;
    cv->shape.pad = 0;
    cv->shape.groups = 1;
    if (conv2d_shape_init(&cv->shape) != 0) {
        b->failed = 1;
        return;
    }
    name_join(name, prefix, "weight");
    weight = add_param(b, name, wsize, PARAM_WEIGHT);
    name_join(name, prefix, "bias");
    bias = add_param(b, name, (size_t)c_out, PARAM_BIAS);
    if (b->failed)
        return;
    init_uniform(b, b->net->params[weight].data, wsize,
                 1.0f / sqrtf((float)c_in));
    fill(b, b->net->params[bias].data, (size_t)c_out, bias_value);

    out_size = (size_t)b->net->max_batch * (size_t)c_out * (size_t)h *
               (size_t)w;
    cv->y = alloc_floats(b, out_size);
    cv->dy = alloc_grad(b, out_size);

    if (npending_bias == cap_pending_bias) {
        int cap = cap_pending_bias ? cap_pending_bias * 2 : 16;
        struct pending_bias_conv *grown =
            realloc(pending_bias, (size_t)cap * sizeof(*grown));
        if (grown == NULL) {
            b->failed = 1;
            return;
        }
        pending_bias = grown;
        cap_pending_bias = cap;
    }
    pending_bias[npending_bias].conv = cv;
    pending_bias[npending_bias].weight = weight;
    pending_bias[npending_bias].bias = bias;
    npending_bias++;
}

static void resolve_bias_pointers(struct net *net)
{
    for (int i = 0; i < npending_bias; i++) {
        pending_bias[i].conv->weight = &net->params[pending_bias[i].weight];
        pending_bias[i].conv->bias = &net->params[pending_bias[i].bias];
    }
    free(pending_bias);
    pending_bias = NULL;
    npending_bias = cap_pending_bias = 0;
}

static int detect_build(struct build *b, struct layer *l, const char *prefix,
                        int classes, struct error *err)
{
    struct net *net = b->net;
    struct detect *d = calloc(1, sizeof(*d));
    int c[DET_LEVELS_MAX], h[DET_LEVELS_MAX], w[DET_LEVELS_MAX];
    int strides[DET_LEVELS_MAX];
    char name[NET_NAME_MAX];

    if (d == NULL)
        return error_set(err, -ENOMEM, "out of memory building Detect");
    l->u.detect = d;
    for (int i = 0; i < l->nfrom; i++) {
        layer_input_shape(net, l->from[i], &c[i], &h[i], &w[i]);
        if (h[i] < 1 || net->in_h % h[i] != 0 || net->in_w % w[i] != 0 ||
            net->in_h / h[i] != net->in_w / w[i])
            return error_set(err, -EINVAL,
                             "Detect input %d is %dx%d, which does not "
                             "divide the image size %dx%d; use an image "
                             "size that is a multiple of 32",
                             i, h[i], w[i], net->in_h, net->in_w);
        strides[i] = net->in_h / h[i];
    }
    if (det_layout_init(&d->layout, classes, net->in_h, net->in_w, strides,
                        l->nfrom) != 0)
        return error_set(err, -EINVAL, "invalid Detect layout");

    int reg = d->layout.reg_max;
    int c_box = c[0] / 4 > 16 ? c[0] / 4 : 16;
    int c_cls = classes < 100 ? classes : 100;
    if (c_box < 4 * reg)
        c_box = 4 * reg;
    if (c_cls < c[0])
        c_cls = c[0];

    for (int i = 0; i < l->nfrom; i++) {
        char branch[NET_NAME_MAX];
        snprintf(branch, sizeof(branch), "%s.cv2.%d", prefix, i);
        name_join(name, branch, "0");
        convbn_build(b, &d->box_a[i], name, c[i], h[i], w[i], c_box, 3, 1, 1,
                     1);
        name_join(name, branch, "1");
        convbn_build(b, &d->box_b[i], name, c_box, h[i], w[i], c_box, 3, 1,
                     1, 1);
        name_join(name, branch, "2");
        conv_bias_build(b, &d->box_c[i], name, c_box, h[i], w[i], 4 * reg,
                        1.0f);
    }
    for (int i = 0; i < l->nfrom; i++) {
        char branch[NET_NAME_MAX];
        double cells = 640.0 / strides[i];
        float prior = (float)log(5.0 / classes / (cells * cells));
        snprintf(branch, sizeof(branch), "%s.cv3.%d", prefix, i);
        name_join(name, branch, "0");
        convbn_build(b, &d->cls_a[i], name, c[i], h[i], w[i], c_cls, 3, 1, 1,
                     1);
        name_join(name, branch, "1");
        convbn_build(b, &d->cls_b[i], name, c_cls, h[i], w[i], c_cls, 3, 1,
                     1, 1);
        name_join(name, branch, "2");
        conv_bias_build(b, &d->cls_c[i], name, c_cls, h[i], w[i], classes,
                        prior);
    }

    size_t size = (size_t)net->max_batch * (size_t)det_outputs(&d->layout) *
                  (size_t)d->layout.anchors;
    d->pred = alloc_floats(b, size);
    d->dpred = alloc_grad(b, size);
    l->c = det_outputs(&d->layout);
    l->h = 1;
    l->w = d->layout.anchors;
    l->out = d->pred;
    l->dout = d->dpred;
    return 0;
}

/* The block of pred that level i's box (box = 1) or class maps fill. */
static struct tensor_slice detect_slice(const struct net *net,
                                        const struct detect *d, int i,
                                        int box)
{
    const struct det_layout *lay = &d->layout;
    struct tensor_slice s;

    s.n = net->batch;
    s.c_whole = det_outputs(lay);
    s.c_part = box ? 4 * lay->reg_max : lay->nc;
    s.c_off = box ? 0 : 4 * lay->reg_max;
    s.hw_whole = lay->anchors;
    s.hw_part = lay->h[i] * lay->w[i];
    s.hw_off = lay->first[i];
    return s;
}

static void conv_bias_forward(struct net *net, struct conv_bias *cv,
                              const float *x)
{
    struct conv2d_shape s = cv->shape;

    s.n = net->batch;
    net->ops->conv2d_forward(net->ctx, &s, x, cv->weight->data,
                             cv->bias->data, cv->y);
}

static void conv_bias_backward(struct net *net, struct conv_bias *cv,
                               const float *x, float *dx)
{
    struct conv2d_shape s = cv->shape;

    s.n = net->batch;
    net->ops->conv2d_backward(net->ctx, &s, x, cv->weight->data, cv->dy, dx,
                              cv->weight->grad, cv->bias->grad);
}

static void detect_forward(struct net *net, struct layer *l, int train)
{
    struct detect *d = l->u.detect;

    for (int i = 0; i < l->nfrom; i++) {
        const float *x = layer_input(net, l->from[i]);
        struct tensor_slice s;

        convbn_forward(net, &d->box_a[i], x, train);
        convbn_forward(net, &d->box_b[i], d->box_a[i].y, train);
        conv_bias_forward(net, &d->box_c[i], d->box_b[i].y);
        s = detect_slice(net, d, i, 1);
        net->ops->slice_copy_in(net->ctx, &s, d->box_c[i].y, d->pred, 0);

        convbn_forward(net, &d->cls_a[i], x, train);
        convbn_forward(net, &d->cls_b[i], d->cls_a[i].y, train);
        conv_bias_forward(net, &d->cls_c[i], d->cls_b[i].y);
        s = detect_slice(net, d, i, 0);
        net->ops->slice_copy_in(net->ctx, &s, d->cls_c[i].y, d->pred, 0);
    }
}

static void detect_backward(struct net *net, struct layer *l)
{
    struct detect *d = l->u.detect;

    for (int i = l->nfrom - 1; i >= 0; i--) {
        const float *x = layer_input(net, l->from[i]);
        float *dx = layer_input_grad(net, l->from[i]);
        struct tensor_slice s;

        s = detect_slice(net, d, i, 0);
        net->ops->slice_copy_out(net->ctx, &s, d->dpred, d->cls_c[i].dy, 1);
        conv_bias_backward(net, &d->cls_c[i], d->cls_b[i].y, d->cls_b[i].dy);
        convbn_backward(net, &d->cls_b[i], d->cls_a[i].y, d->cls_a[i].dy);
        convbn_backward(net, &d->cls_a[i], x, dx);

        s = detect_slice(net, d, i, 1);
        net->ops->slice_copy_out(net->ctx, &s, d->dpred, d->box_c[i].dy, 1);
        conv_bias_backward(net, &d->box_c[i], d->box_b[i].y, d->box_b[i].dy);
        convbn_backward(net, &d->box_b[i], d->box_a[i].y, d->box_a[i].dy);
        convbn_backward(net, &d->box_a[i], x, dx);
    }
}

static void detect_free(struct net *net, struct detect *d)
{
    if (d == NULL)
        return;
    for (int i = 0; i < d->layout.nlevels; i++) {
        convbn_free(net, &d->box_a[i]);
        convbn_free(net, &d->box_b[i]);
        convbn_free(net, &d->cls_a[i]);
        convbn_free(net, &d->cls_b[i]);
        release(net, d->box_c[i].y);
        release(net, d->cls_c[i].y);
    }
    release(net, d->pred);
    free(d);
}

/* ---- Building the whole network --------------------------------------- */

static int layer_input_shape(const struct net *net, int from, int *c, int *h,
                             int *w)
{
    if (from < 0) {
        *c = net->in_c;
        *h = net->in_h;
        *w = net->in_w;
    } else {
        *c = net->layers[from].c;
        *h = net->layers[from].h;
        *w = net->layers[from].w;
    }
    return 0;
}

static int build_layer(struct build *b, int i, const struct layer_spec *sp,
                       struct error *err)
{
    struct net *net = b->net;
    struct layer *l = &net->layers[i];
    char prefix[32];
    int c1, h, w;
    size_t size;

    l->kind = sp->kind;
    l->nfrom = sp->nfrom;
    memcpy(l->from, sp->from, sizeof(l->from));
    layer_input_shape(net, l->from[0], &c1, &h, &w);
    snprintf(prefix, sizeof(prefix), "model.%d", i);

    switch (sp->kind) {
    case LAYER_CONV:
        convbn_build(b, &l->u.conv, prefix, c1, h, w, sp->c2, sp->k, sp->s,
                     1, 1);
        l->c = sp->c2;
        l->h = l->u.conv.shape.h_out;
        l->w = l->u.conv.shape.w_out;
        l->out = l->u.conv.y;
        l->dout = l->u.conv.dy;
        break;
    case LAYER_C2F:
        c2f_build(b, l, prefix, c1, h, w, sp->c2, sp->repeats, sp->shortcut);
        break;
    case LAYER_SPPF:
        sppf_build(b, l, prefix, c1, h, w, sp->c2, sp->k);
        break;
    case LAYER_CLASSIFY:
        classify_build(b, l, prefix, c1, h, w, sp->c2);
        break;
    case LAYER_DETECT: {
        int rc = detect_build(b, l, prefix, sp->c2, err);
        if (rc != 0)
            return rc;
        break;
    }
    case LAYER_UPSAMPLE:
        l->u.factor = sp->factor;
        l->c = c1;
        l->h = h * sp->factor;
        l->w = w * sp->factor;
        size = (size_t)net->max_batch * (size_t)l->c * (size_t)l->h *
               (size_t)l->w;
        l->out = alloc_floats(b, size);
        l->dout = alloc_grad(b, size);
        break;
    case LAYER_CONCAT:
        l->c = 0;
        for (int j = 0; j < l->nfrom; j++) {
            int cj, hj, wj;
            layer_input_shape(net, l->from[j], &cj, &hj, &wj);
            if (hj != h || wj != w)
                return error_set(err, -EINVAL,
                                 "layer %d: Concat inputs differ in size "
                                 "(%dx%d and %dx%d); check the model's "
                                 "from indices",
                                 i, h, w, hj, wj);
            l->c += cj;
        }
        l->h = h;
        l->w = w;
        size = (size_t)net->max_batch * (size_t)l->c * (size_t)l->h *
               (size_t)l->w;
        l->out = alloc_floats(b, size);
        l->dout = alloc_grad(b, size);
        break;
    }
    if (b->failed && b->error.code != 0)
        return error_set(err, b->error.code,
                         "cannot build layer %d (input %dx%dx%d): %s", i, c1, h,
                         w, b->error.msg);
    if (b->failed)
        return error_set(err, -ENOMEM,
                         "cannot build layer %d: out of memory or an "
                         "invalid shape (input %dx%dx%d)",
                         i, c1, h, w);
    return 0;
}

static int build_net(struct net *net, const struct model_spec *spec, int in_h,
                     int in_w, int max_batch, uint64_t seed,
                     const struct kernel_ops *ops, struct kctx *ctx,
                     struct error *err)
{
    struct build b;
    int rc = 0;

    memset(net, 0, sizeof(*net));
    memset(&b, 0, sizeof(b));
    b.net = net;
    rng_seed(&b.rng, seed);
    net->in_c = spec->in_c;
    net->in_h = in_h;
    net->in_w = in_w;
    net->max_batch = max_batch;
    net->batch = max_batch;
    net->classes = spec->classes;
    net->ctx = ctx;
    net->ops = ops;
    snprintf(net->task, sizeof(net->task), "%s", spec->task);
    net->nlayers = spec->nlayers;
    net->layers = calloc((size_t)spec->nlayers, sizeof(*net->layers));
    if (net->layers == NULL)
        return error_set(err, -ENOMEM, "out of memory building the model");

    for (int i = 0; i < spec->nlayers && rc == 0; i++)
        rc = build_layer(&b, i, &spec->layers[i], err);
    if (rc == 0) {
        resolve_pointers(net);
        resolve_bias_pointers(net);
        if (pending_cls.m != NULL) {
            pending_cls.m->weight = &net->params[pending_cls.weight];
            pending_cls.m->bias = &net->params[pending_cls.bias];
            pending_cls.m = NULL;
        }
        net->scratch_a = alloc_floats(&b, net->scratch_size);
        net->scratch_b = alloc_floats(&b, net->scratch_size);
        if (b.failed && b.error.code != 0)
            rc = error_set(err, b.error.code, "%s", b.error.msg);
        else if (b.failed)
            rc = error_set(err, -ENOMEM, "out of memory building the model");
    } else {
        free(pending);
        pending = NULL;
        npending = cap_pending = 0;
        free(pending_bias);
        pending_bias = NULL;
        npending_bias = cap_pending_bias = 0;
        pending_cls.m = NULL;
    }
    free(b.host);
    if (rc != 0) {
        net_free(net);
        return rc;
    }

    /* EMA starts equal to the weights. */
    for (int i = 0; i < net->nparams; i++)
        ops->copy(ctx, net->params[i].ema, net->params[i].data,
                  net->params[i].n);
    for (int i = 0; i < net->nbuffers; i++)
        ops->copy(ctx, net->buffers[i].ema, net->buffers[i].data,
                  net->buffers[i].n);
    rc = net_check(net, err);
    if (rc != 0)
        net_free(net);
    return rc;
}

int net_build(struct net *net, const struct model_spec *spec, int in_h,
              int in_w, int max_batch, uint64_t seed, struct kctx *ctx,
              struct error *err)
{
    return build_net(net, spec, in_h, in_w, max_batch, seed, &kernel_ops_cpu,
                     ctx, err);
}

int net_build_on(struct net *net, const struct model_spec *spec, int in_h,
                 int in_w, int max_batch, uint64_t seed, struct device *dev,
                 struct error *err)
{
    return build_net(net, spec, in_h, in_w, max_batch, seed, dev->ops,
                     &dev->ctx, err);
}

/* ---- Passes ------------------------------------------------------------ */

static const float *layer_input(const struct net *net, int from)
{
    return from < 0 ? net->input : net->layers[from].out;
}

static float *layer_input_grad(const struct net *net, int from)
{
    return from < 0 ? NULL : net->layers[from].dout;
}

static void concat_forward(struct net *net, struct layer *l)
{
    int off = 0, hw = l->h * l->w;

    for (int j = 0; j < l->nfrom; j++) {
        int c, h, w;
        layer_input_shape(net, l->from[j], &c, &h, &w);
        struct channel_slice s = slice(net->batch, hw, l->c, c, off);
        net->ops->channel_copy_in(net->ctx, &s, layer_input(net, l->from[j]),
                                  l->out, 0);
        off += c;
    }
}

static void concat_backward(struct net *net, struct layer *l)
{
    int off = 0, hw = l->h * l->w;

    for (int j = 0; j < l->nfrom; j++) {
        int c, h, w;
        float *dst = layer_input_grad(net, l->from[j]);
        layer_input_shape(net, l->from[j], &c, &h, &w);
        struct channel_slice s = slice(net->batch, hw, l->c, c, off);
        if (dst != NULL)
            net->ops->channel_copy_out(net->ctx, &s, l->dout, dst, 1);
        off += c;
    }
}

void net_forward(struct net *net, const float *x, int n, int train)
{
    net->batch = n;
    net->input = x;
    for (int i = 0; i < net->nlayers; i++) {
        struct layer *l = &net->layers[i];
        const float *in = layer_input(net, l->from[0]);
        switch (l->kind) {
        case LAYER_CONV:
            convbn_forward(net, &l->u.conv, in, train);
            break;
        case LAYER_C2F:
            c2f_forward(net, l, in, train);
            break;
        case LAYER_SPPF:
            sppf_forward(net, l, in, train);
            break;
        case LAYER_CLASSIFY:
            classify_forward(net, l, in, train);
            break;
        case LAYER_DETECT:
            detect_forward(net, l, train);
            break;
        case LAYER_UPSAMPLE:
            net->ops->upsample_nearest_forward(
                net->ctx, n, l->c, l->h / l->u.factor, l->w / l->u.factor,
                l->u.factor, in, l->out);
            break;
        case LAYER_CONCAT:
            concat_forward(net, l);
            break;
        }
    }
}

void net_backward(struct net *net)
{
    for (int i = net->nlayers - 1; i >= 0; i--) {
        struct layer *l = &net->layers[i];
        const float *in = layer_input(net, l->from[0]);
        float *din = layer_input_grad(net, l->from[0]);
        switch (l->kind) {
        case LAYER_CONV:
            convbn_backward(net, &l->u.conv, in, din);
            break;
        case LAYER_C2F:
            c2f_backward(net, l, in, din);
            break;
        case LAYER_SPPF:
            sppf_backward(net, l, in, din);
            break;
        case LAYER_CLASSIFY:
            classify_backward(net, l, in, din);
            break;
        case LAYER_DETECT:
            detect_backward(net, l);
            break;
        case LAYER_UPSAMPLE:
            if (din != NULL)
                net->ops->upsample_nearest_backward(
                    net->ctx, net->batch, l->c, l->h / l->u.factor,
                    l->w / l->u.factor, l->u.factor, l->dout, din);
            break;
        case LAYER_CONCAT:
            concat_backward(net, l);
            break;
        }
    }
}

void net_zero_activation_grads(struct net *net)
{
    for (int i = 0; i < net->ngrad; i++)
        zero_floats(net, net->grad_bufs[i], net->grad_sizes[i]);
}

void net_zero_param_grads(struct net *net)
{
    for (int i = 0; i < net->nparams; i++)
        zero_floats(net, net->params[i].grad, net->params[i].n);
}

void net_zero_grad(struct net *net)
{
    net_zero_activation_grads(net);
    net_zero_param_grads(net);
}

int net_check(struct net *net, struct error *err)
{
    if (net->failure.code != 0) {
        int code = error_set(err, net->failure.code, "%s", net->failure.msg);
        memset(&net->failure, 0, sizeof(net->failure));
        return code;
    }
    return net->ops->status(net->ctx, err);
}

int net_array_to_host(const struct net *net, void *host, const float *array,
                      size_t n, struct error *err)
{
    return net->ops->copy_to_host(net->ctx, host, array, n * sizeof(float),
                                  err);
}

int net_array_from_host(const struct net *net, float *array, const void *host,
                        size_t n, struct error *err)
{
    return net->ops->copy_to_device(net->ctx, array, host, n * sizeof(float),
                                    err);
}

size_t net_param_count(const struct net *net)
{
    size_t n = 0;

    for (int i = 0; i < net->nparams; i++)
        n += net->params[i].n;
    return n;
}

void net_swap_ema(struct net *net)
{
    for (int i = 0; i < net->nparams; i++) {
        float *t = net->params[i].data;
        net->params[i].data = net->params[i].ema;
        net->params[i].ema = t;
    }
    for (int i = 0; i < net->nbuffers; i++) {
        float *t = net->buffers[i].data;
        net->buffers[i].data = net->buffers[i].ema;
        net->buffers[i].ema = t;
    }
}

/* ---- Freeing ------------------------------------------------------------
 * Activation buffers are owned by their modules; gradient buffers are in
 * grad_bufs; parameter arrays by the params. Device arrays go back through
 * release (device memory) and host bookkeeping through free. */

static void release(struct net *net, void *ptr)
{
    if (ptr != NULL)
        net->ops->release(net->ctx, ptr);
}

static void convbn_free(struct net *net, struct convbn *cv)
{
    if (cv->bn_out != cv->conv_out)
        release(net, cv->bn_out);
    release(net, cv->conv_out);
    release(net, cv->y);
    release(net, cv->save_mean);
    release(net, cv->save_invstd);
}

static void layer_free(struct net *net, struct layer *l)
{
    switch (l->kind) {
    case LAYER_CONV:
        convbn_free(net, &l->u.conv);
        break;
    case LAYER_C2F:
        convbn_free(net, &l->u.c2f.cv1);
        convbn_free(net, &l->u.c2f.cv2);
        for (int i = 0; l->u.c2f.m && i < l->u.c2f.n; i++) {
            convbn_free(net, &l->u.c2f.m[i].cv1);
            convbn_free(net, &l->u.c2f.m[i].cv2);
            if (l->u.c2f.m[i].add)
                release(net, l->u.c2f.m[i].y);
        }
        free(l->u.c2f.m);
        release(net, l->u.c2f.b_in);
        release(net, l->u.c2f.cat);
        break;
    case LAYER_SPPF:
        convbn_free(net, &l->u.sppf.cv1);
        convbn_free(net, &l->u.sppf.cv2);
        for (int i = 0; i < 3; i++) {
            release(net, l->u.sppf.p[i]);
            release(net, l->u.sppf.argmax[i]);
        }
        release(net, l->u.sppf.cat);
        break;
    case LAYER_CLASSIFY:
        convbn_free(net, &l->u.classify.conv);
        release(net, l->u.classify.pooled);
        release(net, l->u.classify.logits);
        break;
    case LAYER_DETECT:
        detect_free(net, l->u.detect);
        break;
    case LAYER_UPSAMPLE:
    case LAYER_CONCAT:
        release(net, l->out);
        break;
    }
}

void net_free(struct net *net)
{
    for (int i = 0; net->layers && i < net->nlayers; i++)
        layer_free(net, &net->layers[i]);
    free(net->layers);
    for (int i = 0; i < net->nparams; i++) {
        struct param *p = &net->params[i];
        release(net, p->data);
        release(net, p->grad);
        release(net, p->ema);
        release(net, p->state_a);
        release(net, p->state_b);
    }
    free(net->params);
    for (int i = 0; i < net->nbuffers; i++) {
        release(net, net->buffers[i].data);
        release(net, net->buffers[i].ema);
    }
    free(net->buffers);
    for (int i = 0; i < net->ngrad; i++)
        release(net, net->grad_bufs[i]);
    free(net->grad_bufs);
    free(net->grad_sizes);
    release(net, net->scratch_a);
    release(net, net->scratch_b);
    memset(net, 0, sizeof(*net));
}
