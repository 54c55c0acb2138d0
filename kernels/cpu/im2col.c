/*
 * im2col and col2im for a chunk of images and one convolution group.
 *
 * The column matrix has K = cin_g * k * k rows, row r = (ci * k + kh) * k
 * + kw, and nb * h_out * w_out columns, column j * h_out * w_out + oh *
 * w_out + ow for image j of the chunk. Putting several images side by side
 * makes the GEMM that follows wide enough to run near peak even when a
 * layer's output is only 7x7.
 *
 * Each (row, image) block is the input plane shifted by (kh - pad, kw -
 * pad) and sampled with the stride. The output rows and columns that read
 * inside the input form intervals [oh_lo, oh_hi) and [ow_lo, ow_hi),
 * computed once per block. With stride 1 and w_out == w (the usual "same"
 * padding) the whole block is one flat shifted copy, after which the
 * columns outside [ow_lo, ow_hi), which picked up values of the
 * neighbouring input rows, are zeroed. Calling memcpy per 14-float row
 * instead cost as much as the GEMM in bench/conv_cpu_bench.c.
 */
#include "im2col.h"

#include <string.h>

/* Interval [lo, hi) of output positions o with 0 <= o * stride + offset <
 * size, clamped to [0, count). */
static void inside_range(int size, int count, int stride, int offset,
                         int *lo, int *hi)
{
    int first = 0;
    if (offset < 0)
        first = (-offset + stride - 1) / stride;

    int end = 0;
    if (size - offset > 0)
        end = (size - offset + stride - 1) / stride;

    if (end > count)
        end = count;
    if (first > end)
        first = end;
    *lo = first;
    *hi = end;
}

/* The part of one (row, image) block that reads inside the input. */
struct block {
    int oh_lo, oh_hi, ow_lo, ow_hi;
    int dh, dw;  /* input row and column read by output (0, 0) */
};

static void block_init(const struct conv2d_shape *s, int kh, int kw,
                       struct block *b)
{
    b->dh = kh - s->pad;
    b->dw = kw - s->pad;
    inside_range(s->h, s->h_out, s->stride, b->dh, &b->oh_lo, &b->oh_hi);
    inside_range(s->w, s->w_out, s->stride, b->dw, &b->ow_lo, &b->ow_hi);
}

/* Whether a block is one flat shifted copy of the input plane. */
static int block_is_flat(const struct conv2d_shape *s)
{
    return s->stride == 1 && s->w_out == s->w;
}

/* Zero the columns outside [ow_lo, ow_hi) of rows [oh_lo, oh_hi). */
static void zero_border_columns(const struct conv2d_shape *s,
                                const struct block *b, float *dst)
{
    for (int oh = b->oh_lo; oh < b->oh_hi; oh++) {
        float *row = dst + (size_t)oh * s->w_out;
        for (int ow = 0; ow < b->ow_lo; ow++)
            row[ow] = 0.0f;
        for (int ow = b->ow_hi; ow < s->w_out; ow++)
            row[ow] = 0.0f;
    }
}

static void im2col_block(const struct conv2d_shape *s, const struct block *b,
                         const float *plane, float *dst)
{
    size_t ohw = (size_t)s->h_out * s->w_out;

    if (b->oh_lo == b->oh_hi || b->ow_lo == b->ow_hi) {
        memset(dst, 0, sizeof(float) * ohw);
        return;
    }

    /* Rows above and below the input. */
    memset(dst, 0, sizeof(float) * (size_t)b->oh_lo * s->w_out);
    memset(dst + (size_t)b->oh_hi * s->w_out, 0,
           sizeof(float) * (size_t)(s->h_out - b->oh_hi) * s->w_out);

    if (block_is_flat(s)) {
        /* From (oh_lo, ow_lo) to (oh_hi - 1, ow_hi - 1), flat; both ends
         * read inside the plane. */
        size_t first = (size_t)b->oh_lo * s->w + b->ow_lo;
        size_t end = (size_t)(b->oh_hi - 1) * s->w + b->ow_hi;
        long shift = (long)b->dh * s->w + b->dw;
        memcpy(dst + first, plane + (long)first + shift,
               sizeof(float) * (end - first));
        zero_border_columns(s, b, dst);
        return;
    }

    for (int oh = b->oh_lo; oh < b->oh_hi; oh++) {
        float *out = dst + (size_t)oh * s->w_out;
        const float *in = plane + (size_t)(oh * s->stride + b->dh) * s->w;
        int iw = b->ow_lo * s->stride + b->dw;

        for (int ow = 0; ow < b->ow_lo; ow++)
            out[ow] = 0.0f;
        for (int ow = b->ow_lo; ow < b->ow_hi; ow++, iw += s->stride)
            out[ow] = in[iw];
        for (int ow = b->ow_hi; ow < s->w_out; ow++)
            out[ow] = 0.0f;
    }
}

