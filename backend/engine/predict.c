/*
 * `train predict`: run a trained detector on images and write what it
 * finds. The model comes from a checkpoint (its EMA weights, which are
 * what validation scored), each image is letterboxed to the checkpoint's
 * image size (or imgsz=), and the detections after NMS are mapped back to
 * the image's own pixels and written by det_output.h: labels/NAME.txt,
 * NAME.json and NAME.png under project/name.
 *
 * A source is an image file or a folder, whose JPEG and PNG files are
 * taken in name order. Files that fail to decode are reported and
 * skipped, and then the exit status is 1.
 */
#include "engine/predict.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "clock.h"
#include "detect.h"
#include "engine/checkpoint.h"
#include "engine/det_augment.h"
#include "engine/det_output.h"
#include "engine/device.h"
#include "engine/net.h"
#include "fsutil.h"
#include "log.h"

struct predict_args {
    char model[PATH_MAX];
    char source[PATH_MAX];
    char project[PATH_MAX / 2];
    char name[256];
    char device[32];
    int imgsz, max_det, exist_ok, threads;
    double conf, iou;
};

static int parse_number(const char *key, const char *value, double lo,
                        double hi, double *out, struct error *err)
{
    char *end;
    double v = strtod(value, &end);

    if (*value == '\0' || *end != '\0' || !(v >= lo && v <= hi))
        return error_set(err, -EINVAL,
                         "invalid %s=%s; give a number from %g to %g", key,
                         value, lo, hi);
    *out = v;
    return 0;
}

static int copy_text(char *dst, size_t len, const char *key,
                     const char *value, struct error *err)
{
    if (strlen(value) >= len)
        return error_set(err, -EINVAL, "%s= is longer than %zu bytes", key,
                         len - 1);
    memcpy(dst, value, strlen(value) + 1);
    return 0;
}

static int set_arg(struct predict_args *a, const char *word,
                   struct error *err)
{
    const char *eq = strchr(word, '=');
    char key[32];
    double v;
    int rc = 0;

    if (eq == NULL || eq == word || (size_t)(eq - word) >= sizeof(key))
        return error_set(err, -EINVAL,
                         "invalid argument '%s'; use key=value", word);
    memcpy(key, word, (size_t)(eq - word));
    key[eq - word] = '\0';
    const char *value = eq + 1;

    if (strcmp(key, "model") == 0)
        return copy_text(a->model, sizeof(a->model), key, value, err);
    if (strcmp(key, "source") == 0)
        return copy_text(a->source, sizeof(a->source), key, value, err);
    if (strcmp(key, "project") == 0)
        return copy_text(a->project, sizeof(a->project), key, value, err);
    if (strcmp(key, "name") == 0)
        return copy_text(a->name, sizeof(a->name), key, value, err);
    if (strcmp(key, "device") == 0)
        return copy_text(a->device, sizeof(a->device), key, value, err);
    if (strcmp(key, "conf") == 0)
        return parse_number(key, value, 0, 1, &a->conf, err);
    if (strcmp(key, "iou") == 0)
        return parse_number(key, value, 0, 1, &a->iou, err);
    if (strcmp(key, "imgsz") == 0) {
        rc = parse_number(key, value, 32, 8192, &v, err);
        a->imgsz = (int)v;
    } else if (strcmp(key, "max_det") == 0) {
        rc = parse_number(key, value, 1, 30000, &v, err);
        a->max_det = (int)v;
    } else if (strcmp(key, "threads") == 0) {
        rc = parse_number(key, value, 0, 1024, &v, err);
        a->threads = (int)v;
    } else if (strcmp(key, "exist_ok") == 0) {
        a->exist_ok = strcmp(value, "true") == 0 ||
                      strcmp(value, "True") == 0 || strcmp(value, "1") == 0;
    } else {
        return error_set(err, -EINVAL,
                         "unknown argument '%s'; train predict takes model, "
                         "source, imgsz, conf, iou, max_det, device, "
                         "threads, project, name and exist_ok",
                         key);
    }
    return rc;
}

static int is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');

    return dot != NULL &&
           (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
            strcasecmp(dot, ".png") == 0);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The image files of the source, in name order; *paths is freed by the
 * caller (each entry, then the array). */
