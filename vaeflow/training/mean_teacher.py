"""Self-ensembling / mean teacher (Tarvainen & Valpola, 2017; French et al., ICLR 2018).

A student is trained on the labelled batch and, on unlabelled images, to agree with a teacher whose
weights are an exponential moving average of the student's. Student and teacher see differently
augmented views of the same unlabelled batch, so agreement is learned invariance, and the EMA teacher
is a steadier target than the student itself. French et al.'s additions for domain adaptation:
  - confidence thresholding: only images the teacher predicts with max-probability ≥ threshold count,
    so early, wrong teacher guesses do not pull the student (they replace the consistency ramp-up);
  - a class-balance term: the batch's mean prediction is pushed towards uniform, which stops the
    unlabelled loss from collapsing every image onto the few classes that are confident first;
  - separate source and target batches through BatchNorm: each domain is normalised by its own
    statistics; the teacher only ever sees unlabelled batches, so its BN statistics are theirs.
One addition, from ReMixMatch (Berthelot et al., 2020) as AdaMatch uses it: distribution alignment
(adapt.mean_teacher.align, on in params; the constructor's default, off, is French et al.'s method as published).
The teacher's probabilities are multiplied by (labelled class shares) / (the teacher's mean prediction over its
last HISTORY unlabelled batches) and renormalised, before the confidence threshold and the consistency target. A
class the teacher has stopped predicting is raised back in proportion to how far it fell: the class-balance term
only nudges the student's batch mean, while a collapse is driven by the teacher's confident targets.
The shares it aligns to (adapt.mean_teacher.align_to): the labelled set's, which are the unlabelled set's only if
the domains share their class frequencies, or, for a variant that continues an adapted network, that network's mean
prediction on the unlabelled images (`predicted_shares`, fixed at the start): a label-free estimate of the
unlabelled set's own shares, so alignment keeps the teacher from drifting away from where it started.
How far it pulls (adapt.mean_teacher.align_slack): all the way to those shares (1), or only a class whose share has
left the band [shares / slack, shares · slack], back to the band's edge (`within`): the domains may then differ in
their class frequencies by up to that factor unopposed, while a class that collapses is still raised.
Which way it pulls (adapt.mean_teacher.align_floor): both (a class above its share is lowered to it, one below is
raised), or up only: a floor. A collapse is a class falling, and the floor raises it as fully as alignment does; what
it leaves alone is a class the unlabelled set simply has more of, which two-way alignment pushes down into its
neighbours (a source whose 7s are rarer than the target's holds the target's 7 down, and its most 2-like 7s go to 2).
That can only happen when the labels come from another domain: "auto" (`floor_for`) keeps the floor there and pulls
both ways when the labels were drawn from the unlabelled set itself (few-label learning), whose shares they estimate.

The same engine serves unsupervised domain adaptation (labelled = source, unlabelled = target train)
and few-label learning (labelled = the few target labels, unlabelled = the target train): nothing in
it knows which, except align_floor's "auto", which the registry's labelled column resolves (`floor_for`).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from vaeflow.models.classifier import Classifier
from vaeflow.training.algorithms import Algorithm, average_teacher, ema_update  # noqa: F401  (kept importable here)


def consistency_loss(student_probs: torch.Tensor, teacher_probs: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """Squared difference of the class probabilities, summed over classes, masked, averaged over the batch
    (masked images count as zeros, so the loss grows as the teacher grows confident)."""
    return (((student_probs - teacher_probs) ** 2).sum(1) * mask).mean()


HISTORY = 128  # batches in a running prediction distribution (ReMixMatch's and AdaMatch's MovingAverage buffer)


def align(p_target: torch.Tensor, p_source_dist: torch.Tensor, p_target_dist: torch.Tensor) -> torch.Tensor:
    """Distribution alignment (ReMixMatch, AdaMatch): p · (source distribution / target distribution), each row
    renormalised."""
    q = p_target * (1e-6 + p_source_dist) / (1e-6 + p_target_dist)
    return q / q.sum(1, keepdim=True)


def within(shares: torch.Tensor, prior: torch.Tensor, slack: float, floor: bool = False) -> torch.Tensor:
    """`shares` clipped, class by class, into [prior / slack, prior · slack]: the nearest class distribution (per class)
    that differs from `prior` by no more than a factor `slack`. slack = 1 gives `prior` itself, exactly (x / 1, x · 1,
    max and min round nothing), so the plain alignment is this with no slack. With `floor` the band has no top
    (shares are only raised to prior / slack): a class predicted more often than its prior is left alone."""
    raised = torch.maximum(shares, prior / slack)
    return raised if floor else torch.minimum(raised, prior * slack)


def align_recent(p_target: torch.Tensor, p_source_dist: torch.Tensor, history: torch.Tensor, step: int,
                 slack: float = 1.0, floor: bool = False) -> torch.Tensor:
    """align() against the recent target distribution: this batch's mean prediction takes the history's slot for
    `step` (a ring of HISTORY rows, kept in place), and the rows' mean is the target distribution. With slack > 1 the
    distribution is pulled only as far as `within(·, p_source_dist, slack)`: a class whose share is within that
    factor of the prior is left as it is, one beyond is moved back to the band's edge; with `floor`, only one below."""
    history[step % len(history)] = p_target.mean(0)
    recent = history.mean(0)
    return align(p_target, within(recent, p_source_dist, slack, floor), recent)


