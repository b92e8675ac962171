"""Adaptation methods as strategies of one shape (DomainBed's): `update(...)` takes one optimiser step on a
labelled batch and, for the methods that use them, a batch of unlabelled images; `predict(x)` scores.

The training loop (adapt_trainer.fit) draws the batches, sets the progress p ∈ [0, 1] and checkpoints the
algorithm as a whole (it is an nn.Module: network, teacher, every buffer), so each method is only its
loss. A new method is one more subclass named in build_algorithm, not another branch in the loop.

  ERM          cross-entropy on the labelled batch (source_only, finetune, scratch, oracle)
  DANN         + a domain classifier behind gradient reversal (Ganin et al., 2016)
  MeanTeacher  + an EMA teacher's confident predictions as consistency targets (mean_teacher.py)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaeflow.config import AugmentConfig
from vaeflow.models.classifier import Classifier, dann_lambda
from vaeflow.training.augment import NO_AUGMENT, augment


class Algorithm(nn.Module):
    """A classifier and its optimiser. Subclasses define `update`; the base gives the supervised loss."""
    uses_unlabelled = False

    def __init__(self, clf: Classifier, *, lr: float, weight_decay: float, augment: AugmentConfig | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.clf = clf
        self.base_lr = lr
        self.aug = augment or NO_AUGMENT
        self.label_smoothing = label_smoothing
        self.opt = torch.optim.Adam(self.clf.parameters(), lr=lr, weight_decay=weight_decay)

    def set_progress(self, p: float) -> None:
        """Ganin et al.'s annealing lr / (1 + 10 p)^0.75, for every method alike."""
        for g in self.opt.param_groups:
            g["lr"] = self.base_lr / (1 + 10 * p) ** 0.75

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.aug)

    def supervised(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, cross-entropy) of an augmented labelled batch."""
        feats = self.clf.features(self.augment(x))
        return feats, F.cross_entropy(self.clf.head(feats), y, label_smoothing=self.label_smoothing)

    def step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def update(self, x: torch.Tensor, y: torch.Tensor, x_unl: torch.Tensor | None, p: float,
               check=lambda loss: None) -> dict[str, torch.Tensor]:
        """One optimiser step; returns its losses (detached). `check(loss)` may raise before the step."""
        raise NotImplementedError

    def predictor(self) -> nn.Module:
        """The network that is scored and saved (the student; MeanTeacher's teacher)."""
        return self.clf

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        net = self.predictor()
        net.eval()
        return torch.cat([net(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


class ERM(Algorithm):
    def update(self, x, y, x_unl, p, check=lambda loss: None):
        _, cls_loss = self.supervised(x, y)
        check(cls_loss)
        self.step(cls_loss)
        return {"cls_loss": cls_loss.detach()}


class DANN(Algorithm):
    uses_unlabelled = True

    def __init__(self, clf: Classifier, *, gamma: float = 10.0, lambda_max: float = 1.0, **kw) -> None:
        if clf.domain_head is None:
            raise ValueError("DANN needs a Classifier built with a domain head (domain_hidden=...)")
        super().__init__(clf, **kw)
        self.gamma, self.lambda_max = gamma, lambda_max

    def update(self, x, y, x_unl, p, check=lambda loss: None):
        feats, cls_loss = self.supervised(x, y)
        # Target features in their own forward pass: with feature_bn each domain gets its own statistics.
        t_feats = self.clf.features(self.augment(x_unl))
        dom = self.clf.domain_logits(torch.cat([feats, t_feats]), dann_lambda(p, self.gamma, self.lambda_max))
        is_target = torch.cat([torch.zeros(len(feats), device=dom.device), torch.ones(len(t_feats), device=dom.device)])
        dom_loss = F.binary_cross_entropy_with_logits(dom, is_target)
        loss = cls_loss + dom_loss  # the reversal layer already scales the trunk's share by λ
        check(loss)
        self.step(loss)
        return {"cls_loss": cls_loss.detach(), "domain_loss": dom_loss.detach()}


def build_algorithm(name: str, clf: Classifier, adapt_cfg, **kw) -> Algorithm:
    """The algorithm `name` ('erm' | 'dann' | 'mean_teacher') with its settings from the adapt section."""
    from vaeflow.training.mean_teacher import MeanTeacher

    common = dict(lr=kw.pop("lr", adapt_cfg.lr), weight_decay=adapt_cfg.weight_decay, augment=adapt_cfg.augment,
                  label_smoothing=adapt_cfg.label_smoothing)
    if name == "erm":
        return ERM(clf, **common)
    if name == "dann":
        return DANN(clf, gamma=adapt_cfg.dann.gamma, lambda_max=adapt_cfg.dann.lambda_max, **common)
    if name == "mean_teacher":
        mt = adapt_cfg.mean_teacher
        return MeanTeacher(clf, ema=mt.ema, threshold=mt.threshold, consistency_weight=mt.consistency_weight,
                           class_balance=mt.class_balance, **common)
    raise ValueError(f"unknown algorithm {name!r}; choose erm, dann or mean_teacher")
