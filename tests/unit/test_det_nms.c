/*
 * Tests of cpu_det_decode_nms: decoding of hand-made head outputs whose
 * boxes and scores are worked out in the comments, the NMS rules (the
 * IoU threshold itself does not suppress, classes never suppress each
 * other, multi_label, the max_det and max_nms caps, the tie order), and
 * random outputs against a plain reference that sorts every candidate.
 *
 * Hand-made outputs use one level of stride 8 on a 32 x 8 input: four
 * anchors in a row, at points (4, 4), (12, 4), (20, 4) and (28, 4).
 * A side's distance in bins is set by giving one bin (or two equal bins)
 * the logit 50 and the others 0. exp(-50) is about 2e-22, below half a
 * float ulp of the sums 1 and 2, so the expected bin index is exactly
 * that bin (or the mean of the two) and distances are exact multiples of
 * 4 px.
 */
#include "kernel_check.h"

#include <errno.h>
#include <time.h>

#include "detect.h"

static struct kctx ctx;

static int group_setup(void **state)
{
    (void)state;
    cpu_kctx_init(&ctx, 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    cpu_kctx_free(&ctx);
    return 0;
}

/* ---- Hand-made head outputs -------------------------------------------- */

/* A head output of batch images for layout l; class logits start at -10
 * (score 4.5e-5, below every conf used here). */
struct head {
    struct det_layout l;
    int batch;
    float *pred;
};

static void head_init(struct head *h, int nc, int batch, int img_h,
                      int img_w)
{
    static const int stride8[] = {8};

    assert_int_equal(det_layout_init(&h->l, nc, img_h, img_w, stride8, 1),
                     0);
    h->batch = batch;
    h->pred = new_floats((size_t)batch * det_outputs(&h->l) * h->l.anchors);
    for (int i = 0; i < batch; i++)
        for (int c = 0; c < nc; c++)
            for (int a = 0; a < h->l.anchors; a++)
                h->pred[((size_t)i * det_outputs(&h->l) + 64 + c) *
                            h->l.anchors + a] = -10.0f;
}

static float *head_at(struct head *h, int image, int channel, int anchor)
{
    size_t no = (size_t)det_outputs(&h->l);

    return &h->pred[((size_t)image * no + channel) * h->l.anchors + anchor];
}

/* Set the distance of each side (left, top, right, bottom) in bins; a
 * value of b + 0.5 gives bins b and b + 1 equal weight. */
static void head_set_box(struct head *h, int image, int anchor,
                         const float bins[4])
{
    for (int side = 0; side < 4; side++) {
        int lo = (int)floorf(bins[side]);
        int hi = bins[side] > (float)lo ? lo + 1 : lo;

        for (int b = 0; b < DET_REG_MAX; b++)
            *head_at(h, image, side * DET_REG_MAX + b, anchor) =
                (b == lo || b == hi) ? 50.0f : 0.0f;
    }
}

static void head_set_logit(struct head *h, int image, int anchor, int cls,
                           float logit)
{
    *head_at(h, image, 4 * DET_REG_MAX + cls, anchor) = logit;
}

static void head_free(struct head *h)
{
    free(h->pred);
}

static struct det_nms_config config(float conf, float iou, int max_det,
                                    int multi_label)
{
    struct det_nms_config c = {conf, iou, max_det, 30000, multi_label};
    return c;
}

static float sigmoid_ref(float x)
{
    return (float)(1.0 / (1.0 + exp(-(double)x)));
}

/* Run the decoder on h; boxes has room for max_det per image. */
static int run_nms(struct head *h, const struct det_nms_config *cfg,
                   struct det_box *boxes, int *counts)
{
    return cpu_det_decode_nms(&ctx, &h->l, cfg, h->batch, h->pred, boxes,
                              counts);
}

/* ---- Decoding ------------------------------------------------------------ */

static void decode_one_hot(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.25f, 0.7f, 10, 0);
    struct det_box boxes[10];
    int count = -1;

    (void)state;
    head_init(&h, 1, 1, 8, 32);
    /* Anchor 1 at (12, 4), bins l 1, t 0, r 3, b 0 times stride 8:
     * x1 = 12 - 8 = 4, y1 = 4 - 0 = 4, x2 = 12 + 24 = 36, y2 = 4. */
    head_set_box(&h, 0, 1, (const float[4]){1, 0, 3, 0});
    head_set_logit(&h, 0, 1, 0, 2.0f);
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), 0);

    assert_int_equal(count, 1);
    assert_float_equal(boxes[0].x1, 4.0f, 0.0f);
    assert_float_equal(boxes[0].y1, 4.0f, 0.0f);
    assert_float_equal(boxes[0].x2, 36.0f, 0.0f);
    assert_float_equal(boxes[0].y2, 4.0f, 0.0f);
    /* sigmoid(2) = 1 / (1 + e^-2) = 0.880797 */
    assert_float_equal(boxes[0].conf, 0.880797f, 1e-6f);
    assert_int_equal(boxes[0].cls, 0);
    head_free(&h);
}

