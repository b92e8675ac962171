"""The prepared data as the later stages see it: both domains, the shared likelihood test set."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vaeflow.data import DomainData, load_domain
from vaeflow.io import file_sha256, load_torch, read_json
from vaeflow.models.vae import VAE
from vaeflow.paths import Paths


@dataclass(frozen=True)
class Prepared:
    source: DomainData
    target: DomainData
    obs: dict[str, dict[str, np.ndarray]]   # domain -> {'obs_val', 'obs_test'}: fixed observations
    hashes: dict[str, str]                  # content hashes, part of every checkpoint fingerprint

    @property
    def levels(self) -> int:
        return self.source.levels

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.source.x_train.shape[1:])

    @property
    def dim(self) -> int:
        return int(np.prod(self.image_shape))

    def unlabelled_train(self, limit: int | None = None) -> np.ndarray:
        """Raw intensities of both domains' training images: what the generative models learn from. With
        `limit`, the first `limit` of them (source first), without copying the rest."""
        return np.concatenate([self.source.x_train[:limit], self.target.x_train[:limit]])[:limit]

    def likelihood_split(self, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Fixed observations of both domains for `split` (val|test), and a domain index (0 source, 1 target);
        with `limit`, the first `limit` of them (source first), without copying the rest.

        GMM and VAE are scored on exactly these arrays, so their NLLs are in the same units."""
        a, b = self.obs["source"][f"obs_{split}"][:limit], self.obs["target"][f"obs_{split}"][:limit]
        return np.concatenate([a, b])[:limit], np.repeat([0, 1], [len(a), len(b)])[:limit]

    def size(self, split: str) -> int:
        """Images of both domains in `split`: train (the unlabelled training images), val or test."""
        if split == "train":
            return len(self.source.x_train) + len(self.target.x_train)
        return sum(len(o[f"obs_{split}"]) for o in self.obs.values())


def load_prepared(paths: Paths) -> Prepared:
    src, s_obs = load_domain(paths.domain("source"))
    tgt, t_obs = load_domain(paths.domain("target"))
    if src.x_train.shape[1:] != tgt.x_train.shape[1:] or src.levels != tgt.levels:
        raise ValueError(f"{paths.prepared}: source and target differ in image shape or levels; re-run prepare")
    hashes = {d: file_sha256(paths.domain(d)) for d in ("source", "target")}
    return Prepared(src, tgt, {"source": s_obs, "target": t_obs}, hashes)


def to_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), device=device)


def load_vae(paths: Paths, device: torch.device | str = "cpu") -> VAE:
    """The pretrained VAE, rebuilt from its spec and weights (weights_only load, checksum verified)."""
    model = VAE(**read_json(paths.vae_spec)["spec"])
    model.load_state_dict(load_torch(paths.vae))
    return model.to(device)
