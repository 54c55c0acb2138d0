#!/usr/bin/python3
"""Training images per second of bench/conv5-cls.yaml's network in PyTorch.

The same network as our engine builds (Conv = conv without bias + batch
norm (eps 1e-3, momentum 0.03) + SiLU; Classify = Conv 1x1 to 1280,
global average pool, linear), trained with SGD (Nesterov, momentum 0.9)
on random 28x28 grayscale batches, as bench/train_cpu.c does.

Usage: /usr/bin/python3 bench/train_torch.py [batch] [threads] [seconds]
Prints one line: "pytorch images/s N".
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Conv(nn.Module):
    def __init__(self, c1, c2, k=3, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)

    def forward(self, x):
        return F.silu(self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(Conv(1, 16, 3, 1), Conv(16, 32, 3, 2),
                                  Conv(32, 32, 3, 1), Conv(32, 64, 3, 2),
                                  Conv(64, 64, 3, 1), Conv(64, 1280, 1, 1))
        self.linear = nn.Linear(1280, 10)

    def forward(self, x):
        return self.linear(self.body(x).mean((2, 3)))


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = Net().train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9,
                          nesterov=True)
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(10):
        step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    rate = n * batch / (time.perf_counter() - start)
    print(f"pytorch images/s {rate:.0f}")


if __name__ == "__main__":
    main()
