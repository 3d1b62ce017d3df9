"""Text generation models: GPT with a key/value cache and the char-RNN.

Sampling lives in `pipelines.generate` (keras-hub's samplers, compiled per backend).
"""

from kapps.text import char_rnn, gpt  # noqa: F401  (registers the builders)
from kapps.text.char_rnn import CharRNN
from kapps.text.gpt import GPT

__all__ = ["GPT", "CharRNN"]
