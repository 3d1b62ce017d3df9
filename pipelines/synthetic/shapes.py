"""Deterministic scenes of coloured shapes over crops of real photographs.

The backgrounds are random crops of the two photographs scikit-learn ships
(`load_sample_images`: a Chinese temple and a flower), so the generated
competitions need no download yet are not flat-background toys. Each scene
draws ellipses, polygons and blobs at varied scale and aspect, partly
overlapping (a later shape hides an earlier one), and returns the pixel-exact
class mask with the shapes' polygons and boxes.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from sklearn.datasets import load_sample_images

SHAPES = ("ellipse", "polygon", "blob")


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 class ids, 0 background, k = SHAPES[k - 1]
    classes: list  # class id (1-based) of each shape, in drawing order
    boxes: np.ndarray  # (N, 4) xyxy pixel boxes of each shape's visible part


_PHOTOS = None


def photos():
    global _PHOTOS
    if _PHOTOS is None:
        _PHOTOS = [np.asarray(p) for p in load_sample_images().images]
    return _PHOTOS


def background(rng, size):
    """A random crop (64–320 px square) of one of the photographs, resized to `size`."""
    photo = photos()[rng.integers(len(photos()))]
    side = int(rng.integers(64, min(photo.shape[:2]) + 1))
    top = int(rng.integers(0, photo.shape[0] - side + 1))
    left = int(rng.integers(0, photo.shape[1] - side + 1))
    crop = Image.fromarray(photo[top : top + side, left : left + side])
    return crop.resize((size, size), Image.Resampling.BILINEAR)


def outline(kind, rng, centre, radius):
    """Polygon vertices [(x, y), …] of a shape of `kind` around `centre`."""
    cx, cy = centre
    angle = rng.uniform(0, 2 * np.pi)
    if kind == "ellipse":
        theta = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        aspect = rng.uniform(0.45, 1.0)
        x, y = radius * np.cos(theta), radius * aspect * np.sin(theta)
    elif kind == "polygon":
        corners = int(rng.integers(3, 5))  # triangles and quadrilaterals: sharp corners
        theta = np.sort(
            np.linspace(0, 2 * np.pi, corners, endpoint=False) + rng.uniform(-0.25, 0.25, corners)
        )
        stretch = rng.uniform(0.6, 1.0)
        x, y = radius * np.cos(theta), radius * stretch * np.sin(theta)
    elif kind == "blob":
        theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        wobble = np.ones_like(theta)
        lobes = int(rng.integers(3, 6))  # a few deep lobes, so concave where ellipses are not
        wobble += rng.uniform(0.2, 0.3) * np.sin(lobes * theta + rng.uniform(0, 2 * np.pi))
        wobble += rng.uniform(0.0, 0.1) * np.sin((lobes + 1) * theta + rng.uniform(0, 2 * np.pi))
        x, y = radius * wobble * np.cos(theta), radius * wobble * np.sin(theta)
    else:
        raise ValueError(f"unknown shape {kind!r}; one of {SHAPES}")
    rotated_x = x * np.cos(angle) - y * np.sin(angle) + cx
    rotated_y = x * np.sin(angle) + y * np.cos(angle) + cy
    return list(zip(rotated_x.tolist(), rotated_y.tolist(), strict=True))


def colour(rng):
    """A saturated colour, light or dark, so shapes differ from each other and the photo."""
    hue = rng.uniform(0, 1)
    value = rng.choice([0.35, 0.95]) * rng.uniform(0.85, 1.0)
    rgb = np.clip(np.abs(np.mod(hue * 6 + np.array([0, 4, 2]), 6) - 3) - 1, 0, 1)
    return tuple(int(c) for c in np.round(255 * value * (0.25 + 0.75 * rgb)))


def scene(rng, size=64, shapes=(1, 3), radius=(0.15, 0.35), min_visible=0.0):
    """One scene: `shapes` = (min, max) shape count, `radius` as a fraction of `size`.

    `min_visible`: redraw the scene until every shape keeps at least this
    fraction of its own area visible (a shape hidden almost entirely by later
    ones has no recognisable outline, so its box would be a guess).
    """
    while True:
        drawn, visible_fraction = _draw(rng, size, shapes, radius)
        if min(visible_fraction, default=1.0) >= min_visible:
            return drawn


def _draw(rng, size, shapes, radius):
    image = background(rng, size)
    mask = Image.new("L", (size, size), 0)
    paint, label = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    classes, areas = [], []
    for _ in range(int(rng.integers(shapes[0], shapes[1] + 1))):
        kind = int(rng.integers(len(SHAPES)))
        r = rng.uniform(*radius) * size
        centre = rng.uniform(r * 0.6, size - r * 0.6, 2)
        points = outline(SHAPES[kind], rng, centre, r)
        paint.polygon(points, fill=colour(rng))
        label.polygon(points, fill=len(classes) + 1)  # instance id first, classes below
        alone = Image.new("1", (size, size), 0)
        ImageDraw.Draw(alone).polygon(points, fill=1)
        areas.append(max(int(np.asarray(alone).sum()), 1))
        classes.append(kind + 1)
    instances = np.asarray(mask)
    class_mask = np.zeros_like(instances)
    boxes, visible, fractions = [], [], []
    for index, class_id in enumerate(classes, start=1):
        ys, xs = np.nonzero(instances == index)
        fractions.append(len(xs) / areas[index - 1])
        if len(xs) == 0:
            continue  # fully hidden by later shapes
        class_mask[instances == index] = class_id
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        visible.append(class_id)
    drawn = Scene(
        np.asarray(image), class_mask, visible, np.asarray(boxes, np.float32).reshape(-1, 4)
    )
    return drawn, fractions
