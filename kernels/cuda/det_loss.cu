/*
 * The YOLOv8 detection loss on CUDA, with the formulas, tie rules and
 * constants of the CPU kernel (kernels/cpu/det_loss.c, which describes
 * them): pred and dpred in device memory, gt and the result in host
 * memory.
 *
 * One kernel per stage:
 *
 * 1. assign_kernel, one block per image. The threads decode the image's
 *    boxes, then take the image's ground-truth boxes one after another:
 *    they score every anchor and pick the top k by repeated block-wide
 *    argmax (ties: lower anchor index, the order of the CPU's scan).
 *    Thread 0 then gives each listed anchor its box, resolves anchors
 *    that several lists name, and computes the soft targets, because the
 *    lists are short (topk entries per box).
 * 2. The normaliser, max(sum of targets, 1), goes back to the host, which
 *    needs it for the gradient scales.
 * 3. BCE over every anchor and class, as a flat sum whose terms also write
 *    the class gradient.
 * 4. box_dfl_kernel, one thread per anchor: the CIoU and DFL terms of a
 *    positive and its distribution gradient (zeros for a negative anchor).
 *
 * Every sum uses the fixed-order reductions of reduce.cuh, without
 * atomics, so a run repeats bit for bit. expf, atanf and powf are not
 * correctly rounded on either side, so values differ from the CPU's by a
 * few float ulp. The assignment can therefore differ only where two
 * metrics or CIoUs are within that of each other.
 *
 * All scratch (the boxes, targets, per-anchor terms and partial sums)
 * comes from one workspace request, because each request may move the
 * buffer.
 */
#include <errno.h>
#include <math.h>

#include "internal.h"
#include "reduce.cuh"

#include "cpu/det_loss.h"
#include "detect.h"

#define ASSIGN_EPS 1e-9f
#define DFL_MARGIN 0.01
#define CIOU_EPS_F 1e-7f
#define CIOU_EPS 1e-7

/* An anchor kept by the top-k selection of a ground-truth box. */
struct candidate {
    int anchor; /* -1: unused entry */
    float metric;
    float iou;
};

/* Device scratch, carved from one workspace block. */
struct det_scratch {
    struct det_gt *gt;          /* [ngt] copy of the host boxes */
    struct det_target *targets; /* [batch, anchors] */
    float *box;                 /* [batch, anchors, 4] decoded boxes, pixels */
    float *claim_iou;           /* [batch, anchors] CIoU of the owner */
    float *claim_metric;        /* [batch, anchors] its alignment metric */
    int *claims;                /* [batch, anchors] top-k lists naming it */
    float *best;                /* [ngt, 2] best metric and CIoU of a box */
    float *score_tmp;           /* [batch, anchors] metric of one box, -1
                                   outside it */
    float *iou_tmp;             /* [batch, anchors] */
    struct candidate *cand;     /* [ngt, topk] */
    double *box_term;           /* [batch, anchors] */
    double *dfl_term;           /* [batch, anchors] */
    double *partials;           /* REDUCE_BLOCKS_MAX */
    double *totals;             /* 5: targets, cls, box, dfl, positives */
};

/* ---- Shared device helpers ---------------------------------------------- */

/* Channels per anchor, as det_outputs (host code) computes them. */
static __device__ __forceinline__ size_t outputs(const struct det_layout &l)
{
    return (size_t)(4 * l.reg_max + l.nc);
}

