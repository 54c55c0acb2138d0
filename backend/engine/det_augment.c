/*
 * Training and validation samples for detection; the contract is in
 * det_augment.h.
 *
 * A training sample is built in 8-bit RGB (HWC). The images are pasted
 * onto a gray canvas (2s x 2s for a mosaic, s x s letterboxed without).
 * The affine transform samples that canvas bilinearly into an s x s
 * picture, and HSV and flip change the picture before it is written as
 * floats. Since the transform has no rotation or shear, it is separable:
 * each output column and row maps to one source coordinate, computed
 * once per sample.
 */
#include "det_augment.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* A box in pixels, with its class. */
struct pbox {
    float x1, y1, x2, y2;
    int cls;
};

/* An 8-bit RGB picture, HWC. */
struct picture {
    int width, height;
    uint8_t *pixels;
};

struct det_aug_params det_aug_defaults(void)
{
    struct det_aug_params p = {0.015, 0.7, 0.4, 0.1, 0.5, 0.5, 1.0};

    return p;
}

static double uniform(struct rng *r, double lo, double hi)
{
    return lo + (hi - lo) * rng_uniform(r);
}

static int check_imgsz(int imgsz, struct error *err)
{
    if (imgsz < DET_MIN_IMGSZ || imgsz > DET_MAX_IMGSZ)
        return error_set(err, -EINVAL, "invalid image size %d; expected "
                         "%d to %d pixels", imgsz, DET_MIN_IMGSZ,
                         DET_MAX_IMGSZ);
    return 0;
}

static int picture_new(struct picture *pic, int width, int height,
                       struct error *err)
{
    size_t bytes = (size_t)width * (size_t)height * 3;

    pic->width = width;
    pic->height = height;
    pic->pixels = malloc(bytes);
    if (pic->pixels == NULL)
        return error_set(err, -ENOMEM, "out of memory for a %dx%d sample",
                         width, height);
    memset(pic->pixels, DET_PAD_VALUE, bytes);
    return 0;
}

/* The size of an image after Ultralytics' load_image: the long side
 * becomes imgsz and the other ceil(side * r), capped at imgsz. */
static void fit_size(int w0, int h0, int imgsz, int *w, int *h, double *r)
{
    *r = (double)imgsz / (double)(w0 > h0 ? w0 : h0);
    *w = w0 >= h0 ? imgsz : (int)ceil((double)w0 * *r - 1e-9);
    *h = h0 >= w0 ? imgsz : (int)ceil((double)h0 * *r - 1e-9);
    if (*w > imgsz)
        *w = imgsz;
    if (*h > imgsz)
        *h = imgsz;
    if (*w < 1)
        *w = 1;
    if (*h < 1)
        *h = 1;
}

/* Load an image of the data set resized to fit_size. *img is a view of
 * the cache (*owned 0) or an owned image (*owned 1). */
static int load_fitted(const struct dataset_det *ds, int split, size_t index,
                       int imgsz, struct image *img, int *owned,
                       struct error *err)
{
    struct image src, resized;
    int src_owned, w, h, rc;
    double r;

    rc = dataset_det_image(ds, split, index, &src, &src_owned, err);
    if (rc != 0)
        return rc;
    fit_size(src.width, src.height, imgsz, &w, &h, &r);
    if (w == src.width && h == src.height) {
        *img = src;
        *owned = src_owned;
        return 0;
    }
    rc = image_resize(&src, w, h, &resized, err);
    if (src_owned)
        image_free(&src);
    if (rc != 0)
        return rc;
    *img = resized;
    *owned = 1;
    return 0;
}

/* Copy the rectangle (sx, sy, w, h) of src (1 or 3 channels) to (dx, dy)
 * of pic. */
