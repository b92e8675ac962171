"""The `vaeflow` command. Thin: parse, validate params, call the stage functions, report errors cleanly.

The entry point: the app and its shared helpers live in flows/app.py; this module holds the pipeline
commands (run, serve, stage, validate) and imports the modules that register the others (deps, init,
report, tune, submit).

Exit codes: 0 ok, 1 a stage failed at run time (NaN loss, full or read-only disk), 2 invalid params or input,
3 another run holds the project lock, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from vaeflow.config import Config, flow_workers
from vaeflow.flows import deps, init_cli, report_cli, tune_cli  # noqa: F401  each registers its commands on the app
from vaeflow.flows.app import (ParamsOpt, SetOpt, WaitOpt, _config, _fail, _NoTracebackFor, _project_lock,
                               _setup_logging, _user_errors, app, console, guarded, log)
from vaeflow.paths import Paths
from vaeflow.tasks import STAGES, UPSTREAM, dag_text

def _nothing_to_do(cfg: Config, params: Path, overrides: list[str]) -> bool:
    """In Prefect's ephemeral mode, a run whose every stage DVC finds up to date skips starting Prefect's
    throwaway server (most of a no-op run's time) and says so. With PREFECT_API_URL set (environment or
    profile), the flow always runs, so the server records every run, skipped stages included."""
    from vaeflow import uptodate
    from vaeflow.flows.local_server import api_url_configured
    from vaeflow.io import read_json

    if api_url_configured() or not uptodate.tracks(".", params, overrides):
        return False
    if cfg.pretrain.use_tuned and not (Paths().tuned.is_file() and read_json(Paths().tuned).get("tuned")):
        return False  # the flow would tune first
    return guarded(lambda: uptodate.all_up_to_date("."))


def _report_up_to_date() -> None:
    from vaeflow.io import read_json

    for name in STAGES:
        log.info("stage %s is up to date (dvc.lock); skipped", name)
    log.info("every stage is up to date (dvc status): nothing to run, so the flow was not started "
             "(set PREFECT_API_URL to record no-op runs on a Prefect server)")
    console.print(summary_table(guarded(lambda: read_json(Paths().all_metrics))))


def _early_server():
    """Prefect's ephemeral API server, started now so that it boots while this process imports torch and
    Prefect (flows/local_server.py); None where Prefect would not start one (PREFECT_API_URL is set)."""
    from vaeflow.flows import local_server

    if not local_server.wanted():
        return None
    server = local_server.LocalServer()
    log.debug("started Prefect's local API server for this run at %s", server.url)
    return server


def _use_server(server) -> None:
    """Point Prefect at the early server: before Prefect is imported (its settings are read then), and only
    once the run is going ahead, so that the up-to-date check still sees no PREFECT_API_URL of the user's
    and a run that stops early leaves the environment as it was."""
    if server is not None:
        os.environ["PREFECT_API_URL"] = server.url


def summary_table(metrics: dict) -> Table:
    t = Table(title="vaeflow summary", show_lines=False)
    t.add_column("metric"), t.add_column("value", justify="right")
    g, v = metrics.get("gmm", {}), metrics.get("vae", {})
    if g:
        t.add_row(f"GMM test NLL (K={g['n_components']})", f"{g['test_nll_nats']:.2f} nats  {g['test_bits_per_dim']:.4f} b/d")
    if v:
        t.add_row("VAE test −ELBO", f"{v['test_nelbo_nats']:.2f} nats")
        t.add_row(f"VAE test NLL (IWAE k={v['iwae_samples']})", f"{v['test_nll_nats']:.2f} nats  {v['test_bits_per_dim']:.4f} b/d")
    for name, r in metrics.get("adapt", {}).items():
        t.add_row(f"target acc: {name}", f"{r['target_test_acc']:.3f}")
    for name, ok in metrics.get("checks", {}).items():
        t.add_row(f"check: {name}", "[green]yes[/]" if ok else "[red]no[/]")
    return t


@app.command(help=f"""Run the Prefect flow `training_pipeline`: {dag_text()}.

    Stages that DVC finds up to date are skipped. Without PREFECT_API_URL the flow runs in Prefect's
    ephemeral mode; with it, against that server.""")
def run(params: Path = ParamsOpt, set_: Optional[list[str]] = SetOpt,
        wait: float = WaitOpt,
        out: Optional[Path] = typer.Option(None, "--out", help="where this run's artifacts go; default: the "
                                           "project for params.yaml as is, runs/<name> for --set or another "
                                           "params file (in a DVC project), so the default results stay"),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="debug-level log lines")) -> None:
    from vaeflow import uptodate
    from vaeflow.paths import run_dir

    _setup_logging(verbose)
    # First, so that Prefect's server boots (~3 s of CPU, on the other core) while this process imports torch
    # for the params' validation and then Prefect: started after them, the flow waited ~1.5 s for it. A run
    # that ends early (bad params, nothing to do, the project locked) stops it (also at exit: atexit).
    server = _early_server()
    try:
        cfg = _config(params, set_)
        _check_inputs(cfg)  # a missing folder:/npz: path stops here, before the flow starts
        from vaeflow.flows.local_server import check_configured_server

        guarded(check_configured_server)  # a PREFECT_API_URL with no server behind it: said now, not in a traceback
        dest = run_dir(".", params, set_ or [], out, uptodate.tracks(".", params, set_ or []),
                       uptodate.is_dvc_project("."))
        lock = _project_lock(wait)
    except BaseException:
        if server is not None:
            server.stop()
        raise
    try:
        if dest.resolve() == Path.cwd().resolve() and _nothing_to_do(cfg, params, set_ or []):
            if server is not None:
                server.stop()
            return _report_up_to_date()
        _use_server(server)
        from vaeflow.runtime import set_threads

        set_threads(cfg.threads)
        from vaeflow.flows.training_pipeline import cli_console, training_pipeline
        from vaeflow.training.vae_trainer import NonFiniteLoss

        cli_console()  # one log format; a failed stage is said once, below, with its exit code

        quiet = _NoTracebackFor(_user_errors() + (NonFiniteLoss,))
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).addFilter(quiet)
        t0 = time.perf_counter()
        if server is not None:
            from vaeflow.runtime import import_optimizers

            import_optimizers()  # while the server boots on the other core, not on pretrain's path (~0.8 s)
            guarded(server.wait)
        try:
            metrics = training_pipeline(params_file=str(params), overrides=list(set_ or []), root=".",
                                        out=None if out is None else str(out))
        except BaseException as e:  # noqa: BLE001  guarded decides: exit code, or a traceback for a bug
            _failed_once(e)
    finally:
        lock.release()
    console.print(summary_table(metrics))
    console.print(f"done in {time.perf_counter() - t0:.1f}s: {Paths(dest).all_metrics}, {Paths(dest).report}",
                  markup=False)


def _failed_once(e: BaseException) -> None:
    """A stage the flow reports as failed (its `vaeflow_failure`: the stage, the error with its file or
    parameter, what did not run) ends the run with one line and the exit code `guarded` gives its error."""
    summary = getattr(e, "vaeflow_failure", None)
    if summary is None:
        guarded(lambda: _reraise(e))
        raise e
    with console.capture():  # guarded's own line would say the error a second time, without the stage
        try:
            guarded(lambda: _reraise(e))
        except typer.Exit as x:
            code = x.exit_code
        else:
            code = 1
    _fail(code, f"{summary} (exit code {code})")


def _reraise(e: BaseException) -> None:
    raise e


@app.command()
def serve(cron: Optional[str] = typer.Option(None, "--cron", help='cron schedule, e.g. "0 3 * * *"'),
          interval: Optional[int] = typer.Option(None, "--interval", min=1, help="schedule every N seconds"),
          name: str = typer.Option("vaeflow-scheduled", "--name", help="deployment name"),
          params: Path = ParamsOpt, set_: Optional[list[str]] = SetOpt,
          lock_wait: float = typer.Option(3600.0, "--lock-wait", min=0, help="seconds a scheduled run waits for "
                                          "another run in this project (the project lock) before it fails")) -> None:
    """Register a scheduled deployment of the flow on the server at PREFECT_API_URL and serve it.

    The API URL may come from the environment or the active Prefect profile, as for `vaeflow run`. Each
    scheduled run holds the project lock, like `vaeflow run`."""
    from vaeflow.flows.local_server import api_url_configured, check_configured_server

    _config(params, set_)
    if (cron is None) == (interval is None):
        _fail(2, "give exactly one of --cron or --interval")
    if cron is not None:
        _check_cron(cron)
    if not api_url_configured():
        _fail(2, "PREFECT_API_URL is not set (environment or Prefect profile): start a server (prefect server "
                 "start --host 127.0.0.1) and export PREFECT_API_URL=http://127.0.0.1:4200/api")
    guarded(check_configured_server)
    from vaeflow.flows.training_pipeline import training_pipeline

    training_pipeline.serve(name=name, cron=cron, interval=interval,
                            parameters={"params_file": str(params.resolve()), "overrides": list(set_ or []),
                                        "root": str(Path.cwd().resolve()), "lock_wait": lock_wait})


def _check_cron(cron: str) -> None:
    """A bad --cron is refused here, with exit 2, before anything is registered (Prefect would raise a
    pydantic traceback from inside `serve`)."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron)
    except ValidationError:
        _fail(2, f"--cron {cron!r} is not a valid cron schedule: five fields, minute hour day-of-month month "
                 "day-of-week, e.g. \"0 3 * * *\" (03:00 every day)")


