#!/usr/bin/python3
"""Training images per second in PyTorch of the networks our engine builds.

Two networks, built from the same modules as Ultralytics (Conv = conv
without bias + batch norm (eps 1e-3, momentum 0.03) + SiLU; C2f and its
Bottleneck; Classify = Conv 1x1 to 1280, global average pool, linear):

- conv5-cls: bench/conv5-cls.yaml, 28x28 grayscale, 10 classes;
- yolov8n-cls: backend/engine/models/yolov8-cls.yaml at scale n (depth
  0.33, width 0.25), 3 channels, 1000 classes;
- yolov8n: backend/engine/models/yolov8.yaml at scale n, 3 channels, 10
  classes, with the Detect head (3,012,782 parameters).

Each step is zero_grad, forward, the loss, backward and SGD (Nesterov,
momentum 0.9) on one random batch that stays on the device, as
bench/train_cpu.c does in our engine. The classifiers' loss is
cross-entropy against random labels. The detector's loss is the YOLOv8
loss of bench/det_loss_torch.py against 4 synthetic boxes per image, drawn
once by the rule of make_boxes in bench/train_cpu.c, with the gradient
scaled by 1 / batch as there. On CUDA, TF32 is turned off for
convolutions and matrix products, because our engine computes in float32
(PyTorch allows TF32 in cuDNN convolutions by default), and the clock
stops after torch.cuda.synchronize().

Usage: /usr/bin/python3 bench/train_torch.py [batch] [threads] [seconds]
           [--device cpu|cuda] [--model conv5-cls|yolov8n-cls|yolov8n]
           [--imgsz N]
Prints one line, "pytorch images/s N", and on standard error the
parameter count, on the CPU the steps with their wall and CPU time, and
for the detector the loss of the last step.
"""
import argparse
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import det_loss_torch


