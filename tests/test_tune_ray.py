"""Ray Tune on a local Ray: ASHA, retries, resume, the stage's outputs and jobs on a head.

Ray starts slowly, so one tuned experiment (module fixture) serves several tests: its first run has a
trial that raises once and is stopped, like Ctrl-C, after two trials finish; `vaeflow tune --resume`
then completes it. Every check reads Ray's own per-trial files, not our summary of them.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.helpers import REPO, TINY, LogLines, progress_by_trial
from vaeflow import hooks
from vaeflow.hooks import Hooks
from vaeflow.config import load_config
from vaeflow.io import read_json
from vaeflow.paths import Paths

LRS = [0.003, 0.001, 1e-5, 1e-6]  # two that learn, two that barely move: ASHA must cut the latter
TUNE = TINY + [
    "pretrain.patience=100",  # so any trial that ends early was stopped by ASHA
    "tune.max_epochs=4", "tune.grace_period=1", "tune.reduction_factor=2", "tune.num_samples=1",
    "tune.max_concurrent_trials=2", "tune.cpus_per_trial=1", "tune.max_failures=2",
    "tune.checkpoint_every_s=0",  # a checkpoint every epoch: a retry or resume repeats no epoch
    "tune.gpus_per_trial=0.5",  # the Ray below has no GPU: trials must fall back to CPU and say so once
    "tune.search_space={lr: {grid: %s}}" % json.dumps(LRS),
]


# ----------------------------------------------------------------------------- one tuned experiment


def _interrupt_after(n: int, marker: Path):
    """A Tune callback that, once ever (a restored experiment gets it back), stops the driver the way
    Ctrl-C does after `n` trials have finished: Tune saves its state and returns."""
    from ray import tune

    class Interrupt(tune.Callback):
        def __init__(self):
            self.done = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            if self.done >= n and not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGUSR1)  # Tune's own graceful-stop signal

    return Interrupt()


def _results_per_step():
    """A Tune callback: how many results Tune's driver took in each step of its loop that had any. A step
    handles one event (ray/tune/execution/tune_controller.py: `step`), so this is results per reply of a
    trial's actor, i.e. per driver round trip."""
    from ray import tune

    class ResultsPerStep(tune.Callback):
        def __init__(self):
            self.sizes: list[int] = []
            self.n = 0

        def on_step_begin(self, iteration, trials, **info):
            self.n = 0

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.n += 1

        def on_step_end(self, iteration, trials, **info):
            if self.n:
                self.sizes.append(self.n)

    return ResultsPerStep()


def _config(exp: Path, trial_id: str) -> dict:
    return json.loads(next(exp.glob(f"trial_{trial_id}_*/params.json")).read_text())


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    import ray

    from vaeflow.tasks import prepare
    from vaeflow.tasks.tune import tune
    from vaeflow.tuning.report import TuneIncomplete
    from vaeflow.tuning.cluster import start_local

    root = tmp_path_factory.mktemp("tune")
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    cfg = load_config(root / "params.yaml", TUNE)
    paths = Paths(root)
    prepare.run(cfg, paths)
    exp = root / "runs" / "tune" / "vae_tune"
    fault = root / "fault.marker"
    log = logging.getLogger("vaeflow")
    saved = (list(log.handlers), log.level, log.propagate)  # the CLI below sets up its own logging
    lines = LogLines()
    log.addHandler(lines)
    log.setLevel(logging.INFO)
    old_cwd, old_env = os.getcwd(), dict(os.environ)  # ray.init sets RAY_AUTH_MODE for this process
    start_local(num_cpus=2, num_gpus=0)
    try:
        fault_hooks = Hooks(trial_fault={"marker": str(fault), "epoch": 0, "kind": "raise"})
        with pytest.raises(TuneIncomplete, match="--resume"), hooks.installed(fault_hooks):
            tune(cfg, paths, callbacks=[_interrupt_after(2, root / "stop.marker")])
        first_lines = list(lines.lines)
        from ray.tune import ExperimentAnalysis

        finished = {t.trial_id for t in ExperimentAnalysis(str(exp)).trials if t.status == "TERMINATED"}
        before = {t: (exp.glob(f"trial_{t}_*").__next__() / "result.json").read_bytes() for t in finished}
        os.chdir(root)  # the CLI works on the current directory
        from vaeflow.flows.cli import app

        res = CliRunner().invoke(app, ["tune", "--resume", *sum((["--set", s] for s in TUNE), [])])
    finally:
        os.chdir(old_cwd)
        log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]
        ray.shutdown()
        os.environ.clear()
        os.environ.update(old_env)
    return {"root": root, "paths": paths, "cfg": cfg, "exp": exp, "fault": fault, "cli": res,
            "finished": finished, "before": before, "first_lines": first_lines,
            "second_lines": lines.lines[len(first_lines):]}


