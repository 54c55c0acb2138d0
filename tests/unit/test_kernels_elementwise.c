/*
 * Tests of the elementwise and data-movement kernels: SiLU, add, max
 * pooling, global average pooling, nearest upsampling and channel copy.
 * CPU against reference on small random tensors, and backwards of both
 * against central finite differences.
 *
 * Tolerances:
 * - SiLU, CPU against reference: atol = rtol = 1e-6. The CPU evaluates
 *   exp with a polynomial accurate to about 2e-7 relative, and the
 *   sigmoid, product and gradient add a few float roundings.
 * - Pooling, upsampling, channel copy: the CPU sums at most f * f = 9
 *   float values where the reference sums in double, so 1e-6.
 * - Finite differences: SiLU is smooth with |f'''| < 1, so eps = 1e-2
 *   gives a truncation error below eps^2 / 6 ~ 2e-5, and perturbing x_i
 *   changes only y_i, whose float rounding moves the quotient by
 *   6e-8 * |y| / (2 eps) ~ 1e-5. The other kernels are linear where the
 *   test evaluates them (max pooling on inputs spaced 0.01 apart with eps
 *   = 1e-3 never changes its argmax), so only rounding counts.
 *   atol = rtol = 1e-3 for all.
 */
#include "kernel_check.h"

#include "kernels.h"
#include "ref/ref.h"

#define FD_TOL 1e-3

/* ---- SiLU and add ------------------------------------------------------ */

/* Random values in [-8, 8] plus the edges of the exp clamp, large
 * magnitudes and zero. */
static float *silu_inputs(size_t n, uint64_t seed)
{
    static const float edges[] = {0.0f,   -0.0f,  1e-8f,   -1e-8f,
                                  20.0f,  -20.0f, 86.9f,   -86.9f,
                                  87.5f,  -87.5f, 88.5f,   -88.5f,
                                  100.0f, -100.0f, 1e30f,  -1e30f};
    struct test_rng rng;
    float *x = new_floats(n);

    rng_seed(&rng, seed);
    fill_uniform(&rng, x, n, -8.0f, 8.0f);
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]) && i < n; i++)
        x[i] = edges[i];
    return x;
}

static void silu_forward_matches_ref(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);

        /* Sizes around the 16-wide vector length and the thread split. */
        size_t sizes[] = {1, 15, 16, 17, 1001};
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            size_t n = sizes[k];
            float *x = silu_inputs(n, 1 + k);
            float *got = new_floats(n);
            float *want = new_floats(n);
            char what[64];

            cpu_silu_forward(&ctx, x, got, n);
            ref_silu_forward(NULL, x, want, n);
            snprintf(what, sizeof(what), "silu n %zu, %d threads", n,
                     threads);
            CHECK_CLOSE(what, want, got, n, 1e-6, 1e-6);
            free(x);
            free(got);
            free(want);
        }
        cpu_kctx_free(&ctx);
    }
}

/* NaN in, NaN out: a diverging network must not be hidden. */
static void silu_propagates_nan(void **state)
{
    float x[2] = {NAN, 1.0f};
    float y[2];
    float dy[2] = {1.0f, 1.0f};
    float dx[2] = {0.0f, 0.0f};
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 1);
    cpu_silu_forward(&ctx, x, y, 2);
    cpu_silu_backward(&ctx, x, dy, dx, 2);
    assert_true(isnan(y[0]));
    assert_true(isnan(dx[0]));
    assert_false(isnan(y[1]));
    cpu_kctx_free(&ctx);
}

