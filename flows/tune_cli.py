"""`vaeflow tune` and `vaeflow submit`: Ray Tune on this machine, on a cluster, or as a Ray job.

Registered on the app (flows/app.py) when flows/cli.py, the entry point, imports this module.
"""
from __future__ import annotations

import os
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
             None, "--address", metavar="auto|HOST:PORT",
             help="Ray cluster to run on: auto (on a node or inside `ray job submit`), HOST:PORT or "
                  "ray://HOST:PORT. Default: a private local Ray."),
         resume: bool = typer.Option(False, "--resume", help="continue the interrupted experiment "
                                     "(tune.storage_path/tune.experiment_name); finished trials are kept. Pass "
                                     "the params and --set flags it started with: other ones are refused"),
         if_used: bool = typer.Option(False, "--if-used", help="tune only when pretrain.use_tuned is true, else "
                                      "record that tuning is off (the stage-function form; dvc.yaml has no tune "
                                      "stage, docs/ray.md says why)"),
         wait: float = WaitOpt,
         verbose: bool = typer.Option(False, "--verbose", "-v", help="debug-level log lines")) -> None:
    """Ray Tune over tune.search_space with ASHA on val −ELBO; writes models/tuned/best_config.json.

    Holds the project lock, like `run` and `stage`: it writes what pretrain reads."""
    _setup_logging(verbose)
    cfg = _config(params, set_)
    if address and (resume or not if_used or cfg.pretrain.use_tuned):  # only where it will be joined
        from vaeflow.tuning.cluster import check_address

        guarded(lambda: check_address(address))  # before the lock and data prep: Ray would retry it for ever
    from vaeflow.tasks import tune as stage
    from vaeflow.tuning.report import TuneIncomplete

    def go() -> dict:
        try:
            if if_used and not resume:
                return stage.run(cfg, Paths(), address=address)
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
    from ray.job_submission import JobStatus

    try:
        rel_params = params.resolve().relative_to(working_dir.resolve())
    except ValueError:
        _fail(2, f"{params} is outside --working-dir {working_dir}; the job could not read it")
    args = ["vaeflow", "tune", "--address", "auto", "--params", str(rel_params)]
    args += [a for s in set_ or [] for a in ("--set", s)] + (["--resume"] if resume else [])
    client = _job_client(address)
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


DASHBOARD_HINT = ("`vaeflow submit --address` takes the cluster's job server, its dashboard URL http(s)://HOST:PORT "
                  "(port 8265 by default; a head started with `ray start --head --dashboard-host=HOST`)")


def _job_client(address: str | None):
    """Ray's JobSubmissionClient for `address`, or exit 2 with one line saying what is wrong with it.

    The address is checked before Ray sees it: a malformed one raised a traceback, and one where no job server
    listens made Ray retry (42 s for a GCS port). Errors Ray raises while connecting (nothing there, a wrong
    token) are the user's too; they are mapped here, where only the connection is made."""
    from ray.exceptions import AuthenticationError, RpcError
    from ray.job_submission import JobSubmissionClient
    from vaeflow.tuning.cluster import TOKEN_HINT, check_reachable, host_port, one_line

    # Ray's order (ray.dashboard.utils.get_address_for_submission_client): these variables win over --address.
    env = next(((k, os.environ[k]) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if os.environ.get(k)), None)
    target = env[1] if env else address
    shown = f"{target} (from {env[0]}, which Ray lets override --address)" if env else target
    # No address at all: Ray looks for a cluster on this machine; its errors are mapped below.
    if target and target.startswith(("http://", "https://")):
        from urllib.parse import urlsplit

        try:
            url = urlsplit(target)
            host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
        except ValueError:  # a port that is no number, or out of range
            host = None
        if not host or " " in target:
            _fail(2, f"--address {target!r} is not a URL; {DASHBOARD_HINT}")
        guarded(lambda: check_reachable(host, port, shown, "Ray job server", DASHBOARD_HINT))
    elif target and env is None:  # the documented form only: a GCS HOST:PORT here sent Ray to ask that GCS for 42 s
        _fail(2, f"--address {target!r} is not a job server URL; {DASHBOARD_HINT}. (HOST:PORT and "
                 "ray://HOST:PORT are what `vaeflow tune --address` takes.)")
    elif target:  # a RAY_ADDRESS Ray resolves through the cluster's GCS: at least something must listen there
        parsed = host_port(target.split("://", 1)[-1])
        if parsed:
            guarded(lambda: check_reachable(*parsed, shown, "Ray cluster", DASHBOARD_HINT))
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, AuthenticationError, RpcError, ValueError) as e:
        # A wrong token shows as AuthenticationError from the job server, as an RPC error from a GCS.
        token = isinstance(e, AuthenticationError) or "token" in str(e).lower()
        where = shown or "this machine (no --address, RAY_API_SERVER_ADDRESS or RAY_ADDRESS)"
        hint = TOKEN_HINT if token else DASHBOARD_HINT if target is None else \
            f"Is the head's dashboard there? {TOKEN_HINT}"
        _fail(2, f"could not reach a Ray job server at {where}: {one_line(e)}. {hint}")


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
