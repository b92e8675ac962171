"""What an experiment was started with, kept in its folder, so that `vaeflow tune --resume` continues that
experiment and not a different one.

`Tuner.restore` keeps Tune's own state (search space, samples, scheduler), but the trial function and the
trials table are built from the params of the call that resumes: a resume without the start's `--set`
flags would train unfinished trials with other settings (their checkpoints' fingerprints would not match,
so they would start over) and label finished ones by another `tune.max_epochs`. So the start writes its
resolved params to `<experiment>/vaeflow_params.json`, and a resume compares them with its own and refuses
(ConfigError: exit 2) where they differ in what a trial trains or how trials are judged.

Each call's wall time of `Tuner.fit` is added to `<experiment>/vaeflow_seconds.json`, so that
metrics/tune.json's `seconds` is the experiment's, not only the last resume's.

Both files go through the experiment's pyarrow filesystem (storage.py): a local path, a shared disk or s3://.
Ray is imported only by `left_to_run`.
"""
from __future__ import annotations

import datetime
import json
import logging
import math
import shlex
from typing import Any

from vaeflow.config import Config, ConfigError
from vaeflow.tuning.storage import read_file, storage_fs, write_file

log = logging.getLogger("vaeflow")
PARAMS_FILE, SECONDS_FILE = "vaeflow_params.json", "vaeflow_seconds.json"

# The sections the tune stage reads (tasks/tune.py: seed, data, vae, pretrain, tune). The others (gmm, eval,
# ae, samplers, adapt) may change between the start and a resume: no trial sees them.
STAGE_SECTIONS = ("data", "vae", "pretrain", "tune")
# Run-only keys, on top of each section's own RUN_ONLY (vaeflow/config/), the set checkpoint fingerprints
# also leave out. None of them changes what a trial trains or how it is judged:
RUN_ONLY = {
    "": {"device", "threads"},  # where and with how many torch threads (as for every stage)
    # where dataset files are read from and how they are fetched, not which images: the prepared data's own
    # hashes are in every trial's checkpoint fingerprint
    "data": {"root", "verify_md5", "download"},
    # pretrain settings a trial does not use (tasks/tune.py trial_settings: constant lr, the ELBO, the tune
    # section's epochs); tests/test_tune_resume.py checks trial_settings ignores each of them
    "pretrain": {"epochs", "use_tuned", "objective", "k", "lr_schedule", "capture"},
    # resources, retries, checkpoint keeping and logging, and where the experiment lives (so a moved or
    # shared storage path still resumes); the order trials start in (a resume goes on with the start's
    # searcher, restored from Tune's state, whatever it says now); num_samples, search_space, max_epochs,
    # grace_period and reduction_factor decide which trials run and how ASHA and the trials table judge them:
    # compared
    "tune": {"max_concurrent_trials", "cpus_per_trial", "gpus_per_trial", "max_failures", "keep_checkpoints",
             "checkpoint_every_s", "tensorboard", "storage_path", "experiment_name", "order"},
}
WHOLE = {"tune.search_space"}  # compared, and shown, as one value: a --set of it replaces it whole
_ABSENT = object()  # a key one side's schema does not have (an experiment started by another version)


def compared(dump: dict[str, Any]) -> dict[str, Any]:
    """A Config's `model_dump(mode="json")` (or the start's, read back) as {dotted key: value}, only the keys
    a resume must not change: top-level values (seed) and the stage's sections, less run-only keys."""
    out: dict[str, Any] = {}
    for name, value in dump.items():
        if name in RUN_ONLY[""] or (isinstance(value, dict) and name not in STAGE_SECTIONS):
            continue
        if not isinstance(value, dict):
            out[name] = value
            continue
        field = Config.model_fields.get(name)
        skip = RUN_ONLY.get(name, set()) | set(getattr(field and field.annotation, "RUN_ONLY", ()))
        out.update(_flat({k: v for k, v in value.items() if k not in skip}, f"{name}."))
    return out


