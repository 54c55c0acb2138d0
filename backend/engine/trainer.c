/*
 * Classification training (see trainer.h). Exact resume rests on three
 * rules: the data order of an epoch is a shuffle seeded by (seed, epoch);
 * an image's augmentation is seeded by (seed, epoch, image index); and a
 * checkpoint contains every number the loop carries between batches
 * (weights, EMA, pending gradients, optimizer state, counters, the
 * unfinished epoch's loss sum). A run stopped after batch b of epoch e
 * therefore continues with batch b + 1 exactly as if it had not stopped.
 *
 * Augmentation for classification is a horizontal flip with probability
 * fliplr. NOTE: Ultralytics also applies a random resized crop; this loop
 * does not yet, which suits small images such as Fashion-MNIST's 28x28.
 *
 * Devices (device=cpu or a CUDA device number): batches are decoded and
 * augmented on the host, then copied to the device with their labels.
 * The network, loss, optimizer and EMA run through the device's kernel
 * table (engine/device.h). Only the loss value and, in validation, the
 * logits come back to the host. On the CPU the network reads the host
 * batch in place, without a copy.
 */
#include "engine/trainer.h"
#include "engine/trainer_internal.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "engine/checkpoint.h"
#include "engine/dataset_cls.h"
#include "engine/device.h"
#include "engine/events.h"
#include "engine/net.h"
#include "engine/optim.h"
#include "engine/pretrained.h"
#include "engine/rng.h"
#include "fsutil.h"
#include "log.h"

static volatile sig_atomic_t stop_requested;

void trainer_request_stop(void)
{
    stop_requested = 1;
}


/* ---- Setup -------------------------------------------------------------- */

static int make_run_dir(struct run *r, struct error *err)
{
    struct train_args *a = r->args;
    char path[PATH_MAX + 16];
    struct stat st;

    if (a->resume[0] != '\0') {
        /* A checkpoint lives in RUN/weights/: the run folder is two up. */
        snprintf(path, sizeof(path), "%s", a->resume);
        for (int up = 0; up < 2; up++) {
            char *slash = strrchr(path, '/');
            if (slash == NULL) {
                strcpy(path, ".");
                break;
            }
            *slash = '\0';
        }
        snprintf(r->dir, sizeof(r->dir), "%.*s", PATH_MAX - 65, path);
    } else {
        snprintf(r->dir, sizeof(r->dir), "%s/%s", a->project, a->name);
        for (int n = 2; !a->exist_ok && stat(r->dir, &st) == 0; n++)
            snprintf(r->dir, sizeof(r->dir), "%s/%s%d", a->project, a->name,
                     n);
    }
    snprintf(path, sizeof(path), "%s/weights", r->dir);
    int rc = fs_mkdir_p(path, 0755, err);
    if (rc != 0)
        return rc;
    snprintf(r->last_path, sizeof(r->last_path), "%s/weights/last.ckpt",
             r->dir);
    snprintf(r->best_path, sizeof(r->best_path), "%s/weights/best.ckpt",
             r->dir);
    snprintf(r->csv_path, sizeof(r->csv_path), "%s/results.csv", r->dir);
    return 0;
}

static void join_names(struct run *r)
{
    size_t n = 0;

    r->names[0] = '\0';
    for (int i = 0; i < r->ds->class_count; i++) {
        int w = snprintf(r->names + n, sizeof(r->names) - n, "%s%s",
                         i ? "\n" : "", r->ds->class_names[i]);
        if (w < 0 || (size_t)w >= sizeof(r->names) - n)
            break;
        n += (size_t)w;
    }
}

static int load_data(struct run *r, struct error *err)
{
    struct dataset_cls_options opt = {(size_t)2 << 30, 0};
    int rc;

    if (r->is_detect)
        return det_run_load_data(r, err);
    rc = dataset_cls_scan(r->args->data, &opt, &r->ds, err);
    if (rc != 0)
        return rc;
    if (r->ds->problem_count > 0)
        dataset_cls_log_report(r->ds, 20);
    if (r->ds->splits[DATASET_CLS_TRAIN].count == 0)
        return error_set(err, -EINVAL, "data set '%s' has no training images",
                         r->args->data);
    join_names(r);
    r->ntotal = (int)r->ds->splits[DATASET_CLS_TRAIN].count;
    r->classes = r->ds->class_count;
    return 0;
}