@pytest.mark.slow  # a local Ray: a process tree
def test_resume_completes_without_rerunning_finished_trials(tuned):
    assert tuned["cli"].exit_code == 0, tuned["cli"].output
    assert len(tuned["finished"]) >= 2  # the first run was stopped with trials left to do
    trials = progress_by_trial(tuned["exp"])
    assert len(trials) == len(LRS)
    for t in tuned["finished"]:  # untouched by the resumed run: not one more report
        assert (next(tuned["exp"].glob(f"trial_{t}_*")) / "result.json").read_bytes() == tuned["before"][t]
    for df in trials.values():  # every trial ran each epoch once, from epoch 0, across both runs
        assert list(df["epoch"]) == list(range(len(df)))


@pytest.mark.slow  # a local Ray: a process tree
def test_two_trials_run_at_once_and_asha_stops_early(tuned):
    trials = progress_by_trial(tuned["exp"])
    # Each run of a trial function: from its start to its last report. Count how many overlap at once.
    spans = [(g["started"].iloc[0], g["time"].max()) for df in trials.values() for _, g in df.groupby("started")]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 2  # tune.max_concurrent_trials=2 on 2 CPUs: two at once, never three
    epochs = [len(df) for df in trials.values()]
    assert min(epochs) < 4 and max(epochs) == 4  # ASHA cut at least one trial short (patience could not)
    low = [t for t in trials if _config(tuned["exp"], t)["lr"] < 1e-4]
    assert len(low) == 2 and all(len(trials[t]) < 4 for t in low)
    # ASHA's rungs survived the resume: a trial that first reported after it was still cut.
    interrupted_at = (tuned["root"] / "stop.marker").stat().st_mtime
    assert any(trials[t]["time"].min() > interrupted_at for t in low)
    (rungs_file,) = (tuned["exp"] / "scheduler").glob("asha-*.json")  # and it still holds every first report
    first_rung = json.loads(rungs_file.read_text())["rungs"][0][-1]
    assert first_rung[0] == 1 and set(first_rung[1]) == set(trials)
    for df in trials.values():  # no GPU in this Ray: CPU, one torch thread per CPU of the trial
        assert set(df["device"]) == {"cpu"} and set(df["threads"]) == {1}
    for lines in (tuned["first_lines"], tuned["second_lines"]):
        assert sum("no GPU" in m and "run on CPU" in m for m in lines) == 1


@pytest.mark.slow  # a local Ray: a process tree
def test_a_trial_that_raises_once_is_retried_from_its_checkpoint(tuned):
    victim = tuned["fault"].read_text()  # the trial the hook made raise after reporting epoch 0
    df = progress_by_trial(tuned["exp"])[victim]
    assert list(df["epoch"]) == list(range(len(df))) and len(df) >= 2
    assert not df["resumed"].iloc[0] and df["resumed"].iloc[1]  # epoch 1 came from the restored checkpoint
    table = pd.read_csv(tuned["root"] / "metrics" / "tune_trials.csv", dtype={"trial_id": str})
    assert "error" not in set(table["status"]) and victim in set(table["trial_id"])


@pytest.mark.slow  # a local Ray: a process tree
def test_outputs_name_the_best_trial_and_pretrain_uses_it(tuned):
    from vaeflow.tasks.pretrain import effective_params

    root, paths, cfg = tuned["root"], tuned["paths"], tuned["cfg"]
    trials = progress_by_trial(tuned["exp"])
    best_id = min(trials, key=lambda t: trials[t]["val_nelbo"].min())
    best = read_json(paths.tuned)
    assert best["tuned"] and best["trial_id"] == best_id
    assert best["config"] == _config(tuned["exp"], best_id)
    assert best["val_nelbo"] == pytest.approx(trials[best_id]["val_nelbo"].min())
    table = pd.read_csv(root / "metrics" / "tune_trials.csv", dtype={"trial_id": str}).set_index("trial_id")
    assert set(table.index) == set(trials)
    for t, df in trials.items():
        assert table.loc[t, "epochs"] == len(df)
        assert table.loc[t, "status"] == ("completed" if len(df) == 4 else "stopped_early")
    curves = pd.read_csv(root / "metrics" / "plots" / "tune_curves.csv", dtype={"trial_id": str})
    assert len(curves) == sum(len(df) for df in trials.values())
    assert (root / "reports" / "figures" / "tune_curves.png").stat().st_size > 5000
    for name in ("best_config.json", "tune_trials.csv", "tune.json"):  # the copy beside Ray's results
        local = {"best_config.json": paths.tuned, "tune.json": paths.stage_metrics("tune")}.get(
            name, root / "metrics" / name)
        assert (tuned["exp"] / "outputs" / name).read_bytes() == local.read_bytes()
    on = cfg.model_copy(update={"pretrain": cfg.pretrain.model_copy(update={"use_tuned": True})})
    vae, pre = effective_params(on, paths)
    assert pre.lr == best["config"]["lr"] and vae == cfg.vae


