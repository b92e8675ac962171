"""The flow's work ahead of the critical path: prewarmed adapt workers and dvc.lock records in the background.
Neither may change what a run computes or records, nor hide a failure."""
from __future__ import annotations

import pytest

from vaeflow.tasks import UPSTREAM


@pytest.fixture
def tp():
    """The flow module, imported in the test: importing it imports Prefect, whose logging setup takes over the
    "vaeflow" logger (PREFECT_LOGGING_EXTRA_LOGGERS), which would silence later in-process CLI runs in this
    worker if it happened at collection."""
    import vaeflow.flows.training_pipeline as tp

    return tp


class _Module:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def prewarm(self, cfg) -> None:
        self.calls.append("prewarm")

    def release(self) -> None:
        self.calls.append("release")


@pytest.fixture
def warm(tp, monkeypatch):
    mod = _Module()
    w = tp._Prewarm(cfg=None, upstream={n: list(u) for n, u in UPSTREAM.items()})
    monkeypatch.setattr(w, "_module", lambda name: mod)
    monkeypatch.setattr(tp, "WORKERS", 2)
    monkeypatch.setattr(tp, "TRAINING", set())
    return w, mod


def test_adapt_is_prewarmed_once_when_a_thread_is_free_while_pretrain_trains(tp, warm):
    w, mod = warm
    pending = ["adapt", "samplers", "evaluate"]
    tp.TRAINING.add("pretrain")
    w(pending, ["pretrain", "autoencoders"])  # both threads busy: not yet
    assert mod.calls == []
    w(pending, ["pretrain"])
    w(pending, ["pretrain"])
    assert mod.calls == ["prewarm"]  # once
    w.release()
    assert mod.calls == ["prewarm", "release"]


def test_no_prewarm_while_pretrain_only_checks_that_it_is_up_to_date(tp, warm):
    """A warm rerun: pretrain is submitted but skipped (never in TRAINING), so no worker starts."""
    w, mod = warm
    w(["adapt", "samplers", "evaluate"], ["pretrain"])
    assert mod.calls == []
    w.release()
    assert mod.calls == []


def test_one_flow_thread_never_prewarms(tp, warm, monkeypatch):
    w, mod = warm
    monkeypatch.setattr(tp, "WORKERS", 1)
    tp.TRAINING.add("pretrain")
    w(["adapt"], ["pretrain"])
    assert mod.calls == []


def test_records_run_in_order_and_a_failure_is_raised_by_wait(tp, monkeypatch):
    done: list[str] = []

    def record(name, root, if_changed=False):
        if name == "bad":
            raise OSError(f"dvc.lock: cannot record {name}")
        done.append(name)

    monkeypatch.setattr(tp.uptodate, "record", record)
    recs = tp._Records()
    for name in ("prepare", "bad", "pretrain"):
        recs.submit(name, ".")
    with pytest.raises(OSError, match="cannot record bad"):
        recs.wait()
    assert done == ["prepare", "pretrain"]  # the ones after a failure are still recorded
    recs.submit("adapt", ".")
    recs.wait()  # the failure was reported once; a later wait sees only its own records
    assert done[-1] == "adapt"


def test_a_background_record_never_removes_an_out_that_a_running_stage_reads(tmp_path, monkeypatch):
    """DVC's commit re-checks-out each out by default (delete, then copy from the cache): a stage reading it
    on another thread meanwhile found it missing ("models/vae.json: missing", samplers beside pretrain's
    record). The record must leave the very file in place: same inode, never absent."""
    import subprocess
    import sys
    import threading

    from vaeflow import uptodate

    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], check=True)
    (tmp_path / "dvc.yaml").write_text("stages:\n  s:\n    cmd: echo a > out.txt\n    outs:\n      - out.txt\n")
    out = tmp_path / "out.txt"
    gone, done = [], threading.Event()

    def watch():
        while not done.is_set():
            if not out.exists():
                gone.append(1)

    for text in ("a\n", "b\n"):  # the first record and a rerun's (which replaces a cached out)
        out.write_text(text)
        inode = out.stat().st_ino
        t = threading.Thread(target=watch)
        t.start()
        try:
            uptodate.record("s", tmp_path)
        finally:
            done.set()
            t.join()
        done.clear()
        assert not gone and out.stat().st_ino == inode and out.read_text() == text
    assert uptodate.is_up_to_date("s", tmp_path)
    assert "out.txt" in (tmp_path / "dvc.lock").read_text()
