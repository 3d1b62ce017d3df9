"""Captioned images → tokenised pairs as tf.data, split by image, never by caption.

Two layouts:
- `captions`: a CSV of `image,caption` rows, several per image (Flickr8k's
  `captions.txt`), the images at `data.train_images`; an optional
  `data.label_column` names a class per image for zero-shot evaluation;
- `coco_captions`: COCO's captions JSON (`images` with `id` and `file_name`,
  `annotations` with `image_id` and `caption`), the files at `data.train_images`.

Every epoch shows each training image once, with one of its captions chosen
at random, so a batch never holds the same image twice (in-batch negatives
must be other images).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from pipelines.data.batching import drop_remainder
from pipelines.data.images import AUTOTUNE
from pipelines.data.sources import ImageSource, read_csv, require_columns
from pipelines.data.text import WordTokenizer
from pipelines.errors import DataError


@dataclass
class CaptionTable:
    """Unique images, every caption, and which image each caption describes."""

    images: np.ndarray  # image ids (file names as written), first-seen order
    paths: list  # image files
    captions: list  # caption texts
    owner: np.ndarray  # image index of each caption
    rows: list  # where each caption is in the file ("row 7"), for error messages
    labels: list | None = None  # zero-shot class of each image (None: unlabelled)
    where: str = ""  # the file, for error messages

    def source(self, image_indices):
        """An `ImageSource` of some images (in the given order)."""
        return ImageSource(
            ids=self.images[image_indices], paths=[self.paths[i] for i in image_indices]
        )

    def captions_of(self, image_indices):
        """For each image, the indices of its captions."""
        by_image = pd.Series(np.arange(len(self.owner))).groupby(self.owner).apply(np.asarray)
        return [by_image[i] for i in image_indices]

    def row_name(self, image_index):
        """Where an image's first caption is in the file ("row 7", "annotation 3")."""
        return self.rows[int(np.argmax(self.owner == image_index))]


def _image_path(root, template, image):
    return str(Path(root) / template.format(id=image, stem=Path(str(image)).stem))


def _check(frame, path, row_label, root, template):
    """One-line errors for empty captions and missing images, naming the row."""
    for position, (image, caption) in enumerate(zip(frame["image"], frame["caption"], strict=True)):
        where = f"{path}: {row_label(position)}"
        if pd.isna(image) or not str(image).strip():
            raise DataError(f"{where}: no image named")
        if pd.isna(caption) or not str(caption).strip():
            raise DataError(f"{where}: empty caption for image {image!r}")
    for image in frame["image"].drop_duplicates():
        if not Path(_image_path(root, template, image)).is_file():
            position = int(np.argmax(frame["image"].to_numpy() == image))
            raise DataError(
                f"{path}: {row_label(position)}: image {image!r} not found at "
                f"{_image_path(root, template, image)}"
            )


