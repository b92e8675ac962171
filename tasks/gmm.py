"""Stage `gmm`: the maximum-likelihood mixture baseline, fitted by EM.

Inputs: data/prepared. Outputs: models/gmm.npz, metrics/gmm.json, reports/figures/gmm_samples.png.
Gaussian data -> a Gaussian mixture by chunked torch EM (scikit-learn's algorithm, memory bounded by
gmm.chunk_size images); binary data -> a mixture of Bernoullis (vectorised torch EM); K by BIC when a list is
given; both on the pipeline's device. Scored on the same fixed test observations as the VAE.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch

from vaeflow.config import Config
from vaeflow.data import observe
from vaeflow.io import save_npz, write_json
from vaeflow.metrics import bits_per_dim
from vaeflow.models.mixture import fit_mixture
from vaeflow.paths import Paths
from vaeflow.plots import image_rows
from vaeflow.prepared import load_prepared
from vaeflow.runtime import select_device

log = logging.getLogger("vaeflow")


def family_of(cfg: Config) -> str:
    return cfg.data.likelihood if cfg.gmm.family == "auto" else cfg.gmm.family


def observe_chunked(parts: list[np.ndarray], likelihood: str, levels: int, rng: np.random.Generator,
                    chunk: int | None = None) -> np.ndarray:
    """observe(np.concatenate(parts), likelihood, levels, rng) as float32 (N, D), written chunk by chunk: no
    dataset-sized concatenation or noise array. `parts` is emptied as it is read, so a part the caller no
    longer holds is freed once observed: the peak is the observation plus the parts not yet read. The
    draws are the same as one call's whenever the rows of each part hold a multiple of 16 values (torch's
    CPU generator then yields the same stream split at any such boundary; tested)."""
    g = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))  # as observe() seeds from a numpy rng
    out = np.empty((sum(len(p) for p in parts), int(np.prod(parts[0].shape[1:]))), dtype=np.float32)
    # ~8 MB of float32 per block: observe's few temporaries stay small beside the data (4,096 colour
    # images were 50 MB each). The block size does not change the draws (see above).
    chunk = chunk or max(1, 2**21 // out.shape[1])
    row = 0
    while parts:
        part = parts.pop(0)
        for i in range(0, len(part), chunk):
            block = observe(part[i:i + chunk], likelihood, levels, g)
            out[row:row + len(block)] = block.reshape(len(block), -1)
            row += len(block)
        del part
    return out


def run(cfg: Config, paths: Paths) -> dict:
    data = load_prepared(paths)
    family = family_of(cfg)
    levels_grid, dim, image_shape = data.levels, data.dim, data.image_shape
    x_test, dom = data.likelihood_split("test")
    parts = [data.source.x_train, data.target.x_train]
    # The stage needs only the raw training images (observed below) and the fixed test observations: the
    # raw val/test images and val observations go now, and each domain's raw training images as soon as
    # they are observed (observe_chunked empties `parts`), so they are never held beside their observation.
    del data
    # One seeded observation of the training images: EM needs a fixed dataset, unlike SGD.
    x_train = observe_chunked(parts, cfg.data.likelihood, levels_grid, np.random.default_rng(cfg.seed + 3))
    t0 = time.perf_counter()
    mix, info = fit_mixture(family, x_train, cfg.gmm, cfg.seed, str(select_device(cfg.device)))
    fit_seconds = time.perf_counter() - t0
    ll = mix.log_prob(x_test.reshape(len(x_test), -1))
    nll = float(-ll.mean())
    levels = levels_grid if cfg.data.likelihood == "gaussian" else None
    metrics = {
        "family": family,
        "n_components": int(info["n_components"]),
        "covariance_type": info["covariance_type"],  # None for the Bernoulli family
        "bic": {str(k): float(v) for k, v in info.get("bic", {}).items()},
        "test_nll_nats": nll,
        "test_bits_per_dim": bits_per_dim(nll, dim, levels),
        "test_nll_nats_source": float(-ll[dom == 0].mean()),
        "test_nll_nats_target": float(-ll[dom == 1].mean()),
        "train_nll_nats": float(-mix.log_prob(x_train).mean()),
        "n_test": int(len(x_test)),
        "fit_seconds": fit_seconds,
    }
    save_npz(paths.gmm, **mix.to_arrays())
    samples = np.clip(mix.sample(32, seed=cfg.seed), 0, 1).reshape(-1, *image_shape)
    image_rows([("GMM", samples[:16]), ("", samples[16:]), ("data", x_test[:16])],
               paths.figures / "gmm_samples.png", title=f"{family} mixture, K={metrics['n_components']}: samples")
    write_json(paths.stage_metrics("gmm"), metrics)
    log.info("gmm: K=%d test NLL %.2f nats (%.3f bits/dim) in %.1fs", metrics["n_components"], nll,
             metrics["test_bits_per_dim"], fit_seconds)
    return metrics
