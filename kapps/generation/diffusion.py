"""DDPM (Ho et al. 2020) with the DDIM sampler (Song et al. 2021) and classifier-free
guidance (Ho & Salimans 2022).

Training (`fit` on images, or images and labels): each image gets a random
timestep t and noise ε, the network sees x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε and is
scored by ‖ε − ε̂‖² (the paper's L_simple). Schedules: "linear" (β from 1e-4 to
0.02 over T = 1,000 steps, the paper's) and "cosine" (Nichol & Dhariwal 2021,
s = 0.008, β ≤ 0.999). A conditional model drops the label for
`class_dropout` of the images (the "no class" row), so one network also
predicts unconditionally.

Sampling: "ddpm" runs the ancestral sampler over all T steps (σ_t² = β_t);
"ddim" takes `steps` evenly spaced timesteps with η = 0 (deterministic given
the starting noise). Both clip the predicted x_0 to [-1, 1], as the paper's
code does. `guidance_scale` s mixes ε̂ = ε̂(∅) + s·(ε̂(y) − ε̂(∅)); s = 1 is the
plain conditional model.
"""

import math

import keras
import numpy as np
from keras import ops

from kapps.generation.base import check_labels, split_inputs, to_pixels
from kapps.generation.ddpm_unet import ddpm_unet
from kapps.registry import register_model

SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ddpm", "ddim")


def noise_schedule(kind="linear", timesteps=1000):
    """β_1 … β_T as float64 numpy."""
    if kind == "linear":
        scale = 1000 / timesteps  # Nichol & Dhariwal's rescaling; 1 at T = 1,000
        return np.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype="float64")
    if kind == "cosine":
        s = 0.008
        steps = np.arange(timesteps + 1, dtype="float64") / timesteps
        alpha_bar = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        return np.clip(1 - alpha_bar[1:] / alpha_bar[:-1], 0, 0.999)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")


