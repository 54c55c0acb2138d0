/*
 * Tests of the prediction output files: write them for a synthetic image
 * and boxes into a temporary folder, read them back (text, JSON through
 * cJSON, PNG through the image decoder) and check the values and the
 * drawn pixels. Also the letterbox mapping and the class colors.
 *
 * The image is 64 x 48, gray 100. Box 0 is class 0 ("cat", conf 0.9) at
 * (10, 20, 40, 40): it covers pixels x 10 .. 39, y 20 .. 39, so its 2 px
 * outline is x 10, 11, 38, 39 and y 20, 21, 38, 39. Its label "cat 0.90"
 * is 8 glyphs of 3 + 1 px, 31 px of text and a 33 x 7 px bar above the
 * box: x 10 .. 42, y 13 .. 19, with text from (11, 14). Box 1 is class 1
 * ("dog", conf 0.6) at (45, 5, 60, 30).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/det_output.h"
#include "fsutil.h"

#define WIDTH 64
#define HEIGHT 48
#define GRAY 100

static const char *const names[] = {"cat", "dog"};

struct fixture {
    char dir[64];
    struct image img;
    struct det_box boxes[2];
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_det_output.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->img.width = WIDTH;
    f->img.height = HEIGHT;
    f->img.channels = 3;
    f->img.pixels = malloc(WIDTH * HEIGHT * 3);
    assert_non_null(f->img.pixels);
    memset(f->img.pixels, GRAY, WIDTH * HEIGHT * 3);
    f->boxes[0] = (struct det_box){10, 20, 40, 40, 0.9f, 0};
    f->boxes[1] = (struct det_box){45, 5, 60, 30, 0.6f, 1};
    *state = f;
    return 0;
}

/* Remove the files that the tests write, and the folders. */
static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    static const char *const files[] = {"labels/bus.txt", "bus.json",
                                        "bus.png", "labels/empty.txt",
                                        "empty.json", "empty.png"};
    char path[128];

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/labels", f->dir);
    rmdir(path);
    rmdir(f->dir);
    free(f->img.pixels);
    free(f);
    return 0;
}

static char *read_text(const char *dir, const char *name)
{
    char path[128], *data = NULL;
    size_t len = 0;
    struct error err = {0};

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (fs_read_file(path, 1 << 20, &data, &len, &err) != 0)
        fail_msg("read %s: %s", path, err.msg);
    return data;
}

static void save_or_fail(struct fixture *f, const char *image_path, int n)
{
    struct error err = {0};

    if (det_output_save(f->dir, image_path, &f->img, f->boxes, n, names, 2,
                        &err) != 0)
        fail_msg("det_output_save: %s", err.msg);
}

/* ---- Text and JSON ------------------------------------------------------- */

static void txt_ultralytics_format(void **state)
{
    struct fixture *f = *state;

    save_or_fail(f, "/data/images/bus.jpg", 2);
    char *text = read_text(f->dir, "labels/bus.txt");

    /* Box 0: centre (25, 30), size 30 x 20 over 64 x 48: 0.390625 0.625
     * 0.46875 0.416667. Box 1: centre (52.5, 17.5), size 15 x 25:
     * 0.820312 (0.8203125 to six digits) 0.364583 0.234375 0.520833. */
    assert_string_equal(text, "0 0.390625 0.625 0.46875 0.416667 0.9\n"
                              "1 0.820312 0.364583 0.234375 0.520833 0.6\n");
    free(text);
}

