"""The CPU speed-ups of issue 23 item 3 keep results: the optimised steps against the eager reference path.

- LeNet in channels-last memory (vaeflow/models/lenet.py) changes only the order of float sums inside the
  oneDNN kernels. Stated tolerance, float32 on CPU: losses and gradients of one step within rtol 1e-4 /
  atol 1e-6 of the NCHW path, parameters after one Adam step (lr 1e-3) within atol 1e-6 (except gradients
  that are zero in exact arithmetic: see below). Random draws
  (augmentation, Dropout2d's per-channel masks, the ELBO's noise) are the same, else these would fail by
  orders of magnitude.
- The LeNet decoder's last transposed conv as a GEMM + col2im (lenet._FewChannelConvTranspose): the same
  tolerance.
- augment's affine grid by broadcasting instead of F.affine_grid's batched matmul: within atol 1e-6, the
  warped images within 1e-5 (pixels in [0, 1]).
- The foreach EMA update (vaeflow/training/mean_teacher.py) is bit-identical to the per-parameter loop.

Compared after one step, not many: Adam divides by the gradient's running RMS, so a 1e-7 difference in a
near-zero gradient becomes an lr-sized step and later steps diverge chaotically (as two NCHW runs with
different thread counts would too); one step bounds the arithmetic, which is what the switch changes.
"""
from __future__ import annotations

import pytest
import torch

from vaeflow.config import AugmentConfig
from vaeflow.models import lenet
from vaeflow.models.classifier import classifier_from_vae
from vaeflow.models.vae import VAE
from vaeflow.training.augment import affine_grid, affine_matrices
from vaeflow.training.mean_teacher import MeanTeacher, ema_update

RTOL, ATOL = 1e-4, 1e-6
LR = 1e-3
AUG = AugmentConfig(translate=0.07, rotate_deg=8, scale=0.1, shear_deg=8, noise=0.1)


@pytest.fixture
def layout(monkeypatch):
    """set(cl): switch the LeNet trunk and decoder between channels-last (True) and NCHW (False)."""
    def set_(cl: bool) -> None:
        monkeypatch.setattr(lenet.LeNetTrunk, "channels_last", cl)
        monkeypatch.setattr(lenet.LeNetDecoder, "channels_last", cl)
    return set_


@pytest.mark.parametrize("c", [1, 3])
def test_channels_last_is_the_same_tensor_in_nhwc_memory(c):
    x = torch.randn(4, c, 6, 5)
    y = lenet.channels_last(x)
    assert torch.equal(x, y)
    assert y.stride() == (c * 30, 1, 5 * c, c)  # NHWC strides, also for C = 1, where torch calls it ambiguous
    z = torch.nn.functional.conv2d(y, torch.randn(7, c, 3, 3))
    assert z.is_contiguous(memory_format=torch.channels_last)  # the conv takes the NHWC kernel


@pytest.mark.parametrize("cout", [1, 2])
def test_few_channel_transposed_conv_matches_torchs(cout):
    """The decoder's last layer as GEMM + col2im (forward) and torch's own backward."""
    g = torch.Generator().manual_seed(0)
    x = lenet.channels_last(torch.randn(6, 20, 24, 24, generator=g)).requires_grad_()
    w = torch.randn(20, cout, 5, 5, generator=g).requires_grad_()
    b = torch.randn(cout, generator=g).requires_grad_()
    y = lenet._FewChannelConvTranspose.apply(x, w, b)
    ref = torch.nn.functional.conv_transpose2d(x, w, b)
    # Unit-variance inputs: sums of 500 terms of size ~20, so the absolute tolerance scales with the largest
    # entry (float32's 2^-24 ≈ 6e-8 relative rounding, accumulated over the reordered sum).
    close = lambda a, e: torch.testing.assert_close(a, e, rtol=RTOL, atol=ATOL * e.abs().max().item())  # noqa: E731
    close(y, ref)
    up = torch.randn(ref.shape, generator=g)
    for a, e in zip(torch.autograd.grad(y, (x, w, b), up), torch.autograd.grad(ref, (x, w, b), up)):
        close(a, e)


@pytest.mark.parametrize("size", [(28, 28), (16, 20), (1, 5)])
def test_broadcast_affine_grid_matches_torchs(size):
    """augment's grid (vaeflow/training/augment.py) against F.affine_grid, and the warped images."""
    g = torch.Generator().manual_seed(0)
    theta = affine_matrices(64, AUG, torch.zeros(1), generator=g)
    ref = torch.nn.functional.affine_grid(theta, [64, 1, *size], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, size), ref, rtol=0, atol=ATOL)
    x = torch.rand(64, 1, *size, generator=g)
    warp = lambda grid: torch.nn.functional.grid_sample(x, grid, align_corners=False)  # noqa: E731
    torch.testing.assert_close(warp(affine_grid(theta, size)), warp(ref), rtol=0, atol=1e-5)


def _mean_teacher(seed: int = 0) -> MeanTeacher:
    torch.manual_seed(seed)
    clf = classifier_from_vae(None, {"input_shape": [1, 28, 28], "arch": "lenet"}, 10, 500, pretrained=False,
                              backbone="lenet", layer_bn=True, standardize=True, feature_bn=True)
    algo = MeanTeacher(clf, threshold=0.0, lr=LR, weight_decay=1e-4, augment=AUG)  # threshold 0: all count
    algo.steps.fill_(10_000)  # past the EMA's warm-up, so the teacher takes 1 % of a step (this test is the layouts')
    algo.train()
    return algo


