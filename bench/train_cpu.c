/*
 * Training images per second of our engine on bench/conv5-cls.yaml's
 * network: forward, loss, backward and an SGD step (Nesterov, momentum
 * 0.9) on random 28x28 grayscale batches, the work bench/train_torch.py
 * times in PyTorch.
 *
 * Build and run: make bench (which runs both and prints the ratio), or
 *   build/bin/bench-train-cpu [batch] [threads] [seconds]
 * Prints one line: "trainyard images/s N".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "engine/net.h"
#include "engine/rng.h"

static void step(struct net *net, struct kctx *ctx, const float *x,
                 const int32_t *labels, float *dlogits, int batch)
{
    struct layer *last = &net->layers[net->nlayers - 1];

    net_zero_grad(net);
    net_forward(net, x, batch, 1);
    cpu_softmax_xent_forward_backward(ctx, batch, net->classes, last->out,
                                      labels, 1.0f, NULL, dlogits);
    memcpy(last->dout, dlogits,
           (size_t)batch * (size_t)net->classes * sizeof(float));
    net_backward(net);
    for (int i = 0; i < net->nparams; i++) {
        struct param *p = &net->params[i];
        cpu_sgd_step(ctx, p->n, p->data, p->grad, p->state_a, 0.01f, 0.9f,
                     0.0f, 1);
    }
}

int main(int argc, char **argv)
{
    int batch = argc > 1 ? atoi(argv[1]) : 64;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    double seconds = argc > 3 ? atof(argv[3]) : 10;
    struct model_spec spec;
    struct error err = {0};
    struct kctx ctx;
    struct net net;
    struct rng g;

    cpu_kctx_init(&ctx, threads);
    if (model_spec_load("bench/conv5-cls.yaml", "", 0, &spec, &err) != 0 ||
        net_build(&net, &spec, 28, 28, batch, 0, &ctx, &err) != 0) {
        fprintf(stderr, "bench-train-cpu: %s\n", err.msg);
        return 1;
    }

    size_t image = 28 * 28;
    float *x = malloc((size_t)batch * image * sizeof(float));
    int32_t *labels = malloc((size_t)batch * sizeof(int32_t));
    float *dlogits = malloc((size_t)batch * 10 * sizeof(float));
    rng_seed(&g, 0);
    for (size_t i = 0; i < (size_t)batch * image; i++)
        x[i] = (float)rng_uniform(&g);
    for (int i = 0; i < batch; i++)
        labels[i] = (int32_t)rng_below(&g, 10);

    for (int i = 0; i < 10; i++)
        step(&net, &ctx, x, labels, dlogits, batch);
    long n = 0;
    int64_t start = clock_monotonic_ms();
    while ((double)(clock_monotonic_ms() - start) / 1000.0 < seconds) {
        step(&net, &ctx, x, labels, dlogits, batch);
        n++;
    }
    double elapsed = (double)(clock_monotonic_ms() - start) / 1000.0;
    printf("trainyard images/s %.0f\n", (double)n * batch / elapsed);

    free(x);
    free(labels);
    free(dlogits);
    net_free(&net);
    cpu_kctx_free(&ctx);
    return 0;
}
