/*
 * Tests of the fully connected layer, softmax cross-entropy and BCE with
 * logits: CPU against reference on small random tensors, backwards of
 * both against central finite differences.
 *
 * Tolerances:
 * - Linear, CPU against reference: atol = rtol = 1e-5; each output sums
 *   at most 13 float products in the CPU's GEMM, the reference in double.
 * - Losses, CPU against reference: 1e-6; both reduce in double, the CPU
 *   takes exp and log per element in float or double.
 * - Finite differences: the linear layer is linear, so only rounding
 *   counts: eps = 0.05 and outputs of size ~3 give ~1e-5. The losses are
 *   smooth with third derivatives below 1 on these inputs; eps = 1e-2
 *   gives truncation ~2e-5, and each perturbation changes one row's or
 *   one element's term, whose float rounding moves the quotient by about
 *   1e-5. atol = rtol = 1e-3 for all.
 */
#include "kernel_check.h"

#include "kernels.h"
#include "ref/ref.h"

#define FD_TOL 1e-3

/* ---- Linear -------------------------------------------------------------- */

struct linear_case {
    int n, in, out, bias;
};

static const struct linear_case linear_cases[] = {
    {1, 7, 3, 1}, {5, 13, 10, 1}, {4, 6, 1, 0}, {3, 1, 4, 1},
};
#define LINEAR_COUNT (sizeof(linear_cases) / sizeof(linear_cases[0]))

struct linear_data {
    struct kctx *ctx;
    int n, in, out;
    float *x, *w, *b, *r, *y;
    int use_ref;
};

static void linear_data_init(struct linear_data *d,
                             const struct linear_case *c, struct kctx *ctx,
                             uint64_t seed)
{
    struct test_rng rng;
    size_t xs = (size_t)c->n * c->in, ws = (size_t)c->out * c->in;
    size_t ys = (size_t)c->n * c->out;

    rng_seed(&rng, seed);
    d->ctx = ctx;
    d->n = c->n;
    d->in = c->in;
    d->out = c->out;
    d->x = new_floats(xs);
    d->w = new_floats(ws);
    d->b = c->bias ? new_floats((size_t)c->out) : NULL;
    d->r = new_floats(ys);
    d->y = new_floats(ys);
    fill_uniform(&rng, d->x, xs, -1.0f, 1.0f);
    fill_uniform(&rng, d->w, ws, -1.0f, 1.0f);
    if (d->b != NULL)
        fill_uniform(&rng, d->b, (size_t)c->out, -1.0f, 1.0f);
    fill_uniform(&rng, d->r, ys, -1.0f, 1.0f);
    d->use_ref = 0;
}

static void linear_data_free(struct linear_data *d)
{
    free(d->x);
    free(d->w);
    free(d->b);
    free(d->r);
    free(d->y);
}

static void linear_forward_matches_ref(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);
        for (size_t i = 0; i < LINEAR_COUNT; i++) {
            struct linear_data d;
            char what[64];
            linear_data_init(&d, &linear_cases[i], &ctx, 10 + i);
            size_t ys = (size_t)d.n * d.out;
            float *want = new_floats(ys);

            cpu_linear_forward(&ctx, d.n, d.in, d.out, d.x, d.w, d.b, d.y);
            ref_linear_forward(NULL, d.n, d.in, d.out, d.x, d.w, d.b, want);
            snprintf(what, sizeof(what), "linear y case %zu, %d threads", i,
                     threads);
            CHECK_CLOSE(what, want, d.y, ys, 1e-5, 1e-5);
            free(want);
            linear_data_free(&d);
        }
        cpu_kctx_free(&ctx);
    }
}

struct linear_grads {
    float *dx, *dw, *db;
};

static void linear_grads_init(struct linear_grads *g,
                              const struct linear_data *d, uint64_t seed)
{
    struct test_rng rng;
    size_t xs = (size_t)d->n * d->in, ws = (size_t)d->out * d->in;

    rng_seed(&rng, seed);
    g->dx = new_floats(xs);
    g->dw = new_floats(ws);
    g->db = new_floats((size_t)d->out);
    if (seed != 0) {
        fill_uniform(&rng, g->dx, xs, -1.0f, 1.0f);
        fill_uniform(&rng, g->dw, ws, -1.0f, 1.0f);
        fill_uniform(&rng, g->db, (size_t)d->out, -1.0f, 1.0f);
    }
}

