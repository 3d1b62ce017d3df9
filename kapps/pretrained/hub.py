"""Checkpoints published as keras-hub presets (keras-hub converts timm's into its own format).

`"imagenet"` asks keras-hub for the preset by name (it downloads once and
caches it); a folder on disk is read by `from_preset` as keras-hub reads it.
The backbone's layers map in order onto the kapps builder's; the 1,000-class
head comes from the preset's image classifier when it has one.
"""

from pathlib import Path

from kapps.errors import ConfigError
from kapps.pretrained.loading import first_line


def _keras_hub():
    try:
        import keras_hub
    except ImportError:
        raise ConfigError("keras-hub checkpoints need keras-hub: pip install keras-hub") from None
    return keras_hub


def preset_layers(preset, with_head):
    """`[(name, arrays)]` of a preset's backbone layers in order, and its head last when asked."""
    keras_hub = _keras_hub()
    head = None
    try:
        if with_head:  # the classifier holds the backbone too: one load, not two
            try:
                task = keras_hub.models.ImageClassifier.from_preset(str(preset))
                backbone, head = task.backbone, task.output_dense
            except Exception:  # a backbone-only preset: the head starts fresh
                pass
        if head is None:
            backbone = keras_hub.models.Backbone.from_preset(str(preset))
    except Exception as err:  # no network, a folder that is not a preset, …
        local = Path(preset).is_dir()
        where = "read the preset folder" if local else "download keras-hub preset"
        hint = "" if local else "; save it once with save_to_preset and pass its folder as weights"
        raise ConfigError(f"cannot {where} {preset} ({first_line(err)}){hint}") from None
    layers = [(layer.name, layer.get_weights()) for layer in backbone.layers if layer.weights]
    if head is not None:
        layers.append((head.name, head.get_weights()))
    return layers
