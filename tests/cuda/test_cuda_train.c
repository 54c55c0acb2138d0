/*
 * Training on a CUDA device against training on the CPU. The network of
 * tests/fixtures/ref-cls.yaml (Conv, C2f with shortcut, SPPF, Classify)
 * is built twice from the same seed, once per device, and both run the
 * same forward, backward and optimizer steps on the same random batch.
 * Then the real train program trains with device=0 for two epochs on a
 * small generated data set, and, with or without a GPU, must reject a
 * device it cannot use with exit status 1 and the reason.
 *
 * Tolerances. Both devices compute in float32 (TF32 is off, the kctx
 * default). But cuDNN, cuBLAS and the GPU's tree reductions add in other
 * orders than oneDNN, OpenBLAS and the CPU's blocked sums. So each
 * operation may differ by a few units in the last place, and the
 * differences grow through the layers. An error is measured as in
 * tests/unit/test_engine_reference.c, against the largest magnitude of
 * the CPU tensor: max |gpu - cpu| <= tol * max(|cpu|, 1e-3).
 *
 * - Logits, loss and weights after steps: 1e-4. Rounding differences are
 *   near 1e-7 per operation; a wrong index or a lost accumulation gives
 *   errors of order 1e-2 to 1. An SGD step moves a weight by about
 *   lr * grad, so the gradient tolerance below adds only 0.01 * 2e-3 of a
 *   gradient to the weights' error.
 * - Gradients: 2e-3, because batch-norm backward subtracts nearly equal
 *   sums (dy minus its mean and its projection on x-hat), which turns the
 *   sums' rounding differences into larger relative errors.
 * - Initial weights, checkpoints and zeroed gradients: exact, because
 *   they are copies, not arithmetic.
 *
 * Without a usable CUDA device each test that needs one prints
 * "SKIP cuda: ..." with the reason and is reported as skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cuda/kernels_cuda.h"
#include "engine/args.h"
#include "engine/checkpoint.h"
#include "engine/device.h"
#include "engine/image.h"
#include "engine/net.h"
#include "engine/optim.h"
#include "fsutil.h"

#define MODEL "tests/fixtures/ref-cls.yaml"
#define TINY_MODEL "tests/fixtures/tiny-cls.yaml"
#define BATCH 8
#define IMGSZ 32
#define LR 0.01f

/* Tolerances, explained in the file comment. */
#define TOL_VALUES 1e-4
#define TOL_GRADS 2e-3

static char no_gpu_reason[256];
static int gpu_count;
static char workdir[PATH_MAX];

/* ---- Setup, skipping, temporary folders --------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    gpu_count = cuda_device_count(no_gpu_reason, sizeof(no_gpu_reason));
    snprintf(workdir, sizeof(workdir), "%s/trainyard-cuda-train-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(workdir) == NULL) {
        fprintf(stderr, "failed to create a temporary folder from %s\n",
                workdir);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (getenv("KEEP") == NULL)
        nftw(workdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    else
        printf("kept %s\n", workdir);
    return 0;
}

static void require_gpu(void)
{
    if (gpu_count == 0) {
        printf("SKIP cuda: no usable CUDA device (%s)\n", no_gpu_reason);
        fflush(stdout);
        skip();
    }
}

/* ---- Random batch ------------------------------------------------------- */

static uint64_t rng_state;

/* splitmix64, uniform in [0, 1) from 24 bits. */
static float rng_unit(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) / 16777216.0f;
}

/* ---- Two networks, one per device --------------------------------------- */

struct pair {
    struct model_spec spec;
    struct device cpu_dev, gpu_dev;
    struct net cpu, gpu;
    float *x_host;
    int32_t labels_host[BATCH];
    float *x_gpu; /* device copies of the batch */
    int32_t *labels_gpu;
};

static void gpu_check(struct pair *p, const char *label)
{
    struct error err = {0};

    if (p->gpu_dev.ops->synchronize(&p->gpu_dev.ctx, &err) != 0 ||
        net_check(&p->gpu, &err) != 0)
        fail_msg("%s on the GPU: %s", label, err.msg);
}

