/*
 * Convolution as GEMM: im2col + sgemm, or sgemm on x as it is for 1x1
 * convolutions with stride 1 and no padding ("direct").
 *
 * Work split: the batch is cut into one contiguous range of images per
 * thread ("part"). Each part runs single-threaded sgemm calls on its own
 * images (see cpu.h for the reason). Inside a part the im2col path
 * handles up to `chunk` images at once:
 *
 *   forward   tmp[cout_g, cols] = W_g[cout_g, K] * col[K, cols]
 *   backward  dW_g[cout_g, K] += dY_g[cout_g, cols] * col^T
 *             dcol[K, cols]    = W_g^T * dY_g[cout_g, cols]; col2im into dx
 *
 * with K = cin_g * k * k and cols = chunk * h_out * w_out. The chunk is as
 * large as the column budget allows, because sgemm on 7x7 outputs of one
 * image is too narrow to be fast.
 *
 * Weight gradients are summed per part into private buffers, then added in
 * part order, so results depend only on the thread count.
 */
#include "cpu.h"
#include "im2col.h"

#include <string.h>

/* Column matrix budget per part: 1 Mi floats (4 MiB). Budgets from 64 Ki
 * to 4 Mi floats ran within noise of each other on the benchmark network
 * of bench/conv_cpu_bench.c, measured with OpenBLAS as the GEMM. The
 * budget mainly bounds memory on large images. */
static size_t col_budget_floats = (size_t)1 << 20;

void conv2d_gemm_set_col_budget(size_t floats)
{
    col_budget_floats = floats > 0 ? floats : (size_t)1 << 20;
}

struct gemm_plan {
    int parts;      /* image ranges, one per thread */
    int chunk;      /* images per im2col chunk */
    int cin_g, cout_g;
    int rows;       /* K = cin_g * k * k */
    size_t ohw;     /* h_out * w_out */
    size_t hw;      /* h * w */
    size_t wsize;   /* floats in w */
};

static void plan_init(struct gemm_plan *p, const struct kctx *ctx,
                      const struct conv2d_shape *s)
{
    int threads = cpu_thread_count(ctx);

    p->parts = threads < s->n ? threads : s->n;
    p->cin_g = s->c_in / s->groups;
    p->cout_g = s->c_out / s->groups;
    p->rows = p->cin_g * s->k * s->k;
    p->ohw = (size_t)s->h_out * s->w_out;
    p->hw = (size_t)s->h * s->w;
    p->wsize = (size_t)s->c_out * p->rows;

    /* Images per chunk: as many as the budget allows, at most the part. */
    size_t per_image = (size_t)p->rows * p->ohw;
    size_t fit = col_budget_floats / (per_image > 0 ? per_image : 1);
    int per_part = (s->n + p->parts - 1) / p->parts;
    p->chunk = per_part;
    if (fit < (size_t)per_part)
        p->chunk = fit > 0 ? (int)fit : 1;
}

/* Floats of scratch per part: the column matrix and one [cout_g, cols]
 * matrix, rounded to whole cache lines. */
static size_t part_scratch_floats(const struct gemm_plan *p)
{
    size_t cols = (size_t)p->chunk * p->ohw;
    size_t floats = ((size_t)p->rows + p->cout_g) * cols;

    return cpu_align64(floats * sizeof(float)) / sizeof(float);
}

static void add_bias(const struct conv2d_shape *s, const struct gemm_plan *p,
                     const float *b, int image, int g, float *y)
{
    for (int co = 0; co < p->cout_g; co++) {
        int c = g * p->cout_g + co;
        float *out = y + ((size_t)image * s->c_out + c) * p->ohw;
        for (size_t i = 0; i < p->ohw; i++)
            out[i] += b[c];
    }
}

/* y_n[cout_g, hw] = W_g[cout_g, cin_g] * x_n[cin_g, hw] for one image. */
static void direct_forward(const struct conv2d_shape *s,
                           const struct gemm_plan *p, int image, int g,
                           const float *x, const float *w, float *y)
{
    const float *xg = x + ((size_t)image * s->c_in + (size_t)g * p->cin_g)
                              * p->hw;
    float *yg = y + ((size_t)image * s->c_out + (size_t)g * p->cout_g)
                        * p->ohw;

    cpu_sgemm(0, 0, p->cout_g, (int)p->hw, p->cin_g, 1.0f,
              w + (size_t)g * p->cout_g * p->cin_g, p->cin_g, xg, (int)p->hw,
              0.0f, yg, (int)p->hw);
}

