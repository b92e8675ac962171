"""The project lock covers every writer: `vaeflow run`/`stage`/`tune`, a scheduled or deployed flow run
(`vaeflow serve`, `prefect deploy`), and `vaeflow submit`'s copy into models/tuned."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from tests.cli_utils import cli_env, kill9, spawn, wait_until
from tests.conftest import REPO, TINY

HOLD = ("import sys, time\nfrom vaeflow.lock import acquire\nacquire(sys.argv[1])\n"
        "open(sys.argv[2], 'w').close()\ntime.sleep(float(sys.argv[3]))\n")


def _holder(root: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the project lock of `root` (as `vaeflow run` does) for `seconds`."""
    flag = root / ".held"
    flag.unlink(missing_ok=True)
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(root), str(flag), str(seconds)], cwd=REPO, env=cli_env(),
                         start_new_session=True)  # its own process group, for kill9
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert p.poll() is None and time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.02)
    return p


def _locked_elsewhere(root: Path) -> bool:
    """Whether the lock is held, asked through a second open file (flock excludes it even in this process)."""
    other = FileLock(root / ".vaeflow.lock", thread_local=False)
    try:
        other.acquire(timeout=0)
    except Timeout:
        return True
    other.release()
    return False


def test_lock_is_reentrant_in_a_process_and_exclusive_across_processes(tmp_path):
    from vaeflow.lock import ProjectLocked, acquire

    outer = acquire(tmp_path)
    inner = acquire(tmp_path)  # `vaeflow run` holds it, then its flow takes it again: free
    assert inner is outer and _locked_elsewhere(tmp_path)
    inner.release()
    assert _locked_elsewhere(tmp_path)  # still held by the outer take
    outer.release()
    assert not _locked_elsewhere(tmp_path)
    holder = _holder(tmp_path, 30)
    try:
        with pytest.raises(ProjectLocked, match="another vaeflow run holds .*vaeflow.lock"):
            acquire(tmp_path, wait=0.2)
    finally:
        kill9(holder)
    acquire(tmp_path, wait=5).release()  # the holder's death released it


def test_a_scheduled_run_overlapping_a_vaeflow_run_waits_or_fails_before_writing(tmp_path, monkeypatch):
    """What `vaeflow serve` and a `prefect deploy` worker execute is the flow function itself: it takes the lock
    before anything else, so it refuses (after lock_wait) or queues behind the run that holds it."""
    import vaeflow.flows.training_pipeline as tp
    from vaeflow.lock import ProjectLocked

    ran = []
    monkeypatch.setattr(tp, "_pipeline", lambda *a: ran.append(_locked_elsewhere(tmp_path)) or {"ok": 1})
    holder = _holder(tmp_path, 30)
    try:
        with pytest.raises(ProjectLocked, match="lock_wait"):
            tp.training_pipeline.fn(params_file="params.yaml", root=str(tmp_path), lock_wait=0.3)
        assert ran == []  # nothing ran, so nothing was written
    finally:
        kill9(holder)
    holder = _holder(tmp_path, 1.0)  # a run that ends in a second: the scheduled run queues behind it
    t0 = time.monotonic()
    assert tp.training_pipeline.fn(params_file="params.yaml", root=str(tmp_path), lock_wait=60) == {"ok": 1}
    assert time.monotonic() - t0 > 0.3 and ran == [True]  # it waited, and ran holding the lock
    holder.wait()
    assert not _locked_elsewhere(tmp_path)


def test_serve_honours_an_api_url_from_the_active_prefect_profile(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import vaeflow.flows.training_pipeline as tp
    from vaeflow.flows.cli import app

    calls = []
    monkeypatch.setattr(tp.training_pipeline, "serve", lambda **kw: calls.append(kw), raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "profiles.toml"))
    monkeypatch.chdir(REPO)
    # serve first checks that the profile's server answers (its /health); a stand-in answers 200
    import http.server
    import threading

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()

        def log_message(self, *a):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/api"
    try:
        (tmp_path / "profiles.toml").write_text(f'active = "x"\n[profiles.x]\nPREFECT_API_URL = "{url}"\n')
        r = CliRunner().invoke(app, ["serve", "--interval", "60", "--lock-wait", "5"])
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert r.exit_code == 0, r.output
    assert calls and calls[0]["parameters"]["lock_wait"] == 5 and calls[0]["interval"] == 60
    # the same profile once its server is gone: refused, naming the profile's URL
    r = CliRunner().invoke(app, ["serve", "--interval", "60"])
    assert r.exit_code == 2 and f"PREFECT_API_URL={url}: no Prefect server answers" in " ".join(r.output.split())
    assert len(calls) == 1
    # a URL in a profile that is not the active one does not count
    (tmp_path / "profiles.toml").write_text('active = "y"\n[profiles.y]\n[profiles.x]\nPREFECT_API_URL = "http://h/api"\n')
    r = CliRunner().invoke(app, ["serve", "--interval", "60"])
    assert r.exit_code == 2 and "PREFECT_API_URL is not set" in r.output and len(calls) == 1


def test_submit_copies_into_models_tuned_only_under_the_lock(project, monkeypatch):
    import typer

    from vaeflow.flows import tune_cli
    from vaeflow.config import load_config
    from vaeflow.tuning import report

    cfg = load_config("params.yaml", [f"tune.storage_path={project / 'store'}"])
    copied = []
    monkeypatch.setattr(report, "fetch", lambda src, paths: copied.append(_locked_elsewhere(project)) or [])
    holder = _holder(project, 30)
    try:
        with pytest.raises(typer.Exit) as e:
            tune_cli._fetch(cfg, lock_wait=0.2)
        assert e.value.exit_code == 3 and copied == []
    finally:
        kill9(holder)
    tune_cli._fetch(cfg, lock_wait=5)
    assert copied == [True]


@pytest.mark.slow
def test_a_real_flow_run_refuses_to_overlap_a_paused_vaeflow_run(tmp_path):
    """End to end: `vaeflow run` paused holding the lock, and the flow started the way a deployment starts it
    (the flow function, in its own process, Prefect's ephemeral API): it fails naming the lock, writes nothing."""
    args = ["run", *[a for o in TINY for a in ("--set", o)]]
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    a = spawn(tmp_path, *args, log="a.txt", pause_at="lock:acquired")
    try:
        wait_until(a, (tmp_path / ".paused-a.txt").exists, "the lock", tmp_path / "logs" / "a.txt")
        code = ("from vaeflow.flows.training_pipeline import training_pipeline\n"
                f"training_pipeline(params_file='params.yaml', overrides={TINY!r}, root='.', lock_wait=1)\n")
        p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env(PYTHONPATH=str(REPO)),
                           capture_output=True, text=True, timeout=300)
        assert p.returncode != 0 and "another vaeflow run holds" in p.stdout + p.stderr
        assert not (tmp_path / "data").exists() and not (tmp_path / "models").exists()
    finally:
        kill9(a)


def test_the_deployment_in_prefect_yaml_sets_the_flows_lock_wait():
    import inspect

    import yaml

    from vaeflow.flows.training_pipeline import training_pipeline

    params = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"][0]["parameters"]
    assert set(params) <= set(inspect.signature(training_pipeline.fn).parameters)
    assert params["lock_wait"] > 0
