/*
 * The detection parts of the training loop (trainer_internal.h): data set
 * scan, batch loading with augmentation, the YOLOv8 loss, and validation
 * with NMS and mAP. trainer.c runs the loop, the optimizer, checkpoints,
 * results.csv and events for both tasks.
 *
 * Exact resume rests on the same rules as classification: the epoch's
 * order is a (seed, epoch) shuffle, and det_load_train draws every random
 * number of a sample (mosaic partners included) from (seed, epoch,
 * position in the epoch). Mosaic is off for the last close_mosaic epochs,
 * decided by the epoch number alone, so a run resumed past that point
 * keeps it off.
 *
 * Ground-truth boxes and detections stay in host memory on every device:
 * the loss and the decoder take them there and copy what they need.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "detect.h"
#include "engine/dataset_det.h"
#include "engine/det_augment.h"
#include "engine/det_metrics.h"
#include "engine/trainer_internal.h"
#include "log.h"

/* Boxes kept for one image before NMS output is cut: Ultralytics'
 * max_det. */
#define DET_MAX_DET 300

struct det_run {
    struct dataset_det *ds;
    struct det_aug_params aug;
    struct det_loss_config loss;
    struct det_nms_config nms;
    const struct det_layout *layout;
    struct det_gt *gt;      /* the batch's boxes, sorted by image */
    int gt_cap;
    int gt_per_image;       /* capacity each loaded sample may use */
    struct det_box *boxes;  /* [2 * batch, DET_MAX_DET] after NMS */
    int *counts;
};

const char det_csv_header[] =
    "epoch,train/box_loss,train/cls_loss,train/dfl_loss,"
    "metrics/precision(B),metrics/recall(B),metrics/mAP50(B),"
    "metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,"
    "lr/pg1,lr/pg2\n";

int det_is_dataset(const char *path)
{
    struct error err = {0};
    char *yaml = NULL;
    int found = dataset_det_find_yaml(path, &yaml, &err) == 0;

    free(yaml);
    return found;
}

int det_run_load_data(struct run *r, struct error *err)
{
    struct dataset_det_options opt = {(size_t)2 << 30, 0};
    struct det_run *d = calloc(1, sizeof(*d));
    size_t n = 0;
    int rc;

    if (d == NULL)
        return error_set(err, -ENOMEM, "out of memory");
    r->det = d;
    rc = dataset_det_scan(r->args->data, &opt, &d->ds, err);
    if (rc != 0)
        return rc;
    if (d->ds->problem_count > 0)
        dataset_det_log_report(d->ds, 20);
    if (d->ds->splits[DATASET_DET_TRAIN].count == 0)
        return error_set(err, -EINVAL,
                         "data set '%s' has no training images; check the "
                         "train: entry of its data.yaml",
                         r->args->data);

    r->names[0] = '\0';
    for (int i = 0; i < d->ds->class_count; i++) {
        int w = snprintf(r->names + n, sizeof(r->names) - n, "%s%s",
                         i ? "\n" : "", d->ds->class_names[i]);
        if (w < 0 || (size_t)w >= sizeof(r->names) - n)
            break;
        n += (size_t)w;
    }
    r->classes = d->ds->class_count;
    r->ntotal = (int)d->ds->splits[DATASET_DET_TRAIN].count;
    return 0;
}

int det_run_allocate(struct run *r, struct error *err)
{
    struct det_run *d = r->det;
    const struct train_args *a = r->args;
    const struct layer *last = &r->net.layers[r->net.nlayers - 1];
    int images = 2 * a->batch;

    if (last->kind != LAYER_DETECT)
        return error_set(err, -EINVAL,
                         "the model does not end in Detect; use a "
                         "detection model such as yolov8n.yaml");
    d->layout = &last->u.detect->layout;

    d->aug.hsv_h = a->hsv_h;
    d->aug.hsv_s = a->hsv_s;
    d->aug.hsv_v = a->hsv_v;
    d->aug.translate = a->translate;
    d->aug.scale = a->scale;
    d->aug.fliplr = a->fliplr;
    d->aug.mosaic = a->mosaic;

    d->loss = det_loss_defaults();
    d->loss.box = (float)a->box;
    d->loss.cls = (float)a->cls;
    d->loss.dfl = (float)a->dfl;

    /* Validation settings of Ultralytics: every score over 0.001, one
     * entry per class over it, at most 300 boxes per image. */
    d->nms.conf = 0.001f;
    d->nms.iou = 0.7f;
    d->nms.max_det = DET_MAX_DET;
    d->nms.max_nms = 30000;
    d->nms.multi_label = 1;

    /* A mosaic sample holds the boxes of up to four images. */
    d->gt_per_image = 4 * (d->ds->max_boxes > 0 ? d->ds->max_boxes : 1) + 16;
    d->gt_cap = images * d->gt_per_image;
    d->gt = calloc((size_t)d->gt_cap, sizeof(*d->gt));
    d->boxes = calloc((size_t)images * DET_MAX_DET, sizeof(*d->boxes));
    d->counts = calloc((size_t)images, sizeof(*d->counts));
    if (d->gt == NULL || d->boxes == NULL || d->counts == NULL)
        return error_set(err, -ENOMEM,
                         "out of memory for the boxes of a batch of %d "
                         "images; lower batch",
                         images);
    return 0;
}

