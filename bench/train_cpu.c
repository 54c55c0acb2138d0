/*
 * Training images per second of our engine: forward, loss, backward and an
 * SGD step (Nesterov, momentum 0.9) on one random batch, repeated, the
 * work bench/train_torch.py times in PyTorch. By default it trains
 * bench/conv5-cls.yaml's network on 28x28 grayscale images on the CPU;
 * the optional arguments choose the device, the model, the image size and
 * the number of classes, so bench/gpu.sh times the same loop on a GPU.
 *
 * The loss follows the model's last layer. After Classify it is softmax
 * cross-entropy against random labels. After Detect it is the YOLOv8
 * detection loss through the device table (task-aligned assigner, CIoU,
 * DFL and BCE) against BOXES_PER_IMAGE synthetic boxes per image, drawn
 * once from a seeded generator (see make_boxes). Its gradient is scaled
 * by 1 / batch, so that it is the gradient of the loss per image.
 *
 * Build and run: make bench (which runs both sides on the CPU and prints
 * the ratio), or
 *   build/bench/train_cpu [batch] [threads] [seconds] [device] [model]
 *                         [imgsz] [classes]
 * with defaults 64, 2, 10, cpu, bench/conv5-cls.yaml, 28 and 0 (the
 * model file's nc). device is cpu or a CUDA device number; a CUDA device
 * needs a build with nvcc, whose Makefile links this program with the
 * CUDA kernels. Prints one line, "trainyard images/s N", and on standard
 * error the parameter count, on the CPU the steps with their wall and CPU
 * time, and for a detector the loss of the last step. Images per CPU second vary
 * less than images/s on a shared machine, but they include the time the
 * threads spin at barriers.
 *
 * The batch is copied to the device once, so the figure leaves out data
 * loading on both sides. On CUDA the loss returns its value to the host,
 * which waits for the forward pass, and the clock stops only after the
 * device has finished the last step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "detect.h"
#include "engine/device.h"
#include "engine/net.h"
#include "engine/rng.h"

#define BOXES_PER_IMAGE 4

/* Untimed steps first: 10 for a classifier, 3 for a detector, whose steps
 * are long, so that buffers, convolution plans and caches settle. */
#define WARMUP_STEPS_CLASSIFY 10
#define WARMUP_STEPS_DETECT 3

/* The work of one step and what the detection loss needs. */
struct bench {
    struct net *net;
    const float *x;
    const int32_t *labels;      /* classification: [batch], device memory */
    const struct det_gt *boxes; /* detection: host memory, by image */
    int nboxes;
    int batch;
    struct det_loss_config loss_config;
    struct det_loss_result loss; /* of the last step */
};

/* Fill boxes with BOXES_PER_IMAGE boxes for each image of an imgsz x imgsz
 * batch, sorted by image. Box k of an image has a width and a height of
 * imgsz * base[k] * (0.7 to 1.3, uniform), so each image has a small, two
 * middle-sized and a large box. Its position keeps it inside the image,
 * and position and class are uniform. bench/train_torch.py draws its
 * boxes by the same rule. */
static void make_boxes(struct det_gt *boxes, int batch, int imgsz, int nc,
                       uint64_t seed)
{
    static const double base[BOXES_PER_IMAGE] = {0.08, 0.16, 0.32, 0.64};
    struct rng g;

    rng_seed(&g, seed);
    for (int b = 0; b < batch; b++) {
        for (int k = 0; k < BOXES_PER_IMAGE; k++) {
            struct det_gt *gt = &boxes[b * BOXES_PER_IMAGE + k];
            double w = imgsz * base[k] * (0.7 + 0.6 * rng_uniform(&g));
            double h = imgsz * base[k] * (0.7 + 0.6 * rng_uniform(&g));
            double x1 = (imgsz - w) * rng_uniform(&g);
            double y1 = (imgsz - h) * rng_uniform(&g);

            gt->image = b;
            gt->cls = (int)rng_below(&g, (uint64_t)nc);
            gt->x1 = (float)x1;
            gt->y1 = (float)y1;
            gt->x2 = (float)(x1 + w);
            gt->y2 = (float)(y1 + h);
        }
    }
}

/* Run one training step. Returns 0, or the detection loss's negative
 * errno code. */
static int step(struct bench *b)
{
    struct net *net = b->net;
    const struct kernel_ops *ops = net->ops;
    struct layer *last = &net->layers[net->nlayers - 1];

    net_zero_grad(net);
    net_forward(net, b->x, b->batch, 1);
    if (last->kind == LAYER_DETECT) {
        int rc = ops->det_loss_forward_backward(
            net->ctx, &last->u.detect->layout, &b->loss_config, b->batch,
            last->out, b->boxes, b->nboxes, 1.0f / (float)b->batch,
            last->dout, &b->loss);
        if (rc != 0)
            return rc;
    } else {
        ops->softmax_xent_forward_backward(net->ctx, b->batch, net->classes,
                                           last->out, b->labels, 1.0f, NULL,
                                           last->dout);
    }
    net_backward(net);
    for (int i = 0; i < net->nparams; i++) {
        struct param *p = &net->params[i];
        ops->sgd_step(net->ctx, p->n, p->data, p->grad, p->state_a, 0.01f, 0.9f,
                      0.0f, 1);
    }
    return 0;
}

