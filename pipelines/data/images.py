"""The image pipeline: decode in parallel → resize → cache → shuffle → batch → augment.

Decoding happens once. The decoded images are cached (memory or disk) and a
first pass over the cache records which rows decoded, so a corrupt file is
named instead of failing somewhere inside an epoch; the same pass fills the
cache, so it costs no extra decoding. Random augmentation runs after the cache,
on batches, with Keras preprocessing layers.
"""

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipelines.data.batching import drop_remainder
from pipelines.errors import DataError

AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class ImageSet:
    """Decoded images of one split and which of its rows they are."""

    dataset: tf.data.Dataset  # (image uint8 (H, W, C), row index)
    rows: np.ndarray  # indices into the source of the rows that decoded
    skipped: list = field(default_factory=list)  # files that could not be decoded

    def __len__(self):
        return len(self.rows)


JPEG_RATIOS = (1, 2, 4, 8)  # the reductions libjpeg can decode to directly


def _decode_jpeg_reduced(data, image_size, channels):
    """Decode a JPEG at 1/2, 1/4 or 1/8 scale when it is that many times larger than needed.

    libjpeg reduces in the DCT domain, skipping most of the work of a full
    decode (PIL's `draft` does the same); the image stays at least
    `image_size`, so the resize that follows only ever shrinks it further.
    """
    shape = tf.io.extract_jpeg_shape(data)
    scale = tf.minimum(shape[0] // image_size[0], shape[1] // image_size[1])
    index = tf.reduce_sum(tf.cast(tf.constant(JPEG_RATIOS[1:]) <= scale, tf.int32))
    decoders = [
        lambda r=r: tf.io.decode_jpeg(data, channels=channels, ratio=r) for r in JPEG_RATIOS
    ]
    return tf.switch_case(index, decoders)


@functools.cache
def _file_decoder(image_size, channels):
    """`_decode_file` for one output size, traced once per process.

    Every split, fold and prediction builds its own tf.data map; calling one
    traced function from each saves re-tracing the decode branches each time
    (tens of milliseconds a call, most of a small split's decoding).
    """
    return tf.function(
        lambda path: _decode_file(path, image_size, channels),
        input_signature=[tf.TensorSpec([], tf.string)],
    )


def _decode_file(path, image_size, channels):
    data = tf.io.read_file(path)
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: _decode_jpeg_reduced(data, image_size, channels),
        lambda: tf.io.decode_image(data, channels=channels, expand_animations=False),
    )
    image.set_shape([None, None, channels])
    return _resize(image, image_size)


def _resize(image, image_size):
    """Bilinear resize to `image_size`, low-pass filtered when shrinking more than 2×.

    Up to 2× plain bilinear interpolation already averages the neighbours a
    sample falls between (Keras' own image loaders never filter); beyond that
    it would skip pixels and alias, so the antialiased kernel, twice as slow
    on CPU, is used only there. JPEGs reach this already reduced (see
    `_decode_jpeg_reduced`), so they rarely need it.
    """
    shrink = tf.reduce_max(
        tf.cast(tf.shape(image)[:2], tf.float32) / tf.constant(image_size, tf.float32)
    )
    image = tf.cond(
        shrink > 2.0,
        lambda: tf.image.resize(image, image_size, antialias=True),
        lambda: tf.image.resize(image, image_size),
    )
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _match_channels(image, channels):
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return tf.image.grayscale_to_rgb(image)
    return tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))), tf.uint8)


def _cache(dataset, cache, cache_path):
    if cache == "none":
        return dataset
    if cache == "disk":
        cache_path = Path(cache_path)
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        for stale in cache_path.parent.glob(f"{cache_path.name}*.lockfile"):
            stale.unlink()  # left by a killed run; the cache itself is rewritten
        return dataset.cache(str(cache_path))
    return dataset.cache()


def decoded_images(source, image_size, channels, cache="memory", cache_path=None):
    """Decode every image of `source` once and report the files that failed.

    Returns an `ImageSet` whose dataset yields `(uint8 image, row index)`.
    """
    rows = np.arange(len(source), dtype=np.int64)
    image_size = tuple(image_size)
    if source.pixels is not None:
        dataset = tf.data.Dataset.from_tensor_slices((source.pixels, rows))
        dataset = dataset.map(
            lambda image, i: (_match_channels(_resize(image, image_size), channels), i),
            num_parallel_calls=AUTOTUNE,
        )
    else:
        decode = _file_decoder(image_size, channels)
        dataset = tf.data.Dataset.from_tensor_slices((source.paths, rows))
        dataset = dataset.map(
            lambda path, i: (decode(path), i),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        ).ignore_errors()
    dataset = _cache(dataset, cache, cache_path)
    indices = dataset.map(lambda _, i: i).batch(4096)  # batched: no Python call per image
    # This one pass needs none of tf.data's graph rewrites (the map is already
    # parallel); skipping them saves their time when the iterator is made.
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    indices = indices.with_options(options).as_numpy_iterator()
    decoded = np.concatenate([np.zeros(0, np.int64), *indices])
    # Skipping leaves the size unknown to tf.data; it is known now.
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(decoded)))
    skipped = sorted(set(rows) - set(decoded))
    skipped_files = [source.paths[i] for i in skipped] if source.paths else []
    return ImageSet(dataset, decoded, skipped_files)


def require_decoded(images):
    """Stop prediction, in one line, when a test image could not be decoded."""
    if images.skipped:
        more = f" and {len(images.skipped) - 1} more" if len(images.skipped) > 1 else ""
        raise DataError(
            f"test image cannot be decoded: {images.skipped[0]}{more}; prediction stopped"
        )
    return images


def batched(image_set, labels=None, *, batch_size, shuffle=False, augment=None, seed=0):
    """Batches of float32 raw pixels (and labels) ready for `fit` or `predict`.

    Args:
        image_set: an `ImageSet`.
        labels: integer labels indexed by source row, or None for test data.
        shuffle: reshuffle every epoch (training).
        augment: an `Augmenter` applied to each batch, or None.
    """
    dataset = image_set.dataset
    if labels is not None:
        table = tf.constant(np.asarray(labels))
        dataset = dataset.map(lambda image, i: (image, tf.gather(table, i)))
    else:
        dataset = dataset.map(lambda image, i: image)
    if shuffle:
        dataset = dataset.shuffle(len(image_set), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(
        batch_size, drop_remainder=drop_remainder(len(image_set), batch_size, shuffle)
    )

    def to_float(images):
        images = tf.cast(images, tf.float32)
        return augment(images) if augment is not None else images

    if labels is not None:
        dataset = dataset.map(lambda x, y: (to_float(x), y), num_parallel_calls=AUTOTUNE)
    else:
        dataset = dataset.map(to_float, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def stacked(image_set):
    """Every image of an `ImageSet` as one float32 array (N, H, W, C) of raw pixels."""
    batches = batched(image_set, batch_size=1024).as_numpy_iterator()
    return np.concatenate(list(batches)).astype("float32")
