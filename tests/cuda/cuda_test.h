/*
 * What the CUDA kernel tests share: a CPU and a GPU context opened once
 * per test group, the skip rule (without a usable device each test
 * prints "SKIP cuda: ..." and is skipped; with a device whose context
 * fails, it fails), a seeded splitmix64 generator, and device memory
 * helpers that fail the test with the CUDA error.
 *
 * Include it after cmocka.h. Everything is static, so each test program
 * has its own copy of the state.
 */
#ifndef TRAINYARD_CUDA_TEST_H
#define TRAINYARD_CUDA_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/kernels_cuda.h"
#include "kernels.h"

static struct kctx cpu_ctx;
static struct kctx gpu_ctx;
static int gpu_ready;
static char no_gpu_reason[256];
static char gpu_init_error[ERROR_MSG_MAX];
static uint64_t rng_state;

static inline void rng_seed(uint64_t seed)
{
    rng_state = seed;
}

/* splitmix64 */
static inline uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi), from 24 random bits. */
static inline float rng_uniform(float lo, float hi)
{
    float unit = (float)(rng_next() >> 40) / 16777216.0f;

    return lo + (hi - lo) * unit;
}

static inline int group_setup(void **state)
{
    struct error err = {0};

    (void)state;
    cpu_kctx_init(&cpu_ctx, 0);
    if (cuda_device_count(no_gpu_reason, sizeof(no_gpu_reason)) == 0)
        return 0;
    /* NOTE: device 0 only; pick another with CUDA_VISIBLE_DEVICES. */
    if (cuda_kctx_init(&gpu_ctx, 0, &err) != 0) {
        snprintf(gpu_init_error, sizeof(gpu_init_error), "%s", err.msg);
        return 0;
    }
    gpu_ready = 1;
    return 0;
}

static inline int group_teardown(void **state)
{
    (void)state;
    if (gpu_ready)
        cuda_kctx_free(&gpu_ctx);
    cpu_kctx_free(&cpu_ctx);
    return 0;
}

/* Skip the test without a usable device; fail it when a device exists
 * but its context could not be created. */
static inline void require_gpu(void)
{
    if (gpu_init_error[0] != '\0')
        fail_msg("a CUDA device exists, but cuda_kctx_init(0) failed: %s",
                 gpu_init_error);
    if (!gpu_ready) {
        printf("SKIP cuda: no usable CUDA device (%s)\n", no_gpu_reason);
        fflush(stdout);
        skip();
    }
}

/* Wait for the GPU and fail with the recorded error, if any. */
static inline void gpu_sync(const char *label)
{
    struct error err = {0};

    if (cuda_synchronize(&gpu_ctx, &err) != 0)
        fail_msg("%s: %s", label, err.msg);
}

/* Zero-filled device memory. */
static inline void *gpu_alloc(size_t bytes)
{
    struct error err = {0};
    void *ptr = NULL;

    if (cuda_malloc(&gpu_ctx, &ptr, bytes, &err) != 0)
        fail_msg("cuda_malloc(%zu): %s", bytes, err.msg);
    if (cuda_memset_zero(&gpu_ctx, ptr, bytes, &err) != 0)
        fail_msg("cuda_memset_zero(%zu): %s", bytes, err.msg);
    return ptr;
}

static inline void gpu_upload(void *dst, const void *src, size_t bytes)
{
    struct error err = {0};

    if (cuda_memcpy_h2d(&gpu_ctx, dst, src, bytes, &err) != 0)
        fail_msg("cuda_memcpy_h2d(%zu): %s", bytes, err.msg);
}

static inline void gpu_download(void *dst, const void *src, size_t bytes)
{
    struct error err = {0};

    if (cuda_memcpy_d2h(&gpu_ctx, dst, src, bytes, &err) != 0)
        fail_msg("cuda_memcpy_d2h(%zu): %s", bytes, err.msg);
}

/* Zero-filled host memory of n floats. */
static inline float *host_floats(size_t n)
{
    float *x = calloc(n > 0 ? n : 1, sizeof(float));

    assert_non_null(x);
    return x;
}

#endif
