/*
 * Tests of engine/det_augment: determinism of training samples, boxes
 * inside the image, the flip, mosaic content, letterboxing and its
 * inverse mapping, and the time per sample.
 *
 * The fixture is a data set of TRAIN_IMAGES 64x48 noise images. Image i
 * has one box of class i, and one 100x50 validation image has one box.
 */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/dataset_det.h"
#include "engine/det_augment.h"
#include "engine/image.h"

#define TRAIN_IMAGES 6
#define S 64

static char root[256];
static struct dataset_det *ds;

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static const char *path_in(const char *rel)
{
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];

    snprintf(path, 512, "%s/%s", root, rel);
    return path;
}

static void write_text(const char *rel, const char *text)
{
    FILE *f = fopen(path_in(rel), "wb");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void write_noise_png(const char *rel, int width, int height,
                            unsigned salt)
{
    size_t n = (size_t)width * (size_t)height * 3;
    uint8_t *pixels = malloc(n);
    struct error err = {0};

    assert_non_null(pixels);
    for (size_t i = 0; i < n; i++)
        pixels[i] = (uint8_t)((i + salt) * 2654435761u >> 13);
    assert_int_equal(image_write_png(path_in(rel), pixels, width, height, 3,
                                     8, &err), 0);
    free(pixels);
}

static int setup_data(void **state)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    struct dataset_det_options opt = {1 << 24, 1};
    struct error err = {0};
    char rel[64], text[64];

    (void)state;
    snprintf(root, sizeof(root), "%s/test_det_augment.XXXXXX", base);
    if (mkdtemp(root) == NULL)
        return -1;
    write_text("data.yaml", "train: images/train\nval: images/val\n"
                            "names: [c0, c1, c2, c3, c4, c5]\n");
    mkdir(path_in("images"), 0755);
    mkdir(path_in("images/train"), 0755);
    mkdir(path_in("images/val"), 0755);
    mkdir(path_in("labels"), 0755);
    mkdir(path_in("labels/train"), 0755);
    mkdir(path_in("labels/val"), 0755);
    for (int i = 0; i < TRAIN_IMAGES; i++) {
        snprintf(rel, sizeof(rel), "images/train/%d.png", i);
        write_noise_png(rel, 64, 48, (unsigned)i * 977u);
        snprintf(rel, sizeof(rel), "labels/train/%d.txt", i);
        snprintf(text, sizeof(text), "%d 0.5 0.5 0.5 0.5\n", i);
        write_text(rel, text);
    }
    write_noise_png("images/val/v.png", 100, 50, 5);
    write_text("labels/val/v.txt", "0 0.25 0.5 0.2 0.4\n");
    if (dataset_det_scan(root, &opt, &ds, &err) != 0) {
        print_error("scan failed: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown_data(void **state)
{
    (void)state;
    dataset_det_free(ds);
    return nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Augmentation off: every step has gain or probability 0. */
static struct det_aug_params params_off(void)
{
    struct det_aug_params p = {0, 0, 0, 0, 0, 0, 0};

    return p;
}

struct sample {
    float chw[3 * S * S];
    struct det_gt gt[64];
    int n;
};

static void load_train(const struct det_aug_params *p, uint64_t seed,
                       int epoch, size_t position, size_t index,
                       struct sample *out)
{
    struct error err = {0};
    int rc = det_load_train(ds, p, seed, epoch, position, index, S, out->chw,
                            out->gt, 64, &out->n, &err);

    if (rc != 0)
        fail_msg("det_load_train failed: %d %s", rc, err.msg);
}

static void train_deterministic(void **state)
{
    struct det_aug_params p = det_aug_defaults();
    struct sample *a = calloc(3, sizeof(*a));
    struct sample *b = a + 1, *c = a + 2;

    (void)state;
    assert_non_null(a);
    load_train(&p, 42, 3, 7, 1, a);
    load_train(&p, 42, 3, 7, 1, b);
    load_train(&p, 42, 3, 8, 1, c);
    assert_memory_equal(a->chw, b->chw, sizeof(a->chw));
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->gt, b->gt, sizeof(a->gt[0]) * (size_t)a->n);
    assert_true(memcmp(a->chw, c->chw, sizeof(a->chw)) != 0);
    load_train(&p, 43, 3, 7, 1, c);
    assert_true(memcmp(a->chw, c->chw, sizeof(a->chw)) != 0);
    free(a);
}

static void train_boxes_inside(void **state)
{
    struct det_aug_params p = det_aug_defaults();
    struct sample *s = malloc(sizeof(*s));
    int total = 0;

    (void)state;
    assert_non_null(s);
    for (size_t pos = 0; pos < 200; pos++) {
        load_train(&p, 1, 0, pos, pos % TRAIN_IMAGES, s);
        for (int i = 0; i < s->n; i++) {
            const struct det_gt *g = &s->gt[i];

            assert_true(g->x1 >= 0.0f);
            assert_true(g->y1 >= 0.0f);
            assert_true(g->x2 <= (float)S);
            assert_true(g->y2 <= (float)S);
            assert_true(g->x2 - g->x1 > 2.0f);
            assert_true(g->y2 - g->y1 > 2.0f);
            assert_int_equal(g->image, 0);
            assert_in_range(g->cls, 0, TRAIN_IMAGES - 1);
        }
        for (size_t k = 0; k < 3 * S * S; k++)
            if (s->chw[k] < 0.0f || s->chw[k] > 1.0f)
                fail_msg("pixel value %g outside 0..1", s->chw[k]);
        total += s->n;
    }
    assert_true(total > 200);
    free(s);
}

/* Without augmentation a 64x48 image is letterboxed into 64x64 exactly:
 * pixels copied, 8 rows of gray above and below. */
static void train_plain_letterbox(void **state)
{
    struct det_aug_params p = params_off();
    struct sample *s = malloc(sizeof(*s));
    struct error err = {0};
    struct image img;
    int owned;

    (void)state;
    assert_non_null(s);
    load_train(&p, 1, 0, 0, 2, s);
    assert_int_equal(dataset_det_image(ds, DATASET_DET_TRAIN, 2, &img,
                                       &owned, &err), 0);
    assert_int_equal(img.channels, 3);
    for (int y = 0; y < 48; y++)
        for (int x = 0; x < 64; x++)
            for (int c = 0; c < 3; c++) {
                int want = img.pixels[(y * 64 + x) * 3 + c];
                float got = s->chw[c * S * S + (y + 8) * S + x];

                if (lroundf(got * 255.0f) != want)
                    fail_msg("pixel (%d,%d,%d) is %g, expected %d / 255", x,
                             y, c, got, want);
            }
    assert_float_equal(s->chw[0], 114.0f / 255.0f, 1e-7);
    assert_int_equal(s->n, 1);
    assert_int_equal(s->gt[0].cls, 2);
    assert_float_equal(s->gt[0].x1, 16.0f, 1e-4);
    assert_float_equal(s->gt[0].y1, 8.0f + 12.0f, 1e-4);
    assert_float_equal(s->gt[0].x2, 48.0f, 1e-4);
    assert_float_equal(s->gt[0].y2, 8.0f + 36.0f, 1e-4);
    if (owned)
        image_free(&img);
    free(s);
}

static void train_flip_mirrors(void **state)
{
    struct det_aug_params p = params_off();
    struct sample *a = calloc(2, sizeof(*a));
    struct sample *b = a + 1;

    (void)state;
    assert_non_null(a);
    load_train(&p, 5, 0, 0, 3, a);
    p.fliplr = 1.0;
    load_train(&p, 5, 0, 0, 3, b);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                assert_true(a->chw[(c * S + y) * S + x] ==
                            b->chw[(c * S + y) * S + (S - 1 - x)]);
    assert_int_equal(a->n, 1);
    assert_int_equal(b->n, 1);
    assert_float_equal(b->gt[0].x1, (float)S - a->gt[0].x2, 1e-5);
    assert_float_equal(b->gt[0].x2, (float)S - a->gt[0].x1, 1e-5);
    assert_float_equal(b->gt[0].y1, a->gt[0].y1, 1e-5);
    assert_float_equal(b->gt[0].y2, a->gt[0].y2, 1e-5);
    free(a);
}

/* A value gain of 1e-9 runs the HSV step with tables that change V by
 * at most 1, so only the RGB -> HSV -> RGB round trip error shows. */
static void train_hsv_round_trip(void **state)
{
    struct det_aug_params p = params_off();
    struct sample *a = calloc(2, sizeof(*a));
    struct sample *b = a + 1;
    float worst = 0.0f;

    (void)state;
    assert_non_null(a);
    load_train(&p, 5, 0, 0, 4, a);
    p.hsv_v = 1e-9;
    load_train(&p, 5, 0, 0, 4, b);
    for (size_t k = 0; k < 3 * S * S; k++) {
        float d = fabsf(a->chw[k] - b->chw[k]) * 255.0f;

        if (d > worst)
            worst = d;
    }
    print_message("HSV round trip: max error %.2f / 255\n", worst);
    assert_true(worst <= 1.5f);
    assert_true(memcmp(a->chw, b->chw, sizeof(a->chw)) != 0);
    free(a);
}

/* Image i carries class i, so the classes in a mosaic identify the
 * images it shows. There are never more than 4, and more than 1 in some
 * samples. */
static void mosaic_boxes_from_four(void **state)
{
    struct det_aug_params p = params_off();
    struct sample *s = malloc(sizeof(*s));
    int most = 0;

    (void)state;
    assert_non_null(s);
    p.mosaic = 1.0;
    for (size_t pos = 0; pos < 100; pos++) {
        int seen[TRAIN_IMAGES] = {0}, distinct = 0;

        load_train(&p, 9, 1, pos, 0, s);
        assert_true(s->n <= 4);
        for (int i = 0; i < s->n; i++)
            if (!seen[s->gt[i].cls]++)
                distinct++;
        if (distinct > most)
            most = distinct;
    }
    assert_true(most >= 3);
    assert_true(most <= 4);
    free(s);
}

static void letterbox_round_trip(void **state)
{
    float *chw = malloc(sizeof(float) * 3 * S * S);
    struct letterbox lb;
    struct error err = {0};
    struct det_gt gt[4];
    int n;
    float x1, y1, x2, y2;

    (void)state;
    assert_non_null(chw);
    assert_int_equal(det_load_val(ds, DATASET_DET_VAL, 0, S, chw, gt, 4, &n,
                                  &lb, &err), 0);
    assert_int_equal(n, 1);
    assert_float_equal(lb.scale, 0.64f, 1e-6);
    assert_float_equal(lb.pad_x, 0.0f, 0.0);
    assert_float_equal(lb.pad_y, 16.0f, 0.0);
    assert_int_equal(lb.src_w, 100);
    assert_int_equal(lb.src_h, 50);
    /* box 0.15..0.35 x 0.3..0.7 of 100x50 */
    x1 = gt[0].x1;
    y1 = gt[0].y1;
    x2 = gt[0].x2;
    y2 = gt[0].y2;
    assert_float_equal(y1, 16.0f + 0.3f * 32.0f, 1e-4);
    det_letterbox_unmap(&lb, &x1, &y1, &x2, &y2);
    assert_float_equal(x1, 15.0f, 0.5);
    assert_float_equal(y1, 15.0f, 0.5);
    assert_float_equal(x2, 35.0f, 0.5);
    assert_float_equal(y2, 35.0f, 0.5);
    assert_float_equal(chw[0], 114.0f / 255.0f, 1e-7);
    assert_float_equal(chw[S * S - 1], 114.0f / 255.0f, 1e-7);
    free(chw);
}

static void letterbox_invalid_size(void **state)
{
    struct error err = {0};
    struct det_gt gt[1];
    float chw[3];
    int n;

    (void)state;
    assert_int_equal(det_load_val(ds, DATASET_DET_VAL, 0, 1, chw, gt, 1, &n,
                                  NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "invalid image size 1"));
    assert_int_equal(det_load_val(ds, DATASET_DET_VAL, 5, S, chw, gt, 1, &n,
                                  NULL, &err), -EINVAL);
}

/* A mosaic may bring up to 4 boxes; with room for 1 only the first is
 * written. */
static void train_gt_cap_respected(void **state)
{
    struct det_aug_params p = params_off();
    struct sample *s = malloc(sizeof(*s));
    struct error err = {0};
    int n, most = 0;

    (void)state;
    assert_non_null(s);
    p.mosaic = 1.0;
    for (size_t pos = 0; pos < 20; pos++) {
        s->gt[1].cls = -7;
        assert_int_equal(det_load_train(ds, &p, 9, 1, pos, 0, S, s->chw,
                                        s->gt, 1, &n, &err), 0);
        assert_in_range(n, 0, 1);
        assert_int_equal(s->gt[1].cls, -7);
        if (n > most)
            most = n;
    }
    assert_int_equal(most, 1);
    free(s);
}

/* A 1-channel image is letterboxed into 3 equal channels. */
static void letterbox_gray_image(void **state)
{
    uint8_t pixels[16 * 8];
    struct image img = {16, 8, 1, pixels};
    struct letterbox lb;
    struct error err = {0};
    float *chw = malloc(sizeof(float) * 3 * 16 * 16);

    (void)state;
    assert_non_null(chw);
    for (int i = 0; i < 16 * 8; i++)
        pixels[i] = (uint8_t)(i * 2);
    assert_int_equal(det_letterbox_image(&img, 16, chw, &lb, &err), 0);
    assert_float_equal(lb.scale, 1.0f, 0.0);
    assert_float_equal(lb.pad_y, 4.0f, 0.0);
    for (int i = 0; i < 16 * 16; i++) {
        assert_true(chw[i] == chw[256 + i]);
        assert_true(chw[i] == chw[512 + i]);
    }
    assert_float_equal(chw[4 * 16 + 3], 6.0f / 255.0f, 1e-6);
    free(chw);
}

static void train_time_per_sample(void **state)
{
    struct det_aug_params p = det_aug_defaults();
    struct sample *s = malloc(sizeof(*s));
    struct timespec t0, t1;
    double ms;
    const int count = 300;

    (void)state;
    assert_non_null(s);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < count; i++)
        load_train(&p, 3, 0, (size_t)i, (size_t)i % TRAIN_IMAGES, s);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = ((double)(t1.tv_sec - t0.tv_sec) * 1e3 +
          (double)(t1.tv_nsec - t0.tv_nsec) / 1e6) / count;
    print_message("det_load_train %dx%d: %.3f ms per sample\n", S, S, ms);
    /* A loose bound: this build runs under AddressSanitizer. */
    assert_true(ms < 20.0);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(train_deterministic),
        cmocka_unit_test(train_boxes_inside),
        cmocka_unit_test(train_plain_letterbox),
        cmocka_unit_test(train_flip_mirrors),
        cmocka_unit_test(train_hsv_round_trip),
        cmocka_unit_test(mosaic_boxes_from_four),
        cmocka_unit_test(letterbox_round_trip),
        cmocka_unit_test(letterbox_invalid_size),
        cmocka_unit_test(train_gt_cap_respected),
        cmocka_unit_test(letterbox_gray_image),
        cmocka_unit_test(train_time_per_sample),
    };

    return cmocka_run_group_tests(tests, setup_data, teardown_data);
}
