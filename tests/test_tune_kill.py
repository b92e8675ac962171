"""kill -9 of Ray Tune trial processes: each killed trial is retried from its last checkpoint and ends with
weights bit-identical (CPU) to a trial of the same config that was never killed.

Two trials share one config and seed, so they must end identical. Three SIGKILLs hit them: one from outside,
at a random moment inside the epoch after a report (mid-batch, or while the checkpoint is being written or
handed to Tune), and one from inside, right after a report (between two epochs), of the other trial (under
load the outside kill can land late; had both hit one process, one restart would be missing). The third comes
from the driver, in the window between Tune logging a result and fetching its checkpoint from the trial
(vaeflow/tuning/progress.py): the retry runs that epoch again, and it must still be in progress.csv once.
"""
from __future__ import annotations

import json
import os
import random
import signal
import threading
from pathlib import Path

import pytest
import torch

from tests.helpers import KILL, KILL_EPOCHS, REPO, final_weights, progress_by_trial
from vaeflow import hooks
from vaeflow.hooks import Hooks
from vaeflow.config import load_config
from vaeflow.io import load_torch
from vaeflow.paths import Paths

WINDOW_EPOCH = 4


def _killer(marker: Path, window: Path):
    """A Tune callback that, once, SIGKILLs the first trial to report epoch 1, a random fraction of an
    epoch after that report: the process is then somewhere inside epoch 2 or its checkpoint. And, once, the
    first trial to report epoch WINDOW_EPOCH at once, from inside Tune's handling of that result: after the
    result is logged and before Tune asks the trial for the checkpoint it carries (a SIGKILLed process runs
    no more code, so that request fails). It also notes every process that reported for each trial, and
    whether its first report came from a restored checkpoint: a process whose every epoch was run again
    after it was killed has no row in progress.csv, by design, but it ran."""
    from ray import tune

    class Killer(tune.Callback):
        def __init__(self):
            self.processes: dict[str, dict[float, bool]] = {}  # trial id -> {process start: first report resumed}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.processes.setdefault(trial.trial_id, {}).setdefault(result["started"], result["resumed"])
            # Not the process the outside kill is set for: under load Tune can hand over epochs 1-4 of one process
            # in one go, and the window kill then took that process before the timer, which found it gone (one
            # restart short). Its restart, or the other trial, reports WINDOW_EPOCH later with another pid.
            outside = json.loads(marker.read_text())["pid"] if marker.exists() else None
            if result.get("epoch") == WINDOW_EPOCH and not window.exists() and result["pid"] != outside:
                window.write_text(json.dumps({"trial_id": trial.trial_id, "pid": result["pid"]}))
                os.kill(result["pid"], signal.SIGKILL)
            if result.get("epoch") != 1 or marker.exists():
                return
            marker.write_text(json.dumps({"trial_id": trial.trial_id, "pid": result["pid"]}))
            delay = random.Random(0).uniform(0.1, 0.9) * result["time_this_iter_s"]
            threading.Timer(delay, os.kill, (result["pid"], signal.SIGKILL)).start()

    return Killer()


@pytest.mark.slow
def test_trials_killed_with_sigkill_resume_and_end_bit_identical(tmp_path):
    import ray

    from vaeflow.tasks import prepare
    from vaeflow.tasks.tune import tune
    from vaeflow.tuning.cluster import start_local

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    cfg = load_config(tmp_path / "params.yaml", KILL)
    paths = Paths(tmp_path)
    prepare.run(cfg, paths)
    outside, inside, window = (tmp_path / f"{k}.kill" for k in ("outside", "inside", "window"))
    old_env = dict(os.environ)
    start_local(num_cpus=2, num_gpus=0)
    try:
        kill = Hooks(trial_fault={"marker": str(inside), "epoch": 3, "kind": "kill", "spare": str(outside)})
        killer = _killer(outside, window)
        with hooks.installed(kill):
            summary = tune(cfg, paths, callbacks=[killer])
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(old_env)

    exp = tmp_path / "runs" / "tune" / "vae_tune"
    trials = progress_by_trial(exp)
    assert summary["n_trials"] == 2 and len(trials) == 2
    assert outside.exists() and inside.exists() and window.exists()  # all three kills happened
    for trial_id, df in trials.items():
        # Every epoch in progress.csv exactly once across the restarts, all of them, from epoch 0, each
        # written by a process that ran this trial.
        assert list(df["epoch"]) == list(range(KILL_EPOCHS))
        assert set(df["started"]) <= set(killer.processes[trial_id])
        # each restart began from a restored checkpoint, not from scratch
        assert all(list(killer.processes[trial_id].values())[1:])
    assert sum(map(len, killer.processes.values())) == 5  # 2 trials + 3 restarts after the 3 kills
    a, b = (final_weights(exp, t) for t in trials)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    table = (tmp_path / "metrics" / "tune_trials.csv").read_text()
    assert "error" not in table