@app.command()
def stage(name: str = typer.Argument(..., help=" | ".join(UPSTREAM)),
          params: Path = ParamsOpt, set_: Optional[list[str]] = SetOpt, wait: float = WaitOpt,
          verbose: bool = typer.Option(False, "--verbose", "-v", help="debug-level log lines")) -> None:
    """Run one stage (what dvc.yaml calls). Holds the same project lock as `run`."""
    from vaeflow import uptodate

    _setup_logging(verbose)
    if name not in STAGES:
        _fail(2, f"unknown stage '{name}'; choose one of {', '.join(STAGES)}")
    cfg = _config(params, set_)
    if uptodate.is_dvc_project(".") and not uptodate.tracks(".", params, set_ or []):
        # A stage writes into the project, where DVC tracks its outputs against params.yaml and dvc.lock;
        # `run` sends such runs to runs/<name>/ instead, and a stage cannot run alone there.
        _fail(2, f"vaeflow stage {name} writes this DVC project's tracked outputs, which must match params.yaml: "
                 "with --set or another params file they would not. Use `vaeflow run --set …` (writes "
                 "runs/<name>/), `dvc exp run -S …`, or edit params.yaml")
    from vaeflow.runtime import set_threads

    set_threads(cfg.threads)
    lock = _project_lock(wait)
    try:
        guarded(lambda: STAGES[name](cfg, Paths()))
    finally:
        lock.release()


