/*
 * The image classification data set in the Ultralytics layout:
 *
 *   ROOT/train/<class>/<image>   training images
 *   ROOT/val/<class>/<image>     validation images (ROOT/test/ when
 *                                val/ is missing, as Ultralytics does)
 *
 * Classes are the folder names in train/, sorted by byte value (the order
 * of Python's sorted() on UTF-8 names), so class index i is the i-th name.
 * Images may sit in subfolders of a class folder, as torchvision's
 * ImageFolder allows. Hidden files and folders (names starting with '.')
 * are ignored without a report.
 *
 * The scan checks the header of every file (image_probe_file), so a file
 * that is not an image, an unsupported format or a corrupt header is
 * skipped at scan time. Damage past the header shows only when the image
 * is decoded: the loader then reports the sample and skips it, and never
 * reads that file again. Each problem goes into a report entry that names
 * the file or folder, what is wrong and what was done about it.
 *
 * The scan fails only when nothing usable remains: no train/ folder, or
 * fewer than 2 classes with at least one usable training image. A missing
 * val/ folder, empty class folders and classes that do not match between
 * train/ and val/ are reported and the scan goes on.
 *
 * The loader decodes a sample, resizes it to size x size (stretching, no
 * crop) and writes floats in [0, 1], CHW. With the cache enabled, decoded
 * images of at most cache_max_pixels stay in memory, grayscale ones with
 * one channel, so later epochs do not decode again. Fashion-MNIST (70,000
 * images of 28x28) takes about 57 MB of cache.
 *
 * Loading is thread-safe: any number of threads may call dataset_cls_load
 * on one data set. The report grows when a load fails, so read
 * ds->problems directly only while no load runs; otherwise use
 * dataset_cls_report_text.
 */
#ifndef TRAINYARD_DATASET_CLS_H
#define TRAINYARD_DATASET_CLS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returned by the loaders for a sample that cannot be decoded. */
#define DATASET_CLS_SKIPPED 1

/* Default largest image kept in the cache: 256 x 256 pixels. */
#define DATASET_CLS_CACHE_MAX_PIXELS_DEFAULT (256u * 256u)

/* Largest size accepted by the loaders, in pixels per side. */
#define DATASET_CLS_MAX_SIZE 4096

enum dataset_cls_split {
    DATASET_CLS_TRAIN = 0,
    DATASET_CLS_VAL = 1,
};

enum dataset_problem_kind {
    DATASET_PROBLEM_NOT_IMAGE,        /* neither JPEG nor PNG */
    DATASET_PROBLEM_UNSUPPORTED,      /* GIF, BMP, WebP, TIFF, HEIF */
    DATASET_PROBLEM_CORRUPT,          /* header fails to decode */
    DATASET_PROBLEM_TOO_LARGE,        /* over IMAGE_MAX_PIXELS */
    DATASET_PROBLEM_UNREADABLE,       /* open or read failed, or a special
                                         file such as a FIFO */
    DATASET_PROBLEM_LOAD_FAILED,      /* full decode failed while loading */
    DATASET_PROBLEM_OUTSIDE_CLASS,    /* file directly in train/ or val/ */
    DATASET_PROBLEM_TOO_DEEP,         /* folders nested past the limit */
    DATASET_PROBLEM_EMPTY_CLASS,      /* class folder without usable images */
    DATASET_PROBLEM_MISSING_FROM_VAL, /* train class without a val folder */
    DATASET_PROBLEM_NOT_IN_TRAIN,     /* val class unknown to train/ */
    DATASET_PROBLEM_NO_VAL,           /* neither val/ nor test/ */
};

/* One report entry. Rendered as "path: problem; action". */
struct dataset_problem {
    enum dataset_problem_kind kind;
    char *path;    /* file or folder, relative to the data set root */
    char *problem; /* what is wrong, e.g. "not an image: starts with ..." */
    char *action;  /* what was done, e.g. "skipped" */
};

struct dataset_cls_sample {
    char *path; /* full path: root and relative path joined */
    int label;  /* class index */
};

struct dataset_cls_split_set {
    char name[8];                       /* "train", "val", "test" or "" */
    struct dataset_cls_sample *samples; /* by class, then by path */
    size_t count;
    size_t *class_counts;               /* samples per class */
};

struct dataset_cls_state;

struct dataset_cls {
    char *root;
    char **class_names; /* sorted folder names of train/ */
    int class_count;    /* including classes without images */
    struct dataset_cls_split_set splits[2]; /* by enum dataset_cls_split */
    struct dataset_problem *problems;
    size_t problem_count;
    struct dataset_cls_state *state; /* cache and lock, private */
};

struct dataset_cls_options {
    size_t cache_max_bytes;    /* total pixel bytes cached; 0: no cache */
    uint32_t cache_max_pixels; /* larger images are not cached; 0: the
                                  default DATASET_CLS_CACHE_MAX_PIXELS_
                                  DEFAULT */
};

/* Scan root and build the data set. options may be NULL (no cache). On
 * success *out is a new data set that dataset_cls_free releases; on
 * failure err names what is missing and *out is NULL. */
int dataset_cls_scan(const char *root,
                     const struct dataset_cls_options *options,
                     struct dataset_cls **out, struct error *err);

void dataset_cls_free(struct dataset_cls *ds);

/* Decode sample index of split into chw (3 * size * size floats in [0, 1],
 * CHW) and return 0. A sample whose image fails to decode returns
 * DATASET_CLS_SKIPPED: the failure is added to the report on the first
 * try, and later calls return DATASET_CLS_SKIPPED without reading the
 * file. Negative codes are for invalid arguments and -ENOMEM. */
int dataset_cls_load(struct dataset_cls *ds, enum dataset_cls_split split,
                     size_t index, int size, float *chw, struct error *err);

/* Load the samples indices[0..count) in parallel (OpenMP) and pack the
 * ones that decode at the front: chw receives *loaded images of
 * 3 * size * size floats and labels their class indices, in the order of
 * indices. Skipped samples are left out. chw must have room for count
 * images. Returns 0 or the first negative code of dataset_cls_load. */
int dataset_cls_load_batch(struct dataset_cls *ds,
                           enum dataset_cls_split split,
                           const size_t *indices, size_t count, int size,
                           float *chw, int *labels, size_t *loaded,
                           struct error *err);

/* Short stable name of a problem kind for APIs and logs, such as
 * "not_image" or "empty_class". */
const char *dataset_problem_kind_name(enum dataset_problem_kind kind);

/* Render one entry as "path: problem; action" into buf (always
 * NUL-terminated). Returns the length snprintf would have written. */
int dataset_problem_format(const struct dataset_problem *p, char *buf,
                           size_t len);

/* Render the whole report, one entry per line, into a new string that the
 * caller frees. Safe while loads run. Returns NULL when out of memory, and
 * "" for an empty report. */
char *dataset_cls_report_text(struct dataset_cls *ds);

/* Log a summary line and the first max_lines entries at warning level,
 * then the number of entries not shown. */
void dataset_cls_log_report(struct dataset_cls *ds, size_t max_lines);

#ifdef __cplusplus
}
#endif

#endif
