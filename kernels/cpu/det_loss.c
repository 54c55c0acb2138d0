/*
 * The YOLOv8 detection loss on the CPU (contract in kernels/detect.h),
 * with the semantics of Ultralytics v8.x (v8DetectionLoss and
 * TaskAlignedAssigner).
 *
 * The loss runs in two stages, each an OpenMP loop over images:
 *
 * 1. Assigner. Every anchor's box is decoded (per side a softmax over the
 *    reg_max bins, whose expectation is the distance in stride units). For
 *    each ground-truth box, the anchors whose point lies strictly inside
 *    it are scored with the alignment metric score^alpha * CIoU^beta. The
 *    score is the sigmoid of the logit of the box's class, and the CIoU
 *    (clamped at 0) is taken against the predicted box in pixels. Each box
 *    claims its top k anchors by metric (ties: lower anchor index). An
 *    anchor claimed by one box goes to it. An anchor claimed by several
 *    goes to the box with the highest CIoU among all boxes that contain
 *    its point, claiming or not (ties: lower box index). The soft class
 *    target of a positive anchor is metric / (best metric of its box +
 *    1e-9) * best CIoU of its box, both maxima over the box's final
 *    positives.
 * 2. Loss. BCE with logits runs over every anchor and class against the
 *    soft targets. (1 - CIoU) in grid units and DFL run on the positives,
 *    each weighted by the anchor's soft target. The three sums are
 *    divided by max(sum of soft targets over the batch, 1), multiplied by
 *    their gains and, for the total, by the batch size.
 *
 * The assigner's choices and targets are constants for the gradient, as
 * they are under torch.no_grad in Ultralytics, and so is the CIoU's
 * aspect-ratio weight alpha. Gradients reach the class logits through BCE
 * and the box distribution through the decoded box (CIoU) and DFL.
 *
 * Per-image sums are added in image order in double, so results do not
 * depend on the thread count. Scratch comes from one kctx workspace block.
 * NOTE: cpu_kctx_workspace ends the process when that block cannot be
 * allocated, so -ENOMEM is never returned here at present.
 */
#include "det_loss.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "cpu.h"

/* Inside-box margin of the candidate test, and the guard of the metric
 * normalisation, as in Ultralytics' TaskAlignedAssigner (eps 1e-9). */
#define ASSIGN_EPS 1e-9f
/* Upper clamp of DFL target distances below reg_max - 1, so that the
 * right-hand bin floor(t) + 1 stays inside the distribution. */
#define DFL_MARGIN 0.01
/* eps of Ultralytics' bbox_iou, also used by det_ciou. */
#define CIOU_EPS 1e-7

/* One anchor kept for a ground-truth box by the top-k selection. */
struct candidate {
    int anchor;
    float metric;
    float iou;
};

/* Scratch of the assigner, carved from the workspace. */
struct assign_scratch {
    float *box;             /* [batch, anchors, 4] decoded boxes, pixels */
    float *claim_iou;       /* [batch, anchors] CIoU of the owning box */
    float *claim_metric;    /* [batch, anchors] its alignment metric */
    int *claims;            /* [batch, anchors] top-k lists naming it */
    float *best;            /* [ngt, 2] best metric and CIoU of a box */
    struct candidate *cand; /* [ngt, topk] */
};

/* One image's part of the assigner's scratch and its boxes. */
struct image_assign {
    const float *p;         /* the image's prediction */
    const struct det_gt *g; /* its n ground-truth boxes */
    int n;
    int g_index; /* index of g[0] in the batch */
    float *box, *claim_iou, *claim_metric;
    int *claims;
    float *best;
    struct candidate *cand;
    struct det_target *t;
};

/* Per-image sums of the loss stage, before normalisation and gains. */
struct image_sums {
    double cls, box, dfl;
    int positives;
};

