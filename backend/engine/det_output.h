/*
 * Output files of `train predict`: per image a text file of labels in the
 * Ultralytics predict format, a JSON file, and a PNG copy of the image
 * with the boxes drawn.
 *
 * Boxes are struct det_box in pixels of the source image (x1, y1, x2, y2);
 * det_boxes_unletterbox maps them there from the network input. Class
 * names may be NULL, and then the class number is used as the name.
 *
 * - Text: one line per box, "cls xc yc w h conf", centre and size divided
 *   by the image width and height, each number printed with %g (six
 *   significant digits). This is Ultralytics' save_txt with save_conf.
 * - JSON: an array of {"class", "name", "confidence", "box": {"x1", "y1",
 *   "x2", "y2"}}, confidence and coordinates rounded to 5 decimals.
 * - Image: each box as a 2 px outline in its class color, with a label
 *   "name 0.87" on a filled bar in the same color above the box (inside
 *   it when the box touches the top of the image). Lower-confidence boxes
 *   are drawn first, so the best ones end on top. The label font is a
 *   3 x 5 bitmap scaled by 1 + min(width, height) / 640. Lower-case
 *   letters are drawn as capitals and characters outside the font as '?'.
 *
 * An image without detections gets an empty text file, "[]" and an
 * unchanged copy. All functions return 0 or a negative errno-style code
 * with err filled.
 */
#ifndef TRAINYARD_DET_OUTPUT_H
#define TRAINYARD_DET_OUTPUT_H

#include <stdint.h>

#include "detect.h"
#include "engine/image.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Map boxes from a letterboxed network input back to a source image of
 * width x height: x' = (x - pad_x) / scale, y' = (y - pad_y) / scale,
 * clipped to [0, width] and [0, height]. scale is network pixels per
 * source pixel; -EINVAL when it is not > 0 or the size is empty. */
int det_boxes_unletterbox(struct det_box *boxes, int n, float scale,
                          float pad_x, float pad_y, int width, int height,
                          struct error *err);

/* The RGB color that boxes of class cls are drawn in. Neighbouring
 * classes get hues about 137 degrees apart. */
void det_class_color(int cls, uint8_t rgb[3]);

/* Write the text file at path for an image of width x height. */
int det_output_write_txt(const char *path, const struct det_box *boxes,
                         int n, int width, int height, struct error *err);

/* Write the JSON file at path. names has nc entries, or is NULL. */
int det_output_write_json(const char *path, const struct det_box *boxes,
                          int n, const char *const *names, int nc,
                          struct error *err);

/* Write img (1 or 3 channels) with the boxes drawn as an RGB PNG. */
int det_output_write_image(const char *path, const struct image *img,
                           const struct det_box *boxes, int n,
                           const char *const *names, int nc,
                           struct error *err);

/* Write all three for the image at image_path into dir, named after the
 * file name without its extension ("bus.jpg" gives "bus"):
 * dir/labels/bus.txt, dir/bus.json and dir/bus.png. Folders are created
 * as needed. */
int det_output_save(const char *dir, const char *image_path,
                    const struct image *img, const struct det_box *boxes,
                    int n, const char *const *names, int nc,
                    struct error *err);

#ifdef __cplusplus
}
#endif

#endif
