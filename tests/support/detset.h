/*
 * A writer of tiny detection data sets in the Ultralytics layout, for
 * tests that run the real `train` program:
 *
 *     ROOT/data.yaml           path ., train images/train, val images/val
 *     ROOT/images/SPLIT/N.png  square RGB images
 *     ROOT/labels/SPLIT/N.txt  "cls xc yc w h" per box, normalized to
 *                              [0, 1] by the image size
 *
 * Each image is black with every box filled in its class color, so a
 * model can learn the boxes from the pixels alone. All functions return 0
 * or a negative errno-style code with err filled.
 */
#ifndef TRAINYARD_DETSET_H
#define TRAINYARD_DETSET_H

#include "error.h"

/* A box in whole pixels of the image: top-left corner and size. */
struct detset_box {
    int cls;
    int x;
    int y;
    int width;
    int height;
};

/* Write ROOT/data.yaml naming nc classes, creating ROOT if needed. */
int detset_write_yaml(const char *root, const char *const *names, int nc,
                      struct error *err);

/* Write ROOT/images/SPLIT/NAME.png, size x size pixels, with the boxes
 * drawn, and ROOT/labels/SPLIT/NAME.txt listing them. With
 * write_label == 0 no label file is written, which marks a background
 * image (n must then be 0). Boxes must lie inside the image. */
int detset_write_image(const char *root, const char *split, const char *name,
                       int size, const struct detset_box *boxes, int n,
                       int write_label, struct error *err);

/* The RGB fill color of class cls: class 0 is white, others differ. */
void detset_class_color(int cls, unsigned char rgb[3]);

#endif