static void silu_backward_matches_ref(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        struct test_rng rng;
        size_t n = 1001;
        cpu_kctx_init(&ctx, threads);
        rng_seed(&rng, 9);

        float *x = silu_inputs(n, 3);
        float *dy = new_floats(n);
        float *got = new_floats(n);
        fill_uniform(&rng, dy, n, -1.0f, 1.0f);
        fill_uniform(&rng, got, n, -1.0f, 1.0f);
        float *want = copy_floats(got, n);

        cpu_silu_backward(&ctx, x, dy, got, n);
        ref_silu_backward(NULL, x, dy, want, n);
        CHECK_CLOSE("silu dx, prefilled", want, got, n, 1e-6, 1e-6);
        free(x);
        free(dy);
        free(got);
        free(want);
        cpu_kctx_free(&ctx);
    }
}

struct silu_fd {
    struct kctx *ctx;
    float *x, *y, *r;
    size_t n;
    int use_ref;
};

static double silu_loss(void *state)
{
    struct silu_fd *d = state;

    if (d->use_ref)
        ref_silu_forward(NULL, d->x, d->y, d->n);
    else
        cpu_silu_forward(d->ctx, d->x, d->y, d->n);
    return weighted_sum(d->r, d->y, d->n);
}

static void silu_backward_matches_fd(void **state)
{
    struct kctx ctx;
    struct test_rng rng;
    size_t n = 200;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    rng_seed(&rng, 4);
    for (int use_ref = 0; use_ref <= 1; use_ref++) {
        struct silu_fd d = {&ctx, new_floats(n), new_floats(n),
                            new_floats(n), n, use_ref};
        fill_uniform(&rng, d.x, n, -6.0f, 6.0f);
        fill_uniform(&rng, d.r, n, -1.0f, 1.0f);
        float *dx = new_floats(n);
        double *fd = new_doubles(n);

        if (use_ref)
            ref_silu_backward(NULL, d.x, d.r, dx, n);
        else
            cpu_silu_backward(&ctx, d.x, d.r, dx, n);
        finite_diff(silu_loss, &d, d.x, n, 1e-2f, fd);
        CHECK_CLOSE_D(use_ref ? "silu dx vs fd, ref" : "silu dx vs fd, cpu",
                      fd, dx, n, FD_TOL, FD_TOL);
        free(d.x);
        free(d.y);
        free(d.r);
        free(dx);
        free(fd);
    }
    cpu_kctx_free(&ctx);
}

static void silu_backward_accumulates(void **state)
{
    struct kctx ctx;
    struct test_rng rng;
    size_t n = 300;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    rng_seed(&rng, 5);
    float *x = silu_inputs(n, 6);
    float *dy = new_floats(n);
    float *once = new_floats(n);
    float *twice = new_floats(n);
    fill_uniform(&rng, dy, n, -1.0f, 1.0f);

    cpu_silu_backward(&ctx, x, dy, once, n);
    cpu_silu_backward(&ctx, x, dy, twice, n);
    cpu_silu_backward(&ctx, x, dy, twice, n);
    for (size_t i = 0; i < n; i++)
        once[i] *= 2.0f;
    CHECK_CLOSE("silu dx twice", once, twice, n, 0.0, 0.0);
    free(x);
    free(dy);
    free(once);
    free(twice);
    cpu_kctx_free(&ctx);
}

static void add_forward_matches_ref(void **state)
{
    struct kctx ctx;
    struct test_rng rng;
    size_t n = 1003;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    rng_seed(&rng, 7);
    float *x = new_floats(n);
    float *got = new_floats(n);
    fill_uniform(&rng, x, n, -1.0f, 1.0f);
    fill_uniform(&rng, got, n, -1.0f, 1.0f);
    float *want = copy_floats(got, n);

    cpu_add_forward(&ctx, x, got, n);
    ref_add_forward(NULL, x, want, n);
    CHECK_CLOSE("add", want, got, n, 0.0, 0.0);
    free(x);
    free(got);
    free(want);
    cpu_kctx_free(&ctx);
}

/* ---- Max pooling ------------------------------------------------------- */

struct pool_case {
    const char *name;
    struct pool_shape s; /* n, c, h, w, k, stride, pad */
};

