"""The pipeline's stages: plain functions `run(cfg, paths) -> dict`, one module each.

Every entry point (CLI, dvc.yaml, the Prefect flow, Ray jobs) calls these and nothing else.
"""
from __future__ import annotations

from typing import Callable

from vaeflow.config import Config
from vaeflow.paths import Paths

from . import adapt, evaluate, gmm, prepare, pretrain

StageFn = Callable[[Config, Paths], dict]

STAGES: dict[str, StageFn] = {
    "prepare": prepare.run,
    "gmm": gmm.run,
    "pretrain": pretrain.run,
    "adapt": adapt.run,
    "evaluate": evaluate.run,
}

# The DAG, as dvc.yaml also declares it: gmm and pretrain need only prepare and may run at once.
UPSTREAM: dict[str, tuple[str, ...]] = {
    "prepare": (),
    "gmm": ("prepare",),
    "pretrain": ("prepare",),
    "adapt": ("prepare", "pretrain"),
    "evaluate": ("gmm", "pretrain", "adapt"),
}
