/*
 * Checkpoint write and resume time of the n-scale detector
 * (yolov8n.yaml) at 80 classes and at 10 classes, the class count of the
 * Fashion-MNIST scenes.
 *
 * For each class count it builds the network on the CPU, then repeats:
 * ckpt_write to FOLDER/ckpt_bench.ckpt, and the resume path, ckpt_open
 * followed by ckpt_load_tensors into a second network built from the
 * checkpoint's model. ckpt_write writes a temporary file, fsyncs it,
 * renames it over the path and fsyncs the folder, so the write time
 * includes both fsyncs. The file that ckpt_open reads was written just
 * before, so it normally comes from the page cache and the resume time
 * measures no disk reads. Building the networks is not timed.
 *
 * Build and run from the repository root:
 *
 *   make build/bench/ckpt_bench
 *   build/bench/ckpt_bench [folder] [repeats]
 *
 * folder defaults, also when given as "", to a new temporary folder under
 * $TMPDIR (or /tmp), removed at the end; repeats defaults to 10. The checkpoint file is
 * removed at the end in both cases. Prints the load average before and
 * after, and per class count the parameter count, the file size and the
 * minimum, median and maximum of each time in milliseconds.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/checkpoint.h"
#include "engine/device.h"
#include "engine/net.h"

#define MODEL "yolov8n.yaml"
/* The image size sets only the activation buffers, which a checkpoint
 * does not store. 128 is the size the scenes train at. */
#define IMGSZ 128
#define MAX_REPEATS 1000

struct timing {
    double min, median, max;
};

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Sort v and return its minimum, median and maximum. */
static struct timing summarize(double *v, int n)
{
    struct timing t;

    qsort(v, (size_t)n, sizeof(double), compare_doubles);
    t.min = v[0];
    t.max = v[n - 1];
    t.median = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return t;
}

static void print_load_average(const char *when)
{
    char text[128] = "unknown";
    FILE *f = fopen("/proc/loadavg", "r");

    if (f != NULL) {
        if (fgets(text, sizeof(text), f) == NULL)
            snprintf(text, sizeof(text), "unknown");
        fclose(f);
    }
    text[strcspn(text, "\n")] = '\0';
    printf("load average %s: %s\n", when, text);
}

/* Return 0 when every parameter of a and b has the same weights, else
 * -EIO with err set. */
static int check_same_weights(const struct net *a, const struct net *b,
                           struct error *err)
{
    for (int i = 0; i < a->nparams; i++) {
        size_t bytes = a->params[i].n * sizeof(float);

        if (memcmp(a->params[i].data, b->params[i].data, bytes) != 0)
            return error_set(err, -EIO, "parameter %d differs after the "
                             "resume", i);
    }
    return 0;
}

/* Time `repeats` writes and resumes of a checkpoint at path of the model
 * with `classes` classes, and print the results. */
static int bench_classes(const char *path, int classes, int repeats,
                         struct device *dev, struct error *err)
{
    char class_names[4096] = "";
    double *write_ms = calloc((size_t)repeats, sizeof(double));
    double *resume_ms = calloc((size_t)repeats, sizeof(double));
    struct train_state state = {0};
    struct model_spec spec;
    struct train_args args;
    struct optimizer opt;
    struct net net, resumed;
    int built = 0, resumed_built = 0;
    long file_size = -1;
    int rc;

    if (write_ms == NULL || resume_ms == NULL) {
        free(write_ms);
        free(resume_ms);
        return error_set(err, -ENOMEM, "out of memory for %d repeats",
                         repeats);
    }
    for (int c = 0; c < classes; c++) {
        size_t len = strlen(class_names);

        snprintf(class_names + len, sizeof(class_names) - len, "%sclass%d",
                 c > 0 ? "\n" : "", c);
    }
    args_defaults(&args);
    snprintf(args.model, sizeof(args.model), "%s", MODEL);
    snprintf(args.task, sizeof(args.task), "detect");
    args.imgsz = IMGSZ;
    state.best_fitness = -1;

    rc = model_spec_load(MODEL, "", classes, &spec, err);
    if (rc == 0)
        rc = net_build_on(&net, &spec, IMGSZ, IMGSZ, 1, 0, dev, err);
    built = rc == 0;
    if (rc == 0)
        rc = optim_init(&opt, &args, 2000, classes, 125, err);

