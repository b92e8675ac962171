"""The Prefect flow `training_pipeline`: the stages as tasks, wired as the DAG.

prepare → (gmm ∥ pretrain ∥ autoencoders) → (adapt ∥ samplers) → evaluate, on a two-thread pool: while
pretrain trains, gmm then autoencoders use the other thread; samplers runs beside adapt.
Each task skips its stage when DVC says it is up to date (see vaeflow/uptodate.py), retries transient
I/O errors with exponential backoff, and never retries a validation error.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "vaeflow")  # stage logs reach the run logger
# Ephemeral mode starts a throwaway server (and migrates its SQLite DB on first use); on a busy 2-core
# box that takes longer than Prefect's 20 s default.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# No telemetry: its heartbeat also writes to the ephemeral SQLite DB ("database is locked" under load).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

from vaeflow.flows.artifacts import publish  # noqa: E402
from vaeflow.tasks import STAGES, UPSTREAM  # noqa: E402
from vaeflow.tasks import tune as tune_stage  # noqa: E402
from vaeflow import uptodate  # noqa: E402
from vaeflow.config import load_config  # noqa: E402
from vaeflow.io import DISK_ERRNOS, read_json  # noqa: E402
from vaeflow.lock import project_lock  # noqa: E402
from vaeflow.paths import Paths  # noqa: E402

# Errors worth a second try: the filesystem or network hiccuped. A missing file, bad params or bad
# data will fail the same way again, so those fail at once; so does a full or read-only disk (DISK_ERRNOS).
PERMANENT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def is_transient(exc: BaseException) -> bool:
    return (isinstance(exc, (OSError, TimeoutError)) and not isinstance(exc, PERMANENT_OS_ERRORS)
            and getattr(exc, "errno", None) not in DISK_ERRNOS)


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=1), retry_jitter_factor=0.5,
      retry_condition_fn=_retry_transient, cache_policy=None, persist_result=False)
def run_stage(name: str, params_file: str, overrides: list[str], root: str, track: bool) -> dict:
    logger = get_run_logger()
    if track and uptodate.is_up_to_date(name, root):
        logger.info("stage %s is up to date (dvc.lock); skipped", name)
        return {"stage": name, "skipped": True}
    cfg = load_config(params_file, overrides)
    result = STAGES[name](cfg, Paths(Path(root)))
    if track:
        uptodate.record(name, root)
    logger.info("stage %s done", name)
    return {"stage": name, "skipped": False, **(result if isinstance(result, dict) else {})}


STAGE_TASKS = {name: run_stage.with_options(name=name, task_run_name=name) for name in STAGES}


@task(name="tune", task_run_name="tune", cache_policy=None, persist_result=False)
def tune_task(params_file: str, overrides: list[str], root: str) -> dict:
    """Ray Tune, driven from this task: Tune schedules its own trials (ASHA, retries, checkpoints), so the
    flow sees one task. Not retried by Prefect: a retry would start a new experiment (`vaeflow tune
    --resume` continues one). Why not prefect-ray's RayTaskRunner: docs/ray.md."""
    return tune_stage.tune(load_config(params_file, overrides), Paths(Path(root)))


# gmm and pretrain run concurrently; VAEFLOW_FLOW_WORKERS=1 runs the tasks one at a time (a 1-core box,
# or bench/bench_flow_overhead.py measuring the flow's own overhead against direct stage calls).
try:
    WORKERS = int(os.environ.get("VAEFLOW_FLOW_WORKERS", "2"))
    assert WORKERS >= 1
except (ValueError, AssertionError):
    raise SystemExit(f"VAEFLOW_FLOW_WORKERS must be a whole number ≥ 1, got {os.environ['VAEFLOW_FLOW_WORKERS']!r}")


@flow(name="training_pipeline", task_runner=ThreadPoolTaskRunner(max_workers=WORKERS), validate_parameters=True)
def training_pipeline(params_file: str = "params.yaml", overrides: list[str] | None = None, root: str = ".",
                      tune: bool = False, lock_wait: float = 3600.0) -> dict:
    """prepare → (gmm ∥ pretrain ∥ autoencoders) → (adapt ∥ samplers) → evaluate, on the validated params.

    With `tune`, or with pretrain.use_tuned and no tuned config yet, a `tune` task (Ray Tune) runs
    between prepare and pretrain.

    Holds the project lock (vaeflow/lock.py) for the whole run: a scheduled or deployed run waits up to
    `lock_wait` seconds for another run in the same project (inside `vaeflow run`, which holds it, it is free)."""
    def waiting(path: Path) -> None:
        logging.getLogger("vaeflow").info("waiting up to %gs for another vaeflow run (lock %s)", lock_wait, path)

    with project_lock(root, lock_wait, waiting, hint="raise the flow's lock_wait parameter"):
        return _pipeline(params_file, overrides, root, tune)


def _pipeline(params_file: str, overrides: list[str] | None, root: str, tune: bool) -> dict:
    logger = get_run_logger()
    overrides = list(overrides or [])
    cfg = load_config(params_file, overrides)  # fail fast, before any task: a ConfigError is never retried
    track = uptodate.tracks(root, params_file, overrides)
    if not track:
        logger.info("params differ from %s/params.yaml (or no DVC project): every stage runs, dvc.lock untouched", root)
    tuning = tune or (cfg.pretrain.use_tuned and not tune_stage.has_tuned(Paths(Path(root))))
    futures: dict[str, Any] = {}
    for name in STAGES:  # insertion order is a topological order of UPSTREAM
        waits = [futures[u] for u in UPSTREAM[name]]
        if name == "pretrain" and tuning:
            futures["tune"] = tune_task.submit(params_file, overrides, root, wait_for=[futures["prepare"]])
            waits.append(futures["tune"])
        futures[name] = STAGE_TASKS[name].submit(name, params_file, overrides, root, track,
                                                 wait_for=waits)
    results = {name: f.result() for name, f in futures.items()}
    ran = [n for n, r in results.items() if not r.get("skipped")]
    paths = Paths(Path(root))
    publish(paths, ran, params_file, overrides, track)  # report, tables, provenance: flows/artifacts.py
    return read_json(paths.all_metrics)
