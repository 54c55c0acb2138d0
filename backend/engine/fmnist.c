/*
 * Fashion-MNIST reader and importer; the formats and the contract are in
 * fmnist.h.
 *
 * zlib's gzread streams the files, so a limited read decompresses only
 * the images it returns. The importer reads both splits into memory
 * first (about 55 MB for all 70,000 images), so a damaged source file
 * fails the import before anything is written.
 */
#include "fmnist.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "fsutil.h"
#include "image.h"
#include "log.h"

#define IDX_MAGIC_IMAGES 0x00000803u /* uint8 data, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* uint8 data, 1 dimension */

/* Maximum declared item count accepted. Fashion-MNIST has 60,000. */
#define IDX_MAX_COUNT 10000000u

#define FIX_HINT "reinstall the Debian package dataset-fashion-mnist " \
                 "(run `make deps`)"

const char *const fmnist_class_names[FMNIST_CLASSES] = {
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
};

const char *const fmnist_class_folders[FMNIST_CLASSES] = {
    "0-t-shirt", "1-trouser", "2-pullover", "3-dress", "4-coat",
    "5-sandal", "6-shirt", "7-sneaker", "8-bag", "9-ankle-boot",
};

void fmnist_free(struct fmnist_set *set)
{
    if (set == NULL)
        return;
    free(set->images);
    free(set->labels);
    memset(set, 0, sizeof(*set));
}

/* ------------------------------------------------------------------------
 * IDX files
 */

/* An open IDX file and the path used in messages. */
struct idx_file {
    gzFile gz;
    char path[PATH_MAX];
};

/* Open dir/base.gz, or dir/base when only the uncompressed file exists
 * (gzread reads plain files as they are). */
static int idx_open(struct idx_file *f, const char *dir, const char *base,
                    struct error *err)
{
    snprintf(f->path, sizeof(f->path), "%s/%s.gz", dir, base);
    if (access(f->path, F_OK) != 0) {
        char plain[PATH_MAX];

        snprintf(plain, sizeof(plain), "%s/%s", dir, base);
        if (access(plain, F_OK) != 0)
            return error_set(err, -ENOENT,
                             "Fashion-MNIST file '%s' not found; install "
                             "the Debian package dataset-fashion-mnist "
                             "(run `make deps`)", f->path);
        memcpy(f->path, plain, sizeof(plain));
    }

    f->gz = gzopen(f->path, "rb");
    if (f->gz == NULL)
        return error_errno(err, errno ? errno : ENOMEM, "cannot open '%s'",
                           f->path);
    gzbuffer(f->gz, 1 << 17);
    return 0;
}

/* Read exactly len bytes. what names the data in the truncation error. */
static int idx_read(struct idx_file *f, void *buf, size_t len,
                    const char *what, struct error *err)
{
    size_t got = 0;

    while (got < len) {
        size_t chunk = len - got < (1u << 30) ? len - got : (1u << 30);
        int n = gzread(f->gz, (char *)buf + got, (unsigned)chunk);
        int zerr;

        if (n < 0) {
            const char *msg = gzerror(f->gz, &zerr);
            return error_set(err, -EBADMSG, "cannot read '%s': %s; %s",
                             f->path, msg, FIX_HINT);
        }
        if (n == 0)
            return error_set(err, -EBADMSG,
                             "'%s' is truncated: it ends after %zu of the "
                             "%zu bytes of %s; %s", f->path, got, len, what,
                             FIX_HINT);
        got += (size_t)n;
    }
    return 0;
}

static uint32_t big_endian_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

/* Read the magic and the dims sizes of an IDX header into sizes. */
static int idx_header(struct idx_file *f, uint32_t magic, int dims,
                      uint32_t *sizes, struct error *err)
{
    uint8_t header[16];
    uint32_t found;
    int rc;

    rc = idx_read(f, header, 4 + 4 * (size_t)dims, "the IDX header", err);
    if (rc != 0)
        return rc;
    found = big_endian_u32(header);
    if (found != magic)
        return error_set(err, -EBADMSG,
                         "'%s' is not an IDX %s file: magic number "
                         "0x%08x, expected 0x%08x; %s", f->path,
                         magic == IDX_MAGIC_IMAGES ? "image" : "label",
                         found, magic, FIX_HINT);
    for (int i = 0; i < dims; i++)
        sizes[i] = big_endian_u32(header + 4 + 4 * i);
    if (sizes[0] == 0 || sizes[0] > IDX_MAX_COUNT)
        return error_set(err, -EBADMSG,
                         "'%s' declares %u items, expected 1 to %u; %s",
                         f->path, sizes[0], IDX_MAX_COUNT, FIX_HINT);
    return 0;
}

