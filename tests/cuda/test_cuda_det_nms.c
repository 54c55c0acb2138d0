/*
 * cuda_det_decode_nms against cpu_det_decode_nms on random head outputs
 * (fixed seeds). The CUDA path only flags and gathers anchors on the
 * device and leaves scores, boxes and suppression to the same host code
 * as the CPU path, so the results must be equal bit for bit: same
 * counts, classes, confidences and coordinates, in the same order.
 *
 * Without a usable CUDA device each test prints "SKIP cuda: ..." with the
 * reason and is reported as skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/kernels_cuda.h"
#include "cuda_test.h"
#include "detect.h"


/* A random head output: box logits in [-4, 4], class logits in
 * [class_lo, class_hi]. Image `empty` (or -1 for none) gets class logits
 * of -20, so it has no candidate at any conf used here. */
static float *random_head(const struct det_layout *l, int batch,
                          float class_lo, float class_hi, int empty,
                          uint64_t seed)
{
    size_t A = (size_t)l->anchors, no = (size_t)det_outputs(l);
    float *pred = malloc((size_t)batch * no * A * sizeof(float));

    assert_non_null(pred);
    rng_seed(seed);
    for (int i = 0; i < batch; i++) {
        float *p = pred + (size_t)i * no * A;
        for (size_t k = 0; k < 64 * A; k++)
            p[k] = rng_uniform(-4.0f, 4.0f);
        for (size_t k = 64 * A; k < no * A; k++)
            p[k] = i == empty ? -20.0f : rng_uniform(class_lo, class_hi);
    }
    return pred;
}

/* Run both paths on pred and compare everything. */
static void compare_paths(const struct det_layout *l,
                          const struct det_nms_config *cfg, int batch,
                          const float *pred, const char *label)
{
    size_t bytes = (size_t)batch * det_outputs(l) * l->anchors *
                   sizeof(float);
    size_t nboxes = (size_t)batch * cfg->max_det;
    struct det_box *cpu_boxes = calloc(nboxes, sizeof(struct det_box));
    struct det_box *gpu_boxes = calloc(nboxes, sizeof(struct det_box));
    int *cpu_counts = calloc((size_t)batch, sizeof(int));
    int *gpu_counts = calloc((size_t)batch, sizeof(int));
    struct error err = {0};
    void *dev = NULL;

    assert_non_null(cpu_boxes);
    assert_non_null(gpu_boxes);
    assert_non_null(cpu_counts);
    assert_non_null(gpu_counts);
    if (cuda_malloc(&gpu_ctx, &dev, bytes, &err) != 0)
        fail_msg("%s: cuda_malloc(%zu): %s", label, bytes, err.msg);
    if (cuda_memcpy_h2d(&gpu_ctx, dev, pred, bytes, &err) != 0)
        fail_msg("%s: cuda_memcpy_h2d: %s", label, err.msg);

    assert_int_equal(cpu_det_decode_nms(&cpu_ctx, l, cfg, batch, pred,
                                        cpu_boxes, cpu_counts),
                     0);
    int rc = cuda_det_decode_nms(&gpu_ctx, l, cfg, batch, (const float *)dev,
                                 gpu_boxes, gpu_counts);
    if (rc != 0) {
        cuda_synchronize(&gpu_ctx, &err);
        fail_msg("%s: cuda_det_decode_nms returned %d (%s)", label, rc,
                 err.msg);
    }

    for (int i = 0; i < batch; i++) {
        if (gpu_counts[i] != cpu_counts[i])
            fail_msg("%s: image %d: %d boxes on CUDA, %d on CPU", label, i,
                     gpu_counts[i], cpu_counts[i]);
        for (int k = 0; k < cpu_counts[i]; k++) {
            const struct det_box *c = &cpu_boxes[(size_t)i * cfg->max_det + k];
            const struct det_box *g = &gpu_boxes[(size_t)i * cfg->max_det + k];

            if (memcmp(c, g, sizeof(*c)) != 0)
                fail_msg("%s: image %d box %d: CUDA (%.9g %.9g %.9g %.9g) "
                         "conf %.9g cls %d, CPU (%.9g %.9g %.9g %.9g) conf "
                         "%.9g cls %d",
                         label, i, k, g->x1, g->y1, g->x2, g->y2, g->conf,
                         g->cls, c->x1, c->y1, c->x2, c->y2, c->conf, c->cls);
        }
    }
    printf("%s: %d images, %d boxes in image 0, equal\n", label, batch,
           cpu_counts[0]);
    cuda_free(&gpu_ctx, dev);
    free(cpu_boxes);
    free(gpu_boxes);
    free(cpu_counts);
    free(gpu_counts);
}

static void nms_full_size_matches_cpu(void **state)
{
    static const int strides[] = {8, 16, 32};
    struct det_layout l;
    struct det_nms_config validate = {0.001f, 0.7f, 300, 30000, 1};
    struct det_nms_config predict = {0.25f, 0.7f, 300, 30000, 0};

    (void)state;
    require_gpu();
    /* 640 x 640, 80 classes: 8400 anchors. Image 1 has no candidate. */
    assert_int_equal(det_layout_init(&l, 80, 640, 640, strides, 3), 0);
    float *pred = random_head(&l, 3, -9.0f, 1.0f, 1, 21);

    compare_paths(&l, &validate, 3, pred, "640 px, conf 0.001, multi_label");
    compare_paths(&l, &predict, 3, pred, "640 px, conf 0.25");
    free(pred);
}

static void nms_small_caps_match_cpu(void **state)
{
    static const int strides[] = {8, 16, 32};
    struct det_layout l;
    /* max_nms below the candidate count, a small max_det, a conf where
     * only a few anchors pass, and conf outside the range where logits
     * are prefiltered. */
    struct det_nms_config configs[] = {
        {0.001f, 0.5f, 20, 300, 1},
        {0.6f, 0.45f, 300, 30000, 1},
        {0.995f, 0.7f, 300, 30000, 0},
        {0.0f, 0.7f, 50, 1000, 0},
        {1.0f, 0.7f, 50, 1000, 1},
    };

    (void)state;
    require_gpu();
    /* 96 x 160: 12 x 20 + 6 x 10 + 3 x 5 = 315 anchors, 7 classes. */
    assert_int_equal(det_layout_init(&l, 7, 96, 160, strides, 3), 0);
    float *pred = random_head(&l, 4, -8.0f, 6.0f, -1, 22);

    for (size_t c = 0; c < sizeof(configs) / sizeof(configs[0]); c++) {
        char label[96];

        snprintf(label, sizeof(label), "315 anchors, conf %g, max_nms %d",
                 (double)configs[c].conf, configs[c].max_nms);
        compare_paths(&l, &configs[c], 4, pred, label);
    }
    free(pred);
}

static void nms_rejects_bad_config(void **state)
{
    static const int strides[] = {8};
    struct det_layout l;
    struct det_nms_config cfg = {0.25f, 0.7f, 0, 30000, 0};
    struct det_box box;
    int count;

    (void)state;
    require_gpu();
    assert_int_equal(det_layout_init(&l, 1, 8, 8, strides, 1), 0);
    /* max_det 0 is rejected before pred is read, so NULL is fine. */
    assert_int_equal(cuda_det_decode_nms(&gpu_ctx, &l, &cfg, 1, NULL, &box,
                                         &count),
                     -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nms_full_size_matches_cpu),
        cmocka_unit_test(nms_small_caps_match_cpu),
        cmocka_unit_test(nms_rejects_bad_config),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