static const struct pool_case pool_cases[] = {
    {"k2 s2 p0", {2, 3, 8, 8, 2, 2, 0, 0, 0}},
    {"k3 s2 p1 odd", {1, 2, 7, 9, 3, 2, 1, 0, 0}},
    {"k5 s1 p2 (SPPF)", {2, 2, 6, 5, 5, 1, 2, 0, 0}},
    {"k3 s1 p0", {3, 1, 5, 5, 3, 1, 0, 0, 0}},
};
#define POOL_COUNT (sizeof(pool_cases) / sizeof(pool_cases[0]))

/* Distinct inputs 0.01 apart in a random order, so that a perturbation
 * of 1e-3 never changes which element is the maximum. */
static float *distinct_inputs(size_t n, uint64_t seed)
{
    struct test_rng rng;
    float *x = new_floats(n);

    rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = 0.01f * (float)i - 0.005f * (float)n;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rng_next(&rng) % (i + 1);
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
    return x;
}

static size_t pool_in_size(const struct pool_shape *s)
{
    return (size_t)s->n * s->c * s->h * s->w;
}

static size_t pool_out_size(const struct pool_shape *s)
{
    return (size_t)s->n * s->c * s->h_out * s->w_out;
}

static void maxpool_matches_ref(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);

        for (size_t i = 0; i < POOL_COUNT; i++) {
            struct pool_shape s = pool_cases[i].s;
            struct test_rng rng;
            char what[96];
            assert_int_equal(pool_shape_init(&s), 0);
            size_t in = pool_in_size(&s), out = pool_out_size(&s);
            rng_seed(&rng, 70 + i);

            float *x = new_floats(in);
            fill_uniform(&rng, x, in, -1.0f, 1.0f);
            float *y = new_floats(out), *y_ref = new_floats(out);
            int32_t *am = calloc(out, sizeof(int32_t));
            int32_t *am_ref = calloc(out, sizeof(int32_t));
            cpu_maxpool_forward(&ctx, &s, x, y, am);
            ref_maxpool_forward(NULL, &s, x, y_ref, am_ref);
            snprintf(what, sizeof(what), "maxpool y [%s, %d threads]",
                     pool_cases[i].name, threads);
            CHECK_CLOSE(what, y_ref, y, out, 0.0, 0.0);
            assert_memory_equal(am, am_ref, out * sizeof(int32_t));

            float *dy = new_floats(out);
            float *dx = new_floats(in);
            fill_uniform(&rng, dy, out, -1.0f, 1.0f);
            fill_uniform(&rng, dx, in, -1.0f, 1.0f);
            float *dx_ref = copy_floats(dx, in);
            cpu_maxpool_backward(&ctx, &s, am, dy, dx);
            ref_maxpool_backward(NULL, &s, am_ref, dy, dx_ref);
            snprintf(what, sizeof(what), "maxpool dx [%s, %d threads]",
                     pool_cases[i].name, threads);
            CHECK_CLOSE(what, dx_ref, dx, in, 1e-6, 1e-6);

            free(x);
            free(y);
            free(y_ref);
            free(am);
            free(am_ref);
            free(dy);
            free(dx);
            free(dx_ref);
        }
        cpu_kctx_free(&ctx);
    }
}

/* Ties keep the first maximum in row-major order; a NaN wins. */
static void maxpool_ties_and_nan(void **state)
{
    struct pool_shape s = {1, 1, 2, 2, 2, 2, 0, 0, 0};
    float tie[4] = {1.0f, 3.0f, 3.0f, 2.0f};
    float nan_in[4] = {1.0f, NAN, 3.0f, 2.0f};
    float y;
    int32_t am;
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 1);
    assert_int_equal(pool_shape_init(&s), 0);
    cpu_maxpool_forward(&ctx, &s, tie, &y, &am);
    CHECK_SCALAR("tie max", 3.0, y, 0.0, 0.0);
    assert_int_equal(am, 1);
    cpu_maxpool_forward(&ctx, &s, nan_in, &y, &am);
    assert_true(isnan(y));
    assert_int_equal(am, 1);
    cpu_kctx_free(&ctx);
}

