/*
 * The table of train_args.h. task, imgsz and batch are left out, because
 * the dialog's common settings set them; the session's own arguments are
 * named in train_args_reserved.
 */
#include "train_args.h"

const struct train_arg train_args[] = {
    {"patience", TRAIN_ARG_INT, "100",
     "epochs without improvement before stopping"},
    {"workers", TRAIN_ARG_INT, "8",
     "accepted for compatibility; images load on the compute threads"},
    {"optimizer", TRAIN_ARG_TEXT, "auto", "SGD, AdamW or auto"},
    {"seed", TRAIN_ARG_INT, "0", "random seed"},
    {"deterministic", TRAIN_ARG_BOOL, "true",
     "deterministic kernels and data order"},
    {"cos_lr", TRAIN_ARG_BOOL, "false",
     "cosine learning-rate schedule instead of linear"},
    {"close_mosaic", TRAIN_ARG_INT, "10",
     "final epochs without mosaic (detect)"},
    {"fraction", TRAIN_ARG_FLOAT, "1.0",
     "fraction of the training images to use"},
    {"lr0", TRAIN_ARG_FLOAT, "0.01", "initial learning rate"},
    {"lrf", TRAIN_ARG_FLOAT, "0.01",
     "final learning rate as a fraction of lr0"},
    {"momentum", TRAIN_ARG_FLOAT, "0.937", "SGD momentum, or Adam beta1"},
    {"weight_decay", TRAIN_ARG_FLOAT, "0.0005",
     "weight decay of conv and linear weights"},
    {"warmup_epochs", TRAIN_ARG_FLOAT, "3.0",
     "warm-up length in epochs (fractions allowed)"},
    {"warmup_momentum", TRAIN_ARG_FLOAT, "0.8",
     "momentum at the start of warm-up"},
    {"warmup_bias_lr", TRAIN_ARG_FLOAT, "0.1",
     "bias learning rate at the start of warm-up"},
    {"nbs", TRAIN_ARG_INT, "64",
     "nominal batch size for gradient accumulation"},
    {"box", TRAIN_ARG_FLOAT, "7.5", "box loss gain (detect)"},
    {"cls", TRAIN_ARG_FLOAT, "0.5", "class loss gain (detect)"},
    {"dfl", TRAIN_ARG_FLOAT, "1.5", "distribution focal loss gain (detect)"},
    {"hsv_h", TRAIN_ARG_FLOAT, "0.015", "hue augmentation, fraction"},
    {"hsv_s", TRAIN_ARG_FLOAT, "0.7", "saturation augmentation, fraction"},
    {"hsv_v", TRAIN_ARG_FLOAT, "0.4", "value augmentation, fraction"},
    {"translate", TRAIN_ARG_FLOAT, "0.1",
     "translation augmentation, fraction of size"},
    {"scale", TRAIN_ARG_FLOAT, "0.5", "scale augmentation, gain"},
    {"fliplr", TRAIN_ARG_FLOAT, "0.5", "probability of a horizontal flip"},
    {"mosaic", TRAIN_ARG_FLOAT, "1.0", "probability of mosaic (detect)"},
    {"dropout", TRAIN_ARG_FLOAT, "0.0",
     "dropout before the classifier, probability"},
    {"val", TRAIN_ARG_BOOL, "true", "validate after every epoch"},
    {"save_period", TRAIN_ARG_INT, "-1",
     "also save a checkpoint every N epochs; -1: no"},
};

const size_t train_args_count = sizeof(train_args) / sizeof(train_args[0]);

const char *const train_args_reserved =
    "data, model, epochs, time, device, threads, project, name, exist_ok, "
    "resume and events_fd";
