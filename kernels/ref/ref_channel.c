/*
 * Reference channel concat and split: element (n, c, i) of part is element
 * (n, c_off + c, i) of whole.
 */
#include "ref.h"

static size_t whole_index(const struct channel_slice *s, int n, int c, int i)
{
    return ((size_t)n * s->c_whole + s->c_off + c) * s->hw + i;
}

static size_t part_index(const struct channel_slice *s, int n, int c, int i)
{
    return ((size_t)n * s->c_part + c) * s->hw + i;
}

void ref_channel_copy_in(struct kctx *ctx, const struct channel_slice *s,
                         const float *part, float *whole, int accumulate)
{
    (void)ctx;
    for (int n = 0; n < s->n; n++) {
        for (int c = 0; c < s->c_part; c++) {
            for (int i = 0; i < s->hw; i++) {
                float v = part[part_index(s, n, c, i)];
                float *dst = &whole[whole_index(s, n, c, i)];
                *dst = accumulate ? *dst + v : v;
            }
        }
    }
}

void ref_channel_copy_out(struct kctx *ctx, const struct channel_slice *s,
                          const float *whole, float *part, int accumulate)
{
    (void)ctx;
    for (int n = 0; n < s->n; n++) {
        for (int c = 0; c < s->c_part; c++) {
            for (int i = 0; i < s->hw; i++) {
                float v = whole[whole_index(s, n, c, i)];
                float *dst = &part[part_index(s, n, c, i)];
                *dst = accumulate ? *dst + v : v;
            }
        }
    }
}