@app.command()
def validate(params: Path = ParamsOpt, set_: Optional[list[str]] = SetOpt,
             stamp: bool = typer.Option(False, "--stamp", help="write data/params_checked.txt instead of printing the "
                                        "config: dvc.yaml's check stage, run before any stage deletes its outputs")
             ) -> None:
    """Validate the params file and overrides and check that the data paths they name exist; print the
    resolved config, run nothing."""
    import yaml

    from vaeflow import uptodate

    if stamp and (set_ or params.resolve() != Path("params.yaml").resolve()):
        _fail(2, "--stamp records that the project's params.yaml passed; it takes neither --set nor --params")
    cfg = _config(params, set_)
    _check_inputs(cfg)
    if stamp:
        uptodate.stamp_checked(".")
        typer.echo(f"{params}: valid")
        return
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def _check_inputs(cfg: Config) -> None:
    """What `run` and `validate` check beyond the params' schema, each an exit 2 naming it: the data locations
    the datasets read (folder:/npz: paths, data.root's files) and VAEFLOW_FLOW_WORKERS."""
    from vaeflow.data.files import check_roots

    guarded(lambda: check_roots(cfg.data))
    guarded(flow_workers)


def main() -> None:
    from vaeflow import stop

    stop.raise_on_sigterm()  # a `kill PID` exits through the cleanup, with 143 and a message, as Ctrl-C does
    try:
        app()
    finally:
        # At exit the interpreter's last garbage collection walks every object torch, Prefect, DVC, scikit-learn
        # and matplotlib made: ~1 s of a cold `vaeflow run`. Frozen objects are skipped by it; refcounting still
        # frees them, and the atexit handlers (Prefect's log drain, the local server's stop) still run.
        import gc

        gc.freeze()


if __name__ == "__main__":  # `python -m vaeflow.flows.cli` (`python -m vaeflow` is vaeflow/__main__.py)
    main()
