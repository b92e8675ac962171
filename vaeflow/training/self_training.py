"""Self-training on confident target pseudo-labels, continuing a DANN run (the `self_training` variant).

Each round (self_training.epochs epochs; self_training.rounds of them) starts by labelling every unlabelled
target training image with the current network, keeping those whose softmax confidence is at least
`threshold`; each step then trains on the source batch (DANN's two losses, still on) plus the confident
pseudo-labels among the unlabelled batch. The target's true labels never enter: only images are handed in.
Rounds, threshold and epochs are a fixed schedule, never chosen on target labels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vaeflow.training.algorithms import DANN


@torch.inference_mode()
def pseudo_labels(clf, x: torch.Tensor, threshold: float, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, confident mask) of `clf` on `x`: confident = max softmax probability ≥ threshold."""
    clf.eval()
    probs = torch.cat([torch.softmax(clf(x[i:i + batch_size]), dim=1) for i in range(0, len(x), batch_size)])
    conf, pred = probs.max(dim=1)
    return pred, conf >= threshold


class SelfTraining(DANN):
    def __init__(self, clf, *, threshold: float = 0.95, epochs_per_round: int = 2, **kw) -> None:
        super().__init__(clf, **kw)
        self.threshold, self.epochs_per_round = threshold, epochs_per_round
        # Checkpointed with the weights (allocated in setup, before a resume loads them): a run resumed
        # mid-round keeps the labels its round started with.
        self.register_buffer("labels", torch.zeros(0, dtype=torch.long))
        self.register_buffer("confident", torch.zeros(0, dtype=torch.bool))

    @classmethod
    def from_config(cls, clf, a, **ctx):
        st = a.self_training
        return cls(clf, threshold=st.threshold, epochs_per_round=st.epochs, gamma=a.dann.gamma,
                   lambda_max=a.dann.lambda_max, **{**cls.common(a), "lr": st.lr})

    @classmethod
    def schedule(cls, a) -> int:
        return a.self_training.rounds * a.self_training.epochs

    def setup(self, x_lab, y_lab, x_unl) -> None:
        self.labels = torch.zeros(len(x_unl), dtype=torch.long, device=x_unl.device)
        self.confident = torch.zeros(len(x_unl), dtype=torch.bool, device=x_unl.device)

    def begin_epoch(self, epoch: int, x_unl: torch.Tensor | None) -> dict:
        """At each round's first epoch, label the target set with the network as it is."""
        if epoch % self.epochs_per_round:
            return {}
        n_classes = self.clf.n_classes
        labels, confident = pseudo_labels(self.clf, x_unl, self.confidence_threshold(self.threshold, n_classes))
        self.labels.copy_(labels)
        self.confident.copy_(confident)
        self.clf.train()
        per_class = torch.bincount(labels[confident], minlength=n_classes).tolist()
        return {"pseudo_labelled": int(confident.sum()), "round": epoch // self.epochs_per_round,
                "per_class": per_class}

    def update(self, x, y, x_unl, p, check=lambda loss: loss, unl_idx=None):
        feats, cls_loss = self.supervised(x, y)
        keep = self.confident[unl_idx].float()
        t_logits = self.clf(self.augment(x_unl))
        pl_loss = (F.cross_entropy(t_logits, self.labels[unl_idx], reduction="none") * keep).mean()
        dom_loss = self.domain_loss(feats, x_unl, p)
        loss = cls_loss + pl_loss + dom_loss
        check(loss)
        self.step(loss)
        return {"cls_loss": cls_loss.detach(), "pseudo_label_loss": pl_loss.detach(), "domain_loss": dom_loss.detach()}