@torch.no_grad()
def predicted_shares(net: nn.Module, x: torch.Tensor, batch_size: int = 256, limit: int = 10_000) -> torch.Tensor:
    """The mean class probability of `net` over the first `limit` images of x, each batch normalised by its own
    statistics as the teacher's are in training (BatchNorm in train mode, on a copy: the network's running statistics
    stay as they are; dropout off, so that no random number is drawn and a resumed run sees the same stream). The first
    images are a random subset: prepare's stratified splits come out in shuffled order."""
    probe = copy.deepcopy(net).train()
    for m in probe.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    x = x[:limit]
    total = sum(torch.softmax(probe(x[i:i + batch_size]), 1).sum(0) for i in range(0, len(x), batch_size))
    return total / len(x)


def class_balance_loss(student_probs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Binary cross-entropy of the batch-mean class probability against 1/C, summed over the C classes.
    Minimal when the batch's mean prediction is uniform."""
    avg = student_probs.mean(0)
    c = avg.numel()
    u = 1.0 / c
    return -(u * torch.log(avg + eps) + (1 - u) * torch.log(1 - avg + eps)).sum()


def floor_for(setting: bool | str, labelled: str | None) -> bool:
    """adapt.mean_teacher.align_floor for a variant whose labels are `labelled` (its registry column): "auto" is the
    floor unless the labels were drawn from the unlabelled set itself ("few", "target"), whose shares they estimate."""
    if setting == "auto":
        return labelled not in ("few", "target")
    return bool(setting)


class MeanTeacher(Algorithm):
    uses_unlabelled = True

    def __init__(self, clf: Classifier, *, ema: float = 0.99, threshold: float = 0.968,
                 consistency_weight: float = 3.0, class_balance: float = 0.005, align: bool = False,
                 align_to: str = "labelled", align_slack: float = 1.0, align_floor: bool = False,
                 continued: bool = False, **kw) -> None:
        super().__init__(clf, **kw)
        self.aligns = align  # not `align`: that is the module's function
        self.align_slack, self.align_floor = align_slack, align_floor
        # a network trained from the VAE encoder or at random predicts nothing yet: only a continued one estimates
        self.align_to = align_to if continued else "labelled"
        c = clf.n_classes
        # The teacher's recent unlabelled predictions (a buffer, so a resumed run aligns with the same history);
        # the labelled shares are set by setup() from the labels themselves.
        self.register_buffer("p_unl_hist", torch.full((HISTORY, c), 1.0 / c))
        self.prior = torch.full((c,), 1.0 / c)
        self.teacher = copy.deepcopy(clf)
        for q in self.teacher.parameters():
            q.requires_grad_(False)
        self.ema, self.threshold = ema, threshold
        self.consistency_weight, self.class_balance = consistency_weight, class_balance
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # the EMA's warm-up; in checkpoints

    @classmethod
    def from_config(cls, clf, a, continued: bool = False, labelled: str | None = "source", **ctx):
        mt = a.mean_teacher
        return cls(clf, ema=mt.ema, threshold=mt.threshold, consistency_weight=mt.consistency_weight,
                   class_balance=mt.class_balance, align=mt.align, align_to=mt.align_to, align_slack=mt.align_slack,
                   align_floor=floor_for(mt.align_floor, labelled), continued=continued, **cls.common(a))

    def setup(self, x_lab, y_lab, x_unl) -> None:
        # Before any resume (fit() restores the checkpoint after setup), so the teacher here is still the continued
        # network and a resumed run estimates the same shares.
        n = self.p_unl_hist.shape[1]
        if self.aligns and self.align_to == "continued" and x_unl is not None:
            self.prior = predicted_shares(self.teacher, x_unl).to(self.p_unl_hist.device)
            self.p_unl_hist.copy_(self.prior.expand_as(self.p_unl_hist))  # the first steps align to where it starts
            return
        self.prior = (torch.bincount(y_lab, minlength=n).float() / max(len(y_lab), 1)).to(self.p_unl_hist.device)

    def resolved(self) -> dict:
        # align_floor "auto" follows the variant's labels (floor_for); align_to falls back to "labelled" for a run
        # that continues nothing; align is the section's own, given because the other two mean nothing without it
        return {"align": bool(self.aligns), "align_to": self.align_to, "align_floor": bool(self.align_floor)}

    @torch.no_grad()
    def aligned(self, teacher_probs: torch.Tensor) -> torch.Tensor:
        """The teacher's probabilities as targets: aligned to `prior` (setup's shares) when align is set."""
        if not self.aligns:
            return teacher_probs
        return align_recent(teacher_probs, self.prior, self.p_unl_hist, int(self.steps), self.align_slack,
                            self.align_floor)

    @classmethod
    def schedule(cls, a) -> int:
        return a.mean_teacher.epochs or a.epochs

    def update(self, x, y, x_unl, p, check=lambda loss: loss, unl_idx=None):
        _, cls_loss = self.supervised(x, y)
        student_probs = torch.softmax(self.clf(self.augment(x_unl)), 1)  # its own BN pass: the unlabelled domain
        with torch.no_grad():
            # Train mode: the teacher normalises with the unlabelled batch's statistics and keeps running
            # averages of them (dropout, if the trunk has it, is one more source of view noise).
            self.teacher.train()
            teacher_probs = self.aligned(torch.softmax(self.teacher(self.augment(x_unl)), 1))
            thr = self.confidence_threshold(self.threshold, teacher_probs.shape[1])
            confident = (teacher_probs.max(1).values >= thr).float()
        cons = consistency_loss(student_probs, teacher_probs, confident)
        # French et al. scale the balance term by the confident fraction: it only acts alongside consistency.
        bal = class_balance_loss(student_probs) * confident.mean()
        loss = cls_loss + self.consistency_weight * cons + self.class_balance * bal
        check(loss)
        self.step(loss)
        average_teacher(self)  # the teacher keeps its own BatchNorm statistics (it sees the unlabelled batches)
        return {"cls_loss": cls_loss.detach(), "consistency": cons.detach(), "confident": confident.mean()}

    def predictor(self) -> nn.Module:
        return self.teacher
