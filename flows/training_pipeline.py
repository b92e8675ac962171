"""The Prefect flow `training_pipeline`: the stages as tasks, wired as the DAG.

prepare → (gmm ∥ pretrain ∥ autoencoders) → (adapt ∥ samplers) → evaluate, on a two-thread pool: while
pretrain trains, gmm then autoencoders use the other thread (autoencoders in a process of its own, so that
it leaves pretrain the GIL); samplers runs beside adapt. Off the critical path: each stage's dvc.lock record
(a background thread, `_Records`) and, once a thread is free while pretrain trains, the start of adapt's
worker processes (`_Prewarm`).
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
from prefect.futures import as_completed  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

from vaeflow.flows.artifacts import publish  # noqa: E402
from vaeflow.tasks import PREWARM, STAGES, UPSTREAM  # noqa: E402
from vaeflow.tasks.workers import stage_runner as _stage_fn  # noqa: E402
from vaeflow.tasks import tune as tune_stage  # noqa: E402
from vaeflow import uptodate  # noqa: E402
from vaeflow.config import flow_workers, load_config  # noqa: E402
from vaeflow.io import DISK_ERRNOS, read_json  # noqa: E402
from vaeflow import stop  # noqa: E402
from vaeflow.lock import project_lock  # noqa: E402
from vaeflow.paths import Paths, run_dir  # noqa: E402

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
def run_stage(name: str, params_file: str, overrides: list[str], root: str, track: bool,
              out: str | None = None) -> dict:
    """One stage. `root` is the project (DVC's, when `track`); `out` where its artifacts go (default: root)."""
    logger = get_run_logger()
    if track and uptodate.is_up_to_date(name, root):
        logger.info("stage %s is up to date (dvc.lock); skipped", name)
        return {"stage": name, "skipped": True}
    cfg = load_config(params_file, overrides)
    TRAINING.add(name)
    try:
        result = _stage_fn(name, cfg, WORKERS)(cfg, Paths(Path(out or root)))
    finally:
        TRAINING.discard(name)
    if track:
        RECORDS.submit(name, root)
    logger.info("stage %s done", name)
    return {"stage": name, "skipped": False, **(result if isinstance(result, dict) else {})}


class _Records:
    """Each stage's dvc.lock record (`dvc commit`, ~0.4 s of CPU, most of it rewriting dvc.lock) on one
    background thread, in order, so that the next stage starts at once: on the critical path prepare →
    pretrain → adapt → evaluate that was ~1.5 s. Safe because a record reads only its own stage's deps and
    outs, which no later stage writes, and DVC calls are serialised (vaeflow/uptodate.py). The flow waits
    for every record before it writes the report and before it ends, also when a stage failed (what
    finished stays recorded), and then raises a record's failure. A process killed in between loses at
    most the last record: that stage runs again, resuming from its checkpoints."""

    def __init__(self) -> None:
        self.futures: list = []
        self.pool: Any = None

    def submit(self, name: str, root: str, if_changed: bool = False) -> None:
        import contextvars
        from concurrent.futures import ThreadPoolExecutor

        self.pool = self.pool or ThreadPoolExecutor(1, thread_name_prefix="dvc-record")
        ctx = contextvars.copy_context()  # DVC's log lines stay the stage task's (Prefect's run context)
        self.futures.append(self.pool.submit(ctx.run, uptodate.record, name, root, if_changed))

    def wait(self) -> None:
        futures, self.futures = self.futures, []
        errors = [e for f in futures if (e := f.exception()) is not None]
        if errors:
            raise errors[0]


RECORDS = _Records()
TRAINING: set[str] = set()  # the stages running now that were not up to date (the flow's threads share it)
STAGE_TASKS = {name: run_stage.with_options(name=name, task_run_name=name) for name in STAGES}


@task(name="tune", task_run_name="tune", cache_policy=None, persist_result=False)
def tune_task(params_file: str, overrides: list[str], root: str, out: str | None = None) -> dict:
    """Ray Tune, driven from this task: Tune schedules its own trials (ASHA, retries, checkpoints), so the
    flow sees one task. Not retried by Prefect: a retry would start a new experiment (`vaeflow tune
    --resume` continues one). Why not prefect-ray's RayTaskRunner: docs/ray.md."""
    return tune_stage.tune(load_config(params_file, overrides), Paths(Path(out or root)))


# gmm and pretrain run concurrently; VAEFLOW_FLOW_WORKERS=1 runs the tasks one at a time (a 1-core box,
# or bench/bench_flow_overhead.py measuring the flow's own overhead against direct stage calls). `vaeflow run`
# and `validate` check it first, so a bad value is an `error:` line and exit 2 there.
WORKERS = flow_workers()


@flow(name="training_pipeline", task_runner=ThreadPoolTaskRunner(max_workers=WORKERS), validate_parameters=True)
def training_pipeline(params_file: str = "params.yaml", overrides: list[str] | None = None, root: str = ".",
                      tune: bool = False, lock_wait: float = 3600.0, out: str | None = None) -> dict:
    """prepare → (gmm ∥ pretrain ∥ autoencoders) → (adapt ∥ samplers) → evaluate, on the validated params.

    With `tune`, or with pretrain.use_tuned and no tuned config yet, a `tune` task (Ray Tune) runs
    between prepare and pretrain.

    Artifacts go to `out` (relative to `root`) when given; otherwise a run other than the one dvc.yaml
    describes writes under root/runs/ in a DVC project, so the default results stay up to date
    (vaeflow.paths.run_dir).

    Holds the project lock (vaeflow/lock.py) for the whole run: a scheduled or deployed run waits up to
    `lock_wait` seconds for another run in the same project (inside `vaeflow run`, which holds it, it is free)."""
    def waiting(path: Path) -> None:
        logging.getLogger("vaeflow").info("waiting up to %gs for another vaeflow run (lock %s)", lock_wait, path)

    # stop.forwarding: here, inside the flow, where Prefect's SIGTERM bridge is already in place (it raises in this
    # thread only); the stages' threads see the flag and stop within a step (vaeflow/stop.py)
    with project_lock(root, lock_wait, waiting, hint="raise the flow's lock_wait parameter"), stop.forwarding():
        try:
            return _pipeline(params_file, overrides, root, tune, out)
        except Exception as e:
            if not getattr(e, "vaeflow_failure", None):  # not a stage's (those are reported in _run_dag)
                get_run_logger().error("%s", e, exc_info=e, extra={REPORTED: True})
                e.vaeflow_failure = str(e)  # type: ignore[attr-defined]
            raise


def _pipeline(params_file: str, overrides: list[str] | None, root: str, tune: bool, out: str | None = None) -> dict:
    logger = get_run_logger()
    overrides = list(overrides or [])
    cfg = load_config(params_file, overrides)  # fail fast, before any task: a ConfigError is never retried
    track = uptodate.tracks(root, params_file, overrides)
    dest = run_dir(root, params_file, overrides, None if out is None else Path(root) / out, track,
                   uptodate.is_dvc_project(root))
    if dest.resolve() != Path(root).resolve():
        track = False
        logger.info("artifacts go to %s (the project's own results, DVC's, are left as they are)", dest)
    elif not track:
        logger.info("params differ from %s/params.yaml (or no DVC project): every stage runs, dvc.lock untouched", root)
    if track and uptodate.declares(root, uptodate.CHECK):  # params.yaml was validated above: what the check stage does
        uptodate.stamp_checked(root)
        RECORDS.submit(uptodate.CHECK, root, if_changed=True)
    tuning = tune or (cfg.pretrain.use_tuned and not tune_stage.has_tuned(Paths(dest)))
    upstream = {name: list(UPSTREAM[name]) for name in STAGES}  # insertion order: a topological order
    submit = {name: (lambda n: lambda waits: STAGE_TASKS[n].submit(n, params_file, overrides, root, track,
                                                                   str(dest), wait_for=waits))(name)
              for name in STAGES}
    if tuning:
        upstream = {"tune": ["prepare"], **upstream}
        upstream["pretrain"].append("tune")
        submit["tune"] = lambda waits: tune_task.submit(params_file, overrides, root, str(dest), wait_for=waits)
    warm = _Prewarm(cfg, upstream)
    try:
        results = _run_dag(upstream, submit, logger, idle=warm)
    except BaseException:
        try:  # what finished stays recorded; the stage's failure is the one raised
            RECORDS.wait()
        except Exception as e:
            logger.warning("recording a finished stage in dvc.lock failed too: %s", e)
        raise
    finally:
        warm.release()
    RECORDS.wait()
    ran = [n for n, r in results.items() if not r.get("skipped")]
    paths = Paths(dest)
    publish(paths, ran, params_file, overrides, track)  # report, tables, provenance: flows/artifacts.py
    return read_json(paths.all_metrics)


class _Prewarm:
    """`idle(pending, running)` for _run_dag: once a thread of the pool is free while an upstream of a pending
    stage with a PREWARM entry trains (not just checks that it is up to date), start that stage's warm-up,
    once; `release()` shuts down what no stage took."""

    def __init__(self, cfg: Any, upstream: dict[str, list[str]]) -> None:
        self.cfg, self.upstream, self.started = cfg, upstream, []

    def _module(self, name: str) -> Any:
        import importlib

        return importlib.import_module(f"vaeflow.tasks.{PREWARM[name]}")

    def __call__(self, pending: list[str], running: list[str]) -> None:
        if len(running) >= WORKERS:
            return
        for name in pending:
            if name in PREWARM and name not in self.started and TRAINING & set(self.upstream[name]):
                self.started.append(name)
                self._module(name).prewarm(self.cfg)

    def release(self) -> None:
        for name in self.started:
            self._module(name).release()


def _run_dag(upstream: dict[str, list[str]], submit: dict[str, Any], logger: Any,
             completed: Any = as_completed, idle: Any = None) -> dict[str, dict]:
    """Submit each task once its upstream tasks have completed (on the flow's thread pool, so gmm and
    autoencoders share the second thread while pretrain trains, as with Prefect's wait_for). A failed task's
    downstream tasks are never submitted: Prefect would otherwise log one "Upstream task run ... did not
    reach a 'COMPLETED' state" per downstream task. Tasks that do not depend on it still finish (their
    results are recorded, so a re-run resumes after them). Then the failure is logged once, naming the stage
    and what did not run, and its exception is raised unchanged (its type decides the CLI's exit code)."""
    futures: dict[str, Any] = {}
    results: dict[str, dict] = {}
    failed: dict[str, BaseException] = {}
    pending = list(upstream)
    while pending or len(results) + len(failed) < len(futures):
        for name in list(pending):
            if any(u in failed or u not in futures and u not in pending for u in upstream[name]):
                pending.remove(name)  # an upstream failed (or was itself skipped for one): never runs
            elif all(u in results for u in upstream[name]):
                pending.remove(name)
                futures[name] = submit[name]([futures[u] for u in upstream[name]])  # completed: UI edges
        running = [f for n, f in futures.items() if n not in results and n not in failed]
        if not running:
            break
        if idle is not None:  # a thread may be free: work ahead for a stage still waiting (_Prewarm)
            idle(pending, [n for n, f in futures.items() if n not in results and n not in failed])
        done = next(iter(completed(running)))  # the first to finish (Prefect's as_completed; tests pass another)
        name = next(n for n, f in futures.items() if f is done)
        value = done.result(raise_on_failure=False)  # the final state, held in memory (results aren't persisted)
        if isinstance(value, BaseException):
            failed[name] = value
        else:
            results[name] = value
    if failed:
        name, exc = next(iter(failed.items()))
        not_run = [n for n in upstream if n not in futures]
        also = [f"{n} ({e})" for n, e in failed.items() if n != name]  # stages beside it can fail too
        summary = (f"stage {name} failed: {exc}" + (f"; also failed: {', '.join(also)}" if also else "")
                   + (f"; not run: {', '.join(not_run)}" if not_run else ""))
        logger.error(summary, exc_info=exc, extra={REPORTED: True})
        exc.vaeflow_failure = summary  # type: ignore[attr-defined]  the CLI's one line (flows/cli.py run)
        raise exc
    return results


# Prefect's own lines about a failure this flow reports itself (see _run_dag), dropped so that it is said once:
# each failed task's "Finished in state Failed(...)", and the flow's "Encountered exception during execution"
# (with the traceback; _run_dag's line carries it) and "Finished in state Failed(...)".
REPORTED = "vaeflow_reported"
_PREFECT_FAILURE_LINES = ("Finished in state Failed(", "Encountered exception during execution")


class _ReportedOnce(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if getattr(exc, "vaeflow_failure", None) and not getattr(record, REPORTED, False):
            return False
        if record.name == "prefect.task_runs" and record.getMessage().startswith(_PREFECT_FAILURE_LINES[0]):
            return getattr(record, "task_run_name", None) not in (*STAGES, "tune")
        if record.name == "prefect.flow_runs" and record.getMessage().startswith(_PREFECT_FAILURE_LINES):
            return getattr(record, "flow_name", None) != "training_pipeline"
        return True


for _name in ("prefect.task_runs", "prefect.flow_runs"):
    logging.getLogger(_name).addFilter(_ReportedOnce())


class _NotOnConsole(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, REPORTED, False)


def cli_console() -> None:
    """For `vaeflow run`, in one format and saying a failure once:
    - vaeflow's own lines (the stages', and DVC's, which vaeflow/uptodate.py routes through it) go to the
      terminal through Prefect's console handler, in its format beside the flow's and tasks' lines, instead
      of rich's second format interleaved with them; they still reach the server (Prefect's API handler);
    - the flow's failure line still goes to the server (UI, `prefect flow-run logs`), but not to the
      terminal, where the CLI prints the failure itself with its exit code."""
    from prefect.logging.handlers import APILogHandler, PrefectConsoleHandler

    consoles = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    if not consoles:  # Prefect's logging configured otherwise: leave the CLI's handlers as they are
        return
    for handler in consoles:
        handler.addFilter(_NotOnConsole())
    log = logging.getLogger("vaeflow")
    log.handlers = [h for h in log.handlers if isinstance(h, APILogHandler)]
    log.propagate = True
