"""A Gaussian-latent VAE over images with a Bernoulli or Gaussian pixel likelihood.

The ELBO and the importance-weighted bound (Burda et al., 2016) share one implementation of every
density (vaeflow.metrics), so training loss, evaluation and reports agree on constants. Everything is
batched: no Python loops over examples and no host syncs, so training speed matches a bare torch loop.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vaeflow.metrics import LOG_2PI, kl_std_normal, log_normal_diag
from vaeflow.models.lenet import LeNetDecoder, LeNetTrunk

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}


def _conv_sizes(size: int, n: int) -> list[int]:
    """Spatial sizes after each stride-2, k=3, p=1 conv: ceil(s/2) repeated, starting from `size`."""
    sizes = [size]
    for _ in range(n):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class VAE(nn.Module):
    # IWAE decoder rows (samples x images) per chunk and per intra-op thread on a CPU: the (rows, D) logits
    # and their temporaries then stay in cache. Chunking by samples alone (250 samples x 256 images = 64k
    # rows, 200 MB a tensor) streams every elementwise pass through DRAM: ~1.8x slower on one thread
    # (bench/RESULTS.md). GPUs want big chunks, so there is no cap there.
    CPU_ROWS = 2048

    def __init__(self, input_shape: Sequence[int], latent_dim: int, hidden: Sequence[int],
                 likelihood: Literal["gaussian", "bernoulli"], activation: str = "relu", arch: str = "mlp",
                 min_logvar: float = -9.0, decoder_variance: Literal["conditional", "shared"] = "conditional",
                 prior: Literal["normal", "vampprior"] = "normal", n_pseudo_inputs: int = 500):
        super().__init__()
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', got {likelihood!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
        if decoder_variance not in ("conditional", "shared"):
            raise ValueError(f"decoder_variance must be 'conditional' or 'shared', got {decoder_variance!r}")
        if prior not in ("normal", "vampprior") or n_pseudo_inputs < 1:
            raise ValueError(f"prior must be 'normal' or 'vampprior' (n_pseudo_inputs >= 1), got {prior!r}, "
                             f"{n_pseudo_inputs}")
        # A Gaussian decoder whose variance depends on z ('conditional') can give near-constant background
        # pixels a tiny variance and strokes a large one; one shared per-pixel variance cannot, and on
        # dequantized digits that costs ~100 nats per image.
        self.decoder_variance = decoder_variance if likelihood == "gaussian" else "shared"
        self.out_mult = 2 if self.decoder_variance == "conditional" else 1
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_dim, self.likelihood, self.min_logvar = int(latent_dim), likelihood, float(min_logvar)
        self.D = math.prod(self.input_shape)
        # Lists, not tuples, so json.loads(json.dumps(spec)) == spec and VAE(**spec) rebuilds the same net.
        self.spec = {"input_shape": list(self.input_shape), "latent_dim": self.latent_dim,
                     "hidden": [int(h) for h in hidden], "likelihood": likelihood, "activation": activation,
                     "arch": arch, "min_logvar": self.min_logvar, "decoder_variance": self.decoder_variance,
                     "prior": prior, "n_pseudo_inputs": int(n_pseudo_inputs)}
        self.prior = prior
        act = ACTIVATIONS[activation]
        if arch == "mlp":
            self.encoder_trunk, self.feature_dim, self.decoder = self._mlp(list(hidden), act)
        elif arch == "conv":
            self.encoder_trunk, self.feature_dim, self.decoder = self._conv(list(hidden), act)
        elif arch == "lenet":  # `hidden` unused: LeNet's widths are fixed; dropout 0 keeps the encoder deterministic
            c, h, w = self.input_shape
            self.encoder_trunk = LeNetTrunk(c, (h, w), dropout=0.0, act=act)
            self.feature_dim, self.decoder = self.encoder_trunk.feature_dim, LeNetDecoder(
                self.latent_dim, self.out_mult * c, (h, w), act=act)
        else:
            raise ValueError(f"arch must be 'mlp', 'conv' or 'lenet', got {arch!r}")
        # One head for (mu, logvar): a single matmul instead of two.
        self.enc_head = nn.Linear(self.feature_dim, 2 * self.latent_dim)
        if likelihood == "gaussian" and self.decoder_variance == "shared":
            # Raw parameter; the effective log-variance is min_logvar + softplus(raw - min_logvar), a smooth
            # floor (a clamp would zero the gradient and strand the parameter below the floor).
            # Initialised to unit variance (or just above the floor when the floor is near 0).
            start = max(0.0, self.min_logvar + 1.0) - self.min_logvar
            self.dec_logvar = nn.Parameter(torch.full((self.D,), self.min_logvar + math.log(math.expm1(start))))
        if prior == "vampprior":
            # VampPrior (Tomczak & Welling, 2018): p(z) = (1/K) sum_k q(z | u_k) over K learned pseudo-inputs,
            # kept in [0, 1] by a hardtanh and initialised near N(0.05, 0.01) as in the paper.
            self.pseudo_inputs = nn.Parameter(0.05 + 0.01 * torch.randn(int(n_pseudo_inputs), self.D))

    def _mlp(self, hidden: list[int], act: type[nn.Module]):
        layers: list[nn.Module] = [nn.Flatten()]
        for i, o in zip([self.D] + hidden[:-1], hidden):
            layers += [nn.Linear(i, o), act()]
        dec: list[nn.Module] = []
        rev = hidden[::-1]
        for i, o in zip([self.latent_dim] + rev[:-1], rev):
            dec += [nn.Linear(i, o), act()]
        dec.append(nn.Linear(rev[-1], self.out_mult * self.D))
        return nn.Sequential(*layers), hidden[-1], nn.Sequential(*dec)

    def _conv(self, channels: list[int], act: type[nn.Module]):
        """`hidden` are the channel counts of stride-2 3x3 convs; the decoder mirrors them with transposed
        convs whose output_padding restores odd sizes exactly, so any H, W works (e.g. 8, 16, 28)."""
        c, h, w = self.input_shape
        hs, ws = _conv_sizes(h, len(channels)), _conv_sizes(w, len(channels))
        enc: list[nn.Module] = []
        for i, o in zip([c] + channels[:-1], channels):
            enc += [nn.Conv2d(i, o, 3, stride=2, padding=1), act()]
        enc.append(nn.Flatten())
        feat = channels[-1] * hs[-1] * ws[-1]
        dec: list[nn.Module] = [nn.Linear(self.latent_dim, feat), act(),
                                nn.Unflatten(1, (channels[-1], hs[-1], ws[-1]))]
        outs = channels[::-1][1:] + [self.out_mult * c]  # conditional variance: C mean + C log-variance maps
        for j, (i, o) in enumerate(zip(channels[::-1], outs)):
            th, tw = hs[-2 - j], ws[-2 - j]  # target size of this layer: (in-1)*2 - 2 + 3 + pad
            pad = (th - 2 * hs[-1 - j] + 1, tw - 2 * ws[-1 - j] + 1)
            dec.append(nn.ConvTranspose2d(i, o, 3, stride=2, padding=1, output_padding=pad))
            if j < len(channels) - 1:
                dec.append(act())
        dec.append(nn.Flatten())
        return nn.Sequential(*enc), feat, nn.Sequential(*dec)

    # ------------------------------------------------------------------------------------ densities

    def decoder_logvar(self, decoded: torch.Tensor | None = None) -> torch.Tensor:
        """Effective log-variance of the Gaussian decoder, >= min_logvar: (D,) when shared, else (..., D)
        from the second half of `decoded`."""
        raw = self.dec_logvar if self.decoder_variance == "shared" else decoded[..., self.D:]
        return self.min_logvar + F.softplus(raw - self.min_logvar)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc_head(self.encoder_trunk(x.reshape(x.shape[0], *self.input_shape)))
        mu, logvar = h.chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent) -> (B, D): Bernoulli logits or Gaussian means; (B, 2D) means then raw log-variances
        when the Gaussian variance is conditional."""
        return self.decoder(z)

    def _log_px_flat(self, xf: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x|z) over the last dim; broadcasts xf (..., D) against decoded (..., D)."""
        if self.likelihood == "bernoulli":
            # x*l - log(1+e^l) from logits, overflow-safe, as one autograd node whose backward is just
            # sigmoid(l) - x (cheaper to train than the expression written out); expand_as broadcasts x
            # over IWAE's sample dim without a copy.
            return -F.binary_cross_entropy_with_logits(decoded, xf.expand_as(decoded), reduction="none").sum(-1)
        return log_normal_diag(xf, decoded[..., :self.D], self.decoder_logvar(decoded))

    def log_px(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        return self._log_px_flat(x.reshape(x.shape[0], -1), decoded)

    def _pseudo_posteriors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(F.hardtanh(self.pseudo_inputs, 0.0, 1.0))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) summed over the latent dim, (...,). VampPrior: log (1/K) sum_k N(z; m_k, v_k), with the
        squared distances as matmuls, so memory is O(rows x K), never O(rows x K x L)."""
        if self.prior == "normal":
            return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)
        m, lv = self._pseudo_posteriors()  # (K, L)
        iv = torch.exp(-lv)
        zf = z.reshape(-1, z.shape[-1])
        sq = zf.pow(2) @ iv.T - 2 * zf @ (m * iv).T + (m.pow(2) * iv).sum(-1)  # (rows, K)
        log_n = -0.5 * (z.shape[-1] * LOG_2PI + lv.sum(-1) + sq)
        return (torch.logsumexp(log_n, -1) - math.log(len(m))).reshape(z.shape[:-1])

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        p = next(self.parameters())
        eps = torch.randn((n, self.latent_dim), generator=generator, device=p.device, dtype=p.dtype)
        if self.prior == "normal":
            return eps
        m, lv = self._pseudo_posteriors()
        comp = torch.randint(len(m), (n,), generator=generator, device=p.device)
        return m[comp] + torch.exp(0.5 * lv[comp]) * eps

    def elbo(self, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """One-sample ELBO. The KL to N(0, I) is analytic; to a VampPrior it has no closed form and is the
        one-sample estimate log q(z|x) - log p(z) (then this is exactly iwae_bound with k = 1)."""
        mu, logvar = self.encode(x)
        eps = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * eps
        rec = self.log_px(x, self.decode(z))
        if self.prior == "normal":
            kl = kl_std_normal(mu, logvar)
        else:
            kl = -0.5 * (LOG_2PI + logvar + eps.pow(2)).sum(-1) - self.log_prior(z)
        return {"elbo": rec - beta * kl, "rec": rec, "kl": kl}

    def _log_weights(self, xf: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor,
                     beta: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Importance log-weights log p(x|z_i) + beta (log p(z_i) - log q(z_i|x)), z_i = mu + sigma eps_i: (c, B),
        and the sampled KL term log q - log p (c, B).

        log q is written as -1/2 sum(log 2pi + logvar + eps^2): along the reparameterised path
        (z - mu)^2 / sigma^2 is eps^2 exactly, so value and total gradient are those of log N(z; mu, sigma^2),
        at less cost and without the cancellation of (z - mu)."""
        c, B = eps.shape[:2]
        z = mu + torch.exp(0.5 * logvar) * eps  # (c, B, L)
        decoded = self.decode(z.reshape(c * B, -1)).reshape(c, B, -1)
        log_q = -0.5 * (LOG_2PI + logvar + eps.pow(2)).sum(-1)
        kl = log_q - self.log_prior(z)
        return self._log_px_flat(xf, decoded) - beta * kl, kl

    def iwae_bound(self, x: torch.Tensor, k: int, beta: float | torch.Tensor = 1.0) -> dict[str, torch.Tensor]:
        """The training form of the IWAE bound (Burda et al., 2016), differentiable: per image
        log (1/k) sum_i w_i, all k samples at once. With k = 1 it is the ELBO with a one-sample KL estimate:
        the same bound as `elbo` (whose KL is analytic), with the same expected value and gradient.
        `beta` weights the prior/posterior ratio (KL warm-up); "kl" is the mean sampled KL per image."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        mu, logvar = self.encode(x)
        eps = torch.randn((k, *mu.shape), device=mu.device, dtype=mu.dtype)
        log_w, kl = self._log_weights(x.reshape(x.shape[0], -1), mu, logvar, eps, beta)
        bound = log_w[0] if k == 1 else torch.logsumexp(log_w, dim=0) - math.log(k)
        return {"bound": bound, "kl": kl.mean(0)}

    def iwae(self, x: torch.Tensor, k: int, chunk: int = 250, generator: torch.Generator | None = None) -> torch.Tensor:
        """log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(.|x): a lower bound on log p(x) that tightens with k.

        The evaluation form: the k samples are processed at most `chunk` at a time and combined with a running
        logsumexp, so memory is O(chunk * B * D) whatever k is. On a CPU the chunk is also capped at
        CPU_ROWS x threads // B samples. Same log-weights as `iwae_bound`.
        """
        if k < 1 or chunk < 1:
            raise ValueError(f"k and chunk must be >= 1, got k={k}, chunk={chunk}")
        B = x.shape[0]
        if x.device.type == "cpu":
            chunk = min(chunk, max(1, self.CPU_ROWS * torch.get_num_threads() // B))
        xf = x.reshape(B, -1)
        mu, logvar = self.encode(x)
        total = mu.new_full((B,), -math.inf)
        for start in range(0, k, chunk):
            c = min(chunk, k - start)
            eps = torch.randn((c, B, self.latent_dim), generator=generator, device=mu.device, dtype=mu.dtype)
            log_w, _ = self._log_weights(xf, mu, logvar, eps)
            total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
        return total - math.log(k)

    # ---------------------------------------------------------------------------------------- images

    def _mean(self, decoded: torch.Tensor) -> torch.Tensor:
        # Gaussian means are unconstrained; clamp to the data range [0, 1] for display and comparison.
        out = torch.sigmoid(decoded) if self.likelihood == "bernoulli" else decoded[..., :self.D].clamp(0.0, 1.0)
        return out.reshape(-1, *self.input_shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._mean(self.decode(self.prior_sample(n, generator)))

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """Images E[x|z] in [0, 1] for codes z drawn by any sampler (the latent samplers of issue 14)."""
        return self._mean(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self._mean(self.decode(self.encode(x)[0]))
