"""DANN's weight average (adapt.dann.ema): the scored network and the one a continuation starts from is the
warmed-up EMA of the students, against its closed form; without it, the student as before; a killed run with it
resumes bit-identically."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers import StopAt, assert_warmed_up_ema, pixel_classes
from vaeflow import hooks
from vaeflow.config import AugmentConfig
from vaeflow.models.classifier import Classifier
from vaeflow.training.adapt_trainer import fit
from vaeflow.training.algorithms import DANN

AUG = AugmentConfig(translate=0.1, rotate_deg=10, scale=0.1, shear_deg=5, noise=0.1)


def _clf(seed=0) -> Classifier:
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU())
    return Classifier(trunk, 12, 3, 8, domain_hidden=6, standardize=True, feature_bn=True)


def test_the_scored_and_continued_network_is_the_warmed_up_ema_of_the_students():
    """Decay min(ema, 1 − 1/t) at step t: the mean of the students for the first 1/(1 − ema) = 20 steps, then the
    constant EMA; the BatchNorm statistics are the student's; no gradient reaches the average."""
    x, y = pixel_classes()
    algo = DANN(_clf(), ema=0.95, lr=1e-2, weight_decay=0.0, augment=AUG)
    algo.train()
    assert_warmed_up_ema(algo, lambda: algo.update(x[:32], y[:32], x[32:64], 0.5))
    assert torch.equal(algo.teacher.bn.running_mean, algo.clf.bn.running_mean)
    assert algo.predictor() is algo.teacher and algo.continued() is algo.teacher
    assert not torch.equal(algo.teacher.head[0].weight, algo.clf.head[0].weight)  # an average, not a copy


def test_without_ema_the_student_is_scored_and_continued_and_trains_as_before():
    x, y = pixel_classes()
    plain, averaged = (DANN(_clf(), ema=e, lr=1e-2, weight_decay=0.0, augment=AUG) for e in (0.0, 0.9))
    assert plain.teacher is None and plain.predictor() is plain.clf and plain.continued() is plain.clf
    for algo in (plain, averaged):  # the average never feeds back: the students train identically
        torch.manual_seed(7)
        algo.train()
        for _ in range(4):
            algo.update(x[:32], y[:32], x[32:64], 0.5)
    for a, b in zip(plain.clf.parameters(), averaged.clf.parameters()):
        assert torch.equal(a, b)


def _run(tmp_path, stop_at: str | None = None):
    x, y = pixel_classes()
    xu, _ = pixel_classes(seed=1)
    torch.manual_seed(3)
    algo = DANN(_clf(), ema=0.9, lr=1e-2, weight_decay=1e-4, augment=AUG)
    with hooks.installed(StopAt(stop_at) if stop_at else hooks.Hooks()):
        return fit(algo, x, y, xu, epochs=3, steps_per_epoch=5, batch_size=16,
                   ckpt_path=tmp_path / "dann.pt", fingerprint="dann-test")


def test_an_interrupted_run_with_the_average_resumes_bit_identically(tmp_path, monkeypatch):
    ref = _run(tmp_path / "a")
    (tmp_path / "b").mkdir()
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", stop_at="step:dann:1:2")
    torch.manual_seed(12345)
    resumed = _run(tmp_path / "b")
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    for k in ref.state:
        assert torch.equal(ref.state[k], resumed.state[k]), k
