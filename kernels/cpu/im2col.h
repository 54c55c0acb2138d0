/*
 * im2col and col2im for the GEMM convolution path (see im2col.c for the
 * layout of the column matrix).
 */
#ifndef TRAINYARD_KERNELS_CPU_IM2COL_H
#define TRAINYARD_KERNELS_CPU_IM2COL_H

#include "kernels.h"

/* Fill col [cin_g * k * k, nb * h_out * w_out] from images n0 .. n0 + nb - 1
 * and the input channels of group g; positions in the padding read 0. */
void conv2d_im2col(const struct conv2d_shape *s, const float *x, int n0,
                   int nb, int g, float *col);

/* Add col, laid out as conv2d_im2col writes it, into dx. col is scratch
 * and comes back with some entries zeroed. */
void conv2d_col2im_add(const struct conv2d_shape *s, float *col,
                       int n0, int nb, int g, float *dx);

#endif
