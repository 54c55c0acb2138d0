/*
 * Tests of engine/fmnist_det: scenes are deterministic, boxes are exact
 * and overlap little, and the written data set is byte-identical for a
 * seed and scans as a detection data set with no report entry.
 *
 * The generator tests read Debian's Fashion-MNIST and fail, saying to
 * run `make deps`, when the package is not installed.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "engine/dataset_det.h"
#include "engine/fmnist_det.h"

#define SIDE FMNIST_DET_SIDE

static char tmp_dir[256];

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup_dir(void **state)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    (void)state;
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/test_fmnist_det.XXXXXX", base);
    return mkdtemp(tmp_dir) == NULL ? -1 : 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    return nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *tmp_path(const char *rel)
{
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];

    snprintf(path, 512, "%s/%s", tmp_dir, rel);
    return path;
}

/* A set of one 28x28 item of class 3 whose pixels are all 255, so a
 * placed item is a solid square of its colour and its box is the whole
 * square. */
static uint8_t rect_pixels[FMNIST_PIXELS];
static uint8_t rect_label = 3;

static struct fmnist_set rect_set(void)
{
    struct fmnist_set set = {1, 1, rect_pixels, &rect_label};

    memset(rect_pixels, 255, sizeof(rect_pixels));
    return set;
}

static double iou(const struct fmnist_det_box *a,
                  const struct fmnist_det_box *b)
{
    int w = (a->x2 < b->x2 ? a->x2 : b->x2) - (a->x1 > b->x1 ? a->x1 : b->x1);
    int h = (a->y2 < b->y2 ? a->y2 : b->y2) - (a->y1 > b->y1 ? a->y1 : b->y1);
    double inter = w > 0 && h > 0 ? (double)w * h : 0.0;
    double area_a = (double)(a->x2 - a->x1) * (a->y2 - a->y1);
    double area_b = (double)(b->x2 - b->x1) * (b->y2 - b->y1);

    return inter / (area_a + area_b - inter);
}

static bool inside(const struct fmnist_det_box *b, int x, int y)
{
    return x >= b->x1 && x < b->x2 && y >= b->y1 && y < b->y2;
}

static void render_deterministic(void **state)
{
    struct fmnist_set set = rect_set();
    static uint8_t a[SIDE * SIDE * 3], b[SIDE * SIDE * 3];
    struct fmnist_det_box boxes_a[FMNIST_DET_MAX_ITEMS];
    struct fmnist_det_box boxes_b[FMNIST_DET_MAX_ITEMS];
    struct error err = {0};
    int na, nb;

    (void)state;
    assert_int_equal(fmnist_det_render(&set, 7, FMNIST_TRAIN, 11, a, boxes_a,
                                       &na, &err), 0);
    assert_int_equal(fmnist_det_render(&set, 7, FMNIST_TRAIN, 11, b, boxes_b,
                                       &nb, &err), 0);
    assert_memory_equal(a, b, sizeof(a));
    assert_int_equal(na, nb);
    assert_memory_equal(boxes_a, boxes_b, sizeof(boxes_a[0]) * (size_t)na);
    assert_int_equal(fmnist_det_render(&set, 7, FMNIST_TRAIN, 12, b, boxes_b,
                                       &nb, &err), 0);
    assert_true(memcmp(a, b, sizeof(a)) != 0);
}

static int pixel_sum(const uint8_t *rgb, int x, int y)
{
    const uint8_t *p = rgb + ((size_t)y * SIDE + (size_t)x) * 3;

    return p[0] + p[1] + p[2];
}

/* Item colours have channels of 100 or more and backgrounds of 79 or
 * less. So with solid items, a pixel on a box's inner border sums to 300
 * or more, and one just outside the box (where no other box lies) sums
 * to 237 or less. */
