"""The pretext tasks' inputs and labels, made from unlabelled images in tf.data.

- rotation (Gidaris, Singh and Komodakis 2018): every image in all four
  rotations of 0/90/180/270 degrees in the same batch; the label is the rotation.
- jigsaw (Noroozi and Favaro 2016): the image cut into a grid of cells, a
  tile cropped at a random place inside each cell (so edges do not line up),
  the tiles shuffled by one permutation of a fixed set; the label is which.
- colorization (Zhang, Isola and Efros 2016): the image's lightness in, its
  ab channels out as soft-encoded bins, weighted by class rebalancing.
- simclr (Chen et al. 2020): two random views of each image (crop and
  resize, flip, colour jitter, grayscale); the positive pair is the two views.

Images come in as float32 raw pixels 0–255, as the models take them.
"""

import itertools
import math

import numpy as np
import tensorflow as tf

from pipelines.data.batching import drop_remainder
from pipelines.ssl import lab

ROTATIONS = 4
AUTOTUNE = tf.data.AUTOTUNE


# Rotation ----------------------------------------------------------------------
def rotations(image):
    """`(4 rotated copies, labels 0–3)`: copy k is turned k quarter turns anticlockwise."""
    copies = tf.stack([tf.image.rot90(image, k) for k in range(ROTATIONS)])
    return copies, tf.range(ROTATIONS)


# Jigsaw ------------------------------------------------------------------------
def permutation_set(tiles, count, seed=0):
    """`count` permutations of `tiles` positions, chosen by maximal Hamming distance.

    Noroozi and Favaro's greedy selection, with the minimum instead of the
    average distance to the permutations chosen so far: each new permutation
    is one farthest from all of them, so the set's minimum pairwise distance
    is as large as this greedy order allows. The first is drawn at random.
    """
    every = np.array(list(itertools.permutations(range(tiles))), dtype=np.int8)
    if count > len(every):
        raise ValueError(f"a grid of {tiles} tiles has {len(every)} permutations, not {count}")
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(every)))]
    nearest = (every != every[chosen[0]]).sum(1)
    for _ in range(count - 1):
        best = np.flatnonzero(nearest == nearest.max())
        pick = int(rng.choice(best))
        chosen.append(pick)
        nearest = np.minimum(nearest, (every != every[pick]).sum(1))
    return every[chosen]


def min_hamming(permutations):
    """The smallest number of positions in which two permutations of the set differ."""
    p = np.asarray(permutations)
    distance = (p[:, None, :] != p[None]).sum(-1)
    return int(distance[~np.eye(len(p), dtype=bool)].min())


def jigsaw_tiles(image, permutations, grid, jitter, out_size):
    """`(tiles (T, H, W, C) in the permuted order, permutation index)` of one image.

    Each cell of the grid gives one tile: a crop of (1 − jitter) of its side
    at a random place inside it, resized to the model's input size.
    """
    height, width = image.shape[0] // grid, image.shape[1] // grid
    crop = (max(1, round(height * (1 - jitter))), max(1, round(width * (1 - jitter))))
    tiles = [
        tf.image.random_crop(
            image[r * height : (r + 1) * height, c * width : (c + 1) * width],
            (*crop, image.shape[-1]),
        )
        for r in range(grid)
        for c in range(grid)
    ]
    label = tf.random.uniform([], 0, len(permutations), tf.int32)
    order = tf.gather(tf.constant(permutations, tf.int32), label)
    shuffled = tf.gather(tf.stack(tiles), order)
    return tf.image.resize(shuffled, out_size), label


def default_grid(image_size):
    return 3 if min(image_size) >= 64 else 2


def default_permutations(grid):
    return min(100, math.factorial(grid * grid))


