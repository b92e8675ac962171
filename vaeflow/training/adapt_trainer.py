"""The training loop of every adapt variant: one loop, the method is an Algorithm (algorithms.py).

Every variant runs a fixed schedule of optimiser steps; which epoch's weights are kept is the selection
rule's answer (model_selection.py), from a history that holds no target label. The target test accuracy
per epoch (`trace`, for the stability report only) is kept apart and never reaches the rule.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vaeflow import hooks, stop
from vaeflow.runtime import autocast
from vaeflow.training.algorithms import Algorithm
from vaeflow.training.checkpoint import CheckpointClock, NonFiniteLoss, save_checkpoint, try_resume
from vaeflow.training.model_selection import LastStep, SelectionRule


@dataclass
class AdaptResult:
    state: dict[str, torch.Tensor]
    history: list[dict] = field(default_factory=list)
    trace: list[dict] = field(default_factory=list)
    selected_epoch: int = -1
    seconds: float = 0.0


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(n_classes, n_classes)


def _snapshot(algo: Algorithm) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in algo.predictor().state_dict().items()}


def _loss_check(where: tuple[int, int], steps_per_epoch: int, ckpt_path: Path):
    """`check(loss)` for one step: raises NonFiniteLoss on a NaN/inf loss (the test hooks may poison it)."""
    point = f"{ckpt_path.stem}:{where[0]}:{where[1]}"

    def check(loss: torch.Tensor) -> torch.Tensor:
        loss = hooks.current().loss(point, loss)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite classifier loss at epoch {where[0]} step {where[1]} (global step "
                                f"{where[0] * steps_per_epoch + where[1]}); training stopped, last good "
                                f"checkpoint kept at {ckpt_path}")
        return loss
    return check


def fit(algo: Algorithm, x_lab: torch.Tensor, y_lab: torch.Tensor, x_unl: torch.Tensor | None, *,
        epochs: int, steps_per_epoch: int, batch_size: int, ckpt_path: Path, fingerprint: str,
        monitor: tuple[torch.Tensor, torch.Tensor] | None = None, rule: SelectionRule | None = None,
        trace: Callable[[Algorithm], dict] | None = None,
        on_epoch: Callable[[dict], None] | None = None, checkpoint_every_s: float = 0.0,
        precision: str = "fp32") -> AdaptResult:
    """Train `algo` on a fixed schedule: `epochs` × `steps_per_epoch` steps, each on a labelled batch and,
    when the algorithm uses them, an unlabelled batch (batch_size × algo.unlabelled_ratio), both drawn with
    replacement.

    Drawing with replacement gives a labelled set of 50 images as many steps as one of 5,000, so the
    variants differ only in their data and method, not their compute. Checkpoints hold the whole
    algorithm (student, teacher, BN statistics, pseudo-labels), its optimiser, the kept weights and every
    RNG: resuming is exact. `precision` (adapt.precision) is the steps' autocast; scoring is float32.
    `monitor` (source validation images and labels) feeds the history the rule reads; `trace(algo)` (target
    test accuracy, diagnosis only) is stored apart from it."""
    if algo.uses_unlabelled and x_unl is None:
        raise ValueError(f"{type(algo).__name__} trains on unlabelled images too; none were given")
    rule = rule or LastStep()
    t0 = time.perf_counter()
    algo.setup(x_lab, y_lab, x_unl)
    if epochs == 0:  # a continuation scored as it is (adabn), or a method without steps (latent_spreading)
        return AdaptResult(state=_snapshot(algo), seconds=time.perf_counter() - t0)
    # train_seconds: the training time of every epoch so far, kept in checkpoints, so a resumed or restored
    # run reports what training it cost, not the seconds of the process that finished it
    st = {"epoch": 0, "step": 0, "history": [], "trace": [], "kept": None, "kept_epoch": -1, "train_seconds": 0.0}
    ckpt = try_resume(ckpt_path, fingerprint, algo, algo.opt)
    if ckpt is not None:
        st = ckpt["state"]
    h = hooks.current()
    total = epochs * steps_per_epoch
    algo.total_steps = total
    device = x_lab.device
    n_unl = batch_size * getattr(algo, "unlabelled_ratio", 1)
    clock = CheckpointClock(checkpoint_every_s)  # 0: after every epoch
    cast = autocast(device, precision)  # checked before the first step: an unsupported bf16 fails here
    while st["epoch"] < epochs:
        epoch = st["epoch"]
        t_epoch = time.perf_counter()
        algo.train()
        row = {"epoch": epoch, **(algo.begin_epoch(epoch, x_unl) or {})}
        algo.train()
        sums: dict[str, torch.Tensor] = {}
        for s in range(steps_per_epoch):
            h.pause(f"step:{ckpt_path.stem}:{epoch}:{s}")
            stop.check()  # a SIGTERM / Ctrl-C ends the run here; the last checkpoint is where it resumes
            p = (epoch * steps_per_epoch + s) / total
            algo.set_progress(p)
            idx = torch.randint(len(x_lab), (batch_size,), device=device)
            iu = torch.randint(len(x_unl), (n_unl,), device=device) if algo.uses_unlabelled else None
            xu = x_unl[iu] if iu is not None else None
            with cast:
                out = algo.update(x_lab[idx], y_lab[idx], xu, p,
                                  check=_loss_check((epoch, s), steps_per_epoch, ckpt_path), unl_idx=iu)
            for k, v in out.items():
                sums[k] = sums.get(k, 0) + v  # tensors: no host sync per step
        row.update({k: float(v) / steps_per_epoch for k, v in sums.items()})
        row["seconds"] = time.perf_counter() - t0
        if monitor is not None:
            row["source_val_acc"] = (algo.predict(monitor[0]) == monitor[1]).float().mean().item()
        st["train_seconds"] = st.get("train_seconds", 0.0) + time.perf_counter() - t_epoch
        st["history"].append(row)
        if trace is not None:
            st["trace"].append({"epoch": epoch, **trace(algo)})
        if rule.keeps(st["history"]) and epoch < epochs - 1:
            st["kept"], st["kept_epoch"] = _snapshot(algo), epoch
        st["epoch"] = epoch + 1
        st["step"] = (epoch + 1) * steps_per_epoch
        if clock.due(last_epoch=st["epoch"] >= epochs):
            save_checkpoint(ckpt_path, fingerprint, algo, algo.opt, st)
        if on_epoch:
            on_epoch(row)
    last = epochs - 1
    chosen = rule.select(st["history"])
    state = _snapshot(algo) if chosen == last or st["kept"] is None else st["kept"]
    return AdaptResult(state=state, history=st["history"], trace=st["trace"],
                       selected_epoch=chosen if chosen == last or st["kept"] is None else st["kept_epoch"],
                       seconds=st.get("train_seconds", time.perf_counter() - t0))


def steps_for(n_source: int, n_target: int, batch_size: int) -> int:
    """One 'epoch' = one pass over the larger training set, whatever the variant."""
    return max(1, math.ceil(max(n_source, n_target) / batch_size))