/* First gt index of image (gt sorted by image): a lower bound. */
static __device__ int gt_first(const struct det_gt *gt, int ngt, int image)
{
    int lo = 0, hi = ngt;

    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (gt[mid].image < image)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static __device__ int anchor_point(const struct det_layout &l, int a, float *x,
                                   float *y)
{
    int lv = l.nlevels - 1;

    while (lv > 0 && a < l.first[lv])
        lv--;
    int cell = a - l.first[lv];
    *x = (float)(cell % l.w[lv]) + 0.5f;
    *y = (float)(cell / l.w[lv]) + 0.5f;
    return lv;
}

static __device__ float sigmoid_f(float x)
{
    float e = expf(-fabsf(x));
    return x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

/* det_ciou of kernels/cpu/det_box.c, in float. */
static __device__ float ciou_f(const float *a, const float *b)
{
    float w1 = a[2] - a[0], h1 = a[3] - a[1] + CIOU_EPS_F;
    float w2 = b[2] - b[0], h2 = b[3] - b[1] + CIOU_EPS_F;
    float iw = fminf(a[2], b[2]) - fmaxf(a[0], b[0]);
    float ih = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    float inter = (iw > 0 ? iw : 0) * (ih > 0 ? ih : 0);
    float uni = w1 * h1 + w2 * h2 - inter + CIOU_EPS_F;
    float iou = inter / uni;
    float cw = fmaxf(a[2], b[2]) - fminf(a[0], b[0]);
    float ch = fmaxf(a[3], b[3]) - fminf(a[1], b[1]);
    float c2 = cw * cw + ch * ch + CIOU_EPS_F;
    float dx = b[0] + b[2] - a[0] - a[2];
    float dy = b[1] + b[3] - a[1] - a[3];
    float rho2 = (dx * dx + dy * dy) / 4.0f;
    float d = atanf(w2 / h2) - atanf(w1 / h1);
    float v = 4.0f / (float)(M_PI * M_PI) * d * d;
    float alpha = v / (v - iou + (1.0f + CIOU_EPS_F));

    return iou - (rho2 / c2 + v * alpha);
}

/* ---- Assigner ------------------------------------------------------------ */

/* Decode anchor a's box in pixels into b[4]. */
static __device__ void decode_box(const struct det_layout &l, const float *p,
                                  int a, float *b)
{
    size_t anchors = (size_t)l.anchors;
    float ax, ay, d[4];
    float s = (float)l.stride[anchor_point(l, a, &ax, &ay)];

    for (int side = 0; side < 4; side++) {
        const float *z = p + (size_t)side * l.reg_max * anchors + a;
        float max = z[0];
        for (int k = 1; k < l.reg_max; k++)
            max = fmaxf(max, z[k * anchors]);

        float sum = 0.0f, expect = 0.0f;
        for (int k = 0; k < l.reg_max; k++) {
            float e = expf(z[k * anchors] - max);
            sum += e;
            expect += (float)k * e;
        }
        d[side] = expect / sum;
    }
    b[0] = (ax - d[0]) * s;
    b[1] = (ay - d[1]) * s;
    b[2] = (ax + d[2]) * s;
    b[3] = (ay + d[3]) * s;
}

/* Block-wide argmax of score_tmp (ties: lower index; entries < 0 are not
 * candidates). Returns the anchor, or -1, in every thread. */
static __device__ int block_argmax(const float *score, int anchors)
{
    __shared__ float best_score[CUDA_BLOCK];
    __shared__ int best_index[CUDA_BLOCK];
    float bs = -1.0f;
    int bi = -1;

    for (int a = threadIdx.x; a < anchors; a += blockDim.x) {
        float s = score[a];
        if (s >= 0.0f && (bi < 0 || s > bs)) {
            bs = s;
            bi = a;
        }
    }
    best_score[threadIdx.x] = bs;
    best_index[threadIdx.x] = bi;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) {
            float os = best_score[threadIdx.x + half];
            int oi = best_index[threadIdx.x + half];
            int mine = best_index[threadIdx.x];
            bool better =
                oi >= 0 && (mine < 0 || os > best_score[threadIdx.x] ||
                            (os == best_score[threadIdx.x] && oi < mine));
            if (better) {
                best_score[threadIdx.x] = os;
                best_index[threadIdx.x] = oi;
            }
        }
        __syncthreads();
    }
    int winner = best_index[0];
    __syncthreads(); /* the next call overwrites the shared arrays */
    return winner;
}

/* Whether the point (ax, ay) in pixels lies inside box g by more than
 * ASSIGN_EPS, the candidate test. */
static __device__ bool point_in_box(float ax, float ay, const struct det_gt &g)
{
    float margin =
        fminf(fminf(ax - g.x1, ay - g.y1), fminf(g.x2 - ax, g.y2 - ay));

    return margin > ASSIGN_EPS;
}

/* Anchor a's point in pixels. */
static __device__ void point_px(const struct det_layout &l, int a, float *x,
                                float *y)
{
    float s = (float)l.stride[anchor_point(l, a, x, y)];

    *x *= s;
    *y *= s;
}

/* Alignment metric of anchor a (decoded box in box) for box g; the CIoU,
 * clamped at 0, goes to *iou. */
