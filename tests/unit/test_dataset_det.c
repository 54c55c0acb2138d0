/*
 * Tests of engine/dataset_det: data.yaml forms and path rules, label row
 * validation, image checks, the report and the cache.
 *
 * The main fixture, built in a temporary folder before each test:
 *
 *   data.yaml                 names as a map, train/val folders
 *   images/train/a.png        32x16 RGB, labels with every row rule
 *   images/train/b.jpg        16x16 JPEG without labels: background
 *   images/train/cut.jpg      JPEG cut inside the image data
 *   images/train/half.png     PNG cut inside IDAT
 *   images/train/rot.jpg      32x16 JPEG tagged EXIF orientation 6
 *   images/train/deep.png     16-bit RGB PNG
 *   images/train/rgba.png     RGBA PNG
 *   images/train/gray.png     8-bit grayscale PNG
 *   images/train/huge.png     header claims 10000 x 10000 pixels
 *   images/train/café.png     non-ASCII name, with labels
 *   images/train/link.png     symbolic link to a.png
 *   labels/train/orphan.txt   label file without an image
 *   images/val/v.png          with one box
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jpeglib.h>
#include <zlib.h>

#include "engine/dataset_det.h"
#include "engine/image.h"

#define CAFE "caf\xc3\xa9" /* café */

static char root[256];

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The full path of rel; four calls may be used at once. */
static const char *path_in(const char *rel)
{
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];

    snprintf(path, 512, "%s/%s", root, rel);
    return path;
}

static void make_folder(const char *rel)
{
    assert_int_equal(mkdir(path_in(rel), 0755), 0);
}

