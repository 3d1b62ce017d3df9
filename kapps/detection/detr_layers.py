"""DETR's transformer layers (Carion et al., 2020, section A.3): post-norm encoder and
decoder layers with the position encodings added to queries and keys at every
layer, fixed 2-D sine position encodings, and a learnt constant (the object
queries). Serializable, `keras.ops` only."""

import math

import keras
import numpy as np
from keras import ops


def sine_position_encoding(height, width, dim, temperature=10000.0):
    """DETR's fixed 2-D sine encodings (H·W, dim): half for y, half for x, normalised to 2π."""
    half = dim // 2
    scale = 2 * math.pi
    ys = (np.arange(1, height + 1, dtype="float32") / (height + 1e-6) * scale)[:, None]
    xs = (np.arange(1, width + 1, dtype="float32") / (width + 1e-6) * scale)[:, None]
    freqs = temperature ** (2 * (np.arange(half) // 2) / half)

    def encode(positions):
        angles = positions / freqs
        out = np.empty_like(angles)
        out[:, 0::2], out[:, 1::2] = np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])
        return out

    pos_y, pos_x = encode(ys), encode(xs)
    grid = np.concatenate(
        [np.repeat(pos_y[:, None], width, 1), np.repeat(pos_x[None], height, 0)], axis=-1
    )
    return grid.reshape(height * width, 2 * half).astype("float32")


@keras.saving.register_keras_serializable(package="kapps")
class DetrEncoderLayer(keras.layers.Layer):
    """Post-norm self-attention + FFN; positions added to queries and keys."""

    def __init__(self, heads, ffn_dim, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.ffn_dim, self.dropout = heads, ffn_dim, dropout

    def build(self, input_shape):
        dim = input_shape[-1]
        self.attention = keras.layers.MultiHeadAttention(
            self.heads, dim // self.heads, dropout=self.dropout, name="self_attention"
        )
        self.attention.build(input_shape, input_shape, input_shape)
        self.ffn_in = keras.layers.Dense(self.ffn_dim, activation="relu", name="ffn_in")
        self.ffn_in.build(input_shape)
        self.ffn_out = keras.layers.Dense(dim, name="ffn_out")
        self.ffn_out.build((*input_shape[:-1], self.ffn_dim))
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm1")
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm2")
        self.norm1.build(input_shape)
        self.norm2.build(input_shape)
        self.drop = keras.layers.Dropout(self.dropout)

    def call(self, x, position, training=None):
        keyed = x + position
        attended = self.attention(keyed, x, keyed, training=training)
        x = self.norm1(x + self.drop(attended, training=training))
        hidden = self.ffn_out(self.drop(self.ffn_in(x), training=training))
        return self.norm2(x + self.drop(hidden, training=training))

    def get_config(self):
        return {
            **super().get_config(),
            "heads": self.heads,
            "ffn_dim": self.ffn_dim,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="kapps")
class DetrDecoderLayer(DetrEncoderLayer):
    """Self-attention among the queries, cross-attention to the encoded image, FFN.

    The first layer (`first=True`) starts from an all-zero target, as DETR does.
    """

    def __init__(self, heads, ffn_dim, dropout=0.1, first=False, **kwargs):
        super().__init__(heads, ffn_dim, dropout, **kwargs)
        self.first = first

    def build(self, input_shape):
        super().build(input_shape)
        self.cross = keras.layers.MultiHeadAttention(
            self.heads, input_shape[-1] // self.heads, dropout=self.dropout, name="cross_attention"
        )
        self.cross.build(input_shape, input_shape, input_shape)
        self.norm3 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm3")
        self.norm3.build(input_shape)

    def call(self, target, memory, query_position, memory_position, training=None):
        if self.first:
            target = ops.zeros_like(query_position)
        keyed = target + query_position
        attended = self.attention(keyed, target, keyed, training=training)
        target = self.norm1(target + self.drop(attended, training=training))
        attended = self.cross(
            target + query_position, memory, memory + memory_position, training=training
        )
        target = self.norm2(target + self.drop(attended, training=training))
        hidden = self.ffn_out(self.drop(self.ffn_in(target), training=training))
        return self.norm3(target + self.drop(hidden, training=training))

    def get_config(self):
        return {**super().get_config(), "first": self.first}


@keras.saving.register_keras_serializable(package="kapps")
class Constant(keras.layers.Layer):
    """A fixed or learnt (rows, dim) table broadcast over the batch of `reference`."""

    def __init__(self, rows, dim, values=None, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.dim = rows, dim
        self.fixed = values is not None
        self.table = self.add_weight(
            shape=(rows, dim),
            # Learnt rows start as N(0, 1), as torch's nn.Embedding (DETR's object queries):
            # Keras' "random_normal" (σ = 0.05) made every query almost the same, so in
            # inference mode all of them predicted one box (only dropout told them apart).
            initializer=(
                keras.initializers.Constant(values)
                if self.fixed
                else keras.initializers.RandomNormal(stddev=1.0)
            ),
            trainable=not self.fixed,
            name="table",
        )

    def call(self, reference):
        batch = ops.shape(reference)[0]
        return ops.broadcast_to(
            ops.cast(self.table, reference.dtype)[None], (batch, self.rows, self.dim)
        )

    def get_config(self):
        config = {**super().get_config(), "rows": self.rows, "dim": self.dim}
        if self.fixed:
            config["values"] = ops.convert_to_numpy(self.table).tolist()
        return config