static void pool_shape_init_checks(void **state)
{
    (void)state;
    struct pool_shape sppf = {1, 1, 20, 20, 5, 1, 2, 0, 0};
    assert_int_equal(pool_shape_init(&sppf), 0);
    assert_int_equal(sppf.h_out, 20);

    struct pool_shape odd = {1, 1, 7, 9, 3, 2, 1, 0, 0};
    assert_int_equal(pool_shape_init(&odd), 0);
    assert_int_equal(odd.h_out, 4);
    assert_int_equal(odd.w_out, 5);

    /* A window entirely in the padding would have no maximum. */
    struct pool_shape wide_pad = {1, 1, 8, 8, 2, 2, 2, 0, 0};
    assert_int_equal(pool_shape_init(&wide_pad), -1);

    struct pool_shape too_big = {1, 1, 2, 2, 5, 1, 0, 0, 0};
    assert_int_equal(pool_shape_init(&too_big), -1);
}

struct maxpool_fd {
    struct kctx *ctx;
    struct pool_shape s;
    float *x, *y, *r;
    int32_t *am;
    int use_ref;
};

static double maxpool_loss(void *state)
{
    struct maxpool_fd *d = state;

    if (d->use_ref)
        ref_maxpool_forward(NULL, &d->s, d->x, d->y, d->am);
    else
        cpu_maxpool_forward(d->ctx, &d->s, d->x, d->y, d->am);
    return weighted_sum(d->r, d->y, pool_out_size(&d->s));
}

static void maxpool_backward_matches_fd(void **state)
{
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (size_t i = 0; i < POOL_COUNT; i++) {
        for (int use_ref = 0; use_ref <= 1; use_ref++) {
            struct maxpool_fd d;
            struct test_rng rng;
            char what[96];
            d.ctx = &ctx;
            d.s = pool_cases[i].s;
            d.use_ref = use_ref;
            assert_int_equal(pool_shape_init(&d.s), 0);
            size_t in = pool_in_size(&d.s), out = pool_out_size(&d.s);
            rng_seed(&rng, 80 + i);
            d.x = distinct_inputs(in, 90 + i);
            d.y = new_floats(out);
            d.r = new_floats(out);
            d.am = calloc(out, sizeof(int32_t));
            fill_uniform(&rng, d.r, out, -1.0f, 1.0f);

            float *dx = new_floats(in);
            double *fd = new_doubles(in);
            maxpool_loss(&d);
            if (use_ref)
                ref_maxpool_backward(NULL, &d.s, d.am, d.r, dx);
            else
                cpu_maxpool_backward(&ctx, &d.s, d.am, d.r, dx);
            finite_diff(maxpool_loss, &d, d.x, in, 1e-3f, fd);
            snprintf(what, sizeof(what), "maxpool dx vs fd [%s, %s]",
                     pool_cases[i].name, use_ref ? "ref" : "cpu");
            CHECK_CLOSE_D(what, fd, dx, in, FD_TOL, FD_TOL);
            free(d.x);
            free(d.y);
            free(d.r);
            free(d.am);
            free(dx);
            free(fd);
        }
    }
    cpu_kctx_free(&ctx);
}

/* ---- Global average pooling --------------------------------------------- */

struct avgpool_fd {
    struct kctx *ctx;
    int n, c, hw;
    float *x, *y, *r;
    int use_ref;
};

static double avgpool_loss(void *state)
{
    struct avgpool_fd *d = state;

    if (d->use_ref)
        ref_avgpool_global_forward(NULL, d->n, d->c, d->hw, d->x, d->y);
    else
        cpu_avgpool_global_forward(d->ctx, d->n, d->c, d->hw, d->x, d->y);
    return weighted_sum(d->r, d->y, (size_t)d->n * d->c);
}

