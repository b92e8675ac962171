"""The pipeline's stages: plain functions `run(cfg, paths) -> dict`, one module each.

Every entry point (CLI, dvc.yaml, the Prefect flow, Ray jobs) calls these and nothing else.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Callable

from vaeflow.config import Config
from vaeflow.paths import Paths

StageFn = Callable[[Config, Paths], dict]

# The DAG, as dvc.yaml also declares it: gmm, pretrain and autoencoders need only prepare and may run at once.
# Its order is a topological order, and the order of STAGES.
UPSTREAM: dict[str, tuple[str, ...]] = {
    "prepare": (),
    "gmm": ("prepare",),
    "pretrain": ("prepare",),
    "autoencoders": ("prepare",),
    "adapt": ("prepare", "pretrain"),
    "samplers": ("prepare", "gmm", "pretrain", "autoencoders"),
    "evaluate": ("gmm", "pretrain", "adapt", "autoencoders", "samplers"),
}

# Work a stage can start before its upstreams end: module `vaeflow.tasks.<name>` with `prewarm(cfg)` and
# `release()`. The flow calls prewarm once a core is free while an upstream of the stage still trains
# (adapt: its worker processes' start, ~2 s of imports, while pretrain ends), and release at its end.
PREWARM: dict[str, str] = {"adapt": "adapt_parallel"}

# Stages the flow runs in a process of their own (tasks/workers.py: stage_runner) when it has a second thread and
# cores for both: autoencoders trains beside pretrain, and in a thread of the flow's process its many small ops
# took the GIL from pretrain's (pretrain's training took 14-15.5 s instead of 12-13 on 2 cores). Same results.
OWN_PROCESS: frozenset[str] = frozenset({"autoencoders"})


def dag_text() -> str:
    """The DAG in one line for help texts, e.g. `prepare → (gmm ∥ pretrain) → evaluate`: stages grouped by
    their longest path from a stage with no upstream (a group may start as soon as its own upstreams end)."""
    depth: dict[str, int] = {}
    for name, ups in UPSTREAM.items():  # a topological order: every upstream's depth is known
        depth[name] = 1 + max((depth[u] for u in ups), default=-1)
    groups = [[n for n in UPSTREAM if depth[n] == d] for d in range(max(depth.values()) + 1)]
    return " → ".join(g[0] if len(g) == 1 else f"({' ∥ '.join(g)})" for g in groups)


class _Stages(MutableMapping):
    """Stage name -> its `run`, importing the stage's module on first lookup. The stages together import
    torch, scikit-learn and matplotlib (~6 s); a process that runs one of them (`vaeflow stage` under
    dvc repro, a Ray trial) then pays only for its own. Assigning a name replaces its function (tests)."""

    def __init__(self) -> None:
        self._replaced: dict[str, StageFn] = {}

    def __getitem__(self, name: str) -> StageFn:
        if name in self._replaced:
            return self._replaced[name]
        if name not in UPSTREAM:
            raise KeyError(name)
        return importlib.import_module(f"{__name__}.{name}").run

    def replaced(self, name: str) -> bool:
        return name in self._replaced

    def __setitem__(self, name: str, fn: StageFn) -> None:
        if name not in UPSTREAM:
            raise KeyError(f"no stage {name!r}")
        self._replaced[name] = fn

    def __delitem__(self, name: str) -> None:
        self._replaced.pop(name)

    def __iter__(self) -> Iterator[str]:
        return iter(UPSTREAM)

    def __len__(self) -> int:
        return len(UPSTREAM)


STAGES = _Stages()
