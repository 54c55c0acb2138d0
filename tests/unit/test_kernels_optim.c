/*
 * Tests of the optimizer kernels: SGD (with and without momentum,
 * Nesterov and weight decay), AdamW with bias correction, the weight
 * EMA, the sum of squares and scaling. Each optimizer runs a few steps on
 * values worked out by hand from the formulas in kernels.h, then CPU and
 * reference run the same steps on random vectors.
 *
 * Tolerances: the CPU computes each step in float, the hand values are
 * exact decimals, so rtol = 1e-6 (a few float roundings of values near
 * 1) with atol = 1e-7 for values near zero. CPU against reference
 * (double per element): the same.
 */
#include "kernel_check.h"

#include "kernels.h"
#include "ref/ref.h"

#define ATOL 1e-7
#define RTOL 1e-6

/* ---- SGD ---------------------------------------------------------------- */

/* Three steps of one parameter, p0 = 2, lr = 0.1, gradients 1, -0.5,
 * 0.25. With momentum 0.9 and no decay: v = 1, 0.4, 0.61 and p = 1.9,
 * 1.86, 1.799. */
static void sgd_momentum_by_hand(void **state)
{
    const float grads[3] = {1.0f, -0.5f, 0.25f};
    const double want_p[3] = {1.9, 1.86, 1.799};
    const double want_v[3] = {1.0, 0.4, 0.61};
    float p = 2.0f, v = 0.0f;
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 1);
    for (int t = 0; t < 3; t++) {
        char what[32];
        cpu_sgd_step(&ctx, 1, &p, &grads[t], &v, 0.1f, 0.9f, 0.0f, 0);
        snprintf(what, sizeof(what), "p after step %d", t + 1);
        CHECK_SCALAR(what, want_p[t], p, ATOL, RTOL);
        snprintf(what, sizeof(what), "v after step %d", t + 1);
        CHECK_SCALAR(what, want_v[t], v, ATOL, RTOL);
    }
    cpu_kctx_free(&ctx);
}

/* The same with Nesterov and weight decay 0.01:
 *   g1 = 1 + 0.01 * 2 = 1.02, v1 = 1.02,
 *   p1 = 2 - 0.1 * (1.02 + 0.9 * 1.02) = 1.8062;
 *   g2 = -0.5 + 0.01 * 1.8062 = -0.481938, v2 = 0.9 * 1.02 + g2
 *      = 0.436062, p2 = 1.8062 - 0.1 * (g2 + 0.9 * v2) = 1.81514822;
 *   g3 = 0.25 + 0.0181514822, v3 = 0.6606072822, p3 = 1.728878416382. */
static void sgd_nesterov_decay_by_hand(void **state)
{
    const float grads[3] = {1.0f, -0.5f, 0.25f};
    const double want_p[3] = {1.8062, 1.81514822, 1.728878416382};
    const double want_v[3] = {1.02, 0.436062, 0.6606072822};
    float p = 2.0f, v = 0.0f;
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 1);
    for (int t = 0; t < 3; t++) {
        char what[32];
        cpu_sgd_step(&ctx, 1, &p, &grads[t], &v, 0.1f, 0.9f, 0.01f, 1);
        snprintf(what, sizeof(what), "p after step %d", t + 1);
        CHECK_SCALAR(what, want_p[t], p, ATOL, RTOL);
        snprintf(what, sizeof(what), "v after step %d", t + 1);
        CHECK_SCALAR(what, want_v[t], v, ATOL, RTOL);
    }
    cpu_kctx_free(&ctx);
}

/* Without a velocity buffer the step is lr * (grad + decay * p):
 * p = 2 - 0.1 * 1.02 = 1.898, then 1.898 - 0.1 * (-0.5 + 0.01898)
 * = 1.946102, then 1.919155898. */
static void sgd_without_momentum_by_hand(void **state)
{
    const float grads[3] = {1.0f, -0.5f, 0.25f};
    const double want_p[3] = {1.898, 1.946102, 1.919155898};
    float p = 2.0f;
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 1);
    for (int t = 0; t < 3; t++) {
        char what[32];
        cpu_sgd_step(&ctx, 1, &p, &grads[t], NULL, 0.1f, 0.0f, 0.01f, 0);
        snprintf(what, sizeof(what), "p after step %d", t + 1);
        CHECK_SCALAR(what, want_p[t], p, ATOL, RTOL);
    }
    cpu_kctx_free(&ctx);
}

/* ---- AdamW -------------------------------------------------------------- */

