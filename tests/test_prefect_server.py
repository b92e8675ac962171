"""The Prefect flow against a real Prefect server that this module starts on a loopback port.

One server (SQLite in a temp PREFECT_HOME, bound to 127.0.0.1) serves every test here; the scheduler
loop is shortened so that scheduled runs appear within seconds instead of a minute.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from tests.helpers import TINY, prefect_env as _env, prefect_server

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]

STAGE_NAMES = ["prepare", "gmm", "pretrain", "autoencoders", "adapt", "samplers", "evaluate"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """This module's own server (tests/helpers.py), its scheduler loop shortened to 2 s so that scheduled runs
    appear within seconds, and no late-run marking to race the tests."""
    with prefect_server(tmp_path_factory.mktemp("prefect_home"), PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
                        PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false") as srv:
        yield srv


@pytest.fixture
def client(server, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", server["url"])
    with temporary_settings(updates={PREFECT_API_URL: server["url"]}):
        with get_client(sync_client=True) as c:
            yield c


def _cli(args: list[str], cwd: Path, server: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaeflow", *args], cwd=cwd, env=_env(server["home"], server["url"]),
                          capture_output=True, text=True, timeout=timeout)


def _sets() -> list[str]:
    return [a for kv in TINY + ["adapt.repeats=1"] for a in ("--set", kv)]


def _runs(client, **filters):
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from prefect.client.schemas.sorting import FlowRunSort

    filters.setdefault("limit", 200)  # the server rejects limit=null and sort=null
    filters.setdefault("sort", FlowRunSort.EXPECTED_START_TIME_DESC)
    return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["training_pipeline"])), **filters)


def _task_runs(client, **filters):
    from prefect.client.schemas.sorting import TaskRunSort

    return client.read_task_runs(limit=50, sort=TaskRunSort.EXPECTED_START_TIME_DESC, **filters)


def test_cli_run_is_a_completed_flow_run_with_one_task_per_stage(server, client, project):
    before = {r.id for r in _runs(client)}
    res = _cli(["run", *_sets()], project, server)
    assert res.returncode == 0, res.stdout + res.stderr
    new = [r for r in _runs(client) if r.id not in before]
    assert len(new) == 1
    run = new[0]
    assert run.state.type.value == "COMPLETED"
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    tasks = _task_runs(client, flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    assert sorted(t.name for t in tasks) == sorted(STAGE_NAMES)
    assert all(t.state.type.value == "COMPLETED" for t in tasks)
    # Straight to the REST API: the client sends null for unused filters, which this server rejects.
    arts = httpx.post(f"{server['url']}/artifacts/filter", timeout=30,
                      json={"artifacts": {"flow_run_id": {"any_": [str(run.id)]}}, "limit": 50}).json()
    by_key = {a["key"]: a for a in arts}
    assert {"vaeflow-metrics", "vaeflow-data", "vaeflow-report"} <= by_key.keys()
    assert by_key["vaeflow-metrics"]["type"] == "table" and by_key["vaeflow-report"]["type"] == "markdown"
    assert "## 4. Likelihoods" in by_key["vaeflow-report"]["data"]
    # The artifacts carry the numbers the files on disk hold.
    import json

    m = json.loads((project / "metrics" / "metrics.json").read_text())
    data = by_key["vaeflow-metrics"]["data"]
    rows = json.loads(data) if isinstance(data, str) else data
    table = {r["metric"]: r["value"] for r in rows}
    assert table["vae.test_nll_nats"] == pytest.approx(m["vae"]["test_nll_nats"])


def test_bad_params_fail_fast_and_create_no_run(server, client, project):
    before = len(_runs(client))
    res = _cli(["run", "--set", "vae.latent_dim=-3"], project, server, timeout=120)
    assert res.returncode == 2
    out = res.stdout + res.stderr
    assert "vae.latent_dim" in out and "Traceback" not in out
    assert len(_runs(client)) == before
    assert not (project / "data").exists()


def test_transient_error_is_retried_and_flow_completes(server, client, project, monkeypatch):
    """In-process flow run against the server: gmm raises a transient I/O error once, then succeeds."""
    from vaeflow.flows import training_pipeline as tp
    from vaeflow.tasks import STAGES

    real, calls = STAGES["gmm"], []

    def flaky(cfg, paths):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(5, "Input/output error (injected)")
        return real(cfg, paths)

    monkeypatch.setitem(STAGES, "gmm", flaky)
    metrics = tp.training_pipeline(params_file="params.yaml", overrides=TINY + ["adapt.repeats=1"], root=".")
    assert len(calls) == 2 and "gmm" in metrics
    run = _runs(client, limit=1)[0]
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    gmm = _task_runs(client, flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
                                task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["gmm"])))[0]
    assert gmm.state.type.value == "COMPLETED" and gmm.run_count == 2


def test_validation_error_is_not_retried(server, client, project, monkeypatch):
    from vaeflow.flows import training_pipeline as tp
    from vaeflow.tasks import STAGES
    from vaeflow.config import ConfigError

    calls = []

    def bad(cfg, paths):
        calls.append(1)
        raise ConfigError("gmm.n_components: injected validation error")

    monkeypatch.setitem(STAGES, "gmm", bad)
    with pytest.raises(ConfigError):
        tp.training_pipeline(params_file="params.yaml", overrides=TINY + ["adapt.repeats=1"], root=".")
    assert len(calls) == 1


def test_served_deployment_has_cron_schedule_and_runs(server, client, project):
    """`vaeflow serve --cron` registers the deployment; the scheduler creates runs ahead of time; a run
    triggered through run_deployment is picked up by the serving process and completes."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, \
        FlowRunFilterState, FlowRunFilterStateType
    from prefect.deployments import run_deployment

    log = open(project / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vaeflow", "serve", "--cron", "0 3 * * *", "--name", "nightly",
                             *_sets()], cwd=project, env=_env(server["home"], server["url"]),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, dep = time.time() + 180, None
        while time.time() < deadline and dep is None:
            try:
                dep = client.read_deployment_by_name("training_pipeline/nightly")
            except Exception:
                assert proc.poll() is None, (project / "serve.log").read_text()
                time.sleep(2)
        assert dep is not None, (project / "serve.log").read_text()
        scheds = client.read_deployment_schedules(dep.id)
        assert [s.schedule.cron for s in scheds] == ["0 3 * * *"]
        assert dep.parameters["overrides"] == TINY + ["adapt.repeats=1"]
        deadline, scheduled = time.time() + 120, []
        while time.time() < deadline and not scheduled:
            scheduled = _runs(
                client, deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["SCHEDULED"]))))
            time.sleep(2)
        assert scheduled, "the scheduler created no runs ahead of time"
        assert all(r.expected_start_time.hour == 3 and r.expected_start_time.minute == 0 for r in scheduled)
        run = run_deployment(UUID(str(dep.id)), timeout=600, poll_interval=2)
        assert run.state.type.value == "COMPLETED", (project / "serve.log").read_text()[-3000:]
        assert (project / "metrics" / "metrics.json").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# ------------------------------------------------ ephemeral mode: the server `vaeflow run` starts early

