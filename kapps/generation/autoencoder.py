"""Autoencoders: the convolutional (and denoising) autoencoder and the VAE.

`vae` follows Kingma & Welling (2014): a Gaussian encoder q(z|x) giving a mean
and a log-variance, the reparameterisation z = μ + σ·ε, and the negative ELBO
−E[log p(x|z)] + β·KL(q(z|x) ‖ N(0, I)) per image (β = 1 is the paper's; β > 1
is β-VAE, Higgins et al. 2017), with a Bernoulli decoder (pixels in [0, 1] as
probabilities; cross-entropy with logits) or a Gaussian one of fixed σ. With
`architecture="mlp"` it is the paper's MNIST model (appendix C: one hidden layer
of 500 tanh units on each side; 815,824 parameters at 28×28 and 20 latent
dimensions, tested); `"conv"` is the convolutional encoder and decoder of
`autoencoder`.

`autoencoder` is deterministic: its code is a point, and `denoising=True`
trains it to restore images corrupted by Gaussian noise (Vincent et al. 2008).
It samples by decoding codes drawn from a Gaussian fitted to the training codes
(a running mean and standard deviation per dimension); a VAE decodes N(0, I).
"""

import keras
import numpy as np
from keras import ops

from kapps.generation.base import to_pixels
from kapps.registry import register_model

ARCHITECTURES = ("conv", "mlp")
LIKELIHOODS = ("bernoulli", "gaussian")


def _encoder(image_shape, architecture, filters, hidden, outputs, noise_std, name):
    images = keras.Input(tuple(image_shape), name="images")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(images)
    if noise_std:
        x = keras.layers.GaussianNoise(noise_std, name="corrupt")(x)  # training only
    if architecture == "mlp":
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(hidden, activation="tanh", name="hidden")(x)
    else:
        for i, width in enumerate(filters):
            x = keras.layers.Conv2D(
                width, 3, strides=2, padding="same", activation="relu", name=f"conv_{i}"
            )(x)
        x = keras.layers.Flatten(name="flatten")(x)
    codes = [keras.layers.Dense(size, name=n)(x) for n, size in outputs]
    return keras.Model(images, codes if len(codes) > 1 else codes[0], name=name)


