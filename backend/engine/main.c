/*
 * train: the Trainyard training program. It takes Ultralytics-style
 * key=value arguments, trains on the CPU (device=cpu) or on a CUDA GPU
 * (device=0, in builds linked with CUDA support), writes results.csv and
 * checkpoints under project/name, and, with events_fd=N, reports progress
 * as JSON lines on descriptor N for the backend. Exit status: 0 completed,
 * 1 failed, 2 invalid arguments, 3 stopped by a signal (checkpoint
 * saved), 4 stopped at the time limit (checkpoint saved).
 *
 * `train import-fmnist OUT [train=N] [val=N]` writes Debian's
 * Fashion-MNIST as a classification data set at OUT instead, and
 * `train make-fmnist-det OUT [train=N] [val=N] [seed=S]` generates the
 * Fashion-MNIST detection scenes at OUT.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/args.h"
#include "engine/device.h"
#include "engine/fmnist.h"
#include "engine/fmnist_det.h"
#include "engine/predict.h"
#include "engine/trainer.h"
#include "log.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: train [key=value]...\n"
            "Train a model on a data set, as `yolo train` does.\n"
            "Example: train data=datasets/fmnist model=yolov8n-cls.yaml "
            "epochs=10 imgsz=32\n"
            "\n"
            "Arguments:\n");
    args_print_help(out);
    fprintf(out,
            "\n"
            "Usage: train import-fmnist OUT [train=N] [val=N]\n"
            "Write Debian's Fashion-MNIST (package dataset-fashion-mnist) "
            "as a\n"
            "classification data set at OUT, with the first N images of "
            "each\n"
            "split (default: all 60,000 and 10,000).\n"
            "\n"
            "Usage: train make-fmnist-det OUT [train=N] [val=N] [seed=S]\n"
            "Generate N training and N validation detection scenes "
            "(128x128, 1 to 6\n"
            "Fashion-MNIST items each) as a detection data set at OUT "
            "(default:\n"
            "2,000 and 500 scenes, seed 0). The same seed writes the same "
            "files.\n"
            "\n"
            "Usage: train devices\n"
            "List the CUDA devices that can train, one number per line.\n"
            "\n"
            "Usage: train predict model=CHECKPOINT source=IMAGE_OR_FOLDER\n"
            "       [imgsz=N] [conf=0.25] [iou=0.7] [max_det=300] "
            "[device=cpu]\n"
            "       [threads=N] [project=runs/detect] [name=predict] "
            "[exist_ok=false]\n"
            "Detect objects with a trained detection checkpoint and write "
            "labels/NAME.txt,\n"
            "NAME.json and NAME.png (boxes drawn) for each image into "
            "project/name.\n"
            "\n"
            "Exit status: 0 completed, 1 failed, 2 invalid arguments,\n"
            "3 stopped by SIGTERM or SIGINT, 4 stopped at the time limit\n"
            "(a checkpoint is saved in the last two cases; resume it with\n"
            "resume=RUN/weights/last.ckpt).\n");
}

/* train import-fmnist OUT [train=N] [val=N] */
static int import_fmnist(int argc, char **argv)
{
    struct fmnist_import_options opt = {NULL, 0, 0};
    struct error err = {0};

    if (argc < 3) {
        fprintf(stderr, "train import-fmnist: missing OUT folder\n");
        return TRAIN_USAGE;
    }
    for (int i = 3; i < argc; i++) {
        char *end;
        if (strncmp(argv[i], "train=", 6) == 0) {
            opt.train_limit = strtoul(argv[i] + 6, &end, 10);
        } else if (strncmp(argv[i], "val=", 4) == 0) {
            opt.val_limit = strtoul(argv[i] + 4, &end, 10);
        } else {
            fprintf(stderr,
                    "train import-fmnist: invalid argument '%s'; use "
                    "train=N or val=N\n",
                    argv[i]);
            return TRAIN_USAGE;
        }
        if (*end != '\0') {
            fprintf(stderr,
                    "train import-fmnist: invalid number in '%s'\n",
                    argv[i]);
            return TRAIN_USAGE;
        }
    }
    log_init("train", LOG_LEVEL_INFO, 2);
    if (fmnist_import(argv[2], &opt, &err) != 0) {
        log_error("%s", err.msg);
        return TRAIN_FAILED;
    }
    log_info("wrote Fashion-MNIST to %s", argv[2]);
    return 0;
}