static void decode_two_bins(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.25f, 0.7f, 10, 0);
    struct det_box boxes[10];
    int count = -1;

    (void)state;
    head_init(&h, 1, 1, 8, 32);
    /* Anchor 3 at (28, 4). Bins 1 and 2 equal: expectation 1.5, 12 px;
     * bins 14 and 15: 14.5, 116 px. x1 = 28 - 12 = 16, y1 = 4 - 116 =
     * -112, x2 = 28 + 4 = 32 (0.5 bin), y2 = 4 + 12 = 16. */
    head_set_box(&h, 0, 3, (const float[4]){1.5f, 14.5f, 0.5f, 1.5f});
    head_set_logit(&h, 0, 3, 0, 0.0f);
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), 0);

    assert_int_equal(count, 1);
    assert_float_equal(boxes[0].x1, 16.0f, 0.0f);
    assert_float_equal(boxes[0].y1, -112.0f, 0.0f);
    assert_float_equal(boxes[0].x2, 32.0f, 0.0f);
    assert_float_equal(boxes[0].y2, 16.0f, 0.0f);
    /* sigmoid(0) = 0.5 */
    assert_float_equal(boxes[0].conf, 0.5f, 0.0f);
    head_free(&h);
}

static void decode_second_level(void **state)
{
    static const int strides[] = {8, 16};
    struct det_layout l;
    struct det_nms_config cfg = config(0.25f, 0.7f, 10, 0);
    struct det_box box;
    int count = -1;

    (void)state;
    /* 32 x 32 input: level 0 is 4 x 4 (anchors 0-15), level 1 is 2 x 2
     * (anchors 16-19). Anchor 19 is cell (1, 1) of stride 16, point
     * (24, 24). All bins 1: every side 16 px, box (8, 8, 40, 40). */
    assert_int_equal(det_layout_init(&l, 1, 32, 32, strides, 2), 0);
    float *pred = new_floats((size_t)det_outputs(&l) * l.anchors);
    for (int a = 0; a < l.anchors; a++)
        pred[64 * l.anchors + a] = -10.0f;
    for (int side = 0; side < 4; side++)
        pred[(side * 16 + 1) * l.anchors + 19] = 50.0f;
    pred[64 * l.anchors + 19] = 1.0f;
    assert_int_equal(cpu_det_decode_nms(&ctx, &l, &cfg, 1, pred, &box,
                                        &count),
                     0);

    assert_int_equal(count, 1);
    assert_float_equal(box.x1, 8.0f, 0.0f);
    assert_float_equal(box.y1, 8.0f, 0.0f);
    assert_float_equal(box.x2, 40.0f, 0.0f);
    assert_float_equal(box.y2, 40.0f, 0.0f);
    free(pred);
}

/* ---- Suppression --------------------------------------------------------- */

/* Two boxes with IoU exactly 0.5: anchor 0 at (4, 4) with bins
 * (0.5, 0.5, 1.5, 0.5) is (0, 0, 16, 8), area 128; anchor 1 at (12, 4)
 * with all bins 0.5 is (8, 0, 16, 8), area 64. Intersection 64, union
 * 128 + 64 - 64 = 128, IoU 64 / 128 = 0.5, exact in float. */
static void head_half_overlap(struct head *h, int cls0, int cls1)
{
    head_init(h, 2, 1, 8, 32);
    head_set_box(h, 0, 0, (const float[4]){0.5f, 0.5f, 1.5f, 0.5f});
    head_set_box(h, 0, 1, (const float[4]){0.5f, 0.5f, 0.5f, 0.5f});
    head_set_logit(h, 0, 0, cls0, 3.0f);
    head_set_logit(h, 0, 1, cls1, 2.0f);
}

