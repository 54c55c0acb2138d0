/*
 * Detection metrics (see det_metrics.h for the definitions).
 *
 * Memory: one record of 12 bytes per detection, so a validation run of
 * 5,000 images at 300 detections each keeps about 18 MB. Matching is
 * done when an image is added, which costs npred * ngt IoUs and one sort
 * of the matching pairs. det_metrics_compute sorts all records once and
 * then works class by class.
 *
 * Interpolation follows numpy.interp: for a sample v in [xp[0], xp[n-1]]
 * it takes the last index j with xp[j] <= v. A sample equal to xp[j]
 * (and one at the last point) takes fp[j] as it is, otherwise it is
 * interpolated linearly between j and j + 1. Outside the range it takes
 * the given left or right value. So where several points share one x
 * (equal recalls, equal confidences), the last of them counts.
 */
#include "engine/det_metrics.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Points of the precision and recall curves over confidence. */
#define CURVE_POINTS 1000
/* Recall points of the AP integral. */
#define AP_POINTS 101
/* Width of the centred moving average over the mean F1 curve: a tenth
 * of the curve on each side. */
#define F1_SMOOTH 101
/* Added to the divisors of recall and F1, so that F1 stays finite when
 * precision and recall are both 0. */
#define METRICS_EPS 1e-16

/* One detection: tp bit t is set when it matched at threshold t. */
struct det_record {
    float conf;
    int cls;
    uint32_t tp;
};

struct det_metrics {
    int nc;
    struct det_record *records;
    size_t count, capacity;
    int64_t *gt_per_class; /* nc */
    int images;
    int instances;
};

/* A detection and ground-truth box of equal class with IoU >= 0.5. */
struct match_pair {
    float iou;
    int pred, gt;
};

static float iou_threshold(int t)
{
    /* The float nearest to 0.50 + 0.05 t. */
    return (float)(0.5 + 0.05 * t);
}

int det_metrics_create(int nc, struct det_metrics **out, struct error *err)
{
    *out = NULL;
    if (nc < 1)
        return error_set(err, -EINVAL,
                         "invalid class count %d for detection metrics: "
                         "expected at least 1",
                         nc);

    struct det_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return error_set(err, -ENOMEM, "out of memory for metrics");
    m->gt_per_class = calloc((size_t)nc, sizeof(*m->gt_per_class));
    if (m->gt_per_class == NULL) {
        free(m);
        return error_set(err, -ENOMEM, "out of memory for metrics");
    }
    m->nc = nc;
    *out = m;
    return 0;
}

void det_metrics_free(struct det_metrics *m)
{
    if (m == NULL)
        return;
    free(m->records);
    free(m->gt_per_class);
    free(m);
}

/* ---- Matching ------------------------------------------------------------ */

static int pair_compare(const void *pa, const void *pb)
{
    const struct match_pair *a = pa, *b = pb;

    if (a->iou != b->iou)
        return a->iou > b->iou ? -1 : 1;
    if (a->pred != b->pred)
        return a->pred < b->pred ? -1 : 1;
    return (a->gt > b->gt) - (a->gt < b->gt);
}

static int check_image(const struct det_metrics *m,
                       const struct det_box *pred, int npred,
                       const struct det_gt *gt, int ngt, struct error *err)
{
    if (npred < 0 || ngt < 0 || (npred > 0 && pred == NULL) ||
        (ngt > 0 && gt == NULL))
        return error_set(err, -EINVAL,
                         "invalid image for metrics: %d detections, %d "
                         "ground-truth boxes",
                         npred, ngt);
    for (int i = 0; i < npred; i++) {
        if (pred[i].cls < 0 || pred[i].cls >= m->nc)
            return error_set(err, -EINVAL,
                             "detection %d has class %d: expected 0 to %d",
                             i, pred[i].cls, m->nc - 1);
        if (isnan(pred[i].conf))
            return error_set(err, -EINVAL,
                             "detection %d has confidence NaN: the model "
                             "output is not finite",
                             i);
    }
    for (int j = 0; j < ngt; j++) {
        if (gt[j].cls < 0 || gt[j].cls >= m->nc)
            return error_set(err, -EINVAL,
                             "ground-truth box %d has class %d: expected 0 "
                             "to %d; check the labels against the data "
                             "set's class names",
                             j, gt[j].cls, m->nc - 1);
    }
    return 0;
}

/* Set tp bits of the image's detections (records[0 .. npred)). */
static int match_image(const struct det_box *pred, int npred,
                       const struct det_gt *gt, int ngt,
                       struct det_record *records)
{
    size_t npairs = 0;
    struct match_pair *pairs = NULL;
    unsigned char *used = NULL;

