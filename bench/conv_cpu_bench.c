/*
 * Benchmark of the CPU convolution paths on the layers of the engine's
 * reference network: five Conv-BN-SiLU layers on 28x28 inputs, batch 64,
 * bias-free convolutions as in Ultralytics' Conv block.
 *
 * For each layer it times forward and backward with every path that
 * supports the shape: im2col + sgemm, sgemm on x as it is for 1x1
 * convolutions, and oneDNN with blocked or plain layouts. Backward
 * computes dw, and dx except for the first layer, whose input needs no
 * gradient. It checks that the paths agree, then times a
 * whole training step of the network (convolutions, batch normalization,
 * SiLU) with the built-in choice of path and prints images per second.
 *
 * Build and run from the repository root after `make build/rel/libtrainyard.a`:
 *
 *   gcc -std=c11 -O2 -fopenmp -D_GNU_SOURCE -Ikernels -Icommon \
 *       $(pkg-config --cflags openblas) bench/conv_cpu_bench.c \
 *       build/rel/libtrainyard.a -ldnnl $(pkg-config --libs openblas) \
 *       -lm -fopenmp -o build/conv_cpu_bench
 *   build/conv_cpu_bench [threads] [repeats] [yolo] [col_budget]
 *
 * Defaults: 2 threads, 20 repeats; each time printed is the median.
 * "yolo" adds larger YOLO-style shapes; col_budget sets the im2col
 * path's column budget in floats.
 */
#include "cpu/cpu.h"
#include "kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 64
#define LAYERS 5

/* Input channels, output channels, kernel, stride, padding per layer:
 * 28 -> 28 -> 14 -> 14 -> 7 -> 7. */
static const int net[LAYERS][5] = {
    {3, 16, 3, 1, 1},
    {16, 32, 3, 2, 1},
    {32, 32, 3, 1, 1},
    {32, 64, 3, 2, 1},
    {64, 64, 1, 1, 0},
};

/* Shapes of YOLOv8n-style layers at a few resolutions. They check that
 * the choice made on the small network holds for larger inputs. The last
 * one needs negative right padding in oneDNN's terms. Fields: n, c_in, h,
 * w, c_out, k, stride, pad, groups. */
static const struct conv2d_shape yolo[] = {
    {4, 3, 320, 320, 16, 3, 2, 1, 1, 0, 0},
    {4, 32, 80, 80, 32, 3, 1, 1, 1, 0, 0},
    {4, 64, 40, 40, 64, 1, 1, 0, 1, 0, 0},
    {4, 128, 20, 20, 128, 3, 1, 1, 128, 0, 0},
    {4, 256, 20, 20, 256, 1, 1, 0, 1, 0, 0},
    {4, 64, 40, 40, 64, 1, 2, 0, 1, 0, 0},
};

