/*
 * Decoding and NMS of the Detect head's output on CUDA (contract in
 * kernels/detect.h): the device finds and gathers the anchors that can
 * hold a candidate, and the host decodes and suppresses those.
 *
 * 1. One thread per (image, anchor) tests the class logits against a
 *    lower bound of the threshold's logit and writes a flag. No expf is
 *    taken, so the flag cannot depend on the device's rounding. It may
 *    include anchors without a candidate, never exclude one.
 * 2. The host reads the flags (one byte per anchor) and numbers the
 *    flagged anchors in ascending order per image.
 * 3. The device gathers the no values of each flagged anchor into one
 *    contiguous column, and the host reads the columns back.
 * 4. The CPU stage of kernels/cpu/det_nms.c thresholds, selects, decodes
 *    and suppresses them. No unflagged anchor has a score over conf, so
 *    the result is the CPU's for the whole output, bit for bit, since the
 *    same host code computes every score and box.
 *
 * The transfer is batch * anchors bytes of flags plus 4 * no bytes per
 * flagged anchor: 4.8 MB per image in the worst case of an untrained
 * YOLOv8 head at 640 px (8400 anchors, no = 144), far less once scores
 * are mostly low.
 * NOTE: compiled and linked, but not yet run on a GPU;
 * tests/cuda/test_cuda_det_nms.c compares it with the CPU on one.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "detect.h"

/* Defined in kernels/cpu/det_nms.c, which documents it. */
extern "C" int cpu_det_nms_gathered(const struct det_layout *layout,
                                    const struct det_nms_config *cfg,
                                    int batch, const float *columns,
                                    const int *image_first,
                                    const int *anchors, int threads,
                                    struct det_box *boxes, int *counts);

static __global__ void mark_kernel(const float *pred, size_t images,
                                   int anchors, int no, int first_class,
                                   int nc, float floor, unsigned char *flags)
{
    size_t n = images * (size_t)anchors;

    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += (size_t)gridDim.x * blockDim.x) {
        size_t image = idx / (size_t)anchors, a = idx % (size_t)anchors;
        const float *logits =
            pred + (image * no + first_class) * anchors + a;
        unsigned char hit = 0;

        for (int c = 0; c < nc && !hit; c++)
            hit = logits[(size_t)c * anchors] > floor;
        flags[idx] = hit;
    }
}

/* columns[j * no + ch] = channel ch of anchor col_anchor[j] in image
 * col_image[j]. */
static __global__ void gather_kernel(const float *pred, int anchors, int no,
                                     size_t total, const int *col_anchor,
                                     const int *col_image, float *columns)
{
    size_t n = total * (size_t)no;

    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += (size_t)gridDim.x * blockDim.x) {
        size_t j = idx / (size_t)no, ch = idx % (size_t)no;

        columns[idx] = pred[((size_t)col_image[j] * no + ch) * anchors +
                            col_anchor[j]];
    }
}

/* A lower bound of the logit t with sigmoid(t) = conf, looser than the
 * CPU stage's own (0.05 + 1%), because only a superset of the candidate
 * anchors matters here. Outside [1e-6, 0.99] every anchor is flagged, as
 * the CPU stage tests every logit there; conf >= 1 admits nothing. */
static float flag_floor(float conf)
{
    if (!(conf < 1.0f))
        return INFINITY;
    if (!(conf >= 1e-6f && conf <= 0.99f))
        return -INFINITY;
    float t = logf(conf / (1.0f - conf));
    return t - 0.1f - 0.02f * fabsf(t);
}

/* Host buffers of one call. */
struct gather_host {
    unsigned char *flags; /* batch * anchors */
    int *image_first;     /* batch + 1 */
    int *col_index;       /* 2 * total: anchors, then images */
    float *columns;       /* total * no */
};

static void gather_host_free(struct gather_host *h)
{
    free(h->flags);
    free(h->image_first);
    free(h->col_index);
    free(h->columns);
}

/* Steps 1 and 2: flags on the device, numbering on the host. Returns the
 * number of flagged anchors, or a negative errno-style code. */
