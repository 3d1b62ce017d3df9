"""Checkpoints published as keras-hub presets (keras-hub converts timm's and Hugging Face's).

`"imagenet"` asks keras-hub for the preset by name (it downloads once and
caches it); a folder on disk is read by `from_preset` as keras-hub reads it.
The backbone's layers map in order onto the kapps builder's: directly where
keras-hub's layers hold the same tensors (ResNet), through a converter where
they are grouped differently (ViT, GPT-2 and CLIP: keras-hub's attention
keeps separate query, key and value projections, kapps' block one fused
`qkv`). The 1,000-class head comes from the preset's image classifier when
it has one. Where the preset carries an image converter whose pixel
normalisation differs from the builder's, a warning says so.
"""

import warnings
from pathlib import Path

import numpy as np
from keras import ops

from kapps.errors import ConfigError
from kapps.pretrained.loading import first_line, pixel_affine


def _keras_hub():
    try:
        import keras_hub
    except ImportError:
        raise ConfigError("keras-hub checkpoints need keras-hub: pip install keras-hub") from None
    return keras_hub


def is_preset_handle(weights):
    """A keras-hub preset name (`gpt2_base_en`) or handle (`hf://…`, `kaggle://…`)."""
    if weights.startswith(("hf://", "kaggle://", "modelscope://")):
        return True
    try:
        import keras_hub
    except ImportError:
        return False
    return weights in keras_hub.models.Backbone.presets


def _load(preset, with_head):
    """keras-hub's backbone of `preset`, and its classifier's output layer when asked."""
    keras_hub = _keras_hub()
    try:
        if with_head:  # the classifier holds the backbone too: one load, not two
            try:
                task = keras_hub.models.ImageClassifier.from_preset(str(preset))
                return task.backbone, task.output_dense
            except Exception:  # a backbone-only preset: the head starts fresh
                pass
        return keras_hub.models.Backbone.from_preset(str(preset)), None
    except Exception as err:  # no network, a folder that is not a preset, …
        local = Path(preset).is_dir()
        where = "read the preset folder" if local else "download keras-hub preset"
        hint = "" if local else "; save it once with save_to_preset and pass its folder as weights"
        raise ConfigError(f"cannot {where} {preset} ({first_line(err)}){hint}") from None


def _arrays(layer):
    """`{"sublayer/variable": array}` of a layer's variables, by their last two path parts."""
    return {"/".join(v.path.split("/")[-2:]): ops.convert_to_numpy(v) for v in layer.weights}


def _block(layer, ln1, ln2, fc, out):
    """A keras-hub encoder/decoder block as kapps' `TransformerBlock` holds it."""
    w = _arrays(layer)
    dim = w["query/kernel"].shape[0]
    qkv = ("query", "key", "value")
    return [
        w[f"{ln1}/gamma"],
        w[f"{ln1}/beta"],
        np.concatenate([w[f"{p}/kernel"].reshape(dim, -1) for p in qkv], axis=1),
        np.concatenate([w[f"{p}/bias"].reshape(-1) for p in qkv]),
        w["attention_output/kernel"].reshape(-1, dim),
        w["attention_output/bias"],
        w[f"{ln2}/gamma"],
        w[f"{ln2}/beta"],
        w[f"{fc}/kernel"],
        w[f"{fc}/bias"],
        w[f"{out}/kernel"],
        w[f"{out}/bias"],
    ]


def resample_positions(positions, tokens):
    """ViT position embeddings (1 + n², dim) for `tokens` = 1 + m² positions.

    The class token's embedding is kept and the n×n grid is resized bicubically
    to m×m, as timm and the ViT paper (section 3.2) do for another resolution.
    """
    if positions.shape[0] == tokens:
        return positions
    side, new_side = round((positions.shape[0] - 1) ** 0.5), round((tokens - 1) ** 0.5)
    if side * side + 1 != positions.shape[0] or new_side * new_side + 1 != tokens:
        return positions  # not square grids: left to the shape check to report
    grid = positions[1:].reshape(1, side, side, -1)
    resized = ops.image.resize(grid, (new_side, new_side), interpolation="bicubic")
    resized = ops.convert_to_numpy(resized).reshape(new_side * new_side, -1)
    return np.concatenate([positions[:1], resized]).astype(positions.dtype)


def _positions_for(model, embeddings):
    """A preset's (1 + n², dim) position table, resampled to the model's ViT grid."""
    positions = ops.convert_to_numpy(embeddings)
    target = [w for w in model.weights if w.path.endswith("cls_pos_embed/pos")]
    return resample_positions(positions, target[0].shape[1]) if target else positions


