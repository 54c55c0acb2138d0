/*
 * Tests of batch normalization: training and inference forward, running
 * statistics, and backward, CPU against reference on small random
 * tensors, and both backwards against central finite differences of the
 * training forward.
 *
 * Tolerances:
 * - CPU against reference: atol = rtol = 1e-5. Both sum in double. The
 *   CPU folds the per-channel constants into one float multiply-add per
 *   element, which rounds a few times 6e-8 on values of order 1.
 * - Finite differences: eps = 1e-2 on inputs whose spread per channel is
 *   about 0.6, so the truncation error eps^2 / 6 * f''' stays near 1e-4
 *   (f''' ~ 1 / std^3 ~ 5); the rounding of the float outputs moves the
 *   quotient by about sqrt(M) * 6e-8 / (2 eps) ~ 1e-5 for M <= 40 values
 *   per channel. atol = rtol = 2e-3.
 */
#include "kernel_check.h"

#include "kernels.h"
#include "ref/ref.h"

#define CPU_TOL 1e-5
#define FD_EPS 1e-2f
#define FD_TOL 2e-3

struct bn_case {
    const char *name;
    struct bn_shape s; /* n, c, hw, eps, momentum */
};

static const struct bn_case cases[] = {
    {"n1 hw7", {1, 3, 7, 1e-3f, 0.03f}},
    {"n4 c5 hw9", {4, 5, 9, 1e-3f, 0.03f}},
    {"n2 c16 hw49", {2, 16, 49, 1e-5f, 0.1f}},
    {"n3 c2 hw1", {3, 2, 1, 1e-3f, 0.03f}},
    {"n1 c2 hw1", {1, 2, 1, 1e-3f, 0.03f}},
};
#define CASE_COUNT (sizeof(cases) / sizeof(cases[0]))

/* Tensors of one case. x is uniform in [-1, 1] plus a per-channel offset
 * of up to 5, so that a variance taken as E[x^2] - mean^2 would lose
 * digits and fail. */
struct bn_data {
    struct bn_shape s;
    size_t size;
    float *x, *gamma, *beta, *rmean, *rvar, *r;
    float *y, *smean, *sinv;
    struct kctx *ctx;
    int use_ref;
};

static void bn_data_init(struct bn_data *d, const struct bn_case *c,
                         struct kctx *ctx, uint64_t seed)
{
    struct test_rng rng;
    size_t ch;

    rng_seed(&rng, seed);
    d->s = c->s;
    ch = (size_t)d->s.c;
    d->size = (size_t)d->s.n * ch * d->s.hw;
    d->x = new_floats(d->size);
    d->r = new_floats(d->size);
    d->y = new_floats(d->size);
    d->gamma = new_floats(ch);
    d->beta = new_floats(ch);
    d->rmean = new_floats(ch);
    d->rvar = new_floats(ch);
    d->smean = new_floats(ch);
    d->sinv = new_floats(ch);

    fill_uniform(&rng, d->x, d->size, -1.0f, 1.0f);
    for (int n = 0; n < d->s.n; n++) {
        for (int c2 = 0; c2 < d->s.c; c2++) {
            float offset = (float)c2 - 2.0f;
            for (int i = 0; i < d->s.hw; i++)
                d->x[((size_t)n * ch + c2) * d->s.hw + i] += offset;
        }
    }
    fill_uniform(&rng, d->r, d->size, -1.0f, 1.0f);
    fill_uniform(&rng, d->gamma, ch, 0.5f, 1.5f);
    fill_uniform(&rng, d->beta, ch, -0.5f, 0.5f);
    fill_uniform(&rng, d->rmean, ch, -0.2f, 0.2f);
    fill_uniform(&rng, d->rvar, ch, 0.5f, 1.5f);
    d->ctx = ctx;
    d->use_ref = 0;
}

static void bn_data_free(struct bn_data *d)
{
    free(d->x);
    free(d->r);
    free(d->y);
    free(d->gamma);
    free(d->beta);
    free(d->rmean);
    free(d->rvar);
    free(d->smean);
    free(d->sinv);
}