# ------------------------------------------------------------------------- a job on a Ray head


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 with 2 CPUs and no GPU (tests/ray_nodes.py): its own free ports, temp dir and
    auth token, listening on loopback only. At the end it is stopped by PID, and only it. (The experiment
    above runs on an in-process Ray that is already shut down by then, so the two never share the 2 CPUs.)"""
    from tests.ray_nodes import LoopbackCluster

    with LoopbackCluster(head_cpus=2) as c:
        # Token authentication (Ray's default) with the head's own token, for `vaeflow submit`.
        yield {"address": c.address, "jobs": c.dashboard, "env": c.env}
    assert c.alive() == []


@pytest.mark.server
def test_job_submitted_to_a_local_head_writes_its_outputs(project, ray_head):
    """`vaeflow submit` ships the project to the head as a Ray job running `vaeflow tune --address auto`,
    follows it, then copies its outputs from tune.storage_path into the project."""
    storage = project / "cluster_storage"  # an absolute path: what a shared disk or s3:// would be
    sets = TINY + ["tune.max_epochs=2", "tune.grace_period=2", "tune.num_samples=1",
                   "tune.search_space={lr: {grid: [0.003, 0.001]}}", f"tune.storage_path={storage}"]
    res = subprocess.run([str(Path(sys.executable).parent / "vaeflow"), "submit", "--address",
                          ray_head["jobs"], *sum((["--set", s] for s in sets), [])],
                         env=ray_head["env"], cwd=project, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "fetched" in res.stderr + res.stdout
    trials = progress_by_trial(storage / "vae_tune")
    assert len(trials) == 2 and all(len(df) == 2 for df in trials.values())
    best = read_json(project / "models" / "tuned" / "best_config.json")  # fetched back from storage
    assert best["tuned"] and best["experiment"] == f"{storage}/vae_tune"
    best_id = min(trials, key=lambda t: trials[t]["val_nelbo"].min())
    assert best["config"] == _config(storage / "vae_tune", best_id)
    assert (project / "reports" / "figures" / "tune_curves.png").exists()
    assert not (project / "data" / "prepared").exists()  # the job prepared its data in its own working dir


@pytest.mark.slow  # a local Ray: a process tree
def test_sparse_checkpoints_still_report_every_epoch_and_a_retry_redoes_only_unsaved_ones(tmp_path):
    """tune.checkpoint_every_s > 0: metrics every epoch (ASHA's input), a checkpoint at most that often and
    after the last epoch. A trial that fails before its first checkpoint starts again from epoch 0, and
    progress.csv and the trials table hold each epoch once: the run's. Tune's result buffering is on, with
    a window long enough that only a checkpoint, the failure or the end of a trial ends a buffer: the
    trial's actor sends its epochs in three replies (the epochs before the failure, all of them seen by
    Tune's callbacks; the epochs before the checkpoint; the checkpoint's)."""
    import ray

    from vaeflow.tasks import prepare
    from vaeflow.tasks.tune import tune
    from vaeflow.tuning.cluster import start_local

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    cfg = load_config(tmp_path / "params.yaml", TINY + [
        "pretrain.patience=100", "tune.max_epochs=4", "tune.grace_period=4", "tune.num_samples=1",
        "tune.max_concurrent_trials=1", "tune.cpus_per_trial=1", "tune.gpus_per_trial=0", "tune.max_failures=1",
        "tune.checkpoint_every_s=3600", "tune.search_space={lr: {grid: [0.001]}}"])
    paths = Paths(tmp_path)
    prepare.run(cfg, paths)
    old_env = dict(os.environ)
    os.environ["TUNE_RESULT_BUFFER_MIN_TIME_S"] = "600"  # a value set by the user: buffered_results keeps it
    start_local(num_cpus=1, num_gpus=0)
    try:
        fault = {"marker": str(tmp_path / "fault.marker"), "epoch": 2, "kind": "raise"}
        per_reply = _results_per_step()
        with hooks.installed(Hooks(trial_fault=fault)):  # the trial raises once, after reporting epoch 2
            tune(cfg, paths, callbacks=[per_reply])
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(old_env)
    (trial_dir,) = (tmp_path / "runs" / "tune" / "vae_tune").glob("trial_*")
    df = pd.read_csv(trial_dir / "progress.csv")
    # epochs 0-2, the fault, then from epoch 0 again (there was no checkpoint to resume from): the first
    # run's epochs were never written, since the retry reports them again (vaeflow/tuning/progress.py)
    assert list(df["epoch"]) == [0, 1, 2, 3] and not df["resumed"].any() and df["started"].nunique() == 1
    assert per_reply.sizes == [3, 3, 1]  # the failure ends one reply, the checkpoint goes alone; unbuffered: 7 of 1
    assert len(list(trial_dir.glob("checkpoint_*"))) == 1  # the one after the last epoch
    table = pd.read_csv(tmp_path / "metrics" / "tune_trials.csv")
    assert list(table["status"]) == ["completed"] and list(table["epochs"]) == [4]
