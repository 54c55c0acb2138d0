/*
 * Tests of the detection metrics with values worked out by hand in the
 * comments.
 *
 * Two facts recur. A class whose detections give recall 1 at precision 1
 * has the envelope 1 on recall [0, 1) and the added point (1, 0), so its
 * 101 samples are 1 at recall 0 .. 0.99 and 0 at recall 1. The trapezoid
 * rule then gives 0.99 * 1 + 0.01 * (1 + 0) / 2 = 0.995, the AP of a
 * perfect detector. A detection counts at thresholds 0.50, 0.55, ... up
 * to its IoU, so an IoU of 0.72 matches at 0.50 .. 0.70, 5 of the 10.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/det_metrics.h"

#define TOL 1e-9

static struct det_box det(float x1, float y1, float x2, float y2, float conf,
                          int cls)
{
    struct det_box b = {x1, y1, x2, y2, conf, cls};
    return b;
}

static struct det_gt gt_box(float x1, float y1, float x2, float y2, int cls)
{
    struct det_gt g = {0, cls, x1, y1, x2, y2};
    return g;
}

static struct det_metrics *metrics_new(int nc)
{
    struct det_metrics *m = NULL;
    struct error err = {0};

    assert_int_equal(det_metrics_create(nc, &m, &err), 0);
    assert_non_null(m);
    return m;
}

static void add_image(struct det_metrics *m, const struct det_box *pred,
                      int npred, const struct det_gt *gt, int ngt)
{
    struct error err = {0};

    if (det_metrics_add(m, pred, npred, gt, ngt, &err) != 0)
        fail_msg("det_metrics_add: %s", err.msg);
}

static struct det_scores compute(struct det_metrics *m, double *ap50,
                                 double *ap)
{
    struct det_scores s;
    struct error err = {0};

    if (det_metrics_compute(m, &s, ap50, ap, &err) != 0)
        fail_msg("det_metrics_compute: %s", err.msg);
    return s;
}

/* ---- AP ------------------------------------------------------------------ */

static void ap_perfect_detector(void **state)
{
    struct det_metrics *m = metrics_new(2);
    struct det_gt gt[] = {gt_box(0, 0, 10, 10, 0), gt_box(20, 20, 40, 30, 1)};
    struct det_box pred[] = {det(0, 0, 10, 10, 0.9f, 0),
                             det(20, 20, 40, 30, 0.8f, 1)};
    double ap50[2], ap[2];

    (void)state;
    add_image(m, pred, 2, gt, 2);
    struct det_scores s = compute(m, ap50, ap);

    assert_float_equal(s.map50, 0.995, TOL);
    assert_float_equal(s.map50_95, 0.995, TOL);
    assert_float_equal(ap50[0], 0.995, TOL);
    assert_float_equal(ap[1], 0.995, TOL);
    /* For conf thresholds up to 0.8 both classes have P = R = 1, and the
     * smoothed mean F1 is largest there, first at threshold 0. */
    assert_float_equal(s.precision, 1.0, TOL);
    assert_float_equal(s.recall, 1.0, TOL);
    /* 0.1 * 0.995 + 0.9 * 0.995 */
    assert_float_equal(s.fitness, 0.995, TOL);
    assert_int_equal(s.images, 1);
    assert_int_equal(s.instances, 2);
    det_metrics_free(m);
}

static void ap_false_positive_first(void **state)
{
    struct det_metrics *m = metrics_new(1);
    struct det_gt gt[] = {gt_box(0, 0, 10, 10, 0)};
    struct det_box pred[] = {det(50, 50, 60, 60, 0.9f, 0),
                             det(0, 0, 10, 10, 0.8f, 0)};

    (void)state;
    add_image(m, pred, 2, gt, 1);
    struct det_scores s = compute(m, NULL, NULL);

    /* Ranked FP, TP: recall 0, 1 and precision 0, 0.5. With the added
     * ends, mrec = 0 0 1 1 and mpre = 1 0 0.5 0, envelope 1 0.5 0.5 0.
     * Recall 0 samples the last point at 0, 0.5, and so does every
     * recall up to 0.99; recall 1 samples 0. AP = 0.99 * 0.5 + 0.01 *
     * 0.25 = 0.4975. */
    assert_float_equal(s.map50, 0.4975, TOL);
    assert_float_equal(s.map50_95, 0.4975, TOL);
    /* Conf thresholds up to 0.8 give P 0.5, R 1 (F1 2/3), the best. */
    assert_float_equal(s.precision, 0.5, TOL);
    assert_float_equal(s.recall, 1.0, TOL);
    det_metrics_free(m);
}

