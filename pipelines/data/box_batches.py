"""Detection batches for `fit`: images decoded once with their padded boxes, mosaic,
Keras' box-aware augmentation layers, and the (images, {"boxes", "labels"}) batches.

Boxes are Keras core's `{"boxes": (B, N, 4), "labels": (B, N)}`, `xyxy` in
pixels of the model's input, padded with -1.
"""

import numpy as np
import tensorflow as tf

from pipelines.data.batching import drop_remainder
from pipelines.data.images import AUTOTUNE, decoded_images
from pipelines.data.sources import ImageSource


def padded_targets(source, image_size):
    """Boxes scaled to the model's input and padded: `(boxes (N, M, 4), labels (N, M))`."""
    most = max([len(b) for b in source.boxes] + [1])
    boxes = np.full((len(source), most, 4), -1, np.float32)
    labels = np.full((len(source), most), -1, np.int32)
    height, width = image_size
    for row, (found, classes, size) in enumerate(
        zip(source.boxes, source.labels, source.sizes, strict=True)
    ):
        scale = np.asarray([width, height, width, height], np.float32) / np.maximum(
            [size[1], size[0], size[1], size[0]], 1
        )
        boxes[row, : len(found)] = found * scale
        labels[row, : len(found)] = classes
    return boxes, labels


def decoded_detection_set(source, image_size, channels, cache="memory", cache_path=None):
    """Images decoded, resized and cached once, with their scaled, padded boxes."""
    images = decoded_images(
        ImageSource(ids=source.ids, paths=source.paths), image_size, channels, cache, cache_path
    )
    images.targets = padded_targets(source, image_size)
    return images


def _mosaic(parts, image_size, seed):
    """Four (image, boxes, labels) examples tiled 2 × 2, then one random window of
    the model's size cut from the tiling: objects keep their scale but are seen
    cut off by edges and among other images' objects (Bochkovskiy et al., 2020)."""
    height, width = image_size
    top = tf.concat([parts[0][0], parts[1][0]], axis=1)
    bottom = tf.concat([parts[2][0], parts[3][0]], axis=1)
    canvas = tf.concat([top, bottom], axis=0)
    offset = tf.random.stateless_uniform([2], seed, 0, 1)
    y0 = tf.cast(offset[0] * height, tf.int32)
    x0 = tf.cast(offset[1] * width, tf.int32)
    image = tf.ensure_shape(canvas[y0 : y0 + height, x0 : x0 + width], parts[0][0].shape)
    shifts = [(0, 0), (width, 0), (0, height), (width, height)]
    window = tf.cast(tf.stack([x0, y0, x0, y0]), tf.float32)
    boxes, labels = [], []
    for (_, found, classes), (dx, dy) in zip(parts, shifts, strict=True):
        moved = found + tf.constant([dx, dy, dx, dy], tf.float32) - window
        clipped = tf.clip_by_value(moved, 0.0, [width, height, width, height])
        area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
        kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        visible = (
            (classes >= 0)
            & (kept_area > 0.2 * area)
            & (tf.minimum(clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]) >= 2)
        )
        boxes.append(tf.where(visible[:, None], clipped, -1.0))
        labels.append(tf.where(visible, classes, -1))
    return image, tf.concat(boxes, axis=0), tf.concat(labels, axis=0)


def _clean(images, boxes, labels):
    """Labels back to int32, and boxes that augmentation pushed out of the picture dropped."""
    labels = tf.cast(tf.round(tf.cast(labels, tf.float32)), tf.int32)
    size = tf.minimum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])
    present = (labels >= 0) & (size >= 1.0)
    boxes = tf.where(present[..., None], boxes, -1.0)
    return images, {"boxes": boxes, "labels": tf.where(present, labels, -1)}


def batched_detections(image_set, *, batch_size, shuffle=False, augment=None, mosaic=0.0, seed=0):
    """Batches of (float32 raw pixels, {"boxes", "labels"}) for `fit` and `evaluate`.

    Args:
        image_set: from `decoded_detection_set`.
        shuffle: reshuffle every epoch (training).
        augment: Keras preprocessing layers built with `bounding_box_format="xyxy"`.
        mosaic: probability that a training example is a mosaic of four.
    """
    boxes, labels = (tf.constant(t) for t in image_set.targets)
    image_size = tuple(image_set.dataset.element_spec[0].shape[:2])
    examples = image_set.dataset.map(
        lambda image, i: (tf.cast(image, tf.float32), tf.gather(boxes, i), tf.gather(labels, i))
    )
    dataset = examples
    if shuffle:
        dataset = examples.shuffle(len(image_set), seed=seed, reshuffle_each_iteration=True)
    if mosaic:
        others = [
            examples.shuffle(len(image_set), seed=seed + k, reshuffle_each_iteration=True)
            for k in (1, 2, 3)
        ]
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        padding = 3 * boxes.shape[1]

        def combine(seed_pair, *parts):
            single = (
                parts[0][0],
                tf.pad(parts[0][1], [[0, padding], [0, 0]], constant_values=-1.0),
                tf.pad(parts[0][2], [[0, padding]], constant_values=-1),
            )
            chance = tf.random.stateless_uniform([], seed_pair, 0, 1)
            return tf.cond(
                chance < mosaic,
                lambda: _mosaic(parts, image_size, seed_pair + 1),
                lambda: single,
            )

        dataset = tf.data.Dataset.zip((seeds, dataset, *others)).map(
            combine, num_parallel_calls=AUTOTUNE
        )
    dataset = dataset.batch(
        batch_size, drop_remainder=drop_remainder(len(image_set), batch_size, shuffle)
    )

    def prepare(images, found, classes):
        if augment is not None:
            for layer in augment.layers:
                out = layer(
                    {"images": images, "bounding_boxes": {"boxes": found, "labels": classes}},
                    training=True,
                )
                images = tf.ensure_shape(out["images"], images.shape)  # zoom needs it static
                found, classes = out["bounding_boxes"]["boxes"], out["bounding_boxes"]["labels"]
        return _clean(images, found, classes)

    return dataset.map(prepare, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
