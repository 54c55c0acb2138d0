/*
 * Object detection operations shared by the CPU and CUDA paths: the
 * layout of the Detect head's output, anchor points, the YOLOv8 loss
 * (task-aligned assigner, CIoU, DFL, BCE) and decoding with NMS.
 *
 * Head output layout, the same as Ultralytics' concatenated feature maps:
 * pred is [batch, no, anchors] with no = 4 * reg_max + nc. Anchors run
 * level by level (strides 8, 16, 32 for YOLOv8), row-major within a
 * level, so anchor a of level l at grid cell (y, x) is
 * a = first[l] + y * w[l] + x. Channels 0 .. 4 * reg_max - 1 are the box
 * distribution, side-major: channel side * reg_max + bin, with sides in
 * the order left, top, right, bottom (distances from the anchor point).
 * Channels 4 * reg_max .. no - 1 are class logits.
 *
 * Anchor points are cell centres, (x + 0.5, y + 0.5) in grid units of
 * their level. Times the level's stride, they are pixels of the network
 * input. Ground-truth and predicted boxes are x1, y1, x2, y2 in pixels of
 * the network input.
 *
 * cpu_* functions take host pointers. cuda_* functions (kernels/cuda) take
 * the same arguments, with pred and dpred in device memory and every
 * other array (targets, results, boxes) in host memory, and they wait for
 * the device before returning.
 */
#ifndef TRAINYARD_DETECT_H
#define TRAINYARD_DETECT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DET_REG_MAX 16
#define DET_LEVELS_MAX 4

struct det_layout {
    int nc;      /* classes */
    int reg_max; /* bins per box side: 16 */
    int nlevels;
    int h[DET_LEVELS_MAX], w[DET_LEVELS_MAX], stride[DET_LEVELS_MAX];
    int first[DET_LEVELS_MAX]; /* index of the level's first anchor */
    int anchors;               /* sum of h * w over levels */
};

/* Values per anchor: 4 * reg_max + nc. */
static inline int det_outputs(const struct det_layout *l)
{
    return 4 * l->reg_max + l->nc;
}

/* Fill a layout for an input of img_h x img_w pixels; each level's grid
 * is ceil(img / stride). Returns 0, or -1 when a value is out of range. */
static inline int det_layout_init(struct det_layout *l, int nc, int img_h,
                                  int img_w, const int *strides, int nlevels)
{
    if (nc < 1 || img_h < 1 || img_w < 1 || nlevels < 1 ||
        nlevels > DET_LEVELS_MAX)
        return -1;
    l->nc = nc;
    l->reg_max = DET_REG_MAX;
    l->nlevels = nlevels;
    l->anchors = 0;
    for (int i = 0; i < nlevels; i++) {
        if (strides[i] < 1)
            return -1;
        l->stride[i] = strides[i];
        l->h[i] = (img_h + strides[i] - 1) / strides[i];
        l->w[i] = (img_w + strides[i] - 1) / strides[i];
        l->first[i] = l->anchors;
        l->anchors += l->h[i] * l->w[i];
    }
    return 0;
}

/* Anchor a's point in pixels and its level's stride. */
static inline void det_anchor(const struct det_layout *l, int a, float *x,
                              float *y, float *stride)
{
    int lv = l->nlevels - 1;

    while (lv > 0 && a < l->first[lv])
        lv--;
    int cell = a - l->first[lv];
    float s = (float)l->stride[lv];
    *x = ((float)(cell % l->w[lv]) + 0.5f) * s;
    *y = ((float)(cell / l->w[lv]) + 0.5f) * s;
    *stride = s;
}

/* A ground-truth box. Arrays of them are sorted by image. */
struct det_gt {
    int image; /* index in the batch */
    int cls;
    float x1, y1, x2, y2;
};

/* A detection after NMS. */
struct det_box {
    float x1, y1, x2, y2;
    float conf;
    int cls;
};

