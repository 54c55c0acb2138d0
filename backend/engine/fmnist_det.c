/*
 * Fashion-MNIST detection scene generator; the scenes and the layout are
 * described in fmnist_det.h.
 *
 * All random choices of scene i come from rng_for(seed, split + 1, i) in
 * a fixed order (background, tint, item count, then per item its image,
 * size, colour and positions), so a scene never depends on the scenes
 * before it.
 */
#include "fmnist_det.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "image.h"
#include "log.h"
#include "rng.h"

#define SIDE FMNIST_DET_SIDE

/* Positions tried per item before it is left out. */
#define PLACE_TRIES 30

/* Maximum IoU of two item boxes, and maximum fraction of one box that
 * another may cover. */
#define MAX_IOU 0.2
#define MAX_COVER 0.3

static int box_area(const struct fmnist_det_box *b)
{
    return (b->x2 - b->x1) * (b->y2 - b->y1);
}

static int overlap_area(const struct fmnist_det_box *a,
                        const struct fmnist_det_box *b)
{
    int w = (a->x2 < b->x2 ? a->x2 : b->x2) - (a->x1 > b->x1 ? a->x1 : b->x1);
    int h = (a->y2 < b->y2 ? a->y2 : b->y2) - (a->y1 > b->y1 ? a->y1 : b->y1);

    return w > 0 && h > 0 ? w * h : 0;
}

/* 1 when box may join the placed boxes under MAX_IOU and MAX_COVER. */
static bool fits(const struct fmnist_det_box *box,
                 const struct fmnist_det_box *placed, int count)
{
    for (int i = 0; i < count; i++) {
        double inter = overlap_area(box, &placed[i]);
        double a = box_area(box), b = box_area(&placed[i]);

        if (inter / (a + b - inter) > MAX_IOU || inter / a > MAX_COVER ||
            inter / b > MAX_COVER)
            return false;
    }
    return true;
}

static uint8_t clamp_byte(int v)
{
    if (v < 0)
        return 0;
    return (uint8_t)(v > 255 ? 255 : v);
}

/* Fill rgb with a plain, gradient or noisy dark background. */
static void draw_background(struct rng *r, uint8_t *rgb)
{
    int kind = (int)rng_below(r, 3);
    int from = 10 + (int)rng_below(r, 50);
    int to = 10 + (int)rng_below(r, 60);
    int vertical = (int)rng_below(r, 2);
    int offset[3];

    for (int c = 0; c < 3; c++)
        offset[c] = (int)rng_below(r, 21) - 10;
    /* Equal offsets and gray items would make the whole scene gray, which
     * a data set scan reports as a grayscale image. With unequal offsets,
     * every background pixel of level 10 or more has unequal channels, and
     * plain and gradient backgrounds have only such pixels. Changing one
     * offset without a further draw keeps the other scenes as they were. */
    if (offset[0] == offset[1] && offset[1] == offset[2])
        offset[2] = offset[2] < 10 ? offset[2] + 1 : offset[2] - 1;
    for (int y = 0; y < SIDE; y++) {
        for (int x = 0; x < SIDE; x++) {
            uint8_t *p = rgb + ((size_t)y * SIDE + (size_t)x) * 3;
            int t = vertical ? y : x;
            int level = from;

            if (kind == 1)
                level = from + (to - from) * t / (SIDE - 1);
            else if (kind == 2)
                level = from + (int)rng_below(r, 17) - 8;
            for (int c = 0; c < 3; c++)
                p[c] = clamp_byte(level + offset[c]);
        }
    }
}

/* The bounding box of pixels >= FMNIST_DET_INK of a size x size item,
 * relative to the item. Returns false when no pixel reaches it. */
static bool ink_box(const uint8_t *item, int size, struct fmnist_det_box *b)
{
    b->x1 = b->y1 = size;
    b->x2 = b->y2 = 0;
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            if (item[y * size + x] < FMNIST_DET_INK)
                continue;
            if (x < b->x1)
                b->x1 = x;
            if (y < b->y1)
                b->y1 = y;
            if (x + 1 > b->x2)
                b->x2 = x + 1;
            if (y + 1 > b->y2)
                b->y2 = y + 1;
        }
    return b->x2 > b->x1 && b->y2 > b->y1;
}