    if (npred == 0 || ngt == 0)
        return 0;
    pairs = malloc((size_t)npred * (size_t)ngt * sizeof(*pairs));
    used = malloc((size_t)npred + (size_t)ngt);
    if (pairs == NULL || used == NULL) {
        free(pairs);
        free(used);
        return -ENOMEM;
    }

    for (int i = 0; i < npred; i++) {
        const float p[4] = {pred[i].x1, pred[i].y1, pred[i].x2, pred[i].y2};

        for (int j = 0; j < ngt; j++) {
            const float g[4] = {gt[j].x1, gt[j].y1, gt[j].x2, gt[j].y2};

            if (gt[j].cls != pred[i].cls)
                continue;
            float iou = det_iou(p, g);
            if (iou >= iou_threshold(0)) {
                pairs[npairs].iou = iou;
                pairs[npairs].pred = i;
                pairs[npairs].gt = j;
                npairs++;
            }
        }
    }
    if (npairs > 0)
        qsort(pairs, npairs, sizeof(*pairs), pair_compare);

    /* Pairs are in descending IoU, so those at or over a threshold are a
     * prefix of the list. */
    for (int t = 0; t < DET_IOU_THRESHOLDS; t++) {
        float threshold = iou_threshold(t);
        unsigned char *pred_used = used, *gt_used = used + npred;

        memset(used, 0, (size_t)npred + (size_t)ngt);
        for (size_t k = 0; k < npairs && pairs[k].iou >= threshold; k++) {
            if (pred_used[pairs[k].pred] || gt_used[pairs[k].gt])
                continue;
            pred_used[pairs[k].pred] = 1;
            gt_used[pairs[k].gt] = 1;
            records[pairs[k].pred].tp |= 1u << t;
        }
    }
    free(pairs);
    free(used);
    return 0;
}

int det_metrics_add(struct det_metrics *m, const struct det_box *pred,
                    int npred, const struct det_gt *gt, int ngt,
                    struct error *err)
{
    int rc = check_image(m, pred, npred, gt, ngt, err);

    if (rc != 0)
        return rc;
    if (m->count + (size_t)npred > m->capacity) {
        size_t capacity = m->capacity > 0 ? m->capacity : 4096;
        while (capacity < m->count + (size_t)npred)
            capacity *= 2;
        struct det_record *records =
            realloc(m->records, capacity * sizeof(*records));
        if (records == NULL)
            return error_set(err, -ENOMEM,
                             "out of memory for %zu detection records",
                             capacity);
        m->records = records;
        m->capacity = capacity;
    }

    struct det_record *added = m->records + m->count;
    for (int i = 0; i < npred; i++) {
        added[i].conf = pred[i].conf;
        added[i].cls = pred[i].cls;
        added[i].tp = 0;
    }
    if (match_image(pred, npred, gt, ngt, added) != 0)
        return error_set(err, -ENOMEM,
                         "out of memory matching %d detections with %d "
                         "ground-truth boxes",
                         npred, ngt);

    m->count += (size_t)npred;
    for (int j = 0; j < ngt; j++)
        m->gt_per_class[gt[j].cls]++;
    m->images++;
    m->instances += ngt;
    return 0;
}

/* ---- Curves and AP --------------------------------------------------------- */

/* numpy.interp(v, xp, fp, left, right) for ascending xp of n >= 1
 * points. */
static double interp(double v, const double *xp, const double *fp, size_t n,
                     double left, double right)
{
    if (v < xp[0])
        return left;
    if (v > xp[n - 1])
        return right;

    /* Last j with xp[j] <= v. */
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (xp[mid] <= v)
            lo = mid;
        else
            hi = mid;
    }
    if (lo == n - 1 || xp[lo] == v)
        return fp[lo];
    double slope = (fp[lo + 1] - fp[lo]) / (xp[lo + 1] - xp[lo]);
    return slope * (v - xp[lo]) + fp[lo];
}

/* Sample i of numpy.linspace(0, 1, n). */
static double linspace01(int i, int n)
{
    if (i == n - 1)
        return 1.0;
    return (double)i * (1.0 / (double)(n - 1));
}

/* AP from n recall and precision points (mrec and mpre have n + 2
 * entries; entries 1 .. n are filled, the ends are set here). */
static double average_precision(double *mrec, double *mpre, size_t n)
{
    size_t total = n + 2;

    mrec[0] = 0.0;
    mpre[0] = 1.0;
    mrec[total - 1] = 1.0;
    mpre[total - 1] = 0.0;
    for (size_t k = total - 1; k > 0; k--)
        mpre[k - 1] = fmax(mpre[k - 1], mpre[k]);

    double ap = 0.0, x_prev = 0.0;
    double y_prev = interp(0.0, mrec, mpre, total, mpre[0], mpre[total - 1]);
    for (int i = 1; i < AP_POINTS; i++) {
        double x = linspace01(i, AP_POINTS);
        double y = interp(x, mrec, mpre, total, mpre[0], mpre[total - 1]);

        ap += (x - x_prev) * (y + y_prev) / 2.0;
        x_prev = x;
        y_prev = y;
    }
    return ap;
}