static int allocate_batch(struct run *r, struct error *err)
{
    const struct kernel_ops *ops = r->dev.ops;
    size_t b = (size_t)(2 * r->args->batch); /* validation uses 2x */
    size_t image = 3 * (size_t)r->imgsz * (size_t)r->imgsz;
    size_t logits = b * (size_t)r->spec.classes;

    r->x = malloc(b * image * sizeof(float));
    r->labels = malloc(b * sizeof(int));
    r->labels32 = malloc(b * sizeof(int32_t));
    r->indices = malloc(b * sizeof(size_t));
    r->logits_host = malloc(logits * sizeof(float));
    if (!r->x || !r->labels || !r->labels32 || !r->indices || !r->logits_host)
        return error_set(err, -ENOMEM,
                         "out of memory for a batch of %zu images of %dx%d; "
                         "lower batch or imgsz",
                         b, r->imgsz, r->imgsz);

    r->val_dlogits = ops->alloc(&r->dev.ctx, logits * sizeof(float), err);
    if (r->val_dlogits == NULL)
        return err->code;
    if (ops->host_memory) {
        r->x_dev = r->x;
        r->labels_dev = r->labels32;
        return 0;
    }
    r->x_dev = ops->alloc(&r->dev.ctx, b * image * sizeof(float), err);
    if (r->x_dev == NULL)
        return err->code;
    r->labels_dev = ops->alloc(&r->dev.ctx, b * sizeof(int32_t), err);
    if (r->labels_dev == NULL)
        return err->code;
    return 0;
}

/* Copy the first n images and labels of the host batch to the device;
 * nothing to do when the device computes in host memory. */
static int upload_batch(struct run *r, int n, struct error *err)
{
    const struct kernel_ops *ops = r->dev.ops;
    size_t image = 3 * (size_t)r->imgsz * (size_t)r->imgsz;
    int rc;

    if (ops->host_memory)
        return 0;
    rc = ops->copy_to_device(&r->dev.ctx, r->x_dev, r->x,
                             (size_t)n * image * sizeof(float), err);
    if (rc == 0)
        rc = ops->copy_to_device(&r->dev.ctx, r->labels_dev, r->labels32,
                                 (size_t)n * sizeof(int32_t), err);
    return rc;
}

