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


class _ToVaeflowLog(logging.Handler):
    """DVC's log records, re-emitted once through the "vaeflow" logger (its format, its destinations)."""

    def emit(self, record: logging.LogRecord) -> None:
        copy = logging.makeLogRecord(record.__dict__)
        copy.msg, copy.args = f"dvc: {record.getMessage()}", None
        log.handle(copy)


_TO_VAEFLOW = _ToVaeflowLog()


def _repo():
    """DVC's Repo class, with DVC's log routed: importing dvc gives its loggers their own console handlers,
    and Prefect gives the root logger one, so every DVC line came out twice in two formats (stdout and
    stderr). Routed through the "vaeflow" logger only, each appears once, like every other stage line."""
    from dvc.repo import Repo

    for name in ("dvc", "dvc_objects", "dvc_data"):
        lg = logging.getLogger(name)
        lg.handlers, lg.propagate = [_TO_VAEFLOW], False
    return Repo


# dvc.yaml's first stage: `vaeflow validate --stamp`, on params.yaml alone. Every other stage lists its output
# as a dep, so DVC runs it first: DVC deletes a stage's outputs before it runs the stage's command, and a bad
# value (`dvc exp run -S adapt.epochs=-1`, an edit) refused only there would have cost them.
CHECK = "check"
CHECKED_TEXT = "params.yaml passed `vaeflow validate` (dvc.yaml's check stage)\n"


def stamp_checked(root: str | Path = ".") -> None:
    """Write the check stage's output, the same text every time (so the stages depending on it stay up to date)."""
    from vaeflow.io import write_text
    from vaeflow.paths import Paths

    path = Paths(Path(root)).params_checked
    if not path.is_file() or path.read_text() != CHECKED_TEXT:
        write_text(path, CHECKED_TEXT)


def _declared(root: str | Path) -> dict | None:
    """dvc.yaml's stages as written, without DVC; None where it cannot be read as plain YAML with stages."""
    import yaml

    try:
        stages = yaml.safe_load((Path(root) / "dvc.yaml").read_text())["stages"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None
    return stages if isinstance(stages, dict) else None


def declares(root: str | Path, stage: str) -> bool:
    """Whether dvc.yaml has this stage (a project made before the check stage existed has none)."""
    return stage in (_declared(root) or {})


def is_dvc_project(root: str | Path) -> bool:
    root = Path(root)
    return (root / "dvc.yaml").is_file() and (root / ".dvc").is_dir()


def tracks(root: str | Path, params_file: str | Path, overrides: list[str]) -> bool:
    """Whether a run with these arguments is what dvc.yaml describes, so DVC's bookkeeping applies."""
    return (is_dvc_project(root) and not overrides
            and Path(params_file).resolve() == (Path(root) / "params.yaml").resolve())


def _an_out_is_missing(root: str | Path, stages: list[str] | None = None) -> bool:
    """Whether an output that dvc.yaml declares for one of `stages` (default: all) is absent. `dvc status`
    then reports that stage as changed (the output deleted), so it is not up to date: answered here without
    importing DVC or opening the repo, which on a cold run (every output missing) is most of the check's
    cost. False whenever dvc.yaml says more than plain paths (templating, wdir, a frozen stage, a parse
    error): DVC decides then."""
    spec = _declared(root)
    try:
        chosen = [spec[name] for name in (spec if stages is None else stages)]
    except (KeyError, TypeError):  # no dvc.yaml to read (None), or a stage it lacks
        return False
    for st in chosen:
        if not isinstance(st, dict) or st.keys() & {"foreach", "matrix", "do", "wdir", "frozen"}:
            return False
        for out in [*st.get("outs", []), *st.get("metrics", []), *st.get("plots", [])]:
            path = next(iter(out)) if isinstance(out, dict) else out
            if not isinstance(path, str) or "${" in path:
                return False
            if not (Path(root) / path).exists():
                return True
    return False


def is_up_to_date(stage: str, root: str | Path) -> bool:
    if _an_out_is_missing(root, [stage]):
        return False
    with _dvc_lock, _repo()(str(root)) as repo:
        return not repo.status(targets=[stage])


def record(stage: str, root: str | Path, if_changed: bool = False) -> None:
    """Write the stage's deps, params and outs hashes into dvc.lock and cache its outs (`if_changed`: only
    where `dvc status` finds the stage changed, for the check stage, which the flow records on every run).

    relink=False: DVC's default re-checks-out each out from the cache after caching it, which deletes the
    file and writes it again. The flow records on a background thread while the next stages run, so a
    stage reading that out (samplers reads models/vae.json) could find it missing. The file left in place
    is the one just hashed, so nothing differs but the link type (a copy, DVC's default cache.type)."""
    with _dvc_lock, _repo()(str(root)) as repo:
        if not if_changed or repo.status(targets=[stage]):
            repo.commit(stage, force=True, relink=False)


def all_up_to_date(root: str | Path) -> bool:
    """Whether `dvc status` finds every stage of the pipeline up to date (one call for all of them)."""
    if _an_out_is_missing(root):
        return False
    with _dvc_lock, _repo()(str(root)) as repo:
        return not repo.status()
