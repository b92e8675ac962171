"""The training loop of every adapt variant: one loop, the method is an Algorithm (algorithms.py).

Every variant runs the same number of optimiser steps on a fixed schedule and is scored at its last
step: no epoch or hyperparameter is ever chosen on target labels. Source-val accuracy is logged for
diagnosis only.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vaeflow import faults
from vaeflow.config import AugmentConfig
from vaeflow.models.classifier import Classifier
from vaeflow.training.algorithms import DANN, ERM, Algorithm
from vaeflow.training.checkpoint import CheckpointClock, NonFiniteLoss, save_checkpoint, try_resume


@dataclass
class AdaptResult:
    state: dict[str, torch.Tensor]
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


@torch.inference_mode()
def predict(clf: Classifier, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    clf.eval()
    return torch.cat([clf(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def accuracy(clf: Classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict(clf, x) == y).float().mean().item()


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(n_classes, n_classes)


def fit(algo: Algorithm, x_lab: torch.Tensor, y_lab: torch.Tensor, x_unl: torch.Tensor | None, *,
        epochs: int, steps_per_epoch: int, batch_size: int, ckpt_path: Path, fingerprint: str,
        monitor: tuple[torch.Tensor, torch.Tensor] | None = None,
        on_epoch: Callable[[dict], None] | None = None, checkpoint_every_s: float = 0.0) -> AdaptResult:
    """Train `algo` on a fixed schedule: `epochs` × `steps_per_epoch` steps, each on a labelled batch and,
    when the algorithm uses them, an unlabelled batch, both drawn with replacement.

    Drawing with replacement gives a labelled set of 50 images as many steps as one of 5,000, so the
    variants differ only in their data and method, not their compute. Checkpoints hold the whole
    algorithm (student, teacher, BN statistics), its optimiser and every RNG: resuming is exact."""
    if algo.uses_unlabelled and x_unl is None:
        raise ValueError(f"{type(algo).__name__} trains on unlabelled images too; none were given")
    st = {"epoch": 0, "step": 0, "history": []}
    ckpt = try_resume(ckpt_path, fingerprint, algo, algo.opt)
    if ckpt is not None:
        st = ckpt["state"]
    nan_at = faults.nan_at(ckpt_path.stem)  # fault injection for the tests; None in real runs
    total = epochs * steps_per_epoch
    device = x_lab.device
    t0 = time.perf_counter()
    clock = CheckpointClock(checkpoint_every_s)  # 0: after every epoch
    while st["epoch"] < epochs:
        epoch = st["epoch"]
        algo.train()
        sums: dict[str, torch.Tensor] = {}
        for s in range(steps_per_epoch):
            faults.pause_point(f"step:{ckpt_path.stem}:{epoch}:{s}")
            p = (epoch * steps_per_epoch + s) / total
            algo.set_progress(p)
            idx = torch.randint(len(x_lab), (batch_size,), device=device)
            xu = x_unl[torch.randint(len(x_unl), (batch_size,), device=device)] if algo.uses_unlabelled else None

            def check(loss: torch.Tensor, where=(epoch, s)) -> torch.Tensor:
                if nan_at == where:
                    loss.data = loss.data * float("nan")
                if not torch.isfinite(loss):
                    raise NonFiniteLoss(f"non-finite classifier loss at epoch {where[0]} step {where[1]} (global "
                                        f"step {where[0] * steps_per_epoch + where[1]}); training stopped, last "
                                        f"good checkpoint kept at {ckpt_path}")
                return loss

            for k, v in algo.update(x_lab[idx], y_lab[idx], xu, p, check=check).items():
                sums[k] = sums.get(k, 0) + v  # tensors: no host sync per step
        row = {"epoch": epoch, **{k: float(v) / steps_per_epoch for k, v in sums.items()},
               "seconds": time.perf_counter() - t0}
        if monitor is not None:
            row["source_val_acc"] = (algo.predict(monitor[0]) == monitor[1]).float().mean().item()
        st["history"].append(row)
        st["epoch"] = epoch + 1
        st["step"] = (epoch + 1) * steps_per_epoch
        if clock.due(last_epoch=st["epoch"] >= epochs):
            save_checkpoint(ckpt_path, fingerprint, algo, algo.opt, st)
        if on_epoch:
            on_epoch(row)
    return AdaptResult(state={k: v.detach().clone() for k, v in algo.predictor().state_dict().items()},
                       history=st["history"], seconds=time.perf_counter() - t0)


def train_classifier(clf: Classifier, x_lab: torch.Tensor, y_lab: torch.Tensor, *, x_unlab_target: torch.Tensor | None,
                     epochs: int, steps_per_epoch: int, batch_size: int, lr: float, weight_decay: float,
                     dann_gamma: float = 10.0, dann_lambda_max: float = 1.0, augment: AugmentConfig | None = None,
                     label_smoothing: float = 0.0, **fit_kw) -> AdaptResult:
    """Cross-entropy on (x_lab, y_lab); with `x_unlab_target`, DANN (Ganin et al., 2016). A shortcut for
    `fit` with ERM or DANN (self-training's rounds use it)."""
    kw = dict(lr=lr, weight_decay=weight_decay, augment=augment, label_smoothing=label_smoothing)
    if x_unlab_target is None:
        algo: Algorithm = ERM(clf, **kw)
    else:
        algo = DANN(clf, gamma=dann_gamma, lambda_max=dann_lambda_max, **kw)
    return fit(algo, x_lab, y_lab, x_unlab_target, epochs=epochs, steps_per_epoch=steps_per_epoch,
               batch_size=batch_size, **fit_kw)


def steps_for(n_source: int, n_target: int, batch_size: int) -> int:
    """One 'epoch' = one pass over the larger training set, whatever the variant."""
    return max(1, math.ceil(max(n_source, n_target) / batch_size))
