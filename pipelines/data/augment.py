"""Random augmentation from the config, as Keras preprocessing layers.

The layers run inside the tf.data map, on batches, never inside the model, so a
saved model stays free of training-only layers. They are called one by one:
each Keras preprocessing layer switches to TensorFlow ops inside tf.data
whatever the Keras backend, which a `keras.Sequential` of them does not.
"""

import keras
import numpy as np


class Augmenter:
    """Keras preprocessing layers applied in turn to a batch (or a dict of batches)."""

    def __init__(self, layers):
        self.layers = layers

    def __call__(self, inputs, training=True):
        for layer in self.layers:
            inputs = layer(inputs, training=training)
        return inputs


def build_augmenter(augment, seed, bounding_box_format=None):
    """An `Augmenter` of the augmentations `augment` turns on, or None.

    With `bounding_box_format` the layers move boxes with the pixels
    (called on `{"images", "bounding_boxes"}` dicts).
    """
    boxes = {"bounding_box_format": bounding_box_format} if bounding_box_format else {}
    layers = []
    if augment.flip != "none":
        layers.append(keras.layers.RandomFlip(augment.flip, seed=seed, **boxes))
    if augment.rotation:
        layers.append(
            keras.layers.RandomRotation(augment.rotation, fill_mode="constant", seed=seed, **boxes)
        )
    if augment.zoom:
        layers.append(
            keras.layers.RandomZoom(augment.zoom, fill_mode="constant", seed=seed, **boxes)
        )
    if augment.translation:
        layers.append(
            keras.layers.RandomTranslation(
                augment.translation, augment.translation, fill_mode="constant", seed=seed, **boxes
            )
        )
    if augment.contrast:
        layers.append(
            keras.layers.RandomContrast(augment.contrast, value_range=(0, 255), seed=seed, **boxes)
        )
    return Augmenter(layers) if layers else None


FLIP_AXES = {"horizontal": 2, "vertical": 1}  # of a (batch, height, width, channels) batch


def tta_views(images, flips):
    """The views test-time augmentation averages: the images, then each flip.

    Yields `(view, undo)` as NumPy arrays, which every Keras backend takes:
    `undo` maps a per-pixel prediction (NumPy) of the view back to the
    original orientation (a per-image prediction needs no undo).
    """
    images = np.asarray(images)
    yield images, lambda prediction: prediction
    for flip in flips:
        axis = FLIP_AXES[flip]
        yield np.flip(images, axis=axis), lambda p, a=axis: np.flip(p, axis=a)
