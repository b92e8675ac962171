"""Classifier training for the adapt variants: supervised, plus DANN's adversarial domain loss.

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
import torch.nn.functional as F

from vaeflow import faults
from vaeflow.models.classifier import Classifier, dann_lambda
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


def train_classifier(clf: Classifier, x_lab: torch.Tensor, y_lab: torch.Tensor, *, x_unlab_target: torch.Tensor | None,
                     epochs: int, steps_per_epoch: int, batch_size: int, lr: float, weight_decay: float,
                     dann_gamma: float = 10.0, dann_lambda_max: float = 1.0,
                     monitor: tuple[torch.Tensor, torch.Tensor] | None = None,
                     ckpt_path: Path, fingerprint: str,
                     on_epoch: Callable[[dict], None] | None = None, checkpoint_every_s: float = 0.0) -> AdaptResult:
    """Cross-entropy on (x_lab, y_lab); with `x_unlab_target`, DANN (Ganin et al., 2016).

    Batches are drawn with replacement, so a labelled set of 50 images gets as many steps as one of
    5,000 and the variants differ only in their data, not their compute. The learning rate follows
    Ganin et al.'s annealing lr / (1 + 10 p)^0.75 with p the training progress in [0, 1].
    """
    dann = x_unlab_target is not None
    opt = torch.optim.Adam(clf.parameters(), lr=lr, weight_decay=weight_decay)
    st = {"epoch": 0, "step": 0, "history": []}
    ckpt = try_resume(ckpt_path, fingerprint, clf, opt)
    if ckpt is not None:
        st = ckpt["state"]
    nan_at = faults.nan_at(ckpt_path.stem)  # fault injection for the tests; None in real runs
    total = epochs * steps_per_epoch
    device = x_lab.device
    t0 = time.perf_counter()
    clock = CheckpointClock(checkpoint_every_s)  # 0: after every epoch
    while st["epoch"] < epochs:
        epoch = st["epoch"]
        clf.train()
        sums = torch.zeros(3, device=device)
        for s in range(steps_per_epoch):
            faults.pause_point(f"step:{ckpt_path.stem}:{epoch}:{s}")
            p = (epoch * steps_per_epoch + s) / total
            for g in opt.param_groups:
                g["lr"] = lr / (1 + 10 * p) ** 0.75
            idx = torch.randint(len(x_lab), (batch_size,), device=device)
            feats = clf.features(x_lab[idx])
            cls_loss = F.cross_entropy(clf.head(feats), y_lab[idx])
            loss = cls_loss
            dom_loss = torch.zeros((), device=device)
            if dann:
                lam = dann_lambda(p, dann_gamma, dann_lambda_max)
                t_idx = torch.randint(len(x_unlab_target), (batch_size,), device=device)
                t_feats = clf.features(x_unlab_target[t_idx])
                dom = clf.domain_logits(torch.cat([feats, t_feats]), lam)
                is_target = torch.cat([torch.zeros(batch_size, device=device), torch.ones(batch_size, device=device)])
                dom_loss = F.binary_cross_entropy_with_logits(dom, is_target)
                loss = cls_loss + dom_loss  # the reversal layer already scales the encoder's share by λ
            if nan_at == (epoch, s):
                loss = loss * float("nan")
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"non-finite classifier loss at epoch {epoch} step {s} (global step "
                                    f"{epoch * steps_per_epoch + s}); training stopped, last good checkpoint "
                                    f"kept at {ckpt_path}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += torch.stack([cls_loss.detach(), dom_loss.detach(), torch.ones((), device=device)])
        cls_mean, dom_mean, _ = (sums / steps_per_epoch).tolist()
        row = {"epoch": epoch, "cls_loss": cls_mean, "seconds": time.perf_counter() - t0}
        if dann:
            row["domain_loss"] = dom_mean
        if monitor is not None:
            row["source_val_acc"] = accuracy(clf, *monitor)
        st["history"].append(row)
        st["epoch"] = epoch + 1
        st["step"] = (epoch + 1) * steps_per_epoch
        if clock.due(last_epoch=st["epoch"] >= epochs):
            save_checkpoint(ckpt_path, fingerprint, clf, opt, st)
        if on_epoch:
            on_epoch(row)
    return AdaptResult(state={k: v.detach().clone() for k, v in clf.state_dict().items()},
                       history=st["history"], seconds=time.perf_counter() - t0)


def steps_for(n_source: int, n_target: int, batch_size: int) -> int:
    """One 'epoch' = one pass over the larger training set, whatever the variant."""
    return max(1, math.ceil(max(n_source, n_target) / batch_size))
