"""Text corpora → token ids → tf.data windows, and the tokenizers saved with a run.

A corpus is a text file, a folder of text files (joined in name order), or a
column of a CSV (rows joined by blank lines). The validation split is the
last `val_fraction` of the corpus by position, never random windows, so no
validation text is seen in training.
"""

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from kapps.errors import ConfigError
from pipelines.data.batching import drop_remainder
from pipelines.data.sources import read_csv, require_columns
from pipelines.errors import DataError

TOKENIZER_FILE = "tokenizer.json"
SENTENCEPIECE_FILE = "tokenizer.model"
UNKNOWN = "\ufffd"  # how the unknown-character id is shown


def _read_file(path):
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (byte {err.start})") from None


def read_corpus(path, text_column="text"):
    """The training text of a file, a folder of files or a CSV column."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        text = "\n\n".join(_read_file(p) for p in files)
    elif path.suffix.lower() == ".csv":
        frame = read_csv(path, "text CSV")
        require_columns(frame, [text_column], path)
        text = "\n\n".join(frame[text_column].fillna("").astype(str))
    elif path.is_file():
        text = _read_file(path)
    else:
        raise DataError(f"corpus not found: {path} (run `kapps prepare` first?)")
    if not text.strip():
        raise DataError(f"the corpus {path} is empty")
    return text


# Tokenizers --------------------------------------------------------------------


class CharTokenizer:
    """One id per character seen in training; id 0 stands for any other character."""

    kind = "char"

    def __init__(self, chars):
        self.chars = list(chars)
        self._ids = {c: i + 1 for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, text):
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        return len(self.chars) + 1

    def encode(self, text):
        return [self._ids.get(c, 0) for c in text]

    def decode(self, ids):
        return "".join(self.chars[i - 1] if 0 < i <= len(self.chars) else UNKNOWN for i in ids)

    def unknown(self, text):
        """Characters of `text` the tokenizer has no id for, sorted."""
        return sorted(set(text) - set(self._ids))

    def save(self, folder):
        data = {"kind": self.kind, "chars": self.chars}
        (Path(folder) / TOKENIZER_FILE).write_text(json.dumps(data, ensure_ascii=False))


class WordTokenizer:
    """Lower-cased words and punctuation marks, the most frequent `vocab_size` − 3.

    Ids 0, 1 and 2 are padding, unknown word and end of text (the token a
    CLIP text tower pools).
    """

    kind = "word"
    PAD, UNKNOWN, END = 0, 1, 2
    SPECIAL = ("[pad]", "[unk]", "[end]")

    def __init__(self, words):
        self.words = list(words)
        self._ids = {w: i + len(self.SPECIAL) for i, w in enumerate(self.words)}

    @staticmethod
    def split(text):
        return re.findall(r"\w+|[^\w\s]", text.lower())

    @classmethod
    def fit(cls, text, vocab_size):
        counts = Counter(cls.split(text))
        keep = vocab_size - len(cls.SPECIAL)
        return cls(sorted(w for w, _ in counts.most_common(keep)))

    @property
    def vocab_size(self):
        return len(self.words) + len(self.SPECIAL)

    def encode(self, text):
        return [self._ids.get(w, self.UNKNOWN) for w in self.split(text)]

    def decode(self, ids):
        table = [*self.SPECIAL, *self.words]
        return " ".join(table[i] for i in ids if i != self.PAD)

    def unknown(self, text):
        return sorted({w for w in self.split(text) if w not in self._ids})

    def save(self, folder):
        data = {"kind": self.kind, "words": self.words}
        (Path(folder) / TOKENIZER_FILE).write_text(json.dumps(data, ensure_ascii=False))


class SubwordTokenizer:
    """A SentencePiece BPE or unigram model trained on the training text.

    Byte fallback encodes any character, so nothing is unknown.
    """

    def __init__(self, kind, model_file):
        import sentencepiece as spm

        self.kind = kind
        self.model_file = Path(model_file)
        self.processor = spm.SentencePieceProcessor(model_file=str(model_file))

    @classmethod
    def fit(cls, text, kind, vocab_size, folder):
        import sentencepiece as spm

        prefix = Path(folder) / Path(SENTENCEPIECE_FILE).stem
        lines = [line for line in text.split("\n") if line.strip()]
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_prefix=str(prefix),
            model_type=kind,
            vocab_size=vocab_size,
            character_coverage=1.0,
            byte_fallback=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            split_digits=True,
            user_defined_symbols=["\n"],
            hard_vocab_limit=False,
            minloglevel=2,
        )
        return cls(kind, f"{prefix}.model")

    @property
    def vocab_size(self):
        return self.processor.get_piece_size()

    def encode(self, text):
        return self.processor.encode(text)

    def decode(self, ids):
        return self.processor.decode([int(i) for i in ids])

    def unknown(self, text):
        return []

    def save(self, folder):
        data = {"kind": self.kind, "model": self.model_file.name}
        (Path(folder) / TOKENIZER_FILE).write_text(json.dumps(data))


def fit_tokenizer(text, kind, vocab_size, folder):
    """Train the tokenizer `kind` (char, word, bpe, unigram) on `text`; save it in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "char":
        tokenizer = CharTokenizer.fit(text)
    elif kind == "word":
        tokenizer = WordTokenizer.fit(text, vocab_size)
    else:
        try:
            tokenizer = SubwordTokenizer.fit(text, kind, vocab_size, folder)
        except RuntimeError as err:
            raise DataError(f"cannot train a {kind} tokenizer on this corpus: {err}") from None
    tokenizer.save(folder)
    return tokenizer


