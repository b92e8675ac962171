"""Shared fixtures: a tiny config (seconds, CPU) that runs the real code path end to end."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from vaeflow.config import load_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

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


def pytest_collection_modifyitems(config, items):
    """A test marked `server` (it starts a Prefect server or a Ray head) is `slow` too, so that `make test-fast`
    (-m "not slow") leaves out every server, process tree and end-to-end run; `make test` runs them all."""
    for item in items:
        if item.get_closest_marker("server") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny tensors: extra intra-op threads only add contention (10x slowdowns on a busy 2-core
    box). One thread is also what params.yaml's `threads: 1` gives the stages."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_cfg():
    return load_config(REPO / "params.yaml", TINY)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A scratch project root holding params.yaml; artifacts land under it."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path