static void avgpool_matches_ref_and_fd(void **state)
{
    const int shapes[][3] = {{1, 3, 7}, {4, 5, 49}, {2, 1, 1}};
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        struct avgpool_fd d = {&ctx, shapes[i][0], shapes[i][1],
                               shapes[i][2], NULL, NULL, NULL, 0};
        size_t in = (size_t)d.n * d.c * d.hw, out = (size_t)d.n * d.c;
        struct test_rng rng;
        char what[64];
        rng_seed(&rng, 100 + i);
        d.x = new_floats(in);
        d.y = new_floats(out);
        d.r = new_floats(out);
        fill_uniform(&rng, d.x, in, -1.0f, 1.0f);
        fill_uniform(&rng, d.r, out, -1.0f, 1.0f);

        float *y_ref = new_floats(out);
        cpu_avgpool_global_forward(&ctx, d.n, d.c, d.hw, d.x, d.y);
        ref_avgpool_global_forward(NULL, d.n, d.c, d.hw, d.x, y_ref);
        snprintf(what, sizeof(what), "avgpool y, shape %zu", i);
        CHECK_CLOSE(what, y_ref, d.y, out, 1e-6, 1e-6);

        float *dx = new_floats(in);
        fill_uniform(&rng, dx, in, -1.0f, 1.0f);
        float *dx_ref = copy_floats(dx, in);
        cpu_avgpool_global_backward(&ctx, d.n, d.c, d.hw, d.r, dx);
        ref_avgpool_global_backward(NULL, d.n, d.c, d.hw, d.r, dx_ref);
        snprintf(what, sizeof(what), "avgpool dx prefilled, shape %zu", i);
        CHECK_CLOSE(what, dx_ref, dx, in, 1e-6, 1e-6);

        for (int use_ref = 0; use_ref <= 1; use_ref++) {
            float *g = new_floats(in);
            double *fd = new_doubles(in);
            d.use_ref = use_ref;
            if (use_ref)
                ref_avgpool_global_backward(NULL, d.n, d.c, d.hw, d.r, g);
            else
                cpu_avgpool_global_backward(&ctx, d.n, d.c, d.hw, d.r, g);
            finite_diff(avgpool_loss, &d, d.x, in, 1e-2f, fd);
            snprintf(what, sizeof(what), "avgpool dx vs fd, shape %zu, %s",
                     i, use_ref ? "ref" : "cpu");
            CHECK_CLOSE_D(what, fd, g, in, FD_TOL, FD_TOL);
            free(g);
            free(fd);
        }
        free(d.x);
        free(d.y);
        free(d.r);
        free(y_ref);
        free(dx);
        free(dx_ref);
    }
    cpu_kctx_free(&ctx);
}

/* ---- Nearest upsampling -------------------------------------------------- */

struct upsample_fd {
    struct kctx *ctx;
    int n, c, h, w, f;
    float *x, *y, *r;
    int use_ref;
};

static double upsample_loss(void *state)
{
    struct upsample_fd *d = state;
    size_t out = (size_t)d->n * d->c * d->h * d->f * d->w * d->f;

    if (d->use_ref)
        ref_upsample_nearest_forward(NULL, d->n, d->c, d->h, d->w, d->f,
                                     d->x, d->y);
    else
        cpu_upsample_nearest_forward(d->ctx, d->n, d->c, d->h, d->w, d->f,
                                     d->x, d->y);
    return weighted_sum(d->r, d->y, out);
}

