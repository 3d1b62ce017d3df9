"""Decoder layers with a key/value cache. Serializable, `keras.ops` only."""

import keras
from keras import ops

INIT = keras.initializers.RandomNormal(stddev=0.02)  # GPT-2's initialisation


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
            shape=(self.max_length, input_shape[-1]), initializer=INIT, name="embeddings"
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
class DecoderBlock(keras.layers.Layer):
    """Pre-LayerNorm GPT block: x + attn(LN(x)), then x + MLP(LN(x)).

    Causal multi-head self-attention with biases on q/k/v/output and a GELU
    (tanh approximation) MLP, as in GPT-2. Called without `cache` it is the
    plain causal block. Called with `cache` (batch, 2, cache_length, heads,
    head_dim) and `index`, the new keys and values are written at positions
    `index, index + 1, …`, the queries attend to every cached position up to
    their own, and it returns `(outputs, cache)`.
    """

    def __init__(self, num_heads, intermediate_dim, dropout=0.0, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.epsilon = epsilon

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {self.num_heads} heads")
        self.head_dim = dim // self.num_heads
        dense = {"kernel_initializer": INIT, "dtype": self.dtype_policy}
        self.ln1 = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=self.dtype_policy, name="ln1"
        )
        self.qkv = keras.layers.Dense(3 * dim, name="qkv", **dense)
        self.proj = keras.layers.Dense(dim, name="proj", **dense)
        self.ln2 = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=self.dtype_policy, name="ln2"
        )
        self.fc = keras.layers.Dense(self.intermediate_dim, name="fc", **dense)
        self.out = keras.layers.Dense(dim, name="out", **dense)
        self.drop = keras.layers.Dropout(self.dropout)
        shape = tuple(input_shape)
        for layer, layer_shape in (
            (self.ln1, shape),
            (self.qkv, shape),
            (self.proj, shape),
            (self.ln2, shape),
            (self.fc, shape),
            (self.out, shape[:-1] + (self.intermediate_dim,)),
        ):
            layer.build(layer_shape)

    def _attend(self, x, cache, index, training):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (batch, length, 3, self.num_heads, self.head_dim))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if cache is None:
            y = ops.dot_product_attention(q, k, v, is_causal=True)
        else:
            zero = ops.zeros((), "int32")
            k = ops.slice_update(cache[:, 0], (zero, index, zero, zero), k)
            v = ops.slice_update(cache[:, 1], (zero, index, zero, zero), v)
            cache = ops.stack((k, v), axis=1)
            keys = ops.arange(ops.shape(k)[1])[None, :]
            queries = (index + ops.arange(length))[:, None]
            mask = (keys <= queries)[None, None]  # (1, 1, length, cache_length)
            y = ops.dot_product_attention(q, k, v, mask=mask)
        y = ops.reshape(y, (batch, length, self.num_heads * self.head_dim))
        return self.drop(self.proj(y), training=training), cache

    def call(self, x, cache=None, index=0, training=None):
        y, cache = self._attend(self.ln1(x), cache, index, training)
        x = x + y
        y = self.fc(self.ln2(x))
        y = self.out(keras.activations.gelu(y, approximate=True))
        x = x + self.drop(y, training=training)
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
        }
