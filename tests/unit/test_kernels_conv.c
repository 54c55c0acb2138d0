/*
 * Tests of 2-D convolution: every CPU path (im2col + sgemm, direct 1x1
 * sgemm, oneDNN with blocked and with plain layouts) against the reference
 * on small random tensors, and the backward of CPU and reference against
 * central finite differences.
 *
 * Tolerances:
 * - CPU against reference: atol = rtol = 1e-4. Each output sums at most
 *   cin_g * k * k = 100 products of values in [-1, 1] in float, whose
 *   rounding error is below 100 * 6e-8 * (sum of |terms|) ~ 1e-5 here;
 *   an indexing bug gives errors of order 0.1 or more.
 * - Finite differences: the convolution is linear in x, w and b, so a
 *   central difference has no truncation error, and a large step
 *   eps = 0.05 keeps the rounding of the float forward small: the loss is
 *   a double sum of float outputs, each rounded by 6e-8 relative, which
 *   over about 500 outputs of size ~3 moves L by ~1e-5 and the quotient
 *   by ~1e-4. atol = rtol = 2e-3 leaves a margin of ten.
 * - Two runs of the same kernel (accumulation, NULL gradients): 2e-5.
 *   Results are not bit-identical: the im2col path adds its k * k
 *   pieces into dx one by one, so the second call groups the sum
 *   differently, and oneDNN computes dw alone with another primitive
 *   than dw with db. Both change only the last bits of sums of up to
 *   100 terms.
 */
#include "kernel_check.h"

#include "cpu/cpu.h"
#include "kernels.h"
#include "ref/ref.h"

#define CPU_TOL 1e-4
#define FD_EPS 0.05f
#define FD_TOL 2e-3
#define RERUN_TOL 2e-5

struct conv_case {
    const char *name;
    struct conv2d_shape s; /* n, c_in, h, w, c_out, k, stride, pad, groups */
    int bias;
};

/* Stride 1 and 2, pad 0, 1 and 2, k 1, 3 and 5, groups 1, 2 and
 * depthwise, odd and non-square sizes, n = 1 and n > 1. */
static const struct conv_case cases[] = {
    {"k3 s1 p1 n1", {1, 3, 7, 7, 4, 3, 1, 1, 1, 0, 0}, 1},
    {"k3 s2 p1 g2 odd", {2, 4, 9, 7, 6, 3, 2, 1, 2, 0, 0}, 0},
    {"k1 s1 p0", {3, 6, 8, 8, 5, 1, 1, 0, 1, 0, 0}, 1},
    {"k5 s1 p2", {2, 4, 10, 9, 8, 5, 1, 2, 1, 0, 0}, 1},
    {"k3 depthwise", {2, 4, 6, 6, 4, 3, 1, 1, 4, 0, 0}, 0},
    {"k1 s2 p0 g2", {2, 4, 9, 9, 6, 1, 2, 0, 2, 0, 0}, 1},
    {"k3 s2 p0", {3, 3, 5, 5, 2, 3, 2, 0, 1, 0, 0}, 0},
    {"k5 s2 p1 odd", {1, 2, 11, 9, 3, 5, 2, 1, 1, 0, 0}, 1},
    {"k3 s1 p0 n5", {5, 2, 6, 5, 4, 3, 1, 0, 1, 0, 0}, 1},
};
#define CASE_COUNT (sizeof(cases) / sizeof(cases[0]))

/* Smaller shapes for finite differences, which run two forwards per
 * input element. */
static const struct conv_case fd_cases[] = {
    {"fd k3 s1 p1 n1", {1, 3, 5, 5, 4, 3, 1, 1, 1, 0, 0}, 1},
    {"fd k1 s1 p0", {2, 3, 4, 4, 5, 1, 1, 0, 1, 0, 0}, 1},
    {"fd k3 s2 p0", {2, 3, 5, 5, 2, 3, 2, 0, 1, 0, 0}, 0},
    {"fd k5 s2 p1 odd", {1, 2, 9, 7, 3, 5, 2, 1, 1, 0, 0}, 1},
    {"fd k3 s2 p1 g2 odd", {2, 4, 7, 5, 6, 3, 2, 1, 2, 0, 0}, 0},
    {"fd depthwise", {2, 4, 5, 5, 4, 3, 1, 1, 4, 0, 0}, 1},
};

