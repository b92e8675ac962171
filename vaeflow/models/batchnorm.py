"""BatchNorm in every layer, and the statistics of the domain being scored.

Two ideas from the adaptation literature, used by every adapt variant alike:
  - `add_layer_bn`: a BatchNorm after every convolution (and hidden linear layer) of a trunk, as French
    et al.'s digit networks have. Callers pass source and target batches through the network separately,
    so in training each domain is normalised by its own batch statistics (domain-specific normalisation).
  - `reestimate_bn` (AdaBN, Li et al. 2017): before scoring on the target, every BatchNorm's running
    statistics are recomputed on the unlabelled target training images, so the network is normalised as
    the domain it is tested on. No label is read.
  - `scratch_statistics`: forward passes whose batch statistics must not enter the running ones (AdaMatch's
    source-only pass).
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def add_layer_bn(module: nn.Module) -> nn.Module:
    """`module` with each Conv2d / Linear child replaced by Sequential(layer, BatchNorm), recursively.
    The layer keeps its weights (a warm start survives); the BatchNorm starts as the identity's affine."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            setattr(module, name, nn.Sequential(child, nn.BatchNorm2d(child.out_channels)))
        elif isinstance(child, nn.Linear):
            setattr(module, name, nn.Sequential(child, nn.BatchNorm1d(child.out_features)))
        else:
            add_layer_bn(child)
    return module


def has_bn(net: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in net.modules())


@torch.no_grad()
def reestimate_bn(net: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> None:
    """Set every BatchNorm's running mean and (unbiased) variance to those of its inputs over all of `x`.

    One pass, in training mode for the BatchNorms only (dropout stays off), so each layer normalises with
    batch statistics as in training; hooks add up exact per-channel sums in float64, so the result is the
    statistics over the whole set, not a moving average of batches. Chunks are near-equal in size (never
    a batch of one, which BatchNorm cannot normalise)."""
    bns = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    if not bns or len(x) < 2:
        return
    sums: dict[nn.Module, list] = {m: [0, 0.0, 0.0] for m in bns}

    def hook(m: nn.Module, inputs: tuple, _out) -> None:
        h = inputs[0].double()
        dims = [0, *range(2, h.dim())]
        s = sums[m]
        s[0] += h.numel() // h.shape[1]
        s[1] = s[1] + h.sum(dims)
        s[2] = s[2] + (h * h).sum(dims)

    handles = [m.register_forward_hook(hook) for m in bns]
    was_training = net.training
    net.eval()
    for m in bns:
        m.train()
    try:
        for chunk in torch.tensor_split(x, math.ceil(len(x) / batch_size)):
            net(chunk)
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    for m in bns:
        n, s1, s2 = sums[m]
        mean = s1 / n
        var = (s2 - n * mean * mean) / max(n - 1, 1)
        m.running_mean.copy_(mean.to(m.running_mean.dtype))
        m.running_var.copy_(var.clamp_min(0).to(m.running_var.dtype))


@torch.no_grad()
def preserve_function(net: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> None:
    """Make every BatchNorm in `net` start as the identity on `x`: γ = the standard deviation and β = the
    mean of its inputs over `x` (running statistics the same), set layer by layer so each BatchNorm sees its
    inputs as the network computed them before any BatchNorm was added (Net2Net's function-preserving
    insertion). A warm-started trunk then keeps what pretraining learned; fresh BatchNorms (γ=1, β=0) would
    re-centre every pre-activation and change which ReLUs fire."""
    bns = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    for m in bns:
        reestimate_bn(net, x, batch_size)  # upstream ones are identities by now: `m` sees original inputs
        m.weight.copy_(torch.sqrt(m.running_var + m.eps))
        m.bias.copy_(m.running_mean)


@contextmanager
def scratch_statistics(net: nn.Module):
    """Forward passes inside update copies of the BatchNorm running statistics, which are dropped after: the
    module's own statistics are left as they were. (Swapped, not copied back: a copy back would modify, in
    place, tensors the pass saved for its backward.)"""
    saved = []
    for m in net.modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats:
            saved.append((m, m.running_mean, m.running_var, m.num_batches_tracked))
            m.running_mean, m.running_var = m.running_mean.clone(), m.running_var.clone()
            m.num_batches_tracked = m.num_batches_tracked.clone()
    try:
        yield
    finally:
        for m, mean, var, n in saved:
            m.running_mean, m.running_var, m.num_batches_tracked = mean, var, n