static void render_boxes_exact(void **state)
{
    struct fmnist_set set = rect_set();
    static uint8_t rgb[SIDE * SIDE * 3];
    struct fmnist_det_box boxes[FMNIST_DET_MAX_ITEMS];
    struct error err = {0};
    int n, total = 0;

    (void)state;
    for (size_t scene = 0; scene < 50; scene++) {
        assert_int_equal(fmnist_det_render(&set, 1, FMNIST_TEST, scene, rgb,
                                           boxes, &n, &err), 0);
        assert_in_range(n, 1, FMNIST_DET_MAX_ITEMS);
        total += n;
        for (int k = 0; k < n; k++) {
            const struct fmnist_det_box *b = &boxes[k];

            assert_int_equal(b->cls, 3);
            assert_true(b->x1 >= 0);
            assert_true(b->y1 >= 0);
            assert_true(b->x2 <= SIDE);
            assert_true(b->y2 <= SIDE);
            assert_in_range(b->x2 - b->x1, FMNIST_DET_MIN_ITEM,
                            FMNIST_DET_MAX_ITEM);
            for (int j = 0; j < n; j++)
                if (j != k)
                    assert_true(iou(b, &boxes[j]) <= 0.2);
            for (int x = b->x1 - 1; x <= b->x2; x++)
                for (int y = b->y1 - 1; y <= b->y2; y++) {
                    bool outer = x == b->x1 - 1 || x == b->x2 ||
                                 y == b->y1 - 1 || y == b->y2;
                    bool inner = !outer && (x == b->x1 || x == b->x2 - 1 ||
                                            y == b->y1 || y == b->y2 - 1);
                    bool covered = false;

                    if (x < 0 || y < 0 || x >= SIDE || y >= SIDE ||
                        (!outer && !inner))
                        continue;
                    for (int j = 0; j < n; j++)
                        covered = covered ||
                                  (j != k && inside(&boxes[j], x, y));
                    if (covered)
                        continue;
                    if (inner && pixel_sum(rgb, x, y) < 300)
                        fail_msg("scene %zu box %d: border pixel (%d,%d) "
                                 "sums to %d", scene, k, x, y,
                                 pixel_sum(rgb, x, y));
                    if (outer && pixel_sum(rgb, x, y) > 237)
                        fail_msg("scene %zu box %d: outside pixel (%d,%d) "
                                 "sums to %d", scene, k, x, y,
                                 pixel_sum(rgb, x, y));
                }
        }
    }
    assert_true(total > 50);
}

static bool scene_is_gray(const uint8_t *rgb)
{
    for (size_t i = 0; i < (size_t)SIDE * SIDE; i++) {
        const uint8_t *p = rgb + i * 3;

        if (p[0] != p[1] || p[0] != p[2])
            return false;
    }
    return true;
}

/* Training scene 1530 of seed 0 drew equal channel offsets for its
 * background and gray items, so it came out entirely gray. Its background
 * does not depend on the item images, so solid squares reproduce it. */
static void render_scene_1530_not_gray(void **state)
{
    struct fmnist_set set = rect_set();
    static uint8_t rgb[SIDE * SIDE * 3];
    struct fmnist_det_box boxes[FMNIST_DET_MAX_ITEMS];
    struct error err = {0};
    int n;

    (void)state;
    assert_int_equal(fmnist_det_render(&set, 0, FMNIST_TRAIN, 1530, rgb,
                                       boxes, &n, &err), 0);
    assert_false(scene_is_gray(rgb));
}

static void render_scenes_not_gray(void **state)
{
    struct fmnist_set set = rect_set();
    static uint8_t rgb[SIDE * SIDE * 3];
    struct fmnist_det_box boxes[FMNIST_DET_MAX_ITEMS];
    struct error err = {0};
    int n;

    (void)state;
    for (size_t scene = 0; scene < 3000; scene++) {
        assert_int_equal(fmnist_det_render(&set, 0, FMNIST_TRAIN, scene, rgb,
                                           boxes, &n, &err), 0);
        if (scene_is_gray(rgb))
            fail_msg("training scene %zu of seed 0 is gray", scene);
    }
}

static void render_empty_set(void **state)
{
    static uint8_t rgb[SIDE * SIDE * 3];
    struct fmnist_det_box boxes[FMNIST_DET_MAX_ITEMS];
    struct fmnist_set set = {0};
    struct error err = {0};
    int n;

    (void)state;
    assert_int_equal(fmnist_det_render(&set, 1, FMNIST_TRAIN, 0, rgb, boxes,
                                       &n, &err), -EINVAL);
}