static void ap_interpolated_by_hand(void **state)
{
    struct det_metrics *m = metrics_new(1);
    struct det_gt gt[] = {gt_box(0, 0, 10, 10, 0), gt_box(20, 0, 30, 10, 0)};
    struct det_box pred[] = {det(0, 0, 10, 10, 0.9f, 0),
                             det(50, 50, 60, 60, 0.8f, 0),
                             det(20, 0, 30, 10, 0.7f, 0)};

    (void)state;
    add_image(m, pred, 3, gt, 2);
    struct det_scores s = compute(m, NULL, NULL);

    /* Ranked TP, FP, TP with 2 ground-truth boxes: recall 0.5 0.5 1,
     * precision 1 0.5 2/3. mrec = 0 0.5 0.5 1 1, mpre = 1 1 0.5 2/3 0,
     * envelope 1 1 2/3 2/3 0. Samples: 1 at recall 0 .. 0.49, 2/3 at
     * 0.50 .. 0.99 (0.5 takes the last of the equal recalls), 0 at 1.
     * Trapezoids: 49 * 0.01 * 1 + 0.01 * (1 + 2/3) / 2
     * + 49 * 0.01 * 2/3 + 0.01 * (2/3) / 2
     * = 0.49 + 1/120 + 0.98/3 + 1/300 = 0.8283333... */
    double expected = 0.49 + 1.0 / 120 + 0.98 / 3 + 1.0 / 300;
    assert_float_equal(s.map50, expected, TOL);
    assert_float_equal(s.map50_95, expected, TOL);
    det_metrics_free(m);
}

static void ap_no_predictions(void **state)
{
    struct det_metrics *m = metrics_new(3);
    struct det_gt gt[] = {gt_box(0, 0, 10, 10, 2)};
    double ap50[3] = {-1, -1, -1};

    (void)state;
    add_image(m, NULL, 0, gt, 1);
    struct det_scores s = compute(m, ap50, NULL);

    assert_float_equal(s.map50, 0.0, 0.0);
    assert_float_equal(s.map50_95, 0.0, 0.0);
    assert_float_equal(s.precision, 0.0, 0.0);
    assert_float_equal(s.recall, 0.0, 0.0);
    assert_float_equal(s.fitness, 0.0, 0.0);
    assert_float_equal(ap50[2], 0.0, 0.0);
    assert_int_equal(s.instances, 1);
    det_metrics_free(m);
}

static void ap_no_ground_truth(void **state)
{
    struct det_metrics *m = metrics_new(2);
    struct det_box pred[] = {det(0, 0, 10, 10, 0.9f, 0)};

    (void)state;
    add_image(m, pred, 1, NULL, 0);
    add_image(m, NULL, 0, NULL, 0);
    struct det_scores s = compute(m, NULL, NULL);

    assert_false(isnan(s.map50));
    assert_float_equal(s.map50, 0.0, 0.0);
    assert_float_equal(s.map50_95, 0.0, 0.0);
    assert_float_equal(s.precision, 0.0, 0.0);
    assert_float_equal(s.recall, 0.0, 0.0);
    assert_int_equal(s.images, 2);
    assert_int_equal(s.instances, 0);
    det_metrics_free(m);
}

static void ap_empty_accumulator(void **state)
{
    struct det_metrics *m = metrics_new(1);

    (void)state;
    struct det_scores s = compute(m, NULL, NULL);
    assert_float_equal(s.map50, 0.0, 0.0);
    assert_int_equal(s.images, 0);
    det_metrics_free(m);
}

static void ap_classes_absent_from_gt(void **state)
{
    struct det_metrics *m = metrics_new(3);
    struct det_gt gt[] = {gt_box(0, 0, 10, 10, 0)};
    struct det_box only_absent[] = {det(0, 0, 10, 10, 0.9f, 1)};
    struct det_box perfect[] = {det(0, 0, 10, 10, 0.9f, 0),
                                det(0, 0, 10, 10, 0.95f, 2)};
    double ap50[3];

    (void)state;
    /* Only detections of class 1, which has no ground truth: class 0
     * has AP 0 and is the only class averaged. */
    add_image(m, only_absent, 1, gt, 1);
    struct det_scores s = compute(m, NULL, NULL);
    assert_float_equal(s.map50, 0.0, 0.0);
    det_metrics_free(m);

    /* Class 0 perfect, plus an FP of class 2 (no ground truth) ranked
     * above it: class 2 enters no average, so mAP50 is class 0's
     * 0.995. */
    m = metrics_new(3);
    add_image(m, perfect, 2, gt, 1);
    s = compute(m, ap50, NULL);
    assert_float_equal(s.map50, 0.995, TOL);
    assert_float_equal(ap50[0], 0.995, TOL);
    assert_float_equal(ap50[2], 0.0, 0.0);
    assert_float_equal(s.precision, 1.0, TOL);
    det_metrics_free(m);
}