def _mt_step(layout, cl: bool):
    layout(cl)
    algo = _mean_teacher()
    g = torch.Generator().manual_seed(1)
    x, xu = torch.rand(16, 1, 28, 28, generator=g), torch.rand(16, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    torch.manual_seed(2)  # augmentation and dropout draw from the global RNG: the same draws on both paths
    out = algo.update(x, y, xu, 0.3)
    return algo, out


def test_mean_teacher_step_channels_last_matches_nchw(layout):
    ref, out_ref = _mt_step(layout, False)
    new, out_new = _mt_step(layout, True)
    for k in out_ref:
        torch.testing.assert_close(out_new[k], out_ref[k], rtol=RTOL, atol=ATOL, msg=k)
    for (name, p), q in zip(ref.clf.named_parameters(), new.clf.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=RTOL, atol=ATOL, msg=f"grad {name}")
        # A conv bias right before a BatchNorm has zero gradient in exact arithmetic; in float it is rounding
        # noise (~1e-9), which Adam's first step turns into ±lr whatever its size. Those entries may differ by
        # up to 2·lr; every entry with a real gradient (> 1e-5) matches to atol.
        real = p.grad.abs() > 1e-5
        torch.testing.assert_close(q[real], p[real], rtol=0, atol=ATOL, msg=f"student {name}")
        assert (q - p).abs().max() <= 2 * LR + 1e-7, name
    for (name, a), b in zip(ref.teacher.state_dict().items(), new.teacher.state_dict().values()):
        # EMA weights and BN statistics; the teacher takes (1 − ema) = 1 % of the students' bias noise above.
        torch.testing.assert_close(b, a, rtol=RTOL, atol=2 * LR * 0.01 + ATOL, msg=f"teacher {name}")
    # Scoring (inference mode, running statistics) agrees too.
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    layout(False)
    logits_ref = ref.teacher.eval()(x)
    layout(True)
    torch.testing.assert_close(new.teacher.eval()(x), logits_ref, rtol=RTOL, atol=1e-5)


@pytest.mark.parametrize("likelihood,variance", [("bernoulli", "shared"), ("gaussian", "conditional")])
def test_lenet_vae_step_channels_last_matches_nchw(layout, likelihood, variance):
    """ELBO and its gradients of the LeNet VAE; the conditional Gaussian decoder ends in 2 channels, so its
    NHWC output is reordered by the final Flatten (1 channel is the same bytes either way)."""
    res = {}
    for cl in (False, True):
        layout(cl)
        torch.manual_seed(0)
        m = VAE((1, 28, 28), 8, [500], likelihood, "relu", arch="lenet", decoder_variance=variance)
        x = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(1))
        torch.manual_seed(3)
        out = m.elbo(x)
        (-out["elbo"].mean()).backward()
        res[cl] = out, {n: p.grad for n, p in m.named_parameters()}
    (o0, g0), (o1, g1) = res[False], res[True]
    for k in o0:
        torch.testing.assert_close(o1[k], o0[k], rtol=RTOL, atol=1e-4, msg=k)  # nats per image, |elbo| ~ 500
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=RTOL, atol=ATOL, msg=n)


def test_foreach_ema_update_is_bit_identical_to_the_loop():
    student, teacher = _mean_teacher(1).clf, _mean_teacher(2).clf
    expected = [t.detach().clone().mul_(0.99).add_(s.detach(), alpha=1 - 0.99)
                for t, s in zip(teacher.parameters(), student.parameters())]
    ema_update(teacher, student, 0.99, buffers=True)
    for t, e in zip(teacher.parameters(), expected):
        assert torch.equal(t, e)
    for t, s in zip(teacher.buffers(), student.buffers()):
        assert torch.equal(t, s)


def test_fused_adam_matches_the_foreach_adam_over_many_steps():
    """The Algorithm base's fused Adam (one kernel per step) against torch's foreach Adam on the same
    gradients: the same update rule, so parameters agree within float rounding after 50 steps of a fixed
    gradient sequence (gradients are fed, not recomputed, so Adam's division by a near-zero RMS cannot
    amplify a difference in the loss: this bounds the optimiser's arithmetic alone)."""
    g = torch.Generator().manual_seed(0)
    shapes = [(20, 1, 5, 5), (20,), (500, 800), (10,)]
    start = [torch.randn(s, generator=g) for s in shapes]
    grads = [[torch.randn(s, generator=g) * 10 ** -(i % 4) for s in shapes] for i in range(50)]
    out = []
    for fused in (True, False):
        ps = [torch.nn.Parameter(p.clone()) for p in start]
        opt = torch.optim.Adam(ps, lr=LR, weight_decay=1e-4, fused=fused, foreach=None if fused else True)
        for gs in grads:
            for p, gr in zip(ps, gs):
                p.grad = gr.clone()
            opt.step()
        out.append(ps)
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # Really two code paths: they round differently somewhere. Not in every tensor: on an Intel Xeon the 500-weight
    # tensor came out bit-equal (on an AMD EPYC none did), while 143 of the 400,000 weights differed.
    assert any(not torch.equal(a, b) for a, b in zip(*out))


def test_algorithms_use_fused_adam_on_cpu():
    clf = classifier_from_vae(None, {"input_shape": (1, 28, 28)}, 10, 16, pretrained=False, backbone="lenet")
    algo = MeanTeacher(clf, lr=LR, weight_decay=0.0)
    assert algo.opt.defaults["fused"] is True
