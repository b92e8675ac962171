"""Adaptation methods as strategies of one shape (DomainBed's): `update(...)` takes one optimiser step on a
labelled batch and, for the methods that use them, a batch of unlabelled images; `predict(x)` scores.

The training loop (adapt_trainer.fit) draws the batches, sets the progress p ∈ [0, 1] and the run's length
(`total_steps`, which DANN's ema_horizon reads) and checkpoints the algorithm as a whole (it is an nn.Module:
network, teacher, every buffer), so each method is only its loss. A new method is one subclass plus one row in
vaeflow/variants.py, nothing else.

Hooks a method may override (all no-ops here):
  from_config(clf, adapt_cfg, **ctx)  build it from the adapt section (ctx: the VAE, for methods that use it)
  schedule(adapt_cfg)                 how many epochs it trains (default adapt.epochs)
  setup(x_lab, y_lab, x_unl)          once before training (and again on resume: it must be deterministic)
  begin_epoch(epoch, x_unl)           before each epoch (SHOT's and self-training's pseudo-labels)
  continued()                         the network a variant that continues this one starts from (the student)
  resolved()                          settings the variant decides ("auto"), as this run uses them, for the record

  ERM          cross-entropy on the labelled batch (source_only, finetune, scratch, oracle)
  NoTraining   no step at all: a continuation scored as it is (adabn)
  DANN         + a domain classifier behind gradient reversal (Ganin et al., 2016); dann.ema scores an EMA
               (dann.ema_horizon: its span capped at a fraction of the run)
  JointERM     source labels + every target training label, each domain its own batch (joint_oracle)
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from vaeflow.config import AugmentConfig
from vaeflow.models.classifier import Classifier, dann_lambda
from vaeflow.training.augment import NO_AUGMENT, augment


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, ema: float, buffers: bool = False) -> None:
    """teacher ← ema·teacher + (1 − ema)·student, for every parameter. Buffers (BN statistics) are the
    teacher's own when it sees batches itself (the mean teacher); buffers=True copies the student's, for
    a teacher that only averages weights (SHOT, FixMatch)."""
    # Two foreach calls instead of 2 ops per parameter from Python: the same elementwise mul_ then add_, so
    # bit-identical to the per-parameter loop (tests/test_speed_equivalence.py), with fewer round trips.
    ts = list(teacher.parameters())
    ss = [s.detach() for s in student.parameters()]
    torch._foreach_mul_(ts, ema)
    torch._foreach_add_(ts, ss, alpha=1 - ema)
    if buffers:
        torch._foreach_copy_(list(teacher.buffers()), list(student.buffers()))


def average_teacher(algo: nn.Module, buffers: bool = False, window: float = 0.0) -> None:
    """One step of an algorithm's EMA teacher (`algo.teacher`, `algo.ema`, a `steps` buffer; the mean teacher,
    SHOT, FixMatch, FlexMatch, AdaMatch). The decay warms up, min(ema, 1 − 1/t) at step t, as in Tarvainen &
    Valpola's code: until 1/(1 − ema) steps have passed the teacher is the mean of every student so far, after
    that the constant EMA. Without it a teacher of a short run is still mostly its starting point: 0.99
    keeps 94 % of it after 6 steps and 37 % after 100, so a run on a small dataset scored (and, in the mean
    teacher, was taught by) a network close to its initialisation. `window` > 0 caps the average at about that many
    steps (decay at most 1 − 1/window), for a run too short for 1/(1 − ema) of them."""
    algo.steps += 1
    if algo.teacher is not None:
        decay = min(algo.ema, 1.0 - 1.0 / float(algo.steps))
        if window > 0:
            decay = min(decay, 1.0 - 1.0 / max(window, 1.0))
        ema_update(algo.teacher, algo.clf, decay, buffers=buffers)


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
        self.total_steps = 0  # the run's length, set by fit(): from the schedule, so not checkpointed
        params = [q for q in self.clf.parameters() if q.requires_grad]  # SHOT freezes its head first
        # fused: the whole Adam update in one kernel per step instead of a dozen foreach ops; 1-7 % of a
        # LeNet mean-teacher step on one CPU thread (bench/RESULTS_speed.md). Same maths, float-order only.
        fused = bool(params) and all(q.device.type in ("cpu", "cuda") and q.dtype == torch.float32 for q in params)
        self.opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)

    @classmethod
    def common(cls, a) -> dict:
        """The settings every method shares, from the adapt section."""
        return dict(lr=a.lr, weight_decay=a.weight_decay, augment=a.augment, label_smoothing=a.label_smoothing)

    @classmethod
    def from_config(cls, clf: Classifier, a, **ctx) -> Algorithm:
        return cls(clf, **cls.common(a))

    @classmethod
    def schedule(cls, a) -> int:
        return a.epochs

    def setup(self, x_lab: torch.Tensor, y_lab: torch.Tensor, x_unl: torch.Tensor | None) -> None:
        pass

    def resolved(self) -> dict:
        """Settings whose value depends on the variant rather than the adapt section alone, as this run uses them,
        with any they only qualify: the adapt stage records them per variant in metrics/adapt.json (`settings`), so
        a reader need not re-derive them from the registry."""
        return {}

    def begin_epoch(self, epoch: int, x_unl: torch.Tensor | None) -> None:
        pass

    def set_progress(self, p: float) -> None:
        """Ganin et al.'s annealing lr / (1 + 10 p)^0.75, for every method alike."""
        for g in self.opt.param_groups:
            g["lr"] = self.base_lr / (1 + 10 * p) ** 0.75

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.aug)

    def confidence_threshold(self, threshold: float, n_classes: int) -> float:
        """A confidence threshold set for networks trained on hard labels, moved to the scale this network can
        reach: with label smoothing ε its softmax tends to at most 1 − ε + ε/C, so 0.968 would be out of reach
        at ε = 0.1 (C = 10: ceiling 0.91) and a confidence-gated loss would never switch on."""
        eps = self.label_smoothing
        return threshold * (1 - eps + eps / n_classes)

    def supervised(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, cross-entropy) of an augmented labelled batch."""
        feats = self.clf.features(self.augment(x))
        return feats, F.cross_entropy(self.clf.logits(feats), y, label_smoothing=self.label_smoothing)

    def step(self, loss: torch.Tensor) -> None:
        # Outside any autocast (adapt.precision=bf16): autocast is for forward passes; the backward follows
        # the forward's dtypes by itself, and the optimiser updates the float32 weights.
        with torch.autocast(loss.device.type, enabled=False):
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

    def update(self, x: torch.Tensor, y: torch.Tensor, x_unl: torch.Tensor | None, p: float,
               check=lambda loss: loss, unl_idx: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One optimiser step; returns its losses (detached). `check(loss)` may raise before the step.
        `unl_idx`: the unlabelled batch's indices into the unlabelled set (for per-image pseudo-labels)."""
        raise NotImplementedError

    def predictor(self) -> nn.Module:
        """The network that is scored and saved (the student; MeanTeacher's teacher)."""
        return self.clf

    def continued(self) -> nn.Module:
        """The network a variant that continues this one starts from: the student, whose optimiser state the
        continuation does not inherit anyway (DANN overrides it)."""
        return self.clf

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        net = self.predictor()
        net.eval()
        return torch.cat([net(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


class ERM(Algorithm):
    def update(self, x, y, x_unl, p, check=lambda loss: loss, unl_idx=None):
        _, cls_loss = self.supervised(x, y)
        check(cls_loss)
        self.step(cls_loss)
        return {"cls_loss": cls_loss.detach()}


class NoTraining(Algorithm):
    """Zero steps: the network it continues, scored as it is (with adabn's target statistics)."""

    @classmethod
    def schedule(cls, a) -> int:
        return 0


class DANN(Algorithm):
    """Domain-adversarial training. With `ema` > 0 an exponential moving average of the weights is scored and is
    what a continuation (dann_mean_teacher, self_training) starts from: the adversarial game moves the target
    accuracy by 10-20 points between epochs (bench/RESULTS.md), and an average over about 1/(1 − ema) steps is a
    point on that path that does not depend on where the last step happened to land (weight averaging, as SWA and
    the EMA teachers of SHOT and FixMatch here). Its BatchNorm statistics are the student's, re-estimated on the
    target before scoring (the variant's target_bn)."""
    uses_unlabelled = True

    def __init__(self, clf: Classifier, *, gamma: float = 10.0, lambda_max: float = 1.0, ema: float = 0.0,
                 ema_horizon: float = 0.0, **kw) -> None:
        if clf.domain_head is None:
            raise ValueError("DANN needs a Classifier built with a domain head (domain_hidden=...)")
        super().__init__(clf, **kw)
        self.gamma, self.lambda_max, self.ema, self.ema_horizon = gamma, lambda_max, ema, ema_horizon
        self.teacher = copy.deepcopy(clf).requires_grad_(False) if ema > 0 else None
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # the EMA's warm-up; in checkpoints

    @classmethod
    def from_config(cls, clf, a, **ctx):
        return cls(clf, gamma=a.dann.gamma, lambda_max=a.dann.lambda_max, ema=a.dann.ema,
                   ema_horizon=a.dann.ema_horizon, **cls.common(a))

    def domain_loss(self, feats: torch.Tensor, x_unl: torch.Tensor, p: float) -> torch.Tensor:
        # Target features in their own forward pass: with BatchNorm each domain gets its own statistics.
        t_feats = self.clf.features(self.augment(x_unl))
        dom = self.clf.domain_logits(torch.cat([feats, t_feats]), dann_lambda(p, self.gamma, self.lambda_max))
        is_target = torch.cat([torch.zeros(len(feats), device=dom.device), torch.ones(len(t_feats), device=dom.device)])
        return F.binary_cross_entropy_with_logits(dom, is_target)

    def update(self, x, y, x_unl, p, check=lambda loss: loss, unl_idx=None):
        feats, cls_loss = self.supervised(x, y)
        dom_loss = self.domain_loss(feats, x_unl, p)
        loss = cls_loss + dom_loss  # the reversal layer already scales the trunk's share by λ
        check(loss)
        self.step(loss)
        # ema_horizon: the average spans at most that fraction of the run (fit() sets total_steps)
        average_teacher(self, buffers=True, window=self.ema_horizon * self.total_steps)  # without ema: the count
        return {"cls_loss": cls_loss.detach(), "domain_loss": dom_loss.detach()}

    def predictor(self) -> nn.Module:
        return self.teacher if self.teacher is not None else self.clf

    def continued(self) -> nn.Module:
        return self.predictor()


class JointERM(Algorithm):
    """Cross-entropy on a source batch and on a target batch, each in its own forward pass, so that every
    BatchNorm normalises each domain by its own statistics as the adaptation methods do. The bound for a
    method that has the source's labels too: an oracle trained on one mixed set normalises both domains
    together, which a method scored on the target alone never does. The target batch is the unlabelled
    stream's; its labels are looked up by index (`y_unl`, every target training label: an oracle's)."""
    uses_unlabelled = True

    def __init__(self, clf: Classifier, *, y_unl: torch.Tensor, **kw) -> None:
        super().__init__(clf, **kw)
        self.y_unl = y_unl  # not a buffer: the labels are an input, not state a checkpoint must carry

    @classmethod
    def from_config(cls, clf, a, y_unl: torch.Tensor | None = None, **ctx):
        if y_unl is None:
            raise ValueError("JointERM reads every target training label; adapt hands them only to a registry "
                             "row with labelled='joint'")
        return cls(clf, y_unl=y_unl, **cls.common(a))

    def update(self, x, y, x_unl, p, check=lambda loss: loss, unl_idx=None):
        _, src_loss = self.supervised(x, y)
        _, tgt_loss = self.supervised(x_unl, self.y_unl[unl_idx])
        loss = src_loss + tgt_loss
        check(loss)
        self.step(loss)
        return {"cls_loss": src_loss.detach(), "target_cls_loss": tgt_loss.detach()}


def resolve(path: str) -> type[Algorithm]:
    """The Algorithm class named by a registry row's "module:Class"."""
    import importlib

    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise TypeError(f"{path} is not an Algorithm subclass")
    return cls


def build_algorithm(name: str, clf: Classifier, adapt_cfg, **ctx) -> Algorithm:
    """The algorithm of variant `name` (vaeflow/variants.py) with its settings from the adapt section."""
    from vaeflow.variants import BY_NAME

    if name not in BY_NAME:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(BY_NAME)}")
    spec = BY_NAME[name]
    # what the registry says of the variant, for methods whose settings depend on it (the mean teacher's "auto")
    return resolve(spec.algorithm).from_config(clf, adapt_cfg, continued=spec.continues is not None,
                                               labelled=spec.labelled, **ctx)