/* p0 = 1, lr = 0.1, eps = 1e-8, decay 0.01, gradients 0.5, -0.25, 0.125,
 * and betas 0.875 and 1 - 2^-10, which floats hold exactly (0.9f and
 * 0.999f are off by about 1e-8, which moves 1 - beta2 by 1e-5 relative).
 * Step 1: m = 0.0625, v = 2^-10 / 4; the bias-corrected moments are g
 * and g^2, so p = 0.999 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.899000002.
 * Step 2: m = 0.0234375, v = 0.000304937363, m_hat = m / (1 - 0.875^2)
 * = 0.1, v_hat = v / (1 - beta2^2) = 0.156204201, p = 0.899000002 *
 * 0.999 - 0.1 * m_hat / (sqrt(v_hat) + eps) = 0.872799073.
 * Step 3: m = 0.0361328125, v = 0.000319898361, p = 0.838814873. */
static void adamw_by_hand(void **state)
{
    const float grads[3] = {0.5f, -0.25f, 0.125f};
    const double want_p[3] = {0.899000002, 0.872799072937, 0.838814872657};
    const double want_m[3] = {0.0625, 0.0234375, 0.0361328125};
    const double want_v[3] = {0.000244140625, 0.000304937362671,
                              0.00031989836134};
    const float beta2 = 1.0f - 1.0f / 1024.0f;
    float p = 1.0f, m = 0.0f, v = 0.0f;
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 1);
    for (int t = 0; t < 3; t++) {
        char what[32];
        cpu_adamw_step(&ctx, 1, &p, &grads[t], &m, &v, 0.1f, 0.875f, beta2,
                       1e-8f, 0.01f, t + 1);
        snprintf(what, sizeof(what), "p after step %d", t + 1);
        CHECK_SCALAR(what, want_p[t], p, ATOL, RTOL);
        snprintf(what, sizeof(what), "m after step %d", t + 1);
        CHECK_SCALAR(what, want_m[t], m, 1e-9, RTOL);
        snprintf(what, sizeof(what), "v after step %d", t + 1);
        CHECK_SCALAR(what, want_v[t], v, 1e-11, RTOL);
    }
    cpu_kctx_free(&ctx);
}

/* ---- EMA, sum of squares, scale ----------------------------------------- */

/* ema = 0.9 * ema + 0.1 * p from 1 with p = 2, then 4: 1.1, then 1.39. */
static void ema_by_hand(void **state)
{
    float ema = 1.0f;
    const float p[2] = {2.0f, 4.0f};
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 1);
    cpu_ema_update(&ctx, 1, &ema, &p[0], 0.9f);
    CHECK_SCALAR("ema after step 1", 1.1, ema, ATOL, RTOL);
    cpu_ema_update(&ctx, 1, &ema, &p[1], 0.9f);
    CHECK_SCALAR("ema after step 2", 1.39, ema, ATOL, RTOL);
    cpu_kctx_free(&ctx);
}

/* 10,000 values of 0.5 (three sum blocks, the last one partial) have a
 * sum of squares of exactly 2,500, and 3 and 4 give 25. */
static void sumsq_and_scale_by_hand(void **state)
{
    size_t n = 10000;
    float *x = new_floats(n);
    float pair[2] = {3.0f, 4.0f};
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f;
    CHECK_SCALAR("sumsq of 0.5s", 2500.0, cpu_sumsq(&ctx, n, x), 0.0, 0.0);
    CHECK_SCALAR("sumsq of 3, 4", 25.0, cpu_sumsq(&ctx, 2, pair), 0.0, 0.0);
    CHECK_SCALAR("sumsq of nothing", 0.0, cpu_sumsq(&ctx, 0, x), 0.0, 0.0);

    cpu_scale(&ctx, 2, pair, -0.5f);
    CHECK_SCALAR("scaled 3", -1.5, pair[0], 0.0, 0.0);
    CHECK_SCALAR("scaled 4", -2.0, pair[1], 0.0, 0.0);
    free(x);
    cpu_kctx_free(&ctx);
}

/* The sum of squares adds fixed blocks in order: 1, 2 and 3 threads give
 * the same bits. */
static void sumsq_same_for_any_thread_count(void **state)
{
    struct test_rng rng;
    size_t n = 50001;
    double sums[3];

    (void)state;
    rng_seed(&rng, 11);
    float *x = new_floats(n);
    fill_uniform(&rng, x, n, -3.0f, 3.0f);
    for (int threads = 1; threads <= 3; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);
        sums[threads - 1] = cpu_sumsq(&ctx, n, x);
        cpu_kctx_free(&ctx);
    }
    CHECK_SCALAR("sumsq 2 threads vs 1", sums[0], sums[1], 0.0, 0.0);
    CHECK_SCALAR("sumsq 3 threads vs 1", sums[0], sums[2], 0.0, 0.0);
    CHECK_SCALAR("sumsq vs ref", ref_sumsq(NULL, n, x), sums[0], 0.0, 1e-12);
    free(x);
}