static void ap_ties_keep_input_order(void **state)
{
    struct det_gt gt[] = {gt_box(0, 0, 10, 10, 0)};
    struct det_box tp_first[] = {det(0, 0, 10, 10, 0.5f, 0),
                                 det(50, 50, 60, 60, 0.5f, 0)};
    struct det_box fp_first[] = {det(50, 50, 60, 60, 0.5f, 0),
                                 det(0, 0, 10, 10, 0.5f, 0)};

    (void)state;
    /* Equal confidence: the detection added first ranks first. TP, FP
     * reaches recall 1 at precision 1 (0.995); FP, TP is the case of
     * ap_false_positive_first (0.4975). */
    struct det_metrics *m = metrics_new(1);
    add_image(m, tp_first, 2, gt, 1);
    struct det_scores s = compute(m, NULL, NULL);
    assert_float_equal(s.map50, 0.995, TOL);
    det_metrics_free(m);

    m = metrics_new(1);
    add_image(m, fp_first, 2, gt, 1);
    s = compute(m, NULL, NULL);
    assert_float_equal(s.map50, 0.4975, TOL);
    det_metrics_free(m);

    /* Across images the earlier image ranks first: the FP of image 0
     * before the TP of image 1. */
    m = metrics_new(1);
    add_image(m, &fp_first[0], 1, NULL, 0);
    add_image(m, &fp_first[1], 1, gt, 1);
    s = compute(m, NULL, NULL);
    assert_float_equal(s.map50, 0.4975, TOL);
    det_metrics_free(m);
}

/* ---- Matching ------------------------------------------------------------ */

static void map_iou_072_counts_five(void **state)
{
    struct det_metrics *m = metrics_new(1);
    /* Ground truth 100 x 100, detection 100 x 72 inside it: IoU 7200 /
     * 10000 = 0.72. */
    struct det_gt gt[] = {gt_box(0, 0, 100, 100, 0)};
    struct det_box pred[] = {det(0, 0, 100, 72, 0.9f, 0)};
    double ap[1];

    (void)state;
    add_image(m, pred, 1, gt, 1);
    struct det_scores s = compute(m, NULL, ap);

    /* TP at 0.50 .. 0.70 (AP 0.995 each), FP at 0.75 .. 0.95 (AP 0):
     * mAP50-95 = 0.995 * 5 / 10 = 0.4975. */
    assert_float_equal(s.map50, 0.995, TOL);
    assert_float_equal(s.map50_95, 0.4975, TOL);
    assert_float_equal(ap[0], 0.4975, TOL);
    /* 0.1 * 0.995 + 0.9 * 0.4975 = 0.0995 + 0.44775 */
    assert_float_equal(s.fitness, 0.54725, TOL);
    det_metrics_free(m);
}

static void match_iou_at_threshold_counts(void **state)
{
    struct det_metrics *m = metrics_new(1);
    /* IoU exactly 0.5: detection (0, 0, 10, 10) against (0, 0, 10, 20),
     * intersection 100, union 200. IoU >= 0.50 matches, so mAP50 is
     * 0.995, and 0.55 .. 0.95 do not (0.995 / 10 = 0.0995). */
    struct det_gt gt[] = {gt_box(0, 0, 10, 20, 0)};
    struct det_box pred[] = {det(0, 0, 10, 10, 0.9f, 0)};

    (void)state;
    add_image(m, pred, 1, gt, 1);
    struct det_scores s = compute(m, NULL, NULL);
    assert_float_equal(s.map50, 0.995, TOL);
    assert_float_equal(s.map50_95, 0.0995, TOL);
    det_metrics_free(m);
}