/* Copy the first n images of the host batch to the device. */
static int upload_images(struct run *r, int n, struct error *err)
{
    size_t image = 3 * (size_t)r->imgsz * (size_t)r->imgsz;

    if (r->dev.ops->host_memory)
        return 0;
    return r->dev.ops->copy_to_device(&r->dev.ctx, r->x_dev, r->x,
                                      (size_t)n * image * sizeof(float), err);
}

double det_run_train_batch(struct run *r, int epoch, int b,
                           struct error *err)
{
    struct det_run *d = r->det;
    const struct train_args *a = r->args;
    int start = b * a->batch;
    int count = r->ntrain - start < a->batch ? r->ntrain - start : a->batch;
    size_t image = 3 * (size_t)r->imgsz * (size_t)r->imgsz;
    struct det_aug_params aug = d->aug;
    struct det_loss_result res;
    int ngt = 0;

    if (epoch >= a->epochs - a->close_mosaic)
        aug.mosaic = 0;
    for (int k = 0; k < count; k++) {
        int got = 0;
        size_t index = (size_t)r->order[start + k];
        int room = d->gt_cap - ngt;
        if (det_load_train(d->ds, &aug, (uint64_t)a->seed, epoch,
                           (size_t)start + (size_t)k, index, r->imgsz,
                           r->x + (size_t)k * image, d->gt + ngt, room, &got,
                           err) != 0)
            return -1;
        for (int j = 0; j < got; j++)
            d->gt[ngt + j].image = k;
        ngt += got;
    }
    if (count <= 0)
        return 0;
    if (upload_images(r, count, err) != 0)
        return -1;

    optim_schedule(&r->opt, a, r->st.iteration, epoch);
    net_forward(&r->net, r->x_dev, count, 1);
    struct layer *last = &r->net.layers[r->net.nlayers - 1];
    int rc = r->dev.ops->det_loss_forward_backward(
        &r->dev.ctx, d->layout, &d->loss, count, last->out, d->gt, ngt, 1.0f,
        last->dout, &res);
    if (rc != 0)
        return error_set(err, rc, "detection loss failed (%d boxes in a "
                                  "batch of %d images)",
                         ngt, count);
    if (!isfinite(res.total))
        return error_set(err, -ERANGE,
                         "the loss is not finite at epoch %d batch %d (box "
                         "%g, cls %g, dfl %g); lower lr0 or check the "
                         "labels",
                         epoch + 1, b + 1, res.box, res.cls, res.dfl);
    net_backward(&r->net);

    if (r->st.iteration - r->st.last_opt_step >= r->opt.accumulate) {
        optim_step(&r->opt, &r->net);
        r->st.last_opt_step = r->st.iteration;
    }
    if (net_check(&r->net, err) != 0)
        return -1;
    r->st.loss_part_sum[0] += res.box;
    r->st.loss_part_sum[1] += res.cls;
    r->st.loss_part_sum[2] += res.dfl;
    return res.box + res.cls + res.dfl;
}

/* Forward, loss and NMS of n loaded validation images; their boxes go to
 * the metrics. */
static int validate_batch(struct run *r, struct det_metrics *m, int n,
                          int ngt, double *parts, struct error *err)
{
    struct det_run *d = r->det;
    struct det_loss_result res;
    const struct kernel_ops *ops = r->dev.ops;
    int rc;

    rc = upload_images(r, n, err);
    if (rc != 0)
        return rc;
    net_forward(&r->net, r->x_dev, n, 0);
    const float *pred = r->net.layers[r->net.nlayers - 1].out;
    rc = ops->det_loss_forward_backward(&r->dev.ctx, d->layout, &d->loss, n,
                                        pred, d->gt, ngt, 1.0f, NULL, &res);
    if (rc != 0)
        return error_set(err, rc, "validation loss failed");
    parts[0] += res.box;
    parts[1] += res.cls;
    parts[2] += res.dfl;
    rc = ops->det_decode_nms(&r->dev.ctx, d->layout, &d->nms, n, pred,
                             d->boxes, d->counts);
    if (rc != 0)
        return error_set(err, rc, "decoding the detections failed");
    rc = net_check(&r->net, err);
    if (rc != 0)
        return rc;

    int first = 0;
    for (int i = 0; i < n; i++) {
        int last = first;
        while (last < ngt && d->gt[last].image == i)
            last++;
        rc = det_metrics_add(m, d->boxes + (size_t)i * DET_MAX_DET,
                             d->counts[i], d->gt + first, last - first, err);
        if (rc != 0)
            return rc;
        first = last;
    }
    return 0;
}