static void paste(struct picture *pic, int dx, int dy, const struct image *src,
                  int sx, int sy, int w, int h)
{
    for (int y = 0; y < h; y++) {
        const uint8_t *in = src->pixels + ((size_t)(sy + y) *
                                               (size_t)src->width +
                                           (size_t)sx) *
                                              (size_t)src->channels;
        uint8_t *out = pic->pixels + ((size_t)(dy + y) * (size_t)pic->width +
                                      (size_t)dx) * 3;

        if (src->channels == 3) {
            memcpy(out, in, (size_t)w * 3);
            continue;
        }
        for (int x = 0; x < w; x++) {
            out[x * 3] = in[x];
            out[x * 3 + 1] = in[x];
            out[x * 3 + 2] = in[x];
        }
    }
}

/* Append the labels of an image, denormalised to w x h and shifted by
 * (padw, padh). */
static int add_boxes(const struct dataset_det *ds, int split, size_t index,
                     int w, int h, float padw, float padh, struct pbox *boxes,
                     int *count, int cap)
{
    const float *xywhn;
    const int *cls;
    int n;

    if (dataset_det_labels(ds, split, index, &xywhn, &cls, &n) != 0)
        return -EINVAL;
    for (int i = 0; i < n && *count < cap; i++) {
        const float *v = xywhn + i * 4;
        struct pbox *b = &boxes[(*count)++];

        b->x1 = (v[0] - v[2] * 0.5f) * (float)w + padw;
        b->y1 = (v[1] - v[3] * 0.5f) * (float)h + padh;
        b->x2 = (v[0] + v[2] * 0.5f) * (float)w + padw;
        b->y2 = (v[1] + v[3] * 0.5f) * (float)h + padh;
        b->cls = cls[i];
    }
    return 0;
}

static float clampf(float v, float lo, float hi)
{
    if (v < lo)
        return lo;
    return v > hi ? hi : v;
}

static int max3(int a, int b, int c)
{
    int m = a > b ? a : b;

    return m > c ? m : c;
}

static int min3(int a, int b, int c)
{
    int m = a < b ? a : b;

    return m < c ? m : c;
}

static uint8_t clip_byte(double v)
{
    if (v < 0.0)
        return 0;
    return (uint8_t)(v > 255.0 ? 255.0 : v);
}

static void clip_boxes(struct pbox *boxes, int count, float w, float h)
{
    for (int i = 0; i < count; i++) {
        boxes[i].x1 = clampf(boxes[i].x1, 0.0f, w);
        boxes[i].x2 = clampf(boxes[i].x2, 0.0f, w);
        boxes[i].y1 = clampf(boxes[i].y1, 0.0f, h);
        boxes[i].y2 = clampf(boxes[i].y2, 0.0f, h);
    }
}

/* Build the 2s x 2s mosaic of image index and 3 random training images
 * around the centre (xc, yc), with Ultralytics' tile placement. */
