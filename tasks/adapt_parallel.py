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
import logging
import logging.handlers
import multiprocessing as mp
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

import torch

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


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a worker then ends when it next asks for work
        pass
    if os.getppid() != parent:  # the stage died before the line above took effect
        os._exit(1)


def _init(cfg: Config, paths: Paths, parent: int, threads: int, queue) -> None:
    _die_with_parent(parent)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    root.setLevel(logging.INFO)
    log.handlers[:], log.propagate = [], True
    from vaeflow import progress

    progress.console = progress.Console(stderr=True, force_terminal=False)  # log lines, not a second live bar
    from vaeflow.runtime import set_threads
    from vaeflow.tasks.adapt import context

    set_threads(threads)
    _worker.update(cfg=cfg, paths=paths, ctx=context(cfg, paths))


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


def _run(chain: list[tuple[str, int]]) -> dict:
    from vaeflow.tasks.adapt import train_chain

    w = _worker
    w["ctx"]["trained"].clear()  # a chain's continuations read its own runs only
    return _convert(train_chain(chain, w["cfg"], w["paths"], w["ctx"]), torch.Tensor, _Array)


def _forward_logs(queue) -> None:
    while (record := queue.get()) is not None:
        logging.getLogger(record.name).handle(record)


def train_in_workers(chains: list[list[tuple[str, int]]], cfg: Config, paths: Paths, n: int,
                     finished: Callable[[dict], None]) -> None:
    """Train every chain on `n` worker processes; `finished(records)` gets each chain's records, keyed
    (variant, repeat), in this process as the chain ends. The first error cancels the chains not started
    and is raised here."""
    ctx = mp.get_context("spawn")  # never fork a process that has started torch's thread pools
    queue = ctx.Queue()
    # In the caller's context (contextvars): a Prefect task's run context reaches the records it re-emits.
    forwarder = threading.Thread(target=contextvars.copy_context().run, args=(_forward_logs, queue), daemon=True)
    forwarder.start()
    threads = cfg.threads or max(1, usable_cores() // n)
    log.info("adapt: %d trainings in %d chains on %d worker processes (%d thread each)",
             sum(map(len, chains)), len(chains), n, threads)
    try:
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init,
                                 initargs=(cfg, paths, os.getpid(), threads, queue)) as pool:
            futures = [pool.submit(_run, c) for c in chains]
            try:
                for f in as_completed(futures):
                    finished(_convert(f.result(), _Array, lambda x: torch.from_numpy(x.a)))
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    finally:
        queue.put(None)
        forwarder.join(timeout=5)
