/*
 * The engine against PyTorch: tests/fixtures/make_reference.py built the
 * network of tests/fixtures/ref-cls.yaml in PyTorch, and saved its initial
 * weights, one batch, the logits, the loss, every gradient, and the
 * weights after one and three SGD steps. This test loads the same weights
 * into our network and checks each of those numbers.
 *
 * Tolerances: both sides compute in float32 but sum in different orders
 * (oneDNN or BLAS blocks against PyTorch's), so values differ by a few
 * units in the last place per operation, growing through the layers. An
 * error is measured against the largest magnitude of the tensor:
 * max |ours - torch| <= tol * max(|torch|, 1e-3). Logits and loss use
 * 1e-4; gradients 2e-3, because batch-norm backward subtracts nearly
 * equal sums; weights after steps 1e-4, since a step moves them by about
 * lr * grad, far less than their size.
 *
 * Fixture format: "TYFX", u32 count, then per tensor u32 name length,
 * name, u32 element count, float32 little-endian values.
 */
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
#include "fsutil.h"

#define FIXTURE "tests/fixtures/ref-cls.bin"
#define MODEL "tests/fixtures/ref-cls.yaml"

struct fixture_tensor {
    char name[128];
    uint32_t n;
    const float *data;
};

struct fixture {
    char *bytes;
    int count;
    struct fixture_tensor t[512];
};

static struct fixture fx;

static uint32_t read_u32(const char **p)
{
    uint32_t v;
    memcpy(&v, *p, 4);
    *p += 4;
    return v;
}

static int load_fixture(void **state)
{
    struct error err = {0};
    size_t len;
    const char *p, *end;

    (void)state;
    if (fs_read_file(FIXTURE, 64 << 20, &fx.bytes, &len, &err) != 0) {
        fprintf(stderr, "%s; run the tests from the repository root\n",
                err.msg);
        return -1;
    }
    p = fx.bytes;
    end = fx.bytes + len;
    if (len < 8 || memcmp(p, "TYFX", 4) != 0)
        return -1;
    p += 4;
    uint32_t count = read_u32(&p);
    for (uint32_t i = 0; i < count && i < 512; i++) {
        struct fixture_tensor *t = &fx.t[fx.count++];
        uint32_t nlen = read_u32(&p);
        if (nlen >= sizeof(t->name) || p + nlen > end)
            return -1;
        memcpy(t->name, p, nlen);
        t->name[nlen] = '\0';
        p += nlen;
        t->n = read_u32(&p);
        if (p + (size_t)t->n * 4 > end)
            return -1;
        /* Copied out, because the values are not 4-byte aligned in the
         * file. */
        float *copy = malloc((size_t)t->n * 4 + 4);
        memcpy(copy, p, (size_t)t->n * 4);
        t->data = copy;
        p += (size_t)t->n * 4;
    }
    return 0;
}

static int free_fixture(void **state)
{
    (void)state;
    for (int i = 0; i < fx.count; i++)
        free((void *)fx.t[i].data);
    free(fx.bytes);
    return 0;
}

static const struct fixture_tensor *find(const char *prefix,
                                         const char *name)
{
    char full[160];

    snprintf(full, sizeof(full), "%s%s", prefix, name);
    for (int i = 0; i < fx.count; i++)
        if (strcmp(fx.t[i].name, full) == 0)
            return &fx.t[i];
    fail_msg("fixture has no tensor '%s'", full);
    return NULL;
}

/* Fail with the worst element when ours differs from the reference. */
static void expect_close(const char *what, const float *ours,
                         const float *ref, size_t n, double tol)
{
    double scale = 1e-3, worst = 0;
    size_t at = 0;

    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)ref[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - (double)ref[i]);
        if (d > worst) {
            worst = d;
            at = i;
        }
    }
    if (worst > tol * scale)
        fail_msg("%s: element %zu is %.8g, PyTorch has %.8g (error %.3g, "
                 "allowed %.3g)",
                 what, at, (double)ours[at], (double)ref[at], worst,
                 tol * scale);
}

struct model {
    struct model_spec spec;
    struct net net;
    struct kctx ctx;
};

