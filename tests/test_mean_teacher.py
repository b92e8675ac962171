"""Mean teacher (self-ensembling): the EMA and the losses against closed forms, and a run that is
interrupted mid-epoch and resumed ends bit-identical to one that was not."""
from __future__ import annotations

import copy

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from tests.helpers import StopAt, assert_warmed_up_ema, pixel_classes, pixel_classifier
from vaeflow import hooks
from vaeflow.config import AdaptConfig, AugmentConfig
from vaeflow.config.adapt import MeanTeacherConfig
from vaeflow.models.classifier import Classifier
from vaeflow.training.adapt_trainer import fit
from vaeflow.training.algorithms import build_algorithm
from vaeflow.training.mean_teacher import (HISTORY, MeanTeacher, class_balance_loss, consistency_loss, ema_update,
                                          floor_for)

AUG = AugmentConfig(translate=0.1, rotate_deg=10, scale=0.1, shear_deg=5, noise=0.1)


def _clf(seed=0, n_classes=3) -> Classifier:
    return pixel_classifier(seed, n_classes, dropout=True, standardize=True)


def test_ema_update_matches_its_closed_form():
    student, teacher = _clf(1), _clf(2)
    t0 = [p.detach().clone() for p in teacher.parameters()]
    s0 = [p.detach().clone() for p in student.parameters()]
    ema_update(teacher, student, 0.9)
    for t, a, b in zip(teacher.parameters(), t0, s0):
        assert torch.allclose(t, 0.9 * a + 0.1 * b, atol=1e-7)
    for _ in range(200):  # repeated, the teacher converges to a fixed student: (0.9^200 ≈ 7e-10)
        ema_update(teacher, student, 0.9)
    for t, b in zip(teacher.parameters(), s0):
        assert torch.allclose(t, b, atol=1e-6)


def test_mean_teacher_step_moves_the_teacher_by_the_warmed_up_ema_of_the_updated_student():
    """Decay min(ema, 1 − 1/t) at step t: the mean of the students so far for the first 1/(1 − ema) = 20 steps,
    then the constant EMA."""
    x, y = pixel_classes()
    algo = MeanTeacher(_clf(), ema=0.95, threshold=0.0, lr=1e-2, weight_decay=0.0, augment=AUG)
    algo.train()
    assert_warmed_up_ema(algo, lambda: algo.update(x[:32], y[:32], x[32:64], 0.0))


def test_consistency_is_zero_for_identical_outputs_and_masks_unconfident_images():
    p = torch.softmax(torch.randn(10, 4), 1)
    q = torch.softmax(torch.randn(10, 4), 1)
    ones = torch.ones(10)
    assert consistency_loss(p, p, ones).item() == 0.0
    expected = ((p - q) ** 2).sum(1).mean()
    assert torch.allclose(consistency_loss(p, q, ones), expected)
    half = torch.tensor([1.0, 0.0] * 5)
    assert torch.allclose(consistency_loss(p, q, half), ((p - q) ** 2).sum(1)[::2].sum() / 10)


def test_class_balance_is_minimal_at_a_uniform_batch_mean():
    c = 5
    uniform = torch.full((8, c), 1.0 / c, requires_grad=True)
    loss = class_balance_loss(uniform)
    (g,) = torch.autograd.grad(loss, uniform)
    assert g.abs().max() < 1e-4  # a stationary point
    # closed form at the uniform mean: C · H_b(1/C), the binary entropy of 1/C
    u = 1.0 / c
    assert loss.item() == pytest.approx(-c * (u * torch.log(torch.tensor(u)) + (1 - u) * torch.log(torch.tensor(1 - u))).item(),
                                        rel=1e-4)
    skewed = torch.softmax(torch.tensor([[3.0, 0, 0, 0, 0]]).expand(8, c), 1)
    assert class_balance_loss(skewed) > loss


def _run(tmp_path, stop_at: str | None = None, monkeypatch=None, every_s: float = 0.0, align: bool = False,
         align_to: str = "labelled"):
    x, y = pixel_classes()
    xu, _ = pixel_classes(seed=1)
    torch.manual_seed(3)
    algo = MeanTeacher(_clf(), ema=0.9, threshold=0.5, lr=1e-2, weight_decay=1e-4, augment=AUG, align=align,
                       align_to=align_to, continued=True)
    with hooks.installed(StopAt(stop_at) if stop_at else hooks.Hooks()):
        return fit(algo, x, y, xu, epochs=3, steps_per_epoch=5, batch_size=16,
                   ckpt_path=tmp_path / "mt.pt", fingerprint="mt-test", checkpoint_every_s=every_s)


