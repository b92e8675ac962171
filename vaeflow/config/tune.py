"""The `tune` section, with its search-space schema (which hyperparameters may be tuned, and how)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from vaeflow.config.base import Section
from vaeflow.config.models import PretrainConfig, VAEConfig

# Hyperparameters tune.search_space may name, and the section each belongs to (pretrain.use_tuned applies them).
TUNABLE = {"latent_dim": "vae", "hidden": "vae", "lr": "pretrain", "beta": "pretrain", "batch_size": "pretrain"}


class TuneConfig(Section):
    num_samples: int = Field(4, ge=1, description="samples of the search space (each grid point this many times)")
    max_concurrent_trials: int = Field(2, ge=1)
    order: Literal["longest_first", "sampled"] = Field(
        "longest_first", description="the order trials start in: the most expensive first, by a probe epoch "
        "of each (a shorter makespan when trials outnumber slots), or as sampled; which trials run is the same")
    cpus_per_trial: float = Field(1, gt=0, description="also each trial's torch threads (at least 1)")
    gpus_per_trial: float = Field(0, ge=0, description="fractional shares a GPU: 0.25 = four trials per GPU")
    max_epochs: int = Field(30, ge=1, description="ASHA's max_t: epochs of a trial that is never stopped")
    grace_period: int = Field(3, ge=1, description="epochs before ASHA may stop a trial")
    reduction_factor: float = Field(2, gt=1)
    max_failures: int = Field(2, ge=0, description="retries of a crashed trial, from its last checkpoint")
    keep_checkpoints: int = Field(10, ge=2, description="per trial. Tune saves the experiment state whenever a "
                                  "trial has written this many since the last save: more means less driver work")
    checkpoint_every_s: float = Field(5.0, ge=0, description="a trial hands Tune a checkpoint at most this often "
                                      "(and after its last epoch); metrics go every epoch. 0: every epoch")
    tensorboard: bool = Field(False, description="also write TensorBoard event files for every report (Tune's "
                              "TBXLoggerCallback: driver work on every result)")
    storage_path: str = Field("runs/tune", description="local dir (relative to the project) or a URI, e.g. s3://b/p")
    experiment_name: str = Field("vae_tune", pattern=r"^[A-Za-z0-9_.-]+$")
    search_space: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("experiment_name")
    @classmethod
    def _one_folder(cls, v: str) -> str:
        # a folder under storage_path: "." or ".." would write the experiment into storage_path or above it
        if set(v) == {"."}:
            raise ValueError(f"{v!r} is not a folder name of its own; use letters, digits, '_', '-' or '.'")
        return v

    @field_validator("search_space")
    @classmethod
    def _space(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from vaeflow.config.search_space import normalize_search_space

        for name in v:
            if name not in TUNABLE:
                raise ValueError(f"'{name}' cannot be tuned; tunable: {', '.join(TUNABLE)}")
        return normalize_search_space(v, _tunable_value)

    @model_validator(mode="after")
    def _consistent(self) -> TuneConfig:
        if self.grace_period > self.max_epochs:
            raise ValueError("grace_period must not exceed max_epochs")
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise ValueError("gpus_per_trial above 1 must be a whole number of GPUs")
        return self


def _tunable_value(name: str, value: Any) -> Any:
    """`value` as params.yaml's schema types `name` (so 1e-5, which YAML reads as a string, is a float)."""
    section = {"vae": VAEConfig, "pretrain": PretrainConfig}[TUNABLE[name]]
    try:
        return getattr(section.model_validate({name: value}), name)
    except ValidationError as e:
        raise ValueError(f"{name}: {value!r} is not a valid {TUNABLE[name]}.{name} "
                         f"({e.errors()[0]['msg'].removeprefix('Value error, ')})") from None
