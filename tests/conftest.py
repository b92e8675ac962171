"""pytest hooks and shared fixtures: a tiny config (seconds, CPU) that runs the real code path end to end.

Shared constants and helpers live in tests/helpers.py; import them from there."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, SHARED_DATA, TINY  # noqa: F401  (re-exported for older imports)
from vaeflow.config import load_config



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
