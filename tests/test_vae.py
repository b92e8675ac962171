"""VAE maths against independent computations: scipy densities, Monte Carlo, and a linear-Gaussian model
whose exact log p(x) is known in closed form."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, norm
from sklearn.datasets import load_digits
from torch import nn

from vaeflow.metrics import bits_per_dim, kl_std_normal, log_normal_diag
from vaeflow.models.vae import VAE


def _inv_floor(target: float, floor: float) -> float:
    """Raw dec_logvar value whose floored log-variance floor + softplus(raw - floor) equals target."""
    return floor + math.log(math.expm1(target - floor))


def test_kl_closed_form_vs_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(4, 3, generator=g, dtype=torch.float64)
    kl = kl_std_normal(mu, logvar)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(q, p).sum(-1))
    z = q.sample((200_000,))
    terms = (q.log_prob(z) - p.log_prob(z)).sum(-1)  # (M, 4)
    se = terms.std(0) / math.sqrt(len(terms))
    assert torch.all((terms.mean(0) - kl).abs() < 5 * se), (terms.mean(0), kl, se)


def test_log_normal_diag_and_bits_per_dim():
    rng = np.random.default_rng(0)
    x, mu, lv = rng.normal(size=(3, 5, 7))
    got = log_normal_diag(*(torch.from_numpy(a) for a in (x, mu, lv))).numpy()
    np.testing.assert_allclose(got, norm.logpdf(x, mu, np.exp(lv / 2)).sum(-1), rtol=1e-12)
    assert bits_per_dim(64 * math.log(2), 64) == pytest.approx(1.0)   # fair coin per pixel
    assert bits_per_dim(0.0, 64, levels=256) == pytest.approx(8.0)     # uniform density on [0,1]^64
    assert bits_per_dim(-64 * math.log(2), 64, levels=256) == pytest.approx(7.0)


def test_bernoulli_log_px_from_logits():
    torch.manual_seed(0)
    vae = VAE((1, 3, 4), 2, [8], "bernoulli").double()
    x = (torch.rand(6, 1, 3, 4, dtype=torch.float64) < 0.5).double()
    logits = 3 * torch.randn(6, 12, dtype=torch.float64)
    ref = torch.distributions.Bernoulli(probs=torch.sigmoid(logits)).log_prob(x.reshape(6, -1)).sum(-1)
    torch.testing.assert_close(vae.log_px(x, logits), ref, rtol=1e-10, atol=1e-10)
    # Saturated logits: finite and exact (computing log(sigmoid) in probability space would give -inf/nan).
    big = torch.full((6, 12), 60.0, dtype=torch.float64) * (2 * x.reshape(6, -1) - 1)
    big[:, 0] *= -1  # one confidently wrong pixel: log p = -60 exactly (up to e^-60)
    torch.testing.assert_close(vae.log_px(x, big), torch.full((6,), -60.0, dtype=torch.float64))
    torch.testing.assert_close(vae.log_px(x, big),
                               torch.distributions.Bernoulli(logits=big).log_prob(x.reshape(6, -1)).sum(-1))


def test_gaussian_log_px_matches_scipy_and_floor():
    torch.manual_seed(0)
    vae = VAE((1, 2, 3), 2, [8], "gaussian", min_logvar=-4.0, decoder_variance="shared").double()
    target = np.linspace(-2.0, 1.0, 6)
    with torch.no_grad():
        vae.dec_logvar.copy_(torch.tensor([_inv_floor(t, -4.0) for t in target], dtype=torch.float64))
    x, mean = torch.rand(5, 1, 2, 3, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    ref = norm.logpdf(x.reshape(5, -1).numpy(), mean.numpy(), np.exp(target / 2)).sum(-1)
    np.testing.assert_allclose(vae.log_px(x, mean).detach().numpy(), ref, rtol=1e-10)
    with torch.no_grad():
        vae.dec_logvar.fill_(-50.0)
    assert torch.all(vae.decoder_logvar() >= -4.0)
    assert vae.decoder_logvar().min().item() == pytest.approx(-4.0, abs=1e-9)
    assert VAE((1, 2, 2), 2, [4], "gaussian", decoder_variance="shared").decoder_logvar().abs().max() < 1e-5  # unit variance at init
    assert torch.all(VAE((1, 2, 2), 2, [4], "gaussian", min_logvar=0.0, decoder_variance="shared").decoder_logvar() > 0)


def test_conditional_gaussian_log_px_matches_scipy():
    """Decoded = [means | raw log-variances]; the density must use each pixel's own variance."""
    vae = VAE((1, 2, 3), 2, [8], "gaussian", min_logvar=-4.0).double()
    assert vae.decoder_variance == "conditional" and not hasattr(vae, "dec_logvar")
    target = np.linspace(-2.0, 1.0, 6)[None].repeat(5, 0) + np.arange(5)[:, None] * 0.1
    raw = torch.tensor(np.vectorize(lambda t: _inv_floor(t, -4.0))(target))
    x, mean = torch.rand(5, 1, 2, 3, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    ref = norm.logpdf(x.reshape(5, -1).numpy(), mean.numpy(), np.exp(target / 2)).sum(-1)
    np.testing.assert_allclose(vae.log_px(x, torch.cat([mean, raw], 1)).numpy(), ref, rtol=1e-10)
    assert vae.decode(torch.zeros(3, 2, dtype=torch.float64)).shape == (3, 12)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_elbo_terms(likelihood):
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), 3, [16, 8], likelihood).double()
    x = torch.rand(7, 1, 4, 4, dtype=torch.float64).round()
    torch.manual_seed(1)
    out = vae.elbo(x, beta=0.3)
    torch.manual_seed(1)  # same eps: recompute the one-sample reconstruction term by hand
    mu, logvar = vae.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    torch.testing.assert_close(out["rec"], vae.log_px(x, vae.decode(z)))
    torch.testing.assert_close(out["kl"], kl_std_normal(mu, logvar))
    torch.testing.assert_close(out["elbo"], out["rec"] - 0.3 * out["kl"])


