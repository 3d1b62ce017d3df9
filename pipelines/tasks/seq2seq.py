"""Sequence to sequence: text normalization, each written token with its neighbours →
its spoken form, `id,after` submissions scored by token accuracy (Kaggle's metric)."""

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from kapps.errors import ConfigError
from pipelines.data.tokens import (
    END,
    START,
    UNCHANGED_CLASSES,
    Vocabularies,
    batches,
    changed_tokens,
    contexts,
    needs_model,
    pairs,
    read_tokens,
    source_text,
    token_ids,
)
from pipelines.errors import SubmissionError
from pipelines.generate import translate
from pipelines.runs import write_text
from pipelines.tasks.base import Evaluation, Task, TestSet, TrainingData

MAX_WORDS = 64  # target words a token may be read as (its end included)
MISTAKES = 50  # mistakes.csv: the most frequent wrong readings


@dataclass
class Tokens:
    """Rows of a token CSV, which of them the model reads, and what it reads of each."""

    frame: pd.DataFrame
    selected: np.ndarray  # bool, per row
    sources: list  # (left, token, right) of the selected rows


class Seq2SeqTask(Task):
    name = "seq2seq"
    examples = "tokens read"  # by the model; the rest are copied
    text_values = True

    # Config ------------------------------------------------------------------
    def resolve(self):
        cfg = super().resolve()
        if cfg.generate.sampler not in ("greedy", "beam"):
            raise ConfigError(
                f"generate.sampler {cfg.generate.sampler!r}: seq2seq runs decode with "
                "greedy or beam"
            )
        return cfg

    # Data ------------------------------------------------------------------
    def _tokens(self, frame, changed):
        left, right = contexts(frame, self.cfg.data.context_words)
        selected = needs_model(frame["before"], changed)
        rows = np.flatnonzero(selected)
        sources = [source_text(left[i], frame["before"].iat[i], right[i]) for i in rows]
        return Tokens(frame, selected, sources)

    def _split(self, frame):
        """Training and validation rows, whole sentences apart (seeded by train.seed)."""
        sentences = frame["sentence_id"].unique()
        rng = np.random.default_rng(self.cfg.train.seed)
        count = max(1, round(len(sentences) * self.cfg.data.val_fraction))
        held = set(rng.permutation(sentences)[:count])
        is_val = frame["sentence_id"].isin(held).to_numpy()
        return frame[~is_val].reset_index(drop=True), frame[is_val].reset_index(drop=True)

    def training_data(self, run, rows=None):
        cfg = self.cfg
        train_frame, val_frame = self._split(read_tokens(cfg.data_path(cfg.data.train), True))
        changed = changed_tokens(train_frame)
        train, val = self._tokens(train_frame, changed), self._tokens(val_frame, changed)
        train_after = train_frame["after"].to_numpy()[train.selected]
        if run.vocabulary.is_file():  # a resumed run keeps its ids
            vocab = Vocabularies.load(run.vocabulary)
        else:
            vocab = Vocabularies.fit(train.sources, train_after, changed)
            write_text(run.vocabulary, vocab.to_json())
        arrays = {}
        for split, tokens in (("train", train), ("val", val)):
            picked = tokens.frame[tokens.selected]
            arrays[split] = pairs(
                vocab, tokens.sources, picked["before"], picked["after"], MAX_WORDS
            )
        size = cfg.train.batch_size
        note = (
            f"{len(train_frame):,} training tokens, {int(train.selected.sum()):,} read by the "
            f"model (the rest copied); {len(vocab.chars):,} characters in, "
            f"{len(vocab.words):,} words out"
        )
        return TrainingData(
            train=batches(*arrays["train"], size, shuffle=True, seed=cfg.train.seed),
            val=batches(*arrays["val"], size),
            train_size=len(arrays["train"][0]),
            val_size=len(arrays["val"][0]),
            model_args={
                "vocab_size": len(vocab.words),
                "source_vocab_size": len(vocab.chars),
                "share_embeddings": False,
            },
            validation=(val, vocab),
            notes=[note],
        )

    def test_data(self, run):
        vocab = Vocabularies.load(run.vocabulary)
        frame = read_tokens(self.cfg.data_path(self.cfg.data.test), training=False)
        tokens = self._tokens(frame, set(vocab.changed))
        return TestSet(tokens, token_ids(frame), context=vocab)

    # Model -----------------------------------------------------------------
    def compile_args(self):
        if self.cfg.train.loss not in (None, "ce"):
            raise ConfigError(
                f"train.loss {self.cfg.train.loss!r}: seq2seq models train with cross-entropy (ce)"
            )
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
        return {"loss": loss}

    # Decoding ----------------------------------------------------------------
    def normalise(self, model, tokens, vocab):
        """The spoken form of every row of `tokens`: the model's reading of the selected
        ones, the others copied."""
        gen = self.cfg.generate
        decoded = translate(
            model,
            [vocab.encode_source(*source) for source in tokens.sources],
            MAX_WORDS,
            start_id=START,
            end_id=END,
            sampler=gen.sampler,
            num_beams=gen.num_beams,
            alpha=gen.length_penalty,
            batch_size=max(gen.batch_size, 256),
        )
        after = tokens.frame["before"].to_numpy(dtype=object).copy()
        rows = np.flatnonzero(tokens.selected)
        for row, ids in zip(rows, decoded, strict=True):
            after[row] = vocab.decode_target(after[row], ids)
        return after

    # After training ----------------------------------------------------------
    def evaluate(self, model, data, run):
        """Token accuracy on the validation sentences, per class, beside copying every
        token; the most frequent mistakes in mistakes.csv."""
        tokens, vocab = data.validation
        frame = tokens.frame.assign(predicted=self.normalise(model, tokens, vocab))
        table, metrics = accuracy_table(frame)
        write_text(run.class_accuracy, table.to_csv(index=False))
        wrong = frame[frame["predicted"] != frame["after"]]
        columns = [c for c in ("class", "before", "after", "predicted") if c in frame]
        mistakes = wrong.groupby(columns).size().rename("count").reset_index()
        mistakes = mistakes.sort_values("count", ascending=False, kind="stable").head(MISTAKES)
        write_text(run.mistakes, mistakes.to_csv(index=False))
        return Evaluation(metrics)

    def predict_folds(self, models, test, weights=None):
        if len(models) > 1:
            raise ConfigError("seq2seq runs decode with one model; ensembles are not available")
        return self.normalise(models[0], test.inputs, test.context)

    def submission_frame(self, test, predictions, sample):
        id_column, after_column = sample.columns[:2]
        return pd.DataFrame({id_column: test.ids, after_column: predictions})

    def score(self, frame, answers, test):
        """Kaggle's metric, token accuracy; per class too when the key has a `class`
        column (the replica's does), and copying every token's for comparison."""
        id_column, after_column = frame.columns[:2]
        key = answers.rename(columns={after_column: "after"})
        merged = key.merge(frame.rename(columns={after_column: "predicted"}), on=id_column)
        if len(merged) != len(answers) or len(merged) != len(frame):
            raise SubmissionError("the answer key and the submission hold different ids")
        before = pd.Series(test.inputs.frame["before"].to_numpy(), index=test.ids)
        merged["before"] = before.reindex(merged[id_column]).to_numpy()
        return accuracy_table(merged)[1]


def accuracy_table(frame):
    """`(per-class table, metrics)` of a frame with before, after, predicted (and class)."""
    right = frame["predicted"] == frame["after"]
    copied = frame["before"] == frame["after"]
    metrics = {"accuracy": float(right.mean()), "copy_accuracy": float(copied.mean())}
    if "class" not in frame:
        return pd.DataFrame(), metrics
    semiotic = ~frame["class"].isin(UNCHANGED_CLASSES)
    if semiotic.any():
        metrics["accuracy_semiotic"] = float(right[semiotic].mean())
        metrics["copy_accuracy_semiotic"] = float(copied[semiotic].mean())
    table = (
        pd.DataFrame({"class": frame["class"], "accuracy": right, "copy_accuracy": copied})
        .groupby("class")
        .agg(tokens=("accuracy", "size"), accuracy=("accuracy", "mean"),
             copy_accuracy=("copy_accuracy", "mean"))
        .sort_values("tokens", ascending=False)
        .reset_index()
    )  # fmt: skip
    metrics["class_accuracy"] = dict(zip(table["class"], table["accuracy"].round(4), strict=True))
    return table, metrics


__all__ = ["Seq2SeqTask", "accuracy_table"]
