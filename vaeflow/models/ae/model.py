"""A deterministic autoencoder built from the VAE's own parts (the lecture's point 3).

`Autoencoder` is a VAE whose encoder head outputs the code z = f(x) itself instead of (μ, log σ²):
same trunk, same decoder, same latent size, same data model p(x|z) (Gaussian or Bernoulli). Its
objective is the reconstruction log-likelihood log p(x | z = f(x̃)) with no KL term and no sampling, so
nothing gives its latent space any structure; x̃ = x for the plain AE, and x̃ = x + σ·ε with
ε ~ N(0, I) drawn from a seeded generator for the denoising AE (Vincent et al., 2008), σ = ae.noise.

`elbo()` returns that objective under the VAE's keys (kl = 0), so the VAE's trainer, its checkpoints
and its exact resume serve both models unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vaeflow.models.vae import VAE

MODELS = ("ae", "dae")  # the autoencoders stage's models: plain, denoising


class Autoencoder(VAE):
    def __init__(self, *, noise: float = 0.0, **vae_spec):
        if noise < 0:
            raise ValueError(f"noise must be ≥ 0, got {noise}")
        super().__init__(**vae_spec)
        self.enc_head = nn.Linear(self.feature_dim, self.latent_dim)  # the code itself: no variance head
        self.noise = float(noise)
        self.spec = {**self.spec, "noise": self.noise}  # Autoencoder(**spec) rebuilds the same net
        self.noise_generator: torch.Generator | None = None

    def seed_noise(self, seed: int) -> torch.Generator:
        """The DAE's corruption is drawn from this generator only (not torch's global RNG), so it is
        fixed by `seed` whatever else draws random numbers; checkpoint it to resume exactly."""
        self.noise_generator = torch.Generator(device=next(self.parameters()).device).manual_seed(seed)
        return self.noise_generator

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """(code, None): the VAE's (μ, log σ²) with no variance. reconstruct() uses the first element."""
        return self.enc_head(self.encoder_trunk(x.reshape(x.shape[0], *self.input_shape))), None

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        if self.noise == 0.0:
            return x
        eps = torch.randn(x.shape, generator=self.noise_generator, device=x.device, dtype=x.dtype)
        return x + self.noise * eps

    def elbo(self, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """Reconstruction log-likelihood per image; the input is corrupted only in training mode, so
        validation and test score the clean image's code. `beta` is ignored (there is no KL)."""
        rec = self.log_px(x, self.decode(self.code(self.corrupt(x) if self.training else x)))
        return {"elbo": rec, "rec": rec, "kl": torch.zeros_like(rec)}

    def iwae_bound(self, x: torch.Tensor, k: int = 1, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """The same objective under the VAE trainer's IWAE-training keys: with a deterministic code every
        one of the k importance samples is the same point, so the bound is the reconstruction term."""
        rec = self.elbo(x)["rec"]
        return {"bound": rec, "kl": torch.zeros_like(rec)}

    def iwae(self, *args, **kwargs):
        raise NotImplementedError("an autoencoder has no q(z|x) nor prior: it has no likelihood bound")

    def sample(self, *args, **kwargs):
        raise NotImplementedError("an autoencoder has no prior; fit a latent sampler to its codes "
                                  "(vaeflow.sample_quality) and decode its draws with decode_mean()")


def seeded_init(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """PyTorch's default initialisation of every Linear and (transposed) conv layer (kaiming_uniform_ with
    a = √5, bias U(±1/√fan_in)), drawn from `generator` only."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    return model


def build_autoencoder(seed: int, device: torch.device | str = "cpu", **spec) -> Autoencoder:
    """An Autoencoder whose initial weights depend on `seed` alone and whose construction never touches torch's
    global RNG: built on the meta device (no draws), then initialised from its own generator. The flow trains
    it in a thread beside the VAE, whose global-RNG stream it must neither read nor advance."""
    with torch.device("meta"):
        model = Autoencoder(**spec)
    model = model.to_empty(device=device)
    seeded_init(model, torch.Generator(device=device).manual_seed(seed))
    if hasattr(model, "dec_logvar"):  # the VAE's shared-variance start (VAE.__init__), a constant
        start = max(0.0, model.min_logvar + 1.0) - model.min_logvar
        with torch.no_grad():
            model.dec_logvar.fill_(model.min_logvar + math.log(math.expm1(start)))
    return model


def load_autoencoder(spec: dict, state: dict, device: torch.device | str = "cpu") -> Autoencoder:
    return load_model(Autoencoder, spec, state, device)


def load_model(cls: type[VAE], spec: dict, state: dict, device: torch.device | str = "cpu") -> VAE:
    """A VAE or Autoencoder rebuilt from its spec and state dict, in eval mode. Built on the meta device, so
    rebuilding draws nothing from torch's global RNG (the weights are all loaded anyway)."""
    with torch.device("meta"):
        model = cls(**spec)
    model = model.to_empty(device=device)
    model.load_state_dict(state)
    return model.eval()