/* Read the header of an images file and its first limit images, or all
 * of them when limit is 0. */
static int read_images(const char *dir, const char *base, size_t limit,
                       struct fmnist_set *set, struct error *err)
{
    struct idx_file f;
    uint32_t sizes[3] = {0};
    int rc;

    rc = idx_open(&f, dir, base, err);
    if (rc != 0)
        return rc;
    rc = idx_header(&f, IDX_MAGIC_IMAGES, 3, sizes, err);
    if (rc == 0 && (sizes[1] != FMNIST_SIDE || sizes[2] != FMNIST_SIDE))
        rc = error_set(err, -EBADMSG,
                       "'%s' holds %ux%u images, expected %dx%d for "
                       "Fashion-MNIST; %s", f.path, sizes[1], sizes[2],
                       FMNIST_SIDE, FMNIST_SIDE, FIX_HINT);
    if (rc == 0) {
        set->file_count = sizes[0];
        set->count = limit && limit < sizes[0] ? limit : sizes[0];
        set->images = malloc(set->count * FMNIST_PIXELS);
        if (set->images == NULL)
            rc = error_set(err, -ENOMEM, "out of memory for %zu images",
                           set->count);
    }
    if (rc == 0)
        rc = idx_read(&f, set->images, set->count * FMNIST_PIXELS,
                      "the images", err);
    gzclose(f.gz);
    return rc;
}

static int read_labels(const char *dir, const char *base,
                       struct fmnist_set *set, struct error *err)
{
    struct idx_file f;
    uint32_t count = 0;
    int rc;

    rc = idx_open(&f, dir, base, err);
    if (rc != 0)
        return rc;
    rc = idx_header(&f, IDX_MAGIC_LABELS, 1, &count, err);
    if (rc == 0 && count != set->file_count)
        rc = error_set(err, -EBADMSG,
                       "'%s' declares %u labels but the images file "
                       "declares %zu images, so the two do not belong "
                       "together; %s", f.path, count, set->file_count,
                       FIX_HINT);
    if (rc == 0) {
        set->labels = malloc(set->count + 1);
        if (set->labels == NULL)
            rc = error_set(err, -ENOMEM, "out of memory for %zu labels",
                           set->count);
    }
    if (rc == 0)
        rc = idx_read(&f, set->labels, set->count, "the labels", err);
    for (size_t i = 0; rc == 0 && i < set->count; i++) {
        if (set->labels[i] >= FMNIST_CLASSES)
            rc = error_set(err, -EBADMSG,
                           "label %u of item %zu in '%s' is outside 0-%d; "
                           "%s", set->labels[i], i, f.path,
                           FMNIST_CLASSES - 1, FIX_HINT);
    }
    gzclose(f.gz);
    return rc;
}

int fmnist_read(const char *dir, enum fmnist_split split, size_t limit,
                struct fmnist_set *set, struct error *err)
{
    const char *prefix = split == FMNIST_TRAIN ? "train" : "t10k";
    char images[64], labels[64];
    int rc;

    memset(set, 0, sizeof(*set));
    if (split != FMNIST_TRAIN && split != FMNIST_TEST)
        return error_set(err, -EINVAL, "invalid Fashion-MNIST split %d; "
                         "expected FMNIST_TRAIN or FMNIST_TEST", split);
    if (dir == NULL)
        dir = FMNIST_DEFAULT_DIR;
    snprintf(images, sizeof(images), "%s-images-idx3-ubyte", prefix);
    snprintf(labels, sizeof(labels), "%s-labels-idx1-ubyte", prefix);

    rc = read_images(dir, images, limit, set, err);
    if (rc == 0)
        rc = read_labels(dir, labels, set, err);
    if (rc != 0)
        fmnist_free(set);
    return rc;
}

/* ------------------------------------------------------------------------
 * Import
 */


static int write_split(const char *root, const char *split,
                       const struct fmnist_set *set, struct error *err)
{
    char path[PATH_MAX];
    int rc;

    for (int c = 0; c < FMNIST_CLASSES; c++) {
        snprintf(path, sizeof(path), "%s/%s/%s", root, split,
                 fmnist_class_folders[c]);
        rc = fs_mkdir_p(path, 0755, err);
        if (rc != 0)
            return rc;
    }

    for (size_t i = 0; i < set->count; i++) {
        snprintf(path, sizeof(path), "%s/%s/%s/%05zu.png", root, split,
                 fmnist_class_folders[set->labels[i]], i);
        rc = image_write_png(path, set->images + i * FMNIST_PIXELS,
                             FMNIST_SIDE, FMNIST_SIDE, 1, 8, err);
        if (rc != 0)
            return rc;
        if ((i + 1) % 10000 == 0)
            log_info("fmnist import: %s %zu/%zu images written", split,
                     i + 1, set->count);
    }
    return 0;
}

