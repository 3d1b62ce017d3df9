"""Segmentation data: images with class masks from mask files or RLE tables.

Two layouts:
- `mask_folders`: the images in the folder `data.train`, each with a mask
  image at `data.masks` (e.g. "train_masks/{id}_mask.gif"); mask pixel value
  ÷ `data.mask_scale` is the class id (0 background, k the k-th of
  `data.classes`).
- `rle_csv`: a CSV of run-length encoded masks, either one row per image
  (`img,rle_mask`, Carvana) or one per image and class (`id,class,predicted`
  with `data.class_column`); images at `data.train_images`.
RLE strings are checked against each image's size before anything is decoded,
so a malformed one is named by its CSV row. Masks are decoded at the image's
size, then resized (nearest) with the image to `data.image_size` and cached
with it, so augmentation and training never decode again.
"""

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from PIL import Image

from kapps.errors import ConfigError
from kapps.segmentation import rle
from pipelines.data.batching import drop_remainder
from pipelines.data.images import AUTOTUNE, _cache, _resize
from pipelines.data.sources import IMAGE_SUFFIXES, _image_paths, read_csv, require_columns
from pipelines.errors import DataError

KNOWN_MASKS_CHECKED = 8  # masks decoded to detect the RLE order


@dataclass
class MaskSource:
    """Training rows of a segmentation set: images, their sizes, and their masks."""

    ids: np.ndarray
    paths: list[str]
    sizes: np.ndarray  # (N, 2) original (height, width); 0 where the header is unreadable
    mask_paths: list[str] | None = None  # mask_folders
    rles: np.ndarray | None = None  # rle_csv: (N, K) RLE strings, column k for class k + 1

    def __len__(self):
        return len(self.ids)

    def subset(self, rows):
        return MaskSource(
            ids=self.ids[rows],
            paths=[self.paths[i] for i in rows],
            sizes=self.sizes[rows],
            mask_paths=None if self.mask_paths is None else [self.mask_paths[i] for i in rows],
            rles=None if self.rles is None else self.rles[rows],
        )


def image_sizes(paths):
    """(N, 2) heights and widths read from the files' headers; (0, 0) if unreadable."""
    sizes = np.zeros((len(paths), 2), np.int64)
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                sizes[index] = image.height, image.width
        except (OSError, ValueError):
            continue  # a corrupt image: the decoder names it and skips it
    return sizes


def _folder_images(root):
    if not root.is_dir():
        raise DataError(f"train image folder not found: {root} (run `kapps prepare` first?)")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{root} holds no images")
    return files


def _mask_folder_source(cfg):
    data = cfg.data
    files = _folder_images(cfg.data_path(data.train))
    ids = np.asarray([f.stem for f in files])
    mask_paths = _image_paths(cfg.data_dir, data.masks, ids, "mask")
    paths = [str(f) for f in files]
    return MaskSource(ids=ids, paths=paths, sizes=image_sizes(paths), mask_paths=mask_paths)