int det_loss_check(const struct det_layout *layout,
                   const struct det_loss_config *cfg, int batch,
                   const struct det_gt *gt, int ngt)
{
    if (batch < 1 || ngt < 0 || (ngt > 0 && gt == NULL))
        return -EINVAL;
    if (layout->nc < 1 || layout->reg_max < 2 ||
        layout->reg_max > DET_REG_MAX || layout->anchors < 1)
        return -EINVAL;
    if (cfg->topk < 1 || !(cfg->alpha >= 0) || !(cfg->beta >= 0))
        return -EINVAL;
    for (int i = 0; i < ngt; i++) {
        const struct det_gt *g = &gt[i];

        if (g->image < 0 || g->image >= batch)
            return -EINVAL;
        if (i > 0 && g->image < gt[i - 1].image)
            return -EINVAL;
        if (g->cls < 0 || g->cls >= layout->nc)
            return -EINVAL;
        if (!isfinite(g->x1) || !isfinite(g->y1) || !isfinite(g->x2) ||
            !isfinite(g->y2))
            return -EINVAL;
    }
    return 0;
}

/* First gt index of image (gt sorted by image): a lower bound. */
static int gt_first(const struct det_gt *gt, int ngt, int image)
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

/* Distances of one anchor in stride units: per side, the expectation of
 * the softmax over reg_max bins. p points at the anchor's channel 0 of an
 * image's prediction, whose channels are `anchors` floats apart. */
static void decode_distances(const float *p, size_t anchors, int reg_max,
                             float dist[4])
{
    for (int side = 0; side < 4; side++) {
        const float *z = p + (size_t)side * reg_max * anchors;
        float max = z[0];
        for (int k = 1; k < reg_max; k++)
            max = fmaxf(max, z[k * anchors]);

        float sum = 0.0f, expect = 0.0f;
        for (int k = 0; k < reg_max; k++) {
            float e = expf(z[k * anchors] - max);
            sum += e;
            expect += (float)k * e;
        }
        dist[side] = expect / sum;
    }
}

/* Anchor a's level, and its point in grid units of that level. */
static int anchor_point(const struct det_layout *l, int a, float *x, float *y)
{
    int lv = l->nlevels - 1;

    while (lv > 0 && a < l->first[lv])
        lv--;
    int cell = a - l->first[lv];
    *x = (float)(cell % l->w[lv]) + 0.5f;
    *y = (float)(cell / l->w[lv]) + 0.5f;
    return lv;
}

