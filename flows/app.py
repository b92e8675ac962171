"""The `vaeflow` Typer app and what every command module shares: the console and log, the common options,
and the error handling that turns a fixable error into one line and an exit code (flows/cli.py's header
lists the codes).

This module imports no command module. Each command module (cli.py, deps.py, report_cli.py, tune_cli.py)
imports the app from here and registers its commands on it; flows/cli.py, the entry point, imports them all.
Keeping the app here, below the commands, is what keeps the imports one-way (no module imports the entry).
"""
from __future__ import annotations

import inspect
import logging
import signal
from pathlib import Path
from typing import Callable, Optional

import click
import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.markup import escape
from rich.logging import RichHandler

from vaeflow.config import Config, ConfigError, load_config
from vaeflow.io import ArtifactError
from vaeflow.tasks import dag_text


class _PipelineFirst(TyperGroup):
    """`vaeflow --help` lists the pipeline's commands first. Typer lists commands in the order they were
    registered, which is the order the command modules happen to be imported by flows/cli.py."""

    FIRST = ("init", "run", "stage", "serve", "validate")

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        return [n for n in self.FIRST if n in names] + [n for n in names if n not in self.FIRST]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            _tidy_help(cmd, ctx)
        return cmd

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        return _flag_without_type(super().get_help_option(ctx))


def _flag_without_type(opt: click.Option | None) -> click.Option | None:
    """Typer shows a flag's type as `<bool>` (`--help <bool>`), which reads as if the flag took a value."""
    # duck-typed: typer 0.29 builds its options on a click of its own (typer._click), not the `click` package
    if getattr(opt, "is_flag", False) and opt.metavar is None:
        opt.metavar = ""
    return opt


def _tidy_help(cmd: click.Command, ctx: click.Context) -> None:
    """A command's help as a reader expects it: typer keeps the docstring's line breaks after its first
    paragraph, and Rich then wraps those lines again (ragged text); flags without a type."""
    if cmd.help and not getattr(cmd, "_tidied", False):
        cmd.help = "\n\n".join(p if p.startswith("\b") else " ".join(p.split())
                                for p in inspect.cleandoc(cmd.help).split("\n\n"))
        cmd._tidied = True
    for p in cmd.params:
        _flag_without_type(p)
    _flag_without_type(cmd.get_help_option(ctx))


app = typer.Typer(cls=_PipelineFirst, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help=f"Reproducible training pipeline, {dag_text()}, run by Prefect, DVC and Ray.")
console = Console(stderr=True)
log = logging.getLogger("vaeflow")

ParamsOpt = typer.Option(Path("params.yaml"), "--params", "-p", help="params file (validated before anything runs)")
SetOpt = typer.Option(None, "--set", "-s", metavar="KEY=VALUE",
                      help="override a param, e.g. --set vae.latent_dim=8 (repeatable)")
WaitOpt = typer.Option(0.0, "--wait", min=0, metavar="SECONDS",
                       help="seconds to wait for another run in this directory")


def _setup_logging(verbose: bool = False) -> None:
    if not log.handlers:
        log.addHandler(RichHandler(console=console, show_path=False, rich_tracebacks=False))
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def _fail(code: int, msg: str) -> None:
    # escaped: a message quotes paths and YAML, whose square brackets Rich would read as markup and drop
    console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False)
    raise typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can fix (params, missing or corrupted inputs): exit 2 with their message, no traceback."""
    from vaeflow.data import DataError
    from vaeflow.flows.local_server import ServerError

    return (ConfigError, DataError, ArtifactError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
            PermissionError, ServerError)


class _NoTracebackFor(logging.Filter):
    """Prefect logs a failed flow run with its traceback; for the errors `guarded` reports in one line
    that traceback is noise. Any other exception keeps it."""

    def __init__(self, kinds: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.kinds = kinds

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.kinds):
            record.exc_info, record.exc_text = None, None
        return True


def guarded(fn: Callable[[], object]) -> object:
    """Run `fn`, turning the errors a user can fix into one clear message and a non-zero exit."""
    from vaeflow.training.vae_trainer import NonFiniteLoss

    try:
        return fn()
    except _user_errors() as e:
        _fail(2, str(e))
    except (NonFiniteLoss, FloatingPointError) as e:
        _fail(1, str(e))
    except OSError as e:
        from vaeflow.io import DISK_ERRNOS

        if e.errno not in DISK_ERRNOS:
            raise  # anything else is a bug worth its traceback
        _fail(1, f"{e}; checkpoints and finished artifacts are intact, free space and re-run to resume")
    except KeyboardInterrupt as e:  # Ctrl-C, or a SIGTERM (vaeflow/stop.py): 128 + the signal's number
        if getattr(e, "signum", signal.SIGINT) == signal.SIGTERM:
            _fail(143, "terminated (SIGTERM); re-run the same command to resume from the last checkpoint")
        _fail(130, "interrupted; re-run the same command to resume from the last checkpoint")


def _config(params: Path, overrides: Optional[list[str]]) -> Config:
    return guarded(lambda: load_config(params, overrides or []))


def _project_lock(wait: float, hint: str = "pass --wait SECONDS to queue behind it"):
    """One pipeline run per project directory at a time (vaeflow/lock.py): a second one waits `wait`
    seconds, then fails with exit code 3."""
    from vaeflow.lock import ProjectLocked, acquire

    def waiting(path: Path) -> None:
        console.print(f"waiting up to {wait:g}s for another vaeflow run in this directory (lock {path})",
                      highlight=False, markup=False)
    try:
        lock = acquire(".", wait, waiting, hint)
    except ProjectLocked as e:
        _fail(3, str(e))
    from vaeflow import faults

    faults.pause_point("lock:acquired")  # lets the concurrency test see the moment a waiting run gets in
    return lock
