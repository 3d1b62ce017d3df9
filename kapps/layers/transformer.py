"""The transformer block, learned and sinusoidal positions. Serializable, `keras.ops` only.

One block serves every transformer in kapps: ViT's and Segmenter's encoder
(Dosovitskiy et al. 2021, eq. 2–3), GPT's decoder (Radford et al. 2019: causal,
with a key/value cache for generation), CLIP's text tower (Radford et al.
2021: a padding mask), and the encoder and decoder of the original
Transformer (Vaswani et al. 2017: post-LayerNorm, and cross-attention in the
decoder). Its parameters are those of `MultiHeadAttention` plus a two-layer
MLP: q, k, v and output projections with biases, so parameter counts equal the
papers' and their reference implementations'.
"""

import keras
from keras import ops

GPT_INIT = keras.initializers.RandomNormal(stddev=0.02)  # GPT-2's and CLIP's initialisation
ACTIVATIONS = {
    "gelu": lambda x: keras.activations.gelu(x, approximate=False),
    "gelu_tanh": lambda x: keras.activations.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * ops.sigmoid(1.702 * x),
    "relu": keras.activations.relu,
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
class SinusoidalPositions(keras.layers.Layer):
    """The fixed positions of Vaswani et al. 2017, section 3.5, for positions `start, …`:
    PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i + 1) = cos(pos / 10000^(2i/d)).

    Takes the token embeddings (batch, length, d) and returns the (1, length, d)
    table to add to them. No weights: any length works.
    """

    def call(self, inputs, start=0):
        dim = inputs.shape[-1]
        positions = ops.cast(start + ops.arange(ops.shape(inputs)[1]), "float32")[:, None]
        pairs = ops.cast(ops.arange(dim) // 2 * 2, "float32")[None, :]  # 2i, twice each
        angles = positions / ops.power(10000.0, pairs / dim)
        table = ops.where(ops.arange(dim)[None, :] % 2 == 0, ops.sin(angles), ops.cos(angles))
        return ops.cast(table[None], self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (1, *input_shape[1:])


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
        normalize_first: pre-LayerNorm, x + f(LN(x)) (GPT-2, ViT, CLIP); False:
            post-LayerNorm, LN(x + f(x)) (the original Transformer).
        cross_attention: add a sublayer between self-attention and the MLP whose
            queries attend to a `context` (a Transformer decoder's encoder outputs).

    Call: `block(x, padding_mask=None, context=None, context_mask=None)`;
    `padding_mask` (batch, length), 1 on real tokens, keeps padded keys out of
    self-attention; `context_mask` (batch, context_length) keeps padded context
    positions out of cross-attention. Called with `cache`
    (batch, 2, cache_length, heads, head_dim) and `index`, a causal block
    writes the new keys and values at positions `index, …`, lets the queries
    attend to every cached position up to their own, and returns
    `(outputs, cache)`; `context_kv=block.context_kv(context)` instead of
    `context` reuses the context's projected keys and values at every step.

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
        normalize_first=True,
        cross_attention=False,
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
        self.normalize_first = normalize_first
        self.cross_attention = cross_attention

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
        if self.cross_attention:  # the context has the block's width
            self.ln_cross = keras.layers.LayerNormalization(name="ln_cross", **norm)
            self.cross_q = keras.layers.Dense(dim, name="cross_q", **dense)
            self.cross_kv = keras.layers.Dense(2 * dim, name="cross_kv", **dense)
            self.cross_proj = keras.layers.Dense(dim, name="cross_proj", **dense)
            for layer in (self.ln_cross, self.cross_q, self.cross_kv, self.cross_proj):
                layer.build(shape)

    def _heads(self, x, parts):
        """(batch, length, parts · width) → (batch, length, parts, heads, head_dim)."""
        shape = (ops.shape(x)[0], ops.shape(x)[1], parts, self.num_heads, self.head_dim)
        return ops.reshape(x, shape)

    def _merge(self, y):
        batch, length = ops.shape(y)[0], ops.shape(y)[1]
        return ops.reshape(y, (batch, length, self.num_heads * self.head_dim))

    def _attend(self, x, padding_mask, cache, index, training):
        length = ops.shape(x)[1]
        qkv = self._heads(self.qkv(x), 3)
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
        return self.drop(self.proj(self._merge(y)), training=training), cache

    def context_kv(self, context):
        """The context's keys and values, (batch, 2, context_length, heads, head_dim)."""
        kv = self._heads(self.cross_kv(context), 2)
        return ops.transpose(kv, (0, 2, 1, 3, 4))

    def _cross(self, x, context_kv, context_mask, training):
        q = self._heads(self.cross_q(x), 1)[:, :, 0]
        mask = None
        if context_mask is not None:
            mask = ops.cast(context_mask, "bool")[:, None, None, :]
        y = ops.dot_product_attention(q, context_kv[:, 0], context_kv[:, 1], mask=mask)
        return self.drop(self.cross_proj(self._merge(y)), training=training)

    def cross_attention_weights(self, x, context, context_mask=None):
        """The weights (batch, heads, length, context_length) with which the block's
        cross-attention reads `context` for the block's input `x` (a causal decoder's)."""
        x = self._sublayer(x, self.ln1, lambda y: self._attend(y, None, None, 0, False)[0])
        q = self._heads(self.cross_q(self.ln_cross(x) if self.normalize_first else x), 1)
        k = self.context_kv(context)[:, 0]
        scores = ops.einsum("bqhd,bkhd->bhqk", q[:, :, 0], k) / ops.sqrt(float(self.head_dim))
        if context_mask is not None:
            real = ops.cast(context_mask, "bool")[:, None, None, :]
            scores = ops.where(real, scores, -1e9)
        return ops.softmax(scores, axis=-1)

    def _sublayer(self, x, norm, function):
        """x + f(LN(x)) pre-LayerNorm, LN(x + f(x)) post-LayerNorm."""
        if self.normalize_first:
            return x + function(norm(x))
        return norm(x + function(x))

    def call(
        self,
        x,
        padding_mask=None,
        cache=None,
        index=0,
        context=None,
        context_mask=None,
        context_kv=None,
        training=None,
    ):
        def attend(y):
            nonlocal cache
            y, cache = self._attend(y, padding_mask, cache, index, training)
            return y

        x = self._sublayer(x, self.ln1, attend)
        if self.cross_attention:
            if context_kv is None:
                context_kv = self.context_kv(context)
            x = self._sublayer(
                x, self.ln_cross, lambda y: self._cross(y, context_kv, context_mask, training)
            )
        x = self._sublayer(
            x,
            self.ln2,
            lambda y: self.drop(
                self.out(ACTIVATIONS[self.activation](self.fc(y))), training=training
            ),
        )
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
            "normalize_first": self.normalize_first,
            "cross_attention": self.cross_attention,
        }