static __device__ float align_metric(const struct det_layout &l,
                                     const struct det_loss_config &cfg,
                                     const float *p, const float *box,
                                     const struct det_gt &g, int a, float *iou)
{
    size_t logit = (size_t)(4 * l.reg_max + g.cls) * l.anchors + a;
    float gbox[4] = {g.x1, g.y1, g.x2, g.y2};

    *iou = fmaxf(ciou_f(gbox, box + (size_t)a * 4), 0.0f);
    return powf(sigmoid_f(p[logit]), cfg.alpha) * powf(*iou, cfg.beta);
}

/* Score every anchor of the image against box g: the alignment metric for
 * anchors whose point lies strictly inside g, -1 for the others. */
static __device__ void score_anchors(const struct det_layout &l,
                                     const struct det_loss_config &cfg,
                                     const float *p, const float *box,
                                     const struct det_gt &g, float *score,
                                     float *iou)
{
    for (int a = threadIdx.x; a < l.anchors; a += blockDim.x) {
        float ax, ay;

        point_px(l, a, &ax, &ay);
        if (point_in_box(ax, ay, g))
            score[a] = align_metric(l, cfg, p, box, g, a, &iou[a]);
        else
            score[a] = -1.0f;
    }
}

/* Per-image pointers of the assigner. gt is the batch's boxes, of which
 * the image has g0 .. g1 - 1. */
struct image_assign {
    const float *p;
    const struct det_gt *gt;
    int g0, g1;
    float *box, *claim_iou, *claim_metric;
    int *claims;
    struct det_target *t;
};

/* Give anchor a, named by several top-k lists, to the box with the highest
 * CIoU among all boxes of the image that contain its point (ties: lower
 * box index), as resolve_contested of the CPU kernel does. */
static __device__ void resolve_contested(const struct det_layout &l,
                                         const struct det_loss_config &cfg,
                                         const struct image_assign &img, int a)
{
    float ax, ay, best_iou = 0.0f;
    int winner = -1;

    point_px(l, a, &ax, &ay);
    for (int j = img.g0; j < img.g1; j++) {
        if (!point_in_box(ax, ay, img.gt[j]))
            continue;

        float iou;
        float metric = align_metric(l, cfg, img.p, img.box, img.gt[j], a, &iou);
        if (winner < 0 || iou > best_iou) {
            winner = j;
            best_iou = iou;
            img.claim_metric[a] = metric;
        }
    }
    img.t[a].gt = winner;
    img.claim_iou[a] = best_iou;
}

/* Claims, contested anchors and soft targets of one image, after the
 * top-k lists; run by one thread, because the lists are short. */
static __device__ void finish_image(const struct det_layout &l,
                                    const struct det_loss_config &cfg,
                                    const struct image_assign &img,
                                    const struct candidate *cand, float *best)
{
    size_t first = (size_t)img.g0 * cfg.topk;
    size_t end = (size_t)img.g1 * cfg.topk;

    /* An anchor named by one list goes to that box. */
    for (size_t e = first; e < end; e++) {
        int a = cand[e].anchor;
        if (a >= 0 && img.claims[a]++ == 0) {
            img.t[a].gt = (int)(e / cfg.topk);
            img.claim_iou[a] = cand[e].iou;
            img.claim_metric[a] = cand[e].metric;
        }
    }
    for (size_t e = first; e < end; e++) {
        int a = cand[e].anchor;
        if (a >= 0 && img.claims[a] > 1) {
            resolve_contested(l, cfg, img, a);
            img.claims[a] = 1;
        }
    }

    /* Soft targets over each box's final positives; every positive is in
     * some list. */
    for (int j = img.g0; j < img.g1; j++) {
        best[2 * j] = 0.0f;
        best[2 * j + 1] = 0.0f;
    }
    for (size_t e = first; e < end; e++) {
        int a = cand[e].anchor;
        if (a < 0)
            continue;
        float *b = best + 2 * img.t[a].gt;
        b[0] = fmaxf(b[0], img.claim_metric[a]);
        b[1] = fmaxf(b[1], img.claim_iou[a]);
    }
    for (size_t e = first; e < end; e++) {
        int a = cand[e].anchor;
        if (a < 0)
            continue;
        const float *b = best + 2 * img.t[a].gt;
        img.t[a].score = img.claim_metric[a] * b[1] / (b[0] + ASSIGN_EPS);
    }
}

