"""FixMatch (Sohn et al., NeurIPS 2020) for few labels and a pool of unlabelled images.

Each step: cross-entropy on the weakly augmented labelled batch, and on unlabelled images, the class the
network predicts for a weak view, where it is confident (≥ threshold), is the target for a strong view of
the same image. Weak: the adapt.augment warp every method uses. Strong: a much larger random affine
warp, noise and cutout; drawn batched on the device (FixMatch's RandAugment picks among PIL operations
per image; this keeps its two ingredients that carry over to any 1- or 3-channel image: geometry and
occlusion). All three views go through the network in one batch, so BatchNorm sees them together, as
FixMatch's code does.

Where vaeflow differs from FixMatch's code: Adam with the shared annealing (FixMatch: SGD 0.03, cosine), and
`fixmatch.mu` unlabelled images per labelled one (FixMatch: 7) set by the CPU budget. An EMA of the
weights is scored, as FixMatch's code evaluates its EMA model, with its decay warmed up (`average`).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from vaeflow.config import AugmentConfig
from vaeflow.models.classifier import Classifier
from vaeflow.training.algorithms import Algorithm, average_teacher
from vaeflow.training.augment import augment, cutout


class FixMatch(Algorithm):
    uses_unlabelled = True

    def __init__(self, clf: Classifier, *, threshold: float = 0.95, unlabelled_weight: float = 1.0, mu: int = 7,
                 strong: AugmentConfig | None = None, cutout: float = 0.5, ema: float = 0.999, **kw) -> None:
        super().__init__(clf, **kw)
        self.threshold, self.unlabelled_weight = threshold, unlabelled_weight
        self.unlabelled_ratio = mu  # adapt_trainer.fit draws batch_size·mu unlabelled images per step
        self.strong, self.cutout = strong, cutout
        self.ema = ema
        self.teacher = copy.deepcopy(clf) if ema > 0 else None
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # in the checkpoint: resume is exact

    @classmethod
    def from_config(cls, clf, a, **ctx):
        f = a.fixmatch
        return cls(clf, threshold=f.threshold, unlabelled_weight=f.unlabelled_weight, mu=f.mu, strong=f.strong,
                   cutout=f.cutout, ema=f.ema, **cls.common(a))

    def strong_view(self, x: torch.Tensor) -> torch.Tensor:
        return cutout(augment(x, self.strong), self.cutout)

    def update(self, x, y, x_unl, p, check=lambda loss: loss, unl_idx=None):
        n, u = len(x), len(x_unl)
        logits = self.clf(torch.cat([self.augment(x), self.augment(x_unl), self.strong_view(x_unl)]))
        lab, weak, strong = logits[:n], logits[n:n + u], logits[n + u:]
        sup = F.cross_entropy(lab, y, label_smoothing=self.label_smoothing)
        with torch.no_grad():
            conf, pseudo = torch.softmax(weak.detach(), 1).max(1)
            mask = self.pseudo_label_mask(conf, pseudo, unl_idx)
        unsup = (F.cross_entropy(strong, pseudo, reduction="none") * mask).mean()
        loss = sup + self.unlabelled_weight * unsup
        check(loss)
        self.step(loss)
        self.average()
        return {"cls_loss": sup.detach(), "unlabelled_loss": unsup.detach(), "confident": mask.mean()}

    def average(self) -> None:
        """One step of the scored EMA of the weights, warmed up (mean_teacher.average_teacher): 0.999 averages
        over ~1,000 steps, more than a short run has (the digits default: 540)."""
        average_teacher(self, buffers=True)

    def pseudo_label_mask(self, conf: torch.Tensor, pseudo: torch.Tensor, unl_idx) -> torch.Tensor:
        return (conf >= self.confidence_threshold(self.threshold, self.clf.n_classes)).float()

    def predictor(self):
        return self.teacher if self.teacher is not None else self.clf


class FlexMatch(FixMatch):
    """FixMatch with curriculum pseudo-labelling (Zhang et al., NeurIPS 2021): a threshold per class that
    rises with how well the network already learns that class, instead of one fixed τ.

    σ(c): the unlabelled images whose latest prediction above τ was class c (each image's is kept, so the
    count follows the whole pool, not one batch). β(c) = σ(c) / max(max_c' σ(c'), images never above τ):
    the "threshold warm-up", so that while most of the pool has never been confident every class's
    threshold stays low. T(c) = β(c) / (2 − β(c)) · τ, FlexMatch's convex mapping. Hard classes, and every
    class early on, take pseudo-labels at lower confidence; FixMatch's τ = 0.95 leaves most of the pool
    unused for the first epochs, which costs most where the schedule is short. τ, the views and the loss
    are FixMatch's (fixmatch section)."""

    def setup(self, x_lab, y_lab, x_unl) -> None:
        # a buffer, so a checkpoint holds it and a resumed run continues with the same thresholds
        self.register_buffer("selected", torch.full((len(x_unl),), -1, dtype=torch.long, device=x_unl.device))

    def class_thresholds(self, tau: float) -> torch.Tensor:
        chosen = self.selected[self.selected >= 0]
        sigma = torch.bincount(chosen, minlength=self.clf.n_classes).float()
        unused = torch.tensor(float(len(self.selected) - len(chosen)), device=sigma.device)
        beta = sigma / torch.maximum(sigma.max(), unused).clamp_min(1.0)
        return beta / (2 - beta) * tau

    def pseudo_label_mask(self, conf, pseudo, unl_idx) -> torch.Tensor:
        tau = self.confidence_threshold(self.threshold, self.clf.n_classes)
        mask = (conf >= self.class_thresholds(tau)[pseudo]).float()
        over = conf >= tau  # σ counts confidence above τ
        self.selected[unl_idx[over]] = pseudo[over]
        return mask
