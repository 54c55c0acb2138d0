/*
 * The YOLOv8 detection loss on the CPU (kernels/cpu/det_loss.c): CIoU,
 * the task-aligned assigner and DFL on cases worked out by hand, the
 * gradient against central differences, and the whole loss against a
 * PyTorch implementation (tests/fixtures/make_det_loss_reference.py).
 *
 * The hand cases use one level of stride 8 on a 32 x 32 input: a 4 x 4
 * grid whose anchor a = 4 * y + x has its point at (8x + 4, 8y + 4)
 * pixels. Distribution logits of 30 on bin 1 and 0 elsewhere give a side
 * distance of 1 + 104 e^-30 grid units, which is 1 in float. Such an
 * anchor thus predicts the 16 x 16 pixel box centred on its point.
 */
#include "kernel_check.h"

#include <errno.h>

#include "cpu/det_loss.h"
#include "detect.h"

static struct kctx ctx;

static int setup(void **state)
{
    (void)state;
    cpu_kctx_init(&ctx, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cpu_kctx_free(&ctx);
    return 0;
}

/* ---- Helpers ------------------------------------------------------------ */

static void grid4(struct det_layout *l, int nc)
{
    int stride = 8;
    assert_int_equal(det_layout_init(l, nc, 32, 32, &stride, 1), 0);
}

static size_t pred_size(const struct det_layout *l, int batch)
{
    return (size_t)batch * det_outputs(l) * l->anchors;
}

static float *pred_at(const struct det_layout *l, float *pred, int image,
                      int channel, int anchor)
{
    return pred + ((size_t)image * det_outputs(l) + channel) * l->anchors +
           anchor;
}

/* Set every side of anchor a to logit `value` on `bin` and 0 elsewhere. */
static void set_bins(const struct det_layout *l, float *pred, int image, int a,
                     int bin, float value)
{
    for (int side = 0; side < 4; side++)
        for (int k = 0; k < l->reg_max; k++)
            *pred_at(l, pred, image, side * l->reg_max + k, a) =
                k == bin ? value : 0.0f;
}

static float *class_logit(const struct det_layout *l, float *pred, int image,
                          int cls, int a)
{
    return pred_at(l, pred, image, 4 * l->reg_max + cls, a);
}

/* Build the 4 x 4 grid with 2 classes where every anchor predicts the
 * 16 x 16 box around its point. Sigmoid of class 0 is 0.75 at anchor 0,
 * 0.25 at anchor 4 and 0.5 elsewhere (logits ln 3, -ln 3 and 0), and
 * sigmoid of class 1 is 0.5 everywhere. */
static float *assign_case(struct det_layout *l)
{
    grid4(l, 2);
    float *pred = new_floats(pred_size(l, 1));

    for (int a = 0; a < l->anchors; a++)
        set_bins(l, pred, 0, a, 1, 30.0f);
    *class_logit(l, pred, 0, 0, 0) = logf(3.0f);
    *class_logit(l, pred, 0, 0, 4) = -logf(3.0f);
    return pred;
}

/* Random predictions like a young network's: distribution logits that
 * favour the low bins (boxes of a few stride units) and class logits
 * around -1. */
static void fill_random_pred(struct test_rng *r, const struct det_layout *l,
                             int batch, float *pred)
{
    for (int b = 0; b < batch; b++) {
        for (int c = 0; c < det_outputs(l); c++) {
            for (int a = 0; a < l->anchors; a++) {
                float *v = pred_at(l, pred, b, c, a);
                if (c < 4 * l->reg_max)
                    *v = rng_uniform(r, -2.0f, 2.0f) -
                         0.35f * (float)(c % l->reg_max);
                else
                    *v = rng_uniform(r, -3.0f, 1.0f);
            }
        }
    }
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* ---- CIoU ----------------------------------------------------------------
 * CIoU = IoU - rho^2 / c^2 - alpha v, with rho the distance between the
 * centres, c the diagonal of the enclosing box, v = 4 / pi^2 (atan(w2 /
 * h2) - atan(w1 / h1))^2 and alpha = v / (v - IoU + 1). The eps of 1e-7
 * changes these values by less than 1e-7. */

static void ciou_identical(void **state)
{
    (void)state;
    /* IoU 1, rho 0, v 0. */
    float a[4] = {0, 0, 10, 10};
    CHECK_SCALAR("ciou", 1.0, det_ciou(a, a), 1e-6, 0);
}

static void ciou_disjoint(void **state)
{
    (void)state;
    /* IoU 0. Enclosing box 30 x 10: c^2 = 900 + 100 = 1000. Centres (5, 5)
     * and (25, 5): rho^2 = 400. Same aspect: v = 0. CIoU = -0.4. */
    float a[4] = {0, 0, 10, 10}, b[4] = {20, 0, 30, 10};
    CHECK_SCALAR("ciou", -0.4, det_ciou(a, b), 1e-6, 0);
}

static void ciou_nested(void **state)
{
    (void)state;
    /* Inner 6 x 6 in outer 10 x 10, same centre: IoU = 36 / 100, rho 0,
     * v 0. CIoU = 0.36. */
    float a[4] = {0, 0, 10, 10}, b[4] = {2, 2, 8, 8};
    CHECK_SCALAR("ciou", 0.36, det_ciou(a, b), 1e-6, 0);
}

static void ciou_offset(void **state)
{
    (void)state;
    /* a is 4 x 2, b is 2 x 4. Intersection x 1..3, y 0..2: 4; union 8 + 8
     * - 4 = 12; IoU = 1/3. Enclosing box 4 x 4: c^2 = 32. Centres (2, 1)
     * and (2, 2): rho^2 = 1. v = 0.405285 * (atan 0.5 - atan 2)^2 =
     * 0.167826; alpha = 0.167826 / (0.167826 - 1/3 + 1) = 0.201111.
     * CIoU = 0.333333 - 0.03125 - 0.033752 = 0.268332. */
    float a[4] = {0, 0, 4, 2}, b[4] = {1, 0, 3, 4};
    CHECK_SCALAR("ciou", 0.26833166, det_ciou(a, b), 1e-6, 0);
}

/* ---- Assigner ------------------------------------------------------------
 * Box A = (0, 0, 16, 16), class 0, contains the points of anchors 0, 1, 4
 * and 5. Each of their predicted boxes is A moved by 4 px on both axes:
 * intersection 12 x 12 = 144, union 256 + 256 - 144 = 368, IoU 0.391304;
 * enclosing 20 x 20, c^2 = 800, rho^2 = (8^2 + 8^2) / 4 = 32, v 0, so
 * CIoU = 0.391304 - 0.04 = 0.351304. The metric is sqrt(score) * CIoU^6,
 * and the soft target is metric / best metric * best CIoU =
 * sqrt(score / 0.75) * 0.351304: 0.351304 (anchor 0), 0.286839 (1 and 5,
 * score 0.5) and 0.202826 (4, score 0.25).
 *
 * Box B = (8, 8, 20, 20), class 1, contains only anchor 5's point. Its
 * predicted box (4, 4, 20, 20) against B: intersection 144, union 256,
 * IoU 0.5625; enclosing 16 x 16, c^2 = 512; centres (12, 12) and (14, 14),
 * rho^2 = 8; v 0; CIoU = 0.5625 - 0.015625 = 0.546875. */

#define CIOU_A 0.351304348
#define CIOU_B 0.546875

static void assign_one_box(void **state)
{
    (void)state;
    struct det_layout l;
    float *pred = assign_case(&l);
    struct det_gt gt[] = {{0, 0, 0, 0, 16, 16}};
    struct det_loss_config cfg = det_loss_defaults();
    struct det_target t[16];

    assert_int_equal(det_loss_assign(&ctx, &l, &cfg, 1, pred, gt, 1, t), 0);
    for (int a = 0; a < 16; a++) {
        int positive = a == 0 || a == 1 || a == 4 || a == 5;
        assert_int_equal(t[a].gt, positive ? 0 : -1);
    }
    CHECK_SCALAR("target of anchor 0", CIOU_A, t[0].score, 1e-6, 0);
    CHECK_SCALAR("target of anchor 1", 0.286838799, t[1].score, 1e-6, 0);
    CHECK_SCALAR("target of anchor 4", 0.202825660, t[4].score, 1e-6, 0);
    CHECK_SCALAR("target of anchor 5", 0.286838799, t[5].score, 1e-6, 0);
    free(pred);
}

static void assign_shared_anchor(void **state)
{
    (void)state;
    struct det_layout l;
    float *pred = assign_case(&l);
    struct det_gt gt[] = {{0, 0, 0, 0, 16, 16}, {0, 1, 8, 8, 20, 20}};
    struct det_loss_config cfg = det_loss_defaults();
    struct det_target t[16];

    /* Anchor 5 is a candidate of both boxes and goes to B (CIoU 0.546875
     * over 0.351304). B's only positive gets B's CIoU as its target; A's
     * best metric is still anchor 0's, so A's targets do not change. */
    assert_int_equal(det_loss_assign(&ctx, &l, &cfg, 1, pred, gt, 2, t), 0);
    assert_int_equal(t[5].gt, 1);
    CHECK_SCALAR("target of anchor 5", CIOU_B, t[5].score, 1e-6, 0);
    assert_int_equal(t[0].gt, 0);
    assert_int_equal(t[1].gt, 0);
    assert_int_equal(t[4].gt, 0);
    CHECK_SCALAR("target of anchor 0", CIOU_A, t[0].score, 1e-6, 0);
    CHECK_SCALAR("target of anchor 1", 0.286838799, t[1].score, 1e-6, 0);
    CHECK_SCALAR("target of anchor 4", 0.202825660, t[4].score, 1e-6, 0);
    for (int a = 0; a < 16; a++)
        if (a != 0 && a != 1 && a != 4 && a != 5)
            assert_int_equal(t[a].gt, -1);
    free(pred);
}

static void assign_topk_ties(void **state)
{
    (void)state;
    struct det_layout l;
    float *pred = assign_case(&l);
    struct det_gt gt[] = {{0, 0, 0, 0, 16, 16}};
    struct det_loss_config cfg = det_loss_defaults();
    struct det_target t[16];

    /* Top 2 of A's candidates: anchor 0 (score 0.75), then anchors 1 and
     * 5 tie at 0.5 and the lower index, 1, is kept. */
    cfg.topk = 2;
    assert_int_equal(det_loss_assign(&ctx, &l, &cfg, 1, pred, gt, 1, t), 0);
    assert_int_equal(t[0].gt, 0);
    assert_int_equal(t[1].gt, 0);
    assert_int_equal(t[4].gt, -1);
    assert_int_equal(t[5].gt, -1);
    CHECK_SCALAR("target of anchor 0", CIOU_A, t[0].score, 1e-6, 0);
    CHECK_SCALAR("target of anchor 1", 0.286838799, t[1].score, 1e-6, 0);
    free(pred);
}

static void assign_unlisted_box_wins(void **state)
{
    (void)state;
    struct det_layout l;
    float *pred = assign_case(&l);
    /* With top 1, boxes B = (8, 8, 20, 20) and D = (6, 6, 18, 18), class
     * 0, contain only anchor 5's point and both list it; D's CIoU with
     * anchor 5's box (4, 4, 20, 20) is 0.5625 (D inside it: 144 / 256,
     * same centre, v 0), B's 0.546875 (see above). E = (4.5, 4.5, 20.5,
     * 20.5), class 1, contains anchors 5, 6, 9 and 10. Against anchor 5,
     * intersection 15.5^2 = 240.25, union 271.75, IoU 0.884085, c^2 =
     * 544.5, rho^2 = 0.5, so CIoU = 0.883166, the highest of the three.
     * But anchor 5's class 1 logit is -20, so its metric is sqrt(2.06e-9)
     * * 0.883166^6 = 2.1543e-5. Anchor 6's box (12, 4, 28, 20) against E:
     * intersection 8.5 * 15.5 = 131.75, union 380.25, IoU 0.346483, c^2 =
     * 23.5^2 + 16.5^2 = 824.5, rho^2 = 56.5, CIoU = 0.277956, metric
     * sqrt(0.5) * 0.277956^6 = 3.2609e-4, tied with anchor 9: E lists
     * anchor 6. Anchor 5, listed by B and D, goes to E (the highest CIoU
     * of all boxes that contain it), as in Ultralytics. B and D keep
     * nothing. E's targets: anchor 6, 3.2609e-4 / (3.2609e-4 + 1e-9) *
     * 0.883166 = 0.883164, and anchor 5, 2.1543e-5 / 3.2609e-4 * 0.883166
     * = 0.058346. */
    struct det_gt gt[] = {{0, 0, 8, 8, 20, 20},
                          {0, 0, 6, 6, 18, 18},
                          {0, 1, 4.5f, 4.5f, 20.5f, 20.5f}};
    struct det_loss_config cfg = det_loss_defaults();
    struct det_target t[16];

    cfg.topk = 1;
    *class_logit(&l, pred, 0, 1, 5) = -20.0f;
    assert_int_equal(det_loss_assign(&ctx, &l, &cfg, 1, pred, gt, 3, t), 0);
    assert_int_equal(t[5].gt, 2);
    assert_int_equal(t[6].gt, 2);
    for (int a = 0; a < 16; a++)
        if (a != 5 && a != 6)
            assert_int_equal(t[a].gt, -1);
    CHECK_SCALAR("target of anchor 6", 0.883163644, t[6].score, 2e-6, 0);
    CHECK_SCALAR("target of anchor 5", 0.058345626, t[5].score, 0, 1e-4);
    free(pred);
}

static void assign_box_without_anchor(void **state)
{
    (void)state;
    struct det_layout l;
    float *pred = assign_case(&l);
    /* No anchor point (4 + 8k) lies strictly inside 1..3 px. */
    struct det_gt gt[] = {{0, 0, 1, 1, 3, 3}};
    struct det_loss_config cfg = det_loss_defaults();
    struct det_loss_result r;

    assert_int_equal(cpu_det_loss_forward_backward(&ctx, &l, &cfg, 1, pred, gt,
                                                   1, 1.0f, NULL, &r),
                     0);
    assert_int_equal(r.positives, 0);
    CHECK_SCALAR("box", 0.0, r.box, 0, 0);
    CHECK_SCALAR("dfl", 0.0, r.dfl, 0, 0);
    free(pred);
}

/* ---- DFL -----------------------------------------------------------------
 * Anchor 5 (point (1.5, 1.5) grid units) is the only positive, with
 * weight 1, so the normaliser is max(1, 1) = 1 and dfl = 1.5 * the mean
 * over sides of the cross-entropies. Each side has logit 2 on bin 1 and 0
 * on the other 15 bins: log-sum-exp L = ln(e^2 + 15) = 3.108572, and
 * CE(bin 1) = L - 2, CE(any other bin) = L. */

static double dfl_of_box(float x1, float y1, float x2, float y2)
{
    struct det_layout l;
    grid4(&l, 1);
    float *pred = new_floats(pred_size(&l, 1));
    struct det_gt gt[] = {{0, 0, x1, y1, x2, y2}};
    struct det_loss_config cfg = det_loss_defaults();
    struct det_target t[16];
    struct det_loss_result r;

    for (int a = 0; a < 16; a++) {
        t[a].gt = a == 5 ? 0 : -1;
        t[a].score = a == 5 ? 1.0f : 0.0f;
    }
    set_bins(&l, pred, 0, 5, 1, 2.0f);
    assert_int_equal(
        det_loss_apply(&ctx, &l, &cfg, 1, pred, gt, 1, t, 1.0f, NULL, &r), 0);
    assert_int_equal(r.positives, 1);
    free(pred);
    return r.dfl;
}

static void dfl_target_on_bin(void **state)
{
    (void)state;
    /* (4, 4, 20, 20) px is 1 grid unit from the point on every side:
     * weight 1 on bin 1. dfl = 1.5 * (L - 2) = 1.662858. */
    CHECK_SCALAR("dfl", 1.66285841, dfl_of_box(4, 4, 20, 20), 1e-6, 0);
}

static void dfl_target_between_bins(void **state)
{
    (void)state;
    /* (2, 2, 22, 22) px is 1.25 grid units away: weights 0.75 on bin 1 and
     * 0.25 on bin 2. dfl = 1.5 * (0.75 (L - 2) + 0.25 L) = 1.5 * (L -
     * 1.5) = 2.412858. */
    CHECK_SCALAR("dfl", 2.41285841, dfl_of_box(2, 2, 22, 22), 1e-6, 0);
}

/* ---- Batches without boxes ---------------------------------------------- */

static void no_boxes_is_bce_only(void **state)
{
    (void)state;
    struct det_layout l;
    grid4(&l, 2);
    size_t n = pred_size(&l, 2);
    float *pred = new_floats(n);
    float *dpred = new_floats(n);
    struct det_loss_config cfg = det_loss_defaults();
    struct det_loss_result r;

    /* All logits 0, every target 0, normaliser 1: BCE = ln 2 for each of
     * 2 images x 16 anchors x 2 classes, cls = 0.5 * 64 ln 2 = 22.180710,
     * total = 2 * cls. The class gradient is sigmoid(0) * 0.5 * batch 2
     * * scale 1 = 0.5; the box channels get 0. */
    fill_uniform(&(struct test_rng){1}, dpred, n, -1, 1);
    assert_int_equal(cpu_det_loss_forward_backward(&ctx, &l, &cfg, 2, pred,
                                                   NULL, 0, 1.0f, dpred, &r),
                     0);
    CHECK_SCALAR("cls", 22.1807098, r.cls, 1e-5, 0);
    CHECK_SCALAR("box", 0.0, r.box, 0, 0);
    CHECK_SCALAR("dfl", 0.0, r.dfl, 0, 0);
    CHECK_SCALAR("total", 44.3614196, r.total, 1e-5, 0);
    assert_int_equal(r.positives, 0);
    for (int b = 0; b < 2; b++) {
        for (int c = 0; c < det_outputs(&l); c++) {
            double want = c < 4 * l.reg_max ? 0.0 : 0.5;
            CHECK_CLOSE_D("dpred", &(double){want}, pred_at(&l, dpred, b, c, 0),
                          1, 1e-7, 0);
            CHECK_CLOSE_D("dpred", &(double){want},
                          pred_at(&l, dpred, b, c, 15), 1, 1e-7, 0);
        }
    }
    free(pred);
    free(dpred);
}

/* ---- Gradient ------------------------------------------------------------
 * Central differences of the loss with the assigner's targets held fixed
 * (they are constants for the gradient), on 2 images of 32 x 32 with
 * strides 8 and 16 (20 anchors) and 3 classes.
 *
 * The CIoU's weight alpha is a constant for the gradient too, so the
 * gradient of the box term is not the derivative of the loss where the
 * aspect term v is non-zero. Two cases avoid that. In the square case,
 * every anchor has the same logits on its four sides and every box is
 * square, so v = 0 and alpha = 0 at the point, and a step h changes
 * alpha * v only by O(h^4). In the random case the sides differ and the
 * box gain is 0, which checks DFL and BCE on asymmetric distributions.
 * The CIoU gradient with alpha held constant is checked against PyTorch
 * autograd in reference_matches_torch.
 *
 * Tolerance: the loss is a double sum, and terms that do not depend on
 * the perturbed element are bit-identical on both sides, so they cancel
 * exactly. What remains is the float rounding of the perturbed BCE term
 * (about 1e-7) over the step 2 h = 2e-3, i.e. 5e-5, plus a truncation
 * error of order h^2 = 1e-6: an atol of 2e-4 and rtol of 1e-3 leave a
 * margin of 4 over that. A wrong formula is off by far more (the
 * gradients are of order 0.01 to 1). */

struct fd_case {
    struct det_layout l;
    struct det_loss_config cfg;
    float *pred;
    struct det_gt gt[4];
    int ngt;
    struct det_target t[2 * 20];
    float scale;
};

static double fd_loss(void *state)
{
    struct fd_case *c = state;
    struct det_loss_result r;

    assert_int_equal(det_loss_apply(&ctx, &c->l, &c->cfg, 2, c->pred, c->gt,
                                    c->ngt, c->t, c->scale, NULL, &r),
                     0);
    return r.total * c->scale;
}

static void fd_setup(struct fd_case *c, int square)
{
    int strides[2] = {8, 16};
    struct test_rng r;

    assert_int_equal(det_layout_init(&c->l, 3, 32, 32, strides, 2), 0);
    assert_int_equal(c->l.anchors, 20);
    c->cfg = det_loss_defaults();
    c->pred = new_floats(pred_size(&c->l, 2));
    rng_seed(&r, 42);
    fill_random_pred(&r, &c->l, 2, c->pred);
    struct det_gt boxes[4] = {{0, 0, 2, 3, 20, 17},
                              {0, 2, 9, 6, 31, 30},
                              {1, 1, 0, 10, 25, 32},
                              {1, 2, 14, 1, 30, 12}};
    struct det_gt squares[4] = {{0, 0, 2, 3, 20, 21},
                                {0, 2, 9, 6, 31, 28},
                                {1, 1, 0, 10, 22, 32},
                                {1, 2, 14, 1, 26, 13}};
    memcpy(c->gt, square ? squares : boxes, sizeof(boxes));
    c->ngt = 4;
    c->scale = 0.25f;
    if (square) {
        for (int b = 0; b < 2; b++)
            for (int side = 1; side < 4; side++)
                for (int k = 0; k < c->l.reg_max; k++)
                    for (int a = 0; a < c->l.anchors; a++)
                        *pred_at(&c->l, c->pred, b, side * c->l.reg_max + k,
                                 a) = *pred_at(&c->l, c->pred, b, k, a);
    }
    assert_int_equal(
        det_loss_assign(&ctx, &c->l, &c->cfg, 2, c->pred, c->gt, c->ngt, c->t),
        0);
}

/* Compare dpred with central differences, per image and channel kind. */
static void check_fd(struct fd_case *c)
{
    size_t n = pred_size(&c->l, 2);
    size_t image = (size_t)det_outputs(&c->l) * c->l.anchors;
    size_t dist = (size_t)4 * c->l.reg_max * c->l.anchors;
    float *dpred = new_floats(n);
    double *fd = new_doubles(n);
    struct det_loss_result r;
    int positives = 0;

    for (int i = 0; i < 40; i++)
        positives += c->t[i].gt >= 0;
    assert_true(positives >= 4);

    assert_int_equal(det_loss_apply(&ctx, &c->l, &c->cfg, 2, c->pred, c->gt,
                                    c->ngt, c->t, c->scale, dpred, &r),
                     0);
    finite_diff(fd_loss, c, c->pred, n, 1e-3f, fd);
    for (int b = 0; b < 2; b++) {
        CHECK_CLOSE_D("distribution channels", fd + b * image,
                      dpred + b * image, dist, 2e-4, 1e-3);
        CHECK_CLOSE_D("class channels", fd + b * image + dist,
                      dpred + b * image + dist, image - dist, 2e-4, 1e-3);
    }
    free(dpred);
    free(fd);
    free(c->pred);
}

static void gradient_square_boxes(void **state)
{
    (void)state;
    struct fd_case c;

    fd_setup(&c, 1);
    check_fd(&c);
}

static void gradient_without_box_term(void **state)
{
    (void)state;
    struct fd_case c;

    fd_setup(&c, 0);
    c.cfg.box = 0.0f;
    check_fd(&c);
}

static void gradient_is_overwritten(void **state)
{
    (void)state;
    struct fd_case c;
    fd_setup(&c, 0);
    size_t n = pred_size(&c.l, 2);
    float *clean = new_floats(n);
    float *dirty = new_floats(n);
    struct det_loss_result r;

    fill_uniform(&(struct test_rng){5}, dirty, n, -9, 9);
    assert_int_equal(cpu_det_loss_forward_backward(&ctx, &c.l, &c.cfg, 2,
                                                   c.pred, c.gt, c.ngt, 1.0f,
                                                   clean, &r),
                     0);
    assert_int_equal(cpu_det_loss_forward_backward(&ctx, &c.l, &c.cfg, 2,
                                                   c.pred, c.gt, c.ngt, 1.0f,
                                                   dirty, &r),
                     0);
    assert_memory_equal(clean, dirty, sizeof(float) * n);
    free(clean);
    free(dirty);
    free(c.pred);
}

static void threads_give_same_result(void **state)
{
    (void)state;
    struct fd_case c;
    fd_setup(&c, 0);
    size_t n = pred_size(&c.l, 2);
    float *one = new_floats(n);
    float *two = new_floats(n);
    struct det_loss_result r1, r2;
    struct kctx ctx2;

    cpu_kctx_init(&ctx2, 2);
    assert_int_equal(cpu_det_loss_forward_backward(&ctx, &c.l, &c.cfg, 2,
                                                   c.pred, c.gt, c.ngt, 1.0f,
                                                   one, &r1),
                     0);
    assert_int_equal(cpu_det_loss_forward_backward(&ctx2, &c.l, &c.cfg, 2,
                                                   c.pred, c.gt, c.ngt, 1.0f,
                                                   two, &r2),
                     0);
    cpu_kctx_free(&ctx2);
    assert_memory_equal(one, two, sizeof(float) * n);
    assert_true(r1.total == r2.total);
    assert_int_equal(r1.positives, r2.positives);
    free(one);
    free(two);
    free(c.pred);
}

/* ---- PyTorch reference ---------------------------------------------------
 * tests/fixtures/det-loss-ref.bin, written by make_det_loss_reference.py
 * (layout in that script). The reference computes in float64 from the same
 * float32 predictions. The C code decodes boxes and scores the assigner in
 * float. The metric's CIoU^6 multiplies a relative error of 1e-7 in the
 * CIoU by 6, so soft targets carry errors of about 1e-6 relative (an
 * estimate). The loss parts are compared with rtol 1e-5 and the gradient
 * with atol 1e-6 + rtol 1e-4, its largest values being about 0.5. The
 * errors measured on this fixture are at most 3.3e-7 relative on the loss
 * parts and 1.4e-7 absolute on the gradient. */

#define REF_FIXTURE "tests/fixtures/det-loss-ref.bin"

struct ref_case {
    int batch, nc, img_h, img_w, nlevels, strides[DET_LEVELS_MAX];
    int ngt, anchors, no;
    float scale;
    struct det_gt *gt;
    float *pred, *dpred;
    double box, cls, dfl, total;
    int positives;
};

static void read_exact(FILE *f, void *dst, size_t size)
{
    assert_int_equal(fread(dst, 1, size, f), size);
}

static void ref_load(struct ref_case *rc)
{
    FILE *f = fopen(REF_FIXTURE, "rb");
    char magic[8];
    int32_t head[5], tail[3];

    if (f == NULL)
        fail_msg("cannot open %s (run the test from the repository root)",
                 REF_FIXTURE);
    read_exact(f, magic, 8);
    assert_memory_equal(magic, "DETLOSS1", 8);
    read_exact(f, head, sizeof(head));
    rc->batch = head[0];
    rc->nc = head[1];
    rc->img_h = head[2];
    rc->img_w = head[3];
    rc->nlevels = head[4];
    assert_in_range(rc->nlevels, 1, DET_LEVELS_MAX);
    int32_t strides[DET_LEVELS_MAX];
    read_exact(f, strides, sizeof(int32_t) * rc->nlevels);
    for (int i = 0; i < rc->nlevels; i++)
        rc->strides[i] = strides[i];
    read_exact(f, tail, sizeof(tail));
    rc->ngt = tail[0];
    rc->anchors = tail[1];
    rc->no = tail[2];
    read_exact(f, &rc->scale, sizeof(float));

    rc->gt = calloc((size_t)rc->ngt, sizeof(*rc->gt));
    assert_non_null(rc->gt);
    for (int i = 0; i < rc->ngt; i++) {
        int32_t ids[2];
        float box[4];
        read_exact(f, ids, sizeof(ids));
        read_exact(f, box, sizeof(box));
        rc->gt[i] =
            (struct det_gt){ids[0], ids[1], box[0], box[1], box[2], box[3]};
    }
    size_t n = (size_t)rc->batch * rc->no * rc->anchors;
    rc->pred = new_floats(n);
    rc->dpred = new_floats(n);
    read_exact(f, rc->pred, sizeof(float) * n);
    double parts[4];
    read_exact(f, parts, sizeof(parts));
    rc->box = parts[0];
    rc->cls = parts[1];
    rc->dfl = parts[2];
    rc->total = parts[3];
    int32_t positives;
    read_exact(f, &positives, sizeof(positives));
    rc->positives = positives;
    read_exact(f, rc->dpred, sizeof(float) * n);
    assert_int_equal(fgetc(f), EOF);
    fclose(f);
}

static void reference_matches_torch(void **state)
{
    (void)state;
    struct ref_case rc;
    ref_load(&rc);
    struct det_layout l;
    assert_int_equal(
        det_layout_init(&l, rc.nc, rc.img_h, rc.img_w, rc.strides, rc.nlevels),
        0);
    assert_int_equal(l.anchors, rc.anchors);
    assert_int_equal(det_outputs(&l), rc.no);
    size_t n = (size_t)rc.batch * rc.no * rc.anchors;
    float *dpred = new_floats(n);
    struct det_loss_config cfg = det_loss_defaults();
    struct det_loss_result r;

    assert_int_equal(cpu_det_loss_forward_backward(&ctx, &l, &cfg, rc.batch,
                                                   rc.pred, rc.gt, rc.ngt,
                                                   rc.scale, dpred, &r),
                     0);
    assert_int_equal(r.positives, rc.positives);
    CHECK_SCALAR("box", rc.box, r.box, 0, 1e-5);
    CHECK_SCALAR("cls", rc.cls, r.cls, 0, 1e-5);
    CHECK_SCALAR("dfl", rc.dfl, r.dfl, 0, 1e-5);
    CHECK_SCALAR("total", rc.total, r.total, 0, 1e-5);
    CHECK_CLOSE("dpred", rc.dpred, dpred, n, 1e-6, 1e-4);
    free(dpred);
    free(rc.pred);
    free(rc.dpred);
    free(rc.gt);
}

/* ---- Degenerate inputs -------------------------------------------------- */

struct degenerate_case {
    const char *name;
    int nc;
    struct det_gt gt[3];
    int ngt;
    int min_positives;
};

static void degenerate_cases_are_finite(void **state)
{
    (void)state;
    static const struct degenerate_case cases[] = {
        {"all background", 3, {{0}}, 0, 0},
        {"one class", 1, {{0, 0, 3, 3, 20, 25}, {1, 0, 10, 0, 32, 12}}, 2, 2},
        /* A point (12 px) lies inside 11.5..12.5 but none in 12..13. */
        {"one pixel wide",
         2,
         {{0, 1, 11.5f, 2, 12.5f, 30},
          {0, 0, 12, 12, 13, 13},
          {1, 1, 3, 19.5f, 29, 20.5f}},
         3,
         2},
        {"on the border",
         2,
         {{0, 0, 0, 0, 32, 32}, {0, 1, 0, 0, 8, 32}, {1, 1, 24, 24, 32, 32}},
         3,
         3},
    };
    struct det_layout l;
    struct test_rng r;

    grid4(&l, 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct degenerate_case *dc = &cases[i];
        grid4(&l, dc->nc);
        size_t n = pred_size(&l, 2);
        float *pred = new_floats(n);
        float *dpred = new_floats(n);
        struct det_loss_config cfg = det_loss_defaults();
        struct det_loss_result res;

        rng_seed(&r, 100 + i);
        fill_random_pred(&r, &l, 2, pred);
        print_message("case: %s\n", dc->name);
        assert_int_equal(cpu_det_loss_forward_backward(&ctx, &l, &cfg, 2, pred,
                                                       dc->gt, dc->ngt, 1.0f,
                                                       dpred, &res),
                         0);
        assert_true(isfinite(res.box));
        assert_true(isfinite(res.cls));
        assert_true(isfinite(res.dfl));
        assert_true(isfinite(res.total));
        assert_true(res.positives >= dc->min_positives);
        assert_true(all_finite(dpred, n));
        free(pred);
        free(dpred);
    }
}

/* ---- Invalid input ------------------------------------------------------ */

static void invalid_boxes_are_rejected(void **state)
{
    (void)state;
    struct det_layout l;
    grid4(&l, 2);
    float *pred = new_floats(pred_size(&l, 2));
    struct det_loss_config cfg = det_loss_defaults();
    struct det_loss_result r;
    struct det_gt bad_class[] = {{0, 2, 0, 0, 8, 8}};
    struct det_gt bad_image[] = {{2, 0, 0, 0, 8, 8}};
    struct det_gt unsorted[] = {{1, 0, 0, 0, 8, 8}, {0, 0, 0, 0, 8, 8}};
    struct det_gt not_finite[] = {{0, 0, 0, 0, NAN, 8}};

    assert_int_equal(cpu_det_loss_forward_backward(&ctx, &l, &cfg, 2, pred,
                                                   bad_class, 1, 1, NULL, &r),
                     -EINVAL);
    assert_int_equal(cpu_det_loss_forward_backward(&ctx, &l, &cfg, 2, pred,
                                                   bad_image, 1, 1, NULL, &r),
                     -EINVAL);
    assert_int_equal(cpu_det_loss_forward_backward(&ctx, &l, &cfg, 2, pred,
                                                   unsorted, 2, 1, NULL, &r),
                     -EINVAL);
    assert_int_equal(cpu_det_loss_forward_backward(&ctx, &l, &cfg, 2, pred,
                                                   not_finite, 1, 1, NULL, &r),
                     -EINVAL);
    cfg.topk = 0;
    assert_int_equal(cpu_det_loss_forward_backward(&ctx, &l, &cfg, 2, pred,
                                                   NULL, 0, 1, NULL, &r),
                     -EINVAL);
    free(pred);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ciou_identical),
        cmocka_unit_test(ciou_disjoint),
        cmocka_unit_test(ciou_nested),
        cmocka_unit_test(ciou_offset),
        cmocka_unit_test(assign_one_box),
        cmocka_unit_test(assign_shared_anchor),
        cmocka_unit_test(assign_topk_ties),
        cmocka_unit_test(assign_unlisted_box_wins),
        cmocka_unit_test(assign_box_without_anchor),
        cmocka_unit_test(dfl_target_on_bin),
        cmocka_unit_test(dfl_target_between_bins),
        cmocka_unit_test(no_boxes_is_bce_only),
        cmocka_unit_test(gradient_square_boxes),
        cmocka_unit_test(gradient_without_box_term),
        cmocka_unit_test(gradient_is_overwritten),
        cmocka_unit_test(threads_give_same_result),
        cmocka_unit_test(reference_matches_torch),
        cmocka_unit_test(degenerate_cases_are_finite),
        cmocka_unit_test(invalid_boxes_are_rejected),
    };

    return cmocka_run_group_tests_name("det loss", tests, setup, teardown);
}
