"""A deeper small-image trunk: French et al.'s (2018) digit network (`mnist-bn-32-64-256` in their code),
without its BatchNorms, which `adapt.layer_bn` adds after every convolution as it does for LeNet.

conv5(32) → maxpool2 → ReLU → conv3(64) → ReLU → conv3(64) → maxpool2 → ReLU → Dropout → flatten
(1,024 features at 28×28, 1,600 at 32×32). With the classifier head at head_hidden=256 it is their
classifier. About twice LeNet's multiply-adds (4.9 M against 2.3 M at 28×28), with two 3×3 layers where
LeNet has one 5×5: the issue's probe reached 97.5–98 % on MNIST→USPS with SHOT on this network.

`width` multiplies every convolution's channels (adapt.width; 2: 64-128-128, ~3× the multiply-adds): a
question of capacity, asked of a supervised bound before any adaptation method is run on it.

Any channel count and any square-or-not image of at least 16×16; nothing in it knows the data. There is
no VAE of this architecture, so it always starts from a random initialisation (adapt.warm_start=false).
"""
from __future__ import annotations

import torch
from torch import nn

from vaeflow.models.lenet import channels_last

C1, C2 = 32, 64


def convnet_sizes(h: int, w: int) -> tuple[int, int]:
    """Spatial size of the last feature map, (height, width)."""
    def side(s: int) -> int:
        return ((s - 4) // 2 - 4) // 2
    if min(h, w) < 16:
        raise ValueError(f"adapt.backbone=convnet needs images of at least 16×16, got {h}×{w}; set data.image_size")
    return side(h), side(w)


class ConvNetTrunk(nn.Module):
    channels_last = True  # as LeNetTrunk.channels_last (oneDNN's NHWC kernels are the fast ones on CPU)

    def __init__(self, in_channels: int, h: int, w: int | None = None, dropout: float = 0.5, width: int = 1):
        super().__init__()
        fh, fw = convnet_sizes(h, w or h)
        c1, c2 = C1 * width, C2 * width
        self.conv1 = nn.Conv2d(in_channels, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 3)
        self.conv3 = nn.Conv2d(c2, c2, 3)
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.feature_dim = c2 * fh * fw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.device.type == "cpu":
            x = channels_last(x)
        h = self.act(self.pool(self.conv1(x)))
        h = self.act(self.conv2(h))
        h = self.act(self.pool(self.conv3(h)))
        return self.drop(h.flatten(1))
