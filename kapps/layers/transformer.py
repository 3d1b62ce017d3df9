"""The pre-LayerNorm transformer block, and learned positions. Serializable, `keras.ops` only.

One block serves every transformer in kapps: ViT's and Segmenter's encoder
(Dosovitskiy et al. 2021, eq. 2–3), GPT's decoder (Radford et al. 2019: causal,
with a key/value cache for generation) and CLIP's text tower (Radford et al.
2021: a padding mask). Its parameters are those of `MultiHeadAttention` plus
a two-layer MLP: q, k, v and output projections with biases, so parameter
counts equal the papers' and their reference implementations'.
"""

import keras
from keras import ops

GPT_INIT = keras.initializers.RandomNormal(stddev=0.02)  # GPT-2's and CLIP's initialisation
ACTIVATIONS = {
    "gelu": lambda x: keras.activations.gelu(x, approximate=False),
    "gelu_tanh": lambda x: keras.activations.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * ops.sigmoid(1.702 * x),
}


@keras.saving.register_keras_serializable(package="kapps")
class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embeddings for positions `start, start + 1, …`.

    Takes the token embeddings (batch, length, dim) and returns the position
    embeddings to add to them; `start` is the first position (non-zero when a
    cached decoder feeds one token at a time).
    """

    def __init__(self, max_length, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            shape=(self.max_length, input_shape[-1]), initializer=GPT_INIT, name="embeddings"
        )

    def call(self, inputs, start=0):
        length = ops.shape(inputs)[1]
        embeddings = ops.convert_to_tensor(self.embeddings)
        table = ops.slice(embeddings, (start, 0), (length, ops.shape(embeddings)[1]))
        return ops.cast(table[None], self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (1, *input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}


@keras.saving.register_keras_serializable(package="kapps")
class TransformerBlock(keras.layers.Layer):
    """Pre-LayerNorm block: x + attention(LN(x)), then x + MLP(LN(x)).

    Args:
        num_heads: attention heads; the width must divide by it.
        intermediate_dim: the MLP's hidden width (4 × width in every paper here).
        dropout: on the attention and MLP outputs before each residual sum.
        epsilon: LayerNormalization's (ViT 1e-6, GPT-2 and CLIP 1e-5).
        causal: a token attends only to itself and earlier ones (a decoder).
        activation: the MLP's, `"gelu"` (exact), `"gelu_tanh"` (GPT-2's) or
            `"quick_gelu"` (CLIP's: x·sigmoid(1.702x)).
        kernel_initializer: of the projections (GPT-2 and CLIP: N(0, 0.02)).

    Call: `block(x, padding_mask=None)`; `padding_mask` (batch, length), 1 on
    real tokens, keeps padded keys out of attention. Called with `cache`
    (batch, 2, cache_length, heads, head_dim) and `index`, a causal block
    writes the new keys and values at positions `index, …`, lets the queries
    attend to every cached position up to their own, and returns
    `(outputs, cache)`.

    Example:
    >>> block = TransformerBlock(num_heads=2, intermediate_dim=32, causal=True)
    >>> tuple(block(keras.ops.zeros((1, 5, 8))).shape)
    (1, 5, 8)
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        dropout=0.0,
        epsilon=1e-5,
        causal=False,
        activation="gelu",
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.epsilon = epsilon
        self.causal = causal
        self.activation = activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(f"width {dim} is not divisible by {self.num_heads} heads")
        self.head_dim = dim // self.num_heads
        dense = {"kernel_initializer": self.kernel_initializer, "dtype": self.dtype_policy}
        norm = {"epsilon": self.epsilon, "dtype": self.dtype_policy}
        self.ln1 = keras.layers.LayerNormalization(name="ln1", **norm)
        self.qkv = keras.layers.Dense(3 * dim, name="qkv", **dense)
        self.proj = keras.layers.Dense(dim, name="proj", **dense)
        self.ln2 = keras.layers.LayerNormalization(name="ln2", **norm)
        self.fc = keras.layers.Dense(self.intermediate_dim, name="fc", **dense)
        self.out = keras.layers.Dense(dim, name="out", **dense)
        self.drop = keras.layers.Dropout(self.dropout)
        shape = tuple(input_shape)
        for layer in (self.ln1, self.qkv, self.proj, self.ln2, self.fc):
            layer.build(shape)
        self.out.build(shape[:-1] + (self.intermediate_dim,))

    def _attend(self, x, padding_mask, cache, index, training):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (batch, length, 3, self.num_heads, self.head_dim))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        mask = None
        if cache is not None:
            zero = ops.zeros((), "int32")
            k = ops.slice_update(cache[:, 0], (zero, index, zero, zero), k)
            v = ops.slice_update(cache[:, 1], (zero, index, zero, zero), v)
            cache = ops.stack((k, v), axis=1)
            keys = ops.arange(ops.shape(k)[1])[None, :]
            queries = (index + ops.arange(length))[:, None]
            mask = (keys <= queries)[None, None]  # (1, 1, length, cache_length)
        if padding_mask is not None:  # (batch, 1, 1, keys): no query attends to padding
            keys_real = ops.cast(padding_mask, "bool")[:, None, None, :]
            mask = keys_real if mask is None else ops.logical_and(mask, keys_real)
        causal = self.causal and cache is None
        y = ops.dot_product_attention(q, k, v, mask=mask, is_causal=causal)
        y = ops.reshape(y, (batch, length, self.num_heads * self.head_dim))
        return self.drop(self.proj(y), training=training), cache

    def call(self, x, padding_mask=None, cache=None, index=0, training=None):
        y, cache = self._attend(self.ln1(x), padding_mask, cache, index, training)
        x = x + y
        y = ACTIVATIONS[self.activation](self.fc(self.ln2(x)))
        x = x + self.drop(self.out(y), training=training)
        return x if cache is None else (x, cache)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "epsilon": self.epsilon,
            "causal": self.causal,
            "activation": self.activation,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