static void nms_keeps_iou_at_threshold(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.25f, 0.5f, 10, 0);
    struct det_box boxes[10];
    int count = -1;

    (void)state;
    head_half_overlap(&h, 0, 0);
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), 0);

    /* IoU 0.5 is not > 0.5: both stay, anchor 0 (conf 0.95) first. */
    assert_int_equal(count, 2);
    assert_float_equal(boxes[0].x1, 0.0f, 0.0f);
    assert_float_equal(boxes[0].x2, 16.0f, 0.0f);
    assert_float_equal(boxes[1].x1, 8.0f, 0.0f);
    assert_float_equal(boxes[1].x2, 16.0f, 0.0f);
    assert_true(boxes[0].conf > boxes[1].conf);
    head_free(&h);
}

static void nms_suppresses_over_threshold(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.25f, 0.49f, 10, 0);
    struct det_box boxes[10];
    int count = -1;

    (void)state;
    head_half_overlap(&h, 0, 0);
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), 0);

    /* IoU 0.5 > 0.49: the lower-scored box of anchor 1 goes. */
    assert_int_equal(count, 1);
    assert_float_equal(boxes[0].x1, 0.0f, 0.0f);
    assert_float_equal(boxes[0].conf, sigmoid_ref(3.0f), 1e-6f);
    head_free(&h);
}

static void nms_keeps_other_classes(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.25f, 0.1f, 10, 0);
    struct det_box boxes[10];
    int count = -1;

    (void)state;
    /* The same pair as above, classes 0 and 1: IoU 0.5 > 0.1, but boxes
     * of different classes never suppress each other. */
    head_half_overlap(&h, 0, 1);
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), 0);

    assert_int_equal(count, 2);
    assert_int_equal(boxes[0].cls, 0);
    assert_int_equal(boxes[1].cls, 1);
    head_free(&h);
}

static void nms_multi_label_off(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.25f, 0.7f, 10, 0);
    struct det_box boxes[10];
    int count = -1;

    (void)state;
    /* One anchor, classes 0 and 2 over conf (scores 0.731 and 0.881),
     * class 1 below (0.119). Only the best class, 2, counts. */
    head_init(&h, 3, 1, 8, 32);
    head_set_box(&h, 0, 2, (const float[4]){1, 1, 1, 1});
    head_set_logit(&h, 0, 2, 0, 1.0f);
    head_set_logit(&h, 0, 2, 1, -2.0f);
    head_set_logit(&h, 0, 2, 2, 2.0f);
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), 0);

    assert_int_equal(count, 1);
    assert_int_equal(boxes[0].cls, 2);
    assert_float_equal(boxes[0].conf, sigmoid_ref(2.0f), 1e-6f);
    head_free(&h);
}

static void nms_multi_label_on(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.25f, 0.7f, 10, 1);
    struct det_box boxes[10];
    int count = -1;

    (void)state;
    /* The anchor of nms_multi_label_off: the box enters once for class
     * 2 and once for class 0 (IoU 1, but different classes), in
     * descending conf. */
    head_init(&h, 3, 1, 8, 32);
    head_set_box(&h, 0, 2, (const float[4]){1, 1, 1, 1});
    head_set_logit(&h, 0, 2, 0, 1.0f);
    head_set_logit(&h, 0, 2, 1, -2.0f);
    head_set_logit(&h, 0, 2, 2, 2.0f);
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), 0);

    assert_int_equal(count, 2);
    assert_int_equal(boxes[0].cls, 2);
    assert_int_equal(boxes[1].cls, 0);
    assert_float_equal(boxes[1].conf, sigmoid_ref(1.0f), 1e-6f);
    assert_float_equal(boxes[1].x1, boxes[0].x1, 0.0f);
    assert_float_equal(boxes[1].y2, boxes[0].y2, 0.0f);
    head_free(&h);
}

