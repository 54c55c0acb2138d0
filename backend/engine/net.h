/*
 * Networks built from an Ultralytics model YAML: a list of layers, each
 * taking the outputs of earlier layers (`from`), with explicit forward and
 * backward passes over the kernels of kernels/kernels.h. The passes call
 * the kernels through the device's table (engine/device.h), so the same
 * code runs on the CPU and on a CUDA GPU.
 *
 * Memory: every buffer is allocated once when the network is built, for
 * its maximum batch size; a pass over a smaller batch uses a prefix. Every
 * array of the network (parameters, EMA, optimizer state, buffers,
 * activations, gradients) lives in the device's memory, so on a GPU the
 * host reads and writes them only through net_array_to_host and
 * net_array_from_host. Every gradient buffer accumulates (the kernels'
 * contract), and net_zero_grad clears all of them, parameter gradients
 * included, before a backward.
 *
 * Parameters and buffers are registered in build order under names such
 * as "model.2.m.0.cv1.conv.weight", the names PyTorch would give the same
 * module, so checkpoints and reference fixtures line up one to one.
 */
#ifndef TRAINYARD_NET_H
#define TRAINYARD_NET_H

#include <stddef.h>
#include <stdint.h>

#include "detect.h"
#include "engine/device.h"
#include "error.h"
#include "kernels.h"

#define NET_NAME_MAX 80
#define NET_FROM_MAX 4

/* Optimizer parameter groups, as Ultralytics builds them. */
enum param_group {
    PARAM_WEIGHT = 0, /* conv and linear weights: weight decay applies */
    PARAM_NORM = 1,   /* batch-norm weights: no decay */
    PARAM_BIAS = 2,   /* biases, batch-norm biases: no decay */
};

struct param {
    char name[NET_NAME_MAX];
    size_t n;
    enum param_group group;
    float *data, *grad, *ema;
    float *state_a, *state_b; /* SGD velocity, or AdamW m and v */
};

/* A tensor that is not trained but saved and averaged: batch-norm
 * running statistics. */
struct buffer {
    char name[NET_NAME_MAX];
    size_t n;
    float *data, *ema;
};

/* Conv: conv2d without bias, batch norm, SiLU (or none when act is 0). */
struct convbn {
    struct conv2d_shape shape; /* n is the maximum batch */
    struct param *weight, *gamma, *beta;
    struct buffer *running_mean, *running_var;
    int act;
    float *conv_out, *bn_out, *y, *dy;
    float *save_mean, *save_invstd;
};

struct bottleneck {
    struct convbn cv1, cv2;
    int add;        /* shortcut: y = x + cv2(cv1(x)) */
    float *y, *dy;  /* own buffers when add, else cv2's */
};

struct c2f {
    int hidden, n;
    struct convbn cv1, cv2;
    struct bottleneck *m;
    float *b_in, *db_in; /* second half of cv1's output, and its gradient */
    float *cat, *dcat;   /* [cv1 output, m[0].y, ..., m[n-1].y] */
};

struct sppf {
    struct convbn cv1, cv2;
    struct pool_shape pool;
    float *p[3], *dp[3];
    int32_t *argmax[3];
    float *cat, *dcat;
};

struct classify {
    struct convbn conv;  /* 1x1 to 1280 channels */
    int hidden, classes;
    struct param *weight, *bias;
    float *pooled, *dpooled;
    float *logits, *dlogits;
};

/* A plain conv2d with a bias and no normalization: the last layer of
 * each Detect branch. */
struct conv_bias {
    struct conv2d_shape shape; /* n is the maximum batch */
    struct param *weight, *bias;
    float *y, *dy;
};

/* Detect: per input level a box branch (Conv 3x3, Conv 3x3, conv 1x1 to
 * 4 * reg_max) and a class branch (the same, ending in nc channels),
 * whose outputs fill pred [batch, no, anchors] as kernels/detect.h lays
 * it out. The DFL expectation is not a layer here: the loss and the
 * decoder read the distributions from pred. */
struct detect {
    struct det_layout layout;
    struct convbn box_a[DET_LEVELS_MAX], box_b[DET_LEVELS_MAX];
    struct convbn cls_a[DET_LEVELS_MAX], cls_b[DET_LEVELS_MAX];
    struct conv_bias box_c[DET_LEVELS_MAX], cls_c[DET_LEVELS_MAX];
    float *pred, *dpred;
};

enum layer_kind {
    LAYER_CONV,
    LAYER_C2F,
    LAYER_SPPF,
    LAYER_UPSAMPLE,
    LAYER_CONCAT,
    LAYER_CLASSIFY,
    LAYER_DETECT,
};

