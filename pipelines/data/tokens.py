"""One row per token (Kaggle's Text Normalization Challenge): reading the files,
which tokens the model sees, each one's context, and the two vocabularies.

As the winning solutions did, the model reads one token at a time with its
neighbours: the characters of up to `data.context_words` words on each side,
the token itself between two markers, and writes the token's spoken words (or
`<self>`: the token unchanged). Tokens no rule or training example marks as
changeable — plain words and punctuation — are copied without the model.
"""

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipelines.data.sources import read_csv, require_columns
from pipelines.errors import DataError

CLASSES = (  # Kaggle's 16 English classes
    "PLAIN",
    "PUNCT",
    "DATE",
    "LETTERS",
    "CARDINAL",
    "VERBATIM",
    "DECIMAL",
    "MEASURE",
    "MONEY",
    "ORDINAL",
    "TIME",
    "ELECTRONIC",
    "DIGIT",
    "FRACTION",
    "TELEPHONE",
    "ADDRESS",
)
UNCHANGED_CLASSES = ("PLAIN", "PUNCT")
SOURCE_SPECIALS = ("<pad>", "<unk>", "<token>", "</token>")
TARGET_SPECIALS = ("<pad>", "<start>", "<end>", "<self>", "<unk>")
START, END, SELF = 1, 2, 3
MAX_SOURCE_CHARS = 32  # a token's own characters beyond this are cut (a long URL)
CONTEXT_CHARS = 16  # the context's characters each side, nearest kept
# Written forms a rule reads aloud: digits, symbols and letters outside a–z, an acronym,
# an address with a dot, at-sign or slash inside.
PATTERN = re.compile(r"\d|[^A-Za-z.,;:!?()'\"-]|^[A-Z]{2,}$|\w[.@/]\w")


def read_tokens(path, training):
    """A token CSV with `sentence_id, token_id, before` (and `after`, `class` when
    `training`); an empty `before`, or a class Kaggle does not have, is a `DataError`."""
    what = "training tokens" if training else "test tokens"
    frame = read_csv(path, what, text=True)  # "None" and "NA" are tokens
    columns = ["sentence_id", "token_id", "before"] + (["after"] if training else [])
    require_columns(frame, columns, path)
    for column in ("before", "after") if training else ("before",):
        empty = frame[column] == ""
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise DataError(f"{path}: row {row + 2} has an empty `{column}`")
    if training and "class" in frame.columns:
        unknown = sorted(set(frame["class"]) - set(CLASSES))
        if unknown:
            raise DataError(
                f"{path}: unknown class {unknown[0]!r} (Kaggle's: {', '.join(CLASSES)})"
            )
    return frame.reset_index(drop=True)


def token_ids(frame):
    """The submission id of each row: `<sentence_id>_<token_id>`."""
    return (frame["sentence_id"].astype(str) + "_" + frame["token_id"].astype(str)).to_numpy()


def changed_tokens(frame):
    """The written forms that training ever saw changed."""
    return set(frame.loc[frame["before"] != frame["after"], "before"])


def needs_model(before, changed):
    """Which tokens go to the model; the rest are copied."""
    return np.array([b in changed or bool(PATTERN.search(b)) for b in before])


def contexts(frame, words):
    """`(left, right)` context text of every row: up to `words` tokens on each side
    within its sentence (the rows of a sentence in token order, as Kaggle's files)."""
    group = frame.groupby("sentence_id", sort=False)["before"]

    def joined(columns):
        if not columns:
            return np.full(len(frame), "", object)
        rows = zip(*(c.tolist() for c in columns), strict=True)
        return np.array([" ".join(w for w in row if isinstance(w, str)) for row in rows], object)

    left = joined([group.shift(k) for k in range(words, 0, -1)])
    return left, joined([group.shift(-k) for k in range(1, words + 1)])


def source_text(left, before, right):
    """What the model reads of one token: nearest context characters kept."""
    return left[-CONTEXT_CHARS:], before[:MAX_SOURCE_CHARS], right[:CONTEXT_CHARS]


