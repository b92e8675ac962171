"""Resumable training state: model, optimizer, every RNG, epoch and step, in one atomic file.

A checkpoint carries the fingerprint of what produced it (params, data hashes). A run resumes only
from a checkpoint with the same fingerprint; anything else starts afresh, so a stale checkpoint can
never leak into a run with other params. A checkpoint that fails its checksum is an error, never
skipped silently: it only happens when the disk or someone changed the file (a kill cannot cause it,
see vaeflow/io.py), and starting over would quietly throw the run's progress away.

Everything is saved at epoch boundaries, where resuming is exact: an interrupted run, resumed, ends
with the same weights, bit for bit on CPU, as one that was never interrupted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from vaeflow.io import ArtifactError, load_torch, save_torch
from vaeflow.runtime import rng_state, set_rng_state

log = logging.getLogger("vaeflow")


class NonFiniteLoss(FloatingPointError):
    """The loss (or the weights) went NaN or inf. The message names epoch and step; the last good
    checkpoint is kept."""


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class CheckpointClock:
    """When a training loop writes its checkpoint: after every epoch when `every_s` is 0, otherwise at
    most every `every_s` seconds, and always after the last epoch.

    A checkpoint costs tens of milliseconds (serialise, hash, fsync, rename); on sub-second epochs that
    is a large share of training, while a kill loses at most `every_s` seconds of it. Results do not
    depend on it: resuming from any epoch is exact."""

    def __init__(self, every_s: float = 0.0) -> None:
        self.every_s = every_s
        self.last = time.monotonic()

    def due(self, last_epoch: bool) -> bool:
        now = time.monotonic()
        if last_epoch or now - self.last >= self.every_s:
            self.last = now
            return True
        return False


def _weights_finite(model: torch.nn.Module) -> bool:
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True  # one host sync, not one per tensor


def save_checkpoint(path: Path, fp: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], extra: dict[str, Any] | None = None, *,
                    generators: dict[str, torch.Generator] | None = None, global_rng: bool = True) -> None:
    """Atomically replace `path` with the full training state; `state` holds at least epoch and step.

    Refuses to write non-finite weights, so the checkpoint on disk is always the last good one.
    `generators` are any torch.Generator objects the loop draws from besides the global RNGs; global_rng=False
    for a loop that draws only from those (its resume then leaves the global RNGs alone)."""
    if not _weights_finite(model):
        raise NonFiniteLoss(f"non-finite weights at the end of epoch {state.get('epoch', 0) - 1} "
                            f"(global step {state.get('step', '?')}); training stopped, "
                            f"last good checkpoint kept at {path}")
    save_torch(path, {
        "fingerprint": fp,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state() if global_rng else None,
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
        "state": state,
        **(extra or {}),
    })


def try_resume(path: Path, fp: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
               generators: dict[str, torch.Generator] | None = None, global_rng: bool = True) -> dict | None:
    """Restore model, optimizer and every RNG from `path` if it belongs to this run; return its dict.

    None when there is no checkpoint or it is from other params or data. Raises ArtifactError when the
    file is corrupted: delete it to start this run afresh."""
    if not path.exists():
        return None
    try:
        ckpt = load_torch(path)
    except ArtifactError as e:
        raise ArtifactError(f"{e}\nThe checkpoint was not used; delete {path} (and {path.name}.sha256) "
                            f"to start this training run afresh.") from None
    if ckpt.get("fingerprint") != fp:
        log.info("checkpoint %s is from other params or data; starting afresh", path)
        return None
    missing = [g for g in (generators or {}) if g not in ckpt.get("generators", {})]
    if missing:
        raise ArtifactError(f"{path}: no state for generator(s) {missing}; delete it to start afresh")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if global_rng:
        set_rng_state(ckpt["rng"])
    for name, g in (generators or {}).items():
        g.set_state(ckpt["generators"][name])
    log.info("resumed %s at epoch %d (step %d)", path, ckpt["state"]["epoch"], ckpt["state"].get("step", 0))
    return ckpt
