"""The adapt stage's trainings on several CPU cores: one worker process per core (tasks/workers.py: why
processes, and why they change no result), each taking whole chains (tasks/adapt.py: `chains`) from a shared
queue. Every training seeds itself from (seed, repeat) (tasks/adapt.py), so a worker returns exactly what the
in-process path would have computed (tests/test_adapt_parallel.py checks bit-identity). Workers log through
the stage's "vaeflow" logger and die with the stage process (PR_SET_PDEATHSIG), so a killed stage leaves no
orphan training that would race its resumed run for the same checkpoint files.
"""
from __future__ import annotations

import contextvars
import logging
from typing import Callable

import torch

from vaeflow.config import Config
from vaeflow.paths import Paths
from vaeflow.tasks.workers import Workers, to_caller, usable_cores

log = logging.getLogger("vaeflow")
ADAPT = ("vaeflow.tasks.adapt",)  # what a worker imports when it starts (most of its start)
_worker: dict = {}  # in a worker process: the stage's config, paths and context, built once


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


def _run(chain: list[tuple[str, int]], cfg: Config, paths: Paths) -> dict:
    from vaeflow.tasks.adapt import context, train_chain

    w = _worker
    key = (cfg.model_dump_json(), str(paths.root))
    if w.get("key") != key:  # the first chain of a stage: its data, VAE and scoring sets, once per process
        w.update(key=key, ctx=context(cfg, paths))
    w["ctx"]["trained"].clear()  # a chain's continuations read its own runs only
    return to_caller(train_chain(chain, cfg, paths, w["ctx"]))


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
        _prewarmed["workers"] = w = Workers(n, worker_threads(cfg, n), ADAPT)
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
    w = w or Workers(n, threads, ADAPT)
    # In the caller's context (contextvars): a Prefect task's run context reaches the records it re-emits.
    w.emit_in(contextvars.copy_context())
    log.info("adapt: %d trainings in %d chains on %d worker processes (%d thread each)",
             sum(map(len, chains)), len(chains), n, threads)
    w.gather([(_run, c, cfg, paths) for c in chains], finished)
