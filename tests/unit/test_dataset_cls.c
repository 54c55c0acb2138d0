/*
 * Tests of engine/dataset_cls: the scan of a classification data set with
 * every kind of problem, the report, the loader with and without cache,
 * batches, and the fatal cases.
 *
 * The main fixture, built in a temporary folder before each test:
 *
 *   train/stray.txt            file outside a class folder
 *   train/.git/x.png           hidden folder, ignored
 *   train/bird/only.gif        unsupported format, so bird has no images
 *   train/cat/a.png            4x4 red
 *   train/cat/b.jpg            16x16 JPEG
 *   train/cat/broken.png       cut inside IHDR: fails at scan time
 *   train/cat/cut.jpg          cut inside the image data: fails at load
 *   train/cat/half.png         cut inside IDAT: fails at load
 *   train/cat/notes.jpg        a text file
 *   train/cat/.hidden.png      hidden file, ignored
 *   train/cat/sub/c.png        image in a subfolder
 *   train/dog/café.png         non-ASCII name
 *   train/dog/d.png            28x28 gray ramp
 *   train/empty/               empty class folder
 *   train/ñandú/x.png          non-ASCII class name
 *   val/bird/v.png, val/cat/v1.png
 *   val/empty/                 empty in val too
 *   val/horse/h1.png, h2.png   class not in train
 *   (no val/dog, no val/ñandú)  classes missing from val
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

#include "engine/dataset_cls.h"
#include "engine/image.h"

#define NANDU "\xc3\xb1" "and\xc3\xba" /* ñandú */
#define CAFE "caf\xc3\xa9.png"         /* café.png */

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

static void write_png_rgb(const char *rel, int width, int height,
                          const uint8_t color[3])
{
    size_t n = (size_t)width * (size_t)height;
    uint8_t *pixels = malloc(n * 3);
    struct error err = {0};

    assert_non_null(pixels);
    for (size_t i = 0; i < n; i++)
        memcpy(pixels + i * 3, color, 3);
    assert_int_equal(image_write_png(path_in(rel), pixels, width, height, 3,
                                     8, &err), 0);
    free(pixels);
}

/* Write the first len bytes of a PNG of noise, which compresses badly, so
 * that a cut at half the length lands inside the image data. */
static void write_png_cut(const char *rel, size_t keep_num, size_t keep_den)
{
    uint8_t pixels[32 * 32 * 3];
    struct error err = {0};
    void *png;
    size_t len;

    for (size_t i = 0; i < sizeof(pixels); i++)
        pixels[i] = (uint8_t)(i * 2654435761u >> 13);
    assert_int_equal(image_encode_png(pixels, 32, 32, 3, 8, &png, &len,
                                      &err), 0);
    write_bytes(rel, png, keep_den ? len * keep_num / keep_den : keep_num);
    free(png);
}

/* Write a 16x16 JPEG of one color; cut_data keeps the header and half the
 * entropy-coded data. */
static void write_jpeg(const char *rel, int cut_data)
{
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    uint8_t row[16 * 3];
    unsigned char *out = NULL;
    unsigned long len = 0;
    unsigned long sos = 0;

    for (int i = 0; i < 16; i++) {
        row[i * 3] = (uint8_t)(i * 16);
        row[i * 3 + 1] = 40;
        row[i * 3 + 2] = 200;
    }
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &out, &len);
    cinfo.image_width = 16;
    cinfo.image_height = 16;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < 16) {
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
}

static const uint8_t red[3] = {255, 0, 0};
static const uint8_t green[3] = {0, 255, 0};

static int make_root(void)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    snprintf(root, sizeof(root), "%s/test_dataset_cls.XXXXXX", base);
    return mkdtemp(root) == NULL ? -1 : 0;
}

