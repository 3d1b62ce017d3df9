"""Colorization's targets (Zhang, Isola and Efros 2016): CIE Lab, quantised ab bins,
soft encoding, class rebalancing and the annealed-mean decoding.

sRGB ↔ Lab (D65 white) is written out here with TensorFlow ops, so the
tf.data pipeline and the plots share one conversion: no library in kapps'
dependencies converts colour spaces inside a graph.
"""

import functools

import numpy as np
import tensorflow as tf

GRID = 10.0  # ab bin width (the paper's grid size)
NEIGHBOURS = 5  # soft encoding: the 5 nearest bins …
SIGMA = 5.0  # … weighted by a Gaussian of σ = 5
ANNEAL = 0.38  # decoding temperature of the annealed mean
WHITE = (0.95047, 1.0, 1.08883)  # D65
RGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)


def rgb_to_lab(rgb):
    """sRGB in [0, 255] (…, 3) → Lab: L in [0, 100], a and b about ±110."""
    rgb = tf.cast(rgb, tf.float32) / 255.0
    linear = tf.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = tf.tensordot(linear, tf.constant(RGB_TO_XYZ.T, tf.float32), 1) / WHITE
    eps = (6 / 29) ** 3
    f = tf.where(
        xyz > eps, tf.math.pow(tf.maximum(xyz, eps), 1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29
    )
    fx, fy, fz = tf.unstack(f, axis=-1)
    return tf.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1)


def lab_to_rgb(lab):
    """Lab (…, 3) → sRGB in [0, 255], clipped to the gamut."""
    lab = tf.cast(lab, tf.float32)
    lightness, a, b = tf.unstack(lab, axis=-1)
    fy = (lightness + 16) / 116
    f = tf.stack([fy + a / 500, fy, fy - b / 200], axis=-1)
    xyz = tf.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * WHITE
    linear = tf.tensordot(xyz, tf.constant(np.linalg.inv(RGB_TO_XYZ).T, tf.float32), 1)
    linear = tf.clip_by_value(linear, 0.0, 1.0)
    rgb = tf.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear)
    return tf.clip_by_value(rgb, 0.0, 1.0) * 255.0


def grayscale(rgb):
    """The images' lightness alone, as RGB (a = b = 0): what the colorization network sees."""
    lab = rgb_to_lab(rgb)
    return lab_to_rgb(tf.concat([lab[..., :1], tf.zeros_like(lab[..., 1:])], axis=-1))


@functools.cache
def ab_bins():
    """The in-gamut ab bin centres (Q, 2): the points of the grid of step 10 that
    some sRGB colour rounds to.

    261 bins: the sRGB cube sampled every 2 levels finds the same cells as
    every level does. The paper counts 313 with its own gamut test (it does
    not say which); the count only sets the size of the output layer.
    """
    levels = np.arange(0, 256, 2, dtype=np.float32)
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    ab = rgb_to_lab(cube).numpy()[:, 1:]
    return (np.unique(np.round(ab / GRID), axis=0) * GRID).astype(np.float32)


def soft_encode(ab, bins):
    """ab values (…, 2) → (…, Q) weights on the 5 nearest bins (Gaussian, σ = 5), summing to 1."""
    bins = tf.constant(bins, tf.float32)
    flat = tf.reshape(tf.cast(ab, tf.float32), [-1, 2])
    distance = tf.reduce_sum((flat[:, None, :] - bins[None]) ** 2, -1)  # (P, Q) squared
    nearest, index = tf.math.top_k(-distance, NEIGHBOURS)
    weights = tf.nn.softmax(nearest / (2 * SIGMA**2), axis=-1)  # exp(−d² / 2σ²), normalised
    rows = tf.repeat(tf.range(tf.shape(flat)[0]), NEIGHBOURS)
    indices = tf.stack([rows, tf.reshape(index, [-1])], axis=1)
    encoded = tf.scatter_nd(indices, tf.reshape(weights, [-1]), [tf.shape(flat)[0], len(bins)])
    return tf.reshape(encoded, tf.concat([tf.shape(ab)[:-1], [len(bins)]], 0))


def rebalancing_weights(counts, bins, lam=0.5):
    """Per-bin loss weights from the bins' empirical counts (the paper's eq. 4).

    p̃ is the bin distribution smoothed with a Gaussian (σ = 5) over the ab
    plane; w ∝ ((1 − λ) p̃ + λ / Q)⁻¹, scaled so that Σ p̃ w = 1.
    """
    p = np.asarray(counts, np.float64)
    p = p / p.sum()
    distance = ((bins[:, None, :] - bins[None]) ** 2).sum(-1)
    kernel = np.exp(-distance / (2 * SIGMA**2))
    smoothed = kernel @ p
    smoothed = smoothed / smoothed.sum()
    weights = 1.0 / ((1 - lam) * smoothed + lam / len(bins))
    return (weights / (smoothed * weights).sum()).astype(np.float32)


def nearest_bin(ab, bins):
    """Index of the nearest bin of each ab value (…, 2) → (…)."""
    distance = tf.reduce_sum((tf.cast(ab, tf.float32)[..., None, :] - bins) ** 2, -1)
    return tf.argmin(distance, axis=-1, output_type=tf.int32)


def annealed_mean(probabilities, bins, temperature=ANNEAL):
    """(…, Q) bin probabilities → ab (…, 2): the mean of the distribution sharpened by T."""
    logits = tf.math.log(tf.cast(probabilities, tf.float32) + 1e-8) / temperature
    return tf.tensordot(tf.nn.softmax(logits, -1), tf.constant(bins, tf.float32), 1)