static void write_bytes(const char *rel, const void *data, size_t len)
{
    FILE *f = fopen(path_in(rel), "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_text(const char *rel, const char *text)
{
    write_bytes(rel, text, strlen(text));
}

static void write_png(const char *rel, int width, int height, int channels,
                      int bit_depth)
{
    size_t n = (size_t)width * (size_t)height * (size_t)channels;
    size_t bytes = n * (size_t)(bit_depth / 8);
    uint8_t *pixels = malloc(bytes);
    struct error err = {0};

    assert_non_null(pixels);
    for (size_t i = 0; i < bytes; i++)
        pixels[i] = (uint8_t)(i * 37 + 11);
    assert_int_equal(image_write_png(path_in(rel), pixels, width, height,
                                     channels, bit_depth, &err), 0);
    free(pixels);
}

/* A PNG of noise cut at half its length, inside the image data. */
static void write_png_cut(const char *rel)
{
    uint8_t pixels[32 * 32 * 3];
    struct error err = {0};
    void *png;
    size_t len;

    for (size_t i = 0; i < sizeof(pixels); i++)
        pixels[i] = (uint8_t)(i * 2654435761u >> 13);
    assert_int_equal(image_encode_png(pixels, 32, 32, 3, 8, &png, &len,
                                      &err), 0);
    write_bytes(rel, png, len / 2);
    free(png);
}

/* A valid PNG whose IHDR declares width x height, with a matching CRC. */
static void write_png_claiming(const char *rel, uint32_t width,
                               uint32_t height)
{
    uint8_t pixels[4 * 4 * 3] = {0};
    struct error err = {0};
    uint8_t *png;
    void *data;
    size_t len;
    uint32_t crc;

    assert_int_equal(image_encode_png(pixels, 4, 4, 3, 8, &data, &len, &err),
                     0);
    png = data;
    for (int i = 0; i < 4; i++) {
        png[16 + i] = (uint8_t)(width >> (24 - 8 * i));
        png[20 + i] = (uint8_t)(height >> (24 - 8 * i));
    }
    crc = (uint32_t)crc32(0, png + 12, 17);
    for (int i = 0; i < 4; i++)
        png[29 + i] = (uint8_t)(crc >> (24 - 8 * i));
    write_bytes(rel, png, len);
    free(data);
}

/* Write a width x height JPEG, optionally with an EXIF orientation tag,
 * optionally cut inside the entropy-coded data. */
static void write_jpeg(const char *rel, int width, int height,
                       int orientation, int cut_data)
{
    static const uint8_t exif[] = {
        'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0,
        0x12, 0x01, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    uint8_t app1[sizeof(exif)];
    uint8_t *row = malloc((size_t)width * 3);
    unsigned char *out = NULL;
    unsigned long len = 0, sos = 0;

    assert_non_null(row);
    for (int i = 0; i < width; i++) {
        row[i * 3] = (uint8_t)(i * 8);
        row[i * 3 + 1] = 40;
        row[i * 3 + 2] = 200;
    }
    memcpy(app1, exif, sizeof(exif));
    app1[24] = (uint8_t)orientation;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &out, &len);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    if (orientation > 1)
        jpeg_write_marker(&cinfo, JPEG_APP0 + 1, app1, sizeof(app1));
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW rows[1] = {row};
        jpeg_write_scanlines(&cinfo, rows, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    for (unsigned long i = 2; cut_data && i + 1 < len; i++) {
        if (out[i] == 0xff && out[i + 1] == 0xda) {
            sos = i;
            break;
        }
    }
    write_bytes(rel, out, cut_data ? sos + (len - sos) / 2 : len);
    free(out);
    free(row);
}

static int make_root(void)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    snprintf(root, sizeof(root), "%s/test_dataset_det.XXXXXX", base);
    return mkdtemp(root) == NULL ? -1 : 0;
}

static int remove_root(void **state)
{
    (void)state;
    return nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char fixture_yaml[] = "path: .\n"
                                   "train: images/train\n"
                                   "val: images/val\n"
                                   "names:\n"
                                   "  0: cat\n"
                                   "  1: dog\n"
                                   "  2: bird\n";

/* Labels of a.png by line: 1 after a BOM, CRLF throughout. */
static const char a_labels[] =
    "\xef\xbb\xbf" "0 0.5 0.5 0.5 0.5  \r\n"      /* 1 kept, trailing blanks */
    "1 0.25 0.25 0.2 0.2\r\n"                     /* 2 kept */
    "0 0.5 0.5 0.5 0.5\r\n"                       /* 3 duplicate of 1 */
    "\r\n"                                        /* 4 blank */
    "2 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\r\n"       /* 5 polygon */
    "3 0.5 0.5 0.1 0.1\r\n"                       /* 6 class out of range */
    "x 0.5 0.5 0.1 0.1\r\n"                       /* 7 class not a number */
    "1.5 0.5 0.5 0.1 0.1\r\n"                     /* 8 class not integer */
    "0 0.995 0.5 0.02 0.2\r\n"                    /* 9 clipped */
    "0 1.2 0.5 0.1 0.1\r\n"                       /* 10 outside */
    "0 0.5 0.5 0 0.1\r\n"                         /* 11 zero width */
    "0 0.5 0.5 -0.1 0.1\r\n"                      /* 12 negative width */
    "0 0.5 0.5 0.1\r\n"                           /* 13 four columns */
    "0 0.5 0.5 0.1 0.1 0.9\r\n"                   /* 14 six columns */
    "0 0.5 nan 0.1 0.1\r\n";                      /* 15 not a number */

static int setup_fixture(void **state)
{
    (void)state;
    if (make_root() != 0)
        return -1;
    write_text("data.yaml", fixture_yaml);
    make_folder("images");
    make_folder("images/train");
    make_folder("images/val");
    make_folder("labels");
    make_folder("labels/train");
    make_folder("labels/val");
    write_png("images/train/a.png", 32, 16, 3, 8);
    write_text("labels/train/a.txt", a_labels);
    write_jpeg("images/train/b.jpg", 16, 16, 1, 0);
    write_jpeg("images/train/cut.jpg", 64, 64, 1, 1);
    write_text("labels/train/cut.txt", "0 0.5 0.5 0.2 0.2\n");
    write_png_cut("images/train/half.png");
    write_jpeg("images/train/rot.jpg", 32, 16, 6, 0);
    write_png("images/train/deep.png", 8, 8, 3, 16);
    write_png("images/train/rgba.png", 8, 8, 4, 8);
    write_png("images/train/gray.png", 8, 8, 1, 8);
    write_png_claiming("images/train/huge.png", 10000, 10000);
    write_png("images/train/" CAFE ".png", 8, 8, 3, 8);
    write_text("labels/train/" CAFE ".txt", "1 0.5 0.5 0.5 0.5\n");
    assert_int_equal(symlink("a.png", path_in("images/train/link.png")), 0);
    write_text("labels/train/orphan.txt", "0 0.5 0.5 0.2 0.2\n");
    write_png("images/val/v.png", 16, 16, 3, 8);
    write_text("labels/val/v.txt", "0 0.5 0.5 0.2 0.2\n");
    return 0;
}

static struct dataset_det *scan_ok(const char *path, size_t cache_bytes)
{
    struct dataset_det_options opt = {cache_bytes, 2};
    struct dataset_det *ds = NULL;
    struct error err = {0};
    int rc = dataset_det_scan(path, &opt, &ds, &err);

    if (rc != 0)
        fail_msg("scan of '%s' failed: %d %s", path, rc, err.msg);
    return ds;
}

static int scan_fails(const char *path, struct error *err)
{
    struct dataset_det *ds = NULL;
    int rc = dataset_det_scan(path, NULL, &ds, err);

    assert_null(ds);
    return rc;
}

static const struct dataset_det_problem *
find_problem(const struct dataset_det *ds, const char *file, int line,
             const char *rule)
{
    for (size_t i = 0; i < ds->problem_count; i++) {
        const struct dataset_det_problem *p = &ds->problems[i];

        if (strcmp(p->file, file) == 0 && strcmp(p->rule, rule) == 0 &&
            (line < 0 || p->line == line))
            return p;
    }
    return NULL;
}

static size_t find_image(const struct dataset_det *ds, const char *rel)
{
    const struct dataset_det_split_set *set = &ds->splits[DATASET_DET_TRAIN];

    for (size_t i = 0; i < set->count; i++)
        if (strcmp(set->images[i].rel, rel) == 0)
            return i;
    for (size_t i = 0; i < set->count; i++)
        print_message("train image %zu: %s\n", i, set->images[i].rel);
    fail_msg("image '%s' not in the train split", rel);
    return 0;
}

/* ---- The main fixture ------------------------------------------------- */

static void scan_counts_images(void **state)
{
    struct dataset_det *ds = scan_ok(root, 0);

    (void)state;
    assert_int_equal(ds->class_count, 3);
    assert_string_equal(ds->class_names[0], "cat");
    assert_string_equal(ds->class_names[2], "bird");
    /* a, b, rot, deep, rgba, gray, café */
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].count, 7);
    assert_int_equal(ds->splits[DATASET_DET_VAL].count, 1);
    assert_int_equal(ds->splits[DATASET_DET_TEST].count, 0);
    /* b, rot, deep, rgba, gray */
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].background, 5);
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].boxes, 5);
    assert_int_equal(ds->max_boxes, 4);
    dataset_det_free(ds);
}

