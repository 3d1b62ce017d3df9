"""Text generation: a language model over a corpus, prompts → `id,text` submissions."""

import inspect
import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import ops
from pydantic import ValidationError

from kapps.errors import ConfigError
from kapps.registry import get_entry
from pipelines.config import GenerateConfig
from pipelines.data.sources import read_csv, require_columns, submission_id_column
from pipelines.data.text import (
    fit_tokenizer,
    load_tokenizer,
    read_corpus,
    saved_tokenizer,
    split_by_position,
    split_text,
    window_count,
    windows,
)
from pipelines.generate import generate
from pipelines.ngram import KneserNey, blend_weight
from pipelines.runs import write_text
from pipelines.tasks.base import Evaluation, Task, TestSet, TrainingData

PROMPT_CHARS = 80  # samples.txt: prompt taken from the start of the validation text


@dataclass
class TextValidation:
    """What `evaluate` needs of the corpus: the tokenizer, both splits and the written text."""

    tokenizer: Any
    train_ids: np.ndarray
    val_ids: np.ndarray
    val_text: str


def target_probabilities(model, ids, seq_len, batch_size):
    """The probability `model` gives each token of `ids` after the first, in order.

    Windows of `seq_len` tokens overlap by half: past the first window, each token
    is scored with at least `seq_len // 2` tokens before it (not 0 to `seq_len - 1`,
    as back-to-back windows would), the usual strided evaluation of a fixed-context
    model, and nearer what the n-gram, which reads across window edges, is given.
    """
    stride = seq_len // 2
    starts = list(range(0, len(ids) - seq_len, stride)) or [0]
    out = []
    for first in range(0, len(starts), batch_size):
        chunk = starts[first : first + batch_size]
        inputs = np.stack([ids[s : s + seq_len] for s in chunk])
        targets = np.stack([ids[s + 1 : s + seq_len + 1] for s in chunk])
        log_probs = ops.convert_to_numpy(ops.log_softmax(model(inputs, training=False)))
        picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
        for start, row in zip(chunk, np.exp(picked.astype("float64")), strict=True):
            out.append(row if start == 0 else row[seq_len - stride :])
    return np.concatenate(out)


def encode_prompt(tokenizer, text):
    """Token ids of a prompt; an empty prompt starts from a line break."""
    return tokenizer.encode(text or "\n") or [0]