static void nms_tie_order(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.25f, 0.7f, 10, 1);
    struct det_box boxes[10];
    int count = -1;

    (void)state;
    /* Equal logits 1.5 everywhere: anchors 3 and 0 (disjoint boxes of
     * 8 x 8 around their points), each with classes 1 and 0. The tie
     * rule gives anchor 0 class 0, anchor 0 class 1, anchor 3 class 0,
     * anchor 3 class 1. */
    head_init(&h, 2, 1, 8, 32);
    for (int a = 0; a < 4; a += 3) {
        head_set_box(&h, 0, a, (const float[4]){0.5f, 0.5f, 0.5f, 0.5f});
        head_set_logit(&h, 0, a, 0, 1.5f);
        head_set_logit(&h, 0, a, 1, 1.5f);
    }
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), 0);

    assert_int_equal(count, 4);
    assert_float_equal(boxes[0].x1, 0.0f, 0.0f);
    assert_int_equal(boxes[0].cls, 0);
    assert_float_equal(boxes[1].x1, 0.0f, 0.0f);
    assert_int_equal(boxes[1].cls, 1);
    assert_float_equal(boxes[2].x1, 24.0f, 0.0f);
    assert_int_equal(boxes[2].cls, 0);
    assert_float_equal(boxes[3].x1, 24.0f, 0.0f);
    assert_int_equal(boxes[3].cls, 1);
    head_free(&h);
}

/* Four disjoint boxes, 8 x 8 around each anchor, class 0, with logits
 * 0, 1, 2, 3 on anchors 0 to 3. */
static void head_four_disjoint(struct head *h)
{
    head_init(h, 1, 1, 8, 32);
    for (int a = 0; a < 4; a++) {
        head_set_box(h, 0, a, (const float[4]){0.5f, 0.5f, 0.5f, 0.5f});
        head_set_logit(h, 0, a, 0, (float)a);
    }
}

static void nms_max_det_cap(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.25f, 0.7f, 2, 0);
    struct det_box boxes[2];
    int count = -1;

    (void)state;
    head_four_disjoint(&h);
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), 0);

    /* The two highest: anchor 3 (x1 = 28 - 4 = 24), then anchor 2. */
    assert_int_equal(count, 2);
    assert_float_equal(boxes[0].x1, 24.0f, 0.0f);
    assert_float_equal(boxes[1].x1, 16.0f, 0.0f);
    head_free(&h);
}

static void nms_max_nms_cap(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.25f, 0.7f, 10, 0);
    struct det_box boxes[10];
    int count = -1;

    (void)state;
    /* Scores 0.5, 0.73, 0.88, 0.95 all pass conf; max_nms 3 drops the
     * lowest (anchor 0) before suppression. */
    head_four_disjoint(&h);
    cfg.max_nms = 3;
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), 0);

    assert_int_equal(count, 3);
    assert_float_equal(boxes[2].x1, 8.0f, 0.0f);
    head_free(&h);
}

static void nms_conf_is_strict(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.5f, 0.7f, 10, 0);
    struct det_box boxes[10];
    int count = -1;

    (void)state;
    /* Anchor 0's score is sigmoid(0) = 0.5, not > conf 0.5. */
    head_four_disjoint(&h);
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), 0);

    assert_int_equal(count, 3);
    assert_true(boxes[2].conf > 0.5f);
    head_free(&h);
}

static void nms_empty_input(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.001f, 0.7f, 10, 1);
    struct det_box boxes[20];
    int counts[2] = {-1, -1};

    (void)state;
    /* Every score is sigmoid(-10) = 4.5e-5 < 0.001. */
    head_init(&h, 2, 2, 8, 32);
    assert_int_equal(run_nms(&h, &cfg, boxes, counts), 0);
    assert_int_equal(counts[0], 0);
    assert_int_equal(counts[1], 0);

    /* An empty batch is no work. */
    assert_int_equal(cpu_det_decode_nms(&ctx, &h.l, &cfg, 0, NULL, NULL,
                                        NULL),
                     0);
    head_free(&h);
}

static void nms_batch_offsets(void **state)
{
    struct head h;
    struct det_nms_config cfg = config(0.25f, 0.7f, 3, 0);
    struct det_box boxes[6];
    int counts[2] = {-1, -1};

    (void)state;
    /* Image 0 has nothing; image 1 one box at anchor 2 (x1 = 20 - 8). */
    head_init(&h, 1, 2, 8, 32);
    head_set_box(&h, 1, 2, (const float[4]){1, 1, 1, 1});
    head_set_logit(&h, 1, 2, 0, 4.0f);
    assert_int_equal(run_nms(&h, &cfg, boxes, counts), 0);

    assert_int_equal(counts[0], 0);
    assert_int_equal(counts[1], 1);
    assert_float_equal(boxes[3].x1, 12.0f, 0.0f);
    head_free(&h);
}