static float sigmoidf(float x)
{
    float e = expf(-fabsf(x));
    return x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

/* Return anchor a's predicted box in pixels, (point -/+ distances) *
 * stride. The box is decoded into the image's [anchors, 4] cache box on
 * first use, which a NAN x1 marks. */
static const float *anchor_box(const struct det_layout *l, const float *p,
                               float *box, int a)
{
    float *b = box + (size_t)a * 4;

    if (isnan(b[0])) {
        float ax, ay, d[4];
        float s = (float)l->stride[anchor_point(l, a, &ax, &ay)];

        decode_distances(p + a, (size_t)l->anchors, l->reg_max, d);
        b[0] = (ax - d[0]) * s;
        b[1] = (ay - d[1]) * s;
        b[2] = (ax + d[2]) * s;
        b[3] = (ay + d[3]) * s;
    }
    return b;
}

/* Insert c into list (n entries sorted by descending metric, at most k).
 * An entry equal to one already kept goes after it, so that among equal
 * metrics the anchor scanned first (the lower index) stays. */
static void topk_insert(struct candidate *list, int *n, int k,
                        struct candidate c)
{
    if (*n == k && !(c.metric > list[k - 1].metric))
        return;

    int i = *n < k ? (*n)++ : k - 1;
    while (i > 0 && c.metric > list[i - 1].metric) {
        list[i] = list[i - 1];
        i--;
    }
    list[i] = c;
}

/* Range [*lo, *hi) of cells whose centre (c + 0.5) * stride may lie in
 * (v1, v2) pixels; the caller tests each cell exactly. */
static void cell_range(float v1, float v2, int stride, int cells, int *lo,
                       int *hi)
{
    float a = floorf(v1 / (float)stride - 0.5f);
    float b = ceilf(v2 / (float)stride - 0.5f) + 1.0f;

    *lo = a <= 0 ? 0 : (a >= (float)cells ? cells : (int)a);
    *hi = b <= 0 ? 0 : (b >= (float)cells ? cells : (int)b);
}

/* Whether the point (ax, ay) lies inside box g by more than ASSIGN_EPS,
 * the candidate test. */
static int point_in_box(float ax, float ay, const struct det_gt *g)
{
    float margin =
        fminf(fminf(ax - g->x1, ay - g->y1), fminf(g->x2 - ax, g->y2 - ay));

    return margin > ASSIGN_EPS;
}

/* Alignment metric score^alpha * CIoU^beta of anchor a for box g; the
 * CIoU, clamped at 0, goes to *iou. */
static float align_metric(const struct det_layout *l,
                          const struct det_loss_config *cfg, const float *p,
                          float *box, const struct det_gt *g, int a, float *iou)
{
    size_t logit = (size_t)(4 * l->reg_max + g->cls) * l->anchors + a;
    float gbox[4] = {g->x1, g->y1, g->x2, g->y2};

    *iou = fmaxf(det_ciou(gbox, anchor_box(l, p, box, a)), 0.0f);
    return powf(sigmoidf(p[logit]), cfg->alpha) * powf(*iou, cfg->beta);
}

/* Fill list with the top-k in-box anchors of ground-truth box g; returns
 * their number. */
static int select_candidates(const struct det_layout *l,
                             const struct det_loss_config *cfg, const float *p,
                             float *box, const struct det_gt *g,
                             struct candidate *list)
{
    int n = 0;

    for (int lv = 0; lv < l->nlevels; lv++) {
        int s = l->stride[lv], x0, x1, y0, y1;

        cell_range(g->x1, g->x2, s, l->w[lv], &x0, &x1);
        cell_range(g->y1, g->y2, s, l->h[lv], &y0, &y1);
        for (int y = y0; y < y1; y++) {
            for (int x = x0; x < x1; x++) {
                float ax = ((float)x + 0.5f) * (float)s;
                float ay = ((float)y + 0.5f) * (float)s;
                if (!point_in_box(ax, ay, g))
                    continue;

                struct candidate c;
                c.anchor = l->first[lv] + y * l->w[lv] + x;
                c.metric = align_metric(l, cfg, p, box, g, c.anchor, &c.iou);
                topk_insert(list, &n, cfg->topk, c);
            }
        }
    }
    return n;
}

/* Give anchor a, named by the top-k lists of several boxes, to the box
 * with the highest CIoU among all boxes of the image that contain its
 * point (ties: lower box index). This is Ultralytics' rule (v8.x
 * select_highest_overlaps, an argmax over every box's CIoU), so the
 * winner may be a box whose own top k did not include the anchor.
 * NOTE: when all those CIoUs are 0, Ultralytics' argmax returns the
 * image's first box even if it does not contain the point; here the
 * first box that contains it wins. */
static void resolve_contested(const struct det_layout *l,
                              const struct det_loss_config *cfg,
                              const struct image_assign *img, int a)
{
    float ax, ay;
    float s = (float)l->stride[anchor_point(l, a, &ax, &ay)];
    int winner = -1;
    float best_iou = 0.0f;

    ax *= s;
    ay *= s;
    for (int j = 0; j < img->n; j++) {
        if (!point_in_box(ax, ay, &img->g[j]))
            continue;

        float iou;
        float metric =
            align_metric(l, cfg, img->p, img->box, &img->g[j], a, &iou);
        if (winner < 0 || iou > best_iou) {
            winner = j;
            best_iou = iou;
            img->claim_metric[a] = metric;
        }
    }
    img->t[a].gt = img->g_index + winner;
    img->claim_iou[a] = best_iou;
}

/* Run the assigner on one image. */
static void assign_image(const struct det_layout *l,
                         const struct det_loss_config *cfg,
                         const struct image_assign *img)
{
    size_t anchors = (size_t)l->anchors;
    int topk = cfg->topk;

    for (size_t a = 0; a < anchors; a++) {
        img->t[a].gt = -1;
        img->t[a].score = 0.0f;
    }
    if (img->n == 0)
        return;

    /* Boxes are decoded on first use, because most anchors lie in no
     * ground-truth box. */
    for (size_t a = 0; a < anchors; a++) {
        img->box[a * 4] = NAN;
        img->claims[a] = 0;
    }

    /* Top k of each box. An anchor named by one list goes to that box. */
    for (int j = 0; j < img->n; j++) {
        struct candidate *list = img->cand + (size_t)j * topk;
        int k = select_candidates(l, cfg, img->p, img->box, &img->g[j], list);

        for (int i = k; i < topk; i++)
            list[i].anchor = -1;
        for (int i = 0; i < k; i++) {
            int a = list[i].anchor;
            if (img->claims[a]++ == 0) {
                img->t[a].gt = img->g_index + j;
                img->claim_iou[a] = list[i].iou;
                img->claim_metric[a] = list[i].metric;
            }
        }
    }

    /* Every positive is in some list, so the lists visit them all. An
     * anchor in several lists is resolved once and then counts as 1. */
    size_t entries = (size_t)img->n * topk;
    for (size_t e = 0; e < entries; e++) {
        int a = img->cand[e].anchor;
        if (a >= 0 && img->claims[a] > 1) {
            resolve_contested(l, cfg, img, a);
            img->claims[a] = 1;
        }
    }

    /* Soft targets: metric / (best metric of the box + eps) * best CIoU of
     * the box, both over the box's final positives. */
    for (int j = 0; j < 2 * img->n; j++)
        img->best[j] = 0.0f;
    for (size_t e = 0; e < entries; e++) {
        int a = img->cand[e].anchor;
        if (a < 0)
            continue;
        float *best = img->best + 2 * (img->t[a].gt - img->g_index);
        best[0] = fmaxf(best[0], img->claim_metric[a]);
        best[1] = fmaxf(best[1], img->claim_iou[a]);
    }
    for (size_t e = 0; e < entries; e++) {
        int a = img->cand[e].anchor;
        if (a < 0)
            continue;
        const float *best = img->best + 2 * (img->t[a].gt - img->g_index);
        img->t[a].score =
            img->claim_metric[a] * best[1] / (best[0] + ASSIGN_EPS);
    }
}

/* Top-k list length actually stored per box: at most one entry per
 * anchor. */
static int stored_topk(const struct det_layout *l,
                       const struct det_loss_config *cfg)
{
    return cfg->topk < l->anchors ? cfg->topk : l->anchors;
}

static size_t assign_scratch_size(const struct det_layout *l, int batch,
                                  int ngt, int topk)
{
    size_t per_image = (size_t)l->anchors * sizeof(float);

    return cpu_align64(per_image * 4 * (size_t)batch) +
           3 * cpu_align64(per_image * (size_t)batch) +
           cpu_align64(sizeof(float) * 2 * (size_t)ngt + 1) +
           cpu_align64(sizeof(struct candidate) * (size_t)ngt * topk + 1);
}

static struct assign_scratch assign_scratch_carve(void *block,
                                                  const struct det_layout *l,
                                                  int batch, int ngt)
{
    struct assign_scratch s;
    size_t per_image = (size_t)l->anchors * sizeof(float);
    char *p = block;

    s.box = (float *)p;
    p += cpu_align64(per_image * 4 * (size_t)batch);
    s.claim_iou = (float *)p;
    p += cpu_align64(per_image * (size_t)batch);
    s.claim_metric = (float *)p;
    p += cpu_align64(per_image * (size_t)batch);
    s.claims = (int *)p;
    p += cpu_align64(per_image * (size_t)batch);
    s.best = (float *)p;
    p += cpu_align64(sizeof(float) * 2 * (size_t)ngt + 1);
    s.cand = (struct candidate *)p;
    return s;
}

static void assign_batch(struct kctx *ctx, const struct det_layout *l,
                         const struct det_loss_config *cfg, int batch,
                         const float *pred, const struct det_gt *gt, int ngt,
                         struct assign_scratch *s, struct det_target *targets)
{
    struct det_loss_config c = *cfg;
    size_t anchors = (size_t)l->anchors;
    size_t no = (size_t)det_outputs(l);
    int threads = cpu_thread_count(ctx);

    c.topk = stored_topk(l, cfg);

#pragma omp parallel for schedule(static) num_threads(threads)
    for (int b = 0; b < batch; b++) {
        int first = gt_first(gt, ngt, b);
        int end = gt_first(gt, ngt, b + 1);
        size_t off = (size_t)b * anchors;

        struct image_assign img = {
            pred + (size_t)b * no * anchors,
            gt + first,
            end - first,
            first,
            s->box + off * 4,
            s->claim_iou + off,
            s->claim_metric + off,
            s->claims + off,
            s->best + (size_t)first * 2,
            s->cand + (size_t)first * c.topk,
            targets + off,
        };
        assign_image(l, &c, &img);
    }
}

int det_loss_assign(struct kctx *ctx, const struct det_layout *layout,
                    const struct det_loss_config *cfg, int batch,
                    const float *pred, const struct det_gt *gt, int ngt,
                    struct det_target *targets)
{
    int rc = det_loss_check(layout, cfg, batch, gt, ngt);
    if (rc != 0)
        return rc;

    int topk = stored_topk(layout, cfg);
    void *block =
        cpu_kctx_workspace(ctx, assign_scratch_size(layout, batch, ngt, topk));
    struct assign_scratch s = assign_scratch_carve(block, layout, batch, ngt);

    assign_batch(ctx, layout, cfg, batch, pred, gt, ngt, &s, targets);
    return 0;
}

/* ---- Loss stage --------------------------------------------------------- */

/*
 * CIoU of predicted box p against target box t (x1, y1, x2, y2), the
 * formula of det_ciou in double, and its gradient with respect to p in
 * dp. The aspect-ratio weight alpha = v / (v - IoU + 1 + eps) is held
 * constant. Where min or max meet a tie, the gradient goes to neither box
 * edge (torch would split it); ties have measure zero for real boxes.
 */
static double ciou_grad(const double p[4], const double t[4], double dp[4])
{
    double w1 = p[2] - p[0], h1 = p[3] - p[1] + CIOU_EPS;
    double w2 = t[2] - t[0], h2 = t[3] - t[1] + CIOU_EPS;

    /* Intersection and union. */
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

    /* Squared diagonal of the enclosing box, and squared distance of the
     * centres. */
    double cw = fmax(p[2], t[2]) - fmin(p[0], t[0]);
    double ch = fmax(p[3], t[3]) - fmin(p[1], t[1]);
    double c2 = cw * cw + ch * ch + CIOU_EPS;
    double d_c2[4] = {p[0] < t[0] ? -2 * cw : 0, p[1] < t[1] ? -2 * ch : 0,
                      p[2] > t[2] ? 2 * cw : 0, p[3] > t[3] ? 2 * ch : 0};
    double dx = t[0] + t[2] - p[0] - p[2];
    double dy = t[1] + t[3] - p[1] - p[3];
    double rho2 = (dx * dx + dy * dy) / 4;
    double d_rho2[4] = {-dx / 2, -dy / 2, -dx / 2, -dy / 2};

    /* Aspect-ratio term v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2. */
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

/* Gradient scales of the three sums: d(total * scale) / d(sum). */
struct loss_scales {
    double cls, box, dfl;
};

/* BCE with logits of one image's class channels against its targets;
 * writes the class gradient when dp is not NULL. */
static double image_cls(const struct det_layout *l, const float *p,
                        const struct det_gt *gt, const struct det_target *t,
                        float scale, float *dp)
{
    size_t anchors = (size_t)l->anchors;
    double sum = 0.0;

    for (int c = 0; c < l->nc; c++) {
        size_t row = (size_t)(4 * l->reg_max + c) * anchors;

        for (size_t a = 0; a < anchors; a++) {
            float x = p[row + a];
            float target =
                t[a].gt >= 0 && gt[t[a].gt].cls == c ? t[a].score : 0.0f;
            float e = expf(-fabsf(x));
            sum += (double)((x > 0 ? x : 0) - x * target + log1pf(e));
            if (dp != NULL) {
                /* sigmoid(x) from e = exp(-|x|), without a second exp. */
                float sig = x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
                dp[row + a] = (sig - target) * scale;
            }
        }
    }
    return sum;
}

/* Add the box (1 - CIoU) and DFL terms of positive anchor a, whose target
 * box is g and weight w, to the sums. When dp is not NULL, write the
 * anchor's distribution gradient there. */
static void anchor_box_dfl(const struct det_layout *l, const float *p, int a,
                           const struct det_gt *g, double w,
                           const struct loss_scales *sc, float *dp,
                           double *box_sum, double *dfl_sum)
{
    size_t anchors = (size_t)l->anchors;
    int reg_max = l->reg_max;
    double prob[4][DET_REG_MAX], dist[4], lse[4];
    float axf, ayf;
    double s = (double)l->stride[anchor_point(l, a, &axf, &ayf)];
    double ax = axf, ay = ayf;

    /* Softmax of each side, its expectation and log-sum-exp. */
    for (int side = 0; side < 4; side++) {
        const float *z = p + (size_t)side * reg_max * anchors + a;
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

    /* Boxes in grid units of the anchor's level. */
    double pb[4] = {ax - dist[0], ay - dist[1], ax + dist[2], ay + dist[3]};
    double tb[4] = {(double)(g->x1 / (float)s), (double)(g->y1 / (float)s),
                    (double)(g->x2 / (float)s), (double)(g->y2 / (float)s)};
    double dc[4];
    double ciou = ciou_grad(pb, tb, dc);
    *box_sum += (1.0 - ciou) * w;

    /* d(box term) / d(distance): x1 = ax - l and y1 = ay - t shrink with
     * their distance, x2 = ax + r and y2 = ay + b grow. */
    double d_dist[4] = {dc[0] * w, dc[1] * w, -dc[2] * w, -dc[3] * w};

    /* DFL: target distances in stride units, split between two bins. */
    double td[4] = {ax - tb[0], ay - tb[1], tb[2] - ax, tb[3] - ay};
    double hi = (double)(reg_max - 1) - DFL_MARGIN;
    double dfl = 0.0;
    for (int side = 0; side < 4; side++) {
        double target = fmin(fmax(td[side], 0.0), hi);
        int left = (int)target;
        double wl = left + 1 - target, wr = target - left;
        const float *z = p + (size_t)side * reg_max * anchors + a;

        dfl += wl * (lse[side] - z[left * anchors]) +
               wr * (lse[side] - z[(left + 1) * anchors]);
        if (dp == NULL)
            continue;

        float *dz = dp + (size_t)side * reg_max * anchors + a;
        double g_dfl = sc->dfl * w / 4;
        double g_box = sc->box * d_dist[side];
        for (int k = 0; k < reg_max; k++) {
            double onehot = (k == left ? wl : 0) + (k == left + 1 ? wr : 0);
            double d = g_box * prob[side][k] * (k - dist[side]) +
                       g_dfl * (prob[side][k] - onehot);
            dz[k * anchors] = (float)d;
        }
    }
    *dfl_sum += dfl / 4 * w;
}

static void loss_image(const struct det_layout *l, const float *p,
                       const struct det_gt *gt, const struct det_target *t,
                       const struct loss_scales *sc, float *dp,
                       struct image_sums *sums)
{
    size_t anchors = (size_t)l->anchors;

    sums->cls = image_cls(l, p, gt, t, (float)sc->cls, dp);
    sums->box = 0.0;
    sums->dfl = 0.0;
    sums->positives = 0;
    if (dp != NULL)
        memset(dp, 0, sizeof(float) * anchors * 4 * l->reg_max);

    for (int a = 0; a < l->anchors; a++) {
        if (t[a].gt < 0)
            continue;
        sums->positives++;
        anchor_box_dfl(l, p, a, &gt[t[a].gt], (double)t[a].score, sc, dp,
                       &sums->box, &sums->dfl);
    }
}

/* The loss stage, with per-image sums in scratch (batch entries). */
static void apply_batch(struct kctx *ctx, const struct det_layout *l,
                        const struct det_loss_config *cfg, int batch,
                        const float *pred, const struct det_gt *gt,
                        const struct det_target *targets, float scale,
                        float *dpred, struct image_sums *sums,
                        struct det_loss_result *result)
{
    size_t anchors = (size_t)l->anchors;
    size_t image = (size_t)det_outputs(l) * anchors;
    int threads = cpu_thread_count(ctx);

    /* The normaliser: each positive anchor has one non-zero target. */
    double target_sum = 0.0;
    for (size_t i = 0; i < (size_t)batch * anchors; i++)
        if (targets[i].gt >= 0)
            target_sum += targets[i].score;
    double norm = target_sum > 1.0 ? target_sum : 1.0;

    double common = (double)batch * scale / norm;
    struct loss_scales sc = {cfg->cls * common, cfg->box * common,
                             cfg->dfl * common};

#pragma omp parallel for schedule(static) num_threads(threads)
    for (int b = 0; b < batch; b++)
        loss_image(l, pred + (size_t)b * image, gt,
                   targets + (size_t)b * anchors, &sc,
                   dpred != NULL ? dpred + (size_t)b * image : NULL, &sums[b]);

    double cls = 0.0, box = 0.0, dfl = 0.0;
    int positives = 0;
    for (int b = 0; b < batch; b++) {
        cls += sums[b].cls;
        box += sums[b].box;
        dfl += sums[b].dfl;
        positives += sums[b].positives;
    }
    result->box = cfg->box * box / norm;
    result->cls = cfg->cls * cls / norm;
    result->dfl = cfg->dfl * dfl / norm;
    result->total = (result->box + result->cls + result->dfl) * batch;
    result->positives = positives;
}

int det_loss_apply(struct kctx *ctx, const struct det_layout *layout,
                   const struct det_loss_config *cfg, int batch,
                   const float *pred, const struct det_gt *gt, int ngt,
                   const struct det_target *targets, float scale, float *dpred,
                   struct det_loss_result *result)
{
    int rc = det_loss_check(layout, cfg, batch, gt, ngt);
    if (rc != 0)
        return rc;

    struct image_sums *sums =
        cpu_kctx_workspace(ctx, sizeof(struct image_sums) * (size_t)batch);
    apply_batch(ctx, layout, cfg, batch, pred, gt, targets, scale, dpred, sums,
                result);
    return 0;
}

/* Besides the codes of kernels/detect.h, returns -EINVAL for the invalid
 * arguments that det_loss_check lists. */
int cpu_det_loss_forward_backward(struct kctx *ctx,
                                  const struct det_layout *layout,
                                  const struct det_loss_config *cfg, int batch,
                                  const float *pred, const struct det_gt *gt,
                                  int ngt, float scale, float *dpred,
                                  struct det_loss_result *result)
{
    int rc = det_loss_check(layout, cfg, batch, gt, ngt);
    if (rc != 0)
        return rc;

    /* One block: targets, per-image sums, then the assigner's scratch. */
    int topk = stored_topk(layout, cfg);
    size_t n = (size_t)batch * layout->anchors;
    size_t targets_size = cpu_align64(sizeof(struct det_target) * n);
    size_t sums_size = cpu_align64(sizeof(struct image_sums) * batch);
    char *block = cpu_kctx_workspace(
        ctx, targets_size + sums_size +
                 assign_scratch_size(layout, batch, ngt, topk));
    struct det_target *targets = (struct det_target *)block;
    struct image_sums *sums = (struct image_sums *)(block + targets_size);
    struct assign_scratch s = assign_scratch_carve(
        block + targets_size + sums_size, layout, batch, ngt);

    assign_batch(ctx, layout, cfg, batch, pred, gt, ngt, &s, targets);
    apply_batch(ctx, layout, cfg, batch, pred, gt, targets, scale, dpred, sums,
                result);
    return 0;
}
