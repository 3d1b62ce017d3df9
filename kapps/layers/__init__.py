"""Pieces the builders of several families share: serializable, `keras.ops` only.

`common`: the raw-pixel input and the head every backbone builder ends with;
`custom`: layers Keras lacks (local response normalisation, ViT's class
token, …); `transformer`: the pre-LayerNorm transformer block of ViT,
Segmenter, GPT and CLIP's text tower.
"""

from kapps.layers.custom import (
    ClassEmbeddings,
    ClassTokenPositionEmbedding,
    ImagePreprocessing,
    LocalResponseNormalization,
)
from kapps.layers.transformer import PositionEmbedding, TransformerBlock

__all__ = [
    "ClassEmbeddings",
    "ClassTokenPositionEmbedding",
    "ImagePreprocessing",
    "LocalResponseNormalization",
    "PositionEmbedding",
    "TransformerBlock",
]