/* Work arrays of det_metrics_compute. */
struct compute_scratch {
    size_t *order;       /* records sorted by conf, descending */
    size_t *class_first; /* nc + 1: start of each class in by_class */
    size_t *by_class;    /* record indices grouped by class, in order */
    double *xp, *recall, *precision; /* max class size */
    double *mrec, *mpre;             /* max class size + 2 */
    double *p_curve, *r_curve;       /* nc * CURVE_POINTS */
};

static void scratch_free(struct compute_scratch *s)
{
    free(s->order);
    free(s->class_first);
    free(s->by_class);
    free(s->xp);
    free(s->recall);
    free(s->precision);
    free(s->mrec);
    free(s->mpre);
    free(s->p_curve);
    free(s->r_curve);
}

static const struct det_record *sort_records;

/* Descending conf, then ascending index: a stable order. */
static int order_compare(const void *pa, const void *pb)
{
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    float ca = sort_records[a].conf, cb = sort_records[b].conf;

    if (ca != cb)
        return ca > cb ? -1 : 1;
    return (a > b) - (a < b);
}

/* Sort the records and group them by class. */
static int scratch_init(struct compute_scratch *s, const struct det_metrics *m)
{
    size_t n = m->count > 0 ? m->count : 1;
    size_t largest = 0;

    memset(s, 0, sizeof(*s));
    s->order = malloc(n * sizeof(*s->order));
    s->class_first = calloc((size_t)m->nc + 1, sizeof(*s->class_first));
    s->by_class = malloc(n * sizeof(*s->by_class));
    s->p_curve = calloc((size_t)m->nc * CURVE_POINTS, sizeof(double));
    s->r_curve = calloc((size_t)m->nc * CURVE_POINTS, sizeof(double));
    if (s->order == NULL || s->class_first == NULL || s->by_class == NULL ||
        s->p_curve == NULL || s->r_curve == NULL)
        return -ENOMEM;

    for (size_t i = 0; i < m->count; i++)
        s->order[i] = i;
    /* NOTE: qsort has no context argument in C11, so the records go
     * through a static pointer, and det_metrics_compute is not safe to
     * call from two threads at once. */
    sort_records = m->records;
    if (m->count > 0)
        qsort(s->order, m->count, sizeof(*s->order), order_compare);

    for (size_t i = 0; i < m->count; i++)
        s->class_first[m->records[i].cls + 1]++;
    for (int c = 0; c < m->nc; c++) {
        size_t size = s->class_first[c + 1];
        largest = size > largest ? size : largest;
        s->class_first[c + 1] += s->class_first[c];
    }
    size_t *fill = calloc((size_t)m->nc, sizeof(*fill));
    if (fill == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < m->count; i++) {
        size_t r = s->order[i];
        int c = m->records[r].cls;
        s->by_class[s->class_first[c] + fill[c]++] = r;
    }
    free(fill);

    size_t points = largest > 0 ? largest : 1;
    s->xp = malloc(points * sizeof(double));
    s->recall = malloc(points * sizeof(double));
    s->precision = malloc(points * sizeof(double));
    s->mrec = malloc((points + 2) * sizeof(double));
    s->mpre = malloc((points + 2) * sizeof(double));
    if (s->xp == NULL || s->recall == NULL || s->precision == NULL ||
        s->mrec == NULL || s->mpre == NULL)
        return -ENOMEM;
    return 0;
}

/* AP of class c at every threshold, and its precision and recall curves
 * (threshold 0.50) in s->p_curve and s->r_curve. */
static void class_scores(const struct det_metrics *m,
                         struct compute_scratch *s, int c,
                         double ap[DET_IOU_THRESHOLDS])
{
    const size_t *members = s->by_class + s->class_first[c];
    size_t n = s->class_first[c + 1] - s->class_first[c];
    double n_gt = (double)m->gt_per_class[c];

    for (int t = 0; t < DET_IOU_THRESHOLDS; t++) {
        double tp = 0.0, fp = 0.0;

        ap[t] = 0.0;
        if (n == 0)
            continue;
        for (size_t k = 0; k < n; k++) {
            const struct det_record *r = &m->records[members[k]];

            if (r->tp & (1u << t))
                tp += 1.0;
            else
                fp += 1.0;
            s->recall[k] = tp / (n_gt + METRICS_EPS);
            s->precision[k] = tp / (tp + fp);
            s->mrec[k + 1] = s->recall[k];
            s->mpre[k + 1] = s->precision[k];
            s->xp[k] = -(double)r->conf;
        }
        if (t == 0) {
            double *p = s->p_curve + (size_t)c * CURVE_POINTS;
            double *rc = s->r_curve + (size_t)c * CURVE_POINTS;

            for (int i = 0; i < CURVE_POINTS; i++) {
                double v = -linspace01(i, CURVE_POINTS);
                rc[i] = interp(v, s->xp, s->recall, n, 0.0,
                               s->recall[n - 1]);
                p[i] = interp(v, s->xp, s->precision, n, 1.0,
                              s->precision[n - 1]);
            }
        }
        ap[t] = average_precision(s->mrec, s->mpre, n);
    }
}

