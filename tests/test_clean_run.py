"""A clean first run: no telemetry (and no traceback from it), each DVC line once in one format."""
from __future__ import annotations

import io
import logging
import re
import subprocess
import sys

import pytest

from tests.helpers import clean_env

TELEMETRY_VARS = ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK", "RAY_USAGE_STATS_ENABLED")


def test_flows_turn_telemetry_off_before_prefect_is_imported(tmp_path):
    code = "import os, flows, prefect; print([os.environ.get(k) for k in %r])" % (TELEMETRY_VARS,)
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(tmp_path), capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['false', '1', '0']"
    env = {**clean_env(tmp_path), "PREFECT_SERVER_ANALYTICS_ENABLED": "true"}  # an explicit choice is kept
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("['true'")


def test_the_early_server_runs_without_analytics(monkeypatch):
    from vaeflow.flows import local_server

    seen = {}

    class FakePopen:
        def __init__(self, cmd, env, **kw):
            seen.update(env)

        def poll(self):
            return 0

    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    monkeypatch.setattr(local_server.subprocess, "Popen", FakePopen)
    local_server.LocalServer().stop()
    assert seen["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


@pytest.fixture
def dvc_project(tmp_path):
    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True).close()
    (tmp_path / "dvc.yaml").write_text("stages:\n  s:\n    cmd: echo\n    outs:\n      - o.txt\n")
    (tmp_path / "o.txt").write_text("x")
    return tmp_path


def test_each_dvc_line_appears_once_in_the_vaeflow_format(dvc_project, capfd, monkeypatch):
    """Prefect puts a console handler on the root logger and DVC puts its own on its loggers: before, every
    DVC line came out twice. Now DVC's records go through the "vaeflow" logger only."""
    from vaeflow import uptodate

    monkeypatch.chdir(dvc_project)  # as the flow runs it: root is the working directory
    root, vlog = logging.getLogger(), logging.getLogger("vaeflow")
    as_prefect = logging.StreamHandler(sys.stderr)
    ours = io.StringIO()
    as_vaeflow = logging.StreamHandler(ours)
    as_vaeflow.setFormatter(logging.Formatter("VAEFLOW %(levelname)s %(message)s"))
    saved = vlog.handlers[:], vlog.propagate, vlog.level
    root.addHandler(as_prefect)
    vlog.handlers, vlog.propagate = [as_vaeflow], False
    vlog.setLevel(logging.INFO)
    try:
        uptodate.record("s", ".")
        uptodate.record("s", ".")
    finally:
        root.removeHandler(as_prefect)
        vlog.handlers, vlog.propagate, vlog.level = saved[0], saved[1], saved[2]
    captured = capfd.readouterr()
    lines = [ln for ln in (captured.out + captured.err + ours.getvalue()).splitlines() if "lock file" in ln]
    # one line per recorded stage (DVC says "Generating" the first time, then "Updating"), in our format only
    assert len(lines) == 2 and all(ln.startswith("VAEFLOW INFO dvc: ") for ln in lines), lines


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the session's default run (conftest.py): ~1.5 min on 2 idle cores
def test_a_first_vaeflow_run_in_a_clean_environment_prints_no_traceback(default_run):
    """`vaeflow run` as a new user runs it (the session's `default_run`: params.yaml as committed, a fresh HOME
    so Prefect's database is created on the spot, none of the telemetry switches CI sets, a DVC-tracked
    project). stderr has no traceback and no telemetry error, and each DVC lock-file line appears once per
    recorded stage."""
    p = default_run.output
    assert "Traceback" not in p.stderr and "telemetry" not in p.stderr.lower(), p.stderr[:3000]
    from vaeflow.tasks import UPSTREAM

    out = p.stdout + p.stderr
    # DVC says "Generating" when it creates dvc.lock, then "Updating" once per recorded stage; nothing twice
    # + 1: the check stage's record (params.yaml validated: dvc.yaml's first stage)
    assert len(re.findall(r"Updating lock file 'dvc.lock'", out)) == len(UPSTREAM) + 1, out[-3000:]
    assert len(re.findall(r"Generating lock file 'dvc.lock'", out)) == 1, out[-3000:]
    assert len(re.findall(r"lock file 'dvc.lock'", out)) == len(re.findall(r"dvc: \w+ lock file 'dvc.lock'", out))
