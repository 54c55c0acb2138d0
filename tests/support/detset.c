/* Tiny detection data sets for tests; see detset.h. */
#include "detset.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/image.h"
#include "fsutil.h"

int detset_write_yaml(const char *root, const char *const *names, int nc,
                      struct error *err)
{
    char path[PATH_MAX];
    FILE *f;
    int rc;

    if (nc < 1)
        return error_set(err, -EINVAL,
                         "invalid class count %d for %s: expected 1 or more",
                         nc, root);
    rc = fs_mkdir_p(root, 0755, err);
    if (rc != 0)
        return rc;
    snprintf(path, sizeof(path), "%s/data.yaml", root);
    f = fopen(path, "w");
    if (f == NULL)
        return error_errno(err, errno, "failed to create %s", path);
    fprintf(f, "path: .\n"
               "train: images/train\n"
               "val: images/val\n"
               "names:\n");
    for (int i = 0; i < nc; i++)
        fprintf(f, "  %d: %s\n", i, names[i]);
    if (fclose(f) != 0)
        return error_errno(err, errno, "failed to write %s", path);
    return 0;
}

void detset_class_color(int cls, unsigned char rgb[3])
{
    static const unsigned char colors[][3] = {
        {255, 255, 255}, {255, 64, 64}, {64, 255, 64}, {64, 64, 255},
    };
    const unsigned char *c = colors[cls % 4];

    memcpy(rgb, c, 3);
}

static void fill_box(unsigned char *px, int size, const struct detset_box *b)
{
    unsigned char rgb[3];

    detset_class_color(b->cls, rgb);
    for (int y = b->y; y < b->y + b->height; y++)
        for (int x = b->x; x < b->x + b->width; x++)
            memcpy(px + ((size_t)y * size + x) * 3, rgb, 3);
}

static int check_box(const struct detset_box *b, int size, const char *name,
                     struct error *err)
{
    if (b->cls < 0 || b->width < 1 || b->height < 1 || b->x < 0 ||
        b->y < 0 || b->x + b->width > size || b->y + b->height > size)
        return error_set(err, -EINVAL,
                         "invalid box cls %d at (%d, %d) size %d x %d in "
                         "%s: expected a class >= 0 and a box inside the "
                         "%d x %d image",
                         b->cls, b->x, b->y, b->width, b->height, name,
                         size, size);
    return 0;
}

static int write_label(const char *path, int size,
                       const struct detset_box *boxes, int n,
                       struct error *err)
{
    FILE *f = fopen(path, "w");

    if (f == NULL)
        return error_errno(err, errno, "failed to create %s", path);
    for (int i = 0; i < n; i++) {
        const struct detset_box *b = &boxes[i];
        double s = size;
        /* Nine digits print k / (2 * size) exactly when size is a power of
         * two, so a box on the image edge does not end past 1.0. */
        fprintf(f, "%d %.9g %.9g %.9g %.9g\n", b->cls,
                (b->x + b->width / 2.0) / s, (b->y + b->height / 2.0) / s,
                b->width / s, b->height / s);
    }
    if (fclose(f) != 0)
        return error_errno(err, errno, "failed to write %s", path);
    return 0;
}

int detset_write_image(const char *root, const char *split, const char *name,
                       int size, const struct detset_box *boxes, int n,
                       int write_label_file, struct error *err)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    unsigned char *px;
    int rc;

    if (size < 1 || n < 0 || (!write_label_file && n > 0))
        return error_set(err, -EINVAL,
                         "invalid image %s: size %d with %d boxes; a "
                         "background image has no boxes",
                         name, size, n);
    for (int i = 0; i < n; i++) {
        rc = check_box(&boxes[i], size, name, err);
        if (rc != 0)
            return rc;
    }

    snprintf(dir, sizeof(dir), "%s/images/%s", root, split);
    rc = fs_mkdir_p(dir, 0755, err);
    if (rc != 0)
        return rc;
    px = calloc((size_t)size * size, 3);
    if (px == NULL)
        return error_set(err, -ENOMEM, "out of memory for image %s", name);
    for (int i = 0; i < n; i++)
        fill_box(px, size, &boxes[i]);
    snprintf(path, sizeof(path), "%s/%s.png", dir, name);
    rc = image_write_png(path, px, size, size, 3, 8, err);
    free(px);
    if (rc != 0 || !write_label_file)
        return rc;

    snprintf(dir, sizeof(dir), "%s/labels/%s", root, split);
    rc = fs_mkdir_p(dir, 0755, err);
    if (rc != 0)
        return rc;
    snprintf(path, sizeof(path), "%s/%s.txt", dir, name);
    return write_label(path, size, boxes, n, err);
}