/* Build the model from args (or the checkpoint) and the data set. */
static int setup(struct run *r, struct checkpoint *ck, struct error *err)
{
    struct train_args *a = r->args;
    int rc;

    if (a->resume[0] != '\0') {
        char resume[ARG_TEXT_MAX];
        snprintf(resume, sizeof(resume), "%s", a->resume);
        rc = ckpt_open(resume, ck, err);
        if (rc != 0)
            return rc;
        /* The checkpoint's arguments win, except where to resume from, the
         * thread count and the events descriptor of this process, and a
         * time limit or device given on this command line: a timed run
         * resumes with a new budget (time counts the run's whole training
         * time), and a run may move between CPU and GPU. */
        struct train_args given = *a;
        *a = ck->args;
        snprintf(a->resume, sizeof(a->resume), "%s", resume);
        a->threads = given.threads;
        a->events_fd = given.events_fd;
        if (given.time_given)
            a->time = given.time;
        if (given.device_given)
            snprintf(a->device, sizeof(a->device), "%s", given.device);
        r->spec = ck->spec;
        r->imgsz = ck->imgsz;
        r->is_detect = strcmp(ck->spec.task, "detect") == 0;
    } else if (strcmp(a->task, "detect") == 0) {
        r->is_detect = 1;
    } else if (a->task[0] == '\0') {
        r->is_detect = det_is_dataset(a->data);
    }

    /* Before the data set scan, which can take a while: a device that
     * cannot be used fails the run at once. */
    rc = device_open(&r->dev, a->device, a->threads, err);
    if (rc != 0)
        return rc;

    rc = load_data(r, err);
    if (rc != 0)
        return rc;
    if (a->resume[0] == '\0') {
        if (a->model[0] == '\0')
            return error_set(err, -EINVAL,
                             "missing model=; give a model YAML such as "
                             "model=yolov8n-cls.yaml");
        rc = model_spec_load(a->model, "", r->classes, &r->spec, err);
        if (rc != 0)
            return rc;
        if (strcmp(r->spec.task, r->is_detect ? "detect" : "classify") != 0)
            return error_set(err, -EINVAL,
                             "model '%s' is a %s model but data '%s' is a "
                             "%s data set; pick a %s model such as %s",
                             a->model, r->spec.task, a->data,
                             r->is_detect ? "detection" : "classification",
                             r->is_detect ? "detection" : "classification",
                             r->is_detect ? "yolov8n.yaml"
                                          : "yolov8n-cls.yaml");
        /* Ultralytics' defaults: 640 for detection, 224 for
         * classification. */
        if (a->imgsz > 0)
            r->imgsz = a->imgsz;
        else if (r->is_detect)
            r->imgsz = 640;
        else
            r->imgsz = 224;
        if (r->is_detect && r->imgsz % 32 != 0) {
            int rounded = (r->imgsz + 31) / 32 * 32;
            log_warn("imgsz=%d is not a multiple of the largest stride 32; "
                     "using %d",
                     r->imgsz, rounded);
            r->imgsz = rounded;
        }
    } else if (r->spec.classes != r->classes) {
        return error_set(err, -EINVAL,
                         "the data set now has %d classes but the "
                         "checkpoint was trained on %d; resume with the "
                         "same data set",
                         r->classes, r->spec.classes);
    } else if (ck->state.train_images > 0 &&
               ck->state.train_images != r->ntotal) {
        /* Files deleted or damaged since the start would change the
         * epoch's order and size under the checkpoint's position. */
        return error_set(err, -EINVAL,
                         "the data set '%s' now has %d usable training "
                         "images but the checkpoint was trained on %d; "
                         "restore the data set, or start a new training",
                         a->data, r->ntotal, ck->state.train_images);
    }

    rc = net_build_on(&r->net, &r->spec, r->imgsz, r->imgsz, 2 * a->batch,
                      (uint64_t)a->seed, &r->dev, err);
    if (rc != 0)
        return rc;

    r->ntrain = (int)round(r->ntotal * a->fraction);
    if (r->ntrain < 1)
        r->ntrain = 1;
    r->batches = (r->ntrain + a->batch - 1) / a->batch;
    r->order = malloc((size_t)r->ntotal * sizeof(int32_t));
    if (r->order == NULL)
        return error_set(err, -ENOMEM, "out of memory");

    if (a->resume[0] != '\0') {
        rc = ckpt_load_tensors(ck, &r->net, err);
        if (rc != 0)
            return rc;
        r->st = ck->state;
        r->opt = ck->opt;
    } else {
        /* A resume takes every tensor from its own checkpoint, so
         * pretrained=, which the checkpoint's arguments keep, applies
         * only here, to a run that starts at epoch 0. */
        if (a->pretrained[0] != '\0') {
            struct pretrained_result copied;
            rc = pretrained_load(a->pretrained, &r->net, r->spec.task,
                                 &copied, err);
            if (rc != 0)
                return rc;
        }
        rc = optim_init(&r->opt, a, r->ntrain, r->spec.classes, r->batches,
                        err);
        if (rc != 0)
            return rc;
        r->st.best_fitness = -1;
        r->st.train_images = r->ntotal;
    }
    rc = make_run_dir(r, err);
    if (rc == 0)
        rc = allocate_batch(r, err);
    if (rc == 0 && r->is_detect)
        rc = det_run_allocate(r, err);
    return rc;
}

/* ---- Data --------------------------------------------------------------- */