def _coco_frame(path):
    try:
        data = json.loads(Path(path).read_text())
        files = {item["id"]: item["file_name"] for item in data["images"]}
        notes = data["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(f"{path} is not a COCO captions file ({err})") from None
    for position, note in enumerate(notes):
        if note.get("image_id") not in files:
            raise DataError(
                f"{path}: annotation {position} (id {note.get('id')}): image_id "
                f"{note.get('image_id')!r} is not in its images"
            )
    images = [files[note["image_id"]] for note in notes]
    return pd.DataFrame({"image": images, "caption": [n.get("caption") for n in notes]})


def read_caption_table(cfg, file=None, images=None):
    """The captions of `file` (default `data.train`) with their images (`data.train_images`)."""
    data = cfg.data
    path = cfg.data_path(file or data.train)
    template = images or data.train_images
    if not path.is_file():
        raise DataError(f"captions file not found: {path} (run `kapps prepare` first?)")
    if data.format == "coco_captions":
        frame = _coco_frame(path)

        def row_label(i):
            return f"annotation {i}"
    else:
        frame = read_csv(path, "captions file")
        require_columns(frame, [data.image_column, data.caption_column], path)
        frame = frame.rename(columns={data.image_column: "image", data.caption_column: "caption"})

        def row_label(i):
            return f"row {i + 2}"

    if frame.empty:
        raise DataError(f"{path} has no captions")
    _check(frame, path, row_label, cfg.data_dir, template)
    images, owner = np.unique(frame["image"].astype(str).to_numpy(), return_inverse=True)
    labels = None
    if data.label_column in frame.columns:
        first = frame.groupby(owner)[data.label_column].first()
        labels = [None if pd.isna(v) else str(v) for v in first.reindex(range(len(images)))]
    return CaptionTable(
        images=images,
        paths=[_image_path(cfg.data_dir, template, i) for i in images],
        captions=frame["caption"].astype(str).tolist(),
        owner=owner,
        rows=[row_label(i) for i in range(len(frame))],
        labels=labels,
        where=str(path),
    )


def split_images(count, val_fraction, seed):
    """`(train, val)` image indices; every caption of an image goes with it."""
    order = np.random.default_rng(seed).permutation(count)
    cut = max(1, int(round(count * val_fraction)))
    if count - cut < 2:
        raise DataError(
            f"{count} images are too few to split off {val_fraction:.0%} for validation"
        )
    return np.sort(order[cut:]), np.sort(order[:cut])


# Tokens ------------------------------------------------------------------------


def token_space(tokenizer):
    """`(vocab_size, offset, end id)` of caption tokens: padding is always id 0, and
    every caption ends with an end-of-text id (the word tokenizer's own; others
    are shifted up by one and get a new id at the end)."""
    if tokenizer.kind == "word":
        return tokenizer.vocab_size, 0, WordTokenizer.END
    return tokenizer.vocab_size + 2, 1, tokenizer.vocab_size + 1


def caption_tokens(tokenizer, texts, seq_len):
    """(N, seq_len) int32 token ids, end-of-text last, zero-padded; longer captions
    are cut so the end-of-text token always fits."""
    _, offset, end = token_space(tokenizer)
    out = np.zeros((len(texts), seq_len), np.int32)
    for i, text in enumerate(texts):
        ids = [t + offset for t in tokenizer.encode(text)][: seq_len - 1] + [end]
        out[i, : len(ids)] = ids
    return out


def _features(images, tokens):
    return {
        "images": tf.cast(images, tf.float32),
        "token_ids": tokens,
        "padding_mask": tf.cast(tokens != 0, tf.int32),
    }


def pairs(image_set, tokens, captions_per_row, *, batch_size, shuffle=False, augment=None, seed=0):
    """Batches of `{"images", "token_ids", "padding_mask"}` for `fit`.

    Args:
        image_set: decoded images (`decoded_images`) whose rows are the images.
        tokens: (captions, seq_len) token ids of every caption.
        captions_per_row: for each image row, its caption indices.
        shuffle: training: a new order and a random caption of each image every
            epoch, whole batches only. Otherwise each image with its first caption.
    """
    width = max(len(c) for c in captions_per_row)
    table = np.zeros((len(captions_per_row), width), np.int64)
    for row, indices in enumerate(captions_per_row):
        table[row, : len(indices)] = indices
    table = tf.constant(table)
    counts = tf.constant([len(c) for c in captions_per_row], tf.int64)
    tokens = tf.constant(tokens)
    dataset = image_set.dataset
    if shuffle:
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

        def random_caption(pair, draw):
            image, row = pair
            return image, tf.gather(tokens, table[row, draw % counts[row]])

        dataset = tf.data.Dataset.zip(dataset, draws).map(random_caption)
        dataset = dataset.shuffle(len(image_set), seed=seed, reshuffle_each_iteration=True)
    else:
        dataset = dataset.map(lambda image, row: (image, tf.gather(tokens, table[row, 0])))
    dataset = dataset.batch(
        batch_size, drop_remainder=drop_remainder(len(image_set), batch_size, shuffle)
    )

    def features(images, batch_tokens):
        x = _features(images, batch_tokens)
        if augment is not None:
            x["images"] = augment(x["images"])
        return x

    return dataset.map(features, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def image_batches(image_set, batch_size):
    """Batches of float32 raw images, in row order (for `encode_images`)."""
    dataset = image_set.dataset.map(lambda image, row: {"images": tf.cast(image, tf.float32)})
    return dataset.batch(batch_size).prefetch(AUTOTUNE)