static void upsample_matches_ref_and_fd(void **state)
{
    /* n, c, h, w, f */
    const int shapes[][5] = {{1, 2, 3, 4, 2}, {2, 3, 5, 3, 2},
                             {1, 1, 2, 3, 3}};
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        const int *p = shapes[i];
        struct upsample_fd d = {&ctx, p[0], p[1], p[2], p[3], p[4],
                                NULL, NULL, NULL, 0};
        size_t in = (size_t)d.n * d.c * d.h * d.w;
        size_t out = in * d.f * d.f;
        struct test_rng rng;
        char what[64];
        rng_seed(&rng, 110 + i);
        d.x = new_floats(in);
        d.y = new_floats(out);
        d.r = new_floats(out);
        fill_uniform(&rng, d.x, in, -1.0f, 1.0f);
        fill_uniform(&rng, d.r, out, -1.0f, 1.0f);

        float *y_ref = new_floats(out);
        cpu_upsample_nearest_forward(&ctx, d.n, d.c, d.h, d.w, d.f, d.x,
                                     d.y);
        ref_upsample_nearest_forward(NULL, d.n, d.c, d.h, d.w, d.f, d.x,
                                     y_ref);
        snprintf(what, sizeof(what), "upsample y, shape %zu", i);
        CHECK_CLOSE(what, y_ref, d.y, out, 0.0, 0.0);

        float *dx = new_floats(in);
        fill_uniform(&rng, dx, in, -1.0f, 1.0f);
        float *dx_ref = copy_floats(dx, in);
        cpu_upsample_nearest_backward(&ctx, d.n, d.c, d.h, d.w, d.f, d.r,
                                      dx);
        ref_upsample_nearest_backward(NULL, d.n, d.c, d.h, d.w, d.f, d.r,
                                      dx_ref);
        snprintf(what, sizeof(what), "upsample dx prefilled, shape %zu", i);
        CHECK_CLOSE(what, dx_ref, dx, in, 1e-6, 1e-6);

        for (int use_ref = 0; use_ref <= 1; use_ref++) {
            float *g = new_floats(in);
            double *fd = new_doubles(in);
            d.use_ref = use_ref;
            if (use_ref)
                ref_upsample_nearest_backward(NULL, d.n, d.c, d.h, d.w, d.f,
                                              d.r, g);
            else
                cpu_upsample_nearest_backward(&ctx, d.n, d.c, d.h, d.w, d.f,
                                              d.r, g);
            finite_diff(upsample_loss, &d, d.x, in, 1e-2f, fd);
            snprintf(what, sizeof(what), "upsample dx vs fd, shape %zu, %s",
                     i, use_ref ? "ref" : "cpu");
            CHECK_CLOSE_D(what, fd, g, in, FD_TOL, FD_TOL);
            free(g);
            free(fd);
        }
        free(d.x);
        free(d.y);
        free(d.r);
        free(y_ref);
        free(dx);
        free(dx_ref);
    }
    cpu_kctx_free(&ctx);
}

/* ---- Channel copy ------------------------------------------------------- */

static const struct channel_slice slices[] = {
    {1, 7, 5, 2, 0},  /* n, hw, c_whole, c_part, c_off: first channels */
    {3, 4, 6, 3, 3},  /* last channels */
    {2, 9, 5, 1, 2},  /* one middle channel */
    {2, 3, 4, 4, 0},  /* the whole tensor */
};

