"""AdaMatch: distribution alignment, the relative threshold and the random logit interpolation against direct
computations; it adapts on a toy shift, and a killed run resumes bit-identically."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaeflow.config import AugmentConfig
from vaeflow.models.classifier import Classifier
from vaeflow.training.adamatch import HISTORY, AdaMatch, align, ramp
from vaeflow.training.augment import NO_AUGMENT
from tests.helpers import StopAt


def _algo(**kw):
    torch.manual_seed(0)
    clf = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU()), 8, 3, 8, feature_bn=True)
    opts = dict(threshold=0.9, strong=NO_AUGMENT, cutout=0.0, ema=0.0, lr=0.0, weight_decay=0.0, augment=NO_AUGMENT)
    return AdaMatch(clf, **{**opts, **kw})


def test_alignment_and_ramp_match_hand_computations():
    p = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    src, tgt = torch.tensor([0.5, 0.25, 0.25]), torch.tensor([0.25, 0.25, 0.5])
    q = torch.tensor([[0.6 * 2, 0.3, 0.1 / 2], [0.2 * 2, 0.2, 0.6 / 2]])
    assert torch.allclose(align(p, src, tgt), q / q.sum(1, keepdim=True), atol=1e-5)
    assert ramp(0.0, 0.5) == 0.0 and ramp(0.25, 0.5) == pytest.approx(0.5) and ramp(0.5, 0.5) == 1.0
    assert ramp(0.9, 0.5) == 1.0 and ramp(0.1, 0.0) == 1.0
    assert ramp(0.125, 0.5) == pytest.approx(0.5 - 0.5 * math.cos(math.pi / 4))


def test_pseudo_labels_use_the_aligned_target_predictions_and_a_threshold_relative_to_the_source():
    algo = _algo(threshold=0.8)
    g = torch.Generator().manual_seed(1)
    src, tgt = torch.randn(6, 3, generator=g) * 2, torch.randn(10, 3, generator=g) * 2
    pseudo, mask = algo.pseudo_labels(src, tgt)
    ps, pt = torch.softmax(src, 1), torch.softmax(tgt, 1)
    p_source = torch.full((3,), 1 / 3) * 0.999 + 0.001 * ps.mean(0)  # one EMA step from uniform
    hist = torch.full((HISTORY, 3), 1 / 3)
    hist[0] = pt.mean(0)                                              # one batch in the moving average
    q = pt * (1e-6 + p_source) / (1e-6 + hist.mean(0))
    q = q / q.sum(1, keepdim=True)
    assert torch.equal(pseudo, q.argmax(1))
    assert torch.equal(mask, (q.max(1).values >= 0.8 * ps.max(1).values.mean()).float())
    assert 0 < mask.sum() < 10  # the threshold splits this batch, so the rule is exercised both ways
    assert int(algo.steps) == 0 and torch.allclose(algo.p_source, p_source)  # update() counts the step


def test_source_logits_lie_between_the_two_normalisations_and_keep_only_the_joint_statistics():
    algo = _algo()
    algo.train()
    g = torch.Generator().manual_seed(2)
    xs, xt = torch.rand(8, 1, 4, 4, generator=g), torch.rand(8, 1, 4, 4, generator=g) + 1.0  # shifted target
    ref = _algo()
    ref.train()
    with torch.no_grad():
        alone = ref.clf(xs)                       # the source's statistics
        ref2 = _algo()
        ref2.train()
        joint = ref2.clf(torch.cat([xs, xt]))     # the joint batch's, from the same starting statistics
    torch.manual_seed(5)
    with torch.no_grad():
        src, tgt = algo.source_logits(xs, xt)
    torch.manual_seed(5)
    lam = torch.rand(src.shape)
    assert torch.allclose(src, joint[:8] + (alone - joint[:8]) * lam, atol=1e-5)
    assert torch.allclose(tgt, joint[8:], atol=1e-5)
    assert not torch.allclose(alone, joint[:8], atol=1e-3)  # the two normalisations do differ here
    for a, b in zip(algo.clf.buffers(), ref2.clf.buffers()):  # running statistics: the joint pass's alone
        assert torch.equal(a, b)


def test_the_loss_is_the_source_loss_plus_the_ramped_masked_pseudo_label_loss():
    algo = _algo(threshold=0.3)
    algo.train()
    g = torch.Generator().manual_seed(3)
    x, y, xu = torch.rand(6, 1, 4, 4, generator=g), torch.randint(0, 3, (6,), generator=g), torch.rand(9, 1, 4, 4, generator=g)
    torch.manual_seed(7)
    out = algo.update(x, y, xu, 0.125)
    # recompute with the same draws: lr 0 and identity views, so the network is unchanged by the step
    check = _algo(threshold=0.3)
    check.train()
    torch.manual_seed(7)
    with torch.no_grad():
        src, tgt = check.source_logits(torch.cat([x, x]), torch.cat([xu, xu]))
        pseudo, mask = check.pseudo_labels(src[:6], tgt[:9])
    assert out["cls_loss"].item() == pytest.approx(F.cross_entropy(src, torch.cat([y, y])).item(), rel=1e-5)
    unsup = (F.cross_entropy(tgt[9:], pseudo, reduction="none") * mask).mean()
    assert out["unlabelled_loss"].item() == pytest.approx(unsup.item(), rel=1e-5)
    assert out["confident"].item() == pytest.approx(mask.mean().item())


def _shifted(n: int, g: torch.Generator, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """3 classes, each a bright pixel on the diagonal, over noise; the target adds a constant shift."""
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand(n, 1, 4, 4, generator=g) * 0.3 + shift
    x[torch.arange(n), 0, y, y] += 1.0
    return x, y


def _adapt(tmp_path, stop_at=None):
    from vaeflow import hooks
    from vaeflow.training.adapt_trainer import fit

    g = torch.Generator().manual_seed(0)
    (xs, ys), (xt, yt) = _shifted(200, g, 0.0), _shifted(200, g, 0.4)
    torch.manual_seed(0)
    clf = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU()), 12, 3, 8, feature_bn=True)
    algo = AdaMatch(clf, threshold=0.9, mu=2, strong=AugmentConfig(translate=0, rotate_deg=0, scale=0, shear_deg=0,
                    noise=0.2), cutout=0.25, ema=0.9, lr=1e-2, weight_decay=0.0)
    with hooks.installed(StopAt(stop_at) if stop_at else hooks.Hooks()):
        res = fit(algo, xs, ys, xt, epochs=3, steps_per_epoch=30, batch_size=16, ckpt_path=tmp_path / "a.pt",
                  fingerprint="adamatch")
    return algo, res, xt, yt


def test_it_adapts_and_a_killed_run_resumes_bit_identically(tmp_path):
    algo, ref, xt, yt = _adapt(tmp_path / "a")
    assert (algo.predict(xt) == yt).float().mean() > 0.9
    assert algo.predictor() is algo.teacher and int(algo.steps) == 90
    (tmp_path / "b").mkdir()
    with pytest.raises(KeyboardInterrupt):
        _adapt(tmp_path / "b", stop_at="step:a:1:7")
    torch.manual_seed(999)
    resumed, res, _, _ = _adapt(tmp_path / "b")
    assert torch.equal(resumed.p_target_hist, algo.p_target_hist)
    for k in ref.state:
        assert torch.equal(ref.state[k], res.state[k]), k


def test_the_scored_average_warms_up_so_a_short_run_is_not_its_random_start():
    algo = _algo(ema=0.999, lr=0.1)
    algo.train()
    g = torch.Generator().manual_seed(4)
    x, y, xu = torch.rand(6, 1, 4, 4, generator=g), torch.randint(0, 3, (6,), generator=g), torch.rand(6, 1, 4, 4, generator=g)
    snapshots = []
    for _ in range(3):
        algo.update(x, y, xu, 0.5)
        snapshots.append([q.detach().clone() for q in algo.clf.parameters()])
    # decay min(0.999, 1 − 1/t): after step 1 the average is the weights, after step 3 the mean of the three
    for t, s in zip(algo.teacher.parameters(), zip(*snapshots)):
        assert torch.allclose(t, sum(s) / 3, atol=1e-6)