/* Index of the first maximum of the smoothed mean F1 over the classes
 * with ground truth. */
static int best_f1_index(const struct det_metrics *m,
                         const struct compute_scratch *s, int classes)
{
    double f1[CURVE_POINTS], padded[CURVE_POINTS + F1_SMOOTH - 1];
    int half = F1_SMOOTH / 2, best = 0;
    double best_value = -INFINITY, weight = 1.0 / F1_SMOOTH;

    for (int i = 0; i < CURVE_POINTS; i++) {
        double sum = 0.0;

        for (int c = 0; c < m->nc; c++) {
            if (m->gt_per_class[c] == 0)
                continue;
            double p = s->p_curve[(size_t)c * CURVE_POINTS + i];
            double r = s->r_curve[(size_t)c * CURVE_POINTS + i];
            sum += 2.0 * p * r / (p + r + METRICS_EPS);
        }
        f1[i] = sum / classes;
    }
    /* Pad each end with its end value, half the window wide. */
    for (int i = 0; i < CURVE_POINTS + F1_SMOOTH - 1; i++) {
        int k = i - half;

        if (k < 0)
            k = 0;
        if (k > CURVE_POINTS - 1)
            k = CURVE_POINTS - 1;
        padded[i] = f1[k];
    }
    for (int i = 0; i < CURVE_POINTS; i++) {
        double smooth = 0.0;

        for (int k = 0; k < F1_SMOOTH; k++)
            smooth += padded[i + k] * weight;
        if (smooth > best_value) {
            best_value = smooth;
            best = i;
        }
    }
    return best;
}

/* Whether any detection matched at IoU 0.50 (and so at all). */
static int any_true_positive(const struct det_metrics *m)
{
    for (size_t i = 0; i < m->count; i++)
        if (m->records[i].tp & 1u)
            return 1;
    return 0;
}

int det_metrics_compute(struct det_metrics *m, struct det_scores *out,
                        double *ap50_per_class, double *ap_per_class,
                        struct error *err)
{
    struct compute_scratch s;
    int classes = 0;

    memset(out, 0, sizeof(*out));
    out->images = m->images;
    out->instances = m->instances;
    for (int c = 0; c < m->nc; c++) {
        if (ap50_per_class != NULL)
            ap50_per_class[c] = 0.0;
        if (ap_per_class != NULL)
            ap_per_class[c] = 0.0;
        classes += m->gt_per_class[c] > 0;
    }
    /* Without a true positive the formulas give 0 as well, but through
     * sums of zeros; returning early makes the 0 exact. */
    if (classes == 0 || !any_true_positive(m))
        return 0;

    if (scratch_init(&s, m) != 0) {
        scratch_free(&s);
        return error_set(err, -ENOMEM,
                         "out of memory computing metrics of %zu "
                         "detections",
                         m->count);
    }

    double sum50 = 0.0, sum50_95 = 0.0;
    for (int c = 0; c < m->nc; c++) {
        double ap[DET_IOU_THRESHOLDS], mean = 0.0;

        if (m->gt_per_class[c] == 0)
            continue;
        class_scores(m, &s, c, ap);
        for (int t = 0; t < DET_IOU_THRESHOLDS; t++)
            mean += ap[t];
        mean /= DET_IOU_THRESHOLDS;
        sum50 += ap[0];
        sum50_95 += mean;
        if (ap50_per_class != NULL)
            ap50_per_class[c] = ap[0];
        if (ap_per_class != NULL)
            ap_per_class[c] = mean;
    }

    int best = best_f1_index(m, &s, classes);
    double p_sum = 0.0, r_sum = 0.0;
    for (int c = 0; c < m->nc; c++) {
        if (m->gt_per_class[c] == 0)
            continue;
        p_sum += s.p_curve[(size_t)c * CURVE_POINTS + best];
        r_sum += s.r_curve[(size_t)c * CURVE_POINTS + best];
    }
    scratch_free(&s);

    out->precision = p_sum / classes;
    out->recall = r_sum / classes;
    out->map50 = sum50 / classes;
    out->map50_95 = sum50_95 / classes;
    out->fitness = 0.1 * out->map50 + 0.9 * out->map50_95;
    return 0;
}