/* Blend a size x size item at (px, py) with its pixel value as opacity. */
static void blend(uint8_t *rgb, const uint8_t *item, int size, int px,
                  int py, const int color[3])
{
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            uint8_t *p = rgb + ((size_t)(py + y) * SIDE + (size_t)(px + x)) *
                                   3;
            int a = item[y * size + x];

            for (int c = 0; c < 3; c++)
                p[c] = (uint8_t)((p[c] * (255 - a) + color[c] * a + 127) /
                                 255);
        }
}

/* Scale item image to size x size and place it. Returns 1 placed, 0 left
 * out, or a negative code. */
static int place_item(struct rng *r, const struct fmnist_set *set,
                      bool colored, uint8_t *rgb,
                      struct fmnist_det_box *boxes, int count,
                      struct error *err)
{
    size_t image = (size_t)rng_below(r, set->count);
    int size = FMNIST_DET_MIN_ITEM +
               (int)rng_below(r, FMNIST_DET_MAX_ITEM - FMNIST_DET_MIN_ITEM +
                                     1);
    struct image src = {FMNIST_SIDE, FMNIST_SIDE, 1,
                        set->images + image * FMNIST_PIXELS};
    struct image scaled;
    struct fmnist_det_box ink;
    int color[3];
    int rc;

    if (colored) {
        for (int c = 0; c < 3; c++)
            color[c] = 100 + (int)rng_below(r, 156);
    } else {
        color[0] = color[1] = color[2] = 150 + (int)rng_below(r, 106);
    }
    rc = image_resize(&src, size, size, &scaled, err);
    if (rc != 0)
        return rc;
    rc = 0;
    if (ink_box(scaled.pixels, size, &ink)) {
        for (int t = 0; t < PLACE_TRIES; t++) {
            int px = (int)rng_below(r, (uint64_t)(SIDE - size + 1));
            int py = (int)rng_below(r, (uint64_t)(SIDE - size + 1));
            struct fmnist_det_box box = {set->labels[image], px + ink.x1,
                                         py + ink.y1, px + ink.x2,
                                         py + ink.y2};

            if (!fits(&box, boxes, count))
                continue;
            blend(rgb, scaled.pixels, size, px, py, color);
            boxes[count] = box;
            rc = 1;
            break;
        }
    }
    image_free(&scaled);
    return rc;
}

int fmnist_det_render(const struct fmnist_set *set, uint64_t seed,
                      enum fmnist_split split, size_t index, uint8_t *rgb,
                      struct fmnist_det_box *boxes, int *count,
                      struct error *err)
{
    struct rng r;
    bool colored;
    int items;

    *count = 0;
    if (set == NULL || set->count == 0)
        return error_set(err, -EINVAL, "no Fashion-MNIST images to place");
    rng_for(&r, seed, (uint64_t)split + 1, (uint64_t)index);
    draw_background(&r, rgb);
    colored = rng_below(&r, 2) == 1;
    items = 1 + (int)rng_below(&r, FMNIST_DET_MAX_ITEMS);
    for (int k = 0; k < items; k++) {
        int rc = place_item(&r, set, colored, rgb, boxes, *count, err);

        if (rc < 0)
            return rc;
        *count += rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Writing the data set
 */

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : errno;
}

static int remove_tree(const char *path)
{
    int rc = nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS);

    return rc == -1 ? errno : rc;
}

/* Remove "BASE.partial-PID" folders next to the output whose process no
 * longer runs, left by killed runs. */
static void remove_stale_partials(const char *parent, const char *base)
{
    char prefix[NAME_MAX + 16];
    size_t prefix_len;
    struct dirent *entry;
    DIR *dir = opendir(parent);

    if (dir == NULL)
        return;
    prefix_len = (size_t)snprintf(prefix, sizeof(prefix), "%s.partial-",
                                  base);
    while ((entry = readdir(dir)) != NULL) {
        char path[PATH_MAX];
        char *end;
        long pid;

        if (strncmp(entry->d_name, prefix, prefix_len) != 0)
            continue;
        pid = strtol(entry->d_name + prefix_len, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", parent, entry->d_name) >=
            (int)sizeof(path))
            continue;
        log_warn("fmnist scenes: removing '%s' left by an interrupted run "
                 "(pid %ld)", path, pid);
        if (remove_tree(path) != 0)
            log_warn("fmnist scenes: cannot remove '%s'", path);
    }
    closedir(dir);
}

