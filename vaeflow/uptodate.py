"""One notion of "up to date" for every entry point: DVC's, as recorded in dvc.lock.

A stage is up to date when `dvc status` finds its deps (code, inputs), its params and its outs
unchanged since dvc.lock last recorded it. `dvc repro` decides with exactly this; the Prefect flow
asks the same question before running a stage and, after running it, records the stage in dvc.lock
(`dvc commit`). So after `vaeflow run`, `dvc status` agrees by construction: there is one cache, not two.

A run with `--set` overrides or another params file is not what params.yaml says, so it is neither
skipped nor recorded (recording it would make dvc.lock lie).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

log = logging.getLogger("vaeflow")
_dvc_lock = threading.Lock()  # DVC's repo lock is per process; the flow runs stages in threads


def is_dvc_project(root: str | Path) -> bool:
    root = Path(root)
    return (root / "dvc.yaml").is_file() and (root / ".dvc").is_dir()


def tracks(root: str | Path, params_file: str | Path, overrides: list[str]) -> bool:
    """Whether a run with these arguments is what dvc.yaml describes, so DVC's bookkeeping applies."""
    return (is_dvc_project(root) and not overrides
            and Path(params_file).resolve() == (Path(root) / "params.yaml").resolve())


def is_up_to_date(stage: str, root: str | Path) -> bool:
    from dvc.repo import Repo

    with _dvc_lock, Repo(str(root)) as repo:
        return not repo.status(targets=[stage])


def record(stage: str, root: str | Path) -> None:
    """Write the stage's deps, params and outs hashes into dvc.lock and cache its outs."""
    from dvc.repo import Repo

    with _dvc_lock, Repo(str(root)) as repo:
        repo.commit(stage, force=True)


def all_up_to_date(root: str | Path) -> bool:
    """Whether `dvc status` finds every stage of the pipeline up to date (one call for all of them)."""
    from dvc.repo import Repo

    with _dvc_lock, Repo(str(root)) as repo:
        return not repo.status()
