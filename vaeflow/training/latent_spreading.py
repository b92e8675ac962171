"""Label spreading (Zhou et al., 2004) in the VAE's latent space: the `latent_spreading` variant.

No gradient step: a kNN graph over the VAE's posterior means of the labelled and unlabelled target
training images carries the few labels to the rest; an image is classified by the fitted model's kNN vote.
It is an Algorithm with a zero-epoch schedule, so `adapt` runs, scores and times it like every other.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vaeflow.training.algorithms import Algorithm


class LatentSpreading(Algorithm):
    uses_unlabelled = True

    def __init__(self, vae, n_neighbors: int = 10, alpha: float = 0.2) -> None:
        nn.Module.__init__(self)
        self._vae = [vae]  # held, not registered: the VAE's weights are not this variant's to save
        self.n_neighbors, self.alpha = n_neighbors, alpha
        self.model = None
        self.opt = None

    @classmethod
    def from_config(cls, clf, a, *, vae=None, **ctx):
        if vae is None:
            raise ValueError("latent_spreading needs the trained VAE")
        return cls(vae)

    @classmethod
    def schedule(cls, a) -> int:
        return 0

    @torch.inference_mode()
    def _latent(self, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
        vae = self._vae[0]
        vae.eval()
        return torch.cat([vae.encode(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)]).cpu().numpy()

    def setup(self, x_lab, y_lab, x_unl) -> None:
        from sklearn.semi_supervised import LabelSpreading

        z = self._latent(torch.cat([x_lab, x_unl]))
        y = np.concatenate([y_lab.cpu().numpy(), np.full(len(x_unl), -1)])
        self.model = LabelSpreading(kernel="knn", n_neighbors=self.n_neighbors, alpha=self.alpha,
                                    max_iter=100).fit(z, y)

    def predictor(self) -> nn.Module:
        return nn.Module()  # nothing trained to save

    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        return torch.as_tensor(self.model.predict(self._latent(x)), device=x.device)