/* The first ntrain of a (seed, epoch)-seeded shuffle of all samples. */
static void epoch_order(struct run *r, int epoch)
{
    size_t total = (size_t)r->ntotal;
    struct rng g;

    for (size_t i = 0; i < total; i++)
        r->order[i] = (int32_t)i;
    rng_for(&g, (uint64_t)r->args->seed, 0x5eed, (uint64_t)epoch);
    rng_shuffle(&g, r->order, (int)total);
}

static void flip_image(float *chw, int c, int size)
{
    for (int ch = 0; ch < c; ch++) {
        for (int y = 0; y < size; y++) {
            float *row = chw + ((size_t)ch * size + y) * size;
            for (int x = 0; x < size / 2; x++) {
                float t = row[x];
                row[x] = row[size - 1 - x];
                row[size - 1 - x] = t;
            }
        }
    }
}

/* Load training batch b of epoch into r->x; returns the image count. */
static int load_train_batch(struct run *r, int epoch, int b,
                            struct error *err)
{
    int start = b * r->args->batch;
    int count = r->ntrain - start < r->args->batch ? r->ntrain - start
                                                   : r->args->batch;
    size_t loaded = 0;
    size_t image = 3 * (size_t)r->imgsz * (size_t)r->imgsz;

    for (int i = 0; i < count; i++)
        r->indices[i] = (size_t)r->order[start + i];
    if (dataset_cls_load_batch(r->ds, DATASET_CLS_TRAIN, r->indices,
                               (size_t)count, r->imgsz, r->x, r->labels,
                               &loaded, err) != 0)
        return -1;

    /* Augmentation seeded by (seed, epoch, position in the epoch): the
     * same batch after a resume loads the same images in the same order,
     * so it draws the same numbers. */
    for (size_t k = 0; k < loaded; k++) {
        struct rng g;
        rng_for(&g, (uint64_t)r->args->seed, (uint64_t)epoch + 1,
                (uint64_t)start + k);
        if (rng_uniform(&g) < r->args->fliplr)
            flip_image(r->x + k * image, 3, r->imgsz);
    }
    for (size_t i = 0; i < loaded; i++)
        r->labels32[i] = r->labels[i];
    return (int)loaded;
}

/* ---- Validation --------------------------------------------------------- */

static int validate(struct run *r, struct val_result *out, struct error *err)
{
    struct dataset_cls_split_set *val;
    const struct kernel_ops *ops = r->dev.ops;
    int bsz = 2 * r->args->batch, classes = r->spec.classes;
    double loss = 0;
    long correct1 = 0, correct5 = 0, seen = 0;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (r->is_detect)
        return det_run_validate(r, out, err);
    val = &r->ds->splits[DATASET_CLS_VAL];
    if (val->count == 0)
        return 0;

    net_swap_ema(&r->net);
    for (size_t start = 0; start < val->count; start += (size_t)bsz) {
        size_t count = val->count - start < (size_t)bsz ? val->count - start
                                                        : (size_t)bsz;
        size_t loaded = 0;
        for (size_t i = 0; i < count; i++)
            r->indices[i] = start + i;
        rc = dataset_cls_load_batch(r->ds, DATASET_CLS_VAL, r->indices, count,
                                    r->imgsz, r->x, r->labels, &loaded, err);
        if (rc != 0)
            break;
        if (loaded == 0)
            continue;
        for (size_t i = 0; i < loaded; i++)
            r->labels32[i] = r->labels[i];
        rc = upload_batch(r, (int)loaded, err);
        if (rc != 0)
            break;
        net_forward(&r->net, r->x_dev, (int)loaded, 0);
        const float *out_dev = r->net.layers[r->net.nlayers - 1].out;
        loss += ops->softmax_xent_forward_backward(
                    &r->dev.ctx, (int)loaded, classes, out_dev, r->labels_dev,
                    1.0f, NULL, r->val_dlogits) *
                (double)loaded;
        rc = net_array_to_host(&r->net, r->logits_host, out_dev,
                               loaded * (size_t)classes, err);
        if (rc == 0)
            rc = net_check(&r->net, err);
        if (rc != 0)
            break;

        const float *logits = r->logits_host;
        for (size_t i = 0; i < loaded; i++) {
            const float *row = logits + i * (size_t)classes;
            float mine = row[r->labels[i]];
            int higher = 0;
            /* Rank of the true class; ties count against it. */
            for (int c = 0; c < classes; c++)
                if (c != r->labels[i] && row[c] >= mine)
                    higher++;
            correct1 += higher < 1;
            correct5 += higher < 5;
        }
        seen += (long)loaded;
    }
    net_swap_ema(&r->net);
    if (rc != 0)
        return rc;

    if (seen > 0) {
        out->top1 = (double)correct1 / (double)seen;
        out->top5 = (double)correct5 / (double)seen;
        out->loss = loss / (double)seen;
    }
    out->fitness = (out->top1 + out->top5) / 2.0;
    out->images = (int)seen;
    return 0;
}