static void pair_build(struct pair *p, const char *model)
{
    struct error err = {0};

    memset(p, 0, sizeof(*p));
    if (model_spec_load(model, "", 0, &p->spec, &err) != 0)
        fail_msg("%s", err.msg);
    if (device_open(&p->cpu_dev, "cpu", 0, &err) != 0 ||
        device_open(&p->gpu_dev, "0", 0, &err) != 0)
        fail_msg("%s", err.msg);
    if (net_build_on(&p->cpu, &p->spec, IMGSZ, IMGSZ, BATCH, 7, &p->cpu_dev,
                     &err) != 0 ||
        net_build_on(&p->gpu, &p->spec, IMGSZ, IMGSZ, BATCH, 7, &p->gpu_dev,
                     &err) != 0)
        fail_msg("%s", err.msg);

    size_t count = (size_t)BATCH * p->spec.in_c * IMGSZ * IMGSZ;
    p->x_host = malloc(count * sizeof(float));
    assert_non_null(p->x_host);
    rng_state = 11;
    for (size_t i = 0; i < count; i++)
        p->x_host[i] = rng_unit();
    for (int i = 0; i < BATCH; i++)
        p->labels_host[i] = (int32_t)(rng_unit() * p->spec.classes);

    const struct kernel_ops *ops = p->gpu_dev.ops;
    p->x_gpu = ops->alloc(&p->gpu_dev.ctx, count * sizeof(float), &err);
    p->labels_gpu = ops->alloc(&p->gpu_dev.ctx, sizeof(p->labels_host), &err);
    if (p->x_gpu == NULL || p->labels_gpu == NULL ||
        ops->copy_to_device(&p->gpu_dev.ctx, p->x_gpu, p->x_host,
                            count * sizeof(float), &err) != 0 ||
        ops->copy_to_device(&p->gpu_dev.ctx, p->labels_gpu, p->labels_host,
                            sizeof(p->labels_host), &err) != 0)
        fail_msg("uploading the batch: %s", err.msg);
}

static void pair_free(struct pair *p)
{
    p->gpu_dev.ops->release(&p->gpu_dev.ctx, p->x_gpu);
    p->gpu_dev.ops->release(&p->gpu_dev.ctx, p->labels_gpu);
    net_free(&p->cpu);
    net_free(&p->gpu);
    device_close(&p->cpu_dev);
    device_close(&p->gpu_dev);
    free(p->x_host);
}

/* Forward and backward of the batch on one network; returns the loss. */
static float forward_backward(struct net *net, const float *x,
                              const int32_t *labels)
{
    struct layer *last = &net->layers[net->nlayers - 1];

    net_zero_grad(net);
    net_forward(net, x, BATCH, 1);
    float loss = net->ops->softmax_xent_forward_backward(
        net->ctx, BATCH, net->classes, last->out, labels, 1.0f, NULL,
        last->dout);
    net_backward(net);
    return loss;
}

static void both_forward_backward(struct pair *p, float *cpu_loss,
                                  float *gpu_loss)
{
    *cpu_loss = forward_backward(&p->cpu, p->x_host, p->labels_host);
    *gpu_loss = forward_backward(&p->gpu, p->x_gpu, p->labels_gpu);
    gpu_check(p, "forward and backward");
}

/* SGD as tests/unit/test_engine_reference.c steps: weight decay 5e-4 on
 * weights only. */
static void sgd_step(struct net *net)
{
    for (int i = 0; i < net->nparams; i++) {
        struct param *prm = &net->params[i];
        float decay = prm->group == PARAM_WEIGHT ? 5e-4f : 0.0f;
        net->ops->sgd_step(net->ctx, prm->n, prm->data, prm->grad, prm->state_a,
                           LR, 0.9f, decay, 1);
    }
}

/* ---- Comparisons -------------------------------------------------------- */

/* A copy of n floats of a GPU array in host memory; free it. */
static float *download(struct pair *p, const float *array, size_t n)
{
    struct error err = {0};
    float *host = malloc((n ? n : 1) * sizeof(float));

    assert_non_null(host);
    if (net_array_to_host(&p->gpu, host, array, n, &err) != 0)
        fail_msg("copying %zu floats to the host: %s", n, err.msg);
    return host;
}

