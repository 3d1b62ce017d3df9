"""Models from other libraries under kapps' contract: `keras.applications/<Name>`
and `keras_hub/<preset folder>`.

Both come back as functional models that take raw 0–255 pixels (the library's
own preprocessing is a layer inside), with `include_top`, `pooling` and a
logits head like kapps' builders. Nothing is downloaded: weights load only
from files on disk, otherwise the model starts from random weights or the
call fails with one clear error.
"""

import difflib
from pathlib import Path

import keras
import numpy as np

from kapps.errors import ConfigError, UnknownModelError
from kapps.layers import ImagePreprocessing
from kapps.layers.common import check_common_args, classifier, head

APPLICATIONS = "keras.applications/"
KERAS_HUB = "keras_hub/"


def _application(name):
    builders = [n for n in dir(keras.applications) if n[0].isupper()]
    if name not in builders:
        close = difflib.get_close_matches(name, builders, n=1)
        hint = f"; did you mean {APPLICATIONS}{close[0]}?" if close else ""
        raise UnknownModelError(f"keras.applications has no model {name!r}{hint}")
    return getattr(keras.applications, name)


def _preprocessing_mode(builder):
    """Which of Keras' preprocessing conventions the family expects, found by a probe."""
    module = __import__(builder.__module__, fromlist=["preprocess_input"])
    probe = np.array([[[[0.0, 127.5, 255.0]]]], dtype="float32")
    out = np.asarray(module.preprocess_input(probe.copy()))
    for mode in ImagePreprocessing.MODES:
        expected = ImagePreprocessing.numpy_reference(probe, mode)
        if np.allclose(out, expected, atol=1e-3):
            return mode
    raise ValueError(f"unrecognised preprocessing of {builder.__name__}")


def _weights_file(weights):
    if weights is None:
        return None
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(
            f"weights file not found: {weights} (nothing is downloaded; pass the path of a "
            "weights file on disk, or weights=None)"
        )
    return path


def keras_application(
    name,
    input_shape=(224, 224, 3),
    num_classes=1000,
    *,
    include_top=True,
    pooling=None,
    classifier_activation=None,
    weights=None,
    model_name=None,
):
    """A keras.applications model behind kapps' contract (raw pixels in, logits out).

    Args:
        name: the keras.applications function, e.g. "EfficientNetB0".
        weights: None, or the path of a Keras weights file on disk for the
            network without its top (`..._notop.h5`).
    """
    check_common_args(include_top, pooling, num_classes)
    builder = _application(name)
    weights_path = _weights_file(weights)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = ImagePreprocessing(_preprocessing_mode(builder), name="preprocess")(inputs)
    base = builder(include_top=False, weights=None, input_tensor=x)
    if weights_path:
        headless = keras.Model(inputs, base.output)
        headless.load_weights(weights_path, skip_mismatch=False)
    x = head(
        base.output,
        include_top=include_top,
        pooling=pooling,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
    )
    return keras.Model(inputs, x, name=model_name or name.lower())


def keras_hub_backbone(
    preset,
    input_shape=(224, 224, 3),
    num_classes=1000,
    *,
    include_top=True,
    pooling=None,
    classifier_activation=None,
    load_weights=True,
    model_name=None,
):
    """A keras-hub image backbone from a preset folder on disk, behind kapps' contract.

    The preset's image converter (its rescaling) runs inside the model when the
    preset has one; otherwise pixels are scaled to [0, 1].
    """
    check_common_args(include_top, pooling, num_classes)
    if not Path(preset).is_dir():
        raise ConfigError(
            f"keras-hub preset {preset!r} is not a folder on disk; download it once "
            "(e.g. with keras_hub's save_to_preset on a connected machine) and pass its path"
        )
    try:
        import keras_hub
    except ImportError:
        raise ConfigError("keras_hub/ models need keras-hub: pip install 'kapps[hub]'") from None
    backbone = keras_hub.models.Backbone.from_preset(preset, load_weights=load_weights)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    try:
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
        x = keras.layers.Rescaling(converter.scale, offset=converter.offset, name="rescale")(inputs)
    except (ValueError, FileNotFoundError, KeyError):
        x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    features = backbone(x)
    if isinstance(features, dict):
        features = features[sorted(features)[-1]]
    if len(features.shape) == 3:  # transformer tokens → a global average over tokens
        features = keras.layers.GlobalAveragePooling1D(name="token_pool")(features)
        outputs = (
            classifier(features, num_classes, classifier_activation) if include_top else features
        )
    else:
        outputs = head(
            features,
            include_top=include_top,
            pooling=pooling,
            num_classes=num_classes,
            classifier_activation=classifier_activation,
        )
    return keras.Model(inputs, outputs, name=model_name or Path(preset).name)


def create_external(name, kwargs, weights=None):
    """Build `keras.applications/…` or `keras_hub/…`; None for any other name."""
    kwargs = dict(kwargs)
    if weights is not None:
        if name.startswith(KERAS_HUB):
            raise ConfigError("keras_hub/ models take their weights from the preset folder")
        kwargs["weights"] = weights
    if "name" in kwargs:
        kwargs["model_name"] = kwargs.pop("name")
    if name.startswith(APPLICATIONS):
        return keras_application(name[len(APPLICATIONS) :], **kwargs)
    if name.startswith(KERAS_HUB):
        return keras_hub_backbone(name[len(KERAS_HUB) :], **kwargs)
    return None