/* Run n steps, stopping at the first failure, and fill err. */
static int run_steps(struct bench *b, long n, struct error *err)
{
    for (long i = 0; i < n; i++) {
        int rc = step(b);
        if (rc != 0) {
            error_set(err, rc, "detection loss failed at batch %d: %s",
                      b->batch, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/* Seconds of CPU time that every thread of this process has used. */
static double process_cpu_seconds(void)
{
    struct timespec t;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Wait for the device and fail on any error it recorded. */
static int finish_steps(struct net *net, struct error *err)
{
    int rc = net->ops->synchronize(net->ctx, err);

    return rc != 0 ? rc : net_check(net, err);
}

int main(int argc, char **argv)
{
    int batch = argc > 1 ? atoi(argv[1]) : 64;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    double seconds = argc > 3 ? atof(argv[3]) : 10;
    const char *device = argc > 4 ? argv[4] : "cpu";
    const char *model = argc > 5 ? argv[5] : "bench/conv5-cls.yaml";
    int imgsz = argc > 6 ? atoi(argv[6]) : 28;
    int classes = argc > 7 ? atoi(argv[7]) : 0;
    struct model_spec spec;
    struct error err = {0};
    struct device dev;
    struct net net;
    struct rng g;

    if (batch < 1 || imgsz < 1) {
        fprintf(stderr, "train_cpu: batch and imgsz must be positive\n");
        return 2;
    }
    if (classes < 0) {
        fprintf(stderr,
                "train_cpu: invalid classes %d; give a positive number, or 0 "
                "for the model file's nc\n",
                classes);
        return 2;
    }
    if (device_open(&dev, device, threads, &err) != 0) {
        fprintf(stderr, "train_cpu: %s\n", err.msg);
        return 1;
    }
    if (model_spec_load(model, "", classes, &spec, &err) != 0 ||
        net_build_on(&net, &spec, imgsz, imgsz, batch, 0, &dev, &err) != 0) {
        fprintf(stderr, "train_cpu: %s\n", err.msg);
        device_close(&dev);
        return 1;
    }

    const struct layer *last = &net.layers[net.nlayers - 1];
    int detect = last->kind == LAYER_DETECT;
    fprintf(stderr, "train_cpu: %s at %d on %s: %zu parameters\n", model, imgsz,
            dev.name, net_param_count(&net));

    size_t count =
        (size_t)batch * (size_t)spec.in_c * (size_t)imgsz * (size_t)imgsz;
    int nboxes = detect ? batch * BOXES_PER_IMAGE : 0;
    float *x_host = malloc(count * sizeof(float));
    int32_t *labels_host = malloc((size_t)batch * sizeof(int32_t));
    struct det_gt *boxes = malloc((size_t)(nboxes + 1) * sizeof(*boxes));
    float *x = dev.ops->alloc(&dev.ctx, count * sizeof(float), &err);
    int32_t *labels =
        dev.ops->alloc(&dev.ctx, (size_t)batch * sizeof(int32_t), &err);
    if (x_host == NULL || labels_host == NULL || boxes == NULL || x == NULL ||
        labels == NULL) {
        fprintf(stderr, "train_cpu: out of memory for a batch of %d: %s\n",
                batch, err.msg);
        return 1;
    }
    rng_seed(&g, 0);
    for (size_t i = 0; i < count; i++)
        x_host[i] = (float)rng_uniform(&g);
    for (int i = 0; i < batch; i++)
        labels_host[i] = (int32_t)rng_below(&g, (uint64_t)spec.classes);
    if (detect)
        make_boxes(boxes, batch, imgsz, last->u.detect->layout.nc, 1);
    if (dev.ops->copy_to_device(&dev.ctx, x, x_host, count * sizeof(float),
                                &err) != 0 ||
        dev.ops->copy_to_device(&dev.ctx, labels, labels_host,
                                (size_t)batch * sizeof(int32_t), &err) != 0) {
        fprintf(stderr, "train_cpu: %s\n", err.msg);
        return 1;
    }

    struct bench b = {
        .net = &net,
        .x = x,
        .labels = labels,
        .boxes = boxes,
        .nboxes = nboxes,
        .batch = batch,
        .loss_config = det_loss_defaults(),
    };
    long warmup = detect ? WARMUP_STEPS_DETECT : WARMUP_STEPS_CLASSIFY;
    if (run_steps(&b, warmup, &err) != 0 || finish_steps(&net, &err) != 0) {
        fprintf(stderr, "train_cpu: %s\n", err.msg);
        return 1;
    }
    long n = 0;
    double cpu_start = process_cpu_seconds();
    int64_t start = clock_monotonic_ms();
    while ((double)(clock_monotonic_ms() - start) / 1000.0 < seconds) {
        if (run_steps(&b, 1, &err) != 0) {
            fprintf(stderr, "train_cpu: %s\n", err.msg);
            return 1;
        }
        n++;
    }
    if (finish_steps(&net, &err) != 0) {
        fprintf(stderr, "train_cpu: %s\n", err.msg);
        return 1;
    }
    double elapsed = (double)(clock_monotonic_ms() - start) / 1000.0;
    double cpu = process_cpu_seconds() - cpu_start;
    if (detect)
        fprintf(stderr,
                "train_cpu: last step: box %.4f cls %.4f dfl %.4f, %d "
                "positives, %d boxes\n",
                b.loss.box, b.loss.cls, b.loss.dfl, b.loss.positives, nboxes);
    if (dev.cuda_index < 0 && cpu > 0)
        fprintf(stderr,
                "train_cpu: %ld steps in %.1f s, %.1f CPU s: %.2f images per "
                "CPU second\n",
                n, elapsed, cpu, (double)n * batch / cpu);
    printf("trainyard images/s %.1f\n", (double)n * batch / elapsed);

    dev.ops->release(&dev.ctx, x);
    dev.ops->release(&dev.ctx, labels);
    free(x_host);
    free(labels_host);
    free(boxes);
    net_free(&net);
    device_close(&dev);
    return 0;
}