static __global__ void assign_kernel(struct det_layout l,
                                     struct det_loss_config cfg,
                                     const float *pred, int ngt,
                                     struct det_scratch s)
{
    const int b = blockIdx.x;
    const size_t off = (size_t)b * l.anchors;
    struct image_assign img;

    img.p = pred + off * outputs(l);
    img.gt = s.gt;
    img.g0 = gt_first(s.gt, ngt, b);
    img.g1 = gt_first(s.gt, ngt, b + 1);
    img.box = s.box + off * 4;
    img.claim_iou = s.claim_iou + off;
    img.claim_metric = s.claim_metric + off;
    img.claims = s.claims + off;
    img.t = s.targets + off;
    float *score = s.score_tmp + off;
    float *iou = s.iou_tmp + off;

    for (int a = threadIdx.x; a < l.anchors; a += blockDim.x) {
        img.t[a].gt = -1;
        img.t[a].score = 0.0f;
        img.claims[a] = 0;
        if (img.g1 > img.g0)
            decode_box(l, img.p, a, img.box + (size_t)a * 4);
    }
    __syncthreads();

    /* Top k of each box by repeated argmax. */
    for (int j = img.g0; j < img.g1; j++) {
        struct candidate *list = s.cand + (size_t)j * cfg.topk;

        score_anchors(l, cfg, img.p, img.box, s.gt[j], score, iou);
        __syncthreads();
        for (int i = 0; i < cfg.topk; i++) {
            int a = block_argmax(score, l.anchors);
            if (threadIdx.x == 0) {
                list[i].anchor = a;
                if (a >= 0) {
                    list[i].metric = score[a];
                    list[i].iou = iou[a];
                    score[a] = -1.0f;
                }
            }
            __syncthreads();
        }
    }

    if (threadIdx.x == 0)
        finish_image(l, cfg, img, s.cand, s.best);
}

/* ---- Loss terms --------------------------------------------------------- */

/* Soft target of each positive, 0 for negatives. */
struct target_terms {
    const struct det_target *t;

    __device__ double operator()(size_t i) const
    {
        return t[i].gt >= 0 ? (double)t[i].score : 0.0;
    }
};

struct positive_terms {
    const struct det_target *t;

    __device__ double operator()(size_t i) const
    {
        return t[i].gt >= 0 ? 1.0 : 0.0;
    }
};

struct double_terms {
    const double *x;

    __device__ double operator()(size_t i) const
    {
        return x[i];
    }
};

/* BCE with logits of item i = (image, class, anchor) of the class
 * channels; writes the item's gradient when dpred is not NULL. */
struct bce_terms {
    struct det_layout l;
    const float *pred;
    const struct det_gt *gt;
    const struct det_target *t;
    float scale;
    float *dpred;

    __device__ double operator()(size_t i) const
    {
        size_t anchors = (size_t)l.anchors;
        size_t per_image = (size_t)l.nc * anchors;
        size_t b = i / per_image, rem = i % per_image;
        int c = (int)(rem / anchors);
        size_t a = rem % anchors;
        size_t at = (b * outputs(l) + 4 * l.reg_max + c) * anchors + a;
        const struct det_target &ta = t[b * anchors + a];
        float target = ta.gt >= 0 && gt[ta.gt].cls == c ? ta.score : 0.0f;
        float x = pred[at];
        float e = expf(-fabsf(x));

        if (dpred != NULL) {
            float sig = x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
            dpred[at] = (sig - target) * scale;
        }
        return (double)((x > 0 ? x : 0) - x * target + log1pf(e));
    }
};

/* CIoU of p against t and its gradient with respect to p, alpha held
 * constant: ciou_grad of the CPU kernel. */