static void bn_forward_train_matches_ref(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);

        for (size_t i = 0; i < CASE_COUNT; i++) {
            struct bn_data got, want;
            size_t ch = (size_t)cases[i].s.c;
            char what[128];
            bn_data_init(&got, &cases[i], &ctx, 10 + i);
            bn_data_init(&want, &cases[i], &ctx, 10 + i);

            cpu_batchnorm_forward_train(&ctx, &got.s, got.x, got.gamma,
                                        got.beta, got.rmean, got.rvar,
                                        got.smean, got.sinv, got.y);
            ref_batchnorm_forward_train(NULL, &want.s, want.x, want.gamma,
                                        want.beta, want.rmean, want.rvar,
                                        want.smean, want.sinv, want.y);

            snprintf(what, sizeof(what), "y [%s, %d threads]",
                     cases[i].name, threads);
            CHECK_CLOSE(what, want.y, got.y, got.size, CPU_TOL, CPU_TOL);
            snprintf(what, sizeof(what), "save_mean [%s]", cases[i].name);
            CHECK_CLOSE(what, want.smean, got.smean, ch, CPU_TOL, CPU_TOL);
            snprintf(what, sizeof(what), "save_invstd [%s]", cases[i].name);
            CHECK_CLOSE(what, want.sinv, got.sinv, ch, CPU_TOL, CPU_TOL);
            snprintf(what, sizeof(what), "running_mean [%s]", cases[i].name);
            CHECK_CLOSE(what, want.rmean, got.rmean, ch, CPU_TOL, CPU_TOL);
            snprintf(what, sizeof(what), "running_var [%s]", cases[i].name);
            CHECK_CLOSE(what, want.rvar, got.rvar, ch, CPU_TOL, CPU_TOL);
            bn_data_free(&got);
            bn_data_free(&want);
        }
        cpu_kctx_free(&ctx);
    }
}

/* One channel of 1, 2, 3, 4: mean 2.5, biased variance 1.25, unbiased
 * 5 / 3. With momentum 0.1 from running (0, 1): mean 0.25 and variance
 * 0.9 + 0.1 * 5 / 3 = 1.0666667; y = (x - 2.5) / sqrt(1.25 + eps). */
static void bn_running_stats_by_hand(void **state)
{
    struct bn_shape s = {1, 1, 4, 1e-3f, 0.1f};
    float x[4] = {1, 2, 3, 4};
    float gamma = 1.0f, beta = 0.0f, rmean = 0.0f, rvar = 1.0f;
    float smean, sinv, y[4];
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    cpu_batchnorm_forward_train(&ctx, &s, x, &gamma, &beta, &rmean, &rvar,
                                &smean, &sinv, y);

    CHECK_SCALAR("running_mean", 0.25, rmean, 1e-7, 1e-6);
    CHECK_SCALAR("running_var", 0.9 + 0.1 * 5.0 / 3.0, rvar, 1e-7, 1e-6);
    CHECK_SCALAR("save_mean", 2.5, smean, 1e-7, 1e-6);
    CHECK_SCALAR("save_invstd", 1.0 / sqrt(1.25 + 1e-3), sinv, 1e-7, 1e-6);
    CHECK_SCALAR("y[0]", -1.5 / sqrt(1.25 + 1e-3), y[0], 1e-6, 1e-6);
    CHECK_SCALAR("y[3]", 1.5 / sqrt(1.25 + 1e-3), y[3], 1e-6, 1e-6);
    cpu_kctx_free(&ctx);
}

static void bn_forward_infer_matches_ref(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);

        for (size_t i = 0; i < CASE_COUNT; i++) {
            struct bn_data d;
            char what[128];
            bn_data_init(&d, &cases[i], &ctx, 20 + i);
            float *want = new_floats(d.size);

            cpu_batchnorm_forward_infer(&ctx, &d.s, d.x, d.gamma, d.beta,
                                        d.rmean, d.rvar, d.y);
            ref_batchnorm_forward_infer(NULL, &d.s, d.x, d.gamma, d.beta,
                                        d.rmean, d.rvar, want);
            snprintf(what, sizeof(what), "y infer [%s, %d threads]",
                     cases[i].name, threads);
            CHECK_CLOSE(what, want, d.y, d.size, CPU_TOL, CPU_TOL);
            free(want);
            bn_data_free(&d);
        }
        cpu_kctx_free(&ctx);
    }
}

struct bn_grads {
    float *dx, *dgamma, *dbeta;
};

/* Gradient buffers, prefilled with random values unless seed is 0. */
static void bn_grads_init(struct bn_grads *g, const struct bn_data *d,
                          uint64_t seed)
{
    struct test_rng rng;
    size_t ch = (size_t)d->s.c;

    rng_seed(&rng, seed);
    g->dx = new_floats(d->size);
    g->dgamma = new_floats(ch);
    g->dbeta = new_floats(ch);
    if (seed != 0) {
        fill_uniform(&rng, g->dx, d->size, -1.0f, 1.0f);
        fill_uniform(&rng, g->dgamma, ch, -1.0f, 1.0f);
        fill_uniform(&rng, g->dbeta, ch, -1.0f, 1.0f);
    }
}

