"""Read a weights file or preset and put its tensors into a kapps model, checked one by one.

Three sources, told apart by what is on disk:
- keras.applications' `.h5` files (Keras 2's HDF5 layout, `layer_names` and
  `weight_names` attributes): layers are matched in order, as Keras' own
  loader matches them, and every tensor's shape is checked;
- a Keras `.keras` model file (a run's `best.keras`, a pretrained backbone):
  layers are matched by name;
- a keras-hub preset folder (see `kapps.pretrained.hub`).
The classifier (`predictions`) is loaded only where it fits: a model with
another number of classes keeps the backbone and starts a new head.
"""

import os
from pathlib import Path

import keras
import numpy as np

from kapps.errors import ConfigError

CLASSIFIER = "predictions"


def cache_folder():
    """Keras' cache of downloaded models: `$KERAS_HOME/models`, by default `~/.keras/models`."""
    return Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "models"


def fetch(file):
    """The local path of a `WeightFile`: Keras' cache, or downloaded into it once."""
    folder = cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)  # Keras falls back to /tmp without it
        path = keras.utils.get_file(
            file.name,
            file.url,
            cache_dir=str(folder.parent),
            cache_subdir=folder.name,
            file_hash=file.md5,
        )
        return Path(path)
    except Exception as err:  # get_file raises a bare Exception when it cannot download
        raise ConfigError(
            f"cannot download {file.name} ({first_line(err)}); put the file in {folder} "
            "or pass its path as weights=PATH"
        ) from None


def first_line(err):
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _decode(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def read_legacy_h5(path):
    """`[(layer name, [arrays])]` of a Keras 2 HDF5 weights file, layers with weights only."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f.get("model_weights", f)
            if "layer_names" not in group.attrs:
                return None
            layers = []
            for name in map(_decode, group.attrs["layer_names"]):
                names = [_decode(n) for n in group[name].attrs.get("weight_names", [])]
                if names:
                    layers.append((name, [np.asarray(group[name][n]) for n in names]))
            return layers
    except (OSError, KeyError) as err:
        raise ConfigError(f"cannot read weights file {path}: {first_line(err)}") from None


def read_keras_model(path):
    """`{layer name: [arrays]}` of a saved `.keras` model."""
    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as err:  # a truncated zip, an unknown layer class, …
        raise ConfigError(f"cannot read model file {path}: {first_line(err)}") from None
    return {layer.name: layer.get_weights() for layer in source.layers if layer.weights}


def _fit(target, arrays, what):
    """`arrays` shaped as `target`'s weights (a 1×1 convolution head becomes a dense kernel)."""
    expected = [tuple(w.shape) for w in target.weights]
    if len(arrays) != len(expected):
        raise ConfigError(
            f"{what} holds {len(arrays)} tensors, the model's layer {target.name!r} has "
            f"{len(expected)}"
        )
    fitted = []
    for array, shape, weight in zip(arrays, expected, target.weights, strict=True):
        if array.shape != shape and target.name == CLASSIFIER and array.size == np.prod(shape):
            array = array.reshape(shape)  # MobileNet's 1×1 convolution classifier
        if array.shape != shape:
            raise ConfigError(
                f"{what} does not fit: {weight.path} is {shape} in the model, "
                f"{array.shape} in the file"
            )
        fitted.append(array)
    return fitted


def _set(layer, arrays):
    layer.set_weights(arrays)
    if isinstance(layer, keras.layers.Normalization):
        layer.finalize_state()  # its mean and variance are read from these weights


def split_head(model):
    """`(body, head)`: the layers with weights, and the classifier (None without one)."""
    layers = [layer for layer in model.layers if layer.weights]
    if layers and layers[-1].name == CLASSIFIER:
        return layers[:-1], layers[-1]
    return layers, None


def _load_head(head, arrays, what):
    """Load the classifier when it fits; otherwise it keeps its fresh initialisation."""
    if head is None or arrays is None:
        return False
    try:
        head.set_weights(_fit(head, arrays, what))
    except ConfigError:
        return False
    return True


def assign_in_order(model, layers, origin):
    """Assign `[(name, arrays)]` to the model's layers with weights, in order."""
    body, head = split_head(model)
    fitted = [  # every pair checked before anything is assigned
        _fit(target, arrays, f"{origin}'s layer {name!r}")
        for target, (name, arrays) in zip(body, layers, strict=False)
    ]
    if len(layers) < len(body):
        missing = body[len(layers)]
        raise ConfigError(
            f"{origin} holds {len(layers)} layers with weights; {model.name} needs "
            f"{len(body)} before its head (the first missing one: {missing.name!r})"
        )
    for target, arrays in zip(body, fitted, strict=True):
        _set(target, arrays)
    rest = layers[len(body) :]
    return _load_head(head, rest[-1][1] if rest else None, f"{origin}'s head")


def assign_by_name(model, tensors, origin):
    """Assign `{name: arrays}` to the model's layers of the same name.

    The file may hold the first layers only (a pretrained backbone cut at a
    feature map): the later ones keep their fresh initialisation.
    """
    body, head = split_head(model)
    present = [target for target in body if target.name in tensors]
    if not present or body[: len(present)] != present:
        missing = next(target.name for target in body if target.name not in tensors)
        raise ConfigError(f"{origin} has no layer {missing!r} that {model.name} needs")
    body = present
    fitted = [_fit(t, tensors[t.name], f"{origin}'s layer {t.name!r}") for t in body]
    for target, arrays in zip(body, fitted, strict=True):
        _set(target, arrays)
    return _load_head(head, tensors.get(CLASSIFIER), f"{origin}'s head")


PREPROCESSING = ("rescale", "normalize", "preprocess")


def pixel_affine(model):
    """`(scale, offset)` per channel of the model's own pixel preprocessing, or None.

    The builders' preprocessing layers (`rescale`, `normalize`, `preprocess`)
    come right after the input and act on each pixel alone; a model without
    them whose image tower is a nested model (CLIP) is asked through it.
    """
    towers = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if towers and not any(layer.name in PREPROCESSING for layer in model.layers):
        return pixel_affine(towers[0])
    x = np.stack([np.zeros((1, 1, 3)), np.full((1, 1, 3), 255.0)]).astype("float32")
    found = False
    for layer in model.layers[1:]:
        if layer.name not in PREPROCESSING:
            break
        x, found = layer(x), True
    if not found:
        return None
    x = keras.ops.convert_to_numpy(x).reshape(2, -1)
    return (x[1] - x[0]) / 255.0, x[0]


def check_rgb(model):
    """Image models must take 3 channels; models of other inputs (text) pass."""
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4:
        return
    channels = shape[-1]
    if channels != 3:
        raise ConfigError(
            f"pretrained weights expect RGB images (3 channels), {model.name} takes {channels}; "
            "set data.channels: 3 (grayscale images are repeated) or drop the weights"
        )
