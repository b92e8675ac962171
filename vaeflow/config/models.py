"""The sections of the generative models: `gmm`, `vae`, `pretrain`, `eval`, `ae`, `samplers`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from vaeflow.config.base import Section


# Why checkpoints are timed, not per epoch (pretrain, ae and adapt.checkpoint_every_s).
CKPT_WHY = ("a checkpoint costs ~10-20 ms plus an fsync, a large share of sub-second epochs; a kill loses at "
            "most this much training, and resuming from any epoch is exact")


class GMMConfig(Section):
    family: Literal["auto", "gaussian", "bernoulli"] = Field(
        "auto", description="auto follows data.likelihood; naming the other family is an error")
    n_components: int | list[int] = Field(10, description="K, or a list of K to choose from by BIC")
    covariance_type: Literal["auto", "full", "diag", "tied", "spherical"] = Field(
        "auto", description="auto: full while N x K x D^2 (an EM iteration's cost) is at most 5e10, else diag "
        "(vaeflow/models/mixture/__init__.py)")
    reg_covar: float = Field(1e-3, gt=0)
    max_iter: int = Field(200, ge=1)
    tol: float = Field(1e-4, gt=0)
    n_init: int = Field(1, ge=1)
    chunk_size: int = Field(1024, ge=1, description="Gaussian EM: images per E-step chunk; memory is the data "
                            "plus O(chunk_size x D), whatever the number of images")

    @field_validator("n_components")
    @classmethod
    def _positive_k(cls, v: int | list[int]) -> int | list[int]:
        ks = v if isinstance(v, list) else [v]
        if not ks or any(k < 1 or k > 1000 for k in ks):
            raise ValueError("every K must be in 1..1000 and the list must not be empty")
        return v


class VAEConfig(Section):
    arch: Literal["mlp", "conv", "lenet"] = Field(
        "mlp", description="lenet: LeNet's conv trunk as encoder (hidden unused), a mirrored decoder")
    latent_dim: int = Field(16, ge=1, le=1024)
    hidden: list[int] = Field(default_factory=lambda: [256, 128])
    activation: Literal["relu", "tanh", "elu", "gelu"] = "relu"
    min_logvar: float = Field(-9.0, le=0, description="floor of the Gaussian decoder's log-variance")
    decoder_variance: Literal["conditional", "shared"] = Field(
        "conditional", description="Gaussian decoder: variance decoded from z per pixel, or one learned per pixel")
    prior: Literal["normal", "vampprior"] = Field(
        "normal", description="vampprior: p(z) = mean of q(z|u_k) over learned pseudo-inputs (Tomczak & Welling)")
    n_pseudo_inputs: int = Field(500, ge=1, le=10_000, description="K pseudo-inputs of the VampPrior")

    @field_validator("hidden")
    @classmethod
    def _hidden_sizes(cls, v: list[int]) -> list[int]:
        if not v or any(h < 1 or h > 8192 for h in v):
            raise ValueError("hidden must be a non-empty list of sizes in 1..8192")
        return v


class PretrainConfig(Section):
    epochs: int = Field(150, ge=1, le=100_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0, le=1)
    beta: float = Field(1.0, gt=0)
    kl_warmup_epochs: int = Field(10, ge=0)
    patience: int = Field(20, ge=1, description="epochs without improvement of the validation bound "
                          "(-ELBO, or -IWAE_k for objective iwae) before stopping")
    max_minutes: float | None = Field(None, gt=0, description="stop after the epoch that uses up this "
                                         "wall-clock budget (like Lightning's max_time); null: no limit")
    use_tuned: bool = False
    objective: Literal["elbo", "iwae"] = Field("elbo", description="iwae: Burda et al.'s k-sample bound")
    k: int = Field(1, ge=1, le=5000, description="importance samples per image for objective iwae")
    lr_schedule: Literal["constant", "burda"] = Field(
        "constant", description="burda: stage i = 0..7 runs 3^i epochs at lr·10^(-i/7), then holds lr/10")
    capture: bool = Field(False, description="CUDA: replay the training step as a CUDA graph (no effect on CPU)")
    checkpoint_every_s: float = Field(10.0, ge=0, description="checkpoint at most this often (and after the "
                                      "last epoch); 0: every epoch. Does not change results: " + CKPT_WHY)
    RUN_ONLY = frozenset({"max_minutes", "checkpoint_every_s"})

    @model_validator(mode="after")
    def _k_for_elbo(self) -> PretrainConfig:
        if self.objective == "elbo" and self.k != 1:
            raise ValueError("k > 1 needs objective: iwae (the ELBO is the one-sample bound)")
        return self


class EvalConfig(Section):
    iwae_samples: int = Field(1000, ge=1, le=100_000)
    iwae_chunk: int = Field(250, ge=1, description="importance samples processed at once")
    batch_size: int = Field(256, ge=1)
    latent_plot: Literal["pca", "tsne"] = "pca"


class AEConfig(Section):
    """Stage `autoencoders`: a plain (ae) and a denoising (dae) autoencoder on the VAE's architecture, latent
    size and data model (vae.*), trained on the reconstruction log-likelihood with early stopping."""
    epochs: int = Field(100, ge=1, le=100_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0, le=1)
    patience: int = Field(20, ge=1, description="epochs without val reconstruction improvement before stopping")
    noise: float = Field(0.2, gt=0, le=10, description="dae: std of the Gaussian noise added to its input "
                         "(intensities in [0, 1]); drawn from a generator seeded by `seed`")
    checkpoint_every_s: float = Field(10.0, ge=0, description="as pretrain.checkpoint_every_s")
    RUN_ONLY = frozenset({"checkpoint_every_s"})


class SamplersConfig(Section):
    """Stage `samplers`: latent samplers for the VAE, AE and DAE, and one sample-quality measure for all."""
    latent_components: list[int] = Field(
        default_factory=lambda: [1, 2, 5, 10, 20], description="K of the latent Gaussian mixture, chosen by BIC")
    classifier_hidden: list[int] = Field(default_factory=lambda: [256, 64], description="feature classifier: an "
                                         "MLP trained on source training labels; features = its last hidden layer")
    classifier_epochs: int = Field(30, ge=1, le=10_000)
    draws: int = Field(3, ge=1, le=100, description="independent sample sets per sampler: Fréchet mean ± std")
    interpolations: int = Field(32, ge=1, le=10_000, description="pairs of test codes interpolated linearly")
    interp_steps: int = Field(9, ge=3, le=64, description="images along each interpolation, both ends included")

    @field_validator("latent_components", "classifier_hidden")
    @classmethod
    def _sizes(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 or k > 8192 for k in v):
            raise ValueError("must be a non-empty list of sizes in 1..8192")
        return v
