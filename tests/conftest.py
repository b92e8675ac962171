"""pytest hooks and shared fixtures: a tiny config (seconds, CPU) that runs the real code path end to end.

Shared constants and helpers live in tests/helpers.py; import them from there."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, SHARED_DATA, TINY  # noqa: F401  (re-exported for older imports)
from vaeflow.config import load_config



# Test modules that start Ray (a private local Ray, or a loopback cluster of nodes). Under pytest-xdist
# (`make test-slow`: -n 2 --dist loadgroup) they run one after another in one worker: two Rays of 2 CPUs each
# on a 2-core box would slow every trial down and make the kill tests' timing the box's, not the code's.
RAY_MODULES = {"test_ray_local", "test_tune", "test_tune_cluster", "test_tune_kill"}


def pytest_collection_modifyitems(config, items):
    """A test marked `server` (it starts a Prefect server or a Ray head) is `slow` too, so that `make test-fast`
    (-m "not slow") leaves out every server, process tree and end-to-end run; `make test` runs them all.

    Every test also gets an xdist group (used only with `--dist loadgroup`): its module's name, so a module's
    tests share one worker and its module-scoped fixtures run once (test_dvc's reproduced project, a Prefect
    server), and "ray" for the modules in RAY_MODULES."""
    for item in items:
        if item.get_closest_marker("server") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else "other"
        item.add_marker(pytest.mark.xdist_group("ray" if module in RAY_MODULES else module))


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


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """One `vaeflow run` on params.yaml as committed, in a fresh tracked copy of the repository, shared by the
    tests that only read its outputs (its project directory is returned; do not change it). Under xdist it is
    made once per worker that asks for it, so its readers are best kept in one module."""
    import subprocess
    import sys

    from tests.helpers import tracked_copy

    project = tracked_copy(tmp_path_factory.mktemp("default_run") / "repo")
    (project / "params.yaml").write_text((REPO / "params.yaml").read_text())  # the default, not tiny
    env = {**os.environ, "PYTHONPATH": str(project), "COLUMNS": "200"}
    subprocess.run([sys.executable, "-m", "vaeflow", "run"], cwd=project, env=env, check=True,
                   capture_output=True, timeout=1800)
    return project
