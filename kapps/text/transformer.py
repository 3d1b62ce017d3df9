"""The Transformer: an encoder–decoder for sequence to sequence (Vaswani et al. 2017).

"Attention is all you need", section 3 and Table 3: token embeddings scaled
by √d_model plus the fixed sinusoidal positions, dropout on their sum; N
encoder blocks (self-attention, then a ReLU MLP) and N decoder blocks (causal
self-attention, cross-attention to the encoder's outputs, the MLP), each
sublayer wrapped as LayerNorm(x + Dropout(sublayer(x))) — post-LayerNorm —,
and logits from the transposed target embedding. The blocks are kapps'
`TransformerBlock` with `normalize_first=False` (and `cross_attention=True` in
the decoder), the one block every transformer in kapps shares.

`share_embeddings=True` (the paper's WMT English–German set-up, one BPE
vocabulary of about 37,000 tokens) uses one matrix for the source embedding,
the target embedding and the output projection. At that vocabulary the base
model has 63,082,496 parameters and the big one 214,245,376 (the paper's
Table 3: 65 M and 213 M; its exact vocabulary is not given). Token id 0 is
padding: padded source positions are kept out of both attentions.

The functional graph takes `{"encoder_token_ids", "decoder_token_ids"}` and
gives logits for every decoder position (teacher forcing). Generation uses
`build_cache` / `call_with_cache`: the encoder runs once, each decoder block's
projected keys and values of the encoder outputs are kept, and the decoder is
fed one token at a time with a self-attention cache; the logits equal the
uncached forward's (tested).
"""

import math

import keras
from keras import ops

from kapps.layers.transformer import SinusoidalPositions, TransformerBlock
from kapps.registry import register_model, variant_arguments

VARIANTS = {  # Table 3's base and big (N, d_model, h, d_ff, P_drop), and two for CPUs
    "transformer_base": {"num_layers": 6, "hidden_dim": 512, "num_heads": 8, "dropout": 0.1},
    "transformer_big": {"num_layers": 6, "hidden_dim": 1024, "num_heads": 16, "dropout": 0.3},
    "transformer_small": {"num_layers": 3, "hidden_dim": 256, "num_heads": 4, "dropout": 0.1},
    "transformer_tiny": {"num_layers": 2, "hidden_dim": 64, "num_heads": 4, "dropout": 0.1},
}
PAPER_VOCABULARY = 37000  # the shared English–German BPE vocabulary of section 5.1
LN_EPSILON = 1e-6  # the paper gives none; tensor2tensor's