# SimCLR ------------------------------------------------------------------------
def simclr_view(image, crop_scale, colour):
    """One random view: crop (crop_scale–1 of the area, aspect 3/4–4/3) resized back,
    horizontal flip, colour jitter (p = 0.8) and, for colour images, grayscale (p = 0.2)."""
    size = image.shape[:2]
    channels = image.shape[-1]
    area = tf.random.uniform([], crop_scale, 1.0)
    ratio = tf.exp(tf.random.uniform([], math.log(3 / 4), math.log(4 / 3)))
    h = tf.minimum(tf.cast(tf.round(tf.sqrt(area / ratio) * size[0]), tf.int32), size[0])
    w = tf.minimum(tf.cast(tf.round(tf.sqrt(area * ratio) * size[1]), tf.int32), size[1])
    view = tf.image.random_crop(image, tf.stack([h, w, channels]))
    view = tf.image.resize(view, size) / 255.0
    if colour:
        view = tf.image.random_flip_left_right(view)

    def jitter(x):
        x = tf.image.random_brightness(x, 0.4)
        x = tf.image.random_contrast(x, 0.6, 1.4)
        if colour:
            x = tf.image.random_saturation(x, 0.6, 1.4)
            x = tf.image.random_hue(x, 0.1)
        return tf.clip_by_value(x, 0.0, 1.0)

    view = tf.cond(tf.random.uniform([]) < 0.8, lambda: jitter(view), lambda: view)
    if colour:
        gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(view))
        view = tf.cond(tf.random.uniform([]) < 0.2, lambda: gray, lambda: view)
    return view * 255.0


# Colorization ------------------------------------------------------------------
def colour_target(image, bins, weights, out_size):
    """`(gray RGB input, soft-encoded ab bins × rebalancing weight)` of one image.

    The target is at the network's output resolution `out_size` (its ab
    channels averaged down); its weights sum to each pixel's rebalancing
    weight, so plain cross-entropy is the paper's weighted loss.
    """
    colour = lab.rgb_to_lab(image)
    ab = tf.image.resize(colour[..., 1:], out_size, method="area")
    encoded = lab.soft_encode(ab, bins)
    pixel_weight = tf.gather(weights, lab.nearest_bin(ab, bins))
    return lab.grayscale(image), encoded * pixel_weight[..., None]


def bin_counts(images, bins, out_size, limit=2000, chunk=64):
    """How often each ab bin is the nearest one, over (up to `limit` of) the images,
    `chunk` images at a time (each pixel's distance to every bin is held at once)."""
    counts = np.zeros(len(bins), np.int64)
    for start in range(0, min(limit, len(images)), chunk):
        sample = tf.constant(images[start : min(start + chunk, limit)], tf.float32)
        ab = tf.image.resize(lab.rgb_to_lab(sample)[..., 1:], out_size, method="area")
        counts += np.bincount(lab.nearest_bin(ab, bins).numpy().ravel(), minlength=len(bins))
    return counts


# Datasets ------------------------------------------------------------------------
def pretext_dataset(images, ssl, *, batch_size, training, seed, context):
    """Batches of (inputs, targets) of the pretext task `ssl.task` over uint8 `images`.

    `context` holds what the task fixed for the run: the jigsaw's permutations,
    grid and the model's input size; colorization's bins, weights and output size.
    A validation set (`training=False`) draws its random choices once and keeps them.
    """
    dataset = tf.data.Dataset.from_tensor_slices(images)
    if training:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    as_float = dataset.map(lambda image: tf.cast(image, tf.float32))
    drop = drop_remainder(len(images), batch_size, training)  # as steps_per_epoch counts
    task = ssl.task
    if task == "rotation":
        dataset = as_float.map(rotations, num_parallel_calls=AUTOTUNE).unbatch()
        batch_size *= ROTATIONS  # the four rotations of batch_size images
    elif task == "jigsaw":
        grid, perms, size = context["grid"], context["permutations"], context["input_size"]
        dataset = as_float.map(
            lambda image: jigsaw_tiles(image, perms, grid, ssl.jitter, size),
            num_parallel_calls=AUTOTUNE,
        )
    elif task == "simclr":
        colour = images.shape[-1] == 3

        def views(image):
            pair = tf.stack([simclr_view(image, ssl.crop_scale, colour) for _ in range(2)])
            return pair, tf.zeros([])  # the positive is the other view: no label

        dataset = as_float.map(views, num_parallel_calls=AUTOTUNE)
    else:
        bins, weights, size = context["bins"], context["weights"], context["output_size"]
        table = tf.constant(weights)
        dataset = as_float.map(
            lambda image: colour_target(image, bins, table, size), num_parallel_calls=AUTOTUNE
        )
    if not training:
        dataset = dataset.cache()  # the first pass's tiles, rotations and views, kept
    return dataset.batch(batch_size, drop_remainder=drop).prefetch(AUTOTUNE)