static __device__ double ciou_grad(const double *p, const double *t, double *dp)
{
    double w1 = p[2] - p[0], h1 = p[3] - p[1] + CIOU_EPS;
    double w2 = t[2] - t[0], h2 = t[3] - t[1] + CIOU_EPS;
    double iw = fmin(p[2], t[2]) - fmax(p[0], t[0]);
    double ih = fmin(p[3], t[3]) - fmax(p[1], t[1]);
    double iwc = iw > 0 ? iw : 0, ihc = ih > 0 ? ih : 0;
    double inter = iwc * ihc;
    double uni = w1 * h1 + w2 * h2 - inter + CIOU_EPS;
    double iou = inter / uni;
    double d_inter[4] = {0, 0, 0, 0};
    if (iw > 0 && ih > 0) {
        d_inter[0] = p[0] > t[0] ? -ihc : 0;
        d_inter[1] = p[1] > t[1] ? -iwc : 0;
        d_inter[2] = p[2] < t[2] ? ihc : 0;
        d_inter[3] = p[3] < t[3] ? iwc : 0;
    }
    double d_area[4] = {-h1, -w1, h1, w1};

    double cw = fmax(p[2], t[2]) - fmin(p[0], t[0]);
    double ch = fmax(p[3], t[3]) - fmin(p[1], t[1]);
    double c2 = cw * cw + ch * ch + CIOU_EPS;
    double d_c2[4] = {p[0] < t[0] ? -2 * cw : 0, p[1] < t[1] ? -2 * ch : 0,
                      p[2] > t[2] ? 2 * cw : 0, p[3] > t[3] ? 2 * ch : 0};
    double dx = t[0] + t[2] - p[0] - p[2];
    double dy = t[1] + t[3] - p[1] - p[3];
    double rho2 = (dx * dx + dy * dy) / 4;
    double d_rho2[4] = {-dx / 2, -dy / 2, -dx / 2, -dy / 2};

    double k = 4.0 / (M_PI * M_PI);
    double da = atan(w2 / h2) - atan(w1 / h1);
    double v = k * da * da;
    double alpha = v / (v - iou + (1.0 + CIOU_EPS));
    double r2 = w1 * w1 + h1 * h1;
    double dv_dw = -2 * k * da * h1 / r2, dv_dh = 2 * k * da * w1 / r2;
    double d_v[4] = {-dv_dw, -dv_dh, dv_dw, dv_dh};

    for (int i = 0; i < 4; i++) {
        double d_uni = d_area[i] - d_inter[i];
        double d_iou = (d_inter[i] * uni - inter * d_uni) / (uni * uni);
        double d_dist = (d_rho2[i] * c2 - rho2 * d_c2[i]) / (c2 * c2);
        dp[i] = d_iou - d_dist - alpha * d_v[i];
    }
    return iou - (rho2 / c2 + v * alpha);
}

/* One thread per (image, anchor): box and DFL terms of a positive and its
 * distribution gradient; a negative gets zeros. */
static __global__ void
box_dfl_kernel(struct det_layout l, int batch, const float *pred,
               const struct det_gt *gt, const struct det_target *targets,
               double box_scale, double dfl_scale, float *dpred,
               double *box_term, double *dfl_term)
{
    const size_t anchors = (size_t)l.anchors;
    const size_t n = (size_t)batch * anchors;
    const int reg_max = l.reg_max;

    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t b = i / anchors;
        int a = (int)(i % anchors);
        size_t base = b * outputs(l) * anchors + a;
        const float *p = pred + base;
        float *dp = dpred != NULL ? dpred + base : NULL;
        struct det_target t = targets[i];

        if (t.gt < 0) {
            box_term[i] = 0.0;
            dfl_term[i] = 0.0;
            if (dp != NULL)
                for (int c = 0; c < 4 * reg_max; c++)
                    dp[c * anchors] = 0.0f;
            continue;
        }

        double prob[4][DET_REG_MAX], dist[4], lse[4];
        float axf, ayf;
        double s = (double)l.stride[anchor_point(l, a, &axf, &ayf)];
        double ax = axf, ay = ayf, w = t.score;
        for (int side = 0; side < 4; side++) {
            const float *z = p + (size_t)side * reg_max * anchors;
            double max = z[0], sum = 0.0, expect = 0.0;

            for (int k = 1; k < reg_max; k++)
                max = fmax(max, (double)z[k * anchors]);
            for (int k = 0; k < reg_max; k++) {
                prob[side][k] = exp((double)z[k * anchors] - max);
                sum += prob[side][k];
            }
            for (int k = 0; k < reg_max; k++) {
                prob[side][k] /= sum;
                expect += k * prob[side][k];
            }
            dist[side] = expect;
            lse[side] = max + log(sum);
        }

        const struct det_gt &g = gt[t.gt];
        float sf = (float)s;
        double pb[4] = {ax - dist[0], ay - dist[1], ax + dist[2], ay + dist[3]};
        double tb[4] = {(double)(g.x1 / sf), (double)(g.y1 / sf),
                        (double)(g.x2 / sf), (double)(g.y2 / sf)};
        double dc[4];
        double ciou = ciou_grad(pb, tb, dc);
        box_term[i] = (1.0 - ciou) * w;
        double d_dist[4] = {dc[0] * w, dc[1] * w, -dc[2] * w, -dc[3] * w};

        double td[4] = {ax - tb[0], ay - tb[1], tb[2] - ax, tb[3] - ay};
        double hi = (double)(reg_max - 1) - DFL_MARGIN;
        double dfl = 0.0;
        for (int side = 0; side < 4; side++) {
            double target = fmin(fmax(td[side], 0.0), hi);
            int left = (int)target;
            double wl = left + 1 - target, wr = target - left;
            const float *z = p + (size_t)side * reg_max * anchors;

            dfl += wl * (lse[side] - z[left * anchors]) +
                   wr * (lse[side] - z[(left + 1) * anchors]);
            if (dp == NULL)
                continue;

            float *dz = dp + (size_t)side * reg_max * anchors;
            double g_dfl = dfl_scale * w / 4;
            double g_box = box_scale * d_dist[side];
            for (int k = 0; k < reg_max; k++) {
                double onehot = (k == left ? wl : 0) + (k == left + 1 ? wr : 0);
                double d = g_box * prob[side][k] * (k - dist[side]) +
                           g_dfl * (prob[side][k] - onehot);
                dz[k * anchors] = (float)d;
            }
        }
        dfl_term[i] = dfl / 4 * w;
    }
}