class Conv(nn.Module):
    def __init__(self, c1, c2, k=3, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)

    def forward(self, x):
        return F.silu(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 Convs at c channels, with the input added when shortcut."""

    def __init__(self, c, shortcut):
        super().__init__()
        self.cv1 = Conv(c, c, 3, 1)
        self.cv2 = Conv(c, c, 3, 1)
        self.add = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """C2f of c2 channels: cv1 makes 2 * (c2 // 2) channels, and their
    second half feeds n Bottlenecks in a chain. cv2 mixes cv1's output and
    every Bottleneck's output."""

    def __init__(self, c1, c2, n, shortcut):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut)
                               for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Classify(nn.Module):
    def __init__(self, c1, classes):
        super().__init__()
        self.conv = Conv(c1, 1280, 1, 1)
        self.linear = nn.Linear(1280, classes)

    def forward(self, x):
        return self.linear(self.conv(x).mean((2, 3)))


def conv5_cls():
    """bench/conv5-cls.yaml: 1 input channel, 10 classes."""
    body = nn.Sequential(Conv(1, 16, 3, 1), Conv(16, 32, 3, 2),
                         Conv(32, 32, 3, 1), Conv(32, 64, 3, 2),
                         Conv(64, 64, 3, 1))
    return nn.Sequential(body, Classify(64, 10)), 1, 10


def yolov8n_cls():
    """yolov8-cls.yaml at scale n: channels 64, 128, 256, 512, 1024 times
    0.25, and C2f repeats 3, 6, 6, 3 times 0.33, rounded (1, 2, 2, 1)."""
    layers = [
        Conv(3, 16, 3, 2),
        Conv(16, 32, 3, 2),
        C2f(32, 32, 1, True),
        Conv(32, 64, 3, 2),
        C2f(64, 64, 2, True),
        Conv(64, 128, 3, 2),
        C2f(128, 128, 2, True),
        Conv(128, 256, 3, 2),
        C2f(256, 256, 1, True),
        Classify(256, 1000),
    ]
    return nn.Sequential(*layers), 3, 1000


class SPPF(nn.Module):
    """Conv 1x1 to c1 / 2, three 5x5 max pools in a row, Conv 1x1 over the
    four maps."""

    def __init__(self, c1, c2):
        super().__init__()
        self.cv1 = Conv(c1, c1 // 2, 1, 1)
        self.cv2 = Conv(c1 // 2 * 4, c2, 1, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Detect(nn.Module):
    """Per level a box branch (Conv 3x3, Conv 3x3, conv 1x1 to 64) and a
    class branch (the same, to nc); the maps are flattened and joined into
    [batch, 64 + nc, anchors], the layout our engine's head writes. The
    last biases start as our engine's do: 1.0 for the box distributions
    and log(5 / nc / (640 / stride)^2) for the classes."""

    def __init__(self, nc, ch):
        super().__init__()
        c2 = max(16, ch[0] // 4, 64)
        c3 = max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(c, c2, 3), Conv(c2, c2, 3),
                          nn.Conv2d(c2, 64, 1)) for c in ch)
        self.cv3 = nn.ModuleList(
            nn.Sequential(Conv(c, c3, 3), Conv(c3, c3, 3),
                          nn.Conv2d(c3, nc, 1)) for c in ch)
        with torch.no_grad():
            for box, cls, stride in zip(self.cv2, self.cv3, (8, 16, 32)):
                box[-1].bias.fill_(1.0)
                cls[-1].bias.fill_(math.log(5 / nc / (640 / stride) ** 2))

    def forward(self, feats):
        out = [torch.cat((b(x), c(x)), 1).flatten(2)
               for x, b, c in zip(feats, self.cv2, self.cv3)]
        return torch.cat(out, 2)


class YOLOv8nDetect(nn.Module):
    """backend/engine/models/yolov8.yaml at scale n."""

    def __init__(self, nc):
        super().__init__()
        self.b = nn.ModuleList([
            Conv(3, 16, 3, 2), Conv(16, 32, 3, 2), C2f(32, 32, 1, True),
            Conv(32, 64, 3, 2), C2f(64, 64, 2, True), Conv(64, 128, 3, 2),
            C2f(128, 128, 2, True), Conv(128, 256, 3, 2),
            C2f(256, 256, 1, True), SPPF(256, 256)])
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.h12 = C2f(384, 128, 1, False)
        self.h15 = C2f(192, 64, 1, False)
        self.h16 = Conv(64, 64, 3, 2)
        self.h18 = C2f(192, 128, 1, False)
        self.h19 = Conv(128, 128, 3, 2)
        self.h21 = C2f(384, 256, 1, False)
        self.detect = Detect(nc, (64, 128, 256))

    def forward(self, x):
        keep = {}
        for i, m in enumerate(self.b):
            x = m(x)
            keep[i] = x
        p4 = self.h12(torch.cat((self.up(keep[9]), keep[6]), 1))
        p3 = self.h15(torch.cat((self.up(p4), keep[4]), 1))
        p4 = self.h18(torch.cat((self.h16(p3), p4), 1))
        p5 = self.h21(torch.cat((self.h19(p4), keep[9]), 1))
        return self.detect([p3, p4, p5])


def yolov8n_det():
    """The detector at 10 classes, as on the Fashion-MNIST scenes."""
    return YOLOv8nDetect(10), 3, 10


def make_boxes(batch, imgsz, nc, seed):
    """Draw four boxes per image for an imgsz x imgsz batch, as (class,
    (x1, y1, x2, y2)) lists by image. Box k has a width and a height of imgsz *
    (0.08, 0.16, 0.32, 0.64)[k] * (0.7 to 1.3, uniform), a uniform position
    that keeps it inside the image and a uniform class."""
    g = torch.Generator().manual_seed(seed)
    boxes = []
    for _ in range(batch):
        image = []
        for base in (0.08, 0.16, 0.32, 0.64):
            u = torch.rand(4, generator=g, dtype=torch.float64).tolist()
            w = imgsz * base * (0.7 + 0.6 * u[0])
            h = imgsz * base * (0.7 + 0.6 * u[1])
            x1 = (imgsz - w) * u[2]
            y1 = (imgsz - h) * u[3]
            cls = int(torch.randint(nc, (1,), generator=g))
            image.append((cls, (x1, y1, x1 + w, y1 + h)))
        boxes.append(image)
    return boxes


MODELS = {"conv5-cls": conv5_cls, "yolov8n-cls": yolov8n_cls,
          "yolov8n": yolov8n_det}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batch", nargs="?", type=int, default=64)
    parser.add_argument("threads", nargs="?", type=int, default=2,
                        help="CPU threads (torch.set_num_threads)")
    parser.add_argument("seconds", nargs="?", type=float, default=10)
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda (default: cpu)")
    parser.add_argument("--model", default="conv5-cls",
                        choices=sorted(MODELS))
    parser.add_argument("--imgsz", type=int, default=28,
                        help="image height and width in pixels")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("train_torch.py: --device cuda, but "
                     "torch.cuda.is_available() is False")
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    net, channels, classes = MODELS[args.model]()
    net = net.to(device).train()
    params = sum(p.numel() for p in net.parameters())
    print(f"train_torch.py: {args.model} at {args.imgsz} on {device}: "
          f"{params} parameters", file=sys.stderr)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9,
                          nesterov=True)
    x = torch.rand(args.batch, channels, args.imgsz, args.imgsz,
                   device=device)
    y = torch.randint(0, classes, (args.batch,), device=device)
    detect = isinstance(net, YOLOv8nDetect)
    if detect:
        points, stride_of = det_loss_torch.anchor_grid(
            args.imgsz, args.imgsz, (8, 16, 32), device=device)
        gt_cls, gt_boxes, gt_valid = det_loss_torch.pad_boxes(
            make_boxes(args.batch, args.imgsz, classes, 1), torch.float32,
            device)
    last = {}

    def step():
        opt.zero_grad()
        if detect:
            box, cls, dfl, total, positives = det_loss_torch.det_loss(
                net(x), gt_cls, gt_boxes, gt_valid, points, stride_of)
            (total / args.batch).backward()
            last.update(box=float(box), cls=float(cls), dfl=float(dfl),
                        positives=positives)
        else:
            F.cross_entropy(net(x), y).backward()
        opt.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    # Untimed steps as in bench/train_cpu.c: 3 for the detector, whose
    # steps are long, 10 for the classifiers.
    for _ in range(3 if detect else 10):
        step()
    sync()
    n, start = 0, time.perf_counter()
    cpu_start = time.process_time()
    while time.perf_counter() - start < args.seconds:
        step()
        n += 1
    sync()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    rate = n * args.batch / elapsed
    if device.type == "cpu":
        print(f"train_torch.py: {n} steps in {elapsed:.1f} s, {cpu:.1f} "
              f"CPU s: {n * args.batch / max(cpu, 1e-9):.2f} images per CPU "
              "second", file=sys.stderr)
    if detect:
        print(f"train_torch.py: last step: box {last['box']:.4f} "
              f"cls {last['cls']:.4f} dfl {last['dfl']:.4f}, "
              f"{last['positives']} positives, {4 * args.batch} boxes",
              file=sys.stderr)
    print(f"pytorch images/s {rate:.1f}")


if __name__ == "__main__":
    main()