/* Fail with the worst element when gpu differs from cpu by more than
 * tol times the largest |cpu| (at least 1e-3). */
static void expect_close(const char *label, const float *gpu, const float *cpu,
                         size_t n, double tol)
{
    double scale = 1e-3, worst = 0;
    size_t at = 0;

    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)cpu[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)gpu[i] - (double)cpu[i]);
        if (isnan(d) || d > worst) {
            worst = isnan(d) ? INFINITY : d;
            at = i;
        }
    }
    if (worst > tol * scale)
        fail_msg("%s: element %zu is %.8g on the GPU and %.8g on the CPU "
                 "(error %.3g, allowed %.3g)",
                 label, at, (double)gpu[at], (double)cpu[at], worst,
                 tol * scale);
}

static void expect_array_close(struct pair *p, const char *label,
                               const float *gpu_array, const float *cpu_array,
                               size_t n, double tol)
{
    float *gpu = download(p, gpu_array, n);

    expect_close(label, gpu, cpu_array, n, tol);
    free(gpu);
}

static void expect_array_equal(struct pair *p, const char *label,
                               const float *gpu_array, const float *cpu_array,
                               size_t n)
{
    float *gpu = download(p, gpu_array, n);

    if (memcmp(gpu, cpu_array, n * sizeof(float)) != 0) {
        size_t i = 0;
        while (memcmp(&gpu[i], &cpu_array[i], sizeof(float)) == 0)
            i++;
        fail_msg("%s: element %zu is %.9g on the GPU and %.9g on the CPU; "
                 "expected the same bits",
                 label, i, (double)gpu[i], (double)cpu_array[i]);
    }
    free(gpu);
}

/* Weights and batch-norm statistics of both networks within tol. */
static void expect_state_close(struct pair *p, const char *when, double tol)
{
    char label[160];

    for (int i = 0; i < p->cpu.nparams; i++) {
        snprintf(label, sizeof(label), "%s: %s", when, p->cpu.params[i].name);
        expect_array_close(p, label, p->gpu.params[i].data,
                           p->cpu.params[i].data, p->cpu.params[i].n, tol);
    }
    for (int i = 0; i < p->cpu.nbuffers; i++) {
        snprintf(label, sizeof(label), "%s: %s", when, p->cpu.buffers[i].name);
        expect_array_close(p, label, p->gpu.buffers[i].data,
                           p->cpu.buffers[i].data, p->cpu.buffers[i].n, tol);
    }
}

/* ---- The network on both devices ---------------------------------------- */

static void initial_weights_equal(void **state)
{
    struct pair p;

    (void)state;
    require_gpu();
    pair_build(&p, MODEL);
    assert_int_equal(p.gpu.nparams, p.cpu.nparams);
    assert_int_equal(p.gpu.nbuffers, p.cpu.nbuffers);
    for (int i = 0; i < p.cpu.nparams; i++) {
        const struct param *c = &p.cpu.params[i], *g = &p.gpu.params[i];
        assert_string_equal(g->name, c->name);
        assert_int_equal(g->n, c->n);
        expect_array_equal(&p, c->name, g->data, c->data, c->n);
        expect_array_equal(&p, c->name, g->ema, c->ema, c->n);
    }
    for (int i = 0; i < p.cpu.nbuffers; i++) {
        const struct buffer *c = &p.cpu.buffers[i], *g = &p.gpu.buffers[i];
        expect_array_equal(&p, c->name, g->data, c->data, c->n);
        expect_array_equal(&p, c->name, g->ema, c->ema, c->n);
    }
    pair_free(&p);
}

static void forward_backward_matches_cpu(void **state)
{
    struct pair p;
    float cpu_loss, gpu_loss;

    (void)state;
    require_gpu();
    pair_build(&p, MODEL);
    both_forward_backward(&p, &cpu_loss, &gpu_loss);

    const struct layer *cl = &p.cpu.layers[p.cpu.nlayers - 1];
    const struct layer *gl = &p.gpu.layers[p.gpu.nlayers - 1];
    size_t nlogits = (size_t)BATCH * (size_t)p.spec.classes;
    expect_array_close(&p, "logits", gl->out, cl->out, nlogits, TOL_VALUES);
    expect_close("loss", &gpu_loss, &cpu_loss, 1, TOL_VALUES);
    expect_array_close(&p, "dlogits", gl->dout, cl->dout, nlogits, TOL_VALUES);
    for (int i = 0; i < p.cpu.nparams; i++)
        expect_array_close(&p, p.cpu.params[i].name, p.gpu.params[i].grad,
                           p.cpu.params[i].grad, p.cpu.params[i].n, TOL_GRADS);
    pair_free(&p);
}

