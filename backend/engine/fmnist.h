/*
 * Fashion-MNIST: a reader for the IDX files of Debian's package
 * dataset-fashion-mnist and an importer that writes them as a
 * classification data set in the Ultralytics layout (dataset_cls.h).
 *
 * The package installs four gzip files in FMNIST_DEFAULT_DIR:
 * {train,t10k}-images-idx3-ubyte.gz (28x28 uint8 images, row-major) and
 * {train,t10k}-labels-idx1-ubyte.gz (one uint8 label 0-9 per image). An
 * IDX file starts with a big-endian magic number (0x00000803 for 3-D
 * uint8 data, 0x00000801 for 1-D), then one big-endian uint32 per
 * dimension, then the data. Every header field is checked and the error
 * names the file, the value and the expected one. Uncompressed copies
 * without the .gz suffix are read too.
 *
 * The importer writes OUT/train/<class>/<index>.png (the 60,000 training
 * images) and OUT/val/<class>/<index>.png (the official 10,000 test
 * images) as 8-bit grayscale PNGs. <index> is the position in the IDX
 * file, zero-padded to 5 digits so that sorted order is file order.
 * Class folders are "0-t-shirt" ... "9-ankle-boot": the label prefix makes
 * the sorted folder order equal the label order. Everything is written
 * into a sibling folder "OUT.partial-PID", flushed with syncfs() and
 * renamed to OUT, so an interrupted import never leaves a half data set
 * at OUT. A later import removes partial folders whose process is gone.
 */
#ifndef TRAINYARD_FMNIST_H
#define TRAINYARD_FMNIST_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define FMNIST_SIDE 28
#define FMNIST_PIXELS (FMNIST_SIDE * FMNIST_SIDE)
#define FMNIST_CLASSES 10
#define FMNIST_TRAIN_COUNT 60000
#define FMNIST_TEST_COUNT 10000

/* Class names by label: "t-shirt", "trouser", ..., "ankle-boot". */
extern const char *const fmnist_class_names[FMNIST_CLASSES];

/* Class folder names by label: "0-t-shirt", ..., "9-ankle-boot". */
extern const char *const fmnist_class_folders[FMNIST_CLASSES];

enum fmnist_split {
    FMNIST_TRAIN, /* train-*-ubyte.gz, 60,000 images */
    FMNIST_TEST,  /* t10k-*-ubyte.gz, 10,000 images */
};

/* Images and labels read into memory. */
struct fmnist_set {
    size_t count;      /* images and labels read */
    size_t file_count; /* images the IDX header declares */
    uint8_t *images;   /* count * FMNIST_PIXELS bytes, image after image */
    uint8_t *labels;   /* count labels, each 0-9 */
};

/* Read the first limit images and labels of a split from dir (NULL for
 * FMNIST_DEFAULT_DIR). Limit 0 reads all. Missing files fail with -ENOENT,
 * and the message names the file and the fix (`make deps`). Invalid or
 * truncated files fail with -EBADMSG. On failure set is zeroed. */
int fmnist_read(const char *dir, enum fmnist_split split, size_t limit,
                struct fmnist_set *set, struct error *err);

/* Release the arrays and zero set. A zeroed set is accepted. */
void fmnist_free(struct fmnist_set *set);

struct fmnist_import_options {
    const char *source_dir; /* NULL: FMNIST_DEFAULT_DIR */
    size_t train_limit;     /* first N training images; 0: all 60,000 */
    size_t val_limit;       /* first N test images; 0: all 10,000 */
};

/* Write the data set described above to out_dir, which must not exist;
 * its parent folders are created. options may be NULL for all images
 * from FMNIST_DEFAULT_DIR. Fails with -EEXIST when out_dir exists. */
int fmnist_import(const char *out_dir,
                  const struct fmnist_import_options *options,
                  struct error *err);

#ifdef __cplusplus
}
#endif

#endif