static int list_sources(const char *source, char ***paths, int *count,
                        struct error *err)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    char **list = NULL;
    int n = 0, cap = 0;

    *paths = NULL;
    *count = 0;
    if (stat(source, &st) != 0)
        return error_errno(err, errno, "source '%s' not found", source);
    if (!S_ISDIR(st.st_mode)) {
        list = malloc(sizeof(*list));
        if (list == NULL || (list[0] = strdup(source)) == NULL) {
            free(list);
            return error_set(err, -ENOMEM, "out of memory");
        }
        *paths = list;
        *count = 1;
        return 0;
    }
    d = opendir(source);
    if (d == NULL)
        return error_errno(err, errno, "cannot open source folder '%s'",
                           source);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !is_image_name(e->d_name))
            continue;
        if (n == cap) {
            int grown = cap ? cap * 2 : 64;
            char **bigger = realloc(list, (size_t)grown * sizeof(*list));
            if (bigger == NULL)
                break;
            list = bigger;
            cap = grown;
        }
        size_t len = strlen(source) + strlen(e->d_name) + 2;
        list[n] = malloc(len);
        if (list[n] == NULL)
            break;
        snprintf(list[n], len, "%s/%s", source, e->d_name);
        n++;
    }
    closedir(d);
    if (n == 0) {
        free(list);
        return error_set(err, -ENOENT,
                         "source folder '%s' has no .jpg, .jpeg or .png "
                         "files",
                         source);
    }
    qsort(list, (size_t)n, sizeof(*list), compare_names);
    *paths = list;
    *count = n;
    return 0;
}

/* project/name, or project/name2, name3, ... unless exist_ok. */
static int output_dir(const struct predict_args *a, char *dir, size_t len,
                      struct error *err)
{
    struct stat st;

    snprintf(dir, len, "%s/%s", a->project, a->name);
    for (int n = 2; !a->exist_ok && stat(dir, &st) == 0; n++)
        snprintf(dir, len, "%s/%s%d", a->project, a->name, n);
    return fs_mkdir_p(dir, 0755, err);
}

struct predictor {
    struct device dev;
    struct net net;
    struct checkpoint ck;
    const char *names[1024];
    int nc;
    int imgsz;
    float *x, *x_dev;
    struct det_box *boxes;
};

static int predictor_open(struct predictor *p, const struct predict_args *a,
                          struct error *err)
{
    int rc;

    rc = ckpt_open(a->model, &p->ck, err);
    if (rc != 0)
        return rc;
    if (strcmp(p->ck.spec.task, "detect") != 0)
        return error_set(err, -EINVAL,
                         "model '%s' is a %s model; train predict needs a "
                         "detection checkpoint",
                         a->model, p->ck.spec.task);
    p->imgsz = a->imgsz > 0 ? (a->imgsz + 31) / 32 * 32 : p->ck.imgsz;
    rc = device_open(&p->dev, a->device, a->threads, err);
    if (rc != 0)
        return rc;
    rc = net_build_on(&p->net, &p->ck.spec, p->imgsz, p->imgsz, 1, 0, &p->dev,
                      err);
    if (rc != 0)
        return rc;
    rc = ckpt_load_tensors(&p->ck, &p->net, err);
    if (rc != 0)
        return rc;
    net_swap_ema(&p->net);

    /* Class names are newline-separated in the checkpoint. */
    char *s = p->ck.class_names;
    p->nc = 0;
    while (*s != '\0' && p->nc < (int)(sizeof(p->names) / sizeof(p->names[0]))) {
        p->names[p->nc++] = s;
        char *nl = strchr(s, '\n');
        if (nl == NULL)
            break;
        *nl = '\0';
        s = nl + 1;
    }
    if (p->nc != p->ck.spec.classes)
        p->nc = 0; /* names do not match: use class numbers */

    size_t image = 3 * (size_t)p->imgsz * (size_t)p->imgsz;
    p->x = malloc(image * sizeof(float));
    p->boxes = malloc((size_t)a->max_det * sizeof(*p->boxes));
    if (p->x == NULL || p->boxes == NULL)
        return error_set(err, -ENOMEM, "out of memory");
    if (p->dev.ops->host_memory) {
        p->x_dev = p->x;
        return 0;
    }
    p->x_dev = p->dev.ops->alloc(&p->dev.ctx, image * sizeof(float), err);
    return p->x_dev == NULL ? err->code : 0;
}