static long mark_candidates(struct kctx *ctx, const struct det_layout *l,
                            const struct det_nms_config *cfg, int batch,
                            const float *pred, struct gather_host *h)
{
    struct cuda_state *st = cuda_state_of(ctx);
    struct error err;
    size_t n = (size_t)batch * (size_t)l->anchors;
    unsigned char *flags = (unsigned char *)cuda_kctx_workspace(ctx, n);

    if (flags == NULL)
        return -ENOMEM;
    mark_kernel<<<grid_1d(n), CUDA_BLOCK, 0, st->stream>>>(
        pred, (size_t)batch, l->anchors, det_outputs(l), 4 * l->reg_max,
        l->nc, flag_floor(cfg->conf), flags);
    if (LAUNCH_FAILED(st))
        return -EIO;
    int rc = cuda_memcpy_d2h(ctx, h->flags, flags, n, &err);
    if (rc != 0)
        return rc;

    long total = 0;
    for (int i = 0; i < batch; i++) {
        h->image_first[i] = (int)total;
        for (int a = 0; a < l->anchors; a++)
            total += h->flags[(size_t)i * l->anchors + a];
    }
    h->image_first[batch] = (int)total;
    return total;
}

/* Step 3: the flagged anchors' columns into h->columns. */
static int gather_columns(struct kctx *ctx, const struct det_layout *l,
                          int batch, const float *pred, size_t total,
                          struct gather_host *h)
{
    struct cuda_state *st = cuda_state_of(ctx);
    struct error err;
    size_t no = (size_t)det_outputs(l);
    size_t index_bytes = 2 * total * sizeof(int);
    size_t column_bytes = total * no * sizeof(float);
    size_t j = 0;

    h->col_index = (int *)malloc(index_bytes);
    h->columns = (float *)malloc(column_bytes);
    if (h->col_index == NULL || h->columns == NULL)
        return -ENOMEM;
    for (int i = 0; i < batch; i++) {
        for (int a = 0; a < l->anchors; a++) {
            if (!h->flags[(size_t)i * l->anchors + a])
                continue;
            h->col_index[j] = a;
            h->col_index[total + j] = i;
            j++;
        }
    }

    /* The index block first, then the columns, 256-byte aligned. */
    size_t columns_offset = (index_bytes + 255) & ~(size_t)255;
    char *scratch = (char *)cuda_kctx_workspace(ctx, columns_offset +
                                                         column_bytes);
    if (scratch == NULL)
        return -ENOMEM;
    int *dev_index = (int *)scratch;
    float *dev_columns = (float *)(scratch + columns_offset);

    int rc = cuda_memcpy_h2d(ctx, dev_index, h->col_index, index_bytes,
                             &err);
    if (rc != 0)
        return rc;
    gather_kernel<<<grid_1d(total * no), CUDA_BLOCK, 0, st->stream>>>(
        pred, l->anchors, (int)no, total, dev_index, dev_index + total,
        dev_columns);
    if (LAUNCH_FAILED(st))
        return -EIO;
    return cuda_memcpy_d2h(ctx, h->columns, dev_columns, column_bytes, &err);
}

int cuda_det_decode_nms(struct kctx *ctx, const struct det_layout *layout,
                        const struct det_nms_config *cfg, int batch,
                        const float *pred, struct det_box *boxes,
                        int *counts)
{
    struct gather_host h;
    int rc;

    if (batch < 0 || (batch > 0 && (boxes == NULL || counts == NULL)))
        return -EINVAL;
    /* The CPU stage checks the layout and the configuration. */
    rc = cpu_det_nms_gathered(layout, cfg, 0, NULL, NULL, NULL, 0, NULL,
                              NULL);
    if (rc != 0 || batch == 0)
        return rc;
    if (layout->anchors == 0) {
        memset(counts, 0, (size_t)batch * sizeof(*counts));
        return 0;
    }
    if (pred == NULL)
        return -EINVAL;

    memset(&h, 0, sizeof(h));
    h.flags = (unsigned char *)malloc((size_t)batch * layout->anchors);
    h.image_first = (int *)malloc(((size_t)batch + 1) * sizeof(int));
    if (h.flags == NULL || h.image_first == NULL) {
        gather_host_free(&h);
        return -ENOMEM;
    }

    long total = mark_candidates(ctx, layout, cfg, batch, pred, &h);
    rc = total < 0 ? (int)total : 0;
    if (rc == 0 && total > 0)
        rc = gather_columns(ctx, layout, batch, pred, (size_t)total, &h);
    if (rc == 0)
        rc = cpu_det_nms_gathered(layout, cfg, batch, h.columns,
                                  h.image_first, h.col_index, 0, boxes,
                                  counts);
    gather_host_free(&h);
    return rc;
}
