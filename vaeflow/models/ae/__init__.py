"""Plain and denoising autoencoders on the VAE's encoder and decoder: vaeflow.models.ae.Autoencoder."""
from vaeflow.models.ae.model import MODELS, Autoencoder, build_autoencoder, load_autoencoder, load_model, seeded_init

__all__ = ["MODELS", "Autoencoder", "build_autoencoder", "load_autoencoder", "load_model", "seeded_init"]
