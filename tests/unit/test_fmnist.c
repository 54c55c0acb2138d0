/*
 * Tests of engine/fmnist: reading the real Debian Fashion-MNIST files,
 * rejecting crafted invalid IDX files, and importing a small data set
 * that dataset_cls then scans without problems.
 *
 * The expected values come from the files of dataset-fashion-mnist
 * 0.0~git20200523.55506a9-1, read independently with Python's gzip
 * module: the headers declare 60,000 and 10,000 items, each class has
 * 6,000 training and 1,000 test images, and the first labels and pixel
 * sums are listed below. The tests fail, saying to run `make deps`, when
 * the package is not installed.
 */
#include <dirent.h>
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "engine/dataset_cls.h"
#include "engine/fmnist.h"
#include "engine/image.h"

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
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/test_fmnist.XXXXXX", base);
    return mkdtemp(tmp_dir) == NULL ? -1 : 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    return nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The full path of rel in the temporary folder; four calls may be used
 * at once. */
static const char *tmp_path(const char *rel)
{
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];

    snprintf(path, 512, "%s/%s", tmp_dir, rel);
    return path;
}

static int exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* Number of entries in a folder, "." and ".." excluded. */
static int count_entries(const char *path)
{
    DIR *dir = opendir(path);
    struct dirent *entry;
    int n = 0;

    assert_non_null(dir);
    while ((entry = readdir(dir)) != NULL)
        n += strcmp(entry->d_name, ".") != 0 &&
             strcmp(entry->d_name, "..") != 0;
    closedir(dir);
    return n;
}

/* Read a split of the installed data set or fail with the reader's
 * message, which names the fix (`make deps`) when files are missing. */
static void read_real(enum fmnist_split split, size_t limit,
                      struct fmnist_set *set)
{
    struct error err = {0};

    if (fmnist_read(NULL, split, limit, set, &err) != 0)
        fail_msg("%s", err.msg);
}

static uint64_t pixel_sum(const uint8_t *p, size_t n)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < n; i++)
        sum += p[i];
    return sum;
}

/* ------------------------------------------------------------------------
 * Real files
 */