static void labels_valid_rows(void **state)
{
    struct dataset_det *ds = scan_ok(root, 0);
    size_t a = find_image(ds, "images/train/a.png");
    const float *v;
    const int *cls;
    int n;

    (void)state;
    assert_int_equal(dataset_det_labels(ds, DATASET_DET_TRAIN, a, &v, &cls,
                                        &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(cls[0], 0);
    assert_float_equal(v[0], 0.5f, 1e-6);
    assert_float_equal(v[3], 0.5f, 1e-6);
    assert_int_equal(cls[1], 1);
    assert_float_equal(v[4], 0.25f, 1e-6);
    /* polygon 0.1..0.3 x 0.1..0.4 */
    assert_int_equal(cls[2], 2);
    assert_float_equal(v[8], 0.2f, 1e-6);
    assert_float_equal(v[9], 0.25f, 1e-6);
    assert_float_equal(v[10], 0.2f, 1e-6);
    assert_float_equal(v[11], 0.3f, 1e-6);
    /* clipped: 0.985..1.005 becomes 0.985..1 */
    assert_int_equal(cls[3], 0);
    assert_float_equal(v[12], 0.9925f, 1e-5);
    assert_float_equal(v[14], 0.015f, 1e-5);
    dataset_det_free(ds);
}

static void labels_row_rules(void **state)
{
    static const struct {
        int line;
        const char *rule;
    } expected[] = {
        {3, "duplicate_row"},      {5, "polygon_converted"},
        {6, "class_out_of_range"}, {7, "class_not_integer"},
        {8, "class_not_integer"},  {9, "clipped"},
        {10, "coordinate_out_of_range"}, {11, "zero_size"},
        {12, "negative_size"},     {13, "wrong_column_count"},
        {14, "wrong_column_count"}, {15, "not_a_number"},
    };
    struct dataset_det *ds = scan_ok(root, 0);

    (void)state;
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        if (find_problem(ds, "labels/train/a.txt", expected[i].line,
                         expected[i].rule) == NULL)
            fail_msg("no %s entry at line %d", expected[i].rule,
                     expected[i].line);
    assert_int_equal(ds->rows_rejected, 9);
    assert_int_equal(ds->duplicates, 1);
    assert_int_equal(ds->rows_clipped, 1);
    assert_int_equal(ds->polygons, 1);
    dataset_det_free(ds);
}

static void labels_bom_crlf_silent(void **state)
{
    struct dataset_det *ds = scan_ok(root, 0);

    (void)state;
    assert_null(find_problem(ds, "labels/train/a.txt", 1, "not_a_number"));
    assert_null(find_problem(ds, "labels/train/a.txt", 1,
                             "class_not_integer"));
    assert_null(find_problem(ds, "labels/train/a.txt", 2,
                             "wrong_column_count"));
    assert_null(find_problem(ds, "labels/train/a.txt", 4,
                             "wrong_column_count"));
    dataset_det_free(ds);
}

static void images_rules(void **state)
{
    static const struct {
        const char *file;
        const char *rule;
        enum dataset_det_level level;
    } expected[] = {
        {"images/train/cut.jpg", "corrupt_image", DATASET_DET_WARNING},
        {"images/train/half.png", "corrupt_image", DATASET_DET_WARNING},
        {"images/train/huge.png", "image_too_large", DATASET_DET_WARNING},
        {"images/train/rot.jpg", "exif_orientation", DATASET_DET_INFO},
        {"images/train/deep.png", "png_16_bit", DATASET_DET_INFO},
        {"images/train/rgba.png", "alpha_channel", DATASET_DET_INFO},
        {"images/train/gray.png", "grayscale", DATASET_DET_INFO},
        {"images/train/link.png", "symlink", DATASET_DET_WARNING},
        {"labels/train/orphan.txt", "label_without_image",
         DATASET_DET_WARNING},
    };
    struct dataset_det *ds = scan_ok(root, 0);

    (void)state;
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        const struct dataset_det_problem *p =
            find_problem(ds, expected[i].file, 0, expected[i].rule);

        if (p == NULL)
            fail_msg("no %s entry for %s", expected[i].rule,
                     expected[i].file);
        assert_int_equal(p->level, expected[i].level);
    }
    assert_int_equal(ds->images_rejected, 3);
    assert_int_equal(ds->orphan_labels, 1);
    dataset_det_free(ds);
}

static void image_too_large_message(void **state)
{
    struct dataset_det *ds = scan_ok(root, 0);
    const struct dataset_det_problem *p =
        find_problem(ds, "images/train/huge.png", 0, "image_too_large");

    (void)state;
    assert_non_null(p);
    assert_non_null(strstr(p->message, "100000000"));
    assert_non_null(strstr(p->message, "64000000"));
    dataset_det_free(ds);
}

static void image_exif_rotated_size(void **state)
{
    struct dataset_det *ds = scan_ok(root, 0);
    size_t i = find_image(ds, "images/train/rot.jpg");

    (void)state;
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].images[i].width, 16);
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].images[i].height, 32);
    dataset_det_free(ds);
}

