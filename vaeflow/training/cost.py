"""What an epoch of `train_vae` costs, measured: for ordering Tune's trials longest first (vaeflow/tuning/order.py).

The epoch is train_vae's own step (`_Step`: observation, forward, bound, backward) over the images in order,
then the validation bound, without the optimizer's update. Why without: the first torch.optim optimizer a
process builds imports torch._dynamo (about a second on one core, measured), which the Tune driver would pay
for this estimate alone; Adam's update is a few elementwise passes over the weights, small beside forward
and backward, and grows with the model as they do.
"""
from __future__ import annotations

import time

import torch

from vaeflow.models.vae import VAE
from vaeflow.training.bounds import mean_nelbo
from vaeflow.training.vae_trainer import TrainSettings, _Step


class _NoUpdate:
    """An optimizer's place in `_Step`: gradients are computed and cleared, no weight moves."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.model.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        pass


def epoch_seconds(model: VAE, x_train: torch.Tensor, x_val_obs: torch.Tensor, settings: TrainSettings,
                  repeats: int = 2) -> float:
    """Seconds of one epoch on these tensors at settings.batch_size, the quickest of `repeats` after a
    warm-up epoch. The observations come from a private generator, the model's noise from the global RNG (as
    in training): a caller that must keep that RNG's state forks it (torch.random.fork_rng)."""
    gen = torch.Generator(device=x_train.device).manual_seed(0)
    # binary=False: the observation is always drawn (train_vae skips it for already-binary images, ~8 % of a
    # step), which shifts every configuration's cost alike and so not their order
    step = _Step(model, _NoUpdate(model), x_train, settings.objective, settings.k, settings.likelihood,
                 settings.levels, binary=False, gen=gen)
    n, b = len(x_train), settings.batch_size
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        model.train()
        step.new_epoch()
        for s in range(0, n, b):
            step(torch.arange(s, min(s + b, n), device=x_train.device), 1.0)
        mean_nelbo(model, x_val_obs)
        times.append(time.perf_counter() - t0)
    return min(times[1:])
