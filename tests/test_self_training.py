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
from vaeflow.training.self_training import pseudo_labels, self_train


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


def _run(clf, xs, ys, xt, tmp_path, rounds=2):
    return self_train(clf, xs, ys, xt, rounds=rounds, threshold=0.9, epochs=2, steps_per_epoch=20,
                      batch_size=32, lr=1e-2, weight_decay=0.0, dann_gamma=10.0, dann_lambda_max=0.1,
                      ckpt_path=lambda k: tmp_path / f"round{k}.pt", fingerprint=lambda k: f"test-{k}")


def test_rounds_label_what_the_current_model_is_sure_of_and_resume_from_checkpoints(tmp_path):
    xs, ys = _blobs(300, 0.0, 2)
    xt, _ = _blobs(300, 0.8, 3)  # the target's labels are never handed over
    start = _clf(1)
    torch.manual_seed(5)
    expected0 = int(pseudo_labels(start, xt, 0.9)[1].sum())
    res, rounds = _run(start, xs, ys, xt, tmp_path)
    assert [r["round"] for r in rounds] == [0, 1] and rounds[0]["pseudo_labelled"] == expected0
    assert sum(rounds[1]["per_class"]) == rounds[1]["pseudo_labelled"]
    assert rounds[1]["pseudo_labelled"] > rounds[0]["pseudo_labelled"]  # round 0 trained on source: surer
    # Run again from a fresh copy of the starting weights: both rounds come back from their checkpoints,
    # bit-identical, without a training step (the pseudo-labels of round 1 come from round 0's weights).
    again, rounds2 = _run(_clf(1), xs, ys, xt, tmp_path)
    assert all(torch.equal(res.state[k], again.state[k]) for k in res.state)
    assert rounds2 == rounds and again.history == res.history


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
