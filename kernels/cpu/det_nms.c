/*
 * Decoding of the Detect head's output and class-aware NMS on the CPU
 * (the contract is in kernels/detect.h). The CUDA path reuses the
 * per-image stage below on the anchors it has gathered, so both devices
 * produce the same boxes bit for bit.
 *
 * Each image goes through four steps:
 *
 * 1. Threshold. Class logits are scanned row by row (one class at a time,
 *    contiguous in the [no, anchors] layout). A logit far below the
 *    threshold's logit is skipped without an expf. Every other score is
 *    sigmoid(logit) and passes when it is > conf.
 * 2. Select. Candidates are ordered by conf descending, then anchor index,
 *    then class. This is a total order, so the result does not depend on
 *    the algorithm. A quickselect keeps the max_nms first ones, and only
 *    those are sorted.
 * 3. Decode. Only selected anchors get their box: per side a softmax over
 *    reg_max bins, the expected bin index times the stride is the
 *    distance from the anchor point.
 * 4. Suppress. Greedy NMS in that order: a candidate is dropped when its
 *    IoU with a kept box of the same class is > iou. Ultralytics offsets
 *    boxes by class * 7680 px instead, which has the same effect, up to
 *    the rounding of the shifted coordinates, for boxes within 7680 px.
 *    It stops at max_det kept boxes, so the work is at most
 *    (selected candidates) * max_det IoUs.
 *
 * Images are independent and run in parallel with OpenMP. Scratch memory
 * is allocated per image, because a kctx workspace is one buffer and
 * cannot be shared between threads.
 */
#include "cpu.h"
#include "detect.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Non-static for the CUDA path (kernels/cuda/det_nms.cu), which declares
 * it itself because no header of the CPU kernels is shared with it. */
int cpu_det_nms_gathered(const struct det_layout *layout,
                         const struct det_nms_config *cfg, int batch,
                         const float *columns, const int *image_first,
                         const int *anchors, int threads,
                         struct det_box *boxes, int *counts);

/* The location of one image's head output: channel ch of column j is
 * base[ch * channel_stride + j * column_stride]. Column j is anchor
 * anchors[j], or anchor j when anchors is NULL. anchors must ascend, so
 * that column order is anchor order. */
struct nms_view {
    const float *base;
    size_t channel_stride;
    size_t column_stride;
    int columns;
    const int *anchors;
};

struct nms_candidate {
    float conf;
    int column;
    int cls;
};

/* A growable array of candidates. */
struct candidate_list {
    struct nms_candidate *items;
    size_t count, capacity;
};

static float sigmoidf(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

static float view_value(const struct nms_view *v, int channel, int column)
{
    return v->base[(size_t)channel * v->channel_stride +
                   (size_t)column * v->column_stride];
}

static int view_anchor(const struct nms_view *v, int column)
{
    return v->anchors != NULL ? v->anchors[column] : column;
}

static int candidate_push(struct candidate_list *list, float conf,
                          int column, int cls)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity > 0 ? list->capacity * 2 : 1024;
        struct nms_candidate *items =
            realloc(list->items, capacity * sizeof(*items));

        if (items == NULL)
            return -ENOMEM;
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count].conf = conf;
    list->items[list->count].column = column;
    list->items[list->count].cls = cls;
    list->count++;
    return 0;
}

/* A logit below this cannot have sigmoid(logit) > conf, so it needs no
 * expf. The margin (0.05 + 1% in logit units) is far larger than the
 * rounding of a float sigmoid for conf in [1e-6, 0.99]. Outside that
 * range the float sigmoid is too flat to bound this way, and every logit
 * is tested. */
static float logit_floor(float conf)
{
    if (!(conf >= 1e-6f && conf <= 0.99f))
        return -INFINITY;
    float t = logf(conf / (1.0f - conf));
    return t - 0.05f - 0.01f * fabsf(t);
}

