/*
 * 2-D convolution on the CPU: shape checks and the choice of path.
 *
 * Measured with bench/conv_cpu_bench.c (2 threads, median of 30 runs) on
 * the development machine: AMD Zen 5, 2 cores with AVX-512, oneDNN 2.6,
 * OpenBLAS 0.3.21. Milliseconds for forward + backward (dx, dw) of the
 * benchmark network's layers, batch 64 at 28x28:
 *
 *   layer                 im2col  direct  oneDNN  oneDNN plain
 *   3->16  k3 s1 28x28     0.63      -     0.27      1.39
 *   16->32 k3 s2 28x28     2.03      -     1.06      2.41
 *   32->32 k3 s1 14x14     3.31      -     1.54      3.86
 *   32->64 k3 s2 14x14     1.37      -     0.92      1.69
 *   64->64 k1 s1  7x7      0.28    0.24    0.24      0.25
 *
 * "im2col" runs im2col + dnnl_sgemm (OpenBLAS's sgemm was 2x slower, see
 * gemm.c). "direct" runs sgemm on x for 1x1 convolutions. "oneDNN" lets
 * oneDNN choose blocked layouts and its direct JIT kernels, plus
 * reorders. "oneDNN plain" keeps NCHW, where oneDNN runs its own im2col +
 * GEMM. On YOLO-sized shapes (batch 4) oneDNN also won every
 * k > 1 case (3x3 at 80x80: 3.3 against 5.5 ms; depthwise 3x3: 0.21
 * against 0.91 ms), but lost every 1x1 case: 0.40 ms direct against 0.58
 * at 64 channels 40x40, 1.25 against 1.59 at 256 channels 20x20, and
 * 0.16 ms im2col against 0.40 for a 1x1 stride-2 convolution.
 *
 * Repeated runs on the shared 2-core machine varied by up to 40% per
 * entry, but the ranking never changed.
 *
 * Choice: oneDNN for k > 1, direct for 1x1 with stride 1 and no padding,
 * im2col for other 1x1 convolutions and wherever oneDNN rejects a shape.
 * The whole network (convolutions, batch normalization, SiLU, forward
 * and backward) ran at 7,300 to 8,200 images/s with this choice.
 */
#include "cpu.h"

static int forced_path = -1;

void conv2d_force_path(int path)
{
    forced_path = path;
}

int conv2d_shape_init(struct conv2d_shape *s)
{
    if (s->n <= 0 || s->c_in <= 0 || s->h <= 0 || s->w <= 0
        || s->c_out <= 0 || s->k <= 0 || s->stride <= 0 || s->pad < 0
        || s->groups <= 0)
        return -1;
    if (s->c_in % s->groups != 0 || s->c_out % s->groups != 0)
        return -1;

    int span_h = s->h + 2 * s->pad - s->k;
    int span_w = s->w + 2 * s->pad - s->k;
    if (span_h < 0 || span_w < 0)
        return -1;

    s->h_out = span_h / s->stride + 1;
    s->w_out = span_w / s->stride + 1;
    return 0;
}

int conv2d_path_supports(enum conv2d_path path, const struct conv2d_shape *s)
{
    if (path == CONV2D_PATH_DIRECT)
        return s->k == 1 && s->stride == 1 && s->pad == 0;
    return 1;
}

static enum conv2d_path choose_path(const struct conv2d_shape *s)
{
    if (forced_path >= 0
        && conv2d_path_supports((enum conv2d_path)forced_path, s))
        return (enum conv2d_path)forced_path;
    if (s->k > 1)
        return CONV2D_PATH_DNNL;
    if (conv2d_path_supports(CONV2D_PATH_DIRECT, s))
        return CONV2D_PATH_DIRECT;
    return CONV2D_PATH_IM2COL;
}

static int is_dnnl(enum conv2d_path path)
{
    return path == CONV2D_PATH_DNNL || path == CONV2D_PATH_DNNL_PLAIN;
}

void cpu_conv2d_forward(struct kctx *ctx, const struct conv2d_shape *s,
                        const float *x, const float *w, const float *b,
                        float *y)
{
    enum conv2d_path path = choose_path(s);
    int blocked = path == CONV2D_PATH_DNNL;

    if (is_dnnl(path) && conv2d_dnnl_forward(ctx, s, blocked, x, w, b, y) == 0)
        return;
    conv2d_gemm_forward(ctx, s, path == CONV2D_PATH_DIRECT, x, w, b, y);
}

void cpu_conv2d_backward(struct kctx *ctx, const struct conv2d_shape *s,
                         const float *x, const float *w, const float *dy,
                         float *dx, float *dw, float *db)
{
    enum conv2d_path path = choose_path(s);
    int blocked = path == CONV2D_PATH_DNNL;

    if (is_dnnl(path)
        && conv2d_dnnl_backward(ctx, s, blocked, x, w, dy, dx, dw, db) == 0)
        return;
    conv2d_gemm_backward(ctx, s, path == CONV2D_PATH_DIRECT, x, w, dy, dx,
                         dw, db);
}
