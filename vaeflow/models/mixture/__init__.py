"""Mixture-model baselines (Gaussian for dequantized data, Bernoulli for binarized), one interface, both
fitted by EM in torch on the pipeline's device.

    fit_mixture(family, x_train, gmm_cfg, seed) -> (Mixture, info)
    mixture.log_prob(x) -> nats per image;  mixture.to_arrays() -> npz-safe dict;  mixture_from_arrays(d)
"""
from __future__ import annotations

import logging

import numpy as np

from vaeflow.progress import steps

log = logging.getLogger("vaeflow")

# gmm.covariance_type=auto: "full" while one EM iteration at the largest K costs at most this many
# multiply-adds (N images x K components x D^2: each image's Mahalanobis distance to each component), "diag"
# above (N x K x D). Seconds an iteration on one core. Full covariances on the digits default
# (D = 64) cost ~3e8; on 50,000 colour images of 3x32x32 they would cost ~2e13 an iteration, hours per K of the
# BIC list, where diag takes a second. A count, not a timing: the choice is the same on every machine.
AUTO_FULL_MACS = 5e10


def components(gmm_cfg) -> list[int]:
    """gmm.n_components as a list: one K, or the K to choose from by BIC."""
    return gmm_cfg.n_components if isinstance(gmm_cfg.n_components, list) else [gmm_cfg.n_components]


def full_em_macs(gmm_cfg, n: int, d: int) -> int:
    """Multiply-adds of one EM iteration with full covariances at the largest K, for n images of d values."""
    return n * max(components(gmm_cfg)) * d * d


def covariance_type(gmm_cfg, n: int, d: int) -> str:
    """gmm.covariance_type for n training images of d values: as set, or auto made concrete."""
    if gmm_cfg.covariance_type != "auto":
        return gmm_cfg.covariance_type
    return "full" if full_em_macs(gmm_cfg, n, d) <= AUTO_FULL_MACS else "diag"


class Mixture:
    """What the baseline stage needs from either family. log_prob is in nats per image (a density for
    the Gaussian family, a probability mass for the Bernoulli one)."""
    family: str
    n_components: int

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sample(self, n: int, seed: int) -> np.ndarray:
        raise NotImplementedError

    def n_parameters(self) -> int:
        raise NotImplementedError

    def bic(self, x: np.ndarray) -> float:
        """-2 log L + p ln N (Schwarz), lower is better."""
        return float(-2.0 * self.log_prob(x).sum() + self.n_parameters() * np.log(len(x)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError


from vaeflow.models.mixture.bernoulli import BernoulliMixture, fit_bernoulli  # noqa: E402
from vaeflow.models.mixture.gaussian import GaussianMixtureModel, fit_gaussian  # noqa: E402

_FAMILIES = {"gaussian": GaussianMixtureModel, "bernoulli": BernoulliMixture}


def mixture_from_arrays(d) -> Mixture:
    """Inverse of Mixture.to_arrays; `d` may be a dict or an NpzFile loaded with allow_pickle=False."""
    family = str(np.asarray(d["family"]))
    if family not in _FAMILIES:
        raise ValueError(f"unknown mixture family {family!r} in arrays; expected one of {sorted(_FAMILIES)}")
    return _FAMILIES[family].from_arrays(d)


def fit_mixture(family: str, x_train: np.ndarray, gmm_cfg, seed: int, device: str = "cpu",
                label: str = "gmm") -> tuple[Mixture, dict]:
    """Fit every K in gmm_cfg.n_components and keep the lowest BIC on x_train.

    info: n_components (chosen K), bic {K: bic}, converged, n_iter, and train_ll_history (per-iteration
    penalised objective per image, Bernoulli family) for the chosen K.
    """
    if family not in _FAMILIES:
        raise ValueError(f"family must be 'gaussian' or 'bernoulli' (resolve 'auto' first), got {family!r}")
    x_train = np.asarray(x_train).reshape(len(x_train), -1)  # a view: the Gaussian EM reads it in chunks
    ks = components(gmm_cfg)
    too_big = [k for k in ks if k > len(x_train)]
    if too_big:
        raise ValueError(f"gmm.n_components {too_big} exceed the {len(x_train)} training images")
    cov = covariance_type(gmm_cfg, *x_train.shape) if family == "gaussian" else None
    if family == "gaussian" and gmm_cfg.covariance_type == "auto":
        log.info("%s: covariance_type auto -> %s (N*K*D^2 = %.1e multiply-adds an EM iteration at K=%d; full up "
                 "to %.0e)", label, cov, full_em_macs(gmm_cfg, *x_train.shape), max(ks), AUTO_FULL_MACS)
        gmm_cfg = gmm_cfg.model_copy(update={"covariance_type": cov})
    best, best_info, bics = None, None, {}
    with steps(f"{label}: EM for K in {ks} on {len(x_train)} images", total=len(ks), unit="K") as step:
        for k in ks:
            if family == "gaussian":
                model, info = fit_gaussian(x_train, k, gmm_cfg, seed, device=device, chunk=gmm_cfg.chunk_size)
            else:
                model, info = fit_bernoulli(x_train, k, gmm_cfg, seed, device=device)
            bics[int(k)] = model.bic(x_train)
            if best is None or bics[int(k)] < bics[best.n_components]:
                best, best_info = model, info
            step.advance(1, f"K={k} BIC {bics[int(k)]:.0f}")
        # the closing line names the K that BIC chose, not the last one tried
        step.info = f"K={best.n_components} chosen (BIC {bics[best.n_components]:.0f})"
    return best, {"n_components": best.n_components, "covariance_type": cov, "bic": bics, **best_info}


__all__ = ["AUTO_FULL_MACS", "components", "covariance_type", "full_em_macs", "Mixture", "GaussianMixtureModel",
           "BernoulliMixture", "fit_mixture", "mixture_from_arrays"]
