"""`vaeflow tune --resume` continues the experiment it finds, with the params that experiment started with.

The start records its resolved params in the experiment's folder (vaeflow/tuning/resume.py); a resume with
params that would change what trials train or how they are judged is refused (exit 2) before Ray starts.
"""
from __future__ import annotations

import json
import logging
import os
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from tests.helpers import REPO, TINY, LogLines
from vaeflow.config import ConfigError, load_config

# Two trials of three epochs: what the user ran before resuming without the --set flags.
START = TINY + ["tune.num_samples=2", "tune.max_epochs=3", "tune.grace_period=1", "tune.max_concurrent_trials=2",
                "tune.cpus_per_trial=1", "tune.gpus_per_trial=0", "tune.checkpoint_every_s=0",
                "tune.search_space={lr: {choice: [0.003, 0.001]}}"]


def _dump(*overrides: str) -> dict:
    return load_config(REPO / "params.yaml", list(overrides)).model_dump(mode="json")


# ----------------------------------------------------------------------------------- without Ray


def test_only_what_trials_train_or_how_they_are_judged_blocks_a_resume():
    from vaeflow.tuning.resume import differences

    started = _dump(*START)
    assert differences(started, _dump(*START)) == []
    # run-only settings, and sections the tune stage never reads, may differ
    run_only = [*START, "threads=4", "device=auto", "tune.cpus_per_trial=2", "tune.max_failures=5",
                "tune.checkpoint_every_s=3", "tune.storage_path=/elsewhere", "tune.order=sampled", "pretrain.epochs=9",
                "pretrain.max_minutes=1", "eval.iwae_samples=5000", "adapt.epochs=3", "data.root=/data"]
    assert differences(started, _dump(*run_only)) == []
    # the user's case: the same command without the start's --set flags
    diffs = {k: (a, b) for k, a, b in differences(started, _dump(*TINY))}
    assert diffs["tune.max_epochs"] == (3, 30) and diffs["tune.num_samples"] == (2, 4)
    assert diffs["tune.grace_period"] == (1, 3) and "tune.search_space" in diffs
    assert not any(k.startswith(("tune.cpus", "tune.gpus", "tune.checkpoint")) for k in diffs)
    for changed, key in (("seed=3", "seed"), ("vae.latent_dim=7", "vae.latent_dim"),
                         ("pretrain.batch_size=16", "pretrain.batch_size"), ("data.subset=200", "data.subset"),
                         ("data.shift.rotation_deg=10", "data.shift.rotation_deg")):
        assert [d[0] for d in differences(started, _dump(*START, changed))] == [key], changed


def test_the_pretrain_keys_a_resume_ignores_are_the_ones_a_trial_ignores():
    """RUN_ONLY['pretrain'] must stay in step with tasks/tune.py's trial_settings."""
    from vaeflow.tasks.pretrain import apply_tuned
    from vaeflow.tasks.tune import trial_settings
    from vaeflow.tuning.resume import RUN_ONLY

    def settings(*overrides):
        cfg = load_config(REPO / "params.yaml", list(overrides))
        return trial_settings(cfg, apply_tuned(cfg, {})[1], SimpleNamespace(levels=17))

    other = {"epochs": 7, "use_tuned": True, "objective": "iwae", "k": 5, "lr_schedule": "burda", "capture": True}
    assert set(other) == RUN_ONLY["pretrain"]
    assert settings(*(f"pretrain.{k}={json.dumps(v)}" for k, v in other.items())) == settings()


def test_the_refusal_names_each_key_with_both_values_and_the_flags_to_pass(tmp_path):
    from vaeflow.tuning.resume import PARAMS_FILE, check_resume, record_start

    exp = str(tmp_path / "runs" / "tune" / "vae_tune")
    record_start(load_config(REPO / "params.yaml", START), exp)
    assert json.loads((tmp_path / "runs/tune/vae_tune" / PARAMS_FILE).read_text())["config"]["tune"]["max_epochs"] == 3
    with pytest.raises(ConfigError) as e:
        check_resume(load_config(REPO / "params.yaml", TINY), exp)
    msg = str(e.value)
    assert msg.startswith(f"--resume: the experiment at {exp} was started with other params")
    assert "  tune.max_epochs: 3 at the start, 30 now\n" in msg and "  tune.num_samples: 2 at the start, 4 now\n" in msg
    assert "Resume with the same params file and --set overrides as the experiment's start" in msg
    assert "--set tune.max_epochs=3 --set tune.num_samples=2" in msg
    assert check_resume(load_config(REPO / "params.yaml", [*START, "threads=2"]), exp)["tune"]["num_samples"] == 2


def test_an_experiment_without_the_record_resumes_unchecked_with_a_warning(tmp_path, caplog):
    from vaeflow.tuning.resume import add_seconds, check_resume

    with caplog.at_level(logging.WARNING, logger="vaeflow"):
        assert check_resume(load_config(REPO / "params.yaml", TINY), str(tmp_path)) is None
        assert add_seconds(str(tmp_path), 2.0, resume=True) == (2.0, 1)
    assert "started by an older vaeflow" in caplog.text and "not counted" in caplog.text
    assert add_seconds(str(tmp_path), 3.0, resume=True) == (5.0, 2)


# ----------------------------------------------------------------------------------- a local Ray


@pytest.mark.slow  # a local Ray: a process tree
def test_resume_with_other_params_is_refused_and_with_the_same_continues(project):
    import ray

    from vaeflow.flows.cli import app
    from vaeflow.tuning.cluster import start_local

    sets = [a for s in START for a in ("--set", s)]
    log = logging.getLogger("vaeflow")
    saved = (list(log.handlers), log.level, log.propagate)  # the CLI sets up its own logging
    lines = LogLines()
    old_env = dict(os.environ)  # ray.init sets RAY_AUTH_MODE for this process
    start_local(num_cpus=2, num_gpus=0)
    try:
        first = CliRunner().invoke(app, ["tune", *sets])
        assert first.exit_code == 0, first.output
        metrics, table = project / "metrics" / "tune.json", project / "metrics" / "tune_trials.csv"
        before = {p: p.read_bytes() for p in (metrics, table)}
        log.addHandler(lines)  # after the first call's _setup_logging, which may replace handlers
        refused = CliRunner().invoke(app, ["tune", "--resume"])  # as docs/ray.md showed it: no --set
        assert refused.exit_code == 2, refused.output
        out = " ".join(refused.output.split())
        assert "tune.max_epochs: 3 at the start, 30 now" in out and "tune.num_samples: 2 at the start, 4 now" in out
        assert {p: p.read_bytes() for p in before} == before  # nothing rewritten
        again = CliRunner().invoke(app, ["tune", "--resume", *sets])
        assert again.exit_code == 0, again.output
    finally:
        log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]
        ray.shutdown()
        os.environ.clear()
        os.environ.update(old_env)
    assert table.read_bytes() == before[table]  # same trials, same labels (none relabelled stopped_early)
    m0, m1 = json.loads(before[metrics]), json.loads(metrics.read_text())
    assert {k: v for k, v in m1.items() if "seconds" not in k and k != "fit_calls"} == \
        {k: v for k, v in m0.items() if "seconds" not in k and k != "fit_calls"}
    assert (m0["fit_calls"], m1["fit_calls"]) == (1, 2)
    assert m1["seconds"] == pytest.approx(m0["seconds"] + m1["seconds_this_call"], abs=0.01)
    assert any(ln.startswith("tune: nothing left to run: all 2 trials") for ln in lines.lines), lines.lines