static void build(struct model *m)
{
    struct error err = {0};

    cpu_kctx_init(&m->ctx, 1);
    if (model_spec_load(MODEL, "", 0, &m->spec, &err) != 0)
        fail_msg("%s", err.msg);
    if (net_build(&m->net, &m->spec, 32, 32, 4, 1, &m->ctx, &err) != 0)
        fail_msg("%s", err.msg);

    /* Every parameter and buffer of ours exists in PyTorch's state. */
    for (int i = 0; i < m->net.nparams; i++) {
        const struct fixture_tensor *t = find("init/", m->net.params[i].name);
        assert_int_equal(t->n, m->net.params[i].n);
        memcpy(m->net.params[i].data, t->data, t->n * sizeof(float));
    }
    for (int i = 0; i < m->net.nbuffers; i++) {
        const struct fixture_tensor *t = find("init/",
                                              m->net.buffers[i].name);
        assert_int_equal(t->n, m->net.buffers[i].n);
        memcpy(m->net.buffers[i].data, t->data, t->n * sizeof(float));
    }
}

static void release(struct model *m)
{
    net_free(&m->net);
    cpu_kctx_free(&m->ctx);
}

/* Forward and backward of the fixture batch; returns the loss. */
static float forward_backward(struct model *m, float *logits_out)
{
    const struct fixture_tensor *x = find("", "input");
    const struct fixture_tensor *lab = find("", "labels");
    struct layer *last;
    int32_t labels[4];
    float dlogits[4 * 5];

    for (int i = 0; i < 4; i++)
        labels[i] = (int32_t)lab->data[i];
    net_zero_grad(&m->net);
    net_forward(&m->net, x->data, 4, 1);
    last = &m->net.layers[m->net.nlayers - 1];
    if (logits_out != NULL)
        memcpy(logits_out, last->out, sizeof(float) * 4 * 5);
    float loss = cpu_softmax_xent_forward_backward(
        &m->ctx, 4, 5, last->out, labels, 1.0f, NULL, dlogits);
    memcpy(last->dout, dlogits, sizeof(dlogits));
    net_backward(&m->net);
    return loss;
}

static void reference_counts_match(void **state)
{
    struct model m;
    int torch_params = 0;

    (void)state;
    build(&m);
    for (int i = 0; i < fx.count; i++)
        if (strncmp(fx.t[i].name, "grad/", 5) == 0)
            torch_params++;
    assert_int_equal(m.net.nparams, torch_params);
    release(&m);
}

static void reference_forward_matches(void **state)
{
    struct model m;
    float logits[4 * 5];

    (void)state;
    build(&m);
    float loss = forward_backward(&m, logits);
    expect_close("logits", logits, find("", "logits")->data, 20, 1e-4);
    expect_close("loss", &loss, find("", "loss")->data, 1, 1e-4);
    release(&m);
}

static void reference_gradients_match(void **state)
{
    struct model m;

    (void)state;
    build(&m);
    forward_backward(&m, NULL);
    for (int i = 0; i < m.net.nparams; i++) {
        const struct param *p = &m.net.params[i];
        expect_close(p->name, p->grad, find("grad/", p->name)->data, p->n,
                     2e-3);
    }
    release(&m);
}

static void sgd_step(struct model *m)
{
    for (int i = 0; i < m->net.nparams; i++) {
        struct param *p = &m->net.params[i];
        float decay = p->group == PARAM_WEIGHT ? 5e-4f : 0.0f;
        cpu_sgd_step(&m->ctx, p->n, p->data, p->grad, p->state_a, 0.01f,
                     0.9f, decay, 1);
    }
}

static void check_state(struct model *m, const char *prefix)
{
    for (int i = 0; i < m->net.nparams; i++) {
        const struct param *p = &m->net.params[i];
        expect_close(p->name, p->data, find(prefix, p->name)->data, p->n,
                     1e-4);
    }
    for (int i = 0; i < m->net.nbuffers; i++) {
        const struct buffer *b = &m->net.buffers[i];
        expect_close(b->name, b->data, find(prefix, b->name)->data, b->n,
                     1e-4);
    }
}

static void reference_sgd_steps_match(void **state)
{
    struct model m;

    (void)state;
    build(&m);
    for (int step = 1; step <= 3; step++) {
        forward_backward(&m, NULL);
        sgd_step(&m);
        if (step == 1)
            check_state(&m, "step1/");
    }
    check_state(&m, "step3/");
    release(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reference_counts_match),
        cmocka_unit_test(reference_forward_matches),
        cmocka_unit_test(reference_gradients_match),
        cmocka_unit_test(reference_sgd_steps_match),
    };
    return cmocka_run_group_tests_name("engine_reference", tests,
                                       load_fixture, free_fixture);
}