static const char *const path_names[] = {"im2col", "direct", "onednn",
                                         "onednn-plain"};

/* Tensors of one case: inputs random in [-1, 1], r = dy random too. */
struct conv_data {
    struct conv2d_shape s;
    size_t xs, ws, ys;
    float *x, *w, *b, *r, *y;
    struct kctx *ctx;
    int use_ref; /* loss through ref_ instead of cpu_ forward */
};

static void conv_data_init(struct conv_data *d, const struct conv_case *c,
                           struct kctx *ctx, uint64_t seed)
{
    struct test_rng rng;

    rng_seed(&rng, seed);
    d->s = c->s;
    assert_int_equal(conv2d_shape_init(&d->s), 0);
    d->xs = (size_t)d->s.n * d->s.c_in * d->s.h * d->s.w;
    d->ws = (size_t)d->s.c_out * (d->s.c_in / d->s.groups) * d->s.k
            * d->s.k;
    d->ys = (size_t)d->s.n * d->s.c_out * d->s.h_out * d->s.w_out;
    d->x = new_floats(d->xs);
    d->w = new_floats(d->ws);
    d->b = c->bias ? new_floats((size_t)d->s.c_out) : NULL;
    d->r = new_floats(d->ys);
    d->y = new_floats(d->ys);
    fill_uniform(&rng, d->x, d->xs, -1.0f, 1.0f);
    fill_uniform(&rng, d->w, d->ws, -1.0f, 1.0f);
    if (d->b != NULL)
        fill_uniform(&rng, d->b, (size_t)d->s.c_out, -1.0f, 1.0f);
    fill_uniform(&rng, d->r, d->ys, -1.0f, 1.0f);
    d->ctx = ctx;
    d->use_ref = 0;
}

static void conv_data_free(struct conv_data *d)
{
    free(d->x);
    free(d->w);
    free(d->b);
    free(d->r);
    free(d->y);
}

/* Gradient buffers, optionally prefilled with the same random values. */
struct conv_grads {
    float *dx, *dw, *db;
};

static void grads_init(struct conv_grads *g, const struct conv_data *d,
                       uint64_t seed)
{
    struct test_rng rng;

    rng_seed(&rng, seed);
    g->dx = new_floats(d->xs);
    g->dw = new_floats(d->ws);
    g->db = new_floats((size_t)d->s.c_out);
    if (seed != 0) {
        fill_uniform(&rng, g->dx, d->xs, -1.0f, 1.0f);
        fill_uniform(&rng, g->dw, d->ws, -1.0f, 1.0f);
        fill_uniform(&rng, g->db, (size_t)d->s.c_out, -1.0f, 1.0f);
    }
}

static void grads_free(struct conv_grads *g)
{
    free(g->dx);
    free(g->dw);
    free(g->db);
}

static void label(char *buf, size_t size, const char *what,
                  const struct conv_case *c, int path, int threads)
{
    snprintf(buf, size, "%s [%s, path %s, %d threads]", what, c->name,
             path >= 0 ? path_names[path] : "default", threads);
}

static void conv_forward_matches_ref(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);

        for (size_t i = 0; i < CASE_COUNT; i++) {
            struct conv_data d;
            conv_data_init(&d, &cases[i], &ctx, 100 + i);
            float *expected = new_floats(d.ys);
            ref_conv2d_forward(NULL, &d.s, d.x, d.w, d.b, expected);

            for (int path = 0; path < CONV2D_PATH_COUNT; path++) {
                if (!conv2d_path_supports(path, &d.s))
                    continue;
                char what[160];
                label(what, sizeof(what), "y", &cases[i], path, threads);

                conv2d_force_path(path);
                cpu_conv2d_forward(&ctx, &d.s, d.x, d.w, d.b, d.y);
                conv2d_force_path(-1);
                CHECK_CLOSE(what, expected, d.y, d.ys, CPU_TOL, CPU_TOL);
            }
            free(expected);
            conv_data_free(&d);
        }
        cpu_kctx_free(&ctx);
    }
}