/* ---- Results and checkpoints --------------------------------------------- */

static const char cls_csv_header[] = "epoch,train/loss,metrics/accuracy_top1,"
                                     "metrics/accuracy_top5,val/loss,lr/pg0,"
                                     "lr/pg1,lr/pg2\n";

/* Keep the header and the rows of epochs <= keep, so that a run resumed
 * after a crash between a row and its checkpoint writes no row twice. */
static int trim_results(struct run *r, int keep, struct error *err)
{
    const char *csv_header = r->is_detect ? det_csv_header : cls_csv_header;
    char *data = NULL, *out;
    size_t len = 0, n = 0;

    if (access(r->csv_path, F_OK) != 0 || keep == 0)
        return fs_write_atomic(r->csv_path, csv_header, strlen(csv_header),
                               0644, err);
    int rc = fs_read_file(r->csv_path, (size_t)64 << 20, &data, &len, err);
    if (rc != 0)
        return rc;
    out = malloc(len + strlen(csv_header) + 1);
    if (out == NULL) {
        free(data);
        return error_set(err, -ENOMEM, "out of memory");
    }
    memcpy(out, csv_header, strlen(csv_header));
    n = strlen(csv_header);
    for (char *line = data; *line != '\0';) {
        char *nl = strchr(line, '\n');
        size_t l = nl ? (size_t)(nl - line) + 1 : strlen(line);
        int epoch = atoi(line);
        if (epoch >= 1 && epoch <= keep) {
            memcpy(out + n, line, l);
            n += l;
        }
        line += l;
    }
    rc = fs_write_atomic(r->csv_path, out, n, 0644, err);
    free(out);
    free(data);
    return rc;
}

static int append_result(struct run *r, int epoch, double train_loss,
                         const struct val_result *v, struct error *err)
{
    FILE *f = fopen(r->csv_path, "a");

    if (f == NULL)
        return error_errno(err, errno, "cannot append to '%s'", r->csv_path);
    if (r->is_detect)
        det_run_append_result(r, f, epoch, v);
    else
        fprintf(f, "%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", epoch,
                train_loss, v->top1, v->top5, v->loss, r->opt.lr[0],
                r->opt.lr[1], r->opt.lr[2]);
    if (fclose(f) != 0)
        return error_errno(err, errno, "cannot write '%s'", r->csv_path);
    return 0;
}

static int save(struct run *r, const char *path, struct error *err)
{
    int rc = ckpt_write(path, &r->net, &r->spec, r->args, &r->st, &r->opt,
                        r->imgsz, r->names, err);
    if (rc == 0) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "path", path);
        cJSON_AddNumberToObject(f, "epoch", r->st.epoch);
        cJSON_AddNumberToObject(f, "batch", r->st.batch);
        events_emit("checkpoint", f);
    }
    return rc;
}

/* ---- Progress ------------------------------------------------------------ */

static void print_progress(struct run *r, int epoch, int b, double loss,
                           double rate, int final)
{
    static int tty = -1;
    int width = 24, done;

    if (tty < 0)
        tty = isatty(1);
    if (!tty && !final)
        return;
    done = (int)((double)(b + 1) / r->batches * width);
    double eta = rate > 0 ? (double)(r->batches - b - 1) * r->args->batch /
                                rate
                          : 0;
    printf("\r%5d/%-5d loss %.4f  %6.0f img/s  [", epoch + 1,
           r->args->epochs, loss, rate);
    for (int i = 0; i < width; i++)
        putchar(i < done ? '=' : ' ');
    printf("] %d/%d  ETA %ds ", b + 1, r->batches, (int)eta);
    if (final)
        putchar('\n');
    fflush(stdout);
}