static void json_fields(void **state)
{
    struct fixture *f = *state;

    save_or_fail(f, "bus.jpg", 2);
    char *text = read_text(f->dir, "bus.json");
    cJSON *root = cJSON_Parse(text);

    assert_non_null(root);
    assert_true(cJSON_IsArray(root));
    assert_int_equal(cJSON_GetArraySize(root), 2);
    cJSON *first = cJSON_GetArrayItem(root, 0);
    assert_int_equal(cJSON_GetObjectItem(first, "class")->valueint, 0);
    assert_string_equal(cJSON_GetObjectItem(first, "name")->valuestring,
                        "cat");
    /* 0.9f is 0.89999998; rounded to 5 decimals it is 0.9. */
    assert_float_equal(cJSON_GetObjectItem(first, "confidence")->valuedouble,
                       0.9, 0.0);
    assert_non_null(strstr(text, "0.9,"));
    cJSON *box = cJSON_GetObjectItem(first, "box");
    assert_float_equal(cJSON_GetObjectItem(box, "x1")->valuedouble, 10, 0);
    assert_float_equal(cJSON_GetObjectItem(box, "y1")->valuedouble, 20, 0);
    assert_float_equal(cJSON_GetObjectItem(box, "x2")->valuedouble, 40, 0);
    assert_float_equal(cJSON_GetObjectItem(box, "y2")->valuedouble, 40, 0);
    cJSON *second = cJSON_GetArrayItem(root, 1);
    assert_string_equal(cJSON_GetObjectItem(second, "name")->valuestring,
                        "dog");
    cJSON_Delete(root);
    free(text);
}

static void empty_detections(void **state)
{
    struct fixture *f = *state;

    save_or_fail(f, "empty.png", 0);
    char *text = read_text(f->dir, "labels/empty.txt");
    assert_string_equal(text, "");
    free(text);
    text = read_text(f->dir, "empty.json");
    assert_string_equal(text, "[]\n");
    free(text);

    struct image out = {0};
    struct error err = {0};
    char path[128];
    snprintf(path, sizeof(path), "%s/empty.png", f->dir);
    assert_int_equal(image_decode_file(path, &out, &err), 0);
    assert_memory_equal(out.pixels, f->img.pixels, WIDTH * HEIGHT * 3);
    image_free(&out);
}

/* ---- Drawn image --------------------------------------------------------- */

static const uint8_t *pixel(const struct image *img, int x, int y)
{
    return img->pixels + ((size_t)y * img->width + x) * 3;
}

static void check_color(const struct image *img, int x, int y,
                        const uint8_t rgb[3])
{
    const uint8_t *p = pixel(img, x, y);

    if (memcmp(p, rgb, 3) != 0)
        fail_msg("pixel (%d, %d) is (%d, %d, %d), expected (%d, %d, %d)", x,
                 y, p[0], p[1], p[2], rgb[0], rgb[1], rgb[2]);
}

static void png_edges_have_class_color(void **state)
{
    struct fixture *f = *state;
    static const uint8_t gray[3] = {GRAY, GRAY, GRAY};
    uint8_t cat[3], dog[3];
    struct image out = {0};
    struct error err = {0};
    char path[128];

    save_or_fail(f, "bus.jpg", 2);
    snprintf(path, sizeof(path), "%s/bus.png", f->dir);
    assert_int_equal(image_decode_file(path, &out, &err), 0);
    assert_int_equal(out.width, WIDTH);
    assert_int_equal(out.height, HEIGHT);
    det_class_color(0, cat);
    det_class_color(1, dog);

    /* Box 0's outline, 2 px on each side, and the inside untouched. */
    check_color(&out, 10, 30, cat);
    check_color(&out, 11, 30, cat);
    check_color(&out, 12, 30, gray);
    check_color(&out, 39, 30, cat);
    check_color(&out, 38, 30, cat);
    check_color(&out, 37, 30, gray);
    check_color(&out, 25, 39, cat);
    check_color(&out, 25, 38, cat);
    check_color(&out, 25, 37, gray);
    check_color(&out, 30, 20, cat);
    check_color(&out, 30, 21, cat);
    check_color(&out, 30, 22, gray);
    /* Just outside the box: below and to the right. */
    check_color(&out, 25, 40, gray);
    check_color(&out, 40, 30, gray);

    /* The label bar above box 0: its bottom margin row at y 19 has the
     * bar color; the 'C' of "cat" (".##" in its first row) puts ink at
     * (12, 14) and leaves (11, 14) in the bar color. */
    check_color(&out, 12, 19, cat);
    check_color(&out, 11, 14, cat);
    assert_memory_not_equal(pixel(&out, 12, 14), cat, 3);
    check_color(&out, 43, 16, gray);

    /* Box 1 (pixels x 45 .. 59, y 5 .. 29): no room above, so its label
     * sits inside the top; its bottom and right edges are clear. */
    check_color(&out, 52, 29, dog);
    check_color(&out, 59, 20, dog);
    check_color(&out, 45, 20, dog);
    check_color(&out, 2, 45, gray);
    image_free(&out);
}

