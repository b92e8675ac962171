"""joint_oracle (JointERM): one step is the sum of two cross-entropies, each domain's batch through BatchNorm on
its own, the target batch labelled by index; it refuses to run without the target labels."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaeflow.config import AdaptConfig
from vaeflow.models.classifier import Classifier
from vaeflow.training.algorithms import JointERM


def _clf():
    torch.manual_seed(0)
    return Classifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU()), 8, 3, 8,
                      feature_bn=True)


def test_one_step_is_two_cross_entropies_with_each_domain_normalised_by_its_own_batch():
    g = torch.Generator().manual_seed(1)
    xs, ys = torch.rand(6, 1, 4, 4, generator=g), torch.randint(3, (6,), generator=g)
    x_unl, y_unl = torch.rand(20, 1, 4, 4, generator=g) + 2.0, torch.randint(3, (20,), generator=g)  # a shifted target
    idx = torch.tensor([3, 7, 7, 11, 19])
    algo = JointERM(_clf(), y_unl=y_unl, lr=0.01, weight_decay=0.0)
    ref = copy.deepcopy(algo.clf)
    algo.train(), ref.train()
    out = algo.update(xs, ys, x_unl[idx], 0.0, unl_idx=idx)

    # by hand: two separate forward passes (so the target batch's BatchNorm statistics are its own), labels by index
    src = F.cross_entropy(ref(xs), ys)
    tgt = F.cross_entropy(ref(x_unl[idx]), y_unl[idx])
    mixed = F.cross_entropy(copy.deepcopy(ref)(torch.cat([xs, x_unl[idx]])), torch.cat([ys, y_unl[idx]]))
    assert out["cls_loss"] == pytest.approx(src.item(), abs=1e-6)
    assert out["target_cls_loss"] == pytest.approx(tgt.item(), abs=1e-6)
    assert abs(mixed.item() - (src.item() + tgt.item()) / 2) > 1e-3  # one mixed batch would be another loss
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    (src + tgt).backward()
    opt.step()
    for (k, a), b in zip(algo.clf.state_dict().items(), ref.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_it_needs_the_target_labels():
    with pytest.raises(ValueError, match="every target training label"):
        JointERM.from_config(_clf(), AdaptConfig())