static void channel_copy_matches_ref(void **state)
{
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (size_t i = 0; i < sizeof(slices) / sizeof(slices[0]); i++) {
        const struct channel_slice *s = &slices[i];
        size_t whole = (size_t)s->n * s->c_whole * s->hw;
        size_t part = (size_t)s->n * s->c_part * s->hw;
        struct test_rng rng;
        rng_seed(&rng, 120 + i);

        for (int accumulate = 0; accumulate <= 1; accumulate++) {
            char what[64];
            float *src_part = new_floats(part);
            float *src_whole = new_floats(whole);
            float *in_got = new_floats(whole);
            float *out_got = new_floats(part);
            fill_uniform(&rng, src_part, part, -1.0f, 1.0f);
            fill_uniform(&rng, src_whole, whole, -1.0f, 1.0f);
            fill_uniform(&rng, in_got, whole, -1.0f, 1.0f);
            fill_uniform(&rng, out_got, part, -1.0f, 1.0f);
            float *in_want = copy_floats(in_got, whole);
            float *out_want = copy_floats(out_got, part);

            cpu_channel_copy_in(&ctx, s, src_part, in_got, accumulate);
            ref_channel_copy_in(NULL, s, src_part, in_want, accumulate);
            snprintf(what, sizeof(what), "copy_in slice %zu, acc %d", i,
                     accumulate);
            CHECK_CLOSE(what, in_want, in_got, whole, 0.0, 0.0);

            cpu_channel_copy_out(&ctx, s, src_whole, out_got, accumulate);
            ref_channel_copy_out(NULL, s, src_whole, out_want, accumulate);
            snprintf(what, sizeof(what), "copy_out slice %zu, acc %d", i,
                     accumulate);
            CHECK_CLOSE(what, out_want, out_got, part, 0.0, 0.0);

            free(src_part);
            free(src_whole);
            free(in_got);
            free(out_got);
            free(in_want);
            free(out_want);
        }
    }
    cpu_kctx_free(&ctx);
}

/* Concat of two parts and split back returns the parts. The split's
 * backward (copy_in with accumulation) adds into the gradient. */
static void channel_concat_split_round_trip(void **state)
{
    struct channel_slice a = {2, 5, 5, 2, 0};
    struct channel_slice b = {2, 5, 5, 3, 2};
    struct kctx ctx;
    struct test_rng rng;
    size_t na = 2 * 2 * 5, nb = 2 * 3 * 5, nw = 2 * 5 * 5;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    rng_seed(&rng, 130);
    float *pa = new_floats(na), *pb = new_floats(nb);
    float *whole = new_floats(nw);
    float *qa = new_floats(na), *qb = new_floats(nb);
    fill_uniform(&rng, pa, na, -1.0f, 1.0f);
    fill_uniform(&rng, pb, nb, -1.0f, 1.0f);

    cpu_channel_copy_in(&ctx, &a, pa, whole, 0);
    cpu_channel_copy_in(&ctx, &b, pb, whole, 0);
    cpu_channel_copy_out(&ctx, &a, whole, qa, 0);
    cpu_channel_copy_out(&ctx, &b, whole, qb, 0);
    CHECK_CLOSE("part a", pa, qa, na, 0.0, 0.0);
    CHECK_CLOSE("part b", pb, qb, nb, 0.0, 0.0);

    /* The split's backward accumulates: twice into zeros doubles. */
    float *grad = new_floats(nw);
    cpu_channel_copy_in(&ctx, &a, pa, grad, 1);
    cpu_channel_copy_in(&ctx, &a, pa, grad, 1);
    cpu_channel_copy_out(&ctx, &a, grad, qa, 0);
    for (size_t i = 0; i < na; i++)
        pa[i] *= 2.0f;
    CHECK_CLOSE("accumulated part a", pa, qa, na, 0.0, 0.0);

    free(pa);
    free(pb);
    free(whole);
    free(qa);
    free(qb);
    free(grad);
    cpu_kctx_free(&ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(silu_forward_matches_ref),
        cmocka_unit_test(silu_propagates_nan),
        cmocka_unit_test(silu_backward_matches_ref),
        cmocka_unit_test(silu_backward_matches_fd),
        cmocka_unit_test(silu_backward_accumulates),
        cmocka_unit_test(add_forward_matches_ref),
        cmocka_unit_test(pool_shape_init_checks),
        cmocka_unit_test(maxpool_matches_ref),
        cmocka_unit_test(maxpool_ties_and_nan),
        cmocka_unit_test(maxpool_backward_matches_fd),
        cmocka_unit_test(avgpool_matches_ref_and_fd),
        cmocka_unit_test(upsample_matches_ref_and_fd),
        cmocka_unit_test(channel_copy_matches_ref),
        cmocka_unit_test(channel_concat_split_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
