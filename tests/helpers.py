"""What several test modules share: the repository, the tiny config, data makers, Ray Tune readers and a
Prefect server on a loopback port.

Tests import from here (`from tests.helpers import ...`), never from each other or from conftest.py,
which only holds pytest's hooks and fixtures (it takes REPO and TINY from here).
"""
from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

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
    # a checkpoint after every epoch, as the kill-and-resume tests' pause points expect (default: every 10 s)
    "pretrain.checkpoint_every_s=0",
    "ae.checkpoint_every_s=0",
    "adapt.checkpoint_every_s=0",
    "adapt.workers=1",  # in-process: a spawned worker's start (~3 s) would dominate a tiny adapt
    "adapt.head_hidden=16",
    "adapt.dann.domain_hidden=8",
    "ae.epochs=2",
    "samplers.latent_components=[1,2]",
    "samplers.classifier_epochs=2",
    "samplers.interpolations=4",
]


def write_tiny_params(params: Path) -> None:
    """Rewrite a project's params.yaml with TINY's overrides applied, as a user edits it (validated, all keys)."""
    import yaml

    from vaeflow.config import load_config

    cfg = load_config(params, TINY)
    params.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def tracked_copy(d: Path) -> Path:
    """The checkout's files (no outputs), params.yaml made tiny, DVC's config, a fresh git repo: what a clone is."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        output = (f.startswith(("data/", "models/", "metrics/", "reports/", "runs/")) and f != "models/tuned/README.md"
                  or f == "dvc.lock")  # the committed lock is main's run, not this tiny copy's
        if (REPO / f).is_file() and not output and ".venv" not in f:
            (d / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, d / f)
    shutil.copytree(REPO / ".dvc", d / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"), dirs_exist_ok=True)
    write_tiny_params(d / "params.yaml")  # the copy of the checkout's
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "clone"]):
        subprocess.run(cmd, cwd=d, check=True, capture_output=True)
    return d


def in_project(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """A command in a project copy as its user runs it: the venv's bin first on PATH, Prefect's home inside the
    project (seeded_prefect_home). No PYTHONPATH=cwd: the editable install maps vaeflow.flows and vaeflow.tasks to
    the checkout, so a copy's vaeflow/ first on the path would mix the copy's modules with the checkout's."""
    bin_ = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_HOME": str(seeded_prefect_home(cwd / ".prefect"))}
    env.pop("PYTHONPATH", None)
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def clean_env(home: Path, pythonpath: Path = REPO) -> dict[str, str]:
    """A user's shell: none of the telemetry switches CI sets, a fresh HOME (so a fresh Prefect database), the
    venv's bin on PATH as an activated venv has it, and the checkout to import from."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    return {**env, "HOME": str(home), "COLUMNS": "200", "PYTHONPATH": str(pythonpath),
            "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"}


# ------------------------------------------------------------------------------ logs and configs

class LogLines(logging.Handler):
    """A logging handler that keeps each record (`records`) and its message (`lines`). As a context manager it
    listens to the vaeflow logger itself, whatever another test did to its propagation, and gives the messages; with
    `level` it sets the logger's level while it listens (a test run alone starts at WARNING) and restores it after."""

    def __init__(self, logger: str = "vaeflow", level: int | None = None):
        super().__init__()
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []
        self.logger, self.level_to_set, self.saved_level = logger, level, None

    def emit(self, record):
        self.records.append(record)
        self.lines.append(record.getMessage())

    def __enter__(self) -> list[str]:
        log = logging.getLogger(self.logger)
        if self.level_to_set is not None:
            self.saved_level = log.level
            log.setLevel(self.level_to_set)
        log.addHandler(self)
        return self.lines

    def __exit__(self, *exc):
        log = logging.getLogger(self.logger)
        log.removeHandler(self)
        if self.saved_level is not None:
            log.setLevel(self.saved_level)


def cfg_with(seed: int = 0, **data):
    """A default Config with these `data` settings (validated as params.yaml's would be)."""
    from vaeflow.config import Config

    return Config.model_validate({"seed": seed, "data": data})


# ------------------------------------------------------------------------------ mixtures