static int build_mosaic(struct dataset_det *ds, struct rng *r, size_t index,
                        int s, struct picture *pic, struct pbox *boxes,
                        int *count, int cap, struct error *err)
{
    size_t n = ds->splits[DATASET_DET_TRAIN].count;
    size_t indices[4] = {index, 0, 0, 0};
    int xc, yc, rc;

    for (int i = 1; i < 4; i++)
        indices[i] = (size_t)rng_below(r, n);
    xc = (int)uniform(r, 0.5 * s, 1.5 * s);
    yc = (int)uniform(r, 0.5 * s, 1.5 * s);
    rc = picture_new(pic, 2 * s, 2 * s, err);
    if (rc != 0)
        return rc;
    for (int i = 0; i < 4; i++) {
        struct image img;
        int owned, w, h, x1a, y1a, x2a, y2a, x1b, y1b;

        rc = load_fitted(ds, DATASET_DET_TRAIN, indices[i], s, &img, &owned,
                         err);
        if (rc != 0)
            return rc;
        w = img.width;
        h = img.height;
        if (i == 0) { /* top left */
            x1a = xc - w > 0 ? xc - w : 0;
            y1a = yc - h > 0 ? yc - h : 0;
            x2a = xc;
            y2a = yc;
            x1b = w - (x2a - x1a);
            y1b = h - (y2a - y1a);
        } else if (i == 1) { /* top right */
            x1a = xc;
            y1a = yc - h > 0 ? yc - h : 0;
            x2a = xc + w < 2 * s ? xc + w : 2 * s;
            y2a = yc;
            x1b = 0;
            y1b = h - (y2a - y1a);
        } else if (i == 2) { /* bottom left */
            x1a = xc - w > 0 ? xc - w : 0;
            y1a = yc;
            x2a = xc;
            y2a = yc + h < 2 * s ? yc + h : 2 * s;
            x1b = w - (x2a - x1a);
            y1b = 0;
        } else { /* bottom right */
            x1a = xc;
            y1a = yc;
            x2a = xc + w < 2 * s ? xc + w : 2 * s;
            y2a = yc + h < 2 * s ? yc + h : 2 * s;
            x1b = 0;
            y1b = 0;
        }
        paste(pic, x1a, y1a, &img, x1b, y1b, x2a - x1a, y2a - y1a);
        rc = add_boxes(ds, DATASET_DET_TRAIN, indices[i], w, h,
                       (float)(x1a - x1b), (float)(y1a - y1b), boxes, count,
                       cap);
        if (owned)
            image_free(&img);
        if (rc != 0)
            return error_set(err, rc, "invalid training image %zu",
                             indices[i]);
    }
    clip_boxes(boxes, *count, (float)(2 * s), (float)(2 * s));
    return 0;
}

/* Letterbox image index onto an s x s canvas, as the training pipeline
 * does without mosaic. */
static int build_single(struct dataset_det *ds, size_t index, int s,
                        struct picture *pic, struct pbox *boxes, int *count,
                        int cap, struct error *err)
{
    struct image img;
    int owned, left, top, rc;

    rc = load_fitted(ds, DATASET_DET_TRAIN, index, s, &img, &owned, err);
    if (rc != 0)
        return rc;
    left = (int)lround((s - img.width) / 2.0 - 0.1);
    top = (int)lround((s - img.height) / 2.0 - 0.1);
    rc = picture_new(pic, s, s, err);
    if (rc == 0) {
        paste(pic, left, top, &img, 0, 0, img.width, img.height);
        rc = add_boxes(ds, DATASET_DET_TRAIN, index, img.width, img.height,
                       (float)left, (float)top, boxes, count, cap);
        if (rc != 0)
            rc = error_set(err, rc, "invalid training image %zu", index);
    }
    if (owned)
        image_free(&img);
    return rc;
}

/* One tap of the separable bilinear map: source index and weight of the
 * next pixel; index -1 or past the end reads the pad value. */
struct tap {
    int i0;
    float f;
};

static void make_taps(struct tap *taps, int n, double gain, double shift,
                      double centre)
{
    for (int o = 0; o < n; o++) {
        double in = ((double)o - shift) / gain + centre;
        double fl = floor(in);

        taps[o].i0 = (int)fl;
        taps[o].f = (float)(in - fl);
    }
}

static float fetch(const struct picture *src, int x, int y, int c)
{
    if (x < 0 || y < 0 || x >= src->width || y >= src->height)
        return (float)DET_PAD_VALUE;
    return (float)src->pixels[((size_t)y * (size_t)src->width + (size_t)x) *
                                  3 + (size_t)c];
}

/* Sample src into dst (s x s) with out = gain * (in - centre) + shift,
 * bilinear with a constant gray border, as cv2.warpAffine does. */
