"""Gaussian mixture baseline: a thin wrapper over sklearn.mixture.GaussianMixture.

The fitted parameters round-trip through plain numeric arrays (npz, allow_pickle=False) and rebuild an
estimator that scores and samples without refitting.
"""
from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture

from vaeflow.models.mixture import Mixture

COV_TYPES = ("full", "tied", "diag", "spherical")


class GaussianMixtureModel(Mixture):
    family = "gaussian"

    def __init__(self, gm: GaussianMixture):
        self.gm = gm
        self.n_components = int(gm.n_components)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        return self.gm.score_samples(np.asarray(x, dtype=np.float64).reshape(len(x), -1))

    def sample(self, n: int, seed: int) -> np.ndarray:
        # sklearn returns samples grouped by component; shuffle so any prefix is a fair sample.
        old, self.gm.random_state = self.gm.random_state, seed
        try:
            x, _ = self.gm.sample(n)
        finally:
            self.gm.random_state = old
        return x[np.random.default_rng(seed).permutation(n)]

    def n_parameters(self) -> int:
        return int(self.gm._n_parameters())

    def to_arrays(self) -> dict[str, np.ndarray]:
        g = self.gm
        return {"family": np.array(self.family), "covariance_type": np.array(g.covariance_type),
                "weights": g.weights_, "means": g.means_, "covariances": g.covariances_,
                "precisions_cholesky": g.precisions_cholesky_, "reg_covar": np.array(g.reg_covar)}

    @classmethod
    def from_arrays(cls, d) -> GaussianMixtureModel:
        ct = str(np.asarray(d["covariance_type"]))
        if ct not in COV_TYPES:
            raise ValueError(f"unknown covariance_type {ct!r} in arrays")
        weights = np.asarray(d["weights"], dtype=np.float64)
        gm = GaussianMixture(n_components=len(weights), covariance_type=ct, reg_covar=float(d["reg_covar"]))
        gm.weights_ = weights
        gm.means_ = np.asarray(d["means"], dtype=np.float64)
        gm.covariances_ = np.asarray(d["covariances"], dtype=np.float64)
        gm.precisions_cholesky_ = np.asarray(d["precisions_cholesky"], dtype=np.float64)
        gm.precisions_ = _precisions(gm.precisions_cholesky_, ct)
        gm.n_features_in_ = gm.means_.shape[1]
        gm.converged_, gm.n_iter_, gm.lower_bound_ = True, 0, -np.inf
        return cls(gm)


def _precisions(prec_chol: np.ndarray, ct: str) -> np.ndarray:
    # Same relation sklearn uses after fitting: precision = L L^T for full/tied, L^2 elementwise otherwise.
    if ct == "full":
        return np.einsum("kij,klj->kil", prec_chol, prec_chol)
    if ct == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol**2


def fit_gaussian(x: np.ndarray, k: int, cfg, seed: int) -> tuple[GaussianMixtureModel, dict]:
    gm = GaussianMixture(n_components=k, covariance_type=cfg.covariance_type, reg_covar=cfg.reg_covar,
                         max_iter=cfg.max_iter, tol=cfg.tol, n_init=cfg.n_init, random_state=seed)
    gm.fit(np.asarray(x, dtype=np.float64))
    return GaussianMixtureModel(gm), {"converged": bool(gm.converged_), "n_iter": int(gm.n_iter_),
                                      "lower_bound": float(gm.lower_bound_)}