static void linear_grads_free(struct linear_grads *g)
{
    free(g->dx);
    free(g->dw);
    free(g->db);
}

static void linear_backward_matches_ref(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);
        for (size_t i = 0; i < LINEAR_COUNT; i++) {
            struct linear_data d;
            struct linear_grads got, want;
            char what[64];
            linear_data_init(&d, &linear_cases[i], &ctx, 20 + i);
            linear_grads_init(&got, &d, 3);
            linear_grads_init(&want, &d, 3);

            cpu_linear_backward(&ctx, d.n, d.in, d.out, d.x, d.w, d.r,
                                got.dx, got.dw, got.db);
            ref_linear_backward(NULL, d.n, d.in, d.out, d.x, d.w, d.r,
                                want.dx, want.dw, want.db);
            snprintf(what, sizeof(what), "linear dx case %zu, %d threads",
                     i, threads);
            CHECK_CLOSE(what, want.dx, got.dx, (size_t)d.n * d.in, 1e-5,
                        1e-5);
            snprintf(what, sizeof(what), "linear dw case %zu, %d threads",
                     i, threads);
            CHECK_CLOSE(what, want.dw, got.dw, (size_t)d.out * d.in, 1e-5,
                        1e-5);
            snprintf(what, sizeof(what), "linear db case %zu, %d threads",
                     i, threads);
            CHECK_CLOSE(what, want.db, got.db, (size_t)d.out, 1e-5, 1e-5);
            linear_grads_free(&got);
            linear_grads_free(&want);
            linear_data_free(&d);
        }
        cpu_kctx_free(&ctx);
    }
}

static double linear_loss(void *state)
{
    struct linear_data *d = state;

    if (d->use_ref)
        ref_linear_forward(NULL, d->n, d->in, d->out, d->x, d->w, d->b,
                           d->y);
    else
        cpu_linear_forward(d->ctx, d->n, d->in, d->out, d->x, d->w, d->b,
                           d->y);
    return weighted_sum(d->r, d->y, (size_t)d->n * d->out);
}

static void linear_backward_matches_fd(void **state)
{
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (size_t i = 0; i < LINEAR_COUNT; i++) {
        for (int use_ref = 0; use_ref <= 1; use_ref++) {
            struct linear_data d;
            struct linear_grads g;
            char what[64];
            linear_data_init(&d, &linear_cases[i], &ctx, 30 + i);
            d.use_ref = use_ref;
            linear_grads_init(&g, &d, 0);
            size_t xs = (size_t)d.n * d.in, ws = (size_t)d.out * d.in;

            if (use_ref)
                ref_linear_backward(NULL, d.n, d.in, d.out, d.x, d.w, d.r,
                                    g.dx, g.dw, g.db);
            else
                cpu_linear_backward(&ctx, d.n, d.in, d.out, d.x, d.w, d.r,
                                    g.dx, g.dw, g.db);

            double *fd_x = new_doubles(xs), *fd_w = new_doubles(ws);
            finite_diff(linear_loss, &d, d.x, xs, 0.05f, fd_x);
            finite_diff(linear_loss, &d, d.w, ws, 0.05f, fd_w);
            const char *impl = use_ref ? "ref" : "cpu";
            snprintf(what, sizeof(what), "linear dx vs fd case %zu, %s", i,
                     impl);
            CHECK_CLOSE_D(what, fd_x, g.dx, xs, FD_TOL, FD_TOL);
            snprintf(what, sizeof(what), "linear dw vs fd case %zu, %s", i,
                     impl);
            CHECK_CLOSE_D(what, fd_w, g.dw, ws, FD_TOL, FD_TOL);
            if (d.b != NULL) {
                double *fd_b = new_doubles((size_t)d.out);
                finite_diff(linear_loss, &d, d.b, (size_t)d.out, 0.05f,
                            fd_b);
                snprintf(what, sizeof(what), "linear db vs fd case %zu, %s",
                         i, impl);
                CHECK_CLOSE_D(what, fd_b, g.db, (size_t)d.out, FD_TOL,
                              FD_TOL);
                free(fd_b);
            }
            free(fd_x);
            free(fd_w);
            linear_grads_free(&g);
            linear_data_free(&d);
        }
    }
    cpu_kctx_free(&ctx);
}

/* Twice into zeros doubles one call; each NULL gradient is skipped while
 * the others keep their values. */