static int warp(const struct picture *src, struct picture *dst, double gain,
                double tx, double ty, struct error *err)
{
    int s = dst->width;
    struct tap *tx_taps = malloc(sizeof(struct tap) * (size_t)s * 2);
    struct tap *ty_taps;

    if (tx_taps == NULL)
        return error_set(err, -ENOMEM, "out of memory for a %dx%d sample", s,
                         s);
    ty_taps = tx_taps + s;
    make_taps(tx_taps, s, gain, tx, src->width / 2.0);
    make_taps(ty_taps, s, gain, ty, src->height / 2.0);
    for (int y = 0; y < s; y++) {
        const struct tap *ty0 = &ty_taps[y];
        uint8_t *out = dst->pixels + (size_t)y * (size_t)s * 3;
        bool y_inside = ty0->i0 >= 0 && ty0->i0 + 1 < src->height;

        for (int x = 0; x < s; x++) {
            const struct tap *tx0 = &tx_taps[x];
            float fx = tx0->f, fy = ty0->f;

            if (y_inside && tx0->i0 >= 0 && tx0->i0 + 1 < src->width) {
                const uint8_t *p = src->pixels +
                                   ((size_t)ty0->i0 * (size_t)src->width +
                                    (size_t)tx0->i0) * 3;
                const uint8_t *q = p + (size_t)src->width * 3;

                for (int c = 0; c < 3; c++) {
                    float top = p[c] + fx * (float)(p[c + 3] - p[c]);
                    float bottom = q[c] + fx * (float)(q[c + 3] - q[c]);

                    out[x * 3 + c] = (uint8_t)(top + fy * (bottom - top) +
                                               0.5f);
                }
                continue;
            }
            for (int c = 0; c < 3; c++) {
                float a = fetch(src, tx0->i0, ty0->i0, c);
                float b = fetch(src, tx0->i0 + 1, ty0->i0, c);
                float d = fetch(src, tx0->i0, ty0->i0 + 1, c);
                float e = fetch(src, tx0->i0 + 1, ty0->i0 + 1, c);
                float top = a + fx * (b - a);
                float bottom = d + fx * (e - d);

                out[x * 3 + c] = (uint8_t)(top + fy * (bottom - top) + 0.5f);
            }
        }
    }
    free(tx_taps);
    return 0;
}

/* Transform, clip and filter boxes as Ultralytics' RandomPerspective
 * with box_candidates(wh_thr=2, ar_thr=100, area_thr=0.1). Returns the
 * number kept, packed at the front. */
static int transform_boxes(struct pbox *boxes, int count, double gain,
                           double tx, double ty, double cx, double cy, int s)
{
    int kept = 0;

    for (int i = 0; i < count; i++) {
        struct pbox b = boxes[i];
        float w1 = (b.x2 - b.x1) * (float)gain;
        float h1 = (b.y2 - b.y1) * (float)gain;
        float w2, h2, ar;

        b.x1 = (float)(gain * (b.x1 - cx) + tx);
        b.x2 = (float)(gain * (b.x2 - cx) + tx);
        b.y1 = (float)(gain * (b.y1 - cy) + ty);
        b.y2 = (float)(gain * (b.y2 - cy) + ty);
        clip_boxes(&b, 1, (float)s, (float)s);
        w2 = b.x2 - b.x1;
        h2 = b.y2 - b.y1;
        ar = fmaxf(w2 / (h2 + 1e-16f), h2 / (w2 + 1e-16f));
        if (w2 > 2.0f && h2 > 2.0f && w2 * h2 / (w1 * h1 + 1e-16f) > 0.1f &&
            ar < 100.0f)
            boxes[kept++] = b;
    }
    return kept;
}

/* Fixed-point reciprocals for the HSV conversion, in units of 2^-12:
 * saturation 255 / v and hue 30 / diff (hue in 2-degree steps). */
struct hsv_tables {
    int sat[256];
    int hue[256];
};

static struct hsv_tables hsv_tables;

static void init_hsv_tables(struct hsv_tables *t)
{
    t->sat[0] = t->hue[0] = 0;
    for (int i = 1; i < 256; i++) {
        t->sat[i] = (int)lround(255.0 * 4096.0 / i);
        t->hue[i] = (int)lround(30.0 * 4096.0 / i);
    }
}

static void init_hsv_tables_once(void)
{
    init_hsv_tables(&hsv_tables);
}