def test_run_without_api_url_records_the_run_in_the_local_database_and_leaves_no_server(project, tmp_path_factory):
    """Without PREFECT_API_URL, `vaeflow run` starts Prefect's throwaway API server itself, before its imports
    (flows/local_server.py): on 127.0.0.1, with Prefect's own SQLite database, stopped when the run ends."""
    import re
    import sqlite3

    home = tmp_path_factory.mktemp("ephemeral_home")
    res = subprocess.run([sys.executable, "-m", "vaeflow", "run", "-v", *_sets()], cwd=project, env=_env(home),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    url = re.search(r"local API server for this run at\s+(http://\S+)", res.stdout + res.stderr)
    assert url and url[1].startswith("http://127.0.0.1:"), res.stderr[-2000:]
    with pytest.raises(httpx.ConnectError):  # gone with the run
        httpx.get(f"{url[1]}/health", timeout=2)
    with sqlite3.connect(home / "prefect.db") as db:
        runs = db.execute("SELECT id, state_type FROM flow_run").fetchall()
        assert [s for _, s in runs] == ["COMPLETED"]
        tasks = db.execute("SELECT name, state_type FROM task_run WHERE flow_run_id = ?", (runs[0][0],)).fetchall()
    assert sorted(n for n, _ in tasks) == sorted(STAGE_NAMES) and {s for _, s in tasks} == {"COMPLETED"}


def test_early_server_is_skipped_where_prefect_would_not_start_one(tmp_path, monkeypatch):
    from vaeflow.flows import local_server

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    for var in ("PREFECT_API_URL", "PREFECT_PROFILES_PATH", "VAEFLOW_EARLY_SERVER", "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"):
        monkeypatch.delenv(var, raising=False)
    assert local_server.wanted()
    monkeypatch.setenv("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "false")
    assert not local_server.wanted()
    monkeypatch.delenv("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE")
    (tmp_path / "profiles.toml").write_text('active = "x"\n[profiles.x]\nPREFECT_API_URL = "http://10.0.0.5:4200/api"\n')
    assert not local_server.wanted()  # a profile's server is Prefect's to use
    (tmp_path / "profiles.toml").unlink()
    monkeypatch.setenv("VAEFLOW_EARLY_SERVER", "0")
    assert not local_server.wanted()


def test_early_server_that_cannot_start_is_a_clear_error(monkeypatch):
    from vaeflow.flows import local_server

    monkeypatch.setattr(local_server.sys, "executable", "/bin/false")
    srv = local_server.LocalServer()
    with pytest.raises(local_server.ServerError, match=r"exited with code 1.*PREFECT_API_URL"):
        srv.wait(timeout=20)
    assert srv.proc is None


def test_a_run_that_stops_early_stops_its_early_server_and_leaves_the_environment(tmp_path, monkeypatch):
    """`vaeflow run` starts the local server first (it boots while torch imports); bad params end the run
    before the flow: the server is stopped then, and PREFECT_API_URL was never set (a later up-to-date
    check, or a later run in the same process, would otherwise take it for a server of the user's)."""
    import os

    from typer.testing import CliRunner

    from vaeflow.flows import local_server
    from vaeflow.flows.cli import app

    events = []

    class FakePopen:
        def __init__(self, cmd, env, **kw):
            events.append("start")

        def poll(self):
            return None if events[-1] == "start" else 0

        def terminate(self):
            events.append("stop")

        def wait(self, timeout=None):
            return 0

    for var in ("PREFECT_API_URL", "PREFECT_PROFILES_PATH", "VAEFLOW_EARLY_SERVER", "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(local_server.subprocess, "Popen", FakePopen)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("adapt:\n  epochs: -3\n")
    res = CliRunner().invoke(app, ["run", "--params", "bad.yaml"])
    assert res.exit_code == 2 and "epochs" in res.output
    assert events == ["start", "stop"]
    assert "PREFECT_API_URL" not in os.environ