/* train make-fmnist-det OUT [train=N] [val=N] [seed=S] */
static int make_fmnist_det(int argc, char **argv)
{
    struct fmnist_det_options opt = {NULL, 0, 0, 0};
    struct error err = {0};

    if (argc < 3) {
        fprintf(stderr, "train make-fmnist-det: missing OUT folder\n");
        return TRAIN_USAGE;
    }
    for (int i = 3; i < argc; i++) {
        const char *value = strchr(argv[i], '=');
        unsigned long long n;
        char *end;

        if (value == NULL || value[1] == '\0') {
            fprintf(stderr, "train make-fmnist-det: invalid argument '%s'; "
                            "use train=N, val=N or seed=S\n", argv[i]);
            return TRAIN_USAGE;
        }
        n = strtoull(value + 1, &end, 10);
        if (*end != '\0' || value[1] == '-') {
            fprintf(stderr, "train make-fmnist-det: invalid number in "
                            "'%s'\n", argv[i]);
            return TRAIN_USAGE;
        }
        if (strncmp(argv[i], "train=", 6) == 0) {
            opt.train_count = (size_t)n;
        } else if (strncmp(argv[i], "val=", 4) == 0) {
            opt.val_count = (size_t)n;
        } else if (strncmp(argv[i], "seed=", 5) == 0) {
            opt.seed = (uint64_t)n;
        } else {
            fprintf(stderr, "train make-fmnist-det: invalid argument '%s'; "
                            "use train=N, val=N or seed=S\n", argv[i]);
            return TRAIN_USAGE;
        }
    }
    log_init("train", LOG_LEVEL_INFO, 2);
    if (fmnist_det_generate(argv[2], &opt, &err) != 0) {
        log_error("%s", err.msg);
        return TRAIN_FAILED;
    }
    log_info("wrote Fashion-MNIST detection scenes to %s", argv[2]);
    return 0;
}

/* train devices: print the number of each CUDA device that can train,
 * one per line, and why none can when there is none. */
static int list_devices(void)
{
    struct error err = {0};
    int found = 0;

    log_init("train", LOG_LEVEL_WARN, 2);
    for (int i = 0; i < 64; i++) {
        struct device dev;
        char spec[16];

        snprintf(spec, sizeof(spec), "%d", i);
        if (device_open(&dev, spec, 1, &err) != 0) {
            device_close(&dev);
            break;
        }
        printf("%d %s\n", i, dev.name);
        device_close(&dev);
        found++;
    }
    if (found == 0)
        fprintf(stderr, "train devices: no CUDA device can train: %s\n",
                err.msg);
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    trainer_request_stop();
}

int main(int argc, char **argv)
{
    struct train_args args;
    struct error err = {0};
    enum train_outcome outcome;
    struct sigaction sa;

    if (argc > 1 && strcmp(argv[1], "import-fmnist") == 0)
        return import_fmnist(argc, argv);
    if (argc > 1 && strcmp(argv[1], "make-fmnist-det") == 0)
        return make_fmnist_det(argc, argv);
    if (argc > 1 && strcmp(argv[1], "predict") == 0)
        return predict_main(argc, argv);
    if (argc > 1 && strcmp(argv[1], "devices") == 0)
        return list_devices();

    args_defaults(&args);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
            strcmp(argv[i], "help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i == 1 && strcmp(argv[i], "train") == 0)
            continue;
        if (args_set(&args, argv[i], &err) != 0) {
            fprintf(stderr, "train: %s\n", err.msg);
            return TRAIN_USAGE;
        }
    }
    if (args.data[0] == '\0' && args.resume[0] == '\0') {
        fprintf(stderr, "train: missing data=; give a data set folder, or "
                        "resume=CHECKPOINT\n");
        return TRAIN_USAGE;
    }

    log_init("train", LOG_LEVEL_INFO, 2);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    outcome = trainer_run(&args, &err);
    if (outcome == TRAIN_FAILED)
        log_error("%s", err.msg);
    else
        log_info("training ended: %s",
                 outcome == TRAIN_COMPLETED ? "completed"
                 : outcome == TRAIN_STOPPED ? "stopped, checkpoint saved"
                                            : "time limit reached, "
                                              "checkpoint saved");
    return (int)outcome;
}