void conv2d_im2col(const struct conv2d_shape *s, const float *x, int n0,
                   int nb, int g, float *col)
{
    int cin_g = s->c_in / s->groups;
    size_t plane = (size_t)s->h * s->w;
    size_t ohw = (size_t)s->h_out * s->w_out;
    size_t cols = (size_t)nb * ohw;

    for (int kh = 0; kh < s->k; kh++) {
        for (int kw = 0; kw < s->k; kw++) {
            struct block b;
            block_init(s, kh, kw, &b);

            for (int ci = 0; ci < cin_g; ci++) {
                size_t row = ((size_t)ci * s->k + kh) * s->k + kw;
                for (int j = 0; j < nb; j++) {
                    size_t c = (size_t)(n0 + j) * s->c_in
                               + (size_t)g * cin_g + ci;
                    im2col_block(s, &b, x + c * plane,
                                 col + row * cols + j * ohw);
                }
            }
        }
    }
}

/* Add one (row, image) block into its input plane. The block is scratch:
 * the flat path zeroes its border columns so that adding them to the
 * neighbouring input rows changes nothing. */
static void col2im_block(const struct conv2d_shape *s, const struct block *b,
                         float *src, float *plane)
{
    if (b->oh_lo == b->oh_hi || b->ow_lo == b->ow_hi)
        return;

    if (block_is_flat(s)) {
        size_t first = (size_t)b->oh_lo * s->w + b->ow_lo;
        size_t end = (size_t)(b->oh_hi - 1) * s->w + b->ow_hi;
        long shift = (long)b->dh * s->w + b->dw;

        zero_border_columns(s, b, src);
        for (size_t i = first; i < end; i++)
            plane[(long)i + shift] += src[i];
        return;
    }

    for (int oh = b->oh_lo; oh < b->oh_hi; oh++) {
        const float *in = src + (size_t)oh * s->w_out;
        float *out = plane + (size_t)(oh * s->stride + b->dh) * s->w;
        int iw = b->ow_lo * s->stride + b->dw;

        for (int ow = b->ow_lo; ow < b->ow_hi; ow++, iw += s->stride)
            out[iw] += in[ow];
    }
}

void conv2d_col2im_add(const struct conv2d_shape *s, float *col, int n0,
                       int nb, int g, float *dx)
{
    int cin_g = s->c_in / s->groups;
    size_t plane = (size_t)s->h * s->w;
    size_t ohw = (size_t)s->h_out * s->w_out;
    size_t cols = (size_t)nb * ohw;

    for (int kh = 0; kh < s->k; kh++) {
        for (int kw = 0; kw < s->k; kw++) {
            struct block b;
            block_init(s, kh, kw, &b);

            for (int ci = 0; ci < cin_g; ci++) {
                size_t row = ((size_t)ci * s->k + kh) * s->k + kw;
                for (int j = 0; j < nb; j++) {
                    size_t c = (size_t)(n0 + j) * s->c_in
                               + (size_t)g * cin_g + ci;
                    col2im_block(s, &b, col + row * cols + j * ohw,
                                 dx + c * plane);
                }
            }
        }
    }
}
