"""Text end to end: corpora, tokenizers, windows, the n-gram baseline, generate CLI."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from pipelines.data.text import (
    CharTokenizer,
    WordTokenizer,
    fit_tokenizer,
    load_tokenizer,
    read_corpus,
    split_by_position,
    split_text,
    windows,
)
from pipelines.errors import DataError
from pipelines.ngram import KneserNey, blend_weight
from tests.conftest import FAST, REPO, prepare_module

TINY = [
    *FAST,
    "train.epochs=2",
    "data.seq_len=32",
    "model.args.num_layers=1",
    "model.args.hidden_dim=32",
    "model.args.num_heads=2",
    "generate.max_tokens=20",
    "generate.sample_tokens=30",
]
CORPUS_CHARS = 24_000


def _pydoc_folder(folder):
    """pydoc-text with its corpus cut to the first 24,000 characters."""
    shutil.copytree(
        REPO / "competitions" / "pydoc-text", folder, ignore=shutil.ignore_patterns("data")
    )
    module = prepare_module("pydoc-text")
    data = folder / "data"
    data.mkdir()
    text = module.corpus()[:CORPUS_CHARS]
    (data / "train.txt").write_text(text)
    ids = [f"p{i}" for i in range(5)]
    prompts = module.prompts(text, count=5)
    pd.DataFrame({"id": ids, "prompt": prompts}).to_csv(data / "test.csv", index=False)
    pd.DataFrame({"id": ids, "text": "..."}).to_csv(data / "sample_submission.csv", index=False)
    return folder


@pytest.fixture
def pydoc(workdir):
    return _pydoc_folder(workdir / "competitions" / "pydoc-text")


def run_folder(root, slug):
    return next((root.parent.parent / "runs" / slug).iterdir())


@pytest.fixture(scope="module")
def pydoc_run(tmp_path_factory):
    """One tiny pydoc-text run, shared by the tests that only read it or generate."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    root = tmp_path_factory.mktemp("pydoc")
    folder = _pydoc_folder(root / "competitions" / "pydoc-text")
    args = ["run", str(folder), *TINY, f"run.dir={root / 'runs'}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return run_folder(folder, "pydoc-text"), result


def test_pydoc_text_runs_end_to_end(pydoc_run):
    run, result = pydoc_run
    assert "windows" in result.output
    validation = json.loads((run / "metrics.json").read_text())["validation"]
    assert validation["bits_per_char"] > 0 and validation["ngram_bits_per_char"] > 0
    assert validation["ngram_order"] == 5
    assert validation["perplexity"] == pytest.approx(np.exp(validation["loss"]))
    assert validation["bpc_below_ngram"] == pytest.approx(
        1 - validation["bits_per_char"] / validation["ngram_bits_per_char"]
    )
    # the blend on the held-out tail: −log of a mixture ≤ the mixture of −logs (convexity)
    weight = validation["blend_ngram_weight"]
    assert 0 <= weight <= 1
    mixed = (1 - weight) * validation["tail_bits_per_char"]
    mixed += weight * validation["tail_ngram_bits_per_char"]
    assert validation["tail_blend_bits_per_char"] <= mixed + 1e-9
    samples = (run / "samples.txt").read_text()
    for temperature in (0.5, 0.8, 1.0):
        assert f"--- temperature {temperature} ---" in samples
    submission = pd.read_csv(run / "submission.csv", keep_default_na=False)
    assert list(submission.columns) == ["id", "text"] and len(submission) == 5
    assert (submission["text"].str.len() > 0).all()
    assert json.loads((run / "tokenizer.json").read_text())["kind"] == "char"


def test_generate_streams_and_handles_unknown_characters_and_long_requests(pydoc_run, cli):
    run, _ = pydoc_run
    result = cli("generate", run, "--prompt", "The with statement", "--max-tokens", "25")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("The with statement")
    assert len(result.output.rstrip("\n")) >= len("The with statement") + 20
    # A character the corpus never had is replaced by the unknown token, and said.
    result = cli("generate", run, "--prompt", "λ calculus €", "--max-tokens", "5")
    assert result.exit_code == 0, result.output
    assert "not in the vocabulary" in result.output and "'€'" in result.output
    # 100 tokens with a context of 32: the window slides.
    result = cli("generate", run, "--prompt", "def", "--max-tokens", "100", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "window slides" in result.output
    greedy = [
        cli("generate", run, "--prompt", "x", "--sampler", "greedy", "--max-tokens", "12").output
        for _ in range(2)
    ]
    assert greedy[0] == greedy[1]
    result = cli("generate", run, "--prompt", "x", "--sampler", "beam", "--max-tokens", "8")
    assert result.exit_code == 0, result.output


def test_generation_blends_the_ngram_in(pydoc_run):
    """At weight 1 the n-gram alone decides: greedy decoding follows its likeliest tokens."""
    from pipelines.predict import load_run
    from pipelines.runs import RunFolder
    from pipelines.tasks import get_task

    run, _ = pydoc_run
    task = get_task(load_run(run))
    tokenizer = task.load_tokenizer(RunFolder(run))
    model = keras.saving.load_model(run / "best.keras")
    prompts = ["The with", "x"]
    args = {"sampler": "greedy", "max_tokens": 12}
    texts = task.generate_texts(model, tokenizer, prompts, ngram_weight=1.0, **args)
    ngram = task.ngram(tokenizer)
    for prompt, text in zip(prompts, texts, strict=True):
        ids = tokenizer.encode(prompt)
        for _ in range(12):
            ids.append(int(np.argmax(ngram.distribution(ids[-(ngram.order - 1) :]))))
        assert text == tokenizer.decode(ids[len(tokenizer.encode(prompt)) :])
    assert task.generate_texts(model, tokenizer, prompts, **args) != texts  # the GPT's own


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperature", "0"], "temperature"),
        (["--sampler", "nucleus"], "sampler"),
        (["--max-tokens", "0"], "max_tokens"),
    ],
)
def test_generate_rejects_bad_options_in_one_line(pydoc_run, cli, args, message):
    run, _ = pydoc_run
    result = cli("generate", run, "--prompt", "x", *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_generate_needs_a_text_run(digits_run, cli):
    result = cli("generate", digits_run[0], "--prompt", "x")
    assert result.exit_code == 2 and "needs a text run" in result.output


def test_empty_corpus_is_one_line_and_exit_2(pydoc, cli):
    (pydoc / "data" / "train.txt").write_text("  \n\n ")
    result = cli("train", pydoc, *TINY)
    assert result.exit_code == 2 and "is empty" in result.output


def test_corpus_too_short_for_the_windows_says_so(pydoc, cli):
    (pydoc / "data" / "train.txt").write_text("short text " * 5)
    result = cli("train", pydoc, *TINY)
    assert result.exit_code == 2 and "too short" in result.output


def test_shakespeare_replica_trains_a_char_rnn(competition, cli):
    folder = competition("shakespeare")
    data = folder / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    words = [
        "thou",
        "art",
        "my",
        "lord",
        "and",
        "I",
        "shall",
        "speak",
        "the",
        "king",
        "of",
        "love",
        "night",
        "day",
    ]
    speeches = [
        f"{rng.choice(['ROMEO', 'JULIET', 'KING HENRY VI'])}:\n"
        + " ".join(rng.choice(words, 12))
        + ",\n"
        + " ".join(rng.choice(words, 8))
        + "."
        for _ in range(150)
    ]
    (data / "input.txt").write_text("\n\n".join(speeches) + "\n")
    overrides = [*FAST, "train.epochs=1", "data.seq_len=32", "model.args.units=16"]
    result = cli("run", folder, *overrides, "generate.max_tokens=10", "generate.sample_tokens=10")
    assert result.exit_code == 0, result.output
    run = run_folder(folder, "shakespeare")
    prompts = pd.read_csv(data / "test.csv")
    assert prompts["prompt"].str.contains(":\n").all()
    assert len(pd.read_csv(run / "submission.csv")) == len(prompts)


def test_shakespeare_without_input_txt_says_where_to_put_it(competition, cli):
    folder = competition("shakespeare")
    result = cli("run", folder)
    assert result.exit_code == 2 and "input.txt" in result.output


# Readers, tokenizers, windows ---------------------------------------------------


def test_corpus_readers_file_folder_and_csv(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "2.txt").write_text("two")
    (folder / "1.txt").write_text("one")
    pd.DataFrame({"body": ["first", None, "third"]}).to_csv(tmp_path / "t.csv", index=False)
    assert read_corpus(tmp_path / "a.txt") == "alpha"
    assert read_corpus(folder) == "one\n\ntwo"
    assert read_corpus(tmp_path / "t.csv", "body") == "first\n\n\n\nthird"
    with pytest.raises(DataError, match="missing column"):
        read_corpus(tmp_path / "t.csv", "text")
    with pytest.raises(DataError, match="not found"):
        read_corpus(tmp_path / "nope.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(DataError, match="not UTF-8"):
        read_corpus(tmp_path / "bin.txt")


def test_char_tokenizer_round_trip_and_unknown(tmp_path):
    tokenizer = CharTokenizer.fit("hello world")
    assert tokenizer.decode(tokenizer.encode("world hello")) == "world hello"
    assert tokenizer.unknown("hey!") == ["!", "y"]
    assert tokenizer.encode("y")[0] == 0 and tokenizer.decode([0]) == "\ufffd"
    tokenizer.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.encode("hello") == tokenizer.encode("hello")


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_subword_tokenizers_train_offline_and_round_trip(tmp_path, kind):
    text = prepare_module("pydoc-text").corpus()[:60_000]
    tokenizer = fit_tokenizer(text, kind, 600, tmp_path)
    sample = text[50_000:51_000]
    ids = tokenizer.encode(sample)
    assert tokenizer.decode(ids) == sample
    assert len(ids) < len(sample) / 2  # subwords are shorter than characters
    assert tokenizer.decode(tokenizer.encode("naïve → λ")) == "naïve → λ"  # byte fallback
    assert load_tokenizer(tmp_path).encode(sample) == ids


def test_validation_is_the_tail_of_the_corpus():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    tokenizer = CharTokenizer.fit(text)
    corpus = split_by_position(text, 0.1, 32, tokenizer)
    assert len(corpus.train_ids) == 900 and corpus.val_text == text[900:]
    assert tokenizer.decode(corpus.val_ids) == text[900:]
    with pytest.raises(DataError, match="too short"):
        split_by_position(text[:60], 0.1, 32, CharTokenizer.fit(text))


def test_bits_per_character_count_the_written_characters_with_the_word_tokenizer():
    # The word tokenizer lower-cases, drops spaces and decodes an unknown word as
    # "[unk]": decoded, the validation text would have another length.
    text = "The Cat sat. " * 80 + "Zebras   GALLOP, Quickly!" * 8
    tokenizer = WordTokenizer.fit(split_text(text, 0.2)[0], 50)
    corpus = split_by_position(text, 0.2, 4, tokenizer)
    assert corpus.val_text == text[-len(corpus.val_text) :]
    assert len(corpus.val_text) == len(text) - round(len(text) * 0.8)
    assert len(tokenizer.decode(corpus.val_ids)) != len(corpus.val_text)


def test_windows_predict_the_next_token_and_move_between_epochs():
    ids = np.arange(500, dtype=np.int32)
    val = list(windows(ids, 16, 4).unbatch().as_numpy_iterator())
    assert len(val) == (500 - 1) // 16
    for x, y in val:
        np.testing.assert_array_equal(y, x + 1)
    assert [int(x[0]) for x, _ in val] == list(range(0, 16 * len(val), 16))
    train = windows(ids, 16, 4, shuffle=True, seed=1)
    epochs = [sorted(int(x[0]) for x, _ in train.unbatch().as_numpy_iterator()) for _ in (0, 1)]
    assert epochs[0] != epochs[1]  # new offsets every epoch
    for x, y in train.unbatch().as_numpy_iterator():
        np.testing.assert_array_equal(y, x + 1)


# The n-gram baseline ------------------------------------------------------------


def test_kneser_ney_is_a_distribution_at_every_order():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 6, 400).tolist()
    model = KneserNey(4, vocab_size=7).fit(tokens)  # id 6 never seen
    for context in ([], [1], [1, 2], [3, 3, 3], [6, 6, 6]):
        totals = np.sum([model.probabilities(context, t) for t in range(7)], axis=0)
        np.testing.assert_allclose(totals, 1.0, atol=1e-9)


def test_higher_orders_win_on_repetitive_text():
    pattern = [0, 1, 2, 3, 4, 5, 6, 7, 3, 2, 1]
    tokens = pattern * 60
    bits = KneserNey(4, 8).fit(tokens[:500]).bits_per_token(tokens[500:])
    assert bits[-1] < bits[0]  # order 4 against order 1 of the same model
    assert bits[-1] < KneserNey(1, 8).fit(tokens[:500]).bits_per_token(tokens[500:])[-1]
    assert bits[-1] < 0.5  # the pattern is almost deterministic given 3 tokens


def test_kneser_ney_vectors_match_its_one_token_probabilities():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 9, 600).tolist()
    model = KneserNey(3, vocab_size=10).fit(tokens)
    for context in ([], [4], [4, 2], [9, 9], [1, 2, 3, 4]):
        want = [model.probabilities(context[-2:], t)[-1] for t in range(10)]
        np.testing.assert_allclose(model.distribution(context), want, rtol=1e-12)
    rows = np.array([[4, 2, 7, 0], [9, 9, 1, 0]])
    np.testing.assert_allclose(
        model.next_probabilities(rows, 3), [model.distribution(r[1:3]) for r in rows]
    )
    held = tokens[:50]
    bits = -np.log2(model.token_probabilities(held)).mean()
    assert bits == pytest.approx(model.bits_per_token(held)[-1])


