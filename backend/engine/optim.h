/*
 * Optimizer, learning-rate schedule, warm-up and EMA, as Ultralytics'
 * trainer applies them:
 *
 * - Three parameter groups: pg0 biases, pg1 conv and linear weights (with
 *   weight decay, scaled by batch * accumulate / nbs), pg2 batch-norm
 *   weights. results.csv reports their learning rates as lr/pg0..pg2.
 * - optimizer=auto picks SGD (lr 0.01, momentum 0.9) when the run has more
 *   than 10,000 iterations, else AdamW with lr = 0.002 * 5 / (4 + nc)
 *   rounded to 6 places and no bias warm-up. SGD uses Nesterov momentum.
 * - The epoch factor lf(e) is linear, (1 - e/E)(1 - lrf) + lrf, or cosine
 *   from 1 to lrf; the learning rate of every group is lr0 * lf(epoch).
 * - Warm-up over max(round(warmup_epochs * batches per epoch), 100)
 *   iterations: the bias rate falls from warmup_bias_lr, the others rise
 *   from 0, SGD momentum rises from warmup_momentum, and the accumulation
 *   count rises from 1 to nbs / batch.
 * - Gradients are clipped to a total norm of 10 before each step, and the
 *   EMA decay is 0.9999 * (1 - exp(-updates / 2000)).
 */
#ifndef TRAINYARD_OPTIM_H
#define TRAINYARD_OPTIM_H

#include <stdint.h>

#include "engine/args.h"
#include "engine/net.h"

enum optimizer_kind { OPTIMIZER_SGD, OPTIMIZER_ADAMW };

struct optimizer {
    enum optimizer_kind kind;
    double lr0;          /* initial learning rate after auto */
    double momentum;     /* SGD momentum, or AdamW beta1 */
    double weight_decay; /* scaled */
    double warmup_bias_lr;
    double lr[3];        /* current rate of pg0, pg1, pg2 */
    double cur_momentum;
    int accumulate;      /* batches per optimizer step */
    int nominal_accumulate;
    int64_t warmup_iters; /* -1 without warm-up */
    int64_t steps;        /* optimizer steps taken (AdamW's t) */
    int64_t ema_updates;
};

/* Choose the optimizer and its settings for a run of images training
 * images and classes classes. Fills err for an unknown name. */
int optim_init(struct optimizer *opt, const struct train_args *args,
               int images, int classes, int batches_per_epoch,
               struct error *err);

/* lf(epoch) of the schedule. */
double optim_epoch_factor(const struct train_args *args, int epoch);

/* Set learning rates, momentum and accumulate for overall iteration ni of
 * the given epoch (warm-up, then the epoch's factor). */
void optim_schedule(struct optimizer *opt, const struct train_args *args,
                    int64_t ni, int epoch);

/* Clip gradients, update every parameter, clear gradients, update the
 * EMA. */
void optim_step(struct optimizer *opt, struct net *net);

#endif