static void png_from_gray_image(void **state)
{
    struct fixture *f = *state;
    uint8_t *gray = malloc(WIDTH * HEIGHT);
    struct image img = {WIDTH, HEIGHT, 1, gray};
    struct image out = {0};
    struct error err = {0};
    uint8_t cat[3];
    char path[128];

    assert_non_null(gray);
    memset(gray, 7, WIDTH * HEIGHT);
    snprintf(path, sizeof(path), "%s/bus.png", f->dir);
    assert_int_equal(det_output_write_image(path, &img, f->boxes, 1, names,
                                            2, &err),
                     0);
    assert_int_equal(image_decode_file(path, &out, &err), 0);
    det_class_color(0, cat);
    check_color(&out, 10, 30, cat);
    check_color(&out, 0, 0, (const uint8_t[3]){7, 7, 7});
    image_free(&out);
    free(gray);
}

static void png_box_outside_image(void **state)
{
    struct fixture *f = *state;
    struct det_box far[] = {{-1e9f, -1e9f, 1e9f, 1e9f, 0.5f, 0},
                            {100, 100, 200, 200, 0.5f, 1},
                            {NAN, 0, 10, 10, 0.5f, 0}};
    struct error err = {0};
    char path[128];

    /* A box around the whole image has its outline outside, one beyond
     * the image draws nothing, and a NaN box is skipped. */
    snprintf(path, sizeof(path), "%s/bus.png", f->dir);
    assert_int_equal(det_output_write_image(path, &f->img, far, 3, names, 2,
                                            &err),
                     0);
}

static void output_rejects_bad_class(void **state)
{
    struct fixture *f = *state;
    struct det_box bad[] = {{0, 0, 10, 10, 0.5f, 2}};
    struct error err = {0};

    assert_int_equal(det_output_save(f->dir, "bus.jpg", &f->img, bad, 1,
                                     names, 2, &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "class 2"));
}

/* ---- Letterbox and colors ------------------------------------------------ */

static void unletterbox_maps_and_clips(void **state)
{
    /* A 1280 x 720 image letterboxed into 640 x 640: scale 0.5, pad
     * (0, 140). (100, 150) maps to (200, 20); (650, 700) to (1300, 1120),
     * clipped to (1280, 720); (-10, 100) to (-20, -80), clipped to 0. */
    struct det_box b[] = {{100, 150, 650, 700, 0.5f, 0},
                          {-10, 100, 20, 160, 0.5f, 0}};
    struct error err = {0};

    (void)state;
    assert_int_equal(det_boxes_unletterbox(b, 2, 0.5f, 0, 140, 1280, 720,
                                           &err),
                     0);
    assert_float_equal(b[0].x1, 200, 0);
    assert_float_equal(b[0].y1, 20, 0);
    assert_float_equal(b[0].x2, 1280, 0);
    assert_float_equal(b[0].y2, 720, 0);
    assert_float_equal(b[1].x1, 0, 0);
    assert_float_equal(b[1].y1, 0, 0);
    assert_float_equal(b[1].x2, 40, 0);
    assert_float_equal(b[1].y2, 40, 0);
    assert_int_equal(det_boxes_unletterbox(b, 2, 0.0f, 0, 0, 10, 10, &err),
                     -EINVAL);
}

static void class_colors_distinct(void **state)
{
    uint8_t colors[20][3];

    (void)state;
    for (int c = 0; c < 20; c++)
        det_class_color(c, colors[c]);
    for (int a = 0; a < 20; a++)
        for (int b = a + 1; b < 20; b++)
            if (memcmp(colors[a], colors[b], 3) == 0)
                fail_msg("classes %d and %d share a color", a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(txt_ultralytics_format,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(json_fields, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(empty_detections, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(png_edges_have_class_color,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(png_from_gray_image, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(png_box_outside_image,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(output_rejects_bad_class,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test(unletterbox_maps_and_clips),
        cmocka_unit_test(class_colors_distinct),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