static void nms_invalid_config(void **state)
{
    struct head h;
    struct det_box boxes[10];
    int count;

    (void)state;
    head_init(&h, 1, 1, 8, 32);
    struct det_nms_config cfg = config(0.25f, 0.7f, 0, 0);
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), -EINVAL);
    cfg = config(0.25f, 1.5f, 10, 0);
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), -EINVAL);
    cfg = config(NAN, 0.7f, 10, 0);
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), -EINVAL);
    cfg = config(0.25f, 0.7f, 10, 0);
    cfg.max_nms = 0;
    assert_int_equal(run_nms(&h, &cfg, boxes, &count), -EINVAL);
    head_free(&h);
}

/* ---- Random outputs against a reference --------------------------------- */

/* A plain reference: sort every candidate with a full qsort, decode the
 * first max_nms, then keep each one that no kept box of its class
 * overlaps with IoU > iou. */
struct ref_candidate {
    float conf;
    int anchor, cls;
    float box[4];
};

static int ref_compare(const void *pa, const void *pb)
{
    const struct ref_candidate *a = pa, *b = pb;

    if (a->conf != b->conf)
        return a->conf > b->conf ? -1 : 1;
    if (a->anchor != b->anchor)
        return a->anchor < b->anchor ? -1 : 1;
    return (a->cls > b->cls) - (a->cls < b->cls);
}

static int ref_decode_nms(const struct det_layout *l,
                          const struct det_nms_config *cfg,
                          const float *pred, struct det_box *out)
{
    size_t n = 0, A = (size_t)l->anchors;
    struct ref_candidate *cand = calloc(A * l->nc, sizeof(*cand));

    assert_non_null(cand);
    for (int a = 0; a < l->anchors; a++) {
        int best = 0;
        for (int c = 1; c < l->nc; c++)
            if (pred[(64 + c) * A + a] > pred[(64 + best) * A + a])
                best = c;
        for (int c = 0; c < l->nc; c++) {
            float s = 1.0f / (1.0f + expf(-pred[(64 + c) * A + a]));
            if (!(s > cfg->conf) || (!cfg->multi_label && c != best))
                continue;
            cand[n].conf = s;
            cand[n].anchor = a;
            cand[n].cls = c;
            n++;
        }
    }
    qsort(cand, n, sizeof(*cand), ref_compare);
    if (n > (size_t)cfg->max_nms)
        n = (size_t)cfg->max_nms;

    for (size_t i = 0; i < n; i++) {
        float ax, ay, s, d[4];
        for (int side = 0; side < 4; side++) {
            float max = -INFINITY, sum = 0, w = 0;
            for (int b = 0; b < 16; b++)
                max = fmaxf(max, pred[(side * 16 + b) * A + cand[i].anchor]);
            for (int b = 0; b < 16; b++) {
                float e = expf(pred[(side * 16 + b) * A + cand[i].anchor] -
                               max);
                sum += e;
                w += e * (float)b;
            }
            d[side] = w / sum;
        }
        det_anchor(l, cand[i].anchor, &ax, &ay, &s);
        cand[i].box[0] = ax - d[0] * s;
        cand[i].box[1] = ay - d[1] * s;
        cand[i].box[2] = ax + d[2] * s;
        cand[i].box[3] = ay + d[3] * s;
    }

    int kept = 0;
    for (size_t i = 0; i < n && kept < cfg->max_det; i++) {
        int drop = 0;
        for (int k = 0; k < kept; k++) {
            const float kb[4] = {out[k].x1, out[k].y1, out[k].x2, out[k].y2};
            if (out[k].cls == cand[i].cls &&
                det_iou(cand[i].box, kb) > cfg->iou)
                drop = 1;
        }
        if (drop)
            continue;
        out[kept] = (struct det_box){cand[i].box[0], cand[i].box[1],
                                     cand[i].box[2], cand[i].box[3],
                                     cand[i].conf, cand[i].cls};
        kept++;
    }
    free(cand);
    return kept;
}

