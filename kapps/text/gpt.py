"""GPT: a decoder-only transformer language model (Radford et al., 2018 and 2019).

Token and learned position embeddings, pre-LayerNorm decoder blocks with
causal self-attention and a GELU MLP, a final LayerNorm, and logits from the
transposed token embedding (weight tying, as GPT-2 does; `tie_weights=False`
adds a separate output matrix). Sizes from minGPT's nano/micro/mini up to
GPT-2 small and medium.

At the GPT-2 small configuration (vocabulary 50,257, 1,024 positions, 12
layers, 12 heads, width 768) the model has 124,439,808 parameters, the same
as keras-hub's `GPT2Backbone` with those hyper-parameters (tested).

The functional graph is the uncached forward used for training. Generation
uses `call_with_cache`: the same layers, fed one new token at a time, with each
block's keys and values kept in a cache of shape
(batch, layers, 2, length, heads, head_dim). The two give the same logits
(tested).
"""

import keras
from keras import ops

from kapps.layers.transformer import GPT_INIT, PositionEmbedding, TransformerBlock
from kapps.registry import register_model, variant_arguments

VARIANTS = {  # minGPT's small sizes, and GPT-2's (Radford et al. 2019, Table 2)
    "gpt_nano": {"num_layers": 3, "num_heads": 3, "hidden_dim": 48, "max_length": 256},
    "gpt_micro": {"num_layers": 4, "num_heads": 4, "hidden_dim": 128, "max_length": 256},
    "gpt_mini": {"num_layers": 6, "num_heads": 6, "hidden_dim": 192, "max_length": 256},
    "gpt2_small": {"num_layers": 12, "num_heads": 12, "hidden_dim": 768, "max_length": 1024},
    "gpt2_medium": {"num_layers": 24, "num_heads": 16, "hidden_dim": 1024, "max_length": 1024},
}
LN_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="kapps")
class GPT(keras.Model):
    """Decoder-only transformer; a functional graph with a cached forward for generation.

    Args:
        vocab_size: number of token ids.
        num_layers, num_heads, hidden_dim, intermediate_dim: the block sizes.
        max_length: the context length (number of learned positions).
        dropout: dropout on embeddings, attention output and MLP output.
        tie_weights: logits from the transposed token embedding.
    """

    def __init__(
        self,
        vocab_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        max_length,
        dropout=0.0,
        tie_weights=True,
        **kwargs,
    ):
        token_ids = keras.Input((None,), dtype="int32", name="token_ids")
        embedding = keras.layers.ReversibleEmbedding(
            vocab_size,
            hidden_dim,
            tie_weights=tie_weights,
            embeddings_initializer=GPT_INIT,
            reverse_dtype="float32",
            name="token_embedding",
        )
        x = embedding(token_ids)
        positions = PositionEmbedding(max_length, name="position_embedding")(x)
        x = keras.layers.Add(name="embeddings_add")([x, positions])
        x = keras.layers.Dropout(dropout, name="embeddings_dropout")(x)
        for i in range(num_layers):
            x = TransformerBlock(
                num_heads,
                intermediate_dim,
                dropout,
                LN_EPSILON,
                causal=True,
                activation="gelu_tanh",
                kernel_initializer=GPT_INIT,
                name=f"block_{i}",
            )(x)
        x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="final_norm")(x)
        logits = embedding(x, reverse=True)
        super().__init__(inputs=token_ids, outputs=logits, **kwargs)
        self.vocab_size = vocab_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.max_length = max_length
        self.dropout = dropout
        self.tie_weights = tie_weights

    # Generation ---------------------------------------------------------------
    def build_cache(self, token_ids, padding_mask):
        """Run the padded prompts once and keep every block's keys and values.

        Returns `(cache, hidden_states, start)`: generation starts at `start`,
        the length of the shortest prompt.
        """
        batch, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        head_dim = self.hidden_dim // self.num_heads
        shape = (batch, self.num_layers, 2, length, self.num_heads, head_dim)
        cache = ops.zeros(shape, dtype=self.compute_dtype)
        _, hidden, cache = self.call_with_cache(token_ids, cache, 0)
        start = ops.min(ops.sum(ops.cast(padding_mask, "int32"), axis=1))
        return cache, hidden, start

    def call_with_cache(self, token_ids, cache, index):
        """Logits and hidden states of `token_ids` placed at positions `index, …`.

        The tokens' keys and values are written into `cache`; the queries attend
        to every cached position up to their own. Returns `(logits, hidden, cache)`.
        """
        embedding = self.get_layer("token_embedding")
        x = embedding(token_ids)
        x = x + self.get_layer("position_embedding")(x, start=index)
        caches = []
        for i in range(self.num_layers):
            x, layer_cache = self.get_layer(f"block_{i}")(x, cache=cache[:, i], index=index)
            caches.append(layer_cache)
        hidden = self.get_layer("final_norm")(x)
        return embedding(hidden, reverse=True), hidden, ops.stack(caches, axis=1)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "vocab_size": self.vocab_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "max_length": self.max_length,
            "dropout": self.dropout,
            "tie_weights": self.tie_weights,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register_model(
    task="text",
    variants={name: {"variant": name} for name in VARIANTS},
    test_kwargs={
        "vocab_size": 23,
        "max_length": 16,
        "num_layers": 2,
        "hidden_dim": 16,
        "num_heads": 2,
    },
)
def gpt(vocab_size=50257, *, variant="gpt_nano", max_length=None, name=None, **overrides):
    """Build a GPT: a row of `VARIANTS` with any `GPT` argument overriding it.

    Args:
        vocab_size: number of token ids.
        variant: `gpt_nano`, `gpt_micro`, `gpt_mini`, `gpt2_small` or `gpt2_medium`.
        max_length: context length; None: the variant's (256, GPT-2: 1,024).
        name: model name; None: the variant.
        **overrides: `num_layers`, `num_heads`, `hidden_dim`, `intermediate_dim`
            (default 4 × hidden_dim), `dropout` (GPT-2: 0.1), `tie_weights`.

    Example:
    >>> model = gpt(65, variant="gpt_nano", max_length=32)
    >>> model.output_shape
    (None, None, 65)
    """
    args = variant_arguments(VARIANTS, variant, {"max_length": max_length, **overrides}, GPT)
    args.setdefault("intermediate_dim", 4 * args["hidden_dim"])
    if args["hidden_dim"] % args["num_heads"]:
        raise ValueError(
            f"hidden_dim {args['hidden_dim']} is not divisible by num_heads {args['num_heads']}"
        )
    return GPT(vocab_size, **args, name=name or variant)
