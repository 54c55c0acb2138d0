/*
 * Helpers shared by the kernel tests: a seeded random generator, buffer
 * allocation, comparisons that print the worst element, and central
 * finite differences.
 *
 * Comparisons accept an element when |actual - expected| <= atol + rtol *
 * |expected|, the usual mixed test: atol covers values near zero, where a
 * relative error means nothing, and rtol covers large ones. A failure
 * prints the element with the largest excess over its tolerance, its
 * index, both values, and the largest absolute and relative errors.
 *
 * Everything is static so that each test program includes its own copy;
 * the Makefile links only tests/unit/test_*.c and the libraries.
 */
#ifndef TRAINYARD_TESTS_KERNEL_CHECK_H
#define TRAINYARD_TESTS_KERNEL_CHECK_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- Random numbers ------------------------------------------------------
 * splitmix64: a fixed seed gives the same tensors on every run and
 * machine, so a failure reproduces. */
struct test_rng {
    uint64_t state;
};

static inline void rng_seed(struct test_rng *r, uint64_t seed)
{
    r->state = seed;
}

static inline uint64_t rng_next(struct test_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
static inline float rng_uniform(struct test_rng *r, float lo, float hi)
{
    double u = (double)(rng_next(r) >> 11) / 9007199254740992.0;
    return (float)(lo + (hi - lo) * u);
}

static inline void fill_uniform(struct test_rng *r, float *p, size_t n,
                                float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = rng_uniform(r, lo, hi);
}

/* ---- Buffers ------------------------------------------------------------ */
static inline float *new_floats(size_t n)
{
    float *p = calloc(n > 0 ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static inline float *copy_floats(const float *src, size_t n)
{
    float *p = new_floats(n);
    memcpy(p, src, sizeof(float) * n);
    return p;
}

static inline double *new_doubles(size_t n)
{
    double *p = calloc(n > 0 ? n : 1, sizeof(double));
    assert_non_null(p);
    return p;
}

/* ---- Comparisons -------------------------------------------------------- */

/* Compare n expected values, float or double (expected_is_double), with n
 * actual floats. */
static inline void check_close_impl(const char *what, const void *expected,
                                    int expected_is_double,
                                    const float *actual, size_t n,
                                    double atol, double rtol,
                                    const char *file, int line)
{
    size_t worst = 0, max_abs_at = 0, max_rel_at = 0;
    double worst_excess = -INFINITY, max_abs = 0.0, max_rel = 0.0;
    size_t failures = 0;

    for (size_t i = 0; i < n; i++) {
        double e = expected_is_double ? ((const double *)expected)[i]
                                      : ((const float *)expected)[i];
        double a = actual[i];
        double err = fabs(a - e);
        double rel = err / fmax(fabs(e), 1e-30);

        /* A NaN on either side fails: its error compares false. */
        int ok = err <= atol + rtol * fabs(e);
        if (!ok)
            failures++;
        if (!ok && (isnan(err) || err - (atol + rtol * fabs(e))
                                      > worst_excess)) {
            worst_excess = isnan(err) ? INFINITY
                                      : err - (atol + rtol * fabs(e));
            worst = i;
        }
        if (err > max_abs) {
            max_abs = err;
            max_abs_at = i;
        }
        if (rel > max_rel && err > atol) {
            max_rel = rel;
            max_rel_at = i;
        }
    }
    if (failures == 0)
        return;

    double e = expected_is_double ? ((const double *)expected)[worst]
                                  : ((const float *)expected)[worst];
    print_error("%s: %zu of %zu values differ (atol %g, rtol %g)\n"
                "  worst at index %zu: expected %.9g, actual %.9g\n"
                "  max abs error %.3g at index %zu, max rel error %.3g at "
                "index %zu\n", what, failures, n, atol, rtol, worst, e,
                (double)actual[worst], max_abs, max_abs_at, max_rel,
                max_rel_at);
    _fail(file, line);
}

#define CHECK_CLOSE(what, expected, actual, n, atol, rtol)                  \
    check_close_impl((what), (expected), 0, (actual), (n), (atol), (rtol), \
                     __FILE__, __LINE__)
#define CHECK_CLOSE_D(what, expected, actual, n, atol, rtol)                \
    check_close_impl((what), (expected), 1, (actual), (n), (atol), (rtol), \
                     __FILE__, __LINE__)

/* One scalar, printed with both values on failure. */
static inline void check_scalar_impl(const char *what, double expected,
                                     double actual, double atol, double rtol,
                                     const char *file, int line)
{
    double err = fabs(actual - expected);
    if (err <= atol + rtol * fabs(expected))
        return;
    print_error("%s: expected %.12g, actual %.12g (error %.3g, atol %g, "
                "rtol %g)\n", what, expected, actual, err, atol, rtol);
    _fail(file, line);
}

#define CHECK_SCALAR(what, expected, actual, atol, rtol)                    \
    check_scalar_impl((what), (expected), (actual), (atol), (rtol),         \
                      __FILE__, __LINE__)

/* ---- Finite differences -------------------------------------------------
 * The tests differentiate the scalar loss L = sum_i r_i * y_i, whose
 * gradient with respect to y is r, so the backward of an op called with
 * dy = r must return dL/d(input). */

/* sum_i r_i * y_i in double. */
static inline double weighted_sum(const float *r, const float *y, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += (double)r[i] * y[i];
    return sum;
}

/* A loss as a function of the tensors it reads; the finite difference
 * perturbs one element of `param` in place and calls it. */
typedef double (*loss_fn)(void *state);

/* grad[i] = (L(p + eps e_i) - L(p - eps e_i)) / (2 eps) for i < n, in
 * double, restoring param[i] after each pair. The step is applied to the
 * float parameter, and the exact step taken (which rounding may change)
 * is the divisor. */
static inline void finite_diff(loss_fn loss, void *state, float *param,
                               size_t n, float eps, double *grad)
{
    for (size_t i = 0; i < n; i++) {
        float saved = param[i];
        float up = saved + eps;
        float down = saved - eps;

        param[i] = up;
        double l_up = loss(state);
        param[i] = down;
        double l_down = loss(state);
        param[i] = saved;

        grad[i] = (l_up - l_down) / ((double)up - (double)down);
    }
}

#endif
