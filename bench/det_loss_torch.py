#!/usr/bin/python3
"""The YOLOv8 detection loss of kernels/cpu/det_loss.c in batched PyTorch.

tests/fixtures/make_det_loss_reference.py writes the same loss one anchor
at a time, to make the reference data of the C tests. This module
computes it with tensor operations over the whole batch, fast enough for
bench/train_torch.py to time a training step with it. The rules are the
same:

- anchors are the cell centres of each level (strides 8, 16, 32), and a
  box's candidates are the anchors whose point lies inside it by more
  than 1e-9 pixels;
- the assigner's metric is sigmoid(class logit) ** 0.5 * CIoU ** 6, with
  the CIoU of the decoded box clamped at 0; each box lists its top 10
  candidates by metric, ties to the lower anchor;
- an anchor listed by one box goes to it. An anchor listed by several
  goes to the box of highest CIoU among all boxes that contain its
  point, listed or not, and to the first of them on ties;
- the soft target of a positive anchor is metric * (best CIoU of its
  box's positives) / (best metric of its box's positives + 1e-9);
- box loss 1 - CIoU (alpha held constant) and DFL of the two bins around
  each target distance, both weighted by the soft target, class loss BCE
  with logits against the soft targets; gains 7.5, 0.5 and 1.5, each
  divided by max(sum of soft targets, 1), and total = (box + cls + dfl)
  * batch.

Run as a program, it checks itself against tests/fixtures/det-loss-ref.bin
in float64 and prints the largest differences:
    /usr/bin/python3 bench/det_loss_torch.py
"""
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

REG_MAX = 16
TOPK, ALPHA, BETA = 10, 0.5, 6.0
GAIN_BOX, GAIN_CLS, GAIN_DFL = 7.5, 0.5, 1.5
ASSIGN_EPS = 1e-9
CIOU_EPS = 1e-7


def anchor_grid(img_h, img_w, strides, dtype=torch.float32, device="cpu"):
    """Return anchor points [anchors, 2] in grid units and each anchor's stride
    [anchors], level by level, row-major; a level's grid is ceil(img /
    stride)."""
    points, stride_of = [], []
    for s in strides:
        h, w = -(-img_h // s), -(-img_w // s)
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=dtype, device=device) + 0.5,
            torch.arange(w, dtype=dtype, device=device) + 0.5,
            indexing="ij")
        points.append(torch.stack((xs.reshape(-1), ys.reshape(-1)), -1))
        stride_of.append(torch.full((h * w,), float(s), dtype=dtype,
                                    device=device))
    return torch.cat(points), torch.cat(stride_of)


def ciou(a, b, alpha_constant):
    """CIoU of boxes a and b (x1, y1, x2, y2 in the last dimension, which
    broadcast), with eps 1e-7 on the heights, the union and the enclosing
    diagonal. alpha is detached when alpha_constant."""
    w1, h1 = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1] + CIOU_EPS
    w2, h2 = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1] + CIOU_EPS
    iw = (torch.minimum(a[..., 2], b[..., 2]) -
          torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) -
          torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    union = w1 * h1 + w2 * h2 - inter + CIOU_EPS
    iou = inter / union
    cw = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0],
                                                             b[..., 0])
    ch = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1],
                                                             b[..., 1])
    c2 = cw ** 2 + ch ** 2 + CIOU_EPS
    rho2 = ((b[..., 0] + b[..., 2] - a[..., 0] - a[..., 2]) ** 2 +
            (b[..., 1] + b[..., 3] - a[..., 1] - a[..., 3]) ** 2) / 4
    v = 4 / math.pi ** 2 * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    alpha = v / (v - iou + (1 + CIOU_EPS))
    if alpha_constant:
        alpha = alpha.detach()
    return iou - (rho2 / c2 + v * alpha)


def decode(dist_logits, points):
    """Decode boxes [batch, anchors, 4] in grid units from the
    distribution logits [batch, 4 * REG_MAX, anchors], with the softmax
    expectation of each side's distance around the anchor point."""
    batch = dist_logits.shape[0]
    prob = dist_logits.reshape(batch, 4, REG_MAX, -1).softmax(2)
    bins = torch.arange(REG_MAX, dtype=dist_logits.dtype,
                        device=dist_logits.device).reshape(1, 1, -1, 1)
    d = (prob * bins).sum(2)  # [batch, 4, anchors]: left, top, right, bottom
    return torch.stack((points[:, 0] - d[:, 0], points[:, 1] - d[:, 1],
                        points[:, 0] + d[:, 2], points[:, 1] + d[:, 3]), -1)


