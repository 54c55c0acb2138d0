/*
 * Training images per second of our engine: forward, loss, backward and an
 * SGD step (Nesterov, momentum 0.9) on one random batch, repeated, the
 * work bench/train_torch.py times in PyTorch. By default it trains
 * bench/conv5-cls.yaml's network on 28x28 grayscale images on the CPU;
 * the optional arguments choose the device, the model and the image size,
 * so bench/gpu.sh times the same loop on a GPU.
 *
 * Build and run: make bench (which runs both sides on the CPU and prints
 * the ratio), or
 *   build/bench/train_cpu [batch] [threads] [seconds] [device] [model]
 *                         [imgsz]
 * with defaults 64, 2, 10, cpu, bench/conv5-cls.yaml and 28. device is
 * cpu or a CUDA device number; a CUDA device needs a build with nvcc,
 * whose Makefile links this program with the CUDA kernels. Prints one
 * line: "trainyard images/s N".
 *
 * The batch is copied to the device once, so the figure leaves out data
 * loading on both sides. On CUDA the loss returns its value to the host,
 * which waits for the forward pass, and the clock stops only after the
 * device has finished the last step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "engine/device.h"
#include "engine/net.h"
#include "engine/rng.h"

static void step(struct net *net, const float *x, const int32_t *labels,
                 int batch)
{
    const struct kernel_ops *ops = net->ops;
    struct layer *last = &net->layers[net->nlayers - 1];

    net_zero_grad(net);
    net_forward(net, x, batch, 1);
    ops->softmax_xent_forward_backward(net->ctx, batch, net->classes, last->out,
                                       labels, 1.0f, NULL, last->dout);
    net_backward(net);
    for (int i = 0; i < net->nparams; i++) {
        struct param *p = &net->params[i];
        ops->sgd_step(net->ctx, p->n, p->data, p->grad, p->state_a, 0.01f, 0.9f,
                      0.0f, 1);
    }
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
    struct model_spec spec;
    struct error err = {0};
    struct device dev;
    struct net net;
    struct rng g;

    if (batch < 1 || imgsz < 1) {
        fprintf(stderr, "train_cpu: batch and imgsz must be positive\n");
        return 2;
    }
    if (device_open(&dev, device, threads, &err) != 0) {
        fprintf(stderr, "train_cpu: %s\n", err.msg);
        return 1;
    }
    if (model_spec_load(model, "", 0, &spec, &err) != 0 ||
        net_build_on(&net, &spec, imgsz, imgsz, batch, 0, &dev, &err) != 0) {
        fprintf(stderr, "train_cpu: %s\n", err.msg);
        device_close(&dev);
        return 1;
    }

    fprintf(stderr, "train_cpu: %s at %d on %s: %zu parameters\n", model, imgsz,
            dev.name, net_param_count(&net));

    size_t count =
        (size_t)batch * (size_t)spec.in_c * (size_t)imgsz * (size_t)imgsz;
    float *x_host = malloc(count * sizeof(float));
    int32_t *labels_host = malloc((size_t)batch * sizeof(int32_t));
    float *x = dev.ops->alloc(&dev.ctx, count * sizeof(float), &err);
    int32_t *labels =
        dev.ops->alloc(&dev.ctx, (size_t)batch * sizeof(int32_t), &err);
    if (x_host == NULL || labels_host == NULL || x == NULL || labels == NULL) {
        fprintf(stderr, "train_cpu: out of memory for a batch of %d: %s\n",
                batch, err.msg);
        return 1;
    }
    rng_seed(&g, 0);
    for (size_t i = 0; i < count; i++)
        x_host[i] = (float)rng_uniform(&g);
    for (int i = 0; i < batch; i++)
        labels_host[i] = (int32_t)rng_below(&g, (uint64_t)spec.classes);
    if (dev.ops->copy_to_device(&dev.ctx, x, x_host, count * sizeof(float),
                                &err) != 0 ||
        dev.ops->copy_to_device(&dev.ctx, labels, labels_host,
                                (size_t)batch * sizeof(int32_t), &err) != 0) {
        fprintf(stderr, "train_cpu: %s\n", err.msg);
        return 1;
    }

    /* Warm-up: buffers, convolution plans and caches settle. */
    for (int i = 0; i < 10; i++)
        step(&net, x, labels, batch);
    if (finish_steps(&net, &err) != 0) {
        fprintf(stderr, "train_cpu: %s\n", err.msg);
        return 1;
    }
    long n = 0;
    int64_t start = clock_monotonic_ms();
    while ((double)(clock_monotonic_ms() - start) / 1000.0 < seconds) {
        step(&net, x, labels, batch);
        n++;
    }
    if (finish_steps(&net, &err) != 0) {
        fprintf(stderr, "train_cpu: %s\n", err.msg);
        return 1;
    }
    double elapsed = (double)(clock_monotonic_ms() - start) / 1000.0;
    printf("trainyard images/s %.0f\n", (double)n * batch / elapsed);

    dev.ops->release(&dev.ctx, x);
    dev.ops->release(&dev.ctx, labels);
    free(x_host);
    free(labels_host);
    net_free(&net);
    device_close(&dev);
    return 0;
}