# with alignment its prediction history must resume too, and with align_to=continued the estimated shares
@pytest.mark.parametrize("align,align_to", [(False, "labelled"), (True, "labelled"), (True, "continued")])
def test_an_interrupted_run_resumes_bit_identically(tmp_path, monkeypatch, align, align_to):
    ref = _run(tmp_path / "a", align=align, align_to=align_to)
    (tmp_path / "b").mkdir()
    with pytest.raises(KeyboardInterrupt):  # mid-epoch 1
        _run(tmp_path / "b", stop_at="step:mt:1:2", monkeypatch=monkeypatch, align=align, align_to=align_to)
    monkeypatch.undo()
    torch.manual_seed(12345)  # a fresh process's RNG is not the killed one's: the checkpoint must restore it
    resumed = _run(tmp_path / "b", align=align, align_to=align_to)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert ref.state.keys() == resumed.state.keys()
    assert "bn.running_mean" in ref.state  # the teacher's BatchNorm statistics are part of what is compared
    for k in ref.state:
        assert torch.equal(ref.state[k], resumed.state[k]), k


def test_alignment_scales_the_teacher_by_labelled_shares_over_its_recent_predictions():
    """Against a hand computation: after k steps the history holds k batch means and HISTORY − k uniform rows;
    a class the teacher under-predicts is raised, and without align the teacher's probabilities pass as they are."""
    algo = MeanTeacher(_clf(), lr=1e-2, weight_decay=0.0, align=True)
    y = torch.tensor([0, 0, 1, 2])  # labelled shares 1/2, 1/4, 1/4
    algo.setup(torch.zeros(4, 1, 4, 4), y, None)
    p = torch.tensor([[0.7, 0.25, 0.05], [0.9, 0.05, 0.05]])  # class 2 hardly predicted
    n = algo.p_unl_hist.shape[0]
    hist = (p.mean(0) + (n - 1) * torch.full((3,), 1 / 3)) / n
    want = p * torch.tensor([0.5, 0.25, 0.25]) / hist
    want = want / want.sum(1, keepdim=True)
    got = algo.aligned(p)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(got.sum(1), torch.ones(2))
    balanced = MeanTeacher(_clf(), lr=1e-2, weight_decay=0.0, align=True)
    balanced.setup(torch.zeros(3, 1, 4, 4), torch.tensor([0, 1, 2]), None)
    for _ in range(n):  # once the history is all this teacher's, its under-predicted class is raised to near its share
        q = balanced.aligned(p)
        balanced.steps += 1  # what each update's EMA step does: the next batch takes the next slot
    assert p[:, 2].mean() == pytest.approx(0.05) and q[:, 2].mean() > 0.25
    off = MeanTeacher(_clf(), lr=1e-2, weight_decay=0.0)
    off.setup(torch.zeros(4, 1, 4, 4), y, None)
    assert torch.equal(off.aligned(p), p)


# A teacher's batch over 4 classes whose labelled shares are 1/4 each: mean 0.55, 0.25, 0.18, 0.02.
P4 = torch.tensor([[0.60, 0.30, 0.08, 0.02], [0.50, 0.20, 0.28, 0.02]])


def _aligned_p4(**kw) -> torch.Tensor:
    """P4 aligned by a mean teacher with options kw, its history full of P4's mean already (every slot)."""
    algo = MeanTeacher(_clf(n_classes=4), lr=1e-2, weight_decay=0.0, align=True, **kw)
    algo.setup(torch.zeros(4, 1, 4, 4), torch.tensor([0, 1, 2, 3]), None)
    algo.p_unl_hist.copy_(P4.mean(0).expand_as(algo.p_unl_hist))
    return algo.aligned(P4)


