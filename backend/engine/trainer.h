/*
 * The training loop for classification: data order, augmentation,
 * forward, loss, backward, gradient accumulation, optimizer steps, EMA,
 * validation, results.csv, checkpoints, events, and the stop conditions
 * (epochs done, patience, time limit, SIGTERM).
 */
#ifndef TRAINYARD_TRAINER_H
#define TRAINYARD_TRAINER_H

#include "engine/args.h"
#include "error.h"

/* Outcome of a run, which is also the program's exit status. */
enum train_outcome {
    TRAIN_COMPLETED = 0,
    TRAIN_FAILED = 1,
    TRAIN_USAGE = 2,
    TRAIN_STOPPED = 3,    /* SIGTERM or SIGINT; checkpoint saved */
    TRAIN_TIME_LIMIT = 4, /* time= reached; checkpoint saved */
};

/* Ask the running loop to save a checkpoint and stop (signal-safe). */
void trainer_request_stop(void);

/* Run training as args describe; args->resume continues a checkpoint. */
enum train_outcome trainer_run(struct train_args *args, struct error *err);

#endif
