/* Tests of the Detect head: the slice copies that place each level's maps
 * in the head output, the output layout of kernels/detect.h, and the
 * backward pass against central finite differences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/net.h"
#include "engine/rng.h"
#include "fsutil.h"
#include "harness.h"

static void slice_copy_places_block(void **state)
{
    struct kctx ctx;
    /* whole [2, 5, 7], part [2, 2, 3] at channel 1 and position 4. */
    struct tensor_slice s = {2, 5, 2, 1, 7, 3, 4};
    float whole[70], part[12], back[12];

    (void)state;
    cpu_kctx_init(&ctx, 2);
    for (int i = 0; i < 70; i++)
        whole[i] = -1;
    for (int i = 0; i < 12; i++)
        part[i] = (float)i;
    cpu_slice_copy_in(&ctx, &s, part, whole, 0);
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 5; c++)
            for (int p = 0; p < 7; p++) {
                float got = whole[(n * 5 + c) * 7 + p];
                int inside = c >= 1 && c < 3 && p >= 4;
                float want = inside ? (float)((n * 2 + c - 1) * 3 + p - 4)
                                    : -1.0f;
                assert_float_equal(got, want, 0);
            }

    cpu_slice_copy_in(&ctx, &s, part, whole, 1);
    assert_float_equal(whole[(1 * 5 + 2) * 7 + 6], 2.0f * 11, 0);
    memset(back, 0, sizeof(back));
    cpu_slice_copy_out(&ctx, &s, whole, back, 0);
    for (int i = 0; i < 12; i++)
        assert_float_equal(back[i], 2.0f * i, 0);
    cpu_slice_copy_out(&ctx, &s, whole, back, 1);
    assert_float_equal(back[5], 20.0f, 0);
    cpu_kctx_free(&ctx);
}

/* Two levels (strides 4 and 8) over a 16x16 input, 2 classes. */
static const char *tiny_detect_yaml =
    "nc: 2\n"
    "backbone:\n"
    "  - [-1, 1, Conv, [8, 3, 2]]\n"
    "  - [-1, 1, Conv, [8, 3, 2]]\n"
    "  - [-1, 1, Conv, [16, 3, 2]]\n"
    "head:\n"
    "  - [[1, 2], 1, Detect, [nc]]\n";

struct tiny {
    char dir[256];
    struct kctx ctx;
    struct net net;
    float *x;
};

static void tiny_build(struct tiny *t, int batch)
{
    char path[300];
    struct model_spec spec;
    struct error err = {0};
    struct rng g;

    harness_tmpdir(t->dir, sizeof(t->dir));
    snprintf(path, sizeof(path), "%s/tiny.yaml", t->dir);
    if (fs_write_atomic(path, tiny_detect_yaml, strlen(tiny_detect_yaml),
                        0644, &err) != 0)
        fail_msg("%s", err.msg);
    if (model_spec_load(path, "", 0, &spec, &err) != 0)
        fail_msg("%s", err.msg);
    cpu_kctx_init(&t->ctx, 1);
    if (net_build(&t->net, &spec, 16, 16, batch, 7, &t->ctx, &err) != 0)
        fail_msg("%s", err.msg);
    t->x = malloc((size_t)batch * 3 * 16 * 16 * sizeof(float));
    assert_non_null(t->x);
    rng_seed(&g, 11);
    for (int i = 0; i < batch * 3 * 16 * 16; i++)
        t->x[i] = (float)rng_uniform(&g);
}

static void tiny_free(struct tiny *t)
{
    net_free(&t->net);
    cpu_kctx_free(&t->ctx);
    free(t->x);
    harness_rmtree(t->dir);
}