def test_alignment_with_slack_moves_only_the_classes_outside_the_band_and_only_to_its_edge():
    """Against a hand computation with the history full of one batch's mean m: with slack s, a class whose share is
    within [prior/s, prior·s] keeps its probability up to the row's renormalisation, one below is scaled by
    (prior/s)/m_c, one above by (prior·s)/m_c. slack 1 is the plain alignment, bit for bit; a slack so wide that every
    class is inside leaves the probabilities as they are."""
    scale = torch.tensor([0.5 / 0.55, 1.0, 1.0, 0.125 / 0.02])  # slack 2: band [0.125, 0.5]; class 0 above, 3 below
    want = P4 * scale
    assert torch.allclose(_aligned_p4(align_slack=2.0), want / want.sum(1, keepdim=True), atol=1e-5)
    assert torch.equal(_aligned_p4(align_slack=1.0), _aligned_p4())
    full = P4 * 0.25 / P4.mean(0)
    assert torch.allclose(_aligned_p4(align_slack=1.0), full / full.sum(1, keepdim=True), atol=1e-5)
    assert torch.allclose(_aligned_p4(align_slack=50.0), P4, atol=1e-5)


def test_alignment_as_a_floor_raises_the_classes_below_their_share_and_lowers_none():
    """Against a hand computation with the history full of one batch's mean m: with align_floor a class below its
    share (prior/s) is scaled by (prior/s)/m_c, every other class keeps its probability up to the row's
    renormalisation, so the ratio of two over-predicted classes is the teacher's own (two-way alignment changes it).
    With slack 2 it is the band's bottom edge alone."""
    for slack, scale in [(1.0, [1.0, 1.0, 0.25 / 0.18, 0.25 / 0.02]), (2.0, [1.0, 1.0, 1.0, 0.125 / 0.02])]:
        want = P4 * torch.tensor(scale)
        got = _aligned_p4(align_slack=slack, align_floor=True)
        assert torch.allclose(got, want / want.sum(1, keepdim=True), atol=1e-5)
        # the over-predicted pair (classes 0 and 1) as it was
        assert torch.allclose(got[:, 0] / got[:, 1], P4[:, 0] / P4[:, 1], atol=1e-5)
    two_way = _aligned_p4()
    assert not torch.allclose(two_way[:, 0] / two_way[:, 1], P4[:, 0] / P4[:, 1], atol=1e-3)


def test_auto_floor_is_the_floor_on_another_domains_labels_and_two_way_on_the_unlabelled_sets_own():
    """align_floor "auto" by the registry's labelled column, through the one builder every entry point uses: the
    floor for the variants trained on source labels (or continuing one), two-way for the few-label mean teacher, and
    recorded as resolved; true and false are kept as set for every variant, and a value that is neither is refused
    by name."""
    for floor, variants in [("auto", {"mean_teacher": True, "dann_mean_teacher": True, "shot_mean_teacher": True,
                                      "mean_teacher_few": False}),
                            (True, dict.fromkeys(["mean_teacher", "mean_teacher_few"], True)),
                            (False, dict.fromkeys(["mean_teacher", "dann_mean_teacher", "mean_teacher_few"], False))]:
        a = AdaptConfig(mean_teacher=MeanTeacherConfig(align_floor=floor))
        for name, want in variants.items():
            algo = build_algorithm(name, _clf(), a)
            # resolved() is what the adapt stage records in metrics/adapt.json: it must say what the run trains with
            assert algo.align_floor is want and algo.resolved()["align_floor"] is want, (floor, name)
    assert AdaptConfig().mean_teacher.align_floor == "auto"
    assert floor_for("auto", "target") is False and floor_for("auto", None) is True
    with pytest.raises(ValidationError, match="align_floor"):
        MeanTeacherConfig(align_floor="sometimes")


