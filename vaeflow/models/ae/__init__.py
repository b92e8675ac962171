"""Plain and denoising autoencoders on the VAE's encoder and decoder: vaeflow.models.ae.Autoencoder."""
from vaeflow.models.ae.model import MODELS, Autoencoder, load_autoencoder

__all__ = ["MODELS", "Autoencoder", "load_autoencoder"]
