"""Ray Tune without running Ray: the search space, the trial fingerprint, refused settings, how the trainable
buffers its results for Tune's controller, and the per-trial files Tune's loggers write. The runs on a local Ray
(ASHA, retries, resume, jobs) are in tests/test_tune_ray.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.helpers import REPO
from vaeflow.config import ConfigError, load_config
from vaeflow.io import ArtifactError, read_json
from vaeflow.paths import Paths



# ----------------------------------------------------------------------------------- without Ray


def test_search_space_becomes_ray_domains():
    from ray.tune.search.sample import Categorical, Float, Integer

    from vaeflow.tuning.space import to_ray

    cfg = load_config(REPO / "params.yaml", ["tune.search_space.latent_dim={randint: [2, 5]}",
                                              "tune.search_space.batch_size={grid: [32, 64]}"])
    space = to_ray(cfg.tune.search_space)
    assert isinstance(space["lr"], Float) and isinstance(space["latent_dim"], Integer)
    assert isinstance(space["hidden"], Categorical) and space["batch_size"] == {"grid_search": [32, 64]}
    lrs = [space["lr"].sample() for _ in range(200)]
    assert 3e-4 <= min(lrs) and max(lrs) <= 3e-3
    assert {space["latent_dim"].sample() for _ in range(200)} == {2, 3, 4}  # Ray's randint excludes high
    assert space["hidden"].categories == [[256, 128], [512, 256], [128, 64]]


def test_a_trials_fingerprint_covers_what_it_trains_and_nothing_else():
    """A trial resumes from its checkpoint only if that matches; pretrain settings a trial ignores must not
    restart it, and everything it trains with must."""
    from types import SimpleNamespace

    from vaeflow.tasks.pretrain import apply_tuned
    from vaeflow.tasks.tune import trial_fingerprint, trial_settings

    data = SimpleNamespace(levels=17)

    def fp(*overrides, config=None):
        cfg = load_config(REPO / "params.yaml", list(overrides))
        vcfg, pcfg = apply_tuned(cfg, config or {"lr": 1e-3})
        return trial_fingerprint(cfg.seed, vcfg, trial_settings(cfg, pcfg, data), ("h",))

    base = fp()
    for ignored in ("pretrain.max_minutes=3", "pretrain.objective=iwae", "pretrain.epochs=7",
                    "pretrain.checkpoint_every_s=0", "tune.checkpoint_every_s=1", "tune.num_samples=9"):
        assert fp(ignored) == base, ignored
    for trained in ("pretrain.batch_size=32", "pretrain.beta=0.5", "pretrain.patience=3", "tune.max_epochs=50",
                    "vae.latent_dim=3", "seed=1", "tune.grace_period=5"):
        assert (fp(trained) != base) == (trained != "tune.grace_period=5"), trained  # ASHA's, not the trial's
    assert fp(config={"lr": 2e-3}) != base


@pytest.mark.parametrize("override, words", [
    ("tune.search_space.epochs={choice: [3]}", ["'epochs' cannot be tuned"]),
    ("tune.search_space.lr={sample: [1, 2]}", ["lr", "unknown sampler 'sample'"]),
    ("tune.search_space.lr={loguniform: [0, 0.1]}", ["0 is not a valid pretrain.lr"]),
    ("tune.search_space.lr={uniform: [0.1]}", ["lr.uniform", "two bounds"]),
    ("tune.search_space.latent_dim={randint: [2, 1026]}", ["1025 is not a valid vae.latent_dim"]),
    ("tune.search_space.lr={uniform: [0.1, 0.01]}", ["low must be below high"]),
    ("tune.search_space.batch_size={choice: [64, 0]}", ["0 is not a valid pretrain.batch_size"]),
    ("tune.search_space.hidden={grid: [[8], []]}", ["[] is not a valid vae.hidden"]),
    ("tune.grace_period=40", ["grace_period must not exceed max_epochs"]),
    ("tune.gpus_per_trial=1.5", ["whole number of GPUs"]),
    ("tune.order=shortest_first", ["tune.order", "longest_first", "sampled"]),
])
def test_bad_tune_params_are_refused_by_name(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "params.yaml", [override])
    assert all(w in str(e.value) for w in words), str(e.value)


def test_stage_without_use_tuned_skips_ray_and_pretrain_refuses_its_file(project, tiny_cfg):
    from vaeflow.tasks import tune as stage
    from vaeflow.tasks.pretrain import effective_params

    paths = Paths(project)
    assert stage.run(tiny_cfg, paths) == {"tuned": False}
    assert read_json(paths.tuned)["tuned"] is False
    on = tiny_cfg.model_copy(update={"pretrain": tiny_cfg.pretrain.model_copy(update={"use_tuned": True})})
    with pytest.raises(ArtifactError, match="holds no tuned config"):
        effective_params(on, paths)


def test_cli_refuses_a_resume_with_nothing_to_resume_before_starting_ray(project):
    from vaeflow.flows.cli import app

    res = CliRunner().invoke(app, ["tune", "--resume"])
    assert res.exit_code == 2
    assert "no Tune experiment to resume at" in res.output and str(project / "runs" / "tune" / "vae_tune") in \
        res.output.replace("\n", "")
    res = CliRunner().invoke(app, ["tune", "--set", "tune.search_space={}"])
    assert res.exit_code == 2 and "tune.search_space is empty" in res.output
    assert not (project / "runs").exists() and not (project / "data").exists()


class _Scripted:
    """A stand-in for a trial's Tune actor, no Ray needed: each train() returns the next scripted result at
    once (raises it, if it is an exception)."""

    def __init__(self, script: list):
        self.script = list(script)

    def train(self):
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def reset_config(self, new_config):
        return True


def test_tunes_controller_call_buffers_a_trials_results():
    """Tune's controller, on the buffer settings tasks/tune.py gives it, asks a trial's actor for results; the
    actor of vaeflow's trainable sends all of them before the checkpoint in one reply, and the checkpoint's
    alone in the next (why: BufferedResults' docstring). (Ray 2.60's controller
    passes the two settings in the order Trainable.train_buffered does not take them: Ray's own method sends
    one result per reply. If this starts to fail with 1 result below, Ray changed that call: see
    vaeflow/tuning/experiment.py's BufferedResults.) No timing: train() returns at once, well inside 0.5 s."""
    from types import MethodType, SimpleNamespace

    from ray.tune import Trainable
    from ray.tune.execution.tune_controller import TuneController

    from vaeflow.tasks.tune import RESULT_BUFFER
    from vaeflow.tuning.experiment import BufferedResults

    controller = SimpleNamespace(  # what TuneController.__init__ reads from the environment buffered_results sets
        _buffer_length=int(RESULT_BUFFER["TUNE_RESULT_BUFFER_LENGTH"]), _buffer_max_time_s=100.0,
        _buffer_min_time_s=float(RESULT_BUFFER["TUNE_RESULT_BUFFER_MIN_TIME_S"]),
        _actor_manager=SimpleNamespace(num_actor_tasks=2), _on_training_result=None, _trial_task_failure=None)
    calls = []
    controller._maybe_buffer_training = MethodType(TuneController._maybe_buffer_training, controller)
    controller._schedule_trial_task = lambda **kw: calls.append((kw["method_name"], kw["args"]))
    TuneController._schedule_trial_train(controller, SimpleNamespace(checkpoint_at_end=False, checkpoint_freq=0))
    ((method, args),) = calls
    assert method == "train_buffered"

    epochs = [{"epoch": e} for e in range(5)] + [{"epoch": 5, "should_checkpoint": True}, {"epoch": 6}]

    class Trial(BufferedResults, _Scripted):
        pass

    trial = Trial(epochs)
    replies = [[r["epoch"] for r in getattr(trial, method)(*args)] for _ in range(3)]
    assert replies == [[0, 1, 2, 3, 4], [5], [6]]
    trial = Trial([{"epoch": 0}, {"epoch": 1, "should_checkpoint": True}, {"epoch": 0}])
    assert [r["epoch"] for r in trial.train_buffered(*args)] == [0]
    assert trial.reset_config({}) and trial.train_buffered(*args) == [{"epoch": 0}]  # reused: not the last trial's
    first = {"epoch": 0, "should_checkpoint": True}  # a checkpoint's result first in a reply: sent at once
    assert Trial([first]).train_buffered(*args) == [first]
    assert len(Trainable.train_buffered(_Scripted(epochs), *args)) == 1  # the cause: Ray's loop, as called

    class Own(_Scripted):
        def train_buffered(self, *args, **kwargs):
            return "Ray's own", args, kwargs

    class Other(BufferedResults, Own):  # a call unlike Ray 2.60's goes to Ray's method as it is
        pass

    assert Other([]).train_buffered(buffer_time_s=0.5) == ("Ray's own", (), {"buffer_time_s": 0.5})


def test_a_trial_that_fails_mid_buffer_sends_the_results_before_the_failure_first():
    """As without buffering: Tune logs the epochs reported before a failure (and ASHA sees them), then the
    failure comes with the next call; a reused actor does not pass a stopped trial's failure on."""
    from vaeflow.tuning.experiment import BufferedResults

    class Trial(BufferedResults, _Scripted):
        pass

    boom = RuntimeError("diverged")
    t = Trial([{"epoch": 0}, {"epoch": 1}, boom])
    assert [r["epoch"] for r in t.train_buffered(1000, 600.0)] == [0, 1]
    with pytest.raises(RuntimeError, match="diverged"):
        t.train_buffered(1000, 600.0)
    t = Trial([boom])  # nothing collected yet: the failure at once
    with pytest.raises(RuntimeError, match="diverged"):
        t.train_buffered(1000, 600.0)
    t = Trial([{"epoch": 0}, boom, {"epoch": 0, "done": True}])
    assert len(t.train_buffered(1000, 600.0)) == 1
    assert t.reset_config({}) and t.train_buffered(1000, 600.0) == [{"epoch": 0, "done": True}]
    t = Trial([{"epoch": 0}, {"epoch": 1, "done": True}, {"epoch": 2}])
    assert len(t.train_buffered(1000, 600.0)) == 2 and len(Trial([{}, {}, {}]).train_buffered(2, 600.0)) == 2


class _Trial:
    """What Ray's CSV and JSON loggers read of a trial: a folder, and no checkpoint to copy logs back from."""

    def __init__(self, path: Path):
        self.local_path, self.checkpoint, self.config, self.evaluated_params = str(path), None, {}, {}
        path.mkdir(parents=True)

    def init_local_path(self):
        pass


def test_tunes_files_hold_each_epoch_once_written_when_it_can_no_longer_rerun(tmp_path):
    """progress.csv and result.json: a result is written when a checkpoint at or after it is registered, or
    its trial completes; results held when the trial fails are dropped (the retry reports them again)."""
    from vaeflow.tuning.progress import ProgressCSV, ResultJSON

    trial = _Trial(tmp_path / "trial")
    loggers = [ProgressCSV(), ResultJSON()]
    files = lambda: (pd.read_csv(tmp_path / "trial" / "progress.csv")["epoch"].tolist()  # noqa: E731
                     if (tmp_path / "trial" / "progress.csv").exists() else [],
                     [json.loads(ln)["epoch"] for ln in (tmp_path / "trial" / "result.json").read_text().splitlines()]
                     if (tmp_path / "trial" / "result.json").exists() else [])
    kw = dict(iteration=0, trials=[trial], trial=trial)
    for log in loggers:
        log.on_trial_start(**kw)
    def report(*epochs):
        for e in epochs:
            for log in loggers:
                log.on_trial_result(**kw, result={"epoch": e, "val_nelbo": 1.0 / (e + 1)})

    report(0, 1)
    assert files() == ([], [])  # nothing is safe yet: a failure now would rerun epochs 0 and 1
    for log in loggers:
        log.on_checkpoint(**kw, checkpoint=None)
    assert files() == ([0, 1], [0, 1])
    report(2, 3)
    for log in loggers:
        log.on_trial_recover(**kw)  # killed before epoch 3's checkpoint was registered: retried from epoch 1
    assert files() == ([0, 1], [0, 1])
    report(2, 3, 4)
    for log in loggers:
        log.on_trial_complete(**kw)
    assert files() == ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
    for log in loggers:
        log.on_trial_result(**kw, result={"epoch": 9, "val_nelbo": 0.0})
        log.on_trial_error(**kw)  # a failure for good: a --resume would rerun it from the checkpoint
    assert files() == ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
