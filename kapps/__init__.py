"""kapps: Keras 3 functional-API builders of the deep-learning classics.

>>> import kapps
>>> model = kapps.create_model("lenet5", input_shape=(32, 32, 1), num_classes=10)
"""

from kapps import (  # noqa: F401  (registers the builders)
    classification,
    detection,
    generation,
    retrieval,
    segmentation,
    text,
)
from kapps.errors import ConfigError, KappsError
from kapps.features import feature_extractor, feature_layers
from kapps.flops import count_flops
from kapps.registry import create_model, get_entry, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "KappsError",
    "count_flops",
    "create_model",
    "feature_extractor",
    "feature_layers",
    "get_entry",
    "list_models",
    "register_model",
]