/* A random head output: box logits uniform in [-4, 4], class logits in
 * [-9, 1] (scores 1.2e-4 to 0.73). */
static float *random_head(const struct det_layout *l, int batch,
                          uint64_t seed)
{
    struct test_rng rng;
    size_t A = (size_t)l->anchors, no = (size_t)det_outputs(l);
    float *pred = new_floats((size_t)batch * no * A);

    rng_seed(&rng, seed);
    for (int i = 0; i < batch; i++) {
        float *p = pred + (size_t)i * no * A;
        fill_uniform(&rng, p, 64 * A, -4.0f, 4.0f);
        fill_uniform(&rng, p + 64 * A, (no - 64) * A, -9.0f, 1.0f);
    }
    return pred;
}

static void check_same_boxes(const struct det_box *expected, int n_expected,
                             const struct det_box *actual, int n_actual)
{
    assert_int_equal(n_actual, n_expected);
    for (int i = 0; i < n_expected; i++) {
        assert_int_equal(actual[i].cls, expected[i].cls);
        assert_float_equal(actual[i].conf, expected[i].conf, 0.0f);
        assert_float_equal(actual[i].x1, expected[i].x1, 0.0f);
        assert_float_equal(actual[i].y1, expected[i].y1, 0.0f);
        assert_float_equal(actual[i].x2, expected[i].x2, 0.0f);
        assert_float_equal(actual[i].y2, expected[i].y2, 0.0f);
    }
}

static void nms_random_matches_reference(void **state)
{
    static const int strides[] = {8, 16, 32};
    struct det_layout l;
    int batch = 3;

    (void)state;
    /* 128 x 96: 16 x 12 + 8 x 6 + 4 x 3 = 252 anchors, 5 classes. */
    assert_int_equal(det_layout_init(&l, 5, 96, 128, strides, 3), 0);
    float *pred = random_head(&l, batch, 11);

    /* multi_label at conf 0.001 gives about 1000 candidates per image;
     * max_nms 400 makes the selection step matter, max_det 60 the cap. */
    struct det_nms_config configs[] = {
        {0.001f, 0.7f, 60, 400, 1},
        {0.001f, 0.5f, 300, 30000, 0},
        {0.25f, 0.45f, 300, 30000, 1},
    };
    for (size_t c = 0; c < sizeof(configs) / sizeof(configs[0]); c++) {
        const struct det_nms_config *cfg = &configs[c];
        struct det_box *boxes = calloc((size_t)batch * cfg->max_det,
                                       sizeof(*boxes));
        struct det_box *expected = calloc(cfg->max_det, sizeof(*expected));
        int counts[3];

        assert_non_null(boxes);
        assert_non_null(expected);
        assert_int_equal(cpu_det_decode_nms(&ctx, &l, cfg, batch, pred,
                                            boxes, counts),
                         0);
        for (int i = 0; i < batch; i++) {
            size_t no = (size_t)det_outputs(&l);
            int n = ref_decode_nms(&l, cfg, pred + i * no * l.anchors,
                                   expected);
            assert_true(n > 0);
            check_same_boxes(expected, n, boxes + (size_t)i * cfg->max_det,
                             counts[i]);
        }
        free(boxes);
        free(expected);
    }
    free(pred);
}

/* The host stage of the CUDA path (kernels/cuda/det_nms.cu), declared
 * here because no header exports it. */
int cpu_det_nms_gathered(const struct det_layout *layout,
                         const struct det_nms_config *cfg, int batch,
                         const float *columns, const int *image_first,
                         const int *anchors, int threads,
                         struct det_box *boxes, int *counts);

