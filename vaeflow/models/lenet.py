"""A LeNet-style trunk (the digits backbone of the adaptation literature) and a decoder that mirrors it.

The trunk is conv5(20) → maxpool2 → ReLU → conv5(50) → Dropout2d → maxpool2 → ReLU → flatten, as in
Transfer-Learning-Library's `lenet` (800 features at 28×28). With the classifier head of
vaeflow/models/classifier.py at head_hidden=500 it is that library's LeNet classifier.

Used twice with the same parameter names, so one warm-starts the other by state dict:
  - as a VAE encoder (vae.arch=lenet, dropout 0: the ELBO needs a deterministic encoder), with
    `LeNetDecoder` mirroring it;
  - as the classifier trunk (adapt.backbone=lenet, dropout as in LeNet), warm-started from that VAE.
"""
from __future__ import annotations

from torch import nn

C1, C2, K = 20, 50, 5


def lenet_sizes(size: int) -> list[int]:
    """Spatial sizes: input, after conv1, after pool1, after conv2, after pool2."""
    s1 = size - K + 1
    s2 = s1 // 2
    s3 = s2 - K + 1
    s4 = s3 // 2
    if s4 < 1:
        raise ValueError(f"LeNet needs images of at least 16×16, got {size}×{size}; set data.image_size")
    return [size, s1, s2, s3, s4]


class LeNetTrunk(nn.Module):
    def __init__(self, in_channels: int, size: int, dropout: float = 0.5, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        s = lenet_sizes(size)
        self.conv1 = nn.Conv2d(in_channels, C1, K)
        self.conv2 = nn.Conv2d(C1, C2, K)
        self.drop = nn.Dropout2d(dropout)
        self.pool = nn.MaxPool2d(2)
        self.act = act()
        self.feature_dim = C2 * s[4] * s[4]

    def forward(self, x):
        h = self.act(self.pool(self.conv1(x)))
        h = self.act(self.pool(self.drop(self.conv2(h))))
        return h.flatten(1)


class LeNetDecoder(nn.Module):
    """z → (B, out_channels·H·W), mirroring LeNetTrunk: unpool by stride-2 transposed convs (output_padding
    restores the row a floor-halving dropped), un-conv by 5×5 transposed convs."""

    def __init__(self, latent_dim: int, out_channels: int, size: int, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        s = lenet_sizes(size)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, C2 * s[4] * s[4]), act(), nn.Unflatten(1, (C2, s[4], s[4])),
            nn.ConvTranspose2d(C2, C2, 2, stride=2, output_padding=s[3] - 2 * s[4]), act(),
            nn.ConvTranspose2d(C2, C1, K), act(),
            nn.ConvTranspose2d(C1, C1, 2, stride=2, output_padding=s[1] - 2 * s[2]), act(),
            nn.ConvTranspose2d(C1, out_channels, K), nn.Flatten())

    def forward(self, z):
        return self.net(z)