@dataclass
class Vocabularies:
    """Source characters and target words (their special ids first), and the written
    forms training saw changed (which `needs_model` sends to the model)."""

    chars: list
    words: list
    changed: list

    @classmethod
    def fit(cls, sources, afters, changed):
        chars = sorted({c for left, token, right in sources for c in left + token + right})
        words = sorted({w for after in afters for w in after.split()})
        return cls([*SOURCE_SPECIALS, *chars], [*TARGET_SPECIALS, *words], sorted(changed))

    def to_json(self):
        return json.dumps({"chars": self.chars, "words": self.words, "changed": self.changed})

    @classmethod
    def load(cls, path):
        values = json.loads(Path(path).read_text())
        return cls(values["chars"], values["words"], values["changed"])

    @cached_property
    def char_ids(self):
        return {c: i for i, c in enumerate(self.chars)}

    @cached_property
    def word_ids(self):
        return {w: i for i, w in enumerate(self.words)}

    def encode_source(self, left, token, right):
        index = self.char_ids
        ids = [index.get(c, 1) for c in left] + [2] + [index.get(c, 1) for c in token] + [3]
        return ids + [index.get(c, 1) for c in right]

    def encode_target(self, before, after):
        """Word ids of `after`, or `<self>` when the token is unchanged; then `<end>`."""
        if after == before:
            return [SELF, END]
        return [self.word_ids.get(w, 4) for w in after.split()] + [END]

    def decode_target(self, before, ids):
        if not ids or ids[0] == SELF:
            return before
        return " ".join(self.words[i] for i in ids if i >= len(TARGET_SPECIALS))


def pairs(vocab, sources, befores, afters, max_words):
    """`(source ids, decoder inputs, decoder targets)`, a list of id lists each, for
    teacher forcing: the decoder reads `<start>` + words and writes words + `<end>`."""
    targets = [vocab.encode_target(b, a)[-max_words:] for b, a in zip(befores, afters, strict=True)]
    encoded = [vocab.encode_source(*source) for source in sources]
    return encoded, [[START, *t[:-1]] for t in targets], targets


def _slicer(rows):
    """`i → rows[i]` as a tf.data function over one flat array and the rows' offsets."""
    offsets = np.cumsum([0, *map(len, rows)]).astype("int64")
    flat = tf.constant(np.fromiter((i for row in rows for i in row), "int32", offsets[-1]))
    offsets = tf.constant(offsets)
    return lambda i: flat[offsets[i] : offsets[i + 1]]


BUCKETS = (16, 24, 32, 48)  # source lengths a batch is cut at (a last bucket holds the rest)


def batches(sources, inputs, outputs, batch_size, shuffle=False, seed=0):
    """`({"encoder_token_ids", "decoder_token_ids"}, targets)` batches of similar source
    length: each bucket pads its sources to its bound and its targets to its longest,
    and training drops each full bucket's last partial batch, so a handful of fixed shapes
    (one XLA compilation each) serve every epoch; a 6-character token is not padded to
    an 80-character URL."""
    lengths = np.array([len(s) for s in sources])
    bucket = np.searchsorted(BUCKETS, lengths)  # bucket k: BUCKETS[k-1] < length ≤ BUCKETS[k]
    count = len(BUCKETS) + 1
    widths = np.zeros((count, 2), "int64")
    for k in range(count):
        held = np.flatnonzero(bucket == k)
        widths[k] = [lengths[held].max(initial=1), max((len(outputs[i]) for i in held), default=1)]
        if k < len(BUCKETS):
            widths[k, 0] = BUCKETS[k]
    widths = tf.constant(widths)
    dataset = tf.data.Dataset.range(len(outputs))
    if shuffle:
        dataset = dataset.shuffle(len(outputs), seed=seed, reshuffle_each_iteration=True)
    slicers = [_slicer(rows) for rows in (sources, inputs, outputs)]
    keys = tf.constant(bucket, "int64")
    dataset = dataset.map(lambda i: (keys[i], *(rows(i) for rows in slicers)))

    sizes = np.bincount(bucket, minlength=count)
    drop = shuffle & (sizes >= batch_size)  # a bucket smaller than one batch is kept whole
    full = tf.constant(drop)

    def batch(key, window):
        source, target = widths[key, :1], widths[key, 1:]
        shapes = ([], source, target, target)
        return window.padded_batch(batch_size, shapes, drop_remainder=full[key])

    dataset = dataset.group_by_window(lambda key, *_: key, batch, window_size=batch_size)

    def named(_, source, inputs, outputs):  # (tensor-valued padded shapes lose the rank)
        source, inputs, outputs = (
            tf.ensure_shape(x, [None, None]) for x in (source, inputs, outputs)
        )
        return {"encoder_token_ids": source, "decoder_token_ids": inputs}, outputs

    dataset = dataset.map(named)
    # grouping hides the count from Keras, which would warn the data ran out
    total = np.where(drop, sizes // batch_size, -(-sizes // batch_size)).sum()
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(int(total)))
    return dataset.prefetch(tf.data.AUTOTUNE)