def pad_boxes(gts_by_image, dtype, device):
    """Pad the boxes of each image to the most boxes of an image, giving
    classes [batch, g] (int64), boxes [batch, g, 4] in pixels and a
    validity mask [batch, g]. gts_by_image[b] lists (class, (x1, y1, x2,
    y2)) of image b."""
    batch = len(gts_by_image)
    g = max(1, max(len(gts) for gts in gts_by_image))
    cls = torch.zeros(batch, g, dtype=torch.int64)
    boxes = torch.zeros(batch, g, 4, dtype=dtype)
    valid = torch.zeros(batch, g, dtype=torch.bool)
    for b, gts in enumerate(gts_by_image):
        for j, (c, box) in enumerate(gts):
            cls[b, j] = c
            boxes[b, j] = torch.tensor(box, dtype=dtype)
            valid[b, j] = True
    return cls.to(device), boxes.to(device), valid.to(device)


@torch.no_grad()
def assign(cls_logits, boxes_px, points_px, gt_cls, gt_boxes, gt_valid):
    """Assign anchors to boxes (task-aligned) for a batch. cls_logits [batch, nc, anchors],
    boxes_px [batch, anchors, 4] the decoded boxes in pixels, points_px
    [anchors, 2]. Returns per anchor the index of its box ([batch,
    anchors], -1: negative) and the soft target of that box's class
    ([batch, anchors], 0 for negatives)."""
    batch, g = gt_cls.shape
    anchors = points_px.shape[0]
    px, py = points_px[:, 0], points_px[:, 1]
    gb = gt_boxes[:, :, None, :]  # [batch, g, 1, 4]
    margin = torch.minimum(
        torch.minimum(px - gb[..., 0], py - gb[..., 1]),
        torch.minimum(gb[..., 2] - px, gb[..., 3] - py))
    inside = (margin > ASSIGN_EPS) & gt_valid[:, :, None]  # [batch, g, anchors]

    overlap = ciou(gb, boxes_px[:, None, :, :], False).clamp(min=0)
    score_of_cls = torch.sigmoid(
        cls_logits.gather(1, gt_cls[:, :, None].expand(batch, g, anchors)))
    iou = torch.where(inside, overlap, torch.full_like(overlap, -1.0))
    metric = torch.where(inside, score_of_cls ** ALPHA * overlap ** BETA,
                         torch.full_like(overlap, -1.0))

    # Top k of each box among its candidates, ties to the lower anchor:
    # a stable descending sort puts the candidates (metric >= 0) first.
    order = torch.sort(metric, dim=2, descending=True, stable=True).indices
    top = order[:, :, :TOPK]
    listed = torch.zeros_like(inside)
    listed.scatter_(2, top, inside.gather(2, top))
    claims = listed.sum(1)  # [batch, anchors]

    # One list: that box. Several: the highest CIoU over every box that
    # contains the point; argmax returns the first maximum.
    only = listed.to(torch.int64).argmax(1)
    best = iou.argmax(1)
    owner = torch.where(claims == 1, only, best)
    owner = torch.where(claims > 0, owner, torch.full_like(owner, -1))

    final = (owner[:, None, :] == torch.arange(g, device=owner.device)
             [None, :, None])  # [batch, g, anchors]
    zero = torch.zeros_like(metric)
    best_metric = torch.where(final, metric, zero).amax(2, keepdim=True)
    best_iou = torch.where(final, iou, zero).amax(2, keepdim=True)
    soft = torch.where(final, metric * best_iou / (best_metric + ASSIGN_EPS),
                       zero)
    return owner, soft.sum(1)


