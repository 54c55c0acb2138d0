/*
 * The training arguments that a model may set, under their Ultralytics
 * names, with the defaults and help lines of the trainer's argument table
 * (`train --help`). The Train Model dialog's Advanced section shows one
 * field for each and sends only the values that differ from the default.
 */
#ifndef TRAINYARD_UI_TRAIN_ARGS_H
#define TRAINYARD_UI_TRAIN_ARGS_H

#include <stddef.h>

enum train_arg_type { TRAIN_ARG_INT, TRAIN_ARG_FLOAT, TRAIN_ARG_BOOL,
                      TRAIN_ARG_TEXT };

struct train_arg {
    const char *name;
    enum train_arg_type type;
    const char *def;
    const char *help;
};

extern const struct train_arg train_args[];
extern const size_t train_args_count;

/* The arguments that every session sets itself, so a model may not. */
extern const char *const train_args_reserved;

#endif