@pytest.mark.parametrize("seq_len", [8, 9])
def test_strided_evaluation_scores_every_token_once_in_order(seq_len):
    from pipelines.tasks.text import target_probabilities

    vocab = 5

    def bigram(inputs, training=False):  # P(next | current): 0.6 on current + 1, else 0.1
        favoured = (np.asarray(inputs) + 1) % vocab
        return np.log(np.where(np.arange(vocab) == favoured[..., None], 0.6, 0.1))

    ids = np.random.default_rng(3).integers(0, vocab, 50)
    probs = target_probabilities(bigram, ids, seq_len, batch_size=3)
    covered = len(probs)
    assert len(ids) - seq_len <= covered <= len(ids) - 1  # all but the last few tokens
    want = np.where(ids[1 : covered + 1] == (ids[:covered] + 1) % vocab, 0.6, 0.1)
    np.testing.assert_allclose(probs, want)


def test_the_blend_weight_minimises_cross_entropy():
    good, bad = np.full(100, 0.9), np.full(100, 0.1)
    assert blend_weight(bad, good) == 1.0 and blend_weight(good, bad) == 0.0
    # each model right on half the tokens: the symmetric mixture
    model, ngram = np.r_[good, bad], np.r_[bad, good]
    assert blend_weight(model, ngram) == pytest.approx(0.5)
    # the fitted weight is at least as good as every other on a finer grid
    rng = np.random.default_rng(2)
    model, ngram = rng.uniform(0.01, 1, 500), rng.uniform(0.01, 1, 500)
    weight = blend_weight(model, ngram)

    def loss(w):
        return -np.log((1 - w) * model + w * ngram).mean()

    assert all(loss(weight) <= loss(w) + 1e-4 for w in np.linspace(0, 1, 1001))


def test_prompts_come_from_the_validation_tail():
    module = prepare_module("pydoc-text")
    text = module.corpus()
    tail = text[int(len(text) * 0.9) :]
    prompts = module.prompts(text)
    assert len(prompts) == 20
    assert all(p in " ".join(tail.split()) for p in prompts)


def test_prepare_writes_the_pydoc_files(tmp_path):
    prepare_module("pydoc-text").prepare(tmp_path)
    assert len((tmp_path / "train.txt").read_text()) > 400_000
    sample = pd.read_csv(tmp_path / "sample_submission.csv")
    assert list(sample.columns) == ["id", "text"]
    assert list(pd.read_csv(tmp_path / "test.csv")["id"]) == list(sample["id"])


def test_text_configs_refuse_image_layouts(tmp_path):
    from kapps.errors import ConfigError
    from pipelines.config import load_config

    with pytest.raises(ConfigError, match="does not fit a text competition"):
        load_config(REPO / "competitions" / "pydoc-text", ["data.format=class_folders"])
    assert Path(REPO / "competitions" / "shakespeare" / "README.md").is_file()