static void image_non_ascii_name(void **state)
{
    struct dataset_det *ds = scan_ok(root, 0);
    size_t i = find_image(ds, "images/train/" CAFE ".png");
    const float *v;
    const int *cls;
    int n;

    (void)state;
    assert_int_equal(dataset_det_labels(ds, DATASET_DET_TRAIN, i, &v, &cls,
                                        &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(cls[0], 1);
    dataset_det_free(ds);
}

static void cache_keeps_images(void **state)
{
    struct dataset_det *ds = scan_ok(root, 1 << 20);
    size_t gray = find_image(ds, "images/train/gray.png");
    size_t a = find_image(ds, "images/train/a.png");
    struct error err = {0};
    struct image img;
    int owned;

    (void)state;
    assert_non_null(ds->splits[DATASET_DET_TRAIN].images[a].cached);
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].images[gray].cached->
                     channels, 1);
    assert_int_equal(dataset_det_image(ds, DATASET_DET_TRAIN, a, &img,
                                       &owned, &err), 0);
    assert_int_equal(owned, 0);
    assert_int_equal(img.width, 32);
    assert_int_equal(img.channels, 3);
    assert_true(ds->cache_bytes > 0);
    dataset_det_free(ds);
}

static void cache_off_decodes(void **state)
{
    struct dataset_det *ds = scan_ok(root, 0);
    size_t a = find_image(ds, "images/train/a.png");
    struct error err = {0};
    struct image img;
    int owned;

    (void)state;
    assert_null(ds->splits[DATASET_DET_TRAIN].images[a].cached);
    assert_int_equal(dataset_det_image(ds, DATASET_DET_TRAIN, a, &img,
                                       &owned, &err), 0);
    assert_int_equal(owned, 1);
    assert_int_equal(img.height, 16);
    image_free(&img);
    assert_int_equal(ds->cache_bytes, 0);
    dataset_det_free(ds);
}