/* Backward of every path into gradients prefilled with random values,
 * against the reference from the same prefill: this checks the values
 * and that they are added, not stored. */
static void conv_backward_matches_ref(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        struct kctx ctx;
        cpu_kctx_init(&ctx, threads);

        for (size_t i = 0; i < CASE_COUNT; i++) {
            struct conv_data d;
            struct conv_grads want;
            conv_data_init(&d, &cases[i], &ctx, 200 + i);
            grads_init(&want, &d, 7);
            ref_conv2d_backward(NULL, &d.s, d.x, d.w, d.r, want.dx, want.dw,
                                want.db);

            for (int path = 0; path < CONV2D_PATH_COUNT; path++) {
                if (!conv2d_path_supports(path, &d.s))
                    continue;
                struct conv_grads got;
                char what[160];
                grads_init(&got, &d, 7);

                conv2d_force_path(path);
                cpu_conv2d_backward(&ctx, &d.s, d.x, d.w, d.r, got.dx,
                                    got.dw, got.db);
                conv2d_force_path(-1);

                label(what, sizeof(what), "dx", &cases[i], path, threads);
                CHECK_CLOSE(what, want.dx, got.dx, d.xs, CPU_TOL, CPU_TOL);
                label(what, sizeof(what), "dw", &cases[i], path, threads);
                CHECK_CLOSE(what, want.dw, got.dw, d.ws, CPU_TOL, CPU_TOL);
                label(what, sizeof(what), "db", &cases[i], path, threads);
                CHECK_CLOSE(what, want.db, got.db, (size_t)d.s.c_out,
                            CPU_TOL, CPU_TOL);
                grads_free(&got);
            }
            grads_free(&want);
            conv_data_free(&d);
        }
        cpu_kctx_free(&ctx);
    }
}

/* L = sum r * conv(x, w, b) through the CPU or the reference forward. */
static double conv_loss(void *state)
{
    struct conv_data *d = state;

    if (d->use_ref)
        ref_conv2d_forward(NULL, &d->s, d->x, d->w, d->b, d->y);
    else
        cpu_conv2d_forward(d->ctx, &d->s, d->x, d->w, d->b, d->y);
    return weighted_sum(d->r, d->y, d->ys);
}

/* Backward of CPU (default path) and reference against finite
 * differences of their own forward, for fd_cases[index]. One thread: the
 * thousands of tiny forwards would otherwise mostly measure OpenMP
 * barriers on a loaded machine, and the threaded paths are compared with
 * the reference above. */
static void check_conv_fd(size_t index)
{
    const struct conv_case *c = &fd_cases[index];
    struct kctx ctx;
    cpu_kctx_init(&ctx, 1);

    for (int use_ref = 0; use_ref <= 1; use_ref++) {
        struct conv_data d;
        struct conv_grads got;
        conv_data_init(&d, c, &ctx, 300 + index);
        d.use_ref = use_ref;
        grads_init(&got, &d, 0);

        if (use_ref)
            ref_conv2d_backward(NULL, &d.s, d.x, d.w, d.r, got.dx, got.dw,
                                d.b != NULL ? got.db : NULL);
        else
            cpu_conv2d_backward(&ctx, &d.s, d.x, d.w, d.r, got.dx, got.dw,
                                d.b != NULL ? got.db : NULL);

        double *fd_x = new_doubles(d.xs);
        double *fd_w = new_doubles(d.ws);
        finite_diff(conv_loss, &d, d.x, d.xs, FD_EPS, fd_x);
        finite_diff(conv_loss, &d, d.w, d.ws, FD_EPS, fd_w);

        char what[160];
        snprintf(what, sizeof(what), "dx vs finite differences [%s, %s]",
                 c->name, use_ref ? "ref" : "cpu");
        CHECK_CLOSE_D(what, fd_x, got.dx, d.xs, FD_TOL, FD_TOL);
        snprintf(what, sizeof(what), "dw vs finite differences [%s, %s]",
                 c->name, use_ref ? "ref" : "cpu");
        CHECK_CLOSE_D(what, fd_w, got.dw, d.ws, FD_TOL, FD_TOL);

        if (d.b != NULL) {
            double *fd_b = new_doubles((size_t)d.s.c_out);
            finite_diff(conv_loss, &d, d.b, (size_t)d.s.c_out, FD_EPS, fd_b);
            snprintf(what, sizeof(what), "db vs finite differences [%s, %s]",
                     c->name, use_ref ? "ref" : "cpu");
            CHECK_CLOSE_D(what, fd_b, got.db, (size_t)d.s.c_out, FD_TOL,
                          FD_TOL);
            free(fd_b);
        }
        free(fd_x);
        free(fd_w);
        grads_free(&got);
        conv_data_free(&d);
    }
    cpu_kctx_free(&ctx);
}

