"""The validation bounds a VAE's training watches: −ELBO and −IWAE_k per image, evaluated in batches.

Kept apart from the training loop (vae_trainer.py), which imports them; evaluation code may too.
"""
from __future__ import annotations

import torch

from vaeflow.models.vae import VAE


@torch.inference_mode()
def mean_nelbo(model: VAE, x_obs: torch.Tensor, batch_size: int | None = None) -> float:
    """Mean negative ELBO (beta=1, the bound itself) in nats per image over fixed observations."""
    model.eval()
    batch_size = batch_size or (1024 if x_obs.device.type == "cpu" else 16384)  # a GPU wants big batches
    total = torch.zeros((), device=x_obs.device)
    for i in range(0, len(x_obs), batch_size):
        total += -model.elbo(x_obs[i:i + batch_size])["elbo"].sum()
    return total.item() / len(x_obs)


# Decoder rows (importance samples x images) per IWAE evaluation call on a GPU: ~0.8 GB per (rows, 784)
# float32 temporary, large enough to keep an H200 busy, small enough for a 16 GB card.
GPU_IWAE_ROWS = 2 ** 18


def iwae_batch(device: torch.device, batch_size: int, chunk: int) -> int:
    """Images per IWAE evaluation call: `batch_size` on a CPU (whose chunks VAE.iwae caps for cache), else
    enough images that each chunk fills GPU_IWAE_ROWS decoder rows."""
    return batch_size if device.type == "cpu" else max(batch_size, GPU_IWAE_ROWS // max(1, chunk))


@torch.inference_mode()
def val_bound(model: VAE, x_obs: torch.Tensor, objective: str, k: int, seed: int = 0) -> float:
    """The validation bound early stopping watches, in nats per image: -ELBO for `elbo`, -IWAE_k for `iwae`.
    The IWAE draws come from a generator seeded the same every epoch, so epochs are compared on the same
    noise (a paired comparison) and validation never touches the training RNG."""
    if objective == "elbo":
        return mean_nelbo(model, x_obs)
    model.eval()
    g = torch.Generator(device=x_obs.device).manual_seed(seed)
    bs = iwae_batch(x_obs.device, 256, k)
    total = torch.zeros((), device=x_obs.device)
    for i in range(0, len(x_obs), bs):
        total += -model.iwae(x_obs[i:i + bs], k, chunk=k, generator=g).sum()
    return total.item() / len(x_obs)
