"""VAE training on the ELBO or the IWAE bound: in-memory tensors batched by index, one host sync per epoch, resume.

The training set stays on the device as raw intensities; each batch is observed afresh (dynamic
dequantization or binarization) on that device, which is the data model the likelihoods are reported
under. One optimiser step is one function of tensors (`_Step`), the same on CPU and CUDA; on CUDA it can
be captured once as a CUDA graph and replayed (`capture=True`), which removes the per-step launch cost
of ~40 small kernels. Capturing is the only CUDA-only code; on CPU `capture` falls back to the eager step.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from vaeflow import hooks, stop
from vaeflow.data import observe
from vaeflow.models.vae import VAE
from vaeflow.training.bounds import iwae_batch, mean_nelbo, val_bound  # noqa: F401  (re-exported)
from vaeflow.training.checkpoint import CheckpointClock, NonFiniteLoss, save_checkpoint, try_resume

log = logging.getLogger("vaeflow")
__all__ = ["NonFiniteLoss", "TrainSettings", "VAETrainResult", "burda_lr", "kl_weight", "mean_nelbo", "train_vae",
           "val_bound"]
OBJECTIVES = ("elbo", "iwae")
LR_SCHEDULES = ("constant", "burda")
BURDA_STAGES = 8  # Burda et al. (2016): stages i = 0..7, 3^i epochs each, 3,280 epochs in all


@dataclass
class VAETrainResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_nelbo: float  # the best validation bound: -ELBO, or -IWAE_k when the objective is iwae
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # the training time of every epoch, across resumes (kept in the checkpoint)
    stopped_early: bool = False
    out_of_time: bool = False


@dataclass(frozen=True)
class TrainSettings:
    """How train_vae trains. `objective`: "elbo", or "iwae" with `k` samples (Burda et al., 2016), and early
    stopping watches the same bound on the validation images; `lr_schedule`: "constant" or "burda", a
    function of the epoch (so a resume restores it); `checkpoint_every_s`: at most that often, and after
    the last epoch; `max_seconds`: stop after the epoch that crosses it (counted in this process);
    `capture`: replay the step as a CUDA graph on CUDA, ignored elsewhere (the same eager computation)."""
    epochs: int
    batch_size: int
    lr: float
    likelihood: str
    levels: int
    beta: float = 1.0
    warmup_epochs: int = 0
    patience: int = 10**9
    objective: str = "elbo"
    k: int = 1
    lr_schedule: str = "constant"
    capture: bool = False
    checkpoint_every_s: float = 0.0
    max_seconds: float | None = None

    @classmethod
    def from_pretrain(cls, pcfg, likelihood: str, levels: int, **overrides) -> TrainSettings:
        """From a `pretrain` config section (what pretrain and tune train with)."""
        return cls(**{**dict(epochs=pcfg.epochs, batch_size=pcfg.batch_size, lr=pcfg.lr, beta=pcfg.beta,
                             warmup_epochs=pcfg.kl_warmup_epochs, patience=pcfg.patience, likelihood=likelihood,
                             levels=levels, objective=pcfg.objective, k=pcfg.k, lr_schedule=pcfg.lr_schedule,
                             capture=pcfg.capture, checkpoint_every_s=pcfg.checkpoint_every_s,
                             max_seconds=None if pcfg.max_minutes is None else 60 * pcfg.max_minutes),
                      **overrides})


def kl_weight(epoch: int, step_in_epoch: int, steps_per_epoch: int, beta: float, warmup_epochs: int) -> float:
    """Linear KL warm-up (Bowman et al.; Sønderby et al.) from 0 to beta over `warmup_epochs`."""
    if warmup_epochs == 0:
        return beta
    return beta * min(1.0, (epoch + step_in_epoch / steps_per_epoch) / warmup_epochs)


def _raise_nonfinite(epoch: int, step: int, steps_before: int, ckpt_path: Path) -> None:
    raise NonFiniteLoss(f"non-finite VAE loss at epoch {epoch} step {step} (global step {steps_before + step}); "
                        f"training stopped, last good checkpoint kept at {ckpt_path}")


def burda_lr(lr: float, epoch: int) -> float:
    """Burda et al.'s staged decay: stage i runs 3^i epochs at lr * 10^(-i/7), i = 0..7 (epochs 0, 1-3,
    4-12, ..., 1093-3279). Past the last stage (epoch >= 3280) the lr stays at the last stage's, lr / 10."""
    stage, end = 0, 1  # `end`: first epoch after stage `stage`, sum_{j<=stage} 3^j
    while epoch >= end and stage < BURDA_STAGES - 1:
        stage += 1
        end += 3 ** stage
    return lr * 10 ** (-stage / 7)