static void conv_backward_matches_fd_stride1(void **state)
{
    (void)state;
    check_conv_fd(0);
    check_conv_fd(1);
}

static void conv_backward_matches_fd_stride2(void **state)
{
    (void)state;
    check_conv_fd(2);
    check_conv_fd(3);
}

static void conv_backward_matches_fd_groups(void **state)
{
    (void)state;
    check_conv_fd(4);
    check_conv_fd(5);
}

/* Two backward calls into zeroed buffers give twice one call. */
static void conv_backward_accumulates(void **state)
{
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (size_t i = 0; i < CASE_COUNT; i++) {
        for (int path = 0; path < CONV2D_PATH_COUNT; path++) {
            if (!conv2d_path_supports(path, &cases[i].s))
                continue;
            struct conv_data d;
            struct conv_grads once, twice;
            conv_data_init(&d, &cases[i], &ctx, 400 + i);
            grads_init(&once, &d, 0);
            grads_init(&twice, &d, 0);

            conv2d_force_path(path);
            cpu_conv2d_backward(&ctx, &d.s, d.x, d.w, d.r, once.dx, once.dw,
                                once.db);
            for (int k = 0; k < 2; k++)
                cpu_conv2d_backward(&ctx, &d.s, d.x, d.w, d.r, twice.dx,
                                    twice.dw, twice.db);
            conv2d_force_path(-1);

            for (size_t j = 0; j < d.xs; j++)
                once.dx[j] *= 2.0f;
            for (size_t j = 0; j < d.ws; j++)
                once.dw[j] *= 2.0f;
            for (int j = 0; j < d.s.c_out; j++)
                once.db[j] *= 2.0f;

            char what[160];
            label(what, sizeof(what), "dx twice", &cases[i], path, 2);
            CHECK_CLOSE(what, once.dx, twice.dx, d.xs, RERUN_TOL, RERUN_TOL);
            label(what, sizeof(what), "dw twice", &cases[i], path, 2);
            CHECK_CLOSE(what, once.dw, twice.dw, d.ws, RERUN_TOL, RERUN_TOL);
            label(what, sizeof(what), "db twice", &cases[i], path, 2);
            CHECK_CLOSE(what, once.db, twice.db, (size_t)d.s.c_out, RERUN_TOL,
                        RERUN_TOL);
            grads_free(&once);
            grads_free(&twice);
            conv_data_free(&d);
        }
    }
    cpu_kctx_free(&ctx);
}

/* Each subset of {dx, dw, db} computes exactly its members, with the same
 * values as all three together. */
