"""Pretrained weights for kapps' own builders: `create_model(name, weights=…)`.

`weights` is None (random initialisation), `"imagenet"` (the builder's
public checkpoint: keras.applications' files or a keras-hub preset,
downloaded once into Keras' or keras-hub's cache), a keras-hub preset
(`"gpt2_base_en"`, `"hf://…"`, `"kaggle://…"`), or a path: a
keras.applications `.h5` file, a keras-hub preset folder, or a `.keras`
model saved by kapps (a run's `best.keras`, a pretrained backbone).

Each builder's preprocessing is the one its checkpoint was trained with, so
a model still takes raw 0–255 pixels whatever it starts from. Loading checks
every tensor's shape and stops at the first that does not fit; the
classifier loads only when it fits, so a model with another number of
classes keeps the backbone and starts a new head.
"""

from pathlib import Path

import keras
import numpy as np

from kapps.errors import ConfigError
from kapps.pretrained.catalog import Checkpoint, WeightFile
from kapps.pretrained.hub import is_preset_handle, preset_layers
from kapps.pretrained.loading import (
    assign_by_name,
    assign_in_order,
    check_rgb,
    fetch,
    read_keras_model,
    read_legacy_h5,
    split_head,
)

__all__ = ["Checkpoint", "WeightFile", "load_weights", "split_head"]


def _imagenet_layers(model, checkpoint, head):
    if checkpoint.preset is not None:
        return preset_layers(checkpoint.preset, head is not None, model), checkpoint.preset
    wants_top = head is not None and (checkpoint.top_has_body or head.units == checkpoint.classes)
    file = checkpoint.top if wants_top and checkpoint.top else checkpoint.notop
    path = fetch(file)
    return read_legacy_h5(path), file.name


def load_weights(model, weights, checkpoint=None, no_checkpoint=None):
    """Load `weights` into a model a kapps builder made; returns whether the head loaded.

    Args:
        model: the built model (its layers named as the builder names them).
        weights: None, "imagenet" or a path (see the module docstring).
        checkpoint: the builder's `Checkpoint` for these arguments, or None.
        no_checkpoint: why the builder has none, for the "imagenet" error.

    Raises:
        ConfigError: one line naming the file and the first tensor that does not fit.
    """
    if weights is None:
        return False
    head = split_head(model)[1]
    if weights == "imagenet":
        if checkpoint is None:
            reason = no_checkpoint or "no public ImageNet checkpoint maps onto its layers"
            raise ConfigError(f"{model.name} has no ImageNet weights: {reason}")
        check_rgb(model)
        source, origin = _imagenet_layers(model, checkpoint, head)
        loaded = assign_in_order(model, source, origin)
        _rescale_variance(model, checkpoint)
        return loaded
    path = Path(weights)
    if path.is_dir() or (not path.exists() and is_preset_handle(str(weights))):
        check_rgb(model)
        return assign_in_order(model, preset_layers(weights, head is not None, model), path.name)
    if not path.exists():
        raise ConfigError(f"weights not found: {weights}")
    if path.suffix == ".keras":
        return assign_by_name(model, read_keras_model(path), path.name)
    source = read_legacy_h5(path)
    if source is None:
        raise ConfigError(
            f"{path.name} is not a weights file kapps reads: give a keras.applications .h5 "
            "file, a keras-hub preset folder or a .keras model"
        )
    check_rgb(model)
    loaded = assign_in_order(model, source, path.name)
    if checkpoint is not None and checkpoint.source == "keras.applications":
        _rescale_variance(model, checkpoint)
    return loaded


def _rescale_variance(model, checkpoint):
    if checkpoint.variance_scale is None:
        return
    normalize = model.get_layer("normalize")
    scale = np.array(checkpoint.variance_scale, dtype="float32")
    normalize.adapt_variance.assign(keras.ops.convert_to_numpy(normalize.adapt_variance) * scale)
    normalize.finalize_state()
