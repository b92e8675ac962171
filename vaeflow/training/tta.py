"""Test-time augmentation (TTA): predict from the mean class probabilities over an image and random views of it.

Why: the consistency methods (the mean teacher, FixMatch, AdaMatch) train a network to agree with itself across
the views of `adapt.augment`. Its prediction on one view still carries that view's error; averaging over views
is the same ensemble at test time, with no label and no training. The views are drawn from a generator seeded
once a call, so a prediction is a fixed function of the weights, the images and the batch size.
"""
from __future__ import annotations

import torch

from vaeflow.config import AugmentConfig
from vaeflow.training.augment import augment, is_identity


@torch.inference_mode()
def predict_proba(net, x: torch.Tensor, aug: AugmentConfig, views: int, batch_size: int = 1024,
                  seed: int = 0) -> torch.Tensor:
    """(N, classes) mean softmax over each image itself and `views` random views of it (0 views: the image's
    own softmax). Float32 whatever the network's dtype."""
    net.eval()
    views = 0 if is_identity(aug) else views
    gen = torch.Generator(device=x.device).manual_seed(seed)
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        p = torch.softmax(net(xb).float(), 1)
        for _ in range(views):
            p += torch.softmax(net(augment(xb, aug, gen)).float(), 1)
        out.append(p / (views + 1))
    return torch.cat(out) if out else torch.empty(0, 0)