static int setup_fixture(void **state)
{
    static const char gif[] = "GIF89a\x01\x00\x01\x00\x00\x00\x00";
    uint8_t ramp[28 * 28];
    struct error err = {0};

    (void)state;
    if (make_root() != 0)
        return -1;

    make_folder("train");
    write_bytes("train/stray.txt", "not a class\n", 12);
    make_folder("train/.git");
    write_png_rgb("train/.git/x.png", 2, 2, red);

    make_folder("train/bird");
    write_bytes("train/bird/only.gif", gif, sizeof(gif) - 1);

    make_folder("train/cat");
    write_png_rgb("train/cat/a.png", 4, 4, red);
    write_jpeg("train/cat/b.jpg", 0);
    write_png_cut("train/cat/broken.png", 20, 0);
    write_jpeg("train/cat/cut.jpg", 1);
    write_png_cut("train/cat/half.png", 1, 2);
    write_bytes("train/cat/notes.jpg", "meow\n", 5);
    write_png_rgb("train/cat/.hidden.png", 2, 2, red);
    make_folder("train/cat/sub");
    write_png_rgb("train/cat/sub/c.png", 3, 5, green);

    make_folder("train/dog");
    write_png_rgb("train/dog/" CAFE, 6, 6, green);
    for (int i = 0; i < 28 * 28; i++)
        ramp[i] = (uint8_t)(i % 28 * 9);
    if (image_write_png(path_in("train/dog/d.png"), ramp, 28, 28, 1, 8,
                        &err) != 0)
        return -1;

    make_folder("train/empty");
    make_folder("train/" NANDU);
    write_png_rgb("train/" NANDU "/x.png", 2, 2, red);

    make_folder("val");
    make_folder("val/bird");
    write_png_rgb("val/bird/v.png", 2, 2, green);
    make_folder("val/cat");
    write_png_rgb("val/cat/v1.png", 2, 2, red);
    make_folder("val/empty");
    make_folder("val/horse");
    write_png_rgb("val/horse/h1.png", 2, 2, red);
    write_png_rgb("val/horse/h2.png", 2, 2, red);
    return 0;
}

static int setup_empty_root(void **state)
{
    (void)state;
    return make_root();
}