/* RGB to HSV in OpenCV's 8-bit convention: H in 0..179 (degrees / 2),
 * S and V in 0..255. Integer arithmetic, because this runs for every
 * pixel of every training sample. */
static void rgb_to_hsv(const struct hsv_tables *t, const uint8_t *rgb,
                       int *h, int *s, int *v)
{
    int r = rgb[0], g = rgb[1], b = rgb[2];
    int max = max3(r, g, b);
    int min = min3(r, g, b);
    int diff = max - min;
    int num, hue;

    *v = max;
    *s = (diff * t->sat[max] + 2048) >> 12;
    if (diff == 0) {
        *h = 0;
        return;
    }
    if (max == r)
        num = g - b;
    else if (max == g)
        num = b - r + 2 * diff;
    else
        num = r - g + 4 * diff;
    hue = (num * t->hue[diff] + 2048) >> 12;
    if (hue < 0)
        hue += 180;
    if (hue >= 180)
        hue -= 180;
    *h = hue;
}

/* HSV (as rgb_to_hsv writes it) back to RGB: sector h / 30 of the hue
 * hexagon and the fraction f = (h % 30) / 30 within it. */
static void hsv_to_rgb(int h, int s, int v, uint8_t *rgb)
{
    int sector = h / 30, f = h % 30;
    int p = (v * (255 - s) + 127) / 255;
    int q = (v * (255 * 30 - s * f) + 3825) / (255 * 30);
    int u = (v * (255 * 30 - s * (30 - f)) + 3825) / (255 * 30);
    int r, g, b;

    switch (sector) {
    case 0: r = v; g = u; b = p; break;
    case 1: r = q; g = v; b = p; break;
    case 2: r = p; g = v; b = u; break;
    case 3: r = p; g = q; b = v; break;
    case 4: r = u; g = p; b = v; break;
    default: r = v; g = p; b = q; break;
    }
    rgb[0] = (uint8_t)r;
    rgb[1] = (uint8_t)g;
    rgb[2] = (uint8_t)b;
}

/* Ultralytics' RandomHSV: gains r = 1 + u * gain with u in [-1, 1] and
 * lookup tables hue (x * r) % 180, saturation and value clip(x * r). */
static void apply_hsv(struct picture *pic, const double gains[3])
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    uint8_t lut_h[256], lut_s[256], lut_v[256];
    size_t n = (size_t)pic->width * (size_t)pic->height;

    if (gains[0] == 1.0 && gains[1] == 1.0 && gains[2] == 1.0)
        return;
    pthread_once(&once, init_hsv_tables_once);
    for (int x = 0; x < 256; x++) {
        double hv = fmod(x * gains[0], 180.0);
        double sv = x * gains[1], vv = x * gains[2];

        lut_h[x] = (uint8_t)(hv < 0 ? hv + 180.0 : hv);
        lut_s[x] = clip_byte(sv);
        lut_v[x] = clip_byte(vv);
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = pic->pixels + i * 3;
        int h, s, v;

        rgb_to_hsv(&hsv_tables, p, &h, &s, &v);
        hsv_to_rgb(lut_h[h] % 180, lut_s[s], lut_v[v], p);
    }
}

static void flip_picture(struct picture *pic, struct pbox *boxes, int count)
{
    int w = pic->width;

    for (int y = 0; y < pic->height; y++) {
        uint8_t *row = pic->pixels + (size_t)y * (size_t)w * 3;

        for (int x = 0; x < w / 2; x++) {
            uint8_t *a = row + x * 3, *b = row + (w - 1 - x) * 3;

            for (int c = 0; c < 3; c++) {
                uint8_t t = a[c];

                a[c] = b[c];
                b[c] = t;
            }
        }
    }
    for (int i = 0; i < count; i++) {
        float x1 = boxes[i].x1;

        boxes[i].x1 = (float)w - boxes[i].x2;
        boxes[i].x2 = (float)w - x1;
    }
}