/* Three SGD steps, then a forward pass in inference mode, which uses the
 * running statistics the steps updated. */
static void sgd_steps_match_cpu(void **state)
{
    struct pair p;
    float cpu_loss, gpu_loss;

    (void)state;
    require_gpu();
    pair_build(&p, MODEL);
    for (int step = 1; step <= 3; step++) {
        both_forward_backward(&p, &cpu_loss, &gpu_loss);
        sgd_step(&p.cpu);
        sgd_step(&p.gpu);
        gpu_check(&p, "sgd step");
        if (step == 1)
            expect_state_close(&p, "after step 1", TOL_VALUES);
    }
    expect_state_close(&p, "after step 3", TOL_VALUES);

    net_forward(&p.cpu, p.x_host, BATCH, 0);
    net_forward(&p.gpu, p.x_gpu, BATCH, 0);
    gpu_check(&p, "inference forward");
    const struct layer *cl = &p.cpu.layers[p.cpu.nlayers - 1];
    const struct layer *gl = &p.gpu.layers[p.gpu.nlayers - 1];
    expect_array_close(&p, "inference logits", gl->out, cl->out,
                       (size_t)BATCH * (size_t)p.spec.classes, TOL_VALUES);
    pair_free(&p);
}

/* optim_step as the trainer calls it: gradient clipping (sumsq, scale),
 * SGD, clearing the gradients, and the EMA of weights and statistics. */
static void optimizer_step_matches_cpu(void **state)
{
    struct pair p;
    struct train_args args;
    struct optimizer cpu_opt, gpu_opt;
    struct error err = {0};
    float cpu_loss, gpu_loss;

    (void)state;
    require_gpu();
    pair_build(&p, MODEL);
    args_defaults(&args);
    snprintf(args.optimizer, sizeof(args.optimizer), "SGD");
    args.batch = BATCH;
    if (optim_init(&cpu_opt, &args, 100, p.spec.classes, 10, &err) != 0)
        fail_msg("%s", err.msg);
    /* Past the warm-up, so that every group has the same rate. */
    for (int g = 0; g < 3; g++)
        cpu_opt.lr[g] = LR;
    cpu_opt.cur_momentum = 0.9;
    gpu_opt = cpu_opt;

    for (int step = 0; step < 2; step++) {
        both_forward_backward(&p, &cpu_loss, &gpu_loss);
        optim_step(&cpu_opt, &p.cpu);
        optim_step(&gpu_opt, &p.gpu);
        gpu_check(&p, "optim_step");
    }
    expect_state_close(&p, "after optim_step", TOL_VALUES);
    for (int i = 0; i < p.cpu.nparams; i++) {
        const struct param *c = &p.cpu.params[i], *g = &p.gpu.params[i];
        char label[160];
        snprintf(label, sizeof(label), "ema of %s", c->name);
        expect_array_close(&p, label, g->ema, c->ema, c->n, TOL_VALUES);
        snprintf(label, sizeof(label), "velocity of %s", c->name);
        expect_array_close(&p, label, g->state_a, c->state_a, c->n, TOL_GRADS);
        snprintf(label, sizeof(label), "cleared gradient of %s", c->name);
        expect_array_equal(&p, label, g->grad, c->grad, c->n);
    }
    for (int i = 0; i < p.cpu.nbuffers; i++) {
        const struct buffer *c = &p.cpu.buffers[i], *g = &p.gpu.buffers[i];
        expect_array_close(&p, c->name, g->ema, c->ema, c->n, TOL_VALUES);
    }
    pair_free(&p);
}

/* A checkpoint written from GPU memory loads on the CPU with the same
 * bits: the format does not depend on the device. */