class TextTask(Task):
    name = "text"
    examples = "windows"

    # Data ------------------------------------------------------------------
    def load_tokenizer(self, run):
        return saved_tokenizer(run.path)

    def training_data(self, run):
        data, train = self.cfg.data, self.cfg.train
        text = read_corpus(self.cfg.data_path(data.train), data.text_column)
        # Trained on the training part only, once per run (kept when resuming).
        train_text, _ = split_text(text, data.val_fraction)
        tokenizer = load_tokenizer(run.path) or fit_tokenizer(
            train_text, data.tokenizer, data.vocab_size, run.path
        )
        corpus = split_by_position(text, data.val_fraction, data.seq_len, tokenizer)
        train_ids, val_ids = corpus.train_ids, corpus.val_ids
        note = (
            f"corpus: {len(text):,} characters → {len(train_ids) + len(val_ids):,} "
            f"{data.tokenizer} tokens (vocabulary {tokenizer.vocab_size:,}); training on the "
            f"first {len(train_ids):,}, validating on the last {len(val_ids):,}"
        )
        model_args = {"vocab_size": tokenizer.vocab_size}
        if "max_length" in inspect.signature(get_entry(self.cfg.model.name).builder).parameters:
            model_args["max_length"] = data.seq_len
        return TrainingData(
            train=windows(train_ids, data.seq_len, train.batch_size, shuffle=True, seed=train.seed),
            val=windows(val_ids, data.seq_len, train.batch_size),
            train_size=window_count(train_ids, data.seq_len),
            val_size=window_count(val_ids, data.seq_len),
            model_args=model_args,
            validation=TextValidation(tokenizer, train_ids, val_ids, corpus.val_text),
            notes=[note],
        )

    def test_data(self, run):
        """The prompts of `data.test` and their ids; the run's tokenizer as context."""
        path = self.cfg.data_path(self.cfg.data.test)
        frame = read_csv(path, "test prompts", ids_as_text=True)
        id_column = submission_id_column(self.cfg)
        require_columns(frame, [id_column, self.cfg.data.prompt_column], path)
        prompts = frame[self.cfg.data.prompt_column].fillna("").astype(str).tolist()
        return TestSet(prompts, frame[id_column].to_numpy(), context=self.load_tokenizer(run))

    # Model -----------------------------------------------------------------
    def compile_args(self):
        if self.cfg.train.loss not in (None, "ce"):
            raise ConfigError(
                f"train.loss {self.cfg.train.loss!r} is a segmentation loss; "
                "language models train with cross-entropy (ce)"
            )
        return {"loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}

    # Generation ------------------------------------------------------------
    def ngram(self, tokenizer):
        """The Kneser-Ney n-gram of the training split in `tokenizer`'s tokens (fitted once)."""
        if getattr(self, "_ngram", None) is None:
            data = self.cfg.data
            text = read_corpus(self.cfg.data_path(data.train), data.text_column)
            train_text, _ = split_text(text, data.val_fraction)
            self._ngram = KneserNey(data.ngram_order, tokenizer.vocab_size)
            self._ngram.fit(tokenizer.encode(train_text))
        return self._ngram

    def generate_config(self, **overrides):
        """`cfg.generate` with the given values replaced, validated like the config."""
        values = {**self.cfg.generate.model_dump(), **overrides}
        try:
            return GenerateConfig.model_validate(values)
        except ValidationError as err:
            error = err.errors()[0]
            key = ".".join(str(p) for p in error["loc"])
            raise ConfigError(f"{key}: {error['msg']} (got {error.get('input')!r})") from None

    def generate_texts(self, model, tokenizer, prompts, max_tokens=None, stream=None, **overrides):
        """Continue each prompt; returns the generated texts (without the prompts)."""
        gen = self.generate_config(**overrides)
        args = {
            "temperature": gen.temperature,
            "top_k": gen.top_k,
            "top_p": gen.top_p,
            "num_beams": gen.num_beams,
            "seed": gen.seed,
        }
        max_tokens = max_tokens or gen.max_tokens
        prior = None
        if gen.ngram_weight:
            prior = (gen.ngram_weight, self.ngram(tokenizer).next_probabilities)
        texts = []
        for start in range(0, len(prompts), gen.batch_size):
            batch = [encode_prompt(tokenizer, p) for p in prompts[start : start + gen.batch_size]]
            new = generate(
                model,
                batch,
                max_tokens,
                gen.sampler,
                stream=stream,
                prior=prior,
                **args,
            )
            texts += [tokenizer.decode(ids) for ids in new]
        return texts

    # After training ----------------------------------------------------------
    def evaluate(self, model, data, run):
        """Bits per character on the validation split, the Kneser-Ney n-gram's beside it,
        and their blend: the n-gram's weight fitted on the split's first half, all three
        reported again on its second half (the held-out tail)."""
        val = data.validation
        self._ngram = ngram = KneserNey(self.cfg.data.ngram_order, val.tokenizer.vocab_size)
        ngram.fit(val.train_ids)
        ngram_probs = ngram.token_probabilities(val.val_ids)
        ngram_bits = float(-np.log2(ngram_probs).mean())
        model_probs = target_probabilities(
            model, val.val_ids, self.cfg.data.seq_len, self.cfg.train.batch_size
        )
        loss = float(-np.log(model_probs).mean())
        # Windows cover the split except its last tokens; tokens → characters by the split's ratio.
        tokens_per_char = len(val.val_ids) / len(val.val_text)
        bpc, ngram_bpc = loss / math.log(2) * tokens_per_char, ngram_bits * tokens_per_char
        # the windows' targets are tokens 1 … n of the split
        both = model_probs, ngram_probs[1 : len(model_probs) + 1]
        half = len(model_probs) // 2
        weight = blend_weight(*(p[:half] for p in both))
        tail = [p[half:] for p in both]
        blend = (1 - weight) * tail[0] + weight * tail[1]
        self.write_samples(model, val.tokenizer, val.val_text[:PROMPT_CHARS], run.samples)
        return Evaluation(
            {
                "loss": loss,
                "perplexity": math.exp(loss),
                "bits_per_char": bpc,
                "ngram_order": ngram.order,
                "ngram_perplexity": 2**ngram_bits,
                "ngram_bits_per_char": ngram_bpc,
                "bpc_below_ngram": 1 - bpc / ngram_bpc,
                "blend_ngram_weight": weight,
                "tail_bits_per_char": float(-np.log2(tail[0]).mean() * tokens_per_char),
                "tail_ngram_bits_per_char": float(-np.log2(tail[1]).mean() * tokens_per_char),
                "tail_blend_bits_per_char": float(-np.log2(blend).mean() * tokens_per_char),
            }
        )

    def write_samples(self, model, tokenizer, prompt, path):
        """The start of the validation text continued at several temperatures."""
        gen = self.cfg.generate
        parts = [f"prompt (start of the validation text): {prompt!r}\n"]
        for temperature in gen.sample_temperatures:
            (text,) = self.generate_texts(
                model,
                tokenizer,
                [prompt],
                gen.sample_tokens,
                sampler="random",
                temperature=temperature,
            )
            parts.append(f"--- temperature {temperature} ---\n{prompt}{text}\n")
        write_text(path, "\n".join(parts))

    def predict_folds(self, models, test, weights=None):
        if len(models) > 1:
            raise ConfigError("text runs generate with one model; ensembles are not available")
        return self.generate_texts(models[0], test.context, test.inputs)

    def submission_frame(self, test, predictions, sample):
        id_column, text_column = sample.columns[:2]
        return pd.DataFrame(
            {id_column: test.ids, text_column: np.asarray(predictions, dtype=object)}
        )

    def empty_columns(self, sample):
        return tuple(sample.columns[1:2])  # a continuation may decode to nothing

    def score(self, frame, answers, test):
        raise ConfigError("text competitions have no local score")


__all__ = ["TextTask", "encode_prompt"]
