"""Worker processes for the flow's trainings: a pool whose processes log through the caller, die with it, and
have paid their imports before their first task.

Two users: the adapt stage's chains (tasks/adapt_parallel.py), and a stage the flow runs in a process of its
own (`OWN_PROCESS` in tasks/__init__.py, `run_stage` here). Why processes: a small network's training step is
mostly Python and small ops, so a second training thread in the same process waits on the GIL and makes the
first one wait too; independent trainings in separate processes use a second core fully. Why it changes no
result: a training seeds itself from the config (never from what else runs), with the configured thread count,
whichever process runs it (tests/test_adapt_parallel.py and tests/test_flow_processes.py check bit-identity).
"""
from __future__ import annotations

import contextvars
import dataclasses
import gc
import importlib
import logging
import logging.handlers
import multiprocessing as mp
import os
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable

import torch

from vaeflow import stop
from vaeflow.config import Config
from vaeflow.paths import Paths
from vaeflow.runtime import select_device
from vaeflow.tasks import OWN_PROCESS, STAGES

log = logging.getLogger("vaeflow")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what taskset / a container's cpuset leaves us
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a worker then ends when it next asks for work
        pass
    if os.getppid() != parent:  # the caller died before the line above took effect
        os._exit(1)


def _init(parent: int, threads: int, queue, preload: tuple[str, ...]) -> None:
    """A worker's start: imports and threads only (~2 s of CPU), so that a pool can be started before the
    inputs of its tasks exist (adapt's `prewarm`)."""
    _die_with_parent(parent)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    root.setLevel(logging.INFO)
    log.handlers[:], log.propagate = [], True
    from vaeflow import progress

    progress.console = progress.Console(stderr=True, force_terminal=False)  # log lines, not a second live bar
    from vaeflow.runtime import import_optimizers, set_threads

    for name in preload:  # the imports are most of a worker's start
        importlib.import_module(name)
    import_optimizers()
    set_threads(threads)
    # The imports' objects (torch, vaeflow) are never garbage: frozen, no collection walks them again, and the
    # worker's exit skips them in its last collection (the pool's shutdown, on the stage's critical path,
    # waited ~0.5 s for the two workers' exits). Refcounting still frees everything; results are unchanged.
    gc.freeze()


def _ready() -> int:
    return os.getpid()


class _Array:
    """A tensor on its way back to the caller, as a numpy array: the pool's pickling would otherwise pass
    every tensor as a shared-memory file descriptor, and a stage holds thousands of them."""

    def __init__(self, t: torch.Tensor) -> None:
        self.a = t.detach().cpu().numpy()


def _convert(obj, leaf, back):
    """`obj` with every `leaf` instance replaced by back(it), through dicts, lists, tuples and dataclasses."""
    if isinstance(obj, leaf):
        return back(obj)
    if isinstance(obj, dict):
        return {k: _convert(v, leaf, back) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_convert(v, leaf, back) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _convert(getattr(obj, f.name), leaf, back)
                                           for f in dataclasses.fields(obj)})
    return obj


def to_caller(obj):
    """A worker's return value with its tensors as arrays (see _Array)."""
    return _convert(obj, torch.Tensor, _Array)


def from_worker(obj):
    """A worker's return value with its tensors back."""
    return _convert(obj, _Array, lambda x: torch.from_numpy(x.a))


class Workers:
    """A pool of `n` worker processes with `threads` torch threads each, which import the modules `preload`
    when they start, and the thread that re-emits their log records in this process, in the Prefect run
    context of whoever uses the pool (`emit_in`)."""

    def __init__(self, n: int, threads: int, preload: tuple[str, ...] = ()) -> None:
        self.n, self.threads = n, threads
        mpc = mp.get_context("spawn")  # never fork a process that has started torch's thread pools
        self.queue = mpc.Queue()
        self._ctx = [contextvars.copy_context()]
        self.forwarder = threading.Thread(target=self._forward, daemon=True)
        self.forwarder.start()
        # The creating thread must outlive the workers: PR_SET_PDEATHSIG fires when it ends.
        self.pool = ProcessPoolExecutor(n, mp_context=mpc, initializer=_init,
                                        initargs=(os.getpid(), threads, self.queue, tuple(preload)))

    def start(self) -> None:
        """Spawn every worker now (a pool spawns them on demand): one no-op task each."""
        for _ in range(self.n):  # a worker that fails to start breaks the pool: the caller's submits raise it
            self.pool.submit(_ready)

    def emit_in(self, ctx: contextvars.Context) -> None:
        self._ctx[0] = ctx

    def _forward(self) -> None:
        while (record := self.queue.get()) is not None:
            self._ctx[0].run(logging.getLogger(record.name).handle, record)

    def gather(self, calls: list[tuple], each: Callable[[Any], None]) -> None:
        """Run every call `(fn, *args)` on the pool, hand each result (its tensors back) to `each` in this process
        as it ends, then shut the pool down. A stop (the flag, looked at every 0.2 s: a signal reaches this
        process's main thread only) or the first error kills what still runs and is raised here."""
        ok = False
        try:
            pending = {self.pool.submit(*c) for c in calls}
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for f in done:
                    each(from_worker(f.result()))
                stop.check()
            ok = True
        finally:
            self.close(cancel=not ok)

    def close(self, cancel: bool = False) -> None:
        """Shut the pool down; with `cancel` (an error, a stop), the running tasks are killed rather than waited
        for: each training has checkpointed at most checkpoint_every_s ago, which is where a re-run resumes."""
        if cancel:
            # ProcessPoolExecutor has no public way to end running work; its process table has been `_processes`
            # since Python 3.2 (tests/test_adapt_parallel.py fails if it goes).
            for p in list(getattr(self.pool, "_processes", {}).values()):
                p.kill()
        self.pool.shutdown(wait=True, cancel_futures=cancel)
        self.queue.put(None)
        self.forwarder.join(timeout=5)


def _stage(name: str, cfg: Config, paths: Paths):
    return to_caller(STAGES[name](cfg, paths))


def run_stage(name: str, cfg: Config, paths: Paths):
    """Stage `name`'s `run(cfg, paths)` in a process of its own, which logs through this one (in the caller's
    Prefect run context) and is killed by an error or a stop here (the stage resumes from its checkpoints)."""
    w = Workers(1, cfg.threads, preload=(f"vaeflow.tasks.{name}",))
    w.emit_in(contextvars.copy_context())
    out: list = []
    w.gather([(_stage, name, cfg, paths)], out.append)
    return out[0]


def stage_runner(name: str, cfg: Config, flow_threads: int) -> Callable[[Config, Paths], dict]:
    """How the flow runs stage `name`: its `run` in the calling thread, or for an OWN_PROCESS stage `run_stage`
    here, when the flow has a second thread and the box cores for both at the configured threads (with
    `threads: 0`, all cores, each process would start a pool of all cores), on CPU (a GPU's work is not
    GIL-bound). A stage a test replaced (STAGES[name] = fn) runs in the thread: a worker could not import it."""
    if (name in OWN_PROCESS and not STAGES.replaced(name) and flow_threads > 1 and cfg.threads > 0
            and usable_cores() >= 2 * cfg.threads and select_device(cfg.device).type == "cpu"):
        return lambda c, p: run_stage(name, c, p)
    return STAGES[name]
