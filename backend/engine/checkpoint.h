/*
 * Checkpoints: everything a run needs to continue exactly where it
 * stopped. The format (version 1, little-endian) is
 *
 *   8 bytes   magic "TYCKPT\r\n"
 *   u32       format version
 *   u32       header length H
 *   H bytes   JSON header: training state, arguments, the model's layer
 *             list, and the name and size of every tensor in file order
 *   tensors   float32 arrays: for each parameter its weights, EMA,
 *             pending gradient, and optimizer state (two arrays); for each
 *             buffer its values and EMA
 *   u32       CRC-32 (zlib) of every byte before it
 *
 * Files are written to "PATH.tmp.PID", fsynced, renamed over PATH, and the
 * folder fsynced, so a crash leaves the previous checkpoint intact. A
 * reader checks the magic, version, sizes and CRC before using anything.
 */
#ifndef TRAINYARD_CHECKPOINT_H
#define TRAINYARD_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/args.h"
#include "engine/net.h"
#include "engine/optim.h"

#define CKPT_VERSION 1

/* Training progress beyond the tensors. */
struct train_state {
    int epoch;           /* epochs completed */
    int batch;           /* next batch of epoch `epoch`; 0 at a boundary */
    int64_t iteration;   /* overall batch counter (ni) */
    int64_t last_opt_step;
    double best_fitness; /* -1 before the first validation */
    int best_epoch;      /* epoch of best_fitness, counted from 1 */
    double train_seconds; /* training time so far, without initialization */
    /* Training time of the unfinished epoch so far, across stops and
     * resumes, so that the epoch event reports (and the backend charges)
     * the whole epoch once it completes. */
    double epoch_seconds;
    double loss_sum;     /* of the unfinished epoch */
    /* Detection: the box, class and DFL parts of loss_sum. Absent from
     * classification checkpoints, where they read as 0. */
    double loss_part_sum[3];
    int64_t loss_count;
    int finished;        /* 1 when the run completed */
    /* Usable training images of the data set when the run started. It
     * is 0 in checkpoints written before the field existed. */
    int train_images;
};

struct checkpoint {
    struct model_spec spec;
    struct train_args args;
    struct train_state state;
    struct optimizer opt;
    int imgsz;
    char class_names[4096]; /* newline-separated */
    /* Private: the file bytes, kept for ckpt_load_tensors. */
    unsigned char *data;
    size_t size;
    size_t tensors_at;
};

/* Write the run's state durably to path (see the file comment). */
int ckpt_write(const char *path, const struct net *net,
               const struct model_spec *spec, const struct train_args *args,
               const struct train_state *state, const struct optimizer *opt,
               int imgsz, const char *class_names, struct error *err);

/* Read and verify path; fills everything but the tensors. */
int ckpt_open(const char *path, struct checkpoint *ck, struct error *err);

/* Copy the tensors into net, built from ck->spec; names and sizes must
 * match. */
int ckpt_load_tensors(struct checkpoint *ck, struct net *net,
                      struct error *err);

void ckpt_close(struct checkpoint *ck);

#endif
