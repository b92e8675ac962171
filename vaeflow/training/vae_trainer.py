"""ELBO training of a VAE: in-memory tensors batched by index, one host sync per epoch, resume.

The training set stays on the device as raw intensities; each batch is observed afresh (dynamic
dequantization or binarization), which is the data model the likelihoods are reported under.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from vaeflow import faults
from vaeflow.data import observe
from vaeflow.models.vae import VAE
from vaeflow.training.checkpoint import CheckpointClock, NonFiniteLoss, save_checkpoint, try_resume

log = logging.getLogger("vaeflow")
__all__ = ["NonFiniteLoss", "VAETrainResult", "kl_weight", "mean_nelbo", "train_vae"]


@dataclass
class VAETrainResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_nelbo: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False
    out_of_time: bool = False


def kl_weight(epoch: int, step_in_epoch: int, steps_per_epoch: int, beta: float, warmup_epochs: int) -> float:
    """Linear KL warm-up (Bowman et al.; Sønderby et al.) from 0 to beta over `warmup_epochs`."""
    if warmup_epochs == 0:
        return beta
    return beta * min(1.0, (epoch + step_in_epoch / steps_per_epoch) / warmup_epochs)


def _raise_nonfinite(epoch: int, step: int, steps_before: int, ckpt_path: Path) -> None:
    raise NonFiniteLoss(f"non-finite VAE loss at epoch {epoch} step {step} (global step {steps_before + step}); "
                        f"training stopped, last good checkpoint kept at {ckpt_path}")


@torch.inference_mode()
def mean_nelbo(model: VAE, x_obs: torch.Tensor, batch_size: int = 1024) -> float:
    """Mean negative ELBO (beta=1, the bound itself) in nats per image over fixed observations."""
    model.eval()
    total = torch.zeros((), device=x_obs.device)
    for i in range(0, len(x_obs), batch_size):
        total += -model.elbo(x_obs[i:i + batch_size])["elbo"].sum()
    return total.item() / len(x_obs)


def train_vae(model: VAE, x_train: torch.Tensor, x_val_obs: torch.Tensor, *, epochs: int, batch_size: int,
              lr: float, beta: float, warmup_epochs: int, patience: int, likelihood: str, levels: int,
              ckpt_path: Path, fingerprint: str,
              on_epoch: Callable[[dict], None] | None = None,
              fail_at: tuple[int, int] | None = None, checkpoint_every_s: float = 0.0,
              max_seconds: float | None = None) -> VAETrainResult:
    """Train with Adam, early stopping on val ELBO, and a resumable checkpoint after every epoch.

    A NaN or inf loss raises NonFiniteLoss naming epoch and step, before anything of that epoch is
    checkpointed. `fail_at=(epoch, step)` (or VAEFLOW_NAN_AT, see vaeflow/faults.py) injects a NaN loss
    there; the fault-injection tests use it. `checkpoint_every_s` > 0 checkpoints at most that often
    (and after the last epoch) instead of after every epoch; see CheckpointClock. `max_seconds` stops after
    the epoch that crosses that wall-clock budget (counted in this process: a resumed run gets it afresh).
    """
    fail_at = fail_at or faults.nan_at(ckpt_path.stem)
    device = x_train.device
    # Fused Adam, one kernel per parameter: on CPU (torch >= 2.4) it costs ~4x less than the default
    # per-op loop, which was ~25% of a training step (bench/RESULTS.md); on CUDA it saves launches.
    try:
        opt = torch.optim.Adam(list(model.parameters()), lr=lr, fused=True)
    except RuntimeError:  # no fused kernel for this device (or torch < 2.4 on CPU)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    st = {"epoch": 0, "step": 0, "best_val": math.inf, "best_epoch": -1, "bad_epochs": 0, "history": []}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ckpt = try_resume(ckpt_path, fingerprint, model, opt)
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
    t0 = time.perf_counter()
    clock = CheckpointClock(checkpoint_every_s)
    out_of_time = False
    while st["epoch"] < epochs and st["bad_epochs"] < patience and not out_of_time:
        epoch = st["epoch"]
        model.train()
        perm = torch.randperm(n, device=device)
        loss_sum = torch.zeros((), device=device)
        kl_sum = torch.zeros((), device=device)
        first_bad = torch.full((), -1, device=device, dtype=torch.long)
        for s in range(steps_per_epoch):
            faults.pause_point(f"step:{ckpt_path.stem}:{epoch}:{s}")
            idx = perm[s * batch_size:(s + 1) * batch_size]
            xb = x_train[idx] if binary else observe(x_train[idx], likelihood, levels, None)
            out = model.elbo(xb, kl_weight(epoch, s, steps_per_epoch, beta, warmup_epochs))
            loss = -out["elbo"].mean()
            if fail_at == (epoch, s):
                loss = loss * float("nan")
            # On CUDA a per-step check would stall the pipeline: remember the first bad step on the
            # device and look once per epoch, before anything from this epoch is checkpointed.
            if sync_each_step and not torch.isfinite(loss):
                _raise_nonfinite(epoch, s, st["step"], ckpt_path)
            elif not sync_each_step:
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), s, first_bad)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            kl_sum += out["kl"].detach().sum()
        if first_bad.item() >= 0:
            _raise_nonfinite(epoch, first_bad.item(), st["step"], ckpt_path)
        val = mean_nelbo(model, x_val_obs)
        if not math.isfinite(val):
            raise NonFiniteLoss(f"non-finite validation -ELBO after epoch {epoch} (global step "
                                f"{st['step'] + steps_per_epoch}); training stopped, last good checkpoint kept "
                                f"at {ckpt_path}")
        row = {"epoch": epoch, "train_loss": loss_sum.item() / n, "train_kl": kl_sum.item() / n,
               "val_nelbo": val, "seconds": time.perf_counter() - t0}
        st["history"].append(row)
        st["step"] += steps_per_epoch
        st["epoch"] = epoch + 1
        if val < st["best_val"] - 1e-4:
            st.update(best_val=val, best_epoch=epoch, bad_epochs=0)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            st["bad_epochs"] += 1
        out_of_time = max_seconds is not None and time.perf_counter() - t0 >= max_seconds
        saved = clock.due(last_epoch=st["epoch"] >= epochs or st["bad_epochs"] >= patience or out_of_time)
        if saved:
            save_checkpoint(ckpt_path, fingerprint, model, opt, st, {"best_state": best_state})
        if on_epoch:
            on_epoch({**row, "checkpointed": saved})
    return VAETrainResult(best_state=best_state, best_epoch=st["best_epoch"], best_val_nelbo=st["best_val"],
                          history=st["history"], seconds=time.perf_counter() - t0,
                          stopped_early=st["epoch"] < epochs, out_of_time=out_of_time)
