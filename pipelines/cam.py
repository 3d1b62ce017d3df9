"""Grad-CAM (Selvaraju et al., 2017) for any classification model, and its overlay grid.

The class score's gradient with respect to the last feature map, averaged per
channel, weights that map's channels; the ReLU of the weighted sum, upsampled
to the image, shows where the model looked. The model is cut at the feature
map into a body and a tail, so only the tail is differentiated, with the
active backend's own autodiff.
"""

import keras
import numpy as np

from kapps.features import feature_layers
from pipelines.plots import plot_cam_grid


def _gradient(tail, features, classes):
    """d(score of `classes`)/d(features) with the active backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        features = tf.convert_to_tensor(features)
        with tf.GradientTape() as tape:
            tape.watch(features)
            scores = tf.gather(tail(features, training=False), classes, batch_dims=1)
        return np.asarray(tape.gradient(scores, features))
    if backend == "jax":
        import jax

        trainable = [v.value for v in tail.trainable_variables]
        frozen = [v.value for v in tail.non_trainable_variables]

        def total_score(maps):
            logits, _ = tail.stateless_call(trainable, frozen, maps, training=False)
            return logits[np.arange(len(classes)), classes].sum()

        return np.asarray(jax.grad(total_score)(features))
    if backend == "torch":
        import torch

        maps = torch.tensor(features, requires_grad=True)
        tail(maps, training=False)[
            torch.arange(len(classes)), torch.tensor(classes)
        ].sum().backward()
        return maps.grad.cpu().numpy()
    raise NotImplementedError(f"Grad-CAM has no gradient for the {backend} backend")


def _coarsest_map(model):
    """The coarsest feature map that still has some space in it (≥ 2×2)."""
    layers = feature_layers(model)
    spatial = [
        name
        for _, name in sorted(layers.items())
        if min(model.get_layer(name).output.shape[1:3]) >= 2
    ]
    return (spatial or list(layers.values()))[-1]


def grad_cam(model, images, classes=None, layer_name=None):
    """Heat maps in [0, 1] at the images' size, one per image.

    Args:
        model: a classification model (raw pixels in, one logits output).
        images: (N, H, W, C) raw pixels.
        classes: the class per image to explain; default the predicted one.
        layer_name: the feature map to use; default the coarsest one of at least 2×2.
    """
    layer_name = layer_name or _coarsest_map(model)
    cut = model.get_layer(layer_name).output
    body = keras.Model(model.input, cut)
    tail = keras.Model(cut, model.outputs[0])
    # A few images: eager calls, not `predict`, which traces a function per new model.
    features = keras.ops.convert_to_numpy(body(images, training=False)).astype("float32")
    if classes is None:
        classes = keras.ops.convert_to_numpy(tail(features, training=False)).argmax(axis=1)
    grads = _gradient(tail, features, np.asarray(classes))
    weights = grads.mean(axis=(1, 2), keepdims=True)
    cams = np.maximum((weights * features).sum(axis=-1), 0)
    cams /= np.maximum(cams.max(axis=(1, 2), keepdims=True), 1e-12)
    size = images.shape[1:3]
    resized = keras.ops.image.resize(cams[..., None], size, interpolation="bilinear")
    return np.clip(np.asarray(resized)[..., 0], 0, 1)


def write_cam_grid(model, images, captions, path, title="Grad-CAM on validation images"):
    """Overlay Grad-CAM heat maps on `images` and save the grid as a PNG."""
    plot_cam_grid(images, grad_cam(model, images.astype("float32")), captions, path, title)
