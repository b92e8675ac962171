"""Helpers for tests that drive the real `vaeflow` CLI as a subprocess (kill, lock, bad input)."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO

# Fake secrets in every subprocess's environment: no log line or artifact may ever contain them.
CANARIES = {"AWS_SECRET_ACCESS_KEY": "canary-aws-7f3b9d", "HF_TOKEN": "canary-hf-51c2e0",
            "GITHUB_TOKEN": "canary-gh-a8e4f6", "VAEFLOW_TEST_PASSWORD": "canary-pw-c0ffee"}
OUTPUT_DIRS = ("data", "models", "metrics", "reports")


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAEFLOW_")}
    env.update(PYTHONPATH=str(REPO), COLUMNS="200", OMP_NUM_THREADS="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1", RAY_USAGE_STATS_ENABLED="0", **CANARIES)
    env.update(extra)
    return env


def vaeflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "vaeflow", *args]


def run_cli(cwd: Path, *args: str, log: str | None = None, timeout: float = 300,
            **env: str) -> subprocess.CompletedProcess:
    """Run `vaeflow ARGS` in `cwd` to completion; its combined output is also kept in cwd/logs/<log>."""
    p = subprocess.run(vaeflow(*args), cwd=cwd, env=cli_env(**env), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if log:
        (cwd / "logs").mkdir(exist_ok=True)
        (cwd / "logs" / log).write_text(p.stdout)
    return p


def spawn(cwd: Path, *args: str, log: str, pause_at: str | None = None) -> subprocess.Popen:
    """Start `vaeflow ARGS` in the background, output to cwd/logs/<log>, optionally pausing at a fault
    point (vaeflow/faults.py); it then creates cwd/.paused-<log>. The process is its own session
    leader, so `kill9` takes down anything it started too (e.g. Prefect's temporary server)."""
    (cwd / "logs").mkdir(exist_ok=True)
    env = {"VAEFLOW_PAUSE_AT": pause_at, "VAEFLOW_PAUSE_SIGNAL": str(cwd / f".paused-{log}")} if pause_at else {}
    with open(cwd / "logs" / log, "w") as out:
        return subprocess.Popen(vaeflow(*args), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=cli_env(**env))


def wait_until(proc: subprocess.Popen, done, what: str, log: Path) -> None:
    """Poll until `done()`; fail (and kill `proc`) if the process exits first."""
    deadline = time.monotonic() + 240  # a guard against a hung test, not a measurement
    while not done():
        if proc.poll() is not None or time.monotonic() > deadline:
            kill9(proc)
            raise AssertionError(f"never got to {what} (exit {proc.returncode}):\n" + log.read_text()[-3000:])
        time.sleep(0.05)


def start_paused(cwd: Path, point: str, *args: str, log: str) -> subprocess.Popen:
    """Start `vaeflow ARGS` and return once it is paused at fault point `point`."""
    proc = spawn(cwd, *args, log=log, pause_at=point)
    wait_until(proc, (cwd / f".paused-{log}").exists, point, cwd / "logs" / log)
    return proc


def kill9(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def tree_hash(root: Path, dirs: tuple[str, ...] = OUTPUT_DIRS) -> dict[str, tuple[int, int, str]]:
    """Every file under `dirs`: (size, mtime_ns, sha256). Equal before and after means nothing changed."""
    out = {}
    for d in dirs:
        for f in sorted((root / d).rglob("*")) if (root / d).exists() else []:
            if f.is_file():
                st = f.stat()
                out[str(f.relative_to(root))] = (st.st_size, st.st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
    return out


def copy_tree(src: Path, dst: Path, *parts: str) -> None:
    """Copy params.yaml from the repo and `parts` (files or directories) of a project `src` into `dst`."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "params.yaml", dst / "params.yaml")
    for part in parts:
        s, d = src / part, dst / part
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d)
        else:
            shutil.copy2(s, d)


def assert_no_canary(*texts_or_roots: str | Path) -> None:
    for item in texts_or_roots:
        if isinstance(item, Path):
            for f in item.rglob("*"):
                if f.is_file():
                    data = f.read_bytes()
                    for v in CANARIES.values():
                        assert v.encode() not in data, f"{f} contains a secret from the environment"
        else:
            for v in CANARIES.values():
                assert v not in item, "output contains a secret from the environment"