def lr_at(schedule: str, lr: float, epoch: int) -> float:
    if schedule == "constant":
        return lr
    if schedule == "burda":
        return burda_lr(lr, epoch)
    raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")


def _set_lr(opt: torch.optim.Optimizer, lr: float, on_device: bool) -> None:
    """A captured optimiser step reads its lr from a tensor on the parameters' device: fill it in place,
    never rebind it once captured. (A resumed optimiser may bring its lr back as a CPU tensor or a float:
    that is replaced here, before the first capture.) Otherwise the lr is a plain float."""
    for g in opt.param_groups:
        cur, dev = g["lr"], g["params"][0].device
        if on_device and isinstance(cur, torch.Tensor) and cur.device == dev:
            cur.fill_(lr)
        else:
            g["lr"] = torch.tensor(lr, device=dev) if on_device else lr


def _adam(model: torch.nn.Module, lr: float, capturable: bool) -> torch.optim.Optimizer:
    # Fused Adam, one kernel per parameter: on CPU (torch >= 2.4) it costs ~4x less than the default
    # per-op loop, which was ~25% of a training step (bench/RESULTS.md); on CUDA it saves launches.
    # A graph-captured step needs capturable=True (step counts on the device) and a tensor lr.
    params = list(model.parameters())
    if capturable:
        return torch.optim.Adam(params, lr=torch.tensor(lr, device=params[0].device), fused=True, capturable=True)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:  # no fused kernel for this device (or torch < 2.4 on CPU)
        return torch.optim.Adam(params, lr=lr)


class _Step:
    """One optimiser step on the images x_train[idx], as tensor operations only: no host sync and no
    Python value that depends on data, so a CUDA graph can capture it. The KL weight and the step index
    are device tensors; the loss and KL sums and the first non-finite step of the epoch accumulate on the
    device and are read once per epoch."""

    def __init__(self, model, opt, x_train: torch.Tensor, objective: str, k: int, likelihood: str, levels: int,
                 binary: bool, gen: torch.Generator | None = None, hooks_: hooks.Hooks | None = None):
        self.model, self.opt, self.x, self.gen = model, opt, x_train, gen
        self.hooks = hooks_ or hooks.Hooks()
        self.objective, self.k, self.likelihood, self.levels, self.binary = objective, k, likelihood, levels, binary
        dev = x_train.device
        self.klw = torch.zeros((), device=dev)
        self.s = torch.zeros((), device=dev, dtype=torch.long)
        self.loss_sum, self.kl_sum = torch.zeros((), device=dev), torch.zeros((), device=dev)
        self.first_bad = torch.full((), -1, device=dev, dtype=torch.long)

    def new_epoch(self) -> None:
        for t, v in ((self.s, 0), (self.loss_sum, 0), (self.kl_sum, 0), (self.first_bad, -1)):
            t.fill_(v)

    def body(self, idx: torch.Tensor, where: str | None = None) -> torch.Tensor:
        xb = self.x[idx] if self.binary else observe(self.x[idx], self.likelihood, self.levels, self.gen)
        if self.objective == "iwae":
            out = self.model.iwae_bound(xb, self.k, self.klw)
            bound = out["bound"]
        else:
            out = self.model.elbo(xb, self.klw)
            bound = out["elbo"]
        loss = -bound.mean()
        if where is not None:  # a test hook may make this step's loss NaN (vaeflow/hooks.py); never captured
            loss = self.hooks.loss(where, loss)
        self.first_bad.copy_(torch.where((self.first_bad < 0) & ~torch.isfinite(loss), self.s, self.first_bad))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.loss_sum.add_(loss.detach() * idx.shape[0])
        self.kl_sum.add_(out["kl"].detach().sum())
        self.s.add_(1)
        return loss

    def __call__(self, idx: torch.Tensor, klw: float, where: str | None = None) -> torch.Tensor:
        """One step; `where` ("<run>:<epoch>:<step>") names it for the test hooks."""
        self.klw.fill_(klw)
        return self.body(idx, where)