static void bn_grads_free(struct bn_grads *g)
{
    free(g->dx);
    free(g->dgamma);
    free(g->dbeta);
}

/* Run the training forward (to get save_mean and save_invstd), then the
 * backward with dy = r into g. */
static void bn_run_backward(struct bn_data *d, int use_ref, float *dx,
                            float *dgamma, float *dbeta)
{
    if (use_ref) {
        ref_batchnorm_forward_train(NULL, &d->s, d->x, d->gamma, d->beta,
                                    d->rmean, d->rvar, d->smean, d->sinv,
                                    d->y);
        ref_batchnorm_backward(NULL, &d->s, d->x, d->gamma, d->smean,
                               d->sinv, d->r, dx, dgamma, dbeta);
    } else {
        cpu_batchnorm_forward_train(d->ctx, &d->s, d->x, d->gamma, d->beta,
                                    d->rmean, d->rvar, d->smean, d->sinv,
                                    d->y);
        cpu_batchnorm_backward(d->ctx, &d->s, d->x, d->gamma, d->smean,
                               d->sinv, d->r, dx, dgamma, dbeta);
    }
}

static void bn_backward_matches_ref(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);

        for (size_t i = 0; i < CASE_COUNT; i++) {
            struct bn_data d;
            struct bn_grads got, want;
            size_t ch = (size_t)cases[i].s.c;
            char what[128];
            bn_data_init(&d, &cases[i], &ctx, 30 + i);
            bn_grads_init(&got, &d, 5);
            bn_grads_init(&want, &d, 5);

            bn_run_backward(&d, 0, got.dx, got.dgamma, got.dbeta);
            bn_run_backward(&d, 1, want.dx, want.dgamma, want.dbeta);

            snprintf(what, sizeof(what), "dx [%s, %d threads]",
                     cases[i].name, threads);
            CHECK_CLOSE(what, want.dx, got.dx, d.size, CPU_TOL, CPU_TOL);
            snprintf(what, sizeof(what), "dgamma [%s]", cases[i].name);
            CHECK_CLOSE(what, want.dgamma, got.dgamma, ch, CPU_TOL, CPU_TOL);
            snprintf(what, sizeof(what), "dbeta [%s]", cases[i].name);
            CHECK_CLOSE(what, want.dbeta, got.dbeta, ch, CPU_TOL, CPU_TOL);
            bn_grads_free(&got);
            bn_grads_free(&want);
            bn_data_free(&d);
        }
        cpu_kctx_free(&ctx);
    }
}

/* L = sum r * bn_train(x); running statistics are updated on every call
 * but do not affect y. */
static double bn_loss(void *state)
{
    struct bn_data *d = state;

    if (d->use_ref)
        ref_batchnorm_forward_train(NULL, &d->s, d->x, d->gamma, d->beta,
                                    d->rmean, d->rvar, d->smean, d->sinv,
                                    d->y);
    else
        cpu_batchnorm_forward_train(d->ctx, &d->s, d->x, d->gamma, d->beta,
                                    d->rmean, d->rvar, d->smean, d->sinv,
                                    d->y);
    return weighted_sum(d->r, d->y, d->size);
}

static void bn_backward_matches_fd(void **state)
{
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    /* The cases with more than one value per channel: with one value the
     * output is beta whatever x is, and so is the finite difference. */
    for (size_t i = 0; i < 4; i++) {
        for (int use_ref = 0; use_ref <= 1; use_ref++) {
            struct bn_data d;
            struct bn_grads got;
            size_t ch = (size_t)cases[i].s.c;
            char what[128];
            bn_data_init(&d, &cases[i], &ctx, 40 + i);
            d.use_ref = use_ref;
            bn_grads_init(&got, &d, 0);
            bn_run_backward(&d, use_ref, got.dx, got.dgamma, got.dbeta);

            double *fd_x = new_doubles(d.size);
            double *fd_gamma = new_doubles(ch);
            double *fd_beta = new_doubles(ch);
            finite_diff(bn_loss, &d, d.x, d.size, FD_EPS, fd_x);
            finite_diff(bn_loss, &d, d.gamma, ch, FD_EPS, fd_gamma);
            finite_diff(bn_loss, &d, d.beta, ch, FD_EPS, fd_beta);

            const char *impl = use_ref ? "ref" : "cpu";
            snprintf(what, sizeof(what), "dx vs fd [%s, %s]", cases[i].name,
                     impl);
            CHECK_CLOSE_D(what, fd_x, got.dx, d.size, FD_TOL, FD_TOL);
            snprintf(what, sizeof(what), "dgamma vs fd [%s, %s]",
                     cases[i].name, impl);
            CHECK_CLOSE_D(what, fd_gamma, got.dgamma, ch, FD_TOL, FD_TOL);
            snprintf(what, sizeof(what), "dbeta vs fd [%s, %s]",
                     cases[i].name, impl);
            CHECK_CLOSE_D(what, fd_beta, got.dbeta, ch, FD_TOL, FD_TOL);
            free(fd_x);
            free(fd_gamma);
            free(fd_beta);
            bn_grads_free(&got);
            bn_data_free(&d);
        }
    }
    cpu_kctx_free(&ctx);
}

