"""The char-RNN: a stacked LSTM or GRU language model (Karpathy, 2015; Graves, 2013).

Token embedding (a learned one-hot projection), `num_layers` recurrent layers
returning sequences, optional dropout between them, and a linear layer to
next-token logits. Karpathy's defaults: 2 layers of 128 units; we default to
256 units, as his Shakespeare samples used 512.

For generation the cache is the recurrent state, (batch, layers, states,
units) with 2 states per LSTM layer (h, c) and 1 per GRU layer; the prompt is
fed through the same cells one token at a time.
"""

import keras
from keras import ops

from kapps.registry import register_model

CELLS = {"lstm": (keras.layers.LSTM, 2), "gru": (keras.layers.GRU, 1)}


@keras.saving.register_keras_serializable(package="kapps")
class CharRNN(keras.Model):
    """Stacked recurrent language model with a state cache for generation."""

    max_length = None  # no context limit

    def __init__(
        self,
        vocab_size,
        cell="lstm",
        num_layers=2,
        units=256,
        embedding_dim=64,
        dropout=0.0,
        **kwargs,
    ):
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        layer_class = CELLS[cell][0]
        token_ids = keras.Input((None,), dtype="int32", name="token_ids")
        x = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")(token_ids)
        for i in range(num_layers):
            x = layer_class(units, return_sequences=True, name=f"rnn_{i}")(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
        logits = keras.layers.Dense(vocab_size, name="logits")(x)
        super().__init__(inputs=token_ids, outputs=logits, **kwargs)
        self.vocab_size = vocab_size
        self.cell = cell
        self.num_layers = num_layers
        self.units = units
        self.embedding_dim = embedding_dim
        self.dropout = dropout

    def build_cache(self, token_ids, padding_mask):
        """Zero states; generation then walks through the prompt from position 1."""
        batch = ops.shape(token_ids)[0]
        states = CELLS[self.cell][1]
        cache = ops.zeros((batch, self.num_layers, states, self.units), self.compute_dtype)
        return cache, None, 1

    def call_with_cache(self, token_ids, cache, index):
        """One step: `token_ids` (batch, 1) → `(logits, hidden, new states)`."""
        x = self.get_layer("embedding")(token_ids)[:, 0]
        states = []
        for i in range(self.num_layers):
            cell = self.get_layer(f"rnn_{i}").cell
            old = [cache[:, i, s] for s in range(cache.shape[2])]
            x, new = cell(x, old, training=False)
            states.append(ops.stack(new if isinstance(new, list | tuple) else [new], axis=1))
        logits = self.get_layer("logits")(x)
        return logits[:, None], x[:, None], ops.stack(states, axis=1)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "vocab_size": self.vocab_size,
            "cell": self.cell,
            "num_layers": self.num_layers,
            "units": self.units,
            "embedding_dim": self.embedding_dim,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register_model(
    task="text",
    variants={"char_rnn": {"cell": "lstm"}, "char_gru": {"cell": "gru"}},
    test_kwargs={"vocab_size": 23, "units": 16, "embedding_dim": 8},
)
def char_rnn(
    vocab_size=128,
    *,
    cell="lstm",
    num_layers=2,
    units=256,
    embedding_dim=64,
    dropout=0.0,
    name=None,
):
    """Build a char-RNN (`char_rnn`: LSTM, `char_gru`: GRU).

    Example:
    >>> model = char_rnn(65, units=32)
    >>> model.output_shape
    (None, None, 65)
    """
    return CharRNN(
        vocab_size,
        cell=cell,
        num_layers=num_layers,
        units=units,
        embedding_dim=embedding_dim,
        dropout=dropout,
        name=name or ("char_rnn" if cell == "lstm" else f"char_{cell}"),
    )
