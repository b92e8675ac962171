"""Kill -9, corruption and NaN: nothing is lost, nothing corrupted is ever used.

The kill tests run the real CLI (`vaeflow stage pretrain|adapt`) as a subprocess, stop it with SIGKILL
at fault points (vaeflow/hooks.py) — mid-epoch, half-way through writing a checkpoint's temp file,
and between a checkpoint's rename and its checksum update — rerun it, and compare the final weights
bit for bit with an uninterrupted run of the same config on CPU. The uninterrupted run goes through
the same CLI in this process (CliRunner), which saves two interpreter start-ups; it sets the same
single torch thread, so it is the same computation.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal

import pytest
import torch
from typer.testing import CliRunner

from vaeflow.flows.cli import app
from vaeflow.tasks import STAGES
from tests.cli_utils import assert_no_canary, copy_tree, kill9, sets, start_paused
from tests.helpers import REPO, TINY
from vaeflow.config import load_config
from vaeflow.io import ArtifactError, load_torch
from vaeflow.paths import Paths
from vaeflow.variants import DEFAULT

# Enough epochs and steps to kill in the middle of things: 300 images / 128 = 3 steps per epoch.
CFG = TINY + ["pretrain.epochs=4", "pretrain.patience=10", "adapt.epochs=2", "adapt.repeats=1"]
# The variants whose weights must match bit for bit: all that `adapt` trains here. CFG leaves adapt.variants
# at params.yaml's list, which names the registry's defaults, so a variant registered with default=True is
# compared without touching this file; the adapt test checks that the stage trained exactly these.
VARIANTS = DEFAULT
P = Paths()


def _state_dicts_equal(a, b) -> bool:
    a, b = load_torch(a), load_torch(b)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _ckpt_state(root, name: str) -> dict:
    return load_torch(root / P.checkpoint(name))["state"]


def _no_temp_files(root) -> list[str]:
    return [str(f) for f in root.rglob("*.tmp")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    STAGES["prepare"](load_config(REPO / "params.yaml", CFG), Paths(root))
    return root


@pytest.fixture(scope="module")
def reference(prepared, tmp_path_factory):
    """An uninterrupted `vaeflow stage pretrain` then `vaeflow stage adapt`."""
    root = tmp_path_factory.mktemp("reference")
    copy_tree(prepared, root, "data/prepared")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for stage in ("pretrain", "adapt"):
            res = CliRunner().invoke(app, ["stage", stage, *sets(CFG)])
            assert res.exit_code == 0, res.output
    finally:
        os.chdir(cwd)
    return root


def _rerun(root, monkeypatch, *args):
    """Run it again, to the end (in this process: only the killed runs need to be processes of their own)."""
    monkeypatch.chdir(root)
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return " ".join(res.output.split())  # rich wraps log lines at 80 columns here


@pytest.mark.slow  # CLI processes killed with SIGKILL
def test_pretrain_killed_twice_resumes_bit_identically(prepared, reference, tmp_path, monkeypatch):
    copy_tree(prepared, tmp_path, "data/prepared")
    args = ("stage", "pretrain", *sets(CFG))

    kill9(start_paused(tmp_path, "step:pretrain:1:1", *args, log="1.txt"))           # mid-epoch
    assert _ckpt_state(tmp_path, "pretrain")["epoch"] == 1
    assert not (tmp_path / P.vae).exists()

    kill9(start_paused(tmp_path, "write:pretrain.pt:2:mid", *args, log="2.txt"))     # half a checkpoint written
    assert "resumed runs/checkpoints/pretrain.pt at epoch 1" in (tmp_path / "logs/2.txt").read_text()
    assert _no_temp_files(tmp_path), "the kill should have left a half-written temp file"
    st = _ckpt_state(tmp_path, "pretrain")
    assert (st["epoch"], st["step"]) == (2, 6)  # the previous, complete checkpoint; the torn one is not under its name

    assert "resumed runs/checkpoints/pretrain.pt at epoch 2" in _rerun(tmp_path, monkeypatch, *args)
    assert _state_dicts_equal(tmp_path / P.vae, reference / P.vae)
    ours, ref = (json.loads((r / P.stage_metrics("pretrain")).read_text()) for r in (tmp_path, reference))
    assert ours["test_nll_nats"] == ref["test_nll_nats"] and ours["epochs_run"] == ref["epochs_run"] == 4
    assert _no_temp_files(tmp_path) == []  # the torn temp file of kill 2 was swept
    assert_no_canary(tmp_path)


@pytest.mark.slow  # CLI processes killed with SIGKILL
def test_adapt_killed_twice_resumes_bit_identically(reference, tmp_path, monkeypatch):
    copy_tree(reference, tmp_path, "data/prepared", "models/vae.pt", "models/vae.pt.sha256", "models/vae.json")
    args = ("stage", "adapt", *sets(CFG))

    # The mean teacher, mid-epoch: its checkpoint must hold student, EMA teacher, BN statistics and the RNG
    # that draws the augmentations.
    kill9(start_paused(tmp_path, "step:adapt_mean_teacher_0:1:1", *args, log="1.txt"))  # third variant
    assert (tmp_path / P.adapt_model("dann")).is_file() and not (tmp_path / P.adapt_model("mean_teacher")).exists()
    assert _ckpt_state(tmp_path, "adapt_mean_teacher_0")["epoch"] == 1

    # Between a checkpoint's rename and its checksum update: the sidecar vouches for old and new.
    kill9(start_paused(tmp_path, "write:adapt_scratch_0.pt:2:renamed", *args, log="2.txt"))
    log2 = (tmp_path / "logs/2.txt").read_text()
    assert "resumed runs/checkpoints/adapt_mean_teacher_0.pt at epoch 1" in log2
    assert "resumed runs/checkpoints/adapt_dann_0.pt at epoch 2" in log2
    assert "resumed runs/checkpoints/adapt_source_only_0.pt at epoch 2" in log2
    ckpt = tmp_path / P.checkpoint("adapt_scratch_0")
    sidecar = ckpt.with_name(ckpt.name + ".sha256").read_text().split()
    assert len(sidecar) == 2 and sidecar[0] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert _ckpt_state(tmp_path, "adapt_scratch_0")["epoch"] == 2

    assert "resumed runs/checkpoints/adapt_scratch_0.pt at epoch 2" in _rerun(tmp_path, monkeypatch, *args)
    for v in VARIANTS:
        assert _state_dicts_equal(tmp_path / P.adapt_model(v), reference / P.adapt_model(v)), v
    ours, ref = (json.loads((r / P.stage_metrics("adapt")).read_text())["variants"] for r in (tmp_path, reference))
    assert set(ours) == set(ref) == set(VARIANTS)  # no variant trained here escapes the weight comparison
    assert {v: r["confusion"] for v, r in ours.items()} == {v: r["confusion"] for v, r in ref.items()}
    assert _no_temp_files(tmp_path) == []
    assert_no_canary(tmp_path)


# ------------------------------------------------------------------------------------ corruption

def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _drop_sidecar_and_flip(path):
    path.with_name(path.name + ".sha256").unlink()
    _flip_bit(path)


@pytest.mark.parametrize("corrupt", [_truncate, _flip_bit, _drop_sidecar_and_flip],
                         ids=["truncated", "bitflip", "nosum"])
@pytest.mark.parametrize("stage,target", [("pretrain", "runs/checkpoints/pretrain.pt"),
                                          ("pretrain", "data/prepared/source.npz"),
                                          ("adapt", "models/vae.pt"),
                                          ("adapt", "runs/checkpoints/adapt_finetune_0.pt")])
def test_corrupted_file_is_refused_by_name_and_never_used(reference, tmp_path, monkeypatch, stage, target, corrupt):
    copy_tree(reference, tmp_path, "data", "models", "runs")
    monkeypatch.chdir(tmp_path)
    corrupt(tmp_path / target)
    before = (tmp_path / target).read_bytes()
    res = CliRunner().invoke(app, ["stage", stage, *sets(CFG)])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert target in res.output and "checksum" in res.output and "Traceback" not in res.output
    assert (tmp_path / target).read_bytes() == before  # neither used nor silently replaced
    assert not (tmp_path / P.stage_metrics(stage)).exists()  # the stage did not finish on top of it


# ------------------------------------------------------------------------------------------- NaN

def test_nan_loss_in_pretrain_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(
        prepared, reference, tmp_path, monkeypatch):
    copy_tree(prepared, tmp_path, "data/prepared")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAEFLOW_NAN_AT", "pretrain:2:1")
    res = CliRunner().invoke(app, ["stage", "pretrain", *sets(CFG)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "epoch 2 step 1" in res.output and "runs/checkpoints/pretrain.pt" in res.output
    assert _ckpt_state(tmp_path, "pretrain")["epoch"] == 2 and not (tmp_path / P.vae).exists()

    # The kept checkpoint is good: a rerun without the fault resumes from it and matches the reference.
    monkeypatch.delenv("VAEFLOW_NAN_AT")
    res = CliRunner().invoke(app, ["stage", "pretrain", *sets(CFG)])
    assert res.exit_code == 0, res.output
    assert _state_dicts_equal(tmp_path / P.vae, reference / P.vae)


def test_nan_loss_in_adapt_stops_with_epoch_and_step(reference, tmp_path, monkeypatch):
    copy_tree(reference, tmp_path, "data/prepared", "models/vae.pt", "models/vae.pt.sha256", "models/vae.json")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAEFLOW_NAN_AT", "adapt_finetune_0:1:0")
    res = CliRunner().invoke(app, ["stage", "adapt", *sets(CFG)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "epoch 1 step 0" in res.output and "adapt_finetune_0.pt" in res.output
    kept = load_torch(tmp_path / P.checkpoint("adapt_finetune_0"))
    assert kept["state"]["epoch"] == 1 and all(torch.isfinite(v).all() for v in kept["model"].values())
    assert not (tmp_path / P.adapt_model("finetune")).exists()


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    from vaeflow.training.checkpoint import NonFiniteLoss, save_checkpoint

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    path = tmp_path / "c.pt"
    save_checkpoint(path, "fp", model, opt, {"epoch": 1, "step": 4})
    good = path.read_bytes()
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteLoss, match=r"epoch 1 \(global step 8\)"):
        save_checkpoint(path, "fp", model, opt, {"epoch": 2, "step": 8})
    assert path.read_bytes() == good


# ------------------------------------------------------------------------------- resume contents

def test_checkpoint_survives_a_copy_without_rewrite(reference, tmp_path):
    """A checkpoint is self-contained: copied elsewhere with its sidecar it verifies and loads."""
    src = reference / P.checkpoint("pretrain")
    shutil.copy(src, tmp_path / "x.pt"), shutil.copy(str(src) + ".sha256", tmp_path / "x.pt.sha256")
    assert load_torch(tmp_path / "x.pt")["state"]["epoch"] == 4
    (tmp_path / "x.pt.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(ArtifactError, match="x.pt: checksum mismatch"):
        load_torch(tmp_path / "x.pt")


@pytest.mark.slow  # CLI processes killed with SIGKILL
def test_adapt_with_workers_killed_leaves_no_orphan_and_resumes_bit_identically(reference, tmp_path, monkeypatch):
    """Only the stage's process is killed (not its group, as an OOM killer or `kill -9 PID` would): its
    worker processes must die with it, not train on beside the rerun, and the rerun (2 workers) must end
    with the uninterrupted in-process run's weights."""
    import psutil

    copy_tree(reference, tmp_path, "data/prepared", "models/vae.pt", "models/vae.pt.sha256", "models/vae.json")
    args = ("stage", "adapt", *sets(CFG + ["adapt.workers=2"]))
    proc = start_paused(tmp_path, "step:adapt_dann_0:1:1", *args, log="1.txt")
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) >= 2, workers  # the pool's processes (and the spawn tracker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], alive
    out = _rerun(tmp_path, monkeypatch, *args)
    assert "worker processes" in out
    for v in VARIANTS:
        assert _state_dicts_equal(tmp_path / P.adapt_model(v), reference / P.adapt_model(v)), v
