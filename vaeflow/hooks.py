"""Test hooks: the one object through which the reliability tests reach inside a run. No-op by default.

Production code asks `current()` for the hooks and calls them at a few named places; it takes no test
parameter in its signatures. What a hook does is decided by whoever installed the object:

    pause(point)             stop here (the test then kills -9 the process). Points:
                               step:<run>:<epoch>:<step>   before that optimiser step of a training run
                                                           (<run> is the checkpoint's stem: pretrain, dae, ...)
                               write:<file>:<n>:mid        the n-th write of <file> in this process, half of
                                                           it in the temp file (vaeflow/io.py)
                               write:<file>:<n>:renamed    the same write, renamed into place, its checksum
                                                           not yet final
                               lock:acquired               the CLI has just taken the project lock
    loss(where, loss)        the loss at `where` = "<run>:<epoch>:<step>", made NaN if the hooks say so;
    poisons(where)           whether loss() would change it (a CUDA-graph step must then run eagerly)
    trial_epoch(epoch, id)   after a Tune trial reported `epoch`: raise, or SIGKILL the trial's process

A process installs its hooks once: the CLI and any process a test starts read them from the environment
(`from_env`, below); a test in its own process installs an object (`installed(Hooks(nan_at=...))`); a Ray
trial installs the hooks its driver handed it. Without an installed object, `current()` reads the
environment (a handful of dictionary lookups, once per training run or write), so the variables below work
in every process, including those started by Ray or a CLI invoked in-process.

    VAEFLOW_PAUSE_AT=<point>          with VAEFLOW_PAUSE_SIGNAL=<file>: pause there, writing <file> first
    VAEFLOW_NAN_AT=<run>:<epoch>:<step>
    VAEFLOW_TRIAL_FAULT=<json>        {"epoch": e, "marker": file, "kind": "raise"|"kill", "spare": file?}
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAUSE_LIMIT_S = 300  # a paused process whose test died exits on its own rather than linger
ENV = ("VAEFLOW_PAUSE_AT", "VAEFLOW_PAUSE_SIGNAL", "VAEFLOW_NAN_AT", "VAEFLOW_TRIAL_FAULT")


@dataclass
class Hooks:
    """Every field None: nothing happens (the default). Picklable, so a Tune driver can hand it to trials."""
    pause_at: str | None = None
    pause_signal: str | None = None
    nan_at: str | None = None            # "<run>:<epoch>:<step>"
    trial_fault: dict[str, Any] | None = None
    _writes: Counter = field(default_factory=Counter, repr=False, compare=False)

    @property
    def active(self) -> bool:
        return bool(self.pause_at or self.nan_at or self.trial_fault)

    # -- pauses (kill -9 points)
    def pause(self, point: str) -> None:
        if self.pause_at != point:
            return
        if self.pause_signal:
            Path(self.pause_signal).write_text(f"{os.getpid()} {point}\n")
        time.sleep(PAUSE_LIMIT_S)
        os._exit(75)

    def count_write(self, name: str) -> int:
        """1-based index of this write of a file called `name` in this process (for `write:` points)."""
        if not self.pause_at:
            return 0
        self._writes[name] += 1
        return self._writes[name]

    # -- losses
    def poisons(self, where: str) -> bool:
        return self.nan_at is not None and where == self.nan_at

    def loss(self, where: str, loss: Any) -> Any:
        """`loss`, or loss × NaN at the step the hooks name (a tensor stays a tensor: autograd sees it)."""
        return loss * float("nan") if self.poisons(where) else loss

    def nan_step(self, run: str) -> tuple[int, int] | None:
        """(epoch, step) at which training run `run` gets a NaN loss, if any (for loops that check ahead)."""
        name, _, rest = (self.nan_at or "").partition(":")
        if name != run or not rest:
            return None
        epoch, step = rest.split(":")
        return int(epoch), int(step)

    # -- Ray Tune trials
    def trial_epoch(self, epoch: int, trial_id: str) -> None:
        """At trial_fault['epoch'], once per trial_fault['marker'] (a file that then names the trial), raise
        or SIGKILL this trial's process. A trial named in the file trial_fault['spare'] is left alone."""
        f = self.trial_fault
        if not f or epoch != f["epoch"]:
            return
        spare = f.get("spare")
        if spare and os.path.exists(spare) and trial_id in Path(spare).read_text():
            return
        if not claim_once(f["marker"], trial_id):
            return
        if f.get("kind") == "kill":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"injected failure of trial {trial_id} at epoch {epoch}")


def claim_once(marker: str | Path, note: str = "") -> bool:
    """True for exactly one caller across processes: the first to create `marker`, which then holds `note`."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(note)
    return True


def from_env(environ: Mapping[str, str] = os.environ) -> Hooks:
    fault = environ.get("VAEFLOW_TRIAL_FAULT")
    return Hooks(pause_at=environ.get("VAEFLOW_PAUSE_AT") or None, pause_signal=environ.get("VAEFLOW_PAUSE_SIGNAL"),
                 nan_at=environ.get("VAEFLOW_NAN_AT") or None, trial_fault=json.loads(fault) if fault else None)


_installed: Hooks | None = None
_from_env: tuple[tuple[str | None, ...], Hooks] | None = None


def current() -> Hooks:
    """The installed hooks, else those the environment names now (cached while it does not change, so a
    count of writes survives between calls)."""
    global _from_env
    if _installed is not None:
        return _installed
    key = tuple(os.environ.get(k) for k in ENV)
    if _from_env is None or _from_env[0] != key:
        _from_env = (key, from_env())
    return _from_env[1]


def install(hooks: Hooks | None) -> Hooks | None:
    """Make `hooks` this process's (None: back to the environment's). Returns what was installed before."""
    global _installed
    before, _installed = _installed, hooks
    return before


def install_from_env() -> Hooks:
    """For an entry point: fix this process's hooks from its environment once."""
    h = from_env()
    install(h)
    return h


@contextlib.contextmanager
def installed(hooks: Hooks) -> Iterator[Hooks]:
    """`hooks` for the duration of a with-block (a test in its own process)."""
    before = install(hooks)
    try:
        yield hooks
    finally:
        install(before)