class _GraphedStep(_Step):
    """The same step, captured as a CUDA graph after WARMUP eager steps (run on a side stream, as
    capture requires) and replayed for every full batch; a smaller last batch runs eagerly."""
    WARMUP = 3

    def __init__(self, *args, batch_size: int, **kw):
        super().__init__(*args, **kw)
        self.static_idx = torch.zeros(batch_size, dtype=torch.long, device=self.x.device)
        self.graph, self.warm, self.static_loss = None, 0, None

    def __call__(self, idx: torch.Tensor, klw: float, where: str | None = None) -> torch.Tensor:
        self.klw.fill_(klw)
        if (where is not None and self.hooks.poisons(where)) or idx.shape[0] != self.static_idx.shape[0]:
            return self.body(idx, where)
        if self.graph is None and self.warm < self.WARMUP:
            self.warm += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = self.body(idx)
            torch.cuda.current_stream().wait_stream(side)
            return loss
        self.static_idx.copy_(idx)
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            self.opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):  # records, does not run: replay below runs this step
                self.static_loss = self.body(self.static_idx)
        self.graph.replay()
        return self.static_loss


def train_vae(model: VAE, x_train: torch.Tensor, x_val_obs: torch.Tensor, settings: TrainSettings, *,
              ckpt_path: Path, fingerprint: str, on_epoch: Callable[[dict], None] | None = None,
              generators: dict[str, torch.Generator] | None = None,
              generator: torch.Generator | None = None) -> VAETrainResult:
    """Train with Adam, early stopping on the validation bound, and a resumable checkpoint (see TrainSettings).

    A NaN or inf loss raises NonFiniteLoss naming epoch and step, before anything of that epoch is checkpointed.
    `ckpt_path`'s stem names the run (for the test hooks, vaeflow/hooks.py); a checkpoint of another
    `fingerprint` is not resumed; `on_epoch` gets each epoch's row. `generators`: torch.Generators the model
    draws from (the DAE's noise), checkpointed. `generator` (on x_train's device): batch order and
    observations come from it, checkpointed as "batches", and the global RNGs are neither used, saved nor
    restored, so two loops in one process (the flow runs stages in threads) do not disturb each other.
    """
    t = settings
    epochs, batch_size, lr, beta, patience = t.epochs, t.batch_size, t.lr, t.beta, t.patience
    objective, k, likelihood, levels, lr_schedule = t.objective, t.k, t.likelihood, t.levels, t.lr_schedule
    if objective not in OBJECTIVES or k < 1 or (objective == "elbo" and k != 1):
        raise ValueError(f"objective must be one of {OBJECTIVES} (k >= 1, and k = 1 for elbo); "
                         f"got {objective!r}, k={k}")
    lr_at(lr_schedule, lr, 0)  # validates the schedule's name
    run, test_hooks = ckpt_path.stem, hooks.current()
    device = x_train.device
    if t.capture and device.type != "cuda":
        log.info("capture: CUDA graphs need a CUDA device; training on %s with the eager step", device.type)
    # A graph replays the default generator's stream only; a private generator would need registering with it.
    graphed = t.capture and device.type == "cuda" and generator is None
    opt = _adam(model, lr, capturable=graphed)
    # train_seconds: every epoch's training time so far, kept in checkpoints (as adapt's): a resumed run, or one
    # that finds its finished checkpoint, reports what training cost, not the seconds of the last process
    st = {"epoch": 0, "step": 0, "best_val": math.inf, "best_epoch": -1, "bad_epochs": 0, "history": [],
          "train_seconds": 0.0}
    best_state = {k_: v.detach().clone() for k_, v in model.state_dict().items()}
    generators = {**(generators or {}), **({"batches": generator} if generator is not None else {})}
    ckpt = try_resume(ckpt_path, fingerprint, model, opt, generators=generators, global_rng=generator is None)
    if ckpt is not None:
        st = ckpt["state"]
        best_state = ckpt["best_state"]
    sync_each_step = device.type == "cpu"  # host and device are the same: the check costs nothing
    # Binary images are their own Bernoulli observation: skip the per-step draw (~8% of a CPU step).
    # Checked in blocks so the check never holds a dataset-sized mask.
    binary = likelihood == "bernoulli" and x_train.dtype in (torch.float32, torch.float64) and all(
        bool(((b == 0) | (b == 1)).all()) for b in x_train.split(4096))
    n = len(x_train)
    steps_per_epoch = math.ceil(n / batch_size)
    args = (model, opt, x_train, objective, k, likelihood, levels, binary, generator, test_hooks)
    step = _GraphedStep(*args, batch_size=batch_size) if graphed else _Step(*args)
    t0 = time.perf_counter()
    clock = CheckpointClock(t.checkpoint_every_s)
    out_of_time = False
    while st["epoch"] < epochs and st["bad_epochs"] < patience and not out_of_time:
        epoch, t_epoch = st["epoch"], time.perf_counter()
        _set_lr(opt, lr_at(lr_schedule, lr, epoch), on_device=graphed)
        model.train()
        perm = torch.randperm(n, device=device, generator=generator)
        step.new_epoch()
        for s in range(steps_per_epoch):
            where = f"{run}:{epoch}:{s}" if test_hooks.active else None  # no string per step without hooks
            if where is not None:
                test_hooks.pause(f"step:{where}")
            stop.check()  # a SIGTERM / Ctrl-C ends the run here; the last checkpoint is where it resumes
            loss = step(perm[s * batch_size:(s + 1) * batch_size],
                        kl_weight(epoch, s, steps_per_epoch, beta, t.warmup_epochs), where=where)
            # On CUDA a per-step check would stall the pipeline: the step records the first bad step on
            # the device and we look once per epoch, before anything from this epoch is checkpointed.
            if sync_each_step and not torch.isfinite(loss):
                _raise_nonfinite(epoch, s, st["step"], ckpt_path)
        if step.first_bad.item() >= 0:
            _raise_nonfinite(epoch, step.first_bad.item(), st["step"], ckpt_path)
        val_nelbo = mean_nelbo(model, x_val_obs)
        val = val_nelbo if objective == "elbo" else val_bound(model, x_val_obs, objective, k)
        if not math.isfinite(val):
            raise NonFiniteLoss(f"non-finite validation bound after epoch {epoch} (global step "
                                f"{st['step'] + steps_per_epoch}); training stopped, last good checkpoint kept "
                                f"at {ckpt_path}")
        row = {"epoch": epoch, "train_loss": step.loss_sum.item() / n, "train_kl": step.kl_sum.item() / n,
               "val_nelbo": val_nelbo, "val_bound": val, "lr": lr_at(lr_schedule, lr, epoch),
               "seconds": time.perf_counter() - t0}
        st["history"].append(row)
        st["train_seconds"] = st.get("train_seconds", 0.0) + time.perf_counter() - t_epoch
        st["step"] += steps_per_epoch
        st["epoch"] = epoch + 1
        if val < st["best_val"] - 1e-4:
            st.update(best_val=val, best_epoch=epoch, bad_epochs=0)
            best_state = {k_: v.detach().clone() for k_, v in model.state_dict().items()}
        else:
            st["bad_epochs"] += 1
        out_of_time = t.max_seconds is not None and time.perf_counter() - t0 >= t.max_seconds
        saved = clock.due(last_epoch=st["epoch"] >= epochs or st["bad_epochs"] >= patience or out_of_time)
        if saved:
            save_checkpoint(ckpt_path, fingerprint, model, opt, st, {"best_state": best_state},
                            generators=generators, global_rng=generator is None)
        if on_epoch:
            on_epoch({**row, "checkpointed": saved})
    return VAETrainResult(best_state=best_state, best_epoch=st["best_epoch"], best_val_nelbo=st["best_val"],
                          history=st["history"], seconds=st.get("train_seconds", time.perf_counter() - t0),
                          stopped_early=st["epoch"] < epochs, out_of_time=out_of_time)