/* ---- CPU against reference on random vectors ---------------------------- */

struct optim_vectors {
    size_t n;
    float *p, *grad, *m, *v;
};

static void vectors_init(struct optim_vectors *o, size_t n, uint64_t seed)
{
    struct test_rng rng;

    rng_seed(&rng, seed);
    o->n = n;
    o->p = new_floats(n);
    o->grad = new_floats(n);
    o->m = new_floats(n);
    o->v = new_floats(n);
    fill_uniform(&rng, o->p, n, -1.0f, 1.0f);
    fill_uniform(&rng, o->grad, n, -1.0f, 1.0f);
    fill_uniform(&rng, o->m, n, -0.1f, 0.1f);
    fill_uniform(&rng, o->v, n, 0.0f, 0.01f);
}

static void vectors_copy(struct optim_vectors *dst,
                         const struct optim_vectors *src)
{
    dst->n = src->n;
    dst->p = copy_floats(src->p, src->n);
    dst->grad = copy_floats(src->grad, src->n);
    dst->m = copy_floats(src->m, src->n);
    dst->v = copy_floats(src->v, src->n);
}

static void vectors_free(struct optim_vectors *o)
{
    free(o->p);
    free(o->grad);
    free(o->m);
    free(o->v);
}

static void optimizers_match_ref(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        struct optim_vectors a, b;
        size_t n = 1037;
        cpu_kctx_init(&ctx, threads);

        for (int nesterov = 0; nesterov <= 1; nesterov++) {
            vectors_init(&a, n, 20 + nesterov);
            vectors_copy(&b, &a);
            for (int t = 0; t < 3; t++) {
                cpu_sgd_step(&ctx, n, a.p, a.grad, a.m, 0.01f, 0.937f,
                             5e-4f, nesterov);
                ref_sgd_step(NULL, n, b.p, b.grad, b.m, 0.01f, 0.937f, 5e-4f,
                             nesterov);
            }
            CHECK_CLOSE(nesterov ? "sgd nesterov p" : "sgd p", b.p, a.p, n,
                        ATOL, RTOL);
            CHECK_CLOSE(nesterov ? "sgd nesterov v" : "sgd v", b.m, a.m, n,
                        ATOL, RTOL);
            vectors_free(&a);
            vectors_free(&b);
        }

        vectors_init(&a, n, 30);
        vectors_copy(&b, &a);
        for (int t = 1; t <= 3; t++) {
            cpu_adamw_step(&ctx, n, a.p, a.grad, a.m, a.v, 0.002f, 0.9f,
                           0.999f, 1e-8f, 0.05f, t);
            ref_adamw_step(NULL, n, b.p, b.grad, b.m, b.v, 0.002f, 0.9f,
                           0.999f, 1e-8f, 0.05f, t);
        }
        CHECK_CLOSE("adamw p", b.p, a.p, n, ATOL, RTOL);
        CHECK_CLOSE("adamw m", b.m, a.m, n, ATOL, RTOL);
        CHECK_CLOSE("adamw v", b.v, a.v, n, 1e-9, RTOL);

        cpu_ema_update(&ctx, n, a.m, a.p, 0.9999f);
        ref_ema_update(NULL, n, b.m, b.p, 0.9999f);
        CHECK_CLOSE("ema", b.m, a.m, n, ATOL, RTOL);

        cpu_scale(&ctx, n, a.p, 0.3f);
        ref_scale(NULL, n, b.p, 0.3f);
        CHECK_CLOSE("scale", b.p, a.p, n, ATOL, RTOL);
        vectors_free(&a);
        vectors_free(&b);
        cpu_kctx_free(&ctx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sgd_momentum_by_hand),
        cmocka_unit_test(sgd_nesterov_decay_by_hand),
        cmocka_unit_test(sgd_without_momentum_by_hand),
        cmocka_unit_test(adamw_by_hand),
        cmocka_unit_test(ema_by_hand),
        cmocka_unit_test(sumsq_and_scale_by_hand),
        cmocka_unit_test(sumsq_same_for_any_thread_count),
        cmocka_unit_test(optimizers_match_ref),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
