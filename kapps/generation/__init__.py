"""Image generation: autoencoders, the VAE, GANs and diffusion, and their metrics."""

from kapps.generation import autoencoder, gan  # noqa: F401  (registers the builders)
from kapps.generation.autoencoder import VAE, Autoencoder
from kapps.generation.gan import GAN

__all__ = ["GAN", "VAE", "Autoencoder"]