def _decoder(image_shape, architecture, filters, hidden, latent_dim):
    height, width, channels = image_shape
    z = keras.Input((latent_dim,), name="z")
    if architecture == "mlp":
        x = keras.layers.Dense(hidden, activation="tanh", name="hidden")(z)
        x = keras.layers.Dense(height * width * channels, name="pixels")(x)
        logits = keras.layers.Reshape(tuple(image_shape), name="logits")(x)
        return keras.Model(z, logits, name="decoder")
    scale = 2 ** len(filters)
    x = keras.layers.Dense(
        (height // scale) * (width // scale) * filters[-1], activation="relu", name="project"
    )(z)
    x = keras.layers.Reshape((height // scale, width // scale, filters[-1]), name="reshape")(x)
    for i, size in enumerate(reversed(filters)):
        x = keras.layers.Conv2DTranspose(
            size, 3, strides=2, padding="same", activation="relu", name=f"deconv_{i}"
        )(x)
    logits = keras.layers.Conv2D(channels, 3, padding="same", name="logits")(x)
    return keras.Model(z, logits, name="decoder")


@keras.saving.register_keras_serializable(package="kapps")
class Autoencoder(keras.Model):
    """An encoder to a `latent_dim` code and a decoder back to pixel logits.

    Args:
        image_shape: (height, width, channels) of the raw 0–255 images; with
            `architecture="conv"` both sides divisible by 2 ** len(filters).
        latent_dim: size of the code.
        architecture: "conv" (strided convolutions) or "mlp" (one hidden layer).
        filters: the convolutions' widths, one stride-2 convolution each.
        hidden: the hidden layer's width (mlp).
        likelihood: "bernoulli" (cross-entropy) or "gaussian" (squared error / 2σ²).
        sigma: the Gaussian decoder's fixed standard deviation, in [0, 1] pixels.
        denoising: corrupt the inputs with Gaussian noise of `noise_std` while training.
        noise_std: that noise, in [0, 1] pixels.
    """

    variational = False

    def __init__(
        self,
        image_shape,
        latent_dim=32,
        architecture="conv",
        filters=(32, 64),
        hidden=500,
        likelihood="bernoulli",
        sigma=0.1,
        denoising=False,
        noise_std=0.25,
        beta=1.0,
        **kwargs,
    ):
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        scale = 2 ** len(filters)
        if architecture == "conv" and (image_shape[0] % scale or image_shape[1] % scale):
            raise ValueError(
                f"image sides {tuple(image_shape[:2])} must be divisible by {scale} "
                f"(one stride-2 convolution per entry of filters={tuple(filters)})"
            )
        outputs = [("mean", latent_dim), ("log_var", latent_dim)]
        encoder = _encoder(
            image_shape,
            architecture,
            filters,
            hidden,
            outputs if self.variational else outputs[:1],
            noise_std if denoising else 0.0,
            name="encoder",
        )
        decoder = _decoder(image_shape, architecture, filters, hidden, latent_dim)
        images = encoder.inputs[0]
        codes = encoder(images)
        if self.variational:
            mean, log_var = codes
            z = Reparameterize(name="reparameterize")([mean, log_var])
            outputs = {"reconstruction": decoder(z), "mean": mean, "log_var": log_var}
        else:
            outputs = {"reconstruction": decoder(codes), "mean": codes}
        super().__init__(images, outputs, **kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.architecture = architecture
        self.filters = tuple(filters)
        self.hidden = hidden
        self.likelihood = likelihood
        self.sigma = sigma
        self.denoising = denoising
        self.noise_std = noise_std
        self.beta = beta
        if not self.variational:  # the training codes' running mean and std, for `sample`
            self.code_mean = self.add_weight(
                shape=(latent_dim,), initializer="zeros", trainable=False, name="code_mean"
            )
            self.code_std = self.add_weight(
                shape=(latent_dim,), initializer="ones", trainable=False, name="code_std"
            )
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.sample_seed = keras.random.SeedGenerator(0, name="sample_seed")

    def reconstruction_loss(self, images, logits):
        """−log p(x | z) per image, summed over its pixels."""
        target = ops.cast(images, "float32") / 255.0
        logits = ops.cast(logits, "float32")
        if self.likelihood == "bernoulli":
            nll = ops.binary_crossentropy(target, logits, from_logits=True)
        else:
            nll = ops.square(target - ops.sigmoid(logits)) / (2 * self.sigma**2)
        return ops.sum(ops.reshape(nll, (ops.shape(nll)[0], -1)), axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        reconstruction = ops.mean(self.reconstruction_loss(x, y_pred["reconstruction"]))
        self.reconstruction_tracker.update_state(reconstruction)
        if training and not self.variational:
            codes = ops.cast(y_pred["mean"], "float32")
            momentum = 0.99
            self.code_mean.assign(
                momentum * self.code_mean + (1 - momentum) * ops.mean(codes, axis=0)
            )
            self.code_std.assign(momentum * self.code_std + (1 - momentum) * ops.std(codes, axis=0))
        return reconstruction + self._regularisation(y_pred)

    def _regularisation(self, y_pred):
        return sum(ops.sum(extra) for extra in self.losses) if self.losses else 0.0

    # Using the model --------------------------------------------------------------
    def encode(self, images, batch_size=256):
        """The codes of raw images (a VAE: the posterior means)."""
        codes = self.encoder.predict(np.asarray(images, "float32"), batch_size, verbose=0)
        return codes[0] if self.variational else codes

    def decode(self, codes, batch_size=256):
        """Pixels (0–255) of codes."""
        logits = self.decoder.predict(np.asarray(codes, "float32"), batch_size, verbose=0)
        return to_pixels(ops.sigmoid(logits), 0.0, 1.0)

    def reconstruct(self, images, batch_size=256):
        return self.decode(self.encode(images, batch_size), batch_size)

    def prior(self, num, seed=None):
        """`num` codes from the model's prior: N(0, I), or the fitted code Gaussian."""
        seed = self.sample_seed if seed is None else seed
        z = keras.random.normal((num, self.latent_dim), seed=seed)
        if not self.variational:
            z = self.code_mean + self.code_std * z
        return ops.convert_to_numpy(z)

    def sample(self, num, labels=None, seed=None, batch_size=256):
        """`num` new images, pixels 0–255 (unconditional: `labels` must be None)."""
        if labels is not None:
            raise ValueError(f"{self.name} is not class-conditional; labels must be None")
        return self.decode(self.prior(num, seed), batch_size)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_shape": self.image_shape,
            "latent_dim": self.latent_dim,
            "architecture": self.architecture,
            "filters": self.filters,
            "hidden": self.hidden,
            "likelihood": self.likelihood,
            "sigma": self.sigma,
            "denoising": self.denoising,
            "noise_std": self.noise_std,
            "beta": self.beta,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="kapps")
class VAE(Autoencoder):
    """The variational autoencoder (see the module docstring); `beta` weighs the KL term."""

    variational = True

    def __init__(self, image_shape, latent_dim=32, **kwargs):
        super().__init__(image_shape, latent_dim, **kwargs)
        self.kl_tracker = keras.metrics.Mean(name="kl")

    def _regularisation(self, y_pred):
        mean = ops.cast(y_pred["mean"], "float32")
        log_var = ops.cast(y_pred["log_var"], "float32")
        kl = -0.5 * ops.sum(1 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)
        kl = ops.mean(kl)
        self.kl_tracker.update_state(kl)
        return self.beta * kl + super()._regularisation(y_pred)


@keras.saving.register_keras_serializable(package="kapps")
class Reparameterize(keras.layers.Layer):
    """z = μ + exp(log σ² / 2) · ε with ε ~ N(0, I) while training; μ otherwise."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        mean, log_var = inputs
        if not training:
            return mean
        noise = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_var) * noise

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


TEST_KWARGS = {"image_shape": (8, 8, 1), "latent_dim": 4, "filters": (4, 8)}


@register_model("generation", test_kwargs=TEST_KWARGS, min_input_size=4)
def autoencoder(image_shape=(28, 28, 1), latent_dim=32, *, denoising=False, name=None, **kwargs):
    """A convolutional autoencoder (`denoising=True`: a denoising one); see `Autoencoder`.

    Example:
    >>> model = autoencoder((16, 16, 1), latent_dim=8)
    >>> model.sample(2).shape
    (2, 16, 16, 1)
    """
    return Autoencoder(
        image_shape, latent_dim, denoising=denoising, name=name or "autoencoder", **kwargs
    )


@register_model("generation", test_kwargs=TEST_KWARGS, min_input_size=4)
def vae(image_shape=(28, 28, 1), latent_dim=20, *, beta=1.0, name=None, **kwargs):
    """A variational autoencoder (Kingma & Welling 2014); see `VAE`.

    `vae((28, 28, 1), 20, architecture="mlp")` is the paper's MNIST model.

    Example:
    >>> model = vae((28, 28, 1), 20, architecture="mlp")
    >>> model.count_params()
    815824
    """
    return VAE(image_shape, latent_dim, beta=beta, name=name or "vae", **kwargs)