/* Forward of images n0 .. n0 + nb - 1, group g, through im2col. */
static void im2col_forward(const struct conv2d_shape *s,
                           const struct gemm_plan *p, int n0, int nb, int g,
                           const float *x, const float *w, float *y,
                           float *scratch)
{
    size_t cols = (size_t)nb * p->ohw;
    float *col = scratch;
    float *tmp = scratch + (size_t)p->rows * cols;

    conv2d_im2col(s, x, n0, nb, g, col);
    cpu_sgemm(0, 0, p->cout_g, (int)cols, p->rows, 1.0f,
              w + (size_t)g * p->cout_g * p->rows, p->rows, col, (int)cols,
              0.0f, tmp, (int)cols);

    /* tmp[co, j * ohw + i] -> y[n0 + j, g * cout_g + co, i] */
    for (int j = 0; j < nb; j++) {
        for (int co = 0; co < p->cout_g; co++) {
            size_t c = (size_t)(n0 + j) * s->c_out
                       + (size_t)g * p->cout_g + co;
            memcpy(y + c * p->ohw, tmp + co * cols + j * p->ohw,
                   sizeof(float) * p->ohw);
        }
    }
}

static void forward_part(const struct conv2d_shape *s,
                         const struct gemm_plan *p, int direct, int n0,
                         int n1, const float *x, const float *w,
                         const float *b, float *y, float *scratch)
{
    for (int c0 = n0; c0 < n1; c0 += p->chunk) {
        int nb = n1 - c0 < p->chunk ? n1 - c0 : p->chunk;

        for (int g = 0; g < s->groups; g++) {
            if (direct) {
                for (int i = c0; i < c0 + nb; i++)
                    direct_forward(s, p, i, g, x, w, y);
            } else {
                im2col_forward(s, p, c0, nb, g, x, w, y, scratch);
            }
            if (b != NULL) {
                for (int i = c0; i < c0 + nb; i++)
                    add_bias(s, p, b, i, g, y);
            }
        }
    }
}

void conv2d_gemm_forward(struct kctx *ctx, const struct conv2d_shape *s,
                         int direct, const float *x, const float *w,
                         const float *b, float *y)
{
    struct gemm_plan p;
    plan_init(&p, ctx, s);

    size_t per_part = direct ? 0 : part_scratch_floats(&p);
    float *ws = NULL;
    if (per_part > 0)
        ws = cpu_kctx_workspace(ctx, per_part * p.parts * sizeof(float));

#pragma omp parallel for schedule(static, 1) num_threads(p.parts)
    for (int part = 0; part < p.parts; part++) {
        int n0 = (int)cpu_split_begin((size_t)s->n, p.parts, part);
        int n1 = (int)cpu_split_begin((size_t)s->n, p.parts, part + 1);
        float *scratch = ws != NULL ? ws + per_part * part : NULL;

        forward_part(s, &p, direct, n0, n1, x, w, b, y, scratch);
    }
}

/* Backward of one image and group for the direct path:
 *   dW_g[cout_g, cin_g] += dy_n[cout_g, hw] * x_n^T
 *   dx_n[cin_g, hw]     += W_g^T * dy_n */
static void direct_backward(const struct conv2d_shape *s,
                            const struct gemm_plan *p, int image, int g,
                            const float *x, const float *w, const float *dy,
                            float *dx, float *dwg)
{
    size_t xoff = ((size_t)image * s->c_in + (size_t)g * p->cin_g) * p->hw;
    size_t yoff = ((size_t)image * s->c_out + (size_t)g * p->cout_g)
                  * p->ohw;
    const float *wg = w + (size_t)g * p->cout_g * p->cin_g;
    int hw = (int)p->hw;

    if (dwg != NULL) {
        cpu_sgemm(0, 1, p->cout_g, p->cin_g, hw, 1.0f, dy + yoff, hw, x + xoff,
                  hw, 1.0f, dwg, p->cin_g);
    }
    if (dx != NULL) {
        cpu_sgemm(1, 0, p->cin_g, hw, p->cout_g, 1.0f, wg, p->cin_g, dy + yoff,
                  hw, 1.0f, dx + xoff, hw);
    }
}

