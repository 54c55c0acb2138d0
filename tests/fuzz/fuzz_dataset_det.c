/*
 * libFuzzer target for dataset_det_scan (backend/engine/dataset_det.c):
 * data.yaml parsing, path rules and label row validation, then the
 * report and one training and one validation sample of det_augment.c.
 *
 * The input is up to four parts separated by NUL bytes:
 *
 *   data.yaml \0 labels/train/a.txt \0 labels/val/v.txt \0 list.txt
 *
 * A missing part leaves its file out. The data set folder also contains
 * images/train/a.png, images/train/b.png (no labels) and
 * images/val/v.png, 8x4 PNGs, so data.yaml may name images/train,
 * images/val or list.txt. The folder is made under $TMPDIR (default
 * /tmp) once per process, emptied before each input and removed at exit.
 *
 * After a successful scan the target checks what the scan promises and
 * aborts when it breaks: every kept box has its centre and size in 0..1
 * with a positive size, its class in 0..class_count-1, and the boxes of
 * the samples lie inside the image.
 */
#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/dataset_det.h"
#include "engine/det_augment.h"
#include "engine/image.h"
#include "fuzz_files.h"
#include "log.h"

#define IMGSZ 16
#define GT_CAP 256

static char base_dir[4096];
static char root_dir[4096 + 8];
static void *png_data;
static size_t png_size;

/* Remove root_dir and everything below it; links are not followed. */
static void clear_root(void)
{
    fuzz_remove_tree(root_dir);
}

static void init_once(void)
{
    uint8_t pixels[8 * 4 * 3];
    struct error err = {0};

    for (size_t i = 0; i < sizeof(pixels); i++)
        pixels[i] = (uint8_t)(i * 29);
    fuzz_temp_folder("fuzz_dataset_det", base_dir, sizeof(base_dir));
    snprintf(root_dir, sizeof(root_dir), "%s/root", base_dir);
    if (image_encode_png(pixels, 8, 4, 3, 8, &png_data, &png_size, &err))
        abort();
    log_init("fuzz", LOG_LEVEL_ERROR, 2);
}

static void write_file(const char *rel, const void *data, size_t len)
{
    char full[sizeof(root_dir) + 64];
    int fd;

    snprintf(full, sizeof(full), "%s/%s", root_dir, rel);
    fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
    if (fd < 0)
        abort();
    if (len > 0 && write(fd, data, len) != (ssize_t)len)
        abort();
    close(fd);
}

static void make_folder(const char *rel)
{
    char full[sizeof(root_dir) + 64];

    snprintf(full, sizeof(full), "%s/%s", root_dir, rel);
    if (mkdir(full, 0700) != 0)
        abort();
}

static void build_tree(const uint8_t *data, size_t size)
{
    static const char *const files[] = {"data.yaml", "labels/train/a.txt",
                                        "labels/val/v.txt", "list.txt"};
    size_t start = 0;

    clear_root();
    if (mkdir(root_dir, 0700) != 0)
        abort();
    make_folder("images");
    make_folder("images/train");
    make_folder("images/val");
    make_folder("labels");
    make_folder("labels/train");
    make_folder("labels/val");
    write_file("images/train/a.png", png_data, png_size);
    write_file("images/train/b.png", png_data, png_size);
    write_file("images/val/v.png", png_data, png_size);
    for (int part = 0; part < 4 && start <= size; part++) {
        const uint8_t *nul = memchr(data + start, 0, size - start);
        size_t end = nul != NULL ? (size_t)(nul - data) : size;

        write_file(files[part], data + start, end - start);
        if (nul == NULL)
            break;
        start = end + 1;
    }
}

static void check_labels(const struct dataset_det *ds)
{
    for (int s = 0; s < DATASET_DET_SPLITS; s++)
        for (size_t i = 0; i < ds->splits[s].count; i++) {
            const float *v;
            const int *cls;
            int n;

            if (dataset_det_labels(ds, s, i, &v, &cls, &n) != 0)
                abort();
            for (int k = 0; k < n; k++) {
                const float *b = v + k * 4;

                if (cls[k] < 0 || cls[k] >= ds->class_count)
                    abort();
                if (!(b[2] > 0.0f && b[3] > 0.0f && b[0] >= 0.0f &&
                      b[0] <= 1.0f && b[1] >= 0.0f && b[1] <= 1.0f &&
                      b[2] <= 1.0f && b[3] <= 1.0f))
                    abort();
            }
        }
}

static void check_boxes(const struct det_gt *gt, int n)
{
    for (int k = 0; k < n; k++)
        if (gt[k].x1 < 0.0f || gt[k].y1 < 0.0f || gt[k].x2 > IMGSZ ||
            gt[k].y2 > IMGSZ || gt[k].x2 < gt[k].x1 || gt[k].y2 < gt[k].y1)
            abort();
}

static void exercise(struct dataset_det *ds)
{
    static float chw[3 * IMGSZ * IMGSZ];
    static struct det_gt gt[GT_CAP];
    struct det_aug_params p = det_aug_defaults();
    struct letterbox lb;
    struct error err = {0};
    char line[1024];
    cJSON *json = dataset_det_report_json(ds);
    int n;

    cJSON_Delete(json);
    for (size_t i = 0; i < ds->problem_count; i++)
        dataset_det_problem_format(&ds->problems[i], line, sizeof(line));
    check_labels(ds);
    if (ds->class_count < 1 || ds->splits[DATASET_DET_TRAIN].count == 0)
        abort();
    if (det_load_train(ds, &p, 1, 0, 0, 0, IMGSZ, chw, gt, GT_CAP, &n,
                       &err) != 0)
        abort();
    check_boxes(gt, n);
    if (ds->splits[DATASET_DET_VAL].count > 0) {
        if (det_load_val(ds, DATASET_DET_VAL, 0, IMGSZ, chw, gt, GT_CAP, &n,
                         &lb, &err) != 0)
            abort();
        check_boxes(gt, n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dataset_det_options opt = {1 << 20, 1};
    struct dataset_det *ds = NULL;
    struct error err = {0};

    if (base_dir[0] == '\0')
        init_once();
    if (size > 64 * 1024)
        return 0;
    build_tree(data, size);
    if (dataset_det_scan(root_dir, &opt, &ds, &err) == 0) {
        exercise(ds);
        dataset_det_free(ds);
    } else if (err.msg[0] == '\0') {
        abort(); /* every failure must have a message */
    }
    return 0;
}