static void linear_backward_accumulates_and_skips_null(void **state)
{
    struct kctx ctx;
    struct linear_data d;
    struct linear_grads once, twice;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    linear_data_init(&d, &linear_cases[1], &ctx, 40);
    size_t xs = (size_t)d.n * d.in, ws = (size_t)d.out * d.in;
    size_t bs = (size_t)d.out;
    linear_grads_init(&once, &d, 0);
    linear_grads_init(&twice, &d, 0);

    cpu_linear_backward(&ctx, d.n, d.in, d.out, d.x, d.w, d.r, once.dx,
                        once.dw, once.db);
    for (int k = 0; k < 2; k++)
        cpu_linear_backward(&ctx, d.n, d.in, d.out, d.x, d.w, d.r,
                            twice.dx, twice.dw, twice.db);
    float *zero = new_floats(xs + ws + bs);
    for (int mask = 0; mask < 7; mask++) {
        struct linear_grads some;
        char what[48];
        linear_grads_init(&some, &d, 0);
        cpu_linear_backward(&ctx, d.n, d.in, d.out, d.x, d.w, d.r,
                            mask & 1 ? some.dx : NULL,
                            mask & 2 ? some.dw : NULL,
                            mask & 4 ? some.db : NULL);
        snprintf(what, sizeof(what), "dx, mask %d", mask);
        CHECK_CLOSE(what, mask & 1 ? once.dx : zero, some.dx, xs, 0.0, 0.0);
        snprintf(what, sizeof(what), "dw, mask %d", mask);
        CHECK_CLOSE(what, mask & 2 ? once.dw : zero, some.dw, ws, 0.0, 0.0);
        snprintf(what, sizeof(what), "db, mask %d", mask);
        CHECK_CLOSE(what, mask & 4 ? once.db : zero, some.db, bs, 0.0, 0.0);
        linear_grads_free(&some);
    }

    for (size_t i = 0; i < xs; i++)
        once.dx[i] *= 2.0f;
    for (size_t i = 0; i < ws; i++)
        once.dw[i] *= 2.0f;
    for (size_t i = 0; i < bs; i++)
        once.db[i] *= 2.0f;
    CHECK_CLOSE("dx twice", once.dx, twice.dx, xs, 1e-6, 1e-6);
    CHECK_CLOSE("dw twice", once.dw, twice.dw, ws, 1e-6, 1e-6);
    CHECK_CLOSE("db twice", once.db, twice.db, bs, 1e-6, 1e-6);

    free(zero);
    linear_grads_free(&once);
    linear_grads_free(&twice);
    linear_data_free(&d);
    cpu_kctx_free(&ctx);
}

/* ---- Softmax cross-entropy ------------------------------------------------ */

struct xent_data {
    struct kctx *ctx;
    int n, classes;
    float *logits, *dlogits;
    int32_t *labels;
    int use_ref;
};

static void xent_data_init(struct xent_data *d, struct kctx *ctx, int n,
                           int classes, float spread, uint64_t seed)
{
    struct test_rng rng;
    size_t size = (size_t)n * classes;

    rng_seed(&rng, seed);
    d->ctx = ctx;
    d->n = n;
    d->classes = classes;
    d->logits = new_floats(size);
    d->dlogits = new_floats(size);
    d->labels = calloc((size_t)n, sizeof(int32_t));
    assert_non_null(d->labels);
    fill_uniform(&rng, d->logits, size, -spread, spread);
    for (int i = 0; i < n; i++)
        d->labels[i] = (int32_t)(rng_next(&rng) % (uint64_t)classes);
    d->use_ref = 0;
}

static void xent_data_free(struct xent_data *d)
{
    free(d->logits);
    free(d->dlogits);
    free(d->labels);
}