/* Backward of images n0 .. n0 + nb - 1, group g, through im2col. */
static void im2col_backward(const struct conv2d_shape *s,
                            const struct gemm_plan *p, int n0, int nb, int g,
                            const float *x, const float *w, const float *dy,
                            float *dx, float *dwg, float *scratch)
{
    size_t cols = (size_t)nb * p->ohw;
    float *col = scratch;
    float *dyg = scratch + (size_t)p->rows * cols;
    const float *wg = w + (size_t)g * p->cout_g * p->rows;

    /* dy[n0 + j, g * cout_g + co, i] -> dyg[co, j * ohw + i] */
    for (int j = 0; j < nb; j++) {
        for (int co = 0; co < p->cout_g; co++) {
            size_t c = (size_t)(n0 + j) * s->c_out
                       + (size_t)g * p->cout_g + co;
            memcpy(dyg + co * cols + j * p->ohw, dy + c * p->ohw,
                   sizeof(float) * p->ohw);
        }
    }

    if (dwg != NULL) {
        conv2d_im2col(s, x, n0, nb, g, col);
        cpu_sgemm(0, 1, p->cout_g, p->rows, (int)cols, 1.0f, dyg, (int)cols,
                  col, (int)cols, 1.0f, dwg, p->rows);
    }

    /* The column buffer is free again: it receives dcol. */
    if (dx != NULL) {
        cpu_sgemm(1, 0, p->rows, (int)cols, p->cout_g, 1.0f, wg, p->rows, dyg,
                  (int)cols, 0.0f, col, (int)cols);
        conv2d_col2im_add(s, col, n0, nb, g, dx);
    }
}

static void backward_part(const struct conv2d_shape *s,
                          const struct gemm_plan *p, int direct, int n0,
                          int n1, const float *x, const float *w,
                          const float *dy, float *dx, float *dw_acc,
                          float *scratch)
{
    for (int c0 = n0; c0 < n1; c0 += p->chunk) {
        int nb = n1 - c0 < p->chunk ? n1 - c0 : p->chunk;

        for (int g = 0; g < s->groups; g++) {
            float *dwg = NULL;
            if (dw_acc != NULL)
                dwg = dw_acc + (size_t)g * p->cout_g * p->rows;

            if (direct) {
                for (int i = c0; i < c0 + nb; i++)
                    direct_backward(s, p, i, g, x, w, dy, dx, dwg);
            } else {
                im2col_backward(s, p, c0, nb, g, x, w, dy, dx, dwg,
                                scratch);
            }
        }
    }
}

/* dw[i] += sum over parts of partial[part][i], in part order. */
static void reduce_weight_grads(const struct gemm_plan *p,
                                const float *partial, size_t stride,
                                float *dw)
{
#pragma omp parallel for schedule(static) num_threads(p->parts)
    for (size_t i = 0; i < p->wsize; i++) {
        float sum = 0.0f;
        for (int part = 0; part < p->parts; part++)
            sum += partial[stride * part + i];
        dw[i] += sum;
    }
}

void conv2d_gemm_backward(struct kctx *ctx, const struct conv2d_shape *s,
                          int direct, const float *x, const float *w,
                          const float *dy, float *dx, float *dw, float *db)
{
    struct gemm_plan p;
    plan_init(&p, ctx, s);

    if (db != NULL)
        conv2d_bias_backward(ctx, s, dy, db);
    if (dx == NULL && dw == NULL)
        return;

    /* One part accumulates straight into dw; several need private sums. */
    int private_dw = dw != NULL && p.parts > 1;
    size_t col_floats = direct ? 0 : part_scratch_floats(&p);
    size_t dw_floats = 0;
    if (private_dw)
        dw_floats = cpu_align64(p.wsize * sizeof(float)) / sizeof(float);
    size_t per_part = col_floats + dw_floats;

    float *ws = NULL;
    if (per_part > 0)
        ws = cpu_kctx_workspace(ctx, per_part * p.parts * sizeof(float));

#pragma omp parallel for schedule(static, 1) num_threads(p.parts)
    for (int part = 0; part < p.parts; part++) {
        int n0 = (int)cpu_split_begin((size_t)s->n, p.parts, part);
        int n1 = (int)cpu_split_begin((size_t)s->n, p.parts, part + 1);
        float *scratch = ws != NULL ? ws + per_part * part : NULL;
        float *dw_acc = dw;

        if (private_dw) {
            dw_acc = scratch + col_floats;
            memset(dw_acc, 0, sizeof(float) * p.wsize);
        }
        backward_part(s, &p, direct, n0, n1, x, w, dy, dx, dw_acc,
                      scratch);
    }

    if (private_dw)
        reduce_weight_grads(&p, ws + col_floats, per_part, dw);
}

void conv2d_bias_backward(struct kctx *ctx, const struct conv2d_shape *s,
                          const float *dy, float *db)
{
    int threads = cpu_thread_count(ctx);
    size_t ohw = (size_t)s->h_out * s->w_out;

    /* Each channel sums in double: a batch of 64 at 80x80 adds 409,600
     * values, too many for a float accumulator to keep 1e-6 accuracy. */
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int c = 0; c < s->c_out; c++) {
        double sum = 0.0;
        for (int n = 0; n < s->n; n++) {
            const float *plane = dy + ((size_t)n * s->c_out + c) * ohw;
            for (size_t i = 0; i < ohw; i++)
                sum += plane[i];
        }
        db[c] += (float)sum;
    }
}
