"""The chunked torch EM for the Gaussian mixture against scikit-learn's GaussianMixture, the reference it
replaces: same K, tol, reg_covar and seed give the same fit; the chunk size changes nothing but rounding."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.mixture import GaussianMixture

from tests.helpers import clusters
from vaeflow.config import GMMConfig
from vaeflow.models.mixture.gaussian import fit_gaussian


def _matched(a_means, b_means):
    rows, cols = linear_sum_assignment(((a_means[:, None] - b_means[None]) ** 2).sum(-1))
    return rows, cols


@pytest.mark.parametrize("cov_type", ["full", "tied", "diag", "spherical"])
def test_chunked_em_matches_sklearn(cov_type):
    x = clusters(900, seed=4)
    cfg = GMMConfig(n_components=3, covariance_type=cov_type, tol=1e-6, max_iter=500)
    ours, info = fit_gaussian(x.astype(np.float32), 3, cfg, seed=0, chunk=128)
    sk = GaussianMixture(3, covariance_type=cov_type, reg_covar=cfg.reg_covar, tol=cfg.tol, max_iter=cfg.max_iter,
                         random_state=0).fit(x)
    # Same objective value (mean log-likelihood per image) at convergence, and the same optimum.
    assert info["converged"] and sk.converged_
    assert ours.log_prob(x).mean() == pytest.approx(sk.score(x), abs=1e-4)
    assert info["lower_bound"] == pytest.approx(sk.lower_bound_, abs=1e-4)
    r, c = _matched(sk.means_, ours.gm.means_)
    np.testing.assert_allclose(ours.gm.means_[c], sk.means_[r], atol=1e-3)
    np.testing.assert_allclose(ours.gm.weights_[c], sk.weights_[r], atol=1e-4)
    cov_o, cov_s = ours.gm.covariances_, sk.covariances_
    if cov_type != "tied":
        cov_o, cov_s = cov_o[c], cov_s[r]
    np.testing.assert_allclose(cov_o, cov_s, atol=1e-3)
    # Scoring: our chunked log density is sklearn's score_samples on the same parameters.
    np.testing.assert_allclose(ours.log_prob(x[:50]), ours.gm.score_samples(x[:50]), rtol=1e-10)


def test_chunk_size_changes_nothing_but_rounding():
    rng = np.random.default_rng(0)
    x = np.concatenate([clusters(600, seed=5), rng.normal(size=(600, 4)) * 3])  # overlapping: a long EM run
    cfg = GMMConfig(n_components=4, covariance_type="full", tol=1e-8, max_iter=60)
    fits = [fit_gaussian(x, 4, cfg, seed=1, chunk=c) for c in (17, 256, 5000)]
    (m0, i0) = fits[0]
    assert i0["n_iter"] > 10
    for m, i in fits[1:]:
        assert i["n_iter"] == i0["n_iter"] and i["converged"] == i0["converged"]
        for name in ("weights", "means", "covariances", "precisions_cholesky"):
            np.testing.assert_allclose(m.to_arrays()[name], m0.to_arrays()[name], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fits[2][0].log_prob(x), m0.log_prob(x), rtol=1e-10)


@pytest.mark.parametrize("likelihood,levels", [("gaussian", 17), ("bernoulli", 256)])
def test_chunked_observation_equals_one_call(likelihood, levels):
    """The gmm stage observes its training images chunk by chunk; the draws are one call's."""
    from vaeflow.tasks.gmm import observe_chunked
    from vaeflow.data import observe

    rng = np.random.default_rng(0)
    a, b = (np.round(rng.random((n, 1, 8, 8)) * (levels - 1)).astype(np.float32) / (levels - 1) for n in (37, 20))
    whole = observe(np.concatenate([a, b]), likelihood, levels, np.random.default_rng(7)).reshape(57, -1)
    np.testing.assert_array_equal(observe_chunked([a, b], likelihood, levels, np.random.default_rng(7), chunk=5), whole)
    other = observe_chunked([a, b], likelihood, levels, np.random.default_rng(8), chunk=5)
    assert not np.array_equal(other, whole)