static void emit_batch(struct run *r, int epoch, int b, double loss,
                       double rate)
{
    cJSON *f = cJSON_CreateObject();

    cJSON_AddNumberToObject(f, "epoch", epoch + 1);
    cJSON_AddNumberToObject(f, "epochs", r->args->epochs);
    cJSON_AddNumberToObject(f, "batch", b + 1);
    cJSON_AddNumberToObject(f, "batches", r->batches);
    cJSON_AddNumberToObject(f, "loss", loss);
    cJSON_AddNumberToObject(f, "images_per_s", rate);
    events_emit("batch", f);
}

static void emit_epoch(struct run *r, int epoch, double seconds,
                       double train_loss, const struct val_result *v)
{
    cJSON *f = cJSON_CreateObject();
    cJSON *m = cJSON_AddObjectToObject(f, "metrics");

    cJSON_AddNumberToObject(f, "epoch", epoch);
    cJSON_AddNumberToObject(f, "epochs", r->args->epochs);
    cJSON_AddNumberToObject(f, "seconds", seconds);
    if (r->is_detect) {
        det_run_add_metrics(r, m, v);
    } else {
        cJSON_AddNumberToObject(m, "train/loss", train_loss);
        cJSON_AddNumberToObject(m, "metrics/accuracy_top1", v->top1);
        cJSON_AddNumberToObject(m, "metrics/accuracy_top5", v->top5);
        cJSON_AddNumberToObject(m, "val/loss", v->loss);
    }
    cJSON_AddNumberToObject(m, "lr/pg0", r->opt.lr[0]);
    cJSON_AddNumberToObject(m, "lr/pg1", r->opt.lr[1]);
    cJSON_AddNumberToObject(m, "lr/pg2", r->opt.lr[2]);
    events_emit("epoch", f);
}

/* ---- The loop ------------------------------------------------------------ */

/* Train one batch; returns its loss, or -1 with err set. */
static double train_batch(struct run *r, int epoch, int b, struct error *err)
{
    if (r->is_detect)
        return det_run_train_batch(r, epoch, b, err);

    int n = load_train_batch(r, epoch, b, err);

    if (n < 0)
        return -1;
    if (n == 0)
        return 0; /* every image of the batch failed to load */
    if (upload_batch(r, n, err) != 0)
        return -1;

    optim_schedule(&r->opt, r->args, r->st.iteration, epoch);
    net_forward(&r->net, r->x_dev, n, 1);
    /* The loss overwrites the logits' gradient, its only consumer. */
    struct layer *last = &r->net.layers[r->net.nlayers - 1];
    float loss = r->dev.ops->softmax_xent_forward_backward(
        &r->dev.ctx, n, r->spec.classes, last->out, r->labels_dev, 1.0f, NULL,
        last->dout);
    net_backward(&r->net);

    if (r->st.iteration - r->st.last_opt_step >= r->opt.accumulate) {
        optim_step(&r->opt, &r->net);
        r->st.last_opt_step = r->st.iteration;
    }
    /* GPU failures of this step, or of the previous one when this one's
     * work is still queued. */
    if (net_check(&r->net, err) != 0)
        return -1;
    return loss;
}

static enum train_outcome run_epochs(struct run *r, struct error *err)
{
    struct train_args *a = r->args;

