"""adapt.precision=bf16: the training steps' autocast.

bf16 must really run in bfloat16 (not bit-equal to fp32), follow fp32 within a stated tolerance, keep every
stored number (weights, Adam's moments, BatchNorm statistics, logits) in float32, resume bit-identically
after a kill, and be refused, with the setting named and nothing written, where bfloat16 is not native.
"""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from tests.helpers import StopAt
from vaeflow import hooks, runtime
from vaeflow.models.classifier import classifier_from_vae
from vaeflow.training.adapt_trainer import fit
from vaeflow.training.algorithms import DANN
from vaeflow.training.mean_teacher import MeanTeacher

native = pytest.mark.skipif(not runtime.bf16_supported(torch.device("cpu")),
                            reason="this CPU has no native bfloat16 (the refusal is tested regardless)")


@pytest.fixture
def bf16_allowed(monkeypatch):
    """What a dtype test needs is autocast's casts, not native speed: on a CPU without native bfloat16 (AVX2 only)
    torch emulates it, which vaeflow refuses for training (slower than fp32), so the refusal is lifted here."""
    monkeypatch.setattr(runtime, "bf16_supported", lambda device: True)


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 1, 16, 16, generator=g) * 0.3
    for c in range(4):  # a bright quadrant per class: learnable in a few steps
        r, k = divmod(c, 2)
        x[y == c, 0, 8 * r:8 * r + 8, 8 * k:8 * k + 8] += 0.7
    return x, y


def _algo(kind=MeanTeacher, seed=0):
    torch.manual_seed(seed)
    clf = classifier_from_vae(None, {"input_shape": [1, 16, 16], "arch": "lenet"}, 4, 32, pretrained=False,
                              backbone="lenet", layer_bn=True, standardize=True, feature_bn=True,
                              domain_hidden=32 if kind is DANN else None)
    kw = dict(lr=3e-3, weight_decay=1e-4)
    return kind(clf, **kw) if kind is DANN else kind(clf, ema=0.9, threshold=0.5, consistency_weight=1.0, **kw)


def _fit(tmp_path, precision, kind=MeanTeacher, name="run", stop_at=None):
    x, y = _data()
    xu, _ = _data(seed=1)
    algo = _algo(kind)
    torch.manual_seed(7)
    with hooks.installed(StopAt(stop_at) if stop_at else hooks.Hooks()):
        res = fit(algo, x, y, xu, epochs=3, steps_per_epoch=8, batch_size=32, ckpt_path=tmp_path / f"{name}.pt",
                  fingerprint=f"precision-{precision}", precision=precision)
    return algo, res


@native
@pytest.mark.parametrize("kind", [MeanTeacher, DANN], ids=["mean_teacher", "dann"])
def test_bf16_runs_in_bfloat16_and_follows_fp32(tmp_path, kind):
    _, ref = _fit(tmp_path, "fp32", kind, "fp32")
    algo, bf = _fit(tmp_path, "bf16", kind, "bf16")
    # Really another arithmetic: autocast that silently did nothing would be bit-equal.
    assert any(not torch.equal(ref.state[k], bf.state[k]) for k in ref.state)
    # ... and the same training: 24 steps from one start on one batch sequence. The tolerance is bfloat16's
    # 8-bit mantissa (relative rounding 2^-9 ≈ 0.2 %) compounded over the steps, with room to spare.
    for a, b in zip(ref.history, bf.history):
        assert b["cls_loss"] == pytest.approx(a["cls_loss"], rel=0.05, abs=0.01), (a, b)
    # The weights drift apart as any two float orders do under Adam (its update is ~lr whatever the gradient's
    # size, so rounding flips the sign of tiny gradients); what must agree is the function learned.
    num = sum(float((ref.state[k] - bf.state[k]).norm() ** 2) for k in ref.state if ref.state[k].is_floating_point())
    den = sum(float(ref.state[k].norm() ** 2) for k in ref.state if ref.state[k].is_floating_point())
    assert (num / den) ** 0.5 < 0.1
    x, y = _data(512, seed=2)
    net_ref, net_bf = _algo(kind), _algo(kind)
    net_ref.predictor().load_state_dict(ref.state)
    net_bf.predictor().load_state_dict(bf.state)
    p_ref, p_bf = net_ref.predict(x), net_bf.predict(x)
    assert (p_ref == p_bf).float().mean() >= 0.97
    assert (p_ref == y).float().mean() >= 0.9 and (p_bf == y).float().mean() >= 0.9  # both learned the task
    # Everything stored stays float32: weights, the EMA teacher, BN statistics, Adam's moments.
    assert all(v.dtype == torch.float32 for v in bf.state.values() if v.is_floating_point())
    assert all(t.dtype == torch.float32 for s in algo.opt.state.values() for t in s.values() if t.is_floating_point()
               and t.dim() > 0)


def test_logits_are_float32_under_bf16_autocast(bf16_allowed):
    algo = _algo()
    x, _ = _data(8)
    with runtime.autocast(torch.device("cpu"), "bf16"):
        feats = algo.clf.features(x)
        assert feats.dtype == torch.bfloat16  # the trunk ran in bfloat16
        assert algo.clf(x).dtype == torch.float32


def test_the_domain_head_runs_in_float32_under_bf16_autocast(bf16_allowed):
    algo = _algo(DANN)
    seen = []
    for m in algo.clf.domain_head.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].dtype, out.dtype)))
    x, _ = _data(8)
    with runtime.autocast(torch.device("cpu"), "bf16"):
        feats = algo.clf.features(x)
        assert feats.dtype == torch.bfloat16
        out = algo.clf.domain_logits(feats, 1.0)
    assert out.dtype == torch.float32 and seen and all(d == (torch.float32, torch.float32) for d in seen)
    out.sum().backward()  # the reversed gradient reaches the bfloat16 trunk
    assert all(q.grad is not None for q in algo.clf.trunk.parameters() if q.requires_grad)


@native
def test_a_killed_bf16_run_resumes_bit_identically(tmp_path):
    _, ref = _fit(tmp_path, "bf16", name="whole")
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, "bf16", name="killed", stop_at="step:killed:1:3")
    torch.manual_seed(999)  # resuming must not depend on the RNG state of the process that resumes
    _, resumed = _fit(tmp_path, "bf16", name="killed")
    assert all(torch.equal(ref.state[k], resumed.state[k]) for k in ref.state)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(resumed.history) == strip(ref.history)


def test_bf16_is_refused_where_it_is_not_native(tmp_path, monkeypatch):
    import shutil

    from tests.cli_utils import sets, tree_hash
    from tests.conftest import REPO, TINY
    from vaeflow.flows.cli import app

    monkeypatch.setattr(runtime, "bf16_supported", lambda device: False)
    with pytest.raises(Exception, match="adapt.precision"):
        runtime.autocast(torch.device("cpu"), "bf16")
    assert runtime.autocast(torch.device("cpu"), "fp32") is not None  # fp32 needs nothing
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    before = tree_hash(tmp_path)
    res = CliRunner().invoke(app, ["stage", "adapt", *sets(TINY), "--set", "adapt.precision=bf16"])
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), out
    assert "adapt.precision" in out and "Traceback" not in out
    assert tree_hash(tmp_path) == before
