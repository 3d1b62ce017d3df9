"""GANs: DCGAN (Radford et al. 2016) and WGAN-GP (Gulrajani et al. 2017).

DCGAN's generator projects and reshapes z (100-d, uniform in the paper; normal
here, as most re-implementations) to a 4×4 map of 8 × `width` channels, then
fractionally-strided 5×5 convolutions halve the channels and double the side
until the last one gives the image through tanh: 4×4×1024 → 8×8×512 → 16×16×256
→ 32×32×128 → 64×64×3 at the paper's 64×64 with `width=128` (Figure 1). Batch
normalisation and ReLU follow every layer but the output. The discriminator
mirrors it: strided 5×5 convolutions of `width`, 2·`width`, … channels with
LeakyReLU(0.2), batch normalisation on all but the first, and one logit. Weights
start from N(0, 0.02). Smaller images use fewer stages (16×16: 4×4×256 → 8×8×128
→ 16×16).

WGAN-GP keeps the architecture, drops the critic's batch normalisation (the
paper suggests layer normalisation instead, which `wgan_gp` uses), scores with a
linear critic, and adds λ·E[(‖∇D(x̂)‖₂ − 1)²] on random interpolates x̂ of real
and generated images (λ = 10; ∇D from `critic_input_gradient`); the critic
takes `n_critic` = 5 steps per generator step.

`num_classes` makes both class-conditional: the generator reads z concatenated
with a learned class embedding (Mirza & Osindero 2014), the discriminator adds
the projection term ⟨embed(y), φ(x)⟩ to its logit (Miyato & Koyama 2018).

Training is `fit`: one step updates both networks from one batch. The loss sums
the discriminator's loss on a generated batch held fixed (`stop_gradient`) and
the generator's loss through a copy of the discriminator whose weights are held
fixed (`stateless_call` on stopped weights), so each network gets exactly its
own gradient and one optimiser serves both (both papers use the same Adam
settings for the two). Between generator steps of WGAN-GP the generator's term
is multiplied by 0; with the paper's Adam β1 = 0 such a step leaves the
generator's weights unchanged.
"""

import math

import keras
from keras import ops

from kapps.generation.base import check_labels, split_inputs, to_pixels
from kapps.registry import register_model

LOSSES = ("dcgan", "wgan_gp")
INIT = {"class_name": "RandomNormal", "config": {"stddev": 0.02}}


def _stages(image_shape):
    height, width = image_shape[:2]
    stages = math.log2(height / 4) if height == width else 0
    if stages < 1 or not stages.is_integer():
        raise ValueError(
            f"a GAN's images are square with a side of 4·2^k (8, 16, 32, 64, …); "
            f"got {tuple(image_shape[:2])}"
        )
    return int(stages)


def _generator(image_shape, latent_dim, width, kernel_size, num_classes):
    stages = _stages(image_shape)
    z = keras.Input((latent_dim,), name="z")
    inputs, x = [z], z
    if num_classes:
        labels = keras.Input((), dtype="int32", name="labels")
        inputs.append(labels)
        embedded = keras.layers.Embedding(num_classes, latent_dim, name="class_embedding")(labels)
        x = keras.layers.Concatenate(name="z_and_class")([z, embedded])
    channels = width * 2 ** (stages - 1)
    x = keras.layers.Dense(16 * channels, use_bias=False, kernel_initializer=INIT, name="project")(
        x
    )
    x = keras.layers.Reshape((4, 4, channels), name="reshape")(x)
    x = keras.layers.BatchNormalization(name="project_bn")(x)
    x = keras.layers.ReLU(name="project_relu")(x)
    for i in range(1, stages):
        x = keras.layers.Conv2DTranspose(
            width * 2 ** (stages - 1 - i),
            kernel_size,
            strides=2,
            padding="same",
            use_bias=False,
            kernel_initializer=INIT,
            name=f"deconv_{i}",
        )(x)
        x = keras.layers.BatchNormalization(name=f"deconv_{i}_bn")(x)
        x = keras.layers.ReLU(name=f"deconv_{i}_relu")(x)
    x = keras.layers.Conv2DTranspose(
        image_shape[-1], kernel_size, strides=2, padding="same", kernel_initializer=INIT, name="out"
    )(x)
    images = keras.layers.Activation("tanh", dtype="float32", name="images")(x)
    return keras.Model(inputs, images, name="generator")