@keras.saving.register_keras_serializable(package="kapps")
class Transformer(keras.Model):
    """Encoder–decoder transformer; a functional graph with a cached decoder for generation.

    Args:
        vocab_size: target token ids (and source ids with `share_embeddings`).
        num_layers: encoder blocks, and as many decoder blocks.
        hidden_dim, num_heads, intermediate_dim: d_model, h, d_ff.
        dropout: on the embeddings' sum and every sublayer's output.
        share_embeddings: one matrix for source, target and output.
        source_vocab_size: source token ids without `share_embeddings`
            (None: `vocab_size`).
        tie_weights: logits from the transposed target embedding (always
            with `share_embeddings`).
    """

    def __init__(
        self,
        vocab_size,
        num_layers,
        hidden_dim,
        num_heads,
        intermediate_dim,
        dropout=0.1,
        share_embeddings=True,
        source_vocab_size=None,
        tie_weights=True,
        **kwargs,
    ):
        source_ids = keras.Input((None,), dtype="int32", name="encoder_token_ids")
        target_ids = keras.Input((None,), dtype="int32", name="decoder_token_ids")
        target_embedding = keras.layers.ReversibleEmbedding(
            vocab_size,
            hidden_dim,
            tie_weights=tie_weights or share_embeddings,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=hidden_dim**-0.5),
            reverse_dtype="float32",
            name="token_embedding" if share_embeddings else "target_embedding",
        )
        source_embedding = target_embedding
        if not share_embeddings:
            source_embedding = keras.layers.Embedding(
                source_vocab_size or vocab_size,
                hidden_dim,
                embeddings_initializer=keras.initializers.RandomNormal(stddev=hidden_dim**-0.5),
                name="source_embedding",
            )
        block = {
            "num_heads": num_heads,
            "intermediate_dim": intermediate_dim,
            "dropout": dropout,
            "epsilon": LN_EPSILON,
            "activation": "relu",
            "normalize_first": False,
        }
        source_mask = ops.not_equal(source_ids, 0)
        x = self._embed(source_embedding, source_ids, hidden_dim, dropout, "encoder")
        for i in range(num_layers):
            x = TransformerBlock(**block, name=f"encoder_{i}")(x, padding_mask=source_mask)
        y = self._embed(target_embedding, target_ids, hidden_dim, dropout, "decoder")
        for i in range(num_layers):
            y = TransformerBlock(**block, causal=True, cross_attention=True, name=f"decoder_{i}")(
                y, context=x, context_mask=source_mask
            )
        logits = target_embedding(y, reverse=True)
        super().__init__(
            inputs={"encoder_token_ids": source_ids, "decoder_token_ids": target_ids},
            outputs=logits,
            **kwargs,
        )
        self.vocab_size = vocab_size
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.share_embeddings = share_embeddings
        self.source_vocab_size = source_vocab_size
        self.tie_weights = tie_weights

    @staticmethod
    def _embed(embedding, token_ids, hidden_dim, dropout, side, start=0):
        """Scaled token embeddings plus positions (section 3.4–3.5), then dropout."""
        x = embedding(token_ids) * math.sqrt(hidden_dim)
        x = x + SinusoidalPositions(name=f"{side}_positions")(x, start=start)
        return keras.layers.Dropout(dropout, name=f"{side}_dropout")(x)

    def _embedding(self, side):
        if self.share_embeddings:
            return self.get_layer("token_embedding")
        return self.get_layer(f"{side}_embedding")

    # Generation ---------------------------------------------------------------
    def encode(self, source_ids):
        """`(encoder outputs, source padding mask)` of a batch of source ids."""
        source_mask = ops.not_equal(source_ids, 0)
        x = self._embedding("source")(source_ids) * math.sqrt(self.hidden_dim)
        x = x + self.get_layer("encoder_positions")(x)
        for i in range(self.num_layers):
            x = self.get_layer(f"encoder_{i}")(x, padding_mask=source_mask)
        return x, source_mask

    def cross_attention(self, source_ids, target_ids, layer=-1):
        """Decoder block `layer`'s cross-attention weights, (batch, heads, target_length,
        source_length): where each target position reads the source."""
        layer = range(self.num_layers)[layer]
        encoded, source_mask = self.encode(source_ids)
        x = self._embedding("target")(target_ids) * math.sqrt(self.hidden_dim)
        x = x + self.get_layer("decoder_positions")(x)
        for i in range(layer):
            x = self.get_layer(f"decoder_{i}")(x, context=encoded, context_mask=source_mask)
        block = self.get_layer(f"decoder_{layer}")
        return block.cross_attention_weights(x, encoded, source_mask)

    def build_cache(self, source_ids, target_ids, target_mask):
        """Encode the sources, keep each decoder block's keys and values of them, and run
        the target prompts (the start token, or a forced prefix) once.

        Returns `(cache, hidden_states, start)`: a dict of the self-attention cache
        (batch, layers, 2, target_length, heads, head_dim), the cross-attention keys
        and values (batch, layers, 2, source_length, heads, head_dim) and the source
        mask; generation starts at `start`, the length of the shortest prompt.
        """
        encoded, source_mask = self.encode(source_ids)
        cross = [self.get_layer(f"decoder_{i}").context_kv(encoded) for i in range(self.num_layers)]
        batch, length = ops.shape(target_ids)[0], ops.shape(target_ids)[1]
        head_dim = self.hidden_dim // self.num_heads
        shape = (batch, self.num_layers, 2, length, self.num_heads, head_dim)
        cache = {
            "self": ops.zeros(shape, dtype=self.compute_dtype),
            "cross": ops.stack(cross, axis=1),
            "source_mask": ops.cast(source_mask, "int32"),
        }
        _, hidden, cache = self.call_with_cache(target_ids, cache, 0)
        start = ops.min(ops.sum(ops.cast(target_mask, "int32"), axis=1))
        return cache, hidden, start

    def call_with_cache(self, token_ids, cache, index):
        """Logits and hidden states of target `token_ids` placed at positions `index, …`;
        returns `(logits, hidden, cache)` with their keys and values written in."""
        x = self._embedding("target")(token_ids) * math.sqrt(self.hidden_dim)
        x = x + self.get_layer("decoder_positions")(x, start=index)
        caches = []
        for i in range(self.num_layers):
            x, layer_cache = self.get_layer(f"decoder_{i}")(
                x,
                cache=cache["self"][:, i],
                index=index,
                context_kv=cache["cross"][:, i],
                context_mask=cache["source_mask"],
            )
            caches.append(layer_cache)
        logits = self._embedding("target")(x, reverse=True)
        return logits, x, {**cache, "self": ops.stack(caches, axis=1)}

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "vocab_size": self.vocab_size,
            "num_layers": self.num_layers,
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "share_embeddings": self.share_embeddings,
            "source_vocab_size": self.source_vocab_size,
            "tie_weights": self.tie_weights,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register_model(
    task="seq2seq",
    variants={name: {"variant": name} for name in VARIANTS},
    test_kwargs={"vocab_size": 23, "num_layers": 2, "hidden_dim": 16, "num_heads": 2},
)
def transformer(vocab_size=PAPER_VOCABULARY, *, variant="transformer_base", name=None, **overrides):
    """Build an encoder–decoder Transformer: a row of `VARIANTS` with any `Transformer`
    argument overriding it.

    Args:
        vocab_size: token ids (shared by source and target unless
            `share_embeddings=False`); the paper's 37,000 by default.
        variant: `transformer_base`, `transformer_big`, `transformer_small` or
            `transformer_tiny`.
        name: model name; None: the variant.
        **overrides: `num_layers`, `hidden_dim`, `num_heads`, `intermediate_dim`
            (default 4 × hidden_dim, the paper's 2,048 and 4,096), `dropout`,
            `share_embeddings`, `source_vocab_size`, `tie_weights`.

    Example:
    >>> model = transformer(40, variant="transformer_tiny")
    >>> model.output_shape
    (None, None, 40)
    """
    args = variant_arguments(VARIANTS, variant, overrides, Transformer)
    args.setdefault("intermediate_dim", 4 * args["hidden_dim"])
    if args["hidden_dim"] % args["num_heads"]:
        raise ValueError(
            f"hidden_dim {args['hidden_dim']} is not divisible by num_heads {args['num_heads']}"
        )
    return Transformer(vocab_size, **args, name=name or variant)
