"""DANN's weight average (adapt.dann.ema): the scored network and the one a continuation starts from is the
warmed-up EMA of the students, against its closed form, capped at a fraction of the run (ema_horizon); without it,
the student as before; a killed run with it resumes bit-identically."""
from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import StopAt, assert_warmed_up_ema, pixel_classes, pixel_classifier
from vaeflow import hooks
from vaeflow.config import AugmentConfig
from vaeflow.models.classifier import Classifier
from vaeflow.training.adapt_trainer import fit
from vaeflow.training.algorithms import DANN

AUG = AugmentConfig(translate=0.1, rotate_deg=10, scale=0.1, shear_deg=5, noise=0.1)


def _clf(seed=0) -> Classifier:
    return pixel_classifier(seed, domain_hidden=6, standardize=True)


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


def test_the_horizon_caps_the_average_at_a_fraction_of_the_run(tmp_path):
    """ema_horizon h over a fit() of T steps: decay d_t = min(ema, 1 − 1/t, 1 − 1/(h·T)). Against the closed form of
    that recursion, teacher = Σ_s (1 − d_s) Π_{u>s} d_u · student_s, on the students fit() produced: with T = 10 and
    h = 0.3 the last 3 steps weigh 1 − (2/3)³ = 70 % (without the cap, ema 0.95: the plain mean of all 10)."""
    x, y = pixel_classes()
    algo = DANN(_clf(), ema=0.95, ema_horizon=0.3, lr=1e-2, weight_decay=0.0, augment=AUG)
    students, update = [], algo.update

    def recording(*args, **kw):
        out = update(*args, **kw)
        students.append([p.detach().clone() for p in algo.clf.parameters()])
        return out
    algo.update = recording
    torch.manual_seed(3)
    fit(algo, x, y, x, epochs=2, steps_per_epoch=5, batch_size=16, ckpt_path=tmp_path / "d.pt", fingerprint="h")
    assert algo.total_steps == 10 and len(students) == 10
    decays = [min(0.95, 1 - 1 / t, 1 - 1 / 3.0) for t in range(1, 11)]
    weights = [(1 - d) * math.prod(decays[s + 1:]) for s, d in enumerate(decays)]
    assert abs(sum(weights) - 1) < 1e-9 and abs(sum(weights[-3:]) - (1 - (2 / 3) ** 3)) < 1e-9
    for i, t in enumerate(algo.teacher.parameters()):
        expected = sum(w * s[i] for w, s in zip(weights, students))
        assert torch.allclose(t, expected, atol=1e-6)
        assert not torch.allclose(t, sum(s[i] for s in students) / 10, atol=1e-4)  # not the uncapped mean


def _run(tmp_path, stop_at: str | None = None, horizon: float = 0.0):
    x, y = pixel_classes()
    xu, _ = pixel_classes(seed=1)
    torch.manual_seed(3)
    algo = DANN(_clf(), ema=0.9, ema_horizon=horizon, lr=1e-2, weight_decay=1e-4, augment=AUG)
    with hooks.installed(StopAt(stop_at) if stop_at else hooks.Hooks()):
        return fit(algo, x, y, xu, epochs=3, steps_per_epoch=5, batch_size=16,
                   ckpt_path=tmp_path / "dann.pt", fingerprint="dann-test")


@pytest.mark.parametrize("horizon", [0.0, 0.2])
def test_an_interrupted_run_with_the_average_resumes_bit_identically(tmp_path, monkeypatch, horizon):
    ref = _run(tmp_path / "a", horizon=horizon)
    (tmp_path / "b").mkdir()
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", stop_at="step:dann:1:2", horizon=horizon)
    torch.manual_seed(12345)
    resumed = _run(tmp_path / "b", horizon=horizon)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    for k in ref.state:
        assert torch.equal(ref.state[k], resumed.state[k]), k
