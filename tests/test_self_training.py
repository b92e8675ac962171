"""Self-training on confident target pseudo-labels: which images get a label, rounds that resume from their
checkpoints, and the params that switch it on."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from torch import nn

from tests.conftest import REPO
from vaeflow.config import ConfigError, load_config
from vaeflow.models.classifier import Classifier
from tests.helpers import StopAt
from vaeflow import hooks
from vaeflow.training.adapt_trainer import fit
from vaeflow.training.self_training import SelfTraining, pseudo_labels


def _clf(seed: int) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(nn.Sequential(nn.Linear(2, 16), nn.ReLU()), 16, 3, 16, domain_hidden=8)


def _blobs(n: int, shift: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    return centers[y] + shift + 0.7 * torch.randn(n, 2, generator=g), y


def test_pseudo_labels_are_the_confident_argmax_of_an_independent_softmax():
    clf = _clf(0)
    with torch.no_grad():
        clf.head[-1].weight.mul_(20)  # spread the confidences over (1/3, 1)
    x, _ = _blobs(500, 0.0, 1)
    logits = clf.eval()(x).detach().numpy().astype(np.float64)
    p = softmax(logits, axis=1)
    for threshold in (0.5, 0.9, 0.99):
        pred, keep = pseudo_labels(clf, x, threshold, batch_size=64)  # batching must not matter
        assert np.array_equal(pred.numpy(), p.argmax(1))
        assert np.array_equal(keep.numpy(), p.max(1) >= threshold)
    assert 0 < pseudo_labels(clf, x, 0.9)[1].sum() < len(x)  # the threshold really splits this set


def _run(clf, xs, ys, xt, tmp_path, stop_at=None, monkeypatch=None):
    algo = SelfTraining(clf, threshold=0.9, epochs_per_round=2, gamma=10.0, lambda_max=0.1, lr=1e-2, weight_decay=0.0)
    torch.manual_seed(5)
    with hooks.installed(StopAt(stop_at) if stop_at else hooks.Hooks()):
        return fit(algo, xs, ys, xt, epochs=4, steps_per_epoch=20, batch_size=32, ckpt_path=tmp_path / "st.pt",
                   fingerprint="st-test")


def test_rounds_label_what_the_current_model_is_sure_of_and_resume_mid_round(tmp_path, monkeypatch):
    xs, ys = _blobs(300, 0.0, 2)
    xt, _ = _blobs(300, 0.8, 3)  # the target's labels are never handed over
    expected0 = int(pseudo_labels(_clf(1), xt, 0.9)[1].sum())
    res = _run(_clf(1), xs, ys, xt, tmp_path / "a")
    rounds = [r for r in res.history if "pseudo_labelled" in r]
    assert [r["round"] for r in rounds] == [0, 1] and [r["epoch"] for r in rounds] == [0, 2]
    assert rounds[0]["pseudo_labelled"] == expected0
    assert rounds[1]["pseudo_labelled"] > rounds[0]["pseudo_labelled"]  # trained on source: surer
    # Killed in round 1's second epoch: the resumed run keeps the labels round 1 started with (they are
    # checkpointed with the weights) and ends bit-identical.
    (tmp_path / "b").mkdir()
    with pytest.raises(KeyboardInterrupt):
        _run(_clf(1), xs, ys, xt, tmp_path / "b", stop_at="step:st:3:4", monkeypatch=monkeypatch)
    monkeypatch.undo()
    again = _run(_clf(1), xs, ys, xt, tmp_path / "b")
    assert all(torch.equal(res.state[k], again.state[k]) for k in res.state)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(again.history) == strip(res.history)


@pytest.mark.parametrize("variants, ok", [
    ("[dann, self_training]", True),
    ("[source_only, self_training]", False),
    ("[self_training, dann]", False),
])
def test_self_training_needs_dann_before_it(variants, ok):
    override = f"adapt.variants={variants}"
    if ok:
        assert load_config(REPO / "params.yaml", [override]).adapt.variants[-1] == "self_training"
    else:
        with pytest.raises(ConfigError, match="list 'dann' before 'self_training'"):
            load_config(REPO / "params.yaml", [override])


@pytest.mark.parametrize("override, key", [("adapt.self_training.threshold=1", "threshold"),
                                           ("adapt.self_training.rounds=0", "rounds"),
                                           ("adapt.self_training.epocs=2", "epocs")])
def test_bad_self_training_params_are_named(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(REPO / "params.yaml", [override])