def _rle_table(frame, cfg, path):
    """(ids, (N, K) RLE strings, CSV line of each cell) from a wide or long RLE CSV."""
    data = cfg.data
    id_col = data.id_column or frame.columns[0]
    require_columns(frame, [id_col, data.rle_column] + [c for c in [data.class_column] if c], path)
    frame = frame.assign(_line=np.arange(len(frame)) + 2)
    text = frame[data.rle_column].fillna("").astype(str).str.strip()
    frame[data.rle_column] = text.where(text != data.rle_empty, "")
    classes = [str(c) for c in data.classes]
    if data.class_column is None:
        if len(classes) != 1:
            raise ConfigError(
                f"{path} has one RLE column but data.classes lists {len(classes)} classes; "
                "name the class column in data.class_column"
            )
        frame["_class"] = 0
    else:
        names = frame[data.class_column].astype(str)
        unknown = ~names.isin(classes)
        if unknown.any():
            row = frame[unknown].iloc[0]
            raise DataError(
                f"{path}: row {row['_line']} has class {row[data.class_column]!r}, "
                f"not one of data.classes {classes}"
            )
        frame["_class"] = names.map({c: i for i, c in enumerate(classes)})
    duplicated = frame.duplicated([id_col, "_class"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise DataError(f"{path}: row {row['_line']} repeats id {row[id_col]!r} and its class")
    ids = frame[id_col].drop_duplicates().to_numpy()
    position = {value: i for i, value in enumerate(ids)}
    rles = np.full((len(ids), len(classes)), "", dtype=object)
    lines = np.zeros((len(ids), len(classes)), np.int64)
    rows = frame[id_col].map(position).to_numpy()
    rles[rows, frame["_class"]] = frame[data.rle_column].to_numpy()
    lines[rows, frame["_class"]] = frame["_line"].to_numpy()
    return ids, rles, lines


def check_rles(rles, lines, sizes, ids, path):
    """A `DataError` naming the first RLE that is malformed for its image's size."""
    for (row, column), text in np.ndenumerate(rles):
        height, width = sizes[row]
        if not text or not height:
            continue
        try:
            rle.parse(text, height * width)
        except rle.RLEError as err:
            raise DataError(
                f"{path}: row {lines[row, column]} (id {ids[row]!r}): malformed RLE: {err}"
            ) from None


def _rle_source(cfg):
    data = cfg.data
    path = cfg.data_path(data.train)
    ids, rles, lines = _rle_table(read_csv(path, "train file", ids_as_text=True), cfg, path)
    paths = _image_paths(cfg.data_dir, data.train_images, ids, "train")
    sizes = image_sizes(paths)
    check_rles(rles, lines, sizes, ids, path)
    return MaskSource(ids=ids, paths=paths, sizes=sizes, rles=rles)


def read_mask_source(cfg):
    """The training rows (train + validation) of the segmentation competition `cfg`."""
    if not cfg.data.classes:
        raise ConfigError("a segmentation competition lists its foreground classes in data.classes")
    if cfg.data.format == "mask_folders":
        return _mask_folder_source(cfg)
    return _rle_source(cfg)


def read_mask_file(path, scale):
    """A mask image's class ids (H, W) ÷ `scale`.

    Palette images (GIF, Pascal VOC's PNGs) give their palette indices, grey
    images their values, colour images their first channel.
    """
    with Image.open(path) as image:
        if image.mode not in ("L", "P", "1"):
            image = image.getchannel(0)
        values = np.asarray(image, dtype=np.int64)
    return (values // scale).astype(np.uint8)


ORDER_NAMES = {"F": "column-major", "C": "row-major"}


def detect_order(cfg, source):
    """The RLE order of `source` and a sentence saying how it was found.

    `data.rle_order` "F" or "C" is taken as given. With "auto", the RLEs of a
    few non-empty training masks are decoded both ways and compared with the
    mask images at `data.masks`. The config is not changed: `Task.resolve` records it.
    """
    data = cfg.data
    if data.rle_order != "auto":
        return data.rle_order, None
    if not data.masks:
        raise ConfigError(
            "data.rle_order is auto but there are no known masks (data.masks) to detect "
            "it from; set data.rle_order to F (column-major) or C (row-major)"
        )
    rows = [i for i in range(len(source)) if source.rles[i, 0] and source.sizes[i, 0]]
    rows = rows[:KNOWN_MASKS_CHECKED]
    if not rows:
        raise ConfigError("no non-empty training RLE to detect data.rle_order from; set it")
    mask_paths = _image_paths(cfg.data_dir, data.masks, source.ids[rows], "mask")
    known = [read_mask_file(p, data.mask_scale) == 1 for p in mask_paths]
    try:
        order, agreement = rle.detect_order(source.rles[rows, 0], known)
    except rle.RLEError as err:
        raise DataError(f"{cfg.data_path(data.train)}: {err}") from None
    how = f"RLE order: {order} ({ORDER_NAMES[order]}), found by decoding {len(rows)} known masks"
    how += f" ({data.masks})"
    return order, f"{how} ({agreement:.1%} of pixels agree)"


@dataclass
class PairSet:
    """Decoded (image, mask) pairs of one split and which source rows they are."""

    dataset: tf.data.Dataset  # (uint8 image (h, w, C), uint8 mask (h, w), row)
    rows: np.ndarray
    skipped: list = field(default_factory=list)
    sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # original sizes

    def __len__(self):
        return len(self.rows)


def _mask_file_reader(scale):
    def read(path):
        return read_mask_file(path.decode(), scale)

    return read


def _rle_decoder(order):
    def decode(rles, height, width):
        mask = np.zeros((height, width), np.uint8)
        for index, text in enumerate(rles):
            if text:
                mask[rle.decode(text.decode(), (height, width), order) == 1] = index + 1
        return mask

    return decode


def decoded_pairs(
    source,
    image_size,
    channels,
    num_classes,
    *,
    order=None,
    scale=1,
    cache="memory",
    cache_path=None,
):
    """Decode every image and mask of `source` once; bad masks raise `DataError`.

    Returns a `PairSet`. A mask file of another size than its image, or with
    a class id beyond `num_classes - 1`, is named in the error.
    """
    image_size = tuple(image_size)
    rows = np.arange(len(source), dtype=np.int64)
    masks = source.rles if source.rles is not None else np.asarray(source.mask_paths)
    decode_rles = _rle_decoder(order)

    def load(path, mask_input, row):
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False
        )
        image.set_shape([None, None, channels])
        shape = tf.shape(image)
        if source.rles is not None:
            mask = tf.numpy_function(decode_rles, [mask_input, shape[0], shape[1]], tf.uint8)
        else:
            mask = tf.numpy_function(_mask_file_reader(scale), [mask_input], tf.uint8)
        mask = tf.ensure_shape(mask, [None, None])
        same_size = tf.reduce_all(tf.shape(mask) == shape[:2])
        check = tf.stack([tf.cast(same_size, tf.int32), tf.cast(tf.reduce_max(mask), tf.int32)])
        resized = tf.image.resize(mask[..., None], image_size, method="nearest")[..., 0]
        return _resize(image, image_size), resized, row, check

    dataset = tf.data.Dataset.from_tensor_slices((source.paths, masks, rows))
    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=True).ignore_errors()
    dataset = _cache(dataset, cache, cache_path)
    decoded, checks = [], []
    for row, check in dataset.map(lambda *x: (x[2], x[3])).as_numpy_iterator():
        decoded.append(row)
        checks.append(check)
    decoded = np.asarray(decoded, np.int64)
    checks = np.asarray(checks, np.int64).reshape(-1, 2)
    _raise_on_bad_masks(source, decoded, checks, num_classes)
    dataset = dataset.map(lambda image, mask, row, check: (image, mask, row))
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(decoded)))
    skipped = [source.paths[i] for i in sorted(set(rows) - set(decoded))]
    return PairSet(dataset, decoded, skipped, source.sizes[decoded])


