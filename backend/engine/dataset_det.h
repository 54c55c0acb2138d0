/*
 * The object detection data set in the Ultralytics layout:
 *
 *   ROOT/data.yaml            path, train, val, optional test, names, nc
 *   ROOT/images/train/NAME.jpg  images (any folder named in data.yaml)
 *   ROOT/labels/train/NAME.txt  the label file of each image
 *
 * data.yaml: `path` is the data set folder relative to the folder that
 * contains data.yaml (default "."); `train`, `val` and `test` are relative
 * to `path` and name an images folder, a list of folders, or a .txt file
 * that lists image paths, one per line, relative to the .txt file's
 * folder. `names` is a list or a map from 0..n-1 to names; `nc`, when
 * present, must equal the number of names, and without `names` the
 * classes are called "class0", "class1", ... An absolute `path`, or any
 * path that resolves (symbolic links included) outside the folder that
 * contains data.yaml, fails the scan.
 *
 * The label file of an image is found as Ultralytics does: the last
 * "/images/" component of the image path becomes "/labels/" and the
 * extension becomes ".txt". A label row is "class x y w h" with the box
 * centre and size normalised to 0..1. Rows are validated one by one and
 * every problem goes into the report with file, line, rule and action:
 * bad rows are rejected, a box edge up to DATASET_DET_TOLERANCE outside
 * 0..1 is clipped, polygon rows (class and at least three x y pairs) are
 * converted to their bounding box, duplicate rows are dropped. A UTF-8
 * BOM, CRLF line ends, blank lines and trailing blanks are accepted
 * without a report entry. An image without a label file is a background
 * image; a label file without an image is reported.
 *
 * Every image is fully decoded during the scan (in parallel with
 * options->threads), so corrupt and truncated files are rejected then and
 * never reach training. Decoded images stay in memory up to
 * options->cache_bytes, grayscale ones with one channel; the rest are
 * decoded again at each load. Symbolic links inside the data set are
 * reported and not followed. Hidden files and folders (names starting
 * with '.') are ignored without a report.
 *
 * After the scan the data set is read-only, so any number of threads may
 * call dataset_det_labels, dataset_det_image and the loaders of
 * det_augment.h at once.
 */
#ifndef TRAINYARD_DATASET_DET_H
#define TRAINYARD_DATASET_DET_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Box edges may lie this far outside 0..1 (normalised) and are clipped;
 * further out the row is rejected. */
#define DATASET_DET_TOLERANCE 0.01f

/* Largest data.yaml and label file read, in bytes. */
#define DATASET_DET_YAML_MAX_BYTES (1u << 20)
#define DATASET_DET_LABEL_MAX_BYTES (16u << 20)

/* Maximum number of classes. */
#define DATASET_DET_MAX_CLASSES 10000

enum dataset_det_split {
    DATASET_DET_TRAIN = 0,
    DATASET_DET_VAL = 1,
    DATASET_DET_TEST = 2,
    DATASET_DET_SPLITS = 3,
};

enum dataset_det_level {
    DATASET_DET_INFO,    /* accepted as is or converted, nothing lost */
    DATASET_DET_WARNING, /* a row, label or image was dropped */
    DATASET_DET_ERROR,   /* the data set cannot be used as it is */
};

/* One report entry. Rendered as "file:line: message [rule]; action". */
struct dataset_det_problem {
    enum dataset_det_level level;
    char *file;         /* relative to the data set folder */
    int line;           /* 1-based line of a label or list file, or 0 */
    const char *rule;   /* stable short name, e.g. "class_out_of_range" */
    char *message;      /* what is wrong, with the value */
    const char *action; /* what was done, e.g. "row rejected" */
};

/* An image with its validated labels. */
struct dataset_det_image {
    char *path;     /* full path */
    char *rel;      /* path relative to the data set folder */
    int width;      /* after the EXIF orientation */
    int height;
    int count;      /* boxes */
    float *xywhn;   /* count * 4: x centre, y centre, width, height in
                       0..1 */
    int *cls;       /* count class indices */
    int background; /* 1: no label file */
    struct image *cached; /* decoded image (1 or 3 channels) or NULL */
};

struct dataset_det_split_set {
    char name[8];  /* "train", "val", "test" */
    struct dataset_det_image *images; /* in scan order */
    size_t count;
    size_t boxes;
    size_t background;
};

struct dataset_det {
    char *root;      /* the data set folder: the one containing data.yaml */
    char *yaml_path; /* full path of data.yaml */
    char **class_names;
    int class_count;
    struct dataset_det_split_set splits[DATASET_DET_SPLITS];
    struct dataset_det_problem *problems;
    size_t problem_count;
    size_t problem_capacity;
    /* Totals over all splits. */
    size_t rows_rejected;
    size_t rows_clipped;
    size_t duplicates;
    size_t polygons;
    size_t images_rejected;
    size_t orphan_labels;
    int max_boxes;       /* most boxes of one image */
    size_t cache_bytes;  /* bytes of decoded images kept */
};

/* The 2,500 Fashion-MNIST scenes (fmnist_det.h) take 122,776,160 bytes
 * of cache, measured with seed 0. */
struct dataset_det_options {
    size_t cache_bytes; /* decoded image bytes kept in memory; 0: none */
    int threads;        /* decoding threads; 0 or 1: one */
};

/* Scan a data set: path is a data.yaml file, a folder containing data.yaml
 * (or a single *.yaml), or a folder whose only subfolder contains it. opt
 * may be NULL (no cache, one thread). On success *out is a new data set
 * that dataset_det_free releases; on failure err says what is wrong and
 * *out is NULL. The scan fails when data.yaml is missing or invalid, a
 * path leaves the data set folder, the train or val split is missing,
 * or no usable training image remains. */
int dataset_det_scan(const char *path, const struct dataset_det_options *opt,
                     struct dataset_det **out, struct error *err);

void dataset_det_free(struct dataset_det *ds);

/* Find the data.yaml that dataset_det_scan would open for path. Returns
 * 0 with *yaml_path a new string to free, or -ENOENT (none) or another
 * negative code with err set. */
int dataset_det_find_yaml(const char *path, char **yaml_path,
                          struct error *err);

/* Labels of image i of a split, normalised x y w h as in the file, after
 * validation. The arrays belong to ds. Returns 0 or -EINVAL. */
int dataset_det_labels(const struct dataset_det *ds, int split, size_t i,
                       const float **xywhn, const int **cls, int *n);

/* Decode image i of a split into img, a view of the cached copy when
 * there is one (then *owned is 0) or a new image to image_free (then
 * *owned is 1). Cached images may have one channel. */
int dataset_det_image(const struct dataset_det *ds, int split, size_t i,
                      struct image *img, int *owned, struct error *err);

/* Short name of a level: "info", "warning", "error". */
const char *dataset_det_level_name(enum dataset_det_level level);

/* Render one entry as "file:line: message [rule]; action" into buf
 * (always NUL-terminated). Returns the length snprintf would write. */
int dataset_det_problem_format(const struct dataset_det_problem *p,
                               char *buf, size_t len);

/* The report as JSON: classes, per split images, boxes and background
 * images, totals and the problem list. NULL when out of memory. */
cJSON *dataset_det_report_json(const struct dataset_det *ds);

/* Log a summary line and the first max_lines entries (warnings and
 * errors at warning level, notes at info level). */
void dataset_det_log_report(const struct dataset_det *ds, int max_lines);

#ifdef __cplusplus
}
#endif

#endif