static int teardown_root(void **state)
{
    (void)state;
    return nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct dataset_cls *scan_ok(const struct dataset_cls_options *opts)
{
    struct dataset_cls *ds = NULL;
    struct error err = {0};
    int rc = dataset_cls_scan(root, opts, &ds, &err);

    if (rc != 0)
        fail_msg("scan of '%s' failed: %s", root, err.msg);
    return ds;
}

static void assert_problem(const struct dataset_cls *ds, size_t i,
                           enum dataset_problem_kind kind, const char *path,
                           const char *problem_part, const char *action)
{
    const struct dataset_problem *p;

    if (i >= ds->problem_count)
        fail_msg("report has %zu entries, expected entry %zu (%s)",
                 ds->problem_count, i, path);
    p = &ds->problems[i];
    assert_string_equal(p->path, path);
    assert_string_equal(dataset_problem_kind_name(p->kind),
                        dataset_problem_kind_name(kind));
    if (strstr(p->problem, problem_part) == NULL)
        fail_msg("entry %zu problem '%s' lacks '%s'", i, p->problem,
                 problem_part);
    assert_string_equal(p->action, action);
}

/* Index of the train sample whose path ends with suffix. */
static size_t train_index(const struct dataset_cls *ds, const char *suffix)
{
    const struct dataset_cls_split_set *train =
        &ds->splits[DATASET_CLS_TRAIN];
    size_t n = strlen(suffix);

    for (size_t i = 0; i < train->count; i++) {
        size_t len = strlen(train->samples[i].path);

        if (len >= n && strcmp(train->samples[i].path + len - n, suffix) == 0)
            return i;
    }
    fail_msg("no train sample ends with '%s'", suffix);
    return 0;
}

/* ------------------------------------------------------------------------
 * Scan and report
 */

static void scan_finds_classes_and_samples(void **state)
{
    struct dataset_cls *ds = scan_ok(NULL);
    const struct dataset_cls_split_set *train =
        &ds->splits[DATASET_CLS_TRAIN];
    const struct dataset_cls_split_set *val = &ds->splits[DATASET_CLS_VAL];
    static const char *const expected_train[] = {
        "train/cat/a.png",  "train/cat/b.jpg",    "train/cat/cut.jpg",
        "train/cat/half.png", "train/cat/sub/c.png", "train/dog/" CAFE,
        "train/dog/d.png",  "train/" NANDU "/x.png"};
    static const int expected_labels[] = {1, 1, 1, 1, 1, 2, 2, 4};

    (void)state;
    assert_int_equal(ds->class_count, 5);
    assert_string_equal(ds->class_names[0], "bird");
    assert_string_equal(ds->class_names[1], "cat");
    assert_string_equal(ds->class_names[2], "dog");
    assert_string_equal(ds->class_names[3], "empty");
    assert_string_equal(ds->class_names[4], NANDU);

    assert_string_equal(train->name, "train");
    assert_int_equal(train->count, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_string_equal(train->samples[i].path,
                            path_in(expected_train[i]));
        assert_int_equal(train->samples[i].label, expected_labels[i]);
    }
    assert_int_equal(train->class_counts[0], 0);
    assert_int_equal(train->class_counts[1], 5);
    assert_int_equal(train->class_counts[2], 2);
    assert_int_equal(train->class_counts[3], 0);
    assert_int_equal(train->class_counts[4], 1);

    assert_string_equal(val->name, "val");
    assert_int_equal(val->count, 2);
    assert_string_equal(val->samples[0].path, path_in("val/bird/v.png"));
    assert_int_equal(val->samples[0].label, 0);
    assert_string_equal(val->samples[1].path, path_in("val/cat/v1.png"));
    assert_int_equal(val->samples[1].label, 1);
    dataset_cls_free(ds);
}

static void scan_reports_every_problem(void **state)
{
    struct dataset_cls *ds = scan_ok(NULL);
    size_t i = 0;

    (void)state;
    assert_problem(ds, i++, DATASET_PROBLEM_OUTSIDE_CLASS, "train/stray.txt",
                   "not in a class folder", "skipped");
    assert_problem(ds, i++, DATASET_PROBLEM_UNSUPPORTED,
                   "train/bird/only.gif", "GIF image", "skipped");
    assert_problem(ds, i++, DATASET_PROBLEM_EMPTY_CLASS, "train/bird",
                   "no usable image among its 1 file(s)",
                   "class kept without training images, so the class "
                   "indices still follow the folder order");
    assert_problem(ds, i++, DATASET_PROBLEM_CORRUPT, "train/cat/broken.png",
                   "truncated PNG", "skipped");
    assert_problem(ds, i++, DATASET_PROBLEM_NOT_IMAGE,
                   "train/cat/notes.jpg", "not an image", "skipped");
    assert_problem(ds, i++, DATASET_PROBLEM_EMPTY_CLASS, "train/empty",
                   "class folder has no images",
                   "class kept without training images, so the class "
                   "indices still follow the folder order");
    assert_problem(ds, i++, DATASET_PROBLEM_EMPTY_CLASS, "val/empty",
                   "class folder has no images", "class not validated");
    assert_problem(ds, i++, DATASET_PROBLEM_NOT_IN_TRAIN, "val/horse",
                   "class 'horse' has no folder in train/",
                   "its 2 file(s) skipped");
    assert_problem(ds, i++, DATASET_PROBLEM_MISSING_FROM_VAL, "val/dog",
                   "class folder missing; train/dog has 2 image(s)",
                   "class not validated");
    assert_problem(ds, i++, DATASET_PROBLEM_MISSING_FROM_VAL, "val/" NANDU,
                   "train/" NANDU " has 1 image(s)", "class not validated");
    assert_int_equal(ds->problem_count, i);

    /* The problem text does not repeat the path. */
    assert_null(strstr(ds->problems[4].problem, root));
    dataset_cls_free(ds);
}

static void report_renders_lines(void **state)
{
    struct dataset_cls *ds = scan_ok(NULL);
    char line[512];
    char *text;
    size_t lines = 0;

    (void)state;
    dataset_problem_format(&ds->problems[0], line, sizeof(line));
    assert_string_equal(line, "train/stray.txt: not in a class folder; "
                              "images go in train/<class>/; skipped");

    text = dataset_cls_report_text(ds);
    assert_non_null(text);
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, ds->problem_count);
    assert_non_null(strstr(text, "val/horse: class 'horse' has no folder "
                                 "in train/; its 2 file(s) skipped\n"));
    free(text);
    dataset_cls_log_report(ds, 3);
    dataset_cls_free(ds);
}

/* ------------------------------------------------------------------------
 * Loading
 */

