/*
 * Channel concat and split: copies between a part [n, c_part, hw] and the
 * channels c_off .. c_off + c_part - 1 of a whole [n, c_whole, hw], either
 * overwriting or accumulating (+=).
 *
 * Each (image, channel) plane of the part is one contiguous run in both
 * tensors, so one kernel serves both directions. Plane p of the part
 * (image p / c_part, channel p % c_part) is plane
 * image * c_whole + c_off + channel of the whole.
 */
#include <errno.h>

#include "internal.h"

/* Copy plane p of the part to its plane in the whole (whole_is_dst = 1)
 * or back (0). */
static __global__ void channel_copy_kernel(struct channel_slice s,
                                           size_t planes, const float *src,
                                           float *dst, int whole_is_dst,
                                           int accumulate)
{
    for (size_t p = blockIdx.y; p < planes; p += gridDim.y) {
        size_t image = p / s.c_part;
        size_t channel = p - image * s.c_part;
        size_t whole_plane = image * s.c_whole + s.c_off + channel;
        size_t from = (whole_is_dst ? p : whole_plane) * s.hw;
        size_t to = (whole_is_dst ? whole_plane : p) * s.hw;

        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < s.hw;
             i += gridDim.x * blockDim.x) {
            if (accumulate)
                dst[to + i] += src[from + i];
            else
                dst[to + i] = src[from + i];
        }
    }
}

static void channel_copy(struct kctx *ctx, const struct channel_slice *s,
                         const float *src, float *dst, int whole_is_dst,
                         int accumulate)
{
    struct cuda_state *st = cuda_state_of(ctx);
    size_t planes = (size_t)s->n * s->c_part;

    if (planes == 0 || s->hw <= 0)
        return;
    if (s->c_off < 0 || s->c_off + s->c_part > s->c_whole) {
        RECORD_FAILURE(st, -EINVAL,
                       "channel slice %d..%d is outside the %d channels of "
                       "the whole tensor",
                       s->c_off, s->c_off + s->c_part - 1, s->c_whole);
        return;
    }
    channel_copy_kernel<<<grid_planes(planes, (size_t)s->hw), CUDA_BLOCK, 0,
                          st->stream>>>(*s, planes, src, dst, whole_is_dst,
                                        accumulate != 0);
    (void)LAUNCH_FAILED(st);
}

void cuda_channel_copy_in(struct kctx *ctx, const struct channel_slice *s,
                          const float *part, float *whole, int accumulate)
{
    channel_copy(ctx, s, part, whole, 1, accumulate);
}

void cuda_channel_copy_out(struct kctx *ctx, const struct channel_slice *s,
                           const float *whole, float *part, int accumulate)
{
    channel_copy(ctx, s, whole, part, 0, accumulate);
}

/* Row p of the part (image p / c_part, channel p % c_part) holds hw_part
 * values; in the whole it starts at position hw_off of its channel. */
static __global__ void slice_copy_kernel(struct tensor_slice s, size_t rows,
                                         const float *src, float *dst,
                                         int whole_is_dst, int accumulate)
{
    for (size_t p = blockIdx.y; p < rows; p += gridDim.y) {
        size_t image = p / s.c_part;
        size_t channel = p - image * s.c_part;
        size_t part_at = p * s.hw_part;
        size_t whole_at = (image * s.c_whole + s.c_off + channel) *
                              s.hw_whole +
                          s.hw_off;
        size_t from = whole_is_dst ? part_at : whole_at;
        size_t to = whole_is_dst ? whole_at : part_at;

        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < s.hw_part;
             i += gridDim.x * blockDim.x) {
            if (accumulate)
                dst[to + i] += src[from + i];
            else
                dst[to + i] = src[from + i];
        }
    }
}

static void slice_copy(struct kctx *ctx, const struct tensor_slice *s,
                       const float *src, float *dst, int whole_is_dst,
                       int accumulate)
{
    struct cuda_state *st = cuda_state_of(ctx);
    size_t rows = (size_t)s->n * s->c_part;

    if (rows == 0 || s->hw_part <= 0)
        return;
    if (s->c_off < 0 || s->c_off + s->c_part > s->c_whole || s->hw_off < 0 ||
        s->hw_off + s->hw_part > s->hw_whole) {
        RECORD_FAILURE(st, -EINVAL,
                       "slice of %d channels at %d and %d positions at %d "
                       "is outside the whole tensor (%d channels, %d "
                       "positions)",
                       s->c_part, s->c_off, s->hw_part, s->hw_off, s->c_whole,
                       s->hw_whole);
        return;
    }
    slice_copy_kernel<<<grid_planes(rows, (size_t)s->hw_part), CUDA_BLOCK, 0,
                        st->stream>>>(*s, rows, src, dst, whole_is_dst,
                                      accumulate != 0);
    (void)LAUNCH_FAILED(st);
}

void cuda_slice_copy_in(struct kctx *ctx, const struct tensor_slice *s,
                        const float *part, float *whole, int accumulate)
{
    slice_copy(ctx, s, part, whole, 1, accumulate);
}

void cuda_slice_copy_out(struct kctx *ctx, const struct tensor_slice *s,
                         const float *whole, float *part, int accumulate)
{
    slice_copy(ctx, s, whole, part, 0, accumulate);
}
