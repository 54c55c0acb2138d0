#include "engine/optim.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#define GRAD_CLIP_NORM 10.0
#define ADAM_BETA2 0.999
#define ADAM_EPS 1e-8
#define EMA_DECAY 0.9999
#define EMA_TAU 2000.0

/* pg0 biases, pg1 weights, pg2 norm weights (see optim.h). */
static int group_index(enum param_group g)
{
    switch (g) {
    case PARAM_BIAS:
        return 0;
    case PARAM_WEIGHT:
        return 1;
    default:
        return 2;
    }
}

int optim_init(struct optimizer *opt, const struct train_args *args,
               int images, int classes, int batches_per_epoch,
               struct error *err)
{
    int max_batch = args->batch > args->nbs ? args->batch : args->nbs;

    memset(opt, 0, sizeof(*opt));
    opt->lr0 = args->lr0;
    opt->momentum = args->momentum;
    opt->warmup_bias_lr = args->warmup_bias_lr;
    opt->nominal_accumulate = (int)fmax(round((double)args->nbs / args->batch),
                                        1);
    opt->accumulate = opt->nominal_accumulate;
    opt->weight_decay = args->weight_decay * args->batch *
                        opt->nominal_accumulate / args->nbs;

    if (strcasecmp(args->optimizer, "auto") == 0) {
        int64_t iterations = (int64_t)ceil((double)images / max_batch) *
                             args->epochs;
        if (iterations > 10000) {
            opt->kind = OPTIMIZER_SGD;
            opt->lr0 = 0.01;
            opt->momentum = 0.9;
        } else {
            opt->kind = OPTIMIZER_ADAMW;
            opt->lr0 = round(0.002 * 5.0 / (4 + classes) * 1e6) / 1e6;
            opt->momentum = 0.9;
            opt->warmup_bias_lr = 0.0;
        }
    } else if (strcasecmp(args->optimizer, "SGD") == 0) {
        opt->kind = OPTIMIZER_SGD;
    } else if (strcasecmp(args->optimizer, "AdamW") == 0 ||
               strcasecmp(args->optimizer, "Adam") == 0) {
        opt->kind = OPTIMIZER_ADAMW;
    } else {
        return error_set(err, -EINVAL,
                         "invalid optimizer=%s: use SGD, AdamW or auto",
                         args->optimizer);
    }

    if (args->warmup_epochs > 0) {
        double w = round(args->warmup_epochs * batches_per_epoch);
        opt->warmup_iters = (int64_t)fmax(w, 100);
    } else {
        opt->warmup_iters = -1;
    }
    for (int j = 0; j < 3; j++)
        opt->lr[j] = opt->lr0;
    opt->cur_momentum = opt->momentum;
    return 0;
}

double optim_epoch_factor(const struct train_args *args, int epoch)
{
    double e = (double)epoch / args->epochs;

    if (args->cos_lr)
        return ((1.0 - cos(e * M_PI)) / 2.0) * (args->lrf - 1.0) + 1.0;
    return fmax(1.0 - e, 0.0) * (1.0 - args->lrf) + args->lrf;
}

static double interp(double x, double x1, double y0, double y1)
{
    if (x <= 0)
        return y0;
    if (x >= x1)
        return y1;
    return y0 + (y1 - y0) * x / x1;
}

void optim_schedule(struct optimizer *opt, const struct train_args *args,
                    int64_t ni, int epoch)
{
    double target = opt->lr0 * optim_epoch_factor(args, epoch);

    if (opt->warmup_iters > 0 && ni <= opt->warmup_iters) {
        double nw = (double)opt->warmup_iters;
        double acc = interp((double)ni, nw, 1.0,
                            (double)args->nbs / args->batch);
        opt->accumulate = (int)fmax(1, round(acc));
        opt->lr[0] = interp((double)ni, nw, opt->warmup_bias_lr, target);
        opt->lr[1] = interp((double)ni, nw, 0.0, target);
        opt->lr[2] = opt->lr[1];
        opt->cur_momentum = interp((double)ni, nw, args->warmup_momentum,
                                   opt->momentum);
        return;
    }
    opt->accumulate = opt->nominal_accumulate;
    for (int j = 0; j < 3; j++)
        opt->lr[j] = target;
    opt->cur_momentum = opt->momentum;
}

static void clip_gradients(struct net *net)
{
    double total = 0;

    /* One sum per parameter, added in parameter order, which fixes the
     * rounding of the total. NOTE: on CUDA each sum waits for the device;
     * a multi-tensor sum kernel would save those waits. */
    for (int i = 0; i < net->nparams; i++) {
        const struct param *p = &net->params[i];
        total += net->ops->sumsq(net->ctx, p->n, p->grad);
    }
    total = sqrt(total);

    /* As torch.nn.utils.clip_grad_norm_: scale by max / (norm + 1e-6)
     * when that is below 1. */
    double coef = GRAD_CLIP_NORM / (total + 1e-6);
    if (coef < 1.0)
        for (int i = 0; i < net->nparams; i++)
            net->ops->scale(net->ctx, net->params[i].n, net->params[i].grad,
                            (float)coef);
}

static void update_ema(struct optimizer *opt, struct net *net)
{
    opt->ema_updates++;
    float d = (float)(EMA_DECAY *
                      (1.0 - exp(-(double)opt->ema_updates / EMA_TAU)));

    for (int i = 0; i < net->nparams; i++)
        net->ops->ema_update(net->ctx, net->params[i].n, net->params[i].ema,
                             net->params[i].data, d);
    for (int i = 0; i < net->nbuffers; i++)
        net->ops->ema_update(net->ctx, net->buffers[i].n, net->buffers[i].ema,
                             net->buffers[i].data, d);
}

void optim_step(struct optimizer *opt, struct net *net)
{
    clip_gradients(net);
    opt->steps++;
    for (int i = 0; i < net->nparams; i++) {
        struct param *p = &net->params[i];
        int g = group_index(p->group);
        float decay = g == 1 ? (float)opt->weight_decay : 0.0f;
        if (opt->kind == OPTIMIZER_SGD)
            net->ops->sgd_step(net->ctx, p->n, p->data, p->grad, p->state_a,
                               (float)opt->lr[g], (float)opt->cur_momentum,
                               decay, 1);
        else
            net->ops->adamw_step(net->ctx, p->n, p->data, p->grad, p->state_a,
                                 p->state_b, (float)opt->lr[g],
                                 (float)opt->momentum, (float)ADAM_BETA2,
                                 (float)ADAM_EPS, decay, opt->steps);
    }
    net_zero_param_grads(net);
    update_ema(opt, net);
}