def test_continued_alignment_estimates_the_unlabelled_shares_with_the_network_it_continues():
    """Against a direct computation: the shares are the continued network's mean probability over the unlabelled
    images, each batch of 256 normalised by its own statistics (a fresh train-mode copy per batch, dropout off). The
    network's running statistics and the RNG stay as they were; the history starts at the estimate, so a batch
    predicted at those shares passes unchanged. A variant that continues nothing, or align_to=labelled, keeps the
    labelled shares."""
    x, y = pixel_classes()
    xu, _ = pixel_classes(n=600, seed=1)
    clf = _clf()
    with torch.no_grad():
        clf.bn.running_mean.fill_(0.3)  # statistics the estimate must neither use nor change
    algo = MeanTeacher(clf, lr=1e-2, weight_decay=0.0, align=True, align_to="continued", continued=True)
    before = copy.deepcopy(algo.teacher.state_dict())
    rng = torch.get_rng_state()
    algo.setup(x, y, xu)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in algo.teacher.state_dict().items())
    want = torch.zeros(3)
    with torch.no_grad():
        for i in range(0, 600, 256):
            net = copy.deepcopy(clf).train()
            for m in net.modules():
                if isinstance(m, nn.Dropout):
                    m.eval()
            want += torch.softmax(net(xu[i:i + 256]), 1).sum(0)
    want /= 600
    assert torch.allclose(algo.prior, want, atol=1e-6)
    assert torch.allclose(algo.p_unl_hist, want.expand(HISTORY, 3))
    p = want.expand(4, 3).clone()
    assert torch.allclose(algo.aligned(p), p, atol=1e-5)
    labelled = torch.bincount(y, minlength=3).float() / len(y)
    for kw in ({"align_to": "continued", "continued": False}, {"align_to": "labelled", "continued": True}):
        other = MeanTeacher(_clf(), lr=1e-2, weight_decay=0.0, align=True, **kw)
        other.setup(x, y, xu)
        assert torch.allclose(other.prior, labelled), kw
        assert torch.allclose(other.p_unl_hist, torch.full((HISTORY, 3), 1 / 3)), kw


def test_without_unlabelled_images_it_refuses(tmp_path):
    x, y = pixel_classes()
    algo = MeanTeacher(_clf(), lr=1e-2, weight_decay=0.0)
    with pytest.raises(ValueError, match="unlabelled"):
        fit(algo, x, y, None, epochs=1, steps_per_epoch=1, batch_size=4, ckpt_path=tmp_path / "c.pt",
            fingerprint="x")


def test_the_teacher_predicts_and_learns(tmp_path):
    """A sanity check of the whole engine on separable data: the teacher it scores beats chance by far."""
    x, y = pixel_classes(n=300)
    xu, yu = pixel_classes(n=300, seed=4)
    torch.manual_seed(0)
    algo = MeanTeacher(_clf(), threshold=0.8, lr=1e-2, weight_decay=0.0, augment=AugmentConfig(
        translate=0, rotate_deg=0, scale=0, shear_deg=0, noise=0.05))
    fit(algo, x[:30], y[:30], xu, epochs=4, steps_per_epoch=30, batch_size=32, ckpt_path=tmp_path / "s.pt",
        fingerprint="s")
    assert (algo.predict(xu) == yu).float().mean() > 0.9
    assert algo.predictor() is algo.teacher


def test_the_confidence_threshold_follows_label_smoothing():
    """With label smoothing ε a network's softmax tends to 1 − ε + ε/C at most: French et al.'s 0.968 is
    scaled onto that ceiling, so the consistency loss can switch on at all (measured: at ε = 0.1 the
    unscaled threshold let 0.5-20 % of target images through on MNIST↔USPS)."""
    hard = MeanTeacher(_clf(), threshold=0.968, lr=1e-3, weight_decay=0.0)
    smooth = MeanTeacher(_clf(), threshold=0.968, lr=1e-3, weight_decay=0.0, label_smoothing=0.1)
    assert hard.confidence_threshold(0.968, 10) == pytest.approx(0.968)
    assert smooth.confidence_threshold(0.968, 10) == pytest.approx(0.968 * 0.91)
    # The ceiling is what cross-entropy with smoothed targets is minimised at: the smoothed target itself.
    logits = torch.zeros(1, 10, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=5.0)
    for _ in range(3000):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(logits, torch.tensor([3]), label_smoothing=0.1).backward()
        opt.step()
    assert torch.softmax(logits, 1).max().item() == pytest.approx(0.91, abs=1e-3)


def test_timed_checkpoints_keep_the_last_epoch_and_change_no_result(tmp_path, monkeypatch):
    """adapt.checkpoint_every_s: at most one checkpoint per interval, always the last epoch's; the weights
    are those of a run that checkpointed after every epoch."""
    from vaeflow.training import adapt_trainer

    saved = []
    real = adapt_trainer.save_checkpoint
    monkeypatch.setattr(adapt_trainer, "save_checkpoint", lambda *a, **k: (saved.append(a[4]["epoch"]), real(*a, **k)))
    every = _run(tmp_path / "a")
    assert saved == [1, 2, 3]
    saved.clear()
    hourly = _run(tmp_path / "b", every_s=3600.0)
    assert saved == [3]
    assert all(torch.equal(every.state[k], hourly.state[k]) for k in every.state)