static const char *const path_names[] = {"im2col", "direct", "onednn",
                                          "onednn-plain"};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static float *random_buffer(size_t n, unsigned *seed)
{
    float *p = malloc(sizeof(float) * n);
    if (p == NULL) {
        fprintf(stderr, "conv_cpu_bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = (float)rand_r(seed) / RAND_MAX - 0.5f;
    return p;
}

static void layer_shape(int layer, int h, struct conv2d_shape *s)
{
    memset(s, 0, sizeof(*s));
    s->n = BATCH;
    s->c_in = net[layer][0];
    s->c_out = net[layer][1];
    s->k = net[layer][2];
    s->stride = net[layer][3];
    s->pad = net[layer][4];
    s->h = h;
    s->w = h;
    s->groups = 1;
    if (conv2d_shape_init(s) != 0) {
        fprintf(stderr, "conv_cpu_bench: invalid shape for layer %d\n",
                layer);
        exit(1);
    }
}

struct layer_bufs {
    float *x, *w, *y, *dy, *dx, *dw;
    size_t xsize, wsize, ysize;
};

static void layer_alloc(const struct conv2d_shape *s, struct layer_bufs *b,
                        unsigned *seed)
{
    b->xsize = (size_t)s->n * s->c_in * s->h * s->w;
    b->wsize = (size_t)s->c_out * (s->c_in / s->groups) * s->k * s->k;
    b->ysize = (size_t)s->n * s->c_out * s->h_out * s->w_out;
    b->x = random_buffer(b->xsize, seed);
    b->w = random_buffer(b->wsize, seed);
    b->y = random_buffer(b->ysize, seed);
    b->dy = random_buffer(b->ysize, seed);
    b->dx = random_buffer(b->xsize, seed);
    b->dw = random_buffer(b->wsize, seed);
}

static void layer_free(struct layer_bufs *b)
{
    free(b->x);
    free(b->w);
    free(b->y);
    free(b->dy);
    free(b->dx);
    free(b->dw);
}

/* Median milliseconds of forward and of backward over `repeats` runs. */
static void time_path(struct kctx *ctx, const struct conv2d_shape *s,
                      struct layer_bufs *b, int first, int repeats,
                      double *fwd_ms, double *bwd_ms)
{
    double *fwd = malloc(sizeof(double) * (size_t)repeats);
    double *bwd = malloc(sizeof(double) * (size_t)repeats);

    for (int r = -2; r < repeats; r++) {
        double t0 = now_ms();
        cpu_conv2d_forward(ctx, s, b->x, b->w, NULL, b->y);
        double t1 = now_ms();
        cpu_conv2d_backward(ctx, s, b->x, b->w, b->dy, first ? NULL : b->dx,
                            b->dw, NULL);
        double t2 = now_ms();
        if (r >= 0) {
            fwd[r] = t1 - t0;
            bwd[r] = t2 - t1;
        }
    }
    *fwd_ms = median(fwd, repeats);
    *bwd_ms = median(bwd, repeats);
    free(fwd);
    free(bwd);
}

/* Largest absolute difference between two buffers. */
static double max_diff(const float *a, const float *b, size_t n)
{
    double d = 0.0;
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* Outputs and gradients of one path, kept to compare the paths. */
struct path_result {
    float *y, *dx, *dw;
};

static void run_once(struct kctx *ctx, const struct conv2d_shape *s,
                     struct layer_bufs *b, struct path_result *out)
{
    out->y = calloc(b->ysize, sizeof(float));
    out->dx = calloc(b->xsize, sizeof(float));
    out->dw = calloc(b->wsize, sizeof(float));
    cpu_conv2d_forward(ctx, s, b->x, b->w, NULL, out->y);
    cpu_conv2d_backward(ctx, s, b->x, b->w, b->dy, out->dx, out->dw, NULL);
}

/* Times every path on one shape; first: the layer's input needs no
 * gradient. Returns the best forward + backward milliseconds. */
static void bench_shape(struct kctx *ctx, const struct conv2d_shape *shape,
                        int first, int repeats, double *best_total)
{
    struct conv2d_shape s = *shape;
    struct layer_bufs b;
    struct path_result ref = {0};
    unsigned seed = 1234u + (unsigned)s.c_in * 7u + (unsigned)s.h;

    layer_alloc(&s, &b, &seed);
    printf("n %d: %3d -> %3d, k%d s%d p%d g%d, %3dx%-3d -> %3dx%-3d\n",
           s.n, s.c_in, s.c_out, s.k, s.stride, s.pad, s.groups, s.h, s.w,
           s.h_out, s.w_out);

    *best_total = 1e30;
    for (int path = 0; path < CONV2D_PATH_COUNT; path++) {
        if (!conv2d_path_supports((enum conv2d_path)path, &s))
            continue;
        conv2d_force_path(path);

        struct path_result res;
        run_once(ctx, &s, &b, &res);
        double dy_diff = 0.0, dx_diff = 0.0, dw_diff = 0.0;
        if (ref.y == NULL) {
            ref = res;
        } else {
            dy_diff = max_diff(ref.y, res.y, b.ysize);
            dx_diff = max_diff(ref.dx, res.dx, b.xsize);
            dw_diff = max_diff(ref.dw, res.dw, b.wsize);
            free(res.y);
            free(res.dx);
            free(res.dw);
        }

        double fwd, bwd;
        time_path(ctx, &s, &b, first, repeats, &fwd, &bwd);
        printf("  %-12s fwd %7.3f ms  bwd %7.3f ms  total %7.3f ms"
               "  (diff y %.1e dx %.1e dw %.1e)\n",
               path_names[path], fwd, bwd, fwd + bwd, dy_diff, dx_diff,
               dw_diff);
        if (path == CONV2D_PATH_DNNL || path == CONV2D_PATH_DNNL_PLAIN) {
            int blocked = path == CONV2D_PATH_DNNL;
            printf("          oneDNN chose: fwd %s, bwd data %s, "
                   "bwd weights %s\n", conv2d_dnnl_impl_name(&s, blocked, 0),
                   conv2d_dnnl_impl_name(&s, blocked, 1),
                   conv2d_dnnl_impl_name(&s, blocked, 2));
        }
        if (fwd + bwd < *best_total)
            *best_total = fwd + bwd;
    }
    conv2d_force_path(-1);

    free(ref.y);
    free(ref.dx);
    free(ref.dw);
    layer_free(&b);
}

/* One training step of the whole network with the built-in path choice:
 * forward conv, BN, SiLU per layer, then backward in reverse order. */
struct net_layer {
    struct conv2d_shape conv;
    struct bn_shape bn;
    struct layer_bufs b;
    float *gamma, *beta, *rmean, *rvar, *smean, *sinv, *dgamma, *dbeta;
    float *z, *act, *dz, *dact;  /* BN output, SiLU output, gradients */
};

static void net_init(struct net_layer *L, unsigned *seed)
{
    int h = 28;
    for (int i = 0; i < LAYERS; i++) {
        struct net_layer *l = &L[i];
        layer_shape(i, h, &l->conv);
        layer_alloc(&l->conv, &l->b, seed);
        l->bn.n = BATCH;
        l->bn.c = l->conv.c_out;
        l->bn.hw = l->conv.h_out * l->conv.w_out;
        l->bn.eps = 1e-3f;
        l->bn.momentum = 0.03f;

        size_t c = (size_t)l->bn.c;
        l->gamma = random_buffer(c, seed);
        l->beta = random_buffer(c, seed);
        l->rmean = calloc(c, sizeof(float));
        l->rvar = calloc(c, sizeof(float));
        l->smean = calloc(c, sizeof(float));
        l->sinv = calloc(c, sizeof(float));
        l->dgamma = calloc(c, sizeof(float));
        l->dbeta = calloc(c, sizeof(float));
        l->z = calloc(l->b.ysize, sizeof(float));
        l->act = calloc(l->b.ysize, sizeof(float));
        l->dz = calloc(l->b.ysize, sizeof(float));
        l->dact = calloc(l->b.ysize, sizeof(float));
        h = l->conv.h_out;
    }
}

/* Milliseconds of one training step spent per kind of operation. */
enum { T_CONV, T_BN, T_SILU, T_ZERO, T_COUNT };
static const char *const time_names[] = {"conv", "batchnorm", "silu",
                                         "zeroing"};

static void net_step(struct kctx *ctx, struct net_layer *L, double *ms)
{
    double t;

    for (int i = 0; i < LAYERS; i++) {
        struct net_layer *l = &L[i];
        const float *in = i == 0 ? l->b.x : L[i - 1].act;

        t = now_ms();
        cpu_conv2d_forward(ctx, &l->conv, in, l->b.w, NULL, l->b.y);
        ms[T_CONV] += now_ms() - t;
        t = now_ms();
        cpu_batchnorm_forward_train(ctx, &l->bn, l->b.y, l->gamma, l->beta,
                                    l->rmean, l->rvar, l->smean, l->sinv,
                                    l->z);
        ms[T_BN] += now_ms() - t;
        t = now_ms();
        cpu_silu_forward(ctx, l->z, l->act, l->b.ysize);
        ms[T_SILU] += now_ms() - t;
    }

    /* The loss gradient of the last activation is random (its dy). */
    memcpy(L[LAYERS - 1].dact, L[LAYERS - 1].b.dy,
           sizeof(float) * L[LAYERS - 1].b.ysize);
    for (int i = LAYERS - 1; i >= 0; i--) {
        struct net_layer *l = &L[i];
        const float *in = i == 0 ? l->b.x : L[i - 1].act;
        float *din = i == 0 ? NULL : L[i - 1].dact;

        t = now_ms();
        memset(l->dz, 0, sizeof(float) * l->b.ysize);
        memset(l->b.dy, 0, sizeof(float) * l->b.ysize);
        if (din != NULL)
            memset(din, 0, sizeof(float) * L[i - 1].b.ysize);
        ms[T_ZERO] += now_ms() - t;

        t = now_ms();
        cpu_silu_backward(ctx, l->z, l->dact, l->dz, l->b.ysize);
        ms[T_SILU] += now_ms() - t;
        t = now_ms();
        cpu_batchnorm_backward(ctx, &l->bn, l->b.y, l->gamma, l->smean,
                               l->sinv, l->dz, l->b.dy, l->dgamma,
                               l->dbeta);
        ms[T_BN] += now_ms() - t;
        t = now_ms();
        cpu_conv2d_backward(ctx, &l->conv, in, l->b.w, l->b.dy, din,
                            l->b.dw, NULL);
        ms[T_CONV] += now_ms() - t;
    }
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int repeats = argc > 2 ? atoi(argv[2]) : 20;
    int with_yolo = argc > 3 && strcmp(argv[3], "yolo") == 0;
    struct kctx ctx;
    double conv_total = 0.0;

    if (repeats < 1)
        repeats = 1;
    if (argc > 4)
        conv2d_gemm_set_col_budget((size_t)atol(argv[4]));
    cpu_kctx_init(&ctx, threads);
    printf("threads %d, batch %d, median of %d runs\n", threads, BATCH,
           repeats);

    int h = 28;
    for (int layer = 0; layer < LAYERS; layer++) {
        struct conv2d_shape s;
        double best;
        layer_shape(layer, h, &s);
        printf("layer %d, ", layer + 1);
        bench_shape(&ctx, &s, layer == 0, repeats, &best);
        conv_total += best;
        h = s.h_out;
    }
    printf("convolutions, best path per layer: %.2f ms per batch\n",
           conv_total);

    if (with_yolo) {
        printf("\nYOLO-sized shapes (batch 4):\n");
        for (size_t i = 0; i < sizeof(yolo) / sizeof(yolo[0]); i++) {
            struct conv2d_shape s = yolo[i];
            double best;
            if (conv2d_shape_init(&s) == 0)
                bench_shape(&ctx, &s, 0, repeats, &best);
        }
    }

    struct net_layer L[LAYERS];
    unsigned seed = 99u;
    net_init(L, &seed);
    double *step_ms = malloc(sizeof(double) * (size_t)repeats);
    double parts[T_COUNT] = {0};
    for (int r = -2; r < repeats; r++) {
        double ignored[T_COUNT] = {0};
        double t0 = now_ms();
        net_step(&ctx, L, r >= 0 ? parts : ignored);
        if (r >= 0)
            step_ms[r] = now_ms() - t0;
    }
    double step = median(step_ms, repeats);
    printf("network step (conv, BN, SiLU forward + backward): %.2f ms, "
           "%.0f images/s\n", step, BATCH / step * 1e3);
    printf("  mean per step:");
    for (int i = 0; i < T_COUNT; i++)
        printf(" %s %.2f ms", time_names[i], parts[i] / repeats);
    printf("\n");

    free(step_ms);
    cpu_kctx_free(&ctx);
    return 0;
}
