/*
 * Fashion-MNIST detection scenes: a deterministic generator of a small
 * object detection data set in the Ultralytics layout (dataset_det.h)
 * from Debian's Fashion-MNIST (fmnist.h).
 *
 * Each scene is a FMNIST_DET_SIDE x FMNIST_DET_SIDE RGB canvas with a
 * plain, gradient or mildly noisy dark background and 1 to 6 items. An
 * item is a Fashion-MNIST image scaled to a side of 20 to 56 pixels,
 * tinted gray or in a colour, and blended onto the canvas with its pixel
 * value as opacity. Items are placed so that any two boxes have an IoU of at most
 * 0.2 and neither covers more than 30% of the other's box, so every item
 * stays visible. An item's box is the bounding box of its scaled pixels
 * of value FMNIST_DET_INK or more, so it is exact to the pixel. Training
 * scenes take items from the Fashion-MNIST train split, validation
 * scenes from the test split.
 *
 * Written layout: data.yaml (path ., train images/train, val images/val,
 * names 0-9 as in fmnist_class_names), images/{train,val}/NNNNN.png and
 * labels/{train,val}/NNNNN.txt. Scene i of a split depends only on the
 * seed, the split and i, and the same seed gives byte-identical files.
 * The data set is written into "OUT.partial-PID", flushed and renamed to
 * OUT, as fmnist_import does.
 */
#ifndef TRAINYARD_FMNIST_DET_H
#define TRAINYARD_FMNIST_DET_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "fmnist.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FMNIST_DET_SIDE 128
#define FMNIST_DET_MAX_ITEMS 6
#define FMNIST_DET_MIN_ITEM 20
#define FMNIST_DET_MAX_ITEM 56
/* Smallest scaled item pixel value counted as part of the item. */
#define FMNIST_DET_INK 32
#define FMNIST_DET_DEFAULT_TRAIN 2000
#define FMNIST_DET_DEFAULT_VAL 500

/* A placed item: its class and box in canvas pixels, x2 and y2
 * exclusive. */
struct fmnist_det_box {
    int cls;
    int x1, y1, x2, y2;
};

struct fmnist_det_options {
    const char *source_dir; /* NULL: FMNIST_DEFAULT_DIR */
    size_t train_count;     /* 0: FMNIST_DET_DEFAULT_TRAIN */
    size_t val_count;       /* 0: FMNIST_DET_DEFAULT_VAL */
    uint64_t seed;
};

/* Render scene `index` of a split (FMNIST_TRAIN or FMNIST_TEST) with
 * items from set into rgb (FMNIST_DET_SIDE^2 * 3 bytes, HWC) and boxes
 * (room for FMNIST_DET_MAX_ITEMS); *count is the number of items. */
int fmnist_det_render(const struct fmnist_set *set, uint64_t seed,
                      enum fmnist_split split, size_t index, uint8_t *rgb,
                      struct fmnist_det_box *boxes, int *count,
                      struct error *err);

/* Write the data set to out_dir, which must not exist (-EEXIST); its
 * parent folders are created. options may be NULL for the defaults. */
int fmnist_det_generate(const char *out_dir,
                        const struct fmnist_det_options *options,
                        struct error *err);

#ifdef __cplusplus
}
#endif

#endif
