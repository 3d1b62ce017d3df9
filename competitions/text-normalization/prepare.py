"""Generate the Text Normalization Challenge's files offline (`pipelines.synthetic.textnorm`:
sentences of Python's own help text with Kaggle's 16 token classes, normalised by rules)."""

from pipelines.synthetic.textnorm import generate, prepare

__all__ = ["generate", "prepare"]