def clusters(n: int = 600, seed: int = 0) -> np.ndarray:
    """Three well-separated, differently shaped 4-d Gaussian clusters."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [8, 8, 0, 0], [0, 8, -8, 4]], float)
    scales = np.array([0.5, 1.0, 1.5])
    comp = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    a = rng.normal(size=(3, 4, 4)) * 0.3 + np.eye(4)
    return centres[comp] + np.einsum("nij,nj->ni", a[comp], rng.normal(size=(n, 4))) * scales[comp, None]


# ------------------------------------------------------------------------------ adaptation algorithms

def pixel_classes(n: int = 96, seed: int = 0):
    """n 1×4×4 images of 3 classes: noise in [0, 0.3) and a class-specific bright pixel on the diagonal."""
    import torch  # here, not at the top: the Ray and Prefect tests import this module without needing torch

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand(n, 1, 4, 4, generator=g) * 0.3
    x[torch.arange(n), 0, y, y] += 1.0
    return x, y


def pixel_classifier(seed: int = 0, n_classes: int = 3, dropout: bool = False, **kw):
    """The tiny classifier of the algorithm tests on `pixel_classes` images: Linear 16 → 12, ReLU (then dropout 0.2
    for the mean teacher's noise), a head of 8, feature BatchNorm; `kw` the rest (a domain head, standardize)."""
    import torch
    from torch import nn

    from vaeflow.models.classifier import Classifier

    torch.manual_seed(seed)
    layers = [nn.Flatten(), nn.Linear(16, 12), nn.ReLU()] + ([nn.Dropout(0.2)] if dropout else [])
    return Classifier(nn.Sequential(*layers), 12, n_classes, 8, feature_bn=True, **kw)


def assert_warmed_up_ema(algo, step, ema: float = 0.95) -> None:
    """`algo.teacher` is the warmed-up EMA of `algo.clf` (vaeflow.training.algorithms.average_teacher), against its
    closed form: after 3 calls of `step()` the mean of the 3 students (the warm-up, 1/(1 − ema) = 20 steps), after 34
    the constant EMA of the last step; no gradient reaches the teacher."""
    import torch

    students = []
    for _ in range(3):
        step()
        students.append([p.detach().clone() for p in algo.clf.parameters()])
    for t, s in zip(algo.teacher.parameters(), zip(*students)):
        assert torch.allclose(t, sum(s) / 3, atol=1e-6)
    for _ in range(30):
        step()
    t0 = [p.detach().clone() for p in algo.teacher.parameters()]
    step()
    assert int(algo.steps) == 34
    for t, a, s in zip(algo.teacher.parameters(), t0, algo.clf.parameters()):
        assert torch.allclose(t, ema * a + (1 - ema) * s.detach(), atol=1e-6)
    assert not any(p.requires_grad for p in algo.teacher.parameters())


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


# ------------------------------------------------------------------------------ Prefect server

def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """The environment of a Prefect process that uses only `home` (its SQLite database and profiles) and the
    server at `api_url`, or none: an inherited PREFECT_API_URL would send it to someone else's server."""
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING", "PYTHONPATH": str(REPO),
           "COLUMNS": "200"}  # rich wraps CLI output at 80 columns otherwise
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@functools.cache
def _migrated_prefect_db() -> Path:
    """A Prefect database migrated to this Prefect's schema, made once per test process."""
    d = Path(tempfile.mkdtemp(prefix="vaeflow-tests-prefect-db-"))
    atexit.register(shutil.rmtree, d, True)
    subprocess.run([sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"], env=prefect_env(d),
                   check=True, capture_output=True, timeout=300)
    return d / "prefect.db"


def seeded_prefect_home(home: Path) -> Path:
    """`home`, holding a copy of an already migrated, empty Prefect database unless it has one. A test that needs a
    home of its own (its own runs, nobody else's) needs an empty database, not Prefect's migrations again: they
    cost ~12 s of CPU each time on a 2-core box. test_clean_run's first run keeps a truly fresh HOME."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "prefect.db").exists():
        shutil.copy(_migrated_prefect_db(), home / "prefect.db")
    return home


@contextmanager
def prefect_server(home: Path, **extra_env: str) -> Iterator[dict]:
    """`prefect server start` on a free 127.0.0.1 port with its database in `home`, healthy on entry and
    stopped (its whole process group) on exit: {"url": ".../api", "home": home}. Each test module that needs
    one starts its own from a module fixture, so no module sees another's runs."""
    import httpx
    import pytest

    from vaeflow.flows.local_server import free_port

    seeded_prefect_home(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    # PREFECT_UI_API_URL: on a port other than 4200 the UI otherwise calls the wrong API (test_report_in_browser)
    env = prefect_env(home) | {"PREFECT_UI_API_URL": url} | extra_env
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"prefect server did not start in 240 s: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
        yield {"url": url, "home": home}
    finally:  # also when it never got healthy: the server and whatever it started
        with suppress(ProcessLookupError):  # a group that has already exited
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