/* Step 1 with multi_label: every class whose score is > conf. */
static int threshold_multi_label(const struct det_layout *l, float conf,
                                 const struct nms_view *v,
                                 struct candidate_list *list)
{
    float floor = logit_floor(conf);
    int first_class = 4 * l->reg_max;

    for (int c = 0; c < l->nc; c++) {
        for (int j = 0; j < v->columns; j++) {
            float x = view_value(v, first_class + c, j);

            if (!(x > floor))
                continue;
            float s = sigmoidf(x);
            if (s > conf && candidate_push(list, s, j, c) != 0)
                return -ENOMEM;
        }
    }
    return 0;
}

/* Step 1 without multi_label: each column's best class, the one with the
 * largest logit (the lowest class among equal logits), when its score is
 * > conf. best and best_class are scratch of v->columns entries. */
static int threshold_best_class(const struct det_layout *l, float conf,
                                const struct nms_view *v, float *best,
                                int *best_class, struct candidate_list *list)
{
    float floor = logit_floor(conf);
    int first_class = 4 * l->reg_max;

    for (int j = 0; j < v->columns; j++) {
        best[j] = -INFINITY;
        best_class[j] = -1;
    }
    for (int c = 0; c < l->nc; c++) {
        for (int j = 0; j < v->columns; j++) {
            float x = view_value(v, first_class + c, j);

            if (x > best[j]) {
                best[j] = x;
                best_class[j] = c;
            }
        }
    }
    for (int j = 0; j < v->columns; j++) {
        if (best_class[j] < 0 || !(best[j] > floor))
            continue;
        float s = sigmoidf(best[j]);
        if (s > conf && candidate_push(list, s, j, best_class[j]) != 0)
            return -ENOMEM;
    }
    return 0;
}

/* The order of step 2: conf descending, then column (that is, anchor)
 * ascending, then class ascending. */
static int candidate_before(const struct nms_candidate *a,
                            const struct nms_candidate *b)
{
    if (a->conf != b->conf)
        return a->conf > b->conf;
    if (a->column != b->column)
        return a->column < b->column;
    return a->cls < b->cls;
}

static int candidate_compare(const void *pa, const void *pb)
{
    const struct nms_candidate *a = pa, *b = pb;

    if (candidate_before(a, b))
        return -1;
    return candidate_before(b, a) ? 1 : 0;
}

static void candidate_swap(struct nms_candidate *a, struct nms_candidate *b)
{
    struct nms_candidate t = *a;

    *a = *b;
    *b = t;
}

/* Rearrange items so that items[0 .. k) are the k first in the order of
 * candidate_before, in any order among themselves. This is a quickselect
 * with a median-of-three pivot and Lomuto partitions, and it relies on
 * keys being distinct. */
static void candidate_select(struct nms_candidate *items, size_t n, size_t k)
{
    size_t lo = 0, hi = n;

    while (hi - lo > 1 && lo < k && k < hi) {
        size_t mid = lo + (hi - lo) / 2, last = hi - 1;

        /* Order lo, mid, last, then use the median as the pivot at last. */
        if (candidate_before(&items[mid], &items[lo]))
            candidate_swap(&items[mid], &items[lo]);
        if (candidate_before(&items[last], &items[lo]))
            candidate_swap(&items[last], &items[lo]);
        if (candidate_before(&items[last], &items[mid]))
            candidate_swap(&items[last], &items[mid]);
        candidate_swap(&items[mid], &items[last]);

        size_t store = lo;
        for (size_t i = lo; i < last; i++) {
            if (candidate_before(&items[i], &items[last]))
                candidate_swap(&items[i], &items[store++]);
        }
        candidate_swap(&items[store], &items[last]);

        if (store == k || store + 1 == k)
            return;
        if (store < k)
            lo = store + 1;
        else
            hi = store;
    }
}

