"""The samplers stage draws the VAE's own prior: N(0, I) for a normal prior, the VampPrior's mixture for
`vae.prior: vampprior` (tasks/samplers.py: prior_codes, through VAE.prior_sample)."""
from __future__ import annotations

import numpy as np
import torch

from vaeflow.tasks.samplers import prior_codes
from vaeflow.models.vae import VAE

N = 20_000  # s.e. of a mean ~ 0.5/sqrt(N) = 0.004, far inside the tolerances below


def _vampprior_vae() -> VAE:
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), latent_dim=2, hidden=[8], likelihood="gaussian", prior="vampprior", n_pseudo_inputs=3)
    with torch.no_grad():  # a mixture far from N(0, I): means near (3, -2), variances near 0.25
        vae.pseudo_inputs.copy_(torch.tensor([0.1, 0.5, 0.9]).repeat_interleave(16).reshape(3, 16))
        vae.enc_head.bias[:2] += torch.tensor([3.0, -2.0])
        vae.enc_head.bias[2:] = float(np.log(0.25))
    return vae


def _mixture_moments(vae: VAE) -> tuple[np.ndarray, np.ndarray]:
    """Mean and per-dimension variance of (1/K) sum_k N(m_k, diag v_k), the VampPrior, in closed form."""
    with torch.no_grad():
        m, lv = (t.numpy().astype(np.float64) for t in vae._pseudo_posteriors())
    mean = m.mean(0)
    return mean, (np.exp(lv) + m ** 2).mean(0) - mean ** 2


def test_vampprior_sampler_draws_from_the_vampprior():
    vae = _vampprior_vae()
    z = prior_codes(vae, N, seed=11, device=torch.device("cpu"))
    mean, var = _mixture_moments(vae)
    assert z.shape == (N, 2)
    np.testing.assert_allclose(z.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(z.var(0), var, rtol=0.1)
    assert np.abs(z.mean(0)).max() > 1.0  # N(0, I) would fail the check above by metres, not millimetres
    # A two-sample check on the density: the VampPrior's log p(z) of its own draws matches that of
    # VAE.prior_sample's draws (a different seed), and is far above that of N(0, I) draws.
    def lp(a: np.ndarray) -> float:
        with torch.no_grad():
            return float(vae.log_prior(torch.as_tensor(a)).mean())

    with torch.no_grad():
        ref = vae.prior_sample(N, generator=torch.Generator().manual_seed(99)).numpy()
    assert abs(lp(z) - lp(ref)) < 0.05
    assert lp(z) > lp(np.random.default_rng(0).standard_normal((N, 2)).astype(np.float32)) + 5


def test_normal_prior_sampler_is_standard_normal_and_unchanged():
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), latent_dim=3, hidden=[8], likelihood="gaussian")
    z = prior_codes(vae, 1000, seed=5, device=torch.device("cpu"))
    # the same draws as torch.randn with that seed, so the default run's samplers figures do not move
    np.testing.assert_array_equal(z, torch.randn((1000, 3), generator=torch.Generator().manual_seed(5)).numpy())