@keras.saving.register_keras_serializable(package="kapps")
class DDPM(keras.Model):
    """A denoising diffusion model around the `ddpm_unet` ε-network.

    Args:
        image_shape: (height, width, channels) of the raw 0–255 images.
        timesteps: T.
        schedule: "linear" or "cosine".
        num_classes: class-conditional with this many classes; None: not.
        class_dropout: share of training labels replaced by "no class".
        network: `ddpm_unet` arguments (channels, channel_mult, num_res_blocks,
            attention_resolutions, dropout, groups).
    """

    def __init__(
        self,
        image_shape,
        timesteps=1000,
        schedule="linear",
        num_classes=None,
        class_dropout=0.1,
        network=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.network = ddpm_unet(image_shape, num_classes=num_classes, **(network or {}))
        self.image_shape = tuple(image_shape)
        self.timesteps = timesteps
        self.schedule = schedule
        self.num_classes = num_classes
        self.class_dropout = class_dropout
        self.network_args = dict(network or {})
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        betas = noise_schedule(schedule, timesteps)
        self.betas = betas
        self.alpha_bar = np.cumprod(1 - betas)
        self.built = True  # every weight is the network's, built above

    def _network_inputs(self, noisy, timesteps, labels):
        inputs = {"noisy": noisy, "timesteps": timesteps}
        if self.num_classes:
            inputs["labels"] = labels
        return inputs

    def call(self, inputs, training=False):
        """ε and ε̂ of the images noised at random timesteps: `{"noise", "prediction"}`."""
        images, labels = split_inputs(inputs)
        x0 = ops.cast(images, "float32") / 127.5 - 1.0
        batch = ops.shape(x0)[0]
        t = keras.random.randint((batch,), 0, self.timesteps, seed=self.seed_generator)
        noise = keras.random.normal(ops.shape(x0), seed=self.seed_generator)
        alpha_bar = ops.reshape(
            ops.take(ops.convert_to_tensor(self.alpha_bar, "float32"), t), (-1, 1, 1, 1)
        )
        noisy = ops.sqrt(alpha_bar) * x0 + ops.sqrt(1 - alpha_bar) * noise
        if self.num_classes:
            labels = ops.cast(labels, "int32")
            if training and self.class_dropout:
                drop = keras.random.uniform((batch,), seed=self.seed_generator) < self.class_dropout
                labels = ops.where(drop, self.num_classes, labels)
        eps = self.network(self._network_inputs(noisy, t, labels), training=training)
        return {"noise": noise, "prediction": eps}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = ops.mean(ops.square(y_pred["prediction"] - y_pred["noise"]))
        for extra in self.losses:
            loss = loss + ops.sum(extra)
        return loss

    # Sampling -----------------------------------------------------------------------
    def _eps(self, x, t, labels, guidance_scale):
        if not self.network.compiled:  # XLA where Keras has it: 1.6× faster sampling on CPU
            self.network.compile(jit_compile=keras.backend.backend() in ("tensorflow", "jax"))
        ts = np.full((len(x),), t, "int32")
        if not self.num_classes:
            return self.network.predict_on_batch(self._network_inputs(x, ts, None))
        conditional = self.network.predict_on_batch(self._network_inputs(x, ts, labels))
        if guidance_scale == 1:
            return conditional
        null = np.full_like(labels, self.num_classes)
        unconditional = self.network.predict_on_batch(self._network_inputs(x, ts, null))
        return unconditional + guidance_scale * (conditional - unconditional)

    def timesteps_of(self, sampler, steps):
        """The timesteps the reverse process visits, from T − 1 down to 0."""
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if sampler == "ddpm":
            return np.arange(self.timesteps)[::-1]
        count = min(steps, self.timesteps)
        return np.linspace(0, self.timesteps - 1, count).round().astype(int)[::-1]

    def denoise(
        self, noise, labels=None, sampler="ddim", steps=50, guidance_scale=1.0, keep=0, seed=None
    ):
        """Run the reverse process from `noise` (model scale); returns the final x_0 and,
        with `keep` > 0, up to that many `(t, predicted x_0)` evenly spaced along the way.
        `seed`: the DDPM sampler's noise at each step."""
        times = self.timesteps_of(sampler, steps)
        rng = np.random.default_rng(seed)
        marks = set(np.linspace(0, len(times) - 1, min(keep, len(times))).round().astype(int))
        kept = []
        x = np.asarray(noise, "float32")
        for i, t in enumerate(times):
            eps = np.asarray(self._eps(x, int(t), labels, guidance_scale), "float32")
            a_t = self.alpha_bar[t]
            x0 = np.clip((x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t), -1, 1)
            if i in marks:
                kept.append((int(t), x0))
            prev = times[i + 1] if i + 1 < len(times) else -1
            a_prev = self.alpha_bar[prev] if prev >= 0 else 1.0
            if sampler == "ddim":  # η = 0: x_{t'} = √ᾱ_{t'}·x̂_0 + √(1 − ᾱ_{t'})·ε̂
                eps = (x - np.sqrt(a_t) * x0) / np.sqrt(1 - a_t)
                x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
            else:  # the posterior mean of x_{t-1} given x_0 and x_t, plus σ_t·z
                beta = self.betas[t]
                mean = (np.sqrt(a_prev) * beta * x0 + np.sqrt(1 - beta) * (1 - a_prev) * x) / (
                    1 - a_t
                )
                x = mean + (np.sqrt(beta) * rng.standard_normal(x.shape) if prev >= 0 else 0)
            x = x.astype("float32")
        return x, kept

    def sample(
        self,
        num,
        labels=None,
        seed=None,
        batch_size=256,
        sampler="ddim",
        steps=50,
        guidance_scale=1.0,
    ):
        """`num` new images, pixels 0–255; `labels` (one, or one per image) when conditional."""
        labels = check_labels(labels, num, self.num_classes)
        rng = np.random.default_rng(seed)
        out = []
        for start in range(0, num, batch_size):
            size = min(batch_size, num - start)
            noise = rng.standard_normal((size, *self.image_shape)).astype("float32")
            part = None if labels is None else labels[start : start + size]
            x, _ = self.denoise(noise, part, sampler, steps, guidance_scale, seed=rng)
            out.append(to_pixels(x))
        return np.concatenate(out)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_shape": self.image_shape,
            "timesteps": self.timesteps,
            "schedule": self.schedule,
            "num_classes": self.num_classes,
            "class_dropout": self.class_dropout,
            "network": self.network_args,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


VARIANTS = {  # the paper's CIFAR-10 network, and a small one for CPUs and tiny images
    "ddpm": {},
    "ddpm_small": {
        "channels": 32,
        "channel_mult": (1, 2, 2),
        "num_res_blocks": 1,
        "attention_resolutions": (4,),
        "groups": 8,
    },
}


@register_model(
    "generation",
    variants={name: {"variant": name} for name in VARIANTS},
    test_kwargs={
        "image_shape": (8, 8, 1),
        "timesteps": 20,
        "channels": 8,
        "channel_mult": (1, 2),
        "num_res_blocks": 1,
        "attention_resolutions": (4,),
        "groups": 4,
    },
    min_input_size=8,
)
def ddpm(
    image_shape=(32, 32, 3),
    *,
    variant="ddpm",
    timesteps=1000,
    schedule="linear",
    num_classes=None,
    name=None,
    **network,
):
    """DDPM; `ddpm` is the paper's CIFAR-10 network (35.7 M parameters), `ddpm_small` a
    1.1 M one for small images on a CPU (32 channels, 3 resolutions, 1 block each,
    attention at 4×4). See `DDPM`.

    `network` keywords go to `ddpm_unet` (channels, channel_mult, num_res_blocks,
    attention_resolutions, dropout, groups); `class_dropout` and `seed` to `DDPM`.

    Example:
    >>> model = ddpm((16, 16, 1), channels=32, channel_mult=(1, 2), num_classes=10)
    >>> model.sample(2, labels=[3, 7], steps=5).shape
    (2, 16, 16, 1)
    """
    own = {k: network.pop(k) for k in ("class_dropout", "seed") if k in network}
    network = {**VARIANTS[variant], **network}
    return DDPM(
        image_shape, timesteps, schedule, num_classes, network=network, name=name or variant, **own
    )