/* CRC-32 of the names and bytes of every file below path, in sorted
 * order. */
static uLong tree_crc(const char *path, uLong crc)
{
    struct dirent **entries;
    int n = scandir(path, &entries, NULL, alphasort);

    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        char full[1024];
        struct stat st;

        if (entries[i]->d_name[0] == '.') {
            free(entries[i]);
            continue;
        }
        snprintf(full, sizeof(full), "%s/%s", path, entries[i]->d_name);
        crc = crc32(crc, (const Bytef *)entries[i]->d_name,
                    (uInt)strlen(entries[i]->d_name));
        assert_int_equal(stat(full, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            crc = tree_crc(full, crc);
        } else {
            FILE *f = fopen(full, "rb");
            unsigned char buf[4096];
            size_t got;

            assert_non_null(f);
            while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
                crc = crc32(crc, buf, (uInt)got);
            fclose(f);
        }
        free(entries[i]);
    }
    free(entries);
    return crc;
}

static void generate(const char *rel, uint64_t seed)
{
    struct fmnist_det_options opt = {NULL, 6, 3, seed};
    struct error err = {0};
    int rc = fmnist_det_generate(tmp_path(rel), &opt, &err);

    if (rc != 0)
        fail_msg("fmnist_det_generate failed: %s (run `make deps` if the "
                 "Fashion-MNIST package is missing)", err.msg);
}

static void generate_same_seed_identical(void **state)
{
    (void)state;
    generate("a", 5);
    generate("b", 5);
    generate("c", 6);
    assert_int_equal(tree_crc(tmp_path("a"), 0), tree_crc(tmp_path("b"), 0));
    assert_true(tree_crc(tmp_path("a"), 0) != tree_crc(tmp_path("c"), 0));
}

static void generate_scans_clean(void **state)
{
    struct dataset_det_options opt = {1 << 20, 1};
    struct dataset_det *ds = NULL;
    struct error err = {0};

    (void)state;
    generate("set", 1);
    assert_int_equal(dataset_det_scan(tmp_path("set"), &opt, &ds, &err), 0);
    assert_int_equal(ds->class_count, 10);
    assert_string_equal(ds->class_names[9], "ankle-boot");
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].count, 6);
    assert_int_equal(ds->splits[DATASET_DET_VAL].count, 3);
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].background, 0);
    for (size_t i = 0; i < ds->problem_count; i++)
        print_message("report entry: %s:%d %s\n", ds->problems[i].file,
                      ds->problems[i].line, ds->problems[i].message);
    assert_int_equal(ds->problem_count, 0);
    for (size_t i = 0; i < ds->splits[DATASET_DET_TRAIN].count; i++) {
        const struct dataset_det_image *img =
            &ds->splits[DATASET_DET_TRAIN].images[i];

        assert_int_equal(img->width, SIDE);
        assert_int_equal(img->height, SIDE);
        assert_in_range(img->count, 1, FMNIST_DET_MAX_ITEMS);
    }
    dataset_det_free(ds);
}

static void write_be32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};

    assert_int_equal(fwrite(b, 1, 4, f), 4);
}

/* Write split prefix (train or t10k) of one all-255 image of class 3 to
 * the source folder src, as uncompressed IDX files. */
static void write_solid_split(const char *src, const char *prefix)
{
    char path[600];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s-images-idx3-ubyte", src, prefix);
    f = fopen(path, "wb");
    assert_non_null(f);
    write_be32(f, 0x803);
    write_be32(f, 1);
    write_be32(f, 28);
    write_be32(f, 28);
    for (int i = 0; i < FMNIST_PIXELS; i++)
        assert_int_equal(fputc(255, f), 255);
    assert_int_equal(fclose(f), 0);

    snprintf(path, sizeof(path), "%s/%s-labels-idx1-ubyte", src, prefix);
    f = fopen(path, "wb");
    assert_non_null(f);
    write_be32(f, 0x801);
    write_be32(f, 1);
    assert_int_equal(fputc(3, f), 3);
    assert_int_equal(fclose(f), 0);
}