static void real_train_matches_known_facts(void **state)
{
    static const uint8_t first_labels[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    struct fmnist_set set;

    (void)state;
    read_real(FMNIST_TRAIN, 100, &set);
    assert_int_equal(set.file_count, FMNIST_TRAIN_COUNT);
    assert_int_equal(set.count, 100);
    assert_memory_equal(set.labels, first_labels, 10);
    assert_string_equal(fmnist_class_names[set.labels[0]], "ankle-boot");
    assert_int_equal(pixel_sum(set.images, FMNIST_PIXELS), 76247);
    assert_int_equal(pixel_sum(set.images + FMNIST_PIXELS, FMNIST_PIXELS),
                     84598);
    assert_int_equal(pixel_sum(set.images + 2 * FMNIST_PIXELS,
                               FMNIST_PIXELS), 28662);
    assert_int_equal(pixel_sum(set.images, 100 * FMNIST_PIXELS), 5688570);
    fmnist_free(&set);
    assert_null(set.images);
}

static void real_test_matches_known_facts(void **state)
{
    static const uint8_t first_labels[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    struct fmnist_set set;

    (void)state;
    read_real(FMNIST_TEST, 100, &set);
    assert_int_equal(set.file_count, FMNIST_TEST_COUNT);
    assert_int_equal(set.count, 100);
    assert_memory_equal(set.labels, first_labels, 10);
    assert_int_equal(pixel_sum(set.images, FMNIST_PIXELS), 33456);
    assert_int_equal(pixel_sum(set.images, 100 * FMNIST_PIXELS), 5854180);
    fmnist_free(&set);
}

static void real_labels_are_balanced(void **state)
{
    struct fmnist_set set;
    size_t counts[FMNIST_CLASSES] = {0};

    (void)state;
    read_real(FMNIST_TRAIN, 0, &set);
    assert_int_equal(set.count, FMNIST_TRAIN_COUNT);
    for (size_t i = 0; i < set.count; i++)
        counts[set.labels[i]]++;
    for (int c = 0; c < FMNIST_CLASSES; c++)
        assert_int_equal(counts[c], 6000);
    fmnist_free(&set);

    memset(counts, 0, sizeof(counts));
    read_real(FMNIST_TEST, 0, &set);
    assert_int_equal(set.count, FMNIST_TEST_COUNT);
    for (size_t i = 0; i < set.count; i++)
        counts[set.labels[i]]++;
    for (int c = 0; c < FMNIST_CLASSES; c++)
        assert_int_equal(counts[c], 1000);
    fmnist_free(&set);
}

/* ------------------------------------------------------------------------
 * Crafted IDX files
 */

static void put_u32_be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Write tmp_dir/src/<name>.gz: the magic, dims sizes, then data_len bytes
 * of data (or of zeros when data is NULL). */
static void write_idx(const char *name, uint32_t magic, int dims,
                      const uint32_t *sizes, const uint8_t *data,
                      size_t data_len)
{
    char path[512];
    uint8_t header[16];
    uint8_t *zeros = calloc(data_len + 1, 1);
    gzFile gz;

    mkdir(tmp_path("src"), 0755);
    snprintf(path, sizeof(path), "%s/src/%s.gz", tmp_dir, name);
    gz = gzopen(path, "wb");
    assert_non_null(gz);
    put_u32_be(header, magic);
    for (int i = 0; i < dims; i++)
        put_u32_be(header + 4 + 4 * i, sizes[i]);
    assert_int_equal(gzwrite(gz, header, 4 + 4 * (unsigned)dims),
                     4 + 4 * dims);
    if (data_len > 0)
        assert_int_equal(gzwrite(gz, data ? data : zeros, (unsigned)data_len),
                         (int)data_len);
    assert_int_equal(gzclose(gz), Z_OK);
    free(zeros);
}

/* A valid 5-image training split: image i is filled with the value i * 50
 * and has label i. */
static void write_small_train(void)
{
    uint32_t image_sizes[3] = {5, 28, 28};
    uint32_t label_sizes[1] = {5};
    uint8_t images[5 * FMNIST_PIXELS];
    uint8_t labels[5] = {0, 1, 2, 3, 4};

    for (int i = 0; i < 5; i++)
        memset(images + i * FMNIST_PIXELS, i * 50, FMNIST_PIXELS);
    write_idx("train-images-idx3-ubyte", 0x803, 3, image_sizes, images,
              sizeof(images));
    write_idx("train-labels-idx1-ubyte", 0x801, 1, label_sizes, labels, 5);
}

static void read_fails(const char *part)
{
    struct fmnist_set set;
    struct error err = {0};
    int rc = fmnist_read(tmp_path("src"), FMNIST_TRAIN, 0, &set, &err);

    assert_int_equal(rc, -EBADMSG);
    assert_null(set.images);
    assert_null(set.labels);
    if (strstr(err.msg, part) == NULL)
        fail_msg("error '%s' lacks '%s'", err.msg, part);
    assert_non_null(strstr(err.msg, "make deps"));
}

static void crafted_valid_files_read(void **state)
{
    struct fmnist_set set;
    struct error err = {0};

    (void)state;
    write_small_train();
    assert_int_equal(fmnist_read(tmp_path("src"), FMNIST_TRAIN, 3, &set,
                                 &err), 0);
    assert_int_equal(set.count, 3);
    assert_int_equal(set.file_count, 5);
    assert_int_equal(set.labels[2], 2);
    assert_int_equal(set.images[2 * FMNIST_PIXELS + 400], 100);
    fmnist_free(&set);
}

static void missing_files_say_make_deps(void **state)
{
    struct fmnist_set set;
    struct error err = {0};

    (void)state;
    assert_int_equal(fmnist_read(tmp_path("nowhere"), FMNIST_TEST, 10, &set,
                                 &err), -ENOENT);
    assert_non_null(strstr(err.msg, "t10k-images-idx3-ubyte.gz"));
    assert_non_null(strstr(err.msg, "dataset-fashion-mnist"));
    assert_non_null(strstr(err.msg, "make deps"));

    write_small_train();
    assert_int_equal(remove(tmp_path("src/train-labels-idx1-ubyte.gz")), 0);
    assert_int_equal(fmnist_read(tmp_path("src"), FMNIST_TRAIN, 10, &set,
                                 &err), -ENOENT);
    assert_non_null(strstr(err.msg, "train-labels-idx1-ubyte.gz"));
}

static void bad_magic_is_rejected(void **state)
{
    uint32_t sizes[3] = {5, 28, 28};

    (void)state;
    write_small_train();
    write_idx("train-images-idx3-ubyte", 0x801, 3, sizes, NULL,
              5 * FMNIST_PIXELS);
    read_fails("magic number 0x00000801, expected 0x00000803");
}

static void wrong_image_size_is_rejected(void **state)
{
    uint32_t sizes[3] = {5, 32, 28};

    (void)state;
    write_small_train();
    write_idx("train-images-idx3-ubyte", 0x803, 3, sizes, NULL, 5 * 32 * 28);
    read_fails("32x28 images, expected 28x28");
}

static void zero_count_is_rejected(void **state)
{
    uint32_t sizes[3] = {0, 28, 28};

    (void)state;
    write_small_train();
    write_idx("train-images-idx3-ubyte", 0x803, 3, sizes, NULL, 0);
    read_fails("declares 0 items");
}

static void label_count_mismatch_is_rejected(void **state)
{
    uint32_t sizes[1] = {6};

    (void)state;
    write_small_train();
    write_idx("train-labels-idx1-ubyte", 0x801, 1, sizes, NULL, 6);
    read_fails("declares 6 labels but the images file declares 5");
}

static void truncated_images_are_rejected(void **state)
{
    uint32_t sizes[3] = {5, 28, 28};

    (void)state;
    write_small_train();
    write_idx("train-images-idx3-ubyte", 0x803, 3, sizes, NULL,
              3 * FMNIST_PIXELS);
    read_fails("truncated: it ends after 2352 of the 3920 bytes");
}

static void label_out_of_range_is_rejected(void **state)
{
    uint32_t sizes[1] = {5};
    uint8_t labels[5] = {0, 1, 10, 3, 4};

    (void)state;
    write_small_train();
    write_idx("train-labels-idx1-ubyte", 0x801, 1, sizes, labels, 5);
    read_fails("label 10 of item 2");
}

static void corrupt_gzip_is_rejected(void **state)
{
    FILE *f;
    long size;
    char *data;

    (void)state;
    write_small_train();

    /* Flip bytes in the middle of the deflate stream. */
    f = fopen(tmp_path("src/train-images-idx3-ubyte.gz"), "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    data = malloc((size_t)size);
    rewind(f);
    assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
    for (long i = size / 3; i < size / 3 + 8; i++)
        data[i] = (char)~data[i];
    rewind(f);
    assert_int_equal(fwrite(data, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    free(data);
    read_fails("train-images-idx3-ubyte.gz");
}

/* ------------------------------------------------------------------------
 * Import
 */

static void import_writes_classification_layout(void **state)
{
    struct fmnist_import_options opts = {NULL, 200, 100};
    const char *out = tmp_path("data/fmnist");
    struct fmnist_set train, val;
    struct dataset_cls *ds = NULL;
    struct image img;
    struct error err = {0};
    char path[600];

    (void)state;
    if (fmnist_import(out, &opts, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(count_entries(tmp_path("data")), 1); /* no partial */
    read_real(FMNIST_TRAIN, 200, &train);
    read_real(FMNIST_TEST, 100, &val);

    /* The first training image is an ankle boot, stored as 00000.png. */
    snprintf(path, sizeof(path), "%s/train/9-ankle-boot/00000.png", out);
    assert_int_equal(image_decode_file(path, &img, &err), 0);
    assert_int_equal(img.width, 28);
    assert_int_equal(img.height, 28);
    for (size_t i = 0; i < FMNIST_PIXELS; i++) {
        assert_int_equal(img.pixels[i * 3], train.images[i]);
        assert_int_equal(img.pixels[i * 3 + 2], train.images[i]);
    }
    image_free(&img);
    snprintf(path, sizeof(path), "%s/val/2-pullover/00001.png", out);
    assert_true(exists(path));

    if (dataset_cls_scan(out, NULL, &ds, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(ds->class_count, FMNIST_CLASSES);
    for (int c = 0; c < FMNIST_CLASSES; c++)
        assert_string_equal(ds->class_names[c], fmnist_class_folders[c]);
    assert_int_equal(ds->splits[DATASET_CLS_TRAIN].count, 200);
    assert_int_equal(ds->splits[DATASET_CLS_VAL].count, 100);
    assert_int_equal(ds->problem_count, 0);
    for (int s = 0; s < 2; s++) {
        const struct fmnist_set *set = s == 0 ? &train : &val;
        size_t counts[FMNIST_CLASSES] = {0};

        for (size_t i = 0; i < set->count; i++)
            counts[set->labels[i]]++;
        for (int c = 0; c < FMNIST_CLASSES; c++)
            assert_int_equal(ds->splits[s].class_counts[c], counts[c]);
    }
    /* Labels of the scan match the IDX labels file by file. */
    for (size_t i = 0; i < ds->splits[DATASET_CLS_VAL].count; i++) {
        const struct dataset_cls_sample *sample =
            &ds->splits[DATASET_CLS_VAL].samples[i];
        size_t index = strtoul(strrchr(sample->path, '/') + 1, NULL, 10);

        assert_int_equal(sample->label, val.labels[index]);
    }
    dataset_cls_free(ds);
    fmnist_free(&train);
    fmnist_free(&val);
}

static void import_rejects_existing_folder(void **state)
{
    struct fmnist_import_options opts = {NULL, 10, 10};
    struct error err = {0};

    (void)state;
    assert_int_equal(mkdir(tmp_path("taken"), 0755), 0);
    assert_int_equal(fmnist_import(tmp_path("taken"), &opts, &err), -EEXIST);
    assert_non_null(strstr(err.msg, "already exists"));
}

static void import_removes_stale_partial(void **state)
{
    struct fmnist_import_options opts = {NULL, 10, 10};
    struct error err = {0};
    char stale[600];
    pid_t child = fork();

    (void)state;
    assert_true(child >= 0);
    if (child == 0)
        _exit(0);
    assert_int_equal(waitpid(child, NULL, 0), child);

    /* The child has exited, so its pid names a killed import. */
    snprintf(stale, sizeof(stale), "%s/again.partial-%ld", tmp_dir,
             (long)child);
    assert_int_equal(mkdir(stale, 0755), 0);
    assert_int_equal(mkdir(tmp_path("again.partial-1"), 0755), 0);
    if (fmnist_import(tmp_path("again/"), &opts, &err) != 0)
        fail_msg("%s", err.msg);
    assert_false(exists(stale));
    assert_true(exists(tmp_path("again.partial-1"))); /* pid 1 runs */
    assert_true(exists(tmp_path("again/train/0-t-shirt")));
}

static void failed_import_leaves_nothing(void **state)
{
    struct fmnist_import_options opts = {NULL, 0, 0};
    struct error err = {0};

    (void)state;
    write_small_train(); /* no t10k files */
    opts.source_dir = tmp_path("src");
    assert_int_equal(fmnist_import(tmp_path("broken"), &opts, &err),
                     -ENOENT);
    assert_false(exists(tmp_path("broken")));
}

#define DIR_TEST(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(real_train_matches_known_facts),
        cmocka_unit_test(real_test_matches_known_facts),
        cmocka_unit_test(real_labels_are_balanced),
        DIR_TEST(crafted_valid_files_read),
        DIR_TEST(missing_files_say_make_deps),
        DIR_TEST(bad_magic_is_rejected),
        DIR_TEST(wrong_image_size_is_rejected),
        DIR_TEST(zero_count_is_rejected),
        DIR_TEST(label_count_mismatch_is_rejected),
        DIR_TEST(truncated_images_are_rejected),
        DIR_TEST(label_out_of_range_is_rejected),
        DIR_TEST(corrupt_gzip_is_rejected),
        DIR_TEST(import_writes_classification_layout),
        DIR_TEST(import_rejects_existing_folder),
        DIR_TEST(import_removes_stale_partial),
        DIR_TEST(failed_import_leaves_nothing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