def _discriminator(image_shape, width, kernel_size, num_classes, normalization):
    stages = _stages(image_shape)
    images = keras.Input(tuple(image_shape), name="images")
    inputs, x = [images], images
    for i in range(stages):
        normalised = i > 0 and normalization is not None
        x = keras.layers.Conv2D(
            width * 2**i,
            kernel_size,
            strides=2,
            padding="same",
            use_bias=not normalised,
            kernel_initializer=INIT,
            name=f"conv_{i}",
        )(x)
        if normalised and normalization == "batch":
            x = keras.layers.BatchNormalization(name=f"conv_{i}_bn")(x)
        elif normalised:
            x = keras.layers.LayerNormalization(axis=(1, 2, 3), name=f"conv_{i}_ln")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"conv_{i}_lrelu")(x)
    features = keras.layers.Flatten(name="flatten")(x)
    logit = keras.layers.Dense(1, kernel_initializer=INIT, dtype="float32", name="logit")(features)
    if num_classes:
        labels = keras.Input((), dtype="int32", name="labels")
        inputs.append(labels)
        embedded = keras.layers.Embedding(
            num_classes, features.shape[-1], embeddings_initializer=INIT, name="class_projection"
        )(labels)
        projection = keras.layers.Dot(axes=1, dtype="float32", name="projection")(
            [embedded, features]
        )
        logit = keras.layers.Add(dtype="float32", name="conditional_logit")([logit, projection])
    logit = keras.layers.Reshape((), dtype="float32", name="score")(logit)
    return keras.Model(inputs, logit, name="discriminator")


def critic_input_gradient(discriminator, images, labels=None):
    """d score / d images of a WGAN-GP critic (layer-normalised or not), in `keras.ops`.

    Keras has no backend-neutral gradient op, and the penalty needs this gradient
    inside the loss (the optimiser differentiates it again). The critic is a fixed
    stack (strided convolution → layer normalisation → LeakyReLU, …, a linear
    score and the class projection), so its backward pass is written out: each
    step is differentiable `keras.ops`, and the result equals the backend's own
    autodiff (tested).
    """
    layers = {layer.name: layer for layer in discriminator.layers}
    saved, x = [], images
    for i in range(sum(name.startswith("conv_") and name[5:].isdigit() for name in layers)):
        conv, norm = layers[f"conv_{i}"], layers.get(f"conv_{i}_ln")
        y = conv(x)
        x_hat = sigma = None
        if norm is not None:
            mean = ops.mean(y, axis=(1, 2, 3), keepdims=True)
            sigma = ops.sqrt(ops.var(y, axis=(1, 2, 3), keepdims=True) + norm.epsilon)
            x_hat = (y - mean) / sigma
            y = x_hat * norm.gamma + norm.beta
        slope = layers[f"conv_{i}_lrelu"].negative_slope
        saved.append((conv, norm, x_hat, sigma, y, slope))
        x = ops.leaky_relu(y, slope)
    features = x.shape[1] * x.shape[2] * x.shape[3]
    grad = ops.broadcast_to(layers["logit"].kernel[:, 0], (ops.shape(x)[0], features))
    if "class_projection" in layers:  # d ⟨embed(y), φ(x)⟩ / dφ = embed(y)
        grad = grad + layers["class_projection"](labels)
    grad = ops.reshape(grad, ops.shape(x))
    for conv, norm, x_hat, sigma, y, slope in reversed(saved):
        grad = grad * ops.where(y > 0, 1.0, slope)
        if norm is not None:
            grad = grad * norm.gamma
            mean = ops.mean(grad, axis=(1, 2, 3), keepdims=True)
            mean_x = ops.mean(grad * x_hat, axis=(1, 2, 3), keepdims=True)
            grad = (grad - mean - x_hat * mean_x) / sigma
        grad = ops.conv_transpose(grad, conv.kernel, strides=conv.strides, padding=conv.padding)
    return grad