static void nms_gathered_matches_full(void **state)
{
    static const int strides[] = {8, 16, 32};
    struct det_layout l;
    struct det_nms_config cfg = {0.001f, 0.6f, 100, 500, 1};
    struct test_rng rng;
    int batch = 3;

    (void)state;
    /* What the device does, done here: flag every anchor with a class
     * logit over -7.5 (below logit(0.001) = -6.9), plus a quarter of the
     * others at random, which must change nothing, then gather their
     * columns anchor-major. Image 2 gets no flagged anchor at all. */
    assert_int_equal(det_layout_init(&l, 5, 96, 128, strides, 3), 0);
    float *pred = random_head(&l, batch, 13);
    size_t A = (size_t)l.anchors, no = (size_t)det_outputs(&l);
    float *columns = new_floats((size_t)batch * A * no);
    int *anchors = calloc((size_t)batch * A, sizeof(int));
    int image_first[4], total = 0;

    assert_non_null(anchors);
    for (size_t k = 64 * A; k < no * A; k++)
        pred[2 * no * A + k] = -20.0f;
    rng_seed(&rng, 14);
    for (int i = 0; i < batch; i++) {
        const float *p = pred + (size_t)i * no * A;

        image_first[i] = total;
        for (size_t a = 0; a < A && i < 2; a++) {
            int flag = rng_uniform(&rng, 0.0f, 1.0f) < 0.25f;
            for (int c = 0; c < l.nc; c++)
                flag |= p[(64 + c) * A + a] > -7.5f;
            if (!flag)
                continue;
            for (size_t ch = 0; ch < no; ch++)
                columns[(size_t)total * no + ch] = p[ch * A + a];
            anchors[total++] = (int)a;
        }
    }
    image_first[batch] = total;

    struct det_box full[300], gathered[300];
    int full_counts[3], gathered_counts[3];
    assert_int_equal(cpu_det_decode_nms(&ctx, &l, &cfg, batch, pred, full,
                                        full_counts),
                     0);
    assert_int_equal(cpu_det_nms_gathered(&l, &cfg, batch, columns,
                                          image_first, anchors, 0,
                                          gathered, gathered_counts),
                     0);
    assert_int_equal(full_counts[2], 0);
    for (int i = 0; i < batch; i++)
        check_same_boxes(full + i * cfg.max_det, full_counts[i],
                         gathered + i * cfg.max_det, gathered_counts[i]);
    assert_true(full_counts[0] > 0);
    free(anchors);
    free(columns);
    free(pred);
}

static double seconds_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void nms_full_size_is_fast(void **state)
{
    static const int strides[] = {8, 16, 32};
    struct det_layout l;
    struct det_nms_config cfg = {0.001f, 0.7f, 300, 30000, 1};
    int batch = 2, counts[2];

    (void)state;
    /* 640 x 640, 80 classes: 8400 anchors, 672,000 scores per image,
     * about 530,000 of them over 0.001 with these logits. */
    assert_int_equal(det_layout_init(&l, 80, 640, 640, strides, 3), 0);
    assert_int_equal(l.anchors, 8400);
    float *pred = random_head(&l, batch, 12);
    struct det_box *boxes = calloc((size_t)batch * 300, sizeof(*boxes));
    assert_non_null(boxes);

    double start = seconds_now();
    assert_int_equal(cpu_det_decode_nms(&ctx, &l, &cfg, batch, pred, boxes,
                                        counts),
                     0);
    double elapsed = seconds_now() - start;
    printf("decode+NMS of 2 x 8400 anchors x 80 classes: %.1f ms\n",
           elapsed * 1e3);
    assert_int_equal(counts[0], 300);
    assert_int_equal(counts[1], 300);
    /* NOTE: a loose bound, because this also runs under the sanitizers
     * on a shared machine; it catches a quadratic sort, not a slow
     * constant factor. */
    assert_true(elapsed < 10.0);
    free(boxes);
    free(pred);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decode_one_hot),
        cmocka_unit_test(decode_two_bins),
        cmocka_unit_test(decode_second_level),
        cmocka_unit_test(nms_keeps_iou_at_threshold),
        cmocka_unit_test(nms_suppresses_over_threshold),
        cmocka_unit_test(nms_keeps_other_classes),
        cmocka_unit_test(nms_multi_label_off),
        cmocka_unit_test(nms_multi_label_on),
        cmocka_unit_test(nms_tie_order),
        cmocka_unit_test(nms_max_det_cap),
        cmocka_unit_test(nms_max_nms_cap),
        cmocka_unit_test(nms_conf_is_strict),
        cmocka_unit_test(nms_empty_input),
        cmocka_unit_test(nms_batch_offsets),
        cmocka_unit_test(nms_invalid_config),
        cmocka_unit_test(nms_random_matches_reference),
        cmocka_unit_test(nms_gathered_matches_full),
        cmocka_unit_test(nms_full_size_is_fast),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