/* Step 3 for one column: x1, y1, x2, y2 in pixels of the network input. */
static void decode_box(const struct det_layout *l, const struct nms_view *v,
                       int column, float *xyxy)
{
    float ax, ay, stride, dist[4];
    int bins = l->reg_max;

    for (int side = 0; side < 4; side++) {
        float logits[DET_REG_MAX], max = -INFINITY;

        for (int b = 0; b < bins; b++) {
            logits[b] = view_value(v, side * bins + b, column);
            max = fmaxf(max, logits[b]);
        }
        float sum = 0.0f, weighted = 0.0f;
        for (int b = 0; b < bins; b++) {
            float e = expf(logits[b] - max);
            sum += e;
            weighted += e * (float)b;
        }
        dist[side] = weighted / sum;
    }
    det_anchor(l, view_anchor(v, column), &ax, &ay, &stride);
    xyxy[0] = ax - dist[0] * stride;
    xyxy[1] = ay - dist[1] * stride;
    xyxy[2] = ax + dist[2] * stride;
    xyxy[3] = ay + dist[3] * stride;
}

/* Scratch of one image, freed by nms_scratch_free. */
struct nms_scratch {
    struct candidate_list list;
    float *best;        /* columns: best class logit (no multi_label) */
    int *best_class;    /* columns */
    float *column_box;  /* columns * 4: decoded boxes */
    unsigned char *decoded; /* columns: 1 once column_box is filled */
    float *kept_box;    /* max_det * 4 */
};

static void nms_scratch_free(struct nms_scratch *s)
{
    free(s->list.items);
    free(s->best);
    free(s->best_class);
    free(s->column_box);
    free(s->decoded);
    free(s->kept_box);
}

static int nms_scratch_init(struct nms_scratch *s, int columns, int max_det)
{
    size_t n = columns > 0 ? (size_t)columns : 1;

    memset(s, 0, sizeof(*s));
    s->best = malloc(n * sizeof(*s->best));
    s->best_class = malloc(n * sizeof(*s->best_class));
    s->column_box = malloc(n * 4 * sizeof(*s->column_box));
    s->decoded = calloc(n, 1);
    s->kept_box = malloc((size_t)max_det * 4 * sizeof(*s->kept_box));
    if (s->best == NULL || s->best_class == NULL || s->column_box == NULL ||
        s->decoded == NULL || s->kept_box == NULL) {
        nms_scratch_free(s);
        return -ENOMEM;
    }
    return 0;
}

/* Step 4: greedy class-aware NMS over the sorted candidates. */
static int suppress(const struct det_layout *l,
                    const struct det_nms_config *cfg,
                    const struct nms_view *v, struct nms_scratch *s,
                    size_t selected, struct det_box *out)
{
    int kept = 0;

    for (size_t i = 0; i < selected && kept < cfg->max_det; i++) {
        const struct nms_candidate *cand = &s->list.items[i];
        float *box = s->column_box + (size_t)cand->column * 4;

        if (!s->decoded[cand->column]) {
            decode_box(l, v, cand->column, box);
            s->decoded[cand->column] = 1;
        }

        int suppressed = 0;
        for (int k = 0; k < kept && !suppressed; k++) {
            if (out[k].cls == cand->cls &&
                det_iou(box, s->kept_box + (size_t)k * 4) > cfg->iou)
                suppressed = 1;
        }
        if (suppressed)
            continue;

        memcpy(s->kept_box + (size_t)kept * 4, box, 4 * sizeof(float));
        out[kept].x1 = box[0];
        out[kept].y1 = box[1];
        out[kept].x2 = box[2];
        out[kept].y2 = box[3];
        out[kept].conf = cand->conf;
        out[kept].cls = cand->cls;
        kept++;
    }
    return kept;
}

