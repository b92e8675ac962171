"""AdaMatch (Berthelot et al., ICLR 2022): FixMatch carried over to domain adaptation.

Each step sees a labelled source batch and an unlabelled target batch, each as a weak view (adapt.augment)
and a strong one (FixMatch's: fixmatch.strong + cutout). Three additions to FixMatch, all from the paper:
  - random logit interpolation: the source logits of a pass on source + target together (BatchNorm with
    the joint batch's statistics) and of a pass on the source alone (the source's statistics) are mixed
    with a uniform random weight per logit, so the classifier must be right under both normalisations;
    the running statistics are the joint pass's (the source-only pass's are dropped). So unlike the other
    methods here, its target batches are normalised together with the source's, by the paper's design, and
    it is scored with those mixed statistics;
  - a relative confidence threshold: τ times the mean top-1 confidence on the weak source views, so the
    threshold follows how confident this network can be (label smoothing included) instead of a constant;
  - distribution alignment: the weak target predictions are multiplied by (source label distribution,
    an EMA of the predicted source class frequencies) / (target prediction distribution, the mean over the
    last 128 batches) and renormalised before the pseudo-labels are taken, so the pseudo-labels keep the
    source's class balance rather than the over-confident classes'.
The unlabelled weight ramps up over the first half of training (a half cosine), and an EMA of the weights
is scored, as in the paper's code (google-research/adamatch, domain_adaptation/adamatch.py), with the decay
warmed up over the first steps (FixMatch.average).

Where vaeflow differs from that code: Adam with the shared annealing (the paper: SGD with cosine decay),
`adamatch.mu` target images per source image set by the CPU budget (the paper: 3), and label smoothing on
the source loss when adapt.label_smoothing sets it, as for every method.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vaeflow.models.batchnorm import scratch_statistics
from vaeflow.training.fixmatch import FixMatch
from vaeflow.training.mean_teacher import HISTORY, align, align_recent  # noqa: F401  (one alignment for both)


def ramp(p: float, warmup: float) -> float:
    """0 → 1 along a half cosine over the first `warmup` of training, then 1."""
    return 1.0 if warmup <= 0 else 0.5 - 0.5 * math.cos(math.pi * min(p / warmup, 1.0))


class AdaMatch(FixMatch):
    def __init__(self, clf, *, warmup: float = 0.5, **kw) -> None:
        super().__init__(clf, **kw)
        self.warmup = warmup
        c = clf.n_classes
        # Buffers, so that a checkpoint holds them and a resumed run aligns with the same distributions.
        self.register_buffer("p_source", torch.full((c,), 1.0 / c))
        self.register_buffer("p_target_hist", torch.full((HISTORY, c), 1.0 / c))

    @classmethod
    def from_config(cls, clf, a, **ctx):
        f, m = a.fixmatch, a.adamatch
        return cls(clf, threshold=m.threshold, unlabelled_weight=m.unlabelled_weight, mu=m.mu, strong=f.strong,
                   cutout=f.cutout, ema=m.ema, warmup=m.warmup, **cls.common(a))

    def source_logits(self, xs: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(source logits, randomly interpolated between the two normalisations; target logits)."""
        with scratch_statistics(self.clf):
            alone = self.clf(xs)                  # the source's own BatchNorm statistics
        joint = self.clf(torch.cat([xs, xt]))     # running statistics: this pass's only
        src = joint[:len(xs)]
        lam = torch.rand(src.shape, device=src.device)
        return src + (alone - src) * lam, joint[len(xs):]

    @torch.no_grad()
    def pseudo_labels(self, src_weak: torch.Tensor, tgt_weak: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pseudo-labels, mask) of the target batch from its weak view's logits."""
        ps, pt = torch.softmax(src_weak.float(), 1), torch.softmax(tgt_weak.float(), 1)
        self.p_source.mul_(0.999).add_(ps.mean(0), alpha=0.001)
        # this step's slot of the history (average() counts the step afterwards)
        q = align_recent(pt, self.p_source, self.p_target_hist, int(self.steps))
        conf, pseudo = q.max(1)
        return pseudo, (conf >= self.threshold * ps.max(1).values.mean()).float()

    def update(self, x, y, x_unl, p, check=lambda loss: loss, unl_idx=None):
        n, u = len(x), len(x_unl)
        xs = torch.cat([self.augment(x), self.strong_view(x)])
        xt = torch.cat([self.augment(x_unl), self.strong_view(x_unl)])
        src, tgt = self.source_logits(xs, xt)
        pseudo, mask = self.pseudo_labels(src[:n].detach(), tgt[:u].detach())
        yy = torch.cat([y, y])  # the mean of the weak and the strong views' losses
        sup = F.cross_entropy(src, yy, label_smoothing=self.label_smoothing)
        unsup = (F.cross_entropy(tgt[u:], pseudo, reduction="none") * mask).mean()
        loss = sup + self.unlabelled_weight * ramp(p, self.warmup) * unsup
        check(loss)
        self.step(loss)
        self.average()  # FixMatch's scored EMA, its decay warmed up
        return {"cls_loss": sup.detach(), "unlabelled_loss": unsup.detach(), "confident": mask.mean()}
