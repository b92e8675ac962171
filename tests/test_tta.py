"""Test-time augmentation (vaeflow/training/tta.py) against a direct computation of the same average."""
from __future__ import annotations

import torch

from vaeflow.config import AugmentConfig
from vaeflow.training.augment import augment
from vaeflow.training.tta import predict_proba

ON = AugmentConfig(translate=0.1, rotate_deg=10, scale=0.1, shear_deg=5, noise=0.1)
OFF = AugmentConfig(translate=0, rotate_deg=0, scale=0, shear_deg=0, noise=0)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 10 * 10, 5))


def test_mean_softmax_over_the_image_and_its_views_matches_a_direct_computation():
    net, x = _net(), torch.rand(37, 1, 12, 12)
    net.train()  # predict_proba must score in eval mode: BatchNorm's running statistics, not the batch's
    got = predict_proba(net, x, ON, views=3, batch_size=16, seed=5)
    assert not net.training
    gen = torch.Generator().manual_seed(5)
    want = []
    with torch.no_grad():
        for i in range(0, 37, 16):
            xb = x[i:i + 16]
            views = [xb] + [augment(xb, ON, gen) for _ in range(3)]
            want.append(torch.stack([torch.softmax(net(v), 1) for v in views]).mean(0))
    torch.testing.assert_close(got, torch.cat(want), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.sum(1), torch.ones(37))
    torch.testing.assert_close(predict_proba(net, x, ON, views=3, batch_size=16, seed=5), got, rtol=0, atol=0)
    assert not torch.allclose(predict_proba(net, x, ON, views=3, batch_size=16, seed=6), got)


def test_no_views_or_no_augmentation_is_the_plain_softmax():
    net, x = _net(), torch.rand(9, 1, 12, 12)
    with torch.no_grad():
        net.eval()
        plain = torch.softmax(net(x), 1)
    torch.testing.assert_close(predict_proba(net, x, ON, views=0), plain)
    torch.testing.assert_close(predict_proba(net, x, OFF, views=8), plain)