static void conv_backward_skips_null(void **state)
{
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (size_t i = 0; i < CASE_COUNT; i++) {
        for (int path = 0; path < CONV2D_PATH_COUNT; path++) {
            if (!conv2d_path_supports(path, &cases[i].s))
                continue;
            struct conv_data d;
            struct conv_grads all;
            conv_data_init(&d, &cases[i], &ctx, 500 + i);
            grads_init(&all, &d, 0);
            conv2d_force_path(path);
            cpu_conv2d_backward(&ctx, &d.s, d.x, d.w, d.r, all.dx, all.dw,
                                all.db);

            for (int mask = 0; mask < 7; mask++) {
                struct conv_grads some;
                char what[160];
                grads_init(&some, &d, 0);
                cpu_conv2d_backward(&ctx, &d.s, d.x, d.w, d.r,
                                    mask & 1 ? some.dx : NULL,
                                    mask & 2 ? some.dw : NULL,
                                    mask & 4 ? some.db : NULL);

                /* A skipped gradient stays zero. */
                float *zero = new_floats(d.xs + d.ws + (size_t)d.s.c_out);
                snprintf(what, sizeof(what), "dx with mask %d", mask);
                label(what + strlen(what), sizeof(what) - strlen(what), "",
                      &cases[i], path, 2);
                CHECK_CLOSE(what, mask & 1 ? all.dx : zero, some.dx, d.xs,
                            RERUN_TOL, RERUN_TOL);
                snprintf(what, sizeof(what), "dw with mask %d", mask);
                label(what + strlen(what), sizeof(what) - strlen(what), "",
                      &cases[i], path, 2);
                CHECK_CLOSE(what, mask & 2 ? all.dw : zero, some.dw, d.ws,
                            RERUN_TOL, RERUN_TOL);
                snprintf(what, sizeof(what), "db with mask %d", mask);
                label(what + strlen(what), sizeof(what) - strlen(what), "",
                      &cases[i], path, 2);
                CHECK_CLOSE(what, mask & 4 ? all.db : zero, some.db,
                            (size_t)d.s.c_out, RERUN_TOL, RERUN_TOL);
                free(zero);
                grads_free(&some);
            }
            conv2d_force_path(-1);
            grads_free(&all);
            conv_data_free(&d);
        }
    }
    cpu_kctx_free(&ctx);
}

/* The same thread count gives bit-identical results. */
static void conv_deterministic(void **state)
{
    struct kctx ctx;
    struct conv_data d;
    struct conv_grads a, b;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    conv_data_init(&d, &cases[8], &ctx, 600);
    grads_init(&a, &d, 0);
    grads_init(&b, &d, 0);
    cpu_conv2d_backward(&ctx, &d.s, d.x, d.w, d.r, a.dx, a.dw, a.db);
    cpu_conv2d_backward(&ctx, &d.s, d.x, d.w, d.r, b.dx, b.dw, b.db);

    assert_memory_equal(a.dx, b.dx, sizeof(float) * d.xs);
    assert_memory_equal(a.dw, b.dw, sizeof(float) * d.ws);
    assert_memory_equal(a.db, b.db, sizeof(float) * (size_t)d.s.c_out);
    grads_free(&a);
    grads_free(&b);
    conv_data_free(&d);
    cpu_kctx_free(&ctx);
}

/* A column budget of one image's worth forces several im2col chunks per
 * thread, which the default budget never does on these sizes. */
static void conv_im2col_small_chunks(void **state)
{
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    conv2d_gemm_set_col_budget(1);
    conv2d_force_path(CONV2D_PATH_IM2COL);
    for (size_t i = 0; i < CASE_COUNT; i++) {
        struct conv_data d;
        struct conv_grads want, got;
        char what[160];
        conv_data_init(&d, &cases[i], &ctx, 700 + i);
        grads_init(&want, &d, 3);
        grads_init(&got, &d, 3);
        float *expected = new_floats(d.ys);

        ref_conv2d_forward(NULL, &d.s, d.x, d.w, d.b, expected);
        cpu_conv2d_forward(&ctx, &d.s, d.x, d.w, d.b, d.y);
        ref_conv2d_backward(NULL, &d.s, d.x, d.w, d.r, want.dx, want.dw,
                            want.db);
        cpu_conv2d_backward(&ctx, &d.s, d.x, d.w, d.r, got.dx, got.dw,
                            got.db);

        label(what, sizeof(what), "y, chunked", &cases[i], 0, 2);
        CHECK_CLOSE(what, expected, d.y, d.ys, CPU_TOL, CPU_TOL);
        label(what, sizeof(what), "dx, chunked", &cases[i], 0, 2);
        CHECK_CLOSE(what, want.dx, got.dx, d.xs, CPU_TOL, CPU_TOL);
        label(what, sizeof(what), "dw, chunked", &cases[i], 0, 2);
        CHECK_CLOSE(what, want.dw, got.dw, d.ws, CPU_TOL, CPU_TOL);
        free(expected);
        grads_free(&want);
        grads_free(&got);
        conv_data_free(&d);
    }
    conv2d_force_path(-1);
    conv2d_gemm_set_col_budget(0);
    cpu_kctx_free(&ctx);
}

