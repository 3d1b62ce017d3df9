"""Readers of the tables behind a data set: which images, which ids, which labels.

Three classification layouts users meet on Kaggle (generation reads them too, labels
optional, and a plain folder of images, `image_folder`):
- `pixel_csv`: one image per row, `label,pixel0..pixelN` (Digit Recognizer);
- `class_folders`: `train/<class>/<image>`, one folder per class;
- `csv_paths`: a CSV of ids and labels whose images sit at `data.train_images`
  (Dogs vs Cats once its file names are listed, or any `id,label` CSV).
The test images of the image layouts are listed by the ids of `data.test`,
found at `data.test_images`.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}


@dataclass
class ImageSource:
    """Rows of one split: ids, raw labels (train only) and pixels or image files."""

    ids: np.ndarray
    labels: np.ndarray | None = None
    pixels: np.ndarray | None = None  # (N, H, W, C) uint8, for pixel_csv
    paths: list[str] | None = None  # image files, for the image layouts

    def __len__(self):
        return len(self.ids)

    def subset(self, rows):
        return ImageSource(
            ids=self.ids[rows],
            labels=None if self.labels is None else self.labels[rows],
            pixels=None if self.pixels is None else self.pixels[rows],
            paths=None if self.paths is None else [self.paths[i] for i in rows],
        )


def read_csv(path, what, ids_as_text=False, columns=None, text=False):
    """A CSV as a DataFrame; one-line `DataError`s for a missing or unreadable file.

    `ids_as_text` keeps the first column as written ("00042" stays "00042");
    `columns` reads only those (each must be there); `text` keeps every value as
    written (a token "None" or "NA" is text, not a missing value).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path} (run `kapps prepare` first?)")
    try:
        header = pd.read_csv(path, nrows=0)
        dtype = str if text else {header.columns[0]: str} if ids_as_text else None
        if columns is not None:
            require_columns(header, columns, path)
        frame = pd.read_csv(path, dtype=dtype, usecols=columns, keep_default_na=not text)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{what} {path} is not a readable CSV: {err}") from None
    if frame.empty:
        raise DataError(f"{what} {path} has no rows")
    return frame


def require_columns(frame, columns, path):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(frame.columns)[:8]}")


def _pixels(frame, pixel_shape, path, skip):
    columns = [c for c in frame.columns if c not in skip]
    expected = int(np.prod(pixel_shape))
    if len(columns) != expected:
        raise DataError(
            f"{path}: {len(columns)} pixel columns, but data.pixel_shape "
            f"{tuple(pixel_shape)} needs {expected}"
        )
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = np.argwhere(~np.isfinite(values) | (values < 0) | (values > 255))
    if len(bad):
        row, col = bad[0]
        raise DataError(
            f"{path}: row {row + 2}, column {columns[col]!r}: pixel value "
            f"{frame.iloc[row][columns[col]]!r} is not a number in 0..255"
        )
    return values.astype(np.uint8).reshape((-1, *pixel_shape))


def _image_paths(root, template, ids, what):
    # `{id}` is the id as written, `{stem}` the id without its extension
    # (Carvana: image "x_01.jpg", mask "x_01_mask.gif").
    paths = [str(root / template.format(id=i, stem=Path(str(i)).stem)) for i in ids]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"{what} image not found: {missing[0]}{more}")
    return paths


def class_folder_images(root):
    """`(image files, their folder names)` of `root/<class>/<image>`."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"train folder not found: {root} (run `kapps prepare` first?)")
    paths, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(str(file))
                labels.append(folder.name)
    if not paths:
        raise DataError(f"{root} holds no class folders with images")
    return paths, np.asarray(labels)


def folder_images(root):
    """The image files below `root`, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root} (run `kapps prepare` first?)")
    paths = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def _labels(frame, label_column, path):
    require_columns(frame, [label_column], path)
    labels = frame[label_column].to_numpy()
    if pd.isna(labels).any():
        raise DataError(f"{path}: row {int(np.argmax(pd.isna(labels))) + 2} has no label")
    return labels


def train_labels(cfg):
    """The raw label of every training row, read without pixels or image files
    (what `Task.resolve` names the classes from)."""
    data = cfg.data
    train = cfg.data_path(data.train)
    if data.format == "class_folders":
        return class_folder_images(train)[1]
    if data.format == "image_folder":
        return None
    if _unlabelled(cfg, train):
        return None
    frame = read_csv(train, "train file", columns=[data.label_column])
    return _labels(frame, data.label_column, train)


def read_train_source(cfg):
    """The training rows (train + validation) of the competition `cfg`."""
    data = cfg.data
    train = cfg.data_path(data.train)
    if data.format == "class_folders":
        paths, labels = class_folder_images(train)
        return ImageSource(ids=np.asarray(paths), labels=labels, paths=paths)
    if data.format == "image_folder":
        paths = folder_images(train)
        return ImageSource(ids=np.asarray([Path(p).name for p in paths]), paths=paths)
    frame = read_csv(train, "train file")
    labels = None if _unlabelled(cfg, train) else _labels(frame, data.label_column, train)
    if data.format == "pixel_csv":
        pixels = _pixels(frame, data.pixel_shape, train, skip={data.label_column})
        return ImageSource(ids=np.arange(len(frame)), labels=labels, pixels=pixels)
    id_column = data.id_column or frame.columns[0]
    require_columns(frame, [id_column], train)
    ids = frame[id_column].to_numpy()
    paths = _image_paths(cfg.data_dir, data.train_images, ids, "train")
    return ImageSource(ids=ids, labels=labels, paths=paths)


def _unlabelled(cfg, train):
    """A generation competition's pixel CSV may have no label column: then no labels."""
    if cfg.competition.task != "generation":
        return False
    if not Path(train).is_file():
        return False  # read_csv names the missing file
    return cfg.data.label_column not in pd.read_csv(train, nrows=0).columns


def submission_id_column(cfg):
    sample = cfg.data_path(cfg.data.sample_submission)
    return cfg.data.id_column or read_csv(sample, "sample submission").columns[0]


def read_test_source(cfg):
    """The test rows with the ids their predictions are submitted under."""
    data = cfg.data
    test = cfg.data_path(data.test)
    frame = read_csv(test, "test file")
    id_column = submission_id_column(cfg)
    if data.format == "pixel_csv":
        has_ids = id_column in frame.columns
        # Kaggle's pixel CSVs often carry no id column: rows are numbered from 1.
        ids = frame[id_column].to_numpy() if has_ids else np.arange(1, len(frame) + 1)
        skip = {id_column} if has_ids else set()
        pixels = _pixels(frame, data.pixel_shape, test, skip=skip)
        return ImageSource(ids=ids, pixels=pixels)
    require_columns(frame, [id_column], test)
    ids = frame[id_column].to_numpy()
    return ImageSource(ids=ids, paths=_image_paths(cfg.data_dir, data.test_images, ids, "test"))


def read_test_images(cfg):
    """The test images by id, each once (as text, in the file's order), with their paths.

    For detection and segmentation, whose test file lists the images to predict.
    """
    test = cfg.data_path(cfg.data.test)
    frame = read_csv(test, "test file", ids_as_text=True)
    id_column = submission_id_column(cfg)
    if id_column not in frame.columns:
        raise DataError(f"{test}: no id column {id_column!r}")
    ids = frame[id_column].astype(str).drop_duplicates().to_numpy()
    return ImageSource(ids=ids, paths=_image_paths(cfg.data_dir, cfg.data.test_images, ids, "test"))