/* ---- Loss --------------------------------------------------------------
 * The YOLOv8 detection loss of a batch. The assigner (topk, alpha, beta)
 * picks positive anchors per ground-truth box. The box loss is 1 - CIoU
 * on positives, and DFL is the cross-entropy of the two bins around each
 * target distance. The class loss is BCE with logits against the
 * assigner's soft targets. Each is normalised by max(sum of soft
 * targets, 1). */
struct det_loss_config {
    int topk;                 /* 10 */
    float alpha, beta;        /* 0.5, 6.0 */
    float box, cls, dfl;      /* gains 7.5, 0.5, 1.5 */
};

struct det_loss_result {
    double box, cls, dfl; /* each after its gain, per image as Ultralytics
                             reports them in results.csv */
    double total;         /* (box + cls + dfl) * batch: what is
                             differentiated */
    int positives;        /* anchors assigned to a box */
};

/* Default gains and assigner settings. */
static inline struct det_loss_config det_loss_defaults(void)
{
    struct det_loss_config c = {10, 0.5f, 6.0f, 7.5f, 0.5f, 1.5f};
    return c;
}

/* Compute the loss of pred ([batch, no, anchors]) against gt (ngt boxes,
 * sorted by image, in host memory) and write d(total * scale) / d(pred)
 * into dpred (overwritten; NULL: loss only). Returns 0, or a negative
 * errno-style code (-ENOMEM) when scratch memory cannot be had. */
int cpu_det_loss_forward_backward(struct kctx *ctx,
                                  const struct det_layout *layout,
                                  const struct det_loss_config *cfg, int batch,
                                  const float *pred, const struct det_gt *gt,
                                  int ngt, float scale, float *dpred,
                                  struct det_loss_result *result);
int cuda_det_loss_forward_backward(struct kctx *ctx,
                                   const struct det_layout *layout,
                                   const struct det_loss_config *cfg,
                                   int batch, const float *pred,
                                   const struct det_gt *gt, int ngt,
                                   float scale, float *dpred,
                                   struct det_loss_result *result);

/* ---- Decode and NMS ----------------------------------------------------
 * Every anchor's box is decoded from the DFL expectation of each side,
 * a distance in strides around the anchor point, and its class scores
 * are the sigmoids of the logits. Candidates over conf are kept, at most
 * max_nms of the highest per image. Suppression is per class, for IoU
 * over iou, so boxes of different classes never suppress each other.
 * With multi_label a box enters once per class whose score is over conf,
 * as in validation; otherwise only its best class counts. */
struct det_nms_config {
    float conf;      /* 0.001 validating, 0.25 predicting */
    float iou;       /* 0.7 */
    int max_det;     /* 300 */
    int max_nms;     /* 30000 */
    int multi_label; /* 1 validating, 0 predicting */
};

/* Decode and suppress a batch. boxes receives up to max_det detections
 * per image, image i's at boxes + i * max_det, sorted by descending conf.
 * Ties put the lower anchor index first, then the lower class. counts[i]
 * is image i's number of detections. Returns 0 or a negative errno-style
 * code. */
int cpu_det_decode_nms(struct kctx *ctx, const struct det_layout *layout,
                       const struct det_nms_config *cfg, int batch,
                       const float *pred, struct det_box *boxes, int *counts);
int cuda_det_decode_nms(struct kctx *ctx, const struct det_layout *layout,
                        const struct det_nms_config *cfg, int batch,
                        const float *pred, struct det_box *boxes,
                        int *counts);

/* ---- Box geometry, shared by the loss, NMS and metrics ------------------ */

/* Plain IoU of two x1, y1, x2, y2 boxes; 0 when the union is empty. */
float det_iou(const float *a, const float *b);

/* Complete IoU (Zheng et al. 2020): IoU - rho^2 / c^2 - alpha * v, with
 * eps 1e-7 as in Ultralytics' bbox_iou(CIoU=True). */
float det_ciou(const float *a, const float *b);

#ifdef __cplusplus
}
#endif

#endif
