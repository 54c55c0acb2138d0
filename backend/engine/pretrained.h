/*
 * Starting a run from another run's weights (train pretrained=CKPT), as
 * Ultralytics does with a .pt given as pretrained=: after the network is
 * built from model=, every parameter and buffer whose name and size match
 * a tensor of the checkpoint is copied, and the rest keep their fresh
 * initialization. A head trained for another class count is therefore
 * skipped while the backbone is copied. Gradients and optimizer state are
 * not copied, so the optimizer starts fresh at epoch 0.
 */
#ifndef TRAINYARD_PRETRAINED_H
#define TRAINYARD_PRETRAINED_H

#include "engine/net.h"
#include "error.h"

/* Tensor counts of one pretrained_load call. */
struct pretrained_result {
    int copied;  /* parameters and buffers of the network that matched */
    int skipped; /* parameters and buffers of the network that did not */
};

/* Copy into net, whose model is for task ("classify" or "detect"), the
 * checkpoint's EMA weights of every parameter and buffer whose name and
 * size match, into both data and EMA, and log the counts. Returns 0, or
 * a negative errno code with err filled: -ENOENT for a missing file, and
 * -EINVAL when path is not a checkpoint, its task differs, or no tensor
 * matches. */
int pretrained_load(const char *path, struct net *net, const char *task,
                    struct pretrained_result *out, struct error *err);

#endif