/* Two backward calls into zeroed buffers give twice one call (the CPU
 * kernel is deterministic, so the doubled sum is exact up to one
 * rounding of the addition). */
static void bn_backward_accumulates(void **state)
{
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (size_t i = 0; i < CASE_COUNT; i++) {
        struct bn_data d;
        struct bn_grads once, twice;
        size_t ch = (size_t)cases[i].s.c;
        bn_data_init(&d, &cases[i], &ctx, 50 + i);
        bn_grads_init(&once, &d, 0);
        bn_grads_init(&twice, &d, 0);

        bn_run_backward(&d, 0, once.dx, once.dgamma, once.dbeta);
        bn_run_backward(&d, 0, twice.dx, twice.dgamma, twice.dbeta);
        bn_run_backward(&d, 0, twice.dx, twice.dgamma, twice.dbeta);
        for (size_t j = 0; j < d.size; j++)
            once.dx[j] *= 2.0f;
        for (size_t j = 0; j < ch; j++) {
            once.dgamma[j] *= 2.0f;
            once.dbeta[j] *= 2.0f;
        }

        CHECK_CLOSE(cases[i].name, once.dx, twice.dx, d.size, 1e-6, 1e-6);
        CHECK_CLOSE(cases[i].name, once.dgamma, twice.dgamma, ch, 1e-6,
                    1e-6);
        CHECK_CLOSE(cases[i].name, once.dbeta, twice.dbeta, ch, 1e-6, 1e-6);
        bn_grads_free(&once);
        bn_grads_free(&twice);
        bn_data_free(&d);
    }
    cpu_kctx_free(&ctx);
}

/* Each subset of {dx, dgamma, dbeta} gives its members the values of the
 * full call and leaves the others zero, for CPU and reference. */
static void bn_backward_skips_null(void **state)
{
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (int use_ref = 0; use_ref <= 1; use_ref++) {
        struct bn_data d;
        struct bn_grads all;
        size_t ch = (size_t)cases[1].s.c;
        bn_data_init(&d, &cases[1], &ctx, 60);
        bn_grads_init(&all, &d, 0);
        bn_run_backward(&d, use_ref, all.dx, all.dgamma, all.dbeta);
        float *zero = new_floats(d.size);

        for (int mask = 0; mask < 7; mask++) {
            struct bn_grads some;
            char what[64];
            bn_grads_init(&some, &d, 0);
            bn_run_backward(&d, use_ref, mask & 1 ? some.dx : NULL,
                            mask & 2 ? some.dgamma : NULL,
                            mask & 4 ? some.dbeta : NULL);

            snprintf(what, sizeof(what), "dx, mask %d, ref %d", mask,
                     use_ref);
            CHECK_CLOSE(what, mask & 1 ? all.dx : zero, some.dx, d.size,
                        1e-7, 1e-7);
            snprintf(what, sizeof(what), "dgamma, mask %d, ref %d", mask,
                     use_ref);
            CHECK_CLOSE(what, mask & 2 ? all.dgamma : zero, some.dgamma, ch,
                        1e-7, 1e-7);
            snprintf(what, sizeof(what), "dbeta, mask %d, ref %d", mask,
                     use_ref);
            CHECK_CLOSE(what, mask & 4 ? all.dbeta : zero, some.dbeta, ch,
                        1e-7, 1e-7);
            bn_grads_free(&some);
        }
        free(zero);
        bn_grads_free(&all);
        bn_data_free(&d);
    }
    cpu_kctx_free(&ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bn_forward_train_matches_ref),
        cmocka_unit_test(bn_running_stats_by_hand),
        cmocka_unit_test(bn_forward_infer_matches_ref),
        cmocka_unit_test(bn_backward_matches_ref),
        cmocka_unit_test(bn_backward_matches_fd),
        cmocka_unit_test(bn_backward_accumulates),
        cmocka_unit_test(bn_backward_skips_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
