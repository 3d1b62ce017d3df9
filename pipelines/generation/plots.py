"""What a generation run shows: sample grids, nearest training images, the VAE's
latent interpolation and the diffusion model's denoising."""

import numpy as np
from PIL import Image

from kapps.generation import DDPM, Autoencoder
from pipelines.generation.score import requested_labels, sample
from pipelines.plots import plot_image_grid
from pipelines.runs import atomic_write

GRID_COLUMNS = 8
NEAREST_SHOWN = 8
SEQUENCE_SHOWN = 4


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
    default: so that the mosaic is at least 512 pixels wide)."""
    mosaic = tile(images, columns)
    scale = scale or -(-512 // mosaic.shape[1])
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


def nearest_images(images, train_images):
    """Index and root-mean-square pixel distance (0–255) of each image's nearest training
    image: a distance near 0 is a copy."""
    a = images.reshape(len(images), -1).astype("float64")
    b = train_images.reshape(len(train_images), -1).astype("float64")
    squared = (a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None, :]
    nearest = squared.argmin(axis=1)
    rms = np.sqrt(np.maximum(squared[np.arange(len(a)), nearest], 0) / a.shape[1])
    return nearest, rms


def write_pictures(model, images, train_images, run, generation, num_classes):
    """The pictures of a trained run: `samples.png` (a class a row when conditional),
    `nearest_training.png`, and the VAE's `interpolation.png` or the diffusion model's
    `denoising.png`."""
    shown = images[:NEAREST_SHOWN]
    nearest, distances = nearest_images(shown, train_images)
    plot_nearest(shown, train_images, distances, nearest, run.plot("nearest_training"))
    labels = grid_labels(num_classes)
    count = len(labels) if labels is not None else GRID_COLUMNS**2
    write_grid(sample(model, count, generation, labels, seed=1), run.plot("samples"))
    if isinstance(model, Autoencoder):  # the latent line between two training images
        picks = np.linspace(0, len(train_images) - 1, 2 * SEQUENCE_SHOWN).astype(int)
        codes = model.encode(train_images[picks])  # spread out: often other classes
        weights = np.linspace(0, 1, GRID_COLUMNS)[None, :, None]
        line = codes[0::2, None] * (1 - weights) + codes[1::2, None] * weights
        decoded = model.decode(line.reshape(-1, codes.shape[1]))
        plot_sequence(
            decoded.reshape((SEQUENCE_SHOWN, GRID_COLUMNS, *images.shape[1:])),
            run.plot("interpolation"),
            "Decoding the line between two training images' codes",
            [f"{w:.2f}" for w in weights.ravel()],
        )
    if isinstance(model, DDPM):
        noise = np.random.default_rng(2).standard_normal((SEQUENCE_SHOWN, *images.shape[1:]))
        _, kept = model.denoise(
            noise.astype("float32"),
            requested_labels(SEQUENCE_SHOWN, num_classes),
            generation.sampler,
            generation.steps,
            generation.guidance_scale,
            keep=GRID_COLUMNS,
            seed=2,
        )
        rows = np.clip((np.stack([x0 for _, x0 in kept], axis=1) + 1) * 127.5, 0, 255)
        plot_sequence(
            rows,
            run.plot("denoising"),
            "The predicted x₀ along the reverse process",
            [f"t={t}" for t, _ in kept],
        )