def saved_tokenizer(run_dir):
    """The tokenizer a trained run saved; a `ConfigError` when it has none."""
    tokenizer = load_tokenizer(run_dir)
    if tokenizer is None:
        raise ConfigError(f"{run_dir} has no tokenizer; train it first")
    return tokenizer


def load_tokenizer(folder):
    """The tokenizer a run saved; None when it has none yet."""
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data["kind"] == "char":
        return CharTokenizer(data["chars"])
    if data["kind"] == "word":
        return WordTokenizer(data["words"])
    return SubwordTokenizer(data["kind"], Path(folder) / data["model"])


# Windows -------------------------------------------------------------------------


@dataclass
class Corpus:
    """A corpus split by position: token ids of each part, and the validation text."""

    train_ids: np.ndarray
    val_ids: np.ndarray
    val_text: str  # as written: bits per character divide by its length


def split_text(text, val_fraction):
    """`(train_text, val_text)`: the last `val_fraction` of the characters is validation."""
    cut = int(round(len(text) * (1 - val_fraction)))
    return text[:cut], text[cut:]


def split_by_position(text, val_fraction, seq_len, tokenizer):
    """The corpus split by characters (`split_text`), each part encoded on its own.

    The validation text keeps its own characters, so bits per character count
    what was written, not what a lossy tokenizer (lower-cased words, `[unk]`)
    decodes back.
    """
    train_text, val_text = split_text(text, val_fraction)
    train_ids, val_ids = (
        np.asarray(tokenizer.encode(part), dtype=np.int32) for part in (train_text, val_text)
    )
    need = seq_len + 1
    if len(train_ids) < need or len(val_ids) < need:
        raise DataError(
            f"the corpus has {len(train_ids) + len(val_ids):,} tokens: too short for windows "
            f"of {seq_len} tokens in both training ({len(train_ids):,}) and validation "
            f"({len(val_ids):,}); lower data.seq_len or add text"
        )
    return Corpus(train_ids, val_ids, val_text)


def window_count(ids, seq_len):
    return (len(ids) - 1) // seq_len


def windows(ids, seq_len, batch_size, shuffle=False, seed=0):
    """`(inputs, next tokens)` windows of `seq_len` tokens as a batched tf.data set.

    Training (`shuffle`): every epoch the windows start at a new random offset
    and come in a new order, so the model sees every position in every phase.
    Validation: fixed, non-overlapping windows covering the split.
    """
    ids_tensor = tf.constant(np.asarray(ids, dtype=np.int32))
    count = window_count(ids, seq_len)
    last_start = len(ids) - seq_len - 1
    starts = tf.data.Dataset.range(count)
    if shuffle:
        offsets = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        starts = tf.data.Dataset.zip(
            starts.shuffle(count, seed=seed, reshuffle_each_iteration=True), offsets
        ).map(lambda i, r: tf.minimum(i * seq_len + r % seq_len, last_start))
    else:
        starts = starts.map(lambda i: i * seq_len)

    def window(start):
        piece = ids_tensor[start : start + seq_len + 1]
        return piece[:-1], piece[1:]

    dataset = starts.map(window, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(
        batch_size, drop_remainder=drop_remainder(count, batch_size, shuffle)
    ).prefetch(tf.data.AUTOTUNE)
