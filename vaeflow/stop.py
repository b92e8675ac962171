"""A prompt stop on SIGTERM or Ctrl-C, keeping what the checkpoints hold.

Why: a signal reaches a process's main thread only, and the stages train elsewhere: in Prefect's task threads
and in adapt's worker processes. Without this, `kill PID` during a `vaeflow run` waited for the running stage
to end (72 s measured in the digits default's pretrain; a whole adapt stage under the presets), and a service
manager's grace period would end in a SIGKILL anyway.

`forwarding()` wraps the handlers in place (Python's Ctrl-C, Prefect's SIGTERM bridge inside a flow) so that a
signal first sets a flag, then does what it did before. Every training loop calls `check()` once a step, and
so does adapt's wait for its workers (which it then kills): the training ends within a step by raising `Stopped`, and
the same command resumes from the last checkpoint (at most `checkpoint_every_s` old), as after a kill -9
(docs/reliability.md).
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_requested = threading.Event()
_signum = [int(signal.SIGINT)]  # the signal that asked, for the exit code (128 + signal number)


class Stopped(KeyboardInterrupt):
    """A training stopped because the process was asked to: a KeyboardInterrupt, so that everything that handles
    Ctrl-C handles it too; the CLI exits with 128 + `signum` (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; the last checkpoint is kept")
        self.signum = int(signum)


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raise Stopped if a stop was requested (once a training step: an Event lookup, ~50 ns)."""
    if _requested.is_set():
        raise Stopped(_signum[0])


def request(signum: int = signal.SIGINT) -> None:
    _signum[0] = int(signum)
    _requested.set()


def raise_on_sigterm() -> None:
    """The CLI's SIGTERM: raise Stopped in the main thread, as Ctrl-C raises KeyboardInterrupt, instead of the
    default's death on the spot, so that the process exits through its cleanup (the project lock, Prefect's
    local server, the workers' queues: the default left semaphores for the resource tracker to warn about).
    Only where SIGTERM still has its default action (an embedding program's handler is left alone)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise)


def _raise(signum, frame):
    request(signum)
    raise Stopped(signum)


def clear() -> None:
    """Forget a request (tests, and a process that goes on to other work after a handled stop)."""
    _requested.clear()


@contextlib.contextmanager
def forwarding(signals: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """In the main thread: on each of `signals`, set the flag, then call the handler that was in place (or, for
    the default action, restore it and re-send the signal). An ignored signal stays ignored (a run started
    with nohup, or in the background of a script, ignores Ctrl-C). Elsewhere a no-op: signals cannot be
    handled off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()  # a stop asked of an earlier run in this process (a notebook's Ctrl-C) is not this one's
    before = {s: signal.getsignal(s) for s in signals}

    def handler(signum, frame):
        request(signum)
        prev = before[signum]
        if callable(prev):
            prev(signum, frame)
        else:  # SIG_DFL (None: a handler not installed from Python counts as the default)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for s, prev in before.items():
        if prev is not signal.SIG_IGN:
            signal.signal(s, handler)
    try:
        yield
    finally:
        for s, prev in before.items():
            if prev is not signal.SIG_IGN and signal.getsignal(s) is handler:
                signal.signal(s, prev if prev is not None else signal.SIG_DFL)
