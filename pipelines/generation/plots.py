"""What a generation run shows: sample grids, nearest training images, the VAE's
latent interpolation and the diffusion model's denoising."""

import numpy as np
from PIL import Image

from pipelines.plots import plot_image_grid
from pipelines.runs import atomic_write

GRID_COLUMNS = 8


def tile(images, columns=GRID_COLUMNS, gap=1):
    """uint8 images (N, H, W, C) as one mosaic, `columns` wide, with a white `gap`."""
    images = np.clip(np.rint(np.asarray(images, "float32")), 0, 255).astype("uint8")
    count, height, width, channels = images.shape
    rows = -(-count // columns)
    mosaic = np.full(
        (rows * (height + gap) + gap, columns * (width + gap) + gap, channels), 255, "uint8"
    )
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = gap + r * (height + gap), gap + c * (width + gap)
        mosaic[top : top + height, left : left + width] = image
    return mosaic


def write_grid(images, path, columns=GRID_COLUMNS, scale=None):
    """A mosaic PNG of the images at their own pixels, enlarged `scale` times (nearest;
    default: so that the mosaic is at least 256 pixels wide)."""
    mosaic = tile(images, columns)
    scale = scale or max(1, 256 // mosaic.shape[1])
    picture = Image.fromarray(mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic)
    if scale > 1:
        size = (picture.width * scale, picture.height * scale)
        picture = picture.resize(size, Image.NEAREST)
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))


def grid_labels(num_classes, columns=GRID_COLUMNS, rows=8):
    """Labels of a sample grid: one class per row (the first `rows` classes), or None."""
    if not num_classes:
        return None
    return np.repeat(np.arange(min(num_classes, rows)), columns)


def plot_nearest(samples, train_images, distances, nearest, path):
    """Each sample beside its nearest training image in pixels (root-mean-square
    difference, 0–255): a distance near 0 is a memorised image."""
    images, captions = [], []
    for i, (index, distance) in enumerate(zip(nearest, distances, strict=True)):
        images += [samples[i], train_images[index]]
        captions += [f"sample {i}", f"nearest: {distance:.1f}"]
    plot_image_grid(
        images, captions, path, "Samples and their nearest training image", columns=GRID_COLUMNS
    )


def plot_sequence(rows, path, title, captions):
    """Rows of images (one process each, e.g. a denoising or an interpolation), captioned
    by column."""
    rows = np.asarray(rows)
    flat = rows.reshape(-1, *rows.shape[2:])
    labels = list(captions) * len(rows)
    plot_image_grid(flat, labels, path, title, columns=rows.shape[1])
