"""Mixture baselines checked against independent density computations (scipy, brute-force numpy)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from tests.helpers import clusters
from vaeflow.config import GMMConfig
from vaeflow.models.mixture import BernoulliMixture, fit_mixture, mixture_from_arrays


def _npz_round_trip(model, tmp_path):
    np.savez(tmp_path / "m.npz", **model.to_arrays())
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        return mixture_from_arrays(z)


def _full_covs(arrays):
    ct, cov, k = str(arrays["covariance_type"]), arrays["covariances"], len(arrays["weights"])
    d = arrays["means"].shape[1]
    if ct == "full":
        return cov
    if ct == "tied":
        return np.repeat(cov[None], k, 0)
    if ct == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


@pytest.mark.parametrize("cov_type", ["full", "tied", "diag", "spherical"])
def test_gaussian_log_prob_matches_scipy(cov_type, tmp_path):
    x = clusters()
    x_test = clusters(200, seed=1)
    cfg = GMMConfig(n_components=3, covariance_type=cov_type)
    model, info = fit_mixture("gaussian", x, cfg, seed=0)
    a = model.to_arrays()
    comp = np.stack([np.log(w) + multivariate_normal(m, c).logpdf(x_test)
                     for w, m, c in zip(a["weights"], a["means"], _full_covs(a))], axis=1)
    expected = logsumexp(comp, axis=1)
    np.testing.assert_allclose(model.log_prob(x_test), expected, rtol=1e-6)
    loaded = _npz_round_trip(model, tmp_path)
    assert loaded.family == "gaussian" and loaded.n_components == 3
    np.testing.assert_allclose(loaded.log_prob(x_test), expected, rtol=1e-6)
    np.testing.assert_array_equal(loaded.sample(50, seed=3), model.sample(50, seed=3))
    assert info["converged"] and info["n_iter"] >= 1


def test_gaussian_bic_selects_true_k_and_sample_moments():
    x = clusters()
    model, info = fit_mixture("gaussian", x, GMMConfig(n_components=[1, 2, 3, 5]), seed=0)
    assert info["n_components"] == 3 == model.n_components
    assert set(info["bic"]) == {1, 2, 3, 5} and min(info["bic"], key=info["bic"].get) == 3
    # BIC as -2 LL + p ln N with sklearn's parameter count for a full-covariance GMM in 4-d.
    p = 3 * 4 + 3 * 4 * 5 // 2 + 2
    assert info["bic"][3] == pytest.approx(-2 * model.log_prob(x).sum() + p * np.log(len(x)), rel=1e-9)
    s = model.sample(20000, seed=1)
    a = model.to_arrays()
    mean = a["weights"] @ a["means"]
    np.testing.assert_allclose(s.mean(0), mean, atol=5 * s.std(0).max() / np.sqrt(len(s)))
    assert not np.array_equal(s[:100], model.sample(100, seed=2))


def _planted(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    w = np.array([0.5, 0.3, 0.2])
    p = np.where(rng.random((3, 20)) < 0.5, 0.1, 0.9)
    p[:, 0] = [0.9, 0.1, 0.1]  # make sure the patterns differ
    p[:, 1] = [0.1, 0.9, 0.1]
    comp = rng.choice(3, size=n, p=w)
    return (rng.random((n, 20)) < p[comp]).astype(np.float64), w, p


def test_bernoulli_log_prob_matches_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    k, d = 4, 12
    w = rng.dirichlet(np.ones(k))
    p = rng.uniform(0.02, 0.98, size=(k, d))
    x = (rng.random((50, d)) < 0.4).astype(np.float64)
    model = BernoulliMixture(w, p)
    brute = np.zeros(len(x))
    for j in range(k):
        brute += w[j] * np.prod(p[j] ** x * (1 - p[j]) ** (1 - x), axis=1)
    np.testing.assert_allclose(model.log_prob(x), np.log(brute), rtol=1e-10)
    np.testing.assert_allclose(_npz_round_trip(model, tmp_path).log_prob(x), np.log(brute), rtol=1e-10)
    with pytest.raises(ValueError, match="binary"):
        model.log_prob(x * 0.5)


def test_bernoulli_em_recovers_planted_and_selects_k(tmp_path):
    x, w, p = _planted()
    model, info = fit_mixture("bernoulli", x, GMMConfig(n_components=[1, 2, 3, 5], tol=1e-8), seed=0)
    assert info["n_components"] == 3 and min(info["bic"], key=info["bic"].get) == 3
    assert info["bic"][3] == pytest.approx(-2 * model.log_prob(x).sum() + (3 * 20 + 2) * np.log(len(x)), rel=1e-9)
    # Components are only identified up to permutation: match by L1 distance.
    rows, cols = linear_sum_assignment(np.abs(p[:, None] - model.probs[None]).sum(-1))
    assert np.abs(model.probs[cols] - p[rows]).max() < 0.06
    assert np.abs(model.weights[cols] - w[rows]).max() < 0.03
    loaded = _npz_round_trip(model, tmp_path)
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))
    assert loaded.history == model.history


def test_bernoulli_em_objective_never_decreases():
    x, _, _ = _planted(1500, seed=1)
    # Too many components and a tiny tol: a long EM run that shuffles mass between redundant components.
    model, info = fit_mixture("bernoulli", x, GMMConfig(n_components=6, tol=1e-12, max_iter=300), seed=2)
    h = np.array(model.history)
    assert len(h) > 20
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:])), np.diff(h).min()
    assert h[-1] > h[0] + 1.0  # EM did something
    # history is exactly the penalised (MAP) objective of the returned parameters, recomputed here.
    a = model.alpha
    penalty = a * (np.log(model.probs) + np.log1p(-model.probs)).sum()
    assert h[-1] == pytest.approx((model.log_prob(x).sum() + penalty) / len(x), rel=1e-12)
    assert info["train_ll_history"][-1] == pytest.approx(model.log_prob(x).mean(), rel=1e-12)


def test_bernoulli_sample_frequencies():
    rng = np.random.default_rng(3)
    w = np.array([0.6, 0.4])
    p = rng.uniform(0.05, 0.95, size=(2, 6))
    model = BernoulliMixture(w, p)
    n = 40000
    s = model.sample(n, seed=0)
    assert set(np.unique(s)) <= {0.0, 1.0}
    marg = w @ p
    np.testing.assert_allclose(s.mean(0), marg, atol=5 * np.sqrt(marg * (1 - marg) / n).max())
    # Pairwise co-occurrence tests the mixture structure, not just the marginals.
    pair = np.einsum("k,ki,kj->ij", w, p, p)
    off = ~np.eye(6, dtype=bool)
    emp = s.T @ s / n
    np.testing.assert_allclose(emp[off], pair[off], atol=5 * np.sqrt(0.25 / n))
    # Independent pixels with the right marginals would give the product of marginals instead.
    assert np.abs(np.outer(marg, marg) - pair)[off].max() > 10 * np.sqrt(0.25 / n)
    np.testing.assert_array_equal(model.sample(100, seed=0), model.sample(100, seed=0))
    assert not np.array_equal(model.sample(100, seed=0), model.sample(100, seed=1))


def test_auto_covariance_is_full_while_an_em_iteration_is_cheap_and_diag_beyond():
    """The rule counts N·K·D² (an iteration's multiply-adds with full covariances) against AUTO_FULL_MACS: the
    digits default keeps full covariances; 50,000 colour images of 3×32×32 (hours per K in full) get diag."""
    from vaeflow.models.mixture import AUTO_FULL_MACS, covariance_type

    auto = GMMConfig(n_components=[5, 40], covariance_type="auto")
    assert covariance_type(auto, 1_500, 64) == "full"
    assert covariance_type(auto, 50_000, 3 * 32 * 32) == "diag"
    edge = int(AUTO_FULL_MACS // (40 * 100**2))  # N at which N·40·100² reaches the limit
    assert covariance_type(auto, edge, 100) == "full" and covariance_type(auto, edge + 1, 100) == "diag"
    assert covariance_type(GMMConfig(n_components=7, covariance_type="auto"), edge, 100) == "full"  # K = 7 < 40
    for explicit in ("full", "diag", "tied", "spherical"):  # a type the user names is kept, whatever the cost
        assert covariance_type(GMMConfig(n_components=40, covariance_type=explicit), 50_000, 3072) == explicit


@pytest.mark.parametrize("big", [False, True])
def test_auto_covariance_fits_exactly_what_the_type_it_picks_fits(big, monkeypatch, caplog):
    import logging

    import vaeflow.models.mixture as mixture

    x = clusters()
    if big:  # the same data over a lowered limit: auto must pick diag and say so
        monkeypatch.setattr(mixture, "AUTO_FULL_MACS", 10)
    picked = "diag" if big else "full"
    with caplog.at_level(logging.INFO, logger="vaeflow"):
        model, info = fit_mixture("gaussian", x, GMMConfig(n_components=[2, 3], covariance_type="auto"), seed=0)
    twin, _ = fit_mixture("gaussian", x, GMMConfig(n_components=[2, 3], covariance_type=picked), seed=0)
    assert info["covariance_type"] == picked == str(model.to_arrays()["covariance_type"])
    np.testing.assert_array_equal(model.log_prob(x), twin.log_prob(x))
    said = [r.getMessage() for r in caplog.records if "covariance_type auto" in r.getMessage()]
    assert len(said) == 1 and f"auto -> {picked}" in said[0]  # once per fit, not once per K
    assert fit_mixture("bernoulli", (x > x.mean()).astype(np.float32), GMMConfig(n_components=2), seed=0)[1][
        "covariance_type"] is None
