"""Text models: the GPT language model with a key/value cache, the char-RNN, and the
encoder–decoder Transformer for sequence to sequence.

Sampling and decoding live in `pipelines.generate` (keras-hub's samplers,
compiled per backend).
"""

from kapps.text import char_rnn, gpt, transformer  # noqa: F401  (registers the builders)
from kapps.text.char_rnn import CharRNN
from kapps.text.gpt import GPT
from kapps.text.transformer import Transformer

__all__ = ["GPT", "CharRNN", "Transformer"]
