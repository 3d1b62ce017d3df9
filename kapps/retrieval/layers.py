"""Pooling and contrastive-head layers of the dual encoder. `keras.ops` only."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kapps")
class MaskedPooling(keras.layers.Layer):
    """One vector per sequence: the last real token's (`"last"`, CLIP's end-of-text
    token) or the mean over real tokens (`"mean"`)."""

    def __init__(self, mode="last", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("last", "mean"):
            raise ValueError(f"text pooling must be 'last' or 'mean', got {mode!r}")
        self.mode = mode

    def call(self, x, padding_mask):
        mask = ops.cast(padding_mask, x.dtype)
        if self.mode == "mean":
            total = ops.sum(x * mask[..., None], axis=1)
            return total / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
        last = ops.maximum(ops.cast(ops.sum(mask, axis=1), "int32") - 1, 0)
        onehot = ops.one_hot(last, ops.shape(x)[1], dtype=x.dtype)
        return ops.einsum("bt,btd->bd", onehot, x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="kapps")
class ContrastiveLogits(keras.layers.Layer):
    """Scaled cosine similarities of every image with every text: (images, texts).

    The temperature is learnt as a log scale, initialised to 1/0.07 and clipped
    at 100 as in the CLIP paper (section 2.5), so training cannot blow it up.
    The inputs are L2-normalised embeddings.
    """

    def __init__(self, initial_scale=1 / 0.07, max_scale=100.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_scale = initial_scale
        self.max_scale = max_scale

    def build(self, input_shape):
        self.log_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(math.log(self.initial_scale)),
            name="log_scale",
        )

    def scale(self):
        return ops.exp(ops.minimum(self.log_scale, math.log(self.max_scale)))

    def call(self, inputs):
        images, texts = inputs
        scale = ops.cast(self.scale(), images.dtype)
        return scale * ops.matmul(images, ops.transpose(texts))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[1][0])

    def get_config(self):
        return {
            **super().get_config(),
            "initial_scale": self.initial_scale,
            "max_scale": self.max_scale,
        }
