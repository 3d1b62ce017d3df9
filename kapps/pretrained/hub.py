"""Checkpoints published as keras-hub presets (keras-hub converts timm's into its own format).

`"imagenet"` asks keras-hub for the preset by name (it downloads once and
caches it); a folder on disk is read by `from_preset` as keras-hub reads it.
The backbone's layers map in order onto the kapps builder's; the 1,000-class
head comes from the preset's image classifier when it has one.
"""

from pathlib import Path

from kapps.errors import ConfigError
from kapps.pretrained.loading import _first_line


def _keras_hub():
    try:
        import keras_hub
    except ImportError:
        raise ConfigError("keras-hub checkpoints need keras-hub: pip install keras-hub") from None
    return keras_hub


def preset_layers(preset, with_head):
    """`[(name, arrays)]` of a preset's backbone layers in order, and its head last when asked."""
    keras_hub = _keras_hub()
    local = Path(preset).is_dir()
    try:
        backbone = keras_hub.models.Backbone.from_preset(str(preset))
    except Exception as err:  # no network, a folder that is not a preset, …
        where = "read the preset folder" if local else "download keras-hub preset"
        hint = "" if local else "; save it once with save_to_preset and pass its folder as weights"
        raise ConfigError(f"cannot {where} {preset} ({_first_line(err)}){hint}") from None
    layers = [(layer.name, layer.get_weights()) for layer in backbone.layers if layer.weights]
    if with_head:
        try:
            task = keras_hub.models.ImageClassifier.from_preset(str(preset))
            layers.append(("output_dense", task.output_dense.get_weights()))
        except Exception:  # a backbone-only preset: the head starts fresh
            pass
    return layers
