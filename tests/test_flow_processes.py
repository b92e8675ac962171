"""A stage the flow runs in a process of its own (tasks/workers.py: run_stage) gives what it gives in a thread,
bit for bit, logs through the caller, and dies with a stop; the flow picks the process only where it pays."""
from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
import torch

from tests.conftest import REPO, TINY
from tests.helpers import LogLines
from vaeflow import stop
from vaeflow.config import load_config
from vaeflow.io import load_torch, read_json
from vaeflow.paths import Paths
from vaeflow.tasks import OWN_PROCESS, STAGES
from vaeflow.tasks.workers import run_stage

CFG = TINY + ["ae.epochs=3", "ae.patience=10"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_process")
    cfg = load_config(REPO / "params.yaml", CFG)
    STAGES["prepare"](cfg, Paths(root))
    return cfg, root


def _fresh(inputs, tmp_path, name):
    cfg, root = inputs
    dst = tmp_path / name
    shutil.copytree(root / "data", dst / "data")
    return cfg, Paths(dst)


def _no_seconds(d):
    if isinstance(d, dict):
        return {k: _no_seconds(v) for k, v in d.items() if "seconds" not in k}
    return d


def test_a_stage_in_its_own_process_gives_the_threads_results_and_logs_here(inputs, tmp_path):
    cfg, here = _fresh(inputs, tmp_path, "thread")
    _, there = _fresh(inputs, tmp_path, "process")
    with LogLines() as lines:
        a = STAGES["autoencoders"](cfg, here)
        seen = len(lines)
        b = run_stage("autoencoders", cfg, there)
    assert _no_seconds(a) == _no_seconds(b)
    assert _no_seconds(read_json(here.stage_metrics("autoencoders"))) == _no_seconds(
        read_json(there.stage_metrics("autoencoders")))
    for name in ("ae", "dae"):
        wa, wb = load_torch(here.ae_model(name)), load_torch(there.ae_model(name))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    # the worker's lines reach this process's "vaeflow" logger, as the thread's did
    forwarded = lines[seen:]
    assert any(m.startswith("autoencoders: dae best epoch") for m in forwarded), forwarded


def test_a_stop_kills_the_stage_process_at_once(inputs, tmp_path, monkeypatch):
    """The stop flag (a SIGTERM or Ctrl-C of the flow's process) ends the wait at once and kills the worker,
    paused inside its training (a test hook), instead of waiting for it."""
    cfg, paths = _fresh(inputs, tmp_path, "stopped")
    signal_file = tmp_path / "paused.txt"
    monkeypatch.setenv("VAEFLOW_PAUSE_AT", "step:dae:1:1")
    monkeypatch.setenv("VAEFLOW_PAUSE_SIGNAL", str(signal_file))

    def stop_when_paused():
        while not signal_file.exists():
            time.sleep(0.05)
        stop.request()

    threading.Thread(target=stop_when_paused, daemon=True).start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(stop.Stopped):
            run_stage("autoencoders", cfg, paths)
    finally:
        stop._requested.clear()
    assert time.perf_counter() - t0 < 120  # not the hook's 300 s pause
    pid = int(signal_file.read_text().split()[0])
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not paths.ae_model("dae").exists() and paths.ae_model("ae").exists()


def test_the_flow_runs_only_own_process_stages_apart_and_only_where_it_pays(monkeypatch):
    import vaeflow.tasks.workers as workers

    cfg = load_config(REPO / "params.yaml", ["device=cpu"])
    assert OWN_PROCESS == {"autoencoders"}
    monkeypatch.setattr(workers, "usable_cores", lambda: 2)
    assert workers.stage_runner("autoencoders", cfg, 2) is not STAGES["autoencoders"]  # a process of its own
    assert workers.stage_runner("pretrain", cfg, 2) is STAGES["pretrain"]  # the critical path stays in the thread
    assert workers.stage_runner("autoencoders", cfg, 1) is STAGES["autoencoders"]  # one thread: nothing beside it
    monkeypatch.setattr(workers, "usable_cores", lambda: 1)  # one core: a second process would only compete
    assert workers.stage_runner("autoencoders", cfg, 2) is STAGES["autoencoders"]
    monkeypatch.setattr(workers, "usable_cores", lambda: 2)
    for threads, cores, apart in ((0, 8, False), (2, 3, False), (2, 4, True)):  # threads 0: a pool of all cores each
        monkeypatch.setattr(workers, "usable_cores", lambda c=cores: c)
        many = cfg.model_copy(update={"threads": threads})
        assert (workers.stage_runner("autoencoders", many, 2) is not STAGES["autoencoders"]) is apart
    monkeypatch.setattr(workers, "usable_cores", lambda: 2)
    fake = lambda c, p: {}  # noqa: E731  a test's stand-in cannot be imported by a worker: it runs here
    STAGES["autoencoders"] = fake
    try:
        assert workers.stage_runner("autoencoders", cfg, 2) is fake
    finally:
        del STAGES["autoencoders"]
    assert not STAGES.replaced("autoencoders")
