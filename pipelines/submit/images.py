"""The image-zip submission of Kaggle's generative competitions: `images.zip` of N images.

"I'm Something of a Painter Myself" wants 7,000–10,000 256×256 RGB JPEGs in one
zip. The writer checks the count and every image's size and mode before the zip
exists, and writes it atomically; the validator reads a zip back the same way.
"""

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipelines.errors import SubmissionError
from pipelines.runs import atomic_write

MODES = {1: "L", 3: "RGB"}
FORMATS = {"png": "PNG", "jpg": "JPEG"}


def _check_count(count, min_images, max_images, name):
    if not min_images <= count <= max_images:
        raise SubmissionError(
            f"{name}: {count} images; the competition takes {min_images}–{max_images}"
        )


def write_image_zip(path, batches, names, size, channels, image_format, min_images, max_images):
    """Write `images.zip` from `batches` of 0–255 images (N, H, W, C), one file per name.

    Raises `SubmissionError` (and writes nothing) for a count outside the bounds,
    or an image whose size or channels differ from `size` and `channels`.
    """
    path = Path(path)
    _check_count(len(names), min_images, max_images, path.name)
    mode, fmt = MODES[channels], FORMATS[image_format]

    def write(tmp):
        written = 0
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for batch in batches:
                for image in np.asarray(batch):
                    if written >= len(names):
                        raise SubmissionError(f"{path.name}: more images than names")
                    if image.shape != (*size, channels):
                        raise SubmissionError(
                            f"{path.name}: {names[written]} is {image.shape}, the "
                            f"competition wants {(*size, channels)}"
                        )
                    pixels = np.clip(np.rint(image), 0, 255).astype("uint8")
                    buffer = io.BytesIO()
                    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(
                        buffer, fmt
                    )
                    archive.writestr(names[written], buffer.getvalue())
                    written += 1
        if written != len(names):
            raise SubmissionError(f"{path.name}: {written} images for {len(names)} names")

    atomic_write(path, write)
    return path


def read_image_zip(path, size=None, channels=None):
    """`(names, images uint8 (N, H, W, C))` of an image zip; one-line `SubmissionError`s
    for a missing or unreadable zip, an unreadable image, or one of another size or mode."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"submission not found: {path}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise SubmissionError(f"{path.name} is not a zip file") from None
    names, images = [], []
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            try:
                image = Image.open(io.BytesIO(archive.read(info)))
                image.load()
            except (UnidentifiedImageError, OSError):
                raise SubmissionError(
                    f"{path.name}: {info.filename} is not a readable image"
                ) from None
            pixels = np.asarray(image)
            pixels = pixels[..., None] if pixels.ndim == 2 else pixels
            if size is not None and pixels.shape[:2] != tuple(size):
                raise SubmissionError(
                    f"{path.name}: {info.filename} is {pixels.shape[1]}×{pixels.shape[0]} "
                    f"pixels, the competition wants {size[1]}×{size[0]}"
                )
            if channels is not None and image.mode != MODES[channels]:
                raise SubmissionError(
                    f"{path.name}: {info.filename} has mode {image.mode}, the competition "
                    f"wants {MODES[channels]}"
                )
            names.append(info.filename)
            images.append(pixels)
    if not names:
        raise SubmissionError(f"{path.name} holds no images")
    return names, np.stack(images)


def validate_image_zip(path, size, channels, min_images, max_images):
    """Check an image zip as the competition would; returns its image count."""
    names, _ = read_image_zip(path, size, channels)
    _check_count(len(names), min_images, max_images, Path(path).name)
    return len(names)
