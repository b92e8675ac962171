"""Mixture of multivariate Bernoullis for binarized images, fitted by EM in vectorised torch.

Smoothing. A pixel that is never on in a component's training images would get probability 0 and any
test image with that pixel on would score log 0 = -inf. The M-step therefore uses `alpha` pseudo-counts
for each pixel state: p_kd = (sum_n r_nk x_nd + alpha) / (N_k + 2 alpha), the MAP estimate under an
independent Beta(1 + alpha, 1 + alpha) prior on every p_kd (alpha = 1 is Laplace's rule of succession).
EM then provably never decreases the *penalised* objective

    J = sum_n log sum_k w_k p(x_n | p_k) + alpha * sum_kd [log p_kd + log(1 - p_kd)],

which is what `history` records (J / N, per iteration, starting at the initial parameters); the plain
log-likelihood need not be monotone. Mixture weights are maximum likelihood (no prior).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.cluster import kmeans_plusplus

from vaeflow.models.mixture import Mixture
from vaeflow.progress import tick

# Half a pseudo-count per state (Jeffreys-sized): bounds every p_kd inside [alpha/(N_k+2alpha), ...] so
# unseen pixels cost a finite, moderate penalty, while barely moving well-populated estimates.
DEFAULT_ALPHA = 0.5


def _binary(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if not np.all((x == 0) | (x == 1)):
        raise ValueError("Bernoulli mixture needs binary {0, 1} data; binarize first (data.likelihood=bernoulli)")
    return x


class BernoulliMixture(Mixture):
    family = "bernoulli"

    def __init__(self, weights: np.ndarray, probs: np.ndarray, alpha: float = DEFAULT_ALPHA,
                 history: list[float] | np.ndarray | None = None):
        self.weights = np.asarray(weights, dtype=np.float64)
        self.probs = np.asarray(probs, dtype=np.float64)
        if self.probs.ndim != 2 or self.weights.shape != (len(self.probs),):
            raise ValueError(f"weights (K,) and probs (K, D) disagree: {self.weights.shape} vs {self.probs.shape}")
        if not np.all((self.probs > 0) & (self.probs < 1)):
            raise ValueError("Bernoulli probabilities must lie strictly inside (0, 1)")
        self.n_components = len(self.weights)
        self.alpha = float(alpha)
        self.history = [float(h) for h in (history if history is not None else [])]

    def _joint(self, x: np.ndarray) -> np.ndarray:
        """log w_k + log p(x_n | p_k), (N, K), as one matmul: x.(log p - log(1-p)) + sum log(1-p)."""
        logp, log1mp = np.log(self.probs), np.log1p(-self.probs)
        with np.errstate(divide="ignore"):  # an emptied component has weight 0 -> log 0 = -inf is right
            logw = np.log(self.weights)
        return x @ (logp - log1mp).T + log1mp.sum(1) + logw

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        return logsumexp(self._joint(_binary(x)), axis=1)

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        comp = rng.choice(self.n_components, size=n, p=self.weights / self.weights.sum())
        return (rng.random((n, self.probs.shape[1])) < self.probs[comp]).astype(np.float64)

    def n_parameters(self) -> int:
        k, d = self.probs.shape
        return k * d + k - 1

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"family": np.array(self.family), "weights": self.weights, "probs": self.probs,
                "alpha": np.array(self.alpha), "history": np.asarray(self.history, dtype=np.float64)}

    @classmethod
    def from_arrays(cls, d) -> BernoulliMixture:
        return cls(d["weights"], d["probs"], float(d["alpha"]), d["history"] if "history" in d else None)


def _em(X: torch.Tensor, x_np: np.ndarray, k: int, max_iter: int, tol: float, alpha: float,
        rs: np.random.RandomState) -> dict:
    N = X.shape[0]
    # k-means++ seeding (Hamming distance on binary data), shrunk halfway to the global mean so no
    # initial probability is 0 or 1.
    centers, _ = kmeans_plusplus(x_np, k, random_state=rs)
    P = torch.as_tensor(0.5 * centers + 0.5 * x_np.mean(0), device=X.device).clamp(1e-3, 1 - 1e-3)
    logw = torch.full((k,), -float(np.log(k)), dtype=X.dtype, device=X.device)

    def e_step(P, logw):
        logp, log1mp = P.log(), torch.log1p(-P)
        joint = X @ (logp - log1mp).T + log1mp.sum(1) + logw
        ll = torch.logsumexp(joint, dim=1)
        objective = (ll.sum() + alpha * (logp + log1mp).sum()) / N
        return objective.item(), ll.mean().item(), torch.exp(joint - ll[:, None])

    obj, ll, resp = e_step(P, logw)
    history, ll_history, converged, n_iter = [obj], [ll], False, 0
    for n_iter in range(1, max_iter + 1):
        tick(f"K={k} EM iteration {n_iter}")
        nk = resp.sum(0)
        P = (resp.T @ X + alpha) / (nk[:, None] + 2 * alpha)
        logw = torch.log(nk / N)
        obj, ll, resp = e_step(P, logw)
        history.append(obj)
        ll_history.append(ll)
        if abs(history[-1] - history[-2]) < tol:  # per-image change, as sklearn's tol
            converged = True
            break
    return {"weights": logw.exp().cpu().numpy(), "probs": P.cpu().numpy(), "history": history,
            "ll_history": ll_history, "converged": converged, "n_iter": n_iter}


def fit_bernoulli(x: np.ndarray, k: int, cfg, seed: int, device: str = "cpu",
                  alpha: float = DEFAULT_ALPHA) -> tuple[BernoulliMixture, dict]:
    """EM from cfg.n_init seeded k-means++ starts; keeps the run with the highest final objective.
    float64 throughout so the monotonicity of the objective is not masked by rounding."""
    if alpha <= 0:
        raise ValueError("alpha must be > 0: without smoothing unseen pixels get probability 0")
    x_np = _binary(x)
    X = torch.as_tensor(x_np, dtype=torch.float64, device=torch.device(device))
    rs = np.random.RandomState(seed)
    best = None
    for _ in range(cfg.n_init):
        run = _em(X, x_np, k, cfg.max_iter, cfg.tol, alpha, rs)
        if best is None or run["history"][-1] > best["history"][-1]:
            best = run
    model = BernoulliMixture(best["weights"], best["probs"], alpha, best["history"])
    return model, {"converged": best["converged"], "n_iter": best["n_iter"],
                   "train_ll_history": best["ll_history"], "objective_history": best["history"]}