def _flat(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = prefix + k
        if isinstance(v, dict) and v and key not in WHOLE:
            out.update(_flat(v, key + "."))  # e.g. data.shift.rotation_deg
        else:
            out[key] = v
    return out


def differences(started: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, value at the start, value now) for every compared key that differs, in key order."""
    a, b = compared(started), compared(now)
    return [(k, a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in sorted(a.keys() | b.keys())
            if a.get(k, _ABSENT) != b.get(k, _ABSENT)]


def _show(v: Any) -> str:
    return "(not a setting then)" if v is _ABSENT else json.dumps(v)


def refusal(experiment: str, diffs: list[tuple[str, Any, Any]]) -> str:
    """The message of a refused --resume: every differing key with both values, and the flags that match."""
    lines = "\n".join(f"  {k}: {_show(then)} at the start, {_show(now)} now" for k, then, now in diffs)
    # The start's values as --set flags (JSON is YAML, which --set parses); quoted for a POSIX shell.
    flags = " ".join(f"--set {shlex.quote(f'{k}={json.dumps(then)}')}" for k, then, _ in diffs if then is not _ABSENT)
    hint = f", e.g. `vaeflow tune --resume {flags}`" if flags else ""
    return (f"--resume: the experiment at {experiment} was started with other params, which would change what "
            f"its trials train or how they are judged:\n{lines}\n"
            f"Resume with the same params file and --set overrides as the experiment's start{hint}; "
            "or start a new experiment under another tune.experiment_name.")


def _read(path: str) -> Any | None:
    """A JSON file in the experiment's storage, or None when it is not there."""
    data = read_file(*storage_fs(path))
    return None if data is None else json.loads(data.decode())


def _write(path: str, obj: Any) -> None:
    write_file(*storage_fs(path), (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def record_start(cfg: Config, experiment: str) -> None:
    """At a new experiment's start: its resolved params, and a fresh seconds ledger (a new experiment in the
    folder of an old one is what a later --resume restores)."""
    _write(f"{experiment}/{PARAMS_FILE}", {"config": cfg.model_dump(mode="json")})
    _write(f"{experiment}/{SECONDS_FILE}", {"calls": []})


def check_resume(cfg: Config, experiment: str) -> dict[str, Any] | None:
    """Before a resume starts Ray: refuse params that differ from the start's; returns the start's params
    (None for an experiment started without the file, by an older vaeflow: it resumes unchecked)."""
    started = _read(f"{experiment}/{PARAMS_FILE}")
    if started is None:
        log.warning("tune: %s has no %s (started by an older vaeflow): resuming with these params unchecked. "
                    "They must be the experiment's start's (same params file and --set flags), or its unfinished "
                    "trials train with other settings and the trials table judges them by this tune.max_epochs",
                    experiment, PARAMS_FILE)
        return None
    now = cfg.model_dump(mode="json")
    diffs = differences(started["config"], now)
    if diffs:
        raise ConfigError(refusal(experiment, diffs))
    then_all, now_all = _flat(started["config"], ""), _flat(now, "")
    changed = [k for k in sorted(now_all) if then_all.get(k, _ABSENT) != now_all[k]]
    if changed:  # run-only, or sections the stage does not read: fine, but say which
        log.info("tune: resuming with settings that differ from the start's but do not change the trials: %s",
                 ", ".join(changed))
    return started["config"]


def add_seconds(experiment: str, seconds: float, resume: bool) -> tuple[float, int]:
    """Add this call's fit time to the experiment's ledger; (total seconds, calls counted). A ledger that is
    missing (an older vaeflow's start) or unreadable counts this call only, and says so."""
    path = f"{experiment}/{SECONDS_FILE}"
    try:
        ledger = _read(path)
    except (OSError, ValueError):
        ledger = None
    if ledger is None and resume:
        log.warning("tune: no %s in %s: the seconds before this --resume are unknown and not counted",
                    SECONDS_FILE, experiment)
    calls = (ledger or {}).get("calls", []) + [{
        "resume": resume, "seconds": round(seconds, 3),
        "ended": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}]
    try:
        _write(path, {"calls": calls})
    except OSError as e:  # the time is a report, not a result: a storage hiccup must not fail the experiment
        log.warning("tune: could not update %s: %s", path, e)
    return sum(c["seconds"] for c in calls), len(calls)


def expected_trials(dump: dict[str, Any]) -> int:
    """Trials Tune creates for a config: num_samples times every grid's size."""
    t = dump["tune"]
    return t["num_samples"] * math.prod(len(spec["grid"]) for spec in t["search_space"].values() if "grid" in spec)


def left_to_run(experiment: str, dump: dict[str, Any]) -> tuple[int, int]:
    """(trials finished without error, trials the experiment has in all) of the experiment as last saved.

    `Tuner.restore` with resume_unfinished and resume_errored reruns the rest; when every trial has finished
    and the search has created them all, `fit` only reloads them (nothing is trained) and returns."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(experiment).trials
    done = sum(t.status == "TERMINATED" for t in trials)
    return done, max(len(trials), expected_trials(dump))
