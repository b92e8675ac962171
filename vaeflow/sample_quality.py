"""One sample-quality measure for every generator, and the latent samplers of the autoencoders.

- `frechet_distance`: ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½) between Gaussians fitted to two feature sets
  (Heusel et al.'s FID formula). The features come from `FeatureNet`, a small MLP trained on the source
  training labels (no target label is read); its last hidden layer is the feature space, as Inception's
  pool layer is for FID. The same net scores latent smoothness as its predictive entropy.
- `fit_latent_samplers`: a single Gaussian and a Gaussian mixture with K chosen by BIC, fitted to codes
  with the `gmm` stage's own code (vaeflow.models.mixture), i.e. the lecture's toy model reused in latent
  space (Ghosh et al., 2020, do the same for deterministic autoencoders).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaeflow import stop
from vaeflow.models.mixture import Mixture, fit_mixture


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between N(mean, cov) fits of two (n, d) feature sets.

    tr (Σ₁Σ₂)^½ is computed as tr (Σ₁^½ Σ₂ Σ₁^½)^½: the same eigenvalues, but of a symmetric PSD matrix,
    so two `eigh` calls give it exactly, where `sqrtm` of the non-symmetric product can return complex
    noise on rank-deficient covariances (few samples, ReLU features that are often 0)."""
    f1, f2 = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise ValueError(f"need two (n ≥ 2, d) feature arrays of one width, got {f1.shape} and {f2.shape}")
    s1, s2 = np.cov(f1, rowvar=False).reshape(f1.shape[1], -1), np.cov(f2, rowvar=False).reshape(f2.shape[1], -1)
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # Σ₁^½
    m = r @ s2 @ r
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    d = float(((f1.mean(0) - f2.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
    return max(d, 0.0)  # rounding can leave -1e-12 for identical sets


def expected_observation(x: np.ndarray, likelihood: str, levels: int) -> np.ndarray:
    """E[y | x] under the data model (vaeflow/data/observe.py): what a perfect decoder mean outputs, so real
    images enter the feature net in the same space as decoded ones. Gaussian (dequantised): (k + ½)/L for
    level k; Bernoulli (binarised): x itself."""
    x = np.asarray(x, dtype=np.float32)
    if likelihood == "bernoulli":
        return x
    return ((np.round(x * (levels - 1)) + 0.5) / levels).astype(np.float32)


class FeatureNet(nn.Module):
    """Flatten → [Linear → ReLU] × len(hidden) → Linear(n_classes). `features` = the last ReLU layer."""

    def __init__(self, dim: int, hidden: list[int], n_classes: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for i, o in zip([dim] + hidden[:-1], hidden):
            layers += [nn.Linear(i, o), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(hidden[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def train_feature_net(x: np.ndarray, y: np.ndarray, hidden: list[int], n_classes: int, epochs: int, seed: int,
                      device: torch.device | str = "cpu", batch_size: int = 128, lr: float = 1e-3) -> FeatureNet:
    """Adam on cross-entropy for a fixed number of epochs (no selection on any score), from `seed` alone: its
    own generators for the initialisation and the batch order, never torch's global RNG (the flow runs this
    stage beside adapt, in another thread of the same process)."""
    from vaeflow.models.ae import seeded_init

    with torch.device("meta"):
        net = FeatureNet(int(np.prod(x.shape[1:])), list(hidden), n_classes)
    net = seeded_init(net.to_empty(device=device), torch.Generator(device=device).manual_seed(seed))
    xt, yt = torch.as_tensor(x, device=device), torch.as_tensor(y, device=device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        stop.check()  # seconds an epoch: no checkpoint, a stopped stage trains it again
        for idx in torch.randperm(len(xt), generator=g).split(batch_size):
            idx = idx.to(device)
            loss = F.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def _batched(fn, x: np.ndarray | torch.Tensor, device, batch_size: int = 2048) -> np.ndarray:
    xt = torch.as_tensor(x, device=device, dtype=torch.float32)
    return torch.cat([fn(xt[i:i + batch_size]) for i in range(0, len(xt), batch_size)]).cpu().numpy()


def features(net: FeatureNet, x, device="cpu") -> np.ndarray:
    return _batched(net.trunk, x, device).astype(np.float64)


def predictive_entropy(net: FeatureNet, x, device="cpu") -> np.ndarray:
    """Entropy (nats) of the net's class distribution per image: low on images that look like one digit,
    up to ln(n_classes) on images that look like none."""
    def ent(xb: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(net(xb), dim=-1)
        return -(logp.exp() * logp).sum(-1)
    return _batched(ent, x, device)


def fit_latent_samplers(codes: np.ndarray, gmm_cfg, components: list[int],
                        seed: int, model: str = "") -> dict[str, tuple[Mixture, dict]]:
    """{'gaussian': one full-covariance Gaussian, 'gmm': a full-covariance mixture with K from `components`
    by BIC}, both with (reg_covar, max_iter, tol, n_init) of params.yaml's gmm section. `model` names whose
    codes they are in the progress lines."""
    from sklearn.exceptions import ConvergenceWarning

    base = gmm_cfg.model_copy(update={"family": "gaussian", "covariance_type": "full"})
    codes = np.asarray(codes, dtype=np.float64)
    whose = f"{model} " if model else ""
    with warnings.catch_warnings():  # reported instead: info["converged"] of the chosen K
        warnings.simplefilter("ignore", ConvergenceWarning)
        return {"gaussian": fit_mixture("gaussian", codes, base.model_copy(update={"n_components": 1}), seed,
                                        label=f"samplers ({whose}latent Gaussian)"),
                "gmm": fit_mixture("gaussian", codes, base.model_copy(update={"n_components": list(components)}), seed,
                                   label=f"samplers ({whose}latent mixture)")}


def interpolate(z0: np.ndarray, z1: np.ndarray, steps: int) -> np.ndarray:
    """(pairs, steps, latent): z0 + t (z1 − z0) for t = 0 … 1 in `steps` equal steps."""
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    return z0[:, None, :] + t * (z1 - z0)[:, None, :]