static void checkpoint_from_gpu_loads_on_cpu(void **state)
{
    static struct checkpoint ck;
    struct pair p;
    struct train_args args;
    struct train_state st;
    struct optimizer opt;
    struct error err = {0};
    struct net loaded;
    struct kctx ctx;
    char path[PATH_MAX + 32];
    float cpu_loss, gpu_loss;

    (void)state;
    require_gpu();
    pair_build(&p, MODEL);
    both_forward_backward(&p, &cpu_loss, &gpu_loss);
    sgd_step(&p.gpu);
    gpu_check(&p, "sgd step");

    args_defaults(&args);
    memset(&st, 0, sizeof(st));
    if (optim_init(&opt, &args, 100, p.spec.classes, 10, &err) != 0)
        fail_msg("%s", err.msg);
    snprintf(path, sizeof(path), "%s/gpu.ckpt", workdir);
    if (ckpt_write(path, &p.gpu, &p.spec, &args, &st, &opt, IMGSZ, "a\nb",
                   &err) != 0 ||
        ckpt_open(path, &ck, &err) != 0)
        fail_msg("%s", err.msg);
    cpu_kctx_init(&ctx, 0);
    if (net_build(&loaded, &ck.spec, IMGSZ, IMGSZ, BATCH, 1, &ctx, &err) != 0 ||
        ckpt_load_tensors(&ck, &loaded, &err) != 0)
        fail_msg("%s", err.msg);
    for (int i = 0; i < loaded.nparams; i++) {
        const struct param *c = &loaded.params[i], *g = &p.gpu.params[i];
        expect_array_equal(&p, c->name, g->data, c->data, c->n);
        expect_array_equal(&p, c->name, g->ema, c->ema, c->n);
        expect_array_equal(&p, c->name, g->grad, c->grad, c->n);
        expect_array_equal(&p, c->name, g->state_a, c->state_a, c->n);
        expect_array_equal(&p, c->name, g->state_b, c->state_b, c->n);
    }
    for (int i = 0; i < loaded.nbuffers; i++) {
        const struct buffer *c = &loaded.buffers[i];
        const struct buffer *g = &p.gpu.buffers[i];
        expect_array_equal(&p, c->name, g->data, c->data, c->n);
        expect_array_equal(&p, c->name, g->ema, c->ema, c->n);
    }
    ckpt_close(&ck);
    net_free(&loaded);
    cpu_kctx_free(&ctx);
    pair_free(&p);
}

/* ---- The train program -------------------------------------------------- */

/* Path of the train program under test: $TRAINYARD_TRAIN, else
 * $BUILD/bin/train (BUILD defaults to "build"), the program that the
 * Makefile links with CUDA support. */
static void train_program(char *out, size_t len)
{
    const char *explicit_path = getenv("TRAINYARD_TRAIN");
    const char *build = getenv("BUILD");

    if (explicit_path != NULL)
        snprintf(out, len, "%s", explicit_path);
    else
        snprintf(out, len, "%s/bin/train", build ? build : "build");
}

/* Run train with the given arguments (NULL-terminated), output appended
 * to log; returns the wait status. */
