/*
 * The argument table. Each row names an Ultralytics argument, where it
 * lives in struct train_args, its type, default and a help line with the
 * unit. Booleans accept true/false/1/0 as Ultralytics does.
 */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum arg_type { ARG_INT, ARG_FLOAT, ARG_BOOL, ARG_TEXT };

struct arg_spec {
    const char *name;
    enum arg_type type;
    size_t offset;
    size_t size; /* buffer size for ARG_TEXT */
    const char *def;
    const char *help;
};

#define INT(n, d, h) {#n, ARG_INT, offsetof(struct train_args, n), 0, d, h}
#define FLT(n, d, h) {#n, ARG_FLOAT, offsetof(struct train_args, n), 0, d, h}
#define BOOL(n, d, h) {#n, ARG_BOOL, offsetof(struct train_args, n), 0, d, h}
#define TEXT(n, d, h)                                                         \
    {#n, ARG_TEXT, offsetof(struct train_args, n),                            \
     sizeof(((struct train_args *)0)->n), d, h}

static const struct arg_spec specs[] = {
    TEXT(task, "", "classify or detect (default: from the data set)"),
    TEXT(model, "", "model YAML file, or a checkpoint to start from"),
    TEXT(data, "", "data set: a classification folder or a data.yaml"),
    INT(epochs, "100", "number of epochs to train"),
    FLT(time, "0", "training time limit in hours; overrides epochs; 0: none"),
    INT(patience, "100", "epochs without improvement before stopping"),
    INT(batch, "16", "images per batch"),
    INT(imgsz, "0", "image size in pixels (0: 224 classify, 640 detect)"),
    TEXT(device, "cpu", "cpu, or a CUDA device number such as 0"),
    INT(workers, "8", "accepted for compatibility; images load on the "
                      "compute threads"),
    INT(threads, "0", "CPU compute threads (0: all cores)"),
    TEXT(project, "runs", "folder for runs"),
    TEXT(name, "train", "run folder name under project"),
    BOOL(exist_ok, "false", "reuse an existing run folder"),
    TEXT(optimizer, "auto", "SGD, AdamW or auto"),
    INT(seed, "0", "random seed"),
    BOOL(deterministic, "true", "deterministic kernels and data order"),
    BOOL(cos_lr, "false", "cosine learning-rate schedule instead of linear"),
    INT(close_mosaic, "10", "final epochs without mosaic (detect)"),
    TEXT(resume, "", "checkpoint to resume from"),
    TEXT(pretrained, "", "checkpoint whose weights of matching name and "
                         "size start a new run"),
    FLT(fraction, "1.0", "fraction of the training images to use"),
    FLT(lr0, "0.01", "initial learning rate"),
    FLT(lrf, "0.01", "final learning rate as a fraction of lr0"),
    FLT(momentum, "0.937", "SGD momentum, or Adam beta1"),
    FLT(weight_decay, "0.0005", "weight decay of conv and linear weights"),
    FLT(warmup_epochs, "3.0", "warm-up length in epochs (fractions allowed)"),
    FLT(warmup_momentum, "0.8", "momentum at the start of warm-up"),
    FLT(warmup_bias_lr, "0.1", "bias learning rate at the start of warm-up"),
    INT(nbs, "64", "nominal batch size for gradient accumulation"),
    FLT(box, "7.5", "box loss gain (detect)"),
    FLT(cls, "0.5", "class loss gain (detect)"),
    FLT(dfl, "1.5", "distribution focal loss gain (detect)"),
    FLT(hsv_h, "0.015", "hue augmentation, fraction"),
    FLT(hsv_s, "0.7", "saturation augmentation, fraction"),
    FLT(hsv_v, "0.4", "value augmentation, fraction"),
    FLT(translate, "0.1", "translation augmentation, fraction of size"),
    FLT(scale, "0.5", "scale augmentation, gain"),
    FLT(fliplr, "0.5", "probability of a horizontal flip"),
    FLT(mosaic, "1.0", "probability of mosaic (detect)"),
    FLT(dropout, "0.0", "dropout before the classifier, probability"),
    BOOL(val, "true", "validate after every epoch"),
    INT(save_period, "-1", "also save a checkpoint every N epochs; -1: no"),
    INT(events_fd, "-1", "file descriptor for JSON-line events; -1: none"),
};

#define NSPECS (sizeof(specs) / sizeof(specs[0]))

