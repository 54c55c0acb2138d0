/*
 * Detection metrics of a validation run: precision, recall, mAP50 and
 * mAP50-95, with the definitions of Ultralytics' ap_per_class (v8.x),
 * so that results.csv columns compare with its runs.
 *
 * An accumulator takes each image's detections (after NMS) and ground
 * truth as the run goes. It matches them at the ten IoU thresholds 0.50,
 * 0.55, ..., 0.95 and keeps, per detection, only its confidence, class
 * and matched-or-not at each threshold. det_metrics_compute then ranks
 * all detections of the run and derives the scores.
 *
 * - Matching, per image and threshold: pairs of equal class with
 *   IoU >= threshold are taken greedily by IoU, highest first (ties: lower
 *   detection index, then lower ground-truth index), and each detection
 *   and each ground-truth box is used at most once.
 * - AP of a class: detections sorted by confidence, descending. Equal
 *   confidences keep the order in which they were added (image order,
 *   then their order within the image), so results never depend on the
 *   sort algorithm. Cumulative TP and FP give recall = TP / n_gt and
 *   precision = TP / (TP + FP). The points (recall 0, precision 1) and
 *   (recall 1, precision 0) are added, precision is replaced by its
 *   running maximum from the right, sampled at 101 recall points
 *   0, 0.01, ..., 1 by linear interpolation (numpy.interp semantics), and
 *   integrated with the trapezoid rule. At recall 1 the sample is the
 *   added precision 0, so a perfect detector scores 0.995, not 1.
 * - mAP50 and mAP50-95 average over the classes that have ground truth.
 *   Detections of other classes count as false positives of their class
 *   but enter no average.
 * - P and R: per class, precision and recall as functions of the
 *   confidence threshold, sampled at 1000 points in [0, 1]. The mean F1
 *   over classes is smoothed by a centred moving average of 101 points
 *   (edges padded with their end values), and P and R are the class means
 *   at its first maximum.
 * - fitness = 0.1 mAP50 + 0.9 mAP50-95, the score for the best
 *   checkpoint.
 *
 * Without ground truth in the run, or without a single detection that
 * matches at IoU 0.50, every score is 0.
 */
#ifndef TRAINYARD_DET_METRICS_H
#define TRAINYARD_DET_METRICS_H

#include "detect.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* IoU thresholds 0.50, 0.55, ..., 0.95. */
#define DET_IOU_THRESHOLDS 10

struct det_metrics;

struct det_scores {
    double precision, recall, map50, map50_95, fitness;
    int images;    /* images added */
    int instances; /* ground-truth boxes added */
};

/* Create an accumulator for nc classes. Returns 0, -EINVAL when nc < 1,
 * or -ENOMEM. */
int det_metrics_create(int nc, struct det_metrics **out, struct error *err);

/* Free m (may be NULL). */
void det_metrics_free(struct det_metrics *m);

/* Add one image: its detections after NMS and its ground-truth boxes, in
 * the same pixel space. gt[i].image is not read. Returns 0, -EINVAL when
 * a class is outside [0, nc) or a count is negative (nothing is added
 * then), or -ENOMEM. */
int det_metrics_add(struct det_metrics *m, const struct det_box *pred,
                    int npred, const struct det_gt *gt, int ngt,
                    struct error *err);

/* Compute the scores of everything added so far; m is unchanged and can
 * take more images. ap50_per_class and ap_per_class (AP50-95), when not
 * NULL, receive nc values, 0 for classes without ground truth. Returns
 * 0 or -ENOMEM. */
int det_metrics_compute(struct det_metrics *m, struct det_scores *out,
                        double *ap50_per_class, double *ap_per_class,
                        struct error *err);

#ifdef __cplusplus
}
#endif

#endif
