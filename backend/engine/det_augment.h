/*
 * Detection samples for training and validation, with the augmentation
 * pipeline of Ultralytics YOLOv8 (8.x, ultralytics/data/augment.py).
 * Training samples get mosaic, random affine (translate and scale), HSV
 * jitter and horizontal flip. Validation and prediction samples are
 * letterboxed.
 *
 * Every random number for training sample `position` of epoch `epoch`
 * comes from rng_for(seed, epoch, position), so a sample depends only on
 * (seed, epoch, position, index) and a resumed run loads identical
 * batches. The random numbers are not those of Ultralytics (Python's
 * random module), so the pictures differ while their distribution is the
 * same.
 *
 * Images are resized with the long side to imgsz as Ultralytics'
 * load_image does (bilinear, short side ceil(side * r) capped at imgsz).
 * Output images are [3, imgsz, imgsz] floats in 0..1, RGB, CHW. Boxes are
 * struct det_gt in pixels of that image; det_gt.image is set to 0 for the
 * caller to fill in.
 *
 * The functions only read the data set, so any number of threads may
 * load samples from one data set at once.
 */
#ifndef TRAINYARD_DET_AUGMENT_H
#define TRAINYARD_DET_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "dataset_det.h"
#include "detect.h"
#include "error.h"
#include "image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Gray value of padding and of the mosaic canvas, as in Ultralytics. */
#define DET_PAD_VALUE 114

/* Smallest and largest network input side accepted by the loaders. */
#define DET_MIN_IMGSZ 8
#define DET_MAX_IMGSZ 4096

/* Augmentation settings, with the names of Ultralytics' hyperparameters.
 * A gain of 0 turns its step off. */
struct det_aug_params {
    double hsv_h;     /* hue gain, fraction of the hue circle: 0.015 */
    double hsv_s;     /* saturation gain: 0.7 */
    double hsv_v;     /* value gain: 0.4 */
    double translate; /* shift as a fraction of imgsz: 0.1 */
    double scale;     /* zoom range 1 +- scale: 0.5 */
    double fliplr;    /* probability of a horizontal flip: 0.5 */
    double mosaic;    /* probability of a 4-image mosaic: 1.0 */
};

/* The Ultralytics defaults listed above. */
struct det_aug_params det_aug_defaults(void);

/* Mapping between an original image and its letterboxed version:
 * letterboxed = original * scale + pad, in pixels. */
struct letterbox {
    float scale;
    float pad_x, pad_y;
    int src_w, src_h;
};

/* Build training sample `position` of epoch `epoch` from image `index`
 * of the train split. With probability p->mosaic, the image and 3 others
 * drawn at random are placed around a random centre in [imgsz / 2,
 * 3 * imgsz / 2] on a 2 * imgsz square gray canvas; otherwise the image
 * is letterboxed to imgsz. Then a random affine transform (scale
 * 1 +- p->scale, shift +- p->translate * imgsz, no rotation or shear)
 * maps it to imgsz x imgsz, HSV jitter and a horizontal flip follow.
 * Boxes are clipped to the image and dropped when narrower or lower than
 * 2 px, when less than 10% of their scaled area remains, or when their
 * aspect ratio exceeds 100, as Ultralytics' box_candidates does.
 *
 * chw receives 3 * imgsz * imgsz floats and gt at most gt_cap boxes;
 * *ngt is the number written. Up to 4 * ds->max_boxes boxes can come out
 * of a mosaic, and boxes past gt_cap are dropped. */
int det_load_train(struct dataset_det *ds, const struct det_aug_params *p,
                   uint64_t seed, int epoch, size_t position, size_t index,
                   int imgsz, float *chw, struct det_gt *gt, int gt_cap,
                   int *ngt, struct error *err);

/* Build a validation or prediction sample: image `index` of `split`
 * letterboxed to imgsz x imgsz with its boxes in letterboxed pixels, and
 * the mapping in *lb (may be NULL). Boxes past gt_cap are dropped. */
int det_load_val(struct dataset_det *ds, int split, size_t index, int imgsz,
                 float *chw, struct det_gt *gt, int gt_cap, int *ngt,
                 struct letterbox *lb, struct error *err);

/* Letterbox img (1 or 3 channels) to imgsz x imgsz as Ultralytics'
 * validation does: scale so the long side is imgsz, pad with gray 114
 * centred (left and top padding round(pad / 2 - 0.1)). Writes chw and
 * *lb (may be NULL). */
int det_letterbox_image(const struct image *img, int imgsz, float *chw,
                        struct letterbox *lb, struct error *err);

/* Map a box from letterboxed pixels back to pixels of the original
 * image, clipped to it. */
void det_letterbox_unmap(const struct letterbox *lb, float *x1, float *y1,
                         float *x2, float *y2);

#ifdef __cplusplus
}
#endif

#endif
