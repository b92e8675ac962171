"""SHOT: source hypothesis transfer (Liang et al., ICML 2020), the target phase.

It continues a network trained on source labels (the `source_only` variant, with label smoothing as SHOT
trains it) and never sees a source image again: the classifier head (the source hypothesis) is frozen and
only the feature extractor moves, on unlabelled target images, so that the frozen head's predictions are
  - confident per image (mean per-image entropy down),
  - diverse over the batch (entropy of the batch-mean prediction up: no collapse onto a few classes),
  - and agree with self-supervised pseudo-labels: each image's nearest class centroid (cosine) in feature
    space, the centroids weighted by the predictions and refined once (SHOT's `obtain_label`), recomputed
    over the whole target set at the start of every epoch.

Where vaeflow differs from SHOT's code: Adam at shot.lr with the annealing every method shares (SHOT: SGD
0.01), no augmentation (as SHOT's digit code), and an EMA of the weights is scored (shot.ema; 0 scores the
network itself): pseudo-label feedback makes the last step wander, and the average is steadier.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from vaeflow.models.classifier import Classifier
from vaeflow.training.algorithms import Algorithm, average_teacher


def information_maximisation(logits: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean per-image entropy of softmax(logits) minus the entropy of their batch mean (nats)."""
    p = torch.softmax(logits, 1)
    per_image = -(p * torch.log(p + eps)).sum(1).mean()
    mean = p.mean(0)
    return per_image - (-(mean * torch.log(mean + eps)).sum())


@torch.no_grad()
def centroid_pseudo_labels(feats: torch.Tensor, probs: torch.Tensor, refinements: int = 1) -> torch.Tensor:
    """SHOT's pseudo-labels: features (with a constant 1 appended, then L2-normalised) are assigned to the
    nearest prediction-weighted class centroid by cosine distance; then `refinements` times, centroids are
    recomputed from those hard labels and the images re-assigned. Classes no image is predicted as get no
    centroid (SHOT's labelset)."""
    f = torch.cat([feats, torch.ones(len(feats), 1, dtype=feats.dtype, device=feats.device)], 1)
    f = F.normalize(f, dim=1)
    k = probs.shape[1]
    present = torch.bincount(probs.argmax(1), minlength=k) > 0
    weights = probs
    labels = None
    for _ in range(refinements + 1):
        cent = weights.T @ f / (weights.sum(0)[:, None] + 1e-8)
        dist = 1 - F.normalize(cent, dim=1) @ f.T            # cosine distance, classes × images
        dist[~present] = float("inf")
        labels = dist.argmin(0)
        weights = F.one_hot(labels, k).to(f.dtype)
    return labels


class SHOT(Algorithm):
    uses_unlabelled = True

    def __init__(self, clf: Classifier, *, cls_weight: float = 0.3, ent_weight: float = 1.0, ema: float = 0.99,
                 **kw) -> None:
        for q in clf.head.parameters():  # the source hypothesis stays as trained
            q.requires_grad_(False)
        super().__init__(clf, **kw)
        self.cls_weight, self.ent_weight, self.ema = cls_weight, ent_weight, ema
        self.teacher = copy.deepcopy(clf) if ema > 0 else None
        self.register_buffer("labels", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # the EMA's warm-up; in checkpoints

    @classmethod
    def from_config(cls, clf, a, **ctx):
        s = a.shot
        return cls(clf, cls_weight=s.cls_weight, ent_weight=s.ent_weight, ema=s.ema, lr=s.lr,
                   weight_decay=a.weight_decay, augment=None)

    @classmethod
    def schedule(cls, a) -> int:
        return a.shot.epochs

    @torch.no_grad()
    def begin_epoch(self, epoch: int, x_unl: torch.Tensor | None) -> dict:
        """Pseudo-labels of the whole target set from the network as it is (eval mode: running statistics,
        which are the target's: only target batches pass through it)."""
        self.clf.eval()
        feats = torch.cat([self.clf.features(c) for c in torch.split(x_unl, 1024)])
        probs = torch.softmax(self.clf.logits(feats), 1)
        self.labels = centroid_pseudo_labels(feats, probs)
        self.clf.train()
        agree = (self.labels == probs.argmax(1)).float().mean().item()
        return {"pseudo_label_agreement": agree}  # with the head's own predictions: no target label read

    def update(self, x, y, x_unl, p, check=lambda loss: loss, unl_idx=None):
        logits = self.clf(x_unl)
        im = information_maximisation(logits)
        pl = F.cross_entropy(logits, self.labels[unl_idx]) if self.cls_weight else logits.new_zeros(())
        loss = self.ent_weight * im + self.cls_weight * pl
        check(loss)
        self.step(loss)
        average_teacher(self, buffers=True)
        return {"im_loss": im.detach(), "pseudo_label_loss": pl.detach()}

    def predictor(self):
        return self.teacher if self.teacher is not None else self.clf