static void predictor_close(struct predictor *p)
{
    net_free(&p->net);
    if (p->dev.ops != NULL && p->x_dev != p->x)
        p->dev.ops->release(&p->dev.ctx, p->x_dev);
    device_close(&p->dev);
    ckpt_close(&p->ck);
    free(p->x);
    free(p->boxes);
}

/* Detect the objects of one image and write its files into dir. */
static int predict_one(struct predictor *p, const struct predict_args *a,
                       const char *path, const char *dir, int index,
                       int total, struct error *err)
{
    struct image img = {0};
    struct letterbox lb;
    struct det_nms_config nms = {(float)a->conf, (float)a->iou, a->max_det,
                                 30000, 0};
    int64_t t0 = clock_monotonic_ms();
    int count = 0, rc;

    rc = image_decode_file(path, &img, err);
    if (rc == 0)
        rc = det_letterbox_image(&img, p->imgsz, p->x, &lb, err);
    if (rc == 0 && !p->dev.ops->host_memory)
        rc = p->dev.ops->copy_to_device(
            &p->dev.ctx, p->x_dev, p->x,
            3 * (size_t)p->imgsz * (size_t)p->imgsz * sizeof(float), err);
    if (rc == 0) {
        const struct layer *last = &p->net.layers[p->net.nlayers - 1];
        net_forward(&p->net, p->x_dev, 1, 0);
        rc = p->dev.ops->det_decode_nms(&p->dev.ctx, &last->u.detect->layout,
                                        &nms, 1, last->out, p->boxes, &count);
        if (rc != 0)
            error_set(err, rc, "decoding the detections of '%s' failed",
                      path);
    }
    if (rc == 0)
        rc = net_check(&p->net, err);
    if (rc == 0)
        rc = det_boxes_unletterbox(p->boxes, count, lb.scale, lb.pad_x,
                                   lb.pad_y, img.width, img.height, err);
    if (rc == 0)
        rc = det_output_save(dir, path, &img, p->boxes, count,
                             p->nc ? p->names : NULL, p->nc, err);
    if (rc == 0) {
        printf("image %d/%d %s: %dx%d, %d detection%s, %lld ms\n", index + 1,
               total, path, img.width, img.height, count,
               count == 1 ? "" : "s",
               (long long)(clock_monotonic_ms() - t0));
        fflush(stdout);
    }
    image_free(&img);
    return rc;
}

int predict_main(int argc, char **argv)
{
    struct predict_args a;
    struct predictor p;
    struct error err = {0};
    char dir[PATH_MAX], **paths = NULL;
    int count = 0, failed = 0;

    memset(&a, 0, sizeof(a));
    memset(&p, 0, sizeof(p));
    snprintf(a.project, sizeof(a.project), "runs/detect");
    snprintf(a.name, sizeof(a.name), "predict");
    snprintf(a.device, sizeof(a.device), "cpu");
    a.conf = 0.25;
    a.iou = 0.7;
    a.max_det = 300;
    for (int i = 2; i < argc; i++) {
        if (set_arg(&a, argv[i], &err) != 0) {
            fprintf(stderr, "train predict: %s\n", err.msg);
            return 2;
        }
    }
    if (a.model[0] == '\0' || a.source[0] == '\0') {
        fprintf(stderr, "train predict: missing %s; give model=CHECKPOINT "
                        "and source=IMAGE_OR_FOLDER\n",
                a.model[0] == '\0' ? "model=" : "source=");
        return 2;
    }

    log_init("train", LOG_LEVEL_INFO, 2);
    if (list_sources(a.source, &paths, &count, &err) != 0 ||
        predictor_open(&p, &a, &err) != 0 ||
        output_dir(&a, dir, sizeof(dir), &err) != 0) {
        log_error("%s", err.msg);
        predictor_close(&p);
        for (int i = 0; i < count; i++)
            free(paths[i]);
        free(paths);
        return 1;
    }
    for (int i = 0; i < count; i++) {
        if (predict_one(&p, &a, paths[i], dir, i, count, &err) != 0) {
            log_error("%s", err.msg);
            failed++;
        }
        free(paths[i]);
    }
    free(paths);
    predictor_close(&p);
    log_info("wrote the detections of %d image%s to %s%s", count - failed,
             count - failed == 1 ? "" : "s", dir,
             failed ? "; some images failed, see above" : "");
    return failed ? 1 : 0;
}