struct layer {
    enum layer_kind kind;
    int from[NET_FROM_MAX]; /* absolute layer indices; -1: the input */
    int nfrom;
    int c, h, w;            /* output shape of one image */
    float *out, *dout;      /* [batch, c, h, w] */
    union {
        struct convbn conv;
        struct c2f c2f;
        struct sppf sppf;
        struct classify classify;
        struct detect *detect; /* owned; large, so kept out of the union */
        int factor; /* upsample */
    } u;
};

struct net {
    int in_c, in_h, in_w; /* input image shape */
    int max_batch;
    int batch;            /* batch of the current pass */
    int classes;
    char task[16];        /* "classify" or "detect" */
    int nlayers;
    struct layer *layers;

    struct param *params;
    int nparams, cap_params;
    struct buffer *buffers;
    int nbuffers, cap_buffers;

    /* Gradient buffers of activations, cleared by net_zero_grad. */
    float **grad_bufs;
    size_t *grad_sizes;
    int ngrad, cap_grad;

    float *scratch_a, *scratch_b; /* transient, the largest activation */
    size_t scratch_size;

    const float *input; /* of the current pass */
    struct kctx *ctx;
    const struct kernel_ops *ops; /* of the device holding every array */
    struct error failure;         /* first failure of a pass; code 0: none */
};

/* Per-layer description before building, as read from the YAML. */
struct layer_spec {
    int from[NET_FROM_MAX];
    int nfrom;
    int repeats;            /* already scaled by depth */
    enum layer_kind kind;
    int c2;                 /* output channels, scaled (classes: Classify
                               and Detect) */
    int k, s, shortcut;     /* Conv kernel and stride; C2f shortcut */
    int factor;             /* Upsample */
};

struct model_spec {
    char task[16];
    int in_c;
    int classes;
    int nlayers;
    struct layer_spec layers[64];
};

/* Read an Ultralytics model YAML (backbone and head lists, scales) at the
 * given scale ("n", "s", ...; empty: the first scale in the file, or no
 * scaling when the file has none). classes > 0 overrides the file's nc. */
int model_spec_load(const char *path, const char *scale, int classes,
                    struct model_spec *spec, struct error *err);

/* Build a network for images of in_h x in_w and batches up to max_batch,
 * with weights initialized from seed as PyTorch initializes them, on the
 * CPU (ctx comes from cpu_kctx_init). */
int net_build(struct net *net, const struct model_spec *spec, int in_h,
              int in_w, int max_batch, uint64_t seed, struct kctx *ctx,
              struct error *err);

/* The same on an open device. The initial weights are the same on every
 * device: they are drawn on the host and copied in. */
int net_build_on(struct net *net, const struct model_spec *spec, int in_h,
                 int in_w, int max_batch, uint64_t seed, struct device *dev,
                 struct error *err);
void net_free(struct net *net);

/* Forward n images x [n, in_c, in_h, in_w], in the device's memory; train
 * selects batch statistics (and updates running statistics) over running
 * ones. The result is the last layer's out. */
void net_forward(struct net *net, const float *x, int n, int train);

/* Backward from the last layer's dout, filled by the caller after
 * net_zero_grad and net_forward. */
void net_backward(struct net *net);

/* Clear every gradient: activation gradients and parameter gradients. */
void net_zero_grad(struct net *net);

/* Clear activation gradients only, keeping parameter gradients, which
 * accumulate over several batches until the optimizer steps. */
void net_zero_activation_grads(struct net *net);

/* Clear parameter gradients only, after an optimizer step. */
void net_zero_param_grads(struct net *net);

/* Return the first failure since the last call and clear it: 0, or a
 * negative errno-style code with err filled. Failures of the passes are
 * recorded rather than returned (the kernels return void), so call this
 * once per training step. It does not wait for queued GPU work. */
int net_check(struct net *net, struct error *err);

/* Copy n floats of one of the network's arrays (a parameter's data, grad,
 * ema, state_a or state_b, a buffer's data or ema, or an activation) to
 * host memory, or from host memory into it. The host side needs no
 * alignment. Return 0, or a negative errno-style code with err filled. */
int net_array_to_host(const struct net *net, void *host, const float *array,
                      size_t n, struct error *err);
int net_array_from_host(const struct net *net, float *array, const void *host,
                        size_t n, struct error *err);

/* Number of trainable values. */
size_t net_param_count(const struct net *net);

/* Swap each parameter's and buffer's data with its EMA copy, so that a
 * forward pass uses the EMA weights; call again to swap back. */
void net_swap_ema(struct net *net);

#endif
