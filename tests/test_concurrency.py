"""Two `vaeflow run` in one project at once: the second fails with a clear message, or waits with
--wait; neither ever writes over the other. A run killed with -9 releases the lock with its process.

Run A is paused half-way through writing its first output (vaeflow/faults.py) while holding the lock,
so whatever B and C do happens while A is demonstrably mid-run.
"""
from __future__ import annotations

import shutil

import pytest
from filelock import FileLock

from tests.cli_utils import (OUTPUT_DIRS, assert_no_canary, kill9, run_cli, sets, spawn, start_paused, tree_hash,
                              wait_until)
from tests.conftest import REPO, TINY
from vaeflow.io import read_verified


@pytest.mark.slow  # three real `vaeflow run` processes
def test_second_run_fails_or_waits_and_outputs_stay_whole(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    args = ("run", *sets(TINY))
    a = start_paused(tmp_path, "write:source.npz:1:mid", *args, log="a.txt")
    try:
        before = tree_hash(tmp_path)

        # B, without --wait: refused at once, with the lock file named; A and the outputs untouched.
        b = run_cli(tmp_path, *args, log="b.txt")
        assert b.returncode == 3, b.stdout
        msg = " ".join(b.stdout.split())
        assert "another vaeflow run holds" in msg and ".vaeflow.lock" in msg and "--wait" in msg
        assert "Traceback" not in b.stdout
        assert tree_hash(tmp_path) == before and a.poll() is None

        # C, with --wait: queues behind A, and gets in once A is gone (here: killed with -9 mid-write).
        c = spawn(tmp_path, *args, "--wait", "600", log="c.txt", pause_at="lock:acquired")
        c_log = tmp_path / "logs" / "c.txt"
        try:
            wait_until(c, lambda: "waiting up to 600s" in c_log.read_text(), "waiting for the lock", c_log)
            assert not (tmp_path / ".paused-c.txt").exists()  # still outside while A holds the lock
            assert tree_hash(tmp_path) == before
            kill9(a)
            wait_until(c, (tmp_path / ".paused-c.txt").exists, "the lock after A died", c_log)
        finally:
            kill9(c)
    finally:
        kill9(a)

    # Nothing torn under a final name: every checksummed output that exists verifies.
    for d in OUTPUT_DIRS:
        for side in (tmp_path / d).rglob("*.sha256"):
            target = side.with_name(side.name.removesuffix(".sha256"))
            if target.exists():
                read_verified(target)
    assert not (tmp_path / "data/prepared/source.npz").exists()  # A died before renaming its first write
    lock = FileLock(tmp_path / ".vaeflow.lock")
    lock.acquire(timeout=0)  # both holders are dead: no stale lock
    lock.release()
    assert_no_canary(tmp_path)