static void match_each_box_once(void **state)
{
    struct det_metrics *m = metrics_new(1);
    /* Two detections on one ground-truth box: the higher IoU (the exact
     * box, IoU 1) takes it, the other (IoU 0.9) is an FP. Ranked by conf
     * the FP (0.9) comes first: the ap_false_positive_first case. */
    struct det_gt gt[] = {gt_box(0, 0, 10, 10, 0)};
    struct det_box pred[] = {det(0, 0, 10, 9, 0.9f, 0),
                             det(0, 0, 10, 10, 0.8f, 0)};

    (void)state;
    add_image(m, pred, 2, gt, 1);
    struct det_scores s = compute(m, NULL, NULL);
    assert_float_equal(s.map50, 0.4975, TOL);
    det_metrics_free(m);
}

static void match_needs_equal_class(void **state)
{
    struct det_metrics *m = metrics_new(2);
    struct det_gt gt[] = {gt_box(0, 0, 10, 10, 0)};
    struct det_box pred[] = {det(0, 0, 10, 10, 0.9f, 1)};
    double ap50[2];

    (void)state;
    add_image(m, pred, 1, gt, 1);
    struct det_scores s = compute(m, ap50, NULL);
    assert_float_equal(s.map50, 0.0, 0.0);
    assert_float_equal(ap50[0], 0.0, 0.0);
    det_metrics_free(m);
}

static void match_across_images(void **state)
{
    struct det_metrics *m = metrics_new(1);
    /* Image 0's detection lies on image 1's box: boxes of different
     * images never match, so image 0 has an FP (conf 0.9) and image 1
     * a TP (conf 0.6), as in ap_false_positive_first but with two
     * images: 0.4975. */
    struct det_gt gt0[] = {gt_box(100, 100, 110, 110, 0)};
    struct det_gt gt1[] = {gt_box(0, 0, 10, 10, 0)};
    struct det_box pred0[] = {det(0, 0, 10, 10, 0.9f, 0)};
    struct det_box pred1[] = {det(0, 0, 10, 10, 0.6f, 0)};

    (void)state;
    add_image(m, pred0, 1, gt0, 1);
    add_image(m, pred1, 1, gt1, 1);
    struct det_scores s = compute(m, NULL, NULL);
    /* 2 ground-truth boxes, ranked FP, TP: recall 0, 0.5, precision 0,
     * 0.5. mrec 0 0 0.5 1, mpre 1 0 0.5 0, envelope 1 0.5 0.5 0: samples
     * 0.5 on recall 0 .. 0.5, then falling linearly from 0.5 at recall
     * 0.5 to 0 at recall 1. AP = 0.5 * 0.5 + 0.5 * 0.5 / 2 = 0.375. */
    assert_float_equal(s.map50, 0.375, TOL);
    assert_int_equal(s.instances, 2);
    det_metrics_free(m);
}

/* ---- Input checks -------------------------------------------------------- */

static void add_rejects_bad_class(void **state)
{
    struct det_metrics *m = metrics_new(2);
    struct det_box pred[] = {det(0, 0, 10, 10, 0.9f, 2)};
    struct det_gt gt[] = {gt_box(0, 0, 10, 10, -1)};
    struct error err = {0};

    (void)state;
    assert_int_equal(det_metrics_add(m, pred, 1, NULL, 0, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "class 2"));
    assert_int_equal(det_metrics_add(m, NULL, 0, gt, 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "class -1"));

    /* Nothing was added. */
    struct det_scores s = compute(m, NULL, NULL);
    assert_int_equal(s.images, 0);
    assert_int_equal(s.instances, 0);
    det_metrics_free(m);
}

static void create_rejects_zero_classes(void **state)
{
    struct det_metrics *m = (struct det_metrics *)&m;
    struct error err = {0};

    (void)state;
    assert_int_equal(det_metrics_create(0, &m, &err), -EINVAL);
    assert_null(m);
    assert_non_null(strstr(err.msg, "0"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ap_perfect_detector),
        cmocka_unit_test(ap_false_positive_first),
        cmocka_unit_test(ap_interpolated_by_hand),
        cmocka_unit_test(ap_no_predictions),
        cmocka_unit_test(ap_no_ground_truth),
        cmocka_unit_test(ap_empty_accumulator),
        cmocka_unit_test(ap_classes_absent_from_gt),
        cmocka_unit_test(ap_ties_keep_input_order),
        cmocka_unit_test(map_iou_072_counts_five),
        cmocka_unit_test(match_iou_at_threshold_counts),
        cmocka_unit_test(match_each_box_once),
        cmocka_unit_test(match_needs_equal_class),
        cmocka_unit_test(match_across_images),
        cmocka_unit_test(add_rejects_bad_class),
        cmocka_unit_test(create_rejects_zero_classes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