@keras.saving.register_keras_serializable(package="kapps")
class GAN(keras.Model):
    """A generator and a discriminator (critic) trained against each other by `fit`.

    Args:
        image_shape: (side, side, channels) of the raw 0–255 images; side = 4·2^k.
        latent_dim: size of z.
        width: channels of the discriminator's first convolution and of the
            generator's last hidden layer (the paper's 64×64 model: 128).
        kernel_size: every convolution's (5, as the paper's code).
        num_classes: class-conditional with this many classes; None: not.
        loss: "dcgan" (the non-saturating cross-entropy losses) or "wgan_gp".
        n_critic: discriminator steps per generator step.
        gp_weight: WGAN-GP's λ.
    """

    def __init__(
        self,
        image_shape,
        latent_dim=100,
        width=128,
        kernel_size=5,
        num_classes=None,
        loss="dcgan",
        n_critic=1,
        gp_weight=10.0,
        seed=None,
        **kwargs,
    ):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        super().__init__(**kwargs)
        normalization = "batch" if loss == "dcgan" else "layer"
        self.generator = _generator(image_shape, latent_dim, width, kernel_size, num_classes)
        self.discriminator = _discriminator(
            image_shape, width, kernel_size, num_classes, normalization
        )
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.width = width
        self.kernel_size = kernel_size
        self.num_classes = num_classes
        self.loss_type = loss
        self.n_critic = n_critic
        self.gp_weight = gp_weight
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.steps = self.add_weight(shape=(), initializer="zeros", trainable=False, name="steps")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        if loss == "wgan_gp":
            self.gp_tracker = keras.metrics.Mean(name="gradient_penalty")
        self.built = True  # both networks are built above

    # The two networks -------------------------------------------------------------
    def _inputs(self, first, labels):
        return [first, labels] if self.num_classes else first

    def _critic(self, images, labels, training):
        return self.discriminator(self._inputs(images, labels), training=training)

    def _frozen_critic(self, images, labels, training):
        """The discriminator on weights that take no gradient (the generator's loss)."""
        d = self.discriminator
        held = [ops.stop_gradient(v.value) for v in d.trainable_variables]
        state = [v.value for v in d.non_trainable_variables]
        score, _ = d.stateless_call(held, state, self._inputs(images, labels), training=training)
        return score

    def call(self, inputs, training=False):
        """The discriminator's score of raw 0–255 images (and their labels)."""
        images, labels = split_inputs(inputs)
        return self._critic(ops.cast(images, "float32") / 127.5 - 1.0, labels, training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        images, labels = split_inputs(x)
        real = ops.cast(images, "float32") / 127.5 - 1.0
        z = keras.random.normal((ops.shape(real)[0], self.latent_dim), seed=self.seed_generator)
        fake = self.generator(self._inputs(z, labels), training=training)
        fake_score = self._critic(ops.stop_gradient(fake), labels, training)
        generator_score = self._frozen_critic(fake, labels, training)
        if self.loss_type == "dcgan":  # −log D(x) − log(1 − D(G(z))); G: −log D(G(z))
            d_loss = ops.mean(ops.softplus(-y_pred)) + ops.mean(ops.softplus(fake_score))
            g_loss = ops.mean(ops.softplus(-generator_score))
        else:
            penalty = self.gp_weight * self._gradient_penalty(real, fake, labels, training)
            self.gp_tracker.update_state(penalty)
            d_loss = ops.mean(fake_score) - ops.mean(y_pred) + penalty
            g_loss = -ops.mean(generator_score)
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        generator_step = ops.cast(ops.equal(self.steps % self.n_critic, 0), "float32")
        if training:
            self.steps.assign(self.steps + 1)
        return d_loss + generator_step * g_loss

    def _gradient_penalty(self, real, fake, labels, training):
        shape = (ops.shape(real)[0], 1, 1, 1)
        mix = keras.random.uniform(shape, seed=self.seed_generator)
        between = mix * real + (1 - mix) * ops.stop_gradient(fake)
        grad = critic_input_gradient(self.discriminator, between, labels)
        norm = ops.sqrt(ops.sum(ops.square(grad), axis=(1, 2, 3)) + 1e-12)
        return ops.mean(ops.square(norm - 1.0))

    # Using the model ----------------------------------------------------------------
    def sample(self, num, labels=None, seed=None, batch_size=256):
        """`num` new images, pixels 0–255; `labels` (one, or one per image) when conditional."""
        labels = check_labels(labels, num, self.num_classes)
        z = keras.random.normal(
            (num, self.latent_dim), seed=self.seed_generator if seed is None else seed
        )
        inputs = self._inputs(ops.convert_to_numpy(z), labels)
        return to_pixels(self.generator.predict(inputs, batch_size=batch_size, verbose=0))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_shape": self.image_shape,
            "latent_dim": self.latent_dim,
            "width": self.width,
            "kernel_size": self.kernel_size,
            "num_classes": self.num_classes,
            "loss": self.loss_type,
            "n_critic": self.n_critic,
            "gp_weight": self.gp_weight,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


TEST_KWARGS = {"image_shape": (8, 8, 1), "latent_dim": 8, "width": 4, "kernel_size": 3}


@register_model("generation", test_kwargs=TEST_KWARGS, min_input_size=8)
def dcgan(
    image_shape=(64, 64, 3), latent_dim=100, *, width=128, num_classes=None, name=None, **kwargs
):
    """DCGAN (Radford et al. 2016); the defaults are the paper's 64×64 model. See `GAN`.

    Example:
    >>> model = dcgan((64, 64, 3))
    >>> [layer.output.shape[1:] for layer in model.generator.layers if "relu" in layer.name]
    [(4, 4, 1024), (8, 8, 512), (16, 16, 256), (32, 32, 128)]
    """
    return GAN(
        image_shape, latent_dim, width, num_classes=num_classes, name=name or "dcgan", **kwargs
    )


@register_model("generation", test_kwargs=TEST_KWARGS, min_input_size=8)
def wgan_gp(
    image_shape=(64, 64, 3), latent_dim=128, *, width=64, num_classes=None, name=None, **kwargs
):
    """WGAN-GP (Gulrajani et al. 2017): λ = 10, five critic steps per generator step.

    Train it with the paper's Adam (learning rate 1e-4, β1 = 0, β2 = 0.9).
    """
    kwargs = {"n_critic": 5, "gp_weight": 10.0, **kwargs}
    return GAN(
        image_shape,
        latent_dim,
        width,
        num_classes=num_classes,
        loss="wgan_gp",
        name=name or "wgan_gp",
        **kwargs,
    )