static int set_value(struct train_args *a, const struct arg_spec *s,
                     const char *value, struct error *err)
{
    char *field = (char *)a + s->offset;
    char *end;

    switch (s->type) {
    case ARG_INT: {
        long v = strtol(value, &end, 10);
        if (*value == '\0' || *end != '\0' || v < -1000000000L ||
            v > 1000000000L)
            return error_set(err, -EINVAL,
                             "invalid %s=%s: expected a whole number",
                             s->name, value);
        *(int *)field = (int)v;
        return 0;
    }
    case ARG_FLOAT: {
        double v = strtod(value, &end);
        if (*value == '\0' || *end != '\0' || !isfinite(v))
            return error_set(err, -EINVAL, "invalid %s=%s: expected a number",
                             s->name, value);
        *(double *)field = v;
        return 0;
    }
    case ARG_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "True") == 0 ||
            strcmp(value, "1") == 0) {
            *(int *)field = 1;
        } else if (strcmp(value, "false") == 0 ||
                   strcmp(value, "False") == 0 || strcmp(value, "0") == 0) {
            *(int *)field = 0;
        } else {
            return error_set(err, -EINVAL,
                             "invalid %s=%s: expected true or false",
                             s->name, value);
        }
        return 0;
    case ARG_TEXT:
        if (strlen(value) >= s->size)
            return error_set(err, -EINVAL,
                             "invalid %s: longer than %zu characters",
                             s->name, s->size - 1);
        strcpy(field, value);
        return 0;
    }
    return -EINVAL;
}

void args_defaults(struct train_args *a)
{
    memset(a, 0, sizeof(*a));
    for (size_t i = 0; i < NSPECS; i++)
        set_value(a, &specs[i], specs[i].def, NULL);
}

static int check_ranges(const struct train_args *a, struct error *err)
{
    if (a->epochs < 1)
        return error_set(err, -EINVAL, "invalid epochs=%d: must be >= 1",
                         a->epochs);
    if (a->batch < 1 || a->batch > 4096)
        return error_set(err, -EINVAL,
                         "invalid batch=%d: must be between 1 and 4096",
                         a->batch);
    if (a->imgsz != 0 && (a->imgsz < 8 || a->imgsz > 4096))
        return error_set(err, -EINVAL,
                         "invalid imgsz=%d: must be between 8 and 4096",
                         a->imgsz);
    if (a->time < 0)
        return error_set(err, -EINVAL, "invalid time=%g: must be >= 0",
                         a->time);
    if (a->fraction <= 0 || a->fraction > 1)
        return error_set(err, -EINVAL,
                         "invalid fraction=%g: must be in (0, 1]",
                         a->fraction);
    if (a->lr0 <= 0)
        return error_set(err, -EINVAL, "invalid lr0=%g: must be > 0",
                         a->lr0);
    if (a->nbs < 1)
        return error_set(err, -EINVAL, "invalid nbs=%d: must be >= 1",
                         a->nbs);
    return 0;
}

int args_set(struct train_args *a, const char *word, struct error *err)
{
    const char *eq = strchr(word, '=');
    size_t klen;
    int rc;

    if (eq == NULL || eq == word)
        return error_set(err, -EINVAL,
                         "invalid argument '%s': expected key=value, such "
                         "as epochs=10; see --help",
                         word);
    klen = (size_t)(eq - word);
    for (size_t i = 0; i < NSPECS; i++) {
        if (strlen(specs[i].name) != klen ||
            strncmp(specs[i].name, word, klen) != 0)
            continue;
        rc = set_value(a, &specs[i], eq + 1, err);
        if (rc == 0 && strcmp(specs[i].name, "time") == 0)
            a->time_given = 1;
        if (rc == 0 && strcmp(specs[i].name, "device") == 0)
            a->device_given = 1;
        return rc != 0 ? rc : check_ranges(a, err);
    }
    return error_set(err, -EINVAL,
                     "unknown argument '%.*s'; run train --help for the "
                     "list",
                     (int)klen, word);
}

void args_print_help(FILE *out)
{
    for (size_t i = 0; i < NSPECS; i++) {
        const struct arg_spec *s = &specs[i];
        fprintf(out, "  %-16s %s (default: %s)\n", s->name, s->help,
                s->def[0] ? s->def : "none");
    }
}

int args_format(const struct train_args *a, char *out, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < NSPECS; i++) {
        const struct arg_spec *s = &specs[i];
        const char *field = (const char *)a + s->offset;
        int w;
        switch (s->type) {
        case ARG_INT:
        case ARG_BOOL:
            w = snprintf(out + n, len - n, "%s=%d\n", s->name,
                         *(const int *)field);
            break;
        case ARG_FLOAT:
            w = snprintf(out + n, len - n, "%s=%.17g\n", s->name,
                         *(const double *)field);
            break;
        default:
            w = snprintf(out + n, len - n, "%s=%s\n", s->name, field);
            break;
        }
        if (w < 0 || (size_t)w >= len - n)
            return -ENOSPC;
        n += (size_t)w;
    }
    return (int)n;
}
