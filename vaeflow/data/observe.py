"""The data model: how raw intensities on a discrete grid become what the likelihoods score.

'gaussian': uniform dequantization (Uria et al. 2013; Theis et al. 2016). A pixel at level k becomes
    y = (k + u) / levels, u ~ U[0, 1), so y ∈ [0, 1) and floor(y·levels) == k. A continuous density on
    dequantized data lower-bounds the discrete model's log-likelihood, which makes GMM and VAE NLLs
    comparable in bits/dim.
'bernoulli': dynamic binarization, y ~ Bernoulli(x), as float 0/1.

One implementation, in torch: training calls it per batch on the device (a fresh observation each
step); prepare calls it on numpy arrays with a seeded numpy Generator for the fixed val/test
observations, which are converted to torch and back.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

LIKELIHOODS = ("gaussian", "bernoulli")

# u is drawn from [0, 1-δ) rather than [0, 1): in float32, k + u for u within a few ulps of 1 rounds
# up to k+1, which would put y in the wrong bin (or at 1.0). δ = 2^-12 is far above float32 rounding
# at levels ≤ 256 and changes the density by a factor 1/(1-δ), i.e. < 0.0004 nats per pixel.
_DELTA = 2.0 ** -12

T = TypeVar("T", np.ndarray, torch.Tensor)


def _torch_generator(g: torch.Generator | np.random.Generator | None) -> torch.Generator | None:
    if g is None or isinstance(g, torch.Generator):
        return g
    if isinstance(g, np.random.Generator):
        # Seeded from the numpy stream, so the numpy generator alone decides the result.
        return torch.Generator().manual_seed(int(g.integers(0, 2**63 - 1)))
    raise TypeError(f"generator must be a torch.Generator, numpy Generator or None, got {type(g).__name__}")


def _observe(x: torch.Tensor, likelihood: str, levels: int, g: torch.Generator | None) -> torch.Tensor:
    if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    # A CPU generator with a CUDA batch draws on the CPU and moves: slower, but reproducible.
    dev = g.device if g is not None else x.device
    u = torch.rand(x.shape, generator=g, device=dev, dtype=x.dtype).to(x.device)
    if likelihood == "gaussian":
        return (torch.round(x * (levels - 1)) + u * (1.0 - _DELTA)) / levels
    return (u < x).to(x.dtype)


def observe(x: T, likelihood: str, levels: int,
            generator: torch.Generator | np.random.Generator | None = None) -> T:
    """Observe raw intensities x ∈ [0,1] (on the grid k/(levels-1)) under `likelihood`.

    Returns the same type as x: a torch tensor on x's device, or a float32 numpy array. With
    generator=None torch's global RNG is used (training); pass a seeded generator for fixed draws.
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    g = _torch_generator(generator)
    if isinstance(x, torch.Tensor):
        return _observe(x, likelihood, levels, g)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return _observe(t, likelihood, levels, g).numpy().astype(np.float32, copy=False)
