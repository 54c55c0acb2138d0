/*
 * State of one training run, shared by the classification loop
 * (trainer.c) and its detection parts (trainer_det.c). The loop itself,
 * checkpoints, results.csv and events live in trainer.c. When the model
 * ends in Detect, the functions below replace its data loading, loss and
 * validation.
 */
#ifndef TRAINYARD_TRAINER_INTERNAL_H
#define TRAINYARD_TRAINER_INTERNAL_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/args.h"
#include "engine/checkpoint.h"
#include "engine/dataset_cls.h"
#include "engine/device.h"
#include "engine/net.h"
#include "engine/optim.h"
#include "error.h"

struct det_run;

struct run {
    struct train_args *args;
    struct dataset_cls *ds;     /* classification data, or NULL */
    struct det_run *det;        /* detection state, or NULL */
    int is_detect;              /* the model ends in Detect */
    int classes;                /* of the data set */
    int ntotal;                 /* training images of the data set */
    struct model_spec spec;
    struct net net;
    struct device dev;
    struct optimizer opt;
    struct train_state st;
    int imgsz;
    char dir[PATH_MAX - 64];
    char last_path[PATH_MAX + 32], best_path[PATH_MAX + 32];
    char csv_path[PATH_MAX + 32];
    char names[4096];
    int32_t *order;     /* shuffled training indices of the epoch */
    int ntrain;
    int batches;        /* per epoch */
    float *x;           /* [batch, 3, imgsz, imgsz] */
    int *labels;
    int32_t *labels32;
    size_t *indices;
    /* Device copies of x and labels32 (the host arrays themselves when
     * the device computes in host memory). */
    float *x_dev;
    int32_t *labels_dev;
    float *val_dlogits; /* device: the loss gradient validation discards */
    float *logits_host; /* [2 * batch, classes]: validation's logits */
};

/* Validation scores of one epoch: top-1/top-5 for classification,
 * precision, recall and mAP for detection, and the validation loss. */
struct val_result {
    double top1, top5, loss;
    double precision, recall, map50, map50_95;
    double loss_part[3];  /* detection: validation box, cls, dfl */
    double train_part[3]; /* detection: the epoch's training means */
    double fitness;
    int images;
};

/* Return 1 when path is a detection data set, that is when
 * dataset_det_scan finds a data.yaml for it. */
int det_is_dataset(const char *path);

/* Scan the detection data set of r->args->data into r->det and fill
 * r->names, r->classes and r->ntotal (the training images). */
int det_run_load_data(struct run *r, struct error *err);

/* Allocate the batch buffers once the network is built. */
int det_run_allocate(struct run *r, struct error *err);

/* Train batch b of epoch; returns the loss (box + cls + dfl, after the
 * gains) with its parts added to r->st.loss_part_sum, 0 when no image
 * loaded, or -1 with err set. */
double det_run_train_batch(struct run *r, int epoch, int b,
                           struct error *err);

/* Validate with the EMA weights: losses, precision, recall, mAP50 and
 * mAP50-95 over the validation split, and fitness 0.1 mAP50 + 0.9
 * mAP50-95. */
int det_run_validate(struct run *r, struct val_result *out,
                     struct error *err);

/* results.csv of a detection run, with Ultralytics' column names. */
extern const char det_csv_header[];
int det_run_append_result(struct run *r, FILE *f, int epoch,
                          const struct val_result *v);

/* Add the epoch's metrics, under the results.csv names, to an event. */
struct cJSON;
void det_run_add_metrics(struct run *r, struct cJSON *metrics,
                         const struct val_result *v);

void det_run_free(struct run *r);

#endif
