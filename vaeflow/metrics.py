"""Closed-form densities and divergences shared by the VAE, its evaluation and the reports.

Each quantity has exactly one implementation here so the training objective, the IWAE estimate and the
reported numbers can never disagree about a constant.
"""
from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def kl_std_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)), summed over the last (latent) dim -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def log_normal_diag(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mu, diag e^logvar) summed over the last dim; mu and logvar broadcast against x."""
    return -0.5 * (LOG_2PI + logvar + (x - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def bits_per_dim(nll_nats: float, dim: int, levels: int | None = None) -> float:
    """Negative log-likelihood in nats per image -> bits per dimension.

    With `levels` the data were dequantized onto [0, 1] from `levels` grey levels and `nll_nats` is a
    density: the probability of a discrete image is ~ density * (1/levels)^dim, hence the dim*ln(levels)
    term (a uniform density on [0,1]^dim gives log2(levels) bits/dim). Without `levels` the data are
    binary and `nll_nats` is already a probability mass.
    """
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    nll = float(nll_nats) + (dim * math.log(levels) if levels is not None else 0.0)
    return nll / (dim * math.log(2))
