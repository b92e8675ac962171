"""Variational autoencoder: vaeflow.models.vae.VAE."""
from vaeflow.models.vae.model import VAE

__all__ = ["VAE"]