/* Format a path into buf of PATH_MAX bytes. Returns 0, or
 * -ENAMETOOLONG with err set. */
__attribute__((format(printf, 3, 4)))
static int format_path(char *buf, struct error *err, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, PATH_MAX, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PATH_MAX)
        return error_set(err, -ENAMETOOLONG, "path '%s...' is too long",
                         buf);
    return 0;
}

static int write_text_file(const char *path, const char *text,
                           struct error *err)
{
    FILE *f = fopen(path, "wb");
    int failed;

    if (f == NULL)
        return error_errno(err, errno, "cannot create '%s'", path);
    failed = fputs(text, f) < 0;
    if (fclose(f) != 0 || failed)
        return error_errno(err, errno, "cannot write '%s'", path);
    return 0;
}

static int write_yaml(const char *root, uint64_t seed, struct error *err)
{
    char path[PATH_MAX], text[1024];
    int n;

    n = snprintf(text, sizeof(text),
                 "# Fashion-MNIST detection scenes (train make-fmnist-det, "
                 "seed %llu)\n"
                 "path: .\ntrain: images/train\nval: images/val\nnames:\n",
                 (unsigned long long)seed);
    for (int c = 0; c < FMNIST_CLASSES; c++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "  %d: %s\n", c,
                      fmnist_class_names[c]);
    if (format_path(path, err, "%s/data.yaml", root) != 0)
        return -ENAMETOOLONG;
    return write_text_file(path, text, err);
}

/* Every label value is a multiple of 1 / (2 * SIDE) = 1/256, which has at
 * most 8 significant decimal digits, so "%.8g" writes it exactly. A reader
 * then computes float edges cx - w/2 and cx + w/2 exactly, and a box at the
 * image border reads as 0 or 1. Rounded to 6 decimals, as with "%.6f",
 * such an edge can come out just outside 0..1, and a scan then clips the
 * box and reports it. */
_Static_assert(SIDE == 128, "label values need more than 8 digits");

/* Write the YOLO label row of b (class, then centre and size relative to
 * SIDE) into text and return its length. */
static size_t format_label_row(char *text, size_t size,
                               const struct fmnist_det_box *b)
{
    int n = snprintf(text, size, "%d %.8g %.8g %.8g %.8g\n", b->cls,
                     (b->x1 + b->x2) / (2.0 * SIDE),
                     (b->y1 + b->y2) / (2.0 * SIDE),
                     (b->x2 - b->x1) / (double)SIDE,
                     (b->y2 - b->y1) / (double)SIDE);

    return n > 0 ? (size_t)n : 0;
}

static int write_split(const char *root, const char *name,
                       enum fmnist_split split, const struct fmnist_set *set,
                       size_t count, uint64_t seed, struct error *err)
{
    uint8_t *rgb = malloc((size_t)SIDE * SIDE * 3);
    struct fmnist_det_box boxes[FMNIST_DET_MAX_ITEMS];
    char path[PATH_MAX];
    int rc;

    if (rgb == NULL)
        return error_set(err, -ENOMEM, "out of memory for a scene");
    rc = format_path(path, err, "%s/images/%s", root, name);
    if (rc == 0)
        rc = fs_mkdir_p(path, 0755, err);
    if (rc == 0)
        rc = format_path(path, err, "%s/labels/%s", root, name);
    if (rc == 0)
        rc = fs_mkdir_p(path, 0755, err);
    for (size_t i = 0; i < count && rc == 0; i++) {
        char text[FMNIST_DET_MAX_ITEMS * 64];
        size_t len = 0;
        int n;

        rc = fmnist_det_render(set, seed, split, i, rgb, boxes, &n, err);
        if (rc != 0)
            break;
        rc = format_path(path, err, "%s/images/%s/%05zu.png", root, name, i);
        if (rc == 0)
            rc = image_write_png(path, rgb, SIDE, SIDE, 3, 8, err);
        for (int k = 0; k < n && rc == 0; k++)
            len += format_label_row(text + len, sizeof(text) - len,
                                    &boxes[k]);
        text[len] = '\0';
        if (rc == 0)
            rc = format_path(path, err, "%s/labels/%s/%05zu.txt", root, name,
                             i);
        if (rc == 0)
            rc = write_text_file(path, text, err);
    }
    free(rgb);
    return rc;
}

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

