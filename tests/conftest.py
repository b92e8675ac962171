"""pytest hooks and shared fixtures: a tiny config (seconds, CPU) that runs the real code path end to end.

Shared constants and helpers live in tests/helpers.py; import them from there."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.helpers import REPO, SHARED_DATA, TINY  # noqa: F401  (re-exported for older imports)
from vaeflow.config import load_config



# Test modules that start Ray (a private local Ray, or a loopback cluster of nodes). Under pytest-xdist
# (`make test-slow`: -n 2 --dist loadgroup) they run one after another in one worker: two Rays of 2 CPUs each
# on a 2-core box would slow every trial down and make the kill tests' timing the box's, not the code's.
RAY_MODULES = {"test_ray_local", "test_tune", "test_tune_ray", "test_tune_cluster", "test_tune_kill"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks added here
def pytest_collection_modifyitems(config, items):
    """A test marked `server` (it starts a Prefect server or a Ray head) is `slow` too, so that `make test-fast`
    (-m "not slow") leaves out every server, process tree and end-to-end run; `make test` runs them all.

    Tests also get an xdist group (used only with `--dist loadgroup`; see _xdist_group)."""
    for item in items:
        if item.get_closest_marker("server") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        group = _xdist_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


SHARED_SESSION_FIXTURES = {"default_run", "dvc_reproduced"}  # costly session fixtures: their users share one worker


def _xdist_group(item) -> str | None:
    """"ray" for the modules in RAY_MODULES; a module's name when the test uses a fixture scoped to its module
    or class (test_dvc's reproduced project, a Prefect server: made once, in one worker); the fixture's name
    for SHARED_SESSION_FIXTURES; else none, so xdist spreads the module's tests over the workers."""
    module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else "other"
    if module in RAY_MODULES:
        return "ray"
    info = getattr(item, "_fixtureinfo", None)
    if info is None:  # a pytest without this attribute: keep modules together, the safe choice
        return module
    for name in item.fixturenames:
        defs = info.name2fixturedefs.get(name)
        scope = defs[-1].scope if defs else "function"
        if scope in ("module", "package", "class"):
            return module
        if scope == "session" and name in SHARED_SESSION_FIXTURES:
            return name
    return None


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


class DefaultRun(NamedTuple):
    project: Path
    output: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> DefaultRun:
    """One `vaeflow run` on params.yaml as committed, as a new user runs it (a fresh tracked copy of the
    repository, a fresh HOME, no telemetry switches: helpers.clean_env), shared by the tests that only read its
    project directory or its output (do not change them). Under xdist it is made once per worker that asks for
    it; SHARED_SESSION_FIXTURES (above) keeps its readers in one worker."""
    from tests.helpers import clean_env, tracked_copy

    root = tmp_path_factory.mktemp("default_run")
    project = tracked_copy(root / "repo")
    (project / "params.yaml").write_text((REPO / "params.yaml").read_text())  # the default, not tiny
    (root / "home").mkdir()
    out = subprocess.run([sys.executable, "-m", "vaeflow", "run"], cwd=project, env=clean_env(root / "home", project),
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return DefaultRun(project, out)


@pytest.fixture(scope="session")
def dvc_reproduced(tmp_path_factory) -> tuple[Path, str]:
    """A tracked copy of the checkout (tiny params, a fresh git repo: helpers.tracked_copy) after one `dvc repro`,
    and that run's stdout. Shared by test_dvc and test_dvc_exp: each test works on a copy of it, so none depends on
    what another left behind, and the tiny pipeline runs under DVC once per session instead of once a module."""
    from tests.helpers import in_project, tracked_copy

    d = tracked_copy(tmp_path_factory.mktemp("dvc_reproduced"))
    return d, in_project(["dvc", "repro"], d).stdout


def pytest_sessionfinish(session):
    """Stop a Prefect temporary server an in-process flow run started (a `vaeflow run` refused inside its
    flow), quietly. Left to Prefect's exit handler, its "Stopping temporary server" line goes to the stream of
    the test that started it, closed by then: a "--- Logging error ---" traceback in the test output."""
    import logging
    import sys

    server = sys.modules.get("prefect.server.api.server")
    if server is None:
        return
    logging.disable(logging.INFO)  # that line is INFO, and the console Prefect's handler holds is closed
    try:
        for instance in list(server.SubprocessASGIServer._instances.values()):
            instance.stop()
    finally:
        logging.disable(logging.NOTSET)