/* Steps 1 to 4 for one image; out has room for cfg->max_det boxes. */
static int nms_image(const struct det_layout *l,
                     const struct det_nms_config *cfg,
                     const struct nms_view *v, struct det_box *out,
                     int *count)
{
    struct nms_scratch s;
    int rc;

    *count = 0;
    if (v->columns == 0 || !(cfg->conf < 1.0f))
        return 0;
    rc = nms_scratch_init(&s, v->columns, cfg->max_det);
    if (rc != 0)
        return rc;

    if (cfg->multi_label)
        rc = threshold_multi_label(l, cfg->conf, v, &s.list);
    else
        rc = threshold_best_class(l, cfg->conf, v, s.best, s.best_class,
                                  &s.list);
    if (rc == 0) {
        size_t selected = s.list.count;

        if (selected > (size_t)cfg->max_nms) {
            selected = (size_t)cfg->max_nms;
            candidate_select(s.list.items, s.list.count, selected);
        }
        if (selected > 0)
            qsort(s.list.items, selected, sizeof(*s.list.items),
                  candidate_compare);
        *count = suppress(l, cfg, v, &s, selected, out);
    }
    nms_scratch_free(&s);
    return rc;
}

static int nms_check(const struct det_layout *l,
                     const struct det_nms_config *cfg, int batch,
                     const struct det_box *boxes, const int *counts)
{
    if (l == NULL || cfg == NULL || batch < 0)
        return -EINVAL;
    if (batch > 0 && (boxes == NULL || counts == NULL))
        return -EINVAL;
    if (l->nc < 1 || l->reg_max < 1 || l->reg_max > DET_REG_MAX ||
        l->anchors < 0)
        return -EINVAL;
    if (cfg->max_det < 1 || cfg->max_nms < 1 || isnan(cfg->conf) ||
        !(cfg->iou >= 0.0f && cfg->iou <= 1.0f))
        return -EINVAL;
    return 0;
}

int cpu_det_decode_nms(struct kctx *ctx, const struct det_layout *layout,
                       const struct det_nms_config *cfg, int batch,
                       const float *pred, struct det_box *boxes, int *counts)
{
    int rc = nms_check(layout, cfg, batch, boxes, counts);

    if (rc != 0)
        return rc;
    if (batch > 0 && layout->anchors > 0 && pred == NULL)
        return -EINVAL;

    size_t per_image = (size_t)det_outputs(layout) * (size_t)layout->anchors;
    int threads = cpu_thread_count(ctx);

#pragma omp parallel for schedule(static) num_threads(threads) \
    reduction(min : rc)
    for (int i = 0; i < batch; i++) {
        struct nms_view v = {pred != NULL ? pred + (size_t)i * per_image
                                          : NULL,
                             (size_t)layout->anchors, 1, layout->anchors,
                             NULL};
        int image_rc = nms_image(layout, cfg, &v,
                                 boxes + (size_t)i * cfg->max_det,
                                 &counts[i]);
        rc = image_rc < rc ? image_rc : rc;
    }
    return rc;
}

/* The CUDA path's host stage. columns holds, anchor after anchor, the no
 * values of every anchor that the device found to have a candidate:
 * image i's are columns image_first[i] .. image_first[i + 1] - 1, and
 * anchors[j] is column j's anchor index in its image, ascending within
 * an image. Since no other anchor has a score over conf, the result
 * equals cpu_det_decode_nms on the whole output. */
int cpu_det_nms_gathered(const struct det_layout *layout,
                         const struct det_nms_config *cfg, int batch,
                         const float *columns, const int *image_first,
                         const int *anchors, int threads,
                         struct det_box *boxes, int *counts)
{
    int rc = nms_check(layout, cfg, batch, boxes, counts);

    if (rc != 0)
        return rc;
    if (batch > 0 && image_first == NULL)
        return -EINVAL;

    size_t no = (size_t)det_outputs(layout);

#pragma omp parallel for schedule(static) \
    num_threads(threads > 0 ? threads : cpu_thread_count(NULL)) \
    reduction(min : rc)
    for (int i = 0; i < batch; i++) {
        int first = image_first[i];
        int n = image_first[i + 1] - first;
        struct nms_view v = {n > 0 ? columns + (size_t)first * no : NULL,
                             1, no, n, n > 0 ? anchors + first : NULL};
        int image_rc = nms_image(layout, cfg, &v,
                                 boxes + (size_t)i * cfg->max_det,
                                 &counts[i]);
        rc = image_rc < rc ? image_rc : rc;
    }
    return rc;
}