/* Mean of each loss part over the epoch's batches so far. */
static void train_parts(const struct run *r, double *parts)
{
    for (int i = 0; i < 3; i++)
        parts[i] = r->st.loss_count
                       ? r->st.loss_part_sum[i] / (double)r->st.loss_count
                       : 0;
}

int det_run_validate(struct run *r, struct val_result *out,
                     struct error *err)
{
    struct det_run *d = r->det;
    size_t total = d->ds->splits[DATASET_DET_VAL].count;
    size_t image = 3 * (size_t)r->imgsz * (size_t)r->imgsz;
    int bsz = 2 * r->args->batch, batches = 0;
    double parts[3] = {0, 0, 0};
    struct det_metrics *m = NULL;
    struct det_scores scores;
    int rc;

    /* The epoch's training means, read before the loop clears them. */
    train_parts(r, out->train_part);
    if (total == 0)
        return 0;
    rc = det_metrics_create(r->classes, &m, err);
    if (rc != 0)
        return rc;

    net_swap_ema(&r->net);
    for (size_t start = 0; start < total && rc == 0; start += (size_t)bsz) {
        int n = 0, ngt = 0;
        for (size_t i = start; i < total && n < bsz; i++) {
            struct letterbox lb;
            int got = 0;
            int room = d->gt_cap - ngt;
            rc = det_load_val(d->ds, DATASET_DET_VAL, i, r->imgsz,
                              r->x + (size_t)n * image, d->gt + ngt, room,
                              &got, &lb, err);
            if (rc != 0)
                break;
            for (int j = 0; j < got; j++)
                d->gt[ngt + j].image = n;
            ngt += got;
            n++;
        }
        if (rc == 0 && n > 0) {
            rc = validate_batch(r, m, n, ngt, parts, err);
            batches++;
        }
    }
    net_swap_ema(&r->net);
    if (rc == 0)
        rc = det_metrics_compute(m, &scores, NULL, NULL, err);
    det_metrics_free(m);
    if (rc != 0)
        return rc;

    out->precision = scores.precision;
    out->recall = scores.recall;
    out->map50 = scores.map50;
    out->map50_95 = scores.map50_95;
    out->fitness = scores.fitness;
    out->images = scores.images;
    for (int i = 0; i < 3; i++)
        out->loss_part[i] = batches ? parts[i] / batches : 0;
    out->loss = out->loss_part[0] + out->loss_part[1] + out->loss_part[2];
    return 0;
}

int det_run_append_result(struct run *r, FILE *f, int epoch,
                          const struct val_result *v)
{
    return fprintf(f,
                   "%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,"
                   "%.6g,%.6g,%.6g\n",
                   epoch, v->train_part[0], v->train_part[1],
                   v->train_part[2], v->precision, v->recall, v->map50,
                   v->map50_95, v->loss_part[0], v->loss_part[1],
                   v->loss_part[2], r->opt.lr[0], r->opt.lr[1], r->opt.lr[2]);
}

void det_run_add_metrics(struct run *r, struct cJSON *m,
                         const struct val_result *v)
{
    (void)r;
    cJSON_AddNumberToObject(m, "train/box_loss", v->train_part[0]);
    cJSON_AddNumberToObject(m, "train/cls_loss", v->train_part[1]);
    cJSON_AddNumberToObject(m, "train/dfl_loss", v->train_part[2]);
    cJSON_AddNumberToObject(m, "metrics/precision(B)", v->precision);
    cJSON_AddNumberToObject(m, "metrics/recall(B)", v->recall);
    cJSON_AddNumberToObject(m, "metrics/mAP50(B)", v->map50);
    cJSON_AddNumberToObject(m, "metrics/mAP50-95(B)", v->map50_95);
    cJSON_AddNumberToObject(m, "val/box_loss", v->loss_part[0]);
    cJSON_AddNumberToObject(m, "val/cls_loss", v->loss_part[1]);
    cJSON_AddNumberToObject(m, "val/dfl_loss", v->loss_part[2]);
}

void det_run_free(struct run *r)
{
    struct det_run *d = r->det;

    if (d == NULL)
        return;
    if (d->ds != NULL)
        dataset_det_free(d->ds);
    free(d->gt);
    free(d->boxes);
    free(d->counts);
    free(d);
    r->det = NULL;
}
