/*
 * Training arguments under their Ultralytics names and defaults, parsed
 * from key=value words as the `yolo train` command line takes them. The
 * table in args.c is the single list: parsing, --help, checkpoints and
 * events all read it, so a new argument is one new row.
 */
#ifndef TRAINYARD_ARGS_H
#define TRAINYARD_ARGS_H

#include <stdio.h>

#include "error.h"

#define ARG_TEXT_MAX 512

struct train_args {
    char task[16];    /* classify or detect; from the data set if empty */
    char model[ARG_TEXT_MAX];
    char data[ARG_TEXT_MAX];
    char resume[ARG_TEXT_MAX];
    char pretrained[ARG_TEXT_MAX]; /* checkpoint whose weights start a run */
    char project[ARG_TEXT_MAX];
    char name[ARG_TEXT_MAX];
    char device[32];
    char optimizer[16];
    int epochs;
    double time;      /* hours; 0 means no limit */
    int patience;
    int batch;
    int imgsz;        /* 0: 224 for classify, 640 for detect */
    int workers;
    int seed;
    int deterministic;
    int cos_lr;
    int close_mosaic;
    int nbs;
    int val;
    int save_period;
    int exist_ok;
    double fraction;
    double lr0, lrf, momentum, weight_decay;
    double warmup_epochs, warmup_momentum, warmup_bias_lr;
    double box, cls, dfl;
    double hsv_h, hsv_s, hsv_v, translate, scale, fliplr, mosaic;
    double dropout;
    int threads;      /* CPU threads; 0 means all cores */
    int events_fd;    /* file descriptor for JSON-line events; -1: none */
    /* Set when the command line gave time= or device=, which a resume
     * takes over the checkpoint's values. */
    int time_given, device_given;
};

/* Fill every field with its default. */
void args_defaults(struct train_args *a);

/* Apply one "key=value" word. */
int args_set(struct train_args *a, const char *word, struct error *err);

/* Print every argument with its unit and default, one per line. */
void args_print_help(FILE *out);

/* Write all arguments as "key=value" lines (for checkpoints and logs). */
int args_format(const struct train_args *a, char *out, size_t len);

#endif
