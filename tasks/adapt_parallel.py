"""The adapt stage's trainings on several CPU cores: one worker process per core, each taking whole chains
(tasks/adapt.py: `chains`) from a shared queue.

Why processes: a small network's training step is mostly Python and small ops, so a second thread in the
same process would wait on the GIL, and torch's intra-op threads barely help at these sizes; independent
trainings side by side use a second core fully. Why it changes no result: every training seeds itself from
(seed, repeat) (tasks/adapt.py) and runs with the stage's thread count, whichever process runs it; a
worker returns exactly what the in-process path would have computed (tests/test_adapt_parallel.py checks
bit-identity). Workers log through the stage's "vaeflow" logger (a queue back to this process), and die
with the stage process (PR_SET_PDEATHSIG), so a killed stage leaves no orphan training that would race
its resumed run for the same checkpoint files.
"""
from __future__ import annotations

import contextvars
import dataclasses
import gc
import logging
import logging.handlers
import multiprocessing as mp
import os
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable

import torch

from vaeflow import stop
from vaeflow.config import Config
from vaeflow.paths import Paths

log = logging.getLogger("vaeflow")
_worker: dict = {}  # in a worker process: the stage's config, paths and context, built once


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what taskset / a container's cpuset leaves us
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def n_workers(cfg: Config, device: torch.device, n_chains: int) -> int:
    """adapt.workers, or with 0 (auto): one per usable core at the configured threads per training, on
    CPU only (a GPU is shared by one process's trainings), never more than there are chains."""
    want = cfg.adapt.workers
    if want == 0:
        if device.type != "cpu" or cfg.threads == 0:
            return 1
        want = usable_cores() // cfg.threads
    return max(1, min(want, n_chains))