    for (int epoch = r->st.epoch; epoch < a->epochs; epoch++) {
        int64_t t0 = clock_monotonic_ms(), last_event = 0;
        int first_batch = r->st.batch;
        epoch_order(r, epoch);

        for (int b = r->st.batch; b < r->batches; b++) {
            int64_t tb = clock_monotonic_ms();
            net_zero_activation_grads(&r->net);
            double loss = train_batch(r, epoch, b, err);
            if (loss < 0)
                return TRAIN_FAILED;
            r->st.iteration++;
            r->st.batch = b + 1;
            r->st.loss_sum += loss;
            r->st.loss_count++;
            double batch_seconds = (double)(clock_monotonic_ms() - tb) /
                                   1000.0;
            r->st.train_seconds += batch_seconds;
            r->st.epoch_seconds += batch_seconds;

            double elapsed = (double)(clock_monotonic_ms() - t0) / 1000.0;
            double rate = elapsed > 0 ? (double)(b + 1 - first_batch) *
                                            a->batch / elapsed
                                      : 0;
            double mean = r->st.loss_sum / (double)r->st.loss_count;
            int64_t now = clock_monotonic_ms();
            if (now - last_event >= 250 || b + 1 == r->batches) {
                emit_batch(r, epoch, b, mean, rate);
                print_progress(r, epoch, b, mean, rate, 0);
                last_event = now;
            }

            int out_of_time = a->time > 0 &&
                              r->st.train_seconds >= a->time * 3600.0;
            if ((stop_requested || out_of_time) && b + 1 < r->batches) {
                if (save(r, r->last_path, err) != 0)
                    return TRAIN_FAILED;
                if (isatty(1))
                    putchar('\n');
                return stop_requested ? TRAIN_STOPPED : TRAIN_TIME_LIMIT;
            }
        }

        /* End of epoch: the schedule's rates of this epoch go to the row,
         * then validation with the EMA weights. */
        double train_loss = r->st.loss_count
                                ? r->st.loss_sum / (double)r->st.loss_count
                                : 0;
        struct val_result v;
        int64_t tv = clock_monotonic_ms();
        if (validate(r, &v, err) != 0)
            return TRAIN_FAILED;
        double val_seconds = (double)(clock_monotonic_ms() - tv) / 1000.0;
        r->st.train_seconds += val_seconds;
        r->st.epoch_seconds += val_seconds;
        double epoch_seconds = r->st.epoch_seconds;
        double fitness = v.fitness;

        print_progress(r, epoch, r->batches - 1, train_loss,
                       (double)r->ntrain /
                           ((double)(clock_monotonic_ms() - t0) / 1000.0),
                       1);
        if (r->is_detect)
            printf("%11s P %.4f  R %.4f  mAP50 %.4f  mAP50-95 %.4f  (%d "
                   "images)\n",
                   "", v.precision, v.recall, v.map50, v.map50_95, v.images);
        else
            printf("%11s top1 %.4f  top5 %.4f  val loss %.4f  (%d images)\n",
                   "", v.top1, v.top5, v.loss, v.images);
        fflush(stdout);

        r->st.epoch = epoch + 1;
        r->st.batch = 0;
        r->st.loss_sum = 0;
        memset(r->st.loss_part_sum, 0, sizeof(r->st.loss_part_sum));
        r->st.loss_count = 0;
        r->st.epoch_seconds = 0;
        int improved = fitness > r->st.best_fitness;
        if (improved) {
            r->st.best_fitness = fitness;
            r->st.best_epoch = epoch + 1;
        }
        int patience_out = r->st.epoch - r->st.best_epoch >= a->patience;
        int out_of_time = a->time > 0 &&
                          r->st.train_seconds >= a->time * 3600.0;
        r->st.finished = r->st.epoch >= a->epochs || patience_out;

        if (append_result(r, epoch + 1, train_loss, &v, err) != 0 ||
            save(r, r->last_path, err) != 0 ||
            (improved && save(r, r->best_path, err) != 0))
            return TRAIN_FAILED;
        emit_epoch(r, epoch + 1, epoch_seconds, train_loss, &v);

        if (patience_out) {
            log_info("no improvement for %d epochs (patience=%d); stopping "
                     "early at epoch %d",
                     r->st.epoch - r->st.best_epoch, a->patience,
                     r->st.epoch);
            break;
        }
        if (stop_requested || (out_of_time && !r->st.finished))
            return stop_requested ? TRAIN_STOPPED : TRAIN_TIME_LIMIT;
    }
    return TRAIN_COMPLETED;
}