static void write_chw(const struct picture *pic, float *chw)
{
    size_t plane = (size_t)pic->width * (size_t)pic->height;

    for (size_t i = 0; i < plane; i++) {
        chw[i] = pic->pixels[i * 3] * (1.0f / 255.0f);
        chw[plane + i] = pic->pixels[i * 3 + 1] * (1.0f / 255.0f);
        chw[2 * plane + i] = pic->pixels[i * 3 + 2] * (1.0f / 255.0f);
    }
}

static int write_gt(const struct pbox *boxes, int count, struct det_gt *gt,
                    int gt_cap)
{
    int n = count < gt_cap ? count : gt_cap;

    for (int i = 0; i < n; i++) {
        gt[i].image = 0;
        gt[i].cls = boxes[i].cls;
        gt[i].x1 = boxes[i].x1;
        gt[i].y1 = boxes[i].y1;
        gt[i].x2 = boxes[i].x2;
        gt[i].y2 = boxes[i].y2;
    }
    return n;
}

int det_load_train(struct dataset_det *ds, const struct det_aug_params *p,
                   uint64_t seed, int epoch, size_t position, size_t index,
                   int imgsz, float *chw, struct det_gt *gt, int gt_cap,
                   int *ngt, struct error *err)
{
    struct picture canvas = {0}, out = {0};
    struct pbox *boxes;
    struct rng r;
    double gain, tx, ty, hsv[3];
    int cap, count = 0, rc;
    bool mosaic;

    *ngt = 0;
    rc = check_imgsz(imgsz, err);
    if (rc != 0)
        return rc;
    if (index >= ds->splits[DATASET_DET_TRAIN].count)
        return error_set(err, -EINVAL, "training image %zu does not exist; "
                         "the train split has %zu images", index,
                         ds->splits[DATASET_DET_TRAIN].count);
    cap = 4 * (ds->max_boxes > 0 ? ds->max_boxes : 1);
    boxes = malloc(sizeof(*boxes) * (size_t)cap);
    if (boxes == NULL)
        return error_set(err, -ENOMEM, "out of memory for %d boxes", cap);

    /* Draw order: mosaic choice, mosaic indices and centre, affine, HSV,
     * flip. Changing it changes every sample of a seed. */
    rng_for(&r, seed, (uint64_t)(int64_t)epoch, (uint64_t)position);
    mosaic = rng_uniform(&r) < p->mosaic;
    if (mosaic)
        rc = build_mosaic(ds, &r, index, imgsz, &canvas, boxes, &count, cap,
                          err);
    else
        rc = build_single(ds, index, imgsz, &canvas, boxes, &count, cap,
                          err);
    gain = uniform(&r, 1.0 - p->scale, 1.0 + p->scale);
    tx = uniform(&r, 0.5 - p->translate, 0.5 + p->translate) * imgsz;
    ty = uniform(&r, 0.5 - p->translate, 0.5 + p->translate) * imgsz;
    hsv[0] = uniform(&r, -1.0, 1.0) * p->hsv_h + 1.0;
    hsv[1] = uniform(&r, -1.0, 1.0) * p->hsv_s + 1.0;
    hsv[2] = uniform(&r, -1.0, 1.0) * p->hsv_v + 1.0;
    if (gain <= 0.0)
        gain = 1e-3;
    if (rc == 0)
        rc = picture_new(&out, imgsz, imgsz, err);
    if (rc == 0)
        rc = warp(&canvas, &out, gain, tx, ty, err);
    if (rc == 0) {
        count = transform_boxes(boxes, count, gain, tx, ty,
                                canvas.width / 2.0, canvas.height / 2.0,
                                imgsz);
        apply_hsv(&out, hsv);
        if (rng_uniform(&r) < p->fliplr)
            flip_picture(&out, boxes, count);
        write_chw(&out, chw);
        *ngt = write_gt(boxes, count, gt, gt_cap);
    }
    free(canvas.pixels);
    free(out.pixels);
    free(boxes);
    return rc;
}

