"""Pretext networks around a registered backbone, SimCLR's loss, and the backbone's export.

The backbone is the competition's own model, built as `kapps run` builds it;
its trunk (every layer up to the head, `predictions` or a U-Net's `logits`)
is nested in the pretext network under the name `trunk`, so its layers keep
their names and `export_backbone` copies them by name into a fresh model
that `model.weights=<run>/backbone.keras` loads.
"""

import keras
from keras import ops

from kapps.errors import ConfigError

HEADS = ("predictions", "logits")  # a classifier's head; a segmentation model's
TRUNK = "trunk"


def head_layer(model):
    """The model's output layer that pretraining replaces."""
    for layer in reversed(model.layers):
        if layer.name in HEADS:
            return layer
    raise ValueError(f"{model.name} has no layer named one of {HEADS}")


def trunk(backbone, cut="all"):
    """The backbone without its head, cut at:

    - "all": the head's input (every layer below the head);
    - "maps": a classifier's last feature map or token sequence, so that its
      dense layers after the pooling or flattening are left out;
    - "spatial": the last feature map (colorization predicts from one).
    """
    head = head_layer(backbone)
    output = head.input
    if cut != "all" and len(output.shape) == 2:
        before = backbone.layers[: backbone.layers.index(head)]
        output = next(layer.output for layer in reversed(before) if len(layer.output.shape) > 2)
    if cut == "spatial" and len(output.shape) != 4:
        raise ConfigError(
            f"ssl.task colorization predicts colours from a feature map; {backbone.name} "
            "ends in a sequence of tokens (use rotation, jigsaw or simclr)"
        )
    return keras.Model(backbone.inputs, output, name=TRUNK)


def _pooled_trunk(body, shape):
    """The trunk, its feature map (a U-Net's) averaged over space: one vector per image."""
    inputs = keras.Input(shape)
    features = body(inputs)
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D(name="pretext_pool")(features)
    return keras.Model(inputs, features, name=f"{TRUNK}_pooled")


def pretext_model(backbone, ssl, *, classes=None, input_shape=None):
    """The network the pretext task trains.

    rotation: trunk → 4 logits; jigsaw: the trunk on each tile (shared
    weights, Noroozi's context-free network) → concatenated → 512 → logits of
    the permutations; simclr: trunk → a 2-layer projection head on both views;
    colorization: the trunk's last feature map → a 1×1 convolution to the ab bins.
    """
    task = ssl.task
    body = trunk(backbone, "spatial" if task == "colorization" else "all")
    shape = backbone.inputs[0].shape[1:]
    if task == "rotation":
        inputs = keras.Input(shape, name="images")
        outputs = keras.layers.Dense(classes, name="pretext")(_pooled_trunk(body, shape)(inputs))
    elif task == "jigsaw":
        inputs = keras.Input((input_shape, *shape), name="tiles")
        per_tile = keras.layers.TimeDistributed(_pooled_trunk(body, shape), name="per_tile")(inputs)
        x = keras.layers.Flatten(name="concat_tiles")(per_tile)
        x = keras.layers.Dense(512, activation="relu", name="pretext_fc")(x)
        outputs = keras.layers.Dense(classes, name="pretext")(x)
    elif task == "simclr":
        inputs = keras.Input((2, *shape), name="views")
        h = keras.layers.TimeDistributed(_pooled_trunk(body, shape), name="per_view")(inputs)
        width = h.shape[-1]
        x = keras.layers.Dense(width, activation="relu", name="projection_1")(h)
        outputs = keras.layers.Dense(ssl.projection_dim, name="projection_2")(x)
    else:
        inputs = keras.Input(shape, name="gray")
        outputs = keras.layers.Conv2D(classes, 1, name="pretext", dtype="float32")(body(inputs))
    return keras.Model(inputs, outputs, name=f"{backbone.name}_{task}")


def pretext_trunk(model):
    """The trained trunk inside a pretext network (nested, or wrapped by TimeDistributed)."""
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if inner.name == TRUNK:
            return inner
        if isinstance(inner, keras.Model):
            return pretext_trunk(inner)
    raise ValueError(f"{model.name} holds no {TRUNK}")


def export_backbone(model, backbone, transfer):
    """The pretrained backbone: `backbone` (a fresh build of the competition's model) cut
    where `transfer` ("all" or "maps", see `trunk`) says, holding the pretext network's
    trained layers. Saved, it is what `model.weights` loads; the layers it does not hold
    (the head; with "maps" a classifier's dense layers) start afresh in the model that
    loads it."""
    body = pretext_trunk(model)
    trained = {layer.name: layer for layer in body.layers if layer.weights}
    cut = trunk(backbone, transfer)
    if any(layer.weights and layer.name not in trained for layer in cut.layers):
        # the pretext task trained less than `transfer` asks (colorization stops at the
        # last feature map): carry what it trained
        cut = keras.Model(backbone.inputs, backbone.get_layer(body.layers[-1].name).output)
    for layer in cut.layers:
        if layer.weights:
            layer.set_weights(trained[layer.name].get_weights())
    return keras.Model(cut.inputs, cut.outputs, name=f"{backbone.name}_backbone")


# SimCLR's loss -------------------------------------------------------------------------
def _similarities(y_pred, temperature):
    """Cosine similarities / τ of the 2N projections, each with itself masked out, and
    the index of each one's positive (its other view)."""
    z = ops.cast(y_pred, "float32")
    z = z / ops.maximum(ops.norm(z, axis=-1, keepdims=True), 1e-12)
    n = ops.shape(z)[0]
    z = ops.concatenate([z[:, 0], z[:, 1]], axis=0)  # (2N, D): first views, then second
    logits = ops.matmul(z, ops.transpose(z)) / temperature
    logits = logits - 1e9 * ops.eye(2 * n, dtype=logits.dtype)
    positives = ops.concatenate([ops.arange(n) + n, ops.arange(n)], axis=0)
    return logits, positives, n


@keras.saving.register_keras_serializable(package="kapps")
class NTXent(keras.losses.Loss):
    """SimCLR's normalised temperature-scaled cross-entropy over (N, 2, D) projections.

    Each of the 2N views classifies its other view among the 2N − 1 others;
    the loss of example i is the mean over its two views. `y_true` is unused.
    """

    def __init__(self, temperature=0.5, name="nt_xent", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        logits, positives, n = _similarities(y_pred, self.temperature)
        losses = keras.losses.sparse_categorical_crossentropy(positives, logits, from_logits=True)
        return (losses[:n] + losses[n:]) / 2

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="kapps")
def contrastive_accuracy(y_true, y_pred):
    """Share of the views whose most similar other view is their positive."""
    logits, positives, n = _similarities(y_pred, 1.0)
    hits = ops.cast(ops.argmax(logits, axis=-1) == positives, "float32")
    return (hits[:n] + hits[n:]) / 2
