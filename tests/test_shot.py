"""SHOT: its information-maximisation loss against a hand computation, its centroid pseudo-labels against a
direct computation (scipy's cosine distance), the frozen head, and a killed run that resumes bit-identically."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from tests.helpers import StopAt, pixel_classes, pixel_classifier
from vaeflow import hooks
from vaeflow.models.classifier import Classifier
from vaeflow.training.adapt_trainer import fit
from vaeflow.training.shot import SHOT, centroid_pseudo_labels, information_maximisation


def test_information_maximisation_matches_a_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [-3.0, 1.0, 0.0], [0.0, 4.0, 1.0]])
    p = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(1, keepdims=True)
    per_image = -(p * np.log(p + 1e-5)).sum(1).mean()
    m = p.mean(0)
    expected = per_image - (-(m * np.log(m + 1e-5)).sum())
    assert information_maximisation(logits).item() == pytest.approx(expected, rel=1e-5)
    # confident and diverse predictions score lower than uniform ones
    sure = torch.eye(3) * 20
    assert information_maximisation(sure) < information_maximisation(torch.zeros(3, 3))


def _direct_pseudo_labels(f: np.ndarray, p: np.ndarray) -> np.ndarray:
    f = np.hstack([f, np.ones((len(f), 1))])
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    present = np.bincount(p.argmax(1), minlength=p.shape[1]) > 0
    w = p
    for _ in range(2):
        c = w.T @ f / (w.sum(0)[:, None] + 1e-8)
        d = cdist(f, c[present], "cosine")
        labels = np.flatnonzero(present)[d.argmin(1)]
        w = np.eye(p.shape[1])[labels]
    return labels


def test_centroid_pseudo_labels_match_a_direct_computation_on_a_toy_set():
    rng = np.random.default_rng(0)
    centres = np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0], [-4.0, 0, 0]])
    y = rng.integers(0, 3, 120)  # class 3 is never predicted: it gets no centroid
    f = centres[y] + rng.normal(size=(120, 3))
    logits = np.hstack([f @ centres[:3].T / 4 + rng.normal(scale=2, size=(120, 3)), np.full((120, 1), -50.0)])
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    got = centroid_pseudo_labels(torch.tensor(f), torch.tensor(p)).numpy()
    assert np.array_equal(got, _direct_pseudo_labels(f, p))
    assert (got == y).mean() > (p.argmax(1) == y).mean()  # the clustering repairs the noisy predictions
    assert 3 not in got


def _clf(seed=0) -> Classifier:
    return pixel_classifier(seed)


def _run(tmp_path, stop_at=None, monkeypatch=None):
    x, y = pixel_classes()
    xu, _ = pixel_classes(seed=1)
    torch.manual_seed(3)
    algo = SHOT(_clf(), ema=0.9, lr=1e-2, weight_decay=1e-4)
    with hooks.installed(StopAt(stop_at) if stop_at else hooks.Hooks()):
        return algo, fit(algo, x, y, xu, epochs=3, steps_per_epoch=5, batch_size=16, ckpt_path=tmp_path / "shot.pt",
                         fingerprint="shot-test")


def test_the_head_stays_frozen_and_a_killed_run_resumes_bit_identically(tmp_path, monkeypatch):
    head0 = {k: v.clone() for k, v in _clf().head.state_dict().items()}
    algo, ref = _run(tmp_path / "a")
    assert all(torch.equal(algo.clf.head.state_dict()[k], v) for k, v in head0.items())
    assert any(not torch.equal(a, b) for a, b in zip(algo.clf.trunk.parameters(), _clf().trunk.parameters()))
    (tmp_path / "b").mkdir()
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", stop_at="step:shot:1:2", monkeypatch=monkeypatch)
    monkeypatch.undo()
    torch.manual_seed(999)
    _, resumed = _run(tmp_path / "b")
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    for k in ref.state:
        assert torch.equal(ref.state[k], resumed.state[k]), k
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(resumed.history) == strip(ref.history)
