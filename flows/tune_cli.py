"""`vaeflow tune` and `vaeflow submit`: Ray Tune on this machine, on a cluster, or as a Ray job.

Registered on the app (flows/app.py) when flows/cli.py, the entry point, imports this module.
"""
from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Optional

import typer

from vaeflow.flows.app import (ParamsOpt, SetOpt, WaitOpt, _config, _fail, _project_lock, _setup_logging, app,
                               console, guarded)
from vaeflow.paths import Paths

# Paths a job never needs: environments, caches and artifacts (Ray also skips what .gitignore lists).
JOB_EXCLUDES = [".venv", ".git", ".dvc/cache", "data/prepared", "models", "metrics", "reports", "runs",
                "__pycache__", "*.egg-info"]


@app.command()
def tune(params: Path = ParamsOpt, set_: Optional[list[str]] = SetOpt,
         address: Optional[str] = typer.Option(
             None, "--address", metavar="auto|HOST:PORT", help="Ray cluster to run on: auto (on a node or inside `ray job submit`), "
                                     "HOST:PORT or ray://HOST:PORT. Default: a private local Ray."),
         resume: bool = typer.Option(False, "--resume", help="continue the interrupted experiment "
                                     "(tune.storage_path/tune.experiment_name); finished trials are kept. Pass "
                                     "the params and --set flags it started with: other ones are refused"),
         if_used: bool = typer.Option(False, "--if-used", help="tune only when pretrain.use_tuned is true, else "
                                      "record that tuning is off (the stage-function form; dvc.yaml has no tune stage, docs/ray.md says why)"),
         wait: float = WaitOpt,
         verbose: bool = typer.Option(False, "--verbose", "-v", help="debug-level log lines")) -> None:
    """Ray Tune over tune.search_space with ASHA on val −ELBO; writes models/tuned/best_config.json.

    Holds the project lock, like `run` and `stage`: it writes what pretrain reads."""
    _setup_logging(verbose)
    cfg = _config(params, set_)
    from vaeflow.tasks import tune as stage
    from vaeflow.tuning.report import TuneIncomplete

    def go() -> dict:
        try:
            if if_used and not resume:
                return stage.run(cfg, Paths())
            return stage.tune(cfg, Paths(), address=address, resume=resume)
        except KeyboardInterrupt:  # a second Ctrl-C; the first lets Tune save its state and return
            raise TuneIncomplete("tune: interrupted; continue with `vaeflow tune --resume`") from None

    lock = _project_lock(wait)
    try:
        summary = guarded(go)
    except TuneIncomplete as e:
        _fail(1, str(e))
    finally:
        lock.release()
    if summary.get("tuned", True):
        console.print(f"best val −ELBO {summary['best_val_nelbo']:.2f} nats with {summary['best_config']} "
                      f"({summary['n_trials']} trials, {summary['n_stopped_early']} stopped early)", markup=False)


@app.command()
def submit(address: Optional[str] = typer.Option(
               None, "--address", help="the cluster's job server (dashboard), e.g. http://HEAD:8265. Ray lets "
                                       "RAY_API_SERVER_ADDRESS or RAY_ADDRESS override it; without any, a Ray "
                                       "running on this machine"),
           params: Path = ParamsOpt, set_: Optional[list[str]] = SetOpt,
           resume: bool = typer.Option(False, "--resume", help="submit `vaeflow tune --resume`"),
           working_dir: Path = typer.Option(Path("."), "--working-dir", help="shipped to the cluster as the job's cwd"),
           wait: bool = typer.Option(True, "--wait/--no-wait", help="follow the job's logs to the end, then copy "
                                     "its outputs from tune.storage_path into this project"),
           lock_wait: float = typer.Option(3600.0, "--lock-wait", min=0, help="seconds to wait for another run in "
                                           "this project (the project lock) before copying the outputs")) -> None:
    """Submit `vaeflow tune --address auto` as a Ray job (a thin wrapper over Ray's JobSubmissionClient)."""
    _setup_logging()
    cfg = _config(params, set_)  # fail here, not on the cluster
    from ray.job_submission import JobStatus, JobSubmissionClient

    try:
        rel_params = params.resolve().relative_to(working_dir.resolve())
    except ValueError:
        _fail(2, f"{params} is outside --working-dir {working_dir}; the job could not read it")
    args = ["vaeflow", "tune", "--address", "auto", "--params", str(rel_params)]
    args += [a for s in set_ or [] for a in ("--set", s)] + (["--resume"] if resume else [])
    client = guarded(lambda: JobSubmissionClient(address))
    job = client.submit_job(entrypoint=shlex.join(args), metadata={"vaeflow": "tune"}, runtime_env={
        "working_dir": str(working_dir), "excludes": JOB_EXCLUDES,
        "env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "DO_NOT_TRACK": "1"}})
    console.print(f"submitted job {job}: {shlex.join(args)}\n  logs: ray job logs {job} --follow", markup=False)
    if not wait:
        return
    _follow(client, job)
    status = client.get_job_status(job)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        time.sleep(1)
        status = client.get_job_status(job)
    if status != JobStatus.SUCCEEDED:
        _fail(1, f"job {job} ended {status.value}; see `ray job logs {job}`")
    _fetch(cfg, lock_wait)


def _follow(client, job: str) -> None:
    import asyncio

    async def tail() -> None:
        async for lines in client.tail_job_logs(job):
            print(lines, end="", flush=True)

    asyncio.run(tail())


def _fetch(cfg, lock_wait: float) -> None:
    """Copy the job's outputs into models/tuned, metrics/ and reports/, holding the project lock: pretrain
    reads models/tuned, so a copy must not land in the middle of another run."""
    from vaeflow.tuning.report import fetch
    from vaeflow.tuning.storage import experiment_path

    if "://" not in cfg.tune.storage_path and not Path(cfg.tune.storage_path).is_absolute():
        console.print(f"tune.storage_path={cfg.tune.storage_path} is relative: the results stay in the job's "
                      "working dir on the cluster. Set it to s3://… or a shared path to have them copied here.",
                      markup=False)
        return
    lock = _project_lock(lock_wait, hint="pass a longer --lock-wait")
    try:
        got = guarded(lambda: fetch(experiment_path(cfg, Path(".")), Paths()))
    finally:
        lock.release()
    console.print("fetched " + ", ".join(str(p) for p in got) if got else "the job wrote no outputs to fetch",
                  markup=False)
