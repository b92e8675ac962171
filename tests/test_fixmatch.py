"""FixMatch: cutout's geometry, the unlabelled loss against a hand computation, and its threshold."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaeflow.config import AugmentConfig
from vaeflow.models.classifier import Classifier
from vaeflow.training.augment import NO_AUGMENT, cutout
from vaeflow.training.fixmatch import FixMatch, FlexMatch
from tests.helpers import StopAt


def test_cutout_blanks_one_square_of_the_stated_side_with_the_image_mean():
    x = torch.rand(2000, 3, 16, 16)
    out = cutout(x, 0.5, torch.Generator().manual_seed(0))
    changed = (out != x).any(1)  # (n, h, w)
    rows, cols = changed.any(2).sum(1), changed.any(1).sum(1)
    assert rows.max() <= 8 and cols.max() <= 8  # a side of 0.5·16 px at most (clipped at the border)
    inside = changed.float().mean().item()
    assert 0.12 < inside < 0.25  # ≈ 0.25 when the square is inside, less when clipped at a border
    m = x.mean(dim=(1, 2, 3))
    i = int(changed.flatten(1).any(1).nonzero()[0])
    assert torch.allclose(out[i][:, changed[i]], m[i].expand(3, int(changed[i].sum())))
    assert torch.equal(cutout(x, 0.0), x)


def _algo(threshold, **kw):
    torch.manual_seed(0)
    clf = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU()), 8, 3, 8)
    return FixMatch(clf, threshold=threshold, strong=NO_AUGMENT, cutout=0.0, ema=0.0, lr=0.0, weight_decay=0.0,
                    augment=NO_AUGMENT, **kw)


def test_the_unlabelled_loss_is_the_cross_entropy_of_confident_pseudo_labels():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 4, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
    xu = torch.rand(12, 1, 4, 4, generator=g)
    algo = _algo(threshold=0.5)
    algo.train()
    with torch.no_grad():  # with identity views and lr 0, every view's logits are these
        logits = algo.clf(torch.cat([x, xu, xu]))[8:20]
    p = torch.softmax(logits, 1)
    algo.threshold = float(p.max(1).values.median())  # half the batch is confident, whatever the draws
    mask = p.max(1).values >= algo.threshold
    assert 0 < mask.sum() < 12  # the threshold splits the batch
    expected = (F.cross_entropy(logits, p.argmax(1), reduction="none") * mask).mean()
    out = algo.update(x, y, xu, 0.0)
    assert out["unlabelled_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["confident"].item() == pytest.approx(mask.float().mean().item())
    assert _algo(threshold=0.999).update(x, y, xu, 0.0)["unlabelled_loss"].item() == 0.0


def _learn(cls, tmp_path, stop_at=None):
    """`cls` trained on 9 labels of a 3-class toy problem and its 300 images unlabelled (a killed run at `stop_at`)."""
    from vaeflow import hooks
    from vaeflow.training.adapt_trainer import fit

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=g)
    x = torch.rand(300, 1, 4, 4, generator=g) * 0.3
    x[torch.arange(300), 0, y, y] += 1.0
    torch.manual_seed(0)
    clf = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU()), 12, 3, 8, feature_bn=True)
    algo = cls(clf, threshold=0.8, mu=2, strong=AugmentConfig(translate=0, rotate_deg=0, scale=0, shear_deg=0,
               noise=0.2), cutout=0.25, ema=0.9, lr=1e-2, weight_decay=0.0)
    with hooks.installed(StopAt(stop_at) if stop_at else hooks.Hooks()):
        res = fit(algo, x[:9], y[:9], x, epochs=4, steps_per_epoch=30, batch_size=8, ckpt_path=tmp_path / "f.pt",
                  fingerprint=cls.__name__)
    return algo, res, x, y


def test_it_learns_from_few_labels(tmp_path):
    algo, _, x, y = _learn(FixMatch, tmp_path)
    assert (algo.predict(x) == y).float().mean() > 0.9
    assert algo.predictor() is algo.teacher


def _flex(n_pool, threshold=0.9):
    torch.manual_seed(0)
    clf = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU()), 8, 3, 8)
    algo = FlexMatch(clf, threshold=threshold, strong=NO_AUGMENT, cutout=0.0, ema=0.0, lr=0.0, weight_decay=0.0,
                     augment=NO_AUGMENT)
    algo.setup(None, None, torch.zeros(n_pool, 1, 4, 4))
    return algo


def test_flexmatch_thresholds_match_a_hand_computation():
    algo = _flex(8)
    algo.selected.copy_(torch.tensor([-1, -1, 0, 0, 1, 2, 2, 2]))
    # σ = (2, 1, 3), 2 images never confident: β = σ / max(3, 2) = (2/3, 1/3, 1); T = β / (2 − β) · τ
    expect = torch.tensor([0.5, 0.2, 1.0]) * 0.9
    assert torch.allclose(algo.class_thresholds(0.9), expect)
    algo.selected.copy_(torch.tensor([-1, -1, -1, -1, -1, 0, 1, 1]))  # warm-up: 5 unused dominate
    assert torch.allclose(algo.class_thresholds(0.9), torch.tensor([0.2 / 1.8, 0.4 / 1.6, 0.0]) * 0.9)


def test_flexmatch_starts_with_every_pseudo_label_and_remembers_confident_ones():
    algo = _flex(6)
    conf = torch.tensor([0.95, 0.5, 0.2, 0.99])
    pseudo = torch.tensor([2, 1, 0, 2])
    idx = torch.tensor([4, 1, 0, 3])
    mask = algo.pseudo_label_mask(conf, pseudo, idx)
    assert torch.equal(mask, torch.ones(4))  # nothing selected yet: every threshold is 0
    assert algo.selected.tolist() == [-1, -1, -1, 2, 2, -1]  # only confidence ≥ τ enters the pool
    # now class 2 has σ = 2 of a pool with 4 unused: β = 1/2, T(2) = τ/3; classes 0, 1 still at 0
    mask = algo.pseudo_label_mask(torch.tensor([0.25, 0.35, 0.1]), torch.tensor([2, 2, 0]), torch.tensor([0, 1, 2]))
    assert mask.tolist() == [0.0, 1.0, 1.0]


def test_flexmatch_learns_from_few_labels_and_a_killed_run_resumes_bit_identically(tmp_path):
    algo, ref, x, y = _learn(FlexMatch, tmp_path / "a")
    assert (algo.predict(x) == y).float().mean() > 0.9
    assert (algo.selected >= 0).float().mean() > 0.5  # the pool's thresholds follow most of it by the end
    (tmp_path / "b").mkdir()
    with pytest.raises(KeyboardInterrupt):
        _learn(FlexMatch, tmp_path / "b", stop_at="step:f:2:7")
    torch.manual_seed(999)
    resumed, res, _, _ = _learn(FlexMatch, tmp_path / "b")
    assert torch.equal(resumed.selected, algo.selected)
    for k in ref.state:
        assert torch.equal(ref.state[k], res.state[k]), k