static void report_json_totals(void **state)
{
    struct dataset_det *ds = scan_ok(root, 0);
    cJSON *json = dataset_det_report_json(ds);
    const cJSON *totals, *train, *problems;

    (void)state;
    assert_non_null(json);
    assert_string_equal(cJSON_GetObjectItem(json, "task")->valuestring,
                        "detect");
    totals = cJSON_GetObjectItem(json, "totals");
    train = cJSON_GetObjectItem(cJSON_GetObjectItem(json, "splits"),
                                "train");
    problems = cJSON_GetObjectItem(json, "problems");
    assert_int_equal(cJSON_GetObjectItem(train, "images")->valueint, 7);
    assert_int_equal(cJSON_GetObjectItem(train, "background")->valueint, 5);
    assert_int_equal(cJSON_GetObjectItem(totals, "images")->valueint, 8);
    assert_int_equal(cJSON_GetObjectItem(totals, "boxes")->valueint, 6);
    assert_int_equal(cJSON_GetObjectItem(totals, "rejected_rows")->valueint,
                     9);
    assert_int_equal(cJSON_GetObjectItem(totals, "duplicates")->valueint, 1);
    assert_int_equal(cJSON_GetArraySize(problems), (int)ds->problem_count);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetArrayItem(problems, 0),
                                        "rule"));
    cJSON_Delete(json);
    dataset_det_free(ds);
}

static void report_format_line(void **state)
{
    struct dataset_det *ds = scan_ok(root, 0);
    const struct dataset_det_problem *p =
        find_problem(ds, "labels/train/a.txt", 6, "class_out_of_range");
    char line[256];

    (void)state;
    assert_non_null(p);
    dataset_det_problem_format(p, line, sizeof(line));
    assert_string_equal(line, "labels/train/a.txt:6: class id 3 is outside "
                              "0..2 [class_out_of_range]; row rejected");
    dataset_det_log_report(ds, 3);
    dataset_det_free(ds);
}

static void scan_yaml_file_path(void **state)
{
    struct dataset_det *ds = scan_ok(path_in("data.yaml"), 0);

    (void)state;
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].count, 7);
    dataset_det_free(ds);
}

/* ---- data.yaml forms -------------------------------------------------- */

