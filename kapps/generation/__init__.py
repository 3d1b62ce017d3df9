"""Image generation: autoencoders, the VAE, GANs and diffusion, and their metrics."""

from kapps.generation import autoencoder, diffusion, gan  # noqa: F401  (registers the builders)
from kapps.generation.autoencoder import VAE, Autoencoder
from kapps.generation.diffusion import DDPM
from kapps.generation.gan import GAN

__all__ = ["DDPM", "GAN", "VAE", "Autoencoder"]