/* ---- Host side ---------------------------------------------------------- */

static size_t align256(size_t bytes)
{
    return (bytes + 255) & ~(size_t)255;
}

/* Block count and items per block of a flat sum over n items, as
 * flat_sum in reduce.cuh plans them. */
static void flat_plan(size_t n, size_t *blocks, size_t *per_block)
{
    size_t b = (n + REDUCE_CHUNK - 1) / REDUCE_CHUNK;

    if (b > REDUCE_BLOCKS_MAX)
        b = REDUCE_BLOCKS_MAX;
    if (b < 1)
        b = 1;
    size_t per = (n + b - 1) / b;
    if (per < 1)
        per = 1;
    *blocks = n > 0 ? (n + per - 1) / per : 1;
    *per_block = per;
}

/* Queue a flat sum of terms over n items into *total (device memory). */
template <class Terms>
static int queue_sum(struct cuda_state *st, Terms terms, size_t n,
                     double *partials, double *total)
{
    size_t blocks, per_block;

    flat_plan(n, &blocks, &per_block);
    flat_partials_kernel<<<(unsigned)blocks, CUDA_BLOCK, 0, st->stream>>>(
        terms, n, per_block, partials);
    if (LAUNCH_FAILED(st))
        return 1;
    flat_total_kernel<<<1, CUDA_BLOCK, 0, st->stream>>>(partials, (int)blocks,
                                                        total);
    return LAUNCH_FAILED(st);
}

/* Carve the scratch out of block (NULL: only measure). Returns its size. */
static size_t carve(void *block, const struct det_layout *l, int batch, int ngt,
                    int topk, struct det_scratch *s)
{
    size_t n = (size_t)batch * l->anchors;
    size_t boxes = (size_t)(ngt > 0 ? ngt : 1);
    size_t sizes[14] = {
        sizeof(struct det_gt) * boxes,
        sizeof(struct det_target) * n,
        sizeof(float) * n * 4,
        sizeof(float) * n,
        sizeof(float) * n,
        sizeof(int) * n,
        sizeof(float) * 2 * boxes,
        sizeof(float) * n,
        sizeof(float) * n,
        sizeof(struct candidate) * boxes * topk,
        sizeof(double) * n,
        sizeof(double) * n,
        sizeof(double) * REDUCE_BLOCKS_MAX,
        sizeof(double) * 5,
    };
    void **slots[14] = {
        (void **)&s->gt,           (void **)&s->targets,
        (void **)&s->box,          (void **)&s->claim_iou,
        (void **)&s->claim_metric, (void **)&s->claims,
        (void **)&s->best,         (void **)&s->score_tmp,
        (void **)&s->iou_tmp,      (void **)&s->cand,
        (void **)&s->box_term,     (void **)&s->dfl_term,
        (void **)&s->partials,     (void **)&s->totals,
    };
    size_t at = 0;

    for (int i = 0; i < 14; i++) {
        if (block != NULL)
            *slots[i] = (char *)block + at;
        at += align256(sizes[i]);
    }
    return at;
}