def _vit(backbone, model):
    embed = backbone.get_layer("vit_patching_and_embedding")
    encoder = backbone.get_layer("vit_encoder")
    positions = _positions_for(model, embed.position_embedding.embeddings)
    layers = [
        ("patch_embedding", embed.patch_embedding.get_weights()),
        (
            "class_token+position_embedding",
            [ops.convert_to_numpy(embed.class_token), positions[None]],
        ),
    ]
    for block in encoder.encoder_layers:
        layers.append((block.name, _block(block, "ln_1", "ln_2", "dense_1", "dense_2")))
    layers.append(("layer_norm", encoder.layer_norm.get_weights()))
    return layers


def _gpt2(backbone, model):
    layers = [
        (name, backbone.get_layer(name).get_weights())
        for name in ("token_embedding", "position_embedding")
    ]
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        names = ("self_attention_layer_norm", "feedforward_layer_norm")
        dense = ("feedforward_intermediate_dense", "feedforward_output_dense")
        layers.append((block.name, _block(block, *names, *dense)))
    layers.append(("layer_norm", backbone.get_layer("layer_norm").get_weights()))
    return layers


def _clip(backbone, model):
    """keras-hub's CLIPBackbone by kapps' layer names; the ViT tower is one nested model."""
    vision, text = backbone.vision_encoder, backbone.text_encoder
    embed = vision.embedding
    # the position each token reads: keras-hub keeps the ids as a weight (arange in
    # converted checkpoints; zeros in a CLIPVisionEmbedding built from scratch)
    table = ops.take(embed.position_embedding.embeddings, embed.position_ids[0], axis=0)
    positions = _positions_for(model, table)
    blocks = ("layer_norm_1", "layer_norm_2", "dense_1", "dense_2")
    tower = [
        *embed.patch_embedding.get_weights(),
        ops.convert_to_numpy(embed.class_embedding).reshape(1, 1, -1),
        positions[None],
        *vision.pre_layer_norm.get_weights(),
    ]
    for block in vision.encoder_layers:
        tower += _block(block, *blocks)
    tower += vision.layer_norm.get_weights()
    by_name = {
        "token_embedding": text.embedding.token_embedding.get_weights(),
        "position_embedding": text.embedding.position_embedding.get_weights(),
        **{f"text_block_{i}": _block(b, *blocks) for i, b in enumerate(text.encoder_layers)},
        "text_norm": text.layer_norm.get_weights(),
        "image_encoder": tower,
        "image_projection": backbone.vision_projection.get_weights(),
        "text_projection": backbone.text_projection.get_weights(),
        "logits": backbone.clip_head.get_weights(),
    }
    return [(layer.name, by_name.get(layer.name, [])) for layer in model.layers if layer.weights]


def _in_order(backbone, model):
    return [(layer.name, layer.get_weights()) for layer in backbone.layers if layer.weights]


CONVERTERS = {"ViTBackbone": _vit, "GPT2Backbone": _gpt2, "CLIPBackbone": _clip}


def _check_normalisation(preset, model):
    """Warn when a preset's image converter normalises pixels unlike the model.

    A warning, not a refusal: the converters of published presets were written
    by several conversion scripts, and one that only resizes says nothing.
    """
    affine = pixel_affine(model)
    if affine is None:
        return
    try:
        converter = _keras_hub().layers.ImageConverter.from_preset(str(preset))
    except Exception:  # the preset has no image converter: nothing to compare
        return
    if converter.scale is None and converter.offset is None:
        return
    scale = 1.0 if converter.scale is None else converter.scale
    offset = 0.0 if converter.offset is None else converter.offset
    want = (
        np.broadcast_to(np.asarray(scale, "float32"), (3,)),
        np.broadcast_to(np.asarray(offset, "float32"), (3,)),
    )
    if not all(np.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip(affine, want, strict=True)):
        warnings.warn(
            f"{Path(str(preset)).name} normalises pixels as {_affine_text(*want)}, "
            f"{model.name} as {_affine_text(*affine)}: were its weights trained on other "
            "inputs?",
            stacklevel=4,
        )


def _affine_text(scale, offset):
    return f"x·[{', '.join(f'{v:.4g}' for v in scale)}] + [{', '.join(f'{v:.4g}' for v in offset)}]"


def preset_layers(preset, with_head, model):
    """`[(name, arrays)]` of a preset's backbone, in the order of `model`'s layers.

    The head comes last when asked for and the preset has a classifier.
    """
    backbone, head = _load(preset, with_head)
    _check_normalisation(preset, model)
    layers = CONVERTERS.get(type(backbone).__name__, _in_order)(backbone, model)
    if head is not None:
        layers.append((head.name, head.get_weights()))
    return layers