static void xent_matches_ref(void **state)
{
    /* n, classes, logit spread: the last has logits of +-1000, where a
     * softmax without the max shift overflows. */
    const float shapes[][3] = {{1, 2, 3}, {7, 10, 3}, {4, 5, 1000}};

    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
            struct xent_data d;
            char what[64];
            int n = (int)shapes[i][0], k = (int)shapes[i][1];
            size_t size = (size_t)n * k;
            xent_data_init(&d, &ctx, n, k, shapes[i][2], 50 + i);
            float *probs = new_floats(size), *probs_ref = new_floats(size);
            float *dl_ref = new_floats(size);

            /* dlogits is overwritten: garbage in it must not matter. */
            for (size_t j = 0; j < size; j++)
                d.dlogits[j] = 123.0f;
            float loss = cpu_softmax_xent_forward_backward(
                &ctx, n, k, d.logits, d.labels, 0.5f, probs, d.dlogits);
            float want = ref_softmax_xent_forward_backward(
                NULL, n, k, d.logits, d.labels, 0.5f, probs_ref, dl_ref);

            snprintf(what, sizeof(what), "xent loss shape %zu, %d threads",
                     i, threads);
            CHECK_SCALAR(what, want, loss, 1e-6, 1e-6);
            assert_true(isfinite(loss));
            snprintf(what, sizeof(what), "xent probs shape %zu", i);
            CHECK_CLOSE(what, probs_ref, probs, size, 1e-6, 1e-6);
            snprintf(what, sizeof(what), "xent dlogits shape %zu", i);
            CHECK_CLOSE(what, dl_ref, d.dlogits, size, 1e-6, 1e-6);

            /* Without probs the gradient is the same. */
            float *dl2 = new_floats(size);
            float loss2 = cpu_softmax_xent_forward_backward(
                &ctx, n, k, d.logits, d.labels, 0.5f, NULL, dl2);
            CHECK_SCALAR("xent loss without probs", loss, loss2, 0.0, 0.0);
            CHECK_CLOSE("xent dlogits without probs", d.dlogits, dl2, size,
                        0.0, 0.0);
            free(dl2);
            free(probs);
            free(probs_ref);
            free(dl_ref);
            xent_data_free(&d);
        }
        cpu_kctx_free(&ctx);
    }
}

/* Two classes with logits 0 and ln 3: softmax (1/4, 3/4). With label 1
 * the loss is -ln(3/4) and dlogits = (1/4, -1/4) * scale / n. */
static void xent_by_hand(void **state)
{
    float logits[2] = {0.0f, (float)log(3.0)};
    int32_t label = 1;
    float probs[2], dl[2];
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 1);
    float loss = cpu_softmax_xent_forward_backward(&ctx, 1, 2, logits, &label,
                                                   2.0f, probs, dl);
    CHECK_SCALAR("loss", -log(0.75), loss, 1e-7, 1e-6);
    CHECK_SCALAR("p0", 0.25, probs[0], 1e-7, 1e-6);
    CHECK_SCALAR("dlogit 0", 0.5, dl[0], 1e-7, 1e-6);
    CHECK_SCALAR("dlogit 1", -0.5, dl[1], 1e-7, 1e-6);
    cpu_kctx_free(&ctx);
}

static double xent_loss(void *state)
{
    struct xent_data *d = state;

    if (d->use_ref)
        return ref_softmax_xent_forward_backward(NULL, d->n, d->classes,
                                                 d->logits, d->labels, 1.0f,
                                                 NULL, d->dlogits);
    return cpu_softmax_xent_forward_backward(d->ctx, d->n, d->classes,
                                             d->logits, d->labels, 1.0f,
                                             NULL, d->dlogits);
}

/* dlogits (scale 1) against finite differences of the returned loss. */
static void xent_matches_fd(void **state)
{
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (int use_ref = 0; use_ref <= 1; use_ref++) {
        struct xent_data d;
        size_t size = 6 * 5;
        xent_data_init(&d, &ctx, 6, 5, 3.0f, 60);
        d.use_ref = use_ref;
        xent_loss(&d);
        float *grad = copy_floats(d.dlogits, size);
        double *fd = new_doubles(size);

        finite_diff(xent_loss, &d, d.logits, size, 1e-2f, fd);
        CHECK_CLOSE_D(use_ref ? "xent vs fd, ref" : "xent vs fd, cpu", fd,
                      grad, size, FD_TOL, FD_TOL);
        free(grad);
        free(fd);
        xent_data_free(&d);
    }
    cpu_kctx_free(&ctx);
}

/* ---- BCE with logits ---------------------------------------------------- */

struct bce_data {
    struct kctx *ctx;
    size_t n;
    float *x, *t, *dx;
    int use_ref;
};

static double bce_loss(void *state)
{
    struct bce_data *d = state;

    if (d->use_ref)
        return ref_bce_logits_forward_backward(NULL, d->n, d->x, d->t, 1.0f,
                                               NULL);
    return cpu_bce_logits_forward_backward(d->ctx, d->n, d->x, d->t, 1.0f,
                                           NULL);
}