/* A minimal data set: one train and one val image with one box each. */
static int setup_small(void **state)
{
    (void)state;
    if (make_root() != 0)
        return -1;
    make_folder("images");
    make_folder("images/train");
    make_folder("images/val");
    make_folder("labels");
    make_folder("labels/train");
    make_folder("labels/val");
    write_png("images/train/t.png", 16, 16, 3, 8);
    write_text("labels/train/t.txt", "1 0.5 0.5 0.5 0.5\n");
    write_png("images/val/v.png", 16, 16, 3, 8);
    write_text("labels/val/v.txt", "0 0.5 0.5 0.5 0.5\n");
    return 0;
}

static void yaml_names_list(void **state)
{
    struct dataset_det *ds;

    (void)state;
    write_text("data.yaml", "train: images/train\nval: images/val\n"
                            "nc: 2\nnames: [person, car]\n");
    ds = scan_ok(root, 0);
    assert_int_equal(ds->class_count, 2);
    assert_string_equal(ds->class_names[1], "car");
    dataset_det_free(ds);
}

static void yaml_names_map(void **state)
{
    struct dataset_det *ds;

    (void)state;
    write_text("data.yaml", "train: images/train\nval: images/val\n"
                            "names:\n  1: car\n  0: person\n");
    ds = scan_ok(root, 0);
    assert_int_equal(ds->class_count, 2);
    assert_string_equal(ds->class_names[0], "person");
    assert_string_equal(ds->class_names[1], "car");
    dataset_det_free(ds);
}

static void yaml_nc_only(void **state)
{
    struct dataset_det *ds;

    (void)state;
    write_text("data.yaml", "train: images/train\nval: images/val\nnc: 3\n");
    ds = scan_ok(root, 0);
    assert_int_equal(ds->class_count, 3);
    assert_string_equal(ds->class_names[2], "class2");
    dataset_det_free(ds);
}

static void yaml_nc_mismatch(void **state)
{
    struct error err = {0};

    (void)state;
    write_text("data.yaml", "train: images/train\nval: images/val\n"
                            "nc: 3\nnames: [person, car]\n");
    assert_int_equal(scan_fails(root, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "nc is 3 but names lists 2"));
}

static void yaml_path_escapes(void **state)
{
    struct error err = {0};

    (void)state;
    write_text("data.yaml", "path: ..\ntrain: images/train\n"
                            "val: images/val\nnames: [a, b]\n");
    assert_int_equal(scan_fails(root, &err), -EXDEV);
    assert_non_null(strstr(err.msg, "outside the data set folder"));
}

static void yaml_path_absolute(void **state)
{
    struct error err = {0};

    (void)state;
    write_text("data.yaml", "path: /tmp\ntrain: images/train\n"
                            "val: images/val\nnames: [a, b]\n");
    assert_int_equal(scan_fails(root, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "absolute path"));
}

static void yaml_train_escapes(void **state)
{
    struct error err = {0};

    (void)state;
    write_text("data.yaml", "train: images/../../x\nval: images/val\n"
                            "names: [a, b]\n");
    assert_true(scan_fails(root, &err) < 0);
    write_text("data.yaml", "train: ../\nval: images/val\nnames: [a, b]\n");
    assert_int_equal(scan_fails(root, &err), -EXDEV);
}

static void yaml_symlinked_split_outside(void **state)
{
    struct error err = {0};

    (void)state;
    assert_int_equal(symlink("/usr/share", path_in("images/out")), 0);
    write_text("data.yaml", "train: images/out\nval: images/val\n"
                            "names: [a, b]\n");
    assert_int_equal(scan_fails(root, &err), -EXDEV);
}

static void yaml_missing_val(void **state)
{
    struct error err = {0};

    (void)state;
    write_text("data.yaml", "train: images/train\nnames: [a, b]\n");
    assert_int_equal(scan_fails(root, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "val is missing"));
}

static void yaml_invalid(void **state)
{
    struct error err = {0};

    (void)state;
    write_text("data.yaml", "train: [images/train\n");
    assert_int_equal(scan_fails(root, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not valid YAML"));
}

static void yaml_split_lists(void **state)
{
    struct dataset_det *ds;

    (void)state;
    write_text("train.txt", "./images/train/t.png\n\n"
                            "images/val/v.png\r\n/etc/passwd\n"
                            "images/train/missing.png\n");
    write_text("data.yaml", "train: train.txt\nval: [images/val]\n"
                            "names: [a, b]\n");
    ds = scan_ok(root, 0);
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].count, 2);
    assert_int_equal(ds->splits[DATASET_DET_VAL].count, 1);
    assert_non_null(find_problem(ds, "train.txt", 4, "absolute_path"));
    assert_non_null(find_problem(ds, "train.txt", 5, "image_not_found"));
    dataset_det_free(ds);
}

