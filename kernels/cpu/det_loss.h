/*
 * The two stages of cpu_det_loss_forward_backward (kernels/detect.h), for
 * the kernels and their tests. The assigner's targets are constants for
 * the gradient, so a test that takes finite differences of the loss runs
 * det_loss_assign once and then det_loss_apply on perturbed predictions.
 */
#ifndef TRAINYARD_KERNELS_CPU_DET_LOSS_H
#define TRAINYARD_KERNELS_CPU_DET_LOSS_H

#include "detect.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Assigner output for one anchor. */
struct det_target {
    int gt;      /* index in the batch's gt array, or -1: negative anchor */
    float score; /* soft target of gt's class; the other classes get 0 */
};

/* Check the arguments shared by both stages. Returns -EINVAL when batch,
 * the layout or the config is out of range, and when a gt box names an
 * image outside [0, batch), is out of image order, has a class outside
 * [0, nc) or a coordinate that is not finite. Returns 0 otherwise. */
int det_loss_check(const struct det_layout *layout,
                   const struct det_loss_config *cfg, int batch,
                   const struct det_gt *gt, int ngt);

/* Run the task-aligned assigner on pred and fill targets[batch *
 * anchors], image by image. Returns 0 or -EINVAL (see det_loss_check). */
int det_loss_assign(struct kctx *ctx, const struct det_layout *layout,
                    const struct det_loss_config *cfg, int batch,
                    const float *pred, const struct det_gt *gt, int ngt,
                    struct det_target *targets);

/* Compute the loss of pred against fixed targets, and d(total * scale) /
 * d(pred) into dpred (overwritten; NULL: loss only). Returns 0 or -EINVAL
 * (see det_loss_check). */
int det_loss_apply(struct kctx *ctx, const struct det_layout *layout,
                   const struct det_loss_config *cfg, int batch,
                   const float *pred, const struct det_gt *gt, int ngt,
                   const struct det_target *targets, float scale, float *dpred,
                   struct det_loss_result *result);

#ifdef __cplusplus
}
#endif

#endif