static void bce_matches_ref(void **state)
{
    /* Sizes below, at and over the 4096-element sum block. */
    const size_t sizes[] = {1, 17, 4096, 9000};

    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            struct test_rng rng;
            size_t n = sizes[i];
            char what[64];
            rng_seed(&rng, 70 + i);
            float *x = new_floats(n), *t = new_floats(n);
            float *dx = new_floats(n), *dx_ref = new_floats(n);
            fill_uniform(&rng, x, n, -10.0f, 10.0f);
            fill_uniform(&rng, t, n, 0.0f, 1.0f);
            /* Large logits, where log(1 + exp(x)) overflows if taken
             * literally. */
            x[0] = 500.0f;
            if (n > 1)
                x[1] = -500.0f;

            double loss = cpu_bce_logits_forward_backward(&ctx, n, x, t,
                                                          0.25f, dx);
            double want = ref_bce_logits_forward_backward(NULL, n, x, t,
                                                          0.25f, dx_ref);
            snprintf(what, sizeof(what), "bce loss n %zu, %d threads", n,
                     threads);
            CHECK_SCALAR(what, want, loss, 1e-5, 1e-6);
            snprintf(what, sizeof(what), "bce dx n %zu, %d threads", n,
                     threads);
            CHECK_CLOSE(what, dx_ref, dx, n, 1e-6, 1e-6);

            double loss_only = cpu_bce_logits_forward_backward(&ctx, n, x, t,
                                                               0.25f, NULL);
            CHECK_SCALAR("bce loss without dx", loss, loss_only, 0.0, 0.0);
            free(x);
            free(t);
            free(dx);
            free(dx_ref);
        }
        cpu_kctx_free(&ctx);
    }
}

/* The sum is over fixed blocks added in order, so the thread count does
 * not change a single bit of it. */
static void bce_same_for_any_thread_count(void **state)
{
    struct test_rng rng;
    size_t n = 20000;
    double loss[3];

    (void)state;
    rng_seed(&rng, 80);
    float *x = new_floats(n), *t = new_floats(n);
    fill_uniform(&rng, x, n, -5.0f, 5.0f);
    fill_uniform(&rng, t, n, 0.0f, 1.0f);
    for (int threads = 1; threads <= 3; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);
        loss[threads - 1] = cpu_bce_logits_forward_backward(&ctx, n, x, t,
                                                            1.0f, NULL);
        cpu_kctx_free(&ctx);
    }
    CHECK_SCALAR("bce 2 threads vs 1", loss[0], loss[1], 0.0, 0.0);
    CHECK_SCALAR("bce 3 threads vs 1", loss[0], loss[2], 0.0, 0.0);
    free(x);
    free(t);
}

static void bce_matches_fd(void **state)
{
    struct kctx ctx;
    size_t n = 50;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (int use_ref = 0; use_ref <= 1; use_ref++) {
        struct test_rng rng;
        struct bce_data d = {&ctx, n, new_floats(n), new_floats(n),
                             new_floats(n), use_ref};
        rng_seed(&rng, 90);
        fill_uniform(&rng, d.x, n, -4.0f, 4.0f);
        fill_uniform(&rng, d.t, n, 0.0f, 1.0f);
        if (use_ref)
            ref_bce_logits_forward_backward(NULL, n, d.x, d.t, 1.0f, d.dx);
        else
            cpu_bce_logits_forward_backward(&ctx, n, d.x, d.t, 1.0f, d.dx);

        double *fd = new_doubles(n);
        finite_diff(bce_loss, &d, d.x, n, 1e-2f, fd);
        CHECK_CLOSE_D(use_ref ? "bce vs fd, ref" : "bce vs fd, cpu", fd,
                      d.dx, n, FD_TOL, FD_TOL);
        free(fd);
        free(d.x);
        free(d.t);
        free(d.dx);
    }
    cpu_kctx_free(&ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(linear_forward_matches_ref),
        cmocka_unit_test(linear_backward_matches_ref),
        cmocka_unit_test(linear_backward_matches_fd),
        cmocka_unit_test(linear_backward_accumulates_and_skips_null),
        cmocka_unit_test(xent_matches_ref),
        cmocka_unit_test(xent_by_hand),
        cmocka_unit_test(xent_matches_fd),
        cmocka_unit_test(bce_matches_ref),
        cmocka_unit_test(bce_same_for_any_thread_count),
        cmocka_unit_test(bce_matches_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
