"""One pipeline run per project directory at a time, whoever starts it.

`vaeflow run`, `vaeflow stage`, `vaeflow tune`, `vaeflow submit` (when it copies results into models/tuned)
and the Prefect flow itself (a scheduled run of `vaeflow serve`, a `prefect deploy` worker's run) all write
data/, models/, metrics/ and reports/ of one project, so each takes this lock first.

An OS-level lock (flock) on <root>/.vaeflow.lock: a holder killed even with -9 releases it with its process,
so a stale lock file never blocks anything. Re-entrant within a process: `vaeflow run` takes it and then
calls the flow, which takes it again for the runs nobody else locked for; the nested take is free.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

LOCK_FILE = ".vaeflow.lock"
_locks: dict[str, FileLock] = {}
_guard = threading.Lock()


class ProjectLocked(RuntimeError):
    """Another process holds the project lock (the CLI's exit code 3)."""


def lock_path(root: str | Path = ".") -> Path:
    return (Path(root) / LOCK_FILE).resolve()


def acquire(root: str | Path = ".", wait: float = 0.0, on_wait: Callable[[Path], None] | None = None,
            hint: str = "pass --wait SECONDS to queue behind it") -> FileLock:
    """Take the lock of project `root`, waiting up to `wait` seconds; the caller releases it (`.release()`).

    One FileLock object per lock file and process, shared by threads (thread_local=False): a nested take by
    the same process counts up instead of blocking on its own flock."""
    path = lock_path(root)
    with _guard:
        lock = _locks.setdefault(str(path), FileLock(path, thread_local=False))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if wait > 0 and on_wait is not None:
            on_wait(path)
        try:
            lock.acquire(timeout=wait)
        except Timeout:
            raise ProjectLocked(f"another vaeflow run holds {path}; wait for it to finish (or {hint})") from None
    return lock


@contextmanager
def project_lock(root: str | Path = ".", wait: float = 0.0, on_wait: Callable[[Path], None] | None = None,
                 hint: str = "pass --wait SECONDS to queue behind it") -> Iterator[Path]:
    lock = acquire(root, wait, on_wait, hint)
    try:
        yield lock_path(root)
    finally:
        lock.release()
