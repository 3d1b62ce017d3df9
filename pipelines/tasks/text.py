"""Text generation: a language model over a corpus, prompts → `id,text` submissions."""

import inspect
import math

import keras
import numpy as np
import pandas as pd
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
from pipelines.ngram import ngram_baseline
from pipelines.runs import write_text
from pipelines.tasks.base import Task, TrainingData

SAMPLES_FILE = "samples.txt"
PROMPT_CHARS = 80  # samples.txt: prompt taken from the start of the validation text


class TextTask(Task):
    name = "text"
    examples = "windows"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.tokenizer = None

    # Data ------------------------------------------------------------------
    def load_tokenizer(self, run_dir):
        self.tokenizer = saved_tokenizer(run_dir)
        return self.tokenizer

    def training_data(self, run_dir):
        data, train = self.cfg.data, self.cfg.train
        text = read_corpus(self.cfg.data_path(data.train), data.text_column)
        # Trained on the training part only, once per run (kept when resuming).
        train_text, _ = split_text(text, data.val_fraction)
        self.tokenizer = load_tokenizer(run_dir) or fit_tokenizer(
            train_text, data.tokenizer, data.vocab_size, run_dir
        )
        corpus = split_by_position(text, data.val_fraction, data.seq_len, self.tokenizer)
        train_ids, val_ids = corpus.train_ids, corpus.val_ids
        self.train_ids, self.val_ids = train_ids, val_ids
        self.val_chars = len(corpus.val_text)
        self.val_text = corpus.val_text
        note = (
            f"corpus: {len(text):,} characters → {len(train_ids) + len(val_ids):,} "
            f"{data.tokenizer} tokens "
            f"(vocabulary {self.tokenizer.vocab_size:,}); training on the first "
            f"{len(train_ids):,}, validating on the last {len(val_ids):,}"
        )
        return TrainingData(
            train=windows(train_ids, data.seq_len, train.batch_size, shuffle=True, seed=train.seed),
            val=windows(val_ids, data.seq_len, train.batch_size),
            train_size=window_count(train_ids, data.seq_len),
            val_size=window_count(val_ids, data.seq_len),
            notes=[note],
        )

    def test_data(self, run_dir):
        """The prompts of `data.test` and their ids."""
        self.load_tokenizer(run_dir)
        path = self.cfg.data_path(self.cfg.data.test)
        frame = read_csv(path, "test prompts", ids_as_text=True)
        id_column = submission_id_column(self.cfg)
        require_columns(frame, [id_column, self.cfg.data.prompt_column], path)
        prompts = frame[self.cfg.data.prompt_column].fillna("").astype(str).tolist()
        return prompts, frame[id_column].to_numpy()

    # Model -----------------------------------------------------------------
    def model_kwargs(self):
        kwargs = {"vocab_size": self.tokenizer.vocab_size}
        name = self.cfg.model.name
        if "max_length" in inspect.signature(get_entry(name).builder).parameters:
            kwargs["max_length"] = self.cfg.data.seq_len
        return kwargs

    def compile_args(self):
        if self.cfg.train.loss not in (None, "ce"):
            raise ConfigError(
                f"train.loss {self.cfg.train.loss!r} is a segmentation loss; "
                "language models train with cross-entropy (ce)"
            )
        return {"loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}

    # Generation ------------------------------------------------------------
    def encode_prompt(self, text):
        """Token ids of a prompt; an empty prompt starts from a line break."""
        ids = self.tokenizer.encode(text or "\n")
        return ids or [0]

    def generate_config(self, **overrides):
        """`cfg.generate` with the given values replaced, validated like the config."""
        values = {**self.cfg.generate.model_dump(), **overrides}
        try:
            return GenerateConfig.model_validate(values)
        except ValidationError as err:
            error = err.errors()[0]
            key = ".".join(str(p) for p in error["loc"])
            raise ConfigError(f"{key}: {error['msg']} (got {error.get('input')!r})") from None

    def generate_texts(self, model, prompts, max_tokens=None, stream=None, **overrides):
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
        texts = []
        for start in range(0, len(prompts), gen.batch_size):
            batch = [self.encode_prompt(p) for p in prompts[start : start + gen.batch_size]]
            new = generate(model, batch, max_tokens, gen.sampler, stream=stream, **args)
            texts += [self.tokenizer.decode(ids) for ids in new]
        return texts

    # After training ----------------------------------------------------------
    def evaluate(self, model, data, run_dir):
        """Perplexity and bits per character on the validation split, vs a KN n-gram."""
        loss = float(model.evaluate(data.val, verbose=0))
        # Windows cover the split except its tail; scale tokens → characters by the split's ratio.
        chars_per_token = self.val_chars / len(self.val_ids)
        bpc = loss / math.log(2) / chars_per_token
        order, ngram_bits = ngram_baseline(
            self.train_ids, self.val_ids, self.tokenizer.vocab_size, (self.cfg.data.ngram_order,)
        )
        ngram_bpc = ngram_bits / chars_per_token
        self.write_samples(model, run_dir)
        return {
            "loss": loss,
            "perplexity": math.exp(loss),
            "bits_per_char": bpc,
            "ngram_order": order,
            "ngram_perplexity": 2**ngram_bits,
            "ngram_bits_per_char": ngram_bpc,
            "bpc_below_ngram": 1 - bpc / ngram_bpc,
        }

    def write_samples(self, model, run_dir):
        """samples.txt: the start of the validation text continued at several temperatures."""
        gen = self.cfg.generate
        prompt = self.val_text[:PROMPT_CHARS]
        parts = [f"prompt (start of the validation text): {prompt!r}\n"]
        for temperature in gen.sample_temperatures:
            (text,) = self.generate_texts(
                model, [prompt], gen.sample_tokens, sampler="random", temperature=temperature
            )
            parts.append(f"--- temperature {temperature} ---\n{prompt}{text}\n")
        write_text(run_dir / SAMPLES_FILE, "\n".join(parts))

    def predict(self, model, prompts):
        return self.generate_texts(model, prompts)

    def submission_frame(self, ids, predictions, sample):
        id_column, text_column = sample.columns[:2]
        return pd.DataFrame({id_column: ids, text_column: np.asarray(predictions, dtype=object)})

    def empty_columns(self, sample):
        return tuple(sample.columns[1:2])  # a continuation may decode to nothing

    def score(self, frame, answers):
        raise ConfigError("text competitions have no local score")


__all__ = ["TextTask"]