/* The GEMM path on OpenBLAS, kept selectable for comparisons. */
static void conv_openblas_matches_ref(void **state)
{
    struct kctx ctx;

    (void)state;
    cpu_kctx_init(&ctx, 2);
    cpu_gemm_set_backend(CPU_GEMM_OPENBLAS);
    conv2d_force_path(CONV2D_PATH_IM2COL);
    for (size_t i = 0; i < CASE_COUNT; i++) {
        struct conv_data d;
        struct conv_grads want, got;
        char what[160];
        conv_data_init(&d, &cases[i], &ctx, 800 + i);
        grads_init(&want, &d, 5);
        grads_init(&got, &d, 5);

        ref_conv2d_backward(NULL, &d.s, d.x, d.w, d.r, want.dx, want.dw,
                            want.db);
        cpu_conv2d_backward(&ctx, &d.s, d.x, d.w, d.r, got.dx, got.dw,
                            got.db);
        label(what, sizeof(what), "dx, OpenBLAS", &cases[i], 0, 2);
        CHECK_CLOSE(what, want.dx, got.dx, d.xs, CPU_TOL, CPU_TOL);
        label(what, sizeof(what), "dw, OpenBLAS", &cases[i], 0, 2);
        CHECK_CLOSE(what, want.dw, got.dw, d.ws, CPU_TOL, CPU_TOL);
        grads_free(&want);
        grads_free(&got);
        conv_data_free(&d);
    }
    conv2d_force_path(-1);
    cpu_gemm_set_backend(CPU_GEMM_DNNL);
    cpu_kctx_free(&ctx);
}

static void conv_shape_init_checks(void **state)
{
    (void)state;
    struct conv2d_shape s = {2, 3, 28, 28, 16, 3, 2, 1, 1, 0, 0};
    assert_int_equal(conv2d_shape_init(&s), 0);
    assert_int_equal(s.h_out, 14);
    assert_int_equal(s.w_out, 14);

    struct conv2d_shape odd = {1, 4, 7, 5, 4, 3, 2, 0, 2, 0, 0};
    assert_int_equal(conv2d_shape_init(&odd), 0);
    assert_int_equal(odd.h_out, 3);
    assert_int_equal(odd.w_out, 2);

    struct conv2d_shape groups = {1, 3, 8, 8, 4, 3, 1, 1, 2, 0, 0};
    assert_int_equal(conv2d_shape_init(&groups), -1);

    struct conv2d_shape empty = {1, 3, 2, 2, 4, 5, 1, 1, 1, 0, 0};
    assert_int_equal(conv2d_shape_init(&empty), -1);

    struct conv2d_shape stride0 = {1, 3, 8, 8, 4, 3, 0, 1, 1, 0, 0};
    assert_int_equal(conv2d_shape_init(&stride0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conv_shape_init_checks),
        cmocka_unit_test(conv_forward_matches_ref),
        cmocka_unit_test(conv_backward_matches_ref),
        cmocka_unit_test(conv_backward_matches_fd_stride1),
        cmocka_unit_test(conv_backward_matches_fd_stride2),
        cmocka_unit_test(conv_backward_matches_fd_groups),
        cmocka_unit_test(conv_backward_accumulates),
        cmocka_unit_test(conv_backward_skips_null),
        cmocka_unit_test(conv_deterministic),
        cmocka_unit_test(conv_im2col_small_chunks),
        cmocka_unit_test(conv_openblas_matches_ref),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
