"""Text normalization end to end: the generated replica, Kaggle's real layout, bad input."""

import functools
import json

import pandas as pd
import pytest

from pipelines.synthetic import textnorm
from tests import replicas
from tests.conftest import assert_one_line_error, shared_run

TINY = ["train.epochs=1", "model.args.hidden_dim=32", "train.batch_size=32"]


def read(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture
def text_normalization(competition):
    folder = competition("text-normalization")
    textnorm.generate(folder / "data", train=150, test=15)
    return folder


@pytest.fixture(scope="module")
def replica_run(tmp_path_factory):
    """One tiny `kapps run competitions/text-normalization`, shared by the tests that read it."""
    root = tmp_path_factory.mktemp("text-normalization")
    data = functools.partial(textnorm.generate, train=150, test=15)
    folder, run, _ = shared_run(root, "text-normalization", *TINY, data=data)
    return folder, run


def test_the_replica_runs_end_to_end_and_scores_its_submission(replica_run, cli):
    folder, run = replica_run
    metrics = json.loads((run / "metrics.json").read_text())
    for scores in (metrics["validation"], metrics["test"]):
        assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["accuracy_semiotic"] <= 1
        assert scores["copy_accuracy_semiotic"] < scores["copy_accuracy"] < 1
    table = read(run / "class_accuracy.csv")
    assert list(table.columns) == ["class", "tokens", "accuracy", "copy_accuracy"]
    assert {"PLAIN", "PUNCT", "CARDINAL"} <= set(table["class"])
    assert list(read(run / "mistakes.csv").columns) == [
        "class", "before", "after", "predicted", "count"
    ]  # fmt: skip
    submission = read(run / "submission.csv")
    sample = read(folder / "data" / "en_sample_submission_2.csv")
    assert (submission["id"] == sample["id"]).all()
    # what the model does not read is copied
    vocabulary = json.loads((run / "vocabulary.json").read_text())
    plain = ~sample["after"].isin(vocabulary["changed"]) & sample["after"].str.isalpha()
    plain &= ~sample["after"].str.isupper()
    assert (submission["after"][plain] == sample["after"][plain]).all()
    assert cli("submit", run).exit_code == 0


def test_a_submission_whose_ids_do_not_match_the_sample_is_one_line(replica_run, cli, tmp_path):
    _, run = replica_run
    submission = read(run / "submission.csv")
    submission.loc[3, "id"] = "999_0"
    path = tmp_path / "other.csv"
    submission.to_csv(path, index=False)
    assert_one_line_error(cli("submit", run, "--file", path), "missing ids", "0_3")


def test_kaggles_own_files_work_with_the_same_config(competition, cli, workdir):
    folder = competition("text-normalization")
    replicas.text_normalization(folder / "data", n_train=120, n_test=10)
    train = (folder / "data" / "en_train.csv").read_bytes()
    result = cli("run", folder, *TINY, "data.answers=null")
    assert result.exit_code == 0, result.output
    assert (folder / "data" / "en_train.csv").read_bytes() == train  # Kaggle's, not regenerated
    (run,) = (workdir / "runs" / "text-normalization").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test" not in metrics and "accuracy" in metrics["validation"]
    assert len(read(run / "submission.csv")) == len(read(folder / "data" / "en_test_2.csv"))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [("before", "", "has an empty `before`"), ("class", "NUMBER", "unknown class 'NUMBER'")],
)
def test_bad_training_tokens_are_one_line(text_normalization, cli, column, value, message):
    path = text_normalization / "data" / "en_train.csv"
    train = read(path)
    train.loc[5, column] = value
    train.to_csv(path, index=False)
    assert_one_line_error(cli("run", text_normalization, *TINY), message)


def test_a_sampler_that_cannot_decode_is_one_line(text_normalization, cli):
    result = cli("run", text_normalization, *TINY, "generate.sampler=top_k")
    assert_one_line_error(result, "generate.sampler 'top_k'", "greedy or beam")