static void load_decodes_to_chw(void **state)
{
    struct dataset_cls *ds = scan_ok(NULL);
    float chw[3 * 8 * 8];
    struct error err = {0};
    size_t ramp = train_index(ds, "/d.png");

    (void)state;
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN,
                                      train_index(ds, "/a.png"), 8, chw,
                                      &err), 0);
    for (int i = 0; i < 64; i++) {
        assert_float_equal(chw[i], 1.0f, 1e-6);
        assert_float_equal(chw[64 + i], 0.0f, 1e-6);
        assert_float_equal(chw[128 + i], 0.0f, 1e-6);
    }

    /* The gray ramp (x * 9) goes to 3 equal channels; resized to 8
     * columns it runs from 11.25 / 255 to 231.75 / 255. */
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, ramp, 8, chw,
                                      &err), 0);
    for (int i = 0; i < 64; i++) {
        assert_float_equal(chw[i], chw[64 + i], 0.0);
        assert_float_equal(chw[i], chw[128 + i], 0.0);
    }
    assert_float_equal(chw[0], 11.25f / 255.0f, 1e-5);
    assert_float_equal(chw[7], 231.75f / 255.0f, 1e-5);

    /* The JPEG has its blue channel near 200 / 255. */
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN,
                                      train_index(ds, "/b.jpg"), 8, chw,
                                      &err), 0);
    assert_float_equal(chw[128 + 27], 200.0f / 255.0f, 0.05);
    dataset_cls_free(ds);
}

static void load_failure_is_reported_once(void **state)
{
    struct dataset_cls *ds = scan_ok(NULL);
    size_t before = ds->problem_count;
    size_t cut = train_index(ds, "/cut.jpg");
    size_t half = train_index(ds, "/half.png");
    float chw[3 * 4 * 4];
    struct error err = {0};

    (void)state;
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, cut, 4, chw,
                                      &err), DATASET_CLS_SKIPPED);
    assert_int_equal(ds->problem_count, before + 1);
    assert_problem(ds, before, DATASET_PROBLEM_LOAD_FAILED,
                   "train/cat/cut.jpg", "truncated or unsupported JPEG",
                   "skipped in every epoch");

    /* A second epoch skips it without a new entry. */
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, cut, 4, chw,
                                      &err), DATASET_CLS_SKIPPED);
    assert_int_equal(ds->problem_count, before + 1);

    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, half, 4, chw,
                                      &err), DATASET_CLS_SKIPPED);
    assert_problem(ds, before + 1, DATASET_PROBLEM_LOAD_FAILED,
                   "train/cat/half.png", "PNG", "skipped in every epoch");
    dataset_cls_free(ds);
}

static void load_rejects_bad_arguments(void **state)
{
    struct dataset_cls *ds = scan_ok(NULL);
    float chw[3];
    struct error err = {0};

    (void)state;
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, 8, 1, chw,
                                      &err), -EINVAL);
    assert_non_null(strstr(err.msg, "sample 8 out of range"));
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, 0, 0, chw,
                                      &err), -EINVAL);
    assert_non_null(strstr(err.msg, "invalid image size 0"));
    assert_int_equal(dataset_cls_load(ds, (enum dataset_cls_split)7, 0, 1,
                                      chw, &err), -EINVAL);
    dataset_cls_free(ds);
}

static void batch_packs_loaded_samples(void **state)
{
    struct dataset_cls *ds = scan_ok(NULL);
    size_t indices[4];
    float chw[4 * 3 * 4 * 4];
    int labels[4];
    size_t loaded = 99;
    struct error err = {0};

    (void)state;
    indices[0] = train_index(ds, "/c.png");
    indices[1] = train_index(ds, "/cut.jpg");
    indices[2] = train_index(ds, "/x.png");
    indices[3] = train_index(ds, "/a.png");
    assert_int_equal(dataset_cls_load_batch(ds, DATASET_CLS_TRAIN, indices,
                                            4, 4, chw, labels, &loaded,
                                            &err), 0);
    assert_int_equal(loaded, 3);
    assert_int_equal(labels[0], 1);
    assert_int_equal(labels[1], 4);
    assert_int_equal(labels[2], 1);

    /* c.png is green, x.png red, a.png red: check the packed order. */
    assert_float_equal(chw[0 * 48 + 16], 1.0f, 1e-6);
    assert_float_equal(chw[1 * 48 + 0], 1.0f, 1e-6);
    assert_float_equal(chw[1 * 48 + 16], 0.0f, 1e-6);
    assert_float_equal(chw[2 * 48 + 0], 1.0f, 1e-6);

    indices[3] = 1000;
    assert_int_equal(dataset_cls_load_batch(ds, DATASET_CLS_TRAIN, indices,
                                            4, 4, chw, labels, &loaded,
                                            &err), -EINVAL);
    assert_non_null(strstr(err.msg, "batch position 3"));
    dataset_cls_free(ds);
}