def test_reparameterisation_reaches_encoder():
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), 3, [16], "bernoulli")
    x = torch.rand(8, 1, 4, 4).round()
    vae.elbo(x)["rec"].sum().backward()  # rec alone: encoder gradients only flow through z = mu + s*eps
    for name, p in list(vae.encoder_trunk.named_parameters()) + list(vae.enc_head.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------------------------- importance sampling

def _linear_gaussian(perturb: bool):
    """p(z)=N(0,I), p(x|z)=N(Wz+b, s2 I) with orthogonal columns of W, so the exact posterior is diagonal
    and log p(x) = log N(x; b, WW^T + s2 I). The encoder is set to that posterior (perturb=False) or a
    shifted, twice-as-wide version of it (perturb=True)."""
    rng = np.random.default_rng(0)
    d, l, s2 = 6, 2, 0.25
    q, _ = np.linalg.qr(rng.normal(size=(d, l)))
    w, b = q * np.array([2.0, 1.0]), rng.normal(size=d)
    v = s2 / (s2 + (w**2).sum(0))                  # posterior variances
    a = (v[:, None] * w.T) / s2                    # posterior mean = a (x - b)
    vae = VAE((1, 1, d), l, [4], "gaussian", decoder_variance="shared").double()
    vae.encoder_trunk, vae.feature_dim = nn.Flatten(), d
    vae.enc_head, vae.decoder = nn.Linear(d, 2 * l).double(), nn.Linear(l, d).double()
    shift, widen = (0.3, math.log(2.0)) if perturb else (0.0, 0.0)
    with torch.no_grad():
        vae.decoder.weight.copy_(torch.from_numpy(w))
        vae.decoder.bias.copy_(torch.from_numpy(b))
        vae.dec_logvar.fill_(_inv_floor(math.log(s2), vae.min_logvar))
        vae.enc_head.weight.copy_(torch.from_numpy(np.vstack([a, np.zeros((l, d))])))
        vae.enc_head.bias.copy_(torch.from_numpy(np.concatenate([-a @ b + shift, np.log(v) + widen])))
    x = rng.multivariate_normal(b, w @ w.T + s2 * np.eye(d), size=40)
    exact = multivariate_normal(b, w @ w.T + s2 * np.eye(d)).logpdf(x)
    return vae, torch.from_numpy(x).reshape(40, 1, 1, d), exact


@torch.no_grad()
def test_iwae_exact_posterior_gives_exact_log_px():
    vae, x, exact = _linear_gaussian(perturb=False)
    # With q = p(z|x) every importance weight equals p(x): one sample is exact, whatever eps is drawn.
    np.testing.assert_allclose(vae.iwae(x, k=1).numpy(), exact, rtol=1e-10)
    np.testing.assert_allclose(vae.iwae(x, k=7, chunk=3).numpy(), exact, rtol=1e-10)
    # The ELBO (sampled reconstruction, analytic KL) equals log p(x) in expectation only.
    xs = x[:1].expand(20000, -1, -1, -1)
    e = vae.elbo(xs)["elbo"]
    assert abs(e.mean().item() - exact[0]) < 5 * e.std().item() / math.sqrt(len(e))


@torch.no_grad()
def test_iwae_converges_to_exact_log_px_with_imperfect_proposal():
    vae, x, exact = _linear_gaussian(perturb=True)
    torch.manual_seed(0)
    one = vae.iwae(x, k=1).numpy()
    assert (exact - one).mean() > 0.2                 # a proper bound with a real gap at k=1 ...
    many = vae.iwae(x, k=20000, chunk=2500).numpy()   # ... that closes as k grows
    assert np.abs(many - exact).mean() < 0.01 and np.abs(many - exact).max() < 0.04


@pytest.fixture(scope="module")
def trained_vae():
    torch.manual_seed(0)
    d = load_digits().data / 16.0
    x = (torch.from_numpy(np.random.default_rng(0).random(d.shape) < d)).float().reshape(-1, 1, 8, 8)
    vae = VAE((1, 8, 8), 4, [64, 32], "bernoulli")
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        batch = x[torch.randint(0, 1500, (128,), generator=g)]
        loss = -vae.elbo(batch)["elbo"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return vae.eval(), x[1500:1700]


@torch.no_grad()
def test_iwae_bounds_on_trained_vae(trained_vae):
    vae, x = trained_vae
    torch.manual_seed(0)
    reps = 20  # average repeated estimates per image: their noise, not the images', sets the tolerance
    xr = x.repeat(reps, 1, 1, 1)
    e = vae.elbo(xr)["elbo"].reshape(reps, -1).mean(0)
    est = {k: vae.iwae(xr, k=k, chunk=250).reshape(reps, -1).mean(0) for k in (1, 10, 100)}
    est[1000] = vae.iwae(x, k=1000, chunk=250)
    assert e.mean().item() > -30  # it trained (untrained: ~ -44 nats)

    def paired(a, b):  # mean and standard error of a - b over the same images (image variation cancels)
        d = a - b
        return d.mean().item(), d.std().item() / math.sqrt(len(d))

    # IWAE(1) and the ELBO are two unbiased estimates of the same bound (the ELBO's KL is analytic).
    m, se = paired(est[1], e)
    assert abs(m) < 4 * se, (m, se)
    for lo, hi in [(1, 10), (10, 100), (100, 1000)]:
        m, se = paired(est[hi], est[lo])
        assert m > -3 * se, (lo, hi, m, se)
    m, se = paired(est[1000], est[1])
    assert m > 5 * se and m > 0.05, (m, se)  # the bound really tightens


@torch.no_grad()
def test_iwae_chunking(trained_vae):
    vae, x = trained_vae
    xb = x[:32]  # 32 images x 4 latents: a multiple of 16 draws per sample, so CPU randn in chunks
    full = vae.iwae(xb, k=64, chunk=64, generator=torch.Generator().manual_seed(5))  # yields the same eps
    parts = vae.iwae(xb, k=64, chunk=16, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(parts, full, rtol=0, atol=1e-5)
    # Ragged chunks (last one smaller): statistical agreement with the unchunked estimate.
    a = vae.iwae(x, k=300, chunk=300, generator=torch.Generator().manual_seed(1))
    b = vae.iwae(x, k=300, chunk=70, generator=torch.Generator().manual_seed(2))
    diff = a - b
    assert diff.mean().abs() < 4 * diff.std() / math.sqrt(len(diff)) + 1e-6


# ------------------------------------------------------------------------------------ persistence & images

@pytest.mark.parametrize("arch,shape,hidden", [("mlp", (1, 8, 8), [32, 16]), ("conv", (1, 28, 28), [4, 8]),
                                               ("conv", (3, 9, 7), [4, 8, 8]), ("lenet", (1, 28, 28), []),
                                               ("lenet", (3, 20, 31), [])])  # LeNet needs no square image
@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_spec_state_dict_round_trip(arch, shape, hidden, likelihood):
    torch.manual_seed(0)
    vae = VAE(shape, 3, hidden, likelihood, activation="elu", arch=arch)
    spec = json.loads(json.dumps(vae.spec))
    assert spec == vae.spec
    torch.manual_seed(1)  # a different init, so equality below comes from the state dict
    clone = VAE(**spec)
    clone.load_state_dict(vae.state_dict())
    x = torch.rand(5, *shape)
    z = torch.randn(5, 3)
    for a, b in zip(vae.encode(x), clone.encode(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(vae.decode(z), clone.decode(z), rtol=0, atol=0)
    assert vae.decode(z).shape == (5, (2 if likelihood == "gaussian" else 1) * math.prod(shape))
    assert vae.encoder_trunk(x).shape == (5, vae.feature_dim)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s = vae.sample(11, generator=g1)
    torch.testing.assert_close(s, clone.sample(11, generator=g2), rtol=0, atol=0)
    assert s.shape == (11, *shape) and s.min() >= 0 and s.max() <= 1
    r = vae.reconstruct(x)
    assert r.shape == x.shape and r.min() >= 0 and r.max() <= 1


def test_invalid_arguments():
    with pytest.raises(ValueError, match="arch"):
        VAE((1, 8, 8), 2, [8], "bernoulli", arch="transformer")
    with pytest.raises(ValueError, match="likelihood"):
        VAE((1, 8, 8), 2, [8], "poisson")