/* Flush the file system that contains path, so that the rename
 * publishes data that are on disk. */
static int sync_folder(const char *path, struct error *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;

    if (fd < 0)
        return error_errno(err, errno, "cannot open '%s'", path);
    if (syncfs(fd) != 0)
        rc = error_errno(err, errno, "cannot flush '%s' to disk", path);
    close(fd);
    return rc;
}

/* Rename without replacing: rename(2) would silently replace an empty
 * folder created at out_dir meanwhile. */
static int publish(const char *partial, const char *out_dir,
                   struct error *err)
{
    if (renameat2(AT_FDCWD, partial, AT_FDCWD, out_dir,
                  RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EINVAL && rename(partial, out_dir) == 0)
        return 0; /* the file system lacks RENAME_NOREPLACE */
    return error_errno(err, errno, "cannot rename '%s' to '%s'", partial,
                       out_dir);
}

static int write_dataset(const char *out_dir, const struct fmnist_set *train,
                         const struct fmnist_set *val, struct error *err)
{
    char parent_copy[PATH_MAX], base_copy[PATH_MAX], partial[PATH_MAX];
    const char *parent, *base;
    int rc;

    /* dirname() and basename() may modify their argument. */
    snprintf(parent_copy, sizeof(parent_copy), "%s", out_dir);
    snprintf(base_copy, sizeof(base_copy), "%s", out_dir);
    parent = dirname(parent_copy);
    base = basename(base_copy);
    rc = fs_mkdir_p(parent, 0755, err);
    if (rc != 0)
        return rc;
    fs_remove_stale_partials(parent, base, "fmnist import");

    if (snprintf(partial, sizeof(partial), "%s.partial-%ld", out_dir,
                 (long)getpid()) >= (int)sizeof(partial))
        return error_set(err, -ENAMETOOLONG, "output folder path '%s' is "
                         "too long", out_dir);
    if (mkdir(partial, 0755) != 0)
        return error_errno(err, errno, "cannot create folder '%s'",
                           partial);

    rc = write_split(partial, "train", train, err);
    if (rc == 0)
        rc = write_split(partial, "val", val, err);
    if (rc == 0)
        rc = sync_folder(partial, err);
    if (rc == 0)
        rc = publish(partial, out_dir, err);
    if (rc == 0)
        rc = fs_sync_parent(out_dir, err);
    if (rc != 0) {
        int remove_rc = fs_remove_tree(partial);

        if (remove_rc != 0)
            log_warn("fmnist import: cannot remove '%s': %s", partial,
                     strerror(remove_rc));
    }
    return rc;
}

int fmnist_import(const char *out_dir,
                  const struct fmnist_import_options *options,
                  struct error *err)
{
    struct fmnist_import_options defaults = {0};
    struct fmnist_set train = {0}, val = {0};
    char out[PATH_MAX];
    struct stat st;
    int rc;

    if (options == NULL)
        options = &defaults;
    if (out_dir == NULL || out_dir[0] == '\0' ||
        strlen(out_dir) > PATH_MAX - 64)
        return error_set(err, -EINVAL, "invalid output folder for the "
                         "Fashion-MNIST import: '%s'",
                         out_dir ? out_dir : "(null)");

    /* "OUT/" would put the partial folder inside OUT. */
    snprintf(out, sizeof(out), "%s", out_dir);
    for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--)
        out[n - 1] = '\0';
    out_dir = out;
    if (lstat(out_dir, &st) == 0)
        return error_set(err, -EEXIST, "'%s' already exists; remove it or "
                         "choose another folder for the Fashion-MNIST "
                         "import", out_dir);

    rc = fmnist_read(options->source_dir, FMNIST_TRAIN,
                     options->train_limit, &train, err);
    if (rc == 0)
        rc = fmnist_read(options->source_dir, FMNIST_TEST,
                         options->val_limit, &val, err);
    if (rc == 0) {
        log_info("fmnist import: writing %zu train and %zu val images to "
                 "'%s'", train.count, val.count, out_dir);
        rc = write_dataset(out_dir, &train, &val, err);
    }
    if (rc == 0)
        log_info("fmnist import: '%s' complete", out_dir);
    fmnist_free(&train);
    fmnist_free(&val);
    return rc;
}