static void cache_serves_deleted_files(void **state)
{
    struct dataset_cls_options opts = {1 << 20, 0};
    struct dataset_cls *ds = scan_ok(&opts);
    const struct dataset_cls_split_set *train =
        &ds->splits[DATASET_CLS_TRAIN];
    size_t ramp = train_index(ds, "/d.png");
    float first[3 * 16 * 16], again[3 * 16 * 16];
    struct error err = {0};

    (void)state;
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, ramp, 16, first,
                                      &err), 0);
    for (size_t i = 0; i < train->count; i++)
        dataset_cls_load(ds, DATASET_CLS_TRAIN, i, 16, again, &err);

    /* With the files gone only the cache can produce the images. */
    for (size_t i = 0; i < train->count; i++)
        assert_int_equal(unlink(train->samples[i].path), 0);
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, ramp, 16, again,
                                      &err), 0);
    assert_memory_equal(first, again, sizeof(first));
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN,
                                      train_index(ds, "/b.jpg"), 16, again,
                                      &err), 0);
    dataset_cls_free(ds);
}

static void cache_respects_byte_budget(void **state)
{
    /* 28x28 gray needs 784 bytes plus the struct; 100 fits nothing. */
    struct dataset_cls_options opts = {100, 0};
    struct dataset_cls *ds = scan_ok(&opts);
    size_t ramp = train_index(ds, "/d.png");
    float chw[3 * 4 * 4];
    struct error err = {0};

    (void)state;
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, ramp, 4, chw,
                                      &err), 0);
    assert_int_equal(unlink(ds->splits[DATASET_CLS_TRAIN].samples[ramp].path),
                     0);
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, ramp, 4, chw,
                                      &err), DATASET_CLS_SKIPPED);
    assert_string_equal(ds->problems[ds->problem_count - 1].path,
                        "train/dog/d.png");
    dataset_cls_free(ds);
}

static void cache_skips_large_images(void **state)
{
    /* Only images of at most 16 pixels are cached: a.png (4x4) is, the
     * 28x28 ramp is not. */
    struct dataset_cls_options opts = {1 << 20, 16};
    struct dataset_cls *ds = scan_ok(&opts);
    size_t a = train_index(ds, "/a.png");
    size_t ramp = train_index(ds, "/d.png");
    float chw[3 * 4 * 4];
    struct error err = {0};

    (void)state;
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, a, 4, chw,
                                      &err), 0);
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, ramp, 4, chw,
                                      &err), 0);
    assert_int_equal(unlink(ds->splits[DATASET_CLS_TRAIN].samples[a].path),
                     0);
    assert_int_equal(unlink(ds->splits[DATASET_CLS_TRAIN].samples[ramp].path),
                     0);
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, a, 4, chw,
                                      &err), 0);
    assert_int_equal(dataset_cls_load(ds, DATASET_CLS_TRAIN, ramp, 4, chw,
                                      &err), DATASET_CLS_SKIPPED);
    dataset_cls_free(ds);
}

/* ------------------------------------------------------------------------
 * Validation split variants
 */

static void test_folder_replaces_val(void **state)
{
    struct dataset_cls *ds;

    (void)state;
    assert_int_equal(rename(path_in("val"), path_in("test")), 0);
    ds = scan_ok(NULL);
    assert_string_equal(ds->splits[DATASET_CLS_VAL].name, "test");
    assert_int_equal(ds->splits[DATASET_CLS_VAL].count, 2);
    assert_problem(ds, ds->problem_count - 1,
                   DATASET_PROBLEM_MISSING_FROM_VAL, "test/" NANDU,
                   "class folder missing", "class not validated");
    dataset_cls_free(ds);
}

static void missing_val_is_reported(void **state)
{
    struct dataset_cls *ds;

    (void)state;
    assert_int_equal(rename(path_in("val"), path_in("old-val")), 0);
    ds = scan_ok(NULL);
    assert_string_equal(ds->splits[DATASET_CLS_VAL].name, "");
    assert_int_equal(ds->splits[DATASET_CLS_VAL].count, 0);
    assert_problem(ds, ds->problem_count - 1, DATASET_PROBLEM_NO_VAL, "val",
                   "no 'val' or 'test' folder",
                   "training runs without validation");
    dataset_cls_free(ds);
}

/* ------------------------------------------------------------------------
 * Fatal cases
 */

static void scan_fails(const char *scan_root, int code, const char *part)
{
    struct dataset_cls *ds = (struct dataset_cls *)1;
    struct error err = {0};

    assert_int_equal(dataset_cls_scan(scan_root, NULL, &ds, &err), code);
    assert_null(ds);
    if (strstr(err.msg, part) == NULL)
        fail_msg("error '%s' lacks '%s'", err.msg, part);
}