static void detect_output_layout(void **state)
{
    struct tiny t;

    (void)state;
    tiny_build(&t, 2);
    net_forward(&t.net, t.x, 2, 0);
    const struct layer *last = &t.net.layers[t.net.nlayers - 1];
    const struct detect *d = last->u.detect;
    const struct det_layout *lay = &d->layout;
    int no = det_outputs(lay);

    assert_int_equal(lay->anchors, 4 * 4 + 2 * 2);
    assert_int_equal(no, 64 + 2);
    for (int b = 0; b < 2; b++)
        for (int lv = 0; lv < 2; lv++) {
            int hw = lay->h[lv] * lay->w[lv];
            for (int i = 0; i < hw; i++) {
                int a = lay->first[lv] + i;
                float box = d->box_c[lv].y[(b * 64 + 5) * hw + i];
                float cls = d->cls_c[lv].y[(b * 2 + 1) * hw + i];
                assert_float_equal(d->pred[(b * no + 5) * lay->anchors + a],
                                   box, 0);
                assert_float_equal(
                    d->pred[(b * no + 64 + 1) * lay->anchors + a], cls, 0);
            }
        }
    tiny_free(&t);
}

/* L = sum(pred * r): backward from dpred = r against central differences
 * of L. BN runs in training mode, so every parameter moves L through the
 * batch statistics as well; eps 1e-2 on float32 activations of order 1
 * keeps the rounding error near 1e-4 relative to gradients of order
 * 0.1-10, and 3% is the tolerance. */
static double tiny_loss(struct tiny *t, const float *r, size_t n)
{
    double sum = 0;

    net_forward(&t->net, t->x, 2, 1);
    const float *pred = t->net.layers[t->net.nlayers - 1].out;
    for (size_t i = 0; i < n; i++)
        sum += (double)pred[i] * r[i];
    return sum;
}

static void detect_backward_matches_differences(void **state)
{
    struct tiny t;
    struct rng g;

    (void)state;
    tiny_build(&t, 2);
    struct layer *last = &t.net.layers[t.net.nlayers - 1];
    size_t n = (size_t)2 * (size_t)last->c * (size_t)last->w;
    float *r = malloc(n * sizeof(float));
    assert_non_null(r);
    rng_seed(&g, 3);
    for (size_t i = 0; i < n; i++)
        r[i] = (float)(rng_uniform(&g) * 2 - 1);

    net_zero_grad(&t.net);
    tiny_loss(&t, r, n);
    memcpy(last->dout, r, n * sizeof(float));
    net_backward(&t.net);

    /* A weight of the first backbone conv, of each branch's first conv,
     * and the weights and biases of the last 1x1 convs. */
    const char *names[] = {
        "model.0.conv.weight",          "model.3.cv2.0.0.conv.weight",
        "model.3.cv3.1.0.conv.weight",  "model.3.cv2.1.2.weight",
        "model.3.cv2.0.2.bias",         "model.3.cv3.0.2.bias",
        "model.3.cv3.1.1.bn.weight",
    };
    int checked = 0;
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        struct param *p = NULL;
        for (int i = 0; i < t.net.nparams; i++)
            if (strcmp(t.net.params[i].name, names[k]) == 0)
                p = &t.net.params[i];
        if (p == NULL)
            fail_msg("parameter %s not found", names[k]);
        size_t j = p->n / 3;
        float keep = p->data[j];
        p->data[j] = keep + 1e-2f;
        double up = tiny_loss(&t, r, n);
        p->data[j] = keep - 1e-2f;
        double down = tiny_loss(&t, r, n);
        p->data[j] = keep;
        double numeric = (up - down) / 2e-2;
        double analytic = p->grad[j];
        double tol = 0.03 * fmax(fabs(numeric), 0.05);
        if (fabs(numeric - analytic) > tol)
            fail_msg("%s[%zu]: backward %.6f, differences %.6f", names[k], j,
                     analytic, numeric);
        checked++;
    }
    assert_int_equal(checked, 7);
    free(r);
    tiny_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slice_copy_places_block),
        cmocka_unit_test(detect_output_layout),
        cmocka_unit_test(detect_backward_matches_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