    for (int i = 0; i < repeats && rc == 0; i++) {
        struct checkpoint ck;
        double start = now_ms();

        rc = ckpt_write(path, &net, &spec, &args, &state, &opt, IMGSZ,
                        class_names, err);
        if (rc != 0)
            break;
        write_ms[i] = now_ms() - start;

        start = now_ms();
        rc = ckpt_open(path, &ck, err);
        if (rc != 0)
            break;
        /* The trainer builds the network from the checkpoint's model
         * before it loads the tensors. That build is done once here and
         * not timed. */
        if (!resumed_built) {
            double build_start = now_ms();

            rc = net_build_on(&resumed, &ck.spec, ck.imgsz, ck.imgsz, 1, 1,
                              dev, err);
            resumed_built = rc == 0;
            start += now_ms() - build_start;
        }
        if (rc == 0)
            rc = ckpt_load_tensors(&ck, &resumed, err);
        if (rc == 0)
            resume_ms[i] = now_ms() - start;
        file_size = (long)ck.size;
        ckpt_close(&ck);
        if (rc == 0 && i == 0)
            rc = check_same_weights(&net, &resumed, err);
    }

    if (rc == 0) {
        struct timing w = summarize(write_ms, repeats);
        struct timing r = summarize(resume_ms, repeats);

        printf("%s nc=%d: %zu parameters, file %ld bytes (%.1f MiB), "
               "%d repeats\n",
               MODEL, classes, net_param_count(&net), file_size,
               (double)file_size / (1024.0 * 1024.0), repeats);
        printf("  write (ckpt_write, with fsync)   min %8.1f  median %8.1f  "
               "max %8.1f ms\n",
               w.min, w.median, w.max);
        printf("  resume (ckpt_open + load)        min %8.1f  median %8.1f  "
               "max %8.1f ms\n",
               r.min, r.median, r.max);
    }
    if (resumed_built)
        net_free(&resumed);
    if (built)
        net_free(&net);
    unlink(path);
    free(write_ms);
    free(resume_ms);
    return rc;
}

int main(int argc, char **argv)
{
    static const int class_counts[] = {80, 10};
    char folder[PATH_MAX], path[PATH_MAX + 32];
    struct error err = {0};
    struct device dev;
    int repeats = 10, made_folder = 0, rc = 0;
    char *end;

    if (argc > 3 || (argc > 1 && strcmp(argv[1], "--help") == 0)) {
        fprintf(stderr, "usage: ckpt_bench [folder] [repeats]\n"
                        "  folder   where the checkpoint is written "
                        "(default: a new temporary folder)\n"
                        "  repeats  writes and resumes per class count "
                        "(default 10)\n");
        return 2;
    }
    if (argc > 2) {
        long n = strtol(argv[2], &end, 10);

        if (*end != '\0' || n < 1 || n > MAX_REPEATS) {
            fprintf(stderr, "ckpt_bench: invalid repeats '%s'; expected a "
                            "whole number from 1 to %d\n",
                    argv[2], MAX_REPEATS);
            return 2;
        }
        repeats = (int)n;
    }
    if (argc > 1 && argv[1][0] != '\0') {
        snprintf(folder, sizeof(folder), "%s", argv[1]);
    } else {
        const char *tmp = getenv("TMPDIR");

        snprintf(folder, sizeof(folder), "%s/ckpt_bench.XXXXXX",
                 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
        if (mkdtemp(folder) == NULL) {
            fprintf(stderr, "ckpt_bench: cannot create a folder from '%s': "
                            "%s; give a folder as the first argument\n",
                    folder, strerror(errno));
            return 1;
        }
        made_folder = 1;
    }
    snprintf(path, sizeof(path), "%s/ckpt_bench.ckpt", folder);

    if (device_open(&dev, "cpu", 1, &err) != 0) {
        fprintf(stderr, "ckpt_bench: %s\n", err.msg);
        return 1;
    }
    printf("checkpoint file %s\n", path);
    print_load_average("before");
    for (size_t i = 0; i < sizeof(class_counts) / sizeof(class_counts[0]); i++) {
        rc = bench_classes(path, class_counts[i], repeats, &dev, &err);
        if (rc != 0) {
            fprintf(stderr, "ckpt_bench: %s at %d classes: %s\n", MODEL,
                    class_counts[i], err.msg);
            break;
        }
    }
    print_load_average("after");
    device_close(&dev);
    if (made_folder && rmdir(folder) != 0)
        fprintf(stderr, "ckpt_bench: cannot remove folder '%s': %s\n",
                folder, strerror(errno));
    return rc == 0 ? 0 : 1;
}
