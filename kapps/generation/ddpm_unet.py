"""The noise-prediction network of DDPM (Ho et al. 2020, appendix B).

A U-Net of wide residual blocks (GroupNorm → swish → 3×3 conv, with the
timestep embedding added between the two convolutions, dropout before the
second) and single-head self-attention blocks at the resolutions in
`attention_resolutions`; `num_res_blocks` blocks per resolution going down,
one more going up (each taking a skip connection), 2× strided-convolution
downsampling and nearest-neighbour + convolution upsampling. The timestep
enters as the Transformer's sinusoidal embedding of width `channels`, then
two dense layers of 4 × `channels` with swish between. With `num_classes` a
learned class embedding (plus one "no class" row, for classifier-free
guidance) is added to the timestep embedding. Output convolutions start at
zero, as in the paper's code.

At the CIFAR-10 configuration (32×32×3, `channels=128`, `channel_mult=(1, 2,
2, 2)`, two blocks, attention at 16×16) it has 35,746,307 parameters, the
paper's "35.7 million" (tested).
"""

import math

import keras
from keras import ops

SWISH = "silu"


@keras.saving.register_keras_serializable(package="kapps")
class TimestepEmbedding(keras.layers.Layer):
    """Sinusoidal embedding of integer timesteps: [sin(t·f_i), cos(t·f_i)],
    f_i = 10000^(−i/(d/2 − 1))."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim

    def call(self, timesteps):
        half = self.dim // 2
        scale = math.log(10000) / (half - 1)
        freqs = ops.exp(ops.arange(half, dtype="float32") * -scale)
        angles = ops.cast(ops.reshape(timesteps, (-1, 1)), "float32") * freqs[None, :]
        return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


def _norm(x, groups, name):
    return keras.layers.GroupNormalization(min(groups, x.shape[-1]), epsilon=1e-6, name=name)(x)


def _res_block(x, temb, out_channels, dropout, groups, name):
    h = keras.layers.Activation(SWISH, name=f"{name}_act1")(_norm(x, groups, f"{name}_norm1"))
    h = keras.layers.Conv2D(out_channels, 3, padding="same", name=f"{name}_conv1")(h)
    t = keras.layers.Activation(SWISH, name=f"{name}_temb_act")(temb)
    t = keras.layers.Dense(out_channels, name=f"{name}_temb_proj")(t)
    h = keras.layers.Add(name=f"{name}_add_temb")(
        [h, keras.layers.Reshape((1, 1, out_channels))(t)]
    )
    h = keras.layers.Activation(SWISH, name=f"{name}_act2")(_norm(h, groups, f"{name}_norm2"))
    h = keras.layers.Dropout(dropout, name=f"{name}_dropout")(h)
    h = keras.layers.Conv2D(
        out_channels, 3, padding="same", kernel_initializer="zeros", name=f"{name}_conv2"
    )(h)
    if x.shape[-1] != out_channels:
        x = keras.layers.Dense(out_channels, name=f"{name}_shortcut")(x)
    return keras.layers.Add(name=f"{name}_out")([x, h])


def _attention(x, groups, name):
    channels = x.shape[-1]
    h = _norm(x, groups, f"{name}_norm")
    h = keras.layers.MultiHeadAttention(1, channels, name=f"{name}_attention")(h, h)
    return keras.layers.Add(name=f"{name}_out")([x, h])


def ddpm_unet(
    image_shape,
    channels=128,
    channel_mult=(1, 2, 2, 2),
    num_res_blocks=2,
    attention_resolutions=(16,),
    dropout=0.1,
    num_classes=None,
    groups=32,
    name="ddpm_unet",
):
    """The ε-network: inputs `noisy` (images in [-1, 1]), `timesteps` (int) and, with
    `num_classes`, `labels` (int; `num_classes` means "no class"); output ε̂."""
    height, width, image_channels = image_shape
    scale = 2 ** (len(channel_mult) - 1)
    if height % scale or width % scale:
        raise ValueError(
            f"image sides {(height, width)} must be divisible by {scale} "
            f"({len(channel_mult)} resolutions)"
        )
    noisy = keras.Input(tuple(image_shape), name="noisy")
    timesteps = keras.Input((), dtype="int32", name="timesteps")
    inputs = {"noisy": noisy, "timesteps": timesteps}
    temb = TimestepEmbedding(channels, name="timestep_embedding")(timesteps)
    temb = keras.layers.Dense(4 * channels, activation=SWISH, name="temb_dense0")(temb)
    temb = keras.layers.Dense(4 * channels, name="temb_dense1")(temb)
    if num_classes:
        labels = keras.Input((), dtype="int32", name="labels")
        inputs["labels"] = labels
        # N(0, 1) rows, as large as the timestep embedding from the start: Keras' default
        # (±0.05) took a thousand steps to matter, longer than a small data set trains.
        cemb = keras.layers.Embedding(
            num_classes + 1,
            4 * channels,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="class_embedding",
        )(labels)
        temb = keras.layers.Add(name="temb_and_class")([temb, cemb])

    x = keras.layers.Conv2D(channels, 3, padding="same", name="conv_in")(noisy)
    skips, side = [x], height
    for level, mult in enumerate(channel_mult):
        for block in range(num_res_blocks):
            x = _res_block(x, temb, channels * mult, dropout, groups, f"down{level}_block{block}")
            if side in attention_resolutions:
                x = _attention(x, groups, f"down{level}_attn{block}")
            skips.append(x)
        if level != len(channel_mult) - 1:
            x = keras.layers.Conv2D(
                x.shape[-1], 3, strides=2, padding="same", name=f"down{level}_downsample"
            )(x)
            skips.append(x)
            side //= 2
    x = _res_block(x, temb, x.shape[-1], dropout, groups, "mid_block0")
    x = _attention(x, groups, "mid_attn")
    x = _res_block(x, temb, x.shape[-1], dropout, groups, "mid_block1")
    for level in reversed(range(len(channel_mult))):
        for block in range(num_res_blocks + 1):
            x = keras.layers.Concatenate(name=f"up{level}_skip{block}")([x, skips.pop()])
            x = _res_block(
                x, temb, channels * channel_mult[level], dropout, groups, f"up{level}_block{block}"
            )
            if side in attention_resolutions:
                x = _attention(x, groups, f"up{level}_attn{block}")
        if level:
            x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up{level}_nearest")(x)
            x = keras.layers.Conv2D(x.shape[-1], 3, padding="same", name=f"up{level}_upsample")(x)
            side *= 2
    x = keras.layers.Activation(SWISH, name="out_act")(_norm(x, groups, "out_norm"))
    eps = keras.layers.Conv2D(
        image_channels, 3, padding="same", kernel_initializer="zeros", dtype="float32", name="eps"
    )(x)
    return keras.Model(inputs, eps, name=name)