/* Rename without replacing a folder created at out_dir meanwhile. */
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
                         const struct fmnist_set *test,
                         const struct fmnist_det_options *opt,
                         struct error *err)
{
    char parent_copy[PATH_MAX], base_copy[PATH_MAX], partial[PATH_MAX];
    int rc;

    snprintf(parent_copy, sizeof(parent_copy), "%s", out_dir);
    snprintf(base_copy, sizeof(base_copy), "%s", out_dir);
    rc = fs_mkdir_p(dirname(parent_copy), 0755, err);
    if (rc != 0)
        return rc;
    snprintf(parent_copy, sizeof(parent_copy), "%s", out_dir);
    remove_stale_partials(dirname(parent_copy), basename(base_copy));
    if (snprintf(partial, sizeof(partial), "%s.partial-%ld", out_dir,
                 (long)getpid()) >= (int)sizeof(partial))
        return error_set(err, -ENAMETOOLONG, "output folder path '%s' is "
                         "too long", out_dir);
    if (mkdir(partial, 0755) != 0)
        return error_errno(err, errno, "cannot create folder '%s'",
                           partial);

    rc = write_yaml(partial, opt->seed, err);
    if (rc == 0)
        rc = write_split(partial, "train", FMNIST_TRAIN, train,
                         opt->train_count, opt->seed, err);
    if (rc == 0)
        rc = write_split(partial, "val", FMNIST_TEST, test, opt->val_count,
                         opt->seed, err);
    if (rc == 0)
        rc = sync_folder(partial, err);
    if (rc == 0)
        rc = publish(partial, out_dir, err);
    if (rc == 0)
        rc = fs_sync_parent(out_dir, err);
    if (rc != 0 && remove_tree(partial) != 0)
        log_warn("fmnist scenes: cannot remove '%s'", partial);
    return rc;
}

int fmnist_det_generate(const char *out_dir,
                        const struct fmnist_det_options *options,
                        struct error *err)
{
    struct fmnist_det_options opt = {0};
    struct fmnist_set train = {0}, test = {0};
    char out[PATH_MAX];
    struct stat st;
    int rc;

    if (options != NULL)
        opt = *options;
    if (opt.train_count == 0)
        opt.train_count = FMNIST_DET_DEFAULT_TRAIN;
    if (opt.val_count == 0)
        opt.val_count = FMNIST_DET_DEFAULT_VAL;
    if (out_dir == NULL || out_dir[0] == '\0' ||
        strlen(out_dir) > PATH_MAX - 64)
        return error_set(err, -EINVAL, "invalid output folder for the "
                         "Fashion-MNIST scenes: '%s'",
                         out_dir ? out_dir : "(null)");
    if (opt.train_count > 1000000 || opt.val_count > 1000000)
        return error_set(err, -EINVAL, "invalid scene count %zu train, %zu "
                         "val; expected at most 1000000 each",
                         opt.train_count, opt.val_count);

    /* "OUT/" would put the partial folder inside OUT. */
    snprintf(out, sizeof(out), "%s", out_dir);
    for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--)
        out[n - 1] = '\0';
    if (lstat(out, &st) == 0)
        return error_set(err, -EEXIST, "'%s' already exists; remove it or "
                         "choose another folder for the Fashion-MNIST "
                         "scenes", out);

    rc = fmnist_read(opt.source_dir, FMNIST_TRAIN, 0, &train, err);
    if (rc == 0)
        rc = fmnist_read(opt.source_dir, FMNIST_TEST, 0, &test, err);
    if (rc == 0) {
        log_info("fmnist scenes: writing %zu train and %zu val scenes to "
                 "'%s' (seed %llu)", opt.train_count, opt.val_count, out,
                 (unsigned long long)opt.seed);
        rc = write_dataset(out, &train, &test, &opt, err);
    }
    if (rc == 0)
        log_info("fmnist scenes: '%s' complete", out);
    fmnist_free(&train);
    fmnist_free(&test);
    return rc;
}
