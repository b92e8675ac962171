"""What several test modules share: the repository, the tiny config, data makers and Ray Tune readers.

Tests import from here (`from tests.helpers import ...`), never from each other or from conftest.py,
which only holds pytest's hooks and fixtures (it takes REPO and TINY from here).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Overrides that keep every stage to a few seconds on 2 cores while exercising all of its code.
TINY = [
    "device=cpu",
    "threads=1",
    "data.subset=150",
    "gmm.n_components=[2,3]",
    "gmm.covariance_type=diag",
    "gmm.max_iter=20",
    "vae.hidden=[32]",
    "vae.latent_dim=4",
    "pretrain.epochs=2",
    "pretrain.kl_warmup_epochs=1",
    "eval.iwae_samples=20",
    "eval.iwae_chunk=10",
    "adapt.epochs=1",
    "adapt.repeats=2",
    "adapt.head_hidden=16",
    "adapt.dann.domain_hidden=8",
    "ae.epochs=2",
    "samplers.latent_components=[1,2]",
    "samplers.classifier_epochs=2",
    "samplers.interpolations=4",
]


def tracked_copy(d: Path) -> Path:
    """The checkout's files (no outputs), params.yaml made tiny, DVC's config, a fresh git repo: what a clone is."""
    import yaml

    from vaeflow.config import load_config

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        output = (f.startswith(("data/", "models/", "metrics/", "reports/", "runs/")) and f != "models/tuned/README.md"
                  or f == "dvc.lock")  # the committed lock is main's run, not this tiny copy's
        if (REPO / f).is_file() and not output and ".venv" not in f:
            (d / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, d / f)
    shutil.copytree(REPO / ".dvc", d / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"), dirs_exist_ok=True)
    cfg = load_config(REPO / "params.yaml", TINY)
    (d / "params.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "clone"]):
        subprocess.run(cmd, cwd=d, check=True, capture_output=True)
    return d


# ------------------------------------------------------------------------------ mixtures

def clusters(n: int = 600, seed: int = 0) -> np.ndarray:
    """Three well-separated, differently shaped 4-d Gaussian clusters."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [8, 8, 0, 0], [0, 8, -8, 4]], float)
    scales = np.array([0.5, 1.0, 1.5])
    comp = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    a = rng.normal(size=(3, 4, 4)) * 0.3 + np.eye(4)
    return centres[comp] + np.einsum("nij,nj->ni", a[comp], rng.normal(size=(n, 4))) * scales[comp, None]


# ------------------------------------------------------------------------------ Ray Tune

# Two identical trials that ASHA never stops, checkpointed every epoch: the kill tests (one node and two)
# compare their final weights bit for bit.
KILL_EPOCHS = 6
KILL = [
    "device=cpu", "threads=1", "vae.hidden=[64]", "vae.latent_dim=4", "pretrain.batch_size=16",
    "pretrain.patience=100", "pretrain.kl_warmup_epochs=2",
    f"tune.max_epochs={KILL_EPOCHS}", f"tune.grace_period={KILL_EPOCHS}",  # ASHA never stops a trial
    "tune.num_samples=1", "tune.max_concurrent_trials=2", "tune.cpus_per_trial=1", "tune.gpus_per_trial=0",
    "tune.max_failures=3", "tune.search_space={lr: {grid: [0.001, 0.001]}}",
    "tune.checkpoint_every_s=0",  # every epoch, so that no epoch is reported twice
]


def progress_by_trial(exp: Path):
    """Ray's own per-trial progress files: trial id -> one row per report (pandas DataFrames)."""
    import pandas as pd

    out = {}
    for d in exp.glob("trial_*"):
        if (d / "progress.csv").exists():
            df = pd.read_csv(d / "progress.csv", dtype={"trial_id": str, "node_id": str})
            out[df["trial_id"].iloc[0]] = df
    return out


def final_weights(exp: Path, trial_id: str, epochs: int = KILL_EPOCHS) -> dict:
    """A trial's weights in its last Tune checkpoint, which must be after `epochs` epochs."""
    from vaeflow.io import load_torch

    trial_dir = next(exp.glob(f"trial_{trial_id}_*"))
    last = max(trial_dir.glob("checkpoint_*"), key=lambda d: int(d.name.split("_")[-1]))
    ckpt = load_torch(last / "train_state.pt")  # weights_only=True and its checksum verified
    assert ckpt["state"]["epoch"] == epochs
    return ckpt["model"]


class StopAt:
    """Test hooks that raise KeyboardInterrupt at one pause point: the process 'dies' there, in-process, and
    only its checkpoint survives. Use: `with hooks.installed(StopAt("step:run:1:2")): ...`."""

    def __new__(cls, point: str):
        from vaeflow.hooks import Hooks

        class _Stop(Hooks):
            def pause(self, p: str) -> None:
                if p == point:
                    raise KeyboardInterrupt(p)

        return _Stop()
