"""Resumable training state: model, optimizer, every RNG, epoch and step, in one atomic file.

A checkpoint carries the fingerprint of what produced it (params, data hashes). A run resumes only
from a checkpoint with the same fingerprint; anything else starts afresh, so a stale checkpoint can
never leak into a run with other params.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from vaeflow.io import ArtifactError, load_torch, save_torch
from vaeflow.runtime import rng_state, set_rng_state

log = logging.getLogger("vaeflow")


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def save_checkpoint(path: Path, fp: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    save_torch(path, {
        "fingerprint": fp,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "state": state,
        **(extra or {}),
    })


def try_resume(path: Path, fp: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict | None:
    """Restore model, optimizer and RNGs from `path` if it belongs to this run; return its saved dict."""
    if not path.exists():
        return None
    try:
        ckpt = load_torch(path)
    except ArtifactError as e:
        # A corrupted checkpoint is never used; say so loudly and start over rather than guess.
        log.warning("ignoring unusable checkpoint: %s", e)
        return None
    if ckpt.get("fingerprint") != fp:
        log.info("checkpoint %s is from other params or data; starting afresh", path)
        return None
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    log.info("resumed %s at epoch %d", path, ckpt["state"]["epoch"])
    return ckpt