/* Number of label rows under root/labels/split with an edge cx -/+ w/2 or
 * cy -/+ h/2 on the image border. */
static int count_border_rows(const char *root, const char *split)
{
    struct dirent **entries;
    char folder[600];
    int n, rows = 0;

    snprintf(folder, sizeof(folder), "%s/labels/%s", root, split);
    n = scandir(folder, &entries, NULL, alphasort);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        char path[1200];
        double cx, cy, w, h;
        FILE *f;
        int cls;

        snprintf(path, sizeof(path), "%s/%s", folder, entries[i]->d_name);
        free(entries[i]);
        f = fopen(path, "r");
        if (f == NULL || strstr(path, ".txt") == NULL) {
            if (f != NULL)
                fclose(f);
            continue;
        }
        while (fscanf(f, "%d %lf %lf %lf %lf", &cls, &cx, &cy, &w, &h) == 5)
            if (cx - w / 2 < 1e-9 || cx + w / 2 > 1 - 1e-9 ||
                cy - h / 2 < 1e-9 || cy + h / 2 > 1 - 1e-9)
                rows++;
        fclose(f);
    }
    free(entries);
    return rows;
}

/* Solid squares fill their item, so some land on the image border; those
 * boxes must scan as exactly inside the image, with no report entry. */
static void generate_border_boxes_clean(void **state)
{
    struct fmnist_det_options opt = {NULL, 200, 50, 3};
    struct dataset_det_options scan_opt = {0, 1};
    struct dataset_det *ds = NULL;
    struct error err = {0};

    (void)state;
    assert_int_equal(mkdir(tmp_path("src"), 0755), 0);
    write_solid_split(tmp_path("src"), "train");
    write_solid_split(tmp_path("src"), "t10k");
    opt.source_dir = tmp_path("src");
    assert_int_equal(fmnist_det_generate(tmp_path("set"), &opt, &err), 0);
    assert_true(count_border_rows(tmp_path("set"), "train") +
                    count_border_rows(tmp_path("set"), "val") >
                0);

    assert_int_equal(dataset_det_scan(tmp_path("set"), &scan_opt, &ds, &err),
                     0);
    for (size_t i = 0; i < ds->problem_count; i++)
        print_message("report entry: %s:%d %s\n", ds->problems[i].file,
                      ds->problems[i].line, ds->problems[i].message);
    assert_int_equal(ds->problem_count, 0);
    assert_int_equal(ds->rows_clipped, 0);
    assert_int_equal(ds->rows_rejected, 0);
    dataset_det_free(ds);
}

static void generate_existing_rejected(void **state)
{
    struct error err = {0};

    (void)state;
    assert_int_equal(mkdir(tmp_path("exists"), 0755), 0);
    assert_int_equal(fmnist_det_generate(tmp_path("exists"), NULL, &err),
                     -EEXIST);
    assert_non_null(strstr(err.msg, "already exists"));
}

static void generate_missing_source(void **state)
{
    struct fmnist_det_options opt = {NULL, 2, 2, 0};
    struct error err = {0};
    struct stat st;

    (void)state;
    opt.source_dir = tmp_path("no-such-source");
    assert_int_equal(fmnist_det_generate(tmp_path("out"), &opt, &err),
                     -ENOENT);
    assert_non_null(strstr(err.msg, "make deps"));
    assert_int_not_equal(stat(tmp_path("out"), &st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(render_deterministic),
        cmocka_unit_test(render_boxes_exact),
        cmocka_unit_test(render_scene_1530_not_gray),
        cmocka_unit_test(render_scenes_not_gray),
        cmocka_unit_test(render_empty_set),
        cmocka_unit_test_setup_teardown(generate_same_seed_identical,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(generate_scans_clean, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(generate_border_boxes_clean,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(generate_existing_rejected,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(generate_missing_source, setup_dir,
                                        teardown_dir),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