static void find_yaml_in_top_folder(void **state)
{
    struct dataset_det *ds;
    char top[512];

    (void)state;
    write_text("other.yaml", "train: images/train\nval: images/val\n"
                             "names: [a, b]\n");
    ds = scan_ok(root, 0);
    assert_int_equal(ds->class_count, 2);
    dataset_det_free(ds);

    /* The same data set one folder down, opened from above. */
    snprintf(top, sizeof(top), "%s.top", root);
    assert_int_equal(mkdir(top, 0755), 0);
    snprintf(top, sizeof(top), "%s.top/set", root);
    assert_int_equal(rename(root, top), 0);
    snprintf(top, sizeof(top), "%s.top", root);
    ds = scan_ok(top, 0);
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].count, 1);
    dataset_det_free(ds);
    snprintf(top, sizeof(top), "%s.top/set", root);
    assert_int_equal(rename(top, root), 0);
    snprintf(top, sizeof(top), "%s.top", root);
    assert_int_equal(rmdir(top), 0);
}

static void find_yaml_missing(void **state)
{
    struct error err = {0};

    (void)state;
    assert_int_equal(scan_fails(root, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "no data.yaml"));
}

static void scan_no_train_images(void **state)
{
    struct error err = {0};

    (void)state;
    assert_int_equal(unlink(path_in("images/train/t.png")), 0);
    write_text("data.yaml", "train: images/train\nval: images/val\n"
                            "names: [a, b]\n");
    assert_int_equal(scan_fails(root, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "no usable training images"));
}

static void labels_symlink_rejected(void **state)
{
    struct dataset_det *ds;

    (void)state;
    write_png("images/train/u.png", 16, 16, 3, 8);
    assert_int_equal(symlink("t.txt", path_in("labels/train/u.txt")), 0);
    write_text("data.yaml", "train: images/train\nval: images/val\n"
                            "names: [a, b]\n");
    ds = scan_ok(root, 0);
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].count, 1);
    assert_non_null(find_problem(ds, "labels/train/u.txt", 0, "symlink"));
    dataset_det_free(ds);
}

static void yaml_symlink_rejected(void **state)
{
    struct error err = {0};

    (void)state;
    write_text("real.yml", "train: images/train\nval: images/val\n"
                           "names: [a, b]\n");
    assert_int_equal(symlink("real.yml", path_in("data.yaml")), 0);
    assert_int_equal(scan_fails(root, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "symbolic link"));
}

static void unsupported_format_reported(void **state)
{
    struct dataset_det *ds;

    (void)state;
    write_text("images/train/x.bmp", "BM not decoded");
    write_text("data.yaml", "train: images/train\nval: images/val\n"
                            "names: [a, b]\n");
    ds = scan_ok(root, 0);
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].count, 1);
    assert_non_null(find_problem(ds, "images/train/x.bmp", 0,
                                 "unsupported_format"));
    dataset_det_free(ds);
}

/* 150 rows with class 9 give 100 entries and one closing entry, while
 * the total counts all 150. */
static void report_capped_per_rule(void **state)
{
    char *text = malloc(150 * 24 + 1);
    struct dataset_det *ds;
    size_t entries = 0, len = 0;
    const struct dataset_det_problem *closing;

    (void)state;
    assert_non_null(text);
    for (int i = 0; i < 150; i++)
        len += (size_t)sprintf(text + len, "9 0.5 0.5 0.%02d 0.1\n",
                               i % 90 + 10);
    write_text("labels/train/t.txt", text);
    free(text);
    write_text("data.yaml", "train: images/train\nval: images/val\n"
                            "names: [a, b]\n");
    ds = scan_ok(root, 0);
    for (size_t i = 0; i < ds->problem_count; i++)
        if (strcmp(ds->problems[i].rule, "class_out_of_range") == 0 &&
            ds->problems[i].line > 0)
            entries++;
    assert_int_equal(entries, 100);
    assert_int_equal(ds->rows_rejected, 150);
    closing = find_problem(ds, "", 0, "class_out_of_range");
    assert_non_null(closing);
    assert_non_null(strstr(closing->message, "50 more"));
    dataset_det_free(ds);
}

