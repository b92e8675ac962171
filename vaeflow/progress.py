"""Progress for every long step: training epochs, EM fits, IWAE scoring, dataset loading, latent plots.

On a terminal: rich progress bars (a pulsing bar where the total is unknown), all in one live display per
process, since gmm and pretrain run at once in two threads and rich allows one live display at a time.
Elsewhere (a Prefect worker, nohup, a log file, dvc repro's pipe): a plain log line on the "vaeflow" logger
when a step starts, at most every LOG_EVERY_S seconds while it runs, and when it ends, so that a long stage
never leaves an empty log for minutes.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from vaeflow import stop

console = Console(stderr=True)
log = logging.getLogger("vaeflow")
LOG_EVERY_S = 30.0  # without a terminal: at most one progress line per step this often (plus start and end)

_lock = threading.Lock()
_live: dict = {"progress": None, "users": 0}
_active = threading.local()  # the innermost step of this thread, for tick()


def _acquire_display() -> Progress:
    with _lock:
        if _live["progress"] is None:
            _live["progress"] = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                         TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                         TimeRemainingColumn(),
                                         console=console, transient=False)
            _live["progress"].start()
        _live["users"] += 1
        return _live["progress"]


def _release_display() -> None:
    with _lock:
        _live["users"] -= 1
        if _live["users"] == 0:
            _live["progress"].stop()
            _live["progress"] = None


class _Step:
    """One step's progress: `advance(n, info)` counts done units, `update(info)` only says where it is."""

    def __init__(self, label: str, total: int | None, unit: str) -> None:
        self.label, self.total, self.unit, self.done, self.info = label, total, unit, 0, ""
        self.counted = 0  # units done by this process (a resumed run's epoch counter jumps; its rate must not)
        self.t0 = self.last = time.monotonic()
        self.bar = _acquire_display() if console.is_terminal else None
        self.task = self.bar.add_task(label, total=total, info="") if self.bar else None
        if not self.bar:
            log.info("%s: started%s", label, f" ({total} {_plural(unit, total)})" if total else "")

    def advance(self, n: int = 1, info: str = "") -> None:
        self.done += n
        self.counted += n
        self.update(info)

    def update(self, info: str = "") -> None:
        self.info = info or self.info
        if self.bar:
            self.bar.update(self.task, completed=self.done, info=self.info)
        elif time.monotonic() - self.last >= LOG_EVERY_S:
            self.last = time.monotonic()
            of = f"{self.unit} {self.done}/{self.total}" if self.total else f"{self.done} {self.unit}"
            log.info("%s: %s%s (%.0f s%s)", self.label, of, f", {self.info}" if self.info else "", self.last - self.t0,
                     self._left(self.last - self.t0))

    def _left(self, elapsed: float) -> str:
        """At this rate, how long the units not yet done would take: on a user's large dataset a default of
        500 epochs or 200 EM iterations can mean hours, and a log line should say so early. An upper bound
        where the step may stop early (early stopping, EM convergence)."""
        left = (self.total or 0) - self.done
        if self.counted <= 0 or left <= 0:
            return ""
        rest = f"the last {self.unit} runs" if left == 1 else f"the other {left} {_plural(self.unit, left)} run"
        return f"; ~{_duration(elapsed / self.counted * left)} more if {rest}"

    def close(self, finished: bool = True) -> None:
        if self.bar:
            self.bar.update(self.task, completed=self.total or self.done, total=self.total or self.done)
            _release_display()
        else:
            # "stopped" when the step ended by an exception (a SIGTERM, an error): "done" would read as success
            log.info("%s: %s%s in %.1f s", self.label, "done" if finished else "stopped",
                     f", {self.info}" if self.info else "", time.monotonic() - self.t0)


def _plural(unit: str, n: int | None) -> str:
    return unit if n == 1 or unit.endswith("s") or len(unit) < 2 else unit + "s"  # "K" stays "K"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


@contextmanager
def steps(label: str, total: int | None = None, unit: str = "steps") -> Iterator[_Step]:
    """A long step's progress; `total` None for one whose length is unknown (a bar that pulses)."""
    step = _Step(label, total, unit)
    outer, _active.step = getattr(_active, "step", None), step
    finished = False
    try:
        yield step
        finished = True
    finally:
        _active.step = outer
        step.close(finished)


def tick(info: str) -> None:
    """Say where the innermost step of this thread is (an EM iteration deep inside a fit); free without one.
    Also where such a loop stops when the process is asked to (vaeflow/stop.py)."""
    stop.check()
    step = getattr(_active, "step", None)
    if step is not None:
        step.update(info)


@contextmanager
def epoch_bar(label: str, total: int, show: str = "") -> Iterator[Callable[[dict], None]]:
    """Yield `advance(row)`: one epoch done, with `row[show]` shown beside it."""
    with steps(label, total, unit="epoch") as step:
        def advance(row: dict) -> None:
            step.done = row.get("epoch", step.done)  # 0-based: after epoch e, e + 1 are done (a resume jumps)
            step.advance(1, f"{show}={row[show]:.3f}" if show and show in row else "")

        yield advance