static void missing_root_or_train_fails(void **state)
{
    (void)state;
    scan_fails(path_in("nowhere"), -ENOENT, "not found");
    write_bytes("file", "x", 1);
    scan_fails(path_in("file"), -ENOTDIR, "is not a folder");
    scan_fails(root, -ENOENT, "no 'train' folder");
}

static void no_class_folders_fails(void **state)
{
    (void)state;
    make_folder("train");
    write_bytes("train/loose.png", "x", 1);
    scan_fails(root, -EINVAL, "no class folders");
    scan_fails(root, -EINVAL, "train/loose.png: not in a class folder");
}

static void one_usable_class_fails(void **state)
{
    (void)state;
    make_folder("train");
    make_folder("train/a");
    make_folder("train/b");
    write_png_rgb("train/a/1.png", 2, 2, red);
    write_bytes("train/b/1.png", "no", 2);
    scan_fails(root, -EINVAL, "training images in 1 of 2 classes");
    scan_fails(root, -EINVAL, "first: train/b/1.png: not an image");
}

static void no_usable_images_fails(void **state)
{
    (void)state;
    make_folder("train");
    make_folder("train/a");
    make_folder("train/b");
    write_bytes("train/a/1.jpg", "text", 4);
    scan_fails(root, -EINVAL, "no usable training images");
}

static void two_classes_without_val_scan(void **state)
{
    struct dataset_cls *ds;

    (void)state;
    make_folder("train");
    make_folder("train/a");
    make_folder("train/b");
    write_png_rgb("train/a/1.png", 2, 2, red);
    write_png_rgb("train/b/1.png", 2, 2, green);
    ds = scan_ok(NULL);
    assert_int_equal(ds->class_count, 2);
    assert_int_equal(ds->splits[DATASET_CLS_TRAIN].count, 2);
    assert_int_equal(ds->problem_count, 1);
    dataset_cls_free(ds);
}

/* Two links to "." in a class folder once made the scan visit 2^16
 * folders (found by fuzzing). Each link is now one report entry. */
static void symlink_loop_reported_once(void **state)
{
    char link_path[512];
    struct dataset_cls *ds;

    (void)state;
    make_folder("train");
    make_folder("train/a");
    make_folder("train/b");
    write_png_rgb("train/a/1.png", 2, 2, red);
    write_png_rgb("train/b/1.png", 2, 2, green);
    for (int i = 0; i < 2; i++) {
        snprintf(link_path, sizeof(link_path), "%s/train/a/loop%d", root, i);
        assert_int_equal(symlink(".", link_path), 0);
    }
    ds = scan_ok(NULL);
    assert_int_equal(ds->splits[DATASET_CLS_TRAIN].count, 2);
    size_t loops = 0;
    for (size_t i = 0; i < ds->problem_count; i++)
        if (strstr(ds->problems[i].problem, "symbolic link loop") != NULL)
            loops++;
    assert_int_equal(loops, 2);
    dataset_cls_free(ds);
}

#define FIXTURE_TEST(f) \
    cmocka_unit_test_setup_teardown(f, setup_fixture, teardown_root)
#define EMPTY_TEST(f) \
    cmocka_unit_test_setup_teardown(f, setup_empty_root, teardown_root)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIXTURE_TEST(scan_finds_classes_and_samples),
        FIXTURE_TEST(scan_reports_every_problem),
        FIXTURE_TEST(report_renders_lines),
        FIXTURE_TEST(load_decodes_to_chw),
        FIXTURE_TEST(load_failure_is_reported_once),
        FIXTURE_TEST(load_rejects_bad_arguments),
        FIXTURE_TEST(batch_packs_loaded_samples),
        FIXTURE_TEST(cache_serves_deleted_files),
        FIXTURE_TEST(cache_respects_byte_budget),
        FIXTURE_TEST(cache_skips_large_images),
        FIXTURE_TEST(test_folder_replaces_val),
        FIXTURE_TEST(missing_val_is_reported),
        EMPTY_TEST(missing_root_or_train_fails),
        EMPTY_TEST(no_class_folders_fails),
        EMPTY_TEST(one_usable_class_fails),
        EMPTY_TEST(no_usable_images_fails),
        EMPTY_TEST(two_classes_without_val_scan),
        EMPTY_TEST(symlink_loop_reported_once),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