/* Two decoding threads give the same data set as one. */
static void scan_threads_same_result(void **state)
{
    struct dataset_det_options one = {0, 1}, two = {0, 2};
    struct dataset_det *a = NULL, *b = NULL;
    struct error err = {0};
    char *ja, *jb;
    cJSON *json;

    (void)state;
    assert_int_equal(dataset_det_scan(root, &one, &a, &err), 0);
    assert_int_equal(dataset_det_scan(root, &two, &b, &err), 0);
    json = dataset_det_report_json(a);
    ja = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    json = dataset_det_report_json(b);
    jb = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    assert_string_equal(ja, jb);
    assert_int_equal(a->splits[DATASET_DET_TRAIN].count,
                     b->splits[DATASET_DET_TRAIN].count);
    for (size_t i = 0; i < a->splits[DATASET_DET_TRAIN].count; i++)
        assert_string_equal(a->splits[DATASET_DET_TRAIN].images[i].rel,
                            b->splits[DATASET_DET_TRAIN].images[i].rel);
    free(ja);
    free(jb);
    dataset_det_free(a);
    dataset_det_free(b);
}

/* Regression: with no label file in use, the orphan check sorted a NULL
 * array, which UndefinedBehaviorSanitizer rejects. */
static void orphan_without_used_labels(void **state)
{
    struct dataset_det *ds;

    (void)state;
    assert_int_equal(unlink(path_in("labels/train/t.txt")), 0);
    assert_int_equal(unlink(path_in("labels/val/v.txt")), 0);
    write_text("labels/train/orphan.txt", "0 0.5 0.5 0.2 0.2\n");
    write_text("data.yaml", "train: images/train\nval: images/val\n"
                            "names: [a, b]\n");
    ds = scan_ok(root, 0);
    assert_int_equal(ds->splits[DATASET_DET_TRAIN].background, 1);
    assert_int_equal(ds->orphan_labels, 1);
    assert_non_null(find_problem(ds, "labels/train/orphan.txt", 0,
                                 "label_without_image"));
    dataset_det_free(ds);
}

#define FIXTURE(name) cmocka_unit_test_setup_teardown(name, setup_fixture, \
                                                      remove_root)
#define SMALL(name) cmocka_unit_test_setup_teardown(name, setup_small, \
                                                    remove_root)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIXTURE(scan_counts_images),
        FIXTURE(labels_valid_rows),
        FIXTURE(labels_row_rules),
        FIXTURE(labels_bom_crlf_silent),
        FIXTURE(images_rules),
        FIXTURE(image_too_large_message),
        FIXTURE(image_exif_rotated_size),
        FIXTURE(image_non_ascii_name),
        FIXTURE(cache_keeps_images),
        FIXTURE(cache_off_decodes),
        FIXTURE(report_json_totals),
        FIXTURE(report_format_line),
        FIXTURE(scan_yaml_file_path),
        FIXTURE(scan_threads_same_result),
        SMALL(yaml_names_list),
        SMALL(yaml_names_map),
        SMALL(yaml_nc_only),
        SMALL(yaml_nc_mismatch),
        SMALL(yaml_path_escapes),
        SMALL(yaml_path_absolute),
        SMALL(yaml_train_escapes),
        SMALL(yaml_symlinked_split_outside),
        SMALL(yaml_missing_val),
        SMALL(yaml_invalid),
        SMALL(yaml_split_lists),
        SMALL(find_yaml_in_top_folder),
        SMALL(find_yaml_missing),
        SMALL(scan_no_train_images),
        SMALL(labels_symlink_rejected),
        SMALL(yaml_symlink_rejected),
        SMALL(unsupported_format_reported),
        SMALL(report_capped_per_rule),
        SMALL(orphan_without_used_labels),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