/* Read `count` doubles of device totals, waiting for the stream. */
static int download(struct cuda_state *st, double *dst, const double *src,
                    int count)
{
    if (CUDA_FAILED(st, cudaMemcpyAsync(dst, src, sizeof(double) * count,
                                        cudaMemcpyDeviceToHost, st->stream)))
        return 1;
    return CUDA_FAILED(st, cudaStreamSynchronize(st->stream));
}

/* Queue the class, box and DFL sums with the gradient, after the
 * normaliser is known. */
static int queue_loss(struct cuda_state *st, const struct det_layout *l,
                      const struct det_loss_config *cfg, int batch,
                      const float *pred, float *dpred, double common,
                      const struct det_scratch *s)
{
    size_t n = (size_t)batch * l->anchors;
    struct bce_terms bce = {
        *l, pred, s->gt, s->targets, (float)(cfg->cls * common), dpred};

    if (queue_sum(st, bce, n * l->nc, s->partials, s->totals + 1))
        return 1;
    box_dfl_kernel<<<grid_1d(n), CUDA_BLOCK, 0, st->stream>>>(
        *l, batch, pred, s->gt, s->targets, cfg->box * common,
        cfg->dfl * common, dpred, s->box_term, s->dfl_term);
    if (LAUNCH_FAILED(st))
        return 1;
    if (queue_sum(st, double_terms{s->box_term}, n, s->partials,
                  s->totals + 2) ||
        queue_sum(st, double_terms{s->dfl_term}, n, s->partials, s->totals + 3))
        return 1;
    return queue_sum(st, positive_terms{s->targets}, n, s->partials,
                     s->totals + 4);
}

/* Besides the codes of kernels/detect.h, returns -EINVAL for the invalid
 * arguments that det_loss_check lists, and -EIO after a CUDA failure,
 * whose details cuda_kctx_status then returns. */
extern "C" int cuda_det_loss_forward_backward(struct kctx *ctx,
                                              const struct det_layout *layout,
                                              const struct det_loss_config *cfg,
                                              int batch, const float *pred,
                                              const struct det_gt *gt, int ngt,
                                              float scale, float *dpred,
                                              struct det_loss_result *result)
{
    struct cuda_state *st = cuda_state_of(ctx);
    int rc = det_loss_check(layout, cfg, batch, gt, ngt);

    if (rc != 0)
        return rc;
    struct det_loss_config c = *cfg;
    if (c.topk > layout->anchors)
        c.topk = layout->anchors;

    struct det_scratch s;
    size_t size = carve(NULL, layout, batch, ngt, c.topk, &s);
    void *block = cuda_kctx_workspace(ctx, size);
    if (block == NULL)
        return -ENOMEM;
    carve(block, layout, batch, ngt, c.topk, &s);

    /* gt is host memory that the caller keeps until this returns, and the
     * copy is complete before that (download waits for the stream). */
    if (ngt > 0 &&
        CUDA_FAILED(st, cudaMemcpyAsync(s.gt, gt, sizeof(*gt) * ngt,
                                        cudaMemcpyHostToDevice, st->stream)))
        return -EIO;
    assign_kernel<<<batch, CUDA_BLOCK, 0, st->stream>>>(*layout, c, pred, ngt,
                                                        s);
    if (LAUNCH_FAILED(st))
        return -EIO;

    size_t n = (size_t)batch * layout->anchors;
    double target_sum;
    if (queue_sum(st, target_terms{s.targets}, n, s.partials, s.totals) ||
        download(st, &target_sum, s.totals, 1))
        return -EIO;
    double norm = target_sum > 1.0 ? target_sum : 1.0;
    double common = (double)batch * scale / norm;

    double totals[5];
    if (queue_loss(st, layout, &c, batch, pred, dpred, common, &s) ||
        download(st, totals, s.totals, 5))
        return -EIO;
    result->cls = cfg->cls * totals[1] / norm;
    result->box = cfg->box * totals[2] / norm;
    result->dfl = cfg->dfl * totals[3] / norm;
    result->total = (result->box + result->cls + result->dfl) * batch;
    result->positives = (int)totals[4];
    return 0;
}