int det_letterbox_image(const struct image *img, int imgsz, float *chw,
                        struct letterbox *lb, struct error *err)
{
    size_t plane = (size_t)imgsz * (size_t)imgsz;
    struct image resized = {0};
    const struct image *src = img;
    int w, h, left, top, rc;
    double r;

    rc = check_imgsz(imgsz, err);
    if (rc != 0)
        return rc;
    if (img == NULL || img->pixels == NULL || img->width < 1 ||
        img->height < 1 || (img->channels != 1 && img->channels != 3))
        return error_set(err, -EINVAL, "invalid image to letterbox; expected "
                         "1 or 3 channels");
    fit_size(img->width, img->height, imgsz, &w, &h, &r);
    if (w != img->width || h != img->height) {
        /* NOTE: Ultralytics shrinks validation images with cv2.INTER_AREA;
         * bilinear resizing here gives slightly sharper pixels. */
        rc = image_resize(img, w, h, &resized, err);
        if (rc != 0)
            return rc;
        src = &resized;
    }
    left = (int)lround((imgsz - w) / 2.0 - 0.1);
    top = (int)lround((imgsz - h) / 2.0 - 0.1);
    for (size_t i = 0; i < 3 * plane; i++)
        chw[i] = DET_PAD_VALUE / 255.0f;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            const uint8_t *p = src->pixels + ((size_t)y * (size_t)w +
                                              (size_t)x) *
                                                 (size_t)src->channels;
            size_t o = (size_t)(y + top) * (size_t)imgsz + (size_t)(x + left);

            for (int c = 0; c < 3; c++)
                chw[(size_t)c * plane + o] =
                    p[src->channels == 3 ? c : 0] * (1.0f / 255.0f);
        }
    }
    if (lb != NULL) {
        lb->scale = (float)r;
        lb->pad_x = (float)left;
        lb->pad_y = (float)top;
        lb->src_w = img->width;
        lb->src_h = img->height;
    }
    image_free(&resized);
    return 0;
}

void det_letterbox_unmap(const struct letterbox *lb, float *x1, float *y1,
                         float *x2, float *y2)
{
    *x1 = clampf((*x1 - lb->pad_x) / lb->scale, 0.0f, (float)lb->src_w);
    *x2 = clampf((*x2 - lb->pad_x) / lb->scale, 0.0f, (float)lb->src_w);
    *y1 = clampf((*y1 - lb->pad_y) / lb->scale, 0.0f, (float)lb->src_h);
    *y2 = clampf((*y2 - lb->pad_y) / lb->scale, 0.0f, (float)lb->src_h);
}

int det_load_val(struct dataset_det *ds, int split, size_t index, int imgsz,
                 float *chw, struct det_gt *gt, int gt_cap, int *ngt,
                 struct letterbox *lb, struct error *err)
{
    struct letterbox local;
    struct image img;
    const float *xywhn;
    const int *cls;
    int owned, n, w, h, rc;
    double r;

    *ngt = 0;
    rc = dataset_det_image(ds, split, index, &img, &owned, err);
    if (rc != 0)
        return rc;
    if (lb == NULL)
        lb = &local;
    rc = det_letterbox_image(&img, imgsz, chw, lb, err);
    fit_size(img.width, img.height, imgsz, &w, &h, &r);
    if (owned)
        image_free(&img);
    if (rc != 0)
        return rc;
    dataset_det_labels(ds, split, index, &xywhn, &cls, &n);
    for (int i = 0; i < n && *ngt < gt_cap; i++) {
        const float *v = xywhn + i * 4;
        struct det_gt *g = &gt[(*ngt)++];

        g->image = 0;
        g->cls = cls[i];
        g->x1 = (v[0] - v[2] * 0.5f) * (float)w + lb->pad_x;
        g->y1 = (v[1] - v[3] * 0.5f) * (float)h + lb->pad_y;
        g->x2 = (v[0] + v[2] * 0.5f) * (float)w + lb->pad_x;
        g->y2 = (v[1] + v[3] * 0.5f) * (float)h + lb->pad_y;
    }
    return 0;
}