def det_loss(pred, gt_cls, gt_boxes, gt_valid, points, stride_of):
    """Compute the loss parts (after gains, as tensors), the total that
    is differentiated and the number of positives, for pred [batch, 4 *
    REG_MAX + nc, anchors] against the padded boxes of pad_boxes."""
    batch, _, anchors = pred.shape
    dist_logits = pred[:, :4 * REG_MAX]
    cls_logits = pred[:, 4 * REG_MAX:]
    stride_col = stride_of[:, None]
    points_px = points * stride_col
    boxes = decode(dist_logits, points)  # grid units
    owner, score = assign(cls_logits.detach(), boxes.detach() * stride_col,
                          points_px, gt_cls, gt_boxes, gt_valid)
    pos = owner >= 0
    safe_owner = owner.clamp(min=0)

    # Class loss: BCE with logits against the soft target of the owner's
    # class, zero elsewhere.
    owner_cls = gt_cls.gather(1, safe_owner)  # [batch, anchors]
    targets = torch.zeros_like(cls_logits)
    targets.scatter_(1, owner_cls[:, None, :], score[:, None, :])
    targets = targets * pos[:, None, :]
    norm = targets.sum().clamp(min=1.0)
    cls_sum = F.binary_cross_entropy_with_logits(cls_logits, targets,
                                                 reduction="sum")

    # Box and DFL losses on the positives, weighted by their soft target.
    b_idx, a_idx = torch.nonzero(pos, as_tuple=True)
    weight = score[b_idx, a_idx]
    tbox = gt_boxes[b_idx, safe_owner[b_idx, a_idx]] / stride_of[a_idx, None]
    box_sum = ((1 - ciou(boxes[b_idx, a_idx], tbox, True)) * weight).sum()
    pt = points[a_idx]
    tdist = torch.stack((pt[:, 0] - tbox[:, 0], pt[:, 1] - tbox[:, 1],
                         tbox[:, 2] - pt[:, 0], tbox[:, 3] - pt[:, 1]), -1)
    tdist = tdist.clamp(0, REG_MAX - 1 - 0.01)
    left = tdist.floor()
    wl, wr = left + 1 - tdist, tdist - left
    logits_pos = dist_logits.reshape(batch, 4, REG_MAX, anchors)[b_idx, :, :,
                                                                 a_idx]
    logp = logits_pos.log_softmax(2)  # [positives, side, bin]
    li = left.long().unsqueeze(-1)
    ce = -(logp.gather(2, li).squeeze(-1) * wl +
           logp.gather(2, li + 1).squeeze(-1) * wr)
    dfl_sum = (ce.mean(-1) * weight).sum()

    box = GAIN_BOX * box_sum / norm
    cls = GAIN_CLS * cls_sum / norm
    dfl = GAIN_DFL * dfl_sum / norm
    total = (box + cls + dfl) * batch
    return box, cls, dfl, total, int(pos.sum())


def read_reference(path):
    """Read the case and expected results of det-loss-ref.bin (layout in
    tests/fixtures/make_det_loss_reference.py)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"DETLOSS1":
        raise ValueError(f"{path}: not a DETLOSS1 file")
    off = 8
    batch, nc, img_h, img_w, nlevels = struct.unpack_from("<5i", data, off)
    off += 20
    strides = list(struct.unpack_from("<%di" % nlevels, data, off))
    off += 4 * nlevels
    ngt, anchors, no = struct.unpack_from("<3i", data, off)
    off += 12
    scale, = struct.unpack_from("<f", data, off)
    off += 4
    gts_by_image = [[] for _ in range(batch)]
    for _ in range(ngt):
        image, c, x1, y1, x2, y2 = struct.unpack_from("<2i4f", data, off)
        off += 24
        gts_by_image[image].append((c, (x1, y1, x2, y2)))
    count = batch * no * anchors
    pred = torch.tensor(struct.unpack_from("<%df" % count, data, off),
                        dtype=torch.float32).reshape(batch, no, anchors)
    off += 4 * count
    expected = struct.unpack_from("<4d", data, off)
    off += 32
    positives, = struct.unpack_from("<i", data, off)
    off += 4
    dpred = torch.tensor(struct.unpack_from("<%df" % count, data, off),
                         dtype=torch.float32).reshape(batch, no, anchors)
    return (img_h, img_w, strides, scale, gts_by_image, pred, expected,
            positives, dpred)


def main():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "tests", "fixtures", "det-loss-ref.bin")
    (img_h, img_w, strides, scale, gts_by_image, pred32, expected,
     positives, dpred) = read_reference(path)
    points, stride_of = anchor_grid(img_h, img_w, strides, torch.float64)
    gt_cls, gt_boxes, gt_valid = pad_boxes(gts_by_image, torch.float64,
                                           "cpu")
    pred = pred32.to(torch.float64).requires_grad_(True)
    box, cls, dfl, total, npos = det_loss(pred, gt_cls, gt_boxes, gt_valid,
                                          points, stride_of)
    (total * scale).backward()
    got = [float(v) for v in (box, cls, dfl, total)]
    part_err = max(abs(a - b) / max(abs(b), 1e-12)
                   for a, b in zip(got, expected))
    grad_err = float((pred.grad - dpred.to(torch.float64)).abs().max())
    grad_max = float(dpred.abs().max())
    print(f"det_loss_torch: box {got[0]:.6f} cls {got[1]:.6f} "
          f"dfl {got[2]:.6f} total {got[3]:.6f}, {npos} positives; "
          f"reference {expected[3]:.6f}, {positives} positives; largest "
          f"relative error of a part {part_err:.2e}, largest gradient "
          f"error {grad_err:.2e} (largest gradient {grad_max:.2e})")
    if npos != positives or part_err > 1e-6 or grad_err > 1e-6 * grad_max:
        sys.exit("det_loss_torch: does not match the reference")


if __name__ == "__main__":
    main()