def _raise_on_bad_masks(source, decoded, checks, num_classes):
    if not len(checks):
        return
    wrong_size = np.flatnonzero(checks[:, 0] == 0)
    if len(wrong_size):
        row = decoded[wrong_size[0]]
        raise DataError(
            f"mask {source.mask_paths[row]} is not the size of its image {source.paths[row]} "
            f"({source.sizes[row, 0]}×{source.sizes[row, 1]})"
        )
    unknown = np.flatnonzero(checks[:, 1] >= num_classes)
    if len(unknown):
        row = decoded[unknown[0]]
        raise DataError(
            f"mask {source.mask_paths[row]} holds class id {checks[unknown[0], 1]}, but there "
            f"are {num_classes} classes (0..{num_classes - 1}); check data.classes and "
            "data.mask_scale"
        )


def batched_pairs(pair_set, *, batch_size, shuffle=False, augment=None, seed=0):
    """Batches of (float32 raw pixels, int32 masks), augmented together when asked."""
    dataset = pair_set.dataset.map(lambda image, mask, row: (image, mask))
    if shuffle:
        dataset = dataset.shuffle(len(pair_set), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(
        batch_size, drop_remainder=drop_remainder(len(pair_set), batch_size, shuffle)
    )

    def prepare(images, masks):
        images = tf.cast(images, tf.float32)
        masks = tf.cast(masks[..., None], tf.float32)
        if augment is not None:
            out = augment({"images": images, "segmentation_masks": masks})
            images, masks = out["images"], out["segmentation_masks"]
        return images, tf.cast(tf.round(masks[..., 0]), tf.int32)

    return dataset.map(prepare, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