def worker_threads(cfg: Config, n: int) -> int:
    """Torch threads per worker: the configured count, or with 0 the usable cores shared among `n` workers."""
    return cfg.threads or max(1, usable_cores() // n)


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a worker then ends when it next asks for work
        pass
    if os.getppid() != parent:  # the stage died before the line above took effect
        os._exit(1)


def _init(parent: int, threads: int, queue) -> None:
    """A worker's start: imports and threads only (~2 s of CPU), so that a pool can be started before the
    stage's inputs exist (`prewarm`); the stage's context is built by the first chain it is given."""
    _die_with_parent(parent)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    root.setLevel(logging.INFO)
    log.handlers[:], log.propagate = [], True
    from vaeflow import progress

    progress.console = progress.Console(stderr=True, force_terminal=False)  # log lines, not a second live bar
    from vaeflow.runtime import set_threads
    import vaeflow.tasks.adapt  # noqa: F401  the import is most of a worker's start

    set_threads(threads)
    # The imports' objects (torch, vaeflow) are never garbage: frozen, no collection walks them again, and the
    # worker's exit skips them in its last collection (the pool's shutdown, on the stage's critical path,
    # waited ~0.5 s for the two workers' exits). Refcounting still frees everything; results are unchanged.
    gc.freeze()


def _ready() -> int:
    return os.getpid()


class _Array:
    """A tensor on its way back to the stage, as a numpy array: the pool's pickling would otherwise pass
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


def _run(chain: list[tuple[str, int]], cfg: Config, paths: Paths) -> dict:
    from vaeflow.tasks.adapt import context, train_chain

    w = _worker
    key = (cfg.model_dump_json(), str(paths.root))
    if w.get("key") != key:  # the first chain of a stage: its data, VAE and scoring sets, once per process
        w.update(key=key, ctx=context(cfg, paths))
    w["ctx"]["trained"].clear()  # a chain's continuations read its own runs only
    return _convert(train_chain(chain, cfg, paths, w["ctx"]), torch.Tensor, _Array)


class Workers:
    """A pool of `n` worker processes with `threads` torch threads each, and the thread that re-emits their
    log records in this process, in the Prefect run context of whoever uses the pool (`emit_in`)."""

    def __init__(self, n: int, threads: int) -> None:
        self.n, self.threads = n, threads
        mpc = mp.get_context("spawn")  # never fork a process that has started torch's thread pools
        self.queue = mpc.Queue()
        self._ctx = [contextvars.copy_context()]
        self.forwarder = threading.Thread(target=self._forward, daemon=True)
        self.forwarder.start()
        # The creating thread must outlive the workers: PR_SET_PDEATHSIG fires when it ends.
        self.pool = ProcessPoolExecutor(n, mp_context=mpc, initializer=_init,
                                        initargs=(os.getpid(), threads, self.queue))

    def start(self) -> None:
        """Spawn every worker now (a pool spawns them on demand): one no-op task each."""
        for _ in range(self.n):  # a worker that fails to start breaks the pool: the stage's submits raise it
            self.pool.submit(_ready)

    def emit_in(self, ctx: contextvars.Context) -> None:
        self._ctx[0] = ctx

    def _forward(self) -> None:
        while (record := self.queue.get()) is not None:
            self._ctx[0].run(logging.getLogger(record.name).handle, record)

    def close(self, cancel: bool = False) -> None:
        """Shut the pool down; with `cancel` (an error, a stop), the running chains are killed rather than waited
        for: each has checkpointed at most checkpoint_every_s ago, which is where a re-run resumes."""
        if cancel:
            # ProcessPoolExecutor has no public way to end running work; its process table has been `_processes`
            # since Python 3.2 (tests/test_adapt_parallel.py fails if it goes).
            for p in list(getattr(self.pool, "_processes", {}).values()):
                p.kill()
        self.pool.shutdown(wait=True, cancel_futures=cancel)
        self.queue.put(None)
        self.forwarder.join(timeout=5)


_prewarmed: dict = {}  # {"workers": Workers} started by `prewarm`, taken by the next stage that fits them


def prewarm(cfg: Config) -> None:
    """Start the adapt stage's workers ahead of the stage (the flow calls it once a core is free while
    pretrain still trains): their start, ~2 s of imports each, is then off the critical path. The workers
    hold no input of the stage (those are read by the first chain), so nothing they compute changes.
    Unused workers are shut down by `release`."""
    from vaeflow.runtime import select_device
    from vaeflow.tasks.adapt import chains

    n = n_workers(cfg, select_device(cfg.device), len(chains(cfg.adapt.variants, cfg.adapt.repeats)))
    if n > 1 and "workers" not in _prewarmed:
        _prewarmed["workers"] = w = Workers(n, worker_threads(cfg, n))
        w.start()
        log.info("adapt: %d worker processes started ahead of the stage", n)


def release() -> None:
    """Shut down prewarmed workers that no stage took (the stage was up to date, or failed upstream)."""
    if (w := _prewarmed.pop("workers", None)) is not None:
        w.close(cancel=True)


def train_in_workers(chains: list[list[tuple[str, int]]], cfg: Config, paths: Paths, n: int,
                     finished: Callable[[dict], None]) -> None:
    """Train every chain on `n` worker processes (prewarmed ones when they fit); `finished(records)` gets each
    chain's records, keyed (variant, repeat), in this process as the chain ends. The first error cancels
    the chains not started and is raised here."""
    threads = worker_threads(cfg, n)
    w = _prewarmed.pop("workers", None)
    if w is not None and (w.n, w.threads) != (n, threads):
        w.close(cancel=True)
        w = None
    w = w or Workers(n, threads)
    # In the caller's context (contextvars): a Prefect task's run context reaches the records it re-emits.
    w.emit_in(contextvars.copy_context())
    log.info("adapt: %d trainings in %d chains on %d worker processes (%d thread each)",
             sum(map(len, chains)), len(chains), n, threads)
    ok = False
    try:
        pending = {w.pool.submit(_run, c, cfg, paths) for c in chains}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for f in done:
                finished(_convert(f.result(), _Array, lambda x: torch.from_numpy(x.a)))
            stop.check()  # a signal reaches this process's main thread only; the flag reaches this one
        ok = True
    finally:
        w.close(cancel=not ok)
