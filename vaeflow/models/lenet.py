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

import torch
from torch import nn

C1, C2, K = 20, 50, 5


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """`x` (N, C, H, W) in channels-last (NHWC) memory, same values and shape.

    Why: on a CPU, oneDNN's convolutions, transposed convolutions, max-pooling and their backward passes
    are 2-20x faster on NHWC than on NCHW tensors at LeNet's sizes (max_pool2d's NCHW kernel and the
    NCHW weight gradient of a 1-channel conv are the worst; bench/bench_classifier_step.py), and
    BatchNorm, ReLU, Dropout2d keep the format, so converting once at the input carries it through the
    trunk. With C = 1 NCHW and NHWC are the same bytes, but torch reads those strides as NCHW (ambiguous
    layout), so the strides are set explicitly by a view. Results differ from NCHW only by the order of
    float sums inside the kernels (tests/test_speed_equivalence.py bounds it)."""
    if x.dim() != 4:
        return x
    if x.shape[1] == 1:
        n, _, h, w = x.shape
        return x.reshape(n, h, w, 1).permute(0, 3, 1, 2)  # a view: strides (HW, 1, W, 1)
    return x.contiguous(memory_format=torch.channels_last)


def lenet_sizes(size: int) -> list[int]:
    """Spatial sizes along one axis: input, after conv1, after pool1, after conv2, after pool2."""
    s1 = size - K + 1
    s2 = s1 // 2
    s3 = s2 - K + 1
    s4 = s3 // 2
    if s4 < 1:
        raise ValueError(f"LeNet needs images of at least 16×16, got a side of {size}; set data.image_size")
    return [size, s1, s2, s3, s4]


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) from a side (square images) or an (H, W) pair: LeNet works on any image of at least 16×16."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class _FewChannelConvTranspose(torch.autograd.Function):
    """F.conv_transpose2d(x, weight, bias) at stride 1, no padding, for few output channels (the decoder's
    last layer: 20 → 1 or 2 channels, 5×5).

    Why: oneDNN's transposed-conv forward with 1-2 output channels barely vectorises (~2 GFLOP/s, ~35 ms of a
    ~60 ms batch-128 VAE step here). The same sum as one GEMM, (C_out·k·k × C_in) @ (C_in × N·H·W), whose
    rows are whole tap planes, then k² shifted plane adds (col2im), is ~4x faster. The backward is torch's
    own (aten.convolution_backward, transposed), which is fast already. Differs from the oneDNN forward
    only in summation order (tests/test_speed_equivalence.py)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        n, cin, h, w = x.shape
        _, cout, k, _ = weight.shape
        cols = (weight.reshape(cin, cout * k * k).t() @ x.permute(0, 2, 3, 1).reshape(n * h * w, cin).t())
        cols = cols.view(cout, k, k, n, h, w)  # one contiguous (n, h, w) plane per output channel and tap
        out = x.new_zeros(n, cout, h + k - 1, w + k - 1)
        for i in range(k):
            for j in range(k):
                out[:, :, i:i + h, j:j + w] += cols[:, i, j].transpose(0, 1)
        out += bias.view(1, -1, 1, 1)
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        gx, gw, gb = torch.ops.aten.convolution_backward(
            g, x, weight, [weight.shape[1]], [1, 1], [0, 0], [1, 1], True, [0, 0], 1, list(ctx.needs_input_grad))
        return gx, gw, gb


class LeNetTrunk(nn.Module):
    # Class-wide switch (tests and bench/bench_classifier_step.py set it False for the NCHW reference path).
    channels_last = True

    def __init__(self, in_channels: int, size: int | tuple[int, int], dropout: float = 0.5,
                 act: type[nn.Module] = nn.ReLU):
        super().__init__()
        h, w = (lenet_sizes(n) for n in _hw(size))
        self.conv1 = nn.Conv2d(in_channels, C1, K)
        self.conv2 = nn.Conv2d(C1, C2, K)
        self.drop = nn.Dropout2d(dropout)
        self.pool = nn.MaxPool2d(2)
        self.act = act()
        self.feature_dim = C2 * h[4] * w[4]

    def forward(self, x):
        if self.channels_last and x.device.type == "cpu":  # measured on CPU only; cuDNN keeps its own choice
            x = channels_last(x)
        h = self.act(self.pool(self.conv1(x)))
        h = self.act(self.pool(self.drop(self.conv2(h))))
        return h.flatten(1)  # from NHWC memory this copies into (C, H, W) order: the head sees NCHW features


class LeNetDecoder(nn.Module):
    """z → (B, out_channels·H·W), mirroring LeNetTrunk: unpool by stride-2 transposed convs (output_padding
    restores the row a floor-halving dropped), un-conv by 5×5 transposed convs."""

    def __init__(self, latent_dim: int, out_channels: int, size: int | tuple[int, int],
                 act: type[nn.Module] = nn.ReLU):
        super().__init__()
        h, w = (lenet_sizes(n) for n in _hw(size))
        self.net = nn.Sequential(
            nn.Linear(latent_dim, C2 * h[4] * w[4]), act(), nn.Unflatten(1, (C2, h[4], w[4])),
            nn.ConvTranspose2d(C2, C2, 2, stride=2, output_padding=(h[3] - 2 * h[4], w[3] - 2 * w[4])), act(),
            nn.ConvTranspose2d(C2, C1, K), act(),
            nn.ConvTranspose2d(C1, C1, 2, stride=2, output_padding=(h[1] - 2 * h[2], w[1] - 2 * w[2])), act(),
            nn.ConvTranspose2d(C1, out_channels, K), nn.Flatten())

    channels_last = True  # as LeNetTrunk.channels_last

    def forward(self, z):
        # Layer by layer, not self.net(z), to switch to NHWC after the Unflatten (index 2) without adding a
        # module: the Sequential's indices are the state-dict keys checkpoints hold.
        last = len(self.net) - 2  # the 20 → out_channels transposed conv
        for i, layer in enumerate(self.net):
            if i == last and self.channels_last and layer.out_channels <= 4 and z.device.type == "cpu":
                z = _FewChannelConvTranspose.apply(z, layer.weight, layer.bias)
            else:
                z = layer(z)
            if i == 2 and self.channels_last and z.device.type == "cpu":
                z = channels_last(z)
        return z