static int run_train(const char *const *args, const char *log)
{
    char prog[PATH_MAX];
    char *argv[32];
    int n = 0, status;

    train_program(prog, sizeof(prog));
    if (access(prog, X_OK) != 0)
        fail_msg("%s is not an executable; build it with make", prog);
    argv[n++] = prog;
    for (int i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static char *read_text(const char *path)
{
    struct error err = {0};
    char *data = NULL;

    if (fs_read_file(path, 1 << 20, &data, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    return data;
}

/* Three classes of 16x16 PNGs whose pattern depends on the class: a
 * horizontal ramp, a vertical ramp, and the pattern x XOR y. */
static void write_images(const char *root, const char *split, int per_class)
{
    struct error err = {0};
    unsigned char px[16 * 16 * 3];
    char dir[PATH_MAX + 64], path[PATH_MAX + 96];

    for (int c = 0; c < 3; c++) {
        snprintf(dir, sizeof(dir), "%s/%s/class%d", root, split, c);
        if (fs_mkdir_p(dir, 0755, &err) != 0)
            fail_msg("%s", err.msg);
        for (int i = 0; i < per_class; i++) {
            for (int y = 0; y < 16; y++) {
                for (int x = 0; x < 16; x++) {
                    int v = (x ^ y) * 16;
                    if (c == 0)
                        v = x * 16;
                    else if (c == 1)
                        v = y * 16;
                    for (int ch = 0; ch < 3; ch++)
                        px[(y * 16 + x) * 3 + ch] =
                            (unsigned char)((v + 5 * i + 40 * ch) & 255);
                }
            }
            snprintf(path, sizeof(path), "%s/%d.png", dir, i);
            if (image_write_png(path, px, 16, 16, 3, 8, &err) != 0)
                fail_msg("%s", err.msg);
        }
    }
}

static void train_program_runs_on_gpu(void **state)
{
    char data[PATH_MAX + 16], project[PATH_MAX + 16], log[PATH_MAX + 16];
    char data_arg[PATH_MAX + 32], project_arg[PATH_MAX + 32];
    char path[PATH_MAX + 64];

    (void)state;
    require_gpu();
    snprintf(data, sizeof(data), "%s/data", workdir);
    snprintf(project, sizeof(project), "%s/runs", workdir);
    snprintf(log, sizeof(log), "%s/gpu.log", workdir);
    write_images(data, "train", 16);
    write_images(data, "val", 4);
    snprintf(data_arg, sizeof(data_arg), "data=%s", data);
    snprintf(project_arg, sizeof(project_arg), "project=%s", project);
    const char *args[] = {
        data_arg,  project_arg, "name=gpu", "model=" TINY_MODEL, "epochs=2",
        "batch=8", "imgsz=16",  "device=0", "exist_ok=true",     NULL};

    int status = run_train(args, log);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char *text = read_text(log);
        fail_msg("train device=0 exited with status %d; its output:\n%s",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1, text);
    }

    char *text = read_text(log);
    assert_non_null(strstr(text, "on cuda:0"));
    free(text);
    snprintf(path, sizeof(path), "%s/gpu/weights/last.ckpt", project);
    assert_int_equal(access(path, R_OK), 0);
    snprintf(path, sizeof(path), "%s/gpu/results.csv", project);
    char *csv = read_text(path);
    int lines = 0;
    for (char *c = csv; *c != '\0'; c++)
        lines += *c == '\n';
    /* The header and one row per epoch. */
    assert_int_equal(lines, 3);
    assert_null(strstr(csv, "nan"));
    free(csv);
}

/* Needs no GPU: without one, device=0 must fail with the reason that
 * cuda_device_count gives; with one, a device number past the last. */
static void train_program_rejects_unusable_device(void **state)
{
    char log[PATH_MAX + 32], data_arg[PATH_MAX + 32];

    (void)state;
    snprintf(log, sizeof(log), "%s/no-device.log", workdir);
    snprintf(data_arg, sizeof(data_arg), "data=%s/missing", workdir);
    const char *device = gpu_count > 0 ? "device=4096" : "device=0";
    const char *args[] = {data_arg, "model=" TINY_MODEL, device, NULL};

    int status = run_train(args, log);
    char *text = read_text(log);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 1)
        fail_msg("train %s: expected exit status 1, got wait status %d; "
                 "its output:\n%s",
                 device, status, text);
    if (gpu_count > 0) {
        assert_non_null(strstr(text, "device=4096: CUDA device 4096 not "
                                     "found"));
    } else {
        assert_non_null(strstr(text, "device=0: no usable CUDA device"));
        if (strstr(text, no_gpu_reason) == NULL)
            fail_msg("the message does not name the reason '%s':\n%s",
                     no_gpu_reason, text);
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(initial_weights_equal),
        cmocka_unit_test(forward_backward_matches_cpu),
        cmocka_unit_test(sgd_steps_match_cpu),
        cmocka_unit_test(optimizer_step_matches_cpu),
        cmocka_unit_test(checkpoint_from_gpu_loads_on_cpu),
        cmocka_unit_test(train_program_runs_on_gpu),
        cmocka_unit_test(train_program_rejects_unusable_device),
    };

    return cmocka_run_group_tests_name("cuda train", tests, group_setup,
                                       group_teardown);
}