static void run_free(struct run *r)
{
    net_free(&r->net);
    if (r->dev.ops != NULL) {
        const struct kernel_ops *ops = r->dev.ops;
        if (r->x_dev != r->x)
            ops->release(&r->dev.ctx, r->x_dev);
        if (r->labels_dev != r->labels32)
            ops->release(&r->dev.ctx, r->labels_dev);
        ops->release(&r->dev.ctx, r->val_dlogits);
    }
    device_close(&r->dev);
    if (r->ds != NULL)
        dataset_cls_free(r->ds);
    det_run_free(r);
    free(r->order);
    free(r->x);
    free(r->labels);
    free(r->labels32);
    free(r->indices);
    free(r->logits_host);
}

static const char *outcome_name(enum train_outcome o)
{
    switch (o) {
    case TRAIN_COMPLETED:
        return "completed";
    case TRAIN_STOPPED:
        return "stopped";
    case TRAIN_TIME_LIMIT:
        return "time_limit";
    default:
        return "failed";
    }
}

/* Report a failure before the start event, such as a data set that is
 * gone or unreadable, so that the backend can show its message. */
static void emit_setup_error(const struct error *err)
{
    cJSON *f = cJSON_CreateObject();

    cJSON_AddStringToObject(f, "reason", "failed");
    cJSON_AddNumberToObject(f, "epoch", 0);
    cJSON_AddNumberToObject(f, "best_epoch", 0);
    cJSON_AddNumberToObject(f, "best_fitness", 0);
    cJSON_AddStringToObject(f, "message", err->msg);
    events_emit("error", f);
}

enum train_outcome trainer_run(struct train_args *args, struct error *err)
{
    struct run r;
    struct checkpoint ck;
    enum train_outcome outcome;

    memset(&r, 0, sizeof(r));
    memset(&ck, 0, sizeof(ck));
    r.args = args;
    events_init(args->events_fd);

    if (setup(&r, &ck, err) != 0) {
        ckpt_close(&ck);
        run_free(&r);
        emit_setup_error(err);
        return TRAIN_FAILED;
    }
    ckpt_close(&ck);
    if (trim_results(&r, r.st.epoch, err) != 0) {
        run_free(&r);
        emit_setup_error(err);
        return TRAIN_FAILED;
    }

    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "task", r.spec.task);
    cJSON_AddStringToObject(f, "device", args->device);
    cJSON_AddNumberToObject(f, "epochs", args->epochs);
    cJSON_AddNumberToObject(f, "start_epoch", r.st.epoch + 1);
    cJSON_AddNumberToObject(f, "start_batch", r.st.batch);
    cJSON_AddNumberToObject(f, "batches", r.batches);
    cJSON_AddNumberToObject(f, "images", r.ntrain);
    cJSON_AddNumberToObject(f, "classes", r.spec.classes);
    cJSON_AddNumberToObject(f, "parameters",
                            (double)net_param_count(&r.net));
    cJSON_AddStringToObject(f, "run_dir", r.dir);
    cJSON_AddBoolToObject(f, "resumed", args->resume[0] != '\0');
    events_emit("start", f);
    log_info("training %s on %s: %d classes, %d images, %d batches of %d, "
             "imgsz %d, %zu parameters, run folder %s",
             r.spec.task, r.dev.name, r.spec.classes, r.ntrain, r.batches,
             args->batch, r.imgsz, net_param_count(&r.net), r.dir);

    outcome = r.st.finished ? TRAIN_COMPLETED : run_epochs(&r, err);

    f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "reason", outcome_name(outcome));
    cJSON_AddNumberToObject(f, "epoch", r.st.epoch);
    cJSON_AddNumberToObject(f, "best_epoch", r.st.best_epoch);
    cJSON_AddNumberToObject(f, "best_fitness", r.st.best_fitness);
    if (outcome == TRAIN_FAILED)
        cJSON_AddStringToObject(f, "message", err->msg);
    events_emit(outcome == TRAIN_FAILED ? "error" : "done", f);
    run_free(&r);
    return outcome;
}
