"""Text generation: GPT with a key/value cache, the char-RNN, and sampling."""

from kapps.text import char_rnn, gpt  # noqa: F401  (registers the builders)
from kapps.text.char_rnn import CharRNN
from kapps.text.generate import SAMPLERS, generate, make_sampler
from kapps.text.gpt import GPT

__all__ = ["GPT", "SAMPLERS", "CharRNN", "generate", "make_sampler"]
