/*
 * Channel concat and split: copies between a part [n, c_part, hw] and the
 * channels c_off .. c_off + c_part - 1 of a whole [n, c_whole, hw]. Each
 * (image, channel) plane is one contiguous run on both sides, and planes
 * are split between threads.
 */
#include "cpu.h"

#include <string.h>

static void copy_plane(const float *src, float *dst, int hw, int accumulate)
{
    if (!accumulate) {
        memcpy(dst, src, sizeof(float) * (size_t)hw);
        return;
    }
    for (int i = 0; i < hw; i++)
        dst[i] += src[i];
}

void cpu_channel_copy_in(struct kctx *ctx, const struct channel_slice *s,
                         const float *part, float *whole, int accumulate)
{
    int threads = cpu_thread_count(ctx);
    int planes = s->n * s->c_part;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (int p = 0; p < planes; p++) {
        int n = p / s->c_part;
        int c = p % s->c_part;
        size_t w = (size_t)n * s->c_whole + s->c_off + c;
        copy_plane(part + (size_t)p * s->hw, whole + w * s->hw, s->hw,
                   accumulate);
    }
}

void cpu_channel_copy_out(struct kctx *ctx, const struct channel_slice *s,
                          const float *whole, float *part, int accumulate)
{
    int threads = cpu_thread_count(ctx);
    int planes = s->n * s->c_part;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (int p = 0; p < planes; p++) {
        int n = p / s->c_part;
        int c = p % s->c_part;
        size_t w = (size_t)n * s->c_whole + s->c_off + c;
        copy_plane(whole + w * s->hw, part + (size_t)p * s->hw, s->hw,
                   accumulate);
    }
}

/* Rows of hw_part values: row p is (image p / c_part, channel p % c_part)
 * of the part, contiguous there, and starts at hw_off in its channel of
 * the whole. */
static void slice_copy(struct kctx *ctx, const struct tensor_slice *s,
                       const float *src, float *dst, int whole_is_dst,
                       int accumulate)
{
    int threads = cpu_thread_count(ctx);
    int rows = s->n * s->c_part;

#pragma omp parallel for schedule(static) num_threads(threads)
    for (int p = 0; p < rows; p++) {
        int n = p / s->c_part;
        int c = p % s->c_part;
        size_t part_at = (size_t)p * s->hw_part;
        size_t whole_at = ((size_t)n * s->c_whole + s->c_off + c) *
                              s->hw_whole +
                          s->hw_off;
        if (whole_is_dst)
            copy_plane(src + part_at, dst + whole_at, s->hw_part, accumulate);
        else
            copy_plane(src + whole_at, dst + part_at, s->hw_part, accumulate);
    }
}

void cpu_slice_copy_in(struct kctx *ctx, const struct tensor_slice *s,
                       const float *part, float *whole, int accumulate)
{
    slice_copy(ctx, s, part, whole, 1, accumulate);
}

void cpu_slice_copy_out(struct kctx *ctx, const struct tensor_slice *s,
                        const float *whole, float *part, int accumulate)
{
    slice_copy(ctx, s, whole, part, 0, accumulate);
}
